//! [`Snapshot`]: one consistent generation of an open index — the immutable [`State`], its
//! pending updates (delta index, tombstones, WAL) and its search contexts. A merge builds the
//! next snapshot and `Index` swaps it in; searches that started on the previous one finish
//! on it.
//!
//! A search here is the SSD beam search merged with the delta index, tombstoned points
//! filtered out (FreshDiskANN, Singh et al. 2021, §3); an insert or delete is logged to the
//! WAL and then applied to the pending updates.

use crate::error::EngineError;
use crate::options::OpenOptions;
use crate::search::{beam_search, check_query, ContextPool, Neighbor, SearchParams, SearchStats};
use crate::state::State;
use crate::updates::wal::{Wal, WalOp, WAL_FILE};
use crate::updates::{check_insert, Updates};
use crate::Result;
use ssdann_layout::Metric;
use std::collections::HashSet;
use std::path::Path;

/// One consistent generation of an open index (see the module docs).
pub(crate) struct Snapshot {
    pub(crate) state: State,
    pub(crate) contexts: ContextPool,
    /// Pending inserts and deletes (delta index, tombstones, WAL).
    pub(crate) updates: std::sync::RwLock<Updates>,
}

impl Snapshot {
    /// Opens the index files in `dir` and replays the WAL (no journal recovery:
    /// `Index::open` does it first).
    ///
    /// # Errors
    /// As [`State::open`], and the WAL's errors (a corrupt record, I/O).
    pub(crate) fn open(dir: &Path, options: OpenOptions) -> Result<Snapshot> {
        let state = State::open(dir, options)?;
        let updates = Updates::open(&state)?;
        Ok(Snapshot {
            state,
            contexts: ContextPool::default(),
            updates: std::sync::RwLock::new(updates),
        })
    }

    /// [`Index::search_into`] on this state.
    pub(crate) fn search_into(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        out: &mut Vec<Neighbor>,
    ) -> Result<SearchStats> {
        check_query(&self.state, query, k, params)?;
        let mut ctx = self.contexts.take(&self.state);
        let up = self.updates.read().map_err(|_| EngineError::Inconsistent {
            path: self.state.dir.clone(),
            detail: "update lock poisoned by a panic".into(),
        })?;
        let r = if up.delta.live() == 0 && up.tombstones.is_empty() {
            beam_search(&self.state, &mut ctx, query, k, params, out)
        } else {
            // Over-fetch from the SSD so that k survive the tombstones, then merge with the
            // delta index by distance (FreshDiskANN §3).
            let k_ssd = (k + up.tombstones.len()).min(params.l);
            let r = beam_search(&self.state, &mut ctx, query, k_ssd, params, out);
            out.retain(|n| !up.tombstones.contains(&n.id));
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
            r
        };
        drop(up);
        self.contexts.put(ctx);
        r
    }

    fn updates_mut(&self) -> Result<std::sync::RwLockWriteGuard<'_, Updates>> {
        self.updates.write().map_err(|_| EngineError::Inconsistent {
            path: self.state.dir.clone(),
            detail: "update lock poisoned by a panic".into(),
        })
    }

    fn log(&self, up: &mut Updates, ops: &[WalOp]) -> Result<()> {
        if up.wal.is_none() {
            up.wal = Some(Wal::open(
                &self.state.dir.join(WAL_FILE),
                self.state.dim(),
                0,
                self.state.options.sync,
            )?);
        }
        if let Some(w) = up.wal.as_mut() {
            w.append(ops)?;
        }
        up.wal_ops += ops.len() as u64;
        Ok(())
    }

    pub(crate) fn insert_batch(&self, items: &[(u64, &[f32])]) -> Result<()> {
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
        let mut up = self.updates_mut()?;
        self.log(&mut up, &ops)?;
        for op in &ops {
            up.apply(op);
        }
        Ok(())
    }

    pub(crate) fn delete_batch(&self, labels: &[u64]) -> Result<()> {
        let mut up = self.updates_mut()?;
        let mut seen = HashSet::new();
        for &l in labels {
            if !up.is_live(l) || !seen.insert(l) {
                return Err(EngineError::InvalidQuery {
                    field: "label",
                    value: l.to_string(),
                    reason:
                        "not a live point of the index (unknown, already deleted, or listed twice)"
                            .into(),
                });
            }
        }
        let ops: Vec<WalOp> = labels
            .iter()
            .map(|&label| WalOp::Delete { label })
            .collect();
        self.log(&mut up, &ops)?;
        for op in &ops {
            up.apply(op);
        }
        Ok(())
    }
}
