//! Shared harness of the `ssdann-layout` fuzz targets (fuzz/README.md).
//!
//! - [`GuardedAlloc`], the global allocator of every target: while a reader runs under
//!   [`guarded`], it aborts the process (a crash libFuzzer records) when one allocation exceeds
//!   the input's size plus [`ALLOC_SLACK_BYTES`], or when the bytes live at once exceed
//!   [`PEAK_FACTOR`] × the input's size plus [`PEAK_SLACK_BYTES`]. A reader that trusts a
//!   count from the file and allocates for it trips this long before the machine runs out of
//!   memory.
//! - [`Input`]: the first input byte is a *mode* (which file extension, whether to repair the
//!   checksums), the rest is the file. Repairing the CRCs after libFuzzer's mutation is what
//!   makes the targets structure-aware: mutated counts and offsets reach the checks behind
//!   the checksum instead of all failing at it. The seeds in fuzz/corpus/ are valid files
//!   written by the crate's own writers (`cargo run --bin gen_corpus`).
//! - [`with_file`]: readers that take a path get the bytes in a temporary file.
//!
//! A new reader needs one file in fuzz_targets/ (see `wal.rs`) calling
//! [`with_file`] or [`guarded`] (plus its `[[bin]]` entry in fuzz/Cargo.toml and seeds from `gen_corpus`).

pub mod vectors;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

/// One allocation may be the input's size plus this much (paths, error messages, small
/// tables): the "small constant" of the rule "no allocation larger than the file".
pub const ALLOC_SLACK_BYTES: usize = 64 << 10;
/// Bytes live at once (allocated inside [`guarded`] and not yet freed) may be this many times
/// the input's size ...
pub const PEAK_FACTOR: usize = 8;
/// ... plus this much.
pub const PEAK_SLACK_BYTES: usize = 1 << 20;

static ARMED: AtomicBool = AtomicBool::new(false);
static SINGLE_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static PEAK_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Bytes allocated minus bytes freed since start (wrapping; only differences are used).
static LIVE: AtomicUsize = AtomicUsize::new(0);
static LIVE_AT_ARM: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator with the limits above (a no-op outside [`guarded`]).
pub struct GuardedAlloc;

#[global_allocator]
static GLOBAL: GuardedAlloc = GuardedAlloc;

/// Writes `n` in decimal to stderr without allocating (we are inside the allocator).
fn put_num(err: &mut std::io::StderrLock<'_>, n: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let _ = err.write_all(&buf[i..]);
}

#[cold]
fn over_limit(what: &str, bytes: usize, limit: usize) -> ! {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"\n==ssdann-fuzz== over-allocation: ");
    let _ = err.write_all(what.as_bytes());
    let _ = err.write_all(b" of ");
    put_num(&mut err, bytes);
    let _ = err.write_all(b" bytes > limit ");
    put_num(&mut err, limit);
    let _ = err.write_all(
        b" bytes (input size plus slack; see fuzz/src/lib.rs). A reader allocated for a count it did not check against the file's length.\n",
    );
    drop(err);
    // Not a panic: unwinding out of an allocator is undefined behaviour. libFuzzer records
    // SIGABRT as a crash and saves the input.
    std::process::abort()
}

