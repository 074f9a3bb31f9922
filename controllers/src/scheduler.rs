//! The scheduler: binds pending pods to nodes through `pods/binding`.
//!
//! One task folds the pod and node watches into an in-memory cluster view (allocations per
//! node, host ports, pod labels per topology domain). Another pops pending pods, filters nodes
//! (unschedulable, taints, nodeSelector/affinity, resources, host ports, pod (anti-)affinity,
//! topology spread), scores the feasible ones (least allocated + balanced allocation + spread),
//! assumes the pod onto the winner and binds it in the background, so placement never waits for
//! the API. Like kube-scheduler it stops searching once it has enough feasible nodes in large
//! clusters, starting each search where the last one stopped. Pods that fit nowhere get
//! `PodScheduled=False` and a `FailedScheduling` event that says why, and are retried when a node
//! or a pod changes.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Node, NodeSelectorTerm, Pod, PodAffinityTerm, PodSpec, Taint, Toleration,
};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

use crate::leader::LeaderElection;
use crate::runtime::Recorder;
use crate::util;

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Pods with this `spec.schedulerName` (or none) are ours.
    pub scheduler_name: String,
    /// Binding requests in flight at once.
    pub bind_concurrency: usize,
    /// Record a `Scheduled` event for every bound pod.
    pub scheduled_events: bool,
    pub identity: String,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            scheduler_name: "default-scheduler".into(),
            bind_concurrency: 256,
            scheduled_events: true,
            identity: format!("skiff-scheduler-{}", std::process::id()),
        }
    }
}

/// Run the scheduler with leader election (Lease `kube-system/kube-scheduler`).
pub async fn run_scheduler(client: Client, opts: SchedulerOptions) {
    let election = LeaderElection::new(
        client.clone(),
        "kube-system",
        "kube-scheduler",
        &opts.identity,
    );
    election.run(|| run(client.clone(), opts.clone())).await;
}

#[derive(Default, Clone, Copy, Debug, PartialEq)]
struct Res {
    cpu: i64,
    mem: i64,
    pods: i64,
}

struct NodeInfo {
    name: String,
    id: u32,
    labels: BTreeMap<String, String>,
    taints: Vec<Taint>,
    unschedulable: bool,
    alloc: Res,
    used: Res,
    ports: HashSet<(String, i32)>,
    pods: HashSet<String>,
}

/// A bound (or assumed) pod as the scheduler accounts it.
struct Placed {
    node: String,
    ns: String,
    labels: BTreeMap<String, String>,
    req: Res,
    ports: Vec<(String, i32)>,
    anti_affinity: Vec<PodAffinityTerm>,
    /// Preferred pod affinity (positive weight) and anti-affinity (negative) terms, which also
    /// attract or repel pods scheduled after this one.
    preferred: Vec<(i64, PodAffinityTerm)>,
    /// The controller (owner uid) of the pod, for spreading replicas.
    owner: Option<String>,
}

#[derive(Default)]
struct State {
    nodes: Vec<NodeInfo>,
    node_index: HashMap<String, usize>,
    placed: HashMap<String, Placed>,
    pending: HashMap<String, Arc<Pod>>,
    queue: VecDeque<String>,
    queued: HashSet<String>,
    unschedulable: HashSet<String>,
    binding: HashSet<String>,
    cursor: usize,
    pods_with_anti_affinity: usize,
    pods_with_preferred: usize,
    last_message: HashMap<String, String>,
    /// owner uid -> node id -> pods of that owner on that node.
    owner_counts: HashMap<String, HashMap<u32, u32>>,
    /// Node name -> a small id that stays the node's for the life of the scheduler, so that
    /// scoring thousands of nodes per pod compares integers, not names.
    node_ids: HashMap<String, u32>,
}

fn pod_key(p: &Pod) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

fn requests(spec: &PodSpec) -> Res {
    let sum =
        |containers: &[k8s_openapi::api::core::v1::Container], key: &str, milli: bool| -> i128 {
            containers
                .iter()
                .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get(key))
                .filter_map(|q| util::parse_quantity(&q.0, milli))
                .sum()
        };
    let max_init = |key: &str, milli: bool| -> i128 {
        spec.init_containers
            .iter()
            .flatten()
            .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get(key))
            .filter_map(|q| util::parse_quantity(&q.0, milli))
            .max()
            .unwrap_or(0)
    };
    let overhead = |key: &str, milli: bool| -> i128 {
        spec.overhead
            .as_ref()
            .and_then(|o| o.get(key))
            .and_then(|q| util::parse_quantity(&q.0, milli))
            .unwrap_or(0)
    };
    Res {
        cpu: saturate(
            sum(&spec.containers, "cpu", true).max(max_init("cpu", true)) + overhead("cpu", true),
        ),
        mem: saturate(
            sum(&spec.containers, "memory", false).max(max_init("memory", false))
                + overhead("memory", false),
        ),
        pods: 1,
    }
}

/// Quantities parse exactly (i128); the scheduler counts in i64 (9.2 EB, 9.2e15 cores), which
/// keeps the per-node arithmetic cheap.
fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

fn host_ports(spec: &PodSpec) -> Vec<(String, i32)> {
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let hp = p.host_port.filter(|h| *h > 0)?;
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), hp))
        })
        .collect()
}

