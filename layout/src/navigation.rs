//! `navigation.bin`: the navigation graph of entry points, written once by the builder
//! (docs/FORMAT.md, "Navigation graph"; Starling, SIGMOD 2024, §4.2).
//!
//! A blob file ([`crate::blob`]) of kind `SSDNAVG1`, version 1:
//!
//! ```text
//! fields   s (sample nodes), r (list width), medoid (a local id < s), pq_m (M of the index)
//! body     s × u32   the sample's slots in index.ssd (each < n_slots, strictly increasing)
//!          s × r × u32  each node's list of local ids (< s), NONE-padded after its last
//! ```
//!
//! The codes of the sample are not stored: the engine takes them from `pq_codes.bin`, so a
//! slot a merge reused is scored by its current code (only a worse seed, never a wrong
//! answer: seeds are where the beam search starts, and it reads every node it ranks). A merge
//! keeps the file as it is; slots it frees are skipped as seeds.

use crate::blob::{read_blob, write_blob_via};
use crate::error::LayoutError;
use crate::storage::StorageRef;
use crate::Result;
use std::path::Path;

/// File name inside the index directory.
pub const NAVIGATION_FILE: &str = "navigation.bin";
/// Blob magic of [`NAVIGATION_FILE`].
pub const NAVIGATION_MAGIC: [u8; 8] = *b"SSDNAVG1";
/// Version written and the newest read.
pub const NAVIGATION_VERSION: u32 = 1;
/// Widest list a navigation file may hold (checked before anything is sized by it).
pub const MAX_NAV_DEGREE: usize = 256;
/// Padding of a list shorter than r.
const NONE: u32 = u32::MAX;

/// A navigation graph over `slots.len()` sample nodes; local ids `0..s` index `slots`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NavigationGraph {
    /// The sample's slots in index.ssd, strictly increasing.
    pub slots: Vec<u32>,
    /// Each sample node's list of local ids (at most `r` each).
    pub adjacency: Vec<Vec<u32>>,
    /// Local id where a navigation search starts.
    pub medoid: u32,
    /// List width (the graph's degree R).
    pub r: usize,
}

impl NavigationGraph {
    /// Writes the graph to `path` through `storage` (fsync named `site`); `pq_m` is the
    /// index's M, recorded so that a file of another index is refused.
    ///
    /// # Errors
    /// [`LayoutError::InvalidArgument`] for a graph that [`NavigationGraph::read`] would
    /// refuse (no node, a list longer than r, an id out of range); [`LayoutError::Io`].
    pub fn write_via(
        &self,
        storage: &StorageRef,
        site: &'static str,
        path: &Path,
        pq_m: usize,
    ) -> Result<()> {
        let s = self.slots.len();
        let bad = |why: String| LayoutError::InvalidArgument {
            field: "navigation graph",
            value: format!("{s} nodes, r = {}", self.r),
            reason: why,
        };
        if s == 0 || self.r == 0 || self.r > MAX_NAV_DEGREE || self.adjacency.len() != s {
            return Err(bad("needs ≥ 1 node, 1 ≤ r ≤ 256 and a list per node".into()));
        }
        if self.medoid as usize >= s {
            return Err(bad(format!("medoid {} ≥ s", self.medoid)));
        }
        let mut body = Vec::with_capacity(4 * s * (1 + self.r));
        self.slots
            .iter()
            .for_each(|x| body.extend_from_slice(&x.to_le_bytes()));
        for (i, list) in self.adjacency.iter().enumerate() {
            if list.len() > self.r || list.iter().any(|&j| j as usize >= s) {
                return Err(bad(format!("node {i}: a list longer than r or an id ≥ s")));
            }
            for k in 0..self.r {
                let v = list.get(k).copied().unwrap_or(NONE);
                body.extend_from_slice(&v.to_le_bytes());
            }
        }
        let fields = [s as u64, self.r as u64, u64::from(self.medoid), pq_m as u64];
        write_blob_via(
            storage,
            site,
            path,
            &NAVIGATION_MAGIC,
            NAVIGATION_VERSION,
            &fields,
            &body,
        )
    }

