//! The Node object: registration (capacity, allocatable, addresses, labels, taints, node info),
//! status heartbeats with the four standard conditions, and the Lease in `kube-node-lease`
//! that tells the control plane the agent is alive.
//!
//! `--node-labels` and `--register-with-taints` take the kubelet's syntax
//! ([`parse_node_labels`], [`parse_taints`]); they are applied when the Node is created and
//! reconciled onto a Node that already exists (taints others added are kept).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
pub use k8s_openapi::api::core::v1::Taint;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use skiff_apimachinery::validation::names;

use crate::error_chain;

/// How often the Lease is renewed and node status re-posted (the kubelet's defaults).
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
pub const LEASE_DURATION_SECONDS: i32 = 40;
pub const STATUS_PERIOD: Duration = Duration::from_secs(10);
/// Pods per node, as the kubelet's default `maxPods`.
pub const MAX_PODS: u32 = 110;
/// The Kubernetes version the agent reports.
pub const KUBELET_VERSION: &str = "v1.32.0";

/// What the agent knows about its own node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub ip: IpAddr,
    pub port: u16,
    pub data_dir: std::path::PathBuf,
    /// Set by image GC when it cannot free enough of the image filesystem (DiskPressure).
    pub image_fs_pressure: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Labels from `--node-labels`, on top of the standard ones.
    pub labels: BTreeMap<String, String>,
    /// Taints from `--register-with-taints`.
    pub taints: Vec<Taint>,
}

/// Why talking to the API about the node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("register node {name}")]
    Register {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("node {0} has no podCIDR after waiting: is the control plane allocating pod CIDRs?")]
    NoPodCidr(String),
    #[error(
        "the API server did not accept node {name} within {}s; is it running and reachable?",
        waited.as_secs()
    )]
    ServerUnavailable {
        name: String,
        waited: Duration,
        #[source]
        source: Box<NodeError>,
    },
}

/// A `--node-labels` or `--register-with-taints` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("{0:?} is not KEY=VALUE")]
    NotKeyValue(String),
    #[error("label key {key:?}: {reason}")]
    LabelKey { key: String, reason: String },
    #[error("label {key:?} value {value:?}: {reason}")]
    LabelValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("label {0:?} is given twice")]
    DuplicateLabel(String),
    #[error("taint {0:?} is not KEY[=VALUE]:EFFECT")]
    TaintSyntax(String),
    #[error("taint {spec:?}: key {reason}")]
    TaintKey { spec: String, reason: String },
    #[error("taint {spec:?}: value {reason}")]
    TaintValue { spec: String, reason: String },
    #[error("taint {spec:?}: effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute")]
    TaintEffect { spec: String, effect: String },
    #[error("two taints with key {key:?} and effect {effect}")]
    DuplicateTaint { key: String, effect: String },
}

/// The taint effects the kubelet accepts at registration.
const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// `--node-labels`: `KEY=VALUE[,KEY=VALUE...]` (the kubelet's syntax; a value may be empty).
/// Keys are qualified names (`[prefix/]name`), values label values, as the API requires.
pub fn parse_node_labels(text: &str) -> Result<Vec<(String, String)>, FlagError> {
    let mut labels: Vec<(String, String)> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| FlagError::NotKeyValue(item.to_owned()))?;
        let (key, value) = (key.trim(), value.trim());
        let reasons = names::is_qualified_name(key);
        if !reasons.is_empty() {
            return Err(FlagError::LabelKey {
                key: key.to_owned(),
                reason: reasons.join("; "),
            });
        }
        let reasons = names::is_label_value(value);
        if !reasons.is_empty() {
            return Err(FlagError::LabelValue {
                key: key.to_owned(),
                value: value.to_owned(),
                reason: reasons.join("; "),
            });
        }
        if labels.iter().any(|(k, _)| k == key) {
            return Err(FlagError::DuplicateLabel(key.to_owned()));
        }
        labels.push((key.to_owned(), value.to_owned()));
    }
    Ok(labels)
}

