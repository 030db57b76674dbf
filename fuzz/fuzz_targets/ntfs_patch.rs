//! The NTFS reader, the Windows system-root lookup and the verdict over the whole fixed 2 MiB
//! volume (fuzz/seeds/ntfs.img.gz) with the input applied as patches to its boot sector, file
//! records and index blocks (`virtio_migrate::fuzzing::NtfsPatchBase` says how an input reads).
//! The `ntfs` target only reaches the volume's first bytes; this one reaches the root
//! directory's index block (at 276 KiB), the records of deep files and their data runs.
//! Panics the reader catches do not stop the run (ntfs_common.rs says why).
#![no_main]
mod capped_alloc;
mod ntfs_common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ntfs_common::quiet_panics("ntfs_patch");
    ntfs_common::patch_base().inspect(data);
});