/// A pod's preferred inter-pod terms: affinity with positive, anti-affinity with negative weight.
fn preferred_terms(spec: &PodSpec) -> Vec<(i64, PodAffinityTerm)> {
    let Some(a) = spec.affinity.as_ref() else {
        return vec![];
    };
    let affinity = a
        .pod_affinity
        .as_ref()
        .and_then(|x| {
            x.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .map(|w| (i64::from(w.weight), w.pod_affinity_term.clone()));
    let anti = a
        .pod_anti_affinity
        .as_ref()
        .and_then(|x| {
            x.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .map(|w| (-i64::from(w.weight), w.pod_affinity_term.clone()));
    affinity.chain(anti).collect()
}

fn placed_pod(p: &Pod, node: String) -> Placed {
    let spec = p.spec.as_ref();
    Placed {
        node,
        ns: p.namespace().unwrap_or_default(),
        labels: p.labels().clone(),
        req: spec.map(requests).unwrap_or_default(),
        ports: spec.map(host_ports).unwrap_or_default(),
        anti_affinity: spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            })
            .unwrap_or_default(),
        preferred: spec.map(preferred_terms).unwrap_or_default(),
        owner: util::controller_of(&p.metadata).map(|r| r.uid.clone()),
    }
}

fn node_info(n: &Node) -> NodeInfo {
    let alloc = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let get = |k: &str, milli: bool| {
        saturate(
            alloc
                .and_then(|a| a.get(k))
                .and_then(|q| util::parse_quantity(&q.0, milli))
                .unwrap_or(0),
        )
    };
    NodeInfo {
        name: n.name_any(),
        id: 0,
        labels: n.metadata.labels.clone().unwrap_or_default(),
        taints: n
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default(),
        unschedulable: n
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        alloc: Res {
            cpu: get("cpu", true),
            mem: get("memory", false),
            pods: alloc
                .and_then(|a| a.get("pods"))
                .map_or(110, |_| get("pods", false)),
        },
        used: Res::default(),
        ports: HashSet::new(),
        pods: HashSet::new(),
    }
}

impl State {
    fn is_ours(&self, p: &Pod, name: &str) -> bool {
        p.spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|s| s == name)
    }

    fn place(&mut self, uid: String, placed: Placed) {
        self.unplace(&uid);
        if let Some(&i) = self.node_index.get(&placed.node) {
            let n = &mut self.nodes[i];
            n.used.cpu += placed.req.cpu;
            n.used.mem += placed.req.mem;
            n.used.pods += placed.req.pods;
            n.ports.extend(placed.ports.iter().cloned());
            n.pods.insert(uid.clone());
        }
        if !placed.anti_affinity.is_empty() {
            self.pods_with_anti_affinity += 1;
        }
        if !placed.preferred.is_empty() {
            self.pods_with_preferred += 1;
        }
        if let Some(o) = &placed.owner {
            let id = self.node_id(&placed.node);
            *self
                .owner_counts
                .entry(o.clone())
                .or_default()
                .entry(id)
                .or_insert(0) += 1;
        }
        self.placed.insert(uid, placed);
    }

    fn unplace(&mut self, uid: &str) -> bool {
        let Some(p) = self.placed.remove(uid) else {
            return false;
        };
        if !p.anti_affinity.is_empty() {
            self.pods_with_anti_affinity -= 1;
        }
        if !p.preferred.is_empty() {
            self.pods_with_preferred -= 1;
        }
        let id = self.node_ids.get(&p.node).copied();
        if let Some(o) = &p.owner
            && let Some(per_node) = self.owner_counts.get_mut(o)
        {
            if let Some(id) = id
                && let Some(c) = per_node.get_mut(&id)
            {
                *c -= 1;
                if *c == 0 {
                    per_node.remove(&id);
                }
            }
            if per_node.is_empty() {
                self.owner_counts.remove(o);
            }
        }
        if let Some(&i) = self.node_index.get(&p.node) {
            let n = &mut self.nodes[i];
            n.used.cpu -= p.req.cpu;
            n.used.mem -= p.req.mem;
            n.used.pods -= p.req.pods;
            for port in &p.ports {
                n.ports.remove(port);
            }
            n.pods.remove(uid);
        }
        true
    }

    fn node_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.node_ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.node_ids.len()).unwrap_or(u32::MAX);
        self.node_ids.insert(name.to_string(), id);
        id
    }

    fn enqueue(&mut self, key: String) {
        if !self.binding.contains(&key) && self.queued.insert(key.clone()) {
            self.queue.push_back(key);
        }
    }

    /// Something in the cluster changed: give unschedulable pods another try.
    fn flush_unschedulable(&mut self) {
        let keys: Vec<String> = self.unschedulable.drain().collect();
        for k in keys {
            self.enqueue(k);
        }
    }

    fn apply_pod(&mut self, p: Pod, scheduler: &str) -> bool {
        let key = pod_key(&p);
        let uid = p.uid().unwrap_or_default();
        let spec = p.spec.as_ref();
        let node = spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let finished = matches!(util::pod_phase(&p), "Succeeded" | "Failed");
        match node {
            Some(node) => {
                self.pending.remove(&key);
                self.unschedulable.remove(&key);
                self.last_message.remove(&key);
                if finished {
                    return self.unplace(&uid);
                }
                // Status updates of a pod already accounted on its node change nothing here.
                if self.placed.get(&uid).is_none_or(|pl| pl.node != node) {
                    self.place(uid, placed_pod(&p, node));
                }
                false
            }
            None => {
                if util::terminating(&p.metadata) || finished || !self.is_ours(&p, scheduler) {
                    self.delete_pod(&p);
                    return false;
                }
                let changed_spec = self.pending.get(&key).is_none_or(|old| {
                    old.spec != p.spec || old.metadata.labels != p.metadata.labels
                });
                self.pending.insert(key.clone(), Arc::new(p));
                if !self.unschedulable.contains(&key) || changed_spec {
                    self.unschedulable.remove(&key);
                    self.enqueue(key);
                }
                false
            }
        }
    }

    /// Returns whether resources were freed.
    fn delete_pod(&mut self, p: &Pod) -> bool {
        let key = pod_key(p);
        self.pending.remove(&key);
        self.unschedulable.remove(&key);
        self.last_message.remove(&key);
        self.unplace(&p.uid().unwrap_or_default())
    }

    fn apply_node(&mut self, n: &Node) {
        let mut info = node_info(n);
        info.id = self.node_id(&info.name);
        match self.node_index.get(&info.name) {
            Some(&i) => {
                let old = &mut self.nodes[i];
                info.used = old.used;
                info.ports = std::mem::take(&mut old.ports);
                info.pods = std::mem::take(&mut old.pods);
                self.nodes[i] = info;
            }
            None => {
                // Pods placed before their node was known count now.
                let name = info.name.clone();
                self.node_index.insert(name.clone(), self.nodes.len());
                self.nodes.push(info);
                let uids: Vec<String> = self
                    .placed
                    .iter()
                    .filter(|(_, p)| p.node == name)
                    .map(|(u, _)| u.clone())
                    .collect();
                for uid in uids {
                    if let Some(p) = self.placed.get(&uid) {
                        let p = Placed {
                            node: p.node.clone(),
                            ns: p.ns.clone(),
                            labels: p.labels.clone(),
                            req: p.req,
                            ports: p.ports.clone(),
                            anti_affinity: p.anti_affinity.clone(),
                            preferred: p.preferred.clone(),
                            owner: p.owner.clone(),
                        };
                        self.place(uid, p);
                    }
                }
            }
        }
    }

    fn delete_node(&mut self, name: &str) {
        let Some(i) = self.node_index.remove(name) else {
            return;
        };
        self.nodes.swap_remove(i);
        if i < self.nodes.len() {
            let moved = self.nodes[i].name.clone();
            self.node_index.insert(moved, i);
        }
    }
}

