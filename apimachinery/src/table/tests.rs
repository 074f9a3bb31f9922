//! Tables for realistic objects of every kind, compared cell by cell with what `kubectl get`
//! prints from a real API server.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::Registry;

const NOW: &str = "2024-06-01T12:00:00Z";
const FIVE_MIN_AGO: &str = "2024-06-01T11:55:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn res(group: &str, plural: &str) -> &'static Resource {
    Registry::builtin().get(group, "v1", plural).unwrap()
}

fn cells(group: &str, plural: &str, obj: Value) -> Vec<Value> {
    let r = res(group, plural);
    let cells = row_cells(r, &obj, now());
    assert_eq!(cells.len(), column_definitions(r).len(), "{plural}");
    cells
}

fn names(group: &str, plural: &str) -> Vec<(String, u64)> {
    column_definitions(res(group, plural))
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["priority"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": FIVE_MIN_AGO,
           "resourceVersion": "42", "uid": "u-1"})
}

#[test]
fn human_durations() {
    use std::time::Duration;
    let h = |s: u64| human_duration(Duration::from_secs(s));
    assert_eq!(h(0), "0s");
    assert_eq!(h(5), "5s");
    assert_eq!(h(119), "119s");
    assert_eq!(h(120), "2m");
    assert_eq!(h(150), "2m30s");
    assert_eq!(h(3 * 60), "3m");
    assert_eq!(h(10 * 60 + 30), "10m");
    assert_eq!(h(179 * 60), "179m");
    assert_eq!(h(4 * 3600), "4h");
    assert_eq!(h(4 * 3600 + 5 * 60), "4h5m");
    assert_eq!(h(30 * 3600), "30h");
    assert_eq!(h(3 * 86400), "3d");
    assert_eq!(h(3 * 86400 + 5 * 3600), "3d5h");
    assert_eq!(h(100 * 86400), "100d");
    assert_eq!(h(2 * 365 * 86400), "2y");
    assert_eq!(h(3 * 365 * 86400 + 10 * 86400), "3y10d");
    assert_eq!(h(9 * 365 * 86400), "9y");
}

#[test]
fn every_builtin_kind_has_a_name_column() {
    for r in Registry::builtin().all() {
        let defs = column_definitions(r);
        let name = defs.iter().find(|c| c["name"] == "Name").unwrap();
        assert_eq!(name["format"], "name", "{}", r.kind);
        assert_eq!(name["type"], "string");
        assert!(
            name["description"]
                .as_str()
                .unwrap()
                .starts_with("Name must be unique"),
            "{}",
            r.kind
        );
        for c in &defs {
            for key in ["name", "type", "format", "description", "priority"] {
                assert!(c.get(key).is_some(), "{} {key}", r.kind);
            }
        }
    }
}

#[test]
fn wide_columns_have_priority_one() {
    let pod = names("", "pods");
    let wide: Vec<&str> = pod
        .iter()
        .filter(|(_, p)| *p == 1)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(wide, ["IP", "Node", "Nominated Node", "Readiness Gates"]);
    let deploy = names("apps", "deployments");
    assert_eq!(
        deploy,
        [
            ("Name".into(), 0),
            ("Ready".into(), 0),
            ("Up-to-date".into(), 0),
            ("Available".into(), 0),
            ("Age".into(), 0),
            ("Containers".into(), 1),
            ("Images".into(), 1),
            ("Selector".into(), 1),
        ]
    );
    let node_wide: Vec<String> = names("", "nodes")
        .into_iter()
        .filter(|(_, p)| *p == 1)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        node_wide,
        [
            "Internal-IP",
            "External-IP",
            "OS-Image",
            "Kernel-Version",
            "Container-Runtime"
        ]
    );
    let svc = names("", "services");
    assert_eq!(svc.last().unwrap(), &("Selector".to_string(), 1));
    let ev: Vec<String> = names("", "events").into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        ev,
        [
            "Last Seen",
            "Type",
            "Reason",
            "Object",
            "Subobject",
            "Source",
            "Message",
            "First Seen",
            "Count",
            "Name"
        ]
    );
}