/// `--register-with-taints`: `KEY[=VALUE]:EFFECT[,...]` (the kubelet's syntax), effect one of
/// `NoSchedule`, `PreferNoSchedule`, `NoExecute`; one taint per key and effect.
pub fn parse_taints(text: &str) -> Result<Vec<Taint>, FlagError> {
    let mut taints: Vec<Taint> = Vec::new();
    for spec in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key_value, effect) = spec
            .rsplit_once(':')
            .ok_or_else(|| FlagError::TaintSyntax(spec.to_owned()))?;
        let (key, value) = match key_value.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (key_value, None),
        };
        let reasons = names::is_qualified_name(key);
        if !reasons.is_empty() {
            return Err(FlagError::TaintKey {
                spec: spec.to_owned(),
                reason: reasons.join("; "),
            });
        }
        if let Some(v) = value {
            let reasons = names::is_label_value(v);
            if !reasons.is_empty() {
                return Err(FlagError::TaintValue {
                    spec: spec.to_owned(),
                    reason: reasons.join("; "),
                });
            }
        }
        if !TAINT_EFFECTS.contains(&effect) {
            return Err(FlagError::TaintEffect {
                spec: spec.to_owned(),
                effect: effect.to_owned(),
            });
        }
        if taints.iter().any(|t| t.key == key && t.effect == effect) {
            return Err(FlagError::DuplicateTaint {
                key: key.to_owned(),
                effect: effect.to_owned(),
            });
        }
        taints.push(Taint {
            key: key.to_owned(),
            value: value.filter(|v| !v.is_empty()).map(str::to_owned),
            effect: effect.to_owned(),
            time_added: None,
        });
    }
    Ok(taints)
}

/// `existing` with every taint of `wanted` in it: a taint with the same key and effect takes
/// the wanted value, the rest are added; taints others put there stay.
pub fn merge_taints(existing: &[Taint], wanted: &[Taint]) -> Vec<Taint> {
    let mut merged = existing.to_vec();
    for w in wanted {
        match merged
            .iter_mut()
            .find(|t| t.key == w.key && t.effect == w.effect)
        {
            Some(t) => t.value.clone_from(&w.value),
            None => merged.push(w.clone()),
        }
    }
    merged
}

fn meminfo_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .unwrap_or(0)
}

fn disk_bytes(path: &Path) -> u64 {
    nix::sys::statvfs::statvfs(path)
        .map(|s| s.blocks().saturating_mul(s.fragment_size()))
        .unwrap_or(0)
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| "Linux".into())
}

/// Node capacity (allocatable is the same: nothing is reserved for system daemons).
pub fn capacity(data_dir: &Path) -> Value {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    json!({
        "cpu": cpus.to_string(),
        "memory": format!("{}Ki", meminfo_kib("MemTotal")),
        "pods": MAX_PODS.to_string(),
        "ephemeral-storage": disk_bytes(data_dir).to_string(),
        "hugepages-2Mi": "0",
    })
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The conditions as a healthy kubelet posts them.
pub fn conditions(now: &str, pressure: Pressure) -> Value {
    let cond = |t: &str, status: bool, reason: &str, message: &str| {
        json!({
            "type": t,
            "status": if status { "True" } else { "False" },
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        })
    };
    json!([
        if pressure.memory {
            cond(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
        } else {
            cond(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            )
        },
        if pressure.disk {
            cond(
                "DiskPressure",
                true,
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
            )
        } else {
            cond(
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            )
        },
        cond(
            "PIDPressure",
            false,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        cond(
            "Ready",
            true,
            "KubeletReady",
            "kubelet is posting ready status"
        ),
    ])
}

/// Resource pressure the agent observed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
}

/// Memory below 100Mi or disk below 10% free, the kubelet's hard eviction thresholds.
pub fn observe_pressure(data_dir: &Path) -> Pressure {
    let disk = nix::sys::statvfs::statvfs(data_dir)
        .map(|s| s.blocks_available().saturating_mul(10) < s.blocks())
        .unwrap_or(false);
    Pressure {
        memory: meminfo_kib("MemAvailable") < 100 * 1024,
        disk,
    }
}

/// The role label a node gets when `--node-labels` names no `node-role.kubernetes.io/` role.
pub const DEFAULT_ROLE_LABEL: &str = "node-role.kubernetes.io/worker";

/// The labels the node carries: the standard ones, the default role unless `cfg.labels` names
/// a role, then `cfg.labels` (which win).
pub fn node_labels(cfg: &NodeConfig) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", cfg.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", arch()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if !cfg
        .labels
        .keys()
        .any(|k| k.starts_with("node-role.kubernetes.io/"))
    {
        labels.insert(DEFAULT_ROLE_LABEL.to_owned(), String::new());
    }
    labels.extend(cfg.labels.clone());
    labels
}

/// The Node object this agent registers.
pub fn node_object(cfg: &NodeConfig) -> Value {
    let now = jiff::Timestamp::now().to_string();
    let cap = capacity(&cfg.data_dir);
    let spec = if cfg.taints.is_empty() {
        json!({})
    } else {
        json!({ "taints": cfg.taints })
    };
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": cfg.name,
            "labels": node_labels(cfg),
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": spec,
        "status": status(cfg, &now, Pressure::default(), cap),
    })
}

