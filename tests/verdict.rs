//! The readiness verdict on every fixture scenario (fixtures/hives/<scenario>/): hives made by
//! mkhive.py + hivexregedit, laid out on a host directory per the scenario's files.txt and read
//! through `HostDirFs`. Each scenario must get exactly the right verdict per bus and NIC, with the
//! right failed checks and hazards; the hive values relied on are cross-checked with `hivexget`;
//! corrupted hives never panic and give unknown.

use std::fs;
use std::path::Path;
use std::process::Command;

use virtio_migrate::inspect::guestfs::HostDirFs;
use virtio_migrate::inspect::hive::Hive;
use virtio_migrate::inspect::image::{HostFile, IoStats, ReadAt};
use virtio_migrate::inspect::verdict::{
    assess, Assessment, Check, Hazard, MachineFamily, Outcome, Readiness, Target,
};
use virtio_migrate::inspect::windows::WindowsFacts;

const SCENARIOS: [&str; 14] = [
    "win2k8r2-ready",
    "win2k8r2-start3",
    "win2016-ready",
    "win10-novirtio",
    "vioscsi-only",
    "netkvm-driverstore",
    "dirty-system",
    "static-ip",
    "win10-startoverride",
    "select-default",
    "class-filters",
    "cdd-ids",
    "pending-delete",
    "driver-files",
];

#[path = "support/scenario.rs"]
mod scenario;
use scenario::{fixture_dir, lay_out, make_dirs_ci};

/// Assess a scenario. The system root is passed as "Windows" whatever its spelling on disk.
fn assess_scenario(scenario: &str, machine: MachineFamily) -> Assessment {
    let (dir, _root) = lay_out(scenario);
    let fs = HostDirFs::new(dir.path());
    assess(&fs, "Windows", machine, &[])
}

fn failed(readiness: &Readiness) -> Vec<&str> {
    match readiness {
        Readiness::NotReady { failed } => failed.iter().map(String::as_str).collect(),
        other => panic!("expected not-ready, got {other:?}"),
    }
}

fn check<'a>(a: &'a Assessment, target: Target, name: &str) -> &'a Check {
    a.checks
        .iter()
        .find(|c| c.target == target && c.name == name)
        .unwrap_or_else(|| panic!("no check {name:?} for {target:?}; checks: {:#?}", a.checks))
}

fn hazard_kinds(a: &Assessment) -> Vec<&'static str> {
    a.hazards.iter().map(Hazard::kind).collect()
}

fn assert_evidence(a: &Assessment, target: Target, name: &str, needles: &[&str]) {
    let c = check(a, target, name);
    for needle in needles {
        assert!(
            c.evidence.contains(needle),
            "check {name:?}: evidence {:?} lacks {needle:?}",
            c.evidence
        );
    }
}

fn unknown_why(readiness: &Readiness) -> &str {
    match readiness {
        Readiness::Unknown { why } => why,
        other => panic!("expected unknown, got {other:?}"),
    }
}

const BLK_LEGACY: &str = r"viostor bound to PCI\VEN_1AF4&DEV_1001 (legacy)";
const BLK_MODERN: &str = r"viostor bound to PCI\VEN_1AF4&DEV_1042 (modern)";
const SCSI_LEGACY: &str = r"vioscsi bound to PCI\VEN_1AF4&DEV_1004 (legacy)";
const SCSI_MODERN: &str = r"vioscsi bound to PCI\VEN_1AF4&DEV_1048 (modern)";
const NIC_LEGACY: &str = r"netkvm package staged for PCI\VEN_1AF4&DEV_1000 (legacy)";
const NIC_MODERN: &str = r"netkvm package staged for PCI\VEN_1AF4&DEV_1041 (modern)";

/// The NIC check of the id the guest sees on a machine family.
fn nic_check(machine: MachineFamily) -> &'static str {
    match machine {
        MachineFamily::Q35 => NIC_MODERN,
        _ => NIC_LEGACY,
    }
}

