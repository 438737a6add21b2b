//! Every `probes.toml` example in the documentation passes `wasmprobe check`.
//!
//! Readers copy the examples in README.md and docs/*.md as they are. When a
//! key is renamed, a plugin's schema tightens or a check is added, an
//! example that no longer loads is found by the next reader, not by review.
//! So this test reads those files with a CommonMark parser and takes every
//! fenced block whose info string is
//!
//! - `toml`: a complete probes.toml. It is written alone to a fresh
//!   directory, where `plugins` links to the built plugins (the examples
//!   say `plugin_dirs = ["plugins"]`) and `ca.pem`, `client.pem` and
//!   `client.key` hold a test CA and client certificate, and must pass
//!   `wasmprobe check`;
//! - `toml fragment`: a part of a file, or another TOML file (package.toml,
//!   a test expectation, the web config); it must parse as TOML.
//!
//! Any other info string that looks like TOML (`TOML`, `tolm`,
//! `toml fragmnet`, `toml,fragment`) fails the test, so a typo cannot hide
//! a block from it; and fewer complete examples than the docs hold today
//! fails it too, so it cannot pass by finding nothing. Every problem is
//! reported in one panic.

use std::path::{Path, PathBuf};
use std::process::Command;

use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};

use crate::harness::{root, wasm};
use crate::targets::{TestPki, pki};

/// Complete examples the docs hold today (README.md 1,
/// docs/configuration.md 1, docs/plugins.md 10). Fewer means the
/// extraction broke or examples were removed: lower it only with them.
const MIN_COMPLETE: usize = 12;

/// What a fenced block's info string makes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `toml`: a whole probes.toml, checked by `wasmprobe check`.
    Complete,
    /// `toml fragment`: parsed as TOML only.
    Fragment,
    /// Looks like TOML but is neither marker: a typo, refused.
    Unknown,
    /// Another language.
    Other,
}

/// A fenced code block of a markdown file.
#[derive(Debug)]
struct Block {
    /// The markdown file, relative to the workspace root.
    file: String,
    /// The line of the opening fence, from 1.
    line: usize,
    info: String,
    text: String,
}

impl Block {
    fn place(&self) -> String {
        format!("{}:{} (```{})", self.file, self.line, self.info)
    }
}

fn classify(info: &str) -> Class {
    let words: Vec<&str> = info.split_whitespace().collect();
    match words.as_slice() {
        ["toml"] => Class::Complete,
        ["toml", "fragment"] => Class::Fragment,
        _ if info
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(looks_like_toml) =>
        {
            Class::Unknown
        }
        _ => Class::Other,
    }
}

/// `toml` in any case, inside a longer word, or one edit away from it
/// (`tolm`, `tml`, `tomll`); `yaml`, `html` and `yml` are two away.
fn looks_like_toml(word: &str) -> bool {
    let word = word.to_ascii_lowercase();
    word.contains("toml") || edit_distance(&word, "toml") <= 1
}

/// Optimal string alignment distance: insertions, deletions,
/// substitutions and transpositions of adjacent characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Every fenced code block of `markdown` (indented ones have no info
/// string, so they are no examples), with the line of its opening fence.
fn fenced_blocks(file: &str, markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (event, range) in Parser::new(markdown).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                let line = markdown
                    .get(..range.start)
                    .map_or(0, |before| before.matches('\n').count())
                    + 1;
                open = Some(Block {
                    file: file.to_string(),
                    line,
                    info: info.trim().to_string(),
                    text: String::new(),
                });
            }
            Event::Text(text) => {
                if let Some(block) = open.as_mut() {
                    block.text.push_str(&text);
                }
            }
            Event::End(TagEnd::CodeBlock) => blocks.extend(open.take()),
            _ => {}
        }
    }
    blocks
}

