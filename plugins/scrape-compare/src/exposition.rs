//! Reading an exporter's exposition: validated by a real parser, and
//! reduced, as it is read, to what the selectors ask for.
//!
//! # The parser: `nom-openmetrics`
//!
//! Candidates, each given the 100k-line exposition of `tests/scale.rs`
//! whole and a set of hostile and unusual inputs (native release build of
//! a comparison harness):
//!
//! - `nom-openmetrics` 0.3 (MIT, nom 8, maintained): a real grammar for
//!   names, label escapes and values; zero-copy names; a `family()` entry
//!   point that parses one piece of an exposition at a time; +85 KiB of
//!   `.wasm`. Whole-body parse of 100k lines: 75 ms, 23 MiB peak. It does
//!   not check semantics (duplicate series) and does not read blank lines,
//!   `#` comments, trailing blanks or sample timestamps, all of which the
//!   text format allows.
//! - `openmetrics-parser` 0.5 (pest): the strictest, but LGPL-3.0 (statically
//!   linked into an Apache-2.0 component), 120 MiB peak and 550 ms for the
//!   same 100k lines (over the default 64 MiB plugin memory), panics
//!   (`unwrap`) on inputs its grammar lets through, and it rejects two
//!   untyped series in a row (`a 1\nb 2\n`), which hand-written sidecars
//!   (report A's) emit.
//! - `prometheus-parse` 0.2: regular expressions that silently skip a line
//!   they do not understand, and split label values on `,`: it cannot tell
//!   a malformed exposition from a good one, which is this plugin's job.
//! - `prom_text_format_parser` 0.1: one release (2023), refuses `{}` and a
//!   trailing comma in labels, 42 MiB peak.
//!
//! # What this module adds around it
//!
//! The body is walked line by line and each sample line goes to the parser
//! on its own (with the HELP/TYPE/UNIT lines before it), so memory does not
//! grow with the exposition: one line's sample, plus 16 bytes per series to
//! find duplicates (3.2 MiB peak for 100k series; through the host, a
//! 5.6 MB exposition of 102k lines is read in 0.4 s within a 12 MiB plugin
//! memory limit). Before a line reaches the parser, the parts of the
//! format it does not read are taken off, none of which carries a value:
//! blank lines, `#` comments, blanks around a line, the run of blanks or
//! tabs before the value (made one space) and a sample's trailing integer
//! timestamp. A timestamp is the last of three or more blank-separated
//! tokens when it and the token before it are numbers: the token before a
//! value is the metric name or ends with `}`, so it is never a number
//! unless the name itself spells one (`NaN 1` stays as it is). Everything
//! else is the parser's to accept or refuse.
//!
//! Checked here, since the parser does not: a series (name and label set,
//! in any label order) appearing twice, a label named twice, a TYPE the
//! format does not know, a line ending in CR. Still refused, as the parser
//! does: blanks inside `{}`, a trailing comma in labels, UTF-8 quoted
//! names, OpenMetrics exemplars. Each refusal names its line.
//!
//! `nom-openmetrics` 0.3 prints a debug line to stderr for every infinite
//! value; a plugin's stderr is a sink (the host grants no stdio), so it
//! costs nothing but the write.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use nom::error::ErrorKind;
use nom_language::error::{VerboseError, VerboseErrorKind};
use nom_openmetrics::{Family, Label, MetricDescriptor, MetricType, Sample};

use crate::selector::Selector;

/// Samples kept per selector to name in an `ambiguous` message.
const EXAMPLES: usize = 2;
/// Characters of a line quoted in a message.
const QUOTE: usize = 80;
/// HELP/TYPE/UNIT lines held for the next sample before they are checked
/// on their own: an exposition of descriptors alone stays in small pieces.
const MAX_PENDING: usize = 64;

/// Why an exposition was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not UTF-8 (invalid byte at offset {0})")]
    NotUtf8(usize),
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
}

/// What one exposition says about the selected series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scan {
    /// Sample lines read.
    pub samples: u64,
    /// Per selector, in the order given.
    pub selected: Vec<Selected>,
}

/// The samples one selector matched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selected {
    pub count: u32,
    /// The first match's value.
    pub value: Option<f64>,
    /// The first matches, written `name{label="value",...}`, cut short.
    pub examples: Vec<String>,
}

/// Validates `body` and collects what `selectors` match.
pub fn scan_bytes(body: &[u8], selectors: &[Selector]) -> Result<Scan, ParseError> {
    let text = std::str::from_utf8(body).map_err(|e| ParseError::NotUtf8(e.valid_up_to()))?;
    scan(text, selectors)
}

