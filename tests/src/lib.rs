//! Test harness: real `skiff` processes driven by real clients.
//!
//! [`Server`] starts `skiff server` on a free loopback port with a fresh data directory and
//! kills it when dropped, so a failing test never leaves a process behind. Clients are the
//! stock ones: [`Server::kubectl`] runs `/usr/bin/kubectl` with the server's admin kubeconfig.

pub mod images;
pub mod nodes;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `skiff` binary under test: `$SKIFF_BIN`, else `target/debug/skiff` of this workspace.
pub fn skiff_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SKIFF_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace")
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug").join("skiff");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bin skiff` first (or set SKIFF_BIN)",
        bin.display()
    );
    bin
}

/// A running `skiff server`.
pub struct Server {
    child: Option<Child>,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    pub kubeconfig: PathBuf,
    pub url: String,
    log: PathBuf,
}

impl Server {
    /// Start a server with a new data directory.
    pub fn start() -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().join("data");
        let mut s = Self::start_in(&dir);
        s._temp = Some(temp);
        s
    }

    /// Start a server on an existing (or new) data directory, e.g. to restart one.
    pub fn start_in(dir: &Path) -> Self {
        Self::start_with(dir, "127.0.0.1:0")
    }

    pub fn start_with(dir: &Path, listen: &str) -> Self {
        std::fs::create_dir_all(dir).expect("data dir");
        let kubeconfig = dir.join("kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        let log = dir.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = Command::new(skiff_bin())
            .args(["server", "--data-dir"])
            .arg(dir)
            .args(["--listen", listen])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn skiff server");
        let mut server = Self {
            child: Some(child),
            dir: dir.to_path_buf(),
            _temp: None,
            kubeconfig,
            url: String::new(),
            log,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("skiff server exited early ({status}):\n{}", self.logs());
            }
            if let Ok(text) = std::fs::read_to_string(&self.kubeconfig)
                && let Some(url) = text.lines().find_map(|l| l.trim().strip_prefix("server: "))
            {
                self.url = url.trim().to_string();
                let out = self.kubectl(&["get", "--raw", "/readyz"]);
                if out.status.success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "skiff server not ready after 30 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A `kubectl` command with this server's admin kubeconfig and a private cache.
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.with_extension("kube-cache"))
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().expect("run kubectl")
    }

    /// Run kubectl with `stdin` as its input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("kubectl output")
    }

    /// Run kubectl and return stdout, failing the test with stderr if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Like [`Server::ok`] with stdin.
    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run kubectl expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {} should have failed but printed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `kubectl get ... -o json` parsed.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("kubectl printed JSON")
    }

    /// Kill the server abruptly (SIGKILL), as a power cut would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop and start again on the same data directory.
    pub fn restart(mut self) -> Self {
        self.kill();
        let temp = self._temp.take();
        let dir = self.dir.clone();
        let mut next = Self::start_in(&dir);
        next._temp = temp;
        next
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Poll `f` until it returns Some, or panic after `timeout` with `what`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
