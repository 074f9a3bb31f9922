//! The controller manager: starts the shared informers, waits for their caches, then runs every
//! controller, all while holding the `kube-system/skiff-controller-manager` Lease.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use kube::Client;
use kube::api::Api;
use kube::runtime::controller::{Config, Controller};
use kube::runtime::watcher;

use crate::leader::LeaderElection;
use crate::runtime::{self, Ctx, Shared, Stores};
use crate::{
    cronjob, daemonset, deployment, endpoints, gc, job, namespace, nodelifecycle, replicaset,
    statefulset,
};

/// Tunables of the controllers (the defaults are Kubernetes' own).
#[derive(Debug, Clone)]
pub struct Options {
    /// A node whose Lease is older than this is NotReady (Unknown). Default 40 s.
    pub node_monitor_grace_period: Duration,
    /// How long pods tolerate an unreachable / not-ready node when they do not say. Default 300 s.
    pub default_toleration_seconds: i64,
    /// First delay before recreating a failed Job pod (doubles per failure, capped at 6 min).
    pub job_backoff: Duration,
    /// Who we are in leader election.
    pub identity: String,
    /// The cluster CA (PEM) published in every namespace as the `kube-root-ca.crt`
    /// ConfigMap, as kube-controller-manager's root-ca-cert-publisher does; None: not published.
    pub root_ca: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            node_monitor_grace_period: Duration::from_secs(40),
            default_toleration_seconds: 300,
            job_backoff: Duration::from_secs(10),
            identity: format!("skiff-{}", std::process::id()),
            root_ca: None,
        }
    }
}

/// Run the controllers with leader election until the process ends.
pub async fn run_controllers(client: Client, opts: Options) {
    let election = LeaderElection::new(
        client.clone(),
        "kube-system",
        "skiff-controller-manager",
        &opts.identity,
    );
    election.run(|| run_all(client.clone(), opts.clone())).await;
}

fn cluster<K>(client: &Client) -> Api<K>
where
    K: kube::Resource<DynamicType = ()>,
{
    Api::all(client.clone())
}

