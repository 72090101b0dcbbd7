//! `SimDisk`: an in-memory [`Disk`] with an explicit durability model and
//! injectable storage faults.
//!
//! Model (FoundationDB-style "unsynced data is lost on kill", with the
//! directory semantics of a journaling file system):
//! - Files are inodes holding *current* bytes (what reads see: the page
//!   cache) and *synced* bytes (what survives power loss). `sync_data`
//!   makes a file's bytes durable; `truncate` sets the length and syncs
//!   (as `OsDisk` does with `set_len` + `sync_all`).
//! - Directories are inodes whose entries (name → inode) also have a
//!   current and a durable version. `create`, `rename`, `remove_*` and
//!   `create_dir_all` change only the current entries; `sync_dir(d)` makes
//!   the entries of `d` durable. A file whose data was synced but whose
//!   entry was not is gone after power loss.
//! - [`SimDisk::crash`] with [`CrashKind::PowerLoss`] reverts every file and
//!   directory to its durable version, optionally tearing the unsynced tail
//!   of appended files (a random prefix survives, maybe with a garbage
//!   partial last sector). [`CrashKind::Process`] keeps everything (the
//!   kernel still has the page cache). Either way every handle opened
//!   before the crash becomes stale and fails.
//!
//! Faults: bit flips and zeroed blocks in synced data (latent sector
//! errors), misdirected appends, EIO on reads / writes / fsyncs (by path
//! prefix, for the next K matching operations), and "die after K more
//! mutating operations" so synchronous code (recovery, snapshot creation,
//! segment rolling) can be crashed half-way: after that every operation
//! fails until the simulator calls [`SimDisk::crash`]. Each injected fault
//! is counted per class, and every byte range a fault damaged is recorded
//! so invariant checks can tell data loss caused by damage from a bug.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use aerodb_wal::disk::{Disk, DiskFile};
use parking_lot::Mutex;

use crate::faults::{FaultClass, FaultCounters};
use crate::rng::SimRng;

/// Sector size for torn writes and zeroed blocks.
pub const SECTOR: usize = 512;

type InodeId = u64;

#[derive(Clone, Debug, Default)]
struct FileData {
    current: Vec<u8>,
    synced: Vec<u8>,
    /// `current[..dirty_from] == synced[..dirty_from]`: bytes at and after
    /// this offset may differ (so a sync copies only those).
    dirty_from: usize,
}

#[derive(Clone, Debug, Default)]
struct DirData {
    current: BTreeMap<String, InodeId>,
    durable: BTreeMap<String, InodeId>,
    /// Metadata journal sequence number made durable by the last `sync_dir`.
    synced_seq: u64,
}

/// One directory-entry change, in the order the file system journals them.
#[derive(Clone, Debug)]
struct MetaOp {
    seq: u64,
    dir: InodeId,
    name: String,
    target: Option<InodeId>,
}

#[derive(Clone, Debug)]
enum Inode {
    File(FileData),
    Dir(DirData),
}

/// What a crash does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashKind {
    /// The process dies; the OS keeps the page cache (nothing is lost).
    Process,
    /// Power loss: everything not durable is lost.
    PowerLoss {
        /// Whether an unsynced appended tail may partly survive (torn write).
        torn: bool,
    },
}

/// Operation classes for EIO rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoClass {
    /// `read_exact_at`, `read_bounded`, `list`.
    Read,
    /// `append`, `create`, `truncate`, `rename`, `remove_*`, `create_dir_all`.
    Write,
    /// `sync_data`, `sync_dir`.
    Sync,
}

impl IoClass {
    fn fault(self) -> FaultClass {
        match self {
            IoClass::Read => FaultClass::ReadEio,
            IoClass::Write => FaultClass::WriteEio,
            IoClass::Sync => FaultClass::FsyncEio,
        }
    }
}

#[derive(Clone, Debug)]
struct EioRule {
    class: IoClass,
    prefix: Option<PathBuf>,
    remaining: u32,
}

/// A byte range of a file that an injected fault changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The fault.
    pub class: FaultClass,
    /// Offsets `[start, end)` in the file.
    pub start: u64,
    /// End offset (exclusive).
    pub end: u64,
}

