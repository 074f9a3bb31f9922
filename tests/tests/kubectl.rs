//! Stock kubectl (/usr/bin/kubectl, v1.32) against `skiff server`: the workflows of the seeds.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use skiff_tests::{Server, eventually};

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
        env:
        - {name: A, value: "1"}
        - {name: B, value: "2"}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  index.html: hello
"#;

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn create_namespace_and_apply_multi_document_yaml() {
    let s = Server::start();
    assert_eq!(
        s.ok(&["create", "namespace", "shop"]).trim(),
        "namespace/shop created"
    );
    let out = s.ok_stdin(&["apply", "-n", "shop", "-f", "-"], APP);
    assert_eq!(
        lines(&out),
        vec![
            "deployment.apps/web created",
            "service/web created",
            "configmap/web-config created"
        ]
    );
    let d = s.get_json(&["-n", "shop", "get", "deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate", "defaulted");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    let svc = s.get_json(&["-n", "shop", "get", "service", "web"]);
    let ip = svc["spec"]["clusterIP"].as_str().unwrap();
    assert!(
        ip.starts_with("10.9"),
        "cluster IP allocated from 10.96.0.0/12: {ip}"
    );
    assert_eq!(svc["spec"]["type"], "ClusterIP");

    // Apply again with changes: a 3-way strategic merge keeps what others set.
    s.ok(&["-n", "shop", "label", "deployment", "web", "owner=ops"]);
    let changed = APP
        .replace("replicas: 2", "replicas: 3")
        .replace("nginx:1.25", "nginx:1.26")
        .replace("        - {name: B, value: \"2\"}\n", "");
    let out = s.ok_stdin(&["apply", "-n", "shop", "-f", "-"], &changed);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("service/web unchanged"), "{out}");
    let d = s.get_json(&["-n", "shop", "get", "deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["generation"], 2);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.26");
    assert_eq!(c["env"].as_array().unwrap().len(), 1, "env B removed: {c}");
    assert_eq!(
        d["metadata"]["labels"]["owner"], "ops",
        "label set by kubectl label kept"
    );
}

#[test]
fn server_side_apply_tracks_managers_and_conflicts() {
    let s = Server::start();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n  b: \"2\"\n";
    let out = s.ok_stdin(&["apply", "--server-side", "-f", "-"], cm);
    assert!(
        out.contains("configmap/settings serverside-applied"),
        "{out}"
    );
    let obj = s.get_json(&["get", "cm", "settings", "--show-managed-fields"]);
    let managers: Vec<&str> = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, vec!["kubectl"]);
    assert_eq!(obj["metadata"]["managedFields"][0]["operation"], "Apply");
    // Dropping a field from the applied config removes it.
    s.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n",
    );
    let obj = s.get_json(&["get", "cm", "settings"]);
    assert!(obj["data"].get("b").is_none(), "{obj}");
    // Another manager applying a different value conflicts unless forced.
    let other = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"9\"\n";
    let err = s.kubectl_stdin(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        other,
    );
    assert!(!err.status.success());
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(stderr.contains("conflict"), "{stderr}");
    assert_eq!(s.get_json(&["get", "cm", "settings"])["data"]["a"], "1");
    s.ok_stdin(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=other",
            "-f",
            "-",
        ],
        other,
    );
    assert_eq!(s.get_json(&["get", "cm", "settings"])["data"]["a"], "9");
}

