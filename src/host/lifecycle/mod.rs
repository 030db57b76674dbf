//! The lifecycle: everything that changes a host, in one place.
//!
//! A conversion run is a written state machine; each step is journalled (fsynced) *before* it
//! is taken, so an interrupted run can always be explained afterwards:
//!
//! ```text
//!  lock ─► check (unfinished journal, transient, managed save, blockers, definition unchanged)
//!       ─► backup (persistent INACTIVE|SECURE + live XML + the new XML, fsynced)
//!       ─► confirm (terminal prompt, or --yes)
//!       ─► shutdown (agent/ACPI, re-sent, timeout; --force-off destroys) ── timeout/Ctrl-C ─► aborted, untouched
//!       ─► define (VIR_DOMAIN_DEFINE_VALIDATE) ── fails ─► original guest started again, aborted
//!       ─► start (unless --no-start) ── fails ─► rollback
//!       ─► verify (resets made to stop it from the start; no reset, crash, panic or stop;
//!          the agent answers and keeps answering) ── fails ─► rollback at once
//!       ─► done
//!
//!  rollback: destroy ─► restore (define the backed-up original) ─► start ─► rolled-back
//! ```
//!
//! The planner is not part of this module: [`execute`] takes a [`Transition`] (original XML,
//! new XML, blockers, warnings) however it was made.

pub mod backup;
pub mod clock;
pub mod durable;
pub mod error;
pub mod journal;
pub mod lock;
pub mod progress;
pub mod shutdown;
pub mod verify;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::Domain;

pub use error::LifecycleError;

use backup::{Backup, BackupContent, BackupKind};
use journal::{Journal, RunKind, RunRecord, Step};
use lock::DomainLock;
use progress::Reporter;
use shutdown::{ShutdownPolicy, ShutdownResult};

/// Default verification time. Windows that cannot mount its boot volume on the new bus stops
/// with 0x7B during kernel initialisation: on KVM that is 5-30 s after power-on (firmware 2-10
/// s, the boot manager, winload), plus up to 30 s when the boot manager shows its menu (its
/// default timeout); 120 s is twice the worst of these, for a loaded host (README, `convert`).
pub const DEFAULT_VERIFY_SECS: u64 = 120;

/// Default state directory (locks, backups, journals).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/virtio-migrate";

const XML_PERSISTENT: virt::sys::virDomainXMLFlags =
    virt::sys::VIR_DOMAIN_XML_INACTIVE | virt::sys::VIR_DOMAIN_XML_SECURE;

/// What a conversion changes: the domain's persistent definition before and after, and what
/// the planner found.
#[derive(Debug, Clone)]
pub struct Transition {
    /// The persistent definition the plan was made from (`INACTIVE | SECURE`).
    pub original_xml: String,
    /// The definition to apply.
    pub new_xml: String,
    /// Why the conversion must not run (overridden only by `force`).
    pub blockers: Vec<String>,
    /// What the operator should know.
    pub warnings: Vec<String>,
}

/// How a lifecycle run behaves.
#[derive(Debug, Clone)]
pub struct LifecycleOptions {
    pub state_dir: PathBuf,
    /// Do not ask (scripts).
    pub yes: bool,
    /// Run despite blockers.
    pub force: bool,
    pub shutdown: ShutdownPolicy,
    /// Cold-start the domain after defining (if `false`, it stays off).
    pub start: bool,
    /// Start it also when it was shut off (`--start`); without, a guest that was shut off
    /// stays shut off (and is not verified).
    pub start_if_off: bool,
    /// Verification time; `None` = `--no-verify`.
    pub verify_time: Option<Duration>,
    /// Continue an interrupted conversion instead of refusing.
    pub resume: bool,
    /// The command line, recorded in the lock file, the journal and the backups.
    pub command: String,
    /// Ask on a terminal (false: behave as if there were none).
    pub interactive: bool,
    pub reporter: Reporter,
}

impl LifecycleOptions {
    /// Defaults: state dir, agent-then-ACPI with 300 s timeout, start, verify
    /// [`DEFAULT_VERIFY_SECS`].
    pub fn new(command: &str) -> LifecycleOptions {
        LifecycleOptions {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            yes: false,
            force: false,
            shutdown: ShutdownPolicy {
                mode: shutdown::ShutdownMode::Auto,
                timeout: Duration::from_secs(300),
                resend_every: Duration::from_secs(10),
                force_off: false,
            },
            start: true,
            start_if_off: false,
            verify_time: Some(Duration::from_secs(DEFAULT_VERIFY_SECS)),
            resume: false,
            command: command.to_string(),
            interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
            reporter: Reporter::detect(false),
        }
    }
}

/// How long a step took, and whether that time was spent waiting for the guest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepTiming {
    pub step: &'static str,
    pub secs: f64,
    /// Time spent waiting for the guest (shutdown, verify), not in the tool.
    pub guest_wait: bool,
}

