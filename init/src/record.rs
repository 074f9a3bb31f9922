//! A [`Sys`] for tests: an in-memory file table, a clock that moves only when told (or when
//! init sleeps), fake processes, and a list of every call made, to assert on.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;

use crate::sys::{Command, ExitKind, Lease, Link, MsFlags, PowerAction, Spawned, Sys};

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount { target: String, fstype: String },
    Umount(String),
    LoadModule(String),
    Hostname(String),
    SetClock(SystemTime),
    LinkUp(u32),
    Address(u32, IpAddr, u8),
    Route(u32, IpAddr, u8, Option<IpAddr>),
    Dhcp(String),
    HttpGet(String),
    Spawn(Command),
    Kill(i32, Signal),
    Write(String),
    Format(String),
    Sync,
    Power(PowerAction),
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<String, Vec<u8>>,
    calls: Vec<Call>,
    console: Vec<String>,
    clock: Duration,
    wall: Option<SystemTime>,
    next_pid: i32,
    spawned: Vec<(i32, Command)>,
    pending_exits: Vec<(i32, ExitKind)>,
    exit_on_term: bool,
    links: Vec<Link>,
    lease: Option<Lease>,
    http: BTreeMap<String, Vec<u8>>,
    listening: Vec<SocketAddr>,
    flags: Vec<(Duration, std::sync::Arc<std::sync::atomic::AtomicBool>)>,
}

/// The recording double.
#[derive(Debug, Default)]
pub struct Recorder {
    state: Mutex<State>,
}

