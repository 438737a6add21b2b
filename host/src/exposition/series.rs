//! One probe's series: validation of a run's samples against what its
//! plugin declared, and the state that outlives runs.
//!
//! Gauges are replaced by each run; counter totals and histogram buckets
//! accumulate for as long as the probe exists. A sample that breaks a rule
//! is dropped with a bounded reason; its neighbours still count.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::encode::{HistogramState, push_histogram, push_sample};
use super::family::{FamilyDef, FamilyId, Kind};
use super::gauges::Gauges;
use crate::runtime::record::Sample;

pub use crate::names::MAX_LABEL_VALUE;

/// Why a sample was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rejection {
    UnknownFamily,
    UndeclaredLabel,
    DuplicateLabel,
    LabelTooLong,
    InvalidValue,
}

impl Rejection {
    pub const ALL: [Rejection; 5] = [
        Rejection::UnknownFamily,
        Rejection::UndeclaredLabel,
        Rejection::DuplicateLabel,
        Rejection::LabelTooLong,
        Rejection::InvalidValue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::UnknownFamily => "unknown_family",
            Rejection::UndeclaredLabel => "undeclared_label",
            Rejection::DuplicateLabel => "duplicate_label",
            Rejection::LabelTooLong => "label_too_long",
            Rejection::InvalidValue => "invalid_value",
        }
    }
}

/// The families one plugin may emit, by name.
#[derive(Debug, Default, Clone)]
pub struct PluginFamilies {
    by_name: HashMap<String, (FamilyId, Arc<FamilyDef>)>,
}

