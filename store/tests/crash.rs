//! Crash recovery of the embedded store: a child process writes under load (creates, updates,
//! deletes from many concurrent tasks) and prints each write once the store acknowledged it;
//! the test kills it with SIGKILL mid-load, reopens the store, and checks that every
//! acknowledged write is there and that revisions continue after the highest one acknowledged.
//! Three rounds on the same store, so a recovered store is itself crashed and recovered.
//!
//! The child is this test binary run again with `SKIFF_CRASH_CHILD` set.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use skiff_store::{RedbStore, Store};

const CHILD_ENV: &str = "SKIFF_CRASH_CHILD";
const ROUND_ENV: &str = "SKIFF_CRASH_ROUND";
/// Concurrent writers in the child.
const TASKS: usize = 16;
/// Writes each child task does at most (the child is killed long before).
const MAX_WRITES: usize = 20_000;
/// Acknowledged writes the parent waits for before it kills the child.
const KILL_AFTER: usize = 4_000;

/// One acknowledged write, as the child reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ack {
    /// `key` was created (or updated to `value`) at `revision`.
    Put {
        key: String,
        revision: u64,
        value: String,
    },
    /// `key` was deleted at `revision`.
    Delete { key: String, revision: u64 },
}

/// What the child printed: an acknowledged write, or a delete it is about to ask for.
enum Line {
    Ack(Ack),
    TryDelete(String),
}

impl Ack {
    fn revision(&self) -> u64 {
        match self {
            Ack::Put { revision, .. } | Ack::Delete { revision, .. } => *revision,
        }
    }
}

impl Line {
    fn parse(line: &str) -> Option<Self> {
        let mut f = line.split(' ');
        let (tag, key) = (f.next()?, f.next()?.to_owned());
        if tag == "try-del" {
            return Some(Line::TryDelete(key));
        }
        let revision = f.next()?.parse().ok()?;
        match tag {
            "put" => Some(Line::Ack(Ack::Put {
                key,
                revision,
                value: f.next()?.to_owned(),
            })),
            "del" => Some(Line::Ack(Ack::Delete { key, revision })),
            _ => None,
        }
    }
}

/// What one child round printed before it died.
#[derive(Default)]
struct Round {
    acks: Vec<Ack>,
    /// Keys the child asked to delete (acknowledged or not).
    deleting: HashSet<String>,
}

impl Round {
    fn add(&mut self, line: &str) {
        match Line::parse(line) {
            Some(Line::Ack(ack)) => self.acks.push(ack),
            Some(Line::TryDelete(key)) => {
                self.deleting.insert(key);
            }
            None => {}
        }
    }
}

/// A value of about a created pod's size that names its key and version.
fn value(key: &str, version: usize) -> Bytes {
    let tag = format!("{key}@{version}");
    let mut v = tag.clone().into_bytes();
    v.push(b'|');
    v.resize(1400, b'x');
    Bytes::from(v)
}

