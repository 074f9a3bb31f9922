//! The list, map and patch semantics Kubernetes declares in the Go struct tags and markers of
//! its types (`patchStrategy`, `patchMergeKey`, `+listType`, `+listMapKey`, `+mapType`,
//! `+structType`), which `k8s-openapi` does not carry. The table covers every tagged field of
//! the types [`super::definitions`] holds, transcribed from `k8s.io/api` and
//! `k8s.io/apimachinery` at v1.32; fields of inlined Go structs are listed under the type
//! they are inlined into.
//!
//! Published as the `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
//! `x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and `x-kubernetes-map-type`
//! extensions, as the real server does.

use serde_json::{Map, Value, json};

/// The tags of one field; empty strings mean "not declared".
struct FieldTags {
    definition: &'static str,
    property: &'static str,
    patch_strategy: &'static str,
    merge_key: &'static str,
    list_type: &'static str,
    list_map_keys: &'static [&'static str],
    map_type: &'static str,
}

const fn f(
    definition: &'static str,
    property: &'static str,
    patch_strategy: &'static str,
    merge_key: &'static str,
    list_type: &'static str,
    list_map_keys: &'static [&'static str],
    map_type: &'static str,
) -> FieldTags {
    FieldTags {
        definition,
        property,
        patch_strategy,
        merge_key,
        list_type,
        list_map_keys,
        map_type,
    }
}

/// Add the extensions to `definitions`. A row whose definition or property is absent is
/// skipped (the table may name more than a build holds).
pub(super) fn apply(definitions: &mut Map<String, Value>) {
    for row in FIELDS {
        let Some(Value::Object(property)) = definitions
            .get_mut(row.definition)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(row.property))
        else {
            continue;
        };
        let mut set = |key: &str, value: &str| {
            if !value.is_empty() {
                property.insert(key.into(), json!(value));
            }
        };
        set("x-kubernetes-patch-strategy", row.patch_strategy);
        set("x-kubernetes-patch-merge-key", row.merge_key);
        set("x-kubernetes-list-type", row.list_type);
        set("x-kubernetes-map-type", row.map_type);
        if !row.list_map_keys.is_empty() {
            property.insert(
                "x-kubernetes-list-map-keys".into(),
                json!(row.list_map_keys),
            );
        }
    }
    for name in ATOMIC_STRUCTS {
        if let Some(Value::Object(def)) = definitions.get_mut(*name) {
            def.insert("x-kubernetes-map-type".into(), json!("atomic"));
        }
    }
}

/// Structs declared `+structType=atomic`: replaced whole by a patch, never merged.
const ATOMIC_STRUCTS: &[&str] = &[
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.EndpointAddress",
    "io.k8s.api.core.v1.EndpointPort",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.NodeSelectorTerm",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.SecretReference",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.discovery.v1.EndpointPort",
    "io.k8s.api.networking.v1.ServiceBackendPort",
    "io.k8s.api.rbac.v1.RoleRef",
    "io.k8s.api.rbac.v1.Subject",
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
];

