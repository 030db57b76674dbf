//! The layouts operators really have, converted on a real libvirtd + QEMU with the tiny guest
//! (see tests/support/host.rs for when these run, skip or fail): an IDE root disk beside a
//! virtio data disk that sorts first in libvirt's disk order, with `<os><boot dev='hd'/>` (the
//! layout the "add a small virtio disk, boot once, switch the root" workaround leaves behind).
//!
//! Each test: a copy of a ready fixture image as the IDE root, a virtio data disk `vda`, an e1000
//! NIC; boot it; `convert` without `--force`; read QEMU's command line (which device got which
//! `bootindex`) and what the guest saw; `rollback`; the original definition must come back byte
//! for byte and boot from IDE again.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::host::{DiskSpec, GuestSpec, Host, ImageFormat, TestGuest, READY_IMAGE};

const BOOT: Duration = Duration::from_secs(120);

/// A fixture image ready for vioscsi (and not for viostor): Windows 10-like, 4K sectors.
const VIOSCSI_READY_IMAGE: &str = "gpt4k.qcow2";

fn run(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_virtio-migrate"))
        .args(["-c", support::host::SYSTEM_URI])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run virtio-migrate");
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

/// The IDE root (a copy of `image`) and the virtio data disk `vda`, in that document order,
/// an e1000 NIC, and `boot` as the `<os>` boot elements.
fn guest<'h>(host: &'h Host, label: &str, image: &'static str, boot: &str) -> TestGuest<'h> {
    let spec = GuestSpec {
        disks: vec![
            DiskSpec::fixture("ide", "hda", image),
            DiskSpec::empty("virtio", "vda", ImageFormat::Raw, 8),
        ],
        ..GuestSpec::ide_e1000()
    };
    let mut g = host.guest(label, &spec);
    assert!(g.xml.contains("    <boot dev='hd'/>\n"), "{}", g.xml);
    g.xml = g.xml.replace("    <boot dev='hd'/>\n", boot);
    g
}

/// Add an IDE CD-ROM `hdc` (a small raw file) after the disks.
fn add_cdrom(g: &mut TestGuest<'_>) {
    let iso = g.dir().join("cd.iso");
    std::fs::write(&iso, vec![0u8; 1 << 20]).unwrap();
    let cdrom = format!(
        "    <disk type='file' device='cdrom'>\n      <driver name='qemu' type='raw'/>\n      \
         <source file='{}'/>\n      <target dev='hdc' bus='ide'/>\n      <readonly/>\n    </disk>\n",
        iso.display()
    );
    let at = g.xml.find("    <interface").expect("an interface");
    g.xml.insert_str(at, &cdrom);
}

/// The `<disk>` elements of a definition by source file: (target dev, bus, boot order, the
/// element's text).
fn disks(xml: &str) -> Vec<(String, String, String, Option<String>, String)> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("disk"))
        .map(|d| {
            let child = |tag: &str| d.children().find(|c| c.has_tag_name(tag));
            let t = child("target");
            (
                child("source")
                    .and_then(|s| s.attribute("file"))
                    .unwrap_or_default()
                    .to_string(),
                t.and_then(|t| t.attribute("dev"))
                    .unwrap_or_default()
                    .to_string(),
                t.and_then(|t| t.attribute("bus"))
                    .unwrap_or_default()
                    .to_string(),
                child("boot").and_then(|b| b.attribute("order").map(str::to_string)),
                xml[d.range()].to_string(),
            )
        })
        .collect()
}

/// The QEMU `-device` of the disk whose source is `file`, in the running domain.
fn qemu_device_of(g: &TestGuest<'_>, file: &Path) -> serde_json::Value {
    let live = g.domain().xml_desc(0).unwrap();
    let doc = roxmltree::Document::parse(&live).unwrap();
    let alias = doc
        .descendants()
        .filter(|n| n.has_tag_name("disk"))
        .find(|d| {
            d.children().any(|s| {
                s.has_tag_name("source") && s.attribute("file") == Some(&*file.to_string_lossy())
            })
        })
        .and_then(|d| d.children().find(|c| c.has_tag_name("alias")))
        .and_then(|a| a.attribute("name"))
        .unwrap_or_else(|| panic!("no alias for {}: {live}", file.display()))
        .to_string();
    g.last_qemu_devices()
        .into_iter()
        .find(|d| d["id"] == alias.as_str())
        .unwrap_or_else(|| panic!("no -device {alias}: {:?}", g.last_qemu_devices()))
}

