//! The label map (docs/FORMAT.md, "labels.bin"): the external u64 label of every internal
//! slot. A build labels each point with its row number in the input file; slots may be
//! permuted (sector-aware ordering), so search results are always translated through this
//! map.
//!
//! Two readers: [`read_labels`] copies the map into RAM (n × 8 bytes); [`SlotLabels::open`]
//! holds nothing when the map is the identity and memory-maps the file otherwise, after the
//! same checks (an open index's RAM is then its PQ codes; issue 12).

use crate::error::LayoutError;
use crate::storage::StorageRef;
use crate::Result;
use std::os::unix::fs::FileExt;
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
    write_labels_via(&StorageRef::default(), "blob", path, labels)
}

/// [`write_labels`] through `storage`, its fsync named `site`.
///
/// # Errors
/// [`LayoutError::Io`].
pub fn write_labels_via(
    storage: &StorageRef,
    site: &'static str,
    path: &Path,
    labels: &[u64],
) -> Result<()> {
    let mut body = Vec::with_capacity(labels.len() * 8);
    labels
        .iter()
        .for_each(|l| body.extend_from_slice(&l.to_le_bytes()));
    crate::blob::write_blob_via(
        storage,
        site,
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
    write_labels_with_via(&StorageRef::default(), "blob", path, n, label_of)
}

/// [`write_labels_with`] through `storage`, its fsync named `site`.
///
/// # Errors
/// [`LayoutError::Io`].
pub fn write_labels_with_via(
    storage: &StorageRef,
    site: &'static str,
    path: &Path,
    n: usize,
    label_of: impl Fn(usize) -> u64,
) -> Result<()> {
    let mut w = crate::blob::BlobWriter::create_via(
        storage,
        site,
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

/// The slot → label map of an open index, held without a copy in RAM: nothing when
/// `labels.bin` holds the identity (label of slot s = s, as a build without reordering
/// writes), else `labels.bin` memory-mapped and read on demand. Either way the file passed
/// every check of [`read_labels`] at [`SlotLabels::open`].
#[derive(Debug)]
pub struct SlotLabels {
    /// Slots n.
    n: usize,
    /// None: the identity. Some: the whole file; the body starts at `body_offset`.
    map: Option<memmap2::Mmap>,
    /// Byte offset of slot 0's label in `map` (28 + 8F, docs/FORMAT.md, "Blob files").
    body_offset: usize,
    /// Slots labelled [`FREE_LABEL`].
    free: usize,
}

/// Bytes of `labels.bin` read per step of [`SlotLabels::open`]'s check pass.
const CHECK_CHUNK_BYTES: usize = 1 << 20;

impl SlotLabels {
    /// Opens `labels.bin` at `path` and checks it as [`read_labels`] does — header CRC,
    /// version, body length against n and against the file's real size, body CRC, and no
    /// label other than [`FREE_LABEL`] on two slots — in one streaming pass of pread calls,
    /// so the checked pages stay out of this process's RSS. Then keeps nothing if the map is
    /// the identity, else maps the file (read-only).
    ///
    /// Why the body CRC is checked here, although that reads the whole file: the map is
    /// read on demand later with no check of its own, and a label damaged on the medium
    /// would be returned as a wrong answer; the check is linear (≈ 1 GB/s, 80 MB for
    /// 10 M points).
    ///
    /// The mapping relies on the index's files never being rewritten in place while an
    /// index is open (a merge writes `labels.bin.merge` and renames it over `labels.bin`;
    /// a build unlinks a replaced index's files): a program that truncates the file in
    /// place under an open index makes later reads of the mapping fault (SIGBUS).
    ///
    /// # Errors
    /// As [`read_labels`], with the same messages: every [`crate::blob::read_blob`] error;
    /// [`LayoutError::InvalidField`] when the body is not n × 8 bytes;
    /// [`LayoutError::Corrupt`] when a label other than [`FREE_LABEL`] appears twice;
    /// [`LayoutError::Corrupt`] when the file changed between its header check and the pass.
    ///
    /// # Allocates
    /// Transiently, during the pass: a 1 MiB read buffer, a bitmap of n bits (the labels
    /// below n), and 8 bytes per label ≥ n (other than [`FREE_LABEL`]), sorted to find
    /// duplicates. Kept: nothing beyond the struct (the mapping is file-backed).
    pub fn open(path: &Path) -> Result<SlotLabels> {
        let io = |e| LayoutError::io(path, e);
        let file = std::fs::File::open(path).map_err(io)?;
        let (version, fields) = crate::blob::read_blob_fields(path, &LABELS_MAGIC, LABELS_VERSION)?;
        let body_offset = crate::blob::body_offset(fields.len()) as usize;
        let file_bytes = file.metadata().map_err(io)?.len();
        let body_bytes = file_bytes.saturating_sub(body_offset as u64 + 4);
        // Sized from the file's real length, never from the header's n (checked below).
        let n = usize::try_from(body_bytes / 8).map_err(|_| {
            LayoutError::field(
                path,
                "body_bytes",
                body_bytes,
                "larger than this machine can address",
            )
        })?;
        // Pair check: the header read through this handle is the one read_blob_fields
        // validated (the path could have been replaced between the two opens).
        let head = crate::blob::encode_header(&LABELS_MAGIC, version, &fields, body_bytes);
        // never more buffer than the file has bytes (fuzzing's allocation rule)
        let chunk = (body_bytes as usize).min(CHECK_CHUNK_BYTES);
        let mut buf = vec![0u8; chunk.max(body_offset)];
        file.read_exact_at(&mut buf[..body_offset], 0).map_err(io)?;
        if buf[..body_offset] != head[..] {
            return Err(LayoutError::corrupt(
                path,
                "header",
                "the file changed while it was being opened",
            ));
        }
        let mut crc = crc32fast::Hasher::new();
        let mut identity = true;
        let mut below_n = vec![0u64; n.div_ceil(64)];
        let mut others: Vec<u64> = Vec::new();
        let mut dup: Option<u64> = None;
        let mut free = 0usize;
        let mut slot = 0usize;
        let mut off = 0u64;
        while off < body_bytes {
            let len = (body_bytes - off).min(CHECK_CHUNK_BYTES as u64) as usize;
            let chunk = &mut buf[..len];
            file.read_exact_at(chunk, body_offset as u64 + off)
                .map_err(io)?;
            crc.update(chunk);
            for c in chunk.chunks_exact(8) {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                let l = u64::from_le_bytes(a);
                identity &= l == slot as u64;
                if l < n as u64 {
                    let (w, bit) = ((l / 64) as usize, 1u64 << (l % 64));
                    if below_n[w] & bit != 0 {
                        dup = Some(dup.map_or(l, |d| d.min(l)));
                    }
                    below_n[w] |= bit;
                } else if l != FREE_LABEL {
                    others.push(l);
                } else {
                    free += 1;
                }
                slot += 1;
            }
            off += len as u64;
        }
        let mut stored = [0u8; 4];
        file.read_exact_at(&mut stored, body_offset as u64 + body_bytes)
            .map_err(io)?;
        let (expected, got) = (u32::from_le_bytes(stored), crc.finalize());
        if expected != got {
            return Err(LayoutError::ChecksumMismatch {
                path: path.into(),
                what: "body".into(),
                expected,
                got,
            });
        }
        let n_field = fields.first().copied().unwrap_or(0);
        if n_field.checked_mul(8) != Some(body_bytes) {
            return Err(LayoutError::field(
                path,
                "n",
                n_field,
                format!("body holds {body_bytes} bytes"),
            ));
        }
        drop(below_n);
        others.sort_unstable();
        if let Some(w) = others.windows(2).find(|w| w[0] == w[1]) {
            dup = Some(dup.map_or(w[0], |d| d.min(w[0])));
        }
        if let Some(l) = dup {
            return Err(LayoutError::corrupt(
                path,
                "body",
                format!("label {l} is mapped to two slots"),
            ));
        }
        if identity {
            return Ok(SlotLabels {
                n,
                map: None,
                body_offset,
                free,
            });
        }
        // SAFETY: a read-only, private mapping of a file the engine never modifies in place
        // (a merge renames a new file over it; a build unlinks it); a concurrent external
        // truncation is outside the supported contract, as for every mmap-based reader.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        if map.len() as u64 != file_bytes {
            return Err(LayoutError::SizeMismatch {
                path: path.into(),
                expected_bytes: file_bytes,
                actual_bytes: map.len() as u64,
                detail: "the mapping of the checked file".into(),
            });
        }
        Ok(SlotLabels {
            n,
            map: Some(map),
            body_offset,
            free,
        })
    }

    /// The label of `slot` ([`FREE_LABEL`] for a free slot).
    ///
    /// # Panics
    /// When `slot` ≥ n (callers index slots of this map only).
    #[inline]
    pub fn get(&self, slot: usize) -> u64 {
        assert!(
            slot < self.n,
            "slot {slot} is past the label map's {} slots",
            self.n
        );
        match &self.map {
            None => slot as u64,
            Some(m) => {
                let o = self.body_offset + 8 * slot;
                let mut a = [0u8; 8];
                a.copy_from_slice(&m[o..o + 8]);
                u64::from_le_bytes(a)
            }
        }
    }

    /// Whether `slot` is free ([`FREE_LABEL`]); reads nothing when no slot is free.
    ///
    /// # Panics
    /// As [`SlotLabels::get`].
    #[inline]
    pub fn is_free(&self, slot: usize) -> bool {
        self.free > 0 && self.get(slot) == FREE_LABEL
    }

    /// Slots labelled [`FREE_LABEL`] (counted at open).
    pub fn free_slots(&self) -> usize {
        self.free
    }

    /// Slots n.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the map has no slots.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Whether the map is the identity (nothing held, nothing mapped).
    pub fn is_identity(&self) -> bool {
        self.map.is_none()
    }

    /// Bytes of labels mapped from the file (n × 8; 0 for the identity). File-backed: the
    /// pages come from the page cache as they are read, and the kernel may drop them.
    pub fn mapped_bytes(&self) -> usize {
        self.map.as_ref().map_or(0, |_| self.n * 8)
    }

    /// The labels of slots 0, 1, …, n − 1 (reads the whole mapping when not the identity).
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.n).map(|s| self.get(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `SlotLabels::open` and `read_labels` on the file at `p`: the same labels or the same
    /// error message.
    fn both_agree(p: &Path) -> std::result::Result<Vec<u64>, String> {
        let full = read_labels(p).map_err(|e| e.to_string());
        let mapped = SlotLabels::open(p)
            .map(|m| {
                assert_eq!(m.len(), m.iter().count());
                assert_eq!(
                    m.free_slots(),
                    m.iter().filter(|&l| l == FREE_LABEL).count()
                );
                (0..m.len()).for_each(|s| assert_eq!(m.is_free(s), m.get(s) == FREE_LABEL));
                m.iter().collect::<Vec<u64>>()
            })
            .map_err(|e| e.to_string());
        assert_eq!(full, mapped);
        full
    }

    #[test]
    fn identity_is_held_as_nothing_and_anything_else_is_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("labels.bin");
        for (labels, identity, free) in [
            (vec![], true, 0),
            (vec![0], true, 0),
            ((0..5000).collect::<Vec<u64>>(), true, 0),
            (vec![0, 2, 1], false, 0),
            (vec![0, FREE_LABEL, 2], false, 1),
            (vec![1], false, 0),
            (vec![7, u64::MAX - 1, FREE_LABEL, FREE_LABEL], false, 2),
        ] {
            write_labels(&p, &labels).unwrap();
            let m = SlotLabels::open(&p).unwrap();
            assert_eq!(m.is_identity(), identity, "{labels:?}");
            assert_eq!(m.free_slots(), free, "{labels:?}");
            assert_eq!(
                m.mapped_bytes(),
                if identity { 0 } else { 8 * labels.len() }
            );
            assert_eq!(m.iter().collect::<Vec<u64>>(), labels);
            assert_eq!(both_agree(&p), Ok(labels));
        }
    }

    #[test]
    fn a_label_on_two_slots_is_refused_below_and_above_n_and_the_smallest_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("labels.bin");
        for (labels, named) in [
            (vec![2, 0, 1, 2], 2),                   // below n (the bitmap)
            (vec![9, 1 << 40, 0, 1 << 40], 1 << 40), // above n (the sorted rest)
            (vec![3, 3, 1 << 40, 1 << 40, 0, 7], 3), // both: the smaller
            (vec![50, 50, 2, 0, 2, 1], 2),           // both: the smaller
            (vec![u64::MAX - 1, 0, u64::MAX - 1], u64::MAX - 1),
        ] {
            write_labels(&p, &labels).unwrap();
            let e = SlotLabels::open(&p).unwrap_err().to_string();
            assert!(
                e.contains(&format!("label {named} is mapped to two slots"))
                    && e.contains("labels.bin"),
                "{labels:?}: {e}"
            );
            assert_eq!(both_agree(&p), Err(e));
        }
        // free slots may repeat
        write_labels(&p, &[FREE_LABEL, 4, FREE_LABEL]).unwrap();
        assert_eq!(both_agree(&p), Ok(vec![FREE_LABEL, 4, FREE_LABEL]));
    }

    #[test]
    fn every_flipped_byte_and_a_wrong_n_are_refused_as_read_labels_refuses_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("labels.bin");
        write_labels(&p, &[5, 3, 9, FREE_LABEL, 0]).unwrap();
        let good = std::fs::read(&p).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x04;
            std::fs::write(&p, &bad).unwrap();
            assert!(both_agree(&p).is_err(), "flip at byte {i} not detected");
        }
        std::fs::write(&p, &good[..good.len() - 8]).unwrap();
        assert!(both_agree(&p).is_err());
        // a CRC-valid header whose n disagrees with the body
        crate::blob::write_blob(&p, &LABELS_MAGIC, LABELS_VERSION, &[4], &[0u8; 24]).unwrap();
        let e = both_agree(&p).unwrap_err();
        assert!(e.contains("body holds 24 bytes"), "{e}");
    }

    proptest! {
        #[test]
        fn slot_labels_read_what_read_labels_reads(
            labels in proptest::collection::vec(
                prop_oneof![0u64..12, Just(FREE_LABEL), 1u64 << 50..(1 << 50) + 4],
                0..40,
            ),
            flip in proptest::option::of((0usize..400, 0u8..8)),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("labels.bin");
            write_labels(&p, &labels).unwrap();
            if let Some((at, bit)) = flip {
                let mut b = std::fs::read(&p).unwrap();
                let at = at % b.len();
                b[at] ^= 1 << bit;
                std::fs::write(&p, &b).unwrap();
            }
            let _ = both_agree(&p);
        }
    }

    /// Open cost of a 10 M-slot map, identity and permuted, against `read_labels`: a
    /// benchmark (prints; asserts only the answers). `cargo test --release -p ssdann-layout
    /// open_10m -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn open_10m_labels_benchmark() {
        let n = 10_000_000u64;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("labels.bin");
        // identity, then a permutation (a multiplicative walk of the slots)
        for (name, f) in [
            (
                "identity",
                Box::new(|s: usize| s as u64) as Box<dyn Fn(usize) -> u64>,
            ),
            (
                "permuted",
                Box::new(move |s: usize| (s as u64 * 7_777_777) % n),
            ),
        ] {
            write_labels_with(&p, n as usize, &f).unwrap();
            let _ = std::fs::read(&p).unwrap(); // into the page cache
            let t = std::time::Instant::now();
            let m = SlotLabels::open(&p).unwrap();
            let open_ms = t.elapsed().as_secs_f64() * 1e3;
            let t = std::time::Instant::now();
            let v = read_labels(&p).unwrap();
            let read_ms = t.elapsed().as_secs_f64() * 1e3;
            assert_eq!(m.is_identity(), name == "identity");
            assert_eq!((m.get(12345), v[12345]), (f(12345), f(12345)));
            println!("{name}: SlotLabels::open {open_ms:.0} ms, read_labels {read_ms:.0} ms");
        }
    }

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
