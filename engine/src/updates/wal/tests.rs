#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use super::*;
use crate::storage::OsStorage;
use ssdann_layout::wal::{encode_header_v1, encode_record_v1};
use std::sync::atomic::{AtomicBool, Ordering};

fn ops() -> Vec<WalOp> {
    vec![
        WalOp::Insert {
            label: 7,
            vector: vec![1.0, 2.0, 3.0],
        },
        WalOp::Delete { label: 3 },
        WalOp::Insert {
            label: 9,
            vector: vec![0.5, -1.0, 4.0],
        },
    ]
}

fn os() -> StorageRef {
    StorageRef::default()
}

fn open(p: &Path, last: u64, mode: SyncMode) -> Wal {
    Wal::open(p, 3, last, mode, os()).unwrap()
}

const INSERT3: usize = RECORD_HEAD_BYTES + 12;

#[test]
fn trim_keeps_the_later_records_with_their_sequence_numbers_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(WAL_FILE);
    let mut w = open(&p, 0, SyncMode::Always);
    w.append(&ops()).unwrap();
    drop(w);
    assert_eq!(trim(&p, 3, 2, &OsStorage).unwrap(), 1);
    let r = replay(&p, 3, &OsStorage).unwrap();
    assert_eq!((r.ops, r.last_seq), (ops()[2..].to_vec(), 3));
    assert_eq!(trim(&p, 3, 2, &OsStorage).unwrap(), 1, "idempotent");
    assert_eq!(std::fs::read(&p).unwrap().len(), WAL_HEADER_BYTES + INSERT3);
    // appends continue the numbering; a later trim drops everything through 3
    let mut w = open(&p, 3, SyncMode::Always);
    assert_eq!(w.append(&[WalOp::Delete { label: 1 }]).unwrap(), 4);
    drop(w);
    assert_eq!(trim(&p, 3, 3, &OsStorage).unwrap(), 1);
    let r = replay(&p, 3, &OsStorage).unwrap();
    assert_eq!((r.ops, r.last_seq), (vec![WalOp::Delete { label: 1 }], 4));
    assert_eq!(trim(&p, 3, 4, &OsStorage).unwrap(), 0);
    let r = replay(&p, 3, &OsStorage).unwrap();
    assert_eq!((r.ops.len(), r.last_seq), (0, 4));
    let mut w = open(&p, r.last_seq, SyncMode::Always);
    assert_eq!(w.append(&[WalOp::Delete { label: 2 }]).unwrap(), 5);
    drop(w);
    // u64::MAX (a format-1 merge journal): all gone
    assert_eq!(trim(&p, 3, u64::MAX, &OsStorage).unwrap(), 0);
    assert_eq!(replay(&p, 3, &OsStorage).unwrap().last_seq, 0);
}

#[test]
fn round_trip_in_every_mode() {
    for mode in [SyncMode::Always, SyncMode::Interval(5), SyncMode::Never] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(WAL_FILE);
        let mut w = open(&p, 0, mode);
        assert_eq!(w.append(&ops()[..2]).unwrap(), 2);
        assert_eq!(w.append(&ops()[2..]).unwrap(), 3);
        drop(w);
        let r = replay(&p, 3, &OsStorage).unwrap();
        assert_eq!((r.ops, r.last_seq, r.truncated_bytes), (ops(), 3, 0));
        let mut w = open(&p, 3, mode);
        w.append(&[WalOp::Delete { label: 1 }]).unwrap();
        drop(w);
        assert_eq!(replay(&p, 3, &OsStorage).unwrap().last_seq, 4);
    }
    assert_eq!(
        "interval=20".parse::<SyncMode>(),
        Ok(SyncMode::Interval(20))
    );
    assert!("interval=0".parse::<SyncMode>().is_err());
    assert!("sometimes".parse::<SyncMode>().is_err());
}

/// Two groups: ops()[..2] (records 1, 2) and ops()[2..] (record 3).
fn two_groups(p: &Path) -> Vec<u8> {
    let mut w = open(p, 0, SyncMode::Always);
    w.append(&ops()[..2]).unwrap();
    w.append(&ops()[2..]).unwrap();
    drop(w);
    std::fs::read(p).unwrap()
}

#[test]
fn a_torn_last_group_is_dropped_whole_and_nothing_else_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(WAL_FILE);
    let good = two_groups(&p);
    // every cut inside the last group: it goes, the first group stays
    for cut in 1..INSERT3 {
        std::fs::write(&p, &good[..good.len() - cut]).unwrap();
        let r = replay(&p, 3, &OsStorage).unwrap();
        assert_eq!(r.ops, ops()[..2].to_vec(), "cut {cut}");
        assert_eq!(r.truncated_bytes as usize, INSERT3 - cut);
        assert_eq!(std::fs::read(&p).unwrap(), good[..good.len() - INSERT3]);
    }
    // a cut inside the first group's second record: the whole first group is torn (its
    // first record is dropped too: a group is all or nothing)
    let first_group_end = WAL_HEADER_BYTES + INSERT3 + RECORD_HEAD_BYTES;
    std::fs::write(&p, &good[..first_group_end - 5]).unwrap();
    let r = replay(&p, 3, &OsStorage).unwrap();
    assert_eq!((r.ops.len(), r.last_seq), (0, 0));
    assert_eq!(std::fs::read(&p).unwrap().len(), WAL_HEADER_BYTES);
    // a damaged byte in the last group, or zeros over it: a torn tail too
    for fill in [None, Some(0u8)] {
        let mut bad = good.clone();
        let n = bad.len();
        match fill {
            None => bad[n - 3] ^= 1,
            Some(z) => bad[n - INSERT3..].fill(z),
        }
        std::fs::write(&p, &bad).unwrap();
        assert_eq!(replay(&p, 3, &OsStorage).unwrap().ops.len(), 2);
    }
}

