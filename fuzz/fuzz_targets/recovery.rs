//! What recovery checks before it acts (issue 27): `journal::parse`, then, for a committed
//! journal, `journal::check_staged` on the staged label map and PQ codes beside it
//! (docs/FORMAT.md, "merge.journal"). Input: mode byte, u32 journal length, u32 labels
//! length, then the journal, `labels.bin.merge`, and the rest as `pq_codes.bin.merge`.
//! Mode bit 0 repairs every CRC (journal entries, both blobs, and the staged-file CRCs the
//! format-4 commit records); bit 1: index.ssd already flipped to generation 6; bit 2: the
//! two files already renamed (`labels.bin`, `pq_codes.bin`). The index: 384-d f32, R = 64,
//! 100 nodes, M = 8, generation 5.
//!
//! Oracles: a committed journal whose staged files pass the check has files that decode
//! with the committed header's n and M (and, format 4, the body CRCs its commit records).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssdann_fuzz::{fix_blob_checksums, fix_journal_checksums, le_u32, with_dir, Input};
use ssdann_layout::header::IndexHeader;
use ssdann_layout::journal::{check_staged, parse, stored_body_crc, ParsedJournal};
use ssdann_layout::labels::SlotLabels;
use ssdann_layout::pq::read_codes;

fn index(generation: u64) -> IndexHeader {
    ssdann_layout::journal::example_index(generation, 8)
}

fn body_crc(b: &[u8]) -> u32 {
    le_u32(b, b.len().saturating_sub(4)).unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let f = input.file;
    let jl = le_u32(f, 0).unwrap_or(0) as usize;
    let ll = le_u32(f, 4).unwrap_or(0) as usize;
    let rest = f.get(8..).unwrap_or(&[]);
    let (j, rest) = rest.split_at(jl.min(rest.len()));
    let (l, c) = rest.split_at(ll.min(rest.len()));
    let (mut j, mut l, mut c) = (j.to_vec(), l.to_vec(), c.to_vec());
    if input.fix_checksums() {
        fix_blob_checksums(&mut l);
        fix_blob_checksums(&mut c);
        fix_journal_checksums(&mut j, Some([body_crc(&l), body_crc(&c)]));
    }
    let choice = input.choose(4);
    let cur = index(5 + (choice & 1) as u64);
    let names = if choice & 2 == 0 {
        ["labels.bin.merge", "pq_codes.bin.merge"]
    } else {
        ["labels.bin", "pq_codes.bin"]
    };
    let files = [("merge.journal", &j[..]), (names[0], &l[..]), (names[1], &c[..])];
    with_dir(&files, |dir| {
        let jp = dir.join("merge.journal");
        let Ok(ParsedJournal::Committed(cj)) = parse(&jp, &j, j.len() as u64, &cur) else {
            return;
        };
        let Ok(checked) = check_staged(dir, &cj) else {
            return;
        };
        let n = cj.new_header.n_slots;
        let labels = SlotLabels::open(&checked[0].path).expect("checked labels open");
        assert_eq!(labels.len() as u64, n, "labels n");
        let (cn, cm, _) = read_codes(&checked[1].path).expect("checked codes read");
        assert_eq!((cn as u64, cm), (n, cj.new_header.pq_m as usize), "codes n × M");
        if let Some(want) = cj.staged_crcs {
            for (k, w) in want.iter().enumerate() {
                let got = stored_body_crc(&checked[k].path).expect("crc");
                assert_eq!(got, *w, "staged CRC {k}");
            }
        }
    });
});
