//! Node records packed into checksummed 4 KB sectors (docs/FORMAT.md, "Node blocks").
//!
//! A node record is `[vector: d × element bytes][degree: u32][R × u32 neighbour ids]`, fixed
//! size; an index built with neighbour codes (format 2) appends `[R × neighbour code]`, the code
//! of list entry k at slot k: `M₂` bytes of the neighbour's residual PQ code and an f32 term
//! (see [`NodeLayout::with_neighbor_codes`]). Records are grouped into *blocks*: when a record fits, a block is one 4096-byte
//! sector holding `nodes_per_block = ⌊4092 / record⌋` records; otherwise a block is
//! `sectors_per_block = ⌈(record + 4) / 4096⌉` sectors holding one record. The last 4 bytes of
//! every block are the CRC32 (IEEE) of the block's other bytes, so a record never straddles a
//! block and a torn or corrupted block is detected. Node `i` lives in block
//! `i / nodes_per_block`, at byte `(i % nodes_per_block) × record` of it; block `b` starts at
//! sector `DATA_START_SECTOR + b × sectors_per_block`.

use crate::dataset::ElementType;
use crate::error::LayoutError;
use crate::Result;

/// Bytes per sector: the unit of every read and write (O_DIRECT alignment).
pub const SECTOR_BYTES: usize = 4096;
/// Bytes at the end of every block holding its CRC32.
pub const BLOCK_CRC_BYTES: usize = 4;
/// Header slot 0 is sector 0.
pub const HEADER_SLOT0_SECTOR: u64 = 0;
/// Header slot 1 is sector 1.
pub const HEADER_SLOT1_SECTOR: u64 = HEADER_SLOT0_SECTOR + 1;
/// First sector of node data (after the two header slots).
pub const DATA_START_SECTOR: u64 = HEADER_SLOT1_SECTOR + 1;
/// Largest degree R accepted (a guard against absurd headers).
pub const MAX_DEGREE: usize = 4096;
/// The largest finite IEEE half float: records with f16 vectors (format 2) hold coordinates
/// within ±`F16_MAX` only (a larger one would be stored as inf).
pub const F16_MAX: f32 = 65504.0;

const _: () = assert!(
    SECTOR_BYTES.is_multiple_of(512),
    "sectors must be O_DIRECT-aligned"
);

/// Geometry of the node records: where node `i` lives, computed from `i` alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeLayout {
    /// Vector dimension d.
    pub dim: usize,
    /// Element type of stored vectors.
    pub element: ElementType,
    /// Maximum degree R (neighbour slots per record).
    pub max_degree: usize,
    /// Bytes per node record: `d × elem + 4 + R × (4 + code bytes)`.
    pub record_bytes: usize,
    /// Residual PQ subspaces M₂ of each neighbour code stored in the record (0: none).
    pub nbr_code_m: usize,
    /// The vectors of an f32 index are stored as IEEE half floats (`d × 2` bytes; format 2).
    pub f16_vectors: bool,
    /// Records per block (≥ 1).
    pub nodes_per_block: usize,
    /// Sectors per block (≥ 1; > 1 only when `nodes_per_block == 1`).
    pub sectors_per_block: usize,
}

impl NodeLayout {
    /// Computes the layout for `dim`-dimensional vectors of `element` with degree `max_degree`.
    ///
    /// # Errors
    /// [`LayoutError::InvalidArgument`] for `dim` 0 or above 65,536, or `max_degree` 0 or
    /// above [`MAX_DEGREE`].
    pub fn new(dim: usize, element: ElementType, max_degree: usize) -> Result<NodeLayout> {
        Self::with_neighbor_codes(dim, element, max_degree, 0)
    }

