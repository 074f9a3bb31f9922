//! Container logs on disk in the CRI format (`<time> <stream> <F|P> <text>` per record), and
//! the selection `kubectl logs` asks for: tail, since, timestamps, byte limit.

use jiff::Timestamp;

/// Timestamps as containerd writes them (RFC 3339, nanoseconds, trailing zeros trimmed).
pub fn format_ts(ts: Timestamp) -> String {
    ts.to_string()
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub time: Timestamp,
    pub stream: String,
    /// Whether this record ends a line ("F") rather than continuing into the next ("P").
    pub full: bool,
    pub text: Vec<u8>,
}

/// Parse one CRI record line (without its newline).
pub fn parse_line(line: &[u8]) -> Option<Record> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?.to_owned();
    let tag = parts.next()?;
    let text = parts.next().unwrap_or_default().to_vec();
    Some(Record {
        time,
        stream,
        full: tag != b"P",
        text,
    })
}

/// What to show of a log (the `PodLogOptions` the agent honours).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub tail_lines: Option<usize>,
    pub since: Option<Timestamp>,
    pub timestamps: bool,
    pub limit_bytes: Option<usize>,
}

impl Selection {
    /// Whether a record passes the time filter.
    pub fn wants(&self, r: &Record) -> bool {
        self.since.is_none_or(|s| r.time >= s)
    }

    /// The bytes the client sees for one record.
    pub fn render(&self, r: &Record, out: &mut Vec<u8>) {
        if self.timestamps {
            out.extend_from_slice(format_ts(r.time).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&r.text);
        if r.full {
            out.push(b'\n');
        }
    }
}

/// Apply `sel` to a whole log file's contents.
pub fn select(content: &[u8], sel: &Selection) -> Vec<u8> {
    let records: Vec<Record> = content
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(parse_line)
        .filter(|r| sel.wants(r))
        .collect();
    let start = match sel.tail_lines {
        Some(n) => {
            // Count whole lines from the end: a line is its partial records plus a full one.
            let mut lines = 0usize;
            let mut start = records.len();
            for (i, r) in records.iter().enumerate().rev() {
                if r.full {
                    if lines == n {
                        break;
                    }
                    lines += 1;
                }
                start = i;
            }
            start
        }
        None => 0,
    };
    let mut out = Vec::new();
    for r in &records[start..] {
        sel.render(r, &mut out);
    }
    if let Some(limit) = sel.limit_bytes {
        out.truncate(limit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"2024-01-01T00:00:01.5Z stdout F one\n\
2024-01-01T00:00:02Z stderr F two\n\
2024-01-01T00:00:03Z stdout P thr\n\
2024-01-01T00:00:03.1Z stdout F ee\n\
garbage\n\
2024-01-01T00:00:04Z stdout F \n";

    #[test]
    fn parses_records() {
        let r = parse_line(b"2024-01-01T00:00:03Z stdout P thr").unwrap();
        assert_eq!(r.stream, "stdout");
        assert!(!r.full);
        assert_eq!(r.text, b"thr");
        assert!(parse_line(b"garbage").is_none());
    }

    #[test]
    fn selects_all_tail_since() {
        let all = select(LOG, &Selection::default());
        assert_eq!(all, b"one\ntwo\nthree\n\n");
        let tail = select(
            LOG,
            &Selection {
                tail_lines: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(tail, b"three\n\n");
        let zero = select(
            LOG,
            &Selection {
                tail_lines: Some(0),
                ..Default::default()
            },
        );
        assert_eq!(zero, b"");
        let since = select(
            LOG,
            &Selection {
                since: Some("2024-01-01T00:00:02Z".parse().unwrap()),
                ..Default::default()
            },
        );
        assert_eq!(since, b"two\nthree\n\n");
        let ts = select(
            LOG,
            &Selection {
                tail_lines: Some(1),
                timestamps: true,
                ..Default::default()
            },
        );
        assert_eq!(ts, b"2024-01-01T00:00:04Z \n");
        let lim = select(
            LOG,
            &Selection {
                limit_bytes: Some(5),
                ..Default::default()
            },
        );
        assert_eq!(lim, b"one\nt");
    }
}
