//! Replays every input of the fuzz corpora (`fuzz/corpus/<target>/`) and every minimised crasher
//! (`fuzz/regressions/<target>/`) through the same `virtio_migrate::fuzzing` entry points the
//! fuzz targets call, so a finding, once fixed, cannot come back unnoticed. A panic in any of them
//! fails the test and names the file.

use std::path::{Path, PathBuf};

use virtio_migrate::fuzzing;

// No single allocation in these replays may exceed 256 MiB: the fuzz targets' allocator, so a
// reader that sizes a buffer from an input field before checking it (the 3 GiB index record of
// `regressions/ntfs_patch/index-record-size-3GiB`) aborts the test process instead of passing
// quietly on a machine with memory to spare.
#[path = "../fuzz/fuzz_targets/capped_alloc.rs"]
mod capped_alloc;

const FUZZ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz");

/// The fixed dirty primary the `hive_log` target lays its fuzzed LOG1 over.
fn dirty_primary() -> Vec<u8> {
    std::fs::read(Path::new(FUZZ).join("seeds/system-dirty.hive")).unwrap()
}

/// Every file of `fuzz/corpus/<target>` and `fuzz/regressions/<target>`, sorted.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let dir = Path::new(FUZZ).join(dir).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Run `entry` over every input of `target`; report all panicking files at once.
fn replay(target: &str, min_inputs: usize, entry: impl Fn(&[u8])) {
    let files = inputs(target);
    assert!(
        files.len() >= min_inputs,
        "fuzz/corpus/{target} holds {} inputs, expected at least {min_inputs}",
        files.len()
    );
    let mut failed = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| entry(&data)));
        if outcome.is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: panicked on {failed:#?}");
}

#[test]
fn hive_corpus() {
    replay("hive", 3, |data| fuzzing::hive_lookups(data, None));
}

#[test]
fn hive_log_corpus() {
    let primary = dirty_primary();
    replay("hive_log", 2, |data| {
        fuzzing::hive_lookups(&primary, Some(data))
    });
}

#[test]
fn qcow2_corpus() {
    replay("qcow2", 6, fuzzing::qcow2_read);
}

#[test]
fn pe_corpus() {
    replay("pe", 4, fuzzing::pe_driver);
}

#[test]
fn partitions_corpus() {
    replay("partitions", 3, fuzzing::partitions);
}

/// The fixed NTFS volume the `ntfs` target lays its input over.
fn ntfs_base() -> std::sync::Arc<Vec<u8>> {
    let gz = std::fs::read(Path::new(FUZZ).join("seeds/ntfs.img.gz")).unwrap();
    std::sync::Arc::new(fuzzing::gunzip(&gz))
}

#[test]
fn ntfs_corpus() {
    let base = ntfs_base();
    replay("ntfs", 1, |data| {
        fuzzing::ntfs_root_over(base.clone(), data)
    });
    // The same inputs as volumes of their own (zero-extended).
    replay("ntfs", 1, fuzzing::ntfs_root);
}

#[test]
fn ntfs_patch_corpus() {
    let base = ntfs_base();
    let base = fuzzing::NtfsPatchBase::new(base);
    replay("ntfs_patch", 10, |data| base.inspect(data));
}

/// The `ntfs_patch` input format does what `fuzzing::NtfsPatchBase` documents: regions in the
/// order boot sector, file records and index blocks by offset, whole volume; offsets modulo the
/// region; writes cut at the region's end; the region byte wraps around.
#[test]
fn ntfs_patch_format() {
    let base = ntfs_base();
    let patcher = fuzzing::NtfsPatchBase::new(base.clone());
    let first_record = (0..base.len())
        .step_by(1024)
        .find(|&at| &base[at..at + 4] == b"FILE")
        .unwrap();
    let regions = 2
        + (0..base.len() - 4)
            .step_by(512)
            .filter(|&at| {
                (&base[at..at + 4] == b"FILE" && at % 1024 == 0) || &base[at..at + 4] == b"INDX"
            })
            .count();
    let patch = |region: usize, offset: u16, bytes: &[u8]| -> Vec<u8> {
        let mut p = vec![region as u8];
        p.extend_from_slice(&offset.to_le_bytes());
        p.push(bytes.len() as u8);
        p.extend_from_slice(bytes);
        p
    };
    assert_eq!(patcher.bytes(&[]), *base);
    // Region 1 is the first file record ($MFT's own).
    let out = patcher.bytes(&patch(1, 0, b"BAAD"));
    assert_eq!(&out[first_record..first_record + 4], b"BAAD");
    assert_eq!(out[first_record + 4..], base[first_record + 4..]);
    // An offset past the region's end wraps inside it; a write is cut at the region's end.
    let out = patcher.bytes(&patch(1, 1024 + 1022, b"WXYZ"));
    assert_eq!(&out[first_record + 1022..first_record + 1024], b"WX");
    assert_eq!(out[first_record + 1024..], base[first_record + 1024..]);
    // The region byte wraps: regions + 1 is region 1 again.
    if regions + 1 < 256 {
        let out = patcher.bytes(&patch(regions + 1, 8, b"Q"));
        assert_eq!(out[first_record + 8], b'Q');
    }
    // The last region is the whole volume, in steps of size / 65,536 bytes.
    let step = base.len() >> 16;
    let out = patcher.bytes(&patch(regions - 1, 1000, b"Z"));
    assert_eq!(out[1000 * step], b'Z');
    // A patch whose length runs past the input takes what there is; patches stop at 64.
    let mut many = Vec::new();
    for i in 0..100u16 {
        many.extend(patch(regions - 1, i, &[0xAA]));
    }
    let out = patcher.bytes(&many);
    assert_eq!(out[63 * step], 0xAA);
    assert_eq!(out[64 * step], base[64 * step]);
    let out = patcher.bytes(&[0, 0, 0, 200, b'E']);
    assert_eq!(out[0], b'E');
    assert_eq!(out[1..], base[1..]);
}

