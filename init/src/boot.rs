//! The boot sequence, step by step, over [`Sys`]: early mounts, modules, clock, finding and
//! verifying the machine config, the state disk, hostname and network from the config, and the
//! role's services. Every step logs what failed and what to do; none of them panics, and a bad
//! config makes the node wait for a good one instead of halting.
//!
//! Phases are printed as `skiff: boot phase <name> at <seconds>s` so tools (the QEMU harness)
//! can build a boot timeline from the console log.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, UNIX_EPOCH};

use skiff_machine::{BootstrapToken, ConfigError, MachineConfig, PublicKey, Role, VerifiedConfig};

use crate::cmdline::Cmdline;
use crate::services::Service;
use crate::sys::{Command, Lease, Link, MsFlags, Sys};

/// Where things are on a node.
pub mod paths {
    /// Public keys the node trusts for machine configs (one PEM file each); the image build
    /// puts the cluster key here in a small second cpio appended to the initramfs.
    pub const TRUSTED_KEYS: &str = "/etc/skiff/trusted-keys";
    /// The build's SOURCE_DATE_EPOCH: the clock never starts earlier than this.
    pub const BUILD_EPOCH: &str = "/etc/skiff/build-epoch";
    /// Module files to load, one path per line, dependencies first.
    pub const MODULE_LIST: &str = "/lib/modules/skiff.load";
    pub const FW_CFG_CONFIG: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/skiff/config/raw";
    pub const STATE: &str = "/var/lib/skiff";
    pub const GENERATION: &str = "/var/lib/skiff/machine/generation";
    pub const APPLIED_CONFIG: &str = "/var/lib/skiff/machine/config.yaml";
    pub const RANDOM_SEED: &str = "/var/lib/skiff/random-seed";
    /// A control plane's own node credentials (client certificate `system:node:<hostname>`,
    /// issued from the cluster CA), kept across reboots and reissued when they stop fitting.
    pub const NODE_KUBECONFIG: &str = "/var/lib/skiff/pki/node-kubeconfig";
    pub const RUN: &str = "/run/skiff";
}

/// Prints the boot phases with their times since the kernel started.
#[derive(Debug, Default)]
pub struct Timeline {
    pub phases: Vec<(String, Duration)>,
}

impl Timeline {
    pub fn mark(&mut self, sys: &dyn Sys, phase: &str) {
        let at = sys.since_boot();
        let since_last = self
            .phases
            .last()
            .map_or(at, |(_, t)| at.saturating_sub(*t));
        sys.console(&format!(
            "skiff: boot phase {phase} at {:.3}s (+{:.3}s)",
            at.as_secs_f64(),
            since_last.as_secs_f64()
        ));
        self.phases.push((phase.to_owned(), at));
    }
}

/// Mounts the API filesystems. A failure is logged and the boot goes on.
pub fn early_mounts(sys: &dyn Sys) {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let table: [(&str, &str, &str, MsFlags, &str, bool); 10] = [
        ("proc", "/proc", "proc", nosuid, "", true),
        ("sysfs", "/sys", "sysfs", nosuid, "", true),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            "mode=0755",
            true,
        ),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            "mode=0620,ptmxmode=0666",
            true,
        ),
        (
            "tmpfs",
            "/dev/shm",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=1777",
            true,
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=0755",
            true,
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=1777",
            true,
        ),
        (
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            nosuid,
            "nsdelegate",
            true,
        ),
        ("bpf", "/sys/fs/bpf", "bpf", nosuid, "mode=0700", false),
        (
            "securityfs",
            "/sys/kernel/security",
            "securityfs",
            nosuid,
            "",
            false,
        ),
    ];
    for (source, target, fstype, flags, data, required) in table {
        let _ = sys.mkdir_all(target);
        if let Err(e) = sys.mount(source, target, fstype, flags, data)
            && required
        {
            sys.console(&format!(
                "skiff: cannot mount {fstype} on {target}: {e}; the kernel may lack it"
            ));
        }
    }
    for dir in [paths::RUN, "/var/lib", "/etc/skiff"] {
        let _ = sys.mkdir_all(dir);
    }
}

