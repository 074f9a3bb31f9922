//! The conformance suite: what every [`Store`] backend must do, written once.
//!
//! Each case is a generic async function over a [`Harness`] (which knows how to open its
//! backend on the same storage again and again). A backend instantiates the whole suite with
//! [`conformance_tests!`] in its own test module:
//!
//! ```ignore
//! crate::conformance::conformance_tests!(MyHarness::new());
//! ```
//!
//! The harness expression is evaluated afresh for every test, so each case starts from an empty
//! store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::contract::{Event, EventKind, Store, StoreError, WatchStream};

/// How a backend is opened by the suite.
pub(crate) trait Harness: Send + Sync + 'static {
    type S: Store;

    /// Open the store on this harness's storage; opening again after dropping the previous
    /// store must see the same data.
    async fn open(&self) -> Self::S;
}

/// Instantiate every conformance case as a `#[tokio::test]` for the harness expression.
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance::conformance_tests!(@cases $harness;
            revisions_strictly_increase,
            failed_writes_consume_no_revision,
            create_twice_is_already_exists,
            stale_update_and_delete_conflict,
            missing_key_is_not_found,
            update_keeps_create_revision,
            create_after_delete_gets_new_create_revision,
            prefix_isolation,
            pagination,
            remaining_is_counted_only_up_to_the_limit,
            count,
            watch_from_zero_sees_history_in_order,
            watch_from_middle,
            watch_from_now_then_live,
            delete_event_carries_last_value,
            events_carry_prev_values,
            compaction_fails_older_watches,
            concurrent_writers,
            reopen_keeps_data_and_revision,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::conformance::$case($harness).await;
            }
        )*
    };
}
pub(crate) use conformance_tests;

const WAIT: Duration = Duration::from_secs(10);

fn val(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next_event(stream: &mut WatchStream) -> Arc<Event> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("timed out waiting for a watch event")
        .expect("watch stream ended")
        .expect("watch stream failed")
}

async fn assert_quiet(stream: &mut WatchStream) {
    let res = tokio::time::timeout(Duration::from_millis(100), stream.next()).await;
    assert!(res.is_err(), "expected no watch event, got {res:?}");
}

/// A watch from a compacted revision fails either at once or as its first item.
async fn assert_compacted(result: Result<WatchStream, StoreError>, requested: u64) {
    let err = match result {
        Err(err) => err,
        Ok(mut stream) => tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("timed out waiting for the compaction error")
            .expect("stream ended without an error")
            .expect_err("expected a compaction error, got an event"),
    };
    match err {
        StoreError::Compacted {
            requested: r,
            floor,
        } => {
            assert_eq!(r, requested);
            assert!(floor > requested, "floor {floor} <= requested {requested}");
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
}

pub(crate) async fn revisions_strictly_increase(h: impl Harness) {
    let s = h.open().await;
    let base = s.revision();
    let a = s.create("/r/a", val("1")).await.unwrap();
    let b = s.create("/r/b", val("1")).await.unwrap();
    let a2 = s
        .update("/r/a", val("2"), Some(a.mod_revision))
        .await
        .unwrap();
    let b2 = s.delete("/r/b", None).await.unwrap();
    let c = s.create("/r/c", val("1")).await.unwrap();
    let revs = [
        a.mod_revision,
        b.mod_revision,
        a2.mod_revision,
        b2.mod_revision,
        c.mod_revision,
    ];
    assert!(revs[0] > base);
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");
    assert_eq!(s.revision(), c.mod_revision);
    assert_eq!(a.create_revision, a.mod_revision);
}

pub(crate) async fn failed_writes_consume_no_revision(h: impl Harness) {
    let s = h.open().await;
    let a = s.create("/f/a", val("1")).await.unwrap();
    let before = s.revision();
    assert!(s.create("/f/a", val("2")).await.is_err());
    assert!(s.update("/f/none", val("2"), None).await.is_err());
    assert!(s.delete("/f/a", Some(a.mod_revision + 100)).await.is_err());
    assert_eq!(s.revision(), before);
    let b = s.create("/f/b", val("1")).await.unwrap();
    assert!(b.mod_revision > before);
}

pub(crate) async fn create_twice_is_already_exists(h: impl Harness) {
    let s = h.open().await;
    let first = s.create("/c/x", val("one")).await.unwrap();
    let err = s.create("/c/x", val("two")).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists(k) if k == "/c/x"),
        "{err:?}"
    );
    assert_eq!(s.get("/c/x").await.unwrap(), Some(first));
}