#[test]
fn descriptions_come_from_the_api_documentation() {
    let defs = column_definitions(res("", "pods"));
    let ip = defs.iter().find(|c| c["name"] == "IP").unwrap();
    assert!(
        ip["description"].as_str().unwrap().contains("IP address"),
        "{ip}"
    );
    let age = defs.iter().find(|c| c["name"] == "Age").unwrap();
    assert!(
        age["description"]
            .as_str()
            .unwrap()
            .starts_with("CreationTimestamp")
    );
}

fn pod_with(status: Value) -> Value {
    json!({
        "metadata": meta("web-0"),
        "spec": {"containers": [{"name": "app", "image": "nginx"}, {"name": "log", "image": "busybox"}],
                 "nodeName": "node-1"},
        "status": status,
    })
}

#[test]
fn pod_running_with_restarts() {
    let pod = pod_with(json!({
        "phase": "Running",
        "podIPs": [{"ip": "10.1.0.5"}], "podIP": "10.1.0.5",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {"name": "app", "ready": true, "restartCount": 3, "state": {"running": {}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-06-01T11:57:00Z"}}},
            {"name": "log", "ready": false, "restartCount": 0, "state": {"running": {}}}
        ]
    }));
    assert_eq!(
        cells("", "pods", pod),
        json!([
            "web-0",
            "1/2",
            "Running",
            "3 (3m ago)",
            "5m",
            "10.1.0.5",
            "node-1",
            "<none>",
            "<none>"
        ])
        .as_array()
        .unwrap()
        .clone()
    );
}

fn pod_status(status: Value) -> String {
    cells("", "pods", pod_with(status))[2]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn pod_status_reasons() {
    assert_eq!(pod_status(json!({"phase": "Pending"})), "Pending");
    assert_eq!(
        pod_status(json!({"phase": "Pending", "containerStatuses": [
            {"name": "app", "state": {"waiting": {"reason": "ContainerCreating"}}}]})),
        "ContainerCreating"
    );
    assert_eq!(
        pod_status(json!({"phase": "Running", "containerStatuses": [
            {"name": "app", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})),
        "CrashLoopBackOff"
    );
    assert_eq!(
        pod_status(json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})),
        "Completed"
    );
    assert_eq!(
        pod_status(json!({"phase": "Failed", "containerStatuses": [
            {"name": "app", "state": {"terminated": {"exitCode": 137}}}]})),
        "ExitCode:137"
    );
    assert_eq!(
        pod_status(json!({"phase": "Failed", "containerStatuses": [
            {"name": "app", "state": {"terminated": {"exitCode": 0, "signal": 9}}}]})),
        "Signal:9"
    );
    assert_eq!(
        pod_status(json!({"phase": "Pending", "reason": "Evicted"})),
        "Evicted"
    );
    assert_eq!(
        pod_status(json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]})),
        "SchedulingGated"
    );
    // One container completed while another still runs: Running if the pod is ready.
    assert_eq!(
        pod_status(
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {"name": "app", "ready": true, "state": {"running": {}}},
                {"name": "log", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})
        ),
        "NotReady"
    );
}