#[test]
fn get_output_formats_selectors_and_sorting() {
    let s = Server::start();
    s.ok_stdin(&["apply", "-f", "-"], APP);
    s.ok(&["create", "namespace", "other"]);
    s.ok(&[
        "-n",
        "other",
        "create",
        "configmap",
        "zeta",
        "--from-literal=k=v",
    ]);
    s.ok(&[
        "-n",
        "other",
        "create",
        "configmap",
        "alpha",
        "--from-literal=k=v",
    ]);
    s.ok(&["-n", "other", "label", "configmap", "alpha", "tier=front"]);

    let table = s.ok(&["get", "deployments"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    assert!(table.lines().nth(1).unwrap().starts_with("web "), "{table}");
    let wide = s.ok(&["get", "deployments", "-o", "wide"]);
    assert!(
        wide.lines().next().unwrap().contains("CONTAINERS"),
        "{wide}"
    );
    assert!(wide.contains("nginx:1.25"), "{wide}");
    let svc = s.ok(&["get", "svc", "web"]);
    assert!(svc.contains("ClusterIP") && svc.contains("80/TCP"), "{svc}");

    let yaml = s.ok(&["get", "configmap", "web-config", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: ConfigMap") && yaml.contains("index.html: hello"),
        "{yaml}"
    );
    let jp = s.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(jp, "nginx:1.25");

    let all = s.ok(&["get", "configmaps", "-A"]);
    assert!(all.contains("other") && all.contains("default"), "{all}");
    let labelled = s.ok(&["get", "configmaps", "-A", "-l", "tier=front", "-o", "name"]);
    assert_eq!(labelled.trim(), "configmap/alpha");
    let not_labelled = s.ok(&[
        "-n",
        "other",
        "get",
        "cm",
        "-l",
        "tier!=front",
        "-o",
        "name",
    ]);
    assert!(
        !not_labelled.contains("alpha") && not_labelled.contains("zeta"),
        "{not_labelled}"
    );
    let by_field = s.ok(&[
        "get",
        "cm",
        "-A",
        "--field-selector",
        "metadata.name=zeta",
        "-o",
        "name",
    ]);
    assert_eq!(by_field.trim(), "configmap/zeta");
    let sorted = s.ok(&[
        "-n",
        "other",
        "get",
        "cm",
        "--sort-by=.metadata.name",
        "-o",
        "name",
    ]);
    let names: Vec<&str> = sorted.lines().collect();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(names, expected);
    assert!(names.contains(&"configmap/alpha"));

    let bad = s.fails(&["get", "cm", "--field-selector", "spec.bogus=1"]);
    assert!(
        bad.contains("\"spec.bogus\" is not a known field selector"),
        "{bad}"
    );
}

#[test]
fn list_pagination_with_chunks() {
    let s = Server::start();
    for i in 0..12 {
        s.ok(&[
            "create",
            "configmap",
            &format!("cm-{i:02}"),
            "--from-literal=i=1",
        ]);
    }
    // kubectl pages through with limit/continue.
    let out = s.ok(&["get", "cm", "--chunk-size=5", "-o", "name"]);
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("configmap/cm-"))
            .count(),
        12
    );
    let page = s.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?limit=5",
    ]);
    let page: Value = serde_json::from_str(&page).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    let token = page["metadata"]["continue"].as_str().unwrap();
    assert!(page["metadata"]["remainingItemCount"].as_u64().unwrap() >= 7);
    let next = s.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/configmaps?limit=5&continue={token}"),
    ]);
    let next: Value = serde_json::from_str(&next).unwrap();
    assert_ne!(
        next["items"][0]["metadata"]["name"],
        page["items"][0]["metadata"]["name"]
    );
}

