use serde_json::json;

use super::*;

fn prop(def: &str, property: &str) -> &'static Value {
    definition(def)
        .and_then(|d| d.pointer(&format!("/properties/{property}")))
        .unwrap_or_else(|| panic!("{def}.{property} missing"))
}

fn collect_refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => collect_refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

#[test]
fn deployment_carries_its_group_version_kind() {
    let deploy = definition("io.k8s.api.apps.v1.Deployment").unwrap();
    assert_eq!(
        deploy["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert_eq!(
        prop("io.k8s.api.apps.v1.Deployment", "spec")["$ref"],
        "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    );
    // metadata is optional on the wire, whatever the Rust type says.
    assert!(
        deploy.get("required").is_none(),
        "{:?}",
        deploy.get("required")
    );
}

#[test]
fn patch_merge_keys_follow_the_go_struct_tags() {
    let cases = [
        ("io.k8s.api.core.v1.PodSpec", "containers", "name"),
        ("io.k8s.api.core.v1.PodSpec", "initContainers", "name"),
        ("io.k8s.api.core.v1.PodSpec", "volumes", "name"),
        ("io.k8s.api.core.v1.Container", "ports", "containerPort"),
        ("io.k8s.api.core.v1.Container", "env", "name"),
        ("io.k8s.api.core.v1.Container", "volumeMounts", "mountPath"),
        ("io.k8s.api.core.v1.EphemeralContainer", "env", "name"),
        ("io.k8s.api.core.v1.ServiceSpec", "ports", "port"),
        ("io.k8s.api.core.v1.NodeStatus", "addresses", "type"),
        ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "type"),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "ownerReferences",
            "uid",
        ),
    ];
    for (def, field, key) in cases {
        let p = prop(def, field);
        assert_eq!(p["x-kubernetes-patch-merge-key"], key, "{def}.{field}");
        let strategy = p["x-kubernetes-patch-strategy"].as_str().unwrap();
        assert!(strategy.starts_with("merge"), "{def}.{field}: {strategy}");
    }
    assert_eq!(
        prop("io.k8s.api.core.v1.PodSpec", "volumes")["x-kubernetes-patch-strategy"],
        "merge,retainKeys"
    );
    assert_eq!(
        prop("io.k8s.api.core.v1.ServiceSpec", "ports")["x-kubernetes-list-map-keys"],
        json!(["port", "protocol"])
    );
    let finalizers = prop(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
    );
    assert_eq!(finalizers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(finalizers["x-kubernetes-list-type"], "set");
    assert!(finalizers.get("x-kubernetes-patch-merge-key").is_none());
    assert_eq!(
        prop("io.k8s.api.apps.v1.DeploymentSpec", "strategy")["x-kubernetes-patch-strategy"],
        "retainKeys"
    );
    // Tolerations are replaced whole: no merge key.
    let tolerations = prop("io.k8s.api.core.v1.PodSpec", "tolerations");
    assert!(tolerations.get("x-kubernetes-patch-merge-key").is_none());
    assert_eq!(tolerations["x-kubernetes-list-type"], "atomic");
    assert_eq!(
        definition("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector").unwrap()["x-kubernetes-map-type"],
        "atomic"
    );
}

#[test]
fn every_ref_resolves() {
    let mut refs = Vec::new();
    for def in definitions().values() {
        collect_refs(def, &mut refs);
    }
    assert!(refs.len() > 300, "only {} refs", refs.len());
    for r in refs {
        let name = r
            .strip_prefix(REF_PREFIX)
            .unwrap_or_else(|| panic!("bad ref {r}"));
        assert!(definitions().contains_key(name), "dangling ref {r}");
    }
}

#[test]
fn every_served_kind_and_its_list_is_defined() {
    for res in Registry::builtin().all() {
        let name = definition_name(res);
        let def = definition(&name).unwrap_or_else(|| panic!("no definition {name}"));
        let gvk = json!({"group": res.group, "kind": res.kind, "version": res.version});
        assert_eq!(
            def["x-kubernetes-group-version-kind"],
            json!([gvk]),
            "{name}"
        );
        let list = definition(&definition_name_for(
            res.group,
            res.version,
            &res.list_kind(),
        ))
        .unwrap_or_else(|| panic!("no list for {name}"));
        assert_eq!(list["required"], json!(["items"]));
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            format!("{REF_PREFIX}{name}")
        );
        assert_eq!(
            list["properties"]["apiVersion"]["type"], "string",
            "{name}List apiVersion"
        );
        // Streaming subresources (exec, portforward, attach) name option kinds with no schema.
        for sub in res.subresources.iter().filter(|s| !s.is_streaming()) {
            let (g, v, k) = sub.kind(res);
            let sub_name = definition_name_for(g, v, k);
            assert!(definition(&sub_name).is_some(), "{name}/{}", sub.name());
        }
    }
    assert_eq!(
        definition_name(
            Registry::builtin()
                .get("events.k8s.io", "v1", "events")
                .unwrap()
        ),
        "io.k8s.api.events.v1.Event"
    );
    assert_eq!(
        definition_name_for("", "v1", "Pod"),
        "io.k8s.api.core.v1.Pod"
    );
}

#[test]
fn shared_envelopes_name_every_group_version() {
    let delete = definition("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions").unwrap();
    let gvks = delete["x-kubernetes-group-version-kind"]
        .as_array()
        .unwrap();
    assert!(gvks.contains(&json!({"group": "apps", "kind": "DeleteOptions", "version": "v1"})));
    assert!(gvks.contains(&json!({"group": "", "kind": "DeleteOptions", "version": "v1"})));
    let status = definition("io.k8s.apimachinery.pkg.apis.meta.v1.Status").unwrap();
    assert_eq!(
        status["x-kubernetes-group-version-kind"][0]["kind"],
        "Status"
    );
}

#[test]
fn int_or_string_and_quantity_are_strings() {
    let ios = definition("io.k8s.apimachinery.pkg.util.intstr.IntOrString").unwrap();
    assert_eq!(ios["type"], "string");
    assert_eq!(ios["format"], "int-or-string");
    let q = definition("io.k8s.apimachinery.pkg.api.resource.Quantity").unwrap();
    assert_eq!(q["type"], "string");
    assert!(q.get("x-kubernetes-int-or-string").is_none());
}

#[test]
fn resolve_ref_follows_definition_refs() {
    let spec = prop("io.k8s.api.apps.v1.Deployment", "spec");
    let resolved = resolve_ref(spec).unwrap();
    assert!(resolved["properties"]["template"].is_object());
    assert!(resolve_ref(&json!({"$ref": "#/definitions/nope"})).is_none());
    assert!(resolve_ref(&json!({"type": "string"})).is_none());
}
