//! Reading another host's disk images through libvirt itself.
//!
//! A remote libvirt host (`qemu+ssh://host/system`) names its guests' disks by paths on *that*
//! host. They are read with `virStorageVolDownload`, which streams any byte range of a storage
//! volume's file — the image container as it is on disk (qcow2 header, tables and all), at any
//! offset and length (<https://libvirt.org/html/libvirt-libvirt-storage.html#virStorageVolDownload>).
//! The inspection above reads through [`FileStore`] and never knows the difference; every
//! transfer is counted and charged to the guest's budget like a local read.
//!
//! Rules:
//! - A path becomes a volume with `virStorageVolLookupByPath`. A file the pool has not listed yet
//!   (created after its last refresh) is found by refreshing the pool whose target is the file's
//!   directory once and looking again; a path outside every pool is refused with the reason.
//!   Nothing else on the remote host is changed: no pool is created or left behind.
//! - libvirt refuses volume downloads on a read-only connection, so this store opens its own
//!   read-write connection; it only ever reads (lookups, info, download) and refreshes pools.
//! - Reads go through a small cache of 64 KiB-aligned blocks per file: the inspection reads a
//!   few hundred small pieces (headers, tables, MFT records, hive cells), mostly close together,
//!   and each download is a round trip or two.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use virt::connect::Connect;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;

use crate::inspect::image::{eof, FileCounter, FileStore, IoStats, ReadAt, StoreFile};

/// Size and alignment of one cached block.
pub const BLOCK: u64 = 64 * 1024;
/// Blocks kept per open file (4 MiB).
const CACHE_BLOCKS: usize = 64;
/// Most bytes fetched by one download (a read spanning more is split).
const MAX_FETCH: u64 = 1024 * 1024;
/// `VIR_STORAGE_VOL_GET_PHYSICAL`: `virStorageVolGetInfoFlags` returns the size of the file
/// itself in `allocation` (libvirt ≥ 3.0; libvirt-storage.h `virStorageVolInfoFlags`).
const VOL_GET_PHYSICAL: u32 = 1;
/// How long a pool refresh is retried while the pool is busy with downloads.
const REFRESH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// The disk files of a remote libvirt host, read through its storage API.
pub struct RemoteFiles {
    conn: Connect,
    uri: String,
    /// Pools refreshed by this store already (each at most once).
    refreshed: Mutex<Vec<String>>,
}

impl RemoteFiles {
    /// Reads through `conn`, which must be read-write (libvirt refuses downloads otherwise).
    pub fn new(conn: Connect, uri: &str) -> RemoteFiles {
        RemoteFiles {
            conn,
            uri: uri.to_string(),
            refreshed: Mutex::new(Vec::new()),
        }
    }

    /// The storage volume whose file is `path` on the remote host.
    fn volume(&self, path: &Path) -> io::Result<StorageVol> {
        let text = path
            .to_str()
            .ok_or_else(|| io::Error::other(format!("{} is not UTF-8", path.display())))?;
        if let Ok(vol) = self.conn.lookup_storage_vol_by_path(text) {
            return Ok(vol);
        }
        // Not (yet) listed: the pool holding this directory may not have been refreshed since
        // the file appeared. Refresh that pool once, and only that one.
        let dir = path.parent().and_then(Path::to_str).unwrap_or("/");
        let pool = self
            .conn
            .lookup_storage_pool_by_target_path(dir)
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{} on {} is in no storage pool (remote images are read through libvirt's \
                     storage API: define a dir pool for {dir} on that host)",
                        path.display(),
                        self.uri
                    ),
                )
            })?;
        let name = pool.name().unwrap_or_default();
        let done = {
            let refreshed = self.refreshed.lock().unwrap_or_else(|p| p.into_inner());
            refreshed.contains(&name)
        };
        if !done && pool.is_active().unwrap_or(false) {
            // libvirt refuses to refresh a pool while one of its volumes is being downloaded
            // ("asynchronous jobs running") — which other guests of this scan may be doing:
            // wait for a gap, for a few seconds at most.
            let deadline = std::time::Instant::now() + REFRESH_PATIENCE;
            loop {
                match pool.refresh(0) {
                    Ok(()) => break,
                    Err(e) if std::time::Instant::now() < deadline => {
                        let _ = e;
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    Err(e) => {
                        return Err(io::Error::other(format!(
                        "{} is not listed in pool {name} on {} and refreshing the pool failed: {}",
                        path.display(),
                        self.uri,
                        e.message()
                    )))
                    }
                }
            }
            self.refreshed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(name.clone());
        }
        self.conn.lookup_storage_vol_by_path(text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} on {}: no such volume in pool {name} ({})",
                    path.display(),
                    self.uri,
                    e.message()
                ),
            )
        })
    }
}

