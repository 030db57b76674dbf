//! Disk inspection: from a disk image to the Windows files inside it, as data (the `inspect`
//! command prints it: `crate::cli::inspect`).
//!
//! For one disk: the chain of image layers, the partition table, each volume (file system,
//! BitLocker, LDM), the NTFS facts, the Windows system root and the presence of the files the
//! verdict needs, and the hazards found on the way. Nothing here stops on a damaged disk: what
//! cannot be read becomes "unknown" with the reason.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::inspect::image::disk::{open_disk_in, DiskFormat, Layer};
use crate::inspect::image::ntfs::{NtfsFacts, NtfsVolume};
use crate::inspect::image::partition::{
    fs_kind_of_boot_sector, read_partition_table, FsKind, PartitionScheme, PartitionTable,
    PartitionType,
};
use crate::inspect::image::windows_root::{
    find_system_root, hibernation, inspect_root, Hibernation, WindowsRoot,
};
use crate::inspect::image::{FileStore, IoStats, LocalFiles, ReadAt, Window};

/// Where the format used to read a disk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FormatSource {
    /// Declared by the domain XML (`<driver type>`).
    Declared,
    /// Given with `--format`.
    Operator,
    /// Guessed from the file's first bytes (only for a path the operator named).
    Probed,
}

/// Something on the disk that makes the offline view unreliable or the disk unsupported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DiskHazard {
    /// The partition is BitLocker-encrypted: its content cannot be inspected.
    BitLocker { partition: u32 },
    /// Dynamic disk (LDM): not supported as a system disk.
    DynamicDisk,
    /// `hiberfil.sys` says `hibr`: Windows hibernated or used Fast Startup.
    Hibernated { partition: u32 },
    /// The NTFS volume's dirty flag is set: not cleanly unmounted.
    DirtyVolume { partition: u32 },
    /// The partition table is damaged or inconsistent.
    PartitionTable { problem: String },
    /// A volume could not be read.
    UnreadableVolume { partition: u32, reason: String },
}

/// One volume (a partition, or the whole disk for a bare file system).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeInspection {
    pub partition: u32,
    pub start: u64,
    pub length: u64,
    pub fs: FsKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ntfs: Option<NtfsFacts>,
    /// The Windows installation on this volume, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<WindowsRoot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hibernation: Option<Hibernation>,
    /// Why the volume could not be (fully) read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything found on one disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskInspection {
    /// The disk as named (XML source or command line).
    pub path: String,
    /// The format the disk was read as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<DiskFormat>,
    pub format_source: FormatSource,
    /// The disk's file first, then its backing files.
    pub chain: Vec<Layer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<PartitionTable>,
    pub volumes: Vec<VolumeInspection>,
    pub hazards: Vec<DiskHazard>,
    /// Set when the disk could not be read at all: the verdict is unknown for this reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
}

impl DiskInspection {
    /// A disk that cannot be read (network disk, missing file, unsupported format).
    pub fn unknown(path: &str, format_source: FormatSource, reason: String) -> DiskInspection {
        DiskInspection {
            path: path.to_string(),
            format: None,
            format_source,
            chain: Vec::new(),
            virtual_size: None,
            partitions: None,
            volumes: Vec::new(),
            hazards: Vec::new(),
            unknown: Some(reason),
        }
    }

    /// Volumes holding a Windows system root.
    pub fn windows_volumes(&self) -> impl Iterator<Item = &VolumeInspection> {
        self.volumes.iter().filter(|v| v.windows.is_some())
    }
}

/// Open the disk at `path` as `format` and inspect it. Reads are counted in `stats`.
pub fn inspect_disk(
    path: &Path,
    format: DiskFormat,
    format_source: FormatSource,
    stats: &Arc<IoStats>,
) -> DiskInspection {
    inspect_disk_in(&LocalFiles, path, format, format_source, stats)
}

