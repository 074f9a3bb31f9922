//! `skiff server` and two `skiff agent`s, each agent in its own network namespace made here
//! (two "hosts" on a bridge), driven by stock kubectl: pods run, get IPs, talk across nodes,
//! log, restart with back-off, die within their grace period, and survive an agent restart.
//!
//! Needs root (namespaces, mounts, cgroups, netlink) and Debian's busybox-static; without them
//! the test says so and passes without running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::{Server, eventually, skiff_bin};

const BUSYBOX: &str = "/bin/busybox";

fn run(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Two network namespaces joined by a bridge in the test's namespace; removed on drop.
struct Hosts {
    bridge: String,
    netns: Vec<String>,
    subnet: u8,
}

impl Hosts {
    fn new(tag: u32, count: usize) -> Self {
        let subnet = u8::try_from(100 + tag % 100).unwrap_or(177);
        let bridge = format!("skbr{tag}");
        assert!(
            run(&["ip", "link", "add", &bridge, "type", "bridge"]),
            "make bridge"
        );
        assert!(run(&[
            "ip",
            "addr",
            "add",
            &format!("192.168.{subnet}.1/24"),
            "dev",
            &bridge
        ]));
        assert!(run(&["ip", "link", "set", &bridge, "up"]));
        let mut netns = Vec::new();
        for i in 0..count {
            let ns = format!("skh{tag}x{i}");
            let host_end = format!("skv{tag}x{i}");
            assert!(run(&["ip", "netns", "add", &ns]), "make netns");
            assert!(run(&[
                "ip", "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns",
                &ns
            ]));
            assert!(run(&[
                "ip", "link", "set", &host_end, "master", &bridge, "up"
            ]));
            let addr = format!("192.168.{subnet}.{}/24", i + 2);
            assert!(run(&["ip", "-n", &ns, "addr", "add", &addr, "dev", "eth0"]));
            assert!(run(&["ip", "-n", &ns, "link", "set", "eth0", "up"]));
            assert!(run(&["ip", "-n", &ns, "link", "set", "lo", "up"]));
            netns.push(ns);
        }
        Self {
            bridge,
            netns,
            subnet,
        }
    }

    fn server_ip(&self) -> String {
        format!("192.168.{}.1", self.subnet)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in &self.netns {
            run(&["ip", "netns", "del", ns]);
        }
        run(&["ip", "link", "del", &self.bridge]);
    }
}

/// A `skiff agent` in a network namespace.
struct Agent {
    child: Option<Child>,
    netns: String,
    name: String,
    kubeconfig: PathBuf,
    data: PathBuf,
    images: PathBuf,
    log: PathBuf,
}

impl Agent {
    fn start(netns: &str, name: &str, kubeconfig: &Path, data: PathBuf, images: &Path) -> Self {
        let mut a = Self {
            child: None,
            netns: netns.into(),
            name: name.into(),
            kubeconfig: kubeconfig.into(),
            log: data.with_extension("log"),
            data,
            images: images.into(),
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("agent log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(skiff_bin())
            .args(["agent", "--node-name", &self.name, "--kubeconfig"])
            .arg(&self.kubeconfig)
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--local-images")
            .arg(&self.images)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn agent");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kill whatever containers are left (the agent leaves them running by design).
    fn kill_containers(&self) {
        let Ok(pods) = std::fs::read_dir(self.data.join("pods")) else {
            return;
        };
        for pod in pods.flatten() {
            let Ok(ctrs) = std::fs::read_dir(pod.path().join("containers")) else {
                continue;
            };
            for c in ctrs.flatten() {
                for attempt in std::fs::read_dir(c.path()).into_iter().flatten().flatten() {
                    if let Ok(b) = std::fs::read(attempt.path().join("meta.json"))
                        && let Ok(v) = serde_json::from_slice::<Value>(&b)
                    {
                        for key in ["pid", "shimPid"] {
                            if let Some(pid) = v[key].as_i64().filter(|p| *p > 1) {
                                run(&["kill", "-9", &pid.to_string()]);
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        self.kill_containers();
        std::thread::sleep(Duration::from_millis(300));
        // Unmount what the pods left (namespace files, overlays, tmpfs volumes).
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = self.data.display().to_string();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            run(&["umount", "-l", p]);
        }
    }
}

fn busybox_image(dir: &Path) {
    let root = dir.join("busybox");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "www"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
    for applet in [
        "sh", "sleep", "echo", "cat", "wget", "httpd", "true", "false", "hostname", "ls",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("applet");
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(root.join("www/index.html"), "hello from node b\n").expect("index");
}

fn pod(name: &str, node: &str, extra: &str, command: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {name}}}}}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 3\n{extra}  containers:\n  - name: c\n    image: busybox\n    command: [\"sh\", \"-c\", {command:?}]\n"
    )
}

fn status(s: &Server, name: &str) -> Value {
    s.get_json(&["get", "pod", name])["status"].clone()
}

#[test]
fn two_nodes_run_pods_over_a_flat_network() {
    let root = nix_uid_is_root();
    if !root || !Path::new(BUSYBOX).exists() || !run(&["which", "nft"]) {
        eprintln!("skipping: needs root, {BUSYBOX} (busybox-static) and nft");
        return;
    }
    let tag = std::process::id() % 1000;
    let hosts = Hosts::new(tag, 2);
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start_with(
        &temp.path().join("server"),
        &format!("{}:0", hosts.server_ip()),
    );
    let images = temp.path().join("images");
    busybox_image(&images);
    let (na, nb) = (format!("node-a{tag}"), format!("node-b{tag}"));
    let mut agent_a = Agent::start(
        &hosts.netns[0],
        &na,
        &server.kubeconfig,
        temp.path().join("a"),
        &images,
    );
    let _agent_b = Agent::start(
        &hosts.netns[1],
        &nb,
        &server.kubeconfig,
        temp.path().join("b"),
        &images,
    );

    // Both nodes register, get pod CIDRs and report Ready.
    eventually(Duration::from_secs(30), "two Ready nodes", || {
        let nodes = server.get_json(&["get", "nodes"]);
        let ready = nodes["items"].as_array()?.iter().filter(|n| {
            n["spec"]["podCIDR"].is_string()
                && n["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        });
        (ready.count() == 2).then_some(())
    });
    let lease = server.get_json(&["get", "lease", "-n", "kube-node-lease", &na]);
    assert_eq!(lease["spec"]["holderIdentity"], na.as_str());

    // A web server on node B, fetched by pod IP from node A.
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod("web", &nb, "", "httpd -f -vv -p 80 -h /www"),
    );
    let web_ip = eventually(Duration::from_secs(30), "web Running with an IP", || {
        let st = status(&server, "web");
        (st["phase"] == "Running").then(|| st["podIP"].as_str().map(str::to_owned))?
    });
    let fetch = format!("while true; do wget -q -O - http://{web_ip}/index.html; sleep 1; done");
    server.ok_stdin(&["apply", "-f", "-"], &pod("client", &na, "", &fetch));
    eventually(
        Duration::from_secs(30),
        "client fetched the page across nodes",
        || {
            let out = server.kubectl(&["logs", "client", "--tail=5"]);
            String::from_utf8_lossy(&out.stdout)
                .contains("hello from node b")
                .then_some(())
        },
    );
    // The server's access log shows up through `kubectl logs` (httpd -vv logs to stderr).
    eventually(Duration::from_secs(20), "web access log", || {
        let out = server.kubectl(&["logs", "web"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("url:/index.html")
            .then_some(())
    });
    let table = server.ok(&["get", "pods", "-o", "wide"]);
    assert!(table.contains(&web_ip) && table.contains(&nb), "{table}");

    // A container that exits is restarted with back-off; RESTARTS counts up.
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod("crash", &na, "", "echo bye; exit 3"),
    );
    eventually(
        Duration::from_secs(40),
        "crash restarted into CrashLoopBackOff",
        || {
            let cs = status(&server, "crash")["containerStatuses"][0].clone();
            (cs["restartCount"].as_u64()? >= 1 && cs["lastState"]["terminated"]["exitCode"] == 3)
                .then_some(())
        },
    );
    let prev = server.ok(&["logs", "crash", "--previous"]);
    assert_eq!(prev.trim(), "bye");

    // Killing the agent leaves running containers alone; a new agent adopts them.
    let before = status(&server, "client")["containerStatuses"][0].clone();
    agent_a.kill();
    std::thread::sleep(Duration::from_secs(2));
    agent_a.spawn();
    std::thread::sleep(Duration::from_secs(4));
    let after = status(&server, "client")["containerStatuses"][0].clone();
    assert_eq!(after["containerID"], before["containerID"]);
    assert_eq!(after["restartCount"], before["restartCount"]);
    assert_eq!(
        after["state"]["running"]["startedAt"],
        before["state"]["running"]["startedAt"]
    );

    // Deleting a pod stops it within its grace period (3 s; sh ignores SIGTERM as PID 1).
    let t0 = Instant::now();
    server.ok(&["delete", "pod", "client", "--wait=true"]);
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "delete took {:?}",
        t0.elapsed()
    );
    let events = server.ok(&["get", "events"]);
    for reason in ["Pulled", "Created", "Started", "Killing", "BackOff"] {
        assert!(events.contains(reason), "no {reason} event in\n{events}");
    }
    server.ok(&["delete", "pod", "web", "crash", "--wait=true"]);
}

fn nix_uid_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
