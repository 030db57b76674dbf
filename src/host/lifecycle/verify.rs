//! After the cold start: watch the boot itself for the verify time.
//!
//! What a boot loop looks like from the host: Windows that cannot mount its boot volume stops
//! with 0x7B INACCESSIBLE_BOOT_DEVICE and, with `CrashControl\AutoReboot = 1` (the default),
//! resets. QEMU handles a guest reset inside the same process, so the domain stays `Running`
//! with the same id and its CPU time keeps growing: polling the state cannot see it. libvirt
//! sees it (a `reboot` event), but the `virt` crate (0.5) wraps no domain event registration
//! (`virConnectDomainEventRegisterAny` needs a callback through FFI, and this crate forbids
//! unsafe code).
//!
//! So verify makes every reset *visible in the state*: while it watches, the running domain's
//! `on_reboot` is `destroy` (`virDomainSetLifecycleAction(…, VIR_DOMAIN_AFFECT_LIVE)`; on QEMU
//! ≥ 6.0 libvirt applies it with QMP `set-action reboot=shutdown`), so a guest reset — reboot,
//! triple fault, a bugcheck with AutoReboot, a watchdog reset, a Linux `panic=N` — stops the
//! domain (`Shutoff`, reason `shutdown`) instead of restarting it. The watch is armed right
//! after the start, milliseconds before the firmware could even reach a boot loader, so not
//! even the first reset escapes. `on_crash` restart actions become `destroy` the same way (a panic device
//! then stops it too). When verification passes (or is interrupted) the running domain gets
//! its own actions back; the persistent definition is never touched (`AFFECT_LIVE` only).
//!
//! Polling stays the fallback: when the driver cannot change the actions of a running domain,
//! verify still catches a crash, a pause (panic, I/O error), a stop and a new QEMU process,
//! and says that resets were not watched.
//!
//! With a guest agent channel the agent must answer `guest-ping` and keep answering until the
//! end (two failed pings in a row after it answered, or a failed last ping, fail
//! verification). Without one only "no reset, crash or stop for N s" is proved.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use virt::domain::{
    Domain, DomainPausedReason, DomainShutoffReason, DomainState, DomainStateReason,
};
use virt::enumutil::Enum;

use super::progress::Reporter;

/// The name of the QEMU guest agent's virtio-serial channel.
pub const AGENT_CHANNEL: &str = "org.qemu.guest_agent.0";

/// How often the agent is pinged.
const PING_EVERY: Duration = Duration::from_secs(3);
/// How often the state is read.
const POLL_EVERY: Duration = Duration::from_millis(200);

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

/// The `<on_reboot>` and `<on_crash>` of a (live) domain XML, as written (libvirt's default
/// when absent: `restart` and `destroy`).
fn lifecycle_actions(xml: &str) -> (String, String) {
    let get = |tag: &str, default: &str| {
        roxmltree::Document::parse(xml)
            .ok()
            .and_then(|d| {
                d.root_element()
                    .children()
                    .find(|n| n.has_tag_name(tag))
                    .and_then(|n| n.text())
                    .map(|t| t.trim().to_string())
            })
            .unwrap_or_else(|| default.to_string())
    };
    (get("on_reboot", "restart"), get("on_crash", "destroy"))
}

fn action_code(word: &str) -> Option<virt::sys::virDomainLifecycleAction> {
    Some(match word {
        "destroy" => virt::sys::VIR_DOMAIN_LIFECYCLE_ACTION_DESTROY,
        "restart" => virt::sys::VIR_DOMAIN_LIFECYCLE_ACTION_RESTART,
        "rename-restart" => virt::sys::VIR_DOMAIN_LIFECYCLE_ACTION_RESTART_RENAME,
        "preserve" => virt::sys::VIR_DOMAIN_LIFECYCLE_ACTION_PRESERVE,
        "coredump-destroy" => virt::sys::VIR_DOMAIN_LIFECYCLE_ACTION_COREDUMP_DESTROY,
        "coredump-restart" => virt::sys::VIR_DOMAIN_LIFECYCLE_ACTION_COREDUMP_RESTART,
        _ => return None,
    })
}

/// How resets are watched: which live actions verify changed (to give back), or why it could
/// not change them.
#[derive(Debug, Clone, Default)]
pub struct ResetWatch {
    /// `(kind, word)` of each live action changed, with the value to restore.
    changed: Vec<(virt::sys::virDomainLifecycle, String)>,
    /// Every guest reset stops the domain while this watch is armed.
    pub resets_stop: bool,
    /// Why resets are not watched (the driver refused the live change).
    pub not_watched: Option<String>,
}

