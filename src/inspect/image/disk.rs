//! Opening a guest disk by its declared format, with its backing chain.
//!
//! A libvirt `<disk>` says what its file is (`<driver type='raw|qcow2'>`): [`open_disk`] takes
//! that format and never looks at the content to decide. A raw disk is written by the guest, and
//! a guest can write a qcow2 header into it whose "backing file" names any file of the host; read
//! as raw it stays raw. Backing files named inside a qcow2 header were set by the host's tools and
//! are followed, with the rules in [`open_disk`].

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use super::compression::CompressionType;
use super::error::ImageError;
use super::qcow2::{resolve_relative, Qcow2Image, QCOW2_MAGIC};
use super::{FileStore, IoStats, LocalFiles, ReadAt};

/// Most images in one backing chain (the disk itself included).
pub const MAX_CHAIN_DEPTH: usize = 16;

/// The on-disk format of a disk image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// The file (or block device) is the disk, byte for byte.
    Raw,
    /// A qcow2 image.
    Qcow2,
}

impl DiskFormat {
    /// The name libvirt and qemu use.
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

impl fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DiskFormat {
    type Err = ImageError;
    /// `raw` or `qcow2` (as in `<driver type>`); anything else is an error naming it.
    fn from_str(s: &str) -> Result<DiskFormat, ImageError> {
        match s {
            "raw" => Ok(DiskFormat::Raw),
            "qcow2" => Ok(DiskFormat::Qcow2),
            other => Err(ImageError::UnsupportedFormat(other.to_string())),
        }
    }
}

/// One file of a disk's chain, top image first, for reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Layer {
    /// The file, as opened (backing files resolved against the image naming them).
    pub path: PathBuf,
    pub format: DiskFormat,
    /// Size of the disk this layer presents.
    pub virtual_size: u64,
    /// Size of the file itself (of the device, for a block device).
    pub file_size: u64,
    /// qcow2 version (2 or 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qcow2_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_size: Option<u64>,
    /// Compression of compressed clusters (qcow2 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<CompressionType>,
    /// qcow2 extended L2 entries (subclusters).
    pub extended_l2: bool,
    /// The external data file, resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_file: Option<PathBuf>,
    /// The external data file is a consistent raw image.
    pub data_file_raw: bool,
    /// Number of internal snapshots (only the active state is read).
    pub snapshots: u32,
    /// The qcow2 dirty bit (refcounts may be stale after a crash; data is readable).
    pub dirty: bool,
    /// The backing file name exactly as written in the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing: Option<String>,
    /// The backing format recorded in the image, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing_format: Option<String>,
}

impl Layer {
    fn raw(path: &Path, size: u64) -> Layer {
        Layer {
            path: path.to_path_buf(),
            format: DiskFormat::Raw,
            virtual_size: size,
            file_size: size,
            qcow2_version: None,
            cluster_size: None,
            compression: None,
            extended_l2: false,
            data_file: None,
            data_file_raw: false,
            snapshots: 0,
            dirty: false,
            backing: None,
            backing_format: None,
        }
    }

    fn qcow2(img: &Qcow2Image) -> Layer {
        let h = img.header();
        Layer {
            path: img.path().to_path_buf(),
            format: DiskFormat::Qcow2,
            virtual_size: h.size,
            file_size: img.file_size(),
            qcow2_version: Some(h.version),
            cluster_size: Some(h.cluster_size()),
            compression: Some(h.compression_type),
            extended_l2: h.extended_l2(),
            data_file: img.data_file_path().map(Path::to_path_buf),
            data_file_raw: h.data_file_raw(),
            snapshots: h.nb_snapshots,
            dirty: h.dirty(),
            backing: h
                .backing_file
                .as_ref()
                .map(|b| b.to_string_lossy().into_owned()),
            backing_format: h.backing_format.clone(),
        }
    }
}

/// A disk opened for reading: its virtual disk and the files it is made of.
pub struct OpenedDisk {
    /// The guest's view of the disk.
    pub reader: Arc<dyn ReadAt>,
    /// The disk's file first, then each backing file in order.
    pub chain: Vec<Layer>,
}