fn status(cfg: &NodeConfig, now: &str, pressure: Pressure, cap: Value) -> Value {
    json!({
        "capacity": cap,
        "allocatable": cap,
        "conditions": conditions(now, pressure),
        "addresses": [
            {"type": "InternalIP", "address": cfg.ip.to_string()},
            {"type": "Hostname", "address": cfg.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.port}},
        "nodeInfo": {
            "machineID": read_trim("/etc/machine-id"),
            "systemUUID": read_trim("/sys/class/dmi/id/product_uuid"),
            "bootID": read_trim("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": read_trim("/proc/sys/kernel/osrelease"),
            "osImage": os_image(),
            "containerRuntimeVersion": concat!("skiff://", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": arch(),
        },
    })
}

/// How long [`register_when_up`] keeps trying, and its first and longest pause.
pub const REGISTER_PATIENCE: Duration = Duration::from_secs(300);
const REGISTER_RETRY_FIRST: Duration = Duration::from_millis(250);
const REGISTER_RETRY_MAX: Duration = Duration::from_secs(5);

/// [`register`], retried while the API server cannot be reached or is not serving yet (a
/// control plane starts its agent next to its API server): pauses double from 250 ms to 5 s,
/// one log line when waiting starts and one every 30 s, and after [`REGISTER_PATIENCE`] it
/// gives up (the supervisor restarts the agent).
pub async fn register_when_up(client: &kube::Client, cfg: &NodeConfig) -> Result<Node, NodeError> {
    let started = tokio::time::Instant::now();
    let mut pause = REGISTER_RETRY_FIRST;
    let mut last_said: Option<tokio::time::Instant> = None;
    loop {
        let error = match register(client, cfg).await {
            Ok(node) => return Ok(node),
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => e,
        };
        if started.elapsed() >= REGISTER_PATIENCE {
            return Err(NodeError::ServerUnavailable {
                name: cfg.name.clone(),
                waited: started.elapsed(),
                source: Box::new(error),
            });
        }
        if last_said.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
            tracing::info!(node = %cfg.name, error = %error_chain(&error), "waiting for the API server");
            last_said = Some(tokio::time::Instant::now());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(REGISTER_RETRY_MAX);
    }
}

impl NodeError {
    /// Whether trying again later may succeed: the server is unreachable, not serving yet
    /// (5xx, 429), or has not made what the node needs yet (404 on a fresh store).
    fn is_transient(&self) -> bool {
        match self {
            Self::Register { source, .. } => match source {
                kube::Error::Api(s) => s.code >= 500 || s.code == 429 || s.code == 404,
                kube::Error::HyperError(_)
                | kube::Error::Service(_)
                | kube::Error::HttpError(_) => true,
                _ => false,
            },
            _ => false,
        }
    }
}

/// Register the node, or adopt an existing one: its labels refreshed and the wanted taints
/// merged into the ones it has (others' taints are kept). Then post its status.
pub async fn register(client: &kube::Client, cfg: &NodeConfig) -> Result<Node, NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let obj = node_object(cfg);
    let reg = |source| NodeError::Register {
        name: cfg.name.clone(),
        source,
    };
    let node: Node =
        serde_json::from_value(obj.clone()).map_err(|e| reg(kube::Error::SerdeError(e)))?;
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            adopt(&api, cfg, &obj["metadata"]["labels"])
                .await
                .map_err(reg)?;
        }
        Err(e) => return Err(reg(e)),
    }
    let st = json!({"status": obj["status"]});
    api.patch_status(&cfg.name, &PatchParams::default(), &Patch::Merge(&st))
        .await
        .map_err(reg)
}

/// Conflicts tolerated while merging taints into an existing Node (the node lifecycle
/// controller writes taints too).
const ADOPT_ATTEMPTS: usize = 5;

/// Labels and taints onto an existing Node, compare-and-swap on its resourceVersion so a
/// taint written meanwhile by someone else is never dropped.
async fn adopt(api: &Api<Node>, cfg: &NodeConfig, labels: &Value) -> Result<(), kube::Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = api.get(&cfg.name).await?;
        let existing = current
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let mut patch = json!({"metadata": {
            "labels": labels,
            "resourceVersion": current.metadata.resource_version,
        }});
        let merged = merge_taints(&existing, &cfg.taints);
        if merged != existing {
            patch["spec"] = json!({ "taints": merged });
        }
        match api
            .patch(&cfg.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < ADOPT_ATTEMPTS => {}
            Err(e) => return Err(e),
        }
    }
}

