//! The TLS side of the web config: the rustls server config (versions,
//! client certificate verification, ALPN) and a certificate resolver that
//! follows the certificate and key files.
//!
//! Certificates are renewed in place (cert-manager, certbot, a mounted
//! secret), usually without anyone sending SIGHUP, so the resolver checks
//! the files' modification times during handshakes, at most once per
//! second, and loads the new pair when they change. A pair that does not
//! load (half written, key and certificate from different renewals) is
//! logged and the previous one is served until the files change again.
//!
//! Files are read by [`crate::tls_files`], as a probe's client certificate
//! is.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use super::WebConfigError;
use super::config::{ClientAuthType, MinVersion, RawTls, relative_to};
use crate::tls_files::{self, PairFile, provider, read_certs};

/// How often, at most, the resolver looks at the files' modification times.
const CHECK_EVERY: Duration = Duration::from_secs(1);

const CERT_KEY: &str = "tls_server_config.cert_file";
const KEY_KEY: &str = "tls_server_config.key_file";
const CA_KEY: &str = "tls_server_config.client_ca_file";

/// Builds the server config for `tls` from the web config at `path`
/// (whose directory is `dir`), reading every file it names.
pub(super) fn server_config(
    path: &Path,
    dir: &Path,
    tls: &RawTls,
) -> Result<Arc<ServerConfig>, WebConfigError> {
    let provider = provider();
    let cert_file = relative_to(dir, &tls.cert_file);
    let key_file = relative_to(dir, &tls.key_file);
    let resolver = ReloadingCert::load(cert_file, key_file, provider.clone(), CHECK_EVERY)
        .map_err(|e| e.in_config(path))?;
    let verifier = client_verifier(path, dir, tls, &provider)?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = match tls.min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| WebConfigError::Invalid {
            path: path.to_path_buf(),
            key: "tls_server_config.min_version".into(),
            problem: e.to_string(),
        })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(resolver));
    // The server speaks HTTP/1.1 only; saying so lets a client that offers
    // h2 fall back instead of failing after the handshake.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client certificate policy: none, or verified against the CA file
/// (required, or only when the client sends one).
fn client_verifier(
    path: &Path,
    dir: &Path,
    tls: &RawTls,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, WebConfigError> {
    let invalid = |problem: String| WebConfigError::Invalid {
        path: path.to_path_buf(),
        key: CA_KEY.into(),
        problem,
    };
    let ca_file = match (tls.client_auth_type, &tls.client_ca_file) {
        (ClientAuthType::NoClientCert, None) => return Ok(WebPkiClientVerifier::no_client_auth()),
        // Refused rather than ignored: whoever wrote it expects clients to
        // be checked, and they would not be.
        (ClientAuthType::NoClientCert, Some(_)) => {
            return Err(invalid(
                "set, but client_auth_type is NoClientCert, so client certificates would not be \
                 checked; set client_auth_type = \"RequireAndVerifyClientCert\" or remove \
                 client_ca_file"
                    .into(),
            ));
        }
        (mode, None) => {
            return Err(invalid(format!(
                "required when client_auth_type is {}",
                mode.as_str()
            )));
        }
        (_, Some(f)) => relative_to(dir, f),
    };
    let file_error = |problem: String| WebConfigError::File {
        path: path.to_path_buf(),
        key: CA_KEY,
        file: ca_file.clone(),
        problem,
    };
    let certs = read_certs(&ca_file).map_err(file_error)?;
    let mut roots = RootCertStore::empty();
    for (index, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| file_error(format!("certificate {index} is not a usable CA: {e}")))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = match tls.client_auth_type {
        ClientAuthType::VerifyClientCertIfGiven => builder.allow_unauthenticated(),
        _ => builder,
    };
    builder
        .build()
        .map_err(|e| file_error(format!("cannot verify client certificates with it: {e}")))
}

/// A certificate or key file that did not load, with which one it was.
#[derive(Debug)]
pub(super) struct PairError {
    key: &'static str,
    file: PathBuf,
    problem: String,
}

impl std::fmt::Display for PairError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.key, self.file.display(), self.problem)
    }
}

impl PairError {
    fn in_config(self, path: &Path) -> WebConfigError {
        WebConfigError::File {
            path: path.to_path_buf(),
            key: self.key,
            file: self.file,
            problem: self.problem,
        }
    }
}

/// Reads a certificate chain and its private key and checks they belong
/// together, naming the setting and file of any problem.
fn load_pair(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, PairError> {
    tls_files::load_pair(cert_file, key_file, provider).map_err(|(which, problem)| match which {
        PairFile::Cert => PairError {
            key: CERT_KEY,
            file: cert_file.to_path_buf(),
            problem,
        },
        PairFile::Key => PairError {
            key: KEY_KEY,
            file: key_file.to_path_buf(),
            problem,
        },
    })
}

/// Modification times of the certificate and key files; `None` for a file
/// that cannot be stat'ed (mid-rename), which differs from any real time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    cert: Option<SystemTime>,
    key: Option<SystemTime>,
}

impl Stamp {
    fn of(cert_file: &Path, key_file: &Path) -> Stamp {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Stamp {
            cert: mtime(cert_file),
            key: mtime(key_file),
        }
    }
}

/// Serves the last good certificate and reloads it when its files change.
pub(super) struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    check_every: Duration,
    state: Mutex<Served>,
}

