//! Recovery refuses, never guesses (issue 27): before its first write, rename or removal,
//! recovery checks every input it will act on — the journal's commit, the label map and PQ
//! codes it renames into place, the WAL it trims — and on any failure changes no file.
//! A refused merge writes nothing.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use ssdann::engine::{Index, MergeOptions, MergeReport, OpenOptions, SearchParams};
use ssdann::verify;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const D: usize = 16;
const N: usize = 1500;

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    all: Vec<f32>,
}

/// A 1,500-point index with 150 deletes and 100 inserts (labels 10,000..) pending in the WAL.
fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let (all, _) = ssdann::builder::synthetic::clustered(N + 100, 0, D, 8, 27);
    let dir = tmp.path().join("idx");
    common::build_small(&all, N, D, tmp.path(), &dir);
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    let deleted: Vec<u64> = (0..N as u64).step_by(10).collect();
    idx.delete_batch(&deleted).unwrap();
    let items: Vec<(u64, &[f32])> = (0..100)
        .map(|i| (10_000 + i as u64, &all[(N + i) * D..(N + i + 1) * D]))
        .collect();
    idx.insert_batch(&items).unwrap();
    drop(idx);
    Setup {
        _tmp: tmp,
        dir,
        all,
    }
}

fn merge_report(s: &Setup) -> MergeReport {
    common::probe_merge(&s.dir)
}

/// A copy of the set-up index whose merge stopped (as a crash would) after `writes` writes.
fn crashed(s: &Setup, name: &str, writes: u64) -> PathBuf {
    let work = s.dir.parent().unwrap().join(name);
    common::copy_dir(&s.dir, &work);
    let idx = Index::open(&work, OpenOptions::default()).unwrap();
    let e = idx
        .merge(&MergeOptions {
            fail_after_writes: Some(writes),
            ..Default::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("injected fault"), "{e}");
    work
}

/// Every file of `dir`, by name.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

/// Opens `dir` read-write, which must refuse naming `names`, changing no file.
fn refused(dir: &Path, names: &[&str], case: &str) -> String {
    let before = files(dir);
    let e = match Index::open(dir, OpenOptions::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{case}: the open must refuse"),
    };
    for name in names {
        assert!(e.contains(name), "{case}: the error must name {name}: {e}");
    }
    let after = files(dir);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "{case}: a refusal removes or creates no file"
    );
    for (name, bytes) in &before {
        assert!(after[name] == *bytes, "{case}: a refusal changed {name}");
    }
    e
}

/// The merged contents: deletes gone, inserts found.
fn check_merged(idx: &Index, s: &Setup, case: &str) {
    assert_eq!(idx.pending(), (0, 0, 0), "{case}");
    let p = SearchParams::new(40, 4);
    for i in (0..100).step_by(7) {
        let q = &s.all[(N + i) * D..(N + i + 1) * D];
        let got = idx.search(q, 5, &p).unwrap();
        assert_eq!(got[0].id, 10_000 + i as u64, "{case}: insert {i}");
    }
    for l in (0..N as u64).step_by(50) {
        let q = &s.all[l as usize * D..(l as usize + 1) * D];
        let got = idx.search(q, 5, &p).unwrap();
        assert!(
            got.iter().all(|h| h.id != l),
            "{case}: deleted {l} returned"
        );
    }
}

/// Issue 27, finding 1: one changed byte in a staged file (header or body), or in the file it
/// was already renamed to, at every state of a committed merge → the read-write open refuses,
/// names the file, and changes no file; with the byte restored the merge finishes with every
/// acknowledged update. (On b257a55 the open rewrote index.ssd, renamed the damaged file into
/// place, emptied the WAL, deleted the journal, and then failed at every later open.)
#[test]
fn a_damaged_staged_file_at_any_journal_state_is_refused_and_nothing_changes() {
    let s = setup();
    let rep = merge_report(&s);
    let (j, b) = (rep.journal_writes, rep.blocks_written as u64);
    assert!(b > 4, "the merge rewrites blocks: {b}");
    // committed, nothing applied · half applied · every block written · header flipped ·
    // labels renamed · both renamed · WAL trimmed (journal still there)
    let states = [
        j,
        j + b / 2,
        j + b,
        j + b + 1,
        j + b + 2,
        j + b + 3,
        j + b + 4,
    ];
    let mut renamed_seen = 0;
    for (k, &writes) in states.iter().enumerate() {
        let work = crashed(&s, &format!("state{k}"), writes);
        assert!(work.join("merge.journal").exists(), "state {k}: journal");
        for name in ["labels.bin", "pq_codes.bin"] {
            let staged = work.join(format!("{name}.merge"));
            let path = if staged.exists() {
                staged
            } else {
                renamed_seen += 1;
                work.join(name)
            };
            let len = std::fs::metadata(&path).unwrap().len() as usize;
            for at in [12, len / 2, len - 2] {
                let case = format!("state {k}, {} byte {at}", path.display());
                let w = s.dir.parent().unwrap().join(format!("case{k}"));
                common::copy_dir(&work, &w);
                let p = w.join(path.file_name().unwrap());
                flip(&p, at);
                let fname = p.file_name().unwrap().to_string_lossy().into_owned();
                let e = refused(&w, &[&fname, "refusing to finish the merge"], &case);
                assert!(e.contains("no file was changed"), "{case}: {e}");
                flip(&p, at);
                let idx = Index::open(&w, OpenOptions::default()).unwrap();
                check_merged(&idx, &s, &case);
                drop(idx);
                assert!(verify(&w).unwrap().ok(), "{case}");
                std::fs::remove_dir_all(&w).unwrap();
            }
        }
        std::fs::remove_dir_all(&work).unwrap();
    }
    assert_eq!(renamed_seen, 1 + 2 + 2, "states with renamed files");
}

