//! Controllers, scheduler and simulated nodes, driven through stock kubectl (/usr/bin/kubectl).
//!
//! Each test starts its own `skiff server` (with shortened controller timings where a test
//! needs them) and `skiff sim` hollow nodes, and kills both when it ends.

use std::collections::{HashMap, HashSet};
use std::io::BufReader;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use skiff_tests::{eventually, skiff_bin};

/// A server plus simulated nodes.
struct Cluster {
    server: Child,
    sims: Vec<Child>,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Cluster {
    fn start(server_args: &[&str], nodes: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log");
        // No time zone files, as on the appliance: CronJob time zones come from the built-in db.
        let no_zoneinfo = dir.path().join("zoneinfo");
        std::fs::create_dir_all(&no_zoneinfo).expect("empty zoneinfo dir");
        let server = Command::new(skiff_bin())
            .env("TZDIR", &no_zoneinfo)
            .args(["server", "--data-dir"])
            .arg(&data)
            .args(["--listen", "127.0.0.1:0"])
            .args(server_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn skiff server");
        let kubeconfig = data.join("kubeconfig");
        let mut c = Self {
            server,
            sims: Vec::new(),
            dir,
            kubeconfig,
        };
        eventually(Duration::from_secs(30), "server ready", || {
            (c.kubeconfig.exists() && c.kubectl(&["get", "--raw", "/readyz"]).status.success())
                .then_some(())
        });
        if nodes > 0 {
            c.sim(&["--nodes", &nodes.to_string()]);
            eventually(Duration::from_secs(30), "nodes Ready", || {
                let out = c.ok(&["get", "nodes", "--no-headers"]);
                (out.lines().filter(|l| l.contains(" Ready ")).count() >= nodes).then_some(())
            });
        }
        c
    }

    /// Start `skiff sim` with extra arguments.
    fn sim(&mut self, args: &[&str]) {
        let n = self.sims.len();
        let log = std::fs::File::create(self.dir.path().join(format!("sim{n}.log"))).expect("log");
        let child = Command::new(skiff_bin())
            .arg("sim")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--heartbeat", "1s"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn skiff sim");
        self.sims.push(child);
    }

    fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().expect("run kubectl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}\n--- server log tail ---\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write");
        child.wait_with_output().expect("kubectl")
    }

    fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("json")
    }

    fn items(&self, args: &[&str]) -> Vec<Value> {
        self.json(args)["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Wait until `get pods -l selector` shows `n` Running+Ready pods (and no others).
    fn wait_running(&self, selector: &str, n: usize, timeout: Duration) -> Vec<Value> {
        eventually(timeout, &format!("{n} running pods for {selector}"), || {
            let pods = self.items(&["get", "pods", "-l", selector]);
            let running: Vec<Value> = pods
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .filter(|p| p["status"]["phase"] == "Running" && ready(p))
                .cloned()
                .collect();
            let live = pods
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .count();
            (running.len() == n && live == n).then_some(running)
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for s in &mut self.sims {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
        if std::thread::panicking() && std::env::var_os("SKIFF_KEEP_LOGS").is_some() {
            let kept = self.dir.path().with_extension("kept");
            let _ = std::fs::rename(self.dir.path(), &kept);
            eprintln!("logs kept in {}", kept.display());
        }
    }
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn names(items: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = items
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

const T: Duration = Duration::from_secs(30);

#[test]
fn deployment_scales_rolls_out_and_rolls_back() {
    let c = Cluster::start(&[], 3);
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.25",
        "--replicas=3",
    ]);
    let pods = c.wait_running("app=web", 3, T);
    assert!(pods.iter().all(|p| {
        p["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| n.starts_with("sim-"))
    }));
    c.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);

    c.ok(&["scale", "deployment/web", "--replicas=10"]);
    c.wait_running("app=web", 10, T);

    // Watch every pod change during the rolling update and check availability never dips
    // below replicas - maxUnavailable (10 - 25% = 8, rounded down to 8... 10*25% = 2.5 -> 2).
    let mut watch = c
        .kubectl_cmd(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-w",
            "-o",
            "json",
            "--output-watch-events",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch");
    let stdout = watch.stdout.take().expect("stdout");
    let min_seen = Arc::new(Mutex::new(usize::MAX));
    let reader = {
        let min_seen = min_seen.clone();
        std::thread::spawn(move || {
            let mut state: HashMap<String, bool> = HashMap::new();
            let stream =
                serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>();
            for ev in stream {
                let Ok(ev) = ev else { break };
                let obj = &ev["object"];
                let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
                let available = ev["type"] != "DELETED"
                    && obj["metadata"]["deletionTimestamp"].is_null()
                    && ready(obj);
                state.insert(name, available);
                // Count only once the initial list is in (10 pods seen).
                if state.len() >= 10 {
                    let n = state.values().filter(|a| **a).count();
                    let mut m = min_seen.lock().unwrap();
                    *m = (*m).min(n);
                }
            }
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    c.ok(&["set", "image", "deployment/web", "nginx=nginx:1.27"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let pods = c.wait_running("app=web", 10, T);
    assert!(
        pods.iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.27")
    );
    std::thread::sleep(Duration::from_secs(1));
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = reader.join();
    let min = *min_seen.lock().unwrap();
    assert!(min != usize::MAX, "the watch saw the pods");
    assert!(
        min >= 8,
        "availability dropped to {min} during the rolling update"
    );

    let history = c.ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains("REVISION"), "{history}");
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(revisions.len(), 2, "{history}");
    let rs = c.items(&["get", "rs", "-l", "app=web"]);
    assert_eq!(rs.len(), 2);
    assert!(
        rs.iter()
            .all(|r| r["metadata"]["labels"]["pod-template-hash"].is_string())
    );
    let d = c.json(&["get", "deployment", "web"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );

    c.ok(&["rollout", "undo", "deployment/web"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let pods = c.wait_running("app=web", 10, T);
    assert!(
        pods.iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.25")
    );
    let d = c.json(&["get", "deployment", "web"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    assert_eq!(d["status"]["updatedReplicas"], 10);
    assert_eq!(d["status"]["availableReplicas"], 10);

    // pause / resume / restart
    c.ok(&["rollout", "pause", "deployment/web"]);
    c.ok(&["set", "image", "deployment/web", "nginx=nginx:1.28"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        c.items(&["get", "rs", "-l", "app=web"]).len(),
        2,
        "paused: no new ReplicaSet"
    );
    c.ok(&["rollout", "resume", "deployment/web"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    c.ok(&["rollout", "restart", "deployment/web"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let d = c.json(&["get", "deployment", "web"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "5"
    );
}

#[test]
fn scaling_during_a_stuck_rollout_is_proportional() {
    let c = Cluster::start(&[], 3);
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: prop}
spec:
  replicas: 10
  selector: {matchLabels: {app: prop}}
  strategy:
    rollingUpdate: {maxSurge: 3, maxUnavailable: 0}
  template:
    metadata: {labels: {app: prop}}
    spec:
      containers: [{name: web, image: "nginx:1.25"}]
"#,
    );
    c.ok(&["rollout", "status", "deployment/prop", "--timeout=60s"]);
    // The new template fits no node: its 3 surge pods stay Pending and the rollout stalls
    // with two active ReplicaSets (10 old, 3 new).
    c.ok(&[
        "patch",
        "deployment",
        "prop",
        "-p",
        r#"{"spec":{"template":{"spec":{"nodeSelector":{"no-such":"node"}}}}}"#,
    ]);
    let sizes = |c: &Cluster| -> Vec<i64> {
        let mut rs: Vec<(i64, i64)> = c
            .items(&["get", "rs", "-l", "app=prop"])
            .iter()
            .map(|r| {
                (
                    r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    r["spec"]["replicas"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        rs.sort();
        rs.into_iter().map(|(_, n)| n).collect()
    };
    eventually(T, "rollout stalled at 10 old + 3 new", || {
        (sizes(&c) == [10, 3]).then_some(())
    });
    // 20 replicas with a surge of 3 allow 23: the 10 extra are shared by size, 8 old and 2
    // new, instead of all going to the new ReplicaSet.
    c.ok(&["scale", "deployment/prop", "--replicas=20"]);
    eventually(T, "proportional scale-up", || {
        (sizes(&c) == [18, 5]).then_some(())
    });
    // Scaling down shrinks both, the bigger one more: 5 replicas allow 8, shared 6 old / 2 new;
    // then the rollout goes on by one step (6 old available, 5 needed): 5 old, 3 new. Without
    // proportional scaling it would end at 5 / 5.
    c.ok(&["scale", "deployment/prop", "--replicas=5"]);
    eventually(T, "proportional scale-down", || {
        (sizes(&c) == [5, 3]).then_some(())
    });
}

#[test]
fn recreate_strategy_replaces_all_pods() {
    let c = Cluster::start(&[], 2);
    c.ok(&[
        "create",
        "deployment",
        "db",
        "--image=postgres:16",
        "--replicas=2",
    ]);
    c.ok(&[
        "patch",
        "deployment",
        "db",
        "-p",
        r#"{"spec":{"strategy":{"type":"Recreate","rollingUpdate":null}}}"#,
    ]);
    c.wait_running("app=db", 2, T);
    c.ok(&["set", "image", "deployment/db", "postgres=postgres:17"]);
    c.ok(&["rollout", "status", "deployment/db", "--timeout=60s"]);
    let pods = c.wait_running("app=db", 2, T);
    assert!(
        pods.iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "postgres:17")
    );
}

#[test]
fn preferred_node_and_pod_affinity_steer_placement() {
    let mut c = Cluster::start(&[], 3);
    c.sim(&["--nodes", "1", "--prefix", "ssd-", "--label", "disk=ssd"]);
    eventually(T, "ssd node Ready", || {
        let out = c.ok(&["get", "nodes", "-l", "disk=ssd", "--no-headers"]);
        out.contains(" Ready ").then_some(())
    });
    // Soft node affinity: without it the default spreading would put these on 3 nodes.
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: fast}
spec:
  replicas: 3
  selector: {matchLabels: {app: fast}}
  template:
    metadata: {labels: {app: fast}}
    spec:
      affinity:
        nodeAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            preference: {matchExpressions: [{key: disk, operator: In, values: [ssd]}]}
      containers: [{name: c, image: nginx}]
"#,
    );
    let pods = c.wait_running("app=fast", 3, T);
    for p in &pods {
        assert_eq!(p["spec"]["nodeName"], "ssd-0", "preferred the ssd node");
    }
    // Soft pod affinity: web pods prefer the node where the cache runs.
    c.ok(&["run", "cache", "--image=redis", "--labels=app=cache"]);
    let cache = c.wait_running("app=cache", 1, T);
    let cache_node = cache[0]["spec"]["nodeName"].as_str().unwrap().to_string();
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      affinity:
        podAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              labelSelector: {matchLabels: {app: cache}}
              topologyKey: kubernetes.io/hostname
      containers: [{name: c, image: nginx}]
"#,
    );
    let pods = c.wait_running("app=web", 3, T);
    for p in &pods {
        assert_eq!(
            p["spec"]["nodeName"],
            cache_node.as_str(),
            "next to the cache"
        );
    }
}

#[test]
fn deleted_pod_is_replaced_and_pods_that_fit_nowhere_say_why() {
    let c = Cluster::start(&[], 2);
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=2",
    ]);
    let pods = c.wait_running("app=web", 2, T);
    let victim = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    c.ok(&["delete", "pod", &victim]);
    let pods = c.wait_running("app=web", 2, T);
    assert!(
        !names(&pods).contains(&victim),
        "the deleted pod was replaced by a new one"
    );

    // A pod asking for more CPU than any node has stays Pending, with the reason.
    c.ok(&["run", "huge", "--image=nginx", "--overrides", r#"{"spec":{"containers":[{"name":"huge","image":"nginx","resources":{"requests":{"cpu":"64"}}}]}}"#]);
    let describe = eventually(T, "FailedScheduling in describe", || {
        let d = c.ok(&["describe", "pod", "huge"]);
        d.contains("FailedScheduling").then_some(d)
    });
    assert!(
        describe.contains("0/2 nodes are available: 2 Insufficient cpu."),
        "{describe}"
    );
    let p = c.json(&["get", "pod", "huge"]);
    assert_eq!(p["status"]["phase"], "Pending");
    let cond = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned()
        .unwrap();
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "Unschedulable");
}

#[test]
fn pending_pod_is_scheduled_when_a_matching_node_joins() {
    let mut c = Cluster::start(&[], 1);
    c.ok(&[
        "run",
        "picky",
        "--image=nginx",
        "--overrides",
        r#"{"spec":{"nodeSelector":{"disk":"ssd"}}}"#,
    ]);
    eventually(T, "picky FailedScheduling", || {
        let d = c.ok(&["describe", "pod", "picky"]);
        d.contains("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.")
            .then_some(())
    });
    c.sim(&["--nodes", "1", "--prefix", "ssd-", "--label", "disk=ssd"]);
    eventually(T, "picky running on ssd-0", || {
        let p = c.json(&["get", "pod", "picky"]);
        (p["spec"]["nodeName"] == "ssd-0" && p["status"]["phase"] == "Running").then_some(())
    });
}

#[test]
fn silent_node_goes_not_ready_and_its_pods_move() {
    let c = Cluster::start(
        &[
            "--node-monitor-grace-period=3s",
            "--default-toleration-seconds=2",
        ],
        3,
    );
    // The API server's DefaultTolerationSeconds admission gives pods 300 s on unreachable
    // nodes; this deployment asks for 2 s instead.
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: nginx, image: nginx}]
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
"#,
    );
    let pods = c.wait_running("app=web", 6, T);
    let victim_node = pods[0]["spec"]["nodeName"].as_str().unwrap().to_string();
    let on_victim: HashSet<String> = pods
        .iter()
        .filter(|p| p["spec"]["nodeName"] == victim_node.as_str())
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    // Stop that node's heartbeats.
    c.ok(&["label", "node", &victim_node, "sim.skiff.dev/paused=true"]);
    eventually(T, "node NotReady", || {
        let out = c.ok(&["get", "node", &victim_node, "--no-headers"]);
        out.contains("NotReady").then_some(())
    });
    eventually(T, "unreachable NoExecute taint", || {
        let node = c.json(&["get", "node", &victim_node]);
        let taints = node["spec"]["taints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        taints
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute")
            .then_some(())
    });
    // After the toleration its pods are evicted and replaced elsewhere.
    eventually(T, "replacements on other nodes", || {
        let pods = c.items(&["get", "pods", "-l", "app=web"]);
        let live: Vec<&Value> = pods
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| p["status"]["phase"] == "Running" && ready(p))
            .collect();
        let evicted = pods
            .iter()
            .filter(|p| on_victim.contains(p["metadata"]["name"].as_str().unwrap_or("")))
            .all(|p| !p["metadata"]["deletionTimestamp"].is_null());
        (live.len() == 6
            && live
                .iter()
                .all(|p| p["spec"]["nodeName"] != victim_node.as_str())
            && evicted)
            .then_some(())
    });
    // Heartbeats back: Ready again and untainted.
    c.ok(&["label", "node", &victim_node, "sim.skiff.dev/paused-"]);
    eventually(T, "node Ready again", || {
        let node = c.json(&["get", "node", &victim_node]);
        let tainted = node["spec"]["taints"]
            .as_array()
            .is_some_and(|t| !t.is_empty());
        let out = c.ok(&["get", "node", &victim_node, "--no-headers"]);
        (out.contains(" Ready ") && !tainted).then_some(())
    });
}

#[test]
fn namespace_deletion_removes_everything_and_default_service_account_exists() {
    let c = Cluster::start(&[], 1);
    c.ok(&["create", "namespace", "shop"]);
    eventually(T, "default service account", || {
        c.kubectl(&["get", "serviceaccount", "default", "-n", "shop"])
            .status
            .success()
            .then_some(())
    });
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=2",
        "-n",
        "shop",
    ]);
    c.ok(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=a=b",
        "-n",
        "shop",
    ]);
    c.ok(&["expose", "deployment", "web", "--port=80", "-n", "shop"]);
    eventually(T, "pods running in shop", || {
        let pods = c.items(&["get", "pods", "-n", "shop"]);
        (pods.len() == 2 && pods.iter().all(ready)).then_some(())
    });
    c.ok(&["delete", "namespace", "shop", "--timeout=60s"]);
    let out = c.kubectl(&["get", "namespace", "shop"]);
    assert!(!out.status.success(), "namespace is gone");
    assert!(
        c.items(&["get", "pods", "-A"])
            .iter()
            .all(|p| p["metadata"]["namespace"] != "shop")
    );
}

#[test]
fn garbage_collection_follows_owner_references_of_any_kind() {
    let c = Cluster::start(&[], 1);
    let uid = |kind: &str, name: &str| -> String {
        c.ok(&["get", kind, name, "-o", "jsonpath={.metadata.uid}"])
    };
    let owned = |kind: &str, name: &str, owner_kind: &str, owner_api: &str, owner: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"{kind}","metadata":{{"name":"{name}","ownerReferences":[{{"apiVersion":"{owner_api}","kind":"{owner_kind}","name":"{owner}","uid":"{}"}}]}},"data":{{}}}}"#,
            uid(&owner_kind.to_lowercase(), owner)
        )
    };
    // Neither owner nor dependent has an informer: a ConfigMap owning a ConfigMap and a Secret.
    c.ok(&["create", "configmap", "parent", "--from-literal=a=b"]);
    c.ok_stdin(
        &["apply", "-f", "-"],
        &owned("ConfigMap", "child", "ConfigMap", "v1", "parent"),
    );
    c.ok_stdin(
        &["apply", "-f", "-"],
        &owned("Secret", "child-secret", "ConfigMap", "v1", "parent"),
    );
    // An uncached dependent of a cached owner: a ConfigMap owned by a Deployment.
    c.ok(&["create", "deployment", "app", "--image=nginx"]);
    c.ok_stdin(
        &["apply", "-f", "-"],
        &owned("ConfigMap", "app-config", "Deployment", "apps/v1", "app"),
    );
    // Still there while their owners are.
    std::thread::sleep(Duration::from_secs(7));
    for (kind, name) in [
        ("configmap", "child"),
        ("secret", "child-secret"),
        ("configmap", "app-config"),
    ] {
        assert!(
            c.kubectl(&["get", kind, name]).status.success(),
            "{kind}/{name} kept while its owner exists"
        );
    }
    c.ok(&["delete", "configmap", "parent"]);
    c.ok(&["delete", "deployment", "app"]);
    eventually(T, "dependents of any kind collected", || {
        let gone = |kind: &str, name: &str| !c.kubectl(&["get", kind, name]).status.success();
        (gone("configmap", "child")
            && gone("secret", "child-secret")
            && gone("configmap", "app-config"))
        .then_some(())
    });

    // Foreground deletion of an uncached owner: kubectl waits until the dependent is gone.
    c.ok(&["create", "configmap", "fg-parent", "--from-literal=a=b"]);
    c.ok_stdin(
        &["apply", "-f", "-"],
        &owned("ConfigMap", "fg-child", "ConfigMap", "v1", "fg-parent"),
    );
    c.ok(&[
        "delete",
        "configmap",
        "fg-parent",
        "--cascade=foreground",
        "--timeout=60s",
    ]);
    assert!(
        !c.kubectl(&["get", "configmap", "fg-child"])
            .status
            .success()
    );
    assert!(
        !c.kubectl(&["get", "configmap", "fg-parent"])
            .status
            .success()
    );
}

#[test]
fn cascading_deletion_background_foreground_and_orphan() {
    let c = Cluster::start(&[], 2);
    // Background (kubectl's default): the ReplicaSet and pods follow the Deployment.
    c.ok(&[
        "create",
        "deployment",
        "bg",
        "--image=nginx",
        "--replicas=2",
    ]);
    c.wait_running("app=bg", 2, T);
    c.ok(&["delete", "deployment", "bg"]);
    eventually(T, "bg ReplicaSet and pods gone", || {
        (c.items(&["get", "rs", "-l", "app=bg"]).is_empty()
            && c.items(&["get", "pods", "-l", "app=bg"]).is_empty())
        .then_some(())
    });

    // Foreground: kubectl waits; when it returns the dependents are already gone.
    c.ok(&[
        "create",
        "deployment",
        "fg",
        "--image=nginx",
        "--replicas=2",
    ]);
    c.wait_running("app=fg", 2, T);
    c.ok(&[
        "delete",
        "deployment",
        "fg",
        "--cascade=foreground",
        "--timeout=60s",
    ]);
    assert!(
        c.items(&["get", "rs", "-l", "app=fg"]).is_empty(),
        "ReplicaSets deleted before the Deployment"
    );
    assert!(
        c.items(&["get", "pods", "-l", "app=fg"]).is_empty(),
        "pods deleted before the Deployment"
    );

    // Orphan: the ReplicaSet goes, its pods stay, without owner references.
    c.ok(&[
        "create",
        "deployment",
        "or",
        "--image=nginx",
        "--replicas=2",
    ]);
    c.wait_running("app=or", 2, T);
    c.ok(&["delete", "deployment", "or", "--cascade=orphan"]);
    let rs = c.items(&["get", "rs", "-l", "app=or"]);
    assert_eq!(rs.len(), 1, "orphaned ReplicaSet stays");
    assert!(
        rs[0]["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(Vec::is_empty)
    );
    let rs_name = rs[0]["metadata"]["name"].as_str().unwrap().to_string();
    c.ok(&["delete", "rs", &rs_name, "--cascade=orphan"]);
    std::thread::sleep(Duration::from_secs(2));
    let pods = c.items(&["get", "pods", "-l", "app=or"]);
    assert_eq!(pods.len(), 2, "orphaned pods stay");
    assert!(pods.iter().all(|p| {
        p["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(Vec::is_empty)
    }));
}

/// Start `kubectl get pods -l SELECTOR -w --output-watch-events` and collect (type, name) pairs.
/// (watch event type, pod name, has a deletionTimestamp)
type WatchLog = Arc<Mutex<Vec<(String, String, bool)>>>;

fn watch_events(c: &Cluster, selector: &str) -> (Child, WatchLog) {
    let mut child = c
        .kubectl_cmd(&[
            "get",
            "pods",
            "-l",
            selector,
            "-w",
            "-o",
            "json",
            "--output-watch-events",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch");
    let stdout = child.stdout.take().expect("stdout");
    let events = Arc::new(Mutex::new(Vec::new()));
    let out = events.clone();
    std::thread::spawn(move || {
        for ev in serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>()
        {
            let Ok(ev) = ev else { break };
            let name = ev["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let deleting = !ev["object"]["metadata"]["deletionTimestamp"].is_null();
            out.lock().unwrap().push((
                ev["type"].as_str().unwrap_or("").to_string(),
                name,
                deleting,
            ));
        }
    });
    (child, events)
}

/// The order in which names first show up with `pred`.
fn first_seen(
    events: &[(String, String, bool)],
    pred: impl Fn(&(String, String, bool)) -> bool,
) -> Vec<String> {
    let mut seen = Vec::new();
    for e in events.iter().filter(|e| pred(e)) {
        if !seen.contains(&e.1) {
            seen.push(e.1.clone());
        }
    }
    seen
}

const STATEFULSET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: sts}}
  template:
    metadata: {labels: {app: sts}}
    spec:
      containers: [{name: nginx, image: nginx:1.25}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

#[test]
fn statefulset_creates_in_order_updates_and_removes_in_reverse() {
    let c = Cluster::start(&[], 2);
    let (mut watch, events) = watch_events(&c, "app=sts");
    std::thread::sleep(Duration::from_millis(500));
    c.ok_stdin(&["apply", "-f", "-"], STATEFULSET);
    let pods = c.wait_running("app=sts", 3, T);
    assert_eq!(names(&pods), ["web-0", "web-1", "web-2"]);
    let created = first_seen(&events.lock().unwrap(), |e| e.0 == "ADDED");
    assert_eq!(
        created,
        ["web-0", "web-1", "web-2"],
        "created in ordinal order"
    );
    assert!(
        pods.iter()
            .all(|p| p["spec"]["hostname"] == p["metadata"]["name"]
                && p["spec"]["subdomain"] == "web")
    );
    let pvcs = names(&c.items(&["get", "pvc"]));
    assert_eq!(pvcs, ["data-web-0", "data-web-1", "data-web-2"]);
    c.ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);

    // Rolling update with a partition: only ordinals >= 2 move.
    c.ok(&[
        "patch",
        "statefulset",
        "web",
        "-p",
        r#"{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":2}}}}"#,
    ]);
    c.ok(&["set", "image", "statefulset/web", "nginx=nginx:1.27"]);
    eventually(T, "web-2 updated, web-0/1 not", || {
        let pods = c.wait_running("app=sts", 3, T);
        let image = |n: &str| {
            pods.iter()
                .find(|p| p["metadata"]["name"] == n)
                .map(|p| p["spec"]["containers"][0]["image"].clone())
        };
        (image("web-2") == Some(Value::from("nginx:1.27"))
            && image("web-0") == Some(Value::from("nginx:1.25")))
        .then_some(())
    });
    let history = c.ok(&["rollout", "history", "statefulset/web"]);
    assert!(
        history
            .lines()
            .filter(|l| l.trim_start().starts_with(char::is_numeric))
            .count()
            >= 2,
        "{history}"
    );
    c.ok(&[
        "patch",
        "statefulset",
        "web",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    c.ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    let pods = c.wait_running("app=sts", 3, T);
    assert!(
        pods.iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.27")
    );

    // Scale to zero: removed from the highest ordinal down.
    let before = events.lock().unwrap().len();
    c.ok(&["scale", "statefulset/web", "--replicas=0"]);
    eventually(T, "all pods gone", || {
        c.items(&["get", "pods", "-l", "app=sts"])
            .is_empty()
            .then_some(())
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let ev = events.lock().unwrap();
    let deleted = first_seen(&ev[before..], |e| e.0 == "DELETED" || e.2);
    assert_eq!(
        deleted,
        ["web-2", "web-1", "web-0"],
        "removed in reverse order"
    );
}

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: busybox}]
"#;

#[test]
fn daemonset_covers_every_node_and_follows_new_ones() {
    let mut c = Cluster::start(&[], 2);
    c.ok_stdin(&["apply", "-f", "-"], DAEMONSET);
    let pods = c.wait_running("app=agent", 2, T);
    let mut nodes: Vec<String> = pods
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap().to_string())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["sim-0", "sim-1"]);
    c.ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    // A node added later gets its pod.
    c.sim(&["--nodes", "1", "--prefix", "late-"]);
    let pods = c.wait_running("app=agent", 3, T);
    assert!(pods.iter().any(|p| p["spec"]["nodeName"] == "late-0"));
    let ds = c.json(&["get", "daemonset", "agent"]);
    eventually(T, "status counts 3", || {
        let ds = c.json(&["get", "daemonset", "agent"]);
        (ds["status"]["desiredNumberScheduled"] == 3 && ds["status"]["numberReady"] == 3)
            .then_some(())
    });
    assert_eq!(ds["kind"], "DaemonSet");
    // A rolling update replaces every pod.
    c.ok(&["set", "image", "daemonset/agent", "agent=busybox:1.36"]);
    c.ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    let pods = c.wait_running("app=agent", 3, T);
    assert!(
        pods.iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "busybox:1.36")
    );
}

#[test]
fn job_runs_to_completion_with_retries_and_gives_up_at_the_backoff_limit() {
    let c = Cluster::start(&["--job-backoff=1s"], 2);
    // The simulated node fails the first two pods of this Job; it retries and completes.
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: flaky}
spec:
  completions: 2
  parallelism: 1
  backoffLimit: 4
  template:
    metadata:
      annotations: {sim.skiff.dev/fail-first: "2", sim.skiff.dev/run-seconds: "0.5"}
    spec:
      restartPolicy: Never
      containers: [{name: work, image: busybox, command: [sh, -c, "echo hi"]}]
"#,
    );
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/flaky",
        "--timeout=60s",
    ]);
    let job = c.json(&["get", "job", "flaky"]);
    assert_eq!(job["status"]["succeeded"], 2);
    assert_eq!(job["status"]["failed"], 2);
    let pods = c.items(&["get", "pods", "-l", "job-name=flaky"]);
    assert_eq!(pods.len(), 4, "two failed attempts and two successes");
    let out = c.ok(&["get", "job", "flaky"]);
    assert!(out.contains("Complete") && out.contains("2/2"), "{out}");

    // A command that always fails: the Job fails after backoffLimit retries.
    c.ok(&[
        "create",
        "job",
        "doomed",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    c.ok(&[
        "patch",
        "job",
        "doomed",
        "--type=merge",
        "-p",
        r#"{"spec":{"backoffLimit":1}}"#,
    ]);
    c.ok(&[
        "wait",
        "--for=condition=failed",
        "job/doomed",
        "--timeout=60s",
    ]);
    let describe = c.ok(&["describe", "job", "doomed"]);
    assert!(describe.contains("BackoffLimitExceeded"), "{describe}");
}

#[test]
fn indexed_job_runs_one_pod_per_index_and_pod_failure_policy_decides() {
    let c = Cluster::start(&["--job-backoff=1s"], 2);
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: shards}
spec:
  completionMode: Indexed
  completions: 4
  parallelism: 2
  template:
    metadata:
      annotations: {sim.skiff.dev/run-seconds: "0.3"}
    spec:
      restartPolicy: Never
      containers: [{name: work, image: busybox, command: [sh, -c, "echo $JOB_COMPLETION_INDEX"]}]
"#,
    );
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/shards",
        "--timeout=60s",
    ]);
    let job = c.json(&["get", "job", "shards"]);
    assert_eq!(job["status"]["completedIndexes"], "0-3");
    assert_eq!(job["status"]["succeeded"], 4);
    let pods = c.items(&["get", "pods", "-l", "job-name=shards"]);
    assert_eq!(pods.len(), 4, "one pod per index");
    let mut indexes: Vec<String> = Vec::new();
    for p in &pods {
        let index = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .expect("index annotation")
            .to_string();
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"],
            index.as_str()
        );
        assert_eq!(p["spec"]["hostname"], format!("shards-{index}"));
        let name = p["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with(&format!("shards-{index}-")), "{name}");
        let env = &p["spec"]["containers"][0]["env"][0];
        assert_eq!(env["name"], "JOB_COMPLETION_INDEX");
        assert_eq!(
            env["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        indexes.push(index);
    }
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2", "3"]);

    // Exit code 1 is ignored by the policy: with backoffLimit 0 the Job still completes after
    // the node fails its first two pods.
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: tolerant}
spec:
  backoffLimit: 0
  podFailurePolicy:
    rules:
    - action: Ignore
      onExitCodes: {operator: In, values: [1]}
  template:
    metadata:
      annotations: {sim.skiff.dev/fail-first: "2", sim.skiff.dev/run-seconds: "0.3"}
    spec:
      restartPolicy: Never
      containers: [{name: work, image: busybox, command: [sh, -c, "true"]}]
"#,
    );
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/tolerant",
        "--timeout=60s",
    ]);
    let job = c.json(&["get", "job", "tolerant"]);
    assert!(
        job["status"]["failed"].is_null(),
        "ignored failures are not counted: {job}"
    );
    assert_eq!(
        c.items(&["get", "pods", "-l", "job-name=tolerant"]).len(),
        3
    );

    // Exit code 42 fails the whole Job at once, backoffLimit notwithstanding.
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: fatal}
spec:
  backoffLimit: 6
  podFailurePolicy:
    rules:
    - action: FailJob
      onExitCodes: {containerName: main, operator: In, values: [42]}
  template:
    metadata:
      annotations: {sim.skiff.dev/run-seconds: "0.3"}
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox, command: [sh, -c, "exit 42"]}]
"#,
    );
    c.ok(&[
        "wait",
        "--for=condition=failed",
        "job/fatal",
        "--timeout=60s",
    ]);
    let job = c.json(&["get", "job", "fatal"]);
    let failed = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .unwrap();
    assert_eq!(failed["reason"], "PodFailurePolicy");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("failed with exit code 42 matching FailJob rule at index 0"),
        "{failed}"
    );
    assert_eq!(job["status"]["failed"], 1, "one attempt only");
}