/// How a run ended without an error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum OutcomeKind {
    /// The new definition is in place (and running and verified when asked).
    Converted {
        started: bool,
        verified: bool,
        /// What verification proved, in words (`None`: not verified).
        verification: Option<String>,
    },
    /// Verification (or the start) failed; the original definition was restored.
    RolledBack { reason: String, running: bool },
    /// `rollback`: the backed-up definition is in place again.
    Restored { started: bool },
}

/// The result of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub domain: String,
    pub uuid: String,
    pub backup: String,
    #[serde(flatten)]
    pub kind: OutcomeKind,
    pub steps: Vec<StepTiming>,
    pub journal: PathBuf,
}

impl Outcome {
    /// The human summary: result and step durations.
    pub fn summary(&self) -> String {
        let mut s = match &self.kind {
            OutcomeKind::Converted {
                started,
                verified,
                verification,
            } => format!(
                "{}: converted{}{} (backup {})",
                self.domain,
                if *started {
                    ", started"
                } else {
                    ", not started (--no-start)"
                },
                match (verified, verification) {
                    (true, Some(what)) => format!(", verified: {what}"),
                    (true, None) => ", verified".to_string(),
                    (false, _) if *started => ", not verified (--no-verify)".to_string(),
                    (false, _) => String::new(),
                },
                self.backup
            ),
            OutcomeKind::RolledBack { reason, running } => format!(
                "{}: ROLLED BACK to the original definition (backup {}){}: {reason}",
                self.domain,
                self.backup,
                if *running { ", running again" } else { "" }
            ),
            OutcomeKind::Restored { started } => format!(
                "{}: restored backup {}{}",
                self.domain,
                self.backup,
                if *started { ", started" } else { "" }
            ),
        };
        let tool: f64 = self
            .steps
            .iter()
            .filter(|t| !t.guest_wait)
            .map(|t| t.secs)
            .fold(0.0, |a, b| a + b);
        let guest: f64 = self
            .steps
            .iter()
            .filter(|t| t.guest_wait)
            .map(|t| t.secs)
            .fold(0.0, |a, b| a + b);
        s.push_str("\nsteps:");
        for t in &self.steps {
            s.push_str(&format!(
                "\n  {:<10} {:>8.2}s{}",
                t.step,
                t.secs,
                if t.guest_wait {
                    "  (waiting for the guest)"
                } else {
                    ""
                }
            ));
        }
        s.push_str(&format!(
            "\n  total: {:.2}s in the tool and libvirt, {:.2}s waiting for the guest",
            tool, guest
        ));
        s
    }
}

fn libvirt_failed(step: &'static str, e: virt::error::Error, state: &str) -> LifecycleError {
    LifecycleError::Failed {
        step,
        message: e.to_string(),
        state: state.to_string(),
    }
}

/// Timings of the steps of one run.
struct Timeline {
    steps: Vec<StepTiming>,
}

impl Timeline {
    fn time<T>(&mut self, step: &'static str, guest_wait: bool, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.steps.push(StepTiming {
            step,
            secs: start.elapsed().as_secs_f64(),
            guest_wait,
        });
        out
    }
}

/// A journal write that failed is an error: without the journal the run is not safe.
fn record(
    journal: &mut Journal,
    step: Step,
    detail: impl Into<String>,
) -> Result<(), LifecycleError> {
    let path = journal.path().to_path_buf();
    let detail = detail.into();
    crate::trace!(
        "step {}{}",
        step.as_str(),
        if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        }
    );
    journal
        .record(step, detail)
        .map_err(|e| LifecycleError::io(&path, e))
}

/// The domain's UUID as text.
fn uuid_of(dom: &Domain) -> Result<String, LifecycleError> {
    dom.uuid_string()
        .map_err(|e| libvirt_failed("reading the domain's UUID", e, "nothing was changed"))
}

/// What state a domain with an unfinished run is in, and which command finishes or undoes
/// it.
pub fn describe_unfinished(state_dir: &Path, dom: &Domain, run: &RunRecord) -> String {
    let name = dom.name().unwrap_or_else(|_| "?".to_string());
    let uuid = dom.uuid_string().unwrap_or_default();
    let state = shutdown::state_word(dom);
    let current = dom.xml_desc(XML_PERSISTENT).ok();
    let backup = Backup::load(state_dir, &uuid, run.run()).ok();
    let original = backup.as_ref().and_then(|b| b.persistent_xml().ok());
    let definition = match (&current, &original) {
        (Some(c), Some(o)) if c == o => "the ORIGINAL definition (unchanged)",
        (Some(_), Some(_)) if run.reached(Step::Define) || run.reached(Step::Restore) => {
            if run.kind() == Some(RunKind::Rollback) {
                "a definition the rollback was replacing"
            } else {
                "the NEW definition (defined by the interrupted run)"
            }
        }
        (Some(_), Some(_)) => {
            "a definition that differs from the backup (changed outside this tool?)"
        }
        _ => "an unknown definition (the backup or the domain could not be read)",
    };
    let last = run.last_step().map(Step::as_str).unwrap_or("begin");
    let pid = run.pid().map(|p| format!(" (pid {p})")).unwrap_or_default();
    let kind = match run.kind() {
        Some(RunKind::Rollback) => "rollback",
        Some(RunKind::Resume) => "convert --resume",
        _ => "convert",
    };
    format!(
        "an earlier `{kind}` of {name}{pid} did not finish: its journal ends at step `{last}` \
         (backup {id}). The domain is {state} with {definition}.\n\
         To undo it:   virtio-migrate rollback --domain {name} --backup {id}\n\
         To finish it: virtio-migrate convert --domain {name} --resume",
        id = run.run(),
    )
}

