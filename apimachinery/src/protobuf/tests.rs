//! End-to-end decoding of bodies encoded with prost from the `k8s-pb` message types, the way
//! client-go encodes them: the object message wrapped in a `runtime.Unknown` envelope.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message as _;
use serde_json::json;

use super::*;

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        // Go always writes these two, empty.
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn body(api_version: &str, kind: &str, object: &impl prost::Message) -> Vec<u8> {
    envelope(api_version, kind, object.encode_to_vec())
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn quantity(v: &str) -> Quantity {
    Quantity { string: s(v) }
}

fn int_or_string_int(v: i32) -> IntOrString {
    IntOrString {
        r#type: Some(0),
        int_val: Some(v),
        str_val: Some(String::new()),
    }
}

fn int_or_string_str(v: &str) -> IntOrString {
    IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: s(v),
    }
}

/// ObjectMeta as Go writes it: every non-pointer field present, zero when unset.
fn go_meta(name: &str, namespace: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(namespace),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    }
}

#[test]
fn namespace_as_kubectl_sends_it() {
    let ns = core::Namespace {
        metadata: Some(go_meta("demo", "")),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus {
            phase: s(""),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode(&body("v1", "Namespace", &ns)).unwrap(),
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "demo", "creationTimestamp": null},
            "spec": {},
            "status": {}
        })
    );
}

#[test]
fn deployment_with_containers_resources_and_int_or_string() {
    let container = core::Container {
        name: s("web"),
        image: s("nginx:1.27"),
        command: strings(&["nginx", "-g", "daemon off;"]),
        ports: vec![core::ContainerPort {
            name: s(""),
            host_port: Some(0),
            container_port: Some(80),
            protocol: s("TCP"),
            host_ip: s(""),
        }],
        env: vec![
            core::EnvVar {
                name: s("MODE"),
                value: s("prod"),
                value_from: None,
            },
            core::EnvVar {
                name: s("TOKEN"),
                value: s(""),
                value_from: Some(core::EnvVarSource {
                    secret_key_ref: Some(core::SecretKeySelector {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: s("creds"),
                        }),
                        key: s("token"),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            },
        ],
        resources: Some(core::ResourceRequirements {
            limits: [
                ("cpu".to_string(), quantity("500m")),
                ("memory".to_string(), quantity("128Mi")),
            ]
            .into(),
            requests: [("cpu".to_string(), quantity("100m"))].into(),
            ..Default::default()
        }),
        termination_message_path: s(""),
        image_pull_policy: s(""),
        stdin: Some(false),
        tty: Some(false),
        ..Default::default()
    };
    let labels = map(&[("app", "web")]);
    let mut meta = go_meta("web", "default");
    meta.labels = labels.clone();
    meta.creation_timestamp = Some(meta::Time {
        seconds: Some(1_704_164_645),
        nanos: Some(999),
    });
    let deployment = apps::Deployment {
        metadata: Some(meta),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: labels.clone(),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: labels.clone(),
                    creation_timestamp: Some(meta::Time::default()),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    restart_policy: s(""),
                    termination_grace_period_seconds: Some(30),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(int_or_string_int(1)),
                    max_surge: Some(int_or_string_str("25%")),
                }),
            }),
            min_ready_seconds: Some(0),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    };
    assert_eq!(
        decode(&body("apps/v1", "Deployment", &deployment)).unwrap(),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "labels": {"app": "web"},
                "creationTimestamp": "2024-01-02T03:04:05Z"
            },
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
                    "spec": {
                        "containers": [{
                            "name": "web",
                            "image": "nginx:1.27",
                            "command": ["nginx", "-g", "daemon off;"],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [
                                {"name": "MODE", "value": "prod"},
                                {"name": "TOKEN", "valueFrom": {
                                    "secretKeyRef": {"name": "creds", "key": "token"}
                                }}
                            ],
                            "resources": {
                                "limits": {"cpu": "500m", "memory": "128Mi"},
                                "requests": {"cpu": "100m"}
                            }
                        }],
                        "terminationGracePeriodSeconds": 30
                    }
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}
                }
            },
            "status": {}
        })
    );
}

