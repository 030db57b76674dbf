//! What the dry run says about what verification will trip on: a guest agent channel whose
//! guest has no QEMU guest agent service (read from the hives) is a warning, and a hibernated
//! Windows (or Fast Startup) is a blocker that `--force` overrides.

use std::path::Path;

use virtio_migrate::inspect::windows::QemuGa;
use virtio_migrate::plan::{
    plan, BlockerKind, GuestReadiness, HostFacts, PlanOptions, PlanStatus, Readiness, WarningKind,
};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/domains")
        .join(format!("{name}.xml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ready(qemu_ga: Option<QemuGa>, hibernated: Option<&str>) -> GuestReadiness {
    GuestReadiness {
        blk: Readiness::Ready,
        scsi: Readiness::Ready,
        nic: Readiness::Ready,
        hazards: Vec::new(),
        hibernated: hibernated.map(str::to_string),
        qemu_ga,
    }
}

#[test]
fn an_agent_channel_without_the_agent_service_is_a_warning() {
    // win2k8r2 has an org.qemu.guest_agent.0 channel.
    let xml = fixture("win2k8r2");
    assert!(xml.contains("org.qemu.guest_agent.0"));
    let host = HostFacts::default();
    let opts = PlanOptions::default();
    let warned = |ga| {
        plan(&xml, Some(&ready(ga, None)), &host, &opts)
            .unwrap()
            .warnings
            .into_iter()
            .find(|w| w.kind == WarningKind::AgentMissing)
    };
    let w = warned(Some(QemuGa::Absent)).expect("a warning for a missing agent");
    assert!(
        w.message.contains("has no QEMU guest agent service"),
        "{}",
        w.message
    );
    assert!(w.message.contains(r"Services\QEMU-GA"), "{}", w.message);
    assert!(w.message.contains("roll back"), "{}", w.message);
    assert!(warned(Some(QemuGa::Installed { start: Some(4) }))
        .expect("a disabled agent warns too")
        .message
        .contains("service disabled"));
    assert!(warned(Some(QemuGa::Installed { start: Some(2) })).is_none());
    // Hives not read: nothing is claimed.
    assert!(warned(None).is_none());
    // No channel, no warning.
    let without = fixture("win2003");
    assert!(!without.contains("org.qemu.guest_agent.0"));
    let p = plan(
        &without,
        Some(&ready(Some(QemuGa::Absent), None)),
        &host,
        &opts,
    )
    .unwrap();
    assert!(!p
        .warnings
        .iter()
        .any(|w| w.kind == WarningKind::AgentMissing));
}

#[test]
fn hibernation_blocks_unless_forced() {
    let xml = fixture("win2003");
    let host = HostFacts::default();
    let evidence = r"\hiberfil.sys starts with hibr";
    let p = plan(
        &xml,
        Some(&ready(None, Some(evidence))),
        &host,
        &PlanOptions::default(),
    )
    .unwrap();
    assert_eq!(p.status(), PlanStatus::Blocked);
    let b = p
        .blockers
        .iter()
        .find(|b| b.kind == BlockerKind::Hibernated)
        .expect("a hibernation blocker");
    assert!(b.overridable && !b.overridden);
    assert!(b.message.contains(evidence), "{}", b.message);
    let forced = plan(
        &xml,
        Some(&ready(None, Some(evidence))),
        &host,
        &PlanOptions {
            force: true,
            ..PlanOptions::default()
        },
    )
    .unwrap();
    assert_eq!(forced.status(), PlanStatus::Ready);
    assert!(forced
        .blockers
        .iter()
        .any(|b| b.kind == BlockerKind::Hibernated && b.overridden));
}

/// `Services\QEMU-GA` is read from the guest's SYSTEM hive: a copy of a fixture hive with the
/// service merged in by hivexregedit (the real tool) reads as installed, the fixture as absent.
#[test]
fn the_qemu_ga_service_is_read_from_the_system_hive() {
    use std::sync::Arc;
    use virtio_migrate::inspect::hive::Hive;
    use virtio_migrate::inspect::windows::WindowsFacts;

    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hives/win2016-ready");
    let open =
        |path: &Path| Hive::open(Arc::new(std::fs::read(path).unwrap()), None, None).unwrap();
    let software = open(&src.join("SOFTWARE"));
    let facts = WindowsFacts::read(&open(&src.join("SYSTEM")), &software).unwrap();
    assert_eq!(facts.qemu_ga, QemuGa::Absent);

    if std::process::Command::new("hivexregedit")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!("skipping the installed case: hivexregedit is not installed (libwin-hivex-perl)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let system = dir.path().join("SYSTEM");
    std::fs::copy(src.join("SYSTEM"), &system).unwrap();
    let reg = dir.path().join("qemu-ga.reg");
    // The current control set of this fixture is 2 (Select\Current).
    std::fs::write(
        &reg,
        "Windows Registry Editor Version 5.00\r\n\r\n\
         [HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet002\\Services\\QEMU-GA]\r\n\
         \"Start\"=dword:00000002\r\n\
         \"DisplayName\"=\"QEMU Guest Agent\"\r\n\r\n",
    )
    .unwrap();
    let status = std::process::Command::new("hivexregedit")
        .args(["--merge", "--prefix", r"HKEY_LOCAL_MACHINE\SYSTEM"])
        .arg(&system)
        .arg(&reg)
        .status()
        .unwrap();
    assert!(status.success());
    let facts = WindowsFacts::read(&open(&system), &software).unwrap();
    assert_eq!(facts.qemu_ga, QemuGa::Installed { start: Some(2) });
    assert!(facts.qemu_ga.will_answer());
}
