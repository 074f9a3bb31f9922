//! The node's nftables table, written over netlink (`NETLINK_NETFILTER`) in one batch: no `nft`
//! binary (the appliance has none) and no libnftnl.
//!
//! Why hand-written: the Rust nftables crates either bind libnftnl (`nftnl`: a C library in
//! the initramfs for a dozen rules), drive the `nft` binary (`nftables`: JSON through the CLI),
//! or are GPL-3.0 (`rustables`), which an Apache-2.0 binary cannot link. The agent needs four
//! message kinds and six expression kinds, so it builds them here.
//!
//! The table, as `nft list table ip skiff` prints it:
//!
//! ```text
//! table ip skiff {
//!     chain postrouting {
//!         type nat hook postrouting priority srcnat; policy accept;
//!         ip daddr 10.244.0.0/16 accept        # the cluster network
//!         ip daddr 192.168.1.2 accept          # each node
//!         ip saddr 10.244.1.0/24 masquerade    # everything else the pods send
//!     }
//!     chain forward {
//!         type filter hook forward priority filter; policy accept;
//!         ip saddr 10.244.1.0/24 accept
//!         ip daddr 10.244.1.0/24 accept
//!     }
//! }
//! ```
//!
//! The batch creates the table (a no-op when it exists), deletes it, and creates it again
//! with its chains and rules, so one transaction replaces whatever was there.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use super::Cidr;

/// nftables table the agent owns.
pub const TABLE: &str = "skiff";

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFPROTO_IPV4: u8 = 2;

// Attribute numbers from linux/netfilter/nf_tables.h.
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_CMP_EQ: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_POST_ROUTING: u32 = 4;
/// `priority srcnat` and `priority filter`.
const PRIORITY_SRCNAT: i32 = 100;
const PRIORITY_FILTER: i32 = 0;
/// Offsets of the source and destination addresses in an IPv4 header.
const IP_SADDR: u32 = 12;
const IP_DADDR: u32 = 16;

/// How long to wait for the kernel's answers.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds one netlink message: header, `nfgenmsg`, attributes.
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel
        buf.push(family);
        buf.push(0); // NFNETLINK_V0
        buf.extend_from_slice(&res_id.to_be_bytes());
        Self { buf }
    }

    fn nft(kind: u16, flags: u16, seq: u32) -> Self {
        Self::new(
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            seq,
            NFPROTO_IPV4,
            0,
        )
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    fn str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v)
    }

    fn be32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.attr(kind, &v.to_be_bytes())
    }

    /// A nested attribute whose contents `f` writes.
    fn nest(&mut self, kind: u16, f: impl FnOnce(&mut Self)) -> &mut Self {
        let start = self.buf.len();
        self.attr(kind | NLA_F_NESTED, &[]);
        f(self);
        let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// One expression of a rule.
enum Expr {
    /// Load `len` bytes of the network header at `offset` into register 1.
    Payload {
        offset: u32,
        len: u32,
    },
    /// Register 1 &= mask.
    Mask([u8; 4]),
    /// Register 1 == value, or the rule ends.
    Eq([u8; 4]),
    Accept,
    Masquerade,
}

impl Expr {
    fn write(&self, m: &mut Msg) {
        let name = match self {
            Self::Payload { .. } => "payload",
            Self::Mask(_) => "bitwise",
            Self::Eq(_) => "cmp",
            Self::Accept => "immediate",
            Self::Masquerade => "masq",
        };
        m.nest(NFTA_LIST_ELEM, |m| {
            m.str(NFTA_EXPR_NAME, name);
            m.nest(NFTA_EXPR_DATA, |m| match self {
                Self::Payload { offset, len } => {
                    m.be32(NFTA_PAYLOAD_DREG, NFT_REG_1)
                        .be32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER)
                        .be32(NFTA_PAYLOAD_OFFSET, *offset)
                        .be32(NFTA_PAYLOAD_LEN, *len);
                }
                Self::Mask(mask) => {
                    m.be32(NFTA_BITWISE_SREG, NFT_REG_1)
                        .be32(NFTA_BITWISE_DREG, NFT_REG_1)
                        .be32(NFTA_BITWISE_LEN, 4)
                        .nest(NFTA_BITWISE_MASK, |m| {
                            m.attr(NFTA_DATA_VALUE, mask);
                        })
                        .nest(NFTA_BITWISE_XOR, |m| {
                            m.attr(NFTA_DATA_VALUE, &[0; 4]);
                        });
                }
                Self::Eq(value) => {
                    m.be32(NFTA_CMP_SREG, NFT_REG_1)
                        .be32(NFTA_CMP_OP, NFT_CMP_EQ)
                        .nest(NFTA_CMP_DATA, |m| {
                            m.attr(NFTA_DATA_VALUE, value);
                        });
                }
                Self::Accept => {
                    m.be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT)
                        .nest(NFTA_IMMEDIATE_DATA, |m| {
                            m.nest(NFTA_DATA_VERDICT, |m| {
                                m.be32(NFTA_VERDICT_CODE, NF_ACCEPT);
                            });
                        });
                }
                Self::Masquerade => {}
            });
        });
    }
}