#[test]
fn service_target_ports_int_and_string() {
    let port = |name: &str, port: i32, target: IntOrString| core::ServicePort {
        name: s(name),
        protocol: s("TCP"),
        port: Some(port),
        target_port: Some(target),
        node_port: Some(0),
        app_protocol: None,
    };
    let svc = core::Service {
        metadata: Some(go_meta("web", "")),
        spec: Some(core::ServiceSpec {
            ports: vec![
                port("http", 80, int_or_string_int(8080)),
                port("metrics", 9090, int_or_string_str("metrics")),
            ],
            selector: map(&[("app", "web")]),
            r#type: s("ClusterIP"),
            cluster_ip: s(""),
            session_affinity: s(""),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus {
            load_balancer: Some(core::LoadBalancerStatus::default()),
            conditions: vec![],
        }),
    };
    assert_eq!(
        decode(&body("v1", "Service", &svc)).unwrap(),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "creationTimestamp": null},
            "spec": {
                "ports": [
                    {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": "metrics"}
                ],
                "selector": {"app": "web"},
                "type": "ClusterIP"
            },
            "status": {"loadBalancer": {}}
        })
    );
}

#[test]
fn secret_bytes_become_base64() {
    let secret = core::Secret {
        metadata: Some(go_meta("creds", "")),
        immutable: None,
        data: [
            ("token".to_string(), b"s3cr\xffet".to_vec()),
            ("empty".to_string(), Vec::new()),
        ]
        .into(),
        string_data: BTreeMap::new(),
        r#type: s("Opaque"),
    };
    assert_eq!(
        decode(&body("v1", "Secret", &secret)).unwrap(),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "creationTimestamp": null},
            "data": {"token": "czNjcv9ldA==", "empty": ""},
            "type": "Opaque"
        })
    );
}

#[test]
fn configmap_data_and_binary_data() {
    let cm = core::ConfigMap {
        metadata: Some(go_meta("cfg", "")),
        immutable: Some(false),
        data: map(&[("a", "1"), ("blank", "")]),
        binary_data: [("bin".to_string(), vec![0u8, 1, 2])].into(),
    };
    assert_eq!(
        decode(&body("v1", "ConfigMap", &cm)).unwrap(),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg", "creationTimestamp": null},
            "immutable": false,
            "data": {"a": "1", "blank": ""},
            "binaryData": {"bin": "AAEC"}
        })
    );
}

fn pod_template(image: &str) -> core::PodTemplateSpec {
    core::PodTemplateSpec {
        metadata: Some(meta::ObjectMeta {
            creation_timestamp: Some(meta::Time::default()),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: s("main"),
                image: s(image),
                resources: Some(core::ResourceRequirements::default()),
                ..Default::default()
            }],
            restart_policy: s("Never"),
            ..Default::default()
        }),
    }
}

#[test]
fn job_keeps_explicit_zero_pointers() {
    let job = batch::Job {
        metadata: Some(go_meta("once", "")),
        spec: Some(batch::JobSpec {
            backoff_limit: Some(0),
            template: Some(pod_template("busybox")),
            ..Default::default()
        }),
        status: Some(batch::JobStatus {
            active: Some(0),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode(&body("batch/v1", "Job", &job)).unwrap(),
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "once", "creationTimestamp": null},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"creationTimestamp": null},
                    "spec": {
                        "containers": [{"name": "main", "image": "busybox", "resources": {}}],
                        "restartPolicy": "Never"
                    }
                }
            },
            "status": {}
        })
    );
}

