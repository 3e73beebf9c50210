//! Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/: small VALID files
//! made by `ssdann-layout`'s own writers (where it has one), each prefixed with the target's
//! mode byte (fuzz/src/lib.rs, `Input`). Run from anywhere:
//! `cargo run --manifest-path fuzz/Cargo.toml --bin gen_corpus`. Deterministic: rerunning it
//! rewrites the same bytes, so `git status` shows any format change.
//!
//! Seeds named `regress-*` are inputs that once crashed a reader.
//!
//! Mode byte: bit 0 = repair checksums after mutation; bits 1.. choose the variant (file
//! extension) where a target has several.

use ssdann_layout::blob::write_blob;
use ssdann_layout::dataset::write_bin;
use ssdann_layout::header::IndexHeader;
use ssdann_layout::labels::{write_labels, FREE_LABEL};
use ssdann_layout::pq::{even_offsets, write_codes, PQ_CENTROIDS};
use ssdann_layout::sector::{seal_block, NodeLayout};
use ssdann_layout::{ElementType, GroundTruth, Metric, PqCodebook};
use std::path::{Path, PathBuf};

const FIX: u8 = 1;

struct Out {
    root: PathBuf,
    tmp: PathBuf,
}

impl Out {
    fn seed(&self, target: &str, name: &str, mode: u8, file: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        let mut b = vec![mode];
        b.extend_from_slice(file);
        std::fs::write(dir.join(name), b).expect("write seed");
    }
    /// Runs a writer on a temporary path and returns the bytes it wrote.
    fn written(&self, write: impl FnOnce(&Path)) -> Vec<u8> {
        let p = self.tmp.join("seed");
        write(&p);
        let b = std::fs::read(&p).expect("read back");
        std::fs::remove_file(&p).expect("remove temp");
        b
    }
}

fn header(n: u64, dim: u32, element: ElementType, metric: Metric, r: u32, gen: u64) -> IndexHeader {
    IndexHeader {
        generation: gen,
        n_slots: n,
        live_count: n,
        dim,
        element,
        metric,
        max_degree: r,
        layout: NodeLayout::new(dim as usize, element, r as usize).expect("valid layout"),
        entry_point: n / 2,
        pq_m: dim.min(8),
        build_l: 100,
        build_alpha: 1.2,
        saturated: false,
        near_error: None,
    }
}

fn headers(o: &Out) {
    let a = header(1000, 16, ElementType::F32, Metric::L2, 32, 1);
    let mut b = a.clone();
    (b.generation, b.live_count) = (2, 990);
    let two = |x: &IndexHeader, y: Option<&IndexHeader>| {
        let mut v = x.encode().to_vec();
        v.extend_from_slice(&y.map_or([0u8; 4096], IndexHeader::encode));
        v
    };
    // As a build leaves it: slot 0 at generation 1, slot 1 never written.
    o.seed("header", "build", FIX, &two(&a, None));
    // After one update committed to slot 1.
    o.seed("header", "updated", FIX, &two(&a, Some(&b)));
    o.seed("header", "updated-raw", 0, &two(&b, Some(&a)));
    // Multi-sector records (1024-d f32), u8 with the largest R, i8 cosine.
    let big = header(7, 1024, ElementType::F32, Metric::InnerProduct, 64, 5);
    o.seed("header", "multi-sector", FIX, &two(&big, None));
    let u8r = header(3, 100, ElementType::U8, Metric::L2, 4096, 3);
    let i8c = header(
        u64::from(u32::MAX),
        200,
        ElementType::I8,
        Metric::Cosine,
        50,
        4,
    );
    o.seed("header", "u8-maxdeg-i8-cos", FIX, &two(&u8r, Some(&i8c)));
}

