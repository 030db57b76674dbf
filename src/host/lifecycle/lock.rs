//! One lifecycle command per domain at a time: an exclusive lock on
//! `STATE_DIR/locks/<uuid>.lock`, whose content says who holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::error::LifecycleError;
use super::{clock, durable};

/// Who holds a domain lock (the lock file's content, one JSON object).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub started: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {} since {}: {}",
            self.pid, self.host, self.started, self.command
        )
    }
}

/// A held domain lock; released when dropped (the file stays, empty of meaning).
#[derive(Debug)]
pub struct DomainLock {
    _file: File,
    pub path: PathBuf,
}

/// The name of this machine.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".to_string())
}

/// Who holds the domain's lock right now, if anyone (the lock is not kept).
pub fn current_holder(state_dir: &Path, uuid: &str) -> Option<String> {
    let path = state_dir.join("locks").join(format!("{uuid}.lock"));
    let mut file = File::open(&path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(std::fs::TryLockError::WouldBlock) => Some(holder_of(&mut file, &path)),
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

fn holder_of(file: &mut File, path: &Path) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    serde_json::from_str::<LockHolder>(text.trim())
        .map(|h| h.to_string())
        .unwrap_or_else(|_| format!("unknown holder (lock file {})", path.display()))
}

impl DomainLock {
    /// Take the lock of the domain `uuid` (named `domain` in messages) for `command`, or say
    /// who holds it.
    pub fn acquire(
        state_dir: &Path,
        uuid: &str,
        domain: &str,
        command: &str,
    ) -> Result<DomainLock, LifecycleError> {
        let dir = state_dir.join("locks");
        durable::create_dir(&dir).map_err(|e| LifecycleError::io(&dir, e))?;
        let path = dir.join(format!("{uuid}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| LifecycleError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LifecycleError::Locked {
                    domain: domain.to_string(),
                    holder: holder_of(&mut file, &path),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(LifecycleError::io(&path, e)),
        }
        let holder = LockHolder {
            pid: std::process::id(),
            host: host_name(),
            command: command.to_string(),
            started: clock::rfc3339(SystemTime::now()),
        };
        let text = serde_json::to_string(&holder).unwrap_or_default();
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(format!("{text}\n").as_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(|e| LifecycleError::io(&path, e))?;
        Ok(DomainLock { _file: file, path })
    }
}
