//! What a patch needs to know about a field: how its list merges (strategic merge patch's
//! `patchStrategy`/`patchMergeKey`) and how server-side apply identifies its items
//! (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`).
//!
//! [`SchemaPatchMeta`] reads this from an OpenAPI definitions map; [`Untyped`] knows nothing
//! (maps merge key by key, lists are replaced whole).

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::{Map, Value};

/// Patch metadata of one object (or map) type: answers for each of its fields.
pub trait PatchMeta {
    /// Meta for field `name` of the current object; `None` = unknown field (maps still merge
    /// key by key, lists are replaced whole).
    fn field(&self, name: &str) -> Option<FieldMeta<'_>>;

    /// The schema default of field `name`, used for list-map keys an applied item omits
    /// (e.g. a container port's `protocol`).
    fn default_value(&self, _name: &str) -> Option<Value> {
        None
    }

    /// An identity of this type's meta that stays the same for the whole program, when it
    /// has one: results computed from it may then be remembered.
    fn cache_id(&self) -> Option<usize> {
        None
    }
}

/// How a strategic merge patch combines a field's old and new value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ListStrategy {
    /// Nothing declared: lists are replaced whole, maps merge key by key.
    #[default]
    Default,
    /// `replace`: the patch value replaces the old one, maps included.
    Replace,
    /// `merge`: list items with the same `key` value merge and others are added; without a
    /// key the list is a set of primitives (union).
    Merge { key: Option<String> },
}

/// How server-side apply tracks the items of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// The list is one value, owned whole.
    Atomic,
    /// A set of primitives, each item owned on its own (`v:<json>`).
    Set,
    /// Items identified by these key fields (`k:{...}`), each owned and merged on its own.
    Map(Vec<String>),
}

/// The metadata of one field.
pub struct FieldMeta<'a> {
    pub strategy: ListStrategy,
    /// `retainKeys` was declared: only relevant to clients computing patches, kept for them.
    pub retain_keys: bool,
    /// `x-kubernetes-list-type` (+ `x-kubernetes-list-map-keys`) when declared.
    pub list_type: Option<ListType>,
    /// `x-kubernetes-map-type: atomic`: the object is one value for server-side apply.
    pub atomic_map: bool,
    /// The value is a map with free-form keys (labels, annotations, data), not a struct.
    pub free_form_map: bool,
    /// The parent schema lists the field as required.
    pub required: bool,
    /// Meta of the value (for objects) or of the items (for lists).
    pub elem: Option<Box<dyn PatchMeta + 'a>>,
}

impl std::fmt::Debug for FieldMeta<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldMeta")
            .field("strategy", &self.strategy)
            .field("retain_keys", &self.retain_keys)
            .field("list_type", &self.list_type)
            .field("atomic_map", &self.atomic_map)
            .field("free_form_map", &self.free_form_map)
            .field("required", &self.required)
            .field("has_elem", &self.elem.is_some())
            .finish()
    }
}

impl<'a> FieldMeta<'a> {
    /// A field with only a strategic-merge strategy and no nested meta.
    pub fn new(strategy: ListStrategy) -> Self {
        Self {
            strategy,
            retain_keys: false,
            list_type: None,
            atomic_map: false,
            free_form_map: false,
            required: false,
            elem: None,
        }
    }

    /// Set the meta of the value or of the list items.
    pub fn with_elem(mut self, elem: impl PatchMeta + 'a) -> Self {
        self.elem = Some(Box::new(elem));
        self
    }

    /// The list type server-side apply uses: the declared one, else derived from the
    /// strategic-merge strategy the way Kubernetes does (`merge` with a key = map, `merge`
    /// without = set, anything else = atomic).
    pub fn apply_list_type(&self) -> ListType {
        if let Some(t) = &self.list_type {
            return t.clone();
        }
        match &self.strategy {
            ListStrategy::Merge { key: Some(k) } => ListType::Map(vec![k.clone()]),
            ListStrategy::Merge { key: None } => ListType::Set,
            _ => ListType::Atomic,
        }
    }

