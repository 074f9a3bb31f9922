//! WebSocket transports of the streaming endpoints, as kubectl 1.32 tries them first:
//!
//! - exec and attach over `v5.channel.k8s.io` / `v4.channel.k8s.io`: every message starts with
//!   a channel byte (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize); in v5 the client's
//!   message `[255, 0]` closes stdin;
//! - port-forward as SPDY/3.1 tunnelled through WebSocket (`SPDY/3.1+portforward.k8s.io`): the
//!   binary messages carry the raw bytes of a SPDY session, served by [`crate::spdy`] as if
//!   they came over the upgraded connection itself.
//!
//! The opening handshake happens in [`crate::server`]: the HTTP upgrade with
//! [`accept_key`] and the chosen subprotocol; here the upgraded connection is framed.

use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use crate::spdy::StreamReader;
use crate::stream::{Channels, ExecRequest, Output};

/// Remote command with close signals.
pub const V5: &str = "v5.channel.k8s.io";
/// Remote command as the Python client speaks it.
pub const V4: &str = "v4.channel.k8s.io";
/// Port-forward: SPDY/3.1 tunnelled through WebSocket.
pub const PORT_FORWARD_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: `[CLOSE, channel]` closes that channel.
const CLOSE: u8 = 255;

/// `Sec-WebSocket-Accept` for the client's `Sec-WebSocket-Key` (RFC 6455, section 4.2.2).
pub fn accept_key(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{}{GUID}", key.trim()).as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The first of `ours` (in our order of preference) that the client offered.
pub fn choose(offered: &[String], ours: &[&'static str]) -> Option<&'static str> {
    ours.iter()
        .copied()
        .find(|p| offered.iter().any(|o| o == p))
}

/// The close frame both directions end with once our side has nothing more to send.
fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

/// One remote-command channel toward the client.
#[derive(Debug, Clone)]
pub struct ChannelWriter {
    channel: u8,
    out: mpsc::Sender<Message>,
}

impl ChannelWriter {
    pub async fn send(&self, data: &[u8]) -> bool {
        let mut m = Vec::with_capacity(data.len() + 1);
        m.push(self.channel);
        m.extend_from_slice(data);
        self.out.send(Message::Binary(Bytes::from(m))).await.is_ok()
    }

    /// Nothing to send: close signals go from client to server only (kubectl discards them
    /// the other way); a channel ends with the connection.
    pub async fn close(&self) {}
}

/// Frame the upgraded connection `io` as the channels `req` asks for. The connection is
/// closed (normal closure) once every output has been dropped.
pub async fn channels<IO>(io: IO, req: &ExecRequest, v5: bool) -> Channels
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut sink, mut incoming) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
    tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink.send(normal_close()).await;
    });
    let (stdin_tx, stdin_rx) = mpsc::unbounded_channel::<Bytes>();
    let (resize_tx, resize_rx) = mpsc::unbounded_channel::<Bytes>();
    let (gone_tx, gone_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut stdin_tx = Some(stdin_tx);
        while let Some(Ok(m)) = incoming.next().await {
            let data: Bytes = match m {
                Message::Binary(b) => b,
                Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&channel, rest)) = data.split_first() else {
                continue;
            };
            match channel {
                STDIN => {
                    if let Some(tx) = &stdin_tx {
                        let _ = tx.send(Bytes::copy_from_slice(rest));
                    }
                }
                RESIZE => {
                    let _ = resize_tx.send(Bytes::copy_from_slice(rest));
                }
                CLOSE if v5 && rest.first() == Some(&STDIN) => stdin_tx = None,
                _ => {}
            }
        }
        drop(gone_tx);
    });
    let writer = |channel: u8| {
        Output::Ws(ChannelWriter {
            channel,
            out: out_tx.clone(),
        })
    };
    Channels {
        stdin: req.stdin.then(|| StreamReader::from(stdin_rx)),
        stdout: req.stdout.then(|| writer(STDOUT)),
        stderr: (req.stderr && !req.tty).then(|| writer(STDERR)),
        resize: req.tty.then(|| StreamReader::from(resize_rx)),
        error: writer(ERROR),
        gone: Box::pin(async move {
            let _ = gone_rx.await;
        }),
    }
}

/// The SPDY byte stream tunnelled through the WebSocket on `io`, as a local duplex pipe.
pub async fn tunnel<IO>(io: IO) -> tokio::io::DuplexStream
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut sink, mut incoming) = ws.split();
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut rd, mut wr) = tokio::io::split(ours);
    tokio::spawn(async move {
        while let Some(Ok(m)) = incoming.next().await {
            match m {
                Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let m = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                    if sink.send(m).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink.send(normal_close()).await;
    });
    theirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn prefers_v5_and_needs_an_offer() {
        let offered = vec![V4.to_owned(), V5.to_owned()];
        assert_eq!(choose(&offered, &[V5, V4]), Some(V5));
        assert_eq!(choose(&[V4.to_owned()], &[V5, V4]), Some(V4));
        assert_eq!(choose(&["base64.channel.k8s.io".into()], &[V5, V4]), None);
    }

    #[tokio::test]
    async fn channel_bytes_and_close_signals() {
        let (client, server) = tokio::io::duplex(4096);
        let req = ExecRequest {
            command: vec!["sh".into()],
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let serve = tokio::spawn(async move { channels(server, &req, true).await });
        let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let mut ch = serve.await.unwrap();
        client
            .send(Message::Binary(Bytes::from_static(b"\x00hello")))
            .await
            .unwrap();
        client
            .send(Message::Binary(Bytes::from_static(&[CLOSE, STDIN])))
            .await
            .unwrap();
        let mut stdin = ch.stdin.take().unwrap();
        assert_eq!(stdin.recv().await.unwrap(), Bytes::from_static(b"hello"));
        assert!(stdin.recv().await.is_none(), "v5 close ends stdin");
        ch.stdout.as_ref().unwrap().send(b"out").await;
        ch.stdout.as_ref().unwrap().close().await;
        drop(ch);
        let mut got = Vec::new();
        while let Some(Ok(m)) = client.next().await {
            got.push(m);
        }
        assert_eq!(got[0], Message::Binary(Bytes::from_static(b"\x01out")));
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(got.last(), Some(Message::Close(Some(f))) if f.code == CloseCode::Normal));
    }
}
