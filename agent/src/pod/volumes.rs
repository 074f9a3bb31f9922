//! A pod's volumes as host directories: emptyDir (disk, or tmpfs for `medium: Memory`),
//! configMap, secret (always on tmpfs, never on disk), hostPath, downwardAPI and projected
//! (service-account token, configMap, secret, downward API) sources; plus subPath resolution.
//!
//! Projected volumes are written as the kubelet's atomic writer does: the files live in a
//! timestamped `..<time>` directory, `..data` is a symlink to the current one, and each
//! top-level name is a symlink through `..data`; an update writes a new directory and swaps
//! `..data` with one rename, so a reader never sees half a token. A projected volume with a
//! service-account token is refreshed in the background at 80% of the token's lifetime.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, KeyToPath, Pod, ProjectedVolumeSource, Secret, Volume,
};
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

/// Where volume contents come from: the API (configMaps, secrets, tokens) and the pod itself.
struct Sources<'a> {
    client: &'a kube::Client,
    pod: &'a Pod,
}

impl Sources<'_> {
    fn ns(&self) -> String {
        self.pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into())
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

    /// A token for the pod's service account via the TokenRequest API (bound to the pod),
    /// and when it expires.
    async fn token(
        &self,
        audience: Option<&str>,
        expiration: Option<i64>,
    ) -> Result<(Vec<u8>, jiff::Timestamp), String> {
        let sa = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
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
        let token = resp
            .pointer("/status/token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| "token request returned no token".to_owned())?;
        let expires = resp
            .pointer("/status/expirationTimestamp")
            .and_then(|t| t.as_str())
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .ok_or_else(|| "token request returned no expiration time".to_owned())?;
        Ok((token.as_bytes().to_vec(), expires))
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

    /// Every file of a projected volume, and when the first of its tokens expires.
    async fn projected(
        &self,
        p: &ProjectedVolumeSource,
    ) -> Result<(Files, Option<jiff::Timestamp>), String> {
        let dm = mode(p.default_mode, 0o644);
        let mut out = Files::new();
        let mut expires: Option<jiff::Timestamp> = None;
        for src in p.sources.as_deref().unwrap_or_default() {
            if let Some(t) = &src.service_account_token {
                let (token, exp) = self
                    .token(t.audience.as_deref(), t.expiration_seconds)
                    .await?;
                expires = Some(expires.map_or(exp, |e| e.min(exp)));
                out.push((t.path.clone(), token, dm));
            } else if let Some(cm) = &src.config_map {
                let data = self
                    .config_map(&cm.name, cm.optional.unwrap_or(false))
                    .await?;
                out.extend(keyed(data, cm.items.as_ref(), dm));
            } else if let Some(s) = &src.secret {
                let data = self.secret(&s.name, s.optional.unwrap_or(false)).await?;
                out.extend(keyed(data, s.items.as_ref(), dm));
            } else if let Some(d) = &src.downward_api {
                out.extend(self.downward(d.items.as_deref().unwrap_or_default(), dm));
            }
        }
        Ok((out, expires))
    }
}

/// When a token issued now and expiring at `expires` should be replaced: at 80% of its
/// lifetime (at least a second from now).
fn refresh_at(now: jiff::Timestamp, expires: jiff::Timestamp) -> std::time::Duration {
    let life = expires
        .as_millisecond()
        .saturating_sub(now.as_millisecond());
    let wait = u64::try_from(life.saturating_mul(4) / 5).unwrap_or(0);
    std::time::Duration::from_millis(wait.max(1000))
}

/// Write `files` as the new contents of `dir` in one step (see the module docs).
pub fn write_atomic(dir: &Path, files: &Files) -> Result<(), String> {
    let stamp = jiff::Timestamp::now()
        .strftime("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let fresh = dir.join(&stamp);
    std::fs::create_dir(&fresh).map_err(|e| format!("mkdir {}: {e}", fresh.display()))?;
    let _ = std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755));
    if let Err(e) = write_files(&fresh, files) {
        let _ = std::fs::remove_dir_all(&fresh);
        return Err(e);
    }
    let data = dir.join("..data");
    let old = std::fs::read_link(&data).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp).map_err(|e| format!("symlink ..data: {e}"))?;
    std::fs::rename(&tmp, &data).map_err(|e| format!("rename ..data: {e}"))?;
    let mut tops: Vec<&str> = files
        .iter()
        .filter_map(|(rel, _, _)| rel.split('/').next())
        .collect();
    tops.dedup();
    for top in tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(top), &link)
                .map_err(|e| format!("symlink {top}: {e}"))?;
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

