//! RBAC: policy rules of Roles and ClusterRoles, role references and subjects of bindings.

use serde_json::Value;

use super::field::{Bad, Cause, Path, go_quote, invalid, not_supported, required};
use super::meta::{string_list, validate_label_selector};
use super::names;
use super::{arr, at, str_at};

const GROUP: &str = "rbac.authorization.k8s.io";

pub fn validate_role(obj: &Value, namespaced: bool) -> Vec<Cause> {
    let mut errs = Vec::new();
    let rules_path = Path::new("rules");
    for (i, rule) in arr(obj, "rules").iter().enumerate() {
        let p = rules_path.index(i);
        if arr(rule, "verbs").is_empty() {
            errs.push(required(
                &p.child("verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = arr(rule, "nonResourceURLs");
        if !urls.is_empty() {
            if namespaced {
                errs.push(invalid(
                    &p.child("nonResourceURLs"),
                    string_list(rule.get("nonResourceURLs")),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !arr(rule, "apiGroups").is_empty()
                || !arr(rule, "resources").is_empty()
                || !arr(rule, "resourceNames").is_empty()
            {
                errs.push(invalid(
                    &p.child("nonResourceURLs"),
                    string_list(rule.get("nonResourceURLs")),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if arr(rule, "apiGroups").is_empty() {
            errs.push(required(
                &p.child("apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if arr(rule, "resources").is_empty() {
            errs.push(required(
                &p.child("resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    if !namespaced && let Some(agg) = obj.get("aggregationRule").filter(|v| !v.is_null()) {
        for (i, sel) in arr(agg, "clusterRoleSelectors").iter().enumerate() {
            errs.extend(validate_label_selector(
                Some(sel),
                &Path::new("aggregationRule")
                    .child("clusterRoleSelectors")
                    .index(i),
            ));
        }
    }
    errs
}

pub fn validate_binding(obj: &Value, namespaced: bool) -> Vec<Cause> {
    let mut errs = Vec::new();
    let rr = at(obj, &["roleRef"]);
    let rpath = Path::new("roleRef");
    let group = str_at(rr, "apiGroup").unwrap_or("");
    if group != GROUP {
        errs.push(not_supported(&rpath.child("apiGroup"), group, &[GROUP]));
    }
    let kind = str_at(rr, "kind").unwrap_or("");
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        errs.push(not_supported(&rpath.child("kind"), kind, kinds));
    }
    let name = str_at(rr, "name").unwrap_or("");
    if name.is_empty() {
        errs.push(required(&rpath.child("name"), ""));
    } else {
        for msg in names::is_path_segment_name(name) {
            errs.push(invalid(&rpath.child("name"), name, &msg));
        }
    }
    let spath = Path::new("subjects");
    for (i, s) in arr(obj, "subjects").iter().enumerate() {
        let p = spath.index(i);
        let sname = str_at(s, "name").unwrap_or("");
        if sname.is_empty() {
            errs.push(required(&p.child("name"), ""));
        }
        let sgroup = str_at(s, "apiGroup").unwrap_or("");
        match str_at(s, "kind").unwrap_or("") {
            "ServiceAccount" => {
                if !sname.is_empty() {
                    for msg in names::is_dns1123_subdomain(sname) {
                        errs.push(invalid(&p.child("name"), sname, &msg));
                    }
                }
                if !sgroup.is_empty() {
                    errs.push(not_supported(&p.child("apiGroup"), sgroup, &[""]));
                }
                if !namespaced && str_at(s, "namespace").unwrap_or("").is_empty() {
                    errs.push(required(&p.child("namespace"), ""));
                }
            }
            "User" | "Group" => {
                if sgroup != GROUP {
                    errs.push(not_supported(&p.child("apiGroup"), sgroup, &[GROUP]));
                }
            }
            other => errs.push(not_supported(
                &p.child("kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    errs
}

pub fn validate_binding_update(old: &Value, new: &Value) -> Vec<Cause> {
    let o = at(old, &["roleRef"]);
    let n = at(new, &["roleRef"]);
    if o == n {
        return Vec::new();
    }
    let f = |k| go_quote(str_at(n, k).unwrap_or(""));
    vec![invalid(
        &Path::new("roleRef"),
        Bad::raw(format!(
            "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
            f("apiGroup"),
            f("kind"),
            f("name")
        )),
        "cannot change roleRef",
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msgs(errs: &[Cause]) -> Vec<String> {
        errs.iter().map(Cause::display).collect()
    }

    #[test]
    fn role_rules() {
        let ok = json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
        assert!(validate_role(&ok, true).is_empty());
        let bad = json!({"rules": [{"resources": ["pods"]}, {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]});
        assert_eq!(
            msgs(&validate_role(&bad, true)),
            vec![
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[1].nonResourceURLs: Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs",
            ]
        );
        assert_eq!(validate_role(&bad, false).len(), 2);
    }

    #[test]
    fn bindings() {
        let ok = json!({"roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "alice"},
                {"kind": "ServiceAccount", "name": "default", "namespace": "kube-system"}]});
        assert!(validate_binding(&ok, true).is_empty());
        assert!(validate_binding(&ok, false).is_empty());
        let bad = json!({"roleRef": {"apiGroup": GROUP, "kind": "Role", "name": ""},
            "subjects": [{"kind": "Robot", "name": "r"}, {"kind": "ServiceAccount", "name": "sa"}]});
        assert_eq!(
            msgs(&validate_binding(&bad, false)),
            vec![
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "roleRef.name: Required value",
                "subjects[0].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
                "subjects[1].namespace: Required value",
            ]
        );
        let mut changed = ok.clone();
        changed["roleRef"]["name"] = json!("edit");
        assert_eq!(
            msgs(&validate_binding_update(&ok, &changed)),
            vec![
                "roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"edit\"}: cannot change roleRef",
            ]
        );
    }
}
