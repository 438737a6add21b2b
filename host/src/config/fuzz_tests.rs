//! The package loader fuzzed as a hostile team would feed it: a valid
//! `package.toml` (and `.tar.gz`) mutated thousands of times, byte-wise and
//! token-wise, with values chosen to hurt (huge numbers, paths outside the
//! package, reserved labels, links). Whatever the input, the loader must
//! not panic or hang, a refused package must say where (its own file, a
//! line inside it), and a loaded one must stay inside everything the
//! operator set: the cap's limits and allow-list, the grant's secrets and
//! files, the reserved labels. A fixed seed keeps a failure reproducible;
//! `WASMPROBE_FUZZ_ITERATIONS` runs longer.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;
use crate::names::{ENGINE_LABELS, PACKAGE_LABELS, RESERVED_LABELS};

const SEED_PACKAGE: &str = r#"name = "team-a"
team = "a"
version = "1.0.0"
labels = { env = "prod" }

[capabilities]
allow = ["http://127.0.0.1:8080", "icmp://127.0.0.1"]

[limits]
memory = "32MiB"
timeout = "5s"
series_budget = 100

[plugins.probe]
path = "probe.wasm"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[probes.api]
plugin = "probe"
schedule = "*/5 * * * * *"
target = "http://127.0.0.1:8080/health"
labels = { service = "api" }
secrets = { token = { env = "TEAM_A_TOKEN" }, key = { file = "/run/team-a/key" } }

[probes.api.limits]
max_body = "64KiB"
max_requests = 10

[probes.api.tls]
insecure_skip_verify = false

[probes.api.config]
valid_status_codes = [200]
"#;

/// The seed with its plugin's real digest.
fn seed_package() -> String {
    use sha2::Digest;
    SEED_PACKAGE.replace(&"0".repeat(64), &hex::encode(sha2::Sha256::digest(WASM)))
}

/// The seed's plugin: its bytes only have to hash right.
const WASM: &[u8] = b"\0asm";

/// Values a hostile team would try in place of any token.
const HOSTILE: &[&str] = &[
    "\"/proc/self/environ\"",
    "\"../../../etc/shadow\"",
    "\"/dev/zero\"",
    "{ env = \"OTHER_TEAM_TOKEN\" }",
    "{ file = \"/run/other-team/token\" }",
    "18446744073709551616",
    "-1",
    "0",
    "1e309",
    "\"100EiB\"",
    "\"0s\"",
    "\"999999999h\"",
    "true",
    "[]",
    "{}",
    "\"\"",
    "\"\\u0000\"",
    "\"result\"",
    "\"probe\"",
    "\"le\"",
    "\"http://0.0.0.0/0:*\"",
    "\"http://*\"",
    "[\"http://127.0.0.0/8:*\"]",
    "\"* * * * * *\"",
    "'''\n'''",
    "[probes.x]",
    "[[probes]]",
    "insecure_skip_verify = true",
    "result = \"x\"",
    "shard = \"x\"",
    "on_demand = true",
    "memory = \"64GiB\"",
    "max_transfer = \"1TiB\"",
    "\u{202e}",
];

/// Names a mutation may drop in where a key goes.
const KEYS: &[&str] = &[
    "name",
    "team",
    "labels",
    "allow",
    "memory",
    "timeout",
    "series_budget",
    "path",
    "sha256",
    "plugin",
    "schedule",
    "target",
    "secrets",
    "env",
    "file",
    "ca_file",
    "cert_file",
    "key_file",
    "max_body",
    "max_output",
    "max_series",
    "state_bytes",
    "log_lines",
    "max_requests",
    "max_transfer",
    "max_packets",
    "probe",
    "result",
    "reason",
    "package",
];

