//! The writer thread: group commit for [`super::RedbStore`].
//!
//! One thread owns the write side of the database. Callers queue [`Request`]s; the thread takes
//! every queued request (up to a batch limit), applies them in order inside one write
//! transaction, each successful write taking the next revision and a failed one (already
//! exists, not found, conflict) consuming none. The batch's changes are then appended to the
//! write-ahead log as one record and synced; only then is the transaction committed (without a
//! sync, so readers see nothing that is not durable), the events published to the watch hub and
//! each caller answered. Every [`CHECKPOINT_BATCHES`] batches or [`CHECKPOINT_BYTES`] of log,
//! and when the store closes, one durable redb commit (a checkpoint) makes everything before it
//! durable in the redb file and the log starts over.
//!
//! A storage failure fails the whole batch. A failure once the batch's record may be in the
//! log (the append, the commit after it, or restarting the log) also stops the writer from
//! accepting more writes: the log and the database may then disagree on what the next
//! revision is, and only reopening (which replays the log) reconciles them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use redb::{Durability, ReadableTable, Table};
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::tables::{self, KV, Meta};
use crate::contract::{Event, EventKind, KeyValue, StoreError};
use crate::wal::{RecordBuilder, Wal, WalError};

/// Batches between checkpoints.
pub(super) const CHECKPOINT_BATCHES: u64 = 1024;
/// Bytes of log that trigger a checkpoint.
pub(super) const CHECKPOINT_BYTES: u64 = 16 << 20;

/// A write asked of the store.
pub(super) enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Option<u64>,
    },
    Delete {
        key: String,
        expected: Option<u64>,
    },
    Compact {
        revision: u64,
    },
}

/// What a successful operation answers.
pub(super) enum Reply {
    Kv(KeyValue),
    Done,
}

pub(super) struct Request {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Reply, StoreError>>,
}

/// Why a batch (or a checkpoint) failed.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("write transaction failed")]
    Redb(#[from] redb::Error),
    #[error("appending to the write-ahead log failed")]
    Wal(#[from] WalError),
    #[error("an earlier failure left the log and the database out of step; reopen the store")]
    Stopped,
}

/// A batch failed; every operation in it failed with it.
#[derive(Debug, thiserror::Error)]
#[error("write batch failed")]
struct BatchFailed(#[source] Arc<WriteError>);

/// The writer's own state between batches.
struct Writer<'a> {
    shared: &'a Shared,
    meta: Meta,
    wal: Wal,
    /// Batches committed since the last checkpoint.
    since_checkpoint: u64,
    /// Set by a failure after which no more writes may be accepted.
    stopped: bool,
}

/// Serve requests until every sender is gone, then checkpoint.
pub(super) fn run(
    shared: &Shared,
    meta: Meta,
    wal: Wal,
    mut rx: mpsc::Receiver<Request>,
    max_batch: usize,
) {
    let mut w = Writer {
        shared,
        meta,
        wal,
        since_checkpoint: 0,
        stopped: false,
    };
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        w.commit_batch(&mut batch);
        if w.since_checkpoint >= CHECKPOINT_BATCHES || w.wal.len() >= CHECKPOINT_BYTES {
            w.checkpoint();
        }
    }
    if w.since_checkpoint > 0 {
        w.checkpoint();
    }
    tracing::debug!(revision = w.meta.revision, "store writer stopped");
}

/// The effects of one applied batch, before they are made visible.
struct Applied {
    meta: Meta,
    outcomes: Vec<Result<Reply, StoreError>>,
    events: Vec<Event>,
    /// The compaction floor requested in the batch, if any.
    compact_to: Option<u64>,
}

