//! The smaller kinds: Nodes, Endpoints, EndpointSlices, Events (both groups), Leases,
//! Ingresses and IngressClasses, PersistentVolumes and claims, ServiceAccounts and
//! ControllerRevisions. Mostly required fields and enumerations.

use std::collections::BTreeSet;

use serde_json::Value;

use super::field::{
    Bad, Cause, Path, duplicate, forbidden, go_quote, invalid, not_supported, required,
};
use super::meta::validate_labels;
use super::names::{self, IS_NEGATIVE};
use super::pod::validate_protocol;
use super::quantity::Quantity;
use super::{arr, at, int, str_at};

const IP_MSG: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
const EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

pub fn validate_node(node: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let tpath = Path::new("spec").child("taints");
    let mut seen = BTreeSet::new();
    for (i, t) in arr(at(node, &["spec"]), "taints").iter().enumerate() {
        let p = tpath.index(i);
        let key = str_at(t, "key").unwrap_or("");
        for msg in names::is_qualified_name(key) {
            errs.push(invalid(&p.child("key"), key, &msg));
        }
        let value = str_at(t, "value").unwrap_or("");
        for msg in names::is_label_value(value) {
            errs.push(invalid(&p.child("value"), value, &msg));
        }
        let effect = str_at(t, "effect").unwrap_or("");
        if effect.is_empty() {
            errs.push(required(&p.child("effect"), ""));
        } else if !EFFECTS.contains(&effect) {
            errs.push(not_supported(&p.child("effect"), effect, EFFECTS));
        }
        if !seen.insert((key, effect)) {
            errs.push(invalid(
                &p,
                Bad::raw(format!(
                    "core.Taint{{Key:{}, Value:{}, Effect:{}, TimeAdded:<nil>}}",
                    go_quote(key),
                    go_quote(value),
                    go_quote(effect)
                )),
                "taints must be unique by key and effect pair",
            ));
        }
    }
    errs
}