#[test]
fn pod_init_container_statuses() {
    let with_init = |init_statuses: Value, extra: Value| {
        let mut pod = pod_with(json!({"phase": "Pending", "initContainerStatuses": init_statuses}));
        pod["spec"]["initContainers"] = json!([
            {"name": "setup", "image": "busybox"},
            {"name": "migrate", "image": "busybox"}
        ]);
        if let Some(conds) = extra.get("conditions") {
            pod["status"]["conditions"] = conds.clone();
        }
        cells("", "pods", pod)[2].as_str().unwrap().to_string()
    };
    assert_eq!(
        with_init(
            json!([{"name": "setup", "state": {"running": {}}},
                         {"name": "migrate", "state": {"waiting": {"reason": "PodInitializing"}}}]),
            json!({})
        ),
        "Init:0/2"
    );
    assert_eq!(
        with_init(
            json!([{"name": "setup", "state": {"terminated": {"exitCode": 0}}},
                         {"name": "migrate", "state": {"running": {}}}]),
            json!({})
        ),
        "Init:1/2"
    );
    assert_eq!(
        with_init(
            json!([{"name": "setup", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]),
            json!({})
        ),
        "Init:CrashLoopBackOff"
    );
    assert_eq!(
        with_init(
            json!([{"name": "setup", "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}]),
            json!({})
        ),
        "Init:Error"
    );
    assert_eq!(
        with_init(
            json!([{"name": "setup", "state": {"terminated": {"exitCode": 3}}}]),
            json!({})
        ),
        "Init:ExitCode:3"
    );
}

#[test]
fn pod_sidecars_count_towards_ready_and_total() {
    let pod = json!({
        "metadata": meta("side"),
        "spec": {"initContainers": [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}],
                 "containers": [{"name": "app", "image": "nginx"}]},
        "status": {"phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "restartCount": 1,
                "state": {"running": {}}}],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]}
    });
    let c = cells("", "pods", pod);
    assert_eq!(c[1], "2/2");
    assert_eq!(c[2], "Running");
    assert_eq!(c[3], "1");
}

#[test]
fn pod_deletion_statuses() {
    let mut pod = pod_with(json!({"phase": "Running"}));
    pod["metadata"]["deletionTimestamp"] = json!(NOW);
    assert_eq!(cells("", "pods", pod.clone())[2], "Terminating");
    pod["status"]["reason"] = json!("NodeLost");
    assert_eq!(cells("", "pods", pod.clone())[2], "Unknown");
    let mut done = pod_with(json!({"phase": "Succeeded"}));
    done["metadata"]["deletionTimestamp"] = json!(NOW);
    assert_eq!(cells("", "pods", done)[2], "Succeeded");
}

#[test]
fn pod_wide_columns_and_row_conditions() {
    let mut pod = pod_with(json!({"phase": "Succeeded", "nominatedNodeName": "node-2",
        "conditions": [{"type": "example.com/gate", "status": "True"}]}));
    pod["spec"]["readinessGates"] =
        json!([{"conditionType": "example.com/gate"}, {"conditionType": "other"}]);
    let c = cells("", "pods", pod.clone());
    assert_eq!(
        c[5..],
        [
            json!("<none>"),
            json!("node-1"),
            json!("node-2"),
            json!("1/2")
        ]
    );
    let t = table(
        res("", "pods"),
        &[pod],
        IncludeObject::None,
        now(),
        json!({"resourceVersion": "9"}),
    );
    assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Succeeded");
    assert_eq!(t["rows"][0]["conditions"][0]["type"], "Completed");
    assert!(t["rows"][0]["object"].is_null());
}

