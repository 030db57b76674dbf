//! `convert --all`: every conversion candidate of the host (scan's list), each planned from its
//! own offline verdict and converted when its plan is ready; one after another, or at most
//! `--parallel N` at a time. Each domain keeps its own lock, backup and journal; one failure
//! does not stop the others. A final table (or `--json` document) gives each domain's result.
//!
//! Exit codes: 0 every candidate was converted (or planned ready with `--dry-run`) or had
//! nothing to do; 3 some were blocked and none failed; 1 any failed or was rolled back;
//! 130 interrupted (the domains not started yet are skipped).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use virt::connect::Connect;

use crate::cli::common::GlobalArgs;
use crate::cli::common::{EXIT_BLOCKED, EXIT_ERROR, EXIT_INTERRUPTED};
use crate::cli::convert::{self, ConvertArgs};
use crate::host::lifecycle::{self as lifecycle, LifecycleError, OutcomeKind, StepTiming};
use crate::host::{Access, Host};
use crate::plan::PlanStatus;

/// How one domain of a batch ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result", content = "why")]
pub enum BatchResult {
    /// Converted (started and verified as asked).
    Converted,
    /// `--dry-run`: the plan is ready.
    Ready,
    /// Nothing to change.
    NothingToDo,
    /// The plan is blocked; nothing was changed.
    Blocked(String),
    /// The conversion failed (the message says what state the domain is in).
    Failed(String),
    /// Verification failed and the original definition was restored.
    RolledBack(String),
    /// Interrupted (Ctrl-C): during its run (the message says the state), or before it started.
    Interrupted(String),
}

impl BatchResult {
    /// The word of the results table.
    pub fn word(&self) -> &'static str {
        match self {
            BatchResult::Converted => "converted",
            BatchResult::Ready => "ready",
            BatchResult::NothingToDo => "nothing-to-do",
            BatchResult::Blocked(_) => "blocked",
            BatchResult::Failed(_) => "failed",
            BatchResult::RolledBack(_) => "rolled-back",
            BatchResult::Interrupted(_) => "interrupted",
        }
    }

    /// Why, when there is a reason.
    pub fn why(&self) -> Option<&str> {
        match self {
            BatchResult::Blocked(w)
            | BatchResult::Failed(w)
            | BatchResult::RolledBack(w)
            | BatchResult::Interrupted(w) => Some(w),
            _ => None,
        }
    }
}

/// One row of the results.
#[derive(Debug, Clone, Serialize)]
pub struct BatchEntry {
    pub domain: String,
    pub uuid: String,
    #[serde(flatten)]
    pub result: BatchResult,
    /// Wall time for this domain (inspection, planning and the lifecycle).
    pub secs: f64,
    /// The lifecycle's steps (empty when it did not run).
    pub steps: Vec<StepTiming>,
    /// `--dry-run --json`: the plan document (as `convert --dry-run --json` prints it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<serde_json::Value>,
    /// `--dry-run` without `--json`: the human plan.
    #[serde(skip)]
    pub plan_text: Option<String>,
}

impl BatchEntry {
    /// Seconds spent waiting for the guest (shutdown, verify) and in the tool.
    pub fn split(&self) -> (f64, f64) {
        let guest: f64 = self
            .steps
            .iter()
            .filter(|s| s.guest_wait)
            .map(|s| s.secs)
            .fold(0.0, |a, b| a + b);
        ((self.secs - guest).max(0.0), guest)
    }
}

/// The exit code of a batch (see the module documentation).
pub fn exit_code(entries: &[BatchEntry]) -> i32 {
    let any = |f: fn(&BatchResult) -> bool| entries.iter().any(|e| f(&e.result));
    if any(|r| matches!(r, BatchResult::Failed(_) | BatchResult::RolledBack(_))) {
        EXIT_ERROR
    } else if any(|r| matches!(r, BatchResult::Interrupted(_))) {
        EXIT_INTERRUPTED
    } else if any(|r| matches!(r, BatchResult::Blocked(_))) {
        EXIT_BLOCKED
    } else {
        0
    }
}

