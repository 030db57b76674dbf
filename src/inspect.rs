//! Disk inspection: from a disk image to the Windows files inside it, as data, and the
//! `inspect` command that prints it.
//!
//! For one disk: the chain of image layers, the partition table, each volume (file system,
//! BitLocker, LDM), the NTFS facts, the Windows system root and the presence of the files the
//! verdict needs, and the hazards found on the way. Nothing here stops on a damaged disk: what
//! cannot be read becomes "unknown" with the reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use crate::cli::GlobalArgs;
use crate::domain::MachineFamily;
use crate::guest;
use crate::host::{Access, Host};
use crate::image::disk::{open_disk, probe_format, DiskFormat, Layer};
use crate::image::ntfs::{NtfsFacts, NtfsVolume};
use crate::image::partition::{
    fs_kind_of_boot_sector, read_partition_table, FsKind, PartitionScheme, PartitionTable,
    PartitionType,
};
use crate::image::windows_root::{
    find_system_root, hibernation, inspect_root, Hibernation, WindowsRoot,
};
use crate::image::{FileStats, IoStats, ReadAt, Window};
use crate::verdict::Assessment;

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
    let shown = path.display().to_string();
    match open_disk(path, format, stats) {
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

/// `virtio-migrate inspect`: show what a disk holds and whether its Windows is ready for virtio.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Disk image or block device to inspect (its format is probed unless --format is given)
    #[arg(
        value_name = "PATH",
        required_unless_present = "domain",
        conflicts_with = "domain"
    )]
    pub path: Option<PathBuf>,
    /// Inspect the boot disk (and the other disks) of this libvirt domain: name, UUID or id;
    /// formats and machine type come from its persistent definition
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Read PATH as this format instead of probing it
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<FormatArg>,
    /// Machine type the guest runs on, for PATH (decides which virtio PCI ids Windows will see);
    /// without it both the legacy and the modern ids must be bound
    #[arg(long, value_enum, value_name = "MACHINE", conflicts_with = "domain")]
    pub machine: Option<MachineArg>,
    /// Show bytes read and read calls per host file, and the wall time
    #[arg(long)]
    pub stats: bool,
    #[command(flatten)]
    pub budget: crate::guest::BudgetArgs,
}

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Raw,
    Qcow2,
}

impl From<FormatArg> for DiskFormat {
    fn from(f: FormatArg) -> DiskFormat {
        match f {
            FormatArg::Raw => DiskFormat::Raw,
            FormatArg::Qcow2 => DiskFormat::Qcow2,
        }
    }
}

/// `--machine` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MachineArg {
    /// i440fx (`pc`, `pc-i440fx-*`): legacy virtio ids
    Pc,
    /// q35 (`pc-q35-*`): modern virtio ids
    Q35,
}

/// What `inspect --stats` reports.
#[derive(Debug, Clone, Serialize)]
pub struct InspectStats {
    pub files: Vec<FileStats>,
    pub total_bytes: u64,
    pub wall_time_ms: u128,
}

/// The JSON document of `inspect --json`.
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    pub schema_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The boot disk (or the named PATH) first, then the domain's other hard disks.
    pub disks: Vec<DiskInspection>,
    /// The readiness verdict read from the first disk's Windows volume.
    pub verdict: Assessment,
    /// The partition the verdict was read from (0 = bare volume).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows_partition: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<InspectStats>,
}

