//! The tcp plugin on the tcp capability against real local servers: an
//! SMTP-like server that upgrades with STARTTLS, a banner that closes, and
//! a TLS server; each scrape parsed by promtool and the Python parser.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::harness::{Engine, Scrape, promtool_check};
use crate::targets::{self, TestPki, bind, rt};

const WAIT: Duration = Duration::from_secs(60);

/// A mail server in miniature: banner, EHLO, STARTTLS, then EHLO again
/// over TLS. Counts the sessions that reached TLS.
fn smtp(pki: &TestPki) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(targets::server_tls(pki, false)));
    let (listener, addr) = bind();
    let upgraded = Arc::new(AtomicUsize::new(0));
    let count = upgraded.clone();
    rt().spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                let _ = stream.write_all(b"220 mx.test ESMTP ready\r\n").await;
                let mut line = String::new();
                loop {
                    line.clear();
                    if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let reply: &[u8] = match line.trim_end().to_ascii_uppercase().as_str() {
                        l if l.starts_with("EHLO") => b"250-mx.test\r\n250 STARTTLS\r\n",
                        "STARTTLS" => b"220 go ahead\r\n",
                        _ => b"500 what\r\n",
                    };
                    let _ = stream.write_all(reply).await;
                    if line.trim_end().eq_ignore_ascii_case("STARTTLS") {
                        break;
                    }
                }
                let Ok(mut tls) = acceptor.accept(stream.into_inner()).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let mut tls = BufReader::new(&mut tls);
                let mut line = String::new();
                while tls.read_line(&mut line).await.unwrap_or(0) > 0 {
                    let _ = tls.write_all(b"250 mx.test over TLS\r\n").await;
                    line.clear();
                }
            });
        }
    });
    (addr, upgraded)
}

/// Writes `banner` and closes.
pub(crate) fn banner(banner: &'static [u8]) -> std::net::SocketAddr {
    let (listener, addr) = bind();
    rt().spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(banner).await;
            let _ = stream.shutdown().await;
        }
    });
    addr
}

fn probe(name: &str, target: &str, extra: &str, config: &str) -> String {
    format!(
        "[probes.{name}]\nplugin = \"tcp\"\nschedule = \"* * * * * *\"\ntarget = \"{target}\"\nallow = [\"tcp://{target}\"]\n{extra}\n[probes.{name}.config]\npreferred_ip_protocol = \"ip4\"\n{config}\n"
    )
}

