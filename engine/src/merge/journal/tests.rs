#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use super::*;
use ssdann_layout::journal::{
    encode_commit, encode_entry, encode_header_v2, COMMIT_COPY_BYTES, JOURNAL_HEADER_BYTES,
    JOURNAL_MAGIC_V1,
};
use ssdann_layout::{ElementType, NodeLayout};

/// The index before the merge: 2 nodes of 384-d f32 per 4 KB block, 100 nodes (50 blocks).
fn cur() -> IndexHeader {
    ssdann_layout::journal::example_index(5, 48)
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
const ENTRY: u64 = (ENTRY_HEAD_BYTES + BB) as u64;

fn commit_of(slot: u64, wal_seq: u64, new: &IndexHeader) -> CommitEntry {
    CommitEntry {
        slot,
        wal_seq,
        entries_end: None,
        staged_crcs: Some([1, 2]),
        header: new.encode().to_vec(),
    }
}

/// Blocks 7, 3, 7 again (the second image supersedes the first), 51, then the commit twice.
fn journal(dir: &Path, new: &IndexHeader) -> PathBuf {
    let blocks_after = new.layout.blocks_for(new.n_slots);
    let mut j = Journal::create(dir, BB, 5, blocks_after, None, StorageRef::default()).unwrap();
    j.append(7, &[7u8; BB]).unwrap();
    j.append(3, &[3u8; BB]).unwrap();
    j.append(7, &[9u8; BB]).unwrap();
    j.append(51, &[1u8; BB]).unwrap();
    j.commit(&commit_of(1, 42, new)).unwrap();
    j.path
}

fn committed(p: &Path, cur: &IndexHeader) -> Committed {
    match parse(p, cur).unwrap() {
        Parsed::Committed(c) => *c,
        Parsed::Uncommitted => panic!("expected a committed journal"),
    }
}

fn err(p: &Path, cur: &IndexHeader) -> String {
    match parse(p, cur) {
        Err(e) => e.to_string(),
        Ok(Parsed::Committed(_)) => panic!("expected an error, got a committed journal"),
        Ok(Parsed::Uncommitted) => panic!("expected an error, got an uncommitted journal"),
    }
}

#[test]
fn parse_finds_the_latest_image_of_each_block_and_the_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let path = journal(tmp.path(), &next());
    let h = JOURNAL_HEADER_BYTES as u64;
    for cur in [cur(), next()] {
        // before the header flip, and after it (recovery after a crash past the flip)
        let c = committed(&path, &cur);
        assert_eq!((c.slot, c.wal_seq, c.block_bytes), (1, 42, BB));
        assert_eq!(c.new_header, next());
        assert_eq!(
            c.blocks.into_iter().collect::<Vec<_>>(),
            vec![
                (3, h + ENTRY + 12),
                (7, h + 2 * ENTRY + 12),
                (51, h + 3 * ENTRY + 12)
            ]
        );
    }
}

#[test]
fn a_journal_that_stopped_before_its_commit_fsync_is_uncommitted() {
    let tmp = tempfile::tempdir().unwrap();
    let path = journal(tmp.path(), &next());
    let bytes = std::fs::read(&path).unwrap();
    let commits = (bytes.len() as u64 - 2 * COMMIT_COPY_BYTES) as usize;
    // torn anywhere up to and inside the first commit copy, or both copies zeroed
    for cut in [
        0,
        10,
        JOURNAL_HEADER_BYTES,
        commits - 100,
        commits,
        commits + 4000,
    ] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        assert!(
            matches!(parse(&path, &cur()).unwrap(), Parsed::Uncommitted),
            "cut at {cut}"
        );
    }
    let mut zeroed = bytes.clone();
    zeroed[commits..].fill(0);
    std::fs::write(&path, &zeroed).unwrap();
    assert!(matches!(parse(&path, &cur()).unwrap(), Parsed::Uncommitted));
    std::fs::write(&path, b"not a journal").unwrap();
    assert!(matches!(parse(&path, &cur()).unwrap(), Parsed::Uncommitted));
}

