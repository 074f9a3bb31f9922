//! Strategic merge patch, with the semantics of Kubernetes' server side.
//!
//! Maps merge key by key and `null` deletes; a list follows its field's strategy: `merge`
//! with a key merges items that share the key value and adds the others, `merge` without a key
//! is a set union, anything else replaces the list. Directives: `$patch` (`replace`, `delete`
//! in maps and list items), `$retainKeys`, `$setElementOrder/<field>` and
//! `$deleteFromPrimitiveList/<field>`. Item order follows Kubernetes: items named by the patch
//! first in patch order, interleaved with the items only the server has in their old order;
//! `$setElementOrder` fixes the order of the named ones.

use serde_json::{Map, Value};

use super::PatchError;
use super::meta::{FieldMeta, ListStrategy, PatchMeta};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// Apply `patch` (a JSON object) to `original` (a JSON object).
pub(super) fn apply(
    original: &Value,
    patch: Value,
    meta: &dyn PatchMeta,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(malformed("the patch must be a JSON object"));
    };
    let original = match original {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => return Err(malformed("the object to patch is not a JSON object")),
    };
    merge_map(original, patch, meta).map(Value::Object)
}

fn malformed(msg: impl Into<String>) -> PatchError {
    PatchError::Malformed(msg.into())
}

fn invalid(msg: impl Into<String>) -> PatchError {
    PatchError::Invalid(msg.into())
}

fn no_merge_key(key: &str) -> PatchError {
    malformed(format!(
        "a list item does not contain the declared merge key {key:?}"
    ))
}

/// Merge `patch` into `original`, consuming directives.
fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    meta: &dyn PatchMeta,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => match strip(Value::Object(patch)) {
                Value::Object(m) => Ok(m),
                _ => Ok(Map::new()),
            },
            Some("delete") => Ok(Map::new()),
            _ => Err(malformed(format!(
                "unknown patch type {directive} in a map"
            ))),
        };
    }

    apply_retain_keys(&mut original, &mut patch)?;
    apply_set_element_order(&mut original, &mut patch, meta)?;

    for (key, patch_value) in patch {
        let (field, delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(rest) => match rest.strip_prefix('/') {
                Some(field) => (field.to_string(), true),
                None => {
                    return Err(malformed(
                        "invalid patch format of primitive list: expected $deleteFromPrimitiveList/<field>",
                    ));
                }
            },
            None => (key, false),
        };
        if patch_value.is_null() {
            original.remove(&field);
            continue;
        }
        let fm = meta.field(&field);
        let merged =
            match (original.remove(&field), patch_value) {
                // A deletion list never adds anything.
                (None, _) if delete_list => None,
                (None, new) => clean(new),
                (Some(Value::Object(old)), Value::Object(new)) => {
                    if fm
                        .as_ref()
                        .is_some_and(|f| f.strategy == ListStrategy::Replace)
                    {
                        Some(strip(Value::Object(new)))
                    } else {
                        Some(Value::Object(merge_map(old, new, field_elem(fm.as_ref()))?))
                    }
                }
                (Some(Value::Array(old)), Value::Array(new)) => Some(Value::Array(
                    merge_list_field(old, new, fm.as_ref(), delete_list)?,
                )),
                (Some(old), _) if delete_list => Some(old),
                (Some(_), new) => clean(new),
            };
        if let Some(v) = merged {
            original.insert(field, v);
        }
    }
    Ok(original)
}

fn field_elem<'m>(fm: Option<&'m FieldMeta<'_>>) -> &'m dyn PatchMeta {
    match fm {
        Some(f) => f.elem(),
        None => &super::meta::Untyped,
    }
}

fn is_directive_key(k: &str) -> bool {
    k == DIRECTIVE
        || k == RETAIN_KEYS
        || k.starts_with(SET_ELEMENT_ORDER)
        || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// A patch value taken as it is: what decoding it into its type keeps (no `null` fields, no
/// directive keys).
fn strip(value: Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, v)| !v.is_null() && !is_directive_key(k))
                .map(|(k, v)| (k, strip(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip).collect()),
        other => other,
    }
}