    /// The meta of the value or items, or [`Untyped`] when none is known.
    pub fn elem(&self) -> &dyn PatchMeta {
        match &self.elem {
            Some(e) => e.as_ref(),
            None => &Untyped,
        }
    }
}

/// Meta that knows no field: maps merge key by key, lists are replaced whole.
#[derive(Debug, Clone, Copy, Default)]
pub struct Untyped;

impl PatchMeta for Untyped {
    fn field(&self, _name: &str) -> Option<FieldMeta<'_>> {
        None
    }
}

/// Meta read from OpenAPI definitions (`definitions["io.k8s.api.apps.v1.Deployment"]`),
/// following `$ref`s (`#/definitions/X` or `#/components/schemas/X`), `allOf`/`anyOf`/`oneOf`
/// wrappers and `additionalProperties`.
#[derive(Debug, Clone, Copy)]
pub struct SchemaPatchMeta<'a> {
    definitions: &'a Map<String, Value>,
    schema: Option<&'a Value>,
}

impl<'a> SchemaPatchMeta<'a> {
    /// Meta of the definition named `root`; a missing definition knows no field.
    pub fn new(definitions: &'a Map<String, Value>, root: &str) -> Self {
        Self {
            definitions,
            schema: definitions.get(root),
        }
    }

    fn at(&self, schema: &'a Value) -> Self {
        Self {
            definitions: self.definitions,
            schema: Some(schema),
        }
    }

    /// Follow references and single-schema wrappers to the schema that has the content.
    fn resolve(&self, mut schema: &'a Value) -> &'a Value {
        // Bounded so a reference cycle cannot loop forever.
        for _ in 0..32 {
            let Some(obj) = schema.as_object() else {
                return schema;
            };
            if let Some(target) = obj
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| self.lookup_ref(r))
            {
                schema = target;
                continue;
            }
            if obj.contains_key("properties")
                || obj.contains_key("items")
                || obj.contains_key("additionalProperties")
            {
                return schema;
            }
            let wrapped = ["allOf", "anyOf", "oneOf"]
                .iter()
                .find_map(|k| obj.get(*k)?.as_array()?.iter().find(|s| !is_null_schema(s)));
            match wrapped {
                Some(inner) => schema = inner,
                None => return schema,
            }
        }
        schema
    }

    fn lookup_ref(&self, reference: &str) -> Option<&'a Value> {
        let name = reference
            .strip_prefix("#/definitions/")
            .or_else(|| reference.strip_prefix("#/components/schemas/"))?;
        self.definitions.get(name)
    }

    /// The schema of field `name` (or of any key, for a map with `additionalProperties`) and
    /// whether it is required.
    fn property(&self, name: &str) -> Option<(&'a Value, bool)> {
        let schema = self.resolve(self.schema?);
        let obj = schema.as_object()?;
        if let Some(p) = obj.get("properties").and_then(|p| p.get(name)) {
            let required = obj
                .get("required")
                .and_then(Value::as_array)
                .is_some_and(|r| r.iter().any(|v| v.as_str() == Some(name)));
            return Some((p, required));
        }
        match obj.get("additionalProperties") {
            Some(ap @ Value::Object(_)) => Some((ap, false)),
            _ => None,
        }
    }
}

/// [`SchemaPatchMeta`] over definitions that live for the whole program (the built-in
/// schema), remembering what it read about each field: every write walks the same few types,
/// and reading a field's meta from the OpenAPI JSON costs far more than looking it up.
#[derive(Debug, Clone, Copy)]
pub struct CachedSchemaMeta {
    inner: SchemaPatchMeta<'static>,
}

/// Field parts by (address of the type's schema, field name), per thread.
type PartsCache = HashMap<usize, HashMap<String, Option<FieldParts<'static>>>>;