#[test]
fn table_shapes() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("cfg"), "data": {"a": "1"}});
    let r = res("", "configmaps");
    let t = table(
        r,
        std::slice::from_ref(&cm),
        IncludeObject::Metadata,
        now(),
        json!({"resourceVersion": "7", "continue": "abc", "remainingItemCount": 3}),
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"]["continue"], "abc");
    assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 3);
    assert_eq!(t["rows"][0]["cells"], json!(["cfg", 1, "5m"]));
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(t["rows"][0]["object"]["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "cfg");
    assert!(t["rows"][0].get("conditions").is_none());
    let full = table(
        r,
        std::slice::from_ref(&cm),
        IncludeObject::Object,
        now(),
        Value::Null,
    );
    assert_eq!(full["rows"][0]["object"], cm);
    assert_eq!(full["metadata"], json!({}));
    let w = watch_row_table(r, &cm, IncludeObject::Metadata, now());
    assert_eq!(w["metadata"], json!({"resourceVersion": "42"}));
    assert_eq!(w["rows"].as_array().unwrap().len(), 1);
    assert_eq!(IncludeObject::parse(""), Some(IncludeObject::Metadata));
    assert_eq!(IncludeObject::parse("Object"), Some(IncludeObject::Object));
    assert_eq!(IncludeObject::parse("bogus"), None);
}

fn arr(v: Value) -> Vec<Value> {
    v.as_array().unwrap().clone()
}

#[test]
fn namespace_node_service() {
    assert_eq!(
        cells(
            "",
            "namespaces",
            json!({"metadata": meta("prod"), "status": {"phase": "Active"}})
        ),
        arr(json!(["prod", "Active", "5m"]))
    );
    let node = json!({
        "metadata": {"name": "n1", "creationTimestamp": "2024-05-29T12:00:00Z",
            "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "",
                       "kubernetes.io/hostname": "n1"}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "n1"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "skiff 0.1", "kernelVersion": "6.6.1",
                         "containerRuntimeVersion": "containerd://2.0.0"}}
    });
    assert_eq!(
        cells("", "nodes", node),
        arr(json!([
            "n1",
            "Ready,SchedulingDisabled",
            "control-plane,worker",
            "3d",
            "v1.32.0",
            "192.168.1.10",
            "<none>",
            "skiff 0.1",
            "6.6.1",
            "containerd://2.0.0"
        ]))
    );
    let bare = json!({"metadata": {"name": "n2"}});
    assert_eq!(
        cells("", "nodes", bare),
        arr(json!([
            "n2",
            "Unknown",
            "<none>",
            "<unknown>",
            "",
            "<none>",
            "<none>",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ]))
    );
    let svc = json!({"metadata": meta("web"), "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
        "clusterIPs": ["10.96.0.10"], "selector": {"tier": "front", "app": "web"},
        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}});
    assert_eq!(
        cells("", "services", svc),
        arr(json!([
            "web",
            "NodePort",
            "10.96.0.10",
            "<none>",
            "80:30080/TCP,53/UDP",
            "5m",
            "app=web,tier=front"
        ]))
    );
    let lb = json!({"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.11"],
        "ports": [{"port": 443, "protocol": "TCP", "nodePort": 31443}]},
        "status": {"loadBalancer": {}}});
    assert_eq!(cells("", "services", lb)[3], "<pending>");
    let headless = json!({"metadata": meta("db"), "spec": {"type": "ClusterIP", "clusterIP": "None",
        "clusterIPs": ["None"]}});
    assert_eq!(
        cells("", "services", headless),
        arr(json!([
            "db",
            "ClusterIP",
            "None",
            "<none>",
            "<none>",
            "5m",
            "<none>"
        ]))
    );
    let ext = json!({"metadata": meta("ext"), "spec": {"type": "ExternalName", "externalName": "example.com"}});
    assert_eq!(
        cells("", "services", ext)[2..4],
        [json!("<none>"), json!("example.com")]
    );
}

#[test]
fn endpoints_and_slices() {
    let ep = json!({"metadata": meta("web"), "subsets": [
        {"addresses": [{"ip": "10.1.0.5"}, {"ip": "10.1.0.6"}], "ports": [{"port": 8080}, {"port": 9090}]}]});
    assert_eq!(
        cells("", "endpoints", ep),
        arr(json!([
            "web",
            "10.1.0.5:8080,10.1.0.6:8080,10.1.0.5:9090 + 1 more...",
            "5m"
        ]))
    );
    assert_eq!(
        cells("", "endpoints", json!({"metadata": meta("x")}))[1],
        "<none>"
    );
    let slice = json!({"metadata": meta("web-abc"), "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.1.0.5"]}, {"addresses": ["10.1.0.6"]}]});
    assert_eq!(
        cells("discovery.k8s.io", "endpointslices", slice),
        arr(json!([
            "web-abc",
            "IPv4",
            "8080",
            "10.1.0.5,10.1.0.6",
            "5m"
        ]))
    );
    let empty = json!({"metadata": meta("e"), "addressType": "IPv6"});
    assert_eq!(
        cells("discovery.k8s.io", "endpointslices", empty)[2..4],
        [json!("<unset>"), json!("<unset>")]
    );
}

