//! The partitioned build run stage by stage (`ssdann build plan | partition | merge |
//! write`, issue 15 part 1): the same index as the one-process build, partition jobs in any
//! order and run again harmlessly, and each stage's refusal when what it needs is missing,
//! changed or held by another process.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use ssdann_builder::partitioned::{plan_partitioned, read_plan, run_stage, Stage};
use ssdann_builder::{build_index, BuildError, BuildParams, NoProgress};
use ssdann_layout::Metric;
use std::path::Path;

mod common;
use common::{budget_for, files, params, vamana_per_point, write_f32};

fn budgeted(threads: usize) -> BuildParams {
    BuildParams {
        memory_budget_bytes: Some(budget_for(1000, vamana_per_point(32, 16))),
        threads: Some(threads),
        reorder: true,
        ..params(16, Metric::L2)
    }
}

fn stage(out: &Path, s: Stage) -> Result<ssdann_builder::partitioned::StageReport, BuildError> {
    run_stage(out, s, Some(1), false, &NoProgress)
}

#[test]
fn stages_run_one_by_one_give_the_one_process_builds_index() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _, _) = write_f32(tmp.path(), "base.fbin", 3000, 16, 3);
    let p = budgeted(1); // one thread: deterministic
    let reference = tmp.path().join("ref");
    let rep = build_index(&path, &reference, &p, &NoProgress).unwrap();
    assert!(rep.partitions >= 4, "{} partitions", rep.partitions);

    let out = tmp.path().join("out");
    let plan = plan_partitioned(&path, &out, &p, &NoProgress).unwrap();
    assert_eq!(plan.stage, Stage::Plan);
    assert_eq!(plan.partitions, rep.partitions);
    assert_eq!(plan.work_dir, tmp.path().join(".out.partitioned"));
    let status = ssdann_builder::partitioned::plan_status(&out).unwrap();
    assert_eq!(status.sizes.iter().sum::<u64>(), 2 * 3000);
    assert!(status.graphs_done.is_empty() && !status.merged);
    let recorded = read_plan(&out).unwrap();
    assert_eq!(recorded.params.max_degree, 16);
    assert_eq!(recorded.params.pq_bytes, Some(8));
    assert!(recorded.params.reorder);
    // the record layout's request travels with the plan (auto f16, growth 1 here)
    assert_eq!(
        (
            recorded.params.neighbor_codes,
            recorded.params.f16_vectors,
            recorded.params.max_index_growth
        ),
        (false, None, 1.0)
    );
    // (explicit codes need their training sample in the budget: refused at plan time
    // otherwise, so this plan gets 16 MiB more)
    let asked = BuildParams {
        neighbor_codes: true,
        f16_vectors: Some(true),
        max_index_growth: 3.5,
        memory_budget_bytes: p.memory_budget_bytes.map(|b| b + (16 << 20)),
        ..p.clone()
    };
    let out2 = tmp.path().join("out2");
    plan_partitioned(&path, &out2, &asked, &NoProgress).unwrap();
    let r2 = read_plan(&out2).unwrap().params;
    assert_eq!(
        (r2.neighbor_codes, r2.f16_vectors, r2.max_index_growth),
        (true, Some(true), 3.5)
    );
    assert_eq!(recorded.budget, p.memory_budget_bytes.unwrap());
    assert_eq!(recorded.data, std::fs::canonicalize(&path).unwrap());
    // Partition jobs in any order; one run twice does nothing the second time.
    let mut points = 0;
    for part in (0..plan.partitions).rev() {
        let r = stage(&out, Stage::Partition(part)).unwrap();
        assert!(r.ran, "partition {part}");
        points += r.points.unwrap();
    }
    assert_eq!(points, 2 * 3000, "each point in its 2 nearest partitions");
    assert!(!stage(&out, Stage::Partition(1)).unwrap().ran);
    assert!(stage(&out, Stage::Merge).unwrap().ran);
    assert!(!stage(&out, Stage::Merge).unwrap().ran);
    let w = stage(&out, Stage::Write).unwrap();
    let build = w.build.unwrap();
    assert_eq!((build.n, build.partitions), (3000, rep.partitions));
    assert_eq!(
        files(&out),
        files(&reference),
        "stage-by-stage index differs"
    );
    assert!(
        !plan.work_dir.exists(),
        "work directory removed after write"
    );
}

