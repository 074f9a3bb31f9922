//! The Kubernetes-compatible API server.
//!
//! A request goes: TLS ([`server`]) → authentication (`auth`) → path parsing (`request`) →
//! a verb handler (`handlers`: read, write, delete, watch, subresources) → the store
//! (`objects`), with `negotiate` choosing JSON, YAML or Table on the way out and `status`
//! turning every failure into a Kubernetes `Status`.

mod admission;
mod auth;
mod discovery;
mod handlers;
mod kinds;
mod kubelet;
mod negotiate;
mod nodes;
mod objects;
mod request;
mod response;
mod reviews;
mod server;
mod services;
mod status;
mod tokenrequest;
mod tokens;
mod version;

pub use auth::{Credential, TokenFileError, Tokens, User};
pub use handlers::Api;
pub use kubelet::KubeletAccess;
pub use server::{SeedCa, Server, ServerError, ServerOptions};
pub use status::ApiError;
pub use tokens::{Claims, KeyError, ServiceAccountKey, VerifyError};
