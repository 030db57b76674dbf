//! The boot-readiness verdict: will this Windows guest boot after its disk moves to virtio-blk or
//! virtio-scsi, and will its NIC come up on virtio-net — and if not, exactly why not.
//!
//! For each storage driver (viostor → virtio-blk, vioscsi → virtio-scsi) every check is recorded
//! with the evidence it was decided on (the key path and the value read, or the file path):
//! 1. the driver file the boot loader will load exists;
//! 2. the service exists with `Start`=0 (boot) and `Type`=1 (kernel driver) — `ErrorControl`,
//!    `Group` and `ImagePath` are informative;
//! 3. the virtio PCI id the guest will see on its machine type (legacy on i440fx, modern on q35)
//!    is bound to the driver — through the CriticalDeviceDatabase up to Windows 7 / 2008 R2, the
//!    DriverDatabase from Windows 8 (decided by whether `DriverDatabase` exists at the root of
//!    SYSTEM); both ids are reported;
//! 4. no device-installation policy denies the device.
//!
//! The NIC is ready when `netkvm.sys` is installed or its package is staged in the DriverStore
//! (Plug and Play installs it at first boot). A hive that is dirty and could not be replayed
//! caps every result at [`Readiness::Unknown`]. Hazards (dirty hives, hibernation, BitLocker,
//! dynamic disks, device-install restrictions, static IP addresses, the Server 2019+ SAN policy,
//! `CrashControl\AutoReboot`) are listed with their evidence whatever the verdict.
//!
//! This file is the verdict's vocabulary (targets, checks, readiness, hazards, the assessment);
//! `rules` decides it from the hives and files, `render` prints it for a person.

use serde::Serialize;

use crate::inspect::windows::WindowsFacts;

mod render;
mod rules;

pub use rules::{assess, assess_hives, hibernation_hazard, open_hive};

/// PCI vendor id of virtio devices (Red Hat, Inc.).
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// Setup class of storage controllers (`SCSIAdapter`).
pub const SCSI_ADAPTER_CLASS: &str = "{4D36E97B-E325-11CE-BFC1-08002BE10318}";
/// Setup class of network adapters (`Net`).
pub const NET_CLASS: &str = "{4D36E972-E325-11CE-BFC1-08002BE10318}";
/// Key of the device-installation restriction policy in SOFTWARE.
pub const RESTRICTIONS_KEY: &str = r"Policies\Microsoft\Windows\DeviceInstall\Restrictions";

/// Most subkeys or values examined under one key while searching (protects time on hostile
/// hives; real DriverDatabase\DeviceIds\PCI keys hold a few thousand).
const SCAN_LIMIT: usize = 100_000;
/// Most entries of one deny/allow list that are examined.
const LIST_LIMIT: usize = 4096;

pub use crate::domain::MachineFamily;

/// The id generation a guest of a machine family sees, if known: legacy (transitional) ids on
/// i440fx, modern ids on q35 (libvirt's plain `virtio` model), unknown otherwise.
pub fn generation_seen(machine: MachineFamily) -> Option<PciGeneration> {
    match machine {
        MachineFamily::I440fx => Some(PciGeneration::Legacy),
        MachineFamily::Q35 => Some(PciGeneration::Modern),
        MachineFamily::Other => None,
    }
}

/// Legacy (transitional, 0x1000 + n) or modern (virtio 1.0, 0x1040 + type) PCI device ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PciGeneration {
    Legacy,
    Modern,
}

impl PciGeneration {
    fn word(self) -> &'static str {
        match self {
            PciGeneration::Legacy => "legacy",
            PciGeneration::Modern => "modern",
        }
    }
}

/// A virtio storage driver and the bus it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageDriver {
    /// viostor: virtio-blk.
    Viostor,
    /// vioscsi: virtio-scsi.
    Vioscsi,
}

impl StorageDriver {
    /// Service and file name.
    pub fn service(self) -> &'static str {
        match self {
            StorageDriver::Viostor => "viostor",
            StorageDriver::Vioscsi => "vioscsi",
        }
    }

    /// The bus the driver makes bootable.
    pub fn target(self) -> Target {
        match self {
            StorageDriver::Viostor => Target::VirtioBlk,
            StorageDriver::Vioscsi => Target::VirtioScsi,
        }
    }

    /// PCI device id of the controller in the given generation.
    pub fn device_id(self, generation: PciGeneration) -> u16 {
        match (self, generation) {
            (StorageDriver::Viostor, PciGeneration::Legacy) => 0x1001,
            (StorageDriver::Viostor, PciGeneration::Modern) => 0x1042,
            (StorageDriver::Vioscsi, PciGeneration::Legacy) => 0x1004,
            (StorageDriver::Vioscsi, PciGeneration::Modern) => 0x1048,
        }
    }
}