/// Validates `text` and collects what `selectors` match.
pub fn scan(text: &str, selectors: &[Selector]) -> Result<Scan, ParseError> {
    let mut reader = Reader {
        selectors,
        scan: Scan {
            samples: 0,
            selected: vec![Selected::default(); selectors.len()],
        },
        seen: HashSet::new(),
        keys: (RandomState::new(), RandomState::new()),
        chunk: String::new(),
        lines: Vec::new(),
    };
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        if raw.ends_with('\r') {
            return Err(at(
                line,
                "line ends with CR: the text format ends lines with LF alone",
            ));
        }
        let trimmed = raw.trim_matches([' ', '\t']);
        if trimmed.is_empty() {
            continue;
        }
        if trimmed.starts_with('#') {
            if trimmed == "# EOF" {
                break;
            }
            if let Some(help) = trimmed.strip_prefix("# HELP ") {
                // HELP text keeps its blanks, and may be empty.
                let help_line = raw.trim_start_matches([' ', '\t']);
                reader.chunk.push_str(help_line);
                if !help.trim_start_matches(' ').contains(' ') {
                    reader.chunk.push(' ');
                }
                reader.chunk.push('\n');
                reader.lines.push(line);
            } else if trimmed.starts_with("# TYPE ") || trimmed.starts_with("# UNIT ") {
                reader.chunk.push_str(trimmed);
                reader.chunk.push('\n');
                reader.lines.push(line);
            }
            if reader.lines.len() >= MAX_PENDING {
                reader.flush_descriptors()?;
            }
            continue;
        }
        push_sample(&mut reader.chunk, trimmed);
        reader.lines.push(line);
        reader.read_chunk(false)?;
    }
    if !reader.chunk.is_empty() {
        reader.flush_descriptors()?;
    }
    Ok(reader.scan)
}

/// Appends a sample line as the parser reads it: one space before the
/// value, no timestamp (see the module doc for why this is unambiguous).
fn push_sample(chunk: &mut String, line: &str) {
    let Some((head, last)) = split_last(line) else {
        chunk.push_str(line);
        chunk.push('\n');
        return;
    };
    let (series, value) = match split_last(head) {
        Some((series, value)) if is_timestamp(last) && is_number(value) && !series.is_empty() => {
            (series, value)
        }
        _ => (head, last),
    };
    chunk.push_str(series);
    chunk.push(' ');
    chunk.push_str(value);
    chunk.push('\n');
}

/// The text before the last run of blanks, and the token after it.
fn split_last(s: &str) -> Option<(&str, &str)> {
    s.rfind([' ', '\t'])
        .map(|i| (s[..i].trim_end_matches([' ', '\t']), &s[i + 1..]))
}

fn is_timestamp(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_number(s: &str) -> bool {
    s.parse::<f64>().is_ok()
}

struct Reader<'s> {
    selectors: &'s [Selector],
    scan: Scan,
    /// Two independent 64-bit hashes of every series seen: a false
    /// "duplicate" needs both to collide (about 1 in 10^29 for 100k series).
    seen: HashSet<u128>,
    keys: (RandomState, RandomState),
    /// Descriptor lines, then one sample line, as the parser reads them.
    chunk: String,
    /// The body's line number of each line of `chunk`.
    lines: Vec<usize>,
}

impl Reader<'_> {
    /// Validates pending HELP/TYPE/UNIT lines that no sample follows (yet):
    /// the parser reads descriptors only ahead of a sample, so a
    /// placeholder sample goes after them and is not counted.
    fn flush_descriptors(&mut self) -> Result<(), ParseError> {
        self.chunk.push_str("_ 0\n");
        self.read_chunk(true)
    }

    fn read_chunk(&mut self, placeholder: bool) -> Result<(), ParseError> {
        let chunk = std::mem::take(&mut self.chunk);
        let lines = std::mem::take(&mut self.lines);
        let result = match nom_openmetrics::parser::family(&chunk) {
            Ok(("", family)) => self.read_family(&family, &lines, placeholder),
            Ok((rest, _)) => Err(parser_error(&chunk, &lines, rest, None)),
            Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(verbose(&chunk, &lines, &e)),
            Err(nom::Err::Incomplete(_)) => Err(at(
                lines.last().copied().unwrap_or(0),
                "the parser wanted more input",
            )),
        };
        // Both buffers are reused for the next line.
        self.chunk = chunk;
        self.chunk.clear();
        self.lines = lines;
        self.lines.clear();
        result
    }

    fn read_family(
        &mut self,
        family: &Family<'_>,
        lines: &[usize],
        placeholder: bool,
    ) -> Result<(), ParseError> {
        for (d, line) in family.descriptors.iter().zip(lines) {
            if let MetricDescriptor::Type {
                r#type: MetricType::Unknown(t),
                metric,
            } = d
            {
                // The parser knows OpenMetrics' type names; these are the
                // text format's, which it leaves as unknown.
                if !["histogram", "untyped", "unknown"].contains(t) {
                    return Err(at(
                        *line,
                        &format!("unknown metric type {t:?} for {metric}"),
                    ));
                }
            }
        }
        if placeholder {
            return Ok(());
        }
        let line = lines.last().copied().unwrap_or(0);
        for sample in &family.samples {
            self.read_sample(sample, line)?;
        }
        Ok(())
    }

    fn read_sample(&mut self, sample: &Sample<'_>, line: usize) -> Result<(), ParseError> {
        self.scan.samples += 1;
        let name = sample.name();
        let labels = sample.labels();
        let mut sorted: Vec<&Label<'_>> = labels.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(b.name));
        if let Some(w) = sorted.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(at(line, &format!("label {} appears twice", w[0].name)));
        }
        let key = |state: &RandomState| {
            let mut h = state.build_hasher();
            name.hash(&mut h);
            for l in &sorted {
                l.name.hash(&mut h);
                l.value.hash(&mut h);
            }
            h.finish()
        };
        let key = (u128::from(key(&self.keys.0)) << 64) | u128::from(key(&self.keys.1));
        if !self.seen.insert(key) {
            return Err(at(
                line,
                &format!("duplicate series {}", series_text(name, labels)),
            ));
        }
        for (selector, selected) in self.selectors.iter().zip(&mut self.scan.selected) {
            if selector.matches(name, labels) {
                selected.count = selected.count.saturating_add(1);
                if selected.value.is_none() {
                    selected.value = Some(sample.number());
                }
                if selected.examples.len() < EXAMPLES {
                    selected.examples.push(series_text(name, labels));
                }
            }
        }
        Ok(())
    }
}

