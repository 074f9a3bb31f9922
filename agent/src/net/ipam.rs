//! IP address management for pods on one node: addresses from the node's pod CIDR, one file
//! per leased address (`DIR/<ip>` holding the pod UID), so leases survive agent restarts and
//! two allocations can never race (the file is created exclusively).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// An IPv4 network `addr/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Self> {
        let (a, l) = s.split_once('/')?;
        let len: u8 = l.parse().ok()?;
        if len > 32 {
            return None;
        }
        let addr: Ipv4Addr = a.parse().ok()?;
        Some(Self {
            addr: Ipv4Addr::from(u32::from(addr) & Self::mask_of(len)),
            len,
        })
    }

    fn mask_of(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_of(self.len) == u32::from(self.addr)
    }

    /// The `n`th address of the network.
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        let size = 1u64 << (32 - u32::from(self.len));
        (u64::from(n) < size).then(|| Ipv4Addr::from(u32::from(self.addr) + n))
    }

    /// Number of addresses.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The pool of a node's pod addresses. The first address is the bridge's (the pods'
/// gateway); network and broadcast addresses are never handed out.
#[derive(Debug, Clone)]
pub struct Ipam {
    pub cidr: Cidr,
    dir: PathBuf,
}

impl Ipam {
    pub fn new(cidr: Cidr, dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self { cidr, dir })
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.cidr.nth(1).unwrap_or(self.cidr.addr)
    }

    /// The address leased to `owner`, leasing a new one when it has none.
    pub fn allocate(&self, owner: &str) -> std::io::Result<Ipv4Addr> {
        if let Some(ip) = self.lookup(owner) {
            return Ok(ip);
        }
        let last = u32::try_from(self.cidr.size().saturating_sub(1)).unwrap_or(u32::MAX);
        for n in 2..last {
            let Some(ip) = self.cidr.nth(n) else { break };
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.dir.join(ip.to_string()))
            {
                Ok(mut f) => {
                    f.write_all(owner.as_bytes())?;
                    return Ok(ip);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other(format!(
            "no free address in {}",
            self.cidr
        )))
    }

    /// The address leased to `owner`, if any.
    pub fn lookup(&self, owner: &str) -> Option<Ipv4Addr> {
        std::fs::read_dir(&self.dir).ok()?.flatten().find_map(|e| {
            let held = std::fs::read_to_string(e.path()).ok()?;
            (held == owner).then(|| e.file_name().to_str()?.parse().ok())?
        })
    }

    /// Give back whatever `owner` holds.
    pub fn release(&self, owner: &str) {
        while let Some(ip) = self.lookup(owner) {
            if std::fs::remove_file(self.dir.join(ip.to_string())).is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_math() {
        let c = Cidr::parse("10.244.1.7/24").unwrap();
        assert_eq!(c.addr, Ipv4Addr::new(10, 244, 1, 0));
        assert!(c.contains(Ipv4Addr::new(10, 244, 1, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 244, 2, 1)));
        assert_eq!(c.nth(1), Some(Ipv4Addr::new(10, 244, 1, 1)));
        assert_eq!(c.nth(256), None);
        assert_eq!(c.to_string(), "10.244.1.0/24");
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("x/8").is_none());
    }

    #[test]
    fn leases_persist_and_do_not_collide() {
        let d = tempfile::tempdir().unwrap();
        let cidr = Cidr::parse("10.1.0.0/29").unwrap();
        let a = Ipam::new(cidr, d.path().into()).unwrap();
        let ip1 = a.allocate("pod-a").unwrap();
        assert_eq!(ip1, Ipv4Addr::new(10, 1, 0, 2));
        assert_eq!(a.allocate("pod-a").unwrap(), ip1, "idempotent");
        // A second instance (an agent restart) sees the same leases.
        let b = Ipam::new(cidr, d.path().into()).unwrap();
        assert_eq!(b.lookup("pod-a"), Some(ip1));
        let ip2 = b.allocate("pod-b").unwrap();
        assert_ne!(ip1, ip2);
        for i in 0..3 {
            b.allocate(&format!("x{i}")).unwrap();
        }
        assert!(b.allocate("full").is_err(), "/29 has 5 pod addresses");
        b.release("pod-a");
        assert_eq!(b.allocate("pod-c").unwrap(), ip1);
    }
}