/// virtio-net PCI device id in the given generation.
pub fn net_device_id(generation: PciGeneration) -> u16 {
    match generation {
        PciGeneration::Legacy => 0x1000,
        PciGeneration::Modern => 0x1041,
    }
}

/// What a check or a verdict is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Booting from a virtio-blk disk (viostor).
    VirtioBlk,
    /// Booting from a virtio-scsi disk (vioscsi).
    VirtioScsi,
    /// A virtio-net NIC (netkvm).
    Nic,
}

impl Target {
    /// Human label: "virtio-blk (viostor)".
    pub fn label(self) -> &'static str {
        match self {
            Target::VirtioBlk => "virtio-blk (viostor)",
            Target::VirtioScsi => "virtio-scsi (vioscsi)",
            Target::Nic => "virtio-net (netkvm)",
        }
    }
}

/// One check and what it was decided on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub target: Target,
    /// Stable name, e.g. `viostor Start=0 (boot)`.
    pub name: String,
    pub passed: bool,
    /// A failed required check makes the target not ready; a failed informative one is a warning.
    pub required: bool,
    /// The exact key path and value read, or the file path looked up.
    pub evidence: String,
}

/// The verdict for one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Readiness {
    /// Every required check passed.
    Ready,
    /// These required checks failed (their names).
    NotReady { failed: Vec<String> },
    /// The evidence cannot be trusted or read.
    Unknown { why: String },
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Readiness::Ready => f.write_str("ready"),
            Readiness::NotReady { failed } => {
                write!(f, "not ready (failed checks: {})", failed.join("; "))
            }
            Readiness::Unknown { why } => write!(f, "unknown ({why})"),
        }
    }
}

impl Readiness {
    /// "ready", "not-ready", "unknown".
    pub fn word(&self) -> &'static str {
        match self {
            Readiness::Ready => "ready",
            Readiness::NotReady { .. } => "not-ready",
            Readiness::Unknown { .. } => "unknown",
        }
    }

    /// One line: the word and the reasons.
    pub fn describe(&self) -> String {
        match self {
            Readiness::Ready => "ready".to_string(),
            Readiness::NotReady { failed } => format!("NOT READY: {}", failed.join("; ")),
            Readiness::Unknown { why } => format!("unknown: {why}"),
        }
    }
}

/// Something that can make the switch go wrong even when the drivers are ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Hazard {
    /// A hive's base block says changes live in its transaction logs.
    DirtyHive {
        hive: String,
        replayed: bool,
        evidence: String,
    },
    /// Hibernation or Fast Startup: the on-disk state is not what the guest will run.
    Hibernation { evidence: String },
    /// The NTFS volume was not cleanly unmounted (`$Volume` dirty flag).
    FilesystemDirty { evidence: String },
    /// A BitLocker-encrypted volume (cannot be inspected).
    #[serde(rename = "bitlocker")]
    BitLocker { evidence: String },
    /// A dynamic (LDM) disk: not supported as a system disk.
    DynamicDisk { evidence: String },
    /// A device-installation restriction policy exists.
    DeviceInstallRestrictions { evidence: String },
    /// Static IPv4 addresses bound to an existing adapter: they will not follow a new NIC.
    StaticIp {
        interface: String,
        adapter: Option<String>,
        addresses: Vec<String>,
        evidence: String,
    },
    /// Windows Server 2019+: its SAN policy may take data disks offline after the bus change.
    SanPolicy { evidence: String },
    /// `CrashControl\AutoReboot` = 1: a 0x7B reboots in a loop and the domain looks running.
    CrashAutoReboot { explicit: bool, evidence: String },
}

