//! Defaults of pods and pod templates: policies, containers (pull policy, termination
//! message, probes, ports, env), volumes, and what admission adds to new pods (priority,
//! not-ready/unreachable tolerations) plus the initial status.

use serde_json::{Map, Value, json};

use super::{child, set};
use crate::validation::quantity::{self, Quantity};

/// Where a pod spec sits, which changes a few defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecKind {
    /// A Pod object.
    Pod,
    /// A template of a long-running workload (Deployment, ReplicaSet, StatefulSet, DaemonSet).
    Template,
    /// A Job's template: `restartPolicy` stays as the user wrote it.
    JobTemplate,
}

/// Defaults of a Pod object.
pub fn pod(obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let spec = child(root, "spec");
    pod_spec(spec, SpecKind::Pod);
    if let Some(s) = spec.as_object_mut() {
        for list in ["containers", "initContainers"] {
            if let Some(items) = s.get_mut(list).and_then(Value::as_array_mut) {
                items.iter_mut().for_each(requests_from_limits);
            }
        }
        set(s, "enableServiceLinks", json!(true));
        if s.get("priorityClassName").is_none_or(Value::is_null) {
            set(s, "priority", json!(0));
            set(s, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        if s.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
            host_network_ports(s);
        }
        default_tolerations(s);
    }
    let qos = pod_qos_class(root.get("spec").unwrap_or(&Value::Null));
    if let Some(status) = child(root, "status").as_object_mut() {
        set(status, "phase", json!("Pending"));
        set(status, "qosClass", json!(qos));
    }
}

/// Defaults of a `PodTemplateSpec`.
pub fn template(t: &mut Value, kind: SpecKind) {
    let Some(m) = t.as_object_mut() else {
        return;
    };
    // A template's metadata carries a null creationTimestamp in v1.32 output.
    if let Some(meta) = child(m, "metadata").as_object_mut() {
        meta.entry("creationTimestamp").or_insert(Value::Null);
    }
    pod_spec(child(m, "spec"), kind);
}

/// Defaults every pod spec gets.
pub fn pod_spec(spec: &mut Value, kind: SpecKind) {
    let Some(s) = spec.as_object_mut() else {
        return;
    };
    set(s, "dnsPolicy", json!("ClusterFirst"));
    if kind != SpecKind::JobTemplate {
        set(s, "restartPolicy", json!("Always"));
    }
    set(s, "securityContext", json!({}));
    set(s, "terminationGracePeriodSeconds", json!(30));
    set(s, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(items) = s.get_mut(list).and_then(Value::as_array_mut) {
            items.iter_mut().for_each(container);
        }
    }
    if let Some(vols) = s.get_mut("volumes").and_then(Value::as_array_mut) {
        vols.iter_mut().for_each(volume);
    }
}

/// `latest` (or no tag, unless pinned by digest) pulls `Always`; anything else `IfNotPresent`.
pub fn image_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.split_once(':').map(|(_, t)| t);
    match tag {
        Some("latest") => "Always",
        Some(_) => "IfNotPresent",
        None if digest || image.is_empty() => "IfNotPresent",
        None => "Always",
    }
}

fn container(c: &mut Value) {
    let Some(m) = c.as_object_mut() else {
        return;
    };
    let image = m
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    set(m, "imagePullPolicy", json!(image_pull_policy(&image)));
    set(m, "terminationMessagePath", json!("/dev/termination-log"));
    set(m, "terminationMessagePolicy", json!("File"));
    let res = child(m, "resources");
    if let Some(r) = res.as_object_mut() {
        for key in ["limits", "requests"] {
            if let Some(list) = r.get_mut(key).and_then(Value::as_object_mut) {
                canonical_quantities(list);
            }
        }
    }
    if let Some(ports) = m.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set(p, "protocol", json!("TCP"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = m.get_mut(probe).and_then(Value::as_object_mut) {
            set(p, "timeoutSeconds", json!(1));
            set(p, "periodSeconds", json!(10));
            set(p, "successThreshold", json!(1));
            set(p, "failureThreshold", json!(3));
            handler(p);
        }
    }
    if let Some(lc) = m.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lc.get_mut(hook).and_then(Value::as_object_mut) {
                handler(h);
            }
        }
    }
    if let Some(env) = m.get_mut("env").and_then(Value::as_array_mut) {
        for e in env.iter_mut() {
            if let Some(from) = e.get_mut("valueFrom").and_then(Value::as_object_mut) {
                field_refs(from);
            }
        }
    }
}

fn handler(h: &mut Map<String, Value>) {
    if let Some(g) = h.get_mut("httpGet").and_then(Value::as_object_mut) {
        set(g, "path", json!("/"));
        set(g, "scheme", json!("HTTP"));
    }
}

