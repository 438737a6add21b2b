//! `secrets`: credentials named in a probe's `secrets` table, read from an
//! environment variable or a file at the moment the plugin asks (so a
//! rotated file is picked up), never from probes.toml itself.
//!
//! Every value a run reads goes into the run's [`Revealed`] list, which the
//! other units and the runtime consult: the host redacts those values from
//! the run's log lines, message, label values and recordings, so a
//! credential cannot reach the log or `/metrics` through the plugin's
//! output. A missing variable or file is `none`: the plugin reports itself
//! unconfigured instead of failing the engine.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::{HasSelf, Linker};

use super::{Capability, LoadScope, RunScope, Usage};
use crate::bindings::wasmprobe::plugin::secrets::{self as wit, Host};
use crate::config::{ProbeConfig, SecretSource};

pub use crate::config::MAX_SECRET;
/// Shorter values are not redacted: they would blank out ordinary text.
const MIN_REDACTED: usize = 4;
/// What replaces a secret in output.
pub const REDACTED: &str = "[redacted]";

/// The value of `source` now, with a trailing newline removed.
pub fn read(source: &SecretSource) -> Option<String> {
    source.value()
}

/// `text` with every value in `revealed` replaced by [`REDACTED`].
pub fn redact(revealed: &[String], text: &str) -> String {
    let mut out = text.to_string();
    for secret in revealed {
        if secret.len() >= MIN_REDACTED && out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), REDACTED);
        }
    }
    out
}

/// The secret values one run has read, shared by the run's units (log
/// lines, recordings) and the runtime (message, label values).
#[derive(Debug, Clone, Default)]
pub struct Revealed(Arc<Mutex<Vec<String>>>);

impl Revealed {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn add(&self, value: &str) {
        let mut list = self.lock();
        if !list.iter().any(|v| v == value) {
            list.push(value.to_string());
        }
    }

    /// Bytes of the longest value read so far.
    pub fn longest(&self) -> usize {
        self.lock().iter().map(String::len).max().unwrap_or(0)
    }

    /// The values read so far.
    pub fn values(&self) -> Vec<String> {
        self.lock().clone()
    }

    /// `text` with the values read so far redacted.
    pub fn redact(&self, text: &str) -> String {
        let list = self.lock();
        if list.is_empty() {
            return text.to_string();
        }
        redact(&list, text)
    }
}

/// The secrets one probe may read, by the name the plugin asks for.
#[derive(Debug, Default)]
pub struct SecretsGrant {
    pub sources: BTreeMap<String, SecretSource>,
}

/// The `secrets` unit.
#[derive(Debug)]
pub struct Secrets;

/// One run's `secrets`.
#[derive(Debug)]
pub struct SecretsContext {
    grant: Option<Arc<SecretsGrant>>,
    revealed: Revealed,
    usage: Arc<Usage>,
}

impl Capability for Secrets {
    const NAME: &'static str = "secrets";
    type Grant = SecretsGrant;
    type Context = SecretsContext;

    fn grant(probe: &ProbeConfig, _: &mut LoadScope<'_>) -> Result<SecretsGrant, String> {
        Ok(SecretsGrant {
            sources: probe.secrets.clone(),
        })
    }

    fn context(grant: Option<&Arc<SecretsGrant>>, run: &RunScope) -> SecretsContext {
        SecretsContext {
            grant: grant.cloned(),
            revealed: run.revealed.clone(),
            usage: run.usage.clone(),
        }
    }

    fn link<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut SecretsContext,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HasSelf<SecretsContext>>(linker, get)
    }
}

#[cfg(test)]
impl SecretsContext {
    /// A context whose only secret, `s`, has `value`, read from a file in
    /// `dir`: each test owns its directory, so tests running side by side
    /// in one process never read each other's value, and nothing is left
    /// behind in the system's temporary directory.
    pub(crate) fn for_test(dir: &std::path::Path, value: &str, revealed: Revealed) -> Self {
        let path = dir.join("secret");
        let _ = std::fs::write(&path, value);
        SecretsContext {
            grant: Some(Arc::new(SecretsGrant {
                sources: [("s".to_string(), SecretSource::File(path))].into(),
            })),
            revealed,
            usage: Arc::default(),
        }
    }
}

impl Host for SecretsContext {
    fn get(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        self.usage.call(Secrets::NAME);
        let value = self
            .grant
            .as_ref()
            .and_then(|g| g.sources.get(&name))
            .and_then(read);
        if let Some(v) = &value {
            self.revealed.add(v);
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
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = tmp.path().join("secret");
        let _ = std::fs::write(&dir, "from-file\n");
        assert_eq!(
            read(&SecretSource::File(dir.clone())).as_deref(),
            Some("from-file")
        );
        let _ = std::fs::remove_file(&dir);
        assert_eq!(read(&SecretSource::File(dir)), None);
        assert_eq!(
            read(&SecretSource::Env("WASMPROBE_SURELY_UNSET_VARIABLE".into())),
            None
        );
    }

    #[test]
    fn a_context_reveals_only_granted_secrets_and_shares_what_it_read() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let revealed = Revealed::default();
        let mut ctx = SecretsContext::for_test(tmp.path(), "granted-value", revealed.clone());
        assert_eq!(
            ctx.get("s".into()).ok().flatten().as_deref(),
            Some("granted-value")
        );
        assert_eq!(ctx.get("other".into()).ok().flatten(), None);
        assert_eq!(revealed.redact("x granted-value y"), "x [redacted] y");

        let mut denied = SecretsContext {
            grant: None,
            revealed: Revealed::default(),
            usage: Arc::default(),
        };
        assert_eq!(denied.get("s".into()).ok().flatten(), None);
    }
}
