//! The offline verdict for one guest: its boot disk read through the image stack, the Windows
//! volume found, and the readiness assessment made from its registry and driver files.
//!
//! This is the one place that joins the layers (image → partitions → NTFS → hives → verdict).
//! Nothing here fails: a disk that cannot be read gives an `unknown` verdict with the reason.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::domain::{DiskSource, DomainFacts, MachineFamily};
use crate::inspect::disk::{
    inspect_reader_keeping_windows, DiskHazard, DiskInspection, FormatSource,
};
use crate::inspect::image::disk::{open_disk_in, DiskFormat};
use crate::inspect::image::{FileStats, FileStore, IoStats, LocalFiles};
use crate::inspect::verdict::{assess, Assessment, Hazard};

/// Limits on what one guest's inspection may cost (hostile or merely huge images): past either,
/// every further read fails and the verdict is `unknown (budget exceeded)`.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Bytes read from host files for this guest.
    pub max_bytes: u64,
    /// Wall time for this guest.
    pub max_time: Duration,
}

impl Default for Budget {
    fn default() -> Budget {
        // A clean guest costs well under 1 MiB; 256 MiB leaves room for big hives and DriverStores.
        Budget {
            max_bytes: 256 << 20,
            max_time: Duration::from_secs(60),
        }
    }
}

/// The `--read-limit` and `--time-limit` options of `scan`, `inspect` and `convert`.
#[derive(Debug, Clone, Copy, clap::Args)]
#[command(next_help_heading = "Inspection limits (per guest)")]
pub struct BudgetArgs {
    /// Stop reading one guest's disk images after SIZE bytes (suffix K, M or G: KiB, MiB, GiB);
    /// that guest's verdict is then unknown (budget exceeded)
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    pub read_limit: u64,
    /// Stop inspecting one guest after SECONDS of wall time; that guest's verdict is then
    /// unknown (budget exceeded)
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub time_limit: u64,
}

impl BudgetArgs {
    pub fn budget(&self) -> Budget {
        Budget {
            max_bytes: self.read_limit,
            max_time: Duration::from_secs(self.time_limit),
        }
    }
}

/// A size in bytes: digits with an optional K, M or G (powers of 1024), at least 4 KiB (a
/// smaller budget could not read a partition table) and at most 1 TiB.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 10),
        Some((i, 'm' | 'M')) => (&t[..i], 20),
        Some((i, 'g' | 'G')) => (&t[..i], 30),
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (digits with an optional K, M or G)"))?;
    let bytes = n
        .checked_mul(1u64 << shift)
        .filter(|&b| b <= 1 << 40)
        .ok_or_else(|| format!("{text:?} is more than 1 TiB"))?;
    if bytes < 4096 {
        return Err(format!("{text:?} is less than 4K"));
    }
    Ok(bytes)
}

impl Budget {
    /// Read counters that refuse reads once this budget is spent.
    pub fn stats(&self) -> Arc<IoStats> {
        IoStats::with_budget(self.max_bytes, Some(self.max_time))
    }
}

/// What the inspection of one guest found, with what it cost.
#[derive(Debug, Clone, Serialize)]
pub struct GuestVerdict {
    /// The boot disk as inspected.
    pub disk: DiskInspection,
    /// The Windows volume the verdict was read from (partition index; 0 = bare volume).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows_partition: Option<u32>,
    /// Readiness per target, the checks with evidence, and the hazards.
    pub assessment: Assessment,
    pub bytes_read: u64,
    pub wall_time_ms: u64,
    /// Bytes and reads per host file.
    pub io: Vec<FileStats>,
}

/// Assess the boot disk of a domain, reading it with the format its XML declares.
pub fn assess_domain(facts: &DomainFacts, budget: Budget) -> GuestVerdict {
    assess_domain_in(&LocalFiles, facts, budget)
}

