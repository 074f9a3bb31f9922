//! Deployments, ReplicaSets, StatefulSets and DaemonSets: selectors against template labels,
//! replica counts, update strategies, and what may change on update.

use serde_json::Value;

use super::field::{
    Bad, Cause, Path, forbidden, go_int_or_string, go_label_selector, go_quote, go_string_map,
    invalid, not_supported, required,
};
use super::meta::{selector_is_empty, selector_matches, validate_label_selector};
use super::names::{self, IMMUTABLE, IS_NEGATIVE};
use super::pod::validate_pod_template;
use super::{at, int, str_at};

fn nonneg(spec: &Value, key: &str, path: &Path, errs: &mut Vec<Cause>) {
    if let Some(n) = int(spec, key).filter(|n| *n < 0) {
        errs.push(invalid(&path.child(key), n, IS_NEGATIVE));
    }
}

fn selector_bad(sel: Option<&Value>) -> Bad {
    Bad::raw(go_label_selector(sel))
}

/// Selector present, valid and non-empty; template labels matched; template valid with
/// restartPolicy Always.
fn validate_selector_and_template(spec: &Value, path: &Path, kind: &str) -> Vec<Cause> {
    let mut errs = Vec::new();
    let sel = spec.get("selector").filter(|s| !s.is_null());
    let sel_path = path.child("selector");
    match sel {
        None => errs.push(required(&sel_path, "")),
        Some(s) => {
            errs.extend(validate_label_selector(Some(s), &sel_path));
            if selector_is_empty(s) {
                errs.push(invalid(
                    &sel_path,
                    selector_bad(Some(s)),
                    &format!("empty selector is invalid for {kind}"),
                ));
            }
        }
    }
    let template = at(spec, &["template"]);
    let tpath = path.child("template");
    if template.is_null() {
        errs.push(required(&tpath, ""));
        return errs;
    }
    let labels = at(template, &["metadata", "labels"]);
    let labels = (!labels.is_null()).then_some(labels);
    if !sel.is_some_and(selector_is_empty) && !selector_matches(sel, labels) {
        errs.push(invalid(
            &tpath.child("metadata").child("labels"),
            Bad::raw(go_string_map(labels)),
            "`selector` does not match template `labels`",
        ));
    }
    errs.extend(validate_pod_template(template, &tpath));
    let tspec = at(template, &["spec"]);
    let rp = str_at(tspec, "restartPolicy").unwrap_or("");
    if rp != "Always" {
        errs.push(not_supported(
            &tpath.child("spec").child("restartPolicy"),
            rp,
            &["Always"],
        ));
    }
    if let Some(ads) = int(tspec, "activeDeadlineSeconds") {
        let p = tpath.child("spec").child("activeDeadlineSeconds");
        let title = match kind {
            "deployment" | "replicaset" => "ReplicaSet",
            "daemonset" => "DaemonSet",
            _ => "StatefulSet",
        };
        let msg = format!("activeDeadlineSeconds in {title} is not Supported");
        if kind == "statefulset" {
            errs.push(forbidden(&p, &msg));
        } else {
            errs.push(invalid(&p, ads, &msg));
        }
    }
    errs
}

/// Integer value of an int-or-percent (percent taken as its number).
fn int_or_percent(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.trim_end_matches('%').parse().unwrap_or(0),
        Some(n) => n.as_i64().unwrap_or(0),
        None => 0,
    }
}

fn validate_int_or_percent(v: Option<&Value>, path: &Path) -> Vec<Cause> {
    match v {
        Some(Value::String(s)) => names::is_percent(s)
            .into_iter()
            .map(|m| invalid(path, Bad::raw(go_int_or_string(v)), &m))
            .collect(),
        Some(n) => match n.as_i64() {
            Some(i) if i < 0 => vec![invalid(path, i, IS_NEGATIVE)],
            _ => Vec::new(),
        },
        None => Vec::new(),
    }
}

fn not_more_than_100_percent(v: Option<&Value>, path: &Path) -> Vec<Cause> {
    match v {
        Some(Value::String(s)) if s.ends_with('%') && int_or_percent(v) > 100 => vec![invalid(
            path,
            Bad::raw(go_int_or_string(v)),
            "must not be greater than 100%",
        )],
        _ => Vec::new(),
    }
}

