//! End to end on real-tool-made images: qcow2/raw image → partition table → NTFS → Windows root
//! → registry hives (with log replay) → readiness verdict, for every Windows image that
//! fixtures/make-images.sh builds from the hive scenarios (fixtures/hives/<scenario>/).
//!
//! Each image is opened with the format a domain would declare (`open_disk`), the Windows
//! volume is found by the inspection, its system root by `find_system_root`, and `verdict::assess`
//! runs on the NTFS volume itself. The verdict per bus (virtio-blk, virtio-scsi, virtio-net) must
//! be exactly the one the scenario stands for, on both machine families where they differ (the
//! guest sees legacy virtio ids on i440fx and modern ones on q35).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use virtio_migrate::inspect::disk::{inspect_reader, DiskHazard};
use virtio_migrate::inspect::image::disk::{open_disk, DiskFormat};
use virtio_migrate::inspect::image::ntfs::NtfsVolume;
use virtio_migrate::inspect::image::windows_root::find_system_root;
use virtio_migrate::inspect::image::{IoStats, ReadAt, Window};
use virtio_migrate::inspect::verdict::{assess, Assessment, Hazard, MachineFamily, Outcome};

fn image(name: &str) -> (PathBuf, DiskFormat) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images");
    if name == "bare-ntfs" {
        (dir.join("bare-ntfs.raw"), DiskFormat::Raw)
    } else {
        (dir.join(format!("{name}.qcow2")), DiskFormat::Qcow2)
    }
}

/// Open the image, find its one Windows volume and system root, and assess it.
fn assess_image(name: &str, machine: MachineFamily) -> Assessment {
    let (path, format) = image(name);
    let disk = open_disk(&path, format, &IoStats::new())
        .unwrap_or_else(|e| panic!("{name}: {e:#}"))
        .reader;
    let inspection = inspect_reader(disk.clone());
    let windows: Vec<_> = inspection.windows_volumes().collect();
    assert_eq!(windows.len(), 1, "{name}: {inspection:?}");
    let v = windows[0];
    let window: Arc<dyn ReadAt> = Arc::new(Window::new(disk, v.start, v.length).unwrap());
    let volume = NtfsVolume::open(window).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let root = find_system_root(&volume)
        .unwrap()
        .unwrap_or_else(|| panic!("{name}: no system root"));
    assert_eq!(Some(&root), v.windows.as_ref().map(|w| &w.root), "{name}");
    assess(&volume, &root, machine, &[])
}

fn kinds(a: &Assessment) -> Vec<&'static str> {
    a.hazards.iter().map(Hazard::kind).collect()
}

/// The expected verdicts: blk, scsi, nic as `Readiness::describe` prints them, and the hazards.
struct Expected<'a> {
    blk: &'a str,
    scsi: &'a str,
    nic: &'a str,
    hazards: &'a [&'a str],
}

fn expect(name: &str, machine: MachineFamily, e: Expected) -> Assessment {
    let a = assess_image(name, machine);
    let got = (
        a.blk.describe(),
        a.scsi.describe(),
        a.nic.describe(),
        kinds(&a),
    );
    let want = (
        e.blk.to_string(),
        e.scsi.to_string(),
        e.nic.to_string(),
        e.hazards.to_vec(),
    );
    assert_eq!(got, want, "{name} on {machine:?}");
    assert!(a.incomplete.is_empty(), "{name}: {:?}", a.incomplete);
    a
}

const READY: &str = "ready";
const BLK_LEGACY: &str = r"viostor bound to PCI\VEN_1AF4&DEV_1001 (legacy)";
const BLK_MODERN: &str = r"viostor bound to PCI\VEN_1AF4&DEV_1042 (modern)";
const SCSI_LEGACY: &str = r"vioscsi bound to PCI\VEN_1AF4&DEV_1004 (legacy)";
const SCSI_MODERN: &str = r"vioscsi bound to PCI\VEN_1AF4&DEV_1048 (modern)";
const NIC_LEGACY: &str = r"netkvm package staged for PCI\VEN_1AF4&DEV_1000 (legacy)";
const NIC_MODERN: &str = r"netkvm package staged for PCI\VEN_1AF4&DEV_1041 (modern)";
const MACHINES: [MachineFamily; 2] = [MachineFamily::I440fx, MachineFamily::Q35];

