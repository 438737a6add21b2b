//! Declaring metric families. The host owns HELP, TYPE, units and label
//! names: a sample of an undeclared family or with an undeclared label is
//! dropped, so declare everything `run` may emit.

use crate::{MetricFamily, MetricKind};

/// A family under construction: see [`gauge`], [`counter`], [`histogram`].
pub type Family = MetricFamily;

fn new(name: &str, help: &str, kind: MetricKind) -> Family {
    MetricFamily {
        name: name.to_string(),
        help: help.to_string(),
        kind,
        unit: None,
        labels: Vec::new(),
        buckets: Vec::new(),
    }
}

/// A value that is set by each run; a run that does not set it removes it.
pub fn gauge(name: &str, help: &str) -> Family {
    new(name, help, MetricKind::Gauge)
}

/// A running total; each sample adds a non-negative increment. The name
/// must end in `_total`.
pub fn counter(name: &str, help: &str) -> Family {
    new(name, help, MetricKind::Counter)
}

/// Observations counted into `buckets` (upper bounds, increasing).
pub fn histogram(name: &str, help: &str, buckets: &[f64]) -> Family {
    MetricFamily {
        buckets: buckets.to_vec(),
        ..new(name, help, MetricKind::Histogram)
    }
}

/// Builder methods on a family.
pub trait FamilyExt {
    /// Label names samples of this family may carry.
    fn labels(self, labels: &[&str]) -> Self;
    /// The unit, which the name must end with (`_seconds` for `seconds`).
    fn unit(self, unit: &str) -> Self;
}

impl FamilyExt for Family {
    fn labels(mut self, labels: &[&str]) -> Self {
        self.labels = labels.iter().map(|s| s.to_string()).collect();
        self
    }

    fn unit(mut self, unit: &str) -> Self {
        self.unit = Some(unit.to_string());
        self
    }
}