struct State {
    inodes: BTreeMap<InodeId, Inode>,
    next_inode: InodeId,
    generation: u64,
    eio: Vec<EioRule>,
    die_after: Option<u64>,
    dead: bool,
    misdirect_next: Option<Option<PathBuf>>,
    damage: BTreeMap<InodeId, Vec<Damage>>,
    counters: FaultCounters,
    injected_errors: u64,
    mutating_ops: u64,
    /// Directory changes not yet known durable, in order (a journaling file
    /// system commits metadata in order, so a crash may keep a prefix).
    meta_log: Vec<MetaOp>,
    meta_seq: u64,
    rng: SimRng,
}

const ROOT: InodeId = 0;

fn err(kind: io::ErrorKind, msg: impl Into<String>) -> io::Error {
    io::Error::new(kind, msg.into())
}

fn components(path: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            _ => return Err(err(io::ErrorKind::InvalidInput, format!("simulated disk needs absolute normalised paths: {}", path.display()))),
        }
    }
    Ok(out)
}

impl State {
    fn dir(&self, id: InodeId) -> Option<&DirData> {
        match self.inodes.get(&id) {
            Some(Inode::Dir(d)) => Some(d),
            _ => None,
        }
    }
    fn dir_mut(&mut self, id: InodeId) -> Option<&mut DirData> {
        match self.inodes.get_mut(&id) {
            Some(Inode::Dir(d)) => Some(d),
            _ => None,
        }
    }
    fn file(&self, id: InodeId) -> Option<&FileData> {
        match self.inodes.get(&id) {
            Some(Inode::File(f)) => Some(f),
            _ => None,
        }
    }
    fn file_mut(&mut self, id: InodeId) -> Option<&mut FileData> {
        match self.inodes.get_mut(&id) {
            Some(Inode::File(f)) => Some(f),
            _ => None,
        }
    }

    /// Inode at `path` in the current namespace.
    fn resolve(&self, path: &Path) -> Option<InodeId> {
        let mut at = ROOT;
        for name in components(path).ok()? {
            at = *self.dir(at)?.current.get(&name)?;
        }
        Some(at)
    }

    /// (parent inode, final name) of `path`; the parent must exist.
    fn parent_of(&self, path: &Path) -> io::Result<(InodeId, String)> {
        let mut comps = components(path)?;
        let name = comps.pop().ok_or_else(|| err(io::ErrorKind::InvalidInput, "the root has no parent"))?;
        let mut at = ROOT;
        for c in comps {
            at = *self
                .dir(at)
                .and_then(|d| d.current.get(&c))
                .ok_or_else(|| err(io::ErrorKind::NotFound, format!("{}: parent directory missing", path.display())))?;
        }
        if self.dir(at).is_none() {
            return Err(err(io::ErrorKind::NotFound, format!("{}: parent is not a directory", path.display())));
        }
        Ok((at, name))
    }

    /// Sets (or with `None` removes) entry `name` of directory `dir` in the
    /// current namespace and journals the change under sequence `seq`.
    fn set_entry(&mut self, seq: u64, dir: InodeId, name: &str, target: Option<InodeId>) {
        if let Some(d) = self.dir_mut(dir) {
            match target {
                Some(id) => d.current.insert(name.to_string(), id),
                None => d.current.remove(name),
            };
            self.meta_log.push(MetaOp { seq, dir, name: name.to_string(), target });
        }
    }

    /// A new journal sequence number (one per metadata operation).
    fn next_seq(&mut self) -> u64 {
        self.meta_seq += 1;
        self.meta_seq
    }

    fn new_inode(&mut self, inode: Inode) -> InodeId {
        let id = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(id, inode);
        id
    }

    /// Checks death, the crash countdown and EIO rules before an operation.
    fn gate(&mut self, class: IoClass, path: &Path) -> io::Result<()> {
        if self.dead {
            self.injected_errors += 1;
            return Err(err(io::ErrorKind::Other, "simulated process death: the disk is gone"));
        }
        if class != IoClass::Read {
            self.mutating_ops += 1;
            if let Some(left) = self.die_after.as_mut() {
                if *left == 0 {
                    self.dead = true;
                    self.die_after = None;
                    self.counters.bump(FaultClass::CrashMidOperation);
                    self.injected_errors += 1;
                    return Err(err(io::ErrorKind::Other, "simulated process death: the disk is gone"));
                }
                *left -= 1;
            }
        }
        let hit = self.eio.iter_mut().find(|r| r.class == class && r.remaining > 0 && r.prefix.as_ref().is_none_or(|p| path.starts_with(p)));
        if let Some(rule) = hit {
            rule.remaining -= 1;
            self.eio.retain(|r| r.remaining > 0);
            self.counters.bump(class.fault());
            self.injected_errors += 1;
            return Err(err(io::ErrorKind::Other, format!("simulated EIO ({class:?}) on {}", path.display())));
        }
        Ok(())
    }

