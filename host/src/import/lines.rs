//! Where each key of a YAML file is written: the line numbers of the
//! import report.
//!
//! serde-based YAML parsers keep no positions, so this reads the text a
//! second time, on its own. It follows block-style YAML (how blackbox.yml
//! files are written) with a stack of indentations: mapping keys, plain or
//! quoted; sequence items (`- `), also when they sit at their key's own
//! indentation; block scalars (`|`, `>`), whose lines are content and never
//! keys; and quoted scalars and flow collections (`[...]`, `{...}`) that
//! span lines. Flow collections are not entered: what is inside one is
//! found at the line of the key that holds it.
//!
//! The finder only ever decides line numbers in a report, never what is
//! converted, so where the text is beyond it (a key reached through a YAML
//! alias or merge, say) a lookup falls back to the nearest ancestor it did
//! place rather than failing.

use std::collections::HashMap;
use std::fmt;

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path into a YAML document: `modules.http_2xx.http.method`,
/// `...query_response[2].send`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// The document itself.
    pub fn root() -> KeyPath {
        KeyPath::default()
    }

    /// The value of `key` in the mapping at this path.
    pub fn key(&self, key: &str) -> KeyPath {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_string()));
        KeyPath(segments)
    }

    /// Item `index` (from 0) of the sequence at this path.
    pub fn index(&self, index: usize) -> KeyPath {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        KeyPath(segments)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// The path without its first `n` segments (`modules.NAME.x` shown as
    /// `NAME.x`).
    pub fn skip(&self, n: usize) -> KeyPath {
        KeyPath(self.0.iter().skip(n).cloned().collect())
    }

    fn parent(&self) -> Option<KeyPath> {
        let (_, rest) = self.0.split_last()?;
        Some(KeyPath(rest.to_vec()))
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(k) if i == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The line (from 1) of every key and sequence item the scan placed.
#[derive(Debug, Default)]
pub struct YamlLines {
    lines: HashMap<KeyPath, usize>,
}

/// One open node on the indentation stack.
#[derive(Debug)]
struct Frame {
    /// Column of the key or of the item's `-`; the root is at -1.
    indent: isize,
    path: KeyPath,
    is_item: bool,
    /// The index the next `-` under this node gets.
    next_item: usize,
}

/// Lines that are inside a value begun on an earlier line.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Skip {
    None,
    /// A block scalar: every line indented deeper than `parent` (or blank).
    Block {
        parent: isize,
    },
    /// A quoted scalar until its closing quote.
    Quote(char),
    /// A flow collection until its brackets balance.
    Flow(usize),
}

impl YamlLines {
    /// Scans `text`. Never fails: what it cannot read is simply not placed.
    pub fn scan(text: &str) -> YamlLines {
        let mut lines = HashMap::new();
        let mut stack = vec![Frame {
            indent: -1,
            path: KeyPath::root(),
            is_item: false,
            next_item: 0,
        }];
        let mut skip = Skip::None;
        for (n, line) in text.lines().enumerate() {
            let number = n + 1;
            let indent = line.len() - line.trim_start_matches(' ').len();
            let body = &line[indent..];
            match skip {
                Skip::Block { parent } => {
                    if body.trim().is_empty() || (indent as isize) > parent {
                        continue;
                    }
                    skip = Skip::None;
                }
                Skip::Quote(q) => {
                    if closing_quote(line, q).is_some() {
                        skip = Skip::None;
                    }
                    continue;
                }
                Skip::Flow(depth) => {
                    skip = match flow_depth(line, depth) {
                        0 => Skip::None,
                        d => Skip::Flow(d),
                    };
                    continue;
                }
                Skip::None => {}
            }
            if body.is_empty() || body.starts_with('#') || body.starts_with('%') {
                continue;
            }
            if indent == 0 && (body.starts_with("---") || body.starts_with("...")) {
                continue;
            }
            let mut column = indent;
            let mut rest = body;
            // Sequence items, possibly several on one line (`- - x`).
            while rest == "-" || rest.starts_with("- ") {
                let col = column as isize;
                while stack
                    .last()
                    .is_some_and(|f| f.indent > col || (f.indent == col && f.is_item))
                {
                    stack.pop();
                }
                let Some(parent) = stack.last_mut() else {
                    break;
                };
                let path = parent.path.index(parent.next_item);
                parent.next_item += 1;
                lines.entry(path.clone()).or_insert(number);
                stack.push(Frame {
                    indent: col,
                    path,
                    is_item: true,
                    next_item: 0,
                });
                let after = &rest[1..];
                let trimmed = after.trim_start_matches(' ');
                column += 1 + after.len() - trimmed.len();
                rest = trimmed;
            }
            let value = match parse_key(rest) {
                Some((key, value)) => {
                    let col = column as isize;
                    while stack.last().is_some_and(|f| f.indent >= col) {
                        stack.pop();
                    }
                    let Some(parent) = stack.last() else {
                        continue;
                    };
                    let path = parent.path.key(&key);
                    lines.entry(path.clone()).or_insert(number);
                    stack.push(Frame {
                        indent: col,
                        path,
                        is_item: false,
                        next_item: 0,
                    });
                    value
                }
                None => rest,
            };
            skip = value_skip(value, column as isize);
        }
        YamlLines { lines }
    }

    /// The line of `path`, or of its nearest ancestor the scan placed;
    /// `None` when not even the first key was found.
    pub fn line_of(&self, path: &KeyPath) -> Option<usize> {
        let mut at = Some(path.clone());
        while let Some(p) = at {
            if let Some(line) = self.lines.get(&p) {
                return Some(*line);
            }
            at = p.parent();
        }
        None
    }
}

/// A mapping key at the start of `text` and the value text after its
/// colon; `None` when `text` is not `key: ...` (a scalar, a flow
/// collection, a continuation line).
fn parse_key(text: &str) -> Option<(String, &str)> {
    let (key, after) = match text.chars().next()? {
        q @ ('"' | '\'') => {
            let end = closing_quote(&text[1..], q)? + 1;
            let key = unquote(&text[1..end], q);
            (key, text[end + 1..].trim_start_matches(' '))
        }
        '[' | '{' | '#' | '&' | '*' | '!' | '|' | '>' | '%' | '@' | '`' | '?' => return None,
        _ => {
            let end = text
                .char_indices()
                .find(|&(i, c)| {
                    c == ':' && matches!(text[i + 1..].chars().next(), None | Some(' '))
                })
                .map(|(i, _)| i)?;
            let key = text[..end].trim_end();
            if key.contains(" #") {
                return None;
            }
            (key.to_string(), &text[end..])
        }
    };
    let value = after.strip_prefix(':')?;
    if !(value.is_empty() || value.starts_with(' ')) {
        return None;
    }
    Some((key, value.trim_start_matches(' ')))
}

/// What the lines after a value need: `value` is the text after a key's
/// colon or an item's `- `, on a line whose node is at `column`.
fn value_skip(value: &str, column: isize) -> Skip {
    match value.chars().next() {
        Some('|' | '>') => Skip::Block { parent: column },
        Some(q @ ('"' | '\'')) if closing_quote(&value[1..], q).is_none() => Skip::Quote(q),
        Some('[' | '{') => match flow_depth(value, 0) {
            0 => Skip::None,
            d => Skip::Flow(d),
        },
        _ => Skip::None,
    }
}

/// The byte offset in `text` of the quote `q` that closes a scalar opened
/// before `text` began; `\"` is escaped in double quotes, `''` in single.
fn closing_quote(text: &str, q: char) -> Option<usize> {
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if q == '"' => {
                chars.next();
            }
            '\'' if q == '\'' && chars.peek().is_some_and(|&(_, n)| n == '\'') => {
                chars.next();
            }
            c if c == q => return Some(i),
            _ => {}
        }
    }
    None
}