#[test]
fn cronjob_fires_on_schedule_and_jobs_can_be_created_from_it() {
    let c = Cluster::start(&[], 1);
    c.ok(&[
        "create",
        "cronjob",
        "tick",
        "--image=busybox",
        "--schedule=*/1 * * * *",
        "--",
        "sh",
        "-c",
        "date",
    ]);
    // The same schedule in a time zone half an hour off UTC: Jobs record their scheduled time
    // in that zone.
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: kolkata}
spec:
  schedule: "*/1 * * * *"
  timeZone: Asia/Kolkata
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: c, image: busybox, command: [date]}]
"#,
    );
    // Manual run, as kubectl does it (client side): owned by the CronJob, annotated manual.
    c.ok(&["create", "job", "tick-manual", "--from=cronjob/tick"]);
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/tick-manual",
        "--timeout=60s",
    ]);
    // The schedule fires within the next minute.
    let job = eventually(Duration::from_secs(75), "a scheduled job", || {
        c.items(&["get", "jobs"]).into_iter().find(|j| {
            j["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("tick-") && n != "tick-manual")
        })
    });
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    let name = job["metadata"]["name"].as_str().unwrap().to_string();
    c.ok(&[
        "wait",
        "--for=condition=complete",
        &format!("job/{name}"),
        "--timeout=60s",
    ]);
    eventually(T, "lastScheduleTime and lastSuccessfulTime", || {
        let cj = c.json(&["get", "cronjob", "tick"]);
        (cj["status"]["lastScheduleTime"].is_string()
            && cj["status"]["lastSuccessfulTime"].is_string())
        .then_some(())
    });
    let out = c.ok(&["get", "cronjob", "tick"]);
    assert!(out.contains("*/1 * * * *"), "{out}");
    let zoned = eventually(T, "a job of the zoned cronjob", || {
        c.items(&["get", "jobs"]).into_iter().find(|j| {
            j["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("kolkata-"))
        })
    });
    let stamp = zoned["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .expect("scheduled timestamp")
        .to_string();
    assert!(stamp.ends_with("+05:30"), "{stamp}");
    assert!(stamp.contains(":00+05:30") && stamp.len() == 25, "{stamp}");
    let out = c.ok(&["get", "cronjob", "kolkata"]);
    assert!(out.contains("Asia/Kolkata") || out.contains("*/1"), "{out}");
    // A zone the database does not know is refused with the field's name.
    let out = c.kubectl_stdin(
        &["create", "-f", "-"],
        "{\"apiVersion\":\"batch/v1\",\"kind\":\"CronJob\",\"metadata\":{\"name\":\"mars\"},\
             \"spec\":{\"schedule\":\"* * * * *\",\"timeZone\":\"Mars/Olympus\",\"jobTemplate\":\
             {\"spec\":{\"template\":{\"spec\":{\"restartPolicy\":\"Never\",\
             \"containers\":[{\"name\":\"c\",\"image\":\"busybox\"}]}}}}}}",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "Mars/Olympus accepted");
    assert!(
        err.contains("spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone"),
        "{err}"
    );
}

#[test]
fn services_get_endpoints_and_endpoint_slices_of_ready_pods() {
    let c = Cluster::start(&[], 2);
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=3",
        "--port=8080",
    ]);
    c.ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
    ]);
    let pods = c.wait_running("app=web", 3, T);
    let mut ips: Vec<String> = pods
        .iter()
        .map(|p| p["status"]["podIP"].as_str().unwrap().to_string())
        .collect();
    ips.sort();
    let ep = eventually(T, "3 endpoint addresses", || {
        let ep = c.json(&["get", "endpoints", "web"]);
        let n = ep["subsets"][0]["addresses"].as_array().map_or(0, Vec::len);
        (n == 3).then_some(ep)
    });
    let mut got: Vec<String> = ep["subsets"][0]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["ip"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, ips);
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], 8080);
    let slices = c.items(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]);
    assert_eq!(slices.len(), 1);
    assert_eq!(slices[0]["endpoints"].as_array().unwrap().len(), 3);
    assert_eq!(slices[0]["ports"][0]["port"], 8080);
    let out = c.ok(&["get", "endpoints", "web"]);
    assert!(out.contains(":8080"), "{out}");
    // Scaling down shrinks the endpoints.
    c.ok(&["scale", "deployment/web", "--replicas=1"]);
    eventually(T, "1 endpoint address", || {
        let ep = c.json(&["get", "endpoints", "web"]);
        (ep["subsets"][0]["addresses"].as_array().map_or(0, Vec::len) == 1).then_some(())
    });
}
