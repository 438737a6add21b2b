//! Config parsing and cross-checks, wasm-free.

use std::path::Path;

use super::*;

fn parse_str(text: &str) -> Result<Config, ConfigError> {
    parse(Path::new("probes.toml"), text.to_string())
}

fn errors(text: &str) -> Vec<String> {
    match parse_str(text) {
        Err(ConfigError::Invalid(d)) => d.0.iter().map(ToString::to_string).collect(),
        Err(e) => vec![e.to_string()],
        Ok(_) => vec![],
    }
}

const PLUGIN: &str = "[plugins.http-health]\npath = \"Cargo.toml\"\n";

#[test]
fn defaults_are_loopback_and_sane() {
    let c = parse_str("").ok();
    let c = c.as_ref();
    assert_eq!(
        c.map(|c| c.server.listen.to_string()).as_deref(),
        Some(DEFAULT_LISTEN)
    );
    assert!(c.is_some_and(|c| c.probes.is_empty()));
}

#[test]
fn a_probe_resolves_with_its_origin_allowed() {
    let text = format!(
        "{PLUGIN}[probes.api]\nplugin = \"http-health\"\nschedule = \"*/5 * * * * *\"\ntarget = \"http://127.0.0.1:8080/health\"\nlabels = {{ env = \"dev\" }}\n"
    );
    let c = parse_str(&text).ok();
    let p = c.as_ref().and_then(|c| c.probes.values().next());
    assert!(p.is_some_and(|p| p.allow.check_target("http://127.0.0.1:8080/x").is_ok()));
    assert!(p.is_some_and(|p| p.allow.check_target("http://127.0.0.1:8081/x").is_err()));
    assert_eq!(p.map(|p| p.labels.len()), Some(1));
}

#[test]
fn every_error_is_collected_with_its_location() {
    let text = format!(
        "{PLUGIN}[probes.a]\nplugin = \"nope\"\nschedule = \"*/5 * * * * *\"\ntarget = \"http://127.0.0.1:1/\"\n\n[probes.b]\nplugin = \"http-health\"\nschedule = \"*/5 * * * * *\"\ntarget = \"http://127.0.0.1:2/\"\nallow = []\n"
    );
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].starts_with("probes.toml:4:10: probes.a.plugin: unknown plugin \"nope\""),
        "{e:#?}"
    );
    assert!(
        e[1].starts_with("probes.toml:11:10: probes.b.target: target \"http://127.0.0.1:2\" is not allowed (allow = [])"),
        "{e:#?}"
    );
}

#[test]
fn parse_errors_name_the_key() {
    let e = errors("[probes.api]\nplugin = \"x\"\nschedule = \"* * * * *\"\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with(
            "probes.toml:3:12: probes.api.schedule: schedule \"* * * * *\" has 5 fields"
        ),
        "{e:#?}"
    );
    let e = errors("[server]\nlisten_on = \"x\"\n");
    assert!(
        e[0].starts_with("probes.toml:2:1: server.listen_on: unknown field `listen_on`"),
        "{e:#?}"
    );
}

