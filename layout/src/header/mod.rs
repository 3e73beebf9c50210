//! The index header: two generation-stamped, checksummed slots in sectors 0 and 1 of
//! `index.ssd` (docs/FORMAT.md, "Header slot").
//!
//! A reader takes the valid slot with the highest generation; a writer always writes the
//! other slot and then fsyncs, so an update commits atomically by flipping generations.
//! Every field is validated against every other (and the caller validates the file size)
//! before any count is trusted.

use crate::dataset::ElementType;
use crate::distance::Metric;
use crate::error::LayoutError;
use crate::sector::{NodeLayout, DATA_START_SECTOR, SECTOR_BYTES};
use crate::Result;
use std::path::Path;

/// Magic at byte 0 of each header slot.
pub const HEADER_MAGIC: [u8; 8] = *b"SSDANNIX";
/// Newest major format version: a reader refuses majors outside
/// `FORMAT_OLDEST_SUPPORTED_MAJOR..=FORMAT_VERSION_MAJOR` (incompatible layout). A build
/// writes major 2 only for an index whose records hold neighbour codes (`nbr_code_m` > 0),
/// which a v1 reader cannot parse; every other index stays major 1, readable by v1.0.
pub const FORMAT_VERSION_MAJOR: u16 = 2;
/// Minor format version: additions an older reader of the same major may ignore (1: the
/// `nbr_code_m` field, zero in a major-1 index; 2: `build_flags`, bit 0 = saturated graph;
/// 3: `near_error` and `near_scale`, PQ's error on near pairs).
pub const FORMAT_VERSION_MINOR: u16 = 3;
/// `near_error`'s bits when it was not measured (`f32::NAN` with a fixed payload).
const NEAR_ERROR_NONE: u32 = u32::MAX;
/// The largest error `near_error` may hold (checked when a header is read).
pub const MAX_NEAR_ERROR: f32 = 1.0e6;

/// An index's measure of PQ's error on near pairs (`crate::near_error` measures it and
/// explains it; format minor 3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NearError {
    /// The 99th percentile of (approximate − exact) / d_k over near pairs (≥ 0).
    pub error: f32,
    /// The smallest d_k the error was measured at (¼ of the median d_k over the sampled
    /// nodes), in the index's ranking distance (squared L2; for cosine, of the normalized
    /// vectors): below it the search's margin stays what it is there.
    pub scale: f32,
}

/// `build_flags` bit 0: the graph was built saturated ([`IndexHeader::saturated`]).
const FLAG_SATURATED: u32 = 1;
/// Oldest major version this build reads.
pub const FORMAT_OLDEST_SUPPORTED_MAJOR: u16 = 1;
/// Generations stay below this (2^62): a header holding a larger one is refused where its
/// slot is decoded, and a merge refuses to advance past it, so the counter never wraps.
pub const MAX_GENERATION: u64 = 1 << 62;
/// Largest list size L a build or a search accepts, and a header's `build_l` may hold (an
/// update's insertion search is sized by it): checked before anything is allocated by it.
pub const MAX_LIST_SIZE: usize = 100_000;
/// Bytes per header slot (one sector).
pub const HEADER_SLOT_BYTES: usize = SECTOR_BYTES;
/// Offset of the slot's CRC32 (the last 4 bytes; covers bytes `0..HEADER_CRC_OFFSET`).
pub const HEADER_CRC_OFFSET: usize = HEADER_SLOT_BYTES - 4;

