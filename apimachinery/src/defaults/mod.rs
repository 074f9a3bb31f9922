//! What the API server fills in for fields users omit, so stored objects read back like
//! those of a real v1.32 kube-apiserver. Defaults never overwrite a value the user gave.
//!
//! [`apply`] runs on every decoded body (create, update, patch). The Job selector depends on
//! the uid, so the server calls [`job_selector`] after assigning it on create.

mod pod;

use serde_json::{Map, Value, json};

pub use pod::{SpecKind, image_pull_policy, pod_qos_class};

use crate::registry::Resource;

const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
const LEGACY_CONTROLLER_UID: &str = "controller-uid";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";
const LEGACY_JOB_NAME: &str = "job-name";

/// Fill in the defaults for an object of kind `res`.
pub fn apply(res: &Resource, obj: &mut Value) {
    match (res.group, res.kind) {
        ("", "Pod") => pod::pod(obj),
        ("", "Service") => service(obj),
        ("", "Namespace") => namespace(obj),
        ("", "Secret") => {
            if let Some(m) = obj.as_object_mut() {
                set(m, "type", json!("Opaque"));
            }
        }
        ("", "Node") => node(obj),
        ("", "PersistentVolumeClaim") => pvc(obj),
        ("", "PersistentVolume") => pv(obj),
        ("", "Endpoints") => endpoints(obj),
        ("apps", "Deployment") => deployment(obj),
        ("apps", "ReplicaSet") => replica_set(obj),
        ("apps", "StatefulSet") => stateful_set(obj),
        ("apps", "DaemonSet") => daemon_set(obj),
        ("batch", "Job") => job(res, obj),
        ("batch", "CronJob") => cron_job(obj),
        ("discovery.k8s.io", "EndpointSlice") => endpoint_slice(obj),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => binding(obj),
        _ => {}
    }
}

/// The Job selector and pod labels generated from the Job's name and uid (unless
/// `spec.manualSelector` is true). Call after the uid is assigned and before validation.
pub fn job_selector(obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let meta = root.get("metadata").cloned().unwrap_or(Value::Null);
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    let uid = meta.get("uid").and_then(Value::as_str).unwrap_or("");
    let Some(spec) = child(root, "spec").as_object_mut() else {
        return;
    };
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    if let Some(tmeta) = child(spec, "template")
        .as_object_mut()
        .map(|t| child(t, "metadata"))
        && let Some(labels) = tmeta.as_object_mut().map(|m| child(m, "labels"))
        && let Some(labels) = labels.as_object_mut()
    {
        for key in [LEGACY_JOB_NAME, JOB_NAME] {
            set(labels, key, json!(name));
        }
        for key in [LEGACY_CONTROLLER_UID, CONTROLLER_UID] {
            set(labels, key, json!(uid));
        }
    }
    if let Some(sel) = child(spec, "selector").as_object_mut()
        && let Some(ml) = child(sel, "matchLabels").as_object_mut()
    {
        set(ml, CONTROLLER_UID, json!(uid));
    }
    copy_template_labels(obj);
}

/// Copy `spec.template.metadata.labels` to the object's labels when it has none. Real
/// Kubernetes does this for Jobs only; apps/v1 workloads get neither labels nor a selector
/// from their template (the selector is required), so for them this does nothing.
pub fn default_labels_from_template(res: &Resource, obj: &mut Value) {
    if (res.group, res.kind) == ("batch", "Job") {
        copy_template_labels(obj);
    }
}

fn copy_template_labels(obj: &mut Value) {
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .filter(|l| !l.is_empty())
        .cloned();
    let Some(labels) = labels else {
        return;
    };
    if let Some(meta) = obj.as_object_mut().map(|m| child(m, "metadata"))
        && let Some(meta) = meta.as_object_mut()
        && meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
    {
        meta.insert("labels".into(), Value::Object(labels));
    }
}

/// `m[key]` as a mutable value, created as `{}` when missing or null.
pub(crate) fn child<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Value {
    let v = m.entry(key).or_insert_with(|| json!({}));
    if v.is_null() {
        *v = json!({});
    }
    v
}

/// Set `m[key]` unless the user gave a value.
pub(crate) fn set(m: &mut Map<String, Value>, key: &str, value: Value) {
    match m.get(key) {
        Some(v) if !v.is_null() => {}
        _ => {
            m.insert(key.to_string(), value);
        }
    }
}

fn spec_of(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.as_object_mut()
        .and_then(|m| child(m, "spec").as_object_mut())
}

