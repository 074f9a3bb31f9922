//! Node lifecycle: heartbeats, taints and taint-based eviction.
//!
//! A node whose Lease in `kube-node-lease` has not been renewed for the grace period gets its
//! conditions set to Unknown ("Kubelet stopped posting node status."), its pods marked not
//! Ready, and the `node.kubernetes.io/unreachable` NoSchedule + NoExecute taints (a node that
//! reports Ready=False gets `node.kubernetes.io/not-ready`). Pods on a node with NoExecute
//! taints are evicted (deleted) once their tolerations run out: at once without a matching
//! toleration, after `tolerationSeconds`, and after the default toleration (300 s unless
//! configured) for the not-ready/unreachable taints when the pod does not say. Taints go away
//! when the node is Ready again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use crate::runtime::Ctx;
use crate::util;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// How often every node is checked: kube-controller-manager's `--node-monitor-period` (5 s),
/// or an eighth of a shortened grace period (tests), so 5,000 nodes cost little at idle.
fn period(grace: Duration) -> Duration {
    (grace / 8).clamp(Duration::from_millis(200), Duration::from_secs(5))
}

pub async fn run(ctx: Arc<Ctx>) {
    let mut evicted: HashSet<String> = HashSet::new();
    loop {
        tokio::time::sleep(period(ctx.opts.node_monitor_grace_period)).await;
        for node in ctx.stores.nodes.state() {
            monitor(&ctx, &node).await;
            evict(&ctx, &node, &mut evicted).await;
        }
        if evicted.len() > 100_000 {
            evicted.clear();
        }
    }
}

fn ready_status(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

/// Seconds since the node last heartbeated (Lease renewTime, else Ready's lastHeartbeatTime).
fn silent_for(ctx: &Ctx, node: &Node, now: jiff::Timestamp) -> i64 {
    let name = node.name_any();
    let lease = ctx
        .stores
        .leases
        .get(&ObjectRef::new(&name).within("kube-node-lease"));
    let renew = lease
        .as_ref()
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    let heartbeat = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let last = [renew, heartbeat, created].into_iter().flatten().max();
    last.map_or(0, |t| now.as_second() - t.as_second())
}

async fn monitor(ctx: &Ctx, node: &Node) {
    let now = util::now();
    let name = node.name_any();
    let grace = i64::try_from(ctx.opts.node_monitor_grace_period.as_secs()).unwrap_or(40);
    let status = ready_status(node);
    let silent = silent_for(ctx, node, now);
    if silent > grace && status.as_deref() != Some("Unknown") {
        let nodes: Api<Node> = Api::all(ctx.client.clone());
        let conditions: Vec<serde_json::Value> = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                json!({
                    "type": c.type_,
                    "status": "Unknown",
                    "reason": "NodeStatusUnknown",
                    "message": "Kubelet stopped posting node status.",
                    "lastHeartbeatTime": c.last_heartbeat_time,
                    "lastTransitionTime": util::time(now),
                })
            })
            .collect();
        let r = nodes
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"conditions": conditions}})),
            )
            .await;
        if r.is_ok() {
            tracing::info!(node = %name, silent, "node stopped heartbeating; marking it NotReady (Unknown)");
            ctx.events.publish(
                node,
                false,
                "NodeNotReady",
                format!("Node {name} status is now: NodeNotReady"),
            );
            mark_pods_not_ready(ctx, &name).await;
        }
        return;
    }
    // Taints follow the Ready condition.
    let want: Option<&str> = match status.as_deref() {
        Some("Unknown") => Some(UNREACHABLE),
        Some("False") => Some(NOT_READY),
        _ => None,
    };
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut next: Vec<Taint> = taints
        .iter()
        .filter(|t| !(t.key == UNREACHABLE || t.key == NOT_READY) || Some(t.key.as_str()) == want)
        .cloned()
        .collect();
    if let Some(key) = want {
        for effect in ["NoSchedule", "NoExecute"] {
            if !next.iter().any(|t| t.key == key && t.effect == effect) {
                next.push(Taint {
                    key: key.into(),
                    effect: effect.into(),
                    time_added: (effect == "NoExecute").then(|| util::time(now)),
                    value: None,
                });
            }
        }
    }
    if next != taints {
        let patch = json!({"spec": {"taints": next}, "metadata": {"resourceVersion": node.metadata.resource_version}});
        let nodes: Api<Node> = Api::all(ctx.client.clone());
        if let Err(e) = nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            tracing::debug!(node = %name, error = %e, "cannot update node taints");
        } else if want.is_none() {
            ctx.events.publish(
                node,
                false,
                "NodeReady",
                format!("Node {name} status is now: NodeReady"),
            );
        }
    }
}

