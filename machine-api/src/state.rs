//! The files a node keeps about its config, in one directory (`/var/lib/skiff/machine` on a
//! node): `generation` (last applied at boot), `config.yaml` (the config applied at boot) and
//! `pending.yaml` (stored by ApplyConfig; the next boot prefers it when its generation is
//! higher). Also the reset marker and the admin kubeconfig a control plane hands out.

use std::io::Write;
use std::path::{Path, PathBuf};

use skiff_machine::{MachineConfig, Role};
use skiff_pki::{CertificateAuthority, Kubeconfig};

use crate::node::{Generations, NodeError, Stored};

/// Name of the last applied generation file.
pub const GENERATION_FILE: &str = "generation";
/// Name of the config applied at boot.
pub const APPLIED_FILE: &str = "config.yaml";
/// Name of the config stored by ApplyConfig.
pub const PENDING_FILE: &str = "pending.yaml";
/// Name of the marker that makes the next boot wipe the node's state.
pub const RESET_FILE: &str = "reset-requested";

/// The config files of one node.
#[derive(Debug, Clone)]
pub struct ConfigStore {
    dir: PathBuf,
    persistent: bool,
}

impl ConfigStore {
    /// The store in `dir`; `persistent` says whether `dir` survives a reboot.
    pub fn new(dir: impl Into<PathBuf>, persistent: bool) -> Self {
        Self {
            dir: dir.into(),
            persistent,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The generation last applied at boot, and the one waiting in `pending.yaml` when it is
    /// newer (a boot that applied it leaves the file behind).
    pub fn generations(&self) -> Generations {
        let applied = std::fs::read_to_string(self.dir.join(GENERATION_FILE))
            .ok()
            .and_then(|t| t.trim().parse().ok());
        let pending = std::fs::read(self.dir.join(PENDING_FILE))
            .ok()
            .and_then(|bytes| generation_of(&bytes))
            .filter(|p| applied.is_none_or(|a| *p > a));
        Generations { applied, pending }
    }

    /// Stores an already verified config as `pending.yaml` (atomically: a crash leaves the old
    /// file or the new one, never half of one).
    pub fn store_pending(&self, raw: &[u8]) -> Result<Stored, NodeError> {
        let path = self.dir.join(PENDING_FILE);
        write_atomic(&path, raw).map_err(NodeError::io(format!("write {}", path.display())))?;
        Ok(Stored {
            path,
            persistent: self.persistent,
        })
    }

    /// Records `generation` and the config bytes as applied (what a boot does).
    pub fn record_applied(&self, generation: u64, raw: &[u8]) -> Result<(), NodeError> {
        let applied = self.dir.join(APPLIED_FILE);
        write_atomic(&applied, raw)
            .map_err(NodeError::io(format!("write {}", applied.display())))?;
        let file = self.dir.join(GENERATION_FILE);
        write_atomic(&file, generation.to_string().as_bytes())
            .map_err(NodeError::io(format!("write {}", file.display())))
    }

    /// Leaves the marker that makes the next boot wipe the state.
    pub fn mark_reset(&self) -> Result<(), NodeError> {
        let path = self.dir.join(RESET_FILE);
        write_atomic(&path, b"reset requested through the machine API\n")
            .map_err(NodeError::io(format!("write {}", path.display())))
    }

    pub fn reset_requested(&self) -> bool {
        self.dir.join(RESET_FILE).exists()
    }
}

/// The generation of a signed config, read without verifying it (for display and ordering
/// only: whatever is applied is verified at boot).
pub fn generation_of(raw: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(raw).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("generation:"))
        .and_then(|v| v.trim().parse().ok())
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent()
        && let Ok(dir) = std::fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// An admin kubeconfig (user `skiff-admin`, group `system:masters`) issued from the cluster CA
/// key of a control-plane config, for the cluster's endpoint.
pub fn admin_kubeconfig(config: &MachineConfig) -> Result<Vec<u8>, NodeError> {
    let cluster = &config.cluster;
    let secrets = match (config.role, &cluster.control_plane) {
        (Role::ControlPlane, Some(secrets)) => secrets,
        _ => {
            return Err(NodeError::NotHere(
                "this node is a worker; control-plane nodes hand out kubeconfigs (--nodes CONTROL_PLANE_IP)"
                    .to_owned(),
            ));
        }
    };
    let ca = CertificateAuthority::from_pem(cluster.ca.as_str(), secrets.ca_key.as_str())
        .map_err(|e| NodeError::Other(format!("cluster CA: {e}")))?;
    let admin = ca
        .issue_client("skiff-admin", &["system:masters".to_owned()])
        .map_err(|e| NodeError::Other(format!("admin certificate: {e}")))?;
    let kubeconfig = Kubeconfig::for_client_cert(
        cluster.name.as_str(),
        cluster.endpoint.as_str(),
        cluster.ca.as_str(),
        "skiff-admin",
        &admin,
    );
    Ok(kubeconfig.to_yaml().into_bytes())
}

/// `uname -r`, or empty when `/proc` is not there.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_and_applied_generations() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConfigStore::new(dir.path().join("machine"), true);
        assert_eq!(store.generations(), Generations::default());
        store
            .record_applied(
                3,
                b"# skiff-signature: x\nversion: v1alpha1\ngeneration: 3\n",
            )
            .unwrap();
        let stored = store
            .store_pending(b"# skiff-signature: x\nversion: v1alpha1\ngeneration: 5\n")
            .unwrap();
        assert!(stored.persistent);
        assert_eq!(stored.path, dir.path().join("machine/pending.yaml"));
        assert_eq!(
            store.generations(),
            Generations {
                applied: Some(3),
                pending: Some(5)
            }
        );
        assert!(!dir.path().join("machine/pending.tmp").exists());
        // Once a boot applied it, it is no longer pending.
        store.record_applied(5, b"generation: 5\n").unwrap();
        assert_eq!(store.generations().pending, None);
        assert!(!store.reset_requested());
        store.mark_reset().unwrap();
        assert!(store.reset_requested());
    }

    #[test]
    fn generation_is_read_from_the_yaml() {
        assert_eq!(generation_of(b"a: 1\ngeneration: 42\n"), Some(42));
        assert_eq!(generation_of(b"a: 1\n"), None);
        assert_eq!(generation_of(&[0xff, 0xfe]), None);
    }
}
