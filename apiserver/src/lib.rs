//! The Kubernetes-compatible API server.
//!
//! A request goes: TLS ([`server`]) → authentication (`auth`) → path parsing (`request`) →
//! a verb handler (`handlers`: read, write, delete, watch, subresources) → the store
//! (`objects`), with `negotiate` choosing JSON, YAML or Table on the way out and `status`
//! turning every failure into a Kubernetes `Status`.

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
mod server;
mod services;
mod status;
mod version;

pub use auth::{TokenFileError, Tokens, User};
pub use handlers::Api;
pub use kubelet::KubeletAccess;
pub use server::{SeedCa, Server, ServerError, ServerOptions};
pub use status::ApiError;
