//! Updates of an open index (FreshDiskANN, Singh et al. 2021): every insert and delete is
//! appended to the WAL ([`crate::wal`]) and then applied to the in-memory state — the delta
//! index for inserts ([`crate::delta`]) and tombstones for deletes of points on the SSD.
//! Searches query both and merge. On open, the WAL is replayed into the same state.
//!
//! Semantics: inserting a label that exists replaces it (its old copy is tombstoned or
//! removed from the delta); deleting an unknown label is an error; a tombstoned point is
//! never returned but still routes searches through the graph until a merge removes it.

pub mod delta;
pub mod wal;

use crate::error::EngineError;
use crate::state::State;
use crate::Result;
use delta::{DeltaIndex, DeltaParams};
use ssdann_layout::labels::{SlotLabels, FREE_LABEL};
use ssdann_layout::sector::F16_MAX;
use ssdann_layout::ElementType;
use std::collections::{HashMap, HashSet};
use wal::{replay, Wal, WalOp, WAL_FILE};

/// The pending updates that searches read (behind `Snapshot::updates`; the WAL is kept
/// apart, so that no search waits for an append or its fsync).
pub(crate) struct Updates {
    pub(crate) delta: DeltaIndex,
    /// Labels of SSD points that are deleted or replaced.
    pub(crate) tombstones: HashSet<u64>,
    /// Label → slot of the SSD points, built on first use ([`Updates::ssd_slot`]) unless the
    /// labels are the identity: a handle that only searches never builds it (~28 bytes per
    /// point).
    ssd_labels: std::sync::OnceLock<HashMap<u64, u32>>,
    /// WAL records not merged yet.
    pub(crate) wal_ops: u64,
}

impl Updates {
    /// Fresh state for `index`, with the WAL (if any) replayed; the WAL open for appending
    /// (None for a read-only handle, or while no log exists).
    pub(crate) fn open(index: &State) -> Result<(Updates, Option<Wal>)> {
        let h = &index.header;
        let params = DeltaParams {
            max_degree: h.max_degree as usize,
            build_l: (h.build_l as usize).max(h.max_degree as usize),
            alpha: h.build_alpha.max(1.0),
        };
        let mut up = Updates {
            delta: DeltaIndex::new(index.dim(), h.metric, params),
            tombstones: HashSet::new(),
            ssd_labels: std::sync::OnceLock::new(),
            wal_ops: 0,
        };
        let mut wal = None;
        let path = index.dir.join(WAL_FILE);
        if path.exists() {
            // A read-only handle never modifies the log (a torn tail stays; it is not replayed).
            let rep = if index.options.read_only {
                wal::check(&path, index.dim())?
            } else {
                replay(&path, index.dim(), &*index.options.storage)?
            };
            for op in &rep.ops {
                up.apply(op, &index.labels);
            }
            up.wal_ops = rep.ops.len() as u64;
            if !index.options.read_only {
                wal = Some(Wal::open(
                    &path,
                    index.dim(),
                    rep.last_seq,
                    index.options.sync,
                    index.options.storage.clone(),
                )?);
            }
        }
        Ok((up, wal))
    }

    /// The slot of the SSD point labelled `label` (`labels` is the state's label map), if
    /// any. For identity labels that is `label` itself when below n; otherwise the label →
    /// slot map is built at the first call (`labels` was checked one-to-one at open).
    pub(crate) fn ssd_slot(&self, label: u64, labels: &SlotLabels) -> Option<u32> {
        if labels.is_identity() {
            return (label < labels.len() as u64).then_some(label as u32);
        }
        let map = self.ssd_labels.get_or_init(|| {
            let map: HashMap<u64, u32> = labels
                .iter()
                .enumerate()
                .filter(|&(_, l)| l != FREE_LABEL)
                .map(|(slot, l)| (l, slot as u32))
                .collect();
            debug_assert_eq!(
                map.len(),
                labels.iter().filter(|&l| l != FREE_LABEL).count(),
                "labels.bin passed its one-to-one check at open"
            );
            map
        });
        map.get(&label).copied()
    }

    /// The label map if it was built (for memory accounting).
    pub(crate) fn ssd_labels_built(&self) -> Option<&HashMap<u64, u32>> {
        self.ssd_labels.get()
    }

    /// Whether `label` is live (on the SSD and not tombstoned, or in the delta).
    pub(crate) fn is_live(&self, label: u64, labels: &SlotLabels) -> bool {
        self.delta.contains(label)
            || (self.ssd_slot(label, labels).is_some() && !self.tombstones.contains(&label))
    }

    /// Applies a logged insert whose delta out-list was planned with shared access
    /// ([`DeltaIndex::plan_insert`]; no other update came between).
    pub(crate) fn apply_planned_insert(
        &mut self,
        label: u64,
        vector: &[f32],
        planned: &[u32],
        labels: &SlotLabels,
    ) {
        if self.ssd_slot(label, labels).is_some() {
            self.tombstones.insert(label);
        }
        self.delta.apply_insert(label, vector, planned);
    }

    /// Applies one logged operation to the in-memory state (no validation: it was validated
    /// before it was logged).
    pub(crate) fn apply(&mut self, op: &WalOp, labels: &SlotLabels) {
        match op {
            WalOp::Insert { label, vector } => {
                if self.ssd_slot(*label, labels).is_some() {
                    self.tombstones.insert(*label);
                }
                self.delta.insert(*label, vector);
            }
            WalOp::Delete { label } => {
                self.delta.delete(*label);
                if self.ssd_slot(*label, labels).is_some() {
                    self.tombstones.insert(*label);
                }
            }
        }
    }
}

/// Checks an insert of `vector` under `label` against the index `state`.
pub(crate) fn check_insert(state: &State, label: u64, vector: &[f32]) -> Result<()> {
    let bad = |field: &'static str, value: String, reason: String| {
        Err(EngineError::InvalidQuery {
            field,
            value,
            reason,
        })
    };
    if label == ssdann_layout::labels::FREE_LABEL {
        return bad(
            "label",
            label.to_string(),
            "2^64 - 1 is reserved (the label map's free-slot marker)".into(),
        );
    }
    if vector.len() != state.dim() {
        return bad(
            "vector dimension",
            vector.len().to_string(),
            format!("the index has d = {} (label {label})", state.dim()),
        );
    }
    if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
        return bad(
            "vector",
            format!("{} at position {i}", vector[i]),
            format!("values must be finite (label {label})"),
        );
    }
    if state.header.layout.f16_vectors {
        if let Some(i) = vector.iter().position(|x| x.abs() > F16_MAX) {
            return bad(
                "vector",
                format!("{} at position {i}", vector[i]),
                format!("the index stores f16 vectors: values within ±{F16_MAX} (label {label})"),
            );
        }
    }
    let range = match state.header.element {
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
                    state.header.element
                ),
            );
        }
    }
    Ok(())
}