    fn record_damage(&mut self, inode: InodeId, class: FaultClass, start: u64, end: u64) {
        self.damage.entry(inode).or_default().push(Damage { class, start, end });
    }

    /// Every file inode reachable in the current namespace, with its path.
    fn files(&self) -> Vec<(PathBuf, InodeId)> {
        let mut out = Vec::new();
        let mut stack = vec![(PathBuf::from("/"), ROOT)];
        while let Some((path, id)) = stack.pop() {
            match self.inodes.get(&id) {
                Some(Inode::Dir(d)) => {
                    for (name, child) in d.current.iter().rev() {
                        stack.push((path.join(name), *child));
                    }
                }
                Some(Inode::File(_)) => out.push((path, id)),
                None => {}
            }
        }
        out.sort();
        out
    }

    fn append(&mut self, inode: InodeId, path: &Path, buf: &[u8]) -> io::Result<()> {
        self.gate(IoClass::Write, path)?;
        let misdirect = match &self.misdirect_next {
            Some(None) => true,
            Some(Some(prefix)) => path.starts_with(prefix),
            None => false,
        };
        if misdirect && !buf.is_empty() {
            self.misdirect_next = None;
            return self.misdirected_append(inode, buf);
        }
        let f = self.file_mut(inode).ok_or_else(|| err(io::ErrorKind::NotFound, "stale inode"))?;
        f.current.extend_from_slice(buf);
        Ok(())
    }

    /// Writes `buf` at `offset` of the file's current contents (zeros fill
    /// any gap); the bytes from `offset` on are unsynced until the next sync.
    fn write_at(&mut self, inode: InodeId, path: &Path, buf: &[u8], offset: u64) -> io::Result<()> {
        self.gate(IoClass::Write, path)?;
        let start = usize::try_from(offset).map_err(|_| err(io::ErrorKind::InvalidInput, "offset too large"))?;
        let end = start.checked_add(buf.len()).ok_or_else(|| err(io::ErrorKind::InvalidInput, "offset too large"))?;
        let f = self.file_mut(inode).ok_or_else(|| err(io::ErrorKind::NotFound, "stale inode"))?;
        if f.current.len() < end {
            f.current.resize(end, 0);
        }
        f.current[start..end].copy_from_slice(buf);
        f.dirty_from = f.dirty_from.min(start);
        Ok(())
    }

    /// The intended range keeps stale contents (zeros); the bytes land at
    /// a random offset of this file or of another file, durably.
    fn misdirected_append(&mut self, inode: InodeId, buf: &[u8]) -> io::Result<()> {
        let len = buf.len();
        let start = {
            let f = self.file_mut(inode).ok_or_else(|| err(io::ErrorKind::NotFound, "stale inode"))?;
            let start = f.current.len();
            f.current.resize(start + len, 0);
            start
        };
        self.record_damage(inode, FaultClass::MisdirectedWrite, start as u64, (start + len) as u64);
        let candidates: Vec<InodeId> = self.files().into_iter().map(|(_, id)| id).filter(|id| self.file(*id).is_some_and(|f| !f.synced.is_empty())).collect();
        let target = if self.rng.ratio(1, 2) || candidates.is_empty() { inode } else { *self.rng.pick(&candidates).unwrap_or(&inode) };
        let Some(f) = self.file_mut(target) else { return Ok(()) };
        let room = f.synced.len().min(f.current.len());
        if room > 0 {
            let n = len.min(room);
            let offset_max = room - n;
            let off = self.rng.below(offset_max as u64 + 1) as usize;
            let Some(f) = self.file_mut(target) else { return Ok(()) };
            f.current[off..off + n].copy_from_slice(&buf[..n]);
            f.synced[off..off + n].copy_from_slice(&buf[..n]);
            self.record_damage(target, FaultClass::MisdirectedWrite, off as u64, (off + n) as u64);
        }
        self.counters.bump(FaultClass::MisdirectedWrite);
        Ok(())
    }
}

