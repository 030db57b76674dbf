//! An NTFS volume read through the `ntfs` crate, exposed as a [`GuestFs`].
//!
//! The crate wants a `Read + Seek` stream and issues many small reads (it re-reads the `$MFT`
//! record for every file it opens). In front of the partition [`Window`] sit, in this order:
//! a small block cache ([`BlockCache`], so repeated metadata reads cost nothing), a [`Cursor`]
//! (read-ahead stream), and [`Fuel`], a per-operation read budget: a hostile index B-tree whose
//! subnodes point back at themselves makes the crate walk forever, and the budget turns that
//! into an error.
//!
//! File contents are not read through the crate: [`NtfsVolume::open`] maps the file's unnamed
//! `$DATA` runs once and returns a [`ReadAt`] that reads the clusters directly, lazily (sparse runs
//! read as zeros). Compressed and encrypted files are refused: the crate would return their raw
//! on-disk bytes.
//!
//! Names are compared through the volume's own `$UpCase` table (as NTFS orders its directory
//! indexes), read one 4 KiB page at a time as comparisons need it ([`Upcase`]): looking up ASCII
//! names among ASCII entries reads one page, not the whole 128 KiB table.
//!
//! [`Window`]: super::Window

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use ::ntfs::attribute_value::NtfsAttributeValue;
use ::ntfs::structured_values::{
    NtfsFileAttributeFlags, NtfsFileName, NtfsFileNamespace, NtfsIndexRoot, NtfsVolumeFlags,
};
use ::ntfs::{
    KnownNtfsFileRecordNumber, Ntfs, NtfsAttributeFlags, NtfsAttributeType, NtfsFile, NtfsReadSeek,
};
use anyhow::{anyhow, bail, Context};
use serde::Serialize;

use super::{Cursor, ReadAt};
use crate::inspect::guestfs::{Entry, GuestFs};

/// Bytes the crate may read for one lookup, listing or open before it is stopped.
pub const FUEL_BYTES: u64 = 64 * 1024 * 1024;
/// Read calls the crate may make for one operation.
pub const FUEL_READS: u64 = 200_000;
/// Entries returned at most by one directory listing.
pub const MAX_DIR_ENTRIES: usize = 100_000;
/// Path components followed at most.
pub const MAX_PATH_DEPTH: usize = 64;
/// Data runs mapped at most for one file.
pub const MAX_RUNS: usize = 1_000_000;
/// Size of a cache block.
const BLOCK: u64 = 4096;
/// Blocks kept by the metadata cache (1 MiB).
const CACHE_BLOCKS: usize = 256;
/// Size of the `$UpCase` table: one UTF-16 code unit for each of the 65536 code units.
const UPCASE_BYTES: u64 = 65536 * 2;
/// Bytes of the `$UpCase` table read at a time.
const UPCASE_PAGE: u64 = 4096;

/// Facts about an NTFS volume from its boot sector and `$Volume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NtfsFacts {
    /// Volume label (`$VOLUME_NAME`), when set.
    pub label: Option<String>,
    /// 64-bit volume serial number, hex.
    pub serial: String,
    /// NTFS version from `$VOLUME_INFORMATION` ("3.1").
    pub version: Option<String>,
    /// `VOLUME_IS_DIRTY` in `$VOLUME_INFORMATION`: not cleanly unmounted (or chkdsk scheduled).
    pub dirty: bool,
    pub cluster_size: u32,
    pub sector_size: u16,
    /// Size the boot sector states, bytes.
    pub size: u64,
    /// What could not be read about the volume (the rest is still usable).
    pub problems: Vec<String>,
}

/// A read-only NTFS volume.
pub struct NtfsVolume {
    ntfs: Ntfs,
    /// The volume's `$UpCase` table, mapped on the first name lookup (a volume that is only
    /// listed, like "System Reserved", never pays for it) and read page by page.
    upcase: OnceLock<Upcase>,
    io: Mutex<Fuel<Cursor<BlockCache>>>,
    volume: Arc<dyn ReadAt>,
    /// Directory paths (upper-cased) already resolved to file record numbers.
    dirs: Mutex<HashMap<String, u64>>,
    facts: NtfsFacts,
}

impl NtfsVolume {
    /// Open the NTFS volume that fills `volume` (a partition window) and read its `$Volume`
    /// facts.
    pub fn open(volume: Arc<dyn ReadAt>) -> anyhow::Result<NtfsVolume> {
        guard("opening the NTFS volume", || Self::open_inner(volume))
    }

