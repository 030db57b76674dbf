//! A read-only qcow2 (version 2 and 3) reader, written from qemu's `docs/interop/qcow2.txt`.
//!
//! [`Qcow2Image::open`] reads and checks the header and its extensions, and nothing else: the L1
//! and L2 tables are read in 4 KiB slices when a read needs them and kept in a small LRU cache, so
//! reading one sector of a large image costs the header, one L1 slice, one L2 slice and the data.
//!
//! Decompressed clusters are cached too (up to 8 MiB), since file system readers issue many small
//! reads into the same cluster.
//!
//! Supported: zlib and zstd compressed clusters, zero clusters, extended L2 entries (subclusters
//! that are allocated, zero, or fall through to the backing file), external data files (read
//! through the L2 mapping like qemu does, also with `data_file_raw`), internal snapshots (only the
//! active L1 table is read). The backing file is attached by the caller
//! ([`Qcow2Image::with_backing`]; see `disk.rs` for the chain rules); without one, unallocated
//! clusters read as zeros.
//!
//! Refused with a reason: encryption, unknown incompatible feature bits, the corrupt bit, and any
//! header field out of range. Every size is checked against the file before it is used, and every
//! table and cluster read is bounds-checked: a damaged image gives an error, never a panic.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::compression::{decompress_cluster, CompressionType};
use super::error::ImageError;
use super::{FileStore, IoStats, LocalFiles, ReadAt};

/// The first four bytes of every qcow2 image.
pub const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";
/// Smallest cluster size (512 bytes).
pub const MIN_CLUSTER_BITS: u32 = 9;
/// Largest cluster size (2 MiB, qemu's limit).
pub const MAX_CLUSTER_BITS: u32 = 21;
/// qemu's limit on the size of the L1 table.
pub const MAX_L1_BYTES: u64 = 32 << 20;
/// qemu's limit on the size of the refcount table.
const MAX_REFCOUNT_TABLE_BYTES: u64 = 8 << 20;
/// qemu's limit on the number of internal snapshots.
const MAX_SNAPSHOTS: u32 = 65536;
/// Longest backing file name the format allows.
const MAX_BACKING_NAME: u32 = 1023;
/// Longest string header extension (backing format, data file name) accepted.
const MAX_STRING_EXTENSION: u32 = 4096;
/// Most header extensions read before the header is called corrupt.
const MAX_EXTENSIONS: usize = 1024;

/// Incompatible feature bit 0: refcounts may be inconsistent (harmless for reading).
pub const INCOMPAT_DIRTY: u64 = 1 << 0;
/// Incompatible feature bit 1: qemu found the image corrupt.
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
/// Incompatible feature bit 2: guest data is in an external data file.
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
/// Incompatible feature bit 3: the `compression_type` field is not zlib.
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
/// Incompatible feature bit 4: extended L2 entries (subclusters).
pub const INCOMPAT_EXTENDED_L2: u64 = 1 << 4;
const INCOMPAT_KNOWN: u64 = INCOMPAT_DIRTY
    | INCOMPAT_CORRUPT
    | INCOMPAT_DATA_FILE
    | INCOMPAT_COMPRESSION
    | INCOMPAT_EXTENDED_L2;
/// Autoclear feature bit 1: the external data file is a consistent raw image.
pub const AUTOCLEAR_DATA_FILE_RAW: u64 = 1 << 1;

const EXT_END: u32 = 0x0000_0000;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_FEATURE_NAMES: u32 = 0x6803_f857;
const EXT_BITMAPS: u32 = 0x2385_2875;
const EXT_ENCRYPTION: u32 = 0x0537_be77;
const EXT_DATA_FILE: u32 = 0x4441_5441;

/// Bits 9..=55 of an L1 or L2 entry: a host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L2_COPIED: u64 = 1 << 63;
const L2_COMPRESSED: u64 = 1 << 62;
const L2_ZERO: u64 = 1;

/// Bytes of L1/L2 table read and cached at a time.
const SLICE_BYTES: u64 = 4096;
/// Table slices kept in the cache (256 KiB).
const CACHE_SLICES: usize = 64;
/// Memory for decompressed clusters kept in the cache (at least one cluster is kept).
const COMPRESSED_CACHE_BYTES: u64 = 8 << 20;
/// Most decompressed clusters kept, whatever their size.
const COMPRESSED_CACHE_MAX: usize = 64;

/// One entry of the feature name table extension.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeatureName {
    /// 0 incompatible, 1 compatible, 2 autoclear.
    pub kind: u8,
    pub bit: u8,
    pub name: String,
}

/// The checked qcow2 header with what its extensions say.
#[derive(Debug, Clone)]
pub struct Qcow2Header {
    pub version: u32,
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size: u64,
    pub crypt_method: u32,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    pub snapshots_offset: u64,
    pub incompatible_features: u64,
    pub compatible_features: u64,
    pub autoclear_features: u64,
    pub refcount_order: u32,
    pub header_length: u32,
    pub compression_type: CompressionType,
    /// The backing file name exactly as stored in the image.
    pub backing_file: Option<OsString>,
    /// The backing format from the header extension (`qcow2`, `raw`, ...), if recorded.
    pub backing_format: Option<String>,
    /// The external data file name from the header extension, as stored.
    pub data_file: Option<OsString>,
    pub feature_names: Vec<FeatureName>,
    /// The image carries persistent dirty bitmaps (ignored for reading).
    pub has_bitmaps: bool,
}