#[test]
fn get_watch_prints_later_changes() {
    let s = Server::start();
    s.ok(&["create", "configmap", "first", "--from-literal=a=1"]);
    let mut child = s
        .kubectl_cmd(&["get", "configmaps", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let wait_for = |needle: &str, seen: &mut Vec<String>| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !seen.iter().any(|l| l.starts_with(needle)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => seen.push(l),
                Err(_) => panic!("watch never printed {needle:?}; got {seen:?}"),
            }
        }
    };
    wait_for("first", &mut seen);
    s.ok(&["create", "configmap", "second", "--from-literal=a=1"]);
    wait_for("second", &mut seen);
    s.ok(&["label", "configmap", "first", "changed=yes"]);
    let before = seen.iter().filter(|l| l.starts_with("first")).count();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seen.iter().filter(|l| l.starts_with("first")).count() == before {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        seen.push(
            rx.recv_timeout(left)
                .expect("watch printed the modification"),
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen[0].starts_with("NAME"), "header first: {seen:?}");
}

#[test]
fn describe_label_annotate_scale_and_edit() {
    let s = Server::start();
    s.ok_stdin(&["apply", "-f", "-"], APP);
    let d = s.ok(&["describe", "deployment", "web"]);
    assert!(d.contains("Name:") && d.contains("web"), "{d}");
    let strategy = d
        .lines()
        .find(|l| l.starts_with("StrategyType:"))
        .unwrap_or("");
    assert!(strategy.ends_with("RollingUpdate"), "{d}");
    assert!(d.contains("nginx:1.25"), "{d}");
    let svc = s.ok(&["describe", "service", "web"]);
    let target = svc
        .lines()
        .find(|l| l.starts_with("TargetPort:"))
        .unwrap_or("");
    assert!(target.ends_with("80/TCP"), "{svc}");
    s.ok(&["describe", "namespace", "default"]);

    s.ok(&["label", "deployment", "web", "tier=backend"]);
    s.ok(&["annotate", "deployment", "web", "note=hello"]);
    let obj = s.get_json(&["get", "deployment", "web"]);
    assert_eq!(obj["metadata"]["labels"]["tier"], "backend");
    assert_eq!(obj["metadata"]["annotations"]["note"], "hello");
    s.ok(&["label", "deployment", "web", "tier-"]);
    assert!(
        s.get_json(&["get", "deployment", "web"])["metadata"]["labels"]
            .get("tier")
            .is_none()
    );
    let overwrite = s.fails(&["label", "deployment", "web", "app=other"]);
    assert!(overwrite.contains("already has a value"), "{overwrite}");

    assert_eq!(
        s.ok(&["scale", "deployment", "web", "--replicas=5"]).trim(),
        "deployment.apps/web scaled"
    );
    assert_eq!(
        s.get_json(&["get", "deployment", "web"])["spec"]["replicas"],
        5
    );
    let scale = s.ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
    ]);
    let scale: Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 5);

    let out = s
        .kubectl_cmd(&["edit", "deployment", "web"])
        .env("KUBE_EDITOR", "sed -i -e 's/replicas: 5/replicas: 7/'")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        s.get_json(&["get", "deployment", "web"])["spec"]["replicas"],
        7
    );
}

