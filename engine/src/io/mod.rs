//! Sector I/O backends behind one small trait (docs/ARCHITECTURE.md, "Bird's-eye view", Search):
//! - [`UringReader`]: io_uring with the index file and the aligned buffers registered once
//!   per ring; all of a beam's reads go in ONE submission (`ReadFixed`, O_DIRECT).
//! - [`PreadReader`]: one `pread` per block (also O_DIRECT), the portable fallback.
//!
//! Each search thread owns one reader and one [`AlignedBuf`] of `max_batch` block slots.

use crate::error::EngineError;
use crate::Result;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) mod lock;
mod pread;
mod uring;

pub use pread::PreadReader;
pub use uring::UringReader;

/// Largest busy-poll budget a reader takes (`OpenOptions::busy_poll_us`): 10 ms, far beyond
/// any read of a working disk.
pub const MAX_BUSY_POLL_US: u32 = 10_000;
pub(crate) use uring::ActiveSearch;

/// Alignment of O_DIRECT buffers (bytes).
pub const IO_ALIGN: usize = 4096;

/// A zeroed heap buffer aligned to [`IO_ALIGN`], for O_DIRECT reads.
pub struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively (like Box<[u8]>).
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only allow reads of the owned bytes.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `len` zeroed bytes (`len` rounded up to a multiple of 4096, at least 4096).
    ///
    /// # Panics
    /// On allocation failure (as `Vec` does).
    pub fn new(len: usize) -> Self {
        let len = len.max(IO_ALIGN).div_ceil(IO_ALIGN) * IO_ALIGN;
        let layout = std::alloc::Layout::from_size_align(len, IO_ALIGN).expect("aligned layout");
        // SAFETY: layout has non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr =
            std::ptr::NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, len }
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Always false (at least 4096 bytes).
    pub fn is_empty(&self) -> bool {
        false
    }
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for len initialized (zeroed) bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout =
            std::alloc::Layout::from_size_align(self.len, IO_ALIGN).expect("aligned layout");
        // SAFETY: allocated in `new` with this exact layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
    }
}

/// Which backend to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IoBackend {
    /// io_uring (default); falls back to pread with one warning if the ring cannot be set up.
    #[default]
    IoUring,
    /// pread(2).
    Pread,
}

impl std::str::FromStr for IoBackend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "io_uring" | "uring" | "io-uring" => Ok(IoBackend::IoUring),
            "pread" => Ok(IoBackend::Pread),
            o => Err(format!(
                "unknown I/O backend {o:?} (expected io_uring or pread)"
            )),
        }
    }
}

/// The open index file shared by every reader.
#[derive(Debug)]
pub struct SectorFile {
    /// Path (for errors).
    pub path: PathBuf,
    /// The file.
    pub file: std::fs::File,
    /// Whether it was opened with O_DIRECT (false only where the filesystem refuses it).
    pub direct: bool,
    /// Taken shared by every batch of reads and exclusively by a merge while it rewrites
    /// blocks in place, so that no read ever sees a block half written.
    pub(crate) gate: parking_lot::RwLock<()>,
}

impl SectorFile {
    /// Opens `path` read-only with O_DIRECT, or without it (and `direct = false`) when the
    /// filesystem does not support it (e.g. tmpfs answers EINVAL).
    ///
    /// # Errors
    /// [`EngineError::Io`].
    pub fn open(path: &Path) -> Result<Arc<SectorFile>> {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        {
            Ok(file) => Ok(Arc::new(SectorFile {
                path: path.into(),
                file,
                direct: true,
                gate: parking_lot::RwLock::new(()),
            })),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
                Ok(Arc::new(SectorFile {
                    path: path.into(),
                    file,
                    direct: false,
                    gate: parking_lot::RwLock::new(()),
                }))
            }
            Err(e) => Err(EngineError::io(path, e)),
        }
    }
}

/// One read: `len` bytes at file offset `offset` into slot `slot` of the reader's buffer.
#[derive(Clone, Copy, Debug)]
pub struct ReadReq {
    /// Byte offset in the file (multiple of 4096).
    pub offset: u64,
    /// Buffer slot index (< max_batch).
    pub slot: usize,
}

