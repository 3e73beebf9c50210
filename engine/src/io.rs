//! Sector I/O backends behind one small trait (DESIGN.md, "Query algorithm"):
//! - [`UringReader`]: io_uring with the index file and the aligned buffers registered once
//!   per ring; all of a beam's reads go in ONE submission (`ReadFixed`, O_DIRECT).
//! - [`PreadReader`]: one `pread` per block (also O_DIRECT), the portable fallback.
//!
//! Each search thread owns one reader and one [`AlignedBuf`] of `max_batch` block slots.

use crate::error::EngineError;
use crate::Result;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Alignment of O_DIRECT buffers (bytes).
pub const IO_ALIGN: usize = 4096;

/// fsyncs directory `dir`, so that the files created, renamed or removed in it are durable.
///
/// # Errors
/// [`EngineError::Io`] naming `dir`.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| EngineError::io(dir, e))
}

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
    fn as_mut_ptr(&mut self) -> *mut u8 {
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
pub trait SectorReader: Send {
    /// Reads every request (all `slot_bytes` long) into its slot, as one batch; returns when
    /// all have completed.
    ///
    /// # Errors
    /// [`EngineError::Io`] on a failed or short read.
    fn read_batch(&mut self, reqs: &[ReadReq]) -> Result<()>;
    /// Queues one read (pipelined searches) without waiting; the next [`Self::wait_any`]
    /// issues it (io_uring: one syscall submits every queued read and waits) and reports its
    /// slot once the bytes are there. At most `max_batch` may be in flight.
    ///
    /// # Errors
    /// [`EngineError::Io`].
    fn submit(&mut self, req: ReadReq) -> Result<()>;
    /// Waits until at least one submitted read has completed; appends the slots of every
    /// completed read to `done`.
    ///
    /// # Errors
    /// [`EngineError::Io`] on a failed or short read.
    fn wait_any(&mut self, done: &mut Vec<usize>) -> Result<()>;
    /// Waits for every read still in flight and forgets them (after a search stopped early
    /// on an error, so that the next one finds every slot free).
    fn drain(&mut self);
    /// The bytes of slot `slot`.
    fn slot(&self, slot: usize) -> &[u8];
    /// Backend name ("io_uring" or "pread").
    fn name(&self) -> &'static str;
}

/// pread(2) backend.
pub struct PreadReader {
    file: Arc<SectorFile>,
    buf: AlignedBuf,
    slot_bytes: usize,
    /// Slots read by `submit` (synchronously) and not yet reported by `wait_any`.
    ready: Vec<usize>,
}

impl PreadReader {
    /// A reader with `max_batch` slots of `slot_bytes` (a multiple of 4096).
    pub fn new(file: Arc<SectorFile>, slot_bytes: usize, max_batch: usize) -> Self {
        PreadReader {
            file,
            buf: AlignedBuf::new(slot_bytes * max_batch.max(1)),
            slot_bytes,
            ready: Vec::with_capacity(max_batch.max(1)),
        }
    }
}

fn short_read(path: &Path, offset: u64, got: usize, want: usize) -> EngineError {
    EngineError::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("read of {want} bytes at offset {offset} returned {got}"),
        ),
    )
}

impl SectorReader for PreadReader {
    fn read_batch(&mut self, reqs: &[ReadReq]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        for r in reqs {
            let sb = self.slot_bytes;
            let dst = &mut self.buf.as_mut_slice()[r.slot * sb..(r.slot + 1) * sb];
            let got = self
                .file
                .file
                .read_at(dst, r.offset)
                .map_err(|e| EngineError::io(&self.file.path, e))?;
            if got != sb {
                return Err(short_read(&self.file.path, r.offset, got, sb));
            }
        }
        Ok(())
    }
    fn submit(&mut self, req: ReadReq) -> Result<()> {
        self.read_batch(&[req])?;
        self.ready.push(req.slot);
        Ok(())
    }
    fn wait_any(&mut self, done: &mut Vec<usize>) -> Result<()> {
        done.append(&mut self.ready);
        Ok(())
    }
    fn drain(&mut self) {
        self.ready.clear();
    }
    fn slot(&self, slot: usize) -> &[u8] {
        &self.buf.as_slice()[slot * self.slot_bytes..(slot + 1) * self.slot_bytes]
    }
    fn name(&self) -> &'static str {
        "pread"
    }
}

