//! Pod networking on one node, over rtnetlink: a bridge holding the pod CIDR's first address,
//! one veth pair per pod (the pod end renamed `eth0` inside the pod's network namespace, with
//! its address and a default route via the bridge), routes to other nodes' pod CIDRs via those
//! nodes' IPs (a flat network, no NAT between pods and nodes), and source NAT only for traffic
//! leaving the cluster network.
//!
//! NAT uses the `nft` binary with one atomic script: the Rust nftables crates either bind
//! libnftnl (a C dependency for a dozen rules) or cannot express masquerade; `nft -f -` swaps
//! the whole table in one transaction, which is what the agent needs.

pub mod ipam;

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use nix::sched::CloneFlags;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::sys::{Syscall, open_ns};
pub use ipam::{Cidr, Ipam};

/// The bridge every pod of the node is attached to.
pub const BRIDGE: &str = "skiff0";
/// nftables table the agent owns.
const NFT_TABLE: &str = "skiff";

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("link {0} not found")]
    NoLink(String),
    #[error("nft: {0}")]
    Nft(String),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> NetError {
    move |source| NetError::Io { what, source }
}

fn connect() -> Result<Handle, NetError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(io("netlink socket"))?;
    tokio::spawn(conn);
    Ok(handle)
}

async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, NetError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -19 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn add_address(handle: &Handle, index: u32, ip: Ipv4Addr, len: u8) -> Result<(), NetError> {
    match handle
        .address()
        .add(index, IpAddr::V4(ip), len)
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        // EEXIST: already there (agent restart).
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -17 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Name of a pod's host-side veth: `veth` + 8 hex digits of its UID.
pub fn host_veth(pod_uid: &str) -> String {
    let hex: String = pod_uid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    format!("veth{hex:0<8}")
}

/// The node's pod network.
pub struct Network {
    pub ipam: Ipam,
    pub cluster: Cidr,
    sys: Arc<dyn Syscall>,
}

impl Network {
    pub fn new(
        sys: Arc<dyn Syscall>,
        pod_cidr: Cidr,
        cluster: Cidr,
        state: PathBuf,
    ) -> Result<Self, NetError> {
        let ipam = Ipam::new(pod_cidr, state).map_err(io("ipam state"))?;
        Ok(Self { ipam, cluster, sys })
    }

    /// Bridge up with the gateway address, forwarding on, NAT table in place.
    pub async fn setup_host(&self, node_ips: &[Ipv4Addr]) -> Result<(), NetError> {
        let handle = connect()?;
        let index = match link_index(&handle, BRIDGE).await? {
            Some(i) => i,
            None => {
                handle
                    .link()
                    .add(LinkBridge::new(BRIDGE).build())
                    .execute()
                    .await?;
                link_index(&handle, BRIDGE)
                    .await?
                    .ok_or_else(|| NetError::NoLink(BRIDGE.into()))?
            }
        };
        add_address(&handle, index, self.ipam.gateway(), self.ipam.cidr.len).await?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(io("enable ip_forward"))?;
        self.nat(node_ips).await
    }

    /// (Re)write the NAT table: masquerade pod traffic whose destination is outside the
    /// cluster network and not a node.
    pub async fn nat(&self, node_ips: &[Ipv4Addr]) -> Result<(), NetError> {
        let script = nat_script(&self.ipam.cidr, &self.cluster, node_ips);
        let mut child = tokio::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(io("run nft"))?;
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt;
            stdin
                .write_all(script.as_bytes())
                .await
                .map_err(io("write nft script"))?;
        }
        let out = child.wait_with_output().await.map_err(io("wait nft"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(NetError::Nft(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ))
        }
    }

    /// Connect a pod's network namespace: returns its address.
    pub async fn attach(&self, netns: &Path, pod_uid: &str) -> Result<Ipv4Addr, NetError> {
        let ip = self
            .ipam
            .allocate(pod_uid)
            .map_err(io("allocate pod address"))?;
        let handle = connect()?;
        let host = host_veth(pod_uid);
        let peer = format!("{host}p");
        if let Some(old) = link_index(&handle, &host).await? {
            handle.link().del(old).execute().await?;
        }
        handle
            .link()
            .add(LinkVeth::new(&host, &peer).build())
            .execute()
            .await?;
        let host_idx = link_index(&handle, &host)
            .await?
            .ok_or_else(|| NetError::NoLink(host.clone()))?;
        let peer_idx = link_index(&handle, &peer)
            .await?
            .ok_or_else(|| NetError::NoLink(peer.clone()))?;
        let bridge = link_index(&handle, BRIDGE)
            .await?
            .ok_or_else(|| NetError::NoLink(BRIDGE.into()))?;
        let ns = open_ns(netns).map_err(io("open pod network namespace"))?;
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(peer_idx)
                    .setns_by_fd(ns.as_raw_fd())
                    .build(),
            )
            .execute()
            .await?;
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(host_idx)
                    .controller(bridge)
                    .up()
                    .build(),
            )
            .execute()
            .await?;
        let (len, gw) = (self.ipam.cidr.len, self.ipam.gateway());
        let sys = self.sys.clone();
        let netns = netns.to_path_buf();
        // Configure inside the namespace from a thread that joins it: netlink sockets talk to
        // the namespace they were opened in.
        let inside = std::thread::spawn(move || -> Result<(), NetError> {
            let ns = open_ns(&netns).map_err(io("open pod network namespace"))?;
            sys.setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| NetError::Io {
                    what: "join pod network namespace",
                    source: e.into(),
                })?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(io("netns runtime"))?;
            rt.block_on(configure_pod(&peer, ip, len, gw))
        });
        tokio::task::spawn_blocking(move || inside.join())
            .await
            .map_err(|e| NetError::Io {
                what: "netns thread",
                source: std::io::Error::other(e),
            })?
            .map_err(|_| NetError::Io {
                what: "netns thread",
                source: std::io::Error::other("panicked"),
            })??;
        Ok(ip)
    }

    /// Disconnect a pod and return its address to the pool.
    pub async fn detach(&self, pod_uid: &str) -> Result<(), NetError> {
        let handle = connect()?;
        if let Some(idx) = link_index(&handle, &host_veth(pod_uid)).await? {
            handle.link().del(idx).execute().await?;
        }
        self.ipam.release(pod_uid);
        Ok(())
    }

    /// Routes to other nodes' pod CIDRs via their IPs (replacing stale ones).
    pub async fn routes(&self, peers: &[(Cidr, Ipv4Addr)]) -> Result<(), NetError> {
        let handle = connect()?;
        for (cidr, via) in peers {
            if *cidr == self.ipam.cidr {
                continue;
            }
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(cidr.addr, cidr.len)
                .gateway(*via)
                .build();
            handle.route().add(route).replace().execute().await?;
        }
        Ok(())
    }
}