/// A patch value placed where the original has nothing: `null` fields are dropped, and so is
/// every map carrying a `$patch` directive (`None` when the value itself is one).
fn clean(value: Value) -> Option<Value> {
    match value {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            let kept = m
                .into_iter()
                .filter(|(k, v)| !v.is_null() && !is_directive_key(k))
                .filter_map(|(k, v)| clean(v).map(|v| (k, v)))
                .collect();
            Some(Value::Object(kept))
        }
        Value::Array(items) => Some(Value::Array(items.into_iter().filter_map(clean).collect())),
        other => Some(other),
    }
}

fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(malformed(
            "invalid patch format of retainKeys: expected a list",
        ));
    };
    let retained = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !retained(k) {
            return Err(malformed(format!(
                "invalid patch format of retainKeys: field {k:?} is in the patch but not in $retainKeys"
            )));
        }
    }
    original.retain(|k, _| retained(k));
    Ok(())
}

/// Process every `$setElementOrder/<field>` together with the patch of `<field>`.
fn apply_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    meta: &dyn PatchMeta,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for key in keys {
        let Some(order) = patch.remove(&key) else {
            continue;
        };
        let bad_format = || malformed("invalid patch format of setElementOrder list");
        let Value::Array(order) = order else {
            return Err(bad_format());
        };
        let field = key
            .strip_prefix(SET_ELEMENT_ORDER)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(bad_format)?
            .to_string();
        let original_list = match original.get(&field) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(_) => return Err(malformed(format!("{field}: expected a list in the object"))),
        };
        let patch_list = match patch.get(&field) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(_) => return Err(malformed(format!("{field}: expected a list in the patch"))),
        };
        let fm = meta.field(&field);
        let merge_key = match fm.as_ref().map(|f| &f.strategy) {
            Some(ListStrategy::Merge { key: Some(k) }) => Some(k.as_str()),
            _ => None,
        };
        validate_order(patch_list.as_deref().unwrap_or(&[]), &order, merge_key)?;

        let server_order = original_list.clone().unwrap_or_default();
        let merged = match (original_list, patch_list) {
            (Some(o), None) => o,
            (None, Some(p)) => p.into_iter().filter_map(clean).collect(),
            (Some(o), Some(p)) => merge_list_field(o, p, fm.as_ref(), false)?,
            (None, None) => continue,
        };
        let map_items = merge_key.filter(|_| merged.iter().all(Value::is_object));
        let (named, server_only) = partition(merged, &order, map_items)?;
        let ordered = normalize_order(named, server_only, &order, &server_order, map_items)?;
        original.insert(field.clone(), Value::Array(ordered));
        patch.remove(&field);
    }
    Ok(())
}