/// A staged file from elsewhere (valid, right n and M, another merge's contents) cannot stand
/// in for the merge's own: the commit entry records the staged files' body CRCs.
#[test]
fn a_valid_staged_file_that_is_not_the_merges_is_refused() {
    let s = setup();
    let rep = merge_report(&s);
    let work = crashed(&s, "swapped", rep.journal_writes);
    // the pre-merge label map has another n; a valid map of the right n, other labels:
    let staged = work.join("labels.bin.merge");
    let mut labels = ssdann::layout::labels::read_labels(&staged).unwrap();
    labels.swap(0, 1);
    ssdann::layout::labels::write_labels(&staged, &labels).unwrap();
    let e = refused(
        &work,
        &["labels.bin.merge", "not this merge's file"],
        "swapped",
    );
    assert!(e.contains("body CRC"), "{e}");
}

/// The WAL that recovery trims is checked before its first write: a damaged record before the
/// last one is refused with nothing changed (the merge is not half finished around it).
#[test]
fn a_damaged_wal_is_refused_before_recovery_writes() {
    let s = setup();
    let rep = merge_report(&s);
    let work = crashed(&s, "wal", rep.journal_writes);
    let wal = work.join("wal.log");
    let len = std::fs::metadata(&wal).unwrap().len() as usize;
    flip(&wal, len / 3);
    refused(&work, &["wal.log"], "damaged WAL");
}

/// Issue 27, finding 2: one zeroed 4 KB sector anywhere in the journal of a half-applied merge
/// gives the post-merge index or a refusal that changes nothing — never "discarding an
/// uncommitted merge journal" over a half-rewritten index (b257a55: one sector held the end
/// of commit copy 1 and most of copy 2).
#[test]
fn one_zeroed_journal_sector_of_a_half_applied_merge_never_discards_it() {
    let s = setup();
    let rep = merge_report(&s);
    let work = crashed(
        &s,
        "half",
        rep.journal_writes + rep.blocks_written as u64 / 2,
    );
    let jlen = std::fs::metadata(work.join("merge.journal")).unwrap().len() as usize;
    let sectors = jlen.div_ceil(4096);
    let (mut finished, mut refusals) = (0, 0);
    let mut picks: Vec<usize> = (0..sectors).step_by((sectors / 8).max(1)).collect();
    picks.extend(sectors.saturating_sub(6)..sectors);
    for sector in picks {
        let case = format!("journal sector {sector} of {sectors} zeroed");
        let w = s.dir.parent().unwrap().join(format!("zero{sector}"));
        common::copy_dir(&work, &w);
        let jp = w.join("merge.journal");
        let mut jb = std::fs::read(&jp).unwrap();
        let end = ((sector + 1) * 4096).min(jb.len());
        jb[sector * 4096..end].fill(0);
        std::fs::write(&jp, &jb).unwrap();
        let before = files(&w);
        match Index::open(&w, OpenOptions::default()) {
            Ok(idx) => {
                check_merged(&idx, &s, &case);
                drop(idx);
                assert!(verify(&w).unwrap().ok(), "{case}");
                finished += 1;
            }
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("merge.journal"), "{case}: {e}");
                assert!(files(&w) == before, "{case}: a refusal changed a file");
                refusals += 1;
            }
        }
        std::fs::remove_dir_all(&w).unwrap();
    }
    eprintln!("zeroed journal sectors: {finished} finished, {refusals} refused");
    assert!(
        finished >= 2,
        "a zeroed commit copy is survivable: {finished}"
    );
    assert!(refusals >= 2, "a zeroed block entry is refused: {refusals}");
}

/// Issue 27, finding 5: a merge refused at the header-generation limit writes nothing — no
/// journal, no staged file — so read-only opens keep working.
#[test]
fn a_merge_refused_at_the_generation_limit_writes_nothing() {
    use ssdann::layout::header::IndexHeader;
    let s = setup();
    let path = s.dir.join("index.ssd");
    let mut b = std::fs::read(&path).unwrap();
    let (mut h, slot) = IndexHeader::choose(&path, &b[..8192]).unwrap();
    h.generation = (1 << 62) - 1;
    b[slot * 4096..(slot + 1) * 4096].copy_from_slice(&h.encode());
    std::fs::write(&path, &b).unwrap();
    let idx = Index::open(&s.dir, OpenOptions::default()).unwrap();
    let before = files(&s.dir);
    let e = idx.merge(&MergeOptions::default()).unwrap_err().to_string();
    assert!(
        e.contains("cannot advance") && e.contains("nothing was written"),
        "{e}"
    );
    assert!(files(&s.dir) == before, "a refused merge wrote a file");
    assert_eq!(idx.pending(), (100, 150, 250));
    drop(idx);
    let ro = Index::open(
        &s.dir,
        OpenOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ro.pending(), (100, 150, 250));
}