/// `ip saddr|daddr CIDR` as expressions.
fn match_addr(offset: u32, cidr: &Cidr) -> Vec<Expr> {
    let mut v = vec![Expr::Payload { offset, len: 4 }];
    if cidr.len < 32 {
        let mask = if cidr.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(cidr.len))
        };
        v.push(Expr::Mask(mask.to_be_bytes()));
    }
    v.push(Expr::Eq(cidr.addr.octets()));
    v
}

/// Builds the batch, numbering messages from `seq`.
struct Batch {
    msgs: Vec<Vec<u8>>,
    seq: u32,
}

impl Batch {
    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn table(&mut self, kind: u16, flags: u16) {
        let seq = self.next_seq();
        let mut m = Msg::nft(kind, flags, seq);
        m.str(NFTA_TABLE_NAME, TABLE);
        self.msgs.push(m.finish());
    }

    fn chain(&mut self, name: &str, kind: &str, hook: u32, priority: i32) {
        let seq = self.next_seq();
        let mut m = Msg::nft(NFT_MSG_NEWCHAIN, NLM_F_CREATE, seq);
        m.str(NFTA_CHAIN_TABLE, TABLE)
            .str(NFTA_CHAIN_NAME, name)
            .nest(NFTA_CHAIN_HOOK, |m| {
                m.be32(NFTA_HOOK_HOOKNUM, hook)
                    .attr(NFTA_HOOK_PRIORITY, &priority.to_be_bytes());
            })
            .be32(NFTA_CHAIN_POLICY, NF_ACCEPT)
            .str(NFTA_CHAIN_TYPE, kind);
        self.msgs.push(m.finish());
    }

    fn rule(&mut self, chain: &str, exprs: &[Expr]) {
        let seq = self.next_seq();
        let mut m = Msg::nft(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, seq);
        m.str(NFTA_RULE_TABLE, TABLE)
            .str(NFTA_RULE_CHAIN, chain)
            .nest(NFTA_RULE_EXPRESSIONS, |m| {
                for e in exprs {
                    e.write(m);
                }
            });
        self.msgs.push(m.finish());
    }
}

/// The node's table as one netlink batch (begin, messages, end), first sequence number
/// `seq + 1`. Returns the bytes and the number of messages the kernel acknowledges.
pub fn nat_batch(
    pod_cidr: &Cidr,
    cluster: &Cidr,
    node_ips: &[Ipv4Addr],
    seq: u32,
) -> (Vec<u8>, usize) {
    let mut b = Batch {
        msgs: Vec::new(),
        seq,
    };
    let res_id = NFNL_SUBSYS_NFTABLES;
    let begin_seq = b.next_seq();
    let begin = Msg::new(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, begin_seq, 0, res_id).finish();
    b.table(NFT_MSG_NEWTABLE, NLM_F_CREATE);
    b.table(NFT_MSG_DELTABLE, 0);
    b.table(NFT_MSG_NEWTABLE, NLM_F_CREATE);
    b.chain("postrouting", "nat", NF_INET_POST_ROUTING, PRIORITY_SRCNAT);
    let mut keep = vec![*cluster];
    keep.extend(node_ips.iter().map(|ip| Cidr { addr: *ip, len: 32 }));
    for k in &keep {
        let mut e = match_addr(IP_DADDR, k);
        e.push(Expr::Accept);
        b.rule("postrouting", &e);
    }
    let mut e = match_addr(IP_SADDR, pod_cidr);
    e.push(Expr::Masquerade);
    b.rule("postrouting", &e);
    b.chain("forward", "filter", NF_INET_FORWARD, PRIORITY_FILTER);
    for offset in [IP_SADDR, IP_DADDR] {
        let mut e = match_addr(offset, pod_cidr);
        e.push(Expr::Accept);
        b.rule("forward", &e);
    }
    let acks = b.msgs.len();
    let end_seq = b.next_seq();
    let end = Msg::new(NFNL_MSG_BATCH_END, NLM_F_REQUEST, end_seq, 0, res_id).finish();
    let mut out = begin;
    for m in b.msgs {
        out.extend_from_slice(&m);
    }
    out.extend_from_slice(&end);
    (out, acks)
}