/// What one scenario expects after the conversion.
struct Expect {
    /// `--bus` value.
    bus: &'static str,
    /// The root's QEMU driver and its bootindex.
    root_driver: &'static str,
    root_bootindex: u64,
    /// The root's new target and its boot order in the new definition.
    root_target: &'static str,
    /// The CD-ROM's bootindex (when the guest has one).
    cdrom_bootindex: Option<u64>,
    /// The NIC becomes virtio-net.
    virtio_nic: bool,
}

fn convert_boot_and_roll_back(
    label: &str,
    image: &'static str,
    boot: &str,
    cdrom: bool,
    e: Expect,
) {
    let test = format!("host_boot_order::{label}");
    let Some(host) = Host::acquire(&test) else {
        return;
    };
    let mut g = guest(&host, label, image, boot);
    if cdrom {
        add_cdrom(&mut g);
    }
    let (_dom, before) = g.define_and_boot(BOOT);
    // The root on IDE (sda through ata_piix), the data disk on virtio-blk.
    assert!(before.blocks.contains(&"sda".to_string()), "{before:?}");
    assert!(before.blocks.contains(&"vda".to_string()), "{before:?}");
    let original = g.inactive_xml();
    let old_disks = disks(&original);
    let by_target = |dev: &str| {
        old_disks
            .iter()
            .find(|d| d.1 == dev)
            .unwrap_or_else(|| panic!("no {dev}: {original}"))
            .clone()
    };
    let (old_root, old_data) = (by_target("hda"), by_target("vda"));
    let root_file = Path::new(&old_root.0).to_path_buf();
    let data_file = Path::new(&old_data.0).to_path_buf();
    // Before: the root has the boot index the <os> list gives hd.
    let root_dev = qemu_device_of(&g, &root_file);
    assert_eq!(root_dev["driver"], "ide-hd", "{root_dev}");
    assert_eq!(root_dev["bootindex"], e.root_bootindex, "{root_dev}");

    let state = g.dir().join("state").display().to_string();
    let mark = g.serial_mark();
    let started = std::time::Instant::now();
    let out = run(&[
        "--json",
        "convert",
        "--domain",
        &g.name,
        "--bus",
        e.bus,
        "--yes",
        "--state-dir",
        &state,
        "--verify-time",
        "5",
    ]);
    eprintln!(
        "TIMING convert {label}: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("plan:     ready"), "{err}");
    assert!(!err.contains("--force"), "no --force needed: {err}");
    assert!(err.contains("boot order made explicit"), "{err}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["result"], "converted", "{json}");

    // The new persistent definition: the root renamed and given its boot order, the data disk
    // byte for byte as it was, no <os><boot> left.
    let now = g.inactive_xml();
    let new_disks = disks(&now);
    let root = new_disks
        .iter()
        .find(|d| Path::new(&d.0) == root_file)
        .unwrap();
    let data = new_disks
        .iter()
        .find(|d| Path::new(&d.0) == data_file)
        .unwrap();
    assert_eq!(root.1, e.root_target, "{now}");
    assert_eq!(root.2, e.bus, "{now}");
    assert_eq!(
        root.3.as_deref(),
        Some(e.root_bootindex.to_string().as_str()),
        "{now}"
    );
    assert_eq!(data.4, old_data.4, "the data disk is untouched");
    assert!(!now.contains("<boot dev="), "{now}");

    // QEMU: bootindex on the converted root, none on the data disk.
    let root_dev = qemu_device_of(&g, &root_file);
    let data_dev = qemu_device_of(&g, &data_file);
    eprintln!("QEMU root {root_dev}\nQEMU data {data_dev}");
    assert_eq!(root_dev["driver"], e.root_driver, "{root_dev}");
    assert_eq!(root_dev["bootindex"], e.root_bootindex, "{root_dev}");
    assert_eq!(data_dev["driver"], "virtio-blk-pci", "{data_dev}");
    assert!(data_dev.get("bootindex").is_none(), "{data_dev}");
    let devices = g.last_qemu_devices();
    if let Some(index) = e.cdrom_bootindex {
        let cd = devices
            .iter()
            .find(|d| d["driver"] == "ide-cd")
            .unwrap_or_else(|| panic!("{devices:?}"));
        assert_eq!(cd["bootindex"], index, "{cd}");
    }
    let nic_driver = if e.virtio_nic {
        "virtio-net-pci"
    } else {
        "e1000"
    };
    assert!(
        devices.iter().any(|d| d["driver"] == nic_driver),
        "{devices:?}"
    );

    // The guest booted again and saw what QEMU gave it.
    let after = g.wait_boots(mark, 1, BOOT).pop().unwrap();
    eprintln!("guest after conversion: {after:?}");
    if e.bus == "virtio" {
        assert!(
            after.blocks.contains(&"vda".to_string()) && after.blocks.contains(&"vdb".to_string()),
            "{after:?}"
        );
        assert!(
            !after.blocks.iter().any(|b| b.starts_with("sd")),
            "{after:?}"
        );
    } else {
        // The tiny guest has no virtio_scsi driver: it sees the controller, not its disk.
        assert!(after.pci.contains(&"1af4:1004".to_string()), "{after:?}");
        assert!(after.blocks.contains(&"vda".to_string()), "{after:?}");
    }
    if e.virtio_nic {
        assert!(
            after.nets.iter().any(|(_, d)| d == "virtio_net"),
            "{after:?}"
        );
    }

    // Rollback: the original definition byte for byte, booting from IDE again.
    let mark = g.serial_mark();
    let out = run(&[
        "rollback",
        "--domain",
        &g.name,
        "--yes",
        "--state-dir",
        &state,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        g.inactive_xml(),
        original,
        "byte-identical definition after rollback"
    );
    g.wait_boot_where(mark, BOOT, |b| b.blocks.contains(&"sda".to_string()));
    let root_dev = qemu_device_of(&g, &root_file);
    assert_eq!(root_dev["driver"], "ide-hd", "{root_dev}");
    assert_eq!(root_dev["bootindex"], e.root_bootindex, "{root_dev}");
}

#[test]
fn ide_root_beside_a_virtio_data_disk_with_boot_dev_hd() {
    convert_boot_and_roll_back(
        "boot-hd",
        READY_IMAGE,
        "    <boot dev='hd'/>\n",
        false,
        Expect {
            bus: "virtio",
            root_driver: "virtio-blk-pci",
            root_bootindex: 1,
            root_target: "vdb",
            cdrom_bootindex: None,
            virtio_nic: true,
        },
    );
}

#[test]
fn cdrom_first_then_the_ide_root_beside_a_virtio_data_disk() {
    convert_boot_and_roll_back(
        "boot-cdrom-hd",
        READY_IMAGE,
        "    <boot dev='cdrom'/>\n    <boot dev='hd'/>\n",
        true,
        Expect {
            bus: "virtio",
            root_driver: "virtio-blk-pci",
            root_bootindex: 2,
            root_target: "vdb",
            cdrom_bootindex: Some(1),
            virtio_nic: true,
        },
    );
}

#[test]
fn bus_scsi_beside_a_virtio_data_disk_with_boot_dev_hd() {
    convert_boot_and_roll_back(
        "boot-hd-scsi",
        VIOSCSI_READY_IMAGE,
        "    <boot dev='hd'/>\n",
        false,
        Expect {
            bus: "scsi",
            root_driver: "scsi-hd",
            root_bootindex: 1,
            root_target: "sda",
            cdrom_bootindex: None,
            // gpt4k's netkvm is not ready: the NIC stays e1000 (a warning, not a blocker).
            virtio_nic: false,
        },
    );
}
