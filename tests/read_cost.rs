//! What an offline inspection reads from the host, in bytes (never in time): the targets of the
//! image reader (locating the Windows root and reading the file metadata: under 256 KiB) and of
//! the verdict (a clean guest, both hives included: at most 1 MiB), checked on every Windows
//! fixture image. `cargo bench --bench inspect` prints the same figures with times.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use virtio_migrate::domain::MachineFamily;
use virtio_migrate::inspect::disk::{inspect_disk, inspect_reader, FormatSource};
use virtio_migrate::inspect::guest::{assess_disk, Budget};
use virtio_migrate::inspect::image::disk::{open_disk, DiskFormat};
use virtio_migrate::inspect::image::{HostFile, IoStats, ReadAt};

const KIB: u64 = 1024;

/// Every fixture image whose MANIFEST lists a SYSTEM hive, with its format.
fn windows_images() -> Vec<(String, PathBuf, DiskFormat)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images");
    let manifest = std::fs::read_to_string(dir.join("MANIFEST")).unwrap();
    let mut names: Vec<&str> = manifest
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let path = f.get(2)?.to_ascii_lowercase();
            path.ends_with("system32/config/system").then_some(f[0])
        })
        .collect();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    names
        .into_iter()
        .map(|n| {
            let raw = dir.join(format!("{n}.raw"));
            if raw.exists() {
                (n.to_string(), raw, DiskFormat::Raw)
            } else {
                (
                    n.to_string(),
                    dir.join(format!("{n}.qcow2")),
                    DiskFormat::Qcow2,
                )
            }
        })
        .collect()
}

#[test]
fn a_guest_verdict_reads_at_most_1_mib_and_the_root_lookup_under_256_kib() {
    for (name, path, format) in windows_images() {
        let stats = IoStats::new();
        let disk = inspect_disk(&path, format, FormatSource::Declared, &stats);
        let root = stats.total_bytes();
        let v = assess_disk(
            &path,
            format,
            FormatSource::Declared,
            MachineFamily::Q35,
            Budget::default(),
        );
        eprintln!(
            "{name}: root+metadata {root} bytes, verdict {} bytes",
            v.bytes_read
        );
        assert!(root > 0 && root < 256 * KIB, "{name}: {root} bytes");
        assert!(v.bytes_read >= root, "{name}");
        assert!(v.bytes_read <= 1024 * KIB, "{name}: {} bytes", v.bytes_read);
        // Every image but the BitLocker one has its Windows volume read and hives opened.
        if name != "bitlocker" {
            assert_eq!(disk.windows_volumes().count(), 1, "{name}");
            assert!(v.assessment.facts.is_some(), "{name}");
        }
    }
}

#[test]
fn name_lookups_do_not_read_the_whole_upcase_table() {
    // Over the flattened disk, so the figures are the guest-level reads. The volume's 128 KiB
    // $UpCase table is read one 4 KiB page at a time as name comparisons need it: all the names
    // on these volumes are ASCII, so the whole lookup costs less than the table itself would.
    let dir = tempfile::tempdir().unwrap();
    for (name, path, format) in windows_images() {
        if name == "bitlocker" {
            continue;
        }
        let opened = open_disk(&path, format, &IoStats::new()).unwrap();
        let size = opened.reader.size();
        let mut flat = vec![0u8; usize::try_from(size).unwrap()];
        opened.reader.read_exact_at(&mut flat, 0).unwrap();
        let p = dir.path().join(format!("{name}.raw"));
        std::fs::write(&p, flat).unwrap();
        let stats = IoStats::new();
        let disk: Arc<dyn ReadAt> = Arc::new(HostFile::open(&p, &stats).unwrap());
        let d = inspect_reader(disk);
        assert_eq!(d.windows_volumes().count(), 1, "{name}");
        let read = stats.total_bytes();
        eprintln!("{name}: {read} bytes of the flattened disk");
        assert!(read < 128 * KIB, "{name}: {read} bytes");
    }
}

#[path = "support/scenario.rs"]
mod scenario;

/// Bytes, read calls and wall time of one verdict over a scenario laid out on the host.
fn scenario_cost(
    name: &str,
    machine: MachineFamily,
) -> (
    virtio_migrate::inspect::verdict::Assessment,
    u64,
    u64,
    std::time::Duration,
) {
    use virtio_migrate::inspect::guestfs::HostDirFs;
    let (dir, _root) = scenario::lay_out(name);
    let stats = IoStats::new();
    let fs = HostDirFs::with_stats(dir.path(), stats.clone());
    let started = std::time::Instant::now();
    let a = virtio_migrate::inspect::verdict::assess(&fs, "Windows", machine, &[]);
    let took = started.elapsed();
    let snapshot = stats.snapshot();
    let bytes = snapshot.iter().map(|f| f.bytes_read).sum();
    let reads = snapshot.iter().map(|f| f.reads).sum();
    (a, bytes, reads, took)
}

#[test]
fn real_size_hives_cost_at_most_1_mib_and_128_reads() {
    // Generated by fixtures/hives/make-realsize.py: a Windows 7 SYSTEM hive with 2,548
    // CriticalDeviceDatabase entries and 467 services in each of two control sets, and a
    // Windows 10 one with 2,000 DriverDatabase PCI ids, 700 driver packages, 620 services and 45
    // StartOverride keys (hivexregedit leaves them 63 and 69 MiB large, cells spread thin).
    for name in ["win7-realsize", "win10-realsize"] {
        for machine in [MachineFamily::I440fx, MachineFamily::Q35] {
            let (a, bytes, reads, took) = scenario_cost(name, machine);
            eprintln!(
                "{name} {machine:?}: {bytes} bytes ({:.1} KiB) in {reads} read calls, {:.1} ms; blk {}, nic {}",
                bytes as f64 / 1024.0,
                took.as_secs_f64() * 1000.0,
                a.blk.word(),
                a.nic.word()
            );
            assert_eq!(a.blk.word(), "ready", "{name} {machine:?}: {:#?}", a.blk);
            assert!(bytes <= 1024 * KIB, "{name} {machine:?}: {bytes} bytes");
            assert!(reads <= 128, "{name} {machine:?}: {reads} read calls");
        }
    }
}
