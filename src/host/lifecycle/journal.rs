//! The on-disk journal: `STATE_DIR/journal/<uuid>.jsonl`, append-only, one JSON line per
//! step written and fsynced *before* the step is taken. A run is finished when its last line
//! is `done`, `aborted` or `rolled-back`; anything else means the run was cut short.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{clock, durable};

/// A step of the lifecycle as the journal names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// A run begins (convert, resume or rollback).
    Begin,
    Backup,
    Confirm,
    /// Asking the guest to shut down and waiting for it.
    Shutdown,
    /// Destroying the guest (after a shutdown timeout with --force-off, or to roll back).
    Destroy,
    /// Defining the new definition.
    Define,
    Start,
    Verify,
    /// Defining the backed-up original definition again.
    Restore,
    /// The run was interrupted (Ctrl-C) at a point where the domain is not as it began.
    Interrupted,
    /// Terminal: the run completed.
    Done,
    /// Terminal: the run stopped with the definition untouched.
    Aborted,
    /// Terminal: the run restored the original definition.
    RolledBack,
}

impl Step {
    /// Whether the step ends a run.
    pub fn is_terminal(self) -> bool {
        matches!(self, Step::Done | Step::Aborted | Step::RolledBack)
    }

    /// The journal's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Begin => "begin",
            Step::Backup => "backup",
            Step::Confirm => "confirm",
            Step::Shutdown => "shutdown",
            Step::Destroy => "destroy",
            Step::Define => "define",
            Step::Start => "start",
            Step::Verify => "verify",
            Step::Restore => "restore",
            Step::Interrupted => "interrupted",
            Step::Done => "done",
            Step::Aborted => "aborted",
            Step::RolledBack => "rolled-back",
        }
    }
}

/// The kind of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    Convert,
    Resume,
    Rollback,
}

/// One journal line.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JournalEntry {
    /// The run's id (the id of the backup it restores to).
    pub run: String,
    pub seq: u32,
    pub time: String,
    pub pid: u32,
    pub step: Step,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<RunKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// The journal of one run, open for appending.
pub struct Journal {
    file: File,
    path: PathBuf,
    run: String,
    seq: u32,
}

/// The path of a domain's journal.
pub fn journal_path(state_dir: &Path, uuid: &str) -> PathBuf {
    state_dir.join("journal").join(format!("{uuid}.jsonl"))
}

impl Journal {
    /// Open the domain's journal and write the run's `begin` line.
    pub fn begin(
        state_dir: &Path,
        uuid: &str,
        run: &str,
        kind: RunKind,
        domain: &str,
        command: &str,
    ) -> io::Result<Journal> {
        let path = journal_path(state_dir, uuid);
        if let Some(dir) = path.parent() {
            durable::create_dir(dir)?;
        }
        let existed = path.exists();
        let file = OpenOptions::new().append(true).create(true).open(&path)?;
        if !existed {
            if let Some(dir) = path.parent() {
                durable::sync_dir(dir)?;
            }
        }
        let mut j = Journal {
            file,
            path,
            run: run.to_string(),
            seq: 0,
        };
        j.write(JournalEntry {
            kind: Some(kind),
            domain: Some(domain.to_string()),
            command: Some(command.to_string()),
            ..j.entry(Step::Begin, String::new())
        })?;
        Ok(j)
    }

    fn entry(&self, step: Step, detail: String) -> JournalEntry {
        JournalEntry {
            run: self.run.clone(),
            seq: self.seq,
            time: clock::rfc3339(SystemTime::now()),
            pid: std::process::id(),
            step,
            detail,
            kind: None,
            domain: None,
            command: None,
        }
    }

    fn write(&mut self, e: JournalEntry) -> io::Result<()> {
        let mut line = serde_json::to_string(&e).map_err(io::Error::other)?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()?;
        self.seq += 1;
        Ok(())
    }

    /// Record a step (before taking it).
    pub fn record(&mut self, step: Step, detail: impl Into<String>) -> io::Result<()> {
        let e = self.entry(step, detail.into());
        self.write(e)
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The lines of one run.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub entries: Vec<JournalEntry>,
}

impl RunRecord {
    /// The run id.
    pub fn run(&self) -> &str {
        self.entries.first().map(|e| e.run.as_str()).unwrap_or("")
    }
    /// The kind from the `begin` line.
    pub fn kind(&self) -> Option<RunKind> {
        self.entries.first().and_then(|e| e.kind)
    }
    /// The last step recorded.
    pub fn last_step(&self) -> Option<Step> {
        self.entries.last().map(|e| e.step)
    }
    /// Whether the run reached a terminal line.
    pub fn finished(&self) -> bool {
        self.last_step().is_some_and(Step::is_terminal)
    }
    /// Whether a step was recorded (i.e. at least begun).
    pub fn reached(&self, step: Step) -> bool {
        self.entries.iter().any(|e| e.step == step)
    }
    /// The pid that ran it.
    pub fn pid(&self) -> Option<u32> {
        self.entries.first().map(|e| e.pid)
    }
}

/// Every run in a domain's journal, oldest first. A torn last line (the process died while
/// writing it) is skipped.
pub fn read_runs(state_dir: &Path, uuid: &str) -> io::Result<Vec<RunRecord>> {
    let path = journal_path(state_dir, uuid);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut runs: Vec<RunRecord> = Vec::new();
    for line in text.lines() {
        let Ok(e) = serde_json::from_str::<JournalEntry>(line) else {
            continue;
        };
        if e.step == Step::Begin {
            runs.push(RunRecord { entries: vec![e] });
        } else if let Some(r) = runs.last_mut().filter(|r| r.run() == e.run) {
            r.entries.push(e);
        }
    }
    Ok(runs)
}

/// The domain's last run, if it did not finish.
pub fn unfinished_run(state_dir: &Path, uuid: &str) -> io::Result<Option<RunRecord>> {
    Ok(read_runs(state_dir, uuid)?.pop().filter(|r| !r.finished()))
}