/// Why a node was rejected: almost always a fixed phrase, so rejecting thousands of nodes
/// allocates nothing.
type Reason = std::borrow::Cow<'static, str>;

/// Why a node was rejected (kube-scheduler's wording, counted into the FailedScheduling message).
fn filter(
    state: &State,
    node: &NodeInfo,
    pod: &Pod,
    spec: &PodSpec,
    req: Res,
    ports: &[(String, i32)],
    topo: &Topology,
) -> Result<(), Reason> {
    let tolerations: &[Toleration] = spec.tolerations.as_deref().unwrap_or(&[]);
    if node.unschedulable {
        let t = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        if !tolerations.iter().any(|tol| util::tolerates(tol, &t)) {
            return Err(Reason::Borrowed("node(s) were unschedulable"));
        }
    }
    if !util::node_admits(spec, &node.name, Some(&node.labels)) {
        return Err(Reason::Borrowed(
            "node(s) didn't match Pod's node affinity/selector",
        ));
    }
    if let Some(t) = util::untolerated(&node.taints, tolerations, &["NoSchedule", "NoExecute"]) {
        let value = t
            .value
            .as_deref()
            .map(|v| format!(": {v}"))
            .unwrap_or_default();
        return Err(Reason::Owned(format!(
            "node(s) had untolerated taint {{{}{value}}}",
            t.key
        )));
    }
    let free = |alloc: i64, used: i64| alloc - used;
    if req.pods > free(node.alloc.pods, node.used.pods) {
        return Err(Reason::Borrowed("Too many pods"));
    }
    if req.cpu > 0 && req.cpu > free(node.alloc.cpu, node.used.cpu) {
        return Err(Reason::Borrowed("Insufficient cpu"));
    }
    if req.mem > 0 && req.mem > free(node.alloc.mem, node.used.mem) {
        return Err(Reason::Borrowed("Insufficient memory"));
    }
    if ports.iter().any(|p| node.ports.contains(p)) {
        return Err(Reason::Borrowed(
            "node(s) didn't have free ports for the requested pod ports",
        ));
    }
    topo.check(state, node, pod)
}

/// Pre-computed inter-pod constraints of the pod being scheduled.
struct Topology {
    /// Required affinity terms: (topology key, domains where a matching pod runs, any match anywhere).
    affinity: Vec<(String, HashSet<String>, bool, bool)>,
    /// Required anti-affinity terms: (topology key, domains with a matching pod).
    anti: Vec<(String, HashSet<String>)>,
    /// Domains (key, value) where existing pods' anti-affinity forbids this pod.
    forbidden: Vec<(String, String)>,
    /// Hard spread constraints: (key, max skew, counts per domain, min count).
    spread: Vec<(String, i32, HashMap<String, i64>, i64)>,
    /// Soft spread constraints, for scoring.
    soft_spread: Vec<(String, HashMap<String, i64>)>,
    /// Preferred inter-pod (anti-)affinity: topology key -> domain -> summed weight, both the
    /// pod's own preferred terms (over the pods already placed) and placed pods' preferred terms
    /// that match this pod; with the lowest and highest node total, for normalising.
    pod_pref: Vec<(String, HashMap<String, i64>)>,
    pod_pref_range: (i64, i64),
    /// Preferred node affinity terms (weight, term) and the best total any node reaches.
    node_pref: Vec<(i64, NodeSelectorTerm)>,
    node_pref_max: i64,
}

fn term_matches(term: &PodAffinityTerm, own_ns: &str, p: &Placed) -> bool {
    let namespaces = term.namespaces.as_deref().unwrap_or(&[]);
    let ns_ok = if namespaces.is_empty() && term.namespace_selector.is_none() {
        p.ns == own_ns
    } else {
        namespaces.iter().any(|n| n == &p.ns)
            || term
                .namespace_selector
                .as_ref()
                .is_some_and(util::selector_is_empty)
    };
    ns_ok
        && term
            .label_selector
            .as_ref()
            .is_some_and(|s| util::selector_matches(s, Some(&p.labels)))
}

