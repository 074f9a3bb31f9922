//! A cluster of skiff VMs: create (secrets, signed per-node configs, the image with the
//! cluster key layered on, state disks, VMs, API forwarded to the host), status (VMs, console
//! logs, boot timelines) and destroy (every process and file it made).
//!
//! Network: every VM has two NICs. The first uses QEMU user networking (DHCP, the host's
//! services at 10.0.2.2, the control plane's API forwarded to 127.0.0.1:<port>); the second
//! joins the cluster's L2 segment (QEMU multicast socket networking on the host's loopback)
//! with a static address 10.5.0.<10+i>/24. The API endpoint in the configs is the first
//! control plane's segment address.

use std::fs;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use skiff_genconfig::{ClusterSecrets, NodeSpec};
use skiff_machine::{Interface, Mirror, Role};

use crate::QemuError;
use crate::accel::{self, Accel};
use crate::timeline::{self, Phase};
use crate::vm::{self, Nic, Vm, VmSpec};

/// The cluster segment's /24.
const SEGMENT: &str = "10.5.0";
const FIRST_HOST: u32 = 10;

/// What to create.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    pub state: PathBuf,
    pub image: PathBuf,
    pub name: String,
    pub control_planes: u32,
    pub workers: u32,
    pub memory_mib: u32,
    /// Memory of each worker, MiB (default: `memory_mib`).
    pub worker_memory_mib: Option<u32>,
    pub cpus: u32,
    pub api_port: Option<u16>,
    pub accel: Option<Accel>,
    pub ready_timeout: Duration,
    /// A state disk per node (a blank sparse file; init formats it ext4 on first boot).
    pub state_disks: bool,
    /// Sign the configs with another cluster's key (to test refusal).
    pub foreign_signer: bool,
    /// Registry mirrors the nodes use: (registry host, mirror URL), e.g. (`docker.io`,
    /// `http://10.0.2.2:5000`); 10.0.2.2 is the host's loopback seen from QEMU user networking.
    pub registry_mirrors: Vec<(String, String)>,
    /// Print progress lines on stderr.
    pub progress: bool,
}

impl ClusterBuilder {
    pub fn new(state: &Path, image: &Path) -> Self {
        Self {
            state: state.to_owned(),
            image: image.to_owned(),
            name: "skiff".into(),
            control_planes: 1,
            workers: 0,
            memory_mib: 512,
            worker_memory_mib: None,
            cpus: 1,
            api_port: None,
            accel: None,
            ready_timeout: Duration::from_secs(240),
            state_disks: true,
            foreign_signer: false,
            registry_mirrors: Vec::new(),
            progress: false,
        }
    }
    pub fn workers(mut self, n: u32) -> Self {
        self.workers = n;
        self
    }
    pub fn control_planes(mut self, n: u32) -> Self {
        self.control_planes = n;
        self
    }
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }
    pub fn worker_memory_mib(mut self, mib: Option<u32>) -> Self {
        self.worker_memory_mib = mib;
        self
    }
    pub fn api_port(mut self, port: Option<u16>) -> Self {
        self.api_port = port;
        self
    }
    pub fn accel(mut self, accel: Accel) -> Self {
        self.accel = Some(accel);
        self
    }
    pub fn state_disks(mut self, yes: bool) -> Self {
        self.state_disks = yes;
        self
    }
    pub fn foreign_signer(mut self, yes: bool) -> Self {
        self.foreign_signer = yes;
        self
    }
    pub fn ready_timeout(mut self, limit: Duration) -> Self {
        self.ready_timeout = limit;
        self
    }
    /// Adds a registry mirror: `registry` (e.g. `docker.io`) pulled through `url`.
    pub fn registry_mirror(mut self, registry: &str, url: &str) -> Self {
        self.registry_mirrors
            .push((registry.to_owned(), url.to_owned()));
        self
    }
    pub fn progress(mut self, yes: bool) -> Self {
        self.progress = yes;
        self
    }

    fn say(&self, line: &str) {
        if self.progress {
            eprintln!("skiff: {line}");
        }
    }
}