struct Served {
    pair: Arc<CertifiedKey>,
    /// The files' stamp when last tried, good or not: a broken pair is
    /// reported once, not at every check, and retried when it changes.
    stamp: Stamp,
    checked: Instant,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    fn load(
        cert_file: PathBuf,
        key_file: PathBuf,
        provider: Arc<CryptoProvider>,
        check_every: Duration,
    ) -> Result<ReloadingCert, PairError> {
        // Stamp first: a change racing the read is seen at the next check.
        let stamp = Stamp::of(&cert_file, &key_file);
        let pair = load_pair(&cert_file, &key_file, &provider)?;
        Ok(ReloadingCert {
            cert_file,
            key_file,
            provider,
            check_every,
            state: Mutex::new(Served {
                pair: Arc::new(pair),
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// The pair to present now, reloading it first when the files changed.
    /// Runs inside the handshake, on the server's thread: at most two
    /// `stat`s a second, and a read of two small files when they changed.
    fn current(&self) -> Arc<CertifiedKey> {
        let mut served = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if served.checked.elapsed() < self.check_every {
            return served.pair.clone();
        }
        served.checked = Instant::now();
        let stamp = Stamp::of(&self.cert_file, &self.key_file);
        if stamp == served.stamp {
            return served.pair.clone();
        }
        served.stamp = stamp;
        match load_pair(&self.cert_file, &self.key_file, &self.provider) {
            Ok(pair) => {
                served.pair = Arc::new(pair);
                tracing::info!(
                    cert_file = %self.cert_file.display(),
                    key_file = %self.key_file.display(),
                    "TLS certificate reloaded"
                );
            }
            Err(e) => tracing::warn!(
                error = %e,
                "TLS certificate changed but does not load; still serving the previous one"
            ),
        }
        served.pair.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    use super::*;

    struct Pair {
        cert: String,
        key: String,
    }

    fn generate() -> Pair {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        Pair {
            cert: ck.cert.pem(),
            key: ck.signing_key.serialize_pem(),
        }
    }

    /// Writes `text` and moves the file's mtime forward by `ahead`, so a
    /// rewrite within the same clock tick still counts as a change.
    fn write(path: &Path, text: &str, ahead: u64) {
        std::fs::write(path, text).unwrap();
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(ahead))
            .unwrap();
    }

    fn leaf(pair: &CertifiedKey) -> Vec<u8> {
        pair.cert.first().unwrap().as_ref().to_vec()
    }

    fn der(pem_text: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem_text.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    #[test]
    fn a_renewed_pair_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let first = generate();
        write(&cert, &first.cert, 0);
        write(&key, &first.key, 0);
        let resolver =
            ReloadingCert::load(cert.clone(), key.clone(), provider(), Duration::ZERO).unwrap();
        assert_eq!(leaf(&resolver.current()), der(&first.cert));

        let second = generate();
        write(&cert, &second.cert, 10);
        write(&key, &second.key, 10);
        assert_eq!(leaf(&resolver.current()), der(&second.cert));

        // Only the certificate renewed so far: the key no longer matches.
        let third = generate();
        write(&cert, &third.cert, 20);
        assert_eq!(leaf(&resolver.current()), der(&second.cert));
        write(&key, &third.key, 20);
        assert_eq!(leaf(&resolver.current()), der(&third.cert));
    }

    #[test]
    fn files_are_not_looked_at_more_than_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let first = generate();
        write(&cert, &first.cert, 0);
        write(&key, &first.key, 0);
        let resolver = ReloadingCert::load(
            cert.clone(),
            key.clone(),
            provider(),
            Duration::from_secs(3600),
        )
        .unwrap();
        let second = generate();
        write(&cert, &second.cert, 10);
        write(&key, &second.key, 10);
        assert_eq!(leaf(&resolver.current()), der(&first.cert));
    }

    #[test]
    fn client_auth_modes() {
        let dir = tempfile::tempdir().unwrap();
        let ca = generate();
        write(&dir.path().join("ca.crt"), &ca.cert, 0);
        let raw = |mode: &str, ca: Option<&str>| -> RawTls {
            let ca = ca
                .map(|c| format!("client_ca_file = \"{c}\"\n"))
                .unwrap_or_default();
            toml::from_str(&format!(
                "cert_file = \"tls.crt\"\nkey_file = \"tls.key\"\nclient_auth_type = \"{mode}\"\n{ca}"
            ))
            .unwrap()
        };
        let web = dir.path().join("web.toml");
        let verifier = |tls: &RawTls| client_verifier(&web, dir.path(), tls, &provider());

        let none = verifier(&raw("NoClientCert", None)).unwrap();
        assert!(!none.offer_client_auth());

        let required = verifier(&raw("RequireAndVerifyClientCert", Some("ca.crt"))).unwrap();
        assert!(required.offer_client_auth());
        assert!(required.client_auth_mandatory());

        let optional = verifier(&raw("VerifyClientCertIfGiven", Some("ca.crt"))).unwrap();
        assert!(optional.offer_client_auth());
        assert!(!optional.client_auth_mandatory());

        let e = verifier(&raw("VerifyClientCertIfGiven", None)).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("tls_server_config.client_ca_file: required when client_auth_type is VerifyClientCertIfGiven"),
            "{e}"
        );

        let e = verifier(&raw("RequireAndVerifyClientCert", Some("nope.crt")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls_server_config.client_ca_file"), "{e}");
        assert!(e.contains("cannot read"), "{e}");
    }
}
