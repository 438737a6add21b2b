//! ICMP echo made by the host. The target must be inside the probe's
//! allow-list (`icmp://HOST` or a network); without socket privileges the
//! call answers an error of kind `unavailable`.

pub use crate::wasmprobe::plugin::icmp::{
    EchoReply, EchoRequest, EchoResult, ErrorKind, IcmpError, SocketMode, echo,
};
pub use crate::wasmprobe::plugin::types::IpProtocol;

/// A request with ping(8)'s defaults: 56-byte payload, one second per
/// reply; IPv6 preferred with fallback, as blackbox_exporter does.
pub fn request(target: &str, count: u32) -> EchoRequest {
    EchoRequest {
        target: target.to_string(),
        count,
        interval_ms: 1000,
        timeout_ms: 1000,
        payload_size: 56,
        ttl: None,
        preferred_ip_protocol: Some(IpProtocol::Ip6),
        ip_protocol_fallback: true,
        source: None,
    }
}
