use serde_json::{Value, json};

use super::*;
use crate::schema;

fn v2() -> Value {
    serde_json::from_slice(v2_json()).unwrap()
}

fn v3(path: &str) -> Value {
    serde_json::from_slice(v3_doc(path).unwrap().0).unwrap()
}

fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

fn param_names(op: &Value) -> Vec<&str> {
    op["parameters"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default()
}

#[test]
fn v2_patch_operations_declare_field_validation() {
    let doc = v2();
    assert_eq!(doc["swagger"], "2.0");
    let paths = &doc["paths"];
    let collection = &paths["/apis/apps/v1/namespaces/{namespace}/deployments"];
    assert_eq!(collection["get"]["x-kubernetes-action"], "list");
    assert_eq!(
        collection["post"]["operationId"],
        "createAppsV1NamespacedDeployment"
    );
    assert!(param_names(&collection["post"]).contains(&"fieldValidation"));
    assert_eq!(
        collection["delete"]["x-kubernetes-action"],
        "deletecollection"
    );

    let patch = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    let names = param_names(patch);
    for expected in ["body", "dryRun", "fieldManager", "fieldValidation", "force"] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert_eq!(patch["consumes"], json!(routes::PATCH_TYPES));
    assert_eq!(
        patch["responses"]["200"]["schema"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.Deployment"
    );

    let scale = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
    assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
    let log = &paths["/api/v1/namespaces/{namespace}/pods/{name}/log"];
    assert_eq!(log["get"]["produces"], json!(["text/plain"]));
    assert!(param_names(log).contains(&"tailLines"));
    assert!(paths["/api/v1/nodes/{name}"]["get"].is_object());
    assert!(paths["/api/v1/pods"]["get"].is_object());
}

#[test]
fn v2_refs_resolve_and_definitions_are_the_schema() {
    let doc = v2();
    assert_eq!(
        doc["definitions"].as_object().unwrap().len(),
        schema::definitions().len()
    );
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 1000);
    for r in all {
        let name = r.strip_prefix("#/definitions/").unwrap();
        assert!(doc["definitions"].get(name).is_some(), "dangling {r}");
    }
    // Not absurdly large: the real server's is several times this.
    assert!(v2_json().len() < 3_000_000, "{}", v2_json().len());
}

#[test]
fn v3_index_cites_each_document_by_hash() {
    let index: Value = serde_json::from_slice(v3_index()).unwrap();
    let paths = index["paths"].as_object().unwrap();
    for expected in [
        "api",
        "api/v1",
        "apis",
        "apis/apps",
        "apis/apps/v1",
        "apis/batch/v1",
    ] {
        assert!(paths.contains_key(expected), "{expected}");
    }
    for (path, entry) in paths {
        let (bytes, h) = v3_doc(path).unwrap();
        assert_eq!(h.len(), 128);
        assert!(
            h.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        assert_eq!(h, hash(bytes));
        assert_eq!(
            entry["serverRelativeURL"],
            format!("/openapi/v3/{path}?hash={h}")
        );
    }
    assert!(v3_doc("apis/nope/v1").is_none());
    assert!(v3_doc("/apis/apps/v1").is_some());
}

#[test]
fn v3_documents_are_self_contained() {
    let index: Value = serde_json::from_slice(v3_index()).unwrap();
    for path in index["paths"].as_object().unwrap().keys() {
        let doc = v3(path);
        assert_eq!(doc["openapi"], "3.0.0");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            assert!(schemas.contains_key(name), "{path}: dangling {r}");
        }
    }
    // Only what a group reaches: rbac does not drag in pods.
    let rbac = v3("apis/rbac.authorization.k8s.io/v1");
    assert!(
        rbac["components"]["schemas"]
            .get("io.k8s.api.core.v1.PodSpec")
            .is_none()
    );
    assert!(
        rbac["components"]["schemas"]
            .get("io.k8s.api.rbac.v1.Role")
            .is_some()
    );
}

/// What `kubectl explain` does with a v3 document: find the GVK on the resource's
/// operations, the schema carrying that GVK, then walk fields through refs and allOf.
mod explain {
    use super::*;

    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        if let Some(r) = schema["$ref"].as_str() {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            return &doc["components"]["schemas"][name];
        }
        match schema["allOf"].as_array() {
            Some(all) if schema.get("properties").is_none() && all.len() == 1 => {
                resolve(doc, &all[0])
            }
            _ => schema,
        }
    }

    /// The field's schema as the parent lists it (description included).
    fn field<'a>(doc: &'a Value, schema: &'a Value, name: &str) -> &'a Value {
        let resolved = resolve(doc, schema);
        if let Some(p) = resolved["properties"].get(name) {
            return p;
        }
        if resolved.get("items").is_some() {
            return field(doc, &resolved["items"], name);
        }
        panic!("no field {name} in {resolved}")
    }

    fn type_guess(doc: &Value, schema: &Value) -> String {
        if let Some(items) = schema.get("items") {
            return format!("[]{}", type_guess(doc, items));
        }
        if let Some(all) = schema["allOf"].as_array() {
            return type_guess(doc, &all[0]);
        }
        if let Some(r) = schema["$ref"].as_str() {
            // Objects show their kind name, scalars their type (Time shows as string).
            return match resolve(doc, schema)["type"].as_str() {
                None | Some("object") => r.rsplit('.').next().unwrap().to_string(),
                Some(t) => t.to_string(),
            };
        }
        schema["type"].as_str().unwrap_or("Object").to_string()
    }

    fn kind_schema<'a>(doc: &'a Value, gvk: &Value) -> &'a Value {
        doc["components"]["schemas"]
            .as_object()
            .unwrap()
            .values()
            .find(|s| {
                s["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|l| l.contains(gvk))
            })
            .unwrap_or_else(|| panic!("no schema for {gvk}"))
    }

    #[test]
    fn every_served_kind_can_be_explained() {
        for res in Registry::builtin().all() {
            let gv = if res.group.is_empty() {
                format!("api/{}", res.version)
            } else {
                format!("apis/{}/{}", res.group, res.version)
            };
            let doc = v3(&gv);
            let ns = if res.namespaced() {
                "/namespaces/{namespace}"
            } else {
                ""
            };
            let path = format!("/{gv}{ns}/{}", res.plural);
            let gvk = &doc["paths"][&path]["get"]["x-kubernetes-group-version-kind"];
            assert_eq!(gvk["kind"], res.kind, "{path}");
            let schema = kind_schema(&doc, gvk);
            let metadata = field(&doc, schema, "metadata");
            // Upstream documents every kind's metadata except CertificateSigningRequest's.
            if res.kind != "CertificateSigningRequest" {
                assert!(metadata["description"].is_string(), "{path}");
            }
            assert_eq!(type_guess(&doc, metadata), "ObjectMeta");
            assert_eq!(metadata["default"], json!({}));
        }
    }

    #[test]
    fn deployment_fields_walk_to_containers() {
        let doc = v3("apis/apps/v1");
        let deploy = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deploy["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        let spec = field(&doc, deploy, "spec");
        assert!(spec["description"].as_str().unwrap().contains("Deployment"));
        assert!(spec.get("$ref").is_none(), "refs with siblings use allOf");
        assert_eq!(
            spec["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
        let pod_spec = field(&doc, field(&doc, spec, "template"), "spec");
        let containers = field(&doc, pod_spec, "containers");
        assert_eq!(type_guess(&doc, containers), "[]Container");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["items"]["default"], json!({}));
        let ports = field(&doc, containers, "ports");
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        let created = field(&doc, field(&doc, deploy, "metadata"), "creationTimestamp");
        assert_eq!(type_guess(&doc, created), "string");
        let image = field(&doc, containers, "image");
        assert_eq!(type_guess(&doc, image), "string");
        assert!(image["description"].is_string());
        let ios = &doc["components"]["schemas"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(ios["format"], "int-or-string");
        assert_eq!(
            ios["oneOf"],
            json!([{"type": "integer"}, {"type": "string"}])
        );
    }

    /// kubectl's field-validation probe looks at one PATCH operation carrying the kind's
    /// GVK (whichever a map iteration yields first) and wants `fieldValidation` on it.
    #[test]
    fn every_patch_of_every_kind_offers_field_validation() {
        let index: Value = serde_json::from_slice(v3_index()).unwrap();
        let mut seen = 0;
        for path in index["paths"].as_object().unwrap().keys() {
            let doc = v3(path);
            for (p, item) in doc["paths"].as_object().unwrap() {
                if let Some(patch) = item.get("patch") {
                    assert!(patch["x-kubernetes-group-version-kind"].is_object(), "{p}");
                    assert!(param_names(patch).contains(&"fieldValidation"), "{p}");
                    assert!(
                        item["parameters"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .all(|x| x["name"] != "fieldValidation"),
                        "{p}: must be on the operation"
                    );
                    seen += 1;
                }
            }
        }
        assert!(seen >= Registry::builtin().all().len(), "{seen}");
    }
}

/// Writes every document under `$SKIFF_OPENAPI_DUMP` for manual checks with real clients.
#[test]
#[ignore]
fn dump_documents() {
    let Ok(dir) = std::env::var("SKIFF_OPENAPI_DUMP") else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir.join("v3")).unwrap();
    std::fs::write(dir.join("v2.json"), v2_json()).unwrap();
    std::fs::write(dir.join("v3.json"), v3_index()).unwrap();
    let index: Value = serde_json::from_slice(v3_index()).unwrap();
    for path in index["paths"].as_object().unwrap().keys() {
        let file = dir.join("v3").join(path.replace('/', "__"));
        std::fs::write(file, v3_doc(path).unwrap().0).unwrap();
    }
}
