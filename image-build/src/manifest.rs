//! The artifact manifest: `manifest.json` lists every file of a built image (kernel,
//! initramfs, disk image, PXE files) with its size and SHA-256, sorted by name, and
//! `manifest.json.sig` holds a detached Ed25519 signature over the manifest's exact bytes
//! (`ed25519 <key-id> <base64>`, the same format as signed machine configs).
//!
//! ```json
//! {
//!   "version": "v1",
//!   "files": [
//!     { "name": "initramfs", "size": 123, "sha256": "…" }
//!   ]
//! }
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};
use skiff_machine::{PublicKey, SignatureError, SigningKey, sign_detached, verify_detached};

/// File name of the manifest in an artifact directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of the manifest's detached signature.
pub const SIGNATURE_FILE: &str = "manifest.json.sig";
const VERSION: &str = "v1";

/// Why a manifest could not be built, read or checked.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A file name that cannot appear in a manifest.
    #[error("invalid manifest file name `{name}`: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The same name listed twice.
    #[error("`{0}` is listed twice in the manifest")]
    Duplicate(String),
    /// Reading a file failed.
    #[error("could not read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The manifest is not valid JSON for this schema.
    #[error("manifest is not valid")]
    Json(#[from] serde_json::Error),
    /// The manifest parsed but breaks a rule (version, order, digest form).
    #[error("manifest is not valid: {0}")]
    Format(String),
    /// The signature is missing, untrusted or does not match.
    #[error("manifest signature")]
    Signature(#[from] SignatureError),
    /// A file differs from what the manifest says.
    #[error("{name}: expected {expected}, found {actual}; the artifact is damaged or was changed")]
    Mismatch {
        /// The file name.
        name: String,
        /// What the manifest says (size or digest).
        expected: String,
        /// What the file has.
        actual: String,
    },
}

/// One file of the artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// Path relative to the artifact directory (`vmlinuz`, `pxe/initramfs`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the contents, 64 lowercase hex digits.
    pub sha256: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    version: String,
    files: Vec<ManifestEntry>,
}

/// The list of artifact files, kept sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    files: BTreeMap<String, ManifestEntry>,
}

impl Manifest {
    /// An empty manifest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lists a file whose contents are in memory.
    pub fn add_bytes(&mut self, name: &str, contents: &[u8]) -> Result<(), ManifestError> {
        let mut context = Context::new(&SHA256);
        context.update(contents);
        let size = u64::try_from(contents.len()).unwrap_or(u64::MAX);
        self.insert(name, size, &context)
    }

    /// Lists a file on disk, reading it in chunks.
    pub fn add_file(&mut self, name: &str, path: &Path) -> Result<(), ManifestError> {
        let (size, context) = hash_file(path)?;
        self.insert(name, size, &context)
    }

    fn insert(&mut self, name: &str, size: u64, context: &Context) -> Result<(), ManifestError> {
        check_name(name)?;
        if self.files.contains_key(name) {
            return Err(ManifestError::Duplicate(name.to_owned()));
        }
        let entry = ManifestEntry {
            name: name.to_owned(),
            size,
            sha256: hex(context.clone().finish().as_ref()),
        };
        self.files.insert(name.to_owned(), entry);
        Ok(())
    }

    /// The listed files, sorted by name.
    pub fn entries(&self) -> impl Iterator<Item = &ManifestEntry> {
        self.files.values()
    }

    /// The entry for `name`.
    pub fn get(&self, name: &str) -> Option<&ManifestEntry> {
        self.files.get(name)
    }

