//! What the Windows inspection needs from a guest file system, independent of how it is read.
//!
//! The NTFS reader implements [`GuestFs`] over a partition of a disk image; the verdict and the
//! Windows facts are written against this trait only, so they can be tested over any tree.

use std::sync::Arc;

use crate::inspect::image::ReadAt;

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

/// A [`GuestFs`] over a directory of the host: an extracted or mounted guest tree, or a test
/// layout. Names are matched case-insensitively like NTFS does (an exact match wins when the
/// host directory holds several spellings). Symbolic links are not followed (they are reported
/// as absent), and `.`/`..` components are refused, so a lookup never leaves the directory.
pub struct HostDirFs {
    root: std::path::PathBuf,
    stats: Arc<crate::inspect::image::IoStats>,
}

impl HostDirFs {
    /// A file system rooted at `root`, counting reads into a fresh [`crate::inspect::image::IoStats`].
    pub fn new(root: impl Into<std::path::PathBuf>) -> HostDirFs {
        HostDirFs::with_stats(root, crate::inspect::image::IoStats::new())
    }

    /// A file system rooted at `root`, counting the reads of opened files into `stats`.
    pub fn with_stats(
        root: impl Into<std::path::PathBuf>,
        stats: Arc<crate::inspect::image::IoStats>,
    ) -> HostDirFs {
        HostDirFs {
            root: root.into(),
            stats,
        }
    }

    /// The host path of `path` with each component matched case-insensitively, and its
    /// metadata; `None` when a component is absent, a symbolic link, or `.`/`..`.
    fn resolve(
        &self,
        path: &str,
    ) -> anyhow::Result<Option<(std::path::PathBuf, std::fs::Metadata)>> {
        use anyhow::Context;
        let mut current = self.root.clone();
        let mut meta = std::fs::symlink_metadata(&current)
            .with_context(|| format!("{}: cannot read the root", current.display()))?;
        for component in path.split('/').filter(|c| !c.is_empty()) {
            if component == "." || component == ".." || !meta.is_dir() {
                return Ok(None);
            }
            let mut exact = None;
            let mut folded = None;
            let entries = std::fs::read_dir(&current)
                .with_context(|| format!("{}: cannot list", current.display()))?;
            for entry in entries {
                let entry = entry.with_context(|| format!("{}: cannot list", current.display()))?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name == component {
                    exact = Some(entry.path());
                    break;
                }
                if folded.is_none() && names_equal(&name, component) {
                    folded = Some(entry.path());
                }
            }
            let Some(next) = exact.or(folded) else {
                return Ok(None);
            };
            meta = std::fs::symlink_metadata(&next)
                .with_context(|| format!("{}: cannot stat", next.display()))?;
            if meta.file_type().is_symlink() {
                return Ok(None);
            }
            current = next;
        }
        Ok(Some((current, meta)))
    }
}

/// Case-insensitive name comparison (Unicode simple upper case, as NTFS's upcase table does).
fn names_equal(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_uppercase)
        .eq(b.chars().flat_map(char::to_uppercase))
}

fn host_entry(path: &std::path::Path, meta: &std::fs::Metadata) -> Entry {
    Entry {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        is_dir: meta.is_dir(),
        size: if meta.is_dir() { 0 } else { meta.len() },
        compressed: false,
        encrypted: false,
    }
}

impl GuestFs for HostDirFs {
    fn lookup(&self, path: &str) -> anyhow::Result<Option<Entry>> {
        Ok(self
            .resolve(path)?
            .map(|(host, meta)| host_entry(&host, &meta)))
    }

    fn read_dir(&self, path: &str) -> anyhow::Result<Vec<Entry>> {
        use anyhow::Context;
        let (host, meta) = self
            .resolve(path)?
            .with_context(|| format!("{path}: no such directory"))?;
        anyhow::ensure!(meta.is_dir(), "{path}: not a directory");
        let mut out = Vec::new();
        for entry in
            std::fs::read_dir(&host).with_context(|| format!("{}: cannot list", host.display()))?
        {
            let entry = entry.with_context(|| format!("{}: cannot list", host.display()))?;
            let meta = std::fs::symlink_metadata(entry.path())
                .with_context(|| format!("{}: cannot stat", entry.path().display()))?;
            if !meta.file_type().is_symlink() {
                out.push(host_entry(&entry.path(), &meta));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open(&self, path: &str) -> anyhow::Result<Arc<dyn ReadAt>> {
        use anyhow::Context;
        let (host, meta) = self
            .resolve(path)?
            .with_context(|| format!("{path}: no such file"))?;
        anyhow::ensure!(meta.is_file(), "{path}: not a regular file");
        let file = crate::inspect::image::HostFile::open(&host, &self.stats)
            .with_context(|| format!("{}: cannot open", host.display()))?;
        Ok(Arc::new(file))
    }
}
