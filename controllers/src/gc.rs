//! Garbage collector: ownerReferences-based cascading deletion.
//!
//! - background: an object all of whose owners are gone (checked against the API, not only the
//!   cache) is deleted; owner references to owners that are gone are dropped;
//! - foreground: an owner with the `foregroundDeletion` finalizer has its dependents deleted
//!   (themselves in the foreground), and loses the finalizer once none remain;
//! - orphan: an owner with the `orphan` finalizer has its references removed from its
//!   dependents, then loses the finalizer.
//!
//! It sweeps the informer caches of the kinds controllers create (pods, ReplicaSets,
//! Deployments, StatefulSets, DaemonSets, Jobs, CronJobs, ControllerRevisions, Services) once a
//! second; the sweep is in memory, and only objects that need action cost API requests.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use kube::discovery::ApiResource;
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use serde_json::json;

use crate::runtime::Ctx;
use crate::util;

const PERIOD: Duration = Duration::from_secs(1);

/// One object in the graph.
struct Item {
    res: ApiResource,
    meta: ObjectMeta,
}

fn resource(api_version: &str, kind: &str) -> Option<ApiResource> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let plural = match (group, kind) {
        ("", "Pod") => "pods",
        ("", "Service") => "services",
        ("", "ConfigMap") => "configmaps",
        ("", "Secret") => "secrets",
        ("", "PersistentVolumeClaim") => "persistentvolumeclaims",
        ("", "Node") => "nodes",
        ("", "Namespace") => "namespaces",
        ("apps", "ReplicaSet") => "replicasets",
        ("apps", "Deployment") => "deployments",
        ("apps", "StatefulSet") => "statefulsets",
        ("apps", "DaemonSet") => "daemonsets",
        ("apps", "ControllerRevision") => "controllerrevisions",
        ("batch", "Job") => "jobs",
        ("batch", "CronJob") => "cronjobs",
        ("discovery.k8s.io", "EndpointSlice") => "endpointslices",
        _ => return None,
    };
    Some(ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    })
}

fn collect<K>(store: &Store<K>, out: &mut Vec<Item>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let res = ApiResource::erase::<K>(&());
    for obj in store.state() {
        out.push(Item {
            res: res.clone(),
            meta: obj.meta().clone(),
        });
    }
}

fn api_for(client: &Client, res: &ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) if !ns.is_empty() => Api::namespaced_with(client.clone(), ns, res),
        _ => Api::all_with(client.clone(), res),
    }
}

pub async fn run(ctx: Arc<Ctx>) {
    loop {
        tokio::time::sleep(PERIOD).await;
        sweep(&ctx).await;
    }
}

async fn sweep(ctx: &Ctx) {
    let s = &ctx.stores;
    let mut items = Vec::new();
    collect(&s.pods, &mut items);
    collect(&s.replicasets, &mut items);
    collect(&s.deployments, &mut items);
    collect(&s.statefulsets, &mut items);
    collect(&s.daemonsets, &mut items);
    collect(&s.jobs, &mut items);
    collect(&s.cronjobs, &mut items);
    collect(&s.revisions, &mut items);
    collect(&s.services, &mut items);
    collect(&s.nodes, &mut items);
    let uids: HashSet<&str> = items.iter().map(|i| util::uid(&i.meta)).collect();
    let mut dependents: HashMap<&str, Vec<&Item>> = HashMap::new();
    for item in &items {
        for r in item.meta.owner_references.iter().flatten() {
            dependents.entry(r.uid.as_str()).or_default().push(item);
        }
    }
    for item in &items {
        let fins = item.meta.finalizers.as_deref().unwrap_or(&[]);
        if util::terminating(&item.meta) {
            let uid = util::uid(&item.meta);
            let deps = dependents.get(uid).map(Vec::as_slice).unwrap_or(&[]);
            if fins.iter().any(|f| f == "orphan") {
                orphan(ctx, item, deps).await;
            } else if fins.iter().any(|f| f == "foregroundDeletion") {
                foreground(ctx, item, deps).await;
            }
            continue;
        }
        let refs = item.meta.owner_references.as_deref().unwrap_or(&[]);
        if refs.is_empty() || refs.iter().any(|r| uids.contains(r.uid.as_str())) {
            // An owner we know of still exists (or this object has no owners).
            if !refs.is_empty() && refs.iter().any(|r| !uids.contains(r.uid.as_str())) {
                drop_dangling(ctx, item, refs).await;
            }
            continue;
        }
        background(ctx, item, refs).await;
    }
}

