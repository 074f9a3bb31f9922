//! Measures durable put throughput of the embedded backend candidates, to back the choice of
//! redb for `RedbStore`.
//!
//! Every commit is durable (fsync before it returns): redb with `Durability::Immediate`,
//! SQLite in WAL mode with `synchronous = FULL`. Each engine is measured committing every put
//! on its own (serial) and committing puts in groups (what a group-committing writer does under
//! concurrency), then `RedbStore` itself is driven through the `Store` trait by one caller and
//! by 64 concurrent callers.
//!
//! ```text
//! cargo run -p skiff-store --example backend_choice --release [-- SERIAL_OPS [BATCHED_OPS]]
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{Durability, TableDefinition};
use skiff_store::{RedbStore, Store};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// Puts per transaction in the grouped runs.
const GROUP: u32 = 64;
/// Concurrent callers in the `RedbStore` concurrent run.
const CALLERS: u32 = 64;
/// Size of each stored value, about a small Kubernetes object.
const VALUE_BYTES: usize = 1024;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Row {
    backend: &'static str,
    mode: String,
    ops: u32,
    elapsed: Duration,
}

fn key(i: u32) -> String {
    format!("/registry/configmaps/default/cm-{i:07}")
}

fn redb_puts(dir: &Path, ops: u32, group: u32) -> Result<Duration> {
    let db = redb::Builder::new()
        .set_cache_size(24 << 20)
        .create(dir.join(format!("raw-{group}.redb")))?;
    let value = vec![b'x'; VALUE_BYTES];
    let start = Instant::now();
    let mut i = 0;
    while i < ops {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut table = txn.open_table(TABLE)?;
            for _ in 0..group.min(ops - i) {
                table.insert(key(i).as_str(), &value[..])?;
                i += 1;
            }
        }
        txn.commit()?;
    }
    Ok(start.elapsed())
}

fn sqlite_puts(dir: &Path, ops: u32, group: u32) -> Result<Duration> {
    let mut conn = rusqlite::Connection::open(dir.join(format!("raw-{group}.sqlite")))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute(
        "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
        [],
    )?;
    let value = vec![b'x'; VALUE_BYTES];
    let start = Instant::now();
    let mut i = 0;
    while i < ops {
        let txn = conn.transaction()?;
        {
            let mut stmt = txn.prepare_cached("INSERT INTO kv (key, value) VALUES (?1, ?2)")?;
            for _ in 0..group.min(ops - i) {
                stmt.execute(rusqlite::params![key(i), value])?;
                i += 1;
            }
        }
        txn.commit()?;
    }
    Ok(start.elapsed())
}

async fn store_puts(dir: &Path, name: &str, ops: u32, callers: u32) -> Result<(Duration, u64)> {
    let store = Arc::new(RedbStore::open(&dir.join(name))?);
    let value = Bytes::from(vec![b'x'; VALUE_BYTES]);
    let per_caller = ops / callers;
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let store = Arc::clone(&store);
            let value = value.clone();
            tokio::spawn(async move {
                for i in 0..per_caller {
                    store
                        .create(&key(c * per_caller + i), value.clone())
                        .await?;
                }
                Ok::<_, skiff_store::StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok((start.elapsed(), store.commits()))
}

fn arg(n: usize, default: u32) -> Result<u32> {
    match std::env::args().nth(n) {
        Some(text) => Ok(text.parse()?),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let serial_ops = arg(1, 1000)?;
    let batched_ops = arg(2, 5000)?;
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();

    let serial = |backend, elapsed| Row {
        backend,
        mode: "serial, 1 put/commit".into(),
        ops: serial_ops,
        elapsed,
    };
    let grouped = |backend, elapsed| Row {
        backend,
        mode: format!("grouped, {GROUP} puts/commit"),
        ops: batched_ops,
        elapsed,
    };
    rows.push(serial("redb", redb_puts(dir.path(), serial_ops, 1)?));
    rows.push(grouped("redb", redb_puts(dir.path(), batched_ops, GROUP)?));
    rows.push(serial("sqlite", sqlite_puts(dir.path(), serial_ops, 1)?));
    rows.push(grouped(
        "sqlite",
        sqlite_puts(dir.path(), batched_ops, GROUP)?,
    ));

    let (elapsed, _) = store_puts(dir.path(), "store-1.redb", serial_ops, 1).await?;
    rows.push(Row {
        backend: "RedbStore",
        mode: "1 caller".into(),
        ops: serial_ops,
        elapsed,
    });
    let (elapsed, commits) = store_puts(dir.path(), "store-64.redb", batched_ops, CALLERS).await?;
    let ops = batched_ops / CALLERS * CALLERS;
    rows.push(Row {
        backend: "RedbStore",
        mode: format!(
            "{CALLERS} callers ({:.1} puts/commit)",
            f64::from(ops) / (commits.max(1) as f64)
        ),
        ops,
        elapsed,
    });

    println!("durable puts of {VALUE_BYTES}-byte values (fsync per commit)\n");
    println!(
        "{:<10} {:<32} {:>7} {:>9} {:>10}",
        "backend", "mode", "ops", "seconds", "puts/s"
    );
    for row in rows {
        let secs = row.elapsed.as_secs_f64();
        println!(
            "{:<10} {:<32} {:>7} {:>9.3} {:>10.0}",
            row.backend,
            row.mode,
            row.ops,
            secs,
            f64::from(row.ops) / secs.max(f64::EPSILON)
        );
    }
    Ok(())
}