pub fn validate_endpoints(ep: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let spath = Path::new("subsets");
    for (i, ss) in arr(ep, "subsets").iter().enumerate() {
        let p = spath.index(i);
        if arr(ss, "addresses").is_empty() && arr(ss, "notReadyAddresses").is_empty() {
            errs.push(required(
                &p,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for list in ["addresses", "notReadyAddresses"] {
            for (j, addr) in arr(ss, list).iter().enumerate() {
                let ap = p.child(list).index(j);
                let ip = str_at(addr, "ip").unwrap_or("");
                if !names::is_ip(ip) {
                    errs.push(invalid(&ap.child("ip"), ip, IP_MSG));
                }
                if let Some(h) = str_at(addr, "hostname").filter(|h| !h.is_empty()) {
                    for msg in names::is_dns1123_label(h) {
                        errs.push(invalid(&ap.child("hostname"), h, &msg));
                    }
                }
            }
        }
        let ports = arr(ss, "ports");
        for (j, port) in ports.iter().enumerate() {
            let pp = p.child("ports").index(j);
            let name = str_at(port, "name").unwrap_or("");
            if ports.len() > 1 && name.is_empty() {
                errs.push(required(&pp.child("name"), ""));
            } else if !name.is_empty() {
                for msg in names::is_dns1123_label(name) {
                    errs.push(invalid(&pp.child("name"), name, &msg));
                }
            }
            let num = int(port, "port").unwrap_or(0);
            for msg in names::is_port_num(num) {
                errs.push(invalid(&pp.child("port"), num, &msg));
            }
            errs.extend(validate_protocol(
                str_at(port, "protocol").unwrap_or(""),
                &pp.child("protocol"),
            ));
        }
    }
    errs
}

pub fn validate_endpoint_slice(slice: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let types = ["FQDN", "IPv4", "IPv6"];
    match str_at(slice, "addressType").unwrap_or("") {
        "" => errs.push(required(&Path::new("addressType"), "")),
        t if !types.contains(&t) => {
            errs.push(not_supported(&Path::new("addressType"), t, &types));
        }
        _ => {}
    }
    let epath = Path::new("endpoints");
    for (i, ep) in arr(slice, "endpoints").iter().enumerate() {
        let p = epath.index(i);
        let addrs = arr(ep, "addresses");
        if addrs.is_empty() {
            errs.push(required(
                &p.child("addresses"),
                "must contain at least 1 address",
            ));
        } else if addrs.len() > 100 {
            errs.push(super::field::too_many(
                &p.child("addresses"),
                addrs.len(),
                100,
            ));
        }
        if let Some(h) = str_at(ep, "hostname") {
            for msg in names::is_dns1123_label(h) {
                errs.push(invalid(&p.child("hostname"), h, &msg));
            }
        }
    }
    let ppath = Path::new("ports");
    let mut seen = BTreeSet::new();
    for (i, port) in arr(slice, "ports").iter().enumerate() {
        let p = ppath.index(i);
        let name = str_at(port, "name").unwrap_or("");
        if !name.is_empty() {
            for msg in names::is_dns1123_label(name) {
                errs.push(invalid(&p.child("name"), name, &msg));
            }
        }
        if !seen.insert(name) {
            errs.push(duplicate(&p.child("name"), name));
        }
        errs.extend(validate_protocol(
            str_at(port, "protocol").unwrap_or(""),
            &p.child("protocol"),
        ));
        if let Some(n) = int(port, "port") {
            for msg in names::is_port_num(n) {
                errs.push(invalid(&p.child("port"), n, &msg));
            }
        }
    }
    errs
}

fn is_set(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

/// Rules for a new-style event (one with `eventTime`), in core or events.k8s.io field names.
fn reported_event(ev: &Value, involved: &str, controller_field: &str) -> Vec<Cause> {
    let mut errs = Vec::new();
    let ns = str_at(at(ev, &["metadata"]), "namespace").unwrap_or("");
    let ions = str_at(at(ev, &[involved]), "namespace").unwrap_or("");
    if ions.is_empty() && ns != "default" && ns != "kube-system" {
        errs.push(invalid(
            &Path::new("involvedObject").child("namespace"),
            ions,
            "does not match event.namespace",
        ));
    }
    let controller = str_at(ev, "reportingController").unwrap_or("");
    if controller.is_empty() {
        errs.push(required(&Path::new(controller_field), ""));
    }
    for msg in names::is_qualified_name(controller) {
        errs.push(invalid(&Path::new(controller_field), controller, &msg));
    }
    for (key, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
        let v = str_at(ev, key).unwrap_or("");
        if v.is_empty() {
            errs.push(required(&Path::new(key), ""));
        } else if v.len() > limit {
            errs.push(invalid(
                &Path::new(key),
                "",
                &format!("can have at most {limit} characters"),
            ));
        }
    }
    errs
}

pub fn validate_core_event(ev: &Value) -> Vec<Cause> {
    if is_set(ev, "eventTime") {
        return reported_event(ev, "involvedObject", "reportingComponent");
    }
    let mut errs = Vec::new();
    let ns = str_at(at(ev, &["metadata"]), "namespace").unwrap_or("");
    let ions = str_at(at(ev, &["involvedObject"]), "namespace").unwrap_or("");
    let mismatch = if ions.is_empty() {
        !ns.is_empty() && ns != "default"
    } else {
        ns != ions
    };
    if mismatch {
        errs.push(invalid(
            &Path::new("involvedObject").child("namespace"),
            ions,
            "does not match event.namespace",
        ));
    }
    errs
}

pub fn validate_events_event(ev: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    if is_set(ev, "eventTime") {
        errs.extend(reported_event(ev, "regarding", "reportingController"));
    } else {
        errs.push(required(&Path::new("eventTime"), ""));
    }
    let ty = str_at(ev, "type").unwrap_or("");
    if ty != "Normal" && ty != "Warning" {
        errs.push(invalid(
            &Path::new("type"),
            "",
            &format!("has invalid value: {ty}"),
        ));
    }
    for (key, internal) in [
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("deprecatedSource", "source"),
    ] {
        if is_set(ev, key) {
            errs.push(invalid(&Path::new(internal), "", "needs to be unset"));
        }
    }
    errs
}

pub fn validate_service_account(_sa: &Value) -> Vec<Cause> {
    Vec::new()
}

pub fn validate_controller_revision(cr: &Value) -> Vec<Cause> {
    match int(cr, "revision") {
        Some(r) if r < 0 => vec![invalid(&Path::new("revision"), r, IS_NEGATIVE)],
        _ => Vec::new(),
    }
}

pub fn validate_lease(lease: &Value) -> Vec<Cause> {
    let spec = at(lease, &["spec"]);
    let path = Path::new("spec");
    let mut errs = Vec::new();
    if let Some(d) = int(spec, "leaseDurationSeconds").filter(|d| *d <= 0) {
        errs.push(invalid(
            &path.child("leaseDurationSeconds"),
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = int(spec, "leaseTransitions").filter(|t| *t < 0) {
        errs.push(invalid(&path.child("leaseTransitions"), t, IS_NEGATIVE));
    }
    errs
}

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn validate_access_modes(spec: &Value, path: &Path, errs: &mut Vec<Cause>) {
    let modes = arr(spec, "accessModes");
    if modes.is_empty() {
        errs.push(required(
            &path.child("accessModes"),
            "at least 1 access mode is required",
        ));
    }
    for m in modes {
        let m = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&m) {
            errs.push(not_supported(&path.child("accessModes"), m, ACCESS_MODES));
        }
    }
    if let Some(vm) = str_at(spec, "volumeMode")
        && vm != "Block"
        && vm != "Filesystem"
    {
        errs.push(not_supported(
            &path.child("volumeMode"),
            vm,
            &["Block", "Filesystem"],
        ));
    }
}

/// A claim spec at `path` (also used for StatefulSet claim templates).
pub fn validate_pvc_spec(spec: &Value, path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    validate_access_modes(spec, path, &mut errs);
    errs.extend(validate_labels(
        spec.get("selector").and_then(|s| s.get("matchLabels")),
        &path.child("selector").child("matchLabels"),
    ));
    let storage_path = path.child("resources").key("storage");
    match str_at(at(spec, &["resources", "requests"]), "storage") {
        None => errs.push(required(&storage_path, "")),
        Some(text) => match Quantity::parse(text) {
            Ok(q) if q.is_negative() || q.is_zero() => {
                errs.push(invalid(
                    &storage_path,
                    &q.to_string(),
                    "must be greater than zero",
                ));
            }
            Ok(_) => {}
            Err(e) => errs.push(invalid(&storage_path, text, &e.to_string())),
        },
    }
    errs
}

pub fn validate_pvc(pvc: &Value) -> Vec<Cause> {
    validate_pvc_spec(at(pvc, &["spec"]), &Path::new("spec"))
}

pub fn validate_pvc_update(old: &Value, new: &Value) -> Vec<Cause> {
    let strip = |v: &Value| {
        let mut spec = at(v, &["spec"]).clone();
        if let Some(m) = spec.as_object_mut() {
            m.remove("volumeAttributesClassName");
            if let Some(r) = m.get_mut("resources").and_then(Value::as_object_mut) {
                r.remove("requests");
            }
        }
        spec
    };
    let bound = !str_at(at(old, &["spec"]), "volumeName")
        .unwrap_or("")
        .is_empty();
    let (o, mut n) = (strip(old), strip(new));
    // The binder fills in volumeName on an unbound claim.
    if !bound && let Some(m) = n.as_object_mut() {
        match o.get("volumeName") {
            Some(v) => m.insert("volumeName".into(), v.clone()),
            None => m.remove("volumeName"),
        };
    }
    if o == n {
        return Vec::new();
    }
    vec![forbidden(
        &Path::new("spec"),
        "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
    )]
}

pub fn validate_pv(pv: &Value) -> Vec<Cause> {
    let spec = at(pv, &["spec"]);
    let path = Path::new("spec");
    let mut errs = Vec::new();
    validate_access_modes(spec, &path, &mut errs);
    match str_at(at(spec, &["capacity"]), "storage") {
        None => errs.push(required(&path.child("capacity"), "")),
        Some(text) => {
            if let Err(e) = Quantity::parse(text) {
                errs.push(invalid(
                    &path.child("capacity").key("storage"),
                    text,
                    &e.to_string(),
                ));
            }
        }
    }
    const SOURCES: &[&str] = &[
        "hostPath",
        "local",
        "nfs",
        "csi",
        "iscsi",
        "fc",
        "rbd",
        "cephfs",
        "glusterfs",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "azureDisk",
        "azureFile",
        "cinder",
        "flexVolume",
        "flocker",
        "photonPersistentDisk",
        "portworxVolume",
        "quobyte",
        "scaleIO",
        "storageos",
        "vsphereVolume",
    ];
    let count = SOURCES.iter().filter(|s| is_set(spec, s)).count();
    if count == 0 {
        errs.push(required(&path, "must specify a volume type"));
    } else if count > 1 {
        errs.push(forbidden(&path, "may not specify more than 1 volume type"));
    }
    if let Some(p) = str_at(spec, "persistentVolumeReclaimPolicy") {
        let valid = ["Delete", "Recycle", "Retain"];
        if !valid.contains(&p) {
            errs.push(not_supported(
                &path.child("persistentVolumeReclaimPolicy"),
                p,
                &valid,
            ));
        }
    }
    errs
}

const INVALID_PATH_SEQUENCES: &[&str] = &["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: &[&str] = &["/..", "/."];

fn validate_ingress_backend(b: &Value, path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    match (is_set(b, "resource"), is_set(b, "service")) {
        (true, true) => errs.push(invalid(
            path,
            "",
            "cannot set both resource and service backends",
        )),
        (true, false) => {
            let r = at(b, &["resource"]);
            for key in ["kind", "name"] {
                if str_at(r, key).unwrap_or("").is_empty() {
                    errs.push(required(&path.child("resource").child(key), ""));
                }
            }
        }
        (false, true) => {
            let s = at(b, &["service"]);
            let spath = path.child("service");
            let name = str_at(s, "name").unwrap_or("");
            if name.is_empty() {
                errs.push(required(&spath.child("name"), ""));
            } else {
                for msg in names::is_dns1035_label(name) {
                    errs.push(invalid(&spath.child("name"), name, &msg));
                }
            }
            let pname = str_at(at(s, &["port"]), "name").unwrap_or("");
            let pnum = int(at(s, &["port"]), "number").unwrap_or(0);
            if !pname.is_empty() && pnum != 0 {
                errs.push(invalid(path, "", "cannot set both port name & port number"));
            } else if !pname.is_empty() {
                for msg in names::is_port_name(pname) {
                    errs.push(invalid(&spath.child("port").child("name"), pname, &msg));
                }
            } else if pnum != 0 {
                for msg in names::is_port_num(pnum) {
                    errs.push(invalid(&spath.child("port").child("number"), pnum, &msg));
                }
            } else {
                errs.push(required(path, "port name or number is required"));
            }
        }
        (false, false) => errs.push(invalid(path, "", "resource or service backend is required")),
    }
    errs
}

pub fn validate_ingress(ing: &Value) -> Vec<Cause> {
    let spec = at(ing, &["spec"]);
    let path = Path::new("spec");
    let mut errs = Vec::new();
    let rules = arr(spec, "rules");
    if rules.is_empty() && !is_set(spec, "defaultBackend") {
        let bad = if spec.get("rules").is_some_and(Value::is_array) {
            "[]networking.IngressRule{}"
        } else {
            "[]networking.IngressRule(nil)"
        };
        errs.push(invalid(
            &path,
            Bad::raw(bad),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = spec.get("defaultBackend").filter(|v| !v.is_null()) {
        errs.extend(validate_ingress_backend(b, &path.child("defaultBackend")));
    }
    if let Some(class) = str_at(spec, "ingressClassName") {
        for msg in names::is_dns1123_subdomain(class) {
            errs.push(invalid(&path.child("ingressClassName"), class, &msg));
        }
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = path.child("rules").index(i);
        if let Some(host) = str_at(rule, "host").filter(|h| !h.is_empty()) {
            if names::is_ip(host) {
                errs.push(invalid(
                    &rp.child("host"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
            let check = host.strip_prefix("*.").unwrap_or(host);
            for msg in names::is_dns1123_subdomain(check) {
                errs.push(invalid(&rp.child("host"), host, &msg));
            }
        }
        let Some(http) = rule.get("http").filter(|v| !v.is_null()) else {
            continue;
        };
        let hp = rp.child("http").child("paths");
        let paths = arr(http, "paths");
        if paths.is_empty() {
            errs.push(required(&hp, ""));
        }
        for (j, p) in paths.iter().enumerate() {
            let pp = hp.index(j);
            let text = str_at(p, "path").unwrap_or("");
            match str_at(p, "pathType") {
                None => {
                    errs.push(required(
                        &pp.child("pathType"),
                        "pathType must be specified",
                    ));
                    continue;
                }
                Some("Exact" | "Prefix") => {
                    if !text.starts_with('/') {
                        errs.push(invalid(&pp.child("path"), text, "must be an absolute path"));
                    }
                    for seq in INVALID_PATH_SEQUENCES.iter().filter(|s| text.contains(**s)) {
                        errs.push(invalid(
                            &pp.child("path"),
                            text,
                            &format!("must not contain '{seq}'"),
                        ));
                    }
                    for suf in INVALID_PATH_SUFFIXES.iter().filter(|s| text.ends_with(**s)) {
                        errs.push(invalid(
                            &pp.child("path"),
                            text,
                            &format!("cannot end with '{suf}'"),
                        ));
                    }
                }
                Some("ImplementationSpecific") => {
                    if !text.is_empty() && !text.starts_with('/') {
                        errs.push(invalid(&pp.child("path"), text, "must be an absolute path"));
                    }
                }
                Some(other) => errs.push(not_supported(
                    &pp.child("pathType"),
                    other,
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            errs.extend(validate_ingress_backend(
                at(p, &["backend"]),
                &pp.child("backend"),
            ));
        }
    }
    for (i, tls) in arr(spec, "tls").iter().enumerate() {
        for (j, host) in arr(tls, "hosts").iter().enumerate() {
            let host = host.as_str().unwrap_or("");
            let check = host.strip_prefix("*.").unwrap_or(host);
            for msg in names::is_dns1123_subdomain(check) {
                errs.push(invalid(
                    &path.child("tls").index(i).child("hosts").index(j),
                    host,
                    &msg,
                ));
            }
        }
    }
    errs
}

pub fn validate_ingress_class(ic: &Value) -> Vec<Cause> {
    let controller = str_at(at(ic, &["spec"]), "controller").unwrap_or("");
    let path = Path::new("spec").child("controller");
    if controller.is_empty() {
        return vec![required(&path, "")];
    }
    match controller.split_once('/') {
        Some((host, rest)) if !host.is_empty() && !rest.is_empty() => {
            names::is_dns1123_subdomain(host)
                .into_iter()
                .map(|m| invalid(&path, host, &m))
                .collect()
        }
        _ => vec![invalid(
            &path,
            controller,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msgs(errs: &[Cause]) -> Vec<String> {
        errs.iter().map(Cause::display).collect()
    }

    #[test]
    fn node_taints() {
        assert!(
            validate_node(&json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}))
                .is_empty()
        );
        let m = msgs(&validate_node(
            &json!({"spec": {"taints": [{"key": "a", "effect": "Never"}]}}),
        ));
        assert_eq!(
            m,
            vec![
                "spec.taints[0].effect: Unsupported value: \"Never\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""
            ]
        );
    }

    #[test]
    fn endpoints_and_slices() {
        let ok = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80, "protocol": "TCP"}]}]});
        assert!(validate_endpoints(&ok).is_empty());
        let bad = json!({"subsets": [{"addresses": [{"ip": "nope"}], "ports": [{"port": 0, "protocol": "TCP"}]}]});
        assert_eq!(
            msgs(&validate_endpoints(&bad)),
            vec![
                "subsets[0].addresses[0].ip: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "subsets[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            ]
        );
        let slice = json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}],
            "ports": [{"name": "", "port": 80, "protocol": "TCP"}]});
        assert!(validate_endpoint_slice(&slice).is_empty());
        let m = msgs(&validate_endpoint_slice(&json!({"endpoints": [{}]})));
        assert_eq!(
            m,
            vec![
                "addressType: Required value",
                "endpoints[0].addresses: Required value: must contain at least 1 address"
            ]
        );
    }

    #[test]
    fn events() {
        let old_style =
            json!({"metadata": {"namespace": "a"}, "involvedObject": {"namespace": "b"}});
        assert_eq!(
            msgs(&validate_core_event(&old_style)),
            vec!["involvedObject.namespace: Invalid value: \"b\": does not match event.namespace"]
        );
        let ev = json!({"metadata": {"namespace": "a"}, "eventTime": "2024-01-01T00:00:00.000000Z",
            "regarding": {"namespace": "a"}, "reportingController": "x.io/c", "reportingInstance": "i",
            "action": "Act", "reason": "R", "type": "Normal"});
        assert!(
            validate_events_event(&ev).is_empty(),
            "{:?}",
            validate_events_event(&ev)
        );
        let m = msgs(&validate_events_event(&json!({"type": "Odd"})));
        assert_eq!(
            m,
            vec![
                "eventTime: Required value",
                "type: Invalid value: \"\": has invalid value: Odd"
            ]
        );
    }

    #[test]
    fn lease_and_claims() {
        assert_eq!(
            msgs(&validate_lease(
                &json!({"spec": {"leaseDurationSeconds": 0}})
            )),
            vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
        );
        let ok = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        assert!(validate_pvc(&ok).is_empty());
        assert_eq!(
            msgs(&validate_pvc(&json!({"spec": {}}))),
            vec![
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value",
            ]
        );
        let mut grown = ok.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert!(validate_pvc_update(&ok, &grown).is_empty());
        let mut changed = ok.clone();
        changed["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        assert_eq!(validate_pvc_update(&ok, &changed).len(), 1);
    }

    #[test]
    fn ingress_rules() {
        let ok = json!({"spec": {"rules": [{"host": "a.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}});
        assert!(validate_ingress(&ok).is_empty());
        let mut bad = ok.clone();
        bad["spec"]["rules"][0]["http"]["paths"][0]
            .as_object_mut()
            .unwrap()
            .remove("pathType");
        bad["spec"]["rules"][0]["http"]["paths"].as_array_mut().unwrap().push(
            json!({"path": "x", "pathType": "Exact", "backend": {"service": {"name": "web", "port": {}}}}));
        assert_eq!(
            msgs(&validate_ingress(&bad)),
            vec![
                "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified",
                "spec.rules[0].http.paths[1].path: Invalid value: \"x\": must be an absolute path",
                "spec.rules[0].http.paths[1].backend: Required value: port name or number is required",
            ]
        );
        assert_eq!(
            msgs(&validate_ingress(&json!({"spec": {}}))),
            vec![
                "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified"
            ]
        );
        assert!(
            validate_ingress_class(&json!({"spec": {"controller": "k8s.io/ingress-nginx"}}))
                .is_empty()
        );
        assert_eq!(
            validate_ingress_class(&json!({"spec": {"controller": "nginx"}})).len(),
            1
        );
    }
}
