//! The OpenAPI 3.0 documents served at `/openapi/v3/<group version path>`: one per group
//! version (plus the discovery roots), each carrying only the schemas its paths reach.
//!
//! Schemas are [`crate::schema::definitions`] rewritten the way the real server writes v3:
//! references point into `#/components/schemas/`, a reference with siblings (a description,
//! patch extensions) becomes `{"allOf": [{"$ref": ...}], ...siblings}`, embedded structs
//! carry `"default": {}`, and `IntOrString`/`Quantity` list their alternative types.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::schema;

use super::params::Param;
use super::routes::{Body, Operation, Route};
use super::v2::status_text;
use super::{INFO_TITLE, INFO_VERSION, security_scheme};

const V3_PREFIX: &str = "#/components/schemas/";

/// Properties that hold an embedded (non-pointer) struct in every Kubernetes type; the real
/// server gives them `"default": {}`.
const EMBEDDED: &[&str] = &["metadata", "spec", "status", "template"];

fn param(p: &Param) -> Value {
    let mut v = json!({
        "description": p.description,
        "in": match p.location {
            super::params::In::Path => "path",
            super::params::In::Query => "query",
        },
        "name": p.name,
        "schema": {"type": p.ty.name(), "uniqueItems": true},
    });
    if p.required() {
        v["required"] = json!(true);
    }
    v
}

fn schema_of(body: &Body) -> Value {
    match body {
        Body::Definition(name) => json!({"$ref": format!("{V3_PREFIX}{name}")}),
        Body::Text => json!({"type": "string"}),
    }
}

fn content(media_types: &[&str], body: &Body) -> Value {
    let schema = schema_of(body);
    Value::Object(
        media_types
            .iter()
            .map(|mt| ((*mt).to_string(), json!({"schema": schema})))
            .collect(),
    )
}

fn operation(op: &Operation) -> Value {
    let mut responses = Map::new();
    for (code, body) in &op.responses {
        responses.insert(
            code.to_string(),
            json!({
                "content": content(op.produces.media_types(), body),
                "description": status_text(*code),
            }),
        );
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    let mut v = json!({
        "description": op.description,
        "operationId": op.id,
        "responses": responses,
        "tags": [op.tag],
    });
    if !op.params.is_empty() {
        v["parameters"] = Value::Array(op.params.iter().map(param).collect());
    }
    if let Some((body, required)) = &op.body {
        let mut rb = json!({"content": content(op.consumes.unwrap_or(&["*/*"]), body)});
        if *required {
            rb["required"] = json!(true);
        }
        v["requestBody"] = rb;
    }
    if !op.action.is_empty() {
        v["x-kubernetes-action"] = json!(op.action);
    }
    if let Some((g, ver, k)) = &op.gvk {
        v["x-kubernetes-group-version-kind"] = json!({"group": g, "kind": k, "version": ver});
    }
    v
}

/// The definition a v2 `$ref` names, if it is one.
fn ref_target(schema: &Map<String, Value>) -> Option<&str> {
    schema
        .get("$ref")?
        .as_str()?
        .strip_prefix(schema::REF_PREFIX)
}

/// Whether a definition is a struct (rather than a string-like or free-form type).
fn is_struct(name: &str) -> bool {
    schema::definition(name).is_some_and(|d| d.get("properties").is_some())
}

/// Rewrite one v2 schema as v3. `embedded` marks a struct held by value, which gets
/// `"default": {}` as the real server writes it.
fn convert(schema: &Value, embedded: bool) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    if let Some(target) = ref_target(map) {
        let reference = json!({"$ref": format!("{V3_PREFIX}{target}")});
        let default = embedded && is_struct(target);
        if map.len() == 1 && !default {
            return reference;
        }
        let mut out: Map<String, Value> = map
            .iter()
            .filter(|(k, _)| *k != "$ref")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.insert("allOf".into(), json!([reference]));
        if default {
            out.insert("default".into(), json!({}));
        }
        return Value::Object(out);
    }
    let mut out = Map::new();
    for (key, value) in map {
        let converted = match (key.as_str(), value) {
            ("properties", Value::Object(props)) => Value::Object(
                props
                    .iter()
                    .map(|(name, p)| (name.clone(), convert(p, EMBEDDED.contains(&name.as_str()))))
                    .collect(),
            ),
            // Elements of a list are always held by value.
            ("items", items) => convert(items, true),
            ("additionalProperties", extra) => convert(extra, false),
            ("x-kubernetes-group-version-kind" | "enum" | "required", v) => v.clone(),
            (_, v @ Value::Object(_)) => convert(v, false),
            (_, v) => v.clone(),
        };
        out.insert(key.clone(), converted);
    }
    Value::Object(out)
}

/// One definition as a v3 component.
fn component(name: &str, def: &Value) -> Value {
    let mut v = convert(def, false);
    let alternatives = match name {
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => Some(["integer", "string"]),
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => Some(["string", "number"]),
        _ => None,
    };
    if let (Some(types), Some(obj)) = (alternatives, v.as_object_mut()) {
        obj.remove("type");
        obj.insert(
            "oneOf".into(),
            Value::Array(types.iter().map(|t| json!({"type": t})).collect()),
        );
    }
    v
}

/// The component names `$ref`s inside `v` point to.
fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix(V3_PREFIX) {
                            out.push(name.to_string());
                        }
                    }
                    _ => collect_refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// Every definition converted once; documents borrow from here.
static COMPONENTS: LazyLock<Map<String, Value>> = LazyLock::new(|| {
    schema::definitions()
        .iter()
        .map(|(name, def)| (name.clone(), component(name, def)))
        .collect()
});

/// A document whose schemas are borrowed, so building one copies no schema. Fields are in
/// the order the real server writes them (sorted).
#[derive(Serialize)]
struct Document<'a> {
    components: Components<'a>,
    info: Value,
    openapi: &'static str,
    paths: Value,
    security: Value,
}

#[derive(Serialize)]
struct Components<'a> {
    schemas: BTreeMap<&'a str, &'a Value>,
    #[serde(rename = "securitySchemes")]
    security_schemes: Value,
}

/// The v3 document of a set of routes, with every schema they reach, as JSON bytes.
pub(super) fn document(routes: &[Route]) -> Vec<u8> {
    let mut paths = Map::new();
    for route in routes {
        let mut item = Map::new();
        if !route.params.is_empty() {
            item.insert(
                "parameters".into(),
                Value::Array(route.params.iter().map(param).collect()),
            );
        }
        for op in &route.operations {
            item.insert(op.method.into(), operation(op));
        }
        paths.insert(route.path.clone(), Value::Object(item));
    }
    let paths = Value::Object(paths);

    // Every definition reachable from the paths, following the definitions' own refs.
    let components = &*COMPONENTS;
    let mut pending = Vec::new();
    collect_refs(&paths, &mut pending);
    let mut schemas = BTreeMap::new();
    while let Some(name) = pending.pop() {
        if schemas.contains_key(name.as_str()) {
            continue;
        }
        if let Some((key, def)) = components.get_key_value(&name) {
            schemas.insert(key.as_str(), def);
            collect_refs(def, &mut pending);
        }
    }

    let doc = Document {
        components: Components {
            schemas,
            security_schemes: json!({"BearerToken": security_scheme()}),
        },
        info: json!({"title": INFO_TITLE, "version": INFO_VERSION}),
        openapi: "3.0.0",
        paths,
        security: json!([{"BearerToken": []}]),
    };
    serde_json::to_vec(&doc).unwrap_or_default()
}
