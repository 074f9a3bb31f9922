//! The table of every resource the API serves, and typed decoding.
//!
//! Objects travel through the server as `serde_json::Value`. Decoding one means a round trip
//! through its `k8s-openapi` type: the result is the object exactly as a real API server would
//! store it (fields it does not know are gone), and comparing input with output names the
//! unknown fields for `fieldValidation=Strict`.

use std::collections::HashMap;
use std::sync::LazyLock;

use k8s_openapi::api::{
    apps, batch, certificates, coordination, core, discovery, events, networking, rbac,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Where a resource lives: inside a namespace or at cluster level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// A subresource served under `.../{name}/{subresource}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `status`: same kind, only `.status` may change.
    Status,
    /// `scale`: an `autoscaling/v1` Scale view of `.spec.replicas`.
    Scale,
    /// `binding`: a `Binding` posted to assign a pod to a node.
    Binding,
    /// `finalize`: a namespace's `spec.finalizers` may change.
    Finalize,
    /// `log`: a pod container's log, proxied from the node agent (plain text, not an object).
    Log,
    /// `token`: an `authentication.k8s.io/v1` TokenRequest posted for a service account.
    Token,
    /// `exec`: a command run in a pod's container, streamed over an upgraded connection.
    Exec,
    /// `portforward`: TCP connections to a pod's ports over an upgraded connection.
    PortForward,
    /// `attach`: the stdio of a pod's running container, streamed over an upgraded connection.
    Attach,
}

impl Subresource {
    /// Served over an upgraded (SPDY or WebSocket) connection rather than as an object.
    pub fn is_streaming(self) -> bool {
        matches!(self, Self::Exec | Self::PortForward | Self::Attach)
    }
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Scale => "scale",
            Self::Binding => "binding",
            Self::Finalize => "finalize",
            Self::Log => "log",
            Self::Token => "token",
            Self::Exec => "exec",
            Self::PortForward => "portforward",
            Self::Attach => "attach",
        }
    }

    /// The verbs discovery advertises for this subresource.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Self::Status | Self::Scale => &["get", "patch", "update"],
            Self::Binding | Self::Token => &["create"],
            Self::Finalize => &["update"],
            Self::Log => &["get"],
            Self::Exec | Self::PortForward | Self::Attach => &["create", "get"],
        }
    }

    /// (group, version, kind) of the object this subresource takes and returns.
    pub fn kind(self, parent: &Resource) -> (&str, &str, &str) {
        match self {
            Self::Status | Self::Finalize | Self::Log => {
                (parent.group, parent.version, parent.kind)
            }
            Self::Scale => ("autoscaling", "v1", "Scale"),
            Self::Binding => ("", "v1", "Binding"),
            Self::Token => ("authentication.k8s.io", "v1", "TokenRequest"),
            Self::Exec => ("", "v1", "PodExecOptions"),
            Self::PortForward => ("", "v1", "PodPortForwardOptions"),
            Self::Attach => ("", "v1", "PodAttachOptions"),
        }
    }
}

/// A decoding failure: the body does not fit the kind's schema.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    pub message: String,
}

/// The outcome of decoding: the object as the schema keeps it, and the fields it dropped.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub object: Value,
    /// Dotted paths (`spec.template.spec.containers[0].foo`) present in the input but not
    /// declared by the schema.
    pub unknown_fields: Vec<String>,
}

type DecodeFn = fn(&Value) -> Result<Value, serde_json::Error>;
type ConvertFn = fn(Value) -> Value;

/// One served resource.
#[derive(Debug, Clone)]
pub struct Resource {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub scope: Scope,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Storage prefix segment; two resources that share it are two views of one object set.
    pub storage: &'static str,
    /// Whether DELETE on the collection is allowed.
    pub delete_collection: bool,
    decode: DecodeFn,
    /// Conversions to and from the stored form, for views of another version's objects.
    to_storage: Option<ConvertFn>,
    from_storage: Option<ConvertFn>,
}

