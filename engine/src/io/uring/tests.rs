#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
use super::*;
use crate::io::IO_ALIGN;
use std::sync::atomic::{AtomicBool, Ordering};

/// A file of `blocks` blocks of 4096 bytes, block i filled with i + 1.
fn blocks_file(dir: &std::path::Path, blocks: usize) -> Arc<SectorFile> {
    let path = dir.join("f");
    let bytes: Vec<u8> = (0..blocks * IO_ALIGN)
        .map(|i| (i / IO_ALIGN) as u8 + 1)
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    SectorFile::open(&path).unwrap()
}

fn req(block: u64, slot: usize) -> ReadReq {
    ReadReq {
        offset: block * IO_ALIGN as u64,
        slot,
    }
}

/// A reader on a pipe (a read stays in flight until someone writes) and the write end.
fn pipe_reader() -> (UringReader, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe(2) to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: pipe(2) returned two open descriptors that nothing else owns.
    let (rd, wr) = unsafe {
        (
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]),
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]),
        )
    };
    let file = Arc::new(SectorFile {
        path: "pipe".into(),
        file: rd,
        direct: false,
        gate: parking_lot::RwLock::new(()),
    });
    (UringReader::new(file, IO_ALIGN, 2).unwrap(), wr)
}

#[test]
fn dropping_a_reader_with_a_read_in_flight_waits_for_the_read() {
    let (mut r, wr) = pipe_reader();
    r.submit(ReadReq { offset: 0, slot: 1 }).unwrap();
    r.submit_queued().unwrap();
    assert_eq!(r.in_flight_count(), 1);
    let written = Arc::new(AtomicBool::new(false));
    let w = {
        let written = written.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            std::thread::sleep(std::time::Duration::from_millis(200));
            written.store(true, Ordering::SeqCst);
            (&wr).write_all(&[9u8; IO_ALIGN]).unwrap();
            wr
        })
    };
    drop(r);
    assert!(
        written.load(Ordering::SeqCst),
        "drop returned before the kernel completed the read into the buffer"
    );
    drop(w.join().unwrap());
}

#[test]
fn an_injected_ring_failure_leaves_every_slot_free_and_the_reader_usable() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = UringReader::new(blocks_file(dir.path(), 8), IO_ALIGN, 4).unwrap();
    // read_batch: the wait fails once after the reads went out
    r.fail_next_enters(1);
    let e = r
        .read_batch(&[req(1, 0), req(2, 1), req(3, 2)])
        .unwrap_err();
    assert!(e.to_string().contains("injected"), "{e}");
    assert_eq!(r.in_flight_count(), 0, "every slot free after the error");
    assert!(r.reusable());
    r.read_batch(&[req(4, 0), req(5, 3)]).unwrap();
    assert!(r.slot(0).iter().all(|&b| b == 5) && r.slot(3).iter().all(|&b| b == 6));
    // wait_any: the same
    r.submit(req(6, 1)).unwrap();
    r.submit(req(7, 2)).unwrap();
    r.fail_next_enters(1);
    let mut done = Vec::new();
    assert!(r.wait_any(&mut done).is_err());
    assert_eq!(r.in_flight_count(), 0);
    assert!(r.reusable());
    r.submit(req(0, 1)).unwrap(); // slot 1 is free again
    done.clear();
    r.wait_any(&mut done).unwrap();
    assert_eq!(done, vec![1]);
    assert!(r.slot(1).iter().all(|&b| b == 1));
}

#[test]
fn a_ring_that_keeps_failing_marks_the_reader_broken_and_drop_leaks_its_buffer() {
    // the read into slot 0 never completes (nobody writes to the pipe), and every wait
    // fails
    let (mut r, wr) = pipe_reader();
    r.fail_next_enters(u32::MAX);
    assert!(r.read_batch(&[ReadReq { offset: 0, slot: 0 }]).is_err());
    assert_eq!(r.in_flight_count(), 1, "never completed: still in flight");
    assert!(!r.reusable(), "the pool must not take it back");
    assert!(
        r.submit(ReadReq { offset: 0, slot: 0 }).is_err(),
        "slot 0 may still be written"
    );
    let mut done = Vec::new();
    assert!(r.wait_any(&mut done).is_err());
    r.drain();
    drop(r); // closes the ring (the kernel cancels the read) and leaks the buffer
    drop(wr);
}