impl Qcow2Header {
    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }
    /// Whether L2 entries are 128-bit with a subcluster bitmap.
    pub fn extended_l2(&self) -> bool {
        self.incompatible_features & INCOMPAT_EXTENDED_L2 != 0
    }
    /// Whether guest data lives in an external data file.
    pub fn has_data_file(&self) -> bool {
        self.incompatible_features & INCOMPAT_DATA_FILE != 0
    }
    /// Whether the external data file is a consistent raw image by itself.
    pub fn data_file_raw(&self) -> bool {
        self.autoclear_features & AUTOCLEAR_DATA_FILE_RAW != 0
    }
    /// Whether the dirty bit is set (refcounts may be stale; data is readable).
    pub fn dirty(&self) -> bool {
        self.incompatible_features & INCOMPAT_DIRTY != 0
    }
    /// Number of guest clusters one L2 table maps.
    pub fn l2_entries(&self) -> u64 {
        self.cluster_size() / if self.extended_l2() { 16 } else { 8 }
    }

    /// Read and check the header of the qcow2 image in `file` (named `path` in errors).
    pub fn read(file: &dyn ReadAt, path: &Path) -> Result<Qcow2Header, ImageError> {
        let corrupt = |offset: u64, what: String| ImageError::Corrupt {
            path: path.to_path_buf(),
            offset,
            what,
        };
        let file_size = file.size();
        let head_len = file_size.min(SLICE_BYTES);
        let mut head = vec![0u8; head_len as usize];
        file.read_exact_at(&mut head, 0)
            .map_err(|source| ImageError::Read {
                path: path.to_path_buf(),
                offset: 0,
                what: "the qcow2 header",
                source,
            })?;
        if head.get(..4) != Some(&QCOW2_MAGIC[..]) {
            return Err(ImageError::NotQcow2 {
                path: path.to_path_buf(),
                found: head.iter().take(4).copied().collect(),
            });
        }
        let mut fixed = [0u8; 112];
        let avail = head.len().min(fixed.len());
        if let (Some(dst), Some(src)) = (fixed.get_mut(..avail), head.get(..avail)) {
            dst.copy_from_slice(src);
        }
        let version = be32(&fixed, 4);
        if version != 2 && version != 3 {
            return Err(corrupt(
                4,
                format!("version {version} (only 2 and 3 exist)"),
            ));
        }
        let min_len: u64 = if version == 2 { 72 } else { 104 };
        if file_size < min_len {
            return Err(corrupt(
                0,
                format!(
                    "file is {file_size} bytes, shorter than the {min_len}-byte v{version} header"
                ),
            ));
        }
        let backing_file_offset = be64(&fixed, 8);
        let backing_file_size = be32(&fixed, 16);
        let cluster_bits = be32(&fixed, 20);
        let size = be64(&fixed, 24);
        let crypt_method = be32(&fixed, 32);
        let l1_size = be32(&fixed, 36);
        let l1_table_offset = be64(&fixed, 40);
        let refcount_table_offset = be64(&fixed, 48);
        let refcount_table_clusters = be32(&fixed, 56);
        let nb_snapshots = be32(&fixed, 60);
        let snapshots_offset = be64(&fixed, 64);
        let (incompatible_features, compatible_features, autoclear_features) = if version >= 3 {
            (be64(&fixed, 72), be64(&fixed, 80), be64(&fixed, 88))
        } else {
            (0, 0, 0)
        };
        let refcount_order = if version >= 3 { be32(&fixed, 96) } else { 4 };
        let header_length = if version >= 3 { be32(&fixed, 100) } else { 72 };

        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(corrupt(
                20,
                format!(
                    "cluster_bits {cluster_bits} is outside {MIN_CLUSTER_BITS}..={MAX_CLUSTER_BITS}"
                ),
            ));
        }
        let cluster_size = 1u64 << cluster_bits;
        if version >= 3 {
            if header_length < 104 || !header_length.is_multiple_of(8) {
                return Err(corrupt(
                    100,
                    format!("header_length {header_length} is below 104 or not a multiple of 8"),
                ));
            }
            if u64::from(header_length) > cluster_size.min(file_size) {
                return Err(corrupt(
                    100,
                    format!(
                        "header_length {header_length} runs past the first cluster or the file"
                    ),
                ));
            }
            if refcount_order > 6 {
                return Err(corrupt(
                    96,
                    format!("refcount_order {refcount_order} is above 6"),
                ));
            }
        }

        let mut header = Qcow2Header {
            version,
            cluster_bits,
            size,
            crypt_method,
            l1_size,
            l1_table_offset,
            refcount_table_offset,
            refcount_table_clusters,
            nb_snapshots,
            snapshots_offset,
            incompatible_features,
            compatible_features,
            autoclear_features,
            refcount_order,
            header_length,
            compression_type: CompressionType::Zlib,
            backing_file: None,
            backing_format: None,
            data_file: None,
            feature_names: Vec::new(),
            has_bitmaps: false,
        };

        // Extensions come before the feature checks so unknown bits can be named.
        let area = HeaderArea {
            head: &head,
            file,
            path,
        };
        let ext_end = if backing_file_offset != 0 {
            backing_file_offset.min(cluster_size)
        } else {
            cluster_size
        };
        header.read_extensions(&area, ext_end.min(file_size))?;

        let unknown = incompatible_features & !INCOMPAT_KNOWN;
        if unknown != 0 {
            let names: Vec<String> = (0..64u8)
                .filter(|bit| unknown & (1u64 << bit) != 0)
                .map(|bit| {
                    header
                        .feature_names
                        .iter()
                        .find(|f| f.kind == 0 && f.bit == bit)
                        .map_or_else(
                            || format!("bit {bit}"),
                            |f| format!("bit {bit} ({})", f.name),
                        )
                })
                .collect();
            return Err(ImageError::Unsupported {
                path: path.to_path_buf(),
                what: format!("unknown incompatible qcow2 features: {}", names.join(", ")),
            });
        }
        match crypt_method {
            0 => {}
            1 => return Err(encrypted(path, "qcow2 AES")),
            2 => return Err(encrypted(path, "LUKS")),
            m => return Err(encrypted(path, &format!("unknown method {m}"))),
        }
        if incompatible_features & INCOMPAT_CORRUPT != 0 {
            return Err(ImageError::Unsupported {
                path: path.to_path_buf(),
                what: "the image is marked corrupt (incompatible feature bit 1); repair it with `qemu-img check -r all` first".into(),
            });
        }

        // compression_type lives at byte 104, present only when header_length goes past it.
        let compression_field = if version >= 3 && header_length > 104 {
            fixed.get(104).copied().unwrap_or(0)
        } else {
            0
        };
        header.compression_type = match (
            incompatible_features & INCOMPAT_COMPRESSION != 0,
            compression_field,
        ) {
            (false, 0) => CompressionType::Zlib,
            (false, n) => {
                return Err(corrupt(
                    104,
                    format!("compression_type {n} without the compression type feature bit"),
                ))
            }
            (true, 1) => CompressionType::Zstd,
            (true, 0) => {
                return Err(corrupt(
                    104,
                    "compression type feature bit set but compression_type is zlib or absent"
                        .into(),
                ))
            }
            (true, n) => {
                return Err(ImageError::Unsupported {
                    path: path.to_path_buf(),
                    what: format!("compression_type {n} (known: 0 zlib, 1 zstd)"),
                })
            }
        };
        if header.extended_l2() && cluster_bits < 14 {
            return Err(corrupt(
                20,
                format!("extended L2 entries need clusters of at least 16 KiB, not {cluster_size} bytes"),
            ));
        }
        if header.data_file_raw() && !header.has_data_file() {
            return Err(corrupt(
                88,
                "raw external data bit set without an external data file".into(),
            ));
        }
        if header.has_data_file() && header.data_file_raw() && backing_file_offset != 0 {
            return Err(corrupt(
                8,
                "a raw external data file cannot have a backing file".into(),
            ));
        }

        // Backing file name: inside the first cluster and the file, at most 1023 bytes.
        if backing_file_offset != 0 {
            if backing_file_size > MAX_BACKING_NAME {
                return Err(corrupt(
                    16,
                    format!(
                        "backing file name of {backing_file_size} bytes (limit {MAX_BACKING_NAME})"
                    ),
                ));
            }
            let end = backing_file_offset.checked_add(u64::from(backing_file_size));
            if end.is_none_or(|e| e > cluster_size || e > file_size) {
                return Err(corrupt(
                    8,
                    format!(
                        "backing file name at {backing_file_offset:#x} ({backing_file_size} bytes) lies outside the first cluster or the file"
                    ),
                ));
            }
            let name = area.bytes(
                backing_file_offset,
                backing_file_size as usize,
                "the backing file name",
            )?;
            if name.is_empty() {
                return Err(corrupt(8, "empty backing file name".into()));
            }
            header.backing_file = Some(OsStr::from_bytes(&name).to_os_string());
        }

        // The active L1 table: large enough for the virtual size, within qemu's limit, in the file.
        let needed_l1 = size.div_ceil(cluster_size * header.l2_entries());
        if u64::from(l1_size) < needed_l1 {
            return Err(corrupt(
                36,
                format!("L1 table of {l1_size} entries is too small for a {size}-byte disk ({needed_l1} needed)"),
            ));
        }
        let l1_bytes = u64::from(l1_size) * 8;
        if l1_bytes > MAX_L1_BYTES {
            return Err(corrupt(
                36,
                format!("L1 table of {l1_size} entries is larger than the 32 MiB limit"),
            ));
        }
        if l1_size > 0 {
            if !l1_table_offset.is_multiple_of(cluster_size) {
                return Err(corrupt(
                    40,
                    format!("L1 table offset {l1_table_offset:#x} is not cluster aligned"),
                ));
            }
            check_range(l1_table_offset, l1_bytes, file_size, "the L1 table")
                .map_err(|what| corrupt(40, what))?;
        }

        // The refcount table is not read, but a header pointing it outside the file is damaged.
        let refcount_bytes = u64::from(refcount_table_clusters) * cluster_size;
        if refcount_bytes > MAX_REFCOUNT_TABLE_BYTES.max(cluster_size) {
            return Err(corrupt(
                56,
                format!("refcount table of {refcount_table_clusters} clusters is larger than the 8 MiB limit"),
            ));
        }
        if !refcount_table_offset.is_multiple_of(cluster_size) {
            return Err(corrupt(
                48,
                format!("refcount table offset {refcount_table_offset:#x} is not cluster aligned"),
            ));
        }
        check_range(
            refcount_table_offset,
            refcount_bytes,
            file_size,
            "the refcount table",
        )
        .map_err(|what| corrupt(48, what))?;

        if nb_snapshots > MAX_SNAPSHOTS {
            return Err(corrupt(
                60,
                format!("{nb_snapshots} snapshots (limit {MAX_SNAPSHOTS})"),
            ));
        }
        if nb_snapshots > 0
            && (!snapshots_offset.is_multiple_of(cluster_size) || snapshots_offset >= file_size)
        {
            return Err(corrupt(
                64,
                format!("snapshot table offset {snapshots_offset:#x} is unaligned or past the end of the {file_size}-byte file"),
            ));
        }
        Ok(header)
    }

    fn read_extensions(&mut self, area: &HeaderArea<'_>, end: u64) -> Result<(), ImageError> {
        let corrupt = |offset: u64, what: String| ImageError::Corrupt {
            path: area.path.to_path_buf(),
            offset,
            what,
        };
        let mut off = u64::from(self.header_length);
        for _ in 0..MAX_EXTENSIONS {
            if off >= end {
                return Ok(());
            }
            if off.saturating_add(8) > end {
                return Err(corrupt(
                    off,
                    format!("header extension header runs past {end:#x} (end of the header area or of the file)"),
                ));
            }
            let hdr = area.bytes(off, 8, "a header extension")?;
            let kind = slice_be32(&hdr, 0);
            let len = slice_be32(&hdr, 4);
            if kind == EXT_END {
                return Ok(());
            }
            let data_off = off + 8;
            if data_off + u64::from(len) > end {
                return Err(corrupt(
                    off,
                    format!("header extension {kind:#010x} of {len} bytes runs past {end:#x} (end of the header area or of the file)"),
                ));
            }
            let string = |what: &'static str| -> Result<OsString, ImageError> {
                if len > MAX_STRING_EXTENSION {
                    return Err(corrupt(
                        off,
                        format!("{what} extension of {len} bytes (limit {MAX_STRING_EXTENSION})"),
                    ));
                }
                let b = area.bytes(data_off, len as usize, what)?;
                Ok(OsStr::from_bytes(&b).to_os_string())
            };
            match kind {
                EXT_BACKING_FORMAT => {
                    let name = string("the backing format")?;
                    self.backing_format = Some(name.to_string_lossy().into_owned());
                }
                EXT_DATA_FILE => self.data_file = Some(string("the data file name")?),
                EXT_FEATURE_NAMES => {
                    let table = area.bytes(data_off, len as usize, "the feature name table")?;
                    self.feature_names = table
                        .chunks_exact(48)
                        .take(192)
                        .filter_map(|e| {
                            let (&kind, rest) = e.split_first()?;
                            let (&bit, name) = rest.split_first()?;
                            let name = name.split(|&c| c == 0).next().unwrap_or(&[]);
                            Some(FeatureName {
                                kind,
                                bit,
                                name: String::from_utf8_lossy(name).into_owned(),
                            })
                        })
                        .collect();
                }
                EXT_BITMAPS => self.has_bitmaps = true,
                EXT_ENCRYPTION => {}
                _ => {}
            }
            off = data_off + u64::from(len).next_multiple_of(8);
        }
        Err(corrupt(
            u64::from(self.header_length),
            format!("more than {MAX_EXTENSIONS} header extensions"),
        ))
    }
}