// Field offsets inside a slot (chained so that a change cannot silently overlap fields).
const OFF_MAGIC: usize = 0;
const OFF_MAJOR: usize = OFF_MAGIC + 8;
const OFF_MINOR: usize = OFF_MAJOR + 2;
const OFF_SLOT_BYTES: usize = OFF_MINOR + 2;
const OFF_GENERATION: usize = OFF_SLOT_BYTES + 4;
const OFF_N_SLOTS: usize = OFF_GENERATION + 8;
const OFF_LIVE: usize = OFF_N_SLOTS + 8;
const OFF_DIM: usize = OFF_LIVE + 8;
const OFF_ELEMENT: usize = OFF_DIM + 4;
const OFF_METRIC: usize = OFF_ELEMENT + 1;
const OFF_RESERVED0: usize = OFF_METRIC + 1;
const OFF_MAX_DEGREE: usize = OFF_RESERVED0 + 2;
const OFF_RECORD_BYTES: usize = OFF_MAX_DEGREE + 4;
const OFF_NODES_PER_BLOCK: usize = OFF_RECORD_BYTES + 4;
const OFF_SECTORS_PER_BLOCK: usize = OFF_NODES_PER_BLOCK + 4;
const OFF_DATA_START: usize = OFF_SECTORS_PER_BLOCK + 4;
const OFF_N_BLOCKS: usize = OFF_DATA_START + 8;
const OFF_ENTRY: usize = OFF_N_BLOCKS + 8;
const OFF_PQ_M: usize = OFF_ENTRY + 8;
const OFF_BUILD_L: usize = OFF_PQ_M + 4;
const OFF_BUILD_ALPHA: usize = OFF_BUILD_L + 4;
const OFF_RESERVED1: usize = OFF_BUILD_ALPHA + 4;
const OFF_FILE_BYTES: usize = OFF_RESERVED1 + 4;
const OFF_NBR_CODE_M: usize = OFF_FILE_BYTES + 8;
const OFF_VECTOR_ENCODING: usize = OFF_NBR_CODE_M + 4;
const OFF_BUILD_FLAGS: usize = OFF_VECTOR_ENCODING + 4;
const OFF_NEAR_ERROR: usize = OFF_BUILD_FLAGS + 4;
const OFF_NEAR_SCALE: usize = OFF_NEAR_ERROR + 4;
/// End of the defined fields; bytes from here to the CRC are zero.
pub const HEADER_FIELDS_END: usize = OFF_NEAR_SCALE + 4;
const _: () = assert!(HEADER_FIELDS_END <= HEADER_CRC_OFFSET);
const _: () = assert!(
    HEADER_SLOT_BYTES.is_multiple_of(SECTOR_BYTES),
    "a header slot is a whole number of sectors"
);

/// The parameters of an index, as stored in each header slot.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexHeader {
    /// Commit generation; the valid slot with the highest one wins.
    pub generation: u64,
    /// Node slots n (internal ids are `0..n`).
    pub n_slots: u64,
    /// Live (not deleted) points.
    pub live_count: u64,
    /// Dimension d.
    pub dim: u32,
    /// Element type.
    pub element: ElementType,
    /// Metric.
    pub metric: Metric,
    /// Maximum degree R.
    pub max_degree: u32,
    /// Record geometry (derived from d, element, R; stored and cross-checked).
    pub layout: NodeLayout,
    /// Entry point (the medoid) for every search.
    pub entry_point: u64,
    /// PQ subspaces M (bytes per PQ code).
    pub pq_m: u32,
    /// Build list size L.
    pub build_l: u32,
    /// Build α.
    pub build_alpha: f32,
    /// The graph is saturated (format minor 2, `build_flags` bit 0; false in older
    /// indexes): every RobustPrune filled its list up to R with the candidates the α rule
    /// covered (DiskANN's `saturate_graph`; [`ssdann_builder`'s `robust_prune::saturate`]).
    /// A merge keeps the property: the lists it prunes are saturated too.
    pub saturated: bool,
    /// PQ's error on near pairs, the measure the default early-termination ratio is taken
    /// from (`near_error`; format minor 3). `None`: not measured (an older index,
    /// whose engine measures it at open; an inner-product index; an index too small to
    /// measure). A merge keeps it: PQ and the neighbour codes do not change.
    pub near_error: Option<NearError>,
}

fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
fn get_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}
fn get_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

impl IndexHeader {
    /// Total bytes `index.ssd` must have: header slots plus all node blocks.
    pub fn file_bytes(&self) -> u64 {
        self.layout.file_bytes(self.n_slots)
    }

