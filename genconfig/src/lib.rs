//! `skiff gen config`: a cluster's secrets (Kubernetes CA, machine-API CA, service-account
//! signing key, bootstrap token, Ed25519 config-signing key), the signed machine configs that
//! turn a booted node into a control plane or a worker, and the client files (`kubeconfig` for
//! kubectl, `skiffconfig` for the machine API).
//!
//! ```text
//! ClusterSecrets::generate ─► secrets.yaml (everything, 0600)
//!        │ machine_config(NodeSpec) ─► sign_config ─► controlplane.yaml / worker.yaml
//!        │ admin_kubeconfig(url)    ─► kubeconfig
//!        └ skiffconfig(endpoints)   ─► skiffconfig
//! ```
//!
//! Tools that boot many nodes (`skiff cluster create`) keep one [`ClusterSecrets`] and sign one
//! config per node with [`ClusterSecrets::signed_config`].

mod secrets;
mod write;

pub use secrets::{ClusterSecrets, GenError, NodeSpec, SkiffConfig};
pub use write::{GenOptions, Written, gen_config};