impl FileStore for RemoteFiles {
    fn open(&self, path: &Path, stats: &IoStats) -> io::Result<StoreFile> {
        let vol = self.volume(path)?;
        let libvirt = |what: &str, e: virt::error::Error| {
            io::Error::other(format!(
                "{what} {} on {}: {}",
                path.display(),
                self.uri,
                e.message()
            ))
        };
        let info = vol
            .info_flags(VOL_GET_PHYSICAL)
            .map_err(|e| libvirt("reading the size of", e))?;
        // VIR_STORAGE_VOL_FILE = 0, VIR_STORAGE_VOL_BLOCK = 1: the only kinds that are a disk.
        if info.kind > 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} on {} is not a file or block device (volume type {})",
                    path.display(),
                    self.uri,
                    info.kind
                ),
            ));
        }
        let key = vol.key().map_err(|e| libvirt("reading the key of", e))?;
        let file = RemoteFile {
            conn: self.conn.clone(),
            vol,
            size: info.allocation,
            counter: stats.counter(path),
            cache: Mutex::new(VecDeque::new()),
        };
        Ok(StoreFile {
            reader: Arc::new(file),
            identity: key,
        })
    }
}

/// One remote file: downloads of 64 KiB-aligned blocks, a few kept.
struct RemoteFile {
    conn: Connect,
    vol: StorageVol,
    size: u64,
    counter: Arc<FileCounter>,
    /// (block index, bytes), most recently used last.
    cache: Mutex<VecDeque<(u64, Arc<Vec<u8>>)>>,
}

impl RemoteFile {
    /// Download `[offset, offset + len)` of the file: one counted read.
    fn download(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let len_usize = usize::try_from(len).map_err(io::Error::other)?;
        self.counter.charge(len_usize)?;
        let stream =
            Stream::new(&self.conn, 0).map_err(|e| io::Error::other(e.message().to_string()))?;
        self.vol
            .download(&stream, offset, len, 0)
            .map_err(|e| io::Error::other(format!("download at {offset}: {}", e.message())))?;
        let mut data = vec![0u8; len_usize];
        let mut got = 0;
        while got < data.len() {
            let n = match stream.recv(&mut data[got..]) {
                Ok(n) => n,
                Err(e) => {
                    let _ = stream.abort();
                    return Err(io::Error::other(format!(
                        "download at {offset}: {}",
                        e.message()
                    )));
                }
            };
            if n <= 0 {
                break;
            }
            got += n as usize;
        }
        if got < data.len() {
            let _ = stream.abort();
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("download at {offset}: {got} of {len} bytes arrived"),
            ));
        }
        // The stream must reach its end (libvirt sends nothing more for a bounded download).
        let mut tail = [0u8; 1];
        match stream.recv(&mut tail) {
            Ok(0) => stream
                .finish()
                .map_err(|e| io::Error::other(e.message().to_string()))?,
            _ => {
                let _ = stream.abort();
                return Err(io::Error::other(format!(
                    "download at {offset}: more than the {len} bytes asked for arrived"
                )));
            }
        }
        Ok(data)
    }

    /// Block `index` (its last one may be short), from the cache or downloaded together with
    /// the blocks after it up to `last`.
    fn block(&self, index: u64, last: u64) -> io::Result<Arc<Vec<u8>>> {
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(pos) = cache.iter().position(|(i, _)| *i == index) {
                let hit = cache.remove(pos).expect("position is in range");
                let data = hit.1.clone();
                cache.push_back(hit);
                return Ok(data);
            }
        }
        // Fetch this block and the following missing ones this read also needs, in one call.
        let mut end = index + 1;
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            while end <= last
                && (end - index) * BLOCK < MAX_FETCH
                && !cache.iter().any(|(i, _)| *i == end)
            {
                end += 1;
            }
        }
        let start = index * BLOCK;
        let stop = (end * BLOCK).min(self.size);
        let data = self.download(start, stop - start)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut first = None;
        for (n, chunk) in data.chunks(BLOCK as usize).enumerate() {
            let block = Arc::new(chunk.to_vec());
            if n == 0 {
                first = Some(block.clone());
            }
            cache.retain(|(i, _)| *i != index + n as u64);
            cache.push_back((index + n as u64, block));
            while cache.len() > CACHE_BLOCKS {
                cache.pop_front();
            }
        }
        first.ok_or_else(|| io::Error::other("empty download"))
    }
}

impl ReadAt for RemoteFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| eof(offset, buf.len(), self.size))?;
        if buf.is_empty() {
            return Ok(());
        }
        let last = (end - 1) / BLOCK;
        let mut pos = offset;
        let mut done = 0;
        while done < buf.len() {
            let index = pos / BLOCK;
            let block = self.block(index, last)?;
            let within = (pos - index * BLOCK) as usize;
            let n = (block.len().saturating_sub(within)).min(buf.len() - done);
            if n == 0 {
                return Err(eof(offset, buf.len(), self.size));
            }
            buf[done..done + n].copy_from_slice(&block[within..within + n]);
            done += n;
            pos += n as u64;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }
}
