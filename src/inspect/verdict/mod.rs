//! The boot-readiness verdict: will this Windows guest boot after its disk moves to virtio-blk or
//! virtio-scsi, and will its NIC come up on virtio-net — and if not, exactly why not and what to
//! do about it.
//!
//! The rules follow how Windows starts a boot disk on a new PCI controller (each is cited where it
//! is checked):
//! 1. the boot loader reads the control set `SYSTEM\Select\Default` names (the one the next boot
//!    uses) and loads every boot-start driver of it: the driver's service must exist with
//!    `Start`=0 and `Type`=1, no `StartOverride` value may turn boot start off (Windows 8+), it
//!    must not be marked for deletion, and its image file must be a native driver of the
//!    Windows architecture — embedded-signed on 64-bit Windows;
//! 2. the kernel must know, before Plug and Play runs, that the controller's PCI id belongs to
//!    the driver: the first of the hardware and compatible ids QEMU presents on the guest's
//!    machine type that has an entry in the CriticalDeviceDatabase (up to Windows 7 / 2008 R2) or
//!    the DriverDatabase (Windows 8 / 2012 and later) must name the driver;
//! 3. every class filter of the storage classes (SCSIAdapter, DiskDrive) must be loadable at boot;
//! 4. no device-installation policy may deny the device.
//!
//! The NIC is ready when a netkvm driver package for the id the guest will see is staged in the
//! Driver Store (Plug and Play installs only staged packages).
//!
//! Each check has three outcomes: passed, failed, or unknown (could not be read, or read from a
//! dirty hive whose logs could not be replayed). A target is not ready when any required check
//! failed — whatever else is unknown —, unknown when none failed but one could not be decided,
//! and ready otherwise. Every failed check and every hazard carries a one-line remedy.
//!
//! This file is the verdict's vocabulary (targets, checks, readiness, hazards, the assessment);
//! `ids` says which PCI ids QEMU presents and how Windows spells them, `rules` decides the verdict
//! from the hives and files, `render` prints it for a person.

use serde::{Serialize, Serializer};

pub use crate::inspect::windows::DriverVersion;
use crate::inspect::windows::WindowsFacts;

mod ids;
mod render;
mod rules;

pub use ids::{
    cdd_key_name, normalize_id, rank_of, same_id, PresentedDevice, VirtioType, VIRTIO_VENDOR,
};
pub use rules::{assess, assess_hives, hibernation_hazard, open_hive};

/// Setup class of storage controllers (`SCSIAdapter`).
pub const SCSI_ADAPTER_CLASS: &str = "{4D36E97B-E325-11CE-BFC1-08002BE10318}";
/// Setup class of disks (`DiskDrive`).
pub const DISK_DRIVE_CLASS: &str = "{4D36E967-E325-11CE-BFC1-08002BE10318}";
/// Setup class of network adapters (`Net`).
pub const NET_CLASS: &str = "{4D36E972-E325-11CE-BFC1-08002BE10318}";
/// Key of the device-installation restriction policy in SOFTWARE.
pub const RESTRICTIONS_KEY: &str = r"Policies\Microsoft\Windows\DeviceInstall\Restrictions";

/// Most subkeys or values examined under one key while searching (protects time on hostile
/// hives).
const SCAN_LIMIT: usize = 100_000;
/// Most entries of one deny/allow or filter list that are examined.
const LIST_LIMIT: usize = 4096;
/// Largest INF file read for its device ids and `DriverVer` (virtio-win's are under 64 KiB).
const INF_LIMIT: u64 = 1 << 20;

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

    fn virtio_type(self) -> VirtioType {
        match self {
            StorageDriver::Viostor => VirtioType::Block,
            StorageDriver::Vioscsi => VirtioType::Scsi,
        }
    }

    /// PCI device id of the controller in the given generation.
    pub fn device_id(self, generation: PciGeneration) -> u16 {
        presented(self.virtio_type(), generation).device
    }

    /// The folder of the driver on the virtio-win ISO.
    fn iso_folder(self) -> &'static str {
        match self {
            StorageDriver::Viostor => "viostor",
            StorageDriver::Vioscsi => "vioscsi",
        }
    }
}

/// The device QEMU presents for a virtio type in a generation.
fn presented(kind: VirtioType, generation: PciGeneration) -> PresentedDevice {
    PresentedDevice::virtio(kind, generation == PciGeneration::Modern)
}

/// virtio-net PCI device id in the given generation.
pub fn net_device_id(generation: PciGeneration) -> u16 {
    presented(VirtioType::Net, generation).device
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

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Pass,
    Fail,
    /// The input could not be read, or was read from a dirty hive whose logs were not replayed.
    Unknown,
}

