//! rtnetlink messages, built and parsed as bytes: list links, set a link up, add an address,
//! add a route. Only what PID 1 needs; the socket itself lives in [`crate::linux`].

use std::net::IpAddr;

use crate::sys::Link;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_NEWROUTE: u16 = 24;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;

/// One netlink message under construction.
struct Message {
    buf: Vec<u8>,
}

impl Message {
    fn new(kind: u16, flags: u16, seq: u32) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in finish()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        Self { buf }
    }

    fn bytes(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        self
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        std::mem::take(&mut self.buf)
    }
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> Vec<u8> {
    let mut out = vec![0u8, 0, 0, 0]; // family, pad, type
    out.extend_from_slice(&index.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&change.to_ne_bytes());
    out
}

fn family(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { AF_INET } else { AF_INET6 }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// `RTM_GETLINK` dump request.
pub fn get_links(seq: u32) -> Vec<u8> {
    Message::new(RTM_GETLINK, NLM_F_DUMP, seq)
        .bytes(&ifinfomsg(0, 0, 0))
        .finish()
}

/// Sets link `index` up.
pub fn link_up(seq: u32, index: u32) -> Vec<u8> {
    Message::new(RTM_NEWLINK, NLM_F_ACK, seq)
        .bytes(&ifinfomsg(index, IFF_UP, IFF_UP))
        .finish()
}

/// Adds `address/prefix` to link `index`.
pub fn add_address(seq: u32, index: u32, address: IpAddr, prefix: u8) -> Vec<u8> {
    let mut header = vec![family(address), prefix, 0, RT_SCOPE_UNIVERSE];
    header.extend_from_slice(&index.to_ne_bytes());
    let ip = ip_bytes(address);
    Message::new(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq)
        .bytes(&header)
        .attr(IFA_LOCAL, &ip)
        .attr(IFA_ADDRESS, &ip)
        .finish()
}

/// Adds a route to `dest/prefix` out of `index`, via `gateway` when given.
pub fn add_route(
    seq: u32,
    index: u32,
    dest: IpAddr,
    prefix: u8,
    gateway: Option<IpAddr>,
) -> Vec<u8> {
    let scope = if gateway.is_some() {
        RT_SCOPE_UNIVERSE
    } else {
        RT_SCOPE_LINK
    };
    let header = [
        family(dest),
        prefix,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        scope,
        RTN_UNICAST,
        0,
        0,
        0,
        0,
    ];
    let mut msg = Message::new(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq);
    msg.bytes(&header);
    if prefix > 0 {
        msg.attr(RTA_DST, &ip_bytes(dest));
    }
    if let Some(gw) = gateway {
        msg.attr(RTA_GATEWAY, &ip_bytes(gw));
    }
    msg.attr(RTA_OIF, &index.to_ne_bytes());
    msg.finish()
}

/// What one received buffer said.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub links: Vec<Link>,
    /// `Some(0)` is an acknowledgement; other values are negative errno.
    pub error: Option<i32>,
    pub done: bool,
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// Parses the messages in one received buffer. Malformed input ends parsing early.
pub fn parse(buf: &[u8]) -> Reply {
    let mut reply = Reply::default();
    let mut at = 0;
    while let (Some(len), Some(kind)) = (u32_at(buf, at), u16_at(buf, at + 4)) {
        let Ok(len) = usize::try_from(len) else { break };
        if len < 16 || at + len > buf.len() {
            break;
        }
        let body = &buf[at + 16..at + len];
        match kind {
            NLMSG_DONE => reply.done = true,
            NLMSG_ERROR => {
                reply.error = u32_at(body, 0).map(|e| i32::from_ne_bytes(e.to_ne_bytes()));
            }
            RTM_NEWLINK => {
                if let Some(link) = parse_link(body) {
                    reply.links.push(link);
                }
            }
            _ => {}
        }
        at += (len + 3) & !3;
    }
    reply
}

fn parse_link(body: &[u8]) -> Option<Link> {
    let index = u32_at(body, 4)?;
    let flags = u32_at(body, 8)?;
    let mut link = Link {
        index,
        name: String::new(),
        mac: [0; 6],
        loopback: flags & IFF_LOOPBACK != 0,
    };
    let mut at = 16;
    while let (Some(len), Some(kind)) = (u16_at(body, at), u16_at(body, at + 2)) {
        let len = usize::from(len);
        if len < 4 || at + len > body.len() {
            break;
        }
        let data = &body[at + 4..at + len];
        match kind {
            IFLA_IFNAME => {
                let name = data.split(|&b| b == 0).next().unwrap_or_default();
                link.name = String::from_utf8_lossy(name).into_owned();
            }
            IFLA_ADDRESS if data.len() == 6 => link.mac.copy_from_slice(data),
            _ => {}
        }
        at += (len + 3) & !3;
    }
    Some(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_message_layout() {
        let msg = add_address(7, 2, "10.0.2.15".parse().unwrap(), 24);
        // header 16 + ifaddrmsg 8 + two 8-byte attributes
        assert_eq!(msg.len(), 40);
        assert_eq!(u32_at(&msg, 0), Some(40));
        assert_eq!(u16_at(&msg, 4), Some(RTM_NEWADDR));
        assert_eq!(u32_at(&msg, 8), Some(7));
        assert_eq!(&msg[16..20], &[AF_INET, 24, 0, 0]);
        assert_eq!(u32_at(&msg, 20), Some(2));
        assert_eq!(u16_at(&msg, 26), Some(IFA_LOCAL));
        assert_eq!(&msg[28..32], &[10, 0, 2, 15]);
    }

    #[test]
    fn default_route_has_no_destination_attribute() {
        let msg = add_route(
            1,
            3,
            "0.0.0.0".parse().unwrap(),
            0,
            Some("10.0.2.2".parse().unwrap()),
        );
        // 16 + 12 + gateway 8 + oif 8
        assert_eq!(msg.len(), 44);
        assert_eq!(u16_at(&msg, 30), Some(RTA_GATEWAY));
        assert_eq!(&msg[32..36], &[10, 0, 2, 2]);
        assert_eq!(u16_at(&msg, 38), Some(RTA_OIF));
        let on_link = add_route(1, 3, "10.5.0.0".parse().unwrap(), 24, None);
        assert_eq!(on_link[22], RT_SCOPE_LINK);
        assert_eq!(u16_at(&on_link, 30), Some(RTA_DST));
    }

    #[test]
    fn parses_a_link_dump_and_errors() {
        let mut body = ifinfomsg(2, IFF_UP, 0);
        let mut msg = Message::new(RTM_NEWLINK, 0, 1);
        msg.bytes(&body);
        msg.attr(IFLA_IFNAME, b"eth0\0");
        msg.attr(IFLA_ADDRESS, &[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        let mut buf = msg.finish();
        body = (-17i32).to_ne_bytes().to_vec();
        buf.extend(Message::new(NLMSG_ERROR, 0, 1).bytes(&body).finish());
        buf.extend(Message::new(NLMSG_DONE, 0, 1).finish());
        let reply = parse(&buf);
        assert_eq!(reply.links.len(), 1);
        assert_eq!(reply.links[0].name, "eth0");
        assert_eq!(reply.links[0].mac_string(), "52:54:00:12:34:56");
        assert!(!reply.links[0].loopback);
        assert_eq!(reply.error, Some(-17));
        assert!(reply.done);
        // Truncated input stops without panicking.
        assert_eq!(parse(&buf[..20]).links.len(), 0);
    }
}