impl Resource {
    /// `v1` for core, `apps/v1` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// The list kind, e.g. `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Verbs on the collection and on single objects, as discovery lists them.
    pub fn verbs(&self) -> Vec<&'static str> {
        let mut verbs = vec!["create", "delete"];
        if self.delete_collection {
            verbs.push("deletecollection");
        }
        verbs.extend(["get", "list", "patch", "update", "watch"]);
        verbs
    }

    /// Whether objects are converted between this resource's form and the stored one.
    pub fn has_storage_conversion(&self) -> bool {
        self.to_storage.is_some() || self.from_storage.is_some()
    }

    /// This resource's object in the form it is stored in.
    pub fn to_storage(&self, obj: Value) -> Value {
        match self.to_storage {
            Some(f) => f(obj),
            None => obj,
        }
    }

    /// A stored object as this resource serves it.
    pub fn from_storage(&self, obj: Value) -> Value {
        match self.from_storage {
            Some(f) => f(obj),
            None => obj,
        }
    }

    pub fn has_subresource(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    pub fn subresource(&self, name: &str) -> Option<Subresource> {
        self.subresources.iter().copied().find(|s| s.name() == name)
    }

    /// Decode `input` through the kind's type. `apiVersion` and `kind` are set to this
    /// resource's; a body naming another kind is the caller's to refuse before this.
    pub fn decode(&self, input: &Value) -> Result<Decoded, DecodeError> {
        if !input.is_object() {
            return Err(DecodeError {
                message: format!("{} must be a JSON object", self.kind),
            });
        }
        let object = (self.decode)(input).map_err(|e| DecodeError {
            message: e.to_string(),
        })?;
        let mut unknown_fields = Vec::new();
        unknown_paths(input, &object, "", &mut unknown_fields);
        let mut object = object;
        if let Some(map) = object.as_object_mut() {
            map.insert("apiVersion".into(), Value::String(self.api_version()));
            map.insert("kind".into(), Value::String(self.kind.into()));
        }
        Ok(Decoded {
            object,
            unknown_fields,
        })
    }
}

fn roundtrip<K: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, serde_json::Error> {
    let typed = K::deserialize(v)?;
    serde_json::to_value(typed)
}

/// Collect paths present (and non-null) in `input` but missing from `output`.
fn unknown_paths(input: &Value, output: &Value, path: &str, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                if v.is_null() {
                    continue;
                }
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match o.get(k) {
                    Some(ov) => unknown_paths(v, ov, &child, out),
                    None if k == "apiVersion" || k == "kind" => {}
                    // An empty object or list may be dropped by the type without loss.
                    None if is_empty_container(v) => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (n, (iv, ov)) in i.iter().zip(o.iter()).enumerate() {
                unknown_paths(iv, ov, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Every served resource, with lookups by group/version/plural and by kind.
#[derive(Debug)]
pub struct Registry {
    resources: Vec<Resource>,
    by_path: HashMap<(&'static str, &'static str, &'static str), usize>,
}

impl Registry {
    /// The built-in resources.
    pub fn builtin() -> &'static Registry {
        static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry::new(builtin_resources()));
        &REGISTRY
    }

    fn new(resources: Vec<Resource>) -> Self {
        let by_path = resources
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.group, r.version, r.plural), i))
            .collect();
        Self { resources, by_path }
    }

    pub fn all(&self) -> &[Resource] {
        &self.resources
    }

    /// The resource served at `/api(s)/{group}/{version}/{plural}`.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&Resource> {
        self.by_path
            .get(&(group, version, plural))
            .map(|&i| &self.resources[i])
    }

    /// The resource for an `apiVersion` + `kind` pair.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&Resource> {
        let (group, version) = split_api_version(api_version);
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
    }

    /// Groups in the order discovery lists them (core first), each with its versions.
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for r in &self.resources {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
                Some(_) => {}
                None => out.push((r.group, vec![r.version])),
            }
        }
        out
    }

    /// Resources in one group/version.
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a Resource> + 'a {
        self.resources
            .iter()
            .filter(move |r| r.group == group && r.version == version)
    }
}

/// `apps/v1` → (`apps`, `v1`); `v1` → (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

struct Def {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    scope: Scope,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [Subresource],
}

fn def<K: DeserializeOwned + Serialize>(d: Def) -> Resource {
    let storage = d.plural;
    Resource {
        group: d.group,
        version: d.version,
        kind: d.kind,
        plural: d.plural,
        singular: leak_lowercase(d.kind),
        scope: d.scope,
        short_names: d.short_names,
        categories: d.categories,
        subresources: d.subresources,
        storage,
        delete_collection: d.plural != "namespaces",
        decode: roundtrip::<K>,
        to_storage: None,
        from_storage: None,
    }
}

