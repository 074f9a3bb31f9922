//! Clusters of skiff VMs under QEMU, for users (`skiff cluster create|status|destroy`) and for
//! tests: a builder that boots the nodes from a built image with signed per-node configs, and
//! handles that stop every VM they started when dropped.
//!
//! ```text
//! ClusterBuilder::create ─► secrets + signed configs ─► key layer ++ base initramfs
//!        └► accel::probe (KVM or TCG) ─► Vm::start (silent-boot retry) ─► wait ready
//! ```

mod accel;
mod cluster;
mod timeline;
mod vm;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use accel::{Accel, probe};
pub use cluster::{
    Cluster, ClusterBuilder, ClusterRecord, NodeRecord, NodeStatus, destroy, read_record,
    reboot_node, status,
};
pub use timeline::{Phase, last_boot, parse as parse_timeline, render as render_timeline};
pub use vm::{Nic, SILENT_BOOT_LIMIT, Vm, VmSpec, alive, kill_pid};

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image file {path} (build one with `skiff image build --out DIR`)")]
    Image {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {what}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed: {detail}")]
    Tool { what: String, detail: String },
    #[error("qemu for {name} failed: {detail}")]
    Qemu { name: String, detail: String },
    #[error("VM {name} printed nothing on its console in {attempts} attempts; see {log}", log = log.display())]
    SilentBoot {
        name: String,
        attempts: u32,
        log: PathBuf,
    },
    #[error("VM {name} was not ready after {}s; see {log}; last lines:\n{tail}", waited.as_secs(), log = log.display())]
    NotReady {
        name: String,
        waited: Duration,
        log: PathBuf,
        tail: String,
    },
    #[error("a cluster in {0} is still running; destroy it first")]
    AlreadyRunning(PathBuf),
    #[error("{what}: {message}")]
    Value { what: &'static str, message: String },
    #[error("cluster configs")]
    Gen(#[from] skiff_genconfig::GenError),
    #[error("certificates")]
    Pki(#[from] skiff_pki::PkiError),
    #[error("image")]
    Build(#[source] skiff_image_build::BuildError),
    #[error("cluster.json")]
    Json(#[source] serde_json::Error),
}

impl QemuError {
    pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn value(what: &'static str) -> impl Fn(skiff_machine::InvalidValue) -> Self {
        move |e| Self::Value {
            what,
            message: e.to_string(),
        }
    }
}