/// Loads the modules listed in [`paths::MODULE_LIST`] in order. Returns how many loaded.
pub fn load_modules(sys: &dyn Sys) -> usize {
    let list = match sys.read(paths::MODULE_LIST) {
        Ok(list) => list,
        Err(e) => {
            sys.console(&format!(
                "skiff: no module list at {}: {e}",
                paths::MODULE_LIST
            ));
            return 0;
        }
    };
    let mut loaded = 0;
    for line in String::from_utf8_lossy(&list).lines() {
        let path = line.trim();
        if path.is_empty() || path.starts_with('#') {
            continue;
        }
        let full = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/lib/modules/{path}")
        };
        match sys.load_module(&full) {
            Ok(()) => loaded += 1,
            Err(e) => sys.console(&format!("skiff: module {full} did not load: {e}")),
        }
    }
    loaded
}

/// Moves the clock forward to the build time when it is earlier (no RTC, or a dead battery).
pub fn clamp_clock(sys: &dyn Sys) {
    let Ok(text) = sys.read(paths::BUILD_EPOCH) else {
        return;
    };
    let Ok(epoch) = String::from_utf8_lossy(&text).trim().parse::<u64>() else {
        return;
    };
    let floor = UNIX_EPOCH + Duration::from_secs(epoch);
    if sys.wall_clock() < floor {
        match sys.set_wall_clock(floor) {
            Ok(()) => sys.console("skiff: clock was before the build date; set to the build date"),
            Err(e) => sys.console(&format!("skiff: cannot set the clock: {e}")),
        }
    }
}

/// The keys in [`paths::TRUSTED_KEYS`]; unreadable files are reported and skipped.
pub fn trusted_keys(sys: &dyn Sys) -> Vec<PublicKey> {
    let mut keys = Vec::new();
    for name in sys.list_dir(paths::TRUSTED_KEYS).unwrap_or_default() {
        let path = format!("{}/{name}", paths::TRUSTED_KEYS);
        match sys
            .read(&path)
            .map(|b| PublicKey::parse(&String::from_utf8_lossy(&b)))
        {
            Ok(Ok(key)) => keys.push(key),
            Ok(Err(e)) => sys.console(&format!("skiff: ignoring trusted key {path}: {e}")),
            Err(e) => sys.console(&format!("skiff: cannot read {path}: {e}")),
        }
    }
    keys
}

/// Where a config came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub source: String,
    pub bytes: Vec<u8>,
}

const CONFIG_MARKER: &[u8] = b"# skiff-signature:";

/// Looks for a config: `skiff.config=` (path or http URL), then QEMU fw_cfg, then a config
/// drive (a virtio disk whose first bytes are a signed config).
pub fn find_config(sys: &dyn Sys, cmdline: &Cmdline) -> Option<Found> {
    let limit = skiff_machine::MAX_CONFIG_BYTES;
    if let Some(location) = &cmdline.config {
        let got = if location.starts_with("http://") || location.starts_with("https://") {
            sys.http_get(location, limit)
        } else {
            sys.read(location)
        };
        match got {
            Ok(bytes) => {
                return Some(Found {
                    source: location.clone(),
                    bytes,
                });
            }
            Err(e) => sys.console(&format!("skiff: cannot read config from {location}: {e}")),
        }
    }
    if let Ok(bytes) = sys.read(paths::FW_CFG_CONFIG) {
        return Some(Found {
            source: "qemu fw_cfg opt/skiff/config".into(),
            bytes,
        });
    }
    for name in sys.list_dir("/sys/block").unwrap_or_default() {
        if !(name.starts_with("vd") || name.starts_with("sr")) {
            continue;
        }
        let dev = format!("/dev/{name}");
        let Ok(bytes) = sys.read_head(&dev, limit + 1) else {
            continue;
        };
        if bytes.starts_with(CONFIG_MARKER) {
            let end = bytes
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(bytes.len())
                .min(limit + 1);
            return Some(Found {
                source: format!("config drive {dev}"),
                bytes: bytes[..end].to_vec(),
            });
        }
    }
    None
}

