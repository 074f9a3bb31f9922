//! The machine API on a real node: PID 1's side of `skiff ctl`.
//!
//! - [`MachineApi`] is what the main loop shares with the server: the verified config, the
//!   boot timeline and a view of the supervised services, published every tick. Once a config
//!   is verified, [`MachineApi::config_applied`] starts the server on port 50000 in its own
//!   thread (a small tokio runtime); the server acts on the node only through this state and
//!   the [`PowerRequests`] flags, so reboot and shutdown take the main loop's orderly path.
//! - [`prefer_stored`] is the boot-time half of ApplyConfig and Reset: right after the state
//!   disk is mounted it wipes the state when a reset was requested, and prefers a config
//!   stored on the disk (by ApplyConfig, or applied at an earlier boot) over the one the boot
//!   found when its generation is higher and it verifies.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_machine::{PublicKey, Role, VerifiedConfig};
use skiff_machine_api::{
    ConfigStore, Generations, LogChunk, NodeControl, NodeError, NodeVersion, Power, ServiceInfo,
    ServiceState, Stored,
};

use crate::PowerRequests;
use crate::boot::{Found, Timeline, paths};
use crate::services::{LogBuffer, Supervisor};
use crate::sys::Sys;

/// Where the config files live (the directory of [`paths::GENERATION`]).
const MACHINE_DIR: &str = "/var/lib/skiff/machine";

/// One supervised service as the machine API sees it.
#[derive(Debug, Clone)]
struct ServiceView {
    name: String,
    pid: Option<i32>,
    restarts: u32,
    log: Arc<Mutex<LogBuffer>>,
}

#[derive(Debug, Default)]
struct Published {
    verified: Option<VerifiedConfig>,
    keys: Vec<PublicKey>,
    persistent: bool,
    timeline: Vec<(String, Duration)>,
    services: Vec<ServiceView>,
}

/// The node state PID 1 shares with its machine API server.
#[derive(Debug, Clone, Default)]
pub struct MachineApi {
    requests: PowerRequests,
    state: Arc<Mutex<Published>>,
    started: Arc<std::sync::atomic::AtomicBool>,
}

