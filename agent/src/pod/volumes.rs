//! A pod's volumes as host directories: emptyDir (disk, or tmpfs for `medium: Memory`),
//! configMap, secret (always on tmpfs, never on disk), hostPath, downwardAPI and projected
//! (service-account token, configMap, secret, downward API) sources; plus subPath resolution.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Pod, Secret, Volume};
use kube::Api;
use nix::mount::{MntFlags, MsFlags};
use serde_json::json;

use super::env::field_ref;
use crate::sys::Syscall;

/// Files to write into one volume directory: relative path → (bytes, mode).
type Files = Vec<(String, Vec<u8>, u32)>;

fn keyed(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
) -> Files {
    match items {
        Some(items) => items
            .iter()
            .filter_map(|i| {
                let v = data.get(&i.key)?;
                let mode = i
                    .mode
                    .and_then(|m| u32::try_from(m).ok())
                    .unwrap_or(default_mode);
                Some((i.path.clone(), v.clone(), mode))
            })
            .collect(),
        None => data
            .into_iter()
            .map(|(k, v)| (k, v, default_mode))
            .collect(),
    }
}

fn cm_data(cm: ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.unwrap_or_default() {
        out.insert(k, v.0);
    }
    out
}

fn secret_data(s: Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in s.string_data.unwrap_or_default() {
        out.insert(k, v.into_bytes());
    }
    out
}

fn mode(m: Option<i32>, default: u32) -> u32 {
    m.and_then(|m| u32::try_from(m).ok()).unwrap_or(default)
}

/// Write `files` under `dir`, refusing paths that would leave it.
pub fn write_files(dir: &Path, files: &Files) -> Result<(), String> {
    for (rel, bytes, mode) in files {
        if rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
            return Err(format!("invalid path {rel:?} in volume"));
        }
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
        }
        std::fs::write(&p, bytes).map_err(|e| format!("write {}: {e}", p.display()))?;
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode));
    }
    Ok(())
}

/// Prepares and tears down a pod's volumes.
pub struct Volumes<'a> {
    pub client: &'a kube::Client,
    pub sys: &'a dyn Syscall,
    pub pod: &'a Pod,
    pub dir: PathBuf,
}

impl Volumes<'_> {
    fn ns(&self) -> String {
        self.pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into())
    }

    fn tmpfs(&self, dir: &Path, size: Option<String>) -> Result<(), String> {
        if is_mountpoint(dir) {
            return Ok(());
        }
        let data = size.map(|s| format!("size={s}"));
        self.sys
            .mount(
                Some(Path::new("tmpfs")),
                dir,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                data.as_deref(),
            )
            .map_err(|e| format!("mount tmpfs on {}: {e}", dir.display()))
    }

    async fn config_map(
        &self,
        name: &str,
        optional: bool,
    ) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.ns());
        match api.get_opt(name).await {
            Ok(Some(cm)) => Ok(cm_data(cm)),
            Ok(None) if optional => Ok(BTreeMap::new()),
            Ok(None) => Err(format!("configmap \"{name}\" not found")),
            Err(e) => Err(format!("get configmap {name}: {e}")),
        }
    }

    async fn secret(
        &self,
        name: &str,
        optional: bool,
    ) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns());
        match api.get_opt(name).await {
            Ok(Some(s)) => Ok(secret_data(s)),
            Ok(None) if optional => Ok(BTreeMap::new()),
            Ok(None) => Err(format!("secret \"{name}\" not found")),
            Err(e) => Err(format!("get secret {name}: {e}")),
        }
    }

    /// A token for the pod's service account via the TokenRequest API (bound to the pod).
    async fn token(
        &self,
        audience: Option<&str>,
        expiration: Option<i64>,
    ) -> Result<Vec<u8>, String> {
        let sa = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let req = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": audience.map(|a| vec![a.to_owned()]).unwrap_or_default(),
                "expirationSeconds": expiration.unwrap_or(3607),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": self.pod.metadata.name,
                    "uid": self.pod.metadata.uid,
                },
            },
        });
        let url = format!(
            "/api/v1/namespaces/{}/serviceaccounts/{sa}/token",
            self.ns()
        );
        let body = serde_json::to_vec(&req).map_err(|e| e.to_string())?;
        let request = http::Request::post(url)
            .header("content-type", "application/json")
            .body(body)
            .map_err(|e| e.to_string())?;
        let resp: serde_json::Value = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("request service account token: {e}"))?;
        resp.pointer("/status/token")
            .and_then(|t| t.as_str())
            .map(|t| t.as_bytes().to_vec())
            .ok_or_else(|| "token request returned no token".to_owned())
    }

    fn downward(
        &self,
        items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
        default_mode: u32,
    ) -> Files {
        items
            .iter()
            .filter_map(|i| {
                let v = i
                    .field_ref
                    .as_ref()
                    .and_then(|f| field_ref(self.pod, &f.field_path))?;
                Some((i.path.clone(), v.into_bytes(), mode(i.mode, default_mode)))
            })
            .collect()
    }

    async fn one(&self, v: &Volume) -> Result<PathBuf, String> {
        if let Some(hp) = &v.host_path {
            let p = PathBuf::from(&hp.path);
            match hp.type_.as_deref() {
                Some("DirectoryOrCreate") => {
                    std::fs::create_dir_all(&p).map_err(|e| e.to_string())?
                }
                Some("FileOrCreate") if !p.exists() => {
                    std::fs::write(&p, b"").map_err(|e| e.to_string())?;
                }
                Some("Directory") if !p.is_dir() => {
                    return Err(format!("hostPath {} is not a directory", hp.path));
                }
                Some("File") if !p.is_file() => {
                    return Err(format!("hostPath {} is not a file", hp.path));
                }
                _ => {}
            }
            return Ok(p);
        }
        let dir = self.dir.join(&v.name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        if let Some(ed) = &v.empty_dir {
            if ed.medium.as_deref() == Some("Memory") {
                self.tmpfs(&dir, ed.size_limit.as_ref().map(|q| q.0.clone()))?;
            }
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
        } else if let Some(cm) = &v.config_map {
            let data = self
                .config_map(&cm.name, cm.optional.unwrap_or(false))
                .await?;
            write_files(
                &dir,
                &keyed(data, cm.items.as_ref(), mode(cm.default_mode, 0o644)),
            )?;
        } else if let Some(s) = &v.secret {
            self.tmpfs(&dir, None)?;
            let name = s.secret_name.clone().unwrap_or_default();
            let data = self.secret(&name, s.optional.unwrap_or(false)).await?;
            write_files(
                &dir,
                &keyed(data, s.items.as_ref(), mode(s.default_mode, 0o644)),
            )?;
        } else if let Some(d) = &v.downward_api {
            let files = self.downward(
                d.items.as_deref().unwrap_or_default(),
                mode(d.default_mode, 0o644),
            );
            write_files(&dir, &files)?;
        } else if let Some(p) = &v.projected {
            self.tmpfs(&dir, None)?;
            let dm = mode(p.default_mode, 0o644);
            for src in p.sources.as_deref().unwrap_or_default() {
                let files = if let Some(t) = &src.service_account_token {
                    let token = self
                        .token(t.audience.as_deref(), t.expiration_seconds)
                        .await?;
                    vec![(t.path.clone(), token, dm)]
                } else if let Some(cm) = &src.config_map {
                    let data = self
                        .config_map(&cm.name, cm.optional.unwrap_or(false))
                        .await?;
                    keyed(data, cm.items.as_ref(), dm)
                } else if let Some(s) = &src.secret {
                    let data = self.secret(&s.name, s.optional.unwrap_or(false)).await?;
                    keyed(data, s.items.as_ref(), dm)
                } else if let Some(d) = &src.downward_api {
                    self.downward(d.items.as_deref().unwrap_or_default(), dm)
                } else {
                    vec![]
                };
                write_files(&dir, &files)?;
            }
        }
        Ok(dir)
    }

    /// Every volume of the pod: name → host path.
    pub async fn prepare(&self) -> Result<BTreeMap<String, PathBuf>, String> {
        let mut out = BTreeMap::new();
        let vols = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for v in &vols {
            let p = self
                .one(v)
                .await
                .map_err(|e| format!("volume \"{}\": {e}", v.name))?;
            out.insert(v.name.clone(), p);
        }
        Ok(out)
    }
}

