//! Where in a config file something went wrong.
//!
//! Every config error carries the file, the line and column, and the dotted
//! key it is about, so an operator can go straight to the value. The key of a
//! parse error is recovered from a spanned parse of the document; stage-two
//! errors know their key because they are produced while walking it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A position in a config file, kept beside resolved values that later
/// validation (plugin schemas, `/probe` targets) reports on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Shared by every location in one file: a probe keeps several, and
    /// 100,000 probes would otherwise hold 100,000s of copies of one path.
    pub file: Arc<Path>,
    pub line: usize,
    pub column: usize,
    pub key: String,
}

impl Location {
    pub(crate) fn new(source: &Source, span: Range<usize>, key: impl Into<String>) -> Self {
        let (line, column) = source.line_col(span.start);
        Location {
            file: source.file.clone(),
            line,
            column,
            key: key.into(),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        Ok(())
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct Diagnostic {
    pub location: Location,
    pub message: String,
}

/// Every problem found in one config file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} error{} in config", if n == 1 { "" } else { "s" })?;
        for d in &self.0 {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The text of a config file with its path, to turn byte offsets into
/// line/column positions and key paths.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) path: PathBuf,
    /// `path`, shared with every location in the file.
    file: Arc<Path>,
    pub(crate) text: String,
    line_starts: Vec<usize>,
}

impl Source {
    pub(crate) fn new(path: &Path, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source {
            path: path.to_path_buf(),
            file: Arc::from(path),
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line.saturating_sub(1)];
        let column = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line.max(1), column)
    }

    /// The dotted key whose key or value covers `offset`, found from a
    /// spanned parse of the file. Empty when the file does not parse or the
    /// offset is outside every key.
    pub(crate) fn key_at(&self, offset: usize) -> String {
        let Ok(doc) = DeTable::parse(&self.text) else {
            return self.key_from_lines(offset);
        };
        let mut path = Vec::new();
        find_in_table(doc.get_ref(), offset, &mut path);
        path.join(".")
    }

    /// Locations of every value under the table at `path` (e.g.
    /// `["probes", "api", "config"]`), keyed by JSON pointer (`/a/0/b`), so
    /// an error a JSON Schema reports at a pointer lands on its TOML line.
    pub(crate) fn pointer_locations(&self, path: &[&str]) -> Vec<(String, Location)> {
        let Ok(doc) = DeTable::parse(&self.text) else {
            return Vec::new();
        };
        let mut table = doc.get_ref();
        for key in path {
            match table.get(*key).map(|v| v.get_ref()) {
                Some(DeValue::Table(t)) => table = t,
                _ => return Vec::new(),
            }
        }
        let mut out = Vec::new();
        let prefix = path
            .iter()
            .map(|k| display_key(k))
            .collect::<Vec<_>>()
            .join(".");
        for (key, value) in table.iter() {
            let k = key.get_ref().to_string();
            self.collect_pointers(
                value,
                format!("/{}", escape_pointer(&k)),
                format!("{prefix}.{}", display_key(&k)),
                &mut out,
            );
        }
        out
    }

    fn collect_pointers(
        &self,
        value: &Spanned<DeValue<'_>>,
        pointer: String,
        key: String,
        out: &mut Vec<(String, Location)>,
    ) {
        out.push((
            pointer.clone(),
            Location::new(self, value.span(), key.clone()),
        ));
        match value.get_ref() {
            DeValue::Table(t) => {
                for (k, v) in t.iter() {
                    let k = k.get_ref().to_string();
                    self.collect_pointers(
                        v,
                        format!("{pointer}/{}", escape_pointer(&k)),
                        format!("{key}.{}", display_key(&k)),
                        out,
                    );
                }
            }
            DeValue::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    self.collect_pointers(v, format!("{pointer}/{i}"), format!("{key}.{i}"), out);
                }
            }
            _ => {}
        }
    }

    /// The key of a position when the file does not parse as a whole: the
    /// table header above it, and the key on its own line.
    fn key_from_lines(&self, offset: usize) -> String {
        let (line, _) = self.line_col(offset);
        let lines: Vec<&str> = self.text.lines().collect();
        let here = lines.get(line.saturating_sub(1)).map_or("", |l| l.trim());
        let header = |l: &str| {
            l.strip_prefix('[')
                .and_then(|l| l.trim_start_matches('[').split(']').next())
                .map(|h| h.trim().to_string())
        };
        if let Some(h) = header(here) {
            return h;
        }
        let table = lines[..line.saturating_sub(1).min(lines.len())]
            .iter()
            .rev()
            .find_map(|l| header(l.trim()));
        let key = here.split_once('=').map(|(k, _)| k.trim().to_string());
        match (table, key) {
            (Some(t), Some(k)) => format!("{t}.{k}"),
            (None, Some(k)) => k,
            (Some(t), None) => t,
            (None, None) => String::new(),
        }
    }

    /// A diagnostic for a deserialisation error of the whole file.
    pub(crate) fn parse_error(&self, err: &toml::de::Error) -> Diagnostic {
        let span = err.span().unwrap_or(0..0);
        Diagnostic {
            location: Location::new(self, span.clone(), self.key_at(span.start)),
            message: err.message().trim_end().replace('\n', "; "),
        }
    }
}

fn find_in_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        let in_key = key.span().contains(&offset);
        let in_value = value.span().contains(&offset);
        if in_key || in_value {
            path.push(display_key(key.get_ref()));
            if in_value {
                find_in_value(value, offset, path);
            }
            return true;
        }
    }
    // Table headers (`[probes.api]`) span only their header text, so an
    // offset inside a table's body may fall outside its span: fall back to
    // the last entry that starts before the offset.
    let mut best: Option<(&Spanned<toml::de::DeString<'_>>, &Spanned<DeValue<'_>>)> = None;
    for (key, value) in table.iter() {
        if key.span().start <= offset
            && value.get_ref().is_table()
            && best.is_none_or(|(k, _)| k.span().start < key.span().start)
        {
            best = Some((key, value));
        }
    }
    if let Some((key, value)) = best {
        path.push(display_key(key.get_ref()));
        find_in_value(value, offset, path);
        return true;
    }
    false
}

fn find_in_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<String>) {
    match value.get_ref() {
        DeValue::Table(t) => {
            find_in_table(t, offset, path);
        }
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if item.span().contains(&offset) {
                    path.push(i.to_string());
                    find_in_value(item, offset, path);
                    return;
                }
            }
        }
        _ => {}
    }
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn display_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source::new(Path::new("probes.toml"), text.to_string())
    }

    #[test]
    fn line_and_column_are_one_based() {
        let s = source("a = 1\nbb = 2\n");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(6), (2, 1));
        assert_eq!(s.line_col(11), (2, 6));
    }

    #[test]
    fn key_of_a_value_inside_a_table_body() {
        let text = "[probes.api]\nplugin = \"x\"\nschedule = \"bad\"\n";
        let s = source(text);
        let offset = text.find("\"bad\"").unwrap_or(0);
        assert_eq!(s.key_at(offset), "probes.api.schedule");
    }

    #[test]
    fn key_of_an_array_element() {
        let text = "[probes.api]\nallow = [\"a\", \"b\"]\n";
        let s = source(text);
        let offset = text.find("\"b\"").unwrap_or(0);
        assert_eq!(s.key_at(offset), "probes.api.allow.1");
    }
}
