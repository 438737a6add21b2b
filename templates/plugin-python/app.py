"""{{name}}: a wasmprobe probe plugin in Python.

GETs the probe's target through the host's `http` capability and reports
whether it answered with the expected status and body text. This file is
the glue between the host and `logic.py`, where the decisions are (and
their tests, `test_logic.py`). Build with `./build.sh`; the bindings
(`wit_world`) are generated from ./wit by componentize-py at build time.
"""
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import http, log
from wit_world.imports.types import (
    MetricFamily, MetricKind, PluginInfo, ProbeError_InvalidConfig, Report, Sample)

import logic

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
        # The samples `logic.judge` emits; test_logic.py checks they match.
        return PluginInfo("{{name}}", "0.1.0", [
            gauge("{{prefix}}_up", "Whether the target answered as expected."),
            gauge("{{prefix}}_status_code", "HTTP status of the answer (0: none)."),
            gauge("{{prefix}}_response_seconds", "Time to the full answer.", "seconds"),
        ], json.dumps(SCHEMA))

    def run(self, ctx):
        try:
            config = logic.parse_config(ctx.config)
        except logic.InvalidConfig as e:
            raise Err(ProbeError_InvalidConfig(str(e)))
        req = http.Request(
            method="GET", url=ctx.target, headers=[("user-agent", "wasmprobe-{{name}}")],
            body=None, timeout_ms=None, follow_redirects=True, max_redirects=5,
            max_body_bytes=None, preferred_ip_protocol=None, ip_protocol_fallback=True,
            enable_http2=True, http2_prior_knowledge=False, decompress=True)
        try:
            resp = http.send(req)
        except Err as e:
            verdict = logic.judge(config, None, (e.value.kind.name, e.value.message))
        else:
            t = resp.timings
            seconds = t.resolve + t.connect + t.tls + t.processing + t.transfer
            verdict = logic.judge(config, logic.Answer(resp.status, resp.body, seconds))
        log.log(log.Level.DEBUG if verdict.up else log.Level.INFO, verdict.message or "up")
        return Report(verdict.up, verdict.message,
                      [Sample(name, [], value) for name, value in verdict.samples])
