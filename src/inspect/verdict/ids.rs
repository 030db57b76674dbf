//! The PCI identifiers a virtio device presents to Windows, and how Windows spells them in the
//! registry.
//!
//! What QEMU presents (hw/virtio/virtio-pci.c, `virtio_pci_device_plugged`): vendor 1AF4; a
//! legacy or transitional device keeps device id 0x1000 + n, revision 0 and gets the subsystem id
//! of its virtio device type (net 1, block 2, SCSI 8) under subsystem vendor 1AF4; a modern-only
//! (virtio 1.0) device gets device id 0x1040 + type and revision 1 and keeps QEMU's default
//! subsystem 1AF4:1100 (the ids virtio-win's INF files list: `…&SUBSYS_11001AF4&REV_01`). The
//! class code is the one of the device model: 01 00 00 (SCSI storage controller) for virtio-blk
//! and virtio-scsi, 02 00 00 (Ethernet) for virtio-net. libvirt's plain `virtio` model is
//! transitional on i440fx (legacy ids) and modern on a q35 PCIe root port.
//!
//! What Windows derives from them (Microsoft, "Identifiers for PCI devices",
//! learn.microsoft.com/windows-hardware/drivers/install/identifiers-for-pci-devices): the hardware
//! ids `VEN&DEV&SUBSYS&REV`, `VEN&DEV&SUBSYS`, `VEN&DEV&REV`, `VEN&DEV`, `VEN&DEV&CC_ccsspp`,
//! `VEN&DEV&CC_ccss`, then the compatible ids `VEN&DEV&REV`, `VEN&DEV`, `VEN&CC_ccsspp`,
//! `VEN&CC_ccss`, `VEN`, `CC_ccsspp`, `CC_ccss` — each list from the most specific to the most
//! general. Plug and Play (and, up to Windows 7, the kernel's critical device lookup) tries them in
//! that order and the first id with a match wins.

use serde::Serialize;

/// PCI vendor id of virtio devices (Red Hat, Inc.).
pub const VIRTIO_VENDOR: u16 = 0x1af4;

/// The PCI function of a virtio device, as QEMU presents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PresentedDevice {
    pub vendor: u16,
    pub device: u16,
    pub subsystem_vendor: u16,
    pub subsystem: u16,
    pub revision: u8,
    /// Base class, subclass, programming interface.
    pub class: [u8; 3],
}

/// The virtio device types this tool cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioType {
    Net,
    Block,
    Scsi,
}

impl VirtioType {
    /// The virtio device type number (virtio 1.x specification, "Device Types").
    fn number(self) -> u16 {
        match self {
            VirtioType::Net => 1,
            VirtioType::Block => 2,
            VirtioType::Scsi => 8,
        }
    }

    /// Class code of QEMU's PCI model of the device.
    fn class(self) -> [u8; 3] {
        match self {
            VirtioType::Net => [0x02, 0x00, 0x00],
            VirtioType::Block | VirtioType::Scsi => [0x01, 0x00, 0x00],
        }
    }
}

impl PresentedDevice {
    /// The device QEMU presents for `kind`: `modern` = virtio 1.0 only (q35 PCIe), else legacy /
    /// transitional (i440fx).
    pub fn virtio(kind: VirtioType, modern: bool) -> PresentedDevice {
        if modern {
            PresentedDevice {
                vendor: VIRTIO_VENDOR,
                device: 0x1040 + kind.number(),
                subsystem_vendor: VIRTIO_VENDOR,
                subsystem: 0x1100,
                revision: 1,
                class: kind.class(),
            }
        } else {
            PresentedDevice {
                vendor: VIRTIO_VENDOR,
                device: match kind {
                    VirtioType::Net => 0x1000,
                    VirtioType::Block => 0x1001,
                    VirtioType::Scsi => 0x1004,
                },
                subsystem_vendor: VIRTIO_VENDOR,
                subsystem: kind.number(),
                revision: 0,
                class: kind.class(),
            }
        }
    }

    /// The hardware ids, most specific first.
    pub fn hardware_ids(&self) -> Vec<String> {
        let vd = format!("PCI\\VEN_{:04X}&DEV_{:04X}", self.vendor, self.device);
        let [c, s, p] = self.class;
        vec![
            format!(
                "{vd}&SUBSYS_{:04X}{:04X}&REV_{:02X}",
                self.subsystem, self.subsystem_vendor, self.revision
            ),
            format!(
                "{vd}&SUBSYS_{:04X}{:04X}",
                self.subsystem, self.subsystem_vendor
            ),
            format!("{vd}&REV_{:02X}", self.revision),
            vd.clone(),
            format!("{vd}&CC_{c:02X}{s:02X}{p:02X}"),
            format!("{vd}&CC_{c:02X}{s:02X}"),
        ]
    }

    /// The compatible ids, most specific first.
    pub fn compatible_ids(&self) -> Vec<String> {
        let v = format!("PCI\\VEN_{:04X}", self.vendor);
        let [c, s, p] = self.class;
        vec![
            format!("{v}&DEV_{:04X}&REV_{:02X}", self.device, self.revision),
            format!("{v}&DEV_{:04X}", self.device),
            format!("{v}&CC_{c:02X}{s:02X}{p:02X}"),
            format!("{v}&CC_{c:02X}{s:02X}"),
            v.clone(),
            format!("PCI\\CC_{c:02X}{s:02X}{p:02X}"),
            format!("PCI\\CC_{c:02X}{s:02X}"),
        ]
    }

