// {{name}}: a wasmprobe probe plugin in JavaScript.
//
// GETs the probe's target through the host's `http` capability and reports
// whether it answered with the expected status and body text. This file is
// the glue between the host and logic.js, where the decisions are (and
// their tests, logic.test.js). Build with `./build.sh`; the imports from
// `wasmprobe:plugin` are the WIT contract in ./wit.
import { send } from 'wasmprobe:plugin/http@0.1.0';
import { log } from 'wasmprobe:plugin/log@0.1.0';

import { failure, judge, parseConfig } from './logic.js';

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
      // The samples `judge` emits; logic.test.js checks they match.
      families: [
        gauge('{{prefix}}_up', 'Whether the target answered as expected.'),
        gauge('{{prefix}}_status_code', 'HTTP status of the answer (0: none).'),
        gauge('{{prefix}}_response_seconds', 'Time to the full answer.', 'seconds'),
      ],
    };
  },

  run(ctx) {
    const config = parseConfig(ctx.config);
    let answer, why;
    try {
      const resp = send({
        method: 'GET', url: ctx.target, headers: [['user-agent', 'wasmprobe-{{name}}']],
        body: undefined, timeoutMs: undefined, followRedirects: true, maxRedirects: 5,
        maxBodyBytes: undefined, preferredIpProtocol: undefined, ipProtocolFallback: true,
        enableHttp2: true, http2PriorKnowledge: false, decompress: true,
      });
      const t = resp.timings;
      const seconds = t.resolve + t.connect + t.tls + t.processing + t.transfer;
      answer = { status: resp.status, body: resp.body, seconds };
    } catch (e) {
      why = failure(e);
    }
    const verdict = judge(config, answer, why);
    log(verdict.up ? 'debug' : 'info', verdict.message ?? 'up');
    return {
      success: verdict.up, message: verdict.message,
      samples: verdict.samples.map(([name, value]) => ({ name, labels: [], value })),
    };
  },
};