/// Run `inspect`; returns the exit code (1 when the disk could not be read at all).
pub fn run(args: &InspectArgs, global: &GlobalArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let budget = args.budget.budget();
    let (domain, verdict, mut others) = if let Some(path) = &args.path {
        let (format, source) = match args.format {
            Some(f) => (DiskFormat::from(f), FormatSource::Operator),
            None => match probe_format(path) {
                Ok(f) => (f, FormatSource::Probed),
                Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
            },
        };
        let machine = match args.machine {
            Some(MachineArg::Pc) => MachineFamily::I440fx,
            Some(MachineArg::Q35) => MachineFamily::Q35,
            None => MachineFamily::Other,
        };
        (
            None,
            guest::assess_disk(path, format, source, machine, budget),
            Vec::new(),
        )
    } else if let Some(spec) = &args.domain {
        let host = Host::open(&global.uri(), Access::ReadOnly)?;
        let dom = host.lookup(spec)?;
        let xml = host.inactive_xml(&dom)?;
        let facts =
            crate::domain::parse_domain(&xml).map_err(|e| anyhow::anyhow!("domain {spec}: {e}"))?;
        // Watched as in `scan`: an image on hung storage gives `unknown` instead of no answer.
        let verdict = guest::assess_watched(&host.with_volume_paths(&facts), budget);
        // The other hard disks, for the record (the verdict comes from the boot disk), under a
        // budget of their own.
        let stats = budget.stats();
        let boot_path = facts.boot_disk().map(|d| d.source.display());
        let others = inspect_domain_xml_except(&xml, &stats, boot_path.as_deref());
        (Some(facts.name.clone()), verdict, others)
    } else {
        anyhow::bail!("name a disk image PATH or --domain");
    };
    let stats = args.stats.then(|| InspectStats {
        total_bytes: verdict.io.iter().map(|f| f.bytes_read).sum(),
        files: verdict.io.clone(),
        wall_time_ms: started.elapsed().as_millis(),
    });
    let unreadable = verdict.disk.unknown.is_some();
    // A named file that cannot be read as a disk at all is an error of one line, not a report.
    if let (Some(path), Some(why), false) = (&args.path, &verdict.disk.unknown, global.json) {
        anyhow::bail!("cannot inspect {}: {why}", path.display());
    }
    let mut disks = vec![verdict.disk];
    disks.append(&mut others);
    let report = InspectReport {
        schema_version: 1,
        domain,
        disks,
        verdict: verdict.assessment,
        windows_partition: verdict.windows_partition,
        stats,
    };
    if global.json {
        crate::report::print_json(&report)?;
    } else {
        crate::report::print_stdout(&render(&report))?;
    }
    Ok(if unreadable {
        crate::cli::EXIT_ERROR
    } else {
        0
    })
}

/// Inspect each hard disk named by a domain XML, with its declared `<driver type>`; network and
/// volume disks, and disks without a declared format, are "unknown" with the reason.
pub fn inspect_domain_xml(xml: &str, stats: &Arc<IoStats>) -> Vec<DiskInspection> {
    inspect_domain_xml_except(xml, stats, None)
}

/// [`inspect_domain_xml`] without the disk whose source is shown as `skip` (the boot disk,
/// which `inspect --domain` has read already — in a watched thread, so it is not read again in
/// this one).
fn inspect_domain_xml_except(
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
        out.push(inspect_disk(
            Path::new(&path),
            format,
            FormatSource::Declared,
            stats,
        ));
    }
    out
}