impl ResetWatch {
    /// Make every guest reset stop the running domain `dom` (see the module documentation).
    pub fn arm(dom: &Domain) -> ResetWatch {
        let mut w = ResetWatch::default();
        let live = match dom.xml_desc(0) {
            Ok(x) => x,
            Err(e) => {
                w.not_watched = Some(format!("cannot read the live definition: {e}"));
                return w;
            }
        };
        let (on_reboot, on_crash) = lifecycle_actions(&live);
        if on_reboot == "destroy" {
            w.resets_stop = true;
        } else {
            match dom.set_lifecycle_action(
                virt::sys::VIR_DOMAIN_LIFECYCLE_REBOOT,
                virt::sys::VIR_DOMAIN_LIFECYCLE_ACTION_DESTROY,
                virt::sys::VIR_DOMAIN_AFFECT_LIVE,
            ) {
                Ok(()) => {
                    w.resets_stop = true;
                    w.changed
                        .push((virt::sys::VIR_DOMAIN_LIFECYCLE_REBOOT, on_reboot));
                }
                Err(e) => {
                    w.not_watched = Some(format!(
                        "libvirt cannot set on_reboot=destroy on the running domain ({})",
                        e.message()
                    ))
                }
            }
        }
        // A panic device with a restart action would reset the guest in place: stop it instead.
        if on_crash.contains("restart")
            && dom
                .set_lifecycle_action(
                    virt::sys::VIR_DOMAIN_LIFECYCLE_CRASH,
                    virt::sys::VIR_DOMAIN_LIFECYCLE_ACTION_DESTROY,
                    virt::sys::VIR_DOMAIN_AFFECT_LIVE,
                )
                .is_ok()
        {
            w.changed
                .push((virt::sys::VIR_DOMAIN_LIFECYCLE_CRASH, on_crash));
        }
        w
    }

    /// What the running domain's actions were changed to, for the journal.
    pub fn describe(&self) -> String {
        match (&self.not_watched, self.changed.is_empty()) {
            (Some(why), _) => format!("resets not watched: {why}"),
            (None, true) => "resets stop the domain (its on_reboot is destroy)".to_string(),
            (None, false) => {
                let names: Vec<String> = self
                    .changed
                    .iter()
                    .map(|(k, was)| format!("{}={was}->destroy", kind_word(*k)))
                    .collect();
                format!(
                    "running domain changed while verifying: {}",
                    names.join(", ")
                )
            }
        }
    }

    /// Give the running domain its own actions back (no-op when it is not running).
    pub fn disarm(&mut self, dom: &Domain) -> Result<(), String> {
        if self.changed.is_empty() || !dom.is_active().unwrap_or(false) {
            self.changed.clear();
            return Ok(());
        }
        let mut errors = Vec::new();
        for (kind, was) in self.changed.drain(..) {
            let Some(code) = action_code(&was) else {
                errors.push(format!("{}: unknown action {was}", kind_word(kind)));
                continue;
            };
            if let Err(e) = dom.set_lifecycle_action(kind, code, virt::sys::VIR_DOMAIN_AFFECT_LIVE)
            {
                errors.push(format!(
                    "{}={was}: {} (fix: virsh set-lifecycle-action DOMAIN {} {was} --live)",
                    kind_word(kind),
                    e.message(),
                    if kind == virt::sys::VIR_DOMAIN_LIFECYCLE_REBOOT {
                        "reboot"
                    } else {
                        "crash"
                    }
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "could not give the running domain its own lifecycle actions back: {}",
                errors.join("; ")
            ))
        }
    }
}

fn kind_word(kind: virt::sys::virDomainLifecycle) -> &'static str {
    match kind {
        virt::sys::VIR_DOMAIN_LIFECYCLE_REBOOT => "on_reboot",
        virt::sys::VIR_DOMAIN_LIFECYCLE_CRASH => "on_crash",
        _ => "on_poweroff",
    }
}

/// Start `dom` and arm the reset watch at once: the watch is in place within milliseconds of
/// the start, long before firmware and boot loader could get a guest to its first reset.
///
/// (Starting paused and resuming after arming would close even that window, but a run killed
/// between the two — kill -9, a lost ssh session — would leave a paused guest that no ACPI
/// shutdown can stop: the next `rollback` would wait for its shutdown timeout.)
pub fn start_watched(dom: &Domain) -> Result<ResetWatch, virt::error::Error> {
    dom.create()?;
    Ok(ResetWatch::arm(dom))
}

