//! Why a lifecycle run stopped ([`LifecycleError`]): its own file so that the steps (the lock,
//! the backups) can return it without importing the state machine that runs them.

use std::path::{Path, PathBuf};

/// Why a run stopped. Every variant says what state the domain was left in.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(
        "domain {domain} is locked by another virtio-migrate run ({holder}); wait for it to finish"
    )]
    Locked { domain: String, holder: String },
    #[error("{0}")]
    Unfinished(String),
    #[error("the plan for {domain} is blocked (nothing was changed):\n  - {}", blockers.join("\n  - "))]
    Blocked {
        domain: String,
        blockers: Vec<String>,
    },
    #[error("{0} (nothing was changed)")]
    Refused(String),
    #[error("not confirmed: nothing was changed")]
    NotConfirmed,
    #[error("the guest did not shut down within {secs}s: the definition is untouched and the guest keeps running; retry with a longer --shutdown-timeout, shut it down from inside, or use --force-off")]
    ShutdownTimeout { secs: u64 },
    #[error("interrupted: {0}")]
    Interrupted(String),
    #[error("{step} failed: {message}; {state}")]
    Failed {
        step: &'static str,
        message: String,
        state: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl LifecycleError {
    /// One word for the JSON `result` of a run that stopped.
    pub fn kind_word(&self) -> &'static str {
        match self {
            LifecycleError::Locked { .. } => "locked",
            LifecycleError::Unfinished(_) => "unfinished",
            LifecycleError::Blocked { .. } => "blocked",
            LifecycleError::Refused(_) => "refused",
            LifecycleError::NotConfirmed => "not-confirmed",
            LifecycleError::ShutdownTimeout { .. } => "shutdown-timeout",
            LifecycleError::Interrupted(_) => "interrupted",
            LifecycleError::Failed { .. } => "failed",
            LifecycleError::Io { .. } => "io-error",
        }
    }

    /// An I/O error on a state-directory file.
    pub fn io(path: &Path, source: std::io::Error) -> LifecycleError {
        LifecycleError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
