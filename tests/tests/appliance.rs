//! The appliance end to end: `skiff gen config` with `skiff server`, `skiff image build`
//! (reproducible bytes), and a QEMU cluster booted from the artifact with signed configs: one
//! control plane (a node too: labelled and tainted `NoSchedule`) and two workers that join with
//! the bootstrap token, run nginx pulled from a registry mirror on the host (on the workers
//! only), and serve its page to a pod on the other worker; a DaemonSet that tolerates the
//! taint runs on all three nodes; a rebooted worker comes back Ready, a rebooted control plane
//! keeps every object and all three nodes are Ready again, a worker whose config is signed by
//! another key never registers and says why, and `skiff cluster destroy` leaves nothing behind.
//!
//! Needs root, `qemu-system-x86`, `kmod` (depmod), `e2fsprogs`, `docker-registry`, `skopeo`,
//! `nginx-light`, `busybox-static` and apt access to Debian's `linux-image-cloud-amd64` (the CI
//! scripts install them). Runs under TCG when KVM hangs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use skiff_tests::images::{NGINX_INDEX, Registry, busybox_image, nginx_image};
use skiff_tests::skiff_bin;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

fn skiff(args: &[&str]) -> Output {
    Command::new(skiff_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run skiff")
}

fn ok(args: &[&str]) -> String {
    let out = skiff(args);
    assert!(
        out.status.success(),
        "skiff {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn gen_config_kubeconfig_reaches_a_server_seeded_with_its_ca() {
    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("cluster");
    let port = free_port();
    let endpoint = format!("https://127.0.0.1:{port}");
    ok(&[
        "gen",
        "config",
        "--cluster-name",
        "demo",
        "--endpoint",
        &endpoint,
        "--out",
        out.to_str().unwrap(),
    ]);
    // A second run refuses to overwrite the secrets.
    let again = skiff(&[
        "gen",
        "config",
        "--cluster-name",
        "demo",
        "--endpoint",
        &endpoint,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let secrets: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(out.join("secrets.yaml")).unwrap()).unwrap();
    let ca = &secrets["kubernetesCa"];
    std::fs::write(temp.path().join("ca.crt"), ca["cert"].as_str().unwrap()).unwrap();
    std::fs::write(temp.path().join("ca.key"), ca["key"].as_str().unwrap()).unwrap();
    let data = temp.path().join("data");
    let mut server = Command::new(skiff_bin())
        .args([
            "server",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--ca-cert")
        .arg(temp.path().join("ca.crt"))
        .arg("--ca-key")
        .arg(temp.path().join("ca.key"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    let mut served = false;
    while Instant::now() < deadline {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(out.join("kubeconfig"))
            .args(["get", "namespaces", "-o", "name"])
            .output()
            .unwrap();
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && last.contains("namespace/kube-system") {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(served, "kubectl with the generated kubeconfig: {last}");
    // The server used the generated CA rather than making one.
    assert_eq!(
        std::fs::read_to_string(data.join("pki/ca.crt")).unwrap(),
        ca["cert"].as_str().unwrap()
    );
}

/// The image every QEMU test boots: built once (static release binary + Debian's kernel), or
/// the already built image directory named by `SKIFF_TEST_IMAGE` (for local iteration: the
/// release build takes half an hour on a busy 2-core machine). The reproducibility test
/// compares against it, so it must be built at the current commit (the commit time is the
/// archive's SOURCE_DATE_EPOCH).
fn image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    IMAGE.get_or_init(|| {
        if let Some(dir) = std::env::var_os("SKIFF_TEST_IMAGE") {
            return PathBuf::from(dir);
        }
        let dir = workspace().join("target/appliance-test/image");
        let cache = workspace().join("target/skiff-cache");
        ok(&[
            "image",
            "build",
            "--out",
            dir.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
        ]);
        dir
    })
}

/// The `--registry-mirror` value that sends a VM's `docker.io` pulls to `registry` on the host:
/// QEMU's user network shows the host's 127.0.0.1 to the guest as 10.0.2.2.
fn vm_mirror(registry: &Registry) -> String {
    let port = registry.host.rsplit_once(':').unwrap().1;
    format!("docker.io=http://10.0.2.2:{port}")
}

fn static_binary() -> PathBuf {
    workspace().join("target/x86_64-unknown-linux-gnu/release/skiff")
}

#[test]
fn image_build_is_reproducible_and_small() {
    let first = image();
    let second = workspace().join("target/appliance-test/image-again");
    let _ = std::fs::remove_dir_all(&second);
    let cache = workspace().join("target/skiff-cache");
    ok(&[
        "image",
        "build",
        "--out",
        second.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        "--binary",
        static_binary().to_str().unwrap(),
    ]);
    for name in ["vmlinuz", "initramfs", "manifest.json", "manifest.json.sig"] {
        let a = std::fs::read(first.join(name)).unwrap();
        let b = std::fs::read(second.join(name)).unwrap();
        assert!(a == b, "{name} differs between two builds");
    }
    let size = |n: &str| std::fs::metadata(first.join(n)).unwrap().len();
    let total = size("vmlinuz") + size("initramfs");
    println!(
        "artifact: vmlinuz {} + initramfs {} = {} bytes",
        size("vmlinuz"),
        size("initramfs"),
        total
    );
    assert!(
        total <= 32 * 1024 * 1024,
        "artifact is {total} bytes, over 32 MiB"
    );
    let manifest = std::fs::read_to_string(first.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"initramfs\"") && manifest.contains("\"vmlinuz\""));
    let _ = std::fs::remove_dir_all(&second);
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) {
                found.push(format!("{pid}: {text}"));
            }
        }
    }
    found
}

/// Kills a hand-started VM when the test ends, however it ends.
struct PidGuard(PathBuf);

impl Drop for PidGuard {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
        }
    }
}

/// Destroys the cluster when the test ends, however it ends.
struct ClusterGuard(String);

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        let _ = skiff(&["cluster", "destroy", "--state", &self.0]);
    }
}

