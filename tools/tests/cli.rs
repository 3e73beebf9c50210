//! The `ssdann` command line: bad input gets a clear error and a non-zero exit; the
//! commands do what their help says.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{ssdann, text};

fn fbin(path: &Path, n: u32, d: u32, vals: &[f32]) {
    let mut b = n.to_le_bytes().to_vec();
    b.extend_from_slice(&d.to_le_bytes());
    vals.iter()
        .for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
    std::fs::write(path, b).unwrap();
}

/// `ssdann build --data DATA --out OUT -R 16 -L 32 -q`.
fn build_small(data: &Path, out: &Path) -> Output {
    ssdann(&[
        "build",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-R",
        "16",
        "-L",
        "32",
        "-q",
    ])
}

fn small_data(dir: &Path) -> PathBuf {
    let (n, d) = (600usize, 16usize);
    let (vals, _) = ssdann::builder::synthetic::clustered(n, 0, d, 8, 42);
    let p = dir.join("small.fbin");
    fbin(&p, n as u32, d as u32, &vals);
    p
}

/// Runs `build` and asserts it fails with exit code 2 and a message holding every `needle`.
fn build_fails(args: &[&str], needles: &[&str]) {
    let o = ssdann(&[&["build"], args].concat());
    let t = text(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "expected failure for {args:?}, got: {t}"
    );
    for n in needles {
        assert!(t.contains(n), "error for {args:?} lacks {n:?}: {t}");
    }
}

#[test]
fn bad_input_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = d.join("out");
    let o = out.to_str().unwrap();
    let missing = d.join("missing.fbin");
    build_fails(
        &["--data", missing.to_str().unwrap(), "--out", o],
        &["missing.fbin", "No such file"],
    );
    let empty = d.join("empty.fbin");
    std::fs::write(&empty, b"").unwrap();
    build_fails(
        &["--data", empty.to_str().unwrap(), "--out", o],
        &["empty.fbin", "0 bytes"],
    );
    let trunc = d.join("trunc.fbin");
    fbin(&trunc, 10, 4, &[1.0; 30]);
    build_fails(
        &["--data", trunc.to_str().unwrap(), "--out", o],
        &["trunc.fbin", "n = 10, d = 4", "168"],
    );
    let n0 = d.join("n0.fbin");
    fbin(&n0, 0, 4, &[]);
    build_fails(
        &["--data", n0.to_str().unwrap(), "--out", o],
        &["n0.fbin", "`n` = 0"],
    );
    let d0 = d.join("d0.fbin");
    fbin(&d0, 5, 0, &[]);
    build_fails(
        &["--data", d0.to_str().unwrap(), "--out", o],
        &["d0.fbin", "`d` = 0"],
    );
    let nan = d.join("nan.fbin");
    let mut v = vec![0.5f32; 40];
    v[4 * 7 + 2] = f32::NAN;
    fbin(&nan, 10, 4, &v);
    build_fails(
        &["--data", nan.to_str().unwrap(), "--out", o],
        &["nan.fbin", "row 7", "column 2"],
    );
    v[4 * 7 + 2] = f32::NEG_INFINITY;
    fbin(&nan, 10, 4, &v);
    build_fails(
        &["--data", nan.to_str().unwrap(), "--out", o],
        &["row 7", "not finite"],
    );
    let csv = d.join("data.csv");
    std::fs::write(&csv, b"1,2,3").unwrap();
    build_fails(
        &["--data", csv.to_str().unwrap(), "--out", o],
        &["data.csv", "unsupported file extension"],
    );
    assert!(!out.exists(), "a failed build left {out:?}");
}

#[test]
fn bad_parameters_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(tmp.path());
    let dp = data.to_str().unwrap();
    let out = tmp.path().join("out");
    let o = out.to_str().unwrap();
    build_fails(
        &["--data", dp, "--out", o, "--pq-bytes", "17"],
        &["--pq-bytes = 17", "1..=d (16)"],
    );
    build_fails(
        &["--data", dp, "--out", o, "--pq-bytes", "0"],
        &["--pq-bytes = 0"],
    );
    build_fails(&["--data", dp, "--out", o, "-R", "0"], &["-R = 0"]);
    build_fails(&["--data", dp, "--out", o, "-L", "0"], &["-L = 0"]);
    // (once: no upper bound, and an abort allocating 12 GB)
    build_fails(
        &["--data", dp, "--out", o, "-L", "1000000000"],
        &["invalid build parameter -L = 1000000000: must be at most 100000 (the largest L a search accepts)"],
    );
    build_fails(
        &["--data", dp, "--out", o, "--threads", "1000000"],
        &["invalid build parameter --threads = 1000000: must be in 1..=1024"],
    );
    build_fails(
        &["--data", dp, "--out", o, "-R", "32", "-L", "16"],
        &["-L = 16", "≥ R (32)"],
    );
    build_fails(
        &["--data", dp, "--out", o, "--alpha", "0.5"],
        &["--alpha = 0.5"],
    );
    let u8p = tmp.path().join("x.u8bin");
    let mut b = 4u32.to_le_bytes().to_vec();
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    std::fs::write(&u8p, b).unwrap();
    build_fails(
        &[
            "--data",
            u8p.to_str().unwrap(),
            "--out",
            o,
            "-R",
            "2",
            "-L",
            "2",
            "--metric",
            "cosine",
        ],
        &["cosine needs f32"],
    );
    assert!(!out.exists());
}