#[test]
fn win2k8r2_ready_boots_from_virtio_blk_on_both_machine_types() {
    for machine in [
        MachineFamily::I440fx,
        MachineFamily::Q35,
        MachineFamily::Other,
    ] {
        let a = assess_scenario("win2k8r2-ready", machine);
        assert_eq!(a.blk, Readiness::Ready, "{machine:?}: {:#?}", a.checks);
        assert_eq!(a.nic, Readiness::Ready);
        let mut expected = vec!["vioscsi.sys present", "service vioscsi present"];
        match machine {
            MachineFamily::I440fx => expected.push(SCSI_LEGACY),
            MachineFamily::Q35 => expected.push(SCSI_MODERN),
            MachineFamily::Other => expected.push("vioscsi bound to a virtio-scsi id"),
        }
        assert_eq!(failed(&a.scsi), expected, "{machine:?}");
        assert_eq!(hazard_kinds(&a), ["crash-auto-reboot"]);
        assert!(a.incomplete.is_empty(), "{:?}", a.incomplete);
    }
    let a = assess_scenario("win2k8r2-ready", MachineFamily::I440fx);
    let facts = a.facts.as_ref().unwrap();
    assert_eq!(facts.family, "Windows Server 2008 R2");
    assert_eq!(facts.control_set, "ControlSet001");
    assert_eq!(
        (facts.major, facts.minor, facts.build),
        (Some(6), Some(1), Some(7601))
    );
    assert_eq!(facts.architecture.as_deref(), Some("AMD64"));
    assert_eq!(facts.hostname.as_deref(), Some("SEED-2K8R2"));
    assert_eq!(facts.installation_type.as_deref(), Some("Server"));
    assert_eq!(facts.edition.as_deref(), Some("ServerStandard"));
    assert!(facts.server);
    assert_eq!(
        a.binding_source,
        Some(virtio_migrate::inspect::verdict::BindingSource::CriticalDeviceDatabase)
    );
    assert_evidence(
        &a,
        Target::VirtioBlk,
        BLK_LEGACY,
        &[
            "the ids the guest sees on i440fx",
            r#"SYSTEM\ControlSet001\Control\CriticalDeviceDatabase\pci#ven_1af4&dev_1001&subsys_00021af4&rev_00\Service = "viostor""#,
            "ClassGUID = SCSIAdapter",
        ],
    );
    assert_evidence(
        &a,
        Target::VirtioBlk,
        BLK_MODERN,
        &[
            r#"CriticalDeviceDatabase\PCI#VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01\Service = "viostor""#,
        ],
    );
    assert!(!check(&a, Target::VirtioBlk, BLK_MODERN).required);
    assert_evidence(
        &a,
        Target::VirtioBlk,
        "viostor Start=0 (boot)",
        &[r"SYSTEM\ControlSet001\Services\viostor\Start = 0 (REG_DWORD)"],
    );
    assert_evidence(
        &a,
        Target::VirtioBlk,
        "viostor.sys present",
        &["Windows/system32/DRIVERS/viostor.sys (from ImagePath): present"],
    );
    assert_evidence(
        &a,
        Target::Nic,
        NIC_LEGACY,
        &[
            r"FileRepository/netkvm.inf_amd64_neutral_4c1f7d2e9a3b5c60/netkvm.inf: names PCI\VEN_1AF4&DEV_1000, DriverVer 100.95.104.26200",
        ],
    );
    match &a.hazards[0] {
        Hazard::CrashAutoReboot { explicit, evidence } => {
            assert!(explicit);
            assert_eq!(
                evidence,
                r"SYSTEM\ControlSet001\Control\CrashControl\AutoReboot = 1 (REG_DWORD)"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn win2k8r2_start3_is_not_ready_the_0x7b_trap() {
    for (machine, binding) in [
        (MachineFamily::I440fx, BLK_LEGACY),
        (MachineFamily::Q35, BLK_MODERN),
    ] {
        let a = assess_scenario("win2k8r2-start3", machine);
        assert_eq!(
            failed(&a.blk),
            ["viostor Start=0 (boot)", binding],
            "{machine:?}"
        );
        // netkvm is not staged: Windows Server 2008 R2 has a Driver Store, this one holds none.
        assert_eq!(failed(&a.nic), [nic_check(machine)]);
        assert_evidence(
            &a,
            Target::Nic,
            nic_check(machine),
            &["FileRepository: absent (no package staged)"],
        );
        assert_evidence(
            &a,
            Target::VirtioBlk,
            "viostor Start=0 (boot)",
            &[
                r"SYSTEM\ControlSet001\Services\viostor\Start = 3 (REG_DWORD)",
                "0x7B",
            ],
        );
        // The balloon's dev_1002 entry is not a virtio-blk binding.
        assert_evidence(
            &a,
            Target::VirtioBlk,
            BLK_LEGACY,
            &[
                r"SYSTEM\ControlSet001\Control\CriticalDeviceDatabase: no entry for any of the 11 ids the device presents (PCI#VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00 … PCI#CC_0100)",
            ],
        );
        // The file exists (system root spelled WINDOWS/system32/DRIVERS on disk).
        assert!(check(&a, Target::VirtioBlk, "viostor.sys present").passed);
        assert_eq!(hazard_kinds(&a), ["crash-auto-reboot"]);
        assert!(matches!(
            &a.hazards[0],
            Hazard::CrashAutoReboot { explicit: false, evidence }
                if evidence == r"SYSTEM\ControlSet001\Control\CrashControl\AutoReboot: absent (Windows default 1)"
        ));
        assert_eq!(a.facts.as_ref().unwrap().family, "Windows Server 2008 R2");
    }
}

#[test]
fn win2016_ready_through_the_driver_database_in_control_set_2() {
    for machine in [MachineFamily::I440fx, MachineFamily::Q35] {
        let a = assess_scenario("win2016-ready", machine);
        assert_eq!(a.blk, Readiness::Ready, "{machine:?}: {:#?}", a.checks);
        assert_eq!(a.nic, Readiness::Ready);
        assert_eq!(
            a.binding_source,
            Some(virtio_migrate::inspect::verdict::BindingSource::DriverDatabase)
        );
        let scsi = failed(&a.scsi);
        assert_eq!(
            &scsi[..2],
            ["vioscsi.sys present", "service vioscsi present"]
        );
        assert_eq!(
            hazard_kinds(&a),
            ["device-install-restrictions", "crash-auto-reboot"]
        );
        assert!(a.hazards[0]
            .evidence()
            .contains("DenyRemovableDevices = 1 (REG_DWORD)"));
        assert_evidence(
            &a,
            Target::VirtioBlk,
            "viostor not denied by device-install policy",
            &[
                r"SOFTWARE\Policies\Microsoft\Windows\DeviceInstall\Restrictions: present, no deny entry",
            ],
        );
    }
    let a = assess_scenario("win2016-ready", MachineFamily::Q35);
    assert_evidence(
        &a,
        Target::VirtioBlk,
        BLK_MODERN,
        &[
            "the ids the guest sees on q35",
            r#"SYSTEM\DriverDatabase\DeviceIds\PCI\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01 has "oem3.inf""#,
            r"DriverInfFiles\oem3.inf → viostor.inf_amd64_1b4a2c3d5e6f7a8b",
            r#"Descriptors\PCI\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01 Configuration = "rhelscsi_inst""#,
            r#"Configurations\rhelscsi_inst\Service = "viostor""#,
        ],
    );
    // ControlSet001 (stale, Start=3) must not be read: Select\Current = 2.
    assert_evidence(
        &a,
        Target::VirtioBlk,
        "viostor Start=0 (boot)",
        &[r"SYSTEM\ControlSet002\Services\viostor\Start = 0"],
    );
    let facts = a.facts.unwrap();
    assert_eq!(facts.control_set, "ControlSet002");
    assert_eq!(facts.family, "Windows Server 2016");
    assert_eq!(
        (facts.major, facts.minor, facts.build),
        (Some(10), Some(0), Some(14393))
    );
    assert_eq!(facts.hostname.as_deref(), Some("WEB2016"));
}

#[test]
fn win10_without_virtio_is_not_ready_anywhere_and_hibernated() {
    let a = assess_scenario("win10-novirtio", MachineFamily::Q35);
    assert_eq!(
        failed(&a.blk),
        ["viostor.sys present", "service viostor present", BLK_MODERN]
    );
    assert_eq!(
        failed(&a.scsi),
        [
            "vioscsi.sys present",
            "service vioscsi present",
            SCSI_MODERN
        ]
    );
    assert_eq!(failed(&a.nic), [NIC_MODERN]);
    assert_evidence(
        &a,
        Target::VirtioBlk,
        BLK_MODERN,
        &[
            r"SYSTEM\DriverDatabase\DeviceIds: no entry for any of the 11 ids the device presents (PCI\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01 … PCI\CC_0100)",
        ],
    );
    assert_evidence(
        &a,
        Target::Nic,
        NIC_MODERN,
        &[
            r"SYSTEM\DriverDatabase\DeviceIds: no entry for any of the 11 ids the device presents (PCI\VEN_1AF4&DEV_1041&SUBSYS_11001AF4&REV_01 … PCI\CC_0200)",
        ],
    );
    assert_eq!(hazard_kinds(&a), ["hibernation", "crash-auto-reboot"]);
    assert!(a.hazards[0]
        .evidence()
        .contains("hiberfil.sys: first bytes \"HIBR\""));
    let facts = a.facts.unwrap();
    assert_eq!(facts.family, "Windows 10");
    assert!(!facts.server);

    // A hibernation hazard from the file-system layer is not reported twice.
    let (dir, _) = lay_out("win10-novirtio");
    let layer = Hazard::Hibernation {
        evidence: "from the NTFS layer".into(),
    };
    let a = assess(
        &HostDirFs::new(dir.path()),
        "Windows",
        MachineFamily::Q35,
        std::slice::from_ref(&layer),
    );
    assert_eq!(hazard_kinds(&a), ["hibernation", "crash-auto-reboot"]);
    assert_eq!(a.hazards[0], layer);
}

#[test]
fn vioscsi_only_is_ready_for_scsi_not_for_blk_and_policy_denies_blk() {
    for (machine, binding, denied) in [
        (
            MachineFamily::I440fx,
            BLK_LEGACY,
            r#"DenyDeviceIDs\1 = "PCI\VEN_1AF4&DEV_1001""#,
        ),
        (
            MachineFamily::Q35,
            BLK_MODERN,
            r#"DenyDeviceIDs\2 = "PCI\VEN_1AF4&DEV_1042""#,
        ),
    ] {
        let a = assess_scenario("vioscsi-only", machine);
        assert_eq!(a.scsi, Readiness::Ready, "{machine:?}: {:#?}", a.checks);
        assert_eq!(
            failed(&a.blk),
            [
                "viostor.sys present",
                "service viostor present",
                binding,
                "viostor not denied by device-install policy"
            ]
        );
        assert_evidence(
            &a,
            Target::VirtioBlk,
            "viostor not denied by device-install policy",
            &[denied],
        );
        assert!(
            check(
                &a,
                Target::VirtioScsi,
                "vioscsi not denied by device-install policy"
            )
            .passed
        );
        assert_eq!(failed(&a.nic), [nic_check(machine)]);
        assert_eq!(
            hazard_kinds(&a),
            ["device-install-restrictions", "crash-auto-reboot"]
        );
        assert_evidence(
            &a,
            Target::VirtioScsi,
            "vioscsi.sys present",
            &["Windows/System32/drivers/vioscsi.sys (from ImagePath): present"],
        );
    }
    // The modern id's key is spelled in lower case in this hive.
    let a = assess_scenario("vioscsi-only", MachineFamily::Q35);
    assert_evidence(
        &a,
        Target::VirtioScsi,
        SCSI_MODERN,
        &[r#"DeviceIds\PCI\ven_1af4&dev_1048&subsys_11001af4&rev_01 has "oem5.inf""#],
    );
    let facts = a.facts.unwrap();
    assert_eq!(facts.product_name.as_deref(), Some("Windows 10 Pro"));
    assert_eq!(facts.family, "Windows 11");
}

#[test]
fn netkvm_staged_in_the_driver_store_is_enough_for_the_nic() {
    let a = assess_scenario("netkvm-driverstore", MachineFamily::Q35);
    assert_eq!(a.nic, Readiness::Ready);
    // Staged only (pnputil -a): no netkvm.sys, no service — the DriverDatabase offers the
    // package for the NIC's id and the package is in the Driver Store.
    assert_evidence(
        &a,
        Target::Nic,
        NIC_MODERN,
        &[
            r#"SYSTEM\DriverDatabase\DeviceIds\PCI\VEN_1AF4&DEV_1041&SUBSYS_11001AF4&REV_01 has "oem7.inf""#,
            r#"Configurations\kvmnet6.ndi\Service = "netkvm""#,
            "FileRepository/netkvm.inf_amd64_8d2e5f3a7b9c1d04: present",
        ],
    );
    assert!(!check(&a, Target::Nic, "netkvm.sys installed").passed);
    let service = check(&a, Target::Nic, "service netkvm present");
    assert!(!service.passed && !service.required);
    assert_eq!(
        failed(&a.blk),
        ["viostor.sys present", "service viostor present", BLK_MODERN]
    );
    assert_eq!(hazard_kinds(&a), ["san-policy", "crash-auto-reboot"]);
    assert!(a.hazards[0]
        .evidence()
        .contains(r"SYSTEM\ControlSet001\Services\partmgr\Parameters\SanPolicy absent: the server default OfflineShared applies"));
    let facts = a.facts.unwrap();
    assert_eq!(facts.family, "Windows Server 2019");
    assert_eq!(facts.installation_type.as_deref(), Some("Server Core"));
}

#[test]
fn dirty_system_is_ready_only_after_log_replay() {
    let a = assess_scenario("dirty-system", MachineFamily::I440fx);
    assert_eq!(a.blk, Readiness::Ready, "{:#?}", a.checks);
    assert_evidence(
        &a,
        Target::VirtioBlk,
        "viostor Start=0 (boot)",
        &[r"SYSTEM\ControlSet001\Services\viostor\Start = 0 (REG_DWORD)"],
    );
    assert_eq!(hazard_kinds(&a), ["dirty-hive", "crash-auto-reboot"]);
    match &a.hazards[0] {
        Hazard::DirtyHive {
            hive,
            replayed,
            evidence,
        } => {
            assert_eq!(hive, "SYSTEM");
            assert!(replayed);
            assert!(evidence.contains("replayed LOG1"), "{evidence}");
        }
        other => panic!("{other:?}"),
    }
    let facts = a.facts.unwrap();
    assert_eq!(facts.family, "Windows Server 2012 R2");
    assert_eq!(
        (facts.major, facts.minor, facts.build),
        (Some(6), Some(3), Some(9600))
    );

    // Without its log the hive is dirty and not replayed: whatever was read from it is unknown,
    // but a failure read from the files (no vioscsi.sys) still makes virtio-scsi not ready.
    let (dir, root) = lay_out("dirty-system");
    let log = make_dirs_ci(dir.path(), &format!("{root}/System32/config")).join("SYSTEM.LOG1");
    let good_log = fs::read(&log).unwrap();
    fs::remove_file(&log).unwrap();
    let a = assess(
        &HostDirFs::new(dir.path()),
        "Windows",
        MachineFamily::I440fx,
        &[],
    );
    assert_eq!(failed(&a.scsi), ["vioscsi.sys present"]);
    for target in [Target::VirtioBlk, Target::Nic] {
        let why = unknown_why(a.readiness(target));
        assert!(
            why.contains("SYSTEM hive dirty, logs not replayed"),
            "{why}"
        );
    }
    assert!(matches!(
        &a.hazards[0],
        Hazard::DirtyHive {
            replayed: false,
            ..
        }
    ));

    // A log whose entry is damaged does not apply either.
    let mut bad = good_log.clone();
    let last = bad.len() - 100;
    bad[last] ^= 0x55;
    fs::write(&log, &bad).unwrap();
    let a = assess(
        &HostDirFs::new(dir.path()),
        "Windows",
        MachineFamily::I440fx,
        &[],
    );
    assert!(unknown_why(&a.blk).contains("logs not replayed"));
}

#[test]
fn static_ip_and_a_legacy_only_binding() {
    let a = assess_scenario("static-ip", MachineFamily::I440fx);
    assert_eq!(a.blk, Readiness::Ready, "{:#?}", a.checks);
    // netkvm.sys and its service alone: Plug and Play has no staged package to install on the
    // new NIC.
    assert_eq!(failed(&a.nic), [NIC_LEGACY]);
    assert!(check(&a, Target::Nic, "netkvm.sys installed").passed);
    // AutoReboot = 0: no crash hazard; the DHCP and the unconfigured adapters are not hazards.
    assert_eq!(hazard_kinds(&a), ["static-ip"]);
    match &a.hazards[0] {
        Hazard::StaticIp {
            interface,
            adapter,
            addresses,
            evidence,
        } => {
            assert_eq!(interface, "{3B0E8F2A-6C1D-4E55-9A7B-2F4C8D1E0A61}");
            assert_eq!(
                adapter.as_deref(),
                Some("Intel(R) PRO/1000 MT Network Connection")
            );
            assert_eq!(addresses, &["192.0.2.10", "192.0.2.11"]);
            assert!(evidence.starts_with(
                r"SYSTEM\ControlSet001\Services\Tcpip\Parameters\Interfaces\{3B0E8F2A-6C1D-4E55-9A7B-2F4C8D1E0A61}: EnableDHCP = 0"
            ));
            assert!(
                evidence.contains(r#"DefaultGateway = ["192.0.2.1"]"#),
                "{evidence}"
            );
        }
        other => panic!("{other:?}"),
    }

    // Bound only for the legacy id: a q35 guest sees the modern id and would not boot.
    let a = assess_scenario("static-ip", MachineFamily::Q35);
    assert_eq!(failed(&a.blk), [BLK_MODERN]);
    assert_evidence(
        &a,
        Target::VirtioBlk,
        BLK_MODERN,
        &[
            "the ids the guest sees on q35",
            "no entry for any of the 11 ids the device presents",
        ],
    );
    assert!(check(&a, Target::VirtioBlk, BLK_LEGACY).passed);

    // Machine type unknown: cannot say.
    let a = assess_scenario("static-ip", MachineFamily::Other);
    assert!(unknown_why(&a.blk).contains("bound only for the legacy id"));
}

#[test]
fn the_report_and_json_carry_verdicts_checks_and_hazards() {
    let a = assess_scenario("win2k8r2-start3", MachineFamily::I440fx);
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["blk"]["state"], "not-ready");
    assert_eq!(json["blk"]["failed"][0], "viostor Start=0 (boot)");
    assert_eq!(json["machine"], "i440fx");
    assert_eq!(json["guest_sees"], "legacy");
    assert_eq!(json["hazards"][0]["kind"], "crash-auto-reboot");
    assert_eq!(json["facts"]["family"], "Windows Server 2008 R2");
    assert_eq!(json["checks"][0]["target"], "virtio-blk");
    let lines = a.lines();
    assert!(
        lines[0].starts_with("Windows: Windows Server 2008 R2 (ProductName"),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l
        == r"  FAIL viostor Start=0 (boot) — SYSTEM\ControlSet001\Services\viostor\Start = 3 (REG_DWORD) (demand start: loaded too late for the boot disk → STOP 0x7B)"));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("virtio-blk (viostor): NOT READY: viostor Start=0 (boot); ")));
    assert!(lines.iter().any(|l| l.starts_with("Hazards (1):")));
}

/// `hivexget HIVE KEY VALUE` as bytes (hivex reads the primary file only, ignoring logs).
fn hivexget(hive: &Path, key: &str, value: &str) -> String {
    let out = Command::new("hivexget")
        .arg(hive)
        .arg(key)
        .arg(value)
        .output()
        .expect("hivexget (Debian package libhivex-bin) must be installed for this test");
    assert!(
        out.status.success(),
        "hivexget {} {key} {value}: {:?}",
        hive.display(),
        out
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

fn open_hive(path: &Path) -> Hive {
    let stats = IoStats::new();
    let file: std::sync::Arc<dyn ReadAt> =
        std::sync::Arc::new(HostFile::open(path, &stats).unwrap());
    Hive::open(file, None, None).unwrap()
}

/// Our reader's rendering of a value the way hivexget prints it.
fn ours(hive: &Hive, key: &str, value: &str) -> String {
    use virtio_migrate::inspect::hive::Value;
    let k = hive.key(key.trim_start_matches('\\')).unwrap().unwrap();
    match hive.value(&k, value).unwrap().unwrap() {
        Value::Dword(n) => n.to_string(),
        Value::Qword(n) => n.to_string(),
        Value::Sz(s) | Value::ExpandSz(s) => s,
        Value::MultiSz(list) => list.join("\n"),
        other => panic!("{key}\\{value}: unexpected {other:?}"),
    }
}

#[test]
fn hive_values_relied_on_agree_with_hivexget() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("win2k8r2-ready", "SYSTEM", r"\Select", "Current"),
        (
            "win2k8r2-ready",
            "SYSTEM",
            r"\ControlSet001\Services\viostor",
            "Start",
        ),
        (
            "win2k8r2-ready",
            "SYSTEM",
            r"\ControlSet001\Services\viostor",
            "ImagePath",
        ),
        (
            "win2k8r2-ready",
            "SYSTEM",
            r"\ControlSet001\Control\CriticalDeviceDatabase\pci#ven_1af4&dev_1001&subsys_00021af4&rev_00",
            "Service",
        ),
        (
            "win2k8r2-ready",
            "SOFTWARE",
            r"\Microsoft\Windows NT\CurrentVersion",
            "CurrentVersion",
        ),
        (
            "win2k8r2-start3",
            "SYSTEM",
            r"\ControlSet001\Services\viostor",
            "Start",
        ),
        ("win2016-ready", "SYSTEM", r"\Select", "Current"),
        (
            "win2016-ready",
            "SYSTEM",
            r"\DriverDatabase\DriverInfFiles\oem3.inf",
            "Active",
        ),
        (
            "win2016-ready",
            "SYSTEM",
            r"\DriverDatabase\DriverPackages\viostor.inf_amd64_1b4a2c3d5e6f7a8b\Configurations\rhelscsi_inst",
            "Service",
        ),
        (
            "win2016-ready",
            "SOFTWARE",
            r"\Microsoft\Windows NT\CurrentVersion",
            "CurrentMajorVersionNumber",
        ),
        (
            "win10-novirtio",
            "SOFTWARE",
            r"\Microsoft\Windows NT\CurrentVersion",
            "CurrentBuildNumber",
        ),
        (
            "vioscsi-only",
            "SYSTEM",
            r"\ControlSet001\Services\vioscsi",
            "Start",
        ),
        (
            "vioscsi-only",
            "SOFTWARE",
            r"\Policies\Microsoft\Windows\DeviceInstall\Restrictions\DenyDeviceIDs",
            "1",
        ),
        (
            "netkvm-driverstore",
            "SOFTWARE",
            r"\Microsoft\Windows NT\CurrentVersion",
            "InstallationType",
        ),
        (
            "static-ip",
            "SYSTEM",
            r"\ControlSet001\Control\CrashControl",
            "AutoReboot",
        ),
        (
            "static-ip",
            "SYSTEM",
            r"\ControlSet001\Services\Tcpip\Parameters\Interfaces\{3B0E8F2A-6C1D-4E55-9A7B-2F4C8D1E0A61}",
            "IPAddress",
        ),
        (
            "static-ip",
            "SYSTEM",
            r"\ControlSet001\Control\Class\{4D36E972-E325-11CE-BFC1-08002BE10318}\0007",
            "NetCfgInstanceId",
        ),
    ];
    for (scenario, hive_name, key, value) in cases {
        let path = fixture_dir(scenario).join(hive_name);
        let hive = open_hive(&path);
        assert_eq!(
            ours(&hive, key, value),
            hivexget(&path, key, value),
            "{scenario} {hive_name}{key}\\{value}"
        );
    }

    // hivex ignores transaction logs: on the dirty hive it reads the stale Start=3, which is
    // what the primary file holds and what our reader sees when the logs are withheld.
    let path = fixture_dir("dirty-system").join("SYSTEM");
    let key = r"\ControlSet001\Services\viostor";
    assert_eq!(hivexget(&path, key, "Start"), "3");
    assert_eq!(ours(&open_hive(&path), key, "Start"), "3");
}

#[test]
fn facts_read_from_the_hives_directly() {
    let dir = fixture_dir("vioscsi-only");
    let facts = WindowsFacts::read(
        &open_hive(&dir.join("SYSTEM")),
        &open_hive(&dir.join("SOFTWARE")),
    )
    .unwrap();
    assert_eq!(facts.family, "Windows 11");
    assert_eq!(facts.build, Some(22631));
    assert_eq!(facts.edition.as_deref(), Some("Professional"));
    assert_eq!(facts.hostname.as_deref(), Some("DEV-WIN11"));
}

/// Replace one hive of a laid-out scenario, assess, and return the verdicts.
fn assess_with(dir: &Path, root: &str, hive: &str, bytes: &[u8]) -> Assessment {
    fs::write(
        make_dirs_ci(dir, &format!("{root}/System32/config")).join(hive),
        bytes,
    )
    .unwrap();
    assess(&HostDirFs::new(dir), "Windows", MachineFamily::I440fx, &[])
}

fn all_unknown(a: &Assessment) -> bool {
    [&a.blk, &a.scsi, &a.nic]
        .iter()
        .all(|r| matches!(r, Readiness::Unknown { .. }))
}

/// A verdict read with one input damaged or missing: unknown, or a definite "not ready" that the
/// intact guest's verdict also gives (three-valued logic: a failure that does not depend on the
/// damaged input still counts), never "ready".
fn consistent_with_intact(damaged: &Readiness, intact: &Readiness) -> bool {
    match (damaged, intact) {
        (Readiness::Unknown { .. }, _) => true,
        (Readiness::NotReady { failed }, Readiness::NotReady { failed: whole }) => {
            failed.iter().all(|f| whole.contains(f))
        }
        _ => false,
    }
}

fn all_consistent(a: &Assessment, intact: &Assessment) -> bool {
    consistent_with_intact(&a.blk, &intact.blk)
        && consistent_with_intact(&a.scsi, &intact.scsi)
        && consistent_with_intact(&a.nic, &intact.nic)
}

#[test]
fn corrupted_hives_never_panic_and_give_unknown() {
    for scenario in SCENARIOS {
        let (dir, root) = lay_out(scenario);
        let intact = assess(
            &HostDirFs::new(dir.path()),
            "Windows",
            MachineFamily::I440fx,
            &[],
        );
        for hive in ["SYSTEM", "SOFTWARE"] {
            let good = fs::read(fixture_dir(scenario).join(hive)).unwrap();
            // Truncated anywhere: the hive bins no longer fit the file.
            for len in [
                0,
                100,
                4095,
                4096,
                4096 + 32,
                good.len() / 2,
                good.len() - 1,
            ] {
                let a = assess_with(dir.path(), &root, hive, &good[..len]);
                if scenario == "dirty-system" && hive == "SYSTEM" && len > 4096 {
                    // The reader takes the hive size from the log's base block and reads the
                    // pages a truncated primary lacks as zeros, so lookups that avoid them still
                    // answer: a verdict is then either unknown or the intact hive's verdict.
                    for (damaged, whole) in [
                        (&a.blk, &intact.blk),
                        (&a.scsi, &intact.scsi),
                        (&a.nic, &intact.nic),
                    ] {
                        assert!(
                            matches!(damaged, Readiness::Unknown { .. }) || damaged == whole,
                            "{scenario} {hive} truncated to {len}: {damaged:?}, intact {whole:?}"
                        );
                    }
                    continue;
                }
                // Without SYSTEM nothing is decided; without SOFTWARE what SYSTEM and the files
                // prove still holds.
                let ok = if hive == "SYSTEM" {
                    all_unknown(&a)
                } else {
                    all_consistent(&a, &intact)
                };
                assert!(ok, "{scenario} {hive} truncated to {len}: {a:#?}");
            }
            // Structural damage: base block signature, checksum-covered header fields (the hive
            // turns dirty without a usable log), the root key node's signature. (The lazy reader
            // does not read hbin headers, so a damaged one alone changes nothing.)
            let root_cell = 4096 + u32::from_le_bytes(good[36..40].try_into().unwrap()) as usize;
            for at in [0usize, 36, 40, root_cell + 4, root_cell + 5] {
                let mut bad = good.clone();
                bad[at] ^= 0xff;
                let a = assess_with(dir.path(), &root, hive, &bad);
                if scenario == "dirty-system" && hive == "SYSTEM" && (at == 36 || at == 40) {
                    // Its LOG1 carries a valid base block, which legitimately replaces the
                    // damaged primary header: only no-panic is asserted here.
                    continue;
                }
                let ok = if hive == "SYSTEM" {
                    all_unknown(&a)
                } else {
                    all_consistent(&a, &intact)
                };
                assert!(ok, "{scenario} {hive} byte {at} flipped: {a:#?}");
            }
            // Any single flipped byte across the hive bins: no panic, whatever the verdict.
            for at in (4096..good.len()).step_by(211) {
                let mut bad = good.clone();
                bad[at] ^= 0xa5;
                let a = assess_with(dir.path(), &root, hive, &bad);
                let _ = a.lines();
                serde_json::to_string(&a).unwrap();
            }
            fs::write(
                make_dirs_ci(dir.path(), &format!("{root}/System32/config")).join(hive),
                &good,
            )
            .unwrap();
        }
        // A missing SOFTWARE hive: the checks that need it are unknown, the rest still decides.
        fs::remove_file(
            make_dirs_ci(dir.path(), &format!("{root}/System32/config")).join("SOFTWARE"),
        )
        .unwrap();
        let a = assess(
            &HostDirFs::new(dir.path()),
            "Windows",
            MachineFamily::I440fx,
            &[],
        );
        assert!(all_consistent(&a, &intact), "{scenario}: missing SOFTWARE");
        assert!(a.incomplete.iter().any(|n| n.starts_with("SOFTWARE hive:")));
        if let Readiness::Unknown { why } = &a.blk {
            assert!(why.contains("SOFTWARE"), "{why}");
        }
    }
}

#[test]
fn layer_hazards_are_carried_and_an_uninspectable_guest_is_unknown() {
    let layer = [
        Hazard::BitLocker {
            evidence: "partition 2: OEM id -FVE-FS-".into(),
        },
        Hazard::DynamicDisk {
            evidence: "MBR partition 1 type 0x42".into(),
        },
    ];
    let (dir, _) = lay_out("static-ip");
    let a = assess(
        &HostDirFs::new(dir.path()),
        "Windows",
        MachineFamily::I440fx,
        &layer,
    );
    assert_eq!(hazard_kinds(&a), ["bitlocker", "dynamic-disk", "static-ip"]);
    assert_eq!(a.blk, Readiness::Ready);

    let a = Assessment::unknown(
        "Windows",
        MachineFamily::Q35,
        "BitLocker system volume",
        &layer,
    );
    assert_eq!(unknown_why(&a.nic), "BitLocker system volume");
    assert_eq!(a.hazards.len(), 2);
}

#[test]
#[ignore = "prints the report of every scenario and the bytes read (cargo test -- --ignored --nocapture)"]
fn print_reports_and_bytes_read() {
    for scenario in SCENARIOS {
        let (dir, _) = lay_out(scenario);
        let stats = IoStats::new();
        let fs = HostDirFs::with_stats(dir.path(), stats.clone());
        let a = assess(&fs, "Windows", MachineFamily::Q35, &[]);
        println!("== {scenario} (q35): {} bytes read", stats.total_bytes());
        for line in a.lines() {
            println!("{line}");
        }
    }
}

#[test]
fn host_dir_fs_matches_names_without_case_and_stays_inside() {
    use virtio_migrate::inspect::guestfs::GuestFs;
    let (dir, _) = lay_out("win2k8r2-start3");
    let fs = HostDirFs::new(dir.path());
    let entry = fs
        .lookup("windows/SYSTEM32/drivers/VIOSTOR.SYS")
        .unwrap()
        .unwrap();
    assert_eq!(entry.name, "viostor.sys");
    assert!(!entry.is_dir);
    assert_eq!(
        entry.size,
        fs::metadata(scenario::drivers_dir().join("viostor.sys"))
            .unwrap()
            .len()
    );
    let mut buf = [0u8; 2];
    fs.open("Windows/System32/Drivers/viostor.sys")
        .unwrap()
        .read_exact_at(&mut buf, 0)
        .unwrap();
    assert_eq!(&buf, b"MZ");
    let names: Vec<String> = fs
        .read_dir("windows/system32/drivers")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["balloon.sys", "intelide.sys", "viostor.sys"]);
    assert!(fs
        .lookup("Windows/System32/drivers/vioscsi.sys")
        .unwrap()
        .is_none());
    assert!(fs.open("Windows/System32").is_err());
    assert!(fs.read_dir("Windows/System32/cmd.exe").is_err());
    // No way out of the tree: `..` components and symbolic links are absent.
    assert!(fs.lookup("Windows/..").unwrap().is_none());
    assert!(fs.lookup("../etc/passwd").unwrap().is_none());
    std::os::unix::fs::symlink("/etc", dir.path().join("escape")).unwrap();
    assert!(fs.lookup("escape/passwd").unwrap().is_none());
    assert!(fs.lookup("escape").unwrap().is_none());
    assert!(!fs.read_dir("").unwrap().iter().any(|e| e.name == "escape"));
}

// ---- The false-"ready" traps of real installs (issue 12): each on both machine families ----

const BLK_OVERRIDE: &str = "viostor StartOverride does not disable boot start";

#[test]
fn start_override_makes_a_perfect_viostor_not_ready() {
    for machine in [MachineFamily::I440fx, MachineFamily::Q35] {
        let a = assess_scenario("win10-startoverride", machine);
        assert_eq!(
            failed(&a.blk),
            [BLK_OVERRIDE],
            "{machine:?}: {:#?}",
            a.checks
        );
        assert_evidence(
            &a,
            Target::VirtioBlk,
            BLK_OVERRIDE,
            &[
                r"SYSTEM\ControlSet001\Services\viostor\StartOverride\0 = 3 (REG_DWORD)",
                "0x7B",
            ],
        );
        let c = check(&a, Target::VirtioBlk, BLK_OVERRIDE);
        assert_eq!(
            c.remedy.as_deref().unwrap().split(',').next().unwrap(),
            r#"guest: `reg delete "HKLM\SYSTEM\ControlSet001\Services\viostor\StartOverride" /f`"#
        );
        // Everything else about viostor holds, and the NIC package is staged for both ids.
        assert!(check(&a, Target::VirtioBlk, "viostor Start=0 (boot)").passed);
        assert!(check(&a, Target::VirtioBlk, BLK_LEGACY).passed);
        assert!(check(&a, Target::VirtioBlk, BLK_MODERN).passed);
        assert_eq!(a.nic, Readiness::Ready, "{machine:?}: {:#?}", a.checks);
        // Offered under its own INF name: the package is found by name among DriverPackages.
        assert_evidence(
            &a,
            Target::Nic,
            nic_check(machine),
            &[r#"has "netkvm.inf" → package netkvm.inf_amd64_8d2e5f3a7b9c1d04"#],
        );
        assert_eq!(hazard_kinds(&a), ["code-integrity"]);
        assert!(a.hazards[0]
            .evidence()
            .contains(r"HypervisorEnforcedCodeIntegrity\Enabled = 1 (REG_DWORD)"));
        assert!(a
            .facts
            .as_ref()
            .unwrap()
            .driver_versions
            .iter()
            .any(|v| v.driver == "netkvm" && v.version == "100.95.104.26200"));
    }
}

#[test]
fn the_next_boots_control_set_is_judged_not_the_last_ones() {
    for machine in [MachineFamily::I440fx, MachineFamily::Q35] {
        let a = assess_scenario("select-default", machine);
        assert_eq!(failed(&a.blk), ["viostor Start=0 (boot)"], "{machine:?}");
        assert_evidence(
            &a,
            Target::VirtioBlk,
            "viostor Start=0 (boot)",
            &[r"SYSTEM\ControlSet002\Services\viostor\Start = 3"],
        );
        let c = check(&a, Target::VirtioBlk, "control set of the next boot read");
        assert!(!c.passed && !c.required);
        assert!(c
            .evidence
            .contains("Default = 2 (REG_DWORD), Current = 1 (REG_DWORD)"));
        assert_eq!(a.facts.as_ref().unwrap().control_set, "ControlSet002");
        assert_eq!(hazard_kinds(&a), ["control-set-mismatch"]);
        assert_eq!(a.nic, Readiness::Ready, "{:#?}", a.checks);
    }
}

#[test]
fn storage_class_filters_that_cannot_load_at_boot_are_not_ready() {
    for machine in [MachineFamily::I440fx, MachineFamily::Q35] {
        let a = assess_scenario("class-filters", machine);
        assert_eq!(
            failed(&a.blk),
            [
                "SCSIAdapter class filters load at boot",
                "DiskDrive class filters load at boot"
            ],
            "{machine:?}"
        );
        assert_evidence(
            &a,
            Target::VirtioBlk,
            "SCSIAdapter class filters load at boot",
            &[r#"UpperFilters "oldsnap": its service key is absent"#],
        );
        assert_evidence(
            &a,
            Target::VirtioBlk,
            "DiskDrive class filters load at boot",
            &[r#"LowerFilters "prl_strg": disabled (Start = 4)"#],
        );
        let c = check(
            &a,
            Target::VirtioBlk,
            "DiskDrive class filters load at boot",
        );
        assert!(
            c.remedy.as_deref().unwrap().starts_with(
                r#"guest: `reg delete "HKLM\SYSTEM\ControlSet001\Control\Class\{4D36E967-E325-11CE-BFC1-08002BE10318}" /v LowerFilters /f`"#
            ),
            "{:?}",
            c.remedy
        );
        // The same filters block virtio-scsi.
        assert!(failed(&a.scsi).contains(&"SCSIAdapter class filters load at boot"));
    }
}

#[test]
fn only_the_ids_qemu_presents_count_in_the_critical_device_database() {
    let a = assess_scenario("cdd-ids", MachineFamily::I440fx);
    assert_eq!(failed(&a.blk), [BLK_LEGACY]);
    assert_evidence(
        &a,
        Target::VirtioBlk,
        BLK_LEGACY,
        &["no entry for any of the 11 ids the device presents"],
    );
    assert_eq!(a.scsi, Readiness::Ready, "{:#?}", a.checks);
    assert_evidence(
        &a,
        Target::VirtioScsi,
        SCSI_LEGACY,
        &[
            r"pci#ven_1af4&dev_1004&subsys_00081af4&rev_00\Service",
            "(id 1 of 11",
        ],
    );
    // q35: the modern ids, spelt as virt-v2v writes them (…&REV_01) and SUBSYS-only, are found.
    let a = assess_scenario("cdd-ids", MachineFamily::Q35);
    assert_eq!(a.blk, Readiness::Ready, "{:#?}", a.checks);
    assert_evidence(
        &a,
        Target::VirtioBlk,
        BLK_MODERN,
        &["PCI#VEN_1AF4&DEV_1042&REV_01", "(id 3 of 11"],
    );
    assert_eq!(a.scsi, Readiness::Ready);
    assert_evidence(
        &a,
        Target::VirtioScsi,
        SCSI_MODERN,
        &["PCI#VEN_1AF4&DEV_1048&SUBSYS_11001AF4", "(id 2 of 11"],
    );
}

#[test]
fn a_driver_marked_for_deletion_is_not_ready() {
    for machine in [MachineFamily::I440fx, MachineFamily::Q35] {
        let a = assess_scenario("pending-delete", machine);
        assert_eq!(
            failed(&a.blk),
            ["viostor not marked for deletion"],
            "{machine:?}"
        );
        assert_eq!(hazard_kinds(&a), ["pending-deletion"]);
    }
}

#[test]
fn a_definite_failure_is_not_ready_without_the_software_hive_and_hazards_stay() {
    for machine in [MachineFamily::I440fx, MachineFamily::Q35] {
        let (dir, root) = lay_out("win2k8r2-start3");
        let config = dir.path().join(&root).join("system32/config");
        let config = if config.exists() {
            config
        } else {
            dir.path().join(&root).join("System32/config")
        };
        fs::remove_file(config.join("SOFTWARE")).unwrap();
        let fs_ = HostDirFs::new(dir.path());
        let a = assess(&fs_, "Windows", machine, &[]);
        let f = failed(&a.blk);
        assert!(f.contains(&"viostor Start=0 (boot)"), "{f:?}");
        // The policy check needs SOFTWARE: unknown, and the NIC (no Driver Store, version
        // unknown) cannot be decided.
        let c = check(
            &a,
            Target::VirtioBlk,
            "viostor not denied by device-install policy",
        );
        assert_eq!(c.outcome, Outcome::Unknown);
        assert!(matches!(a.nic, Readiness::Unknown { .. }), "{:?}", a.nic);
        assert_eq!(hazard_kinds(&a), ["crash-auto-reboot"]);
        assert!(a.incomplete.iter().any(|n| n.starts_with("SOFTWARE hive:")));
    }
    // Without SYSTEM nothing is decided, but the hazards found are reported.
    let (dir, root) = lay_out("win10-novirtio");
    fs::remove_file(dir.path().join(&root).join("System32/config/SYSTEM")).unwrap();
    let a = assess(
        &HostDirFs::new(dir.path()),
        "Windows",
        MachineFamily::Q35,
        &[],
    );
    assert!(matches!(a.blk, Readiness::Unknown { .. }));
    assert_eq!(hazard_kinds(&a), ["hibernation"]);
}

#[test]
fn driver_files_must_be_native_images_of_the_architecture_and_signed() {
    for machine in [MachineFamily::I440fx, MachineFamily::Q35] {
        let a = assess_scenario("driver-files", machine);
        // An i386 viostor.sys in an AMD64 Windows.
        assert_eq!(
            failed(&a.blk),
            ["viostor.sys is a native AMD64 driver image"],
            "{machine:?}: {:#?}",
            a.checks
        );
        assert_evidence(
            &a,
            Target::VirtioBlk,
            "viostor.sys is a native AMD64 driver image",
            &[
                "Windows/system32/DRIVERS/viostor.sys: PE32 x86",
                "built for x86 (0x014c), the Windows installation is AMD64",
            ],
        );
        // The i386 file is signed all the same: the signer is reported.
        assert_evidence(
            &a,
            Target::VirtioBlk,
            "viostor.sys carries an embedded signature",
            &[
                r#"signed by "virtio-migrate fixture driver signer""#,
                "chain not validated",
            ],
        );
        // An unsigned AMD64 vioscsi.sys: 64-bit Windows loads only embedded-signed boot drivers.
        assert_eq!(
            failed(&a.scsi),
            ["vioscsi.sys carries an embedded signature"],
            "{machine:?}"
        );
        let c = check(
            &a,
            Target::VirtioScsi,
            "vioscsi.sys carries an embedded signature",
        );
        assert!(c
            .evidence
            .contains("64-bit Windows loads only embedded-signed boot drivers"));
        assert!(c
            .remedy
            .as_deref()
            .unwrap()
            .contains(r"pnputil -i -a E:\vioscsi\2k8R2\amd64\vioscsi.inf"));
        assert!(
            check(
                &a,
                Target::VirtioScsi,
                "vioscsi.sys is a native AMD64 driver image"
            )
            .passed
        );
        assert_eq!(a.nic, Readiness::Ready);
    }
    // A ready guest's driver files pass, and their file version is the driver's version.
    let a = assess_scenario("win2k8r2-ready", MachineFamily::I440fx);
    assert!(
        check(
            &a,
            Target::VirtioBlk,
            "viostor.sys is a native AMD64 driver image"
        )
        .passed
    );
    let versions = &a.facts.as_ref().unwrap().driver_versions;
    let viostor = versions.iter().find(|v| v.driver == "viostor").unwrap();
    assert_eq!(viostor.version, "100.95.104.26200");
    assert!(
        viostor.from.ends_with("viostor.sys file version"),
        "{viostor:?}"
    );
    assert!(a
        .facts
        .as_ref()
        .unwrap()
        .summary()
        .contains("viostor 100.95.104.26200"));

    // An empty or non-PE viostor.sys is not ready; so is a GUI-subsystem image.
    for (content, failed_check, needle) in [
        (Vec::new(), "viostor.sys present", "empty (0 bytes)"),
        (
            b"MZ but nothing more".to_vec(),
            "viostor.sys is a native AMD64 driver image",
            "not a loadable PE image",
        ),
        (
            fs::read(scenario::drivers_dir().join("viostor-gui.sys")).unwrap(),
            "viostor.sys is a native AMD64 driver image",
            "not native",
        ),
    ] {
        let (dir, root) = lay_out("win2k8r2-ready");
        let file =
            make_dirs_ci(dir.path(), &format!("{root}/System32/drivers")).join("viostor.sys");
        fs::write(file, content).unwrap();
        let a = assess(
            &HostDirFs::new(dir.path()),
            "Windows",
            MachineFamily::I440fx,
            &[],
        );
        assert_eq!(failed(&a.blk), [failed_check]);
        assert_evidence(&a, Target::VirtioBlk, failed_check, &[needle]);
    }
}
