//! StatefulSet controller: pods `{set}-{ordinal}` with stable names and hostnames, created in
//! order (OrderedReady waits for each to be Running and Ready; Parallel does not), removed from
//! the highest ordinal down, PVCs from `volumeClaimTemplates` (`{claim}-{set}-{ordinal}`),
//! RollingUpdate from the highest ordinal down to `partition`, one pod at a time, with the
//! revision of each pod in its `controller-revision-hash` label.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;

use crate::replicaset::pod_from_template;
use crate::revisions::{self, HASH_LABEL};
use crate::runtime::{Ctx, Error, tolerate};
use crate::util;

fn ordinal(set: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

fn running_ready(p: &Pod) -> bool {
    util::pod_phase(p) == "Running" && util::pod_ready(p) && !util::terminating(&p.metadata)
}

pub async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if util::terminating(&set.metadata) {
        return Ok(Action::await_change());
    }
    let Some(spec) = set.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let ns = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let uid = util::uid(&set.metadata).to_string();
    let pods_api: Api<Pod> = ctx.api(&ns);
    let replicas = spec.replicas.unwrap_or(1);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let status = set.status.clone().unwrap_or_default();

    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    let update_rev = revisions::sync(
        &ctx,
        set.as_ref(),
        &spec.template,
        &selector_labels,
        spec.revision_history_limit.unwrap_or(10),
        &status.current_revision.iter().cloned().collect::<Vec<_>>(),
    )
    .await?;
    let current_rev = status
        .current_revision
        .clone()
        .unwrap_or_else(|| update_rev.clone());

    // Our pods by ordinal.
    let mut pods: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
    for p in ctx.pods_in(&ns) {
        if util::controller_of(&p.metadata).is_some_and(|r| r.uid == uid)
            && let Some(i) = ordinal(&name, &p.name_any())
        {
            pods.insert(i, p);
        }
    }
    let rev_of = |p: &Pod| p.labels().get(HASH_LABEL).cloned().unwrap_or_default();

    // Failed pods are recreated.
    for p in pods.values() {
        if util::pod_phase(p) == "Failed" && !util::terminating(&p.metadata) {
            let r = pods_api
                .delete(&p.name_any(), &DeleteParams::default())
                .await
                .map(|_| ())
                .map_err(Error::from);
            tolerate(r, &[404, 409])?;
        }
    }

    let mut acted = false;
    // Create missing pods in ordinal order.
    for i in 0..replicas {
        match pods.get(&i) {
            Some(p) => {
                if !parallel && !running_ready(p) {
                    acted = true;
                    break;
                }
            }
            None => {
                create_pod(&ctx, &set, i, &update_rev).await?;
                ctx.events.publish(
                    set.as_ref(),
                    false,
                    "SuccessfulCreate",
                    format!("create Pod {name}-{i} in StatefulSet {name} successful"),
                );
                acted = true;
                if !parallel {
                    break;
                }
            }
        }
    }
    // Scale down from the highest ordinal.
    if !acted {
        let extra: Vec<(i32, Arc<Pod>)> = pods
            .iter()
            .rev()
            .filter(|(i, _)| **i >= replicas)
            .map(|(i, p)| (*i, p.clone()))
            .collect();
        for (_, p) in &extra {
            if util::terminating(&p.metadata) {
                acted = true;
                if !parallel {
                    break;
                }
                continue;
            }
            let r = pods_api
                .delete(&p.name_any(), &DeleteParams::default())
                .await
                .map(|_| ())
                .map_err(Error::from);
            tolerate(r, &[404, 409])?;
            ctx.events.publish(
                set.as_ref(),
                false,
                "SuccessfulDelete",
                format!(
                    "delete Pod {} in StatefulSet {name} successful",
                    p.name_any()
                ),
            );
            acted = true;
            if !parallel {
                break;
            }
        }
    }
    // Rolling update: highest ordinal first, down to the partition, one at a time.
    let strategy = spec.update_strategy.as_ref();
    let rolling = strategy
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let partition = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    if !acted && rolling {
        let all_ready = (0..replicas).all(|i| pods.get(&i).is_some_and(|p| running_ready(p)));
        if all_ready
            && let Some((_, p)) = pods
                .iter()
                .rev()
                .find(|(i, p)| **i >= partition && **i < replicas && rev_of(p) != update_rev)
        {
            let r = pods_api
                .delete(&p.name_any(), &DeleteParams::default())
                .await
                .map(|_| ())
                .map_err(Error::from);
            tolerate(r, &[404, 409])?;
        }
    }

    // Status.
    let live: Vec<&Arc<Pod>> = pods
        .values()
        .filter(|p| !util::terminating(&p.metadata))
        .collect();
    let count =
        |f: &dyn Fn(&Pod) -> bool| i32::try_from(live.iter().filter(|p| f(p)).count()).unwrap_or(0);
    let ready = count(&|p| util::pod_ready(p));
    let updated = count(&|p| rev_of(p) == update_rev);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = util::now();
    let all_updated = updated == replicas
        && ready == replicas
        && live.len() == usize::try_from(replicas).unwrap_or(0);
    let current_rev = if all_updated {
        update_rev.clone()
    } else {
        current_rev
    };
    let new_status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas: i32::try_from(live.len()).unwrap_or(0),
        ready_replicas: Some(ready),
        available_replicas: Some(count(&|p| util::pod_available(p, min_ready, now))),
        current_replicas: Some(count(&|p| rev_of(p) == current_rev)),
        updated_replicas: Some(updated),
        current_revision: Some(current_rev),
        update_revision: Some(update_rev),
        collision_count: Some(status.collision_count.unwrap_or(0)),
        conditions: status.conditions.clone(),
    };
    if set.status.as_ref() != Some(&new_status) {
        ctx.patch_status::<StatefulSet>(&ns, &name, &new_status)
            .await?;
    }
    Ok(if acted {
        Action::requeue(Duration::from_secs(1))
    } else {
        Action::requeue(Duration::from_secs(300))
    })
}