/// README.md and docs/*.md, in a stable order.
fn doc_files() -> Vec<PathBuf> {
    let docs = root().join("docs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&docs)
        .unwrap_or_else(|e| panic!("read {}: {e}", docs.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    files.insert(0, root().join("README.md"));
    files
}

/// The block with probes.toml's line numbers, to read `check`'s
/// diagnostics against.
fn numbered(text: &str) -> String {
    text.lines()
        .enumerate()
        .map(|(i, l)| format!("{:>4} | {l}\n", i + 1))
        .collect()
}

/// Runs `wasmprobe check` on a complete example, alone in a fresh
/// directory; the failure, fully described, as the error.
fn check_complete(
    block: &Block,
    plugins: &Path,
    pki: &TestPki,
    cache: &Path,
) -> Result<(), String> {
    let place = block.place();
    let dir = tempfile::tempdir().map_err(|e| format!("{place}: tempdir: {e}"))?;
    let link = dir.path().join("plugins");
    std::os::unix::fs::symlink(plugins, &link).map_err(|e| {
        format!(
            "{place}: symlink {} -> {}: {e}",
            link.display(),
            plugins.display()
        )
    })?;
    // The TLS files the docs name, relative to the config.
    for (name, contents) in [
        ("ca.pem", &pki.ca_pem),
        ("client.pem", &pki.client_pem),
        ("client.key", &pki.client_key_pem),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, contents)
            .map_err(|e| format!("{place}: write {}: {e}", path.display()))?;
    }
    let config = dir.path().join("probes.toml");
    std::fs::write(&config, &block.text)
        .map_err(|e| format!("{place}: write {}: {e}", config.display()))?;
    let out = Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
        .arg("check")
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .env_remove("WASMPROBE_LOG")
        // The examples set no cache_dir: keep the default one (under
        // $XDG_CACHE_HOME) in target/, shared by every example and run.
        .env("XDG_CACHE_HOME", cache)
        .output()
        .map_err(|e| format!("{place}: cannot run wasmprobe: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && stdout.contains(": ok (") {
        return Ok(());
    }
    Err(format!(
        "{place}: `wasmprobe check` exited {:?}\n\
         --- probes.toml (its line 1 is {}:{}) ---\n{}\
         --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status.code(),
        block.file,
        block.line + 1,
        numbered(&block.text),
    ))
}

#[test]
fn every_documented_config_checks_clean() {
    // Fails loudly, with the command that builds them, when they are not.
    wasm("plugins", "http-health");
    let plugins = root().join("dist").join("plugins");
    let cache = root().join("target").join("e2e-docs-cache");
    let pki = pki();
    let mut failures = Vec::new();
    let (mut complete, mut fragments) = (0, 0);
    for path in doc_files() {
        let file = path
            .strip_prefix(root())
            .unwrap_or(path.as_path())
            .display()
            .to_string();
        let markdown = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        for block in fenced_blocks(&file, &markdown) {
            match classify(&block.info) {
                Class::Complete => {
                    complete += 1;
                    if let Err(failure) = check_complete(&block, &plugins, &pki, &cache) {
                        failures.push(failure);
                    }
                }
                Class::Fragment => {
                    fragments += 1;
                    if let Err(e) = block.text.parse::<toml::Table>() {
                        failures.push(format!(
                            "{}: does not parse as TOML: {e}\n--- block ---\n{}",
                            block.place(),
                            numbered(&block.text)
                        ));
                    }
                }
                Class::Unknown => failures.push(format!(
                    "{}: unknown info string {:?}: write `toml` for a complete probes.toml \
                     (run through `wasmprobe check`) or `toml fragment` for anything else \
                     (parsed as TOML only)",
                    block.place(),
                    block.info
                )),
                Class::Other => {}
            }
        }
    }
    if complete < MIN_COMPLETE {
        failures.push(format!(
            "found {complete} complete ```toml examples, expected at least {MIN_COMPLETE}: \
             is the extraction broken, or were examples removed (then lower MIN_COMPLETE)?"
        ));
    }
    assert!(
        failures.is_empty(),
        "{} problem(s) in the documentation's TOML examples \
         ({complete} complete, {fragments} fragments):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn info_strings_are_classified_strictly() {
    for (info, class) in [
        ("toml", Class::Complete),
        (" toml ", Class::Complete),
        ("toml fragment", Class::Fragment),
        ("toml  fragment", Class::Fragment),
        ("TOML", Class::Unknown),
        ("tolm", Class::Unknown),
        ("tml", Class::Unknown),
        ("tomll", Class::Unknown),
        ("toml fragmnet", Class::Unknown),
        ("toml,fragment", Class::Unknown),
        ("fragment toml", Class::Unknown),
        ("{.toml}", Class::Unknown),
        ("toml complete", Class::Unknown),
        ("", Class::Other),
        ("sh", Class::Other),
        ("yaml", Class::Other),
        ("yml", Class::Other),
        ("html", Class::Other),
        ("rust", Class::Other),
        ("json", Class::Other),
    ] {
        assert_eq!(classify(info), class, "info string {info:?}");
    }
}

#[test]
fn fenced_blocks_keep_their_line_and_text() {
    let markdown = "# T\n\n```toml\na = 1\n```\n\n- item\n\n  ~~~toml fragment\n  b = 2\n  ~~~\n\ntext\n\n    indented = 3\n";
    let blocks = fenced_blocks("x.md", markdown);
    let got: Vec<(usize, &str, &str)> = blocks
        .iter()
        .map(|b| (b.line, b.info.as_str(), b.text.as_str()))
        .collect();
    assert_eq!(
        got,
        [(3, "toml", "a = 1\n"), (9, "toml fragment", "b = 2\n")]
    );
}