/// The binding check name a machine family needs.
fn ids(machine: MachineFamily) -> (&'static str, &'static str) {
    match machine {
        MachineFamily::I440fx => (BLK_LEGACY, SCSI_LEGACY),
        _ => (BLK_MODERN, SCSI_MODERN),
    }
}

/// The NIC check of the id a machine family presents.
fn nic_check(machine: MachineFamily) -> &'static str {
    match machine {
        MachineFamily::I440fx => NIC_LEGACY,
        _ => NIC_MODERN,
    }
}

/// virtio-net when no netkvm package is staged (a bare netkvm.sys does not count).
fn no_netkvm(machine: MachineFamily) -> String {
    format!("NOT READY: {}", nic_check(machine))
}

/// virtio-scsi when vioscsi was never installed.
fn no_vioscsi(machine: MachineFamily) -> String {
    format!(
        "NOT READY: vioscsi.sys present; service vioscsi present; {}",
        ids(machine).1
    )
}

/// virtio-blk when viostor was never installed.
fn no_viostor(machine: MachineFamily) -> String {
    format!(
        "NOT READY: viostor.sys present; service viostor present; {}",
        ids(machine).0
    )
}

fn family_and_host(a: &Assessment) -> (String, Option<String>) {
    let f = a.facts.as_ref().expect("facts read from the hives");
    (f.family.clone(), f.hostname.clone())
}

#[test]
fn win2k8r2_ready_images_boot_from_virtio_blk() {
    // mbr-sysreserved: System Reserved + C:, qcow2 v2; cloudstack-overlay: the template's
    // overlay (qcow2 backing chain) after the guest got its drivers.
    for name in ["mbr-sysreserved", "cloudstack-overlay"] {
        for m in MACHINES {
            let a = expect(
                name,
                m,
                Expected {
                    blk: READY,
                    scsi: &no_vioscsi(m),
                    nic: READY,
                    hazards: &["crash-auto-reboot"],
                },
            );
            assert_eq!(
                family_and_host(&a),
                ("Windows Server 2008 R2".into(), Some("SEED-2K8R2".into()))
            );
        }
    }
}

#[test]
fn win2k8r2_start3_images_are_the_0x7b_trap() {
    // The CloudStack template (below the overlay) and the stand-alone image: viostor is
    // installed but demand-start, and no virtio id is bound: not ready on either machine.
    for name in ["cloudstack-template", "win2k8r2-start3"] {
        for m in MACHINES {
            let blk = format!("NOT READY: viostor Start=0 (boot); {}", ids(m).0);
            let a = expect(
                name,
                m,
                Expected {
                    blk: &blk,
                    scsi: &no_vioscsi(m),
                    nic: &no_netkvm(m),
                    hazards: &["crash-auto-reboot"],
                },
            );
            let start = a
                .checks
                .iter()
                .find(|c| c.name == "viostor Start=0 (boot)")
                .unwrap();
            assert!(
                start
                    .evidence
                    .contains(r"SYSTEM\ControlSet001\Services\viostor\Start = 3 (REG_DWORD)"),
                "{}",
                start.evidence
            );
            assert_eq!(a.system_root, "WINDOWS", "{name}: spelled as on disk");
            assert_eq!(
                family_and_host(&a),
                ("Windows Server 2008 R2".into(), Some("LEGACY-APP01".into()))
            );
        }
    }
}

#[test]
fn win2016_images_deflate_and_zstd_extended_l2() {
    for name in ["gpt-uefi", "gpt-zstd-l2"] {
        for m in MACHINES {
            let a = expect(
                name,
                m,
                Expected {
                    blk: READY,
                    scsi: &no_vioscsi(m),
                    nic: READY,
                    hazards: &["device-install-restrictions", "crash-auto-reboot"],
                },
            );
            assert_eq!(
                family_and_host(&a),
                ("Windows Server 2016".into(), Some("WEB2016".into()))
            );
        }
    }
}

