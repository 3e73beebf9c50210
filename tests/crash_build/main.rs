//! The crash simulator for builds (issue 27, finding 9; redb's crash backend, SQLite's crash
//! VFS). A recording storage backend (`BuildParams::storage`, [`sim::Recorder`]) logs every
//! write, fsync, directory creation, rename, exchange, link and removal of a build: the
//! one-shot build into a fresh path (its missing parent created), `--force` over an index
//! and over an empty directory (the atomic exchange), and the partitioned build, with hard
//! links and without (every stage commit). Then, at **every sync point** (just before each
//! fsync returns, and at the end), the durable tree is rebuilt under the power-loss model of
//! docs/FORMAT.md, "Media assumptions and crash points" ([`sim::durable_image`]). Each image must hold at the output path the complete
//! old index (or nothing, when there was none) or the complete new one — never neither,
//! never a half index; once the build has returned, only the new one. The new one is
//! byte-compared with what the build wrote, verified (`ssdann::verify`) and opened. A
//! partitioned build cut short must resume (`--resume`) from the image into the same index.
//! A second test drops one fsync site at a time and requires that some case then fails:
//! every fsync of the builder is needed and covered.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

#[path = "../power_loss/mod.rs"]
mod power_loss;
mod sim;

use sim::{dir_fates, durable_image, Ev, Recorder, Tree, FATES};
use ssdann::engine::{Index, OpenOptions, StorageRef};
use ssdann::BuildParams;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

const D: usize = 8;

/// What is at the output path before the build.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Old {
    Nothing,
    Index,
    EmptyDir,
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    name: &'static str,
    /// The output, relative to the recorded root.
    out: &'static str,
    old: Old,
    partitioned: bool,
    refuse_links: bool,
}

const SCENARIOS: [Scenario; 5] = [
    Scenario {
        name: "one-shot build into a new parent directory",
        out: "new/idx",
        old: Old::Nothing,
        partitioned: false,
        refuse_links: false,
    },
    Scenario {
        name: "--force over an index",
        out: "idx",
        old: Old::Index,
        partitioned: false,
        refuse_links: false,
    },
    Scenario {
        name: "--force over an empty directory",
        out: "idx",
        old: Old::EmptyDir,
        partitioned: false,
        refuse_links: false,
    },
    Scenario {
        name: "partitioned build",
        out: "idx",
        old: Old::Nothing,
        partitioned: true,
        refuse_links: false,
    },
    Scenario {
        name: "partitioned build without hard links, over an index",
        out: "idx",
        old: Old::Index,
        partitioned: true,
        refuse_links: true,
    },
];

fn params(sc: &Scenario, storage: StorageRef) -> BuildParams {
    let r = if sc.partitioned { 8 } else { 12 }; // partitioned: cheaper resumes
    let mut p = BuildParams {
        max_degree: r,
        build_l: 2 * r,
        pq_bytes: Some(8),
        threads: Some(1), // deterministic: a resumed build writes the same bytes
        force: sc.old != Old::Nothing,
        storage,
        ..Default::default()
    };
    if sc.partitioned {
        // partitions of at most ~300 of the 2 × 600 assignments: ≥ 4 partitions
        let per_point = 16 + 8 * r as u64 + 80 + 4 + 2;
        p.memory_budget_bytes =
            Some(ssdann::builder::partitioned::budget::FIXED_BYTES + 300 * per_point * 10 / 7 + 1);
        p.reorder = !sc.refuse_links;
    } else {
        p.neighbor_codes = sc.old == Old::Nothing; // covers pq_refine.bin
    }
    p
}

/// A scenario recorded: the data file, the tree before, the events, the tree after.
struct Recorded {
    _tmp: tempfile::TempDir,
    data: std::path::PathBuf,
    initial: Tree,
    events: Vec<Ev>,
    /// The files of the output after the build (relative paths under `sc.out`).
    old: BTreeMap<String, Option<Vec<u8>>>,
    new: BTreeMap<String, Option<Vec<u8>>>,
}

