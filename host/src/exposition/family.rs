//! Metric families: what a plugin declared, checked once at load, and the
//! append-only table every rendered series points into.
//!
//! A family id never changes while the process lives, so series rendered
//! before a plugin (re)load stay attached to the right header.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::bindings::wasmprobe::plugin::types::{MetricFamily, MetricKind};
use crate::names::{
    PACKAGE_LABELS, RESERVED_LABELS, is_reserved_metric_name, is_valid_label_name,
    is_valid_metric_name,
};

/// How samples of a family combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// A family as declared (by a plugin or by the host).
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyDef {
    /// Full name; a counter's ends in `_total`.
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub unit: Option<String>,
    /// Label names a sample may carry, besides the host's.
    pub labels: Vec<String>,
    /// Histogram upper bounds, strictly increasing, without `+Inf`.
    pub buckets: Vec<f64>,
}

/// Longest HELP text kept; longer text is cut at a character boundary.
const MAX_HELP: usize = 1024;
const MAX_NAME: usize = 200;
const MAX_LABELS: usize = 16;
const MAX_BUCKETS: usize = 64;
/// Suffixes of the series histograms and counters generate.
const GENERATED_SUFFIXES: &[&str] = &["_bucket", "_count", "_sum", "_created"];

/// Why a declared family was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FamilyError {
    #[error("metric {0:?} is not a valid metric name")]
    InvalidName(String),
    #[error("metric {0:?} is reserved for the host")]
    Reserved(String),
    #[error("metric {name:?} ends in {suffix:?}, which is reserved for series the host generates")]
    GeneratedSuffix { name: String, suffix: &'static str },
    #[error("counter {0:?} must end in `_total`")]
    CounterSuffix(String),
    #[error("metric {name:?} must end in `_{unit}` to declare unit {unit:?}")]
    UnitSuffix { name: String, unit: String },
    #[error("metric {name:?}: label {label:?} is not a valid label name")]
    InvalidLabel { name: String, label: String },
    #[error("metric {name:?}: label {label:?} is set by the host")]
    ReservedLabel { name: String, label: String },
    #[error("metric {name:?}: label {label:?} is declared twice")]
    DuplicateLabel { name: String, label: String },
    #[error("metric {name:?}: more than {MAX_LABELS} labels")]
    TooManyLabels { name: String },
    #[error(
        "metric {name:?}: histogram buckets must be 1 to {MAX_BUCKETS} finite, strictly increasing bounds"
    )]
    Buckets { name: String },
    #[error("metric {name:?}: only histograms have buckets")]
    UnexpectedBuckets { name: String },
    #[error("metric {name:?} is declared as {ours} here and as {theirs} by plugin {owner:?}")]
    Conflict {
        name: String,
        ours: String,
        theirs: String,
        owner: String,
    },
    #[error("metric {0:?} is declared twice")]
    Duplicate(String),
}

impl FamilyDef {
    /// The family name in OpenMetrics: a counter's without `_total`.
    pub fn base_name(&self) -> &str {
        match self.kind {
            Kind::Counter => self.name.strip_suffix("_total").unwrap_or(&self.name),
            _ => &self.name,
        }
    }

