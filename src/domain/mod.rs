//! Facts read from one libvirt domain XML: devices, boot disk, Windows hints, management layer.
//!
//! Pure: a string in, [`DomainFacts`] out. What only libvirt's API knows (state, persistence, id)
//! is added by the host layer. The rules follow libvirt's domain XML format
//! (<https://libvirt.org/formatdomain.html>).
//!
//! Owns: the domain model every pipeline shares — devices, boot form, machine family, Windows
//! hints, management layer — [`disk_order`] (the order libvirt keeps disks in, which decides
//! the boot disk) and [`boot_order`] (which devices boot, in which order, as QEMU is told). Imports nothing else of this crate: the inspection, the planner, the host
//! layer and the commands all read domains through it.

pub mod boot_order;
pub mod disk_order;

use roxmltree::{Document, Node};
use serde::Serialize;

/// Namespace of libosinfo's domain metadata.
pub const LIBOSINFO_NS: &str = "http://libosinfo.org/xmlns/libvirt/domain/1.0";
/// Namespace prefix of OpenStack Nova's instance metadata (`…/nova/1.0`, `…/nova/1.1`, …).
pub const NOVA_NS_PREFIX: &str = "http://openstack.org/xmlns/libvirt/nova/";
/// Namespace of oVirt/RHV metadata.
pub const OVIRT_NS: &str = "http://ovirt.org/vm/1.0";
/// Namespace of OpenNebula metadata.
pub const OPENNEBULA_NS: &str = "http://opennebula.org/xmlns/libvirt/1.0";

/// The longest title or description carried into reports (characters); longer ones end in `…`.
pub const MAX_FREE_TEXT: usize = 4096;

/// NIC models that QEMU emulates in software (slow); an absent model is emulated too.
pub const EMULATED_NIC_MODELS: &[&str] = &[
    "e1000", "e1000e", "rtl8139", "ne2k_pci", "pcnet", "i82551", "i82557b", "i82559er",
];

/// Why a domain XML could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DomainXmlError {
    #[error("malformed domain XML: {0}")]
    Syntax(#[from] roxmltree::Error),
    #[error("not a domain definition: the root element is <{0}>")]
    NotADomain(String),
    #[error("domain XML has no <name>")]
    NoName,
}

/// The PCI topology family of the machine type; decides which virtio PCI ids Windows will see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineFamily {
    /// `pc`, `pc-i440fx-*`: conventional PCI, virtio devices show their legacy (transitional) ids.
    I440fx,
    /// `q35`, `pc-q35-*`: PCIe, libvirt's plain `virtio` model shows the modern (1.0) ids.
    Q35,
    /// Anything else (or no machine attribute).
    Other,
}

impl MachineFamily {
    pub fn from_machine(machine: Option<&str>) -> MachineFamily {
        match machine {
            Some(m) if m == "q35" || m.starts_with("pc-q35") => MachineFamily::Q35,
            Some(m) if m == "pc" || m.starts_with("pc-i440fx") || m.starts_with("pc-") => {
                MachineFamily::I440fx
            }
            _ => MachineFamily::Other,
        }
    }
}

/// Firmware the guest boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    Bios,
    Uefi,
}

/// Where a hint that the guest runs Windows came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HintSource {
    /// `<libosinfo:os id='http://microsoft.com/win/…'/>`.
    Libosinfo,
    /// `<features><hyperv>` enlightenments.
    Hyperv,
    /// `<clock><timer name='hypervclock'>`.
    Hypervclock,
    /// `<clock offset='localtime'>` (Windows keeps the RTC in local time).
    LocaltimeClock,
    /// Name, title or description mentions Windows (weak).
    Text,
}

/// One reason to believe the guest runs Windows, with what was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowsHint {
    pub source: HintSource,
    pub detail: String,
}

/// The `device` attribute of a `<disk>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskDevice {
    Disk,
    Cdrom,
    Floppy,
    Lun,
    Other(String),
}

/// The bus of a disk's `<target>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskBus {
    Ide,
    Sata,
    Scsi,
    Virtio,
    Usb,
    Fdc,
    Xen,
    Sd,
    Other(String),
}

impl DiskBus {
    fn parse(s: &str) -> DiskBus {
        match s {
            "ide" => DiskBus::Ide,
            "sata" => DiskBus::Sata,
            "scsi" => DiskBus::Scsi,
            "virtio" => DiskBus::Virtio,
            "usb" => DiskBus::Usb,
            "fdc" => DiskBus::Fdc,
            "xen" => DiskBus::Xen,
            "sd" => DiskBus::Sd,
            other => DiskBus::Other(other.to_string()),
        }
    }

