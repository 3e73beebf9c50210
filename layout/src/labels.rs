//! The label map (docs/FORMAT.md, "labels.bin"): the external u64 label of every internal
//! slot. A build labels each point with its row number in the input file; slots may be
//! permuted (sector-aware ordering), so search results are always translated through this
//! map.

use crate::error::LayoutError;
use crate::Result;
use std::path::Path;

/// Magic of `labels.bin`.
pub const LABELS_MAGIC: [u8; 8] = *b"SSDLABEL";
/// Version of `labels.bin`.
pub const LABELS_VERSION: u32 = 1;
/// File name inside an index directory.
pub const LABELS_FILE: &str = "labels.bin";
/// The label of a free slot (a deleted point's slot that a merge has not reused yet): such a
/// slot has degree 0, no node links to it, and searches never return it.
pub const FREE_LABEL: u64 = u64::MAX;

/// Writes `labels[slot]` for every slot (n × u64).
///
/// # Errors
/// [`LayoutError::Io`].
pub fn write_labels(path: &Path, labels: &[u64]) -> Result<()> {
    let mut body = Vec::with_capacity(labels.len() * 8);
    labels
        .iter()
        .for_each(|l| body.extend_from_slice(&l.to_le_bytes()));
    crate::blob::write_blob(
        path,
        &LABELS_MAGIC,
        LABELS_VERSION,
        &[labels.len() as u64],
        &body,
    )
}

/// Writes the label map of `n` slots, `label_of(slot)` each, without holding it in RAM.
///
/// # Errors
/// [`LayoutError::Io`].
pub fn write_labels_with(path: &Path, n: usize, label_of: impl Fn(usize) -> u64) -> Result<()> {
    let mut w = crate::blob::BlobWriter::create(
        path,
        &LABELS_MAGIC,
        LABELS_VERSION,
        &[n as u64],
        n as u64 * 8,
    )?;
    let mut buf = Vec::with_capacity(8 << 13);
    for start in (0..n).step_by(1 << 13) {
        buf.clear();
        (start..(start + (1 << 13)).min(n))
            .for_each(|s| buf.extend_from_slice(&label_of(s).to_le_bytes()));
        w.write(&buf)?;
    }
    w.finish()
}

/// Reads the label map.
///
/// # Errors
/// Any blob error; [`LayoutError::InvalidField`] when the body is not n × 8 bytes;
/// [`LayoutError::Corrupt`] when a label other than [`FREE_LABEL`] appears twice (the map
/// must be one-to-one).
pub fn read_labels(path: &Path) -> Result<Vec<u64>> {
    let blob = crate::blob::read_blob(path, &LABELS_MAGIC, LABELS_VERSION)?;
    let n = blob.fields.first().copied().unwrap_or(0);
    if n.checked_mul(8) != Some(blob.body.len() as u64) {
        return Err(LayoutError::field(
            path,
            "n",
            n,
            format!("body holds {} bytes", blob.body.len()),
        ));
    }
    let labels: Vec<u64> = blob
        .body
        .chunks_exact(8)
        .map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            u64::from_le_bytes(a)
        })
        .collect();
    let mut sorted = labels.clone();
    sorted.sort_unstable();
    if let Some(w) = sorted
        .windows(2)
        .find(|w| w[0] == w[1] && w[0] != FREE_LABEL)
    {
        return Err(LayoutError::corrupt(
            path,
            "body",
            format!("label {} is mapped to two slots", w[0]),
        ));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_duplicates_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("labels.bin");
        super::write_labels(&p, &[5, 3, 9]).unwrap();
        assert_eq!(super::read_labels(&p).unwrap(), vec![5, 3, 9]);
        super::write_labels(&p, &[5, 3, 5]).unwrap();
        assert!(super::read_labels(&p)
            .unwrap_err()
            .to_string()
            .contains("label 5 is mapped to two slots"));
    }
}