impl Topology {
    fn build(state: &State, pod: &Pod, spec: &PodSpec) -> Self {
        let ns = pod.namespace().unwrap_or_default();
        let labels = pod.labels();
        let mut t = Topology {
            affinity: vec![],
            anti: vec![],
            forbidden: vec![],
            spread: vec![],
            soft_spread: vec![],
            pod_pref: vec![],
            pod_pref_range: (0, 0),
            node_pref: vec![],
            node_pref_max: 0,
        };
        let node_label = |node: &str, key: &str| -> Option<String> {
            let i = state.node_index.get(node)?;
            state.nodes[*i].labels.get(key).cloned()
        };
        let aff = spec.affinity.as_ref();
        for term in aff
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
        {
            let mut domains = HashSet::new();
            let mut any = false;
            for p in state.placed.values().filter(|p| term_matches(term, &ns, p)) {
                any = true;
                if let Some(v) = node_label(&p.node, &term.topology_key) {
                    domains.insert(v);
                }
            }
            let self_match = term
                .label_selector
                .as_ref()
                .is_some_and(|s| util::selector_matches(s, Some(labels)));
            t.affinity
                .push((term.topology_key.clone(), domains, any, self_match));
        }
        for term in aff
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
        {
            let domains = state
                .placed
                .values()
                .filter(|p| term_matches(term, &ns, p))
                .filter_map(|p| node_label(&p.node, &term.topology_key))
                .collect();
            t.anti.push((term.topology_key.clone(), domains));
        }
        if state.pods_with_anti_affinity > 0 {
            let me = Placed {
                node: String::new(),
                ns: ns.clone(),
                labels: labels.clone(),
                req: Res::default(),
                ports: vec![],
                anti_affinity: vec![],
                preferred: vec![],
                owner: None,
            };
            for p in state
                .placed
                .values()
                .filter(|p| !p.anti_affinity.is_empty())
            {
                for term in &p.anti_affinity {
                    if term_matches(term, &p.ns, &me)
                        && let Some(v) = node_label(&p.node, &term.topology_key)
                    {
                        t.forbidden.push((term.topology_key.clone(), v));
                    }
                }
            }
        }
        for c in spec.topology_spread_constraints.iter().flatten() {
            let mut counts: HashMap<String, i64> = HashMap::new();
            for n in &state.nodes {
                if let Some(v) = n.labels.get(&c.topology_key)
                    && util::node_admits(spec, &n.name, Some(&n.labels))
                {
                    counts.entry(v.clone()).or_insert(0);
                }
            }
            for p in state.placed.values().filter(|p| p.ns == ns) {
                if c.label_selector
                    .as_ref()
                    .is_some_and(|s| util::selector_matches(s, Some(&p.labels)))
                    && let Some(v) = node_label(&p.node, &c.topology_key)
                    && let Some(e) = counts.get_mut(&v)
                {
                    *e += 1;
                }
            }
            if c.when_unsatisfiable == "DoNotSchedule" {
                let min = counts.values().copied().min().unwrap_or(0);
                t.spread
                    .push((c.topology_key.clone(), c.max_skew, counts, min));
            } else {
                t.soft_spread.push((c.topology_key.clone(), counts));
            }
        }
        t.build_preferences(state, &ns, labels, spec);
        t
    }

    /// The preferred (soft) node affinity and inter-pod (anti-)affinity of scoring, as
    /// kube-scheduler's NodeAffinity and InterPodAffinity score plugins weigh them.
    fn build_preferences(
        &mut self,
        state: &State,
        ns: &str,
        labels: &BTreeMap<String, String>,
        spec: &PodSpec,
    ) {
        let node_label = |node: &str, key: &str| -> Option<&String> {
            let i = state.node_index.get(node)?;
            state.nodes[*i].labels.get(key)
        };
        let mut by_key: BTreeMap<String, HashMap<String, i64>> = BTreeMap::new();
        let own = preferred_terms(spec);
        if !own.is_empty() {
            for p in state.placed.values() {
                for (w, term) in &own {
                    if term_matches(term, ns, p)
                        && let Some(v) = node_label(&p.node, &term.topology_key)
                    {
                        *by_key
                            .entry(term.topology_key.clone())
                            .or_default()
                            .entry(v.clone())
                            .or_insert(0) += w;
                    }
                }
            }
        }
        if state.pods_with_preferred > 0 {
            let me = Placed {
                node: String::new(),
                ns: ns.to_string(),
                labels: labels.clone(),
                req: Res::default(),
                ports: vec![],
                anti_affinity: vec![],
                preferred: vec![],
                owner: None,
            };
            for p in state.placed.values().filter(|p| !p.preferred.is_empty()) {
                for (w, term) in &p.preferred {
                    if term_matches(term, &p.ns, &me)
                        && let Some(v) = node_label(&p.node, &term.topology_key)
                    {
                        *by_key
                            .entry(term.topology_key.clone())
                            .or_default()
                            .entry(v.clone())
                            .or_insert(0) += w;
                    }
                }
            }
        }
        by_key.retain(|_, domains| domains.values().any(|w| *w != 0));
        self.pod_pref = by_key.into_iter().collect();
        if !self.pod_pref.is_empty() {
            let (mut lo, mut hi) = (i64::MAX, i64::MIN);
            for n in &state.nodes {
                let s = self.pod_pref_raw(n);
                lo = lo.min(s);
                hi = hi.max(s);
            }
            self.pod_pref_range = (lo.min(0), hi.max(0));
        }
        self.node_pref = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .filter(|t| t.weight != 0)
            .map(|t| (i64::from(t.weight), t.preference.clone()))
            .collect();
        if !self.node_pref.is_empty() {
            self.node_pref_max = state
                .nodes
                .iter()
                .map(|n| self.node_pref_raw(n))
                .max()
                .unwrap_or(0);
        }
    }

