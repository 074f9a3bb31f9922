//! Defaults compared with what a real v1.32 API server returns for the same input.

use serde_json::{Value, json};

use super::*;
use crate::registry::Registry;

fn res(group: &str, plural: &str) -> &'static Resource {
    Registry::builtin().get(group, "v1", plural).unwrap()
}

fn defaulted(group: &str, plural: &str, mut obj: Value) -> Value {
    apply(res(group, plural), &mut obj);
    obj
}

fn nginx_container() -> Value {
    json!({"image": "nginx", "imagePullPolicy": "Always", "name": "nginx", "resources": {},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"})
}

#[test]
fn minimal_pod_matches_kubernetes() {
    let pod = defaulted(
        "",
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "nginx", "namespace": "default"},
        "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}),
    );
    assert_eq!(
        pod["spec"],
        json!({
            "containers": [nginx_container()],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists", "tolerationSeconds": 300},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists", "tolerationSeconds": 300}
            ]
        })
    );
    assert_eq!(
        pod["status"],
        json!({"phase": "Pending", "qosClass": "BestEffort"})
    );
}

#[test]
fn minimal_deployment_matches_kubernetes() {
    let d = defaulted(
        "apps",
        "deployments",
        json!({"metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}}),
    );
    assert_eq!(
        d["spec"],
        json!({
            "progressDeadlineSeconds": 600,
            "replicas": 1,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                "type": "RollingUpdate"},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                "spec": {
                    "containers": [nginx_container()],
                    "dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Always",
                    "schedulerName": "default-scheduler",
                    "securityContext": {},
                    "terminationGracePeriodSeconds": 30
                }
            }
        })
    );
    assert!(d["metadata"].get("labels").is_none());
}