/// The entries of `flat` under `out` (`out/` itself included when it is there).
fn under(flat: &BTreeMap<String, Option<Vec<u8>>>, out: &str) -> BTreeMap<String, Option<Vec<u8>>> {
    let prefix = format!("{out}/");
    flat.iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn record(sc: &Scenario, skip: Option<&'static str>) -> Recorded {
    let tmp = tempfile::tempdir().unwrap();
    let n = if sc.partitioned { 600 } else { 300 };
    let (all, _) = ssdann::builder::synthetic::clustered(n, 0, D, 6, 27);
    let data = tmp.path().join("b.fbin");
    ssdann::layout::dataset::write_bin(&data, n, D, &all).unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let out = root.join(sc.out);
    match sc.old {
        Old::Nothing => {}
        Old::EmptyDir => std::fs::create_dir_all(&out).unwrap(),
        Old::Index => {
            let p = BuildParams {
                max_degree: 8,
                build_l: 16,
                pq_bytes: Some(4),
                threads: Some(1),
                ..Default::default()
            };
            ssdann::build_index(&data, &out, &p, &ssdann::NoProgress).unwrap();
        }
    }
    let (rec, initial) = Recorder::new(&root, skip, sc.refuse_links);
    let rec = Arc::new(rec);
    ssdann::build_index(
        &data,
        &out,
        &params(sc, StorageRef(rec.clone())),
        &ssdann::NoProgress,
    )
    .unwrap();
    rec.mark(Ev::Ack);
    let (after, _) = Tree::read(&root);
    Recorded {
        old: under(&initial.flatten(), sc.out),
        new: under(&after.flatten(), sc.out),
        initial,
        events: rec.events(),
        data,
        _tmp: tmp,
    }
}

/// Checks one crash image (written at `dir`): the output is the old one (only before the
/// build returned) or the new one; a partitioned build cut short resumes into the new one.
fn check(
    sc: &Scenario,
    r: &Recorded,
    image: &BTreeMap<String, Option<Vec<u8>>>,
    dir: &Path,
    acked: bool,
) -> Result<(), String> {
    let at_out = under(image, sc.out);
    let out = dir.join(sc.out);
    if at_out == r.new {
        return check_new(&out);
    }
    if acked {
        return Err(format!(
            "the build returned, but {} holds {:?}",
            sc.out,
            at_out.keys().collect::<Vec<_>>()
        ));
    }
    if at_out != r.old {
        return Err(format!(
            "{} holds neither the old index nor the new one: {:?}",
            sc.out,
            at_out
                .iter()
                .map(|(k, v)| (k, v.as_ref().map(Vec::len)))
                .collect::<Vec<_>>()
        ));
    }
    if sc.partitioned {
        // a cut-short partitioned build resumes from its work directory
        let p = BuildParams {
            resume: true,
            ..params(sc, StorageRef::default())
        };
        ssdann::build_index(&r.data, &out, &p, &ssdann::NoProgress)
            .map_err(|e| format!("resume: {e}"))?;
        let (after, _) = Tree::read(dir);
        if under(&after.flatten(), sc.out) != r.new {
            return Err("the resumed build wrote another index".into());
        }
        return check_new(&out);
    }
    Ok(())
}

fn check_new(out: &Path) -> Result<(), String> {
    let rep = ssdann::verify(out).map_err(|e| format!("verify: {e}"))?;
    if !rep.ok() {
        return Err(format!("verify: {:?}", rep.problems));
    }
    let idx = Index::open(out, OpenOptions::default()).map_err(|e| format!("open: {e}"))?;
    if idx.live_count() == 0 {
        return Err("the new index holds no point".into());
    }
    Ok(())
}

struct Outcome {
    failures: Vec<String>,
    cases: usize,
    unique: usize,
    sites: BTreeSet<&'static str>,
}

/// Simulates every crash point of scenario `sc` (without the fsyncs of `skip`); with
/// `first_failure`, stops at the first failing case (trying the latest points first).
fn simulate(sc: &Scenario, skip: Option<&'static str>, first_failure: bool) -> Outcome {
    let r = record(sc, skip);
    let sites: BTreeSet<&'static str> = r
        .events
        .iter()
        .filter_map(|e| match e {
            Ev::Sync { site, .. } | Ev::SyncDir { site, .. } => Some(*site),
            _ => None,
        })
        .collect();
    let mut points: Vec<usize> = r
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Ev::Sync { .. } | Ev::SyncDir { .. }))
        .map(|(i, _)| i)
        .chain([r.events.len()])
        .collect();
    if first_failure {
        // the late points resume the least work: looking for one failure, try them first
        points.reverse();
    }
    let scratch = tempfile::tempdir().unwrap();
    let mut seen: HashMap<(u64, bool), Result<(), String>> = HashMap::new();
    let mut failures = Vec::new();
    let mut cases = 0;
    for &at in &points {
        let acked = r.events[..at].iter().any(|e| matches!(e, Ev::Ack));
        let site = match r.events.get(at) {
            Some(Ev::Sync { site, .. }) | Some(Ev::SyncDir { site, .. }) => *site,
            _ => "end",
        };
        let fates = dir_fates(&r.events, at);
        for fate in FATES {
            for &dir_fate in &fates {
                cases += 1;
                let image = durable_image(&r.initial, &r.events, at, fate, dir_fate);
                let flat = image.flatten();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                flat.hash(&mut h);
                let key = (h.finish(), acked);
                let res = seen.entry(key).or_insert_with(|| {
                    let dir = scratch.path().join(format!("case-{cases}"));
                    image.write(&dir);
                    let res = check(sc, &r, &flat, &dir, acked);
                    std::fs::remove_dir_all(&dir).unwrap();
                    res
                });
                if let Err(e) = res {
                    failures.push(format!(
                        "{}: crash before event {at} ({site}), writes {fate:?}, directory \
                         entries {dir_fate:?}: {e}",
                        sc.name
                    ));
                    if first_failure {
                        return Outcome {
                            failures,
                            cases,
                            unique: seen.len(),
                            sites,
                        };
                    }
                }
            }
        }
    }
    Outcome {
        failures,
        cases,
        unique: seen.len(),
        sites,
    }
}