/// The simulated disk of one node. Clones share the same state.
#[derive(Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

struct SimFile {
    state: Arc<Mutex<State>>,
    inode: InodeId,
    generation: u64,
    path: PathBuf,
}

impl SimFile {
    fn live<'a>(&self, s: &'a mut State) -> io::Result<&'a mut State> {
        if s.generation != self.generation {
            return Err(err(io::ErrorKind::Other, format!("{}: handle from before a crash", self.path.display())));
        }
        Ok(s)
    }
}

impl DiskFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut guard = self.state.lock();
        let s = self.live(&mut guard)?;
        s.gate(IoClass::Read, &self.path)?;
        let f = s.file(self.inode).ok_or_else(|| err(io::ErrorKind::NotFound, "stale inode"))?;
        let start = usize::try_from(offset).map_err(|_| err(io::ErrorKind::UnexpectedEof, "offset too large"))?;
        let end = start.checked_add(buf.len()).filter(|e| *e <= f.current.len()).ok_or_else(|| err(io::ErrorKind::UnexpectedEof, "read past end of file"))?;
        buf.copy_from_slice(&f.current[start..end]);
        Ok(())
    }
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut guard = self.state.lock();
        let s = self.live(&mut guard)?;
        s.append(self.inode, &self.path, buf)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut guard = self.state.lock();
        let s = self.live(&mut guard)?;
        s.write_at(self.inode, &self.path, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        let mut guard = self.state.lock();
        let s = self.live(&mut guard)?;
        s.gate(IoClass::Sync, &self.path)?;
        let f = s.file_mut(self.inode).ok_or_else(|| err(io::ErrorKind::NotFound, "stale inode"))?;
        let from = f.dirty_from.min(f.synced.len()).min(f.current.len());
        f.synced.truncate(from);
        f.synced.extend_from_slice(&f.current[from..]);
        f.dirty_from = f.current.len();
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        let mut guard = self.state.lock();
        let s = self.live(&mut guard)?;
        if s.dead {
            return Err(err(io::ErrorKind::Other, "simulated process death: the disk is gone"));
        }
        s.file(self.inode).map(|f| f.current.len() as u64).ok_or_else(|| err(io::ErrorKind::NotFound, "stale inode"))
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut guard = self.state.lock();
        let s = self.live(&mut guard)?;
        s.gate(IoClass::Write, &self.path)?;
        let len = usize::try_from(len).map_err(|_| err(io::ErrorKind::InvalidInput, "length too large"))?;
        let f = s.file_mut(self.inode).ok_or_else(|| err(io::ErrorKind::NotFound, "stale inode"))?;
        f.current.resize(len, 0);
        f.synced = f.current.clone();
        f.dirty_from = len;
        Ok(())
    }
}

impl Default for SimDisk {
    fn default() -> Self {
        SimDisk::new(SimRng::new(0, 0))
    }
}

impl SimDisk {
    /// An empty disk holding only `/`. `rng` drives torn writes and fault
    /// targets.
    pub fn new(rng: SimRng) -> Self {
        let mut inodes = BTreeMap::new();
        inodes.insert(ROOT, Inode::Dir(DirData::default()));
        let state = State {
            inodes,
            next_inode: ROOT + 1,
            generation: 0,
            eio: Vec::new(),
            die_after: None,
            dead: false,
            misdirect_next: None,
            damage: BTreeMap::new(),
            counters: FaultCounters::default(),
            injected_errors: 0,
            mutating_ops: 0,
            meta_log: Vec::new(),
            meta_seq: 0,
            rng,
        };
        SimDisk { state: Arc::new(Mutex::new(state)) }
    }

    /// This disk as the trait object production code takes.
    pub fn shared(&self) -> Arc<dyn Disk> {
        Arc::new(self.clone())
    }

    /// Creates `dir` (and parents) durably, as an operator's `mkdir -p`
    /// followed by a sync would.
    pub fn mkdir_durable(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        let mut at = ROOT;
        for name in components(dir)? {
            let existing = s.dir(at).and_then(|d| d.current.get(&name).copied());
            let child = match existing {
                Some(c) => c,
                None => s.new_inode(Inode::Dir(DirData::default())),
            };
            let d = s.dir_mut(at).ok_or_else(|| err(io::ErrorKind::Other, "not a directory"))?;
            d.current.insert(name.clone(), child);
            d.durable.insert(name, child);
            at = child;
        }
        Ok(())
    }

