use super::*;

fn sel(texts: &[&str]) -> Vec<Selector> {
    texts
        .iter()
        .map(|t| Selector::parse(t).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn ok(text: &str, selectors: &[&str]) -> Scan {
    scan(text, &sel(selectors)).unwrap_or_else(|e| panic!("refused: {e}\n---\n{text}"))
}

fn refused(text: &str) -> ParseError {
    match scan(text, &[]) {
        Ok(s) => panic!("accepted ({} samples):\n{text}", s.samples),
        Err(e) => e,
    }
}

fn line_of(e: &ParseError) -> usize {
    match e {
        ParseError::Line { line, .. } => *line,
        ParseError::NotUtf8(_) => 0,
    }
}

/// As Go's client_golang writes it.
const GO: &str = "# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
# HELP go_gc_duration_seconds A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile=\"0\"} 2.1e-05
go_gc_duration_seconds{quantile=\"1\"} 0.000101
go_gc_duration_seconds_sum 0.0123
go_gc_duration_seconds_count 20
# HELP http_request_duration_seconds Latency.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{code=\"200\",le=\"0.1\"} 3
http_request_duration_seconds_bucket{code=\"200\",le=\"+Inf\"} 4
http_request_duration_seconds_sum{code=\"200\"} 0.5
http_request_duration_seconds_count{code=\"200\"} 4
";

/// As Node's prom-client writes it (a blank line between families), the
/// way report A's sidecar would have.
const NODE: &str = "# HELP portal_up Whether the portal health check passed.
# TYPE portal_up gauge
portal_up 1

# HELP portal_health_check_duration_seconds Duration of the last health check.
# TYPE portal_health_check_duration_seconds gauge
portal_health_check_duration_seconds 0.042

# HELP portal_last_check_timestamp_seconds When the health check last ran.
# TYPE portal_last_check_timestamp_seconds gauge
portal_last_check_timestamp_seconds 1700000000
";

#[test]
fn client_library_expositions_parse() {
    let s = ok(
        GO,
        &[
            "go_goroutines",
            r#"http_request_duration_seconds_bucket{le="+Inf"}"#,
        ],
    );
    assert_eq!(s.samples, 9);
    assert_eq!(s.selected[0].value, Some(42.0));
    assert_eq!(s.selected[1].value, Some(4.0));
    let s = ok(NODE, &["portal_up", "portal_last_check_timestamp_seconds"]);
    assert_eq!(s.samples, 3);
    assert_eq!(s.selected[0].value, Some(1.0));
    assert_eq!(s.selected[1].value, Some(1_700_000_000.0));
}

#[test]
fn what_the_format_allows_around_the_values() {
    let text = "# a comment, then a blank line\n\n\
        # TYPE a gauge \n\
        # HELP a\n\
        a 1\n\
        \t b{x=\"1\"}   2   1395066363000  \n\
        http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
        c{} 4\n\
        d -5 -7\n\
        untyped_one 6\n\
        untyped_two 7\n\
        # EOF\n\
        this is after EOF and not read\n";
    let s = ok(
        text,
        &[
            "a",
            "b",
            r#"http_requests_total{code="400"}"#,
            "c",
            "d",
            "untyped_two",
        ],
    );
    assert_eq!(s.samples, 7);
    let values: Vec<Option<f64>> = s.selected.iter().map(|x| x.value).collect();
    assert_eq!(
        values,
        vec![
            Some(1.0),
            Some(2.0),
            Some(3.0),
            Some(4.0),
            Some(-5.0),
            Some(7.0)
        ]
    );
}

#[test]
fn a_timestamp_is_never_read_as_a_value() {
    // A metric named NaN: its value is 1 and there is no timestamp.
    let s = ok("NaN 1\n", &[r#"{__name__="NaN"}"#]);
    assert_eq!(s.selected[0].value, Some(1.0));
    let s = ok("NaN 1 2\n", &[r#"{__name__="NaN"}"#]);
    assert_eq!(s.selected[0].value, Some(1.0));
    // Blanks inside a label value do not look like a timestamp.
    let s = ok("a{x=\"1 2\"} 3\n", &[r#"a{x="1 2"}"#]);
    assert_eq!(s.selected[0].value, Some(3.0));
    // A float is not a timestamp: the line has one token too many.
    assert_eq!(line_of(&refused("a 1 2.5\n")), 1);
    assert_eq!(line_of(&refused("a 1 2 3\n")), 1);
}

#[test]
fn special_values_escapes_and_trailing_descriptors() {
    let text = "a NaN\nb +Inf\nc -Inf\nd{path=\"C:\\\\dir\",q=\"say \\\"hi\\\"\\n\"} 1\n# HELP e later\n# TYPE e counter\n";
    let s = ok(text, &["a", "b", "c", r#"d{path="C:\\dir"}"#]);
    assert!(s.selected[0].value.is_some_and(f64::is_nan));
    assert_eq!(s.selected[1].value, Some(f64::INFINITY));
    assert_eq!(s.selected[2].value, Some(f64::NEG_INFINITY));
    assert_eq!(s.selected[3].value, Some(1.0));
    assert_eq!(
        s.selected[3].examples,
        vec![r#"d{path="C:\\dir",q="say \"hi\"\n"}"#]
    );
    assert_eq!(s.samples, 4);
}

#[test]
fn several_matches_are_counted_and_named() {
    let text = "r{pod=\"a\"} 1\nr{pod=\"b\"} 2\nr{pod=\"c\"} 3\n";
    let s = ok(text, &["r", r#"r{pod="b"}"#, "missing"]);
    assert_eq!(s.selected[0].count, 3);
    assert_eq!(s.selected[0].value, Some(1.0));
    assert_eq!(
        s.selected[0].examples,
        vec![r#"r{pod="a"}"#, r#"r{pod="b"}"#]
    );
    assert_eq!((s.selected[1].count, s.selected[1].value), (1, Some(2.0)));
    assert_eq!(s.selected[2], Selected::default());
}

#[test]
fn malformed_lines_are_refused_with_their_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("a 1\nup{job=\"a\" 1\n", 2, "{job"),
        ("a 1\n\nb\n", 3, ""),
        ("a one\n", 1, "one"),
        ("9lives 1\n", 1, "9lives"),
        ("a{x=unquoted} 1\n", 1, ""),
        ("a{x=\"1\", y=\"2\"} 1\n", 1, ""),
        (
            "# TYPE a gauge\n# TYPE b sideways\nb 1\n",
            2,
            "unknown metric type \"sideways\"",
        ),
        ("a 1\r\nb 2\r\n", 1, "CR"),
        ("a{x=\"1\",x=\"2\"} 1\n", 1, "label x appears twice"),
    ];
    for (text, line, needle) in cases {
        let e = refused(text);
        assert_eq!(line_of(&e), *line, "{text:?}: {e}");
        assert!(
            e.to_string().contains(needle),
            "{text:?}: {e} lacks {needle:?}"
        );
    }
}

#[test]
fn a_refusal_quotes_the_parser() {
    let e = refused("ok 1\nup one\n");
    assert_eq!(e.to_string(), r#"line 2: expected a number at "one""#);
    let e = refused("ok 1\n\n9lives 1\n");
    assert_eq!(
        e.to_string(),
        r#"line 3: expected a name in metric name at "9lives 1""#
    );
    let e = refused("up 1 # {trace_id=\"x\"} 1\n");
    assert_eq!(
        e.to_string(),
        r#"line 1: expected end of line in sample at " # {trace_id=\"x\"} 1""#
    );
    let e = refused("up{job=\"a\", instance=\"b\"} 1\n");
    assert_eq!(
        e.to_string(),
        r#"line 1: invalid label set (name="value" pairs joined by ',', no blanks) at "{job=\"a\", instance=\"b\"} 1""#
    );
}

#[test]
fn duplicate_series_in_any_label_order() {
    let e = refused("x{a=\"1\",b=\"2\"} 1\ny 2\nx{b=\"2\",a=\"1\"} 3\n");
    assert_eq!(e.to_string(), r#"line 3: duplicate series x{b="2",a="1"}"#);
    let e = refused("up 1\nup 1\n");
    assert_eq!(line_of(&e), 2);
    // Same labels, other names: two series.
    assert_eq!(ok("a{x=\"1\"} 1\nb{x=\"1\"} 1\n", &[]).samples, 2);
}

#[test]
fn binary_garbage_is_refused_without_panic() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert!(matches!(
        scan_bytes(&garbage, &[]),
        Err(ParseError::NotUtf8(_))
    ));
    let e = scan_bytes(b"a 1\n\x00\x01\x02 2\n", &[]).err();
    assert_eq!(e.as_ref().map(line_of), Some(2), "{e:?}");
    let e = scan_bytes(b"a 1\n\xff\xfe\n", &[]).err();
    assert_eq!(e, Some(ParseError::NotUtf8(4)));
}

#[test]
fn hostile_expositions_are_bounded() {
    // A 4 MiB label value, 1M escape sequences, a million blank lines, a
    // line that never ends: parsed or refused, never a panic, and a message
    // of bounded length.
    let huge = format!("a{{x=\"{}\"}} 1\n", "y".repeat(4 << 20));
    let s = ok(&huge, &["a"]);
    assert_eq!(s.selected[0].value, Some(1.0));
    assert!(s.selected[0].examples[0].len() < 200);

    let escapes = format!("a{{x=\"{}\"}} 1\n", "\\\\\\\"\\n".repeat(1 << 20));
    assert_eq!(ok(&escapes, &["a"]).samples, 1);

    assert_eq!(ok(&"\n".repeat(1 << 20), &[]).samples, 0);

    let endless = format!("a{{x=\"{}", "z".repeat(1 << 20));
    let e = refused(&endless);
    assert!(e.to_string().len() < 300, "{e}");

    let nested = format!("a{{x=\"{}\"}} 1\n", "{".repeat(100_000));
    assert_eq!(ok(&nested, &[]).samples, 1);

    // Descriptors with no sample, many of them: checked in pieces, and a
    // bad one is still found.
    let mut descriptors: String = (0..10_000)
        .map(|i| format!("# HELP m{i} Help {i}.\n# TYPE m{i} gauge\n"))
        .collect();
    assert_eq!(ok(&descriptors, &[]).samples, 0);
    descriptors += "# TYPE z nonsense\n";
    assert_eq!(line_of(&refused(&descriptors)), 20_001);
}

#[test]
fn nan_and_inf_spellings() {
    let s = ok("a nan\nb Inf\nc +inf\nd -Infinity\n", &["a", "b", "c", "d"]);
    assert!(s.selected[0].value.is_some_and(f64::is_nan));
    assert_eq!(s.selected[1].value, Some(f64::INFINITY));
    assert_eq!(s.selected[2].value, Some(f64::INFINITY));
    assert_eq!(s.selected[3].value, Some(f64::NEG_INFINITY));
}