impl Recorder {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut state)
    }

    pub fn file(&self, path: &str, data: impl Into<Vec<u8>>) -> &Self {
        self.with(|s| s.files.insert(path.to_owned(), data.into()));
        self
    }
    pub fn read_back(&self, path: &str) -> Option<Vec<u8>> {
        self.with(|s| s.files.get(path).cloned())
    }
    pub fn link(&self, index: u32, name: &str, mac: [u8; 6]) -> &Self {
        self.with(|s| {
            s.links.push(Link {
                index,
                name: name.to_owned(),
                mac,
                loopback: name == "lo",
            });
        });
        self
    }
    pub fn lease(&self, lease: Lease) -> &Self {
        self.with(|s| s.lease = Some(lease));
        self
    }
    pub fn http(&self, url: &str, body: impl Into<Vec<u8>>) -> &Self {
        self.with(|s| s.http.insert(url.to_owned(), body.into()));
        self
    }
    pub fn listening(&self, addr: SocketAddr) -> &Self {
        self.with(|s| s.listening.push(addr));
        self
    }
    /// Sets `flag` once the clock reaches `at` (a signal arriving then).
    pub fn flag_at(&self, at: Duration, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
        self.with(|s| s.flags.push((at, flag)));
    }
    pub fn exit_on_term(&self, yes: bool) {
        self.with(|s| s.exit_on_term = yes);
    }
    pub fn advance(&self, by: Duration) {
        self.with(|s| {
            s.clock += by;
            for (at, flag) in &s.flags {
                if s.clock >= *at {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    pub fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.clone())
    }
    pub fn spawned(&self) -> Vec<(i32, Command)> {
        self.with(|s| s.spawned.clone())
    }
    pub fn console_text(&self) -> String {
        self.with(|s| s.console.join("\n"))
    }
    fn record(&self, call: Call) {
        self.with(|s| s.calls.push(call));
    }
}

fn not_found(path: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{path}: not found"))
}

impl Sys for Recorder {
    fn mount(&self, _: &str, target: &str, fstype: &str, _: MsFlags, _: &str) -> io::Result<()> {
        self.record(Call::Mount {
            target: target.to_owned(),
            fstype: fstype.to_owned(),
        });
        Ok(())
    }
    fn umount(&self, target: &str) -> io::Result<()> {
        self.record(Call::Umount(target.to_owned()));
        Ok(())
    }
    fn mkdir_all(&self, _: &str) -> io::Result<()> {
        Ok(())
    }
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        self.with(|s| s.files.get(path).cloned())
            .ok_or_else(|| not_found(path))
    }
    fn read_head(&self, path: &str, max: usize) -> io::Result<Vec<u8>> {
        let mut data = self.read(path)?;
        data.truncate(max);
        Ok(data)
    }
    fn read_at(&self, path: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let data = self.read(path)?;
        let from = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let to = from.saturating_add(len).min(data.len());
        Ok(data[from..to].to_vec())
    }
    fn size_of(&self, path: &str) -> io::Result<u64> {
        Ok(self.read(path)?.len() as u64)
    }
    /// Runs the real formatter over the in-memory device.
    fn format_ext4(
        &self,
        path: &str,
        options: &skiff_mkfs::Options,
    ) -> Result<skiff_mkfs::Summary, skiff_mkfs::MkfsError> {
        self.record(Call::Format(path.to_owned()));
        let mut device = io::Cursor::new(self.read(path)?);
        let summary = skiff_mkfs::format(&mut device, options)?;
        self.with(|s| s.files.insert(path.to_owned(), device.into_inner()));
        Ok(summary)
    }
    fn write(&self, path: &str, data: &[u8]) -> io::Result<()> {
        self.record(Call::Write(path.to_owned()));
        self.with(|s| s.files.insert(path.to_owned(), data.to_vec()));
        Ok(())
    }
    fn list_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        let names: Vec<String> = self.with(|s| {
            s.files
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .filter_map(|rest| rest.split('/').next())
                .map(str::to_owned)
                .collect()
        });
        if names.is_empty() {
            return Err(not_found(path));
        }
        let mut names = names;
        names.dedup();
        Ok(names)
    }
    fn exists(&self, path: &str) -> bool {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        self.with(|s| s.files.contains_key(path) || s.files.keys().any(|k| k.starts_with(&prefix)))
    }
    fn load_module(&self, path: &str) -> io::Result<()> {
        self.record(Call::LoadModule(path.to_owned()));
        if self.exists(path) {
            Ok(())
        } else {
            Err(not_found(path))
        }
    }
    fn set_hostname(&self, name: &str) -> io::Result<()> {
        self.record(Call::Hostname(name.to_owned()));
        Ok(())
    }
    fn since_boot(&self) -> Duration {
        self.with(|s| s.clock)
    }
    fn wall_clock(&self) -> SystemTime {
        self.with(|s| s.wall.unwrap_or(SystemTime::UNIX_EPOCH) + s.clock)
    }
    fn set_wall_clock(&self, to: SystemTime) -> io::Result<()> {
        self.record(Call::SetClock(to));
        self.with(|s| s.wall = to.checked_sub(s.clock));
        Ok(())
    }
    fn links(&self) -> io::Result<Vec<Link>> {
        Ok(self.with(|s| s.links.clone()))
    }
    fn link_up(&self, index: u32) -> io::Result<()> {
        self.record(Call::LinkUp(index));
        Ok(())
    }
    fn add_address(&self, index: u32, address: IpAddr, prefix: u8) -> io::Result<()> {
        self.record(Call::Address(index, address, prefix));
        Ok(())
    }
    fn add_route(
        &self,
        index: u32,
        dest: IpAddr,
        prefix: u8,
        gw: Option<IpAddr>,
    ) -> io::Result<()> {
        self.record(Call::Route(index, dest, prefix, gw));
        Ok(())
    }
    fn dhcp(&self, link: &Link, timeout: Duration) -> io::Result<Lease> {
        self.record(Call::Dhcp(link.name.clone()));
        match self.with(|s| s.lease.clone()) {
            Some(lease) => Ok(lease),
            None => {
                self.advance(timeout);
                Err(io::Error::new(io::ErrorKind::TimedOut, "no DHCP answer"))
            }
        }
    }
    fn http_get(&self, url: &str, _: usize) -> io::Result<Vec<u8>> {
        self.record(Call::HttpGet(url.to_owned()));
        self.with(|s| s.http.get(url).cloned())
            .ok_or_else(|| not_found(url))
    }
    fn tcp_probe(&self, addr: SocketAddr, _: Duration) -> bool {
        self.with(|s| s.listening.contains(&addr))
    }
    fn spawn(&self, command: &Command) -> io::Result<Spawned> {
        self.record(Call::Spawn(command.clone()));
        let pid = self.with(|s| {
            s.next_pid += 1;
            let pid = 100 + s.next_pid;
            s.spawned.push((pid, command.clone()));
            pid
        });
        Ok(Spawned { pid, output: None })
    }
    fn kill(&self, pid: i32, signal: Signal) -> io::Result<()> {
        self.record(Call::Kill(pid, signal));
        self.with(|s| {
            if signal == Signal::SIGKILL || (signal == Signal::SIGTERM && s.exit_on_term) {
                s.pending_exits.push((pid, ExitKind::Signal(signal as i32)));
            }
        });
        Ok(())
    }
    fn reap(&self) -> Vec<(i32, ExitKind)> {
        self.with(|s| std::mem::take(&mut s.pending_exits))
    }
    fn sync(&self) {
        self.record(Call::Sync);
    }
    fn power(&self, action: PowerAction) -> io::Result<()> {
        self.record(Call::Power(action));
        Ok(())
    }
    fn console(&self, line: &str) {
        self.with(|s| s.console.push(line.to_owned()));
    }
    fn sleep(&self, duration: Duration) {
        self.advance(duration);
    }
    fn remove_all(&self, path: &str) -> io::Result<()> {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        self.with(|s| {
            s.files.retain(|k, _| k != path && !k.starts_with(&prefix));
        });
        Ok(())
    }
}
