//! What the operator sees while the lifecycle runs: an indicatif spinner on a terminal,
//! plain timestamped lines otherwise; everything on stderr.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A line on stderr that never panics: a closed stderr (`2>&1 | head -1`) must not stop a run
/// half-way through changing a host.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Where lifecycle messages go.
#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    /// Spinners (stderr is a terminal).
    pub fancy: bool,
    /// Only errors.
    pub quiet: bool,
}

impl Reporter {
    /// Spinners when stderr is a terminal.
    pub fn detect(quiet: bool) -> Reporter {
        Reporter {
            fancy: std::io::stderr().is_terminal() && !quiet,
            quiet,
        }
    }

    /// A line of information.
    pub fn info(&self, msg: &str) {
        if !self.quiet {
            say!("{msg}");
        }
    }

    /// A warning (shown even with --quiet? no: warnings are part of the normal report).
    pub fn warn(&self, msg: &str) {
        if !self.quiet {
            say!("warning: {msg}");
        }
    }

    /// Start a wait display for `what`, bounded by `limit`.
    pub fn wait(&self, what: &str, limit: Duration) -> Wait {
        let bar = if self.fancy {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            Some(b)
        } else {
            None
        };
        Wait {
            bar,
            what: what.to_string(),
            limit,
            last_line: None,
            quiet: self.quiet,
        }
    }
}

/// An ongoing wait.
pub struct Wait {
    bar: Option<ProgressBar>,
    what: String,
    limit: Duration,
    last_line: Option<u64>,
    quiet: bool,
}

impl Wait {
    /// Show the elapsed time (spinner message, or a plain line every 10 s).
    pub fn tick(&mut self, elapsed: Duration, note: &str) {
        let msg = format!(
            "{}: {}s / {}s{}",
            self.what,
            elapsed.as_secs(),
            self.limit.as_secs(),
            if note.is_empty() {
                String::new()
            } else {
                format!(" ({note})")
            }
        );
        match &self.bar {
            Some(b) => b.set_message(msg),
            None => {
                let slot = elapsed.as_secs() / 10;
                if !self.quiet && self.last_line != Some(slot) {
                    self.last_line = Some(slot);
                    say!("{msg}");
                }
            }
        }
    }

    /// End the wait with a final line.
    pub fn finish(self, msg: &str) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if !self.quiet {
            say!("{msg}");
        }
    }
}