/// The results table.
pub fn render_table(entries: &[BatchEntry]) -> String {
    let width = entries
        .iter()
        .map(|e| e.domain.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut s = format!(
        "{:<width$}  {:<13}  {:>8}  {:>8}  {:>8}  WHY\n",
        "DOMAIN", "RESULT", "TOTAL", "TOOL", "GUEST"
    );
    for e in entries {
        let (tool, guest) = e.split();
        let why = e.why_line();
        s.push_str(&format!(
            "{:<width$}  {:<13}  {:>7.1}s  {:>7.1}s  {:>7.1}s  {}\n",
            e.domain,
            e.result.word(),
            e.secs,
            tool,
            guest,
            why
        ));
    }
    let count = |w: &str| entries.iter().filter(|e| e.result.word() == w).count();
    let mut parts = Vec::new();
    for w in [
        "converted",
        "ready",
        "nothing-to-do",
        "blocked",
        "failed",
        "rolled-back",
        "interrupted",
    ] {
        let n = count(w);
        if n > 0 {
            parts.push(format!("{n} {w}"));
        }
    }
    s.push_str(&format!(
        "{} candidate(s): {}\n",
        entries.len(),
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    ));
    s
}

impl BatchEntry {
    /// The reason on one line (multi-line messages joined with "; ").
    fn why_line(&self) -> String {
        self.result
            .why()
            .map(|w| {
                w.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }
}

/// The candidates of the host (or among `only`, when given), in scan order: `(name, uuid)`.
fn candidates(
    host: &Host,
    only: &[String],
    verbose: bool,
) -> anyhow::Result<Vec<(String, String)>> {
    let report = crate::cli::scan::scan_host(host, only, verbose)?;
    Ok(report
        .domains
        .iter()
        .filter(|e| e.candidate)
        .map(|e| (e.status.name.clone(), e.status.uuid.clone()))
        .collect())
}

/// Run `convert --all` (with or without `--dry-run`).
pub fn run_all(global: &GlobalArgs, args: &ConvertArgs) -> anyhow::Result<i32> {
    let uri = global.uri();
    // Read-write even for a dry run: the persistent definition is read with the SECURE flag,
    // as `convert --domain` does.
    let host = Host::open(&uri, Access::ReadWrite)?;
    let list = candidates(&host, &args.only, global.verbose)?;
    let conn = host.connection();
    let parallel = usize::from(args.parallel.unwrap_or(1)).max(1);
    let interrupt = if args.dry_run {
        std::sync::Arc::new(AtomicBool::new(false))
    } else {
        crate::cli::lifecycle::interrupt_flag()?
    };

    if !args.dry_run && !args.lifecycle.yes && !list.is_empty() {
        confirm_batch(&list)?;
    }
    if !global.quiet && !global.json {
        eprintln!(
            "{} candidate(s) on {uri}{}",
            list.len(),
            if parallel > 1 {
                format!(", at most {parallel} at a time")
            } else {
                String::new()
            }
        );
    }

    let slots: Vec<Mutex<Option<BatchEntry>>> = list.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..parallel.min(list.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((name, uuid)) = list.get(i) else {
                    break;
                };
                let entry = if interrupt.load(Ordering::SeqCst) {
                    BatchEntry {
                        domain: name.clone(),
                        uuid: uuid.clone(),
                        result: BatchResult::Interrupted("the batch was interrupted before this domain started; nothing was changed".into()),
                        secs: 0.0,
                        steps: Vec::new(),
                        plan: None,
                        plan_text: None,
                    }
                } else {
                    one_domain(global, args, conn, name, uuid, parallel, &interrupt)
                };
                if !global.quiet && !global.json && !args.dry_run {
                    eprintln!(
                        "[{}] {}{}",
                        entry.domain,
                        entry.result.word(),
                        entry
                            .result
                            .why()
                            .map(|w| format!(": {}", w.lines().next().unwrap_or_default()))
                            .unwrap_or_default()
                    );
                }
                if let Some(slot) = slots.get(i) {
                    if let Ok(mut s) = slot.lock() {
                        *s = Some(entry);
                    }
                }
            });
        }
    });
    let entries: Vec<BatchEntry> = slots
        .into_iter()
        .filter_map(|m| m.into_inner().ok().flatten())
        .collect();

    if global.json {
        let doc = serde_json::json!({
            "uri": uri,
            "dry_run": args.dry_run,
            "results": entries,
            "exit_code": exit_code(&entries),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let mut out = String::new();
        for e in &entries {
            if let Some(text) = &e.plan_text {
                out.push_str(text);
                out.push('\n');
            }
        }
        out.push_str(&render_table(&entries));
        print!("{out}");
    }
    Ok(exit_code(&entries))
}

/// One confirmation for the whole batch (the per-domain prompts would interleave).
fn confirm_batch(list: &[(String, String)]) -> anyhow::Result<()> {
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        anyhow::bail!(
            "no terminal to confirm on: pass --yes to convert every ready candidate without confirmation (nothing was changed)"
        );
    }
    let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
    let ok = dialoguer::Confirm::new()
        .with_prompt(format!(
            "Convert every candidate whose plan is ready ({}), shutting down and restarting the running ones?",
            names.join(", ")
        ))
        .default(false)
        .interact()
        .map_err(|e| anyhow::anyhow!("cannot ask for confirmation: {e}"))?;
    if !ok {
        anyhow::bail!("not confirmed: nothing was changed");
    }
    Ok(())
}

/// Plan one domain and, unless `--dry-run`, convert it when the plan is ready.
fn one_domain(
    global: &GlobalArgs,
    args: &ConvertArgs,
    conn: &Connect,
    name: &str,
    uuid: &str,
    parallel: usize,
    interrupt: &AtomicBool,
) -> BatchEntry {
    let start = Instant::now();
    let mut entry = BatchEntry {
        domain: name.to_string(),
        uuid: uuid.to_string(),
        result: BatchResult::NothingToDo,
        secs: 0.0,
        steps: Vec::new(),
        plan: None,
        plan_text: None,
    };
    entry.result = match plan_and_run(global, args, conn, uuid, parallel, interrupt, &mut entry) {
        Ok(r) => r,
        Err(e) => BatchResult::Failed(format!("{e:#}")),
    };
    entry.secs = start.elapsed().as_secs_f64();
    entry
}

