//! Which devices a domain boots from, and in which order, the way libvirt's QEMU driver hands out
//! QEMU's `bootindex` (QEMU: docs/system/bootindex.rst — the firmware tries the devices by
//! ascending `bootindex`).
//!
//! A domain says it in one of two forms, never both (libvirt refuses the mix: "per-device boot
//! elements cannot be used together with os/boot elements"; formatdomain.html, "BIOS bootloader"):
//! - per-device `<boot order='N'/>` inside `<disk>`, `<interface>`, `<hostdev>`, `<redirdev>`…:
//!   the device gets `bootindex=N`;
//! - `<os><boot dev='hd|cdrom|fd|network'/>` (no boot element at all means `<boot dev='hd'/>`).
//!   libvirt parses at most the first four; an entry's `bootindex` is its position in that list
//!   (1-based), and a kind named twice takes the position of its last entry. The index goes to one
//!   device of the kind: `hd` to the first disk with `device='disk'` or `'lun'` in libvirt's disk
//!   order ([`super::disk_order`]), `cdrom` to the first CD-ROM and `fd` to the first floppy in that
//!   order, `network` to the first `<interface>` of the document.
//!
//! Measured on libvirt 9.0 / QEMU 7.2 (`virsh domxml-to-native` and real starts): `cdrom, hd,
//! network, fd` on `hda`(ide), `vda`(virtio), `hdc`(cdrom), `fda`, two e1000 gives `hdc`=1,
//! `hda`=2, the first NIC 3, `fda`=4 (`-global isa-fdc.bootindexA=4`), nothing on `vda` or the
//! second NIC — the very same QEMU command line as per-device orders `hdc`=1, `hda`=2, NIC 3,
//! `fda`=4. `hd, cdrom, hd` gives the CD-ROM 2 and the disk 3; a fifth entry is ignored.
//!
//! The planner uses [`effective`] to rewrite the first form into the second without changing what
//! boots, and the validator to prove that the planned definition boots the same devices in the
//! same order as the current one.

use roxmltree::Node;
use serde::Serialize;

use super::disk_order;

/// At most this many `<os><boot>` entries count (libvirt's `VIR_DOMAIN_BOOT_LAST`).
pub const MAX_OS_BOOT_ENTRIES: usize = 4;

/// A device of `<devices>`: its element name and its position among the `<devices>` children of
/// that name, in document order (the way [`super::DomainFacts`] numbers disks and NICs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DeviceRef {
    /// `disk`, `interface`, `hostdev`, `redirdev`, …
    pub element: String,
    /// Position among the `<devices>` children named `element`.
    pub position: usize,
}

impl DeviceRef {
    /// A `<disk>` by position.
    pub fn disk(position: usize) -> DeviceRef {
        DeviceRef {
            element: "disk".to_string(),
            position,
        }
    }

    /// An `<interface>` by position.
    pub fn interface(position: usize) -> DeviceRef {
        DeviceRef {
            element: "interface".to_string(),
            position,
        }
    }
}

/// One kind of `<os><boot dev>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OsBootKind {
    /// `hd`: the first hard disk (or LUN).
    Hd,
    /// `cdrom`: the first CD-ROM.
    Cdrom,
    /// `fd`: the first floppy.
    Fd,
    /// `network`: the first interface.
    Network,
}

impl OsBootKind {
    /// From the `dev` attribute (`None` for a value libvirt refuses).
    pub fn parse(dev: &str) -> Option<OsBootKind> {
        match dev {
            "hd" => Some(OsBootKind::Hd),
            "cdrom" => Some(OsBootKind::Cdrom),
            "fd" => Some(OsBootKind::Fd),
            "network" => Some(OsBootKind::Network),
            _ => None,
        }
    }

    /// The `dev` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            OsBootKind::Hd => "hd",
            OsBootKind::Cdrom => "cdrom",
            OsBootKind::Fd => "fd",
            OsBootKind::Network => "network",
        }
    }
}

/// One device that boots, with its `bootindex`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootEntry {
    /// QEMU's `bootindex` for it.
    pub index: u32,
    /// The device.
    pub device: DeviceRef,
    /// The `<os><boot dev>` kind that gave it the index (`None` for a per-device order).
    pub kind: Option<OsBootKind>,
}

