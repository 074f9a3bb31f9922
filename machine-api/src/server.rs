//! The gRPC service `skiff.machine.v1.Machine` over a [`NodeControl`], and [`serve`], which
//! accepts TCP connections, completes mutual TLS (a client without a certificate from the
//! machine-API CA never reaches a handler) and hands the streams to tonic.
//!
//! Who may call what: `os:admin` everything, `os:reader` Version, Services, Logs and Dmesg.
//! ApplyConfig verifies the signed bytes (signature, schema, generation, role) here, before
//! the node stores anything.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use skiff_machine::{ConfigError, Role};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use crate::node::{NodeControl, NodeError, Power};
use crate::proto::machine_server::{Machine, MachineServer};
use crate::proto::{
    ApplyConfigReply, ApplyConfigRequest, BootPhase, DmesgRequest, KernelMessage, KubeconfigReply,
    KubeconfigRequest, LogLine, LogsRequest, PowerReply, PowerRequest, ResetReply, ResetRequest,
    ServiceStatus, ServicesReply, ServicesRequest, UpgradeReply, UpgradeRequest, VersionReply,
    VersionRequest,
};
use crate::tls::Peer;

/// How long a client gets to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a log follower looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Largest request accepted (a signed config is at most 1 MiB).
const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

/// The machine API service over one node.
pub struct MachineService<N> {
    node: Arc<N>,
}

impl<N: NodeControl> MachineService<N> {
    pub fn new(node: Arc<N>) -> Self {
        Self { node }
    }

    /// The tonic service, with the request size limit applied.
    pub fn into_server(self) -> MachineServer<Self> {
        MachineServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES)
    }
}

fn peer<T>(request: &Request<T>) -> Result<Peer, Status> {
    request
        .extensions()
        .get::<Peer>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))
}

fn require_reader<T>(request: &Request<T>) -> Result<Peer, Status> {
    let peer = peer(request)?;
    if peer.can_read() {
        Ok(peer)
    } else {
        Err(Status::permission_denied(format!(
            "user `{}` is in neither `os:reader` nor `os:admin`; use a client certificate from `skiff gen config`",
            peer.user
        )))
    }
}

fn require_admin<T>(request: &Request<T>) -> Result<Peer, Status> {
    let peer = peer(request)?;
    if peer.is_admin() {
        Ok(peer)
    } else {
        Err(Status::permission_denied(format!(
            "user `{}` is not in `os:admin`, which this call needs",
            peer.user
        )))
    }
}

/// The gRPC status for a failed node action.
pub fn node_status(error: &NodeError) -> Status {
    match error {
        NodeError::NoSuchService(_) => Status::not_found(error.to_string()),
        NodeError::NotHere(_) => Status::failed_precondition(error.to_string()),
        NodeError::Io { what, source } => Status::internal(format!("cannot {what}: {source}")),
        NodeError::Other(_) => Status::internal(error.to_string()),
    }
}

/// The gRPC status for a refused config.
pub fn config_status(error: &ConfigError) -> Status {
    let message = format!("config refused: {error}");
    match error {
        ConfigError::Signature(_) => Status::invalid_argument(format!(
            "{message}; sign it with the cluster's key (the one this node trusts)"
        )),
        ConfigError::StaleGeneration { .. } => Status::failed_precondition(message),
        ConfigError::TooLarge { .. }
        | ConfigError::NotUtf8 { .. }
        | ConfigError::Yaml { .. }
        | ConfigError::UnknownField { .. }
        | ConfigError::Invalid(_) => Status::invalid_argument(message),
    }
}

pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::ControlPlane => "controlplane",
        Role::Worker => "worker",
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