fn encrypted(path: &Path, method: &str) -> ImageError {
    ImageError::Encrypted {
        path: path.to_path_buf(),
        method: method.to_string(),
    }
}

/// `Err(reason)` unless `[offset, offset + len)` lies within a file of `file_size` bytes.
fn check_range(offset: u64, len: u64, file_size: u64, what: &str) -> Result<(), String> {
    match offset.checked_add(len) {
        Some(end) if end <= file_size => Ok(()),
        _ => Err(format!(
            "{what} ({len} bytes at {offset:#x}) runs past the end of the {file_size}-byte file"
        )),
    }
}

fn be32(b: &[u8; 112], at: usize) -> u32 {
    slice_be32(b, at)
}

fn be64(b: &[u8; 112], at: usize) -> u64 {
    (u64::from(slice_be32(b, at)) << 32) | u64::from(slice_be32(b, at + 4))
}

/// Big-endian u32 at `at`; bytes outside the slice read as zero (callers check lengths first).
fn slice_be32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    if let Some(s) = b.get(at..at.saturating_add(4)) {
        x.copy_from_slice(s);
    }
    u32::from_be_bytes(x)
}

/// The start of the file, read once; anything beyond it is read on demand.
struct HeaderArea<'a> {
    head: &'a [u8],
    file: &'a dyn ReadAt,
    path: &'a Path,
}