pub fn validate_deployment(obj: &Value) -> Vec<Cause> {
    let spec = at(obj, &["spec"]);
    let path = Path::new("spec");
    let mut errs = Vec::new();
    nonneg(spec, "replicas", &path, &mut errs);
    errs.extend(validate_selector_and_template(spec, &path, "deployment"));
    let strategy = at(spec, &["strategy"]);
    let spath = path.child("strategy");
    let ru = strategy.get("rollingUpdate").filter(|v| !v.is_null());
    match str_at(strategy, "type").unwrap_or("") {
        "Recreate" => {
            if ru.is_some() {
                errs.push(forbidden(
                    &spath.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match ru {
            None => errs.push(required(
                &spath.child("rollingUpdate"),
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let rpath = spath.child("rollingUpdate");
                let mu = ru.get("maxUnavailable");
                let ms = ru.get("maxSurge");
                errs.extend(validate_int_or_percent(mu, &rpath.child("maxUnavailable")));
                errs.extend(validate_int_or_percent(ms, &rpath.child("maxSurge")));
                if int_or_percent(mu) == 0 && int_or_percent(ms) == 0 {
                    errs.push(invalid(
                        &rpath.child("maxUnavailable"),
                        Bad::raw(go_int_or_string(mu)),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                errs.extend(not_more_than_100_percent(mu, &rpath.child("maxUnavailable")));
            }
        },
        other => errs.push(not_supported(
            &spath,
            Bad::raw(format!(
                "apps.DeploymentStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}}",
                go_quote(other)
            )),
            &["Recreate", "RollingUpdate"],
        )),
    }
    nonneg(spec, "minReadySeconds", &path, &mut errs);
    nonneg(spec, "revisionHistoryLimit", &path, &mut errs);
    if let Some(pds) = int(spec, "progressDeadlineSeconds") {
        if pds < 0 {
            errs.push(invalid(
                &path.child("progressDeadlineSeconds"),
                pds,
                IS_NEGATIVE,
            ));
        }
        if pds <= int(spec, "minReadySeconds").unwrap_or(0) {
            errs.push(invalid(
                &path.child("progressDeadlineSeconds"),
                pds,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

pub fn validate_replica_set(obj: &Value) -> Vec<Cause> {
    let spec = at(obj, &["spec"]);
    let path = Path::new("spec");
    let mut errs = Vec::new();
    nonneg(spec, "replicas", &path, &mut errs);
    nonneg(spec, "minReadySeconds", &path, &mut errs);
    errs.extend(validate_selector_and_template(spec, &path, "replicaset"));
    errs
}

pub fn validate_stateful_set(obj: &Value) -> Vec<Cause> {
    let spec = at(obj, &["spec"]);
    let path = Path::new("spec");
    let mut errs = Vec::new();
    match str_at(spec, "podManagementPolicy").unwrap_or("") {
        "OrderedReady" | "Parallel" => {}
        "" => errs.push(required(&path.child("podManagementPolicy"), "")),
        other => errs.push(invalid(
            &path.child("podManagementPolicy"),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let us = at(spec, &["updateStrategy"]);
    let upath = path.child("updateStrategy");
    let ru = us.get("rollingUpdate").filter(|v| !v.is_null());
    match str_at(us, "type").unwrap_or("") {
        "" => errs.push(required(&upath, "")),
        "OnDelete" => {
            if ru.is_some() {
                errs.push(invalid(
                    &upath.child("rollingUpdate"),
                    Bad::raw("apps.RollingUpdateStatefulSetStrategy{...}"),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = ru {
                let rpath = upath.child("rollingUpdate");
                nonneg(ru, "partition", &rpath, &mut errs);
                if let Some(mu) = ru.get("maxUnavailable") {
                    errs.extend(validate_int_or_percent(Some(mu), &rpath.child("maxUnavailable")));
                }
            }
        }
        other => errs.push(invalid(
            &upath,
            Bad::raw(format!(
                "apps.StatefulSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateStatefulSetStrategy)(nil)}}",
                go_quote(other)
            )),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(policy) = spec
        .get("persistentVolumeClaimRetentionPolicy")
        .filter(|v| !v.is_null())
    {
        let ppath = path.child("persistentVolumeClaimRetentionPolicy");
        for key in ["whenDeleted", "whenScaled"] {
            let v = str_at(policy, key).unwrap_or("");
            if v != "Retain" && v != "Delete" {
                errs.push(not_supported(&ppath.child(key), v, &["Retain", "Delete"]));
            }
        }
    }
    nonneg(spec, "replicas", &path, &mut errs);
    nonneg(spec, "minReadySeconds", &path, &mut errs);
    if let Some(ord) = spec.get("ordinals").filter(|v| !v.is_null()) {
        nonneg(ord, "start", &path.child("ordinals"), &mut errs);
    }
    errs.extend(validate_selector_and_template(spec, &path, "statefulset"));
    nonneg(spec, "revisionHistoryLimit", &path, &mut errs);
    errs
}

pub fn validate_daemon_set(obj: &Value) -> Vec<Cause> {
    let spec = at(obj, &["spec"]);
    let path = Path::new("spec");
    let mut errs = validate_selector_and_template(spec, &path, "daemonset");
    nonneg(spec, "minReadySeconds", &path, &mut errs);
    nonneg(spec, "templateGeneration", &path, &mut errs);
    let us = at(spec, &["updateStrategy"]);
    let upath = path.child("updateStrategy");
    match str_at(us, "type").unwrap_or("") {
        "OnDelete" => {}
        "RollingUpdate" => match us.get("rollingUpdate").filter(|v| !v.is_null()) {
            None => errs.push(required(&upath.child("rollingUpdate"), "")),
            Some(ru) => {
                let rpath = upath.child("rollingUpdate");
                let mu = ru.get("maxUnavailable");
                let ms = ru.get("maxSurge");
                errs.extend(validate_int_or_percent(mu, &rpath.child("maxUnavailable")));
                errs.extend(validate_int_or_percent(ms, &rpath.child("maxSurge")));
                errs.extend(not_more_than_100_percent(mu, &rpath.child("maxUnavailable")));
                errs.extend(not_more_than_100_percent(ms, &rpath.child("maxSurge")));
                let has_unavailable = int_or_percent(mu) != 0;
                let has_surge = int_or_percent(ms) != 0;
                if has_unavailable && has_surge {
                    errs.push(invalid(
                        &rpath.child("maxSurge"),
                        Bad::raw(go_int_or_string(ms)),
                        "may not be set when maxUnavailable is non-zero",
                    ));
                } else if !has_unavailable && !has_surge {
                    errs.push(required(
                        &rpath.child("maxUnavailable"),
                        "cannot be 0 when maxSurge is 0",
                    ));
                }
            }
        },
        other => errs.push(not_supported(
            &upath,
            Bad::raw(format!(
                "apps.DaemonSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}}",
                go_quote(other)
            )),
            &["RollingUpdate", "OnDelete"],
        )),
    }
    nonneg(spec, "revisionHistoryLimit", &path, &mut errs);
    errs
}

/// The selector of Deployments, ReplicaSets and DaemonSets may not change in apps/v1.
pub fn validate_selector_update(old: &Value, new: &Value) -> Vec<Cause> {
    let o = old.get("spec").and_then(|s| s.get("selector"));
    let n = new.get("spec").and_then(|s| s.get("selector"));
    if o == n {
        return Vec::new();
    }
    vec![invalid(
        &Path::new("spec").child("selector"),
        selector_bad(n),
        IMMUTABLE,
    )]
}

/// Only some StatefulSet spec fields may change.
pub fn validate_stateful_set_update(old: &Value, new: &Value) -> Vec<Cause> {
    const MUTABLE: &[&str] = &[
        "replicas",
        "ordinals",
        "template",
        "updateStrategy",
        "persistentVolumeClaimRetentionPolicy",
        "minReadySeconds",
    ];
    let strip = |v: &Value| {
        let mut spec = at(v, &["spec"]).clone();
        if let Some(m) = spec.as_object_mut() {
            for k in MUTABLE {
                m.remove(*k);
            }
        }
        spec
    };
    if strip(old) == strip(new) {
        return Vec::new();
    }
    vec![forbidden(
        &Path::new("spec"),
        "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}, "spec": {
            "containers": [{"name": "web", "image": "nginx", "imagePullPolicy": "Always",
                "terminationMessagePolicy": "File"}],
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}})
    }

    fn deployment() -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(json!({"app": "web"})),
            "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}})
    }

    fn msgs(errs: &[Cause]) -> Vec<String> {
        errs.iter().map(Cause::display).collect()
    }

    #[test]
    fn valid_deployment_passes() {
        assert!(validate_deployment(&deployment()).is_empty());
    }

    #[test]
    fn replicas_and_selector_mismatch_messages() {
        let mut d = deployment();
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["template"]["metadata"]["labels"] = json!({"app": "other", "tier": "x"});
        assert_eq!(
            msgs(&validate_deployment(&d)),
            vec![
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\", \"tier\":\"x\"}: `selector` does not match template `labels`",
            ]
        );
    }

    #[test]
    fn missing_and_empty_selectors() {
        let mut d = deployment();
        d["spec"].as_object_mut().unwrap().remove("selector");
        assert_eq!(
            msgs(&validate_deployment(&d)),
            vec![
                "spec.selector: Required value",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
            ]
        );
        d["spec"]["selector"] = json!({});
        assert_eq!(
            msgs(&validate_deployment(&d)),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
            ]
        );
    }

    #[test]
    fn strategy_rules() {
        let mut d = deployment();
        d["spec"]["strategy"]["rollingUpdate"] = json!({"maxUnavailable": 0, "maxSurge": 0});
        assert_eq!(
            msgs(&validate_deployment(&d)),
            vec![
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: may not be 0 when `maxSurge` is 0",
            ]
        );
        d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {}});
        assert_eq!(
            msgs(&validate_deployment(&d)),
            vec![
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
            ]
        );
        d["spec"]["strategy"] = json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": "150%", "maxSurge": "x"}});
        let m = msgs(&validate_deployment(&d));
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].starts_with("spec.strategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"x\"}: a valid percent string"));
        assert_eq!(
            m[1],
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%"
        );
    }

    #[test]
    fn restart_policy_must_be_always() {
        let mut rs = json!({"spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": template(json!({"app": "web"}))}});
        assert!(validate_replica_set(&rs).is_empty());
        rs["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(
            msgs(&validate_replica_set(&rs)),
            vec![
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ]
        );
    }

    #[test]
    fn stateful_set_and_daemon_set() {
        let mut sts = json!({"spec": {"selector": {"matchLabels": {"app": "db"}},
            "template": template(json!({"app": "db"})), "serviceName": "db",
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}}});
        assert!(validate_stateful_set(&sts).is_empty());
        sts["spec"]["podManagementPolicy"] = json!("Random");
        assert_eq!(
            msgs(&validate_stateful_set(&sts)),
            vec![
                "spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'",
            ]
        );
        let mut ds = json!({"spec": {"selector": {"matchLabels": {"app": "agent"}},
            "template": template(json!({"app": "agent"})),
            "updateStrategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}}});
        assert!(validate_daemon_set(&ds).is_empty());
        ds["spec"]["updateStrategy"]["rollingUpdate"] = json!({"maxUnavailable": 0, "maxSurge": 0});
        assert_eq!(
            msgs(&validate_daemon_set(&ds)),
            vec![
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0",
            ]
        );
    }

    #[test]
    fn immutable_fields_on_update() {
        let old = deployment();
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(3);
        assert!(validate_selector_update(&old, &new).is_empty());
        new["spec"]["selector"] = json!({"matchLabels": {"app": "web2"}});
        assert_eq!(
            msgs(&validate_selector_update(&old, &new)),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable",
            ]
        );
        let old = json!({"spec": {"replicas": 1, "serviceName": "a"}});
        let ok = json!({"spec": {"replicas": 5, "serviceName": "a"}});
        let bad = json!({"spec": {"replicas": 1, "serviceName": "b"}});
        assert!(validate_stateful_set_update(&old, &ok).is_empty());
        assert!(
            msgs(&validate_stateful_set_update(&old, &bad))[0]
                .starts_with("spec: Forbidden: updates to statefulset spec for fields other than")
        );
    }
}
