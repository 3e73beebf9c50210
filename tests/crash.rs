//! The crash simulator (issue 11; redb's crash backend, SQLite's crash VFS). A recording
//! [`Storage`] backend logs every write, truncation, fsync, rename, removal and directory
//! fsync the engine makes while a scenario of inserts, deletes and merges runs. Then, at
//! **every sync point** (just before each fsync returns, and at the end), the durable state of
//! the index directory is rebuilt from the log under the power-loss model of docs/FORMAT.md, "Media assumptions and crash points":
//! writes since the file's last fsync are kept, dropped, torn at a 512-byte or 4 KB
//! boundary, zero-filled, or reordered (the older lost, the newer kept); directory entries
//! since the directory's last fsync are kept or lost. Each image is opened (recovery runs),
//! must pass `verify`, and must hold exactly the acknowledged operations (the one in flight
//! all or nothing). A second test drops one fsync call site at a time and requires that some
//! case then fails: every fsync is needed and covered.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;
mod power_loss;

use ssdann::engine::{Index, MergeOptions, OpenOptions, SearchParams, Storage, StorageRef};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use power_loss::{Fate, FileOp, FATES};

const D: usize = 16;

/// One logged event. Files are named by inode number (renames move inodes).
#[derive(Clone, Debug)]
enum Ev {
    Link {
        name: String,
        ino: usize,
    },
    Write {
        ino: usize,
        off: u64,
        data: Vec<u8>,
    },
    SetLen {
        ino: usize,
        len: u64,
    },
    Sync {
        ino: usize,
        site: &'static str,
    },
    Rename {
        from: String,
        to: String,
    },
    Unlink {
        name: String,
    },
    SyncDir {
        site: &'static str,
    },
    /// Scenario markers: operation `k` started / was acknowledged.
    Begin(usize),
    Ack(usize),
}

#[derive(Debug, Default)]
struct Log {
    events: Vec<Ev>,
    /// Live namespace: file name → inode.
    live: HashMap<String, usize>,
    next_ino: usize,
}

/// The recording backend: performs every operation on the real files (the live state) and
/// logs it; `skip` names fsync sites whose syncs are not logged (as if the call were removed).
#[derive(Debug)]
struct Recorder {
    log: Mutex<Log>,
    skip: Option<&'static str>,
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

impl Recorder {
    fn new(dir: &Path, skip: Option<&'static str>) -> (Recorder, BTreeMap<String, Vec<u8>>) {
        let mut log = Log::default();
        let mut initial = BTreeMap::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            initial.insert(name(&p), std::fs::read(&p).unwrap());
        }
        // inodes in name order, as `durable_image` numbers them
        for n in initial.keys() {
            log.live.insert(n.clone(), log.next_ino);
            log.next_ino += 1;
        }
        (
            Recorder {
                log: Mutex::new(log),
                skip,
            },
            initial,
        )
    }
    fn ino(&self, log: &mut Log, p: &Path) -> usize {
        *log.live
            .get(&name(p))
            .unwrap_or_else(|| panic!("no inode for {p:?}"))
    }
    fn mark(&self, e: Ev) {
        self.log.lock().unwrap().events.push(e);
    }
    fn link(&self, log: &mut Log, n: String) -> usize {
        let ino = log.next_ino;
        log.next_ino += 1;
        log.live.insert(n.clone(), ino);
        log.events.push(Ev::Link { name: n, ino });
        ino
    }
}

impl Storage for Recorder {
    fn open_rw(&self, path: &Path, create: bool, truncate: bool) -> io::Result<File> {
        let existed = path.exists();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(truncate)
            .open(path)?;
        let mut log = self.log.lock().unwrap();
        let ino = if existed {
            self.ino(&mut log, path)
        } else {
            self.link(&mut log, name(path))
        };
        if truncate {
            log.events.push(Ev::SetLen { ino, len: 0 });
        }
        Ok(f)
    }
    fn write_at(&self, file: &File, path: &Path, data: &[u8], off: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut log = self.log.lock().unwrap();
        let ino = self.ino(&mut log, path);
        log.events.push(Ev::Write {
            ino,
            off,
            data: data.to_vec(),
        });
        file.write_all_at(data, off)
    }
    fn set_len(&self, file: &File, path: &Path, len: u64) -> io::Result<()> {
        let mut log = self.log.lock().unwrap();
        let ino = self.ino(&mut log, path);
        log.events.push(Ev::SetLen { ino, len });
        file.set_len(len)
    }
    fn sync(&self, _file: &File, path: &Path, site: &'static str) -> io::Result<()> {
        let mut log = self.log.lock().unwrap();
        if self.skip != Some(site) {
            let ino = self.ino(&mut log, path);
            log.events.push(Ev::Sync { ino, site });
        }
        Ok(()) // the live state is the page cache: no real fsync needed
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)?;
        let mut log = self.log.lock().unwrap();
        let ino = log.live.remove(&name(from)).unwrap();
        log.live.insert(name(to), ino);
        log.events.push(Ev::Rename {
            from: name(from),
            to: name(to),
        });
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)?;
        let mut log = self.log.lock().unwrap();
        log.live.remove(&name(path));
        log.events.push(Ev::Unlink { name: name(path) });
        Ok(())
    }
    fn sync_dir(&self, _dir: &Path, site: &'static str) -> io::Result<()> {
        if self.skip != Some(site) {
            self.mark(Ev::SyncDir { site });
        }
        Ok(())
    }
    fn wrote_file(&self, path: &Path, site: &'static str) -> io::Result<()> {
        let data = std::fs::read(path)?;
        let mut log = self.log.lock().unwrap();
        let ino = match log.live.get(&name(path)) {
            Some(&i) => {
                log.events.push(Ev::SetLen { ino: i, len: 0 });
                i
            }
            None => self.link(&mut log, name(path)),
        };
        log.events.push(Ev::Write { ino, off: 0, data });
        if self.skip != Some(site) {
            log.events.push(Ev::Sync { ino, site });
        }
        Ok(())
    }
}

