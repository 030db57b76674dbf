//! The read-only byte layer every reader of guest data sits on.
//!
//! Everything above this module (qcow2, partitions, NTFS, registry hives) reads through
//! [`ReadAt`]: positioned reads with no shared cursor, so one open image can serve many lookups,
//! and a window of it (a partition, a file inside NTFS) is just another `ReadAt`.
//!
//! Host files are opened through a [`FileStore`]: [`LocalFiles`] opens them on this machine as
//! [`HostFile`]s; the host layer offers one that reads another host's files through libvirt. Either
//! way every read is counted into an [`IoStats`] (and charged to its budget) so `--stats` and the
//! benchmarks can report what a lookup really cost.

pub mod compression;
pub mod disk;
pub mod error;
pub mod qcow2;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub mod gpt;
pub mod mbr;
pub mod ntfs;
pub mod partition;
pub mod windows_root;

/// Positioned, read-only access to a sized byte range.
///
/// `read_exact_at` fills the whole buffer or fails; a read that reaches past [`ReadAt::size`] is an
/// error of kind `UnexpectedEof` (readers decide whether a short device means zeros or damage).
pub trait ReadAt: Send + Sync {
    /// Read exactly `buf.len()` bytes starting at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Size in bytes of the readable range.
    fn size(&self) -> u64;
}

impl<T: ReadAt + ?Sized> ReadAt for Arc<T> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Box<T> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
}

/// An in-memory byte buffer (resident NTFS data, test inputs).
impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_from_slice(self, buf, offset)
    }
    fn size(&self) -> u64 {
        self.len() as u64
    }
}

/// Copy `buf.len()` bytes of `data` at `offset` into `buf`, or fail with `UnexpectedEof`.
pub fn read_from_slice(data: &[u8], buf: &mut [u8], offset: u64) -> io::Result<()> {
    let start = usize::try_from(offset).map_err(|_| eof(offset, buf.len(), data.len() as u64))?;
    let end = start
        .checked_add(buf.len())
        .filter(|&e| e <= data.len())
        .ok_or_else(|| eof(offset, buf.len(), data.len() as u64))?;
    buf.copy_from_slice(&data[start..end]);
    Ok(())
}

/// The error for a read that reaches past the end of a range.
pub fn eof(offset: u64, len: usize, size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("read of {len} bytes at offset {offset} is past the end ({size} bytes)"),
    )
}

/// Per-file read counters, shared by every reader opened from one inspection, with an optional
/// budget: once the bytes read or the time spent pass it, every further read fails.
#[derive(Debug, Default)]
pub struct IoStats {
    files: Mutex<Vec<Arc<FileCounter>>>,
    budget: Arc<ReadBudget>,
}

/// The limits of one inspection and what it has used.
#[derive(Debug)]
struct ReadBudget {
    bytes: AtomicU64,
    max_bytes: u64,
    deadline: Option<std::time::Instant>,
    exceeded: std::sync::atomic::AtomicBool,
}

