//! Probe packages: each team's plugins reach only their own targets, spend
//! only their own series budget and cannot wear another package's labels;
//! a bad package is refused alone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::harness::{Engine, Scrape, wasm};
use crate::targets;

const WAIT: Duration = Duration::from_secs(90);

/// Writes a package directory holding the misbehave fixture as plugin
/// `probe`, pinned by its real hash (or by `pin` when given).
fn package(root: &Path, name: &str, head: &str, probes: &str, pin: Option<&str>) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(wasm("fixtures", "misbehave")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("probe.wasm"), &bytes).unwrap_or_else(|e| panic!("{e}"));
    let sha = pin.map_or_else(|| hex::encode(Sha256::digest(&bytes)), str::to_string);
    std::fs::write(
        dir.join("package.toml"),
        format!("name = \"{name}\"\n{head}\n[plugins.probe]\npath = \"probe.wasm\"\nsha256 = \"{sha}\"\n\n{probes}"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    dir
}

/// `wasmprobe check` on `config`, which must refuse it (exit 2); its stderr.
fn check_refused(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap_or_else(|err| panic!("{err}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    stderr
}

fn http_probe(name: &str, url: &str) -> String {
    format!(
        "[probes.{name}]\nplugin = \"probe\"\nschedule = \"* * * * * *\"\n[probes.{name}.config]\nbehaviour = \"http\"\nurl = \"{url}\"\n"
    )
}

#[test]
fn packages_reach_only_their_own_targets_and_wear_their_own_labels() {
    let alpha_own = targets::counting();
    let alpha_private = targets::counting();
    let beta_own = targets::counting();
    let beta_private = targets::counting();
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    package(
        root.path(),
        "alpha",
        &format!(
            "team = \"team-a\"\n[capabilities]\nallow = [\"{}\", \"{}\"]",
            alpha_own.origin("http"),
            alpha_private.origin("http")
        ),
        &(http_probe("own", &alpha_own.url("/ok")) + &http_probe("peek", &beta_private.url("/ok"))),
        None,
    );
    package(
        root.path(),
        "beta",
        &format!(
            "team = \"team-b\"\n[capabilities]\nallow = [\"{}\", \"{}\"]",
            beta_own.origin("http"),
            beta_private.origin("http")
        ),
        &(http_probe("own", &beta_own.url("/ok")) + &http_probe("peek", &alpha_private.url("/ok"))),
        None,
    );
    let e = Engine::new()
        .raw(&format!(
            "[packages]\ninclude = [\"{}/*\"]\n[packages.cap]\nallow = [\"http://127.0.0.0/8:*\"]\n",
            root.path().display()
        ))
        .start();
    let probes = ["alpha:own", "alpha:peek", "beta:own", "beta:peek"];
    let s = e.wait_for("two runs of every package probe", WAIT, |s| {
        probes.iter().all(|p| {
            s.all("wasmprobe_probe_runs_total")
                .iter()
                .filter(|x| x.labels.get("probe").map(String::as_str) == Some(*p))
                .map(|x| x.value)
                .sum::<f64>()
                >= 2.0
        })
    });
    for (pkg, team) in [("alpha", "team-a"), ("beta", "team-b")] {
        let own = s.value(
            "misbehave_http_status",
            &[
                ("probe", &format!("{pkg}:own")),
                ("package", pkg),
                ("team", team),
            ],
        );
        assert_eq!(own, 200.0, "{}", s.text);
        let peek = s.value(
            "misbehave_http_status",
            &[
                ("probe", &format!("{pkg}:peek")),
                ("package", pkg),
                ("team", team),
                ("error", "denied"),
            ],
        );
        assert_eq!(peek, 0.0);
    }
    assert_eq!(alpha_private.accepted(), 0, "beta reached alpha's host");
    assert_eq!(beta_private.accepted(), 0, "alpha reached beta's host");
    assert!(alpha_own.accepted() >= 2 && beta_own.accepted() >= 2);
    assert_eq!(
        s.value("wasmprobe_package_loaded", &[("package", "alpha")]),
        1.0
    );
}

#[test]
fn a_bad_package_is_refused_alone_and_budgets_stay_in_their_package() {
    let target = targets::counting();
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ok = "[probes.fine]\nplugin = \"probe\"\nschedule = \"* * * * * *\"\n";
    package(
        root.path(),
        "good",
        "team = \"g\"\n[limits]\nseries_budget = 100",
        ok,
        None,
    );
    package(
        root.path(),
        "pinned",
        "",
        ok,
        Some("0000000000000000000000000000000000000000000000000000000000000000"),
    );
    package(
        root.path(),
        "greedy",
        "[capabilities]\nallow = [\"http://10.0.0.0/8:*\"]",
        ok,
        None,
    );
    package(root.path(), "sloppy", "colour = \"blue\"", ok, None);
    package(
        root.path(),
        "wide",
        "[limits]\nseries_budget = 50",
        "[probes.bomb]\nplugin = \"probe\"\nschedule = \"* * * * * *\"\n[probes.bomb.config]\nbehaviour = \"many_series\"\ncount = 200\n",
        None,
    );
    let engine = Engine::new()
        .raw(&format!(
            "[packages]\ninclude = [\"{}/*/package.toml\"]\n[packages.cap]\nallow = [\"http://127.0.0.0/8:*\"]\nseries_budget = 1000\n",
            root.path().display()
        ))
        .probe(
            "main",
            &format!("plugin = \"http-health\"\nschedule = \"* * * * * *\"\ntarget = \"{}\"", target.url("/ok")),
        );
    let config = engine.config_path();
    let e = engine.start();
    let s = e.wait_for("the good package and the budget refusal", WAIT, |s| {
        s.get(
            "probe_success",
            &[("probe", "good:fine"), ("package", "good"), ("team", "g")],
        ) == Some(1.0)
            && s.get(
                "wasmprobe_probe_runs_total",
                &[
                    ("probe", "wide:bomb"),
                    ("package", "wide"),
                    ("result", "rejected"),
                ],
            )
            .is_some()
    });
    for (pkg, loaded) in [
        ("good", 1.0),
        ("pinned", 0.0),
        ("greedy", 0.0),
        ("sloppy", 0.0),
        ("wide", 1.0),
    ] {
        assert_eq!(
            s.value("wasmprobe_package_loaded", &[("package", pkg)]),
            loaded,
            "{pkg}"
        );
    }
    assert!(s.all("probe_success").iter().all(|x| {
        let p = x.labels.get("probe").cloned().unwrap_or_default();
        !p.starts_with("pinned:") && !p.starts_with("greedy:") && !p.starts_with("sloppy:")
    }));
    // The budget overrun is the wide package's alone.
    assert!(
        s.all("misbehave_value")
            .iter()
            .all(|x| x.labels.get("package").map(String::as_str) != Some("wide"))
    );
    assert_eq!(s.value("probe_success", &[("probe", "main")]), 1.0);
    assert_eq!(
        s.value(
            "probe_success",
            &[("probe", "good:fine"), ("package", "good"), ("team", "g")]
        ),
        1.0
    );

    let stderr = check_refused(&config);
    assert!(
        stderr.contains("pinned/package.toml:5:10: plugins.probe.sha256:"),
        "{stderr}"
    );
    assert!(stderr.contains("but the package pins 0000"), "{stderr}");
    assert!(stderr.contains("greedy/package.toml:3:9: capabilities.allow: \"http://10.0.0.0/8:*\" is wider than the operator allows packages"), "{stderr}");
    assert!(
        stderr.contains("sloppy/package.toml:2:1: colour: unknown field `colour`"),
        "{stderr}"
    );
    let _ = Scrape::parse(&s.text);
}

#[test]
fn a_package_can_ship_as_a_tar_gz() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = package(
        root.path(),
        "boxed",
        "team = \"crate\"",
        "[probes.inside]\nplugin = \"probe\"\nschedule = \"* * * * * *\"\n",
        None,
    );
    let archive = root.path().join("boxed.tar.gz");
    let out = Command::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg("-C")
        .arg(&dir)
        .args(["package.toml", "probe.wasm"])
        .output()
        .unwrap_or_else(|e| panic!("tar: {e}"));
    assert!(out.status.success());
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let e = Engine::new()
        .raw(&format!(
            "[packages]\ninclude = [\"{}\"]\n",
            archive.display()
        ))
        .start();
    let s = e.wait_for("the archived package's probe", WAIT, |s| {
        s.get(
            "probe_success",
            &[
                ("probe", "boxed:inside"),
                ("package", "boxed"),
                ("team", "crate"),
            ],
        )
        .is_some()
    });
    assert_eq!(
        s.value("wasmprobe_package_loaded", &[("package", "boxed")]),
        1.0
    );
}

/// A hostile package names its labels (and a probe's) like the ones the
/// engine appends (`result` on the runs counter, `reason` on traps,
/// `shard`): were they accepted, those series would carry two labels of one
/// name and Prometheus would drop the whole scrape, every team's series
/// with it. The package is refused with file, line and key; the others,
/// and the scrape, stay whole.
#[test]
fn a_package_cannot_wear_a_label_the_engine_writes() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ok = "[probes.fine]\nplugin = \"probe\"\nschedule = \"* * * * * *\"\n";
    package(root.path(), "good", "team = \"g\"", ok, None);
    package(
        root.path(),
        "forger",
        "[labels]\nresult = \"success\"\nshard = \"0\"",
        "[probes.fine]\nplugin = \"probe\"\nschedule = \"* * * * * *\"\nlabels = { reason = \"x\" }\n",
        None,
    );
    let engine = Engine::new().raw(&format!(
        "[packages]\ninclude = [\"{}/*/package.toml\"]\n[packages.cap]\nallow = [\"http://127.0.0.0/8:*\"]\n",
        root.path().display()
    ));
    let config = engine.config_path();
    let e = engine.start();
    let s = e.wait_for("the good package's probe", WAIT, |s| {
        s.get(
            "probe_success",
            &[("probe", "good:fine"), ("package", "good"), ("team", "g")],
        ) == Some(1.0)
    });
    assert_eq!(
        s.value("wasmprobe_package_loaded", &[("package", "forger")]),
        0.0
    );
    assert!(
        s.all("wasmprobe_probe_runs_total").iter().all(|x| x
            .labels
            .get("package")
            .map(String::as_str)
            != Some("forger"))
    );
    crate::harness::promtool_check(&s.text);
    let _ = Scrape::parse(&s.text);

    let stderr = check_refused(&config);
    for needle in [
        "forger/package.toml:3:1: labels.result: label \"result\" is set by the host",
        "forger/package.toml:4:1: labels.shard: label \"shard\" is set by the host",
        "probes.fine.labels.reason: label \"reason\" is set by the host",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
}

/// Hostile packages reach for what is not theirs: another team's token in
/// the environment, the process's own environment file, a key file to
/// present as a client certificate, TLS verification turned off, and a
/// granted package's name claimed from another directory. Each is refused
/// with file, line and key (no file is opened for it); the granted package
/// reads exactly the secret it was granted.
#[test]
fn a_package_reads_only_the_secrets_and_files_the_operator_granted() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let leak = |secret: &str| {
        format!(
            "[probes.leaky]\nplugin = \"probe\"\nschedule = \"* * * * * *\"\nsecrets = {{ token = {secret} }}\n[probes.leaky.config]\nbehaviour = \"leak_secret\"\n"
        )
    };
    let granted = package(
        root.path(),
        "payments",
        "team = \"p\"",
        &leak("{ env = \"WASMPROBE_TEST_PAYMENTS_TOKEN\" }"),
        None,
    );
    package(
        root.path(),
        "thief",
        "",
        &leak("{ env = \"WASMPROBE_TEST_OTHER_TOKEN\" }"),
        None,
    );
    package(
        root.path(),
        "snoop",
        "",
        &leak("{ file = \"/proc/self/environ\" }"),
        None,
    );
    let key = root.path().join("server.key");
    std::fs::write(&key, "not a key").unwrap_or_else(|e| panic!("{e}"));
    package(
        root.path(),
        "mtls",
        "",
        &format!(
            "[probes.t]\nplugin = \"probe\"\nschedule = \"* * * * * *\"\n[probes.t.tls]\ncert_file = {key:?}\nkey_file = {key:?}\ninsecure_skip_verify = true\n"
        ),
        None,
    );
    let squatter_root = root.path().join("elsewhere");
    package(
        &squatter_root,
        "payments",
        "",
        &leak("{ env = \"WASMPROBE_TEST_PAYMENTS_TOKEN\" }"),
        None,
    );

    let engine = Engine::new()
        .env("WASMPROBE_TEST_PAYMENTS_TOKEN", "payments-granted-token")
        .env("WASMPROBE_TEST_OTHER_TOKEN", "other-team-token")
        .raw(&format!(
            "[packages]\ninclude = [\"{root}/*/package.toml\", \"{root}/elsewhere/*/package.toml\"]\n[packages.grants.payments]\npath = {granted:?}\nenv = [\"WASMPROBE_TEST_PAYMENTS_TOKEN\"]\n",
            root = root.path().display()
        ));
    let config = engine.config_path();
    let e = engine.start();
    let s = e.wait_for("the granted package's run", WAIT, |s| {
        s.get(
            "misbehave_value",
            &[
                ("probe", "payments:leaky"),
                ("package", "payments"),
                ("team", "p"),
                ("v", "token=[redacted]"),
            ],
        ) == Some(1.0)
    });
    for pkg in ["thief", "snoop", "mtls"] {
        assert_eq!(
            s.value("wasmprobe_package_loaded", &[("package", pkg)]),
            0.0,
            "{pkg}"
        );
    }
    assert!(!s.text.contains("other-team-token") && !s.text.contains("payments-granted-token"));
    crate::harness::promtool_check(&s.text);

    let stderr = check_refused(&config);
    for needle in [
        "thief/package.toml:10:21: probes.leaky.secrets.token: environment variable \"WASMPROBE_TEST_OTHER_TOKEN\" is not granted to package \"thief\"",
        "snoop/package.toml:10:21: probes.leaky.secrets.token: file /proc/self/environ is not granted to package \"snoop\"",
        "mtls/package.toml:11:13: probes.t.tls.cert_file: file",
        "probes.t.tls.key_file: file",
        "probes.t.tls.insecure_skip_verify: turning TLS verification off is not granted to package \"mtls\"",
        "elsewhere/payments/package.toml:1:8: name: package name \"payments\" is bound by the operator to",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
}

/// A package raises the per-run limits the operator's cap bounds: a body
/// cap to hold a gigabyte per response, ten million samples, a huge state
/// store, a log flood, a run's requests, bytes and packets without end.
/// Each is refused with file, line and key; a budget the cap leaves out is
/// bounded by the main config's `[limits]` (max_packets here).
#[test]
fn a_package_cannot_raise_a_limit_above_the_cap() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    package(
        root.path(),
        "greedy",
        "",
        "[probes.p]\nplugin = \"probe\"\nschedule = \"* * * * * *\"\n[probes.p.limits]\nmax_body = \"1GiB\"\nmax_output = \"512MiB\"\nmax_series = 10000000\nstate_bytes = \"1GiB\"\nlog_lines = 1000000\nmax_requests = 1000000\nmax_transfer = \"100GiB\"\nmax_packets = 1000000\n",
        None,
    );
    let engine = Engine::new().raw(&format!(
        "[packages]\ninclude = [\"{}/*/package.toml\"]\n[packages.cap]\nmax_body = \"1MiB\"\nlog_lines = 50\nmax_requests = 100\nmax_transfer = \"8MiB\"\n",
        root.path().display()
    ));
    let config = engine.file("probes.toml", &engine.text());
    let stderr = check_refused(&config);
    for needle in [
        "greedy/package.toml:7:1: probes.p.limits.max_body: 1.0 GiB is above the operator's cap 1.0 MiB ([packages.cap] max_body)",
        "probes.p.limits.max_output:",
        "probes.p.limits.max_series: 10000000 is above the operator's cap",
        "probes.p.limits.state_bytes:",
        "probes.p.limits.log_lines: 1000000 is above the operator's cap 50 ([packages.cap] log_lines)",
        "probes.p.limits.max_requests: 1000000 is above the operator's cap 100 ([packages.cap] max_requests)",
        "probes.p.limits.max_transfer: 100.0 GiB is above the operator's cap 8.0 MiB ([packages.cap] max_transfer)",
        "probes.p.limits.max_packets: 1000000 is above the operator's cap 1000 ([packages.cap] max_packets)",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
}

/// `/probe` lets its caller choose the target: a package probe holding a
/// credential would send it wherever the caller says within the package's
/// range. A package's probes answer `/probe` only when the operator grants
/// `on_demand`; the operator's own probes always do.
#[test]
fn probe_reaches_a_package_probe_only_when_the_operator_opens_it() {
    let target = targets::counting();
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let probe = |name: &str| {
        format!(
            "[probes.{name}]\nplugin = \"probe\"\ntarget = \"{}\"\nsecrets = {{ token = {{ env = \"WASMPROBE_TEST_TOKEN\" }} }}\n[probes.{name}.config]\nbehaviour = \"http\"\n",
            target.url("/ok")
        )
    };
    let reach = "[capabilities]\nallow = [\"http://127.0.0.0/8:*\"]";
    let closed = package(root.path(), "closed", reach, &probe("p"), None);
    let open = package(root.path(), "open", reach, &probe("p"), None);
    let e = Engine::new()
        .env("WASMPROBE_TEST_TOKEN", "t0ken")
        .raw(&format!(
            "[packages]\ninclude = [\"{}/*/package.toml\"]\n[packages.cap]\nallow = [\"http://127.0.0.0/8:*\"]\n[packages.grants.closed]\npath = {closed:?}\nenv = [\"WASMPROBE_TEST_TOKEN\"]\n[packages.grants.open]\npath = {open:?}\nenv = [\"WASMPROBE_TEST_TOKEN\"]\non_demand = true\n",
            root.path().display()
        ))
        .probe("mine", &format!("plugin = \"http-health\"\ntarget = \"{}\"", target.url("/ok")))
        .start();
    let refused = crate::harness::get(&e.url("/probe?module=closed:p"), None);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("not open to /probe"),
        "{}",
        refused.body
    );
    let before = target.accepted();
    let opened = crate::harness::get(&e.url("/probe?module=open:p"), None);
    assert_eq!(opened.status, 200, "{}", opened.body);
    let mine = crate::harness::get(&e.url("/probe?module=mine"), None);
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert!(
        mine.body.contains("probe_success{probe=\"mine\"} 1"),
        "{}",
        mine.body
    );
    assert!(
        target.accepted() >= before + 2,
        "the open probes reached their target"
    );
}

/// A package ships a plugin declaring a family the operator's plugin owns
/// (`misbehave_observed_seconds`, with another type), under a probe name
/// that sorts first. The operator's plugin keeps the family; the package's
/// declaration is the one left out and its samples are refused.
#[test]
fn a_package_cannot_squat_a_family_of_the_operators_plugins() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = root.path().join("aaa");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(wasm("fixtures", "impostor")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("impostor.wasm"), &bytes).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.join("package.toml"),
        format!(
            "name = \"aaa\"\n[plugins.impostor]\npath = \"impostor.wasm\"\nsha256 = \"{}\"\n\n[probes.first]\nplugin = \"impostor\"\nschedule = \"* * * * * *\"\n",
            hex::encode(Sha256::digest(&bytes))
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let e = Engine::new()
        .raw(&format!(
            "[packages]\ninclude = [\"{}/*/package.toml\"]\n",
            root.path().display()
        ))
        .probe(
            "zzz",
            "plugin = \"misbehave\"\nschedule = \"* * * * * *\"\ntarget = \"http://127.0.0.1:9/\"",
        )
        .start();
    let s = e.wait_for("both probes' runs", WAIT, |s| {
        s.get("misbehave_observed_seconds_count", &[("probe", "zzz")])
            .unwrap_or(0.0)
            >= 1.0
            && s.get(
                "wasmprobe_probe_samples_rejected_total",
                &[
                    ("probe", "aaa:first"),
                    ("package", "aaa"),
                    ("reason", "unknown_family"),
                ],
            )
            .unwrap_or(0.0)
                >= 1.0
    });
    assert_eq!(
        s.families
            .get("misbehave_observed_seconds")
            .map(|f| f.0.as_str()),
        Some("histogram"),
        "{}",
        s.text
    );
    crate::harness::promtool_check(&s.text);
}

/// Each probe's runs show what they cost, so an operator sees which team's
/// plugin spends what: host calls by capability, bytes on the network, CPU
/// time and the peak linear memory of the last run.
#[test]
fn each_probe_shows_what_its_runs_use() {
    let target = targets::counting();
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    package(
        root.path(),
        "busy",
        "team = \"b\"\n[capabilities]\nallow = [\"http://127.0.0.0/8:*\"]",
        &http_probe("fetch", &target.url("/ok")),
        None,
    );
    package(
        root.path(),
        "quiet",
        "team = \"q\"",
        "[probes.idle]\nplugin = \"probe\"\nschedule = \"* * * * * *\"\n",
        None,
    );
    let e = Engine::new()
        .raw(&format!(
            "[packages]\ninclude = [\"{}/*/package.toml\"]\n",
            root.path().display()
        ))
        .start();
    let busy = [("probe", "busy:fetch"), ("package", "busy"), ("team", "b")];
    let quiet = [("probe", "quiet:idle"), ("package", "quiet"), ("team", "q")];
    let with = |base: &[(&'static str, &'static str)], extra: (&'static str, &'static str)| {
        let mut l = base.to_vec();
        l.push(extra);
        l
    };
    let s = e.wait_for("two runs of each", WAIT, |s| {
        s.get(
            "wasmprobe_probe_host_calls_total",
            &with(&busy, ("capability", "http")),
        )
        .unwrap_or(0.0)
            >= 2.0
            && s.get(
                "wasmprobe_probe_runs_total",
                &with(&quiet, ("result", "success")),
            )
            .unwrap_or(0.0)
                >= 2.0
    });
    let received = s.value(
        "wasmprobe_probe_network_bytes_total",
        &with(&busy, ("direction", "received")),
    );
    let sent = s.value(
        "wasmprobe_probe_network_bytes_total",
        &with(&busy, ("direction", "sent")),
    );
    println!("busy:fetch sent {sent} B, received {received} B");
    assert!(received > 0.0 && sent > 0.0, "{}", s.text);
    assert_eq!(
        s.value(
            "wasmprobe_probe_network_bytes_total",
            &with(&quiet, ("direction", "sent"))
        ),
        0.0
    );
    assert!(
        s.get(
            "wasmprobe_probe_host_calls_total",
            &with(&quiet, ("capability", "http"))
        )
        .is_none()
    );
    assert!(s.value("wasmprobe_probe_memory_peak_bytes", &busy) > 0.0);
    assert!(s.value("wasmprobe_probe_memory_peak_bytes", &quiet) > 0.0);
    let cpu = s.value("wasmprobe_probe_cpu_seconds_total", &busy);
    println!("busy:fetch took {:.3} ms of CPU", cpu * 1000.0);
    assert!(cpu > 0.0, "{}", s.text);
    crate::harness::promtool_check(&s.text);
    let _ = Scrape::parse(&s.text);
}
