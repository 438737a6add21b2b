"""py-keyword: a wasmprobe plugin in Python. GETs the probe's target through
the host's `http` capability and checks that the body holds `keyword`."""
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import http, log
from wit_world.imports.types import (
    MetricFamily, MetricKind, PluginInfo, ProbeError_InvalidConfig, Report, Sample)

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["keyword"],
          "properties": {"keyword": {"type": "string", "minLength": 1,
                                     "description": "Text the body must contain."}}}


def gauge(name, text, unit=None):
    return MetricFamily(name, text, MetricKind.GAUGE, unit, [], [])


class Plugin(exports.Plugin):
    def describe(self):
        return PluginInfo("py-keyword", "0.1.0", [
            gauge("pyprobe_http_status", "HTTP status code of the response (0 when none came)."),
            gauge("pyprobe_keyword_found", "1 if the body contains the configured keyword."),
            gauge("pyprobe_body_bytes", "Body bytes received.", "bytes"),
            gauge("pyprobe_http_duration_seconds", "Time of the exchange, in seconds.", "seconds"),
        ], json.dumps(SCHEMA))

    def run(self, ctx):
        keyword = json.loads(ctx.config or "{}").get("keyword")
        if not isinstance(keyword, str) or not keyword:
            raise Err(ProbeError_InvalidConfig("`keyword` must be a non-empty string"))
        req = http.Request(
            method="GET", url=ctx.target, headers=[("user-agent", "wasmprobe-py-keyword")],
            body=None, timeout_ms=None, follow_redirects=True, max_redirects=5,
            max_body_bytes=None, preferred_ip_protocol=None, ip_protocol_fallback=True,
            enable_http2=True, http2_prior_knowledge=False, decompress=True)
        status, body, message = 0, b"", None
        try:
            resp = http.send(req)
            status, body, t = resp.status, resp.body, resp.timings
        except Err as e:
            message, t = f"{e.value.kind.name.lower()}: {e.value.message}", e.value.timings
        seconds = t.resolve + t.connect + t.tls + t.processing + t.transfer
        found = keyword.encode() in body
        ok = status // 100 == 2 and found
        if message is None and not ok:
            message = f"keyword {keyword!r} not found" if status // 100 == 2 else f"status {status}"
        log.log(log.Level.DEBUG if ok else log.Level.INFO, message or "keyword found")
        values = {"pyprobe_http_status": status, "pyprobe_keyword_found": int(found),
                  "pyprobe_body_bytes": len(body), "pyprobe_http_duration_seconds": seconds}
        return Report(ok, message, [Sample(k, [], float(v)) for k, v in values.items()])