impl Writer<'_> {
    fn commit_batch(&mut self, batch: &mut Vec<Request>) {
        let was_stopped = self.stopped;
        let result = if was_stopped {
            Err(WriteError::Stopped)
        } else {
            self.apply(batch)
        };
        match result {
            Ok(applied) => {
                let shared = self.shared;
                self.meta = applied.meta;
                self.since_checkpoint += 1;
                shared.commits.fetch_add(1, Ordering::Relaxed);
                shared.revision.store(self.meta.revision, Ordering::Release);
                shared.hub.publish(applied.events);
                if let Some(floor) = applied.compact_to {
                    shared.hub.compact(floor);
                }
                for (request, outcome) in batch.drain(..).zip(applied.outcomes) {
                    // A caller that gave up waiting is no reason to fail the others.
                    let _ = request.reply.send(outcome);
                }
            }
            Err(err) => {
                if !was_stopped {
                    tracing::error!(error = %err, ops = batch.len(), "store write batch failed");
                }
                let err = Arc::new(err);
                for request in batch.drain(..) {
                    let failed = BatchFailed(Arc::clone(&err));
                    let _ = request
                        .reply
                        .send(Err(StoreError::Backend(Box::new(failed))));
                }
            }
        }
    }

    fn apply(&mut self, batch: &[Request]) -> Result<Applied, WriteError> {
        let mut txn = self.shared.db.begin_write().map_err(redb::Error::from)?;
        txn.set_durability(Durability::None)
            .map_err(redb::Error::from)?;
        let mut applied = Applied {
            meta: self.meta,
            outcomes: Vec::with_capacity(batch.len()),
            events: Vec::new(),
            compact_to: None,
        };
        {
            let mut table = txn.open_table(KV).map_err(redb::Error::from)?;
            for request in batch {
                let outcome = apply_one(&mut table, &mut applied, &request.op)?;
                applied.outcomes.push(outcome);
            }
        }
        if applied.meta == self.meta {
            // Nothing changed (every operation failed its precondition): nothing to log.
            return Ok(applied);
        }
        tables::write_meta(&txn, applied.meta)?;
        // From here on the batch may be in the log; failing now leaves the log ahead of the
        // database, so the writer stops.
        self.stopped = true;
        self.wal.append(record(&applied))?;
        txn.commit().map_err(redb::Error::from)?;
        self.stopped = false;
        Ok(applied)
    }

    /// Make every committed batch durable in the redb file, then empty the log.
    fn checkpoint(&mut self) {
        if self.stopped {
            return;
        }
        let durable = || -> Result<(), redb::Error> {
            let mut txn = self.shared.db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            txn.commit()?;
            Ok(())
        };
        if let Err(err) = durable() {
            // The log still holds every batch; the next checkpoint tries again.
            tracing::warn!(error = %err, "store checkpoint failed");
            return;
        }
        if let Err(err) = self.wal.restart() {
            tracing::error!(error = %err, "restarting the write-ahead log failed");
            self.stopped = true;
            return;
        }
        self.since_checkpoint = 0;
    }
}

/// The log record of an applied batch: its changes in revision order and the floor after it.
fn record(applied: &Applied) -> RecordBuilder {
    let mut record = RecordBuilder::new(applied.meta.compacted);
    for event in &applied.events {
        let kv = &event.kv;
        match event.kind {
            EventKind::Put => record.put(&kv.key, &kv.value, kv.create_revision, kv.mod_revision),
            EventKind::Delete => record.delete(&kv.key, kv.mod_revision),
        }
    }
    record
}

/// The current record of `key` in the write transaction.
fn current(table: &Table<&str, &[u8]>, key: &str) -> Result<Option<KeyValue>, redb::Error> {
    let Some(record) = table.get(key)? else {
        return Ok(None);
    };
    // A corrupt record is reported as a storage failure of the whole batch.
    tables::decode(key, record.value())
        .map(Some)
        .map_err(|e| redb::Error::Corrupted(e.to_string()))
}

fn check_expected(current: &KeyValue, expected: Option<u64>) -> Result<(), StoreError> {
    match expected {
        Some(expected) if expected != current.mod_revision => Err(StoreError::Conflict {
            key: current.key.clone(),
            expected,
            actual: current.mod_revision,
        }),
        _ => Ok(()),
    }
}

/// Apply one operation; `Err` only for storage failures, operation failures are `Ok(Err)`.
fn apply_one(
    table: &mut Table<&str, &[u8]>,
    applied: &mut Applied,
    op: &Op,
) -> Result<Result<Reply, StoreError>, redb::Error> {
    let revision = applied.meta.revision + 1;
    let (kind, kv, prev) = match op {
        Op::Create { key, value } => {
            if current(table, key)?.is_some() {
                return Ok(Err(StoreError::AlreadyExists(key.clone())));
            }
            table.insert(key.as_str(), &tables::encode(revision, revision, value)[..])?;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: revision,
                mod_revision: revision,
            };
            (EventKind::Put, kv, None)
        }
        Op::Update {
            key,
            value,
            expected,
        } => {
            let Some(prev) = current(table, key)? else {
                return Ok(Err(StoreError::NotFound(key.clone())));
            };
            if let Err(err) = check_expected(&prev, *expected) {
                return Ok(Err(err));
            }
            let record = tables::encode(prev.create_revision, revision, value);
            table.insert(key.as_str(), &record[..])?;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: prev.create_revision,
                mod_revision: revision,
            };
            (EventKind::Put, kv, Some(prev))
        }
        Op::Delete { key, expected } => {
            let Some(prev) = current(table, key)? else {
                return Ok(Err(StoreError::NotFound(key.clone())));
            };
            if let Err(err) = check_expected(&prev, *expected) {
                return Ok(Err(err));
            }
            table.remove(key.as_str())?;
            let kv = KeyValue {
                mod_revision: revision,
                ..prev.clone()
            };
            (EventKind::Delete, kv, Some(prev))
        }
        Op::Compact { revision } => {
            let floor = (*revision).min(applied.meta.revision);
            if floor > applied.meta.compacted {
                applied.meta.compacted = floor;
                applied.compact_to = Some(floor);
            }
            return Ok(Ok(Reply::Done));
        }
    };
    applied.meta.revision = revision;
    applied.events.push(Event {
        kind,
        kv: kv.clone(),
        prev,
    });
    Ok(Ok(Reply::Kv(kv)))
}
