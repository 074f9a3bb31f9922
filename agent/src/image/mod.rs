//! Container images: references and mirrors, pull secrets, pull policy, the OCI distribution
//! client, the content-addressed store under `DATA/images`, safe layer unpacking, and garbage collection under disk pressure (`gc`).
//!
//! The pod worker holds one [`ImageService`] and calls [`ImageService::ensure`] before creating
//! a container, then [`ImageService::rootfs`] for the overlayfs lower dirs.

mod auth;
mod gc;
mod policy;
mod reference;
mod registry;
mod service;
mod store;
mod unpack;

pub use auth::{AuthError, PullSecrets};
pub use gc::{FsStats, GcPolicy, Outcome as GcOutcome, check as gc_check, gc_loop};
pub use policy::{PullDecision, PullPolicy};
pub use reference::{ImageRef, InvalidMirror, InvalidReference, Mirror};
pub use service::{Ensured, ImageService};
pub use store::{GcReport, ImageConfig, ImageInfo};
pub use unpack::{UnpackError, Unpacked, unpack_layer};

use std::error::Error as _;

/// Why an image could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    InvalidName(#[from] InvalidReference),
    #[error("image {image} is not present and its pull policy is Never")]
    NeverPull { image: String },
    #[error("image {image} not found at {registry}")]
    NotFound { image: String, registry: String },
    #[error("pulling {image} from {registry}")]
    Registry {
        image: String,
        registry: String,
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    #[error("{what} {expected} refused: its content hashes to {actual}")]
    DigestMismatch {
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("blob {digest} is larger than {size} bytes")]
    TooLarge { digest: String, size: u64 },
    #[error("downloading blob {digest}")]
    Transfer {
        digest: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid manifest for {image}: {reason}")]
    Manifest { image: String, reason: String },
    #[error("layer {digest} of {image}")]
    Layer {
        image: String,
        digest: String,
        #[source]
        source: UnpackError,
    },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0} is not in the image store")]
    NotPresent(String),
    #[error("image store")]
    Store(#[source] std::io::Error),
}

impl ImageError {
    /// The container waiting reason the kubelet reports for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidName(_) => "InvalidImageName",
            Self::NeverPull { .. } => "ErrImageNeverPull",
            _ => "ErrImagePull",
        }
    }

    /// The error and all its causes on one line, for events and status messages.
    pub fn message(&self) -> String {
        let mut out = self.to_string();
        let mut cur = self.source();
        while let Some(e) = cur {
            out.push_str(": ");
            out.push_str(&e.to_string());
            cur = e.source();
        }
        out
    }
}
