//! `convert` and `rollback` against a real libvirtd with the QEMU driver and the tiny guest
//! (see tests/support/host.rs for when these run, skip or fail).

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::host::{GuestSpec, Host, TestGuest};

const BOOT: Duration = Duration::from_secs(120);

fn tool() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_virtio-migrate"));
    c.args(["-c", support::host::SYSTEM_URI])
        .stdin(Stdio::null());
    c
}

fn run(args: &[&str]) -> Output {
    let out = tool().args(args).output().expect("run virtio-migrate");
    eprintln!(
        "$ virtio-migrate {}\n{}{}(exit {:?})",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code()
    );
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn state_dir(guest: &TestGuest<'_>) -> String {
    guest.dir().join("state").display().to_string()
}

fn is_running(guest: &TestGuest<'_>) -> bool {
    guest.domain().is_active().unwrap()
}

fn drivers(guest: &TestGuest<'_>) -> Vec<String> {
    guest
        .last_qemu_devices()
        .iter()
        .filter_map(|d| d["driver"].as_str().map(str::to_string))
        .collect()
}

fn journal_steps(state: &str, guest: &TestGuest<'_>) -> Vec<String> {
    let uuid = guest.domain().uuid_string().unwrap();
    let path = PathBuf::from(state)
        .join("journal")
        .join(format!("{uuid}.jsonl"));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["step"].as_str().map(str::to_string))
        .collect()
}

