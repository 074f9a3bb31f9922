//! The in-memory watch hub: recent history plus fan-out to live watchers.
//!
//! A backend publishes every committed change here, in revision order. The hub keeps a ring of
//! the most recent events, bounded both by count and by (approximate) bytes, and that same ring
//! is what live watchers read from: each watcher holds a cursor (the last revision it has
//! looked at) and, when woken by a revision notification, scans the ring from its cursor on,
//! keeping the events under its prefix. Replay and live delivery are therefore one code path,
//! which rules out gaps and duplicates between them, and one publish costs one notification no
//! matter how many watchers there are.
//!
//! History forgotten by the ring (evicted, or dropped by [`WatchHub::compact`]) raises the
//! floor. A watch starting below the floor fails with [`StoreError::Compacted`]; a running
//! watcher whose cursor the floor overtakes gets [`StoreError::WatchLagged`] (or `Compacted`
//! when an explicit compaction overtook it) and its stream ends.
//!
//! The hub lives in memory only: after a restart it starts empty with its floor at the store's
//! current revision, so clients holding an older revision get `Compacted` and must re-list,
//! exactly as after an etcd compaction.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::StreamExt;
use tokio::sync::watch;

use crate::contract::{Event, StoreError, WatchStream};

/// Default number of events the ring keeps.
pub const DEFAULT_MAX_EVENTS: usize = 10_000;
/// Default approximate byte budget of the ring. Events of updates hold both the new and the
/// previous value, so 16 MiB is about 4k updates of 2 KiB objects: sized for a server whose
/// whole RSS should stay near 64 MB.
pub const DEFAULT_MAX_BYTES: usize = 8 << 20;

/// Fixed per-event overhead counted on top of keys and values.
const EVENT_OVERHEAD: usize = 128;

/// Shared history and fan-out for the watches of one store. Cheap to clone.
#[derive(Clone)]
pub struct WatchHub {
    inner: Arc<Inner>,
}

struct Inner {
    ring: RwLock<Ring>,
    /// Carries the head revision; every watcher holds a receiver and wakes on change.
    head_tx: watch::Sender<u64>,
    max_events: usize,
    max_bytes: usize,
}

struct Ring {
    events: VecDeque<Arc<Event>>,
    bytes: usize,
    /// History at or below this revision is forgotten.
    floor: u64,
    /// The floor set by explicit compaction (always <= `floor`).
    compacted: u64,
    /// Revision of the newest event published (or the start revision).
    head: u64,
    closed: bool,
}

fn revision_of(event: &Event) -> u64 {
    event.kv.mod_revision
}

fn event_bytes(event: &Event) -> usize {
    let prev = event
        .prev
        .as_ref()
        .map_or(0, |p| p.key.len() + p.value.len());
    EVENT_OVERHEAD + event.kv.key.len() + event.kv.value.len() + prev
}

impl WatchHub {
    /// A hub whose history starts at `start_revision` (nothing at or below it can be replayed),
    /// keeping at most `max_events` events and about `max_bytes` bytes of them.
    pub fn new(start_revision: u64, max_events: usize, max_bytes: usize) -> Self {
        let (head_tx, _) = watch::channel(start_revision);
        Self {
            inner: Arc::new(Inner {
                ring: RwLock::new(Ring {
                    events: VecDeque::new(),
                    bytes: 0,
                    floor: start_revision,
                    compacted: start_revision,
                    head: start_revision,
                    closed: false,
                }),
                head_tx,
                max_events: max_events.max(1),
                max_bytes,
            }),
        }
    }

    /// A hub with the default bounds.
    pub fn with_defaults(start_revision: u64) -> Self {
        Self::new(start_revision, DEFAULT_MAX_EVENTS, DEFAULT_MAX_BYTES)
    }

