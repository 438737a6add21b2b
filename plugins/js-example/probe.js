// js-keyword: a wasmprobe plugin in JavaScript. GETs the probe's target
// through the host's `http` capability and checks that the body holds
// `keyword`. Built into a component by scripts/build-js-plugin.
import { send } from 'wasmprobe:plugin/http@0.1.0';
import { log } from 'wasmprobe:plugin/log@0.1.0';

const SCHEMA = {
  type: 'object', additionalProperties: false, required: ['keyword'],
  properties: {
    keyword: { type: 'string', minLength: 1, description: 'Text the body must contain.' },
  },
};

const gauge = (name, help, unit) => ({ name, help, kind: 'gauge', unit, labels: [], buckets: [] });

export const plugin = {
  describe() {
    return {
      name: 'js-keyword', version: '0.1.0', configSchema: JSON.stringify(SCHEMA),
      families: [
        gauge('jsprobe_http_status', 'HTTP status code of the response (0 when none came).'),
        gauge('jsprobe_keyword_found', '1 if the body contains the configured keyword.'),
        gauge('jsprobe_body_bytes', 'Body bytes received.', 'bytes'),
        gauge('jsprobe_http_duration_seconds', 'Time of the exchange, in seconds.', 'seconds'),
      ],
    };
  },

  run(ctx) {
    const keyword = JSON.parse(ctx.config || '{}').keyword;
    if (typeof keyword !== 'string' || keyword === '') {
      throw { tag: 'invalid-config', val: '`keyword` must be a non-empty string' };
    }
    let status = 0, body = new Uint8Array(), t, message;
    try {
      const resp = send({
        method: 'GET', url: ctx.target, headers: [['user-agent', 'wasmprobe-js-keyword']],
        body: undefined, timeoutMs: undefined, followRedirects: true, maxRedirects: 5,
        maxBodyBytes: undefined, preferredIpProtocol: undefined, ipProtocolFallback: true,
        enableHttp2: true, http2PriorKnowledge: false, decompress: true,
      });
      ({ status, body, timings: t } = resp);
    } catch (e) {
      const err = e.payload ?? e; // a result's err arrives as a thrown error's payload
      message = `${err.kind ?? 'error'}: ${err.message ?? String(e)}`;
      t = err.timings;
    }
    const seconds = t ? t.resolve + t.connect + t.tls + t.processing + t.transfer : 0;
    const found = new TextDecoder().decode(body).includes(keyword);
    const ok = status >= 200 && status < 300 && found;
    if (message === undefined && !ok) {
      message = status >= 200 && status < 300 ? `keyword "${keyword}" not found`
        : `status ${status}`;
    }
    log(ok ? 'debug' : 'info', message ?? 'keyword found');
    const values = {
      jsprobe_http_status: status, jsprobe_keyword_found: found ? 1 : 0,
      jsprobe_body_bytes: body.length, jsprobe_http_duration_seconds: seconds,
    };
    const samples = Object.entries(values).map(([name, value]) => ({ name, labels: [], value }));
    return { success: ok, message, samples };
  },
};