    /// A plugin's declarations as the host's families, or every problem
    /// with them in one message (the plugin is then refused).
    pub fn declared(metrics: Vec<MetricFamily>) -> Result<Vec<FamilyDef>, String> {
        let mut families: Vec<FamilyDef> = Vec::new();
        let mut errors = Vec::new();
        for f in metrics {
            let def = FamilyDef {
                name: f.name,
                help: f.help,
                kind: match f.kind {
                    MetricKind::Gauge => Kind::Gauge,
                    MetricKind::Counter => Kind::Counter,
                    MetricKind::Histogram => Kind::Histogram,
                },
                unit: f.unit,
                labels: f.labels,
                buckets: f.buckets,
            };
            if families.iter().any(|d| d.name == def.name) {
                errors.push(format!("metric {:?} is declared twice", def.name));
                continue;
            }
            match def.validate_plugin_family() {
                Ok(d) => families.push(d),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if errors.is_empty() {
            Ok(families)
        } else {
            Err(format!(
                "invalid metric declarations: {}",
                errors.join("; ")
            ))
        }
    }

    /// Checks a plugin's declaration; cuts over-long HELP text.
    pub fn validate_plugin_family(mut self) -> Result<Self, FamilyError> {
        let name = self.name.clone();
        if name.len() > MAX_NAME || !is_valid_metric_name(&name) {
            return Err(FamilyError::InvalidName(name));
        }
        if is_reserved_metric_name(&name) {
            return Err(FamilyError::Reserved(name));
        }
        // `x_count` as a gauge would collide with a histogram `x`'s series.
        if let Some(suffix) = GENERATED_SUFFIXES.iter().find(|s| name.ends_with(*s)) {
            return Err(FamilyError::GeneratedSuffix { name, suffix });
        }
        if self.kind == Kind::Counter && !name.ends_with("_total") {
            return Err(FamilyError::CounterSuffix(name));
        }
        if let Some(unit) = &self.unit {
            let valid_unit =
                !unit.is_empty() && unit.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_unit || !self.base_name().ends_with(&format!("_{unit}")) {
                return Err(FamilyError::UnitSuffix {
                    name,
                    unit: unit.clone(),
                });
            }
        }
        if self.labels.len() > MAX_LABELS {
            return Err(FamilyError::TooManyLabels { name });
        }
        for (i, label) in self.labels.iter().enumerate() {
            if !is_valid_label_name(label) || label.starts_with("__") {
                return Err(FamilyError::InvalidLabel {
                    name,
                    label: label.clone(),
                });
            }
            if RESERVED_LABELS.contains(&label.as_str()) || PACKAGE_LABELS.contains(&label.as_str())
            {
                return Err(FamilyError::ReservedLabel {
                    name,
                    label: label.clone(),
                });
            }
            if self.labels[..i].contains(label) {
                return Err(FamilyError::DuplicateLabel {
                    name,
                    label: label.clone(),
                });
            }
        }
        match self.kind {
            Kind::Histogram => {
                let ok = !self.buckets.is_empty()
                    && self.buckets.len() <= MAX_BUCKETS
                    && self.buckets.iter().all(|b| b.is_finite())
                    && self.buckets.windows(2).all(|w| w[0] < w[1]);
                if !ok {
                    return Err(FamilyError::Buckets { name });
                }
            }
            _ if !self.buckets.is_empty() => {
                return Err(FamilyError::UnexpectedBuckets { name });
            }
            _ => {}
        }
        if self.help.len() > MAX_HELP {
            let mut cut = MAX_HELP;
            while !self.help.is_char_boundary(cut) {
                cut -= 1;
            }
            self.help.truncate(cut);
        }
        Ok(self)
    }

    /// Whether two declarations can share one family in the exposition.
    fn compatible(&self, other: &FamilyDef) -> bool {
        self.kind == other.kind && self.unit == other.unit && self.buckets == other.buckets
    }

    /// Every name this family's samples or OpenMetrics family use: two
    /// families may not share any.
    fn occupied(&self) -> Vec<String> {
        match self.kind {
            Kind::Gauge => vec![self.name.clone()],
            Kind::Counter => vec![self.base_name().to_string(), self.name.clone()],
            Kind::Histogram => ["", "_bucket", "_count", "_sum"]
                .iter()
                .map(|s| format!("{}{s}", self.name))
                .collect(),
        }
    }

    fn shape(&self) -> String {
        let mut s = self.kind.as_str().to_string();
        if let Some(u) = &self.unit {
            s.push_str(&format!(" in {u}"));
        }
        if self.kind == Kind::Histogram {
            s.push_str(&format!(" with buckets {:?}", self.buckets));
        }
        s
    }
}

/// Index of a family in the table.
pub type FamilyId = u32;

#[derive(Debug)]
struct Entry {
    def: Arc<FamilyDef>,
    /// Who declared it first: a plugin name, or "host".
    owner: String,
}

/// Every family the exposition knows, in a stable order.
#[derive(Debug, Default)]
pub struct FamilyTable {
    inner: RwLock<TableInner>,
}

#[derive(Debug, Default)]
struct TableInner {
    entries: Vec<Entry>,
    /// Every occupied name (see `FamilyDef::occupied`) to its family.
    by_name: HashMap<String, FamilyId>,
}

impl FamilyTable {
    /// Registers a family, or returns the id of a compatible one already
    /// registered under that name (HELP of the first declaration wins).
    pub fn register(&self, def: FamilyDef, owner: &str) -> Result<FamilyId, FamilyError> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = inner.by_name.get(&def.name) {
            let entry = &inner.entries[id as usize];
            if entry.def.name == def.name && entry.def.compatible(&def) {
                return Ok(id);
            }
            return Err(FamilyError::Conflict {
                name: def.name.clone(),
                ours: def.shape(),
                theirs: format!("{} (as {:?})", entry.def.shape(), entry.def.name),
                owner: entry.owner.clone(),
            });
        }
        let occupied = def.occupied();
        if let Some(&id) = occupied.iter().find_map(|n| inner.by_name.get(n)) {
            let entry = &inner.entries[id as usize];
            return Err(FamilyError::Conflict {
                name: def.name.clone(),
                ours: def.shape(),
                theirs: format!("{} (as {:?})", entry.def.shape(), entry.def.name),
                owner: entry.owner.clone(),
            });
        }
        let id = FamilyId::try_from(inner.entries.len()).unwrap_or(FamilyId::MAX);
        for n in occupied {
            inner.by_name.insert(n, id);
        }
        inner.entries.push(Entry {
            def: Arc::new(def),
            owner: owner.to_string(),
        });
        Ok(id)
    }

    pub fn get(&self, id: FamilyId) -> Option<Arc<FamilyDef>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.entries.get(id as usize).map(|e| e.def.clone())
    }

