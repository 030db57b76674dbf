//! The whole read-only stack over the committed fixtures (fixtures/make-images.sh):
//! image → partitions → NTFS → Windows root, compared with what the script wrote
//! (fixtures/images/MANIFEST: SHA-256 of every file and of each flattened disk).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use virtio_migrate::inspect::disk::{
    inspect_disk, inspect_domain_xml, inspect_reader, DiskHazard, DiskInspection, FormatSource,
};
use virtio_migrate::inspect::guestfs::GuestFs;
use virtio_migrate::inspect::image::disk::{open_disk, DiskFormat};
use virtio_migrate::inspect::image::ntfs::NtfsVolume;
use virtio_migrate::inspect::image::partition::{FsKind, PartitionScheme};
use virtio_migrate::inspect::image::{HostFile, IoStats, ReadAt, Window};

fn images() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images")
}

/// (image name) → file name and format.
fn image_file(name: &str) -> (PathBuf, DiskFormat) {
    if name == "bare-ntfs" {
        (images().join("bare-ntfs.raw"), DiskFormat::Raw)
    } else {
        (images().join(format!("{name}.qcow2")), DiskFormat::Qcow2)
    }
}

const ALL: [&str; 17] = [
    "mbr-sysreserved",
    "gpt-uefi",
    "gpt-zstd-l2",
    "bare-ntfs",
    "cloudstack-template",
    "cloudstack-overlay",
    "gpt4k",
    "bitlocker",
    "hibernated",
    "dynamic",
    "win2k8r2-start3",
    "static-ip",
    "dirty-system",
    "win10-novirtio",
    "netkvm-driverstore",
    "debian12",
    "blank-data",
];

struct ManifestLine {
    part: Option<u32>,
    path: String,
    size: u64,
    sha256: String,
}

/// image → lines of the manifest.
fn manifest() -> BTreeMap<String, Vec<ManifestLine>> {
    let text = std::fs::read_to_string(images().join("MANIFEST")).unwrap();
    let mut out: BTreeMap<String, Vec<ManifestLine>> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 5, "bad manifest line {line:?}");
        out.entry(f[0].to_string()).or_default().push(ManifestLine {
            part: f[1].parse().ok(),
            path: f[2].to_string(),
            size: f[3].parse().unwrap(),
            sha256: f[4].to_string(),
        });
    }
    out
}

fn open(name: &str) -> Arc<dyn ReadAt> {
    let (path, format) = image_file(name);
    open_disk(&path, format, &IoStats::new()).unwrap().reader
}

fn inspect(name: &str) -> DiskInspection {
    let (path, format) = image_file(name);
    let d = inspect_disk(&path, format, FormatSource::Operator, &IoStats::new());
    assert!(d.unknown.is_none(), "{name}: {:?}", d.unknown);
    d
}

fn read_all(r: &dyn ReadAt) -> Vec<u8> {
    let mut v = vec![0u8; r.size() as usize];
    r.read_exact_at(&mut v, 0).unwrap();
    v
}

