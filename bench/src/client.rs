//! The API-side measurements, through the full HTTPS API with a stock `kube` client built from
//! the server's admin kubeconfig: pod creates, gets, full lists and watch fan-out latency.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use kube::api::{ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::client::ConfigExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tokio::sync::{Semaphore, mpsc};
use tower::{BoxError, ServiceBuilder};

use crate::load::{self, Phase};

/// A client for the server behind `kubeconfig`. Retries are off so that every failure counts.
///
/// The stack is kube's own (base URI, client-certificate TLS, auth) built by hand for one
/// reason: kube's default connector leaves Nagle's algorithm on, and a request written in two
/// segments then waits for the server's delayed ACK (up to 40 ms on Linux). kubectl and
/// client-go set `TCP_NODELAY`, so the benchmark does too.
pub async fn connect(kubeconfig: &Path) -> Result<Client> {
    let file = Kubeconfig::read_from(kubeconfig).context("read the server's kubeconfig")?;
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .context("load the server's kubeconfig")?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = config
        .rustls_https_connector_with_connector(http)
        .context("TLS connector from the kubeconfig")?;
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().context("auth from the kubeconfig")?)
        .map_err(BoxError::from)
        .service(hyper);
    Ok(Client::new(service, config.default_namespace))
}

/// Wait until `GET /readyz` answers 200, at most `limit`.
pub async fn wait_ready(client: &Client, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let req = http::Request::get("/readyz").body(Vec::new())?;
        match client.request_text(req).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e).context("server not ready");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The name of the `i`th benchmark pod.
pub fn pod_name(i: usize) -> String {
    format!("pod-{i:05}")
}

/// A minimal valid pod: one container with a name and an image.
pub fn pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".to_owned(),
                image: Some("registry.k8s.io/pause:3.10".to_owned()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// Create namespace `name` (an already existing one is fine).
pub async fn ensure_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("create namespace {name}")),
    }
}

/// Create pods `pod_name(i)` for `i` in `range` in namespace `ns`.
pub async fn create_pods(
    client: &Client,
    ns: &str,
    range: std::ops::Range<usize>,
    concurrency: usize,
    limit: Duration,
) -> Phase {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let first = range.start;
    load::run(range.len(), concurrency, limit, move |i| {
        let api = api.clone();
        async move {
            let p = pod(&pod_name(first + i));
            api.create(&PostParams::default(), &p).await.map(drop)
        }
    })
    .await
}

/// `count` gets spread over the pods `pod_name(0..pods)` of namespace `ns`.
pub async fn get_pods(
    client: &Client,
    ns: &str,
    pods: usize,
    count: usize,
    concurrency: usize,
    limit: Duration,
) -> Phase {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pods = pods.max(1);
    load::run(count, concurrency, limit, move |i| {
        let api = api.clone();
        // A stride coprime with most pod counts visits the pods in a scattered order.
        let name = pod_name(i.wrapping_mul(7919) % pods);
        async move { api.get(&name).await.map(drop) }
    })
    .await
}

/// The JSON of pod `name` as the server returns it: the size etcd's values should have.
pub async fn pod_json_len(client: &Client, ns: &str, name: &str) -> Result<usize> {
    let req = http::Request::get(format!("/api/v1/namespaces/{ns}/pods/{name}")).body(Vec::new())?;
    Ok(client.request_text(req).await?.len())
}

/// `times` full JSON lists of namespace `ns`, one after the other; each must hold `expect`
/// items. The latency covers the request and the whole body, not decoding it.
pub async fn list_latency(client: &Client, ns: &str, times: usize, expect: usize) -> Result<Phase> {
    let mut phase = Phase::default();
    let start = Instant::now();
    for _ in 0..times {
        let req = http::Request::get(format!("/api/v1/namespaces/{ns}/pods"))
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())?;
        let t0 = Instant::now();
        let res = client.send(req.map(kube::client::Body::from)).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        let took = t0.elapsed();
        if !status.is_success() {
            bail!("list answered {status}: {}", String::from_utf8_lossy(&body));
        }
        let list: serde_json::Value = serde_json::from_slice(&body).context("list is not JSON")?;
        let items = list["items"].as_array().map_or(0, Vec::len);
        if items != expect {
            bail!("list returned {items} pods, expected {expect}");
        }
        phase.ok += 1;
        phase.latencies.push(took);
    }
    phase.elapsed = start.elapsed();
    Ok(phase)
}

