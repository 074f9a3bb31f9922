//! Choosing the accelerator: KVM only when it really runs a guest within a few seconds
//! (nested KVM can hang), otherwise TCG. `SKIFF_QEMU_ACCEL=kvm|tcg` overrides the probe.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "kvm" => Some(Self::Kvm),
            "tcg" => Some(Self::Tcg),
            _ => None,
        }
    }
}

/// How long the KVM probe may take.
pub const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// Boots `kernel` under KVM without an initramfs: a working KVM reaches the kernel's
/// "unable to mount root" panic in well under a second and QEMU exits (`-no-reboot`). A hang
/// or an error means TCG.
pub fn probe(kernel: &Path, scratch: &Path) -> Accel {
    if let Some(forced) = std::env::var("SKIFF_QEMU_ACCEL")
        .ok()
        .as_deref()
        .and_then(Accel::parse)
    {
        return forced;
    }
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !usable {
        return Accel::Tcg;
    }
    let log = scratch.join("kvm-probe.log");
    let _ = std::fs::remove_file(&log);
    let child = Command::new("qemu-system-x86_64")
        .args(["-M", "q35", "-accel", "kvm", "-cpu", "host", "-m", "128"])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-monitor",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1", "-no-reboot"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return Accel::Tcg;
    };
    let deadline = Instant::now() + PROBE_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
        }
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    if text.contains("Kernel panic") {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in [Accel::Kvm, Accel::Tcg] {
            assert_eq!(Accel::parse(a.as_str()), Some(a));
        }
        assert_eq!(Accel::parse("hvf"), None);
    }
}
