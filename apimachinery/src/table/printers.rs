//! The cells of each kind's row, computed as `kube-apiserver`'s printers compute them. Pods live
//! in [`super::pod`].

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::obj::{Obj, human_between, since};
use crate::selectors::LabelSelector;

pub(super) fn s(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

pub(super) fn n(number: impl Into<i64>) -> Value {
    Value::from(number.into())
}

fn n_usize(count: usize) -> Value {
    Value::from(u64::try_from(count).unwrap_or(u64::MAX))
}

fn or(text: &str, fallback: &str) -> String {
    if text.is_empty() {
        fallback.into()
    } else {
        text.into()
    }
}

pub(super) fn age(o: Obj<'_>, now: Timestamp) -> Value {
    s(since(o.time(&["metadata", "creationTimestamp"]), now))
}

/// `labels.FormatLabels`: sorted `k=v` pairs, `<none>` when empty.
fn format_labels(o: Obj<'_>, path: &[&str]) -> String {
    let pairs: Vec<String> = o
        .at(path)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

/// `metav1.FormatLabelSelector`: `<none>` for a missing or empty selector, `<error>` if invalid.
fn format_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".into();
    };
    match LabelSelector::from_api_value(sel) {
        Ok(s) if s.is_empty() => "<none>".into(),
        Ok(s) => s.to_string(),
        Err(_) => "<error>".into(),
    }
}

/// `LabelSelectorAsSelector(...).String()`, as the deployment printer uses it.
fn selector_string(sel: Option<&Value>) -> String {
    match sel.map(LabelSelector::from_api_value) {
        None => String::new(),
        Some(Ok(s)) => s.to_string(),
        Some(Err(_)) => "<invalid>".into(),
    }
}

/// Container names and images of a pod spec, each joined by commas.
fn containers(spec: Option<Obj<'_>>) -> (Value, Value) {
    let (mut names, mut images) = (Vec::new(), Vec::new());
    if let Some(spec) = spec {
        for c in spec.items(&["containers"]) {
            names.push(c.str(&["name"]));
            images.push(c.str(&["image"]));
        }
    }
    (s(names.join(",")), s(images.join(",")))
}

/// `printBoolPtr`: `True`, `False` or `<unset>`.
fn bool_ptr(o: Obj<'_>, path: &[&str]) -> String {
    match o.at(path).and_then(Value::as_bool) {
        Some(true) => "True".into(),
        Some(false) => "False".into(),
        None => "<unset>".into(),
    }
}

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Up to three items, then `+ N more...`.
fn list_with_more(list: &[String], count: usize, empty: &str) -> String {
    let shown = list.join(",");
    if count > 3 {
        format!("{shown} + {} more...", count - 3)
    } else if shown.is_empty() {
        empty.into()
    } else {
        shown
    }
}

fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(q)) => q.clone(),
        Some(Value::Number(q)) => q.to_string(),
        _ => "0".into(),
    }
}

/// `GetAccessModesAsString`: short names in a fixed order, duplicates dropped.
fn access_modes(modes: &[&str]) -> String {
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(long, _)| modes.contains(long))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

fn storage_class(o: Obj<'_>) -> String {
    match o.opt_str(&[
        "metadata",
        "annotations",
        "volume.beta.kubernetes.io/storage-class",
    ]) {
        Some(class) => class.into(),
        None => o.str(&["spec", "storageClassName"]).into(),
    }
}

/// Load balancer ingress points (IP, else hostname), deduplicated and sorted.
fn load_balancer_points(o: Obj<'_>) -> Vec<String> {
    let set: BTreeSet<String> = o
        .items(&["status", "loadBalancer", "ingress"])
        .filter_map(|i| {
            let ip = i.str(&["ip"]);
            let at = if ip.is_empty() {
                i.str(&["hostname"])
            } else {
                ip
            };
            (!at.is_empty()).then(|| at.to_string())
        })
        .collect();
    set.into_iter().collect()
}

pub(super) fn namespace(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    vec![s(o.name()), s(o.str(&["status", "phase"])), age(o, now)]
}