fn sha(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

fn volume(disk: &Arc<dyn ReadAt>, d: &DiskInspection, part: u32) -> NtfsVolume {
    let v = d.volumes.iter().find(|v| v.partition == part).unwrap();
    let w = Window::new(disk.clone(), v.start, v.length).unwrap();
    NtfsVolume::open(Arc::new(w)).unwrap()
}

#[test]
fn flattened_disks_match_what_the_script_wrote() {
    let m = manifest();
    for name in ALL {
        let line = m[name].iter().find(|l| l.path == "@disk").unwrap();
        let disk = open(name);
        assert_eq!(disk.size(), line.size, "{name}");
        assert_eq!(
            sha(&read_all(&*disk)),
            line.sha256,
            "{name}: flattened content"
        );
    }
}

#[test]
fn every_file_the_script_wrote_reads_back_identically() {
    let m = manifest();
    let mut checked = 0;
    let mut expected = 0;
    for name in ALL {
        let disk = open(name);
        let d = inspect_reader(disk.clone());
        for l in m[name].iter().filter(|l| l.part.is_some()) {
            expected += 1;
            let fs = volume(&disk, &d, l.part.unwrap());
            let entry = fs
                .lookup(&l.path)
                .unwrap()
                .unwrap_or_else(|| panic!("{name}: {}", l.path));
            assert_eq!(entry.size, l.size, "{name}: {}", l.path);
            // Case-insensitive lookup finds the same file.
            let upper = fs.lookup(&l.path.to_uppercase()).unwrap().unwrap();
            assert_eq!(upper.name, entry.name);
            if l.path.ends_with("compressed.dat") {
                assert!(entry.compressed, "{name}: {} should be compressed", l.path);
                let err = fs
                    .open(&l.path)
                    .err()
                    .expect("a compressed file is refused");
                assert!(format!("{err:#}").contains("compressed"), "{err:#}");
                expected -= 1;
                continue;
            }
            let f = fs.open(&l.path).unwrap();
            assert_eq!(sha(&read_all(&*f)), l.sha256, "{name}: {}", l.path);
            checked += 1;
        }
    }
    assert_eq!(checked, expected);
    assert!(checked > 100, "only {checked} files checked");
}

#[test]
fn compressed_file_is_refused_and_sparse_file_reads_zeros() {
    let disk = open("gpt-uefi");
    let d = inspect_reader(disk.clone());
    let fs = volume(&disk, &d, 3);
    assert!(fs.open("windows/temp/compressed/COMPRESSED.DAT").is_err());
    let listing = fs.read_dir("Windows/Temp/Compressed").unwrap();
    let c = listing.iter().find(|e| e.name == "compressed.dat").unwrap();
    assert!(c.compressed);
    let sparse = fs.open("Windows/Temp/sparse.bin").unwrap();
    assert_eq!(sparse.size(), 64 * 4096 + 8192);
    let mut hole = vec![1u8; 64 * 4096];
    sparse.read_exact_at(&mut hole, 0).unwrap();
    assert!(hole.iter().all(|&b| b == 0));
    let mut tail = vec![0u8; 17];
    sparse.read_exact_at(&mut tail, 64 * 4096).unwrap();
    assert_eq!(&tail, b"data after a hole");
    assert!(
        fs.open("Windows").is_err(),
        "a directory is not opened as a file"
    );
    assert!(fs.lookup("Windows/nothing/here").unwrap().is_none());
    assert!(fs
        .lookup("Windows/System32/cmd.exe/below")
        .unwrap()
        .is_none());
}

/// The system root, driver files, driver packages and hives the inspection reports, against what
/// the script wrote (from the scenario's files.txt, as recorded in the manifest). Paths are
/// compared without regard to case: a scenario may spell its root `WINDOWS/system32/DRIVERS`.
fn expect_drivers(
    m: &[ManifestLine],
    part: u32,
    root: &virtio_migrate::inspect::image::windows_root::WindowsRoot,
) {
    let lines = || m.iter().filter(|l| l.part == Some(part));
    // The root as spelled on disk: the first component of the SYSTEM hive's path.
    let system = lines()
        .find(|l| {
            l.path
                .to_ascii_lowercase()
                .ends_with("/system32/config/system")
        })
        .expect("the script wrote a SYSTEM hive");
    assert_eq!(Some(root.root.as_str()), system.path.split('/').next());
    let r = root.root.to_ascii_lowercase();
    for d in ["viostor", "vioscsi", "netkvm"] {
        let sys = format!("{r}/system32/drivers/{d}.sys");
        let want = lines().any(|l| l.path.eq_ignore_ascii_case(&sys));
        let got = root.file(&format!("System32/drivers/{d}.sys")).unwrap();
        assert_eq!(got.present, want, "{sys}");
        let pkg = format!("{r}/system32/driverstore/filerepository/{d}.inf_");
        let want_pkg = lines().any(|l| l.path.to_ascii_lowercase().starts_with(&pkg));
        let got_pkg = root.driver_packages.iter().find(|p| p.driver == d).unwrap();
        assert_eq!(!got_pkg.folders.is_empty(), want_pkg, "{pkg}");
    }
    for h in [
        "SYSTEM",
        "SOFTWARE",
        "SYSTEM.LOG1",
        "SYSTEM.LOG2",
        "SOFTWARE.LOG1",
    ] {
        let path = format!("{r}/system32/config/{h}");
        let line = lines().find(|l| l.path.eq_ignore_ascii_case(&path));
        let got = root.file(&format!("System32/config/{h}")).unwrap();
        assert_eq!(got.present, line.is_some(), "{path}");
        assert_eq!(got.size, line.map(|l| l.size), "{path}");
    }
}

#[test]
fn every_fixture_walks_correctly() {
    let m = manifest();
    // (image, scheme, sector size, partitions, Windows partition)
    let cases: [(&str, PartitionScheme, u32, usize, Option<u32>); 16] = [
        ("mbr-sysreserved", PartitionScheme::Mbr, 512, 2, Some(2)),
        ("gpt-uefi", PartitionScheme::Gpt, 512, 4, Some(3)),
        ("gpt-zstd-l2", PartitionScheme::Gpt, 512, 4, Some(3)),
        ("bare-ntfs", PartitionScheme::Bare, 512, 1, Some(0)),
        ("cloudstack-template", PartitionScheme::Mbr, 512, 1, Some(1)),
        ("cloudstack-overlay", PartitionScheme::Mbr, 512, 1, Some(1)),
        ("gpt4k", PartitionScheme::Gpt, 4096, 2, Some(2)),
        ("bitlocker", PartitionScheme::Mbr, 512, 2, None),
        ("hibernated", PartitionScheme::Mbr, 512, 4, Some(1)),
        ("dynamic", PartitionScheme::Mbr, 512, 1, None),
        ("win2k8r2-start3", PartitionScheme::Mbr, 512, 2, Some(2)),
        ("static-ip", PartitionScheme::Mbr, 512, 1, Some(1)),
        ("dirty-system", PartitionScheme::Mbr, 512, 2, Some(2)),
        ("win10-novirtio", PartitionScheme::Mbr, 512, 2, Some(2)),
        ("netkvm-driverstore", PartitionScheme::Gpt, 512, 3, Some(3)),
        ("debian12", PartitionScheme::Mbr, 512, 1, None),
    ];
    for (name, scheme, ss, nparts, win) in cases {
        let d = inspect(name);
        let t = d.partitions.as_ref().unwrap();
        assert_eq!(t.scheme, scheme, "{name}");
        assert_eq!(t.sector_size, ss, "{name}");
        assert_eq!(t.partitions.len(), nparts, "{name}: {t:?}");
        assert!(t.problems.is_empty(), "{name}: {:?}", t.problems);
        let wins: Vec<u32> = d.windows_volumes().map(|v| v.partition).collect();
        assert_eq!(wins, win.into_iter().collect::<Vec<_>>(), "{name}");
        if let Some(p) = win {
            let v = d.volumes.iter().find(|v| v.partition == p).unwrap();
            let root = v.windows.as_ref().unwrap();
            assert!(root.warnings.is_empty(), "{name}: {:?}", root.warnings);
            expect_drivers(&m[name], p, root);
        }
        let expected_hazards: Vec<DiskHazard> = match name {
            "bitlocker" => vec![DiskHazard::BitLocker { partition: 2 }],
            "hibernated" => vec![
                DiskHazard::DirtyVolume { partition: 1 },
                DiskHazard::Hibernated { partition: 1 },
            ],
            "dynamic" => vec![DiskHazard::DynamicDisk],
            // Windows 10's Fast Startup leaves hiberfil.sys saying "HIBR" (files.txt).
            "bare-ntfs" => vec![DiskHazard::Hibernated { partition: 0 }],
            "win10-novirtio" => vec![DiskHazard::Hibernated { partition: 2 }],
            _ => vec![],
        };
        assert_eq!(d.hazards, expected_hazards, "{name}");
    }
    // Details the table above does not cover.
    let d = inspect("mbr-sysreserved");
    let sr = &d.volumes[0];
    assert_eq!(
        sr.ntfs.as_ref().unwrap().label.as_deref(),
        Some("System Reserved")
    );
    assert_eq!(sr.ntfs.as_ref().unwrap().version.as_deref(), Some("3.1"));
    assert!(d.partitions.as_ref().unwrap().partitions[0].bootable);
    let d = inspect("gpt-uefi");
    let t = d.partitions.as_ref().unwrap();
    let names: Vec<&str> = t.partitions.iter().map(|p| p.type_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "EFI system",
            "Microsoft reserved (MSR)",
            "Microsoft basic data (NTFS/FAT)",
            "Windows recovery environment"
        ]
    );
    assert_eq!(d.volumes[0].fs, FsKind::Fat);
    let h = d.volumes[2].hibernation.as_ref().unwrap();
    assert_eq!((h.signature.as_str(), h.hibernated), ("wake", false));
    let d = inspect("hibernated");
    let idx: Vec<u32> = d
        .partitions
        .as_ref()
        .unwrap()
        .partitions
        .iter()
        .map(|p| p.index)
        .collect();
    assert_eq!(idx, [1, 2, 5, 6]);
    assert!(d.volumes[0].ntfs.as_ref().unwrap().dirty);
    let d = inspect("cloudstack-overlay");
    assert_eq!(d.chain.len(), 2);
    assert_eq!(
        d.chain[1].path.file_name().unwrap(),
        "cloudstack-template.qcow2"
    );
    let d = inspect("bitlocker");
    assert_eq!(d.volumes[1].fs, FsKind::BitLocker);
    assert!(d.volumes[1].ntfs.is_none());
    // The system root keeps its spelling on disk (the 2008 R2 upgrade-style "WINDOWS").
    for name in ["cloudstack-template", "win2k8r2-start3"] {
        let d = inspect(name);
        let root = d
            .windows_volumes()
            .next()
            .unwrap()
            .windows
            .as_ref()
            .unwrap();
        assert_eq!(root.root, "WINDOWS", "{name}");
    }
    // A Linux disk: the ext4 partition is read as an unknown file system, no Windows, no hazard.
    let d = inspect("debian12");
    assert_eq!(d.volumes.len(), 1);
    assert_eq!(d.volumes[0].fs, FsKind::Unknown);
    assert!(d.volumes[0].error.is_none());
    // An empty disk (qemu-img create): nothing recognised, so the inspection says unknown.
    let (path, format) = image_file("blank-data");
    let d = inspect_disk(&path, format, FormatSource::Operator, &IoStats::new());
    assert!(d.volumes.is_empty());
    assert!(d.unknown.is_some(), "{d:?}");
}