pub(crate) async fn stale_update_and_delete_conflict(h: impl Harness) {
    let s = h.open().await;
    let v1 = s.create("/s/x", val("v1")).await.unwrap();
    let v2 = s
        .update("/s/x", val("v2"), Some(v1.mod_revision))
        .await
        .unwrap();
    let err = s
        .update("/s/x", val("v3"), Some(v1.mod_revision))
        .await
        .unwrap_err();
    match err {
        StoreError::Conflict {
            key,
            expected,
            actual,
        } => {
            assert_eq!(key, "/s/x");
            assert_eq!(expected, v1.mod_revision);
            assert_eq!(actual, v2.mod_revision);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    let err = s.delete("/s/x", Some(v1.mod_revision)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(s.get("/s/x").await.unwrap(), Some(v2.clone()));
    // The right revision succeeds.
    let deleted = s.delete("/s/x", Some(v2.mod_revision)).await.unwrap();
    assert_eq!(deleted.value, val("v2"));
    assert_eq!(s.get("/s/x").await.unwrap(), None);
}

pub(crate) async fn missing_key_is_not_found(h: impl Harness) {
    let s = h.open().await;
    assert_eq!(s.get("/m/x").await.unwrap(), None);
    let err = s.update("/m/x", val("v"), None).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound(k) if k == "/m/x"),
        "{err:?}"
    );
    let err = s.update("/m/x", val("v"), Some(1)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = s.delete("/m/x", None).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound(k) if k == "/m/x"),
        "{err:?}"
    );
    assert_eq!(s.get("/m/x").await.unwrap(), None);
}

pub(crate) async fn update_keeps_create_revision(h: impl Harness) {
    let s = h.open().await;
    let created = s.create("/u/x", val("a")).await.unwrap();
    let updated = s.update("/u/x", val("b"), None).await.unwrap();
    assert_eq!(updated.create_revision, created.create_revision);
    assert!(updated.mod_revision > created.mod_revision);
    assert_eq!(updated.value, val("b"));
    assert_eq!(s.get("/u/x").await.unwrap(), Some(updated));
}

pub(crate) async fn create_after_delete_gets_new_create_revision(h: impl Harness) {
    let s = h.open().await;
    let first = s.create("/d/x", val("a")).await.unwrap();
    let deleted = s.delete("/d/x", None).await.unwrap();
    let again = s.create("/d/x", val("b")).await.unwrap();
    assert!(again.create_revision > deleted.mod_revision);
    assert_ne!(again.create_revision, first.create_revision);
    assert_eq!(again.create_revision, again.mod_revision);
}

pub(crate) async fn prefix_isolation(h: impl Harness) {
    let s = h.open().await;
    let mut watch = s.watch("/a/", s.revision()).unwrap();
    s.create("/a/1", val("x")).await.unwrap();
    s.create("/ab/x", val("x")).await.unwrap();
    s.create("/a", val("x")).await.unwrap();
    s.create("/a/2", val("x")).await.unwrap();
    let page = s.list("/a/", None, None).await.unwrap();
    let keys: Vec<_> = page.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/a/1", "/a/2"]);
    assert_eq!(s.count("/a/").await.unwrap(), 2);
    assert_eq!(s.count("/ab/").await.unwrap(), 1);
    assert_eq!(next_event(&mut watch).await.kv.key, "/a/1");
    assert_eq!(next_event(&mut watch).await.kv.key, "/a/2");
    assert_quiet(&mut watch).await;
}

pub(crate) async fn pagination(h: impl Harness) {
    let s = h.open().await;
    for i in 0..10 {
        s.create(&format!("/p/k{i:02}"), val("v")).await.unwrap();
    }
    s.create("/q/after", val("v")).await.unwrap();
    let rev = s.revision();

    let page = s.list("/p/", None, Some(3)).await.unwrap();
    let keys: Vec<_> = page.items.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, ["/p/k00", "/p/k01", "/p/k02"]);
    assert!(page.more);
    assert_eq!(page.remaining, Some(7));
    assert_eq!(page.revision, rev);

    let page = s.list("/p/", Some("/p/k02"), Some(3)).await.unwrap();
    assert_eq!(page.items[0].key, "/p/k03");
    assert_eq!(page.remaining, Some(4));

    let page = s.list("/p/", Some("/p/k06"), Some(3)).await.unwrap();
    assert_eq!(page.items.len(), 3);
    assert!(!page.more);
    assert_eq!(page.remaining, Some(0));

    // A start key that is not itself stored still starts right after it.
    let page = s.list("/p/", Some("/p/k04x"), None).await.unwrap();
    assert_eq!(page.items[0].key, "/p/k05");
    assert_eq!(page.items.len(), 5);
    assert!(!page.more);

    let page = s.list("/p/", None, Some(100)).await.unwrap();
    assert_eq!(page.items.len(), 10);
    assert!(!page.more);
    assert_eq!(page.remaining, Some(0));

    let page = s.list("/p/", Some("/p/k09"), Some(3)).await.unwrap();
    assert!(page.items.is_empty());
    assert!(!page.more);

    let page = s.list("/nothing/", None, None).await.unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.revision, rev);
}