/// How the boot order is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Per-device `<boot order>` elements.
    PerDevice,
    /// `<os><boot dev>` elements (their kinds, in document order; unknown values left out).
    OsBoot(Vec<OsBootKind>),
    /// Neither: libvirt's default, `<boot dev='hd'/>`.
    Default,
}

/// The boot devices of a domain, lowest `bootindex` first, and the form they are written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSequence {
    /// How the order is written.
    pub written: Written,
    /// The devices that get a `bootindex`, lowest first.
    pub entries: Vec<BootEntry>,
}

impl BootSequence {
    /// The devices in boot order (without the index values).
    pub fn devices(&self) -> Vec<DeviceRef> {
        self.entries.iter().map(|e| e.device.clone()).collect()
    }

    /// The `bootindex` of `device`, if it has one.
    pub fn index_of(&self, device: &DeviceRef) -> Option<u32> {
        self.entries
            .iter()
            .find(|e| &e.device == device)
            .map(|e| e.index)
    }
}

fn is_libvirt(node: Node, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace().is_none()
}

/// The boot sequence of the domain whose root element is `domain`.
pub fn effective(domain: Node) -> BootSequence {
    let devices = domain.children().find(|c| is_libvirt(*c, "devices"));
    // Per-device orders: every direct child of <devices> with a <boot order> of its own.
    let mut per_device: Vec<BootEntry> = Vec::new();
    if let Some(devices) = devices {
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        // Only libvirt's own elements count (the rewrite numbers devices the same way).
        for device in devices
            .children()
            .filter(|c| c.is_element() && c.tag_name().namespace().is_none())
        {
            let name = device.tag_name().name();
            let position = {
                let n = counts.entry(name).or_insert(0);
                let p = *n;
                *n += 1;
                p
            };
            let order = device
                .children()
                .filter(|c| is_libvirt(*c, "boot"))
                .find_map(|b| b.attribute("order"))
                .and_then(|o| o.trim().parse::<u32>().ok());
            if let Some(index) = order {
                per_device.push(BootEntry {
                    index,
                    device: DeviceRef {
                        element: name.to_string(),
                        position,
                    },
                    kind: None,
                });
            }
        }
    }
    if !per_device.is_empty() {
        per_device.sort_by(|a, b| (a.index, &a.device).cmp(&(b.index, &b.device)));
        return BootSequence {
            written: Written::PerDevice,
            entries: per_device,
        };
    }

    let os_kinds: Vec<OsBootKind> = domain
        .children()
        .filter(|c| is_libvirt(*c, "os"))
        .flat_map(|os| os.children().filter(|c| is_libvirt(*c, "boot")))
        .filter_map(|b| b.attribute("dev").and_then(OsBootKind::parse))
        .collect();
    let (written, kinds) = if os_kinds.is_empty() {
        (Written::Default, vec![OsBootKind::Hd])
    } else {
        (Written::OsBoot(os_kinds.clone()), os_kinds)
    };
    // A kind's index is the position of its last entry among the first four.
    let mut index_of_kind: Vec<(OsBootKind, u32)> = Vec::new();
    for (i, kind) in kinds.iter().take(MAX_OS_BOOT_ENTRIES).enumerate() {
        let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
        index_of_kind.retain(|(k, _)| k != kind);
        index_of_kind.push((*kind, index));
    }

    let mut entries = Vec::new();
    let disks: Vec<Node> = devices
        .map(|d| d.children().filter(|c| is_libvirt(*c, "disk")).collect())
        .unwrap_or_default();
    let order = devices
        .map(|d| disk_order::libvirt_order(&disk_order::order_keys(d)))
        .unwrap_or_default();
    let first_disk = |devices: &[&str]| {
        order.iter().copied().find(|&i| {
            disks
                .get(i)
                .is_some_and(|d| devices.contains(&d.attribute("device").unwrap_or("disk")))
        })
    };
    for (kind, index) in index_of_kind {
        let device = match kind {
            OsBootKind::Hd => first_disk(&["disk", "lun"]).map(DeviceRef::disk),
            OsBootKind::Cdrom => first_disk(&["cdrom"]).map(DeviceRef::disk),
            OsBootKind::Fd => first_disk(&["floppy"]).map(DeviceRef::disk),
            OsBootKind::Network => devices
                .and_then(|d| d.children().find(|c| is_libvirt(*c, "interface")))
                .map(|_| DeviceRef::interface(0)),
        };
        if let Some(device) = device {
            entries.push(BootEntry {
                index,
                device,
                kind: Some(kind),
            });
        }
    }
    entries.sort_by_key(|a| a.index);
    BootSequence { written, entries }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(xml: &str) -> BootSequence {
        let doc = roxmltree::Document::parse(xml).unwrap();
        effective(doc.root_element())
    }

    const DEVICES: &str = "<devices>\
        <disk device='disk'><target dev='hda' bus='ide'/></disk>\
        <disk device='disk'><target dev='vda' bus='virtio'/></disk>\
        <disk device='cdrom'><target dev='hdc' bus='ide'/></disk>\
        <disk device='floppy'><target dev='fda' bus='fdc'/></disk>\
        <interface type='user'/><interface type='user'/></devices>";

    fn summary(s: &BootSequence) -> Vec<(u32, String, usize)> {
        s.entries
            .iter()
            .map(|e| (e.index, e.device.element.clone(), e.device.position))
            .collect()
    }

    #[test]
    fn os_boot_matches_libvirt_9() {
        // The measured case of the module documentation.
        let s = sequence(&format!(
            "<domain><os><boot dev='cdrom'/><boot dev='hd'/><boot dev='network'/><boot dev='fd'/><bootmenu enable='yes'/></os>{DEVICES}</domain>"
        ));
        assert_eq!(
            summary(&s),
            [
                (1, "disk".into(), 2),
                (2, "disk".into(), 0),
                (3, "interface".into(), 0),
                (4, "disk".into(), 3)
            ]
        );
        // A kind named twice takes its last position; a fifth entry does not count.
        let s = sequence(&format!(
            "<domain><os><boot dev='hd'/><boot dev='cdrom'/><boot dev='hd'/></os>{DEVICES}</domain>"
        ));
        assert_eq!(summary(&s), [(2, "disk".into(), 2), (3, "disk".into(), 0)]);
        let s = sequence(&format!(
            "<domain><os><boot dev='hd'/><boot dev='hd'/><boot dev='hd'/><boot dev='hd'/><boot dev='cdrom'/></os>{DEVICES}</domain>"
        ));
        assert_eq!(summary(&s), [(4, "disk".into(), 0)]);
    }

    #[test]
    fn hd_follows_libvirts_disk_order_and_default_is_hd() {
        // vda (virtio) in front of hdb (ide): the virtio group comes first in the document.
        let s = sequence(
            "<domain><devices><disk><target dev='vdb' bus='virtio'/></disk><disk device='lun'><target dev='sda' bus='scsi'/></disk><disk><target dev='vda' bus='virtio'/></disk></devices></domain>",
        );
        assert_eq!(s.written, Written::Default);
        assert_eq!(summary(&s), [(1, "disk".into(), 2)]);
        // A LUN counts as a hard disk.
        let s = sequence(
            "<domain><os><boot dev='hd'/></os><devices><disk device='lun'><target dev='sda' bus='scsi'/></disk><disk><target dev='vda' bus='virtio'/></disk></devices></domain>",
        );
        assert_eq!(summary(&s), [(1, "disk".into(), 0)]);
        // Nothing of the kind: no entry.
        let s = sequence("<domain><os><boot dev='network'/></os><devices/></domain>");
        assert!(s.entries.is_empty());
    }

    #[test]
    fn foreign_elements_do_not_shift_positions() {
        let s = sequence(
            "<domain xmlns:x='urn:x'><devices><x:disk/><disk><target dev='hda'/></disk><disk><target dev='hdb'/><boot order='1'/></disk></devices></domain>",
        );
        assert_eq!(summary(&s), [(1, "disk".into(), 1)]);
    }

    #[test]
    fn per_device_orders_win() {
        let s = sequence(
            "<domain><devices><disk><target dev='vda' bus='virtio'/></disk><disk><target dev='hda' bus='ide'/><boot order='1'/></disk><interface type='user'><boot order='2'/></interface><hostdev mode='subsystem'><boot order='3'/></hostdev></devices></domain>",
        );
        assert_eq!(s.written, Written::PerDevice);
        assert_eq!(
            summary(&s),
            [
                (1, "disk".into(), 1),
                (2, "interface".into(), 0),
                (3, "hostdev".into(), 0)
            ]
        );
    }
}