/// Why the kernel refused the table.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("netfilter netlink socket")]
    Socket(#[source] std::io::Error),
    #[error("kernel refused message {seq}")]
    Refused {
        seq: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("no answer from the kernel")]
    Timeout,
}

/// Send a batch made by [`nat_batch`] (blocking; the answers come within microseconds) and
/// wait until the kernel acknowledged `acks` messages or refused one.
pub fn apply(batch: &[u8], acks: usize) -> Result<(), NftError> {
    let mut sock = Socket::new(NETLINK_NETFILTER).map_err(NftError::Socket)?;
    sock.bind_auto().map_err(NftError::Socket)?;
    sock.connect(&SocketAddr::new(0, 0))
        .map_err(NftError::Socket)?;
    sock.send(batch, 0).map_err(NftError::Socket)?;
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let mut got = 0;
    let mut buf = vec![0u8; 16 * 1024];
    while got < acks {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [nix::poll::PollFd::new(
            sock.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
            Ok(0) => return Err(NftError::Timeout),
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(NftError::Socket(e.into())),
        }
        buf.clear();
        let n = sock.recv(&mut buf, 0).map_err(NftError::Socket)?;
        for (kind, seq, payload) in messages(&buf[..n]) {
            match kind {
                NLMSG_ERROR => {
                    let code = payload
                        .get(0..4)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, i32::from_ne_bytes);
                    if code != 0 {
                        return Err(NftError::Refused {
                            seq,
                            source: std::io::Error::from_raw_os_error(-code),
                        });
                    }
                    got += 1;
                }
                NLMSG_DONE => got += 1,
                _ => {}
            }
        }
    }
    Ok(())
}

