//! What the machine API needs from the node it runs on: the [`NodeControl`] trait. PID 1
//! implements it over the real machine; `skiff ctl serve-host` over a plain Linux host; the
//! tests over a fake. The server owns the policy (who may call what, how a config is
//! verified); the node only reports and acts.

use std::path::PathBuf;
use std::time::Duration;

use skiff_machine::{PublicKey, VerifiedConfig};

/// The node's software, config and boot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeVersion {
    pub skiff_version: String,
    /// `uname -r`.
    pub kernel: String,
    pub hostname: String,
    /// `controlplane` or `worker`.
    pub role: String,
    pub config_generation: u64,
    pub config_sha256: String,
    /// Boot phases with their time since the kernel started.
    pub boot: Vec<(String, Duration)>,
}

/// The state of one supervised service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    Running,
    /// Exited; waiting for its back-off before the next start.
    Waiting,
    Stopped,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Stopped => "stopped",
        }
    }
}

/// One supervised service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub name: String,
    pub state: ServiceState,
    pub restarts: u32,
    pub pid: Option<i32>,
}

/// Lines of a service's log buffer. Every line ever pushed has a sequence number; the buffer
/// keeps the most recent ones, `first` being the number of the oldest line in `lines`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogChunk {
    pub first: u64,
    pub lines: Vec<String>,
}

impl LogChunk {
    /// The sequence number the next line will get.
    pub fn end(&self) -> u64 {
        self.first + u64::try_from(self.lines.len()).unwrap_or(u64::MAX)
    }
}

/// Reboot or power off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Reboot,
    PowerOff,
}

/// Generations of the configs a node knows, for the replay rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Generations {
    /// The generation the node last applied at boot.
    pub applied: Option<u64>,
    /// A config stored by ApplyConfig and not yet applied.
    pub pending: Option<u64>,
}

/// Where an accepted config went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub path: PathBuf,
    /// Whether it survives a reboot (it lives on a state disk).
    pub persistent: bool,
}

/// A node action that failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("no service named `{0}`")]
    NoSuchService(String),
    /// The request does not fit this node (a worker asked for a kubeconfig…).
    #[error("{0}")]
    NotHere(String),
    #[error("cannot {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl NodeError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

/// The node behind a machine API server. Methods are called from async tasks and must not
/// block for long (files and memory only).
pub trait NodeControl: Send + Sync + 'static {
    fn version(&self) -> NodeVersion;
    fn services(&self) -> Vec<ServiceInfo>;
    /// The kept lines of `service` with sequence numbers from `since` on (all kept lines when
    /// `since` is older than the oldest).
    fn log_lines(&self, service: &str, since: u64) -> Result<LogChunk, NodeError>;
    /// The kernel log device (`/dev/kmsg`), or a file of records in its format.
    fn kmsg_path(&self) -> PathBuf {
        PathBuf::from("/dev/kmsg")
    }
    /// Stop services in order, then reboot or power off. Returns once the request is queued:
    /// the reply must still reach the client.
    fn power(&self, action: Power) -> Result<(), NodeError>;
    /// Keys a machine config must be signed with.
    fn trusted_keys(&self) -> Vec<PublicKey>;
    fn generations(&self) -> Generations;
    /// Stores a verified config (`raw`: the exact signed bytes) where the next boot reads it.
    fn store_config(&self, config: &VerifiedConfig, raw: &[u8]) -> Result<Stored, NodeError>;
    /// An admin kubeconfig; control planes only.
    fn kubeconfig(&self) -> Result<Vec<u8>, NodeError>;
    /// Marks the state for wiping at the next boot and reboots.
    fn reset(&self) -> Result<(), NodeError>;
}
