//! [`Snapshot`]: one consistent generation of an open index — the immutable [`State`], its
//! pending updates (delta index, tombstones, WAL) and its search contexts. A merge builds the
//! next snapshot and `Index` swaps it in; searches that started on the previous one finish
//! on it.
//!
//! A search here is the SSD beam search merged with the delta index, tombstoned points
//! filtered out (FreshDiskANN, Singh et al. 2021, §3); an insert or delete is logged to the
//! WAL and then applied to the pending updates. Searches never wait for the WAL: the beam
//! search holds no lock, and the delta part takes the update lock's read side, which writers
//! hold exclusively only to link a point they have already logged and planned.

use crate::error::EngineError;
use crate::options::{CachePolicy, OpenOptions};
use crate::search::{
    beam_search, check_query, ContextPool, Neighbor, SearchContext, SearchParams, SearchStats,
};
use crate::state::State;
use crate::updates::delta::DeltaScratch;
use crate::updates::wal::{Wal, WalOp, MAX_GROUP_RECORDS, WAL_FILE};
use crate::updates::{check_insert, Updates};
use crate::Result;
use ssdann_layout::Metric;
use std::collections::HashSet;
use std::path::Path;

/// One consistent generation of an open index (see the module docs).
pub(crate) struct Snapshot {
    pub(crate) state: State,
    pub(crate) contexts: ContextPool,
    /// Pending inserts and deletes (delta index, tombstones) that searches read. Writers
    /// take it exclusively only to apply a logged, planned update (no I/O, no search).
    pub(crate) updates: std::sync::RwLock<Updates>,
    /// The WAL, appended by writers (serialized by `Index`'s update gate); searches never
    /// touch it, so no search waits for an append or its fsync.
    pub(crate) wal: parking_lot::Mutex<Option<Wal>>,
    /// Scratch of the writers' delta-insert planning.
    insert_scratch: parking_lot::Mutex<DeltaScratch>,
}

/// RAM an open index holds, by structure (bytes). The per-point structures are the PQ
/// codes (n × M) and, once updates have used it on an index whose labels are not the
/// identity, the label → slot map of the SSD points (a hash map: 16 bytes per entry over a
/// ⅞-full power-of-two table, plus a control byte each; a handle that only searches never
/// builds it). The slot → label map holds no RAM: nothing for identity labels, else
/// `labels.bin` memory-mapped ([`MemoryReport::labels_mapped_bytes`], not in the total).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryReport {
    /// PQ codes: n × M.
    pub pq_codes_bytes: usize,
    /// PQ pivots, centroid and subspace offsets.
    pub pq_pivots_bytes: usize,
    /// A slot → label array in RAM: 0 — the engine holds none (see `labels_mapped_bytes`).
    pub labels_bytes: usize,
    /// The slot → label map memory-mapped from `labels.bin`: n × 8, or 0 when the labels are
    /// the identity (label of slot s = s: nothing is kept). File-backed pages, read from the
    /// page cache on demand and reclaimable by the kernel: not counted in
    /// [`MemoryReport::total_bytes`].
    pub labels_mapped_bytes: usize,
    /// Label → slot map of the SSD points (built when an update first needs it, never for
    /// identity labels).
    pub label_map_bytes: usize,
    /// Node cache (records and their index).
    pub node_cache_bytes: usize,
    /// Pending updates: the delta index and the tombstones.
    pub pending_bytes: usize,
    /// The in-memory navigation graph (`OpenOptions::navigation_nodes`): sample vectors,
    /// lists and slots.
    pub navigation_bytes: usize,
}

impl MemoryReport {
    /// Sum of every structure held in RAM (not [`MemoryReport::labels_mapped_bytes`]).
    pub fn total_bytes(&self) -> usize {
        self.pq_codes_bytes
            + self.pq_pivots_bytes
            + self.labels_bytes
            + self.label_map_bytes
            + self.node_cache_bytes
            + self.pending_bytes
            + self.navigation_bytes
    }
}

/// Bytes of a hashbrown table of `capacity` usable entries of `entry` bytes each.
fn hash_table_bytes(capacity: usize, entry: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = (capacity.saturating_mul(8) / 7).next_power_of_two().max(4);
    buckets * (entry + 1) + 16
}

