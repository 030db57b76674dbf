//! What every command shares: the global options, the exit codes, and how a lifecycle result
//! becomes one. The commands import this module; it imports none of them.

use clap::{Args, ValueEnum};

use crate::host::lifecycle::{LifecycleError, Outcome, OutcomeKind};

/// Exit code for a runtime error.
pub const EXIT_ERROR: i32 = 1;
/// Exit code for a usage error (clap uses it too).
pub const EXIT_USAGE: i32 = 2;

/// Exit code for `convert`: the plan is blocked (a blocker stands; nothing was changed).
pub const EXIT_BLOCKED: i32 = 3;
/// Exit code: the change was applied, failed verification, and was rolled back.
pub const EXIT_ROLLED_BACK: i32 = 4;
/// Exit code: the operator interrupted the run (Ctrl-C / SIGTERM / SIGHUP).
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// libvirt connection URI (default: $LIBVIRT_DEFAULT_URI, else qemu:///system); scan takes
    /// it several times (one report for several hosts). On a remote URI (qemu+ssh://…) disk
    /// images are read through libvirt's volume download, which needs a read-write connection
    /// (opened for those reads only) and the images in a storage pool of that host
    #[arg(short = 'c', long = "connect", global = true, value_name = "URI", action = clap::ArgAction::Append)]
    pub connect: Vec<String>,
    /// Print one JSON document instead of the human report
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail on stderr
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When to colour the output (NO_COLOR is honoured with auto)
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl GlobalArgs {
    /// The URI to connect to: `-c`, else `LIBVIRT_DEFAULT_URI`, else `qemu:///system`.
    pub fn uri(&self) -> String {
        self.connect
            .first()
            .cloned()
            .or_else(|| {
                std::env::var("LIBVIRT_DEFAULT_URI")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| "qemu:///system".to_string())
    }
}

/// The exit code of a finished lifecycle run.
pub fn outcome_exit_code(outcome: &Outcome) -> i32 {
    match outcome.kind {
        OutcomeKind::RolledBack { .. } => EXIT_ROLLED_BACK,
        _ => 0,
    }
}

/// The exit code of a lifecycle run that stopped with an error.
pub fn error_exit_code(error: &LifecycleError) -> i32 {
    match error {
        LifecycleError::Interrupted(_) => EXIT_INTERRUPTED,
        LifecycleError::Blocked { .. } => EXIT_BLOCKED,
        _ => EXIT_ERROR,
    }
}