#[test]
fn a_plan_can_be_finished_by_the_one_process_build_with_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _, _) = write_f32(tmp.path(), "base.fbin", 3000, 16, 3);
    let p = budgeted(1);
    let reference = tmp.path().join("ref");
    build_index(&path, &reference, &p, &NoProgress).unwrap();
    let out = tmp.path().join("out");
    plan_partitioned(&path, &out, &p, &NoProgress).unwrap();
    stage(&out, Stage::Partition(0)).unwrap();
    let resume = BuildParams {
        resume: true,
        ..p.clone()
    };
    build_index(&path, &out, &resume, &NoProgress).unwrap();
    assert_eq!(files(&out), files(&reference));
}

#[test]
fn each_stage_refuses_when_what_it_needs_is_missing_changed_or_held() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _, _) = write_f32(tmp.path(), "base.fbin", 3000, 16, 7);
    let out = tmp.path().join("out");
    let work = tmp.path().join(".out.partitioned");

    // No plan yet.
    let e = stage(&out, Stage::Partition(0)).unwrap_err();
    assert!(
        matches!(&e, BuildError::StageMissing { missing, .. } if missing == "the plan"),
        "{e}"
    );
    assert!(e.to_string().contains("ssdann build plan"), "{e}");
    // A plan needs a budget; run_stage does not plan.
    let e = plan_partitioned(&path, &out, &params(16, Metric::L2), &NoProgress).unwrap_err();
    assert!(
        matches!(
            e,
            BuildError::InvalidParameter {
                field: "--memory-budget",
                ..
            }
        ),
        "{e}"
    );
    let e = stage(&out, Stage::Plan).unwrap_err();
    assert!(
        matches!(e, BuildError::InvalidParameter { field: "stage", .. }),
        "{e}"
    );

    let plan = plan_partitioned(&path, &out, &budgeted(2), &NoProgress).unwrap();
    let parts = plan.partitions;
    assert!(parts >= 4);
    // A partition number out of range.
    let e = stage(&out, Stage::Partition(parts)).unwrap_err();
    assert!(
        matches!(&e, BuildError::InvalidParameter { field: "--part", value, .. } if *value == parts.to_string()),
        "{e}"
    );
    // Merge and write before their inputs exist: named, with the command that makes them.
    stage(&out, Stage::Partition(1)).unwrap();
    let e = stage(&out, Stage::Merge).unwrap_err();
    let want = format!(
        "partition graphs 0, {} (of {parts})",
        (2..parts)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(
        matches!(&e, BuildError::StageMissing { missing, .. } if *missing == want),
        "{e}"
    );
    assert!(e.to_string().contains("--part 0"), "{e}");
    let e = stage(&out, Stage::Write).unwrap_err();
    assert!(
        matches!(&e, BuildError::StageMissing { missing, .. } if missing.starts_with("merged.graph")),
        "{e}"
    );

    // Another process builds partition 2 (it holds its lock): a second job for it is
    // refused, and so are merge and write and a whole build (the shared lock), while a job
    // for another partition runs.
    let before = files(&work);
    let ids = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(work.join("part-0002.ids"))
        .unwrap();
    ids.lock().unwrap();
    let e = stage(&out, Stage::Partition(2)).unwrap_err();
    assert!(
        matches!(e, BuildError::PartitionInProgress { part: 2, .. }),
        "{e}"
    );
    let shared = std::fs::File::open(&work).unwrap();
    shared.lock_shared().unwrap();
    for s in [Stage::Merge, Stage::Write] {
        let e = stage(&out, s).unwrap_err();
        assert!(matches!(e, BuildError::BuildInProgress { .. }), "{s}: {e}");
    }
    let resume = BuildParams {
        resume: true,
        ..budgeted(2)
    };
    let e = build_index(&path, &out, &resume, &NoProgress).unwrap_err();
    assert!(matches!(e, BuildError::BuildInProgress { .. }), "{e}");
    let e = plan_partitioned(&path, &out, &budgeted(2), &NoProgress).unwrap_err();
    assert!(matches!(e, BuildError::BuildInProgress { .. }), "{e}");
    assert_eq!(
        files(&work),
        before,
        "refused stages touched the work directory"
    );
    assert!(stage(&out, Stage::Partition(3)).unwrap().ran);
    drop((ids, shared));

    // The input changed after the plan: refused, naming the field, nothing touched.
    let before = files(&work);
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    drop(f);
    let e = stage(&out, Stage::Partition(0)).unwrap_err();
    assert!(
        matches!(&e, BuildError::PlanMismatch { field, .. } if field == "data_mtime_ns"),
        "{e}"
    );
    assert_eq!(files(&work), before);

    // A damaged manifest: refused, naming the file and the field.
    let manifest = work.join("MANIFEST");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("\nR = 16\n", "\nR = sixteen\n")).unwrap();
    let e = stage(&out, Stage::Partition(0)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("MANIFEST") && msg.contains("R") && msg.contains("sixteen"),
        "{msg}"
    );
    std::fs::write(&manifest, text.replace("\nreorder = true\n", "\n")).unwrap();
    let e = stage(&out, Stage::Merge).unwrap_err();
    assert!(e.to_string().contains("reorder"), "{e}");
    // A directory of someone else's where the work directory goes: never read as a plan.
    std::fs::write(&manifest, "not ours\n").unwrap();
    let e = stage(&out, Stage::Merge).unwrap_err();
    assert!(matches!(e, BuildError::NotAnIndex { .. }), "{e}");
}