/// What verification saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub passed: bool,
    /// What went wrong (empty when passed).
    pub failures: Vec<String>,
    /// `Some(true)` the agent answered (and kept answering), `Some(false)` it did not, `None`
    /// no channel.
    pub agent_answered: Option<bool>,
    /// Guest resets stopped the domain while watching (so a reset could not go unseen).
    pub resets_watched: bool,
    /// What a pass proves, in words (also said when it failed: what was being checked).
    pub proved: String,
    /// Seconds after the start when the failure was seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_after_secs: Option<f64>,
    /// The operator interrupted verification.
    pub interrupted: bool,
    /// libvirt could not report the domain's state (daemon gone?): nothing is known.
    pub lost_contact: Option<String>,
    pub observed_secs: f64,
    /// A note the operator must read (e.g. the live actions could not be given back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn describe_bad_state(dom: &Domain, first_id: Option<u32>, resets_stop: bool) -> Option<String> {
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
        Enum::Known(DomainState::Shutoff) => Some(match reason {
            Enum::Known(DomainStateReason::Shutoff(Enum::Known(DomainShutoffReason::Shutdown)))
                if resets_stop =>
            {
                "the guest reset or powered itself off (a reboot loop looks like this: Windows \
                 resets after a 0x7B INACCESSIBLE_BOOT_DEVICE bugcheck when \
                 CrashControl\\AutoReboot=1)"
                    .to_string()
            }
            Enum::Known(DomainStateReason::Shutoff(Enum::Known(DomainShutoffReason::Shutdown))) => {
                "the guest powered itself off".to_string()
            }
            Enum::Known(DomainStateReason::Shutoff(Enum::Known(DomainShutoffReason::Crashed))) => {
                "the guest crashed (a guest panic stopped the domain)".to_string()
            }
            Enum::Known(DomainStateReason::Shutoff(Enum::Known(
                DomainShutoffReason::Destroyed,
            ))) => "the domain was destroyed (outside this run?)".to_string(),
            Enum::Known(DomainStateReason::Shutoff(Enum::Known(DomainShutoffReason::Failed))) => {
                "QEMU failed: the domain stopped".to_string()
            }
            _ => format!("the domain stopped ({})", reason_word(reason)),
        }),
        Enum::Known(DomainState::Crashed) => {
            Some(format!("the guest crashed ({})", reason_word(reason)))
        }
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

/// The guest agent's answers while verifying.
#[derive(Debug, Default)]
struct AgentWatch {
    first_answer: Option<Duration>,
    /// Failed pings in a row since the last answer.
    misses: u32,
    last_ping: Option<Instant>,
    last_error: String,
}

impl AgentWatch {
    fn ping(&mut self, dom: &Domain, elapsed: Duration) -> bool {
        self.last_ping = Some(Instant::now());
        match dom.qemu_agent_command(r#"{"execute":"guest-ping"}"#, 2, 0) {
            Ok(_) => {
                self.first_answer.get_or_insert(elapsed);
                self.misses = 0;
                true
            }
            Err(e) => {
                self.misses += 1;
                self.last_error = e.message().to_string();
                false
            }
        }
    }

    fn stopped_answering(&self) -> Option<String> {
        let first = self.first_answer?;
        (self.misses >= 2).then(|| {
            format!(
                "the guest agent answered {:.0}s after the start, then stopped answering \
                 ({} pings in a row failed: {})",
                first.as_secs_f64(),
                self.misses,
                self.last_error
            )
        })
    }
}

/// What a verification of `time` with (or without) an agent proves, in words.
pub fn proof_words(time: Duration, agent: bool, resets_watched: bool) -> String {
    let secs = time.as_secs();
    match (agent, resets_watched) {
        (true, true) => format!(
            "no reset, crash or stop for {secs}s, and the guest agent answered and kept answering"
        ),
        (true, false) => format!(
            "no crash or stop for {secs}s and the guest agent answered and kept answering \
             (resets were not watched)"
        ),
        (false, true) => format!(
            "no reset, crash or stop for {secs}s only: no guest agent, so nothing says the guest \
             OS finished booting"
        ),
        (false, false) => format!(
            "no crash or stop for {secs}s only: no guest agent, and resets were not watched \
             (a reboot loop would pass)"
        ),
    }
}

