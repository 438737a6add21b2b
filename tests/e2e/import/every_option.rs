//! A blackbox.yml using every documented option of the http, tcp, icmp,
//! dns and grpc probers: each option is carried over (found in the output)
//! or reported at its own line, nothing else is reported, no credential
//! reaches the output or the report, and `wasmprobe check` accepts it all.

use std::path::PathBuf;

use super::{check, plugin_dir, text, wasmprobe};
use crate::targets;

/// What the import must do with one line of the test's blackbox.yml.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Structure (a module, `prober`, a section): no finding here.
    Structure,
    /// Carried over: this dotted path (array items by index) exists in
    /// the output. Notes may accompany it, never a loss.
    Carried(&'static str),
    /// Reported as not carried over, at this line.
    Reported,
    /// Inside a reported option: nothing of its own.
    Inside,
    /// An option whose effect the engine already has: no finding.
    Moot,
}

use Want::{Carried, Inside, Moot, Reported, Structure};

/// Every option blackbox_exporter documents (its CONFIGURATION.md, 0.23,
/// and the few later versions added), one per line. `@CA@`, `@CERT@`
/// and `@KEY@` are replaced by real files.
#[rustfmt::skip]
const EVERY_OPTION: &[(&str, Want)] = &[
    ("modules:", Structure),
    ("  http_all:", Structure),
    ("    prober: http", Structure),
    ("    timeout: 7s", Carried("probes.http_all.timeout")),
    ("    http:", Structure),
    ("      valid_status_codes: [200, 301]", Carried("probes.http_all.config.valid_status_codes.1")),
    ("      valid_http_versions: [\"HTTP/1.1\", \"HTTP/2.0\"]", Carried("probes.http_all.config.valid_http_versions.1")),
    ("      method: PUT", Carried("probes.http_all.config.method")),
    ("      headers:", Carried("probes.http_all.config.headers")),
    ("        X-Probe: wasmprobe", Carried("probes.http_all.config.headers.X-Probe")),
    ("        Authorization: \"Bearer abc\"", Reported),
    ("      body_size_limit: 1MB", Carried("probes.http_all.config.body_size_limit")),
    ("      compression: gzip", Carried("probes.http_all.config.compression")),
    ("      follow_redirects: false", Carried("probes.http_all.config.follow_redirects")),
    ("      fail_if_ssl: true", Carried("probes.http_all.config.fail_if_ssl")),
    ("      fail_if_not_ssl: true", Carried("probes.http_all.config.fail_if_not_ssl")),
    ("      fail_if_body_matches_regexp: [\"Could not connect\"]", Carried("probes.http_all.config.fail_if_body_matches_regexp.0")),
    ("      fail_if_body_not_matches_regexp: [\"^ok\"]", Carried("probes.http_all.config.fail_if_body_not_matches_regexp.0")),
    ("      fail_if_header_matches:", Carried("probes.http_all.config.fail_if_header_matches")),
    ("        - header: Set-Cookie", Carried("probes.http_all.config.fail_if_header_matches.0.header")),
    ("          regexp: \".*\"", Carried("probes.http_all.config.fail_if_header_matches.0.regexp")),
    ("          allow_missing: true", Carried("probes.http_all.config.fail_if_header_matches.0.allow_missing")),
    ("      fail_if_header_not_matches:", Carried("probes.http_all.config.fail_if_header_not_matches")),
    ("        - header: X-Cache", Carried("probes.http_all.config.fail_if_header_not_matches.0.header")),
    ("          regexp: HIT", Carried("probes.http_all.config.fail_if_header_not_matches.0.regexp")),
    ("      tls_config:", Structure),
    ("        insecure_skip_verify: true", Carried("probes.http_all.tls.insecure_skip_verify")),
    ("        ca_file: @CA@", Carried("probes.http_all.tls.ca_file")),
    ("        cert_file: @CERT@", Carried("probes.http_all.tls.cert_file")),
    ("        key_file: @KEY@", Carried("probes.http_all.tls.key_file")),
    ("        server_name: localhost", Carried("probes.http_all.tls.server_name")),
    ("        min_version: TLS13", Carried("probes.http_all.tls.min_version")),
    ("      basic_auth:", Carried("probes.http_all.config.basic_auth.password_secret")),
    ("        username: prober", Carried("probes.http_all.config.basic_auth.username")),
    ("        password: hunter2", Reported),
    ("        password_file: /run/secrets/pw", Carried("probes.http_all.secrets.basic_auth_password.file")),
    ("      bearer_token: t0ken", Reported),
    ("      bearer_token_file: /run/secrets/token", Reported),
    ("      proxy_url: http://127.0.0.1:3128", Carried("probes.http_all.proxy_url")),
    ("      skip_resolve_phase_with_proxy: true", Moot),
    ("      oauth2:", Reported),
    ("        client_id: id", Inside),
    ("        client_secret: s3cret", Inside),
    ("        scopes: [read]", Inside),
    ("        token_url: http://127.0.0.1:9/token", Inside),
    ("        endpoint_params: {audience: probes}", Inside),
    ("      enable_http2: false", Carried("probes.http_all.config.enable_http2")),
    ("      preferred_ip_protocol: ip4", Carried("probes.http_all.config.preferred_ip_protocol")),
    ("      ip_protocol_fallback: false", Carried("probes.http_all.config.ip_protocol_fallback")),
    ("      body: hello", Carried("probes.http_all.config.body")),
    ("  http_more:", Structure),
    ("    prober: http", Structure),
    ("    http:", Structure),
    ("      no_follow_redirects: true", Carried("probes.http_more.config.follow_redirects")),
    ("      authorization:", Carried("probes.http_more.config.authorization.credentials_secret")),
    ("        type: Bearer", Carried("probes.http_more.config.authorization.type")),
    ("        credentials: abc", Reported),
    ("      body_file: /srv/body.json", Reported),
    ("      proxy_from_environment: true", Reported),
    ("      no_proxy: localhost", Reported),
    ("      proxy_connect_header: {X-Proxy: [yes]}", Reported),
    ("      compression: br", Reported),
    ("      fail_if_body_json_matches_cel: 'body.ok'", Carried("probes.http_more.config.fail_if_body_json_matches_cel")),
    ("  tcp_all:", Structure),
    ("    prober: tcp", Structure),
    ("    timeout: 3s", Carried("probes.tcp_all.timeout")),
    ("    tcp:", Structure),
    ("      preferred_ip_protocol: ip4", Carried("probes.tcp_all.config.preferred_ip_protocol")),
    ("      ip_protocol_fallback: false", Carried("probes.tcp_all.config.ip_protocol_fallback")),
    ("      source_ip_address: 127.0.0.1", Reported),
    ("      query_response:", Carried("probes.tcp_all.config.query_response")),
    ("        - expect: \"^220 (.+)$\"", Carried("probes.tcp_all.config.query_response.0.expect")),
    ("          labels:", Carried("probes.tcp_all.config.query_response.0.labels")),
    ("            - name: banner", Carried("probes.tcp_all.config.query_response.0.labels.0.name")),
    ("              value: \"${1}\"", Carried("probes.tcp_all.config.query_response.0.labels.0.value")),
    ("        - send: \"EHLO prober\\r\"", Carried("probes.tcp_all.config.query_response.1.send")),
    ("        - starttls: true", Carried("probes.tcp_all.config.query_response.2.starttls")),
    ("        - expect_bytes: OK", Carried("probes.tcp_all.config.query_response.3.expect_bytes")),
    ("      tls: true", Carried("probes.tcp_all.config.tls")),
    ("      tls_config:", Structure),
    ("        server_name: localhost", Carried("probes.tcp_all.tls.server_name")),
    ("        ca_file: @CA@", Carried("probes.tcp_all.tls.ca_file")),
    ("        min_version: TLS10", Reported),
    ("  icmp_all:", Structure),
    ("    prober: icmp", Structure),
    ("    timeout: 2s", Carried("probes.icmp_all.timeout")),
    ("    icmp:", Structure),
    ("      preferred_ip_protocol: ip4", Carried("probes.icmp_all.config.preferred_ip_protocol")),
    ("      ip_protocol_fallback: false", Carried("probes.icmp_all.config.ip_protocol_fallback")),
    ("      source_ip_address: 127.0.0.1", Carried("probes.icmp_all.config.source_ip_address")),
    ("      dont_fragment: true", Reported),
    ("      payload_size: 64", Carried("probes.icmp_all.config.payload_size")),
    ("      ttl: 32", Carried("probes.icmp_all.config.ttl")),
    ("  dns_all:", Structure),
    ("    prober: dns", Structure),
    ("    timeout: 4s", Carried("probes.dns_all.timeout")),
    ("    dns:", Structure),
    ("      preferred_ip_protocol: ip4", Carried("probes.dns_all.config.preferred_ip_protocol")),
    ("      ip_protocol_fallback: false", Carried("probes.dns_all.config.ip_protocol_fallback")),
    ("      source_ip_address: 127.0.0.1", Reported),
    ("      transport_protocol: tcp", Carried("probes.dns_all.config.transport_protocol")),
    ("      dns_over_tls: true", Reported),
    ("      tls_config:", Reported),
    ("        ca_file: @CA@", Inside),
    ("      query_name: example.com", Carried("probes.dns_all.config.query_name")),
    ("      query_type: SOA", Carried("probes.dns_all.config.query_type")),
    ("      query_class: CH", Carried("probes.dns_all.config.query_class")),
    ("      recursion_desired: false", Carried("probes.dns_all.config.recursion_desired")),
    ("      valid_rcodes: [NOERROR, NXDOMAIN]", Carried("probes.dns_all.config.valid_rcodes.1")),
    ("      validate_answer_rrs:", Carried("probes.dns_all.config.validate_answer_rrs")),
    ("        fail_if_matches_regexp: [\"a\"]", Carried("probes.dns_all.config.validate_answer_rrs.fail_if_matches_regexp")),
    ("        fail_if_all_match_regexp: [\"b\"]", Carried("probes.dns_all.config.validate_answer_rrs.fail_if_all_match_regexp")),
    ("        fail_if_not_matches_regexp: [\"c\"]", Carried("probes.dns_all.config.validate_answer_rrs.fail_if_not_matches_regexp")),
    ("        fail_if_none_matches_regexp: [\"d\"]", Carried("probes.dns_all.config.validate_answer_rrs.fail_if_none_matches_regexp")),
    ("      validate_authority_rrs:", Carried("probes.dns_all.config.validate_authority_rrs")),
    ("        fail_if_matches_regexp: [\"e\"]", Carried("probes.dns_all.config.validate_authority_rrs.fail_if_matches_regexp")),
    ("      validate_additional_rrs:", Carried("probes.dns_all.config.validate_additional_rrs")),
    ("        fail_if_none_matches_regexp: [\"f\"]", Carried("probes.dns_all.config.validate_additional_rrs.fail_if_none_matches_regexp")),
    ("  grpc_all:", Structure),
    ("    prober: grpc", Structure),
    ("    timeout: 2s", Carried("probes.grpc_all.timeout")),
    ("    grpc:", Structure),
    ("      service: api", Carried("probes.grpc_all.config.service")),
    ("      preferred_ip_protocol: ip4", Carried("probes.grpc_all.config.preferred_ip_protocol")),
    ("      ip_protocol_fallback: false", Carried("probes.grpc_all.config.ip_protocol_fallback")),
    ("      tls: true", Carried("probes.grpc_all.config.tls")),
    ("      tls_config:", Structure),
    ("        server_name: localhost", Carried("probes.grpc_all.tls.server_name")),
    ("        insecure_skip_verify: true", Carried("probes.grpc_all.tls.insecure_skip_verify")),
];