#[test]
fn cronjob_with_job_template() {
    let cj = batch::CronJob {
        metadata: Some(go_meta("tick", "")),
        spec: Some(batch::CronJobSpec {
            schedule: s("*/5 * * * *"),
            suspend: Some(false),
            job_template: Some(batch::JobTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    name: s("tick"),
                    creation_timestamp: Some(meta::Time::default()),
                    ..Default::default()
                }),
                spec: Some(batch::JobSpec {
                    template: Some(pod_template("busybox")),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: Some(batch::CronJobStatus::default()),
    };
    let decoded = decode(&body("batch/v1", "CronJob", &cj)).unwrap();
    assert_eq!(decoded["spec"]["schedule"], "*/5 * * * *");
    assert_eq!(decoded["spec"]["suspend"], false);
    assert_eq!(
        decoded["spec"]["jobTemplate"],
        json!({
            "metadata": {"name": "tick", "creationTimestamp": null},
            "spec": {"template": {
                "metadata": {"creationTimestamp": null},
                "spec": {
                    "containers": [{"name": "main", "image": "busybox", "resources": {}}],
                    "restartPolicy": "Never"
                }
            }}
        })
    );
}

#[test]
fn role_rules_keep_empty_strings_in_lists() {
    let role = rbac::Role {
        metadata: Some(go_meta("reader", "")),
        rules: vec![rbac::PolicyRule {
            verbs: strings(&["get", "list", "watch"]),
            api_groups: strings(&[""]),
            resources: strings(&["pods"]),
            resource_names: vec![],
            non_resource_ur_ls: vec![],
        }],
    };
    assert_eq!(
        decode(&body("rbac.authorization.k8s.io/v1", "Role", &role)).unwrap(),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "reader", "creationTimestamp": null},
            "rules": [{"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"]}]
        })
    );
}

#[test]
fn eviction_and_delete_options() {
    let options = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        propagation_policy: s("Foreground"),
        dry_run: strings(&["All"]),
        ..Default::default()
    };
    let eviction = policy::Eviction {
        metadata: Some(go_meta("web-0", "default")),
        delete_options: Some(options.clone()),
    };
    assert_eq!(
        decode(&body("policy/v1", "Eviction", &eviction)).unwrap(),
        json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": null},
            "deleteOptions": {
                "gracePeriodSeconds": 0,
                "propagationPolicy": "Foreground",
                "dryRun": ["All"]
            }
        })
    );
    // DeleteOptions is registered in every group version.
    let decoded = decode(&body("apps/v1", "DeleteOptions", &options)).unwrap();
    assert_eq!(decoded["apiVersion"], "apps/v1");
    assert_eq!(decoded["gracePeriodSeconds"], 0);
}

#[test]
fn binding_and_scale() {
    let binding = core::Binding {
        metadata: Some(go_meta("web-0", "default")),
        target: Some(core::ObjectReference {
            kind: s("Node"),
            name: s("node-1"),
            ..Default::default()
        }),
    };
    let decoded = decode(&body("v1", "Binding", &binding)).unwrap();
    assert_eq!(decoded["target"], json!({"kind": "Node", "name": "node-1"}));
    let scale = k8s_pb::api::autoscaling::v1::Scale {
        metadata: Some(go_meta("web", "default")),
        spec: Some(k8s_pb::api::autoscaling::v1::ScaleSpec { replicas: Some(3) }),
        status: None,
    };
    let decoded = decode(&body("autoscaling/v1", "Scale", &scale)).unwrap();
    assert_eq!(decoded["spec"], json!({"replicas": 3}));
}

#[test]
fn raw_extension_fields_v1_and_micro_time() {
    let revision = apps::ControllerRevision {
        metadata: Some(meta::ObjectMeta {
            name: s("web-1"),
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: s("kubectl"),
                operation: s("Update"),
                fields_type: s("FieldsV1"),
                fields_v1: Some(meta::FieldsV1 {
                    raw: Some(br#"{"f:data":{}}"#.to_vec()),
                }),
                time: Some(meta::Time {
                    seconds: Some(0),
                    nanos: Some(0),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        data: Some(RawExtension {
            raw: Some(br#"{"spec":{"template":{"x":[1,2]}}}"#.to_vec()),
        }),
        revision: Some(1),
    };
    let decoded = decode(&body("apps/v1", "ControllerRevision", &revision)).unwrap();
    assert_eq!(
        decoded["data"],
        json!({"spec": {"template": {"x": [1, 2]}}})
    );
    assert_eq!(
        decoded["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl",
            "operation": "Update",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {}},
            "time": "1970-01-01T00:00:00Z"
        }])
    );
    assert_eq!(decoded["revision"], 1);

    let event = k8s_pb::api::events::v1::Event {
        metadata: Some(go_meta("e1", "default")),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_704_164_645),
            nanos: Some(123_456_789),
        }),
        reason: s("Started"),
        ..Default::default()
    };
    let decoded = decode(&body("events.k8s.io/v1", "Event", &event)).unwrap();
    assert_eq!(decoded["eventTime"], "2024-01-02T03:04:05.123456Z");
    assert_eq!(decoded["reason"], "Started");
}