    /// The machine or process crashes. Returns the fault classes that the
    /// crash itself injected (torn writes).
    pub fn crash(&self, kind: CrashKind) -> Vec<FaultClass> {
        let mut s = self.state.lock();
        s.generation += 1;
        s.dead = false;
        s.die_after = None;
        s.misdirect_next = None;
        let mut injected = Vec::new();
        let CrashKind::PowerLoss { torn } = kind else {
            return injected;
        };
        let ids: Vec<InodeId> = s.inodes.keys().copied().collect();
        for id in ids {
            let tear = torn && s.rng.ratio(1, 2);
            // Unsynced bytes are `current[dirty_from..]`: appended ones (at
            // and after the synced length) or ones written over synced
            // bytes (the WAL's preallocated zeros). A prefix of them may
            // have reached the disk.
            let (keep, garbage) = match s.inodes.get(&id) {
                Some(Inode::File(f)) if tear && f.current.len() > f.dirty_from && (f.dirty_from < f.synced.len() || f.current.len() > f.synced.len()) => {
                    let tail = f.current.len() - f.dirty_from;
                    let keep = s.rng.below(tail as u64 + 1) as usize;
                    let garbage = keep > 0 && s.rng.ratio(1, 2);
                    (keep, garbage)
                }
                _ => (0, false),
            };
            let mut noise = Vec::new();
            if garbage {
                noise = vec![0u8; SECTOR];
                s.rng.fill(&mut noise);
            }
            match s.inodes.get_mut(&id) {
                Some(Inode::File(f)) => {
                    if keep > 0 {
                        let start = f.dirty_from;
                        let end = start + keep;
                        // Synced bytes the kept prefix does not reach stay as they were.
                        let mut survived = f.synced.clone();
                        if survived.len() < end {
                            survived.resize(end, 0);
                        }
                        survived[start..end].copy_from_slice(&f.current[start..end]);
                        if garbage {
                            let from = (end / SECTOR * SECTOR).max(start);
                            for (i, b) in survived[from..end].iter_mut().enumerate() {
                                *b = noise[i % SECTOR];
                            }
                        }
                        f.synced = survived;
                        injected.push(FaultClass::TornWrite);
                        if garbage {
                            injected.push(FaultClass::TornGarbage);
                        }
                    }
                    f.current = f.synced.clone();
                    f.dirty_from = f.synced.len();
                }
                Some(Inode::Dir(d)) => d.current = d.durable.clone(),
                None => {}
            }
        }
        // The journal may have committed a prefix of the unsynced directory
        // changes on its own (write-back): replay that prefix, in order.
        let log = std::mem::take(&mut s.meta_log);
        let pending: Vec<u64> = log.iter().filter(|op| s.dir(op.dir).is_some_and(|d| op.seq > d.synced_seq)).map(|op| op.seq).collect();
        if let (Some(first), Some(last)) = (pending.first().copied(), pending.last().copied()) {
            if torn && s.rng.ratio(1, 3) {
                let upto = s.rng.range(first, last);
                let mut kept = false;
                for op in log.iter().filter(|op| op.seq <= upto) {
                    let Some(d) = s.dir_mut(op.dir) else { continue };
                    if op.seq <= d.synced_seq {
                        continue;
                    }
                    match op.target {
                        Some(id) => d.current.insert(op.name.clone(), id),
                        None => d.current.remove(&op.name),
                    };
                    kept = true;
                }
                if kept {
                    injected.push(FaultClass::UnsyncedMetadataKept);
                }
            }
        }
        // What survived is on disk now.
        for inode in s.inodes.values_mut() {
            if let Inode::Dir(d) = inode {
                d.durable = d.current.clone();
            }
        }
        for c in &injected {
            s.counters.bump(*c);
        }
        injected
    }

    /// After `ops` more mutating operations every operation fails, as if
    /// the process died there; the simulator then calls [`SimDisk::crash`].
    pub fn die_after(&self, ops: u64) {
        self.state.lock().die_after = Some(ops);
    }

