//! Web security for the endpoint: TLS (optionally with client
//! certificates) and HTTP basic auth, from a TOML file in the spirit of
//! Prometheus exporter-toolkit's web config.
//!
//! ```toml
//! [tls_server_config]
//! cert_file = "tls.crt"                  # relative to this file
//! key_file = "tls.key"                   # PKCS#8, PKCS#1 or SEC1
//! min_version = "TLS12"                  # or "TLS13"; 1.0 and 1.1 never
//! client_auth_type = "NoClientCert"      # RequireAndVerifyClientCert, VerifyClientCertIfGiven
//! client_ca_file = "ca.crt"              # with a verifying client_auth_type only
//! [basic_auth_users]
//! prometheus = "$2y$10$..."              # bcrypt hashes only
//! [unauthenticated]
//! paths = ["/healthz"]                   # exact paths served without basic auth
//! ```
//!
//! [`load`] reads and checks everything (certificates, key, CA, hashes) so
//! a broken file is refused before anything changes. [`WebState`] holds the
//! live config: the listener takes the TLS config from it at each accept
//! and the auth layer takes the users at each request, so a reload applies
//! to new connections and requests while open ones keep what they started
//! with. A reload that fails keeps the running config.
//!
//! Client certificates are checked in the TLS handshake, before any HTTP
//! request is seen, so they apply to every path, `[unauthenticated] paths`
//! included: those paths only skip basic auth. Turning TLS on or off needs
//! a restart (the listener is built around it); changing certificates,
//! client auth or users does not. The certificate and key files are also
//! watched on their own (see [`tls`]), so a renewed certificate is served
//! without any reload.

mod auth;
mod config;
mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;

use self::auth::BasicAuth;
use self::config::RawWebConfig;

/// Why a web config was refused. Each message names the file and, where
/// there is one, the key and the file it points to.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("web config {path}: cannot read: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("web config {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    /// A file the config names (certificate, key, CA) is unreadable or
    /// unusable.
    #[error("web config {path}: {key} {file}: {problem}")]
    File {
        path: PathBuf,
        key: &'static str,
        file: PathBuf,
        problem: String,
    },
    #[error("web config {path}: {key}: {problem}")]
    Invalid {
        path: PathBuf,
        key: String,
        problem: String,
    },
    #[error("web config {path}: {what}; restart wasmprobe to apply it")]
    RestartNeeded { path: PathBuf, what: &'static str },
}

/// One loaded, fully checked web config.
pub struct WebConfig {
    tls: Option<Arc<rustls::ServerConfig>>,
    auth: Option<BasicAuth>,
}

impl std::fmt::Debug for WebConfig {
    /// Never prints hashes or keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("basic_auth_users", &self.basic_auth_users())
            .finish()
    }
}

impl WebConfig {
    /// The TLS config for a new connection, or `None` to serve plain HTTP.
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.clone()
    }

    /// How many users basic auth knows; 0 means basic auth is off.
    pub fn basic_auth_users(&self) -> usize {
        self.auth.as_ref().map_or(0, BasicAuth::users)
    }

    fn basic_auth(&self) -> Option<&BasicAuth> {
        self.auth.as_ref()
    }
}

/// Reads and checks the web config at `path`. Nothing is served from it
/// until it is handed to a [`WebState`].
///
/// This reads files and, with basic auth, computes one bcrypt hash (the
/// timing guard for unknown users): call it off the async threads.
pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| WebConfigError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    // exporter-toolkit's web config is YAML; the same keys in TOML are
    // read too, by the file's extension.
    let yaml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"));
    let parsed: Result<RawWebConfig, String> = if yaml {
        yaml_serde::from_str(&text).map_err(|e| e.to_string())
    } else {
        toml::from_str(&text).map_err(|e| e.to_string())
    };
    let raw = parsed.map_err(|message| WebConfigError::Syntax {
        path: path.to_path_buf(),
        message: message.trim_end().to_string(),
    })?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let tls = match &raw.tls_server_config {
        Some(t) => Some(tls::server_config(path, dir, t)?),
        None => None,
    };
    let auth = BasicAuth::new(path, raw.basic_auth_users, raw.unauthenticated.paths)?;
    Ok(WebConfig { tls, auth })
}

