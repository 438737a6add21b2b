//! The host side of the WIT contract in `wit/`: the one `bindgen!` of the
//! host. Only `http.send` is async (it does I/O); every import may trap,
//! which is kept for hard limits and host bugs.

wasmtime::component::bindgen!({
    world: "probe",
    path: "../wit",
    imports: {
        "wasmprobe:plugin/http.send": async | trappable,
        "wasmprobe:plugin/icmp.echo": async | trappable,
        default: trappable,
    },
    exports: {
        default: async,
    },
});
