"""py-redis: a wasmprobe plugin in Python on the host's `tcp` capability.
Connects to a Redis server (the probe's target, `HOST:PORT`), sends
`AUTH` when the probe grants a `password` secret, then `PING`, and checks
the answer is `+PONG`. The host owns the socket: the address must be in
the probe's allow-list as `tcp://HOST:PORT`."""
import json
import time

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log, secrets, tcp
from wit_world.imports.types import (
    IpProtocol, MetricFamily, MetricKind, PluginInfo, ProbeError_InvalidConfig, Report, Sample)

SCHEMA = {"type": "object", "additionalProperties": False,
          "properties": {"timeout_ms": {"type": "integer", "minimum": 1,
                                        "description": "Longest wait for each step."}}}


def gauge(name, text, unit=None):
    return MetricFamily(name, text, MetricKind.GAUGE, unit, [], [])


def command(*words):
    """A Redis command as a RESP array of bulk strings."""
    out = b"*%d\r\n" % len(words)
    for w in words:
        w = w.encode() if isinstance(w, str) else w
        out += b"$%d\r\n%s\r\n" % (len(w), w)
    return out


class Plugin(exports.Plugin):
    def describe(self):
        return PluginInfo("py-redis", "0.1.0", [
            gauge("pyredis_up", "1 if the server answered PING with PONG."),
            gauge("pyredis_connect_seconds", "Time to connect, in seconds.", "seconds"),
            gauge("pyredis_ping_seconds", "Time from PING to its answer, in seconds.", "seconds"),
        ], json.dumps(SCHEMA))

    def run(self, ctx):
        config = json.loads(ctx.config or "{}")
        timeout = config.get("timeout_ms")
        if timeout is not None and (not isinstance(timeout, int) or timeout < 1):
            raise Err(ProbeError_InvalidConfig("`timeout_ms` must be a positive integer"))
        req = tcp.ConnectRequest(
            address=ctx.target, timeout_ms=timeout, preferred_ip_protocol=IpProtocol.IP4,
            ip_protocol_fallback=True, tls=False, server_name=None, alpn=[])
        up, connect_s, ping_s, message = 0, 0.0, 0.0, None
        try:
            conn, info = tcp.connect(req)
            connect_s = info.timings.resolve + info.timings.connect
            try:
                password = secrets.get("password")
                if password is not None:
                    conn.send(command("AUTH", password))
                    reply = conn.receive(4096, b"\r\n", timeout).data
                    if not reply.startswith(b"+OK"):
                        raise ValueError("AUTH refused: " + reply.decode(errors="replace").strip())
                started = time.monotonic()
                conn.send(command("PING"))
                reply = conn.receive(4096, b"\r\n", timeout).data
                ping_s = time.monotonic() - started
                if reply == b"+PONG\r\n":
                    up = 1
                else:
                    message = "PING answered " + repr(reply.decode(errors="replace").strip())
            finally:
                conn.close()
        except Err as e:
            message = f"{e.value.kind.name.lower()}: {e.value.message}"
        except ValueError as e:
            message = str(e)
        log.log(log.Level.DEBUG if up else log.Level.INFO, message or "PONG")
        values = {"pyredis_up": up, "pyredis_connect_seconds": connect_s,
                  "pyredis_ping_seconds": ping_s}
        return Report(bool(up), message, [Sample(k, [], float(v)) for k, v in values.items()])
