//! The embedded backend: [`RedbStore`], the store on a single redb file.
//!
//! * Layout (see [`tables`]): one table maps each live key to its value and MVCC revisions, a
//!   meta table holds the current revision and the compaction floor. Only current values are
//!   stored; history for watches lives in the in-memory [`WatchHub`].
//! * Writes go through one writer thread doing group commit (see [`writer`]): every queued
//!   operation is applied in one transaction, whose changes are appended as one record to the
//!   write-ahead log (`PATH.wal`, see [`crate::wal`]) and synced before the transaction commits
//!   and each caller gets its own answer. The redb file itself is made durable by a checkpoint
//!   every so many batches; opening the store replays the log's records past the revision of
//!   the last checkpoint.
//! * Reads open a redb read transaction (a consistent snapshot). Point reads run inline; range
//!   reads and counts (which may walk many keys, e.g. for `remaining`) run on the blocking pool.
//! * After a restart the watch history is empty and its floor is the current revision: a client
//!   watching from an older revision gets [`StoreError::Compacted`] and must re-list.

mod tables;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use bytes::Bytes;
use redb::{Database, ReadableDatabase};
use tokio::sync::{mpsc, oneshot};

use crate::contract::{KeyValue, ListPage, Store, StoreError, WatchStream};
use crate::wal::{Batch, Change, Wal};
use crate::watch_hub::{DEFAULT_MAX_BYTES, DEFAULT_MAX_EVENTS, WatchHub};
use tables::Meta;
use writer::{Op, Reply, Request};

pub(crate) use tables::backend_error;

/// Tuning knobs for [`RedbStore::open_with`].
#[derive(Debug, Clone)]
pub struct RedbOptions {
    /// Bytes of redb page cache.
    pub cache_bytes: usize,
    /// Events kept in the watch history ring.
    pub watch_events: usize,
    /// Approximate bytes kept in the watch history ring.
    pub watch_bytes: usize,
    /// Most operations committed in one transaction.
    pub max_batch: usize,
}

impl Default for RedbOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 8 << 20,
            watch_events: DEFAULT_MAX_EVENTS,
            watch_bytes: DEFAULT_MAX_BYTES,
            max_batch: 1024,
        }
    }
}

/// State shared by the store handle, its readers and its writer thread.
struct Shared {
    db: Database,
    /// Latest committed revision.
    revision: AtomicU64,
    /// Write transactions committed since open.
    commits: AtomicU64,
    /// Revisions recovered from the write-ahead log when the store was opened.
    replayed: u64,
    hub: WatchHub,
}

/// The [`Store`] on one redb file, durable and group-committed.
pub struct RedbStore {
    shared: Arc<Shared>,
    ops: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

/// Capacity of the queue in front of the writer thread.
const QUEUE: usize = 4096;

impl RedbStore {
    /// Open (creating if needed) the store at `path` with default options.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, &RedbOptions::default())
    }

