//! Shared by the `ntfs` and `ntfs_patch` targets (`mod ntfs_common;`).
//!
//! The `ntfs` crate may panic on malformed data; the reader runs it under `catch_unwind` and
//! turns such a panic into an error (`guard` in src/inspect/image/ntfs.rs). libfuzzer-sys's panic hook
//! would abort the process before that happens, so [`quiet_panics`] puts back a hook that only
//! prints the first few: a panic that escapes the reader still aborts (libfuzzer-sys catches it
//! and aborts), one the reader handles does not.
#![allow(dead_code)] // each target uses part of it
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once, OnceLock};

static BASE: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
static HOOK: Once = Once::new();
/// Panics seen; the first few are printed.
static CAUGHT: AtomicU64 = AtomicU64::new(0);

/// Install (once) the hook that prints the first few panics of `target` and lets them unwind.
pub fn quiet_panics(target: &'static str) {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(move |info| {
            if CAUGHT.fetch_add(1, Ordering::Relaxed) < 5 {
                eprintln!(
                    "{target} target: panic (caught by the reader unless the run aborts): {info}"
                );
            }
        }));
    });
}

/// The fixed 2 MiB volume (fuzz/seeds/ntfs.img.gz), unpacked once.
pub fn base() -> Arc<Vec<u8>> {
    BASE.get_or_init(|| {
        Arc::new(virtio_migrate::fuzzing::gunzip(include_bytes!(
            "../seeds/ntfs.img.gz"
        )))
    })
    .clone()
}

static PATCH_BASE: OnceLock<virtio_migrate::fuzzing::NtfsPatchBase> = OnceLock::new();

/// The same volume ready for `ntfs_patch` inputs (its regions found once).
pub fn patch_base() -> &'static virtio_migrate::fuzzing::NtfsPatchBase {
    PATCH_BASE.get_or_init(|| virtio_migrate::fuzzing::NtfsPatchBase::new(base()))
}