/// [`inspect_disk`] with the disk's files read from `store`.
pub fn inspect_disk_in(
    store: &dyn FileStore,
    path: &Path,
    format: DiskFormat,
    format_source: FormatSource,
    stats: &Arc<IoStats>,
) -> DiskInspection {
    let shown = path.display().to_string();
    match open_disk_in(store, path, format, stats) {
        Ok(opened) => {
            let mut d = inspect_reader(opened.reader);
            d.path = shown;
            d.format = Some(format);
            d.format_source = format_source;
            d.chain = opened.chain;
            d
        }
        Err(e) => {
            let mut d = DiskInspection::unknown(&shown, format_source, format!("{e}"));
            d.format = Some(format);
            d
        }
    }
}

/// Inspect an opened disk: partitions, volumes, Windows roots, hazards. `path`, `format` and
/// `chain` of the result are left for the caller to fill.
pub fn inspect_reader(disk: Arc<dyn ReadAt>) -> DiskInspection {
    inspect_reader_keeping_windows(disk).0
}

/// [`inspect_reader`], also handing back the opened NTFS volumes that hold a Windows root (by
/// partition index), so the verdict reads the registry through the same caches.
pub fn inspect_reader_keeping_windows(
    disk: Arc<dyn ReadAt>,
) -> (DiskInspection, Vec<(u32, NtfsVolume)>) {
    let mut kept = Vec::new();
    let table = read_partition_table(&disk);
    let mut d = DiskInspection {
        path: String::new(),
        format: None,
        format_source: FormatSource::Declared,
        chain: Vec::new(),
        virtual_size: Some(disk.size()),
        partitions: None,
        volumes: Vec::new(),
        hazards: table
            .problems
            .iter()
            .map(|p| DiskHazard::PartitionTable { problem: p.clone() })
            .collect(),
        unknown: None,
    };
    if table.is_dynamic() {
        d.hazards.push(DiskHazard::DynamicDisk);
    }
    for p in &table.partitions {
        let skip = p.problem.is_some()
            || p.length == 0
            || p.ldm
            || matches!(
                p.partition_type,
                PartitionType::Mbr(0x05 | 0x0F | 0x85 | 0xEE)
            );
        if skip {
            continue;
        }
        let (v, vol) = inspect_volume(&disk, p.index, p.start, p.length, &mut d.hazards);
        if let Some(vol) = vol {
            kept.push((p.index, vol));
        }
        d.volumes.push(v);
    }
    if table.scheme == PartitionScheme::Unrecognised && table.partitions.is_empty() {
        d.unknown = Some(
            table
                .problems
                .first()
                .or(table.notes.first())
                .cloned()
                .unwrap_or_else(|| "no partition table or file system recognised".into()),
        );
    }
    d.partitions = Some(table);
    (d, kept)
}

