//! The NTFS volume reader, the Windows system-root lookup and the verdict over a fuzzed volume:
//! the input replaces the first bytes (boot sector, $MFT) of a fixed 2 MiB volume
//! (fuzz/seeds/ntfs.img.gz) that holds a Windows tree with SYSTEM (dirty, with its LOG1) and
//! SOFTWARE hives.
//!
//! The `ntfs` crate may panic on malformed data; the reader runs it under `catch_unwind` and
//! turns such a panic into an error (`guard` in src/image/ntfs.rs). libfuzzer-sys's panic hook
//! would abort the process before that happens, so this target puts back a hook that only
//! prints the first few: a panic that escapes the reader still aborts (libfuzzer-sys catches it and aborts),
//! one the reader handles does not.
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
                eprintln!("ntfs target: panic (caught by the reader unless the run aborts): {info}");
            }
        }));
    });
    let base = BASE.get_or_init(|| {
        Arc::new(virtio_migrate::fuzzing::gunzip(include_bytes!(
            "../seeds/ntfs.img.gz"
        )))
    });
    virtio_migrate::fuzzing::ntfs_root_over(base.clone(), data);
});
