//! TCP connections made by the host. The address must be inside the
//! probe's allow-list (`tcp://HOST:PORT`, or a network); TLS uses the
//! probe's trust settings. A connection closes when dropped, and the host
//! closes any left open when the run ends.

pub use crate::wasmprobe::plugin::http::TlsInfo;
pub use crate::wasmprobe::plugin::tcp::{
    ConnectInfo, ConnectRequest, ConnectTimings, Connection, ErrorKind, Received, TcpError, connect,
};
pub use crate::wasmprobe::plugin::types::IpProtocol;

/// A plaintext connect request with blackbox_exporter's defaults: IPv6
/// preferred, with fallback.
pub fn request(address: &str) -> ConnectRequest {
    ConnectRequest {
        address: address.to_string(),
        timeout_ms: None,
        preferred_ip_protocol: Some(IpProtocol::Ip6),
        ip_protocol_fallback: true,
        tls: false,
        server_name: None,
        alpn: Vec::new(),
    }
}

impl Connection {
    /// Reads one line (up to and including `\n`), at most `max` bytes.
    pub fn read_line(&self, max: u32, timeout_ms: Option<u64>) -> Result<Received, TcpError> {
        self.receive(max, Some(b"\n"), timeout_ms)
    }
}