#[test]
fn client_certificates_need_both_files_and_name_the_broken_one() {
    let probe = |tls: &str| {
        format!(
            "{PLUGIN}[probes.m]\nplugin = \"http-health\"\ntarget = \"https://127.0.0.1:8443/\"\n[probes.m.tls]\n{tls}\n"
        )
    };
    let e = errors(&probe("cert_file = \"client.pem\""));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].contains(
            "probes.m.tls.cert_file: a client certificate needs its private key: add `key_file`"
        ),
        "{e:#?}"
    );
    let e = errors(&probe("key_file = \"client.key\""));
    assert!(
        e[0].contains("probes.m.tls.key_file: a private key needs its client certificate"),
        "{e:#?}"
    );

    let dir = std::env::temp_dir().join(format!("wasmprobe-clientcert-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let not_pem = dir.join("not.pem");
    let _ = std::fs::write(&not_pem, "hello\n");
    let missing = dir.join("missing.pem");
    let e = errors(&probe(&format!(
        "cert_file = {:?}\nkey_file = {:?}",
        missing.display().to_string(),
        not_pem.display().to_string()
    )));
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].contains("probes.m.tls.cert_file: certificate file")
            && e[0].contains("missing.pem: cannot read"),
        "{e:#?}"
    );
    assert!(
        e[1].contains("probes.m.tls.key_file: key file")
            && e[1].contains("no private key (PKCS#8, PKCS#1 or SEC1 PEM block) found"),
        "{e:#?}"
    );

    // A readable pair loads; a key from another certificate is refused
    // where it is named, not at the first handshake.
    let pair = |stem: &str| {
        let ck = rcgen::generate_simple_self_signed(vec!["client".to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
        let (cert, key) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        let _ = std::fs::write(&cert, ck.cert.pem());
        let _ = std::fs::write(&key, ck.signing_key.serialize_pem());
        (cert.display().to_string(), key.display().to_string())
    };
    let (a_cert, a_key) = pair("a");
    let (_, b_key) = pair("b");
    let c = parse_str(&probe(&format!(
        "cert_file = {a_cert:?}\nkey_file = {a_key:?}"
    )));
    let loaded = c.ok().and_then(|c| c.probes.values().next().cloned());
    assert!(
        loaded.is_some_and(|p| p
            .tls
            .client_cert
            .as_ref()
            .is_some_and(|c| c.pair.cert.len() == 1)),
        "a matching pair did not load"
    );
    let e = errors(&probe(&format!(
        "cert_file = {a_cert:?}\nkey_file = {b_key:?}"
    )));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].contains("probes.m.tls.key_file: key file")
            && e[0].contains(&format!("does not match the certificate in {a_cert}")),
        "{e:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// ICMP sources are the operator's to hand out: the operator's probes may
/// send from any address of `[engine] icmp_sources`, a package's probes
/// only from the ones its grant lists, and a grant cannot list one the
/// engine does not.
/// Writes package `name` under `root`: `allow` as its capabilities, one
/// plugin `probe` (pinned), then `probes` (TOML). Its probes start at line 7.
fn write_package(root: &Path, name: &str, allow: &str, probes: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("probe.wasm"), b"\0asm").unwrap_or_else(|e| panic!("{e}"));
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"\0asm"))
    };
    std::fs::write(
        dir.join("package.toml"),
        format!(
            "name = \"{name}\"\n[capabilities]\nallow = [\"{allow}\"]\n[plugins.probe]\npath = \"probe.wasm\"\nsha256 = \"{sha}\"\n{probes}"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    dir
}

#[test]
fn a_package_sends_icmp_only_from_the_sources_granted_to_it() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for name in ["granted", "plain"] {
        write_package(
            root.path(),
            name,
            "icmp://127.0.0.1",
            "[probes.ping]\nplugin = \"probe\"\ntarget = \"127.0.0.1\"\n",
        );
    }
    std::fs::write(root.path().join("Cargo.toml"), "").unwrap_or_else(|e| panic!("{e}"));
    let main = |grant_sources: &str| {
        format!(
            "{PLUGIN}[engine]\nicmp_sources = [\"127.0.0.1\", \"127.0.0.2\"]\n[packages]\ninclude = [\"{root}/*/package.toml\"]\n[packages.grants.granted]\npath = \"{root}/granted\"\nicmp_sources = {grant_sources}\n[probes.own]\nplugin = \"http-health\"\ntarget = \"http://127.0.0.1:8080/\"\n",
            root = root.path().display()
        )
    };
    let c = parse(&root.path().join("probes.toml"), main("[\"127.0.0.2\"]"));
    let c = c.unwrap_or_else(|e| panic!("{e}"));
    let sources = |probe: &str| {
        c.probes
            .iter()
            .find(|(n, _)| n.as_str() == probe)
            .map(|(_, p)| {
                p.icmp_sources
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            })
    };
    assert_eq!(
        sources("own"),
        Some(vec!["127.0.0.1".into(), "127.0.0.2".into()])
    );
    assert_eq!(sources("granted:ping"), Some(vec!["127.0.0.2".into()]));
    assert_eq!(sources("plain:ping"), Some(vec![]));

    let refused = errors_at(&root.path().join("probes.toml"), &main("[\"127.0.0.9\"]"));
    assert!(
        refused.iter().any(|e| e.contains(
            "packages.grants.granted.icmp_sources: 127.0.0.9 is not in [engine] icmp_sources"
        )),
        "{refused:?}"
    );
}

