//! Host mode: the machine API over a plain Linux host, for development and the integration
//! tests (`skiff ctl serve-host`). It verifies a signed config as a node would, runs the given
//! commands as its "services" (output kept in bounded buffers), and keeps its config files in a
//! state directory. It never reboots the host: Reboot, Shutdown and Reset stop the services
//! and end [`HostNode::stopped`] instead (Reset also wipes the state directory).

use std::collections::VecDeque;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use skiff_machine::{PublicKey, VerifiedConfig};
use tokio::sync::watch;

use crate::node::{
    Generations, LogChunk, NodeControl, NodeError, NodeVersion, Power, ServiceInfo, ServiceState,
    Stored,
};
use crate::state::{ConfigStore, admin_kubeconfig, kernel_release};

/// Lines kept per service.
const LOG_LINES: usize = 1000;

/// What a host-mode node runs.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The signed machine config the "node" booted with.
    pub config: Vec<u8>,
    pub trusted: Vec<PublicKey>,
    /// Where the config files live (`generation`, `config.yaml`, `pending.yaml`).
    pub state_dir: PathBuf,
    /// Services: a name and a program with its arguments.
    pub services: Vec<(String, Vec<String>)>,
    /// The kernel log to serve (default `/dev/kmsg`).
    pub kmsg: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct Log {
    lines: VecDeque<String>,
    dropped: u64,
}

struct HostService {
    name: String,
    child: Mutex<Option<Child>>,
    log: Arc<Mutex<Log>>,
}

/// A host pretending to be a node.
pub struct HostNode {
    verified: VerifiedConfig,
    trusted: Vec<PublicKey>,
    store: ConfigStore,
    services: Vec<HostService>,
    kmsg: Option<PathBuf>,
    started: Instant,
    stop: watch::Sender<Option<Power>>,
}

impl HostNode {
    /// Verifies the config (signature, schema, generation against the state directory),
    /// records it as applied and starts the services.
    pub fn start(opts: HostOptions) -> Result<Self, NodeError> {
        let verified = skiff_machine::verify(&opts.config, &opts.trusted)
            .map_err(|e| NodeError::Other(format!("config refused: {e}")))?;
        let store = ConfigStore::new(opts.state_dir.join("machine"), true);
        let generations = store.generations();
        skiff_machine::check_generation(generations.applied, &verified.config)
            .map_err(|e| NodeError::Other(format!("config refused: {e}")))?;
        store.record_applied(verified.config.generation.get(), &opts.config)?;
        let mut services = Vec::new();
        for (name, argv) in opts.services {
            services.push(spawn(&name, &argv)?);
        }
        let (stop, _) = watch::channel(None);
        Ok(Self {
            verified,
            trusted: opts.trusted,
            store,
            services,
            kmsg: opts.kmsg,
            started: Instant::now(),
            stop,
        })
    }

    /// Completes when a client asked to reboot, power off or reset; returns which.
    pub fn stopped(&self) -> impl Future<Output = Power> + Send + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            loop {
                if let Some(power) = *rx.borrow_and_update() {
                    return power;
                }
                if rx.changed().await.is_err() {
                    return Power::PowerOff;
                }
            }
        }
    }

    /// Stops every service (SIGKILL; host mode has nothing to shut down gracefully).
    pub fn stop_services(&self) {
        for service in &self.services {
            if let Ok(mut child) = service.child.lock()
                && let Some(child) = child.as_mut()
            {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    pub fn verified(&self) -> &VerifiedConfig {
        &self.verified
    }
}

impl Drop for HostNode {
    fn drop(&mut self) {
        self.stop_services();
    }
}

fn spawn(name: &str, argv: &[String]) -> Result<HostService, NodeError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| NodeError::Other(format!("service `{name}` has no command")))?;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NodeError::io(format!("start service `{name}` ({program})")))?;
    let log = Arc::new(Mutex::new(Log::default()));
    if let Some(out) = child.stdout.take() {
        pump(out, log.clone());
    }
    if let Some(err) = child.stderr.take() {
        pump(err, log.clone());
    }
    Ok(HostService {
        name: name.to_owned(),
        child: Mutex::new(Some(child)),
        log,
    })
}

fn pump(output: impl std::io::Read + Send + 'static, log: Arc<Mutex<Log>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(output);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&raw).trim_end().to_owned();
            if let Ok(mut log) = log.lock() {
                if log.lines.len() == LOG_LINES {
                    log.lines.pop_front();
                    log.dropped += 1;
                }
                log.lines.push_back(line);
            }
        }
    });
}

impl NodeControl for HostNode {
    fn version(&self) -> NodeVersion {
        let config = &self.verified.config;
        NodeVersion {
            skiff_version: env!("CARGO_PKG_VERSION").to_owned(),
            kernel: kernel_release(),
            hostname: config.machine.hostname.to_string(),
            role: crate::server::role_name(config.role).to_owned(),
            config_generation: config.generation.get(),
            config_sha256: self.verified.sha256.clone(),
            boot: vec![("serving".to_owned(), self.started.elapsed())],
        }
    }

    fn services(&self) -> Vec<ServiceInfo> {
        self.services
            .iter()
            .map(|s| {
                let mut guard = s.child.lock().unwrap_or_else(|e| e.into_inner());
                let (state, pid) = match guard.as_mut() {
                    Some(child) => match child.try_wait() {
                        Ok(None) => (ServiceState::Running, i32::try_from(child.id()).ok()),
                        _ => (ServiceState::Stopped, None),
                    },
                    None => (ServiceState::Stopped, None),
                };
                ServiceInfo {
                    name: s.name.clone(),
                    state,
                    restarts: 0,
                    pid,
                }
            })
            .collect()
    }

    fn log_lines(&self, service: &str, since: u64) -> Result<LogChunk, NodeError> {
        let s = self
            .services
            .iter()
            .find(|s| s.name == service)
            .ok_or_else(|| NodeError::NoSuchService(service.to_owned()))?;
        let log = s.log.lock().unwrap_or_else(|e| e.into_inner());
        let skip = usize::try_from(since.saturating_sub(log.dropped)).unwrap_or(usize::MAX);
        let first = log.dropped + u64::try_from(skip.min(log.lines.len())).unwrap_or(0);
        Ok(LogChunk {
            first,
            lines: log.lines.iter().skip(skip).cloned().collect(),
        })
    }

    fn kmsg_path(&self) -> PathBuf {
        self.kmsg
            .clone()
            .unwrap_or_else(|| PathBuf::from("/dev/kmsg"))
    }

    fn power(&self, action: Power) -> Result<(), NodeError> {
        self.stop.send_replace(Some(action));
        Ok(())
    }

    fn trusted_keys(&self) -> Vec<PublicKey> {
        self.trusted.clone()
    }

    fn generations(&self) -> Generations {
        self.store.generations()
    }

    fn store_config(&self, _config: &VerifiedConfig, raw: &[u8]) -> Result<Stored, NodeError> {
        self.store.store_pending(raw)
    }

    fn kubeconfig(&self) -> Result<Vec<u8>, NodeError> {
        admin_kubeconfig(&self.verified.config)
    }

    fn reset(&self) -> Result<(), NodeError> {
        self.store.mark_reset()?;
        self.stop.send_replace(Some(Power::Reboot));
        Ok(())
    }
}
