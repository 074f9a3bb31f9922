//! The one seam between init's logic and the kernel: every system call init makes goes
//! through [`Sys`]. [`crate::linux::Linux`] is the real implementation; the tests use a
//! recording double that answers from a table and remembers every call.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub use nix::mount::MsFlags;

/// A network interface as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: [u8; 6],
    pub loopback: bool,
}

impl Link {
    /// `52:54:00:12:34:56`.
    pub fn mac_string(&self) -> String {
        let m = self.mac;
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// What a DHCP server handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: IpAddr,
    pub prefix: u8,
    pub router: Option<IpAddr>,
    pub dns: Vec<IpAddr>,
    pub lease_secs: u32,
}

/// A program to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// A started process; `output` carries its stdout and stderr merged.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    pub output: Option<std::fs::File>,
}

/// How a reaped process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    Signal(i32),
}

/// The end of a machine's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    Reboot,
    PowerOff,
}

/// Every system call init makes.
pub trait Sys {
    fn mount(
        &self,
        source: &str,
        target: &str,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> io::Result<()>;
    fn umount(&self, target: &str) -> io::Result<()>;
    fn mkdir_all(&self, path: &str) -> io::Result<()>;
    fn read(&self, path: &str) -> io::Result<Vec<u8>>;
    /// At most the first `max` bytes of a file or device.
    fn read_head(&self, path: &str, max: usize) -> io::Result<Vec<u8>>;
    /// At most `len` bytes of a file or device from `offset`.
    fn read_at(&self, path: &str, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// The size in bytes of a file or block device.
    fn size_of(&self, path: &str) -> io::Result<u64>;
    /// Writes a new ext4 filesystem over the whole device (opened exclusively: never one in
    /// use) and syncs it.
    fn format_ext4(
        &self,
        path: &str,
        options: &skiff_mkfs::Options,
    ) -> Result<skiff_mkfs::Summary, skiff_mkfs::MkfsError>;
    /// Writes a whole file (created 0600 when new).
    fn write(&self, path: &str, data: &[u8]) -> io::Result<()>;
    fn list_dir(&self, path: &str) -> io::Result<Vec<String>>;
    fn exists(&self, path: &str) -> bool;
    /// `finit_module` of the module file at `path`.
    fn load_module(&self, path: &str) -> io::Result<()>;
    fn set_hostname(&self, name: &str) -> io::Result<()>;
    /// Time since the kernel started (`CLOCK_BOOTTIME`).
    fn since_boot(&self) -> Duration;
    fn wall_clock(&self) -> SystemTime;
    fn set_wall_clock(&self, to: SystemTime) -> io::Result<()>;
    fn links(&self) -> io::Result<Vec<Link>>;
    fn link_up(&self, index: u32) -> io::Result<()>;
    fn add_address(&self, index: u32, address: IpAddr, prefix: u8) -> io::Result<()>;
    /// A route to `dest/prefix` out of `index`, through `gateway` when given.
    fn add_route(
        &self,
        index: u32,
        dest: IpAddr,
        prefix: u8,
        gateway: Option<IpAddr>,
    ) -> io::Result<()>;
    /// One DHCP exchange (discover, offer, request, ack) on an interface that is up.
    fn dhcp(&self, link: &Link, timeout: Duration) -> io::Result<Lease>;
    /// `GET` over plain HTTP; the body of a 200 answer.
    fn http_get(&self, url: &str, limit: usize) -> io::Result<Vec<u8>>;
    /// Whether a TCP connection to `addr` opens within `timeout`.
    fn tcp_probe(&self, addr: SocketAddr, timeout: Duration) -> bool;
    fn spawn(&self, command: &Command) -> io::Result<Spawned>;
    fn kill(&self, pid: i32, signal: nix::sys::signal::Signal) -> io::Result<()>;
    /// Reaps every exited child without blocking.
    fn reap(&self) -> Vec<(i32, ExitKind)>;
    fn sync(&self);
    fn power(&self, action: PowerAction) -> io::Result<()>;
    /// One line on the console.
    fn console(&self, line: &str);
    fn sleep(&self, duration: Duration);
    /// Removes a file or a directory tree; a missing path is not an error.
    fn remove_all(&self, path: &str) -> io::Result<()>;
}
