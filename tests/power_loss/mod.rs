//! The power-loss model of a file's unsynced writes (docs/FORMAT.md, "Media assumptions and
//! crash points"), shared by the two crash simulators: the engine's (tests/crash.rs) and the
//! builder's (tests/crash_build). Each logs its own events; the writes and length changes
//! issued to a file since its last fsync are handed here as [`FileOp`]s, and what reaches the
//! disk of them is decided by one [`Fate`] per crash case.

#![allow(dead_code)] // each simulator uses its part

/// What happens to the writes since a file's last fsync.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fate {
    Kept,
    Dropped,
    /// The last write lands only up to a boundary of this many bytes before its middle.
    Torn(u64),
    Zeroed,
    /// The oldest unsynced write lost, the later ones kept.
    Reordered,
}

/// Every fate a crash case is run with.
pub const FATES: [Fate; 6] = [
    Fate::Kept,
    Fate::Dropped,
    Fate::Torn(512),
    Fate::Torn(4096),
    Fate::Zeroed,
    Fate::Reordered,
];

/// A change to a file's bytes.
#[derive(Clone, Debug)]
pub enum FileOp {
    Write { off: u64, data: Vec<u8> },
    SetLen(u64),
}

fn write_at(content: &mut Vec<u8>, off: u64, data: &[u8]) {
    let end = off as usize + data.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[off as usize..end].copy_from_slice(data);
}

/// Applies `op` as issued (a synced change).
pub fn apply(content: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { off, data } => write_at(content, *off, data),
        FileOp::SetLen(len) => content.resize(*len as usize, 0),
    }
}

/// Applies the changes since the file's last fsync as a crash with `fate` leaves them.
pub fn apply_unsynced(content: &mut Vec<u8>, ops: &[FileOp], fate: Fate) {
    let n = ops.len();
    let is_write = |o: &FileOp| matches!(o, FileOp::Write { .. });
    let first_write = ops.iter().position(is_write);
    let writes = ops.iter().filter(|o| is_write(o)).count();
    for (k, op) in ops.iter().enumerate() {
        match (fate, op) {
            (Fate::Kept, _) => apply(content, op),
            (Fate::Dropped, _) => {}
            (Fate::Reordered, _) if Some(k) == first_write && writes > 1 => {}
            (Fate::Reordered, _) => apply(content, op),
            (Fate::Zeroed, FileOp::Write { off, data }) => {
                write_at(content, *off, &vec![0u8; data.len()])
            }
            (Fate::Zeroed, _) => apply(content, op),
            (Fate::Torn(b), FileOp::Write { off, data }) if k + 1 == n => {
                // the last write lands only up to a boundary before its middle
                let mid = off + data.len() as u64 / 2;
                let cut = (mid / b * b).max(*off);
                write_at(content, *off, &data[..(cut - off) as usize]);
            }
            (Fate::Torn(_), _) => apply(content, op),
        }
    }
}