#[test]
fn damage_before_a_later_group_is_an_error_naming_the_offset_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(WAL_FILE);
    let good = two_groups(&p);
    let rec2 = WAL_HEADER_BYTES + INSERT3;
    // a flipped payload byte, a damaged length field (once outside the CRC: it turned the
    // rest of the log into a "torn tail"), a damaged sequence number, zeros over a record
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, usize, Damage)> = vec![
        (
            "payload",
            WAL_HEADER_BYTES,
            Box::new(|b| b[WAL_HEADER_BYTES + 40] ^= 1),
        ),
        (
            "length",
            WAL_HEADER_BYTES,
            Box::new(|b| b[WAL_HEADER_BYTES + 4] ^= 4),
        ),
        ("length of 2nd", rec2, Box::new(move |b| b[rec2 + 4] = 12)),
        ("seq", rec2, Box::new(move |b| b[rec2 + 8] ^= 1)),
        (
            "zeros",
            WAL_HEADER_BYTES,
            Box::new(|b| b[WAL_HEADER_BYTES..WAL_HEADER_BYTES + 30].fill(0)),
        ),
    ];
    for (what, at, damage) in cases {
        let mut bad = good.clone();
        damage(&mut bad);
        std::fs::write(&p, &bad).unwrap();
        let e = replay(&p, 3, &OsStorage).unwrap_err().to_string();
        assert!(
            e.contains(&format!("WAL record at byte offset {at}"))
                && e.contains("a valid record of a later group follows"),
            "{what}: {e}"
        );
        assert_eq!(
            std::fs::read(&p).unwrap(),
            bad,
            "{what}: the log must not change"
        );
    }
}

#[test]
fn header_fields_are_checked_and_a_version_1_log_is_read_then_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(WAL_FILE);
    let good = two_groups(&p);
    let rehash = |b: &mut Vec<u8>| {
        let crc = crc32fast::hash(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
    };
    for (field, at, v) in [("reserved", 24usize, 1u64), ("first_seq", 16, 1 << 62)] {
        let mut bad = good.clone();
        bad[at..at + 8.min(32 - at)].fill(0);
        let n = 8.min(28 - at);
        bad[at..at + n].copy_from_slice(&v.to_le_bytes()[..n]);
        rehash(&mut bad);
        std::fs::write(&p, &bad).unwrap();
        let e = replay(&p, 3, &OsStorage).unwrap_err().to_string();
        assert!(e.contains(&format!("`{field}`")), "{e}");
    }
    let mut bad = good.clone();
    bad[13] ^= 1;
    std::fs::write(&p, &bad).unwrap();
    assert!(replay(&p, 3, &OsStorage)
        .unwrap_err()
        .to_string()
        .contains("WAL header"));
    std::fs::write(&p, &good).unwrap();
    assert!(replay(&p, 4, &OsStorage)
        .unwrap_err()
        .to_string()
        .contains("`dim` = 3"));
    // version 1: read as before, rewritten as version 2 before the next append
    std::fs::write(&p, v1_log()).unwrap();
    let r = replay(&p, 3, &OsStorage).unwrap();
    assert_eq!((r.ops.clone(), r.version), (ops(), 1));
    let mut w = open(&p, r.last_seq, SyncMode::Always);
    assert_eq!(w.append(&[WalOp::Delete { label: 1 }]).unwrap(), 4);
    drop(w);
    let r = replay(&p, 3, &OsStorage).unwrap();
    assert_eq!((r.ops.len(), r.last_seq, r.version), (4, 4, 2));
}

/// Fails writes or syncs on demand.
#[derive(Debug, Default)]
struct Faulty {
    fail_write: AtomicBool,
    fail_sync: AtomicBool,
}