async fn configure_pod(peer: &str, ip: Ipv4Addr, len: u8, gw: Ipv4Addr) -> Result<(), NetError> {
    let handle = connect()?;
    let lo = link_index(&handle, "lo")
        .await?
        .ok_or_else(|| NetError::NoLink("lo".into()))?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(lo).up().build())
        .execute()
        .await?;
    let idx = link_index(&handle, peer)
        .await?
        .ok_or_else(|| NetError::NoLink(peer.into()))?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(idx).name("eth0".into()).build())
        .execute()
        .await?;
    add_address(&handle, idx, ip, len).await?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build();
    handle.route().add(route).replace().execute().await?;
    Ok(())
}

/// The nftables script for the node's NAT table.
pub fn nat_script(pod_cidr: &Cidr, cluster: &Cidr, node_ips: &[Ipv4Addr]) -> String {
    let mut keep: Vec<String> = vec![cluster.to_string()];
    keep.extend(node_ips.iter().map(Ipv4Addr::to_string));
    format!(
        "table ip {NFT_TABLE} {{}}\n\
         delete table ip {NFT_TABLE}\n\
         table ip {NFT_TABLE} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {pod_cidr} ip daddr != {{ {} }} masquerade\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tip saddr {pod_cidr} accept\n\
         \t\tip daddr {pod_cidr} accept\n\
         \t}}\n\
         }}\n",
        keep.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_ifnamsiz() {
        let n = host_veth("3f2c9a1b-1111-2222-3333-444455556666");
        assert_eq!(n, "veth3f2c9a1b");
        assert!(format!("{n}p").len() < 16);
        assert_eq!(host_veth("xyz"), "veth00000000");
    }

    #[test]
    fn nat_only_outside_cluster_and_nodes() {
        let s = nat_script(
            &Cidr::parse("10.244.1.0/24").unwrap(),
            &Cidr::parse("10.244.0.0/16").unwrap(),
            &[Ipv4Addr::new(192, 168, 1, 2)],
        );
        assert!(s.contains(
            "ip saddr 10.244.1.0/24 ip daddr != { 10.244.0.0/16, 192.168.1.2 } masquerade"
        ));
        assert!(s.starts_with("table ip skiff {}\ndelete table ip skiff\n"));
    }
}