/// Open the disk at `path` as `format` (the format libvirt declares), with its backing chain.
///
/// Every file is opened from this machine ([`LocalFiles`]); [`open_disk_in`] takes another
/// [`FileStore`]. `stats` counts each byte read.
///
/// Backing chain rules (qcow2 only; a raw file has no backing):
/// - a relative backing name is resolved against the directory of the image that names it;
/// - the backing format is the one recorded in the image; when none is recorded, a backing file
///   that is raw by content is read as raw, and one that looks like qcow2 is refused (as libvirt
///   does: a probed format could come from guest-written data);
/// - network backings (`nbd:`, `rbd:`, `json:{...}`, URLs) are refused with the reason;
/// - reads past the end of a shorter backing file are zeros;
/// - at most [`MAX_CHAIN_DEPTH`] images, and an image may appear only once in a chain.
pub fn open_disk(
    path: &Path,
    format: DiskFormat,
    stats: &Arc<IoStats>,
) -> Result<OpenedDisk, ImageError> {
    open_disk_in(&LocalFiles, path, format, stats)
}

/// [`open_disk`] with every file of the chain opened from `store` (this machine's files, or
/// another host's through libvirt).
pub fn open_disk_in(
    store: &dyn FileStore,
    path: &Path,
    format: DiskFormat,
    stats: &Arc<IoStats>,
) -> Result<OpenedDisk, ImageError> {
    let mut chain = Vec::new();
    let mut seen = Vec::new();
    let reader = open_layer(store, path, format, stats, &mut chain, &mut seen)?;
    Ok(OpenedDisk { reader, chain })
}