    fn open_inner(volume: Arc<dyn ReadAt>) -> anyhow::Result<NtfsVolume> {
        let cache = BlockCache::new(volume.clone());
        let mut io = Fuel::new(Cursor::new(cache, BLOCK as usize));
        let ntfs = Ntfs::new(&mut io).map_err(|e| anyhow!("NTFS boot sector: {}", e.why()))?;
        // The crate allocates one file record's size for every record it reads; a boot sector
        // may state up to 127 clusters of 2 MiB. Real volumes use 1 KiB or 4 KiB.
        if !RECORD_SIZES.contains(&ntfs.file_record_size())
            || !ntfs.file_record_size().is_power_of_two()
        {
            bail!(
                "NTFS boot sector: a file record size of {} bytes is not supported (NTFS uses 1024 or 4096)",
                ntfs.file_record_size()
            );
        }
        if ntfs.size() > volume.size() {
            bail!(
                "the NTFS boot sector states {} bytes, the partition holds {}",
                ntfs.size(),
                volume.size()
            );
        }
        let mut problems = Vec::new();
        io.refuel();
        let label = match ntfs.volume_name(&mut io) {
            Some(Ok(n)) => Some(n.name().to_string_lossy()),
            Some(Err(e)) => {
                problems.push(format!("$Volume name: {}", e.why()));
                None
            }
            None => None,
        };
        io.refuel();
        let (version, dirty) = match ntfs.volume_info(&mut io) {
            Ok(v) => (
                Some(format!("{}.{}", v.major_version(), v.minor_version())),
                v.flags().contains(NtfsVolumeFlags::IS_DIRTY),
            ),
            Err(e) => {
                problems.push(format!("$Volume information: {}", e.why()));
                (None, false)
            }
        };
        let facts = NtfsFacts {
            label,
            serial: format!("{:016X}", ntfs.serial_number()),
            version,
            dirty,
            cluster_size: ntfs.cluster_size(),
            sector_size: ntfs.sector_size(),
            size: ntfs.size(),
            problems,
        };
        Ok(NtfsVolume {
            ntfs,
            upcase: OnceLock::new(),
            io: Mutex::new(io),
            volume,
            dirs: Mutex::new(HashMap::new()),
            facts,
        })
    }

    /// Label, serial, version and dirty flag.
    pub fn facts(&self) -> &NtfsFacts {
        &self.facts
    }

