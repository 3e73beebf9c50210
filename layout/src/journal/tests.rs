#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use super::*;
use crate::header::IndexHeader;
use std::path::Path;

/// The index before the merge: 2 nodes of 384-d f32 per 4 KB block, 100 nodes (50 blocks).
fn cur() -> IndexHeader {
    example_index(5, 48)
}

/// The header after the merge: 104 nodes (52 blocks), generation 6.
fn next() -> IndexHeader {
    IndexHeader {
        generation: 6,
        n_slots: 104,
        live_count: 101,
        ..cur()
    }
}

const BB: usize = 4096;

fn commit_entry(wal_seq: u64) -> CommitEntry {
    CommitEntry {
        slot: 1,
        wal_seq,
        entries_end: None,
        staged_crcs: Some([0x1234_5678, 0x9abc_def0]),
        header: next().encode().to_vec(),
    }
}

/// A format-4 journal of `k` block entries (blocks 0, 1, 2, … mod 52) and its commit region.
fn v4(k: usize, wal_seq: u64) -> Vec<u8> {
    let mut b = encode_header(BB as u32, 5, 52).to_vec();
    for i in 0..k {
        encode_entry((i % 52) as u64, &[(i % 255) as u8 + 1; BB], &mut b);
    }
    let end = b.len() as u64;
    b.extend_from_slice(&encode_commit_region(end, &commit_entry(wal_seq)));
    b
}

fn run(b: &Vec<u8>, cur: &IndexHeader) -> crate::Result<ParsedJournal> {
    parse(Path::new("merge.journal"), b, b.len() as u64, cur)
}

#[test]
fn the_commit_copies_each_own_whole_sectors_and_the_file_ends_on_a_boundary() {
    for k in [0, 1, 3, 338] {
        let b = v4(k, 42);
        let entries_end = (JOURNAL_HEADER_BYTES + k * (ENTRY_HEAD_BYTES + BB)) as u64;
        let first = commit_region_start(entries_end);
        assert_eq!(first % 4096, 0);
        assert!(first >= entries_end && first < entries_end + 4096);
        assert_eq!(b.len() as u64, first + 2 * COMMIT_COPY_BYTES, "k = {k}");
        let Ok(ParsedJournal::Committed(c)) = run(&b, &cur()) else {
            panic!("k = {k}: expected a committed journal");
        };
        assert_eq!((c.slot, c.wal_seq), (1, 42));
        assert_eq!(c.staged_crcs, Some([0x1234_5678, 0x9abc_def0]));
        assert_eq!(c.new_header, next());
        assert_eq!(c.blocks.len(), k.min(52));
    }
    // k = 338: the entries end exactly on a sector boundary (40 + 338 × 4,108 = 340 × 4,096)
    assert_eq!(
        (JOURNAL_HEADER_BYTES + 338 * (ENTRY_HEAD_BYTES + BB)) % 4096,
        0
    );
}

/// Issue 27, finding 2: one zeroed (or garbled) sector anywhere in a committed journal gives
/// the committed merge or a refusal — never "uncommitted", which would discard a merge whose
/// in-place writes may have begun. Fails with format 3's back-to-back copies (see below).
#[test]
fn one_damaged_sector_anywhere_never_makes_a_committed_journal_uncommitted() {
    for k in [0, 1, 3, 338] {
        let b = v4(k, 42);
        for cur in [cur(), next()] {
            for s in 0..b.len() / 4096 {
                for fill in [0u8, 0xA5] {
                    let mut d = b.clone();
                    d[s * 4096..(s + 1) * 4096].fill(fill);
                    match run(&d, &cur) {
                        Ok(ParsedJournal::Committed(c)) => {
                            assert_eq!(c.new_header, next(), "k {k} sector {s}");
                            assert_eq!(c.blocks.len(), k.min(52), "k {k} sector {s}");
                        }
                        Ok(ParsedJournal::Uncommitted) => {
                            panic!("k {k}, sector {s} filled with {fill:#x}: uncommitted")
                        }
                        Err(e) => {
                            let e = e.to_string();
                            assert!(e.contains("merge.journal"), "{e}");
                            assert!(e.contains("refusing to recover or delete it"), "{e}");
                        }
                    }
                }
            }
        }
    }
}

