//! Pods and pod templates: containers, ports, env, volumes and mounts, resources, probes,
//! policies and tolerations, plus the narrow set of changes a running pod accepts.

use std::collections::BTreeSet;

use serde_json::Value;

use super::field::{
    Bad, Cause, Path, duplicate, forbidden, invalid, not_found, not_supported, required,
};
use super::meta::{validate_annotations, validate_labels};
use super::names::{self, IS_NEGATIVE};
use super::quantity::{QUANTITY_FORMAT_ERROR, Quantity};
use super::{arr, at, int, obj, str_at};

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const MAX_INT32: i64 = 2_147_483_647;

/// Volume sources in the order Kubernetes checks them.
pub(crate) const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "azureFile",
    "vsphereVolume",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "scaleIO",
    "configMap",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

pub fn validate_pod(pod: &Value) -> Vec<Cause> {
    validate_pod_spec(at(pod, &["spec"]), &Path::new("spec"))
}

/// A `PodTemplateSpec` at `path` (`spec.template`). Its labels are reported at
/// `<path>.labels`, as Kubernetes does.
pub fn validate_pod_template(template: &Value, path: &Path) -> Vec<Cause> {
    if template.is_null() {
        return vec![required(path, "")];
    }
    let meta = at(template, &["metadata"]);
    let mut errs = validate_labels(meta.get("labels"), &path.child("labels"));
    errs.extend(validate_annotations(
        meta.get("annotations"),
        &path.child("annotations"),
    ));
    errs.extend(validate_pod_spec(
        at(template, &["spec"]),
        &path.child("spec"),
    ));
    errs
}