/// Where a check's input came from (a dirty, unreplayed hive makes its checks unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    System,
    Software,
    Files,
}

/// One check and what it was decided on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub target: Target,
    /// Stable name, e.g. `viostor Start=0 (boot)`.
    pub name: String,
    /// The outcome is [`Outcome::Pass`].
    pub passed: bool,
    pub outcome: Outcome,
    /// A failed required check makes the target not ready; a failed informative one is a warning.
    pub required: bool,
    /// The exact key path and value read, or the file path and what was read from it.
    pub evidence: String,
    /// What to do, when the check failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
    #[serde(skip)]
    source: Source,
}

impl Check {
    fn new(
        target: Target,
        name: impl Into<String>,
        required: bool,
        source: Source,
        passed: bool,
        evidence: impl Into<String>,
        remedy: Option<String>,
    ) -> Check {
        Check {
            target,
            name: name.into(),
            passed,
            outcome: if passed { Outcome::Pass } else { Outcome::Fail },
            required,
            evidence: evidence.into(),
            remedy: if passed { None } else { remedy },
            source,
        }
    }

    fn unknown(
        target: Target,
        name: impl Into<String>,
        required: bool,
        source: Source,
        why: impl Into<String>,
    ) -> Check {
        Check {
            target,
            name: name.into(),
            passed: false,
            outcome: Outcome::Unknown,
            required,
            evidence: why.into(),
            remedy: None,
            source,
        }
    }

    /// A check decided by `result`: `Ok((passed, evidence))`, or unknown with the error.
    fn decided(
        target: Target,
        name: impl Into<String>,
        required: bool,
        source: Source,
        result: anyhow::Result<(bool, String)>,
        remedy: Option<String>,
    ) -> Check {
        match result {
            Ok((passed, evidence)) => {
                Check::new(target, name, required, source, passed, evidence, remedy)
            }
            Err(e) => Check::unknown(target, name, required, source, format!("{e:#}")),
        }
    }

    /// The same check for another target.
    fn for_target(&self, target: Target) -> Check {
        Check {
            target,
            ..self.clone()
        }
    }
}

/// The verdict for one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Readiness {
    /// Every required check passed.
    Ready,
    /// These required checks failed (their names).
    NotReady { failed: Vec<String> },
    /// Nothing failed, but something could not be decided.
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

    /// Three-valued combination of a target's checks: not ready when a required check failed
    /// (whatever is unknown besides), unknown when none failed and one (or `extra`) could not be
    /// decided, ready otherwise.
    pub fn combine(checks: &[Check], extra_unknown: Option<String>) -> Readiness {
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| c.required && c.outcome == Outcome::Fail)
            .map(|c| c.name.clone())
            .collect();
        if !failed.is_empty() {
            return Readiness::NotReady { failed };
        }
        let mut unknown: Vec<String> = checks
            .iter()
            .filter(|c| c.required && c.outcome == Outcome::Unknown)
            .map(|c| format!("{}: {}", c.name, c.evidence))
            .collect();
        unknown.extend(extra_unknown);
        if unknown.is_empty() {
            Readiness::Ready
        } else {
            Readiness::Unknown {
                why: unknown.join("; "),
            }
        }
    }
}

/// Something that can make the switch go wrong even when the drivers are ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(remote = "Self", tag = "kind", rename_all = "kebab-case")]
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
    /// `Select\Current` ≠ `Select\Default`: the last boot used another control set than the next
    /// one will (the verdict reads the next boot's).
    ControlSetMismatch {
        current: u32,
        default: u32,
        evidence: String,
    },
    /// Memory integrity (hypervisor-enforced code integrity) is on: a driver that is not
    /// HVCI-compatible is refused at load, a boot driver so refused stops the boot.
    CodeIntegrity { evidence: String },
    /// A virtio driver's service is marked for deletion (`DeleteFlag`): it goes away at the next
    /// boot.
    PendingDeletion { service: String, evidence: String },
}

/// The JSON of a hazard: its own fields, plus what it means and what to do.
#[derive(Serialize)]
struct HazardJson {
    #[serde(flatten, with = "Hazard")]
    hazard: Hazard,
    meaning: String,
    remedy: String,
}