#[test]
fn smtp_starttls_banners_and_tls_report_as_blackbox_does() {
    let pki = targets::pki();
    let (mail, upgraded) = smtp(&pki);
    let ssh = banner(b"SSH-2.0-OpenSSH_9.6 Debian\r\n");
    let https = targets::https(&pki);
    let e = Engine::new();
    let ca = e.file("ca.pem", &pki.ca_pem);
    let trust = format!("tls = {{ ca_file = {ca:?} }}");
    let steps = [
        ("^220 ", ""),
        ("", "EHLO prober"),
        ("^250 STARTTLS", ""),
        ("", "STARTTLS"),
    ];
    let mut smtp_steps = String::new();
    for (expect, send) in steps {
        smtp_steps.push_str("[[probes.mail.config.query_response]]\n");
        if !expect.is_empty() {
            smtp_steps.push_str(&format!("expect = {expect:?}\n"));
        }
        if !send.is_empty() {
            smtp_steps.push_str(&format!("send = {send:?}\n"));
        }
    }
    smtp_steps.push_str(
        "[[probes.mail.config.query_response]]\nexpect = \"^220 go ahead\"\nstarttls = true\n[[probes.mail.config.query_response]]\nsend = \"EHLO prober\"\n[[probes.mail.config.query_response]]\nexpect = \"^250 .*over TLS\"\n",
    );
    let e = e
        .raw(&probe("mail", &mail.to_string(), &trust, &smtp_steps))
        .raw(&probe(
            "ssh",
            &ssh.to_string(),
            "",
            "[[probes.ssh.config.query_response]]\nexpect = '^SSH-2\\.0-(\\S+)'\nlabels = [{ name = \"ssh_version\", value = \"${1}\" }]\n",
        ))
        .raw(&probe(
            "wrong",
            &ssh.to_string(),
            "",
            "[[probes.wrong.config.query_response]]\nexpect = \"^220 \"\n",
        ))
        .raw(&probe(
            "tls",
            &https.addr.to_string(),
            &trust,
            "tls = true\n",
        ))
        .start();
    let done = |s: &Scrape, p: &str| {
        s.get("probe_success", &[("probe", p)]).is_some()
            && s.get(
                "wasmprobe_probe_runs_total",
                &[("probe", p), ("result", "success")],
            )
            .unwrap_or(0.0)
                + s.get(
                    "wasmprobe_probe_runs_total",
                    &[("probe", p), ("result", "failure")],
                )
                .unwrap_or(0.0)
                >= 1.0
    };
    let s = e.wait_for("a run of each", WAIT, |s| {
        ["mail", "ssh", "wrong", "tls"].iter().all(|p| done(s, p))
    });
    let success = |p: &str| s.value("probe_success", &[("probe", p)]);
    assert_eq!(success("mail"), 1.0, "{}", s.text);
    assert!(
        upgraded.load(Ordering::SeqCst) >= 1,
        "the session reached TLS"
    );
    assert_eq!(
        s.value("probe_ssl_earliest_cert_expiry", &[("probe", "mail")]),
        pki.leaf_not_after as f64
    );
    assert_eq!(
        s.value(
            "probe_tls_version_info",
            &[("probe", "mail"), ("version", "TLS 1.3")]
        ),
        1.0
    );
    assert_eq!(success("ssh"), 1.0, "{}", s.text);
    assert_eq!(
        s.value(
            "probe_expect_info",
            &[("probe", "ssh"), ("ssh_version", "OpenSSH_9.6")]
        ),
        1.0,
        "{}",
        s.text
    );
    assert_eq!(success("wrong"), 0.0);
    assert_eq!(
        s.value("probe_failed_due_to_regex", &[("probe", "wrong")]),
        1.0
    );
    assert_eq!(success("tls"), 1.0, "{}", s.text);
    assert_eq!(
        s.value("probe_ssl_earliest_cert_expiry", &[("probe", "tls")]),
        pki.leaf_not_after as f64
    );
    assert_eq!(s.value("probe_ip_protocol", &[("probe", "tls")]), 4.0);
    assert!(
        s.value(
            "wasmprobe_probe_host_calls_total",
            &[("probe", "mail"), ("capability", "tcp")]
        ) >= 8.0
    );
    promtool_check(&s.text);
    let _ = Scrape::parse(&s.text);
}

/// A plugin's STARTTLS is refused when the server sent plaintext past its
/// go-ahead: those bytes would otherwise be read as if they came over TLS.
#[test]
fn plaintext_injected_before_starttls_is_refused() {
    let pki = targets::pki();
    let injector = banner(b"220 ready\r\n220 go ahead\r\n250 injected before TLS\r\n");
    let e = Engine::new();
    let ca = e.file("ca.pem", &pki.ca_pem);
    let e = e
        .raw(&probe(
            "inject",
            &injector.to_string(),
            &format!("tls = {{ ca_file = {ca:?} }}"),
            "[[probes.inject.config.query_response]]\nexpect = \"^220 ready\"\n[[probes.inject.config.query_response]]\nexpect = \"^220 go ahead\"\nstarttls = true\n",
        ))
        .start();
    let s = e.wait_for("a run", WAIT, |s| {
        s.get("probe_success", &[("probe", "inject")]).is_some()
    });
    assert_eq!(s.value("probe_success", &[("probe", "inject")]), 0.0);
    let status = crate::harness::get(&e.url("/"), None).body;
    assert!(
        status.contains("refusing to start TLS"),
        "the refusal is the run's message:\n{status}"
    );
}