#[test]
fn build_info_verify_search_and_refuse_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(tmp.path());
    let dp = data.to_str().unwrap();
    let out = tmp.path().join("idx");
    let o = out.to_str().unwrap();
    let b = ssdann(&[
        "build",
        "--data",
        dp,
        "--out",
        o,
        "-R",
        "12",
        "-L",
        "24",
        "--pq-bytes",
        "4",
        "-q",
    ]);
    assert!(b.status.success(), "{}", text(&b));
    let t = text(&b);
    for want in [
        "PQ training",
        "Vamana pass 1",
        "Vamana pass 2",
        "writing",
        "index on disk",
        "engine RAM",
        "peak RSS",
    ] {
        assert!(t.contains(want), "summary lacks {want}: {t}");
    }
    let i = ssdann(&["info", o]);
    assert!(i.status.success());
    assert!(
        text(&i).contains("600 slots")
            && text(&i).contains("d = 16")
            && text(&i).contains("R = 12"),
        "{}",
        text(&i)
    );
    let v = ssdann(&["verify", o]);
    assert!(
        v.status.success() && text(&v).contains("OK: 18 blocks, 600 nodes"),
        "{}",
        text(&v)
    );
    build_fails(
        &["--data", dp, "--out", o, "-R", "12", "-L", "24"],
        &["already exists", "--force"],
    );
    let f = ssdann(&[
        "build",
        "--data",
        dp,
        "--out",
        o,
        "-R",
        "8",
        "-L",
        "24",
        "--pq-bytes",
        "4",
        "-q",
        "--force",
        "--graph-precision",
        "f32",
    ]);
    assert!(f.status.success(), "{}", text(&f));
    assert!(
        text(&f).contains(&format!("replacing the existing index in {o}")),
        "{}",
        text(&f)
    );
    assert!(text(&ssdann(&["info", o])).contains("R = 8"));
    // search writes one row per query with the query itself first (queries = base rows)
    let res = tmp.path().join("res.ibin");
    let s = ssdann(&[
        "search",
        "--index",
        o,
        "--queries",
        dp,
        "-k",
        "5",
        "-L",
        "20",
        "--out",
        res.to_str().unwrap(),
    ]);
    assert!(s.status.success(), "{}", text(&s));
    let bytes = std::fs::read(&res).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[0..4].try_into().unwrap()), 600);
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 5);
    let first_ids: Vec<u32> = (0..600)
        .map(|q| u32::from_le_bytes(bytes[8 + q * 20..12 + q * 20].try_into().unwrap()))
        .collect();
    let hits = first_ids
        .iter()
        .enumerate()
        .filter(|(q, &id)| id == *q as u32)
        .count();
    assert!(
        hits >= 590,
        "only {hits}/600 queries found themselves first"
    );
    // verify fails (exit 1) and names the sector after a flip
    let idx = out.join("index.ssd");
    let mut bytes = std::fs::read(&idx).unwrap();
    bytes[4096 * 7 + 100] ^= 0xff;
    std::fs::write(&idx, &bytes).unwrap();
    let v = ssdann(&["verify", o]);
    assert_eq!(v.status.code(), Some(1));
    assert!(text(&v).contains("sector 7 "), "{}", text(&v));
    // info on something that is not an index
    let i = ssdann(&["info", tmp.path().to_str().unwrap()]);
    assert_eq!(i.status.code(), Some(2));
    assert!(text(&i).contains("index.ssd"), "{}", text(&i));
}

/// `build --force` replaces an index (and says so) or an empty directory, and refuses a
/// directory holding anything else, which it leaves as it was. (Before, --force deleted
/// whatever directory --out named.)
#[test]
fn build_force_replaces_only_an_index_or_an_empty_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(tmp.path());
    let dp = data.to_str().unwrap();
    let force = |out: &Path| {
        ssdann(&[
            "build",
            "--data",
            dp,
            "--out",
            out.to_str().unwrap(),
            "-R",
            "16",
            "-L",
            "32",
            "-q",
            "--force",
        ])
    };
    let mine = tmp.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), b"my notes").unwrap();
    let o = force(&mine);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    for want in [
        mine.to_str().unwrap(),
        "not an ssdann index directory",
        "contains `notes.txt`",
        "refusing to delete it",
    ] {
        assert!(text(&o).contains(want), "lacks {want:?}: {}", text(&o));
    }
    assert_eq!(std::fs::read(mine.join("notes.txt")).unwrap(), b"my notes");
    let file = tmp.path().join("file.txt");
    std::fs::write(&file, b"mine").unwrap();
    let o = force(&file);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("it is a file"), "{}", text(&o));
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = force(&empty);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("replacing"), "{}", text(&o));
    assert!(ssdann(&["verify", empty.to_str().unwrap()])
        .status
        .success());
    // an index with pending updates is replaced, and the CLI says so
    std::fs::write(empty.join("wal.log"), b"").unwrap();
    let o = force(&empty);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "replacing the existing index in {}",
            empty.display()
        )),
        "{}",
        text(&o)
    );
    assert!(!empty.join("wal.log").exists());
    assert!(ssdann(&["verify", empty.to_str().unwrap()])
        .status
        .success());
}