    /// The layout of records that also hold, for each neighbour slot, that neighbour's code:
    /// `nbr_code_m` bytes of its residual PQ code (the quantization of `x − PQ(x)`, see
    /// `pq_refine.bin` in docs/FORMAT.md) and an f32 term, so that a search scores the
    /// neighbours of a node it read with the RAM-resident PQ code *plus* this refinement
    /// (LM-DiskANN and AiSAQ keep neighbour codes in the record the same way, to save RAM; we
    /// keep them to rank better at the same RAM). `nbr_code_m` = 0 is [`NodeLayout::new`].
    ///
    /// # Errors
    /// As [`NodeLayout::new`], and [`LayoutError::InvalidArgument`] for `nbr_code_m` above
    /// `dim` or 256.
    pub fn with_neighbor_codes(
        dim: usize,
        element: ElementType,
        max_degree: usize,
        nbr_code_m: usize,
    ) -> Result<NodeLayout> {
        Self::with_encoding(dim, element, max_degree, nbr_code_m, false)
    }

    /// As [`NodeLayout::with_neighbor_codes`], with the vectors of an f32 index stored as
    /// IEEE half floats when `f16_vectors` (d × 2 bytes: more room per record; searches then
    /// rank by the distance to the f16 vector, whose relative error is ≤ 2⁻¹¹ per coordinate).
    ///
    /// # Errors
    /// As [`NodeLayout::with_neighbor_codes`], and [`LayoutError::InvalidArgument`] for
    /// `f16_vectors` with an element type other than f32.
    pub fn with_encoding(
        dim: usize,
        element: ElementType,
        max_degree: usize,
        nbr_code_m: usize,
        f16_vectors: bool,
    ) -> Result<NodeLayout> {
        if f16_vectors && element != ElementType::F32 {
            return Err(LayoutError::InvalidArgument {
                field: "vector_encoding",
                value: "f16".into(),
                reason: format!("only f32 vectors can be stored as f16 (these are {element})"),
            });
        }
        if nbr_code_m > dim.min(256) {
            return Err(LayoutError::InvalidArgument {
                field: "nbr_code_m",
                value: nbr_code_m.to_string(),
                reason: format!("must be in 0..={}", dim.min(256)),
            });
        }
        if dim == 0 || dim > crate::dataset::MAX_DIM {
            return Err(LayoutError::InvalidArgument {
                field: "dim",
                value: dim.to_string(),
                reason: "must be in 1..=65536".into(),
            });
        }
        if max_degree == 0 || max_degree > MAX_DEGREE {
            return Err(LayoutError::InvalidArgument {
                field: "R",
                value: max_degree.to_string(),
                reason: format!("must be in 1..={MAX_DEGREE}"),
            });
        }
        let code_bytes = if nbr_code_m > 0 { nbr_code_m + 4 } else { 0 };
        let vector_bytes = dim * if f16_vectors { 2 } else { element.size_bytes() };
        let record_bytes = vector_bytes + 4 + (4 + code_bytes) * max_degree;
        let payload = SECTOR_BYTES - BLOCK_CRC_BYTES;
        let (nodes_per_block, sectors_per_block) = if record_bytes <= payload {
            (payload / record_bytes, 1)
        } else {
            (1, (record_bytes + BLOCK_CRC_BYTES).div_ceil(SECTOR_BYTES))
        };
        Ok(NodeLayout {
            dim,
            element,
            max_degree,
            record_bytes,
            nbr_code_m,
            f16_vectors,
            nodes_per_block,
            sectors_per_block,
        })
    }

    /// The largest neighbour-code size M₂ (≤ `max_m`) with which one record of `dim`-d
    /// vectors of `vector_bytes` bytes and degree `max_degree` still fits one 4 KB sector;
    /// `None` when even M₂ = 8 does not.
    pub fn fit_neighbor_code_m(
        dim: usize,
        vector_bytes: usize,
        max_degree: usize,
        max_m: usize,
    ) -> Option<usize> {
        let base = vector_bytes + 4 + 4 * max_degree;
        let room = (SECTOR_BYTES - BLOCK_CRC_BYTES).checked_sub(base)? / max_degree.max(1);
        let m = room.checked_sub(4)?.min(max_m).min(dim).min(256);
        (m >= 8).then_some(m)
    }