/// (definition, property, patch strategy, merge key, list type, list map keys, map type).
#[rustfmt::skip]
const FIELDS: &[FieldTags] = &[
    f("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.apps.v1.DeploymentSpec", "strategy", "retainKeys", "", "", &[], ""),
    f("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.apps.v1.StatefulSetSpec", "volumeClaimTemplates", "", "", "atomic", &[], ""),
    f("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.batch.v1.CronJobStatus", "active", "", "", "atomic", &[], ""),
    f("io.k8s.api.batch.v1.JobStatus", "conditions", "merge", "type", "atomic", &[], ""),
    f("io.k8s.api.batch.v1.PodFailurePolicy", "rules", "", "", "atomic", &[], ""),
    f("io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement", "values", "", "", "set", &[], ""),
    f("io.k8s.api.batch.v1.PodFailurePolicyRule", "onPodConditions", "", "", "atomic", &[], ""),
    f("io.k8s.api.batch.v1.SuccessPolicy", "rules", "", "", "atomic", &[], ""),
    f("io.k8s.api.batch.v1.UncountedTerminatedPods", "failed", "", "", "set", &[], ""),
    f("io.k8s.api.batch.v1.UncountedTerminatedPods", "succeeded", "", "", "set", &[], ""),
    f("io.k8s.api.core.v1.Capabilities", "add", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.Capabilities", "drop", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.CephFSPersistentVolumeSource", "monitors", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.CephFSVolumeSource", "monitors", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ConfigMapProjection", "items", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ConfigMapVolumeSource", "items", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.Container", "args", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.Container", "command", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.Container", "env", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.Container", "envFrom", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.Container", "ports", "merge", "containerPort", "map", &["containerPort", "protocol"], ""),
    f("io.k8s.api.core.v1.Container", "resizePolicy", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.Container", "volumeDevices", "merge", "devicePath", "map", &["devicePath"], ""),
    f("io.k8s.api.core.v1.Container", "volumeMounts", "merge", "mountPath", "map", &["mountPath"], ""),
    f("io.k8s.api.core.v1.ContainerImage", "names", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ContainerStatus", "allocatedResourcesStatus", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.ContainerStatus", "volumeMounts", "merge", "mountPath", "map", &["mountPath"], ""),
    f("io.k8s.api.core.v1.DownwardAPIProjection", "items", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.DownwardAPIVolumeSource", "items", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.EndpointSubset", "addresses", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.EndpointSubset", "notReadyAddresses", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.EndpointSubset", "ports", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.Endpoints", "subsets", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.EphemeralContainer", "args", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.EphemeralContainer", "command", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.EphemeralContainer", "env", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.EphemeralContainer", "envFrom", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.EphemeralContainer", "ports", "merge", "containerPort", "map", &["containerPort", "protocol"], ""),
    f("io.k8s.api.core.v1.EphemeralContainer", "resizePolicy", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", "merge", "devicePath", "map", &["devicePath"], ""),
    f("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", "merge", "mountPath", "map", &["mountPath"], ""),
    f("io.k8s.api.core.v1.ExecAction", "command", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.FCVolumeSource", "targetWWNs", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.FCVolumeSource", "wwids", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.HTTPGetAction", "httpHeaders", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.HostAlias", "hostnames", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ISCSIPersistentVolumeSource", "portals", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ISCSIVolumeSource", "portals", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.LinuxContainerUser", "supplementalGroups", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.LoadBalancerIngress", "ports", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.LoadBalancerStatus", "ingress", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NamespaceSpec", "finalizers", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NamespaceStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.core.v1.NodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeSelector", "nodeSelectorTerms", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeSelectorRequirement", "values", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeSelectorTerm", "matchExpressions", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeSelectorTerm", "matchFields", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", "", "set", &[], ""),
    f("io.k8s.api.core.v1.NodeSpec", "taints", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeStatus", "addresses", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.core.v1.NodeStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.core.v1.NodeStatus", "images", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeStatus", "runtimeHandlers", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeStatus", "volumesAttached", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.NodeStatus", "volumesInUse", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "accessModes", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "accessModes", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "allocatedResourceStatuses", "", "", "", &[], "granular"),
    f("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.core.v1.PersistentVolumeSpec", "accessModes", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PersistentVolumeSpec", "claimRef", "", "", "", &[], "granular"),
    f("io.k8s.api.core.v1.PersistentVolumeSpec", "mountOptions", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodAffinityTerm", "matchLabelKeys", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodAffinityTerm", "mismatchLabelKeys", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodAffinityTerm", "namespaces", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodDNSConfig", "nameservers", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodDNSConfig", "options", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodDNSConfig", "searches", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodSecurityContext", "supplementalGroups", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodSecurityContext", "sysctls", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodSpec", "containers", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.PodSpec", "hostAliases", "merge", "ip", "map", &["ip"], ""),
    f("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.PodSpec", "initContainers", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.PodSpec", "nodeSelector", "", "", "", &[], "atomic"),
    f("io.k8s.api.core.v1.PodSpec", "readinessGates", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodSpec", "resourceClaims", "merge,retainKeys", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.PodSpec", "schedulingGates", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.PodSpec", "tolerations", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", "merge", "topologyKey", "map", &["topologyKey", "whenUnsatisfiable"], ""),
    f("io.k8s.api.core.v1.PodSpec", "volumes", "merge,retainKeys", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.PodStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.core.v1.PodStatus", "containerStatuses", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodStatus", "ephemeralContainerStatuses", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodStatus", "hostIPs", "merge", "ip", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodStatus", "initContainerStatuses", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.PodStatus", "podIPs", "merge", "ip", "map", &["ip"], ""),
    f("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", "merge,retainKeys", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.ProjectedVolumeSource", "sources", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.RBDPersistentVolumeSource", "monitors", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.RBDVolumeSource", "monitors", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ResourceRequirements", "claims", "", "", "map", &["name"], ""),
    f("io.k8s.api.core.v1.ResourceStatus", "resources", "", "", "map", &["resourceID"], ""),
    f("io.k8s.api.core.v1.SecretProjection", "items", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.SecretVolumeSource", "items", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ServiceAccount", "imagePullSecrets", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ServiceAccount", "secrets", "merge", "name", "map", &["name"], ""),
    f("io.k8s.api.core.v1.ServiceSpec", "clusterIPs", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ServiceSpec", "externalIPs", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ServiceSpec", "ipFamilies", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ServiceSpec", "loadBalancerSourceRanges", "", "", "atomic", &[], ""),
    f("io.k8s.api.core.v1.ServiceSpec", "ports", "merge", "port", "map", &["port", "protocol"], ""),
    f("io.k8s.api.core.v1.ServiceSpec", "selector", "", "", "", &[], "atomic"),
    f("io.k8s.api.core.v1.ServiceStatus", "conditions", "merge", "type", "map", &["type"], ""),
    f("io.k8s.api.core.v1.TopologySpreadConstraint", "matchLabelKeys", "", "", "atomic", &[], ""),
    f("io.k8s.api.discovery.v1.Endpoint", "addresses", "", "", "set", &[], ""),
    f("io.k8s.api.discovery.v1.EndpointHints", "forZones", "", "", "atomic", &[], ""),
    f("io.k8s.api.discovery.v1.EndpointSlice", "endpoints", "", "", "atomic", &[], ""),
    f("io.k8s.api.discovery.v1.EndpointSlice", "ports", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.HTTPIngressRuleValue", "paths", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.IngressLoadBalancerIngress", "ports", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.IngressLoadBalancerStatus", "ingress", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.IngressSpec", "rules", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.IngressSpec", "tls", "", "", "atomic", &[], ""),
    f("io.k8s.api.networking.v1.IngressTLS", "hosts", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.AggregationRule", "clusterRoleSelectors", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.ClusterRole", "rules", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.ClusterRoleBinding", "subjects", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.PolicyRule", "apiGroups", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.PolicyRule", "nonResourceURLs", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.PolicyRule", "resourceNames", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.PolicyRule", "resources", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.PolicyRule", "verbs", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.Role", "rules", "", "", "atomic", &[], ""),
    f("io.k8s.api.rbac.v1.RoleBinding", "subjects", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "serverAddressByClientCIDRs", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "versions", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList", "groups", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.APIResource", "categories", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.APIResource", "shortNames", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList", "resources", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "serverAddressByClientCIDRs", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "versions", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions", "dryRun", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", "matchExpressions", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement", "values", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", "merge", "", "set", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "managedFields", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "merge", "uid", "map", &["uid"], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.Status", "details", "", "", "atomic", &[], ""),
    f("io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails", "causes", "", "", "atomic", &[], ""),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_names_a_field_the_schema_has() {
        let defs = super::super::definitions();
        for row in FIELDS {
            let def = defs.get(row.definition);
            assert!(def.is_some(), "{} is not defined", row.definition);
            assert!(
                def.and_then(|d| d.pointer(&format!("/properties/{}", row.property)))
                    .is_some(),
                "{}.{} does not exist",
                row.definition,
                row.property
            );
            if !row.merge_key.is_empty() || !row.list_map_keys.is_empty() {
                assert_eq!(
                    defs[row.definition]["properties"][row.property]["type"], "array",
                    "{}.{}",
                    row.definition, row.property
                );
            }
        }
        for name in ATOMIC_STRUCTS {
            assert!(defs.contains_key(*name), "{name}");
        }
    }
}
