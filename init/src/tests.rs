//! Whole-boot tests over the recording double: what init does with good, foreign, stale and
//! missing configs, and how it shuts down.

use std::net::SocketAddr;
use std::time::Duration;

use skiff_genconfig::{ClusterSecrets, NodeSpec};
use skiff_machine::{Interface, Role};

use crate::boot::paths;
use crate::record::{Call, Recorder};
use crate::sys::Lease;
use crate::{PowerAction, PowerRequests, main_loop};

fn cluster() -> ClusterSecrets {
    ClusterSecrets::generate("demo", "https://10.5.0.10:6443").unwrap()
}

/// A node image that trusts `secrets`' key, with two modules and two NICs.
fn node(secrets: &ClusterSecrets) -> Recorder {
    let sys = Recorder::default();
    sys.file(
        &format!("{}/cluster.pub", paths::TRUSTED_KEYS),
        secrets.public_key().to_pem(),
    )
    .file(
        paths::MODULE_LIST,
        "kernel/virtio.ko\nkernel/virtio_net.ko\n",
    )
    .file("/lib/modules/kernel/virtio.ko", "elf")
    .file("/lib/modules/kernel/virtio_net.ko", "elf")
    .file("/proc/cmdline", "console=ttyS0")
    .file("/dev/urandom", vec![7u8; 4096])
    .link(1, "lo", [0; 6])
    .link(2, "eth0", [0x52, 0x54, 0, 0, 0, 1])
    .link(3, "eth1", [0x52, 0x54, 0, 0, 0, 2])
    .lease(Lease {
        address: "10.0.2.15".parse().unwrap(),
        prefix: 24,
        router: Some("10.0.2.2".parse().unwrap()),
        dns: vec!["10.0.2.3".parse().unwrap()],
        lease_secs: 86400,
    });
    sys
}

fn control_plane(secrets: &ClusterSecrets, generation: u64) -> Vec<u8> {
    let mut spec = NodeSpec::new(Role::ControlPlane, "cp-1".parse().unwrap());
    spec.generation = generation;
    spec.network.interfaces = vec![
        Interface {
            name: Some("eth0".parse().unwrap()),
            mac: None,
            dhcp: true,
            addresses: vec![],
            routes: vec![],
        },
        Interface {
            name: None,
            mac: Some("52:54:00:00:00:02".parse().unwrap()),
            dhcp: false,
            addresses: vec!["10.5.0.10/24".parse().unwrap()],
            routes: vec![],
        },
    ];
    secrets.signed_config(&spec).unwrap()
}

fn spawns(sys: &Recorder) -> Vec<crate::Command> {
    sys.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Spawn(cmd) => Some(cmd),
            _ => None,
        })
        .collect()
}

