//! The controller runtime in the kube-rs shape.
//!
//! - [`Shared`]: a shared informer (kube-runtime watcher + reflector store, re-listing on 410,
//!   with a broadcast of changed objects that several controllers subscribe to).
//! - [`Ctx`]: what every reconcile function sees: the client, the informer caches, the event
//!   recorder, expectations and the per-object failure counts of the retry policy.
//! - [`run`]: drives a `kube_runtime::Controller` (its work queue dedupes keys and never runs two
//!   reconciles of one object at once) with rate-limited retries: a failing object is requeued
//!   after an exponential backoff that resets when it next succeeds.
//! - [`Expectations`]: creates and deletes a controller made but has not seen in its cache yet,
//!   so a reconcile that runs on a stale cache does not create or delete twice.
//! - [`Recorder`]: core/v1 Events, aggregated (count, lastTimestamp) like client-go's recorder.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Event, EventSource, Namespace, Node, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::manager::Options;
use crate::util;

/// Why a reconcile failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("api request failed")]
    Kube(#[from] kube::Error),
    #[error("client configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// The HTTP status of an API error response, if this is one.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Kube(kube::Error::Api(s)) => Some(s.code),
            _ => None,
        }
    }
}

/// Ignore "not found" (already gone) and "conflict" (someone else changed it; the watch will
/// bring us back) where a controller's write is best-effort.
pub fn tolerate(r: Result<(), Error>, codes: &[u16]) -> Result<(), Error> {
    match r {
        Err(e) if e.code().is_some_and(|c| codes.contains(&c)) => Ok(()),
        other => other,
    }
}

/// One shared informer: a cache plus a stream of changed objects per subscriber.
///
/// kube-runtime's own shared reflector hands subscribers object references that they look up
/// in the cache; a reference to an object deleted meanwhile stalls that subscriber, and deletes
/// never reach owners. This one sends the objects themselves, deletions included, after the
/// cache has them.
pub struct Shared<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    pub store: Store<K>,
    writer: Writer<K>,
    subscribers: Vec<mpsc::UnboundedSender<Arc<K>>>,
}

impl<K> Shared<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub fn new() -> Self {
        let (store, writer) = reflector::store();
        Self {
            store,
            writer,
            subscribers: Vec::new(),
        }
    }

    /// A new stream of changed (and deleted) objects.
    pub fn subscribe(&mut self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.push(tx);
        UnboundedReceiverStream::new(rx)
    }

    /// Start list+watch into the cache (re-listing after errors such as 410 Gone); returns the
    /// task driving it.
    pub fn spawn(self, api: Api<K>, cfg: watcher::Config) -> tokio::task::JoinHandle<()> {
        let kind = K::kind(&()).into_owned();
        let Self {
            mut writer,
            subscribers,
            ..
        } = self;
        let reader = writer.as_reader();
        tokio::spawn(async move {
            let mut stream = watcher(api, cfg)
                .modify(strip_for_cache)
                .default_backoff()
                .boxed();
            while let Some(ev) = stream.next().await {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::debug!(%kind, error = %e, "watch failed; re-listing");
                        continue;
                    }
                };
                writer.apply_watcher_event(&ev);
                let changed = match ev {
                    // Hand out the cache's own copy rather than a second one.
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) => Some(
                        reader
                            .get(&reflector::ObjectRef::from_obj(&o))
                            .unwrap_or_else(|| Arc::new(o)),
                    ),
                    watcher::Event::Delete(o) => Some(Arc::new(o)),
                    _ => None,
                };
                if let Some(o) = changed {
                    for s in &subscribers {
                        let _ = s.send(o.clone());
                    }
                }
            }
        })
    }
}

/// What the caches keep of an object: everything but `managedFields`, which no controller
/// reads and which is often the biggest part of an object (kube-controller-manager's informers
/// drop it too).
pub fn strip_for_cache<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// The caches every controller reads.
#[derive(Clone)]
pub struct Stores {
    pub pods: Store<Pod>,
    pub replicasets: Store<ReplicaSet>,
    pub deployments: Store<Deployment>,
    pub statefulsets: Store<StatefulSet>,
    pub daemonsets: Store<DaemonSet>,
    pub jobs: Store<Job>,
    pub cronjobs: Store<CronJob>,
    pub revisions: Store<ControllerRevision>,
    pub nodes: Store<Node>,
    pub leases: Store<Lease>,
    pub services: Store<Service>,
    pub namespaces: Store<Namespace>,
}

