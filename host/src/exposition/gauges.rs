//! A run's gauges held as numbers and label values between runs, written
//! out as text by each scrape.
//!
//! A gauge line repeats its family's name and every label on each line
//! (`probe_http_duration_seconds{probe="p012345",phase="connect"} 0.0012`),
//! so held as text a run's gauges were the largest thing a probe kept:
//! about 0.9 KiB for http-health's sixteen. Held as family, value and the
//! plugin's label values they are a quarter of that, and the scrape, which
//! already writes each probe's host lines from numbers, writes these the
//! same way.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::encode::push_sample;
use super::family::{FamilyDef, FamilyId};
use super::series::line_labels;

/// One run's gauges, ascending by family and then by label values (the
/// order the text had), in one shared allocation.
///
/// Each entry: the family (`FamilyId`, little-endian), the value's bits
/// (`u64`, little-endian), the number of label values (`u16`), then each
/// value as its length (`u16`) and its bytes. Label values are at most
/// [`super::series::MAX_LABEL_VALUE`] bytes, checked before they get here.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    bytes: Option<Arc<[u8]>>,
}

const FAMILY: usize = size_of::<FamilyId>();
const VALUE: usize = size_of::<u64>();
const COUNT: usize = size_of::<u16>();

impl Gauges {
    /// Encodes a run's gauges, keyed by family and label values.
    pub fn new(gauges: &BTreeMap<(FamilyId, Vec<String>), f64>) -> Gauges {
        if gauges.is_empty() {
            return Gauges::default();
        }
        let size = gauges
            .keys()
            .map(|(_, values)| {
                FAMILY + VALUE + COUNT + values.iter().map(|v| COUNT + v.len()).sum::<usize>()
            })
            .sum();
        let mut bytes = Vec::with_capacity(size);
        for ((id, values), value) in gauges {
            bytes.extend_from_slice(&id.to_le_bytes());
            bytes.extend_from_slice(&value.to_bits().to_le_bytes());
            push_len(&mut bytes, values.len());
            for v in values {
                // A value too long to encode (never, after validation) is
                // written empty rather than cut inside a character.
                let v = if v.len() <= usize::from(u16::MAX) {
                    v.as_str()
                } else {
                    ""
                };
                push_len(&mut bytes, v.len());
                bytes.extend_from_slice(v.as_bytes());
            }
        }
        Gauges {
            bytes: Some(bytes.into()),
        }
    }

    fn bytes(&self) -> &[u8] {
        self.bytes.as_deref().unwrap_or_default()
    }

    /// The family of the entry at `at` (a byte offset), if one starts there.
    pub fn family_at(&self, at: u32) -> Option<FamilyId> {
        let bytes = self.bytes().get(at as usize..)?;
        Some(FamilyId::from_le_bytes(
            bytes.get(..FAMILY)?.try_into().ok()?,
        ))
    }

    /// Every entry, in order.
    fn entries(&self) -> Entries<'_> {
        Entries {
            bytes: self.bytes(),
            at: 0,
        }
    }

    /// The families with any gauge, ascending, each once.
    pub fn families(&self) -> impl Iterator<Item = FamilyId> + '_ {
        let mut last = None;
        self.entries().filter_map(move |e| {
            let new = last != Some(e.family);
            last = Some(e.family);
            new.then_some(e.family)
        })
    }

    /// Gauges (sample lines) held.
    pub fn lines(&self) -> usize {
        self.entries().count()
    }

    /// Writes the lines of the entries of family `id` from byte offset `at`
    /// on, with `host_labels` first (a plugin label the host also sets is
    /// left out), and returns the offset after them.
    pub fn write_family(
        &self,
        at: u32,
        id: FamilyId,
        def: &FamilyDef,
        host_labels: &[(String, String)],
        out: &mut String,
    ) -> u32 {
        let mut entries = Entries {
            bytes: self.bytes(),
            at: at as usize,
        };
        let mut end = entries.at;
        while let Some(e) = entries.next()
            && e.family == id
        {
            let labels = line_labels(host_labels, def, e.values());
            push_sample(out, &def.name, "", labels, None, e.value);
            end = entries.at;
        }
        u32::try_from(end).unwrap_or(u32::MAX)
    }

    /// The entries of the families `keep` accepts.
    pub fn retain(&self, keep: impl Fn(FamilyId) -> bool) -> Gauges {
        let mut bytes = Vec::new();
        let mut entries = self.entries();
        let mut start = 0;
        while let Some(e) = entries.next() {
            if keep(e.family) {
                bytes.extend_from_slice(self.bytes().get(start..entries.at).unwrap_or_default());
            }
            start = entries.at;
        }
        Gauges {
            bytes: (!bytes.is_empty()).then(|| bytes.into()),
        }
    }
}

