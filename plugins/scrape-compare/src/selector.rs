//! PromQL series selectors, parsed by GreptimeDB's `promql-parser`.
//!
//! Why that crate: it is the maintained Rust implementation of Prometheus's
//! own grammar (lexer, string escapes, `or` inside braces, UTF-8 quoted
//! names), and it builds regular-expression matchers the way Prometheus
//! does: anchored at both ends (`^(?:re)$`), with Go's literal `{` accepted.
//! A selector copied from a dashboard or an alert rule therefore selects
//! here exactly what it selects in Prometheus. Its cost is size: about
//! 400 KiB of the plugin's `.wasm` (an LR parser table and full Unicode
//! regular expressions). A hand-written `name{...}` reader would be smaller
//! and would disagree with Prometheus on escapes and regex anchoring, which
//! is the one thing a selector must not do.
//!
//! Only a plain selector is accepted: no range, offset, `@`, function or
//! operator, since the probe reads one exposition, not a time series.

use nom_openmetrics::Label;
use promql_parser::label::Matcher;
use promql_parser::parser::{self, Expr};

/// The label PromQL reads the metric name from.
const NAME_LABEL: &str = "__name__";

/// A parsed selector, ready to match samples.
#[derive(Debug, Clone)]
pub struct Selector {
    name: Option<String>,
    /// Every matcher must match...
    all: Vec<Matcher>,
    /// ...or, when `or` was used inside the braces, every matcher of one
    /// of these groups.
    any_of: Vec<Vec<Matcher>>,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, String> {
        let expr = parser::parse(text).map_err(|e| format!("{text:?} is not a selector: {e}"))?;
        let Expr::VectorSelector(vs) = expr else {
            return Err(format!(
                "{text:?} is an expression; write a series selector such as name{{label=\"v\"}}"
            ));
        };
        if vs.offset.is_some() || vs.at.is_some() {
            return Err(format!(
                "{text:?}: `offset` and `@` need a time series; an exposition has one value per series"
            ));
        }
        Ok(Selector {
            name: vs.name,
            all: vs.matchers.matchers,
            any_of: vs.matchers.or_matchers,
        })
    }

    /// Whether a sample belongs to the selection. A label the sample does
    /// not carry reads as the empty string, as in PromQL (`{x=""}` selects
    /// series without `x`).
    pub fn matches(&self, name: &str, labels: &[Label<'_>]) -> bool {
        if self.name.as_deref().is_some_and(|n| n != name) {
            return false;
        }
        let value = |label: &str| -> &str {
            if label == NAME_LABEL {
                return name;
            }
            labels
                .iter()
                .find(|l| l.name == label)
                .map_or("", |l| l.value.as_str())
        };
        let group = |ms: &[Matcher]| ms.iter().all(|m| m.is_match(value(&m.name)));
        if self.any_of.is_empty() {
            group(&self.all)
        } else {
            self.any_of.iter().any(|g| group(g))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels<'a>(pairs: &[(&'a str, &str)]) -> Vec<Label<'a>> {
        pairs
            .iter()
            .map(|(k, v)| Label::new(k, (*v).to_string()))
            .collect()
    }

    fn sel(text: &str) -> Selector {
        Selector::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_four_matchers() {
        let s = sel(r#"psi_field_prediction_error{pod="a",ns=~"prod|stage",x!="y",y!~"tmp.*"}"#);
        let good = [("pod", "a"), ("ns", "prod"), ("x", "z"), ("y", "keep")];
        assert!(s.matches("psi_field_prediction_error", &labels(&good)));
        assert!(!s.matches("psi_field_density", &labels(&good)));
        for (k, v) in [
            ("pod", "b"),
            ("ns", "production"),
            ("x", "y"),
            ("y", "tmp1"),
        ] {
            let bad: Vec<(&str, &str)> = good
                .iter()
                .map(|&(name, value)| (name, if name == k { v } else { value }))
                .collect();
            assert!(
                !s.matches("psi_field_prediction_error", &labels(&bad)),
                "{k}={v}"
            );
        }
    }

    #[test]
    fn regexes_match_the_whole_value() {
        let s = sel(r#"up{job=~"api"}"#);
        assert!(s.matches("up", &labels(&[("job", "api")])));
        assert!(!s.matches("up", &labels(&[("job", "api-2")])));
        assert!(!s.matches("up", &labels(&[("job", "my-api")])));
    }

    #[test]
    fn a_missing_label_reads_as_empty() {
        let s = sel(r#"up{zone=""}"#);
        assert!(s.matches("up", &labels(&[])));
        assert!(!s.matches("up", &labels(&[("zone", "a")])));
        let s = sel(r#"up{zone!=""}"#);
        assert!(!s.matches("up", &labels(&[])));
    }

    #[test]
    fn name_by_label_and_or_groups() {
        let s = sel(r#"{__name__=~"portal_.*"}"#);
        assert!(s.matches("portal_up", &labels(&[])));
        assert!(!s.matches("up", &labels(&[])));
        let s = sel(r#"up{job="a" or job="b"}"#);
        assert!(s.matches("up", &labels(&[("job", "b")])));
        assert!(!s.matches("up", &labels(&[("job", "c")])));
    }

    #[test]
    fn expressions_and_bad_selectors_are_refused() {
        for bad in [
            "portal_up == 1",
            "rate(x[5m])",
            "up[5m]",
            "up offset 5m",
            "up{",
            r#"up{job=~"("}"#,
            "",
            "1",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
