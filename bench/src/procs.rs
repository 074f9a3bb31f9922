//! The processes api-bench measures: `skiff server` and `etcd`, each on a temp data directory
//! and loopback ports, killed when dropped (see [`skiff_bench::child`]).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use skiff_bench::child::Proc;

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

/// `skiff server` on a fresh data directory, serving on a loopback port.
pub struct Skiff {
    guard: Proc,
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
            // The API server alone: controllers would schedule, fail and write events for the
            // benchmark's pods, which measures something else (see the controllers benchmark).
            .arg("--no-controllers")
            .env("SKIFF_LOG", "warn");
        let mut guard = Proc::spawn(cmd, &log)?;
        let kubeconfig = data.join("kubeconfig");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kubeconfig.exists() {
            if let Some(status) = guard.exited() {
                bail!(
                    "skiff server exited early ({status}):\n{}",
                    guard.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "skiff server wrote no kubeconfig in 30 s:\n{}",
                    guard.log_tail()
                );
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
        self.guard.pid()
    }
}

/// A single-member etcd on loopback ports and a fresh data directory.
pub struct Etcd {
    guard: Proc,
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
        let mut guard = Proc::spawn(cmd, &log).with_context(|| {
            format!(
                "start {} (Debian: apt-get install etcd-server)",
                bin.display()
            )
        })?;
        std::thread::sleep(Duration::from_millis(200));
        if let Some(status) = guard.exited() {
            bail!("etcd exited early ({status}):\n{}", guard.log_tail());
        }
        Ok(Self {
            guard,
            endpoint,
            _dir: dir,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_skiff_binary_is_an_error() {
        let err = Skiff::start(Path::new("/nonexistent/skiff")).err().unwrap();
        assert!(err.to_string().contains("is missing"), "{err}");
    }
}
