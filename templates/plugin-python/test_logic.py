"""Tests of logic.py, natively: `python3 -m unittest` in this folder
(standard library only; the bindings are not needed)."""
import ast
import pathlib
import unittest

import logic
from logic import Answer, Config


class ParseConfig(unittest.TestCase):
    def test_defaults_when_the_probe_has_no_config(self):
        for text in (None, "", "{}"):
            self.assertEqual(logic.parse_config(text), Config(200, ""), text)

    def test_reads_both_keys(self):
        config = logic.parse_config('{"expect_status": 204, "expect_body": "ok"}')
        self.assertEqual(config, Config(204, "ok"))

    def test_refuses_a_body_that_is_not_text(self):
        with self.assertRaisesRegex(logic.InvalidConfig, "`expect_body` must be a string"):
            logic.parse_config('{"expect_body": 1}')


class Judge(unittest.TestCase):
    def test_up_when_status_and_body_match(self):
        verdict = logic.judge(Config(200, "ok"), Answer(200, b"all ok\n", 0.25))
        self.assertEqual(verdict, (True, None, [
            ("{{prefix}}_up", 1.0),
            ("{{prefix}}_status_code", 200.0),
            ("{{prefix}}_response_seconds", 0.25),
        ]))

    def test_down_on_another_status(self):
        verdict = logic.judge(Config(200, ""), Answer(503, b"ok", 0.5))
        self.assertFalse(verdict.up)
        self.assertEqual(verdict.message, "status 503, body match True")
        self.assertEqual(dict(verdict.samples)["{{prefix}}_status_code"], 503.0)

    def test_down_when_the_body_lacks_the_text(self):
        verdict = logic.judge(Config(200, "ok"), Answer(200, b"maintenance", 0.5))
        self.assertEqual(verdict[:2], (False, "status 200, body match False"))

    def test_an_empty_expected_body_matches_any_body(self):
        self.assertTrue(logic.judge(Config(200, ""), Answer(200, b"", 0.1)).up)

    def test_the_expected_body_is_matched_as_utf8(self):
        self.assertTrue(logic.judge(Config(200, "café"), Answer(200, "un café".encode(), 0.1)).up)

    def test_a_failed_request_is_down_with_the_hosts_reason(self):
        verdict = logic.judge(Config(200, ""), None, ("CONNECT", "connection refused"))
        self.assertEqual(verdict, (False, "connect: connection refused", [
            ("{{prefix}}_up", 0.0),
            ("{{prefix}}_status_code", 0.0),
            ("{{prefix}}_response_seconds", 0.0),
        ]))


class Contract(unittest.TestCase):
    def test_every_sample_is_a_family_app_py_declares(self):
        # The host drops samples of undeclared families: compare the names
        # judge() emits with the `gauge("...")` calls in app.py's describe().
        app = pathlib.Path(__file__).with_name("app.py").read_text(encoding="utf-8")
        declared = [
            node.args[0].value for node in ast.walk(ast.parse(app))
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "gauge"
        ]
        emitted = [name for name, _ in logic.judge(Config(200, ""), None, ("DNS", "x")).samples]
        self.assertEqual(sorted(declared), sorted(emitted))


if __name__ == "__main__":
    unittest.main()
