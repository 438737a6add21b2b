//! blackbox_exporter's `tls_config` (Prometheus' common TLS settings) to
//! the probe's `tls` table, which the host owns: plugins never see trust
//! settings or keys, so every prober's TLS options land here.

use yaml_serde::Value;

use super::output::Tls;
use super::read::Ctx;
use crate::import::lines::KeyPath;

/// Carries `value` (a `tls_config` mapping at `path`) into `tls`.
pub(super) fn tls_config(ctx: &mut Ctx<'_>, path: &KeyPath, value: &Value, tls: &mut Tls) {
    let mut cert = None;
    let mut key = None;
    for (name, p, v) in ctx.entries(path, value) {
        match name.as_str() {
            "insecure_skip_verify" => {
                if ctx.boolean(&p, v) == Some(true) {
                    tls.insecure_skip_verify = Some(true);
                }
            }
            "ca_file" => tls.ca_file = file(ctx, &p, v),
            "cert_file" => cert = file(ctx, &p, v).map(|f| (f, p)),
            "key_file" => key = file(ctx, &p, v).map(|f| (f, p)),
            "server_name" => {
                tls.server_name = ctx.string(&p, v).filter(|s| !s.is_empty());
            }
            "min_version" => match ctx.string(&p, v).as_deref() {
                None | Some("" | "TLS12") => {}
                Some("TLS13") => tls.min_version = Some("1.3".into()),
                Some(old @ ("TLS10" | "TLS11")) => ctx.not_carried(
                    &p,
                    format!("{old}: wasmprobe speaks TLS 1.2 and 1.3 only, so a server without them fails"),
                ),
                Some(other) => ctx.not_carried(
                    &p,
                    format!("{other:?} is not a TLS version (TLS10, TLS11, TLS12, TLS13)"),
                ),
            },
            "max_version" => match ctx.string(&p, v).as_deref() {
                None | Some("" | "TLS13") => {}
                Some(_) => ctx.not_carried(
                    &p,
                    "wasmprobe offers TLS 1.2 and 1.3 and cannot cap the version below 1.3",
                ),
            },
            "ca" | "cert" => ctx.not_carried(
                &p,
                format!("inline PEM is not read: write it to a file and set {name}_file"),
            ),
            "key" => ctx.not_carried(
                &p,
                "a private key is never written into probes.toml: put it in a file and set key_file",
            ),
            "ca_ref" | "cert_ref" | "key_ref" => ctx.not_carried(
                &p,
                "secret references are not supported: name a file (ca_file, cert_file, key_file)",
            ),
            _ => ctx.unknown(&p),
        }
    }
    match (cert, key) {
        (Some((c, _)), Some((k, _))) => {
            tls.cert_file = Some(c);
            tls.key_file = Some(k);
        }
        (Some((_, p)), None) | (None, Some((_, p))) => ctx.not_carried(
            &p,
            "a client certificate needs both cert_file and key_file (blackbox_exporter refuses one alone too)",
        ),
        (None, None) => {}
    }
}

/// A file name; a relative one is noted, since its base changes.
fn file(ctx: &mut Ctx<'_>, path: &KeyPath, value: &Value) -> Option<String> {
    let name = ctx.string(path, value).filter(|s| !s.is_empty())?;
    if std::path::Path::new(&name).is_relative() {
        ctx.note(
            path,
            format!("{name:?} is relative: wasmprobe takes it from the directory of probes.toml, blackbox_exporter from its working directory"),
        );
    }
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::lines::YamlLines;
    use crate::import::report::Report;

    fn convert(yaml: &str) -> (Tls, String) {
        let text = format!("modules:\n  m:\n    http:\n      tls_config:\n{yaml}");
        let lines = YamlLines::scan(&text);
        let mut ctx = Ctx::new(&lines, Report::new("b.yml"));
        let value: Value = yaml_serde::from_str(&text).unwrap_or(Value::Null);
        let path = KeyPath::root()
            .key("modules")
            .key("m")
            .key("http")
            .key("tls_config");
        let mut tls = Tls::default();
        tls_config(
            &mut ctx,
            &path,
            &value["modules"]["m"]["http"]["tls_config"],
            &mut tls,
        );
        (tls, ctx.report.to_string())
    }

    #[test]
    fn every_setting_lands_on_the_probes_tls_table() {
        let (tls, report) = convert(
            "        ca_file: /etc/ssl/ca.pem\n        cert_file: /etc/ssl/client.pem\n        key_file: /etc/ssl/client.key\n        server_name: api.internal\n        insecure_skip_verify: true\n        min_version: TLS13\n        max_version: TLS13\n",
        );
        assert_eq!(
            tls,
            Tls {
                ca_file: Some("/etc/ssl/ca.pem".into()),
                insecure_skip_verify: Some(true),
                server_name: Some("api.internal".into()),
                min_version: Some("1.3".into()),
                cert_file: Some("/etc/ssl/client.pem".into()),
                key_file: Some("/etc/ssl/client.key".into()),
            }
        );
        assert!(report.ends_with("everything carried over"), "{report}");
    }

    #[test]
    fn defaults_write_nothing() {
        let (tls, report) =
            convert("        insecure_skip_verify: false\n        min_version: TLS12\n");
        assert!(tls.is_empty());
        assert!(report.ends_with("everything carried over"), "{report}");
    }

    #[test]
    fn what_cannot_be_carried_is_reported_at_its_line() {
        let (tls, report) = convert(
            "        min_version: TLS10\n        max_version: TLS12\n        key: secret-pem\n        cert_file: c.pem\n        foo: 1\n",
        );
        assert!(tls.is_empty(), "{tls:?}");
        for line in [
            "b.yml:5: m.http.tls_config.min_version: not carried over: TLS10: wasmprobe speaks TLS 1.2 and 1.3 only",
            "b.yml:6: m.http.tls_config.max_version: not carried over:",
            "b.yml:7: m.http.tls_config.key: not carried over: a private key is never written",
            "b.yml:8: m.http.tls_config.cert_file: note: \"c.pem\" is relative",
            "b.yml:8: m.http.tls_config.cert_file: not carried over: a client certificate needs both",
            "b.yml:9: m.http.tls_config.foo: unknown key: not carried over",
        ] {
            assert!(report.contains(line), "{line}\n---\n{report}");
        }
        assert!(
            !report.contains("secret-pem"),
            "a key never reaches the report"
        );
    }
}
