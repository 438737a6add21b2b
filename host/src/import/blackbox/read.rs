//! Reading blackbox.yml values with the report at hand: each reader takes
//! a value and its path, and a value of the wrong shape becomes a finding
//! at its line instead of an error, so one bad key never hides the rest.
//!
//! The readers accept what blackbox_exporter's Go YAML decoder accepts
//! where serde's would not: YAML 1.1 booleans (`yes`, `on`) and scalars of
//! any type where a string is expected.

use yaml_serde::Value;

use crate::import::lines::{KeyPath, Segment, YamlLines};
use crate::import::report::{Kind, Report};

/// The report under construction and the lines to give its findings.
pub(super) struct Ctx<'a> {
    lines: &'a YamlLines,
    pub(super) report: Report,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(lines: &'a YamlLines, report: Report) -> Ctx<'a> {
        Ctx { lines, report }
    }

    /// The line of `path` (or of its nearest ancestor found).
    pub(super) fn line(&self, path: &KeyPath) -> Option<usize> {
        self.lines.line_of(path)
    }

    pub(super) fn push(&mut self, path: &KeyPath, kind: Kind) {
        let line = self.line(path);
        // Module keys are shown from the module's name on, as operators
        // know them (`http_2xx.http.method`); `modules` itself is implied.
        let shown = match path.segments() {
            [Segment::Key(first), _, ..] if first == "modules" => path.skip(1),
            _ => path.clone(),
        };
        self.report.push(line, shown.to_string(), kind);
    }

    pub(super) fn not_carried(&mut self, path: &KeyPath, why: impl Into<String>) {
        self.push(path, Kind::NotCarried(why.into()));
    }

    pub(super) fn unknown(&mut self, path: &KeyPath) {
        self.push(path, Kind::Unknown);
    }

    pub(super) fn note(&mut self, path: &KeyPath, what: impl Into<String>) {
        self.push(path, Kind::Note(what.into()));
    }

    fn wrong_type(&mut self, path: &KeyPath, expected: &str, found: &Value) {
        self.not_carried(
            path,
            format!("expected {expected}, found {}", describe(found)),
        );
    }

    /// The entries of a mapping, keys as strings. An empty value (`http:`
    /// with nothing under it) has none; another shape is reported.
    pub(super) fn entries<'v>(
        &mut self,
        path: &KeyPath,
        value: &'v Value,
    ) -> Vec<(String, KeyPath, &'v Value)> {
        let map = match value {
            Value::Null => return Vec::new(),
            Value::Mapping(m) => m,
            other => {
                self.wrong_type(path, "a mapping", other);
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (key, value) in map {
            match scalar_text(key) {
                Some(k) => {
                    let child = path.key(&k);
                    out.push((k, child, value));
                }
                None => self.wrong_type(path, "string keys", key),
            }
        }
        out
    }

    /// A string; numbers and booleans read as their text, as Go's decoder
    /// reads them into a string field.
    pub(super) fn string(&mut self, path: &KeyPath, value: &Value) -> Option<String> {
        let text = scalar_text(value);
        if text.is_none() {
            self.wrong_type(path, "a string", value);
        }
        text
    }

    /// A boolean, YAML 1.1 spellings included (`yes`, `on`, ...).
    pub(super) fn boolean(&mut self, path: &KeyPath, value: &Value) -> Option<bool> {
        let b = match value {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.as_str() {
                "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On"
                | "ON" => Some(true),
                "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off"
                | "OFF" => Some(false),
                _ => None,
            },
            _ => None,
        };
        if b.is_none() {
            self.wrong_type(path, "true or false", value);
        }
        b
    }

    /// A whole number in `0..=max`.
    pub(super) fn uint(&mut self, path: &KeyPath, value: &Value, max: u64) -> Option<u64> {
        match value.as_u64() {
            Some(n) if n <= max => Some(n),
            Some(n) => {
                self.not_carried(path, format!("{n} is above {max}"));
                None
            }
            None => {
                self.wrong_type(path, "a whole number", value);
                None
            }
        }
    }

    /// The items of a list, each with its path; an empty value has none,
    /// another shape is reported.
    pub(super) fn items<'v>(
        &mut self,
        path: &KeyPath,
        value: &'v Value,
    ) -> Vec<(KeyPath, &'v Value)> {
        match value {
            Value::Null => Vec::new(),
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| (path.index(i), item))
                .collect(),
            other => {
                self.wrong_type(path, "a list", other);
                Vec::new()
            }
        }
    }

    /// A list of strings; an empty value is an empty list.
    pub(super) fn strings(&mut self, path: &KeyPath, value: &Value) -> Option<Vec<String>> {
        if !matches!(value, Value::Null | Value::Sequence(_)) {
            self.items(path, value);
            return None;
        }
        let mut out = Vec::new();
        for (p, item) in self.items(path, value) {
            if let Some(s) = self.string(&p, item) {
                out.push(s);
            }
        }
        Some(out)
    }

    /// A list of regular expressions, each checked against the syntax the
    /// plugins compile (see [`Ctx::regex`]).
    pub(super) fn regexes(&mut self, path: &KeyPath, value: &Value) -> Option<Vec<String>> {
        let list = self.strings(path, value)?;
        for (i, re) in list.iter().enumerate() {
            self.regex(&path.index(i), re);
        }
        Some(list)
    }

    /// Reports a regular expression the plugins cannot compile. Go's RE2
    /// and Rust's `regex` (what the plugins use) agree on almost all
    /// syntax; where they do not, the expression is still written as is,
    /// so the operator sees it fail and fixes it rather than getting a
    /// probe that silently checks something else.
    pub(super) fn regex(&mut self, path: &KeyPath, re: &str) {
        if let Err(e) = regex::Regex::new(re) {
            // The last line of the error says what is wrong; the lines
            // before it draw the expression with a caret.
            let text = e.to_string();
            let cause = text
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .trim_start_matches("error: ");
            self.not_carried(
                path,
                format!(
                    "regular expression {re:?} does not compile in the plugins' syntax (Rust regex: {cause}); written as is, every run fails until it is fixed"
                ),
            );
        }
    }
}

