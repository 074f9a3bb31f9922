//! The OCI distribution client side: manifests and blobs from a registry (or its configured
//! mirror), every byte hashed and checked against the digest that named it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use oci_client::Reference;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::ImageError;
use super::reference::{ImageRef, Mirror};
use super::store::sha256_digest;

const MANIFEST_TYPES: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// Registry clients with their mirror table.
///
/// `oci_client::Client` remembers the first credentials it saw for a registry (and the tokens
/// they earned), so one client per distinct credential keeps pods with different pull secrets
/// (or none) from borrowing each other's access.
pub(crate) struct Registry {
    clients: Mutex<HashMap<String, Arc<oci_client::Client>>>,
    insecure: Vec<String>,
    mirrors: Vec<Mirror>,
}

impl Registry {
    pub(crate) fn new(mirrors: Vec<Mirror>) -> Self {
        // reqwest is built without a default crypto provider: use ring, as the rest of skiff.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let insecure = mirrors
            .iter()
            .filter(|m| m.insecure_http)
            .map(|m| m.host.clone())
            .collect();
        Self {
            clients: Mutex::new(HashMap::new()),
            insecure,
            mirrors,
        }
    }

    /// The client that uses `auth` (made on first use).
    fn client(&self, auth: &RegistryAuth) -> Arc<oci_client::Client> {
        let key = match auth {
            RegistryAuth::Anonymous => "anonymous".to_string(),
            RegistryAuth::Basic(user, pass) => {
                format!("basic {user} {}", sha256_digest(pass.as_bytes()))
            }
            RegistryAuth::Bearer(token) => format!("bearer {}", sha256_digest(token.as_bytes())),
        };
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(key)
            .or_insert_with(|| {
                Arc::new(oci_client::Client::new(ClientConfig {
                    protocol: ClientProtocol::HttpsExcept(self.insecure.clone()),
                    connect_timeout: Some(Duration::from_secs(10)),
                    read_timeout: Some(Duration::from_secs(60)),
                    ..Default::default()
                }))
            })
            .clone()
    }

    /// Where `image` is fetched from: its registry, or the mirror configured for it.
    pub(crate) fn target(&self, image: &ImageRef) -> Reference {
        let mut r = image.oci().clone();
        if let Some(m) = self.mirrors.iter().find(|m| m.registry == image.registry()) {
            r.set_mirror_registry(m.host.clone());
        }
        r
    }

    /// The host actually contacted for `target`, for error messages.
    pub(crate) fn host(target: &Reference) -> String {
        target.resolve_registry().to_string()
    }

    /// Fetch the manifest (or index) `target` names, returning its bytes and their digest.
    /// When `target` carries a digest, the bytes must hash to it.
    pub(crate) async fn manifest(
        &self,
        image: &ImageRef,
        target: &Reference,
        auth: &RegistryAuth,
    ) -> Result<(Vec<u8>, String), ImageError> {
        let (body, _) = self
            .client(auth)
            .pull_manifest_raw(target, auth, MANIFEST_TYPES)
            .await
            .map_err(|e| classify(image, target, "manifest", e))?;
        let actual = sha256_digest(&body);
        if let Some(expected) = target.digest()
            && expected != actual
        {
            return Err(ImageError::DigestMismatch {
                what: "manifest",
                expected: expected.to_string(),
                actual,
            });
        }
        Ok((body.to_vec(), actual))
    }

    /// Stream blob `digest` into `out`, refusing more than `size` bytes and content that does
    /// not hash to `digest`. Call after [`Registry::manifest`] with the same `auth`.
    pub(crate) async fn blob<W: AsyncWrite + Unpin>(
        &self,
        image: &ImageRef,
        target: &Reference,
        auth: &RegistryAuth,
        digest: &str,
        size: u64,
        out: &mut W,
    ) -> Result<(), ImageError> {
        let client = self.client(auth);
        client
            .store_auth_if_needed(target.resolve_registry(), auth)
            .await;
        let mut stream = client
            .pull_blob_stream(target, digest)
            .await
            .map_err(|e| classify(image, target, "blob", e))?;
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mismatch = |hasher: &Sha256| ImageError::DigestMismatch {
            what: "blob",
            expected: digest.to_string(),
            actual: format!("sha256:{}", hex::encode(hasher.clone().finalize())),
        };
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) if e.get_ref().is_some_and(|i| i.is::<DigestError>()) => {
                    return Err(mismatch(&hasher));
                }
                Err(e) => {
                    return Err(ImageError::Transfer {
                        digest: digest.to_string(),
                        source: e,
                    });
                }
            };
            received += chunk.len() as u64;
            if received > size {
                return Err(ImageError::TooLarge {
                    digest: digest.to_string(),
                    size,
                });
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(ImageError::Store)?;
        }
        out.flush().await.map_err(ImageError::Store)?;
        if format!("sha256:{}", hex::encode(hasher.clone().finalize())) != digest {
            return Err(mismatch(&hasher));
        }
        Ok(())
    }
}

fn classify(
    image: &ImageRef,
    target: &Reference,
    what: &'static str,
    e: OciDistributionError,
) -> ImageError {
    let not_found = match &e {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NotFound
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        _ => false,
    };
    if let OciDistributionError::DigestError(DigestError::VerificationError { expected, actual }) =
        &e
    {
        return ImageError::DigestMismatch {
            what,
            expected: expected.clone(),
            actual: actual.clone(),
        };
    }
    if not_found {
        return ImageError::NotFound {
            image: image.to_string(),
            registry: Registry::host(target),
        };
    }
    ImageError::Registry {
        image: image.to_string(),
        registry: Registry::host(target),
        source: e,
    }
}
