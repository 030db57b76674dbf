//! Finding a Windows installation on a guest file system and the files the verdict needs.
//!
//! The system root is the first of `Windows`, `WINNT`, `win32`, `win` (any letter case) that holds
//! `System32/config/SYSTEM`. A missing `System32/cmd.exe` is only a warning. Beside the root, the
//! volume root may hold `hiberfil.sys`: a file starting with `hibr` (any case) means Windows
//! hibernated (or shut down with Fast Startup) and the disk is not what the guest will run.

use serde::Serialize;

use crate::inspect::guestfs::{Entry, GuestFs};

/// Candidate system root directories, in the order they are tried.
pub const ROOT_CANDIDATES: [&str; 4] = ["Windows", "WINNT", "win32", "win"];

/// The storage and network drivers whose presence is reported.
pub const VIRTIO_DRIVERS: [&str; 3] = ["viostor", "vioscsi", "netkvm"];

/// Files under the system root whose presence is reported (relative to the root).
pub const REPORTED_FILES: [&str; 11] = [
    "System32/config/SYSTEM",
    "System32/config/SYSTEM.LOG",
    "System32/config/SYSTEM.LOG1",
    "System32/config/SYSTEM.LOG2",
    "System32/config/SOFTWARE",
    "System32/config/SOFTWARE.LOG",
    "System32/config/SOFTWARE.LOG1",
    "System32/config/SOFTWARE.LOG2",
    "System32/drivers/viostor.sys",
    "System32/drivers/vioscsi.sys",
    "System32/drivers/netkvm.sys",
];

/// Whether one file exists, and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilePresence {
    /// Path relative to the system root, as asked for.
    pub path: String,
    pub present: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Compressed or encrypted: present, but its content cannot be read.
    pub unreadable: bool,
}

/// Staged driver packages of one driver: `DriverStore/FileRepository/<driver>.inf_*` folders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriverPackages {
    pub driver: String,
    pub folders: Vec<String>,
}

/// A Windows system root and the files found under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowsRoot {
    /// The root directory name as stored on disk ("Windows").
    pub root: String,
    pub files: Vec<FilePresence>,
    pub driver_packages: Vec<DriverPackages>,
    pub warnings: Vec<String>,
}

impl WindowsRoot {
    /// The presence record of `path` (relative to the root, as in [`REPORTED_FILES`]).
    pub fn file(&self, path: &str) -> Option<&FilePresence> {
        self.files
            .iter()
            .find(|f| f.path.eq_ignore_ascii_case(path))
    }
}

/// The hibernation file in the volume root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hibernation {
    pub size: u64,
    /// The first four bytes, as text when printable, else hex.
    pub signature: String,
    /// The signature is `hibr` (any case): Windows hibernated or used Fast Startup.
    pub hibernated: bool,
}

/// The names in the volume root that matter here (candidate roots and `hiberfil.sys`), from
/// one listing of the root directory: a volume without any of them (a "System Reserved" or
/// recovery partition) is then done without a single name lookup.
fn root_names(fs: &dyn GuestFs) -> anyhow::Result<Vec<Entry>> {
    let wanted = |n: &str| {
        ROOT_CANDIDATES.iter().any(|c| c.eq_ignore_ascii_case(n))
            || n.eq_ignore_ascii_case("hiberfil.sys")
    };
    Ok(fs
        .read_dir("")?
        .into_iter()
        .filter(|e| wanted(&e.name))
        .collect())
}

/// Find the system root: the first candidate directory holding `System32/config/SYSTEM`.
pub fn find_system_root(fs: &dyn GuestFs) -> anyhow::Result<Option<String>> {
    let names = root_names(fs)?;
    for cand in ROOT_CANDIDATES {
        let Some(dir) = names.iter().find(|e| e.name.eq_ignore_ascii_case(cand)) else {
            continue;
        };
        if !dir.is_dir {
            continue;
        }
        if let Some(system) = fs.lookup(&format!("{}/System32/config/SYSTEM", dir.name))? {
            if !system.is_dir {
                return Ok(Some(dir.name.clone()));
            }
        }
    }
    Ok(None)
}

/// Report the Windows files under `root`.
pub fn inspect_root(fs: &dyn GuestFs, root: &str) -> WindowsRoot {
    let mut warnings = Vec::new();
    let mut files = Vec::new();
    for rel in REPORTED_FILES {
        let full = format!("{root}/{rel}");
        match fs.lookup(&full) {
            Ok(Some(e)) if !e.is_dir => files.push(FilePresence {
                path: rel.to_string(),
                present: true,
                size: Some(e.size),
                unreadable: e.compressed || e.encrypted,
            }),
            Ok(_) => files.push(FilePresence {
                path: rel.to_string(),
                present: false,
                size: None,
                unreadable: false,
            }),
            Err(e) => {
                warnings.push(format!("{full}: {e:#}"));
                files.push(FilePresence {
                    path: rel.to_string(),
                    present: false,
                    size: None,
                    unreadable: true,
                });
            }
        }
    }
    match fs.lookup(&format!("{root}/System32/cmd.exe")) {
        Ok(Some(_)) => {}
        Ok(None) => warnings.push(format!("{root}/System32/cmd.exe is missing")),
        Err(e) => warnings.push(format!("{root}/System32/cmd.exe: {e:#}")),
    }
    let repo = format!("{root}/System32/DriverStore/FileRepository");
    let mut driver_packages: Vec<DriverPackages> = VIRTIO_DRIVERS
        .iter()
        .map(|d| DriverPackages {
            driver: d.to_string(),
            folders: Vec::new(),
        })
        .collect();
    match fs.read_dir(&repo) {
        Ok(entries) => {
            for e in entries.iter().filter(|e| e.is_dir) {
                let lower = e.name.to_ascii_lowercase();
                for p in driver_packages.iter_mut() {
                    if lower.starts_with(&format!("{}.inf_", p.driver)) {
                        p.folders.push(e.name.clone());
                    }
                }
            }
        }
        Err(e) => {
            if fs.lookup(&repo).ok().flatten().is_some() {
                warnings.push(format!("{repo}: {e:#}"));
            }
        }
    }
    WindowsRoot {
        root: root.to_string(),
        files,
        driver_packages,
        warnings,
    }
}

/// Look for `hiberfil.sys` in the volume root and read its signature.
pub fn hibernation(fs: &dyn GuestFs) -> anyhow::Result<Option<Hibernation>> {
    if root_names(fs)?
        .iter()
        .all(|e| !e.name.eq_ignore_ascii_case("hiberfil.sys"))
    {
        return Ok(None);
    }
    let Some(e) = fs.lookup("hiberfil.sys")? else {
        return Ok(None);
    };
    if e.is_dir {
        return Ok(None);
    }
    let mut sig = [0u8; 4];
    if e.size >= 4 {
        let f = fs.open("hiberfil.sys")?;
        f.read_exact_at(&mut sig, 0)?;
    }
    let signature = if sig.iter().all(|b| b.is_ascii_graphic()) {
        String::from_utf8_lossy(&sig).into_owned()
    } else {
        sig.iter().map(|b| format!("{b:02x}")).collect()
    };
    Ok(Some(Hibernation {
        size: e.size,
        hibernated: sig.eq_ignore_ascii_case(b"hibr"),
        signature,
    }))
}