fn size_text(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// The human report.
pub fn render(report: &InspectReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if let Some(d) = &report.domain {
        let _ = writeln!(s, "domain {d}");
    }
    for d in &report.disks {
        let fmt = d.format.map(|f| f.name()).unwrap_or("unknown format");
        let src = match d.format_source {
            FormatSource::Declared => "declared",
            FormatSource::Operator => "--format",
            FormatSource::Probed => "probed from the file's content",
        };
        let _ = writeln!(s, "disk {} ({fmt}, {src})", d.path);
        if let Some(why) = &d.unknown {
            let _ = writeln!(s, "  unknown: {why}");
        }
        for (i, l) in d.chain.iter().enumerate() {
            let what = match l.qcow2_version {
                Some(v) => format!("qcow2 v{v}"),
                None => l.format.name().to_string(),
            };
            let mut extra = String::new();
            if let Some(c) = &l.compression {
                let _ = write!(
                    extra,
                    ", compression {}",
                    serde_json::to_string(c)
                        .unwrap_or_default()
                        .trim_matches('"')
                );
            }
            if l.extended_l2 {
                extra.push_str(", extended L2");
            }
            let _ = writeln!(
                s,
                "  {} {} ({what}, virtual {}{extra})",
                if i == 0 { "image  " } else { "backing" },
                l.path.display(),
                size_text(l.virtual_size)
            );
        }
        if let Some(t) = &d.partitions {
            let scheme = match t.scheme {
                PartitionScheme::Mbr => "MBR",
                PartitionScheme::Gpt => "GPT",
                PartitionScheme::Bare => "no partition table (whole-disk file system)",
                PartitionScheme::Unrecognised => "no partition table recognised",
            };
            let _ = writeln!(
                s,
                "  partitions: {scheme}, {}-byte sectors{}",
                t.sector_size,
                t.disk_id
                    .as_ref()
                    .map(|i| format!(", disk id {i}"))
                    .unwrap_or_default()
            );
            for n in &t.notes {
                let _ = writeln!(s, "    note: {n}");
            }
            for p in &t.partitions {
                let ty = match &p.partition_type {
                    PartitionType::Mbr(b) => format!("0x{b:02x} {}", p.type_name),
                    PartitionType::Gpt(_) => p.type_name.clone(),
                    PartitionType::Bare => p.type_name.clone(),
                };
                let _ = writeln!(
                    s,
                    "    #{:<2} at {:>10}  {:>10}  {ty}{}{}{}",
                    p.index,
                    size_text(p.start),
                    size_text(p.length),
                    p.name
                        .as_ref()
                        .map(|n| format!(" \"{n}\""))
                        .unwrap_or_default(),
                    if p.bootable { " (active)" } else { "" },
                    p.problem
                        .as_ref()
                        .map(|x| format!("  PROBLEM: {x}"))
                        .unwrap_or_default()
                );
                if let Some(v) = d.volumes.iter().find(|v| v.partition == p.index) {
                    render_volume(&mut s, v);
                }
            }
        }
        if d.hazards.is_empty() {
            if d.unknown.is_none() {
                let _ = writeln!(s, "  hazards: none found");
            }
        } else {
            let _ = writeln!(s, "  hazards:");
            for h in &d.hazards {
                let _ = writeln!(s, "    - {}", hazard_text(h));
            }
        }
    }
    let _ = writeln!(
        s,
        "verdict{}:",
        report
            .windows_partition
            .map(|p| format!(" (from partition {p})"))
            .unwrap_or_default()
    );
    for l in report.verdict.lines() {
        let _ = writeln!(s, "  {l}");
    }
    if let Some(st) = &report.stats {
        let _ = writeln!(s, "stats:");
        for f in &st.files {
            let _ = writeln!(
                s,
                "  {}: {} bytes in {} reads",
                f.path.display(),
                f.bytes_read,
                f.reads
            );
        }
        let _ = writeln!(
            s,
            "  total {} bytes ({}), wall time {} ms",
            st.total_bytes,
            size_text(st.total_bytes),
            st.wall_time_ms
        );
    }
    s
}

fn render_volume(s: &mut String, v: &VolumeInspection) {
    use std::fmt::Write;
    let fs = crate::image::partition::fs_kind_name(v.fs);
    match &v.ntfs {
        Some(n) => {
            let _ = writeln!(
                s,
                "        {fs}{} version {}, serial {}, {}",
                n.label
                    .as_ref()
                    .filter(|l| !l.is_empty())
                    .map(|l| format!(" \"{l}\""))
                    .unwrap_or_default(),
                n.version.as_deref().unwrap_or("?"),
                n.serial,
                if n.dirty { "DIRTY" } else { "clean" }
            );
        }
        None => {
            let _ = writeln!(s, "        {fs}");
        }
    }
    if let Some(h) = &v.hibernation {
        let _ = writeln!(
            s,
            "        hiberfil.sys: {} bytes, signature {:?}{}",
            h.size,
            h.signature,
            if h.hibernated {
                " — HIBERNATED"
            } else {
                " (resumed)"
            }
        );
    }
    if let Some(w) = &v.windows {
        let _ = writeln!(s, "        Windows root: {}", w.root);
        for f in &w.files {
            let state = match (f.present, f.size) {
                (true, Some(sz)) => format!(
                    "{sz} bytes{}",
                    if f.unreadable { " (unreadable)" } else { "" }
                ),
                _ => "missing".to_string(),
            };
            let _ = writeln!(s, "          {:<32} {state}", f.path);
        }
        for p in &w.driver_packages {
            let _ = writeln!(
                s,
                "          DriverStore {:<20} {}",
                p.driver,
                if p.folders.is_empty() {
                    "none".to_string()
                } else {
                    p.folders.join(", ")
                }
            );
        }
        for x in &w.warnings {
            let _ = writeln!(s, "          warning: {x}");
        }
    }
    if let Some(e) = &v.error {
        let _ = writeln!(s, "        error: {e}");
    }
}

fn hazard_text(h: &DiskHazard) -> String {
    match h {
        DiskHazard::BitLocker { partition } => {
            format!("partition {partition} is BitLocker-encrypted: it cannot be inspected")
        }
        DiskHazard::DynamicDisk => {
            "dynamic disk (LDM): not supported as a system disk".to_string()
        }
        DiskHazard::Hibernated { partition } => format!(
            "partition {partition}: Windows is hibernated (hiberfil.sys says hibr): the disk is not what the guest will run"
        ),
        DiskHazard::DirtyVolume { partition } => {
            format!("partition {partition}: the NTFS volume is dirty (not cleanly unmounted)")
        }
        DiskHazard::PartitionTable { problem } => format!("partition table: {problem}"),
        DiskHazard::UnreadableVolume { partition, reason } => {
            format!("partition {partition} could not be read: {reason}")
        }
    }
}