    /// Reads and checks `path` against the index it belongs to (`n_slots` node slots, `pq_m`
    /// PQ bytes per code).
    ///
    /// # Errors
    /// Any [`read_blob`] error (checksums, lengths against the file's size);
    /// [`LayoutError::InvalidField`] naming the field and value: a field count ≠ 4, s
    /// outside 1..=`n_slots`, r outside 1..=[`MAX_NAV_DEGREE`], a body not s × 4 × (1 + r) bytes, a
    /// medoid ≥ s, `pq_m` not the index's, slots not strictly increasing or ≥ `n_slots`, a
    /// list id ≥ s, or a list entry after its padding.
    pub fn read(path: &Path, n_slots: u64, pq_m: usize) -> Result<NavigationGraph> {
        let blob = read_blob(path, &NAVIGATION_MAGIC, NAVIGATION_VERSION)?;
        let field = |f: &'static str, v: &dyn ToString, why: String| {
            LayoutError::field(path, f, v.to_string(), why)
        };
        if blob.fields.len() != 4 {
            return Err(field("fields", &blob.fields.len(), "expected 4".into()));
        }
        let (s, r, medoid, m) = (
            blob.fields[0],
            blob.fields[1],
            blob.fields[2],
            blob.fields[3],
        );
        if s == 0 || s > n_slots {
            return Err(field(
                "s",
                &s,
                format!("must be in 1..=n_slots ({n_slots})"),
            ));
        }
        if r == 0 || r > MAX_NAV_DEGREE as u64 {
            return Err(field("r", &r, format!("must be in 1..={MAX_NAV_DEGREE}")));
        }
        if m != pq_m as u64 {
            return Err(field("pq_m", &m, format!("the index has M = {pq_m}")));
        }
        if medoid >= s {
            return Err(field("medoid", &medoid, format!("must be < s ({s})")));
        }
        let (s, r) = (s as usize, r as usize);
        let want = 4 * s as u64 * (1 + r as u64);
        if blob.body.len() as u64 != want {
            let why = format!("s = {s}, r = {r} need {want} bytes");
            return Err(field("body_bytes", &blob.body.len(), why));
        }
        let words: Vec<u32> = blob
            .body
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let (slots, lists) = words.split_at(s);
        for (i, &slot) in slots.iter().enumerate() {
            if u64::from(slot) >= n_slots || (i > 0 && slot <= slots[i - 1]) {
                let why = format!("entry {i}: must be < n_slots ({n_slots}) and increasing");
                return Err(field("slots", &slot, why));
            }
        }
        let mut adjacency = Vec::with_capacity(s);
        for (i, row) in lists.chunks_exact(r).enumerate() {
            let len = row.iter().position(|&v| v == NONE).unwrap_or(r);
            if let Some(&v) = row[..len].iter().find(|&&v| v as usize >= s) {
                return Err(field(
                    "list",
                    &v,
                    format!("node {i}: ids must be < s ({s})"),
                ));
            }
            if let Some(&v) = row[len..].iter().find(|&&v| v != NONE) {
                return Err(field(
                    "list",
                    &v,
                    format!("node {i}: an id after the padding"),
                ));
            }
            adjacency.push(row[..len].to_vec());
        }
        Ok(NavigationGraph {
            slots: slots.to_vec(),
            adjacency,
            medoid: medoid as u32,
            r,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
    use super::*;

    fn sample() -> NavigationGraph {
        NavigationGraph {
            slots: vec![3, 10, 11, 40],
            adjacency: vec![vec![1, 2], vec![0], vec![3, 0, 1], vec![]],
            medoid: 2,
            r: 3,
        }
    }

    #[test]
    fn a_graph_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(NAVIGATION_FILE);
        sample()
            .write_via(&StorageRef::default(), "t", &p, 8)
            .unwrap();
        assert_eq!(NavigationGraph::read(&p, 41, 8).unwrap(), sample());
    }

    /// Each CRC-valid but inconsistent file is refused naming the field and the value.
    #[test]
    fn a_file_that_does_not_fit_its_index_is_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(NAVIGATION_FILE);
        sample()
            .write_via(&StorageRef::default(), "t", &p, 8)
            .unwrap();
        let err = |n: u64, m: usize| NavigationGraph::read(&p, n, m).unwrap_err().to_string();
        let path = p.display();
        assert_eq!(
            err(40, 8),
            format!("{path}: field `slots` = 40: entry 3: must be < n_slots (40) and increasing")
        );
        assert_eq!(
            err(3, 8),
            format!("{path}: field `s` = 4: must be in 1..=n_slots (3)")
        );
        assert_eq!(
            err(41, 16),
            format!("{path}: field `pq_m` = 8: the index has M = 16")
        );
        // crafted bodies, rewritten with valid checksums
        let write = |g: &NavigationGraph, body_patch: &dyn Fn(&mut Vec<u8>)| {
            let mut body = Vec::new();
            g.slots
                .iter()
                .for_each(|x| body.extend_from_slice(&x.to_le_bytes()));
            for l in &g.adjacency {
                for k in 0..g.r {
                    body.extend_from_slice(&l.get(k).copied().unwrap_or(NONE).to_le_bytes());
                }
            }
            body_patch(&mut body);
            let f = [g.slots.len() as u64, g.r as u64, u64::from(g.medoid), 8];
            crate::blob::write_blob(&p, &NAVIGATION_MAGIC, 1, &f, &body).unwrap();
        };
        write(&sample(), &|b| {
            b[4 * 4..4 * 5].copy_from_slice(&9u32.to_le_bytes())
        });
        assert_eq!(
            err(41, 8),
            format!("{path}: field `list` = 9: node 0: ids must be < s (4)")
        );
        write(&sample(), &|b| {
            b[4 * (4 + 10)..4 * (4 + 11)].copy_from_slice(&1u32.to_le_bytes())
        });
        assert_eq!(
            err(41, 8),
            format!("{path}: field `list` = 1: node 3: an id after the padding")
        );
        write(&sample(), &|b| b[4..8].copy_from_slice(&2u32.to_le_bytes()));
        assert_eq!(
            err(41, 8),
            format!("{path}: field `slots` = 2: entry 1: must be < n_slots (41) and increasing")
        );
        write(&sample(), &|b| b.truncate(b.len() - 4));
        assert_eq!(
            err(41, 8),
            format!("{path}: field `body_bytes` = 60: s = 4, r = 3 need 64 bytes")
        );
        write(
            &NavigationGraph {
                medoid: 4,
                ..sample()
            },
            &|_| {},
        );
        assert_eq!(
            err(41, 8),
            format!("{path}: field `medoid` = 4: must be < s (4)")
        );
    }
}