/// The live web config, swapped whole by [`WebState::reload`].
pub struct WebState {
    path: PathBuf,
    current: ArcSwap<WebConfig>,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState")
            .field("path", &self.path)
            .field("current", &*self.current.load())
            .finish()
    }
}

impl WebState {
    /// Loads `path` (see [`load`]); later reloads read the same file.
    pub fn load(path: &Path) -> Result<WebState, WebConfigError> {
        let config = load(path)?;
        Ok(WebState {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(config),
        })
    }

    /// The file this state is loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The config in force now. Holders keep the version they took, so a
    /// request that started before a reload finishes under its rules.
    pub fn current(&self) -> Arc<WebConfig> {
        self.current.load_full()
    }

    /// Re-reads the file and swaps it in, or keeps the running config and
    /// says why. Blocking (files, one bcrypt hash): run it with
    /// `spawn_blocking` from async code.
    pub fn reload(&self) -> Result<(), WebConfigError> {
        let next = load(&self.path)?;
        let running = self.current.load();
        match (running.tls.is_some(), next.tls.is_some()) {
            (false, true) => {
                return Err(WebConfigError::RestartNeeded {
                    path: self.path.clone(),
                    what: "tls_server_config was added (the listener serves plain HTTP)",
                });
            }
            (true, false) => {
                return Err(WebConfigError::RestartNeeded {
                    path: self.path.clone(),
                    what: "tls_server_config was removed (the listener serves TLS)",
                });
            }
            _ => {}
        }
        self.current.store(Arc::new(next));
        Ok(())
    }
}

