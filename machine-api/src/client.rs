//! The machine API client: one mutual-TLS gRPC connection to one node, and errors that say in
//! one line what went wrong and what to do.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use crate::proto::machine_client::MachineClient;
use crate::tls::{self, Credentials, PORT};

/// How long connecting (TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to a node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered: refused, unreachable, timed out.
    #[error(
        "cannot reach {addr}: {reason} — is the node booted and is {addr} its address? check its console"
    )]
    Unreachable { addr: String, reason: String },
    /// TLS failed: wrong CA, a certificate the node does not accept.
    #[error("{addr} refused the TLS session: {reason} — {advice}")]
    Tls {
        addr: String,
        reason: String,
        advice: &'static str,
    },
    /// The node answered the call with an error.
    #[error("{addr}: {message}")]
    Status {
        addr: String,
        code: tonic::Code,
        message: String,
    },
    /// Our own TLS material is unusable.
    #[error("client credentials: {0}")]
    Credentials(#[from] tls::TlsError),
    #[error("`{0}` is not a node address (HOST or HOST:PORT)")]
    Address(String),
}

impl ClientError {
    /// Process exit code for `skiff ctl`: 3 unreachable, 4 TLS/authentication, 5 the node
    /// refused the request, 2 local input.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Unreachable { .. } => 3,
            Self::Tls { .. } => 4,
            Self::Status { code, .. } => match code {
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => 4,
                tonic::Code::Unavailable => 3,
                _ => 5,
            },
            Self::Credentials(_) | Self::Address(_) => 2,
        }
    }
}

/// `HOST`, `HOST:PORT`, `IPv6` or `[IPv6]:PORT` → `host:port` ready for a URI (port 50000 by
/// default).
pub fn node_address(node: &str) -> Result<String, ClientError> {
    let node = node.trim();
    if node.is_empty() || node.contains('/') || node.contains(char::is_whitespace) {
        return Err(ClientError::Address(node.to_owned()));
    }
    if let Ok(ip) = node.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, PORT).to_string());
    }
    if node.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(node.to_owned());
    }
    match node.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(node.to_owned())
        }
        Some(_) => Err(ClientError::Address(node.to_owned())),
        None => Ok(format!("{node}:{PORT}")),
    }
}

/// Why connecting failed, as the connector saw it (found again in tonic's error chain).
#[derive(Debug, thiserror::Error)]
enum ConnectFailure {
    #[error("{0}")]
    Io(#[source] std::io::Error),
    #[error("timed out after {}s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
    #[error("{0}")]
    Tls(#[source] std::io::Error),
    #[error("the node closed the connection right after the TLS handshake")]
    Closed,
}

/// A TLS stream whose first bytes were read ahead. With TLS 1.3 the server checks the
/// client's certificate after the client considers the handshake done, so a refusal only
/// shows on the first read. The machine API's HTTP/2 server speaks first (its SETTINGS
/// frame), so reading that here turns a refusal into a clear connect error instead of a
/// broken stream in the middle of the first call. The bytes are replayed to HTTP/2.
struct Primed {
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    head: Vec<u8>,
    at: usize,
}

impl Primed {
    async fn first_bytes(
        mut stream: tokio_rustls::client::TlsStream<TcpStream>,
    ) -> Result<Self, ConnectFailure> {
        use tokio::io::AsyncReadExt;
        let mut head = vec![0u8; 4096];
        let n = tokio::time::timeout(CONNECT_TIMEOUT, stream.read(&mut head))
            .await
            .map_err(|_| ConnectFailure::Timeout)?
            .map_err(ConnectFailure::Tls)?;
        if n == 0 {
            return Err(ConnectFailure::Closed);
        }
        head.truncate(n);
        Ok(Self {
            stream,
            head,
            at: 0,
        })
    }
}

impl tokio::io::AsyncRead for Primed {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.at < self.head.len() {
            let n = buf.remaining().min(self.head.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.head[at..at + n]);
            self.at += n;
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Primed {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A connected client for one node.
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: String,
    pub grpc: MachineClient<Channel>,
}

impl Client {
    /// Connects (TCP, then mutual TLS, then HTTP/2) to `node`.
    pub async fn connect(node: &str, creds: &Credentials) -> Result<Self, ClientError> {
        let addr = node_address(node)?;
        let config = Arc::new(tls::client_config(creds)?);
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|_| ClientError::Address(node.to_owned()))?
            .connect_timeout(CONNECT_TIMEOUT);
        let target = addr.clone();
        let connector = tower::service_fn(move |_: tonic::transport::Uri| {
            let config = config.clone();
            let target = target.clone();
            async move {
                let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&target))
                    .await
                    .map_err(|_| ConnectFailure::Timeout)?
                    .map_err(ConnectFailure::Io)?;
                let _ = tcp.set_nodelay(true);
                let tls = TlsConnector::from(config)
                    .connect(tls::server_name(), tcp)
                    .await
                    .map_err(ConnectFailure::Tls)?;
                Ok::<_, ConnectFailure>(TokioIo::new(Primed::first_bytes(tls).await?))
            }
        });
        let channel = endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| classify(&addr, &e))?;
        Ok(Self {
            addr,
            grpc: MachineClient::new(channel).max_decoding_message_size(16 * 1024 * 1024),
        })
    }