async fn create_pod(ctx: &Ctx, set: &StatefulSet, i: i32, revision: &str) -> Result<(), Error> {
    let spec = set.spec.clone().unwrap_or_default();
    let ns = set.namespace().unwrap_or_default();
    let set_name = set.name_any();
    let pod_name = format!("{set_name}-{i}");
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    // Claims first, so the pod finds its volumes.
    let mut volumes: Vec<Volume> = Vec::new();
    for claim in spec.volume_claim_templates.iter().flatten() {
        let claim_name = format!(
            "{}-{pod_name}",
            claim.metadata.name.as_deref().unwrap_or("")
        );
        let mut labels = claim.metadata.labels.clone().unwrap_or_default();
        labels.extend(selector_labels.clone());
        let pvc = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(claim_name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(labels),
                annotations: claim.metadata.annotations.clone(),
                ..ObjectMeta::default()
            },
            spec: claim.spec.clone(),
            status: None,
        };
        let api: Api<PersistentVolumeClaim> = ctx.api(&ns);
        match api.create(&PostParams::default(), &pvc).await {
            Ok(_) => ctx.events.publish(
                set,
                false,
                "SuccessfulCreate",
                format!(
                    "create Claim {claim_name} Pod {pod_name} in StatefulSet {set_name} success"
                ),
            ),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        volumes.push(Volume {
            name: claim.metadata.name.clone().unwrap_or_default(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name,
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    let mut pod = pod_from_template(set, &spec.template, Some(pod_name.clone()), None);
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(HASH_LABEL.into(), revision.to_string());
    labels.insert(
        "statefulset.kubernetes.io/pod-name".into(),
        pod_name.clone(),
    );
    labels.insert("apps.kubernetes.io/pod-index".into(), i.to_string());
    if let Some(ps) = pod.spec.as_mut() {
        ps.hostname = Some(pod_name.clone());
        if !spec.service_name.as_deref().unwrap_or("").is_empty() {
            ps.subdomain = spec.service_name.clone();
        }
        let existing = ps.volumes.get_or_insert_with(Vec::new);
        for v in volumes {
            if !existing.iter().any(|e| e.name == v.name) {
                existing.push(v);
            }
        }
    }
    let api: Api<Pod> = ctx.api(&ns);
    match api.create(&PostParams::default(), &pod).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::ordinal;

    #[test]
    fn ordinals_parse_from_names() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "webx-1"), None);
        assert_eq!(ordinal("web", "web-a"), None);
    }
}