    /// libvirt's name for the bus.
    pub fn as_str(&self) -> &str {
        match self {
            DiskBus::Ide => "ide",
            DiskBus::Sata => "sata",
            DiskBus::Scsi => "scsi",
            DiskBus::Virtio => "virtio",
            DiskBus::Usb => "usb",
            DiskBus::Fdc => "fdc",
            DiskBus::Xen => "xen",
            DiskBus::Sd => "sd",
            DiskBus::Other(s) => s,
        }
    }

    /// libvirt's default bus for a target name when `<target bus>` is absent.
    fn from_target_prefix(dev: &str) -> DiskBus {
        if dev.starts_with("hd") {
            DiskBus::Ide
        } else if dev.starts_with("sd") {
            DiskBus::Scsi
        } else if dev.starts_with("vd") {
            DiskBus::Virtio
        } else if dev.starts_with("xvd") {
            DiskBus::Xen
        } else if dev.starts_with("fd") {
            DiskBus::Fdc
        } else {
            DiskBus::Other(String::new())
        }
    }
}

impl std::fmt::Display for DiskBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a disk's data lives (`<disk type>` and its `<source>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum DiskSource {
    File {
        path: String,
    },
    Block {
        dev: String,
    },
    Network {
        protocol: String,
        name: Option<String>,
        hosts: Vec<String>,
    },
    Volume {
        pool: String,
        volume: String,
    },
    Dir {
        path: String,
    },
    /// No `<source>` (an empty CD-ROM drive) or a type this tool does not read.
    None {
        disk_type: String,
    },
}

impl DiskSource {
    /// A short human form: the path, `rbd:pool/image`, `volume:pool/vol`, or `-`.
    pub fn display(&self) -> String {
        match self {
            DiskSource::File { path } | DiskSource::Dir { path } => path.clone(),
            DiskSource::Block { dev } => dev.clone(),
            DiskSource::Network { protocol, name, .. } => {
                format!("{protocol}:{}", name.as_deref().unwrap_or(""))
            }
            DiskSource::Volume { pool, volume } => format!("volume:{pool}/{volume}"),
            DiskSource::None { .. } => "-".to_string(),
        }
    }
}

/// One `<disk>` element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disk {
    /// Position among the domain's `<disk>` elements, in document order (0-based).
    pub position: usize,
    pub device: DiskDevice,
    pub bus: DiskBus,
    /// `<target dev>`, e.g. `hda`.
    pub target: String,
    pub source: DiskSource,
    /// `<driver type>`: the declared image format (`raw`, `qcow2`, …).
    pub format: Option<String>,
    /// Per-device `<boot order='N'/>`.
    pub boot_order: Option<u32>,
    /// Has an `<address type='drive'>` (ide/sata/scsi addressing).
    pub has_drive_address: bool,
    pub readonly: bool,
    /// Declared `<backingStore>` formats, outermost first (when libvirt lists the chain).
    pub backing_formats: Vec<String>,
}

impl Disk {
    /// A hard disk (not a CD-ROM, floppy or LUN pass-through).
    pub fn is_hard_disk(&self) -> bool {
        self.device == DiskDevice::Disk
    }
}

/// One `<interface>` element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nic {
    /// Position among the domain's `<interface>` elements, in document order (0-based).
    pub position: usize,
    /// `<interface type>`: network, bridge, user, direct, …
    pub kind: String,
    /// `<model type>`; `None` when the element is absent (QEMU then picks an emulated NIC).
    pub model: Option<String>,
    pub mac: Option<String>,
    /// Network or bridge name, where there is one.
    pub source: Option<String>,
}

impl Nic {
    /// The NIC is emulated in software: a known emulated model, or no model at all.
    pub fn is_emulated(&self) -> bool {
        match &self.model {
            None => true,
            Some(m) => EMULATED_NIC_MODELS.contains(&m.as_str()),
        }
    }

    /// The model for display: the model name or `(none)`.
    pub fn model_display(&self) -> &str {
        self.model.as_deref().unwrap_or("(none)")
    }
}

/// One `<controller>` element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Controller {
    pub kind: String,
    pub index: Option<u32>,
    pub model: Option<String>,
}

