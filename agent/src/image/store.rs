//! The content-addressed image store under `DATA/images`:
//!
//! ```text
//! blobs/sha256/<hex>    manifests, indexes and configs, by digest (layer blobs only transiently)
//! layers/sha256/<hex>   unpacked layers by diff id: each one an overlayfs lower dir
//! records/<hex>.json    one image: reference → digests, layers, config (hex = sha256 of the reference)
//! tmp/                  downloads and unpacks in progress; emptied on open
//! ```
//!
//! Every write goes to `tmp/` first and is renamed into place, so a crash never leaves a
//! half-written blob, layer or record under its final name.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::reference::ImageRef;

/// What the runtime needs from an image's config blob.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` strings.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub stop_signal: Option<String>,
}

/// One image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    /// Normalised reference it was pulled by: `docker.io/library/nginx:latest`.
    pub reference: String,
    /// What the reference resolved to at the registry (the index digest for multi-arch images).
    pub digest: String,
    /// The linux/amd64 image manifest.
    pub manifest_digest: String,
    pub config_digest: String,
    /// Diff ids, bottom layer first.
    pub layers: Vec<String>,
    pub config: ImageConfig,
    /// Compressed size as the manifest declares it (what `kubectl describe node` lists).
    pub size: u64,
    /// Unix seconds.
    pub pulled_at: u64,
    pub last_used: u64,
}

impl ImageInfo {
    /// `docker.io/library/nginx@sha256:...`: the container status `imageID`.
    pub fn image_id(&self) -> String {
        match ImageRef::parse(&self.reference) {
            Ok(r) => r.with_digest(&self.digest),
            Err(_) => self.digest.clone(),
        }
    }
}

/// The result of one garbage collection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// References removed, oldest first.
    pub removed: Vec<String>,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Is `digest` a well-formed `sha256:<64 lowercase hex>`? Only such digests become file names.
