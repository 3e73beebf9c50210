//! The io_uring backend: the index file and the aligned buffers registered once per ring;
//! all of a beam's reads go in ONE submission (`ReadFixed`, O_DIRECT).

use super::{completion_error, AlignedBuf, ReadReq, SectorFile, SectorReader};
use crate::error::EngineError;
use crate::Result;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;

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