/// The file change an event makes (writes and length changes only).
fn file_op(e: &Ev) -> FileOp {
    match e {
        Ev::Write { data, off, .. } => FileOp::Write {
            off: *off,
            data: data.clone(),
        },
        Ev::SetLen { len, .. } => FileOp::SetLen(*len),
        _ => unreachable!(),
    }
}

/// The durable directory after a crash just before event `at`.
/// What happens to the directory operations since the directory's last fsync.
#[derive(Clone, Copy, Debug, PartialEq)]
enum DirFate {
    Kept,
    Lost,
    /// Reordered: only the newest one reached the disk.
    NewestOnly,
}

const DIR_FATES: [DirFate; 3] = [DirFate::Kept, DirFate::Lost, DirFate::NewestOnly];

fn durable_image(
    initial: &BTreeMap<String, Vec<u8>>,
    events: &[Ev],
    at: usize,
    fate: Fate,
    dir_fate: DirFate,
) -> BTreeMap<String, Vec<u8>> {
    let mut content: HashMap<usize, Vec<u8>> = HashMap::new();
    let mut pending: HashMap<usize, Vec<FileOp>> = HashMap::new();
    let mut ns: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (n, c)) in initial.iter().enumerate() {
        content.insert(i, c.clone());
        ns.insert(n.clone(), i);
    }
    let mut ns_pending: Vec<Ev> = Vec::new();
    let apply_ns = |ns: &mut BTreeMap<String, usize>, e: &Ev| match e {
        Ev::Link { name, ino } => {
            ns.insert(name.clone(), *ino);
        }
        Ev::Rename { from, to } => {
            if let Some(ino) = ns.remove(from) {
                ns.insert(to.clone(), ino);
            }
        }
        Ev::Unlink { name } => {
            ns.remove(name);
        }
        _ => unreachable!(),
    };
    for e in &events[..at] {
        match e {
            Ev::Link { ino, .. } => {
                content.entry(*ino).or_default();
                ns_pending.push(e.clone());
            }
            Ev::Rename { .. } | Ev::Unlink { .. } => ns_pending.push(e.clone()),
            Ev::Write { ino, .. } | Ev::SetLen { ino, .. } => {
                pending.entry(*ino).or_default().push(file_op(e))
            }
            Ev::Sync { ino, .. } => {
                let c = content.entry(*ino).or_default();
                for op in pending.remove(ino).unwrap_or_default() {
                    power_loss::apply(c, &op);
                }
            }
            Ev::SyncDir { .. } => {
                for op in ns_pending.drain(..) {
                    apply_ns(&mut ns, &op);
                }
            }
            Ev::Begin(_) | Ev::Ack(_) => {}
        }
    }
    for (ino, ops) in pending {
        let c = content.entry(ino).or_default();
        power_loss::apply_unsynced(c, &ops, fate);
    }
    match dir_fate {
        DirFate::Kept => ns_pending.iter().for_each(|op| apply_ns(&mut ns, op)),
        DirFate::Lost => {}
        DirFate::NewestOnly => {
            if let Some(op) = ns_pending.last() {
                apply_ns(&mut ns, op)
            }
        }
    }
    ns.into_iter()
        .map(|(n, ino)| (n, content.remove(&ino).unwrap_or_default()))
        .collect()
}

/// One operation of the scenario.
#[derive(Clone, Debug)]
enum Op {
    Insert(Vec<(u64, Vec<f32>)>),
    Delete(Vec<u64>),
    Merge,
    /// A merge during which the next operation (an insert) runs: its WAL record comes after
    /// the merge's sequence number, so the merge's WAL trim must keep it.
    MergeDuringNext,
}