/// Wait until the control plane gives the node a pod CIDR.
pub async fn wait_pod_cidr(client: &kube::Client, name: &str) -> Result<String, NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    for _ in 0..600 {
        if let Ok(n) = api.get(name).await
            && let Some(cidr) = n.spec.and_then(|s| s.pod_cidr)
        {
            return Ok(cidr);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(NodeError::NoPodCidr(name.to_owned()))
}

/// Renew the node's Lease forever.
pub async fn lease_loop(client: kube::Client, name: String, node_uid: String) {
    let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        let now = jiff::Timestamp::now();
        let now = now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string();
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": "kube-node-lease",
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}],
            },
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                "renewTime": now,
            },
        });
        let r = api
            .patch(
                &name,
                &PatchParams::apply("skiff-agent").force(),
                &Patch::Apply(&lease),
            )
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "renew node lease");
        }
        tokio::time::sleep(LEASE_RENEW).await;
    }
}

/// Re-post conditions (with fresh heartbeat times) and capacity forever.
pub async fn status_loop(client: kube::Client, cfg: NodeConfig) {
    let api: Api<Node> = Api::all(client);
    loop {
        tokio::time::sleep(STATUS_PERIOD).await;
        let now = jiff::Timestamp::now().to_string();
        let mut pressure = observe_pressure(&cfg.data_dir);
        pressure.disk |= cfg
            .image_fs_pressure
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut st = status(&cfg, &now, pressure, capacity(&cfg.data_dir));
        // Keep transition times of conditions whose status did not change.
        if let Ok(old) = api.get_status(&cfg.name).await
            && let Some(old_conds) = old.status.and_then(|s| s.conditions)
            && let Some(conds) = st["conditions"].as_array_mut()
        {
            for c in conds.iter_mut() {
                if let Some(o) = old_conds
                    .iter()
                    .find(|o| Some(o.type_.as_str()) == c["type"].as_str())
                    && Some(o.status.as_str()) == c["status"].as_str()
                    && let Some(t) = &o.last_transition_time
                {
                    c["lastTransitionTime"] = json!(t.0.to_string());
                }
            }
        }
        let patch = json!({"status": st});
        if let Err(e) = api
            .patch_status(&cfg.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(error = %e, "post node status");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_object_has_what_kubectl_shows() {
        let d = tempfile::tempdir().unwrap();
        let cfg = NodeConfig {
            name: "n1".into(),
            ip: "10.0.0.5".parse().unwrap(),
            port: 10250,
            data_dir: d.path().into(),
            image_fs_pressure: Default::default(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
        };
        let n = node_object(&cfg);
        let node: Node = serde_json::from_value(n.clone()).unwrap();
        let st = node.status.unwrap();
        assert_eq!(st.node_info.unwrap().kubelet_version, KUBELET_VERSION);
        let ready = st
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(n["status"]["addresses"][0]["address"], "10.0.0.5");
        assert_eq!(n["status"]["capacity"]["pods"], "110");
        assert!(
            n["status"]["capacity"]["memory"]
                .as_str()
                .unwrap()
                .ends_with("Ki")
        );
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], "n1");
    }

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn node_labels_parse_in_the_kubelet_syntax() {
        assert_eq!(
            parse_node_labels("node-role.kubernetes.io/control-plane=, zone=a ,x.io/y=Z_1")
                .unwrap(),
            [
                (
                    "node-role.kubernetes.io/control-plane".to_owned(),
                    String::new()
                ),
                ("zone".to_owned(), "a".to_owned()),
                ("x.io/y".to_owned(), "Z_1".to_owned()),
            ]
        );
        assert_eq!(parse_node_labels("").unwrap(), []);
    }

    #[test]
    fn bad_node_labels_say_what_is_wrong() {
        let err = |text: &str| parse_node_labels(text).unwrap_err();
        assert_eq!(err("zone"), FlagError::NotKeyValue("zone".into()));
        assert!(matches!(err("-bad=1"), FlagError::LabelKey { .. }));
        assert!(matches!(
            err("UPPER.example.com/x=1"),
            FlagError::LabelKey { .. }
        ));
        assert!(matches!(err("a/b/c=1"), FlagError::LabelKey { .. }));
        assert!(matches!(err("zone=a b"), FlagError::LabelValue { .. }));
        assert!(matches!(
            err(&format!("zone={}", "v".repeat(64))),
            FlagError::LabelValue { .. }
        ));
        assert_eq!(
            err("zone=a,zone=b"),
            FlagError::DuplicateLabel("zone".into())
        );
        let shown = err("zone=a b").to_string();
        assert!(
            shown.contains("\"zone\"") && shown.contains("\"a b\""),
            "{shown}"
        );
    }

    #[test]
    fn taints_parse_in_the_kubelet_syntax() {
        assert_eq!(
            parse_taints(
                "node-role.kubernetes.io/control-plane:NoSchedule,dedicated=gpu:NoExecute"
            )
            .unwrap(),
            [
                taint("node-role.kubernetes.io/control-plane", None, "NoSchedule"),
                taint("dedicated", Some("gpu"), "NoExecute"),
            ]
        );
        // The same key with two effects is two taints; an empty value is no value.
        assert_eq!(
            parse_taints("k=:PreferNoSchedule,k:NoSchedule").unwrap(),
            [
                taint("k", None, "PreferNoSchedule"),
                taint("k", None, "NoSchedule")
            ]
        );
    }

    #[test]
    fn bad_taints_say_what_is_wrong() {
        let err = |text: &str| parse_taints(text).unwrap_err();
        assert_eq!(
            err("dedicated=gpu"),
            FlagError::TaintSyntax("dedicated=gpu".into())
        );
        assert!(matches!(err("k:NoSchedul"), FlagError::TaintEffect { .. }));
        assert!(matches!(err("k:"), FlagError::TaintEffect { .. }));
        assert!(matches!(err(":NoSchedule"), FlagError::TaintKey { .. }));
        assert!(matches!(
            err("k=a b:NoSchedule"),
            FlagError::TaintValue { .. }
        ));
        assert_eq!(
            err("k=a:NoSchedule,k=b:NoSchedule"),
            FlagError::DuplicateTaint {
                key: "k".into(),
                effect: "NoSchedule".into()
            }
        );
        let shown = err("k:Sometimes").to_string();
        assert!(
            shown.contains("NoSchedule, PreferNoSchedule or NoExecute"),
            "{shown}"
        );
    }

    #[test]
    fn merging_taints_keeps_the_ones_others_added() {
        let existing = [
            taint("node.kubernetes.io/unreachable", None, "NoExecute"),
            taint("dedicated", Some("old"), "NoSchedule"),
        ];
        let wanted = [
            taint("dedicated", Some("new"), "NoSchedule"),
            taint("node-role.kubernetes.io/control-plane", None, "NoSchedule"),
        ];
        assert_eq!(
            merge_taints(&existing, &wanted),
            [
                taint("node.kubernetes.io/unreachable", None, "NoExecute"),
                taint("dedicated", Some("new"), "NoSchedule"),
                taint("node-role.kubernetes.io/control-plane", None, "NoSchedule"),
            ]
        );
        assert_eq!(merge_taints(&existing, &[]), existing);
    }

    #[test]
    fn a_role_label_replaces_the_default_worker_role() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = NodeConfig {
            name: "cp-1".into(),
            ip: "10.5.0.10".parse().unwrap(),
            port: 10250,
            data_dir: d.path().into(),
            image_fs_pressure: Default::default(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
        };
        assert_eq!(
            node_labels(&cfg)
                .get(DEFAULT_ROLE_LABEL)
                .map(String::as_str),
            Some("")
        );
        let n = node_object(&cfg);
        assert!(n["spec"].get("taints").is_none(), "{n}");

        cfg.labels = parse_node_labels("node-role.kubernetes.io/control-plane=,zone=a")
            .unwrap()
            .into_iter()
            .collect();
        cfg.taints = parse_taints("node-role.kubernetes.io/control-plane:NoSchedule").unwrap();
        let n = node_object(&cfg);
        let node: Node = serde_json::from_value(n.clone()).unwrap();
        let labels = node.metadata.labels.unwrap();
        assert!(!labels.contains_key(DEFAULT_ROLE_LABEL), "{labels:?}");
        assert_eq!(labels["node-role.kubernetes.io/control-plane"], "");
        assert_eq!(labels["zone"], "a");
        assert_eq!(labels["kubernetes.io/hostname"], "cp-1");
        assert_eq!(
            node.spec.unwrap().taints.unwrap(),
            [taint(
                "node-role.kubernetes.io/control-plane",
                None,
                "NoSchedule"
            )]
        );
    }

    #[test]
    fn disk_pressure_shows_in_the_condition() {
        let conds = conditions(
            "2026-01-01T00:00:00Z",
            Pressure {
                memory: false,
                disk: true,
            },
        );
        let disk = conds
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "DiskPressure")
            .unwrap();
        assert_eq!(disk["status"], "True");
        assert_eq!(disk["reason"], "KubeletHasDiskPressure");
    }
}
