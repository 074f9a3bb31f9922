//! The store behind the API server: an MVCC key/value contract that carries Kubernetes
//! semantics, and the backends that fulfil it.
//!
//! * Every successful write gets the next value of one global revision counter; that revision is
//!   the object's `resourceVersion`.
//! * Each key remembers the revision that created it and the one that last changed it, so updates
//!   and deletes can be compare-and-swap on the latter.
//! * Watches start from a revision and see every later change under a prefix, in order, or fail
//!   with [`StoreError::Compacted`] when that revision is older than the compaction floor.

//!
//! The default backend is [`RedbStore`]: one redb file, group-committed durable writes, and the
//! in-memory [`WatchHub`] for watch history. The watch history does not survive a restart: the
//! compaction floor then starts at the current revision and clients re-list.

#[cfg(test)]
mod conformance;
mod contract;
mod redb_store;
mod wal;
mod watch_hub;

pub use contract::{
    Event, EventKind, KeyValue, ListPage, REMAINING_COUNT_LIMIT, Store, StoreError, WatchStream,
};
pub use redb_store::{RedbOptions, RedbStore};
pub use watch_hub::{DEFAULT_MAX_BYTES, DEFAULT_MAX_EVENTS, WatchHub};