/// The (type, sequence number, payload) of each netlink message in `buf`.
fn messages(buf: &[u8]) -> Vec<(u16, u32, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDRLEN <= buf.len() {
        let h = &buf[at..at + NLMSG_HDRLEN];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes([h[4], h[5]]);
        let seq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
        out.push((kind, seq, &buf[at + NLMSG_HDRLEN..at + len]));
        at += len.next_multiple_of(4);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    /// (type, flags) of each message.
    fn kinds(buf: &[u8]) -> Vec<(u16, u16)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + NLMSG_HDRLEN <= buf.len() {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            assert_eq!(len % 4, 0, "messages are 4-byte aligned");
            let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap());
            let flags = u16::from_ne_bytes(buf[at + 6..at + 8].try_into().unwrap());
            out.push((kind, flags));
            at += len;
        }
        assert_eq!(at, buf.len(), "no trailing bytes");
        out
    }

    #[test]
    fn batch_replaces_the_table_in_one_transaction() {
        let (buf, acks) = nat_batch(
            &cidr("10.244.1.0/24"),
            &cidr("10.244.0.0/16"),
            &[Ipv4Addr::new(192, 168, 1, 2)],
            100,
        );
        let k = kinds(&buf);
        let nft = |m: u16| (NFNL_SUBSYS_NFTABLES << 8) | m;
        let types: Vec<u16> = k.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            types,
            vec![
                NFNL_MSG_BATCH_BEGIN,
                nft(NFT_MSG_NEWTABLE),
                nft(NFT_MSG_DELTABLE),
                nft(NFT_MSG_NEWTABLE),
                nft(NFT_MSG_NEWCHAIN),
                nft(NFT_MSG_NEWRULE), // daddr cluster accept
                nft(NFT_MSG_NEWRULE), // daddr node accept
                nft(NFT_MSG_NEWRULE), // saddr pods masquerade
                nft(NFT_MSG_NEWCHAIN),
                nft(NFT_MSG_NEWRULE),
                nft(NFT_MSG_NEWRULE),
                NFNL_MSG_BATCH_END,
            ]
        );
        assert_eq!(
            acks,
            types.len() - 2,
            "every message but begin/end is acked"
        );
        assert!(k[1..k.len() - 1].iter().all(|(_, f)| f & NLM_F_ACK != 0));
        // The masquerade rule names its expression and matches the pod CIDR.
        let masq = b"masq\0";
        assert!(buf.windows(masq.len()).any(|w| w == masq));
        let pods = [10u8, 244, 1, 0];
        assert!(buf.windows(4).any(|w| w == pods));
    }

    #[test]
    fn host_addresses_are_matched_without_a_mask() {
        let e = match_addr(IP_DADDR, &cidr("192.168.1.2/32"));
        assert_eq!(e.len(), 2, "payload + cmp, no bitwise");
        let e = match_addr(IP_SADDR, &cidr("10.244.1.0/24"));
        assert!(matches!(e[1], Expr::Mask([255, 255, 255, 0])));
    }

    #[test]
    fn parses_kernel_answers() {
        let mut buf = Vec::new();
        for (kind, seq, code) in [(NLMSG_ERROR, 7u32, 0i32), (NLMSG_ERROR, 8, -1)] {
            buf.extend_from_slice(&20u32.to_ne_bytes());
            buf.extend_from_slice(&kind.to_ne_bytes());
            buf.extend_from_slice(&0u16.to_ne_bytes());
            buf.extend_from_slice(&seq.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&code.to_ne_bytes());
        }
        let m = messages(&buf);
        assert_eq!(m.len(), 2);
        assert_eq!((m[1].0, m[1].1), (NLMSG_ERROR, 8));
        assert_eq!(m[1].2, (-1i32).to_ne_bytes());
        assert!(messages(&buf[..10]).is_empty(), "a short buffer is ignored");
    }

    /// Needs root and the `nft` binary (only to read the table back): in a network namespace
    /// of its own, the table goes in, replaces itself when applied again, and reads back as
    /// the rules in the module documentation.
    #[test]
    fn kernel_accepts_and_replaces_the_table() {
        let root = nix::unistd::geteuid().is_root();
        let nft = std::process::Command::new("nft").arg("--version").output();
        if !root || nft.is_err() {
            eprintln!("skipping: needs root and nft");
            return;
        }
        let listed = std::thread::spawn(|| {
            use crate::sys::Syscall;
            crate::sys::Linux
                .unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare net");
            let ips = [Ipv4Addr::new(192, 168, 7, 2), Ipv4Addr::new(192, 168, 7, 3)];
            for n in [1, 2] {
                let (b, acks) =
                    nat_batch(&cidr("10.244.1.0/24"), &cidr("10.244.0.0/16"), &ips[..n], 0);
                apply(&b, acks).expect("kernel accepts the batch");
            }
            // A child forked from this thread lives in its namespace.
            let out = std::process::Command::new("nft")
                .args(["list", "table", "ip", TABLE])
                .output()
                .expect("run nft");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .join()
        .expect("test thread");
        for want in [
            "type nat hook postrouting priority srcnat; policy accept;",
            "ip daddr 10.244.0.0/16 accept",
            "ip daddr 192.168.7.2 accept",
            "ip daddr 192.168.7.3 accept",
            "ip saddr 10.244.1.0/24 masquerade",
            "type filter hook forward priority filter; policy accept;",
            "ip saddr 10.244.1.0/24 accept",
            "ip daddr 10.244.1.0/24 accept",
        ] {
            assert!(listed.contains(want), "no {want:?} in\n{listed}");
        }
        assert_eq!(listed.matches("masquerade").count(), 1, "{listed}");
    }
}