/// The items of the patch list (deletions and directives aside) must appear in the
/// `$setElementOrder` list in the same relative order.
fn validate_order(patch: &[Value], order: &[Value], key: Option<&str>) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let named: Vec<&Value> = match key {
        Some(_) => patch
            .iter()
            .filter(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"))
            .collect(),
        None => patch.iter().collect(),
    };
    let (mut pi, mut oi) = (0, 0);
    while pi < named.len() && oi < order.len() {
        if named[pi].get(DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        if key_equal(named[pi], &order[oi], key)? {
            pi += 1;
        }
        oi += 1;
    }
    if pi < named.len() {
        return Err(invalid(
            "the order in the patch list does not match the $setElementOrder list",
        ));
    }
    Ok(())
}

fn key_equal(a: &Value, b: &Value, key: Option<&str>) -> Result<bool, PatchError> {
    let Some(key) = key else {
        return Ok(a == b);
    };
    let ka = a.get(key).ok_or_else(|| no_merge_key(key))?;
    let kb = b.get(key).ok_or_else(|| no_merge_key(key))?;
    Ok(ka == kb)
}

/// Merge two lists of one field according to its strategy.
fn merge_list_field(
    original: Vec<Value>,
    patch: Vec<Value>,
    fm: Option<&FieldMeta<'_>>,
    delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    let key = match fm.map(|f| &f.strategy) {
        Some(ListStrategy::Merge { key }) => key.as_deref(),
        // Deletion lists apply whatever the field's strategy.
        _ if delete_list => None,
        _ => return Ok(patch.into_iter().map(strip).collect()),
    };
    merge_list(original, patch, field_elem(fm), key, delete_list)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Integer,
    Float,
    String,
    Object,
}

fn kind(v: &Value) -> Result<Kind, PatchError> {
    Ok(match v {
        Value::Null => Kind::Null,
        Value::Bool(_) => Kind::Bool,
        Value::Number(n) if n.is_f64() => Kind::Float,
        Value::Number(_) => Kind::Integer,
        Value::String(_) => Kind::String,
        Value::Object(_) => Kind::Object,
        Value::Array(_) => return Err(invalid("lists of lists are not supported")),
    })
}

/// The one kind of all items of both lists.
fn element_kind(a: &[Value], b: &[Value]) -> Result<Option<Kind>, PatchError> {
    let mut found = None;
    for v in a.iter().chain(b) {
        let k = kind(v)?;
        match found {
            None => found = Some(k),
            Some(f) if f != k => return Err(malformed("list element types are not identical")),
            Some(_) => {}
        }
    }
    Ok(found)
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    elem: &dyn PatchMeta,
    key: Option<&str>,
    delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if element_kind(&original, &patch)? != Some(Kind::Object) {
        if delete_list {
            return Ok(original
                .into_iter()
                .filter(|v| !patch.contains(v))
                .collect());
        }
        let mut both = original.clone();
        both.extend(patch.iter().cloned());
        let merged = deduplicate(both);
        let (named, server_only) = partition(merged, &patch, None)?;
        return normalize_order(named, server_only, &patch, &original, None);
    }
    let key = key.ok_or_else(|| malformed("cannot merge lists of objects without a merge key"))?;
    let (original, patch) = apply_item_directives(original, patch, key)?;
    let mut merged = original.clone();
    for item in patch.iter().cloned() {
        let Value::Object(item) = item else {
            return Err(malformed("expected a list item to be an object"));
        };
        let value = item.get(key).cloned().ok_or_else(|| no_merge_key(key))?;
        match find_by_key(&merged, key, &value)? {
            Some(i) => {
                let old = match std::mem::take(&mut merged[i]) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                merged[i] = Value::Object(merge_map(old, item, elem)?);
            }
            None => merged.push(strip(Value::Object(item))),
        }
    }
    let (named, server_only) = partition(merged, &patch, Some(key))?;
    normalize_order(named, server_only, &patch, &original, Some(key))
}

fn find_by_key(list: &[Value], key: &str, value: &Value) -> Result<Option<usize>, PatchError> {
    for (i, v) in list.iter().enumerate() {
        let Value::Object(m) = v else {
            return Err(malformed("expected a list item to be an object"));
        };
        if m.get(key) == Some(value) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Handle `$patch` in list items: `delete` removes the matching items, `replace` makes the
/// other patch items the whole list. Returns the original and the patch without directives.
fn apply_item_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::new();
    let mut replace = false;
    for item in patch {
        let Value::Object(m) = &item else {
            return Err(malformed("expected a list item to be an object"));
        };
        match m.get(DIRECTIVE) {
            None => plain.push(item),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let value = m.get(key).ok_or_else(|| no_merge_key(key))?;
                    if original.iter().any(|o| !o.is_object()) {
                        return Err(malformed("expected a list item to be an object"));
                    }
                    original.retain(|o| o.get(key) != Some(value));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(malformed(
                        "merging lists cannot yet be specified in the patch",
                    ));
                }
                _ => return Err(malformed(format!("unknown patch type {d} in a list item"))),
            },
        }
    }
    if replace {
        return Ok((plain.into_iter().map(strip).collect(), Vec::new()));
    }
    Ok((original, plain))
}

/// Remove duplicates the way Kubernetes does (a duplicate is overwritten by the last item).
fn deduplicate(mut s: Vec<Value>) -> Vec<Value> {
    let mut i = 0;
    while i + 1 < s.len() {
        let mut j = i + 1;
        while j < s.len() {
            if s[i] == s[j] {
                if let Some(last) = s.pop()
                    && j < s.len()
                {
                    s[j] = last;
                }
            } else {
                j += 1;
            }
        }
        i += 1;
    }
    s
}

/// Split `items` into those named in `by` (by merge key, or by value) and the others.
fn partition(
    items: Vec<Value>,
    by: &[Value],
    key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut named = Vec::new();
    let mut others = Vec::new();
    for item in items {
        let found = match key {
            None => by.contains(&item),
            Some(key) => {
                let value = item.get(key).ok_or_else(|| no_merge_key(key))?;
                find_by_key(by, key, value)?.is_some()
            }
        };
        if found {
            named.push(item);
        } else {
            others.push(item);
        }
    }
    Ok((named, others))
}