fn unquote(text: &str, q: char) -> String {
    if q == '\'' {
        return text.replace("''", "'");
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(n @ ('"' | '\\'))) => {
                out.push(n);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// The bracket depth after `text`, starting at `depth`; quoted text and
/// comments do not count.
fn flow_depth(text: &str, mut depth: usize) -> usize {
    let mut chars = text.chars().peekable();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth = depth.saturating_sub(1),
            '#' if prev == ' ' => break,
            q @ ('"' | '\'') => {
                let rest: String = chars.clone().collect();
                match closing_quote(&rest, q) {
                    Some(end) => {
                        let skipped = rest[..=end].chars().count();
                        for _ in 0..skipped {
                            chars.next();
                        }
                    }
                    None => break,
                }
            }
            _ => {}
        }
        prev = c;
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> KeyPath {
        let mut p = KeyPath::root();
        for part in text.split('.') {
            match part.split_once('[') {
                Some((key, index)) => {
                    p = p.key(key);
                    let n = index.trim_end_matches(']').parse().unwrap_or(usize::MAX);
                    p = p.index(n);
                }
                None => p = p.key(part),
            }
        }
        p
    }

    fn line(lines: &YamlLines, p: &str) -> Option<usize> {
        lines.line_of(&path(p))
    }

    /// Debian's /etc/prometheus/blackbox.yml: sequences at their key's own
    /// indentation, an item with two keys, a key after a sequence.
    const DEBIAN: &str = "modules:
  http_2xx:
    prober: http
  pop3s_banner:
    prober: tcp
    tcp:
      query_response:
      - expect: \"^+OK\"
      tls: true
      tls_config:
        insecure_skip_verify: false
  irc_banner:
    prober: tcp
    tcp:
      query_response:
      - send: \"NICK prober\"
      - expect: \"PING :([^ ]+)\"
        send: \"PONG ${1}\"
      - expect: \"^:[^ ]+ 001\"
  icmp_ttl5:
    prober: icmp
    timeout: 5s
    icmp:
      ttl: 5
";

    #[test]
    fn keys_and_items_get_their_lines() {
        let l = YamlLines::scan(DEBIAN);
        assert_eq!(line(&l, "modules"), Some(1));
        assert_eq!(line(&l, "modules.http_2xx.prober"), Some(3));
        assert_eq!(line(&l, "modules.pop3s_banner.tcp.query_response"), Some(7));
        assert_eq!(
            line(&l, "modules.pop3s_banner.tcp.query_response[0].expect"),
            Some(8)
        );
        assert_eq!(line(&l, "modules.pop3s_banner.tcp.tls"), Some(9));
        assert_eq!(
            line(
                &l,
                "modules.pop3s_banner.tcp.tls_config.insecure_skip_verify"
            ),
            Some(11)
        );
        assert_eq!(
            line(&l, "modules.irc_banner.tcp.query_response[0].send"),
            Some(16)
        );
        assert_eq!(
            line(&l, "modules.irc_banner.tcp.query_response[1].expect"),
            Some(17)
        );
        assert_eq!(
            line(&l, "modules.irc_banner.tcp.query_response[1].send"),
            Some(18)
        );
        assert_eq!(
            line(&l, "modules.irc_banner.tcp.query_response[2].expect"),
            Some(19)
        );
        assert_eq!(line(&l, "modules.icmp_ttl5.timeout"), Some(22));
        assert_eq!(line(&l, "modules.icmp_ttl5.icmp.ttl"), Some(24));
    }

    #[test]
    fn indented_sequences_and_nested_items() {
        let l = YamlLines::scan(
            "a:\n  list:\n    - x: 1\n      y: 2\n    - - inner: 3\n    -\n      z: 4\n  after: 5\n",
        );
        assert_eq!(line(&l, "a.list[0].x"), Some(3));
        assert_eq!(line(&l, "a.list[0].y"), Some(4));
        assert_eq!(line(&l, "a.list[1]"), Some(5));
        assert_eq!(line(&l, "a.list[2].z"), Some(7));
        assert_eq!(line(&l, "a.after"), Some(8));
    }

    #[test]
    fn an_unplaced_key_falls_back_to_its_nearest_ancestor() {
        let l = YamlLines::scan("modules:\n  m:\n    http: {method: POST, headers: {A: b}}\n");
        assert_eq!(line(&l, "modules.m.http.headers.A"), Some(3));
        assert_eq!(line(&l, "modules.m.http.method"), Some(3));
        assert_eq!(line(&l, "modules.other"), Some(1));
        assert_eq!(line(&l, "nothing"), None);
    }

    #[test]
    fn block_scalars_quotes_and_flows_hold_no_keys() {
        let text = "m:
  body: |
    looks: like a key
    - and: an item
  quoted: \"spans
    fake: key
    lines\"
  flow: [a,
    fake: b,
    c]
  single: 'it''s: fine'
  folded: >-
    more: text

  real: 1
";
        let l = YamlLines::scan(text);
        assert_eq!(line(&l, "m.body"), Some(2));
        assert_eq!(line(&l, "m.body.looks"), Some(2), "falls back to body");
        assert_eq!(line(&l, "m.quoted"), Some(5));
        assert_eq!(line(&l, "m.fake"), Some(1), "never placed");
        assert_eq!(line(&l, "m.flow"), Some(8));
        assert_eq!(line(&l, "m.single"), Some(11));
        assert_eq!(line(&l, "m.folded"), Some(12));
        assert_eq!(line(&l, "m.real"), Some(15));
    }

    #[test]
    fn quoted_keys_comments_and_document_markers() {
        let text = "---\n# a comment: not a key\n\"my module\":  # trailing\n  'it''s': 1\n  url: http://x:80/a # colon in a value\n  \"a\\\"b\": 2\n...\n";
        let l = YamlLines::scan(text);
        assert_eq!(line(&l, "my module"), Some(3));
        assert_eq!(line(&l, "my module.it's"), Some(4));
        assert_eq!(line(&l, "my module.url"), Some(5));
        assert_eq!(line(&l, "my module.a\"b"), Some(6));
        assert_eq!(line(&l, "a comment"), None);
    }

    #[test]
    fn paths_display_as_the_report_writes_them() {
        let p = KeyPath::root()
            .key("modules")
            .key("irc")
            .key("tcp")
            .key("query_response")
            .index(2)
            .key("send");
        assert_eq!(p.to_string(), "modules.irc.tcp.query_response[2].send");
        assert_eq!(p.skip(1).to_string(), "irc.tcp.query_response[2].send");
    }
}
