//! The write-ahead log in front of the embedded store.
//!
//! Each write batch becomes one record, appended and `fdatasync`ed before any caller of the
//! batch is answered; the redb file is then committed without a sync and made durable only now
//! and then (a checkpoint), after which the log starts over. One small sequential write and one
//! sync per batch replaces redb's durable commit (copy-on-write pages, allocator bookkeeping
//! and its sync) in the path every write waits on, which is how etcd's WAL works too.
//!
//! Layout of the file:
//!
//! * a header of [`HEADER_LEN`] bytes: magic, the log's generation, the CRC-32 of both;
//! * records from [`HEADER_LEN`] on, each `len: u32 LE`, `crc: u32 LE`, then `len` payload
//!   bytes, the CRC covering the generation, `len` and the payload;
//! * after the last record, zeros (the file is grown in zero-filled chunks, so that appending
//!   overwrites blocks that already exist and `fdatasync` has no file size to persist).
//!
//! Starting over after a checkpoint does not truncate: it writes a header with the next
//! generation, so the records still in the file no longer pass their checksum. Reading stops at
//! the first record that is empty, runs past the end, or fails its checksum: that is the end of
//! the log, and a record torn by a crash mid-append (never acknowledged) is dropped there.
//!
//! A payload is one batch: the compaction floor after it, then its changes in revision order,
//! each a put (key, value, create and mod revision) or a delete (key, revision).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes of header at the start of the file.
const HEADER_BYTES: usize = 24;
pub(crate) const HEADER_LEN: u64 = HEADER_BYTES as u64;
/// Bytes of framing (length and checksum) in front of each record.
const FRAME_LEN: usize = 8;
/// The file is grown by this many zero bytes at a time.
const GROW: u64 = 4 << 20;
/// Largest record accepted when reading; anything larger is a damaged length field.
const MAX_RECORD: u32 = 1 << 30;
const MAGIC: &[u8; 8] = b"SKIFFWAL";

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log {path}: {op} failed")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("write-ahead log {path}: record at offset {offset} is malformed")]
    Malformed { path: PathBuf, offset: u64 },
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put {
        key: String,
        value: Vec<u8>,
        create_revision: u64,
        mod_revision: u64,
    },
    Delete {
        key: String,
        revision: u64,
    },
}

impl Change {
    /// The revision this change took.
    pub fn revision(&self) -> u64 {
        match self {
            Change::Put { mod_revision, .. } => *mod_revision,
            Change::Delete { revision, .. } => *revision,
        }
    }
}

/// One decoded record: a batch's changes and the compaction floor after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub compacted: u64,
    pub changes: Vec<Change>,
}

/// Appends borrowed changes to a record payload without copying them first.
pub struct RecordBuilder {
    buf: Vec<u8>,
}

impl RecordBuilder {
    pub fn new(compacted: u64) -> Self {
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(&[0; FRAME_LEN]);
        buf.extend_from_slice(&compacted.to_le_bytes());
        Self { buf }
    }

    pub fn put(&mut self, key: &str, value: &[u8], create_revision: u64, mod_revision: u64) {
        self.buf.push(TAG_PUT);
        put_bytes(&mut self.buf, key.as_bytes());
        self.buf.extend_from_slice(&create_revision.to_le_bytes());
        self.buf.extend_from_slice(&mod_revision.to_le_bytes());
        put_bytes(&mut self.buf, value);
    }

    pub fn delete(&mut self, key: &str, revision: u64) {
        self.buf.push(TAG_DELETE);
        put_bytes(&mut self.buf, key.as_bytes());
        self.buf.extend_from_slice(&revision.to_le_bytes());
    }
}

fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    // Lengths above u32 never reach here: the API refuses bodies far smaller.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(bytes);
}

/// The open log: where the next record goes and how far the file is already allocated.
pub struct Wal {
    file: File,
    path: PathBuf,
    generation: u64,
    /// Offset of the next record.
    end: u64,
    /// Bytes of the file that exist (zero-filled past `end`).
    allocated: u64,
}

