//! What happens inside and around a pod on a real node: probes (liveness restarts, readiness
//! keeps a pod out of its Service, a startup probe holds liveness back), the OOM killer under
//! a memory limit, every volume kind seen from inside the container (including a projected
//! service-account token used against the API), and image GC when the node's disk fills up. Each test runs its
//! own one-node cluster (server with controllers, a registry mirror, one agent in a netns).
//!
//! Needs root, busybox-static, nginx-light, docker-registry and skopeo; without them the tests
//! say so and pass without running.

use std::time::Duration;

use skiff_tests::eventually;
use skiff_tests::nodes::{Cluster, ClusterOptions, busybox_pod, can_run_agents};

/// The pod's log (of container `c`) once it printed `DONE`.
fn logs_once_done(c: &Cluster, pod: &str) -> String {
    eventually(
        Duration::from_secs(60),
        &format!("{pod} printed DONE"),
        || {
            let out = c.server.kubectl(&["logs", pod, "-c", "c"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains("DONE").then_some(text)
        },
    )
}

/// The value of the `KEY=value` line the pod printed for `key`.
fn field(c: &Cluster, logs: &str, key: &str) -> String {
    logs.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} in {logs}\n{}", c.agent_logs()))
        .to_string()
}

fn one_node() -> Cluster {
    Cluster::start(ClusterOptions::default())
}

#[test]
fn probes_restart_gate_and_hold_back_pods() {
    if !can_run_agents() {
        return;
    }
    let c = one_node();
    let node = c.agents[0].name.clone();

    // Liveness (httpGet from the node to the pod IP): healthy for a few seconds, then 404.
    let serve = "mkdir -p /tmp/www && echo ok > /tmp/www/healthz && httpd -p 8080 -h /tmp/www \
                 && sleep 4 && rm /tmp/www/healthz && sleep 3600";
    let liveness = "    livenessProbe:\n      httpGet: {path: /healthz, port: 8080}\n      initialDelaySeconds: 1\n      periodSeconds: 1\n      failureThreshold: 2\n";
    c.apply(&busybox_pod("live", &node, serve, "", liveness));

    // Readiness never passes: Running, READY 0/1, and only a not-ready endpoint.
    let readiness =
        "    readinessProbe:\n      exec: {command: [cat, /tmp/ready]}\n      periodSeconds: 1\n";
    c.apply(&busybox_pod("unready", &node, "sleep 3600", "", readiness));
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: unready}\nspec:\n  selector: {app: unready}\n  ports: [{port: 80}]\n",
    );

    // A startup probe that passes after ~5 s holds back a liveness probe that would fail
    // until then.
    let slow = "sleep 5; touch /tmp/started; sleep 3600";
    let startup = "    startupProbe:\n      exec: {command: [cat, /tmp/started]}\n      periodSeconds: 1\n      failureThreshold: 30\n    livenessProbe:\n      exec: {command: [cat, /tmp/started]}\n      periodSeconds: 1\n      failureThreshold: 1\n";
    c.apply(&busybox_pod("slow", &node, slow, "", startup));

    eventually(
        Duration::from_secs(60),
        "live restarted by its liveness probe",
        || {
            let cs = c.container_status("live");
            (cs["restartCount"].as_u64()? >= 1).then_some(())
        },
    );
    c.wait_event(
        "live",
        "Unhealthy",
        "Liveness probe failed: HTTP probe failed with statuscode: 404",
        Duration::from_secs(5),
    );
    c.wait_event(
        "live",
        "Killing",
        "failed liveness probe, will be restarted",
        Duration::from_secs(5),
    );

    let row = c.pod_row("unready");
    assert_eq!(&row[1..3], ["0/1", "Running"], "{row:?}");
    let st = c.pod_status("unready");
    let ready = st["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["status"], "False", "{st}");
    let ip = st["podIP"].as_str().expect("pod IP").to_owned();
    eventually(
        Duration::from_secs(20),
        "unready listed as a not-ready endpoint",
        || {
            let ep = c.server.get_json(&["get", "endpoints", "unready"]);
            let subset = &ep["subsets"][0];
            (subset["notReadyAddresses"][0]["ip"] == ip.as_str()
                && subset["addresses"].as_array().is_none_or(Vec::is_empty))
            .then_some(())
        },
    );
    c.wait_event(
        "unready",
        "Unhealthy",
        "Readiness probe failed",
        Duration::from_secs(5),
    );

    // The readiness probe keeps failing once a second: one event, its count going up.
    eventually(
        Duration::from_secs(20),
        "one Unhealthy event counting up",
        || {
            let all = c.server.get_json(&["get", "events"]);
            let mine: Vec<&serde_json::Value> = all["items"]
                .as_array()?
                .iter()
                .filter(|e| e["involvedObject"]["name"] == "unready" && e["reason"] == "Unhealthy")
                .collect();
            (mine.len() == 1 && mine[0]["count"].as_i64()? >= 3).then_some(())
        },
    );

    eventually(Duration::from_secs(30), "slow started", || {
        let cs = c.container_status("slow");
        (cs["started"] == true && cs["ready"] == true).then_some(cs)
    });
    std::thread::sleep(Duration::from_secs(2));
    let cs = c.container_status("slow");
    assert_eq!(cs["restartCount"], 0, "liveness ran before startup: {cs}");
    assert!(
        !c.events_of("slow")
            .iter()
            .any(|e| e.contains("Liveness probe failed")),
        "{:?}",
        c.events_of("slow")
    );
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed() {
    if !can_run_agents() {
        return;
    }
    let c = one_node();
    let node = c.agents[0].name.clone();
    // The shell keeps the whole command substitution (100 MB) in memory.
    let hog = "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived ${#x}";
    let limits = "    resources:\n      limits: {memory: 32Mi}\n";
    c.apply(&busybox_pod(
        "hog",
        &node,
        hog,
        "  restartPolicy: Never\n",
        limits,
    ));
    let cs = eventually(Duration::from_secs(60), "hog terminated", || {
        let cs = c.container_status("hog");
        cs["state"]["terminated"].is_object().then_some(cs)
    });
    let t = &cs["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{cs}\n{}", c.agent_logs());
    assert_eq!(t["exitCode"], 137, "{cs}");
    let row = c.pod_row("hog");
    assert_eq!(row[2], "OOMKilled", "{row:?}");
    assert_eq!(c.pod_status("hog")["phase"], "Failed");
}

#[test]
fn volumes_are_visible_inside() {
    if !can_run_agents() {
        return;
    }
    let c = one_node();
    let node = c.agents[0].name.clone();
    let host = c.temp.path().join("hostdir");
    std::fs::create_dir_all(&host).expect("host dir");
    std::fs::write(host.join("from-host"), "written on the host\n").expect("host file");
    c.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {greeting: hello-config, nested: deep-config}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: sec}\nstringData: {password: s3cret}\n",
    );
    let script = [
        "cat /cfg/greeting; echo",
        "cat /cfg/sub/nested; echo",
        "cat /sec/password; echo",
        "cat /scratch/from-init",
        "grep ' /sec ' /proc/mounts | cut -d' ' -f3 | sed 's/^/sec-fs=/'",
        "grep ' /mem ' /proc/mounts | cut -d' ' -f3 | sed 's/^/mem-fs=/'",
        "echo in-memory > /mem/x && cat /mem/x",
        "cat /info/name; echo",
        "cat /info/labels; echo",
        "cat /host/from-host",
        "echo from-pod > /host/from-pod",
        "echo via-subpath > /sp/file",
        "echo DONE",
        "sleep 3600",
    ]
    .join("; ");
    let pod = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: vols, labels: {{app: vols, tier: test}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  volumes:
  - name: cfg
    configMap:
      name: cfg
      items: [{{key: greeting, path: greeting}}, {{key: nested, path: sub/nested}}]
  - {{name: sec, secret: {{secretName: sec}}}}
  - {{name: scratch, emptyDir: {{}}}}
  - {{name: mem, emptyDir: {{medium: Memory}}}}
  - name: info
    downwardAPI:
      items:
      - {{path: name, fieldRef: {{fieldPath: metadata.name}}}}
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
  - name: host
    hostPath: {{path: {host}, type: Directory}}
  initContainers:
  - name: init
    image: busybox
    command: [sh, -c, 'echo from the init container > /scratch/from-init']
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
  containers:
  - name: c
    image: busybox
    command: [sh, -c, {script:?}]
    volumeMounts:
    - {{name: cfg, mountPath: /cfg}}
    - {{name: sec, mountPath: /sec, readOnly: true}}
    - {{name: scratch, mountPath: /scratch}}
    - {{name: mem, mountPath: /mem}}
    - {{name: info, mountPath: /info}}
    - {{name: host, mountPath: /host}}
    - {{name: host, mountPath: /sp, subPath: sub/dir}}
",
        host = host.display()
    );
    c.apply(&pod);
    let logs = logs_once_done(&c, "vols");
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(
        lines,
        [
            "hello-config",
            "deep-config",
            "s3cret",
            "from the init container",
            "sec-fs=tmpfs",
            "mem-fs=tmpfs",
            "in-memory",
            "vols",
            "app=\"vols\"",
            "tier=\"test\"",
            "written on the host",
            "DONE",
        ],
        "{logs}"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("from-pod")).unwrap_or_default(),
        "from-pod\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("sub/dir/file")).unwrap_or_default(),
        "via-subpath\n"
    );
    let init = &c.pod_status("vols")["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["reason"], "Completed", "{init}");
    // The pod's volumes go away with it (the hostPath stays).
    let agent_data = c.agents[0].data.clone();
    c.server.ok(&["delete", "pod", "vols", "--wait=true"]);
    eventually(Duration::from_secs(10), "pod state removed", || {
        let left = std::fs::read_dir(agent_data.join("pods"))
            .map(|d| d.count())
            .unwrap_or(0);
        (left == 0).then_some(())
    });
    assert!(host.join("from-host").exists());
}

