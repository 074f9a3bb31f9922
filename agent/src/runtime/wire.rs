//! The framing the agent and its helpers use on a byte pipe or unix socket that carries more
//! than one kind of data: a kind byte, a big-endian u32 length, then the payload. It carries
//! terminal input and window sizes to an exec helper, and a container's stdio between its shim
//! and the agent when attaching.

/// Input for the process (stdin bytes).
pub const STDIN: u8 = 0;
/// New window size: width then height, each a big-endian u16.
pub const RESIZE: u8 = 1;
/// The client closed its stdin.
pub const STDIN_CLOSE: u8 = 2;
/// Output of the process on stdout (or its terminal).
pub const STDOUT: u8 = 3;
/// Output of the process on stderr.
pub const STDERR: u8 = 4;
/// From shim to agent, first on an attach connection: the container's settings (JSON).
pub const HELLO: u8 = 5;

/// Largest payload accepted; larger frames mean the peer is broken.
const MAX_PAYLOAD: usize = 1 << 20;

/// One frame, ready to write.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A resize frame.
pub fn resize(width: u16, height: u16) -> Vec<u8> {
    let mut p = width.to_be_bytes().to_vec();
    p.extend_from_slice(&height.to_be_bytes());
    frame(RESIZE, &p)
}

/// Width and height of a resize payload.
pub fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
    let [a, b, c, d] = payload else { return None };
    Some((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])))
}

/// Splits a byte stream back into frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

/// A frame whose length is beyond the 1 MiB limit.
#[derive(Debug, thiserror::Error)]
#[error("frame of {0} bytes is too large")]
pub struct TooLarge(pub usize);

impl Decoder {
    /// Add bytes read from the peer.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, TooLarge> {
        let Some(head) = self.buf.get(..5) else {
            return Ok(None);
        };
        let len = usize::try_from(u32::from_be_bytes([head[1], head[2], head[3], head[4]]))
            .unwrap_or(usize::MAX);
        if len > MAX_PAYLOAD {
            return Err(TooLarge(len));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let kind = self.buf[0];
        let payload = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Ok(Some((kind, payload)))
    }
}

/// Parses the JSON window sizes a client sends on the remote-command resize channel
/// (`{"Width":80,"Height":24}`, one after another, possibly split across reads).
#[derive(Debug, Default)]
pub struct ResizeParser {
    buf: Vec<u8>,
}

#[derive(serde::Deserialize)]
struct Size {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

impl ResizeParser {
    /// Add bytes; returns every complete size, in order. Malformed input is dropped.
    pub fn feed(&mut self, data: &[u8]) -> Vec<(u16, u16)> {
        self.buf.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut used = 0;
        let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Size>();
        loop {
            match it.next() {
                Some(Ok(s)) => {
                    sizes.push((s.width, s.height));
                    used = it.byte_offset();
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(_)) => {
                    used = self.buf.len();
                    break;
                }
                None => {
                    used = self.buf.len();
                    break;
                }
            }
        }
        self.buf.drain(..used);
        sizes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_split_reads() {
        let mut bytes = frame(STDIN, b"hello");
        bytes.extend(resize(120, 40));
        bytes.extend(frame(STDIN_CLOSE, &[]));
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in bytes.chunks(3) {
            d.feed(b);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (STDIN, b"hello".to_vec()));
        assert_eq!(got[1].0, RESIZE);
        assert_eq!(parse_resize(&got[1].1), Some((120, 40)));
        assert_eq!(got[2], (STDIN_CLOSE, vec![]));
        assert_eq!(parse_resize(b"abc"), None);
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut d = Decoder::default();
        d.feed(&[STDIN, 0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_frame().is_err());
    }

    #[test]
    fn resize_messages_split_and_joined() {
        let mut p = ResizeParser::default();
        assert_eq!(p.feed(br#"{"Width":80,"#), vec![]);
        assert_eq!(
            p.feed(b"\"Height\":24}\n{\"Width\":100,\"Height\":30}\n"),
            vec![(80, 24), (100, 30)]
        );
        assert_eq!(p.feed(b"garbage"), vec![]);
        assert_eq!(p.feed(br#"{"Width":1,"Height":2}"#), vec![(1, 2)]);
    }
}
