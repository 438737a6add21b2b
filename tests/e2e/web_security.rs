//! The endpoint behind TLS, client certificates and basic auth, checked
//! with curl and openssl as an operator's tools would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::harness::{Engine, Running};

/// A CA with a server leaf for 127.0.0.1 and a client leaf.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn fail(e: rcgen::Error) -> ! {
    panic!("rcgen: {e}")
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| fail(e));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, name);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap_or_else(|e| fail(e));
    let cert = ca.self_signed(&key).unwrap_or_else(|e| fail(e));
    (cert.pem(), Issuer::new(ca, key))
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .unwrap_or_else(|e| fail(e));
    p.distinguished_name.push(DnType::CommonName, names[0]);
    p.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap_or_else(|e| fail(e));
    let cert = p.signed_by(&key, issuer).unwrap_or_else(|e| fail(e));
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let (ca, issuer) = new_ca("wasmprobe web test CA");
    Pki {
        ca,
        server: leaf(&issuer, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth),
        client: leaf(
            &issuer,
            &["prometheus"],
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
    p
}

/// `curl` against the engine: (HTTP status or 0, curl's exit code).
fn curl(url: &str, args: &[&str]) -> (u16, i32) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("curl: {e} (install curl)"));
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (code, out.status.code().unwrap_or(-1))
}

fn https(e: &Running, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", e.addr.port())
}

#[test]
fn tls_and_client_certificates_guard_every_endpoint() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let pki = pki();
    let ca = write(d, "ca.crt", &pki.ca);
    write(d, "tls.crt", &pki.server.0);
    write(d, "tls.key", &pki.server.1);
    let cert = write(d, "client.crt", &pki.client.0);
    let key = write(d, "client.key", &pki.client.1);
    let (_, rogue_issuer) = new_ca("someone else's CA");
    let rogue = leaf(
        &rogue_issuer,
        &["intruder"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let rogue_cert = write(d, "rogue.crt", &rogue.0);
    let rogue_key = write(d, "rogue.key", &rogue.1);
    let web = write(
        d,
        "web.toml",
        "[tls_server_config]\ncert_file = \"tls.crt\"\nkey_file = \"tls.key\"\nclient_auth_type = \"RequireAndVerifyClientCert\"\nclient_ca_file = \"ca.crt\"\n",
    );
    let e = Engine::new()
        .arg("--web-config")
        .arg(&web.to_string_lossy())
        .start();
    let (ca, cert, key) = (
        ca.to_string_lossy().into_owned(),
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    );
    let with_cert = ["--cacert", &ca, "--cert", &cert, "--key", &key];

    for path in ["/metrics", "/healthz", "/readyz", "/"] {
        assert_eq!(curl(&https(&e, path), &with_cert).0, 200, "{path}");
    }
    // TLS 1.2 alone is accepted too.
    let mut tls12 = with_cert.to_vec();
    tls12.extend(["--tls-max", "1.2"]);
    assert_eq!(curl(&https(&e, "/metrics"), &tls12).0, 200);

    // No client certificate, or one from another CA: no HTTP at all.
    let (code, exit) = curl(&https(&e, "/metrics"), &["--cacert", &ca]);
    assert_eq!(
        code, 0,
        "served without a client certificate (curl exit {exit})"
    );
    let (code, _) = curl(
        &https(&e, "/healthz"),
        &[
            "--cacert",
            &ca,
            "--cert",
            &rogue_cert.to_string_lossy(),
            "--key",
            &rogue_key.to_string_lossy(),
        ],
    );
    assert_eq!(code, 0, "served a client with a certificate of another CA");
    // Plain HTTP on the TLS port gets no answer.
    assert_eq!(curl(&format!("http://{}/metrics", e.addr), &[]).0, 0);

    // TLS 1.1 is refused in the handshake, where the same client with
    // TLS 1.2 gets through.
    let s_client = |version: &str| {
        let out = Command::new("openssl")
            .args([
                "s_client",
                version,
                "-cipher",
                "DEFAULT@SECLEVEL=0",
                "-connect",
            ])
            .arg(format!("127.0.0.1:{}", e.addr.port()))
            .args(["-CAfile", &ca, "-cert", &cert, "-key", &key])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|err| panic!("openssl: {err} (install openssl)"));
        let said = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        (out.status.success(), said)
    };
    let (ok12, said12) = s_client("-tls1_2");
    assert!(ok12 && said12.contains("Protocol  : TLSv1.2"), "{said12}");
    let (ok11, said) = s_client("-tls1_1");
    assert!(!ok11, "TLS 1.1 handshake succeeded:\n{said}");
    assert!(said.contains("alert"), "expected a TLS alert:\n{said}");
    println!(
        "TLS 1.1 client: {}",
        said.lines()
            .find(|l| l.contains("alert"))
            .unwrap_or("refused")
    );
}

fn hash(password: &str) -> String {
    bcrypt::hash(password, 10).unwrap_or_else(|e| panic!("bcrypt: {e}"))
}

