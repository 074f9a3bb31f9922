//! The appliance end to end: `skiff gen config` with `skiff server`, `skiff image build`
//! (reproducible bytes), and a QEMU control plane booted from the artifact with a signed config
//! that stock kubectl reaches; a config signed by another key never starts a role; `skiff
//! cluster destroy` leaves nothing behind.
//!
//! Needs root, `qemu-system-x86`, `kmod` (depmod), `e2fsprogs` and apt access to Debian's
//! `linux-image-cloud-amd64` (the CI scripts install them). Runs under TCG when KVM hangs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

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

/// The image every QEMU test boots: built once (static release binary + Debian's kernel).
fn image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    IMAGE.get_or_init(|| {
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

#[test]
fn qemu_control_plane_serves_kubectl_and_refuses_foreign_configs() {
    let image = image();
    let temp = tempfile::tempdir().unwrap();
    let state = temp.path().join("cluster");
    let state_str = state.to_str().unwrap().to_owned();

    // 1. A control plane from the artifact, with a config signed by the cluster key.
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
    ]);
    let create_secs = started.elapsed().as_secs_f64();
    if !created.status.success() {
        let _ = skiff(&["cluster", "destroy", "--state", &state_str]);
        panic!(
            "cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
    }
    println!("cluster create: {create_secs:.1}s");
    let kubeconfig = state.join("kubeconfig");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let mut served = false;
    while Instant::now() < deadline {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["get", "namespaces"])
            .output()
            .unwrap();
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && last.contains("kube-system") {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let console = std::fs::read_to_string(state.join("nodes/cp-1/console.log")).unwrap_or_default();
    if !served {
        let _ = skiff(&["cluster", "destroy", "--state", &state_str]);
        panic!("kubectl get namespaces never worked: {last}\nconsole:\n{console}");
    }
    assert!(console.contains("verified: role ControlPlane"), "{console}");
    let status = ok(&["cluster", "status", "--state", &state_str]);
    assert!(
        status.contains("cp-1") && status.contains("running"),
        "{status}"
    );
    assert!(
        status.contains("boot: kernel") && status.contains("ready +"),
        "{status}"
    );
    println!("{status}");

    // 2. A power-cycled control plane keeps every object (its store is on the state disk).
    let kubectl = |args: &[&str]| {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .unwrap()
    };
    let mut create = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["create", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        create.stdin.as_mut().unwrap(),
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: survivor\ndata:\n  boot: first\n",
    )
    .unwrap();
    let made = create.wait_with_output().unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    // Let the guest's page cache reach the disk image before the power cut.
    std::thread::sleep(Duration::from_secs(6));
    let rebooted = skiff(&["cluster", "reboot", "--state", &state_str, "--node", "cp-1"]);
    if !rebooted.status.success() {
        let _ = skiff(&["cluster", "destroy", "--state", &state_str]);
        panic!(
            "reboot failed: {}",
            String::from_utf8_lossy(&rebooted.stderr)
        );
    }
    println!("{}", String::from_utf8_lossy(&rebooted.stdout));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut kept = String::new();
    while Instant::now() < deadline {
        let out = kubectl(&[
            "get",
            "configmap",
            "survivor",
            "-o",
            "jsonpath={.data.boot}",
        ]);
        kept = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if kept != "first" {
        let _ = skiff(&["cluster", "destroy", "--state", &state_str]);
        panic!("the configmap did not survive the reboot: {kept}");
    }

    // 3. The same image with a config signed by another cluster's key: never starts a role.
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
    let log = temp.path().join("foreign-console.log");
    let pidfile = temp.path().join("foreign.pid");
    let vm = Command::new("qemu-system-x86_64")
        .args([
            "-M",
            "q35",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            "256",
            "-nodefaults",
            "-no-user-config",
        ])
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-daemonize",
            "-name",
            "skiff-foreign-test",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-pidfile")
        .arg(&pidfile)
        .arg("-kernel")
        .arg(image.join("vmlinuz"))
        .arg("-initrd")
        .arg(state.join("initramfs"))
        .args(["-append", "console=ttyS0 quiet"])
        .arg("-fw_cfg")
        .arg(format!(
            "name=opt/skiff/config,file={}",
            foreign.join("controlplane.yaml").display()
        ))
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(vm.success());
    let guard = PidGuard(pidfile);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.matches("REFUSED config").count() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(guard);
    assert!(
        text.matches("REFUSED config").count() >= 2,
        "console:\n{text}"
    );
    assert!(text.contains("signed by unknown key"), "{text}");
    assert!(!text.contains("skiff: started"), "a role started:\n{text}");

    // 4. destroy leaves no process, no state directory.
    ok(&["cluster", "destroy", "--state", &state_str]);
    assert!(!state.exists(), "state directory left behind");
    let left = processes_mentioning(&state_str);
    assert!(left.is_empty(), "processes left behind: {left:?}");
    // Destroying again is harmless.
    ok(&["cluster", "destroy", "--state", &state_str]);
}
