//! `-v`: what the tool is doing, one line at a time on stderr — the connection, each disk image
//! opened, the planning, each lifecycle step — with the seconds since the command started.
//! Every pipeline may say it (this module imports nothing of the crate); nothing is printed
//! unless the command line enabled it.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

static ON: AtomicBool = AtomicBool::new(false);

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Turn the lines on (`-v`) or off.
pub fn enable(on: bool) {
    start();
    ON.store(on, Ordering::SeqCst);
}

/// Whether lines are printed.
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Print one line (a closed stderr drops it: output never stops a run).
pub fn line(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(
        std::io::stderr(),
        "[{:>7.2}s] {args}",
        start().elapsed().as_secs_f64()
    );
}

/// `trace!("opening {}", path)`: a `-v` line.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::trace::on() {
            $crate::trace::line(format_args!($($arg)*));
        }
    };
}
