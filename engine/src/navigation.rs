//! In-memory navigation graph for entry points (Starling, SIGMOD 2024, §4.2; PipeANN, OSDI
//! 2025): a small Vamana graph over a sample of the index's nodes, held in RAM and searched
//! before the disk beam search, so that the beam search starts from the sample nodes nearest
//! the query instead of from the one medoid — the first hops of a search from the medoid
//! only walk towards the query's neighbourhood, and each costs W reads.
//!
//! Written once by the builder into `navigation.bin` ([`ssdann_layout::navigation`],
//! built by [`ssdann_builder::navigation`]) and loaded at open by default; an index written
//! before that file existed gets the default graph built at open from what is already in RAM
//! (the sample's PQ reconstructions: no read of the sector file). A merge keeps the file.
//! Only the sample's PQ codes and lists are held, and the search scores nodes by ADC from
//! the query's table (which the beam search computes anyway) — equal to the distance to the
//! reconstruction. RAM: `s × (M + ~4·NAV_R + 28)` bytes for s sample nodes. A sample slot
//! freed by a merge is skipped as a seed; a reused slot is scored by its current code, only
//! a worse seed.

use crate::error::EngineError;
use crate::Result;
use ssdann_builder::greedy_search::VisitedSet;
use ssdann_builder::navigation::{build_graph, default_nodes, sample_slots};
use ssdann_builder::neighbor_queue::NeighborQueue;
use ssdann_layout::labels::SlotLabels;
use ssdann_layout::navigation::{NavigationGraph, NAVIGATION_FILE};
use ssdann_layout::pq::{pq_distance, PQ_CENTROIDS};
use ssdann_layout::{IndexHeader, PqCodebook};
use std::path::Path;

/// Where an open index's navigation graph came from (`Index::navigation_source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NavigationSource {
    /// None: `OpenOptions::navigation_nodes = Some(0)`, or an index with no live node.
    Off,
    /// Read from the index's `navigation.bin`.
    File,
    /// Built at open: the index has no `navigation.bin` (written before it existed), or
    /// `OpenOptions::navigation_nodes` asked for a size.
    BuiltAtOpen,
}

/// The navigation graph: sample slots, their PQ codes (s × M) and a Vamana graph over them
/// (ids 0..s index `slots`).
pub(crate) struct Navigation {
    slots: Vec<u32>,
    codes: Vec<u8>,
    m: usize,
    adjacency: Vec<Vec<u32>>,
    medoid: u32,
}

/// A search thread's state for [`Navigation::seeds`].
#[derive(Default)]
pub(crate) struct NavScratch {
    queue: NeighborQueue,
    visited: VisitedSet,
}

impl Navigation {
    /// The navigation graph of an index state (its directory, header, PQ codebook, n × M
    /// codes and labels) as `requested` says: `Some(0)` none; `Some(k)` k sample nodes
    /// built now; `None` the directory's `navigation.bin`, or, when it has none, the
    /// default size ([`default_nodes`] of the live count) built now.
    ///
    /// # Errors
    /// [`EngineError::Layout`] naming `navigation.bin` when it is damaged or does not fit
    /// the index (the message says that removing the file makes open build one);
    /// [`EngineError::Io`].
    pub(crate) fn load(
        dir: &Path,
        header: &IndexHeader,
        pq: &PqCodebook,
        all_codes: &[u8],
        labels: &SlotLabels,
        requested: Option<usize>,
    ) -> Result<(Option<Navigation>, NavigationSource)> {
        let n = header.n_slots as usize;
        let live = header.live_count as usize;
        let build = |count: usize| {
            let slots = sample_slots(n, count.min(live), |s| labels.is_free(s));
            if slots.is_empty() {
                return (None, NavigationSource::Off);
            }
            let codes = gather(&slots, all_codes, pq.m());
            let g = build_graph(pq, header.metric, slots, &codes);
            (
                Some(Navigation::from_graph(g, codes, pq.m())),
                NavigationSource::BuiltAtOpen,
            )
        };
        match requested {
            Some(0) => return Ok((None, NavigationSource::Off)),
            Some(k) => return Ok(build(k)),
            None => {}
        }
        let path = dir.join(NAVIGATION_FILE);
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(build(default_nodes(live))),
            Err(e) => Err(EngineError::io(&path, e)),
            Ok(_) => {
                let g = NavigationGraph::read(&path, header.n_slots, pq.m()).map_err(|e| {
                    EngineError::Inconsistent {
                        path: path.clone(),
                        // the layout error names the file already: say it once
                        detail: format!(
                            "{} (the navigation graph is derived data: remove the file and \
                             the next open builds one in RAM)",
                            e.to_string()
                                .trim_start_matches(&format!("{}: ", path.display()))
                        ),
                    }
                })?;
                let codes = gather(&g.slots, all_codes, pq.m());
                Ok((
                    Some(Navigation::from_graph(g, codes, pq.m())),
                    NavigationSource::File,
                ))
            }
        }
    }

    fn from_graph(g: NavigationGraph, codes: Vec<u8>, m: usize) -> Navigation {
        Navigation {
            slots: g.slots,
            codes,
            m,
            adjacency: g.adjacency,
            medoid: g.medoid,
        }
    }

    /// Sample nodes in the graph.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// RAM held, bytes (codes, lists, slots).
    pub(crate) fn ram_bytes(&self) -> usize {
        self.codes.len()
            + self.slots.len() * 4
            + self
                .adjacency
                .iter()
                .map(|l| l.capacity() * 4 + 24)
                .sum::<usize>()
    }

    /// GreedySearch of the navigation graph with list size `l`, nodes scored by ADC from
    /// `table` (the query's M × 256 table, as the beam search uses); appends the slots of
    /// the list, closest first, to `out`.
    pub(crate) fn seeds(
        &self,
        table: &[f32],
        l: usize,
        scratch: &mut NavScratch,
        out: &mut Vec<u32>,
    ) {
        let m = self.m;
        assert_eq!(
            table.len(),
            m * PQ_CENTROIDS,
            "navigation: not an M × 256 ADC table"
        );
        let adc = |i: u32| pq_distance(table, &self.codes[i as usize * m..(i as usize + 1) * m]);
        let NavScratch { queue, visited } = scratch;
        queue.reset(l.max(1));
        visited.reset(self.slots.len());
        visited.insert(self.medoid);
        queue.insert(self.medoid, adc(self.medoid));
        while let Some(c) = queue.pop_unexpanded() {
            for &nb in &self.adjacency[c.id as usize] {
                if visited.insert(nb) {
                    queue.insert(nb, adc(nb));
                }
            }
        }
        out.extend(queue.items().iter().map(|c| self.slots[c.id as usize]));
    }
}

/// The codes of `slots` (each < n) out of the n × M `all_codes`, in order.
fn gather(slots: &[u32], all_codes: &[u8], m: usize) -> Vec<u8> {
    let mut codes = Vec::with_capacity(slots.len() * m);
    for &slot in slots {
        codes.extend_from_slice(&all_codes[slot as usize * m..(slot as usize + 1) * m]);
    }
    codes
}