impl Hazard {
    /// The kind, as in the JSON `kind` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Hazard::DirtyHive { .. } => "dirty-hive",
            Hazard::Hibernation { .. } => "hibernation",
            Hazard::FilesystemDirty { .. } => "filesystem-dirty",
            Hazard::BitLocker { .. } => "bitlocker",
            Hazard::DynamicDisk { .. } => "dynamic-disk",
            Hazard::DeviceInstallRestrictions { .. } => "device-install-restrictions",
            Hazard::StaticIp { .. } => "static-ip",
            Hazard::SanPolicy { .. } => "san-policy",
            Hazard::CrashAutoReboot { .. } => "crash-auto-reboot",
        }
    }

    /// What was read to raise it.
    pub fn evidence(&self) -> &str {
        match self {
            Hazard::DirtyHive { evidence, .. }
            | Hazard::Hibernation { evidence }
            | Hazard::FilesystemDirty { evidence }
            | Hazard::BitLocker { evidence }
            | Hazard::DynamicDisk { evidence }
            | Hazard::DeviceInstallRestrictions { evidence }
            | Hazard::StaticIp { evidence, .. }
            | Hazard::SanPolicy { evidence }
            | Hazard::CrashAutoReboot { evidence, .. } => evidence,
        }
    }

    /// What it means for the operator, in one sentence.
    pub fn meaning(&self) -> String {
        match self {
            Hazard::DirtyHive {
                hive,
                replayed: true,
                ..
            } => {
                format!("{hive} hive was dirty; its transaction logs were replayed before reading")
            }
            Hazard::DirtyHive {
                hive,
                replayed: false,
                ..
            } => format!(
                "{hive} hive is dirty and its logs were not replayed: recent changes may be missing"
            ),
            Hazard::Hibernation { .. } => {
                "hibernated or Fast Startup: the guest will resume a state that is not on disk"
                    .into()
            }
            Hazard::FilesystemDirty { .. } => "the file system was not cleanly unmounted".into(),
            Hazard::BitLocker { .. } => "BitLocker volume: its contents cannot be inspected".into(),
            Hazard::DynamicDisk { .. } => "dynamic disk: not supported as a system disk".into(),
            Hazard::DeviceInstallRestrictions { .. } => {
                "a device-installation restriction policy exists and may block new devices".into()
            }
            Hazard::StaticIp {
                interface,
                adapter,
                addresses,
                ..
            } => format!(
                "static addresses {} on {}{} will not follow the NIC change; re-apply them",
                addresses.join(", "),
                interface,
                adapter
                    .as_ref()
                    .map(|a| format!(" ({a})"))
                    .unwrap_or_default()
            ),
            Hazard::SanPolicy { .. } => {
                "Windows Server 2019+: data disks may come up offline after the bus change".into()
            }
            Hazard::CrashAutoReboot { .. } => {
                "a boot failure (0x7B) reboots in a loop instead of staying on screen".into()
            }
        }
    }
}

/// Where the device bindings were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindingSource {
    /// `CCS\Control\CriticalDeviceDatabase` (Windows up to 7 / 2008 R2).
    CriticalDeviceDatabase,
    /// `SYSTEM\DriverDatabase` (Windows 8 / 2012 and later).
    DriverDatabase,
}

/// Everything decided about one Windows installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assessment {
    /// The system root directory, as given (e.g. `Windows`).
    pub system_root: String,
    pub machine: MachineFamily,
    /// The id generation the guest will see (None when the machine family is unknown).
    pub guest_sees: Option<PciGeneration>,
    pub facts: Option<WindowsFacts>,
    pub binding_source: Option<BindingSource>,
    pub blk: Readiness,
    pub scsi: Readiness,
    pub nic: Readiness,
    pub checks: Vec<Check>,
    pub hazards: Vec<Hazard>,
    /// Parts of the inspection that could not be completed (a hazard may be missing).
    pub incomplete: Vec<String>,
}

impl Assessment {
    /// An assessment where nothing could be inspected (unreadable image, network disk,
    /// BitLocker system volume…): every target is unknown for `why`.
    pub fn unknown(
        system_root: &str,
        machine: MachineFamily,
        why: &str,
        hazards: &[Hazard],
    ) -> Assessment {
        let unknown = Readiness::Unknown {
            why: why.to_string(),
        };
        Assessment {
            system_root: system_root.to_string(),
            machine,
            guest_sees: generation_seen(machine),
            facts: None,
            binding_source: None,
            blk: unknown.clone(),
            scsi: unknown.clone(),
            nic: unknown,
            checks: Vec::new(),
            hazards: hazards.to_vec(),
            incomplete: Vec::new(),
        }
    }

    /// The verdict for a target.
    pub fn readiness(&self, target: Target) -> &Readiness {
        match target {
            Target::VirtioBlk => &self.blk,
            Target::VirtioScsi => &self.scsi,
            Target::Nic => &self.nic,
        }
    }
}