/// The same damage on the old format's back-to-back copies: one sector holds most of both.
/// Before the header flip this cannot be told from a merge that never committed (format 3's
/// limit, the reason for format 4); after the flip it is refused, never discarded.
#[test]
fn format_3_with_both_copies_in_one_damaged_sector_is_refused_once_the_header_flipped() {
    let mut b = encode_header_v34(&JOURNAL_MAGIC_V3, BB as u32, 5, 52).to_vec();
    for i in 0..3 {
        encode_entry(i, &[(i % 255) as u8 + 1; BB], &mut b);
    }
    let commit = encode_commit(1, 42, &next().encode());
    let first = b.len();
    encode_entry(COMMIT, &commit, &mut b);
    encode_entry(COMMIT, &commit, &mut b);
    assert!(matches!(run(&b, &cur()), Ok(ParsedJournal::Committed(_))));
    // the sector that holds copy 1's end and copy 2's start
    let s = (first + 4200) / 4096;
    let end = ((s + 1) * 4096).min(b.len());
    b[s * 4096..end].fill(0);
    assert!(matches!(run(&b, &cur()), Ok(ParsedJournal::Uncommitted)));
    let e = match run(&b, &next()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a flipped header with no valid commit must be refused"),
    };
    assert!(e.contains("already at generation 6"), "{e}");
}

#[test]
fn a_copy_that_records_another_end_of_the_entries_is_refused() {
    // the last block entry damaged so that the scan stops one entry early, and its sector
    // boundary happens to be where a copy lies: 40 + 337 × 4,108 is not aligned, but the
    // boundary after it plus 8 KB is the real first copy (k = 338 ends on a boundary)
    let mut b = v4(338, 42);
    let last = JOURNAL_HEADER_BYTES + 337 * (ENTRY_HEAD_BYTES + BB);
    b[last + 100] ^= 1;
    let e = run(&b, &cur()).err().unwrap().to_string();
    assert!(e.contains(&format!("entry at byte offset {last}")), "{e}");
    assert!(e.contains("committed journal is damaged"), "{e}");
}

#[test]
fn a_torn_or_zeroed_commit_region_is_uncommitted_before_the_flip() {
    let b = v4(3, 42);
    let first = commit_region_start((JOURNAL_HEADER_BYTES + 3 * (ENTRY_HEAD_BYTES + BB)) as u64);
    for cut in [
        0,
        10,
        JOURNAL_HEADER_BYTES,
        first as usize,
        first as usize + 4000,
    ] {
        let t = b[..cut].to_vec();
        assert!(
            matches!(run(&t, &cur()), Ok(ParsedJournal::Uncommitted)),
            "cut {cut}"
        );
    }
    // copy 2 cut short (a torn write before the commit fsync): copy 1 commits
    let t = b[..b.len() - 100].to_vec();
    assert!(matches!(run(&t, &cur()), Ok(ParsedJournal::Committed(_))));
    let mut z = b.clone();
    z[first as usize..].fill(0);
    assert!(matches!(run(&z, &cur()), Ok(ParsedJournal::Uncommitted)));
    // … but not once index.ssd's header carries the merge's generation
    let e = run(&z, &next()).err().unwrap().to_string();
    assert!(e.contains("the commit was durable and is damaged"), "{e}");
    // bytes after the commit region
    let mut long = b.clone();
    long.extend_from_slice(&[0u8; 10]);
    let e = run(&long, &cur()).err().unwrap().to_string();
    assert!(e.contains("10 bytes follow the commit entry"), "{e}");
}

/// Issue 27, finding 4: a CRC-valid S whose trimmed WAL would start at 2^62 is refused.
#[test]
fn a_commit_whose_s_leaves_no_room_for_the_trimmed_wal_is_refused() {
    let max = crate::wal::MAX_SEQ;
    assert!(matches!(
        run(&v4(1, max - 2), &cur()),
        Ok(ParsedJournal::Committed(_))
    ));
    for s in [max - 1, max, u64::MAX] {
        let e = run(&v4(1, s), &cur()).err().unwrap().to_string();
        assert!(e.contains(&format!("S = {s}")), "{e}");
    }
}