    fn io(&self) -> std::sync::MutexGuard<'_, Fuel<Cursor<BlockCache>>> {
        let mut io = self.io.lock().unwrap_or_else(|p| p.into_inner());
        io.refuel();
        io
    }

    /// The volume's `$UpCase` table, mapped on first use (its pages are read as needed).
    fn upcase(&self, io: &mut Fuel<Cursor<BlockCache>>) -> anyhow::Result<&Upcase> {
        if let Some(u) = self.upcase.get() {
            return Ok(u);
        }
        let record = KnownNtfsFileRecordNumber::UpCase as u64;
        let file = self
            .ntfs
            .file(io, record)
            .map_err(|e| anyhow!("reading file record {record} ($UpCase): {}", e.why()))?;
        let entry = self.entry_of(io, &file, "$UpCase".to_string())?;
        if entry.compressed || entry.encrypted || entry.is_dir {
            bail!("NTFS $UpCase (file record {record}) is not a plain file");
        }
        let data = self.content(io, &file, "$UpCase")?;
        let _ = self.upcase.set(Upcase::new(data)?);
        self.upcase
            .get()
            .ok_or_else(|| anyhow!("NTFS $UpCase table could not be kept"))
    }

    /// Resolve `path` to a file record number and the entry name as stored.
    fn resolve(
        &self,
        io: &mut Fuel<Cursor<BlockCache>>,
        path: &str,
    ) -> anyhow::Result<Option<(u64, String)>> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if parts.len() > MAX_PATH_DEPTH {
            bail!("path {path:?} has more than {MAX_PATH_DEPTH} components");
        }
        let mut record = ::ntfs::KnownNtfsFileRecordNumber::RootDirectory as u64;
        let mut name = String::new();
        // Start from the deepest cached parent directory.
        let mut first = 0;
        {
            let dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
            for i in (1..parts.len()).rev() {
                if let Some(&r) = dirs.get(&parts[..i].join("/").to_uppercase()) {
                    record = r;
                    first = i;
                    break;
                }
            }
        }
        for (i, part) in parts.iter().enumerate().skip(first) {
            let dir = self
                .ntfs
                .file(io, record)
                .map_err(|e| anyhow!("reading file record {record}: {}", e.why()))?;
            if !dir.is_directory() {
                return Ok(None);
            }
            check_index_root(io, &dir)
                .map_err(|e| anyhow!("directory index of file record {record}: {e}"))?;
            let index = dir
                .directory_index(io)
                .map_err(|e| anyhow!("directory index of file record {record}: {}", e.why()))?;
            let mut finder = index.finder();
            let upcase = self.upcase(io)?;
            let wanted: Vec<u16> = part.encode_utf16().collect();
            // The comparison cannot fail inside the crate's search: a page of $UpCase that
            // cannot be read ends the search at once ("equal") and is reported here.
            let failed: Cell<Option<io::Error>> = Cell::new(None);
            let found = finder.find(io, |key: &NtfsFileName| {
                match upcase.compare(wanted.iter().copied(), key.name().u16_iter()) {
                    Ok(o) => o,
                    Err(e) => {
                        failed.set(Some(e));
                        Ordering::Equal
                    }
                }
            });
            if let Some(e) = failed.take() {
                bail!("looking up {part:?} in file record {record}: NTFS $UpCase table: {e}");
            }
            let found = match found {
                None => return Ok(None),
                Some(r) => r.map_err(|e| {
                    anyhow!("looking up {part:?} in file record {record}: {}", e.why())
                })?,
            };
            record = found.file_reference().file_record_number();
            name = match found.key() {
                Some(Ok(k)) => k.name().to_string_lossy(),
                _ => (*part).to_string(),
            };
            if i + 1 < parts.len() {
                let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
                if dirs.len() < 10_000 {
                    dirs.insert(parts[..=i].join("/").to_uppercase(), record);
                }
            }
        }
        Ok(Some((record, name)))
    }

    fn entry_of(
        &self,
        io: &mut Fuel<Cursor<BlockCache>>,
        file: &NtfsFile<'_>,
        name: String,
    ) -> anyhow::Result<Entry> {
        let is_dir = file.is_directory();
        let mut entry = Entry {
            name,
            is_dir,
            size: 0,
            compressed: false,
            encrypted: false,
        };
        if let Ok(info) = file.info() {
            let a = info.file_attributes();
            entry.compressed = a.contains(NtfsFileAttributeFlags::COMPRESSED);
            entry.encrypted = a.contains(NtfsFileAttributeFlags::ENCRYPTED);
        }
        if !is_dir {
            if let Some(item) = file.data(io, "") {
                let item = item.map_err(|e| anyhow!("$DATA of {:?}: {}", entry.name, e.why()))?;
                let attr = item
                    .to_attribute()
                    .map_err(|e| anyhow!("$DATA of {:?}: {}", entry.name, e.why()))?;
                entry.size = attr.value_length();
                let f = attr.flags();
                entry.compressed |= f.contains(NtfsAttributeFlags::COMPRESSED);
                entry.encrypted |= f.contains(NtfsAttributeFlags::ENCRYPTED);
            }
        }
        Ok(entry)
    }

    fn lookup_inner(&self, path: &str) -> anyhow::Result<Option<Entry>> {
        let mut io = self.io();
        let Some((record, name)) = self.resolve(&mut io, path)? else {
            return Ok(None);
        };
        let file = self
            .ntfs
            .file(&mut *io, record)
            .map_err(|e| anyhow!("reading file record {record} for {path:?}: {}", e.why()))?;
        self.entry_of(&mut io, &file, name).map(Some)
    }

    fn read_dir_inner(&self, path: &str) -> anyhow::Result<Vec<Entry>> {
        let mut io = self.io();
        let Some((record, _)) = self.resolve(&mut io, path)? else {
            bail!("{path:?}: no such directory");
        };
        let dir = self
            .ntfs
            .file(&mut *io, record)
            .map_err(|e| anyhow!("reading file record {record}: {}", e.why()))?;
        if !dir.is_directory() {
            bail!("{path:?} is not a directory");
        }
        check_index_root(&mut io, &dir).map_err(|e| anyhow!("directory index of {path:?}: {e}"))?;
        let index = dir
            .directory_index(&mut *io)
            .map_err(|e| anyhow!("directory index of {path:?}: {}", e.why()))?;
        let mut entries = index.entries();
        let mut out = Vec::new();
        // A B-tree walk yields every entry once. An entry seen again means an index node points
        // back into the walk (a cycle); the walk would repeat it until a cap stopped it.
        let mut seen: HashSet<(u64, u8, Vec<u16>)> = HashSet::new();
        while let Some(e) = entries.next(&mut *io) {
            let e = e.map_err(|e| anyhow!("listing {path:?}: {}", e.why()))?;
            let Some(key) = e.key() else { continue };
            let key: NtfsFileName = key.map_err(|e| anyhow!("listing {path:?}: {}", e.why()))?;
            let id = (
                e.file_reference().file_record_number(),
                key.namespace() as u8,
                key.name().u16_iter().collect::<Vec<u16>>(),
            );
            if !seen.insert(id) {
                bail!(
                    "the directory index of {path:?} has a cycle: {:?} (file record {}) is reached twice",
                    key.name().to_string_lossy(),
                    e.file_reference().file_record_number()
                );
            }
            if key.namespace() == NtfsFileNamespace::Dos {
                continue; // the 8.3 alias of a long name listed under its own name
            }
            let name = key.name().to_string_lossy();
            if name == "." || name == ".." {
                continue;
            }
            if out.len() >= MAX_DIR_ENTRIES {
                bail!("{path:?} has more than {MAX_DIR_ENTRIES} entries");
            }
            let a = key.file_attributes();
            out.push(Entry {
                is_dir: key.is_directory(),
                size: if key.is_directory() {
                    0
                } else {
                    key.data_size()
                },
                compressed: a.contains(NtfsFileAttributeFlags::COMPRESSED),
                encrypted: a.contains(NtfsFileAttributeFlags::ENCRYPTED),
                name,
            });
        }
        Ok(out)
    }

    fn open_inner_file(&self, path: &str) -> anyhow::Result<Arc<dyn ReadAt>> {
        let mut io = self.io();
        let Some((record, name)) = self.resolve(&mut io, path)? else {
            bail!("{path:?}: no such file");
        };
        let file = self
            .ntfs
            .file(&mut *io, record)
            .map_err(|e| anyhow!("reading file record {record} for {path:?}: {}", e.why()))?;
        let entry = self.entry_of(&mut io, &file, name)?;
        if entry.is_dir {
            bail!("{path:?} is a directory");
        }
        if entry.compressed {
            bail!("{path:?} is NTFS-compressed: its on-disk bytes are not its content");
        }
        if entry.encrypted {
            bail!("{path:?} is EFS-encrypted: its content cannot be read");
        }
        self.content(&mut io, &file, path)
    }

    /// The unnamed `$DATA` of `file` (checked by the caller to be neither compressed nor
    /// encrypted), mapped to its clusters on the volume.
    fn content(
        &self,
        io: &mut Fuel<Cursor<BlockCache>>,
        file: &NtfsFile<'_>,
        path: &str,
    ) -> anyhow::Result<Arc<dyn ReadAt>> {
        let Some(item) = file.data(&mut *io, "") else {
            return Ok(Arc::new(Vec::<u8>::new()));
        };
        let item = item.map_err(|e| anyhow!("$DATA of {path:?}: {}", e.why()))?;
        let attr = item
            .to_attribute()
            .map_err(|e| anyhow!("$DATA of {path:?}: {}", e.why()))?;
        let value = attr
            .value(&mut *io)
            .map_err(|e| anyhow!("$DATA of {path:?}: {}", e.why()))?;
        let size = value.len();
        match value {
            NtfsAttributeValue::Resident(r) => Ok(Arc::new(r.data().to_vec())),
            NtfsAttributeValue::NonResident(nr) => {
                let mut runs = Vec::new();
                let mut vcn_offset = 0u64;
                for run in nr.data_runs() {
                    let run = run.map_err(|e| anyhow!("data runs of {path:?}: {}", e.why()))?;
                    if runs.len() >= MAX_RUNS {
                        bail!("{path:?} has more than {MAX_RUNS} data runs");
                    }
                    let len = run.allocated_size();
                    runs.push(DataRun {
                        offset: vcn_offset,
                        len,
                        position: run.data_position().value().map(|p| p.get()),
                    });
                    vcn_offset = vcn_offset
                        .checked_add(len)
                        .ok_or_else(|| anyhow!("data runs of {path:?} overflow"))?;
                    if vcn_offset >= size {
                        break;
                    }
                }
                FileData::checked(self.volume.clone(), runs, size, path)
            }
            value @ NtfsAttributeValue::AttributeListNonResident(_) => {
                let runs = map_by_seeking(value, io, self.ntfs.cluster_size(), path)?;
                FileData::checked(self.volume.clone(), runs, size, path)
            }
        }
    }
}

