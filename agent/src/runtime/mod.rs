//! The container runtime, agent side: makes pod sandboxes (in-process, see
//! [`Runtime::create_sandbox`]) and starts containers through the `skiff container-init` helper
//! (see [`init`]), signals them, and reads back what the helper recorded on disk. Also the
//! helper's own entry points.

pub mod attach;
pub mod caps;
pub mod cgroup;
pub mod init;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod wire;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::mount::MntFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::AsyncBufReadExt;

use crate::sys::Syscall;
pub use cgroup::{Cgroups, Limits};
pub use spec::{ContainerSpec, Exit, Namespaces, SandboxSpec, Started};

/// How long the helper may take to report that the container started.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("container helper: {0}")]
    Helper(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let what = what.into();
    move |source| RuntimeError::Io { what, source }
}

/// Starts and stops containers.
pub struct Runtime {
    pub sys: Arc<dyn Syscall>,
    /// The `skiff` binary, re-executed as the helper.
    pub exe: PathBuf,
    pub cgroups: Cgroups,
}

impl Runtime {
    async fn helper(
        &self,
        args: &[&str],
        spec_path: &Path,
        log: &Path,
    ) -> Result<String, RuntimeError> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io(format!("open {}", log.display())))?;
        let mut child = tokio::process::Command::new(&self.exe)
            .arg("container-init")
            .args(args)
            .arg(spec_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(false)
            .spawn()
            .map_err(io("spawn container helper"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| RuntimeError::Helper("no stdout".into()))?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
            .await
            .map_err(|_| RuntimeError::Helper("timed out".into()))?
            .map_err(io("read helper output"))?;
        // The helper keeps running as the container's shim; tokio reaps it when it exits.
        drop(child);
        Ok(line.unwrap_or_default())
    }

    /// New network, IPC and UTS namespaces for a pod, bound under `dir`.
    ///
    /// Made in-process: a throwaway thread unshares them (these three namespaces are per
    /// thread, so the rest of the agent is untouched), sets the hostname and bind-mounts its
    /// namespace files, then exits; the bind mounts keep the namespaces alive.
    pub async fn create_sandbox(
        &self,
        dir: &Path,
        hostname: &str,
    ) -> Result<Namespaces, RuntimeError> {
        std::fs::create_dir_all(dir).map_err(io(format!("mkdir {}", dir.display())))?;
        let spec = SandboxSpec {
            hostname: hostname.to_owned(),
            net: dir.join("net"),
            ipc: dir.join("ipc"),
            uts: dir.join("uts"),
        };
        let t0 = std::time::Instant::now();
        let sys = self.sys.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread_spec = spec.clone();
        std::thread::Builder::new()
            .name("sandbox".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = tx.send(init::run_sandbox(sys.as_ref(), &thread_spec));
            })
            .map_err(io("sandbox thread"))?;
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.remove_sandbox(dir);
                return Err(RuntimeError::Helper(format!("sandbox: {e}")));
            }
            Err(_) => return Err(RuntimeError::Helper("sandbox thread died".into())),
        }
        tracing::debug!(us = t0.elapsed().as_micros(), dir = %dir.display(), "sandbox made");
        Ok(Namespaces {
            net: Some(spec.net),
            ipc: Some(spec.ipc),
            uts: Some(spec.uts),
        })
    }

    /// Whether the sandbox under `dir` exists (its namespaces are bound).
    pub fn sandbox_exists(dir: &Path) -> bool {
        let Ok(ns) = std::fs::metadata(dir.join("net")) else {
            return false;
        };
        let Ok(parent) = std::fs::metadata(dir) else {
            return false;
        };
        use std::os::unix::fs::MetadataExt;
        // A bound namespace file lives on nsfs, another device than its directory.
        ns.dev() != parent.dev()
    }

    /// Unbind the pod's namespaces.
    pub fn remove_sandbox(&self, dir: &Path) {
        for ns in ["net", "ipc", "uts"] {
            let p = dir.join(ns);
            let _ = self.sys.umount(&p, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(&p);
        }
    }

    /// Start a container; returns what the helper reported.
    pub async fn start(&self, spec: &ContainerSpec) -> Result<Started, RuntimeError> {
        let t0 = std::time::Instant::now();
        for d in [
            &spec.rootfs.upper,
            &spec.rootfs.work,
            &spec.rootfs.merged,
            &spec.state_dir,
        ] {
            std::fs::create_dir_all(d).map_err(io(format!("mkdir {}", d.display())))?;
        }
        if let Some(parent) = spec.log_path.parent() {
            std::fs::create_dir_all(parent).map_err(io("mkdir logs"))?;
        }
        let path = spec.state_dir.join("spec.json");
        std::fs::write(&path, serde_json::to_vec_pretty(spec).unwrap_or_default())
            .map_err(io("write container spec"))?;
        let line = self
            .helper(&[], &path, &spec.state_dir.join("helper.log"))
            .await?;
        let started: Started = serde_json::from_str(&line).map_err(|_| {
            let log =
                std::fs::read_to_string(spec.state_dir.join("helper.log")).unwrap_or_default();
            RuntimeError::Helper(format!("no start report: {}", log.trim()))
        })?;
        tracing::debug!(us = t0.elapsed().as_micros(), id = %spec.id, "container started");
        Ok(started)
    }

    pub fn signal(&self, pid: i32, signal: Signal) {
        let _ = self.sys.kill(Pid::from_raw(pid), signal);
    }

    /// Unmount a container's root filesystem after it exited.
    pub fn cleanup(&self, spec: &ContainerSpec) {
        let _ = self.sys.umount(&spec.rootfs.merged, MntFlags::MNT_DETACH);
    }
}

/// `exit.json` in a container's state directory, once its first process has exited.
pub fn read_exit(state_dir: &Path) -> Option<Exit> {
    let text = std::fs::read(state_dir.join("exit.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Whether a process exists.
pub fn alive(pid: i32) -> bool {
    pid > 0 && Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Entry point of `skiff container-init [--exec] SPEC`: returns the exit code.
pub fn helper_main(args: &[String]) -> i32 {
    let sys = crate::sys::Linux;
    let (mode, path) = match args {
        [flag, path] if flag == "--exec" => ("exec", path),
        [path] => ("container", path),
        _ => {
            eprintln!("usage: skiff container-init [--exec] SPEC");
            return 2;
        }
    };
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("container-init: read {path}: {e}");
            return 2;
        }
    };
    match mode {
        "exec" => match serde_json::from_slice::<spec::ExecSpec>(&text) {
            Ok(spec) => init::run_exec(&sys, &spec),
            Err(e) => {
                eprintln!("container-init: bad exec spec: {e}");
                2
            }
        },
        _ => match serde_json::from_slice::<ContainerSpec>(&text) {
            Ok(spec) => init::run_container(&sys, &spec),
            Err(e) => {
                eprintln!("container-init: bad container spec: {e}");
                2
            }
        },
    }
}
