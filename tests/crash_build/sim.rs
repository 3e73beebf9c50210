//! The simulator of a directory tree under power loss: a recording [`Storage`] backend and
//! the durable image of the tree after a crash at any event, under the fault model of
//! docs/FORMAT.md ("Media assumptions and crash points"). Unlike `tests/crash.rs` (one flat index directory), this
//! one models a tree: a build creates directories, renames and exchanges them, and links
//! files between them.
//!
//! Files and directories are inodes. A file's writes and truncations become durable at its
//! fsync; a directory's entries (created, renamed, exchanged, linked, removed) at the fsync
//! of that directory, in order. At a crash, the unsynced writes of each file are kept,
//! dropped, torn at a 512-byte or 4 KB boundary, zero-filled, or reordered (the oldest lost),
//! and the unsynced entry operations of each directory are all kept, all lost, only the
//! newest kept, or kept up to any point in order (a crash between two of them).

use ssdann::engine::Storage;
use ssdann::layout::storage::OsStorage;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use crate::power_loss::{self, FileOp};
pub use crate::power_loss::{Fate, FATES};

pub type Ino = usize;

/// The root directory's inode.
pub const ROOT: Ino = 0;

/// One logged event.
#[derive(Clone, Debug)]
pub enum Ev {
    /// A new entry `name` in `dir` for inode `ino` (a created file or directory, a hard link).
    Link {
        dir: Ino,
        name: String,
        ino: Ino,
        is_dir: bool,
    },
    Unlink {
        dir: Ino,
        name: String,
    },
    Rename {
        dir: Ino,
        from: String,
        to: String,
    },
    Exchange {
        dir: Ino,
        a: String,
        b: String,
    },
    Write {
        ino: Ino,
        off: u64,
        data: Vec<u8>,
    },
    SetLen {
        ino: Ino,
        len: u64,
    },
    Sync {
        ino: Ino,
        site: &'static str,
    },
    SyncDir {
        dir: Ino,
        site: &'static str,
    },
    /// The build returned successfully (acknowledged).
    Ack,
}

/// The tree when recording began: directories (inode → entries) and file contents.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    pub dirs: HashMap<Ino, BTreeMap<String, Ino>>,
    pub files: HashMap<Ino, Vec<u8>>,
}

impl Tree {
    /// Reads the tree under `root` (regular files and directories only).
    pub fn read(root: &Path) -> (Tree, Ino) {
        let mut t = Tree::default();
        let mut next = 1;
        fn walk(t: &mut Tree, next: &mut Ino, dir: &Path, ino: Ino) {
            let mut entries = BTreeMap::new();
            let mut names: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            for p in names {
                let i = *next;
                *next += 1;
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                entries.insert(name, i);
                if p.is_dir() {
                    walk(t, next, &p, i);
                } else {
                    t.files.insert(i, std::fs::read(&p).unwrap());
                }
            }
            t.dirs.insert(ino, entries);
        }
        walk(&mut t, &mut next, root, ROOT);
        (t, next)
    }

    /// Writes the tree under `root` (which must not exist).
    pub fn write(&self, root: &Path) {
        fn put(t: &Tree, dir: &Path, ino: Ino) {
            std::fs::create_dir(dir).unwrap();
            for (name, &i) in &t.dirs[&ino] {
                let p = dir.join(name);
                if t.dirs.contains_key(&i) {
                    put(t, &p, i);
                } else {
                    std::fs::write(&p, t.files.get(&i).map_or(&[][..], |c| c)).unwrap();
                }
            }
        }
        put(self, root, ROOT);
    }

    /// Every file by path (relative to the root): what a case is compared and hashed by.
    pub fn flatten(&self) -> BTreeMap<String, Option<Vec<u8>>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![(String::new(), ROOT)];
        while let Some((prefix, ino)) = stack.pop() {
            for (name, &i) in &self.dirs[&ino] {
                let p = format!("{prefix}{name}");
                if self.dirs.contains_key(&i) {
                    out.insert(format!("{p}/"), None);
                    stack.push((format!("{p}/"), i));
                } else {
                    out.insert(p, Some(self.files.get(&i).cloned().unwrap_or_default()));
                }
            }
        }
        out
    }
}