async fn run_all(client: Client, opts: Options) {
    let mut pods = Shared::<Pod>::new();
    let mut replicasets = Shared::<ReplicaSet>::new();
    let mut deployments = Shared::<Deployment>::new();
    let mut statefulsets = Shared::<StatefulSet>::new();
    let mut daemonsets = Shared::<DaemonSet>::new();
    let mut jobs = Shared::<Job>::new();
    let mut cronjobs = Shared::<CronJob>::new();
    let revisions = Shared::<ControllerRevision>::new();
    let mut nodes = Shared::<Node>::new();
    let leases = Shared::<Lease>::new();
    let mut services = Shared::<Service>::new();
    let mut namespaces = Shared::<Namespace>::new();
    let stores = Stores {
        pods: pods.store.clone(),
        replicasets: replicasets.store.clone(),
        deployments: deployments.store.clone(),
        statefulsets: statefulsets.store.clone(),
        daemonsets: daemonsets.store.clone(),
        jobs: jobs.store.clone(),
        cronjobs: cronjobs.store.clone(),
        revisions: revisions.store.clone(),
        nodes: nodes.store.clone(),
        leases: leases.store.clone(),
        services: services.store.clone(),
        namespaces: namespaces.store.clone(),
    };
    let ctx = Arc::new(Ctx::new(client.clone(), opts, stores.clone()));
    let cfg = Config::default().concurrency(16);

    // Controllers subscribe before the informers start, so that no change is missed.
    let rs_ctl = Controller::for_shared_stream(replicasets.subscribe(), stores.replicasets.clone())
        .owns_shared_stream(pods.subscribe())
        .with_config(cfg.clone());
    let deploy_ctl =
        Controller::for_shared_stream(deployments.subscribe(), stores.deployments.clone())
            .owns_shared_stream(replicasets.subscribe())
            .with_config(cfg.clone());
    let sts_ctl =
        Controller::for_shared_stream(statefulsets.subscribe(), stores.statefulsets.clone())
            .owns_shared_stream(pods.subscribe())
            .with_config(cfg.clone());
    let ds_ctl = Controller::for_shared_stream(daemonsets.subscribe(), stores.daemonsets.clone())
        .owns_shared_stream(pods.subscribe())
        .watches_shared_stream(
            nodes.subscribe(),
            daemonset::node_to_daemonsets(stores.daemonsets.clone()),
        )
        .with_config(cfg.clone());
    let job_ctl = Controller::for_shared_stream(jobs.subscribe(), stores.jobs.clone())
        .owns_shared_stream(pods.subscribe())
        .with_config(cfg.clone());
    let cj_ctl = Controller::for_shared_stream(cronjobs.subscribe(), stores.cronjobs.clone())
        .owns_shared_stream(jobs.subscribe())
        .with_config(cfg.clone());
    let ep_ctl = Controller::for_shared_stream(services.subscribe(), stores.services.clone())
        .watches_shared_stream(
            pods.subscribe(),
            endpoints::pod_to_services(stores.services.clone()),
        )
        .with_config(cfg.clone());
    let ns_ctl = Controller::for_shared_stream(namespaces.subscribe(), stores.namespaces.clone())
        .with_config(cfg.clone());

    let mut tasks = vec![
        pods.spawn(cluster(&client), watcher::Config::default()),
        replicasets.spawn(cluster(&client), watcher::Config::default()),
        deployments.spawn(cluster(&client), watcher::Config::default()),
        statefulsets.spawn(cluster(&client), watcher::Config::default()),
        daemonsets.spawn(cluster(&client), watcher::Config::default()),
        jobs.spawn(cluster(&client), watcher::Config::default()),
        cronjobs.spawn(cluster(&client), watcher::Config::default()),
        revisions.spawn(cluster(&client), watcher::Config::default()),
        nodes.spawn(cluster(&client), watcher::Config::default()),
        leases.spawn(
            Api::namespaced(client.clone(), "kube-node-lease"),
            watcher::Config::default(),
        ),
        services.spawn(cluster(&client), watcher::Config::default()),
        namespaces.spawn(cluster(&client), watcher::Config::default()),
    ];
    let ready = [
        stores.pods.wait_until_ready().await.is_ok(),
        stores.replicasets.wait_until_ready().await.is_ok(),
        stores.deployments.wait_until_ready().await.is_ok(),
        stores.statefulsets.wait_until_ready().await.is_ok(),
        stores.daemonsets.wait_until_ready().await.is_ok(),
        stores.jobs.wait_until_ready().await.is_ok(),
        stores.cronjobs.wait_until_ready().await.is_ok(),
        stores.revisions.wait_until_ready().await.is_ok(),
        stores.nodes.wait_until_ready().await.is_ok(),
        stores.leases.wait_until_ready().await.is_ok(),
        stores.services.wait_until_ready().await.is_ok(),
        stores.namespaces.wait_until_ready().await.is_ok(),
    ];
    if ready.iter().any(|r| !r) {
        tracing::error!("an informer stopped before its cache was ready");
        return;
    }
    tracing::info!("caches synced; starting controllers");

    let c = || ctx.clone();
    tasks.push(tokio::spawn(runtime::run(
        "replicaset",
        rs_ctl,
        c(),
        replicaset::reconcile,
    )));
    tasks.push(tokio::spawn(runtime::run(
        "deployment",
        deploy_ctl,
        c(),
        deployment::reconcile,
    )));
    tasks.push(tokio::spawn(runtime::run(
        "statefulset",
        sts_ctl,
        c(),
        statefulset::reconcile,
    )));
    tasks.push(tokio::spawn(runtime::run(
        "daemonset",
        ds_ctl,
        c(),
        daemonset::reconcile,
    )));
    tasks.push(tokio::spawn(runtime::run(
        "job",
        job_ctl,
        c(),
        job::reconcile,
    )));
    tasks.push(tokio::spawn(runtime::run(
        "cronjob",
        cj_ctl,
        c(),
        cronjob::reconcile,
    )));
    tasks.push(tokio::spawn(runtime::run(
        "endpoints",
        ep_ctl,
        c(),
        endpoints::reconcile,
    )));
    tasks.push(tokio::spawn(runtime::run(
        "namespace",
        ns_ctl,
        c(),
        namespace::reconcile,
    )));
    tasks.push(tokio::spawn(nodelifecycle::run(c())));
    tasks.push(tokio::spawn(gc::run(c())));

    // The tasks end only when their streams do; if one ends the others keep going.
    let _guard = AbortOnDrop(
        tasks
            .iter()
            .map(tokio::task::JoinHandle::abort_handle)
            .collect(),
    );
    join_all(tasks).await;
}

/// Aborts the controller tasks when leadership is lost (the future running them is dropped).
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}