    /// Whether the process "died" through [`SimDisk::die_after`].
    pub fn is_dead(&self) -> bool {
        self.state.lock().dead
    }

    /// The next `count` operations of `class` on paths under `prefix` (any
    /// path when `None`) fail with EIO.
    pub fn fail_next(&self, class: IoClass, prefix: Option<&Path>, count: u32) {
        if count > 0 {
            self.state.lock().eio.push(EioRule { class, prefix: prefix.map(Path::to_path_buf), remaining: count });
        }
    }

    /// The next append (under `prefix`, or anywhere) is misdirected.
    pub fn misdirect_next_append(&self, prefix: Option<&Path>) {
        self.state.lock().misdirect_next = Some(prefix.map(Path::to_path_buf));
    }

    /// Removes every pending EIO rule, misdirection and death countdown
    /// (the heal phase). Damage already done stays.
    pub fn heal(&self) {
        let mut s = self.state.lock();
        s.eio.clear();
        s.misdirect_next = None;
        s.die_after = None;
    }

    /// Flips one random bit of the synced bytes of a random file under
    /// `prefix`. Returns the file and offset, or `None` if no file has
    /// synced bytes.
    pub fn flip_random_bit(&self, prefix: &Path) -> Option<(PathBuf, u64)> {
        let mut s = self.state.lock();
        let (path, id) = pick_synced_file(&mut s, prefix)?;
        let (off, bit) = {
            let len = s.file(id)?.synced.len() as u64;
            (s.rng.below(len) as usize, s.rng.below(8) as u8)
        };
        let f = s.file_mut(id)?;
        f.synced[off] ^= 1 << bit;
        if off < f.dirty_from && off < f.current.len() {
            f.current[off] ^= 1 << bit;
        }
        s.record_damage(id, FaultClass::BitFlip, off as u64, off as u64 + 1);
        s.counters.bump(FaultClass::BitFlip);
        Some((path, off as u64))
    }

    /// Zeroes one random sector-aligned block of the synced bytes of a
    /// random file under `prefix`.
    pub fn zero_random_block(&self, prefix: &Path) -> Option<(PathBuf, u64)> {
        let mut s = self.state.lock();
        let (path, id) = pick_synced_file(&mut s, prefix)?;
        let len = s.file(id)?.synced.len();
        let sectors = len.div_ceil(SECTOR);
        let start = s.rng.below(sectors as u64) as usize * SECTOR;
        let end = (start + SECTOR).min(len);
        let f = s.file_mut(id)?;
        f.synced[start..end].fill(0);
        let cur_end = end.min(f.dirty_from).min(f.current.len());
        if start < cur_end {
            f.current[start..cur_end].fill(0);
        }
        s.record_damage(id, FaultClass::ZeroedBlock, start as u64, end as u64);
        s.counters.bump(FaultClass::ZeroedBlock);
        Some((path, start as u64))
    }

    /// Fault counts injected by this disk (including crashes' torn writes).
    pub fn counters(&self) -> FaultCounters {
        self.state.lock().counters.clone()
    }

    /// Counts a fault the simulator attributes to this disk.
    pub fn count(&self, class: FaultClass) {
        self.state.lock().counters.bump(class);
    }

    /// Injected errors returned so far (EIO and "dead" failures).
    pub fn injected_errors(&self) -> u64 {
        self.state.lock().injected_errors
    }

    /// Mutating operations performed so far.
    pub fn mutating_ops(&self) -> u64 {
        self.state.lock().mutating_ops
    }

    /// Whether any fault ever damaged stored bytes on this disk.
    pub fn ever_damaged(&self) -> bool {
        self.state.lock().damage.values().any(|v| !v.is_empty())
    }

    /// Damage recorded on the file currently at `path`.
    pub fn damage_at(&self, path: &Path) -> Vec<Damage> {
        let s = self.state.lock();
        s.resolve(path).and_then(|id| s.damage.get(&id).cloned()).unwrap_or_default()
    }