#[derive(Debug, Default)]
struct Live {
    events: Vec<Ev>,
    dirs: HashMap<Ino, BTreeMap<String, Ino>>,
    next: Ino,
}

/// The recording backend: performs every operation on the real files under `root` (the
/// live state) and logs it. `skip` names an fsync site whose syncs are not logged (as if the
/// call were removed); `refuse_links` makes every hard link fail with EXDEV (a file system
/// without them).
#[derive(Debug)]
pub struct Recorder {
    root: PathBuf,
    live: Mutex<Live>,
    skip: Option<&'static str>,
    refuse_links: bool,
}

impl Recorder {
    pub fn new(root: &Path, skip: Option<&'static str>, refuse_links: bool) -> (Recorder, Tree) {
        let (tree, next) = Tree::read(root);
        let live = Live {
            events: Vec::new(),
            dirs: tree.dirs.clone(),
            next,
        };
        let rec = Recorder {
            root: root.into(),
            live: Mutex::new(live),
            skip,
            refuse_links,
        };
        (rec, tree)
    }

    pub fn mark(&self, e: Ev) {
        self.live.lock().unwrap().events.push(e);
    }

    pub fn events(&self) -> Vec<Ev> {
        self.live.lock().unwrap().events.clone()
    }

    /// (inode of the directory holding `p`, `p`'s name).
    fn split(&self, live: &Live, p: &Path) -> (Ino, String) {
        let rel = p
            .strip_prefix(&self.root)
            .unwrap_or_else(|_| panic!("{p:?} is outside the recorded tree {:?}", self.root));
        let mut comps: Vec<String> = rel
            .components()
            .map(|c| match c {
                Component::Normal(s) => s.to_string_lossy().into_owned(),
                c => panic!("unexpected component {c:?} in {p:?}"),
            })
            .collect();
        let name = comps.pop().unwrap_or_else(|| panic!("{p:?} is the root"));
        let mut dir = ROOT;
        for c in comps {
            dir = live.dirs[&dir][&c];
        }
        (dir, name)
    }

    fn lookup(&self, live: &Live, p: &Path) -> Option<Ino> {
        let (dir, name) = self.split(live, p);
        live.dirs[&dir].get(&name).copied()
    }

    fn ino(&self, live: &Live, p: &Path) -> Ino {
        self.lookup(live, p)
            .unwrap_or_else(|| panic!("no inode for {p:?}"))
    }

    fn link_new(&self, live: &mut Live, p: &Path, dir_too: bool) -> Ino {
        let (dir, name) = self.split(live, p);
        let ino = live.next;
        live.next += 1;
        live.dirs.get_mut(&dir).unwrap().insert(name.clone(), ino);
        if dir_too {
            live.dirs.insert(ino, BTreeMap::new());
        }
        live.events.push(Ev::Link {
            dir,
            name,
            ino,
            is_dir: dir_too,
        });
        ino
    }

    fn same_dir(&self, live: &Live, a: &Path, b: &Path) -> (Ino, String, String) {
        let (da, na) = self.split(live, a);
        let (db, nb) = self.split(live, b);
        assert_eq!(da, db, "{a:?} and {b:?}: not in one directory");
        (da, na, nb)
    }
}

