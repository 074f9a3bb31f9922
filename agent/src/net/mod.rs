//! Pod networking on one node, over rtnetlink: a bridge holding the pod CIDR's first address,
//! one veth pair per pod (the pod end created as `eth0` directly inside the pod's network
//! namespace, with its address and a default route via the bridge), routes to other nodes' pod
//! CIDRs via those nodes' IPs (a flat network, no NAT between pods and nodes), and source NAT
//! only for traffic leaving the cluster network ([`nft`], nftables over netlink).
//!
//! One rtnetlink connection in the node's namespace lives as long as the [`Network`]; inside a
//! pod's namespace a connection is opened from a short-lived thread that joins it (a netlink
//! socket talks to the namespace it was created in) and served by the agent's runtime.

pub mod ipam;
pub mod nft;

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::TryStreamExt;
use nix::sched::CloneFlags;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use crate::error_chain;
use crate::sys::{Syscall, open_ns};
pub use ipam::{Cidr, Ipam};

/// The bridge every pod of the node is attached to.
pub const BRIDGE: &str = "skiff0";
/// The pod's end of its veth pair, inside the pod.
const POD_IFACE: &str = "eth0";

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
    #[error("nftables")]
    Nft(#[from] nft::NftError),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> NetError {
    move |source| NetError::Io { what, source }
}

/// An rtnetlink connection in the calling thread's network namespace, served by the agent's
/// runtime (`rt`).
fn connect(rt: &tokio::runtime::Handle) -> Result<Handle, NetError> {
    let _enter = rt.enter();
    let (conn, handle, _) = rtnetlink::new_connection().map_err(io("netlink socket"))?;
    rt.spawn(conn);
    Ok(handle)
}

/// An rtnetlink connection inside the network namespace bound at `netns`. The socket is made
/// on a throwaway thread that joins the namespace (threads of the agent's pools never change
/// namespace) and then served by the agent's runtime; it closes when the handle is dropped.
async fn connect_in(sys: &Arc<dyn Syscall>, netns: &Path) -> Result<Handle, NetError> {
    let ns = open_ns(netns).map_err(io("open pod network namespace"))?;
    let sys = sys.clone();
    let rt = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netns".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let r = sys
                .setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| NetError::Io {
                    what: "join pod network namespace",
                    source: e.into(),
                })
                .and_then(|()| connect(&rt));
            let _ = tx.send(r);
        })
        .map_err(io("netns thread"))?;
    rx.await.map_err(|_| NetError::Io {
        what: "netns thread",
        source: std::io::Error::other("exited without an answer"),
    })?
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

fn is_eexist(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -17)
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
    /// rtnetlink in the node's namespace, for the agent's lifetime.
    handle: Handle,
    /// Index of [`BRIDGE`] once [`Network::setup_host`] made it.
    bridge: AtomicU32,
}

impl Network {
    /// Must be called on the agent's runtime (it starts the netlink connection there).
    pub fn new(
        sys: Arc<dyn Syscall>,
        pod_cidr: Cidr,
        cluster: Cidr,
        state: PathBuf,
    ) -> Result<Self, NetError> {
        let ipam = Ipam::new(pod_cidr, state).map_err(io("ipam state"))?;
        let rt = tokio::runtime::Handle::try_current().map_err(|e| NetError::Io {
            what: "netlink connection",
            source: std::io::Error::other(e),
        })?;
        Ok(Self {
            ipam,
            cluster,
            sys,
            handle: connect(&rt)?,
            bridge: AtomicU32::new(0),
        })
    }

    /// Bridge up with the gateway address, forwarding on, NAT table in place. A NAT table the
    /// kernel refuses (no nf_tables) is logged, not fatal: pods still reach the cluster.
    pub async fn setup_host(&self, node_ips: &[Ipv4Addr]) -> Result<(), NetError> {
        let handle = &self.handle;
        let index = match link_index(handle, BRIDGE).await? {
            Some(i) => i,
            None => {
                handle
                    .link()
                    .add(LinkBridge::new(BRIDGE).build())
                    .execute()
                    .await?;
                link_index(handle, BRIDGE)
                    .await?
                    .ok_or_else(|| NetError::NoLink(BRIDGE.into()))?
            }
        };
        add_address(handle, index, self.ipam.gateway(), self.ipam.cidr.len).await?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await?;
        self.bridge.store(index, Ordering::Relaxed);
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(io("enable ip_forward"))?;
        if let Err(e) = self.nat(node_ips).await {
            tracing::warn!(error = %error_chain(&e), "no outbound NAT for pods");
        }
        Ok(())
    }