/// The builder's list of the files an index directory may hold (what `--force` may delete)
/// names the engine's files.
#[test]
fn index_dir_file_names_include_the_engines() {
    use ssdann::builder::build::is_index_file_name;
    let wal = ssdann::engine::wal::WAL_FILE;
    let journal = ssdann::engine::merge::JOURNAL_FILE;
    for name in [
        wal,
        &format!("{wal}.trim"),
        journal,
        ssdann::builder::build::INDEX_FILE,
        ssdann::layout::pq::PQ_PIVOTS_FILE,
        ssdann::layout::pq::PQ_CODES_FILE,
        ssdann::layout::labels::LABELS_FILE,
        ssdann::layout::navigation::NAVIGATION_FILE,
        &format!("{}.merge", ssdann::layout::labels::LABELS_FILE),
        &format!("{}.merge", ssdann::layout::pq::PQ_CODES_FILE),
    ] {
        assert!(is_index_file_name(name), "{name}");
    }
    for name in ["notes.txt", "index.ssd.bak", ".merge", "wal"] {
        assert!(!is_index_file_name(name), "{name}");
    }
}

/// Before, `ssdann info DIR | head -1` panicked ("failed printing to stdout: Broken pipe")
/// once the reader had gone: Rust starts with SIGPIPE ignored.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("idx");
    assert!(build_small(&small_data(tmp.path()), &out).status.success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssdann"))
        .args(["info", out.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes before the first line is written
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}: {err}");
}

#[test]
fn killed_build_leaves_nothing_info_would_take_for_an_index() {
    let tmp = tempfile::tempdir().unwrap();
    let (n, d) = (20_000usize, 64usize);
    let vals: Vec<f32> = (0..n * d)
        .map(|i| ((i * 2654435761usize) % 10007) as f32 / 10007.0)
        .collect();
    let data = tmp.path().join("big.fbin");
    fbin(&data, n as u32, d as u32, &vals);
    let out = tmp.path().join("idx");
    // killed once its temporary directory exists (the build is under way), not after a
    // guessed sleep; it must still have been running
    let building = || {
        std::fs::read_dir(tmp.path()).unwrap().any(|e| {
            let name = e.unwrap().file_name();
            name.to_string_lossy().starts_with(".idx.building-")
        })
    };
    let running = kill_9_after(
        &[
            "build",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--threads",
            "1",
            "-q",
        ],
        building,
        std::time::Duration::ZERO,
    );
    assert!(
        running,
        "the build ended before it was killed: the test proves nothing"
    );
    assert!(!out.exists(), "the interrupted build left {out:?} in place");
    let i = ssdann(&["info", out.to_str().unwrap()]);
    assert_ne!(i.status.code(), Some(0));
    // the next build succeeds and replaces nothing it should not
    let b = build_small(&data, &out);
    assert!(b.status.success(), "{}", text(&b));
    assert!(ssdann(&["verify", out.to_str().unwrap()]).status.success());
}

#[test]
fn gt_matches_the_shipped_ground_truth() {
    let root = std::env::var_os("SSDANN_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    let dir = root.join("pypi-minilm-100k");
    let tmp = tempfile::tempdir().unwrap();
    let (base, queries, gt) = if dir.join("gt10k.ibin").exists() {
        // first 300 queries of query.fbin against base10k.fbin, compared with gt10k.ibin
        let q = std::fs::read(dir.join("query.fbin")).unwrap();
        let d = u32::from_le_bytes(q[4..8].try_into().unwrap()) as usize;
        let mut sub = 300u32.to_le_bytes().to_vec();
        sub.extend_from_slice(&q[4..8]);
        sub.extend_from_slice(&q[8..8 + 300 * d * 4]);
        let qp = tmp.path().join("q300.fbin");
        std::fs::write(&qp, sub).unwrap();
        (dir.join("base10k.fbin"), qp, dir.join("gt10k.ibin"))
    } else {
        eprintln!(
            "NOTE: no shared data; checking gt on a generated set against a brute-force reference"
        );
        let data = small_data(tmp.path());
        let gt = tmp.path().join("ref.ibin");
        let o = ssdann(&[
            "gt",
            "--base",
            data.to_str().unwrap(),
            "--queries",
            data.to_str().unwrap(),
            "-k",
            "100",
            "--out",
            gt.to_str().unwrap(),
            "--chunk-rows",
            "1000000",
        ]);
        assert!(o.status.success());
        (data.clone(), data, gt)
    };
    let out = tmp.path().join("gt.ibin");
    let o = ssdann(&[
        "gt",
        "--base",
        base.to_str().unwrap(),
        "--queries",
        queries.to_str().unwrap(),
        "-k",
        "100",
        "--out",
        out.to_str().unwrap(),
        "--chunk-rows",
        "3333",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let ours = ssdann::GroundTruth::read(&out).unwrap();
    let shipped = ssdann::GroundTruth::read(&gt).unwrap();
    let mut same = 0;
    let mut total = 0;
    for q in 0..ours.nq {
        for j in 0..100 {
            total += 1;
            let (a, b) = (ours.ids[q * 100 + j], shipped.ids[q * 100 + j]);
            if a == b {
                same += 1;
            } else {
                // only near-ties may be ordered differently (f32 here, f64 in the shipped file)
                let (da, db) = (ours.distances[q * 100 + j], shipped.distances[q * 100 + j]);
                assert!(
                    (da - db).abs() <= 1e-5 * (1.0 + db.abs()),
                    "query {q} rank {j}: id {a} ({da}) vs {b} ({db})"
                );
            }
        }
    }
    assert!(
        same as f64 >= 0.999 * total as f64,
        "{same}/{total} ids agree"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Spawns `ssdann ARGS`, waits until `ready()` (or 20 s), sleeps `delay`, then kill -9s it.
/// Returns whether it was still running when killed.
fn kill_9_after(args: &[&str], ready: impl Fn() -> bool, delay: std::time::Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssdann"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !ready() && t.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    running
}

#[test]
fn kill_9_during_a_merge_leaves_the_pre_or_post_merge_index() {
    use ssdann::engine::{Index, OpenOptions, SearchParams};
    let tmp = tempfile::tempdir().unwrap();
    let (n, d) = (3000usize, 32usize);
    let (all, _) = ssdann::builder::synthetic::clustered(n + 300, 0, d, 12, 7);
    let data = tmp.path().join("b.fbin");
    fbin(&data, n as u32, d as u32, &all[..n * d]);
    let prepared = tmp.path().join("prepared");
    let params = ssdann::BuildParams {
        max_degree: 24,
        build_l: 48,
        pq_bytes: Some(8),
        threads: Some(2),
        ..Default::default()
    };
    ssdann::build_index(&data, &prepared, &params, &ssdann::NoProgress).unwrap();
    {
        let idx = Index::open(&prepared, OpenOptions::default()).unwrap();
        idx.delete_batch(&(0..n as u64).step_by(10).collect::<Vec<_>>())
            .unwrap();
        let items: Vec<(u64, &[f32])> = (0..300)
            .map(|i| (50_000 + i as u64, &all[(n + i) * d..(n + i + 1) * d]))
            .collect();
        idx.insert_batch(&items).unwrap();
    }
    let p = SearchParams::new(48, 4);
    let (mut discarded, mut finished_by_open, mut completed) = (0, 0, 0);
    // Right after the journal appears: still computing (pre-commit). Some ms after the
    // staged PQ codes appear (written just before the commit): applying in place, 40 ms per
    // batch of 32 blocks. 3 s: done before the kill.
    let runs = [
        ("merge.journal", 0u64),
        ("merge.journal", 0),
        ("pq_codes.bin.merge", 30),
        ("pq_codes.bin.merge", 90),
        ("pq_codes.bin.merge", 150),
        ("merge.journal", 3000),
    ];
    for (i, (marker, delay_ms)) in runs.into_iter().enumerate() {
        let dir = tmp.path().join(format!("run{i}"));
        copy_dir(&prepared, &dir);
        let journal = dir.join("merge.journal");
        let marker = dir.join(marker);
        let args = [
            "merge",
            "--index",
            dir.to_str().unwrap(),
            "--apply-pause-ms",
            "40",
        ];
        let was_running = kill_9_after(
            &args,
            || marker.exists(),
            std::time::Duration::from_millis(delay_ms),
        );
        let journal_left = journal.exists();
        let idx = Index::open(&dir, OpenOptions::default()).unwrap();
        match idx.pending() {
            (300, 300, 600) => discarded += 1,
            (0, 0, 0) if journal_left => finished_by_open += 1,
            (0, 0, 0) => completed += 1,
            other => panic!("kill after {delay_ms} ms left pending {other:?}"),
        }
        assert!(was_running || !journal_left);
        // same contents either way: deletes gone, inserts found at their exact vectors
        for l in (0..n as u64).step_by(10).take(30) {
            let got = idx
                .search(&all[l as usize * d..(l as usize + 1) * d], 10, &p)
                .unwrap();
            assert!(
                got.iter().all(|h| h.id % 10 != 0 || h.id >= 50_000),
                "run {i}: deleted label returned: {got:?}"
            );
        }
        let found = (0..300)
            .filter(|&j| {
                let v = &all[(n + j) * d..(n + j + 1) * d];
                let top = idx.search(v, 1, &p).unwrap()[0];
                // 0 for exact records; f16 records round each coordinate to 11 bits
                let norm2: f32 = v.iter().map(|x| x * x).sum();
                top.id == 50_000 + j as u64 && top.distance <= 2.5e-7 * norm2
            })
            .count();
        assert!(found >= 295, "run {i}: {found}/300 inserted points found");
        assert_eq!(idx.live_count(), n);
        drop(idx);
        let v = ssdann(&["verify", dir.to_str().unwrap()]);
        assert!(v.status.success(), "run {i}: {}", text(&v));
    }
    eprintln!("kill -9 outcomes: {discarded} discarded, {finished_by_open} finished by open, {completed} completed");
    assert!(
        discarded > 0 && finished_by_open > 0,
        "kills must land on both sides of the commit: {discarded} / {finished_by_open}"
    );
}

#[test]
fn kill_9_during_inserts_keeps_a_prefix_of_them() {
    use ssdann::engine::{Index, OpenOptions, SearchParams};
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(tmp.path());
    let idx_dir = tmp.path().join("idx");
    let b = build_small(&data, &idx_dir);
    assert!(b.status.success(), "{}", text(&b));
    let (m, d) = (5000usize, 16usize);
    let (new, _) = ssdann::builder::synthetic::clustered(m, 0, d, 8, 4242);
    let new_path = tmp.path().join("new.fbin");
    fbin(&new_path, m as u32, d as u32, &new);
    let wal = idx_dir.join("wal.log");
    let args = [
        "insert",
        "--index",
        idx_dir.to_str().unwrap(),
        "--data",
        new_path.to_str().unwrap(),
        "--sync",
        "always",
    ];
    // killed once the WAL holds some records: one insert per fsync, so 5,000 take a while
    let was_running = kill_9_after(
        &args,
        || std::fs::metadata(&wal).is_ok_and(|md| md.len() > 50_000),
        std::time::Duration::from_millis(20),
    );
    assert!(was_running, "the inserts finished before the kill: raise m");
    let idx = Index::open(&idx_dir, OpenOptions::default()).unwrap();
    let (k, tomb, records) = idx.pending();
    assert!(
        k > 0 && k < m && tomb == 0 && records == k as u64,
        "pending after the kill: {:?}",
        idx.pending()
    );
    // exactly labels 600..600+k, each at its own vector
    let p = SearchParams::new(32, 4);
    for j in (0..k).step_by((k / 50).max(1)) {
        let got = idx.search(&new[j * d..(j + 1) * d], 1, &p).unwrap();
        assert_eq!(
            (got[0].id, got[0].distance),
            (600 + j as u64, 0.0),
            "insert {j} of {k}"
        );
    }
    assert_eq!(idx.max_label(), Some(599 + k as u64));
    let info = text(&ssdann(&["info", idx_dir.to_str().unwrap()]));
    assert!(
        info.contains(&format!("updates          {k} pending WAL records")),
        "{info}"
    );
    assert_eq!(idx.live_count(), 600 + k);
}

/// Runs `ssdann ARGS` with its address space capped at 8 GiB, so that a regression that
/// allocates for a huge k, L or W aborts at once instead of swapping the machine.
fn ssdann_capped(args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 8388608 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_ssdann"))
        .args(args)
        .output()
        .expect("run ssdann under sh")
}

/// k, L and W are checked against the documented limits before the index is opened or a
/// buffer is sized by them. (Before, `-k 1000000000` and `-W 1000000000` aborted on a failed
/// allocation, and `eval --nq 0` printed NaN recall and exited 0.)
#[test]
fn search_limits_are_checked_before_anything_is_allocated() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(tmp.path());
    let dp = data.to_str().unwrap();
    let idx = tmp.path().join("idx");
    let o = idx.to_str().unwrap();
    assert!(build_small(&data, &idx).status.success());
    let res = tmp.path().join("res.ibin");
    let r = res.to_str().unwrap();
    let search = |extra: &[&str]| {
        ssdann_capped(
            &[
                &["search", "--index", o, "--queries", dp, "--out", r],
                extra,
            ]
            .concat(),
        )
    };
    for (extra, want) in [
        (
            &["-k", "1000000000", "-L", "1000000000"][..],
            "-k 1000000000: must be in 1..=10000",
        ),
        (&["-k", "1000000000"], "-k 1000000000"),
        (&["-W", "1000000000"], "-W 1000000000: must be in 1..=1024"),
        (
            &["-L", "1000000000"],
            "-L 1000000000: must be in k..=100000",
        ),
        (
            &["-k", "50", "-L", "20"],
            "-L 20: must be in k..=100000 (k = 50)",
        ),
        (&["-k", "0"], "-k 0"),
    ] {
        let s = search(extra);
        assert_eq!(s.status.code(), Some(2), "{extra:?}: {}", text(&s));
        assert!(text(&s).contains(want), "{extra:?}: {}", text(&s));
        assert!(!res.exists());
    }
    // the limits themselves are accepted, and --help states them
    let s = search(&["-k", "600", "-L", "600", "-W", "1024"]);
    assert!(s.status.success(), "{}", text(&s));
    let help = text(&ssdann(&["search", "--help"]));
    for want in ["1..=10000", "k..=100000", "1..=1024", ".u64bin"] {
        assert!(help.contains(want), "help lacks {want}: {help}");
    }

    let gt = tmp.path().join("gt.ibin");
    let g = ssdann(&[
        "gt",
        "--base",
        dp,
        "--queries",
        dp,
        "-k",
        "10",
        "--out",
        gt.to_str().unwrap(),
    ]);
    assert!(g.status.success(), "{}", text(&g));
    let eval = |extra: &[&str]| {
        ssdann_capped(
            &[
                &[
                    "eval",
                    "--index",
                    o,
                    "--queries",
                    dp,
                    "--gt",
                    gt.to_str().unwrap(),
                    "--threads",
                    "1",
                ],
                extra,
            ]
            .concat(),
        )
    };
    for (extra, want) in [
        (&["--nq", "0"][..], "--nq 0: must be at least 1"),
        (&["-k", "1000000000"], "-k 1000000000"),
        (&["-W", "1000000000"], "-W 1000000000"),
        (&["-L", "10,1000000000"], "-L 1000000000"),
    ] {
        let e = eval(extra);
        assert_eq!(e.status.code(), Some(2), "{extra:?}: {}", text(&e));
        assert!(text(&e).contains(want), "{extra:?}: {}", text(&e));
    }
    let e = eval(&["--nq", "50", "-L", "20"]);
    assert!(
        e.status.success() && !text(&e).contains("NaN"),
        "{}",
        text(&e)
    );
}

/// `eval` with a ground truth without distances (every TEXMEX `.ivecs`): strict recall is
/// printed, the tie-aware column says n/a, and the JSON holds null for it. (Before, eval
/// panicked slicing the empty distance array.)
/// The small data set in `dir`, its index (`dir/idx`) and its exact top-10 of its own rows
/// as queries (`dir/gt.ibin`).
fn small_index_and_gt(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let data = small_data(dir);
    let idx = dir.join("idx");
    assert!(build_small(&data, &idx).status.success());
    let gt = dir.join("gt.ibin");
    let d = data.to_str().unwrap();
    let g = ssdann(&[
        "gt",
        "--base",
        d,
        "--queries",
        d,
        "-k",
        "10",
        "--out",
        gt.to_str().unwrap(),
    ]);
    assert!(g.status.success(), "{}", text(&g));
    (data, idx, gt)
}

#[test]
fn eval_with_an_ivecs_ground_truth_prints_strict_recall_and_no_ties() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, idx, ibin) = small_index_and_gt(tmp.path());
    let dp = data.to_str().unwrap();
    let o = idx.to_str().unwrap();
    // the same ids as .ivecs: per row, i32 k then k i32 ids
    let gt = ssdann::layout::GroundTruth::read(&ibin).unwrap();
    assert_eq!((gt.nq, gt.k, gt.distances.len()), (600, 10, 6000));
    let mut iv = Vec::new();
    for q in 0..gt.nq {
        iv.extend_from_slice(&10i32.to_le_bytes());
        gt.row(q)
            .iter()
            .for_each(|&id| iv.extend_from_slice(&id.to_le_bytes()));
    }
    let ivecs = tmp.path().join("gt.ivecs");
    std::fs::write(&ivecs, &iv).unwrap();
    let run = |g: &Path, json: &Path| {
        let e = ssdann(&[
            "eval",
            "--index",
            o,
            "--queries",
            dp,
            "--gt",
            g.to_str().unwrap(),
            "--threads",
            "1",
            "-L",
            "40",
            "--nq",
            "100",
            "--json",
            json.to_str().unwrap(),
        ]);
        let t = text(&e);
        assert!(e.status.success(), "{t}");
        let row: Vec<String> = t
            .lines()
            .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
            .find(|w| w.len() == 14 && w[0] == "1" && w[1] == "40")
            .unwrap_or_else(|| panic!("no row for 1 thread, L = 40: {t}"));
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
        (
            t,
            row,
            j["rows"][0]["recall"].clone(),
            j["rows"][0]["recall_ties"].clone(),
        )
    };
    let (t_iv, row_iv, rec_iv, ties_iv) = run(&ivecs, &tmp.path().join("iv.json"));
    let (t_ib, row_ib, rec_ib, ties_ib) = run(&ibin, &tmp.path().join("ib.json"));
    assert!(
        t_iv.contains(
            "note: the ground truth has no distances (.ivecs or an ids-only .ibin): \
                       +ties (recall with distance ties counted) is n/a"
        ),
        "{t_iv}"
    );
    assert!(!t_ib.contains("no distances"), "{t_ib}");
    assert_eq!(row_iv[3], "n/a");
    assert_eq!(ties_iv, serde_json::Value::Null);
    // the same search, the same ids: the same strict recall either way, and a real one
    assert_eq!((&row_iv[2], &rec_iv), (&row_ib[2], &rec_ib));
    let recall: f64 = row_iv[2].parse().unwrap();
    assert!(recall >= 0.9, "recall@10 at L = 40 on 600 points: {recall}");
    assert!(ties_ib.as_f64().unwrap() >= recall, "{ties_ib}");
}

/// Labels above u32: `search --out X.ibin` refuses them (naming the label and the query)
/// and `--out X.u64bin` keeps them whole. (Before, the .ibin held the label cut to 32 bits:
/// 2^32 + 5 was written as 5.)
#[test]
fn search_output_never_truncates_a_label() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(tmp.path());
    let idx = tmp.path().join("idx");
    let o = idx.to_str().unwrap();
    assert!(build_small(&data, &idx).status.success());
    let d = 16usize;
    let v: Vec<f32> = (0..d).map(|i| 40.0 + i as f32).collect(); // far from the clusters
    let one = tmp.path().join("one.fbin");
    fbin(&one, 1, d as u32, &v);
    let big = (1u64 << 32) + 5;
    let labels = tmp.path().join("labels.txt");
    std::fs::write(&labels, format!("{big}\n")).unwrap();
    let ins = ssdann(&[
        "insert",
        "--index",
        o,
        "--data",
        one.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--sync",
        "never",
    ]);
    assert!(ins.status.success(), "{}", text(&ins));
    let search = |out: &Path| {
        ssdann(&[
            "search",
            "--index",
            o,
            "--queries",
            one.to_str().unwrap(),
            "-k",
            "3",
            "-L",
            "20",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let ibin = tmp.path().join("r.ibin");
    let s = search(&ibin);
    assert_eq!(s.status.code(), Some(2), "{}", text(&s));
    assert!(
        text(&s).contains("query row 0, rank 0: label 4294967301 does not fit")
            && text(&s).contains(".u64bin"),
        "{}",
        text(&s)
    );
    assert!(!ibin.exists());
    let u64bin = tmp.path().join("r.u64bin");
    let s = search(&u64bin);
    assert!(s.status.success(), "{}", text(&s));
    let b = std::fs::read(&u64bin).unwrap();
    assert_eq!(b.len(), 8 + 3 * 8 + 3 * 4);
    assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 1);
    assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 3);
    assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), big);
    assert_eq!(f32::from_le_bytes(b[32..36].try_into().unwrap()), 0.0);
    let rest: Vec<u64> = (1..3)
        .map(|j| u64::from_le_bytes(b[8 + 8 * j..16 + 8 * j].try_into().unwrap()))
        .collect();
    assert!(rest.iter().all(|&l| l < 600), "{rest:?}");
}

/// A small index `dir/idx` (built from [`small_data`]) and a file `dir/one.fbin` holding one
/// vector of its dimension (16) to insert.
fn small_index_and_one_vector(dir: &Path) -> (PathBuf, PathBuf) {
    let data = small_data(dir);
    let idx = dir.join("idx");
    assert!(build_small(&data, &idx).status.success());
    let one = dir.join("one.fbin");
    fbin(&one, 1, 16, &[0.25; 16]);
    (idx, one)
}

/// `insert --labels` and `delete --labels` refuse the reserved label 2^64 − 1 (the free-slot
/// mark), naming the file, the line and the value, and change nothing. (Before, the CLI
/// passed it on.)
#[test]
fn label_files_refuse_the_reserved_label() {
    let tmp = tempfile::tempdir().unwrap();
    let (idx, one) = small_index_and_one_vector(tmp.path());
    let o = idx.to_str().unwrap();
    let labels = tmp.path().join("labels.txt");
    let lp = labels.to_str().unwrap();
    std::fs::write(&labels, "# reserved\n18446744073709551615\n").unwrap();
    let want = format!("{lp}: line 2: label 18446744073709551615 is reserved");
    for args in [
        &[
            "insert",
            "--index",
            o,
            "--data",
            one.to_str().unwrap(),
            "--labels",
            lp,
        ][..],
        &["delete", "--index", o, "--labels", lp],
    ] {
        let r = ssdann(args);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {}", text(&r));
        assert!(text(&r).contains(&want), "{args:?}: {}", text(&r));
    }
    assert!(
        text(&ssdann(&["info", o])).contains("updates          none pending"),
        "{}",
        text(&ssdann(&["info", o]))
    );
}

/// `info` cross-checks the header against the sector file's length and the PQ and label
/// files (issue 11): files of another index are named, and the exit status is non-zero.
#[test]
fn info_cross_checks_the_files_against_the_header() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(tmp.path());
    let a = tmp.path().join("a");
    assert!(build_small(&data, &a).status.success());
    let o = ssdann(&["info", a.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("files            consistent"),
        "{}",
        text(&o)
    );
    // the RAM an open index holds, by structure: a reordered build's labels are mapped from
    // labels.bin (8 bytes per point of file, none held)
    let t = text(&o);
    let ram = t
        .lines()
        .find(|l| l.starts_with("RAM at open"))
        .unwrap_or("");
    assert!(
        ram.contains("labels mapped from labels.bin")
            && ram.contains("8.0 B/point, not held")
            && ram.contains("label map"),
        "{t}"
    );
    // PQ codes and labels of a smaller index, and a truncated sector file
    let (vals, _) = ssdann::builder::synthetic::clustered(300, 0, 16, 8, 7);
    let small = tmp.path().join("s.fbin");
    fbin(&small, 300, 16, &vals);
    let b = tmp.path().join("b");
    assert!(build_small(&small, &b).status.success());
    for f in ["pq_codes.bin", "labels.bin"] {
        std::fs::copy(b.join(f), a.join(f)).unwrap();
    }
    let ssd = a.join("index.ssd");
    let len = std::fs::metadata(&ssd).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&ssd)
        .unwrap()
        .set_len(len - 4096)
        .unwrap();
    let o = ssdann(&["info", a.to_str().unwrap()]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("pq_codes.bin: n = Some(300), index.ssd has 600")
            && t.contains("labels.bin: n = Some(300), index.ssd has 600")
            && t.contains(&format!("file is {} bytes", len - 4096))
            && t.contains("the index files disagree (3 problem(s) above)"),
        "{t}"
    );
}