/// What to tell the operator about a refused config.
pub fn advice(error: &ConfigError) -> &'static str {
    match error {
        ConfigError::Signature(_) => {
            "sign it with the cluster's key (`skiff gen config`) or boot an image that trusts its key"
        }
        ConfigError::StaleGeneration { .. } => "apply a config with a higher generation",
        ConfigError::TooLarge { .. } => "configs are a few kilobytes; check the file",
        _ => "fix the config and sign it again",
    }
}

/// Verifies a found config: signature, schema, rules. Prints why when refused.
pub fn verify(sys: &dyn Sys, found: &Found, keys: &[PublicKey]) -> Option<VerifiedConfig> {
    match skiff_machine::verify(&found.bytes, keys) {
        Ok(v) => {
            sys.console(&format!(
                "skiff: config from {} verified: role {:?}, generation {}, signed by key {}, sha256 {}",
                found.source,
                v.config.role,
                v.config.generation,
                v.key_id,
                v.sha256
            ));
            Some(v)
        }
        Err(e) => {
            let trusted: Vec<String> = keys.iter().map(|k| k.key_id().to_string()).collect();
            sys.console(&format!(
                "skiff: REFUSED config from {}: {e}. Trusted keys: [{}]. No role is started; {}. Waiting for a valid config.",
                found.source,
                trusted.join(", "),
                advice(&e)
            ));
            None
        }
    }
}

/// How much of each end of a disk must read back as zeros before init formats it.
const BLANK_CHECK: usize = 1 << 20;

/// The label of a state disk init formats.
pub const STATE_LABEL: &str = "skiff-state";

/// Mounts the state disk on `/var` when the config names one. A blank disk (no ext4 magic,
/// first and last MiB all zeros) is formatted first; a disk holding anything else is never
/// written. Returns whether state is persistent.
pub fn mount_state(sys: &dyn Sys, config: &MachineConfig) -> bool {
    let Some(disk) = &config.machine.state_disk else {
        sys.console("skiff: no state disk configured; state lives in memory");
        return false;
    };
    let dev = disk.as_str();
    for _ in 0..50 {
        if sys.exists(dev) {
            break;
        }
        sys.sleep(Duration::from_millis(100));
    }
    let head = match sys.read_head(dev, BLANK_CHECK) {
        Ok(bytes) => bytes,
        Err(e) => {
            sys.console(&format!(
                "skiff: state disk {dev} cannot be read ({e}); state lives in memory"
            ));
            return false;
        }
    };
    if !skiff_mkfs::has_ext4_magic(&head) && !format_blank(sys, dev, &head) {
        return false;
    }
    let _ = sys.mkdir_all("/var");
    match sys.mount(
        dev,
        "/var",
        "ext4",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "",
    ) {
        Ok(()) => {
            let _ = sys.mkdir_all(paths::STATE);
            sys.console(&format!("skiff: state disk {dev} mounted on /var"));
            true
        }
        Err(e) => {
            sys.console(&format!(
                "skiff: cannot mount state disk {dev}: {e}; state lives in memory"
            ));
            false
        }
    }
}

