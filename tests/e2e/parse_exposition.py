#!/usr/bin/env python3
"""Parses an exposition from stdin with the official Prometheus Python
client's parsers and prints it as JSON, for the Rust end-to-end tests.

Usage: parse_exposition.py classic|openmetrics < exposition
Output: {"families": {name: type}, "samples": [[name, {labels}, value], ...]}
Exit 1 with the parser's error on stderr when the text does not parse.
"""
import json
import math
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_classic


def main():
    fmt = sys.argv[1] if len(sys.argv) > 1 else "classic"
    text = sys.stdin.read()
    parse = parse_om if fmt == "openmetrics" else parse_classic
    families = {}
    samples = []
    try:
        for family in parse(text):
            families[family.name] = family.type
            for s in family.samples:
                v = s.value
                value = "NaN" if math.isnan(v) else ("+Inf" if v == math.inf else ("-Inf" if v == -math.inf else v))
                samples.append([s.name, s.labels, value])
    except Exception as e:  # the parser's verdict, reported as is
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    json.dump({"families": families, "samples": samples}, sys.stdout)


if __name__ == "__main__":
    main()
