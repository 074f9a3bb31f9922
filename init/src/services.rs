//! The role's services and their supervision: what each role runs, starting a service only
//! once the port it needs accepts connections, restarting a service that exits (back-off
//! doubling from 1 s to 30 s, reset after a minute of uptime), its output kept in a bounded
//! buffer and mirrored to the console, and stopping everything in reverse order.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::sys::{Command, ExitKind, Sys};

/// Lines of output kept per service.
pub const LOG_LINES: usize = 1000;
/// Longest line kept (longer ones are cut).
pub const LOG_LINE_BYTES: usize = 4096;
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// How long one check of a service's start condition may take (it runs on every tick).
const AFTER_PROBE: Duration = Duration::from_millis(100);

/// A service's recent output: the last [`LOG_LINES`] lines.
#[derive(Debug, Default)]
pub struct LogBuffer {
    lines: VecDeque<String>,
    dropped: u64,
}

impl LogBuffer {
    pub fn push(&mut self, mut line: String) {
        if line.len() > LOG_LINE_BYTES {
            let mut cut = LOG_LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        if self.lines.len() == LOG_LINES {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(line);
    }

    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// One supervised service.
#[derive(Debug)]
pub struct Service {
    pub name: String,
    pub command: Command,
    pub pid: Option<i32>,
    pub restarts: u32,
    /// Started (and restarted) only while a TCP connection to this address opens.
    pub after: Option<SocketAddr>,
    said_waiting: bool,
    started_at: Duration,
    next_start: Duration,
    pub log: Arc<Mutex<LogBuffer>>,
}

impl Service {
    pub fn new(name: &str, command: Command) -> Self {
        Self {
            name: name.to_owned(),
            command,
            pid: None,
            restarts: 0,
            after: None,
            said_waiting: false,
            started_at: Duration::ZERO,
            next_start: Duration::ZERO,
            log: Arc::default(),
        }
    }

    /// Starts the service only once `addr` accepts TCP connections (e.g. the API server's
    /// port for the control plane's own agent).
    #[must_use]
    pub fn after(mut self, addr: SocketAddr) -> Self {
        self.after = Some(addr);
        self
    }
}

/// Starts, watches and stops the services of one role.
#[derive(Debug, Default)]
pub struct Supervisor {
    pub services: Vec<Service>,
}

fn describe(exit: ExitKind) -> String {
    match exit {
        ExitKind::Code(code) => format!("exit code {code}"),
        ExitKind::Signal(sig) => format!("signal {sig}"),
    }
}

impl Supervisor {
    pub fn new(services: Vec<Service>) -> Self {
        Self { services }
    }

    /// Starts every service that is down and due.
    pub fn start_due(&mut self, sys: &dyn Sys) {
        let now = sys.since_boot();
        for service in &mut self.services {
            if service.pid.is_some() || now < service.next_start {
                continue;
            }
            if let Some(addr) = service.after
                && !sys.tcp_probe(addr, AFTER_PROBE)
            {
                if !service.said_waiting {
                    sys.console(&format!(
                        "skiff: {} waits for {addr} to accept connections",
                        service.name
                    ));
                    service.said_waiting = true;
                }
                continue;
            }
            service.said_waiting = false;
            match sys.spawn(&service.command) {
                Ok(spawned) => {
                    sys.console(&format!(
                        "skiff: started {} (pid {})",
                        service.name, spawned.pid
                    ));
                    service.pid = Some(spawned.pid);
                    service.started_at = now;
                    if let Some(output) = spawned.output {
                        pump(&service.name, output, service.log.clone());
                    }
                }
                Err(e) => {
                    let wait = backoff(service.restarts);
                    service.restarts += 1;
                    service.next_start = now + wait;
                    sys.console(&format!(
                        "skiff: cannot start {}: {e}; retrying in {}s",
                        service.name,
                        wait.as_secs()
                    ));
                }
            }
        }
    }

    /// Handles reaped processes: a service that ended is scheduled to restart.
    pub fn exited(&mut self, sys: &dyn Sys, pid: i32, exit: ExitKind) {
        let now = sys.since_boot();
        let Some(service) = self.services.iter_mut().find(|s| s.pid == Some(pid)) else {
            return;
        };
        service.pid = None;
        if now.saturating_sub(service.started_at) >= HEALTHY_AFTER {
            service.restarts = 0;
        }
        let wait = backoff(service.restarts);
        service.restarts += 1;
        service.next_start = now + wait;
        sys.console(&format!(
            "skiff: {} exited ({}); restart {} in {}s",
            service.name,
            describe(exit),
            service.restarts,
            wait.as_secs()
        ));
    }

    /// Stops services in reverse start order: SIGTERM, then SIGKILL after `grace`.
    pub fn stop_all(&mut self, sys: &dyn Sys, grace: Duration) {
        for service in self.services.iter_mut().rev() {
            let Some(pid) = service.pid else { continue };
            sys.console(&format!("skiff: stopping {}", service.name));
            let _ = sys.kill(pid, Signal::SIGTERM);
            let deadline = sys.since_boot() + grace;
            let mut gone = false;
            while sys.since_boot() < deadline {
                if sys.reap().iter().any(|(p, _)| *p == pid) {
                    gone = true;
                    break;
                }
                sys.sleep(Duration::from_millis(100));
            }
            if !gone {
                sys.console(&format!(
                    "skiff: {} did not stop in {}s; killing it",
                    service.name,
                    grace.as_secs()
                ));
                let _ = sys.kill(pid, Signal::SIGKILL);
                sys.reap();
            }
            service.pid = None;
        }
    }
}

fn backoff(restarts: u32) -> Duration {
    BACKOFF_START
        .saturating_mul(1u32.checked_shl(restarts.min(16)).unwrap_or(u32::MAX))
        .min(BACKOFF_MAX)
}

/// Copies a service's output into its buffer and onto the console, line by line.
fn pump(name: &str, output: std::fs::File, log: Arc<Mutex<LogBuffer>>) {
    let name = name.to_owned();
    let spawned = std::thread::Builder::new()
        .name(format!("log-{name}"))
        .spawn(move || {
            let mut reader = BufReader::new(output);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&raw).trim_end().to_owned();
                eprintln!("[{name}] {line}");
                if let Ok(mut buffer) = log.lock() {
                    buffer.push(line);
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("skiff: cannot read the output of a service: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Call, Recorder};

    fn cmd(program: &str) -> Command {
        Command {
            program: program.into(),
            args: vec![],
            env: vec![],
        }
    }

    #[test]
    fn log_buffer_is_bounded() {
        let mut log = LogBuffer::default();
        for i in 0..(LOG_LINES + 5) {
            log.push(format!("line {i}"));
        }
        assert_eq!(log.lines().count(), LOG_LINES);
        assert_eq!(log.lines().next(), Some("line 5"));
        assert_eq!(log.dropped(), 5);
        log.push("é".repeat(LOG_LINE_BYTES));
        assert!(log.lines().last().unwrap().len() <= LOG_LINE_BYTES);
    }

    #[test]
    fn backoff_doubles_up_to_a_limit() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(10), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn restarts_a_service_after_its_back_off() {
        let sys = Recorder::default();
        let mut sup = Supervisor::new(vec![Service::new("server", cmd("/init"))]);
        sup.start_due(&sys);
        let pid = sup.services[0].pid.unwrap();
        sys.advance(Duration::from_secs(5));
        sup.exited(&sys, pid, ExitKind::Code(1));
        assert!(sup.services[0].pid.is_none());
        sup.start_due(&sys);
        assert!(sup.services[0].pid.is_none(), "started before its back-off");
        sys.advance(Duration::from_millis(1100));
        sup.start_due(&sys);
        assert!(sup.services[0].pid.is_some());
        assert_eq!(sys.spawned().len(), 2);
        assert!(
            sys.console_text()
                .contains("server exited (exit code 1); restart 1 in 1s")
        );
        // An unknown pid (an orphan that was re-parented to init) changes nothing.
        sup.exited(&sys, 4242, ExitKind::Code(0));
        assert!(sup.services[0].pid.is_some());
    }

    #[test]
    fn a_service_with_a_start_condition_waits_for_its_port() {
        let sys = Recorder::default();
        let api = SocketAddr::from(([127, 0, 0, 1], 6443));
        let mut sup = Supervisor::new(vec![
            Service::new("server", cmd("/server")),
            Service::new("agent", cmd("/agent")).after(api),
        ]);
        for _ in 0..5 {
            sup.start_due(&sys);
            sys.advance(Duration::from_millis(200));
        }
        let programs = |sys: &Recorder| -> Vec<String> {
            sys.spawned()
                .into_iter()
                .map(|(_, c)| c.program.display().to_string())
                .collect()
        };
        assert_eq!(programs(&sys), ["/server"]);
        assert_eq!(
            sys.console_text()
                .matches("agent waits for 127.0.0.1:6443")
                .count(),
            1,
            "said once, not on every tick"
        );
        sys.listening(api);
        sup.start_due(&sys);
        assert_eq!(programs(&sys), ["/server", "/agent"]);
    }

    #[test]
    fn stops_in_reverse_order() {
        let sys = Recorder::default();
        let mut sup = Supervisor::new(vec![
            Service::new("first", cmd("/a")),
            Service::new("second", cmd("/b")),
        ]);
        sup.start_due(&sys);
        sys.exit_on_term(true);
        sup.stop_all(&sys, Duration::from_secs(1));
        let kills: Vec<i32> = sys
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Kill(pid, Signal::SIGTERM) => Some(pid),
                _ => None,
            })
            .collect();
        assert_eq!(kills, vec![sup_pid(&sys, 1), sup_pid(&sys, 0)]);
        assert!(sup.services.iter().all(|s| s.pid.is_none()));
    }

    fn sup_pid(sys: &Recorder, nth: usize) -> i32 {
        sys.spawned()[nth].0
    }

    #[test]
    fn kills_a_service_that_ignores_sigterm() {
        let sys = Recorder::default();
        let mut sup = Supervisor::new(vec![Service::new("stubborn", cmd("/a"))]);
        sup.start_due(&sys);
        sup.stop_all(&sys, Duration::from_secs(1));
        assert!(
            sys.calls()
                .iter()
                .any(|c| matches!(c, Call::Kill(_, Signal::SIGKILL)))
        );
        assert!(sys.console_text().contains("did not stop"));
    }
}
