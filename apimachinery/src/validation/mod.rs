//! What the API server refuses: field-level validation of objects on create and update, with
//! the causes and messages real Kubernetes reports.
//!
//! Call order the server should follow on create: [`crate::defaults::apply`], assign name
//! (from `generateName`), namespace and uid, [`crate::defaults::job_selector`] for Jobs, then
//! [`validate_create`]. On update: defaults, then [`validate_update`] with the stored object.

mod apps;
mod batch;
mod config;
pub mod field;
mod meta;
mod misc;
pub mod names;
mod pod;
pub mod quantity;
mod rbac;
mod service;

use serde_json::{Map, Value};

pub use field::{Cause, CauseType, Path};
pub use meta::{NameRule, name_rule, selector_matches};
pub(crate) use pod::VOLUME_SOURCES;
pub use quantity::Quantity;

use crate::registry::Resource;

/// Everything wrong with a new object of kind `res`.
pub fn validate_create(res: &Resource, obj: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(res, obj);
    errs.extend(validate_kind(res, obj));
    errs
}

/// Everything wrong with replacing `old` by `new`: metadata identity, immutable fields, and
/// the rules for a new object applied to `new`.
pub fn validate_update(res: &Resource, old: &Value, new: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta_update(old, new);
    errs.extend(validate_kind(res, new));
    errs.extend(match (res.group, res.kind) {
        ("", "Pod") => pod::validate_pod_update(old, new),
        ("", "Service") => service::validate_service_update(old, new),
        ("", "ConfigMap") => config::validate_config_map_update(old, new),
        ("", "Secret") => config::validate_secret_update(old, new),
        ("", "PersistentVolumeClaim") => misc::validate_pvc_update(old, new),
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => {
            apps::validate_selector_update(old, new)
        }
        ("apps", "StatefulSet") => apps::validate_stateful_set_update(old, new),
        ("batch", "Job") => batch::validate_job_update(old, new),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            rbac::validate_binding_update(old, new)
        }
        _ => Vec::new(),
    });
    errs
}

/// The name rule for this resource, used also by the server for path names.
pub fn validate_name(res: &Resource, name: &str) -> Vec<String> {
    meta::check_name(name_rule(res), name, false)
}

/// The `message` of the 422 Status: `Deployment.apps "web" is invalid: <causes>`; several
/// causes are joined in brackets like Go's aggregate error.
pub fn invalid_message(res: &Resource, name: &str, causes: &[Cause]) -> String {
    let kind = if res.group.is_empty() {
        res.kind.to_string()
    } else {
        format!("{}.{}", res.kind, res.group)
    };
    let mut seen: Vec<String> = Vec::new();
    for c in causes {
        let d = c.display();
        if !seen.contains(&d) {
            seen.push(d);
        }
    }
    let body = match seen.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    format!("{kind} {} is invalid: {body}", field::go_quote(name))
}

fn validate_kind(res: &Resource, obj: &Value) -> Vec<Cause> {
    match (res.group, res.kind) {
        ("", "Pod") => pod::validate_pod(obj),
        ("", "Service") => service::validate_service(obj),
        ("", "ConfigMap") => config::validate_config_map(obj),
        ("", "Secret") => config::validate_secret(obj),
        ("", "Namespace") => Vec::new(),
        ("", "Node") => misc::validate_node(obj),
        ("", "Endpoints") => misc::validate_endpoints(obj),
        ("", "Event") => misc::validate_core_event(obj),
        ("", "ServiceAccount") => misc::validate_service_account(obj),
        ("", "PersistentVolumeClaim") => misc::validate_pvc(obj),
        ("", "PersistentVolume") => misc::validate_pv(obj),
        ("apps", "Deployment") => apps::validate_deployment(obj),
        ("apps", "ReplicaSet") => apps::validate_replica_set(obj),
        ("apps", "StatefulSet") => apps::validate_stateful_set(obj),
        ("apps", "DaemonSet") => apps::validate_daemon_set(obj),
        ("apps", "ControllerRevision") => misc::validate_controller_revision(obj),
        ("batch", "Job") => batch::validate_job(obj),
        ("batch", "CronJob") => batch::validate_cron_job(obj),
        ("coordination.k8s.io", "Lease") => misc::validate_lease(obj),
        ("discovery.k8s.io", "EndpointSlice") => misc::validate_endpoint_slice(obj),
        ("events.k8s.io", "Event") => misc::validate_events_event(obj),
        ("networking.k8s.io", "Ingress") => misc::validate_ingress(obj),
        ("networking.k8s.io", "IngressClass") => misc::validate_ingress_class(obj),
        ("rbac.authorization.k8s.io", "Role") => rbac::validate_role(obj, true),
        ("rbac.authorization.k8s.io", "ClusterRole") => rbac::validate_role(obj, false),
        ("rbac.authorization.k8s.io", "RoleBinding") => rbac::validate_binding(obj, true),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => rbac::validate_binding(obj, false),
        _ => Vec::new(),
    }
}

// Small readers over `serde_json::Value`; absent and mistyped fields read as absent.

pub(crate) fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

pub(crate) fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

pub(crate) fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

pub(crate) fn obj<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

/// `v[a][b]...`, or `Null` when any step is missing.
pub(crate) fn at<'a>(v: &'a Value, keys: &[&str]) -> &'a Value {
    static NULL: Value = Value::Null;
    keys.iter()
        .try_fold(v, |cur, k| cur.get(*k))
        .unwrap_or(&NULL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::json;

    #[test]
    fn invalid_message_aggregates_like_kubernetes() {
        let deploy = Registry::builtin()
            .get("apps", "v1", "deployments")
            .unwrap();
        let a = field::required(&Path::new("spec").child("selector"), "");
        let b = field::invalid(&Path::new("spec").child("replicas"), -1, names::IS_NEGATIVE);
        assert_eq!(
            invalid_message(deploy, "web", std::slice::from_ref(&a)),
            "Deployment.apps \"web\" is invalid: spec.selector: Required value"
        );
        assert_eq!(
            invalid_message(deploy, "web", &[a.clone(), b, a]),
            "Deployment.apps \"web\" is invalid: [spec.selector: Required value, spec.replicas: Invalid value: -1: must be greater than or equal to 0]"
        );
    }

    #[test]
    fn validate_name_uses_the_kind_rule() {
        let reg = Registry::builtin();
        assert!(validate_name(reg.get("", "v1", "pods").unwrap(), "a.b").is_empty());
        assert_eq!(
            validate_name(reg.get("", "v1", "namespaces").unwrap(), "a.b"),
            vec!["must not contain dots"]
        );
    }

    #[test]
    fn value_readers() {
        let v = json!({"a": {"b": [1, 2]}, "s": "x", "n": 3});
        assert_eq!(at(&v, &["a", "b"]).as_array().map(Vec::len), Some(2));
        assert!(at(&v, &["a", "c", "d"]).is_null());
        assert_eq!(str_at(&v, "s"), Some("x"));
        assert_eq!(int(&v, "n"), Some(3));
        assert!(arr(&v, "missing").is_empty());
        assert!(obj(&v, "a").is_some());
    }
}
