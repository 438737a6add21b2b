//! tcp: blackbox_exporter's tcp prober as a wasmprobe plugin: connect
//! (optionally with TLS), then hold the `query_response` conversation.
//!
//! Glue only: the conversation, the checks and the metrics live in
//! [`check`]; this file connects and lends it the host's connection.

pub mod check;
pub mod config;
mod expand;

use wasmprobe_sdk::tcp::{self, Connection, Received, TcpError, TlsInfo};
use wasmprobe_sdk::{Context, MetricFamily, Plugin, ProbeError, Report, plugin};

struct Tcp;

impl Plugin for Tcp {
    type Config = config::Config;
    const NAME: &'static str = "tcp";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn families() -> Vec<MetricFamily> {
        check::families()
    }

    fn run(ctx: &Context, config: config::Config) -> Result<Report, ProbeError> {
        let check = check::Check::new(config).map_err(ProbeError::InvalidConfig)?;
        let req = match check.connect_request(&ctx.target) {
            Ok(req) => req,
            Err(message) => return Ok(check::refused(message)),
        };
        let connected = tcp::connect(&req).map(|(conn, info)| (Host(conn), info));
        Ok(check.evaluate(connected))
    }
}

/// The host's connection behind the conversation's trait.
struct Host(Connection);

impl check::Conn for Host {
    fn send(&mut self, data: &[u8]) -> Result<(), TcpError> {
        self.0.send(data)
    }

    fn receive(
        &mut self,
        max_bytes: u32,
        delimiter: Option<&[u8]>,
        timeout_ms: Option<u64>,
    ) -> Result<Received, TcpError> {
        self.0.receive(max_bytes, delimiter, timeout_ms)
    }

    fn start_tls(&mut self, server_name: Option<&str>) -> Result<TlsInfo, TcpError> {
        self.0.start_tls(server_name, &[])
    }
}

plugin!(Tcp);
