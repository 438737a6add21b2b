//! A probe's many targets: listed in `targets = [...]` or discovered from
//! Prometheus `file_sd` files (JSON or YAML: a list of groups, each with
//! `targets` and `labels`) or an `http_sd` URL (the same list as JSON).
//! Each target is its own run and its own series, told apart by a
//! `target` label.
//!
//! An `http_sd` answer is kept until the next good one: a refresh that
//! fails (the server down, a broken answer) keeps the last good list and
//! is counted; the engine's refresher ([`refresh_http_sd`]) asks again on
//! the probe's interval and reloads when the list changed.
//!
//! A discovery file is other people's data: a group that cannot be used
//! (a label the engine writes, a bad label name) or a target outside the
//! probe's allow-list is refused with its reason and never probed; the
//! rest of the file still counts. A file that does not parse refuses the
//! config, so a reload keeps the running targets.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde::Deserialize;

use super::values::LabelName;
use crate::egress::AllowList;
use crate::names::MAX_LABEL_VALUE;

/// Largest discovery file read.
pub const MAX_FILE: u64 = 16 << 20;

/// One target a probe checks on its schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// What the plugin is handed as its target.
    pub address: String,
    /// Labels its discovery group gave it, after `target` on its series.
    pub labels: Vec<(LabelName, String)>,
    /// The file or URL it came from; `None` for `targets = [...]`.
    pub source: Option<String>,
}

/// A discovered target that is not probed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedTarget {
    pub address: String,
    /// The file or URL that listed it.
    pub source: String,
    pub reason: String,
}

/// One `file_sd` group as Prometheus writes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
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
    #[error("http_sd {url}: {message}")]
    Http { url: String, message: String },
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
        let source = file.display().to_string();
        accept(&source, &groups, allow, reserved, &mut found, &mut refused);
    }
    Ok((found, refused))
}

/// Adds the targets of `groups` (from `source`) to `found`, or to
/// `refused` with the reason.
pub fn accept(
    source: &str,
    groups: &[Group],
    allow: &AllowList,
    reserved: &[&str],
    found: &mut Vec<TargetSpec>,
    refused: &mut Vec<RefusedTarget>,
) {
    {
        for group in groups {
            let labels = group_labels(&group.labels, reserved);
            for address in &group.targets {
                let address = address.trim().to_string();
                // A refused target is logged and shown: never whole when
                // it is huge.
                let refuse = |reason: String| RefusedTarget {
                    address: shown(&address),
                    source: source.to_string(),
                    reason,
                };
                if address.is_empty() {
                    refused.push(refuse("an empty target".into()));
                    continue;
                }
                // It becomes the `target` label of every series of its runs.
                if address.len() > MAX_LABEL_VALUE {
                    refused.push(refuse(format!(
                        "a target longer than {MAX_LABEL_VALUE} bytes (it would be a label value)"
                    )));
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
                    source: Some(source.to_string()),
                });
            }
        }
    }
}

/// `text` cut to 256 bytes (on a character boundary) with an ellipsis.
fn shown(text: &str) -> String {
    if text.len() <= 256 {
        return text.to_string();
    }
    let mut end = 256;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Largest `http_sd` answer read.
const MAX_ANSWER: u64 = 16 << 20;
/// Longest an `http_sd` request may take.
const HTTP_SD_TIMEOUT: Duration = Duration::from_secs(10);

/// What the engine knows of one `http_sd` URL.
#[derive(Debug, Clone, Default)]
pub struct HttpSdState {
    /// The last good answer.
    pub groups: Option<Arc<Vec<Group>>>,
    /// Refreshes that failed since the engine started.
    pub failures: u64,
    pub last_error: Option<String>,
}

/// Every `http_sd` URL's state, kept across reloads: the config is read
/// again on each reload, and a list must not vanish because its server
/// was down at that moment.
static HTTP_SD: LazyLock<Mutex<HashMap<String, HttpSdState>>> = LazyLock::new(Mutex::default);

fn http_sd_table() -> std::sync::MutexGuard<'static, HashMap<String, HttpSdState>> {
    HTTP_SD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The state of `url` (default when never asked).
pub fn http_sd_state(url: &str) -> HttpSdState {
    http_sd_table().get(url).cloned().unwrap_or_default()
}

/// The groups `url` answers now (blocking, bounded in time and size).
fn fetch(url: &str) -> Result<Vec<Group>, DiscoveryError> {
    let failed = |message: String| DiscoveryError::Http {
        url: url.to_string(),
        message,
    };
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(HTTP_SD_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut answer = agent
        .get(url)
        .header("Accept", "application/json")
        .call()
        .map_err(|e| failed(e.to_string()))?;
    let status = answer.status().as_u16();
    if status != 200 {
        return Err(failed(format!("answered {status}, not 200")));
    }
    let text = answer
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .map_err(|e| failed(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| failed(format!("not a list of target groups: {e}")))
}

/// Asks `url` again: a good answer replaces the kept one, a failure is
/// counted and keeps it. Whether the kept list changed.
pub fn refresh_http_sd(url: &str) -> Result<bool, DiscoveryError> {
    let result = fetch(url);
    let mut table = http_sd_table();
    let state = table.entry(url.to_string()).or_default();
    match result {
        Ok(groups) => {
            let changed = state.groups.as_deref() != Some(&groups);
            state.groups = Some(Arc::new(groups));
            state.last_error = None;
            Ok(changed)
        }
        Err(e) => {
            state.failures += 1;
            state.last_error = Some(e.to_string());
            Err(e)
        }
    }
}

/// The kept groups of `url`, asking it first when it never answered.
pub fn http_sd_groups(url: &str) -> Option<Arc<Vec<Group>>> {
    if let Some(groups) = http_sd_table().get(url).and_then(|s| s.groups.clone()) {
        return Some(groups);
    }
    let _ = refresh_http_sd(url);
    http_sd_table().get(url).and_then(|s| s.groups.clone())
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
        if value.len() > MAX_LABEL_VALUE {
            return Err(format!(
                "its group's label {name:?} is longer than {MAX_LABEL_VALUE} bytes"
            ));
        }
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
        assert_eq!(
            found[2].source.as_deref(),
            Some(yaml.display().to_string().as_str())
        );
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

    /// A discovery file written to bloat every series of its targets: a
    /// megabyte target or label value is refused, the rest still counts.
    #[test]
    fn oversized_targets_and_label_values_are_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let long_target = format!("http://127.0.0.1:1/{}", "a".repeat(1 << 20));
        let file = write(
            dir.path(),
            "t.json",
            &serde_json::json!([
                {"targets": [long_target, "http://127.0.0.1:1/ok"]},
                {"targets": ["http://127.0.0.1:1/big"], "labels": {"note": "x".repeat(2000)}}
            ])
            .to_string(),
        );
        let (found, refused) = discover(&[file], &allow(&["http://127.0.0.1:1"]), &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let kept: Vec<&str> = found.iter().map(|t| t.address.as_str()).collect();
        assert_eq!(kept, vec!["http://127.0.0.1:1/ok"]);
        let reasons: Vec<&str> = refused.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        // Logged and shown cut, not as a megabyte.
        assert!(refused[0].address.len() < 300 && refused[0].address.ends_with('…'));
        assert!(reasons[0].contains("longer than 1024 bytes"), "{reasons:?}");
        assert!(
            reasons[1].contains("\"note\" is longer than 1024 bytes"),
            "{reasons:?}"
        );
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