pub(super) fn node(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let mut status = match o
        .items(&["status", "conditions"])
        .find(|c| c.str(&["type"]) == "Ready")
    {
        Some(c) if c.str(&["status"]) == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if o.bool(&["spec", "unschedulable"]) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    if let Some(labels) = o.at(&["metadata", "labels"]).and_then(Value::as_object) {
        for (k, v) in labels {
            match k.strip_prefix("node-role.kubernetes.io/") {
                Some(role) if !role.is_empty() => {
                    roles.insert(role.to_string());
                }
                Some(_) => {}
                None if k == "kubernetes.io/role" => {
                    if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                        roles.insert(v.to_string());
                    }
                }
                None => {}
            }
        }
    }
    let roles = or(&roles.into_iter().collect::<Vec<_>>().join(","), "<none>");
    let address = |kind: &str| {
        o.items(&["status", "addresses"])
            .find(|a| a.str(&["type"]) == kind)
            .map_or("<none>".to_string(), |a| a.str(&["address"]).to_string())
    };
    let info = |field: &str| or(o.str(&["status", "nodeInfo", field]), "<unknown>");
    vec![
        s(o.name()),
        s(status),
        s(roles),
        age(o, now),
        s(o.str(&["status", "nodeInfo", "kubeletVersion"])),
        s(address("InternalIP")),
        s(address("ExternalIP")),
        s(info("osImage")),
        s(info("kernelVersion")),
        s(info("containerRuntimeVersion")),
    ]
}