/// Formats `dev` when it is blank; says why not otherwise. Returns whether it now holds ext4.
fn format_blank(sys: &dyn Sys, dev: &str, head: &[u8]) -> bool {
    let size = match sys.size_of(dev) {
        Ok(size) => size,
        Err(e) => {
            sys.console(&format!(
                "skiff: cannot size state disk {dev} ({e}); state lives in memory"
            ));
            return false;
        }
    };
    let tail_len = u64::try_from(BLANK_CHECK).unwrap_or(u64::MAX).min(size);
    let tail = sys.read_at(dev, size - tail_len, BLANK_CHECK);
    let zero = |b: &[u8]| b.iter().all(|&x| x == 0);
    let blank = match &tail {
        Ok(tail) => zero(head) && zero(tail),
        Err(_) => false,
    };
    if !blank {
        sys.console(&format!(
            "skiff: state disk {dev} holds data that is not an ext4 filesystem; init formats only \
             blank disks (first and last MiB all zeros) and leaves this one untouched; wipe it \
             or name another disk in machine.stateDisk; state lives in memory"
        ));
        return false;
    }
    let random = sys.read_head("/dev/urandom", 32).unwrap_or_default();
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = random.get(i).copied().unwrap_or_default();
    }
    if random.len() < 32 {
        // No randomness: still unique enough per disk and boot, from the clocks.
        let mix = format!("{dev}{:?}{:?}", sys.since_boot(), sys.wall_clock());
        for (i, b) in mix.bytes().enumerate() {
            seed[i % 32] ^= b;
        }
    }
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&seed[..16]);
    uuid[6] = (uuid[6] & 0x0f) | 0x40; // RFC 4122 version 4
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    let mut hash_seed = [0u8; 16];
    hash_seed.copy_from_slice(&seed[16..]);
    let time = sys
        .wall_clock()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    let options = skiff_mkfs::Options {
        label: STATE_LABEL.into(),
        uuid,
        hash_seed,
        time,
    };
    let started = sys.since_boot();
    match sys.format_ext4(dev, &options) {
        Ok(summary) => {
            let took = sys.since_boot().saturating_sub(started);
            sys.console(&format!(
                "skiff: formatted {dev} ({} MiB) in {} ms at {:.3}s: ext4, {} inodes, {} MiB journal",
                summary.bytes >> 20,
                took.as_millis(),
                sys.since_boot().as_secs_f64(),
                summary.inodes,
                (summary.journal_blocks * 4096) >> 20
            ));
            true
        }
        Err(e) => {
            sys.console(&format!(
                "skiff: cannot format state disk {dev}: {e}; state lives in memory"
            ));
            false
        }
    }
}

/// Feeds the saved seed to the kernel's pool and saves a fresh one for the next boot.
pub fn seed_entropy(sys: &dyn Sys) {
    if let Ok(seed) = sys.read(paths::RANDOM_SEED) {
        let _ = sys.write("/dev/urandom", &seed);
    }
    if let Ok(fresh) = sys.read_head("/dev/urandom", 512) {
        let _ = sys.mkdir_all(paths::STATE);
        let _ = sys.write(paths::RANDOM_SEED, &fresh);
    }
}

/// Refuses a replayed older config, then records this generation.
pub fn check_and_record_generation(
    sys: &dyn Sys,
    verified: &VerifiedConfig,
    raw: &[u8],
) -> Result<(), ConfigError> {
    let last = sys
        .read(paths::GENERATION)
        .ok()
        .and_then(|b| String::from_utf8_lossy(&b).trim().parse::<u64>().ok());
    skiff_machine::check_generation(last, &verified.config)?;
    let _ = sys.mkdir_all("/var/lib/skiff/machine");
    let _ = sys.write(
        paths::GENERATION,
        verified.config.generation.to_string().as_bytes(),
    );
    let _ = sys.write(paths::APPLIED_CONFIG, raw);
    Ok(())
}

/// Brings up loopback and every interface, configured as the config says (DHCP on every
/// physical interface when it says nothing). Returns the leases and addresses applied.
pub fn configure_network(sys: &dyn Sys, config: Option<&MachineConfig>) -> Vec<(String, IpAddr)> {
    let links = match sys.links() {
        Ok(links) => links,
        Err(e) => {
            sys.console(&format!("skiff: cannot list network interfaces: {e}"));
            return Vec::new();
        }
    };
    let mut up = Vec::new();
    for link in &links {
        if let Err(e) = sys.link_up(link.index) {
            sys.console(&format!("skiff: cannot bring {} up: {e}", link.name));
        }
    }
    let wanted = config
        .map(|c| c.machine.network.interfaces.as_slice())
        .unwrap_or_default();
    let mut nameservers: Vec<IpAddr> = config
        .map(|c| c.machine.network.nameservers.clone())
        .unwrap_or_default();
    for link in links.iter().filter(|l| !l.loopback) {
        let spec = wanted.iter().find(|i| {
            i.name.as_ref().is_some_and(|n| n.as_str() == link.name)
                || i.mac
                    .as_ref()
                    .is_some_and(|m| m.as_str() == link.mac_string())
        });
        match spec {
            None if !wanted.is_empty() => {}
            None => {
                if let Some(lease) = dhcp(sys, link) {
                    nameservers.extend(lease.dns.iter().copied());
                    up.push((link.name.clone(), lease.address));
                }
            }
            Some(i) if i.dhcp => {
                if let Some(lease) = dhcp(sys, link) {
                    nameservers.extend(lease.dns.iter().copied());
                    up.push((link.name.clone(), lease.address));
                }
            }
            Some(i) => {
                for address in &i.addresses {
                    match sys.add_address(link.index, address.addr(), address.prefix()) {
                        Ok(()) => up.push((link.name.clone(), address.addr())),
                        Err(e) => sys.console(&format!(
                            "skiff: cannot add {address} to {}: {e}",
                            link.name
                        )),
                    }
                }
                for route in &i.routes {
                    let to = route.to;
                    if let Err(e) =
                        sys.add_route(link.index, to.addr(), to.prefix(), Some(route.via))
                    {
                        sys.console(&format!(
                            "skiff: cannot add route to {to} via {}: {e}",
                            route.via
                        ));
                    }
                }
            }
        }
    }
    if !nameservers.is_empty() {
        let text: String = nameservers
            .iter()
            .map(|n| format!("nameserver {n}\n"))
            .collect();
        let _ = sys.write("/etc/resolv.conf", text.as_bytes());
    }
    for (name, ip) in &up {
        sys.console(&format!("skiff: {name} has address {ip}"));
    }
    up
}