    /// The one rule for the length of `index.ssd` under this header (docs/FORMAT.md,
    /// "index.ssd"): exactly [`IndexHeader::file_bytes`] — the two header slots and every
    /// node block, nothing more. Open, `verify` and `info` all apply it. A merge only grows
    /// n, and the file grows with it only after its journal is committed; a committed journal
    /// is finished by recovery (and refused by read-only opens) before this is checked, so a
    /// file of another length is damage, not a state a crash leaves.
    ///
    /// # Errors
    /// [`LayoutError::SizeMismatch`] naming `path`, its length `len_bytes`, the length the
    /// header implies and the header's generation, n and block count.
    pub fn check_file_len(&self, path: &Path, len_bytes: u64) -> Result<()> {
        let want = self.file_bytes();
        if len_bytes != want {
            return Err(LayoutError::SizeMismatch {
                path: path.into(),
                expected_bytes: want,
                actual_bytes: len_bytes,
                detail: format!(
                    "the header in force (generation {}, n = {}, {} blocks)",
                    self.generation,
                    self.n_slots,
                    self.layout.blocks_for(self.n_slots)
                ),
            });
        }
        Ok(())
    }

    /// The major format version this header is written as: 2 when its records hold
    /// neighbour codes or f16 vectors (a v1 reader cannot parse them), else 1.
    pub fn major(&self) -> u16 {
        if self.layout.nbr_code_m > 0 || self.layout.f16_vectors {
            2
        } else {
            1
        }
    }

    /// Encodes the header into one 4096-byte slot with its CRC32.
    pub fn encode(&self) -> [u8; HEADER_SLOT_BYTES] {
        let mut b = [0u8; HEADER_SLOT_BYTES];
        b[OFF_MAGIC..OFF_MAGIC + 8].copy_from_slice(&HEADER_MAGIC);
        put_u16(&mut b, OFF_MAJOR, self.major());
        put_u16(&mut b, OFF_MINOR, FORMAT_VERSION_MINOR);
        put_u32(&mut b, OFF_SLOT_BYTES, HEADER_SLOT_BYTES as u32);
        put_u64(&mut b, OFF_GENERATION, self.generation);
        put_u64(&mut b, OFF_N_SLOTS, self.n_slots);
        put_u64(&mut b, OFF_LIVE, self.live_count);
        put_u32(&mut b, OFF_DIM, self.dim);
        b[OFF_ELEMENT] = self.element.code();
        b[OFF_METRIC] = self.metric.code();
        put_u32(&mut b, OFF_MAX_DEGREE, self.max_degree);
        put_u32(&mut b, OFF_RECORD_BYTES, self.layout.record_bytes as u32);
        put_u32(
            &mut b,
            OFF_NODES_PER_BLOCK,
            self.layout.nodes_per_block as u32,
        );
        put_u32(
            &mut b,
            OFF_SECTORS_PER_BLOCK,
            self.layout.sectors_per_block as u32,
        );
        put_u64(&mut b, OFF_DATA_START, DATA_START_SECTOR);
        put_u64(&mut b, OFF_N_BLOCKS, self.layout.blocks_for(self.n_slots));
        put_u64(&mut b, OFF_ENTRY, self.entry_point);
        put_u32(&mut b, OFF_PQ_M, self.pq_m);
        put_u32(&mut b, OFF_BUILD_L, self.build_l);
        put_u32(&mut b, OFF_BUILD_ALPHA, self.build_alpha.to_bits());
        put_u64(&mut b, OFF_FILE_BYTES, self.file_bytes());
        put_u32(&mut b, OFF_NBR_CODE_M, self.layout.nbr_code_m as u32);
        put_u32(
            &mut b,
            OFF_VECTOR_ENCODING,
            u32::from(self.layout.f16_vectors),
        );
        put_u32(
            &mut b,
            OFF_BUILD_FLAGS,
            if self.saturated { FLAG_SATURATED } else { 0 },
        );
        put_u32(
            &mut b,
            OFF_NEAR_ERROR,
            self.near_error
                .map_or(NEAR_ERROR_NONE, |e| e.error.to_bits()),
        );
        put_u32(
            &mut b,
            OFF_NEAR_SCALE,
            self.near_error
                .map_or(NEAR_ERROR_NONE, |e| e.scale.to_bits()),
        );
        let crc = crc32fast::hash(&b[..HEADER_CRC_OFFSET]);
        put_u32(&mut b, HEADER_CRC_OFFSET, crc);
        b
    }

