//! Other probers' configs turned into probes.toml (`wasmprobe import`).
//!
//! An importer reads a foreign config and returns the equivalent
//! probes.toml with a [`Report`] of everything it did not carry over, each
//! item with its line in the source: nothing is dropped silently. Lines
//! come from [`lines`], a scan of the source text, since serde-based
//! parsers keep no positions.
//!
//! The output is checked with [`crate::config::parse`] before it is
//! returned. What only the machine that runs it can decide (whether the
//! plugin directory and the TLS files named are there) comes back as
//! notes of the report; anything else refused is a bug of the importer and
//! an error. The plugins' own schemas are `wasmprobe check`'s business.
//!
//! Two things are never imported: schedules (a blackbox module is an
//! on-demand probe, and stays one) and credentials (probes.toml never holds
//! one; secrets come from `[probes.NAME.secrets]`).

pub mod blackbox;
pub mod lines;
pub mod report;

use std::path::{Path, PathBuf};

pub use report::{Finding, Kind, Report};

use crate::config::{self, ConfigError, Diagnostics};
use crate::egress::AllowRule;

/// Where the bundled plugins are installed (the container image and the
/// packages put them here): the default `[engine] plugin_dirs` of an
/// imported config.
pub const DEFAULT_PLUGIN_DIR: &str = "/usr/share/wasmprobe/plugins";

/// Errors that stop an import. Problems with single options are not
/// errors: they go into the [`Report`].
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid YAML")]
    Yaml {
        path: PathBuf,
        #[source]
        source: yaml_serde::Error,
    },
    #[error("{path}: cannot apply its `<<` merge keys")]
    Merge {
        path: PathBuf,
        #[source]
        source: yaml_serde::Error,
    },
    #[error(
        "{path} has no modules: a blackbox_exporter config is a mapping with a `modules:` key holding one module per name"
    )]
    NoModules { path: PathBuf },
    #[error("--allow {rule:?}: {reason}")]
    Allow { rule: String, reason: String },
    #[error("--plugin-dir {0} is not valid UTF-8, which probes.toml cannot hold")]
    PluginDir(PathBuf),
    #[error("cannot write the probes as TOML (a bug of the importer, please report it)")]
    Toml(#[from] toml::ser::Error),
    #[error("the generated probes.toml is refused (a bug of the importer, please report it)")]
    Generated(#[source] Diagnostics),
}

/// How to write the imported probes.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--allow` rules: each probe gets those of the schemes its plugin
    /// speaks. Empty: every probe gets `allow = []`, which refuses every
    /// target, as an allow-list that was never written should.
    pub allow: Vec<AllowRule>,
    /// Written as `[engine] plugin_dirs`.
    pub plugin_dir: String,
    /// Where the probes.toml goes (or would go): relative paths in it are
    /// checked from its directory.
    pub output: PathBuf,
}

impl Options {
    /// Parses the `--allow` rules; a bad one is an error naming it.
    pub fn new(
        allow: &[String],
        plugin_dir: &Path,
        output: PathBuf,
    ) -> Result<Options, ImportError> {
        let allow = allow
            .iter()
            .map(|rule| {
                AllowRule::try_from(rule.clone()).map_err(|reason| ImportError::Allow {
                    rule: rule.clone(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        let plugin_dir = plugin_dir
            .to_str()
            .ok_or_else(|| ImportError::PluginDir(plugin_dir.to_path_buf()))?
            .to_string();
        Ok(Options {
            allow,
            plugin_dir,
            output,
        })
    }
}

/// The result of an import.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The probes.toml, checked by [`config::parse`].
    pub toml: String,
    pub report: Report,
}

/// The scheme of an allow rule, lowercase (`tcp` of `tcp://10.0.0.1:22`).
fn scheme_of(rule: &AllowRule) -> String {
    let text = rule.to_string();
    text.split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default()
}

/// What the machine decides about a generated config: a problem and the
/// probe it is about (`None`: the config as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
struct MachineNote {
    probe: Option<String>,
    message: String,
}

/// Checks generated `text` as if read from `output`. Problems only this
/// machine decides come back as notes; any other is an error.
fn validate(text: &str, output: &Path) -> Result<Vec<MachineNote>, ImportError> {
    let diagnostics = match config::parse(output, text.to_string()) {
        Ok(_) => return Ok(Vec::new()),
        Err(ConfigError::Invalid(d)) => d.0,
        // `parse` reads no file itself; should that change, a read failure
        // is the machine's business too.
        Err(e @ ConfigError::Read { .. }) => {
            return Ok(vec![MachineNote {
                probe: None,
                message: e.to_string(),
            }]);
        }
    };
    let plugin_dir_missing = diagnostics
        .iter()
        .any(|d| d.location.key.starts_with("engine.plugin_dirs"));
    let mut notes = Vec::new();
    let mut bugs = Vec::new();
    for d in diagnostics {
        let key = d.location.key.as_str();
        if key.starts_with("engine.plugin_dirs") {
            notes.push(MachineNote {
                probe: None,
                message: format!(
                    "{}: the probes need the bundled plugins there (--plugin-dir DIR names another directory)",
                    d.message
                ),
            });
            continue;
        }
        let probe = key.strip_prefix("probes.").and_then(|rest| {
            [".plugin", ".tls.ca_file", ".tls.cert_file", ".tls.key_file"]
                .iter()
                .find_map(|suffix| rest.strip_suffix(suffix).map(|p| (p, *suffix)))
        });
        match probe {
            // One note about the directory says it for every probe.
            Some((_, ".plugin")) if plugin_dir_missing => {}
            Some((name, _)) => notes.push(MachineNote {
                probe: Some(name.to_string()),
                message: d.message,
            }),
            None => bugs.push(d),
        }
    }
    if bugs.is_empty() {
        Ok(notes)
    } else {
        Err(ImportError::Generated(Diagnostics(bugs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_rules_are_checked_and_named() {
        let ok = Options::new(
            &["tcp://10.0.0.0/8:*".into(), "ICMP://10.0.0.1".into()],
            Path::new("/plugins"),
            PathBuf::from("probes.toml"),
        );
        let schemes: Vec<String> = ok
            .map(|o| o.allow.iter().map(scheme_of).collect())
            .unwrap_or_default();
        assert_eq!(schemes, ["tcp", "icmp"]);
        let err = Options::new(&["10.0.0.1".into()], Path::new("/p"), PathBuf::new())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("--allow \"10.0.0.1\": allow entry"),
            "{err}"
        );
    }

    #[test]
    fn what_the_machine_decides_becomes_notes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let output = dir.path().join("probes.toml");
        let text = "[engine]\nplugin_dirs = [\"/nonexistent/plugins\"]\n\n[probes.a]\nplugin = \"http-health\"\nallow = []\n[probes.a.tls]\nca_file = \"missing-ca.pem\"\n";
        let notes = validate(text, &output).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert_eq!(notes[0].probe, None);
        assert!(
            notes[0].message.contains("/nonexistent/plugins"),
            "{notes:?}"
        );
        assert_eq!(notes[1].probe.as_deref(), Some("a"));
        assert!(notes[1].message.contains("missing-ca.pem"), "{notes:?}");
    }

    #[test]
    fn anything_else_refused_is_a_bug() {
        let text =
            "[engine]\nplugin_dirs = []\n[probes.a]\nplugin = \"http-health\"\ntimeout = \"0s\"\n";
        let err = validate(text, Path::new("probes.toml")).err();
        assert!(
            matches!(&err, Some(ImportError::Generated(d)) if d.0.iter().any(|d| d.location.key == "probes.a.timeout")),
            "{err:?}"
        );
    }
}
