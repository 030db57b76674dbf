//! `virtio-migrate convert`: plan the switch of one domain to virtio and, with `--dry-run`, show
//! the plan and the diff of the persistent definition without changing anything on the host.
//!
//! Exit codes: 0 the plan is ready (or there is nothing to do), [`EXIT_BLOCKED`] (3) a blocker
//! stands, 1 an error.
//!
//! The pieces the real conversion reuses: [`ConvertArgs`] (and [`ConvertArgs::plan_options`]),
//! [`lookup_domain`], [`host_facts`] and [`plan_domain`], which reads the persistent definition
//! (`VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE`) and returns it with its plan.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use virt::connect::Connect;
use virt::domain::Domain;

use crate::cli::common::{ColorChoice, GlobalArgs, EXIT_BLOCKED};
use crate::cli::lifecycle::{connect, interrupt_flag, options, report, transition_from_plan};
use crate::host::lifecycle;
use crate::inspect::image::{FileStore, LocalFiles};
use crate::plan::{
    self, DiskSelection, GuestReadiness, HostFacts, NicPolicy, Plan, PlanOptions, PlanStatus,
    SnapshotFacts, TargetBus,
};
use crate::plan::{diff, validate};
use std::sync::Arc;
use std::time::Duration;

/// Options of `convert`.
#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    /// The domain: name, UUID or id
    #[arg(
        long,
        short = 'd',
        value_name = "DOMAIN",
        required_unless_present = "all"
    )]
    pub domain: Option<String>,
    /// Every conversion candidate of the host (scan's list) whose plan is ready; a table of
    /// results at the end. Exit 0 all converted or nothing to do, 3 some blocked and none
    /// failed, 1 any failed or rolled back, 130 interrupted
    #[arg(long, conflicts_with_all = ["domain", "output", "resume"])]
    pub all: bool,
    /// With --all: only these domains (name, UUID or id; repeatable), those of them that are
    /// candidates, as one batch
    #[arg(long, value_name = "DOMAIN")]
    pub only: Vec<String>,
    /// With --all: convert at most N domains at a time (default: one after another)
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=32))]
    pub parallel: Option<u16>,
    /// Show the plan and the diff of the definition; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Plan without reading the guest's disk image: the drivers count as not checked (a
    /// blocker unless --force)
    #[arg(long)]
    pub no_inspect: bool,
    /// Bus for the hard disks: virtio (virtio-blk, vdX) or scsi (virtio-scsi, sdX)
    #[arg(long, value_enum, default_value_t = TargetBus::Virtio, value_name = "BUS")]
    pub bus: TargetBus,
    /// Also move hard disks on SATA (IDE ones always move)
    #[arg(long)]
    pub include_sata: bool,
    /// Which hard disks move: all of them or only the boot disk
    #[arg(long, value_enum, default_value_t = DiskSelection::All, value_name = "WHICH")]
    pub disks: DiskSelection,
    /// Emulated NICs to virtio: when netkvm is ready (auto), always, or never
    #[arg(long, value_enum, default_value_t = NicPolicy::Auto, value_name = "WHEN")]
    pub nics: NicPolicy,
    /// Override the blockers that may be overridden (drivers not checked, managed domain)
    #[arg(long)]
    pub force: bool,
    /// Write the planned definition to FILE (for the change ticket)
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// How the conversion runs (ignored with --dry-run)
    #[command(flatten)]
    pub lifecycle: crate::cli::lifecycle::LifecycleArgs,
    #[command(flatten)]
    pub budget: crate::inspect::guest::BudgetArgs,
}

impl ConvertArgs {
    /// The domain named by `--domain` (an error with `--all`).
    pub fn domain_key(&self) -> anyhow::Result<&str> {
        self.domain
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("--domain NAME is required (or --all)"))
    }

    /// The planner's options.
    pub fn plan_options(&self) -> PlanOptions {
        PlanOptions {
            bus: self.bus,
            include_sata: self.include_sata,
            disks: self.disks,
            nics: self.nics,
            force: self.force,
        }
    }
}

/// A domain's persistent definition, what the host knows about it, and its plan.
#[derive(Debug, Clone)]
pub struct DomainPlan {
    /// The definition as read (`INACTIVE | SECURE`).
    pub original_xml: String,
    /// Transient, managed save, snapshots.
    pub host: HostFacts,
    /// The plan (its `new_xml` validated by libvirt's schema when it has changes).
    pub plan: Plan,
}

/// Find a domain by name, then UUID, then id.
pub fn lookup_domain(conn: &Connect, name: &str) -> anyhow::Result<Domain> {
    match crate::host::find_domain(conn, name) {
        Ok(Some(d)) => Ok(d),
        Ok(None) => bail!("no domain named '{name}' (by name, UUID or id)"),
        Err(e) => Err(anyhow::anyhow!("cannot look up domain '{name}': {e}")),
    }
}