#[test]
fn domain_corpus() {
    replay("domain", 5, fuzzing::domain_plan_bytes);
}

/// The seeds are what they claim: the dirty primary is dirty and its LOG1 replays over it, so the
/// `hive_log` target starts from inputs that reach the replay code.
#[test]
fn hive_log_seed_replays() {
    use std::sync::Arc;
    use virtio_migrate::inspect::hive::{Hive, HiveState};
    let primary = dirty_primary();
    for log in ["system-dirty.hive.LOG1", "system-dirty-old.hive.LOG1"] {
        let log = std::fs::read(Path::new(FUZZ).join("seeds").join(log)).unwrap();
        let hive = Hive::open(Arc::new(primary.clone()), Some(Arc::new(log)), None).unwrap();
        assert!(
            matches!(hive.state(), HiveState::Replayed { .. }),
            "{:?}",
            hive.state()
        );
    }
    let hive = Hive::open(Arc::new(primary), None, None).unwrap();
    assert!(matches!(hive.state(), HiveState::DirtyNotReplayed { .. }));
}

/// The hive seed holds the keys the verdict reads, so the `hive` target starts from inputs that
/// reach every lookup of `hive_lookups`.
#[test]
fn hive_seed_has_the_verdict_keys() {
    use std::sync::Arc;
    use virtio_migrate::inspect::hive::Hive;
    let bytes = std::fs::read(Path::new(FUZZ).join("seeds/system.hive")).unwrap();
    let hive = Hive::open(Arc::new(bytes), None, None).unwrap();
    let select = hive.key("Select").unwrap().unwrap();
    let current = hive.value(&select, "Current").unwrap().unwrap();
    assert_eq!(current.as_u64(), Some(1));
    for path in [
        "ControlSet001\\Services\\viostor",
        "ControlSet001\\Control\\CriticalDeviceDatabase\\pci#ven_1af4&dev_1001&subsys_00021af4",
        "DriverDatabase\\DeviceIds\\PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00",
    ] {
        assert!(hive.key(path).unwrap().is_some(), "{path}");
    }
    let viostor = hive
        .key("ControlSet001\\Services\\viostor")
        .unwrap()
        .unwrap();
    let types: std::collections::BTreeSet<u32> = hive
        .values(&viostor)
        .unwrap()
        .iter()
        .map(|(_, v)| v.value_type())
        .collect();
    assert_eq!(types, (0..=8).chain([11]).collect());
}

/// The NTFS base volume holds the Windows tree the `ntfs` target is about, and its first bytes
/// (the seed) are the base's own.
#[test]
fn ntfs_seed_reaches_the_windows_root() {
    use virtio_migrate::inspect::guestfs::GuestFs;
    use virtio_migrate::inspect::image::ntfs::NtfsVolume;
    use virtio_migrate::inspect::image::windows_root::find_system_root;
    let base = ntfs_base();
    assert_eq!(base.len(), 2 << 20);
    let head = std::fs::read(Path::new(FUZZ).join("corpus/ntfs/seed-ntfs-head.img")).unwrap();
    assert_eq!(base.get(..head.len()), Some(head.as_slice()));
    let fs = NtfsVolume::open(base).unwrap();
    assert_eq!(find_system_root(&fs).unwrap().as_deref(), Some("Windows"));
    let system = fs
        .lookup("Windows/System32/config/SYSTEM")
        .unwrap()
        .unwrap();
    assert_eq!(system.size, 12288);
}

/// Every qcow2 seed (made by fuzz/seeds/make-images.sh) and fixture copy in the corpus opens (the target starts past the header checks).
#[test]
fn qcow2_seeds_open() {
    use virtio_migrate::inspect::image::qcow2::Qcow2Image;
    use virtio_migrate::inspect::image::IoStats;
    let dir = Path::new(FUZZ).join("corpus/qcow2");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("seed-") && !name.starts_with("fixture-") {
            continue;
        }
        Qcow2Image::open(&path, &IoStats::new())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        count += 1;
    }
    assert!(count >= 7);
}