thread_local! {
    static PARTS: RefCell<PartsCache> = RefCell::new(HashMap::new());
}

/// Past this many entries the cache is cleared rather than grown (unknown field names are
/// cached too, and clients choose those).
const PARTS_CACHE_MAX: usize = 4096;

impl CachedSchemaMeta {
    /// Meta of the definition named `root`.
    pub fn new(definitions: &'static Map<String, Value>, root: &str) -> Self {
        Self {
            inner: SchemaPatchMeta::new(definitions, root),
        }
    }

    fn parts(&self, name: &str) -> Option<FieldParts<'static>> {
        let schema = self.inner.schema?;
        let id = std::ptr::from_ref(schema) as usize;
        PARTS.with(|cache| {
            if let Some(hit) = cache.borrow().get(&id).and_then(|fields| fields.get(name)) {
                return hit.clone();
            }
            let parts = self.inner.parts(name);
            let mut cache = cache.borrow_mut();
            if cache.values().map(HashMap::len).sum::<usize>() >= PARTS_CACHE_MAX {
                cache.clear();
            }
            cache
                .entry(id)
                .or_default()
                .insert(name.to_owned(), parts.clone());
            parts
        })
    }
}

impl PatchMeta for CachedSchemaMeta {
    fn field(&self, name: &str) -> Option<FieldMeta<'_>> {
        let parts = self.parts(name)?;
        Some(FieldMeta {
            strategy: parts.strategy,
            retain_keys: parts.retain_keys,
            list_type: parts.list_type,
            atomic_map: parts.atomic_map,
            free_form_map: parts.free_form_map,
            required: parts.required,
            elem: parts.elem.map(|s| {
                Box::new(Self {
                    inner: self.inner.at(s),
                }) as Box<dyn PatchMeta>
            }),
        })
    }

    fn default_value(&self, name: &str) -> Option<Value> {
        self.inner.default_value(name)
    }

    fn cache_id(&self) -> Option<usize> {
        self.inner.schema.map(|s| std::ptr::from_ref(s) as usize)
    }
}

fn is_null_schema(s: &Value) -> bool {
    s.get("type").and_then(Value::as_str) == Some("null")
}

/// An extension read from the property itself or, failing that, from what it resolves to.
fn extension<'v>(prop: &'v Value, resolved: &'v Value, name: &str) -> Option<&'v Value> {
    prop.get(name).or_else(|| resolved.get(name))
}

fn schema_type(schema: &Value) -> Option<&str> {
    match schema.get("type")? {
        Value::String(s) => Some(s),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null"),
        _ => None,
    }
}

/// A field's meta as read from the schema, with the schema of its value or items.
#[derive(Debug, Clone)]
struct FieldParts<'a> {
    strategy: ListStrategy,
    retain_keys: bool,
    list_type: Option<ListType>,
    atomic_map: bool,
    free_form_map: bool,
    required: bool,
    elem: Option<&'a Value>,
}