#[test]
fn gpt_backup_header_is_used_when_the_primary_is_gone() {
    for (name, ss) in [("gpt-uefi", 512usize), ("gpt4k", 4096)] {
        let mut flat = read_all(&*open(name));
        let good = inspect_reader(Arc::new(flat.clone()));
        flat[ss..ss + 92].fill(0);
        let d = inspect_reader(Arc::new(flat));
        let t = d.partitions.as_ref().unwrap();
        assert_eq!(
            t.partitions,
            good.partitions.as_ref().unwrap().partitions,
            "{name}"
        );
        assert!(
            t.notes.iter().any(|n| n.contains("backup")),
            "{name}: {t:?}"
        );
        assert_eq!(d.windows_volumes().count(), 1, "{name}");
        assert!(matches!(d.hazards[0], DiskHazard::PartitionTable { .. }));
    }
}

/// A small deterministic generator for the damage positions.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Byte ranges worth damaging: partition table sectors, each volume's boot sector, and the
/// start of its MFT.
fn hot_ranges(flat: &[u8], d: &DiskInspection) -> Vec<(usize, usize)> {
    let mut r = vec![(0usize, 512usize), (512, 1024), (4096, 4096 + 512)];
    for v in &d.volumes {
        let s = v.start as usize;
        r.push((s, s + 512));
        if let Some(bs) = flat.get(s..s + 512) {
            let cluster = u64::from(u16::from_le_bytes([bs[11], bs[12]])) * u64::from(bs[13]);
            let mft = u64::from_le_bytes(bs[48..56].try_into().unwrap()).saturating_mul(cluster);
            let m = s.saturating_add(mft as usize);
            if m < flat.len() {
                r.push((m, (m + 16 * 1024).min(flat.len())));
            }
        }
    }
    r
}