impl Wal {
    /// Open (creating if needed) the log at `path` and read every intact record in it.
    pub fn open(path: &Path) -> Result<(Self, Vec<Batch>), WalError> {
        let io_err = |op: &'static str| {
            let path = path.to_path_buf();
            move |source| WalError::Io { path, op, source }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err("open"))?;
        let allocated = file.metadata().map_err(io_err("stat"))?.len();
        let mut wal = Self {
            file,
            path: path.to_path_buf(),
            generation: 0,
            end: HEADER_LEN,
            allocated,
        };
        let header = wal.read_header()?;
        let batches = match header {
            Some(generation) => {
                wal.generation = generation;
                wal.read_records()?
            }
            None => {
                // A new file, or one whose header was being rewritten: that only happens right
                // after a checkpoint, so no record in it is still needed. The clock seeds the
                // generation so that records left from before can never match it by chance.
                wal.generation = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_secs() << 20 ^ u64::from(d.subsec_micros()));
                wal.restart()?;
                sync_dir(path).map_err(io_err("sync the directory"))?;
                Vec::new()
            }
        };
        Ok((wal, batches))
    }

    /// Bytes of records since the last restart.
    pub fn len(&self) -> u64 {
        self.end - HEADER_LEN
    }

    /// Append one record built by `record` and sync it to disk.
    pub fn append(&mut self, record: RecordBuilder) -> Result<(), WalError> {
        let mut buf = record.buf;
        let payload = &buf[FRAME_LEN..];
        let len = u32::try_from(payload.len()).map_err(|_| WalError::Io {
            path: self.path.clone(),
            op: "append",
            source: io::Error::new(io::ErrorKind::InvalidInput, "record larger than 4 GiB"),
        })?;
        let crc = checksum(self.generation, len, payload);
        buf[..4].copy_from_slice(&len.to_le_bytes());
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        let new_end = self.end + buf.len() as u64;
        if new_end > self.allocated {
            self.grow(new_end)?;
        }
        self.file
            .write_all_at(&buf, self.end)
            .map_err(|e| self.io("append", e))?;
        self.file.sync_data().map_err(|e| self.io("fdatasync", e))?;
        self.end = new_end;
        Ok(())
    }

    /// Start an empty log: called once everything in it is durable elsewhere.
    pub fn restart(&mut self) -> Result<(), WalError> {
        self.generation = self.generation.wrapping_add(1);
        if self.allocated < HEADER_LEN + GROW {
            self.grow(HEADER_LEN + GROW)?;
        }
        let mut header = [0u8; HEADER_BYTES];
        header[..8].copy_from_slice(MAGIC);
        header[8..16].copy_from_slice(&self.generation.to_le_bytes());
        let crc = crc32fast::hash(&header[..16]);
        header[16..20].copy_from_slice(&crc.to_le_bytes());
        self.file
            .write_all_at(&header, 0)
            .map_err(|e| self.io("write the header", e))?;
        self.file.sync_data().map_err(|e| self.io("fdatasync", e))?;
        self.end = HEADER_LEN;
        Ok(())
    }

    fn io(&self, op: &'static str, source: io::Error) -> WalError {
        WalError::Io {
            path: self.path.clone(),
            op,
            source,
        }
    }

    /// Extend the file with zeros to at least `to` bytes (synced with the next record).
    fn grow(&mut self, to: u64) -> Result<(), WalError> {
        let target = to.div_ceil(GROW) * GROW;
        let zeros = vec![0u8; 1 << 20];
        let mut at = self.allocated;
        while at < target {
            let n = (target - at).min(zeros.len() as u64);
            // n ≤ 1 MiB, so the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation)]
            let chunk = &zeros[..n as usize];
            self.file
                .write_all_at(chunk, at)
                .map_err(|e| self.io("grow", e))?;
            at += n;
        }
        self.allocated = target;
        Ok(())
    }

    /// The generation in a valid header, or `None` for a missing or damaged one.
    fn read_header(&self) -> Result<Option<u64>, WalError> {
        let mut header = [0u8; HEADER_BYTES];
        if self.allocated < HEADER_LEN {
            return Ok(None);
        }
        self.file
            .read_exact_at(&mut header, 0)
            .map_err(|e| self.io("read the header", e))?;
        let crc = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
        if &header[..8] != MAGIC || crc32fast::hash(&header[..16]) != crc {
            return Ok(None);
        }
        let mut generation = [0u8; 8];
        generation.copy_from_slice(&header[8..16]);
        Ok(Some(u64::from_le_bytes(generation)))
    }

    /// Every intact record from the header on; leaves `end` after the last one.
    fn read_records(&mut self) -> Result<Vec<Batch>, WalError> {
        let mut batches = Vec::new();
        let mut at = HEADER_LEN;
        let mut frame = [0u8; FRAME_LEN];
        loop {
            if at + FRAME_LEN as u64 > self.allocated {
                break;
            }
            self.file
                .read_exact_at(&mut frame, at)
                .map_err(|e| self.io("read", e))?;
            let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
            let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
            let payload_at = at + FRAME_LEN as u64;
            if len == 0 || len > MAX_RECORD || payload_at + u64::from(len) > self.allocated {
                break;
            }
            let mut payload = vec![0u8; len as usize];
            self.file
                .read_exact_at(&mut payload, payload_at)
                .map_err(|e| self.io("read", e))?;
            if checksum(self.generation, len, &payload) != crc {
                break;
            }
            let batch = decode(&payload).ok_or_else(|| WalError::Malformed {
                path: self.path.clone(),
                offset: at,
            })?;
            batches.push(batch);
            at = payload_at + u64::from(len);
        }
        self.end = at;
        Ok(batches)
    }
}

