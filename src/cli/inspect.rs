//! `virtio-migrate inspect`: one disk image (or a domain's disks) from layers to verdict, printed
//! for a person or as JSON. The reading itself is [`crate::inspect::disk`] and
//! [`crate::inspect::guest`].

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use crate::cli::common::{GlobalArgs, EXIT_ERROR};
use crate::domain::MachineFamily;
use crate::host::{Access, Host};
use crate::inspect::disk::{
    inspect_domain_xml_except, DiskHazard, DiskInspection, FormatSource, VolumeInspection,
};
use crate::inspect::guest;
use crate::inspect::image::disk::{probe_format, DiskFormat};
use crate::inspect::image::partition::{PartitionScheme, PartitionType};
use crate::inspect::image::FileStats;
use crate::inspect::verdict::Assessment;

/// `virtio-migrate inspect`: show what a disk holds and whether its Windows is ready for virtio.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Disk image or block device to inspect (its format is probed unless --format is given);
    /// a DOMAIN (name, UUID or id) when no such file exists, as with --domain
    #[arg(
        value_name = "PATH|DOMAIN",
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
    pub budget: crate::inspect::guest::BudgetArgs,
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
    // `inspect NAME` like `scan NAME`: a positional that is no file (and comes without the
    // image-only --format/--machine) names a domain — unless it holds a '/', which no domain
    // name may (libvirt refuses it), so a missing image is reported as a missing file.
    let as_domain = match &args.path {
        Some(p)
            if std::fs::symlink_metadata(p).is_err()
                && !p.to_string_lossy().contains('/')
                && args.format.is_none()
                && args.machine.is_none() =>
        {
            Some(InspectArgs {
                path: None,
                domain: Some(p.display().to_string()),
                format: None,
                machine: None,
                stats: args.stats,
                budget: args.budget,
            })
        }
        _ => None,
    };
    let args = as_domain.as_ref().unwrap_or(args);
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
        let store = host.file_store()?;
        let verdict = guest::assess_watched_in(&store, &host.with_volume_paths(&facts), budget);
        // The other hard disks, for the record (the verdict comes from the boot disk), under a
        // budget of their own.
        let stats = budget.stats();
        let boot_path = facts.boot_disk().map(|d| d.source.display());
        let others = inspect_domain_xml_except(store.as_ref(), &xml, &stats, boot_path.as_deref());
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
        crate::cli::report::print_json(&report)?;
    } else {
        crate::cli::report::print_stdout(&render(&report))?;
    }
    Ok(if unreadable { EXIT_ERROR } else { 0 })
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
    let fs = crate::inspect::image::partition::fs_kind_name(v.fs);
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