type ReplyStream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl<N: NodeControl> Machine for MachineService<N> {
    async fn version(
        &self,
        request: Request<VersionRequest>,
    ) -> Result<Response<VersionReply>, Status> {
        require_reader(&request)?;
        let v = self.node.version();
        let pending = self.node.generations().pending.unwrap_or(0);
        Ok(Response::new(VersionReply {
            skiff_version: v.skiff_version,
            kernel: v.kernel,
            hostname: v.hostname,
            role: v.role,
            config_generation: v.config_generation,
            config_sha256: v.config_sha256,
            boot: v
                .boot
                .into_iter()
                .map(|(name, at)| BootPhase {
                    name,
                    at_micros: micros(at),
                })
                .collect(),
            pending_generation: pending,
        }))
    }

    async fn services(
        &self,
        request: Request<ServicesRequest>,
    ) -> Result<Response<ServicesReply>, Status> {
        require_reader(&request)?;
        let services = self
            .node
            .services()
            .into_iter()
            .map(|s| ServiceStatus {
                name: s.name,
                state: s.state.as_str().to_owned(),
                restarts: s.restarts,
                pid: s.pid.unwrap_or(0),
            })
            .collect();
        Ok(Response::new(ServicesReply { services }))
    }

    type LogsStream = ReplyStream<LogLine>;

    async fn logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        require_reader(&request)?;
        let req = request.into_inner();
        let chunk = self
            .node
            .log_lines(&req.service, 0)
            .map_err(|e| node_status(&e))?;
        let tail = usize::try_from(req.tail).unwrap_or(usize::MAX);
        let skip = if tail == 0 {
            0
        } else {
            chunk.lines.len().saturating_sub(tail)
        };
        let (tx, rx) = mpsc::channel(256);
        let node = self.node.clone();
        tokio::spawn(async move {
            let mut next = chunk.end();
            for line in chunk.lines.into_iter().skip(skip) {
                if tx.send(Ok(LogLine { line })).await.is_err() {
                    return;
                }
            }
            while req.follow && !tx.is_closed() {
                tokio::time::sleep(FOLLOW_POLL).await;
                let chunk = match node.log_lines(&req.service, next) {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        let _ = tx.send(Err(node_status(&e))).await;
                        return;
                    }
                };
                if chunk.first > next {
                    let line = format!("[{} lines dropped]", chunk.first - next);
                    if tx.send(Ok(LogLine { line })).await.is_err() {
                        return;
                    }
                }
                let end = chunk.end();
                let fresh = usize::try_from(next.saturating_sub(chunk.first)).unwrap_or(0);
                for line in chunk.lines.into_iter().skip(fresh) {
                    if tx.send(Ok(LogLine { line })).await.is_err() {
                        return;
                    }
                }
                next = next.max(end);
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type DmesgStream = ReplyStream<KernelMessage>;

    async fn dmesg(
        &self,
        request: Request<DmesgRequest>,
    ) -> Result<Response<Self::DmesgStream>, Status> {
        require_reader(&request)?;
        let req = request.into_inner();
        let path = self.node.kmsg_path();
        // Open it here so that a missing or forbidden device is the call's status.
        std::fs::File::open(&path)
            .map_err(|e| Status::unavailable(format!("cannot read {}: {e}", path.display())))?;
        let (tx, rx) = mpsc::channel(256);
        let tail = usize::try_from(req.tail).unwrap_or(usize::MAX);
        tokio::task::spawn_blocking(move || {
            let alive = tx.clone();
            let result = crate::kmsg::read(
                &path,
                tail,
                req.follow,
                |r| {
                    tx.blocking_send(Ok(KernelMessage {
                        priority: r.level,
                        facility: r.facility,
                        sequence: r.sequence,
                        timestamp_micros: r.micros,
                        message: r.message,
                    }))
                    .is_ok()
                },
                || !alive.is_closed(),
            );
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(Status::internal(format!(
                    "reading {}: {e}",
                    path.display()
                ))));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn reboot(&self, request: Request<PowerRequest>) -> Result<Response<PowerReply>, Status> {
        require_admin(&request)?;
        self.node
            .power(Power::Reboot)
            .map_err(|e| node_status(&e))?;
        Ok(Response::new(PowerReply {
            message: "rebooting: services stop in order, then the node restarts".to_owned(),
        }))
    }

    async fn shutdown(
        &self,
        request: Request<PowerRequest>,
    ) -> Result<Response<PowerReply>, Status> {
        require_admin(&request)?;
        self.node
            .power(Power::PowerOff)
            .map_err(|e| node_status(&e))?;
        Ok(Response::new(PowerReply {
            message: "powering off: services stop in order, then the node halts".to_owned(),
        }))
    }

    async fn apply_config(
        &self,
        request: Request<ApplyConfigRequest>,
    ) -> Result<Response<ApplyConfigReply>, Status> {
        require_admin(&request)?;
        let raw = request.into_inner().config;
        let verified = skiff_machine::verify(&raw, &self.node.trusted_keys())
            .map_err(|e| config_status(&e))?;
        let generations = self.node.generations();
        let last = generations.applied.max(generations.pending);
        skiff_machine::check_generation(last, &verified.config).map_err(|e| config_status(&e))?;
        let running = self.node.version().role;
        let role = role_name(verified.config.role);
        if !running.is_empty() && running != role {
            return Err(Status::failed_precondition(format!(
                "config refused: it makes this {running} a {role}; a node changes role only \
                 after `skiff ctl reset`"
            )));
        }
        let stored = self
            .node
            .store_config(&verified, &raw)
            .map_err(|e| node_status(&e))?;
        let generation = verified.config.generation.get();
        let message = if stored.persistent {
            format!(
                "config generation {generation} stored; reboot the node (`skiff ctl reboot`) to apply it"
            )
        } else {
            format!(
                "config generation {generation} stored in memory (the node has no state disk); \
                 it is lost at reboot, so boot the node with it instead"
            )
        };
        Ok(Response::new(ApplyConfigReply {
            generation,
            sha256: verified.sha256,
            persistent: stored.persistent,
            message,
        }))
    }

    async fn upgrade(
        &self,
        request: Request<UpgradeRequest>,
    ) -> Result<Response<UpgradeReply>, Status> {
        require_admin(&request)?;
        Err(Status::unimplemented(
            "upgrade is not available yet: nodes have no A/B boot slots to write a new \
             artifact to; boot the nodes from the new `skiff image build` output instead",
        ))
    }

    async fn kubeconfig(
        &self,
        request: Request<KubeconfigRequest>,
    ) -> Result<Response<KubeconfigReply>, Status> {
        require_admin(&request)?;
        let kubeconfig = self.node.kubeconfig().map_err(|e| node_status(&e))?;
        Ok(Response::new(KubeconfigReply { kubeconfig }))
    }

    async fn reset(&self, request: Request<ResetRequest>) -> Result<Response<ResetReply>, Status> {
        require_admin(&request)?;
        self.node.reset().map_err(|e| node_status(&e))?;
        Ok(Response::new(ResetReply {
            message: "resetting: the node reboots and wipes its state before it starts anything"
                .to_owned(),
        }))
    }
}

/// A TLS connection whose client certificate checked out, with who the client is.
pub struct TlsConn {
    stream: TlsStream<TcpStream>,
    peer: Peer,
}

impl Connected for TlsConn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("grpc server")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the machine API of `node` on `listener` until `shutdown` completes. Handshakes run
/// concurrently, each bounded in time; a client that presents no certificate, or one from
/// another CA, is dropped during the handshake.
pub async fn serve<N: NodeControl>(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    node: Arc<N>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let (tx, rx) = mpsc::channel::<Result<TlsConn, std::io::Error>>(64);
    let accept = tokio::spawn(async move {
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("machine api: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                let stream = match handshake.await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::info!("machine api: refused {addr}: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::info!("machine api: {addr} did not finish its TLS handshake");
                        return;
                    }
                };
                let peer = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .map(|der| Peer::from_certificate(der, Some(addr)));
                // rustls already refused clients without a certificate; this is belt and braces.
                let Some(peer) = peer else { return };
                let _ = tx.send(Ok(TlsConn { stream, peer })).await;
            });
        }
    });
    let result = tonic::transport::Server::builder()
        .add_service(MachineService::new(node).into_server())
        .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
        .await;
    accept.abort();
    Ok(result?)
}