/// One rule for index.ssd's length (issue 27): a file one sector longer than its header
/// implies is refused by `info`, `verify`, a read-only open (`search`) and a read-write open
/// (`merge`), all with the same error naming the file and both lengths (once `info` said
/// "files consistent" and search and merge went on).
#[test]
fn a_sector_file_longer_than_its_header_is_refused_by_info_verify_and_every_open() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(tmp.path());
    let a = tmp.path().join("a");
    assert!(build_small(&data, &a).status.success());
    let ssd = a.join("index.ssd");
    let len = std::fs::metadata(&ssd).unwrap().len();
    let slots = std::fs::read(&ssd).unwrap();
    let (h, _) = ssdann::layout::IndexHeader::choose(&ssd, &slots[..8192]).unwrap();
    assert_eq!(h.file_bytes(), len);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&ssd)
        .unwrap()
        .set_len(len + 4096)
        .unwrap();
    let want = format!(
        "{}: file is {} bytes but the header in force (generation 1, n = 600, {} blocks) \
         implies {len} bytes (truncated, extended or wrong header?)",
        ssd.display(),
        len + 4096,
        h.layout.blocks_for(600)
    );
    let (ad, dp) = (a.to_str().unwrap(), data.to_str().unwrap());
    let r = tmp.path().join("r.ibin");
    let runs = [
        ("info", ssdann(&["info", ad])),
        ("verify", ssdann(&["verify", ad])),
        (
            "search",
            ssdann(&[
                "search",
                "--index",
                ad,
                "--queries",
                dp,
                "--out",
                r.to_str().unwrap(),
            ]),
        ),
        ("merge", ssdann(&["merge", "--index", ad, "-q"])),
    ];
    for (cmd, o) in runs {
        let t = text(&o);
        assert!(!o.status.success(), "{cmd}: {t}");
        assert!(t.contains(&want), "{cmd}: {t}");
        assert!(!t.contains("files            consistent"), "{cmd}: {t}");
    }
    // nothing was changed by any of them
    assert_eq!(std::fs::metadata(&ssd).unwrap().len(), len + 4096);
}

