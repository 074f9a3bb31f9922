//! OpenAPI v2-style definitions of every type the API serves.
//!
//! The schemas come from `k8s-openapi`'s `schemars` impls, keyed by the Kubernetes definition
//! name (`io.k8s.api.apps.v1.Deployment`) and linked by `#/definitions/<name>` references.
//! On top of them this module adds what the Rust types cannot carry and clients rely on:
//! the group/version/kind of each top-level type, the strategic-merge-patch and list/map
//! semantics of Kubernetes' Go struct tags (a table in `tags.rs`), the `<Kind>List` types, and the
//! real server's shapes for `IntOrString` and `Quantity`.
//!
//! The result is plain JSON Schema (`type`, `properties`, `items`, `additionalProperties`,
//! `$ref`, `required`, `description`) plus `x-kubernetes-*` extensions: stable enough for the
//! strategic-merge-patch code to navigate.

mod fixups;
mod roots;
mod tags;

use std::collections::HashMap;
use std::sync::LazyLock;

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::registry::{Registry, Resource};

/// The prefix of every `$ref` in [`definitions`].
pub const REF_PREFIX: &str = "#/definitions/";

struct Built {
    definitions: Map<String, Value>,
    /// (group, version, kind) → definition name.
    by_gvk: HashMap<(&'static str, &'static str, String), String>,
}

static BUILT: LazyLock<Built> = LazyLock::new(build);

/// Every definition, keyed by Kubernetes definition name.
pub fn definitions() -> &'static Map<String, Value> {
    &BUILT.definitions
}

/// One definition by name (`io.k8s.api.core.v1.Pod`).
pub fn definition(name: &str) -> Option<&'static Value> {
    BUILT.definitions.get(name)
}

/// The definition named by a `$ref` schema (`{"$ref": "#/definitions/<name>"}`), if any.
pub fn resolve_ref(schema: &Value) -> Option<&'static Value> {
    let reference = schema.get("$ref")?.as_str()?;
    definition(reference.strip_prefix(REF_PREFIX)?)
}

/// The definition name of a served resource's kind, e.g. `io.k8s.api.core.v1.Pod`.
pub fn definition_name(res: &Resource) -> String {
    // The registry's names are static, so the map answers without a scan.
    match BUILT
        .by_gvk
        .get(&(res.group, res.version, res.kind.to_string()))
    {
        Some(name) => name.clone(),
        None => definition_name_for(res.group, res.version, res.kind),
    }
}

/// The definition name of any group/version/kind the schema knows (lists included);
/// for unknown kinds, the name Kubernetes' naming convention would give.
pub fn definition_name_for(group: &str, version: &str, kind: &str) -> String {
    BUILT
        .by_gvk
        .iter()
        .find(|((g, v, k), _)| *g == group && *v == version && k == kind)
        .map(|(_, name)| name.clone())
        .unwrap_or_else(|| {
            let package = match group.split('.').next() {
                None | Some("") => "core",
                Some(first) => first,
            };
            format!("io.k8s.api.{package}.{version}.{kind}")
        })
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

fn build() -> Built {
    let mut generator = SchemaSettings::draft07()
        .with(|s| s.definitions_path = "/definitions".into())
        .into_generator();
    let mut gvks: Vec<(String, Value)> = Vec::new();
    let mut by_gvk = HashMap::new();
    let mut lists = Vec::new();

    for root in roots::ROOTS {
        let name = (root.add)(&mut generator);
        gvks.push((
            name.clone(),
            json!([gvk(root.group, root.version, root.kind)]),
        ));
        by_gvk.insert(
            (root.group, root.version, root.kind.to_string()),
            name.clone(),
        );
        if root.listed {
            let list_kind = format!("{}List", root.kind);
            let list_name = format!("{name}List");
            by_gvk.insert(
                (root.group, root.version, list_kind.clone()),
                list_name.clone(),
            );
            lists.push((list_name, root, list_kind, name));
        }
    }

    let group_versions: Vec<(&str, &str)> = Registry::builtin()
        .groups()
        .into_iter()
        .flat_map(|(g, versions)| versions.into_iter().map(move |v| (g, v)))
        .collect();
    for (kind, add) in roots::SHARED {
        let name = add(&mut generator);
        let all: Vec<Value> = group_versions
            .iter()
            .map(|(g, v)| gvk(g, v, kind))
            .collect();
        gvks.push((name, Value::Array(all)));
    }
    for add in roots::PLAIN {
        add(&mut generator);
    }

    let mut definitions = generator.take_definitions(false);
    fixups::apply(&mut definitions);
    tags::apply(&mut definitions);
    for (name, value) in gvks {
        if let Some(Value::Object(def)) = definitions.get_mut(&name) {
            def.insert("x-kubernetes-group-version-kind".into(), value);
        }
    }
    for (list_name, root, list_kind, item_name) in lists {
        let list = list_definition(&definitions, root, &list_kind, &item_name);
        definitions.insert(list_name, list);
    }
    Built {
        definitions,
        by_gvk,
    }
}

/// The `<Kind>List` definition; `k8s-openapi` has one generic `List<T>` without a schema.
fn list_definition(
    definitions: &Map<String, Value>,
    root: &roots::Root,
    list_kind: &str,
    item: &str,
) -> Value {
    // apiVersion and kind read the same on every type: borrow the item's.
    let item_property = |name: &str| {
        definitions
            .get(item)
            .and_then(|d| d.pointer(&format!("/properties/{name}")))
            .cloned()
            .unwrap_or_else(|| json!({"type": "string"}))
    };
    let kind = root.kind;
    json!({
        "description": format!("{list_kind} is a list of {kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": item_property("apiVersion"),
            "items": {
                "description": format!("List of {kind} objects."),
                "type": "array",
                "items": {"$ref": format!("{REF_PREFIX}{item}")},
            },
            "kind": item_property("kind"),
            "metadata": {
                "$ref": format!("{REF_PREFIX}{LIST_META}"),
                "description": "Standard list metadata.",
            },
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": [gvk(root.group, root.version, list_kind)],
    })
}

const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

#[cfg(test)]
mod tests;
