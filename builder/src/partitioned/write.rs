//! Stage 5 of the partitioned build ([`Run::write`]): the record layout chosen
//! (`super::codes`), the sector file written — in sector order ([`order::Ordered`]) when
//! blocks hold several records — the PQ files, neighbour codes and navigation graph beside
//! it, all swapped into the output directory; then the work directory is removed.

use super::budget;
use super::rows::Access;
use super::run::Run;
use super::{graphs, interrupt, note_rss, order, workdir};
use crate::durable::{fsync_dir, FileWriter};
use crate::output::{install_output, make_temp_dir, INDEX_FILE};
use crate::progress::Phase;
use crate::report::BuildReport;
use crate::writer::write_sector_file_from;
use crate::BuildError;
use half::f16;
use rayon::prelude::*;
use ssdann_layout::pq::{PQ_CODES_FILE, PQ_PIVOTS_FILE};
use ssdann_layout::storage::StorageRef;
use ssdann_layout::PqCodebook;
use std::fs::File;
use std::path::Path;
use std::time::Instant;

impl Run<'_> {
    /// Stage 5: the sector file written (in sector order when the merged graph fits in the
    /// budget), the PQ files beside it, swapped into `out_dir`; then the work directory is
    /// removed.
    ///
    /// # Errors
    /// [`BuildError::Layout`] / [`BuildError::Io`] naming the file; every error of the
    /// one-shot build's swap ([`install_output`]).
    pub(crate) fn write(
        &mut self,
        out_dir: &Path,
        parts: usize,
    ) -> Result<BuildReport, BuildError> {
        let (file, rows, params, dir) = (self.file, &self.rows, self.params, &self.dir);
        let (n, dim, elem, m) = (file.len(), file.dim(), file.element_type(), self.shape.pq_m);
        let (budget, progress) = (self.budget, self.progress);
        let codes = dir.join(PQ_CODES_FILE);
        let pivots = dir.join(PQ_PIVOTS_FILE);
        let t = Instant::now();
        let r = params.max_degree;
        // The record layout (neighbour codes and f16 vectors where the data asks for them, as
        // in the one-shot build) and the neighbour codes, within the budget.
        let pq = PqCodebook::read(&pivots)?;
        let staged = super::codes::stage_layout(
            params,
            rows,
            n,
            elem,
            m,
            &pq,
            &codes,
            budget,
            params.reorder,
            progress,
        )?;
        let layout = staged.layout;
        let f16_records = layout.f16_vectors;
        // A stored vector as the record holds it: the input bytes (normalized for cosine), or
        // f16.
        let vector_at = |i: usize,
                         out: &mut [u8],
                         scratch: &mut [f32],
                         access: Access|
         -> Result<(), BuildError> {
            if f16_records {
                rows.stored(i, scratch, access)?;
                for (o, &v) in out.chunks_exact_mut(2).zip(scratch.iter()) {
                    o.copy_from_slice(&f16::from_f32(v).to_le_bytes());
                }
                Ok(())
            } else if access == Access::Random {
                order::stored_bytes_read(rows, i, out, scratch)
            } else {
                rows.stored_bytes(i, out, scratch);
                Ok(())
            }
        };
        // Vectors and codes are fetched by pread in this stage: no mapped pages to allow for.
        let need = budget::FIXED_BYTES + order::reorder_bytes(n, r);
        let ordered = if params.reorder && layout.nodes_per_block > 1 && need <= budget {
            progress.start(Phase::Reorder, 1);
            let o = order::Ordered::load(dir, rows, n, r, layout.nodes_per_block)?;
            progress.advance(1);
            progress.finish();
            self.phases.push((Phase::Reorder, t.elapsed()));
            note_rss(progress, &mut self.peaks, Phase::Reorder, budget);
            Some(o)
        } else {
            if params.reorder && layout.nodes_per_block > 1 {
                progress.message(&format!(
                    "sector reordering skipped: it needs {} MiB, the budget is {} MiB",
                    need >> 20,
                    budget >> 20
                ));
            }
            None
        };
        let t = Instant::now();
        let medoid_row = graphs::MergedReader::open(dir, n, r)?.1;
        let entry = ordered
            .as_ref()
            .map_or(medoid_row, |(o, _)| o.inv[medoid_row as usize]);
        let header = crate::writer::new_header(n, elem, params, layout, entry, m);
        let storage = &params.storage;
        let temp = make_temp_dir(storage, out_dir)?;
        let tmp = temp.path.clone();
        let mut edges = 0u64;
        let vb = layout.vector_bytes();
        let labels_path = tmp.join(ssdann_layout::labels::LABELS_FILE);
        let cb = layout.nbr_code_bytes();
        // Before the sector file's fsync: PQ's error on near pairs into header slot 0, the
        // codes read one at a time from the codes file by slot (written first).
        let index_path = tmp.join(INDEX_FILE);
        let codes_path = tmp.join(PQ_CODES_FILE);
        let mut measured = header.clone();
        let refine_book = staged.refine.as_ref().map(|r| &r.codebook);
        let mut measure = |file: &std::fs::File| -> Result<(), BuildError> {
            use std::os::unix::fs::FileExt;
            let codes =
                std::fs::File::open(&codes_path).map_err(|e| BuildError::io(&codes_path, e))?;
            let at = ssdann_layout::blob::body_offset(2);
            crate::writer::record_near_error(
                storage,
                file,
                &index_path,
                &mut measured,
                &pq,
                refine_book,
                &mut |s, out| {
                    codes
                        .read_exact_at(out, at + u64::from(s) * m as u64)
                        .map_err(|e| BuildError::io(&codes_path, e))
                },
            )
        };
        if let Some((o, _)) = &ordered {
            // neighbour codes by slot: slot s holds row perm[s]
            let slot_codes: Option<Vec<u8>> = staged.refine.as_ref().map(|r| {
                let mut v = vec![0u8; n * cb];
                v.par_chunks_mut(cb.max(1))
                    .enumerate()
                    .for_each(|(s, out)| {
                        let row = o.perm[s] as usize;
                        out.copy_from_slice(&r.entries[row * cb..(row + 1) * cb]);
                    });
                v
            });
            let mut rec = Vec::new();
            order::write_permuted_codes(storage, &codes, &tmp.join(PQ_CODES_FILE), &o.perm, m)?;
            write_sector_file_from(
                storage,
                &tmp.join(INDEX_FILE),
                &header,
                slot_codes.as_deref(),
                progress,
                &mut measure,
                &mut |first, vectors, lists| {
                    for (k, l) in lists.iter_mut().enumerate() {
                        o.list_of_slot(first + k, &mut rec, l)?;
                    }
                    edges += lists.iter().map(|l| l.len() as u64).sum::<u64>();
                    vectors.par_chunks_mut(vb).enumerate().try_for_each_init(
                        || vec![0f32; dim],
                        |scratch, (k, out)| {
                            vector_at(o.perm[first + k] as usize, out, scratch, Access::Random)
                        },
                    )
                },
            )?;
            ssdann_layout::labels::write_labels_with_via(
                storage,
                "build.labels",
                &labels_path,
                n,
                |s| u64::from(o.perm[s]),
            )?;
        } else {
            let (mut reader, _) = graphs::MergedReader::open(dir, n, r)?;
            link_or_copy(storage, &codes, &tmp.join(PQ_CODES_FILE))?;
            write_sector_file_from(
                storage,
                &tmp.join(INDEX_FILE),
                &header,
                staged.refine.as_ref().map(|r| r.entries.as_slice()),
                progress,
                &mut measure,
                &mut |first, vectors, lists| {
                    reader.next_lists(lists)?;
                    edges += lists.iter().map(|l| l.len() as u64).sum::<u64>();
                    vectors.par_chunks_mut(vb).enumerate().try_for_each_init(
                        || vec![0f32; dim],
                        |scratch, (k, out)| vector_at(first + k, out, scratch, Access::Sequential),
                    )
                },
            )?;
            reader.finish()?;
            file.release_pages();
            ssdann_layout::labels::write_labels_with_via(
                storage,
                "build.labels",
                &labels_path,
                n,
                |s| s as u64,
            )?;
        }
        drop(ordered);
        link_or_copy(storage, &pivots, &tmp.join(PQ_PIVOTS_FILE))?;
        let nbr_code_m = layout.nbr_code_m;
        if let Some(refine) = staged.refine {
            let path = tmp.join(ssdann_layout::pq::PQ_REFINE_FILE);
            refine
                .codebook
                .write_via(storage, "build.pq_refine", &path)?;
        }
        let codes_path = tmp.join(PQ_CODES_FILE);
        let metric = params.metric;
        let cap = Some(budget.saturating_sub(budget::FIXED_BYTES));
        crate::navigation::write_default(storage, &tmp, &codes_path, &pq, metric, n, cap)?;
        drop(pq);
        fsync_dir(storage, &tmp, "build.temp_dir")?;
        interrupt(params, "write")?;
        install_output(storage, temp, out_dir, params.force)?;
        self.phases.push((Phase::Writing, t.elapsed()));
        note_rss(progress, &mut self.peaks, Phase::Writing, budget);
        workdir::remove(storage, dir)?;

        let index_bytes = std::fs::read_dir(out_dir)
            .map_err(|e| BuildError::io(out_dir, e))?
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        let pq_bytes = PqCodebook::read(&out_dir.join(PQ_PIVOTS_FILE))?.memory_bytes() as u64;
        let allowance = (budget as f64 * budget::PAGE_ALLOWANCE_FRACTION) as u64;
        Ok(BuildReport {
            n,
            dim,
            element: elem,
            pq_m: m,
            nbr_code_m,
            f16_vectors: f16_records,
            medoid: medoid_row,
            mean_degree: edges as f64 / n.max(1) as f64,
            phases: std::mem::take(&mut self.phases),
            index_bytes,
            engine_ram_bytes: (n * m) as u64 + pq_bytes,
            partitions: parts,
            peak_rss_by_stage: std::mem::take(&mut self.peaks),
            memory_estimate_bytes: budget::FIXED_BYTES
                + (self.cap.min(n) as u64 * self.shape.vamana_bytes_per_point())
                + allowance,
        })
    }
}

/// Gives the finished (fsynced) stage file `from` a second name `to` in the temporary
/// directory, or where the file system refuses hard links, copies it and fsyncs the copy
/// (site `build.copy`).
fn link_or_copy(storage: &StorageRef, from: &Path, to: &Path) -> Result<(), BuildError> {
    if storage.hard_link(from, to).is_ok() {
        return Ok(());
    }
    let mut src = File::open(from).map_err(|e| BuildError::io(from, e))?;
    let mut w = FileWriter::create(storage, to)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let k = std::io::Read::read(&mut src, &mut buf).map_err(|e| BuildError::io(from, e))?;
        if k == 0 {
            break;
        }
        w.write(&buf[..k])?;
    }
    w.finish("build.copy")
}
