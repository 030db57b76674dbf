//! Replays every input of the fuzz corpora (`fuzz/corpus/<target>/`) and every minimised crasher
//! (`fuzz/regressions/<target>/`) through the same `virtio_migrate::fuzzing` entry points the
//! fuzz targets call, so a finding, once fixed, cannot come back unnoticed. A panic in any of them
//! fails the test and names the file.

use std::path::{Path, PathBuf};

use virtio_migrate::fuzzing;

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
fn domain_corpus() {
    replay("domain", 5, fuzzing::domain_plan_bytes);
}

/// The seeds are what they claim: the dirty primary is dirty and its LOG1 replays over it, so the
/// `hive_log` target starts from inputs that reach the replay code.
#[test]
fn hive_log_seed_replays() {
    use std::sync::Arc;
    use virtio_migrate::hive::{Hive, HiveState};
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
    use virtio_migrate::hive::Hive;
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
    use virtio_migrate::guestfs::GuestFs;
    use virtio_migrate::image::ntfs::NtfsVolume;
    use virtio_migrate::image::windows_root::find_system_root;
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
    use virtio_migrate::image::qcow2::Qcow2Image;
    use virtio_migrate::image::IoStats;
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
