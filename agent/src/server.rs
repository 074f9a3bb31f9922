//! The agent's HTTPS endpoint (the kubelet port): container logs for the API server's
//! `pods/{name}/log` proxy, and the SPDY or WebSocket upgrades behind
//! `pods/{name}/portforward`, `pods/{name}/exec` and `pods/{name}/attach` (served by
//! [`crate::stream`]). The serving certificate comes from the cluster CA through a
//! `kubernetes.io/kubelet-serving` CertificateSigningRequest; clients must present a
//! certificate from the same CA carrying the `system:masters` group.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::logs::{Selection, parse_line};

type Body = BoxBody<Bytes, Infallible>;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("request a serving certificate")]
    Csr(#[source] kube::Error),
    #[error("the API server did not sign the serving certificate request")]
    Unsigned,
    #[error("certificates")]
    Pki(#[from] skiff_pki::PkiError),
    #[error("tls")]
    Tls(#[from] rustls::Error),
    #[error("tls client verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("kubeconfig has no certificate-authority-data")]
    NoCa,
}

/// The cluster CA from the kubeconfig (`certificate-authority-data`).
pub fn cluster_ca(kubeconfig: &Path) -> Result<String, ServeError> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|_| ServeError::NoCa)?;
    let data = kc
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.clone())
        .ok_or(ServeError::NoCa)?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| ServeError::NoCa)?;
    String::from_utf8(pem).map_err(|_| ServeError::NoCa)
}

/// Ask the API server to sign a serving certificate for this node: (cert PEM, key PEM).
pub async fn serving_certificate(
    client: &kube::Client,
    node: &str,
    ip: IpAddr,
) -> Result<(String, String), ServeError> {
    let (key, csr) = skiff_pki::kubelet_serving_request(node, &[ip])?;
    let name = format!(
        "skiff-serving-{node}-{}",
        jiff::Timestamp::now().as_second()
    );
    let body = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(csr),
            "signerName": "kubernetes.io/kubelet-serving",
            "usages": ["digital signature", "server auth"],
        },
    });
    let req = Request::post("/apis/certificates.k8s.io/v1/certificatesigningrequests")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap_or_default())
        .map_err(|e| ServeError::Csr(kube::Error::HttpError(e)))?;
    let created: serde_json::Value = client.request(req).await.map_err(ServeError::Csr)?;
    let cert = created
        .pointer("/status/certificate")
        .and_then(|c| c.as_str())
        .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
        .and_then(|c| String::from_utf8(c).ok())
        .ok_or(ServeError::Unsigned)?;
    Ok((cert, key))
}

fn tls_config(cert: &str, key: &str, ca: &str) -> Result<rustls::ServerConfig, ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.as_bytes()).flatten() {
        roots.add(c)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .flatten()
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|_| rustls::Error::General("bad key".into()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serve on `addr` forever.
pub async fn serve(
    addr: SocketAddr,
    cert: String,
    key: String,
    ca: String,
    data: PathBuf,
) -> Result<(), ServeError> {
    let cfg = Arc::new(tls_config(&cert, &key, &ca)?);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let data = Arc::new(data);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let data = data.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let admin = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| skiff_pki::identity_from_der(c.as_ref()).ok())
                .is_some_and(|id| id.groups.iter().any(|g| g == "system:masters"));
            let svc = hyper::service::service_fn(move |req| {
                let data = data.clone();
                async move { Ok::<_, Infallible>(handle(&data, admin, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .with_upgrades()
                .await;
        });
    }
}

fn text(code: StatusCode, msg: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(msg.into()).boxed());
    *r.status_mut() = code;
    r
}

fn query_map(q: Option<&str>) -> std::collections::HashMap<String, String> {
    query_pairs(q.unwrap_or_default()).collect()
}

/// Decoded `key=value` pairs of a query string, repeats kept in order.
pub(crate) fn query_pairs(q: &str) -> impl Iterator<Item = (String, String)> + '_ {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The UID of pod `ns/name` from the agent's on-disk records.
fn find_uid(data: &Path, ns: &str, name: &str) -> Option<String> {
    std::fs::read_dir(data.join("pods"))
        .ok()?
        .flatten()
        .find_map(|e| {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path().join("pod.json")).ok()?).ok()?;
            (v["namespace"] == ns && v["name"] == name)
                .then(|| v["uid"].as_str().map(str::to_owned))?
        })
}