/// A per-thread sector reader with `max_batch` buffer slots of `slot_bytes` each.
///
/// Caller errors (a slot out of range, used twice in one batch or still busy, a batch larger
/// than `max_batch`, a batch while submitted reads are in flight) are returned as
/// [`EngineError::InvalidQuery`] before any read is issued, never panics. A reader belongs
/// to the process that created it: the io_uring one returns [`EngineError::Io`] ("io_uring
/// ring used after fork") in a forked child rather than touch its parent's ring.
pub trait SectorReader: Send {
    /// Reads every request (all `slot_bytes` long, each into its own slot) as one batch;
    /// returns when all have completed. Nothing may be in flight from [`Self::submit`].
    ///
    /// On every error, no read of the batch is left in flight — unless the ring itself kept
    /// failing, and then [`Self::reusable`] turns false.
    ///
    /// # Errors
    /// - [`EngineError::InvalidQuery`]: more than `max_batch` requests, a slot out of range
    ///   or given twice, or submitted reads still in flight (nothing is read then);
    /// - [`EngineError::Io`] on a failed or short read, a failed ring, or use after fork.
    fn read_batch(&mut self, reqs: &[ReadReq]) -> Result<()>;
    /// Queues one read (look-ahead rounds) without waiting; the next [`Self::wait_any`]
    /// issues it (io_uring: one syscall submits every queued read and waits) and reports its
    /// slot once the bytes are there. At most `max_batch` may be in flight, one per slot.
    ///
    /// # Errors
    /// - [`EngineError::InvalidQuery`]: the slot is out of range or has a read in flight;
    /// - [`EngineError::Io`]: the submission queue is full, or use after fork.
    fn submit(&mut self, req: ReadReq) -> Result<()>;
    /// Waits until at least one submitted read has completed; appends the slots of every
    /// completed read to `done`. Returns at once when nothing is in flight.
    ///
    /// # Errors
    /// - [`EngineError::Io`] on a failed or short read (other reads may still be in flight:
    ///   [`Self::drain`] them);
    /// - [`EngineError::Io`] when the ring fails (every read in flight is waited for first,
    ///   or the reader stops being [`Self::reusable`]), or use after fork.
    fn wait_any(&mut self, done: &mut Vec<usize>) -> Result<()>;
    /// Sends every read queued by [`Self::submit`] to the device now, without waiting
    /// (io_uring: one `io_uring_enter`; pread: nothing, its reads are done in `submit`), so
    /// that they are in flight while the caller computes.
    ///
    /// # Errors
    /// [`EngineError::Io`] when the ring refuses the submission (the reads stay queued; the
    /// next [`Self::wait_any`] or [`Self::drain`] submits them), or use after fork.
    fn flush(&mut self) -> Result<()>;
    /// Waits for every read still in flight and forgets them (after a search stopped early
    /// on an error, so that the next one finds every slot free).
    fn drain(&mut self);
    /// Whether the reader may serve another search: false when reads are still in flight
    /// (e.g. after a ring failure they could not be waited for) or in a process other than
    /// the one that created it. The search context pool drops a reader that is not.
    fn reusable(&self) -> bool;
    /// The bytes of slot `slot`.
    ///
    /// # Panics
    /// When `slot` ≥ `max_batch` (a broken invariant of the caller, like a slice index).
    fn slot(&self, slot: usize) -> &[u8];
    /// Backend name ("io_uring" or "pread").
    fn name(&self) -> &'static str;
}

/// A caller error in read requests.
pub(crate) fn invalid_request(field: &'static str, value: String, reason: String) -> EngineError {
    EngineError::InvalidQuery {
        field,
        value,
        reason,
    }
}

/// The error of a `read_batch` of `n` reads while `in_flight` submitted reads are in flight.
pub(crate) fn batch_while_in_flight(n: usize, in_flight: usize) -> EngineError {
    invalid_request(
        "read batch",
        format!("{n} reads"),
        format!("{in_flight} submitted reads are still in flight (wait_any or drain them first)"),
    )
}

