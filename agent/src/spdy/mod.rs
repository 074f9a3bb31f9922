//! The server side of SPDY/3.1 as client-go's streaming clients speak it (`kubectl exec`,
//! `kubectl port-forward`): the client opens streams (SYN_STREAM with zlib-compressed headers),
//! the server answers each with a SYN_REPLY and both sides exchange DATA frames, half-closing
//! with the FIN flag. No server push, no flow control (spdystream keeps none either), PINGs are
//! echoed.

mod dictionary;

use std::collections::HashMap;

use bytes::Bytes;
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

pub use dictionary::DICTIONARY;

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const FLAG_FIN: u8 = 1;
/// Largest DATA payload this side sends in one frame.
const CHUNK: usize = 32 * 1024;
/// Largest frame accepted from the client.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Why a session ended badly.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("connection")]
    Io(#[from] std::io::Error),
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("frame of {0} bytes is too large")]
    TooLarge(usize),
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("header block does not inflate")]
    Inflate,
}

/// A stream the client opened: its headers (names lowercased, repeated values joined with
/// NUL as on the wire), the data it sends and a handle to answer on.
#[derive(Debug)]
pub struct Stream {
    pub id: u32,
    pub headers: HashMap<String, String>,
    pub reader: StreamReader,
    pub writer: StreamWriter,
}

impl Stream {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Data the client sends on one stream; `None` once it half-closes or resets the stream.
#[derive(Debug)]
pub struct StreamReader {
    rx: mpsc::UnboundedReceiver<Bytes>,
}

impl From<mpsc::UnboundedReceiver<Bytes>> for StreamReader {
    /// Data from another transport (a WebSocket channel), read the same way.
    fn from(rx: mpsc::UnboundedReceiver<Bytes>) -> Self {
        Self { rx }
    }
}

impl StreamReader {
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }
}

/// The server's half of one stream.
#[derive(Debug, Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Bytes>,
}