/// [`assess_domain`] with the disk's files read from `store` (another host's, through libvirt).
pub fn assess_domain_in(
    store: &dyn FileStore,
    facts: &DomainFacts,
    budget: Budget,
) -> GuestVerdict {
    let started = Instant::now();
    let stats = budget.stats();
    let machine = facts.machine_family;
    let Some(disk) = facts.boot_disk() else {
        return unknown_disk(
            "-",
            machine,
            "the domain has no boot disk (it does not boot from a hard disk)".into(),
            started,
        );
    };
    let shown = disk.source.display();
    let path = match &disk.source {
        DiskSource::File { path } => path.clone(),
        DiskSource::Block { dev } => dev.clone(),
        DiskSource::Network { protocol, .. } => {
            return unknown_disk(
                &shown,
                machine,
                format!(
                    "boot disk {} is a network disk ({protocol}): not readable offline",
                    disk.target
                ),
                started,
            )
        }
        DiskSource::Volume { pool, volume } => {
            return unknown_disk(
                &shown,
                machine,
                format!(
                    "boot disk {} is storage-pool volume {pool}/{volume}, which libvirt does not resolve to a local file or device (check virsh vol-path; a path can be inspected with inspect PATH)",
                    disk.target
                ),
                started,
            )
        }
        DiskSource::Dir { .. } | DiskSource::None { .. } => {
            return unknown_disk(
                &shown,
                machine,
                format!("boot disk {} has no readable source", disk.target),
                started,
            )
        }
    };
    let format = match disk.format.as_deref() {
        Some(f) => match f.parse::<DiskFormat>() {
            Ok(f) => f,
            Err(e) => return unknown_disk(&shown, machine, e.to_string(), started),
        },
        None => {
            return unknown_disk(
                &shown,
                machine,
                format!(
                    "boot disk {} declares no <driver type>: the format of a guest-writable disk is never guessed",
                    disk.target
                ),
                started,
            )
        }
    };
    assess_path(
        store,
        Path::new(&path),
        format,
        FormatSource::Declared,
        machine,
        &stats,
        started,
    )
}

/// Assess the disk at `path`, read as `format`, for a guest of the given machine family.
pub fn assess_disk(
    path: &Path,
    format: DiskFormat,
    format_source: FormatSource,
    machine: MachineFamily,
    budget: Budget,
) -> GuestVerdict {
    assess_path(
        &LocalFiles,
        path,
        format,
        format_source,
        machine,
        &budget.stats(),
        Instant::now(),
    )
}

fn assess_path(
    store: &dyn FileStore,
    path: &Path,
    format: DiskFormat,
    format_source: FormatSource,
    machine: MachineFamily,
    stats: &Arc<IoStats>,
    started: Instant,
) -> GuestVerdict {
    let shown = path.display().to_string();
    let opened = match open_disk_in(store, path, format, stats) {
        Ok(o) => o,
        Err(e) => {
            let mut v = unknown_disk(&shown, machine, format!("{e}"), started);
            v.disk.format = Some(format);
            v.disk.format_source = format_source;
            v.bytes_read = stats.total_bytes();
            v.io = stats.snapshot();
            return v;
        }
    };
    let (mut disk, volumes) = inspect_reader_keeping_windows(opened.reader);
    disk.path = shown;
    disk.format = Some(format);
    disk.format_source = format_source;
    disk.chain = opened.chain;

    let layer_hazards = layer_hazards(&disk);
    let mut incomplete: Vec<String> = disk
        .hazards
        .iter()
        .filter_map(|h| match h {
            DiskHazard::PartitionTable { problem } => Some(format!("partition table: {problem}")),
            DiskHazard::UnreadableVolume { partition, reason } => {
                Some(format!("partition {partition} unreadable: {reason}"))
            }
            _ => None,
        })
        .collect();

    let (windows_partition, mut assessment) = match volumes.first() {
        Some((index, vol)) => {
            let root = disk
                .volumes
                .iter()
                .find(|v| v.partition == *index)
                .and_then(|v| v.windows.as_ref())
                .map(|w| w.root.clone())
                .unwrap_or_else(|| "Windows".to_string());
            if volumes.len() > 1 {
                incomplete.push(format!(
                    "{} volumes hold a Windows root; the verdict is read from partition {index}",
                    volumes.len()
                ));
            }
            (Some(*index), assess(vol, &root, machine, &layer_hazards))
        }
        None => {
            let why = no_windows_reason(&disk);
            (None, Assessment::unknown("", machine, &why, &layer_hazards))
        }
    };
    assessment.incomplete.extend(incomplete);

    let bytes_read = stats.total_bytes();
    if stats.budget_exceeded() {
        let why = format!(
            "budget exceeded: the inspection stopped after {bytes_read} bytes in {} ms",
            millis(started.elapsed())
        );
        assessment =
            Assessment::unknown(&assessment.system_root, machine, &why, &assessment.hazards);
    }
    GuestVerdict {
        disk,
        windows_partition,
        assessment,
        bytes_read,
        wall_time_ms: millis(started.elapsed()),
        io: stats.snapshot(),
    }
}

/// Why no verdict could be read from a disk that has no Windows volume we can read.
fn no_windows_reason(disk: &DiskInspection) -> String {
    if let Some(u) = &disk.unknown {
        return u.clone();
    }
    for h in &disk.hazards {
        match h {
            DiskHazard::BitLocker { partition } => {
                return format!(
                    "partition {partition} is BitLocker-encrypted: its content cannot be inspected offline"
                )
            }
            DiskHazard::DynamicDisk => {
                return "dynamic (LDM) disk: not supported as a system disk".to_string()
            }
            _ => {}
        }
    }
    if disk.volumes.iter().any(|v| v.ntfs.is_some()) {
        "no Windows system root (Windows/System32/config/SYSTEM) on any NTFS volume of the boot disk"
            .to_string()
    } else {
        "no NTFS volume on the boot disk".to_string()
    }
}