impl HeaderArea<'_> {
    fn bytes(&self, offset: u64, len: usize, what: &'static str) -> Result<Vec<u8>, ImageError> {
        let start = usize::try_from(offset).ok();
        if let Some(s) = start.and_then(|s| self.head.get(s..s.checked_add(len)?)) {
            return Ok(s.to_vec());
        }
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|source| ImageError::Read {
                path: self.path.to_path_buf(),
                offset,
                what,
                source,
            })?;
        Ok(buf)
    }
}

/// Where a guest cluster's data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mapping {
    /// Not in this image: the backing file, or zeros.
    Unallocated,
    /// Reads as zeros.
    Zero,
    /// At this host offset (cluster aligned) of the data file.
    Data(u64),
    /// Compressed: the L2 entry (offset and length are decoded when read).
    Compressed(u64),
    /// Extended L2 entry: per-subcluster state.
    Subclusters { host: Option<u64>, bitmap: u64 },
}

/// State of one subcluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    Unallocated,
    Zero,
    Data,
}

/// A small least-recently-used cache keyed by a 64-bit value (a host offset, an L2 entry).
struct Lru<V: ?Sized> {
    capacity: usize,
    clock: u64,
    slots: Vec<(u64, u64, Arc<V>)>,
}

impl<V: ?Sized> Lru<V> {
    fn new(capacity: usize) -> Lru<V> {
        Lru {
            capacity: capacity.max(1),
            clock: 0,
            slots: Vec::new(),
        }
    }