    /// Current (page-cache) bytes of the file at `path`.
    pub fn current_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state.lock();
        s.resolve(path).and_then(|id| s.file(id)).map(|f| f.current.clone())
    }

    /// `len` current bytes of the file at `path` from `offset` (fewer at
    /// the end of the file; `None` if there is no such file).
    pub fn current_range(&self, path: &Path, offset: u64, len: usize) -> Option<Vec<u8>> {
        let s = self.state.lock();
        let f = s.resolve(path).and_then(|id| s.file(id))?;
        let start = usize::try_from(offset).ok()?.min(f.current.len());
        let end = start.saturating_add(len).min(f.current.len());
        Some(f.current[start..end].to_vec())
    }

    /// The bytes a power loss now would leave at `path`: the file must be
    /// reachable through durable directory entries, and only its synced
    /// bytes count. `None` if a power loss would leave no file there.
    pub fn durable_file(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state.lock();
        let mut at = ROOT;
        for name in components(path).ok()? {
            at = *s.dir(at)?.durable.get(&name)?;
        }
        s.file(at).map(|f| f.synced.clone())
    }

    /// Durable bytes of the file at `path` (as far as its data goes; its
    /// directory entry may itself not be durable).
    pub fn synced_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state.lock();
        s.resolve(path).and_then(|id| s.file(id)).map(|f| f.synced.clone())
    }

    /// Every file path in the current namespace, sorted.
    pub fn list_files(&self) -> Vec<PathBuf> {
        self.state.lock().files().into_iter().map(|(p, _)| p).collect()
    }

    /// Every file path that would exist after a power loss now, sorted.
    pub fn list_durable_files(&self) -> Vec<PathBuf> {
        let s = self.state.lock();
        let mut out = Vec::new();
        let mut stack = vec![(PathBuf::from("/"), ROOT)];
        while let Some((path, id)) = stack.pop() {
            match s.inodes.get(&id) {
                Some(Inode::Dir(d)) => {
                    for (name, child) in &d.durable {
                        stack.push((path.join(name), *child));
                    }
                }
                Some(Inode::File(_)) => out.push(path),
                None => {}
            }
        }
        out.sort();
        out
    }
}

fn pick_synced_file(s: &mut State, prefix: &Path) -> Option<(PathBuf, InodeId)> {
    let files: Vec<(PathBuf, InodeId)> =
        s.files().into_iter().filter(|(p, id)| p.starts_with(prefix) && s.file(*id).is_some_and(|f| !f.synced.is_empty())).collect();
    let i = s.rng.below(files.len() as u64) as usize;
    files.get(i).cloned()
}