impl Storage for Recorder {
    fn open_rw(&self, path: &Path, create: bool, truncate: bool) -> io::Result<File> {
        let f = OsStorage.open_rw(path, create, truncate)?;
        let mut live = self.live.lock().unwrap();
        let ino = match self.lookup(&live, path) {
            Some(i) => i,
            None => self.link_new(&mut live, path, false),
        };
        if truncate {
            live.events.push(Ev::SetLen { ino, len: 0 });
        }
        Ok(f)
    }
    fn write_at(&self, file: &File, path: &Path, data: &[u8], off: u64) -> io::Result<()> {
        let mut live = self.live.lock().unwrap();
        let ino = self.ino(&live, path);
        live.events.push(Ev::Write {
            ino,
            off,
            data: data.to_vec(),
        });
        OsStorage.write_at(file, path, data, off)
    }
    fn set_len(&self, file: &File, path: &Path, len: u64) -> io::Result<()> {
        let mut live = self.live.lock().unwrap();
        let ino = self.ino(&live, path);
        live.events.push(Ev::SetLen { ino, len });
        file.set_len(len)
    }
    fn sync(&self, _file: &File, path: &Path, site: &'static str) -> io::Result<()> {
        let mut live = self.live.lock().unwrap();
        if self.skip != Some(site) {
            let ino = self.ino(&live, path);
            live.events.push(Ev::Sync { ino, site });
        }
        Ok(()) // the live state is the page cache: no real fsync needed
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsStorage.rename(from, to)?;
        let mut live = self.live.lock().unwrap();
        let (dir, f, t) = self.same_dir(&live, from, to);
        let entries = live.dirs.get_mut(&dir).unwrap();
        let ino = entries.remove(&f).unwrap();
        entries.insert(t.clone(), ino);
        live.events.push(Ev::Rename {
            dir,
            from: f,
            to: t,
        });
        Ok(())
    }
    fn exchange(&self, a: &Path, b: &Path) -> io::Result<()> {
        OsStorage.exchange(a, b)?;
        let mut live = self.live.lock().unwrap();
        let (dir, na, nb) = self.same_dir(&live, a, b);
        let entries = live.dirs.get_mut(&dir).unwrap();
        let (ia, ib) = (entries[&na], entries[&nb]);
        entries.insert(na.clone(), ib);
        entries.insert(nb.clone(), ia);
        live.events.push(Ev::Exchange { dir, a: na, b: nb });
        Ok(())
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.refuse_links {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        OsStorage.hard_link(from, to)?;
        let mut live = self.live.lock().unwrap();
        let ino = self.ino(&live, from);
        let (dir, name) = self.split(&live, to);
        live.dirs.get_mut(&dir).unwrap().insert(name.clone(), ino);
        live.events.push(Ev::Link {
            dir,
            name,
            ino,
            is_dir: false,
        });
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        OsStorage.remove(path)?;
        let mut live = self.live.lock().unwrap();
        let (dir, name) = self.split(&live, path);
        live.dirs.get_mut(&dir).unwrap().remove(&name);
        live.events.push(Ev::Unlink { dir, name });
        Ok(())
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        OsStorage.create_dir(path)?;
        let mut live = self.live.lock().unwrap();
        self.link_new(&mut live, path, true);
        Ok(())
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        OsStorage.remove_dir(path)?;
        let mut live = self.live.lock().unwrap();
        let (dir, name) = self.split(&live, path);
        live.dirs.get_mut(&dir).unwrap().remove(&name);
        live.events.push(Ev::Unlink { dir, name });
        Ok(())
    }
    fn sync_dir(&self, path: &Path, site: &'static str) -> io::Result<()> {
        let mut live = self.live.lock().unwrap();
        if self.skip != Some(site) {
            let dir = if path == self.root {
                ROOT
            } else {
                self.ino(&live, path)
            };
            live.events.push(Ev::SyncDir { dir, site });
        }
        Ok(())
    }
    fn wrote_file(&self, path: &Path, _site: &'static str) -> io::Result<()> {
        panic!("the builder writes {path:?} outside the storage backend")
    }
}

/// What happens to each directory's entry operations since its last fsync.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DirFate {
    Kept,
    Lost,
    /// Only the newest one reached the disk (reordered).
    NewestOnly,
    /// The first k reached the disk, in order: a crash between two of them (a journaled file
    /// system commits them in order).
    Prefix(usize),
}