    /// Turns a failed call into a one-line error.
    pub fn status_error(&self, status: &tonic::Status) -> ClientError {
        if let Some(e) = find::<rustls::Error>(status) {
            return tls_error(&self.addr, e);
        }
        // rustls' error may survive only as text once hyper and h2 have wrapped it.
        let text = chain_text(status);
        if text.contains("received fatal alert") {
            return ClientError::Tls {
                addr: self.addr.clone(),
                reason: text,
                advice: CLIENT_CERT_ADVICE,
            };
        }
        if matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown
        ) && let Some(io) = find::<std::io::Error>(status)
        {
            return ClientError::Unreachable {
                addr: self.addr.clone(),
                reason: io.to_string(),
            };
        }
        ClientError::Status {
            addr: self.addr.clone(),
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

const CLIENT_CERT_ADVICE: &str = "the node does not accept this client certificate; use the skiffconfig `skiff gen config` wrote for this cluster";

/// The innermost message of an error chain.
fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

/// The one-line error for a TLS failure seen by this client.
fn tls_error(addr: &str, e: &rustls::Error) -> ClientError {
    let advice = match e {
        rustls::Error::AlertReceived(_) => CLIENT_CERT_ADVICE,
        rustls::Error::InvalidCertificate(_) => {
            "the node's certificate is not from this cluster's machine-API CA; check --nodes and the skiffconfig context"
        }
        _ => "check that the address is a skiff node's machine API",
    };
    ClientError::Tls {
        addr: addr.to_owned(),
        reason: e.to_string(),
        advice,
    }
}

/// The first error of type `T` in `error`'s source chain (looking inside `io::Error`s too).
fn find<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = find::<T>(inner)
        {
            return Some(found);
        }
        next = e.source();
    }
    None
}

fn classify(addr: &str, error: &tonic::transport::Error) -> ClientError {
    if let Some(e) = find::<rustls::Error>(error) {
        return tls_error(addr, e);
    }
    let reason = match find::<ConnectFailure>(error) {
        Some(ConnectFailure::Tls(io)) => {
            return ClientError::Tls {
                addr: addr.to_owned(),
                reason: io.to_string(),
                advice: "check that the address is a skiff node's machine API",
            };
        }
        Some(ConnectFailure::Closed) => {
            return ClientError::Tls {
                addr: addr.to_owned(),
                reason: "the node closed the connection right after the TLS handshake".to_owned(),
                advice: CLIENT_CERT_ADVICE,
            };
        }
        Some(f) => f.to_string(),
        None => chain_text(error),
    };
    ClientError::Unreachable {
        addr: addr.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses() {
        assert_eq!(node_address("10.0.0.5").unwrap(), "10.0.0.5:50000");
        assert_eq!(node_address("10.0.0.5:6000").unwrap(), "10.0.0.5:6000");
        assert_eq!(node_address("fd00::1").unwrap(), "[fd00::1]:50000");
        assert_eq!(node_address("[fd00::1]:7").unwrap(), "[fd00::1]:7");
        assert_eq!(node_address("node-1").unwrap(), "node-1:50000");
        assert_eq!(node_address("node-1:50001").unwrap(), "node-1:50001");
        for bad in ["", "a b", "http://x", "host:port"] {
            assert!(node_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exit_codes_by_kind() {
        let unreachable = ClientError::Unreachable {
            addr: "a".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(unreachable.exit_code(), 3);
        assert!(
            unreachable
                .to_string()
                .contains("cannot reach a: connection refused")
        );
        let refused = ClientError::Status {
            addr: "a".into(),
            code: tonic::Code::FailedPrecondition,
            message: "old".into(),
        };
        assert_eq!(refused.exit_code(), 5);
        let denied = ClientError::Status {
            addr: "a".into(),
            code: tonic::Code::PermissionDenied,
            message: "no".into(),
        };
        assert_eq!(denied.exit_code(), 4);
    }
}