/// The `count` nodes that `samples` searches expand most often (ties by slot), then BFS
/// order from the entry point for the rest: DiskANN's cache from sample queries. The sample
/// queries are the PQ reconstructions of `samples` evenly spaced live slots, searched on
/// the SSD alone (no delta, no tombstones) at L = 100, W = 4.
///
/// # Errors
/// A read or a damaged block, as any search's.
fn hot_nodes(state: &State, count: usize, samples: usize) -> Result<Vec<u32>> {
    let n = state.header.n_slots as usize;
    let m = state.pq.m();
    let live: Vec<u32> = (0..n)
        .filter(|&i| !state.labels.is_free(i))
        .map(|i| i as u32)
        .collect();
    let mut visits = vec![0u32; n];
    if samples > 0 && !live.is_empty() {
        let pool = ContextPool::default();
        let mut ctx = pool.take(state, 4);
        ctx.expanded_log = Some(Vec::new());
        let mut q = vec![0f32; state.dim()];
        let mut out = Vec::new();
        let params = SearchParams::new(100, 4).without_termination();
        let step = (live.len() / samples).max(1);
        let k = 10.min(live.len());
        for &s in live.iter().step_by(step).take(samples) {
            let s = s as usize;
            state.pq.decode(&state.codes[s * m..(s + 1) * m], &mut q);
            beam_search(state, &mut ctx, &q, k, &params, &mut out)?;
            for id in ctx.expanded_log.iter_mut().flat_map(|log| log.drain(..)) {
                if let Some(v) = visits.get_mut(id as usize) {
                    *v += 1;
                }
            }
        }
    }
    let mut hot: Vec<u32> = (0..n as u32).filter(|&i| visits[i as usize] > 0).collect();
    hot.sort_by_key(|&i| (std::cmp::Reverse(visits[i as usize]), i));
    hot.truncate(count);
    if hot.len() < count {
        let rest = state.bfs_order(count - hot.len(), &hot)?;
        hot.extend(rest);
    }
    Ok(hot)
}

/// Searches retried when a delete that raced with them left fewer than k SSD results.
const RACE_RETRIES: usize = 3;

impl Snapshot {
    /// Opens the index files in `dir` and replays the WAL (no journal recovery:
    /// `Index::open` does it first).
    ///
    /// # Errors
    /// As [`State::open`], and the WAL's errors (a corrupt record, I/O).
    pub(crate) fn open(dir: &Path, options: OpenOptions) -> Result<Snapshot> {
        let mut state = State::open(dir, options)?;
        if let CachePolicy::SampleVisits { samples } = state.options.cache_policy {
            let count = state
                .options
                .cache_count(state.header.layout.record_bytes)
                .min(state.header.n_slots as usize);
            if count > 0 {
                let ids = hot_nodes(&state, count, samples)?;
                state.cache = state.load_cache(&ids)?;
            }
        }
        let (updates, wal) = Updates::open(&state)?;
        Ok(Snapshot {
            state,
            contexts: ContextPool::default(),
            updates: std::sync::RwLock::new(updates),
            wal: parking_lot::Mutex::new(wal),
            insert_scratch: parking_lot::Mutex::new(DeltaScratch::default()),
        })
    }