impl Default for ReadBudget {
    fn default() -> ReadBudget {
        ReadBudget {
            bytes: AtomicU64::new(0),
            max_bytes: u64::MAX,
            deadline: None,
            exceeded: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl ReadBudget {
    /// Account for a read of `len` bytes, or refuse it when the budget is spent.
    fn charge(&self, len: usize) -> io::Result<()> {
        let used = self
            .bytes
            .fetch_add(len as u64, Ordering::Relaxed)
            .saturating_add(len as u64);
        let late = self.deadline.is_some_and(|d| std::time::Instant::now() > d);
        if used > self.max_bytes || late {
            self.exceeded.store(true, Ordering::Relaxed);
            return Err(io::Error::other(if late {
                "read budget exceeded: the inspection ran out of time".to_string()
            } else {
                format!(
                    "read budget exceeded: more than {} bytes read",
                    self.max_bytes
                )
            }));
        }
        Ok(())
    }
}

/// Bytes and read calls against one host file.
#[derive(Debug)]
pub struct FileCounter {
    pub path: PathBuf,
    bytes: AtomicU64,
    reads: AtomicU64,
    budget: Arc<ReadBudget>,
}

impl FileCounter {
    /// Account for one read of `len` bytes: refused once the inspection's budget is spent.
    pub fn charge(&self, len: usize) -> io::Result<()> {
        self.budget.charge(len)?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        Ok(())
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

/// A snapshot of one file's counters, for reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileStats {
    pub path: PathBuf,
    pub bytes_read: u64,
    pub reads: u64,
}

impl IoStats {
    pub fn new() -> Arc<IoStats> {
        Arc::new(IoStats::default())
    }

    /// Counters whose reads fail once `max_bytes` have been read or `max_time` has passed.
    pub fn with_budget(max_bytes: u64, max_time: Option<std::time::Duration>) -> Arc<IoStats> {
        Arc::new(IoStats {
            files: Mutex::default(),
            budget: Arc::new(ReadBudget {
                max_bytes,
                deadline: max_time.map(|t| std::time::Instant::now() + t),
                ..ReadBudget::default()
            }),
        })
    }

    /// A read was refused because the budget was spent.
    pub fn budget_exceeded(&self) -> bool {
        self.budget.exceeded.load(Ordering::Relaxed)
    }

    /// The counter for `path`, created on first use (one per distinct path).
    pub fn counter(&self, path: &Path) -> Arc<FileCounter> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = files.iter().find(|c| c.path == path) {
            return c.clone();
        }
        let c = Arc::new(FileCounter {
            path: path.to_path_buf(),
            bytes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            budget: self.budget.clone(),
        });
        files.push(c.clone());
        c
    }

    /// Counters of every file opened so far, in the order they were first opened.
    pub fn snapshot(&self) -> Vec<FileStats> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files
            .iter()
            .map(|c| FileStats {
                path: c.path.clone(),
                bytes_read: c.bytes(),
                reads: c.reads(),
            })
            .collect()
    }

    /// Total bytes read from all files.
    pub fn total_bytes(&self) -> u64 {
        self.snapshot().iter().map(|f| f.bytes_read).sum()
    }
}

/// A file of a disk's chain, opened for reading through a [`FileStore`].
pub struct StoreFile {
    /// Its bytes; every read counted and budgeted.
    pub reader: Arc<dyn ReadAt>,
    /// What makes two paths the same file (device and inode here; the volume key on a remote
    /// host), so a backing chain that loops is caught.
    pub identity: String,
}

/// Where the files of a disk live, and how to open one of them read-only.
///
/// Paths are the host's paths, as the domain XML and the qcow2 headers name them; the store
/// decides how to reach them. Only regular files and block devices may be opened.
pub trait FileStore: Send + Sync {
    /// Open `path` read-only, its reads counted in `stats`.
    fn open(&self, path: &Path, stats: &IoStats) -> io::Result<StoreFile>;
}

/// The files of this machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalFiles;

impl FileStore for LocalFiles {
    fn open(&self, path: &Path, stats: &IoStats) -> io::Result<StoreFile> {
        use std::os::unix::fs::MetadataExt;
        let file = HostFile::open(path, stats)?;
        let meta = file.file.metadata()?;
        Ok(StoreFile {
            reader: Arc::new(file),
            identity: format!("{}:{}", meta.dev(), meta.ino()),
        })
    }
}

/// A host file or block device opened read-only, with its reads counted.
///
/// The size of a block device (LVM LV, multipath device) is found by seeking to its end, since
/// its metadata length is 0.
pub struct HostFile {
    file: File,
    size: u64,
    counter: Arc<FileCounter>,
}

impl HostFile {
    pub fn open(path: &Path, stats: &IoStats) -> io::Result<HostFile> {
        // Only a regular file or a block device is a disk. Anything else is refused before it is
        // opened: opening a FIFO for reading waits for a writer (forever, for a backing path a
        // crafted qcow2 header names), and a character device or socket has no size to read.
        not_a_disk(path, &std::fs::metadata(path)?)?;
        // O_NONBLOCK: should the path be swapped for a FIFO after the check, the open still
        // returns at once (and the check below refuses it). Reads of regular files and block
        // devices do not honour the flag.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        let meta = file.metadata()?;
        not_a_disk(path, &meta)?;
        let size = if meta.file_type().is_file() {
            meta.len()
        } else {
            file.seek(SeekFrom::End(0))?
        };
        Ok(HostFile {
            file,
            size,
            counter: stats.counter(path),
        })
    }

    pub fn path(&self) -> &Path {
        &self.counter.path
    }
}

/// Refuse what is not a regular file or a block device, naming what it is.
fn not_a_disk(path: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let what = if t.is_file() || t.is_block_device() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else {
        "not a regular file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is {what}, not a disk image (only regular files and block devices are read)",
            path.display()
        ),
    ))
}

impl ReadAt for HostFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.size) {
            return Err(eof(offset, buf.len(), self.size));
        }
        self.counter.charge(buf.len())?;
        FileExt::read_exact_at(&self.file, buf, offset)
    }
    fn size(&self) -> u64 {
        self.size
    }
}

/// A sub-range `[start, start + len)` of another reader: a partition, a volume.
pub struct Window<R> {
    inner: R,
    start: u64,
    len: u64,
}

impl<R: ReadAt> Window<R> {
    /// A window over `inner`; fails if the range does not lie inside it.
    pub fn new(inner: R, start: u64, len: u64) -> io::Result<Window<R>> {
        match start.checked_add(len) {
            Some(end) if end <= inner.size() => Ok(Window { inner, start, len }),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "range of {len} bytes at offset {start} lies outside the {}-byte device",
                    inner.size()
                ),
            )),
        }
    }
}