impl Disk for SimDisk {
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let mut s = self.state.lock();
        s.gate(IoClass::Write, path)?;
        let (parent, name) = s.parent_of(path)?;
        let existing = s.dir(parent).and_then(|d| d.current.get(&name).copied());
        let inode = match existing {
            Some(id) => {
                let f = s.file_mut(id).ok_or_else(|| err(io::ErrorKind::Other, format!("{} is a directory", path.display())))?;
                f.current.clear();
                f.dirty_from = 0;
                id
            }
            None => {
                let id = s.new_inode(Inode::File(FileData::default()));
                let seq = s.next_seq();
                s.set_entry(seq, parent, &name, Some(id));
                id
            }
        };
        Ok(Box::new(SimFile { state: self.state.clone(), inode, generation: s.generation, path: path.to_path_buf() }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let s = self.state.lock();
        if s.dead {
            return Err(err(io::ErrorKind::Other, "simulated process death: the disk is gone"));
        }
        let inode = s.resolve(path).ok_or_else(|| err(io::ErrorKind::NotFound, format!("{} not found", path.display())))?;
        if s.file(inode).is_none() {
            return Err(err(io::ErrorKind::Other, format!("{} is a directory", path.display())));
        }
        Ok(Box::new(SimFile { state: self.state.clone(), inode, generation: s.generation, path: path.to_path_buf() }))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut s = self.state.lock();
        s.gate(IoClass::Read, dir)?;
        let id = s.resolve(dir).ok_or_else(|| err(io::ErrorKind::NotFound, format!("{} not found", dir.display())))?;
        let d = s.dir(id).ok_or_else(|| err(io::ErrorKind::Other, format!("{} is not a directory", dir.display())))?;
        Ok(d.current.keys().cloned().collect())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.gate(IoClass::Write, dir)?;
        let mut at = ROOT;
        for name in components(dir)? {
            let existing = s.dir(at).and_then(|d| d.current.get(&name).copied());
            at = match existing {
                Some(id) if s.dir(id).is_some() => id,
                Some(_) => return Err(err(io::ErrorKind::AlreadyExists, format!("{} exists and is not a directory", dir.display()))),
                None => {
                    let id = s.new_inode(Inode::Dir(DirData::default()));
                    let seq = s.next_seq();
                    s.set_entry(seq, at, &name, Some(id));
                    id
                }
            };
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.gate(IoClass::Write, from)?;
        let (src_parent, src_name) = s.parent_of(from)?;
        let (dst_parent, dst_name) = s.parent_of(to)?;
        let id = s
            .dir(src_parent)
            .and_then(|d| d.current.get(&src_name).copied())
            .ok_or_else(|| err(io::ErrorKind::NotFound, format!("{} not found", from.display())))?;
        if (src_parent, &src_name) == (dst_parent, &dst_name) {
            return Ok(());
        }
        if let Some(target) = s.dir(dst_parent).and_then(|d| d.current.get(&dst_name).copied()) {
            let src_is_dir = s.dir(id).is_some();
            match s.dir(target) {
                Some(_) if !src_is_dir => return Err(err(io::ErrorKind::Other, format!("{} is a directory", to.display()))),
                Some(t) if !t.current.is_empty() => return Err(err(io::ErrorKind::Other, format!("{} is not empty", to.display()))),
                None if src_is_dir => return Err(err(io::ErrorKind::Other, format!("{} is not a directory", to.display()))),
                _ => {}
            }
        }
        // One journal transaction: both entries change or neither.
        let seq = s.next_seq();
        s.set_entry(seq, src_parent, &src_name, None);
        s.set_entry(seq, dst_parent, &dst_name, Some(id));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.gate(IoClass::Sync, dir)?;
        let id = s.resolve(dir).ok_or_else(|| err(io::ErrorKind::NotFound, format!("{} not found", dir.display())))?;
        let seq = s.meta_seq;
        let d = s.dir_mut(id).ok_or_else(|| err(io::ErrorKind::Other, format!("{} is not a directory", dir.display())))?;
        d.durable = d.current.clone();
        d.synced_seq = seq;
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.gate(IoClass::Write, path)?;
        let (parent, name) = s.parent_of(path)?;
        let id =
            s.dir(parent).and_then(|d| d.current.get(&name).copied()).ok_or_else(|| err(io::ErrorKind::NotFound, format!("{} not found", path.display())))?;
        if s.file(id).is_none() {
            return Err(err(io::ErrorKind::Other, format!("{} is a directory", path.display())));
        }
        let seq = s.next_seq();
        s.set_entry(seq, parent, &name, None);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.gate(IoClass::Write, path)?;
        let (parent, name) = s.parent_of(path)?;
        let id =
            s.dir(parent).and_then(|d| d.current.get(&name).copied()).ok_or_else(|| err(io::ErrorKind::NotFound, format!("{} not found", path.display())))?;
        if s.dir(id).is_none() {
            return Err(err(io::ErrorKind::Other, format!("{} is not a directory", path.display())));
        }
        // rm -rf unlinks every entry below, then the directory itself.
        let mut stack = vec![id];
        while let Some(d) = stack.pop() {
            let names: Vec<(String, InodeId)> = s.dir(d).map(|dir| dir.current.iter().map(|(n, c)| (n.clone(), *c)).collect()).unwrap_or_default();
            for (n, child) in names {
                let seq = s.next_seq();
                s.set_entry(seq, d, &n, None);
                stack.push(child);
            }
        }
        let seq = s.next_seq();
        s.set_entry(seq, parent, &name, None);
        Ok(())
    }

    fn read_bounded(&self, path: &Path, max_len: u64) -> io::Result<Vec<u8>> {
        let mut s = self.state.lock();
        s.gate(IoClass::Read, path)?;
        let id = s.resolve(path).ok_or_else(|| err(io::ErrorKind::NotFound, format!("{} not found", path.display())))?;
        let f = s.file(id).ok_or_else(|| err(io::ErrorKind::Other, format!("{} is a directory", path.display())))?;
        if f.current.len() as u64 > max_len {
            return Err(err(io::ErrorKind::InvalidData, format!("{} is {} bytes, limit {max_len}", path.display(), f.current.len())));
        }
        Ok(f.current.clone())
    }

    fn exists(&self, path: &Path) -> bool {
        self.state.lock().resolve(path).is_some()
    }
}