/// The hazards the image and partition layers found, in the verdict's terms.
fn layer_hazards(disk: &DiskInspection) -> Vec<Hazard> {
    disk.hazards
        .iter()
        .filter_map(|h| match h {
            DiskHazard::BitLocker { partition } => Some(Hazard::BitLocker {
                evidence: format!("partition {partition}: boot sector OEM id -FVE-FS-"),
            }),
            DiskHazard::DynamicDisk => Some(Hazard::DynamicDisk {
                evidence: "the partition table holds LDM (dynamic disk) partitions".to_string(),
            }),
            DiskHazard::Hibernated { partition } => Some(Hazard::Hibernation {
                evidence: format!("partition {partition}: hiberfil.sys begins with 'hibr'"),
            }),
            DiskHazard::DirtyVolume { partition } => Some(Hazard::FilesystemDirty {
                evidence: format!("partition {partition}: NTFS $Volume dirty flag set"),
            }),
            DiskHazard::PartitionTable { .. } | DiskHazard::UnreadableVolume { .. } => None,
        })
        .collect()
}

fn unknown_disk(
    shown: &str,
    machine: MachineFamily,
    why: String,
    started: Instant,
) -> GuestVerdict {
    GuestVerdict {
        disk: DiskInspection::unknown(shown, FormatSource::Declared, why.clone()),
        windows_partition: None,
        assessment: Assessment::unknown("", machine, &why, &[]),
        bytes_read: 0,
        wall_time_ms: millis(started.elapsed()),
        io: Vec::new(),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Most extra time past the `--time-limit` before a guest's inspection counts as stuck (it is
/// the time limit itself when that is shorter): the time budget is checked before each read, so
/// past it only a read that never returns keeps an inspection going.
pub const STUCK_GRACE: Duration = Duration::from_secs(30);

/// Assess many guests with at most `parallel` inspections at a time, keeping the input order.
/// A guest whose inspection has not returned well after its time budget (a read
/// blocked in the kernel: hung NFS, a dead multipath path) is `unknown` and the others go on.
pub fn assess_many(guests: &[&DomainFacts], parallel: usize, budget: Budget) -> Vec<GuestVerdict> {
    let store: Arc<dyn FileStore> = Arc::new(LocalFiles);
    assess_many_in(&store, guests, parallel, budget)
}

/// [`assess_many`] with the disks' files read from `store`.
pub fn assess_many_in(
    store: &Arc<dyn FileStore>,
    guests: &[&DomainFacts],
    parallel: usize,
    budget: Budget,
) -> Vec<GuestVerdict> {
    let store = store.clone();
    let owned: Vec<DomainFacts> = guests.iter().map(|f| (*f).clone()).collect();
    let patience = budget.max_time + budget.max_time.min(STUCK_GRACE);
    crate::inspect::workers::run_watched(
        owned,
        parallel,
        patience,
        move |facts| assess_domain_in(store.as_ref(), facts, budget),
        |facts, failure| {
            let why = match failure {
                // The readers never panic on bad input; should one still do so, that guest
                // gets an unknown verdict instead of ending the whole scan.
                crate::inspect::workers::Failure::Panicked => {
                    "internal error while inspecting this guest (a bug: please report it)"
                        .to_string()
                }
                crate::inspect::workers::Failure::Stuck(after) => format!(
                    "no answer from its disk image within {} s (a read is blocked: hung network \
                     storage or device?); the scan went on without it",
                    after.as_secs()
                ),
            };
            unknown_disk("-", facts.machine_family, why, Instant::now())
        },
    )
}

/// One guest's verdict, watched as [`assess_many`] watches each: an image on hung storage gives
/// an `unknown` verdict instead of no answer.
pub fn assess_watched(facts: &DomainFacts, budget: Budget) -> GuestVerdict {
    let store: Arc<dyn FileStore> = Arc::new(LocalFiles);
    assess_watched_in(&store, facts, budget)
}

/// [`assess_watched`] with the disks' files read from `store`.
pub fn assess_watched_in(
    store: &Arc<dyn FileStore>,
    facts: &DomainFacts,
    budget: Budget,
) -> GuestVerdict {
    assess_many_in(store, &[facts], 1, budget)
        .pop()
        .unwrap_or_else(|| {
            unknown_disk(
                "-",
                facts.machine_family,
                "the inspection did not complete".into(),
                Instant::now(),
            )
        })
}
