//! Verification watches the boot itself (real libvirtd, QEMU, the tiny guest): a guest that
//! resets in a loop once its boot disk is on virtio, or panics, is rolled back within seconds
//! of its first reset with the original definition back byte for byte; a guest that stays up
//! passes, and gets its own `on_reboot` back. See tests/support/host.rs for when these run.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::host::{GuestSpec, Host, TestGuest};

const BOOT: Duration = Duration::from_secs(120);

fn tool() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_virtio-migrate"));
    c.args(["-c", support::host::SYSTEM_URI])
        .stdin(Stdio::null());
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn state_dir(guest: &TestGuest<'_>) -> String {
    guest.dir().join("state").display().to_string()
}

/// The serial log from `from` bytes on.
fn serial_since(guest: &TestGuest<'_>, from: u64) -> String {
    let bytes = std::fs::read(&guest.serial).unwrap_or_default();
    String::from_utf8_lossy(bytes.get(from as usize..).unwrap_or_default()).into_owned()
}

fn serial_len(guest: &TestGuest<'_>) -> u64 {
    std::fs::metadata(&guest.serial)
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Convert a guest whose init misbehaves on `vda` (`vmtest.on_virtio_boot=<how>`): the tool must roll
/// back (exit 4) within seconds of the first reset, not after the verify time.
fn caught_and_rolled_back(label: &str, how: &'static str) {
    let Some(host) = Host::acquire(label) else {
        return;
    };
    let spec = GuestSpec {
        cmdline_extra: match how {
            "reboot" => "vmtest.on_virtio_boot=reboot",
            _ => "vmtest.on_virtio_boot=panic",
        },
        ..GuestSpec::ide_e1000()
    };
    let guest = host.guest(label, &spec);
    let (_dom, before) = guest.define_and_boot(BOOT);
    assert!(before.blocks.contains(&"sda".to_string()), "{before:?}");
    let original = guest.inactive_xml();
    let state = state_dir(&guest);
    let from = serial_len(&guest);
    let started = Instant::now();
    let mut child = tool()
        .args([
            "--json",
            "convert",
            "--domain",
            &guest.name,
            "--yes",
            "--state-dir",
            &state,
            "--verify-time",
            "300",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first reset: the guest's own marker, printed right before it resets.
    let marker = format!("VMTEST virtio-boot {how}");
    let mut reset_at = None;
    while reset_at.is_none() {
        if serial_since(&guest, from).contains(&marker) {
            reset_at = Some(Instant::now());
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the guest never reached its {how} on vda"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let ended = Instant::now();
    let err = stderr(&out);
    eprintln!("{err}");
    let reset_at = reset_at.unwrap_or_else(|| {
        assert!(serial_since(&guest, from).contains(&marker), "{err}");
        ended
    });
    let secs = ended.duration_since(reset_at).as_secs_f64();
    eprintln!(
        "MEASURED {how}: first reset to rolled back (tool exit) {secs:.2}s; whole run {:.2}s",
        ended.duration_since(started).as_secs_f64()
    );
    assert_eq!(out.status.code(), Some(4), "{err}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["result"], "rolled-back", "{json}");
    let reason = json["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("reset"), "{reason}");
    assert!(secs < 20.0, "rolled back {secs:.1}s after the first reset");
    // The original definition, byte for byte, running again from IDE.
    assert_eq!(guest.inactive_xml(), original);
    assert!(guest.domain().is_active().unwrap());
    let devices = guest.last_qemu_devices();
    assert!(
        devices.iter().any(|d| d["driver"] == "ide-hd"),
        "{devices:?}"
    );
}

#[test]
fn a_guest_that_resets_in_a_loop_on_virtio_is_rolled_back_at_its_first_reset() {
    caught_and_rolled_back("bootloop", "reboot");
}

#[test]
fn a_guest_that_panics_on_virtio_is_rolled_back_at_its_first_reset() {
    caught_and_rolled_back("panic", "panic");
}

#[test]
fn a_guest_that_stays_up_passes_and_gets_its_on_reboot_back() {
    let Some(host) = Host::acquire("a_guest_that_stays_up_passes_and_gets_its_on_reboot_back")
    else {
        return;
    };
    let guest = host.guest("staysup", &GuestSpec::ide_e1000());
    guest.define_and_boot(BOOT);
    let state = state_dir(&guest);
    let out = tool()
        .args([
            "--json",
            "convert",
            "--domain",
            &guest.name,
            "--yes",
            "--state-dir",
            &state,
            "--verify-time",
            "10",
        ])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["result"], "converted", "{json}");
    // No agent: only "no reset for N s" is claimed.
    let proved = json["verification"].as_str().unwrap_or_default();
    assert!(
        proved.contains("no reset, crash or stop for 10s only"),
        "{json}"
    );
    assert!(
        err.contains("no reset, crash or stop for 10s only"),
        "{err}"
    );
    // The running domain has its own on_reboot again; the definition never had anything else.
    let live = guest.domain().xml_desc(0).unwrap();
    assert!(live.contains("<on_reboot>restart</on_reboot>"), "{live}");
    assert!(guest
        .inactive_xml()
        .contains("<on_reboot>restart</on_reboot>"));
    assert!(guest.domain().is_active().unwrap());
}

#[test]
fn a_shut_off_guest_is_converted_and_left_off_and_rollback_keeps_it_off() {
    let Some(host) =
        Host::acquire("a_shut_off_guest_is_converted_and_left_off_and_rollback_keeps_it_off")
    else {
        return;
    };
    let guest = host.guest("shutoff", &GuestSpec::ide_e1000());
    let dom = guest.define();
    let original = guest.inactive_xml();
    let state = state_dir(&guest);
    let out = tool()
        .args([
            "convert",
            "--domain",
            &guest.name,
            "--yes",
            "--state-dir",
            &state,
        ])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("left shut off as it was"), "{err}");
    assert!(!dom.is_active().unwrap(), "a shut-off guest was started");
    assert!(guest.inactive_xml().contains("bus='virtio'"));

    // The dry run shows the restore's diff and power state, and changes nothing.
    let converted = guest.inactive_xml();
    let out = tool()
        .args([
            "rollback",
            "--domain",
            &guest.name,
            "--dry-run",
            "--state-dir",
            &state,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(text.contains("shut off now: and left shut off"), "{text}");
    assert!(
        text.contains("+      <target dev='hda' bus='ide'/>")
            && text.contains("-      <target dev='vda' bus='virtio'/>"),
        "{text}"
    );
    assert_eq!(guest.inactive_xml(), converted);

    let out = tool()
        .args([
            "rollback",
            "--domain",
            &guest.name,
            "--yes",
            "--state-dir",
            &state,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(guest.inactive_xml(), original);
    assert!(
        !dom.is_active().unwrap(),
        "rollback started a guest that was off"
    );
}

/// A guest with an agent (the tiny guest's test agent, `vmtest.agent=N`) converted with a
/// verify time of `verify`: returns the tool's exit code, its JSON and stderr.
fn convert_with_agent(
    label: &str,
    agent: &'static str,
    verify: &str,
) -> Option<(i32, serde_json::Value, String)> {
    let host = Host::acquire(label)?;
    let spec = GuestSpec {
        agent_channel: true,
        cmdline_extra: agent,
        ..GuestSpec::ide_e1000()
    };
    let guest = host.guest(label, &spec);
    guest.define_and_boot(BOOT);
    let original = guest.inactive_xml();
    let state = state_dir(&guest);
    let out = tool()
        .args([
            "--json",
            "convert",
            &guest.name,
            "--yes",
            "--state-dir",
            &state,
            "--verify-time",
            verify,
        ])
        .output()
        .unwrap();
    let err = stderr(&out);
    eprintln!("{err}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let code = out.status.code().unwrap_or(-1);
    if code == 4 {
        assert_eq!(guest.inactive_xml(), original);
    }
    Some((code, json, err))
}

#[test]
fn an_agent_that_answers_and_keeps_answering_passes() {
    let Some((code, json, err)) = convert_with_agent(
        "an_agent_that_answers_and_keeps_answering_passes",
        "vmtest.agent=0",
        "45",
    ) else {
        return;
    };
    assert_eq!(code, 0, "{err}");
    assert_eq!(json["result"], "converted", "{json}");
    let proved = json["verification"].as_str().unwrap_or_default();
    assert!(
        proved.contains("the guest agent answered and kept answering"),
        "{json}"
    );
}

#[test]
fn an_agent_that_stops_answering_rolls_back() {
    // The agent answers for 25 s after it starts, then goes away (a guest that hangs).
    let Some((code, json, err)) = convert_with_agent(
        "an_agent_that_stops_answering_rolls_back",
        "vmtest.agent=25",
        "180",
    ) else {
        return;
    };
    assert_eq!(code, 4, "{err}");
    assert_eq!(json["result"], "rolled-back", "{json}");
    let reason = json["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("then stopped answering"), "{reason}");
}