fn service_external_ip(o: Obj<'_>) -> String {
    let external = o.strings(&["spec", "externalIPs"]);
    match o.str(&["spec", "type"]) {
        "ClusterIP" | "NodePort" if !external.is_empty() => external.join(","),
        "ClusterIP" | "NodePort" => "<none>".into(),
        "LoadBalancer" => {
            let mut all = load_balancer_points(o);
            if !external.is_empty() {
                all.extend(external.iter().map(|e| e.to_string()));
                all.join(",")
            } else if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => o.str(&["spec", "externalName"]).into(),
        _ => "<unknown>".into(),
    }
}

pub(super) fn service(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let cluster_ip = o
        .strings(&["spec", "clusterIPs"])
        .first()
        .map_or("<none>".to_string(), |ip| ip.to_string());
    let ports: Vec<String> = o
        .items(&["spec", "ports"])
        .map(|p| {
            let (port, proto) = (p.int(&["port"]), p.str(&["protocol"]));
            match p.int(&["nodePort"]) {
                np if np > 0 => format!("{port}:{np}/{proto}"),
                _ => format!("{port}/{proto}"),
            }
        })
        .collect();
    vec![
        s(o.name()),
        s(o.str(&["spec", "type"])),
        s(cluster_ip),
        s(service_external_ip(o)),
        s(or(&ports.join(","), "<none>")),
        age(o, now),
        s(format_labels(o, &["spec", "selector"])),
    ]
}

pub(super) fn endpoints(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let subsets = o.list(&["subsets"]);
    let text = if subsets.is_empty() {
        "<none>".to_string()
    } else {
        let (mut list, mut count) = (Vec::new(), 0);
        for ss in subsets.iter().map(Obj) {
            let addresses: Vec<&str> = ss.items(&["addresses"]).map(|a| a.str(&["ip"])).collect();
            let ports = ss.list(&["ports"]);
            if ports.is_empty() {
                count += addresses.len();
                list.extend(addresses.iter().map(|ip| ip.to_string()));
            } else {
                for port in ports.iter().map(Obj) {
                    count += addresses.len();
                    let p = port.int(&["port"]);
                    list.extend(addresses.iter().map(|ip| join_host_port(ip, p)));
                }
            }
        }
        list.truncate(3);
        list_with_more(&list, count, "")
    };
    vec![s(o.name()), s(text), age(o, now)]
}

pub(super) fn config_map(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let count = o.len(&["data"]) + o.len(&["binaryData"]);
    vec![s(o.name()), n_usize(count), age(o, now)]
}

pub(super) fn secret(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    vec![
        s(o.name()),
        s(o.str(&["type"])),
        n_usize(o.len(&["data"])),
        age(o, now),
    ]
}

pub(super) fn service_account(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    vec![s(o.name()), n_usize(o.len(&["secrets"])), age(o, now)]
}

/// Core events; `events.k8s.io` events are first mapped to this shape.
pub(super) fn event(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let first = match o.time(&["firstTimestamp"]) {
        Some(t) => human_between(t, now),
        None => since(o.time(&["eventTime"]), now),
    };
    let mut last = match o.time(&["lastTimestamp"]) {
        Some(t) => human_between(t, now),
        None => first.clone(),
    };
    let mut count = o.int(&["count"]);
    if let Some(series) = o.obj(&["series"]) {
        last = since(series.time(&["lastObservedTime"]), now);
        count = series.int(&["count"]);
    } else if count == 0 {
        count = 1;
    }
    let kind = o.str(&["involvedObject", "kind"]).to_lowercase();
    let target = match o.str(&["involvedObject", "name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = or(
        o.str(&["source", "component"]),
        o.str(&["reportingComponent"]),
    );
    let instance = or(o.str(&["source", "host"]), o.str(&["reportingInstance"]));
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        s(last),
        s(o.str(&["type"])),
        s(o.str(&["reason"])),
        s(target),
        s(o.str(&["involvedObject", "fieldPath"])),
        s(source),
        s(o.str(&["message"]).trim()),
        s(first),
        n(count),
        s(o.name()),
    ]
}

/// An `events.k8s.io/v1` event in the core shape the event printer reads.
pub(super) fn event_as_core(o: Obj<'_>) -> Value {
    let mut core = serde_json::Map::new();
    let mut copy = |to: &str, from: &[&str]| {
        if let Some(v) = o.at(from) {
            core.insert(to.into(), v.clone());
        }
    };
    copy("metadata", &["metadata"]);
    copy("involvedObject", &["regarding"]);
    copy("message", &["note"]);
    copy("reason", &["reason"]);
    copy("type", &["type"]);
    copy("source", &["deprecatedSource"]);
    copy("firstTimestamp", &["deprecatedFirstTimestamp"]);
    copy("lastTimestamp", &["deprecatedLastTimestamp"]);
    copy("count", &["deprecatedCount"]);
    copy("series", &["series"]);
    copy("eventTime", &["eventTime"]);
    copy("reportingComponent", &["reportingController"]);
    copy("reportingInstance", &["reportingInstance"]);
    Value::Object(core)
}

pub(super) fn pvc(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let phase = if o.deleting() {
        "Terminating"
    } else {
        o.str(&["status", "phase"])
    };
    let volume = o.str(&["spec", "volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(o.at(&["status", "capacity", "storage"])),
            access_modes(&o.strings(&["status", "accessModes"])),
        )
    };
    vec![
        s(o.name()),
        s(phase),
        s(volume),
        s(capacity),
        s(modes),
        s(storage_class(o)),
        s(or(o.str(&["spec", "volumeAttributesClassName"]), "<unset>")),
        age(o, now),
        s(or(o.str(&["spec", "volumeMode"]), "<unset>")),
    ]
}

pub(super) fn pv(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let claim = o.obj(&["spec", "claimRef"]).map_or(String::new(), |c| {
        format!("{}/{}", c.str(&["namespace"]), c.str(&["name"]))
    });
    let phase = if o.deleting() {
        "Terminating"
    } else {
        o.str(&["status", "phase"])
    };
    vec![
        s(o.name()),
        s(quantity(o.at(&["spec", "capacity", "storage"]))),
        s(access_modes(&o.strings(&["spec", "accessModes"]))),
        s(o.str(&["spec", "persistentVolumeReclaimPolicy"])),
        s(phase),
        s(claim),
        s(storage_class(o)),
        s(or(o.str(&["spec", "volumeAttributesClassName"]), "<unset>")),
        s(o.str(&["status", "reason"])),
        age(o, now),
        s(or(o.str(&["spec", "volumeMode"]), "<unset>")),
    ]
}

pub(super) fn deployment(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let (names, images) = containers(o.obj(&["spec", "template", "spec"]));
    vec![
        s(o.name()),
        s(format!(
            "{}/{}",
            o.int(&["status", "readyReplicas"]),
            o.int(&["spec", "replicas"])
        )),
        n(o.int(&["status", "updatedReplicas"])),
        n(o.int(&["status", "availableReplicas"])),
        age(o, now),
        names,
        images,
        s(selector_string(o.at(&["spec", "selector"]))),
    ]
}

pub(super) fn replica_set(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let (names, images) = containers(o.obj(&["spec", "template", "spec"]));
    vec![
        s(o.name()),
        n(o.int(&["spec", "replicas"])),
        n(o.int(&["status", "replicas"])),
        n(o.int(&["status", "readyReplicas"])),
        age(o, now),
        names,
        images,
        s(format_label_selector(o.at(&["spec", "selector"]))),
    ]
}

pub(super) fn stateful_set(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let (names, images) = containers(o.obj(&["spec", "template", "spec"]));
    vec![
        s(o.name()),
        s(format!(
            "{}/{}",
            o.int(&["status", "readyReplicas"]),
            o.int(&["spec", "replicas"])
        )),
        age(o, now),
        names,
        images,
    ]
}

pub(super) fn daemon_set(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let (names, images) = containers(o.obj(&["spec", "template", "spec"]));
    let status = |f: &str| n(o.int(&["status", f]));
    vec![
        s(o.name()),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        s(format_labels(
            o,
            &["spec", "template", "spec", "nodeSelector"],
        )),
        age(o, now),
        names,
        images,
        s(format_label_selector(o.at(&["spec", "selector"]))),
    ]
}

pub(super) fn controller_revision(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let controller = o
        .items(&["metadata", "ownerReferences"])
        .find(|r| r.bool(&["controller"]))
        .map_or("<none>".to_string(), |r| {
            let kind = r.str(&["kind"]);
            let group = r
                .str(&["apiVersion"])
                .rsplit_once('/')
                .map_or("", |(g, _)| g);
            let group_kind = if group.is_empty() {
                kind.to_string()
            } else {
                format!("{kind}.{group}")
            };
            if group_kind.is_empty() {
                r.str(&["name"]).to_string()
            } else {
                format!("{}/{}", group_kind.to_lowercase(), r.str(&["name"]))
            }
        });
    vec![
        s(o.name()),
        s(controller),
        n(o.int(&["revision"])),
        age(o, now),
    ]
}

pub(super) fn job(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let succeeded = o.int(&["status", "succeeded"]);
    let completions = if o.has(&["spec", "completions"]) {
        format!("{succeeded}/{}", o.int(&["spec", "completions"]))
    } else if o.int(&["spec", "parallelism"]) > 1 {
        format!("{succeeded}/1 of {}", o.int(&["spec", "parallelism"]))
    } else {
        format!("{succeeded}/1")
    };
    let duration = match (
        o.time(&["status", "startTime"]),
        o.time(&["status", "completionTime"]),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_between(start, now),
        (Some(start), Some(end)) => human_between(start, end),
    };
    let is = |kind: &str| o.condition(kind) == "True";
    let status = if is("Complete") {
        "Complete"
    } else if is("Failed") {
        "Failed"
    } else if o.deleting() {
        "Terminating"
    } else if is("Suspended") {
        "Suspended"
    } else if is("FailureTarget") {
        "FailureTarget"
    } else if is("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let (names, images) = containers(o.obj(&["spec", "template", "spec"]));
    vec![
        s(o.name()),
        s(status),
        s(completions),
        s(duration),
        age(o, now),
        names,
        images,
        s(format_label_selector(o.at(&["spec", "selector"]))),
    ]
}

pub(super) fn cron_job(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let last = match o.time(&["status", "lastScheduleTime"]) {
        Some(t) => human_between(t, now),
        None => "<none>".into(),
    };
    let job = o.obj(&["spec", "jobTemplate", "spec"]);
    let (names, images) = containers(job.and_then(|j| j.obj(&["template", "spec"])));
    vec![
        s(o.name()),
        s(o.str(&["spec", "schedule"])),
        s(or(o.str(&["spec", "timeZone"]), "<none>")),
        s(bool_ptr(o, &["spec", "suspend"])),
        n_usize(o.len(&["status", "active"])),
        s(last),
        age(o, now),
        names,
        images,
        s(format_label_selector(job.and_then(|j| j.at(&["selector"])))),
    ]
}

pub(super) fn lease(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    vec![
        s(o.name()),
        s(o.str(&["spec", "holderIdentity"])),
        age(o, now),
    ]
}

pub(super) fn endpoint_slice(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = o
        .items(&["ports"])
        .map(|p| {
            match (
                p.at(&["port"]).and_then(Value::as_i64),
                p.opt_str(&["name"]),
            ) {
                (Some(port), _) => port.to_string(),
                (None, Some(name)) => name.to_string(),
                (None, None) => "*".to_string(),
            }
        })
        .collect();
    let addresses: Vec<String> = o
        .items(&["endpoints"])
        .flat_map(|e| e.strings(&["addresses"]))
        .map(str::to_string)
        .collect();
    let shown = |all: &[String]| all.iter().take(3).cloned().collect::<Vec<_>>();
    vec![
        s(o.name()),
        s(o.str(&["addressType"])),
        s(list_with_more(&shown(&ports), ports.len(), "<unset>")),
        s(list_with_more(
            &shown(&addresses),
            addresses.len(),
            "<unset>",
        )),
        age(o, now),
    ]
}

pub(super) fn ingress(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let rules = o.list(&["spec", "rules"]);
    let mut hosts = Vec::new();
    let mut more = false;
    for rule in rules.iter().map(Obj) {
        if hosts.len() == 3 {
            more = true;
        }
        let host = rule.str(&["host"]);
        if !more && !host.is_empty() {
            hosts.push(host.to_string());
        }
    }
    let hosts = if hosts.is_empty() {
        "*".to_string()
    } else if more {
        format!("{} + {} more...", hosts.join(","), rules.len() - 3)
    } else {
        hosts.join(",")
    };
    let ports = if o.len(&["spec", "tls"]) > 0 {
        "80, 443"
    } else {
        "80"
    };
    vec![
        s(o.name()),
        s(or(o.str(&["spec", "ingressClassName"]), "<none>")),
        s(hosts),
        s(load_balancer_points(o).join(",")),
        s(ports),
        age(o, now),
    ]
}

pub(super) fn ingress_class(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let parameters = o
        .obj(&["spec", "parameters"])
        .map_or("<none>".to_string(), |p| {
            let mut text = p.str(&["kind"]).to_string();
            if let Some(group) = p.opt_str(&["apiGroup"]) {
                text = format!("{text}.{group}");
            }
            format!("{text}/{}", p.str(&["name"]))
        });
    vec![
        s(o.name()),
        s(o.str(&["spec", "controller"])),
        s(parameters),
        age(o, now),
    ]
}

pub(super) fn role_binding(o: Obj<'_>, now: Timestamp) -> Vec<Value> {
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for subject in o.items(&["subjects"]) {
        let name = subject.str(&["name"]).to_string();
        match subject.str(&["kind"]) {
            "ServiceAccount" => sas.push(format!("{}/{name}", subject.str(&["namespace"]))),
            "User" => users.push(name),
            "Group" => groups.push(name),
            _ => {}
        }
    }
    vec![
        s(o.name()),
        s(format!(
            "{}/{}",
            o.str(&["roleRef", "kind"]),
            o.str(&["roleRef", "name"])
        )),
        age(o, now),
        s(users.join(", ")),
        s(groups.join(", ")),
        s(sas.join(", ")),
    ]
}

/// Name and creation time in RFC 3339 (UTC, whole seconds): roles and kinds without a printer.
pub(super) fn created_at(o: Obj<'_>) -> Vec<Value> {
    let created = o
        .time(&["metadata", "creationTimestamp"])
        .map_or("0001-01-01T00:00:00Z".to_string(), |t| {
            t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
        });
    vec![s(o.name()), s(created)]
}