impl<'a> SchemaPatchMeta<'a> {
    fn meta_of(&self, parts: FieldParts<'a>) -> FieldMeta<'a> {
        FieldMeta {
            strategy: parts.strategy,
            retain_keys: parts.retain_keys,
            list_type: parts.list_type,
            atomic_map: parts.atomic_map,
            free_form_map: parts.free_form_map,
            required: parts.required,
            elem: parts
                .elem
                .map(|s| Box::new(self.at(s)) as Box<dyn PatchMeta + 'a>),
        }
    }

    fn parts(&self, name: &str) -> Option<FieldParts<'a>> {
        let (prop, required) = self.property(name)?;
        let resolved = self.resolve(prop);

        let mut strategy = ListStrategy::Default;
        let mut retain_keys = false;
        if let Some(s) =
            extension(prop, resolved, "x-kubernetes-patch-strategy").and_then(Value::as_str)
        {
            for part in s.split(',').map(str::trim) {
                match part {
                    "merge" => {
                        let key = extension(prop, resolved, "x-kubernetes-patch-merge-key")
                            .and_then(Value::as_str)
                            .map(str::to_string);
                        strategy = ListStrategy::Merge { key };
                    }
                    "replace" => strategy = ListStrategy::Replace,
                    "retainKeys" => retain_keys = true,
                    _ => {}
                }
            }
        }

        let list_type =
            match extension(prop, resolved, "x-kubernetes-list-type").and_then(Value::as_str) {
                Some("atomic") => Some(ListType::Atomic),
                Some("set") => Some(ListType::Set),
                Some("map") => {
                    let keys = extension(prop, resolved, "x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|ks| {
                            ks.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    Some(ListType::Map(keys))
                }
                _ => None,
            };

        let atomic_map = extension(prop, resolved, "x-kubernetes-map-type").and_then(Value::as_str)
            == Some("atomic");

        let is_array = schema_type(resolved) == Some("array") || resolved.get("items").is_some();
        let elem_schema = if is_array {
            resolved.get("items")
        } else if resolved.get("properties").is_some()
            || resolved.get("additionalProperties").is_some()
        {
            Some(resolved)
        } else {
            None
        };
        let free_form_map = !is_array
            && resolved.get("properties").is_none()
            && resolved
                .get("additionalProperties")
                .is_some_and(Value::is_object);

        Some(FieldParts {
            strategy,
            retain_keys,
            list_type,
            atomic_map,
            free_form_map,
            required,
            elem: elem_schema,
        })
    }
}

impl PatchMeta for SchemaPatchMeta<'_> {
    fn field(&self, name: &str) -> Option<FieldMeta<'_>> {
        self.parts(name).map(|p| self.meta_of(p))
    }