    fn get(&mut self, key: u64) -> Option<Arc<V>> {
        self.clock += 1;
        let now = self.clock;
        self.slots.iter_mut().find(|s| s.0 == key).map(|s| {
            s.1 = now;
            s.2.clone()
        })
    }

    fn put(&mut self, key: u64, value: Arc<V>) {
        self.clock += 1;
        if self.slots.len() < self.capacity {
            self.slots.push((key, self.clock, value));
        } else if let Some(oldest) = self.slots.iter_mut().min_by_key(|s| s.1) {
            *oldest = (key, self.clock, value);
        }
    }
}

/// An open qcow2 image: a [`ReadAt`] over its virtual disk.
pub struct Qcow2Image {
    path: PathBuf,
    header: Qcow2Header,
    file: Arc<dyn ReadAt>,
    /// Where guest clusters live: the image itself or its external data file.
    data: Arc<dyn ReadAt>,
    data_path: Option<PathBuf>,
    backing: Option<Arc<dyn ReadAt>>,
    /// L1/L2 table slices by host offset.
    tables: Mutex<Lru<[u64]>>,
    /// Decompressed clusters by L2 entry.
    decompressed: Mutex<Lru<Vec<u8>>>,
}

impl Qcow2Image {
    /// Open the qcow2 image at `path`, counting its reads in `stats`.
    ///
    /// Reads and checks the header only. An external data file named by the image is opened too
    /// (relative names against the image's directory). The backing file is not opened: see
    /// [`Qcow2Image::with_backing`].
    pub fn open(path: &Path, stats: &IoStats) -> Result<Qcow2Image, ImageError> {
        let file = LocalFiles
            .open(path, stats)
            .map_err(|source| ImageError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Qcow2Image::open_file(&LocalFiles, path, file.reader, stats)
    }

    /// [`Qcow2Image::open`] for an image already opened from `store` (its external data file is
    /// opened from the same store).
    pub fn open_file(
        store: &dyn FileStore,
        path: &Path,
        file: Arc<dyn ReadAt>,
        stats: &IoStats,
    ) -> Result<Qcow2Image, ImageError> {
        let header = Qcow2Header::read(&file, path)?;
        let (data, data_path) = if header.has_data_file() {
            let Some(name) = header.data_file.as_ref() else {
                return Err(ImageError::Unsupported {
                    path: path.to_path_buf(),
                    what: "the external data file is not named in the image (set by libvirt's <dataStore>, which is not supported)".into(),
                });
            };
            let data_path = resolve_relative(path, name);
            let data = store
                .open(&data_path, stats)
                .map_err(|source| ImageError::Open {
                    path: data_path.clone(),
                    source,
                })?;
            (data.reader, Some(data_path))
        } else {
            (file.clone(), None)
        };
        let compressed_slots =
            ((COMPRESSED_CACHE_BYTES / header.cluster_size()) as usize).min(COMPRESSED_CACHE_MAX);
        Ok(Qcow2Image {
            path: path.to_path_buf(),
            header,
            file,
            data,
            data_path,
            backing: None,
            tables: Mutex::new(Lru::new(CACHE_SLICES)),
            decompressed: Mutex::new(Lru::new(compressed_slots)),
        })
    }

    /// Attach the backing image that unallocated clusters read from (reads past its end are
    /// zeros).
    pub fn with_backing(mut self, backing: Arc<dyn ReadAt>) -> Qcow2Image {
        self.backing = Some(backing);
        self
    }

    /// The checked header.
    pub fn header(&self) -> &Qcow2Header {
        &self.header
    }

    /// The path the image was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size in bytes of the image file itself.
    pub fn file_size(&self) -> u64 {
        self.file.size()
    }

    /// The resolved path of the external data file, if the image has one.
    pub fn data_file_path(&self) -> Option<&Path> {
        self.data_path.as_deref()
    }

    fn corrupt(&self, offset: u64, what: String) -> io::Error {
        ImageError::Corrupt {
            path: self.path.clone(),
            offset,
            what,
        }
        .into()
    }

    /// Entry `index` (of `words` 64-bit words each) of the table at `table_offset` holding
    /// `table_words` words in all, through the slice cache.
    fn table_entry(
        &self,
        table_offset: u64,
        table_words: u64,
        index: u64,
        words: u64,
    ) -> io::Result<(u64, u64)> {
        let word = index * words;
        if word + words > table_words {
            return Err(self.corrupt(
                table_offset,
                format!("table index {index} is outside the {table_words}-word table"),
            ));
        }
        let per_slice = SLICE_BYTES / 8;
        let slice_no = word / per_slice;
        let slice_offset = table_offset + slice_no * SLICE_BYTES;
        let cached = self
            .tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(slice_offset);
        let slice = match cached {
            Some(s) => s,
            None => {
                let n = per_slice.min(table_words - slice_no * per_slice);
                let mut raw = vec![0u8; (n * 8) as usize];
                self.file
                    .read_exact_at(&mut raw, slice_offset)
                    .map_err(|e| {
                        if e.kind() == io::ErrorKind::UnexpectedEof {
                            self.corrupt(
                                slice_offset,
                                format!(
                                    "table of {} bytes runs past the end of the {}-byte file",
                                    n * 8,
                                    self.file.size()
                                ),
                            )
                        } else {
                            ImageError::Read {
                                path: self.path.clone(),
                                offset: slice_offset,
                                what: "an L1/L2 table",
                                source: e,
                            }
                            .into()
                        }
                    })?;
                let parsed: Arc<[u64]> = raw
                    .chunks_exact(8)
                    .map(|c| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(c);
                        u64::from_be_bytes(b)
                    })
                    .collect();
                self.tables
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .put(slice_offset, parsed.clone());
                parsed
            }
        };
        let at = (word - slice_no * per_slice) as usize;
        let first = slice.get(at).copied();
        let second = if words == 2 {
            slice.get(at + 1).copied()
        } else {
            Some(0)
        };
        match (first, second) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(self.corrupt(
                slice_offset,
                format!("table slice too short for index {index}"),
            )),
        }
    }

    /// Where guest cluster `cluster` lives.
    fn lookup(&self, cluster: u64) -> io::Result<Mapping> {
        let h = &self.header;
        let cluster_size = h.cluster_size();
        let l2_entries = h.l2_entries();
        let l1_index = cluster / l2_entries;
        let l2_index = cluster % l2_entries;
        let (l1e, _) = self.table_entry(h.l1_table_offset, u64::from(h.l1_size), l1_index, 1)?;
        let l2_offset = l1e & OFFSET_MASK;
        if l2_offset == 0 {
            return Ok(Mapping::Unallocated);
        }
        let l1e_at = h.l1_table_offset + l1_index * 8;
        if !l2_offset.is_multiple_of(cluster_size) {
            return Err(self.corrupt(
                l1e_at,
                format!("L1 entry {l1_index} points at unaligned L2 table {l2_offset:#x}"),
            ));
        }
        if l2_offset
            .checked_add(cluster_size)
            .is_none_or(|e| e > self.file.size())
        {
            return Err(self.corrupt(
                l1e_at,
                format!(
                    "L1 entry {l1_index} points at L2 table {l2_offset:#x}, past the end of the {}-byte file",
                    self.file.size()
                ),
            ));
        }
        let words = if h.extended_l2() { 2 } else { 1 };
        let (entry, bitmap) = self.table_entry(l2_offset, cluster_size / 8, l2_index, words)?;
        let entry_at = l2_offset + l2_index * 8 * words;
        if entry & L2_COMPRESSED != 0 {
            if h.has_data_file() {
                return Err(self.corrupt(
                    entry_at,
                    "compressed cluster in an image with an external data file".into(),
                ));
            }
            return Ok(Mapping::Compressed(entry));
        }
        let host = entry & OFFSET_MASK;
        let present = host != 0 || (h.has_data_file() && entry & L2_COPIED != 0);
        if present && !host.is_multiple_of(cluster_size) {
            return Err(self.corrupt(
                entry_at,
                format!("L2 entry points at unaligned cluster {host:#x}"),
            ));
        }
        if h.extended_l2() {
            return Ok(Mapping::Subclusters {
                host: present.then_some(host),
                bitmap,
            });
        }
        if entry & L2_ZERO != 0 {
            if h.version < 3 {
                return Err(self.corrupt(entry_at, "zero cluster flag in a version 2 image".into()));
            }
            return Ok(Mapping::Zero);
        }
        Ok(if present {
            Mapping::Data(host)
        } else {
            Mapping::Unallocated
        })
    }

    /// Read guest bytes `[pos, pos + out.len())`, all within one cluster.
    fn read_in_cluster(&self, out: &mut [u8], pos: u64) -> io::Result<()> {
        let cluster_size = self.header.cluster_size();
        let within = pos % cluster_size;
        match self.lookup(pos / cluster_size)? {
            Mapping::Unallocated => self.read_backing(out, pos),
            Mapping::Zero => {
                out.fill(0);
                Ok(())
            }
            Mapping::Data(host) => self.read_data(out, host + within),
            Mapping::Compressed(entry) => {
                let cluster = self.decompress(entry)?;
                let start = within as usize;
                match cluster.get(start..start + out.len()) {
                    Some(src) => {
                        out.copy_from_slice(src);
                        Ok(())
                    }
                    None => Err(self.corrupt(pos, "decompressed cluster too short".into())),
                }
            }
            Mapping::Subclusters { host, bitmap } => {
                let sub_size = cluster_size / 32;
                let state = |sc: u64| -> io::Result<Sub> {
                    let alloc = bitmap & (1 << sc) != 0;
                    let zero = bitmap & (1 << (sc + 32)) != 0;
                    match (alloc, zero, host) {
                        (true, true, _) => Err(self.corrupt(
                            pos,
                            format!("subcluster {sc} is marked both allocated and zero"),
                        )),
                        (true, false, None) => Err(self.corrupt(
                            pos,
                            format!("subcluster {sc} is allocated in an unallocated cluster"),
                        )),
                        (true, false, Some(_)) => Ok(Sub::Data),
                        (false, true, _) => Ok(Sub::Zero),
                        (false, false, _) => Ok(Sub::Unallocated),
                    }
                };
                let end = within + out.len() as u64;
                let mut p = within;
                while p < end {
                    let kind = state(p / sub_size)?;
                    let mut q = ((p / sub_size + 1) * sub_size).min(end);
                    while q < end && state(q / sub_size)? == kind {
                        q = ((q / sub_size + 1) * sub_size).min(end);
                    }
                    let Some(part) = out.get_mut((p - within) as usize..(q - within) as usize)
                    else {
                        return Err(self.corrupt(pos, "subcluster range out of bounds".into()));
                    };
                    match (kind, host) {
                        (Sub::Data, Some(h)) => self.read_data(part, h + p)?,
                        (Sub::Zero, _) => part.fill(0),
                        _ => self.read_backing(part, pos - within + p)?,
                    }
                    p = q;
                }
                Ok(())
            }
        }
    }

    /// Read from the data file (the image itself or its external data file).
    fn read_data(&self, out: &mut [u8], host: u64) -> io::Result<()> {
        self.data.read_exact_at(out, host).map_err(|e| {
            let path = self.data_path.clone().unwrap_or_else(|| self.path.clone());
            if e.kind() == io::ErrorKind::UnexpectedEof {
                ImageError::Corrupt {
                    path,
                    offset: host,
                    what: format!(
                        "data cluster lies past the end of the {}-byte file",
                        self.data.size()
                    ),
                }
                .into()
            } else {
                ImageError::Read {
                    path,
                    offset: host,
                    what: "guest data",
                    source: e,
                }
                .into()
            }
        })
    }

    /// Read an unallocated range from the backing image: zeros past its end or without one.
    fn read_backing(&self, out: &mut [u8], pos: u64) -> io::Result<()> {
        let Some(backing) = &self.backing else {
            out.fill(0);
            return Ok(());
        };
        let have = backing.size().saturating_sub(pos).min(out.len() as u64) as usize;
        let (from_backing, past_end) = out.split_at_mut(have);
        if !from_backing.is_empty() {
            backing.read_exact_at(from_backing, pos)?;
        }
        past_end.fill(0);
        Ok(())
    }

    /// The decompressed cluster described by compressed L2 entry `entry`.
    fn decompress(&self, entry: u64) -> io::Result<Arc<Vec<u8>>> {
        let cached = self
            .decompressed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(entry);
        if let Some(data) = cached {
            return Ok(data);
        }
        let bits = self.header.cluster_bits;
        let shift = 62 - (bits - 8);
        let offset = entry & ((1u64 << shift) - 1);
        let sectors = ((entry >> shift) & ((1u64 << (bits - 8)) - 1)) + 1;
        let len = sectors * 512 - (offset & 511);
        let file_size = self.file.size();
        if offset >= file_size {
            return Err(ImageError::Decompress {
                path: self.path.clone(),
                offset,
                what: format!("starts past the end of the {file_size}-byte file"),
            }
            .into());
        }
        // The last sector of the last compressed cluster may be cut short by the end of the file.
        let len = len.min(file_size - offset);
        let mut input = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut input, offset)
            .map_err(|source| ImageError::Read {
                path: self.path.clone(),
                offset,
                what: "a compressed cluster",
                source,
            })?;
        let data = decompress_cluster(
            self.header.compression_type,
            &input,
            self.header.cluster_size() as usize,
        )
        .map_err(|what| ImageError::Decompress {
            path: self.path.clone(),
            offset,
            what: format!("{} data: {what}", self.header.compression_type.name()),
        })?;
        let data = Arc::new(data);
        self.decompressed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(entry, data.clone());
        Ok(data)
    }
}