fn tag_of(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == b'|').unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// The child: write until killed, printing every acknowledged write.
fn child(dir: &Path, round: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(RedbStore::open(&dir.join("store.redb")).unwrap());
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let store = Arc::clone(&store);
            let round = round.to_owned();
            tasks.push(tokio::spawn(async move {
                let updated = format!("/u/{round}/{t}");
                for i in 0..MAX_WRITES {
                    // Mostly creates; every 4th write updates one key, every 8th deletes a key
                    // created just before.
                    let line = match i % 8 {
                        3 | 7 if i > 0 => {
                            let kv = if i == 3 {
                                store.create(&updated, value(&updated, i)).await
                            } else {
                                store.update(&updated, value(&updated, i), None).await
                            }
                            .unwrap();
                            format!("put {updated} {} {}", kv.mod_revision, tag_of(&kv.value))
                        }
                        5 => {
                            let key = format!("/c/{round}/{t}/{}", i - 1);
                            // Once asked, the delete may be durable without an acknowledgement.
                            print_line(&format!("try-del {key}"));
                            let kv = store.delete(&key, None).await.unwrap();
                            format!("del {key} {}", kv.mod_revision)
                        }
                        _ => {
                            let key = format!("/c/{round}/{t}/{i}");
                            let kv = store.create(&key, value(&key, i)).await.unwrap();
                            format!("put {key} {} {}", kv.mod_revision, tag_of(&kv.value))
                        }
                    };
                    print_line(&line);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Run one child until it acknowledged `KILL_AFTER` writes, SIGKILL it, return every write it
/// acknowledged.
fn crash_round(dir: &Path, round: usize) -> Round {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "writes_survive_sigkill_mid_load",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Round::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.acks.len() < KILL_AFTER {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.add(&line),
            Err(e) => {
                let _ = child.kill();
                panic!("child gave {} acks, then {e}", seen.acks.len());
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Lines the child wrote before it died are acknowledged writes too; a torn last line (no
    // newline) fails to parse and is skipped, which only checks less.
    reader.join().unwrap();
    for line in rx.try_iter() {
        seen.add(&line);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_sigkill_mid_load() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let round = std::env::var(ROUND_ENV).unwrap();
        std::thread::spawn(move || child(&PathBuf::from(dir), &round))
            .join()
            .unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut highest = 0;
    let mut replayed = 0;
    for round in 0..3 {
        let Round { acks, deleting } = tokio::task::spawn_blocking({
            let dir = dir.path().to_owned();
            move || crash_round(&dir, round)
        })
        .await
        .unwrap();
        assert!(acks.len() >= KILL_AFTER);
        let store = RedbStore::open(&dir.path().join("store.redb")).unwrap();
        replayed += store.replayed();

        // Revisions of acknowledged writes are unique and above everything before the crash.
        let mut revisions: Vec<u64> = acks.iter().map(Ack::revision).collect();
        revisions.sort_unstable();
        revisions.dedup();
        assert_eq!(revisions.len(), acks.len(), "two writes shared a revision");
        assert!(revisions[0] > highest, "round {round} reused a revision");
        let round_highest = *revisions.last().unwrap();
        assert!(
            store.revision() >= round_highest,
            "store reopened at revision {} below acknowledged {round_highest}",
            store.revision()
        );

        // The last acknowledged write of each key is there, or a later one (a write can be
        // durable and lost its acknowledgement in the crash).
        let mut last: HashMap<&str, &Ack> = HashMap::new();
        for ack in &acks {
            let key = match ack {
                Ack::Put { key, .. } | Ack::Delete { key, .. } => key.as_str(),
            };
            let entry = last.entry(key).or_insert(ack);
            if ack.revision() > entry.revision() {
                *entry = ack;
            }
        }
        for (key, ack) in last {
            let got = store.get(key).await.unwrap();
            match (ack, got) {
                (
                    Ack::Put {
                        revision, value, ..
                    },
                    Some(kv),
                ) => {
                    assert!(kv.mod_revision >= *revision, "{key} went back in time");
                    if kv.mod_revision == *revision {
                        assert_eq!(&tag_of(&kv.value), value, "{key} has another value");
                    }
                }
                (Ack::Put { revision, .. }, None) => assert!(
                    deleting.contains(key),
                    "{key} acknowledged at revision {revision} is missing"
                ),
                (Ack::Delete { revision, .. }, Some(kv)) => {
                    panic!("{key} deleted at revision {revision} is back ({kv:?})")
                }
                (Ack::Delete { .. }, None) => {}
            }
        }

        // Writing goes on from the recovered revision.
        let kv = store
            .create(&format!("/after/{round}"), Bytes::from_static(b"v"))
            .await
            .unwrap();
        assert_eq!(kv.mod_revision, store.revision());
        assert!(kv.mod_revision > round_highest);
        highest = kv.mod_revision;
    }
    // A child killed mid-load always has batches past its last checkpoint.
    assert!(replayed > 0, "no round recovered anything from the log");
}