/// What the watch fan-out phase saw.
#[derive(Debug, Clone, Default)]
pub struct WatchOutcome {
    /// Watches whose response started.
    pub connected: usize,
    /// Time to open all of them.
    pub connect_time: Duration,
    /// Pods created while they watched.
    pub events: usize,
    /// From just before each create request to each watcher's ADDED event for that pod.
    pub latencies: Vec<Duration>,
    /// (watcher, event) pairs that never arrived.
    pub missed: usize,
    /// The first failure to open a watch, if any.
    pub first_error: Option<String>,
}

/// Open `watchers` watches on the pods of the (empty) namespace `ns`, then create `events`
/// pods one by one, each after every watcher has seen the previous one (or 10 s passed).
pub async fn watch_latency(
    client: &Client,
    ns: &str,
    watchers: usize,
    events: usize,
    limit: Duration,
) -> Result<WatchOutcome> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let rv = api
        .list(&ListParams::default().limit(1))
        .await
        .context("list the watch namespace")?
        .metadata
        .resource_version
        .unwrap_or_default();
    let timeout = u32::try_from(limit.as_secs().clamp(10, 290)).unwrap_or(290);
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    // Open the watches a few dozen at a time: a thousand simultaneous TLS handshakes would
    // measure the handshake storm, not the watch.
    let gate = Arc::new(Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    let connect_start = Instant::now();
    for _ in 0..watchers {
        let api = api.clone();
        let rv = rv.clone();
        let gate = Arc::clone(&gate);
        let seen_tx = seen_tx.clone();
        let ready_tx = ready_tx.clone();
        tasks.spawn(async move {
            let permit = gate.acquire_owned().await;
            let wp = WatchParams::default().timeout(timeout);
            let stream = api.watch(&wp, &rv).await;
            drop(permit);
            let stream = match stream {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(WatchEvent::Added(p)) => {
                        let now = Instant::now();
                        let _ = seen_tx.send((p.metadata.name.unwrap_or_default(), now));
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
    }
    drop(ready_tx);
    drop(seen_tx);

    let mut out = WatchOutcome::default();
    let deadline = Instant::now() + limit;
    let mut answered = 0;
    while answered < watchers {
        match tokio::time::timeout_at(deadline.into(), ready_rx.recv()).await {
            Ok(Some(Ok(()))) => out.connected += 1,
            Ok(Some(Err(e))) => {
                out.first_error.get_or_insert(e);
            }
            Ok(None) | Err(_) => break,
        }
        answered += 1;
    }
    out.connect_time = connect_start.elapsed();

    // Let the server finish registering the last watches; events after `rv` reach them anyway.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut early: HashMap<String, Vec<Instant>> = HashMap::new();
    for e in 0..events {
        if Instant::now() > deadline {
            break;
        }
        let name = format!("watch-{e:03}");
        let t0 = Instant::now();
        api.create(&PostParams::default(), &pod(&name))
            .await
            .with_context(|| format!("create {name} during the watch phase"))?;
        out.events += 1;
        let mut got = 0;
        for t in early.remove(&name).unwrap_or_default() {
            out.latencies.push(t.saturating_duration_since(t0));
            got += 1;
        }
        let wait_until = (Instant::now() + Duration::from_secs(10)).min(deadline);
        while got < out.connected {
            match tokio::time::timeout_at(wait_until.into(), seen_rx.recv()).await {
                Ok(Some((n, t))) if n == name => {
                    out.latencies.push(t.saturating_duration_since(t0));
                    got += 1;
                }
                Ok(Some((n, t))) => early.entry(n).or_default().push(t),
                Ok(None) | Err(_) => break,
            }
        }
        out.missed += out.connected - got;
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_is_minimal_and_valid_json() {
        let v = serde_json::to_value(pod("pod-00042")).unwrap();
        assert_eq!(v["metadata"]["name"], "pod-00042");
        assert_eq!(v["spec"]["containers"][0]["name"], "app");
        assert!(v["spec"]["containers"][0]["image"].is_string());
        assert!(v.get("status").is_none());
    }

    #[test]
    fn pod_names_sort_like_their_numbers() {
        assert_eq!(pod_name(7), "pod-00007");
        assert!(pod_name(999) < pod_name(1000));
    }
}