fn inspect_volume(
    disk: &Arc<dyn ReadAt>,
    index: u32,
    start: u64,
    length: u64,
    hazards: &mut Vec<DiskHazard>,
) -> (VolumeInspection, Option<NtfsVolume>) {
    let mut v = VolumeInspection {
        partition: index,
        start,
        length,
        fs: FsKind::Unknown,
        ntfs: None,
        windows: None,
        hibernation: None,
        error: None,
    };
    let window: Arc<dyn ReadAt> = match Window::new(disk.clone(), start, length) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            v.error = Some(e.to_string());
            return (v, None);
        }
    };
    let mut sector = [0u8; 512];
    if let Err(e) = window.read_exact_at(&mut sector, 0) {
        v.error = Some(format!("first sector at disk byte {start}: {e}"));
        return (v, None);
    }
    v.fs = fs_kind_of_boot_sector(&sector);
    match v.fs {
        FsKind::BitLocker => hazards.push(DiskHazard::BitLocker { partition: index }),
        FsKind::Ntfs => {
            let vol = match NtfsVolume::open(window) {
                Ok(vol) => vol,
                Err(e) => {
                    let reason = format!("{e:#}");
                    hazards.push(DiskHazard::UnreadableVolume {
                        partition: index,
                        reason: reason.clone(),
                    });
                    v.error = Some(reason);
                    return (v, None);
                }
            };
            if vol.facts().dirty {
                hazards.push(DiskHazard::DirtyVolume { partition: index });
            }
            v.ntfs = Some(vol.facts().clone());
            let mut errors = Vec::new();
            match hibernation(&vol) {
                Ok(h) => {
                    if h.as_ref().is_some_and(|h| h.hibernated) {
                        hazards.push(DiskHazard::Hibernated { partition: index });
                    }
                    v.hibernation = h;
                }
                Err(e) => errors.push(format!("hiberfil.sys: {e:#}")),
            }
            match find_system_root(&vol) {
                Ok(Some(root)) => v.windows = Some(inspect_root(&vol, &root)),
                Ok(None) => {}
                Err(e) => errors.push(format!("looking for the Windows root: {e:#}")),
            }
            if !errors.is_empty() {
                let reason = errors.join("; ");
                if v.windows.is_none() {
                    hazards.push(DiskHazard::UnreadableVolume {
                        partition: index,
                        reason: reason.clone(),
                    });
                }
                v.error = Some(reason);
            }
            if v.windows.is_some() {
                return (v, Some(vol));
            }
        }
        FsKind::Fat | FsKind::ExFat | FsKind::Unknown => {}
    }
    (v, None)
}

/// Inspect each hard disk named by a domain XML, with its declared `<driver type>`; network and
/// volume disks, and disks without a declared format, are "unknown" with the reason.
pub fn inspect_domain_xml(xml: &str, stats: &Arc<IoStats>) -> Vec<DiskInspection> {
    inspect_domain_xml_except(&LocalFiles, xml, stats, None)
}

/// [`inspect_domain_xml`] without the disk whose source is shown as `skip` (the boot disk,
/// which `inspect --domain` has read already — in a watched thread, so it is not read again in
/// this one).
pub fn inspect_domain_xml_except(
    store: &dyn FileStore,
    xml: &str,
    stats: &Arc<IoStats>,
    skip: Option<&str>,
) -> Vec<DiskInspection> {
    use crate::domain::DiskSource;
    let facts = match crate::domain::parse_domain(xml) {
        Ok(f) => f,
        Err(e) => {
            return vec![DiskInspection::unknown(
                "-",
                FormatSource::Declared,
                format!("domain XML: {e}"),
            )]
        }
    };
    let mut out = Vec::new();
    for disk in facts.disks.iter().filter(|d| d.is_hard_disk()) {
        let shown = disk.source.display();
        if Some(shown.as_str()) == skip {
            continue;
        }
        let path = match &disk.source {
            DiskSource::File { path } => path.clone(),
            DiskSource::Block { dev } => dev.clone(),
            other => {
                out.push(DiskInspection::unknown(
                    &shown,
                    FormatSource::Declared,
                    format!(
                        "{} disk {}: not readable offline by this tool",
                        match other {
                            DiskSource::Network { protocol, .. } => format!("network ({protocol})"),
                            DiskSource::Volume { .. } => "storage-pool volume".to_string(),
                            _ => "source-less".to_string(),
                        },
                        disk.target
                    ),
                ));
                continue;
            }
        };
        let format = match disk.format.as_deref().map(str::parse::<DiskFormat>) {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                out.push(DiskInspection::unknown(
                    &shown,
                    FormatSource::Declared,
                    e.to_string(),
                ));
                continue;
            }
            None => {
                out.push(DiskInspection::unknown(
                    &shown,
                    FormatSource::Declared,
                    format!(
                        "disk {} declares no <driver type>: its format is not guessed from guest-writable content",
                        disk.target
                    ),
                ));
                continue;
            }
        };
        out.push(inspect_disk_in(
            store,
            Path::new(&path),
            format,
            FormatSource::Declared,
            stats,
        ));
    }
    out
}