/// A volume's `$UpCase` table (the upper-case form of every UTF-16 code unit, by which NTFS
/// orders file names in its directory indexes), read one 4 KiB page at a time on first use.
pub struct Upcase {
    data: Arc<dyn ReadAt>,
    /// Pages read so far, by page number.
    pages: Mutex<HashMap<u64, Arc<Vec<u16>>>>,
}

impl Upcase {
    /// The table stored in `data`, which must be exactly 128 KiB.
    pub fn new(data: Arc<dyn ReadAt>) -> anyhow::Result<Upcase> {
        if data.size() != UPCASE_BYTES {
            bail!(
                "NTFS $UpCase holds {} bytes, not {UPCASE_BYTES}",
                data.size()
            );
        }
        Ok(Upcase {
            data,
            pages: Mutex::new(HashMap::new()),
        })
    }

    /// The upper-case form of `unit`.
    pub fn upper(&self, unit: u16) -> io::Result<u16> {
        let units_per_page = UPCASE_PAGE / 2;
        let number = u64::from(unit) / units_per_page;
        let at = (u64::from(unit) % units_per_page) as usize;
        let mut pages = self.pages.lock().unwrap_or_else(|p| p.into_inner());
        let page = match pages.get(&number) {
            Some(p) => p.clone(),
            None => {
                let mut raw = vec![0u8; UPCASE_PAGE as usize];
                self.data.read_exact_at(&mut raw, number * UPCASE_PAGE)?;
                let page: Arc<Vec<u16>> = Arc::new(
                    raw.chunks_exact(2)
                        .map(|b| u16::from_le_bytes([b[0], b[1]]))
                        .collect(),
                );
                pages.insert(number, page.clone());
                page
            }
        };
        page.get(at)
            .copied()
            .ok_or_else(|| io::Error::other(format!("no $UpCase entry for unit {unit:#06x}")))
    }