pub(crate) async fn remaining_is_counted_only_up_to_the_limit(h: impl Harness) {
    let s = h.open().await;
    let total = crate::REMAINING_COUNT_LIMIT + 3;
    let writes = (0..total).map(|i| {
        let s = &s;
        async move { s.create(&format!("/r/k{i:05}"), val("v")).await.unwrap() }
    });
    futures::future::join_all(writes).await;
    // Too many left to count: only `more`.
    let page = s.list("/r/", None, Some(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.more);
    assert_eq!(page.remaining, None);
    // Within the limit: the exact count.
    let after = format!("/r/k{:05}", total - 6);
    let page = s.list("/r/", Some(&after), Some(2)).await.unwrap();
    assert!(page.more);
    assert_eq!(page.remaining, Some(3));
    let page = s.list("/r/", None, None).await.unwrap();
    assert_eq!(page.items.len(), usize::try_from(total).unwrap());
    assert_eq!(page.remaining, Some(0));
}

pub(crate) async fn count(h: impl Harness) {
    let s = h.open().await;
    assert_eq!(s.count("/n/").await.unwrap(), 0);
    for i in 0..25 {
        s.create(&format!("/n/{i}"), val("v")).await.unwrap();
    }
    s.create("/n2/x", val("v")).await.unwrap();
    assert_eq!(s.count("/n/").await.unwrap(), 25);
    s.delete("/n/3", None).await.unwrap();
    assert_eq!(s.count("/n/").await.unwrap(), 24);
    assert_eq!(s.count("/").await.unwrap(), 25);
}

pub(crate) async fn watch_from_zero_sees_history_in_order(h: impl Harness) {
    let s = h.open().await;
    let start = s.revision();
    let a = s.create("/w/a", val("1")).await.unwrap();
    let a2 = s.update("/w/a", val("2"), None).await.unwrap();
    s.create("/other/x", val("1")).await.unwrap();
    let b = s.create("/w/b", val("1")).await.unwrap();
    let del = s.delete("/w/a", None).await.unwrap();
    let mut watch = s.watch("/w/", start).unwrap();
    let expected = [
        (EventKind::Put, &a),
        (EventKind::Put, &a2),
        (EventKind::Put, &b),
        (EventKind::Delete, &del),
    ];
    for (kind, kv) in expected {
        let event = next_event(&mut watch).await;
        assert_eq!(event.kind, kind);
        assert_eq!(&event.kv, kv);
    }
    assert_quiet(&mut watch).await;
}

pub(crate) async fn watch_from_middle(h: impl Harness) {
    let s = h.open().await;
    let mut revs = Vec::new();
    for i in 0..6 {
        revs.push(s.create(&format!("/m/{i}"), val("v")).await.unwrap());
    }
    let mut watch = s.watch("/m/", revs[2].mod_revision).unwrap();
    for kv in &revs[3..] {
        assert_eq!(&next_event(&mut watch).await.kv, kv);
    }
    let live = s.create("/m/live", val("v")).await.unwrap();
    assert_eq!(next_event(&mut watch).await.kv, live);
}

pub(crate) async fn watch_from_now_then_live(h: impl Harness) {
    let s = Arc::new(h.open().await);
    s.create("/l/old", val("v")).await.unwrap();
    let mut watch = s.watch("/l/", s.revision()).unwrap();
    assert_quiet(&mut watch).await;
    // Writes racing with the reader: every one arrives once, in order.
    let writer = {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..50 {
                revs.push(
                    s.create(&format!("/l/{i}"), val("v"))
                        .await
                        .unwrap()
                        .mod_revision,
                );
            }
            revs
        })
    };
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen.push(next_event(&mut watch).await.kv.mod_revision);
    }
    assert_eq!(seen, writer.await.unwrap());
    assert_quiet(&mut watch).await;
}

