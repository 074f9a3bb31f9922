//! Hand-written OpenAPI definitions, in the shape of the generated ones, for the tests of this
//! module: a Deployment with its pod template, and a Service.

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use super::SchemaPatchMeta;

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/definitions/{name}")})
}

fn merge_list(item: &str, key: &str) -> Value {
    json!({
        "type": "array",
        "items": r(item),
        "x-kubernetes-patch-merge-key": key,
        "x-kubernetes-patch-strategy": "merge"
    })
}

fn string_map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}})
}

static DEFINITIONS: LazyLock<Map<String, Value>> = LazyLock::new(|| {
    let core = "io.k8s.api.core.v1";
    let meta = "io.k8s.apimachinery.pkg.apis.meta.v1";
    let mut ports = merge_list(&format!("{core}.ContainerPort"), "containerPort");
    ports["x-kubernetes-list-type"] = json!("map");
    ports["x-kubernetes-list-map-keys"] = json!(["containerPort", "protocol"]);
    let mut service_ports = merge_list(&format!("{core}.ServicePort"), "port");
    service_ports["x-kubernetes-list-type"] = json!("map");
    service_ports["x-kubernetes-list-map-keys"] = json!(["port", "protocol"]);
    let mut volumes = merge_list(&format!("{core}.Volume"), "name");
    volumes["x-kubernetes-patch-strategy"] = json!("merge,retainKeys");
    let mut selector = r(&format!("{meta}.LabelSelector"));
    selector["description"] = json!("label selector");

    let defs = json!({
        "io.k8s.api.apps.v1.Deployment": {
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": r(&format!("{meta}.ObjectMeta")),
                "spec": r("io.k8s.api.apps.v1.DeploymentSpec"),
                "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
            }
        },
        "io.k8s.api.apps.v1.DeploymentSpec": {
            "type": "object",
            "required": ["selector", "template"],
            "properties": {
                "replicas": {"type": "integer"},
                "selector": selector,
                "template": r(&format!("{core}.PodTemplateSpec")),
                "strategy": {
                    "allOf": [r("io.k8s.api.apps.v1.DeploymentStrategy")],
                    "x-kubernetes-patch-strategy": "retainKeys"
                }
            }
        },
        "io.k8s.api.apps.v1.DeploymentStrategy": {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "rollingUpdate": {
                    "type": "object",
                    "properties": {"maxSurge": {}, "maxUnavailable": {}}
                }
            }
        },
        format!("{meta}.LabelSelector"): {
            "type": "object",
            "properties": {"matchLabels": string_map()},
            "x-kubernetes-map-type": "atomic"
        },
        format!("{meta}.ObjectMeta"): {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": string_map(),
                "annotations": string_map(),
                "finalizers": {
                    "type": "array",
                    "items": {"type": "string"},
                    "x-kubernetes-patch-strategy": "merge",
                    "x-kubernetes-list-type": "set"
                },
                "resourceVersion": {"type": "string"},
                "managedFields": {"type": "array", "items": {"type": "object"}}
            }
        },
        format!("{core}.PodTemplateSpec"): {
            "type": "object",
            "properties": {
                "metadata": r(&format!("{meta}.ObjectMeta")),
                "spec": r(&format!("{core}.PodSpec"))
            }
        },
        format!("{core}.PodSpec"): {
            "type": "object",
            "required": ["containers"],
            "properties": {
                "containers": merge_list(&format!("{core}.Container"), "name"),
                "initContainers": merge_list(&format!("{core}.Container"), "name"),
                "volumes": volumes,
                "nodeSelector": string_map(),
                "restartPolicy": {"type": "string"}
            }
        },
        format!("{core}.Container"): {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "image": {"type": "string"},
                "args": {"type": "array", "items": {"type": "string"}},
                "ports": ports,
                "env": merge_list(&format!("{core}.EnvVar"), "name"),
                "volumeMounts": merge_list(&format!("{core}.VolumeMount"), "mountPath"),
                "resources": {
                    "type": "object",
                    "properties": {"limits": string_map(), "requests": string_map()}
                }
            }
        },
        format!("{core}.ContainerPort"): {
            "type": "object",
            "properties": {
                "containerPort": {"type": "integer"},
                "name": {"type": "string"},
                "protocol": {"type": "string"}
            }
        },
        format!("{core}.EnvVar"): {
            "type": "object",
            "properties": {"name": {"type": "string"}, "value": {"type": "string"}}
        },
        format!("{core}.VolumeMount"): {
            "type": "object",
            "properties": {"mountPath": {"type": "string"}, "name": {"type": "string"}}
        },
        format!("{core}.Volume"): {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "emptyDir": {"type": "object", "properties": {"medium": {"type": "string"}}},
                "configMap": {"type": "object", "properties": {"name": {"type": "string"}}},
                "hostPath": {"type": "object", "properties": {"path": {"type": "string"}}}
            }
        },
        "io.k8s.api.core.v1.Service": {
            "type": "object",
            "properties": {
                "metadata": r(&format!("{meta}.ObjectMeta")),
                "spec": {
                    "type": "object",
                    "properties": {"ports": service_ports, "selector": string_map()}
                }
            }
        },
        format!("{core}.ServicePort"): {
            "type": "object",
            "properties": {
                "port": {"type": "integer"},
                "protocol": {"type": "string", "default": "TCP"},
                "targetPort": {}
            }
        }
    });
    match defs {
        Value::Object(m) => m,
        _ => Map::new(),
    }
});

pub(crate) fn deployment() -> SchemaPatchMeta<'static> {
    SchemaPatchMeta::new(&DEFINITIONS, "io.k8s.api.apps.v1.Deployment")
}

pub(crate) fn service() -> SchemaPatchMeta<'static> {
    SchemaPatchMeta::new(&DEFINITIONS, "io.k8s.api.core.v1.Service")
}