/// When the domain's last run did not finish: what state it is in and which command finishes
/// or undoes it. For every command that looks at a domain (convert, dry runs, scan).
/// A run in progress (its lock is held) is not unfinished: that is a [`LifecycleError::Locked`].
pub fn unfinished_report(state_dir: &Path, dom: &Domain) -> Result<Option<String>, LifecycleError> {
    let uuid = uuid_of(dom)?;
    if let Some(holder) = lock::current_holder(state_dir, &uuid) {
        return Err(LifecycleError::Locked {
            domain: dom.name().unwrap_or_else(|_| uuid.clone()),
            holder,
        });
    }
    let path = journal::journal_path(state_dir, &uuid);
    let run =
        journal::unfinished_run(state_dir, &uuid).map_err(|e| LifecycleError::io(&path, e))?;
    Ok(run.map(|r| describe_unfinished(state_dir, dom, &r)))
}

/// For read-only commands (`scan`, `convert --dry-run`): a warning line when the domain's last
/// run did not finish or a run holds its lock. Says nothing when the state directory does not
/// exist or cannot be read (no root needed then).
pub fn unfinished_warning(state_dir: &Path, dom: &Domain) -> Option<String> {
    if std::fs::read_dir(state_dir).is_err() {
        return None;
    }
    match unfinished_report(state_dir, dom) {
        Ok(Some(report)) => Some(format!("warning: {report}")),
        Ok(None) => None,
        Err(e @ LifecycleError::Locked { .. }) => Some(format!("warning: {e}")),
        Err(_) => None,
    }
}

/// Refuse when the domain has an unfinished run (unless resuming it).
fn check_unfinished(
    opts: &LifecycleOptions,
    dom: &Domain,
    uuid: &str,
    allow: bool,
) -> Result<Option<RunRecord>, LifecycleError> {
    let path = journal::journal_path(&opts.state_dir, uuid);
    let run =
        journal::unfinished_run(&opts.state_dir, uuid).map_err(|e| LifecycleError::io(&path, e))?;
    match run {
        Some(r) if !allow => Err(LifecycleError::Unfinished(describe_unfinished(
            &opts.state_dir,
            dom,
            &r,
        ))),
        other => Ok(other),
    }
}

/// The transition of an interrupted conversion, to finish it with `resume`.
pub fn resume_transition(state_dir: &Path, dom: &Domain) -> Result<Transition, LifecycleError> {
    let uuid = uuid_of(dom)?;
    let path = journal::journal_path(state_dir, &uuid);
    let run = journal::unfinished_run(state_dir, &uuid)
        .map_err(|e| LifecycleError::io(&path, e))?
        .ok_or_else(|| {
            LifecycleError::Refused("there is no unfinished conversion to resume".into())
        })?;
    if run.kind() == Some(RunKind::Rollback) {
        return Err(LifecycleError::Refused(format!(
            "the unfinished run is a rollback: finish it with `virtio-migrate rollback --domain {} --backup {}`",
            dom.name().unwrap_or_default(),
            run.run()
        )));
    }
    let backup =
        Backup::load(state_dir, &uuid, run.run()).map_err(|e| LifecycleError::io(&path, e))?;
    let original_xml = backup
        .persistent_xml()
        .map_err(|e| LifecycleError::io(&backup.dir, e))?;
    let new_xml = backup
        .new_xml()
        .map_err(|e| LifecycleError::io(&backup.dir, e))?
        .ok_or_else(|| LifecycleError::Refused(format!("backup {} has no new.xml", run.run())))?;
    Ok(Transition {
        original_xml,
        new_xml,
        blockers: Vec::new(),
        warnings: Vec::new(),
    })
}

/// Ask the operator (on a terminal), or accept `--yes`; refuse without either.
fn confirm(opts: &LifecycleOptions, question: &str) -> Result<(), LifecycleError> {
    if opts.yes {
        return Ok(());
    }
    if !opts.interactive {
        return Err(LifecycleError::Refused(
            "no terminal to confirm on: pass --yes to run without confirmation".into(),
        ));
    }
    match dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .interact()
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(LifecycleError::NotConfirmed),
        Err(e) => Err(LifecycleError::Refused(format!(
            "cannot ask for confirmation: {e}"
        ))),
    }
}