pub(crate) async fn delete_event_carries_last_value(h: impl Harness) {
    let s = h.open().await;
    let created = s.create("/del/x", val("first")).await.unwrap();
    let updated = s.update("/del/x", val("last"), None).await.unwrap();
    let mut watch = s.watch("/del/", s.revision()).unwrap();
    let deleted = s.delete("/del/x", None).await.unwrap();
    assert_eq!(deleted.value, val("last"));
    assert_eq!(deleted.create_revision, created.create_revision);
    assert!(deleted.mod_revision > updated.mod_revision);
    assert_eq!(deleted.mod_revision, s.revision());
    let event = next_event(&mut watch).await;
    assert_eq!(event.kind, EventKind::Delete);
    assert_eq!(event.kv, deleted);
    assert_eq!(event.prev.as_ref(), Some(&updated));
}

pub(crate) async fn events_carry_prev_values(h: impl Harness) {
    let s = h.open().await;
    let mut watch = s.watch("/pv/", s.revision()).unwrap();
    let v1 = s.create("/pv/x", val("1")).await.unwrap();
    let v2 = s.update("/pv/x", val("2"), None).await.unwrap();
    let created = next_event(&mut watch).await;
    assert_eq!(created.kind, EventKind::Put);
    assert_eq!(created.prev, None);
    let updated = next_event(&mut watch).await;
    assert_eq!(updated.kv, v2);
    assert_eq!(updated.prev.as_ref(), Some(&v1));
}

pub(crate) async fn compaction_fails_older_watches(h: impl Harness) {
    let s = h.open().await;
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(
            s.create(&format!("/cp/{i}"), val("v"))
                .await
                .unwrap()
                .mod_revision,
        );
    }
    s.compact(revs[2]).await.unwrap();
    assert!(s.compacted_revision() >= revs[2]);
    assert_compacted(s.watch("/cp/", revs[1]), revs[1]).await;
    let mut watch = s.watch("/cp/", revs[2]).unwrap();
    assert_eq!(next_event(&mut watch).await.kv.mod_revision, revs[3]);
    assert_eq!(next_event(&mut watch).await.kv.mod_revision, revs[4]);
    // Data is untouched by compaction.
    assert_eq!(s.count("/cp/").await.unwrap(), 5);
}

pub(crate) async fn concurrent_writers(h: impl Harness) {
    const TASKS: usize = 64;
    const PER_TASK: usize = 50;
    let s = Arc::new(h.open().await);
    let start = s.revision();
    let mut watch = s.watch("/cc/", start).unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let mut revs = Vec::with_capacity(PER_TASK);
                for i in 0..PER_TASK {
                    let kv = s
                        .create(&format!("/cc/{t:02}/{i:02}"), val("v"))
                        .await
                        .unwrap();
                    revs.push(kv.mod_revision);
                }
                revs
            })
        })
        .collect();
    let mut all = HashSet::new();
    for task in tasks {
        let revs = task.await.unwrap();
        assert!(revs.windows(2).all(|w| w[0] < w[1]), "per-task order");
        for rev in revs {
            assert!(all.insert(rev), "revision {rev} handed out twice");
        }
    }
    let total = TASKS * PER_TASK;
    assert_eq!(all.len(), total);
    assert_eq!(
        s.count("/cc/").await.unwrap(),
        u64::try_from(total).unwrap()
    );
    assert_eq!(s.revision(), start + u64::try_from(total).unwrap());
    let mut last = start;
    for _ in 0..total {
        let rev = next_event(&mut watch).await.kv.mod_revision;
        assert!(rev > last && all.contains(&rev));
        last = rev;
    }
}

pub(crate) async fn reopen_keeps_data_and_revision(h: impl Harness) {
    let (a, revision) = {
        let s = h.open().await;
        s.create("/ro/a", val("a")).await.unwrap();
        let b = s.create("/ro/b", val("b")).await.unwrap();
        s.update("/ro/a", val("a2"), None).await.unwrap();
        s.delete("/ro/b", Some(b.mod_revision)).await.unwrap();
        (s.get("/ro/a").await.unwrap().unwrap(), s.revision())
    };
    let s = h.open().await;
    assert_eq!(s.revision(), revision);
    assert_eq!(s.get("/ro/a").await.unwrap(), Some(a.clone()));
    assert_eq!(s.get("/ro/b").await.unwrap(), None);
    let page = s.list("/ro/", None, None).await.unwrap();
    assert_eq!(page.revision, revision);
    assert_eq!(page.items, [a]);
    // Watching from now works, and the next write continues the sequence.
    let mut watch = s.watch("/ro/", revision).unwrap();
    let c = s.create("/ro/c", val("c")).await.unwrap();
    assert!(c.mod_revision > revision);
    assert_eq!(next_event(&mut watch).await.kv, c);
}
