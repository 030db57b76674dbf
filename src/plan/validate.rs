//! Checks of a planned domain definition that touch nothing on the host.
//!
//! - [`check`]: the project's own rules, pure — no drive address on a virtio disk, unique targets, no
//!   mixed boot forms, a SCSI controller for every SCSI disk, nothing on a disk its bus cannot carry,
//!   and the same devices booting in the same order as before (QEMU's `bootindex` as libvirt gives
//!   it out, see [`crate::domain::boot_order`]).
//! - [`schema`]: libvirt's own parser and RNG schema, through an in-process `test:///default`
//!   connection with `VIR_DOMAIN_DEFINE_VALIDATE`. The test driver keeps its domains in the memory of
//!   this process only; the domain is undefined again at once. The test driver accepts some things
//!   the QEMU driver refuses (a drive address on a virtio disk, a `<wwn>` on virtio): [`check`] covers
//!   those.

use std::collections::BTreeMap;
use std::sync::Mutex;

use roxmltree::{Document, Node};

use crate::domain::boot_order::{self, DeviceRef};
use crate::domain::disk_order;
use crate::plan::rewrite::{children_named, devices};

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckFailure {
    /// The XML does not parse or has no `<devices>`.
    #[error("not a domain definition with <devices>: {0}")]
    NotADomain(String),
    /// A virtio disk keeps a drive address (libvirt: "virtio disk cannot have an address of type 'drive'").
    #[error("virtio disk {0} has a drive address")]
    DriveAddressOnVirtio(String),
    /// Two disks share a target name.
    #[error("target {0} is used by more than one disk")]
    DuplicateTarget(String),
    /// Both `<os><boot>` and per-device `<boot order>` are present.
    #[error("per-device <boot order> and <os><boot> are mixed")]
    MixedBootForms,
    /// A SCSI disk has no SCSI controller at the index it lives on.
    #[error("scsi disk {0} has no scsi controller with index {1}")]
    NoScsiController(String, u32),
    /// A disk carries something its bus cannot.
    #[error("disk {0}: {1}")]
    Unsupported(String, String),
    /// The planned definition does not boot the same devices in the same order.
    #[error("the planned definition boots {found} where the current one boots {expected}")]
    BootSequenceChanged {
        /// The devices the current definition boots, in order.
        expected: String,
        /// The devices the planned one boots, in order.
        found: String,
    },
}

/// A property of a disk that some buses cannot carry (QEMU driver rules, libvirt 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusProperty {
    /// `<wwn>`: ide and scsi only.
    Wwn,
    /// `<vendor>`/`<product>`: scsi only.
    VendorProduct,
    /// `<geometry trans>` other than `default`: ide only.
    ChsTranslation,
    /// `<target rotation_rate>`: ide, sata and scsi only.
    RotationRate,
    /// `<target removable>`: usb only.
    Removable,
}

impl BusProperty {
    /// Which property, and which buses carry it.
    pub fn describe(self, bus: &str) -> String {
        let (what, buses) = match self {
            BusProperty::Wwn => ("<wwn>", "ide and scsi"),
            BusProperty::VendorProduct => ("<vendor>/<product>", "scsi"),
            BusProperty::ChsTranslation => ("a CHS translation mode (<geometry trans>)", "ide"),
            BusProperty::RotationRate => ("rotation_rate", "ide, sata and scsi"),
            BusProperty::Removable => ("removable", "usb"),
        };
        format!("{what} is supported on {buses} only, not {bus}")
    }
}

/// What `disk` (a `<disk>` element) carries that `bus` cannot.
pub fn unsupported_on_bus(disk: Node, bus: &str) -> Vec<BusProperty> {
    let mut out = Vec::new();
    if children_named(disk, "wwn").next().is_some() && bus != "ide" && bus != "scsi" {
        out.push(BusProperty::Wwn);
    }
    if (children_named(disk, "vendor").next().is_some()
        || children_named(disk, "product").next().is_some())
        && bus != "scsi"
    {
        out.push(BusProperty::VendorProduct);
    }
    if children_named(disk, "geometry")
        .next()
        .is_some_and(|g| g.attribute("trans").is_some_and(|t| t != "default"))
        && bus != "ide"
    {
        out.push(BusProperty::ChsTranslation);
    }
    if let Some(target) = children_named(disk, "target").next() {
        if target.attribute("rotation_rate").is_some() && !matches!(bus, "ide" | "sata" | "scsi") {
            out.push(BusProperty::RotationRate);
        }
        if target.attribute("removable").is_some() && bus != "usb" {
            out.push(BusProperty::Removable);
        }
    }
    out
}

