//! Object metadata (name, namespace, labels, annotations, finalizers, owner references) and
//! label selectors: their validation on create and update, and selector matching.

use serde_json::Value;

use super::field::{
    Bad, Cause, Path, forbidden, go_quote, go_string_slice, invalid, required, too_long,
};
use super::names::{self, IMMUTABLE, IS_NEGATIVE};
use super::{arr, int, str_at};
use crate::registry::Resource;

/// Total bytes allowed across annotation keys and values.
pub const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

/// Which format a resource's names follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Dns1123Subdomain,
    Dns1123Label,
    Dns1035Label,
    PathSegment,
}

pub fn name_rule(res: &Resource) -> NameRule {
    match (res.group, res.kind) {
        ("", "Namespace") => NameRule::Dns1123Label,
        ("", "Service") => NameRule::Dns1035Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

/// Problems with `name` under `rule`; `prefix` is for `generateName`, which may end in '-'.
pub fn check_name(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    let masked;
    let name = if prefix && rule != NameRule::PathSegment {
        masked = match name.strip_suffix('-') {
            Some(stem) => format!("{stem}a"),
            None => name.to_string(),
        };
        masked.as_str()
    } else {
        name
    };
    match rule {
        NameRule::Dns1123Subdomain => names::is_dns1123_subdomain(name),
        NameRule::Dns1123Label => names::is_dns1123_label(name),
        NameRule::Dns1035Label => names::is_dns1035_label(name),
        NameRule::PathSegment if prefix => names::is_path_segment_name(name)
            .into_iter()
            .filter(|m| m.starts_with("may not contain"))
            .collect(),
        NameRule::PathSegment => names::is_path_segment_name(name),
    }
}

/// `metadata` of a new object.
pub fn validate_object_meta(res: &Resource, obj: &Value) -> Vec<Cause> {
    let path = Path::new("metadata");
    let meta = obj.get("metadata").unwrap_or(&Value::Null);
    let mut errs = Vec::new();
    let rule = name_rule(res);
    let name = str_at(meta, "name").unwrap_or("");
    let generate = str_at(meta, "generateName").unwrap_or("");
    if !generate.is_empty() {
        for msg in check_name(rule, generate, true) {
            errs.push(invalid(&path.child("generateName"), generate, &msg));
        }
    }
    if name.is_empty() {
        if generate.is_empty() {
            errs.push(required(
                &path.child("name"),
                "name or generateName is required",
            ));
        }
    } else {
        for msg in check_name(rule, name, false) {
            errs.push(invalid(&path.child("name"), name, &msg));
        }
    }
    let namespace = str_at(meta, "namespace").unwrap_or("");
    if res.namespaced() {
        if namespace.is_empty() {
            errs.push(required(&path.child("namespace"), ""));
        } else {
            for msg in names::is_dns1123_label(namespace) {
                errs.push(invalid(&path.child("namespace"), namespace, &msg));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(forbidden(
            &path.child("namespace"),
            "not allowed on this type",
        ));
    }
    errs.extend(common(meta, &path));
    errs
}

fn common(meta: &Value, path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    if let Some(g) = int(meta, "generation").filter(|g| *g < 0) {
        errs.push(invalid(&path.child("generation"), g, IS_NEGATIVE));
    }
    errs.extend(validate_labels(meta.get("labels"), &path.child("labels")));
    errs.extend(validate_annotations(
        meta.get("annotations"),
        &path.child("annotations"),
    ));
    errs.extend(validate_owner_references(
        arr(meta, "ownerReferences"),
        &path.child("ownerReferences"),
    ));
    let fin_path = path.child("finalizers");
    for f in arr(meta, "finalizers") {
        let f = f.as_str().unwrap_or("");
        for msg in names::is_qualified_name(f) {
            errs.push(invalid(&fin_path, f, &msg));
        }
    }
    errs
}

/// `metadata` on update: identity fields are immutable, the rest validated as on create.
pub fn validate_object_meta_update(old: &Value, new: &Value) -> Vec<Cause> {
    let path = Path::new("metadata");
    let null = Value::Null;
    let om = old.get("metadata").unwrap_or(&null);
    let nm = new.get("metadata").unwrap_or(&null);
    let mut errs = Vec::new();
    if let (Some(og), Some(ng)) = (int(om, "generation"), int(nm, "generation"))
        && ng < og
    {
        errs.push(invalid(
            &path.child("generation"),
            ng,
            "must not be decremented",
        ));
    }
    for key in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
    ] {
        let o = str_at(om, key).unwrap_or("");
        let n = str_at(nm, key).unwrap_or("");
        if o != n {
            errs.push(invalid(&path.child(key), n, IMMUTABLE));
        }
    }
    if om.get("deletionGracePeriodSeconds") != nm.get("deletionGracePeriodSeconds") {
        let n = int(nm, "deletionGracePeriodSeconds");
        let bad = n.map_or(Bad::raw("null"), Bad::from);
        errs.push(invalid(
            &path.child("deletionGracePeriodSeconds"),
            bad,
            IMMUTABLE,
        ));
    }
    if om.get("deletionTimestamp").is_some_and(|v| !v.is_null()) {
        let old_f: Vec<&str> = arr(om, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut extra: Vec<&str> = arr(nm, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .filter(|f| !old_f.contains(f))
            .collect();
        extra.sort_unstable();
        extra.dedup();
        if !extra.is_empty() {
            let quoted: Vec<String> = extra.iter().map(|f| go_quote(f)).collect();
            errs.push(forbidden(
                &path.child("finalizers"),
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    quoted.join(", ")
                ),
            ));
        }
    }
    errs.extend(common(nm, &path));
    errs
}

/// Label keys must be qualified names and values valid label values. Errors name the map,
/// not the key, as Kubernetes does.
pub fn validate_labels(labels: Option<&Value>, path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    let Some(map) = labels.and_then(Value::as_object) else {
        return errs;
    };
    for (k, v) in map {
        for msg in names::is_qualified_name(k) {
            errs.push(invalid(path, k, &msg));
        }
        let v = v.as_str().unwrap_or("");
        for msg in names::is_label_value(v) {
            errs.push(invalid(path, v, &msg));
        }
    }
    errs
}

pub fn validate_annotations(annotations: Option<&Value>, path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    let Some(map) = annotations.and_then(Value::as_object) else {
        return errs;
    };
    let mut total = 0usize;
    for (k, v) in map {
        for msg in names::is_qualified_name(&k.to_lowercase()) {
            errs.push(invalid(path, k, &msg));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE {
        errs.push(too_long(path, TOTAL_ANNOTATION_SIZE));
    }
    errs
}

fn validate_owner_references(refs: &[Value], path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    let mut first_controller: Option<String> = None;
    for r in refs {
        let api_version = str_at(r, "apiVersion").unwrap_or("");
        let version = api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            errs.push(invalid(
                &path.child("apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        for key in ["kind", "name", "uid"] {
            let v = str_at(r, key).unwrap_or("");
            if v.is_empty() {
                errs.push(invalid(&path.child(key), v, "must not be empty"));
            }
        }
        if api_version == "v1" && str_at(r, "kind") == Some("Event") {
            errs.push(invalid(
                path,
                Bad::raw("v1.OwnerReference{...}"),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let this = format!(
                "{}/{}",
                str_at(r, "kind").unwrap_or(""),
                str_at(r, "name").unwrap_or("")
            );
            match &first_controller {
                Some(first) => errs.push(invalid(
                    path,
                    Bad::raw("[]v1.OwnerReference{...}"),
                    &format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"
                    ),
                )),
                None => first_controller = Some(this),
            }
        }
    }
    errs
}

/// A `metav1.LabelSelector` at `path`.
pub fn validate_label_selector(sel: Option<&Value>, path: &Path) -> Vec<Cause> {
    let mut errs = Vec::new();
    let Some(sel) = sel else {
        return errs;
    };
    for (i, expr) in arr(sel, "matchExpressions").iter().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let values = arr(expr, "values");
        let op = str_at(expr, "operator").unwrap_or("");
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(required(
                        &p.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(forbidden(
                        &p.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            _ => errs.push(invalid(
                &p.child("operator"),
                op,
                "not a valid selector operator",
            )),
        }
        let key = str_at(expr, "key").unwrap_or("");
        for msg in names::is_qualified_name(key) {
            errs.push(invalid(&p.child("key"), key, &msg));
        }
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            for msg in names::is_label_value(v) {
                errs.push(invalid(&p.child("values").index(j), v, &msg));
            }
        }
    }
    errs.extend(validate_labels(
        sel.get("matchLabels"),
        &path.child("matchLabels"),
    ));
    errs
}

/// Whether a selector has no requirements at all (`{}`), which selects everything.
pub fn selector_is_empty(sel: &Value) -> bool {
    sel.get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty())
        && arr(sel, "matchExpressions").is_empty()
}

/// Whether `labels` satisfy `sel`. A missing selector selects nothing.
pub fn selector_matches(sel: Option<&Value>, labels: Option<&Value>) -> bool {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return false;
    };
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let labels_ok = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| get(k) == v.as_str()));
    labels_ok
        && arr(sel, "matchExpressions").iter().all(|e| {
            let key = str_at(e, "key").unwrap_or("");
            let values: Vec<&str> = arr(e, "values").iter().filter_map(Value::as_str).collect();
            match str_at(e, "operator").unwrap_or("") {
                "In" => get(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => get(key).is_none_or(|v| !values.contains(&v)),
                "Exists" => get(key).is_some(),
                "DoesNotExist" => get(key).is_none(),
                _ => false,
            }
        })
}

/// `[]string{...}` for a list of strings, for messages quoting list values.
pub fn string_list(v: Option<&Value>) -> Bad {
    Bad::raw(go_string_slice(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::json;

    fn res(group: &str, plural: &str) -> &'static Resource {
        Registry::builtin().get(group, "v1", plural).unwrap()
    }

    #[test]
    fn name_is_required_unless_generated() {
        let cm = res("", "configmaps");
        let errs = validate_object_meta(cm, &json!({"metadata": {"namespace": "default"}}));
        assert_eq!(
            errs[0].display(),
            "metadata.name: Required value: name or generateName is required"
        );
        let ok = validate_object_meta(
            cm,
            &json!({"metadata": {"generateName": "cm-", "namespace": "default"}}),
        );
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn bad_name_message_is_exact() {
        let cm = res("", "configmaps");
        let errs = validate_object_meta(
            cm,
            &json!({"metadata": {"name": "Foo_bar", "namespace": "default"}}),
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].display(),
            "metadata.name: Invalid value: \"Foo_bar\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
    }

    #[test]
    fn names_follow_the_resource_rule() {
        let ns = res("", "namespaces");
        assert_eq!(
            check_name(name_rule(ns), "a.b", false),
            vec!["must not contain dots"]
        );
        let svc = res("", "services");
        assert!(!check_name(name_rule(svc), "1abc", false).is_empty());
        let cr = Registry::builtin()
            .get("rbac.authorization.k8s.io", "v1", "clusterroles")
            .unwrap();
        assert!(check_name(name_rule(cr), "system:controller:x", false).is_empty());
        assert!(check_name(NameRule::Dns1123Subdomain, "web-", true).is_empty());
        assert!(!check_name(NameRule::Dns1123Subdomain, "web-", false).is_empty());
    }

    #[test]
    fn namespace_rules_depend_on_scope() {
        let node = res("", "nodes");
        let errs =
            validate_object_meta(node, &json!({"metadata": {"name": "n", "namespace": "x"}}));
        assert_eq!(
            errs[0].display(),
            "metadata.namespace: Forbidden: not allowed on this type"
        );
        let cm = res("", "configmaps");
        let errs = validate_object_meta(cm, &json!({"metadata": {"name": "n"}}));
        assert_eq!(errs[0].display(), "metadata.namespace: Required value");
    }

    #[test]
    fn labels_and_annotations() {
        let errs = validate_labels(
            Some(&json!({"good": "ok", "bad key": "v", "k": "bad value"})),
            &Path::new("metadata").child("labels"),
        );
        assert_eq!(errs.len(), 2);
        assert!(errs[0].display().starts_with(
            "metadata.labels: Invalid value: \"bad key\": name part must consist of alphanumeric characters"
        ));
        assert!(
            errs[1].display().starts_with(
                "metadata.labels: Invalid value: \"bad value\": a valid label must be"
            )
        );
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE);
        let errs = validate_annotations(
            Some(&json!({"Upper.Case/Key": "fine", "k": big})),
            &Path::new("metadata").child("annotations"),
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].display(),
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
    }

    #[test]
    fn update_keeps_identity() {
        let old = json!({"metadata": {"name": "a", "namespace": "d", "uid": "1"}});
        let new = json!({"metadata": {"name": "b", "namespace": "d", "uid": "1"}});
        let errs = validate_object_meta_update(&old, &new);
        assert_eq!(
            errs[0].display(),
            "metadata.name: Invalid value: \"b\": field is immutable"
        );
        assert!(validate_object_meta_update(&old, &old).is_empty());
    }

    #[test]
    fn selectors_validate_and_match() {
        let sel = json!({"matchLabels": {"app": "x"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]});
        assert!(validate_label_selector(Some(&sel), &Path::new("s")).is_empty());
        assert!(selector_matches(
            Some(&sel),
            Some(&json!({"app": "x", "tier": "a"}))
        ));
        assert!(!selector_matches(
            Some(&sel),
            Some(&json!({"app": "x", "tier": "c"}))
        ));
        assert!(!selector_matches(None, Some(&json!({"app": "x"}))));
        assert!(selector_matches(Some(&json!({})), None));
        let bad = json!({"matchExpressions": [{"key": "k", "operator": "Is"},
            {"key": "k", "operator": "In"}]});
        let errs = validate_label_selector(Some(&bad), &Path::new("spec").child("selector"));
        assert_eq!(
            errs[0].display(),
            "spec.selector.matchExpressions[0].operator: Invalid value: \"Is\": not a valid selector operator"
        );
        assert_eq!(
            errs[1].display(),
            "spec.selector.matchExpressions[1].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
        );
    }
}
