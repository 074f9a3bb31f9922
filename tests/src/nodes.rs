//! Node fixtures for the agent end-to-end tests: "hosts" (network namespaces joined by a
//! bridge in the test's namespace), `skiff agent`s running in them, and [`Cluster`], which puts
//! a `skiff server` (with controllers), a registry the agents reach through their
//! `--registry-mirror`, and the agents together.
//!
//! Everything is torn down on drop, failed test or not: agents and the containers they leave
//! running, mounts under their data directories, their cgroups, the registry, the server, the
//! network namespaces and the bridge.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::images::{Registry, busybox_image, nginx_image};
use crate::{Server, eventually, skiff_bin};

/// Run a command quietly; whether it succeeded.
pub fn run(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the tests run as root (namespaces, mounts, cgroups and netlink need it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Whether this machine can run the agent end-to-end tests; prints why not.
pub fn can_run_agents() -> bool {
    let missing: Vec<&str> = [
        "/bin/busybox",
        "/usr/sbin/nginx",
        "/usr/bin/docker-registry",
        "/usr/bin/skopeo",
    ]
    .into_iter()
    .filter(|p| !Path::new(p).exists())
    .collect();
    if !is_root() || !missing.is_empty() {
        eprintln!("skipping: needs root and {missing:?}");
        return false;
    }
    true
}

/// A tag unique to this test in this process, for names of links, namespaces and nodes.
fn unique_tag() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    (std::process::id() % 1000) * 10 + NEXT.fetch_add(1, Ordering::SeqCst) % 10
}

/// Network namespaces joined by a bridge in the test's namespace; removed on drop.
pub struct Hosts {
    pub tag: u32,
    bridge: String,
    pub netns: Vec<String>,
    subnet: u8,
}

impl Hosts {
    pub fn new(count: usize) -> Self {
        let tag = unique_tag();
        let bridge = format!("skbr{tag}");
        assert!(
            run(&["ip", "link", "add", &bridge, "type", "bridge"]),
            "make bridge {bridge}"
        );
        // A /24 nobody on this machine uses (other test runs may be going on in parallel).
        let mut subnet = None;
        for i in 0..150u32 {
            let candidate = u8::try_from(100 + (tag + i * 7) % 150).unwrap_or(177);
            let used = Command::new("ip")
                .args(["-o", "-4", "addr", "show"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            if used.contains(&format!("192.168.{candidate}.")) {
                continue;
            }
            if run(&[
                "ip",
                "addr",
                "add",
                &format!("192.168.{candidate}.1/24"),
                "dev",
                &bridge,
            ]) {
                subnet = Some(candidate);
                break;
            }
        }
        let mut hosts = Self {
            tag,
            bridge,
            netns: Vec::new(),
            subnet: subnet.unwrap_or(0),
        };
        assert!(subnet.is_some(), "no free 192.168.x.0/24 for the bridge");
        assert!(run(&["ip", "link", "set", &hosts.bridge, "up"]));
        for i in 0..count {
            let ns = format!("skh{tag}x{i}");
            let host_end = format!("skv{tag}x{i}");
            assert!(run(&["ip", "netns", "add", &ns]), "make netns {ns}");
            hosts.netns.push(ns.clone());
            assert!(run(&[
                "ip", "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns",
                &ns
            ]));
            assert!(run(&[
                "ip",
                "link",
                "set",
                &host_end,
                "master",
                &hosts.bridge,
                "up"
            ]));
            let addr = format!("{}/24", hosts.ip(i));
            assert!(run(&["ip", "-n", &ns, "addr", "add", &addr, "dev", "eth0"]));
            assert!(run(&["ip", "-n", &ns, "link", "set", "eth0", "up"]));
            assert!(run(&["ip", "-n", &ns, "link", "set", "lo", "up"]));
        }
        hosts
    }

    /// The bridge's address: where the server and the registry listen.
    pub fn bridge_ip(&self) -> String {
        format!("192.168.{}.1", self.subnet)
    }

    /// The address of host `i`.
    pub fn ip(&self, i: usize) -> String {
        format!("192.168.{}.{}", self.subnet, i + 2)
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

/// Where an agent's images come from.
#[derive(Clone)]
pub enum ImageSource {
    /// `--registry-mirror` values.
    Mirrors(Vec<String>),
    /// `--local-images DIR`.
    Local(PathBuf),
}

/// A `skiff agent` in a network namespace, started through `nsenter --net`.
pub struct Agent {
    child: Option<Child>,
    netns: String,
    pub name: String,
    kubeconfig: PathBuf,
    pub data: PathBuf,
    images: ImageSource,
    /// Environment overrides (e.g. a `PATH` without `nft`).
    env: Vec<(String, String)>,
    pub log: PathBuf,
}

impl Agent {
    pub fn start(
        netns: &str,
        name: &str,
        kubeconfig: &Path,
        data: PathBuf,
        images: ImageSource,
        env: Vec<(String, String)>,
    ) -> Self {
        let mut a = Self {
            child: None,
            netns: netns.into(),
            name: name.into(),
            kubeconfig: kubeconfig.into(),
            log: data.with_extension("log"),
            data,
            images,
            env,
        };
        a.spawn();
        a
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("agent log");
        // By absolute path: `env` may replace the PATH the command is looked up in.
        let nsenter = ["/usr/bin/nsenter", "/bin/nsenter"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("nsenter");
        let mut cmd = Command::new(nsenter);
        cmd.arg(format!("--net=/run/netns/{}", self.netns))
            .arg(skiff_bin())
            .args(["agent", "--node-name", &self.name, "--kubeconfig"])
            .arg(&self.kubeconfig)
            .arg("--data-dir")
            .arg(&self.data);
        match &self.images {
            ImageSource::Mirrors(m) => {
                for m in m {
                    cmd.arg("--registry-mirror").arg(m);
                }
            }
            ImageSource::Local(dir) => {
                cmd.arg("--local-images").arg(dir);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn agent");
        self.child = Some(child);
    }

    /// Kill the agent abruptly (its containers keep running).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the agent process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

    /// Remove this node's cgroups (`skiff/<node>` in every hierarchy), deepest first.
    fn remove_cgroups(&self) {
        fn rmdir_tree(d: &Path) {
            if let Ok(entries) = std::fs::read_dir(d) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        rmdir_tree(&e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(d);
        }
        let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            roots.extend(entries.flatten().map(|e| e.path()));
        }
        for r in roots {
            let d = r.join("skiff").join(&self.name);
            if d.is_dir() {
                rmdir_tree(&d);
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
        self.remove_cgroups();
    }
}

/// How to build a [`Cluster`].
pub struct ClusterOptions {
    pub nodes: usize,
    /// Basic-auth credentials the registry requires, if any.
    pub registry_auth: Option<(String, String)>,
    /// Environment overrides for every agent.
    pub agent_env: Vec<(String, String)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            nodes: 1,
            registry_auth: None,
            agent_env: Vec::new(),
        }
    }
}

/// `skiff server` with its controllers, a registry on the bridge holding `library/busybox`
/// and `library/nginx`, and agents pulling `docker.io` through it. Field order is drop order.
pub struct Cluster {
    pub agents: Vec<Agent>,
    pub server: Server,
    pub registry: Registry,
    pub hosts: Hosts,
    pub temp: tempfile::TempDir,
}

impl Cluster {
    pub fn start(opts: ClusterOptions) -> Self {
        let hosts = Hosts::new(opts.nodes);
        let temp = tempfile::tempdir().expect("temp");
        let auth = opts
            .registry_auth
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()));
        let registry = Registry::start_on(&hosts.bridge_ip(), auth);
        registry.push(&busybox_image(), "library/busybox:latest");
        registry.push(&nginx_image(), "library/nginx:latest");
        let server = Server::start_with(
            &temp.path().join("server"),
            &format!("{}:0", hosts.bridge_ip()),
        );
        let mut agents = Vec::new();
        for i in 0..opts.nodes {
            let name = format!(
                "node-{}{}",
                char::from(b'a' + u8::try_from(i % 26).unwrap_or(0)),
                hosts.tag
            );
            agents.push(Agent::start(
                &hosts.netns[i],
                &name,
                &server.kubeconfig,
                temp.path().join(&name),
                ImageSource::Mirrors(vec![registry.mirror_arg()]),
                opts.agent_env.clone(),
            ));
        }
        let c = Self {
            agents,
            server,
            registry,
            hosts,
            temp,
        };
        c.wait_nodes_ready();
        c
    }

    /// Wait until every agent's node has a pod CIDR and reports Ready.
    pub fn wait_nodes_ready(&self) {
        let want = self.agents.len();
        eventually(Duration::from_secs(40), "Ready nodes", || {
            let nodes = self.server.get_json(&["get", "nodes"]);
            let ready = nodes["items"].as_array()?.iter().filter(|n| {
                n["spec"]["podCIDR"].is_string()
                    && n["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            });
            (ready.count() == want).then_some(())
        });
    }

    /// `kubectl apply -f -` of a YAML document.
    pub fn apply(&self, yaml: &str) {
        self.server.ok_stdin(&["apply", "-f", "-"], yaml);
    }

    /// A pod's `.status`.
    pub fn pod_status(&self, name: &str) -> Value {
        self.server.get_json(&["get", "pod", name])["status"].clone()
    }

    /// The status of a pod's first container (or `{}` before there is one).
    pub fn container_status(&self, name: &str) -> Value {
        self.pod_status(name)["containerStatuses"][0].clone()
    }

    /// The row of `kubectl get pod NAME` (NAME READY STATUS RESTARTS AGE), split on blanks.
    pub fn pod_row(&self, name: &str) -> Vec<String> {
        let out = self.server.ok(&["get", "pod", name, "--no-headers"]);
        out.split_whitespace().map(str::to_owned).collect()
    }

    /// Events of the default namespace whose involved object is `pod`, as "Reason: message".
    pub fn events_of(&self, pod: &str) -> Vec<String> {
        let ev = self.server.get_json(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={pod}"),
        ]);
        ev["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e["reason"].as_str().unwrap_or_default(),
                            e["message"].as_str().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Wait until `pod` has an event with `reason` whose message contains `text`; returns it.
    pub fn wait_event(&self, pod: &str, reason: &str, text: &str, timeout: Duration) -> String {
        eventually(timeout, &format!("{reason} event on {pod}"), || {
            self.events_of(pod)
                .into_iter()
                .find(|e| e.starts_with(&format!("{reason}: ")) && e.contains(text))
        })
    }

    /// All agents' logs, for failure messages.
    pub fn agent_logs(&self) -> String {
        self.agents
            .iter()
            .map(|a| format!("--- {}\n{}", a.name, a.logs()))
            .collect()
    }
}

/// A busybox pod bound to `node` running `sh -c command`; `extra` is spliced into the pod
/// spec (indented two spaces) and `ctr_extra` into the container (indented four).
pub fn busybox_pod(name: &str, node: &str, command: &str, extra: &str, ctr_extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {name}}}}}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 3\n{extra}  containers:\n  - name: c\n    image: busybox\n    command: [\"sh\", \"-c\", {command:?}]\n{ctr_extra}"
    )
}
