//! Updates of an open index (FreshDiskANN, Singh et al. 2021): every insert and delete is
//! appended to the WAL ([`crate::wal`]) and then applied to the in-memory state — the delta
//! index for inserts ([`crate::delta`]) and tombstones for deletes of points on the SSD.
//! Searches query both and merge. On open, the WAL is replayed into the same state.
//!
//! Semantics: inserting a label that exists replaces it (its old copy is tombstoned or
//! removed from the delta); deleting an unknown label is an error; a tombstoned point is
//! never returned but still routes searches through the graph until a merge removes it.

use crate::delta::{DeltaIndex, DeltaParams};
use crate::error::EngineError;
use crate::index::{Index, Snapshot};
use crate::wal::{replay, Wal, WalOp, WAL_FILE};
use crate::Result;
use ssdann_layout::ElementType;
use std::collections::{HashMap, HashSet};

/// The update state guarded by the index's update lock.
pub(crate) struct Updates {
    pub(crate) delta: DeltaIndex,
    /// Labels of SSD points that are deleted or replaced.
    pub(crate) tombstones: HashSet<u64>,
    /// Label → slot of the SSD points (built at open).
    pub(crate) ssd_labels: HashMap<u64, u32>,
    pub(crate) wal: Option<Wal>,
    pub(crate) wal_ops: u64,
}

impl Updates {
    /// Fresh state for `index`, with the WAL (if any) replayed.
    pub(crate) fn open(index: &Snapshot) -> Result<Updates> {
        let h = &index.header;
        let params = DeltaParams {
            max_degree: h.max_degree as usize,
            build_l: (h.build_l as usize).max(h.max_degree as usize),
            alpha: h.build_alpha.max(1.0),
        };
        let ssd_labels = index
            .labels
            .iter()
            .enumerate()
            .filter(|(_, &l)| l != ssdann_layout::labels::FREE_LABEL)
            .map(|(slot, &l)| (l, slot as u32))
            .collect();
        let mut up = Updates {
            delta: DeltaIndex::new(index.dim(), h.metric, params),
            tombstones: HashSet::new(),
            ssd_labels,
            wal: None,
            wal_ops: 0,
        };
        let path = index.dir.join(WAL_FILE);
        if path.exists() {
            let rep = replay(&path, index.dim())?;
            for op in &rep.ops {
                up.apply(op);
            }
            up.wal_ops = rep.ops.len() as u64;
            up.wal = Some(Wal::open(
                &path,
                index.dim(),
                rep.last_seq,
                index.options.sync,
            )?);
        }
        Ok(up)
    }

    /// Whether `label` is live (on the SSD and not tombstoned, or in the delta).
    pub(crate) fn is_live(&self, label: u64) -> bool {
        self.delta.contains(label)
            || (self.ssd_labels.contains_key(&label) && !self.tombstones.contains(&label))
    }

    /// Applies one logged operation to the in-memory state (no validation: it was validated
    /// before it was logged).
    pub(crate) fn apply(&mut self, op: &WalOp) {
        match op {
            WalOp::Insert { label, vector } => {
                if self.ssd_labels.contains_key(label) {
                    self.tombstones.insert(*label);
                }
                self.delta.insert(*label, vector);
            }
            WalOp::Delete { label } => {
                self.delta.delete(*label);
                if self.ssd_labels.contains_key(label) {
                    self.tombstones.insert(*label);
                }
            }
        }
    }
}