impl PluginFamilies {
    pub fn insert(&mut self, id: FamilyId, def: Arc<FamilyDef>) {
        self.by_name.insert(def.name.clone(), (id, def));
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn contains(&self, id: FamilyId) -> bool {
        self.by_name.values().any(|(i, _)| *i == id)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The first family (by name) that declares a label called `label`.
    pub fn declaring_label(&self, label: &str) -> Option<&str> {
        let mut names: Vec<&str> = self
            .by_name
            .values()
            .filter(|(_, def)| def.labels.iter().any(|l| l == label))
            .map(|(_, def)| def.name.as_str())
            .collect();
        names.sort_unstable();
        names.first().copied()
    }
}

type Key = (FamilyId, Vec<String>);

/// A run's samples, validated and grouped, not yet applied.
#[derive(Debug, Default)]
pub struct Staged {
    gauges: BTreeMap<Key, f64>,
    increments: BTreeMap<Key, f64>,
    observations: Vec<(Key, f64)>,
    pub rejected: BTreeMap<Rejection, u64>,
    /// The first rejected samples' names (cut to 200 bytes) with why, so a
    /// plugin author sees which family was misspelled.
    pub examples: Vec<(String, Rejection)>,
}

/// Rejected samples named in [`Staged::examples`], at most.
const EXAMPLES: usize = 10;

impl Staged {
    /// Validates samples against the plugin's families.
    pub fn new(families: &PluginFamilies, samples: Vec<Sample>) -> Staged {
        let mut staged = Staged::default();
        for sample in samples {
            match key_of(families, &sample) {
                Ok((id, def, values)) => {
                    let v = sample.value;
                    match def.kind {
                        Kind::Gauge => {
                            staged.gauges.insert((id, values), v);
                        }
                        Kind::Counter if v.is_finite() && v >= 0.0 => {
                            *staged.increments.entry((id, values)).or_default() += v;
                        }
                        Kind::Histogram if !v.is_nan() => {
                            staged.observations.push(((id, values), v));
                        }
                        _ => staged.reject(&sample, Rejection::InvalidValue),
                    }
                }
                Err(r) => staged.reject(&sample, r),
            }
        }
        staged
    }

    fn reject(&mut self, sample: &Sample, why: Rejection) {
        *self.rejected.entry(why).or_default() += 1;
        if self.examples.len() < EXAMPLES {
            let mut name = sample.name.clone();
            let mut end = name.len().min(200);
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name.truncate(end);
            self.examples.push((name, why));
        }
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

fn key_of<'f>(
    families: &'f PluginFamilies,
    sample: &Sample,
) -> Result<(FamilyId, &'f FamilyDef, Vec<String>), Rejection> {
    let (id, def) = families
        .by_name
        .get(&sample.name)
        .ok_or(Rejection::UnknownFamily)?;
    let mut values: Vec<Option<&str>> = vec![None; def.labels.len()];
    for (name, value) in &sample.labels {
        let i = def
            .labels
            .iter()
            .position(|l| l == name)
            .ok_or(Rejection::UndeclaredLabel)?;
        if values[i].is_some() {
            return Err(Rejection::DuplicateLabel);
        }
        if value.len() > MAX_LABEL_VALUE {
            return Err(Rejection::LabelTooLong);
        }
        values[i] = Some(value);
    }
    let values = values
        .into_iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect();
    Ok((*id, def.as_ref(), values))
}

/// Everything a probe currently exposes from its plugin.
#[derive(Debug, Default, Clone)]
pub struct ProbeSeries {
    gauges: BTreeMap<Key, f64>,
    counters: BTreeMap<Key, f64>,
    histograms: BTreeMap<Key, HistogramState>,
}

impl ProbeSeries {
    /// Exposition lines this state renders to, the unit of the series budget.
    pub fn series(&self, table: &[Arc<FamilyDef>]) -> usize {
        self.gauges.len()
            + self.counters.len()
            + self
                .histograms
                .keys()
                .map(|(id, _)| table.get(*id as usize).map_or(0, |d| d.buckets.len() + 3))
                .sum::<usize>()
    }

    /// The state after a run's samples are applied, without changing this
    /// one, so a run over budget can be refused as a whole.
    pub fn with(&self, staged: &Staged, table: &[Arc<FamilyDef>]) -> ProbeSeries {
        let mut next = ProbeSeries {
            gauges: staged.gauges.clone(),
            counters: self.counters.clone(),
            histograms: self.histograms.clone(),
        };
        for (key, inc) in &staged.increments {
            *next.counters.entry(key.clone()).or_default() += inc;
        }
        for (key, v) in &staged.observations {
            let Some(def) = table.get(key.0 as usize) else {
                continue;
            };
            next.histograms
                .entry(key.clone())
                .or_insert_with(|| HistogramState::new(def.buckets.len()))
                .observe(&def.buckets, *v);
        }
        next
    }

    /// Keeps only the series of families `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(FamilyId) -> bool) {
        self.gauges.retain(|(id, _), _| keep(*id));
        self.counters.retain(|(id, _), _| keep(*id));
        self.histograms.retain(|(id, _), _| keep(*id));
    }

    /// Drops the gauges: a run that produced nothing leaves no stale values.
    pub fn clear_gauges(&mut self) {
        self.gauges.clear();
    }

    /// The gauges, as they are held between runs.
    pub fn gauges(&self) -> Gauges {
        Gauges::new(&self.gauges)
    }

    /// Renders every series, grouped by family id (ascending), with the
    /// host's labels first. A plugin label whose name the host also sets is
    /// left out: host labels cannot be overridden.
    pub fn render(
        &self,
        table: &[Arc<FamilyDef>],
        host_labels: &[(String, String)],
        out: &mut BTreeMap<FamilyId, String>,
    ) {
        let scalars = self
            .gauges
            .iter()
            .chain(self.counters.iter())
            .map(|(k, v)| (k, Some(*v), None));
        let hists = self.histograms.iter().map(|(k, h)| (k, None, Some(h)));
        render_entries(scalars.chain(hists), table, host_labels, out);
    }
}

fn render_entries<'a>(
    entries: impl Iterator<Item = (&'a Key, Option<f64>, Option<&'a HistogramState>)>,
    table: &[Arc<FamilyDef>],
    host_labels: &[(String, String)],
    out: &mut BTreeMap<FamilyId, String>,
) {
    for ((id, values), scalar, hist) in entries {
        let Some(def) = table.get(*id as usize) else {
            continue;
        };
        let labels: Vec<(&str, &str)> =
            line_labels(host_labels, def, values.iter().map(String::as_str)).collect();
        let buf = out.entry(*id).or_default();
        match (scalar, hist) {
            (Some(v), _) => push_sample(buf, &def.name, "", labels.iter().copied(), None, v),
            (None, Some(h)) => push_histogram(buf, def, &labels, h),
            (None, None) => {}
        }
    }
}

/// A line's labels: the host's first, then the plugin's `values` of
/// `def`'s labels, but for any whose name the host also sets (host labels
/// cannot be overridden).
pub(super) fn line_labels<'a>(
    host_labels: &'a [(String, String)],
    def: &'a FamilyDef,
    values: impl Iterator<Item = &'a str> + 'a,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    let host = host_labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let own = def
        .labels
        .iter()
        .zip(values)
        .filter(|(name, _)| !host_labels.iter().any(|(k, _)| k == *name))
        .map(|(name, value)| (name.as_str(), value));
    host.chain(own)
}