fn at(line: usize, message: &str) -> ParseError {
    ParseError::Line {
        line,
        message: message.to_string(),
    }
}

/// A series as PromQL writes it, cut to a readable length.
fn series_text(name: &str, labels: &[Label<'_>]) -> String {
    let mut s = name.to_string();
    if !labels.is_empty() {
        s.push('{');
        for (i, l) in labels.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(l.name);
            s.push('=');
            // Cut first: a label value can be megabytes long.
            s.push_str(&format!("{:?}", cut(&l.value)));
        }
        s.push('}');
    }
    cut(&s)
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(QUOTE) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// The parser's own account of a refusal, placed on the body's line: the
/// innermost thing it expected, the grammar rule it was in, and the text
/// where it stopped.
fn verbose(chunk: &str, lines: &[usize], e: &VerboseError<&str>) -> ParseError {
    let Some((rest, _)) = e.errors.first() else {
        return parser_error(chunk, lines, chunk, None);
    };
    let expected = e.errors.iter().find_map(|(_, kind)| match kind {
        VerboseErrorKind::Char('\n') => Some("expected end of line".to_string()),
        VerboseErrorKind::Char(c) => Some(format!("expected {c:?}")),
        VerboseErrorKind::Nom(k) => Some(format!("expected {}", kind_text(*k))),
        VerboseErrorKind::Context(_) => None,
    });
    let rule = e.errors.iter().find_map(|(_, kind)| match kind {
        VerboseErrorKind::Context(c) => Some(*c),
        _ => None,
    });
    let what = match (expected, rule) {
        // The last of the parser's number forms is the keyword `NaN`.
        (_, Some("number" | "metric value")) => Some("expected a number".to_string()),
        (Some(x), Some(r)) => Some(format!("{x} in {r}")),
        (Some(x), None) => Some(x),
        (None, Some(r)) => Some(format!("invalid {r}")),
        (None, None) => None,
    };
    parser_error(chunk, lines, rest, what)
}

fn parser_error(chunk: &str, lines: &[usize], rest: &str, what: Option<String>) -> ParseError {
    let offset = chunk.len().saturating_sub(rest.len());
    let index = chunk
        .get(..offset)
        .map_or(0, |before| before.matches('\n').count());
    let line = lines.get(index).or(lines.last()).copied().unwrap_or(0);
    let near = rest.split('\n').next().unwrap_or("");
    // The parser backtracks out of an optional label set or a descriptor
    // and reports the alternative it tried last; name the part instead.
    let what = if near.starts_with('{') {
        "invalid label set (name=\"value\" pairs joined by ',', no blanks)".to_string()
    } else if near.starts_with("# ") {
        "invalid HELP, TYPE or UNIT line".to_string()
    } else {
        what.unwrap_or_else(|| "cannot parse".to_string())
    };
    let message = if near.is_empty() {
        format!("{what} at end of line")
    } else {
        format!("{what} at {:?}", cut(near))
    };
    ParseError::Line { line, message }
}

fn kind_text(k: ErrorKind) -> String {
    match k {
        ErrorKind::Tag => "a keyword".into(),
        ErrorKind::TakeWhile1 => "a name".into(),
        ErrorKind::Float | ErrorKind::MapRes => "a number".into(),
        ErrorKind::Eof => "end of input".into(),
        ErrorKind::IsNot => "text".into(),
        ErrorKind::Many1 => "a sample".into(),
        _ => k.description().to_lowercase(),
    }
}

#[cfg(test)]
mod tests;