#[test]
fn one_damaged_commit_copy_is_survivable() {
    let tmp = tempfile::tempdir().unwrap();
    let path = journal(tmp.path(), &next());
    let bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    let copy = COMMIT_COPY_BYTES as usize;
    for at in [
        n - copy + 100,
        n - 2 * copy + 100,
        n - copy,
        n - 2 * copy + 4000,
    ] {
        let mut b = bytes.clone();
        b[at] ^= 1;
        std::fs::write(&path, &b).unwrap();
        assert_eq!(committed(&path, &cur()).new_header, next(), "flip at {at}");
    }
    // the second copy cut short (a torn write of the commit): the first one commits
    std::fs::write(&path, &bytes[..n - copy + 100]).unwrap();
    assert_eq!(committed(&path, &cur()).blocks.len(), 3);
}

#[test]
fn a_damaged_committed_journal_is_an_error_naming_the_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let path = journal(tmp.path(), &next());
    let bytes = std::fs::read(&path).unwrap();
    let h = JOURNAL_HEADER_BYTES;
    let cases: Vec<(&str, usize, &str)> = vec![
        (
            "image of block 3",
            h + ENTRY as usize + 100,
            "entry at byte offset",
        ),
        ("block number", h + 1, "entry at byte offset"),
        ("header CRC", 20, "header is unreadable"),
    ];
    for (what, at, msg) in cases {
        let mut b = bytes.clone();
        b[at] ^= 1;
        std::fs::write(&path, &b).unwrap();
        let e = err(&path, &cur());
        assert!(
            e.contains("merge.journal")
                && e.contains(msg)
                && e.contains("committed journal is damaged"),
            "{what}: {e}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b,
            "{what}: parse changes nothing"
        );
    }
}

#[test]
fn a_journal_that_does_not_fit_this_index_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // another index generation
    let path = journal(tmp.path(), &next());
    let other = IndexHeader {
        generation: 9,
        ..cur()
    };
    assert!(err(&path, &other).contains("base_generation = 5"));
    // another block size
    let big = IndexHeader {
        layout: NodeLayout::new(2048, ElementType::F32, 8).unwrap(),
        dim: 2048,
        max_degree: 8,
        ..cur()
    };
    assert_ne!(big.layout.block_bytes(), BB);
    assert!(err(&path, &big).contains("block_bytes = 4096"));
    // a commit that changes the shape, or grows past what the journal header says
    for (what, new) in [
        (
            "shape",
            IndexHeader {
                max_degree: 32,
                ..next()
            },
        ),
        (
            "blocks",
            IndexHeader {
                n_slots: 1 << 40,
                ..next()
            },
        ),
        (
            "generation",
            IndexHeader {
                generation: 8,
                ..next()
            },
        ),
    ] {
        let mut j = Journal::create(tmp.path(), BB, 5, 52, None, StorageRef::default()).unwrap();
        j.append(7, &[7u8; BB]).unwrap();
        j.commit(&commit_of(0, 1, &new)).unwrap();
        let e = err(&j.path, &cur());
        assert!(e.contains("the commit entry at byte offset"), "{what}: {e}");
    }
    // a block number past the journal header's bound
    let mut j = Journal::create(tmp.path(), BB, 5, 52, None, StorageRef::default()).unwrap();
    j.append(52, &[7u8; BB]).unwrap();
    j.commit(&commit_of(1, 1, &next())).unwrap();
    let e = err(&j.path, &cur());
    assert!(e.contains("block 52 ≥ the 52 blocks"), "{e}");
}

#[test]
fn journals_of_formats_1_and_2_are_still_finished() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(JOURNAL_FILE);
    for (magic, commit) in [
        (
            ssdann_layout::journal::JOURNAL_MAGIC_V2,
            encode_commit(1, 42, &next().encode()),
        ),
        (JOURNAL_MAGIC_V1, {
            let mut c = 1u64.to_le_bytes().to_vec(); // v1: slot, then the header image
            c.extend_from_slice(&next().encode());
            c
        }),
    ] {
        let mut b = encode_header_v2(&magic, BB as u32).to_vec();
        encode_entry(3, &[3u8; BB], &mut b);
        encode_entry(COMMIT, &commit, &mut b);
        std::fs::write(&path, &b).unwrap();
        let c = committed(&path, &cur());
        let want_seq = if magic == JOURNAL_MAGIC_V1 {
            u64::MAX
        } else {
            42
        };
        assert_eq!((c.slot, c.wal_seq, c.blocks.len()), (1, want_seq, 1));
    }
}