    fn default_value(&self, name: &str) -> Option<Value> {
        let (prop, _) = self.property(name)?;
        prop.get("default")
            .or_else(|| self.resolve(prop).get("default"))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cached_meta_answers_like_the_schema() {
        let defs = crate::schema::definitions();
        let plain = SchemaPatchMeta::new(defs, "io.k8s.api.core.v1.Pod");
        let cached = CachedSchemaMeta::new(defs, "io.k8s.api.core.v1.Pod");
        // The debug form of each field's meta along `path`, read through `m`.
        fn describe(m: &dyn PatchMeta, path: &[&str]) -> Vec<String> {
            let Some((first, rest)) = path.split_first() else {
                return Vec::new();
            };
            let fm = m.field(first);
            let mut out = vec![format!("{fm:?}")];
            if let Some(fm) = &fm {
                out.extend(describe(fm.elem(), rest));
            }
            out
        }
        for path in [
            &["spec", "containers", "ports", "containerPort"][..],
            &["spec", "tolerations"],
            &["metadata", "labels", "app"],
            &["metadata", "ownerReferences", "uid"],
            &["nonsense", "x"],
        ] {
            // Twice: the second answers come from the cache.
            for _ in 0..2 {
                assert_eq!(describe(&cached, path), describe(&plain, path), "{path:?}");
            }
        }
        let spec = cached.field("spec").unwrap();
        let containers = spec.elem().field("containers").unwrap();
        assert_eq!(
            containers.apply_list_type(),
            ListType::Map(vec!["name".to_string()])
        );
        let again = cached.field("spec").unwrap();
        let labels = cached
            .field("metadata")
            .unwrap()
            .elem()
            .field("labels")
            .map(|l| l.free_form_map);
        assert_eq!(labels, Some(true));
        assert!(again.elem().field("containers").unwrap().required);
        assert!(cached.field("nonsense").is_none());
    }

    fn defs() -> Map<String, Value> {
        let v = json!({
            "io.k8s.api.core.v1.PodSpec": {
                "type": "object",
                "required": ["containers"],
                "properties": {
                    "containers": {
                        "type": "array",
                        "items": {"$ref": "#/definitions/io.k8s.api.core.v1.Container"},
                        "x-kubernetes-patch-merge-key": "name",
                        "x-kubernetes-patch-strategy": "merge"
                    },
                    "volumes": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/io.k8s.api.core.v1.Volume"},
                        "x-kubernetes-patch-merge-key": "name",
                        "x-kubernetes-patch-strategy": "merge,retainKeys",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"]
                    },
                    "nodeSelector": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "x-kubernetes-map-type": "atomic"
                    },
                    "affinity": {"allOf": [{"$ref": "#/definitions/io.k8s.api.core.v1.Affinity"}]}
                }
            },
            "io.k8s.api.core.v1.Container": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "ports": {
                        "type": "array",
                        "items": {"$ref": "#/definitions/io.k8s.api.core.v1.ContainerPort"},
                        "x-kubernetes-patch-merge-key": "containerPort",
                        "x-kubernetes-patch-strategy": "merge",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["containerPort", "protocol"]
                    },
                    "args": {"type": "array", "items": {"type": "string"}}
                }
            },
            "io.k8s.api.core.v1.ContainerPort": {
                "type": "object",
                "properties": {
                    "containerPort": {"type": "integer"},
                    "protocol": {"type": "string", "default": "TCP"}
                }
            },
            "io.k8s.api.core.v1.Volume": {"type": "object", "properties": {"name": {"type": "string"}}},
            "io.k8s.api.core.v1.Affinity": {
                "type": "object",
                "properties": {"nodeAffinity": {"type": "object", "properties": {}}},
                "x-kubernetes-map-type": "atomic"
            }
        });
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn reads_strategies_and_follows_refs() {
        let defs = defs();
        let pod = SchemaPatchMeta::new(&defs, "io.k8s.api.core.v1.PodSpec");
        let containers = pod.field("containers").unwrap();
        assert_eq!(
            containers.strategy,
            ListStrategy::Merge {
                key: Some("name".into())
            }
        );
        assert!(containers.required);
        assert_eq!(
            containers.apply_list_type(),
            ListType::Map(vec!["name".into()])
        );
        let ports = containers.elem().field("ports").unwrap();
        assert_eq!(
            ports.apply_list_type(),
            ListType::Map(vec!["containerPort".into(), "protocol".into()])
        );
        assert_eq!(
            ports.elem().default_value("protocol"),
            Some(Value::String("TCP".into()))
        );
        let args = containers.elem().field("args").unwrap();
        assert_eq!(args.strategy, ListStrategy::Default);
        assert_eq!(args.apply_list_type(), ListType::Atomic);
        assert!(containers.elem().field("nope").is_none());
    }

    #[test]
    fn retain_keys_maps_and_wrappers() {
        let defs = defs();
        let pod = SchemaPatchMeta::new(&defs, "io.k8s.api.core.v1.PodSpec");
        let volumes = pod.field("volumes").unwrap();
        assert!(volumes.retain_keys);
        assert_eq!(
            volumes.strategy,
            ListStrategy::Merge {
                key: Some("name".into())
            }
        );
        assert!(volumes.elem().field("name").is_some());

        let selector = pod.field("nodeSelector").unwrap();
        assert!(selector.atomic_map);
        assert!(selector.free_form_map);
        // Any key of a free-form map has the value schema's meta.
        assert!(selector.elem().field("disktype").is_some());

        let affinity = pod.field("affinity").unwrap();
        assert!(
            affinity.atomic_map,
            "map-type read from the referenced definition"
        );
        assert!(!affinity.free_form_map);
        assert!(affinity.elem().field("nodeAffinity").is_some());
    }

    #[test]
    fn unknown_root_knows_nothing() {
        let defs = defs();
        let meta = SchemaPatchMeta::new(&defs, "io.k8s.api.core.v1.Missing");
        assert!(meta.field("spec").is_none());
        assert!(Untyped.field("spec").is_none());
    }
}