fn dhcp(sys: &dyn Sys, link: &Link) -> Option<Lease> {
    match sys.dhcp(link, Duration::from_secs(6)) {
        Ok(lease) => {
            if let Err(e) = sys.add_address(link.index, lease.address, lease.prefix) {
                sys.console(&format!(
                    "skiff: cannot add {} to {}: {e}",
                    lease.address, link.name
                ));
                return None;
            }
            if let Some(router) = lease.router {
                let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
                if let Err(e) = sys.add_route(link.index, any, 0, Some(router)) {
                    sys.console(&format!(
                        "skiff: cannot add default route via {router}: {e}"
                    ));
                }
            }
            Some(lease)
        }
        Err(e) => {
            sys.console(&format!("skiff: DHCP on {} gave no lease: {e}", link.name));
            None
        }
    }
}

/// The host of `https://host:port`.
fn endpoint_host(endpoint: &str) -> String {
    let rest = endpoint.trim_start_matches("https://");
    let authority = rest.split('/').next().unwrap_or(rest);
    if let Some(inside) = authority.strip_prefix('[') {
        return inside.split(']').next().unwrap_or(inside).to_owned();
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_owned()
}

/// The label and taint a control plane's Node carries (kubeadm's).
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane=";
pub const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane:NoSchedule";

/// `skiff agent` arguments every node's agent gets.
fn agent_args(config: &MachineConfig, kubeconfig: String) -> Vec<String> {
    vec![
        "agent".to_owned(),
        "--kubeconfig".to_owned(),
        kubeconfig,
        "--node-name".to_owned(),
        config.machine.hostname.to_string(),
        "--data-dir".to_owned(),
        format!("{}/agent", paths::STATE),
    ]
}

/// `--registry-mirror REGISTRY=URL` for every mirror in the config.
fn mirror_args(config: &MachineConfig) -> Vec<String> {
    let mut args = Vec::new();
    for (registry, mirrors) in &config.machine.registry_mirrors {
        for mirror in mirrors {
            args.push("--registry-mirror".to_owned());
            args.push(format!("{registry}={}", mirror.url));
        }
    }
    args
}

/// The address a control plane's Node reports: the cluster endpoint's host when that is one
/// of this machine's addresses, else the first static address in the config, else the first
/// address the network got. (Its agent talks to 127.0.0.1, which says nothing about it.)
fn control_plane_node_ip(config: &MachineConfig, addresses: &[IpAddr]) -> Option<IpAddr> {
    let endpoint = endpoint_host(config.cluster.endpoint.as_str())
        .parse::<IpAddr>()
        .ok()
        .filter(|ip| addresses.contains(ip));
    let configured = config
        .machine
        .network
        .interfaces
        .iter()
        .flat_map(|i| &i.addresses)
        .map(|a| a.addr())
        .next();
    endpoint
        .or(configured)
        .or_else(|| addresses.iter().copied().find(|a| !a.is_loopback()))
}

/// The control plane's own agent: its node kubeconfig (kept from an earlier boot while it fits,
/// else issued now from the cluster CA) and its arguments. `None`, after saying why, when no
/// credentials can be made: the API server then runs without a node of its own.
fn control_plane_agent_args(
    sys: &dyn Sys,
    config: &MachineConfig,
    ca_key: &str,
    addresses: &[IpAddr],
) -> Option<Vec<String>> {
    let cluster = &config.cluster;
    let node = config.machine.hostname.as_str();
    let url = format!("https://127.0.0.1:{}", cluster.endpoint.port());
    let issued =
        skiff_pki::CertificateAuthority::from_pem(cluster.ca.as_str(), ca_key).and_then(|ca| {
            let existing = sys
                .read(paths::NODE_KUBECONFIG)
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            skiff_pki::node_kubeconfig(&ca, cluster.name.as_str(), &url, node, existing.as_deref())
        });
    let (kubeconfig, fresh) = match issued {
        Ok(got) => got,
        Err(e) => {
            sys.console(&format!(
                "skiff: cannot make this control plane's node certificate from the cluster CA ({e});                  it will not run pods or show in `kubectl get nodes`. Regenerate the config with `skiff gen config`"
            ));
            return None;
        }
    };
    if fresh {
        let dir = paths::NODE_KUBECONFIG
            .rsplit_once('/')
            .map_or(paths::STATE, |(d, _)| d);
        let written = sys
            .mkdir_all(dir)
            .and_then(|()| sys.write(paths::NODE_KUBECONFIG, kubeconfig.to_yaml().as_bytes()));
        if let Err(e) = written {
            sys.console(&format!(
                "skiff: cannot write {}: {e}; this control plane runs no agent",
                paths::NODE_KUBECONFIG
            ));
            return None;
        }
        sys.console(&format!(
            "skiff: issued node certificate {} for this control plane's agent",
            skiff_pki::node_user(node)
        ));
    }
    let mut args = agent_args(config, paths::NODE_KUBECONFIG.to_owned());
    if let Some(ip) = control_plane_node_ip(config, addresses) {
        args.extend(["--node-ip".to_owned(), ip.to_string()]);
    }
    args.extend([
        "--node-labels".to_owned(),
        CONTROL_PLANE_LABEL.to_owned(),
        "--register-with-taints".to_owned(),
        CONTROL_PLANE_TAINT.to_owned(),
    ]);
    args.extend(mirror_args(config));
    Some(args)
}

/// Writes the files the role's services read and returns the services to run, in start
/// order. `addresses` are the ones the network configuration gave this machine.
pub fn role_services(
    sys: &dyn Sys,
    config: &MachineConfig,
    exe: &str,
    addresses: &[IpAddr],
) -> Vec<Service> {
    let run = paths::RUN;
    let _ = sys.mkdir_all(run);
    let env = vec![
        ("PATH".to_owned(), "/bin:/sbin".to_owned()),
        ("SKIFF_LOG".to_owned(), "info".to_owned()),
        // mimalloc returns freed memory to the kernel at once instead of after 1 s: a node VM
        // may have little RAM, and image pulls free large buffers in bursts.
        ("MIMALLOC_PURGE_DELAY".to_owned(), "0".to_owned()),
    ];
    let cluster = &config.cluster;
    match (config.role, &cluster.control_plane, &cluster.worker) {
        (Role::ControlPlane, Some(secrets), _) => {
            let cert = format!("{run}/ca.crt");
            let key = format!("{run}/ca.key");
            let _ = sys.write(&cert, cluster.ca.as_str().as_bytes());
            let _ = sys.write(&key, secrets.ca_key.as_str().as_bytes());
            // Every control plane signs service-account tokens with the cluster's key, so
            // tokens stay valid across control planes and reinstalls.
            let sa_key = format!("{run}/sa.key");
            let _ = sys.write(&sa_key, secrets.service_account_key.as_str().as_bytes());
            let data = format!("{}/server", paths::STATE);
            let tokens = format!("{data}/tokens.csv");
            let written = sys
                .mkdir_all(&data)
                .and_then(|()| sys.write(&tokens, tokens_csv(&secrets.bootstrap_token).as_bytes()));
            if let Err(e) = written {
                sys.console(&format!(
                    "skiff: cannot write {tokens}: {e}; workers will not be able to join"
                ));
            }
            let args = vec![
                "server".to_owned(),
                "--data-dir".to_owned(),
                data,
                "--listen".to_owned(),
                format!("0.0.0.0:{}", cluster.endpoint.port()),
                "--ca-cert".to_owned(),
                cert,
                "--ca-key".to_owned(),
                key,
                "--san".to_owned(),
                endpoint_host(cluster.endpoint.as_str()),
                "--service-account-key-file".to_owned(),
                sa_key,
            ];
            let server = Service::new(
                "server",
                Command {
                    program: exe.into(),
                    args,
                    env: env.clone(),
                },
            );
            let mut services = vec![server];
            // The control plane is a node too: its agent registers it (labelled and tainted
            // so ordinary pods stay off it) once the API server listens.
            if let Some(args) =
                control_plane_agent_args(sys, config, secrets.ca_key.as_str(), addresses)
            {
                let api = SocketAddr::from((Ipv4Addr::LOCALHOST, cluster.endpoint.port()));
                services.push(
                    Service::new(
                        "agent",
                        Command {
                            program: exe.into(),
                            args,
                            env,
                        },
                    )
                    .after(api),
                );
            }
            services
        }
        (Role::Worker, _, Some(secrets)) => {
            let kubeconfig = format!("{run}/bootstrap-kubeconfig");
            let _ = sys.write(
                &kubeconfig,
                bootstrap_kubeconfig(config, secrets.bootstrap_token.as_str()).as_bytes(),
            );
            let mut args = agent_args(config, kubeconfig);
            args.extend(mirror_args(config));
            vec![Service::new(
                "agent",
                Command {
                    program: exe.into(),
                    args,
                    env,
                },
            )]
        }
        _ => {
            sys.console("skiff: the config's role has no credentials for it; nothing to start");
            Vec::new()
        }
    }
}

/// The API server's token file (kube-apiserver `--token-auth-file` format) with the cluster's
/// bootstrap token: user `system:bootstrap:<id>` in the groups a joining worker needs.
pub fn tokens_csv(token: &BootstrapToken) -> String {
    let id = token.id();
    format!(
        "# written by skiff init from the machine config on every boot\n\
         {},system:bootstrap:{id},{id},\"system:bootstrappers,system:bootstrappers:worker,system:nodes\"\n",
        token.as_str()
    )
}

/// A token kubeconfig for the worker's agent to register with.
fn bootstrap_kubeconfig(config: &MachineConfig, token: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(config.cluster.ca.as_str());
    let name = config.cluster.name.as_str();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: bootstrap\n  user:\n    token: {token}\ncontexts:\n- name: bootstrap@{name}\n  context:\n    cluster: {name}\n    user: bootstrap\ncurrent-context: bootstrap@{name}\n",
        config.cluster.endpoint
    )
}