impl Storage for Faulty {
    fn write_at(&self, f: &std::fs::File, p: &Path, d: &[u8], o: u64) -> std::io::Result<()> {
        if self.fail_write.load(Ordering::SeqCst) {
            // half the bytes land, then ENOSPC
            OsStorage.write_at(f, p, &d[..d.len() / 2], o)?;
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        OsStorage.write_at(f, p, d, o)
    }
    fn sync(&self, f: &std::fs::File, p: &Path, s: &'static str) -> std::io::Result<()> {
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        OsStorage.sync(f, p, s)
    }
}

#[test]
fn a_failed_append_poisons_the_handle_and_replay_keeps_every_acknowledged_record() {
    for fail_sync in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(WAL_FILE);
        let faulty = Arc::new(Faulty::default());
        let mut w = Wal::open(&p, 3, 0, SyncMode::Always, StorageRef(faulty.clone())).unwrap();
        w.append(&ops()[..2]).unwrap();
        if fail_sync {
            faulty.fail_sync.store(true, Ordering::SeqCst);
        } else {
            faulty.fail_write.store(true, Ordering::SeqCst);
        }
        let e = w.append(&ops()[2..]).unwrap_err().to_string();
        assert!(
            e.contains(if fail_sync {
                "os error 5"
            } else {
                "os error 28"
            }),
            "{e}"
        );
        faulty.fail_write.store(false, Ordering::SeqCst);
        faulty.fail_sync.store(false, Ordering::SeqCst);
        let e = w
            .append(&[WalOp::Delete { label: 1 }])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("refuses appends after an earlier failure"),
            "{e}"
        );
        drop(w);
        // the acknowledged group survives; the failed one is at most a torn tail
        let r = replay(&p, 3, &OsStorage).unwrap();
        assert_eq!(r.ops[..2], ops()[..2]);
        assert!(
            r.ops.len() == 2 || (fail_sync && r.ops.len() == 3),
            "{:?}",
            r.ops
        );
    }
}

#[test]
fn a_failed_background_fsync_is_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(WAL_FILE);
    let faulty = Arc::new(Faulty::default());
    let mut w = Wal::open(&p, 3, 0, SyncMode::Interval(2), StorageRef(faulty.clone())).unwrap();
    faulty.fail_sync.store(true, Ordering::SeqCst);
    w.append(&ops()[..1]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let e = w.append(&ops()[1..2]).unwrap_err().to_string();
    assert!(e.contains("background fsync failed"), "{e}");
}

/// A version-1 log of ops() (records 1, 2, 3; 25 + P bytes each).
fn v1_log() -> Vec<u8> {
    let mut v1 = encode_header_v1(3, 0).to_vec();
    for (i, op) in ops().iter().enumerate() {
        encode_record_v1(1 + i as u64, op, &mut v1);
    }
    v1
}

#[test]
fn a_version_1_log_gets_the_legal_length_and_last_record_rules() {
    use ssdann_layout::wal::RECORD_HEAD_BYTES_V1;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(WAL_FILE);
    let good = v1_log();
    let rec2 = WAL_HEADER_BYTES + RECORD_HEAD_BYTES_V1 + 12;
    let rec3 = rec2 + RECORD_HEAD_BYTES_V1;
    assert_eq!(good.len(), rec3 + RECORD_HEAD_BYTES_V1 + 12);
    // a damaged length field (outside the v1 CRC) of a record that others follow: once a
    // "torn tail" that dropped every acknowledged record after it, now an error naming it
    let huge = 1_000_000u32.to_le_bytes();
    let to_eof = ((good.len() - WAL_HEADER_BYTES - RECORD_HEAD_BYTES_V1) as u32).to_le_bytes();
    let cases: [(usize, [u8; 4], &str); 3] = [
        (
            WAL_HEADER_BYTES,
            huge,
            "payload of 1000000 bytes for kind 1 (legal: 12)",
        ),
        (
            WAL_HEADER_BYTES,
            to_eof,
            "payload of 74 bytes for kind 1 (legal: 12)",
        ),
        (
            rec2,
            12u32.to_le_bytes(),
            "payload of 12 bytes for kind 2 (legal: 0)",
        ),
    ];
    for (at, len_field, why) in cases {
        let mut bad = good.clone();
        bad[at..at + 4].copy_from_slice(&len_field);
        std::fs::write(&p, &bad).unwrap();
        for e in [
            check(&p, 3).unwrap_err().to_string(),
            replay(&p, 3, &OsStorage).unwrap_err().to_string(),
        ] {
            assert_eq!(
                e,
                format!(
                    "{}: corrupt WAL record at byte offset {at}: {why}; a valid record follows \
                     at byte offset {} (sequence number {}): acknowledged updates are damaged; \
                     refusing to skip them",
                    p.display(),
                    if at == rec2 { rec3 } else { rec2 },
                    if at == rec2 { 3 } else { 2 },
                )
            );
        }
        assert_eq!(std::fs::read(&p).unwrap(), bad, "the log must not change");
    }
    // the same damage in the last record: a torn tail, truncated; the others replayed
    let mut bad = good.clone();
    bad[rec3..rec3 + 4].copy_from_slice(&huge);
    std::fs::write(&p, &bad).unwrap();
    let r = replay(&p, 3, &OsStorage).unwrap();
    assert_eq!(
        (r.ops, r.last_seq, r.truncated_bytes, r.version),
        (ops()[..2].to_vec(), 2, (good.len() - rec3) as u64, 1)
    );
    assert_eq!(std::fs::read(&p).unwrap(), good[..rec3]);
}
