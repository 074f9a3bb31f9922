//! The API server's side of talking to node agents: signing their serving certificates
//! (CertificateSigningRequests for `kubernetes.io/kubelet-serving`, approved and signed at
//! create when the requester may act for that node), and proxying `pods/{name}/log` (and the
//! SPDY upgrades of `pods/{name}/exec` and `pods/{name}/portforward`) to the agent of the
//! pod's node over TLS both ways (the agent's certificate must chain to the
//! cluster CA; the server presents its own kubelet-client certificate).

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, StreamBody};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use skiff_apimachinery::Subresource;
use skiff_pki::CertificateAuthority;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::auth::User;
use crate::handlers::Ctx;
use crate::response::Body;
use crate::status::ApiError;

/// What the server needs to reach agents and to sign for them.
pub struct KubeletAccess {
    pub ca: CertificateAuthority,
    /// TLS client config: trusts the cluster CA, presents the kubelet-client certificate.
    pub tls: Arc<rustls::ClientConfig>,
}

const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// Sign a new kubelet-serving CSR in place (status.certificate and an Approved condition)
/// when its requester is the node it names, a worker joined with the bootstrap token, or a
/// cluster admin. Other signers are left for
/// whoever handles them.
pub fn sign_on_create(
    access: Option<&KubeletAccess>,
    user: &User,
    csr: &mut Value,
) -> Result<(), ApiError> {
    if csr.pointer("/spec/signerName").and_then(Value::as_str) != Some(SERVING_SIGNER) {
        return Ok(());
    }
    let Some(access) = access else { return Ok(()) };
    let request = csr
        .pointer("/spec/request")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            ApiError::bad_request("spec.request must be a base64 PEM certificate request")
        })?;
    let req = skiff_pki::read_serving_request(&request)
        .map_err(|e| ApiError::bad_request(format!("invalid certificate request: {e}")))?;
    // A worker that joined with the cluster's bootstrap token (group
    // `system:bootstrappers:worker`, see docs/machine-config.md) acts for its node until nodes
    // get their own client certificates.
    let may = user
        .groups
        .iter()
        .any(|g| g == "system:masters" || g == "system:bootstrappers:worker")
        || user.name == format!("system:node:{}", req.node);
    if !may {
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!(
                "user \"{}\" may not request a serving certificate for node \"{}\"",
                user.name, req.node
            ),
        ));
    }
    let signed = access
        .ca
        .sign_serving_request(&request)
        .map_err(|e| ApiError::bad_request(format!("cannot sign certificate request: {e}")))?;
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    csr["status"] = json!({
        "conditions": [{
            "type": "Approved",
            "status": "True",
            "reason": "AutoApproved",
            "message": "Auto approving kubelet serving certificate after SubjectAccessReview.",
            "lastUpdateTime": now,
            "lastTransitionTime": now,
        }],
        "certificate": base64::engine::general_purpose::STANDARD.encode(signed.cert_pem),
    });
    Ok(())
}

/// What a request proxied to a node agent is about: how to reach agents, and the pod it names.
struct Target<'a> {
    access: &'a KubeletAccess,
    ns: String,
    name: String,
    pod: Value,
}

/// The pod the request names (404 when it is not stored) and the agent access (500 when this
/// server has no client certificate for agents).
async fn target<'a>(ctx: &'a Ctx<'_>) -> Result<Target<'a>, ApiError> {
    let access = ctx
        .api
        .kubelet
        .as_ref()
        .ok_or_else(|| ApiError::internal("this server cannot reach node agents"))?;
    let name = ctx.name.clone().unwrap_or_default();
    let ns = ctx.ns().map(str::to_owned).unwrap_or_default();
    let pod = ctx
        .api
        .objects
        .get(ctx.res, Some(&ns), &name)
        .await?
        .ok_or_else(|| ApiError::not_found(ctx.res, &name))?;
    Ok(Target {
        access,
        ns,
        name,
        pod,
    })
}

/// `GET pods/{name}/log`: find the pod's node and stream the agent's answer.
pub async fn log(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let Target {
        access,
        ns,
        name,
        pod,
    } = target(ctx).await?;
    let container = choose_container(&pod, &name, ctx.query.get("container"))?;
    let (ip, port) = agent_endpoint(ctx, &pod, &name).await?;
    let mut query: Vec<String> = Vec::new();
    for key in ["follow", "previous", "timestamps"] {
        if ctx.query.flag(key) {
            query.push(format!("{key}=true"));
        }
    }
    for key in ["tailLines", "sinceSeconds", "sinceTime", "limitBytes"] {
        if let Some(v) = ctx.query.get(key) {
            let enc: String = v
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            query.push(format!("{key}={enc}"));
        }
    }
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let path = format!(
        "/containerLogs/{ns}/{name}/{container}?{}&podUID={uid}",
        query.join("&")
    );
    fetch(access, ip, port, &path).await
}

