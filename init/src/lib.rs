//! PID 1 of a skiff node. The kernel runs the `skiff` binary as `/init`; [`run`] then mounts
//! the API filesystems, loads the initramfs's modules, finds and **verifies** the signed machine
//! config, prepares state, hostname and network, and starts and supervises the role's
//! services until asked to reboot or power off.
//!
//! ```text
//! kernel ─► Boot::start (mounts, modules, clock, keys)
//!             └► Boot::try_config  (find ─► verify ─► state disk ─► generation ─► network)
//!                  └► Supervisor   (start, restart with back-off, reap, stop in order)
//! ```
//!
//! Every system call goes through [`Sys`]; the real one is [`Linux`], the tests use a
//! recording double, so the whole sequence is unit-tested without a VM.

mod boot;
mod cmdline;
mod dhcp;
mod linux;
mod machine_api;
mod netlink;
#[cfg(test)]
mod record;
mod services;
mod switch_root;
mod sys;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use boot::{Boot, Timeline, paths};
pub use cmdline::Cmdline;
pub use linux::Linux;
pub use machine_api::{MachineApi, prefer_stored};
pub use services::{LogBuffer, Service, Supervisor};
pub use sys::{Command, ExitKind, Lease, Link, PowerAction, Spawned, Sys};

/// How long services get to stop before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_millis(200);
const CONFIG_RETRY: Duration = Duration::from_secs(5);

/// Signals PID 1 acts on: SIGTERM/SIGINT (ctrl-alt-del) reboot, SIGUSR2/SIGPWR power off.
#[derive(Debug, Default, Clone)]
pub struct PowerRequests {
    pub reboot: Arc<AtomicBool>,
    pub poweroff: Arc<AtomicBool>,
}

impl PowerRequests {
    fn register(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR2};
        const SIGPWR: i32 = nix::libc::SIGPWR;
        for sig in [SIGTERM, SIGINT] {
            signal_hook::flag::register(sig, self.reboot.clone())?;
        }
        for sig in [SIGUSR2, SIGPWR] {
            signal_hook::flag::register(sig, self.poweroff.clone())?;
        }
        Ok(())
    }

    fn requested(&self) -> Option<PowerAction> {
        if self.poweroff.load(Ordering::Relaxed) {
            Some(PowerAction::PowerOff)
        } else if self.reboot.load(Ordering::Relaxed) {
            Some(PowerAction::Reboot)
        } else {
            None
        }
    }
}

/// Runs as PID 1 on the real kernel. Never returns.
pub fn run() -> ! {
    // Containers need a root that pivot_root can leave: move off the initramfs first.
    switch_root::leave_rootfs();
    let sys = Linux::new();
    let requests = PowerRequests::default();
    if let Err(e) = requests.register() {
        sys.console(&format!("skiff: cannot handle signals: {e}"));
    }
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(str::to_owned))
        .unwrap_or_else(|| "/init".to_owned());
    let machine_api = MachineApi::new(requests.clone());
    let action = main_loop_with(&sys, &exe, &requests, None, Some(&machine_api));
    sys.console("skiff: the kernel refused to power off or reboot; halting here");
    let _ = action;
    loop {
        sys.sleep(Duration::from_secs(3600));
    }
}

/// Boots, supervises, and on a power request shuts down in order and asks the kernel to act.
/// `max_ticks` bounds the loop for tests. Returns the action taken (or `None` when the ticks
/// ran out).
pub fn main_loop(
    sys: &dyn Sys,
    exe: &str,
    requests: &PowerRequests,
    max_ticks: Option<u64>,
) -> Option<PowerAction> {
    main_loop_with(sys, exe, requests, max_ticks, None)
}

/// [`main_loop`] that also serves the machine API (started once a config is verified).
pub fn main_loop_with(
    sys: &dyn Sys,
    exe: &str,
    requests: &PowerRequests,
    max_ticks: Option<u64>,
    machine_api: Option<&MachineApi>,
) -> Option<PowerAction> {
    let mut boot = Boot::start(sys, exe);
    let mut supervisor: Option<Supervisor> = None;
    let mut probe = None;
    let mut ready = false;
    let mut next_config_try = Duration::ZERO;
    let mut ticks = 0u64;
    loop {
        if max_ticks.is_some_and(|max| ticks >= max) {
            return None;
        }
        ticks += 1;
        if let Some(action) = requests.requested() {
            shutdown(sys, supervisor.as_mut(), boot.persistent, action);
            return Some(action);
        }
        let reaped = sys.reap();
        match supervisor.as_mut() {
            Some(sup) => {
                for (pid, exit) in reaped {
                    sup.exited(sys, pid, exit);
                }
                sup.start_due(sys);
                if !ready
                    && probe.as_ref().is_some_and(|check: &boot::ReadyCheck| {
                        check.passed(sys, &sup.services, TICK)
                    })
                {
                    ready = true;
                    boot.timeline.mark(sys, "ready");
                }
                if let Some(api) = machine_api {
                    api.publish(&boot.timeline, sup);
                }
            }
            None if sys.since_boot() >= next_config_try => {
                if let Some((verified, services)) = boot.try_config() {
                    probe = boot::ready_probe(&verified.config, &services);
                    let mut sup = Supervisor::new(services);
                    sup.start_due(sys);
                    boot.timeline.mark(sys, "services");
                    if let Some(api) = machine_api {
                        api.config_applied(sys, &verified, &boot.keys, boot.persistent);
                    }
                    supervisor = Some(sup);
                } else {
                    next_config_try = sys.since_boot() + CONFIG_RETRY;
                }
            }
            None => {}
        }
        sys.sleep(TICK);
    }
}

/// Stops services in reverse order, syncs, unmounts the state disk, then reboots or powers off.
fn shutdown(
    sys: &dyn Sys,
    supervisor: Option<&mut Supervisor>,
    persistent: bool,
    action: PowerAction,
) {
    sys.console(&format!("skiff: {action:?} requested; stopping services"));
    if let Some(sup) = supervisor {
        sup.stop_all(sys, STOP_GRACE);
    }
    sys.sync();
    if persistent && let Err(e) = sys.umount("/var") {
        sys.console(&format!("skiff: cannot unmount /var: {e}"));
    }
    sys.sync();
    if let Err(e) = sys.power(action) {
        sys.console(&format!("skiff: {action:?} failed: {e}"));
    }
}
