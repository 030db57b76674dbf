//! What the Windows inspection needs from a guest file system, independent of how it is read.
//!
//! The NTFS reader implements [`GuestFs`] over a partition of a disk image; the verdict and the
//! Windows facts are written against this trait only, so they can be tested over any tree.

use std::sync::Arc;

use crate::image::ReadAt;

/// One directory entry or looked-up file, with its name as stored on disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    /// Size of the unnamed data stream (0 for directories).
    pub size: u64,
    /// NTFS-compressed data: its bytes cannot be returned as plain content.
    pub compressed: bool,
    /// EFS-encrypted data: its bytes cannot be returned as plain content.
    pub encrypted: bool,
}

/// Read-only, case-insensitive access to a guest file system.
///
/// Paths are relative to the volume root, separated by `/`, matched without regard to letter
/// case (`Windows/System32/config/SYSTEM`).
pub trait GuestFs: Send + Sync {
    /// The entry at `path`, or `None` when some component does not exist.
    fn lookup(&self, path: &str) -> anyhow::Result<Option<Entry>>;
    /// The entries of the directory at `path` (without `.` and `..`).
    fn read_dir(&self, path: &str) -> anyhow::Result<Vec<Entry>>;
    /// A positioned reader over the regular file at `path`. Refuses directories and compressed
    /// or encrypted files (their on-disk bytes are not the content).
    fn open(&self, path: &str) -> anyhow::Result<Arc<dyn ReadAt>>;
}