fn deployment(obj: &mut Value) {
    let Some(s) = spec_of(obj) else {
        return;
    };
    set(s, "replicas", json!(1));
    if let Some(st) = child(s, "strategy").as_object_mut() {
        set(st, "type", json!("RollingUpdate"));
        if st.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = child(st, "rollingUpdate").as_object_mut()
        {
            set(ru, "maxUnavailable", json!("25%"));
            set(ru, "maxSurge", json!("25%"));
        }
    }
    set(s, "revisionHistoryLimit", json!(10));
    set(s, "progressDeadlineSeconds", json!(600));
    pod::template(child(s, "template"), SpecKind::Template);
}

fn replica_set(obj: &mut Value) {
    let Some(s) = spec_of(obj) else {
        return;
    };
    set(s, "replicas", json!(1));
    pod::template(child(s, "template"), SpecKind::Template);
}

fn stateful_set(obj: &mut Value) {
    let Some(s) = spec_of(obj) else {
        return;
    };
    set(s, "podManagementPolicy", json!("OrderedReady"));
    if let Some(us) = child(s, "updateStrategy").as_object_mut() {
        if us.get("type").is_none_or(Value::is_null) {
            us.insert("type".into(), json!("RollingUpdate"));
            child(us, "rollingUpdate");
        }
        if us.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = us.get_mut("rollingUpdate").and_then(Value::as_object_mut)
        {
            set(ru, "partition", json!(0));
        }
    }
    if let Some(p) = child(s, "persistentVolumeClaimRetentionPolicy").as_object_mut() {
        set(p, "whenDeleted", json!("Retain"));
        set(p, "whenScaled", json!("Retain"));
    }
    set(s, "replicas", json!(1));
    set(s, "revisionHistoryLimit", json!(10));
    pod::template(child(s, "template"), SpecKind::Template);
    if let Some(claims) = s
        .get_mut("volumeClaimTemplates")
        .and_then(Value::as_array_mut)
    {
        for c in claims.iter_mut() {
            if let Some(m) = c.as_object_mut() {
                set(m, "apiVersion", json!("v1"));
                set(m, "kind", json!("PersistentVolumeClaim"));
                if let Some(meta) = child(m, "metadata").as_object_mut() {
                    meta.entry("creationTimestamp").or_insert(Value::Null);
                }
            }
            pvc(c);
        }
    }
}

fn daemon_set(obj: &mut Value) {
    let Some(s) = spec_of(obj) else {
        return;
    };
    if let Some(us) = child(s, "updateStrategy").as_object_mut() {
        set(us, "type", json!("RollingUpdate"));
        if us.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = child(us, "rollingUpdate").as_object_mut()
        {
            set(ru, "maxUnavailable", json!(1));
            set(ru, "maxSurge", json!(0));
        }
    }
    set(s, "revisionHistoryLimit", json!(10));
    pod::template(child(s, "template"), SpecKind::Template);
}

fn job(res: &Resource, obj: &mut Value) {
    if let Some(s) = spec_of(obj) {
        job_spec(s);
        set(s, "suspend", json!(false));
    }
    default_labels_from_template(res, obj);
}

fn job_spec(s: &mut Map<String, Value>) {
    let unset = |s: &Map<String, Value>, k: &str| s.get(k).is_none_or(Value::is_null);
    if unset(s, "completions") && unset(s, "parallelism") {
        s.insert("completions".into(), json!(1));
    }
    set(s, "parallelism", json!(1));
    let per_index = !unset(s, "backoffLimitPerIndex");
    set(
        s,
        "backoffLimit",
        json!(if per_index { 2_147_483_647 } else { 6 }),
    );
    set(s, "completionMode", json!("NonIndexed"));
    let has_failure_policy = !unset(s, "podFailurePolicy");
    if let Some(rules) = s
        .get_mut("podFailurePolicy")
        .and_then(|p| p.get_mut("rules"))
        .and_then(Value::as_array_mut)
    {
        for rule in rules.iter_mut() {
            if let Some(conds) = rule
                .get_mut("onPodConditions")
                .and_then(Value::as_array_mut)
            {
                for c in conds.iter_mut().filter_map(Value::as_object_mut) {
                    set(c, "status", json!("True"));
                }
            }
        }
    }
    set(
        s,
        "podReplacementPolicy",
        json!(if has_failure_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        }),
    );
    pod::template(child(s, "template"), SpecKind::JobTemplate);
}

fn cron_job(obj: &mut Value) {
    let Some(s) = spec_of(obj) else {
        return;
    };
    set(s, "concurrencyPolicy", json!("Allow"));
    set(s, "suspend", json!(false));
    set(s, "successfulJobsHistoryLimit", json!(3));
    set(s, "failedJobsHistoryLimit", json!(1));
    if let Some(jt) = child(s, "jobTemplate").as_object_mut() {
        if let Some(meta) = child(jt, "metadata").as_object_mut() {
            meta.entry("creationTimestamp").or_insert(Value::Null);
        }
        if let Some(js) = child(jt, "spec").as_object_mut() {
            pod::template(child(js, "template"), SpecKind::JobTemplate);
        }
    }
}

