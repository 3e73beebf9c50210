//! The label map and PQ codes a committed merge puts in place (docs/FORMAT.md,
//! "merge.journal", recovery): checked whole before recovery's first write, rename or delete.

use super::parse::CommittedJournal;
use crate::blob::BlobReader;
use crate::error::LayoutError;
use crate::header::IndexHeader;
use crate::labels::{SlotLabels, LABELS_FILE};
use crate::pq::{PQ_CODES_FILE, PQ_CODES_MAGIC, PQ_FILE_VERSION};
use crate::Result;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Body bytes read per piece while checking the PQ codes.
const CHECK_CHUNK_BYTES: usize = 1 << 20;

/// Where one of the files a committed merge puts in place lies now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedFile {
    /// The final name (`labels.bin` or `pq_codes.bin`).
    pub name: &'static str,
    /// The file checked: `NAME.merge` while staged, `NAME` once renamed.
    pub path: PathBuf,
    /// Still under its staged name (the rename is to come).
    pub staged: bool,
}

/// Checks, before recovery acts, the two files the committed journal `c` of the index in
/// `dir` puts in place — `labels.bin.merge` and `pq_codes.bin.merge`, or, where that name is
/// gone because the rename already happened, `labels.bin` and `pq_codes.bin`: header and
/// body checksums, n = the new header's n, the codes' M = its M, no label on two slots, and
/// (format 4) the body CRC equal to the one the commit entry recorded, so that no other
/// file — an older index's, another merge's — can stand in for the staged one.
///
/// # Errors
/// [`LayoutError::Corrupt`] naming the file, what is wrong, and that the merge was not
/// finished and nothing changed; [`LayoutError::Io`].
///
/// # Allocates
/// As [`SlotLabels::open`] for the labels; a 1 MiB buffer for the codes.
pub fn check_staged(dir: &Path, c: &CommittedJournal) -> Result<[StagedFile; 2]> {
    let new = &c.new_header;
    let crcs = c.staged_crcs;
    let at = |name: &'static str| {
        let staged = dir.join(format!("{name}.merge"));
        if staged.exists() {
            StagedFile {
                name,
                path: staged,
                staged: true,
            }
        } else {
            StagedFile {
                name,
                path: dir.join(name),
                staged: false,
            }
        }
    };
    let labels = at(LABELS_FILE);
    let codes = at(PQ_CODES_FILE);
    let refuse = |f: &StagedFile, e: String| {
        LayoutError::corrupt(
            &f.path,
            format!(
                "{} of the committed merge in {}",
                if f.staged {
                    "staged file"
                } else {
                    "file already renamed"
                },
                super::JOURNAL_FILE
            ),
            format!("{e}; refusing to finish the merge: no file was changed"),
        )
    };
    let n = SlotLabels::open(&labels.path)
        .map_err(|e| refuse(&labels, e.to_string()))?
        .len() as u64;
    if n != new.n_slots {
        return Err(refuse(
            &labels,
            format!("n = {n}, the committed header's n = {}", new.n_slots),
        ));
    }
    check_codes(&codes.path, new).map_err(|e| refuse(&codes, e))?;
    if let Some(want) = crcs {
        for (f, want) in [(&labels, want[0]), (&codes, want[1])] {
            let got = stored_body_crc(&f.path).map_err(|e| refuse(f, e.to_string()))?;
            if got != want {
                return Err(refuse(
                    f,
                    format!("body CRC {got:#010x}, but the commit entry records {want:#010x}: not this merge's file"),
                ));
            }
        }
    }
    Ok([labels, codes])
}

/// Checks `pq_codes.bin` at `path` whole against header `new`: fields [n, M] equal to its
/// n and M, and the body checksum (streamed).
fn check_codes(path: &Path, new: &IndexHeader) -> std::result::Result<(), String> {
    let mut r =
        BlobReader::open(path, &PQ_CODES_MAGIC, PQ_FILE_VERSION).map_err(|e| e.to_string())?;
    let (n, m) = match r.fields[..] {
        [n, m] => (n, m),
        _ => return Err(format!("{} header fields, expected 2", r.fields.len())),
    };
    if n != new.n_slots || m != new.pq_m as u64 {
        return Err(format!(
            "n × M = {n} × {m}, the committed header's {} × {}",
            new.n_slots, new.pq_m
        ));
    }
    if n.checked_mul(m) != Some(r.body_bytes) {
        return Err(format!(
            "n × M = {n} × {m}, but the body holds {} bytes",
            r.body_bytes
        ));
    }
    // sized by the body the file really has (BlobReader::open checked it against the file)
    let mut buf = vec![0u8; r.remaining().min(CHECK_CHUNK_BYTES as u64) as usize];
    while r.remaining() > 0 {
        let len = r.remaining().min(CHECK_CHUNK_BYTES as u64) as usize;
        r.read(&mut buf[..len]).map_err(|e| e.to_string())?;
    }
    r.finish().map_err(|e| e.to_string())
}

/// The body CRC32 a blob file stores in its last 4 bytes (checked against the body by the
/// caller's full check first).
///
/// # Errors
/// [`LayoutError::Io`].
pub fn stored_body_crc(path: &Path) -> Result<u32> {
    let io = |e| LayoutError::io(path, e);
    let f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut crc = [0u8; 4];
    f.read_exact_at(&mut crc, len.saturating_sub(4))
        .map_err(io)?;
    Ok(u32::from_le_bytes(crc))
}