    /// (Re)write the NAT table: masquerade pod traffic whose destination is outside the
    /// cluster network and not a node.
    pub async fn nat(&self, node_ips: &[Ipv4Addr]) -> Result<(), NetError> {
        let (batch, acks) = nft::nat_batch(&self.ipam.cidr, &self.cluster, node_ips, 0);
        tokio::task::spawn_blocking(move || nft::apply(&batch, acks))
            .await
            .map_err(|e| NetError::Io {
                what: "nftables task",
                source: std::io::Error::other(e),
            })??;
        Ok(())
    }

    async fn bridge_index(&self) -> Result<u32, NetError> {
        match self.bridge.load(Ordering::Relaxed) {
            0 => link_index(&self.handle, BRIDGE)
                .await?
                .ok_or_else(|| NetError::NoLink(BRIDGE.into())),
            i => Ok(i),
        }
    }

    /// Connect a pod's network namespace: returns its address.
    ///
    /// One request makes the pair: the host end enslaved to the bridge and up, the pod end
    /// created as `eth0` inside the pod's namespace. Then, inside: `lo` and `eth0` up, the
    /// address, the default route.
    pub async fn attach(&self, netns: &Path, pod_uid: &str) -> Result<Ipv4Addr, NetError> {
        let t0 = std::time::Instant::now();
        let ip = self
            .ipam
            .allocate(pod_uid)
            .map_err(io("allocate pod address"))?;
        let host = host_veth(pod_uid);
        let bridge = self.bridge_index().await?;
        let ns = open_ns(netns).map_err(io("open pod network namespace"))?;
        let (inside, ()) = tokio::try_join!(connect_in(&self.sys, netns), async {
            let pair = || {
                let peer = LinkMessageBuilder::<LinkUnspec>::new()
                    .name(POD_IFACE.to_owned())
                    .setns_by_fd(ns.as_raw_fd())
                    .build();
                LinkVeth::new(&host, POD_IFACE)
                    .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                    .controller(bridge)
                    .up()
                    .build()
            };
            match self.handle.link().add(pair()).execute().await {
                Ok(()) => Ok(()),
                Err(e) if is_eexist(&e) => {
                    // A host end left by an attempt that failed half-way: replace it.
                    if let Some(old) = link_index(&self.handle, &host).await? {
                        self.handle.link().del(old).execute().await?;
                    }
                    self.handle.link().add(pair()).execute().await?;
                    Ok(())
                }
                Err(e) => Err(NetError::from(e)),
            }
        })?;
        configure_pod(&inside, ip, self.ipam.cidr.len, self.ipam.gateway()).await?;
        tracing::debug!(us = t0.elapsed().as_micros(), %ip, "pod network attached");
        Ok(ip)
    }

    /// Disconnect a pod and return its address to the pool.
    pub async fn detach(&self, pod_uid: &str) -> Result<(), NetError> {
        if let Some(idx) = link_index(&self.handle, &host_veth(pod_uid)).await? {
            self.handle.link().del(idx).execute().await?;
        }
        self.ipam.release(pod_uid);
        Ok(())
    }

    /// Routes to other nodes' pod CIDRs via their IPs (replacing stale ones).
    pub async fn routes(&self, peers: &[(Cidr, Ipv4Addr)]) -> Result<(), NetError> {
        for (cidr, via) in peers {
            if *cidr == self.ipam.cidr {
                continue;
            }
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(cidr.addr, cidr.len)
                .gateway(*via)
                .build();
            self.handle.route().add(route).replace().execute().await?;
        }
        Ok(())
    }
}

/// `lo` and `eth0` up, `eth0`'s address, the default route via the bridge (from inside the
/// pod's namespace).
async fn configure_pod(
    handle: &Handle,
    ip: Ipv4Addr,
    len: u8,
    gw: Ipv4Addr,
) -> Result<(), NetError> {
    let (lo, idx) = tokio::try_join!(link_index(handle, "lo"), link_index(handle, POD_IFACE))?;
    let lo = lo.ok_or_else(|| NetError::NoLink("lo".into()))?;
    let idx = idx.ok_or_else(|| NetError::NoLink(POD_IFACE.into()))?;
    tokio::try_join!(
        async {
            handle
                .link()
                .set(LinkUnspec::new_with_index(lo).up().build())
                .execute()
                .await
                .map_err(NetError::from)
        },
        add_address(handle, idx, ip, len),
        async {
            handle
                .link()
                .set(LinkUnspec::new_with_index(idx).up().build())
                .execute()
                .await
                .map_err(NetError::from)
        },
    )?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build();
    handle.route().add(route).replace().execute().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_ifnamsiz() {
        let n = host_veth("3f2c9a1b-1111-2222-3333-444455556666");
        assert_eq!(n, "veth3f2c9a1b");
        assert!(n.len() < 16, "IFNAMSIZ");
        assert_eq!(host_veth("xyz"), "veth00000000");
    }
}