    /// Open (creating if needed) the store at `path`.
    pub fn open_with(path: &Path, options: &RedbOptions) -> Result<Self, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(options.cache_bytes)
            .create(path)
            .map_err(backend_error)?;
        let meta = tables::init(&db)?;
        let wal_path = wal_path(path);
        let (mut wal, batches) = Wal::open(&wal_path).map_err(backend_error)?;
        let checkpointed = meta.revision;
        let meta = replay(&db, meta, &batches)?;
        if !batches.is_empty() {
            // Everything in the log is now durable in the redb file.
            wal.restart().map_err(backend_error)?;
        }
        let replayed = meta.revision - checkpointed;
        if replayed > 0 {
            tracing::info!(
                revision = meta.revision,
                replayed,
                "store recovered writes from its write-ahead log"
            );
        }
        let hub = WatchHub::new(meta.revision, options.watch_events, options.watch_bytes);
        let shared = Arc::new(Shared {
            db,
            revision: AtomicU64::new(meta.revision),
            commits: AtomicU64::new(0),
            replayed,
            hub,
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = {
            let shared = Arc::clone(&shared);
            let max_batch = options.max_batch.max(1);
            std::thread::Builder::new()
                .name("skiff-store-writer".into())
                .spawn(move || writer::run(&shared, meta, wal, rx, max_batch))
                .map_err(backend_error)?
        };
        tracing::debug!(path = %path.display(), revision = meta.revision, "store opened");
        Ok(Self {
            shared,
            ops: Some(tx),
            writer: Some(writer),
        })
    }

    /// The watch hub behind this store's watches.
    pub fn hub(&self) -> &WatchHub {
        &self.shared.hub
    }

    /// Write transactions committed since open; with group commit this grows slower than the
    /// number of writes under concurrency.
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// Writes recovered from the write-ahead log when the store was opened: those acknowledged
    /// after the last checkpoint before a crash.
    pub fn replayed(&self) -> u64 {
        self.shared.replayed
    }

    async fn submit(&self, op: Op) -> Result<Reply, StoreError> {
        let (reply, rx) = oneshot::channel();
        let ops = self.ops.as_ref().ok_or(StoreError::Closed)?;
        ops.send(Request { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn write_kv(&self, op: Op) -> Result<KeyValue, StoreError> {
        match self.submit(op).await? {
            Reply::Kv(kv) => Ok(kv),
            Reply::Done => Err(StoreError::Closed),
        }
    }

    /// Run a read on the blocking pool so a long scan never stalls the async workers.
    async fn blocking_read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Shared) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || read(&shared))
            .await
            .map_err(backend_error)?
    }
}

/// The write-ahead log next to the redb file at `path`.
fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".wal");
    name.into()
}

/// The log skips or contradicts revisions the redb file already has.
#[derive(Debug, thiserror::Error)]
#[error(
    "write-ahead log holds revision {found} where {expected} was expected; the log does not \
     belong to this store file"
)]
struct ReplayGap {
    found: u64,
    expected: u64,
}

/// Apply the log's changes past the redb file's revision in one durable transaction.
fn replay(db: &Database, mut meta: Meta, batches: &[Batch]) -> Result<Meta, StoreError> {
    let fresh = |meta: &Meta, b: &Batch| {
        b.compacted > meta.compacted || b.changes.iter().any(|c| c.revision() > meta.revision)
    };
    if !batches.iter().any(|b| fresh(&meta, b)) {
        return Ok(meta);
    }
    let txn = db.begin_write().map_err(backend_error)?;
    {
        let mut table = txn.open_table(tables::KV).map_err(backend_error)?;
        for batch in batches {
            for change in &batch.changes {
                let revision = change.revision();
                if revision <= meta.revision {
                    // Already in the last checkpoint.
                    continue;
                }
                if revision != meta.revision + 1 {
                    return Err(backend_error(ReplayGap {
                        found: revision,
                        expected: meta.revision + 1,
                    }));
                }
                match change {
                    Change::Put {
                        key,
                        value,
                        create_revision,
                        mod_revision,
                    } => {
                        let record = tables::encode(*create_revision, *mod_revision, value);
                        table
                            .insert(key.as_str(), &record[..])
                            .map_err(backend_error)?;
                    }
                    Change::Delete { key, .. } => {
                        table.remove(key.as_str()).map_err(backend_error)?;
                    }
                }
                meta.revision = revision;
            }
            meta.compacted = meta.compacted.max(batch.compacted.min(meta.revision));
        }
    }
    tables::write_meta(&txn, meta).map_err(backend_error)?;
    txn.commit().map_err(backend_error)?;
    Ok(meta)
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and exit; joining it releases
        // the database file before a reopen.
        self.ops = None;
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
        self.shared.hub.close();
    }
}

#[async_trait::async_trait]
impl Store for RedbStore {
    fn revision(&self) -> u64 {
        self.shared.revision.load(Ordering::Acquire)
    }