async fn handle(
    data: &Path,
    admin: bool,
    mut req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    if !admin {
        return text(StatusCode::FORBIDDEN, "forbidden\n");
    }
    let path = req.uri().path().to_owned();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["portForward", ns, pod] => return upgrade(data, &mut req, ns, pod, None),
        ["exec", ns, pod, container] => {
            return upgrade(data, &mut req, ns, pod, Some((Kind::Exec, container)));
        }
        ["attach", ns, pod, container] => {
            return upgrade(data, &mut req, ns, pod, Some((Kind::Attach, container)));
        }
        _ => {}
    }
    let ["containerLogs", ns, pod, container] = parts.as_slice() else {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    };
    let q = query_map(req.uri().query());
    let flag = |k: &str| q.get(k).is_some_and(|v| v == "true" || v == "1");
    let uid = q
        .get("podUID")
        .filter(|u| !u.is_empty() && data.join("pods").join(u.as_str()).exists())
        .cloned()
        .or_else(|| find_uid(data, ns, pod));
    let Some(uid) = uid else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod \"{pod}\" not found on this node\n"),
        );
    };
    let previous = flag("previous");
    let Some(path) = crate::pod::log_file(data, &uid, container, previous) else {
        let msg = if previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            )
        };
        return text(StatusCode::BAD_REQUEST, msg);
    };
    let since = q
        .get("sinceTime")
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .or_else(|| {
            let secs: i64 = q.get("sinceSeconds")?.parse().ok()?;
            jiff::Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(secs))
                .ok()
        });
    let sel = Selection {
        tail_lines: q.get("tailLines").and_then(|t| t.parse().ok()),
        since,
        timestamps: flag("timestamps"),
        limit_bytes: q.get("limitBytes").and_then(|t| t.parse().ok()),
    };
    let follow = flag("follow") && !previous;
    // Keep the descriptor: a follower still drains what was written even after rotation
    // renames the file or pod deletion unlinks it.
    let mut file = tokio::fs::File::open(&path).await.ok();
    let mut content = Vec::new();
    if let Some(f) = file.as_mut()
        && f.read_to_end(&mut content).await.is_err()
    {
        content.clear();
    }
    let first = crate::logs::select(&content, &sel);
    if !follow {
        let mut r = text(StatusCode::OK, first);
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        return r;
    }
    // Follow: the selection so far, then whatever the shim appends until the attempt ends.
    let attempt = path
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.strip_suffix(".log"))
        .unwrap_or("0")
        .to_owned();
    let exit_file = data
        .join("pods")
        .join(&uid)
        .join("containers")
        .join(container)
        .join(&attempt)
        .join("exit.json");
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
            return;
        }
        follow_file(path, file, exit_file, sel, tx).await;
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}

/// The remote-command endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exec,
    Attach,
}