/// Re-request a projected volume's tokens before they expire, for as long as the volume
/// exists (teardown removes it, which ends this).
async fn refresh_projected(
    client: kube::Client,
    pod: Pod,
    dir: PathBuf,
    source: ProjectedVolumeSource,
    mut expires: jiff::Timestamp,
) {
    let mut wait = refresh_at(jiff::Timestamp::now(), expires);
    loop {
        tokio::time::sleep(wait).await;
        if !dir.join("..data").exists() {
            return;
        }
        let sources = Sources {
            client: &client,
            pod: &pod,
        };
        match sources.projected(&source).await {
            Ok((files, Some(exp))) => match write_atomic(&dir, &files) {
                Ok(()) => {
                    tracing::debug!(dir = %dir.display(), "refreshed projected token");
                    expires = exp;
                    wait = refresh_at(jiff::Timestamp::now(), expires);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "refresh projected volume");
                    wait = std::time::Duration::from_secs(10);
                }
            },
            Ok((_, None)) => return,
            Err(e) => {
                // Retry soon, but stop once the old token has expired and the pod is gone.
                tracing::warn!(error = %e, "refresh projected token");
                if jiff::Timestamp::now() > expires && e.contains("404") {
                    return;
                }
                wait = std::time::Duration::from_secs(10);
            }
        }
    }
}

/// Prepares and tears down a pod's volumes.
pub struct Volumes<'a> {
    pub client: &'a kube::Client,
    pub sys: &'a dyn Syscall,
    pub pod: &'a Pod,
    pub dir: PathBuf,
}

impl Volumes<'_> {
    fn sources(&self) -> Sources<'_> {
        Sources {
            client: self.client,
            pod: self.pod,
        }
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
                .sources()
                .config_map(&cm.name, cm.optional.unwrap_or(false))
                .await?;
            write_files(
                &dir,
                &keyed(data, cm.items.as_ref(), mode(cm.default_mode, 0o644)),
            )?;
        } else if let Some(s) = &v.secret {
            self.tmpfs(&dir, None)?;
            let name = s.secret_name.clone().unwrap_or_default();
            let data = self
                .sources()
                .secret(&name, s.optional.unwrap_or(false))
                .await?;
            write_files(
                &dir,
                &keyed(data, s.items.as_ref(), mode(s.default_mode, 0o644)),
            )?;
        } else if let Some(d) = &v.downward_api {
            let files = self.sources().downward(
                d.items.as_deref().unwrap_or_default(),
                mode(d.default_mode, 0o644),
            );
            write_files(&dir, &files)?;
        } else if let Some(p) = &v.projected {
            self.tmpfs(&dir, None)?;
            let (files, expires) = self.sources().projected(p).await?;
            write_atomic(&dir, &files)?;
            if let Some(expires) = expires {
                tokio::spawn(refresh_projected(
                    self.client.clone(),
                    self.pod.clone(),
                    dir.clone(),
                    p.clone(),
                    expires,
                ));
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

    #[test]
    fn atomic_writes_swap_the_whole_set() {
        let d = tempfile::tempdir().unwrap();
        let first = vec![
            ("token".to_string(), b"one".to_vec(), 0o600),
            ("sub/ns".to_string(), b"default".to_vec(), 0o644),
        ];
        write_atomic(d.path(), &first).unwrap();
        assert_eq!(std::fs::read(d.path().join("token")).unwrap(), b"one");
        assert_eq!(std::fs::read(d.path().join("sub/ns")).unwrap(), b"default");
        assert!(
            std::fs::symlink_metadata(d.path().join("token"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let m = std::fs::metadata(d.path().join("token")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        let old_target = std::fs::read_link(d.path().join("..data")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = vec![
            ("token".to_string(), b"two".to_vec(), 0o600),
            ("sub/ns".to_string(), b"default".to_vec(), 0o644),
        ];
        write_atomic(d.path(), &second).unwrap();
        assert_eq!(std::fs::read(d.path().join("token")).unwrap(), b"two");
        // The old generation is gone; only ..data, its target and the top-level links remain.
        assert!(!d.path().join(&old_target).exists());
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("..2"))
            .collect();
        names.sort();
        assert_eq!(names, vec!["..data", "sub", "token"]);
        assert!(write_atomic(d.path(), &vec![("../x".into(), vec![], 0o644)]).is_err());
    }

    #[test]
    fn tokens_refresh_at_eighty_percent() {
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let exp: jiff::Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        assert_eq!(refresh_at(now, exp), std::time::Duration::from_secs(2880));
        // Already expired: try again soon, not in a busy loop.
        assert_eq!(refresh_at(exp, now), std::time::Duration::from_secs(1));
    }
}