/// One VM as recorded in `STATE/cluster.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    pub name: String,
    pub role: String,
    pub pid: i32,
    pub address: String,
    pub console: PathBuf,
    pub attempts: u32,
    /// Where the node's machine API (guest port 50000) is forwarded on the host.
    #[serde(default)]
    pub machine_api: String,
    /// How the VM was started, to start it again.
    pub vm: VmSpec,
}

/// `STATE/cluster.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRecord {
    pub name: String,
    pub accel: String,
    pub api_port: u16,
    pub kubeconfig: PathBuf,
    /// The machine-API client config (`skiff ctl --config`), endpoints on 127.0.0.1.
    #[serde(default)]
    pub skiffconfig: PathBuf,
    pub nodes: Vec<NodeRecord>,
}

/// A created cluster. Dropping it stops every VM unless [`Cluster::keep_running`] was called.
#[derive(Debug)]
pub struct Cluster {
    pub record: ClusterRecord,
    pub state: PathBuf,
    pub vms: Vec<Vm>,
    pub secrets: ClusterSecrets,
    /// Wall time of `create`.
    pub create_time: Duration,
}

/// The guest port the machine API listens on.
const MACHINE_API_PORT: u16 = 50000;

fn free_tcp_port() -> Result<u16, QemuError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(QemuError::io(Path::new("127.0.0.1:0")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(QemuError::io(Path::new("127.0.0.1:0")))
}

fn free_udp_port() -> Result<u16, QemuError> {
    let s = UdpSocket::bind("127.0.0.1:0").map_err(QemuError::io(Path::new("127.0.0.1:0")))?;
    s.local_addr()
        .map(|a| a.port())
        .map_err(QemuError::io(Path::new("127.0.0.1:0")))
}

fn mac(kind: u8, index: u32) -> [u8; 6] {
    let i = u8::try_from(index).unwrap_or(u8::MAX);
    [0x52, 0x54, 0x00, kind, 0x00, i]
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A blank sparse 1 GiB state disk: the node's init formats it on first boot.
fn blank_disk(path: &Path) -> Result<(), QemuError> {
    let file = fs::File::create(path).map_err(QemuError::io(path))?;
    file.set_len(1 << 30).map_err(QemuError::io(path))
}

impl ClusterBuilder {
    /// Boots the cluster and waits until every node, control planes included, is Ready (see
    /// [`Cluster::wait_ready`]). On failure every VM started so far is stopped.
    pub fn create(&self) -> Result<Cluster, QemuError> {
        let started = Instant::now();
        if let Ok(existing) = read_record(&self.state)
            && existing.nodes.iter().any(|n| vm::alive(n.pid))
        {
            return Err(QemuError::AlreadyRunning(self.state.clone()));
        }
        fs::create_dir_all(&self.state).map_err(QemuError::io(&self.state))?;
        let kernel = self.image.join("vmlinuz");
        let base = self.image.join("initramfs");
        let base_bytes = fs::read(&base).map_err(|source| QemuError::Image {
            path: base.clone(),
            source,
        })?;
        if !kernel.is_file() {
            return Err(QemuError::Image {
                path: kernel,
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let endpoint = format!("https://{SEGMENT}.{FIRST_HOST}:6443");
        let secrets = ClusterSecrets::generate(&self.name, &endpoint)?;
        let secrets_path = self.state.join("secrets.yaml");
        skiff_pki::write_private(&secrets_path, secrets.to_yaml()?.as_bytes())?;
        let signer = if self.foreign_signer {
            ClusterSecrets::generate(&self.name, &endpoint)?
        } else {
            ClusterSecrets::from_yaml(&secrets.to_yaml()?)?
        };
        let initramfs = self.state.join("initramfs");
        let layered = skiff_image_build::trusted_initramfs(&base_bytes, &[secrets.public_key()], 0)
            .map_err(QemuError::Build)?;
        fs::write(&initramfs, layered).map_err(QemuError::io(&initramfs))?;

        let accel = self
            .accel
            .unwrap_or_else(|| accel::probe(&kernel, &self.state));
        let api_port = match self.api_port {
            Some(p) => p,
            None => free_tcp_port()?,
        };
        let mcast_port = free_udp_port()?;
        let mut record = ClusterRecord {
            name: self.name.clone(),
            accel: accel.as_str().into(),
            api_port,
            kubeconfig: self.state.join("kubeconfig"),
            skiffconfig: self.state.join("skiffconfig"),
            nodes: Vec::new(),
        };
        let mut vms = Vec::new();
        let total = self.control_planes + self.workers;
        for index in 0..total {
            let (role, name) = if index < self.control_planes {
                (Role::ControlPlane, format!("cp-{}", index + 1))
            } else {
                (
                    Role::Worker,
                    format!("worker-{}", index - self.control_planes + 1),
                )
            };
            let dir = self.state.join("nodes").join(&name);
            fs::create_dir_all(&dir).map_err(QemuError::io(&dir))?;
            let address = format!("{SEGMENT}.{}", FIRST_HOST + index);
            let user_mac = mac(0, index);
            let segment_mac = mac(1, index);
            let mut node =
                NodeSpec::new(role, name.parse().map_err(QemuError::value("node name"))?);
            node.network.interfaces = vec![
                Interface {
                    name: None,
                    mac: Some(
                        mac_text(user_mac)
                            .parse()
                            .map_err(QemuError::value("mac"))?,
                    ),
                    dhcp: true,
                    addresses: vec![],
                    routes: vec![],
                },
                Interface {
                    name: None,
                    mac: Some(
                        mac_text(segment_mac)
                            .parse()
                            .map_err(QemuError::value("mac"))?,
                    ),
                    dhcp: false,
                    addresses: vec![
                        format!("{address}/24")
                            .parse()
                            .map_err(QemuError::value("address"))?,
                    ],
                    routes: vec![],
                },
            ];
            for (registry, mirror) in &self.registry_mirrors {
                node.registry_mirrors
                    .entry(registry.parse().map_err(QemuError::value("registry"))?)
                    .or_default()
                    .push(Mirror {
                        url: mirror.parse().map_err(QemuError::value("mirror url"))?,
                        insecure: mirror.starts_with("http://"),
                    });
            }
            let mut spec = VmSpec::new(&name, &dir, &kernel, &initramfs);
            if self.state_disks {
                let disk = dir.join("state.img");
                blank_disk(&disk)?;
                spec.disks.push(disk);
                node.state_disk = Some("/dev/vda".parse().map_err(QemuError::value("disk"))?);
            }
            let config = dir.join("config.yaml");
            skiff_pki::write_private(&config, &signer.signed_config(&node)?)?;
            spec.memory_mib = match role {
                Role::Worker => self.worker_memory_mib.unwrap_or(self.memory_mib),
                Role::ControlPlane => self.memory_mib,
            };
            spec.cpus = self.cpus;
            spec.accel = accel;
            let machine_port = free_tcp_port()?;
            let mut forwards = vec![(machine_port, MACHINE_API_PORT)];
            if index == 0 {
                forwards.push((api_port, 6443));
            }
            spec.nics.push((Nic::User { forwards }, user_mac));
            spec.nics.push((
                Nic::Mcast {
                    group: "230.0.0.1".into(),
                    port: mcast_port,
                },
                segment_mac,
            ));
            spec.fw_cfg.push(("opt/skiff/config".into(), config));
            self.say(&format!(
                "booting {name} ({}, {address}, {} MiB, {}); console: {}",
                match role {
                    Role::ControlPlane => "control plane",
                    Role::Worker => "worker",
                },
                spec.memory_mib,
                accel.as_str(),
                spec.console_log().display()
            ));
            let vm = Vm::start(spec)?;
            record.nodes.push(NodeRecord {
                name: name.clone(),
                role: match role {
                    Role::ControlPlane => "controlplane".into(),
                    Role::Worker => "worker".into(),
                },
                pid: vm.pid,
                address,
                console: vm.spec.console_log(),
                attempts: vm.attempts,
                machine_api: format!("127.0.0.1:{machine_port}"),
                vm: vm.spec.clone(),
            });
            write_record(&self.state, &record)?;
            vms.push(vm);
        }
        let kubeconfig = secrets.admin_kubeconfig(&format!("https://127.0.0.1:{api_port}"))?;
        kubeconfig.write(&record.kubeconfig)?;
        let endpoints: Vec<String> = record.nodes.iter().map(|n| n.machine_api.clone()).collect();
        let skiffconfig = serde_yaml::to_string(&secrets.skiffconfig(&endpoints)?)
            .map_err(|e| QemuError::io(&record.skiffconfig)(std::io::Error::other(e)))?;
        skiff_pki::write_private(&record.skiffconfig, skiffconfig.as_bytes())?;
        let cluster = Cluster {
            record,
            state: self.state.clone(),
            vms,
            secrets,
            create_time: Duration::ZERO,
        };
        if !self.foreign_signer {
            self.say(&format!(
                "waiting for the API and for every node, the control plane's own included, to be Ready (up to {}s)",
                self.ready_timeout.as_secs()
            ));
            cluster.wait_ready(self.ready_timeout)?;
        }
        Ok(Cluster {
            create_time: started.elapsed(),
            ..cluster
        })
    }
}

impl Cluster {
    /// Waits for `boot phase ready` on every node: a control plane's API answers and its own
    /// agent registered the control plane's Node (Ready, tainted `NoSchedule`); a worker's agent
    /// registered its Node. So once it returns, `kubectl get nodes` lists every VM Ready.
    pub fn wait_ready(&self, limit: Duration) -> Result<(), QemuError> {
        let started = Instant::now();
        let deadline = started + limit;
        for (vm, node) in self.vms.iter().zip(&self.record.nodes) {
            let phase = ready_marker(&node.role);
            let left = deadline.saturating_duration_since(Instant::now());
            if !vm.wait_for(phase, left) {
                // Early when the kernel panicked or the VM died.
                return Err(QemuError::NotReady {
                    name: node.name.clone(),
                    waited: started.elapsed(),
                    log: node.console.clone(),
                    tail: tail(&vm.console(), 15),
                });
            }
        }
        Ok(())
    }

    /// Leaves the VMs running after this handle is dropped (the CLI's `create`).
    pub fn keep_running(self) -> ClusterRecord {
        for vm in self.vms {
            vm.release();
        }
        self.record
    }

    /// Stops the VMs and removes the state directory.
    pub fn destroy(self) -> Result<(), QemuError> {
        let state = self.state.clone();
        drop(self);
        destroy(&state)
    }
}

/// The console line that says a node of `role` is up (a control plane's API answers and its
/// Node is registered; a worker's agent registered its Node).
fn ready_marker(_role: &str) -> &'static str {
    "boot phase ready"
}

/// Power-cycles one VM (kill, start again with the same disks and config) and waits until it
/// is up again. Returns its new boot timeline.
pub fn reboot_node(state: &Path, name: &str, limit: Duration) -> Result<Vec<Phase>, QemuError> {
    let mut record = read_record(state)?;
    let node = record
        .nodes
        .iter_mut()
        .find(|n| n.name == name)
        .ok_or_else(|| QemuError::Value {
            what: "node",
            message: format!("no node `{name}` in {}", state.display()),
        })?;
    if vm::alive(node.pid) && is_our_vm(node.pid, &node.name) {
        vm::kill_pid(node.pid);
    }
    let vm = Vm::start(node.vm.clone())?;
    node.pid = vm.pid;
    node.attempts = vm.attempts;
    write_record(state, &record)?;
    let role = record
        .nodes
        .iter()
        .find(|n| n.name == name)
        .map(|n| n.role.clone())
        .unwrap_or_default();
    if !vm.wait_for(ready_marker(&role), limit) {
        let console = vm.console();
        return Err(QemuError::NotReady {
            name: name.to_owned(),
            waited: limit,
            log: vm.spec.console_log(),
            tail: tail(&console, 15),
        });
    }
    let phases = timeline::parse(&vm.console());
    vm.release();
    Ok(phases)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn record_path(state: &Path) -> PathBuf {
    state.join("cluster.json")
}

fn write_record(state: &Path, record: &ClusterRecord) -> Result<(), QemuError> {
    let path = record_path(state);
    let json = serde_json::to_vec_pretty(record).map_err(QemuError::Json)?;
    fs::write(&path, json).map_err(QemuError::io(&path))
}

/// Reads `STATE/cluster.json`.
pub fn read_record(state: &Path) -> Result<ClusterRecord, QemuError> {
    let path = record_path(state);
    let bytes = fs::read(&path).map_err(QemuError::io(&path))?;
    serde_json::from_slice(&bytes).map_err(QemuError::Json)
}

/// One VM's status.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub record: NodeRecord,
    pub running: bool,
    pub phases: Vec<Phase>,
    /// What init's last boot said about the state disk (formatted, mounted, or why not).
    pub state_disk: Vec<String>,
}

/// Init's console lines about the state disk, without the `skiff: ` prefix.
fn state_disk_lines(console: &str) -> Vec<String> {
    console
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("skiff: formatted ")
                || l.starts_with("skiff: state disk ")
                || l.starts_with("skiff: cannot format state disk ")
                || l.starts_with("skiff: no state disk")
        })
        .map(|l| l.trim_start_matches("skiff: ").to_owned())
        .collect()
}

/// The VMs of the cluster in `state`, with their boot timelines.
pub fn status(state: &Path) -> Result<(ClusterRecord, Vec<NodeStatus>), QemuError> {
    let record = read_record(state)?;
    let nodes = record
        .nodes
        .iter()
        .map(|n| {
            let console = fs::read_to_string(&n.console).unwrap_or_default();
            NodeStatus {
                record: n.clone(),
                running: vm::alive(n.pid) && is_our_vm(n.pid, &n.name),
                phases: timeline::parse(&console),
                state_disk: state_disk_lines(&console),
            }
        })
        .collect();
    Ok((record, nodes))
}

fn is_our_vm(pid: i32, name: &str) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            String::from_utf8_lossy(&c)
                .split('\0')
                .any(|arg| arg == format!("skiff-{name}"))
        })
        .unwrap_or(false)
}