fn push_len(bytes: &mut Vec<u8>, n: usize) {
    let n = u16::try_from(n).unwrap_or(u16::MAX);
    bytes.extend_from_slice(&n.to_le_bytes());
}

/// One decoded entry; its label values are read as they are written.
struct Entry<'a> {
    family: FamilyId,
    value: f64,
    count: u16,
    labels: &'a [u8],
}

impl<'a> Entry<'a> {
    fn values(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut rest = self.labels;
        (0..self.count).map_while(move |_| {
            let (len, tail) = rest.split_at_checked(COUNT)?;
            let len = usize::from(u16::from_le_bytes(len.try_into().ok()?));
            let (value, tail) = tail.split_at_checked(len)?;
            rest = tail;
            std::str::from_utf8(value).ok()
        })
    }
}

struct Entries<'a> {
    bytes: &'a [u8],
    /// Where the next entry starts.
    at: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        let rest = self.bytes.get(self.at..)?;
        let (family, rest) = rest.split_at_checked(FAMILY)?;
        let (value, rest) = rest.split_at_checked(VALUE)?;
        let (count, rest) = rest.split_at_checked(COUNT)?;
        let count = u16::from_le_bytes(count.try_into().ok()?);
        let mut len = 0;
        for _ in 0..count {
            let n = rest.get(len..len + COUNT)?;
            len += COUNT + usize::from(u16::from_le_bytes(n.try_into().ok()?));
        }
        let labels = rest.get(..len)?;
        self.at += FAMILY + VALUE + COUNT + len;
        Some(Entry {
            family: FamilyId::from_le_bytes(family.try_into().ok()?),
            value: f64::from_bits(u64::from_le_bytes(value.try_into().ok()?)),
            count,
            labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::family::Kind;

    fn def(name: &str, labels: &[&str]) -> FamilyDef {
        FamilyDef {
            name: name.into(),
            help: "h".into(),
            kind: Kind::Gauge,
            unit: None,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            buckets: vec![],
        }
    }

    fn gauges(entries: &[(FamilyId, &[&str], f64)]) -> Gauges {
        let map = entries
            .iter()
            .map(|(id, values, v)| ((*id, values.iter().map(|s| s.to_string()).collect()), *v))
            .collect();
        Gauges::new(&map)
    }

    fn text(g: &Gauges, defs: &[(FamilyId, FamilyDef)], host: &[(String, String)]) -> String {
        let mut out = String::new();
        let mut at = 0;
        for (id, def) in defs {
            if g.family_at(at) == Some(*id) {
                at = g.write_family(at, *id, def, host, &mut out);
            }
        }
        assert_eq!(g.family_at(at), None, "every entry written");
        out
    }

    #[test]
    fn entries_are_written_family_by_family_with_host_labels_first() {
        let g = gauges(&[
            (3, &["b\"x", "1"], 2.5),
            (1, &[], f64::NAN),
            (3, &["a", ""], -1.0),
            (7, &["evil"], f64::INFINITY),
        ]);
        let defs = [
            (1, def("one", &[])),
            (3, def("three", &["k", "n"])),
            (7, def("seven", &["probe"])),
        ];
        let host = [("probe".to_string(), "p".to_string())];
        assert_eq!(
            text(&g, &defs, &host),
            "one{probe=\"p\"} NaN\n\
             three{probe=\"p\",k=\"a\"} -1\n\
             three{probe=\"p\",k=\"b\\\"x\",n=\"1\"} 2.5\n\
             seven{probe=\"p\"} +Inf\n"
        );
        assert_eq!(g.lines(), 4);
        assert_eq!(g.families().collect::<Vec<_>>(), vec![1, 3, 7]);
    }

    #[test]
    fn retain_keeps_whole_entries_of_kept_families() {
        let g = gauges(&[
            (1, &["x"], 1.0),
            (2, &["yy"], 2.0),
            (2, &["z"], 3.0),
            (4, &[], 4.0),
        ]);
        let kept = g.retain(|id| id % 2 == 0);
        assert_eq!(kept.families().collect::<Vec<_>>(), vec![2, 4]);
        let defs = [(2, def("two", &["l"])), (4, def("four", &[]))];
        assert_eq!(
            text(&kept, &defs, &[]),
            "two{l=\"yy\"} 2\ntwo{l=\"z\"} 3\nfour 4\n"
        );
        assert_eq!(g.retain(|_| false).lines(), 0);
        assert_eq!(Gauges::default().family_at(0), None);
        assert_eq!(Gauges::default().families().count(), 0);
    }

    #[test]
    fn a_family_with_fewer_labels_than_held_writes_what_it_names() {
        // A family's labels are fixed once registered; if they ever
        // differed, the lines would still be well formed.
        let g = gauges(&[(0, &["a", "b"], 1.0)]);
        let defs = [(0, def("g", &["only"]))];
        assert_eq!(text(&g, &defs, &[]), "g{only=\"a\"} 1\n");
    }
}
