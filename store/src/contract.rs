//! The storage contract every backend implements.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

/// One stored key with its value and MVCC metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this key (since its last deletion).
    pub create_revision: u64,
    /// Revision of the write that last changed this key.
    pub mod_revision: u64,
}

/// How many keys after a page a backend counts for [`ListPage::remaining`].
pub const REMAINING_COUNT_LIMIT: u64 = 1000;

/// One page of a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub items: Vec<KeyValue>,
    /// The store revision the page was read at.
    pub revision: u64,
    /// True when more keys under the prefix follow the last item returned.
    pub more: bool,
    /// Keys under the prefix after the last item returned: exact up to
    /// [`REMAINING_COUNT_LIMIT`], `None` beyond it (counting them all would read every key left,
    /// once per page: a paginated list of n objects would read n²/(2·limit) of them).
    pub remaining: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For `Put`: the new key/value. For `Delete`: the key, its last value, and
    /// `mod_revision` set to the revision of the delete.
    pub kv: KeyValue,
    /// The value before this change, when there was one.
    pub prev: Option<KeyValue>,
}

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Arc<Event>, StoreError>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    /// Compare-and-swap failed: the key's mod revision is not the one expected.
    #[error("key {key} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: u64,
        actual: u64,
    },
    /// The requested revision is below the compaction floor (HTTP 410 Gone upstream).
    #[error("revision {requested} is compacted (oldest available is {floor})")]
    Compacted { requested: u64, floor: u64 },
    /// A watcher fell too far behind and was dropped; it must re-list.
    #[error("watcher fell behind and was closed")]
    WatchLagged,
    #[error("store is closed")]
    Closed,
    #[error("storage backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The MVCC key/value contract. Keys are `/`-separated strings; prefixes end with `/`.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The latest revision written (0 for an empty store).
    fn revision(&self) -> u64;

    /// The oldest revision a watch may start after.
    fn compacted_revision(&self) -> u64;

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Keys under `prefix` in key order, strictly after `start_after` when given,
    /// at most `limit` items when given.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ListPage, StoreError>;

    /// Count the keys under `prefix`.
    async fn count(&self, prefix: &str) -> Result<u64, StoreError>;

    /// Create `key`; fails with `AlreadyExists` when it is present. Durable when it returns.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError>;

    /// Replace `key`'s value. With `expected_mod_revision`, fails with `Conflict` unless the
    /// key's current mod revision matches. Fails with `NotFound` when absent.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Option<u64>,
    ) -> Result<KeyValue, StoreError>;

    /// Delete `key`, returning its last value with `mod_revision` = the delete's revision.
    /// With `expected_mod_revision`, compare-and-swap as for `update`.
    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<u64>,
    ) -> Result<KeyValue, StoreError>;

    /// Every change under `prefix` with revision > `after_revision`, in revision order,
    /// then live changes. Fails with `Compacted` if `after_revision` < the compaction floor.
    fn watch(&self, prefix: &str, after_revision: u64) -> Result<WatchStream, StoreError>;

    /// Forget history at or below `revision`; later watches from there get `Compacted`.
    async fn compact(&self, revision: u64) -> Result<(), StoreError>;
}
