//! The types the schema starts from: every served kind (with its list), the kinds its
//! subresources take, and the `meta/v1` envelopes the API returns (Status, DeleteOptions,
//! WatchEvent, discovery documents).

use k8s_openapi::api::{
    apps, authentication, autoscaling, batch, certificates, coordination, core, discovery, events,
    networking, rbac,
};
use k8s_openapi::apimachinery::pkg::apis::meta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use schemars::{JsonSchema, SchemaGenerator};

/// A top-level kind: its group/version/kind, and a function adding its schema to a generator
/// and returning its definition name.
pub(super) struct Root {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Whether the kind has a `<Kind>List` served next to it.
    pub listed: bool,
    pub add: AddFn,
}

/// Adds a type's schema to a generator and returns its definition name.
pub(super) type AddFn = fn(&mut SchemaGenerator) -> String;

fn add<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

const fn kind(group: &'static str, version: &'static str, kind: &'static str, add: AddFn) -> Root {
    Root {
        group,
        version,
        kind,
        listed: true,
        add,
    }
}

const fn unlisted(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    add: AddFn,
) -> Root {
    Root {
        group,
        version,
        kind,
        listed: false,
        add,
    }
}

/// Every root, served kinds first.
pub(super) const ROOTS: &[Root] = &[
    kind("", "v1", "Namespace", add::<core::v1::Namespace>),
    kind("", "v1", "Pod", add::<core::v1::Pod>),
    kind("", "v1", "Node", add::<core::v1::Node>),
    kind("", "v1", "Service", add::<core::v1::Service>),
    kind("", "v1", "Endpoints", add::<core::v1::Endpoints>),
    kind("", "v1", "ConfigMap", add::<core::v1::ConfigMap>),
    kind("", "v1", "Secret", add::<core::v1::Secret>),
    kind("", "v1", "ServiceAccount", add::<core::v1::ServiceAccount>),
    kind("", "v1", "Event", add::<core::v1::Event>),
    kind(
        "",
        "v1",
        "PersistentVolumeClaim",
        add::<core::v1::PersistentVolumeClaim>,
    ),
    kind(
        "",
        "v1",
        "PersistentVolume",
        add::<core::v1::PersistentVolume>,
    ),
    kind("apps", "v1", "Deployment", add::<apps::v1::Deployment>),
    kind("apps", "v1", "ReplicaSet", add::<apps::v1::ReplicaSet>),
    kind("apps", "v1", "StatefulSet", add::<apps::v1::StatefulSet>),
    kind("apps", "v1", "DaemonSet", add::<apps::v1::DaemonSet>),
    kind(
        "apps",
        "v1",
        "ControllerRevision",
        add::<apps::v1::ControllerRevision>,
    ),
    kind("batch", "v1", "Job", add::<batch::v1::Job>),
    kind("batch", "v1", "CronJob", add::<batch::v1::CronJob>),
    kind(
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        add::<certificates::v1::CertificateSigningRequest>,
    ),
    kind(
        "coordination.k8s.io",
        "v1",
        "Lease",
        add::<coordination::v1::Lease>,
    ),
    kind(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        add::<discovery::v1::EndpointSlice>,
    ),
    kind("events.k8s.io", "v1", "Event", add::<events::v1::Event>),
    kind(
        "networking.k8s.io",
        "v1",
        "Ingress",
        add::<networking::v1::Ingress>,
    ),
    kind(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        add::<networking::v1::IngressClass>,
    ),
    kind(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        add::<rbac::v1::Role>,
    ),
    kind(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        add::<rbac::v1::RoleBinding>,
    ),
    kind(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        add::<rbac::v1::ClusterRole>,
    ),
    kind(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        add::<rbac::v1::ClusterRoleBinding>,
    ),
    // Subresource bodies.
    unlisted("", "v1", "Binding", add::<core::v1::Binding>),
    unlisted("autoscaling", "v1", "Scale", add::<autoscaling::v1::Scale>),
    unlisted(
        "authentication.k8s.io",
        "v1",
        "TokenRequest",
        add::<authentication::v1::TokenRequest>,
    ),
    // meta/v1 envelopes, which the real server files under the core group.
    unlisted("", "v1", "Status", add::<meta::v1::Status>),
    unlisted("", "v1", "APIGroup", add::<meta::v1::APIGroup>),
    unlisted("", "v1", "APIGroupList", add::<meta::v1::APIGroupList>),
    unlisted(
        "",
        "v1",
        "APIResourceList",
        add::<meta::v1::APIResourceList>,
    ),
    unlisted("", "v1", "APIVersions", add::<meta::v1::APIVersions>),
];

/// Types every group version shares, named under each of them by the real server
/// (`x-kubernetes-group-version-kind` lists one entry per group version).
pub(super) const SHARED: &[(&str, AddFn)] = &[
    ("DeleteOptions", add::<meta::v1::DeleteOptions>),
    ("WatchEvent", add::<meta::v1::WatchEvent<RawExtension>>),
];

/// Types referenced by operations but carrying no kind.
pub(super) const PLAIN: &[AddFn] = &[add::<meta::v1::Patch>, add::<meta::v1::ListMeta>];