pub fn validate_pod_spec(spec: &Value, path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    let volumes = validate_volumes(arr(spec, "volumes"), &path.child("volumes"), &mut errs);
    let containers = arr(spec, "containers");
    let mut names = BTreeSet::new();
    let cpath = path.child("containers");
    if containers.is_empty() {
        errs.push(required(&cpath, ""));
    }
    for (i, c) in containers.iter().enumerate() {
        let p = cpath.index(i);
        errs.extend(validate_container(c, &volumes, &p));
        let name = str_at(c, "name").unwrap_or("");
        if !names.insert(name.to_string()) {
            errs.push(duplicate(&p.child("name"), name));
        }
        for (probe, must_be_one) in [
            ("livenessProbe", true),
            ("readinessProbe", false),
            ("startupProbe", true),
        ] {
            if let Some(pr) = c.get(probe).filter(|v| !v.is_null()) {
                errs.extend(validate_probe(pr, &p.child(probe)));
                let st = int(pr, "successThreshold");
                if must_be_one && st.is_some_and(|s| s != 1) {
                    errs.push(invalid(
                        &p.child(probe).child("successThreshold"),
                        st.unwrap_or(0),
                        "must be 1",
                    ));
                }
            }
        }
    }
    let ipath = path.child("initContainers");
    for (i, c) in arr(spec, "initContainers").iter().enumerate() {
        let p = ipath.index(i);
        errs.extend(validate_container(c, &volumes, &p));
        let name = str_at(c, "name").unwrap_or("");
        if !names.insert(name.to_string()) {
            errs.push(duplicate(&p.child("name"), name));
        }
        let restartable = str_at(c, "restartPolicy") == Some("Always");
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            if !restartable && c.get(probe).is_some_and(|v| !v.is_null()) {
                errs.push(forbidden(
                    &p.child(probe),
                    "may not be set for init containers without restartPolicy=Always",
                ));
            }
        }
    }
    errs.extend(validate_restart_policy(
        str_at(spec, "restartPolicy").unwrap_or(""),
        &path.child("restartPolicy"),
    ));
    let dns = str_at(spec, "dnsPolicy").unwrap_or("");
    match dns {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" => {}
        "None" => {
            if spec.get("dnsConfig").is_none_or(Value::is_null) {
                errs.push(required(
                    &path.child("dnsConfig"),
                    "must provide `dnsConfig` when `dnsPolicy` is None",
                ));
            }
        }
        "" => errs.push(required(&path.child("dnsPolicy"), "")),
        other => errs.push(not_supported(
            &path.child("dnsPolicy"),
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    errs.extend(validate_labels(
        spec.get("nodeSelector"),
        &path.child("nodeSelector"),
    ));
    if let Some(sa) = str_at(spec, "serviceAccountName").filter(|s| !s.is_empty()) {
        for msg in names::is_dns1123_subdomain(sa) {
            errs.push(invalid(&path.child("serviceAccountName"), sa, &msg));
        }
    }
    if let Some(node) = str_at(spec, "nodeName").filter(|s| !s.is_empty()) {
        for msg in names::is_dns1123_subdomain(node) {
            errs.push(invalid(&path.child("nodeName"), node, &msg));
        }
    }
    if let Some(ads) = int(spec, "activeDeadlineSeconds")
        && !(1..=MAX_INT32).contains(&ads)
    {
        errs.push(invalid(
            &path.child("activeDeadlineSeconds"),
            ads,
            &names::inclusive_range_error(1, MAX_INT32),
        ));
    }
    for key in ["hostname", "subdomain"] {
        if let Some(h) = str_at(spec, key).filter(|s| !s.is_empty()) {
            for msg in names::is_dns1123_label(h) {
                errs.push(invalid(&path.child(key), h, &msg));
            }
        }
    }
    errs.extend(validate_tolerations(
        arr(spec, "tolerations"),
        &path.child("tolerations"),
    ));
    errs
}

fn validate_restart_policy(policy: &str, path: &Path) -> Vec<Cause> {
    match policy {
        "Always" | "OnFailure" | "Never" => Vec::new(),
        "" => vec![required(path, "")],
        other => vec![not_supported(
            path,
            other,
            &["Always", "OnFailure", "Never"],
        )],
    }
}

/// Validates volumes, returning the names of those that are valid.
fn validate_volumes(vols: &[Value], path: &Path, errs: &mut Vec<Cause>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, v) in vols.iter().enumerate() {
        let p = path.index(i);
        let mut el = validate_volume_source(v, &p);
        let name = str_at(v, "name").unwrap_or("");
        if name.is_empty() {
            el.push(required(&p.child("name"), ""));
        } else {
            for msg in names::is_dns1123_label(name) {
                el.push(invalid(&p.child("name"), name, &msg));
            }
        }
        if names.contains(name) {
            el.push(duplicate(&p.child("name"), name));
        }
        if el.is_empty() {
            names.insert(name.to_string());
        } else {
            errs.extend(el);
        }
    }
    names
}

fn validate_volume_source(v: &Value, path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    let mut count = 0;
    for src in VOLUME_SOURCES {
        let Some(s) = v.get(*src).filter(|s| !s.is_null()) else {
            continue;
        };
        let p = path.child(src);
        if count > 0 {
            errs.push(forbidden(&p, "may not specify more than 1 volume type"));
            continue;
        }
        count += 1;
        match *src {
            "hostPath" => {
                if str_at(s, "path").unwrap_or("").is_empty() {
                    errs.push(required(&p.child("path"), ""));
                }
                let t = str_at(s, "type").unwrap_or("");
                let types = [
                    "",
                    "BlockDevice",
                    "CharDevice",
                    "Directory",
                    "DirectoryOrCreate",
                    "File",
                    "FileOrCreate",
                    "Socket",
                ];
                if !types.contains(&t) {
                    errs.push(not_supported(&p.child("type"), t, &types));
                }
            }
            "secret" => {
                if str_at(s, "secretName").unwrap_or("").is_empty() {
                    errs.push(required(&p.child("secretName"), ""));
                }
                errs.extend(validate_mode_and_items(s, &p));
            }
            "configMap" => {
                if str_at(s, "name").unwrap_or("").is_empty() {
                    errs.push(required(&p.child("name"), ""));
                }
                errs.extend(validate_mode_and_items(s, &p));
            }
            "persistentVolumeClaim" if str_at(s, "claimName").unwrap_or("").is_empty() => {
                errs.push(required(&p.child("claimName"), ""));
            }
            "downwardAPI" | "projected" => errs.extend(validate_default_mode(s, &p)),
            "emptyDir" => {
                let limit = str_at(s, "sizeLimit");
                errs.extend(
                    limit
                        .map(|l| quantity_errors(l, &p.child("sizeLimit")))
                        .unwrap_or_default(),
                );
            }
            "nfs" => {
                if str_at(s, "server").unwrap_or("").is_empty() {
                    errs.push(required(&p.child("server"), ""));
                }
                let np = str_at(s, "path").unwrap_or("");
                if np.is_empty() {
                    errs.push(required(&p.child("path"), ""));
                } else if !np.starts_with('/') {
                    errs.push(invalid(&p.child("path"), np, "must be an absolute path"));
                }
            }
            "csi" if str_at(s, "driver").unwrap_or("").is_empty() => {
                errs.push(required(&p.child("driver"), ""));
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(required(path, "must specify a volume type"));
    }
    errs
}

fn validate_default_mode(s: &Value, path: &Path) -> Vec<Cause> {
    match int(s, "defaultMode") {
        Some(m) if !(0..=0o777).contains(&m) => {
            vec![invalid(&path.child("defaultMode"), m, FILE_MODE_ERROR)]
        }
        _ => Vec::new(),
    }
}

fn validate_mode_and_items(s: &Value, path: &Path) -> Vec<Cause> {
    let mut errs = validate_default_mode(s, path);
    for (i, item) in arr(s, "items").iter().enumerate() {
        let p = path.child("items").index(i);
        let key = str_at(item, "key").unwrap_or("");
        if key.is_empty() {
            errs.push(required(&p.child("key"), ""));
        }
        let ip = str_at(item, "path").unwrap_or("");
        if ip.is_empty() {
            errs.push(required(&p.child("path"), ""));
        } else {
            errs.extend(validate_local_descending_path(ip, &p.child("path")));
        }
        if let Some(m) = int(item, "mode").filter(|m| !(0..=0o777).contains(m)) {
            errs.push(invalid(&p.child("mode"), m, FILE_MODE_ERROR));
        }
    }
    errs
}

fn validate_local_descending_path(target: &str, path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    if target.starts_with('/') {
        errs.push(invalid(path, target, "must be a relative path"));
    }
    if target.split('/').any(|part| part == "..") {
        errs.push(invalid(path, target, "must not contain '..'"));
    }
    errs
}

fn validate_container(c: &Value, volumes: &BTreeSet<String>, path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    let name = str_at(c, "name").unwrap_or("");
    if name.is_empty() {
        errs.push(required(&path.child("name"), ""));
    } else {
        for msg in names::is_dns1123_label(name) {
            errs.push(invalid(&path.child("name"), name, &msg));
        }
    }
    if str_at(c, "image").unwrap_or("").is_empty() {
        errs.push(required(&path.child("image"), ""));
    }
    match str_at(c, "terminationMessagePolicy").unwrap_or("") {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(required(
            &path.child("terminationMessagePolicy"),
            "must be 'File' or 'FallbackToLogsOnError'",
        )),
        other => errs.push(not_supported(
            &path.child("terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    errs.extend(validate_container_ports(
        arr(c, "ports"),
        &path.child("ports"),
    ));
    errs.extend(validate_env(arr(c, "env"), &path.child("env")));
    errs.extend(validate_volume_mounts(
        arr(c, "volumeMounts"),
        volumes,
        &path.child("volumeMounts"),
    ));
    match str_at(c, "imagePullPolicy").unwrap_or("") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(required(&path.child("imagePullPolicy"), "")),
        other => errs.push(not_supported(
            &path.child("imagePullPolicy"),
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    errs.extend(validate_resources(
        at(c, &["resources"]),
        &path.child("resources"),
    ));
    errs
}

fn validate_container_ports(ports: &[Value], path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        if let Some(name) = str_at(port, "name").filter(|n| !n.is_empty()) {
            let msgs = names::is_port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(invalid(&p.child("name"), name, &msg));
                }
            } else if !names.insert(name) {
                errs.push(duplicate(&p.child("name"), name));
            }
        }
        match int(port, "containerPort").unwrap_or(0) {
            0 => errs.push(required(&p.child("containerPort"), "")),
            n => {
                for msg in names::is_port_num(n) {
                    errs.push(invalid(&p.child("containerPort"), n, &msg));
                }
            }
        }
        if let Some(h) = int(port, "hostPort").filter(|h| *h != 0) {
            for msg in names::is_port_num(h) {
                errs.push(invalid(&p.child("hostPort"), h, &msg));
            }
        }
        errs.extend(validate_protocol(
            str_at(port, "protocol").unwrap_or(""),
            &p.child("protocol"),
        ));
    }
    errs
}

pub fn validate_protocol(protocol: &str, path: &Path) -> Vec<Cause> {
    if protocol.is_empty() {
        vec![required(path, "")]
    } else if PROTOCOLS.contains(&protocol) {
        Vec::new()
    } else {
        vec![not_supported(path, protocol, PROTOCOLS)]
    }
}

fn validate_env(env: &[Value], path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    for (i, ev) in env.iter().enumerate() {
        let p = path.index(i);
        let name = str_at(ev, "name").unwrap_or("");
        if name.is_empty() {
            errs.push(required(&p.child("name"), ""));
        }
        for msg in names::is_env_var_name(name) {
            errs.push(invalid(&p.child("name"), name, &msg));
        }
        let Some(from) = ev.get("valueFrom").filter(|v| !v.is_null()) else {
            continue;
        };
        let fp = p.child("valueFrom");
        let sources: Vec<&str> = [
            "fieldRef",
            "resourceFieldRef",
            "configMapKeyRef",
            "secretKeyRef",
        ]
        .into_iter()
        .filter(|k| from.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
        match sources.as_slice() {
            [] => errs.push(invalid(
                &fp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            )),
            [one] => {
                if !str_at(ev, "value").unwrap_or("").is_empty() {
                    errs.push(invalid(
                        &fp,
                        "",
                        "may not be specified when `value` is not empty",
                    ));
                }
                let src = &from[*one];
                let sp = fp.child(one);
                match *one {
                    "fieldRef" => {
                        if str_at(src, "fieldPath").unwrap_or("").is_empty() {
                            errs.push(required(&sp.child("fieldPath"), ""));
                        }
                    }
                    "resourceFieldRef" => {
                        if str_at(src, "resource").unwrap_or("").is_empty() {
                            errs.push(required(&sp.child("resource"), ""));
                        }
                    }
                    _ => {
                        let key = str_at(src, "key").unwrap_or("");
                        if key.is_empty() {
                            errs.push(required(&sp.child("key"), ""));
                        } else {
                            for msg in names::is_config_map_key(key) {
                                errs.push(invalid(&sp.child("key"), key, &msg));
                            }
                        }
                        if str_at(src, "name").unwrap_or("").is_empty() {
                            errs.push(required(&sp.child("name"), ""));
                        }
                    }
                }
            }
            _ => errs.push(invalid(
                &fp,
                "",
                "may not have more than one field specified at a time",
            )),
        }
    }
    errs
}

fn validate_volume_mounts(mounts: &[Value], volumes: &BTreeSet<String>, path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    let mut points = BTreeSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let p = path.index(i);
        let name = str_at(m, "name").unwrap_or("");
        if name.is_empty() {
            errs.push(required(&p.child("name"), ""));
        }
        if !volumes.contains(name) {
            errs.push(not_found(&p.child("name"), name));
        }
        let mp = str_at(m, "mountPath").unwrap_or("");
        if mp.is_empty() {
            errs.push(required(&p.child("mountPath"), ""));
        }
        if !points.insert(mp) {
            errs.push(invalid(&p.child("mountPath"), mp, "must be unique"));
        }
        if let Some(sub) = str_at(m, "subPath").filter(|s| !s.is_empty()) {
            errs.extend(validate_local_descending_path(sub, &p.child("subPath")));
        }
        if let Some(prop) = str_at(m, "mountPropagation") {
            let valid = ["Bidirectional", "HostToContainer", "None"];
            if !valid.contains(&prop) {
                errs.push(not_supported(&p.child("mountPropagation"), prop, &valid));
            }
        }
    }
    errs
}

fn quantity_errors(text: &str, path: &Path) -> Vec<Cause> {
    match Quantity::parse(text) {
        Err(_) => vec![invalid(path, text, QUANTITY_FORMAT_ERROR)],
        Ok(q) if q.is_negative() => vec![invalid(path, &q.to_string(), IS_NEGATIVE)],
        Ok(_) => Vec::new(),
    }
}

fn is_standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

fn validate_resource_name(name: &str, path: &Path) -> Vec<Cause> {
    let mut errs: Vec<Cause> = names::is_qualified_name(name)
        .into_iter()
        .map(|m| invalid(path, name, &m))
        .collect();
    if errs.is_empty() {
        let native = !name.contains('/') || name.contains("kubernetes.io/");
        if native && !is_standard_container_resource(name) {
            errs.push(invalid(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    }
    errs
}

fn validate_resources(res: &Value, path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    let lim_path = path.child("limits");
    let req_path = path.child("requests");
    let limits = obj(res, "limits");
    let overcommit = |n: &str| {
        let native = !n.contains('/') || n.contains("kubernetes.io/");
        native && !n.starts_with("hugepages-")
    };
    if let Some(limits) = limits {
        for (name, q) in limits {
            let p = lim_path.key(name);
            errs.extend(validate_resource_name(name, &p));
            errs.extend(quantity_errors(q.as_str().unwrap_or(""), &p));
        }
    }
    if let Some(requests) = obj(res, "requests") {
        for (name, q) in requests {
            let p = req_path.key(name);
            errs.extend(validate_resource_name(name, &p));
            let text = q.as_str().unwrap_or("");
            errs.extend(quantity_errors(text, &p));
            let Ok(req) = Quantity::parse(text) else {
                continue;
            };
            match limits
                .and_then(|l| l.get(name))
                .and_then(Value::as_str)
                .map(Quantity::parse)
            {
                Some(Ok(lim)) => {
                    if req != lim && !overcommit(name) {
                        errs.push(invalid(
                            &req_path,
                            &req.to_string(),
                            &format!("must be equal to {name} limit of {lim}"),
                        ));
                    } else if req > lim {
                        errs.push(invalid(
                            &req_path,
                            &req.to_string(),
                            &format!("must be less than or equal to {name} limit of {lim}"),
                        ));
                    }
                }
                Some(Err(_)) => {}
                None if !overcommit(name) => errs.push(required(
                    &lim_path,
                    "Limit must be set for non overcommitable resources",
                )),
                None => {}
            }
        }
    }
    errs
}

fn validate_probe(probe: &Value, path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    let handlers: Vec<&str> = ["exec", "httpGet", "tcpSocket", "grpc"]
        .into_iter()
        .filter(|h| probe.get(*h).is_some_and(|v| !v.is_null()))
        .collect();
    match handlers.as_slice() {
        [] => errs.push(required(path, "must specify a handler type")),
        [_] => {}
        [_, rest @ ..] => {
            for h in rest {
                errs.push(forbidden(
                    &path.child(h),
                    "may not specify more than 1 handler type",
                ));
            }
        }
    }
    if let Some(hg) = probe.get("httpGet").filter(|v| !v.is_null()) {
        errs.extend(validate_port_num_or_name(
            hg.get("port"),
            &path.child("httpGet").child("port"),
        ));
    }
    if let Some(ts) = probe.get("tcpSocket").filter(|v| !v.is_null()) {
        errs.extend(validate_port_num_or_name(
            ts.get("port"),
            &path.child("tcpSocket").child("port"),
        ));
    }
    for key in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        if let Some(n) = int(probe, key).filter(|n| *n < 0) {
            errs.push(invalid(&path.child(key), n, IS_NEGATIVE));
        }
    }
    if let Some(n) = int(probe, "terminationGracePeriodSeconds").filter(|n| *n <= 0) {
        errs.push(invalid(
            &path.child("terminationGracePeriodSeconds"),
            n,
            "must be greater than 0",
        ));
    }
    errs
}

/// An int-or-string port: a port number or an IANA port name.
pub fn validate_port_num_or_name(port: Option<&Value>, path: &Path) -> Vec<Cause> {
    match port {
        Some(Value::String(s)) => names::is_port_name(s)
            .into_iter()
            .map(|m| invalid(path, s, &m))
            .collect(),
        Some(n) => {
            let n = n.as_i64().unwrap_or(0);
            names::is_port_num(n)
                .into_iter()
                .map(|m| invalid(path, n, &m))
                .collect()
        }
        None => names::is_port_num(0)
            .into_iter()
            .map(|m| invalid(path, 0, &m))
            .collect(),
    }
}

fn validate_tolerations(tols: &[Value], path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    for (i, t) in tols.iter().enumerate() {
        let p = path.index(i);
        let key = str_at(t, "key").unwrap_or("");
        let op = str_at(t, "operator").unwrap_or("");
        let effect = str_at(t, "effect").unwrap_or("");
        let value = str_at(t, "value").unwrap_or("");
        if !key.is_empty() {
            for msg in names::is_qualified_name(key) {
                errs.push(invalid(&p.child("key"), key, &msg));
            }
        }
        if key.is_empty() && op != "Exists" {
            errs.push(invalid(
                &p.child("operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.get("tolerationSeconds").is_some_and(|v| !v.is_null()) && effect != "NoExecute" {
            errs.push(invalid(
                &p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {
                let msgs = names::is_label_value(value);
                if !msgs.is_empty() {
                    errs.push(invalid(&p.child("operator"), value, &msgs.join(";")));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(invalid(
                        &p.child("operator"),
                        Bad::raw(format!(
                            "core.Toleration{{Key:{}, Operator:\"Exists\", Value:{}, Effect:{}, TolerationSeconds:(*int64)(nil)}}",
                            super::field::go_quote(key),
                            super::field::go_quote(value),
                            super::field::go_quote(effect)
                        )),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(not_supported(
                &p.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect)
        {
            errs.push(not_supported(
                &p.child("effect"),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
    errs
}

const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// What may change in a pod's spec: images, a shrinking `activeDeadlineSeconds`, added
/// tolerations, and a negative grace period becoming 1.
pub fn validate_pod_update(old: &Value, new: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let spec_path = Path::new("spec");
    let old_spec = at(old, &["spec"]);
    let new_spec = at(new, &["spec"]);
    let ads_path = spec_path.child("activeDeadlineSeconds");
    match (
        int(old_spec, "activeDeadlineSeconds"),
        int(new_spec, "activeDeadlineSeconds"),
    ) {
        (_, Some(n)) if !(0..=MAX_INT32).contains(&n) => {
            errs.push(invalid(
                &ads_path,
                n,
                &names::inclusive_range_error(0, MAX_INT32),
            ));
            return errs;
        }
        (Some(o), Some(n)) if o < n => {
            errs.push(invalid(
                &ads_path,
                n,
                "must be less than or equal to previous value",
            ));
            return errs;
        }
        (Some(_), None) => errs.push(invalid(
            &ads_path,
            Bad::raw("null"),
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    let old_tols = arr(old_spec, "tolerations");
    let new_tols = arr(new_spec, "tolerations");
    let kept = old_tols.iter().all(|ot| {
        new_tols.iter().any(|nt| {
            let mut a = ot.clone();
            let mut b = nt.clone();
            if let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object_mut()) {
                a.remove("tolerationSeconds");
                b.remove("tolerationSeconds");
            }
            a == b
        })
    });
    if !kept {
        errs.push(forbidden(
            &spec_path.child("tolerations"),
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }
    // Replace everything that may change by its old value; what remains must be equal.
    let mut munged = new_spec.clone();
    if let Some(m) = munged.as_object_mut() {
        for list in ["containers", "initContainers"] {
            if let Some(items) = m.get_mut(list).and_then(Value::as_array_mut) {
                let old_items = arr(old_spec, list);
                for (i, c) in items.iter_mut().enumerate() {
                    if let (Some(c), Some(image)) = (
                        c.as_object_mut(),
                        old_items.get(i).and_then(|o| o.get("image")),
                    ) {
                        c.insert("image".into(), image.clone());
                    }
                }
            }
        }
        for key in ["activeDeadlineSeconds", "tolerations"] {
            match old_spec.get(key) {
                Some(v) => m.insert(key.into(), v.clone()),
                None => m.remove(key),
            };
        }
        let old_grace = int(old_spec, "terminationGracePeriodSeconds");
        let new_grace = int(new_spec, "terminationGracePeriodSeconds");
        if old_grace.is_some_and(|g| g < 0)
            && new_grace == Some(1)
            && let Some(g) = old_spec.get("terminationGracePeriodSeconds")
        {
            m.insert("terminationGracePeriodSeconds".into(), g.clone());
        }
    }
    if &munged != old_spec {
        errs.push(forbidden(&spec_path, POD_UPDATE_FORBIDDEN));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    fn ctr(name: &str) -> Value {
        json!({"name": name, "image": "nginx", "imagePullPolicy": "Always",
            "terminationMessagePolicy": "File"})
    }

    fn base_spec() -> Value {
        json!({"containers": [ctr("web")], "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"})
    }

    fn msgs(errs: &[Cause]) -> Vec<String> {
        errs.iter().map(Cause::display).collect()
    }

    #[test]
    fn valid_pod_passes() {
        assert!(validate_pod(&pod(base_spec())).is_empty());
    }

    #[test]
    fn containers_required_and_named() {
        let mut spec = base_spec();
        spec["containers"] = json!([]);
        assert_eq!(
            msgs(&validate_pod(&pod(spec))),
            vec!["spec.containers: Required value"]
        );

        let mut spec = base_spec();
        spec["containers"] = json!([ctr("web"), ctr("web"), {"name": "Bad_Name",
            "imagePullPolicy": "Sometimes", "terminationMessagePolicy": "File"}]);
        spec["initContainers"] = json!([ctr("web")]);
        let m = msgs(&validate_pod(&pod(spec)));
        assert!(
            m.contains(&"spec.containers[1].name: Duplicate value: \"web\"".to_string()),
            "{m:?}"
        );
        assert!(m.contains(&"spec.containers[2].image: Required value".to_string()));
        assert!(m.iter().any(|e| e.starts_with(
            "spec.containers[2].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label"
        )));
        assert!(m.contains(&"spec.containers[2].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"".to_string()));
        assert!(m.contains(&"spec.initContainers[0].name: Duplicate value: \"web\"".to_string()));
    }

    #[test]
    fn ports_and_env() {
        let mut spec = base_spec();
        spec["containers"][0]["ports"] = json!([
            {"containerPort": 80, "name": "http", "protocol": "TCP"},
            {"containerPort": 70000, "name": "http", "protocol": "TCP"},
            {"containerPort": 0, "protocol": "ICMP"}
        ]);
        spec["containers"][0]["env"] = json!([{"name": "OK_1"}, {"name": "A=B"}]);
        let m = msgs(&validate_pod(&pod(spec)));
        assert_eq!(
            m,
            vec![
                "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
                "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[2].containerPort: Required value",
                "spec.containers[0].ports[2].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.containers[0].env[1].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
            ]
        );
    }

    #[test]
    fn volumes_and_mounts() {
        let mut spec = base_spec();
        spec["volumes"] = json!([
            {"name": "a", "emptyDir": {}},
            {"name": "a", "emptyDir": {}},
            {"name": "b"},
            {"name": "c", "emptyDir": {}, "secret": {"secretName": "s"}}
        ]);
        spec["containers"][0]["volumeMounts"] = json!([
            {"name": "a", "mountPath": "/a"},
            {"name": "zz", "mountPath": "/a"}
        ]);
        let m = msgs(&validate_pod(&pod(spec)));
        assert_eq!(
            m,
            vec![
                "spec.volumes[1].name: Duplicate value: \"a\"",
                "spec.volumes[2]: Required value: must specify a volume type",
                "spec.volumes[3].secret: Forbidden: may not specify more than 1 volume type",
                "spec.containers[0].volumeMounts[1].name: Not found: \"zz\"",
                "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/a\": must be unique",
            ]
        );
    }

    #[test]
    fn policies() {
        let mut spec = base_spec();
        spec["restartPolicy"] = json!("Sometimes");
        spec["dnsPolicy"] = json!("Weird");
        let m = msgs(&validate_pod(&pod(spec)));
        assert_eq!(
            m,
            vec![
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
                "spec.dnsPolicy: Unsupported value: \"Weird\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
            ]
        );
    }

    #[test]
    fn resources_requests_within_limits() {
        let mut spec = base_spec();
        spec["containers"][0]["resources"] = json!({
            "limits": {"cpu": "1", "memory": "1Gi"},
            "requests": {"cpu": "1500m", "memory": "512Mi"}
        });
        let m = msgs(&validate_pod(&pod(spec.clone())));
        assert_eq!(
            m,
            vec![
                "spec.containers[0].resources.requests: Invalid value: \"1500m\": must be less than or equal to cpu limit of 1"
            ]
        );
        spec["containers"][0]["resources"] = json!({"requests": {"cpu": "lots", "memory": "-1"}});
        let m = msgs(&validate_pod(&pod(spec.clone())));
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].starts_with("spec.containers[0].resources.requests[cpu]: Invalid value: \"lots\": quantities must match"));
        assert_eq!(
            m[1],
            "spec.containers[0].resources.requests[memory]: Invalid value: \"-1\": must be greater than or equal to 0"
        );
        spec["containers"][0]["resources"] = json!({"limits": {"gpu": "1"}});
        let m = msgs(&validate_pod(&pod(spec)));
        assert_eq!(
            m,
            vec![
                "spec.containers[0].resources.limits[gpu]: Invalid value: \"gpu\": must be a standard resource for containers"
            ]
        );
    }

    #[test]
    fn probes_and_tolerations() {
        let mut spec = base_spec();
        spec["containers"][0]["livenessProbe"] = json!({"periodSeconds": -1});
        spec["tolerations"] = json!([{"operator": "Equal", "value": "x"},
            {"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]);
        let m = msgs(&validate_pod(&pod(spec)));
        assert_eq!(
            m,
            vec![
                "spec.containers[0].livenessProbe: Required value: must specify a handler type",
                "spec.containers[0].livenessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
                "spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                "spec.tolerations[1].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set",
            ]
        );
    }

    #[test]
    fn pod_update_only_allows_images_and_friends() {
        let old = pod(base_spec());
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:1.27");
        new["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
        assert!(validate_pod_update(&old, &new).is_empty());
        new["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "protocol": "TCP"}]);
        let m = msgs(&validate_pod_update(&old, &new));
        assert_eq!(m.len(), 1);
        assert!(m[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"));
        let mut shrink = old.clone();
        shrink["spec"]["activeDeadlineSeconds"] = json!(10);
        let mut grow = shrink.clone();
        grow["spec"]["activeDeadlineSeconds"] = json!(20);
        assert!(validate_pod_update(&old, &shrink).is_empty());
        assert_eq!(
            msgs(&validate_pod_update(&shrink, &grow)),
            vec![
                "spec.activeDeadlineSeconds: Invalid value: 20: must be less than or equal to previous value"
            ]
        );
    }
}