fn median_ms(mut f: impl FnMut() -> u16, expect: u16) -> f64 {
    let mut times: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(f(), expect);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[test]
fn basic_auth_admits_the_right_password_and_keeps_its_config_on_a_bad_reload() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let pki = pki();
    let ca = write(d, "ca.crt", &pki.ca).to_string_lossy().into_owned();
    write(d, "tls.crt", &pki.server.0);
    write(d, "tls.key", &pki.server.1);
    let tls = "[tls_server_config]\ncert_file = \"tls.crt\"\nkey_file = \"tls.key\"\n";
    let good = format!(
        "{tls}[basic_auth_users]\nalice = \"{}\"\n[unauthenticated]\npaths = [\"/healthz\"]\n",
        hash("wonderland")
    );
    let web = write(d, "web.toml", &good);
    let e = Engine::new()
        .arg("--web-config")
        .arg(&web.to_string_lossy())
        .start();
    let metrics = https(&e, "/metrics");
    let as_user = |user: &str| curl(&metrics, &["--cacert", &ca, "-u", user]).0;

    assert_eq!(as_user("alice:wonderland"), 200);
    assert_eq!(as_user("alice:looking-glass"), 401);
    assert_eq!(as_user("mallory:wonderland"), 401);
    assert_eq!(curl(&metrics, &["--cacert", &ca]).0, 401);
    assert_eq!(
        curl(&https(&e, "/-/reload"), &["--cacert", &ca, "-X", "POST"]).0,
        401
    );
    assert_eq!(curl(&https(&e, "/healthz"), &["--cacert", &ca]).0, 200);

    // The same work for an unknown user as for a wrong password.
    let wrong = median_ms(|| as_user("alice:looking-glass"), 401);
    let unknown = median_ms(|| as_user("mallory:wonderland"), 401);
    let right = median_ms(|| as_user("alice:wonderland"), 200);
    println!(
        "basic auth, median of 7: wrong password {wrong:.1} ms, unknown user {unknown:.1} ms, right (cached) {right:.1} ms"
    );

    // A broken web config on SIGHUP: refused, the running one stays.
    write(
        d,
        "web.toml",
        &format!("{tls}[basic_auth_users]\nbob = \"not-a-hash\"\n"),
    );
    e.signal("HUP");
    wait_log(&e, "web config reload refused");
    assert_eq!(as_user("alice:wonderland"), 200);
    assert_eq!(as_user("bob:anything"), 401);

    // A good one applies.
    let with_bob = good.replace(
        "[unauthenticated]",
        &format!("bob = \"{}\"\n[unauthenticated]", hash("builder")),
    );
    write(d, "web.toml", &with_bob);
    e.signal("HUP");
    wait_log(&e, "web config reloaded");
    assert_eq!(as_user("bob:builder"), 200);
    assert_eq!(as_user("alice:wonderland"), 200);

    // A broken web config at start: exit 2, naming the file and key.
    let broken = write(d, "broken.toml", "[basic_auth_users]\neve = \"plain\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
        .args(["run", "--listen", "127.0.0.1:0", "--web-config"])
        .arg(&broken)
        .args(["--config"])
        .arg(e_config(d))
        .output()
        .unwrap_or_else(|err| panic!("{err}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("broken.toml") && stderr.contains("eve"),
        "{stderr}"
    );
}

/// A minimal probes file for a start that must fail before it matters.
fn e_config(d: &Path) -> PathBuf {
    write(d, "probes.toml", "[engine]\nplugin_dirs = []\n")
}

fn wait_log(e: &Running, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !e.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            e.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// exporter-toolkit's web config as it is: a YAML file (`--web.config.file`,
/// blackbox_exporter's spelling) with TLS and bcrypt basic-auth users; an
/// exporter-toolkit key the engine does not implement is refused by name
/// and line, never ignored.
#[test]
fn an_exporter_toolkit_yaml_web_config_is_read_as_it_is() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let pki = pki();
    let ca = write(d, "ca.crt", &pki.ca).to_string_lossy().into_owned();
    write(d, "tls.crt", &pki.server.0);
    write(d, "tls.key", &pki.server.1);
    let web = write(
        d,
        "web-config.yml",
        &format!(
            "# As exporter-toolkit documents it.\ntls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  min_version: TLS12\nbasic_auth_users:\n  alice: {}\n",
            hash("wonderland")
        ),
    );
    let e = Engine::new()
        .arg(&format!("--web.config.file={}", web.display()))
        .start();
    let metrics = https(&e, "/metrics");
    assert_eq!(
        curl(&metrics, &["--cacert", &ca, "-u", "alice:wonderland"]).0,
        200
    );
    assert_eq!(
        curl(&metrics, &["--cacert", &ca, "-u", "alice:nope"]).0,
        401
    );
    assert_eq!(curl(&metrics, &["--cacert", &ca]).0, 401);

    let unsupported = write(
        d,
        "unsupported.yml",
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nhttp_server_config:\n  http2: false\n",
    );
    write(d, "probes.toml", "[engine]\nplugin_dirs = []\n");
    let out = Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
        .args(["run", "--listen", "127.0.0.1:0", "--web.config.file"])
        .arg(&unsupported)
        .arg("--config")
        .arg(d.join("probes.toml"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("unsupported.yml")
            && stderr.contains("http_server_config")
            && stderr.contains("line 4"),
        "{stderr}"
    );
}
