//! `secrets`: credentials named in a probe's `secrets` table, read from an
//! environment variable or a file at the moment the plugin asks (so a
//! rotated file is picked up), never from probes.toml itself.
//!
//! Every value a run reads is remembered in the run's store; the host
//! redacts it from that run's log lines, message and label values, so a
//! credential cannot reach the log or `/metrics` through the plugin's
//! output. A missing variable or file is `none`: the plugin reports itself
//! unconfigured instead of failing the engine.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use crate::bindings::wasmprobe::plugin::secrets::Host;
use crate::runtime::store::RunState;

/// Largest secret read from a file.
pub const MAX_SECRET: u64 = 64 << 10;
/// Shorter values are not redacted: they would blank out ordinary text.
const MIN_REDACTED: usize = 4;
/// What replaces a secret in output.
pub const REDACTED: &str = "[redacted]";

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

impl SecretSource {
    /// The value now, with a trailing newline removed.
    pub fn read(&self) -> Option<String> {
        let value = match self {
            SecretSource::Env(var) => std::env::var(var).ok()?,
            SecretSource::File(path) => {
                let mut s = String::new();
                std::fs::File::open(path)
                    .ok()?
                    .take(MAX_SECRET)
                    .read_to_string(&mut s)
                    .ok()?;
                s
            }
        };
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        (!value.is_empty()).then_some(value)
    }
}

/// The secrets one probe may read.
#[derive(Debug, Default)]
pub struct SecretsGrant {
    pub sources: BTreeMap<String, SecretSource>,
}

/// `text` with every revealed value replaced by [`REDACTED`].
pub fn redact(revealed: &[String], text: &str) -> String {
    let mut out = text.to_string();
    for secret in revealed {
        if secret.len() >= MIN_REDACTED && out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), REDACTED);
        }
    }
    out
}

impl Host for RunState {
    fn get(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        let value = self
            .secrets
            .as_ref()
            .and_then(|g| g.sources.get(&name))
            .and_then(SecretSource::read);
        if let Some(v) = &value
            && !self.revealed.contains(v)
        {
            self.revealed.push(v.clone());
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_redacted_but_short_ones_are_left() {
        let revealed = vec!["s3cr3t-token".to_string(), "ab".to_string()];
        assert_eq!(
            redact(&revealed, "auth s3cr3t-token failed (ab)"),
            "auth [redacted] failed (ab)"
        );
    }

    #[test]
    fn files_and_variables() {
        let dir = std::env::temp_dir().join(format!("wasmprobe-secret-{}", std::process::id()));
        let _ = std::fs::write(&dir, "from-file\n");
        assert_eq!(
            SecretSource::File(dir.clone()).read().as_deref(),
            Some("from-file")
        );
        let _ = std::fs::remove_file(&dir);
        assert_eq!(SecretSource::File(dir).read(), None);
        assert_eq!(
            SecretSource::Env("WASMPROBE_SURELY_UNSET_VARIABLE".into()).read(),
            None
        );
    }
}