/// Label → vector of every live point the model says the index holds.
type Model = BTreeMap<u64, Vec<f32>>;

fn apply_model(m: &mut Model, op: &Op) {
    match op {
        Op::Insert(items) => {
            for (l, v) in items {
                m.insert(*l, v.clone());
            }
        }
        Op::Delete(ls) => {
            for l in ls {
                m.remove(l);
            }
        }
        Op::Merge | Op::MergeDuringNext => {}
    }
}

struct Scenario {
    base: Model,
    ops: Vec<Op>,
    /// Labels whose presence is checked after each crash.
    watched: BTreeSet<u64>,
    /// Their vectors (the latest inserted, or the base one).
    vectors: BTreeMap<u64, Vec<Vec<f32>>>,
}

fn scenario(all: &[f32], n: usize) -> Scenario {
    let row = |i: usize| all[i * D..(i + 1) * D].to_vec();
    let base: Model = (0..n as u64).map(|l| (l, row(l as usize))).collect();
    let ops = vec![
        Op::Insert(vec![(1000, row(n)), (1001, row(n + 1)), (1002, row(n + 2))]),
        Op::Delete(vec![5, 17]),
        Op::Insert(vec![(1003, row(n + 3))]),
        Op::Merge,
        Op::Insert(vec![(1004, row(n + 4)), (7, row(n + 5))]),
        Op::Delete(vec![1000, 40]),
        Op::MergeDuringNext,
        Op::Insert(vec![(1005, row(n + 6))]),
        Op::Delete(vec![1001]),
        Op::Merge,
    ];
    let mut vectors: BTreeMap<u64, Vec<Vec<f32>>> = BTreeMap::new();
    let mut watched = BTreeSet::new();
    for l in [3u64, 5, 7, 17, 40, 99] {
        watched.insert(l);
        vectors.entry(l).or_default().push(row(l as usize));
    }
    for op in &ops {
        if let Op::Insert(items) = op {
            for (l, v) in items {
                watched.insert(*l);
                vectors.entry(*l).or_default().push(v.clone());
            }
        }
    }
    Scenario {
        base,
        ops,
        watched,
        vectors,
    }
}