    /// Bytes of one neighbour code in a record (`M₂ + 4`, or 0 without neighbour codes).
    pub fn nbr_code_bytes(&self) -> usize {
        if self.nbr_code_m > 0 {
            self.nbr_code_m + 4
        } else {
            0
        }
    }

    /// Bytes per block (`sectors_per_block × 4096`).
    pub fn block_bytes(&self) -> usize {
        self.sectors_per_block * SECTOR_BYTES
    }
    /// Bytes of the vector part of a record (`d × element size`, or `d × 2` with f16 vectors).
    pub fn vector_bytes(&self) -> usize {
        self.dim
            * if self.f16_vectors {
                2
            } else {
                self.element.size_bytes()
            }
    }
    /// Number of blocks needed for `n` nodes.
    pub fn blocks_for(&self, n: u64) -> u64 {
        n.div_ceil(self.nodes_per_block as u64)
    }
    /// Block index of node `id`.
    pub fn block_of(&self, id: u64) -> u64 {
        id / self.nodes_per_block as u64
    }
    /// First sector (absolute, counting the header slots) of block `block`.
    pub fn block_sector(&self, block: u64) -> u64 {
        DATA_START_SECTOR + block * self.sectors_per_block as u64
    }
    /// Byte offset in the file of block `block`.
    pub fn block_offset_bytes(&self, block: u64) -> u64 {
        self.block_sector(block) * SECTOR_BYTES as u64
    }
    /// Byte offset of node `id`'s record inside its block.
    pub fn offset_in_block(&self, id: u64) -> usize {
        (id % self.nodes_per_block as u64) as usize * self.record_bytes
    }
    /// Total file size in bytes for `n` nodes (header slots + blocks).
    pub fn file_bytes(&self, n: u64) -> u64 {
        self.block_offset_bytes(self.blocks_for(n))
    }

    /// Writes one record at `offset` inside `block`: vector bytes, degree, neighbours, and
    /// zero padding for unused neighbour slots.
    ///
    /// # Panics
    /// If `vector.len() != vector_bytes()`, `neighbors.len() > R`, or the record does not fit
    /// (broken caller invariants).
    pub fn write_record(&self, block: &mut [u8], offset: usize, vector: &[u8], neighbors: &[u32]) {
        assert_eq!(vector.len(), self.vector_bytes(), "record vector size");
        assert!(
            neighbors.len() <= self.max_degree,
            "degree {} > R {}",
            neighbors.len(),
            self.max_degree
        );
        let rec = &mut block[offset..offset + self.record_bytes];
        let vb = self.vector_bytes();
        rec[..vb].copy_from_slice(vector);
        rec[vb..vb + 4].copy_from_slice(&(neighbors.len() as u32).to_le_bytes());
        let nbrs = &mut rec[vb + 4..];
        for (slot, id) in nbrs.chunks_exact_mut(4).zip(neighbors) {
            slot.copy_from_slice(&id.to_le_bytes());
        }
        nbrs[4 * neighbors.len()..].fill(0);
    }

    /// The neighbour-code slots of the record at `offset` of `block` (R × `nbr_code_bytes()`
    /// bytes; empty without neighbour codes): slot k is the code of list entry k.
    pub fn neighbor_codes_mut<'a>(&self, block: &'a mut [u8], offset: usize) -> &'a mut [u8] {
        let start = offset + self.vector_bytes() + 4 + 4 * self.max_degree;
        &mut block[start..offset + self.record_bytes]
    }

    /// Reads the record at `offset` of `block`: (vector bytes, degree as stored, neighbour
    /// bytes of `min(degree, R)` ids). The caller checks `degree <= R` (see [`NodeRecord::check`]).
    pub fn record<'a>(&self, block: &'a [u8], offset: usize) -> NodeRecord<'a> {
        let rec = &block[offset..offset + self.record_bytes];
        let vb = self.vector_bytes();
        let degree = u32::from_le_bytes([rec[vb], rec[vb + 1], rec[vb + 2], rec[vb + 3]]);
        let shown = (degree as usize).min(self.max_degree);
        let codes = vb + 4 + 4 * self.max_degree;
        NodeRecord {
            vector: &rec[..vb],
            degree,
            neighbor_bytes: &rec[vb + 4..vb + 4 + 4 * shown],
            neighbor_codes: &rec[codes..codes + self.nbr_code_bytes() * shown],
        }
    }
}