impl ReadAt for Qcow2Image {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let size = self.header.size;
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > size)
        {
            return Err(super::eof(offset, buf.len(), size));
        }
        let cluster_size = self.header.cluster_size();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let n = (cluster_size - pos % cluster_size).min((buf.len() - done) as u64) as usize;
            let Some(part) = buf.get_mut(done..done + n) else {
                return Err(super::eof(offset, buf.len(), size));
            };
            self.read_in_cluster(part, pos)?;
            done += n;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.header.size
    }
}

/// `name` as a path: absolute as is, relative against the directory of `image` (the image that
/// names it), as qemu does for backing and data files.
pub fn resolve_relative(image: &Path, name: &OsStr) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match image.parent() {
        Some(dir) => dir.join(p),
        None => p.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal v3 image in memory: header, L1 at cluster 1, refcount table at cluster 2,
    /// one L2 at cluster 3, data at cluster 4 (512-byte clusters, 64 KiB disk).
    fn tiny_image() -> Vec<u8> {
        let cs = 512usize;
        let mut img = vec![0u8; cs * 5];
        img[..4].copy_from_slice(&QCOW2_MAGIC);
        img[4..8].copy_from_slice(&3u32.to_be_bytes());
        img[20..24].copy_from_slice(&9u32.to_be_bytes());
        img[24..32].copy_from_slice(&65536u64.to_be_bytes());
        img[36..40].copy_from_slice(&2u32.to_be_bytes());
        img[40..48].copy_from_slice(&512u64.to_be_bytes());
        img[48..56].copy_from_slice(&1024u64.to_be_bytes());
        img[56..60].copy_from_slice(&1u32.to_be_bytes());
        img[96..100].copy_from_slice(&4u32.to_be_bytes());
        img[100..104].copy_from_slice(&104u32.to_be_bytes());
        img[512..520].copy_from_slice(&(1536u64 | 1 << 63).to_be_bytes());
        img[1536 + 8..1536 + 16].copy_from_slice(&(2048u64 | 1 << 63).to_be_bytes());
        img[2048..2560].fill(0x5a);
        img
    }

    fn open_bytes(bytes: Vec<u8>) -> Result<Qcow2Image, ImageError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img.qcow2");
        std::fs::write(&p, bytes).unwrap();
        Qcow2Image::open(&p, &IoStats::new())
    }

    #[test]
    fn reads_a_hand_made_image() {
        let img = open_bytes(tiny_image()).unwrap();
        let mut b = vec![1u8; 1024];
        img.read_exact_at(&mut b, 0).unwrap();
        assert!(b[..512].iter().all(|&x| x == 0));
        assert!(b[512..].iter().all(|&x| x == 0x5a));
        assert!(img.read_exact_at(&mut b, 65536 - 512).is_err());
    }

    #[test]
    fn header_fields_out_of_range_are_refused() {
        let cases: Vec<(usize, Vec<u8>, &str)> = vec![
            (4, 4u32.to_be_bytes().to_vec(), "version"),
            (20, 8u32.to_be_bytes().to_vec(), "cluster_bits"),
            (20, 22u32.to_be_bytes().to_vec(), "cluster_bits"),
            (32, 2u32.to_be_bytes().to_vec(), "encrypted"),
            (36, 1u32.to_be_bytes().to_vec(), "too small"),
            (36, 0x0100_0000u32.to_be_bytes().to_vec(), "32 MiB"),
            (40, 700u64.to_be_bytes().to_vec(), "aligned"),
            (40, 0x10_0000u64.to_be_bytes().to_vec(), "past the end"),
            (
                72,
                (1u64 << 5).to_be_bytes().to_vec(),
                "unknown incompatible",
            ),
            (72, 2u64.to_be_bytes().to_vec(), "marked corrupt"),
            (100, 100u32.to_be_bytes().to_vec(), "header_length"),
            (96, 7u32.to_be_bytes().to_vec(), "refcount_order"),
            (24, u64::MAX.to_be_bytes().to_vec(), "too small"),
            (48, 0x10_0000u64.to_be_bytes().to_vec(), "refcount"),
        ];
        for (at, bytes, want) in cases {
            let mut img = tiny_image();
            img[at..at + bytes.len()].copy_from_slice(&bytes);
            let err = open_bytes(img).err().expect(want).to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn bad_table_entries_are_read_errors() {
        // L2 entry pointing past the end of the file.
        let mut img = tiny_image();
        img[1536 + 8..1536 + 16].copy_from_slice(&(0x10_0000u64 | 1 << 63).to_be_bytes());
        let q = open_bytes(img).unwrap();
        let mut b = [0u8; 512];
        let e = q.read_exact_at(&mut b, 512).unwrap_err();
        assert!(e.to_string().contains("past the end"), "{e}");
        // L1 entry pointing past the end of the file.
        let mut img = tiny_image();
        img[512..520].copy_from_slice(&(0x10_0000u64).to_be_bytes());
        let q = open_bytes(img).unwrap();
        let e = q.read_exact_at(&mut b, 0).unwrap_err();
        assert!(ImageError::from_io(&e).is_some(), "{e}");
        // Zero flag in a v2-style entry.
        let mut img = tiny_image();
        img[1536..1544].copy_from_slice(&1u64.to_be_bytes());
        let q = open_bytes(img).unwrap();
        q.read_exact_at(&mut b, 0).unwrap();
        assert!(b.iter().all(|&x| x == 0));
        // ... which a version 2 image cannot have.
        let mut img = tiny_image();
        img[4..8].copy_from_slice(&2u32.to_be_bytes());
        img[1536..1544].copy_from_slice(&1u64.to_be_bytes());
        let q = open_bytes(img).unwrap();
        assert_eq!(q.header().version, 2);
        let e = q.read_exact_at(&mut b, 0).unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");
        // Both the allocated and the zero bit of a subcluster: corrupt.
        let mut img = tiny_image();
        img[20..24].copy_from_slice(&14u32.to_be_bytes());
        img[72..80].copy_from_slice(&INCOMPAT_EXTENDED_L2.to_be_bytes());
        img[40..48].copy_from_slice(&16384u64.to_be_bytes());
        img[48..56].copy_from_slice(&0u64.to_be_bytes());
        img.resize(16384 * 4, 0);
        img[16384..16392].copy_from_slice(&(32768u64).to_be_bytes());
        img[32768..32776].copy_from_slice(&(49152u64 | 1 << 63).to_be_bytes());
        img[32776..32784].copy_from_slice(&(1u64 | 1 << 32).to_be_bytes());
        let q = open_bytes(img.clone()).unwrap();
        let e = q.read_exact_at(&mut b, 0).unwrap_err();
        assert!(e.to_string().contains("both allocated and zero"), "{e}");
        // Only allocated: the data; only zero: zeros; neither (no backing): zeros.
        img[32776..32784].copy_from_slice(&(1u64 | 1 << 33).to_be_bytes());
        img[49152..65536].fill(0x77);
        let q = open_bytes(img).unwrap();
        let mut c = vec![0u8; 1536];
        q.read_exact_at(&mut c, 0).unwrap();
        assert!(c[..512].iter().all(|&x| x == 0x77));
        assert!(c[512..].iter().all(|&x| x == 0));
        // Compressed entry with garbage data.
        let mut img = tiny_image();
        img[1536..1544].copy_from_slice(&(2048u64 | 1 << 62).to_be_bytes());
        let q = open_bytes(img).unwrap();
        let e = q.read_exact_at(&mut b, 0).unwrap_err();
        assert!(e.to_string().contains("compressed"), "{e}");
    }

    #[test]
    fn relative_names_resolve_against_the_naming_image() {
        let img = Path::new("/var/lib/images/top.qcow2");
        assert_eq!(
            resolve_relative(img, OsStr::new("base/b.img")),
            Path::new("/var/lib/images/base/b.img")
        );
        assert_eq!(resolve_relative(img, OsStr::new("/x/y")), Path::new("/x/y"));
    }
}
