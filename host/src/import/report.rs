//! The import report: every option of the source that was not carried
//! over, and what the operator should know about what was, each with its
//! line in the source file.
//!
//! Its contract is that nothing is dropped silently: an importer reports
//! an option it cannot convert, a key it does not know, a module it could
//! not import or had to rename. Notes (a file that cannot be read on this
//! machine, a path whose meaning changed) are information, not losses;
//! [`Report::all_carried`] ignores them.

use std::fmt;

/// What happened to one key of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Known to the importer, but the target has nothing equivalent (or
    /// refuses it on principle, as with credentials): why.
    NotCarried(String),
    /// Not an option the importer knows.
    Unknown,
    /// A whole module was left out: why.
    Skipped(String),
    /// The module's name is not a valid probe name: the name it got.
    Renamed(String),
    /// Carried over, with something to know.
    Note(String),
}

impl Kind {
    /// Whether the output does less than the source here.
    pub fn is_loss(&self) -> bool {
        !matches!(self, Kind::Note(_))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::NotCarried(why) => write!(f, "not carried over: {why}"),
            Kind::Unknown => f.write_str("unknown key: not carried over"),
            Kind::Skipped(why) => write!(f, "module not imported: {why}"),
            Kind::Renamed(to) => write!(
                f,
                "renamed to probe {to:?}: a probe name is 1-128 letters, digits, `_`, `-`, `.` or `:`, starting with a letter or digit; scrape /probe?module={to}"
            ),
            Kind::Note(what) => write!(f, "note: {what}"),
        }
    }
}

/// One item of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The line in the source (from 1); `None` for the file as a whole.
    pub line: Option<usize>,
    /// The key, as `module.section.key`; empty for the file as a whole.
    pub path: String,
    pub kind: Kind,
}

/// Everything an import has to say, in source order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The source file as the operator named it.
    pub source: String,
    /// Modules in the source, and probes written.
    pub modules: usize,
    pub probes: usize,
    findings: Vec<Finding>,
}

impl Report {
    pub fn new(source: impl Into<String>) -> Report {
        Report {
            source: source.into(),
            ..Report::default()
        }
    }

    pub fn push(&mut self, line: Option<usize>, path: impl Into<String>, kind: Kind) {
        self.findings.push(Finding {
            line,
            path: path.into(),
            kind,
        });
    }

    /// The findings in source order (file-wide ones last, each group in
    /// the order found).
    pub fn findings(&self) -> Vec<&Finding> {
        let mut all: Vec<&Finding> = self.findings.iter().collect();
        all.sort_by_key(|f| f.line.unwrap_or(usize::MAX));
        all
    }

    /// True when every option and module was carried over (notes aside).
    pub fn all_carried(&self) -> bool {
        !self.findings.iter().any(|f| f.kind.is_loss())
    }

    /// Findings that are losses.
    pub fn losses(&self) -> usize {
        self.findings.iter().filter(|f| f.kind.is_loss()).count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in self.findings() {
            f.write_str(&self.source)?;
            if let Some(line) = finding.line {
                write!(f, ":{line}")?;
            }
            if !finding.path.is_empty() {
                write!(f, ": {}", finding.path)?;
            }
            writeln!(f, ": {}", finding.kind)?;
        }
        let losses = self.losses();
        write!(
            f,
            "{}: {} module{} imported as {} probe{}; ",
            self.source,
            self.modules,
            if self.modules == 1 { "" } else { "s" },
            self.probes,
            if self.probes == 1 { "" } else { "s" },
        )?;
        match losses {
            0 => write!(f, "everything carried over"),
            1 => write!(f, "1 item not carried over"),
            n => write!(f, "{n} items not carried over"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_print_in_line_order_with_file_wide_ones_last() {
        let mut r = Report::new("blackbox.yml");
        r.modules = 2;
        r.probes = 2;
        r.push(None, "", Kind::Note("every probe has allow = []".into()));
        r.push(
            Some(14),
            "http_basic.http.basic_auth",
            Kind::NotCarried("credentials must come from secrets".into()),
        );
        r.push(Some(3), "x.http.nope", Kind::Unknown);
        assert_eq!(
            r.to_string(),
            "blackbox.yml:3: x.http.nope: unknown key: not carried over\n\
             blackbox.yml:14: http_basic.http.basic_auth: not carried over: credentials must come from secrets\n\
             blackbox.yml: note: every probe has allow = []\n\
             blackbox.yml: 2 modules imported as 2 probes; 2 items not carried over"
        );
        assert!(!r.all_carried());
        assert_eq!(r.losses(), 2);
    }

    #[test]
    fn notes_are_not_losses() {
        let mut r = Report::new("b.yml");
        r.modules = 1;
        r.probes = 1;
        r.push(Some(2), "m", Kind::Note("fine".into()));
        assert!(r.all_carried());
        assert!(
            r.to_string()
                .ends_with("1 module imported as 1 probe; everything carried over")
        );
        assert!(Kind::Renamed("a_b".into()).is_loss());
        assert!(Kind::Skipped("why".into()).is_loss());
    }
}
