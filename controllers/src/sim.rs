//! `skiff sim`: hollow nodes, like kubemark's. Each registers a Node, renews its Lease in
//! `kube-node-lease`, reports its bound pods Running and Ready without running anything, and
//! finishes graceful deletions. Pods that are not restarted (`restartPolicy` Never/OnFailure,
//! e.g. Jobs) "run" for a moment and then succeed, or fail when their command says
//! `exit N` (N > 0) or the template asks with the `sim.skiff.dev/fail-first` annotation.
//!
//! One process serves thousands of nodes: one pod watch and one node watch for all of them,
//! and leases renewed in bounded-concurrency batches.
//!
//! Test hooks (set with kubectl on the Node): label `sim.skiff.dev/paused=true` stops that
//! node's heartbeats and pod handling, as if its machine had died; removing it brings it back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::util;

/// The label that pauses a simulated node.
pub const PAUSED_LABEL: &str = "sim.skiff.dev/paused";
/// Pod annotation: the first N pods of the same owner fail.
pub const FAIL_FIRST_ANNOTATION: &str = "sim.skiff.dev/fail-first";
/// Pod annotation: seconds a run-to-completion pod runs (default 1).
pub const RUN_SECONDS_ANNOTATION: &str = "sim.skiff.dev/run-seconds";

/// Settings of a set of hollow nodes.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub nodes: usize,
    /// Node names are `{prefix}{index}`.
    pub prefix: String,
    /// Index of the first node (so several sims can add nodes without clashing).
    pub first_index: usize,
    pub cpu: String,
    pub memory: String,
    pub max_pods: u32,
    pub labels: BTreeMap<String, String>,
    /// Lease renewal interval (kubelet: 10 s).
    pub heartbeat: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            prefix: "sim-".into(),
            first_index: 0,
            cpu: "4".into(),
            memory: "16Gi".into(),
            max_pods: 110,
            labels: BTreeMap::new(),
            heartbeat: Duration::from_secs(10),
        }
    }
}

struct SimNode {
    index: usize,
    paused: bool,
    ready: bool,
    next_ip: u32,
}

struct Sim {
    client: Client,
    opts: SimOptions,
    nodes: Mutex<HashMap<String, SimNode>>,
    /// Pods we already reported (uid -> phase written), to not repeat writes.
    handled: Mutex<HashMap<String, &'static str>>,
    /// Failures handed out per owner uid for `fail-first`.
    failures: Mutex<HashMap<String, u32>>,
}

fn node_ip(index: usize) -> String {
    let i = u32::try_from(index).unwrap_or(0);
    format!(
        "172.{}.{}.{}",
        16 + ((i >> 16) & 15),
        (i >> 8) & 255,
        i & 255
    )
}

fn pod_cidr(index: usize) -> (u32, u32) {
    let i = u32::try_from(index).unwrap_or(0);
    (128 + ((i >> 8) & 127), i & 255)
}

/// Run `opts.nodes` hollow nodes until the process ends.
pub async fn run_sim(client: Client, opts: SimOptions) -> Result<(), crate::Error> {
    let sim = Arc::new(Sim {
        client,
        nodes: Mutex::new(HashMap::new()),
        handled: Mutex::new(HashMap::new()),
        failures: Mutex::new(HashMap::new()),
        opts,
    });
    sim.register_all().await?;
    tracing::info!(nodes = sim.opts.nodes, "simulated nodes registered");
    let hb = tokio::spawn(sim.clone().heartbeats());
    let nw = tokio::spawn(sim.clone().watch_nodes());
    sim.watch_pods().await;
    hb.abort();
    nw.abort();
    Ok(())
}

impl Sim {
    fn names(&self) -> Vec<(String, usize)> {
        (0..self.opts.nodes)
            .map(|i| {
                let idx = self.opts.first_index + i;
                (format!("{}{idx}", self.opts.prefix), idx)
            })
            .collect()
    }