    /// Decodes and validates one slot of `path` (`slot` is 0 or 1, used in messages).
    ///
    /// # Errors
    /// - [`LayoutError::Corrupt`]: bad magic, an all-zero (never written) slot, or fields that
    ///   disagree with each other (record size, blocks, entry point, file size).
    /// - [`LayoutError::ChecksumMismatch`]: the slot's CRC32 is wrong.
    /// - [`LayoutError::InvalidField`]: an unsupported version, element type or metric, a
    ///   zero / out-of-range count, a generation ≥ [`MAX_GENERATION`], a `build_l` outside
    ///   1..=[`MAX_LIST_SIZE`], a `build_alpha` not finite or < 1, or (in a format minor
    ///   this build knows) a reserved field or padding byte ≠ 0.
    pub fn decode(path: &Path, slot: usize, b: &[u8]) -> Result<IndexHeader> {
        let what = format!("header slot {slot}");
        if b.len() < HEADER_SLOT_BYTES {
            return Err(LayoutError::corrupt(
                path,
                what,
                format!("only {} bytes", b.len()),
            ));
        }
        let b = &b[..HEADER_SLOT_BYTES];
        if b.iter().all(|&x| x == 0) {
            return Err(LayoutError::corrupt(path, what, "never written (all zero)"));
        }
        if b[OFF_MAGIC..OFF_MAGIC + 8] != HEADER_MAGIC {
            return Err(LayoutError::corrupt(
                path,
                what,
                format!(
                    "bad magic {:?} (not an ssdann index file)",
                    String::from_utf8_lossy(&b[..8])
                ),
            ));
        }
        let stored = get_u32(b, HEADER_CRC_OFFSET);
        let got = crc32fast::hash(&b[..HEADER_CRC_OFFSET]);
        if stored != got {
            return Err(LayoutError::ChecksumMismatch {
                path: path.into(),
                what,
                expected: stored,
                got,
            });
        }
        let field = |f: &'static str, v: &dyn ToString, why: &str| {
            LayoutError::field(path, f, v.to_string(), format!("{what}: {why}"))
        };
        let major = get_u16(b, OFF_MAJOR);
        if !(FORMAT_OLDEST_SUPPORTED_MAJOR..=FORMAT_VERSION_MAJOR).contains(&major) {
            return Err(field("version_major", &major, &format!("this build reads format {FORMAT_OLDEST_SUPPORTED_MAJOR}..={FORMAT_VERSION_MAJOR}")));
        }
        let slot_bytes = get_u32(b, OFF_SLOT_BYTES);
        if slot_bytes as usize != HEADER_SLOT_BYTES {
            return Err(field("header_bytes", &slot_bytes, "must be 4096"));
        }
        let generation = get_u64(b, OFF_GENERATION);
        if generation >= MAX_GENERATION {
            return Err(field(
                "generation",
                &generation,
                &format!("generations stay below 2^62 = {MAX_GENERATION}"),
            ));
        }
        // Reserved bytes are zero in every minor version this build knows; a newer minor of
        // the same major may use them (its additions are ignorable), so only those are checked.
        let minor = get_u16(b, OFF_MINOR);
        if minor <= FORMAT_VERSION_MINOR {
            let reserved0 = get_u16(b, OFF_RESERVED0);
            if reserved0 != 0 {
                return Err(field("reserved (offset 46)", &reserved0, "must be 0"));
            }
            let reserved1 = get_u32(b, OFF_RESERVED1);
            if reserved1 != 0 {
                return Err(field("reserved (offset 100)", &reserved1, "must be 0"));
            }
            if let Some(at) = (HEADER_FIELDS_END..HEADER_CRC_OFFSET).find(|&i| b[i] != 0) {
                return Err(field(
                    "zero padding",
                    &b[at],
                    &format!("byte at offset {at} must be 0 in format minor {minor}"),
                ));
            }
        }
        let n_slots = get_u64(b, OFF_N_SLOTS);
        let live_count = get_u64(b, OFF_LIVE);
        let dim = get_u32(b, OFF_DIM);
        let element = ElementType::from_code(b[OFF_ELEMENT]).ok_or_else(|| {
            field(
                "element_type",
                &b[OFF_ELEMENT],
                "expected 0 (f32), 1 (u8) or 2 (i8)",
            )
        })?;
        let metric = Metric::from_code(b[OFF_METRIC]).ok_or_else(|| {
            field(
                "metric",
                &b[OFF_METRIC],
                "expected 0 (l2), 1 (ip) or 2 (cosine)",
            )
        })?;
        let max_degree = get_u32(b, OFF_MAX_DEGREE);
        if n_slots == 0 || n_slots > u64::from(u32::MAX) {
            return Err(field("n_slots", &n_slots, "must be in 1..=2^32-1"));
        }
        if live_count > n_slots {
            return Err(field(
                "live_count",
                &live_count,
                &format!("exceeds n_slots = {n_slots}"),
            ));
        }
        let nbr_code_m = get_u32(b, OFF_NBR_CODE_M);
        if major == 1 && nbr_code_m != 0 {
            return Err(field(
                "nbr_code_m",
                &nbr_code_m,
                "a format-1 index has no neighbour codes (must be 0)",
            ));
        }
        let encoding = get_u32(b, OFF_VECTOR_ENCODING);
        if encoding > 1 || (major == 1 && encoding != 0) {
            return Err(field(
                "vector_encoding",
                &encoding,
                "expected 0 (as the element type) or, in a format-2 index, 1 (f16)",
            ));
        }
        if major == 2 && nbr_code_m == 0 && encoding == 0 {
            return Err(field(
                "version_major",
                &major,
                "a format-2 header must have neighbour codes or f16 vectors (an index without either is written as format 1)",
            ));
        }
        let layout = NodeLayout::with_encoding(
            dim as usize,
            element,
            max_degree as usize,
            nbr_code_m as usize,
            encoding == 1,
        )
        .map_err(|e| {
            field(
                "dim/max_degree/nbr_code_m/vector_encoding",
                &format!("{dim}/{max_degree}/{nbr_code_m}/{encoding}"),
                &e.to_string(),
            )
        })?;
        let stored_geo = (
            get_u32(b, OFF_RECORD_BYTES) as usize,
            get_u32(b, OFF_NODES_PER_BLOCK) as usize,
            get_u32(b, OFF_SECTORS_PER_BLOCK) as usize,
        );
        if stored_geo
            != (
                layout.record_bytes,
                layout.nodes_per_block,
                layout.sectors_per_block,
            )
        {
            return Err(LayoutError::corrupt(path, what, format!(
                "record geometry (record_bytes, nodes_per_block, sectors_per_block) = {stored_geo:?} but d = {dim}, {element}, R = {max_degree} give ({}, {}, {})",
                layout.record_bytes, layout.nodes_per_block, layout.sectors_per_block)));
        }
        let data_start = get_u64(b, OFF_DATA_START);
        if data_start != DATA_START_SECTOR {
            return Err(field("data_start_sector", &data_start, "must be 2"));
        }
        let n_blocks = get_u64(b, OFF_N_BLOCKS);
        if n_blocks != layout.blocks_for(n_slots) {
            return Err(field(
                "n_blocks",
                &n_blocks,
                &format!("n_slots = {n_slots} needs {}", layout.blocks_for(n_slots)),
            ));
        }
        let entry_point = get_u64(b, OFF_ENTRY);
        if entry_point >= n_slots {
            return Err(field(
                "entry_point",
                &entry_point,
                &format!("not < n_slots = {n_slots}"),
            ));
        }
        let pq_m = get_u32(b, OFF_PQ_M);
        if pq_m == 0 || pq_m > dim {
            return Err(field("pq_m", &pq_m, &format!("must be in 1..=d ({dim})")));
        }
        let build_l = get_u32(b, OFF_BUILD_L);
        if build_l == 0 || build_l as usize > MAX_LIST_SIZE {
            return Err(field(
                "build_l",
                &build_l,
                &format!("must be in 1..={MAX_LIST_SIZE}"),
            ));
        }
        let build_alpha = f32::from_bits(get_u32(b, OFF_BUILD_ALPHA));
        if !(build_alpha.is_finite() && build_alpha >= 1.0) {
            return Err(field(
                "build_alpha",
                &build_alpha,
                "must be a finite number ≥ 1",
            ));
        }
        let flags = get_u32(b, OFF_BUILD_FLAGS);
        if minor < 2 && flags != 0 {
            return Err(field(
                "build_flags",
                &flags,
                &format!("must be 0 in format minor {minor} (it has no such field)"),
            ));
        }
        if minor <= FORMAT_VERSION_MINOR && flags & !FLAG_SATURATED != 0 {
            return Err(field(
                "build_flags",
                &flags,
                "only bit 0 (saturated graph) is defined",
            ));
        }
        let near_bits = [get_u32(b, OFF_NEAR_ERROR), get_u32(b, OFF_NEAR_SCALE)];
        let near_error = if minor < 3 {
            if let Some(&bits) = near_bits.iter().find(|&&x| x != 0) {
                return Err(field(
                    "near_error",
                    &bits,
                    &format!("must be 0 in format minor {minor} (it has no such field)"),
                ));
            }
            None
        } else if near_bits == [NEAR_ERROR_NONE; 2] {
            None
        } else {
            let [error, scale] = near_bits.map(f32::from_bits);
            if !(error.is_finite() && (0.0..=MAX_NEAR_ERROR).contains(&error)) {
                return Err(field(
                    "near_error",
                    &error,
                    "must be a number in 0..=1e6, or unmeasured (all bits set)",
                ));
            }
            if !(scale.is_finite() && scale >= 0.0) {
                return Err(field(
                    "near_scale",
                    &scale,
                    "must be a finite number ≥ 0 (with near_error measured)",
                ));
            }
            Some(NearError { error, scale })
        };
        let h = IndexHeader {
            generation,
            n_slots,
            live_count,
            dim,
            element,
            metric,
            max_degree,
            layout,
            entry_point,
            pq_m,
            build_l,
            build_alpha,
            saturated: flags & FLAG_SATURATED != 0,
            near_error,
        };
        let file_bytes = get_u64(b, OFF_FILE_BYTES);
        if file_bytes != h.file_bytes() {
            return Err(field(
                "file_bytes",
                &file_bytes,
                &format!("the geometry needs {}", h.file_bytes()),
            ));
        }
        Ok(h)
    }

    /// Picks the valid slot with the highest generation from the first two sectors of
    /// `index.ssd`; returns it and its slot number.
    ///
    /// # Errors
    /// When neither slot is valid: slot 0's error if slot 1 was never written, otherwise a
    /// [`LayoutError::Corrupt`] quoting both slots' errors.
    pub fn choose(path: &Path, first_two_sectors: &[u8]) -> Result<(IndexHeader, usize)> {
        if first_two_sectors.len() < 2 * HEADER_SLOT_BYTES {
            return Err(LayoutError::SizeMismatch {
                path: path.into(),
                expected_bytes: (2 * HEADER_SLOT_BYTES) as u64,
                actual_bytes: first_two_sectors.len() as u64,
                detail: "the two header slots".into(),
            });
        }
        let s0 = Self::decode(path, 0, &first_two_sectors[..HEADER_SLOT_BYTES]);
        let s1 = Self::decode(
            path,
            1,
            &first_two_sectors[HEADER_SLOT_BYTES..2 * HEADER_SLOT_BYTES],
        );
        match (s0, s1) {
            (Ok(a), Ok(b)) => Ok(if b.generation > a.generation {
                (b, 1)
            } else {
                (a, 0)
            }),
            (Ok(a), Err(_)) => Ok((a, 0)),
            (Err(_), Ok(b)) => Ok((b, 1)),
            (Err(e0), Err(e1)) => {
                let never_written = first_two_sectors[HEADER_SLOT_BYTES..2 * HEADER_SLOT_BYTES]
                    .iter()
                    .all(|&x| x == 0);
                if never_written {
                    Err(e0)
                } else {
                    Err(LayoutError::corrupt(
                        path,
                        "header",
                        format!("no valid header slot: {e0}; {e1}"),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