/// Stops every VM of the cluster in `state` and removes the directory. Idempotent. Besides
/// the VMs in `cluster.json` it stops any whose pid file is under `state/nodes` (a VM whose
/// start was interrupted before it was recorded).
pub fn destroy(state: &Path) -> Result<(), QemuError> {
    if let Ok(record) = read_record(state) {
        for node in &record.nodes {
            if vm::alive(node.pid) && is_our_vm(node.pid, &node.name) {
                vm::kill_pid(node.pid);
            }
        }
    }
    let nodes = state.join("nodes");
    for entry in fs::read_dir(&nodes).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = fs::read_to_string(entry.path().join("qemu.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pid) = pid
            && vm::alive(pid)
            && is_our_vm(pid, &name)
        {
            vm::kill_pid(pid);
        }
    }
    match fs::remove_dir_all(state) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(QemuError::io(state)(e)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_picks_the_state_disk_lines_from_a_console() {
        let console = "[    1.2] virtio_blk virtio1: [vda] 2097152 512-byte logical blocks\r\n\
             skiff: boot phase config at 2.100s (+0.300s)\r\n\
             skiff: formatted /dev/vda (1024 MiB) in 41 ms at 2.151s: ext4, 65536 inodes, 32 MiB journal\r\n\
             skiff: state disk /dev/vda mounted on /var\r\n\
             skiff: eth0 has address 10.0.2.15\r\n";
        assert_eq!(
            super::state_disk_lines(console),
            [
                "formatted /dev/vda (1024 MiB) in 41 ms at 2.151s: ext4, 65536 inodes, 32 MiB journal",
                "state disk /dev/vda mounted on /var"
            ]
        );
    }
}
