//! What `wasmprobe test` expects of a replayed run, and how a run is
//! compared with it.
//!
//! An expectation file sits beside its tape (`tests/up.json` →
//! `tests/up.expect.toml`) and is meant to be read and edited by people:
//!
//! ```toml
//! success = true
//! message = "status 200"         # or message_contains = "200"; absent: not checked
//!
//! [[sample]]
//! name = "my_probe_status_code"
//! labels = { phase = "connect" } # absent: no labels
//! value = 200                    # or min = 0, max = 2.5; none of them: any value
//! ```
//!
//! Every sample the run emits must be expected, and every expected sample
//! must be emitted; a sample the engine rejected (unknown family, bad
//! label) fails the test with its reason.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::runtime::record::Sample;

/// One expectation file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    pub success: Option<bool>,
    /// The run's message, exactly (`""` for none).
    pub message: Option<String>,
    /// Text the run's message must contain.
    pub message_contains: Option<String>,
    #[serde(default, rename = "sample")]
    pub samples: Vec<ExpectedSample>,
}

/// One expected sample: a series and its value, a range, or any value.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectedSample {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub value: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// What a replayed run produced, as the test compares it.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub success: bool,
    pub message: Option<String>,
    pub samples: Vec<Sample>,
    /// Samples the engine refused, as `name (reason)`.
    pub rejected: Vec<String>,
}

