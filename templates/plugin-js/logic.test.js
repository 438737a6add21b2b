// Tests of logic.js, natively: `npm test` (or `node --test`) in this folder;
// nothing to install, the test runner is Node's own.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { failure, judge, parseConfig } from './logic.js';

const bytes = (text) => new TextEncoder().encode(text);

describe('parseConfig', () => {
  test('defaults when the probe has no config', () => {
    for (const text of [undefined, '', '{}']) {
      assert.deepEqual(parseConfig(text), { expectStatus: 200, expectBody: '' });
    }
  });

  test('reads both keys', () => {
    assert.deepEqual(parseConfig('{"expect_status": 204, "expect_body": "ok"}'),
      { expectStatus: 204, expectBody: 'ok' });
  });
});

describe('judge', () => {
  test('up when status and body match', () => {
    const verdict = judge({ expectStatus: 200, expectBody: 'ok' },
      { status: 200, body: bytes('all ok\n'), seconds: 0.25 });
    assert.deepEqual(verdict, {
      up: true, message: undefined,
      samples: [
        ['{{prefix}}_up', 1],
        ['{{prefix}}_status_code', 200],
        ['{{prefix}}_response_seconds', 0.25],
      ],
    });
  });

  test('down on another status', () => {
    const verdict = judge({ expectStatus: 200, expectBody: '' },
      { status: 503, body: bytes('ok'), seconds: 0.5 });
    assert.equal(verdict.up, false);
    assert.equal(verdict.message, 'status 503, body match true');
    assert.deepEqual(verdict.samples[1], ['{{prefix}}_status_code', 503]);
  });

  test('down when the body lacks the text', () => {
    const verdict = judge({ expectStatus: 200, expectBody: 'ok' },
      { status: 200, body: bytes('maintenance'), seconds: 0.5 });
    assert.equal(verdict.up, false);
    assert.equal(verdict.message, 'status 200, body match false');
  });

  test('an empty expected body matches any body', () => {
    const answer = { status: 200, body: new Uint8Array(), seconds: 0.1 };
    assert.equal(judge({ expectStatus: 200, expectBody: '' }, answer).up, true);
  });

  test('the body is read as UTF-8', () => {
    const answer = { status: 200, body: bytes('un café'), seconds: 0.1 };
    assert.equal(judge({ expectStatus: 200, expectBody: 'café' }, answer).up, true);
  });

  test("a failed request is down with the host's reason", () => {
    const thrown = Object.assign(new Error('err'), { payload: { kind: 'connect', message: 'refused' } });
    const verdict = judge({ expectStatus: 200, expectBody: '' }, undefined, failure(thrown));
    assert.deepEqual(verdict, {
      up: false, message: 'connect: refused',
      samples: [
        ['{{prefix}}_up', 0],
        ['{{prefix}}_status_code', 0],
        ['{{prefix}}_response_seconds', 0],
      ],
    });
  });

  test('any other exception is named as well as it can be', () => {
    assert.equal(failure(new TypeError('bad')), 'error: bad');
  });
});

test('every sample is a family probe.js declares', () => {
  // The host drops samples of undeclared families: compare the names
  // judge() emits with the gauge('...') calls in probe.js's describe().
  const probe = readFileSync(new URL('./probe.js', import.meta.url), 'utf8');
  const declared = [...probe.matchAll(/\bgauge\('([^']+)'/g)].map((m) => m[1]);
  const emitted = judge({ expectStatus: 200, expectBody: '' }, undefined, 'dns: x')
    .samples.map(([name]) => name);
  assert.deepEqual(declared.sort(), emitted.sort());
});