    fn node_object(&self, name: &str, index: usize) -> Node {
        let mut labels = self.opts.labels.clone();
        labels.insert("kubernetes.io/hostname".into(), name.into());
        labels.insert("kubernetes.io/os".into(), "linux".into());
        labels.insert("kubernetes.io/arch".into(), "amd64".into());
        labels.insert("beta.kubernetes.io/os".into(), "linux".into());
        labels.insert("beta.kubernetes.io/arch".into(), "amd64".into());
        let (a, b) = pod_cidr(index);
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels, "annotations": {"node.alpha.kubernetes.io/ttl": "0", "sim.skiff.dev/hollow": "true"}},
            "spec": {"podCIDR": format!("10.{a}.{b}.0/24"), "podCIDRs": [format!("10.{a}.{b}.0/24")]},
        }))
        .unwrap_or_default()
    }

    fn node_status(&self, name: &str, index: usize, ready: bool) -> Value {
        let now = util::time(util::now());
        let cond = |t: &str, status: &str, reason: &str, msg: &str| json!({"type": t, "status": status, "reason": reason, "message": msg, "lastHeartbeatTime": now, "lastTransitionTime": now});
        let resources = json!({"cpu": self.opts.cpu, "memory": self.opts.memory, "pods": self.opts.max_pods.to_string(), "ephemeral-storage": "100Gi"});
        json!({"status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                if ready { cond("Ready", "True", "KubeletReady", "kubelet is posting ready status") }
                else { cond("Ready", "False", "KubeletNotReady", "kubelet is starting") },
            ],
            "addresses": [{"type": "InternalIP", "address": node_ip(index)}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": format!("{index:032x}"), "systemUUID": format!("{index:032x}"), "bootID": format!("{index:032x}"),
                "kernelVersion": "6.1.0-sim", "osImage": "skiff (simulated)", "containerRuntimeVersion": "skiff://sim",
                "kubeletVersion": "v1.32.0", "kubeProxyVersion": "v1.32.0", "operatingSystem": "linux", "architecture": "amd64",
            },
            "phase": "Running",
        }})
    }

    async fn register_all(self: &Arc<Self>) -> Result<(), crate::Error> {
        let names = self.names();
        let results: Vec<Result<(), crate::Error>> = futures::stream::iter(names)
            .map(|(name, index)| {
                let sim = self.clone();
                async move { sim.register(&name, index).await }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn register(&self, name: &str, index: usize) -> Result<(), crate::Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        match nodes
            .create(&PostParams::default(), &self.node_object(name, index))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        nodes
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(self.node_status(name, index, true)),
            )
            .await?;
        self.renew(name).await?;
        self.nodes.lock().unwrap_or_else(|e| e.into_inner()).insert(
            name.to_string(),
            SimNode {
                index,
                paused: false,
                ready: true,
                next_ip: 2,
            },
        );
        Ok(())
    }

    async fn renew(&self, name: &str) -> Result<(), crate::Error> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let now = MicroTime(util::now());
        let patch =
            json!({"spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now}});
        match leases
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.into()),
                        owner_references: None,
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(name.into()),
                        lease_duration_seconds: Some(40),
                        renew_time: Some(now),
                        ..LeaseSpec::default()
                    }),
                };
                match leases.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Renew every node's Lease once per heartbeat interval, spread evenly over the interval
    /// (node `i` renews in slot `i % SLOTS`), as thousands of independent kubelets would, rather
    /// than all at once.
    async fn heartbeats(self: Arc<Self>) {
        const SLOTS: usize = 50;
        let tick = self.opts.heartbeat / u32::try_from(SLOTS).unwrap_or(1);
        let mut interval = tokio::time::interval(tick.max(Duration::from_millis(1)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        let mut slot = 0usize;
        loop {
            interval.tick().await;
            slot = (slot + 1) % SLOTS;
            let due: Vec<(String, usize, bool)> = {
                let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
                nodes
                    .iter()
                    .filter(|(_, n)| !n.paused && n.index % SLOTS == slot)
                    .map(|(name, n)| (name.clone(), n.index, n.ready))
                    .collect()
            };
            futures::stream::iter(due)
                .for_each_concurrent(64, |(name, index, ready)| {
                    let sim = self.clone();
                    async move {
                        if let Err(e) = sim.renew(&name).await {
                            tracing::debug!(node = %name, error = %e, "lease renewal failed");
                        }
                        if !ready {
                            // Back from a pause (or marked Unknown): report Ready again.
                            let nodes: Api<Node> = Api::all(sim.client.clone());
                            let r = nodes
                                .patch_status(
                                    &name,
                                    &PatchParams::default(),
                                    &Patch::Merge(sim.node_status(&name, index, true)),
                                )
                                .await;
                            if r.is_ok()
                                && let Some(n) = sim
                                    .nodes
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .get_mut(&name)
                            {
                                n.ready = true;
                            }
                        }
                    }
                })
                .await;
        }
    }

    async fn watch_nodes(self: Arc<Self>) {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(ev) = stream.next().await {
            let Ok(node) = ev else { continue };
            let name = node.name_any();
            let paused = node.labels().get(PAUSED_LABEL).is_some_and(|v| v == "true");
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "True");
            let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = nodes.get_mut(&name) {
                if n.paused != paused {
                    tracing::info!(node = %name, paused, "simulated node heartbeat {}", if paused { "stopped" } else { "resumed" });
                }
                n.paused = paused;
                n.ready = ready;
            }
        }
    }

    async fn watch_pods(self: &Arc<Self>) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let cfg = watcher::Config::default().fields("spec.nodeName!=");
        let mut stream = watcher(api, cfg).default_backoff().boxed();
        while let Some(ev) = stream.next().await {
            let pod = match ev {
                Ok(Event::Apply(p) | Event::InitApply(p)) => p,
                Ok(Event::Delete(p)) => {
                    self.handled
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&p.uid().unwrap_or_default());
                    continue;
                }
                _ => continue,
            };
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            let ip = {
                let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
                let Some(n) = nodes.get_mut(&node) else {
                    continue;
                };
                if n.paused {
                    continue;
                }
                let (a, b) = pod_cidr(n.index);
                let host = n.next_ip;
                n.next_ip = if n.next_ip >= 254 { 2 } else { n.next_ip + 1 };
                (format!("10.{a}.{b}.{host}"), node_ip(n.index))
            };
            let sim = self.clone();
            tokio::spawn(async move {
                if let Err(e) = sim.handle_pod(pod, ip).await {
                    tracing::debug!(error = %e, "pod update failed");
                }
            });
        }
    }

    async fn handle_pod(
        &self,
        pod: Pod,
        (pod_ip, host_ip): (String, String),
    ) -> Result<(), crate::Error> {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let uid = pod.uid().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        if util::terminating(&pod.metadata) {
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(());
        }
        let phase = util::pod_phase(&pod);
        if matches!(phase, "Succeeded" | "Failed") {
            return Ok(());
        }
        let already = self
            .handled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid)
            .copied();
        let spec = pod.spec.clone().unwrap_or_default();
        let runs_to_completion = spec
            .restart_policy
            .as_deref()
            .is_some_and(|r| r != "Always");
        if already.is_none() || (phase == "Pending" && already == Some("Running")) {
            self.handled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(uid.clone(), "Running");
            let status = running_status(&pod, &pod_ip, &host_ip);
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                .await?;
            if runs_to_completion {
                let secs = pod
                    .annotations()
                    .get(RUN_SECONDS_ANNOTATION)
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(1.0)
                    .clamp(0.0, 86_400.0);
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                let code = self.exit_code(&pod);
                self.handled
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(uid, "Finished");
                let status = finished_status(&pod, &pod_ip, &host_ip, code);
                match api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// How a run-to-completion pod ends: `exit N` in its command, or a forced early failure.
    fn exit_code(&self, pod: &Pod) -> i32 {
        if let Some(n) = pod
            .annotations()
            .get(FAIL_FIRST_ANNOTATION)
            .and_then(|s| s.parse::<u32>().ok())
        {
            let owner = pod
                .owner_references()
                .iter()
                .find(|r: &&OwnerReference| r.controller == Some(true))
                .map_or_else(|| pod.name_any(), |r| r.uid.clone());
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            let used = failures.entry(owner).or_insert(0);
            if *used < n {
                *used += 1;
                return 1;
            }
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let Some(c) = spec.containers.first() else {
            return 0;
        };
        let words: Vec<String> = c
            .command
            .iter()
            .flatten()
            .chain(c.args.iter().flatten())
            .cloned()
            .collect();
        let text = words.join(" ");
        if words.first().is_some_and(|w| w == "false") {
            return 1;
        }
        if let Some(rest) = text.split("exit ").nth(1) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            return digits.parse().unwrap_or(0);
        }
        0
    }
}

fn container_statuses(pod: &Pod, state: &Value, ready: bool) -> Vec<Value> {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.containers
        .iter()
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            json!({
                "name": c.name,
                "image": image,
                "imageID": format!("sim://{image}"),
                "containerID": format!("sim://{}-{}", pod.uid().unwrap_or_default(), c.name),
                "ready": ready,
                "started": ready,
                "restartCount": 0,
                "state": state,
            })
        })
        .collect()
}