    /// Compare two names as NTFS orders them: unit by unit, each upper-cased through the table;
    /// a name that is a prefix of the other comes first.
    pub fn compare(
        &self,
        mut a: impl Iterator<Item = u16>,
        mut b: impl Iterator<Item = u16>,
    ) -> io::Result<Ordering> {
        loop {
            match (a.next(), b.next()) {
                (Some(x), Some(y)) => {
                    if x != y {
                        let (x, y) = (self.upper(x)?, self.upper(y)?);
                        if x != y {
                            return Ok(x.cmp(&y));
                        }
                    }
                }
                (Some(_), None) => return Ok(Ordering::Greater),
                (None, Some(_)) => return Ok(Ordering::Less),
                (None, None) => return Ok(Ordering::Equal),
            }
        }
    }

    /// Number of pages read so far.
    pub fn pages_read(&self) -> usize {
        self.pages.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Map a value spread over several attributes (an attribute list) by seeking through it one
/// cluster at a time and asking where each cluster lies. Bounded by [`MAX_RUNS`] clusters.
fn map_by_seeking(
    mut value: NtfsAttributeValue<'_, '_>,
    io: &mut Fuel<Cursor<BlockCache>>,
    cluster: u32,
    path: &str,
) -> anyhow::Result<Vec<DataRun>> {
    let size = value.len();
    let cluster = u64::from(cluster.max(512));
    if size / cluster > MAX_RUNS as u64 {
        bail!("{path:?} spans more than {MAX_RUNS} clusters in an attribute list");
    }
    let mut runs: Vec<DataRun> = Vec::new();
    let mut offset = 0u64;
    while offset < size {
        value
            .seek(io, SeekFrom::Start(offset))
            .map_err(|e| anyhow!("seeking in {path:?} at {offset}: {}", e.why()))?;
        let position = value.data_position().value().map(|p| p.get());
        match runs.last_mut() {
            Some(last)
                if last.offset + last.len == offset
                    && match (last.position, position) {
                        (Some(a), Some(b)) => a + last.len == b,
                        (None, None) => true,
                        _ => false,
                    } =>
            {
                last.len += cluster
            }
            _ => runs.push(DataRun {
                offset,
                len: cluster,
                position,
            }),
        }
        offset += cluster;
    }
    Ok(runs)
}

/// Run `f`, turning a panic inside the `ntfs` crate (hostile input it did not anticipate) into an
/// error, so one bad guest cannot stop a scan.
/// File and index record sizes this reader accepts (powers of two; NTFS uses 1 KiB file
/// records and 4 KiB index records): the `ntfs` crate allocates a buffer of the stated size for
/// every record it reads, and an index root states its record size in 32 bits.
const RECORD_SIZES: std::ops::RangeInclusive<u32> = 512..=65_536;

/// Refuse a directory whose `$I30` index root states an index record size out of
/// [`RECORD_SIZES`] before the crate walks the index (and allocates that much per node).
fn check_index_root(io: &mut Fuel<Cursor<BlockCache>>, dir: &NtfsFile<'_>) -> anyhow::Result<()> {
    let mut attributes = dir.attributes();
    while let Some(item) = attributes.next(io) {
        let item = item.map_err(|e| anyhow!("{}", e.why()))?;
        let attribute = item.to_attribute().map_err(|e| anyhow!("{}", e.why()))?;
        if !matches!(attribute.ty(), Ok(NtfsAttributeType::IndexRoot)) {
            continue;
        }
        if !attribute.name().is_ok_and(|n| n == "$I30") {
            continue;
        }
        let root = attribute
            .resident_structured_value::<NtfsIndexRoot>()
            .map_err(|e| anyhow!("{}", e.why()))?;
        let size = root.index_record_size();
        if !RECORD_SIZES.contains(&size) || !size.is_power_of_two() {
            bail!("its index root states an index record size of {size} bytes (NTFS uses 4096)");
        }
        return Ok(());
    }
    Ok(()) // no index root: the crate reports the missing attribute itself
}

/// An error of the `ntfs` crate as one readable line: its I/O errors are shown through their
/// own message (the crate prints them with `Debug`, which buries the cause in struct syntax).
trait Why {
    fn why(&self) -> String;
}

impl Why for ::ntfs::NtfsError {
    fn why(&self) -> String {
        match self {
            ::ntfs::NtfsError::Io(e) => format!("I/O error: {e}"),
            e => e.to_string(),
        }
    }
}

impl Why for io::Error {
    fn why(&self) -> String {
        self.to_string()
    }
}

fn guard<T>(what: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(anyhow!(
                "{what}: the NTFS reader failed on malformed data ({msg})"
            ))
        }
    }
}