/// Geometry prefix of the `sector` target: `[dim-1: u16][element][R: u16][n: u32][block: u32]`.
fn sector_seed(o: &Out, name: &str, dim: u16, elem: ElementType, r: u16, n: u32, block: u32) {
    let l = NodeLayout::new(usize::from(dim), elem, usize::from(r)).expect("valid layout");
    let mut blk = vec![0u8; l.block_bytes()];
    for i in 0..l.nodes_per_block as u64 {
        let id = u64::from(block) * l.nodes_per_block as u64 + i;
        if id >= u64::from(n) {
            break;
        }
        let vector: Vec<u8> = (0..l.vector_bytes())
            .map(|j| (j as u64 + id) as u8)
            .collect();
        let nbrs: Vec<u32> = (0..u64::from(n))
            .filter(|&x| x != id)
            .take((id as usize % usize::from(r)) + 1)
            .map(|x| x as u32)
            .collect();
        l.write_record(&mut blk, l.offset_in_block(id), &vector, &nbrs);
    }
    seal_block(&mut blk);
    // The geometry prefix; the block is cut after its last non-zero byte (the target
    // zero-pads to block_bytes) to keep the seed small.
    let mut f = (dim - 1).to_le_bytes().to_vec();
    f.push(elem.code());
    f.extend_from_slice(&r.to_le_bytes());
    f.extend_from_slice(&n.to_le_bytes());
    f.extend_from_slice(&block.to_le_bytes());
    let body_end = blk.len() - 4;
    let used = blk[..body_end]
        .iter()
        .rposition(|&x| x != 0)
        .map_or(0, |p| p + 1);
    // Only a whole block keeps its CRC valid without the repair bit: seed both.
    let mut whole = f.clone();
    whole.extend_from_slice(&blk);
    o.seed("sector", &format!("{name}-whole"), 0, &whole);
    f.extend_from_slice(&blk[..used]);
    o.seed("sector", &format!("{name}-cut"), FIX, &f);
}

fn sectors(o: &Out) {
    sector_seed(o, "f32-d4-r3", 4, ElementType::F32, 3, 1000, 7);
    sector_seed(o, "u8-d128-r32", 128, ElementType::U8, 32, 100, 2);
    sector_seed(o, "i8-d8-r4", 8, ElementType::I8, 4, 5, 0);
    sector_seed(
        o,
        "f32-d1024-r8-two-sectors",
        1024,
        ElementType::F32,
        8,
        3,
        1,
    );
}

fn blobs(o: &Out) {
    let b = o.written(|p| write_blob(p, b"TESTBLOB", 1, &[7, 9], b"hello world").expect("blob"));
    o.seed("blob", "two-fields", FIX, &b);
    let b = o.written(|p| write_blob(p, b"TESTBLOB", 3, &[], &[]).expect("blob"));
    o.seed("blob", "empty-v3", FIX | (2 << 1), &b);
    let fields: Vec<u64> = (0..16).collect();
    let b = o.written(|p| write_blob(p, b"SSDPQCOD", 1, &fields, &[1, 2, 3]).expect("blob"));
    o.seed("blob", "sixteen-fields", 0, &b);

    let b = o.written(|p| write_labels(p, &[5, 3, 9, 0]).expect("labels"));
    o.seed("labels", "four", FIX, &b);
    let b = o.written(|p| write_labels(p, &[1, FREE_LABEL, 2, FREE_LABEL]).expect("labels"));
    o.seed("labels", "free-slots", FIX, &b);
    let b = o.written(|p| write_labels(p, &[]).expect("labels"));
    o.seed("labels", "empty", 0, &b);

    let g = ssdann_layout::navigation::NavigationGraph {
        slots: vec![3, 10, 11, 40],
        adjacency: vec![vec![1, 2], vec![0], vec![3, 0, 1], vec![]],
        medoid: 2,
        r: 3,
    };
    let st = ssdann_layout::storage::StorageRef::default();
    let b = o.written(|p| g.write_via(&st, "seed", p, 8).expect("navigation"));
    o.seed("navigation", "four-nodes", FIX | (1 << 1), &b);

    let codes: Vec<u8> = (0..40u8).map(|x| x.wrapping_mul(37)).collect();
    let b = o.written(|p| write_codes(p, 10, 4, &codes).expect("codes"));
    o.seed("pq_codes", "n10-m4", FIX, &b);
    let b = o.written(|p| write_codes(p, 3, 1, &[0, 255, 7]).expect("codes"));
    o.seed("pq_codes", "n3-m1", FIX, &b);
    let b = o.written(|p| write_codes(p, 0, 2, &[]).expect("codes"));
    o.seed("pq_codes", "n0-m2", 0, &b);
}