/// Runs the scenario on `dir` through `rec`, marking each operation's start and ack.
fn run(dir: &Path, rec: Arc<Recorder>, sc: &Scenario) {
    let idx = Index::open(
        dir,
        OpenOptions {
            storage: StorageRef(rec.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let apply = |k: usize, op: &Op| {
        rec.mark(Ev::Begin(k));
        match op {
            Op::Insert(items) => {
                let refs: Vec<(u64, &[f32])> =
                    items.iter().map(|(l, v)| (*l, v.as_slice())).collect();
                idx.insert_batch(&refs).unwrap();
            }
            Op::Delete(ls) => idx.delete_batch(ls).unwrap(),
            Op::Merge => {
                idx.merge(&MergeOptions::default()).unwrap();
            }
            Op::MergeDuringNext => unreachable!(),
        }
        rec.mark(Ev::Ack(k));
    };
    let mut k = 0;
    while k < sc.ops.len() {
        if let Op::MergeDuringNext = sc.ops[k] {
            let (hook, during) = common::during_merge();
            std::thread::scope(|s| {
                let m = s.spawn(|| {
                    rec.mark(Ev::Begin(k));
                    let opts = MergeOptions {
                        after_freeze: Some(hook),
                        ..Default::default()
                    };
                    idx.merge(&opts).unwrap();
                    rec.mark(Ev::Ack(k));
                });
                // the next update lands after the merge froze its own, before it computes
                during.wait_frozen();
                apply(k + 1, &sc.ops[k + 1]);
                during.resume();
                m.join().unwrap();
            });
            k += 2;
        } else {
            apply(k, &sc.ops[k]);
            k += 1;
        }
    }
}

/// What the reopened index holds of the watched labels: label → its vector's index in
/// `sc.vectors[label]`, for the live ones.
fn observe(idx: &Index, sc: &Scenario) -> Result<BTreeMap<u64, usize>, String> {
    let mut seen = BTreeMap::new();
    for &l in &sc.watched {
        for (i, v) in sc.vectors[&l].iter().enumerate() {
            let hits = idx
                .search(v, 3, &SearchParams::new(40, 4))
                .map_err(|e| format!("search: {e}"))?;
            if hits.iter().any(|h| h.id == l && h.distance < 1e-4) {
                seen.insert(l, i);
            }
        }
    }
    Ok(seen)
}

fn expect(sc: &Scenario, m: &Model) -> BTreeMap<u64, usize> {
    sc.watched
        .iter()
        .filter_map(|l| {
            m.get(l).map(|v| {
                let i = sc.vectors[l].iter().position(|x| x == v).unwrap();
                (*l, i)
            })
        })
        .collect()
}

/// Simulates every crash point; returns the failures (empty when all pass) and the cases run.
fn simulate(skip: Option<&'static str>) -> (Vec<String>, usize, BTreeSet<&'static str>) {
    let tmp = tempfile::tempdir().unwrap();
    let (all, _) = ssdann::builder::synthetic::clustered(520, 4, D, 6, 3);
    let src = tmp.path().join("idx");
    common::build_small(&all, 400, D, tmp.path(), &src);
    let sc = scenario(&all, 400);
    let (rec, initial) = Recorder::new(&src, skip);
    let rec = Arc::new(rec);
    run(&src, rec.clone(), &sc);
    let events = rec.log.lock().unwrap().events.clone();
    let sites: BTreeSet<&'static str> = events
        .iter()
        .filter_map(|e| match e {
            Ev::Sync { site, .. } | Ev::SyncDir { site } => Some(*site),
            _ => None,
        })
        .collect();
    let points: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Ev::Sync { .. } | Ev::SyncDir { .. }))
        .map(|(i, _)| i)
        .chain([events.len()])
        .collect();
    let mut failures = Vec::new();
    let mut cases = 0;
    for &at in &points {
        // acknowledged operations before the crash, and the one in flight
        let acked: BTreeSet<usize> = events[..at]
            .iter()
            .filter_map(|e| match e {
                Ev::Ack(k) => Some(*k),
                _ => None,
            })
            .collect();
        let begun: BTreeSet<usize> = events[..at]
            .iter()
            .filter_map(|e| match e {
                Ev::Begin(k) => Some(*k),
                _ => None,
            })
            .collect();
        let mut before = sc.base.clone();
        for &k in &acked {
            apply_model(&mut before, &sc.ops[k]);
        }
        // the one insert or delete in flight, if any, may or may not have landed
        let mut after = before.clone();
        for &k in begun.difference(&acked) {
            apply_model(&mut after, &sc.ops[k]);
        }
        let acked = acked.len();
        let site = match events.get(at) {
            Some(Ev::Sync { site, .. }) | Some(Ev::SyncDir { site }) => *site,
            _ => "end",
        };
        for fate in FATES {
            for dir_fate in DIR_FATES {
                cases += 1;
                let case = format!("crash before event {at} ({site}), writes {fate:?}, directory entries {dir_fate:?}, {acked} ops acked");
                let image = durable_image(&initial, &events, at, fate, dir_fate);
                let dir = tmp.path().join(format!("crash-{cases}"));
                std::fs::create_dir(&dir).unwrap();
                for (n, c) in &image {
                    std::fs::write(dir.join(n), c).unwrap();
                }
                match check_image(&dir, &sc, &before, &after) {
                    Ok(()) => {}
                    Err(e) => failures.push(format!("{case}: {e}")),
                }
                std::fs::remove_dir_all(&dir).unwrap();
            }
        }
    }
    (failures, cases, sites)
}

fn check_image(dir: &Path, sc: &Scenario, before: &Model, after: &Model) -> Result<(), String> {
    let idx = Index::open(dir, OpenOptions::default()).map_err(|e| format!("open: {e}"))?;
    let seen = observe(&idx, sc)?;
    let live = idx.live_count();
    drop(idx);
    let rep = ssdann::verify(dir).map_err(|e| format!("verify: {e}"))?;
    if !rep.ok() {
        return Err(format!("verify: {:?}", rep.problems));
    }
    let matches = |m: &Model| seen == expect(sc, m) && live == m.len();
    if matches(before) || matches(after) {
        Ok(())
    } else {
        Err(format!(
            "holds {seen:?} ({live} live), acknowledged {:?} ({} live)",
            expect(sc, before),
            before.len()
        ))
    }
}

#[test]
fn every_crash_point_of_insert_delete_and_merge_keeps_every_acknowledged_update() {
    let (failures, cases, sites) = simulate(None);
    eprintln!("{cases} crash cases over the sync sites {sites:?}");
    assert!(cases > 200, "only {cases} cases");
    assert!(
        failures.is_empty(),
        "{} of {cases} crash cases failed:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}

#[test]
fn removing_any_one_fsync_makes_a_crash_case_fail() {
    let (_, _, sites) = simulate(None);
    let mut unneeded = Vec::new();
    for site in &sites {
        let (failures, cases, _) = simulate(Some(site));
        eprintln!(
            "without the fsyncs at {site}: {} of {cases} cases fail",
            failures.len()
        );
        if failures.is_empty() {
            unneeded.push(*site);
        }
    }
    assert!(
        unneeded.is_empty(),
        "no crash case needs the fsyncs at {unneeded:?}"
    );
}