/// The text of a scalar: strings as they are, numbers and booleans as
/// written; `None` for anything else.
pub(super) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(lines: &YamlLines) -> Ctx<'_> {
        Ctx::new(lines, Report::new("b.yml"))
    }

    fn yaml(text: &str) -> Value {
        yaml_serde::from_str(text).unwrap_or(Value::Null)
    }

    #[test]
    fn values_of_the_wrong_shape_are_reported_at_their_line() {
        let text = "modules:\n  m:\n    http:\n      method: [GET]\n      fail_if_ssl: maybe\n";
        let lines = YamlLines::scan(text);
        let mut c = ctx(&lines);
        let http = KeyPath::root().key("modules").key("m").key("http");
        let v = yaml("[GET]");
        assert_eq!(c.string(&http.key("method"), &v), None);
        assert_eq!(c.boolean(&http.key("fail_if_ssl"), &yaml("maybe")), None);
        assert_eq!(
            c.report.to_string(),
            "b.yml:4: m.http.method: not carried over: expected a string, found a list\n\
             b.yml:5: m.http.fail_if_ssl: not carried over: expected true or false, found a string\n\
             b.yml: 0 modules imported as 0 probes; 2 items not carried over"
        );
    }

    #[test]
    fn go_spellings_are_read_as_go_reads_them() {
        let lines = YamlLines::default();
        let mut c = ctx(&lines);
        let p = KeyPath::root().key("x");
        assert_eq!(c.boolean(&p, &yaml("yes")), Some(true));
        assert_eq!(c.boolean(&p, &yaml("off")), Some(false));
        assert_eq!(c.string(&p, &yaml("200")), Some("200".into()));
        assert_eq!(c.strings(&p, &yaml("")), Some(vec![]));
        assert_eq!(
            c.strings(&p, &yaml("[a, 1, true]")),
            Some(vec!["a".into(), "1".into(), "true".into()])
        );
        assert_eq!(c.uint(&p, &yaml("300"), 255), None);
        assert!(c.entries(&p, &yaml("")).is_empty());
        assert_eq!(c.report.losses(), 1);
    }

    #[test]
    fn regexes_the_plugins_cannot_compile_are_reported() {
        let lines = YamlLines::default();
        let mut c = ctx(&lines);
        let p = KeyPath::root().key("modules").key("m").key("re");
        c.regex(&p, "^ok$");
        assert!(c.report.all_carried());
        c.regex(&p, "(unclosed");
        let text = c.report.to_string();
        assert!(
            text.contains(
                "m.re: not carried over: regular expression \"(unclosed\" does not compile"
            ),
            "{text}"
        );
    }
}
