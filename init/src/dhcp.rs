//! DHCPv4 packets (RFC 2131/2132): the client's DISCOVER and REQUEST, and reading the server's
//! OFFER/ACK/NAK. The exchange over a socket is in [`crate::linux`].

use std::net::{IpAddr, Ipv4Addr};

use crate::sys::Lease;

const MAGIC: [u8; 4] = [99, 130, 83, 99];
pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const ACK: u8 = 5;
pub const NAK: u8 = 6;

/// A client packet. `request` carries (offered address, server id) for a REQUEST.
pub fn client_packet(
    kind: u8,
    xid: u32,
    mac: [u8; 6],
    request: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Vec<u8> {
    let mut p = vec![0u8; 240];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[10..12].copy_from_slice(&0x8000u16.to_be_bytes()); // answer by broadcast
    p[28..34].copy_from_slice(&mac);
    p[236..240].copy_from_slice(&MAGIC);
    p.extend_from_slice(&[53, 1, kind]);
    if let Some((address, server)) = request {
        p.extend_from_slice(&[50, 4]);
        p.extend_from_slice(&address.octets());
        p.extend_from_slice(&[54, 4]);
        p.extend_from_slice(&server.octets());
    }
    p.extend_from_slice(&[55, 4, 1, 3, 6, 51, 255]);
    p
}

/// A server reply, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: u8,
    pub address: Ipv4Addr,
    pub server: Option<Ipv4Addr>,
    pub lease: Lease,
}

fn ipv4(data: &[u8]) -> Option<Ipv4Addr> {
    let octets: [u8; 4] = data.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(octets))
}

/// Reads a reply to transaction `xid`; anything else (or malformed) is `None`.
pub fn parse_reply(packet: &[u8], xid: u32) -> Option<Reply> {
    if packet.len() < 240 || packet[0] != 2 || packet[236..240] != MAGIC {
        return None;
    }
    if packet[4..8] != xid.to_be_bytes() {
        return None;
    }
    let address = ipv4(&packet[16..20])?;
    let mut kind = None;
    let mut server = None;
    let mut mask = None;
    let mut router = None;
    let mut dns = Vec::new();
    let mut lease_secs = 0;
    let mut at = 240;
    while at < packet.len() {
        let code = packet[at];
        if code == 255 {
            break;
        }
        if code == 0 {
            at += 1;
            continue;
        }
        let len = usize::from(*packet.get(at + 1)?);
        let data = packet.get(at + 2..at + 2 + len)?;
        match code {
            53 => kind = data.first().copied(),
            54 => server = ipv4(data),
            1 => mask = ipv4(data),
            3 => router = ipv4(data),
            6 => {
                dns = data
                    .chunks_exact(4)
                    .filter_map(ipv4)
                    .map(IpAddr::V4)
                    .collect()
            }
            51 => lease_secs = ipv4(data).map(u32::from).unwrap_or_default(),
            _ => {}
        }
        at += 2 + len;
    }
    let prefix = mask.map_or(24, |m| {
        u8::try_from(u32::from(m).leading_ones()).unwrap_or(24)
    });
    Some(Reply {
        kind: kind?,
        address,
        server,
        lease: Lease {
            address: IpAddr::V4(address),
            prefix,
            router: router.map(IpAddr::V4),
            dns,
            lease_secs,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_reply(kind: u8, xid: u32) -> Vec<u8> {
        let mut p = vec![0u8; 240];
        p[0] = 2;
        p[4..8].copy_from_slice(&xid.to_be_bytes());
        p[16..20].copy_from_slice(&[10, 0, 2, 15]);
        p[236..240].copy_from_slice(&MAGIC);
        p.extend_from_slice(&[53, 1, kind, 54, 4, 10, 0, 2, 2, 1, 4, 255, 255, 255, 0]);
        p.extend_from_slice(&[3, 4, 10, 0, 2, 2, 6, 8, 10, 0, 2, 3, 1, 1, 1, 1]);
        p.extend_from_slice(&[0, 51, 4, 0, 1, 81, 128, 255]);
        p
    }

    #[test]
    fn discover_layout() {
        let p = client_packet(DISCOVER, 0xdead_beef, [0x52, 0x54, 0, 1, 2, 3], None);
        assert_eq!(&p[4..8], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&p[28..34], &[0x52, 0x54, 0, 1, 2, 3]);
        assert_eq!(&p[240..243], &[53, 1, DISCOVER]);
        assert_eq!(p.last(), Some(&255));
        let r = client_packet(
            REQUEST,
            1,
            [0; 6],
            Some((Ipv4Addr::new(10, 0, 2, 15), Ipv4Addr::new(10, 0, 2, 2))),
        );
        assert_eq!(&r[243..249], &[50, 4, 10, 0, 2, 15]);
        assert_eq!(&r[249..255], &[54, 4, 10, 0, 2, 2]);
    }

    #[test]
    fn reads_an_offer() {
        let r = parse_reply(&server_reply(OFFER, 9), 9).unwrap();
        assert_eq!(r.kind, OFFER);
        assert_eq!(r.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(r.server, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(r.lease.prefix, 24);
        assert_eq!(r.lease.router, Some("10.0.2.2".parse().unwrap()));
        assert_eq!(r.lease.dns.len(), 2);
        assert_eq!(r.lease.lease_secs, 86400);
    }

    #[test]
    fn ignores_other_transactions_and_garbage() {
        assert!(parse_reply(&server_reply(OFFER, 9), 10).is_none());
        assert!(parse_reply(&[2; 100], 9).is_none());
        let mut truncated = server_reply(ACK, 9);
        truncated.truncate(245);
        assert!(parse_reply(&truncated, 9).is_none());
    }
}