#[test]
fn minimal_service_matches_kubernetes() {
    let s = defaulted(
        "",
        "services",
        json!({"metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    );
    assert_eq!(
        s["spec"],
        json!({
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
            "selector": {"app": "web"},
            "sessionAffinity": "None",
            "type": "ClusterIP"
        })
    );
    assert_eq!(s["status"], json!({"loadBalancer": {}}));
    let np = defaulted(
        "",
        "services",
        json!({"spec": {"type": "LoadBalancer",
        "sessionAffinity": "ClientIP", "ports": [{"port": 443, "targetPort": "https"}]}}),
    );
    assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(np["spec"]["allocateLoadBalancerNodePorts"], true);
    assert_eq!(np["spec"]["ports"][0]["targetPort"], "https");
    assert_eq!(
        np["spec"]["sessionAffinityConfig"],
        json!({"clientIP": {"timeoutSeconds": 10800}})
    );
    let ext = defaulted(
        "",
        "services",
        json!({"spec": {"type": "ExternalName",
        "externalName": "db.example.com"}}),
    );
    assert!(ext["spec"].get("ipFamilies").is_none());
    assert!(ext["spec"].get("internalTrafficPolicy").is_none());
}

#[test]
fn user_values_are_kept() {
    let pod = defaulted(
        "",
        "pods",
        json!({"spec": {
        "restartPolicy": "Never", "terminationGracePeriodSeconds": 5,
        "tolerations": [{"operator": "Exists"}],
        "containers": [{"name": "c", "image": "busybox:1.36", "imagePullPolicy": "Never",
            "ports": [{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 80}]}]}}),
    );
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(spec["terminationGracePeriodSeconds"], 5);
    assert_eq!(spec["tolerations"], json!([{"operator": "Exists"}]));
    assert_eq!(spec["containers"][0]["imagePullPolicy"], "Never");
    assert_eq!(spec["containers"][0]["ports"][0]["protocol"], "UDP");
    assert_eq!(spec["containers"][0]["ports"][1]["protocol"], "TCP");
}

#[test]
fn container_details() {
    let pod = defaulted(
        "",
        "pods",
        json!({"spec": {
        "containers": [{"name": "c", "image": "busybox:1.36",
            "resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"}},
            "livenessProbe": {"httpGet": {"port": 8080}},
            "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}],
        "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "scratch"}]}}),
    );
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        c["resources"],
        json!({"limits": {"cpu": "500m", "memory": "1Gi"},
            "requests": {"cpu": "500m", "memory": "1Gi"}})
    );
    assert_eq!(
        c["livenessProbe"],
        json!({"httpGet": {"path": "/", "port": 8080, "scheme": "HTTP"},
            "failureThreshold": 3, "periodSeconds": 10, "successThreshold": 1,
            "timeoutSeconds": 1})
    );
    assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
    assert_eq!(
        pod["spec"]["volumes"],
        json!([{"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420}},
            {"name": "scratch", "emptyDir": {}}])
    );
    assert_eq!(pod["status"]["qosClass"], "Guaranteed");
}

#[test]
fn pull_policy_and_qos() {
    assert_eq!(image_pull_policy("nginx"), "Always");
    assert_eq!(image_pull_policy("nginx:latest"), "Always");
    assert_eq!(image_pull_policy("localhost:5000/app"), "Always");
    assert_eq!(image_pull_policy("localhost:5000/app:v2"), "IfNotPresent");
    assert_eq!(image_pull_policy("nginx@sha256:abcd"), "IfNotPresent");
    let burstable = json!({"containers": [{"resources": {"requests": {"cpu": "100m"}}}]});
    assert_eq!(pod_qos_class(&burstable), "Burstable");
    assert_eq!(pod_qos_class(&json!({"containers": [{}]})), "BestEffort");
}

#[test]
fn stateful_set_and_daemon_set() {
    let sts = defaulted(
        "apps",
        "statefulsets",
        json!({"spec": {"serviceName": "db",
        "selector": {"matchLabels": {"app": "db"}},
        "template": {"metadata": {"labels": {"app": "db"}},
            "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}]}}),
    );
    let s = &sts["spec"];
    assert_eq!(s["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        s["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(
        s["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(s["replicas"], 1);
    assert_eq!(s["revisionHistoryLimit"], 10);
    let claim = &s["volumeClaimTemplates"][0];
    assert_eq!(claim["apiVersion"], "v1");
    assert_eq!(claim["kind"], "PersistentVolumeClaim");
    assert_eq!(claim["spec"]["volumeMode"], "Filesystem");
    assert_eq!(claim["status"], json!({"phase": "Pending"}));

    let ds = defaulted(
        "apps",
        "daemonsets",
        json!({"spec": {"template": {"spec": {}}}}),
    );
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
    );
    assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
    let od = defaulted(
        "apps",
        "daemonsets",
        json!({"spec": {"updateStrategy": {"type": "OnDelete"}}}),
    );
    assert_eq!(od["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
}

#[test]
fn job_defaults_and_generated_selector() {
    let mut job = defaulted(
        "batch",
        "jobs",
        json!({"metadata": {"name": "pi"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "pi", "image": "perl:5.34"}]}}}}),
    );
    let s = &job["spec"];
    assert_eq!(s["completions"], 1);
    assert_eq!(s["parallelism"], 1);
    assert_eq!(s["backoffLimit"], 6);
    assert_eq!(s["completionMode"], "NonIndexed");
    assert_eq!(s["suspend"], false);
    assert_eq!(s["podReplacementPolicy"], "TerminatingOrFailed");
    assert!(s.get("manualSelector").is_none());
    assert_eq!(s["template"]["spec"]["restartPolicy"], "Never");

    job["metadata"]["uid"] = json!("6f1c");
    job_selector(&mut job);
    assert_eq!(
        job["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "6f1c"}})
    );
    let labels = json!({"batch.kubernetes.io/controller-uid": "6f1c",
        "batch.kubernetes.io/job-name": "pi", "controller-uid": "6f1c", "job-name": "pi"});
    assert_eq!(job["spec"]["template"]["metadata"]["labels"], labels);
    assert_eq!(job["metadata"]["labels"], labels);
    let errs = crate::validation::validate_create(res("batch", "jobs"), &{
        let mut j = job.clone();
        j["metadata"]["namespace"] = json!("default");
        j
    });
    assert!(errs.is_empty(), "{errs:?}");

    let no_restart = defaulted("batch", "jobs", json!({"spec": {"template": {"spec": {}}}}));
    assert!(
        no_restart["spec"]["template"]["spec"]
            .get("restartPolicy")
            .is_none()
    );
    let parallel = defaulted("batch", "jobs", json!({"spec": {"parallelism": 3}}));
    assert!(parallel["spec"].get("completions").is_none());
}

#[test]
fn cron_job_defaults() {
    let cj = defaulted(
        "batch",
        "cronjobs",
        json!({"metadata": {"name": "hello"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure", "containers": [{"name": "h", "image": "busybox"}]}}}}}}),
    );
    let s = &cj["spec"];
    assert_eq!(s["concurrencyPolicy"], "Allow");
    assert_eq!(s["suspend"], false);
    assert_eq!(s["successfulJobsHistoryLimit"], 3);
    assert_eq!(s["failedJobsHistoryLimit"], 1);
    assert!(s["jobTemplate"]["spec"].get("backoffLimit").is_none());
    assert_eq!(
        s["jobTemplate"]["spec"]["template"]["spec"]["schedulerName"],
        "default-scheduler"
    );
}

#[test]
fn small_kinds() {
    let ns = defaulted("", "namespaces", json!({"metadata": {"name": "team-a"}}));
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team-a"
    );
    assert_eq!(ns["spec"], json!({"finalizers": ["kubernetes"]}));
    assert_eq!(ns["status"], json!({"phase": "Active"}));
    let secret = defaulted("", "secrets", json!({"metadata": {"name": "s"}}));
    assert_eq!(secret["type"], "Opaque");
    let tls = defaulted("", "secrets", json!({"type": "kubernetes.io/tls"}));
    assert_eq!(tls["type"], "kubernetes.io/tls");
    let node = defaulted("", "nodes", json!({"status": {"capacity": {"cpu": "2"}}}));
    assert_eq!(node["status"]["allocatable"], json!({"cpu": "2"}));
    let ep = defaulted(
        "",
        "endpoints",
        json!({"subsets": [{"ports": [{"port": 80}]}]}),
    );
    assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
    let slice = defaulted(
        "discovery.k8s.io",
        "endpointslices",
        json!({"ports": [{"port": 80}]}),
    );
    assert_eq!(
        slice["ports"][0],
        json!({"name": "", "port": 80, "protocol": "TCP"})
    );
    let rb = defaulted(
        "rbac.authorization.k8s.io",
        "rolebindings",
        json!({
        "roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "User", "name": "alice"},
            {"kind": "ServiceAccount", "name": "default", "namespace": "x"}]}),
    );
    assert_eq!(rb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
    assert!(rb["subjects"][1].get("apiGroup").is_none());
    let cm = defaulted("", "configmaps", json!({"data": {"a": "b"}}));
    assert_eq!(cm, json!({"data": {"a": "b"}}));
}

#[test]
fn labels_from_template_only_for_jobs() {
    let mut d = json!({"spec": {"template": {"metadata": {"labels": {"app": "x"}}}}});
    default_labels_from_template(res("apps", "deployments"), &mut d);
    assert!(d["metadata"].is_null());
    let mut j = d.clone();
    default_labels_from_template(res("batch", "jobs"), &mut j);
    assert_eq!(j["metadata"]["labels"], json!({"app": "x"}));
}

#[test]
fn defaulted_minimal_objects_validate() {
    let meta = json!({"name": "web", "namespace": "default"});
    let cases = [
        (
            "",
            "pods",
            json!({"metadata": meta, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
        ),
        (
            "",
            "services",
            json!({"metadata": meta, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        ),
        (
            "apps",
            "deployments",
            json!({"metadata": meta, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        ),
        (
            "apps",
            "daemonsets",
            json!({"metadata": meta, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        ),
        ("", "namespaces", json!({"metadata": {"name": "team-a"}})),
    ];
    for (group, plural, obj) in cases {
        let r = res(group, plural);
        let mut obj = obj;
        apply(r, &mut obj);
        let errs = crate::validation::validate_create(r, &obj);
        assert!(errs.is_empty(), "{plural}: {errs:?}");
    }
}