    fn compacted_revision(&self) -> u64 {
        self.shared.hub.floor()
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let txn = self.shared.db.begin_read().map_err(backend_error)?;
        tables::get(&txn, key)
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ListPage, StoreError> {
        let prefix = prefix.to_owned();
        let start_after = start_after.map(str::to_owned);
        let read = move |shared: &Shared| {
            let txn = shared.db.begin_read().map_err(backend_error)?;
            tables::list(&txn, &prefix, start_after.as_deref(), limit)
        };
        self.blocking_read(read).await
    }

    async fn count(&self, prefix: &str) -> Result<u64, StoreError> {
        let prefix = prefix.to_owned();
        self.blocking_read(move |shared| {
            let txn = shared.db.begin_read().map_err(backend_error)?;
            tables::count(&txn, &prefix)
        })
        .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        self.write_kv(Op::Create {
            key: key.to_owned(),
            value,
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Option<u64>,
    ) -> Result<KeyValue, StoreError> {
        self.write_kv(Op::Update {
            key: key.to_owned(),
            value,
            expected: expected_mod_revision,
        })
        .await
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<u64>,
    ) -> Result<KeyValue, StoreError> {
        self.write_kv(Op::Delete {
            key: key.to_owned(),
            expected: expected_mod_revision,
        })
        .await
    }

    fn watch(&self, prefix: &str, after_revision: u64) -> Result<WatchStream, StoreError> {
        self.shared.hub.watch(prefix, after_revision)
    }

    async fn compact(&self, revision: u64) -> Result<(), StoreError> {
        self.submit(Op::Compact { revision }).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use tempfile::TempDir;

    use super::*;
    use crate::conformance::Harness;

    /// A redb store in its own temporary directory.
    struct RedbHarness {
        dir: TempDir,
    }

    impl RedbHarness {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn path(&self) -> std::path::PathBuf {
            self.dir.path().join("store.redb")
        }
    }

    impl Harness for RedbHarness {
        type S = RedbStore;

        async fn open(&self) -> RedbStore {
            RedbStore::open(&self.path()).unwrap()
        }
    }

    crate::conformance::conformance_tests!(RedbHarness::new());

    #[tokio::test]
    async fn restart_resets_watch_history_to_current_revision() {
        let h = RedbHarness::new();
        {
            let s = h.open().await;
            for i in 0..3 {
                s.create(&format!("/k/{i}"), Bytes::from_static(b"v"))
                    .await
                    .unwrap();
            }
            s.compact(1).await.unwrap();
        }
        let s = h.open().await;
        assert_eq!(s.revision(), 3);
        assert_eq!(s.compacted_revision(), 3);
        assert!(matches!(
            s.watch("/k/", 2),
            Err(StoreError::Compacted {
                requested: 2,
                floor: 3
            })
        ));
        let txn = s.shared.db.begin_read().unwrap();
        let meta = txn.open_table(tables::META).unwrap();
        let compacted = meta.get("compacted").unwrap().unwrap().value();
        assert_eq!(compacted, 1, "the explicit compaction floor is persisted");
    }

    #[tokio::test]
    async fn dropping_the_store_ends_watches() {
        let h = RedbHarness::new();
        let s = h.open().await;
        let mut watch = s.watch("/", 0).unwrap();
        drop(s);
        assert!(matches!(watch.next().await, Some(Err(StoreError::Closed))));
        assert!(watch.next().await.is_none());
    }

    #[tokio::test]
    async fn second_open_of_same_file_fails_cleanly() {
        let h = RedbHarness::new();
        let _s = h.open().await;
        assert!(matches!(
            RedbStore::open(&h.path()),
            Err(StoreError::Backend(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits() {
        // With many writers queued, the writer thread must batch: far fewer commits than writes.
        let h = RedbHarness::new();
        let s = Arc::new(h.open().await);
        let tasks: Vec<_> = (0..32)
            .map(|t| {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    for i in 0..20 {
                        s.create(&format!("/g/{t}/{i}"), Bytes::from_static(b"v"))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(s.revision(), 640);
        assert_eq!(s.count("/g/").await.unwrap(), 640);
        let commits = s.commits();
        assert!(
            commits > 0 && commits < 640,
            "{commits} commits for 640 writes"
        );
    }
}
