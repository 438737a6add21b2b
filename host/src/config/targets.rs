//! A probe's many targets: listed in `targets = [...]` or discovered from
//! Prometheus `file_sd` files (JSON or YAML: a list of groups, each with
//! `targets` and `labels`). Each target is its own run and its own series,
//! told apart by a `target` label.
//!
//! A discovery file is other people's data: a group that cannot be used
//! (a label the engine writes, a bad label name) or a target outside the
//! probe's allow-list is refused with its reason and never probed; the
//! rest of the file still counts. A file that does not parse refuses the
//! config, so a reload keeps the running targets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::values::LabelName;
use crate::egress::AllowList;

/// Largest discovery file read.
pub const MAX_FILE: u64 = 16 << 20;

/// One target a probe checks on its schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// What the plugin is handed as its target.
    pub address: String,
    /// Labels its discovery group gave it, after `target` on its series.
    pub labels: Vec<(LabelName, String)>,
    /// The file it came from; `None` for `targets = [...]`.
    pub source: Option<PathBuf>,
}

/// A discovered target that is not probed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedTarget {
    pub address: String,
    pub source: PathBuf,
    pub reason: String,
}

/// One `file_sd` group as Prometheus writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Why a discovery file cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    #[error(
        "{path}: not a file_sd list ({message}); write a list of {{\"targets\": [...], \"labels\": {{...}}}} groups"
    )]
    Format { path: PathBuf, message: String },
}

/// The groups of one file: YAML when the name says so, JSON otherwise (as
/// Prometheus reads `.json`, `.yml` and `.yaml`).
fn read_groups(path: &Path) -> Result<Vec<Group>, DiscoveryError> {
    let text = crate::files::read_regular_text(path, MAX_FILE)?;
    let yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"));
    let format = |message: String| DiscoveryError::Format {
        path: path.to_path_buf(),
        message,
    };
    if yaml {
        // An empty YAML document is an empty list.
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        yaml_serde::from_str(&text).map_err(|e| format(e.to_string()))
    } else {
        serde_json::from_str(&text).map_err(|e| format(e.to_string()))
    }
}

/// Every target of `files`, in file and group order, deduplicated (the
/// first wins), with the ones refused and why. A missing file holds no
/// targets yet (the process that writes it may not have run); a file that
/// does not parse is an error.
pub fn discover(
    files: &[PathBuf],
    allow: &AllowList,
    reserved: &[&str],
) -> Result<(Vec<TargetSpec>, Vec<RefusedTarget>), DiscoveryError> {
    let mut found: Vec<TargetSpec> = Vec::new();
    let mut refused = Vec::new();
    for file in files {
        let groups = match read_groups(file) {
            Ok(g) => g,
            Err(DiscoveryError::File(crate::files::FileError::Io { source, .. }))
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        for group in groups {
            let labels = group_labels(&group.labels, reserved);
            for address in group.targets {
                let address = address.trim().to_string();
                let refuse = |reason: String| RefusedTarget {
                    address: address.clone(),
                    source: file.clone(),
                    reason,
                };
                if address.is_empty() {
                    refused.push(refuse("an empty target".into()));
                    continue;
                }
                if let Err(reason) = &labels {
                    refused.push(refuse(reason.clone()));
                    continue;
                }
                if let Err(denied) = allow.check_target(&address) {
                    refused.push(refuse(denied.to_string()));
                    continue;
                }
                if found.iter().any(|t| t.address == address) {
                    continue;
                }
                found.push(TargetSpec {
                    address,
                    labels: labels.clone().unwrap_or_default(),
                    source: Some(file.clone()),
                });
            }
        }
    }
    Ok((found, refused))
}

/// A group's labels as series labels. Prometheus's own `__` labels (meta
/// labels, `__param_*`) configure a scrape, not a series: left out. A
/// label the engine writes, or a name Prometheus cannot store, refuses
/// the group's targets.
fn group_labels(
    labels: &BTreeMap<String, String>,
    reserved: &[&str],
) -> Result<Vec<(LabelName, String)>, String> {
    let mut out = Vec::new();
    for (name, value) in labels {
        if name.starts_with("__") {
            continue;
        }
        if reserved.contains(&name.as_str()) {
            return Err(format!(
                "its group sets label {name:?}, which the engine writes itself"
            ));
        }
        let label = LabelName::try_from(name.clone()).map_err(|e| format!("its group's {e}"))?;
        out.push((label, value.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::AllowRule;

    fn allow(rules: &[&str]) -> AllowList {
        AllowList::new(
            rules
                .iter()
                .map(|r| AllowRule::try_from(r.to_string()).unwrap_or_else(|e| panic!("{e}")))
                .collect(),
        )
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    }

    #[test]
    fn json_and_yaml_groups_give_targets_with_their_labels() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let json = write(
            dir.path(),
            "a.json",
            r#"[{"targets": ["http://127.0.0.1:1/a", "http://127.0.0.1:1/b"], "labels": {"env": "prod", "__meta_x": "y"}}]"#,
        );
        let yaml = write(
            dir.path(),
            "b.yml",
            "- targets: ['http://127.0.0.1:1/c', 'http://127.0.0.1:1/a']\n  labels:\n    env: dev\n",
        );
        let (found, refused) = discover(
            &[json.clone(), yaml.clone()],
            &allow(&["http://127.0.0.1:1"]),
            &["probe", "target"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(refused.is_empty(), "{refused:?}");
        let got: Vec<(&str, Vec<(&str, &str)>)> = found
            .iter()
            .map(|t| {
                (
                    t.address.as_str(),
                    t.labels
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect(),
                )
            })
            .collect();
        // The first mention of /a (prod) wins; meta labels are left out.
        assert_eq!(
            got,
            vec![
                ("http://127.0.0.1:1/a", vec![("env", "prod")]),
                ("http://127.0.0.1:1/b", vec![("env", "prod")]),
                ("http://127.0.0.1:1/c", vec![("env", "dev")]),
            ]
        );
        assert_eq!(found[2].source.as_deref(), Some(yaml.as_path()));
    }

    #[test]
    fn targets_outside_the_allow_list_or_with_engine_labels_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = write(
            dir.path(),
            "t.json",
            r#"[{"targets": ["http://127.0.0.1:1/", "http://127.0.0.2:1/"]},
                {"targets": ["http://127.0.0.1:1/x"], "labels": {"probe": "spoofed"}},
                {"targets": ["http://127.0.0.1:1/y"], "labels": {"bad-name": "v"}}]"#,
        );
        let (found, refused) = discover(&[file], &allow(&["http://127.0.0.1:1"]), &["probe"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found.len(), 1);
        let reasons: Vec<(&str, &str)> = refused
            .iter()
            .map(|r| (r.address.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].0 == "http://127.0.0.2:1/" && reasons[0].1.contains("allow"));
        assert!(reasons[1].1.contains("\"probe\""), "{reasons:?}");
        assert!(reasons[2].1.contains("bad-name"), "{reasons:?}");
    }

    #[test]
    fn a_missing_file_is_empty_and_a_broken_one_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (found, _) = discover(&[dir.path().join("later.json")], &allow(&[]), &[])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(found.is_empty());
        let broken = write(dir.path(), "broken.json", r#"{"targets": "x"}"#);
        let err = discover(std::slice::from_ref(&broken), &allow(&[]), &[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(&broken.display().to_string()), "{err}");
        assert!(err.contains("file_sd"), "{err}");
    }
}
