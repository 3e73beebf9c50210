//! Writes `index.ssd` (docs/FORMAT.md): header slot 0, an empty slot 1, then every node
//! block in id order, with large sequential writes of whole sectors at aligned offsets, all
//! through a [`Storage`] backend (its fsync is the site `"build.index_ssd"`).

use crate::error::BuildError;
use crate::params::BuildParams;
use crate::progress::{Phase, Progress};
use rayon::prelude::*;
use ssdann_layout::sector::seal_block;
use ssdann_layout::storage::StorageRef;
use ssdann_layout::{Element, ElementType, IndexHeader, NodeLayout, SECTOR_BYTES};
use std::path::Path;

/// Bytes written per `write` call (a multiple of every block size).
pub const WRITE_BATCH_BYTES: usize = 8 << 20;

/// The fsync site of the sector file (see [`ssdann_layout::storage`]).
pub const SYNC_SITE: &str = "build.index_ssd";

/// Writes the sector file for `data` (n × d row-major, indexed by original id) and
/// `adjacency` (n lists by slot, each ≤ R, already in slot ids), where slot `s` holds the
/// vector of original id `perm[s]`, under `header` (whose slot 0 is written; slot 1 is left zero = never written), then fsyncs.
/// `nbr_codes`: with neighbour codes in the layout, every slot's code (n × `nbr_code_bytes`,
/// by slot), copied into the records that list it. `before_sync(file)` runs once every block
/// is written, before the one fsync (it may rewrite header slot 0: [`record_near_error`]).
/// Every write and the fsync go through `storage`.
///
/// # Errors
/// [`BuildError::Io`] naming `path`; what `before_sync` returns.
///
/// # Panics
/// If `adjacency.len()` or the data size disagree with the header (caller invariant).
#[allow(clippy::too_many_arguments)]
pub fn write_sector_file<T: Element>(
    storage: &StorageRef,
    path: &Path,
    header: &IndexHeader,
    data: &[T],
    adjacency: &[Vec<u32>],
    perm: &[u32],
    nbr_codes: Option<&[u8]>,
    progress: &dyn Progress,
    before_sync: &mut BeforeSync<'_>,
) -> Result<(), BuildError> {
    let n = header.n_slots as usize;
    let dim = header.layout.dim;
    assert_eq!(adjacency.len(), n, "one adjacency list per node");
    assert_eq!(perm.len(), n, "one original id per slot");
    assert_eq!(data.len(), n * dim, "data is n × d");
    let f16 = header.layout.f16_vectors;
    write_sector_file_from(
        storage,
        path,
        header,
        nbr_codes,
        progress,
        before_sync,
        &mut |first, vectors, lists| {
            let vb = vectors.len() / lists.len().max(1);
            vectors
                .par_chunks_mut(vb)
                .zip(lists.par_iter_mut())
                .enumerate()
                .for_each(|(k, (v, l))| {
                    let src = perm[first + k] as usize;
                    let x = &data[src * dim..(src + 1) * dim];
                    if f16 {
                        for (b, &e) in v.chunks_exact_mut(2).zip(x) {
                            b.copy_from_slice(&half::f16::from_f32(e.to_f32()).to_le_bytes());
                        }
                    } else {
                        v.copy_from_slice(bytemuck::cast_slice(x));
                    }
                    l.clear();
                    l.extend_from_slice(&adjacency[first + k]);
                });
            Ok(())
        },
    )
}

/// Runs on the sector file once every block is written, before its fsync (see
/// [`write_sector_file_from`]).
pub type BeforeSync<'a> = dyn FnMut(&std::fs::File) -> Result<(), BuildError> + 'a;

/// Fills one write batch: `(first slot, vectors, lists)`, see [`write_sector_file_from`].
pub type LoadBatch<'a> =
    dyn FnMut(usize, &mut [u8], &mut [Vec<u32>]) -> Result<(), BuildError> + 'a;

