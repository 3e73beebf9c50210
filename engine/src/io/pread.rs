//! The pread(2) backend: one O_DIRECT `pread` per block, the portable fallback.

use super::{short_read, AlignedBuf, ReadReq, SectorFile, SectorReader};
use crate::error::EngineError;
use crate::Result;
use std::sync::Arc;

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
