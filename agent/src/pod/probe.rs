//! Liveness, readiness and startup probes: httpGet and tcpSocket from the node to the pod's
//! IP, exec inside the container through the helper; thresholds, periods and delays as the
//! kubelet applies them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// Shared between a container's probe task and its pod worker.
#[derive(Debug, Default)]
pub struct ProbeState {
    pub started: AtomicBool,
    pub ready: AtomicBool,
    pub liveness_failed: AtomicBool,
    /// The latest failure message of the probe that decided `liveness_failed`/`started`.
    pub message: std::sync::Mutex<String>,
}

/// How to run an exec probe: the argv given to the helper-backed exec.
pub type ExecFn = Arc<
    dyn Fn(Vec<String>, Duration) -> crate::images::BoxFuture<'static, Result<i32, String>>
        + Send
        + Sync,
>;

/// Everything a probe needs to reach the container.
#[derive(Clone)]
pub struct Target {
    pub pod_ip: Option<IpAddr>,
    pub container: Container,
    pub exec: ExecFn,
}

fn secs(v: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(default))
}

fn port_of(port: &IntOrString, c: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => c
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// Run `probe` once: Ok on success, Err with the kubelet-style failure message.
pub async fn check(probe: &Probe, t: &Target) -> Result<(), String> {
    let timeout = secs(probe.timeout_seconds, 1);
    if let Some(exec) = &probe.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        return match (t.exec)(cmd, timeout).await {
            Ok(0) => Ok(()),
            Ok(code) => Err(format!("command exited with {code}")),
            Err(e) => Err(e),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = port_of(&tcp.port, &t.container).ok_or("invalid port")?;
        let host = tcp
            .host
            .as_deref()
            .and_then(|h| h.parse().ok())
            .or(t.pod_ip)
            .ok_or("no pod IP")?;
        let addr = SocketAddr::new(host, port);
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {e}")),
            Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
        };
    }
    if let Some(h) = &probe.http_get {
        let port = port_of(&h.port, &t.container).ok_or("invalid port")?;
        let host = h
            .host
            .as_deref()
            .and_then(|h| h.parse().ok())
            .or(t.pod_ip)
            .ok_or("no pod IP")?;
        let addr = SocketAddr::new(host, port);
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let url = format!("http://{addr}{path}");
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n"
        );
        for hd in h.http_headers.as_deref().unwrap_or_default() {
            req.push_str(&format!("{}: {}\r\n", hd.name, hd.value));
        }
        req.push_str("\r\n");
        let fut = async {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.write_all(req.as_bytes()).await?;
            let mut buf = vec![0u8; 1024];
            let mut n = 0;
            while n < 12 {
                let r = s.read(&mut buf[n..]).await?;
                if r == 0 {
                    break;
                }
                n += r;
            }
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..n]).into_owned())
        };
        return match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(head)) => {
                let code: u16 = head
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                if (200..400).contains(&code) {
                    Ok(())
                } else {
                    Err(format!("HTTP probe failed with statuscode: {code}"))
                }
            }
            Ok(Err(e)) => Err(format!("Get \"{url}\": dial tcp {addr}: connect: {e}")),
            Err(_) => Err(format!("Get \"{url}\": context deadline exceeded")),
        };
    }
    Ok(())
}

/// What a probe loop reports to its worker.
pub type Report = Arc<dyn Fn(&'static str, String) + Send + Sync>;

/// One probe kind's loop for one container instance, until the task is aborted.
async fn run_kind(
    kind: &'static str,
    probe: Probe,
    t: Target,
    st: Arc<ProbeState>,
    wake: Arc<Notify>,
    report: Report,
) {
    let period = secs(probe.period_seconds, 10);
    let success_needed = probe.success_threshold.unwrap_or(1).max(1);
    let failure_needed = probe.failure_threshold.unwrap_or(3).max(1);
    tokio::time::sleep(secs(probe.initial_delay_seconds, 0)).await;
    let (mut ok, mut bad) = (0, 0);
    loop {
        if kind != "Startup" && !st.started.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        match check(&probe, &t).await {
            Ok(()) => {
                ok += 1;
                bad = 0;
                if ok >= success_needed {
                    match kind {
                        "Readiness" if !st.ready.swap(true, Ordering::SeqCst) => {
                            wake.notify_one();
                        }
                        "Startup" => {
                            st.started.store(true, Ordering::SeqCst);
                            wake.notify_one();
                            return;
                        }
                        _ => {}
                    }
                }
            }
            Err(msg) => {
                ok = 0;
                bad += 1;
                report(kind, msg.clone());
                if bad >= failure_needed {
                    if let Ok(mut m) = st.message.lock() {
                        *m = msg;
                    }
                    match kind {
                        "Readiness" => {
                            if st.ready.swap(false, Ordering::SeqCst) {
                                wake.notify_one();
                            }
                        }
                        _ => {
                            st.liveness_failed.store(true, Ordering::SeqCst);
                            wake.notify_one();
                            return;
                        }
                    }
                }
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// Start the probe loops of a container instance; the state says what they found.
pub fn start(
    t: Target,
    wake: Arc<Notify>,
    report: Report,
) -> (Arc<ProbeState>, Vec<tokio::task::JoinHandle<()>>) {
    let st = Arc::new(ProbeState::default());
    let c = t.container.clone();
    if c.startup_probe.is_none() {
        st.started.store(true, Ordering::SeqCst);
    }
    if c.readiness_probe.is_none() {
        st.ready.store(true, Ordering::SeqCst);
    }
    let mut tasks = Vec::new();
    for (kind, probe) in [
        ("Startup", c.startup_probe),
        ("Liveness", c.liveness_probe),
        ("Readiness", c.readiness_probe),
    ] {
        if let Some(p) = probe {
            tasks.push(tokio::spawn(run_kind(
                kind,
                p,
                t.clone(),
                st.clone(),
                wake.clone(),
                report.clone(),
            )));
        }
    }
    (st, tasks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{HTTPGetAction, TCPSocketAction};

    fn target(ip: IpAddr) -> Target {
        Target {
            pod_ip: Some(ip),
            container: Container::default(),
            exec: Arc::new(|argv, _| {
                Box::pin(
                    async move { Ok(i32::from(argv.first().map(String::as_str) != Some("true"))) },
                )
            }),
        }
    }

    #[tokio::test]
    async fn http_tcp_exec() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = i32::from(l.local_addr().unwrap().port());
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut s, _)) = l.accept().await {
                let mut b = [0u8; 512];
                let _ = s.read(&mut b).await;
                let code = if n == 0 { "200 OK" } else { "500 Oops" };
                n += 1;
                let _ = s
                    .write_all(format!("HTTP/1.1 {code}\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let t = target("127.0.0.1".parse().unwrap());
        let http = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(port),
                path: Some("/x".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(check(&http, &t).await, Ok(()));
        let e = check(&http, &t).await.unwrap_err();
        assert!(e.contains("statuscode: 500"), "{e}");
        let tcp = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(port),
                host: None,
            }),
            ..Default::default()
        };
        assert_eq!(check(&tcp, &t).await, Ok(()));
        let closed = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(1),
                host: None,
            }),
            ..Default::default()
        };
        assert!(check(&closed, &t).await.unwrap_err().contains("connect"));
        let exec = |cmd: &str| Probe {
            exec: Some(k8s_openapi::api::core::v1::ExecAction {
                command: Some(vec![cmd.into()]),
            }),
            ..Default::default()
        };
        assert_eq!(check(&exec("true"), &t).await, Ok(()));
        assert_eq!(
            check(&exec("false"), &t).await,
            Err("command exited with 1".into())
        );
    }
}