fn on_alloc(size: usize) {
    let live = LIVE.fetch_add(size, Relaxed).wrapping_add(size);
    if ARMED.load(Relaxed) {
        let limit = SINGLE_LIMIT.load(Relaxed);
        if size > limit {
            over_limit("one allocation", size, limit);
        }
        let used = live.wrapping_sub(LIVE_AT_ARM.load(Relaxed));
        if (used as isize) > 0 {
            PEAK.fetch_max(used, Relaxed);
            let peak_limit = PEAK_LIMIT.load(Relaxed);
            if used > peak_limit {
                over_limit("bytes live at once", used, peak_limit);
            }
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's layout and pointer unchanged;
// the bookkeeping around it only touches atomics and never allocates.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: forwarded unchanged (GlobalAlloc contract holds for the caller's layout).
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: `ptr` came from `System` with this layout (every alloc above forwards).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Count the new block, then the old one as freed (a realloc may move).
        on_alloc(new_size);
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: as in `dealloc`; `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` (a reader on an input of `input_bytes` bytes) with the allocation limits armed;
/// returns its result and the peak of bytes it held live at once.
///
/// Everything the harness itself needs (copies of the input, the temporary file's path) is
/// allocated before this, so only the reader is measured. Not reentrant.
pub fn guarded<R>(input_bytes: usize, f: impl FnOnce() -> R) -> (R, usize) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        // A panic's report (message, backtrace) is the harness's, not the reader's: disarm
        // first, then hand over to the previous hook (libFuzzer's, which aborts).
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            ARMED.store(false, Relaxed);
            previous(info)
        }));
    });
    SINGLE_LIMIT.store(input_bytes.saturating_add(ALLOC_SLACK_BYTES), Relaxed);
    PEAK_LIMIT.store(
        input_bytes
            .saturating_mul(PEAK_FACTOR)
            .saturating_add(PEAK_SLACK_BYTES),
        Relaxed,
    );
    PEAK.store(0, Relaxed);
    LIVE_AT_ARM.store(LIVE.load(Relaxed), Relaxed);
    ARMED.store(true, Relaxed);
    let r = f();
    ARMED.store(false, Relaxed);
    (r, PEAK.load(Relaxed))
}

/// A fuzz input split into its mode byte and the file bytes that follow it.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The first byte (0 for an empty input).
    pub mode: u8,
    /// Everything after it.
    pub file: &'a [u8],
}

impl<'a> Input<'a> {
    /// Splits `data` into mode byte and file bytes.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        match data.split_first() {
            Some((&mode, file)) => Input { mode, file },
            None => Input { mode: 0, file: &[] },
        }
    }
    /// Bit 0 of the mode: repair the checksums before reading (structure-aware mutation).
    pub fn fix_checksums(&self) -> bool {
        self.mode & 1 == 1
    }
    /// The mode's upper 7 bits, to choose among `n` variants (file extensions ...).
    pub fn choose(&self, n: usize) -> usize {
        usize::from(self.mode >> 1) % n.max(1)
    }
    /// The file as a blob file (docs/FORMAT.md, "Blob files"), both CRCs repaired when the
    /// mode asks ([`Input::fix_checksums`]) so that mutated fields reach the checks.
    pub fn blob_file(&self) -> Vec<u8> {
        let mut file = self.file.to_vec();
        if self.fix_checksums() {
            fix_blob_checksums(&mut file);
        }
        file
    }
}

/// Directory of the temporary input files: one per process under `$TMPDIR` (run.sh points
/// `$TMPDIR` at a folder it removes afterwards).
fn scratch_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("ssdann-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("fuzz harness: cannot create its scratch directory");
        d
    })
}

/// Writes `bytes` to a temporary file named `input.EXT` and runs `read` on its path under
/// [`guarded`] (limits relative to `bytes.len()`).
///
/// # Panics
/// If the temporary file cannot be written (a harness problem, not a finding).
pub fn with_file<R>(ext: &str, bytes: &[u8], read: impl FnOnce(&Path) -> R) -> R {
    let path = scratch_dir().join(format!("input.{ext}"));
    std::fs::write(&path, bytes).expect("fuzz harness: cannot write the temporary input file");
    guarded(bytes.len(), || read(&path)).0
}

/// Writes `files` (name, bytes) into a temporary directory holding nothing else and runs
/// `read` on the directory under [`guarded`] (limits relative to the files' total length).
///
/// # Panics
/// If the temporary files cannot be written (a harness problem, not a finding).
pub fn with_dir<R>(files: &[(&str, &[u8])], read: impl FnOnce(&Path) -> R) -> R {
    let dir = scratch_dir().join("dir");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("fuzz harness: cannot create its input directory");
    let mut total = 0;
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes)
            .expect("fuzz harness: cannot write a temporary input file");
        total += bytes.len();
    }
    guarded(total, || read(&dir)).0
}