/// Why an expectation file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ExpectationError {
    #[error(
        "{}: no expectation file; `wasmprobe test --update` writes one from this run",
        .0.display()
    )]
    Missing(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{}: sample {name}: {why}", path.display())]
    Invalid {
        path: PathBuf,
        name: String,
        why: &'static str,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The expectation file of a tape: `x.json` → `x.expect.toml`.
pub fn path_for(tape: &Path) -> PathBuf {
    let stem = tape
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    tape.with_file_name(format!("{stem}.expect.toml"))
}

impl Expectation {
    pub fn load(path: &Path) -> Result<Expectation, ExpectationError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ExpectationError::Missing(path.to_path_buf()));
            }
            Err(source) => {
                return Err(ExpectationError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let expectation: Expectation =
            toml::from_str(&text).map_err(|source| ExpectationError::Parse {
                path: path.to_path_buf(),
                source: Box::new(source),
            })?;
        for s in &expectation.samples {
            let why = if s.value.is_some() && (s.min.is_some() || s.max.is_some()) {
                Some("give `value` or a range (`min`, `max`), not both")
            } else if matches!((s.min, s.max), (Some(lo), Some(hi)) if lo > hi) {
                Some("`min` is above `max`")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ExpectationError::Invalid {
                    path: path.to_path_buf(),
                    name: s.name.clone(),
                    why,
                });
            }
        }
        Ok(expectation)
    }

    /// Every way `run` differs from this expectation, one line each, in a
    /// diff's style: `-` expected and missing, `+` emitted and not
    /// expected, `~` another value. Empty when the run passes.
    pub fn differences(&self, run: &Observed) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(want) = self.success
            && want != run.success
        {
            out.push(format!("  success: expected {want}, got {}", run.success));
        }
        let message = run.message.as_deref().unwrap_or("");
        if let Some(want) = &self.message
            && want != message
        {
            out.push(format!("  message: expected {want:?}, got {message:?}"));
        }
        if let Some(part) = &self.message_contains
            && !message.contains(part.as_str())
        {
            out.push(format!(
                "  message: expected to contain {part:?}, got {message:?}"
            ));
        }
        for rejected in &run.rejected {
            out.push(format!("! rejected sample {rejected}"));
        }

        // Values of each series, emitted and expected (a histogram series
        // may be observed several times in one run).
        let mut emitted: BTreeMap<(String, BTreeMap<String, String>), Vec<f64>> = BTreeMap::new();
        for s in &run.samples {
            emitted
                .entry((s.name.clone(), s.labels.iter().cloned().collect()))
                .or_default()
                .push(s.value);
        }
        let mut expected: BTreeMap<(String, BTreeMap<String, String>), Vec<&ExpectedSample>> =
            BTreeMap::new();
        for e in &self.samples {
            expected
                .entry((e.name.clone(), e.labels.clone()))
                .or_default()
                .push(e);
        }
        let keys: std::collections::BTreeSet<_> = emitted.keys().chain(expected.keys()).collect();
        for key in keys {
            let series = series(&key.0, &key.1);
            let mut values = emitted.get(key).cloned().unwrap_or_default();
            let wants = expected.get(key).cloned().unwrap_or_default();
            let mut unmatched = Vec::new();
            // Exact values first, so a range never takes a value an exact
            // expectation needed.
            let (exact, loose): (Vec<_>, Vec<_>) =
                wants.into_iter().partition(|w| w.value.is_some());
            for want in exact.into_iter().chain(loose) {
                match values.iter().position(|v| accepts(want, *v)) {
                    Some(i) => {
                        values.remove(i);
                    }
                    None => unmatched.push(want),
                }
            }
            // A lone mismatch of a lone value reads best as a change.
            if let ([want], [got]) = (unmatched.as_slice(), values.as_slice()) {
                out.push(format!(
                    "~ {series}: expected {}, got {}",
                    wanted(want),
                    number(*got)
                ));
                continue;
            }
            for want in unmatched {
                out.push(format!(
                    "- {series} {}  (expected, not emitted)",
                    wanted(want)
                ));
            }
            for got in values {
                out.push(format!(
                    "+ {series} {}  (emitted, not expected)",
                    number(got)
                ));
            }
        }
        out
    }

    /// The expectation a run meets exactly. `previous` keeps what a person
    /// loosened: a range (or any-value) still met by the run stays, and
    /// a message check still met stays as written. Series whose values
    /// differed between two replays (`unstable`) get `min = 0` when not
    /// negative, else any value.
    pub fn from_run(
        run: &Observed,
        previous: Option<&Expectation>,
        unstable: &[(String, Vec<(String, String)>)],
    ) -> Expectation {
        let mut kept: Vec<&ExpectedSample> = previous
            .map(|p| p.samples.iter().filter(|s| s.value.is_none()).collect())
            .unwrap_or_default();
        let mut samples = Vec::new();
        for s in &run.samples {
            let labels: BTreeMap<String, String> = s.labels.iter().cloned().collect();
            if let Some(i) = kept
                .iter()
                .position(|k| k.name == s.name && k.labels == labels && accepts(k, s.value))
            {
                samples.push(kept.remove(i).clone());
                continue;
            }
            let shaky = unstable
                .iter()
                .any(|(name, l)| *name == s.name && *l == s.labels);
            samples.push(ExpectedSample {
                name: s.name.clone(),
                labels,
                value: (!shaky).then_some(s.value),
                min: (shaky && s.value >= 0.0).then_some(0.0),
                max: None,
            });
        }
        let message = run.message.clone().unwrap_or_default();
        let (message, message_contains) = match previous {
            Some(p)
                if p.message_contains
                    .as_ref()
                    .is_some_and(|c| message.contains(c.as_str())) =>
            {
                (None, p.message_contains.clone())
            }
            Some(p) if p.message.is_none() && p.message_contains.is_none() => (None, None),
            _ => (Some(message), None),
        };
        Expectation {
            success: Some(run.success),
            message,
            message_contains,
            samples,
        }
    }

    /// The file's text: a short header, then TOML a person can edit.
    pub fn render(&self, tape: &Path) -> String {
        let mut out = String::new();
        let name = tape
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "# What `wasmprobe test` expects of the run replayed from {name}."
        );
        out.push_str(
            "# Edit freely: a value may be exact (`value = 200`), a range (`min = 0`,\n\
             # `max = 2.5`) or left out (any value). `wasmprobe test --update`\n\
             # rewrites this file from the run, keeping ranges the run still meets.\n",
        );
        if let Some(success) = self.success {
            let _ = writeln!(out, "success = {success}");
        }
        if let Some(m) = &self.message {
            let _ = writeln!(out, "message = {}", toml_string(m));
        }
        if let Some(m) = &self.message_contains {
            let _ = writeln!(out, "message_contains = {}", toml_string(m));
        }
        for s in &self.samples {
            out.push_str("\n[[sample]]\n");
            let _ = writeln!(out, "name = {}", toml_string(&s.name));
            if !s.labels.is_empty() {
                let labels: Vec<String> = s
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{} = {}", toml_key(k), toml_string(v)))
                    .collect();
                let _ = writeln!(out, "labels = {{ {} }}", labels.join(", "));
            }
            for (key, v) in [("value", s.value), ("min", s.min), ("max", s.max)] {
                if let Some(v) = v {
                    let _ = writeln!(out, "{key} = {}", toml_number(v));
                }
            }
        }
        out
    }

    pub fn save(&self, path: &Path, tape: &Path) -> Result<(), ExpectationError> {
        std::fs::write(path, self.render(tape)).map_err(|source| ExpectationError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn accepts(want: &ExpectedSample, v: f64) -> bool {
    match want.value {
        Some(w) => w == v || (w.is_nan() && v.is_nan()),
        None => want.min.is_none_or(|lo| v >= lo) && want.max.is_none_or(|hi| v <= hi),
    }
}

fn wanted(want: &ExpectedSample) -> String {
    match (want.value, want.min, want.max) {
        (Some(v), _, _) => number(v),
        (None, Some(lo), Some(hi)) => format!("{} to {}", number(lo), number(hi)),
        (None, Some(lo), None) => format!(">= {}", number(lo)),
        (None, None, Some(hi)) => format!("<= {}", number(hi)),
        (None, None, None) => "any value".to_string(),
    }
}

fn series(name: &str, labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else {
        v.to_string()
    }
}

/// A number as TOML writes it: integers without a point, `nan`, `inf`.
fn toml_number(v: f64) -> String {
    if v.is_nan() {
        "nan".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_string()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        // Rust's shortest round-trip form; TOML needs a point or exponent.
        let s = v.to_string();
        if s.contains(['.', 'e', 'E']) {
            s
        } else {
            format!("{s}.0")
        }
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        toml_string(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    fn run() -> Observed {
        Observed {
            success: true,
            message: None,
            samples: vec![
                sample("web_up", &[], 1.0),
                sample("web_seconds", &[("phase", "connect")], 0.012_5),
                sample("web_bytes", &[], 1e20),
            ],
            rejected: Vec::new(),
        }
    }

    #[test]
    fn a_written_expectation_reads_back_and_passes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("up.expect.toml");
        let e = Expectation::from_run(&run(), None, &[]);
        e.save(&path, Path::new("up.json"))
            .unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(text.contains("value = 1\n"), "{text}");
        assert!(text.contains("labels = { phase = \"connect\" }"), "{text}");
        let back = Expectation::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, e);
        assert_eq!(back.differences(&run()), Vec::<String>::new());
    }

    #[test]
    fn differences_read_like_a_diff() {
        let mut e = Expectation::from_run(&run(), None, &[]);
        e.message_contains = Some("fine".into());
        let mut other = run();
        other.success = false;
        other.message = Some("status 503".into());
        other.samples[0].value = 0.0;
        other.samples.remove(1);
        other.samples.push(sample("web_extra", &[("a", "b")], 3.0));
        other.rejected.push("web_typo (unknown_family)".into());
        let d = e.differences(&other).join("\n");
        for line in [
            "success: expected true, got false",
            "message: expected to contain \"fine\", got \"status 503\"",
            "! rejected sample web_typo (unknown_family)",
            "~ web_up{}: expected 1, got 0",
            "- web_seconds{phase=\"connect\"} 0.0125  (expected, not emitted)",
            "+ web_extra{a=\"b\"} 3  (emitted, not expected)",
        ] {
            assert!(d.contains(line), "{line:?} not in\n{d}");
        }
    }

    #[test]
    fn ranges_and_any_value_accept_what_they_say() {
        let text = r#"
            [[sample]]
            name = "web_seconds"
            labels = { phase = "connect" }
            min = 0
            max = 0.1
            [[sample]]
            name = "web_up"
            [[sample]]
            name = "web_bytes"
            min = 1
        "#;
        let e: Expectation = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            e.differences(&run()).is_empty(),
            "{:?}",
            e.differences(&run())
        );
        let mut slow = run();
        slow.samples[1].value = 0.5;
        assert_eq!(
            e.differences(&slow),
            vec!["~ web_seconds{phase=\"connect\"}: expected 0 to 0.1, got 0.5".to_string()]
        );
    }

    #[test]
    fn an_update_keeps_ranges_the_run_still_meets() {
        let mut previous = Expectation::from_run(&run(), None, &[]);
        previous.samples[1].value = None;
        previous.samples[1].min = Some(0.0);
        previous.message = None;
        previous.message_contains = None;
        let mut next = run();
        next.samples[0].value = 0.0;
        let updated = Expectation::from_run(&next, Some(&previous), &[]);
        assert_eq!(updated.samples[0].value, Some(0.0));
        assert_eq!(updated.samples[1].min, Some(0.0), "the range stays");
        assert_eq!(
            updated.message, None,
            "an unchecked message stays unchecked"
        );
    }

    #[test]
    fn unstable_series_are_written_as_ranges() {
        let unstable = vec![(
            "web_seconds".to_string(),
            vec![("phase".to_string(), "connect".to_string())],
        )];
        let e = Expectation::from_run(&run(), None, &unstable);
        assert_eq!((e.samples[1].value, e.samples[1].min), (None, Some(0.0)));
    }

    #[test]
    fn a_bad_file_is_refused_with_its_path_and_line() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("x.expect.toml");
        std::fs::write(
            &path,
            "success = true\n\n[[sample]]\nname = \"a\"\nvalue = 1\nmin = 0\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let err = Expectation::load(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("x.expect.toml") && err.contains("not both"),
            "{err}"
        );
        std::fs::write(&path, "success = true\nsucess = false\n").unwrap_or_else(|e| panic!("{e}"));
        let err = Expectation::load(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("line 2") && err.contains("sucess"), "{err}");
        let missing = Expectation::load(&dir.path().join("none.expect.toml"));
        assert!(matches!(missing, Err(ExpectationError::Missing(_))));
    }

    #[test]
    fn numbers_are_written_as_toml_reads_them() {
        for v in [
            0.0,
            1.0,
            -3.0,
            0.1,
            1e20,
            1.5e-7,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let text = format!("v = {}", toml_number(v));
            let t: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let back = t["v"].as_float().or(t["v"].as_integer().map(|i| i as f64));
            assert_eq!(back, Some(v), "{text}");
        }
        assert_eq!(
            path_for(Path::new("tests/up.json")),
            PathBuf::from("tests/up.expect.toml")
        );
    }
}