/// Switch a `portForward`, `exec` or `attach` request to SPDY/3.1 and serve it on the upgraded
/// connection.
fn upgrade(
    data: &Path,
    req: &mut Request<hyper::body::Incoming>,
    ns: &str,
    pod: &str,
    container: Option<(Kind, &str)>,
) -> Response<Body> {
    let upgrade = req
        .headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let list = |name: &str| -> Vec<String> {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let (transport, protocol, accept) = if upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        let protocol = if container.is_some() {
            crate::stream::EXEC_PROTOCOL
        } else {
            crate::stream::PORT_FORWARD_PROTOCOL
        };
        let offered = list("x-stream-protocol-version");
        if !offered.iter().any(|p| p == protocol) {
            return text(
                StatusCode::FORBIDDEN,
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [{protocol}]\n"
                ),
            );
        }
        (crate::stream::Transport::Spdy, protocol, None)
    } else if upgrade.eq_ignore_ascii_case("websocket") {
        let ours: &[&'static str] = if container.is_some() {
            &[crate::ws::V5, crate::ws::V4]
        } else {
            &[crate::ws::PORT_FORWARD_TUNNEL]
        };
        let offered = list("sec-websocket-protocol");
        let Some(protocol) = crate::ws::choose(&offered, ours) else {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {ours:?}\n"
                ),
            );
        };
        let Some(key) = req
            .headers()
            .get("sec-websocket-key")
            .and_then(|v| v.to_str().ok())
        else {
            return text(
                StatusCode::BAD_REQUEST,
                "unable to upgrade: missing Sec-WebSocket-Key\n",
            );
        };
        let v5 = protocol == crate::ws::V5;
        (
            crate::stream::Transport::WebSocket { v5 },
            protocol,
            Some(crate::ws::accept_key(key)),
        )
    } else {
        return text(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: only SPDY/3.1 and WebSocket streams are served\n",
        );
    };
    let query = req.uri().query().unwrap_or_default().to_owned();
    let q = query_map(Some(&query));
    let uid = q
        .get("podUID")
        .filter(|u| !u.is_empty() && data.join("pods").join(u.as_str()).exists())
        .cloned()
        .or_else(|| find_uid(data, ns, pod));
    let Some(uid) = uid else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod \"{pod}\" not found on this node\n"),
        );
    };
    let on_upgrade = hyper::upgrade::on(req);
    let pod_dir = data.join("pods").join(&uid);
    match container {
        None => {
            let netns = Some(pod_dir.join("ns").join("net")).filter(|p| p.exists());
            let pod = pod.to_owned();
            tokio::spawn(async move {
                let Ok(up) = on_upgrade.await else { return };
                let io = TokioIo::new(up);
                if transport == crate::stream::Transport::Spdy {
                    crate::stream::port_forward(io, netns, pod).await;
                } else {
                    crate::stream::port_forward(crate::ws::tunnel(io).await, netns, pod).await;
                }
            });
        }
        Some((Kind::Exec, container)) => {
            let spec = match crate::stream::exec_target(data, &uid, container) {
                Ok(s) => s,
                Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
            };
            let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
            let state_dir = pod_dir.join("containers").join(container);
            let request = crate::stream::ExecRequest::from_query(&query);
            if request.command.is_empty() {
                return text(
                    StatusCode::BAD_REQUEST,
                    "you must specify at least 1 command\n",
                );
            }
            tokio::spawn(async move {
                if let Ok(up) = on_upgrade.await {
                    crate::stream::exec(TokioIo::new(up), transport, exe, state_dir, spec, request)
                        .await;
                }
            });
        }
        Some((Kind::Attach, container)) => {
            let request = crate::stream::ExecRequest::from_query(&query);
            let target = match crate::stream::attach_target(data, &uid, container, &request) {
                Ok(t) => t,
                Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
            };
            tokio::spawn(async move {
                if let Ok(up) = on_upgrade.await {
                    crate::stream::attach(TokioIo::new(up), transport, target, request).await;
                }
            });
        }
    }
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    match accept {
        None => {
            h.insert(
                http::header::UPGRADE,
                http::HeaderValue::from_static("SPDY/3.1"),
            );
            h.insert(
                "x-stream-protocol-version",
                http::HeaderValue::from_static(protocol),
            );
        }
        Some(accept) => {
            h.insert(
                http::header::UPGRADE,
                http::HeaderValue::from_static("websocket"),
            );
            if let Ok(v) = http::HeaderValue::from_str(&accept) {
                h.insert("sec-websocket-accept", v);
            }
            h.insert(
                "sec-websocket-protocol",
                http::HeaderValue::from_static(protocol),
            );
        }
    }
    r
}