#[test]
fn patch_all_three_types() {
    let s = Server::start();
    s.ok_stdin(&["apply", "-f", "-"], APP);
    // Strategic merge (the default): containers merge by name.
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}"#,
    ]);
    let c =
        s.get_json(&["get", "deployment", "web"])["spec"]["template"]["spec"]["containers"].clone();
    let mut names: Vec<&str> = c
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        vec!["nginx", "sidecar"],
        "merged by name, not replaced"
    );
    // Merge patch: lists are replaced.
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"patched":"merge"}},"spec":{"replicas":4}}"#,
    ]);
    let d = s.get_json(&["get", "deployment", "web"]);
    assert_eq!(d["metadata"]["labels"]["patched"], "merge");
    assert_eq!(d["spec"]["replicas"], 4);
    // JSON patch.
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":6},{"op":"remove","path":"/metadata/labels/patched"}]"#,
    ]);
    let d = s.get_json(&["get", "deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 6);
    assert!(d["metadata"]["labels"].get("patched").is_none());
    // A JSON patch whose test fails changes nothing.
    let err = s.fails(&[
        "patch",
        "deployment",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":1},{"op":"replace","path":"/spec/replicas","value":9}]"#,
    ]);
    assert!(!err.is_empty());
    assert_eq!(
        s.get_json(&["get", "deployment", "web"])["spec"]["replicas"],
        6
    );
}

#[test]
fn delete_by_name_label_all_and_namespace_cascade() {
    let s = Server::start();
    s.ok(&["create", "namespace", "tmp"]);
    for (name, tier) in [("a", "x"), ("b", "x"), ("c", "y"), ("d", "y")] {
        s.ok(&[
            "-n",
            "tmp",
            "create",
            "configmap",
            name,
            "--from-literal=k=v",
        ]);
        s.ok(&[
            "-n",
            "tmp",
            "label",
            "configmap",
            name,
            &format!("tier={tier}"),
        ]);
    }
    assert_eq!(
        s.ok(&["-n", "tmp", "delete", "configmap", "a"]).trim(),
        "configmap \"a\" deleted"
    );
    s.ok(&["-n", "tmp", "delete", "configmap", "-l", "tier=y"]);
    let left = s.ok(&["-n", "tmp", "get", "cm", "-o", "name"]);
    assert!(
        left.contains("configmap/b") && !left.contains("configmap/c"),
        "{left}"
    );
    s.ok_stdin(&["apply", "-n", "tmp", "-f", "-"], APP);
    s.ok(&["-n", "tmp", "delete", "configmap", "--all"]);
    assert!(
        !s.ok(&["-n", "tmp", "get", "cm", "-o", "name"])
            .contains("configmap/b")
    );
    // Deleting the namespace removes everything in it, then the namespace.
    s.ok(&["delete", "namespace", "tmp"]);
    eventually(Duration::from_secs(20), "namespace tmp to be gone", || {
        let out = s.kubectl(&["get", "namespace", "tmp"]);
        (!out.status.success()).then_some(())
    });
    let deploys = s.get_json(&["get", "deployments", "-A"]);
    assert_eq!(deploys["items"].as_array().unwrap().len(), 0);
    let err = s.fails(&["-n", "tmp", "create", "configmap", "late"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn explain_api_resources_and_version() {
    let s = Server::start();
    let explain = s.ok(&["explain", "deployment.spec"]);
    assert!(explain.contains("KIND:       Deployment"), "{explain}");
    assert!(explain.contains("replicas"), "{explain}");
    let resources = s.ok(&["api-resources"]);
    for needle in [
        "deployments  ",
        "deploy",
        "replicasets",
        "statefulsets",
        "sts",
        "daemonsets",
        "cronjobs",
        "endpointslices",
        "ingresses",
        "clusterrolebindings",
        "leases",
        "serviceaccounts",
    ] {
        assert!(
            resources.contains(needle),
            "api-resources lacks {needle}: {resources}"
        );
    }
    let namespaced = s.ok(&["api-resources", "--namespaced=false", "-o", "name"]);
    assert!(
        namespaced.contains("nodes") && !namespaced.contains("pods"),
        "{namespaced}"
    );
    let version = s.ok(&["version", "-o", "json"]);
    let v: Value = serde_json::from_str(&version).unwrap();
    assert_eq!(v["serverVersion"]["major"], "1");
    assert_eq!(v["serverVersion"]["minor"], "32");
    // `kubectl get all` uses the `all` category.
    s.ok_stdin(&["apply", "-f", "-"], APP);
    let all = s.ok(&["get", "all"]);
    assert!(
        all.contains("deployment.apps/web") && all.contains("service/web"),
        "{all}"
    );
}

#[test]
fn errors_are_kubernetes_statuses() {
    let s = Server::start();
    // Unknown field with strict validation (kubectl's default).
    let bad = APP.replace("replicas: 2", "replicas: 2\n  replicaz: 3");
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field \"spec.replicaz\""), "{err}");
    // Invalid name.
    let err = s.fails(&["create", "configmap", "Bad_Name"]);
    assert!(
        err.contains("is invalid") && err.contains("metadata.name"),
        "{err}"
    );
    // Missing namespace.
    let err = s.fails(&["-n", "nowhere", "create", "configmap", "x"]);
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");
    // Conflict: an update with a stale resourceVersion.
    s.ok(&["create", "configmap", "c1", "--from-literal=a=1"]);
    let mut obj = s.get_json(&["get", "configmap", "c1"]);
    s.ok(&["label", "configmap", "c1", "bump=1"]);
    obj["data"]["a"] = Value::from("2");
    let out = s.kubectl_stdin(&["replace", "-f", "-"], &obj.to_string());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the object has been modified"), "{err}");
    assert_eq!(s.get_json(&["get", "configmap", "c1"])["data"]["a"], "1");
    // Already exists.
    let err = s.fails(&["create", "configmap", "c1"]);
    assert!(err.contains("already exists"), "{err}");
    // Not found.
    let err = s.fails(&["get", "deployment", "ghost"]);
    assert!(
        err.contains("deployments.apps \"ghost\" not found"),
        "{err}"
    );
}

#[test]
fn events_are_one_set_seen_through_both_api_groups() {
    let s = Server::start();
    s.ok(&["create", "configmap", "target", "--from-literal=a=1"]);
    let uid = s.get_json(&["get", "configmap", "target"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let event = format!(
        r#"{{"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{{"name":"target.1"}},
        "regarding":{{"apiVersion":"v1","kind":"ConfigMap","name":"target","namespace":"default","uid":"{uid}"}},
        "reason":"Checked","note":"looked at it","type":"Normal","action":"Check",
        "reportingController":"skiff-test","reportingInstance":"t1",
        "eventTime":"2026-01-01T00:00:00.000000Z"}}"#
    );
    s.ok_stdin(&["create", "-f", "-"], &event);
    let core = s.get_json(&["get", "events.v1.", "target.1"]);
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["involvedObject"]["name"], "target");
    assert_eq!(core["message"], "looked at it");
    let listed = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=target",
    ]);
    assert!(
        listed.contains("Checked") && listed.contains("looked at it"),
        "{listed}"
    );
    let v1 = s.get_json(&["get", "events.v1.events.k8s.io", "target.1"]);
    assert_eq!(v1["note"], "looked at it");
    assert_eq!(v1["regarding"]["uid"], uid);
    let described = s.ok(&["describe", "configmap", "target"]);
    assert!(
        described.contains("Checked") && described.contains("looked at it"),
        "{described}"
    );
}