/// kubectl against the cluster: (succeeded, stdout + stderr).
fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--request-timeout", "20s"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    if let Some(text) = stdin {
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Polls `check` until it returns `Ok` or `limit` passes; panics with the last answer and the
/// consoles of the cluster's nodes.
fn wait_for<T>(
    state: &Path,
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match check() {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut consoles = String::new();
    for node in ["cp-1", "worker-1", "worker-2"] {
        let text = std::fs::read_to_string(state.join(format!("nodes/{node}/console.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        consoles.push_str(&format!(
            "--- {node} (last 40 lines)\n{}\n",
            lines[lines.len().saturating_sub(40)..].join("\n")
        ));
    }
    panic!(
        "{what}: not after {}s; last: {last}\n{consoles}",
        limit.as_secs()
    );
}

/// `name=Ready-status` per node.
fn node_readiness(kubeconfig: &Path) -> Result<Vec<(String, String)>, String> {
    let (ok, out) = kubectl(
        kubeconfig,
        &[
            "get",
            "nodes",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
        ],
        None,
    );
    if !ok {
        return Err(out);
    }
    Ok(out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, s)| (n.to_owned(), s.to_owned()))
        .collect())
}

/// A DaemonSet that tolerates the control plane's taint, so it runs on every node.
const EVERYWHERE_DAEMONSET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: everywhere
spec:
  selector:
    matchLabels: {app: everywhere}
  template:
    metadata:
      labels: {app: everywhere}
    spec:
      tolerations:
      - key: node-role.kubernetes.io/control-plane
        operator: Exists
        effect: NoSchedule
      containers:
      - name: sleep
        image: busybox:latest
        command: [sleep, '3600']
";

const ALL_NODES: [&str; 3] = ["cp-1", "worker-1", "worker-2"];

/// Waits until exactly the three nodes are there and Ready.
fn wait_all_ready(state: &Path, kubeconfig: &Path, what: &str) -> Vec<(String, String)> {
    wait_for(state, what, Duration::from_secs(90), || {
        let nodes = node_readiness(kubeconfig)?;
        let ready: Vec<&str> = nodes
            .iter()
            .filter(|(_, s)| s == "True")
            .map(|(n, _)| n.as_str())
            .collect();
        if nodes.len() == 3 && ready == ALL_NODES {
            Ok(nodes)
        } else {
            Err(format!("{nodes:?}"))
        }
    })
}

const NGINX_DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
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
        image: nginx:latest
        ports:
        - containerPort: 80
";