impl GuestFs for NtfsVolume {
    fn lookup(&self, path: &str) -> anyhow::Result<Option<Entry>> {
        guard("NTFS lookup", || self.lookup_inner(path)).with_context(|| format!("lookup {path:?}"))
    }
    fn read_dir(&self, path: &str) -> anyhow::Result<Vec<Entry>> {
        guard("NTFS directory listing", || self.read_dir_inner(path))
    }
    fn open(&self, path: &str) -> anyhow::Result<Arc<dyn ReadAt>> {
        guard("NTFS open", || self.open_inner_file(path))
    }
}

/// One contiguous piece of a file: `len` bytes at file offset `offset`, stored at volume byte
/// `position` (or sparse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DataRun {
    offset: u64,
    len: u64,
    position: Option<u64>,
}

/// A non-resident file's content, read cluster run by run from the volume.
struct FileData {
    volume: Arc<dyn ReadAt>,
    runs: Vec<DataRun>,
    size: u64,
}

impl FileData {
    fn checked(
        volume: Arc<dyn ReadAt>,
        runs: Vec<DataRun>,
        size: u64,
        path: &str,
    ) -> anyhow::Result<Arc<dyn ReadAt>> {
        let mapped = runs.last().map(|r| r.offset + r.len).unwrap_or(0);
        if mapped < size {
            bail!("{path:?}: data runs cover {mapped} bytes of its {size}");
        }
        for r in &runs {
            if let Some(p) = r.position {
                let end = p.checked_add(r.len.min(size.saturating_sub(r.offset)));
                if end.is_none_or(|e| e > volume.size()) {
                    bail!(
                        "{path:?}: a data run at volume byte {p} ({} bytes) lies outside the volume",
                        r.len
                    );
                }
            }
        }
        Ok(Arc::new(FileData { volume, runs, size }))
    }
}

impl ReadAt for FileData {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.size) {
            return Err(super::eof(offset, buf.len(), self.size));
        }
        let mut done = 0usize;
        // First run that ends after `offset`.
        let mut i = self.runs.partition_point(|r| r.offset + r.len <= offset);
        while done < buf.len() {
            let pos = offset + done as u64;
            let run = self
                .runs
                .get(i)
                .ok_or_else(|| super::eof(pos, 1, self.size))?;
            let within = pos - run.offset;
            let n = ((run.len - within) as usize).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            match run.position {
                Some(p) => self.volume.read_exact_at(out, p + within)?,
                None => out.fill(0),
            }
            done += n;
            i += 1;
        }
        Ok(())
    }
    fn size(&self) -> u64 {
        self.size
    }
}