fn service(obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let Some(s) = child(root, "spec").as_object_mut() else {
        return;
    };
    set(s, "sessionAffinity", json!("None"));
    if s.get("sessionAffinity").and_then(Value::as_str) == Some("None") {
        s.remove("sessionAffinityConfig");
    } else if s
        .get("sessionAffinityConfig")
        .and_then(|c| c.pointer("/clientIP/timeoutSeconds"))
        .is_none_or(Value::is_null)
    {
        s.insert(
            "sessionAffinityConfig".into(),
            json!({"clientIP": {"timeoutSeconds": 10800}}),
        );
    }
    set(s, "type", json!("ClusterIP"));
    let ty = s
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(ports) = s.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set(p, "protocol", json!("TCP"));
            let unset = match p.get("targetPort") {
                None | Some(Value::Null) => true,
                Some(Value::String(t)) => t.is_empty(),
                Some(n) => n.as_i64() == Some(0),
            };
            if unset && let Some(port) = p.get("port").cloned() {
                p.insert("targetPort".into(), port);
            }
        }
    }
    let has_external_ips = s
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let external =
        ty == "LoadBalancer" || ty == "NodePort" || (ty == "ClusterIP" && has_external_ips);
    if external {
        set(s, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty != "ExternalName" {
        set(s, "internalTrafficPolicy", json!("Cluster"));
        let headless = s.get("clusterIP").and_then(Value::as_str) == Some("None");
        let selectorless = s
            .get("selector")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty);
        let policy = if headless && selectorless {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        set(s, "ipFamilyPolicy", json!(policy));
        set(s, "ipFamilies", json!(["IPv4"]));
    }
    if ty == "LoadBalancer" {
        set(s, "allocateLoadBalancerNodePorts", json!(true));
    }
    if let Some(status) = child(root, "status").as_object_mut() {
        child(status, "loadBalancer");
    }
}

fn namespace(obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let name = root
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !name.is_empty()
        && let Some(meta) = child(root, "metadata").as_object_mut()
        && let Some(labels) = child(meta, "labels").as_object_mut()
    {
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    if let Some(spec) = child(root, "spec").as_object_mut() {
        set(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = child(root, "status").as_object_mut() {
        set(status, "phase", json!("Active"));
    }
}

fn node(obj: &mut Value) {
    let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(cap) = status.get("capacity").filter(|c| c.is_object()).cloned() {
        set(status, "allocatable", cap);
    }
}

fn pvc(obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    if let Some(spec) = child(root, "spec").as_object_mut() {
        set(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(status) = child(root, "status").as_object_mut() {
        set(status, "phase", json!("Pending"));
    }
}

fn pv(obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    if let Some(spec) = child(root, "spec").as_object_mut() {
        set(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        set(spec, "volumeMode", json!("Filesystem"));
        if let Some(h) = spec.get_mut("hostPath").and_then(Value::as_object_mut) {
            set(h, "type", json!(""));
        }
    }
    if let Some(status) = child(root, "status").as_object_mut() {
        set(status, "phase", json!("Pending"));
    }
}

fn endpoints(obj: &mut Value) {
    let Some(subsets) = obj.get_mut("subsets").and_then(Value::as_array_mut) else {
        return;
    };
    for ss in subsets.iter_mut() {
        if let Some(ports) = ss.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                set(p, "protocol", json!("TCP"));
            }
        }
    }
}

fn endpoint_slice(obj: &mut Value) {
    let Some(ports) = obj.get_mut("ports").and_then(Value::as_array_mut) else {
        return;
    };
    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
        set(p, "protocol", json!("TCP"));
        set(p, "name", json!(""));
    }
}

fn binding(obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    if let Some(rr) = root.get_mut("roleRef").and_then(Value::as_object_mut)
        && rr
            .get("apiGroup")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
    {
        rr.insert("apiGroup".into(), json!("rbac.authorization.k8s.io"));
    }
    if let Some(subjects) = root.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects.iter_mut().filter_map(Value::as_object_mut) {
            let kind = s.get("kind").and_then(Value::as_str).unwrap_or("");
            let empty = s
                .get("apiGroup")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty();
            if empty && (kind == "User" || kind == "Group") {
                s.insert("apiGroup".into(), json!("rbac.authorization.k8s.io"));
            }
        }
    }
}

#[cfg(test)]
mod tests;