    fn pod_pref_raw(&self, node: &NodeInfo) -> i64 {
        self.pod_pref
            .iter()
            .filter_map(|(key, domains)| domains.get(node.labels.get(key)?))
            .sum()
    }

    fn node_pref_raw(&self, node: &NodeInfo) -> i64 {
        self.node_pref
            .iter()
            .filter(|(_, term)| util::node_term_matches(term, &node.name, Some(&node.labels)))
            .map(|(w, _)| *w)
            .sum()
    }

    fn check(&self, _state: &State, node: &NodeInfo, _pod: &Pod) -> Result<(), Reason> {
        for (key, domains, any, self_match) in &self.affinity {
            let Some(v) = node.labels.get(key) else {
                return Err(Reason::Borrowed("node(s) didn't match pod affinity rules"));
            };
            let ok = domains.contains(v) || (!any && *self_match);
            if !ok {
                return Err(Reason::Borrowed("node(s) didn't match pod affinity rules"));
            }
        }
        for (key, domains) in &self.anti {
            if node.labels.get(key).is_some_and(|v| domains.contains(v)) {
                return Err(Reason::Borrowed(
                    "node(s) didn't match pod anti-affinity rules",
                ));
            }
        }
        for (key, value) in &self.forbidden {
            if node.labels.get(key) == Some(value) {
                return Err(Reason::Borrowed(
                    "node(s) didn't satisfy existing pods anti-affinity rules",
                ));
            }
        }
        for (key, skew, counts, min) in &self.spread {
            let Some(v) = node.labels.get(key) else {
                return Err(Reason::Borrowed(
                    "node(s) didn't match pod topology spread constraints (missing required label)",
                ));
            };
            let c = counts.get(v).copied().unwrap_or(0);
            if c + 1 - min > i64::from(*skew) {
                return Err(Reason::Borrowed(
                    "node(s) didn't match pod topology spread constraints",
                ));
            }
        }
        Ok(())
    }

    /// Soft constraints, in the thousandths of [`score`]: topology spread (weight 1 per
    /// constraint), preferred node affinity and inter-pod affinity (weight 2 each, as in
    /// kube-scheduler's default profile), each normalised to 0..=100 first.
    fn score(&self, node: &NodeInfo) -> i64 {
        let mut s = 0i64;
        for (key, counts) in &self.soft_spread {
            let max = counts.values().copied().max().unwrap_or(0);
            let c = node
                .labels
                .get(key)
                .and_then(|v| counts.get(v))
                .copied()
                .unwrap_or(max);
            s += if max == 0 { 100 } else { (max - c) * 100 / max } * 10;
        }
        if self.node_pref_max > 0 {
            s += self.node_pref_raw(node) * 100 / self.node_pref_max * 20;
        }
        let (lo, hi) = self.pod_pref_range;
        if hi > lo {
            s += (self.pod_pref_raw(node) - lo) * 100 / (hi - lo) * 20;
        }
        s
    }
}

/// Least allocated + balanced allocation, in thousandths, minus a penalty per replica of the
/// same controller already on the node (so replicas spread, like the default topology spread).
fn score(node: &NodeInfo, req: Res, same_owner: u32) -> i64 {
    const FULL: i64 = 1000;
    let frac = |alloc: i64, used: i64| -> i64 {
        if alloc <= 0 {
            FULL
        } else {
            (used.saturating_mul(FULL) / alloc).clamp(0, FULL)
        }
    };
    let cpu = frac(node.alloc.cpu, node.used.cpu + req.cpu);
    let mem = frac(node.alloc.mem, node.used.mem + req.mem);
    let pods = frac(node.alloc.pods, node.used.pods + req.pods);
    let least_allocated = ((FULL - cpu) + (FULL - mem) + (FULL - pods)) / 3;
    let balanced = FULL - (cpu - mem).abs();
    least_allocated + balanced - i64::from(same_owner) * FULL / 2
}

/// Untolerated `PreferNoSchedule` taints push a node down (TaintToleration, weight 3): 1,000
/// per taint, at most 3,000.
fn prefer_no_schedule_penalty(taints: &[Taint], tolerations: &[Toleration]) -> i64 {
    let n = taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|taint| !tolerations.iter().any(|t| util::tolerates(t, taint)))
        .count()
        .min(3);
    i64::try_from(n).unwrap_or(3) * 1000
}

/// How many feasible nodes to find before choosing (kube-scheduler's adaptive percentage).
fn nodes_to_find(n: usize) -> usize {
    if n < 100 {
        return n;
    }
    let pct = 50usize.saturating_sub(n / 125).max(5);
    (n * pct / 100).max(100)
}

enum Decision {
    Bind(String),
    Unschedulable(String),
}