/// Cached blocks by number, and their insertion order (oldest first, evicted first).
type CacheState = (HashMap<u64, Arc<Vec<u8>>>, VecDeque<u64>);

/// A bounded cache of aligned 4 KiB blocks of the volume, for the crate's metadata reads.
pub struct BlockCache {
    inner: Arc<dyn ReadAt>,
    state: Mutex<CacheState>,
}

impl BlockCache {
    pub fn new(inner: Arc<dyn ReadAt>) -> BlockCache {
        BlockCache {
            inner,
            state: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    fn block(&self, n: u64) -> io::Result<Arc<Vec<u8>>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = st.0.get(&n) {
            return Ok(b.clone());
        }
        let start = n * BLOCK;
        let len = BLOCK.min(self.inner.size().saturating_sub(start)) as usize;
        let mut data = vec![0u8; len];
        self.inner.read_exact_at(&mut data, start)?;
        let data = Arc::new(data);
        if st.1.len() >= CACHE_BLOCKS {
            if let Some(old) = st.1.pop_front() {
                st.0.remove(&old);
            }
        }
        st.0.insert(n, data.clone());
        st.1.push_back(n);
        Ok(data)
    }
}

impl ReadAt for BlockCache {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.inner.size()) {
            return Err(super::eof(offset, buf.len(), self.inner.size()));
        }
        // Bulk reads (the 128 KiB upcase table) go straight through.
        if buf.len() as u64 > 8 * BLOCK {
            return self.inner.read_exact_at(buf, offset);
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + (done as u64);
            let block = self.block(pos / BLOCK)?;
            let within = (pos % BLOCK) as usize;
            let avail = block.get(within..).unwrap_or(&[]);
            if avail.is_empty() {
                return Err(super::eof(pos, buf.len() - done, self.inner.size()));
            }
            let n = avail.len().min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&avail[..n]);
            done += n;
        }
        Ok(())
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
}

/// A `Read + Seek` stream with a read budget: once spent, reads fail.
pub struct Fuel<S> {
    inner: S,
    bytes: u64,
    reads: u64,
}

impl<S> Fuel<S> {
    pub fn new(inner: S) -> Fuel<S> {
        Fuel {
            inner,
            bytes: FUEL_BYTES,
            reads: FUEL_READS,
        }
    }
    /// Restore the full budget (at the start of each operation).
    pub fn refuel(&mut self) {
        self.bytes = FUEL_BYTES;
        self.reads = FUEL_READS;
    }
}

impl<S: Read> Read for Fuel<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reads == 0 || self.bytes < buf.len() as u64 {
            return Err(io::Error::other(
                "NTFS structure walk exceeded its read budget (looping or oversized metadata)",
            ));
        }
        self.reads -= 1;
        let n = self.inner.read(buf)?;
        self.bytes -= n as u64;
        Ok(n)
    }
}