impl Snapshot {
    fn check_insert(&self, label: u64, vector: &[f32]) -> Result<()> {
        let bad = |field: &'static str, value: String, reason: String| {
            Err(EngineError::InvalidQuery {
                field,
                value,
                reason,
            })
        };
        if vector.len() != self.dim() {
            return bad(
                "vector dimension",
                vector.len().to_string(),
                format!("the index has d = {} (label {label})", self.dim()),
            );
        }
        if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
            return bad(
                "vector",
                format!("{} at position {i}", vector[i]),
                format!("values must be finite (label {label})"),
            );
        }
        let range = match self.header.element {
            ElementType::F32 => None,
            ElementType::U8 => Some((0.0, 255.0)),
            ElementType::I8 => Some((-128.0, 127.0)),
        };
        if let Some((lo, hi)) = range {
            if let Some(i) = vector
                .iter()
                .position(|&x| x.fract() != 0.0 || x < lo || x > hi)
            {
                return bad(
                    "vector",
                    format!("{} at position {i}", vector[i]),
                    format!(
                        "a {} index stores integers in {lo}..={hi} (label {label})",
                        self.header.element
                    ),
                );
            }
        }
        Ok(())
    }

    fn updates_mut(&self) -> Result<std::sync::RwLockWriteGuard<'_, Updates>> {
        self.updates.write().map_err(|_| EngineError::Inconsistent {
            path: self.dir.clone(),
            detail: "update lock poisoned by a panic".into(),
        })
    }

    fn log(&self, up: &mut Updates, ops: &[WalOp]) -> Result<()> {
        if up.wal.is_none() {
            up.wal = Some(Wal::open(
                &self.dir.join(WAL_FILE),
                self.dim(),
                0,
                self.options.sync,
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
            self.check_insert(*label, v)?;
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

impl Index {
    /// Takes the update gate (waiting while a merge runs) unless a failed merge left the
    /// index needing a reopen.
    pub(crate) fn lock_updates(&self) -> Result<parking_lot::MutexGuard<'_, ()>> {
        let g = self.update_gate.lock();
        if let Some(why) = self.broken.lock().as_ref() {
            return Err(EngineError::Inconsistent {
                path: self.dir().to_path_buf(),
                detail: why.clone(),
            });
        }
        Ok(g)
    }

    /// Inserts (or replaces) the points `items` = (label, vector of d f32 values). All are
    /// validated first; then they are appended to the WAL as one group (durable per
    /// [`crate::wal::SyncMode`] before this returns) and applied to the delta index. Searches see them
    /// as soon as this returns. Waits while a merge runs.
    ///
    /// # Errors
    /// [`EngineError::InvalidQuery`] for a wrong dimension, a NaN/inf value, or a value a
    /// u8/i8 index cannot store (nothing is logged then); [`EngineError::Io`] from the WAL;
    /// [`EngineError::Inconsistent`] after a merge failed past its commit (reopen the index).
    pub fn insert_batch(&self, items: &[(u64, &[f32])]) -> Result<()> {
        let _g = self.lock_updates()?;
        self.snapshot().insert_batch(items)
    }
    /// Inserts (or replaces) one point; see [`Index::insert_batch`].
    ///
    /// # Errors
    /// As [`Index::insert_batch`].
    pub fn insert(&self, label: u64, vector: &[f32]) -> Result<()> {
        self.insert_batch(&[(label, vector)])
    }

    /// Deletes the points with these labels (WAL first, then tombstones / delta removal).
    ///
    /// # Errors
    /// [`EngineError::InvalidQuery`] naming the first label that is not live (nothing is
    /// logged then); [`EngineError::Io`] from the WAL; [`EngineError::Inconsistent`] as for
    /// [`Index::insert_batch`]. Waits while a merge runs.
    pub fn delete_batch(&self, labels: &[u64]) -> Result<()> {
        let _g = self.lock_updates()?;
        self.snapshot().delete_batch(labels)
    }

    /// Deletes one point; see [`Index::delete_batch`].
    ///
    /// # Errors
    /// As [`Index::delete_batch`].
    pub fn delete(&self, label: u64) -> Result<()> {
        self.delete_batch(&[label])
    }

    /// Pending updates: (live points in the delta index, tombstoned SSD points, WAL records).
    pub fn pending(&self) -> (usize, usize, u64) {
        let s = self.snapshot();
        let r = s.updates.read();
        match r {
            Ok(u) => (u.delta.live(), u.tombstones.len(), u.wal_ops),
            Err(_) => (0, 0, 0),
        }
    }

    /// Live points: SSD points not tombstoned plus the delta's.
    pub fn live_count(&self) -> usize {
        let s = self.snapshot();
        let r = s.updates.read();
        match r {
            Ok(u) => u.ssd_labels.len() - u.tombstones.len() + u.delta.live(),
            Err(_) => s.header.live_count as usize,
        }
    }

    /// The largest label in use (SSD or delta), for callers that number new points.
    pub fn max_label(&self) -> Option<u64> {
        let s = self.snapshot();
        let ssd = s
            .labels
            .iter()
            .copied()
            .filter(|&l| l != ssdann_layout::labels::FREE_LABEL)
            .max();
        let delta = s
            .updates
            .read()
            .ok()
            .and_then(|u| u.delta.live_points().map(|(l, _)| l).max());
        ssd.max(delta)
    }
}
