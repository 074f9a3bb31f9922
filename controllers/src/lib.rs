//! The control loops of a skiff cluster, as ordinary clients of the Kubernetes API.
//!
//! Everything here talks to the API server through a [`kube::Client`]: the controllers
//! (`manager`), the scheduler (`scheduler`) and the hollow nodes of `skiff sim` (`sim`). None of
//! it reaches into the store, so it works the same over the embedded store and over etcd.
//!
//! Layout: `runtime` (shared informers, work-queue retry policy, expectations, events),
//! `leader` (Lease-based leader election), `util` (selectors, owner references, quantities),
//! one module per controller, `scheduler`, `sim`.

mod client;
mod cron;
mod leader;
mod manager;
mod runtime;
mod util;

mod cronjob;
mod daemonset;
mod deployment;
mod endpoints;
mod gc;
mod job;
mod job_pods;
mod namespace;
mod nodelifecycle;
mod replicaset;
mod revisions;
mod statefulset;

pub mod scheduler;
pub mod sim;

pub use client::{client_from_kubeconfig, in_process_client};
pub use leader::LeaderElection;
pub use manager::{Options, run_controllers};
pub use runtime::Error;
