//! The small IO surface the WAL (and the layers above) use for files.
//!
//! Everything durable goes through [`Disk`], so a simulated disk with
//! injected faults can replace [`OsDisk`] without touching the logic.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open file the WAL appends to or reads from.
pub trait DiskFile: Send + Sync {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Reads exactly `len` bytes at `offset` into a new buffer. A file may
    /// read straight into the buffer's unused capacity, with no zeroing
    /// first (the real file does: a WAL sender reads every replicated byte
    /// this way); it may move the handle's cursor, which only `append`
    /// uses, and it seeks first.
    fn read_vec_at(&mut self, len: usize, offset: u64) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
    /// Appends `buf` at the end of the file (not yet durable).
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Writes `buf` at `offset` (not yet durable), over whatever is there;
    /// the file grows if it ends before `offset + buf.len()`. The WAL
    /// overwrites the zeros it preallocated this way (a write inside the
    /// file's length costs no metadata at the next `fdatasync`).
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every appended byte durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates to `len` bytes and makes the new length durable.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// Directory and file operations with explicit durability.
pub trait Disk: Send + Sync {
    /// Creates (or truncates) `path` for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    /// File names (not paths) in `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Atomically renames `from` to `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory entries of `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory tree.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Reads a whole (small) file, refusing files above `max_len` bytes.
    fn read_bounded(&self, path: &Path, max_len: u64) -> io::Result<Vec<u8>>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> bool;
}

/// The real file system with real `fsync`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsDisk;

impl OsDisk {
    /// A shareable handle to the real file system.
    pub fn shared() -> Arc<dyn Disk> {
        Arc::new(OsDisk)
    }
}

struct OsFile {
    file: File,
}

impl DiskFile for OsFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn read_vec_at(&mut self, len: usize, offset: u64) -> io::Result<Vec<u8>> {
        // `read_to_end` reads a `File` into the vector's spare capacity
        // without zeroing it (a positioned read into uninitialised memory
        // is not stable Rust): a seek, then reads, instead of a memset of
        // every byte and one `pread`.
        let mut buf = Vec::with_capacity(len);
        self.file.seek(SeekFrom::Start(offset))?;
        (&self.file).take(len as u64).read_to_end(&mut buf)?;
        if buf.len() != len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("read {} of {len} bytes at offset {offset}", buf.len())));
        }
        Ok(buf)
    }
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        // Opened without O_APPEND (Linux `pwrite` ignores the offset under
        // it, and `write_at` needs the offset), so append at the end here.
        self.file.seek(SeekFrom::End(0))?;
        self.file.write_all(buf)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()
    }
}

impl Disk for OsDisk {
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        file.set_len(0)?;
        Ok(Box::new(OsFile { file }))
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(OsFile { file }))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }
    fn read_bounded(&self, path: &Path, max_len: u64) -> io::Result<Vec<u8>> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        if len > max_len {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} is {len} bytes, limit {max_len}", path.display())));
        }
        let mut buf = Vec::with_capacity(len as usize);
        file.take(max_len + 1).read_to_end(&mut buf)?;
        Ok(buf)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// Reads the whole file at `path`. A running primary may cut the
/// preallocated zeros off its last WAL segment while another reader
/// (`aerodb verify`, `wal-dump`, `repair-wal`) reads it: when the file
/// turns out shorter than it was a moment ago, it is read again at its new
/// length (a few times at most).
pub fn read_whole(disk: &dyn Disk, path: &Path) -> io::Result<Vec<u8>> {
    const ATTEMPTS: usize = 4;
    let file = disk.open(path)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut contents = vec![0u8; file.len()? as usize];
        match file.read_exact_at(&mut contents, 0) {
            Ok(()) => return Ok(contents),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && attempt < ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Writes `bytes` to `path` atomically and durably: write a temporary file,
/// fsync it, rename it over `path`, fsync the directory. A crash at any
/// point leaves either the old file or the new one, never a mix.
pub fn write_atomic(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut file = disk.create(&tmp)?;
    file.append(bytes)?;
    file.sync_data()?;
    drop(file);
    disk.rename(&tmp, path)?;
    disk.sync_dir(&dir)
}