#[test]
fn negative_int32_and_int64() {
    let pod = core::Pod {
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: s("c"),
                ports: vec![core::ContainerPort {
                    container_port: Some(-1),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            active_deadline_seconds: Some(-7),
            ..Default::default()
        }),
        ..Default::default()
    };
    let decoded = decode(&body("v1", "Pod", &pod)).unwrap();
    assert_eq!(
        decoded["spec"]["containers"][0]["ports"][0]["containerPort"],
        -1
    );
    assert_eq!(decoded["spec"]["activeDeadlineSeconds"], -7);
}

#[test]
fn unknown_fields_are_skipped() {
    let mut raw = core::ConfigMap {
        data: map(&[("a", "1")]),
        ..Default::default()
    }
    .encode_to_vec();
    // Field 99 (varint) and field 98 (length-delimited), neither in ConfigMap.
    raw.extend([0x98, 0x06, 0x01, 0x92, 0x06, 0x02, b'h', b'i']);
    let decoded = decode(&envelope("v1", "ConfigMap", raw)).unwrap();
    assert_eq!(
        decoded,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}})
    );
}

#[test]
fn envelope_errors() {
    assert!(matches!(
        decode(b"{\"kind\":\"Pod\"}"),
        Err(ProtobufError::MissingMagic)
    ));
    assert!(matches!(
        decode(&envelope("v1", "Nope", Vec::new())),
        Err(ProtobufError::UnknownKind { kind, .. }) if kind == "Nope"
    ));
    assert!(matches!(
        decode(&envelope("apps/v1", "Pod", Vec::new())),
        Err(ProtobufError::UnknownKind { .. })
    ));
    assert!(matches!(decode(MAGIC), Err(ProtobufError::MissingKind)));
    let gzip = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("Pod"),
        }),
        raw: Some(Vec::new()),
        content_encoding: s("gzip"),
        content_type: None,
    };
    let mut body = MAGIC.to_vec();
    body.extend(gzip.encode_to_vec());
    assert!(matches!(
        decode(&body),
        Err(ProtobufError::ContentEncoding(e)) if e == "gzip"
    ));
    let mut truncated = MAGIC.to_vec();
    truncated.extend([0x0a, 0x05, 0x0a]);
    let err = decode(&truncated).unwrap_err();
    assert_eq!(err.to_string(), "protobuf envelope is invalid at typeMeta");
}

