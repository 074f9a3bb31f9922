//! [`ImageService`]: what the pod worker calls. Pulls (deduplicated per image and per layer),
//! pull policy, local lookups, overlayfs lower dirs and garbage collection over the [`Store`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::ImageError;
use super::auth::PullSecrets;
use super::policy::{PullDecision, PullPolicy};
use super::reference::{ImageRef, Mirror};
use super::registry::Registry;
use super::store::{GcReport, ImageConfig, ImageInfo, Store, now_secs};
use super::unpack::unpack_layer;

/// Largest manifest or config blob accepted (they are held in memory).
const MAX_SMALL_BLOB: u64 = 16 << 20;

/// The outcome of [`ImageService::ensure`].
#[derive(Debug, Clone)]
pub struct Ensured {
    pub info: ImageInfo,
    /// False when the local image was used ("already present on machine").
    pub pulled: bool,
}

/// The node's images: pulls, the local store, lower dirs, GC.
pub struct ImageService {
    store: Store,
    registry: Registry,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// When the last pull of each (image, credentials) finished, so that pulls waiting on the
    /// same lock share its result.
    pulled: Mutex<HashMap<String, std::time::Instant>>,
    /// Pulls hold it shared; GC holds it exclusively so it never sweeps a half-recorded pull.
    gc_lock: tokio::sync::RwLock<()>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc {
    schema_version: Option<u32>,
    #[serde(default)]
    manifests: Vec<IndexEntry>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
}

#[derive(Deserialize)]
struct IndexEntry {
    digest: String,
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    os: String,
    architecture: String,
}

#[derive(Deserialize)]
struct ConfigDoc {
    #[serde(default)]
    config: Option<ConfigInner>,
    rootfs: RootFs,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ConfigInner {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    stop_signal: Option<String>,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

impl ImageService {
    /// Open the store under `data_dir/images`. `mirrors` map registries to endpoints; plain
    /// HTTP is used only for mirrors configured with `http://`.
    pub fn open(data_dir: &Path, mirrors: Vec<Mirror>) -> Result<Self, ImageError> {
        let store = Store::open(&data_dir.join("images")).map_err(ImageError::Store)?;
        Ok(Self {
            store,
            registry: Registry::new(mirrors),
            locks: Mutex::new(HashMap::new()),
            pulled: Mutex::new(HashMap::new()),
            gc_lock: tokio::sync::RwLock::new(()),
        })
    }

    /// The store's directory (`DATA/images`).
    pub fn root(&self) -> &Path {
        self.store.root()
    }

    /// Make `image` available according to `policy`: the pod worker's one call before creating
    /// a container. Errors map to a waiting reason with [`ImageError::reason`].
    pub async fn ensure(
        &self,
        image: &str,
        policy: PullPolicy,
        secrets: &PullSecrets,
    ) -> Result<Ensured, ImageError> {
        let r = ImageRef::parse(image)?;
        let local = self.get_ref(&r)?;
        match policy.decide(local.is_some()) {
            PullDecision::UseLocal => {
                let mut info = local.ok_or_else(|| ImageError::NotPresent(r.to_string()))?;
                info.last_used = now_secs();
                self.store.put_record(&info).map_err(ImageError::Store)?;
                Ok(Ensured {
                    info,
                    pulled: false,
                })
            }
            PullDecision::NeverPullMissing => Err(ImageError::NeverPull {
                image: r.to_string(),
            }),
            PullDecision::Pull => Ok(Ensured {
                info: self.pull_ref(&r, secrets).await?,
                pulled: true,
            }),
        }
    }

    /// Resolve `image` at its registry (or mirror) and fetch whatever is missing locally.
    pub async fn pull(&self, image: &str, secrets: &PullSecrets) -> Result<ImageInfo, ImageError> {
        let r = ImageRef::parse(image)?;
        self.pull_ref(&r, secrets).await
    }

    /// The local image `image` names, if it is complete in the store.
    pub fn get(&self, image: &str) -> Result<Option<ImageInfo>, ImageError> {
        self.get_ref(&ImageRef::parse(image)?)
    }

    /// Every image in the store.
    pub fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        self.store.records().map_err(ImageError::Store)
    }

    /// The overlayfs lower dirs of `image`, in `lowerdir=` order: top layer first.
    pub fn rootfs(&self, image: &ImageInfo) -> Result<Vec<PathBuf>, ImageError> {
        image
            .layers
            .iter()
            .rev()
            .map(|d| {
                let p = self.store.layer_path(d).map_err(ImageError::Store)?;
                if p.is_dir() {
                    Ok(p)
                } else {
                    Err(ImageError::NotPresent(format!(
                        "{} layer {d}",
                        image.reference
                    )))
                }
            })
            .collect()
    }

    /// Bytes the store occupies on disk.
    pub fn usage_bytes(&self) -> Result<u64, ImageError> {
        self.store.usage().map_err(ImageError::Store)
    }

    /// Remove images no container uses (`in_use` holds references, digests or image ids),
    /// least recently used first, until the store is at most `target_bytes`.
    pub async fn gc(
        &self,
        in_use: &HashSet<String>,
        target_bytes: u64,
    ) -> Result<GcReport, ImageError> {
        let _exclusive = self.gc_lock.write().await;
        let store = self.store.clone();
        let in_use = in_use.clone();
        tokio::task::spawn_blocking(move || store.gc(&in_use, target_bytes))
            .await
            .map_err(|e| ImageError::Store(std::io::Error::other(e)))?
            .map_err(ImageError::Store)
    }

    /// Put an image of one `bytes`-sized layer straight into the store (tests only).
    #[cfg(test)]
    pub(crate) fn put_test_image(
        &self,
        reference: &str,
        diff_id: &str,
        last_used: u64,
        bytes: usize,
    ) {
        let tmp = self.store.tmp_path("layer");
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join("data"), vec![7u8; bytes]).unwrap();
        self.store.commit_layer(&tmp, diff_id).unwrap();
        self.store
            .put_record(&ImageInfo {
                reference: reference.into(),
                digest: diff_id.into(),
                manifest_digest: String::new(),
                config_digest: String::new(),
                layers: vec![diff_id.into()],
                config: ImageConfig::default(),
                size: 0,
                pulled_at: 0,
                last_used,
            })
            .unwrap();
    }