/// How the domain says what to boot from. libvirt refuses a mix of the two explicit forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", content = "devices", rename_all = "kebab-case")]
pub enum BootForm {
    /// Per-device `<boot order='N'/>` elements.
    PerDevice,
    /// `<os><boot dev='…'/>` elements, in order.
    OsBoot(Vec<String>),
    /// Neither (libvirt's default: the first hard disk).
    Default,
}

/// A management layer that regenerates the domain's XML (so a libvirt edit does not last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagerKind {
    CloudStack,
    Nova,
    Ovirt,
    OpenNebula,
}

impl ManagerKind {
    pub fn name(&self) -> &'static str {
        match self {
            ManagerKind::CloudStack => "Apache CloudStack",
            ManagerKind::Nova => "OpenStack Nova",
            ManagerKind::Ovirt => "oVirt/RHV",
            ManagerKind::OpenNebula => "OpenNebula",
        }
    }
}

/// The management layer that owns the domain, with the evidence and where the durable change is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manager {
    pub kind: ManagerKind,
    pub evidence: Vec<String>,
    /// What the operator must change in the manager for the switch to last.
    pub durable_change: String,
}

/// Everything the report, the planner and the inspection need from one domain XML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainFacts {
    pub name: String,
    pub uuid: Option<String>,
    /// `<domain type>`: kvm, qemu, …
    pub domain_type: String,
    /// `<os><type machine>` as written (`pc-i440fx-7.2`, `q35`, …).
    pub machine: Option<String>,
    pub machine_family: MachineFamily,
    pub firmware: Firmware,
    pub title: Option<String>,
    pub description: Option<String>,
    pub windows_hints: Vec<WindowsHint>,
    pub disks: Vec<Disk>,
    pub nics: Vec<Nic>,
    pub controllers: Vec<Controller>,
    pub boot_form: BootForm,
    /// Index into `disks` of the disk the guest boots from, if it boots from a hard disk.
    pub boot_disk: Option<usize>,
    pub manager: Option<Manager>,
    pub on_poweroff: Option<String>,
    pub on_reboot: Option<String>,
    pub on_crash: Option<String>,
    /// A `<channel>` named `org.qemu.guest_agent.0` exists.
    pub guest_agent_channel: bool,
}

/// Why a domain is (or is not) a conversion candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidacy {
    /// Windows is hinted by the XML (never certain until the image is read).
    pub windows_hinted: bool,
    /// The boot disk's bus when it is `ide` or `sata`.
    pub boot_disk_bus: Option<DiskBus>,
    /// Indices into `nics` of the emulated NICs.
    pub emulated_nics: Vec<usize>,
    /// Windows-hinted and (IDE/SATA boot disk or an emulated NIC).
    pub is_candidate: bool,
}

impl DomainFacts {
    /// The disk the guest boots from.
    pub fn boot_disk(&self) -> Option<&Disk> {
        self.boot_disk.and_then(|i| self.disks.get(i))
    }

    pub fn is_windows_hinted(&self) -> bool {
        !self.windows_hints.is_empty()
    }

    /// Whether the domain is a candidate for the switch to virtio, and why.
    pub fn candidacy(&self) -> Candidacy {
        let windows_hinted = self.is_windows_hinted();
        let boot_disk_bus = self
            .boot_disk()
            .map(|d| d.bus.clone())
            .filter(|b| matches!(b, DiskBus::Ide | DiskBus::Sata));
        let emulated_nics: Vec<usize> = self
            .nics
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_emulated())
            .map(|(i, _)| i)
            .collect();
        let is_candidate = windows_hinted && (boot_disk_bus.is_some() || !emulated_nics.is_empty());
        Candidacy {
            windows_hinted,
            boot_disk_bus,
            emulated_nics,
            is_candidate,
        }
    }
}