/// What the host knows about the domain: persistence, managed save, snapshots with their XML.
pub fn host_facts(dom: &Domain) -> anyhow::Result<HostFacts> {
    let transient = !dom
        .is_persistent()
        .context("asking whether the domain is persistent")?;
    // The test driver and some remote drivers do not support every query; treat "unsupported" as
    // "none" only for the managed save and snapshot listings, which are advisory.
    let managed_save = dom.has_managed_save(0).unwrap_or(false);
    let mut snapshots = Vec::new();
    if let Ok(list) = dom.list_all_snapshots(0) {
        for snap in list {
            let name = snap.name().unwrap_or_default();
            let xml = snap.xml_desc(0).unwrap_or_default();
            snapshots.push(SnapshotFacts { name, xml });
        }
    }
    Ok(HostFacts {
        transient,
        managed_save,
        snapshots,
    })
}

/// Read the persistent definition of `domain`, plan its conversion, and validate the new XML with
/// libvirt's schema (in process, on the test driver; see [`Plan::record_schema_result`]).
pub fn plan_domain(
    conn: &Connect,
    domain: &str,
    readiness: Option<&GuestReadiness>,
    opts: &PlanOptions,
) -> anyhow::Result<DomainPlan> {
    let dom = lookup_domain(conn, domain)?;
    let flags = virt::sys::VIR_DOMAIN_XML_INACTIVE | virt::sys::VIR_DOMAIN_XML_SECURE;
    let original_xml = dom
        .xml_desc(flags)
        .with_context(|| format!("reading the definition of {domain}"))?;
    let host = host_facts(&dom)?;
    let mut plan = plan::plan(&original_xml, readiness, &host, opts)
        .with_context(|| format!("planning the conversion of {domain}"))?;
    if !plan.is_empty() {
        let new = validate::schema(&plan.new_xml);
        plan.record_schema_result(new, || validate::schema(&original_xml));
    }
    Ok(DomainPlan {
        original_xml,
        host,
        plan,
    })
}

/// The offline verdict for the domain's guest, read from its persistent definition's boot disk
/// (`None` with `--no-inspect`). Never fails on the image: an unreadable disk is an `unknown`
/// verdict, which the planner turns into a blocker.
pub fn inspect_guest(
    conn: &Connect,
    domain: &str,
    args: &ConvertArgs,
) -> anyhow::Result<Option<crate::inspect::guest::GuestVerdict>> {
    if args.no_inspect {
        return Ok(None);
    }
    let dom = lookup_domain(conn, domain)?;
    let xml = dom
        .xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
        .with_context(|| format!("reading the definition of {domain}"))?;
    let facts = crate::domain::parse_domain(&xml).with_context(|| format!("domain {domain}"))?;
    // Watched like a scan's inspections: an image on hung storage gives an `unknown` verdict
    // (a blocked plan) instead of a convert that never answers.
    // This connection is read-write (convert changes the host), as remote reads need.
    let uri = conn.uri().context("reading the connection's URI")?;
    let store: Arc<dyn FileStore> = if crate::host::uri_is_remote(&uri) {
        Arc::new(crate::host::remote::RemoteFiles::new(conn.clone(), &uri))
    } else {
        Arc::new(LocalFiles)
    };
    Ok(Some(crate::inspect::guest::assess_watched_in(
        &store,
        &crate::host::with_volume_paths(conn, &facts),
        args.budget.budget(),
    )))
}

/// The exit code for a plan.
pub fn exit_code(plan: &Plan) -> i32 {
    match plan.status() {
        PlanStatus::NothingToDo | PlanStatus::Ready => 0,
        PlanStatus::Blocked => EXIT_BLOCKED,
    }
}

/// Run `convert`.
pub fn run(global: &GlobalArgs, args: &ConvertArgs) -> anyhow::Result<i32> {
    if !args.dry_run {
        return run_convert(global, args);
    }
    virt::error::clear_error_callback();
    let uri = global.uri();
    let conn =
        Connect::open(Some(&uri)).map_err(|e| anyhow::anyhow!("cannot connect to {uri}: {e}"))?;
    let domain = args.domain_key()?;
    if let Some(w) = crate::host::lifecycle::unfinished_warning(
        &args.lifecycle.state.state_dir,
        &lookup_domain(&conn, domain)?,
    ) {
        eprintln!("{w}");
    }
    let verdict = inspect_guest(&conn, domain, args)?;
    let readiness = verdict
        .as_ref()
        .map(|v| crate::plan::GuestReadiness::from_assessment(&v.assessment));
    let planned = plan_domain(&conn, domain, readiness.as_ref(), &args.plan_options())?;
    let plan = &planned.plan;
    if let Some(path) = &args.output {
        std::fs::write(path, &plan.new_xml)
            .with_context(|| format!("writing the planned definition to {}", path.display()))?;
    }
    let text = if global.json {
        let mut s = serde_json::to_string_pretty(&plan_json(plan))?;
        s.push('\n');
        s
    } else {
        render_human(plan, use_colour(global.color))
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        // A closed pipe (`| head`) is a normal end.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(e).context("writing the plan"),
    }
    Ok(exit_code(plan))
}