/// Issue 28: `search` and `eval` take the same search parameters (W, early termination, the
/// navigation graph, busy polling) and, given the same ones, find the same neighbours: the
/// recall of `search`'s output equals `eval`'s.
#[test]
fn search_and_eval_take_the_same_parameters_and_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, idx, gtp) = small_index_and_gt(tmp.path());
    let dp = data.to_str().unwrap();
    let o = idx.to_str().unwrap();
    let flags = [
        "-W",
        "32",
        "--termination-ratio",
        "1.2",
        "--nav-nodes",
        "60",
        "--busy-poll-us",
        "200",
    ];
    let out = tmp.path().join("res.ibin");
    let mut args = vec![
        "search",
        "--index",
        o,
        "--queries",
        dp,
        "-L",
        "40",
        "--threads",
        "1",
    ];
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend(flags);
    let s = ssdann(&args);
    assert!(s.status.success(), "{}", text(&s));
    let found = ssdann::layout::GroundTruth::read(&out).unwrap();
    let truth = ssdann::layout::GroundTruth::read(&gtp).unwrap();
    let hits: usize = (0..found.nq)
        .map(|q| {
            found
                .row(q)
                .iter()
                .filter(|id| truth.row(q).contains(id))
                .count()
        })
        .sum();
    let search_recall = hits as f64 / (found.nq * 10) as f64;
    let json = tmp.path().join("eval.json");
    let (g, js) = (gtp.to_str().unwrap(), json.to_str().unwrap());
    let eval_args = [
        "eval",
        "--index",
        o,
        "--queries",
        dp,
        "--gt",
        g,
        "-L",
        "40",
        "--threads",
        "1",
        "--json",
        js,
    ];
    let mut args = eval_args.to_vec();
    args.extend(flags);
    let e = ssdann(&args);
    assert!(e.status.success(), "{}", text(&e));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let eval_recall = j["rows"][0]["recall"].as_f64().unwrap();
    assert!(
        (search_recall - eval_recall).abs() < 1e-9,
        "search {search_recall} vs eval {eval_recall}"
    );
    assert!(eval_recall >= 0.9, "{eval_recall}");
    assert_eq!(j["params"]["W"], 32);
    assert_eq!(
        j["params"]["termination_ratio"]
            .as_f64()
            .map(|r| (r * 100.0).round()),
        Some(120.0)
    );
    // the index's own ratio is the default; `info` states it and `off` turns it off
    let info = text(&ssdann(&["info", o]));
    let line = info
        .lines()
        .find(|l| l.starts_with("search defaults"))
        .unwrap_or_else(|| panic!("{info}"));
    let h = ssdann::engine::Index::open(&idx, Default::default()).unwrap();
    let r = h.default_termination_ratio().unwrap();
    assert!(
        line.contains(&format!("early termination r = {r:.3}")),
        "{line}"
    );
    drop(h);
    for (flag, want) in [(None, "index"), (Some("off"), "off")] {
        let mut a = eval_args.to_vec();
        a.extend(flag.map(|f| ["--termination-ratio", f]).iter().flatten());
        let e = ssdann(&a);
        assert!(e.status.success(), "{}", text(&e));
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(j["params"]["termination_ratio"], want);
        let head = if want == "off" {
            "termination off".to_string()
        } else {
            format!("termination r = {r:.3}")
        };
        assert!(text(&e).contains(&head), "{}", text(&e));
    }
    // the same refusals on both: a ratio below 1, a W past 1,024
    for bad in [["--termination-ratio", "0.5"], ["-W", "1025"]] {
        for cmd in ["search", "eval"] {
            let mut args = vec![cmd, "--index", o, "--queries", dp, "-L", "40"];
            if cmd == "search" {
                args.extend(["--out", out.to_str().unwrap()]);
            } else {
                args.extend(["--gt", gtp.to_str().unwrap()]);
            }
            args.extend(bad);
            let r = ssdann(&args);
            let t = text(&r);
            assert!(!r.status.success(), "{cmd} {bad:?}: {t}");
            let name = if bad[0] == "-W" {
                "W"
            } else {
                "--termination-ratio"
            };
            assert!(t.contains(name), "{cmd} {bad:?}: {t}");
        }
    }
}

