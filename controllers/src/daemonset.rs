//! DaemonSet controller: one pod on every eligible node (nodeSelector, required node affinity,
//! NoSchedule/NoExecute taints after the tolerations every daemon pod gets), placed through the
//! scheduler with a `matchFields metadata.name` node affinity as Kubernetes does; pods on nodes
//! that stop being eligible are removed; RollingUpdate replaces old-revision pods at most
//! `maxUnavailable` at a time; ControllerRevisions record the templates.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    Toleration,
};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::deployment::scaled_value;
use crate::replicaset::pod_from_template;
use crate::revisions::{self, HASH_LABEL};
use crate::runtime::{Ctx, Error, pod_seen, tolerate};
use crate::util;

/// Any node change may change which DaemonSets belong on it.
pub fn node_to_daemonsets(
    store: Store<DaemonSet>,
) -> impl Fn(Arc<Node>) -> Vec<ObjectRef<DaemonSet>> + Send + Sync + 'static {
    move |_node| {
        store
            .state()
            .iter()
            .map(|d| ObjectRef::from(d.as_ref()))
            .collect()
    }
}

/// The tolerations the DaemonSet controller adds to every daemon pod.
fn daemon_tolerations() -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    };
    vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ]
}

fn eligible(ds: &DaemonSet, node: &Node) -> bool {
    let Some(spec) = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return false;
    };
    if !util::node_admits(spec, &node.name_any(), node.metadata.labels.as_ref()) {
        return false;
    }
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    tolerations.extend(daemon_tolerations());
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    util::untolerated(&taints, &tolerations, &["NoSchedule", "NoExecute"]).is_none()
}

/// The node a daemon pod is for (its nodeName, or its matchFields affinity).
fn target_node(p: &Pod) -> Option<String> {
    let spec = p.spec.as_ref()?;
    if let Some(n) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

pub async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if util::terminating(&ds.metadata) {
        return Ok(Action::await_change());
    }
    let Some(spec) = ds.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let ns = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let uid = util::uid(&ds.metadata).to_string();
    let pods_api: Api<Pod> = ctx.api(&ns);
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    let rev_name = revisions::sync(
        &ctx,
        ds.as_ref(),
        &spec.template,
        &selector_labels,
        spec.revision_history_limit.unwrap_or(10),
        &[],
    )
    .await?;
    let hash = rev_name
        .strip_prefix(&format!("{name}-"))
        .unwrap_or(&rev_name)
        .to_string();

    let can_create = ctx
        .expectations
        .satisfied(&uid, pod_seen(&ctx.stores.pods, &ns));
    let nodes = ctx.stores.nodes.state();
    let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for p in ctx.pods_in(&ns) {
        if util::controller_of(&p.metadata).is_some_and(|r| r.uid == uid)
            && !util::terminating(&p.metadata)
            && let Some(n) = target_node(&p)
        {
            by_node.entry(n).or_default().push(p);
        }
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = util::now();
    let mut desired = 0;
    let mut current = 0;
    let mut misscheduled = 0;
    let mut ready = 0;
    let mut available = 0;
    let mut updated = 0;
    let mut old_pods: Vec<Arc<Pod>> = Vec::new();
    let mut unavailable_now = 0;
    for node in &nodes {
        let node_name = node.name_any();
        let pods = by_node.remove(&node_name).unwrap_or_default();
        if eligible(&ds, node) {
            desired += 1;
            // Failed pods are replaced.
            let (failed, live): (Vec<_>, Vec<_>) = pods
                .into_iter()
                .partition(|p| util::pod_phase(p) == "Failed");
            for p in failed {
                let r = pods_api
                    .delete(&p.name_any(), &DeleteParams::default())
                    .await
                    .map(|_| ())
                    .map_err(Error::from);
                tolerate(r, &[404, 409])?;
            }
            match live.split_first() {
                None => {
                    if can_create {
                        create_pod(&ctx, &ds, &node_name, &hash).await?;
                    }
                    unavailable_now += 1;
                }
                Some((first, rest)) => {
                    current += 1;
                    for extra in rest {
                        let r = pods_api
                            .delete(&extra.name_any(), &DeleteParams::default())
                            .await
                            .map(|_| ())
                            .map_err(Error::from);
                        tolerate(r, &[404, 409])?;
                    }
                    if util::pod_ready(first) {
                        ready += 1;
                    }
                    if util::pod_available(first, min_ready, now) {
                        available += 1;
                    } else {
                        unavailable_now += 1;
                    }
                    if first.labels().get(HASH_LABEL) == Some(&hash) {
                        updated += 1;
                    } else {
                        old_pods.push(first.clone());
                    }
                }
            }
        } else if !pods.is_empty() {
            misscheduled += 1;
            for p in pods {
                let r = pods_api
                    .delete(&p.name_any(), &DeleteParams::default())
                    .await
                    .map(|_| ())
                    .map_err(Error::from);
                tolerate(r, &[404, 409])?;
            }
        }
    }
    // Pods for nodes that no longer exist.
    for pods in by_node.into_values() {
        for p in pods {
            let r = pods_api
                .delete(&p.name_any(), &DeleteParams::default())
                .await
                .map(|_| ())
                .map_err(Error::from);
            tolerate(r, &[404, 409])?;
        }
    }
    // Rolling update within maxUnavailable.
    let strategy = spec.update_strategy.as_ref();
    if strategy
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
    {
        let max_unavailable = scaled_value(
            strategy
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.max_unavailable.as_ref()),
            desired,
            "1",
            true,
        )
        .max(1);
        let budget = max_unavailable - unavailable_now;
        // Unavailable old pods go first; they cost nothing.
        old_pods.sort_by_key(|p| util::pod_available(p, min_ready, now));
        let mut spent = 0;
        for p in old_pods {
            let costs = util::pod_available(&p, min_ready, now);
            if costs && spent >= budget {
                break;
            }
            let r = pods_api
                .delete(&p.name_any(), &DeleteParams::default())
                .await
                .map(|_| ())
                .map_err(Error::from);
            tolerate(r, &[404, 409])?;
            if costs {
                spent += 1;
            }
        }
    }
    let status = DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: current,
        number_misscheduled: misscheduled,
        number_ready: ready,
        number_available: Some(available),
        number_unavailable: Some((desired - available).max(0)),
        updated_number_scheduled: Some(updated),
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    if ds.status.as_ref() != Some(&status) {
        ctx.patch_status::<DaemonSet>(&ns, &name, &status).await?;
    }
    Ok(Action::requeue(Duration::from_secs(
        if unavailable_now > 0 { 2 } else { 300 },
    )))
}

