//! The pods bound to this node: a watch on them, one [`worker::Worker`] task per pod, and
//! clean-up of pods that disappeared while the agent was away.

mod env;
mod events;
mod probe;
mod quantity;
mod status;
mod volumes;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher;
use tokio::sync::mpsc;

use crate::images::Images;
use crate::net::Network;
use crate::node::NodeConfig;
use crate::runtime::Runtime;
pub use events::Recorder;
pub use worker::Worker;

/// What a pod's worker is told.
pub enum Msg {
    Update(Box<Pod>),
    Gone,
}

/// Everything workers share.
pub struct Ctx {
    pub client: kube::Client,
    pub node: NodeConfig,
    pub runtime: Runtime,
    pub net: Option<Network>,
    pub images: Arc<dyn Images>,
    pub data: PathBuf,
    pub cluster_dns: Option<String>,
    pub events: Recorder,
}

/// The path of a container's current (or, with `previous`, the one before) log file.
pub fn log_file(
    data: &std::path::Path,
    uid: &str,
    container: &str,
    previous: bool,
) -> Option<PathBuf> {
    let dir = data.join("pods").join(uid).join("logs").join(container);
    let mut attempts: Vec<u32> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    attempts.sort_unstable();
    let n = if previous {
        attempts.len().checked_sub(2)?
    } else {
        attempts.len().checked_sub(1)?
    };
    Some(dir.join(format!("{}.log", attempts[n])))
}

/// Watch this node's pods forever, keeping one worker per pod.
pub async fn run(ctx: Arc<Ctx>) {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node.name));
    let mut workers: HashMap<String, mpsc::Sender<Msg>> = HashMap::new();
    let mut init_seen: Option<Vec<String>> = None;
    let mut stream = watcher(api, cfg).boxed();
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "watch pods");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        workers.retain(|_, tx| !tx.is_closed());
        match ev {
            watcher::Event::Init => init_seen = Some(Vec::new()),
            watcher::Event::InitApply(p) | watcher::Event::Apply(p) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                if let Some(seen) = init_seen.as_mut() {
                    seen.push(uid.clone());
                }
                dispatch(&ctx, &mut workers, uid, p).await;
            }
            watcher::Event::Delete(p) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                if let Some(tx) = workers.remove(&uid) {
                    let _ = tx.send(Msg::Gone).await;
                }
            }
            watcher::Event::InitDone => {
                let seen = init_seen.take().unwrap_or_default();
                let gone: Vec<String> = workers
                    .keys()
                    .filter(|u| !seen.contains(u))
                    .cloned()
                    .collect();
                for uid in gone {
                    if let Some(tx) = workers.remove(&uid) {
                        let _ = tx.send(Msg::Gone).await;
                    }
                }
                reap_orphans(&ctx, &seen).await;
            }
        }
    }
}

async fn dispatch(
    ctx: &Arc<Ctx>,
    workers: &mut HashMap<String, mpsc::Sender<Msg>>,
    uid: String,
    p: Pod,
) {
    if let Some(tx) = workers.get(&uid)
        && tx.send(Msg::Update(Box::new(p.clone()))).await.is_ok()
    {
        return;
    }
    let (tx, rx) = mpsc::channel(16);
    workers.insert(uid, tx);
    let w = Worker::new(ctx.clone(), p, rx);
    tokio::spawn(w.run());
}

/// Pods with state on disk that the API no longer has: stop and remove them.
async fn reap_orphans(ctx: &Arc<Ctx>, live: &[String]) {
    let Ok(entries) = std::fs::read_dir(ctx.data.join("pods")) else {
        return;
    };
    for e in entries.flatten() {
        let uid = e.file_name().to_string_lossy().into_owned();
        if live.contains(&uid) {
            continue;
        }
        let Ok(meta) = std::fs::read(e.path().join("pod.json")) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&meta) else {
            continue;
        };
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": v["name"], "namespace": v["namespace"], "uid": uid},
            "spec": {"containers": []},
        }))
        .unwrap_or_default();
        tracing::info!(%uid, "removing a pod the API no longer has");
        let (tx, rx) = mpsc::channel(1);
        let w = Worker::new(ctx.clone(), pod, rx);
        let _ = tx.send(Msg::Gone).await;
        tokio::spawn(w.run());
    }
}
