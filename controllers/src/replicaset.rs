//! ReplicaSet controller: keeps `spec.replicas` active pods, adopting matching orphans and
//! releasing owned pods that stop matching, and reports replicas / ready / available counts.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::runtime::{Ctx, Error, pod_seen, tolerate};
use crate::util;

/// How many pod creates or deletes one reconcile issues concurrently.
const BURST: usize = 64;

pub async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if util::terminating(&rs.metadata) {
        return Ok(Action::await_change());
    }
    let ns = rs.namespace().unwrap_or_default();
    let uid = util::uid(&rs.metadata).to_string();
    let Some(spec) = rs.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let pods_api: Api<Pod> = ctx.api(&ns);
    let owned = claim_pods(&ctx, rs.as_ref(), &spec.selector, &pods_api).await?;
    let now = util::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let active: Vec<&Arc<Pod>> = owned.iter().filter(|p| util::pod_active(p)).collect();
    let want = usize::try_from(spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);

    if ctx
        .expectations
        .satisfied(&uid, pod_seen(&ctx.stores.pods, &ns))
    {
        if active.len() < want {
            let template = spec.template.clone().unwrap_or_default();
            create_pods(&ctx, rs.as_ref(), &template, want - active.len()).await?;
        } else if active.len() > want {
            let mut victims = active.clone();
            victims.sort_by_key(|p| deletion_rank(p));
            let victims: Vec<Arc<Pod>> = victims
                .into_iter()
                .take(active.len() - want)
                .cloned()
                .collect();
            delete_pods(&ctx, rs.as_ref(), &victims).await?;
        }
    }

    let replicas = i32::try_from(active.len()).unwrap_or(i32::MAX);
    let tmpl_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let status = ReplicaSetStatus {
        replicas,
        fully_labeled_replicas: Some(count(&|p| {
            util::map_matches(&tmpl_labels, p.metadata.labels.as_ref())
        })),
        ready_replicas: Some(count(&util::pod_ready)),
        available_replicas: Some(count(&|p| util::pod_available(p, min_ready, now))),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    if rs.status.as_ref() != Some(&status) {
        ctx.patch_status::<ReplicaSet>(&ns, &rs.name_any(), &status)
            .await?;
    }
    // Pods that are ready but not yet available need another look when they become so.
    let next = active
        .iter()
        .filter_map(|p| util::seconds_until_available(p, min_ready, now))
        .min();
    Ok(match next {
        Some(s) => Action::requeue(Duration::from_secs(u64::try_from(s).unwrap_or(1) + 1)),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

/// Pods that `owner` controls after adopting matching orphans and releasing owned pods that no
/// longer match its selector (both written through the API).
pub async fn claim_pods<K: Resource<DynamicType = ()>>(
    ctx: &Ctx,
    owner: &K,
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    pods_api: &Api<Pod>,
) -> Result<Vec<Arc<Pod>>, Error> {
    let ns = owner.meta().namespace.clone().unwrap_or_default();
    let uid = util::uid(owner.meta()).to_string();
    let mut owned = Vec::new();
    for pod in ctx.pods_in(&ns) {
        let matches = !util::selector_is_empty(selector)
            && util::selector_matches(selector, pod.metadata.labels.as_ref());
        match util::controller_of(&pod.metadata) {
            Some(r) if r.uid == uid => {
                if matches {
                    owned.push(pod);
                } else if !util::terminating(&pod.metadata) {
                    release(pods_api, &pod, &uid).await?;
                }
            }
            None if matches
                && !util::terminating(&pod.metadata)
                && !util::terminating(owner.meta()) =>
            {
                let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
                refs.push(util::owner_ref(owner));
                let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": pod.metadata.resource_version}});
                let r = pods_api
                    .patch(
                        &pod.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(patch),
                    )
                    .await;
                match r {
                    Ok(p) => owned.push(Arc::new(p)),
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            _ => {}
        }
    }
    Ok(owned)
}

async fn release(pods_api: &Api<Pod>, pod: &Pod, uid: &str) -> Result<(), Error> {
    let refs: Vec<OwnerReference> = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != uid)
        .cloned()
        .collect();
    let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": pod.metadata.resource_version}});
    let r = pods_api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .map(|_| ())
        .map_err(Error::from);
    tolerate(r, &[404, 409])
}

/// Pods to delete first sort first: unassigned, pending, not ready, then the newest.
fn deletion_rank(p: &Pod) -> (u8, u8, u8, std::cmp::Reverse<i64>) {
    let unassigned = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none();
    let phase = match util::pod_phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    let created = p
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second());
    (
        u8::from(!unassigned),
        phase,
        u8::from(util::pod_ready(p)),
        std::cmp::Reverse(created),
    )
}

/// A pod for `owner` from `template`.
pub fn pod_from_template<K: Resource<DynamicType = ()>>(
    owner: &K,
    template: &PodTemplateSpec,
    name: Option<String>,
    generate_name: Option<String>,
) -> Pod {
    let tm = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name,
            generate_name,
            namespace: owner.meta().namespace.clone(),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![util::owner_ref(owner)]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

async fn create_pods(
    ctx: &Ctx,
    rs: &ReplicaSet,
    template: &PodTemplateSpec,
    n: usize,
) -> Result<(), Error> {
    let ns = rs.namespace().unwrap_or_default();
    let uid = util::uid(&rs.metadata).to_string();
    let api: Api<Pod> = ctx.api(&ns);
    let prefix = format!("{}-", rs.name_any());
    let results: Vec<Result<(), Error>> = futures::stream::iter(0..n)
        .map(|_| {
            let pod = pod_from_template(rs, template, None, Some(prefix.clone()));
            let api = api.clone();
            let uid = uid.clone();
            async move {
                let created = api.create(&PostParams::default(), &pod).await?;
                let name = created.name_any();
                ctx.expectations.expect_create(&uid, name.clone());
                ctx.events.publish(
                    rs,
                    false,
                    "SuccessfulCreate",
                    format!("Created pod: {name}"),
                );
                Ok(())
            }
        })
        .buffer_unordered(BURST)
        .collect()
        .await;
    first_error(results)
}

async fn delete_pods(ctx: &Ctx, rs: &ReplicaSet, pods: &[Arc<Pod>]) -> Result<(), Error> {
    let ns = rs.namespace().unwrap_or_default();
    let uid = util::uid(&rs.metadata).to_string();
    let api: Api<Pod> = ctx.api(&ns);
    let results: Vec<Result<(), Error>> = futures::stream::iter(pods.iter().cloned())
        .map(|pod| {
            let api = api.clone();
            let uid = uid.clone();
            async move {
                let name = pod.name_any();
                ctx.expectations.expect_delete(&uid, name.clone());
                let r = api
                    .delete(&name, &DeleteParams::default())
                    .await
                    .map(|_| ())
                    .map_err(Error::from);
                tolerate(r, &[404])?;
                ctx.events.publish(
                    rs,
                    false,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                );
                Ok(())
            }
        })
        .buffer_unordered(BURST)
        .collect()
        .await;
    first_error(results)
}

pub fn first_error(results: Vec<Result<(), Error>>) -> Result<(), Error> {
    results.into_iter().collect()
}
