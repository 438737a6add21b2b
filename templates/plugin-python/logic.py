"""What {{name}} concludes from an answer, with no host in sight.

Nothing here imports the generated bindings (`wit_world`) or calls the
host, so it runs under any Python 3: `python3 -m unittest` tests it in
this folder. `app.py` is the glue: it asks the host, hands the answer to
`judge` and turns the verdict into the WIT types.

The sample names are a public contract (dashboards, alerts and recorded
tapes use them): they must match the families `app.py` declares.
"""
import json
from collections import namedtuple

# The probe's `config` table, with the defaults filled in.
Config = namedtuple("Config", "expect_status expect_body")

# What the host's `http.send` returned, in plain values: `body` is bytes,
# `seconds` the sum of the phase timings.
Answer = namedtuple("Answer", "status body seconds")

# What the probe reports: `up` (the run's success), `message` (why it is
# not up, or None) and `samples`, a list of (metric name, value).
Verdict = namedtuple("Verdict", "up message samples")


class InvalidConfig(ValueError):
    """A config the probe cannot use; `app.py` refuses the run with it."""


def parse_config(text):
    """The probe's config (JSON, as the host passes it; None or "" for
    none) with its defaults: status 200, any body."""
    config = json.loads(text or "{}")
    expect_body = config.get("expect_body", "")
    if not isinstance(expect_body, str):
        raise InvalidConfig("`expect_body` must be a string")
    return Config(config.get("expect_status", 200), expect_body)


def judge(config, answer, error=None):
    """The verdict on one request: `answer` is an `Answer`, or None when
    the request failed; `error` is then (kind, message) of the host's error,
    e.g. ("CONNECT", "connection refused")."""
    if answer is None:
        status, seconds, body_ok = 0, 0.0, False
    else:
        status, seconds = answer.status, answer.seconds
        body_ok = config.expect_body.encode() in answer.body
    up = status == config.expect_status and body_ok
    if error is not None:
        kind, text = error
        message = f"{kind.lower()}: {text}"
    elif not up:
        message = f"status {status}, body match {body_ok}"
    else:
        message = None
    return Verdict(up, message, [
        ("{{prefix}}_up", float(up)),
        ("{{prefix}}_status_code", float(status)),
        ("{{prefix}}_response_seconds", float(seconds)),
    ])