/// Puts basic auth in front of every route of `router` (unknown paths
/// too, so a 404 tells nothing to a client without credentials). The
/// users are read from `web` at each request, so reloads apply at once.
pub(super) fn protect(router: Router, web: Arc<WebState>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(web, auth::require))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn self_signed(dir: &Path) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        write(dir, "tls.crt", &ck.cert.pem());
        write(dir, "tls.key", &ck.signing_key.serialize_pem());
    }

    fn err(path: &Path) -> String {
        match load(path) {
            Ok(c) => panic!("{} loaded: {c:?}", path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn an_empty_file_turns_nothing_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "web.toml", "");
        let c = load(&p).unwrap();
        assert!(c.tls().is_none());
        assert_eq!(c.basic_auth_users(), 0);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "web.toml",
            "[http_server_config]\nhttp2 = true\n",
        );
        let e = err(&p);
        assert!(
            e.starts_with(&format!("web config {}: ", p.display())),
            "{e}"
        );
        assert!(e.contains("unknown field `http_server_config`"), "{e}");

        self_signed(dir.path());
        let p = write(
            dir.path(),
            "web2.toml",
            "[tls_server_config]\ncert_file = \"tls.crt\"\nkey_file = \"tls.key\"\ncipher_suites = []\n",
        );
        assert!(
            err(&p).contains("unknown field `cipher_suites`"),
            "{}",
            err(&p)
        );
    }

    #[test]
    fn tls_versions_below_1_2_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path());
        let p = write(
            dir.path(),
            "web.toml",
            "[tls_server_config]\ncert_file = \"tls.crt\"\nkey_file = \"tls.key\"\nmin_version = \"TLS10\"\n",
        );
        assert!(err(&p).contains("unknown variant `TLS10`"), "{}", err(&p));
    }

    #[test]
    fn tls_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path());
        let p = write(
            dir.path(),
            "web.toml",
            "[tls_server_config]\ncert_file = \"tls.crt\"\nkey_file = \"tls.key\"\nmin_version = \"TLS13\"\n",
        );
        let tls = load(&p).unwrap().tls().unwrap();
        assert_eq!(tls.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn an_unreadable_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path());
        let p = write(
            dir.path(),
            "web.toml",
            "[tls_server_config]\ncert_file = \"missing.crt\"\nkey_file = \"tls.key\"\n",
        );
        let e = err(&p);
        let want = format!(
            "web config {}: tls_server_config.cert_file {}: cannot read: ",
            p.display(),
            dir.path().join("missing.crt").display()
        );
        assert!(e.starts_with(&want), "{e}\nwant: {want}");
    }

    #[test]
    fn a_certificate_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path());
        write(dir.path(), "empty.crt", "not a certificate\n");
        let p = write(
            dir.path(),
            "web.toml",
            "[tls_server_config]\ncert_file = \"empty.crt\"\nkey_file = \"tls.key\"\n",
        );
        let e = err(&p);
        assert!(e.contains("tls_server_config.cert_file"), "{e}");
        assert!(e.contains("no certificate"), "{e}");
    }

    #[test]
    fn a_key_that_does_not_match_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path());
        let other = rcgen::KeyPair::generate().unwrap();
        write(dir.path(), "other.key", &other.serialize_pem());
        let p = write(
            dir.path(),
            "web.toml",
            "[tls_server_config]\ncert_file = \"tls.crt\"\nkey_file = \"other.key\"\n",
        );
        let e = err(&p);
        assert!(e.contains("tls_server_config.key_file"), "{e}");
        assert!(e.contains("does not match"), "{e}");
    }

    #[test]
    fn verifying_client_certificates_needs_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path());
        let p = write(
            dir.path(),
            "web.toml",
            "[tls_server_config]\ncert_file = \"tls.crt\"\nkey_file = \"tls.key\"\nclient_auth_type = \"RequireAndVerifyClientCert\"\n",
        );
        let e = err(&p);
        assert!(
            e.contains("tls_server_config.client_ca_file: required when client_auth_type is RequireAndVerifyClientCert"),
            "{e}"
        );
    }

    #[test]
    fn a_ca_without_client_verification_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path());
        let p = write(
            dir.path(),
            "web.toml",
            "[tls_server_config]\ncert_file = \"tls.crt\"\nkey_file = \"tls.key\"\nclient_ca_file = \"tls.crt\"\n",
        );
        assert!(
            err(&p).contains("client_auth_type is NoClientCert"),
            "{}",
            err(&p)
        );
    }

    #[test]
    fn client_certificate_modes_load_with_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path());
        for kind in ["RequireAndVerifyClientCert", "VerifyClientCertIfGiven"] {
            let p = write(
                dir.path(),
                "web.toml",
                &format!(
                    "[tls_server_config]\ncert_file = \"tls.crt\"\nkey_file = \"tls.key\"\nclient_auth_type = \"{kind}\"\nclient_ca_file = \"tls.crt\"\n"
                ),
            );
            assert!(load(&p).unwrap().tls().is_some(), "{kind}");
        }
    }

    #[test]
    fn hashes_must_be_bcrypt() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "web.toml",
            "[basic_auth_users]\nalice = \"hunter2\"\n",
        );
        assert_eq!(
            err(&p),
            format!(
                "web config {}: basic_auth_users.alice: not a bcrypt hash",
                p.display()
            )
        );
    }

    #[test]
    fn unauthenticated_paths_start_with_a_slash() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("pw", 4).unwrap();
        let p = write(
            dir.path(),
            "web.toml",
            &format!(
                "[basic_auth_users]\nalice = \"{hash}\"\n[unauthenticated]\npaths = [\"healthz\"]\n"
            ),
        );
        assert!(err(&p).contains("unauthenticated.paths"), "{}", err(&p));
    }

    #[test]
    fn a_failed_reload_keeps_the_running_config() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("pw", 4).unwrap();
        let p = write(
            dir.path(),
            "web.toml",
            &format!("[basic_auth_users]\nalice = \"{hash}\"\n"),
        );
        let state = WebState::load(&p).unwrap();
        write(
            dir.path(),
            "web.toml",
            "[basic_auth_users]\nalice = \"x\"\n",
        );
        assert!(state.reload().is_err());
        assert_eq!(state.current().basic_auth_users(), 1);

        write(
            dir.path(),
            "web.toml",
            &format!("[basic_auth_users]\nalice = \"{hash}\"\nbob = \"{hash}\"\n"),
        );
        state.reload().unwrap();
        assert_eq!(state.current().basic_auth_users(), 2);

        self_signed(dir.path());
        write(
            dir.path(),
            "web.toml",
            "[tls_server_config]\ncert_file = \"tls.crt\"\nkey_file = \"tls.key\"\n",
        );
        let e = state.reload().unwrap_err().to_string();
        assert!(e.contains("restart wasmprobe"), "{e}");
        assert!(state.current().tls().is_none());
    }
}