#[test]
fn a_signed_control_plane_config_starts_the_api_server() {
    let secrets = cluster();
    let sys = node(&secrets);
    sys.file(paths::FW_CFG_CONFIG, control_plane(&secrets, 1))
        .listening(SocketAddr::from(([127, 0, 0, 1], 6443)));
    let result = main_loop(&sys, "/init", &PowerRequests::default(), Some(5));
    assert_eq!(result, None);
    let calls = sys.calls();

    // API filesystems first, proc before anything else.
    assert_eq!(
        calls.first(),
        Some(&Call::Mount {
            target: "/proc".into(),
            fstype: "proc".into()
        })
    );
    assert!(calls.contains(&Call::Mount {
        target: "/sys/fs/cgroup".into(),
        fstype: "cgroup2".into()
    }));
    // Modules in list order.
    let modules: Vec<_> = calls
        .iter()
        .filter_map(|c| match c {
            Call::LoadModule(p) => Some(p.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        modules,
        [
            "/lib/modules/kernel/virtio.ko",
            "/lib/modules/kernel/virtio_net.ko"
        ]
    );
    assert!(calls.contains(&Call::Hostname("cp-1".into())));
    // eth0 by DHCP with its default route, eth1 (selected by MAC) static.
    assert!(calls.contains(&Call::Dhcp("eth0".into())));
    assert!(!calls.contains(&Call::Dhcp("eth1".into())));
    assert!(calls.contains(&Call::Address(2, "10.0.2.15".parse().unwrap(), 24)));
    assert!(calls.contains(&Call::Route(
        2,
        "0.0.0.0".parse().unwrap(),
        0,
        Some("10.0.2.2".parse().unwrap())
    )));
    assert!(calls.contains(&Call::Address(3, "10.5.0.10".parse().unwrap(), 24)));
    assert_eq!(
        sys.read_back("/etc/resolv.conf").unwrap(),
        b"nameserver 10.0.2.3\n"
    );

    // The API server, then (its port answers) the control plane's own agent.
    let spawned = spawns(&sys);
    assert_eq!(spawned.len(), 2);
    let args = spawned[0].args.join(" ");
    assert!(
        args.starts_with("server --data-dir /var/lib/skiff/server --listen 0.0.0.0:6443"),
        "{args}"
    );
    let agent = spawned[1].args.join(" ");
    assert!(
        agent.starts_with("agent --kubeconfig /var/lib/skiff/pki/node-kubeconfig --node-name cp-1"),
        "{agent}"
    );
    assert!(args.contains("--san 10.5.0.10"), "{args}");
    assert_eq!(
        String::from_utf8(sys.read_back("/run/skiff/ca.crt").unwrap()).unwrap(),
        secrets.kubernetes_ca.cert_pem()
    );
    assert!(
        args.contains("--service-account-key-file /run/skiff/sa.key"),
        "{args}"
    );
    assert_eq!(
        String::from_utf8(sys.read_back("/run/skiff/sa.key").unwrap()).unwrap(),
        secrets.service_account_key_pem()
    );
    assert_eq!(sys.read_back(paths::GENERATION).unwrap(), b"1");
    // The server accepts the cluster's bootstrap token from joining workers.
    let token = secrets.bootstrap_token();
    let tokens =
        String::from_utf8(sys.read_back("/var/lib/skiff/server/tokens.csv").unwrap()).unwrap();
    assert!(
        tokens.contains(&format!(
            "{},system:bootstrap:{},{},\"system:bootstrappers,system:bootstrappers:worker,system:nodes\"",
            token.as_str(),
            token.id(),
            token.id()
        )),
        "{tokens}"
    );

    let console = sys.console_text();
    for phase in ["kernel", "init", "config", "network", "services"] {
        assert!(
            console.contains(&format!("boot phase {phase} at")),
            "{phase} missing:\n{console}"
        );
    }
    // The API answers, but the control plane's own Node is not registered yet.
    assert!(!console.contains("boot phase ready"), "{console}");
    assert!(console.contains("verified: role ControlPlane"), "{console}");
}

fn control_plane_config(secrets: &ClusterSecrets) -> skiff_machine::MachineConfig {
    let signed = control_plane(secrets, 1);
    skiff_machine::verify(&signed, &[secrets.public_key()])
        .unwrap()
        .config
}

#[test]
fn a_control_plane_runs_its_api_server_then_its_own_agent() {
    use crate::boot::{paths::NODE_KUBECONFIG, role_services};
    let secrets = cluster();
    let mut config = control_plane_config(&secrets);
    config.machine.registry_mirrors.insert(
        "docker.io".parse().unwrap(),
        vec![skiff_machine::Mirror {
            url: "http://10.0.2.2:5000".parse().unwrap(),
            insecure: true,
        }],
    );
    let sys = node(&secrets);
    let addresses = ["10.0.2.15".parse().unwrap(), "10.5.0.10".parse().unwrap()];
    let services = role_services(&sys, &config, "/init", &addresses);
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["server", "agent"], "in start order");
    assert_eq!(services[0].after, None);
    assert_eq!(
        services[1].after,
        Some(SocketAddr::from(([127, 0, 0, 1], 6443))),
        "the agent starts once the API server listens"
    );
    let args = services[1].command.args.join(" ");
    assert_eq!(
        args,
        "agent --kubeconfig /var/lib/skiff/pki/node-kubeconfig --node-name cp-1 \
         --data-dir /var/lib/skiff/agent --node-ip 10.5.0.10 \
         --node-labels node-role.kubernetes.io/control-plane= \
         --register-with-taints node-role.kubernetes.io/control-plane:NoSchedule \
         --registry-mirror docker.io=http://10.0.2.2:5000"
    );

    // Its credentials: a client certificate for system:node:cp-1 from the cluster CA, for
    // the API server on 127.0.0.1, written under the state directory.
    let text = String::from_utf8(sys.read_back(NODE_KUBECONFIG).unwrap()).unwrap();
    let kubeconfig = skiff_pki::Kubeconfig::from_yaml(&text).unwrap();
    assert_eq!(kubeconfig.server_url(), Some("https://127.0.0.1:6443"));
    let cert = kubeconfig.client_cert().unwrap().cert_der().unwrap();
    let id = skiff_pki::identity_from_der(&cert).unwrap();
    assert_eq!(id.user, "system:node:cp-1");
    assert_eq!(id.groups, ["system:nodes"]);
    let (_, reissued) = skiff_pki::node_kubeconfig(
        &secrets.kubernetes_ca,
        "demo",
        "https://127.0.0.1:6443",
        "cp-1",
        Some(&text),
    )
    .unwrap();
    assert!(!reissued, "signed by the cluster CA");
    assert!(
        sys.console_text()
            .contains("issued node certificate system:node:cp-1")
    );

    // The next boot keeps them; a kubeconfig that no longer fits (here: none of ours) is
    // replaced.
    let writes = |sys: &Recorder| {
        sys.calls()
            .iter()
            .filter(|c| **c == Call::Write(NODE_KUBECONFIG.into()))
            .count()
    };
    role_services(&sys, &config, "/init", &addresses);
    assert_eq!(writes(&sys), 1, "an existing certificate is reused");
    assert_eq!(sys.read_back(NODE_KUBECONFIG).unwrap(), text.as_bytes());
    sys.file(NODE_KUBECONFIG, "apiVersion: v1\nkind: Config\n");
    role_services(&sys, &config, "/init", &addresses);
    assert_eq!(writes(&sys), 2, "a broken file is replaced");
}

#[test]
fn a_control_plane_is_ready_when_its_api_answers_and_its_node_registered() {
    use crate::boot::{ReadyCheck, ready_probe, role_services};
    let secrets = cluster();
    let config = control_plane_config(&secrets);
    let sys = node(&secrets);
    let services = role_services(&sys, &config, "/init", &[]);
    let check = ready_probe(&config, &services).unwrap();
    assert!(
        matches!(&check, ReadyCheck::All(c) if c.len() == 2),
        "{check:?}"
    );
    assert!(!check.passed(&sys, &services, Duration::ZERO));
    sys.listening(SocketAddr::from(([127, 0, 0, 1], 6443)));
    assert!(!check.passed(&sys, &services, Duration::ZERO), "API only");
    services[1]
        .log
        .lock()
        .unwrap()
        .push("INFO skiff_agent: registered node=cp-1 ip=10.5.0.10".into());
    assert!(check.passed(&sys, &services, Duration::ZERO));
    // Without an agent (no credentials could be made) the API alone makes it ready.
    let server_only = &services[..1];
    let check = ready_probe(&config, server_only).unwrap();
    assert!(check.passed(&sys, server_only, Duration::ZERO));
}

#[test]
fn a_config_signed_by_another_key_never_starts_a_role() {
    let secrets = cluster();
    let intruder = cluster();
    let sys = node(&secrets);
    sys.file(paths::FW_CFG_CONFIG, control_plane(&intruder, 1));
    // 100 ticks of 200 ms: 20 s, several retries.
    main_loop(&sys, "/init", &PowerRequests::default(), Some(100));
    assert!(spawns(&sys).is_empty());
    let console = sys.console_text();
    let refusals = console.matches("REFUSED config from qemu fw_cfg").count();
    assert!(refusals >= 3, "expected retries:\n{console}");
    assert!(console.contains("signed by unknown key"), "{console}");
    assert!(
        console.contains(&secrets.public_key().key_id().to_string()),
        "trusted key ids are listed:\n{console}"
    );
    assert!(console.contains("No role is started"), "{console}");
    assert!(!console.contains("boot phase services"));
}

#[test]
fn an_older_generation_is_refused() {
    let secrets = cluster();
    let sys = node(&secrets);
    sys.file(paths::GENERATION, "3")
        .file(paths::FW_CFG_CONFIG, control_plane(&secrets, 2));
    main_loop(&sys, "/init", &PowerRequests::default(), Some(3));
    assert!(spawns(&sys).is_empty());
    let console = sys.console_text();
    assert!(
        console.contains("generation 2 is older than generation 3"),
        "{console}"
    );
    assert_eq!(sys.read_back(paths::GENERATION).unwrap(), b"3");
}

#[test]
fn no_config_and_no_keys_are_reported_and_awaited() {
    let sys = Recorder::default();
    sys.file("/proc/cmdline", "").link(1, "lo", [0; 6]);
    main_loop(&sys, "/init", &PowerRequests::default(), Some(30));
    let console = sys.console_text();
    assert!(
        console.contains("trusts no config-signing key"),
        "{console}"
    );
    assert!(
        console.matches("no machine config found").count() >= 2,
        "{console}"
    );
    assert!(spawns(&sys).is_empty());
}

#[test]
fn a_config_url_brings_the_network_up_first() {
    let secrets = cluster();
    let sys = node(&secrets);
    let url = "http://10.0.2.2:8080/cp.yaml";
    sys.file("/proc/cmdline", format!("console=ttyS0 skiff.config={url}"))
        .http(url, control_plane(&secrets, 1));
    main_loop(&sys, "/init", &PowerRequests::default(), Some(2));
    let calls = sys.calls();
    let dhcp_at = calls
        .iter()
        .position(|c| matches!(c, Call::Dhcp(_)))
        .unwrap();
    let get_at = calls
        .iter()
        .position(|c| matches!(c, Call::HttpGet(_)))
        .unwrap();
    assert!(dhcp_at < get_at);
    // Without a config, DHCP runs on every physical interface.
    assert!(calls.contains(&Call::Dhcp("eth1".into())));
    assert_eq!(spawns(&sys).len(), 1);
}

#[test]
fn a_worker_gets_the_agent_with_a_bootstrap_kubeconfig() {
    let secrets = cluster();
    let sys = node(&secrets);
    let mut spec = NodeSpec::new(Role::Worker, "w-1".parse().unwrap());
    spec.registry_mirrors.insert(
        "docker.io".parse().unwrap(),
        vec![skiff_machine::Mirror {
            url: "http://10.0.2.2:5000".parse().unwrap(),
            insecure: true,
        }],
    );
    sys.file(paths::FW_CFG_CONFIG, secrets.signed_config(&spec).unwrap());
    main_loop(&sys, "/init", &PowerRequests::default(), Some(2));
    let spawned = spawns(&sys);
    assert_eq!(spawned.len(), 1);
    let args = spawned[0].args.join(" ");
    assert!(
        args.starts_with("agent --kubeconfig /run/skiff/bootstrap-kubeconfig --node-name w-1"),
        "{args}"
    );
    assert!(
        args.ends_with("--registry-mirror docker.io=http://10.0.2.2:5000"),
        "{args}"
    );
    let kubeconfig =
        String::from_utf8(sys.read_back("/run/skiff/bootstrap-kubeconfig").unwrap()).unwrap();
    assert!(kubeconfig.contains(&format!("token: {}", secrets.bootstrap_token().as_str())));
    assert!(kubeconfig.contains("server: https://10.5.0.10:6443"));
    // A worker is ready when its agent says it registered the Node, not before.
    assert!(!sys.console_text().contains("boot phase ready"));
}

#[test]
fn a_worker_is_ready_once_its_agent_registered() {
    use crate::boot::{ReadyCheck, ready_probe};
    let secrets = cluster();
    let spec = NodeSpec::new(Role::Worker, "w-1".parse().unwrap());
    let config = secrets.machine_config(&spec).unwrap();
    let check = ready_probe(&config, &[]).unwrap();
    assert!(matches!(
        check,
        ReadyCheck::LogLine {
            service: "agent",
            ..
        }
    ));
    let sys = node(&secrets);
    let agent = crate::Service::new(
        "agent",
        spawns(&sys).pop().unwrap_or(crate::Command {
            program: "/init".into(),
            args: vec![],
            env: vec![],
        }),
    );
    let services = vec![agent];
    services[0]
        .log
        .lock()
        .unwrap()
        .push("INFO skiff_agent: pulling nothing yet".into());
    assert!(!check.passed(&sys, &services, Duration::ZERO));
    services[0]
        .log
        .lock()
        .unwrap()
        .push("INFO skiff_agent: registered node=w-1 ip=10.5.0.11".into());
    assert!(check.passed(&sys, &services, Duration::ZERO));
    // Another service printing the word does not count.
    let other = vec![crate::Service::new("server", services[0].command.clone())];
    other[0].log.lock().unwrap().push("registered".into());
    assert!(!check.passed(&sys, &other, Duration::ZERO));
}

#[test]
fn power_off_stops_services_syncs_and_unmounts_state() {
    let secrets = cluster();
    let sys = node(&secrets);
    let mut spec = NodeSpec::new(Role::ControlPlane, "cp-1".parse().unwrap());
    spec.state_disk = Some("/dev/vdb".parse().unwrap());
    let mut ext4 = vec![0u8; 4096];
    ext4[1080] = 0x53;
    ext4[1081] = 0xef;
    sys.file("/dev/vdb", ext4)
        .file(paths::FW_CFG_CONFIG, secrets.signed_config(&spec).unwrap());
    sys.exit_on_term(true);
    let requests = PowerRequests::default();
    // The request arrives 3 s after boot, while the server runs.
    sys.flag_at(Duration::from_secs(3), requests.poweroff.clone());
    let action = main_loop(&sys, "/init", &requests, Some(100));
    assert_eq!(action, Some(PowerAction::PowerOff));
    let calls = sys.calls();
    let var_mount = Call::Mount {
        target: "/var".into(),
        fstype: "ext4".into(),
    };
    let at = |wanted: &Call| calls.iter().position(|c| c == wanted).unwrap();
    let pid = spawns_with_pid(&sys);
    let term = at(&Call::Kill(pid, nix::sys::signal::Signal::SIGTERM));
    let umount = at(&Call::Umount("/var".into()));
    assert!(at(&var_mount) < term);
    assert!(term < umount, "services stop before /var is unmounted");
    assert!(calls[term..umount].contains(&Call::Sync));
    assert_eq!(calls.last(), Some(&Call::Power(PowerAction::PowerOff)));
}

fn spawns_with_pid(sys: &Recorder) -> i32 {
    sys.spawned()[0].0
}

/// A control plane whose state disk `/dev/vdb` holds `disk`; boots it for two ticks.
fn boot_with_state_disk(disk: Vec<u8>) -> Recorder {
    let secrets = cluster();
    let sys = node(&secrets);
    let mut spec = NodeSpec::new(Role::ControlPlane, "cp-1".parse().unwrap());
    spec.state_disk = Some("/dev/vdb".parse().unwrap());
    sys.file("/dev/vdb", disk)
        .file(paths::FW_CFG_CONFIG, secrets.signed_config(&spec).unwrap());
    main_loop(&sys, "/init", &PowerRequests::default(), Some(2));
    sys
}

fn var_mounted(sys: &Recorder) -> bool {
    sys.calls().contains(&Call::Mount {
        target: "/var".into(),
        fstype: "ext4".into(),
    })
}

fn formatted(sys: &Recorder) -> bool {
    sys.calls().contains(&Call::Format("/dev/vdb".into()))
}

#[test]
fn a_blank_state_disk_is_formatted_then_mounted() {
    let sys = boot_with_state_disk(vec![0u8; 16 << 20]);
    assert!(formatted(&sys));
    let calls = sys.calls();
    let format = calls
        .iter()
        .position(|c| *c == Call::Format("/dev/vdb".into()));
    let mount = calls.iter().position(|c| {
        *c == Call::Mount {
            target: "/var".into(),
            fstype: "ext4".into(),
        }
    });
    assert!(format < mount, "formatted before mounted: {calls:?}");
    let console = sys.console_text();
    assert!(
        console.contains("skiff: formatted /dev/vdb (16 MiB) in "),
        "{console}"
    );
    assert!(console.contains("state disk /dev/vdb mounted on /var"));
    // The control plane's own agent waits for the API port before it starts.
    assert!(console.contains("agent waits for 127.0.0.1:6443 to accept connections"));
    let disk = sys.read_back("/dev/vdb").unwrap();
    assert!(skiff_mkfs::has_ext4_magic(&disk));
    assert_eq!(&disk[1024 + 0x78..1024 + 0x78 + 11], b"skiff-state");
    // The UUID came from /dev/urandom (sevens in this double), marked as version 4.
    assert_eq!(disk[1024 + 0x68], 7);
    assert_eq!(disk[1024 + 0x68 + 6] >> 4, 4);
    assert_eq!(spawns(&sys).len(), 1, "the role starts");
}

#[test]
fn an_ext4_state_disk_is_mounted_and_not_formatted() {
    let mut disk = vec![0u8; 4 << 20];
    disk[1080] = 0x53;
    disk[1081] = 0xef;
    disk[9000] = 1; // files: never a reason to format
    let sys = boot_with_state_disk(disk);
    assert!(var_mounted(&sys));
    assert!(!formatted(&sys));
    assert!(!sys.console_text().contains("formatted"));
}

#[test]
fn a_disk_with_foreign_data_is_left_alone_and_the_node_boots_stateless() {
    // A partition table at the start, or anything in the last MiB.
    let mut mbr = vec![0u8; 16 << 20];
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    let mut tail = vec![0u8; 16 << 20];
    tail[(16 << 20) - 100] = 1;
    for disk in [mbr, tail] {
        let before = disk.clone();
        let sys = boot_with_state_disk(disk);
        assert!(!formatted(&sys));
        assert!(!var_mounted(&sys));
        assert_eq!(
            sys.read_back("/dev/vdb").unwrap(),
            before,
            "not one byte written"
        );
        let console = sys.console_text();
        assert!(
            console.contains("holds data that is not an ext4 filesystem"),
            "{console}"
        );
        assert!(console.contains("state lives in memory"));
        assert_eq!(spawns(&sys).len(), 1, "the role still starts");
    }
}

#[test]
fn a_blank_disk_too_small_for_ext4_says_how_big_it_must_be() {
    let sys = boot_with_state_disk(vec![0u8; 4 << 20]);
    assert!(formatted(&sys), "tried");
    assert!(!var_mounted(&sys));
    let console = sys.console_text();
    assert!(console.contains("at least 8 MiB"), "{console}");
    assert!(sys.read_back("/dev/vdb").unwrap().iter().all(|&b| b == 0));
}

#[test]
fn a_clock_before_the_build_is_moved_forward() {
    let secrets = cluster();
    let sys = node(&secrets);
    sys.file(paths::BUILD_EPOCH, "1700000000\n");
    main_loop(&sys, "/init", &PowerRequests::default(), Some(1));
    let floor = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert!(sys.calls().contains(&Call::SetClock(floor)));
}
