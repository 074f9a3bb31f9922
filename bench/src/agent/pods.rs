//! The client side of the skiff measurement: pods created one at a time through the API, each
//! timed from the create request until a watch shows it `Running`, with at most `keep` of them
//! running on the node (the oldest is deleted, and the agent's clean-up awaited, outside the
//! timed window).

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use tokio::sync::mpsc;

use crate::setup::Agent;

/// How long one pod may take to start before the run gives up on it.
const POD_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).context("read kubeconfig")?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("kubeconfig")?;
    Ok(kube::Client::try_from(config)?)
}

/// Wait until `node` is registered, has a pod CIDR and reports Ready.
pub async fn wait_node_ready(client: &kube::Client, node: &str, agent: &mut Agent) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        agent.check_alive()?;
        if let Ok(Some(n)) = api.get_opt(node).await {
            let cidr = n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some();
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if cidr && ready {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("node {node} not Ready after 60 s:\n{}", agent.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pod(name: &str, node: &str) -> Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "c",
                "image": "busybox:1.36",
                "command": ["sleep", "3600"],
            }],
        },
    }))?)
}

/// What the watch saw: a pod `name` in `phase`, at `at`.
struct Seen {
    name: String,
    phase: String,
    at: Instant,
}

/// Forward every pod event in `default` as (name, phase, when it arrived).
async fn watch(api: Api<Pod>, tx: mpsc::UnboundedSender<Seen>) {
    let mut rv = match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(l) => l.metadata.resource_version.unwrap_or_else(|| "0".into()),
        Err(_) => "0".into(),
    };
    loop {
        let Ok(stream) = api.watch(&WatchParams::default().timeout(290), &rv).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut stream = stream.boxed();
        while let Ok(Some(ev)) = stream.try_next().await {
            let p = match ev {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => p,
                WatchEvent::Bookmark(b) => {
                    rv = b.metadata.resource_version;
                    continue;
                }
                _ => continue,
            };
            if let Some(v) = &p.metadata.resource_version {
                rv.clone_from(v);
            }
            let seen = Seen {
                at: Instant::now(),
                name: p.metadata.name.unwrap_or_default(),
                phase: p.status.and_then(|s| s.phase).unwrap_or_default(),
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    }
}

/// What the skiff side of a run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    pub latencies: Vec<Duration>,
    pub failures: Vec<String>,
}

/// Create `count` pods one at a time on `node` and time each until `Running`, keeping at
/// most `keep` running. Returns with `keep` pods (or fewer) still running.
pub async fn run(
    client: &kube::Client,
    node: &str,
    count: usize,
    keep: usize,
    agent: &mut Agent,
) -> Result<Outcome> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watcher = tokio::spawn(watch(api.clone(), tx));
    // Let the watch open before the first create.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut out = Outcome::default();
    let mut running: VecDeque<(String, String)> = VecDeque::new();
    for i in 0..count {
        while running.len() >= keep.max(1) {
            if let Some((name, uid)) = running.pop_front() {
                delete_and_wait(&api, &name, &uid, agent).await?;
            }
        }
        while rx.try_recv().is_ok() {}
        let name = format!("bench-{i}");
        let t0 = Instant::now();
        let created = api.create(&PostParams::default(), &pod(&name, node)?).await;
        let uid = match created {
            Ok(p) => p.metadata.uid.unwrap_or_default(),
            Err(e) => {
                out.failures.push(format!("create {name}: {e}"));
                continue;
            }
        };
        let deadline = tokio::time::Instant::now() + POD_TIMEOUT;
        let mut done = false;
        while let Ok(Some(seen)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            if seen.name == name && seen.phase == "Running" {
                out.latencies.push(seen.at.duration_since(t0));
                done = true;
                break;
            }
        }
        if !done {
            agent.check_alive()?;
            out.failures.push(format!(
                "{name} not Running after {} s",
                POD_TIMEOUT.as_secs()
            ));
        }
        running.push_back((name, uid));
    }
    watcher.abort();
    Ok(out)
}

/// Delete a pod at once and wait until the agent has removed its state.
async fn delete_and_wait(api: &Api<Pod>, name: &str, uid: &str, agent: &Agent) -> Result<()> {
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    let _ = api.delete(name, &dp).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.has_pod(uid) {
        if Instant::now() > deadline {
            bail!("agent did not clean up pod {name} in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Delete every pod in `default` and wait until the agent has cleaned all of them up.
pub async fn delete_all(client: &kube::Client, agent: &Agent) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    let _ = api
        .delete_collection(&dp, &ListParams::default())
        .await
        .context("delete pods")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent.pod_dirs() > 0 {
        if Instant::now() > deadline {
            bail!("agent still has {} pods after 60 s", agent.pod_dirs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_pod_is_bound_and_cached() {
        let p = pod("bench-1", "n1").unwrap();
        let spec = p.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        let c = &spec.containers[0];
        // A tagged image: IfNotPresent, so a cached image is never pulled again.
        assert_eq!(c.image.as_deref(), Some("busybox:1.36"));
        assert_eq!(
            c.command.as_deref(),
            Some(&["sleep".to_string(), "3600".to_string()][..])
        );
    }
}
