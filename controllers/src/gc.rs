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
//! second; the sweep is in memory, and only objects that need action cost API requests. Every
//! other kind the API serves (found through discovery: ConfigMaps, Secrets, custom resources...)
//! is listed as metadata only, every few seconds, so ownerReferences to and from any kind work;
//! Events are ignored, as kube-controller-manager ignores them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PropagationPolicy,
};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use serde_json::json;

use crate::runtime::Ctx;
use crate::util;

const PERIOD: Duration = Duration::from_secs(1);
/// How often the kinds without an informer are listed.
const UNCACHED_PERIOD: Duration = Duration::from_secs(5);
/// How often the served kinds are rediscovered (custom resources come and go).
const DISCOVERY_PERIOD: Duration = Duration::from_secs(60);

/// Kinds the sweep takes from the informer caches, as (group, kind).
const CACHED: [(&str, &str); 10] = [
    ("", "Pod"),
    ("apps", "ReplicaSet"),
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("batch", "Job"),
    ("batch", "CronJob"),
    ("apps", "ControllerRevision"),
    ("", "Service"),
    ("", "Node"),
];

/// A served kind: how to reach it and whether it lives in namespaces.
#[derive(Clone)]
struct Kind {
    res: ApiResource,
    namespaced: bool,
}

/// What the collector learnt from discovery, and the last listing of uncached kinds.
#[derive(Default)]
struct Known {
    /// (apiVersion, kind) -> kind, for every served kind that can be listed and deleted.
    kinds: HashMap<(String, String), Kind>,
    discovered_at: Option<Instant>,
    uncached: Vec<Item>,
    listed_at: Option<Instant>,
}

/// Whether a discovered kind is one the collector should list itself.
fn wants_listing(group: &str, kind: &str) -> bool {
    !CACHED.contains(&(group, kind))
        && !(kind == "Event" && (group.is_empty() || group == "events.k8s.io"))
}

impl Known {
    async fn refresh(&mut self, client: &Client) {
        if self
            .discovered_at
            .is_none_or(|t| t.elapsed() >= DISCOVERY_PERIOD)
        {
            match Discovery::new(client.clone()).run().await {
                Ok(d) => {
                    self.kinds.clear();
                    for g in d.groups() {
                        for (res, caps) in g.recommended_resources() {
                            if caps.supports_operation(verbs::LIST)
                                && caps.supports_operation(verbs::DELETE)
                            {
                                let key = (res.api_version.clone(), res.kind.clone());
                                let namespaced = matches!(caps.scope, Scope::Namespaced);
                                self.kinds.insert(key, Kind { res, namespaced });
                            }
                        }
                    }
                    self.discovered_at = Some(Instant::now());
                }
                Err(e) => tracing::debug!(error = %e, "garbage collector discovery failed"),
            }
        }
        if self
            .listed_at
            .is_some_and(|t| t.elapsed() < UNCACHED_PERIOD)
        {
            return;
        }
        let mut items = Vec::new();
        for kind in self.kinds.values() {
            if !wants_listing(&kind.res.group, &kind.res.kind) {
                continue;
            }
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.res);
            match api.list_metadata(&ListParams::default()).await {
                Ok(list) => {
                    let res = Arc::new(kind.res.clone());
                    items.extend(list.items.into_iter().map(|mut o| {
                        o.metadata.managed_fields = None;
                        Item {
                            res: res.clone(),
                            obj: Arc::new(Listed(o.metadata)),
                        }
                    }));
                }
                Err(e) => {
                    tracing::debug!(kind = %kind.res.kind, error = %e, "garbage collector list failed");
                }
            }
        }
        self.uncached = items;
        self.listed_at = Some(Instant::now());
    }

    /// How to reach an owner: the built-in table first, then what discovery found.
    fn resolve(&self, api_version: &str, kind: &str) -> Option<Kind> {
        if let Some(k) = self.kinds.get(&(api_version.to_string(), kind.to_string())) {
            return Some(k.clone());
        }
        let res = resource(api_version, kind)?;
        let namespaced = !matches!(kind, "Node" | "Namespace");
        Some(Kind { res, namespaced })
    }
}

