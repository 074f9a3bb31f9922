//! Where container root filesystems come from, behind [`Images`]: the OCI image store (pulls
//! and unpacks layers) plugs in here, and [`LocalImages`] serves plain directories for
//! development and tests.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

use crate::image::{ImageRef, ImageService, PullPolicy, PullSecrets};

/// What an image says about how to run it (the OCI image config's `config` object).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// The signal that asks the container to stop (`SIGQUIT` for nginx); SIGTERM if unset.
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// An image ready to run.
#[derive(Debug, Clone)]
pub struct Image {
    /// Read-only layer directories for overlayfs, top layer first.
    pub layers: Vec<PathBuf>,
    /// `imageID` as pod status shows it (e.g. `docker.io/library/nginx@sha256:…`).
    pub id: String,
    pub config: ImageConfig,
    /// Whether this call pulled it (for the Pulling/Pulled events).
    pub pulled: bool,
}

/// Why an image is not available: `reason` is the container waiting reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ImageError {
    /// `ErrImagePull`, `ErrImageNeverPull`, `InvalidImageName`.
    pub reason: &'static str,
    pub message: String,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A source of images.
pub trait Images: Send + Sync {
    /// The image `reference`, pulled according to `policy` (`Always`, `IfNotPresent`,
    /// `Never`; None: the API's default for the reference) with the pod's pull secrets.
    fn ensure<'a>(
        &'a self,
        reference: &'a str,
        policy: Option<&'a str>,
        pull_secrets: &'a [Secret],
    ) -> BoxFuture<'a, Result<Image, ImageError>>;

    /// Whether [`Images::ensure`] with `policy` will contact a registry (for the `Pulling`
    /// event the kubelet posts before a pull).
    fn will_pull(&self, _reference: &str, _policy: Option<&str>) -> bool {
        false
    }
}

/// Images as directories: `reference` `docker.io/library/busybox:1.36` is `DIR/busybox`, a
/// root filesystem tree, with an optional `DIR/busybox.json` holding its image config.
#[derive(Debug, Clone)]
pub struct LocalImages {
    pub dir: PathBuf,
}

/// The repository's last path component, without tag or digest.
pub fn short_name(reference: &str) -> &str {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

impl LocalImages {
    fn find(&self, reference: &str) -> Result<Image, ImageError> {
        let name = short_name(reference);
        if name.is_empty() || name.starts_with('.') {
            return Err(ImageError {
                reason: "InvalidImageName",
                message: format!("invalid image name \"{reference}\""),
            });
        }
        let root = self.dir.join(name);
        if !root.is_dir() {
            return Err(ImageError {
                reason: "ErrImagePull",
                message: format!("failed to pull and unpack image \"{reference}\": not found"),
            });
        }
        let config = read_config(&self.dir.join(format!("{name}.json")));
        Ok(Image {
            layers: vec![root],
            id: format!("local://{name}"),
            config,
            pulled: false,
        })
    }
}

fn read_config(path: &Path) -> ImageConfig {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

impl Images for LocalImages {
    fn ensure<'a>(
        &'a self,
        reference: &'a str,
        _policy: Option<&'a str>,
        _pull_secrets: &'a [Secret],
    ) -> BoxFuture<'a, Result<Image, ImageError>> {
        Box::pin(async move { self.find(reference) })
    }
}

/// The OCI image store: pulls through registries and mirrors, verified and unpacked layers.
impl Images for ImageService {
    fn will_pull(&self, reference: &str, policy: Option<&str>) -> bool {
        let Ok(r) = ImageRef::parse(reference) else {
            return false;
        };
        let present = self.get(reference).ok().flatten().is_some();
        PullPolicy::for_container(policy, &r).decide(present) == crate::image::PullDecision::Pull
    }

    fn ensure<'a>(
        &'a self,
        reference: &'a str,
        policy: Option<&'a str>,
        pull_secrets: &'a [Secret],
    ) -> BoxFuture<'a, Result<Image, ImageError>> {
        Box::pin(async move {
            let fail = |e: crate::image::ImageError| ImageError {
                reason: e.reason(),
                message: e.message(),
            };
            let r = ImageRef::parse(reference).map_err(|e| fail(e.into()))?;
            let policy = PullPolicy::for_container(policy, &r);
            let secrets = PullSecrets::from_secrets(pull_secrets).map_err(|e| fail(e.into()))?;
            let ensured = self
                .ensure(reference, policy, &secrets)
                .await
                .map_err(fail)?;
            let layers = self.rootfs(&ensured.info).map_err(fail)?;
            let c = &ensured.info.config;
            let id = r.with_digest(&ensured.info.digest);
            Ok(Image {
                layers,
                id,
                config: ImageConfig {
                    entrypoint: (!c.entrypoint.is_empty()).then(|| c.entrypoint.clone()),
                    cmd: (!c.cmd.is_empty()).then(|| c.cmd.clone()),
                    env: Some(c.env.clone()),
                    working_dir: c.working_dir.clone(),
                    user: c.user.clone(),
                    stop_signal: c.stop_signal.clone(),
                },
                pulled: ensured.pulled,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        assert_eq!(short_name("busybox"), "busybox");
        assert_eq!(short_name("docker.io/library/nginx:1.27"), "nginx");
        assert_eq!(short_name("localhost:5000/x/y@sha256:abc"), "y");
    }

    #[tokio::test]
    async fn local_dirs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("busybox")).unwrap();
        std::fs::write(
            d.path().join("busybox.json"),
            r#"{"Cmd":["sh"],"Env":["A=1"]}"#,
        )
        .unwrap();
        let imgs = LocalImages {
            dir: d.path().into(),
        };
        let img = imgs
            .ensure("docker.io/busybox:latest", Some("IfNotPresent"), &[])
            .await
            .unwrap();
        assert_eq!(img.layers, vec![d.path().join("busybox")]);
        assert_eq!(img.config.cmd, Some(vec!["sh".to_string()]));
        let e = imgs
            .ensure("nope", Some("IfNotPresent"), &[])
            .await
            .unwrap_err();
        assert_eq!(e.reason, "ErrImagePull");
    }
}
