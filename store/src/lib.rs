//! The store behind the API server: an MVCC key/value contract that carries Kubernetes
//! semantics, and the backends that fulfil it.
//!
//! * Every successful write gets the next value of one global revision counter; that revision is
//!   the object's `resourceVersion`.
//! * Each key remembers the revision that created it and the one that last changed it, so updates
//!   and deletes can be compare-and-swap on the latter.
//! * Watches start from a revision and see every later change under a prefix, in order, or fail
//!   with [`StoreError::Compacted`] when that revision is older than the compaction floor.

mod contract;

pub use contract::{Event, EventKind, KeyValue, ListPage, Store, StoreError, WatchStream};