/// The engine's log records reach the command's stderr (the `log` facade, `init_logging`):
/// a torn WAL tail truncated at open is a `warning:` line naming the file and the bytes;
/// `SSDANN_LOG=off` silences it.
#[test]
fn library_warnings_reach_stderr_and_ssdann_log_sets_the_level() {
    let tmp = tempfile::tempdir().unwrap();
    let (idx, one) = small_index_and_one_vector(tmp.path());
    let o = idx.to_str().unwrap();
    // each insert continues after the largest label: no label file needed
    let insert = |log: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ssdann"));
        c.args(["insert", "--index", o, "--data", one.to_str().unwrap()]);
        match log {
            Some(level) => c.env("SSDANN_LOG", level),
            None => c.env_remove("SSDANN_LOG"), // the default level, whatever the caller's
        };
        c.output().unwrap()
    };
    let wal = idx.join("wal.log");
    let tear = || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&wal).unwrap();
        f.write_all(&[0xAB; 3]).unwrap(); // an append that never completed
    };
    assert!(insert(None).status.success());
    tear();
    let r = insert(None);
    assert!(r.status.success(), "{}", text(&r));
    let want = format!(
        "warning: {}: truncating a torn tail of 3 bytes",
        wal.display()
    );
    assert!(text(&r).contains(&want), "{}", text(&r));
    tear();
    let quiet = insert(Some("off"));
    assert!(quiet.status.success(), "{}", text(&quiet));
    assert!(!text(&quiet).contains("torn tail"), "{}", text(&quiet));
}