/// The kube-api-access volume real clusters inject: a bound service-account token, the
/// cluster CA from `kube-root-ca.crt` and the namespace, projected into one directory written
/// through `..data`. The token works against the API server as the pod's service account.
#[test]
fn projected_service_account_token_authenticates_the_pod() {
    if !can_run_agents() {
        return;
    }
    let c = one_node();
    let node = c.agents[0].name.clone();
    eventually(Duration::from_secs(30), "default SA and root CA", || {
        (c.server.kubectl(&["get", "sa", "default"]).status.success()
            && c.server
                .kubectl(&["get", "cm", "kube-root-ca.crt"])
                .status
                .success())
        .then_some(())
    });
    let dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let script = format!(
        "cd {dir}; echo TOKEN=$(cat token); echo NS=$(cat namespace); \
         echo DATA=$(readlink ..data | cut -c1-4); echo LINK=$(readlink token); \
         echo MODE=$(stat -c %a ..data/token); \
         echo CA=$(grep -c 'BEGIN CERTIFICATE' ca.crt); echo DONE; sleep 3600"
    );
    let volume = "  volumes:
  - name: kube-api-access
    projected:
      sources:
      - serviceAccountToken: {expirationSeconds: 3607, path: token}
      - configMap:
          name: kube-root-ca.crt
          items: [{key: ca.crt, path: ca.crt}]
      - downwardAPI:
          items:
          - {path: namespace, fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}}