/// Rendered lines of one probe, by family, in one allocation at its exact
/// size: a probe holds them from one run to the next (100,000 probes hold
/// some 30 families each), so a string per family with its allocator
/// header, or the slack of a grown buffer, would be held 3 million times.
#[derive(Debug, Default)]
pub struct Chunks {
    /// Every family's lines, one family after the other.
    text: Box<str>,
    /// Ascending by family: each family and where its lines end in `text`.
    index: Box<[(FamilyId, u32)]>,
}

impl Chunks {
    pub fn new(map: BTreeMap<FamilyId, String>) -> Chunks {
        Chunks::collect(map.iter().map(|(id, chunk)| (*id, chunk.as_str())))
    }

    /// Copies `parts` into one text, sized before anything is copied:
    /// shrinking a grown buffer leaves the probes' allocations scattered
    /// over the heap, and a scrape, which visits every probe once per
    /// family, then misses the cache at each.
    fn collect<'a>(parts: impl Iterator<Item = (FamilyId, &'a str)> + Clone) -> Chunks {
        let parts = parts.filter(|(_, chunk)| !chunk.is_empty());
        let mut text = String::with_capacity(parts.clone().map(|(_, c)| c.len()).sum());
        let mut index = Vec::with_capacity(parts.clone().count());
        for (id, chunk) in parts {
            text.push_str(chunk);
            index.push((id, u32::try_from(text.len()).unwrap_or(u32::MAX)));
        }
        Chunks {
            text: text.into_boxed_str(),
            index: index.into_boxed_slice(),
        }
    }

    /// The family of the `i`th lines, if there are that many, without
    /// touching the text.
    pub fn id_at(&self, i: usize) -> Option<FamilyId> {
        self.index.get(i).map(|(id, _)| *id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (FamilyId, &str)> + Clone {
        (0..self.index.len()).filter_map(|i| self.get(i))
    }

    /// The `i`th family's lines, in ascending order of family.
    pub fn get(&self, i: usize) -> Option<(FamilyId, &str)> {
        let (id, end) = *self.index.get(i)?;
        let start = match i {
            0 => 0,
            _ => self.index[i - 1].1 as usize,
        };
        Some((id, self.text.get(start..end as usize)?))
    }

    /// The lines of the families `keep` accepts.
    pub fn retain(&self, keep: impl Fn(FamilyId) -> bool) -> Chunks {
        Chunks::collect(self.iter().filter(|(id, _)| keep(*id)))
    }

    /// Sample lines held (each ends with a newline).
    pub fn lines(&self) -> usize {
        self.text.bytes().filter(|b| *b == b'\n').count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, kind: Kind, labels: &[&str], buckets: &[f64]) -> Arc<FamilyDef> {
        Arc::new(FamilyDef {
            name: name.into(),
            help: "h".into(),
            kind,
            unit: None,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            buckets: buckets.to_vec(),
        })
    }

    fn setup() -> (Vec<Arc<FamilyDef>>, PluginFamilies) {
        let table = vec![
            def("g", Kind::Gauge, &["phase"], &[]),
            def("c_total", Kind::Counter, &[], &[]),
            def("h", Kind::Histogram, &[], &[1.0]),
        ];
        let mut fams = PluginFamilies::default();
        for (i, d) in table.iter().enumerate() {
            fams.insert(i as FamilyId, d.clone());
        }
        (table, fams)
    }

    fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    fn render(s: &ProbeSeries, table: &[Arc<FamilyDef>]) -> String {
        let mut out = BTreeMap::new();
        s.render(table, &[("probe".into(), "p".into())], &mut out);
        out.into_values().collect()
    }

    #[test]
    fn gauges_replace_counters_accumulate() {
        let (table, fams) = setup();
        let run1 = Staged::new(
            &fams,
            vec![
                sample("g", &[("phase", "a")], 1.0),
                sample("c_total", &[], 2.0),
                sample("h", &[], 0.5),
            ],
        );
        let s1 = ProbeSeries::default().with(&run1, &table);
        let run2 = Staged::new(
            &fams,
            vec![
                sample("g", &[("phase", "b")], 3.0),
                sample("c_total", &[], 1.0),
            ],
        );
        let s2 = s1.with(&run2, &table);
        assert_eq!(
            render(&s2, &table),
            "g{probe=\"p\",phase=\"b\"} 3\nc_total{probe=\"p\"} 3\nh_bucket{probe=\"p\",le=\"1\"} 1\nh_bucket{probe=\"p\",le=\"+Inf\"} 1\nh_count{probe=\"p\"} 1\nh_sum{probe=\"p\"} 0.5\n"
        );
        assert_eq!(s2.series(&table), 1 + 1 + 4);
    }

    #[test]
    fn bad_samples_are_dropped_with_reasons() {
        let (_, fams) = setup();
        let staged = Staged::new(
            &fams,
            vec![
                sample("nope", &[], 1.0),
                sample("g", &[("other", "x")], 1.0),
                sample("g", &[("phase", "a"), ("phase", "b")], 1.0),
                sample("c_total", &[], -1.0),
                sample("c_total", &[], f64::NAN),
                sample("h", &[], f64::NAN),
                sample("g", &[("phase", &"x".repeat(MAX_LABEL_VALUE + 1))], 1.0),
                sample("g", &[], f64::NAN),
            ],
        );
        assert_eq!(staged.rejected.get(&Rejection::UnknownFamily), Some(&1));
        assert_eq!(staged.rejected.get(&Rejection::UndeclaredLabel), Some(&1));
        assert_eq!(staged.rejected.get(&Rejection::DuplicateLabel), Some(&1));
        assert_eq!(staged.rejected.get(&Rejection::InvalidValue), Some(&3));
        assert_eq!(staged.rejected.get(&Rejection::LabelTooLong), Some(&1));
        assert!(
            staged
                .examples
                .iter()
                .any(|(_, why)| *why == Rejection::UnknownFamily),
            "{:?}",
            staged.examples
        );
        assert_eq!(staged.gauges.len(), 1, "a NaN gauge is a value");
    }

    #[test]
    fn host_labels_win() {
        let table = vec![def("g", Kind::Gauge, &["probe", "x"], &[])];
        let mut fams = PluginFamilies::default();
        fams.insert(0, table[0].clone());
        let staged = Staged::new(
            &fams,
            vec![sample("g", &[("probe", "evil"), ("x", "1")], 1.0)],
        );
        let s = ProbeSeries::default().with(&staged, &table);
        assert_eq!(render(&s, &table), "g{probe=\"p\",x=\"1\"} 1\n");
    }

    #[test]
    fn chunks_keep_every_familys_lines_in_one_exact_allocation() {
        let mut map = BTreeMap::new();
        map.insert(3, "c 1\nc 2\n".to_string());
        map.insert(1, "a 1\n".to_string());
        map.insert(2, String::new());
        let chunks = Chunks::new(map);
        let all: Vec<(FamilyId, &str)> = chunks.iter().collect();
        assert_eq!(all, vec![(1, "a 1\n"), (3, "c 1\nc 2\n")]);
        assert_eq!(&*chunks.text, "a 1\nc 1\nc 2\n");
        assert_eq!(chunks.index.len(), 2);
        assert_eq!(chunks.lines(), 3);
        let kept = chunks.retain(|id| id == 3);
        assert_eq!(kept.iter().collect::<Vec<_>>(), vec![(3, "c 1\nc 2\n")]);
        assert_eq!(kept.lines(), 2);
        assert_eq!(Chunks::default().iter().count(), 0);
    }

    #[test]
    fn gauges_render_alone() {
        let (table, fams) = setup();
        let staged = Staged::new(
            &fams,
            vec![
                sample("g", &[("phase", "a")], 2.0),
                sample("c_total", &[], 1.0),
            ],
        );
        let s = ProbeSeries::default().with(&staged, &table);
        // One gauge and one counter.
        assert_eq!(s.series(&table), 2);
        let gauges = s.gauges();
        let mut text = String::new();
        gauges.write_family(0, 0, &table[0], &[("probe".into(), "p".into())], &mut text);
        assert_eq!(gauges.lines(), 1);
        assert_eq!(text, "g{probe=\"p\",phase=\"a\"} 2\n");
    }
}