/// The plan's early refusal of an explicit `--neighbor-codes` accepts what the write stage
/// would: on 768-d f32 at R = 64 no code fits beside f32 vectors (M₂ would be 7 < 8) but
/// 31-byte codes fit beside f16 ones, which the write stage tries first; f16 asked for on
/// u8 data is refused naming `--vector-encoding`.
#[test]
fn the_plans_codes_check_accepts_what_the_write_stage_would() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _, _) = write_f32(tmp.path(), "wide.fbin", 1000, 768, 5);
    let p = BuildParams {
        neighbor_codes: true,
        memory_budget_bytes: Some(256 << 20),
        pq_bytes: Some(32),
        ..params(64, Metric::L2)
    };
    plan_partitioned(&path, &tmp.path().join("wide"), &p, &NoProgress).unwrap();
    // exact vectors asked for: then no code fits, and the plan says so
    let exact = BuildParams {
        f16_vectors: Some(false),
        ..p.clone()
    };
    match plan_partitioned(&path, &tmp.path().join("exact"), &exact, &NoProgress) {
        Err(BuildError::InvalidParameter { field, reason, .. }) => {
            assert_eq!(field, "--neighbor-codes");
            assert!(reason.ends_with("none fits"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let rows: Vec<u8> = (0..1000 * 16).map(|i| (i % 251) as u8).collect();
    let u8_path = tmp.path().join("small.u8bin");
    ssdann_layout::dataset::write_bin(&u8_path, 1000, 16, &rows).unwrap();
    let f16 = BuildParams {
        f16_vectors: Some(true),
        pq_bytes: Some(8),
        ..p.clone()
    };
    match plan_partitioned(&u8_path, &tmp.path().join("u8"), &f16, &NoProgress) {
        Err(BuildError::InvalidParameter { field, .. }) => assert_eq!(field, "--vector-encoding"),
        other => panic!("{other:?}"),
    }
}