#[test]
fn config_secret_service_account() {
    assert_eq!(
        cells(
            "",
            "configmaps",
            json!({"metadata": meta("c"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}})
        ),
        arr(json!(["c", 3, "5m"]))
    );
    assert_eq!(
        cells(
            "",
            "secrets",
            json!({"metadata": meta("tls"), "type": "kubernetes.io/tls",
            "data": {"tls.crt": "", "tls.key": ""}})
        ),
        arr(json!(["tls", "kubernetes.io/tls", 2, "5m"]))
    );
    assert_eq!(
        cells("", "serviceaccounts", json!({"metadata": meta("default")})),
        arr(json!(["default", 0, "5m"]))
    );
}

#[test]
fn core_and_new_events() {
    let ev = json!({"metadata": meta("web-0.17d"), "involvedObject": {"kind": "Pod", "name": "web-0",
            "fieldPath": "spec.containers{app}"},
        "reason": "Pulled", "message": "Successfully pulled image \"nginx\"\n", "type": "Normal",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2024-06-01T11:50:00Z", "lastTimestamp": "2024-06-01T11:58:00Z", "count": 4});
    assert_eq!(
        cells("", "events", ev),
        arr(json!([
            "2m",
            "Normal",
            "Pulled",
            "pod/web-0",
            "spec.containers{app}",
            "kubelet, node-1",
            "Successfully pulled image \"nginx\"",
            "10m",
            4,
            "web-0.17d"
        ]))
    );
    let new = json!({"metadata": meta("n.1"), "regarding": {"kind": "Node", "name": "node-1"},
        "reason": "Starting", "note": "Starting kubelet.", "type": "Normal",
        "eventTime": "2024-06-01T11:59:00.000000Z", "reportingController": "kubelet",
        "reportingInstance": "node-1", "action": "Start"});
    assert_eq!(
        cells("events.k8s.io", "events", new),
        arr(json!([
            "60s",
            "Normal",
            "Starting",
            "node/node-1",
            "",
            "kubelet, node-1",
            "Starting kubelet.",
            "60s",
            1,
            "n.1"
        ]))
    );
    let series = json!({"metadata": meta("s"), "involvedObject": {"kind": "Node"}, "reason": "R",
        "eventTime": "2024-06-01T11:00:00.000000Z", "series": {"count": 7, "lastObservedTime": "2024-06-01T11:59:30.000000Z"}});
    let c = cells("", "events", series);
    assert_eq!(
        (c[0].clone(), c[3].clone(), c[7].clone(), c[8].clone()),
        (json!("30s"), json!("node"), json!("60m"), json!(7))
    );
}

#[test]
fn volumes() {
    let pvc = json!({"metadata": meta("data"), "spec": {"volumeName": "pv-1", "storageClassName": "local",
            "resources": {"requests": {"storage": "1Gi"}}, "volumeMode": "Filesystem"},
        "status": {"phase": "Bound", "capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"]}});
    assert_eq!(
        cells("", "persistentvolumeclaims", pvc),
        arr(json!([
            "data",
            "Bound",
            "pv-1",
            "2Gi",
            "RWO,RWX",
            "local",
            "<unset>",
            "5m",
            "Filesystem"
        ]))
    );
    let pending = json!({"metadata": meta("new"), "spec": {}, "status": {"phase": "Pending"}});
    assert_eq!(
        cells("", "persistentvolumeclaims", pending),
        arr(json!([
            "new", "Pending", "", "", "", "", "<unset>", "5m", "<unset>"
        ]))
    );
    let pv = json!({"metadata": {"name": "pv-1", "creationTimestamp": FIVE_MIN_AGO,
            "annotations": {"volume.beta.kubernetes.io/storage-class": "legacy"}, "deletionTimestamp": NOW},
        "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOncePod"],
            "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "default", "name": "data"},
            "storageClassName": "local"},
        "status": {"phase": "Bound"}});
    assert_eq!(
        cells("", "persistentvolumes", pv),
        arr(json!([
            "pv-1",
            "2Gi",
            "RWOP",
            "Retain",
            "Terminating",
            "default/data",
            "legacy",
            "<unset>",
            "",
            "5m",
            "<unset>"
        ]))
    );
}

