//! The NTFS reader, the Windows system-root lookup and the verdict over the whole fixed 2 MiB
//! volume (fuzz/seeds/ntfs.img.gz) with the input applied as patches to its boot sector, file
//! records and index blocks (`virtio_migrate::fuzzing::ntfs_patched` says how an input reads).
//! The `ntfs` target only reaches the volume's first bytes; this one reaches the root
//! directory's index block (at 276 KiB), the records of deep files and their data runs.
//!
//! As in the `ntfs` target, panics that the reader catches (the `ntfs` crate's, turned into
//! errors by `guard` in src/image/ntfs.rs) must not stop the run; any other panic still aborts.
#![no_main]
mod capped_alloc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once, OnceLock};

use libfuzzer_sys::fuzz_target;

static BASE: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
static HOOK: Once = Once::new();
/// Panics seen; the first few are printed.
static CAUGHT: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            if CAUGHT.fetch_add(1, Ordering::Relaxed) < 5 {
                eprintln!(
                    "ntfs_patch target: panic (caught by the reader unless the run aborts): {info}"
                );
            }
        }));
    });
    let base = BASE.get_or_init(|| {
        Arc::new(virtio_migrate::fuzzing::gunzip(include_bytes!(
            "../seeds/ntfs.img.gz"
        )))
    });
    virtio_migrate::fuzzing::ntfs_patched(base.clone(), data);
});