#[test]
fn damaged_and_truncated_copies_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut runs = 0;
    for name in ALL {
        let flat = read_all(&*open(name));
        let good = inspect_reader(Arc::new(flat.clone()));
        let hot = hot_ranges(&flat, &good);
        // Truncations: at many offsets, including inside each hot range.
        let mut cuts: Vec<usize> = vec![0, 1, 100, 511, 512, 513, 1024, 4095, 4096, 8192];
        for &(a, b) in &hot {
            cuts.extend([a, a + 1, a + 511, (a + b) / 2, b]);
        }
        for i in 1..8 {
            cuts.push(flat.len() * i / 8);
        }
        cuts.push(flat.len() - 512);
        cuts.push(flat.len() - 1);
        for cut in cuts.into_iter().filter(|&c| c <= flat.len()) {
            let d = inspect_reader(Arc::new(flat[..cut].to_vec()));
            serde_json::to_string(&d).unwrap();
            runs += 1;
        }
        // Byte flips inside the hot ranges.
        for _ in 0..40 {
            let mut bad = flat.clone();
            let (a, b) = hot[(rng.next() % hot.len() as u64) as usize];
            for _ in 0..1 + rng.next() % 8 {
                let at = a + (rng.next() % (b - a) as u64) as usize;
                if let Some(x) = bad.get_mut(at) {
                    *x ^= 1 << (rng.next() % 8);
                    if rng.next().is_multiple_of(4) {
                        *x = [0u8, 0xFF, 0x80, 0x7F][(rng.next() % 4) as usize];
                    }
                }
            }
            let d = inspect_reader(Arc::new(bad));
            serde_json::to_string(&d).unwrap();
            runs += 1;
        }
    }
    assert!(runs > 400);
}