#[test]
fn qemu_cluster_joins_workers_runs_nginx_and_survives_reboots() {
    let image = image();
    let temp = tempfile::tempdir().unwrap();
    let state = temp.path().join("cluster");
    let state_str = state.to_str().unwrap().to_owned();

    // A registry mirror on the host.
    let registry = Registry::start();
    registry.push(&nginx_image(), "library/nginx:latest");
    registry.push(&busybox_image(), "library/busybox:latest");
    let mirror = vm_mirror(&registry);

    // 1. One control plane and two workers; create returns once every node is Ready.
    let started = Instant::now();
    let guard = ClusterGuard(state_str.clone());
    let created = skiff(&[
        "cluster",
        "create",
        "--workers",
        "2",
        "--state",
        &state_str,
        "--image",
        image.to_str().unwrap(),
        "--memory",
        "256",
        "--registry-mirror",
        &mirror,
    ]);
    let create_secs = started.elapsed().as_secs_f64();
    assert!(
        created.status.success(),
        "cluster create failed:\n{}\n{}",
        String::from_utf8_lossy(&created.stdout),
        String::from_utf8_lossy(&created.stderr)
    );
    println!("cluster create (1+2): {create_secs:.1}s");
    let kubeconfig = state.join("kubeconfig");
    // The control plane is a node too: three nodes, all Ready as soon as create returns.
    let nodes = node_readiness(&kubeconfig).expect("kubectl get nodes");
    let ready: Vec<&str> = nodes
        .iter()
        .filter(|(_, s)| s == "True")
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(ready, ALL_NODES, "{nodes:?}");
    let console = std::fs::read_to_string(state.join("nodes/cp-1/console.log")).unwrap();
    assert!(console.contains("verified: role ControlPlane"), "{console}");
    // Its state disk was a blank sparse file: init formatted it, then mounted it.
    assert!(
        console.contains("skiff: formatted /dev/vda (1024 MiB) in "),
        "{console}"
    );
    assert!(
        console.contains("state disk /dev/vda mounted on /var"),
        "{console}"
    );
    // Only the control plane carries the control-plane role label and its NoSchedule taint.
    let (ok_l, labelled) = kubectl(
        &kubeconfig,
        &[
            "get",
            "nodes",
            "-l",
            "node-role.kubernetes.io/control-plane",
            "-o",
            "name",
        ],
        None,
    );
    assert!(ok_l && labelled.trim() == "node/cp-1", "{labelled}");
    let taints = |node: &str| {
        kubectl(
            &kubeconfig,
            &[
                "get",
                "node",
                node,
                "-o",
                r#"jsonpath={range .spec.taints[*]}{.key}={.value}:{.effect}{"\n"}{end}"#,
            ],
            None,
        )
        .1
    };
    let cp_taints = taints("cp-1");
    assert!(
        cp_taints
            .lines()
            .any(|t| t == "node-role.kubernetes.io/control-plane=:NoSchedule"),
        "cp-1 taints: {cp_taints}"
    );
    let worker_taints = taints("worker-1");
    assert!(
        !worker_taints.contains("control-plane"),
        "worker-1 taints: {worker_taints}"
    );
    let (_, cidrs) = kubectl(
        &kubeconfig,
        &["get", "nodes", "-o", "jsonpath={.items[*].spec.podCIDR}"],
        None,
    );
    assert_eq!(cidrs.split_whitespace().count(), 3, "pod CIDRs: {cidrs}");

    // 2. nginx from the host's registry mirror runs on the workers...
    let (applied, out) = kubectl(&kubeconfig, &["apply", "-f", "-"], Some(NGINX_DEPLOYMENT));
    assert!(applied, "{out}");
    let pods: Vec<(String, String, String)> = wait_for(
        &state,
        "2 nginx pods Running",
        Duration::from_secs(240),
        || {
            let (ok, out) = kubectl(
                &kubeconfig,
                &[
                    "get",
                    "pods",
                    "-l",
                    "app=web",
                    "-o",
                    r#"jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP} {.status.phase}{"\n"}{end}"#,
                ],
                None,
            );
            let running: Vec<(String, String, String)> = out
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() == 4 && f[3] == "Running")
                        .then(|| (f[0].to_owned(), f[1].to_owned(), f[2].to_owned()))
                })
                .collect();
            if ok && running.len() == 2 {
                Ok(running)
            } else {
                Err(out)
            }
        },
    );
    println!("nginx pods: {pods:?}");
    // The control plane's taint keeps them off it.
    assert!(
        pods.iter().all(|(_, node, _)| node.starts_with("worker-")),
        "an nginx pod landed on the control plane: {pods:?}"
    );
    // ...and a pod on the other worker fetches its page across the cluster segment.
    let (_, server_node, server_ip) = &pods[0];
    let client_node = if server_node == "worker-1" {
        "worker-2"
    } else {
        "worker-1"
    };
    // busybox's nc, not its wget: Debian's static busybox wget segfaults in these guests.
    let fetch = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: fetch
