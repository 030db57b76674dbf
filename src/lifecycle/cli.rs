//! The `convert` (for real) and `rollback` commands: flags, and the glue from the command line
//! to [`super::execute`] and [`super::rollback`].

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use virt::connect::Connect;

use super::backup::Backup;
use super::progress::Reporter;
use super::shutdown::{ShutdownMode, ShutdownPolicy};
use super::{LifecycleError, LifecycleOptions, Outcome, Transition, DEFAULT_STATE_DIR};
use crate::cli::GlobalArgs;

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
    /// Define the new definition but do not start the domain
    #[arg(long)]
    pub no_start: bool,
    /// Seconds the started guest must stay running (and its agent answer) before success
    #[arg(long, default_value_t = 60, value_name = "SECS")]
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

/// `rollback`: restore a backed-up definition, or list the backups.
#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// The domain (name, UUID or id)
    #[arg(long, value_name = "NAME", required_unless_present = "list")]
    pub domain: Option<String>,
    /// The backup id to restore (default: the unfinished run's, else the latest taken before a convert)
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
    /// List the backups (of --domain, or of all domains) instead of restoring
    #[arg(long)]
    pub list: bool,
    /// Do not ask for confirmation (required when there is no terminal)
    #[arg(short = 'y', long)]
    pub yes: bool,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
    /// Do not start the domain after restoring
    #[arg(long)]
    pub no_start: bool,
    #[command(flatten)]
    pub state: StateDirArgs,
}

/// The interrupt flag: the first SIGINT/SIGTERM/SIGHUP sets it (the wait loops stop cleanly),
/// a second one ends the process with 130.
pub fn interrupt_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag))?;
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
    }
    Ok(flag)
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// Open the libvirt connection named by the global options.
pub fn connect(global: &GlobalArgs) -> anyhow::Result<Connect> {
    virt::error::clear_error_callback();
    let uri = global.uri();
    Connect::open(Some(&uri)).map_err(|e| anyhow::anyhow!("cannot connect to {uri}: {e}"))
}

fn options(global: &GlobalArgs, state: &StateDirArgs, shutdown: &ShutdownArgs) -> LifecycleOptions {
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

fn report(global: &GlobalArgs, result: Result<Outcome, LifecycleError>) -> anyhow::Result<i32> {
    match result {
        Ok(outcome) => {
            if global.json {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
                println!("{}", outcome.summary());
            }
            Ok(outcome.exit_code())
        }
        Err(e) => {
            eprintln!("virtio-migrate: {e}");
            Ok(e.exit_code())
        }
    }
}

/// `convert` without `--dry-run`: plan (or, with `--resume`, take the interrupted run's
/// transition from its backup) and run the lifecycle.
pub fn run_convert(global: &GlobalArgs, args: &crate::convert::ConvertArgs) -> anyhow::Result<i32> {
    let conn = connect(global)?;
    let domain = args.domain_key()?;
    let dom = crate::convert::lookup_domain(&conn, domain)?;
    let l = &args.lifecycle;
    let mut opts = options(global, &l.state, &l.shutdown);
    opts.yes = l.yes;
    opts.start = !l.no_start;
    opts.verify_time = (!l.no_verify).then(|| Duration::from_secs(l.verify_time));
    opts.resume = l.resume;
    let transition = if l.resume {
        super::resume_transition(&opts.state_dir, &dom).map_err(anyhow::Error::from)?
    } else {
        // An interrupted run comes first: planning from a half-converted definition would
        // find "nothing to do" and hide it.
        match super::unfinished_report(&opts.state_dir, &dom) {
            Ok(None) => {}
            Ok(Some(report)) => {
                eprintln!("virtio-migrate: {report}");
                return Ok(1);
            }
            Err(e) => return report(global, Err(e)),
        }
        // The offline verdict from the guest's boot disk decides what may move (a not-ready
        // driver is a blocker that --force does not override).
        let verdict = crate::convert::inspect_guest(&conn, domain, args)?;
        let readiness = verdict.as_ref().map(|v| v.readiness());
        let planned =
            crate::convert::plan_domain(&conn, domain, readiness.as_ref(), &args.plan_options())?;
        let plan = planned.plan;
        if !global.quiet {
            eprint!("{}", crate::convert::render_human(&plan, false));
        }
        if plan.is_empty() {
            if !global.quiet {
                eprintln!("{}: nothing to convert", plan.domain);
            }
            return Ok(0);
        }
        transition_from_plan(planned.original_xml, &plan)
    };
    let interrupt = interrupt_flag()?;
    report(
        global,
        super::execute(&conn, &dom, &transition, &opts, &interrupt),
    )
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

/// `rollback`: restore a backup, or `--list` them.
pub fn run_rollback(global: &GlobalArgs, args: &RollbackArgs) -> anyhow::Result<i32> {
    let state_dir = &args.state.state_dir;
    if args.list {
        let uuid = match &args.domain {
            Some(d) => {
                let conn = connect(global)?;
                Some(crate::convert::lookup_domain(&conn, d)?.uuid_string()?)
            }
            None => None,
        };
        let backups = Backup::list(state_dir, uuid.as_deref()).map_err(|e| {
            anyhow::anyhow!("cannot list backups under {}: {e}", state_dir.display())
        })?;
        if global.json {
            let metas: Vec<_> = backups.iter().map(|b| &b.meta).collect();
            println!("{}", serde_json::to_string_pretty(&metas)?);
        } else if backups.is_empty() {
            println!("no backups under {}", state_dir.display());
        } else {
            println!(
                "{:<24} {:<20} {:<36} {:<15} {:<8} DIR",
                "ID", "DOMAIN", "UUID", "KIND", "RUNNING"
            );
            for b in &backups {
                let kind = match b.meta.kind {
                    super::backup::BackupKind::BeforeConvert => "before-convert",
                    super::backup::BackupKind::BeforeRollback => "before-rollback",
                };
                println!(
                    "{:<24} {:<20} {:<36} {:<15} {:<8} {}",
                    b.meta.id,
                    b.meta.name,
                    b.meta.uuid,
                    kind,
                    if b.meta.was_running { "yes" } else { "no" },
                    b.dir.display()
                );
            }
        }
        return Ok(0);
    }
    let key = args
        .domain
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--domain NAME is required"))?;
    let conn = connect(global)?;
    let dom = crate::convert::lookup_domain(&conn, key)?;
    let uuid = dom.uuid_string()?;
    let backup = match &args.backup {
        Some(id) => Backup::load(state_dir, &uuid, id).map_err(|e| {
            anyhow::anyhow!("backup {id} of {key} under {}: {e}", state_dir.display())
        })?,
        None => super::default_backup(state_dir, &uuid)?,
    };
    let mut opts = options(global, &args.state, &args.shutdown);
    opts.yes = args.yes;
    opts.start = !args.no_start;
    let interrupt = interrupt_flag()?;
    report(
        global,
        super::rollback(&conn, &dom, &backup, &opts, &interrupt),
    )
}