    /// Forget one image; layers no other image uses are deleted.
    pub async fn remove(&self, image: &str) -> Result<bool, ImageError> {
        let r = ImageRef::parse(image)?;
        let _exclusive = self.gc_lock.write().await;
        self.store.remove(&r.to_string()).map_err(ImageError::Store)
    }

    fn get_ref(&self, r: &ImageRef) -> Result<Option<ImageInfo>, ImageError> {
        let Some(info) = self
            .store
            .get_record(&r.to_string())
            .map_err(ImageError::Store)?
        else {
            return Ok(None);
        };
        Ok(info
            .layers
            .iter()
            .all(|d| self.store.has_layer(d))
            .then_some(info))
    }

    async fn lock(&self, key: String) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.retain(|_, m| Arc::strong_count(m) > 1);
            locks.entry(key).or_default().clone()
        };
        m.lock_owned().await
    }

    async fn pull_ref(&self, r: &ImageRef, secrets: &PullSecrets) -> Result<ImageInfo, ImageError> {
        let started = std::time::Instant::now();
        let auth = secrets.for_image(r);
        // Only a pull made with the same credentials may stand in for this one: a pod without
        // the pull secret must still hear the registry's refusal.
        let key = format!("image:{r}:{}", identity(&auth));
        let _one_pull = self.lock(key.clone()).await;
        let shared = self
            .pulled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .is_some_and(|done| *done >= started);
        if shared && let Some(info) = self.get_ref(r)? {
            return Ok(info);
        }
        let _no_gc = self.gc_lock.read().await;
        let target = self.registry.target(r);
        let (body, digest) = self.registry.manifest(r, &target, &auth).await?;
        self.store
            .put_blob(&digest, &body)
            .map_err(ImageError::Store)?;
        let mut doc = parse_manifest(r, &body)?;
        let mut manifest_digest = digest.clone();
        if !doc.manifests.is_empty() {
            let chosen = doc
                .manifests
                .iter()
                .find(|m| {
                    m.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                })
                .ok_or_else(|| ImageError::Manifest {
                    image: r.to_string(),
                    reason: "no linux/amd64 entry in the image index".into(),
                })?;
            let child = target.clone_with_digest(chosen.digest.clone());
            let (body, d) = self.registry.manifest(r, &child, &auth).await?;
            self.store.put_blob(&d, &body).map_err(ImageError::Store)?;
            doc = parse_manifest(r, &body)?;
            manifest_digest = d;
        }
        let bad = |reason: &str| ImageError::Manifest {
            image: r.to_string(),
            reason: reason.to_string(),
        };
        if doc.schema_version != Some(2) {
            return Err(bad("unsupported schemaVersion (want 2)"));
        }
        let config_desc = doc.config.ok_or_else(|| bad("no config descriptor"))?;
        let config_bytes = self.small_blob(r, &target, &auth, &config_desc).await?;
        let config: ConfigDoc = serde_json::from_slice(&config_bytes)
            .map_err(|e| bad(&format!("image config: {e}")))?;
        if config.rootfs.diff_ids.len() != doc.layers.len() {
            return Err(bad("config diff_ids do not match the manifest's layers"));
        }
        for l in &doc.layers {
            if !(l.media_type.is_empty() || l.media_type.contains(".tar")) {
                return Err(bad(&format!(
                    "unsupported layer media type {}",
                    l.media_type
                )));
            }
        }
        futures::future::try_join_all(
            doc.layers
                .iter()
                .zip(&config.rootfs.diff_ids)
                .map(|(desc, diff_id)| self.ensure_layer(r, &target, &auth, desc, diff_id)),
        )
        .await?;
        let inner = config.config.unwrap_or_default();
        let now = now_secs();
        let info = ImageInfo {
            reference: r.to_string(),
            digest,
            manifest_digest,
            config_digest: config_desc.digest,
            layers: config.rootfs.diff_ids,
            config: ImageConfig {
                entrypoint: inner.entrypoint.unwrap_or_default(),
                cmd: inner.cmd.unwrap_or_default(),
                env: inner.env.unwrap_or_default(),
                working_dir: inner.working_dir.filter(|w| !w.is_empty()),
                user: inner.user.filter(|u| !u.is_empty()),
                stop_signal: inner.stop_signal.filter(|s| !s.is_empty()),
            },
            size: doc.layers.iter().map(|l| l.size).sum::<u64>() + config_desc.size,
            pulled_at: now,
            last_used: now,
        };
        self.store.put_record(&info).map_err(ImageError::Store)?;
        let mut pulled = self.pulled.lock().unwrap_or_else(|p| p.into_inner());
        pulled.retain(|_, done| done.elapsed() < std::time::Duration::from_secs(600));
        pulled.insert(key, std::time::Instant::now());
        drop(pulled);
        tracing::info!(image = %r, digest = %info.digest, "pulled image");
        Ok(info)
    }

    async fn small_blob(
        &self,
        r: &ImageRef,
        target: &Reference,
        auth: &RegistryAuth,
        desc: &Descriptor,
    ) -> Result<Vec<u8>, ImageError> {
        if let Some(bytes) = self
            .store
            .get_blob(&desc.digest)
            .map_err(ImageError::Store)?
        {
            return Ok(bytes);
        }
        if desc.size > MAX_SMALL_BLOB {
            return Err(ImageError::TooLarge {
                digest: desc.digest.clone(),
                size: MAX_SMALL_BLOB,
            });
        }
        let mut bytes = Vec::new();
        self.registry
            .blob(r, target, auth, &desc.digest, desc.size, &mut bytes)
            .await?;
        self.store
            .put_blob(&desc.digest, &bytes)
            .map_err(ImageError::Store)?;
        Ok(bytes)
    }

    /// Download layer `desc` to `tmp/`, then unpack it (checking its diff id) and move it
    /// into place. The compressed blob is not kept.
    async fn ensure_layer(
        &self,
        r: &ImageRef,
        target: &Reference,
        auth: &RegistryAuth,
        desc: &Descriptor,
        diff_id: &str,
    ) -> Result<(), ImageError> {
        if self.store.has_layer(diff_id) {
            return Ok(());
        }
        let _one_unpack = self.lock(format!("layer:{diff_id}")).await;
        if self.store.has_layer(diff_id) {
            return Ok(());
        }
        // Validates the diff id's form before anything is written.
        self.store.layer_path(diff_id).map_err(ImageError::Store)?;
        let blob = self.store.tmp_path("blob");
        let mut file = tokio::fs::File::create(&blob)
            .await
            .map_err(ImageError::Store)?;
        let fetched = self
            .registry
            .blob(r, target, auth, &desc.digest, desc.size, &mut file)
            .await;
        drop(file);
        if let Err(e) = fetched {
            let _ = std::fs::remove_file(&blob);
            return Err(e);
        }
        let store = self.store.clone();
        let diff_id = diff_id.to_string();
        let image = r.to_string();
        let digest = desc.digest.clone();
        tokio::task::spawn_blocking(move || {
            let dir = store.tmp_path("layer");
            let result = std::fs::create_dir(&dir)
                .and_then(|()| std::fs::File::open(&blob))
                .map_err(ImageError::Store)
                .and_then(|f| {
                    unpack_layer(f, &dir, Some(&diff_id)).map_err(|source| ImageError::Layer {
                        image,
                        digest,
                        source,
                    })
                });
            let _ = std::fs::remove_file(&blob);
            match result {
                Ok(_) => store
                    .commit_layer(&dir, &diff_id)
                    .map(|_| ())
                    .map_err(ImageError::Store),
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| ImageError::Store(std::io::Error::other(e)))?
    }
}

/// Who a pull authenticates as (a digest of the credentials, never the credentials).
fn identity(auth: &RegistryAuth) -> String {
    use sha2::Digest;
    let secret = match auth {
        RegistryAuth::Anonymous => return "anonymous".into(),
        RegistryAuth::Basic(user, password) => format!("basic:{user}:{password}"),
        RegistryAuth::Bearer(token) => format!("bearer:{token}"),
    };
    hex::encode(&sha2::Sha256::digest(secret.as_bytes())[..8])
}

fn parse_manifest(r: &ImageRef, body: &[u8]) -> Result<ManifestDoc, ImageError> {
    serde_json::from_slice(body).map_err(|e| ImageError::Manifest {
        image: r.to_string(),
        reason: e.to_string(),
    })
}