/// A borrowed view of one node record.
#[derive(Clone, Copy, Debug)]
pub struct NodeRecord<'a> {
    /// Vector bytes (`d × element size`, little-endian).
    pub vector: &'a [u8],
    /// Degree as stored (may exceed R in a corrupt file; see [`NodeRecord::check`]).
    pub degree: u32,
    /// Bytes of the first `min(degree, R)` neighbour ids.
    pub neighbor_bytes: &'a [u8],
    /// The codes of those neighbours (`min(degree, R) × nbr_code_bytes()`; empty without
    /// neighbour codes).
    pub neighbor_codes: &'a [u8],
}

impl<'a> NodeRecord<'a> {
    /// The neighbour ids.
    pub fn neighbors(&self) -> impl Iterator<Item = u32> + 'a {
        self.neighbor_bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// Checks the record of node `id` against the index: degree ≤ R, every neighbour < n,
    /// no self-loop. Returns a description of the first problem.
    pub fn check(&self, id: u64, n: u64, max_degree: usize) -> std::result::Result<(), String> {
        if self.degree as usize > max_degree {
            return Err(format!(
                "node {id}: degree {} > R = {max_degree}",
                self.degree
            ));
        }
        for (k, nb) in self.neighbors().enumerate() {
            if u64::from(nb) >= n {
                return Err(format!("node {id}: neighbour #{k} = {nb} is not < n = {n}"));
            }
            if u64::from(nb) == id {
                return Err(format!("node {id}: lists itself as neighbour #{k}"));
            }
        }
        Ok(())
    }
}

/// Writes the CRC32 of `block[..len-4]` into its last 4 bytes.
pub fn seal_block(block: &mut [u8]) {
    let n = block.len() - BLOCK_CRC_BYTES;
    let crc = crc32fast::hash(&block[..n]);
    block[n..].copy_from_slice(&crc.to_le_bytes());
}

