//! The on-disk layout of [`super::RedbStore`] and the reads over it.
//!
//! * `kv`: key → record, where a record is `create_revision` (u64 LE), `mod_revision` (u64 LE),
//!   then the value bytes.
//! * `meta`: `"revision"` → the latest committed revision, `"compacted"` → the last explicit
//!   compaction floor.

use std::ops::Bound;

use bytes::Bytes;
use redb::{Database, ReadTransaction, ReadableTable, TableDefinition};

use crate::contract::{KeyValue, ListPage, REMAINING_COUNT_LIMIT, StoreError};

pub(super) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// Bytes of MVCC header in front of each stored value.
const HEADER: usize = 16;

/// Wrap any backend failure as [`StoreError::Backend`].
pub(crate) fn backend_error(err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(err))
}

/// A stored record too short to hold its header.
#[derive(Debug, thiserror::Error)]
#[error("stored record for key {0} is corrupt")]
pub(super) struct CorruptRecord(String);

/// The persistent counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Meta {
    pub revision: u64,
    pub compacted: u64,
}

/// Encode a record: revisions then value.
pub(super) fn encode(create_revision: u64, mod_revision: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + value.len());
    out.extend_from_slice(&create_revision.to_le_bytes());
    out.extend_from_slice(&mod_revision.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// Decode a record stored under `key`.
pub(super) fn decode(key: &str, record: &[u8]) -> Result<KeyValue, StoreError> {
    let corrupt = || backend_error(CorruptRecord(key.to_owned()));
    let (create, rest) = record.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let (modified, value) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(value),
        create_revision: u64::from_le_bytes(*create),
        mod_revision: u64::from_le_bytes(*modified),
    })
}

/// Create the tables when missing and read the counters.
pub(super) fn init(db: &Database) -> Result<Meta, StoreError> {
    let txn = db.begin_write().map_err(backend_error)?;
    let meta = {
        txn.open_table(KV).map_err(backend_error)?;
        let table = txn.open_table(META).map_err(backend_error)?;
        read_counter(&table, META_REVISION)
            .and_then(|revision| {
                read_counter(&table, META_COMPACTED).map(|compacted| Meta {
                    revision,
                    compacted,
                })
            })
            .map_err(backend_error)?
    };
    txn.commit().map_err(backend_error)?;
    Ok(meta)
}

fn read_counter(table: &impl ReadableTable<&'static str, u64>, name: &str) -> redb::Result<u64> {
    Ok(table.get(name)?.map_or(0, |v| v.value()))
}

/// Persist the counters inside a write transaction.
pub(super) fn write_meta(
    txn: &redb::WriteTransaction,
    meta: Meta,
) -> redb::Result<(), redb::Error> {
    let mut table = txn.open_table(META)?;
    table.insert(META_REVISION, meta.revision)?;
    table.insert(META_COMPACTED, meta.compacted)?;
    Ok(())
}

/// The current value of `key`.
pub(super) fn get(txn: &ReadTransaction, key: &str) -> Result<Option<KeyValue>, StoreError> {
    let table = txn.open_table(KV).map_err(backend_error)?;
    let record = table.get(key).map_err(backend_error)?;
    record.map(|r| decode(key, r.value())).transpose()
}

/// One page of keys under `prefix` in key order, with the snapshot's revision.
pub(super) fn list(
    txn: &ReadTransaction,
    prefix: &str,
    start_after: Option<&str>,
    limit: Option<usize>,
) -> Result<ListPage, StoreError> {
    let revision = {
        let meta = txn.open_table(META).map_err(backend_error)?;
        read_counter(&meta, META_REVISION).map_err(backend_error)?
    };
    let table = txn.open_table(KV).map_err(backend_error)?;
    let lower = match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    let mut items = Vec::new();
    let mut remaining = 0u64;
    for entry in table
        .range::<&str>((lower, Bound::Unbounded))
        .map_err(backend_error)?
    {
        let (key, record) = entry.map_err(backend_error)?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        if limit.is_none_or(|l| items.len() < l) {
            items.push(decode(key, record.value())?);
        } else if remaining == REMAINING_COUNT_LIMIT {
            // Too many to count cheaply: say only that there are more.
            return Ok(ListPage {
                items,
                revision,
                more: true,
                remaining: None,
            });
        } else {
            remaining += 1;
        }
    }
    Ok(ListPage {
        items,
        revision,
        more: remaining > 0,
        remaining: Some(remaining),
    })
}

/// Number of keys under `prefix`.
pub(super) fn count(txn: &ReadTransaction, prefix: &str) -> Result<u64, StoreError> {
    let table = txn.open_table(KV).map_err(backend_error)?;
    let mut n = 0u64;
    for entry in table.range::<&str>(prefix..).map_err(backend_error)? {
        let (key, _) = entry.map_err(backend_error)?;
        if !key.value().starts_with(prefix) {
            break;
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let record = encode(3, 9, b"hello");
        let kv = decode("/k", &record).unwrap();
        assert_eq!(kv.create_revision, 3);
        assert_eq!(kv.mod_revision, 9);
        assert_eq!(&kv.value[..], b"hello");
        assert_eq!(kv.key, "/k");
    }

    #[test]
    fn short_record_is_corrupt() {
        assert!(matches!(
            decode("/k", &[1, 2, 3]),
            Err(StoreError::Backend(_))
        ));
        assert!(decode("/k", &encode(1, 1, b"")).unwrap().value.is_empty());
    }
}
