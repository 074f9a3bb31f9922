//! What the server itself does to particular kinds, beyond defaults and validation: status
//! reset on create, which kinds track `metadata.generation`, and what a status write may touch.

use serde_json::{Value, json};
use skiff_apimachinery::{Resource, Subresource};

/// Kinds whose `metadata.generation` counts spec changes (observedGeneration follows it).
pub fn tracks_generation(res: &Resource) -> bool {
    matches!(
        (res.group, res.kind),
        (
            "apps",
            "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet"
        ) | ("batch", "Job" | "CronJob")
            | ("networking.k8s.io", "Ingress")
    )
}

/// Whether the main resource's writes ignore `.status` (it has a status subresource).
pub fn status_is_subresource(res: &Resource) -> bool {
    res.has_subresource(Subresource::Status)
}

/// The status an object starts with, as kube-apiserver's create strategies set it.
pub fn initial_status(res: &Resource, obj: &Value) -> Option<Value> {
    match (res.group, res.kind) {
        ("", "Pod") => {
            let qos = qos_class(obj);
            Some(json!({"phase": "Pending", "qosClass": qos}))
        }
        ("", "Namespace") => Some(json!({"phase": "Active"})),
        ("", "Service") => Some(json!({"loadBalancer": {}})),
        ("", "PersistentVolumeClaim") => Some(json!({"phase": "Pending"})),
        ("", "PersistentVolume") => Some(json!({"phase": "Pending"})),
        ("", "Node") => obj.get("status").cloned(),
        _ if status_is_subresource(res) => Some(json!({})),
        _ => None,
    }
}

/// A pod's QoS class from its containers' requests and limits.
pub fn qos_class(pod: &Value) -> &'static str {
    let spec = pod.get("spec");
    let list = |name: &str| {
        spec.and_then(|s| s.get(name))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    };
    let containers = list("containers").chain(list("initContainers"));
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        // `get` chains, not `pointer`: a pointer allocates for every segment it reads.
        let resources = c.get("resources");
        let requests = resources
            .and_then(|r| r.get("requests"))
            .and_then(Value::as_object);
        let limits = resources
            .and_then(|r| r.get("limits"))
            .and_then(Value::as_object);
        if requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(res));
            let request = requests.and_then(|r| r.get(res)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The object without metadata and status: what `generation` tracks.
pub fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes() {
        let pod = |res: Value| json!({"spec": {"containers": [{"name": "a", "resources": res}]}});
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(json!({"requests": {"cpu": "1"}}))),
            "Burstable"
        );
    }
}
