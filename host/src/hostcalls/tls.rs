//! Outbound TLS for the host calls that speak it (`http`, `tcp`): trust
//! from the probe's host-side settings (webpki roots plus an optional CA
//! file; skipping verification only when the operator opted in), and the
//! facts a probe reports about the handshake even when the chain does not
//! verify.
//!
//! Verification always runs, so `verified` is true or false in every case;
//! with `insecure_skip_verify` a failure is reported but does not end the
//! connection. The presented chain is recorded by a verifier wrapper created
//! per connection, which is how a failed handshake can still report expiry.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::bindings::wasmprobe::plugin::http::{Certificate, TlsInfo};
use crate::config::{TlsMinVersion, TlsSettings};
use crate::tls_files::provider;

/// Why a probe's TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("CA file {file}: certificate {index} is not usable as a trust anchor: {source}")]
    BadAnchor {
        file: String,
        index: usize,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot build certificate verifier: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
    #[error("cannot build TLS config: {0}")]
    Config(#[from] rustls::Error),
}

/// A probe's TLS client, built once per config load.
#[derive(Debug)]
pub struct TlsClient {
    base: Arc<ClientConfig>,
    verifier: Arc<WebPkiServerVerifier>,
    insecure: bool,
    pub server_name: Option<String>,
}

impl TlsClient {
    pub fn new(settings: &TlsSettings) -> Result<TlsClient, TlsSetupError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for (index, cert) in settings.ca_certs.iter().enumerate() {
            roots
                .add(cert.clone())
                .map_err(|source| TlsSetupError::BadAnchor {
                    file: settings
                        .ca_file
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    index,
                    source,
                })?;
        }
        let provider = provider();
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()?;
        let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
            TlsMinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsMinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone());
        let base = match &settings.client_cert {
            None => builder.with_no_client_auth(),
            // Checked to belong together when the config was read.
            Some(c) => builder
                .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(Arc::clone(&c.pair)))),
        };
        Ok(TlsClient {
            base: Arc::new(base),
            verifier,
            insecure: settings.insecure_skip_verify,
            server_name: settings.server_name.clone(),
        })
    }

    /// A config for one connection offering `alpn`, with its own chain
    /// recorder.
    pub fn connection(&self, alpn: Vec<Vec<u8>>) -> (Arc<ClientConfig>, Recorder) {
        let recorder = Recorder::default();
        let mut config = (*self.base).clone();
        config.alpn_protocols = alpn;
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(RecordingVerifier {
                inner: self.verifier.clone(),
                insecure: self.insecure,
                recorder: recorder.clone(),
            }));
        (Arc::new(config), recorder)
    }
}

/// A finished handshake: the stream, its facts and how long it took.
pub struct Handshake<S> {
    pub stream: tokio_rustls::client::TlsStream<S>,
    pub info: Option<TlsInfo>,
    pub seconds: f64,
}

/// A failed handshake, with the facts of the chain when one was presented.
#[derive(Debug)]
pub struct HandshakeError {
    pub message: String,
    pub info: Option<TlsInfo>,
    pub seconds: f64,
    /// The name was not usable as a TLS server name: nothing was sent.
    pub invalid_name: bool,
}

impl TlsClient {
    /// The name to verify and send as SNI: the probe's `server_name` when
    /// the operator set one, else `default` (the target's host).
    pub fn name_for(&self, default: &str) -> String {
        self.server_name
            .clone()
            .unwrap_or_else(|| default.to_string())
    }

    /// A TLS handshake over `io` as `name`, offering `alpn`.
    pub async fn handshake<S>(
        &self,
        io: S,
        name: String,
        alpn: Vec<Vec<u8>>,
    ) -> Result<Handshake<S>, HandshakeError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let server_name = ServerName::try_from(name.clone()).map_err(|_| HandshakeError {
            message: format!("invalid TLS server name {name:?}"),
            info: None,
            seconds: 0.0,
            invalid_name: true,
        })?;
        let (config, recorder) = self.connection(alpn);
        let connector = tokio_rustls::TlsConnector::from(config);
        let started = Instant::now();
        let stream = connector.connect(server_name, io).await;
        let seconds = started.elapsed().as_secs_f64();
        match stream {
            Ok(stream) => {
                let conn = stream.get_ref().1;
                let version = conn
                    .protocol_version()
                    .map(version_name)
                    .unwrap_or_default();
                let cipher = conn
                    .negotiated_cipher_suite()
                    .map(|c| format!("{:?}", c.suite()))
                    .unwrap_or_default();
                Ok(Handshake {
                    info: recorder.info(version, cipher),
                    stream,
                    seconds,
                })
            }
            Err(e) => Err(HandshakeError {
                message: e.to_string(),
                info: recorder.info(String::new(), String::new()),
                seconds,
                invalid_name: false,
            }),
        }
    }
}