spec:
  nodeName: {client_node}
  restartPolicy: Never
  containers:
  - name: wget
    image: busybox:latest
    command: [sh, -c, 'for i in $(seq 60); do printf \"GET / HTTP/1.0\\r\\n\\r\\n\" | nc {server_ip} 80 > /tmp/page; cat /tmp/page; grep -q \"skiff nginx\" /tmp/page && exit 0; sleep 2; done; exit 1']
"
    );
    let (applied, out) = kubectl(&kubeconfig, &["apply", "-f", "-"], Some(&fetch));
    assert!(applied, "{out}");
    wait_for(
        &state,
        "the nginx page fetched from the other worker",
        Duration::from_secs(180),
        || {
            let (_, phase) = kubectl(
                &kubeconfig,
                &["get", "pod", "fetch", "-o", "jsonpath={.status.phase}"],
                None,
            );
            match phase.as_str() {
                // The pod exits 0 only when the page it fetched is nginx's.
                "Succeeded" => Ok(()),
                "Failed" => panic!(
                    "the fetch pod failed:\n{}\n{}\nworker consoles:\n{}\n{}",
                    kubectl(&kubeconfig, &["get", "pod", "fetch", "-o", "yaml"], None).1,
                    kubectl(&kubeconfig, &["logs", "fetch"], None).1,
                    std::fs::read_to_string(state.join("nodes/worker-1/console.log"))
                        .unwrap_or_default(),
                    std::fs::read_to_string(state.join("nodes/worker-2/console.log"))
                        .unwrap_or_default()
                ),
                _ => Err(phase),
            }
        },
    );
    // Its output, through the API server's log proxy to the worker's agent.
    let (logged, out) = kubectl(&kubeconfig, &["logs", "fetch"], None);
    assert!(logged && out.contains(NGINX_INDEX.trim()), "{out}");
    println!("fetched from {server_node} by a pod on {client_node}:\n{out}");

    // A DaemonSet that tolerates the taint runs one pod on every node, the control plane too.
    let (applied, out) = kubectl(
        &kubeconfig,
        &["apply", "-f", "-"],
        Some(EVERYWHERE_DAEMONSET),
    );
    assert!(applied, "{out}");
    let mut daemon_nodes: Vec<String> = wait_for(
        &state,
        "a daemon pod Running on each of the 3 nodes",
        Duration::from_secs(180),
        || {
            let (ok, out) = kubectl(
                &kubeconfig,
                &[
                    "get",
                    "pods",
                    "-l",
                    "app=everywhere",
                    "-o",
                    r#"jsonpath={range .items[*]}{.spec.nodeName} {.status.phase}{"\n"}{end}"#,
                ],
                None,
            );
            let running: Vec<String> = out
                .lines()
                .filter_map(|l| l.split_once(' '))
                .filter(|(_, phase)| *phase == "Running")
                .map(|(node, _)| node.to_owned())
                .collect();
            if ok && running.len() == 3 {
                Ok(running)
            } else {
                Err(out)
            }
        },
    );
    daemon_nodes.sort();
    assert_eq!(daemon_nodes, ALL_NODES);

    // 3. A worker power-cycled by QEMU comes back: its agent registers again and the Node is
    // Ready with a fresh heartbeat.
    let heartbeat = |node: &str| {
        kubectl(
            &kubeconfig,
            &[
                "get",
                "node",
                node,
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}"#,
            ],
            None,
        )
        .1
    };
    // `cluster reboot` returns once the new boot's agent has registered the Node again; the
    // old VM is gone, so a heartbeat newer than that moment comes from the new boot.
    let out = ok(&[
        "cluster", "reboot", "--state", &state_str, "--node", "worker-1",
    ]);
    println!("{out}");
    let before = heartbeat("worker-1");
    wait_for(
        &state,
        "worker-1 Ready after its reboot",
        Duration::from_secs(90),
        || {
            let nodes = node_readiness(&kubeconfig)?;
            let now = heartbeat("worker-1");
            if nodes.contains(&("worker-1".into(), "True".into())) && now != before {
                Ok(())
            } else {
                Err(format!("{nodes:?} heartbeat {now}"))
            }
        },
    );

    // The machine API answers on every node through its forwarded port, with mutual TLS and
    // the cluster's skiffconfig: the rebooted worker runs its agent again.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("cluster.json")).expect("cluster.json"))
            .expect("cluster.json is JSON");
    let worker = record["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == "worker-1"))
        .expect("worker-1 in cluster.json");
    let endpoint = worker["machineApi"].as_str().expect("machineApi endpoint");
    let skiffconfig = state.join("skiffconfig");
    let skiffconfig = skiffconfig.to_str().expect("utf-8 path");
    let version = ok(&[
        "ctl",
        "--config",
        skiffconfig,
        "--nodes",
        endpoint,
        "version",
    ]);
    assert!(version.contains("worker"), "{version}");
    let services = ok(&[
        "ctl",
        "--config",
        skiffconfig,
        "--nodes",
        endpoint,
        "services",
    ]);
    assert!(services.contains("agent"), "{services}");
    // The control plane runs its API server and, after it, its own agent.
    let cp = record["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == "cp-1"))
        .expect("cp-1 in cluster.json");
    let cp_endpoint = cp["machineApi"].as_str().expect("machineApi endpoint");
    let services = ok(&[
        "ctl",
        "--config",
        skiffconfig,
        "--nodes",
        cp_endpoint,
        "services",
    ]);
    assert!(
        services.contains("server") && services.contains("agent"),
        "{services}"
    );

    // 4. A power-cycled control plane keeps every object (its store is on the state disk).
    let (ok_cm, out) = kubectl(
        &kubeconfig,
        &["create", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: survivor\ndata:\n  boot: first\n",
        ),
    );
    assert!(ok_cm, "{out}");
    // Let the guest's page cache reach the disk image before the power cut.
    std::thread::sleep(Duration::from_secs(6));
    let cp_before = heartbeat("cp-1");
    println!(
        "{}",
        ok(&["cluster", "reboot", "--state", &state_str, "--node", "cp-1"])
    );
    wait_for(
        &state,
        "the configmap after the control plane's reboot",
        Duration::from_secs(60),
        || {
            let (ok, out) = kubectl(
                &kubeconfig,
                &[
                    "get",
                    "configmap",
                    "survivor",
                    "-o",
                    "jsonpath={.data.boot}",
                ],
                None,
            );
            if ok && out == "first" {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    let (ok_d, out) = kubectl(
        &kubeconfig,
        &["get", "deployment", "web", "-o", "name"],
        None,
    );
    assert!(ok_d && out.contains("deployment.apps/web"), "{out}");
    // The second boot found the ext4 init made on the first and mounted it as it was.
    let console = std::fs::read_to_string(state.join("nodes/cp-1/console.log")).unwrap();
    assert!(
        console.contains("state disk /dev/vda mounted on /var"),
        "{console}"
    );
    assert!(
        !console.contains("skiff: formatted"),
        "formatted twice:\n{console}"
    );
    // Its agent registered the control plane again (its certificate kept on the state disk),
    // and every node is Ready.
    wait_all_ready(
        &state,
        &kubeconfig,
        "all 3 nodes Ready after the control plane's reboot",
    );
    assert_ne!(
        heartbeat("cp-1"),
        cp_before,
        "cp-1's Node was not posted again"
    );
    // The node certificate was issued at the first boot and kept on the state disk.
    let first_boot =
        std::fs::read_to_string(state.join("nodes/cp-1/console.previous.log")).unwrap();
    let second_boot = std::fs::read_to_string(state.join("nodes/cp-1/console.log")).unwrap();
    assert!(
        first_boot.contains("issued node certificate system:node:cp-1"),
        "{first_boot}"
    );
    assert!(
        !second_boot.contains("issued node certificate"),
        "reissued after the reboot:\n{second_boot}"
    );

    let status = ok(&["cluster", "status", "--state", &state_str]);
    println!("{status}");
    for node in ["cp-1", "worker-1", "worker-2"] {
        assert!(status.contains(node), "{status}");
    }
    assert!(status.contains("ready +"), "{status}");

    // 5. A worker with a config signed by another cluster's key, on the same segment and with
    // the same image: never registers, and its console says why.
    let foreign = temp.path().join("foreign");
    ok(&[
        "gen",
        "config",
        "--cluster-name",
        "other",
        "--endpoint",
        "https://10.5.0.10:6443",
        "--out",
        foreign.to_str().unwrap(),
    ]);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("cluster.json")).unwrap()).unwrap();
    let mcast = record["nodes"][0]["vm"]["nics"][1][0]["Mcast"].clone();
    let segment = format!(
        "socket,id=n1,mcast={}:{},localaddr=127.0.0.1",
        mcast["group"].as_str().unwrap(),
        mcast["port"]
    );
    let log = temp.path().join("foreign-console.log");
    let pidfile = temp.path().join("foreign.pid");
    let vm = Command::new("qemu-system-x86_64")
        .args(["-M", "q35", "-accel", "tcg", "-cpu", "max", "-m", "256"])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-monitor",
            "none",
        ])
        .args(["-daemonize", "-name", "skiff-foreign-test"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-pidfile")
        .arg(&pidfile)
        .arg("-kernel")
        .arg(image.join("vmlinuz"))
        .arg("-initrd")
        .arg(state.join("initramfs"))
        .args(["-append", "console=ttyS0 quiet"])
        .args([
            "-netdev",
            &segment,
            "-device",
            "virtio-net-pci,netdev=n1,mac=52:54:00:09:00:01",
        ])
        .arg("-fw_cfg")
        .arg(format!(
            "name=opt/skiff/config,file={}",
            foreign.join("worker.yaml").display()
        ))
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(vm.success());
    let foreign_guard = PidGuard(pidfile);
    let text = wait_for(
        &state,
        "the foreign worker's refusals",
        Duration::from_secs(120),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.matches("REFUSED config").count() >= 2 {
                Ok(text)
            } else {
                Err(text)
            }
        },
    );
    drop(foreign_guard);
    assert!(text.contains("signed by unknown key"), "{text}");
    assert!(!text.contains("skiff: started"), "a role started:\n{text}");
    let nodes = node_readiness(&kubeconfig).unwrap();
    assert_eq!(nodes.len(), 3, "the foreign worker registered: {nodes:?}");

    // 6. destroy leaves no process, no state directory; destroying again is harmless.
    drop(guard);
    assert!(!state.exists(), "state directory left behind");
    let left = processes_mentioning(&state_str);
    assert!(left.is_empty(), "processes left behind: {left:?}");
    ok(&["cluster", "destroy", "--state", &state_str]);
    drop(registry);
    let entries: Vec<_> = std::fs::read_dir(temp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    println!("left in the test's own temp dir (removed with it): {entries:?}");
}

/// Benchmark helper (ignored; run by hand): boots one control plane and one worker with
/// `SKIFF_WORKER_MEMORY` MiB (default 144, the smallest that boots since the binary grew) and
/// runs nginx on the worker, printing the boot timelines. `docs/benchmarks.md`
/// (appliance-bench) reports the smallest size that passes.
#[test]
#[ignore = "benchmark: run by hand with SKIFF_WORKER_MEMORY"]
fn qemu_worker_runs_nginx_in_little_memory() {
    let memory = std::env::var("SKIFF_WORKER_MEMORY").unwrap_or_else(|_| "144".into());
    let image = image();
    let temp = tempfile::tempdir().unwrap();
    let state = temp.path().join("cluster");
    let state_str = state.to_str().unwrap().to_owned();
    let registry = Registry::start();
    registry.push(&nginx_image(), "library/nginx:latest");
    let mirror = vm_mirror(&registry);
    let _guard = ClusterGuard(state_str.clone());
    let started = Instant::now();
    let created = skiff(&[
        "cluster",
        "create",
        "--workers",
        "1",
        "--state",
        &state_str,
        "--image",
        image.to_str().unwrap(),
        "--memory",
        "256",
        "--worker-memory",
        &memory,
        "--registry-mirror",
        &mirror,
    ]);
    assert!(
        created.status.success(),
        "cluster create with a {memory} MiB worker:\n{}",
        String::from_utf8_lossy(&created.stderr)
    );
    println!(
        "cluster create (1+1): {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // The state disks are blank sparse files: each node's init formatted its own.
    for node in ["cp-1", "worker-1"] {
        let console =
            std::fs::read_to_string(state.join(format!("nodes/{node}/console.log"))).unwrap();
        let line = console
            .lines()
            .find(|l| l.contains("skiff: formatted /dev/vda (1024 MiB) in "))
            .unwrap_or_else(|| panic!("{node} did not format its state disk:\n{console}"));
        println!("{node}: {}", line.trim());
        assert!(
            console.contains("state disk /dev/vda mounted on /var"),
            "{console}"
        );
    }
    let kubeconfig = state.join("kubeconfig");
    let (applied, out) = kubectl(&kubeconfig, &["apply", "-f", "-"], Some(NGINX_DEPLOYMENT));
    assert!(applied, "{out}");
    wait_for(&state, "nginx Running", Duration::from_secs(240), || {
        let (_, out) = kubectl(
            &kubeconfig,
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ],
            None,
        );
        if out.split_whitespace().filter(|p| *p == "Running").count() == 2 {
            Ok(())
        } else {
            Err(out)
        }
    });
    println!("{}", ok(&["cluster", "status", "--state", &state_str]));
    println!("a {memory} MiB worker runs 2 nginx pods");
}

/// Benchmark helper (ignored; run by hand): boots a lone control plane with `SKIFF_CP_MEMORY`
/// MiB (default 192): its API server and its own agent, the Node Ready, and a DaemonSet pod
/// that tolerates the control-plane taint Running on it. `docs/benchmarks.md`
/// (appliance-bench) reports the smallest size that passes.
#[test]
#[ignore = "benchmark: run by hand with SKIFF_CP_MEMORY"]
fn qemu_control_plane_runs_its_node_in_little_memory() {
    let memory = std::env::var("SKIFF_CP_MEMORY").unwrap_or_else(|_| "192".into());
    let image = image();
    let temp = tempfile::tempdir().unwrap();
    let state = temp.path().join("cluster");
    let state_str = state.to_str().unwrap().to_owned();
    let registry = Registry::start();
    registry.push(&busybox_image(), "library/busybox:latest");
    let mirror = vm_mirror(&registry);
    let _guard = ClusterGuard(state_str.clone());
    let started = Instant::now();
    let created = skiff(&[
        "cluster",
        "create",
        "--workers",
        "0",
        "--state",
        &state_str,
        "--image",
        image.to_str().unwrap(),
        "--memory",
        &memory,
        "--registry-mirror",
        &mirror,
    ]);
    assert!(
        created.status.success(),
        "cluster create with a {memory} MiB control plane:\n{}",
        String::from_utf8_lossy(&created.stderr)
    );
    println!(
        "cluster create (1+0): {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let kubeconfig = state.join("kubeconfig");
    let nodes = node_readiness(&kubeconfig).expect("kubectl get nodes");
    assert_eq!(nodes, [("cp-1".to_owned(), "True".to_owned())]);
    let (applied, out) = kubectl(
        &kubeconfig,
        &["apply", "-f", "-"],
        Some(EVERYWHERE_DAEMONSET),
    );
    assert!(applied, "{out}");
    wait_for(
        &state,
        "the daemon pod Running on cp-1",
        Duration::from_secs(180),
        || {
            let (_, out) = kubectl(
                &kubeconfig,
                &[
                    "get",
                    "pods",
                    "-l",
                    "app=everywhere",
                    "-o",
                    "jsonpath={.items[*].spec.nodeName} {.items[*].status.phase}",
                ],
                None,
            );
            if out == "cp-1 Running" {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    println!("{}", ok(&["cluster", "status", "--state", &state_str]));
    let console = std::fs::read_to_string(state.join("nodes/cp-1/console.log")).unwrap();
    let timeline: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("boot phase"))
        .collect();
    println!("{}", timeline.join("\n"));
    println!("a {memory} MiB control plane serves the API and runs its own node with a pod");
}