fn decide(state: &mut State, pod: &Pod) -> Decision {
    let Some(spec) = pod.spec.as_ref() else {
        return Decision::Unschedulable("pod has no spec".into());
    };
    let total = state.nodes.len();
    if total == 0 {
        return Decision::Unschedulable("no nodes available to schedule pods".into());
    }
    let req = requests(spec);
    let ports = host_ports(spec);
    let topo = Topology::build(state, pod, spec);
    let owner = util::controller_of(&pod.metadata).map(|r| r.uid.as_str());
    let owner_nodes = owner.and_then(|o| state.owner_counts.get(o));
    let want = nodes_to_find(total);
    let tolerations: &[Toleration] = spec.tolerations.as_deref().unwrap_or(&[]);
    let mut best: Option<(i64, usize)> = None;
    let mut found = 0usize;
    let mut reasons: BTreeMap<Reason, usize> = BTreeMap::new();
    let start = state.cursor % total;
    let mut checked = 0usize;
    while checked < total && found < want {
        let i = (start + checked) % total;
        checked += 1;
        let node = &state.nodes[i];
        match filter(state, node, pod, spec, req, &ports, &topo) {
            Ok(()) => {
                found += 1;
                let same_owner = owner_nodes
                    .and_then(|m| m.get(&node.id))
                    .copied()
                    .unwrap_or(0);
                let s = score(node, req, same_owner) + topo.score(node)
                    - prefer_no_schedule_penalty(&node.taints, tolerations);
                if best.is_none_or(|(b, _)| s > b) {
                    best = Some((s, i));
                }
            }
            Err(r) => *reasons.entry(r).or_insert(0) += 1,
        }
    }
    state.cursor = (start + checked) % total;
    match best {
        Some((_, i)) => Decision::Bind(state.nodes[i].name.clone()),
        None => {
            let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
            parts.sort();
            Decision::Unschedulable(format!(
                "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.",
                parts.join(", ")
            ))
        }
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn run(client: Client, opts: SchedulerOptions) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Notify::new(),
    });
    let (nodes_ready_tx, nodes_ready_rx) = tokio::sync::oneshot::channel::<()>();
    let node_task = tokio::spawn(watch_nodes(client.clone(), shared.clone(), nodes_ready_tx));
    // Pods are placed against nodes, so learn the nodes first.
    let _ = nodes_ready_rx.await;
    let pod_task = tokio::spawn(watch_pods(
        client.clone(),
        shared.clone(),
        opts.scheduler_name.clone(),
    ));
    let flush_task = tokio::spawn({
        let shared = shared.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(15)).await;
                shared.lock().flush_unschedulable();
                shared.wake.notify_one();
            }
        }
    });
    let _guard = AbortGuard(vec![
        node_task.abort_handle(),
        pod_task.abort_handle(),
        flush_task.abort_handle(),
    ]);
    schedule_loop(client, shared, opts).await;
}

struct AbortGuard(Vec<tokio::task::AbortHandle>);

impl Drop for AbortGuard {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

async fn watch_nodes(client: Client, shared: Arc<Shared>, ready: tokio::sync::oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let mut seen: Option<HashSet<String>> = None;
    let mut stream = watcher(Api::<Node>::all(client), watcher::Config::default())
        .modify(crate::runtime::strip_for_cache)
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.next().await {
        let Ok(ev) = ev else { continue };
        let mut st = shared.lock();
        match ev {
            Event::Init => seen = Some(HashSet::new()),
            Event::InitApply(n) => {
                if let Some(s) = seen.as_mut() {
                    s.insert(n.name_any());
                }
                st.apply_node(&n);
            }
            Event::InitDone => {
                if let Some(s) = seen.take() {
                    let gone: Vec<String> = st
                        .nodes
                        .iter()
                        .map(|n| n.name.clone())
                        .filter(|n| !s.contains(n))
                        .collect();
                    for g in gone {
                        st.delete_node(&g);
                    }
                }
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
                st.flush_unschedulable();
            }
            Event::Apply(n) => {
                st.apply_node(&n);
                st.flush_unschedulable();
            }
            Event::Delete(n) => st.delete_node(&n.name_any()),
        }
        drop(st);
        shared.wake.notify_one();
    }
}

use kube::runtime::watcher::watcher;

async fn watch_pods(client: Client, shared: Arc<Shared>, scheduler: String) {
    let mut seen: Option<HashSet<String>> = None;
    let mut stream = watcher(Api::<Pod>::all(client), watcher::Config::default())
        .modify(crate::runtime::strip_for_cache)
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.next().await {
        let Ok(ev) = ev else { continue };
        let mut st = shared.lock();
        let mut freed = false;
        match ev {
            Event::Init => seen = Some(HashSet::new()),
            Event::InitApply(p) => {
                if let Some(s) = seen.as_mut() {
                    s.insert(p.uid().unwrap_or_default());
                }
                st.apply_pod(p, &scheduler);
            }
            Event::InitDone => {
                if let Some(s) = seen.take() {
                    let gone: Vec<String> = st
                        .placed
                        .keys()
                        .filter(|u| !s.contains(*u))
                        .cloned()
                        .collect();
                    for g in gone {
                        st.unplace(&g);
                    }
                    st.pending
                        .retain(|_, p| s.contains(&p.uid().unwrap_or_default()));
                }
                freed = true;
            }
            Event::Apply(p) => freed = st.apply_pod(p, &scheduler),
            Event::Delete(p) => freed = st.delete_pod(&p),
        }
        if freed {
            st.flush_unschedulable();
        }
        drop(st);
        shared.wake.notify_one();
    }
}

async fn schedule_loop(client: Client, shared: Arc<Shared>, opts: SchedulerOptions) {
    let permits = Arc::new(Semaphore::new(opts.bind_concurrency.max(1)));
    let recorder = Recorder::new(client.clone(), &opts.scheduler_name);
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let job = {
            let mut st = shared.lock();
            let mut job = None;
            while let Some(key) = st.queue.pop_front() {
                st.queued.remove(&key);
                let Some(pod) = st.pending.get(&key).cloned() else {
                    continue;
                };
                let decision = decide(&mut st, &pod);
                match &decision {
                    Decision::Bind(node) => {
                        st.binding.insert(key.clone());
                        st.place(
                            pod.uid().unwrap_or_default(),
                            placed_pod(&pod, node.clone()),
                        );
                    }
                    Decision::Unschedulable(msg) => {
                        st.unschedulable.insert(key.clone());
                        if st.last_message.get(&key) == Some(msg) {
                            continue;
                        }
                        st.last_message.insert(key.clone(), msg.clone());
                    }
                }
                job = Some((key, pod, decision));
                break;
            }
            job
        };
        let Some((key, pod, decision)) = job else {
            drop(permit);
            shared.wake.notified().await;
            continue;
        };
        let client = client.clone();
        let shared = shared.clone();
        let recorder = recorder.clone();
        let events = opts.scheduled_events;
        tokio::spawn(async move {
            match decision {
                Decision::Bind(node) => {
                    let result = bind(&client, &pod, &node).await;
                    let mut st = shared.lock();
                    st.binding.remove(&key);
                    match result {
                        Ok(()) => {
                            drop(st);
                            if events {
                                recorder.publish(
                                    pod.as_ref(),
                                    false,
                                    "Scheduled",
                                    format!("Successfully assigned {key} to {node}"),
                                );
                            }
                        }
                        Err(e) => {
                            tracing::debug!(pod = %key, error = %e, "binding failed; will retry");
                            st.unplace(&pod.uid().unwrap_or_default());
                            if st.pending.contains_key(&key) {
                                st.unschedulable.insert(key);
                            }
                        }
                    }
                }
                Decision::Unschedulable(msg) => {
                    mark_unschedulable(&client, &pod, &msg).await;
                    recorder.publish(pod.as_ref(), true, "FailedScheduling", msg);
                }
            }
            drop(permit);
        });
    }
}

