//! The NTFS volume reader, the Windows system-root lookup and the verdict over a fuzzed volume:
//! the input replaces the first bytes (boot sector, $MFT) of a fixed 2 MiB volume
//! (fuzz/seeds/ntfs.img.gz) that holds a Windows tree with SYSTEM (dirty, with its LOG1) and
//! SOFTWARE hives. Panics the reader catches do not stop the run (ntfs_common.rs says why).
#![no_main]
mod capped_alloc;
mod ntfs_common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ntfs_common::quiet_panics("ntfs");
    virtio_migrate::fuzzing::ntfs_root_over(ntfs_common::base(), data);
});
