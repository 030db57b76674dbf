//! The NTFS volume reader, the Windows system-root lookup and the verdict over a fuzzed volume:
//! the input replaces the first bytes (boot sector, $MFT) of a fixed 2 MiB volume
//! (fuzz/seeds/ntfs.img.gz) that holds a Windows tree with SYSTEM and SOFTWARE hives.
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;

static BASE: OnceLock<Arc<Vec<u8>>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let base = BASE.get_or_init(|| {
        Arc::new(virtio_migrate::fuzzing::gunzip(include_bytes!(
            "../seeds/ntfs.img.gz"
        )))
    });
    virtio_migrate::fuzzing::ntfs_root_over(base.clone(), data);
});