/// kubectl's typed `create` commands send protobuf bodies; `expose`, `run` and `set image`
/// send JSON. All of them must work as on a real cluster.
#[test]
fn typed_create_commands_expose_run_and_set_image() {
    let s = Server::start();
    assert_eq!(
        s.ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=3",
            "--port=80"
        ])
        .trim(),
        "deployment.apps/web created"
    );
    let d = s.get_json(&["get", "deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
    s.ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--type=NodePort",
    ]);
    let svc = s.get_json(&["get", "service", "web"]);
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&node_port), "{svc}");
    s.ok(&["create", "service", "clusterip", "db", "--tcp=5432:5432"]);
    assert_eq!(
        s.get_json(&["get", "service", "db"])["spec"]["ports"][0]["targetPort"],
        5432
    );
    s.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cr3t",
    ]);
    let secret = s.get_json(&["get", "secret", "creds"]);
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"]["password"], "czNjcjN0");
    s.ok(&[
        "create",
        "job",
        "once",
        "--image=busybox",
        "--",
        "echo",
        "hi",
    ]);
    let job = s.get_json(&["get", "job", "once"]);
    assert!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"].is_string(),
        "{job}"
    );
    s.ok(&[
        "create",
        "cronjob",
        "tick",
        "--image=busybox",
        "--schedule=*/1 * * * *",
        "--",
        "date",
    ]);
    assert_eq!(
        s.get_json(&["get", "cronjob", "tick"])["spec"]["concurrencyPolicy"],
        "Allow"
    );
    let bad = s.fails(&[
        "create",
        "cronjob",
        "bad",
        "--image=busybox",
        "--schedule=not a schedule",
    ]);
    assert!(bad.contains("schedule"), "{bad}");
    s.ok(&["create", "serviceaccount", "robot"]);
    s.ok(&[
        "create",
        "role",
        "reader",
        "--verb=get,list",
        "--resource=pods",
    ]);
    s.ok(&[
        "create",
        "rolebinding",
        "robot-reads",
        "--role=reader",
        "--serviceaccount=default:robot",
    ]);
    s.ok(&[
        "run",
        "one",
        "--image=busybox",
        "--restart=Never",
        "--",
        "sleep",
        "1",
    ]);
    assert_eq!(
        s.get_json(&["get", "pod", "one"])["spec"]["restartPolicy"],
        "Never"
    );
    s.ok(&["set", "image", "deployment/web", "nginx=nginx:1.27"]);
    let d = s.get_json(&["get", "deployment", "web"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_eq!(d["metadata"]["generation"], 2);
}
