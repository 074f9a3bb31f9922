//! The machine API of a skiff node: gRPC service `skiff.machine.v1.Machine` (see
//! `proto/machine.proto`) over mutual TLS on port 50000, served by PID 1 on every node and
//! called by `skiff ctl`.
//!
//! ```text
//! skiff ctl ─► ctl::run ─► Client::connect (TCP, mTLS, h2) ─────► serve (accept, mTLS)
//!                                                                   └► MachineService
//!                                                                        └► NodeControl
//!                                                 (init's node, host mode, test fakes)
//! ```
//!
//! The server owns the policy (authentication, who may do what, verifying a config before the
//! node stores it); the [`NodeControl`] implementation only reports and acts.

mod client;
pub mod ctl;
mod host;
mod kmsg;
mod node;
pub mod proto;
mod server;
mod state;
mod tls;

pub use client::{CONNECT_TIMEOUT, Client, ClientError, node_address};
pub use host::{HostNode, HostOptions};
pub use kmsg::{Record as KernelRecord, parse as parse_kmsg};
pub use node::{
    Generations, LogChunk, NodeControl, NodeError, NodeVersion, Power, ServiceInfo, ServiceState,
    Stored,
};
pub use server::{MachineService, ServeError, TlsConn, config_status, node_status, serve};
pub use state::{
    APPLIED_FILE, ConfigStore, GENERATION_FILE, PENDING_FILE, RESET_FILE, admin_kubeconfig,
    generation_of, kernel_release,
};
pub use tls::{
    ADMIN_GROUP, Credentials, PORT, Peer, READER_GROUP, TlsError, client_config, node_identity,
    server_config, server_name,
};

#[cfg(test)]
mod tests;