fn index_in(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    match key {
        None => list.iter().position(|v| v == item),
        Some(k) => {
            let value = item.get(k);
            list.iter().position(|v| v.get(k) == value)
        }
    }
}

/// Sort the named items by `patch_order` and the server-only items by `server_order`, then
/// interleave them.
fn normalize_order(
    named: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let named = sort_by_order(named, patch_order, key)?;
    let server_only = sort_by_order(server_only, server_order, key)?;
    Ok(merge_sorted(server_only, named, server_order, key))
}

fn sort_by_order(
    mut items: Vec<Value>,
    order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let mut deletions = Vec::new();
    if let Some(k) = key {
        if items.iter().chain(order).any(|v| v.get(k).is_none()) {
            return Err(no_merge_key(k));
        }
        let (keep, delete): (Vec<Value>, Vec<Value>) = items
            .into_iter()
            .partition(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"));
        items = keep;
        deletions = delete;
    }
    let indexes: Vec<Option<usize>> = items.iter().map(|v| index_in(order, v, key)).collect();
    if indexes.iter().all(Option::is_some) {
        let mut paired: Vec<(Option<usize>, Value)> = indexes.into_iter().zip(items).collect();
        paired.sort_by_key(|(i, _)| *i);
        items = paired.into_iter().map(|(_, v)| v).collect();
    } else {
        // An item missing from the order list compares as "less" than anything, which is
        // not an ordering; insertion sort reproduces what Kubernetes' stable sort does then.
        let mut paired: Vec<(Option<usize>, Value)> = indexes.into_iter().zip(items).collect();
        let less = |a: Option<usize>, b: Option<usize>| match (a, b) {
            (Some(x), Some(y)) => x < y,
            _ => true,
        };
        for i in 1..paired.len() {
            let mut j = i;
            while j > 0 && less(paired[j].0, paired[j - 1].0) {
                paired.swap(j, j - 1);
                j -= 1;
            }
        }
        items = paired.into_iter().map(|(_, v)| v).collect();
    }
    items.extend(deletions);
    Ok(items)
}

/// Interleave server-only items (`left`) into the patch items (`right`): a server-only item
/// goes first only when both were in the server's list and it came earlier there.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (index_in(server_order, l, key), index_in(server_order, r, key)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testdefs::deployment;
    use super::super::{PatchError, Untyped, strategic_merge_patch};
    use super::*;

    fn smp(original: &Value, patch: Value) -> Result<Value, PatchError> {
        strategic_merge_patch(original, patch.to_string().as_bytes(), &deployment())
    }

    fn assert_no_directives(v: &Value) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    assert!(!k.starts_with('$'), "directive {k} left in the result");
                    assert_no_directives(v);
                }
            }
            Value::Array(a) => a.iter().for_each(assert_no_directives),
            _ => {}
        }
    }

    fn web() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a", "b", "c"]},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "nodeSelector": {"disk": "ssd"},
                        "containers": [
                            {
                                "name": "nginx",
                                "image": "nginx:1.25",
                                "args": ["a", "b"],
                                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
                            },
                            {"name": "sidecar", "image": "busybox"}
                        ],
                        "volumes": [{"name": "data", "emptyDir": {}}]
                    }
                }
            }
        })
    }

    fn pod_spec(v: &Value) -> &Value {
        &v["spec"]["template"]["spec"]
    }

    #[test]
    fn merges_containers_env_and_ports_by_key() {
        let out = smp(
            &web(),
            json!({"spec": {"template": {"spec": {"containers": [{
                "name": "nginx",
                "image": "nginx:1.26",
                "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                "ports": [{"containerPort": 443}]
            }]}}}}),
        )
        .unwrap();
        let containers = &pod_spec(&out)["containers"];
        assert_eq!(containers.as_array().unwrap().len(), 2);
        let nginx = &containers[0];
        assert_eq!(nginx["image"], "nginx:1.26");
        assert_eq!(nginx["args"], json!(["a", "b"]));
        assert_eq!(
            nginx["env"],
            json!([
                {"name": "A", "value": "1"},
                {"name": "B", "value": "3"},
                {"name": "C", "value": "4"}
            ])
        );
        // An item the server did not have goes before the server-only ones.
        assert_eq!(
            nginx["ports"],
            json!([{"containerPort": 443}, {"containerPort": 80, "protocol": "TCP"}])
        );
        assert_eq!(
            containers[1],
            json!({"name": "sidecar", "image": "busybox"})
        );
        assert_eq!(out["spec"]["replicas"], 1);
    }

    #[test]
    fn patch_order_wins_over_server_order() {
        // Facts from Kubernetes: [1, 2b, 3] patched with [3c, 1a] gives [2b, 3c, 1a].
        let original = json!({"metadata": {"finalizers": ["1", "2", "3"]}});
        let out = smp(&original, json!({"metadata": {"finalizers": ["3", "1"]}})).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["2", "3", "1"]));

        let out = smp(&web(), json!({"metadata": {"finalizers": ["d", "a"]}})).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["d", "a", "b", "c"]));
    }

    #[test]
    fn delete_directive_removes_a_container() {
        let out = smp(
            &web(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "sidecar", "$patch": "delete"}
            ]}}}}),
        )
        .unwrap();
        let containers = pod_spec(&out)["containers"].as_array().unwrap().clone();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["name"], "nginx");
        assert_no_directives(&out);
    }

    #[test]
    fn set_element_order_orders_the_merged_list() {
        let out = smp(
            &web(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "log"}, {"name": "nginx"}],
                "containers": [{"name": "log", "image": "fluentd"}]
            }}}}),
        )
        .unwrap();
        let names: Vec<&str> = pod_spec(&out)["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["sidecar", "log", "nginx"]);
        assert_eq!(pod_spec(&out)["containers"][2]["image"], "nginx:1.25");
        assert_no_directives(&out);
    }

    #[test]
    fn set_element_order_keeps_server_only_items_in_place() {
        // Kubernetes' "merge lists of maps" case: live [1, 2], order [4, 1, 2, 3].
        let original = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "1", "image": "a"},
            {"name": "2", "image": "b"}
        ]}}}});
        let out = smp(
            &original,
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "4"}, {"name": "1"}, {"name": "2"}, {"name": "3"}],
                "containers": [{"name": "4", "image": "d"}, {"name": "3", "image": "c"}]
            }}}}),
        )
        .unwrap();
        let names: Vec<&str> = pod_spec(&out)["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["4", "1", "2", "3"]);

        let mismatched = smp(
            &original,
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "1"}, {"name": "2"}],
                "containers": [{"name": "2", "image": "x"}, {"name": "1", "image": "y"}]
            }}}}),
        );
        assert!(
            matches!(mismatched, Err(PatchError::Invalid(_))),
            "{mismatched:?}"
        );
    }

    #[test]
    fn retain_keys_clears_other_fields() {
        let out = smp(
            &web(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
        )
        .unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));

        let out = smp(
            &web(),
            json!({"spec": {"template": {"spec": {"volumes": [
                {"name": "data", "$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}}
            ]}}}}),
        )
        .unwrap();
        assert_eq!(
            pod_spec(&out)["volumes"],
            json!([{"name": "data", "configMap": {"name": "cm"}}])
        );

        let bad = smp(
            &web(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}}),
        );
        assert!(matches!(bad, Err(PatchError::Malformed(_))), "{bad:?}");
    }

    #[test]
    fn delete_from_primitive_list() {
        let out = smp(
            &web(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "c"]));

        // A deletion list never creates the list.
        let bare = json!({"metadata": {"name": "x"}});
        let out = smp(
            &bare,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
        )
        .unwrap();
        assert_eq!(out, bare);

        // It applies to lists without a merge strategy too.
        let out = smp(
            &web(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                "containers": [{"name": "nginx", "$deleteFromPrimitiveList/args": ["a"]}]
            }}}}),
        )
        .unwrap();
        assert_eq!(pod_spec(&out)["containers"][0]["args"], json!(["b"]));
        assert_no_directives(&out);
    }

    #[test]
    fn replace_and_delete_directives() {
        let out = smp(
            &web(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"$patch": "replace"},
                {"name": "only", "image": "alpine"}
            ]}}}}),
        )
        .unwrap();
        assert_eq!(
            pod_spec(&out)["containers"],
            json!([{"name": "only", "image": "alpine"}])
        );

        let out = smp(
            &web(),
            json!({"metadata": {"labels": {"$patch": "replace", "tier": "front"}}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"tier": "front"}));

        let out = smp(
            &web(),
            json!({"spec": {"template": {"spec": {"nodeSelector": {"$patch": "delete"}}}}}),
        )
        .unwrap();
        assert_eq!(pod_spec(&out)["nodeSelector"], json!({}));

        let bad = smp(&web(), json!({"metadata": {"labels": {"$patch": "merge"}}}));
        assert!(matches!(bad, Err(PatchError::Malformed(_))));
        let bad = smp(
            &web(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "x", "$patch": "merge"}]}}}}),
        );
        assert!(matches!(bad, Err(PatchError::Malformed(_))));
    }

    #[test]
    fn nulls_delete_and_new_values_are_cleaned() {
        let out = smp(
            &web(),
            json!({
                "metadata": {
                    "labels": {"app": null, "tier": "front"},
                    "annotations": {"gone": null, "note": "x"}
                },
                "spec": {"replicas": null, "template": {"spec": {"initContainers": [
                    {"name": "init", "image": "busybox", "args": null}
                ]}}}
            }),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"tier": "front"}));
        assert_eq!(out["metadata"]["annotations"], json!({"note": "x"}));
        assert!(out["spec"].get("replicas").is_none());
        assert_eq!(
            pod_spec(&out)["initContainers"],
            json!([{"name": "init", "image": "busybox"}])
        );
    }

    #[test]
    fn kubectl_apply_three_way_patch() {
        // The shape `kubectl apply` sends after removing env B and changing the image.
        let out = smp(
            &web(),
            json!({
                "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
                "spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                    "containers": [{
                        "$setElementOrder/env": [{"name": "A"}],
                        "env": [{"$patch": "delete", "name": "B"}],
                        "image": "nginx:1.26",
                        "name": "nginx"
                    }]
                }}}
            }),
        )
        .unwrap();
        let nginx = &pod_spec(&out)["containers"][0];
        assert_eq!(nginx["env"], json!([{"name": "A", "value": "1"}]));
        assert_eq!(nginx["image"], "nginx:1.26");
        assert_eq!(pod_spec(&out)["containers"][1]["name"], "sidecar");
        assert_eq!(
            out["metadata"]["annotations"],
            json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"})
        );
        assert_no_directives(&out);

        // `kubectl rollout undo` replaces the whole template.
        let out = smp(
            &web(),
            json!({"spec": {"template": {
                "$patch": "replace",
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.24"}]}
            }}}),
        )
        .unwrap();
        assert_eq!(
            out["spec"]["template"],
            json!({
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.24"}]}
            })
        );
    }

    #[test]
    fn lists_without_strategy_are_replaced() {
        let out = smp(
            &web(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "args": ["c"]}]}}}}),
        )
        .unwrap();
        assert_eq!(pod_spec(&out)["containers"][0]["args"], json!(["c"]));
    }

    #[test]
    fn unknown_fields_merge_maps_and_replace_lists() {
        let original = json!({"a": {"x": 1, "y": [1, 2]}, "b": 1});
        let patch = json!({"a": {"z": 2, "y": [3]}});
        let out = strategic_merge_patch(&original, patch.to_string().as_bytes(), &Untyped).unwrap();
        assert_eq!(out, json!({"a": {"x": 1, "y": [3], "z": 2}, "b": 1}));
    }

    #[test]
    fn malformed_patches_are_refused() {
        let missing_key = smp(
            &web(),
            json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
        );
        assert!(
            matches!(missing_key, Err(PatchError::Malformed(_))),
            "{missing_key:?}"
        );
        let not_object = strategic_merge_patch(&web(), b"[1]", &deployment());
        assert!(matches!(not_object, Err(PatchError::Malformed(_))));
        let not_json = strategic_merge_patch(&web(), b"{", &deployment());
        assert!(matches!(not_json, Err(PatchError::Malformed(_))));
        let bad_order = smp(
            &web(),
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": 1}}}}),
        );
        assert!(matches!(bad_order, Err(PatchError::Malformed(_))));
    }

    #[test]
    fn deduplicates_like_kubernetes() {
        let s = deduplicate(vec![json!(1), json!(2), json!(1), json!(3), json!(2)]);
        assert_eq!(s.len(), 3);
        for v in [1, 2, 3] {
            assert!(s.contains(&json!(v)));
        }
    }
}