fn leak_lowercase(s: &'static str) -> &'static str {
    // Built once per resource at registry construction; the registry lives for the process.
    Box::leak(s.to_ascii_lowercase().into_boxed_str())
}

fn builtin_resources() -> Vec<Resource> {
    use Scope::{Cluster, Namespaced};
    use Subresource::{Attach, Binding, Exec, Finalize, Log, PortForward, Scale, Status, Token};
    const ALL: &[&str] = &["all"];
    const NONE: &[&str] = &[];
    let mut events_v1 = def::<events::v1::Event>(Def {
        group: "events.k8s.io",
        version: "v1",
        kind: "Event",
        plural: "events",
        scope: Namespaced,
        short_names: NONE,
        categories: NONE,
        subresources: &[],
    });
    events_v1.storage = "events";
    events_v1.to_storage = Some(crate::convert::event_to_core);
    events_v1.from_storage = Some(crate::convert::event_from_core);
    vec![
        // core/v1
        def::<core::v1::Namespace>(Def {
            group: "",
            version: "v1",
            kind: "Namespace",
            plural: "namespaces",
            scope: Cluster,
            short_names: &["ns"],
            categories: NONE,
            subresources: &[Status, Finalize],
        }),
        def::<core::v1::Pod>(Def {
            group: "",
            version: "v1",
            kind: "Pod",
            plural: "pods",
            scope: Namespaced,
            short_names: &["po"],
            categories: ALL,
            subresources: &[Status, Binding, Log, Exec, PortForward, Attach],
        }),
        def::<core::v1::Node>(Def {
            group: "",
            version: "v1",
            kind: "Node",
            plural: "nodes",
            scope: Cluster,
            short_names: &["no"],
            categories: NONE,
            subresources: &[Status],
        }),
        def::<core::v1::Service>(Def {
            group: "",
            version: "v1",
            kind: "Service",
            plural: "services",
            scope: Namespaced,
            short_names: &["svc"],
            categories: ALL,
            subresources: &[Status],
        }),
        def::<core::v1::Endpoints>(Def {
            group: "",
            version: "v1",
            kind: "Endpoints",
            plural: "endpoints",
            scope: Namespaced,
            short_names: &["ep"],
            categories: NONE,
            subresources: &[],
        }),
        def::<core::v1::ConfigMap>(Def {
            group: "",
            version: "v1",
            kind: "ConfigMap",
            plural: "configmaps",
            scope: Namespaced,
            short_names: &["cm"],
            categories: NONE,
            subresources: &[],
        }),
        def::<core::v1::Secret>(Def {
            group: "",
            version: "v1",
            kind: "Secret",
            plural: "secrets",
            scope: Namespaced,
            short_names: NONE,
            categories: NONE,
            subresources: &[],
        }),
        def::<core::v1::ServiceAccount>(Def {
            group: "",
            version: "v1",
            kind: "ServiceAccount",
            plural: "serviceaccounts",
            scope: Namespaced,
            short_names: &["sa"],
            categories: NONE,
            subresources: &[Token],
        }),
        def::<core::v1::Event>(Def {
            group: "",
            version: "v1",
            kind: "Event",
            plural: "events",
            scope: Namespaced,
            short_names: &["ev"],
            categories: NONE,
            subresources: &[],
        }),
        def::<core::v1::PersistentVolumeClaim>(Def {
            group: "",
            version: "v1",
            kind: "PersistentVolumeClaim",
            plural: "persistentvolumeclaims",
            scope: Namespaced,
            short_names: &["pvc"],
            categories: NONE,
            subresources: &[Status],
        }),
        def::<core::v1::PersistentVolume>(Def {
            group: "",
            version: "v1",
            kind: "PersistentVolume",
            plural: "persistentvolumes",
            scope: Cluster,
            short_names: &["pv"],
            categories: NONE,
            subresources: &[Status],
        }),
        // apps/v1
        def::<apps::v1::Deployment>(Def {
            group: "apps",
            version: "v1",
            kind: "Deployment",
            plural: "deployments",
            scope: Namespaced,
            short_names: &["deploy"],
            categories: ALL,
            subresources: &[Status, Scale],
        }),
        def::<apps::v1::ReplicaSet>(Def {
            group: "apps",
            version: "v1",
            kind: "ReplicaSet",
            plural: "replicasets",
            scope: Namespaced,
            short_names: &["rs"],
            categories: ALL,
            subresources: &[Status, Scale],
        }),
        def::<apps::v1::StatefulSet>(Def {
            group: "apps",
            version: "v1",
            kind: "StatefulSet",
            plural: "statefulsets",
            scope: Namespaced,
            short_names: &["sts"],
            categories: ALL,
            subresources: &[Status, Scale],
        }),
        def::<apps::v1::DaemonSet>(Def {
            group: "apps",
            version: "v1",
            kind: "DaemonSet",
            plural: "daemonsets",
            scope: Namespaced,
            short_names: &["ds"],
            categories: ALL,
            subresources: &[Status],
        }),
        def::<apps::v1::ControllerRevision>(Def {
            group: "apps",
            version: "v1",
            kind: "ControllerRevision",
            plural: "controllerrevisions",
            scope: Namespaced,
            short_names: NONE,
            categories: NONE,
            subresources: &[],
        }),
        // batch/v1
        def::<batch::v1::Job>(Def {
            group: "batch",
            version: "v1",
            kind: "Job",
            plural: "jobs",
            scope: Namespaced,
            short_names: NONE,
            categories: ALL,
            subresources: &[Status],
        }),
        def::<batch::v1::CronJob>(Def {
            group: "batch",
            version: "v1",
            kind: "CronJob",
            plural: "cronjobs",
            scope: Namespaced,
            short_names: &["cj"],
            categories: ALL,
            subresources: &[Status],
        }),
        // certificates.k8s.io/v1
        def::<certificates::v1::CertificateSigningRequest>(Def {
            group: "certificates.k8s.io",
            version: "v1",
            kind: "CertificateSigningRequest",
            plural: "certificatesigningrequests",
            scope: Cluster,
            short_names: &["csr"],
            categories: NONE,
            subresources: &[Status],
        }),
        // coordination.k8s.io/v1
        def::<coordination::v1::Lease>(Def {
            group: "coordination.k8s.io",
            version: "v1",
            kind: "Lease",
            plural: "leases",
            scope: Namespaced,
            short_names: NONE,
            categories: NONE,
            subresources: &[],
        }),
        // discovery.k8s.io/v1
        def::<discovery::v1::EndpointSlice>(Def {
            group: "discovery.k8s.io",
            version: "v1",
            kind: "EndpointSlice",
            plural: "endpointslices",
            scope: Namespaced,
            short_names: NONE,
            categories: NONE,
            subresources: &[],
        }),
        // events.k8s.io/v1
        events_v1,
        // networking.k8s.io/v1
        def::<networking::v1::Ingress>(Def {
            group: "networking.k8s.io",
            version: "v1",
            kind: "Ingress",
            plural: "ingresses",
            scope: Namespaced,
            short_names: &["ing"],
            categories: NONE,
            subresources: &[Status],
        }),
        def::<networking::v1::IngressClass>(Def {
            group: "networking.k8s.io",
            version: "v1",
            kind: "IngressClass",
            plural: "ingressclasses",
            scope: Cluster,
            short_names: NONE,
            categories: NONE,
            subresources: &[],
        }),
        // rbac.authorization.k8s.io/v1
        def::<rbac::v1::Role>(Def {
            group: "rbac.authorization.k8s.io",
            version: "v1",
            kind: "Role",
            plural: "roles",
            scope: Namespaced,
            short_names: NONE,
            categories: NONE,
            subresources: &[],
        }),
        def::<rbac::v1::RoleBinding>(Def {
            group: "rbac.authorization.k8s.io",
            version: "v1",
            kind: "RoleBinding",
            plural: "rolebindings",
            scope: Namespaced,
            short_names: NONE,
            categories: NONE,
            subresources: &[],
        }),
        def::<rbac::v1::ClusterRole>(Def {
            group: "rbac.authorization.k8s.io",
            version: "v1",
            kind: "ClusterRole",
            plural: "clusterroles",
            scope: Cluster,
            short_names: NONE,
            categories: NONE,
            subresources: &[],
        }),
        def::<rbac::v1::ClusterRoleBinding>(Def {
            group: "rbac.authorization.k8s.io",
            version: "v1",
            kind: "ClusterRoleBinding",
            plural: "clusterrolebindings",
            scope: Cluster,
            short_names: NONE,
            categories: NONE,
            subresources: &[],
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_resources_by_path_and_kind() {
        let reg = Registry::builtin();
        let deploy = reg.get("apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.kind, "Deployment");
        assert_eq!(deploy.singular, "deployment");
        assert!(deploy.has_subresource(Subresource::Scale));
        assert_eq!(reg.by_kind("v1", "Pod").unwrap().plural, "pods");
        assert!(reg.get("", "v1", "deployments").is_none());
        assert_eq!(reg.groups()[0].0, "");
    }

    #[test]
    fn decode_reports_unknown_fields_and_keeps_known_ones() {
        let cm = Registry::builtin().get("", "v1", "configmaps").unwrap();
        let input = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "creationTimestamp": null, "bogus": 1},
            "data": {"a": "b"},
            "extra": {"deep": true}
        });
        let d = cm.decode(&input).unwrap();
        assert_eq!(d.object["data"]["a"], "b");
        assert_eq!(d.unknown_fields, vec!["extra", "metadata.bogus"]);
        assert!(d.object.get("extra").is_none());
    }

    #[test]
    fn decode_reports_unknown_fields_inside_lists() {
        let pods = Registry::builtin().get("", "v1", "pods").unwrap();
        let input = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": "nginx", "imagePullPolcy": "Always"}
        ]}});
        let d = pods.decode(&input).unwrap();
        assert_eq!(d.unknown_fields, vec!["spec.containers[0].imagePullPolcy"]);
    }

    #[test]
    fn decode_refuses_wrong_types() {
        let deploy = Registry::builtin()
            .get("apps", "v1", "deployments")
            .unwrap();
        let err = deploy
            .decode(&json!({"metadata": {"name": "d"}, "spec": {"replicas": "three"}}))
            .unwrap_err();
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }
}