#[test]
fn win10_without_virtio_is_not_ready_anywhere_and_hibernated() {
    // bare-ntfs: the volume without a partition table (raw); win10-novirtio: the BIOS layout.
    for name in ["bare-ntfs", "win10-novirtio"] {
        for m in MACHINES {
            let a = expect(
                name,
                m,
                Expected {
                    blk: &no_viostor(m),
                    scsi: &no_vioscsi(m),
                    nic: &no_netkvm(m),
                    hazards: &["hibernation", "crash-auto-reboot"],
                },
            );
            assert!(a.hazards[0].evidence().contains("\"HIBR\""));
            assert_eq!(
                family_and_host(&a),
                ("Windows 10".into(), Some("DESKTOP-7QK2M4N".into()))
            );
        }
    }
}

#[test]
fn vioscsi_only_on_a_4k_sector_disk_is_ready_for_scsi_only() {
    for m in MACHINES {
        let blk = format!(
            "{}; viostor not denied by device-install policy",
            no_viostor(m)
        );
        let a = expect(
            "gpt4k",
            m,
            Expected {
                blk: &blk,
                scsi: READY,
                nic: &no_netkvm(m),
                hazards: &["device-install-restrictions", "crash-auto-reboot"],
            },
        );
        assert_eq!(
            family_and_host(&a),
            ("Windows 11".into(), Some("DEV-WIN11".into()))
        );
    }
}

#[test]
fn netkvm_staged_in_the_driver_store_is_enough_for_the_nic() {
    for m in MACHINES {
        let a = expect(
            "netkvm-driverstore",
            m,
            Expected {
                blk: &no_viostor(m),
                scsi: &no_vioscsi(m),
                nic: READY,
                hazards: &["san-policy", "crash-auto-reboot"],
            },
        );
        let nic = a.checks.iter().find(|c| c.name == nic_check(m)).unwrap();
        assert!(
            nic.evidence
                .contains("FileRepository/netkvm.inf_amd64_8d2e5f3a7b9c1d04"),
            "{}",
            nic.evidence
        );
        assert_eq!(
            family_and_host(&a),
            ("Windows Server 2019".into(), Some("SQL2019-A".into()))
        );
    }
}

#[test]
fn dirty_system_is_ready_because_the_log_on_the_volume_is_replayed() {
    for (name, hazards) in [
        ("dirty-system", &["dirty-hive", "crash-auto-reboot"][..]),
        (
            "hibernated",
            &["hibernation", "dirty-hive", "crash-auto-reboot"][..],
        ),
    ] {
        for m in MACHINES {
            let a = expect(
                name,
                m,
                Expected {
                    blk: READY,
                    scsi: &no_vioscsi(m),
                    nic: &no_netkvm(m),
                    hazards,
                },
            );
            let dirty = a.hazards.iter().find(|h| h.kind() == "dirty-hive").unwrap();
            assert!(
                matches!(dirty, Hazard::DirtyHive { hive, replayed: true, evidence }
                    if hive == "SYSTEM" && evidence.contains("replayed LOG1")),
                "{name}: {dirty:?}"
            );
            // Start = 0 exists only in SYSTEM.LOG1 (the primary file says 3).
            let start = a
                .checks
                .iter()
                .find(|c| c.name == "viostor Start=0 (boot)")
                .unwrap();
            assert!(start.passed, "{name}: {}", start.evidence);
            assert_eq!(
                family_and_host(&a),
                ("Windows Server 2012 R2".into(), Some("FILES2012R2".into()))
            );
        }
    }
}

#[test]
fn static_ip_is_bound_for_the_legacy_id_only() {
    let a = expect(
        "static-ip",
        MachineFamily::I440fx,
        Expected {
            blk: READY,
            scsi: &no_vioscsi(MachineFamily::I440fx),
            nic: &no_netkvm(MachineFamily::I440fx),
            hazards: &["static-ip"],
        },
    );
    match &a.hazards[0] {
        Hazard::StaticIp { addresses, .. } => {
            assert_eq!(addresses, &["192.0.2.10", "192.0.2.11"])
        }
        other => panic!("{other:?}"),
    }
    expect(
        "static-ip",
        MachineFamily::Q35,
        Expected {
            blk: &format!("NOT READY: {BLK_MODERN}"),
            scsi: &no_vioscsi(MachineFamily::Q35),
            nic: &no_netkvm(MachineFamily::Q35),
            hazards: &["static-ip"],
        },
    );
    assert_eq!(
        family_and_host(&a),
        ("Windows Server 2008 R2".into(), Some("DB-STATIC01".into()))
    );
}

