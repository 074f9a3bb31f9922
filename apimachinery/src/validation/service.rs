//! Services: types, ports (numbers, names, protocols, node ports), session affinity, traffic
//! policies, cluster IPs and what may change on update.

use std::collections::BTreeSet;

use serde_json::Value;

use super::field::{
    Bad, Cause, Path, duplicate, forbidden, go_quote, go_string_slice, invalid, not_supported,
    required,
};
use super::meta::validate_labels;
use super::names;
use super::pod::{validate_port_num_or_name, validate_protocol};
use super::{arr, at, int, str_at};

/// The node port range a default API server allocates from.
pub const NODE_PORT_RANGE: (i64, i64) = (30000, 32767);

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

fn is_headless(spec: &Value) -> bool {
    str_at(spec, "clusterIP") == Some("None")
}

pub fn validate_service(obj: &Value) -> Vec<Cause> {
    let spec = at(obj, &["spec"]);
    let path = Path::new("spec");
    let mut errs = Vec::new();
    let ty = str_at(spec, "type").unwrap_or("");
    let ports = arr(spec, "ports");
    let ports_path = path.child("ports");
    if ports.is_empty() && !is_headless(spec) && ty != "ExternalName" {
        errs.push(required(&ports_path, ""));
    }
    if ty == "ExternalName" {
        if !arr(spec, "clusterIPs").is_empty() {
            errs.push(forbidden(
                &path.child("clusterIPs"),
                "may not be set for ExternalName services",
            ));
        }
        let cname = str_at(spec, "externalName").unwrap_or("");
        let cname = cname.strip_suffix('.').unwrap_or(cname);
        if cname.is_empty() {
            errs.push(required(&path.child("externalName"), ""));
        } else {
            for msg in names::is_dns1123_subdomain(cname) {
                errs.push(invalid(&path.child("externalName"), cname, &msg));
            }
        }
    } else {
        for (i, ip) in arr(spec, "clusterIPs").iter().enumerate() {
            let ip = ip.as_str().unwrap_or("");
            if ip != "None" && !names::is_ip(ip) {
                errs.push(invalid(
                    &path.child("clusterIPs").index(i),
                    ip,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ));
            }
        }
        if let Some(ip) = str_at(spec, "clusterIP")
            && !ip.is_empty()
            && ip != "None"
            && !names::is_ip(ip)
            && arr(spec, "clusterIPs").is_empty()
        {
            errs.push(invalid(
                &path.child("clusterIPs").index(0),
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    let mut port_names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = ports_path.index(i);
        let name = str_at(port, "name").unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            errs.push(required(&p.child("name"), ""));
        } else if !name.is_empty() {
            for msg in names::is_dns1123_label(name) {
                errs.push(invalid(&p.child("name"), name, &msg));
            }
            if !port_names.insert(name) {
                errs.push(duplicate(&p.child("name"), name));
            }
        }
        let num = int(port, "port").unwrap_or(0);
        for msg in names::is_port_num(num) {
            errs.push(invalid(&p.child("port"), num, &msg));
        }
        errs.extend(validate_protocol(
            str_at(port, "protocol").unwrap_or(""),
            &p.child("protocol"),
        ));
        if let Some(tp) = port.get("targetPort") {
            errs.extend(validate_port_num_or_name(Some(tp), &p.child("targetPort")));
        }
    }
    errs.extend(validate_labels(
        spec.get("selector"),
        &path.child("selector"),
    ));
    match str_at(spec, "sessionAffinity").unwrap_or("") {
        "" => errs.push(required(&path.child("sessionAffinity"), "")),
        "None" | "ClientIP" => {}
        other => errs.push(not_supported(
            &path.child("sessionAffinity"),
            other,
            &["ClientIP", "None"],
        )),
    }
    if ty.is_empty() {
        errs.push(required(&path.child("type"), ""));
    } else if !TYPES.contains(&ty) {
        errs.push(not_supported(&path.child("type"), ty, TYPES));
    }
    let mut node_ports = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = ports_path.index(i);
        let protocol = str_at(port, "protocol").unwrap_or("");
        let node_port = int(port, "nodePort").unwrap_or(0);
        if node_port != 0 {
            if ty == "ClusterIP" {
                errs.push(forbidden(
                    &p.child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            } else if !(NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1).contains(&node_port) {
                errs.push(invalid(
                    &p.child("nodePort"),
                    node_port,
                    &format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORT_RANGE.0, NODE_PORT_RANGE.1
                    ),
                ));
            }
            if !node_ports.insert((protocol, node_port)) {
                errs.push(duplicate(&p.child("nodePort"), node_port));
            }
        }
        let num = int(port, "port").unwrap_or(0);
        if !seen.insert((protocol, num)) {
            errs.push(duplicate(
                &p,
                Bad::raw(format!(
                    "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{num}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                    go_quote(protocol)
                )),
            ));
        }
    }
    for (key, valid) in [
        ("externalTrafficPolicy", &["Cluster", "Local"][..]),
        ("internalTrafficPolicy", &["Cluster", "Local"][..]),
    ] {
        if let Some(v) = str_at(spec, key)
            && !valid.contains(&v)
        {
            errs.push(not_supported(&path.child(key), v, valid));
        }
    }
    if let Some(policy) = str_at(spec, "ipFamilyPolicy") {
        let valid = ["SingleStack", "PreferDualStack", "RequireDualStack"];
        if !valid.contains(&policy) {
            errs.push(not_supported(&path.child("ipFamilyPolicy"), policy, &valid));
        }
    }
    for (i, fam) in arr(spec, "ipFamilies").iter().enumerate() {
        let fam = fam.as_str().unwrap_or("");
        if fam != "IPv4" && fam != "IPv6" {
            errs.push(not_supported(
                &path.child("ipFamilies").index(i),
                fam,
                &["IPv4", "IPv6"],
            ));
        }
    }
    for (i, ip) in arr(spec, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        if !names::is_ip(ip) {
            errs.push(invalid(
                &path.child("externalIPs").index(i),
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    errs
}

/// The primary cluster IP may not change once set (except to or from ExternalName).
pub fn validate_service_update(old: &Value, new: &Value) -> Vec<Cause> {
    let os = at(old, &["spec"]);
    let ns = at(new, &["spec"]);
    if str_at(os, "type") == Some("ExternalName") || str_at(ns, "type") == Some("ExternalName") {
        return Vec::new();
    }
    let old_ip = str_at(os, "clusterIP").unwrap_or("");
    let new_ip = str_at(ns, "clusterIP").unwrap_or("");
    if !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip {
        let ips = ns
            .get("clusterIPs")
            .cloned()
            .unwrap_or_else(|| Value::Array(vec![Value::String(new_ip.to_string())]));
        return vec![invalid(
            &Path::new("spec").child("clusterIPs").index(0),
            Bad::raw(go_string_slice(Some(&ips))),
            "may not change once set",
        )];
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn msgs(errs: &[Cause]) -> Vec<String> {
        errs.iter().map(Cause::display).collect()
    }

    fn base() -> Value {
        json!({"type": "ClusterIP", "sessionAffinity": "None",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
            "selector": {"app": "web"}})
    }

    #[test]
    fn valid_service_passes() {
        assert!(validate_service(&svc(base())).is_empty());
        let headless = json!({"type": "ClusterIP", "sessionAffinity": "None", "clusterIP": "None"});
        assert!(validate_service(&svc(headless)).is_empty());
        let ext = json!({"type": "ExternalName", "sessionAffinity": "None",
            "externalName": "db.example.com."});
        assert!(validate_service(&svc(ext)).is_empty());
    }

    #[test]
    fn ports_rules() {
        let mut spec = base();
        spec["ports"] = json!([]);
        assert_eq!(
            msgs(&validate_service(&svc(spec))),
            vec!["spec.ports: Required value"]
        );
        let mut spec = base();
        spec["ports"] = json!([
            {"port": 80, "protocol": "TCP"},
            {"name": "b", "port": 0, "protocol": "HTTP", "targetPort": "Not_A_Name"}
        ]);
        assert_eq!(
            msgs(&validate_service(&svc(spec))),
            vec![
                "spec.ports[0].name: Required value",
                "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.ports[1].targetPort: Invalid value: \"Not_A_Name\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            ]
        );
    }

    #[test]
    fn type_and_node_ports() {
        let mut spec = base();
        spec["type"] = json!("Magic");
        assert_eq!(
            msgs(&validate_service(&svc(spec))),
            vec![
                "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            ]
        );
        let mut spec = base();
        spec["ports"][0]["nodePort"] = json!(30080);
        assert_eq!(
            msgs(&validate_service(&svc(spec.clone()))),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",]
        );
        spec["type"] = json!("NodePort");
        assert!(validate_service(&svc(spec.clone())).is_empty());
        spec["ports"][0]["nodePort"] = json!(80);
        assert_eq!(
            msgs(&validate_service(&svc(spec))),
            vec![
                "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
            ]
        );
    }

    #[test]
    fn cluster_ip_is_immutable() {
        let mut old = base();
        old["clusterIP"] = json!("10.96.0.10");
        old["clusterIPs"] = json!(["10.96.0.10"]);
        let mut new = old.clone();
        assert!(validate_service_update(&svc(old.clone()), &svc(new.clone())).is_empty());
        new["clusterIP"] = json!("10.96.0.11");
        new["clusterIPs"] = json!(["10.96.0.11"]);
        assert_eq!(
            msgs(&validate_service_update(&svc(old), &svc(new))),
            vec![
                "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set",
            ]
        );
    }
}