/// Writes the sector file of `header.n_slots` nodes whose records come from `load`, batch by
/// batch in slot order, then fsyncs. `load(first, vectors, lists)` fills the nodes of slots
/// `first..first + lists.len()`: `vectors` holds `lists.len()` stored vectors of
/// `layout.vector_bytes()` bytes each (little-endian), `lists[k]` the out-neighbours (slot ids,
/// ≤ R) of slot `first + k`. Memory: one batch of [`WRITE_BATCH_BYTES`] plus its lists, so a
/// caller can stream the graph from files (the partitioned build does). `nbr_codes` and
/// `before_sync`: see [`write_sector_file`] (codes required exactly when the layout has
/// neighbour codes). Every write and the fsync go through `storage`.
///
/// # Errors
/// [`BuildError::Io`] naming `path`, or any error `load` or `before_sync` returns.
pub fn write_sector_file_from(
    storage: &StorageRef,
    path: &Path,
    header: &IndexHeader,
    nbr_codes: Option<&[u8]>,
    progress: &dyn Progress,
    before_sync: &mut BeforeSync<'_>,
    load: &mut LoadBatch<'_>,
) -> Result<(), BuildError> {
    let layout = header.layout;
    let n = header.n_slots as usize;
    let cb = layout.nbr_code_bytes();
    assert_eq!(
        nbr_codes.map_or(0, <[u8]>::len),
        n * cb,
        "one neighbour code per slot exactly when the layout has them"
    );
    let io = |e| BuildError::io(path, e);
    let file = storage.open_rw(path, true, true).map_err(io)?;
    storage
        .set_len(&file, path, header.file_bytes())
        .map_err(io)?;
    let mut slots = vec![0u8; 2 * SECTOR_BYTES];
    slots[..SECTOR_BYTES].copy_from_slice(&header.encode());
    storage.write_at(&file, path, &slots, 0).map_err(io)?;
    let mut offset = slots.len() as u64;
    let blocks = layout.blocks_for(n as u64) as usize;
    let block_bytes = layout.block_bytes();
    let npb = layout.nodes_per_block;
    let vb = layout.vector_bytes();
    let blocks_per_batch = (WRITE_BATCH_BYTES / block_bytes).max(1);
    let mut batch = vec![0u8; blocks_per_batch * block_bytes];
    let mut vectors = vec![0u8; blocks_per_batch * npb * vb];
    let mut lists: Vec<Vec<u32>> = vec![Vec::new(); blocks_per_batch * npb];
    progress.start(Phase::Writing, blocks as u64);
    let mut b0 = 0usize;
    while b0 < blocks {
        let nb = blocks_per_batch.min(blocks - b0);
        let first = b0 * npb;
        let count = (nb * npb).min(n - first);
        load(first, &mut vectors[..count * vb], &mut lists[..count])?;
        let buf = &mut batch[..nb * block_bytes];
        let (vectors, lists) = (&vectors, &lists);
        buf.par_chunks_mut(block_bytes)
            .enumerate()
            .for_each(|(k, block)| {
                block.fill(0);
                let b = (b0 + k) as u64;
                let lo = b * npb as u64;
                for id in lo..(lo + npb as u64).min(n as u64) {
                    let i = id as usize - first;
                    let off = layout.offset_in_block(id);
                    layout.write_record(block, off, &vectors[i * vb..(i + 1) * vb], &lists[i]);
                    if let Some(codes) = nbr_codes {
                        let slots = layout.neighbor_codes_mut(block, off);
                        for (slot, &nb) in slots.chunks_exact_mut(cb).zip(&lists[i]) {
                            let nb = nb as usize;
                            slot.copy_from_slice(&codes[nb * cb..(nb + 1) * cb]);
                        }
                    }
                }
                seal_block(block);
            });
        storage.write_at(&file, path, buf, offset).map_err(io)?;
        offset += buf.len() as u64;
        progress.advance(nb as u64);
        b0 += nb;
    }
    debug_assert_eq!(offset, header.file_bytes(), "every block written");
    before_sync(&file)?;
    storage.sync(&file, path, SYNC_SITE).map_err(io)?;
    progress.finish();
    Ok(())
}

/// The header of a new index of `n` slots built with `params` (generation 1, all live).
pub(crate) fn new_header(
    n: usize,
    element: ElementType,
    params: &BuildParams,
    layout: NodeLayout,
    entry_point: u32,
    pq_m: usize,
) -> IndexHeader {
    IndexHeader {
        generation: 1,
        n_slots: n as u64,
        live_count: n as u64,
        dim: layout.dim as u32,
        element,
        metric: params.metric,
        max_degree: params.max_degree as u32,
        layout,
        entry_point: u64::from(entry_point),
        pq_m: pq_m as u32,
        build_l: params.build_l as u32,
        build_alpha: params.alpha,
        // as the passes do: saturation is done in the α > 1 pass only
        saturated: params.saturate_graph && params.alpha > 1.0,
        near_error: None, // measured once the sector file is written (near_error::record)
    }
}

/// Measures PQ's error on near pairs in the sector file just written at `path` (before its
/// fsync: a [`BeforeSync`] step; [`ssdann_layout::near_error::measure`], reading ≤ 256 × 17
/// records back with pread), stores it in `header` and rewrites header slot 0 of `file`
/// with it. `code_of(slot, out)`: the slot's M-byte PQ code. Every node is live (a new
/// index).
///
/// # Errors
/// [`BuildError::Io`] naming `path`; [`BuildError::Layout`] for a block whose checksum or
/// record does not check (the file just written was damaged); what `code_of` returns.
pub(crate) fn record_near_error(
    storage: &StorageRef,
    file: &std::fs::File,
    path: &Path,
    header: &mut IndexHeader,
    pq: &ssdann_layout::PqCodebook,
    refine: Option<&ssdann_layout::PqCodebook>,
    code_of: &mut ssdann_layout::near_error::CodeOf<'_, BuildError>,
) -> Result<(), BuildError> {
    use std::os::unix::fs::FileExt;
    let layout = header.layout;
    let reader = std::fs::File::open(path).map_err(|e| BuildError::io(path, e))?;
    let mut block = vec![0u8; layout.block_bytes()];
    let src = ssdann_layout::near_error::Source {
        header,
        path,
        pq,
        refine,
    };
    let mut read_record = |id: u32, out: &mut Vec<u8>| -> Result<(), BuildError> {
        let b = layout.block_of(u64::from(id));
        reader
            .read_exact_at(&mut block, layout.block_offset_bytes(b))
            .map_err(|e| BuildError::io(path, e))?;
        ssdann_layout::sector::check_block(&block).map_err(|(expected, got)| {
            ssdann_layout::LayoutError::ChecksumMismatch {
                path: path.into(),
                what: format!("block {b}"),
                expected,
                got,
            }
        })?;
        let off = layout.offset_in_block(u64::from(id));
        out.clear();
        out.extend_from_slice(&block[off..off + layout.record_bytes]);
        Ok(())
    };
    let measured = ssdann_layout::near_error::measure(&src, &|_| false, &mut read_record, code_of)?;
    header.near_error = measured;
    storage
        .write_at(file, path, &header.encode(), 0)
        .map_err(|e| BuildError::io(path, e))
}