    /// Every id in the order Windows tries them (hardware ids, then compatible ids; an id that
    /// appears in both lists counts once, at its first place).
    pub fn match_order(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for id in self.hardware_ids().into_iter().chain(self.compatible_ids()) {
            if !out.iter().any(|o| o == &id) {
                out.push(id);
            }
        }
        out
    }

    /// `PCI\VEN_1AF4&DEV_1001` — the short form for messages.
    pub fn short(&self) -> String {
        format!("PCI\\VEN_{:04X}&DEV_{:04X}", self.vendor, self.device)
    }
}

/// The CriticalDeviceDatabase key name of a device id: `\` replaced by `#` (as the kernel does
/// before its lookup; ReactOS ntoskrnl `IopFixupDeviceId` reimplements it).
pub fn cdd_key_name(id: &str) -> String {
    id.replace('\\', "#")
}

/// A device id as written in a hive, normalised for comparison: trimmed, `#` read as `\`, upper
/// case. `pci#ven_1af4&dev_1001` and `PCI\VEN_1AF4&DEV_1001` normalise alike.
pub fn normalize_id(id: &str) -> String {
    id.trim().replace('#', "\\").to_ascii_uppercase()
}

/// Whether a device id written in the registry (any case, `#` or `\`) is exactly `presented`.
/// A different SUBSYS, REV or class part, or a shorter or longer id, is another id.
pub fn same_id(written: &str, presented: &str) -> bool {
    normalize_id(written) == normalize_id(presented)
}

/// Where `id` sits among the ids `device` presents (0 = most specific), or `None` when the device
/// does not present it.
pub fn rank_of(device: &PresentedDevice, id: &str) -> Option<usize> {
    device.match_order().iter().position(|p| same_id(id, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_block_presents_the_documented_ids_in_order() {
        let d = PresentedDevice::virtio(VirtioType::Block, false);
        assert_eq!(
            d.match_order(),
            [
                r"PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00",
                r"PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4",
                r"PCI\VEN_1AF4&DEV_1001&REV_00",
                r"PCI\VEN_1AF4&DEV_1001",
                r"PCI\VEN_1AF4&DEV_1001&CC_010000",
                r"PCI\VEN_1AF4&DEV_1001&CC_0100",
                r"PCI\VEN_1AF4&CC_010000",
                r"PCI\VEN_1AF4&CC_0100",
                r"PCI\VEN_1AF4",
                r"PCI\CC_010000",
                r"PCI\CC_0100",
            ]
        );
    }

    #[test]
    fn modern_and_scsi_and_net_ids() {
        let blk = PresentedDevice::virtio(VirtioType::Block, true);
        assert_eq!(
            blk.hardware_ids()[0],
            r"PCI\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01"
        );
        let scsi = PresentedDevice::virtio(VirtioType::Scsi, false);
        assert_eq!(
            scsi.hardware_ids()[0],
            r"PCI\VEN_1AF4&DEV_1004&SUBSYS_00081AF4&REV_00"
        );
        let scsi = PresentedDevice::virtio(VirtioType::Scsi, true);
        assert_eq!(
            scsi.hardware_ids()[0],
            r"PCI\VEN_1AF4&DEV_1048&SUBSYS_11001AF4&REV_01"
        );
        let net = PresentedDevice::virtio(VirtioType::Net, false);
        assert_eq!(
            net.hardware_ids()[0],
            r"PCI\VEN_1AF4&DEV_1000&SUBSYS_00011AF4&REV_00"
        );
        assert_eq!(net.hardware_ids()[4], r"PCI\VEN_1AF4&DEV_1000&CC_020000");
        let net = PresentedDevice::virtio(VirtioType::Net, true);
        assert_eq!(net.short(), r"PCI\VEN_1AF4&DEV_1041");
    }

    #[test]
    fn ids_compare_without_case_and_with_either_separator() {
        let d = PresentedDevice::virtio(VirtioType::Block, false);
        assert_eq!(
            rank_of(&d, "pci#ven_1af4&dev_1001&subsys_00021af4&rev_00"),
            Some(0)
        );
        assert_eq!(rank_of(&d, r"PCI\VEN_1AF4&DEV_1001&REV_00"), Some(2));
        assert_eq!(rank_of(&d, "PCI#VEN_1AF4&DEV_1001"), Some(3));
        assert_eq!(rank_of(&d, " pci\\cc_0100 "), Some(10));
        // Another SUBSYS, another revision, another device: not presented.
        assert_eq!(
            rank_of(&d, "pci#ven_1af4&dev_1001&subsys_00031af4&rev_00"),
            None
        );
        assert_eq!(rank_of(&d, "PCI\\VEN_1AF4&DEV_1001&REV_01"), None);
        assert_eq!(rank_of(&d, "PCI\\VEN_1AF4&DEV_1042"), None);
        assert_eq!(rank_of(&d, "PCI\\VEN_1AF4&DEV_10011"), None);
        assert_eq!(rank_of(&d, "VEN_1AF4&DEV_1001"), None);
        assert_eq!(rank_of(&d, ""), None);
        assert_eq!(
            cdd_key_name(r"PCI\VEN_1AF4&DEV_1001"),
            "PCI#VEN_1AF4&DEV_1001"
        );
    }
}