/// Parse one domain XML into facts.
pub fn parse_domain(xml: &str) -> Result<DomainFacts, DomainXmlError> {
    let doc = Document::parse_with_options(
        xml,
        roxmltree::ParsingOptions {
            allow_dtd: false,
            ..Default::default()
        },
    )?;
    let root = doc.root_element();
    if root.tag_name().name() != "domain" {
        return Err(DomainXmlError::NotADomain(
            root.tag_name().name().to_string(),
        ));
    }
    let name = child_text(root, "name").ok_or(DomainXmlError::NoName)?;
    let uuid = child_text(root, "uuid");
    let domain_type = root.attribute("type").unwrap_or("").to_string();
    // Free text from the definition is reported, not processed: keep reports bounded.
    let title = child_text(root, "title").map(|t| shorten(&t, MAX_FREE_TEXT));
    let description = child_text(root, "description").map(|t| shorten(&t, MAX_FREE_TEXT));

    let os = child(root, "os");
    let machine = os
        .and_then(|o| child(o, "type"))
        .and_then(|t| t.attribute("machine"))
        .map(str::to_string);
    let firmware = detect_firmware(os);
    let os_boot: Vec<String> = os
        .map(|o| {
            children(o, "boot")
                .filter_map(|b| b.attribute("dev").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();

    let devices = child(root, "devices");
    let disks: Vec<Disk> = devices
        .map(|d| {
            children(d, "disk")
                .enumerate()
                .map(|(i, n)| parse_disk(i, n))
                .collect()
        })
        .unwrap_or_default();
    let nics: Vec<Nic> = devices
        .map(|d| {
            children(d, "interface")
                .enumerate()
                .map(|(i, n)| parse_nic(i, n))
                .collect()
        })
        .unwrap_or_default();
    let controllers: Vec<Controller> = devices
        .map(|d| {
            children(d, "controller")
                .map(|c| Controller {
                    kind: c.attribute("type").unwrap_or("").to_string(),
                    index: c.attribute("index").and_then(|i| i.parse().ok()),
                    model: c.attribute("model").map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default();
    let guest_agent_channel = devices
        .map(|d| {
            children(d, "channel").any(|c| {
                child(c, "target").and_then(|t| t.attribute("name"))
                    == Some("org.qemu.guest_agent.0")
            })
        })
        .unwrap_or(false);
    let any_device_boot_order = devices
        .map(|d| {
            d.descendants()
                .any(|n| n.has_tag_name("boot") && n.attribute("order").is_some())
        })
        .unwrap_or(false);

    let boot_form = if any_device_boot_order {
        BootForm::PerDevice
    } else if !os_boot.is_empty() {
        BootForm::OsBoot(os_boot)
    } else {
        BootForm::Default
    };
    let disk_order = devices
        .map(|d| {
            crate::domain::disk_order::libvirt_order(&crate::domain::disk_order::order_keys(d))
        })
        .unwrap_or_default();
    let boot_disk = find_boot_disk(&disks, &boot_form, &disk_order);

    let windows_hints = windows_hints(root, &name, title.as_deref(), description.as_deref());
    let manager = detect_manager(root, &name, description.as_deref());

    Ok(DomainFacts {
        name,
        uuid,
        domain_type,
        machine_family: MachineFamily::from_machine(machine.as_deref()),
        machine,
        firmware,
        title,
        description,
        windows_hints,
        disks,
        nics,
        controllers,
        boot_form,
        boot_disk,
        manager,
        on_poweroff: child_text(root, "on_poweroff"),
        on_reboot: child_text(root, "on_reboot"),
        on_crash: child_text(root, "on_crash"),
        guest_agent_channel,
    })
}

/// The boot disk: the hard disk with the lowest per-device boot order; otherwise, when the
/// domain boots from `hd` (explicitly or by default), the first hard disk in libvirt's disk order
/// (see [`crate::domain::disk_order`]; the same as document order for XML that libvirt wrote).
fn find_boot_disk(disks: &[Disk], form: &BootForm, order: &[usize]) -> Option<usize> {
    let first_hard_disk = || {
        order
            .iter()
            .copied()
            .find(|&i| disks.get(i).is_some_and(Disk::is_hard_disk))
    };
    match form {
        BootForm::PerDevice => disks
            .iter()
            .enumerate()
            .filter(|(_, d)| d.is_hard_disk())
            .filter_map(|(i, d)| d.boot_order.map(|o| (o, i)))
            .min()
            .map(|(_, i)| i),
        BootForm::OsBoot(devs) => {
            if devs.iter().any(|d| d == "hd") {
                first_hard_disk()
            } else {
                None
            }
        }
        BootForm::Default => first_hard_disk(),
    }
}

fn detect_firmware(os: Option<Node>) -> Firmware {
    let Some(os) = os else {
        return Firmware::Bios;
    };
    if os.attribute("firmware") == Some("efi") {
        return Firmware::Uefi;
    }
    match child(os, "loader") {
        Some(l) if l.attribute("type") == Some("pflash") => Firmware::Uefi,
        Some(l) => {
            let path = l.text().unwrap_or("").to_ascii_lowercase();
            if path.contains("ovmf") || path.contains("edk2") || path.contains("efi") {
                Firmware::Uefi
            } else {
                Firmware::Bios
            }
        }
        None => Firmware::Bios,
    }
}

fn parse_disk(position: usize, n: Node) -> Disk {
    let device = match n.attribute("device").unwrap_or("disk") {
        "disk" => DiskDevice::Disk,
        "cdrom" => DiskDevice::Cdrom,
        "floppy" => DiskDevice::Floppy,
        "lun" => DiskDevice::Lun,
        other => DiskDevice::Other(other.to_string()),
    };
    let target_node = child(n, "target");
    let target = target_node
        .and_then(|t| t.attribute("dev"))
        .unwrap_or("")
        .to_string();
    let bus = match target_node.and_then(|t| t.attribute("bus")) {
        Some(b) => DiskBus::parse(b),
        None => DiskBus::from_target_prefix(&target),
    };
    let disk_type = n.attribute("type").unwrap_or("file");
    let src = child(n, "source");
    let source = match (disk_type, src) {
        ("file", Some(s)) if s.attribute("file").is_some() => DiskSource::File {
            path: s.attribute("file").unwrap_or("").to_string(),
        },
        ("block", Some(s)) if s.attribute("dev").is_some() => DiskSource::Block {
            dev: s.attribute("dev").unwrap_or("").to_string(),
        },
        ("dir", Some(s)) if s.attribute("dir").is_some() => DiskSource::Dir {
            path: s.attribute("dir").unwrap_or("").to_string(),
        },
        ("network", Some(s)) => DiskSource::Network {
            protocol: s.attribute("protocol").unwrap_or("").to_string(),
            name: s.attribute("name").map(str::to_string),
            hosts: children(s, "host")
                .map(|h| match h.attribute("port") {
                    Some(p) => format!("{}:{p}", h.attribute("name").unwrap_or("")),
                    None => h.attribute("name").unwrap_or("").to_string(),
                })
                .collect(),
        },
        ("volume", Some(s)) => DiskSource::Volume {
            pool: s.attribute("pool").unwrap_or("").to_string(),
            volume: s.attribute("volume").unwrap_or("").to_string(),
        },
        (t, _) => DiskSource::None {
            disk_type: t.to_string(),
        },
    };
    let format = child(n, "driver")
        .and_then(|d| d.attribute("type"))
        .map(str::to_string);
    let mut backing_formats = Vec::new();
    let mut bs = child(n, "backingStore");
    // A chain longer than this is not followed (the XML is bounded, but keep loops bounded too).
    while let Some(b) = bs {
        if backing_formats.len() >= 16 {
            break;
        }
        match child(b, "format").and_then(|f| f.attribute("type")) {
            Some(f) => backing_formats.push(f.to_string()),
            None => break,
        }
        bs = child(b, "backingStore");
    }
    Disk {
        position,
        device,
        bus,
        target,
        source,
        format,
        boot_order: child(n, "boot")
            .and_then(|b| b.attribute("order"))
            .and_then(|o| o.parse().ok()),
        has_drive_address: child(n, "address").and_then(|a| a.attribute("type")) == Some("drive"),
        readonly: child(n, "readonly").is_some(),
        backing_formats,
    }
}

fn parse_nic(position: usize, n: Node) -> Nic {
    let source = child(n, "source").and_then(|s| {
        s.attribute("network")
            .or_else(|| s.attribute("bridge"))
            .or_else(|| s.attribute("dev"))
            .map(str::to_string)
    });
    Nic {
        position,
        kind: n.attribute("type").unwrap_or("").to_string(),
        model: child(n, "model")
            .and_then(|m| m.attribute("type"))
            .map(str::to_string),
        mac: child(n, "mac")
            .and_then(|m| m.attribute("address"))
            .map(str::to_string),
        source,
    }
}

fn windows_hints(
    root: Node,
    name: &str,
    title: Option<&str>,
    description: Option<&str>,
) -> Vec<WindowsHint> {
    let mut hints = Vec::new();
    if let Some(meta) = child(root, "metadata") {
        for n in meta.descendants() {
            if n.tag_name().namespace() == Some(LIBOSINFO_NS) && n.tag_name().name() == "os" {
                if let Some(id) = n.attribute("id") {
                    if id.contains("microsoft.com/win") {
                        hints.push(WindowsHint {
                            source: HintSource::Libosinfo,
                            detail: id.to_string(),
                        });
                    }
                }
            }
        }
    }
    if let Some(hv) = child(root, "features").and_then(|f| child(f, "hyperv")) {
        let mut on: Vec<&str> = hv
            .children()
            .filter(|c| c.is_element() && c.attribute("state") != Some("off"))
            .map(|c| c.tag_name().name())
            .collect();
        on.truncate(16);
        hints.push(WindowsHint {
            source: HintSource::Hyperv,
            detail: if on.is_empty() {
                "<hyperv> present".to_string()
            } else {
                format!("enlightenments: {}", on.join(","))
            },
        });
    }
    if let Some(clock) = child(root, "clock") {
        if children(clock, "timer").any(|t| {
            t.attribute("name") == Some("hypervclock") && t.attribute("present") != Some("no")
        }) {
            hints.push(WindowsHint {
                source: HintSource::Hypervclock,
                detail: "timer hypervclock present".to_string(),
            });
        }
        if clock.attribute("offset") == Some("localtime") {
            hints.push(WindowsHint {
                source: HintSource::LocaltimeClock,
                detail: "clock offset='localtime'".to_string(),
            });
        }
    }
    for (what, text) in [
        ("name", Some(name)),
        ("title", title),
        ("description", description),
    ] {
        if let Some(t) = text {
            if mentions_windows(t) {
                hints.push(WindowsHint {
                    source: HintSource::Text,
                    detail: format!("{what}: {}", shorten(t, 60)),
                });
            }
        }
    }
    hints
}

fn mentions_windows(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.contains("windows")
        || l.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
            w.starts_with("win")
                && w.len() > 3
                && w[3..]
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == 'k' || c == 'r')
        })
}

fn shorten(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// CloudStack user VM names: `i-<account id>-<vm id>-VM`.
pub fn is_cloudstack_vm_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.len() == 4
        && parts[0] == "i"
        && parts[3] == "VM"
        && [parts[1], parts[2]]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

fn detect_manager(root: Node, name: &str, description: Option<&str>) -> Option<Manager> {
    // Metadata namespaces are the strongest evidence.
    if let Some(meta) = child(root, "metadata") {
        for n in meta.children().filter(|n| n.is_element()) {
            let ns = n.tag_name().namespace().unwrap_or("");
            if ns.starts_with(NOVA_NS_PREFIX) {
                let mut evidence = vec![format!("metadata <{}> in {ns}", n.tag_name().name())];
                if name.starts_with("instance-") {
                    evidence.push(format!("name {name}"));
                }
                let display = n
                    .descendants()
                    .find(|d| d.tag_name().name() == "name" && d.tag_name().namespace() == Some(ns))
                    .and_then(|d| d.text())
                    .map(|s| s.trim().to_string());
                let who = display
                    .map(|d| format!("instance \"{d}\""))
                    .unwrap_or_else(|| "the instance".to_string());
                return Some(Manager {
                    kind: ManagerKind::Nova,
                    evidence,
                    durable_change: format!(
                        "set the image properties hw_disk_bus=virtio (or scsi) and hw_vif_model=virtio on the image of {who} (or rebuild it from such an image), then stop and start it through Nova"
                    ),
                });
            }
            if ns == OVIRT_NS {
                return Some(Manager {
                    kind: ManagerKind::Ovirt,
                    evidence: vec![format!("metadata in {ns}")],
                    durable_change: "change the disk interface to VirtIO (or VirtIO-SCSI) and the NIC type to VirtIO in the oVirt/RHV administration portal, then stop and start the VM there".to_string(),
                });
            }
            if ns == OPENNEBULA_NS {
                return Some(Manager {
                    kind: ManagerKind::OpenNebula,
                    evidence: vec![format!("metadata in {ns}")],
                    durable_change: "set DEV_PREFIX=\"vd\" on the disks and MODEL=\"virtio\" on the NICs in the OpenNebula VM template, then undeploy and resume the VM through OpenNebula".to_string(),
                });
            }
        }
    }
    // CloudStack leaves no metadata; sysinfo, naming and the description are its marks.
    let mut evidence = Vec::new();
    if let Some(sys) = child(root, "sysinfo") {
        for e in sys.descendants().filter(|e| e.has_tag_name("entry")) {
            let v = e.text().unwrap_or("").trim();
            if v == "Apache Software Foundation" || v == "CloudStack KVM Hypervisor" {
                evidence.push(format!(
                    "sysinfo {}='{v}'",
                    e.attribute("name").unwrap_or("entry")
                ));
            }
        }
    }
    let named_like_cloudstack = is_cloudstack_vm_name(name);
    if named_like_cloudstack {
        evidence.push(format!("name {name} (CloudStack user VM pattern i-N-N-VM)"));
    }
    let sysinfo_says_so = evidence.iter().any(|e| e.starts_with("sysinfo"));
    if sysinfo_says_so || named_like_cloudstack {
        if let Some(d) = description.filter(|d| !d.trim().is_empty()) {
            evidence.push(format!("description (guest OS type) '{}'", shorten(d, 60)));
        }
        return Some(Manager {
            kind: ManagerKind::CloudStack,
            evidence,
            durable_change: format!(
                "in CloudStack, set the VM details rootDiskController=virtio (or scsi) and nicAdapter=virtio on VM {name} (or change its OS type to \"Windows PV\"), then stop and start it through CloudStack"
            ),
        });
    }
    None
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| {
        c.is_element() && c.tag_name().name() == name && c.tag_name().namespace().is_none()
    })
}

fn children<'a, 'i: 'a>(n: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.children().filter(move |c| {
        c.is_element() && c.tag_name().name() == name && c.tag_name().namespace().is_none()
    })
}

fn child_text(n: Node, name: &str) -> Option<String> {
    child(n, name)
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOUDSTACK: &str = r#"<domain type='kvm' id='3'>
  <name>i-2-34-VM</name>
  <uuid>5b1e3a0e-6a5c-4a8e-9d49-0c3e2c8f2a11</uuid>
  <description>Windows Server 2008 R2 (64-bit)</description>
  <sysinfo type='smbios'>
    <system>
      <entry name='manufacturer'>Apache Software Foundation</entry>
      <entry name='product'>CloudStack KVM Hypervisor</entry>
    </system>
  </sysinfo>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='cdrom'/><boot dev='hd'/></os>
  <features><acpi/><apic/><hyperv><relaxed state='on'/><vapic state='on'/><spinlocks state='on' retries='8191'/></hyperv></features>
  <clock offset='localtime'><timer name='hypervclock' present='yes'/></clock>
  <devices>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/mnt/pri/3a1b.qcow2'/>
      <target dev='hda' bus='ide'/>
      <address type='drive' controller='0' bus='0' target='0' unit='0'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/mnt/pri/data.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <interface type='bridge'><mac address='02:00:3e:8c:00:05'/><source bridge='cloudbr0'/><model type='e1000'/></interface>
  </devices>
</domain>"#;

    #[test]
    fn cloudstack_guest_facts() {
        let f = parse_domain(CLOUDSTACK).unwrap();
        assert_eq!(f.name, "i-2-34-VM");
        assert_eq!(f.machine_family, MachineFamily::I440fx);
        assert_eq!(f.firmware, Firmware::Bios);
        assert_eq!(
            f.boot_form,
            BootForm::OsBoot(vec!["cdrom".into(), "hd".into()])
        );
        // The cdrom comes first in document order, but the boot disk is the first hard disk.
        assert_eq!(f.boot_disk, Some(1));
        let bd = f.boot_disk().unwrap();
        assert_eq!(bd.bus, DiskBus::Ide);
        assert_eq!(bd.target, "hda");
        assert_eq!(bd.format.as_deref(), Some("qcow2"));
        assert!(bd.has_drive_address);
        assert_eq!(
            f.disks[0].source,
            DiskSource::None {
                disk_type: "file".into()
            }
        );
        let m = f.manager.as_ref().unwrap();
        assert_eq!(m.kind, ManagerKind::CloudStack);
        assert!(m.durable_change.contains("rootDiskController=virtio"));
        assert!(m.durable_change.contains("i-2-34-VM"));
        assert_eq!(m.evidence.len(), 4, "{:?}", m.evidence);
        let sources: Vec<HintSource> = f.windows_hints.iter().map(|h| h.source).collect();
        assert_eq!(
            sources,
            vec![
                HintSource::Hyperv,
                HintSource::Hypervclock,
                HintSource::LocaltimeClock,
                HintSource::Text
            ]
        );
        let c = f.candidacy();
        assert!(c.is_candidate);
        assert_eq!(c.boot_disk_bus, Some(DiskBus::Ide));
        assert_eq!(c.emulated_nics, vec![0]);
    }

    #[test]
    fn per_device_boot_order_picks_lowest_order() {
        let xml = r#"<domain type='kvm'><name>w</name>
          <metadata><libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0"><libosinfo:os id="http://microsoft.com/win/10"/></libosinfo:libosinfo></metadata>
          <os firmware='efi'><type machine='pc-q35-7.2'>hvm</type></os>
          <devices>
            <disk type='block' device='disk'><source dev='/dev/vg/data'/><target dev='sda' bus='sata'/><boot order='2'/></disk>
            <disk type='volume' device='disk'><driver type='raw'/><source pool='default' volume='win10.img'/><target dev='sdb' bus='sata'/><boot order='1'/></disk>
            <disk type='network' device='disk'><source protocol='rbd' name='pool/img'><host name='mon1' port='6789'/></source><target dev='vdc' bus='virtio'/></disk>
            <interface type='network'><source network='default'/></interface>
            <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
          </devices></domain>"#;
        let f = parse_domain(xml).unwrap();
        assert_eq!(f.boot_form, BootForm::PerDevice);
        assert_eq!(f.boot_disk, Some(1));
        assert_eq!(f.machine_family, MachineFamily::Q35);
        assert_eq!(f.firmware, Firmware::Uefi);
        assert_eq!(
            f.disks[1].source,
            DiskSource::Volume {
                pool: "default".into(),
                volume: "win10.img".into()
            }
        );
        assert_eq!(
            f.disks[2].source,
            DiskSource::Network {
                protocol: "rbd".into(),
                name: Some("pool/img".into()),
                hosts: vec!["mon1:6789".into()]
            }
        );
        assert_eq!(f.nics[0].model, None);
        assert!(f.nics[0].is_emulated());
        assert!(f.guest_agent_channel);
        assert_eq!(f.windows_hints[0].source, HintSource::Libosinfo);
        assert_eq!(f.candidacy().boot_disk_bus, Some(DiskBus::Sata));
        assert!(f.manager.is_none());
    }

    #[test]
    fn free_text_is_bounded() {
        let long = "Windows ".repeat(100_000);
        let xml = format!("<domain><name>big</name><description>{long}</description></domain>");
        let f = parse_domain(&xml).unwrap();
        let d = f.description.unwrap();
        assert_eq!(d.chars().count(), MAX_FREE_TEXT + 1);
        assert!(d.ends_with('…'));
    }

    #[test]
    fn linux_guest_is_not_a_candidate() {
        let xml = r#"<domain type='kvm'><name>web01</name><os><type machine='pc'>hvm</type></os>
          <devices><disk type='file' device='disk'><source file='/x.img'/><target dev='hda'/></disk>
          <interface type='user'><model type='virtio'/></interface></devices></domain>"#;
        let f = parse_domain(xml).unwrap();
        // No bus attribute: libvirt derives ide from the hd prefix.
        assert_eq!(f.disks[0].bus, DiskBus::Ide);
        assert!(!f.candidacy().is_candidate);
        assert!(f.windows_hints.is_empty());
    }

    #[test]
    fn nova_and_errors() {
        let xml = r#"<domain type='kvm'><name>instance-0000002a</name>
          <metadata><nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1"><nova:name>win-app</nova:name></nova:instance></metadata>
          <devices/></domain>"#;
        let f = parse_domain(xml).unwrap();
        let m = f.manager.unwrap();
        assert_eq!(m.kind, ManagerKind::Nova);
        assert!(m.durable_change.contains("hw_disk_bus"));
        assert!(m.durable_change.contains("win-app"));
        assert_eq!(f.boot_disk, None);
        assert!(matches!(
            parse_domain("<domain><name>x</name>"),
            Err(DomainXmlError::Syntax(_))
        ));
        assert!(matches!(
            parse_domain("<network/>"),
            Err(DomainXmlError::NotADomain(_))
        ));
        assert!(matches!(
            parse_domain("<domain/>"),
            Err(DomainXmlError::NoName)
        ));
        assert!(is_cloudstack_vm_name("i-2-34-VM"));
        assert!(!is_cloudstack_vm_name("r-2-VM"));
        assert!(!is_cloudstack_vm_name("i-a-34-VM"));
    }
}
