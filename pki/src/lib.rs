//! Certificates for a skiff cluster: certificate authorities, serving and client certificates,
//! rustls configurations that use them, and kubeconfig files that carry them to `kubectl`.
//!
//! All keys are ECDSA P-256. Client certificates follow the Kubernetes convention: the subject's
//! common name is the user, each Organization attribute a group.

mod ca;
mod csr;
mod der;
mod error;
mod files;
mod identity;
mod kubeconfig;
mod node;
mod server;
mod tls;

pub use ca::{CertificateAuthority, CertifiedKey};
pub use csr::{ServingRequest, kubelet_serving_request, read_serving_request};
pub use error::PkiError;
pub use files::write_private;
pub use identity::{Identity, identity_from_der};
pub use kubeconfig::Kubeconfig;
pub use node::{NODES_GROUP, node_kubeconfig, node_user};
pub use server::ServerPki;
pub use tls::{client_tls_config, server_tls_config};