/// Watch the started domain for `time`. `watch` comes from [`start_watched`] (or
/// [`ResetWatch::arm`] on a domain already running); it is disarmed here unless verification
/// failed (the rollback destroys the domain then).
pub fn verify(
    dom: &Domain,
    time: Duration,
    agent_channel: bool,
    watch: &mut ResetWatch,
    interrupt: &AtomicBool,
    reporter: &Reporter,
) -> VerifyReport {
    let start = Instant::now();
    let first_id = dom.id();
    let mut wait = reporter.wait("verifying the guest", time);
    let mut failures = Vec::new();
    let mut failed_after = None;
    let mut agent = AgentWatch::default();
    let mut interrupted = false;
    let mut lost_contact = None;
    if let Some(why) = &watch.not_watched {
        reporter.warn(&format!(
            "a guest reset cannot be seen during this verification: {why}"
        ));
    }
    while start.elapsed() < time {
        if interrupt.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        if matches!(dom.state(), Ok((Enum::Unknown(_), _)) | Err(_)) {
            lost_contact = Some(virt::error::Error::last_error().to_string());
            break;
        }
        if let Some(bad) = describe_bad_state(dom, first_id, watch.resets_stop) {
            failed_after = Some(start.elapsed().as_secs_f64());
            failures.push(format!(
                "{bad}, {:.1}s after the start",
                start.elapsed().as_secs_f64()
            ));
            break;
        }
        if agent_channel && agent.last_ping.is_none_or(|t| t.elapsed() >= PING_EVERY) {
            agent.ping(dom, start.elapsed());
            if let Some(why) = agent.stopped_answering() {
                failed_after = Some(start.elapsed().as_secs_f64());
                failures.push(why);
                break;
            }
        }
        wait.tick(
            start.elapsed(),
            match (agent_channel, agent.first_answer) {
                (true, Some(_)) => "running, agent answers",
                (true, None) => "running, waiting for the guest agent",
                (false, _) => "running, no reset",
            },
        );
        std::thread::sleep(POLL_EVERY);
    }
    let clean = failures.is_empty() && !interrupted && lost_contact.is_none();
    if clean && agent_channel {
        // The last word: the agent answers now.
        let answered = agent.ping(dom, start.elapsed());
        if agent.first_answer.is_none() {
            failures.push(format!(
                "the guest has a guest agent channel but the agent did not answer guest-ping within {}s{}",
                time.as_secs(),
                if agent.last_error.is_empty() {
                    String::new()
                } else {
                    format!(" (last error: {})", agent.last_error)
                }
            ));
        } else if !answered {
            failures.push(format!(
                "the guest agent stopped answering at the end of the verify time ({})",
                agent.last_error
            ));
        }
    }
    let passed = failures.is_empty() && !interrupted && lost_contact.is_none();
    let mut note = None;
    if passed || interrupted {
        if let Err(e) = watch.disarm(dom) {
            reporter.warn(&e);
            note = Some(e);
        }
    }
    let proved = proof_words(time, agent_channel, watch.resets_stop);
    wait.finish(&if passed {
        format!("verified: {proved}")
    } else if interrupted {
        "verification interrupted".to_string()
    } else if let Some(e) = &lost_contact {
        format!("verification stopped: cannot read the domain state: {e}")
    } else {
        format!("verification FAILED: {}", failures.join("; "))
    });
    VerifyReport {
        passed,
        failures,
        agent_answered: agent_channel.then_some(agent.first_answer.is_some()),
        resets_watched: watch.resets_stop,
        proved,
        failed_after_secs: failed_after,
        interrupted,
        lost_contact,
        observed_secs: start.elapsed().as_secs_f64(),
        note,
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

    #[test]
    fn reads_the_lifecycle_actions_with_libvirt_defaults() {
        assert_eq!(
            lifecycle_actions("<domain><on_reboot>destroy</on_reboot></domain>"),
            ("destroy".to_string(), "destroy".to_string())
        );
        assert_eq!(
            lifecycle_actions("<domain><on_crash> restart </on_crash></domain>"),
            ("restart".to_string(), "restart".to_string())
        );
        for w in [
            "destroy",
            "restart",
            "preserve",
            "coredump-restart",
            "rename-restart",
        ] {
            assert!(action_code(w).is_some(), "{w}");
        }
        assert!(action_code("reboot").is_none());
    }

    #[test]
    fn says_what_a_pass_proves() {
        let t = Duration::from_secs(120);
        assert!(proof_words(t, false, true).contains("no reset, crash or stop for 120s only"));
        assert!(proof_words(t, true, true).contains("kept answering"));
        assert!(proof_words(t, false, false).contains("a reboot loop would pass"));
    }
}
