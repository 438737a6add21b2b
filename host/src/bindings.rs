//! The host side of the WIT contract in `wit/`: the one `bindgen!` of the
//! host. The calls that do I/O (`http`, `icmp`, `tcp`, `dns`) are async; every import may trap,
//! which is kept for hard limits and host bugs.

wasmtime::component::bindgen!({
    world: "probe",
    path: "../wit",
    imports: {
        "wasmprobe:plugin/http.send": async | trappable,
        "wasmprobe:plugin/http.send-batch": async | trappable,
        "wasmprobe:plugin/icmp.echo": async | trappable,
        "wasmprobe:plugin/tcp.connect": async | trappable,
        "wasmprobe:plugin/tcp.[method]connection.send": async | trappable,
        "wasmprobe:plugin/tcp.[method]connection.receive": async | trappable,
        "wasmprobe:plugin/tcp.[method]connection.start-tls": async | trappable,
        "wasmprobe:plugin/dns.query": async | trappable,
        default: trappable,
    },
    exports: {
        default: async,
    },
    with: {
        "wasmprobe:plugin/tcp.connection": TcpConnection,
    },
    // Recordings (`wasmprobe probe --record`) store host calls as JSON.
    additional_derives: [serde::Serialize, serde::Deserialize],
});

/// A `tcp` connection as the plugin holds it: only the connection's number
/// in the run. The run's `tcp` unit owns the socket under that number, so
/// the bindings need no type of the unit's.
#[derive(Debug)]
pub struct TcpConnection;