    fn read_updates(&self) -> Result<std::sync::RwLockReadGuard<'_, Updates>> {
        self.updates.read().map_err(|_| EngineError::Inconsistent {
            path: self.state.dir.clone(),
            detail: "update lock poisoned by a panic".into(),
        })
    }

    fn updates_mut(&self) -> Result<std::sync::RwLockWriteGuard<'_, Updates>> {
        self.updates.write().map_err(|_| EngineError::Inconsistent {
            path: self.state.dir.clone(),
            detail: "update lock poisoned by a panic".into(),
        })
    }

    /// [`Index::search_into`] on this state: the SSD beam search with no lock held, then,
    /// under the update lock's read side, the tombstone filter and the delta index search.
    pub(crate) fn search_into(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        out: &mut Vec<Neighbor>,
    ) -> Result<SearchStats> {
        check_query(&self.state, query, k, params)?;
        let mut ctx = self.contexts.take(&self.state, params.w);
        let r = self.search_with(&mut ctx, query, k, params, out);
        self.contexts.put(ctx);
        r
    }

    fn search_with(
        &self,
        ctx: &mut SearchContext,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        out: &mut Vec<Neighbor>,
    ) -> Result<SearchStats> {
        let mut tombstones = {
            let up = self.read_updates()?;
            if up.delta.live() == 0 && up.tombstones.is_empty() {
                None
            } else {
                Some(up.tombstones.len())
            }
        };
        let Some(mut t) = tombstones.take() else {
            // nothing pending when the search started (an update that lands during it is
            // not part of what this search sees)
            return beam_search(&self.state, ctx, query, k, params, out);
        };
        let mut attempt = 0;
        loop {
            // Over-fetch from the SSD so that k survive the tombstones, then merge with the
            // delta index by distance (FreshDiskANN §3).
            let k_ssd = (k + t).min(params.l);
            let stats = beam_search(&self.state, ctx, query, k_ssd, params, out)?;
            let got = out.len();
            let up = self.read_updates()?;
            out.retain(|n| !up.tombstones.contains(&n.id));
            // a delete that landed during the beam search can leave fewer than k: search again
            if out.len() < k && got == k_ssd && k_ssd < params.l && attempt < RACE_RETRIES {
                t = up.tombstones.len().max(t + 1);
                attempt += 1;
                continue;
            }
            let (q, scratch, found) = ctx.delta_buffers();
            q.clear();
            q.extend_from_slice(query);
            if self.state.header.metric == Metric::Cosine {
                ssdann_layout::distance::normalize(q);
            }
            up.delta.search(q, k, params.l, scratch, found);
            out.extend(found.iter().map(|&(d, id)| Neighbor {
                id,
                distance: self.state.header.metric.reported(d),
            }));
            out.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
            out.truncate(k);
            return Ok(stats);
        }
    }

    /// Appends `ops` to the WAL as one group (creating the log on first use). Called by
    /// writers only, with no lock that searches take.
    fn log(&self, ops: &[WalOp]) -> Result<()> {
        let mut wal = self.wal.lock();
        if wal.is_none() {
            *wal = Some(Wal::open(
                &self.state.dir.join(WAL_FILE),
                self.state.dim(),
                0,
                self.state.options.sync,
                self.state.options.storage.clone(),
            )?);
        }
        if let Some(w) = wal.as_mut() {
            w.append(ops)?;
        }
        Ok(())
    }

    /// RAM held, by structure.
    pub(crate) fn memory(&self) -> MemoryReport {
        let st = &self.state;
        let (label_map_bytes, pending_bytes) = match self.updates.read() {
            Ok(u) => (
                u.ssd_labels_built()
                    .map_or(0, |m| hash_table_bytes(m.capacity(), 16)),
                u.delta.memory_bytes() + hash_table_bytes(u.tombstones.capacity(), 8),
            ),
            Err(_) => (0, 0),
        };
        MemoryReport {
            pq_codes_bytes: st.codes.len(),
            pq_pivots_bytes: st.pq.memory_bytes(),
            labels_bytes: 0,
            labels_mapped_bytes: st.labels.mapped_bytes(),
            label_map_bytes,
            node_cache_bytes: st.cache.records.len()
                + hash_table_bytes(st.cache.slots.capacity(), 16),
            pending_bytes,
            navigation_bytes: st.navigation.as_ref().map_or(0, |n| n.ram_bytes()),
        }
    }

    /// The last WAL sequence number appended (0 when there is no log).
    pub(crate) fn wal_last_seq(&self) -> u64 {
        self.wal.lock().as_ref().map_or(0, |w| w.last_seq())
    }

    /// Inserts (or replaces) `items`: validated, logged to the WAL as one group (durable
    /// per the sync mode), then each planned with shared access and applied with a brief
    /// exclusive hold of the update lock. The caller (`Index`) serializes writers.
    pub(crate) fn insert_batch(&self, items: &[(u64, &[f32])]) -> Result<()> {
        check_batch(items.len())?;
        for (label, v) in items {
            check_insert(&self.state, *label, v)?;
        }
        let ops: Vec<WalOp> = items
            .iter()
            .map(|(label, v)| WalOp::Insert {
                label: *label,
                vector: v.to_vec(),
            })
            .collect();
        self.log(&ops)?;
        let mut scratch = self.insert_scratch.lock();
        for (label, v) in items {
            let planned = self.read_updates()?.delta.plan_insert(v, &mut scratch);
            let mut up = self.updates_mut()?;
            up.apply_planned_insert(*label, v, &planned, &self.state.labels);
            up.wal_ops += 1;
        }
        Ok(())
    }

    /// Deletes `labels`: checked live (and distinct), logged, then applied (tombstones or
    /// removal from the delta). The caller (`Index`) serializes writers.
    pub(crate) fn delete_batch(&self, labels: &[u64]) -> Result<()> {
        check_batch(labels.len())?;
        {
            let up = self.read_updates()?;
            let mut seen = HashSet::new();
            for &l in labels {
                if !up.is_live(l, &self.state.labels) || !seen.insert(l) {
                    return Err(EngineError::InvalidQuery {
                        field: "label",
                        value: l.to_string(),
                        reason:
                            "not a live point of the index (unknown, already deleted, or listed twice)"
                                .into(),
                    });
                }
            }
        }
        let ops: Vec<WalOp> = labels
            .iter()
            .map(|&label| WalOp::Delete { label })
            .collect();
        self.log(&ops)?;
        let mut up = self.updates_mut()?;
        for op in &ops {
            up.apply(op, &self.state.labels);
        }
        up.wal_ops += ops.len() as u64;
        Ok(())
    }
}

/// Checks the size of an insert or delete batch (1 ..= [`MAX_GROUP_RECORDS`]).
fn check_batch(n: usize) -> Result<()> {
    if n == 0 || n > MAX_GROUP_RECORDS {
        return Err(EngineError::InvalidQuery {
            field: "batch size",
            value: n.to_string(),
            reason: format!("one insert or delete batch holds 1..={MAX_GROUP_RECORDS} points"),
        });
    }
    Ok(())
}
