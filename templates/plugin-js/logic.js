// What {{name}} concludes from an answer, with no host in sight.
//
// Nothing here imports the WIT contract (`wasmprobe:plugin/...`) or calls
// the host, so Node runs it as it is: `npm test` (`node --test`) tests it
// in this folder with logic.test.js. probe.js is the glue: it asks the
// host, hands the answer to `judge` and turns the verdict into the WIT
// types.
//
// The sample names are a public contract (dashboards, alerts and recorded
// tapes use them): they must match the families probe.js declares.

/** The probe's `config` (JSON, as the host passes it; '' or undefined for
 * none) with its defaults: status 200, any body. */
export function parseConfig(text) {
  const config = JSON.parse(text || '{}');
  return { expectStatus: config.expect_status ?? 200, expectBody: config.expect_body ?? '' };
}

/** Why a request failed, from what the host's call threw: an `err` result
 * arrives as a thrown error with the value in `.payload`. */
export function failure(thrown) {
  const err = thrown.payload ?? thrown;
  return `${err.kind ?? 'error'}: ${err.message ?? String(thrown)}`;
}

/** The verdict on one request: `answer` is { status, body (bytes), seconds }
 * or undefined when the request failed, `why` is then `failure(...)`.
 * Returns { up, message (undefined when up), samples: [[name, value]] }. */
export function judge(config, answer, why) {
  let status = 0, seconds = 0, bodyOk = false;
  if (answer !== undefined) {
    ({ status, seconds } = answer);
    bodyOk = new TextDecoder().decode(answer.body).includes(config.expectBody);
  }
  const up = status === config.expectStatus && bodyOk;
  let message = why;
  if (message === undefined && !up) {
    message = `status ${status}, body match ${bodyOk}`;
  }
  return {
    up, message,
    samples: [
      ['{{prefix}}_up', up ? 1 : 0],
      ['{{prefix}}_status_code', status],
      ['{{prefix}}_response_seconds', seconds],
    ],
  };
}