impl<R: ReadAt> ReadAt for Window<R> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match offset.checked_add(buf.len() as u64) {
            Some(end) if end <= self.len => self.inner.read_exact_at(buf, self.start + offset),
            _ => Err(eof(offset, buf.len(), self.len)),
        }
    }
    fn size(&self) -> u64 {
        self.len
    }
}

/// `Read + Seek` over a [`ReadAt`], with a small read-ahead buffer in front.
///
/// Crates that want a stream (the `ntfs` crate issues many tiny reads) get one without owning
/// the device. Reads stop at `size()`; the buffer is one aligned block of `block` bytes.
pub struct Cursor<R> {
    inner: R,
    pos: u64,
    block: usize,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<R: ReadAt> Cursor<R> {
    /// A cursor with a read-ahead block of `block` bytes (rounded up to at least 512).
    pub fn new(inner: R, block: usize) -> Cursor<R> {
        Cursor {
            inner,
            pos: 0,
            block: block.max(512),
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: ReadAt> Read for Cursor<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let size = self.inner.size();
        if out.is_empty() || self.pos >= size {
            return Ok(0);
        }
        let in_buf =
            self.pos >= self.buf_start && self.pos < self.buf_start + self.buf.len() as u64;
        if !in_buf {
            // Large reads bypass the buffer.
            if out.len() >= self.block {
                let n = (out.len() as u64).min(size - self.pos) as usize;
                self.inner.read_exact_at(&mut out[..n], self.pos)?;
                self.pos += n as u64;
                return Ok(n);
            }
            let block = self.block as u64;
            let start = self.pos - self.pos % block;
            let n = block.min(size - start) as usize;
            self.buf.resize(n, 0);
            self.inner.read_exact_at(&mut self.buf, start)?;
            self.buf_start = start;
        }
        let off = (self.pos - self.buf_start) as usize;
        let n = out.len().min(self.buf.len() - off);
        out[..n].copy_from_slice(&self.buf[off..off + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: ReadAt> Seek for Cursor<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let size = self.inner.size();
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing position",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bounds_are_enforced() {
        let data: Vec<u8> = (0..100u8).collect();
        assert!(Window::new(data.clone(), 90, 11).is_err());
        let w = Window::new(data, 10, 20).unwrap();
        let mut b = [0u8; 5];
        w.read_exact_at(&mut b, 15).unwrap();
        assert_eq!(b, [25, 26, 27, 28, 29]);
        assert!(w.read_exact_at(&mut b, 16).is_err());
        assert!(w.read_exact_at(&mut b, u64::MAX - 1).is_err());
    }

    #[test]
    fn cursor_reads_and_seeks_like_a_file() {
        let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let mut c = Cursor::new(data.clone(), 1024);
        let mut all = Vec::new();
        c.read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
        c.seek(SeekFrom::Start(1020)).unwrap();
        let mut b = [0u8; 10];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b[..], &data[1020..1030]);
        c.seek(SeekFrom::End(-3)).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, &data[4997..]);
        assert!(c.seek(SeekFrom::Current(-10_000)).is_err());
    }

    #[test]
    fn host_file_counts_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        std::fs::write(&p, vec![7u8; 4096]).unwrap();
        let stats = IoStats::new();
        let f = HostFile::open(&p, &stats).unwrap();
        let mut b = [0u8; 100];
        f.read_exact_at(&mut b, 0).unwrap();
        f.read_exact_at(&mut b, 3996).unwrap();
        assert!(f.read_exact_at(&mut b, 4000).is_err());
        assert_eq!(stats.total_bytes(), 200);
        assert_eq!(stats.snapshot()[0].reads, 2);
        assert!(HostFile::open(dir.path(), &stats).is_err());
    }

    #[test]
    fn budget_refuses_reads_once_spent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        std::fs::write(&p, vec![7u8; 4096]).unwrap();
        let stats = IoStats::with_budget(250, None);
        let f = HostFile::open(&p, &stats).unwrap();
        let mut b = [0u8; 100];
        f.read_exact_at(&mut b, 0).unwrap();
        f.read_exact_at(&mut b, 100).unwrap();
        assert!(!stats.budget_exceeded());
        let e = f.read_exact_at(&mut b, 200).unwrap_err();
        assert!(e.to_string().contains("budget exceeded"), "{e}");
        assert!(stats.budget_exceeded());
        let late = IoStats::with_budget(u64::MAX, Some(std::time::Duration::ZERO));
        let f = HostFile::open(&p, &late).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(f.read_exact_at(&mut b, 0).is_err());
    }
}