/// One object in the graph.
struct Item {
    res: Arc<ApiResource>,
    obj: Arc<dyn HasMeta>,
}

impl Item {
    fn meta(&self) -> &ObjectMeta {
        self.obj.object_meta()
    }
}

/// Anything with object metadata: a cached object (shared with the informer, not copied: a
/// sweep over 50,000 pods a second must not clone them) or a listed object's metadata.
trait HasMeta: Send + Sync {
    fn object_meta(&self) -> &ObjectMeta;
}

struct Cached<K>(Arc<K>);

impl<K: Resource + Send + Sync> HasMeta for Cached<K> {
    fn object_meta(&self) -> &ObjectMeta {
        self.0.meta()
    }
}

struct Listed(ObjectMeta);

impl HasMeta for Listed {
    fn object_meta(&self) -> &ObjectMeta {
        &self.0
    }
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
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let res = Arc::new(ApiResource::erase::<K>(&()));
    for obj in store.state() {
        out.push(Item {
            res: res.clone(),
            obj: Arc::new(Cached(obj)),
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
    let mut known = Known::default();
    loop {
        tokio::time::sleep(PERIOD).await;
        known.refresh(&ctx.client).await;
        sweep(&ctx, &known).await;
    }
}

async fn sweep(ctx: &Ctx, known: &Known) {
    let s = &ctx.stores;
    let mut items: Vec<Item> = Vec::new();
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
    let cached = items.len();
    let items: Vec<&Item> = items.iter().chain(known.uncached.iter()).collect();
    let uids: HashSet<&str> = items.iter().map(|i| util::uid(i.meta())).collect();
    let mut dependents: HashMap<&str, Vec<&Item>> = HashMap::new();
    for &item in &items {
        for r in item.meta().owner_references.iter().flatten() {
            dependents.entry(r.uid.as_str()).or_default().push(item);
        }
    }
    for (i, &item) in items.iter().enumerate() {
        let fins = item.meta().finalizers.as_deref().unwrap_or(&[]);
        if util::terminating(item.meta()) {
            let uid = util::uid(item.meta());
            let deps = dependents.get(uid).map(Vec::as_slice).unwrap_or(&[]);
            // A listing of an uncached kind can be seconds old: its dependents are current,
            // but the owner itself may have moved on (finalizer already removed).
            if i >= cached && !known.is_fresh() {
                continue;
            }
            if fins.iter().any(|f| f == "orphan") {
                orphan(ctx, item, deps).await;
            } else if fins.iter().any(|f| f == "foregroundDeletion") {
                foreground(ctx, item, deps).await;
            }
            continue;
        }
        let refs = item.meta().owner_references.as_deref().unwrap_or(&[]);
        if refs.is_empty() || refs.iter().any(|r| uids.contains(r.uid.as_str())) {
            // An owner we know of still exists (or this object has no owners).
            if !refs.is_empty() && refs.iter().any(|r| !uids.contains(r.uid.as_str())) {
                drop_dangling(ctx, known, item, refs).await;
            }
            continue;
        }
        background(ctx, known, item, refs).await;
    }
}

impl Known {
    /// Whether the uncached listing was taken in this very sweep round.
    fn is_fresh(&self) -> bool {
        self.listed_at.is_some_and(|t| t.elapsed() < PERIOD)
    }
}

/// Whether the owner still exists, asked of the API (the cache may lag behind a create).
async fn owner_exists(
    client: &Client,
    known: &Known,
    ns: Option<&str>,
    r: &OwnerReference,
) -> bool {
    let Some(kind) = known.resolve(&r.api_version, &r.kind) else {
        return true; // a kind the API does not serve: leave its dependents alone
    };
    let api = api_for(client, &kind.res, if kind.namespaced { ns } else { None });
    match api.get_opt(&r.name).await {
        Ok(Some(o)) => o.metadata.uid.as_deref() == Some(r.uid.as_str()),
        Ok(None) => false,
        Err(_) => true,
    }
}

async fn background(ctx: &Ctx, known: &Known, item: &Item, refs: &[OwnerReference]) {
    let ns = item.meta().namespace.as_deref();
    for r in refs {
        if owner_exists(&ctx.client, known, ns, r).await {
            return;
        }
    }
    let api = api_for(&ctx.client, &item.res, ns);
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(kube::api::Preconditions {
            uid: item.meta().uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(util::name(item.meta()), &dp).await {
        Ok(_) => {
            tracing::debug!(kind = %item.res.kind, name = util::name(item.meta()), "garbage collected")
        }
        Err(e) => tracing::debug!(error = %e, "garbage collection delete failed"),
    }
}

async fn drop_dangling(ctx: &Ctx, known: &Known, item: &Item, refs: &[OwnerReference]) {
    let ns = item.meta().namespace.as_deref();
    let mut keep = Vec::new();
    let mut changed = false;
    for r in refs {
        if owner_exists(&ctx.client, known, ns, r).await {
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
    let uid = util::uid(owner.meta());
    for d in deps {
        let refs: Vec<OwnerReference> = d
            .meta()
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
    for d in deps.iter().filter(|d| !util::terminating(d.meta())) {
        let api = api_for(&ctx.client, &d.res, d.meta().namespace.as_deref());
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..DeleteParams::default()
        };
        if let Err(e) = api.delete(util::name(d.meta()), &dp).await {
            tracing::debug!(error = %e, "foreground delete of a dependent failed");
        }
    }
}

async fn remove_finalizer(ctx: &Ctx, item: &Item, finalizer: &str) {
    let fins: Vec<&String> = item
        .meta()
        .finalizers
        .iter()
        .flatten()
        .filter(|f| f.as_str() != finalizer)
        .collect();
    patch_meta(ctx, item, json!({"finalizers": fins})).await;
}

async fn patch_meta(ctx: &Ctx, item: &Item, mut meta: serde_json::Value) {
    meta["resourceVersion"] = json!(item.meta().resource_version);
    let api = api_for(&ctx.client, &item.res, item.meta().namespace.as_deref());
    let r = api
        .patch(
            util::name(item.meta()),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": meta})),
        )
        .await;
    if let Err(e) = r {
        tracing::debug!(kind = %item.res.kind, name = util::name(item.meta()), error = %e, "garbage collector patch failed");
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

    #[test]
    fn lists_every_kind_but_the_cached_ones_and_events() {
        assert!(wants_listing("", "ConfigMap"));
        assert!(wants_listing("example.com", "Widget"));
        assert!(!wants_listing("apps", "ReplicaSet"));
        assert!(!wants_listing("", "Pod"));
        assert!(!wants_listing("", "Event"));
        assert!(!wants_listing("events.k8s.io", "Event"));
    }

    #[test]
    fn discovered_kinds_resolve_owners_of_any_kind() {
        let mut known = Known::default();
        assert!(known.resolve("example.com/v1", "Widget").is_none());
        let res = ApiResource {
            group: "example.com".into(),
            version: "v1".into(),
            api_version: "example.com/v1".into(),
            kind: "Widget".into(),
            plural: "widgets".into(),
        };
        known.kinds.insert(
            ("example.com/v1".into(), "Widget".into()),
            Kind {
                res,
                namespaced: false,
            },
        );
        let k = known.resolve("example.com/v1", "Widget").unwrap();
        assert_eq!(k.res.plural, "widgets");
        assert!(!k.namespaced);
        assert!(
            known
                .resolve("v1", "Namespace")
                .is_some_and(|k| !k.namespaced)
        );
    }
}
