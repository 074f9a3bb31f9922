//! `skiff server` (with its controllers) and two `skiff agent`s, each agent in its own network
//! namespace made here (two "hosts" on a bridge), pulling `docker.io` images through a mirror
//! (Debian's `docker-registry` on the bridge) and driven by stock kubectl: a deployment of
//! nginx spreads over both nodes, pods talk across nodes by pod IP, `kubectl logs -f` follows
//! the access log, a crashing container restarts with back-off, a preStop hook runs before a
//! deleted pod stops within its grace period, and an agent restart leaves containers alone.
//!
//! Needs root, busybox-static, nginx-light, docker-registry and skopeo; without them the test
//! says so and passes without running.

use std::io::BufRead;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::eventually;
use skiff_tests::images::NGINX_INDEX;
use skiff_tests::nodes::{Cluster, ClusterOptions, busybox_pod, can_run_agents};

/// Running and Ready pods labelled `app=web`: (name, node, pod IP).
fn ready_web_pods(c: &Cluster) -> Vec<(String, String, String)> {
    let list = c.server.get_json(&["get", "pods", "-l", "app=web"]);
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|p| {
                    p["status"]["phase"] == "Running"
                        && p["status"]["conditions"].as_array().is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        })
                })
                .filter_map(|p| {
                    Some((
                        p["metadata"]["name"].as_str()?.to_owned(),
                        p["spec"]["nodeName"].as_str()?.to_owned(),
                        p["status"]["podIP"].as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Follow `kubectl logs -f pod` until a line contains `needle` (or `timeout` passes); the
/// kubectl child is killed either way. Returns the matching line.
/// Follows `kubectl logs -f POD` until a line contains `needle`; `attached` runs once the first
/// line arrived (the stream is then known to be attached).
fn follow_logs_until(
    c: &Cluster,
    pod: &str,
    needle: &str,
    timeout: Duration,
    attached: impl FnOnce(),
) -> Option<String> {
    let mut child = c
        .server
        .kubectl_cmd(&["logs", "-f", pod])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut found = None;
    let mut attached = Some(attached);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let line = rx.recv_timeout(left);
        if line.is_ok()
            && let Some(run) = attached.take()
        {
            run();
        }
        match line {
            Ok(line) if line.contains(needle) => {
                found = Some(line);
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    found
}

#[test]
fn a_deployment_spreads_over_two_nodes_and_pods_talk_across_them() {
    if !can_run_agents() {
        return;
    }
    let mut c = Cluster::start(ClusterOptions {
        nodes: 2,
        ..ClusterOptions::default()
    });
    let (na, nb) = (c.agents[0].name.clone(), c.agents[1].name.clone());
    let lease = c
        .server
        .get_json(&["get", "lease", "-n", "kube-node-lease", &na]);
    assert_eq!(lease["spec"]["holderIdentity"], na.as_str());

    // Started first: its back-off takes a while.
    c.apply(&busybox_pod("crash", &na, "echo bye; exit 3", "", ""));

    // nginx, resolved through the docker.io mirror, one replica per node.
    c.server.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=2",
    ]);
    let web = eventually(
        Duration::from_secs(90),
        "two Ready nginx pods, one per node",
        || {
            let pods = ready_web_pods(&c);
            (pods.len() == 2 && pods[0].1 != pods[1].1).then_some(pods)
        },
    );
    let (web_b, _, web_b_ip) = web
        .iter()
        .find(|p| p.1 == nb)
        .cloned()
        .expect("a web pod on node b");
    let cs = c.container_status(&web_b);
    assert_eq!(cs["ready"], true);
    assert!(
        cs["imageID"]
            .as_str()
            .is_some_and(|i| i.starts_with("docker.io/library/nginx@sha256:")),
        "{cs}"
    );
    let table = c.server.ok(&["get", "pods", "-o", "wide"]);
    assert!(table.contains(&web_b_ip) && table.contains(&nb), "{table}");

    // A busybox pod on node A fetches the page from node B's nginx by pod IP.
    let fetch = format!("while true; do wget -q -O - http://{web_b_ip}/; sleep 1; done");
    c.apply(&busybox_pod("client", &na, &fetch, "", ""));
    eventually(
        Duration::from_secs(40),
        "client fetched the nginx page across nodes",
        || {
            let out = c.server.kubectl(&["logs", "client", "--tail=5"]);
            String::from_utf8_lossy(&out.stdout)
                .contains(NGINX_INDEX.trim())
                .then_some(())
        },
    );
    // ...and `kubectl logs -f` on that nginx pod shows the access log line.
    let line = follow_logs_until(
        &c,
        &web_b,
        "\"GET / HTTP/1.1\" 200",
        Duration::from_secs(20),
        || {},
    );
    let line = line.unwrap_or_else(|| panic!("no access log line from kubectl logs -f {web_b}"));
    assert!(line.starts_with("10.244."), "client pod IP first: {line}");

    // Deleting the nginx pod on node A stops it with the image's StopSignal (SIGQUIT: nginx
    // shuts down gracefully and says so on stderr, which `kubectl logs -f` is following).
    let (web_a, _, _) = web
        .iter()
        .find(|p| p.1 == na)
        .cloned()
        .expect("a web pod on node a");
    // The delete starts once `kubectl logs -f` printed nginx's start-up lines (it is attached).
    let mut deleted = None;
    let line = follow_logs_until(
        &c,
        &web_a,
        "(SIGQUIT) received",
        Duration::from_secs(30),
        || {
            deleted = Some(c.server.kubectl(&["delete", "pod", &web_a, "--wait=false"]));
        },
    );
    let deleted = deleted.expect("kubectl logs -f printed nothing");
    assert!(deleted.status.success(), "kubectl delete pod: {deleted:?}");
    assert!(line.is_some(), "nginx was not stopped with SIGQUIT");

    // The crashing container restarts with back-off; RESTARTS counts up.
    eventually(
        Duration::from_secs(60),
        "crash restarted twice, in CrashLoopBackOff",
        || {
            let row = c.pod_row("crash");
            let restarts: u32 = row.get(3)?.parse().ok()?;
            (restarts >= 2 && row.get(2)? == "CrashLoopBackOff").then_some(())
        },
    );
    let cs = c.container_status("crash");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(cs["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(c.server.ok(&["logs", "crash", "--previous"]).trim(), "bye");
    c.wait_event(
        "crash",
        "BackOff",
        "Back-off restarting failed container",
        Duration::from_secs(5),
    );

    // Killing the agent leaves running containers alone; a new agent adopts them.
    let before = c.container_status("client");
    c.agents[0].kill();
    std::thread::sleep(Duration::from_secs(2));
    c.agents[0].spawn();
    std::thread::sleep(Duration::from_secs(4));
    let after = c.container_status("client");
    assert_eq!(after["containerID"], before["containerID"]);
    assert_eq!(after["restartCount"], before["restartCount"]);
    assert_eq!(
        after["state"]["running"]["startedAt"],
        before["state"]["running"]["startedAt"]
    );
    let out = c.server.kubectl(&["logs", "client", "--tail=2"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(NGINX_INDEX.trim()));

    // Deleting a pod runs its preStop hook (it writes into a hostPath), then stops it within
    // its grace period (3 s; `sh` as PID 1 ignores SIGTERM, so it takes the SIGKILL).
    let host_dir = c.temp.path().join("host");
    std::fs::create_dir_all(&host_dir).expect("host dir");
    let volume = format!(
        "  volumes:\n  - name: host\n    hostPath: {{path: {}, type: Directory}}\n",
        host_dir.display()
    );
    let hook = "    volumeMounts:\n    - {name: host, mountPath: /host}\n    lifecycle:\n      preStop:\n        exec:\n          command: [\"sh\", \"-c\", \"echo stopping $HOSTNAME > /host/prestop\"]\n";
    c.apply(&busybox_pod("stopper", &nb, "sleep 3600", &volume, hook));
    eventually(Duration::from_secs(30), "stopper Running", || {
        (c.pod_status("stopper")["phase"] == "Running").then_some(())
    });
    let t0 = Instant::now();
    c.server.ok(&["delete", "pod", "stopper", "--wait=true"]);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(10), "delete took {took:?}");
    assert_eq!(
        std::fs::read_to_string(host_dir.join("prestop")).unwrap_or_default(),
        "stopping stopper\n",
        "preStop hook output"
    );
    let t0 = Instant::now();
    c.server.ok(&["delete", "pod", "client", "--wait=true"]);
    assert!(t0.elapsed() < Duration::from_secs(10));

    let events: Value = c.server.get_json(&["get", "events"]);
    let reasons: Vec<&str> = events["items"]
        .as_array()
        .map(|i| i.iter().filter_map(|e| e["reason"].as_str()).collect())
        .unwrap_or_default();
    for reason in [
        "Pulled",
        "Created",
        "Started",
        "Killing",
        "BackOff",
        "Scheduled",
    ] {
        assert!(
            reasons.contains(&reason),
            "no {reason} event in {reasons:?}"
        );
    }
    c.server.ok(&["delete", "deployment", "web"]);
    c.server.ok(&["delete", "pod", "crash", "--wait=true"]);
}