fn errors_at(path: &Path, text: &str) -> Vec<String> {
    match parse(path, text.to_string()) {
        Err(ConfigError::Invalid(d)) => d.0.iter().map(ToString::to_string).collect(),
        Err(e) => vec![e.to_string()],
        Ok(_) => vec![],
    }
}

#[test]
fn an_interval_is_a_schedule_and_not_both() {
    let probe = |keys: &str| {
        format!(
            "{PLUGIN}[probes.api]\nplugin = \"http-health\"\ntarget = \"http://127.0.0.1:8080/\"\n{keys}\n"
        )
    };
    let c = parse_str(&probe("interval = \"30s\"")).ok();
    let schedule = c
        .as_ref()
        .and_then(|c| c.probes.values().next())
        .and_then(|p| p.schedule.as_ref())
        .map(|s| s.0.source().to_string());
    assert_eq!(schedule.as_deref(), Some("*/30 * * * * *"));
    let both = errors(&probe("interval = \"30s\"\nschedule = \"* * * * * *\""));
    assert!(
        both.iter()
            .any(|e| e
                .contains("probes.api.interval: give `schedule` (cron) or `interval`, not both")),
        "{both:?}"
    );
    let odd = errors(&probe("interval = \"7s\""));
    assert!(
        odd.iter()
            .any(|e| e.contains("probes.api.interval: interval 7s does not divide")),
        "{odd:?}"
    );
    let zoned = parse_str(&probe(
        "schedule = \"0 0 9 * * *\"\ntimezone = \"Europe/Berlin\"",
    ));
    let zone = zoned
        .ok()
        .and_then(|c| c.probes.values().next().and_then(|p| p.timezone));
    assert_eq!(
        zone.map(|z| z.name().to_string()).as_deref(),
        Some("Europe/Berlin")
    );
    let unknown = errors(&probe(
        "schedule = \"0 0 9 * * *\"\ntimezone = \"Mars/Olympus\"",
    ));
    assert!(
        unknown
            .iter()
            .any(|e| e.contains(":7:12: probes.api.timezone: unknown time zone \"Mars/Olympus\"")),
        "{unknown:?}"
    );
}

/// `proxy_url`: an `http://` origin inside the allow-list, never with
/// credentials, and a refusal never repeats what was written.
#[test]
fn a_proxy_is_an_allowed_plain_http_origin_without_credentials() {
    let probe = |proxy: &str, allow: &str| {
        format!(
            "{PLUGIN}[probes.api]\nplugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"https://service.internal/health\"\nproxy_url = \"{proxy}\"\nallow = [{allow}]\n"
        )
    };
    let allow = "\"https://service.internal\", \"http://127.0.0.1:3128\"";
    let ok = parse_str(&probe("http://127.0.0.1:3128", allow)).ok();
    let proxy = ok
        .as_ref()
        .and_then(|c| c.probes.values().next())
        .and_then(|p| p.proxy.as_ref())
        .map(ToString::to_string);
    assert_eq!(proxy.as_deref(), Some("http://127.0.0.1:3128/"));

    let outside = errors(&probe("http://127.0.0.1:3129", allow));
    assert!(
        outside.iter().any(|e| e.contains(
            ":7:13: probes.api.proxy_url: the proxy http://127.0.0.1:3129 must be inside the probe's allow-list"
        )),
        "{outside:?}"
    );
    let secret = errors(&probe("http://user:hunter2@127.0.0.1:3128", allow));
    assert!(
        secret
            .iter()
            .any(|e| e.contains("probes.api.proxy_url: a proxy URL carries no credentials")),
        "{secret:?}"
    );
    assert!(!secret.iter().any(|e| e.contains("hunter2")), "{secret:?}");
    for (bad, why) in [
        (
            "https://127.0.0.1:3128",
            "scheme \"https\" is not supported",
        ),
        ("http://127.0.0.1:3128/path", "give only the proxy's origin"),
        ("127.0.0.1:3128", "not a URL"),
    ] {
        let e = errors(&probe(bad, allow));
        assert!(
            e.iter()
                .any(|e| e.contains("probes.api.proxy_url") && e.contains(why)),
            "{bad}: {e:?}"
        );
    }
}