/// A guest whose `on_poweroff` is not `destroy` would reboot (or stay) instead of stopping
/// after an ACPI shutdown: switch the *running* domain to `destroy` for this shutdown. The
/// persistent definition keeps its own value.
fn prepare_poweroff(
    dom: &Domain,
    live_xml: &str,
    reporter: &Reporter,
) -> Result<(), LifecycleError> {
    let action = roxmltree::Document::parse(live_xml).ok().and_then(|d| {
        d.root_element()
            .children()
            .find(|n| n.has_tag_name("on_poweroff"))
            .and_then(|n| n.text())
            .map(|t| t.trim().to_string())
    });
    let Some(action) = action.filter(|a| a != "destroy") else {
        return Ok(());
    };
    reporter.info(&format!(
        "on_poweroff={action}: a guest shutdown would not stop this domain; setting the running \
         domain's on_poweroff to destroy for this shutdown (the definition keeps its own value)"
    ));
    dom.set_lifecycle_action(
        virt::sys::VIR_DOMAIN_LIFECYCLE_POWEROFF,
        virt::sys::VIR_DOMAIN_LIFECYCLE_ACTION_DESTROY,
        virt::sys::VIR_DOMAIN_AFFECT_LIVE,
    )
    .map_err(|e| {
        LifecycleError::Refused(format!(
            "on_poweroff={action} would turn the shutdown into a {}, and changing it on the running \
             domain failed ({e}); shut the guest down yourself (e.g. `virsh destroy` after the guest \
             OS has stopped) and run again",
            if action.contains("restart") { "reboot" } else { "non-stop" }
        ))
    })
}