/// `convert` without `--dry-run`: plan (or, with `--resume`, take the interrupted run's
/// transition from its backup) and run the lifecycle.
pub fn run_convert(global: &GlobalArgs, args: &ConvertArgs) -> anyhow::Result<i32> {
    let conn = connect(global)?;
    let domain = args.domain_key()?;
    let dom = lookup_domain(&conn, domain)?;
    let l = &args.lifecycle;
    let mut opts = options(global, &l.state, &l.shutdown);
    opts.yes = l.yes;
    opts.start = !l.no_start;
    opts.verify_time = (!l.no_verify).then(|| Duration::from_secs(l.verify_time));
    opts.resume = l.resume;
    let transition = if l.resume {
        lifecycle::resume_transition(&opts.state_dir, &dom).map_err(anyhow::Error::from)?
    } else {
        // An interrupted run comes first: planning from a half-converted definition would
        // find "nothing to do" and hide it.
        match lifecycle::unfinished_report(&opts.state_dir, &dom) {
            Ok(None) => {}
            Ok(Some(report)) => {
                eprintln!("virtio-migrate: {report}");
                return Ok(1);
            }
            Err(e) => return report(global, Err(e)),
        }
        // The offline verdict from the guest's boot disk decides what may move (a not-ready
        // driver is a blocker that --force does not override).
        let verdict = inspect_guest(&conn, domain, args)?;
        let readiness = verdict
            .as_ref()
            .map(|v| crate::plan::GuestReadiness::from_assessment(&v.assessment));
        let planned = plan_domain(&conn, domain, readiness.as_ref(), &args.plan_options())?;
        let plan = planned.plan;
        if !global.quiet {
            eprint!("{}", render_human(&plan, false));
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
        lifecycle::execute(&conn, &dom, &transition, &opts, &interrupt),
    )
}

/// Colour on a terminal only (and never with `NO_COLOR` in auto mode).
fn use_colour(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

/// The `--json` document: the plan, its status, the diff and the new XML.
///
/// `{"domain", "uuid", "status": "nothing-to-do"|"ready"|"blocked", "options", "readiness"
/// (null: drivers not checked), "boot_disk", "changes": [{kind, element, from, to, why}],
/// "blockers": [{kind, message, overridable, overridden}], "warnings": [{kind, message}],
/// "diff", "new_xml"}`
pub fn plan_json(plan: &Plan) -> serde_json::Value {
    let mut value = serde_json::to_value(plan).unwrap_or(serde_json::Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "status".to_string(),
            serde_json::to_value(plan.status()).unwrap_or(serde_json::Value::Null),
        );
        map.insert("diff".to_string(), serde_json::Value::String(plan.diff()));
    }
    value
}

/// The human report: a short header, then the unified diff.
pub fn render_human(plan: &Plan, colour: bool) -> String {
    let mut s = String::new();
    let uuid = plan
        .uuid
        .as_deref()
        .map(|u| format!(" ({u})"))
        .unwrap_or_default();
    s.push_str(&format!("domain:   {}{uuid}\n", plan.domain));
    let status = match plan.status() {
        PlanStatus::NothingToDo => "nothing to do: no IDE/SATA hard disk or emulated NIC to move",
        PlanStatus::Ready => "ready",
        PlanStatus::Blocked => "blocked",
    };
    s.push_str(&format!("plan:     {status}\n"));
    match &plan.readiness {
        None => s.push_str("drivers:  not checked\n"),
        Some(r) => s.push_str(&format!(
            "drivers:  viostor {}, vioscsi {}, netkvm {}\n",
            r.blk, r.scsi, r.nic
        )),
    }
    if let Some(boot) = &plan.boot_disk {
        s.push_str(&format!("boot:     {boot}\n"));
    }
    if !plan.changes.is_empty() {
        s.push_str("changes:\n");
        for c in &plan.changes {
            s.push_str(&format!(
                "  - {}: {} -> {}\n      why: {}\n",
                c.element, c.from, c.to, c.why
            ));
        }
    }
    if !plan.blockers.is_empty() {
        s.push_str("blockers:\n");
        for b in &plan.blockers {
            let tag = if b.overridden {
                " (overridden by --force)"
            } else {
                ""
            };
            s.push_str(&format!("  ! {}{tag}\n", b.message));
        }
    }
    if !plan.warnings.is_empty() {
        s.push_str("warnings:\n");
        for w in &plan.warnings {
            s.push_str(&format!("  * {}\n", w.message));
        }
    }
    let diff = plan.diff();
    if !diff.is_empty() {
        s.push('\n');
        if colour {
            s.push_str(&diff::colorize(&diff));
        } else {
            s.push_str(&diff);
        }
    }
    s
}