/// The OCI inputs, written as attacks: a package naming an OCI reference
/// for its plugin (the engine would fetch what a team points it at), a
/// local package claiming a name the operator bound to a repository, and
/// a registry password written in clear. Each is refused, located, and no
/// connection is made.
#[test]
fn oci_inputs_cannot_make_the_engine_fetch_or_claim_what_the_operator_did_not_grant() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{e}"));
    let registry = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();
    let pin = format!("sha256:{}", "ab".repeat(32));
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"\0asm"))
    };
    for (name, plugin) in [
        (
            "fetcher",
            format!(
                "[plugins.probe]\noci = \"{registry}/evil/probe:1@{pin}\"\nsha256 = \"{sha}\"\n"
            ),
        ),
        (
            "squatter",
            format!("[plugins.probe]\npath = \"probe.wasm\"\nsha256 = \"{sha}\"\n"),
        ),
    ] {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("probe.wasm"), b"\0asm").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.join("package.toml"),
            format!("name = \"{name}\"\n{plugin}"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(root.path().join("Cargo.toml"), "").unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        "{PLUGIN}[packages]\ninclude = [\"{root}/*/package.toml\"]\n[packages.grants.squatter]\npath = \"oci://{registry}/team/squatter\"\n",
        root = root.path().display()
    );
    let (config, _) =
        parse_partial(&root.path().join("probes.toml"), text).unwrap_or_else(|e| panic!("{e}"));
    let refusal = |name: &str| -> String {
        config
            .packages
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.refused.as_ref())
            .map(|d| d.to_string())
            .unwrap_or_else(|| panic!("package {name} was not refused: {:?}", config.packages))
    };
    let fetcher = refusal("fetcher");
    assert!(
        fetcher.contains("fetcher/package.toml:3:1") && fetcher.contains("unknown field `oci`"),
        "{fetcher}"
    );
    let squatter = refusal("squatter");
    assert!(
        squatter.contains("squatter/package.toml:1:8: name:")
            && squatter.contains(&format!(
                "bound by the operator to oci://{registry}/team/squatter"
            )),
        "{squatter}"
    );
    assert!(config.plugins.keys().all(|p| p.as_str() == "http-health"));
    assert!(
        listener.accept().is_err(),
        "nothing may connect to the address a package named"
    );

    let clear = errors(&format!(
        "{PLUGIN}[registries.\"{registry}\"]\nusername = \"ci\"\npassword = \"hunter22\"\n"
    ));
    assert!(
        clear
            .iter()
            .any(|e| e.contains(":5:12: registries.") && e.contains("never goes in probes.toml")),
        "{clear:?}"
    );
    assert!(!clear.iter().any(|e| e.contains("hunter22")), "{clear:?}");
}

#[test]
fn targets_are_many_runs_with_their_origins_allowed_and_refuse_a_single_target_beside_them() {
    let text = format!(
        "{PLUGIN}[probes.web]\nplugin = \"http-health\"\nschedule = \"* * * * * *\"\ntargets = [\"http://127.0.0.1:1/a\", \"http://127.0.0.1:2/b\"]\n"
    );
    let c = parse_str(&text).ok();
    let p = c.as_ref().and_then(|c| c.probes.values().next());
    assert!(p.is_some_and(|p| p.has_many_targets() && p.targets.len() == 2));
    assert!(p.is_some_and(|p| p.allow.check_target("http://127.0.0.1:2/x").is_ok()));
    assert!(p.is_some_and(|p| p.allow.check_target("http://127.0.0.1:3/x").is_err()));

    let e = errors(&format!(
        "{PLUGIN}[probes.web]\nplugin = \"http-health\"\ntarget = \"http://127.0.0.1:1/\"\ntargets = [\"http://127.0.0.1:1/a\", \"http://127.0.0.1:1/a\"]\nfile_sd = [\"t.json\"]\n"
    ));
    let joined = e.join("\n");
    assert!(
        joined.contains(
            "probes.toml:6:11: probes.web.targets: give `target` (one) or `targets` (many)"
        ),
        "{joined}"
    );
    assert!(joined.contains("is listed twice"), "{joined}");
    assert!(
        joined.contains("probes.web.file_sd: give `target` (one) or `file_sd` (many)"),
        "{joined}"
    );
}