/// Wait until the journal holds `step` (the step before it is complete), then SIGKILL.
fn kill_when_journal_reaches(child: &mut Child, state: &str, guest: &TestGuest<'_>, step: &str) {
    let start = Instant::now();
    while !journal_steps(state, guest).iter().any(|s| s == step) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the tool ended ({status}) before reaching {step}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "never reached {step}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

fn print_timings(json: &serde_json::Value) {
    if let Some(steps) = json["steps"].as_array() {
        let line: Vec<String> = steps
            .iter()
            .map(|s| {
                format!(
                    "{}={:.2}s{}",
                    s["step"].as_str().unwrap_or("?"),
                    s["secs"].as_f64().unwrap_or(0.0),
                    if s["guest_wait"].as_bool() == Some(true) {
                        "(guest)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        eprintln!("TIMINGS {}", line.join(" "));
    }
}

#[test]
fn convert_moves_the_ide_boot_disk_and_e1000_to_virtio() {
    let Some(host) = Host::acquire("convert_moves_the_ide_boot_disk_and_e1000_to_virtio") else {
        return;
    };
    let guest = host.guest("convert", &GuestSpec::ide_e1000());
    let (_dom, before) = guest.define_and_boot(BOOT);
    assert!(before.blocks.contains(&"sda".to_string()), "{before:?}");
    let state = state_dir(&guest);
    let mark = guest.serial_mark();
    let out = run(&[
        "--json",
        "convert",
        "--domain",
        &guest.name,
        "--yes",
        "--state-dir",
        &state,
        "--verify-time",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Ready from the verdict alone: no --force, no --nics always.
    let err = stderr(&out);
    assert!(err.contains("plan:     ready"), "{err}");
    assert!(
        err.contains("drivers:  viostor ready") && err.contains("netkvm ready"),
        "{err}"
    );
    assert!(!err.contains("--force"), "{err}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    print_timings(&json);
    assert_eq!(json["result"], "converted");

    // QEMU: the converted disk is virtio-blk-pci with bootindex=1, the data disk has none.
    let devices = guest.last_qemu_devices();
    let blk: Vec<&serde_json::Value> = devices
        .iter()
        .filter(|d| d["driver"] == "virtio-blk-pci")
        .collect();
    assert_eq!(blk.len(), 2, "{devices:?}");
    let boot: Vec<&&serde_json::Value> = blk.iter().filter(|d| d["bootindex"] == 1).collect();
    assert_eq!(boot.len(), 1, "{blk:?}");
    assert_eq!(
        boot[0]["id"], "virtio-disk0",
        "the converted disk (vda) boots: {blk:?}"
    );
    let d = drivers(&guest);
    assert!(d.contains(&"virtio-net-pci".to_string()), "{d:?}");
    assert!(
        !d.contains(&"ide-hd".to_string()) && !d.contains(&"e1000".to_string()),
        "{d:?}"
    );

    // The guest saw virtio disks and a virtio NIC.
    let boots = guest.wait_boots(mark, 1, BOOT);
    let after = boots.last().unwrap();
    assert!(after.blocks.contains(&"vda".to_string()), "{after:?}");
    assert!(
        !after.blocks.iter().any(|b| b.starts_with("sd")),
        "{after:?}"
    );
    assert!(
        after.nets.iter().any(|(_, drv)| drv == "virtio_net"),
        "{after:?}"
    );

    // The persistent definition is the planned one.
    let now = guest.inactive_xml();
    let doc = roxmltree::Document::parse(&now).unwrap();
    let targets: Vec<(String, String)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("target") && n.parent().is_some_and(|p| p.has_tag_name("disk")))
        .map(|n| {
            (
                n.attribute("dev").unwrap().into(),
                n.attribute("bus").unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        targets,
        [
            ("vda".to_string(), "virtio".to_string()),
            ("vdb".to_string(), "virtio".to_string())
        ]
    );
    assert!(now.contains("<model type='virtio'/>"), "{now}");
    assert!(is_running(&guest));
}

#[test]
fn a_guest_ignoring_acpi_times_out_untouched_and_converts_with_force_off() {
    let Some(host) =
        Host::acquire("a_guest_ignoring_acpi_times_out_untouched_and_converts_with_force_off")
    else {
        return;
    };
    let spec = GuestSpec {
        kernel: false,
        ..GuestSpec::ide_e1000()
    };
    let guest = host.guest("noacpi", &spec);
    let dom = guest.define();
    dom.create().unwrap();
    let original = guest.inactive_xml();
    let state = state_dir(&guest);
    let out = run(&[
        "convert",
        "--domain",
        &guest.name,
        "--yes",
        "--state-dir",
        &state,
        "--shutdown-timeout",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("did not shut down within 3s"),
        "{}",
        stderr(&out)
    );
    assert!(is_running(&guest));
    assert_eq!(guest.inactive_xml(), original);
    assert_eq!(
        journal_steps(&state, &guest).last().map(String::as_str),
        Some("aborted")
    );
    // The aborted run leaves no backup for `rollback --list` to offer.
    let list = run(&["rollback", "--list", "--state-dir", &state]);
    assert!(
        String::from_utf8_lossy(&list.stdout).starts_with("no backups"),
        "{}",
        String::from_utf8_lossy(&list.stdout)
    );

    let out = run(&[
        "--json",
        "convert",
        "--domain",
        &guest.name,
        "--yes",
        "--state-dir",
        &state,
        "--shutdown-timeout",
        "3",
        "--force-off",
        "--verify-time",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    print_timings(&json);
    assert!(is_running(&guest));
    assert!(drivers(&guest).contains(&"virtio-blk-pci".to_string()));
    assert!(journal_steps(&state, &guest).contains(&"destroy".to_string()));
}

fn kill_and_roll_back(label: &str, kill_at: &str) {
    let test = format!("kill_-9_{label}");
    let Some(host) = Host::acquire(&test) else {
        return;
    };
    let guest = host.guest(label, &GuestSpec::ide_e1000());
    guest.define_and_boot(BOOT);
    let original = guest.inactive_xml();
    let state = state_dir(&guest);
    let mut child = tool()
        .args([
            "convert",
            "--domain",
            &guest.name,
            "--yes",
            "--state-dir",
            &state,
            "--verify-time",
            "30",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    kill_when_journal_reaches(&mut child, &state, &guest, kill_at);

    // The next command explains the unfinished run and refuses.
    let out = run(&[
        "convert",
        "--domain",
        &guest.name,
        "--yes",
        "--state-dir",
        &state,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("did not finish"), "{err}");
    assert!(
        err.contains(&format!("rollback --domain {}", guest.name)),
        "{err}"
    );

    let mark = guest.serial_mark();
    let out = run(&[
        "rollback",
        "--domain",
        &guest.name,
        "--yes",
        "--state-dir",
        &state,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        guest.inactive_xml(),
        original,
        "byte-identical definition after rollback"
    );
    assert!(is_running(&guest));
    // The original guest boots again from IDE.
    guest.wait_boot_where(mark, BOOT, |b| b.blocks.contains(&"sda".to_string()));
    assert!(drivers(&guest).contains(&"ide-hd".to_string()));
}

#[test]
fn kill_9_after_backup_then_rollback() {
    kill_and_roll_back("after-backup", "confirm");
}

#[test]
fn kill_9_after_shutdown_then_rollback() {
    kill_and_roll_back("after-shutdown", "define");
}

#[test]
fn kill_9_after_define_then_rollback() {
    kill_and_roll_back("after-define", "start");
}

#[test]
fn concurrent_convert_is_refused_and_ctrl_c_leaves_the_definition_untouched() {
    let Some(host) =
        Host::acquire("concurrent_convert_is_refused_and_ctrl_c_leaves_the_definition_untouched")
    else {
        return;
    };
    let spec = GuestSpec {
        kernel: false,
        ..GuestSpec::ide_e1000()
    };
    let guest = host.guest("concurrent", &spec);
    guest.define().create().unwrap();
    let original = guest.inactive_xml();
    let state = state_dir(&guest);
    let first = tool()
        .args([
            "convert",
            "--domain",
            &guest.name,
            "--yes",
            "--state-dir",
            &state,
            "--shutdown-timeout",
            "120",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !journal_steps(&state, &guest).contains(&"shutdown".to_string()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "first run never waited for shutdown"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = run(&[
        "convert",
        "--domain",
        &guest.name,
        "--yes",
        "--state-dir",
        &state,
    ]);
    assert_eq!(second.status.code(), Some(1));
    let err = stderr(&second);
    assert!(
        err.contains("locked by another virtio-migrate run"),
        "{err}"
    );
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");

    // Ctrl-C the first one while it waits for the shutdown.
    let status = Command::new("kill")
        .args(["-INT", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = first.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("definition is untouched"), "{err}");
    assert_eq!(guest.inactive_xml(), original);
    assert!(is_running(&guest));
    assert_eq!(
        journal_steps(&state, &guest).last().map(String::as_str),
        Some("aborted")
    );
    // The aborted run leaves no backup for `rollback --list` to offer.
    let list = run(&["rollback", "--list", "--state-dir", &state]);
    assert!(
        String::from_utf8_lossy(&list.stdout).starts_with("no backups"),
        "{}",
        String::from_utf8_lossy(&list.stdout)
    );
}

#[test]
fn an_agent_channel_without_an_agent_rolls_back_automatically() {
    let Some(host) = Host::acquire("an_agent_channel_without_an_agent_rolls_back_automatically")
    else {
        return;
    };
    let spec = GuestSpec {
        agent_channel: true,
        ..GuestSpec::ide_e1000()
    };
    let guest = host.guest("agent", &spec);
    guest.define_and_boot(BOOT);
    let original = guest.inactive_xml();
    let state = state_dir(&guest);
    let mark = guest.serial_mark();
    let out = run(&[
        "--json",
        "convert",
        "--domain",
        &guest.name,
        "--yes",
        "--state-dir",
        &state,
        "--verify-time",
        "8",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    print_timings(&json);
    assert_eq!(json["result"], "rolled-back");
    assert!(
        json["reason"].as_str().unwrap().contains("guest-ping"),
        "{json}"
    );
    assert_eq!(guest.inactive_xml(), original);
    assert!(is_running(&guest));
    assert!(drivers(&guest).contains(&"ide-hd".to_string()));
    // The original boots on IDE again (the converted boot before it may have been cut short
    // by the rollback's destroy, so it is not waited for).
    guest.wait_boot_where(mark, BOOT, |b| b.blocks.contains(&"sda".to_string()));
    let steps = journal_steps(&state, &guest);
    assert_eq!(
        steps.last().map(String::as_str),
        Some("rolled-back"),
        "{steps:?}"
    );
}

#[test]
fn a_not_ready_boot_disk_is_refused_even_with_force_and_left_untouched() {
    let Some(host) =
        Host::acquire("a_not_ready_boot_disk_is_refused_even_with_force_and_left_untouched")
    else {
        return;
    };
    let spec = GuestSpec::ide_e1000_booting(support::host::NOT_READY_IMAGE);
    let guest = host.guest("notready", &spec);
    guest.define_and_boot(BOOT);
    let original = guest.inactive_xml();
    let state = state_dir(&guest);
    for force in [false, true] {
        let mut args = vec![
            "--json",
            "convert",
            "--domain",
            &guest.name,
            "--yes",
            "--state-dir",
            &state,
        ];
        if force {
            args.push("--force");
        }
        let out = run(&args);
        assert_eq!(
            out.status.code(),
            Some(3),
            "force={force}: {}",
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(err.contains("plan:     blocked"), "{err}");
        assert!(err.contains("viostor not ready"), "{err}");
        assert!(err.contains("Start=0"), "the failing check is named: {err}");
        assert!(err.contains("nothing was changed"), "{err}");
        // --force lists no override of the driver blocker: it is not overridable.
        assert!(!err.contains("overridden by --force"), "{err}");
        assert!(!err.contains("--force overrides"), "{err}");
        assert_eq!(
            guest.inactive_xml(),
            original,
            "force={force}: byte-identical"
        );
        assert!(is_running(&guest), "force={force}");
        // The refusal comes before the backup and the journal: neither exists. (The lock
        // file is taken first and stays, empty of meaning.)
        let st = PathBuf::from(&state);
        assert!(journal_steps(&state, &guest).is_empty());
        assert!(!st.join("journal").exists(), "no journal directory");
        assert!(!st.join("backups").exists(), "no backup directory");
    }
    // Still booted on IDE from the same start: nothing restarted it.
    assert!(drivers(&guest).contains(&"ide-hd".to_string()));
}