    fn read(&self) -> RwLockReadGuard<'_, Ring> {
        self.inner
            .ring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Ring> {
        self.inner
            .ring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The oldest revision a watch may start after.
    pub fn floor(&self) -> u64 {
        self.read().floor
    }

    /// The revision of the newest event published.
    pub fn head(&self) -> u64 {
        self.read().head
    }

    /// Number of events currently held.
    pub fn len(&self) -> usize {
        self.read().events.len()
    }

    /// True when no event is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record committed events and wake the watchers. Events must come in increasing revision
    /// order, above every revision published before; out-of-order events are dropped.
    pub fn publish<I>(&self, events: I)
    where
        I: IntoIterator<Item = Event>,
    {
        let head = {
            let mut ring = self.write();
            for event in events {
                let revision = revision_of(&event);
                if revision <= ring.head {
                    tracing::warn!(revision, head = ring.head, "watch hub: stale event dropped");
                    continue;
                }
                ring.bytes += event_bytes(&event);
                ring.head = revision;
                ring.events.push_back(Arc::new(event));
            }
            while ring.events.len() > self.inner.max_events
                || (ring.bytes > self.inner.max_bytes && ring.events.len() > 1)
            {
                let Some(oldest) = ring.events.pop_front() else {
                    break;
                };
                ring.bytes -= event_bytes(&oldest);
                ring.floor = revision_of(&oldest);
            }
            ring.head
        };
        self.inner.head_tx.send_replace(head);
    }

    /// Forget history at or below `revision` (clamped to the head). Never lowers the floor.
    pub fn compact(&self, revision: u64) {
        let head = {
            let mut ring = self.write();
            let revision = revision.min(ring.head);
            if revision <= ring.compacted {
                return;
            }
            ring.compacted = revision;
            ring.floor = ring.floor.max(revision);
            while ring
                .events
                .front()
                .is_some_and(|e| revision_of(e) <= revision)
            {
                if let Some(oldest) = ring.events.pop_front() {
                    ring.bytes -= event_bytes(&oldest);
                }
            }
            ring.head
        };
        // Wake watchers so those overtaken by the compaction learn it now.
        self.inner.head_tx.send_replace(head);
    }

    /// End every watch stream (each yields [`StoreError::Closed`]); later watches fail.
    pub fn close(&self) {
        let head = {
            let mut ring = self.write();
            ring.closed = true;
            ring.head
        };
        self.inner.head_tx.send_replace(head);
    }

    /// Every event under `prefix` with revision > `after`, in order, then live ones.
    pub fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream, StoreError> {
        // Subscribe before checking the floor so nothing published in between is missed: the
        // cursor scan below reads whatever the ring holds when the stream is first polled.
        let head_rx = self.inner.head_tx.subscribe();
        {
            let ring = self.read();
            if ring.closed {
                return Err(StoreError::Closed);
            }
            if after < ring.floor {
                return Err(StoreError::Compacted {
                    requested: after,
                    floor: ring.floor,
                });
            }
        }
        let state = Watcher {
            hub: self.clone(),
            prefix: prefix.to_owned(),
            cursor: after,
            pending: VecDeque::new(),
            head_rx,
            done: false,
        };
        Ok(futures::stream::unfold(state, Watcher::next).boxed())
    }
}

/// The state of one watch stream.
struct Watcher {
    hub: WatchHub,
    prefix: String,
    /// Every event at or below this revision has been considered.
    cursor: u64,
    pending: VecDeque<Arc<Event>>,
    head_rx: watch::Receiver<u64>,
    done: bool,
}

/// At most this many matching events are copied out per ring scan, so one lock hold stays short.
const SCAN_BATCH: usize = 512;

enum Scan {
    Events,
    Nothing,
    Failed(StoreError),
}

impl Watcher {
    async fn next(mut self) -> Option<(Result<Arc<Event>, StoreError>, Self)> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            // Mark the current head as seen before scanning so a publish racing with the scan
            // still wakes us below.
            self.head_rx.borrow_and_update();
            match self.scan() {
                Scan::Events => {}
                Scan::Failed(err) => {
                    self.done = true;
                    return Some((Err(err), self));
                }
                Scan::Nothing => {
                    if self.head_rx.changed().await.is_err() {
                        // The hub is gone: end like a closed store.
                        self.done = true;
                        return Some((Err(StoreError::Closed), self));
                    }
                }
            }
        }
    }

    /// Move matching events after the cursor into `pending`, advancing the cursor.
    fn scan(&mut self) -> Scan {
        let ring = self.hub.read();
        if ring.closed {
            return Scan::Failed(StoreError::Closed);
        }
        if self.cursor < ring.floor {
            return Scan::Failed(if self.cursor < ring.compacted {
                StoreError::Compacted {
                    requested: self.cursor,
                    floor: ring.floor,
                }
            } else {
                StoreError::WatchLagged
            });
        }
        let cursor = self.cursor;
        let start = ring.events.partition_point(|e| revision_of(e) <= cursor);
        let mut found = false;
        for event in ring.events.range(start..) {
            self.cursor = revision_of(event);
            if event.kv.key.starts_with(&self.prefix) {
                self.pending.push_back(Arc::clone(event));
                found = true;
                if self.pending.len() >= SCAN_BATCH {
                    return Scan::Events;
                }
            }
        }
        if found { Scan::Events } else { Scan::Nothing }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::StreamExt;

    use super::*;
    use crate::contract::{EventKind, KeyValue};

    fn put(key: &str, revision: u64) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.to_owned(),
                value: Bytes::from(vec![b'x'; 10]),
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
        }
    }

    async fn next_revision(stream: &mut WatchStream) -> u64 {
        let item = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
            .await
            .expect("watch timed out")
            .expect("stream ended")
            .expect("watch error");
        item.kv.mod_revision
    }

    async fn assert_quiet(stream: &mut WatchStream) {
        let res = tokio::time::timeout(std::time::Duration::from_millis(50), stream.next()).await;
        assert!(res.is_err(), "expected no event, got {res:?}");
    }

    #[tokio::test]
    async fn replays_then_streams_live_with_prefix_filter() {
        let hub = WatchHub::new(0, 100, 1 << 20);
        hub.publish([put("/a/1", 1), put("/b/1", 2), put("/a/2", 3)]);
        let mut stream = hub.watch("/a/", 1).unwrap();
        assert_eq!(next_revision(&mut stream).await, 3);
        assert_quiet(&mut stream).await;
        hub.publish([put("/ab/x", 4), put("/a/3", 5)]);
        assert_eq!(next_revision(&mut stream).await, 5);
    }

    #[tokio::test]
    async fn watch_after_future_revision_skips_until_then() {
        let hub = WatchHub::new(0, 100, 1 << 20);
        let mut stream = hub.watch("/", 2).unwrap();
        hub.publish([put("/a", 1), put("/b", 2), put("/c", 3)]);
        assert_eq!(next_revision(&mut stream).await, 3);
    }

    #[tokio::test]
    async fn eviction_by_count_raises_floor() {
        let hub = WatchHub::new(0, 3, 1 << 20);
        hub.publish((1..=5).map(|r| put("/k", r)));
        assert_eq!(hub.len(), 3);
        assert_eq!(hub.floor(), 2);
        assert!(matches!(
            hub.watch("/", 1),
            Err(StoreError::Compacted {
                requested: 1,
                floor: 2
            })
        ));
        let mut stream = hub.watch("/", 2).unwrap();
        assert_eq!(next_revision(&mut stream).await, 3);
    }

    #[tokio::test]
    async fn eviction_by_bytes() {
        let per_event = event_bytes(&put("/k", 1));
        let hub = WatchHub::new(0, 1000, per_event * 4);
        hub.publish((1..=10).map(|r| put("/k", r)));
        assert_eq!(hub.len(), 4);
        assert_eq!(hub.floor(), 6);
    }

    #[tokio::test]
    async fn slow_watcher_lags_and_ends() {
        let hub = WatchHub::new(0, 4, 1 << 20);
        let mut stream = hub.watch("/", 0).unwrap();
        hub.publish([put("/k", 1)]);
        assert_eq!(next_revision(&mut stream).await, 1);
        hub.publish((2..=10).map(|r| put("/k", r)));
        let item = stream.next().await.expect("an error item");
        assert!(matches!(item, Err(StoreError::WatchLagged)), "{item:?}");
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn compaction_overtaking_watcher_reports_compacted() {
        let hub = WatchHub::new(0, 100, 1 << 20);
        hub.publish((1..=4).map(|r| put("/k", r)));
        let mut stream = hub.watch("/", 0).unwrap();
        hub.compact(3);
        assert_eq!(hub.floor(), 3);
        assert_eq!(hub.len(), 1);
        let item = stream.next().await.expect("an error item");
        assert!(
            matches!(
                item,
                Err(StoreError::Compacted {
                    requested: 0,
                    floor: 3
                })
            ),
            "{item:?}"
        );
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn close_ends_streams() {
        let hub = WatchHub::new(7, 100, 1 << 20);
        let mut stream = hub.watch("/", 7).unwrap();
        hub.close();
        assert!(matches!(stream.next().await, Some(Err(StoreError::Closed))));
        assert!(stream.next().await.is_none());
        assert!(matches!(hub.watch("/", 7), Err(StoreError::Closed)));
    }

    #[tokio::test]
    async fn stale_publish_is_ignored() {
        let hub = WatchHub::new(5, 100, 1 << 20);
        hub.publish([put("/k", 5), put("/k", 6)]);
        assert_eq!(hub.len(), 1);
        assert_eq!(hub.head(), 6);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_started_mid_stream_has_no_gap_or_duplicate() {
        const LAST: u64 = 3000;
        let hub = WatchHub::new(0, 10_000, 32 << 20);
        let publisher = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for r in 1..=LAST {
                    hub.publish([put("/k", r)]);
                }
            })
        };
        let mut watchers = Vec::new();
        while watchers.len() < 20 {
            let after = hub.head();
            if after >= LAST {
                break;
            }
            watchers.push((after, hub.watch("/", after).unwrap()));
            tokio::task::yield_now().await;
        }
        publisher.join().unwrap();
        assert!(!watchers.is_empty());
        for (after, mut stream) in watchers {
            for expected in after + 1..=LAST {
                assert_eq!(next_revision(&mut stream).await, expected);
            }
            assert_quiet(&mut stream).await;
        }
    }

    #[tokio::test]
    async fn many_watchers_all_see_every_event() {
        let hub = WatchHub::new(0, 10_000, 32 << 20);
        let mut streams: Vec<_> = (0..500).map(|_| hub.watch("/p/", 0).unwrap()).collect();
        let publisher = {
            let hub = hub.clone();
            tokio::spawn(async move {
                for r in 1..=200 {
                    hub.publish([put("/p/k", r)]);
                    if r % 20 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        };
        for stream in &mut streams {
            for expected in 1..=200 {
                assert_eq!(next_revision(stream).await, expected);
            }
        }
        publisher.await.unwrap();
    }
}