fn pivots(o: &Out) {
    for (d, m, offsets) in [
        (4usize, 2usize, even_offsets(4, 2)),
        (3, 3, even_offsets(3, 3)),
        (1, 1, even_offsets(1, 1)),
        (5, 2, vec![0, 1, 5]),
    ] {
        let centroid: Vec<f32> = (0..d).map(|j| j as f32 * 0.25).collect();
        let pivots_t: Vec<f32> = (0..PQ_CENTROIDS * d)
            .map(|i| (i % 97) as f32 - 48.0)
            .collect();
        let pq = PqCodebook::new(offsets, centroid, pivots_t).expect("valid codebook");
        let b = o.written(|p| pq.write(p).expect("pivots"));
        o.seed("pq_pivots", &format!("d{d}-m{m}"), FIX, &b);
    }
}

fn vecs_rows<const W: usize>(rows: &[[u8; W]], d: i32) -> Vec<u8> {
    let mut b = Vec::new();
    for r in rows {
        b.extend_from_slice(&d.to_le_bytes());
        b.extend_from_slice(r);
    }
    b
}

fn vectors(o: &Out) {
    // Variant order: fbin, u8bin, i8bin, fvecs, bvecs (fuzz_targets/vectors.rs).
    let data: Vec<f32> = (0..12).map(|x| x as f32 * 0.5 - 2.0).collect();
    let b = o.written(|p| write_bin(p, 3, 4, &data).expect("fbin"));
    o.seed("vectors", "fbin-3x4", 0 << 1, &b);
    let b = o.written(|p| write_bin(p, 2, 3, &[1u8, 2, 3, 250, 251, 252]).expect("u8bin"));
    o.seed("vectors", "u8bin-2x3", 1 << 1, &b);
    let b = o.written(|p| write_bin(p, 1, 5, &[-128i8, -1, 0, 1, 127]).expect("i8bin"));
    o.seed("vectors", "i8bin-1x5", 2 << 1, &b);
    let f = |v: [f32; 2]| {
        let mut a = [0u8; 8];
        a[..4].copy_from_slice(&v[0].to_le_bytes());
        a[4..].copy_from_slice(&v[1].to_le_bytes());
        a
    };
    let fv = vecs_rows(&[f([1.0, 2.0]), f([3.0, f32::NAN]), f([5.0, 6.0])], 2);
    o.seed("vectors", "fvecs-3x2-nan", 3 << 1, &fv);
    o.seed(
        "vectors",
        "bvecs-2x3",
        4 << 1,
        &vecs_rows(&[[9u8, 8, 7], [6, 5, 4]], 3),
    );
}