/// Streams what the shim appends to `path` from the open descriptor `file` (positioned after
/// what was already sent) until the attempt has exited and everything is drained. Rotation
/// (the shim renames the file and opens a new one) and unlinking are detected by inode, after
/// the old descriptor has been read to its end.
async fn follow_file(
    path: PathBuf,
    mut file: Option<tokio::fs::File>,
    exit_file: PathBuf,
    sel: Selection,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    use std::os::unix::fs::MetadataExt;
    let mut pending: Vec<u8> = Vec::new();
    let render = Selection {
        tail_lines: None,
        ..sel
    };
    loop {
        let exited = exit_file.exists();
        if file.is_none() {
            file = tokio::fs::File::open(&path).await.ok();
        }
        let mut buf = Vec::new();
        if let Some(f) = file.as_mut()
            && f.read_to_end(&mut buf).await.is_err()
        {
            buf.clear();
        }
        if !buf.is_empty() {
            pending.extend_from_slice(&buf);
            let mut out = Vec::new();
            while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                if let Some(r) = parse_line(&line[..line.len() - 1])
                    && render.wants(&r)
                {
                    render.render(&r, &mut out);
                }
            }
            if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                return;
            }
            continue;
        }
        // Drained this descriptor: has the path moved on to a new file, or gone?
        let open_ino = match file.as_ref() {
            Some(f) => f.metadata().await.ok().map(|m| m.ino()),
            None => None,
        };
        match tokio::fs::metadata(&path).await {
            Ok(m) if open_ino.is_some_and(|ino| ino != m.ino()) => {
                file = None;
                continue;
            }
            Err(_) if open_ino.is_some() => return,
            _ => {}
        }
        if exited || tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let q = query_map(Some(
            "follow=true&sinceTime=2024-01-01T00%3A00%3A00Z&tailLines=5",
        ));
        assert_eq!(q["follow"], "true");
        assert_eq!(q["sinceTime"], "2024-01-01T00:00:00Z");
        assert_eq!(q["tailLines"], "5");
    }

    #[test]
    fn finds_pods_by_name() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pods/u1");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("pod.json"),
            r#"{"namespace":"ns","name":"web","uid":"u1"}"#,
        )
        .unwrap();
        assert_eq!(find_uid(d.path(), "ns", "web").as_deref(), Some("u1"));
        assert_eq!(find_uid(d.path(), "ns", "x"), None);
    }

    /// A follower drains lines written just before the file is rotated away or unlinked, then
    /// picks up the new file, and ends once the attempt exited.
    #[tokio::test]
    async fn follow_survives_rotation_and_unlink() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("0.log");
        let exit = d.path().join("exit.json");
        let line = |t: &str| format!("2024-01-01T00:00:00.000000000Z stdout F {t}\n");
        std::fs::write(&path, line("one")).unwrap();
        let mut file = tokio::fs::File::open(&path).await.unwrap();
        let mut seen = Vec::new();
        file.read_to_end(&mut seen).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let task = tokio::spawn(follow_file(
            path.clone(),
            Some(file),
            exit.clone(),
            Selection::default(),
            tx,
        ));
        let append = |t: &str| {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(line(t).as_bytes()).unwrap();
        };
        append("two");
        std::fs::rename(&path, d.path().join("0.log.1")).unwrap();
        std::fs::write(&path, line("three")).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        append("four");
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&exit, "{}").unwrap();
        let mut got = String::new();
        while let Some(b) = rx.recv().await {
            got.push_str(std::str::from_utf8(&b).unwrap());
        }
        task.await.unwrap();
        assert_eq!(got, "two\nthree\nfour\n");
    }
}
