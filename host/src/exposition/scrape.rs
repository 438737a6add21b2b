//! One scrape of the whole exposition, encoded piece by piece.
//!
//! At 100,000 probes the text is hundreds of MiB; built whole, every scrape
//! would hold a second copy of every probe's lines at once. A [`Scrape`]
//! holds only a snapshot of pointers (each probe's published lines, the
//! family table) and writes the text in pieces of a bounded size, family by
//! family, in the same order as the text built whole.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::encode::{self, Format};
use super::self_metrics::{HostFamily, OneFamily, Presence};
use super::{FamilyDef, FamilyId, HostFamilies, Rendered};

/// Where one probe's lines stand: the next of its chunks and of its
/// gauges not yet written, and their families (`NONE` when all are
/// written). Both are ascending by family, so one pass over the families in
/// order consumes each once. The families are kept here, in one array, so
/// that the pass over every probe for a family reads a probe's lines only
/// when it has some of that family.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// The next of the probe's chunks.
    chunks: u32,
    /// Where the next of its gauges starts (a byte offset).
    gauges: u32,
    chunk_family: FamilyId,
    gauge_family: FamilyId,
}

/// No family: a probe's lines of that kind are all written.
const NONE: FamilyId = FamilyId::MAX;

impl Cursor {
    fn new(r: &Rendered) -> Cursor {
        Cursor {
            chunks: 0,
            gauges: 0,
            chunk_family: r.chunks.id_at(0).unwrap_or(NONE),
            gauge_family: r.gauges.family_at(0).unwrap_or(NONE),
        }
    }
}

/// A snapshot of the exposition being written out.
#[derive(Debug)]
pub struct Scrape {
    format: Format,
    table: Vec<Arc<FamilyDef>>,
    rendered: Vec<Arc<Rendered>>,
    global: BTreeMap<FamilyId, String>,
    host: HostFamilies,
    /// By family id: the host family of each probe's lines it is, if any.
    per_probe: Vec<Option<HostFamily>>,
    cursors: Vec<Cursor>,
    /// The families with any line, ascending; `family` indexes it.
    present: Vec<FamilyId>,
    family: usize,
    /// Within the current family: its header is written, and the next
    /// probe to write.
    in_family: bool,
    probe: usize,
    finished: bool,
}

impl Scrape {
    pub(super) fn new(
        format: Format,
        table: Vec<Arc<FamilyDef>>,
        rendered: Vec<Arc<Rendered>>,
        global: BTreeMap<FamilyId, String>,
        host: HostFamilies,
    ) -> Scrape {
        let mut has_lines = vec![false; table.len()];
        let per_probe: Vec<Option<HostFamily>> = (0..table.len() as FamilyId)
            .map(|id| host.probe_family(id))
            .collect();
        // A family seen once needs no further look.
        let host_ids: Vec<(FamilyId, HostFamily)> = per_probe
            .iter()
            .enumerate()
            .filter_map(|(id, f)| Some((id as FamilyId, (*f)?)))
            .collect();
        for r in rendered.iter().filter(|r| r.published) {
            for (id, family) in &host_ids {
                if !has_lines[*id as usize] {
                    host.render_probe_family(
                        *family,
                        &r.labels,
                        r.last.as_ref(),
                        &r.counts,
                        &mut Presence(&mut has_lines),
                    );
                }
            }
        }
        let ids = rendered
            .iter()
            .flat_map(|r| r.chunks.iter().map(|(id, _)| id).chain(r.gauges.families()))
            .chain(global.keys().copied());
        for id in ids {
            if let Some(seen) = has_lines.get_mut(id as usize) {
                *seen = true;
            }
        }
        let present = (0..table.len() as FamilyId)
            .filter(|id| has_lines[*id as usize])
            .collect();
        Scrape {
            format,
            host,
            per_probe,
            cursors: rendered.iter().map(|r| Cursor::new(r)).collect(),
            table,
            rendered,
            global,
            present,
            family: 0,
            in_family: false,
            probe: 0,
            finished: false,
        }
    }

    /// Appends the next piece of the text to `out`, stopping once `out`
    /// holds `limit` bytes (it goes past by at most one probe's lines of
    /// one family, and always writes something while anything is left).
    /// Returns whether anything is left to write.
    pub fn fill(&mut self, out: &mut String, limit: usize) -> bool {
        while let Some(&id) = self.present.get(self.family) {
            if !self.in_family {
                encode::push_header(out, &self.table[id as usize], self.format);
                self.in_family = true;
                self.probe = 0;
            }
            let per_probe = self.per_probe.get(id as usize).copied().flatten();
            while let Some(at) = self.cursors.get_mut(self.probe) {
                if let Some(family) = per_probe
                    && let Some(r) = self.rendered.get(self.probe)
                    && r.published
                {
                    self.host.render_probe_family(
                        family,
                        &r.labels,
                        r.last.as_ref(),
                        &r.counts,
                        &mut OneFamily { id, out },
                    );
                }
                if at.chunk_family == id
                    && let Some(r) = self.rendered.get(self.probe)
                {
                    if let Some((_, lines)) = r.chunks.get(at.chunks as usize) {
                        out.push_str(lines);
                    }
                    at.chunks += 1;
                    at.chunk_family = r.chunks.id_at(at.chunks as usize).unwrap_or(NONE);
                }
                if at.gauge_family == id
                    && let Some(r) = self.rendered.get(self.probe)
                {
                    let def = &self.table[id as usize];
                    at.gauges = r.gauges.write_family(at.gauges, id, def, &r.labels, out);
                    at.gauge_family = r.gauges.family_at(at.gauges).unwrap_or(NONE);
                }
                self.probe += 1;
                // Checked after a probe's lines, so every call moves on.
                if out.len() >= limit {
                    return true;
                }
            }
            if let Some(lines) = self.global.get(&id) {
                out.push_str(lines);
            }
            self.in_family = false;
            self.family += 1;
        }
        if !self.finished {
            encode::push_trailer(out, self.format);
            self.finished = true;
        }
        false
    }
}