fn npy_file(version: u8, descr: &str, fortran: bool, shape: &str, body: &[u8]) -> Vec<u8> {
    let pre = if version == 1 { 10 } else { 12 };
    let mut h = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (pre + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY".to_vec();
    b.extend_from_slice(&[version, 0]);
    if version == 1 {
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        b.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    b.extend_from_slice(h.as_bytes());
    b.extend_from_slice(body);
    b
}

fn npys(o: &Out) {
    let f32s: Vec<u8> = (0..6)
        .flat_map(|x| (x as f32 * 1.5).to_le_bytes())
        .collect();
    o.seed(
        "npy",
        "v1-f4-2x3",
        0,
        &npy_file(1, "<f4", false, "(2, 3)", &f32s),
    );
    o.seed(
        "npy",
        "v2-u1-3x1",
        0,
        &npy_file(2, "|u1", false, "(3, 1)", &[7, 8, 9]),
    );
    o.seed(
        "npy",
        "v3-i1-1x2",
        0,
        &npy_file(3, "|i1", false, "(1, 2)", &[255, 1]),
    );
    o.seed(
        "npy",
        "fortran",
        0,
        &npy_file(1, "<f4", true, "(1, 1)", &[0; 4]),
    );
    o.seed("npy", "one-d", 0, &npy_file(1, "<f4", false, "(6,)", &f32s));
}

fn ground_truth(o: &Out) {
    // Variant order: ibin, bin, ivecs (fuzz_targets/ground_truth.rs).
    let gt = GroundTruth {
        nq: 2,
        k: 3,
        ids: vec![1, 2, 3, 4, 5, 6],
        distances: vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
    };
    let b = o.written(|p| gt.write(p).expect("ibin"));
    o.seed("ground_truth", "ibin-2x3-dist", 0, &b);
    let ids_only = GroundTruth {
        distances: Vec::new(),
        ..gt
    };
    let b = o.written(|p| ids_only.write(p).expect("ibin"));
    o.seed("ground_truth", "bin-2x3-ids", 1 << 1, &b);
    let mut iv = Vec::new();
    for row in [[3u32, 1, 2], [0, 9, 8]] {
        iv.extend_from_slice(&3i32.to_le_bytes());
        row.iter()
            .for_each(|x| iv.extend_from_slice(&x.to_le_bytes()));
    }
    o.seed("ground_truth", "ivecs-2x3", 2 << 1, &iv);
    // Regression (fixed in 5646929): nq = k = 2^31, so nq × k × 4 wrapped to 0 and this
    // 8-byte file was read as 2^31 empty rows.
    let mut b = (1u32 << 31).to_le_bytes().to_vec();
    b.extend_from_slice(&(1u32 << 31).to_le_bytes());
    o.seed("ground_truth", "regress-ibin-nq-k-overflow", 0, &b);
}

fn wal(o: &Out) {
    use ssdann_layout::wal::{
        encode_group, encode_header, encode_header_v1, encode_record_v1, WalOp,
    };
    let ins = |label: u64, d: usize| WalOp::Insert {
        label,
        vector: (0..d).map(|j| j as f32 - 0.5).collect(),
    };
    let del = |label: u64| WalOp::Delete { label };
    // Two group commits (3 records, then 1), d = 2.
    let mut b = encode_header(2, 1).to_vec();
    encode_group(1, &[ins(10, 2), del(4), ins(11, 2)], &mut b);
    encode_group(4, &[del(10)], &mut b);
    o.seed("wal", "v2-two-groups", FIX, &b);
    // A torn append: the last group cut inside its second record.
    let mut t = b.clone();
    encode_group(5, &[ins(12, 2), ins(13, 2)], &mut t);
    t.truncate(t.len() - 5);
    o.seed("wal", "v2-torn-tail", FIX, &t);
    // After a trim: first_seq 41, d = 3; an empty log (header only).
    let mut b = encode_header(3, 41).to_vec();
    encode_group(41, &[ins(7, 3)], &mut b);
    o.seed("wal", "v2-first-seq-41", FIX, &b);
    o.seed("wal", "v2-empty", 0, &encode_header(5, 0));
    // Version 1 (still read): d = 2, three records.
    let mut b = encode_header_v1(2, 0).to_vec();
    for (seq, op) in [(1, ins(1, 2)), (2, del(1)), (3, ins(2, 2))] {
        encode_record_v1(seq, &op, &mut b);
    }
    o.seed("wal", "v1-three", FIX, &b);
}

fn journal(o: &Out) {
    use ssdann_layout::journal::{
        encode_commit, encode_commit_region, encode_entry, encode_header, encode_header_v2,
        encode_header_v34, CommitEntry, COMMIT, JOURNAL_MAGIC_V2, JOURNAL_MAGIC_V3,
    };
    // The index of the `journal` and `recovery` targets: 384-d f32, R = 64, 100 nodes
    // (50 blocks), M = 8, gen 5.
    let cur = header(100, 384, ElementType::F32, Metric::L2, 64, 5);
    let next = IndexHeader {
        generation: 6,
        n_slots: 104,
        live_count: 101,
        entry_point: 3,
        ..cur.clone()
    };
    // The staged files of that merge: 104 labels (slots 100.. new), 104 × 8 codes.
    let labels: Vec<u64> = (0..104u64).map(|s| if s == 7 { FREE_LABEL } else { s + 1000 }).collect();
    let codes: Vec<u8> = (0..104 * 8).map(|i| (i * 7 % 256) as u8).collect();
    let lb = o.written(|p| write_labels(p, &labels).expect("labels"));
    let cb = o.written(|p| write_codes(p, 104, 8, &codes).expect("codes"));
    let crc = |b: &[u8]| u32::from_le_bytes(b[b.len() - 4..].try_into().expect("4 bytes"));
    let blocks = [(7u64, 7u8), (3, 3), (7, 9), (51, 1)];
    // Format 4: blocks 7, 3, 7 again, 51 (a new block), the commit region.
    let mut b = encode_header(4096, 5, 52).to_vec();
    for (block, fill) in blocks {
        encode_entry(block, &[fill; 4096], &mut b);
    }
    let uncommitted = b.clone();
    let end = b.len() as u64;
    let entry = CommitEntry {
        slot: 1,
        wal_seq: 42,
        entries_end: None,
        staged_crcs: Some([crc(&lb), crc(&cb)]),
        header: next.encode().to_vec(),
    };
    b.extend_from_slice(&encode_commit_region(end, &entry));
    o.seed("journal", "v4-committed", FIX, &b);
    o.seed("journal", "v4-uncommitted", FIX, &uncommitted);
    // recovery: u32 journal length, u32 labels length, journal, labels, codes
    let bundle = |j: &[u8]| {
        let mut v = (j.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(&(lb.len() as u32).to_le_bytes());
        v.extend_from_slice(j);
        v.extend_from_slice(&lb);
        v.extend_from_slice(&cb);
        v
    };
    o.seed("recovery", "v4-staged", FIX, &bundle(&b));
    o.seed("recovery", "v4-renamed-flipped", FIX | 2 | 4, &bundle(&b));
    // Format 3 (still finished): the same blocks, the commit twice back to back.
    let commit = encode_commit(1, 42, &next.encode());
    let mut b = encode_header_v34(&JOURNAL_MAGIC_V3, 4096, 5, 52).to_vec();
    for (block, fill) in blocks {
        encode_entry(block, &[fill; 4096], &mut b);
    }
    let uncommitted = b.clone();
    encode_entry(COMMIT, &commit, &mut b);
    encode_entry(COMMIT, &commit, &mut b);
    o.seed("journal", "v3-committed", FIX, &b);
    o.seed("journal", "v3-uncommitted", FIX, &uncommitted);
    o.seed("recovery", "v3-staged", FIX, &bundle(&b));
    // Format 2 (still finished): one block, one commit copy.
    let mut b = encode_header_v2(&JOURNAL_MAGIC_V2, 4096).to_vec();
    encode_entry(3, &[3u8; 4096], &mut b);
    encode_entry(COMMIT, &commit, &mut b);
    o.seed("journal", "v2-committed", 0, &b);
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let tmp = std::env::temp_dir().join(format!("ssdann-gen-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("create temp dir");
    let o = Out { root, tmp };
    headers(&o);
    sectors(&o);
    blobs(&o);
    pivots(&o);
    vectors(&o);
    npys(&o);
    ground_truth(&o);
    wal(&o);
    journal(&o);
    std::fs::remove_dir_all(&o.tmp).expect("remove temp dir");
    println!("seeds written under {}", o.root.display());
}