#[test]
fn every_crash_point_of_a_build_leaves_the_old_index_or_the_new_one() {
    let (mut cases, mut unique) = (0, 0);
    let mut failures = Vec::new();
    let mut sites = BTreeSet::new();
    for sc in &SCENARIOS {
        let t = std::time::Instant::now();
        let o = simulate(sc, None, false);
        eprintln!(
            "{}: {} crash cases ({} distinct images, {:.1} s) over the sync sites {:?}",
            sc.name,
            o.cases,
            o.unique,
            t.elapsed().as_secs_f64(),
            o.sites
        );
        cases += o.cases;
        unique += o.unique;
        failures.extend(o.failures);
        sites.extend(o.sites);
    }
    eprintln!(
        "{cases} build crash cases ({unique} distinct images), {} sync sites",
        sites.len()
    );
    assert!(cases > 1000, "only {cases} cases");
    assert!(
        failures.is_empty(),
        "{} of {cases} crash cases failed:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}

#[test]
fn removing_any_one_fsync_of_the_builder_makes_a_crash_case_fail() {
    let mut sites: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
    for (k, sc) in SCENARIOS.iter().enumerate() {
        for e in record(sc, None).events {
            if let Ev::Sync { site, .. } | Ev::SyncDir { site, .. } = e {
                let scs = sites.entry(site).or_default();
                if scs.last() != Some(&k) {
                    scs.push(k);
                }
            }
        }
    }
    let mut unneeded = Vec::new();
    for (site, scs) in &sites {
        let mut failed = None;
        for &k in scs {
            let o = simulate(&SCENARIOS[k], Some(site), true);
            if let Some(f) = o.failures.first() {
                failed = Some(f.clone());
                break;
            }
        }
        match failed {
            Some(f) => eprintln!("without the fsyncs at {site}: {f}"),
            None => {
                eprintln!("without the fsyncs at {site}: every case passes");
                unneeded.push(*site);
            }
        }
    }
    assert!(
        unneeded.is_empty(),
        "no crash case needs the fsyncs at {unneeded:?}"
    );
}