#[test]
fn wire_errors_name_the_field_path() {
    let pod = core::Pod {
        spec: Some(core::PodSpec {
            containers: vec![
                core::Container {
                    name: s("a"),
                    ..Default::default()
                },
                core::Container {
                    name: s("b"),
                    image: s("nginx"),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    let raw = pod.encode_to_vec();
    // Cut inside the second container's image.
    let err = decode(&envelope("v1", "Pod", raw[..raw.len() - 2].to_vec())).unwrap_err();
    match &err {
        ProtobufError::Wire { path, source } => {
            // The cut lands inside `spec`'s declared length first.
            assert_eq!(path, "spec");
            assert_eq!(*source, WireError::Truncated);
        }
        other => panic!("unexpected {other}"),
    }
    // A string field sent as a varint.
    let mut raw = Vec::new();
    wire::encode::len_field(1, &[], &mut raw); // metadata {}
    let mut spec = Vec::new();
    let mut container = Vec::new();
    wire::encode::varint_field(2, 7, &mut container); // image = 7
    wire::encode::len_field(2, &container, &mut spec); // containers[0]
    wire::encode::len_field(2, &spec, &mut raw);
    let err = decode(&envelope("v1", "Pod", raw)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid protobuf at spec.containers[0].image"
    );
    assert!(matches!(
        err,
        ProtobufError::Wire {
            source: WireError::WrongWireType { .. },
            ..
        }
    ));
}

#[test]
fn bad_values_are_errors() {
    let revision = apps::ControllerRevision {
        data: Some(RawExtension {
            raw: Some(b"{not json".to_vec()),
        }),
        ..Default::default()
    };
    let err = decode(&body("apps/v1", "ControllerRevision", &revision)).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid value at data: embedded JSON"),
        "{err}"
    );
    let svc = core::Service {
        spec: Some(core::ServiceSpec {
            ports: vec![core::ServicePort {
                target_port: Some(IntOrString {
                    r#type: Some(2),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = decode(&body("v1", "Service", &svc)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid value at spec.ports[0].targetPort: IntOrString type 2"
    );
    let ns = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            creation_timestamp: Some(meta::Time {
                seconds: Some(i64::MAX),
                nanos: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = decode(&body("v1", "Namespace", &ns)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid value at metadata.creationTimestamp: time out of range"
    );
}

/// A deterministic xorshift generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }
}

fn sample_bodies() -> Vec<Vec<u8>> {
    let job = batch::Job {
        metadata: Some(go_meta("once", "default")),
        spec: Some(batch::JobSpec {
            template: Some(pod_template("busybox")),
            ..Default::default()
        }),
        status: None,
    };
    let secret = core::Secret {
        metadata: Some(go_meta("creds", "")),
        data: [("k".to_string(), b"v".to_vec())].into(),
        ..Default::default()
    };
    let revision = apps::ControllerRevision {
        data: Some(RawExtension {
            raw: Some(br#"{"a":[1,{"b":2}]}"#.to_vec()),
        }),
        ..Default::default()
    };
    vec![
        body("batch/v1", "Job", &job),
        body("v1", "Secret", &secret),
        body("apps/v1", "ControllerRevision", &revision),
    ]
}

#[test]
fn hostile_input_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for valid in sample_bodies() {
        assert!(decode(&valid).is_ok());
        // Every truncation.
        for end in 0..valid.len() {
            let _ = decode(&valid[..end]);
        }
        // Random byte flips after the magic.
        for _ in 0..2000 {
            let mut bad = valid.clone();
            for _ in 0..=rng.below(4) {
                let at = MAGIC.len() + rng.below(bad.len() - MAGIC.len());
                bad[at] = u8::try_from(rng.next() & 0xff).unwrap();
            }
            let _ = decode(&bad);
        }
    }
    // Random garbage inside a valid envelope and as the whole body.
    for _ in 0..2000 {
        let len = rng.below(64);
        let raw: Vec<u8> = (0..len)
            .map(|_| u8::try_from(rng.next() & 0xff).unwrap())
            .collect();
        let _ = decode(&envelope("apps/v1", "Deployment", raw.clone()));
        let mut body = MAGIC.to_vec();
        body.extend(&raw);
        let _ = decode(&body);
    }
}

#[test]
fn public_kind_lookup() {
    assert!(decodes("v1", "Pod"));
    assert!(decodes("batch/v1", "DeleteOptions"));
    assert!(!decodes("v1", "Deployment"));
    assert!(kinds().any(|k| k == ("policy/v1", "Eviction")));
}

/// Bodies captured from `kubectl` 1.32 typed `create` commands (Go-encoded, every non-pointer
/// field written), each beside the JSON `kubectl create ... --dry-run=client -o json` prints
/// for the same command: Go's JSON encoding of the very object that was sent. They were
/// captured with a throwaway HTTPS listener on loopback that saved each POST body, and a
/// kubeconfig with `insecure-skip-tls-verify` pointing at it.
#[test]
fn kubectl_bodies_decode_to_kubectl_json() {
    macro_rules! fixtures {
        ($($name:literal),* $(,)?) => {
            [$((
                $name,
                include_bytes!(concat!("testdata/", $name, ".bin")).as_slice(),
                include_str!(concat!("testdata/", $name, ".json")),
            )),*]
        };
    }
    let fixtures = fixtures![
        "namespace",
        "deployment",
        "service_clusterip",
        "service_nodeport",
        "secret",
        "secret_tls_like",
        "configmap",
        "job",
        "cronjob",
        "rolebinding",
        "clusterrole",
        "serviceaccount",
        "ingress",
        "pdb",
        "quota",
        "priorityclass",
        "secret_tls",
    ];
    for (name, bin, json) in fixtures {
        let expected: Value = serde_json::from_str(json).unwrap();
        let decoded = decode(bin).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            decoded,
            expected,
            "{name}: decoded {}",
            serde_json::to_string_pretty(&decoded).unwrap()
        );
    }
}

/// Encode a `kind` message with every field set (one element per list and map), following
/// the schema table; recursion stops at a message already on the path.
fn every_field(message: usize, stack: &mut Vec<usize>) -> Vec<u8> {
    use schema::{Cardinality, Type};
    use wire::encode;
    let schema = Schema::get();
    stack.push(message);
    let mut out = Vec::new();
    for field in &schema.messages[message].fields {
        let n = u64::from(field.number);
        let mut value = Vec::new();
        let value_number = if field.cardinality == Cardinality::Map {
            2
        } else {
            n
        };
        match field.ty {
            Type::Message(m) if stack.contains(&m) => continue,
            Type::Message(m) => encode::len_field(value_number, &every_field(m, stack), &mut value),
            Type::String => encode::len_field(value_number, b"x", &mut value),
            Type::Bytes => encode::len_field(value_number, b"hi", &mut value),
            Type::Bool | Type::Int32 | Type::Int64 => {
                encode::varint_field(value_number, 1, &mut value)
            }
            Type::Double => {
                encode::key(value_number, 1, &mut value);
                value.extend(1.5f64.to_le_bytes());
            }
            special => {
                let mut inner = Vec::new();
                match special {
                    Type::Quantity => encode::len_field(1, b"1Gi", &mut inner),
                    Type::IntOrString => {
                        encode::varint_field(1, 1, &mut inner);
                        encode::len_field(3, b"http", &mut inner);
                    }
                    Type::Time | Type::MicroTime => {
                        encode::varint_field(1, 1_704_164_645, &mut inner);
                        encode::varint_field(2, 123_456_000, &mut inner);
                    }
                    Type::Duration => encode::varint_field(1, 90_000_000_000, &mut inner),
                    Type::RawExtension => encode::len_field(1, br#"{"a":[1]}"#, &mut inner),
                    Type::FieldsV1 => encode::len_field(1, br#"{"f:a":{}}"#, &mut inner),
                    Type::StringList => {
                        encode::len_field(1, b"a", &mut inner);
                        encode::len_field(1, b"b", &mut inner);
                    }
                    _ => unreachable!("plain types handled above"),
                }
                encode::len_field(value_number, &inner, &mut value);
            }
        }
        if field.cardinality == Cardinality::Map {
            let mut entry = Vec::new();
            encode::len_field(1, b"k", &mut entry);
            entry.extend(value);
            encode::len_field(n, &entry, &mut out);
        } else {
            out.extend(value);
        }
    }
    stack.pop();
    out
}

/// Paths where `a` and `b` differ, with both values.
fn json_diff(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let (va, vb) = (x.get(k), y.get(k));
                match (va, vb) {
                    (Some(va), Some(vb)) => json_diff(va, vb, format!("{path}.{k}"), out),
                    // k8s-openapi writes apiVersion/kind on embedded objects (a
                    // StatefulSet's volumeClaimTemplates); protobuf never carries them.
                    (None, Some(_)) if k == "apiVersion" || k == "kind" => {}
                    _ => out.push(format!("{path}.{k}: {va:?} vs {vb:?}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                json_diff(va, vb, format!("{path}[{i}]"), out);
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path}: {a} vs {b}")),
    }
}

fn every_field_body(api_version: &str, kind: &str) -> Vec<u8> {
    let schema = Schema::get();
    let index = schema
        .messages
        .iter()
        .position(|m| std::ptr::eq(m, schema.kind(api_version, kind).unwrap()))
        .unwrap();
    envelope(api_version, kind, every_field(index, &mut Vec::new()))
}

/// Every field of every served kind decodes to a JSON name and shape the `k8s-openapi` 1.32
/// types accept and keep unchanged.
#[test]
fn every_field_of_every_served_kind_survives_the_typed_round_trip() {
    for resource in crate::Registry::builtin().all() {
        let api_version = resource.api_version();
        let json = decode(&every_field_body(&api_version, resource.kind)).unwrap();
        let decoded = resource
            .decode(&json)
            .unwrap_or_else(|e| panic!("{api_version} {}: {}", resource.kind, e.message));
        assert_eq!(
            decoded.unknown_fields,
            Vec::<String>::new(),
            "{api_version} {}",
            resource.kind
        );
        let mut diffs = Vec::new();
        json_diff(&json, &decoded.object, String::new(), &mut diffs);
        assert!(
            diffs.is_empty(),
            "{api_version} {}: {diffs:#?}",
            resource.kind
        );
    }
}

#[test]
fn every_field_of_the_other_request_kinds_survives_the_typed_round_trip() {
    use k8s_openapi::api::{
        authentication, authorization, autoscaling, certificates, core, networking, node, policy,
        scheduling, storage,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions;
    fn check<T: serde::de::DeserializeOwned + serde::Serialize>(api_version: &str, kind: &str) {
        let json = decode(&every_field_body(api_version, kind)).unwrap();
        let typed: T = serde_json::from_value(json.clone())
            .unwrap_or_else(|e| panic!("{api_version} {kind}: {e}"));
        let mut back = serde_json::to_value(typed).unwrap();
        // Not every type carries apiVersion/kind (DeleteOptions does).
        back["apiVersion"] = json["apiVersion"].clone();
        back["kind"] = json["kind"].clone();
        let mut diffs = Vec::new();
        json_diff(&json, &back, String::new(), &mut diffs);
        assert!(diffs.is_empty(), "{api_version} {kind}: {diffs:#?}");
    }
    check::<core::v1::Binding>("v1", "Binding");
    check::<core::v1::PodTemplate>("v1", "PodTemplate");
    check::<core::v1::ReplicationController>("v1", "ReplicationController");
    check::<core::v1::ResourceQuota>("v1", "ResourceQuota");
    check::<core::v1::LimitRange>("v1", "LimitRange");
    check::<policy::v1::Eviction>("policy/v1", "Eviction");
    check::<policy::v1::PodDisruptionBudget>("policy/v1", "PodDisruptionBudget");
    check::<autoscaling::v1::Scale>("autoscaling/v1", "Scale");
    check::<autoscaling::v1::HorizontalPodAutoscaler>("autoscaling/v1", "HorizontalPodAutoscaler");
    check::<networking::v1::NetworkPolicy>("networking.k8s.io/v1", "NetworkPolicy");
    check::<DeleteOptions>("v1", "DeleteOptions");
    check::<authentication::v1::TokenRequest>("authentication.k8s.io/v1", "TokenRequest");
    check::<authentication::v1::TokenReview>("authentication.k8s.io/v1", "TokenReview");
    check::<authentication::v1::SelfSubjectReview>("authentication.k8s.io/v1", "SelfSubjectReview");
    check::<authorization::v1::SubjectAccessReview>(
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
    );
    check::<authorization::v1::SelfSubjectAccessReview>(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
    );
    check::<authorization::v1::SelfSubjectRulesReview>(
        "authorization.k8s.io/v1",
        "SelfSubjectRulesReview",
    );
    check::<certificates::v1::CertificateSigningRequest>(
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
    );
    check::<node::v1::RuntimeClass>("node.k8s.io/v1", "RuntimeClass");
    check::<scheduling::v1::PriorityClass>("scheduling.k8s.io/v1", "PriorityClass");
    check::<storage::v1::StorageClass>("storage.k8s.io/v1", "StorageClass");
    check::<storage::v1::VolumeAttachment>("storage.k8s.io/v1", "VolumeAttachment");
    check::<storage::v1::CSIDriver>("storage.k8s.io/v1", "CSIDriver");
}

/// Bodies kubectl sends from commands without a dry-run form.
#[test]
fn kubectl_review_and_token_bodies() {
    let token = decode(include_bytes!("testdata/token.bin")).unwrap();
    assert_eq!(
        token,
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"creationTimestamp": null},
            "spec": {"audiences": ["api"], "expirationSeconds": 3600},
            // Non-omitempty status fields, as Go marshals them.
            "status": {"token": "", "expirationTimestamp": null}
        })
    );
    let whoami = decode(include_bytes!("testdata/whoami.bin")).unwrap();
    assert_eq!(
        whoami,
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "SelfSubjectReview",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {}}
        })
    );
    let can_i = decode(include_bytes!("testdata/cani.bin")).unwrap();
    assert_eq!(
        can_i,
        json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "metadata": {"creationTimestamp": null},
            "spec": {"resourceAttributes": {
                "namespace": "default", "resource": "pods", "verb": "get"
            }},
            "status": {"allowed": false}
        })
    );
}
