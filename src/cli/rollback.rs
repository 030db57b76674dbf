//! `virtio-migrate rollback`: restore a backed-up definition (through
//! [`lifecycle::rollback`]), show what a restore would change (`--dry-run`), or list the
//! backups of the connection's domains (`--list`; every connection's with `--all-hosts`).

use anyhow::Context;
use clap::Args;
use virt::connect::Connect;

use crate::cli::common::GlobalArgs;
use crate::cli::lifecycle::{connect, interrupt_flag, options, report, ShutdownArgs, StateDirArgs};
use crate::host::lifecycle::backup::{Backup, BackupKind};
use crate::host::lifecycle::{self as lifecycle};

/// `rollback`: restore a backed-up definition, or list the backups.
#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// The domain: name, UUID or id (or --domain)
    #[arg(
        value_name = "DOMAIN",
        conflicts_with = "domain",
        required_unless_present_any = ["domain", "list"]
    )]
    pub target: Option<String>,
    /// The domain: name, UUID or id (the same as the positional DOMAIN)
    #[arg(long, short = 'd', value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// The backup id to restore (default: the unfinished run's, else the latest taken before a convert)
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
    /// List the backups (of --domain, or of every domain of the connection) instead of restoring
    #[arg(long)]
    pub list: bool,
    /// With --list: the backups of every connection's domains in the state directory, not only
    /// those of the domains on this connection (-c)
    #[arg(long, requires = "list")]
    pub all_hosts: bool,
    /// Show what the restore would do (the diff from the current definition to the backup, and
    /// the power state); change nothing
    #[arg(long, conflicts_with = "list")]
    pub dry_run: bool,
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

impl RollbackArgs {
    /// The domain, positional or `--domain`.
    pub fn domain_key(&self) -> Option<&str> {
        self.domain.as_deref().or(self.target.as_deref())
    }
}

/// Whether a backup belongs to a domain of this connection: recorded with the same URI, or
/// (a backup from before URIs were recorded) a domain with its UUID exists here.
fn on_this_connection(b: &Backup, uri: &str, conn: &Connect) -> bool {
    match &b.meta.uri {
        Some(u) => u == uri,
        None => conn.lookup_domain_by_uuid_string(&b.meta.uuid).is_ok(),
    }
}

fn list(global: &GlobalArgs, args: &RollbackArgs) -> anyhow::Result<i32> {
    let state_dir = &args.state.state_dir;
    let conn = if args.all_hosts && args.domain_key().is_none() {
        None
    } else {
        Some(connect(global)?)
    };
    let uri = match &conn {
        Some(c) => Some(c.uri().context("reading the connection's URI")?),
        None => None,
    };
    let uuid = match (args.domain_key(), &conn) {
        (Some(d), Some(c)) => Some(crate::cli::convert::lookup_domain(c, d)?.uuid_string()?),
        _ => None,
    };
    let backups: Vec<Backup> = Backup::list(state_dir, uuid.as_deref())
        .map_err(|e| anyhow::anyhow!("cannot list backups under {}: {e}", state_dir.display()))?
        .into_iter()
        .filter(|b| match (&conn, &uri) {
            (Some(c), Some(u)) if !args.all_hosts => on_this_connection(b, u, c),
            _ => true,
        })
        .collect();
    let whose = match (&uri, args.all_hosts) {
        (Some(u), false) => format!("of the domains on {u}"),
        _ => "of every connection's domains".to_string(),
    };
    if global.json {
        let metas: Vec<_> = backups.iter().map(|b| &b.meta).collect();
        let doc = serde_json::json!({
            "schema_version": 1,
            "uri": if args.all_hosts { None } else { uri.clone() },
            "state_dir": state_dir,
            "backups": metas,
        });
        crate::outln!("{}", serde_json::to_string_pretty(&doc)?);
    } else if backups.is_empty() {
        crate::outln!("no backups {whose} under {}", state_dir.display());
    } else {
        crate::outln!("backups {whose} under {}:", state_dir.display());
        crate::outln!(
            "{:<24} {:<20} {:<36} {:<15} {:<8} {:<20} DIR",
            "ID",
            "DOMAIN",
            "UUID",
            "KIND",
            "RUNNING",
            "URI"
        );
        for b in &backups {
            let kind = match b.meta.kind {
                BackupKind::BeforeConvert => "before-convert",
                BackupKind::BeforeRollback => "before-rollback",
            };
            crate::outln!(
                "{:<24} {:<20} {:<36} {:<15} {:<8} {:<20} {}",
                b.meta.id,
                b.meta.name,
                b.meta.uuid,
                kind,
                if b.meta.was_running { "yes" } else { "no" },
                b.meta.uri.as_deref().unwrap_or("-"),
                b.dir.display()
            );
        }
    }
    Ok(0)
}

