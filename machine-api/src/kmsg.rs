//! The kernel's ring buffer through `/dev/kmsg`: each read returns one record,
//! `priority,sequence,microseconds,flags;message`, followed by ` KEY=value` continuation lines.
//! A regular file holding records in that format reads the same way (the tests use one).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// How often a follower looks for new messages.
const POLL: Duration = Duration::from_millis(200);

/// One kernel log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 0 (emergency) to 7 (debug).
    pub level: u32,
    pub facility: u32,
    pub sequence: u64,
    /// Time since the kernel started.
    pub micros: u64,
    pub message: String,
}

/// Parses one record line; continuation lines and malformed lines give `None`.
pub fn parse(line: &str) -> Option<Record> {
    if line.starts_with(' ') {
        return None;
    }
    let (head, message) = line.split_once(';')?;
    let mut fields = head.split(',');
    let prival: u32 = fields.next()?.parse().ok()?;
    let sequence = fields.next()?.parse().ok()?;
    let micros = fields.next()?.parse().ok()?;
    Some(Record {
        level: prival & 7,
        facility: prival >> 3,
        sequence,
        micros,
        message: message.trim_end_matches('\n').to_owned(),
    })
}

/// Reads the kept records (the last `tail` of them when `tail > 0`), then, with `follow`, new
/// ones as they arrive. `send` returns false to stop (the client went away); a follower also
/// stops when `alive` says so while it waits. Blocking: run it on a blocking thread.
pub fn read(
    path: &Path,
    tail: usize,
    follow: bool,
    mut send: impl FnMut(Record) -> bool,
    alive: impl Fn() -> bool,
) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut partial = Vec::new();
    let mut backlog: VecDeque<Record> = VecDeque::new();
    let mut live = false;
    loop {
        match file.read(&mut buf) {
            Ok(n) if n > 0 => {
                partial.extend_from_slice(&buf[..n]);
                while let Some(end) = partial.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = partial.drain(..=end).collect();
                    let Some(record) = parse(&String::from_utf8_lossy(&line)) else {
                        continue;
                    };
                    if live {
                        if !send(record) {
                            return Ok(());
                        }
                    } else {
                        backlog.push_back(record);
                        if tail > 0 && backlog.len() > tail {
                            backlog.pop_front();
                        }
                    }
                }
            }
            // End of the kept messages: EOF for a file, EAGAIN for /dev/kmsg.
            Ok(_) => {
                if !live {
                    live = true;
                    for record in backlog.drain(..) {
                        if !send(record) {
                            return Ok(());
                        }
                    }
                }
                if !follow || !alive() {
                    return Ok(());
                }
                std::thread::sleep(POLL);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !live {
                    live = true;
                    for record in backlog.drain(..) {
                        if !send(record) {
                            return Ok(());
                        }
                    }
                }
                if !follow || !alive() {
                    return Ok(());
                }
                std::thread::sleep(POLL);
            }
            // Records were overwritten before we read them: carry on with the next one.
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_and_skips_continuations() {
        let r = parse("6,339,5140900,-;NET: Registered protocol family 10\n").unwrap();
        assert_eq!(r.level, 6);
        assert_eq!(r.facility, 0);
        assert_eq!(r.sequence, 339);
        assert_eq!(r.micros, 5_140_900);
        assert_eq!(r.message, "NET: Registered protocol family 10");
        let user = parse("14,2,100,c;hello; with semicolon").unwrap();
        assert_eq!((user.level, user.facility), (6, 1));
        assert_eq!(user.message, "hello; with semicolon");
        assert!(parse(" SUBSYSTEM=acpi").is_none());
        assert!(parse("garbage").is_none());
        assert!(parse("x,1,2,-;msg").is_none());
    }

    #[test]
    fn reads_a_file_of_records_with_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kmsg");
        let mut text = String::new();
        for i in 0..5 {
            text.push_str(&format!("6,{i},{},-;line {i}\n SUBSYSTEM=x\n", i * 1000));
        }
        std::fs::write(&path, text).unwrap();
        let mut all = Vec::new();
        read(
            &path,
            0,
            false,
            |r| {
                all.push(r.message);
                true
            },
            || true,
        )
        .unwrap();
        assert_eq!(all, ["line 0", "line 1", "line 2", "line 3", "line 4"]);
        let mut last = Vec::new();
        read(
            &path,
            2,
            false,
            |r| {
                last.push(r.sequence);
                true
            },
            || true,
        )
        .unwrap();
        assert_eq!(last, [3, 4]);
        let mut first = Vec::new();
        read(
            &path,
            0,
            true,
            |r| {
                first.push(r.sequence);
                false
            },
            || true,
        )
        .unwrap();
        assert_eq!(first, [0], "a follower stops when told");
        // A follower whose client left stops at its next wait, having sent everything kept.
        let polled = std::cell::Cell::new(0);
        let mut sent = 0;
        read(
            &path,
            0,
            true,
            |_| {
                sent += 1;
                true
            },
            || {
                polled.set(polled.get() + 1);
                false
            },
        )
        .unwrap();
        assert_eq!((sent, polled.get()), (5, 1));
    }

    #[test]
    fn real_kmsg_is_readable_when_present() {
        // /dev/kmsg needs privileges; only check what we can read.
        let path = Path::new("/dev/kmsg");
        if std::fs::File::open(path).is_err() {
            return;
        }
        let mut n = 0;
        read(
            path,
            3,
            false,
            |r| {
                assert!(r.level <= 7);
                n += 1;
                true
            },
            || true,
        )
        .unwrap();
        assert!(n <= 3);
    }
}