#[test]
fn images_without_a_readable_windows_volume() {
    // BitLocker: the C: volume cannot be read, so there is no system root to assess; the
    // System Reserved partition is readable and holds no Windows.
    for (name, hazard) in [
        ("bitlocker", Some(DiskHazard::BitLocker { partition: 2 })),
        ("debian12", None),
        ("dynamic", Some(DiskHazard::DynamicDisk)),
    ] {
        let (path, format) = image(name);
        let disk = open_disk(&path, format, &IoStats::new()).unwrap().reader;
        let d = inspect_reader(disk);
        assert_eq!(d.windows_volumes().count(), 0, "{name}");
        assert_eq!(d.hazards, hazard.into_iter().collect::<Vec<_>>(), "{name}");
    }
}

/// The false-"ready" traps of real installs (issue 12), read from their images on both machine
/// families: each must come out exactly as the registry scenario says.
#[test]
fn trap_images_are_judged_right_on_both_machine_families() {
    for m in MACHINES {
        let fs_filters =
            "SCSIAdapter class filters load at boot; DiskDrive class filters load at boot";
        let cases: [(&str, String, String, &str, &[&str]); 4] = [
            (
                "win10-startoverride",
                "NOT READY: viostor StartOverride does not disable boot start".into(),
                no_vioscsi(m),
                READY,
                &["code-integrity"],
            ),
            (
                "select-default",
                "NOT READY: viostor Start=0 (boot)".into(),
                no_vioscsi(m),
                READY,
                &["control-set-mismatch"],
            ),
            (
                "class-filters",
                format!("NOT READY: {fs_filters}"),
                format!("{}; {fs_filters}", no_vioscsi(m)),
                READY,
                &[],
            ),
            (
                "pending-delete",
                "NOT READY: viostor not marked for deletion".into(),
                no_vioscsi(m),
                READY,
                &["pending-deletion"],
            ),
        ];
        for (name, blk, scsi, nic, hazards) in cases {
            let a = expect(
                name,
                m,
                Expected {
                    blk: &blk,
                    scsi: &scsi,
                    nic,
                    hazards,
                },
            );
            // Every failed check says what to do.
            for c in a
                .checks
                .iter()
                .filter(|c| c.required && c.outcome == Outcome::Fail)
            {
                assert!(c.remedy.is_some(), "{name}: {} has no remedy", c.name);
            }
            // One line per failed check and per hazard in the remedy list.
            let remedies = a.remedies();
            for c in a
                .checks
                .iter()
                .filter(|c| c.required && c.outcome == Outcome::Fail)
            {
                if c.remedy.is_some() {
                    let line = format!("{}: ", c.name);
                    assert!(
                        remedies.iter().any(|r| r.starts_with(&line)),
                        "{name}: {line}"
                    );
                }
            }
            for h in &a.hazards {
                let line = format!("{}: ", h.kind());
                assert!(
                    remedies.iter().any(|r| r.starts_with(&line)),
                    "{name}: {line}"
                );
            }
        }
        // Driver files: an i386 viostor.sys in AMD64 Windows, an unsigned vioscsi.sys.
        expect(
            "driver-files",
            m,
            Expected {
                blk: "NOT READY: viostor.sys is a native AMD64 driver image",
                scsi: "NOT READY: vioscsi.sys carries an embedded signature",
                nic: READY,
                hazards: &["crash-auto-reboot"],
            },
        );
        // Only the ids QEMU presents count: the legacy entry has another SUBSYS.
        let blk = match m {
            MachineFamily::I440fx => format!("NOT READY: {BLK_LEGACY}"),
            _ => READY.to_string(),
        };
        expect(
            "cdd-ids",
            m,
            Expected {
                blk: &blk,
                scsi: READY,
                nic: READY,
                hazards: &[],
            },
        );
    }
}