/// The error a read's completion `res` (bytes read, or −errno) stands for, if any.
fn completion_error(path: &Path, offset: u64, res: i32, want: usize) -> Option<EngineError> {
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

/// io_uring backend: registered file and buffers, one submission per batch.
pub struct UringReader {
    ring: io_uring::IoUring,
    file: Arc<SectorFile>,
    buf: AlignedBuf,
    slot_bytes: usize,
    max_batch: usize,
    /// File offset of the read in flight into each slot (`submit` / `wait_any`).
    in_flight: Vec<Option<u64>>,
}

impl UringReader {
    /// Sets up a ring of `max_batch` entries and registers the file and the buffer.
    ///
    /// # Errors
    /// [`EngineError::Io`] when the kernel refuses the ring or the registrations (the caller
    /// falls back to pread).
    pub fn new(file: Arc<SectorFile>, slot_bytes: usize, max_batch: usize) -> Result<Self> {
        let max_batch = max_batch.max(1);
        let entries = (max_batch as u32).next_power_of_two().max(8);
        let ring = io_uring::IoUring::new(entries).map_err(|e| EngineError::io(&file.path, e))?;
        let mut buf = AlignedBuf::new(slot_bytes * max_batch);
        ring.submitter()
            .register_files(&[file.file.as_raw_fd()])
            .map_err(|e| EngineError::io(&file.path, e))?;
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: the buffer lives as long as the ring (both owned by self; the ring is
        // dropped first because it is declared first) and is not moved (heap allocation).
        unsafe { ring.submitter().register_buffers(&[iov]) }
            .map_err(|e| EngineError::io(&file.path, e))?;
        Ok(UringReader {
            ring,
            file,
            buf,
            slot_bytes,
            max_batch,
            in_flight: vec![None; max_batch],
        })
    }
}

impl SectorReader for UringReader {
    fn read_batch(&mut self, reqs: &[ReadReq]) -> Result<()> {
        assert!(reqs.len() <= self.max_batch, "batch larger than the ring");
        let sb = self.slot_bytes;
        let base = self.buf.as_mut_ptr();
        {
            let mut sq = self.ring.submission();
            for (i, r) in reqs.iter().enumerate() {
                assert!(r.slot < self.max_batch, "slot out of range");
                // SAFETY: slot < max_batch, so the destination lies inside the registered buffer.
                let dst = unsafe { base.add(r.slot * sb) };
                let e =
                    io_uring::opcode::ReadFixed::new(io_uring::types::Fixed(0), dst, sb as u32, 0)
                        .offset(r.offset)
                        .build()
                        .user_data(i as u64);
                // SAFETY: the destination buffer stays valid and untouched until the completion
                // is reaped below (we wait for every entry before returning).
                unsafe { sq.push(&e) }.map_err(|_| {
                    EngineError::io(
                        &self.file.path,
                        std::io::Error::other("io_uring submission queue full"),
                    )
                })?;
            }
        }
        let mut pending = reqs.len();
        let mut first_err: Option<EngineError> = None;
        while pending > 0 {
            match self.ring.submit_and_wait(pending) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(EngineError::io(&self.file.path, e)),
            }
            for cqe in self.ring.completion() {
                pending -= 1;
                let r = reqs[cqe.user_data() as usize];
                if first_err.is_none() {
                    first_err = completion_error(&self.file.path, r.offset, cqe.result(), sb);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
    fn submit(&mut self, req: ReadReq) -> Result<()> {
        assert!(
            req.slot < self.max_batch && self.in_flight[req.slot].is_none(),
            "slot out of range or busy"
        );
        let sb = self.slot_bytes;
        // SAFETY: slot < max_batch, so the destination lies inside the registered buffer.
        let dst = unsafe { self.buf.as_mut_ptr().add(req.slot * sb) };
        let e = io_uring::opcode::ReadFixed::new(io_uring::types::Fixed(0), dst, sb as u32, 0)
            .offset(req.offset)
            .build()
            .user_data(req.slot as u64);
        // SAFETY: the slot is reserved (in_flight) until `wait_any` reaps its completion, and
        // the buffer outlives the ring.
        unsafe { self.ring.submission().push(&e) }.map_err(|_| {
            EngineError::io(
                &self.file.path,
                std::io::Error::other("io_uring submission queue full"),
            )
        })?;
        self.in_flight[req.slot] = Some(req.offset);
        // no syscall here: the next `wait_any` submits every queued read with its wait
        Ok(())
    }
    fn wait_any(&mut self, done: &mut Vec<usize>) -> Result<()> {
        let sb = self.slot_bytes;
        let mut first_err: Option<EngineError> = None;
        let start = done.len();
        while done.len() == start {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(EngineError::io(&self.file.path, e)),
            }
            for cqe in self.ring.completion() {
                let slot = cqe.user_data() as usize;
                let offset = self
                    .in_flight
                    .get_mut(slot)
                    .and_then(Option::take)
                    .unwrap_or(0);
                if first_err.is_none() {
                    first_err = completion_error(&self.file.path, offset, cqe.result(), sb);
                }
                done.push(slot);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
    fn drain(&mut self) {
        let mut done = Vec::new();
        while self.in_flight.iter().any(Option::is_some) {
            done.clear();
            if self.wait_any(&mut done).is_err() && done.is_empty() {
                // the ring itself failed: nothing more will complete; start afresh
                self.in_flight.iter_mut().for_each(|x| *x = None);
            }
        }
    }
    fn slot(&self, slot: usize) -> &[u8] {
        &self.buf.as_slice()[slot * self.slot_bytes..(slot + 1) * self.slot_bytes]
    }
    fn name(&self) -> &'static str {
        "io_uring"
    }
}

/// Creates a reader of the requested kind; io_uring falls back to pread, printing one
/// warning line per process, when the ring cannot be set up.
pub fn make_reader(
    kind: IoBackend,
    file: Arc<SectorFile>,
    slot_bytes: usize,
    max_batch: usize,
) -> Box<dyn SectorReader> {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if kind == IoBackend::IoUring {
        match UringReader::new(file.clone(), slot_bytes, max_batch) {
            Ok(r) => return Box::new(r),
            Err(e) => WARNED.call_once(|| {
                eprintln!("warning: io_uring unavailable ({e}); falling back to pread")
            }),
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
            make_reader(IoBackend::IoUring, file.clone(), IO_ALIGN, 4),
            make_reader(IoBackend::Pread, file.clone(), IO_ALIGN, 4),
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