impl<S: Seek> Seek for Fuel<S> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_data_maps_runs_and_sparse_holes() {
        let vol: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
        let vol: Arc<dyn ReadAt> = Arc::new(vol);
        let runs = vec![
            DataRun {
                offset: 0,
                len: 4096,
                position: Some(8192),
            },
            DataRun {
                offset: 4096,
                len: 4096,
                position: None,
            },
            DataRun {
                offset: 8192,
                len: 4096,
                position: Some(100),
            },
        ];
        let f = FileData::checked(vol.clone(), runs.clone(), 10_000, "f").unwrap();
        let mut b = vec![0u8; 10_000];
        f.read_exact_at(&mut b, 0).unwrap();
        let mut want = vec![0u8; 10_000];
        vol.read_exact_at(&mut want[..4096], 8192).unwrap();
        vol.read_exact_at(&mut want[8192..], 100).unwrap();
        assert_eq!(b, want);
        assert!(f.read_exact_at(&mut [0u8; 2], 9_999).is_err());
        // Runs that do not cover the size, or point outside the volume, are refused.
        assert!(FileData::checked(vol.clone(), runs[..2].to_vec(), 10_000, "f").is_err());
        let outside = vec![DataRun {
            offset: 0,
            len: 4096,
            position: Some(63 * 1024),
        }];
        assert!(FileData::checked(vol, outside, 4096, "f").is_err());
    }

    #[test]
    fn fuel_runs_out() {
        let mut f = Fuel::new(std::io::Cursor::new(vec![0u8; 16]));
        f.reads = 2;
        let mut b = [0u8; 4];
        f.read_exact(&mut b).unwrap();
        f.read_exact(&mut b).unwrap();
        assert!(f.read(&mut b).is_err());
        f.refuel();
        assert!(f.read(&mut b).is_ok());
    }

    /// A `$UpCase` table: identity, with ASCII a-z and the given units mapped.
    fn upcase_table(extra: &[(u16, u16)]) -> Vec<u8> {
        let mut t: Vec<u16> = (0..=u16::MAX).collect();
        for c in b'a'..=b'z' {
            t[usize::from(c)] = u16::from(c - 32);
        }
        for &(from, to) in extra {
            t[usize::from(from)] = to;
        }
        t.iter().flat_map(|u| u.to_le_bytes()).collect()
    }

    /// Counts the bytes read from a table.
    struct Counted(Vec<u8>, std::sync::atomic::AtomicU64);
    impl ReadAt for Counted {
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            self.1
                .fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
            crate::inspect::image::read_from_slice(&self.0, buf, offset)
        }
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
    }

    #[test]
    fn upcase_compares_like_ntfs_and_reads_only_the_pages_it_needs() {
        // U+1F00 (page 3) upper-cases to U+1F08 on this volume; U+00E9 to U+00C9 (page 0).
        let table = Arc::new(Counted(
            upcase_table(&[(0x1F00, 0x1F08), (0xE9, 0xC9)]),
            Default::default(),
        ));
        let u = Upcase::new(table.clone()).unwrap();
        let cmp = |a: &str, b: &str| u.compare(a.encode_utf16(), b.encode_utf16()).unwrap();
        // Identical names read nothing.
        assert_eq!(cmp("System32", "System32"), Ordering::Equal);
        assert_eq!(u.pages_read(), 0);
        assert_eq!(cmp("system32", "SYSTEM32"), Ordering::Equal);
        assert_eq!(cmp("config", "CONFIG"), Ordering::Equal);
        assert_eq!(cmp("Windows", "WINDOWS"), Ordering::Equal);
        assert_eq!(u.pages_read(), 1);
        assert_eq!(table.1.load(std::sync::atomic::Ordering::Relaxed), 4096);
        // Ordered by upper-cased units: 'a' becomes 'A' (0x41), before '_' (0x5F).
        assert_eq!(cmp("a", "_"), Ordering::Less);
        assert_eq!(cmp("Drivers", "DriverStore"), Ordering::Less);
        // A prefix comes first.
        assert_eq!(cmp("SYSTEM", "system.LOG1"), Ordering::Less);
        assert_eq!(cmp("SYSTEM.LOG1", "system"), Ordering::Greater);
        assert_eq!(cmp("café", "CAFÉ"), Ordering::Equal);
        assert_eq!(u.pages_read(), 1);
        // Beyond the first page, by the volume's table (not by Rust's own case mapping).
        assert_eq!(cmp("\u{1F00}x", "\u{1F08}X"), Ordering::Equal);
        assert_eq!(u.pages_read(), 2);
        assert_eq!(cmp("\u{0436}", "\u{0416}"), Ordering::Greater);
        // A table of the wrong size is refused; a page that cannot be read is an error.
        assert!(Upcase::new(Arc::new(vec![0u8; 4096])).is_err());
        struct Broken;
        impl ReadAt for Broken {
            fn read_exact_at(&self, _: &mut [u8], _: u64) -> io::Result<()> {
                Err(io::Error::other("bad sector"))
            }
            fn size(&self) -> u64 {
                UPCASE_BYTES
            }
        }
        let broken = Upcase::new(Arc::new(Broken)).unwrap();
        assert!(broken
            .compare("a".encode_utf16(), "b".encode_utf16())
            .is_err());
        assert_eq!(
            broken
                .compare("a".encode_utf16(), "a".encode_utf16())
                .unwrap(),
            Ordering::Equal
        );
    }

    #[test]
    fn garbage_is_not_an_ntfs_volume() {
        let mut d = vec![0u8; 1 << 20];
        d[3..11].copy_from_slice(b"NTFS    ");
        assert!(NtfsVolume::open(Arc::new(d)).is_err());
    }
}
