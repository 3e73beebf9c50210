//! `ssdann build plan | partition | merge | write | status` (issue 15 part 1): the stages run
//! as separate commands, as a Slurm array would run them, give the index of one
//! `ssdann build --memory-budget`; a stage run out of order names what is missing.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::Path;

mod common;
use common::{ssdann, text};

fn ok(args: &[&str]) -> String {
    let o = ssdann(args);
    let t = text(&o);
    assert!(o.status.success(), "{args:?} failed: {t}");
    t
}

fn fails(args: &[&str], needles: &[&str]) {
    let o = ssdann(args);
    let t = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{args:?} should fail: {t}");
    for n in needles {
        assert!(t.contains(n), "error of {args:?} lacks {n:?}: {t}");
    }
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn stage_commands_give_the_index_of_one_budgeted_build() {
    let tmp = tempfile::tempdir().unwrap();
    let (n, d) = (3000usize, 16usize);
    let (vals, _) = ssdann::builder::synthetic::clustered(n, 0, d, 24, 3);
    let data = tmp.path().join("base.fbin");
    ssdann::layout::dataset::write_bin(&data, n, d, &vals).unwrap();
    let data = data.to_str().unwrap();
    // ~1,000 points per partition for 16-d f32 at R = 16 (64 MiB fixed + the partition).
    let params = [
        "-R",
        "16",
        "-L",
        "32",
        "--pq-bytes",
        "8",
        "--memory-budget",
        "0.06284",
        "--threads",
        "1",
        "-q",
    ];
    let one = tmp.path().join("one");
    let one_s = one.to_str().unwrap();
    ok(&[&["build", "--data", data, "--out", one_s], &params[..]].concat());

    let out = tmp.path().join("idx");
    let o = out.to_str().unwrap();
    fails(
        &["build", "partition", "--out", o, "--part", "0"],
        &["the plan not done yet", "ssdann build plan"],
    );
    let t = ok(&[&["build", "plan", "--data", data, "--out", o], &params[..]].concat());
    let parts: usize = t
        .split("planned ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no partition count in {t}"));
    assert!(parts >= 3, "{t}");
    assert!(t.contains(&format!("--part I` for I in 0..{parts}")), "{t}");
    let part = |p: usize| {
        [
            "build",
            "partition",
            "--out",
            o,
            "--part",
            &p.to_string(),
            "--threads",
            "1",
            "-q",
        ]
        .map(String::from)
    };
    let run = |args: [String; 9]| ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    fails(
        &[
            "build",
            "partition",
            "--out",
            o,
            "--part",
            &parts.to_string(),
        ],
        &["--part", &format!("the plan has {parts} partitions")],
    );
    assert!(run(part(1)).contains(&format!("partition 1 of {parts}")));
    assert!(run(part(1)).contains("already done"));
    assert_eq!(
        ok(&["build", "status", "--out", o, "--count"]),
        format!("{parts}\n")
    );
    let status = ok(&["build", "status", "--out", o]);
    assert!(status.contains(&format!("1 built of {parts}")), "{status}");
    assert!(status.contains("to build: 0 2"), "{status}");
    assert!(status.contains("points per partition"), "{status}");
    fails(
        &["build", "merge", "--out", o],
        &["partition graphs 0, 2", "ssdann build partition"],
    );
    fails(
        &["build", "write", "--out", o],
        &["merged.graph", "ssdann build merge"],
    );
    for p in (0..parts).rev() {
        run(part(p));
    }
    ok(&["build", "merge", "--out", o, "--threads", "1", "-q"]);
    assert!(ok(&["build", "status", "--out", o]).contains("merge       done"));
    let t = ok(&["build", "write", "--out", o, "--threads", "1", "-q"]);
    assert!(t.contains(&format!("{parts} partitions")), "{t}");
    assert_eq!(
        files(&out),
        files(&one),
        "the staged index differs from the one-process build"
    );
    ok(&["verify", o]);
}