#[test]
fn file_sd_needs_an_allow_list_and_a_package_cannot_read_files() {
    let e = errors(&format!(
        "{PLUGIN}[probes.web]\nplugin = \"http-health\"\nschedule = \"* * * * * *\"\nfile_sd = [\"t.json\"]\n"
    ));
    assert!(
        e.iter().any(|e| e.contains("probes.web.file_sd: a probe with `file_sd` needs an `allow` list")),
        "{e:#?}"
    );
}

/// A hostile package tries discovery to read the operator's files
/// (`file_sd` on a path of the host) and to make the engine send requests
/// where it likes (`http_sd`): both are refused at their line in the
/// package's file, the package is not loaded, and nothing is fetched.
#[test]
fn a_package_cannot_discover_targets_from_files_or_urls() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = write_package(
        root.path(),
        "sneaky",
        "http://127.0.0.1:*",
        &format!(
            "[probes.files]\nplugin = \"probe\"\nschedule = \"* * * * * *\"\nallow = [\"http://127.0.0.1:*\"]\nfile_sd = [\"/etc/passwd\"]\n[probes.urls]\nplugin = \"probe\"\nschedule = \"* * * * * *\"\nallow = [\"http://127.0.0.1:*\"]\nhttp_sd = \"http://127.0.0.1:{port}/targets\"\n"
        ),
    );
    std::fs::write(root.path().join("Cargo.toml"), "").unwrap_or_else(|e| panic!("{e}"));
    let main = format!(
        "{PLUGIN}[packages]\ninclude = [\"{}/package.toml\"]\n",
        dir.display()
    );
    let config = parse(&root.path().join("probes.toml"), main);
    let refused: Vec<String> = match &config {
        Ok(c) => c
            .packages
            .iter()
            .filter_map(|p| p.refused.as_ref())
            .flat_map(|d| d.0.iter().map(ToString::to_string))
            .collect(),
        Err(e) => vec![e.to_string()],
    };
    let joined = refused.join("\n");
    assert!(
        joined.contains(
            "package.toml:11:11: probes.files.file_sd: a package's probes cannot read files"
        ),
        "{joined}"
    );
    assert!(
        joined.contains(
            "package.toml:16:11: probes.urls.http_sd: a package's probes cannot discover targets"
        ),
        "{joined}"
    );
    assert!(config.is_ok_and(|c| !c.probes.keys().any(|k| k.as_str().starts_with("sneaky"))));
    assert!(
        listener.accept().is_err(),
        "the engine connected to the package's http_sd URL"
    );
}

#[test]
fn shards_spread_a_probes_targets() {
    let targets: Vec<String> = (0..40)
        .map(|i| format!("\"http://127.0.0.1:1/{i}\""))
        .collect();
    let text = format!(
        "{PLUGIN}[probes.web]\nplugin = \"http-health\"\nschedule = \"* * * * * *\"\ntargets = [{}]\n",
        targets.join(", ")
    );
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    for index in 0..3 {
        let Ok(mut c) = parse_str(&text) else {
            panic!("config refused")
        };
        let shard: crate::shard::Shard = format!("{index}/3")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        c.keep_shard(shard);
        let kept: Vec<String> = c
            .probes
            .values()
            .flat_map(|p| p.targets.iter().map(|t| t.address.clone()))
            .collect();
        // Each replica gets a share, not all or nothing.
        assert!(
            !kept.is_empty() && kept.len() < 40,
            "shard {index}: {}",
            kept.len()
        );
        total += kept.len();
        seen.extend(kept);
    }
    assert_eq!((total, seen.len()), (40, 40));
}
