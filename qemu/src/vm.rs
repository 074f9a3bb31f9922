//! One QEMU virtual machine: a builder for its command line, start with silent-boot
//! detection and retry, and a handle that kills the VM when dropped unless it is released
//! (so a failing test or tool never leaves a VM running).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::QemuError;
use crate::accel::Accel;

/// How a VM's NIC reaches the world.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Nic {
    /// QEMU user networking (DHCP from QEMU, host reachable at 10.0.2.2), with TCP ports of the
    /// host's loopback forwarded to guest ports.
    User { forwards: Vec<(u16, u16)> },
    /// An L2 segment shared by every VM using the same multicast group and port on the
    /// host's loopback.
    Mcast { group: String, port: u16 },
}

/// What to boot and how.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VmSpec {
    pub name: String,
    pub dir: PathBuf,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub append: String,
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: Accel,
    pub nics: Vec<(Nic, [u8; 6])>,
    /// Files exposed through fw_cfg (`opt/skiff/config` → path).
    pub fw_cfg: Vec<(String, PathBuf)>,
    pub disks: Vec<PathBuf>,
}

impl VmSpec {
    pub fn new(name: &str, dir: &Path, kernel: &Path, initramfs: &Path) -> Self {
        Self {
            name: name.to_owned(),
            dir: dir.to_owned(),
            kernel: kernel.to_owned(),
            initramfs: initramfs.to_owned(),
            append: "console=ttyS0 panic=10 quiet".to_owned(),
            memory_mib: 512,
            cpus: 1,
            accel: Accel::Tcg,
            nics: Vec::new(),
            fw_cfg: Vec::new(),
            disks: Vec::new(),
        }
    }

    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }

    /// The QEMU command line (daemonized, writes its pid file).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-M", "q35", "-nodefaults", "-no-user-config"])
            .args(["-display", "none", "-monitor", "none"])
            .args(["-accel", self.accel.as_str()])
            .args(["-m", &self.memory_mib.to_string()])
            .args(["-smp", &self.cpus.to_string()])
            .arg("-serial")
            .arg(format!("file:{}", self.console_log().display()))
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initramfs)
            .args(["-append", &self.append])
            .arg("-pidfile")
            .arg(self.pid_file())
            .arg("-daemonize")
            .args(["-name", &format!("skiff-{}", self.name)]);
        if self.accel == Accel::Kvm {
            cmd.args(["-cpu", "host"]);
        } else {
            cmd.args(["-cpu", "max"]);
        }
        for (i, (nic, mac)) in self.nics.iter().enumerate() {
            let netdev = match nic {
                Nic::User { forwards } => {
                    let mut s = format!("user,id=n{i}");
                    for (host, guest) in forwards {
                        s.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
                    }
                    s
                }
                Nic::Mcast { group, port } => {
                    format!("socket,id=n{i},mcast={group}:{port},localaddr=127.0.0.1")
                }
            };
            let mac = mac
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":");
            cmd.arg("-netdev")
                .arg(netdev)
                .arg("-device")
                .arg(format!("virtio-net-pci,netdev=n{i},mac={mac}"));
        }
        for (name, path) in &self.fw_cfg {
            cmd.arg("-fw_cfg")
                .arg(format!("name={name},file={}", path.display()));
        }
        for (i, disk) in self.disks.iter().enumerate() {
            cmd.arg("-drive").arg(format!(
                "file={},if=virtio,format=raw,id=d{i},cache=unsafe",
                disk.display()
            ));
        }
        cmd.arg("-device").arg("virtio-rng-pci");
        cmd.stdin(Stdio::null());
        cmd
    }
}

/// A running VM. Dropping it kills the VM unless [`Vm::release`] was called.
#[derive(Debug)]
pub struct Vm {
    pub spec: VmSpec,
    pub pid: i32,
    pub attempts: u32,
    release: bool,
}