fn mutate(rng: &mut fastrand::Rng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..rng.usize(1..=4) {
        let len = bytes.len().max(1);
        let at = rng.usize(0..len).min(bytes.len());
        match rng.u8(0..7) {
            0 => {
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= 1 << rng.u8(0..8);
                }
            }
            1 => {
                let end = (at + rng.usize(1..64)).min(bytes.len());
                bytes.drain(at..end);
            }
            2 => {
                let end = (at + rng.usize(1..128)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                let to = rng.usize(0..=bytes.len());
                bytes.splice(to..to, copy);
            }
            3 => {
                let token = HOSTILE[rng.usize(0..HOSTILE.len())];
                bytes.splice(at..at, token.bytes());
            }
            4 => {
                let line = format!("\n{} = {}\n", KEYS[rng.usize(0..KEYS.len())], {
                    HOSTILE[rng.usize(0..HOSTILE.len())]
                });
                bytes.splice(at..at, line.bytes());
            }
            5 => {
                // Replace a quoted value or a number with a hostile one.
                let s = String::from_utf8_lossy(&bytes).into_owned();
                let starts: Vec<usize> = s.match_indices(" = ").map(|(i, _)| i + 3).collect();
                if let Some(&start) = starts.get(rng.usize(0..starts.len().max(1))) {
                    let end = s[start..].find('\n').map_or(s.len(), |e| start + e);
                    let mut out = s[..start].to_string();
                    out.push_str(HOSTILE[rng.usize(0..HOSTILE.len())]);
                    out.push_str(&s[end..]);
                    bytes = out.into_bytes();
                }
            }
            _ => {
                let s = String::from_utf8_lossy(&bytes).into_owned();
                let mut lines: Vec<&str> = s.lines().collect();
                if lines.len() > 2 {
                    let (a, b) = (rng.usize(0..lines.len()), rng.usize(0..lines.len()));
                    lines.swap(a, b);
                }
                bytes = lines.join("\n").into_bytes();
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The operator's side: the package included and granted by name and path,
/// under a cap.
fn main_config(root: &Path, include: &Path) -> String {
    format!(
        r#"[engine]
cache_dir = "{cache}"

[limits]
max_body = "1MiB"

[packages]
include = ["{include}"]

[packages.cap]
allow = ["http://127.0.0.1:*", "icmp://127.0.0.1"]
memory = "64MiB"
timeout = "30s"
series_budget = 1000
max_body = "256KiB"
max_output = "1MiB"
max_series = 1000
state_bytes = "64KiB"
log_lines = 100
max_requests = 100
max_transfer = "8MiB"
max_packets = 100

[packages.grants.team-a]
path = "{package}"
env = ["TEAM_A_TOKEN"]
files = ["/run/team-a/key", "/run/team-a/ca.pem"]
"#,
        cache = root.join("cache").display(),
        include = include.display(),
        package = root.join("team-a").display(),
    )
}

/// What every outcome must hold, whatever the package said.
fn check_outcome(config: &Config, problems: &[Diagnostic], package_toml: &Path, lines: usize) {
    for p in problems {
        assert!(
            p.location.line <= lines + 1,
            "a problem points past the file: {p}"
        );
    }
    for info in &config.packages {
        if let Some(refused) = &info.refused {
            assert!(!refused.0.is_empty(), "refused without a reason");
            for d in &refused.0 {
                let file: &std::path::Path = &d.location.file;
                assert!(
                    file == package_toml || file == info.path || file.ends_with("package.toml"),
                    "a refusal points at {}: {d}",
                    file.display()
                );
                assert!(d.location.line <= lines + 1, "past the file: {d}");
            }
        }
    }
    let cap = Limits {
        max_body: 256 << 10,
        max_output: 1 << 20,
        max_series: 1000,
        state_bytes: 64 << 10,
        log_lines: 100,
        max_requests: 100,
        max_transfer: 8 << 20,
        max_packets: 100,
        memory: 64 << 20,
        timeout: std::time::Duration::from_secs(30),
    };
    for probe in config.probes.values() {
        let l = &probe.limits;
        let within = l.max_body <= cap.max_body
            && l.max_output <= cap.max_output
            && l.max_series <= cap.max_series
            && l.state_bytes <= cap.state_bytes
            && l.log_lines <= cap.log_lines
            && l.max_requests <= cap.max_requests
            && l.max_transfer <= cap.max_transfer
            && l.max_packets <= cap.max_packets
            && l.memory <= cap.memory
            && l.timeout <= cap.timeout;
        assert!(within, "{} escaped the cap: {l:?}", probe.name);
        for target in [
            "http://127.0.0.2:80/",
            "http://10.0.0.1/",
            "icmp://127.0.0.2",
        ] {
            assert!(
                probe.allow.check_target(target).is_err(),
                "{} may reach {target}",
                probe.name
            );
        }
        for source in probe.secrets.values() {
            let granted = match source {
                SecretSource::Env(v) => v == "TEAM_A_TOKEN",
                SecretSource::File(f) => {
                    f == Path::new("/run/team-a/key") || f == Path::new("/run/team-a/ca.pem")
                }
            };
            assert!(granted, "{} reads {source:?}", probe.name);
        }
        assert!(!probe.tls.insecure_skip_verify, "{} skips TLS", probe.name);
        assert!(!probe.on_demand, "{} opened itself to /probe", probe.name);
        for (name, value) in &probe.labels {
            let name = name.as_str();
            if PACKAGE_LABELS.contains(&name) {
                // Written by the engine, once, from the bound package.
                let count = probe
                    .labels
                    .iter()
                    .filter(|(n, _)| n.as_str() == name)
                    .count();
                assert_eq!(count, 1, "{} has {name} {count} times", probe.name);
                if name == "package" {
                    assert_eq!(value, "team-a", "{}", probe.name);
                }
                continue;
            }
            let reserved = RESERVED_LABELS.contains(&name) || ENGINE_LABELS.contains(&name);
            assert!(!reserved, "{} wears the engine's label {name}", probe.name);
        }
    }
}

fn iterations(default: usize) -> usize {
    std::env::var("WASMPROBE_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn a_mutated_package_toml_is_refused_or_contained() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = root.path().join("team-a");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("probe.wasm"), WASM).unwrap_or_else(|e| panic!("{e}"));
    let package_toml = dir.join("package.toml");
    let main = root.path().join("probes.toml");
    let main_text = main_config(root.path(), &package_toml);
    let seed = seed_package();
    std::fs::write(&package_toml, &seed).unwrap_or_else(|e| panic!("{e}"));
    let seeded = parse_partial(&main, main_text.clone()).map(|(c, _)| c.packages);
    let refusal = seeded
        .as_ref()
        .ok()
        .and_then(|p| p.first()?.refused.as_ref().map(ToString::to_string));
    assert_eq!(refusal, None, "the seed itself loads");
    let mut rng = fastrand::Rng::with_seed(0x5eed_0014);
    let (mut loaded, mut refused) = (0, 0);
    for _ in 0..iterations(1500) {
        let text = mutate(&mut rng, &seed);
        std::fs::write(&package_toml, &text).unwrap_or_else(|e| panic!("{e}"));
        let Ok((config, problems)) = parse_partial(&main, main_text.clone()) else {
            panic!("the operator's own file stopped parsing");
        };
        check_outcome(&config, &problems, &package_toml, text.lines().count());
        match config.packages.first() {
            Some(p) if p.refused.is_none() => loaded += 1,
            _ => refused += 1,
        }
    }
    println!("mutated package.toml: {loaded} loaded within the cap, {refused} refused");
    assert!(
        refused > 0 && loaded > 0,
        "the mutations reach both outcomes"
    );
}

/// A `.tar.gz` of the seed package.
fn archive(entries: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, body) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, *body)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for (name, to) in links {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        tar.append_link(&mut header, name, to)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let gz = tar.into_inner().unwrap_or_else(|e| panic!("{e}"));
    let mut gz = gz;
    let _ = gz.flush();
    gz.finish().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_mutated_archive_is_refused_or_contained() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path: PathBuf = root.path().join("team-a.tar.gz");
    let main = root.path().join("probes.toml");
    let main_text = main_config(root.path(), &path).replace(
        &root.path().join("team-a").display().to_string(),
        &path.display().to_string(),
    );
    let good = archive(
        &[
            ("package.toml", seed_package().as_bytes()),
            ("probe.wasm", WASM),
        ],
        &[],
    );
    let mut rng = fastrand::Rng::with_seed(0x5eed_07a9);
    for _ in 0..iterations(300) {
        let mut bytes = good.clone();
        for _ in 0..rng.usize(1..=8) {
            let at = rng.usize(0..bytes.len());
            bytes[at] = rng.u8(..);
        }
        if rng.bool() {
            bytes.truncate(rng.usize(0..bytes.len()));
        }
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
        let Ok((config, problems)) = parse_partial(&main, main_text.clone()) else {
            panic!("the operator's own file stopped parsing");
        };
        check_outcome(&config, &problems, &path, SEED_PACKAGE.lines().count());
    }
}

/// An archive whose `package.toml` or plugin is a link to a file outside
/// it (another team's secret) is refused before anything is read through
/// the link.
#[test]
fn an_archive_holding_a_link_is_refused() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let outside = root.path().join("other-team-token");
    std::fs::write(&outside, "name = \"s3cret-value\"\n").unwrap_or_else(|e| panic!("{e}"));
    let path = root.path().join("team-a.tar.gz");
    let bytes = archive(
        &[("probe.wasm", WASM)],
        &[("package.toml", &outside.display().to_string())],
    );
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
    let main = root.path().join("probes.toml");
    let text = main_config(root.path(), &path);
    let Ok((config, _)) = parse_partial(&main, text) else {
        panic!("the operator's own file stopped parsing");
    };
    let refused = config
        .packages
        .first()
        .and_then(|p| p.refused.as_ref())
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        refused.contains("not a regular file or a directory"),
        "{refused}"
    );
    assert!(!refused.contains("s3cret-value"), "{refused}");
}
