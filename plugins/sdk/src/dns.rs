//! DNS queries made by the host. The server must be inside the probe's
//! allow-list as `dns://HOST:PORT` (the system's resolver too, when no
//! server is given); answers come back parsed, with record data in
//! presentation format.

pub use crate::wasmprobe::plugin::dns::{
    Answer, DnsError, DnsTimings, ErrorKind, Request, ResourceRecord, Transport, query,
};
pub use crate::wasmprobe::plugin::types::IpProtocol;

/// A recursive UDP query of class IN, as `dig` sends by default; IPv6
/// preferred with fallback for a server given by name.
pub fn request(name: &str, record_type: &str, server: Option<&str>) -> Request {
    Request {
        name: name.to_string(),
        record_type: record_type.to_string(),
        class: None,
        recursion_desired: true,
        dnssec_ok: false,
        transport: Transport::Udp,
        server: server.map(str::to_string),
        timeout_ms: None,
        preferred_ip_protocol: Some(IpProtocol::Ip6),
        ip_protocol_fallback: true,
    }
}