/// Shared state of all controllers.
pub struct Ctx {
    pub client: Client,
    pub opts: Options,
    pub stores: Stores,
    pub events: Recorder,
    pub expectations: Expectations,
    failures: Mutex<HashMap<String, u32>>,
}

impl Ctx {
    pub fn new(client: Client, opts: Options, stores: Stores) -> Self {
        Self {
            events: Recorder::new(client.clone(), "controller-manager"),
            client,
            opts,
            stores,
            expectations: Expectations::default(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Merge-patch `status` onto a namespaced object's status subresource; an object deleted
    /// meanwhile is not an error.
    pub async fn patch_status<K>(
        &self,
        ns: &str,
        name: &str,
        status: &impl serde::Serialize,
    ) -> Result<(), Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api: Api<K> = self.api(ns);
        let r = api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "status": status })),
            )
            .await
            .map(|_| ())
            .map_err(Error::from);
        tolerate(r, &[404])
    }

    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), ns)
    }

    fn failed(&self, key: &str) -> u32 {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(key.to_string()).or_insert(0);
        *n += 1;
        *n
    }

    fn succeeded(&self, key: &str) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.remove(key);
    }

    /// Pods in `ns` from the cache.
    pub fn pods_in(&self, ns: &str) -> Vec<Arc<Pod>> {
        self.stores
            .pods
            .state_filter(|p| p.metadata.namespace.as_deref() == Some(ns))
    }
}

fn key_of<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// Drive `controller` with `reconcile` until the stream ends.
pub async fn run<K, F, Fut>(
    name: &'static str,
    controller: Controller<K>,
    ctx: Arc<Ctx>,
    reconcile: F,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let reconcile = Arc::new(reconcile);
    controller
        .run(
            move |obj: Arc<K>, ctx: Arc<Ctx>| {
                let key = key_of(obj.as_ref());
                let fut = reconcile(obj, ctx.clone());
                async move {
                    let r = fut.await;
                    if r.is_ok() {
                        ctx.succeeded(&key);
                    }
                    r
                }
            },
            move |obj: Arc<K>, err: &Error, ctx: Arc<Ctx>| {
                let key = key_of(obj.as_ref());
                let n = ctx.failed(&key);
                if err.code() == Some(409) {
                    tracing::debug!(controller = name, %key, "conflict; retrying");
                } else {
                    tracing::info!(controller = name, %key, error = %error_chain(err), attempt = n, "reconcile failed; retrying");
                }
                Action::requeue(util::backoff(n, Duration::from_secs(30)))
            },
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[derive(Default)]
struct Expect {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    at: Option<Instant>,
}

/// Pending creates/deletes per controller object (by uid), checked against the pod cache.
#[derive(Default)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Expect>>,
}

const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(10);

impl Expectations {
    pub fn expect_create(&self, owner: &str, pod: String) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(owner.to_string()).or_default();
        e.creates.insert(pod);
        e.at = Some(Instant::now());
    }

    pub fn expect_delete(&self, owner: &str, pod: String) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(owner.to_string()).or_default();
        e.deletes.insert(pod);
        e.at = Some(Instant::now());
    }

    /// True when the cache has caught up with everything `owner` did (or it waited too long).
    /// `seen(name)` says whether the pod is in the cache and not being deleted.
    pub fn satisfied(&self, owner: &str, seen: impl Fn(&str) -> (bool, bool)) -> bool {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(e) = m.get_mut(owner) else {
            return true;
        };
        e.creates.retain(|n| !seen(n).0);
        e.deletes.retain(|n| {
            let (present, deleting) = seen(n);
            present && !deleting
        });
        let expired = e.at.is_some_and(|t| t.elapsed() > EXPECTATION_TIMEOUT);
        if (e.creates.is_empty() && e.deletes.is_empty()) || expired {
            m.remove(owner);
            return true;
        }
        false
    }
}

