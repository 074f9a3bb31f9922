//! The real [`Sys`]: Linux system calls through `nix` (safe wrappers, so this crate needs no
//! `unsafe`), rtnetlink over a netlink socket, DHCP over a UDP socket bound to the interface.

use std::ffi::CString;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    self, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, SockaddrIn, sockopt,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::dhcp;
use crate::netlink;
use crate::sys::{Command, ExitKind, Lease, Link, MsFlags, PowerAction, Spawned, Sys};

/// The running kernel.
#[derive(Debug, Default)]
pub struct Linux {
    seq: AtomicU32,
}

fn errno(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl Linux {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends one netlink request and collects the answer until an ack or the end of a dump.
    fn netlink(&self, build: impl FnOnce(u32) -> Vec<u8>) -> io::Result<Vec<Link>> {
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map_err(errno)?;
        socket::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &NetlinkAddr::new(0, 0),
        )
        .map_err(errno)?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let msg = build(seq);
        socket::sendto(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &msg,
            &NetlinkAddr::new(0, 0),
            socket::MsgFlags::empty(),
        )
        .map_err(errno)?;
        let mut links = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = socket::recv(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &mut buf,
                socket::MsgFlags::empty(),
            )
            .map_err(errno)?;
            let reply = netlink::parse(&buf[..n]);
            links.extend(reply.links);
            match reply.error {
                Some(0) => return Ok(links),
                Some(code) => return Err(io::Error::from_raw_os_error(-code)),
                None if reply.done => return Ok(links),
                None => {}
            }
        }
    }
}

impl Sys for Linux {
    fn mount(
        &self,
        source: &str,
        target: &str,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> io::Result<()> {
        let data = (!data.is_empty()).then_some(data);
        nix::mount::mount(Some(source), target, Some(fstype), flags, data).map_err(errno)
    }

    fn umount(&self, target: &str) -> io::Result<()> {
        nix::mount::umount(target).map_err(errno)
    }

    fn mkdir_all(&self, path: &str) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_head(&self, path: &str, max: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        std::fs::File::open(path)?
            .take(u64::try_from(max).unwrap_or(u64::MAX))
            .read_to_end(&mut out)?;
        Ok(out)
    }

    fn read_at(&self, path: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut out = Vec::new();
        file.take(u64::try_from(len).unwrap_or(u64::MAX))
            .read_to_end(&mut out)?;
        Ok(out)
    }

    fn size_of(&self, path: &str) -> io::Result<u64> {
        std::fs::File::open(path)?.seek(SeekFrom::End(0))
    }

    fn format_ext4(
        &self,
        path: &str,
        options: &skiff_mkfs::Options,
    ) -> Result<skiff_mkfs::Summary, skiff_mkfs::MkfsError> {
        // O_EXCL on a block device: refused while anything has it mounted.
        let mut device = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_EXCL)
            .open(path)?;
        let summary = skiff_mkfs::format(&mut device, options)?;
        device.sync_all()?;
        Ok(summary)
    }