/// The container a request names (`container` query), or the pod's only main container.
fn choose_container(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let containers: Vec<String> = ["initContainers", "containers"]
        .iter()
        .flat_map(|k| pod["spec"][k].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    let mains: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .map(|cs| cs.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    match asked {
        Some(c) if containers.iter().any(|n| n == c) => Ok(c.to_owned()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if mains.len() == 1 => Ok(mains[0].to_owned()),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            mains.join(" ")
        ))),
    }
}

/// Address and port of the agent on the pod's node.
async fn agent_endpoint(ctx: &Ctx<'_>, pod: &Value, name: &str) -> Result<(IpAddr, u16), ApiError> {
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let nodes = ctx
        .api
        .registry
        .get("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes are not registered"))?;
    let node = ctx
        .api
        .objects
        .get(nodes, None, node_name)
        .await?
        .ok_or_else(|| ApiError::not_found(nodes, node_name))?;
    let ip: IpAddr = node["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .and_then(|a| a["address"].as_str())
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| ApiError::internal(format!("node {node_name} has no InternalIP")))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(10250);
    Ok((ip, port))
}

/// `pods/{name}/exec`, `pods/{name}/attach` and `pods/{name}/portforward`: check the pod (and container), then
/// open the same upgrade to the node's agent and splice the two connections once both sides
/// switched protocols. SPDY/3.1 and WebSocket (the agent does the WebSocket handshake with the
/// client's key) pass through alike.
pub async fn stream(
    ctx: &Ctx<'_>,
    sub: Subresource,
    client: hyper::upgrade::OnUpgrade,
    raw_query: &str,
) -> Result<Response<Body>, ApiError> {
    let upgrade = ctx
        .headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if upgrade.is_empty() {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let websocket = upgrade.eq_ignore_ascii_case("websocket");
    if !websocket && !upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade: {upgrade} is not supported, use SPDY/3.1 or WebSocket"
        )));
    }
    let Target {
        access,
        ns,
        name,
        pod,
    } = target(ctx).await?;
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let path = match sub {
        Subresource::Exec | Subresource::Attach => {
            let container = choose_container(&pod, &name, ctx.query.get("container"))?;
            if sub == Subresource::Exec && ctx.query.get("command").is_none_or(str::is_empty) {
                return Err(ApiError::bad_request("you must specify at least 1 command"));
            }
            let phase = pod["status"]["phase"].as_str().unwrap_or_default();
            if phase == "Succeeded" || phase == "Failed" {
                return Err(ApiError::bad_request(format!(
                    "cannot {} a container in a completed pod; current phase is {phase}",
                    if sub == Subresource::Exec {
                        "exec into"
                    } else {
                        "attach to"
                    }
                )));
            }
            let verb = if sub == Subresource::Exec {
                "exec"
            } else {
                "attach"
            };
            format!("/{verb}/{ns}/{name}/{container}?{raw_query}&podUID={uid}")
        }
        _ => format!("/portForward/{ns}/{name}?podUID={uid}"),
    };
    let (ip, port) = agent_endpoint(ctx, &pod, &name).await?;
    let mut sender = connect(access, ip, port).await?;
    // The agent answers the upgrade itself (SPDY, or the WebSocket handshake with the
    // client's key and subprotocols), so the request goes on as it came.
    let mut req = if websocket {
        Request::get(&path)
    } else {
        Request::post(&path)
    }
    .header(http::header::HOST, format!("{ip}:{port}"))
    .header(http::header::CONNECTION, "Upgrade")
    .header(http::header::UPGRADE, upgrade);
    for name in [
        "x-stream-protocol-version",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
    ] {
        for v in ctx.headers.get_all(name) {
            req = req.header(name, v);
        }
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(unavailable)?;
    let mut resp = sender.send_request(req).await.map_err(unavailable)?;
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(agent_error(resp).await);
    }
    let agent = hyper::upgrade::on(&mut resp);
    let mut out = Response::new(crate::response::full(Bytes::new()));
    *out.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    for h in [
        http::header::CONNECTION,
        http::header::UPGRADE,
        http::HeaderName::from_static("x-stream-protocol-version"),
        http::HeaderName::from_static("sec-websocket-accept"),
        http::HeaderName::from_static("sec-websocket-protocol"),
    ] {
        if let Some(v) = resp.headers().get(&h) {
            out.headers_mut().insert(h, v.clone());
        }
    }
    tokio::spawn(async move {
        let (client, agent) = tokio::join!(client, agent);
        let (client, agent) = match (client, agent) {
            (Ok(c), Ok(a)) => (c, a),
            (c, a) => {
                tracing::warn!(client = ?c.err(), agent = ?a.err(), "streaming upgrade failed");
                return;
            }
        };
        let mut client = hyper_util::rt::TokioIo::new(client);
        let mut agent = hyper_util::rt::TokioIo::new(agent);
        if websocket {
            let (client_rd, client_wr) = tokio::io::split(client);
            let (agent_rd, agent_wr) = tokio::io::split(agent);
            let _ = tokio::join!(
                copy_and_close(client_rd, agent_wr),
                copy_frames(agent_rd, client_wr)
            );
        } else {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
        }
    });
    Ok(out)
}

