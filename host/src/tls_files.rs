//! Certificate and key files, read one way for both TLS sides: the web
//! server's own certificate and the client certificate a probe presents.
//! Problems are worded without the file's name; callers say which setting
//! and file they came from.
//!
//! The crypto provider is always `ring`, passed explicitly, never the
//! process default, so no other crate's choice can change it.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::ParsedCertificate;
use rustls::sign::{CertifiedKey, SigningKey};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which file of a certificate/key pair a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PairFile {
    Cert,
    Key,
}

/// Every certificate in a PEM file, in order; at least one.
pub(crate) fn read_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate (BEGIN CERTIFICATE) found".into());
    }
    Ok(certs)
}

/// The private key in a PEM file, as a key `provider` can sign with.
pub(crate) fn read_key(
    file: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<dyn SigningKey>, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read: {e}"))?;
    let key_der = match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(k) => k,
        Err(pem::Error::NoItemsFound) => {
            return Err("no private key (PKCS#8, PKCS#1 or SEC1 PEM block) found".into());
        }
        Err(e) => return Err(format!("not valid PEM: {e}")),
    };
    provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("unusable private key: {e}"))
}

/// A chain and its key, checked to belong together, so a mismatched pair
/// is refused when it is read and not at the first handshake.
pub(crate) fn pair(
    chain: Vec<CertificateDer<'static>>,
    key: Arc<dyn SigningKey>,
    cert_file: &Path,
) -> Result<CertifiedKey, (PairFile, String)> {
    if let Some(leaf) = chain.first() {
        ParsedCertificate::try_from(leaf).map_err(|e| {
            (
                PairFile::Cert,
                format!("first certificate is not usable: {e}"),
            )
        })?;
    }
    let pair = CertifiedKey::new(chain, key);
    match pair.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(pair)
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err((
            PairFile::Key,
            format!("does not match the certificate in {}", cert_file.display()),
        )),
        Err(e) => Err((PairFile::Cert, e.to_string())),
    }
}

/// Reads and checks a certificate chain and its key.
pub(crate) fn load_pair(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, (PairFile, String)> {
    let chain = read_certs(cert_file).map_err(|p| (PairFile::Cert, p))?;
    let key = read_key(key_file, provider).map_err(|p| (PairFile::Key, p))?;
    pair(chain, key, cert_file)
}