async fn create_pod(ctx: &Ctx, ds: &DaemonSet, node: &str, hash: &str) -> Result<(), Error> {
    let spec = ds.spec.clone().unwrap_or_default();
    let mut pod = pod_from_template(
        ds,
        &spec.template,
        None,
        Some(format!("{}-", ds.name_any())),
    );
    pod.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.into(), hash.to_string());
    if let Some(ps) = pod.spec.as_mut() {
        let term = NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            match_expressions: None,
        };
        let affinity = ps.affinity.get_or_insert_with(Affinity::default);
        let na = affinity
            .node_affinity
            .get_or_insert_with(NodeAffinity::default);
        na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
            node_selector_terms: vec![term],
        });
        let tolerations = ps.tolerations.get_or_insert_with(Vec::new);
        for t in daemon_tolerations() {
            if !tolerations
                .iter()
                .any(|e| e.key == t.key && e.effect == t.effect)
            {
                tolerations.push(t);
            }
        }
    }
    let api: Api<Pod> = ctx.api(&ds.namespace().unwrap_or_default());
    let created = api.create(&PostParams::default(), &pod).await?;
    ctx.expectations
        .expect_create(util::uid(&ds.metadata), created.name_any());
    ctx.events.publish(
        ds,
        false,
        "SuccessfulCreate",
        format!("Created pod: {}", created.name_any()),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec, PodTemplateSpec, Taint};

    fn ds(node_selector: Option<(&str, &str)>) -> DaemonSet {
        DaemonSet {
            spec: Some(DaemonSetSpec {
                template: PodTemplateSpec {
                    spec: Some(PodSpec {
                        node_selector: node_selector
                            .map(|(k, v)| [(k.to_string(), v.to_string())].into()),
                        ..PodSpec::default()
                    }),
                    ..PodTemplateSpec::default()
                },
                ..DaemonSetSpec::default()
            }),
            ..DaemonSet::default()
        }
    }

    fn node(labels: &[(&str, &str)], taint: Option<&str>) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some("n".into());
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n.spec = Some(NodeSpec {
            taints: taint.map(|k| {
                vec![Taint {
                    key: k.into(),
                    effect: "NoSchedule".into(),
                    ..Taint::default()
                }]
            }),
            ..NodeSpec::default()
        });
        n
    }

    #[test]
    fn eligibility_follows_selectors_and_taints() {
        assert!(eligible(&ds(None), &node(&[], None)));
        assert!(!eligible(&ds(Some(("role", "edge"))), &node(&[], None)));
        assert!(eligible(
            &ds(Some(("role", "edge"))),
            &node(&[("role", "edge")], None)
        ));
        assert!(!eligible(&ds(None), &node(&[], Some("dedicated"))));
        // Daemon pods tolerate cordoned and pressured nodes.
        assert!(eligible(
            &ds(None),
            &node(&[], Some("node.kubernetes.io/unschedulable"))
        ));
    }
}