async fn copy_and_close<R, W>(mut from: R, mut to: W) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    tokio::io::copy(&mut from, &mut to).await?;
    to.shutdown().await
}

/// Copy the agent's WebSocket frames to the client one frame per write (each in its own TLS
/// record). The Python client polls its socket before reading each frame, so frames that
/// arrived in one record with an earlier frame would wait in its TLS buffer unseen.
async fn copy_frames<R, W>(mut from: R, mut to: W) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 32 * 1024];
    loop {
        let n = from.read(&mut chunk).await?;
        if n == 0 {
            to.write_all(&buf).await?;
            return to.shutdown().await;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(len) = frame_len(&buf).filter(|l| *l <= buf.len()) {
            to.write_all(&buf[..len]).await?;
            to.flush().await?;
            buf.drain(..len);
        }
    }
}

/// Length of the WebSocket frame at the start of `b` (RFC 6455, section 5.2), once its
/// header is complete.
fn frame_len(b: &[u8]) -> Option<usize> {
    let second = *b.get(1)?;
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    let (head, payload) = match second & 0x7f {
        126 => (4, u64::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?]))),
        127 => {
            let ext: [u8; 8] = b.get(2..10)?.try_into().ok()?;
            (10, u64::from_be_bytes(ext))
        }
        n => (2, u64::from(n)),
    };
    usize::try_from(payload).ok()?.checked_add(head + mask)
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        502,
        "InternalError",
        format!("error talking to the node agent: {e}"),
    )
}

/// An HTTP/1.1 connection to an agent (TLS both ways), upgrades allowed.
async fn connect(
    access: &KubeletAccess,
    ip: IpAddr,
    port: u16,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, ApiError> {
    let tcp = tokio::net::TcpStream::connect((ip, port))
        .await
        .map_err(unavailable)?;
    let connector = tokio_rustls::TlsConnector::from(access.tls.clone());
    let tls = connector
        .connect(ServerName::IpAddress(ip.into()), tcp)
        .await
        .map_err(unavailable)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(unavailable)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

/// The agent's refusal as an API error.
async fn agent_error(resp: Response<hyper::body::Incoming>) -> ApiError {
    let (parts, incoming) = resp.into_parts();
    let body = incoming
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let msg = String::from_utf8_lossy(&body).trim().to_owned();
    let (code, reason) = match parts.status.as_u16() {
        404 => (404, "NotFound"),
        400 => (400, "BadRequest"),
        403 => (403, "Forbidden"),
        _ => (500, "InternalError"),
    };
    ApiError::new(code, reason, msg)
}

async fn fetch(
    access: &KubeletAccess,
    ip: IpAddr,
    port: u16,
    path: &str,
) -> Result<Response<Body>, ApiError> {
    let mut sender = connect(access, ip, port).await?;
    let req = Request::get(path)
        .header(http::header::HOST, format!("{ip}:{port}"))
        .body(Empty::<Bytes>::new())
        .map_err(unavailable)?;
    let resp = sender.send_request(req).await.map_err(unavailable)?;
    if !resp.status().is_success() {
        return Err(agent_error(resp).await);
    }
    let (_, incoming) = resp.into_parts();
    let stream = futures::stream::unfold(incoming, |mut b| async move {
        match b.frame().await {
            Some(Ok(f)) => Some((Ok::<_, Infallible>(f), b)),
            _ => None,
        }
    });
    let mut out = Response::new(StreamBody::new(stream).boxed());
    out.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    Ok(out)
}

#[cfg(test)]
mod frame_tests {
    use super::*;

    #[tokio::test]
    async fn frames_leave_one_per_write() {
        // Three unmasked binary frames (short, 16-bit length) arriving in one read.
        let mut input = vec![0x82, 3, 1, b'h', b'i'];
        input.extend([0x82, 126, 0, 200]);
        input.extend(std::iter::repeat_n(7u8, 200));
        input.extend([0x88, 2, 3, 0xe8]);
        assert_eq!(frame_len(&input), Some(5));
        assert_eq!(frame_len(&input[5..]), Some(204));
        assert_eq!(frame_len(&[0x82]), None);
        assert_eq!(frame_len(&[0x82, 127, 0]), None);
        let (mut w, r) = tokio::io::duplex(4096);
        let (out_w, mut out_r) = tokio::io::duplex(4096);
        let copy = tokio::spawn(copy_frames(r, out_w));
        w.write_all(&input).await.unwrap();
        drop(w);
        copy.await.unwrap().unwrap();
        let mut out = Vec::new();
        out_r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, input);
    }
}
