//! Building a run's report.

use crate::{Label, Report, Sample};

/// The samples of a run, then its verdict.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    samples: Vec<Sample>,
}

impl Outcome {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sample with labels (gauge value, counter increment or
    /// histogram observation, as the family was declared).
    pub fn push(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.samples.push(Sample {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| Label {
                    name: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            value,
        });
        self
    }

    /// Sets a gauge without labels.
    pub fn set(&mut self, name: &str, value: f64) -> &mut Self {
        self.push(name, &[], value)
    }

    /// Adds to a counter without labels.
    pub fn add(&mut self, name: &str, increment: f64) -> &mut Self {
        self.push(name, &[], increment)
    }

    /// Observes a value into a histogram without labels.
    pub fn observe(&mut self, name: &str, value: f64) -> &mut Self {
        self.push(name, &[], value)
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The value of the first sample named `name` with exactly `labels`,
    /// for tests.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && s.labels
                        .iter()
                        .zip(labels)
                        .all(|(l, (k, v))| l.name == *k && l.value == *v)
            })
            .map(|s| s.value)
    }

    /// The report: `success` becomes `probe_success`; `message` explains a
    /// failure in logs and on the status page.
    pub fn finish(self, success: bool, message: Option<String>) -> Report {
        Report {
            success,
            message,
            samples: self.samples,
        }
    }
}