#[test]
fn a_wait_spins_only_while_searches_and_spinning_waits_are_fewer_than_cores() {
    let (r, wr) = pipe_reader();
    let mut r = r.with_busy_poll(100);
    r.submit(ReadReq { offset: 0, slot: 0 }).unwrap();
    // every core already has a spinning wait: this one does not spin
    SPINNERS.fetch_add(cores(), Ordering::AcqRel);
    let full = r.poll(1).unwrap();
    SPINNERS.fetch_sub(cores(), Ordering::AcqRel);
    // more searches running than cores: no spin either
    let many: Vec<ActiveSearch> = (0..=cores()).map(|_| ActiveSearch::start()).collect();
    let crowded = r.poll(1).unwrap();
    drop(many);
    // a free core: the wait spins (other tests' spins end within their budgets)
    let spun = (0..10_000).any(|_| {
        let s = r.poll(1).unwrap();
        std::thread::yield_now();
        s
    });
    // the read lands and is reaped as always (before any assertion: a reader dropped
    // with the read in flight would wait for it forever)
    use std::io::Write;
    (&wr).write_all(&[5u8; IO_ALIGN]).unwrap();
    let mut done = Vec::new();
    r.wait_any(&mut done).unwrap();
    assert_eq!(done, vec![0]);
    assert!(r.slot(0).iter().all(|&b| b == 5));
    assert!(!full, "a wait spun beside one spinning wait per core");
    assert!(
        !crowded,
        "a wait spun with more searches running than cores"
    );
    assert!(spun, "a free core: the wait spins");
}

#[test]
fn busy_polling_reads_the_same_bytes_and_sleeps_once_its_budget_is_spent() {
    // reads that land within the budget: each slot holds its block
    let dir = tempfile::tempdir().unwrap();
    let mut r = UringReader::new(blocks_file(dir.path(), 8), IO_ALIGN, 4)
        .unwrap()
        .with_busy_poll(MAX_POLL_TEST_US);
    r.read_batch(&[req(3, 0), req(6, 2), req(1, 3)]).unwrap();
    assert_eq!(r.in_flight_count(), 0);
    assert!(r.slot(0).iter().all(|&b| b == 4));
    assert!(r.slot(2).iter().all(|&b| b == 7));
    assert!(r.slot(3).iter().all(|&b| b == 2));
    r.submit(req(5, 1)).unwrap();
    let mut done = Vec::new();
    r.wait_any(&mut done).unwrap();
    assert_eq!(done, vec![1]);
    assert!(r.slot(1).iter().all(|&b| b == 6));
    // a read that lands long after a 100 µs budget: the wait goes on asleep and returns
    // it, with its bytes, in both kinds of wait
    for batch in [false, true] {
        let (r, wr) = pipe_reader();
        let mut r = r.with_busy_poll(100);
        let w = std::thread::spawn(move || {
            use std::io::Write;
            std::thread::sleep(std::time::Duration::from_millis(50));
            (&wr).write_all(&[9u8; IO_ALIGN]).unwrap();
            wr
        });
        if batch {
            r.read_batch(&[ReadReq { offset: 0, slot: 1 }]).unwrap();
        } else {
            r.submit(ReadReq { offset: 0, slot: 1 }).unwrap();
            let mut done = Vec::new();
            r.wait_any(&mut done).unwrap();
            assert_eq!(done, vec![1]);
        }
        assert_eq!(r.in_flight_count(), 0, "batch = {batch}");
        assert!(r.slot(1).iter().all(|&b| b == 9), "batch = {batch}");
        drop(w.join().unwrap());
    }
}

/// A budget long enough that a read of a regular file lands within it.
const MAX_POLL_TEST_US: u32 = crate::io::MAX_BUSY_POLL_US;

#[test]
fn a_batch_with_reads_already_submitted_is_refused_without_touching_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = UringReader::new(blocks_file(dir.path(), 8), IO_ALIGN, 4).unwrap();
    r.submit(req(2, 0)).unwrap();
    let e = r.read_batch(&[req(1, 1)]).unwrap_err();
    assert!(matches!(e, EngineError::InvalidQuery { .. }), "{e}");
    let mut done = Vec::new();
    r.wait_any(&mut done).unwrap();
    assert_eq!(done, vec![0]);
    assert!(r.slot(0).iter().all(|&b| b == 3));
}