fn checksum(generation: u64, len: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&generation.to_le_bytes());
    hasher.update(&len.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Sync the directory holding `path`, so that a newly created file's name is durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// A cursor over a payload; `None` from any read means the payload is malformed.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u64(&mut self) -> Option<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Some(u64::from_le_bytes(b))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        self.take(u32::from_le_bytes(b) as usize)
    }

    fn string(&mut self) -> Option<String> {
        std::str::from_utf8(self.bytes()?).ok().map(str::to_owned)
    }
}

fn decode(payload: &[u8]) -> Option<Batch> {
    let mut r = Reader(payload);
    let compacted = r.u64()?;
    let mut changes = Vec::new();
    while !r.0.is_empty() {
        let change = match r.u8()? {
            TAG_PUT => {
                let key = r.string()?;
                let create_revision = r.u64()?;
                let mod_revision = r.u64()?;
                let value = r.bytes()?.to_vec();
                Change::Put {
                    key,
                    value,
                    create_revision,
                    mod_revision,
                }
            }
            TAG_DELETE => {
                let key = r.string()?;
                let revision = r.u64()?;
                Change::Delete { key, revision }
            }
            _ => return None,
        };
        changes.push(change);
    }
    Some(Batch { compacted, changes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(first: u64, n: u64) -> RecordBuilder {
        let mut r = RecordBuilder::new(first / 2);
        for rev in first..first + n {
            if rev % 3 == 0 {
                r.delete(&format!("/k/{rev}"), rev);
            } else {
                r.put(&format!("/k/{rev}"), format!("v{rev}").as_bytes(), 1, rev);
            }
        }
        r
    }

    fn revisions(batches: &[Batch]) -> Vec<u64> {
        batches
            .iter()
            .flat_map(|b| b.changes.iter().map(Change::revision))
            .collect()
    }

    #[test]
    fn records_round_trip_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        {
            let (mut wal, batches) = Wal::open(&path).unwrap();
            assert!(batches.is_empty());
            wal.append(record(1, 2)).unwrap();
            wal.append(record(3, 3)).unwrap();
        }
        let (wal, batches) = Wal::open(&path).unwrap();
        assert_eq!(revisions(&batches), [1, 2, 3, 4, 5]);
        assert_eq!(batches[1].compacted, 1);
        assert_eq!(
            batches[0].changes[0],
            Change::Put {
                key: "/k/1".into(),
                value: b"v1".to_vec(),
                create_revision: 1,
                mod_revision: 1
            }
        );
        assert_eq!(
            batches[1].changes[0],
            Change::Delete {
                key: "/k/3".into(),
                revision: 3
            }
        );
        assert!(wal.len() > 0);
    }

    #[test]
    fn torn_tail_is_dropped_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let end_of_two = {
            let (mut wal, _) = Wal::open(&path).unwrap();
            wal.append(record(1, 1)).unwrap();
            wal.append(record(2, 1)).unwrap();
            let end = wal.end;
            wal.append(record(3, 4)).unwrap();
            end
        };
        // A crash mid-append: only the first half of the third record reached the disk.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let whole = {
            let mut buf = vec![0u8; 200];
            file.read_exact_at(&mut buf, end_of_two).unwrap();
            buf
        };
        let len = u32::from_le_bytes(whole[..4].try_into().unwrap()) as usize;
        let torn = FRAME_LEN + len / 2;
        file.write_all_at(&vec![0u8; FRAME_LEN + len - torn], end_of_two + torn as u64)
            .unwrap();
        let (mut wal, batches) = Wal::open(&path).unwrap();
        assert_eq!(revisions(&batches), [1, 2]);
        // The next append goes where the torn record was, and reads back.
        wal.append(record(3, 1)).unwrap();
        drop(wal);
        let (_, batches) = Wal::open(&path).unwrap();
        assert_eq!(revisions(&batches), [1, 2, 3]);
    }

    #[test]
    fn corrupt_record_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let second = {
            let (mut wal, _) = Wal::open(&path).unwrap();
            wal.append(record(1, 1)).unwrap();
            let second = wal.end;
            wal.append(record(2, 1)).unwrap();
            wal.append(record(3, 1)).unwrap();
            second
        };
        // Flip one payload byte of the second record: it and everything after it are dropped.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut b = [0u8; 1];
        let at = second + FRAME_LEN as u64 + 3;
        file.read_exact_at(&mut b, at).unwrap();
        file.write_all_at(&[b[0] ^ 0x40], at).unwrap();
        let (_, batches) = Wal::open(&path).unwrap();
        assert_eq!(revisions(&batches), [1]);
    }

    #[test]
    fn restart_forgets_old_records_without_truncating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        {
            let (mut wal, _) = Wal::open(&path).unwrap();
            wal.append(record(1, 3)).unwrap();
            wal.append(record(4, 3)).unwrap();
            wal.restart().unwrap();
            assert_eq!(wal.len(), 0);
            wal.append(record(7, 1)).unwrap();
        }
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size >= GROW, "the file keeps its zero-filled allocation");
        // The second record of the old generation is still in the file, intact, right after
        // the new one: its checksum no longer matches the generation, so reading stops.
        let (_, batches) = Wal::open(&path).unwrap();
        assert_eq!(revisions(&batches), [7]);
    }

    #[test]
    fn damaged_header_starts_an_empty_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        {
            let (mut wal, _) = Wal::open(&path).unwrap();
            wal.append(record(1, 1)).unwrap();
        }
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(b"X", 0).unwrap();
        let (_, batches) = Wal::open(&path).unwrap();
        assert!(batches.is_empty());
    }

    #[test]
    fn large_records_grow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let big = vec![7u8; (5 << 20) + 100];
        {
            let (mut wal, _) = Wal::open(&path).unwrap();
            let mut r = RecordBuilder::new(0);
            r.put("/big", &big, 1, 1);
            wal.append(r).unwrap();
        }
        let (_, batches) = Wal::open(&path).unwrap();
        match &batches[0].changes[0] {
            Change::Put { value, .. } => assert_eq!(value, &big),
            other => panic!("unexpected {other:?}"),
        }
    }
}