/// `rollback --dry-run`: the diff from the current persistent definition to the backup, and
/// what would happen to the power state.
fn dry_run(
    global: &GlobalArgs,
    args: &RollbackArgs,
    dom: &virt::domain::Domain,
    backup: &Backup,
) -> anyhow::Result<i32> {
    let flags = virt::sys::VIR_DOMAIN_XML_INACTIVE | virt::sys::VIR_DOMAIN_XML_SECURE;
    let current = dom
        .xml_desc(flags)
        .context("reading the current persistent definition")?;
    let original = backup
        .persistent_xml()
        .with_context(|| format!("reading backup {}", backup.meta.id))?;
    let diff = crate::plan::diff::unified(
        &current,
        &original,
        "current definition",
        &format!("backup {}", backup.meta.id),
    );
    let running = dom.is_active().context("reading the domain state")?;
    let start = !args.no_start && backup.meta.was_running;
    let power = format!(
        "{}{}",
        if running {
            "running now: would be shut down, "
        } else {
            "shut off now: "
        },
        match (start, backup.meta.was_running) {
            (true, _) => "then started (it was running when backed up)",
            (false, true) => "and left shut off (--no-start)",
            (false, false) => "and left shut off (it was shut off when backed up)",
        }
    );
    if global.json {
        let doc = serde_json::json!({
            "schema_version": 1,
            "domain": backup.meta.name,
            "uuid": backup.meta.uuid,
            "backup": backup.meta,
            "dry_run": true,
            "running": running,
            "would_start": start,
            "power": power,
            "changes_definition": current != original,
            "diff": diff,
        });
        crate::outln!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let mut s = format!(
            "rollback of {} to backup {} (dry run: nothing was changed)\npower:      {power}\n",
            backup.meta.name, backup.meta.id
        );
        if current == original {
            s.push_str("definition: already the backed-up one (byte for byte)\n");
        } else {
            s.push_str("definition: would become the backed-up one:\n\n");
            s.push_str(&diff);
        }
        crate::outp!("{s}");
    }
    Ok(0)
}

/// `rollback`: restore a backup, `--dry-run` it, or `--list` them.
pub fn run_rollback(global: &GlobalArgs, args: &RollbackArgs) -> anyhow::Result<i32> {
    if args.list {
        return list(global, args);
    }
    let state_dir = &args.state.state_dir;
    let key = args
        .domain_key()
        .ok_or_else(|| anyhow::anyhow!("name the DOMAIN (or --list)"))?;
    let conn = connect(global)?;
    let dom = crate::cli::convert::lookup_domain(&conn, key)?;
    let uuid = dom.uuid_string()?;
    let backup = match &args.backup {
        Some(id) => Backup::load(state_dir, &uuid, id).map_err(|e| {
            anyhow::anyhow!("backup {id} of {key} under {}: {e}", state_dir.display())
        })?,
        None => lifecycle::default_backup(state_dir, &uuid)?,
    };
    if args.dry_run {
        return dry_run(global, args, &dom, &backup);
    }
    let mut opts = options(global, &args.state, &args.shutdown);
    opts.yes = args.yes;
    opts.start = !args.no_start;
    let interrupt = interrupt_flag()?;
    report(
        global,
        lifecycle::rollback(&conn, &dom, &backup, &opts, &interrupt),
    )
}
