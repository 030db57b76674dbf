//! Bring a running guest to `Shutoff`: agent-then-ACPI (or one of them), re-sent while
//! waiting, bounded by a timeout, interruptible; `--force-off` destroys after the timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use virt::domain::{Domain, DomainState};
use virt::enumutil::Enum;

use super::progress::Reporter;

/// How to ask the guest to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShutdownMode {
    /// The guest agent when it answers, else the ACPI power button.
    Auto,
    /// The ACPI power button only.
    Acpi,
    /// The guest agent only.
    Agent,
}

impl ShutdownMode {
    fn flags(self) -> virt::sys::virDomainShutdownFlagValues {
        match self {
            ShutdownMode::Auto => {
                virt::sys::VIR_DOMAIN_SHUTDOWN_GUEST_AGENT
                    | virt::sys::VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN
            }
            ShutdownMode::Acpi => virt::sys::VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN,
            ShutdownMode::Agent => virt::sys::VIR_DOMAIN_SHUTDOWN_GUEST_AGENT,
        }
    }
}

/// How long and how to wait.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownPolicy {
    pub mode: ShutdownMode,
    pub timeout: Duration,
    /// Re-send the request this often (a press sent before the guest listens is lost).
    pub resend_every: Duration,
    /// Destroy the guest when the timeout passes.
    pub force_off: bool,
}

/// How the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownResult {
    /// It was not running.
    AlreadyOff,
    /// The guest powered off.
    ShutOff,
    /// The timeout passed and the guest was destroyed (--force-off).
    ForcedOff,
    /// The timeout passed; the guest is still running.
    TimedOut,
    /// The operator interrupted the wait; the guest may still be shutting down.
    Interrupted,
}

/// Whether the domain is shut off. A state libvirt could not report (the daemon went away,
/// the domain vanished) is an error, never "off".
pub fn is_off(dom: &Domain) -> Result<bool, virt::error::Error> {
    match dom.state()?.0 {
        Enum::Known(DomainState::Shutoff) => Ok(true),
        Enum::Known(_) => Ok(false),
        // virt 0.5 swallows virDomainGetState's error and reports state -1.
        Enum::Unknown(_) => Err(virt::error::Error::last_error()),
    }
}

/// A short word for the domain's state.
pub fn state_word(dom: &Domain) -> String {
    match dom.state() {
        Ok((Enum::Known(s), reason)) => {
            let s = format!("{s:?}").to_lowercase();
            match reason {
                Enum::Known(r) => format!("{s} ({})", format!("{r}").to_lowercase()),
                Enum::Unknown(_) => s,
            }
        }
        Ok((Enum::Unknown(n), _)) => format!("unknown state {n}"),
        Err(e) => format!("unknown ({e})"),
    }
}

fn send(dom: &Domain, mode: ShutdownMode) -> Result<(), virt::error::Error> {
    match dom.shutdown_flags(mode.flags()) {
        Ok(()) => Ok(()),
        // Drivers without shutdown modes (the test driver) take only the default.
        Err(e)
            if mode == ShutdownMode::Auto
                && matches!(
                    e.code(),
                    Enum::Known(virt::error::ErrorNumber::InvalidArg)
                        | Enum::Known(virt::error::ErrorNumber::NoSupport)
                ) =>
        {
            dom.shutdown()
        }
        Err(e) => Err(e),
    }
}

/// Ask the guest to shut down and wait for `Shutoff`.
pub fn shut_down(
    dom: &Domain,
    policy: &ShutdownPolicy,
    interrupt: &AtomicBool,
    reporter: &Reporter,
) -> Result<ShutdownResult, virt::error::Error> {
    if is_off(dom)? {
        return Ok(ShutdownResult::AlreadyOff);
    }
    let start = Instant::now();
    let mut wait = reporter.wait("waiting for the guest to shut down", policy.timeout);
    let mut last_send: Option<Instant> = None;
    let mut sends = 0u32;
    let mut last_error = String::new();
    loop {
        if is_off(dom)? {
            wait.finish(&format!(
                "guest shut down after {:.1}s",
                start.elapsed().as_secs_f64()
            ));
            return Ok(ShutdownResult::ShutOff);
        }
        if interrupt.load(Ordering::SeqCst) {
            wait.finish("interrupted: stopped waiting for the shutdown");
            return Ok(ShutdownResult::Interrupted);
        }
        if start.elapsed() >= policy.timeout {
            if policy.force_off {
                wait.finish(&format!(
                    "no shutdown after {}s: destroying the guest (--force-off)",
                    policy.timeout.as_secs()
                ));
                match dom.destroy() {
                    Ok(()) => {}
                    Err(e) if is_off(dom).unwrap_or(false) => drop(e),
                    Err(e) => return Err(e),
                }
                return Ok(ShutdownResult::ForcedOff);
            }
            wait.finish(&format!(
                "no shutdown after {}s{}",
                policy.timeout.as_secs(),
                if last_error.is_empty() {
                    String::new()
                } else {
                    format!(" (last request failed: {last_error})")
                }
            ));
            return Ok(ShutdownResult::TimedOut);
        }
        if last_send.is_none_or(|t| t.elapsed() >= policy.resend_every) {
            last_send = Some(Instant::now());
            sends += 1;
            match send(dom, policy.mode) {
                Ok(()) => last_error.clear(),
                Err(e) => {
                    // The guest may have stopped between the check and the request.
                    if is_off(dom)? {
                        continue;
                    }
                    last_error = e.to_string();
                }
            }
        }
        wait.tick(
            start.elapsed(),
            &format!(
                "{} request(s) sent{}",
                sends,
                if last_error.is_empty() {
                    ""
                } else {
                    ", last failed"
                }
            ),
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
