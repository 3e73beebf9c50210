//! The io_uring backend: the index file and the aligned buffers registered once per ring;
//! all of a beam's reads go in ONE submission (`ReadFixed`, O_DIRECT).
//!
//! # What keeps the unsafe sound
//!
//! The kernel writes into the registered buffer until it posts a read's completion. So:
//! - every read pushed to the ring is recorded in `in_flight` (by slot, its user data) until
//!   its completion is reaped; a slot with a read in flight takes no other read;
//! - every error path waits for what it left in flight ([`UringReader::wait_all`]); if the
//!   ring itself keeps failing, the reader is marked `broken`: the context pool drops it
//!   ([`SectorReader::reusable`]) and `Drop` leaks the buffer instead of freeing memory
//!   the kernel may still write;
//! - `Drop` waits for every read still in flight, closes the ring, and only then frees the
//!   buffer;
//! - a forked child shares the ring (its queues are mapped shared) and the registered
//!   buffer is the parent's memory, so the reader records the process that set it up and,
//!   in any other process, returns an error without touching the ring, and on drop closes
//!   only its own copy of the ring and leaks its copy of the buffer.
//!
//! # Busy polling
//!
//! With a busy-poll budget ([`UringReader::with_busy_poll`]), a wait first submits what is
//! queued and then spins on the completion queue in user space, for at most the budget,
//! before it sleeps in `io_uring_enter`. A sleeping thread is woken by the completion: on a
//! VM that costs waking a halted vCPU and a context switch per wait. A spinning thread is
//! still interrupted to post the completion (task work), but its core never halts and it
//! never switches out. The price is the core, busy while it waits; when the
//! budget runs out the wait sleeps as without it. Reaping is the same either way.
//!
//! So that spinning never takes a core another search needs, a wait spins only while no
//! more searches run in the process than the machine has cores ([`ActiveSearch`]), and at
//! most one spinning wait per core ([`SPINNERS`]); otherwise it sleeps at once, as without
//! a budget. With more search threads than cores (or a merge's insert phase, which runs
//! four searches per core) nothing spins: busy polling cannot make a search slower than
//! sleeping would.

use super::{
    batch_while_in_flight, check_batch, completion_error, AlignedBuf, ReadReq, SectorFile,
    SectorReader,
};
use crate::error::EngineError;
use crate::Result;
use std::mem::ManuallyDrop;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Waits spinning right now, in every reader of the process (see "Busy polling").
static SPINNERS: AtomicUsize = AtomicUsize::new(0);
/// Searches running right now in the process (see "Busy polling").
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Counts one running search for as long as it lives (the busy-poll rule: spin only while
/// no more searches run than the machine has cores).
pub(crate) struct ActiveSearch(());

impl ActiveSearch {
    /// Starts counting a search.
    pub(crate) fn start() -> Self {
        ACTIVE.fetch_add(1, Ordering::AcqRel);
        ActiveSearch(())
    }
}

impl Drop for ActiveSearch {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The cores of this machine (cached; 1 when unknown).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |c| c.get()))
}

/// Failed ring entries (`io_uring_enter` errors other than EINTR) [`UringReader::wait_all`]
/// tolerates, 1 ms apart, before it gives the reads in flight up as lost.
const RING_FAILURES_MAX: u32 = 10;