pub(crate) fn hex_of(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// The on-disk store. Cheap to clone (a path).
#[derive(Debug, Clone)]
pub(crate) struct Store {
    root: PathBuf,
}

impl Store {
    /// Open (creating) the store at `root` and clear leftovers of interrupted writes.
    pub(crate) fn open(root: &Path) -> io::Result<Self> {
        for dir in ["blobs/sha256", "layers/sha256", "records", "tmp"] {
            fs::create_dir_all(root.join(dir))?;
        }
        let store = Self {
            root: root.to_path_buf(),
        };
        for e in fs::read_dir(store.root.join("tmp"))? {
            let p = e?.path();
            if p.is_dir() {
                fs::remove_dir_all(&p)?;
            } else {
                fs::remove_file(&p)?;
            }
        }
        Ok(store)
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh path under `tmp/` (not created).
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    pub(crate) fn blob_path(&self, digest: &str) -> io::Result<PathBuf> {
        let hex =
            hex_of(digest).ok_or_else(|| invalid(format!("unsupported digest {digest:?}")))?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    pub(crate) fn layer_path(&self, diff_id: &str) -> io::Result<PathBuf> {
        let hex =
            hex_of(diff_id).ok_or_else(|| invalid(format!("unsupported diff id {diff_id:?}")))?;
        Ok(self.root.join("layers/sha256").join(hex))
    }

    pub(crate) fn has_layer(&self, diff_id: &str) -> bool {
        self.layer_path(diff_id).is_ok_and(|p| p.is_dir())
    }

    /// Store a small blob (manifest, config) whose bytes must hash to `digest`.
    pub(crate) fn put_blob(&self, digest: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.blob_path(digest)?;
        let actual = sha256_digest(bytes);
        if actual != digest {
            return Err(invalid(format!(
                "blob digest mismatch: expected {digest}, got {actual}"
            )));
        }
        if path.exists() {
            return Ok(());
        }
        self.write_atomic(&path, bytes)
    }

    /// Read a stored blob, re-checking its digest (a corrupted store is not trusted).
    pub(crate) fn get_blob(&self, digest: &str) -> io::Result<Option<Vec<u8>>> {
        let path = self.blob_path(digest)?;
        match fs::read(&path) {
            Ok(bytes) if sha256_digest(&bytes) == digest => Ok(Some(bytes)),
            Ok(_) => {
                fs::remove_file(&path)?;
                Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Move an unpacked layer from `tmp` into place. If another pull got there first, the
    /// existing layer wins and `tmp` is discarded.
    pub(crate) fn commit_layer(&self, tmp: &Path, diff_id: &str) -> io::Result<PathBuf> {
        let path = self.layer_path(diff_id)?;
        match fs::rename(tmp, &path) {
            Ok(()) => Ok(path),
            Err(_) if path.is_dir() => {
                fs::remove_dir_all(tmp)?;
                Ok(path)
            }
            Err(e) => Err(e),
        }
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.tmp_path("write");
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    }

    fn record_path(&self, reference: &str) -> PathBuf {
        self.root.join("records").join(format!(
            "{}.json",
            hex::encode(Sha256::digest(reference.as_bytes()))
        ))
    }

    pub(crate) fn put_record(&self, info: &ImageInfo) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(info).map_err(io::Error::other)?;
        self.write_atomic(&self.record_path(&info.reference), &bytes)
    }

    pub(crate) fn get_record(&self, reference: &str) -> io::Result<Option<ImageInfo>> {
        match fs::read(self.record_path(reference)) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes).map_err(io::Error::other)?,
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn records(&self) -> io::Result<Vec<ImageInfo>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.root.join("records"))? {
            let bytes = fs::read(e?.path())?;
            out.push(serde_json::from_slice(&bytes).map_err(io::Error::other)?);
        }
        out.sort_by(|a: &ImageInfo, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// Bytes the store occupies on disk (each inode counted once).
    pub(crate) fn usage(&self) -> io::Result<u64> {
        let mut seen = HashSet::new();
        let mut total = 0;
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir)? {
                let e = e?;
                let md = e.metadata()?;
                if seen.insert((md.dev(), md.ino())) {
                    total += md.blocks() * 512;
                }
                if md.is_dir() {
                    stack.push(e.path());
                }
            }
        }
        Ok(total)
    }

    /// Remove images not in `in_use` (matched against reference, digest or image id), least
    /// recently used first, until the store is at most `target_bytes`; then remove layers
    /// and blobs no remaining image refers to.
    pub(crate) fn gc(&self, in_use: &HashSet<String>, target_bytes: u64) -> io::Result<GcReport> {
        let bytes_before = self.usage()?;
        let mut report = GcReport {
            bytes_before,
            bytes_after: bytes_before,
            ..Default::default()
        };
        let mut candidates: Vec<ImageInfo> = self
            .records()?
            .into_iter()
            .filter(|r| {
                !in_use.contains(&r.reference)
                    && !in_use.contains(&r.digest)
                    && !in_use.contains(&r.image_id())
            })
            .collect();
        candidates.sort_by_key(|r| (r.last_used, r.pulled_at));
        for victim in candidates {
            if report.bytes_after <= target_bytes {
                break;
            }
            fs::remove_file(self.record_path(&victim.reference))?;
            report.removed.push(victim.reference);
            self.sweep()?;
            report.bytes_after = self.usage()?;
        }
        Ok(report)
    }

    /// Delete layers and blobs that no image record refers to.
    fn sweep(&self) -> io::Result<()> {
        let records = self.records()?;
        let mut layers = HashSet::new();
        let mut blobs = HashSet::new();
        for r in &records {
            layers.extend(
                r.layers
                    .iter()
                    .filter_map(|d| hex_of(d))
                    .map(str::to_string),
            );
            for d in [&r.digest, &r.manifest_digest, &r.config_digest] {
                if let Some(h) = hex_of(d) {
                    blobs.insert(h.to_string());
                }
            }
        }
        for e in fs::read_dir(self.root.join("layers/sha256"))? {
            let e = e?;
            if !layers.contains(e.file_name().to_string_lossy().as_ref()) {
                fs::remove_dir_all(e.path())?;
            }
        }
        for e in fs::read_dir(self.root.join("blobs/sha256"))? {
            let e = e?;
            if !blobs.contains(e.file_name().to_string_lossy().as_ref()) {
                fs::remove_file(e.path())?;
            }
        }
        Ok(())
    }

    /// Forget one image (its layers and blobs go at the next sweep).
    pub(crate) fn remove(&self, reference: &str) -> io::Result<bool> {
        match fs::remove_file(self.record_path(reference)) {
            Ok(()) => {
                self.sweep()?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(reference: &str, layer_byte: u8, last_used: u64) -> ImageInfo {
        let layer = format!("sha256:{}", hex::encode([layer_byte; 32]));
        ImageInfo {
            reference: reference.into(),
            digest: format!("sha256:{}", hex::encode([layer_byte ^ 0xff; 32])),
            manifest_digest: String::new(),
            config_digest: String::new(),
            layers: vec![layer],
            config: ImageConfig::default(),
            size: 0,
            pulled_at: 0,
            last_used,
        }
    }

    fn add_layer(store: &Store, diff_id: &str, bytes: usize) {
        let tmp = store.tmp_path("layer");
        fs::create_dir(&tmp).unwrap();
        fs::write(tmp.join("data"), vec![7u8; bytes]).unwrap();
        store.commit_layer(&tmp, diff_id).unwrap();
    }

    #[test]
    fn blobs_are_verified_and_written_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = sha256_digest(b"hello");
        store.put_blob(&good, b"hello").unwrap();
        assert_eq!(
            store.get_blob(&good).unwrap().as_deref(),
            Some(&b"hello"[..])
        );
        let err = store.put_blob(&good, b"evil").unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        assert!(store.put_blob("sha256:../../etc", b"x").is_err());
        // Tampering on disk is detected on read.
        fs::write(store.blob_path(&good).unwrap(), b"tampered").unwrap();
        assert_eq!(store.get_blob(&good).unwrap(), None);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn records_round_trip_and_reopen_clears_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let i = info("docker.io/library/nginx:latest", 1, 5);
        store.put_record(&i).unwrap();
        assert_eq!(store.get_record(&i.reference).unwrap(), Some(i.clone()));
        assert_eq!(store.get_record("docker.io/library/other:1").unwrap(), None);
        fs::write(store.tmp_path("junk"), b"x").unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(store.records().unwrap(), vec![i]);
    }

    #[test]
    fn a_layer_committed_twice_keeps_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let diff_id = format!("sha256:{}", hex::encode([9u8; 32]));
        for content in ["first", "second"] {
            let tmp = store.tmp_path("layer");
            fs::create_dir(&tmp).unwrap();
            fs::write(tmp.join("f"), content).unwrap();
            let p = store.commit_layer(&tmp, &diff_id).unwrap();
            assert_eq!(fs::read_to_string(p.join("f")).unwrap(), "first");
            assert!(!tmp.exists(), "the loser's tmp dir is discarded");
        }
        assert!(store.layer_path("sha256:nothex").is_err());
    }

    #[test]
    fn gc_removes_unused_images_oldest_first_until_under_target() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = info("docker.io/library/old:1", 1, 10);
        let mid = info("docker.io/library/mid:1", 2, 20);
        let used = info("docker.io/library/used:1", 3, 5);
        for (i, b) in [(&old, 1u8), (&mid, 2), (&used, 3)] {
            store.put_record(i).unwrap();
            add_layer(&store, &format!("sha256:{}", hex::encode([b; 32])), 1 << 20);
        }
        let in_use: HashSet<String> = [used.reference.clone()].into();
        // A target just under the current usage: removing the oldest unused image suffices.
        let before = store.usage().unwrap();
        let report = store.gc(&in_use, before - (512 << 10)).unwrap();
        assert_eq!(report.removed, vec![old.reference.clone()]);
        assert!(report.bytes_after < report.bytes_before);
        assert!(!store.has_layer(&old.layers[0]));
        assert!(store.has_layer(&mid.layers[0]));
        // A target of zero removes every unused image but never the one in use.
        let report = store.gc(&in_use, 0).unwrap();
        assert_eq!(report.removed, vec![mid.reference.clone()]);
        assert!(store.has_layer(&used.layers[0]));
        assert_eq!(store.records().unwrap(), vec![used]);
    }
}