impl StreamWriter {
    /// Send `data` (split into frames); false once the session is gone.
    pub async fn send(&self, data: &[u8]) -> bool {
        for chunk in data.chunks(CHUNK) {
            if self.out.send(data_frame(self.id, 0, chunk)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Half-close: no more data from this side.
    pub async fn close(&self) {
        let _ = self.out.send(data_frame(self.id, FLAG_FIN, &[])).await;
    }
}

/// Run a session over `io`; the streams the client opens arrive on the returned channel,
/// already answered. The session ends when the client closes the connection or says GOAWAY.
pub fn serve<IO>(io: IO) -> mpsc::Receiver<Stream>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (rd, mut wr) = tokio::io::split(io);
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(64);
    let (streams_tx, streams_rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
            // Coalesce what is already queued before flushing.
            while let Ok(more) = out_rx.try_recv() {
                if wr.write_all(&more).await.is_err() {
                    return;
                }
            }
            if wr.flush().await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        if let Err(e) = read_loop(rd, out_tx, streams_tx).await {
            tracing::debug!(error = %e, "spdy session ended");
        }
    });
    streams_rx
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    out: mpsc::Sender<Bytes>,
    streams: mpsc::Sender<Stream>,
) -> Result<(), SpdyError> {
    let mut inflater = Inflater::new();
    let mut deflater = Deflater::default();
    let mut open: HashMap<u32, mpsc::UnboundedSender<Bytes>> = HashMap::new();
    loop {
        let mut head = [0u8; 8];
        match rd.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let flags = head[4];
        let len = usize::from(head[5]) << 16 | usize::from(head[6]) << 8 | usize::from(head[7]);
        if len > MAX_FRAME {
            return Err(SpdyError::TooLarge(len));
        }
        let mut payload = vec![0u8; len];
        rd.read_exact(&mut payload).await?;
        if head[0] & 0x80 == 0 {
            let id = be32(&head[0..4]) & 0x7fff_ffff;
            if let Some(tx) = open.get(&id) {
                if !payload.is_empty() {
                    let _ = tx.send(Bytes::from(payload));
                }
                if flags & FLAG_FIN != 0 {
                    open.remove(&id);
                }
            }
            continue;
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        match u16::from_be_bytes([head[2], head[3]]) {
            SYN_STREAM => {
                if payload.len() < 10 {
                    return Err(SpdyError::Malformed("SYN_STREAM"));
                }
                let id = be32(&payload[0..4]) & 0x7fff_ffff;
                let headers = parse_headers(&inflater.inflate(&payload[10..])?)?;
                let (tx, rx) = mpsc::unbounded_channel();
                if flags & FLAG_FIN == 0 {
                    open.insert(id, tx);
                }
                let reply = deflater.syn_reply(id);
                if out.send(reply).await.is_err() {
                    return Ok(());
                }
                let stream = Stream {
                    id,
                    headers,
                    reader: StreamReader { rx },
                    writer: StreamWriter {
                        id,
                        out: out.clone(),
                    },
                };
                if streams.send(stream).await.is_err() {
                    return Ok(());
                }
            }
            SYN_REPLY | HEADERS => {
                if payload.len() < 4 {
                    return Err(SpdyError::Malformed("HEADERS"));
                }
                // Inflate anyway: the compression context spans the session.
                inflater.inflate(&payload[4..])?;
            }
            RST_STREAM if payload.len() >= 4 => {
                open.remove(&(be32(&payload[0..4]) & 0x7fff_ffff));
            }
            PING => {
                let mut frame = head.to_vec();
                frame.extend_from_slice(&payload);
                if out.send(Bytes::from(frame)).await.is_err() {
                    return Ok(());
                }
            }
            GOAWAY => return Ok(()),
            // SETTINGS, WINDOW_UPDATE and anything newer: nothing to do.
            _ => {}
        }
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn data_frame(id: u32, flags: u8, data: &[u8]) -> Bytes {
    let mut f = Vec::with_capacity(8 + data.len());
    f.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&u24(data.len()));
    f.extend_from_slice(data);
    Bytes::from(f)
}

fn u24(n: usize) -> [u8; 3] {
    let n = u32::try_from(n).unwrap_or(u32::MAX).min(0x00ff_ffff);
    let b = n.to_be_bytes();
    [b[1], b[2], b[3]]
}

/// A decompressed header block: count, then (length, name, length, value) pairs, big-endian.
fn parse_headers(block: &[u8]) -> Result<HashMap<String, String>, SpdyError> {
    let bad = || SpdyError::Malformed("header block");
    let mut rest = block;
    let mut take = |n: usize| -> Result<&[u8], SpdyError> {
        if rest.len() < n {
            return Err(bad());
        }
        let (a, b) = rest.split_at(n);
        rest = b;
        Ok(a)
    };
    let count = be32(take(4)?);
    let mut out = HashMap::new();
    for _ in 0..count {
        let n = usize::try_from(be32(take(4)?)).map_err(|_| bad())?;
        let name = String::from_utf8_lossy(take(n)?).to_lowercase();
        let n = usize::try_from(be32(take(4)?)).map_err(|_| bad())?;
        let value = String::from_utf8_lossy(take(n)?).into_owned();
        out.insert(name, value);
    }
    Ok(out)
}

/// The session's header inflater: one zlib stream across all header blocks, primed with
/// [`DICTIONARY`]. Output is kept whole so back-references into earlier blocks and the
/// dictionary resolve (header blocks are small; a session holds a few per stream).
struct Inflater {
    state: Box<DecompressorOxide>,
    window: Vec<u8>,
    filled: usize,
    header_skipped: bool,
}

impl Inflater {
    fn new() -> Self {
        Self {
            state: Box::default(),
            window: DICTIONARY.to_vec(),
            filled: DICTIONARY.len(),
            header_skipped: false,
        }
    }

    fn inflate(&mut self, block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut input = block;
        if !self.header_skipped {
            // CMF, FLG and (FDICT set) the dictionary's Adler-32.
            let skip = if input.get(1).is_some_and(|f| f & 0x20 != 0) {
                6
            } else {
                2
            };
            input = input.get(skip..).ok_or(SpdyError::Inflate)?;
            self.header_skipped = true;
        }
        let start = self.filled;
        let flags = inflate_flags::TINFL_FLAG_HAS_MORE_INPUT
            | inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
        loop {
            if self.window.len() < self.filled + 4096 {
                self.window.resize(self.filled + 16 * 1024, 0);
            }
            let (status, used, written) =
                decompress(&mut self.state, input, &mut self.window, self.filled, flags);
            input = &input[used..];
            self.filled += written;
            match status {
                TINFLStatus::HasMoreOutput => {}
                TINFLStatus::NeedsMoreInput | TINFLStatus::Done if input.is_empty() => break,
                TINFLStatus::NeedsMoreInput if used > 0 || written > 0 => {}
                _ => return Err(SpdyError::Inflate),
            }
        }
        Ok(self.window[start..self.filled].to_vec())
    }
}

/// Header blocks this side sends: a zlib stream of stored (uncompressed) deflate blocks,
/// each frame's block followed by an empty one, like a sync flush.
#[derive(Default)]
struct Deflater {
    started: bool,
}

impl Deflater {
    fn block(&mut self, raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(raw.len() + 7);
        if !self.started {
            // zlib header: deflate, 32K window, no preset dictionary.
            out.extend_from_slice(&[0x78, 0x01]);
            self.started = true;
        }
        for chunk in raw.chunks(0xffff) {
            let n = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
            out.push(0x00); // BFINAL=0, BTYPE=stored
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&(!n).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        // An empty stored block, as a sync flush ends with: inflaters (Go's among them) hand
        // out a stored block's bytes only once the next block header is read.
        out.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
        out
    }

    /// SYN_REPLY with no headers.
    fn syn_reply(&mut self, id: u32) -> Bytes {
        let block = self.block(&0u32.to_be_bytes());
        let mut f = Vec::with_capacity(12 + block.len());
        f.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
        f.extend_from_slice(&SYN_REPLY.to_be_bytes());
        f.push(0);
        f.extend_from_slice(&u24(4 + block.len()));
        f.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
        f.extend_from_slice(&block);
        Bytes::from(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_headers(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut b = u32::try_from(pairs.len()).unwrap().to_be_bytes().to_vec();
        for (k, v) in pairs {
            for s in [k, v] {
                b.extend_from_slice(&u32::try_from(s.len()).unwrap().to_be_bytes());
                b.extend_from_slice(s.as_bytes());
            }
        }
        b
    }

    /// A zlib stream with the SPDY dictionary, as Go's `zlib.NewWriterLevelDict` writes it,
    /// flushed after every block (what spdystream does per frame).
    fn compress_with_dictionary(blocks: &[Vec<u8>]) -> Vec<Vec<u8>> {
        use flate2::{Compress, Compression, FlushCompress};
        // The dictionary is announced but not referenced (flate2's miniz backend cannot
        // prime one); the back-reference test below covers dictionary lookups.
        let mut c = Compress::new(Compression::best(), false);
        let mut out = Vec::new();
        for (i, b) in blocks.iter().enumerate() {
            let mut frame = Vec::new();
            if i == 0 {
                frame.extend_from_slice(&[0x78, 0xf9]);
                frame.extend_from_slice(&0xe3c6_a7c2u32.to_be_bytes());
            }
            let mut buf = vec![0u8; b.len() * 2 + 64];
            let before = c.total_out();
            c.compress(b, &mut buf, FlushCompress::Sync).unwrap();
            let n = usize::try_from(c.total_out() - before).unwrap();
            frame.extend_from_slice(&buf[..n]);
            out.push(frame);
        }
        out
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(adler32(DICTIONARY), 0xe3c6_a7c2);
    }

    fn adler32(d: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for x in d {
            a = (a + u32::from(*x)) % 65521;
            b = (b + a) % 65521;
        }
        b << 16 | a
    }

    #[test]
    fn inflates_successive_header_blocks() {
        let first = raw_headers(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")]);
        let second = raw_headers(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]);
        let frames = compress_with_dictionary(&[first.clone(), second.clone()]);
        let mut inf = Inflater::new();
        assert_eq!(inf.inflate(&frames[0]).unwrap(), first);
        let h = parse_headers(&inf.inflate(&frames[1]).unwrap()).unwrap();
        assert_eq!(h["streamtype"], "data");
        assert_eq!(h["port"], "80");
    }

    /// Three header blocks as zlib with the SPDY dictionary compresses them, flushed after
    /// each (generated once with a real zlib): the later ones are mostly back-references.
    #[test]
    fn inflates_what_zlib_compresses_with_the_dictionary() {
        let blocks = [
            "78f9e3c6a7c202253a48f95b044eea16061606409ab308125f99a074cc68004e892545a989b9d0c2863515141500000000ffff",
            "225333a8a44a04000000ffff",
            "224aaf210e8b01000000ffff",
        ];
        let mut inf = Inflater::new();
        let got: Vec<HashMap<String, String>> = blocks
            .iter()
            .map(|b| parse_headers(&inf.inflate(&hex::decode(b).unwrap()).unwrap()).unwrap())
            .collect();
        let want = [("0", "error"), ("0", "data"), ("1", "error")];
        for (h, (id, kind)) in got.iter().zip(want) {
            assert_eq!(h["port"], "8080");
            assert_eq!(h["requestid"], id);
            assert_eq!(h["streamtype"], kind);
        }
    }

    #[test]
    fn inflates_back_references_into_the_dictionary() {
        // A fixed-Huffman block copying "options" (7 bytes at distance 1423, the very start
        // of the dictionary), then an empty stored block as a sync flush.
        let mut bits = BitWriter::default();
        bits.put(0, 1); // BFINAL
        bits.put(1, 2); // fixed Huffman
        // Length 7: code 261 (7 bits: 0000101), no extra bits.
        bits.put_rev(0b0000101, 7);
        // Distance 1423: code 20 (1025..1536, 9 extra bits), extra = 398.
        bits.put_rev(20, 5);
        bits.put(398, 9);
        // End of block: 256 = 0000000.
        bits.put_rev(0, 7);
        let mut frame = vec![0x78, 0xf9];
        frame.extend_from_slice(&0xe3c6_a7c2u32.to_be_bytes());
        frame.extend_from_slice(&bits.finish());
        let mut inf = Inflater::new();
        let out = inf.inflate(&frame).unwrap();
        assert_eq!(&out[..], &DICTIONARY[..7]);
        assert_eq!(&out[4..], b"opt");
    }

    #[derive(Default)]
    struct BitWriter {
        out: Vec<u8>,
        acc: u32,
        n: u32,
    }

    impl BitWriter {
        /// LSB-first value bits (extra bits, header fields).
        fn put(&mut self, v: u32, bits: u32) {
            for i in 0..bits {
                self.bit((v >> i) & 1);
            }
        }
        /// MSB-first Huffman code bits.
        fn put_rev(&mut self, v: u32, bits: u32) {
            for i in (0..bits).rev() {
                self.bit((v >> i) & 1);
            }
        }
        fn bit(&mut self, b: u32) {
            self.acc |= b << self.n;
            self.n += 1;
            if self.n == 8 {
                self.out.push(u8::try_from(self.acc).unwrap());
                self.acc = 0;
                self.n = 0;
            }
        }
        fn finish(mut self) -> Vec<u8> {
            if self.n > 0 {
                self.out.push(u8::try_from(self.acc).unwrap());
            }
            self.out
        }
    }

    #[test]
    fn stored_reply_blocks_inflate_as_one_stream() {
        let mut d = Deflater::default();
        let a = d.syn_reply(1);
        let b = d.syn_reply(3);
        // Frame: 8 header + 4 stream id + block.
        assert_eq!(&a[0..4], &[0x80, 3, 0, 2]);
        assert_eq!(be32(&a[8..12]), 1);
        let mut z = a[12..].to_vec();
        z.extend_from_slice(&b[12..]);
        let mut dec = flate2::Decompress::new(true);
        let mut out = vec![0u8; 64];
        dec.decompress(&z, &mut out, flate2::FlushDecompress::Sync)
            .unwrap();
        assert_eq!(dec.total_out(), 8);
        assert_eq!(&out[..8], &[0u8; 8]);
    }

    #[tokio::test]
    async fn session_answers_streams_and_carries_data() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut streams = serve(server);
        let (mut crd, mut cwr) = tokio::io::split(client);
        let block = compress_with_dictionary(&[raw_headers(&[("streamtype", "data")])]);
        let mut syn = vec![0x80, 3, 0, 1, 0];
        syn.extend_from_slice(&u24(10 + block[0].len()));
        syn.extend_from_slice(&5u32.to_be_bytes());
        syn.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        syn.extend_from_slice(&block[0]);
        cwr.write_all(&syn).await.unwrap();
        cwr.write_all(&data_frame(5, FLAG_FIN, b"hello"))
            .await
            .unwrap();
        let mut s = streams.recv().await.unwrap();
        assert_eq!(s.id, 5);
        assert_eq!(s.header("streamtype"), Some("data"));
        assert_eq!(s.reader.recv().await.unwrap(), Bytes::from_static(b"hello"));
        assert!(s.reader.recv().await.is_none());
        assert!(s.writer.send(b"back").await);
        s.writer.close().await;
        // SYN_REPLY, then the data, then FIN.
        let mut head = [0u8; 8];
        crd.read_exact(&mut head).await.unwrap();
        assert_eq!(&head[0..4], &[0x80, 3, 0, 2]);
        let mut rest = vec![0u8; usize::from(head[7])];
        crd.read_exact(&mut rest).await.unwrap();
        let mut frame = [0u8; 12];
        crd.read_exact(&mut frame).await.unwrap();
        assert_eq!(be32(&frame[0..4]), 5);
        assert_eq!(&frame[8..], b"back");
        crd.read_exact(&mut head).await.unwrap();
        assert_eq!(head, [0, 0, 0, 5, FLAG_FIN, 0, 0, 0]);
    }
}
