//! Child processes under test, killed and reaped when their [`Proc`] is dropped, and what
//! `/proc` says about them.
//!
//! The release profile aborts on panic, so `Drop` alone is not enough: every live child is also
//! listed in a process-wide registry that [`install_panic_cleanup`] kills from the panic hook.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

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
    let pids: Vec<i32> = LIVE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .copied()
        .collect();
    for raw in pids {
        kill(raw);
    }
}

/// SIGKILL one process (not necessarily our child); nothing happens for pid 0 or a gone pid.
pub fn kill(raw: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(raw) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// A running child whose stdout and stderr go to a log file; killed and reaped on drop.
pub struct Proc {
    child: Child,
    pid: i32,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: &Path) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("create {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawn {:?}", cmd.get_program()))?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        LIVE.lock().unwrap_or_else(|p| p.into_inner()).insert(pid);
        Ok(Self {
            child,
            pid,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How it exited, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// An error with the end of its log if it has exited.
    pub fn check_alive(&mut self, what: &str) -> Result<()> {
        if let Some(status) = self.exited() {
            bail!("{what} exited ({status}):\n{}", self.log_tail());
        }
        Ok(())
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last 20 lines of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.pid);
    }
}

/// The last 20 lines of a log file (empty when it cannot be read).
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Memory and threads of a process as the kernel reports them in `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Status {
    /// Resident set size now, KiB.
    pub rss_kib: u64,
    /// Peak resident set size, KiB.
    pub hwm_kib: u64,
    pub threads: u64,
}

/// Read `VmRSS`, `VmHWM` and `Threads` of `pid`.
pub fn status(pid: u32) -> Result<Status> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let v = v.trim().trim_end_matches("kB").trim();
        v.parse().with_context(|| format!("bad {name} value {v:?}"))
    };
    Ok(Status {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        threads: field("Threads:")?,
    })
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    parse_cpu_time(&text).with_context(|| format!("bad /proc/{pid}/stat: {text:?}"))
}

/// `utime + stime` of a `/proc/PID/stat` line. The command name is in parentheses and may hold
/// spaces, so fields are counted after the last `)`. The kernel reports them in USER_HZ, which
/// is 100 on every Linux architecture that matters here.
fn parse_cpu_time(stat: &str) -> Option<Duration> {
    const USER_HZ: u64 = 100;
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state(3) ppid(4) ... utime(14) stime(15), i.e. the 12th and 13th fields.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn memory_of_self_is_plausible() {
        let m = status(std::process::id()).unwrap();
        assert!(m.rss_kib > 100, "rss {} KiB", m.rss_kib);
        assert!(m.hwm_kib >= m.rss_kib);
        assert!(m.threads >= 1, "{m:?}");
    }

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_cpu_time(line), Some(Duration::from_millis(3250)));
        assert_eq!(parse_cpu_time("42 (x) S 1"), None);
        // Burn CPU until the kernel has charged some to this process (slow on a busy machine).
        let spin = Instant::now();
        let me = std::process::id();
        while cpu_time(me).unwrap() < Duration::from_millis(20) {
            assert!(
                spin.elapsed() < Duration::from_secs(30),
                "no CPU time charged"
            );
            std::hint::black_box((0..10_000u64).sum::<u64>());
        }
    }

    #[test]
    fn proc_kills_and_unregisters_child() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        let guard = Proc::spawn(cmd, &dir.path().join("log")).unwrap();
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
        let mut guard = Proc::spawn(cmd, &dir.path().join("log")).unwrap();
        kill_all_live();
        let status = guard.child.wait().unwrap();
        assert!(
            !status.success(),
            "sleep should have been killed, got {status}"
        );
    }
}
