//! The web config file as written. Unknown keys are refused so a typo
//! (`basic_auth_user`) cannot silently leave the endpoint open; values
//! with a fixed set (TLS version, client auth mode) are enums, so serde
//! names the accepted spellings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebConfig {
    pub(super) tls_server_config: Option<RawTls>,
    /// User name → bcrypt hash.
    #[serde(default)]
    pub(super) basic_auth_users: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) unauthenticated: RawUnauthenticated,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert_file: PathBuf,
    pub(super) key_file: PathBuf,
    #[serde(default)]
    pub(super) min_version: MinVersion,
    #[serde(default)]
    pub(super) client_auth_type: ClientAuthType,
    pub(super) client_ca_file: Option<PathBuf>,
}

/// The oldest TLS version offered. TLS 1.0 and 1.1 are not spellable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(super) enum MinVersion {
    #[default]
    #[serde(rename = "TLS12")]
    Tls12,
    #[serde(rename = "TLS13")]
    Tls13,
}

/// Exporter-toolkit's names. Its modes that ask for a certificate without
/// verifying it (`RequestClientCert`, `RequireAnyClientCert`) are left
/// out: an unverified certificate proves nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(super) enum ClientAuthType {
    #[default]
    NoClientCert,
    RequireAndVerifyClientCert,
    VerifyClientCertIfGiven,
}

impl ClientAuthType {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ClientAuthType::NoClientCert => "NoClientCert",
            ClientAuthType::RequireAndVerifyClientCert => "RequireAndVerifyClientCert",
            ClientAuthType::VerifyClientCertIfGiven => "VerifyClientCertIfGiven",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUnauthenticated {
    /// Exact request paths served without basic auth.
    #[serde(default)]
    pub(super) paths: Vec<String>,
}

/// `file` as named in the web config at `dir`: relative names are relative
/// to the config file, not to the working directory, so the config and
/// its certificates can move together.
pub(super) fn relative_to(dir: &Path, file: &Path) -> PathBuf {
    if file.is_absolute() {
        file.to_path_buf()
    } else {
        dir.join(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_tls12_without_client_certificates() {
        let raw: RawWebConfig =
            toml::from_str("[tls_server_config]\ncert_file = \"a\"\nkey_file = \"b\"\n").unwrap();
        let tls = raw.tls_server_config.unwrap();
        assert_eq!(tls.min_version, MinVersion::Tls12);
        assert_eq!(tls.client_auth_type, ClientAuthType::NoClientCert);
        assert!(raw.basic_auth_users.is_empty());
        assert!(raw.unauthenticated.paths.is_empty());
    }

    #[test]
    fn files_are_relative_to_the_config() {
        assert_eq!(
            relative_to(Path::new("/etc/wasmprobe"), Path::new("tls.crt")),
            PathBuf::from("/etc/wasmprobe/tls.crt")
        );
        assert_eq!(
            relative_to(Path::new("/etc/wasmprobe"), Path::new("/certs/tls.crt")),
            PathBuf::from("/certs/tls.crt")
        );
        assert_eq!(
            relative_to(Path::new(""), Path::new("tls.crt")),
            PathBuf::from("tls.crt")
        );
    }
}
