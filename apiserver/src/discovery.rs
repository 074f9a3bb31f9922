//! API discovery: legacy (`APIVersions`, `APIGroupList`, `APIResourceList`) and aggregated
//! (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`, what kubectl 1.32 asks for first).

use http::HeaderMap;
use serde_json::{Value, json};
use skiff_apimachinery::{Registry, Resource};

/// The media type of aggregated discovery responses.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client accepts aggregated discovery v2.
pub fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let item = item.replace(' ', "");
            item.contains("g=apidiscovery.k8s.io")
                && item.contains("v=v2")
                && !item.contains("v=v2beta1")
                && item.contains("as=APIGroupDiscoveryList")
        })
}

/// `GET /api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_json(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

/// The registry's groups and versions, plus the groups only reviews live in.
fn all_groups(reg: &Registry) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups = reg.groups();
    for (g, v) in crate::reviews::groups() {
        match groups.iter_mut().find(|(name, _)| *name == g) {
            Some((_, vs)) if !vs.contains(&v) => vs.push(v),
            Some(_) => {}
            None => groups.push((g, vec![v])),
        }
    }
    groups
}

/// A review as discovery lists it (create-only, cluster-scoped, never stored).
fn review_entry(r: &crate::reviews::Review, aggregated: bool) -> Value {
    let singular = r.kind.to_ascii_lowercase();
    if aggregated {
        json!({
            "resource": r.plural,
            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
            "scope": "Cluster",
            "singularResource": singular,
            "verbs": ["create"],
        })
    } else {
        json!({"name": r.plural, "singularName": singular, "namespaced": false, "kind": r.kind, "verbs": ["create"]})
    }
}

/// `GET /apis`.
pub fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = all_groups(reg)
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_json(g, &vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`.
pub fn group(reg: &Registry, name: &str) -> Option<Value> {
    all_groups(reg)
        .into_iter()
        .find(|(g, _)| *g == name && !g.is_empty())
        .map(|(g, vs)| {
            let mut v = group_json(g, &vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        })
}

/// `GET /api/v1` or `GET /apis/{group}/{version}`.
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in reg.in_group_version(group, version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced(),
            "kind": r.kind,
            "verbs": r.verbs(),
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for sub in r.subresources {
            let (g, v, k) = sub.kind(r);
            let mut e = json!({
                "name": format!("{}/{}", r.plural, sub.name()),
                "singularName": "",
                "namespaced": r.namespaced(),
                "kind": k,
                "verbs": sub.verbs(),
            });
            if g != group || v != version {
                e["group"] = json!(g);
                e["version"] = json!(v);
            }
            resources.push(e);
        }
    }
    resources
        .extend(crate::reviews::in_group_version(group, version).map(|r| review_entry(r, false)));
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn aggregated_resource(r: &Resource) -> Value {
    let subresources: Vec<Value> = r
        .subresources
        .iter()
        .map(|s| {
            let (g, v, k) = s.kind(r);
            json!({"subresource": s.name(), "responseKind": {"group": g, "version": v, "kind": k}, "verbs": s.verbs()})
        })
        .collect();
    let mut e = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced() { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    if !subresources.is_empty() {
        e["subresources"] = Value::Array(subresources);
    }
    e
}

/// Aggregated discovery for the core group (`/api`) or the named groups (`/apis`).
pub fn aggregated(reg: &Registry, core: bool) -> Value {
    let items: Vec<Value> = all_groups(reg)
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = reg
                        .in_group_version(g, v)
                        .map(aggregated_resource)
                        .chain(
                            crate::reviews::in_group_version(g, v).map(|r| review_entry(r, true)),
                        )
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut meta = json!({"creationTimestamp": null});
            if !g.is_empty() {
                meta["name"] = json!(g);
            }
            json!({"metadata": meta, "versions": vs})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_lists_resources_and_subresources() {
        let reg = Registry::builtin();
        let apps = resource_list(reg, "apps", "v1").unwrap();
        let names: Vec<&str> = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"deployments"));
        assert!(names.contains(&"deployments/scale"));
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert!(resource_list(reg, "apps", "v2").is_none());
        assert!(group(reg, "apps").is_some());
        assert!(group(reg, "").is_none());
    }

    #[test]
    fn aggregated_splits_core_and_groups() {
        let reg = Registry::builtin();
        let core = aggregated(reg, true);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        let pods = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap()
            .clone();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        let groups = aggregated(reg, false);
        assert!(
            groups["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["metadata"]["name"] == "apps")
        );
        let authz = groups["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == "authorization.k8s.io")
            .unwrap();
        let ssar = authz["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "selfsubjectaccessreviews")
            .unwrap();
        assert_eq!(ssar["verbs"], json!(["create"]));
        let sa = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "serviceaccounts")
            .unwrap();
        assert_eq!(sa["subresources"][0]["subresource"], "token");
        assert_eq!(
            sa["subresources"][0]["responseKind"]["kind"],
            "TokenRequest"
        );
    }

    #[test]
    fn review_groups_are_discoverable() {
        let reg = Registry::builtin();
        let list = group_list(reg);
        assert!(
            list["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["name"] == "authentication.k8s.io")
        );
        assert!(group(reg, "authorization.k8s.io").is_some());
        let authn = resource_list(reg, "authentication.k8s.io", "v1").unwrap();
        assert_eq!(authn["resources"][0]["name"], "selfsubjectreviews");
        assert_eq!(authn["resources"][0]["verbs"], json!(["create"]));
    }

    #[test]
    fn recognises_kubectl_accept_header() {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json".parse().unwrap());
        assert!(wants_aggregated(&h));
        h.insert(http::header::ACCEPT, "application/json".parse().unwrap());
        assert!(!wants_aggregated(&h));
    }
}
