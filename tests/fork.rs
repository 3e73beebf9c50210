//! Fork safety (issue 11, part 4): an `Index` opened with the io_uring backend and then used
//! in a forked child (Python multiprocessing with fork, DataLoader workers, gunicorn
//! --preload) answers exactly as in the parent and refuses updates there; a `UringReader`
//! used after fork returns an error instead of touching the parent's ring.
//!
//! Each test forks; the child runs a closure and `_exit`s with a code that says what it
//! found, and the parent asserts that code. The tests take one lock so that no other test
//! thread of this binary is inside the engine when one of them forks.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use ssdann::engine::io::{ReadReq, SectorFile, SectorReader, UringReader, IO_ALIGN};
use ssdann::engine::{EngineError, Index, OpenOptions, SearchParams};
use std::sync::Mutex;

const D: usize = 16;

/// One forking test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Exit codes of the children.
const OK: i32 = 0;
const SEARCH_FAILED: i32 = 2;
const WRONG_NEIGHBOURS: i32 = 3;
const INSERT_NOT_REFUSED: i32 = 4;
const NO_FORK_ERROR: i32 = 5;
const PANICKED: i32 = 101;

fn explain(code: i32) -> &'static str {
    match code {
        OK => "ok",
        SEARCH_FAILED => "a search failed in the child",
        WRONG_NEIGHBOURS => "the child's neighbours differ from the parent's",
        INSERT_NOT_REFUSED => "an insert in the child was not refused with NotAllowed",
        NO_FORK_ERROR => "the parent's io_uring reader did not refuse to run in the child",
        PANICKED => "the child panicked",
        _ => "unknown exit code",
    }
}

/// Forks; the child runs `child` and exits with the code it returns ([`PANICKED`] on a
/// panic) without returning into the test harness. Returns the child's exit code.
fn in_forked_child(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child runs only `child` (no lock of this binary is held by another thread:
    // see SERIAL) and leaves with `_exit`, never unwinding into the harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(PANICKED);
        // SAFETY: ends the child at once (no atexit handlers, no destructors of the
        // parent's state).
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status),
        "the child did not exit (wait status {status})"
    );
    libc::WEXITSTATUS(status)
}

fn ids(
    index: &Index,
    queries: &[f32],
    params: &SearchParams,
) -> Result<Vec<Vec<u64>>, EngineError> {
    queries
        .chunks(D)
        .map(|q| Ok(index.search(q, 10, params)?.iter().map(|n| n.id).collect()))
        .collect()
}

#[test]
fn a_forked_child_searches_like_its_parent_and_refuses_updates() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (all, queries) = ssdann::builder::synthetic::clustered(1000, 20, D, 6, 11);
    let dir = tmp.path().join("idx");
    common::build_small(&all, 1000, D, tmp.path(), &dir);
    let index = Index::open(&dir, OpenOptions::default()).unwrap();
    if index.io_backend_name() != "io_uring" {
        eprintln!("NOTE: io_uring unavailable here; the test runs on pread");
    }
    let params = SearchParams::new(40, 4);
    // the parent's pool now holds warm contexts (io_uring rings with registered buffers)
    let parent = ids(&index, &queries, &params).unwrap();
    assert_eq!(parent.len(), 20);

    let code = in_forked_child(|| {
        // twice: the second round reuses the contexts the child made in the first
        for _ in 0..2 {
            match ids(&index, &queries, &params) {
                Err(_) => return SEARCH_FAILED,
                Ok(child) if child != parent => return WRONG_NEIGHBOURS,
                Ok(_) => {}
            }
        }
        match index.insert(5000, &all[..D]) {
            Err(EngineError::NotAllowed { .. }) => {}
            _ => return INSERT_NOT_REFUSED,
        }
        match index.batch_search(&queries, 10, &params, Some(2)) {
            Err(_) => SEARCH_FAILED,
            Ok(r)
                if r.iter()
                    .zip(&parent)
                    .any(|((hits, _), p)| hits.iter().map(|n| n.id).collect::<Vec<_>>() != *p) =>
            {
                WRONG_NEIGHBOURS
            }
            Ok(_) => OK,
        }
    });
    assert_eq!(code, OK, "child: {}", explain(code));
    // the child left the parent's rings and buffers alone
    assert_eq!(ids(&index, &queries, &params).unwrap(), parent);
    index.insert(5000, &all[..D]).unwrap();
}

#[test]
fn a_uring_reader_used_after_fork_returns_an_error() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f");
    std::fs::write(&path, vec![7u8; 4 * IO_ALIGN]).unwrap();
    let file = SectorFile::open(&path).unwrap();
    let mut reader = match UringReader::new(file, IO_ALIGN, 4) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("NOTE: io_uring unavailable here ({e}); nothing to test");
            return;
        }
    };
    let req = ReadReq { offset: 0, slot: 0 };
    reader.read_batch(&[req]).unwrap();
    assert!(reader.slot(0).iter().all(|&b| b == 7));

    let code = in_forked_child(move || {
        let after_fork = |r: Result<(), EngineError>| matches!(r, Err(EngineError::Io { ref source, .. }) if source.to_string().contains("after fork"));
        if !after_fork(reader.read_batch(&[req])) || !after_fork(reader.submit(req)) {
            return NO_FORK_ERROR;
        }
        let mut done = Vec::new();
        if !after_fork(reader.wait_any(&mut done)) {
            return NO_FORK_ERROR;
        }
        reader.drain();
        drop(reader); // touches nothing the parent's ring shares
        OK
    });
    assert_eq!(code, OK, "child: {}", explain(code));
}