/// `fieldRef.apiVersion: v1` and `resourceFieldRef.divisor: "0"`.
fn field_refs(m: &mut Map<String, Value>) {
    if let Some(f) = m.get_mut("fieldRef").and_then(Value::as_object_mut) {
        set(f, "apiVersion", json!("v1"));
    }
    if let Some(r) = m.get_mut("resourceFieldRef").and_then(Value::as_object_mut) {
        set(r, "divisor", json!("0"));
    }
}

fn volume(v: &mut Value) {
    let Some(m) = v.as_object_mut() else {
        return;
    };
    if !crate::validation::VOLUME_SOURCES
        .iter()
        .any(|s| m.get(*s).is_some_and(|x| !x.is_null()))
    {
        m.insert("emptyDir".into(), json!({}));
    }
    for src in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = m.get_mut(src).and_then(Value::as_object_mut) {
            set(s, "defaultMode", json!(420));
        }
    }
    if let Some(items) = m
        .get_mut("downwardAPI")
        .and_then(|d| d.get_mut("items"))
        .and_then(Value::as_array_mut)
    {
        items
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .for_each(field_refs);
    }
    if let Some(sources) = m
        .get_mut("projected")
        .and_then(|p| p.get_mut("sources"))
        .and_then(Value::as_array_mut)
    {
        for s in sources.iter_mut() {
            if let Some(items) = s
                .get_mut("downwardAPI")
                .and_then(|d| d.get_mut("items"))
                .and_then(Value::as_array_mut)
            {
                items
                    .iter_mut()
                    .filter_map(Value::as_object_mut)
                    .for_each(field_refs);
            }
            if let Some(t) = s
                .get_mut("serviceAccountToken")
                .and_then(Value::as_object_mut)
            {
                set(t, "expirationSeconds", json!(3600));
            }
        }
    }
    if let Some(h) = m.get_mut("hostPath").and_then(Value::as_object_mut) {
        set(h, "type", json!(""));
    }
    if let Some(i) = m.get_mut("iscsi").and_then(Value::as_object_mut) {
        set(i, "iscsiInterface", json!("default"));
    }
    if let Some(spec) = m
        .get_mut("ephemeral")
        .and_then(|e| e.get_mut("volumeClaimTemplate"))
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        set(spec, "volumeMode", json!("Filesystem"));
    }
}

fn canonical_quantities(list: &mut Map<String, Value>) {
    for v in list.values_mut() {
        if let Some(c) = v.as_str().and_then(quantity::canonical) {
            *v = Value::String(c);
        }
    }
}

/// A pod's container with limits but no request for a resource requests the limit.
fn requests_from_limits(c: &mut Value) {
    let Some(res) = c.get_mut("resources").and_then(Value::as_object_mut) else {
        return;
    };
    let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    if let Some(req) = child(res, "requests").as_object_mut() {
        for (k, v) in limits {
            req.entry(k).or_insert(v);
        }
    }
}

fn host_network_ports(s: &mut Map<String, Value>) {
    for list in ["containers", "initContainers"] {
        let Some(items) = s.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in items.iter_mut() {
            let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) else {
                continue;
            };
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0
                    && let Some(cp) = p.get("containerPort").cloned()
                {
                    p.insert("hostPort".into(), cp);
                }
            }
        }
    }
}

/// The DefaultTolerationSeconds admission: tolerate not-ready and unreachable nodes for 300s.
fn default_tolerations(s: &mut Map<String, Value>) {
    let tolerates = |tols: &[Value], key: &str| {
        tols.iter().any(|t| {
            let tkey = t.get("key").and_then(Value::as_str).unwrap_or("");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (tkey == key || (tkey.is_empty() && op == "Exists"))
                && (effect.is_empty() || effect == "NoExecute")
        })
    };
    let existing: Vec<Value> = s
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut added = Vec::new();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !tolerates(&existing, key) {
            added.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": 300}),
            );
        }
    }
    if added.is_empty() {
        return;
    }
    let mut all = existing;
    all.extend(added);
    s.insert("tolerations".into(), Value::Array(all));
}

/// The QoS class of a pod spec: `Guaranteed`, `Burstable` or `BestEffort`.
pub fn pod_qos_class(spec: &Value) -> &'static str {
    let containers = ["containers", "initContainers"]
        .into_iter()
        .flat_map(|list| {
            spec.get(list)
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice)
        });
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let get = |kind: &str, name: &str| {
            c.get("resources")
                .and_then(|r| r.get(kind))
                .and_then(|l| l.get(name))
                .and_then(Value::as_str)
                .and_then(|q| Quantity::parse(q).ok())
                .filter(|q| !q.is_zero())
        };
        for name in ["cpu", "memory"] {
            let req = get("requests", name);
            let lim = get("limits", name);
            any |= req.is_some() || lim.is_some();
            match (req, lim) {
                (Some(r), Some(l)) if r == l => {}
                (None, Some(_)) => {}
                _ => guaranteed = false,
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