/// The directory fates of a crash just before event `at`: kept, lost, newest only, and every
/// proper prefix of the longest list of unsynced entry operations of one directory.
pub fn dir_fates(events: &[Ev], at: usize) -> Vec<DirFate> {
    let mut pending: HashMap<Ino, usize> = HashMap::new();
    for e in &events[..at] {
        match e {
            Ev::Link { dir, .. }
            | Ev::Unlink { dir, .. }
            | Ev::Rename { dir, .. }
            | Ev::Exchange { dir, .. } => *pending.entry(*dir).or_default() += 1,
            Ev::SyncDir { dir, .. } => {
                pending.remove(dir);
            }
            _ => {}
        }
    }
    let longest = pending.values().copied().max().unwrap_or(0);
    [DirFate::Kept, DirFate::Lost, DirFate::NewestOnly]
        .into_iter()
        .chain((1..longest).map(DirFate::Prefix))
        .collect()
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

fn apply_ns(dirs: &mut HashMap<Ino, BTreeMap<String, Ino>>, e: &Ev) {
    match e {
        Ev::Link { dir, name, ino, .. } => {
            dirs.entry(*dir).or_default().insert(name.clone(), *ino);
        }
        Ev::Unlink { dir, name } => {
            dirs.entry(*dir).or_default().remove(name);
        }
        Ev::Rename { dir, from, to } => {
            let d = dirs.entry(*dir).or_default();
            if let Some(ino) = d.remove(from) {
                d.insert(to.clone(), ino);
            }
        }
        Ev::Exchange { dir, a, b } => {
            let d = dirs.entry(*dir).or_default();
            if let (Some(&ia), Some(&ib)) = (d.get(a), d.get(b)) {
                d.insert(a.clone(), ib);
                d.insert(b.clone(), ia);
            }
        }
        _ => unreachable!(),
    }
}

/// The durable tree after a crash just before event `at`.
pub fn durable_image(
    initial: &Tree,
    events: &[Ev],
    at: usize,
    fate: Fate,
    dir_fate: DirFate,
) -> Tree {
    let mut t = initial.clone();
    let mut pending: HashMap<Ino, Vec<FileOp>> = HashMap::new();
    let mut ns_pending: BTreeMap<Ino, Vec<Ev>> = BTreeMap::new();
    for e in &events[..at] {
        match e {
            Ev::Link {
                dir, ino, is_dir, ..
            } => {
                // a new directory's own (empty) entry list exists from its creation
                if *is_dir {
                    t.dirs.entry(*ino).or_default();
                }
                ns_pending.entry(*dir).or_default().push(e.clone());
            }
            Ev::Unlink { dir, .. } | Ev::Rename { dir, .. } | Ev::Exchange { dir, .. } => {
                ns_pending.entry(*dir).or_default().push(e.clone())
            }
            Ev::Write { ino, .. } | Ev::SetLen { ino, .. } => {
                pending.entry(*ino).or_default().push(file_op(e))
            }
            Ev::Sync { ino, .. } => {
                let c = t.files.entry(*ino).or_default();
                for op in pending.remove(ino).unwrap_or_default() {
                    power_loss::apply(c, &op);
                }
            }
            Ev::SyncDir { dir, .. } => {
                for op in ns_pending.remove(dir).unwrap_or_default() {
                    apply_ns(&mut t.dirs, &op);
                }
            }
            Ev::Ack => {}
        }
    }
    for (ino, ops) in pending {
        let c = t.files.entry(ino).or_default();
        power_loss::apply_unsynced(c, &ops, fate);
    }
    for ops in ns_pending.values() {
        let chosen: &[Ev] = match dir_fate {
            DirFate::Kept => ops,
            DirFate::Lost => &[],
            DirFate::NewestOnly => &ops[ops.len() - 1..],
            DirFate::Prefix(k) => &ops[..k.min(ops.len())],
        };
        for op in chosen {
            apply_ns(&mut t.dirs, op);
        }
    }
    // files are the inodes that are not directories
    t.files.retain(|i, _| !t.dirs.contains_key(i));
    t
}