async fn mark_pods_not_ready(ctx: &Ctx, node: &str) {
    let pods = ctx
        .stores
        .pods
        .state_filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node));
    for p in pods {
        if !util::pod_ready(&p) {
            continue;
        }
        let conditions: Vec<serde_json::Value> = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|mut c| {
                if c.type_ == "Ready" {
                    c.status = "False".into();
                    c.reason = Some("NodeLost".into());
                    c.last_transition_time = Some(util::time(util::now()));
                }
                serde_json::to_value(c).unwrap_or_default()
            })
            .collect();
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default());
        let _ = api
            .patch_status(
                &p.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"conditions": conditions}})),
            )
            .await;
    }
}

/// When a pod on a node with these NoExecute taints must go (None: it tolerates them forever).
pub fn eviction_time(
    pod: &Pod,
    taints: &[Taint],
    default_secs: i64,
    now: jiff::Timestamp,
) -> Option<i64> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut at: Option<i64> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let added = taint
            .time_added
            .as_ref()
            .map_or(now.as_second(), |t| t.0.as_second());
        let deadline = match tolerations.iter().find(|t| util::tolerates(t, taint)) {
            Some(t) => t.toleration_seconds.map(|s| added + s.max(0)),
            None if taint.key == UNREACHABLE || taint.key == NOT_READY => {
                Some(added + default_secs)
            }
            None => Some(now.as_second()),
        };
        if let Some(d) = deadline {
            at = Some(at.map_or(d, |a: i64| a.min(d)));
        }
    }
    at
}

async fn evict(ctx: &Ctx, node: &Node, evicted: &mut HashSet<String>) {
    let taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.effect == "NoExecute")
        .collect();
    if taints.is_empty() {
        return;
    }
    let now = util::now();
    let name = node.name_any();
    let pods = ctx.stores.pods.state_filter(|p| {
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str())
            && !util::terminating(&p.metadata)
    });
    for p in pods {
        let uid = p.uid().unwrap_or_default();
        if evicted.contains(&uid) {
            continue;
        }
        let Some(at) = eviction_time(&p, &taints, ctx.opts.default_toleration_seconds, now) else {
            continue;
        };
        if at > now.as_second() {
            continue;
        }
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default());
        match api.delete(&p.name_any(), &DeleteParams::default()).await {
            Ok(_) | Err(kube::Error::Api(_)) => {
                evicted.insert(uid);
                ctx.events.publish(
                    p.as_ref(),
                    false,
                    "TaintManagerEviction",
                    format!(
                        "Marking for deletion Pod {}/{}",
                        p.namespace().unwrap_or_default(),
                        p.name_any()
                    ),
                );
            }
            Err(e) => tracing::debug!(error = %e, "eviction failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, Toleration};

    fn taint(key: &str, added: i64) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            time_added: Some(util::time(jiff::Timestamp::from_second(added).unwrap())),
            value: None,
        }
    }

    #[test]
    fn eviction_follows_tolerations() {
        let now = jiff::Timestamp::from_second(1000).unwrap();
        let mut pod = Pod::default();
        // No toleration: the default applies to unreachable, other NoExecute taints evict now.
        assert_eq!(
            eviction_time(&pod, &[taint(UNREACHABLE, 900)], 300, now),
            Some(1200)
        );
        assert_eq!(
            eviction_time(&pod, &[taint("dedicated", 900)], 300, now),
            Some(1000)
        );
        pod.spec = Some(PodSpec {
            tolerations: Some(vec![Toleration {
                key: Some(UNREACHABLE.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(5),
                value: None,
            }]),
            ..PodSpec::default()
        });
        assert_eq!(
            eviction_time(&pod, &[taint(UNREACHABLE, 900)], 300, now),
            Some(905)
        );
        pod.spec.as_mut().unwrap().tolerations.as_mut().unwrap()[0].toleration_seconds = None;
        assert_eq!(
            eviction_time(&pod, &[taint(UNREACHABLE, 900)], 300, now),
            None
        );
    }
}
