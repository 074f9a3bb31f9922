//! The machine API end to end: the real `skiff ctl` binary against the real server
//! (`skiff machine-api serve-host`, the host-mode node) over mutual TLS on loopback, with the
//! configs and client credentials `skiff gen config` writes.
//!
//! Every server runs under a guard that stops it (and the "service" it supervises) on drop,
//! so a failing assertion leaves no process behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use skiff_tests::skiff_bin;

/// A cluster's files from `skiff gen config`.
struct Cluster {
    _temp: tempfile::TempDir,
    dir: PathBuf,
}

impl Cluster {
    fn generate() -> Self {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("cluster");
        let out = Command::new(skiff_bin())
            .args(["gen", "config", "--cluster-name", "demo", "--endpoint"])
            .arg("https://127.0.0.1:6443")
            .arg("--out")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        Self { _temp: temp, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The cluster's secrets, to sign more configs with.
    fn secrets(&self) -> skiff_genconfig::ClusterSecrets {
        let yaml = std::fs::read_to_string(self.path("secrets.yaml")).unwrap();
        skiff_genconfig::ClusterSecrets::from_yaml(&yaml).unwrap()
    }

    fn signed(&self, role: skiff_machine::Role, hostname: &str, generation: u64) -> Vec<u8> {
        let mut spec = skiff_genconfig::NodeSpec::new(role, hostname.parse().unwrap());
        spec.generation = generation;
        self.secrets().signed_config(&spec).unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running `skiff machine-api serve-host`.
struct Node {
    child: Option<Child>,
    addr: String,
    state: PathBuf,
    service_pid: Option<i32>,
    _temp: tempfile::TempDir,
}

impl Node {
    /// Serves `config` (a file in the cluster dir) with one service, `agent`, that prints
    /// two lines, a third after a second, then sleeps.
    fn start(cluster: &Cluster, config: &str) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let script = temp.path().join("agent.sh");
        std::fs::write(
            &script,
            "echo agent starting\necho registered node\nsleep 1\necho later line\nexec sleep 300\n",
        )
        .unwrap();
        let kmsg = temp.path().join("kmsg");
        std::fs::write(
            &kmsg,
            "6,1,1000000,-;Linux version 6.1.0\n SUBSYSTEM=x\n4,2,2500000,-;virtio_net: ready\n",
        )
        .unwrap();
        let state = temp.path().join("state");
        let mut child = Command::new(skiff_bin())
            .args(["machine-api", "serve-host", "--config"])
            .arg(cluster.path(config))
            .arg("--trusted-key")
            .arg(cluster.path("signing.pub"))
            .arg("--state-dir")
            .arg(&state)
            .args(["--listen", "127.0.0.1:0", "--service"])
            .arg(format!("agent=/bin/sh {}", script.display()))
            .arg("--kmsg")
            .arg(&kmsg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = tx.send(line);
            }
        });
        let mut node = Self {
            child: Some(child),
            addr: String::new(),
            state,
            service_pid: None,
            _temp: temp,
        };
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("serve-host printed its address");
        node.addr = line
            .strip_prefix("serving the machine API on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        node
    }

    /// `skiff ctl --config SKIFFCONFIG --nodes ADDR ARGS...`.
    fn ctl(&self, skiffconfig: &Path, args: &[&str]) -> Output {
        Command::new(skiff_bin())
            .arg("ctl")
            .arg("--config")
            .arg(skiffconfig)
            .args(["--nodes", &self.addr])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Waits for the server to exit on its own.
    fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets serve-host stop its service; SIGKILL if it does not go.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = self.service_pid {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn fails(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stderr = text(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn version_services_logs_and_dmesg() {
    let cluster = Cluster::generate();
    let mut node = Node::start(&cluster, "worker.yaml");
    let cfg = cluster.path("skiffconfig");

    let version = ok(&node.ctl(&cfg, &["version"]));
    assert!(version.contains("hostname   demo-worker\n"), "{version}");
    assert!(version.contains("role       worker\n"), "{version}");
    assert!(version.contains("config     generation 1 "), "{version}");
    assert!(version.contains(&format!("skiff      {}\n", env!("CARGO_PKG_VERSION"))));

    let services = ok(&node.ctl(&cfg, &["services"]));
    let row = services
        .lines()
        .find(|l| l.starts_with("agent "))
        .unwrap_or_else(|| panic!("{services}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "running", "{services}");
    let pid: i32 = cols[3].parse().unwrap();
    node.service_pid = Some(pid);
    assert!(pid_alive(pid));

    // The first lines come at once; the third after a second: wait for it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let logs = loop {
        let logs = ok(&node.ctl(&cfg, &["logs", "agent"]));
        if logs.contains("later line") || Instant::now() > deadline {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        logs.lines().collect::<Vec<_>>(),
        ["agent starting", "registered node", "later line"]
    );
    let tail = ok(&node.ctl(&cfg, &["logs", "agent", "--tail", "1"]));
    assert_eq!(tail, "later line\n");

    // Following prints the kept lines and keeps the stream open.
    let mut follow = Command::new(skiff_bin())
        .arg("ctl")
        .arg("--config")
        .arg(&cfg)
        .args(["--nodes", &node.addr, "logs", "agent", "-f", "--tail", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(follow.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert_eq!(first, "registered node\n");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        follow.try_wait().unwrap().is_none(),
        "a follower keeps running"
    );
    let _ = follow.kill();
    let _ = follow.wait();

    let err = fails(&node.ctl(&cfg, &["logs", "nope"]), 5);
    assert!(err.contains("no service named `nope`"), "{err}");

    let dmesg = ok(&node.ctl(&cfg, &["dmesg"]));
    assert_eq!(
        dmesg,
        "[    1.000000] Linux version 6.1.0\n[    2.500000] virtio_net: ready\n"
    );

    // A worker hands out no kubeconfig; upgrade says what is missing.
    let err = fails(&node.ctl(&cfg, &["kubeconfig"]), 5);
    assert!(
        err.contains("control-plane nodes hand out kubeconfigs"),
        "{err}"
    );
    let err = fails(&node.ctl(&cfg, &["upgrade", "img"]), 5);
    assert!(err.contains("not available yet"), "{err}");

    // Reboot: the service stops in order and (host mode) the server ends.
    let out = ok(&node.ctl(&cfg, &["reboot"]));
    assert!(out.contains("rebooting"), "{out}");
    let status = node
        .wait_exit(Duration::from_secs(15))
        .expect("serve-host ends after a reboot request");
    assert!(status.success());
    assert!(!pid_alive(pid), "the service was stopped");
}

#[test]
fn apply_config_accepts_only_signed_newer_configs() {
    let cluster = Cluster::generate();
    let node = Node::start(&cluster, "worker.yaml");
    let cfg = cluster.path("skiffconfig");
    let work = tempfile::tempdir().unwrap();
    let machine = node.state.join("machine");
    let snapshot = || {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&machine)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let before = snapshot();
    assert!(before.iter().any(|(name, _)| name == "generation"));

    let apply = |name: &str, bytes: &[u8]| {
        let path = work.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        node.ctl(&cfg, &["apply-config", path.to_str().unwrap()])
    };

    // Tampered: a byte of the signed payload flipped.
    let mut tampered = cluster.signed(skiff_machine::Role::Worker, "demo-worker", 2);
    let at = tampered.len() - 2;
    tampered[at] ^= 0x01;
    let err = fails(&apply("tampered.yaml", &tampered), 5);
    assert!(err.contains("config refused"), "{err}");
    assert_eq!(snapshot(), before, "nothing stored changed");

    // Signed by another cluster's key.
    let other = Cluster::generate();
    let foreign = other.signed(skiff_machine::Role::Worker, "demo-worker", 2);
    let err = fails(&apply("foreign.yaml", &foreign), 5);
    assert!(err.contains("sign it with the cluster's key"), "{err}");
    assert_eq!(snapshot(), before);

    // A good, newer one is stored for the next boot.
    let good = cluster.signed(skiff_machine::Role::Worker, "demo-worker", 3);
    let out = ok(&apply("good.yaml", &good));
    assert!(out.contains("config generation 3 stored"), "{out}");
    assert!(out.contains("reboot"), "{out}");
    assert_eq!(std::fs::read(machine.join("pending.yaml")).unwrap(), good);
    let after_good = snapshot();

    // Older than what is pending (and than what runs): refused, nothing changes.
    let older = cluster.signed(skiff_machine::Role::Worker, "demo-worker", 2);
    let err = fails(&apply("older.yaml", &older), 5);
    assert!(err.contains("refusing to roll back"), "{err}");
    let err = fails(
        &node.ctl(
            &cfg,
            &[
                "apply-config",
                cluster.path("worker.yaml").to_str().unwrap(),
            ],
        ),
        5,
    );
    assert!(
        err.contains("generation 1 is older than generation 3"),
        "{err}"
    );
    assert_eq!(snapshot(), after_good);

    let version = ok(&node.ctl(&cfg, &["version"]));
    assert!(version.contains("pending    generation 3"), "{version}");

    // A file that is not there is a local error.
    let err = fails(&node.ctl(&cfg, &["apply-config", "/nonexistent/x.yaml"]), 2);
    assert!(err.contains("cannot read /nonexistent/x.yaml"), "{err}");
}

#[test]
fn strangers_are_refused() {
    let cluster = Cluster::generate();
    let node = Node::start(&cluster, "worker.yaml");
    let other = Cluster::generate();
    let work = tempfile::tempdir().unwrap();

    // A client certificate from another cluster's CA (trusting ours, so only the server's
    // check stands in the way).
    let ours: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(cluster.path("skiffconfig")).unwrap())
            .unwrap();
    let theirs: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(other.path("skiffconfig")).unwrap()).unwrap();
    let mut mixed = ours.clone();
    for field in ["crt", "key"] {
        mixed["contexts"]["demo"][field] = theirs["contexts"]["demo"][field].clone();
    }
    let mixed_path = work.path().join("mixed");
    std::fs::write(&mixed_path, serde_yaml::to_string(&mixed).unwrap()).unwrap();
    let err = fails(&node.ctl(&mixed_path, &["version"]), 4);
    assert!(
        err.contains("does not accept this client certificate"),
        "{err}"
    );
    let err = fails(&node.ctl(&mixed_path, &["reboot"]), 4);
    assert!(err.contains("refused the TLS session"), "{err}");

    // Another cluster's skiffconfig altogether: the client does not trust this node.
    let err = fails(&node.ctl(&other.path("skiffconfig"), &["version"]), 4);
    assert!(
        err.contains("not from this cluster's machine-API CA"),
        "{err}"
    );

    // A plain TLS client without a certificate is refused by the server (TLS 1.3 alert 116).
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "sleep 1 | timeout 10 openssl s_client -connect {} -alpn h2 -servername skiff-machine-api",
            node.addr
        ))
        .stdin(Stdio::null())
        .output();
    let out = out.expect("openssl runs");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("alert certificate required"), "{all}");

    // The node is still up and serving its own cluster.
    ok(&node.ctl(&cluster.path("skiffconfig"), &["services"]));

    // Nothing listening: a one-line error that says what to check, exit 3.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = Command::new(skiff_bin())
        .arg("ctl")
        .arg("--config")
        .arg(cluster.path("skiffconfig"))
        .args(["--nodes", &addr, "version"])
        .output()
        .unwrap();
    let err = fails(&out, 3);
    assert!(
        err.contains(&format!("cannot reach {addr}: ")) && err.contains("is the node booted"),
        "{err}"
    );
}

#[test]
fn a_control_plane_hands_out_an_admin_kubeconfig() {
    let cluster = Cluster::generate();
    let node = Node::start(&cluster, "controlplane.yaml");
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("kubeconfig");
    let said = ok(&node.ctl(
        &cluster.path("skiffconfig"),
        &["kubeconfig", out.to_str().unwrap()],
    ));
    assert!(said.contains("admin kubeconfig written"), "{said}");
    // Stock kubectl reads it: the cluster's endpoint and an admin client certificate.
    let view = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&out)
        .args([
            "config",
            "view",
            "--raw",
            "-o",
            "jsonpath={.clusters[0].cluster.server} {.users[0].name}",
        ])
        .output()
        .unwrap();
    assert_eq!(ok(&view), "https://127.0.0.1:6443 skiff-admin");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}