/// Run a conversion of `dom` from `t.original_xml` to `t.new_xml`.
pub fn execute(
    conn: &Connect,
    dom: &Domain,
    t: &Transition,
    opts: &LifecycleOptions,
    interrupt: &AtomicBool,
) -> Result<Outcome, LifecycleError> {
    let uri = conn.uri().ok();
    let r = &opts.reporter;
    let mut tl = Timeline { steps: Vec::new() };
    let name = dom
        .name()
        .map_err(|e| libvirt_failed("reading the domain name", e, "nothing was changed"))?;
    let uuid = uuid_of(dom)?;

    // 1. Lock.
    let _lock = tl.time("lock", false, || {
        DomainLock::acquire(&opts.state_dir, &uuid, &name, &opts.command)
    })?;

    // 2. Checks before anything is written.
    let resumed = check_unfinished(opts, dom, &uuid, opts.resume)?;
    if opts.resume && resumed.is_none() {
        return Err(LifecycleError::Refused(format!(
            "{name} has no unfinished conversion to resume"
        )));
    }
    let untouched = "nothing was changed";
    if !dom
        .is_persistent()
        .map_err(|e| libvirt_failed("checking persistence", e, untouched))?
    {
        return Err(LifecycleError::Refused(format!(
            "{name} is transient: it has no persistent definition to change and would vanish when shut down"
        )));
    }
    if dom.has_managed_save(0).unwrap_or(false) {
        return Err(LifecycleError::Refused(format!(
            "{name} has a managed save image, which would resume the old devices: start the domain \
             and shut it down, or remove the image (virsh managedsave-remove {name})"
        )));
    }
    if !t.blockers.is_empty() {
        if !opts.force {
            return Err(LifecycleError::Blocked {
                domain: name,
                blockers: t.blockers.clone(),
            });
        }
        for b in &t.blockers {
            r.warn(&format!("--force overrides the blocker: {b}"));
        }
    }
    for w in &t.warnings {
        r.warn(w);
    }
    let current = dom
        .xml_desc(XML_PERSISTENT)
        .map_err(|e| libvirt_failed("reading the persistent definition", e, untouched))?;
    if resumed.is_none() && current != t.original_xml {
        return Err(LifecycleError::Refused(format!(
            "the persistent definition of {name} changed since the plan was made: plan again"
        )));
    }
    let running =
        !shutdown::is_off(dom).map_err(|e| libvirt_failed("reading the state", e, untouched))?;
    let live_xml = if running {
        Some(
            dom.xml_desc(virt::sys::VIR_DOMAIN_XML_SECURE)
                .map_err(|e| libvirt_failed("reading the live definition", e, untouched))?,
        )
    } else {
        None
    };

    // 3. Confirm, before anything is written: a refused run leaves no backup behind.
    // The power state to come back to: the one recorded with the backup (a resumed run may
    // find the guest already shut down by the run it finishes).
    let was_running = match &resumed {
        Some(run) => Backup::load(&opts.state_dir, &uuid, run.run())
            .map(|b| b.meta.was_running)
            .unwrap_or(running),
        None => running,
    };
    let start_after = if was_running {
        opts.start
    } else {
        opts.start_if_off
    };
    // A resumed run whose guest already runs the new definition (defined by the interrupted
    // run, then started) only verifies it: no second shutdown and start.
    let verify_only = resumed
        .as_ref()
        .is_some_and(|run| run.reached(Step::Define))
        && running
        && disk_targets(&current) == disk_targets(&t.new_xml)
        && live_xml
            .as_deref()
            .is_some_and(|live| disk_targets(live) == disk_targets(&t.new_xml));
    let question = format!(
        "{} {name}{}?",
        if verify_only {
            "Verify (it already runs the new definition; a failure rolls it back)"
        } else if running {
            "Shut down and convert"
        } else {
            "Convert"
        },
        match (was_running, start_after) {
            _ if verify_only => "",
            (true, true) => ", then start it again and verify it",
            (true, false) => ", and leave it shut off (--no-start)",
            (false, true) => ", then start it and verify it (--start)",
            (false, false) => " (it is shut off and stays shut off)",
        }
    );
    confirm(opts, &question)?;
    // The definition may have been edited while the question was open.
    if resumed.is_none()
        && dom
            .xml_desc(XML_PERSISTENT)
            .map_err(|e| libvirt_failed("reading the persistent definition", e, untouched))?
            != current
    {
        return Err(LifecycleError::Refused(format!(
            "the persistent definition of {name} changed while waiting for the confirmation: plan again"
        )));
    }

    // 4. Backup and journal (a resumed run keeps the original run's backup).
    let (mut journal, backup_id) = match &resumed {
        Some(run) => {
            let id = run.run().to_string();
            let j = Journal::begin(
                &opts.state_dir,
                &uuid,
                &id,
                RunKind::Resume,
                &name,
                &opts.command,
            )
            .map_err(|e| LifecycleError::io(&journal::journal_path(&opts.state_dir, &uuid), e))?;
            r.info(&format!("resuming the conversion of {name} (backup {id})"));
            (j, id)
        }
        None => tl.time("backup", false, || -> Result<_, LifecycleError> {
            let root = opts.state_dir.join("backups");
            let (id, dir) = Backup::reserve(&opts.state_dir, &uuid)
                .map_err(|e| LifecycleError::io(&root, e))?;
            let mut j = Journal::begin(
                &opts.state_dir,
                &uuid,
                &id,
                RunKind::Convert,
                &name,
                &opts.command,
            )
            .map_err(|e| LifecycleError::io(&journal::journal_path(&opts.state_dir, &uuid), e))?;
            record(&mut j, Step::Backup, dir.display().to_string())?;
            Backup::write(
                &id,
                &dir,
                &BackupContent {
                    uuid: &uuid,
                    name: &name,
                    kind: BackupKind::BeforeConvert,
                    command: &opts.command,
                    persistent_xml: &current,
                    live_xml: live_xml.as_deref(),
                    new_xml: Some(&t.new_xml),
                    uri: uri.as_deref(),
                },
            )
            .map_err(|e| LifecycleError::io(&dir, e))?;
            r.info(&format!("backup {id} written to {}", dir.display()));
            Ok((j, id))
        })?,
    };
    let outcome = |kind: OutcomeKind, tl: Timeline, journal: &Journal| Outcome {
        domain: name.clone(),
        uuid: uuid.clone(),
        backup: backup_id.clone(),
        kind,
        steps: tl.steps,
        journal: journal.path().to_path_buf(),
    };
    record(
        &mut journal,
        Step::Confirm,
        if opts.yes { "--yes" } else { "confirmed" },
    )?;
    // A run that stops before the definition changes discards its own backup (a resumed
    // run's backup belongs to the run it finishes).
    let own_backup = resumed.is_none().then_some(backup_id.as_str());
    let abort = |journal: &mut Journal, e: LifecycleError| -> LifecycleError {
        abort_untouched(&opts.state_dir, &uuid, own_backup, journal, e, r)
    };

    let mut watch = if verify_only {
        r.info(&format!(
            "{name} already runs the new definition: verifying it (no shutdown, no start)"
        ));
        opts.verify_time.map(|_| verify::ResetWatch::arm(dom))
    } else {
        // 5. Shut down.
        if running {
            if let Some(live) = &live_xml {
                if let Err(e) = prepare_poweroff(dom, live, r) {
                    return Err(abort(&mut journal, e));
                }
            }
            record(
                &mut journal,
                Step::Shutdown,
                format!("{:?}", opts.shutdown.mode),
            )?;
            let result = tl.time("shutdown", true, || {
                shutdown::shut_down(dom, &opts.shutdown, interrupt, r)
            });
            match result {
                Ok(ShutdownResult::ShutOff | ShutdownResult::AlreadyOff) => {}
                Ok(ShutdownResult::ForcedOff) => record(
                    &mut journal,
                    Step::Destroy,
                    "after the shutdown timeout (--force-off)",
                )?,
                Ok(ShutdownResult::TimedOut) => {
                    let e = LifecycleError::ShutdownTimeout {
                        secs: opts.shutdown.timeout.as_secs(),
                    };
                    return Err(abort(&mut journal, e));
                }
                Ok(ShutdownResult::Interrupted) => {
                    let e = LifecycleError::Interrupted(format!(
                        "stopped waiting for the shutdown; the definition is untouched; the guest is {} \
                         (a shutdown request was sent and it may still power off)",
                        shutdown::state_word(dom)
                    ));
                    return Err(abort(&mut journal, e));
                }
                Err(e) => {
                    let state = format!(
                        "the definition is untouched; the guest is {}",
                        shutdown::state_word(dom)
                    );
                    return Err(abort(&mut journal, libvirt_failed("shutdown", e, &state)));
                }
            }
        }

        // 6. Define.
        record(&mut journal, Step::Define, "")?;
        let defined = tl.time("define", false, || {
            conn_of(dom).and_then(|c| {
                c.define_domain_xml_flags(&t.new_xml, virt::sys::VIR_DOMAIN_DEFINE_VALIDATE)
            })
        });
        if let Err(e) = defined {
            // Nothing was defined: bring the original guest back as it was.
            let mut state = "the definition is untouched".to_string();
            if running && start_after {
                record(
                    &mut journal,
                    Step::Start,
                    "the original definition (define failed)",
                )?;
                match dom.create() {
                    Ok(()) => state.push_str("; the original guest was started again"),
                    Err(se) => {
                        state.push_str(&format!("; starting the original guest failed too: {se}"))
                    }
                }
            } else if running {
                state.push_str("; the guest is shut off");
            }
            return Err(abort(&mut journal, libvirt_failed("define", e, &state)));
        }

        // 7. Start: a guest that was running runs again (unless --no-start); one that was shut
        // off stays off unless --start.
        if !start_after {
            let why = if was_running {
                "defined; not started (--no-start)"
            } else {
                "defined; left shut off as it was (--start starts and verifies it)"
            };
            r.info(&format!("{name}: {}", why.trim_start_matches("defined; ")));
            record(&mut journal, Step::Done, why)?;
            return Ok(outcome(
                OutcomeKind::Converted {
                    started: false,
                    verified: false,
                    verification: None,
                },
                tl,
                &journal,
            ));
        }
        record(&mut journal, Step::Start, "")?;
        // With verification every guest reset is made to stop the domain right after the
        // start (verify.rs); without, a plain start.
        let started = tl.time("start", false, || {
            if opts.verify_time.is_some() {
                verify::start_watched(dom).map(Some)
            } else {
                dom.create().map(|()| None)
            }
        });
        match started {
            Ok(w) => w,
            Err(e) => {
                let reason = format!("starting the new definition failed: {e}");
                r.warn(&reason);
                return roll_back_now(
                    dom,
                    &t.original_xml,
                    was_running,
                    reason,
                    &mut journal,
                    &mut tl,
                    r,
                )
                .map(|kind| outcome(kind, tl, &journal));
            }
        }
    };

    // 8. Verify.
    let (Some(verify_time), Some(watch)) = (opts.verify_time, watch.as_mut()) else {
        r.warn("--no-verify: the guest was started but not watched; check it yourself");
        record(
            &mut journal,
            Step::Done,
            "started; not verified (--no-verify)",
        )?;
        return Ok(outcome(
            OutcomeKind::Converted {
                started: true,
                verified: false,
                verification: None,
            },
            tl,
            &journal,
        ));
    };
    let agent = verify::has_agent_channel(&t.new_xml);
    record(
        &mut journal,
        Step::Verify,
        format!(
            "{}s, agent channel: {agent}; {}",
            verify_time.as_secs(),
            watch.describe()
        ),
    )?;
    let report = tl.time("verify", true, || {
        verify::verify(dom, verify_time, agent, watch, interrupt, r)
    });
    if report.interrupted {
        record(
            &mut journal,
            Step::Interrupted,
            "during verification: the new definition is running",
        )?;
        return Err(LifecycleError::Interrupted(format!(
            "verification stopped; {name} runs on the NEW definition. To undo: virtio-migrate rollback \
             --domain {name} --backup {backup_id}; to finish: virtio-migrate convert --domain {name} --resume"
        )));
    }
    if let Some(e) = &report.lost_contact {
        record(
            &mut journal,
            Step::Interrupted,
            format!("lost contact with libvirt during verification: {e}"),
        )?;
        return Err(LifecycleError::Failed {
            step: "verify",
            message: format!("cannot read the state of {name}: {e}"),
            state: format!(
                "the NEW definition is in place and was started, its state is unknown. Check it \
                 (virsh domstate {name}); undo: virtio-migrate rollback --domain {name} --backup {backup_id}; \
                 finish: virtio-migrate convert --domain {name} --resume"
            ),
        });
    }
    if !report.passed {
        let reason = report.failures.join("; ");
        return roll_back_now(
            dom,
            &t.original_xml,
            was_running,
            reason,
            &mut journal,
            &mut tl,
            r,
        )
        .map(|kind| outcome(kind, tl, &journal));
    }

    // 9. Done.
    record(&mut journal, Step::Done, report.proved.clone())?;
    Ok(outcome(
        OutcomeKind::Converted {
            started: true,
            verified: true,
            verification: Some(report.proved.clone()),
        },
        tl,
        &journal,
    ))
}