/// Pod cache lookup for [`Expectations::satisfied`]: (present, being deleted).
pub fn pod_seen(store: &Store<Pod>, ns: &str) -> impl Fn(&str) -> (bool, bool) {
    move |name: &str| {
        let r = reflector::ObjectRef::<Pod>::new(name).within(ns);
        match store.get(&r) {
            Some(p) => (true, util::terminating(&p.metadata)),
            None => (false, false),
        }
    }
}

/// Writes core/v1 Events (what `kubectl describe` and `kubectl get events` show).
///
/// Like client-go's broadcaster it never holds its caller up: events are written in the
/// background, at most [`EVENT_WRITERS`] at a time, and dropped when more than
/// [`EVENT_BACKLOG`] are waiting, so a burst of thousands of bindings is not slowed down by its
/// own `Scheduled` events.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: String,
    seen: Arc<Mutex<HashMap<String, (String, i32)>>>,
    writers: Arc<tokio::sync::Semaphore>,
    backlog: Arc<std::sync::atomic::AtomicUsize>,
}

const MAX_TRACKED_EVENTS: usize = 8192;
const EVENT_WRITERS: usize = 32;
const EVENT_BACKLOG: usize = 1000;

impl Recorder {
    pub fn new(client: Client, component: &str) -> Self {
        Self {
            client,
            component: component.to_string(),
            seen: Arc::new(Mutex::new(HashMap::new())),
            writers: Arc::new(tokio::sync::Semaphore::new(EVENT_WRITERS)),
            backlog: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    /// Record an event about `obj` (in the background; events are best-effort).
    pub fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        message: String,
    ) {
        let r = obj.object_ref(&());
        self.publish_ref(r, warning, reason, message);
    }

    pub fn publish_ref(&self, r: ObjectReference, warning: bool, reason: &str, message: String) {
        use std::sync::atomic::Ordering;
        if self.backlog.fetch_add(1, Ordering::Relaxed) >= EVENT_BACKLOG {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(reason, "event dropped: too many waiting");
            return;
        }
        let ns = r.namespace.clone().unwrap_or_else(|| "default".to_string());
        let key = format!(
            "{}/{}/{}/{reason}/{message}",
            r.uid.as_deref().unwrap_or(""),
            ns,
            r.name.as_deref().unwrap_or("")
        );
        let now = util::now();
        let existing = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.len() > MAX_TRACKED_EVENTS {
                seen.clear();
            }
            match seen.get_mut(&key) {
                Some((name, count)) => {
                    *count += 1;
                    Some((name.clone(), *count))
                }
                None => {
                    let name = format!(
                        "{}.{:x}",
                        r.name.as_deref().unwrap_or("event"),
                        now.as_nanosecond()
                    );
                    seen.insert(key, (name.clone(), 1));
                    None
                }
            }
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let component = self.component.clone();
        let reason = reason.to_string();
        let writers = self.writers.clone();
        let backlog = self.backlog.clone();
        tokio::spawn(async move {
            let _permit = writers.acquire().await;
            backlog.fetch_sub(1, Ordering::Relaxed);
            let result = match existing {
                Some((name, count)) => api
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"count": count, "lastTimestamp": util::time(now)})),
                    )
                    .await
                    .map(|_| ()),
                None => {
                    let name = format!(
                        "{}.{:x}",
                        r.name.as_deref().unwrap_or("event"),
                        now.as_nanosecond()
                    );
                    let ev = Event {
                        metadata: ObjectMeta {
                            name: Some(name),
                            namespace: Some(ns.clone()),
                            ..ObjectMeta::default()
                        },
                        involved_object: r,
                        reason: Some(reason),
                        message: Some(message),
                        type_: Some(if warning { "Warning" } else { "Normal" }.to_string()),
                        source: Some(EventSource {
                            component: Some(component.clone()),
                            host: None,
                        }),
                        first_timestamp: Some(util::time(now)),
                        last_timestamp: Some(util::time(now)),
                        count: Some(1),
                        reporting_component: Some(component),
                        reporting_instance: Some(String::new()),
                        ..Event::default()
                    };
                    api.create(&PostParams::default(), &ev).await.map(|_| ())
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "event not recorded");
            }
        });
    }
}