fn plan_and_run(
    global: &GlobalArgs,
    args: &ConvertArgs,
    conn: &Connect,
    uuid: &str,
    parallel: usize,
    interrupt: &AtomicBool,
    entry: &mut BatchEntry,
) -> anyhow::Result<BatchResult> {
    let dom = convert::lookup_domain(conn, uuid)?;
    let state_dir = &args.lifecycle.state.state_dir;
    // An interrupted earlier run comes first (planning a half-converted definition would hide
    // it); a dry run only reports it when the state directory can be read.
    let unfinished = match lifecycle::unfinished_report(state_dir, &dom) {
        Ok(r) => r,
        Err(e @ LifecycleError::Locked { .. }) => return Ok(BatchResult::Failed(e.to_string())),
        Err(e) if args.dry_run => {
            if global.verbose {
                eprintln!(
                    "virtio-migrate: {}: cannot read the journal: {e}",
                    entry.domain
                );
            }
            None
        }
        Err(e) => return Ok(BatchResult::Failed(e.to_string())),
    };
    if let Some(report) = &unfinished {
        if !args.dry_run {
            return Ok(BatchResult::Failed(report.clone()));
        }
    }
    let verdict = convert::inspect_guest(conn, uuid, args)?;
    let readiness = verdict
        .as_ref()
        .map(|v| crate::plan::GuestReadiness::from_assessment(&v.assessment));
    let planned = convert::plan_domain(conn, uuid, readiness.as_ref(), &args.plan_options())?;
    let plan = &planned.plan;
    let status = plan.status();
    let blocked_why = || {
        plan.blockers
            .iter()
            .filter(|b| !b.overridden)
            .map(|b| b.message.clone())
            .collect::<Vec<_>>()
            .join("; ")
    };
    if args.dry_run {
        if global.json {
            entry.plan = Some(convert::plan_json(plan));
        } else {
            let mut text = String::new();
            if let Some(report) = &unfinished {
                text.push_str(&format!("warning: {report}\n"));
            }
            text.push_str(&convert::render_human(plan, false));
            entry.plan_text = Some(text);
        }
        return Ok(match status {
            PlanStatus::NothingToDo => BatchResult::NothingToDo,
            PlanStatus::Ready => BatchResult::Ready,
            PlanStatus::Blocked => BatchResult::Blocked(blocked_why()),
        });
    }
    match status {
        PlanStatus::NothingToDo => return Ok(BatchResult::NothingToDo),
        PlanStatus::Blocked => return Ok(BatchResult::Blocked(blocked_why())),
        PlanStatus::Ready => {}
    }
    let transition =
        crate::cli::lifecycle::transition_from_plan(planned.original_xml.clone(), plan);
    let l = &args.lifecycle;
    let mut opts =
        lifecycle::LifecycleOptions::new(&std::env::args().collect::<Vec<_>>().join(" "));
    opts.state_dir = state_dir.clone();
    opts.shutdown = lifecycle::shutdown::ShutdownPolicy {
        mode: l.shutdown.shutdown_mode,
        timeout: Duration::from_secs(l.shutdown.shutdown_timeout),
        resend_every: Duration::from_secs(10),
        force_off: l.shutdown.force_off,
    };
    // The batch was confirmed as a whole (or --yes).
    opts.yes = true;
    opts.start = !l.no_start;
    opts.verify_time = (!l.no_verify).then(|| Duration::from_secs(l.verify_time));
    // Several domains at once, or a JSON document on stdout: plain lines, and only the batch's
    // own lines when domains run side by side.
    opts.reporter = lifecycle::progress::Reporter {
        fancy: parallel == 1 && !global.json && std::io::stderr().is_terminal(),
        quiet: global.quiet || parallel > 1,
    };
    if !opts.reporter.quiet {
        eprintln!("== {} ==", entry.domain);
    }
    match lifecycle::execute(conn, &dom, &transition, &opts, interrupt) {
        Ok(outcome) => {
            entry.steps = outcome.steps.clone();
            Ok(match outcome.kind {
                OutcomeKind::RolledBack { reason, running } => BatchResult::RolledBack(format!(
                    "{reason}{}",
                    if running { " (running again)" } else { "" }
                )),
                _ => BatchResult::Converted,
            })
        }
        Err(e @ LifecycleError::Blocked { .. }) => Ok(BatchResult::Blocked(e.to_string())),
        Err(e @ LifecycleError::Interrupted(_)) => Ok(BatchResult::Interrupted(e.to_string())),
        Err(e) => Ok(BatchResult::Failed(e.to_string())),
    }
}