fn open_layer(
    store: &dyn FileStore,
    path: &Path,
    format: DiskFormat,
    stats: &Arc<IoStats>,
    chain: &mut Vec<Layer>,
    seen: &mut Vec<(String, PathBuf)>,
) -> Result<Arc<dyn ReadAt>, ImageError> {
    if chain.len() >= MAX_CHAIN_DEPTH {
        return Err(ImageError::ChainTooDeep {
            path: path.to_path_buf(),
            limit: MAX_CHAIN_DEPTH,
        });
    }
    let file = store.open(path, stats).map_err(|source| ImageError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some((_, first)) = seen.iter().find(|(id, _)| *id == file.identity) {
        return Err(ImageError::ChainLoop {
            path: chain
                .last()
                .map_or_else(|| path.to_path_buf(), |l| l.path.clone()),
            again: first.clone(),
        });
    }
    seen.push((file.identity.clone(), path.to_path_buf()));
    match format {
        DiskFormat::Raw => {
            chain.push(Layer::raw(path, file.reader.size()));
            Ok(file.reader)
        }
        DiskFormat::Qcow2 => {
            let img = Qcow2Image::open_file(store, path, file.reader, stats)?;
            chain.push(Layer::qcow2(&img));
            let Some(name) = img.header().backing_file.clone() else {
                return Ok(Arc::new(img));
            };
            let backing_err = |reason: String| ImageError::Backing {
                path: path.to_path_buf(),
                backing: name.to_string_lossy().into_owned(),
                reason,
            };
            if let Some(why) = network_backing(&name) {
                return Err(backing_err(why));
            }
            let backing_path = resolve_relative(path, &name);
            let backing_format = match img.header().backing_format.as_deref() {
                Some(f) => f.parse::<DiskFormat>().map_err(|_| {
                    backing_err(format!("backing format {f:?} is not supported (raw, qcow2)"))
                })?,
                None => match probe_in(store, &backing_path, stats).map_err(|e| {
                    backing_err(format!("cannot read {}: {e}", backing_path.display()))
                })? {
                    DiskFormat::Raw => DiskFormat::Raw,
                    DiskFormat::Qcow2 => {
                        return Err(backing_err(
                            "the backing format is not recorded in the image and the backing file looks like qcow2; \
                             a probed format is not trusted (record it with `qemu-img rebase -u -F qcow2 -b NAME`)"
                                .into(),
                        ))
                    }
                },
            };
            let backing = open_layer(store, &backing_path, backing_format, stats, chain, seen)
                .map_err(|e| match e {
                    ImageError::Open { path, source } if path == backing_path => {
                        backing_err(format!("cannot open {}: {source}", path.display()))
                    }
                    other => other,
                })?;
            Ok(Arc::new(img.with_backing(backing)))
        }
    }
}

/// Why a backing name is not a local file, if it is not.
fn network_backing(name: &OsStr) -> Option<String> {
    let s = name.to_string_lossy();
    if s.starts_with("json:") {
        return Some("json: backing specifications are not supported".into());
    }
    let scheme = s.split_once(':').map(|(p, _)| p).unwrap_or("");
    let known = [
        "nbd", "rbd", "iscsi", "gluster", "sheepdog", "ssh", "http", "https", "ftp", "ftps", "nfs",
        "vxhs",
    ];
    let base = scheme.split('+').next().unwrap_or(scheme);
    if known.contains(&base) || s.contains("://") {
        return Some(format!("network backing ({scheme}) cannot be read offline"));
    }
    None
}

/// Guess the format of a file from its first bytes: qcow2 if it starts with the qcow2 magic and
/// a known version, raw otherwise.
///
/// Only for a file the operator names on the command line (`inspect PATH` without `--format`),
/// and the report must say the format was probed. Never use it for a libvirt disk: a raw disk is
/// written by the guest, which can make it look like a qcow2 image with a backing file of its
/// choosing. For those, use the format the domain XML declares.
pub fn probe_format(path: &Path) -> io::Result<DiskFormat> {
    probe_in(&LocalFiles, path, &IoStats::new())
}

/// [`probe_format`] of a file of `store`, with the read counted in `stats`.
fn probe_in(store: &dyn FileStore, path: &Path, stats: &IoStats) -> io::Result<DiskFormat> {
    let file = store.open(path, stats)?.reader;
    let mut head = [0u8; 8];
    if file.size() < head.len() as u64 {
        return Ok(DiskFormat::Raw);
    }
    file.read_exact_at(&mut head, 0)?;
    let version = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if head[..4] == QCOW2_MAGIC && (version == 2 || version == 3) {
        Ok(DiskFormat::Qcow2)
    } else {
        Ok(DiskFormat::Raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_libvirt_name() {
        assert_eq!("raw".parse::<DiskFormat>().unwrap(), DiskFormat::Raw);
        assert_eq!("qcow2".parse::<DiskFormat>().unwrap(), DiskFormat::Qcow2);
        let e = "vmdk".parse::<DiskFormat>().unwrap_err().to_string();
        assert!(e.contains("vmdk"), "{e}");
    }

    #[test]
    fn network_backings_are_recognised() {
        assert!(network_backing(OsStr::new("nbd://host:10809/x")).is_some());
        assert!(network_backing(OsStr::new("rbd:pool/image")).is_some());
        assert!(network_backing(OsStr::new("json:{\"file\":{}}")).is_some());
        assert!(network_backing(OsStr::new("gluster+tcp://h/v/i")).is_some());
        assert!(network_backing(OsStr::new("base.qcow2")).is_none());
        assert!(network_backing(OsStr::new("/var/lib/a:b.img")).is_none());
    }

    #[test]
    fn raw_with_qcow2_magic_stays_raw() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk.img");
        let mut bytes = vec![0u8; 4096];
        bytes[..4].copy_from_slice(&QCOW2_MAGIC);
        bytes[7] = 3;
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(probe_format(&p).unwrap(), DiskFormat::Qcow2);
        let disk = open_disk(&p, DiskFormat::Raw, &IoStats::new()).unwrap();
        let mut b = vec![0u8; 4096];
        disk.reader.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(b, bytes);
        assert_eq!(disk.chain.len(), 1);
        assert_eq!(disk.chain[0].format, DiskFormat::Raw);
    }
}
