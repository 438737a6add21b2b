// {{name}}: a wasmprobe probe plugin in JavaScript.
//
// GETs the probe's target through the host's `http` capability and reports
// whether it answered with the expected status and body text. Build with
// `./build.sh`; the imports below are the WIT contract in ./wit.
import { send } from 'wasmprobe:plugin/http@0.1.0';
import { log } from 'wasmprobe:plugin/log@0.1.0';

// The probe's `config` table in probes.toml, as JSON Schema: the host checks
// every probe's config against it before the plugin runs.
const SCHEMA = {
  type: 'object', additionalProperties: false,
  properties: {
    expect_status: { type: 'integer', minimum: 100, maximum: 599,
      description: 'Status code that means healthy (default 200).' },
    expect_body: { type: 'string', description: 'Text the body must contain (default: anything).' },
  },
};

const gauge = (name, help, unit) => ({ name, help, kind: 'gauge', unit, labels: [], buckets: [] });

export const plugin = {
  describe() {
    return {
      name: '{{name}}', version: '0.1.0', configSchema: JSON.stringify(SCHEMA),
      families: [
        gauge('{{prefix}}_up', 'Whether the target answered as expected.'),
        gauge('{{prefix}}_status_code', 'HTTP status of the answer (0: none).'),
        gauge('{{prefix}}_response_seconds', 'Time to the full answer.', 'seconds'),
      ],
    };
  },

  run(ctx) {
    const config = JSON.parse(ctx.config || '{}');
    const expectStatus = config.expect_status ?? 200;
    const expectBody = config.expect_body ?? '';
    let status = 0, seconds = 0, bodyOk = false, why;
    try {
      const resp = send({
        method: 'GET', url: ctx.target, headers: [['user-agent', 'wasmprobe-{{name}}']],
        body: undefined, timeoutMs: undefined, followRedirects: true, maxRedirects: 5,
        maxBodyBytes: undefined, preferredIpProtocol: undefined, ipProtocolFallback: true,
        enableHttp2: true, http2PriorKnowledge: false, decompress: true,
      });
      const t = resp.timings;
      status = resp.status;
      seconds = t.resolve + t.connect + t.tls + t.processing + t.transfer;
      bodyOk = new TextDecoder().decode(resp.body).includes(expectBody);
    } catch (e) {
      const err = e.payload ?? e; // a result's err arrives as a thrown error's payload
      why = `${err.kind ?? 'error'}: ${err.message ?? String(e)}`;
    }
    const up = status === expectStatus && bodyOk;
    if (why === undefined && !up) {
      why = `status ${status}, body match ${bodyOk}`;
    }
    log(up ? 'debug' : 'info', why ?? 'up');
    return {
      success: up, message: why,
      samples: [
        { name: '{{prefix}}_up', labels: [], value: up ? 1 : 0 },
        { name: '{{prefix}}_status_code', labels: [], value: status },
        { name: '{{prefix}}_response_seconds', labels: [], value: seconds },
      ],
    };
  },
};