async fn bind(client: &Client, pod: &Pod, node: &str) -> Result<(), kube::Error> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let body = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.uid()},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/binding"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body).unwrap_or_default())
        .map_err(kube::Error::HttpError)?;
    client.request_text(req).await.map(|_| ())
}

async fn mark_unschedulable(client: &Client, pod: &Pod, msg: &str) {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let mut conditions: Vec<serde_json::Value> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.type_ != "PodScheduled")
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    conditions.push(json!({
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": msg,
        "lastProbeTime": null,
        "lastTransitionTime": util::time(util::now()),
    }));
    let patch = json!({"status": {"conditions": conditions, "phase": "Pending"}});
    if let Err(e) = api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        tracing::debug!(pod = %pod.name_any(), error = %e, "cannot set PodScheduled=False");
    }
}

/// Place `pods` pods (100m CPU, 128 MiB each) onto `nodes` nodes with the real filters and
/// scores, in memory, without the API: the scheduler's own ceiling. Returns how long it took
/// and how many were placed. For the benchmark program.
#[doc(hidden)]
pub fn bench_placement(nodes: usize, pods: usize) -> (Duration, usize) {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let mut st = State::default();
    for i in 0..nodes {
        let mut n = Node::default();
        n.metadata.name = Some(format!("n-{i}"));
        n.metadata.labels = Some([("kubernetes.io/hostname".to_string(), format!("n-{i}"))].into());
        n.status = Some(k8s_openapi::api::core::v1::NodeStatus {
            allocatable: Some(
                [("cpu", "32"), ("memory", "256Gi"), ("pods", "250")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect(),
            ),
            ..Default::default()
        });
        st.apply_node(&n);
    }
    let template: Pod = serde_json::from_value(json!({
        "metadata": {"namespace": "bench", "labels": {"app": "bench"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-uid", "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "pause", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    }))
    .unwrap_or_default();
    let start = std::time::Instant::now();
    let mut placed = 0;
    for i in 0..pods {
        let mut p = template.clone();
        p.metadata.name = Some(format!("p-{i}"));
        p.metadata.uid = Some(format!("uid-{i}"));
        if let Decision::Bind(node) = decide(&mut st, &p) {
            st.place(format!("uid-{i}"), placed_pod(&p, node));
            placed += 1;
        }
    }
    (start.elapsed(), placed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, NodeSpec, NodeStatus, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn node(name: &str, cpu: &str, labels: &[(&str, &str)], taints: Vec<Taint>) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n.spec = Some(NodeSpec {
            taints: Some(taints),
            ..NodeSpec::default()
        });
        n.status = Some(NodeStatus {
            allocatable: Some(
                [("cpu", cpu), ("memory", "8Gi"), ("pods", "110")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect(),
            ),
            ..NodeStatus::default()
        });
        n
    }

    fn pod(name: &str, cpu: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("default".into());
        p.metadata.uid = Some(format!("uid-{name}"));
        p.spec = Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(
                        [("cpu".to_string(), Quantity(cpu.into()))]
                            .into_iter()
                            .collect(),
                    ),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        });
        p
    }

    #[test]
    fn places_by_resources_and_explains_failures() {
        let mut st = State::default();
        st.apply_node(&node("small", "1", &[], vec![]));
        st.apply_node(&node("big", "4", &[], vec![]));
        let Decision::Bind(n) = decide(&mut st, &pod("a", "2")) else {
            panic!("should fit on big");
        };
        assert_eq!(n, "big");
        let Decision::Unschedulable(msg) = decide(&mut st, &pod("b", "8")) else {
            panic!("should not fit");
        };
        assert!(
            msg.starts_with("0/2 nodes are available: 2 Insufficient cpu."),
            "{msg}"
        );
    }

    #[test]
    fn accounts_bound_pods_and_frees_them() {
        let mut st = State::default();
        st.apply_node(&node("n", "1", &[], vec![]));
        let mut bound = pod("a", "800m");
        bound.spec.as_mut().unwrap().node_name = Some("n".into());
        st.apply_pod(bound.clone(), "default-scheduler");
        assert!(matches!(
            decide(&mut st, &pod("b", "500m")),
            Decision::Unschedulable(_)
        ));
        assert!(st.delete_pod(&bound));
        assert!(matches!(
            decide(&mut st, &pod("b", "500m")),
            Decision::Bind(_)
        ));
    }

    #[test]
    fn taints_and_selectors_filter_nodes() {
        let mut st = State::default();
        let taint = Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        st.apply_node(&node("tainted", "4", &[("disk", "ssd")], vec![taint]));
        st.apply_node(&node("plain", "4", &[], vec![]));
        let mut p = pod("a", "100m");
        p.spec.as_mut().unwrap().node_selector = Some(
            [("disk".to_string(), "ssd".to_string())]
                .into_iter()
                .collect(),
        );
        let Decision::Unschedulable(msg) = decide(&mut st, &p) else {
            panic!("no node is both ssd and untainted");
        };
        assert!(
            msg.contains("1 node(s) didn't match Pod's node affinity/selector"),
            "{msg}"
        );
        assert!(
            msg.contains("1 node(s) had untolerated taint {dedicated: gpu}"),
            "{msg}"
        );
    }

    #[test]
    fn spreads_pods_by_least_allocated() {
        let mut st = State::default();
        st.apply_node(&node("a", "2", &[], vec![]));
        st.apply_node(&node("b", "2", &[], vec![]));
        let mut counts: HashMap<String, usize> = HashMap::new();
        for i in 0..4 {
            let p = pod(&format!("p{i}"), "500m");
            let Decision::Bind(n) = decide(&mut st, &p) else {
                panic!("fits")
            };
            let mut placed = p.clone();
            placed.spec.as_mut().unwrap().node_name = Some(n.clone());
            st.apply_pod(placed.clone(), "default-scheduler");
            *counts.entry(n).or_default() += 1;
        }
        assert_eq!(counts.get("a"), Some(&2));
        assert_eq!(counts.get("b"), Some(&2));
    }

    fn placed_on(p: &Pod, node: &str) -> Pod {
        let mut placed = p.clone();
        placed.spec.as_mut().unwrap().node_name = Some(node.into());
        placed
    }

    fn with_affinity(mut p: Pod, affinity: serde_json::Value) -> Pod {
        p.spec.as_mut().unwrap().affinity = Some(serde_json::from_value(affinity).unwrap());
        p
    }

    #[test]
    fn preferred_node_affinity_wins_over_resources() {
        let mut st = State::default();
        // "busy" is more allocated, so resources alone would pick "idle".
        st.apply_node(&node("idle", "8", &[("disk", "hdd")], vec![]));
        st.apply_node(&node("busy", "8", &[("disk", "ssd")], vec![]));
        st.apply_pod(placed_on(&pod("x", "2"), "busy"), "default-scheduler");
        assert!(matches!(decide(&mut st, &pod("plain", "100m")), Decision::Bind(n) if n == "idle"));
        let p = with_affinity(
            pod("a", "100m"),
            json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}),
        );
        let Decision::Bind(n) = decide(&mut st, &p) else {
            panic!("fits")
        };
        assert_eq!(n, "busy");
    }

    #[test]
    fn preferred_pod_affinity_attracts_and_anti_affinity_repels() {
        let mut st = State::default();
        for (name, zone) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")] {
            st.apply_node(&node(name, "8", &[("zone", zone), ("host", name)], vec![]));
        }
        let mut cache = pod("cache", "100m");
        cache.metadata.labels = Some([("app".to_string(), "cache".to_string())].into());
        st.apply_pod(placed_on(&cache, "b1"), "default-scheduler");
        let term = json!({"weight": 100, "podAffinityTerm": {
            "labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone"}});
        let near = with_affinity(
            pod("near", "100m"),
            json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [term]}}),
        );
        for _ in 0..3 {
            let Decision::Bind(n) = decide(&mut st, &near) else {
                panic!("fits")
            };
            assert!(n.starts_with('b'), "affinity to zone b, got {n}");
        }
        let far = with_affinity(
            pod("far", "100m"),
            json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [term]}}),
        );
        for _ in 0..3 {
            let Decision::Bind(n) = decide(&mut st, &far) else {
                panic!("fits")
            };
            assert!(n.starts_with('a'), "anti-affinity to zone b, got {n}");
        }
    }

    #[test]
    fn placed_pods_preferred_anti_affinity_repels_newcomers() {
        let mut st = State::default();
        st.apply_node(&node("n1", "8", &[("host", "n1")], vec![]));
        st.apply_node(&node("n2", "8", &[("host", "n2")], vec![]));
        // A loner on n2 that prefers no "noisy" pod on its host.
        let loner = with_affinity(
            pod("loner", "100m"),
            json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"noise": "yes"}}, "topologyKey": "host"}}]}}),
        );
        st.apply_pod(placed_on(&loner, "n2"), "default-scheduler");
        // Resources alone prefer n1 now; make n1 busier so they would prefer n2.
        st.apply_pod(placed_on(&pod("filler", "1"), "n1"), "default-scheduler");
        assert!(matches!(decide(&mut st, &pod("quiet", "100m")), Decision::Bind(n) if n == "n2"));
        let mut noisy = pod("noisy", "100m");
        noisy.metadata.labels = Some([("noise".to_string(), "yes".to_string())].into());
        assert!(matches!(decide(&mut st, &noisy), Decision::Bind(n) if n == "n1"));
    }

    #[test]
    fn prefer_no_schedule_taints_are_avoided_unless_tolerated() {
        let mut st = State::default();
        let taint = Taint {
            key: "spot".into(),
            effect: "PreferNoSchedule".into(),
            ..Taint::default()
        };
        st.apply_node(&node("spot", "8", &[], vec![taint]));
        st.apply_node(&node("steady", "8", &[], vec![]));
        st.apply_pod(placed_on(&pod("x", "2"), "steady"), "default-scheduler");
        assert!(matches!(decide(&mut st, &pod("a", "100m")), Decision::Bind(n) if n == "steady"));
        let mut tolerant = pod("b", "100m");
        tolerant.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some("spot".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        }]);
        assert!(matches!(decide(&mut st, &tolerant), Decision::Bind(n) if n == "spot"));
    }

    #[test]
    fn adaptive_node_sampling() {
        assert_eq!(nodes_to_find(50), 50);
        assert_eq!(nodes_to_find(5000), 500);
        assert!(nodes_to_find(100_000) >= 5000);
    }
}