/// The line the node agent prints once its Node object is registered with a Ready condition.
pub const AGENT_REGISTERED: &str = "registered";

/// How init decides the role is up (the `ready` boot phase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyCheck {
    /// Every one of these passes.
    All(Vec<ReadyCheck>),
    /// A TCP connection opens (the control plane's API port).
    Tcp(SocketAddr),
    /// A service printed a line containing `needle` (the agent registered its Node).
    LogLine {
        service: &'static str,
        needle: &'static str,
    },
}

impl ReadyCheck {
    /// Whether the role is up now.
    pub fn passed(&self, sys: &dyn Sys, services: &[Service], timeout: Duration) -> bool {
        match self {
            Self::All(checks) => checks.iter().all(|c| c.passed(sys, services, timeout)),
            Self::Tcp(addr) => sys.tcp_probe(*addr, timeout),
            Self::LogLine { service, needle } => {
                services.iter().filter(|s| s.name == *service).any(|s| {
                    s.log
                        .lock()
                        .is_ok_and(|log| log.lines().any(|l| l.contains(needle)))
                })
            }
        }
    }
}

/// Where the role's readiness is checked: a control plane is ready when its API port answers
/// and its own agent registered its Node; a worker when its agent registered its Node. A
/// control plane that could not start an agent (see [`role_services`]) is ready with its API.
pub fn ready_probe(config: &MachineConfig, services: &[Service]) -> Option<ReadyCheck> {
    let registered = ReadyCheck::LogLine {
        service: "agent",
        needle: AGENT_REGISTERED,
    };
    match config.role {
        Role::ControlPlane => {
            let api = ReadyCheck::Tcp(SocketAddr::from((
                Ipv4Addr::LOCALHOST,
                config.cluster.endpoint.port(),
            )));
            if services.iter().any(|s| s.name == "agent") {
                Some(ReadyCheck::All(vec![api, registered]))
            } else {
                Some(api)
            }
        }
        Role::Worker => Some(registered),
    }
}