fn template() -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
        {"name": "app", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]}})
}

#[test]
fn workloads() {
    let deploy = json!({"metadata": meta("web"), "spec": {"replicas": 3, "template": template(),
            "selector": {"matchLabels": {"app": "web"}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
    assert_eq!(
        cells("apps", "deployments", deploy),
        arr(json!([
            "web",
            "2/3",
            3,
            2,
            "5m",
            "app,log",
            "nginx:1.27,busybox",
            "app=web"
        ]))
    );
    let rs = json!({"metadata": meta("web-5d4"), "spec": {"replicas": 3, "template": template(),
            "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4"}}},
        "status": {"replicas": 3, "readyReplicas": 1}});
    assert_eq!(
        cells("apps", "replicasets", rs),
        arr(json!([
            "web-5d4",
            3,
            3,
            1,
            "5m",
            "app,log",
            "nginx:1.27,busybox",
            "app=web,pod-template-hash=5d4"
        ]))
    );
    let sts = json!({"metadata": meta("db"), "spec": {"replicas": 2, "template": template()},
        "status": {"readyReplicas": 2}});
    assert_eq!(
        cells("apps", "statefulsets", sts),
        arr(json!(["db", "2/2", "5m", "app,log", "nginx:1.27,busybox"]))
    );
    let mut tpl = template();
    tpl["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "linux"});
    let ds = json!({"metadata": meta("agent"), "spec": {"template": tpl,
            "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}},
        "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                   "updatedNumberScheduled": 3, "numberAvailable": 2}});
    assert_eq!(
        cells("apps", "daemonsets", ds),
        arr(json!([
            "agent",
            3,
            3,
            2,
            3,
            2,
            "kubernetes.io/os=linux",
            "5m",
            "app,log",
            "nginx:1.27,busybox",
            "app in (web)"
        ]))
    );
    let cr = json!({"metadata": {"name": "db-7f9", "creationTimestamp": FIVE_MIN_AGO, "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "x", "controller": true}]},
        "revision": 2});
    assert_eq!(
        cells("apps", "controllerrevisions", cr),
        arr(json!(["db-7f9", "statefulset.apps/db", 2, "5m"]))
    );
    let orphan = json!({"metadata": meta("r"), "revision": 1});
    assert_eq!(cells("apps", "controllerrevisions", orphan)[1], "<none>");
}

#[test]
fn jobs_and_cron_jobs() {
    let job = json!({"metadata": meta("pi"), "spec": {"completions": 1, "parallelism": 1, "template": template(),
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}}},
        "status": {"succeeded": 1, "startTime": "2024-06-01T11:55:00Z", "completionTime": "2024-06-01T11:55:42Z",
            "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}});
    assert_eq!(
        cells("batch", "jobs", job),
        arr(json!([
            "pi",
            "Complete",
            "1/1",
            "42s",
            "5m",
            "app,log",
            "nginx:1.27,busybox",
            "batch.kubernetes.io/controller-uid=abc"
        ]))
    );
    let running = json!({"metadata": meta("work"), "spec": {"parallelism": 3, "template": template()},
        "status": {"succeeded": 0, "startTime": "2024-06-01T11:57:00Z"}});
    let c = cells("batch", "jobs", running);
    assert_eq!(c[1..4], [json!("Running"), json!("0/1 of 3"), json!("3m")]);
    assert_eq!(c[7], "<none>");
    let failed = json!({"metadata": meta("f"), "spec": {"template": template()},
        "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
    assert_eq!(
        cells("batch", "jobs", failed)[1..4],
        [json!("Failed"), json!("0/1"), json!("")]
    );
    let cj = json!({"metadata": meta("nightly"), "spec": {"schedule": "0 3 * * *", "suspend": false,
            "jobTemplate": {"spec": {"template": template()}}},
        "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": "2024-06-01T11:59:00Z"}});
    assert_eq!(
        cells("batch", "cronjobs", cj),
        arr(json!([
            "nightly",
            "0 3 * * *",
            "<none>",
            "False",
            1,
            "60s",
            "5m",
            "app,log",
            "nginx:1.27,busybox",
            "<none>"
        ]))
    );
}

#[test]
fn lease_ingress_ingress_class() {
    assert_eq!(
        cells(
            "coordination.k8s.io",
            "leases",
            json!({"metadata": meta("node-1"),
            "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}})
        ),
        arr(json!(["node-1", "node-1", "5m"]))
    );
    let ing = json!({"metadata": meta("web"), "spec": {"ingressClassName": "nginx",
            "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}], "tls": [{"hosts": ["a.example.com"]}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.20"}]}}});
    assert_eq!(
        cells("networking.k8s.io", "ingresses", ing),
        arr(json!([
            "web",
            "nginx",
            "a.example.com,b.example.com",
            "192.168.1.20",
            "80, 443",
            "5m"
        ]))
    );
    let many = json!({"metadata": meta("m"), "spec": {"rules": [{"host": "a"}, {"host": "b"}, {"host": "c"}, {"host": "d"}, {}]}});
    assert_eq!(
        cells("networking.k8s.io", "ingresses", many)[1..5],
        [
            json!("<none>"),
            json!("a,b,c + 2 more..."),
            json!(""),
            json!("80")
        ]
    );
    let class = json!({"metadata": {"name": "nginx", "creationTimestamp": FIVE_MIN_AGO},
        "spec": {"controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}});
    assert_eq!(
        cells("networking.k8s.io", "ingressclasses", class),
        arr(json!([
            "nginx",
            "k8s.io/ingress-nginx",
            "IngressParameters.k8s.example.com/external-lb",
            "5m"
        ]))
    );
}

#[test]
fn rbac() {
    let role = json!({"metadata": {"name": "reader", "creationTimestamp": "2024-06-01T11:55:00Z"}, "rules": []});
    assert_eq!(
        cells("rbac.authorization.k8s.io", "roles", role.clone()),
        arr(json!(["reader", "2024-06-01T11:55:00Z"]))
    );
    assert_eq!(
        cells("rbac.authorization.k8s.io", "clusterroles", role),
        arr(json!(["reader", "2024-06-01T11:55:00Z"]))
    );
    let defs = column_definitions(res("rbac.authorization.k8s.io", "roles"));
    assert_eq!(defs[1]["name"], "Created At");
    assert_eq!(defs[1]["type"], "date");
    let rb = json!({"metadata": meta("read"), "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"},
                     {"kind": "Group", "name": "devs"},
                     {"kind": "ServiceAccount", "name": "ci", "namespace": "build"}]});
    assert_eq!(
        cells("rbac.authorization.k8s.io", "rolebindings", rb.clone()),
        arr(json!([
            "read",
            "Role/reader",
            "5m",
            "alice, bob",
            "devs",
            "build/ci"
        ]))
    );
    assert_eq!(
        cells("rbac.authorization.k8s.io", "clusterrolebindings", rb).len(),
        6
    );
}