    /// The `manifest.json` bytes: pretty JSON, files sorted by name, trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let wire = Wire {
            version: VERSION.to_owned(),
            files: self.files.values().cloned().collect(),
        };
        // Serialising plain strings and numbers cannot fail.
        let mut out = serde_json::to_vec_pretty(&wire).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Reads `manifest.json`, refusing unknown fields, unsorted or duplicate names and
    /// malformed digests.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let wire: Wire = serde_json::from_slice(bytes)?;
        if wire.version != VERSION {
            return Err(ManifestError::Format(format!(
                "version `{}` is not supported (expected `{VERSION}`)",
                wire.version
            )));
        }
        let mut manifest = Self::new();
        let mut previous: Option<&str> = None;
        for entry in &wire.files {
            check_name(&entry.name)?;
            if previous.is_some_and(|p| p >= entry.name.as_str()) {
                return Err(ManifestError::Format(format!(
                    "`{}` is out of order or repeated; files must be sorted by name",
                    entry.name
                )));
            }
            previous = Some(&entry.name);
            if entry.sha256.len() != 64
                || !entry
                    .sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err(ManifestError::Format(format!(
                    "`{}`: sha256 must be 64 lowercase hex digits",
                    entry.name
                )));
            }
            manifest.files.insert(entry.name.clone(), entry.clone());
        }
        Ok(manifest)
    }

    /// The manifest bytes and their detached signature file contents.
    pub fn sign(&self, key: &SigningKey) -> (Vec<u8>, String) {
        let json = self.to_json();
        let signature = sign_detached(&json, key);
        (json, signature)
    }

    /// Checks the signature over the exact manifest bytes, then parses them.
    pub fn verify(
        json: &[u8],
        signature: &[u8],
        trusted: &[PublicKey],
    ) -> Result<Self, ManifestError> {
        verify_detached(json, signature, trusted)?;
        Self::from_json(json)
    }

    /// Checks that every listed file in `dir` has the listed size and digest.
    pub fn check_files(&self, dir: &Path) -> Result<(), ManifestError> {
        for entry in self.files.values() {
            let (size, context) = hash_file(&dir.join(&entry.name))?;
            if size != entry.size {
                return Err(ManifestError::Mismatch {
                    name: entry.name.clone(),
                    expected: format!("{} bytes", entry.size),
                    actual: format!("{size} bytes"),
                });
            }
            let digest = hex(context.finish().as_ref());
            if digest != entry.sha256 {
                return Err(ManifestError::Mismatch {
                    name: entry.name.clone(),
                    expected: format!("sha256 {}", entry.sha256),
                    actual: format!("sha256 {digest}"),
                });
            }
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), ManifestError> {
    let invalid = |reason| ManifestError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.starts_with('/') {
        return Err(invalid("must be a non-empty relative path"));
    }
    if name
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(invalid("empty, `.` or `..` components are not allowed"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("control characters are not allowed"));
    }
    Ok(())
}

fn hash_file(path: &Path) -> Result<(u64, Context), ManifestError> {
    let io_error = |source| ManifestError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let mut context = Context::new(&SHA256);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer).map_err(io_error)?;
        if read == 0 {
            return Ok((size, context));
        }
        context.update(&buffer[..read]);
        size += u64::try_from(read).unwrap_or(u64::MAX);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_files_sorted_with_sha256() {
        let mut manifest = Manifest::new();
        manifest.add_bytes("vmlinuz", b"kernel").unwrap();
        manifest.add_bytes("initramfs", b"").unwrap();
        let json = String::from_utf8(manifest.to_json()).unwrap();
        let initramfs = json.find("\"initramfs\"").unwrap();
        assert!(initramfs < json.find("\"vmlinuz\"").unwrap());
        // SHA-256 of the empty string.
        assert!(json.contains("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        assert_eq!(manifest.get("vmlinuz").unwrap().size, 6);
        assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), manifest);
        assert!(matches!(
            manifest.add_bytes("vmlinuz", b""),
            Err(ManifestError::Duplicate(_))
        ));
        for bad in ["", "/abs", "a/../b", "a//b"] {
            assert!(manifest.add_bytes(bad, b"").is_err(), "{bad}");
        }
    }

    #[test]
    fn signed_manifest_verifies_and_refuses_tampering() {
        let key = SigningKey::generate().unwrap();
        let mut manifest = Manifest::new();
        manifest.add_bytes("initramfs", b"cpio").unwrap();
        let (json, signature) = manifest.sign(&key);
        let trusted = [key.public_key()];
        assert_eq!(
            Manifest::verify(&json, signature.as_bytes(), &trusted).unwrap(),
            manifest
        );
        let mut tampered = json.clone();
        let last = tampered.len() - 3;
        tampered[last] ^= 1;
        assert!(matches!(
            Manifest::verify(&tampered, signature.as_bytes(), &trusted),
            Err(ManifestError::Signature(
                SignatureError::BadSignature { .. }
            ))
        ));
        let stranger = SigningKey::generate().unwrap();
        assert!(matches!(
            Manifest::verify(&json, signature.as_bytes(), &[stranger.public_key()]),
            Err(ManifestError::Signature(SignatureError::UnknownKey { .. }))
        ));
    }

    #[test]
    fn checks_files_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("initramfs"), &big).unwrap();
        std::fs::write(dir.path().join("vmlinuz"), b"kernel").unwrap();
        let mut manifest = Manifest::new();
        manifest
            .add_file("initramfs", &dir.path().join("initramfs"))
            .unwrap();
        manifest
            .add_file("vmlinuz", &dir.path().join("vmlinuz"))
            .unwrap();
        let mut in_memory = Manifest::new();
        in_memory.add_bytes("initramfs", &big).unwrap();
        assert_eq!(manifest.get("initramfs"), in_memory.get("initramfs"));
        manifest.check_files(dir.path()).unwrap();
        std::fs::write(dir.path().join("vmlinuz"), b"kernex").unwrap();
        let err = manifest.check_files(dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("vmlinuz: expected sha256"), "{err}");
        std::fs::write(dir.path().join("vmlinuz"), b"k").unwrap();
        let err = manifest.check_files(dir.path()).unwrap_err().to_string();
        assert!(err.contains("expected 6 bytes, found 1 bytes"), "{err}");
    }

    #[test]
    fn refuses_malformed_manifests() {
        let unsorted = br#"{"version":"v1","files":[
            {"name":"b","size":1,"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
            {"name":"a","size":1,"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]}"#;
        assert!(
            Manifest::from_json(unsorted)
                .unwrap_err()
                .to_string()
                .contains("sorted")
        );
        let short = br#"{"version":"v1","files":[{"name":"a","size":1,"sha256":"abc"}]}"#;
        assert!(
            Manifest::from_json(short)
                .unwrap_err()
                .to_string()
                .contains("64")
        );
        let extra = br#"{"version":"v1","files":[],"extra":1}"#;
        assert!(matches!(
            Manifest::from_json(extra),
            Err(ManifestError::Json(_))
        ));
        let version = br#"{"version":"v9","files":[]}"#;
        assert!(
            Manifest::from_json(version)
                .unwrap_err()
                .to_string()
                .contains("v9")
        );
    }
}