fn conditions(ready: bool, now: &Value) -> Value {
    let s = if ready { "True" } else { "False" };
    json!([
        {"type": "PodReadyToStartContainers", "status": s, "lastProbeTime": null, "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
        {"type": "Ready", "status": s, "lastProbeTime": null, "lastTransitionTime": now},
        {"type": "ContainersReady", "status": s, "lastProbeTime": null, "lastTransitionTime": now},
        {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
    ])
}

fn running_status(pod: &Pod, pod_ip: &str, host_ip: &str) -> Value {
    let now = json!(util::time(util::now()));
    let ip = if pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
    {
        host_ip
    } else {
        pod_ip
    };
    json!({"status": {
        "phase": "Running",
        "conditions": conditions(true, &now),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": now,
        "containerStatuses": container_statuses(pod, &json!({"running": {"startedAt": now}}), true),
    }})
}

fn finished_status(pod: &Pod, pod_ip: &str, host_ip: &str, code: i32) -> Value {
    let now = json!(util::time(util::now()));
    let reason = if code == 0 { "Completed" } else { "Error" };
    let terminated = json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": now, "finishedAt": now, "containerID": format!("sim://{}", pod.uid().unwrap_or_default())}});
    json!({"status": {
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "conditions": conditions(false, &now),
        "hostIP": host_ip,
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "containerStatuses": container_statuses(pod, &terminated, false),
    }})
}

/// Names of the nodes a sim with these options serves.
pub fn node_names(opts: &SimOptions) -> HashSet<String> {
    (0..opts.nodes)
        .map(|i| format!("{}{}", opts.prefix, opts.first_index + i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_per_node() {
        assert_ne!(node_ip(1), node_ip(2));
        assert_eq!(node_ip(258), "172.16.1.2");
        assert_ne!(pod_cidr(1), pod_cidr(257));
    }

    #[test]
    fn names_follow_prefix_and_first_index() {
        let opts = SimOptions {
            nodes: 2,
            prefix: "n-".into(),
            first_index: 5,
            ..SimOptions::default()
        };
        let names = node_names(&opts);
        assert!(names.contains("n-5") && names.contains("n-6"));
        assert_eq!(names.len(), 2);
    }
}