/// Trust anchors, skip-verify, server name, TLS 1.3 only, and the client
/// certificate chain with its key file: probes alike in these share one
/// client (its root store and session cache: about 26 KiB per probe).
type TlsKey = (
    Vec<Vec<u8>>,
    bool,
    Option<String>,
    bool,
    Option<(Vec<Vec<u8>>, std::path::PathBuf)>,
);

/// The TLS clients of one config load, by trust settings, shared by every
/// unit that speaks TLS (a [`super::LoadScope`] cache).
#[derive(Default)]
pub struct TlsClients(BTreeMap<TlsKey, Arc<TlsClient>>);

impl TlsClients {
    /// The client for `settings`, built on first use.
    pub fn client_for(&mut self, settings: &TlsSettings) -> Result<Arc<TlsClient>, String> {
        let key = (
            settings
                .ca_certs
                .iter()
                .map(|c| c.as_ref().to_vec())
                .collect(),
            settings.insecure_skip_verify,
            settings.server_name.clone(),
            settings.min_version == TlsMinVersion::Tls13,
            settings.client_cert.as_ref().map(|c| {
                (
                    c.pair.cert.iter().map(|d| d.as_ref().to_vec()).collect(),
                    c.key_file.clone(),
                )
            }),
        );
        if let Some(client) = self.0.get(&key) {
            return Ok(client.clone());
        }
        let client = Arc::new(TlsClient::new(settings).map_err(|e| e.to_string())?);
        self.0.insert(key, client.clone());
        Ok(client)
    }
}

/// What the verifier saw during one handshake.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Recorded>>);

#[derive(Debug, Default)]
struct Recorded {
    chain: Vec<CertificateDer<'static>>,
    verify_error: Option<String>,
}

impl Recorder {
    /// The facts of the handshake; `version` and `cipher` are empty when it
    /// did not complete.
    pub fn info(&self, version: String, cipher: String) -> Option<TlsInfo> {
        let r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if r.chain.is_empty() {
            return None;
        }
        Some(TlsInfo {
            version,
            cipher,
            chain: r.chain.iter().map(|c| certificate_facts(c)).collect(),
            verified: r.verify_error.is_none(),
            verify_error: r.verify_error.clone(),
        })
    }
}

#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    insecure: bool,
    recorder: Recorder,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let mut r = self.recorder.0.lock().unwrap_or_else(|e| e.into_inner());
        r.chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        r.verify_error = result.as_ref().err().map(ToString::to_string);
        match result {
            Err(_) if self.insecure => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Subject, issuer, names, expiry and fingerprint of one certificate; an
/// unparsable certificate still gets its fingerprint.
pub fn certificate_facts(der: &CertificateDer<'_>) -> Certificate {
    let fingerprint_sha256 = hex::encode(Sha256::digest(der.as_ref()));
    match x509_parser::parse_x509_certificate(der.as_ref()) {
        Ok((_, cert)) => {
            let mut subject_alt_names = Vec::new();
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for name in &san.value.general_names {
                    match name {
                        x509_parser::extensions::GeneralName::DNSName(d) => {
                            subject_alt_names.push(d.to_string());
                        }
                        x509_parser::extensions::GeneralName::IPAddress(ip) => {
                            let ip = match ip.len() {
                                4 => <[u8; 4]>::try_from(*ip)
                                    .map(|a| std::net::IpAddr::from(a).to_string())
                                    .ok(),
                                16 => <[u8; 16]>::try_from(*ip)
                                    .map(|a| std::net::IpAddr::from(a).to_string())
                                    .ok(),
                                _ => None,
                            };
                            subject_alt_names.extend(ip);
                        }
                        _ => {}
                    }
                }
            }
            Certificate {
                subject: cert.subject().to_string(),
                issuer: cert.issuer().to_string(),
                subject_alt_names,
                not_after: cert.validity().not_after.timestamp(),
                fingerprint_sha256,
            }
        }
        Err(_) => Certificate {
            subject: String::new(),
            issuer: String::new(),
            subject_alt_names: Vec::new(),
            not_after: 0,
            fingerprint_sha256,
        },
    }
}

/// How rustls names a protocol version, in the form blackbox_exporter's
/// `probe_tls_version_info` uses.
pub fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".into(),
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".into(),
        other => format!("{other:?}"),
    }
}
