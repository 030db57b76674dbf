//! `virtio-migrate rollback`: restore a backed-up definition (through
//! [`lifecycle::rollback`]), or list the backups.

use clap::Args;

use crate::cli::common::GlobalArgs;
use crate::cli::lifecycle::{connect, interrupt_flag, options, report, ShutdownArgs, StateDirArgs};
use crate::host::lifecycle::backup::Backup;
use crate::host::lifecycle::{self as lifecycle};

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
    /// Do not start the domain after restoring (by default it is started when it was running
    /// when the backup was taken, and left shut off when it was shut off)
    #[arg(long)]
    pub no_start: bool,
    #[command(flatten)]
    pub state: StateDirArgs,
}

/// `rollback`: restore a backup, or `--list` them.
pub fn run_rollback(global: &GlobalArgs, args: &RollbackArgs) -> anyhow::Result<i32> {
    let state_dir = &args.state.state_dir;
    if args.list {
        let uuid = match &args.domain {
            Some(d) => {
                let conn = connect(global)?;
                Some(crate::cli::convert::lookup_domain(&conn, d)?.uuid_string()?)
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
                    lifecycle::backup::BackupKind::BeforeConvert => "before-convert",
                    lifecycle::backup::BackupKind::BeforeRollback => "before-rollback",
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
    let dom = crate::cli::convert::lookup_domain(&conn, key)?;
    let uuid = dom.uuid_string()?;
    let backup = match &args.backup {
        Some(id) => Backup::load(state_dir, &uuid, id).map_err(|e| {
            anyhow::anyhow!("backup {id} of {key} under {}: {e}", state_dir.display())
        })?,
        None => lifecycle::default_backup(state_dir, &uuid)?,
    };
    let mut opts = options(global, &args.state, &args.shutdown);
    opts.yes = args.yes;
    opts.start = !args.no_start;
    let interrupt = interrupt_flag()?;
    report(
        global,
        lifecycle::rollback(&conn, &dom, &backup, &opts, &interrupt),
    )
}
