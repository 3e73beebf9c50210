//! The pread(2) backend: one O_DIRECT `pread` per block, the portable fallback.

use super::{
    batch_while_in_flight, check_batch, short_read, AlignedBuf, ReadReq, SectorFile, SectorReader,
};
use crate::error::EngineError;
use crate::Result;
use std::sync::Arc;

/// pread(2) backend.
pub struct PreadReader {
    file: Arc<SectorFile>,
    buf: AlignedBuf,
    slot_bytes: usize,
    max_batch: usize,
    /// Slots read by `submit` (synchronously) and not yet reported by `wait_any`.
    ready: Vec<usize>,
    /// Scratch for [`check_batch`] (`max_batch` entries, all false between calls).
    marks: Vec<bool>,
}

impl PreadReader {
    /// A reader with `max_batch` slots of `slot_bytes` (a multiple of 4096).
    pub fn new(file: Arc<SectorFile>, slot_bytes: usize, max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        PreadReader {
            file,
            buf: AlignedBuf::new(slot_bytes * max_batch),
            slot_bytes,
            max_batch,
            ready: Vec::with_capacity(max_batch),
            marks: vec![false; max_batch],
        }
    }
}

impl SectorReader for PreadReader {
    fn read_batch(&mut self, reqs: &[ReadReq]) -> Result<()> {
        // the same checks as io_uring's, so that both backends refuse the same requests
        if !self.ready.is_empty() {
            return Err(batch_while_in_flight(reqs.len(), self.ready.len()));
        }
        check_batch(reqs, self.max_batch, &mut self.marks, |_| false)?;
        self.read_into_slots(reqs)
    }
    fn submit(&mut self, req: ReadReq) -> Result<()> {
        let ready = &self.ready;
        check_batch(&[req], self.max_batch, &mut self.marks, |s| {
            ready.contains(&s)
        })?;
        self.read_into_slots(&[req])?;
        self.ready.push(req.slot);
        Ok(())
    }
    fn wait_any(&mut self, done: &mut Vec<usize>) -> Result<()> {
        done.append(&mut self.ready);
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    fn drain(&mut self) {
        self.ready.clear();
    }
    fn reusable(&self) -> bool {
        // nothing is ever in flight, and pread needs no per-process state
        true
    }
    fn slot(&self, slot: usize) -> &[u8] {
        &self.buf.as_slice()[slot * self.slot_bytes..(slot + 1) * self.slot_bytes]
    }
    fn name(&self) -> &'static str {
        "pread"
    }
}

impl PreadReader {
    /// Reads each request (checked) into its slot, in order.
    fn read_into_slots(&mut self, reqs: &[ReadReq]) -> Result<()> {
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
}
