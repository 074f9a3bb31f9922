//! The Node object: registration (capacity, allocatable, addresses, labels, node info),
//! status heartbeats with the four standard conditions, and the Lease in `kube-node-lease`
//! that tells the control plane the agent is alive.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

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

/// The Node object this agent registers.
pub fn node_object(cfg: &NodeConfig) -> Value {
    let now = jiff::Timestamp::now().to_string();
    let cap = capacity(&cfg.data_dir);
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": cfg.name,
            "labels": {
                "kubernetes.io/hostname": cfg.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch(),
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": arch(),
                "node-role.kubernetes.io/worker": "",
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
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

/// Register the node (or adopt an existing one, refreshing labels), then post its status.
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
            let patch = json!({"metadata": {"labels": obj["metadata"]["labels"]}});
            api.patch(&cfg.name, &PatchParams::default(), &Patch::Merge(&patch))
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