/// io_uring backend: registered file and buffers, one submission per batch.
pub struct UringReader {
    /// Closed by `Drop` before the buffer is freed.
    ring: ManuallyDrop<io_uring::IoUring>,
    file: Arc<SectorFile>,
    /// The registered buffer (`max_batch` slots of `slot_bytes`): freed by `Drop` only when
    /// no read can write into it any more, leaked otherwise.
    buf: ManuallyDrop<AlignedBuf>,
    slot_bytes: usize,
    max_batch: usize,
    /// File offset of the read in flight into each slot (pushed to the ring, completion not
    /// reaped yet), and how many there are.
    in_flight: Vec<Option<u64>>,
    in_flight_count: usize,
    /// Scratch for [`check_batch`] (`max_batch` entries, all false between calls).
    marks: Vec<bool>,
    /// The process that set the ring up (see the module docs on fork).
    pid: u32,
    /// The ring failed with reads in flight that could not be waited for.
    broken: bool,
    /// How long a wait spins on the completion queue before it sleeps (see the module
    /// docs); `None`: it sleeps at once.
    busy_poll: Option<Duration>,
    /// Test hook: the next this-many ring entries submit what is queued, then fail.
    #[cfg(test)]
    fail_enters: u32,
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
        // SAFETY: the buffer is a heap allocation (it never moves) that outlives every read
        // into it: `Drop` closes the ring first and frees the buffer only when no read is in
        // flight (it leaks it otherwise). If this registration fails, no read was ever
        // issued, so the order in which the locals `ring` and `buf` drop does not matter.
        unsafe { ring.submitter().register_buffers(&[iov]) }
            .map_err(|e| EngineError::io(&file.path, e))?;
        Ok(UringReader {
            ring: ManuallyDrop::new(ring),
            file,
            buf: ManuallyDrop::new(buf),
            slot_bytes,
            max_batch,
            in_flight: vec![None; max_batch],
            in_flight_count: 0,
            marks: vec![false; max_batch],
            pid: std::process::id(),
            broken: false,
            busy_poll: None,
            #[cfg(test)]
            fail_enters: 0,
        })
    }

    /// Sets the busy-poll budget: each wait spins on the completion queue for up to `us` µs
    /// before it sleeps (0: never spins). See the module docs for what it costs.
    #[must_use]
    pub fn with_busy_poll(mut self, us: u32) -> Self {
        self.busy_poll = (us > 0).then(|| Duration::from_micros(u64::from(us)));
        self
    }

    /// Refuses to go on in a process other than the one that set the ring up.
    fn check_process(&self) -> Result<()> {
        let pid = std::process::id();
        if pid == self.pid {
            return Ok(());
        }
        Err(EngineError::io(
            &self.file.path,
            std::io::Error::other(format!(
                "io_uring ring used after fork: it was set up by process {} and is used in process {pid}; a search context must not cross a fork",
                self.pid
            )),
        ))
    }

    /// Pushes the read `req` (slot checked free and in range) and records it in flight.
    ///
    /// # Errors
    /// [`EngineError::Io`] when the submission queue is full (nothing pushed then).
    fn push(&mut self, req: ReadReq) -> Result<()> {
        let sb = self.slot_bytes;
        debug_assert!(req.slot < self.max_batch && self.in_flight[req.slot].is_none());
        // SAFETY: slot < max_batch (checked by the callers), so the destination lies inside
        // the registered buffer.
        let dst = unsafe { self.buf.as_mut_ptr().add(req.slot * sb) };
        let e = io_uring::opcode::ReadFixed::new(io_uring::types::Fixed(0), dst, sb as u32, 0)
            .offset(req.offset)
            .build()
            .user_data(req.slot as u64);
        // SAFETY: the slot is recorded in flight below and takes no other read until its
        // completion is reaped; the buffer outlives the read (see `new` and `Drop`).
        unsafe { self.ring.submission().push(&e) }.map_err(|_| {
            EngineError::io(
                &self.file.path,
                std::io::Error::other("io_uring submission queue full"),
            )
        })?;
        self.in_flight[req.slot] = Some(req.offset);
        self.in_flight_count += 1;
        Ok(())
    }

    /// Submits every queued read and waits until `want` completions are posted, retrying on
    /// EINTR.
    fn enter(&mut self, want: usize) -> std::io::Result<()> {
        #[cfg(test)]
        if self.fail_enters > 0 {
            self.fail_enters -= 1;
            self.ring.submit()?; // the reads go out, as with a wait that fails
            return Err(std::io::Error::other("injected io_uring failure"));
        }
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Busy polling (see the module docs): submits every queued read, then spins until the
    /// completion queue holds `want` entries or the budget has passed. Does nothing without
    /// a budget, or while every core already has a spinning wait; reaping is left to the
    /// caller. Returns whether it spun.
    fn poll(&mut self, want: usize) -> std::io::Result<bool> {
        let Some(budget) = self.busy_poll else {
            return Ok(false);
        };
        if !self.ring.submission().is_empty() {
            self.submit_queued_now()?;
        }
        // only while searches ≤ cores, and at most one spinning wait per core: else sleep
        if ACTIVE.load(Ordering::Acquire) > cores() {
            return Ok(false);
        }
        if SPINNERS.fetch_add(1, Ordering::AcqRel) >= cores() {
            SPINNERS.fetch_sub(1, Ordering::AcqRel);
            return Ok(false);
        }
        let t = Instant::now();
        while self.ring.completion().len() < want && t.elapsed() < budget {
            std::hint::spin_loop();
        }
        SPINNERS.fetch_sub(1, Ordering::AcqRel);
        Ok(true)
    }

    /// Submits every queued read without waiting, retrying on EINTR.
    fn submit_queued_now(&mut self) -> std::io::Result<()> {
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reaps every posted completion: frees its slot, keeps the first failed or short
    /// read's error in `first_err`, and appends its slot to `done` when given.
    fn reap(&mut self, first_err: &mut Option<EngineError>, mut done: Option<&mut Vec<usize>>) {
        let sb = self.slot_bytes;
        for cqe in self.ring.completion() {
            let slot = cqe.user_data() as usize;
            // every entry pushed carries its slot, recorded in flight (see `push`)
            let Some(offset) = self.in_flight.get_mut(slot).and_then(Option::take) else {
                continue;
            };
            self.in_flight_count -= 1;
            if first_err.is_none() {
                *first_err = completion_error(&self.file.path, offset, cqe.result(), sb);
            }
            if let Some(d) = done.as_deref_mut() {
                d.push(slot);
            }
        }
    }

    /// Waits for every read in flight and forgets the results. When the ring fails
    /// [`RING_FAILURES_MAX`] times before they are all reaped, marks the reader broken
    /// (see the module docs) instead of waiting forever.
    fn wait_all(&mut self) {
        let mut failures = 0;
        let mut ignored = None;
        while self.in_flight_count > 0 && !self.broken {
            if self.enter(self.in_flight_count).is_err() {
                failures += 1;
                if failures >= RING_FAILURES_MAX {
                    self.broken = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            self.reap(&mut ignored, None);
        }
    }

    /// Test hook: the next `n` ring entries submit what is queued, then fail.
    #[cfg(test)]
    pub(crate) fn fail_next_enters(&mut self, n: u32) {
        self.fail_enters = n;
    }

    /// Reads in flight (pushed, completion not reaped).
    #[cfg(test)]
    pub(crate) fn in_flight_count(&self) -> usize {
        debug_assert_eq!(
            self.in_flight_count,
            self.in_flight.iter().filter(|x| x.is_some()).count()
        );
        self.in_flight_count
    }

    /// Test hook: submits the queued reads without waiting.
    #[cfg(test)]
    pub(crate) fn submit_queued(&mut self) -> std::io::Result<usize> {
        self.ring.submit()
    }
}

impl SectorReader for UringReader {
    fn read_batch(&mut self, reqs: &[ReadReq]) -> Result<()> {
        self.check_process()?;
        if self.in_flight_count > 0 {
            return Err(batch_while_in_flight(reqs.len(), self.in_flight_count));
        }
        check_batch(reqs, self.max_batch, &mut self.marks, |_| false)?;
        let mut first_err = None;
        for (i, &r) in reqs.iter().enumerate() {
            if let Err(e) = self.push(r) {
                // the reads pushed so far are queued: they are waited for below
                first_err = Some(e);
                debug_assert_eq!(self.in_flight_count, i);
                break;
            }
        }
        if self.in_flight_count > 0 {
            if let Err(e) = self.poll(self.in_flight_count) {
                self.wait_all();
                return Err(EngineError::io(&self.file.path, e));
            }
            self.reap(&mut first_err, None);
        }
        while self.in_flight_count > 0 {
            if let Err(e) = self.enter(self.in_flight_count) {
                self.wait_all();
                return Err(EngineError::io(&self.file.path, e));
            }
            self.reap(&mut first_err, None);
        }
        first_err.map_or(Ok(()), Err)
    }

    fn submit(&mut self, req: ReadReq) -> Result<()> {
        self.check_process()?;
        check_batch(&[req], self.max_batch, &mut self.marks, |s| {
            self.in_flight[s].is_some()
        })?;
        // no syscall here: the next `wait_any` submits every queued read with its wait
        self.push(req)
    }

    fn wait_any(&mut self, done: &mut Vec<usize>) -> Result<()> {
        self.check_process()?;
        let mut first_err: Option<EngineError> = None;
        let start = done.len();
        if self.in_flight_count > 0 {
            if let Err(e) = self.poll(1) {
                self.wait_all();
                return Err(EngineError::io(&self.file.path, e));
            }
            self.reap(&mut first_err, Some(&mut *done));
        }
        while done.len() == start && self.in_flight_count > 0 {
            if let Err(e) = self.enter(1) {
                self.wait_all();
                return Err(EngineError::io(&self.file.path, e));
            }
            self.reap(&mut first_err, Some(&mut *done));
        }
        first_err.map_or(Ok(()), Err)
    }

    fn flush(&mut self) -> Result<()> {
        self.check_process()?;
        self.submit_queued_now()
            .map_err(|e| EngineError::io(&self.file.path, e))
    }

    fn drain(&mut self) {
        if self.check_process().is_ok() {
            self.wait_all();
        }
    }

    fn reusable(&self) -> bool {
        !self.broken && self.in_flight_count == 0 && self.pid == std::process::id()
    }

    fn slot(&self, slot: usize) -> &[u8] {
        &self.buf.as_slice()[slot * self.slot_bytes..(slot + 1) * self.slot_bytes]
    }

    fn name(&self) -> &'static str {
        "io_uring"
    }
}

impl Drop for UringReader {
    /// Waits for every read in flight (a read of a regular file always completes; a ring
    /// that keeps failing is given up after [`RING_FAILURES_MAX`] tries, see `wait_all`),
    /// closes the ring, then frees the buffer — or leaks it when a read may still write into
    /// it, or when this is not the process that set the ring up (a forked child: the
    /// parent's ring is not ours to wait on; closing our copy of its file descriptor and
    /// mappings leaves the parent's alone).
    fn drop(&mut self) {
        let ours = self.pid == std::process::id();
        if ours {
            self.wait_all();
        }
        let buffer_idle = ours && self.in_flight_count == 0;
        // SAFETY: the ring is not used after this (only `buf` below, which it does not touch).
        unsafe { ManuallyDrop::drop(&mut self.ring) };
        if buffer_idle {
            // SAFETY: no read is in flight and the ring is closed: nothing writes into the
            // buffer any more; it is not used after this.
            unsafe { ManuallyDrop::drop(&mut self.buf) };
        }
    }
}

#[cfg(test)]
mod tests;