/// Repairs the CRCs of a format-3 or -4 merge journal after mutation (docs/FORMAT.md,
/// "merge.journal"): the header CRC, every block entry's (walking entries by their block
/// numbers: a block image is `block_bytes` as stored), and (format 4) the commit copies at the
/// first sector boundary after the entries and 8 KB after it, whose `entries_end` is set to
/// where the entries end and, when given, whose staged-file CRCs are set to `staged_crcs`.
/// Format 3: a commit entry met while walking is re-sealed in place.
pub fn fix_journal_checksums(b: &mut [u8], staged_crcs: Option<[u32; 2]>) {
    let v4 = b.get(..8) == Some(b"SSDMJRN4");
    if b.len() < 40 || !(v4 || b.get(..8) == Some(b"SSDMJRN3")) {
        return;
    }
    let crc = crc32(&b[..36]);
    put_crc(b, 36, crc);
    let bb = le_u32(b, 8).unwrap_or(4096).clamp(1, 1 << 20) as usize;
    let seal = |b: &mut [u8], off: usize, len: usize| {
        let end = off + 12 + len;
        let mut covered = b[off..off + 8].to_vec();
        covered.extend_from_slice(&b[off + 12..end]);
        let crc = crc32(&covered);
        put_crc(b, off + 8, crc);
    };
    let mut off = 40;
    while off + 12 <= b.len() {
        let block = le_u64(b, off).unwrap_or(0);
        let len = if block == u64::MAX {
            if v4 {
                break;
            }
            16 + 4096
        } else {
            bb
        };
        if off + 12 + len > b.len() {
            break;
        }
        seal(b, off, len);
        off += 12 + len;
    }
    if !v4 {
        return;
    }
    let first = off.div_ceil(4096) * 4096;
    for at in [first, first + 8192] {
        if at + 12 + 32 + 4096 > b.len() || le_u64(b, at) != Some(u64::MAX) {
            continue;
        }
        b[at + 28..at + 36].copy_from_slice(&(off as u64).to_le_bytes());
        if let Some([l, c]) = staged_crcs {
            put_crc(b, at + 36, l);
            put_crc(b, at + 40, c);
        }
        seal(b, at, 32 + 4096);
    }
}

/// Little-endian u32 at `off` of `b`, if there are 4 bytes there.
pub fn le_u32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Little-endian u64 at `off` of `b`, if there are 8 bytes there.
pub fn le_u64(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

fn put_crc(b: &mut [u8], off: usize, crc: u32) {
    if let Some(s) = b.get_mut(off..off + 4) {
        s.copy_from_slice(&crc.to_le_bytes());
    }
}

/// Repairs both CRC32s of a blob file (docs/FORMAT.md, "Blob files") after mutation: the
/// header CRC at `24 + 8F` (F as stored, if the header fits) and the body CRC in the last
/// 4 bytes (the body being whatever lies between). Leaves inputs too short for that alone.
pub fn fix_blob_checksums(b: &mut [u8]) {
    let Some(nf) = le_u32(b, 12) else { return };
    let head = 24usize.saturating_add(8usize.saturating_mul(nf as usize));
    if head.saturating_add(4) > b.len() {
        return;
    }
    let crc = crc32(&b[..head]);
    put_crc(b, head, crc);
    let body = head + 4;
    if body + 4 <= b.len() {
        let end = b.len() - 4;
        let crc = crc32(&b[body..end]);
        put_crc(b, end, crc);
    }
}

/// CRC32 (IEEE, as `crc32fast` computes it), the checksum of every ssdann structure.
pub fn crc32(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn guarded_measures_the_peak() {
        let (v, peak) = guarded(1 << 20, || vec![7u8; 1000]);
        assert_eq!(v.len(), 1000);
        assert!(peak >= 1000, "{peak}");
    }
}
