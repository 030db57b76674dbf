//! The lifecycle's face on the command line, shared by `convert`, `convert --all` and `rollback`:
//! the shutdown, state-directory and run options, the interrupt flag, the connection, and how a
//! plan becomes a [`Transition`] and a run's result becomes output and an exit code.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use virt::connect::Connect;

use crate::cli::common::{error_exit_code, outcome_exit_code, GlobalArgs};
use crate::host::lifecycle::progress::Reporter;
use crate::host::lifecycle::shutdown::{ShutdownMode, ShutdownPolicy};
use crate::host::lifecycle::{
    LifecycleError, LifecycleOptions, Outcome, Transition, DEFAULT_STATE_DIR, DEFAULT_VERIFY_SECS,
};

/// How to stop a running guest (shared by `convert` and `rollback`).
#[derive(Debug, Clone, Args)]
pub struct ShutdownArgs {
    /// How to ask the guest to shut down: the guest agent then ACPI (auto), or only one
    #[arg(long, value_enum, default_value_t = ShutdownMode::Auto, value_name = "MODE")]
    pub shutdown_mode: ShutdownMode,
    /// Seconds to wait for the guest to power off (the request is re-sent every 10 s)
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub shutdown_timeout: u64,
    /// Destroy (power off) the guest when it has not shut down within the timeout
    #[arg(long)]
    pub force_off: bool,
}

/// Where the lifecycle keeps its locks, backups and journals.
#[derive(Debug, Clone, Args)]
pub struct StateDirArgs {
    /// State directory (locks, backups, journals)
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR, env = "VIRTIO_MIGRATE_STATE_DIR")]
    pub state_dir: PathBuf,
}

/// The options of a conversion run (flattened into `convert`; ignored with `--dry-run`).
#[derive(Debug, Clone, Args)]
pub struct LifecycleArgs {
    /// Do not ask for confirmation (required when there is no terminal)
    #[arg(short = 'y', long)]
    pub yes: bool,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
    /// Start the domain after the conversion even if it was shut off (and verify it); without
    /// it a guest that was shut off stays shut off
    #[arg(long, conflicts_with = "no_start")]
    pub start: bool,
    /// Define the new definition but do not start the domain, even if it was running
    #[arg(long)]
    pub no_start: bool,
    /// Seconds to watch the started guest: any reset, reboot, crash, panic or stop in that time
    /// fails and rolls back at once; with a guest agent channel the agent must answer and keep
    /// answering. Long enough by default for Windows to reach the point of a 0x7B
    #[arg(long, default_value_t = DEFAULT_VERIFY_SECS, value_name = "SECS")]
    pub verify_time: u64,
    /// Do not watch the started guest (risky: a guest that fails to boot is not rolled back)
    #[arg(long, conflicts_with = "verify_time")]
    pub no_verify: bool,
    /// Finish an interrupted conversion of the domain (from its journal and backup) instead of planning
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub state: StateDirArgs,
}

/// The interrupt flag: the first SIGINT/SIGTERM/SIGHUP sets it (the wait loops stop cleanly),
/// a second one ends the process with 130 (see [`crate::cli::common::graceful_interrupts`]).
pub fn interrupt_flag() -> anyhow::Result<Arc<AtomicBool>> {
    crate::cli::common::graceful_interrupts()
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// Open the libvirt connection named by the global options.
/// (Read-write; the cause of a failure named, bounded by `--connect-timeout`.)
pub fn connect(global: &GlobalArgs) -> anyhow::Result<Connect> {
    let host = crate::host::Host::open(&global.uri(), crate::host::Access::ReadWrite)?;
    Ok(host.into_connection())
}

pub fn options(
    global: &GlobalArgs,
    state: &StateDirArgs,
    shutdown: &ShutdownArgs,
) -> LifecycleOptions {
    let mut o = LifecycleOptions::new(&command_line());
    o.state_dir = state.state_dir.clone();
    o.shutdown = ShutdownPolicy {
        mode: shutdown.shutdown_mode,
        timeout: Duration::from_secs(shutdown.shutdown_timeout),
        resend_every: Duration::from_secs(10),
        force_off: shutdown.force_off,
    };
    o.reporter = Reporter::detect(global.quiet);
    o
}

pub fn report(global: &GlobalArgs, result: Result<Outcome, LifecycleError>) -> anyhow::Result<i32> {
    match result {
        Ok(outcome) => {
            if global.json {
                let mut doc = serde_json::to_value(&outcome)?;
                if let Some(map) = doc.as_object_mut() {
                    map.insert(
                        "schema_version".into(),
                        serde_json::json!(crate::cli::convert::JSON_SCHEMA_VERSION),
                    );
                    map.insert(
                        "exit_code".into(),
                        serde_json::json!(outcome_exit_code(&outcome)),
                    );
                }
                crate::cli::report::print_json(&doc)?;
            } else {
                crate::outln!("{}", outcome.summary());
            }
            Ok(outcome_exit_code(&outcome))
        }
        Err(e) => {
            crate::errln!("virtio-migrate: {e}");
            let code = error_exit_code(&e);
            if global.json {
                // Every mode prints one document, a run that stopped too.
                let doc = serde_json::json!({
                    "schema_version": crate::cli::convert::JSON_SCHEMA_VERSION,
                    "result": e.kind_word(),
                    "error": e.to_string(),
                    "exit_code": code,
                });
                crate::cli::report::print_json(&doc)?;
            }
            Ok(code)
        }
    }
}

/// The lifecycle's view of a plan: blockers still standing stop it; blockers overridden by
/// `--force` become warnings that say so.
pub fn transition_from_plan(original_xml: String, plan: &crate::plan::Plan) -> Transition {
    let mut blockers = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    for b in &plan.blockers {
        if b.overridden {
            warnings.push(format!("--force overrides: {}", b.message));
        } else if b.overridable {
            blockers.push(format!("{} (--force overrides this)", b.message));
        } else {
            blockers.push(b.message.clone());
        }
    }
    warnings.extend(plan.warnings.iter().map(|w| w.message.clone()));
    Transition {
        original_xml,
        new_xml: plan.new_xml.clone(),
        blockers,
        warnings,
    }
}