/// A boot from the kernel's hand-off to services started, run to the point where the main
/// loop takes over. Returns `None` while no valid config has been found (call again later).
pub struct Boot<'a> {
    pub sys: &'a dyn Sys,
    pub timeline: Timeline,
    pub exe: String,
    pub cmdline: Cmdline,
    pub keys: Vec<PublicKey>,
    pub network_done: bool,
    pub persistent: bool,
    /// The addresses the network configuration gave this machine.
    pub addresses: Vec<IpAddr>,
}

impl<'a> Boot<'a> {
    /// The steps before a config is needed.
    pub fn start(sys: &'a dyn Sys, exe: &str) -> Self {
        let mut timeline = Timeline::default();
        timeline.mark(sys, "kernel");
        early_mounts(sys);
        let modules = load_modules(sys);
        sys.console(&format!("skiff: loaded {modules} kernel modules"));
        clamp_clock(sys);
        let cmdline = sys
            .read("/proc/cmdline")
            .map(|b| Cmdline::parse(&String::from_utf8_lossy(&b)))
            .unwrap_or_default();
        if let Some(name) = &cmdline.hostname {
            let _ = sys.set_hostname(name);
        }
        let keys = trusted_keys(sys);
        if keys.is_empty() {
            sys.console(&format!(
                "skiff: this image trusts no config-signing key ({} is empty); rebuild its key layer with `skiff image build --trust KEY`",
                paths::TRUSTED_KEYS
            ));
        }
        timeline.mark(sys, "init");
        Self {
            sys,
            timeline,
            exe: exe.to_owned(),
            cmdline,
            keys,
            network_done: false,
            persistent: false,
            addresses: Vec::new(),
        }
    }