    /// A copy of every definition, indexed by id, for one scrape.
    pub fn snapshot(&self) -> Vec<Arc<FamilyDef>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.entries.iter().map(|e| e.def.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(name: &str) -> FamilyDef {
        FamilyDef {
            name: name.into(),
            help: "h".into(),
            kind: Kind::Gauge,
            unit: None,
            labels: vec![],
            buckets: vec![],
        }
    }

    #[test]
    fn plugin_declarations_are_checked() {
        assert!(
            gauge("probe_http_status_code")
                .validate_plugin_family()
                .is_ok()
        );
        assert!(gauge("probe_success").validate_plugin_family().is_err());
        assert!(gauge("wasmprobe_x").validate_plugin_family().is_err());
        assert!(gauge("bad-name").validate_plugin_family().is_err());
        assert!(gauge("x_bucket").validate_plugin_family().is_err());
        let counter = FamilyDef {
            kind: Kind::Counter,
            ..gauge("anchor_attempts")
        };
        assert_eq!(
            counter.validate_plugin_family(),
            Err(FamilyError::CounterSuffix("anchor_attempts".into()))
        );
        let unit = FamilyDef {
            unit: Some("seconds".into()),
            ..gauge("rtt_seconds")
        };
        assert!(unit.validate_plugin_family().is_ok());
        let bad_unit = FamilyDef {
            unit: Some("seconds".into()),
            ..gauge("rtt_ms")
        };
        assert!(bad_unit.validate_plugin_family().is_err());
        let reserved_label = FamilyDef {
            labels: vec!["probe".into()],
            ..gauge("x")
        };
        assert!(reserved_label.validate_plugin_family().is_err());
        let hist = FamilyDef {
            kind: Kind::Histogram,
            buckets: vec![0.1, 0.1],
            ..gauge("h_seconds")
        };
        assert!(hist.validate_plugin_family().is_err());
    }

    #[test]
    fn conflicting_declarations_are_refused() {
        let table = FamilyTable::default();
        let a = table.register(gauge("x"), "one");
        let b = table.register(gauge("x"), "two");
        assert_eq!(a, b);
        let c = table.register(
            FamilyDef {
                kind: Kind::Histogram,
                buckets: vec![1.0],
                ..gauge("x")
            },
            "three",
        );
        assert!(matches!(c, Err(FamilyError::Conflict { .. })));
    }

    #[test]
    fn families_may_not_share_generated_names() {
        let table = FamilyTable::default();
        assert!(table.register(gauge("packets_sent"), "one").is_ok());
        let counter = FamilyDef {
            kind: Kind::Counter,
            ..gauge("packets_sent_total")
        };
        assert!(matches!(
            table.register(counter, "two"),
            Err(FamilyError::Conflict { .. })
        ));
        let hist = FamilyDef {
            kind: Kind::Histogram,
            buckets: vec![1.0],
            ..gauge("rtt")
        };
        assert!(table.register(hist, "three").is_ok());
        assert!(matches!(
            table.register(gauge("rtt_count"), "four"),
            Err(FamilyError::Conflict { .. })
        ));
    }
}