#[test]
fn truncated_image_files_are_unknown_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["gpt-uefi", "cloudstack-template", "bare-ntfs"] {
        let (path, format) = image_file(name);
        let bytes = std::fs::read(&path).unwrap();
        for cut in [
            0,
            10,
            200,
            4096,
            70_000,
            bytes.len() / 3,
            bytes.len() / 2,
            bytes.len() - 1,
        ] {
            let p = dir.path().join(format!("{name}-{cut}"));
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let d = inspect_disk(&p, format, FormatSource::Operator, &IoStats::new());
            serde_json::to_string(&d).unwrap();
        }
    }
}

#[test]
fn locating_the_root_and_reading_the_file_metadata_stays_under_256_kib() {
    // Measured over the flattened raw disk, so the figure is the guest-level cost (qcow2
    // compressed clusters add their own, reported by `inspect --stats`).
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "mbr-sysreserved",
        "gpt-uefi",
        "gpt4k",
        "hibernated",
        "bare-ntfs",
    ] {
        let p = dir.path().join(format!("{name}.raw"));
        std::fs::write(&p, read_all(&*open(name))).unwrap();
        let stats = IoStats::new();
        let disk: Arc<dyn ReadAt> = Arc::new(HostFile::open(&p, &stats).unwrap());
        let d = inspect_reader(disk);
        assert_eq!(d.windows_volumes().count(), 1);
        let s = &stats.snapshot()[0];
        eprintln!("{name}: {} bytes in {} reads", s.bytes_read, s.reads);
        assert!(s.bytes_read < 256 * 1024, "{name}: {} bytes", s.bytes_read);
    }
}

#[test]
fn domain_disks_use_the_declared_format_and_network_disks_are_unknown() {
    let img = images().join("cloudstack-overlay.qcow2");
    let xml = format!(
        r#"<domain type='kvm'><name>w</name><devices>
          <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{}'/><target dev='hda' bus='ide'/></disk>
          <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/><target dev='hdb' bus='ide'/></disk>
          <disk type='network' device='disk'><driver name='qemu' type='raw'/><source protocol='rbd' name='pool/img'/><target dev='vdc' bus='virtio'/></disk>
          <disk type='file' device='disk'><source file='{}'/><target dev='hdd' bus='ide'/></disk>
        </devices></domain>"#,
        img.display(),
        img.display(),
        img.display()
    );
    let disks = inspect_domain_xml(&xml, &IoStats::new());
    assert_eq!(disks.len(), 4);
    assert_eq!(disks[0].windows_volumes().count(), 1);
    assert_eq!(disks[0].format_source, FormatSource::Declared);
    // The same qcow2 file declared raw is read as raw: no table inside a qcow2 header.
    assert_eq!(disks[1].format, Some(DiskFormat::Raw));
    assert_eq!(disks[1].windows_volumes().count(), 0);
    assert!(disks[2].unknown.as_deref().unwrap().contains("network"));
    assert!(disks[3].unknown.as_deref().unwrap().contains("driver type"));
}

#[test]
fn inspect_command_prints_json_and_stats() {
    let exe = env!("CARGO_BIN_EXE_virtio-migrate");
    let img = images().join("hibernated.qcow2");
    let out = std::process::Command::new(exe)
        .args(["--json", "inspect", "--stats"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["disks"][0]["format_source"], "probed");
    assert_eq!(v["disks"][0]["hazards"][1]["kind"], "hibernated");
    assert!(v["stats"]["total_bytes"].as_u64().unwrap() > 0);
    let out = std::process::Command::new(exe)
        .args(["inspect", "--format", "raw"])
        .arg(images().join("bare-ntfs.raw"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("(raw, --format)"), "{text}");
    assert!(text.contains("Windows root: Windows"), "{text}");
}