    /// One attempt to find, verify and apply a config. `Some` carries the services to run.
    pub fn try_config(&mut self) -> Option<(VerifiedConfig, Vec<Service>)> {
        let sys = self.sys;
        let needs_network = self
            .cmdline
            .config
            .as_deref()
            .is_some_and(|c| c.starts_with("http"));
        if needs_network && !self.network_done {
            self.addresses = configure_network(sys, None)
                .into_iter()
                .map(|(_, ip)| ip)
                .collect();
            self.network_done = true;
            self.timeline.mark(sys, "network");
        }
        let Some(found) = find_config(sys, &self.cmdline) else {
            sys.console("skiff: no machine config found (kernel argument skiff.config=, QEMU fw_cfg opt/skiff/config, or a config drive); waiting");
            return None;
        };
        let verified = verify(sys, &found, &self.keys)?;
        self.timeline.mark(sys, "config");
        self.persistent = mount_state(sys, &verified.config);
        let (verified, found) = crate::machine_api::prefer_stored(sys, &self.keys, verified, found);
        seed_entropy(sys);
        if let Err(e) = check_and_record_generation(sys, &verified, &found.bytes) {
            sys.console(&format!(
                "skiff: REFUSED config from {}: {e}. {}. Waiting for a valid config.",
                found.source,
                advice(&e)
            ));
            return None;
        }
        if let Err(e) = sys.set_hostname(verified.config.machine.hostname.as_str()) {
            sys.console(&format!("skiff: cannot set hostname: {e}"));
        }
        if !self.network_done {
            self.addresses = configure_network(sys, Some(&verified.config))
                .into_iter()
                .map(|(_, ip)| ip)
                .collect();
            self.network_done = true;
            self.timeline.mark(sys, "network");
        }
        let services = role_services(sys, &verified.config, &self.exe, &self.addresses);
        Some((verified, services))
    }
}