/// Checks a block's CRC32; on mismatch returns `(stored, computed)`.
pub fn check_block(block: &[u8]) -> std::result::Result<(), (u32, u32)> {
    let n = block.len() - BLOCK_CRC_BYTES;
    let stored = u32::from_le_bytes([block[n], block[n + 1], block[n + 2], block[n + 3]]);
    let got = crc32fast::hash(&block[..n]);
    if stored == got {
        Ok(())
    } else {
        Err((stored, got))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example_384_f32_r64() {
        // docs/FORMAT.md worked example.
        let l = NodeLayout::new(384, ElementType::F32, 64).unwrap();
        assert_eq!(l.record_bytes, 1796);
        assert_eq!((l.nodes_per_block, l.sectors_per_block), (2, 1));
        assert_eq!(l.block_of(12345), 6172);
        assert_eq!(l.block_sector(l.block_of(12345)), 6174);
        assert_eq!(l.block_offset_bytes(6172), 6174 * 4096);
        assert_eq!(l.offset_in_block(12345), 1796);
        assert_eq!(l.file_bytes(100_000), (2 + 50_000) * 4096);
    }

    #[test]
    fn large_records_span_sectors() {
        let l = NodeLayout::new(1024, ElementType::F32, 64).unwrap();
        assert_eq!(l.record_bytes, 4096 + 4 + 256);
        assert_eq!((l.nodes_per_block, l.sectors_per_block), (1, 2));
        assert_eq!(l.block_sector(3), 2 + 6);
        let small = NodeLayout::new(128, ElementType::U8, 32).unwrap();
        assert_eq!(small.record_bytes, 128 + 4 + 128);
        assert_eq!(small.nodes_per_block, 4092 / 260);
        assert!(NodeLayout::new(0, ElementType::U8, 32).is_err());
        assert!(NodeLayout::new(8, ElementType::U8, 0).is_err());
    }

    #[test]
    fn record_round_trip_and_crc() {
        let l = NodeLayout::new(4, ElementType::F32, 3).unwrap();
        let mut block = vec![0u8; l.block_bytes()];
        let v: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let off = l.offset_in_block(5);
        l.write_record(&mut block, off, &v, &[7, 9]);
        seal_block(&mut block);
        assert!(check_block(&block).is_ok());
        let r = l.record(&block, off);
        assert_eq!(r.vector, &v[..]);
        assert_eq!(r.neighbors().collect::<Vec<_>>(), vec![7, 9]);
        assert!(r.check(5, 10, 3).is_ok());
        assert!(r.check(5, 9, 3).unwrap_err().contains("neighbour #1 = 9"));
        assert!(r.check(7, 10, 3).unwrap_err().contains("lists itself"));
        block[off] ^= 1;
        assert!(check_block(&block).is_err());
    }

    #[test]
    fn neighbor_codes_fill_one_sector_and_round_trip() {
        // 384-d f32, R = 64: 1,796 bytes of vector and list leave room for 31-byte codes + f32.
        let m2 = NodeLayout::fit_neighbor_code_m(384, 384 * 4, 64, 48).unwrap();
        assert_eq!(m2, 31);
        let l = NodeLayout::with_neighbor_codes(384, ElementType::F32, 64, m2).unwrap();
        assert_eq!(l.record_bytes, 1796 + 64 * 35);
        assert_eq!((l.nodes_per_block, l.sectors_per_block), (1, 1));
        assert_eq!(
            NodeLayout::fit_neighbor_code_m(1024, 1024 * 4, 64, 48),
            None
        );
        // f16 vectors: 768 + 4 + 256 bytes leave 47 per neighbour, M₂ = 43
        assert_eq!(
            NodeLayout::fit_neighbor_code_m(384, 384 * 2, 64, 48),
            Some(43)
        );
        let h = NodeLayout::with_encoding(384, ElementType::F32, 64, 43, true).unwrap();
        assert_eq!(
            (h.vector_bytes(), h.record_bytes, h.nodes_per_block),
            (768, 768 + 4 + 64 * 51, 1)
        );
        assert!(NodeLayout::with_encoding(8, ElementType::U8, 4, 0, true).is_err());
        assert!(NodeLayout::with_neighbor_codes(8, ElementType::U8, 4, 9).is_err());
        let l = NodeLayout::with_neighbor_codes(4, ElementType::F32, 3, 2).unwrap();
        assert_eq!(l.nbr_code_bytes(), 6);
        let mut block = vec![0u8; l.block_bytes()];
        let off = l.offset_in_block(1);
        l.write_record(&mut block, off, &[0u8; 16], &[7, 9]);
        l.neighbor_codes_mut(&mut block, off)[..12]
            .copy_from_slice(&[1, 2, 0, 0, 0, 0, 3, 4, 0, 0, 0, 0]);
        let r = l.record(&block, off);
        assert_eq!(r.neighbors().collect::<Vec<_>>(), vec![7, 9]);
        assert_eq!(r.neighbor_codes, &[1, 2, 0, 0, 0, 0, 3, 4, 0, 0, 0, 0]);
        assert_eq!(
            NodeLayout::new(4, ElementType::F32, 3)
                .unwrap()
                .record(&block, 0)
                .neighbor_codes
                .len(),
            0
        );
    }
}
