//! What the agent hands its container helper: a complete, resolved description of one
//! container process (paths on the host, numbers instead of names), written as JSON next to
//! the container's state so the helper needs nothing else.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A bind mount into the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mount {
    /// Host path (file or directory).
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub destination: String,
    pub readonly: bool,
}

/// The root filesystem: an overlay of read-only image layers (top first) with a writable
/// upper directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rootfs {
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
    pub readonly: bool,
}

/// Pod namespaces to join: bind-mounted namespace files made by the sandbox helper.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Namespaces {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
}

/// One container process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerSpec {
    pub id: String,
    pub rootfs: Rootfs,
    pub namespaces: Namespaces,
    pub mounts: Vec<Mount>,
    /// argv; the first element is resolved through the container's PATH.
    pub args: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// Capability mask (bit n = capability n).
    pub capabilities: u64,
    pub no_new_privs: bool,
    pub seccomp: bool,
    pub privileged: bool,
    /// cgroup directories (one per v1 hierarchy, or the v2 one) to join.
    pub cgroups: Vec<PathBuf>,
    /// Where the CRI-format log goes; rotated at `log_max_bytes`, keeping `log_max_files`.
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    /// Directory for `state.json`/`exit.json`.
    pub state_dir: PathBuf,
    /// Keep the process's stdin open for clients that attach (`stdin: true`).
    #[serde(default)]
    pub stdin: bool,
    /// Close that stdin once the first attached client is done with it (`stdinOnce`).
    #[serde(default)]
    pub stdin_once: bool,
    /// Run the process on a terminal (`tty: true`).
    #[serde(default)]
    pub tty: bool,
}

/// The pod sandbox: new network, IPC and UTS namespaces bound onto these files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SandboxSpec {
    pub hostname: String,
    pub net: PathBuf,
    pub ipc: PathBuf,
    pub uts: PathBuf,
}

/// What the helper reports on its stdout once the container process has exec'd (or failed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    /// Host PID of the container's first process.
    pub pid: Option<i32>,
    /// PID of the helper that stays behind to collect logs and the exit status.
    pub shim_pid: Option<i32>,
    pub error: Option<String>,
}

/// `exit.json`: how the container's first process ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Exit {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub finished_at: String,
    #[serde(default)]
    pub error: Option<String>,
}

/// A process to run inside a running container (exec probes, exec hooks).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecSpec {
    /// Host PID of the container's first process: its namespaces are joined.
    pub pid: i32,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub capabilities: u64,
    pub no_new_privs: bool,
    pub seccomp: bool,
    pub cgroups: Vec<PathBuf>,
    /// Run on a new terminal: the helper's stdin then carries [`super::wire`] frames (input
    /// and window sizes) and its stdout the terminal's output.
    #[serde(default)]
    pub tty: bool,
    /// Initial window size (width, height) of that terminal.
    #[serde(default)]
    pub size: Option<(u16, u16)>,
}

impl ExecSpec {
    /// A process with the privileges and environment of `spec`'s container, whose first
    /// process is `pid`; `args` and the terminal are left empty.
    pub fn for_container(pid: i32, spec: &ContainerSpec) -> Self {
        Self {
            pid,
            args: vec![],
            env: spec.env.clone(),
            cwd: spec.cwd.clone(),
            uid: spec.uid,
            gid: spec.gid,
            groups: spec.groups.clone(),
            capabilities: spec.capabilities,
            no_new_privs: spec.no_new_privs,
            seccomp: spec.seccomp,
            cgroups: spec.cgroups.clone(),
            tty: false,
            size: None,
        }
    }
}