/// The value at a dotted path, array items by index.
fn at<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let mut parts = path.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = match (value, part.parse::<usize>()) {
            (toml::Value::Array(items), Ok(i)) => items.get(i)?,
            (v, _) => v.get(part)?,
        };
    }
    Some(value)
}

#[test]
fn every_documented_option_is_carried_over_or_reported_with_its_line() {
    let pki = targets::pki();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = |name: &str, contents: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("{e}"));
        p.display().to_string()
    };
    let (ca, cert, key) = (
        file("ca.pem", &pki.ca_pem),
        file("client.pem", &pki.client_pem),
        file("client.key", &pki.client_key_pem),
    );
    let yaml: String = EVERY_OPTION
        .iter()
        .map(|(line, _)| {
            format!(
                "{}\n",
                line.replace("@CA@", &ca)
                    .replace("@CERT@", &cert)
                    .replace("@KEY@", &key)
            )
        })
        .collect();
    // blackbox_exporter's spelling of everything we wrote, as it reads it.
    let source = PathBuf::from(file("blackbox.yml", &yaml));
    let shown = source.display().to_string();
    let output = dir.path().join("probes.toml");
    let out = wasmprobe(&[
        "import",
        "blackbox",
        &shown,
        "--plugin-dir",
        &plugin_dir(),
        "--allow",
        "http://127.0.0.1:*",
        "--allow",
        "https://127.0.0.1:*",
        "--allow",
        "tcp://127.0.0.1:*",
        "--allow",
        "dns://127.0.0.1:*",
        "--allow",
        "icmp://127.0.0.1",
        "--output",
        &output.display().to_string(),
    ]);
    let report = text(&out.stderr);
    println!("--- import report ---\n{report}");
    assert!(out.status.success(), "{report}");
    let imported = std::fs::read_to_string(&output).unwrap_or_else(|e| panic!("{e}"));
    let table: toml::Table = toml::from_str(&imported).unwrap_or_else(|e| panic!("{e}"));

    // Findings by line: (is it a loss, text).
    let prefix = format!("{shown}:");
    let findings: Vec<(usize, bool, String)> = report
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (n, what) = rest.split_once(": ")?;
            let n: usize = n.parse().ok()?;
            let loss = !what.contains(": note: ");
            Some((n, loss, l.to_string()))
        })
        .collect();
    let mut problems = Vec::new();
    for (i, (line, want)) in EVERY_OPTION.iter().enumerate() {
        let n = i + 1;
        let here: Vec<&(usize, bool, String)> = findings.iter().filter(|f| f.0 == n).collect();
        let losses = here.iter().filter(|f| f.1).count();
        match want {
            Structure | Inside | Moot if !here.is_empty() => {
                problems.push(format!("line {n} `{line}`: unexpected {:?}", here))
            }
            Carried(path) => {
                if at(&table, path).is_none() {
                    problems.push(format!("line {n} `{line}`: {path} is not in the output"));
                }
                if losses > 0 {
                    problems.push(format!(
                        "line {n} `{line}`: carried, yet reported {:?}",
                        here
                    ));
                }
            }
            Reported if losses == 0 => {
                problems.push(format!("line {n} `{line}`: not reported at its line"))
            }
            _ => {}
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n--- report ---\n{report}\n--- probes.toml ---\n{imported}",
        problems.join("\n")
    );
    // No secret reaches the report or the file.
    for secret in ["hunter2", "t0ken", "s3cret", "Bearer abc"] {
        assert!(
            !report.contains(secret) && !imported.contains(secret),
            "{secret}"
        );
    }
    // The ICMP source is granted to the engine; the rest of the output is
    // what the plugins' schemas accept.
    assert_eq!(
        at(&table, "engine.icmp_sources.0").and_then(|v| v.as_str()),
        Some("127.0.0.1")
    );
    let reported = EVERY_OPTION
        .iter()
        .filter(|(_, w)| matches!(w, Reported))
        .count();
    let carried = EVERY_OPTION
        .iter()
        .filter(|(_, w)| matches!(w, Carried(_)))
        .count();
    println!("{carried} options carried over, {reported} reported at their lines");
    println!("wasmprobe check: {}", check(&output));
}