impl MachineApi {
    /// Acting on `requests` for Reboot, Shutdown and Reset.
    pub fn new(requests: PowerRequests) -> Self {
        Self {
            requests,
            ..Self::default()
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Published) -> T) -> T {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut state)
    }

    /// Records the config the node runs and starts the server (once).
    pub fn config_applied(
        &self,
        sys: &dyn Sys,
        verified: &VerifiedConfig,
        keys: &[PublicKey],
        persistent: bool,
    ) {
        self.with(|s| {
            s.verified = Some(verified.clone());
            s.keys = keys.to_vec();
            s.persistent = persistent;
        });
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let identity = match skiff_machine_api::node_identity(&verified.config, &[]) {
            Ok(identity) => identity,
            Err(e) => {
                sys.console(&format!(
                    "skiff: the machine API is not served: {}",
                    chain(&e)
                ));
                return;
            }
        };
        let creds = skiff_machine_api::Credentials {
            ca_pem: verified.config.cluster.machine_ca.as_str().to_owned(),
            identity,
        };
        let tls = match skiff_machine_api::server_config(&creds) {
            Ok(tls) => tls,
            Err(e) => {
                sys.console(&format!(
                    "skiff: the machine API is not served: {}",
                    chain(&e)
                ));
                return;
            }
        };
        let node = Arc::new(InitNode { api: self.clone() });
        let spawned = std::thread::Builder::new()
            .name("machine-api".to_owned())
            .spawn(move || serve_forever(tls, node));
        match spawned {
            Ok(_) => sys.console(&format!(
                "skiff: machine API on port {} (mutual TLS; `skiff ctl`)",
                skiff_machine_api::PORT
            )),
            Err(e) => sys.console(&format!("skiff: cannot start the machine API: {e}")),
        }
    }

    /// Publishes the timeline and the services' state (called every tick).
    pub fn publish(&self, timeline: &Timeline, supervisor: &Supervisor) {
        self.with(|s| {
            if s.timeline.len() != timeline.phases.len() {
                s.timeline.clone_from(&timeline.phases);
            }
            s.services = supervisor
                .services
                .iter()
                .map(|svc| ServiceView {
                    name: svc.name.clone(),
                    pid: svc.pid,
                    restarts: svc.restarts,
                    log: svc.log.clone(),
                })
                .collect();
        });
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Runs the server until the process ends; a bind failure is retried (the network may still
/// be coming up).
fn serve_forever(tls: rustls::ServerConfig, node: Arc<InitNode>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skiff: machine API: cannot start its runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        let addr = std::net::SocketAddr::from(([0, 0, 0, 0], skiff_machine_api::PORT));
        loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    let result = skiff_machine_api::serve(
                        listener,
                        tls.clone(),
                        node.clone(),
                        std::future::pending(),
                    )
                    .await;
                    if let Err(e) = result {
                        eprintln!("skiff: machine API stopped: {}", chain(&e));
                    }
                }
                Err(e) => eprintln!("skiff: machine API cannot listen on {addr}: {e}; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
}

/// The real node behind the machine API.
struct InitNode {
    api: MachineApi,
}

impl InitNode {
    fn store(&self) -> ConfigStore {
        ConfigStore::new(MACHINE_DIR, self.api.with(|s| s.persistent))
    }
}

impl NodeControl for InitNode {
    fn version(&self) -> NodeVersion {
        self.api.with(|s| {
            let mut version = NodeVersion {
                skiff_version: env!("CARGO_PKG_VERSION").to_owned(),
                kernel: skiff_machine_api::kernel_release(),
                boot: s.timeline.clone(),
                ..NodeVersion::default()
            };
            if let Some(v) = &s.verified {
                version.hostname = v.config.machine.hostname.to_string();
                version.role = match v.config.role {
                    Role::ControlPlane => "controlplane",
                    Role::Worker => "worker",
                }
                .to_owned();
                version.config_generation = v.config.generation.get();
                version.config_sha256.clone_from(&v.sha256);
            }
            version
        })
    }

    fn services(&self) -> Vec<ServiceInfo> {
        self.api.with(|s| {
            s.services
                .iter()
                .map(|svc| ServiceInfo {
                    name: svc.name.clone(),
                    state: if svc.pid.is_some() {
                        ServiceState::Running
                    } else {
                        ServiceState::Waiting
                    },
                    restarts: svc.restarts,
                    pid: svc.pid,
                })
                .collect()
        })
    }

    fn log_lines(&self, service: &str, since: u64) -> Result<LogChunk, NodeError> {
        let log = self
            .api
            .with(|s| {
                s.services
                    .iter()
                    .find(|svc| svc.name == service)
                    .map(|svc| svc.log.clone())
            })
            .ok_or_else(|| NodeError::NoSuchService(service.to_owned()))?;
        let log = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(chunk(&log, since))
    }

    fn power(&self, action: Power) -> Result<(), NodeError> {
        let flag = match action {
            Power::Reboot => &self.api.requests.reboot,
            Power::PowerOff => &self.api.requests.poweroff,
        };
        flag.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn trusted_keys(&self) -> Vec<PublicKey> {
        self.api.with(|s| s.keys.clone())
    }

    fn generations(&self) -> Generations {
        let mut generations = self.store().generations();
        // Without a state disk the generation file may be missing; the running config counts.
        let running = self
            .api
            .with(|s| s.verified.as_ref().map(|v| v.config.generation.get()));
        generations.applied = generations.applied.max(running);
        generations
    }

    fn store_config(&self, _config: &VerifiedConfig, raw: &[u8]) -> Result<Stored, NodeError> {
        self.store().store_pending(raw)
    }

    fn kubeconfig(&self) -> Result<Vec<u8>, NodeError> {
        let verified = self.api.with(|s| s.verified.clone());
        match verified {
            Some(v) => skiff_machine_api::admin_kubeconfig(&v.config),
            None => Err(NodeError::NotHere("the node runs no config yet".to_owned())),
        }
    }

    fn reset(&self) -> Result<(), NodeError> {
        self.store().mark_reset()?;
        self.power(Power::Reboot)
    }
}

/// The lines of `log` from sequence number `since` on.
fn chunk(log: &LogBuffer, since: u64) -> LogChunk {
    let kept: Vec<&str> = log.lines().collect();
    let skip = usize::try_from(since.saturating_sub(log.dropped()))
        .unwrap_or(usize::MAX)
        .min(kept.len());
    LogChunk {
        first: log.dropped() + u64::try_from(skip).unwrap_or(0),
        lines: kept[skip..].iter().map(|l| (*l).to_owned()).collect(),
    }
}

/// Boot-time half of Reset and ApplyConfig, run right after the state disk is mounted: wipes
/// the state when a reset was requested, then picks the newest config among the one the boot
/// found, the one ApplyConfig stored and the one applied at an earlier boot (each must verify).
pub fn prefer_stored(
    sys: &dyn Sys,
    keys: &[PublicKey],
    verified: VerifiedConfig,
    found: Found,
) -> (VerifiedConfig, Found) {
    let reset_marker = format!("{MACHINE_DIR}/{}", skiff_machine_api::RESET_FILE);
    if sys.exists(&reset_marker) {
        sys.console("skiff: reset requested through the machine API; wiping the node's state");
        match sys.remove_all(paths::STATE) {
            Ok(()) => {
                let _ = sys.mkdir_all(paths::STATE);
            }
            Err(e) => sys.console(&format!(
                "skiff: cannot wipe {}: {e}; removing the reset marker",
                paths::STATE
            )),
        }
        let _ = sys.remove_all(&reset_marker);
        return (verified, found);
    }
    let mut best = (verified, found);
    let stored = [
        (
            format!("{MACHINE_DIR}/{}", skiff_machine_api::PENDING_FILE),
            "the config stored by apply-config",
        ),
        (
            paths::APPLIED_CONFIG.to_owned(),
            "the config applied at the last boot",
        ),
    ];
    for (path, what) in stored {
        let Ok(bytes) = sys.read(&path) else { continue };
        match skiff_machine::verify(&bytes, keys) {
            Ok(v) if v.config.generation > best.0.config.generation => {
                sys.console(&format!(
                    "skiff: using {what} ({path}, generation {}) over {} (generation {})",
                    v.config.generation, best.1.source, best.0.config.generation
                ));
                best = (
                    v,
                    Found {
                        source: path.clone(),
                        bytes,
                    },
                );
            }
            Ok(_) => {}
            Err(e) => sys.console(&format!("skiff: ignoring {what} at {path}: {e}")),
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Recorder;
    use skiff_genconfig::{ClusterSecrets, NodeSpec};

    fn signed(secrets: &ClusterSecrets, generation: u64) -> Vec<u8> {
        let mut spec = NodeSpec::new(Role::Worker, "w-1".parse().unwrap());
        spec.generation = generation;
        secrets.signed_config(&spec).unwrap()
    }

    fn found(secrets: &ClusterSecrets, generation: u64) -> (VerifiedConfig, Found) {
        let bytes = signed(secrets, generation);
        let v = skiff_machine::verify(&bytes, &[secrets.public_key()]).unwrap();
        (
            v,
            Found {
                source: "qemu fw_cfg".into(),
                bytes,
            },
        )
    }

    #[test]
    fn a_newer_stored_config_wins_and_an_older_or_foreign_one_does_not() {
        let secrets = ClusterSecrets::generate("demo", "https://10.0.0.1:6443").unwrap();
        let keys = [secrets.public_key()];
        let sys = Recorder::default();
        let (v, f) = found(&secrets, 2);
        // Nothing stored: the found config stays.
        let (got, _) = prefer_stored(&sys, &keys, v.clone(), f.clone());
        assert_eq!(got.config.generation.get(), 2);

        // An older stored one and a foreign newer one are ignored.
        sys.file("/var/lib/skiff/machine/config.yaml", signed(&secrets, 1));
        let other = ClusterSecrets::generate("demo", "https://10.0.0.1:6443").unwrap();
        sys.file("/var/lib/skiff/machine/pending.yaml", signed(&other, 9));
        let (got, _) = prefer_stored(&sys, &keys, v.clone(), f.clone());
        assert_eq!(got.config.generation.get(), 2);
        assert!(
            sys.console_text()
                .contains("ignoring the config stored by apply-config")
        );

        // A newer pending one wins, with its own bytes.
        let pending = signed(&secrets, 4);
        sys.file("/var/lib/skiff/machine/pending.yaml", pending.clone());
        let (got, from) = prefer_stored(&sys, &keys, v.clone(), f.clone());
        assert_eq!(got.config.generation.get(), 4);
        assert_eq!(from.bytes, pending);
        assert_eq!(from.source, "/var/lib/skiff/machine/pending.yaml");

        // After that boot applied it, the applied copy keeps winning over the firmware's.
        sys.remove_all("/var/lib/skiff/machine/pending.yaml")
            .unwrap();
        sys.file("/var/lib/skiff/machine/config.yaml", pending.clone());
        let (got, _) = prefer_stored(&sys, &keys, v, f);
        assert_eq!(got.config.generation.get(), 4);
    }

    #[test]
    fn reset_wipes_state_once() {
        let secrets = ClusterSecrets::generate("demo", "https://10.0.0.1:6443").unwrap();
        let keys = [secrets.public_key()];
        let sys = Recorder::default();
        sys.file("/var/lib/skiff/server/store.redb", "data");
        sys.file("/var/lib/skiff/machine/generation", "7");
        sys.file("/var/lib/skiff/machine/pending.yaml", signed(&secrets, 9));
        sys.file("/var/lib/skiff/machine/reset-requested", "x");
        let (v, f) = found(&secrets, 1);
        let (got, _) = prefer_stored(&sys, &keys, v, f);
        assert_eq!(
            got.config.generation.get(),
            1,
            "stored configs were wiped too"
        );
        for path in [
            "/var/lib/skiff/server/store.redb",
            "/var/lib/skiff/machine/generation",
            "/var/lib/skiff/machine/pending.yaml",
            "/var/lib/skiff/machine/reset-requested",
        ] {
            assert!(sys.read_back(path).is_none(), "{path} survived");
        }
        assert!(sys.console_text().contains("wiping the node's state"));
    }

    #[test]
    fn log_chunks_follow_sequence_numbers() {
        let mut log = LogBuffer::default();
        for i in 0..(crate::services::LOG_LINES + 2) {
            log.push(format!("l{i}"));
        }
        let all = chunk(&log, 0);
        assert_eq!(all.first, 2);
        assert_eq!(all.lines[0], "l2");
        let end = all.end();
        assert!(chunk(&log, end).lines.is_empty());
        log.push("new".into());
        let fresh = chunk(&log, end);
        assert_eq!(
            (fresh.first, fresh.lines.as_slice()),
            (end, &["new".to_owned()][..])
        );
    }

    #[test]
    fn power_requests_reach_the_main_loop_flags() {
        let requests = PowerRequests::default();
        let api = MachineApi::new(requests.clone());
        let node = InitNode { api };
        node.power(Power::PowerOff).unwrap();
        assert!(requests.poweroff.load(Ordering::Relaxed));
        assert!(!requests.reboot.load(Ordering::Relaxed));
        assert!(node.services().is_empty());
        assert!(matches!(node.kubeconfig(), Err(NodeError::NotHere(_))));
    }
}