/// Whether the owner still exists, asked of the API (the cache may lag behind a create).
async fn owner_exists(client: &Client, ns: Option<&str>, r: &OwnerReference) -> bool {
    let Some(res) = resource(&r.api_version, &r.kind) else {
        return true; // a kind we do not track: leave its dependents alone
    };
    let namespaced = !matches!(r.kind.as_str(), "Node" | "Namespace");
    let api = api_for(client, &res, if namespaced { ns } else { None });
    match api.get_opt(&r.name).await {
        Ok(Some(o)) => o.metadata.uid.as_deref() == Some(r.uid.as_str()),
        Ok(None) => false,
        Err(_) => true,
    }
}

async fn background(ctx: &Ctx, item: &Item, refs: &[OwnerReference]) {
    let ns = item.meta.namespace.as_deref();
    for r in refs {
        if owner_exists(&ctx.client, ns, r).await {
            return;
        }
    }
    let api = api_for(&ctx.client, &item.res, ns);
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(kube::api::Preconditions {
            uid: item.meta.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(util::name(&item.meta), &dp).await {
        Ok(_) => {
            tracing::debug!(kind = %item.res.kind, name = util::name(&item.meta), "garbage collected")
        }
        Err(e) => tracing::debug!(error = %e, "garbage collection delete failed"),
    }
}

async fn drop_dangling(ctx: &Ctx, item: &Item, refs: &[OwnerReference]) {
    let ns = item.meta.namespace.as_deref();
    let mut keep = Vec::new();
    let mut changed = false;
    for r in refs {
        if owner_exists(&ctx.client, ns, r).await {
            keep.push(r.clone());
        } else {
            changed = true;
        }
    }
    if changed {
        patch_meta(ctx, item, json!({"ownerReferences": keep})).await;
    }
}

async fn orphan(ctx: &Ctx, owner: &Item, deps: &[&Item]) {
    let uid = util::uid(&owner.meta);
    for d in deps {
        let refs: Vec<OwnerReference> = d
            .meta
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.uid != uid)
            .cloned()
            .collect();
        patch_meta(ctx, d, json!({"ownerReferences": refs})).await;
    }
    remove_finalizer(ctx, owner, "orphan").await;
}

async fn foreground(ctx: &Ctx, owner: &Item, deps: &[&Item]) {
    if deps.is_empty() {
        remove_finalizer(ctx, owner, "foregroundDeletion").await;
        return;
    }
    for d in deps.iter().filter(|d| !util::terminating(&d.meta)) {
        let api = api_for(&ctx.client, &d.res, d.meta.namespace.as_deref());
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..DeleteParams::default()
        };
        if let Err(e) = api.delete(util::name(&d.meta), &dp).await {
            tracing::debug!(error = %e, "foreground delete of a dependent failed");
        }
    }
}

async fn remove_finalizer(ctx: &Ctx, item: &Item, finalizer: &str) {
    let fins: Vec<&String> = item
        .meta
        .finalizers
        .iter()
        .flatten()
        .filter(|f| f.as_str() != finalizer)
        .collect();
    patch_meta(ctx, item, json!({"finalizers": fins})).await;
}

async fn patch_meta(ctx: &Ctx, item: &Item, mut meta: serde_json::Value) {
    meta["resourceVersion"] = json!(item.meta.resource_version);
    let api = api_for(&ctx.client, &item.res, item.meta.namespace.as_deref());
    let r = api
        .patch(
            util::name(&item.meta),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": meta})),
        )
        .await;
    if let Err(e) = r {
        tracing::debug!(kind = %item.res.kind, name = util::name(&item.meta), error = %e, "garbage collector patch failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_owner_kinds() {
        let r = resource("apps/v1", "ReplicaSet").unwrap();
        assert_eq!(
            (r.group.as_str(), r.version.as_str(), r.plural.as_str()),
            ("apps", "v1", "replicasets")
        );
        assert_eq!(resource("v1", "Pod").unwrap().group, "");
        assert!(resource("example.com/v1", "Widget").is_none());
    }
}