/// How long a VM may stay silent on its console before it counts as hung.
pub const SILENT_BOOT_LIMIT: Duration = Duration::from_secs(45);
const ATTEMPTS: u32 = 3;

impl Vm {
    /// Starts the VM and waits for its first console output, restarting it (up to three
    /// attempts) when it stays silent: QEMU sometimes hangs before the kernel prints anything.
    pub fn start(spec: VmSpec) -> Result<Self, QemuError> {
        fs::create_dir_all(&spec.dir).map_err(QemuError::io(&spec.dir))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let vm = Self::launch(spec.clone(), attempt)?;
            if vm.wait_console_output(SILENT_BOOT_LIMIT) {
                return Ok(vm);
            }
            let log = vm.spec.console_log();
            drop(vm);
            if attempt >= ATTEMPTS {
                return Err(QemuError::SilentBoot {
                    name: spec.name.clone(),
                    attempts: attempt,
                    log,
                });
            }
            eprintln!(
                "skiff: VM {} printed nothing in {}s; restarting it (attempt {})",
                spec.name,
                SILENT_BOOT_LIMIT.as_secs(),
                attempt + 1
            );
        }
    }

    fn launch(spec: VmSpec, attempts: u32) -> Result<Self, QemuError> {
        let log = spec.console_log();
        // Keep the previous boot's console (a reboot) next to the new one.
        if fs::metadata(&log).is_ok_and(|m| m.len() > 0) {
            let _ = fs::rename(&log, spec.dir.join("console.previous.log"));
        }
        let _ = fs::remove_file(spec.pid_file());
        let qemu_log = spec.dir.join("qemu.log");
        let err = fs::File::create(&qemu_log).map_err(QemuError::io(&qemu_log))?;
        let out = err.try_clone().map_err(QemuError::io(&qemu_log))?;
        let status = spec
            .command()
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|source| QemuError::Spawn {
                what: "qemu-system-x86_64 (install qemu-system-x86)".into(),
                source,
            })?;
        if !status.success() {
            let detail = fs::read_to_string(&qemu_log).unwrap_or_default();
            return Err(QemuError::Qemu {
                name: spec.name.clone(),
                detail: detail.trim().to_owned(),
            });
        }
        let pid = read_pid(&spec.pid_file())?;
        Ok(Self {
            spec,
            pid,
            attempts,
            release: false,
        })
    }

    /// Whether the console has printed anything within `limit`.
    pub fn wait_console_output(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if fs::metadata(self.spec.console_log()).is_ok_and(|m| m.len() > 0) {
                return true;
            }
            if !alive(self.pid) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The console log so far.
    pub fn console(&self) -> String {
        fs::read(self.spec.console_log())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the console contains `needle` (or the VM dies, its kernel panics, or time
    /// runs out).
    pub fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let console = self.console();
            if console.contains(needle) {
                return true;
            }
            if console.contains("Kernel panic") {
                return false;
            }
            if !alive(self.pid) {
                return self.console().contains(needle);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    pub fn is_running(&self) -> bool {
        alive(self.pid)
    }

    /// Leaves the VM running after this handle is dropped.
    pub fn release(mut self) -> i32 {
        self.release = true;
        self.pid
    }

    /// Kills the VM now.
    pub fn kill(&mut self) {
        kill_pid(self.pid);
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if !self.release {
            kill_pid(self.pid);
        }
    }
}

fn read_pid(path: &Path) -> Result<i32, QemuError> {
    let text = fs::read_to_string(path).map_err(QemuError::io(path))?;
    text.trim().parse().map_err(|_| QemuError::Qemu {
        name: path.display().to_string(),
        detail: format!("pid file holds `{}`", text.trim()),
    })
}

/// Whether process `pid` exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// SIGTERM, then SIGKILL after 3 s; waits until it is gone.
pub fn kill_pid(pid: i32) {
    if pid <= 1 || !alive(pid) {
        return;
    }
    let target = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(3);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
