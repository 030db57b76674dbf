//! After the cold start: the domain must stay `Running` (same QEMU process, no crash, no
//! guest panic) for the verify time, and when it has a guest agent channel the agent must
//! answer `guest-ping` within that time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use virt::domain::{Domain, DomainPausedReason, DomainState, DomainStateReason};
use virt::enumutil::Enum;

use super::progress::Reporter;

/// The name of the QEMU guest agent's virtio-serial channel.
pub const AGENT_CHANNEL: &str = "org.qemu.guest_agent.0";

/// Whether a domain XML has a guest agent channel.
pub fn has_agent_channel(xml: &str) -> bool {
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return false;
    };
    doc.descendants().any(|n| {
        n.has_tag_name("target")
            && n.parent().is_some_and(|p| p.has_tag_name("channel"))
            && n.attribute("name") == Some(AGENT_CHANNEL)
    })
}

/// What verification saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub passed: bool,
    /// What went wrong (empty when passed).
    pub failures: Vec<String>,
    /// `Some(true)` the agent answered, `Some(false)` it never did, `None` no channel.
    pub agent_answered: Option<bool>,
    /// The operator interrupted verification.
    pub interrupted: bool,
    /// libvirt could not report the domain's state (daemon gone?): nothing is known.
    pub lost_contact: Option<String>,
    pub observed_secs: f64,
}

fn describe_bad_state(dom: &Domain, first_id: Option<u32>) -> Option<String> {
    let (state, reason) = match dom.state() {
        Ok(s) => s,
        Err(e) => return Some(format!("cannot read the domain state: {e}")),
    };
    match state {
        Enum::Known(DomainState::Running) | Enum::Known(DomainState::Blocked) => {
            if dom.id() != first_id {
                Some("the guest was restarted (new QEMU process): a crash or reset".to_string())
            } else {
                None
            }
        }
        Enum::Known(DomainState::Paused) => match reason {
            Enum::Known(DomainStateReason::Paused(Enum::Known(DomainPausedReason::Crashed))) => {
                Some("guest panic: the domain is paused (panicked)".to_string())
            }
            Enum::Known(DomainStateReason::Paused(Enum::Known(DomainPausedReason::IOError))) => {
                Some("the domain paused on a disk I/O error".to_string())
            }
            _ => Some(format!("the domain is paused ({})", reason_word(reason))),
        },
        Enum::Known(s) => Some(format!(
            "the domain left Running: {} ({})",
            format!("{s:?}").to_lowercase(),
            reason_word(reason)
        )),
        Enum::Unknown(n) => Some(format!("the domain is in unknown state {n}")),
    }
}

fn reason_word(r: virt::domain::DomainStateReasonEnum) -> String {
    match r {
        Enum::Known(r) => format!("{r}").to_lowercase(),
        Enum::Unknown(n) => format!("reason {n}"),
    }
}

/// Watch the started domain for `time`.
pub fn verify(
    dom: &Domain,
    time: Duration,
    agent_channel: bool,
    interrupt: &AtomicBool,
    reporter: &Reporter,
) -> VerifyReport {
    let start = Instant::now();
    let first_id = dom.id();
    let mut wait = reporter.wait("verifying the guest", time);
    let mut failures = Vec::new();
    let mut agent_answered = if agent_channel { Some(false) } else { None };
    let mut last_ping: Option<Instant> = None;
    let mut last_agent_error = String::new();
    let mut interrupted = false;
    let mut lost_contact = None;
    while start.elapsed() < time {
        if interrupt.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        if matches!(dom.state(), Ok((Enum::Unknown(_), _)) | Err(_)) {
            lost_contact = Some(virt::error::Error::last_error().to_string());
            break;
        }
        if let Some(bad) = describe_bad_state(dom, first_id) {
            failures.push(bad);
            break;
        }
        if agent_answered == Some(false)
            && last_ping.is_none_or(|t| t.elapsed() >= Duration::from_secs(3))
        {
            last_ping = Some(Instant::now());
            match dom.qemu_agent_command(r#"{"execute":"guest-ping"}"#, 2, 0) {
                Ok(_) => agent_answered = Some(true),
                Err(e) => last_agent_error = e.message().to_string(),
            }
        }
        wait.tick(
            start.elapsed(),
            match agent_answered {
                Some(true) => "running, agent answered",
                Some(false) => "running, waiting for the guest agent",
                None => "running",
            },
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    if failures.is_empty()
        && !interrupted
        && lost_contact.is_none()
        && agent_answered == Some(false)
    {
        failures.push(format!(
            "the guest has a guest agent channel but the agent did not answer guest-ping within {}s{}",
            time.as_secs(),
            if last_agent_error.is_empty() {
                String::new()
            } else {
                format!(" (last error: {last_agent_error})")
            }
        ));
    }
    let passed = failures.is_empty() && !interrupted && lost_contact.is_none();
    wait.finish(&if passed {
        format!("verified: running for {}s", time.as_secs())
    } else if interrupted {
        "verification interrupted".to_string()
    } else if let Some(e) = &lost_contact {
        format!("verification stopped: cannot read the domain state: {e}")
    } else {
        format!("verification failed: {}", failures.join("; "))
    });
    VerifyReport {
        passed,
        failures,
        agent_answered,
        interrupted,
        lost_contact,
        observed_secs: start.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_agent_channel() {
        let with = "<domain><devices><channel type='unix'><target type='virtio' \
                    name='org.qemu.guest_agent.0'/></channel></devices></domain>";
        let other = "<domain><devices><channel type='spicevmc'><target type='virtio' \
                     name='com.redhat.spice.0'/></channel></devices></domain>";
        assert!(has_agent_channel(with));
        assert!(!has_agent_channel(other));
        assert!(!has_agent_channel("not xml"));
    }
}
