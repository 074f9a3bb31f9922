//! The writer thread: group commit for [`super::RedbStore`].
//!
//! One thread owns the write side of the database. Callers queue [`Request`]s; the thread takes
//! every queued request (up to a batch limit), applies them in order inside one write
//! transaction, each successful write taking the next revision and a failed one (already
//! exists, not found, conflict) consuming none, commits once with fsync, then publishes the
//! events to the watch hub and answers each caller. A storage failure fails the whole batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use redb::{Durability, ReadableTable, Table};
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::tables::{self, KV, Meta};
use crate::contract::{Event, EventKind, KeyValue, StoreError};

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

/// A batch's transaction failed; every operation in it failed with it.
#[derive(Debug, thiserror::Error)]
#[error("write transaction failed")]
struct BatchFailed(#[source] Arc<redb::Error>);

/// Serve requests until every sender is gone.
pub(super) fn run(
    shared: &Shared,
    mut meta: Meta,
    mut rx: mpsc::Receiver<Request>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        commit_batch(shared, &mut meta, &mut batch);
    }
    tracing::debug!(revision = meta.revision, "store writer stopped");
}

/// The effects of one applied batch, before they are made visible.
struct Applied {
    meta: Meta,
    outcomes: Vec<Result<Reply, StoreError>>,
    events: Vec<Event>,
    /// The compaction floor requested in the batch, if any.
    compact_to: Option<u64>,
}

fn commit_batch(shared: &Shared, meta: &mut Meta, batch: &mut Vec<Request>) {
    match apply(shared, *meta, batch) {
        Ok(applied) => {
            *meta = applied.meta;
            shared.commits.fetch_add(1, Ordering::Relaxed);
            shared.revision.store(meta.revision, Ordering::Release);
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
            tracing::error!(error = %err, ops = batch.len(), "store write batch failed");
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

fn apply(shared: &Shared, meta: Meta, batch: &[Request]) -> Result<Applied, redb::Error> {
    let mut txn = shared.db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    let mut applied = Applied {
        meta,
        outcomes: Vec::with_capacity(batch.len()),
        events: Vec::new(),
        compact_to: None,
    };
    {
        let mut table = txn.open_table(KV)?;
        for request in batch {
            let outcome = apply_one(&mut table, &mut applied, &request.op)?;
            applied.outcomes.push(outcome);
        }
    }
    if applied.meta != meta {
        tables::write_meta(&txn, applied.meta)?;
    }
    txn.commit()?;
    Ok(applied)
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
