//! What every command shares: the global options, the exit codes, and how a lifecycle result
//! becomes one. The commands import this module; it imports none of them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

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
    /// Say what the tool is doing, on stderr: the connection, each disk image opened, the
    /// planning, each step of a conversion (with the seconds since the start)
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Seconds to wait for the connection to open before giving up (0: wait for ever); an ssh
    /// endpoint that never answers would otherwise hang the command
    #[arg(long, global = true, default_value_t = 30, value_name = "SECS")]
    pub connect_timeout: u64,
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

/// The signals that interrupt a run.
pub const INTERRUPT_SIGNALS: [i32; 3] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
];

/// While set, an interrupt signal ends the process at once with [`EXIT_INTERRUPTED`].
fn immediate_exit() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(true)))
}

/// From the start of every command: Ctrl-C (SIGINT), SIGTERM or SIGHUP end the process with
/// 130 at once — while connecting (an ssh endpoint that never answers), reading images,
/// planning: nothing is being changed then. A lifecycle run switches to the graceful handling
/// with [`graceful_interrupts`].
pub fn exit_130_on_interrupt() {
    for sig in INTERRUPT_SIGNALS {
        // Cannot fail for these signals; without it the default action still ends the process.
        let _ = signal_hook::flag::register_conditional_shutdown(
            sig,
            EXIT_INTERRUPTED,
            Arc::clone(immediate_exit()),
        );
    }
}

/// From here on the first interrupt only sets the returned flag (the lifecycle's wait loops
/// stop cleanly and say what state the domain is in; it exits 130 then), a second one ends the
/// process with 130.
pub fn graceful_interrupts() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in INTERRUPT_SIGNALS {
        signal_hook::flag::register_conditional_shutdown(sig, EXIT_INTERRUPTED, Arc::clone(&flag))?;
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
    }
    immediate_exit().store(false, Ordering::SeqCst);
    Ok(flag)
}