impl Serialize for Hazard {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        HazardJson {
            hazard: self.clone(),
            meaning: self.meaning(),
            remedy: self.remedy(),
        }
        .serialize(serializer)
    }
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
            Hazard::ControlSetMismatch { .. } => "control-set-mismatch",
            Hazard::CodeIntegrity { .. } => "code-integrity",
            Hazard::PendingDeletion { .. } => "pending-deletion",
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
            | Hazard::CrashAutoReboot { evidence, .. }
            | Hazard::ControlSetMismatch { evidence, .. }
            | Hazard::CodeIntegrity { evidence }
            | Hazard::PendingDeletion { evidence, .. } => evidence,
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
            Hazard::ControlSetMismatch {
                current, default, ..
            } => format!(
                "the last boot used ControlSet{current:03} but the next one uses ControlSet{default:03} (judged here): changes made in the running guest may not be in it"
            ),
            Hazard::CodeIntegrity { .. } => {
                "memory integrity (HVCI) is on: a boot driver that is not HVCI-compatible is refused and the boot stops"
                    .into()
            }
            Hazard::PendingDeletion { service, .. } => format!(
                "service {service} is marked for deletion: Windows removes it at the next boot"
            ),
        }
    }

    /// What to do about it, in one line (inside the guest or on the host).
    pub fn remedy(&self) -> String {
        match self {
            Hazard::DirtyHive { replayed: true, .. } => {
                "none needed; to be safe, boot the guest once and shut it down cleanly before converting".into()
            }
            Hazard::DirtyHive { .. } => {
                "host: boot the guest and shut it down cleanly from inside (`shutdown /s /t 0`, not a forced power-off), then inspect again".into()
            }
            Hazard::Hibernation { .. } => {
                "guest: `powercfg /h off` (turns off hibernation and Fast Startup), then `shutdown /s /t 0`; inspect again".into()
            }
            Hazard::FilesystemDirty { .. } => {
                "guest: `chkdsk C: /f` and a clean shutdown (`shutdown /s /t 0`), then inspect again".into()
            }
            Hazard::BitLocker { .. } => {
                "guest: check the drivers inside the guest, or decrypt (`manage-bde -off C:`) so the volume can be inspected".into()
            }
            Hazard::DynamicDisk { .. } => {
                "do not convert: a dynamic system disk is not supported; move the system to a basic disk first".into()
            }
            Hazard::DeviceInstallRestrictions { .. } => format!(
                r"guest: review the policy (`gpresult /h gp.html`, Computer Configuration > System > Device Installation > Device Installation Restrictions) or remove it: `reg delete HKLM\SOFTWARE\{RESTRICTIONS_KEY} /f`"
            ),
            Hazard::StaticIp { addresses, .. } => format!(
                "guest, after the switch: re-apply {} on the new adapter (`netsh interface ipv4 set address name=\"<new adapter>\" static <address> <mask> <gateway>`)",
                addresses.join(", ")
            ),
            Hazard::SanPolicy { .. } => {
                r#"guest: `reg add "HKLM\SYSTEM\CurrentControlSet\Services\partmgr\Parameters" /v SanPolicy /t REG_DWORD /d 1 /f` (OnlineAll), or bring the disks online after the switch (`diskpart`: `online disk`)"#.into()
            }
            Hazard::CrashAutoReboot { .. } => {
                r#"guest: `reg add "HKLM\SYSTEM\CurrentControlSet\Control\CrashControl" /v AutoReboot /t REG_DWORD /d 0 /f` so a 0x7B stays on screen"#.into()
            }
            Hazard::ControlSetMismatch { .. } => {
                "host: boot the guest once and shut it down cleanly so that the next boot's control set is the one in use, then inspect again".into()
            }
            Hazard::CodeIntegrity { .. } => {
                r#"guest: install a virtio-win build whose drivers are HVCI-compatible before converting, or turn memory integrity off: `reg add "HKLM\SYSTEM\CurrentControlSet\Control\DeviceGuard\Scenarios\HypervisorEnforcedCodeIntegrity" /v Enabled /t REG_DWORD /d 0 /f`"#.into()
            }
            Hazard::PendingDeletion { service, .. } => format!(
                "guest: reinstall the virtio-win driver {service} (virtio-win ISO, `pnputil`) so its service is not removed, then inspect again"
            ),
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

    /// One line per failed required check and per hazard: what to do. (Informative checks that
    /// failed keep their remedy in the check, shown as a warning.)
    pub fn remedies(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for check in &self.checks {
            if let (Outcome::Fail, true, Some(remedy)) =
                (check.outcome, check.required, &check.remedy)
            {
                let line = format!("{}: {remedy}", check.name);
                if !out.contains(&line) {
                    out.push(line);
                }
            }
        }
        for hazard in &self.hazards {
            out.push(format!("{}: {}", hazard.kind(), hazard.remedy()));
        }
        out
    }
}