/// The project's own checks of a domain definition. `expected_boot`: the devices that must boot,
/// in boot order (those of the current definition: the planner's rewrite keeps disks and
/// interfaces in their places, so their positions name the same devices in both).
pub fn check(xml: &str, expected_boot: Option<&[DeviceRef]>) -> Vec<CheckFailure> {
    let doc = match Document::parse(xml) {
        Ok(d) => d,
        Err(e) => return vec![CheckFailure::NotADomain(e.to_string())],
    };
    let Some(devices) = devices(&doc) else {
        return vec![CheckFailure::NotADomain("no <devices>".to_string())];
    };
    let mut out = Vec::new();
    let disks: Vec<Node> = children_named(devices, "disk").collect();

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let scsi_controllers: Vec<u32> = children_named(devices, "controller")
        .filter(|c| c.attribute("type") == Some("scsi"))
        .map(|c| {
            c.attribute("index")
                .and_then(|i| i.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    for disk in &disks {
        let target = children_named(*disk, "target").next();
        let dev = target.and_then(|t| t.attribute("dev")).unwrap_or("");
        let bus = target
            .and_then(|t| t.attribute("bus"))
            .or_else(|| disk_order::bus_from_name(dev))
            .unwrap_or("");
        *seen.entry(dev.to_string()).or_default() += 1;
        let drive_address =
            children_named(*disk, "address").find(|a| a.attribute("type") == Some("drive"));
        if bus == "virtio" && drive_address.is_some() {
            out.push(CheckFailure::DriveAddressOnVirtio(dev.to_string()));
        }
        if bus == "scsi" {
            let controller = match drive_address {
                Some(a) => a
                    .attribute("controller")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0),
                None => disk_order::name_index(dev).map_or(0, |i| i / 7),
            };
            if !scsi_controllers.contains(&controller) {
                out.push(CheckFailure::NoScsiController(dev.to_string(), controller));
            }
        }
        for problem in unsupported_on_bus(*disk, bus) {
            out.push(CheckFailure::Unsupported(
                dev.to_string(),
                problem.describe(bus),
            ));
        }
    }
    for (dev, count) in seen {
        if count > 1 {
            out.push(CheckFailure::DuplicateTarget(dev));
        }
    }

    let os_boot = doc
        .root_element()
        .children()
        .filter(|c| c.has_tag_name("os"))
        .any(|os| children_named(os, "boot").next().is_some());
    let device_boot = devices
        .descendants()
        .any(|n| n.has_tag_name("boot") && n.attribute("order").is_some());
    if os_boot && device_boot {
        out.push(CheckFailure::MixedBootForms);
    }

    if let Some(expected) = expected_boot {
        let found = boot_order::effective(doc.root_element()).devices();
        if found != expected {
            let name = |list: &[DeviceRef]| -> String {
                if list.is_empty() {
                    return "nothing".to_string();
                }
                list.iter()
                    .map(|d| describe(&disks, d))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push(CheckFailure::BootSequenceChanged {
                expected: name(expected),
                found: name(&found),
            });
        }
    }
    out
}

/// A device for a message: a disk by its target name, anything else by element and number.
fn describe(disks: &[Node], device: &DeviceRef) -> String {
    if device.element == "disk" {
        if let Some(dev) = disks
            .get(device.position)
            .and_then(|d| children_named(*d, "target").next())
            .and_then(|t| t.attribute("dev"))
        {
            return format!("disk {dev}");
        }
    }
    format!("{} {}", device.element, device.position)
}

/// Serialises schema checks: `test:///default` connections in one process share their state.
static TEST_DRIVER: Mutex<()> = Mutex::new(());

/// Validate `xml` with libvirt's parser and RNG schema on an in-process `test:///default`
/// connection (`VIR_DOMAIN_DEFINE_VALIDATE`), then undefine it there. Nothing leaves this process.
/// `Err` carries libvirt's message.
pub fn schema(xml: &str) -> Result<(), String> {
    let _guard = TEST_DRIVER.lock().unwrap_or_else(|e| e.into_inner());
    virt::error::clear_error_callback();
    let conn = virt::connect::Connect::open(Some("test:///default"))
        .map_err(|e| format!("cannot open libvirt's test driver: {e}"))?;
    // The test driver starts with a running domain named "test"; a definition with that name would
    // clash with it, so it goes first (in this process's memory only).
    if let Ok(name) = domain_name(xml) {
        if let Ok(existing) = conn.lookup_domain_by_name(&name) {
            if existing.is_active().unwrap_or(false) {
                let _ = existing.destroy();
            }
            let _ = existing.undefine();
        }
    }
    let result = conn
        .define_domain_xml_flags(xml, virt::sys::VIR_DOMAIN_DEFINE_VALIDATE)
        .map_err(|e| e.to_string())
        .and_then(|dom| dom.undefine().map_err(|e| e.to_string()));
    drop(conn);
    result
}

fn domain_name(xml: &str) -> Result<String, ()> {
    let doc = Document::parse(xml).map_err(|_| ())?;
    doc.root_element()
        .children()
        .find(|c| c.has_tag_name("name"))
        .and_then(|n| n.text())
        .map(|t| t.trim().to_string())
        .ok_or(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_can_fail() {
        let xml = "<domain><name>x</name><os><boot dev='hd'/></os><devices>\
            <disk device='disk'><target dev='vda' bus='virtio'/><address type='drive' controller='0' bus='0' target='0' unit='0'/><boot order='1'/></disk>\
            <disk device='disk'><target dev='vda' bus='virtio'/><wwn>5000c50015ea71ac</wwn></disk>\
            <disk device='disk'><target dev='sdb' bus='scsi'/></disk>\
            </devices></domain>";
        let failures = check(xml, Some(&[DeviceRef::disk(2)]));
        let expect = [
            CheckFailure::DriveAddressOnVirtio("vda".into()),
            CheckFailure::Unsupported(
                "vda".into(),
                "<wwn> is supported on ide and scsi only, not virtio".into(),
            ),
            CheckFailure::NoScsiController("sdb".into(), 0),
            CheckFailure::DuplicateTarget("vda".into()),
            CheckFailure::MixedBootForms,
            CheckFailure::BootSequenceChanged {
                expected: "disk sdb".into(),
                found: "disk vda".into(),
            },
        ];
        assert_eq!(failures, expect);
    }
}
