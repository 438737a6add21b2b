//! ICMP echo packets: building requests and reading replies, for IPv4 and
//! IPv6, with and without the IP header raw IPv4 sockets deliver.

use std::net::IpAddr;

use etherparse::{
    IcmpEchoHeader, Icmpv4Header, Icmpv4Slice, Icmpv4Type, Icmpv6Header, Icmpv6Slice, Icmpv6Type,
    Ipv4HeaderSlice,
};

/// The first payload bytes of every request: a per-request token that a
/// reply must echo back, so a stray or forged reply with the right
/// identifier and sequence still does not match.
pub(crate) const TOKEN_LEN: usize = 8;

/// An echo request, ready to send.
pub(crate) fn echo_request(
    v6: bool,
    id: u16,
    seq: u16,
    token: u64,
    payload_size: usize,
) -> Vec<u8> {
    let mut payload = vec![0u8; payload_size.max(TOKEN_LEN)];
    payload[..TOKEN_LEN].copy_from_slice(&token.to_be_bytes());
    for (i, b) in payload[TOKEN_LEN..].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let echo = IcmpEchoHeader { id, seq };
    let mut packet = if v6 {
        // The kernel fills in the ICMPv6 checksum (it covers addresses the
        // socket chooses).
        Icmpv6Header::new(Icmpv6Type::EchoRequest(echo))
            .to_bytes()
            .to_vec()
    } else {
        Icmpv4Header::with_checksum(Icmpv4Type::EchoRequest(echo), &payload)
            .to_bytes()
            .to_vec()
    };
    packet.extend_from_slice(&payload);
    packet
}

/// An echo reply as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) id: u16,
    pub(crate) seq: u16,
    pub(crate) token: u64,
    /// TTL from the IPv4 header, when the socket delivered one.
    pub(crate) ttl: Option<u8>,
    /// Source from the IPv4 header, when the socket delivered one.
    pub(crate) source: Option<IpAddr>,
}

fn token_of(payload: &[u8]) -> Option<u64> {
    payload
        .get(..TOKEN_LEN)
        .and_then(|t| <[u8; TOKEN_LEN]>::try_from(t).ok())
        .map(u64::from_be_bytes)
}

/// Reads an echo reply; anything else (our own requests seen on loopback,
/// unreachables, truncated data) is `None`.
pub(crate) fn parse_reply(v6: bool, with_ip_header: bool, data: &[u8]) -> Option<Reply> {
    if v6 {
        let icmp = Icmpv6Slice::from_slice(data).ok()?;
        let Icmpv6Type::EchoReply(echo) = icmp.icmp_type() else {
            return None;
        };
        return Some(Reply {
            id: echo.id,
            seq: echo.seq,
            token: token_of(icmp.payload())?,
            ttl: None,
            source: None,
        });
    }
    let (icmp_bytes, ttl, source) = if with_ip_header {
        let ip = Ipv4HeaderSlice::from_slice(data).ok()?;
        let len = ip.slice().len();
        (
            data.get(len..)?,
            Some(ip.ttl()),
            Some(IpAddr::V4(ip.source_addr())),
        )
    } else {
        (data, None, None)
    };
    let icmp = Icmpv4Slice::from_slice(icmp_bytes).ok()?;
    let Icmpv4Type::EchoReply(echo) = icmp.icmp_type() else {
        return None;
    };
    Some(Reply {
        id: echo.id,
        seq: echo.seq,
        token: token_of(icmp.payload())?,
        ttl,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as a peer would build it from a request.
    fn reply_from(request: &[u8], v6: bool) -> Vec<u8> {
        let mut r = request.to_vec();
        r[0] = if v6 { 129 } else { 0 };
        if !v6 {
            r[2] = 0;
            r[3] = 0;
            let sum = Icmpv4Slice::from_slice(&r)
                .map(|s| match s.icmp_type() {
                    Icmpv4Type::EchoReply(e) => {
                        Icmpv4Header::with_checksum(Icmpv4Type::EchoReply(e), s.payload()).checksum
                    }
                    _ => 0,
                })
                .unwrap_or(0);
            r[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        r
    }

    #[test]
    fn requests_round_trip_through_replies() {
        for v6 in [false, true] {
            let req = echo_request(v6, 0x1234, 7, 0xdead_beef_0bad_cafe, 56);
            assert_eq!(req.len(), 8 + 56);
            let reply = parse_reply(v6, false, &reply_from(&req, v6));
            assert_eq!(
                reply.map(|r| (r.id, r.seq, r.token)),
                Some((0x1234, 7, 0xdead_beef_0bad_cafe))
            );
            // A request is not a reply.
            assert_eq!(parse_reply(v6, false, &req), None);
        }
    }

    #[test]
    fn ipv4_checksum_is_valid() {
        let req = echo_request(false, 1, 1, 42, 32);
        let mut sum: u32 = 0;
        for pair in req.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
    }

    #[test]
    fn raw_ipv4_replies_carry_ttl_and_source() {
        let icmp = reply_from(&echo_request(false, 9, 3, 5, 16), false);
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 61, 1, 0, 0, 127, 0, 0, 2, 127, 0, 0, 1,
        ];
        let total = (ip.len() + icmp.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&icmp);
        let r = parse_reply(false, true, &ip);
        assert_eq!(r.as_ref().map(|r| r.ttl), Some(Some(61)));
        assert_eq!(r.and_then(|r| r.source), Some(IpAddr::from([127, 0, 0, 2])));
    }

    #[test]
    fn garbage_is_ignored() {
        assert_eq!(parse_reply(false, true, &[1, 2, 3]), None);
        assert_eq!(parse_reply(true, false, &[]), None);
        // An echo reply without our token is not ours.
        let short = reply_from(&echo_request(false, 1, 1, 1, 8), false);
        assert!(parse_reply(false, false, &short[..10]).is_none());
    }
}