/// The `(target dev, bus)` of each disk of a domain XML, in order: what tells a running
/// domain's devices (its live XML) apart from another definition's.
fn disk_targets(xml: &str) -> Vec<(String, String)> {
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return Vec::new();
    };
    doc.descendants()
        .filter(|n| n.has_tag_name("target") && n.parent().is_some_and(|p| p.has_tag_name("disk")))
        .map(|n| {
            (
                n.attribute("dev").unwrap_or_default().to_string(),
                n.attribute("bus").unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// End a run that left the definition untouched: journal `aborted` and discard the run's own
/// backup, so that nothing a refused or aborted run wrote is offered by `rollback --list`.
fn abort_untouched(
    state_dir: &Path,
    uuid: &str,
    own_backup: Option<&str>,
    journal: &mut Journal,
    e: LifecycleError,
    r: &Reporter,
) -> LifecycleError {
    if let Err(je) = record(journal, Step::Aborted, e.to_string()) {
        r.warn(&format!("cannot journal the end of the run: {je}"));
    }
    if let Some(id) = own_backup {
        if let Err(be) = Backup::discard(state_dir, uuid, id) {
            r.warn(&format!(
                "cannot remove backup {id} of a run that changed nothing: {be}"
            ));
        }
    }
    e
}

fn conn_of(dom: &Domain) -> Result<Connect, virt::error::Error> {
    dom.connect()
}

/// The automatic rollback: destroy, define the original, start it when it was running before
/// the conversion (a guest started by `--start` goes back to shut off, as it was).
fn roll_back_now(
    dom: &Domain,
    original_xml: &str,
    was_running: bool,
    reason: String,
    journal: &mut Journal,
    tl: &mut Timeline,
    r: &Reporter,
) -> Result<OutcomeKind, LifecycleError> {
    r.warn(&format!("rolling back: {reason}"));
    let start = Instant::now();
    if !shutdown::is_off(dom).unwrap_or(false) {
        record(journal, Step::Destroy, "rollback")?;
        if let Err(e) = dom.destroy() {
            if !shutdown::is_off(dom).unwrap_or(false) {
                return Err(libvirt_failed(
                    "rollback (destroy)",
                    e,
                    "the NEW definition is still in place and running",
                ));
            }
        }
    }
    record(journal, Step::Restore, "")?;
    conn_of(dom)
        .and_then(|c| c.define_domain_xml_flags(original_xml, 0))
        .map_err(|e| {
            libvirt_failed(
                "rollback (define the original)",
                e,
                "the NEW definition is still in place, the guest is shut off",
            )
        })?;
    let running = if was_running {
        record(journal, Step::Start, "the original definition")?;
        match dom.create() {
            Ok(()) => true,
            Err(e) => {
                r.warn(&format!(
                    "the original definition is back but starting it failed: {e}"
                ));
                false
            }
        }
    } else {
        r.info("the original definition is back; the guest stays shut off, as it was");
        false
    };
    record(journal, Step::RolledBack, reason.clone())?;
    tl.steps.push(StepTiming {
        step: "rollback",
        secs: start.elapsed().as_secs_f64(),
        guest_wait: false,
    });
    Ok(OutcomeKind::RolledBack { reason, running })
}

/// Which backup `rollback` restores by default: the one of the domain's unfinished run, else
/// the latest taken before a conversion.
pub fn default_backup(state_dir: &Path, uuid: &str) -> Result<Backup, LifecycleError> {
    let jpath = journal::journal_path(state_dir, uuid);
    if let Some(run) =
        journal::unfinished_run(state_dir, uuid).map_err(|e| LifecycleError::io(&jpath, e))?
    {
        if run.kind() != Some(RunKind::Rollback) {
            if let Ok(b) = Backup::load(state_dir, uuid, run.run()) {
                return Ok(b);
            }
        }
    }
    let root = state_dir.join("backups");
    Backup::list(state_dir, Some(uuid))
        .map_err(|e| LifecycleError::io(&root, e))?
        .into_iter()
        .rev()
        .find(|b| b.meta.kind == BackupKind::BeforeConvert)
        .ok_or_else(|| {
            LifecycleError::Refused(format!(
                "no backup of domain {uuid} under {}",
                root.display()
            ))
        })
}

/// Restore a backed-up persistent definition: shut the guest down if it runs (same handling
/// as convert), define the backup byte for byte, and start it when it was running (at backup
/// time or now) unless `opts.start` is false.
pub fn rollback(
    conn: &Connect,
    dom: &Domain,
    backup: &Backup,
    opts: &LifecycleOptions,
    interrupt: &AtomicBool,
) -> Result<Outcome, LifecycleError> {
    let r = &opts.reporter;
    let mut tl = Timeline { steps: Vec::new() };
    let name = backup.meta.name.clone();
    let uuid = backup.meta.uuid.clone();
    let _lock = tl.time("lock", false, || {
        DomainLock::acquire(&opts.state_dir, &uuid, &name, &opts.command)
    })?;
    let untouched = "nothing was changed";
    let original = backup
        .persistent_xml()
        .map_err(|e| LifecycleError::io(&backup.dir, e))?;
    let running =
        !shutdown::is_off(dom).map_err(|e| libvirt_failed("reading the state", e, untouched))?;
    let current = dom.xml_desc(XML_PERSISTENT).ok();
    // Confirm before anything is written (a refused rollback leaves nothing behind).
    confirm(
        opts,
        &format!(
            "Restore backup {} of {name}{}{}?",
            backup.meta.id,
            if running {
                " (the guest will be shut down)"
            } else {
                ""
            },
            match (backup.meta.was_running, opts.start) {
                (true, true) => ", then start it (it was running when backed up)",
                (true, false) => ", and leave it shut off (--no-start)",
                (false, _) => ", and leave it shut off (it was shut off when backed up)",
            }
        ),
    )?;
    let jpath = journal::journal_path(&opts.state_dir, &uuid);
    let mut journal = Journal::begin(
        &opts.state_dir,
        &uuid,
        &backup.meta.id,
        RunKind::Rollback,
        &name,
        &opts.command,
    )
    .map_err(|e| LifecycleError::io(&jpath, e))?;
    let outcome = |kind: OutcomeKind, tl: Timeline, journal: &Journal| Outcome {
        domain: name.clone(),
        uuid: uuid.clone(),
        backup: backup.meta.id.clone(),
        kind,
        steps: tl.steps,
        journal: journal.path().to_path_buf(),
    };
    // Keep what is replaced, so a rollback can be undone too.
    let mut own_backup = None;
    if let Some(cur) = current.as_deref().filter(|c| *c != original) {
        own_backup = Some(
            tl.time("backup", false, || -> Result<String, LifecycleError> {
                let root = opts.state_dir.join("backups");
                let (id, dir) = Backup::reserve(&opts.state_dir, &uuid)
                    .map_err(|e| LifecycleError::io(&root, e))?;
                record(&mut journal, Step::Backup, dir.display().to_string())?;
                let live = if running {
                    dom.xml_desc(virt::sys::VIR_DOMAIN_XML_SECURE).ok()
                } else {
                    None
                };
                Backup::write(
                    &id,
                    &dir,
                    &BackupContent {
                        uuid: &uuid,
                        name: &name,
                        kind: BackupKind::BeforeRollback,
                        command: &opts.command,
                        persistent_xml: cur,
                        live_xml: live.as_deref(),
                        new_xml: None,
                        uri: conn.uri().ok().as_deref(),
                    },
                )
                .map_err(|e| LifecycleError::io(&dir, e))?;
                r.info(&format!("the replaced definition was saved as backup {id}"));
                Ok(id)
            })?,
        );
    }
    record(
        &mut journal,
        Step::Confirm,
        if opts.yes { "--yes" } else { "confirmed" },
    )?;
    if running {
        if let Ok(live) = dom.xml_desc(virt::sys::VIR_DOMAIN_XML_SECURE) {
            if let Err(e) = prepare_poweroff(dom, &live, r) {
                return Err(abort_untouched(
                    &opts.state_dir,
                    &uuid,
                    own_backup.as_deref(),
                    &mut journal,
                    e,
                    r,
                ));
            }
        }
        record(
            &mut journal,
            Step::Shutdown,
            format!("{:?}", opts.shutdown.mode),
        )?;
        let result = tl.time("shutdown", true, || {
            shutdown::shut_down(dom, &opts.shutdown, interrupt, r)
        });
        let stop = match result {
            Ok(ShutdownResult::ShutOff | ShutdownResult::AlreadyOff) => None,
            Ok(ShutdownResult::ForcedOff) => {
                record(
                    &mut journal,
                    Step::Destroy,
                    "after the shutdown timeout (--force-off)",
                )?;
                None
            }
            Ok(ShutdownResult::TimedOut) => Some(LifecycleError::ShutdownTimeout {
                secs: opts.shutdown.timeout.as_secs(),
            }),
            Ok(ShutdownResult::Interrupted) => Some(LifecycleError::Interrupted(format!(
                "stopped waiting for the shutdown; nothing was restored; the guest is {}",
                shutdown::state_word(dom)
            ))),
            Err(e) => Some(libvirt_failed("shutdown", e, "nothing was restored")),
        };
        if let Some(e) = stop {
            return Err(abort_untouched(
                &opts.state_dir,
                &uuid,
                own_backup.as_deref(),
                &mut journal,
                e,
                r,
            ));
        }
    }
    record(&mut journal, Step::Restore, "")?;
    tl.time("define", false, || {
        conn.define_domain_xml_flags(&original, 0)
    })
    .map_err(|e| libvirt_failed("restore (define)", e, "the definition was not replaced"))?;
    // The state recorded with the backup: running again, or shut off as it was.
    let start = opts.start && backup.meta.was_running;
    if start {
        record(&mut journal, Step::Start, "")?;
        if let Err(e) = tl.time("start", false, || dom.create()) {
            let err = libvirt_failed(
                "start",
                e,
                "the backed-up definition is restored but the guest is shut off",
            );
            record(&mut journal, Step::Aborted, err.to_string())?;
            return Err(err);
        }
    }
    record(&mut journal, Step::RolledBack, "")?;
    Ok(outcome(
        OutcomeKind::Restored { started: start },
        tl,
        &journal,
    ))
}