";
    let mount = format!(
        "    volumeMounts: [{{name: kube-api-access, mountPath: {dir}, readOnly: true}}]\n"
    );
    c.apply(&busybox_pod("sa", &node, &script, volume, &mount));
    let logs = logs_once_done(&c, "sa");
    assert_eq!(field(&c, &logs, "NS"), "default");
    assert_eq!(
        field(&c, &logs, "DATA"),
        "..20",
        "..data names a timestamped dir"
    );
    assert_eq!(field(&c, &logs, "LINK"), "..data/token");
    assert_eq!(field(&c, &logs, "MODE"), "644", "the API's defaultMode");
    assert_eq!(field(&c, &logs, "CA"), "1");
    let token = field(&c, &logs, "TOKEN");
    let flag = format!("--token={token}");
    let who = c
        .server
        .ok(&[flag.as_str(), "auth", "whoami", "-o", "json"]);
    let who: serde_json::Value = serde_json::from_str(&who).expect("whoami json");
    let info = &who["status"]["userInfo"];
    assert_eq!(info["username"], "system:serviceaccount:default:default");
    assert_eq!(
        info["extra"]["authentication.kubernetes.io/pod-name"],
        serde_json::json!(["sa"])
    );
    assert_eq!(
        info["extra"]["authentication.kubernetes.io/node-name"],
        serde_json::json!([node])
    );
    let uid = c
        .server
        .ok(&["get", "pod", "sa", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(
        info["extra"]["authentication.kubernetes.io/pod-uid"],
        serde_json::json!([uid])
    );
    // The token reads the API; once the pod is gone it no longer does.
    assert!(
        c.server
            .ok(&[flag.as_str(), "get", "pods", "-o", "name"])
            .contains("pod/sa")
    );
    c.server.ok(&["delete", "pod", "sa", "--wait=true"]);
    let out = c.server.kubectl(&[flag.as_str(), "get", "pods"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unauthorized"));
}

/// A pod that declares nothing gets the ServiceAccount admission's `kube-api-access-XXXXX`
/// volume: in-cluster config files are there and the token is the `default` account's.
#[test]
fn an_unannotated_pod_gets_its_service_account_token() {
    if !can_run_agents() {
        return;
    }
    let c = one_node();
    let node = c.agents[0].name.clone();
    eventually(Duration::from_secs(30), "root CA config map", || {
        c.server
            .kubectl(&["get", "cm", "kube-root-ca.crt"])
            .status
            .success()
            .then_some(())
    });
    let script = "d=/var/run/secrets/kubernetes.io/serviceaccount; echo TOKEN=$(cat $d/token); \
                  echo NS=$(cat $d/namespace); echo CA=$(grep -c 'BEGIN CERTIFICATE' $d/ca.crt); \
                  echo HOST=${KUBERNETES_SERVICE_HOST:-unset}; echo DONE; sleep 3600";
    c.apply(&busybox_pod("plain", &node, script, "", ""));
    let logs = logs_once_done(&c, "plain");
    assert_eq!(field(&c, &logs, "NS"), "default");
    assert_eq!(field(&c, &logs, "CA"), "1");
    // Not checked: the agent does not set the `kubernetes` Service's environment
    // (KUBERNETES_SERVICE_HOST/PORT) yet, and no service proxy makes its cluster IP reachable
    // from pods either; HOST= in the logs shows what the pod saw.
    let flag = format!("--token={}", field(&c, &logs, "TOKEN"));
    let who = c
        .server
        .ok(&[flag.as_str(), "auth", "whoami", "-o", "json"]);
    let who: serde_json::Value = serde_json::from_str(&who).expect("whoami json");
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "system:serviceaccount:default:default"
    );
    assert_eq!(
        who["status"]["userInfo"]["extra"]["authentication.kubernetes.io/pod-name"],
        serde_json::json!(["plain"])
    );
    c.server.ok(&["delete", "pod", "plain", "--wait=true"]);
}

/// `df` of `path`: (size, used) in bytes.
fn df(path: &std::path::Path) -> (u64, u64) {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=size,used"])
        .arg(path)
        .output()
        .expect("df");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let nums: Vec<u64> = text
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(nums.len(), 2, "df output: {text}");
    (nums[0], nums[1])
}

/// The node's DiskPressure condition status.
fn disk_pressure(c: &Cluster, node: &str) -> String {
    c.server.ok(&[
        "get",
        "node",
        node,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"DiskPressure\")].status}",
    ])
}

/// Image GC on a node whose data directory is a small tmpfs: filling it past the high-water
/// mark removes the image no pod uses, and since that cannot free enough the node reports
/// DiskPressure with a FreeDiskSpaceFailed event; freeing the space clears the condition.
#[test]
fn full_image_filesystem_collects_unused_images_and_reports_disk_pressure() {
    if !can_run_agents() {
        return;
    }
    let mut c = one_node();
    let node = c.agents[0].name.clone();
    let data = c.agents[0].data.clone();
    // Restart the agent on an empty 64 MiB tmpfs (the Agent fixture unmounts it on drop).
    c.agents[0].kill();
    std::fs::create_dir_all(&data).expect("data dir");
    assert!(skiff_tests::nodes::run(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=64m",
        "tmpfs",
        &data.display().to_string(),
    ]));
    c.agents[0].spawn();
    c.wait_nodes_ready();
    // Pull nginx through a pod, then delete the pod: the image stays, unused.
    c.apply(
        &busybox_pod("user", &node, "sleep 3600", "", "").replace("image: busybox", "image: nginx"),
    );
    eventually(Duration::from_secs(60), "nginx pod running", || {
        (c.pod_status("user")["phase"] == "Running").then_some(())
    });
    c.server
        .ok(&["delete", "pod", "user", "--grace-period=1", "--wait=true"]);
    let record = |name: &str| {
        std::fs::read_dir(data.join("images/records"))
            .map(|d| {
                d.flatten().any(|e| {
                    std::fs::read_to_string(e.path())
                        .is_ok_and(|t| t.contains(&format!("library/{name}:")))
                })
            })
            .unwrap_or(false)
    };
    assert!(record("nginx"), "nginx is in the store");
    assert_eq!(disk_pressure(&c, &node), "False");
    // Fill the filesystem to 95%.
    let (size, used) = df(&data);
    let filler = data.join("filler");
    let want = size * 95 / 100 - used;
    assert!(skiff_tests::nodes::run(&[
        "fallocate",
        "-l",
        &want.to_string(),
        &filler.display().to_string(),
    ]));
    let event = eventually(Duration::from_secs(40), "FreeDiskSpaceFailed", || {
        c.events_of(&node)
            .into_iter()
            .find(|e| e.starts_with("FreeDiskSpaceFailed: "))
    });
    assert!(event.contains("Attempted to free"), "{event}");
    assert!(!record("nginx"), "the unused image was removed");
    eventually(Duration::from_secs(40), "DiskPressure=True", || {
        (disk_pressure(&c, &node) == "True").then_some(())
    });
    std::fs::remove_file(&filler).expect("remove filler");
    eventually(Duration::from_secs(40), "DiskPressure=False", || {
        (disk_pressure(&c, &node) == "False").then_some(())
    });
}