/// Unmount whatever tmpfs the pod's volumes used and delete the volume directories.
pub fn teardown(sys: &dyn Syscall, dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if is_mountpoint(&e.path()) {
                let _ = sys.umount(&e.path(), MntFlags::MNT_DETACH);
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn is_mountpoint(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(m), Some(parent)) = (std::fs::metadata(p), p.parent()) else {
        return false;
    };
    std::fs::metadata(parent).is_ok_and(|pm| pm.dev() != m.dev())
}

/// The host path of `volume`/`sub_path`, refusing sub-paths that climb out of the volume;
/// a missing sub-directory is created, as the kubelet does.
pub fn sub_path(volume: &Path, sub: &str) -> Result<PathBuf, String> {
    if sub.starts_with('/') || sub.split('/').any(|c| c == "..") {
        return Err(format!("invalid subPath {sub:?}"));
    }
    let p = crate::runtime::rootfs::secure_join(volume, sub).map_err(|e| e.to_string())?;
    if !p.exists() {
        std::fs::create_dir_all(&p).map_err(|e| e.to_string())?;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn keys_items_modes() {
        let data = BTreeMap::from([
            ("a".to_string(), b"1".to_vec()),
            ("b".into(), b"2".to_vec()),
        ]);
        let all = keyed(data.clone(), None, 0o644);
        assert_eq!(all.len(), 2);
        let items = vec![KeyToPath {
            key: "b".into(),
            path: "sub/b.txt".into(),
            mode: Some(0o400),
        }];
        let some = keyed(data, Some(&items), 0o644);
        assert_eq!(some, vec![("sub/b.txt".to_string(), b"2".to_vec(), 0o400)]);
        let d = tempfile::tempdir().unwrap();
        write_files(d.path(), &some).unwrap();
        let m = std::fs::metadata(d.path().join("sub/b.txt")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o400);
        assert!(write_files(d.path(), &vec![("../x".into(), vec![], 0o644)]).is_err());
    }

    #[test]
    fn sub_paths_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(sub_path(d.path(), "a/b").unwrap(), d.path().join("a/b"));
        assert!(d.path().join("a/b").is_dir());
        assert!(sub_path(d.path(), "../etc").is_err());
        std::os::unix::fs::symlink("/etc", d.path().join("link")).unwrap();
        assert_eq!(
            sub_path(d.path(), "link/x").unwrap(),
            d.path().join("etc/x")
        );
    }

    #[test]
    fn secret_and_configmap_bytes() {
        let s: Secret = serde_json::from_value(
            json!({"data": {"k": base64::engine::general_purpose::STANDARD.encode("v")}}),
        )
        .unwrap();
        assert_eq!(secret_data(s)["k"], b"v");
        let cm: ConfigMap = serde_json::from_value(json!({"data": {"x": "y"}})).unwrap();
        assert_eq!(cm_data(cm)["x"], b"y");
    }
}