    fn write(&self, path: &str, data: &[u8]) -> io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(data)
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(path)?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &str) -> bool {
        std::path::Path::new(path).exists()
    }

    fn load_module(&self, path: &str) -> io::Result<()> {
        let file = std::fs::File::open(path)?;
        let params = CString::default();
        match nix::kmod::finit_module(&file, &params, nix::kmod::ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::Error::EEXIST) => Ok(()),
            Err(e) => Err(errno(e)),
        }
    }

    fn set_hostname(&self, name: &str) -> io::Result<()> {
        nix::unistd::sethostname(name).map_err(errno)
    }

    fn since_boot(&self) -> Duration {
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
            .map(Duration::from)
            .unwrap_or_default()
    }

    fn wall_clock(&self) -> SystemTime {
        SystemTime::now()
    }

    fn set_wall_clock(&self, to: SystemTime) -> io::Result<()> {
        let since = to.duration_since(UNIX_EPOCH).unwrap_or_default();
        nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, since.into()).map_err(errno)
    }

    fn links(&self) -> io::Result<Vec<Link>> {
        self.netlink(netlink::get_links)
    }

    fn link_up(&self, index: u32) -> io::Result<()> {
        self.netlink(|seq| netlink::link_up(seq, index)).map(drop)
    }

    fn add_address(&self, index: u32, address: IpAddr, prefix: u8) -> io::Result<()> {
        match self.netlink(|seq| netlink::add_address(seq, index, address, prefix)) {
            Err(e) if e.raw_os_error() == Some(nix::libc::EEXIST) => Ok(()),
            other => other.map(drop),
        }
    }

    fn add_route(
        &self,
        index: u32,
        dest: IpAddr,
        prefix: u8,
        gateway: Option<IpAddr>,
    ) -> io::Result<()> {
        match self.netlink(|seq| netlink::add_route(seq, index, dest, prefix, gateway)) {
            Err(e) if e.raw_os_error() == Some(nix::libc::EEXIST) => Ok(()),
            other => other.map(drop),
        }
    }

    fn dhcp(&self, link: &Link, timeout: Duration) -> io::Result<Lease> {
        let fd = socket::socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(errno)?;
        socket::setsockopt(
            &fd,
            sockopt::BindToDevice,
            &std::ffi::OsString::from(&link.name),
        )
        .map_err(errno)?;
        socket::setsockopt(&fd, sockopt::Broadcast, &true).map_err(errno)?;
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(errno)?;
        socket::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)),
        )
        .map_err(errno)?;
        let udp = UdpSocket::from(fd);
        let server = SocketAddr::from((Ipv4Addr::BROADCAST, 67));
        let deadline = Instant::now() + timeout;
        let xid = u32::from_be_bytes([link.mac[2], link.mac[3], link.mac[4], link.mac[5]])
            ^ u32::try_from(self.since_boot().as_micros() & 0xffff_ffff).unwrap_or(0);
        let exchange = |packet: &[u8], want: u8| -> io::Result<dhcp::Reply> {
            let mut buf = vec![0u8; 1500];
            while Instant::now() < deadline {
                udp.send_to(packet, server)?;
                let resend = Instant::now() + Duration::from_secs(1);
                while Instant::now() < resend.min(deadline) {
                    let left = resend
                        .min(deadline)
                        .saturating_duration_since(Instant::now());
                    udp.set_read_timeout(Some(left.max(Duration::from_millis(10))))?;
                    let n = match udp.recv(&mut buf) {
                        Ok(n) => n,
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                        {
                            break;
                        }
                        Err(e) => return Err(e),
                    };
                    if let Some(reply) = dhcp::parse_reply(&buf[..n], xid) {
                        if reply.kind == want {
                            return Ok(reply);
                        }
                        if reply.kind == dhcp::NAK {
                            return Err(io::Error::other("the DHCP server refused (NAK)"));
                        }
                    }
                }
            }
            Err(io::Error::new(io::ErrorKind::TimedOut, "no DHCP answer"))
        };
        let offer = exchange(
            &dhcp::client_packet(dhcp::DISCOVER, xid, link.mac, None),
            dhcp::OFFER,
        )?;
        let server_id = offer
            .server
            .ok_or_else(|| io::Error::other("DHCP offer without a server id"))?;
        let ack = exchange(
            &dhcp::client_packet(
                dhcp::REQUEST,
                xid,
                link.mac,
                Some((offer.address, server_id)),
            ),
            dhcp::ACK,
        )?;
        Ok(ack.lease)
    }

    fn http_get(&self, url: &str, limit: usize) -> io::Result<Vec<u8>> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            io::Error::other("only http:// URLs can be fetched before TLS trust exists")
        })?;
        let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
        let addr: SocketAddr = authority
            .parse()
            .or_else(|_| format!("{authority}:80").parse())
            .map_err(|_| {
                io::Error::other(format!("`{authority}` must be IP:port (no DNS at boot)"))
            })?;
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = Vec::new();
        stream
            .take(u64::try_from(limit + 16 * 1024).unwrap_or(u64::MAX))
            .read_to_end(&mut response)?;
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| io::Error::other("malformed HTTP response"))?;
        let head = String::from_utf8_lossy(&response[..split]);
        let status = head.split_whitespace().nth(1).unwrap_or("");
        if status != "200" {
            return Err(io::Error::other(format!("HTTP status {status}")));
        }
        let body = response[split + 4..].to_vec();
        if body.len() > limit {
            return Err(io::Error::other(format!("larger than {limit} bytes")));
        }
        Ok(body)
    }

    fn tcp_probe(&self, addr: SocketAddr, timeout: Duration) -> bool {
        TcpStream::connect_timeout(&addr, timeout).is_ok()
    }

    fn spawn(&self, command: &Command) -> io::Result<Spawned> {
        let (reader, writer) = nix::unistd::pipe().map_err(errno)?;
        let child = std::process::Command::new(&command.program)
            .args(&command.args)
            .env_clear()
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(writer.try_clone()?))
            .stderr(std::process::Stdio::from(writer))
            .spawn()?;
        let pid = i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))?;
        // PID 1 reaps every child itself (see `reap`): the handle is dropped, not waited on.
        drop(child);
        Ok(Spawned {
            pid,
            output: Some(std::fs::File::from(reader)),
        })
    }

    fn kill(&self, pid: i32, signal: nix::sys::signal::Signal) -> io::Result<()> {
        nix::sys::signal::kill(Pid::from_raw(pid), signal).map_err(errno)
    }

    fn reap(&self) -> Vec<(i32, ExitKind)> {
        let mut out = Vec::new();
        loop {
            match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => out.push((pid.as_raw(), ExitKind::Code(code))),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    out.push((pid.as_raw(), ExitKind::Signal(sig as i32)));
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return out,
                Ok(_) => {}
            }
        }
    }

    fn sync(&self) {
        nix::unistd::sync();
    }

    fn power(&self, action: PowerAction) -> io::Result<()> {
        let mode = match action {
            PowerAction::Reboot => nix::sys::reboot::RebootMode::RB_AUTOBOOT,
            PowerAction::PowerOff => nix::sys::reboot::RebootMode::RB_POWER_OFF,
        };
        match nix::sys::reboot::reboot(mode) {
            Ok(never) => match never {},
            Err(e) => Err(errno(e)),
        }
    }

    fn console(&self, line: &str) {
        let mut err = io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn remove_all(&self, path: &str) -> io::Result<()> {
        let result = match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
            Ok(_) => std::fs::remove_file(path),
            Err(e) => Err(e),
        };
        match result {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}
