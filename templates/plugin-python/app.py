"""{{name}}: a wasmprobe probe plugin in Python.

GETs the probe's target through the host's `http` capability and reports
whether it answered with the expected status and body text. Build with
`./build.sh`; the bindings (`wit_world`) are generated from ./wit by
componentize-py at build time.
"""
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import http, log
from wit_world.imports.types import (
    MetricFamily, MetricKind, PluginInfo, ProbeError_InvalidConfig, Report, Sample)

# The probe's `config` table in probes.toml, as JSON Schema: the host
# checks every probe's config against it before the plugin runs.
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "expect_status": {"type": "integer", "minimum": 100, "maximum": 599,
                          "description": "Status code that means healthy (default 200)."},
        "expect_body": {"type": "string",
                        "description": "Text the body must contain (default: anything)."},
    },
}


def gauge(name, text, unit=None):
    return MetricFamily(name, text, MetricKind.GAUGE, unit, [], [])


class Plugin(exports.Plugin):
    def describe(self):
        return PluginInfo("{{name}}", "0.1.0", [
            gauge("{{prefix}}_up", "Whether the target answered as expected."),
            gauge("{{prefix}}_status_code", "HTTP status of the answer (0: none)."),
            gauge("{{prefix}}_response_seconds", "Time to the full answer.", "seconds"),
        ], json.dumps(SCHEMA))

    def run(self, ctx):
        config = json.loads(ctx.config or "{}")
        expect_status = config.get("expect_status", 200)
        expect_body = config.get("expect_body", "")
        if not isinstance(expect_body, str):
            raise Err(ProbeError_InvalidConfig("`expect_body` must be a string"))
        req = http.Request(
            method="GET", url=ctx.target, headers=[("user-agent", "wasmprobe-{{name}}")],
            body=None, timeout_ms=None, follow_redirects=True, max_redirects=5,
            max_body_bytes=None, preferred_ip_protocol=None, ip_protocol_fallback=True,
            enable_http2=True, http2_prior_knowledge=False, decompress=True)
        status, seconds, body_ok, why = 0, 0.0, False, None
        try:
            resp = http.send(req)
            t = resp.timings
            status = resp.status
            seconds = t.resolve + t.connect + t.tls + t.processing + t.transfer
            body_ok = expect_body.encode() in resp.body
        except Err as e:
            why = f"{e.value.kind.name.lower()}: {e.value.message}"
        up = status == expect_status and body_ok
        if why is None and not up:
            why = f"status {status}, body match {body_ok}"
        log.log(log.Level.DEBUG if up else log.Level.INFO, why or "up")
        return Report(up, why, [
            Sample("{{prefix}}_up", [], float(up)),
            Sample("{{prefix}}_status_code", [], float(status)),
            Sample("{{prefix}}_response_seconds", [], seconds),
        ])