/// Checks requests against a reader of `max_batch` slots: at most `max_batch` of them, each
/// slot in range, no slot twice, none `busy`. `marks` (`max_batch` entries, all false) is
/// scratch and is all false again on return.
///
/// # Errors
/// [`EngineError::InvalidQuery`] naming the first bad request.
pub(crate) fn check_batch(
    reqs: &[ReadReq],
    max_batch: usize,
    marks: &mut [bool],
    busy: impl Fn(usize) -> bool,
) -> Result<()> {
    debug_assert_eq!(marks.len(), max_batch);
    if reqs.len() > max_batch {
        return Err(invalid_request(
            "read batch",
            format!("{} reads", reqs.len()),
            format!("at most max_batch = {max_batch} (one per buffer slot)"),
        ));
    }
    let mut bad = None;
    for (i, r) in reqs.iter().enumerate() {
        let why = if r.slot >= max_batch {
            format!("must be < max_batch = {max_batch}")
        } else if marks[r.slot] {
            "given twice in one batch".to_string()
        } else if busy(r.slot) {
            "has a read in flight".to_string()
        } else {
            marks[r.slot] = true;
            continue;
        };
        bad = Some((i, why));
        break;
    }
    let checked = bad.as_ref().map_or(reqs.len(), |b| b.0);
    for r in &reqs[..checked] {
        marks[r.slot] = false;
    }
    match bad {
        None => Ok(()),
        Some((i, why)) => Err(invalid_request(
            "read slot",
            reqs[i].slot.to_string(),
            format!("request {i} (offset {}): the slot {why}", reqs[i].offset),
        )),
    }
}

pub(crate) fn short_read(path: &Path, offset: u64, got: usize, want: usize) -> EngineError {
    EngineError::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("read of {want} bytes at offset {offset} returned {got}"),
        ),
    )
}

/// The error a read's completion `res` (bytes read, or −errno) stands for, if any.
pub(crate) fn completion_error(
    path: &Path,
    offset: u64,
    res: i32,
    want: usize,
) -> Option<EngineError> {
    if res < 0 {
        Some(EngineError::io(
            path,
            std::io::Error::from_raw_os_error(-res),
        ))
    } else if res as usize != want {
        Some(short_read(path, offset, res as usize, want))
    } else {
        None
    }
}

/// Creates a reader of the requested kind; io_uring falls back to pread, printing one
/// warning line per process, when the ring cannot be set up. `busy_poll_us`: see
/// [`UringReader::with_busy_poll`] (pread ignores it).
pub fn make_reader(
    kind: IoBackend,
    file: Arc<SectorFile>,
    slot_bytes: usize,
    max_batch: usize,
    busy_poll_us: u32,
) -> Box<dyn SectorReader> {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if kind == IoBackend::IoUring {
        match UringReader::new(file.clone(), slot_bytes, max_batch) {
            Ok(r) => return Box::new(r.with_busy_poll(busy_poll_us)),
            Err(e) => {
                WARNED.call_once(|| log::warn!("io_uring unavailable ({e}); falling back to pread"))
            }
        }
    }
    Box::new(PreadReader::new(file, slot_bytes, max_batch))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
    use super::*;

    #[test]
    fn queued_reads_complete_in_their_slots_and_drain_frees_the_slots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..8 * IO_ALIGN)
            .map(|i| (i / IO_ALIGN) as u8 + 1)
            .collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = SectorFile::open(&path).unwrap();
        for mut r in [
            make_reader(IoBackend::IoUring, file.clone(), IO_ALIGN, 4, 0),
            make_reader(IoBackend::IoUring, file.clone(), IO_ALIGN, 4, 1000),
            make_reader(IoBackend::Pread, file.clone(), IO_ALIGN, 4, 0),
        ] {
            for (slot, block) in [(0usize, 5u64), (2, 1), (3, 7)] {
                r.submit(ReadReq {
                    offset: block * IO_ALIGN as u64,
                    slot,
                })
                .unwrap();
            }
            let mut done = Vec::new();
            while done.len() < 3 {
                r.wait_any(&mut done).unwrap();
            }
            done.sort_unstable();
            assert_eq!(done, vec![0, 2, 3], "{}", r.name());
            assert!(
                r.slot(0).iter().all(|&b| b == 6)
                    && r.slot(2).iter().all(|&b| b == 2)
                    && r.slot(3).iter().all(|&b| b == 8)
            );
            // reads left in flight (a search that stopped on an error), then drained: the
            // same slots take new reads
            r.submit(ReadReq { offset: 0, slot: 1 }).unwrap();
            r.submit(ReadReq {
                offset: IO_ALIGN as u64,
                slot: 2,
            })
            .unwrap();
            r.drain();
            r.submit(ReadReq {
                offset: 4 * IO_ALIGN as u64,
                slot: 1,
            })
            .unwrap();
            let mut done = Vec::new();
            r.wait_any(&mut done).unwrap();
            assert_eq!(done, vec![1], "{}", r.name());
            assert!(r.slot(1).iter().all(|&b| b == 5));
        }
    }
}
