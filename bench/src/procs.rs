//! Child processes under test: `skiff server` and `etcd`, each on a temp data directory and
//! loopback ports, killed when their guard is dropped.
//!
//! The release profile aborts on panic, so `Drop` alone is not enough: every live child is also
//! listed in a process-wide registry that [`install_panic_cleanup`] kills from the panic hook.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Pids of children that are started and not yet reaped.
static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Kill every live child from the panic hook, before the default hook (and the abort) runs.
pub fn install_panic_cleanup() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_all_live();
        default(info);
    }));
}

/// SIGKILL every registered child. Their pids cannot have been reused: a child that has not
/// been waited for stays a zombie and keeps its pid.
pub fn kill_all_live() {
    let pids: Vec<i32> = match LIVE.lock() {
        Ok(set) => set.iter().copied().collect(),
        Err(poisoned) => poisoned.into_inner().iter().copied().collect(),
    };
    for raw in pids {
        if let Some(pid) = rustix::process::Pid::from_raw(raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// A running child that is killed and reaped on drop.
struct Guard {
    child: Child,
    pid: i32,
}

impl Guard {
    fn spawn(mut cmd: Command, log: &Path) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("create {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawn {:?}", cmd.get_program()))?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        LIVE.lock().unwrap_or_else(|p| p.into_inner()).insert(pid);
        Ok(Self { child, pid })
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.pid);
    }
}

/// Memory of a process as the kernel reports it in `/proc/PID/status`.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Resident set size now, KiB.
    pub rss_kib: u64,
    /// Peak resident set size, KiB.
    pub hwm_kib: u64,
}

/// Read `VmRSS` and `VmHWM` of `pid`.
pub fn memory(pid: u32) -> Result<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kib = line.trim().trim_end_matches("kB").trim();
        kib.parse()
            .with_context(|| format!("bad {name} value {kib:?}"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `skiff server` on a fresh data directory, serving on a loopback port.
pub struct Skiff {
    guard: Guard,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Skiff {
    /// Start `bin server` and wait (at most 30 s) until it has written its kubeconfig.
    pub fn start(bin: &Path) -> Result<Self> {
        if !bin.exists() {
            bail!(
                "{} is missing: run `cargo build --release --bin skiff` first (or pass --skiff)",
                bin.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("api-bench-skiff")
            .tempdir()?;
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        let port = free_port()?;
        let mut cmd = Command::new(bin);
        cmd.arg("server")
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("SKIFF_LOG", "warn");
        let mut guard = Guard::spawn(cmd, &log)?;
        let kubeconfig = data.join("kubeconfig");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kubeconfig.exists() {
            if let Some(status) = guard.exited() {
                bail!("skiff server exited early ({status}):\n{}", tail(&log));
            }
            if Instant::now() > deadline {
                bail!("skiff server wrote no kubeconfig in 30 s:\n{}", tail(&log));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The file may be observed while it is being written; give the writer a moment.
        std::thread::sleep(Duration::from_millis(100));
        Ok(Self {
            guard,
            kubeconfig,
            _dir: dir,
        })
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn pid(&self) -> u32 {
        self.guard.child.id()
    }
}

/// A single-member etcd on loopback ports and a fresh data directory.
pub struct Etcd {
    _guard: Guard,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Start `bin` (normally `etcd` from the Debian `etcd-server` package).
    pub fn start(bin: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("api-bench-etcd")
            .tempdir()?;
        let log = dir.path().join("etcd.log");
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let endpoint = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut cmd = Command::new(bin);
        cmd.arg("--name=bench")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=bench={peer}"))
            .arg("--log-level=warn");
        let mut guard = Guard::spawn(cmd, &log).with_context(|| {
            format!(
                "start {} (Debian: apt-get install etcd-server)",
                bin.display()
            )
        })?;
        std::thread::sleep(Duration::from_millis(200));
        if let Some(status) = guard.exited() {
            bail!("etcd exited early ({status}):\n{}", tail(&log));
        }
        Ok(Self {
            _guard: guard,
            endpoint,
            _dir: dir,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_of_self_is_plausible() {
        let m = memory(std::process::id()).unwrap();
        assert!(m.rss_kib > 100, "rss {} KiB", m.rss_kib);
        assert!(m.hwm_kib >= m.rss_kib);
    }

    #[test]
    fn guard_kills_and_unregisters_child() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        let guard = Guard::spawn(cmd, &dir.path().join("log")).unwrap();
        let pid = guard.pid;
        assert!(LIVE.lock().unwrap().contains(&pid));
        drop(guard);
        assert!(!LIVE.lock().unwrap().contains(&pid));
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn panic_cleanup_kills_registered_children() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        let mut guard = Guard::spawn(cmd, &dir.path().join("log")).unwrap();
        kill_all_live();
        let status = guard.child.wait().unwrap();
        assert!(
            !status.success(),
            "sleep should have been killed, got {status}"
        );
    }

    #[test]
    fn missing_skiff_binary_is_an_error() {
        let err = Skiff::start(Path::new("/nonexistent/skiff")).err().unwrap();
        assert!(err.to_string().contains("is missing"), "{err}");
    }
}
