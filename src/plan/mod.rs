//! The conversion plan: domain XML + guest readiness + host facts + options → changes, blockers,
//! warnings and the new XML. Pure: nothing here touches libvirt or the disk.
//!
//! Rules (libvirt's own, see `disk_order`, `rewrite` and `validate` for the details):
//! - Hard disks on `ide` (and `sata` with `include_sata`) move to `virtio` (next free `vdX`, the drive
//!   address removed so libvirt assigns a PCI slot) or to `scsi` (next free `sdX`, a drive address on a
//!   virtio-scsi controller). The boot disk always; the others unless `DiskSelection::Boot`. The boot
//!   disk is named first so it gets the lowest free name.
//! - SCSI: the first existing `virtio-scsi` controller is used; when there is none, one is added with
//!   the lowest free SCSI controller index. An existing SCSI controller of another model (lsilogic…)
//!   is left alone with its disks; the converted disks get explicit drive addresses on the virtio-scsi
//!   controller, because without an address libvirt derives the controller from the target name
//!   (`sda`…`sdg` → controller 0) and would put them on the old controller.
//! - CD-ROMs, floppies, LUNs and every controller stay. The IDE controller is never removed: the
//!   CD-ROMs may still use it, and on i440fx libvirt re-adds the built-in one anyway.
//! - Boot order (see [`crate::domain::boot_order`]): per-device `<boot order>` elements travel with
//!   their disks. With `<os><boot dev=…/>` (or no boot element at all) libvirt gives QEMU's
//!   `bootindex` to the first device of each kind in its disk order, which depends on buses and
//!   target names. When the planned names would boot another device (the root losing its index to
//!   an existing virtio data disk `vda`, say), or whenever the root moves while other hard disks
//!   exist, the plan makes the order explicit, losslessly: every device that boots now gets
//!   `<boot order='N'/>` with the `bootindex` it has now (`hd` → the root disk, `cdrom` → the first
//!   CD-ROM, `fd` → the first floppy in libvirt's order, `network` → the first interface) and the
//!   `<os><boot>` elements go (libvirt refuses both forms together); `<bootmenu>`, loader, NVRAM
//!   and the rest of `<os>` stay. No other disk is renamed to make room, and a disk that does not
//!   move gets nothing but its `<boot order>`. The planner's own check proves the planned
//!   definition boots the same devices in the same order.
//! - NICs that QEMU emulates (or without a model) get `<model type='virtio'/>`, MAC and PCI address
//!   kept — when netkvm is ready (`NicPolicy::Auto`), always, or never. `hostdev` interfaces (device
//!   pass-through) are never touched.
//! - `rotation_rate` on a disk's `<target>` is dropped when it moves to virtio (QEMU supports it on
//!   IDE/SATA/SCSI only); a `<wwn>` or a CHS translation mode that the new bus cannot carry blocks.
//!
//! Blockers, and which ones `--force` overrides:
//! - drivers not checked (no readiness given), driver readiness unknown: overridable;
//! - driver not ready for the target bus: not overridable (the guest would not boot);
//! - managed domain (CloudStack, Nova, oVirt, OpenNebula): overridable, with a warning that the
//!   manager will undo the edit;
//! - transient domain, a boot order that cannot be made explicit (a domain type other than QEMU/KVM),
//!   a property the new bus cannot carry, the planner's own checks failing: not overridable.
//!
//! A domain with nothing to change gives an empty plan (no changes, no blockers).
//!
//! Owns: the plan and the new XML ([`rewrite`]: byte-range splices on the original text;
//! [`validate`]: the planner's own checks and libvirt's schema on an in-process test driver;
//! [`diff`]: the unified diff shown to a change board). Uses [`crate::domain`] (facts, disk
//! order) and the inspection's verdict types ([`crate::inspect::verdict`]). May not touch a
//! host, a disk image or the command line: a plan is a pure function of its inputs.

pub mod diff;
pub mod rewrite;
pub mod validate;

use std::collections::BTreeSet;

use anyhow::Context;
use serde::Serialize;

use crate::domain::boot_order::{self, BootEntry, BootSequence, DeviceRef, OsBootKind, Written};
use crate::domain::disk_order;
use crate::domain::{self, DiskBus, DiskDevice, DomainFacts, MachineFamily, ManagerKind};
use rewrite::{AddressEdit, DriveAddress, Edit};

/// The bus the hard disks move to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TargetBus {
    /// virtio-blk (`vdX`), driver viostor.
    Virtio,
    /// virtio-scsi (`sdX` on a virtio-scsi controller), driver vioscsi.
    Scsi,
}

impl TargetBus {
    /// libvirt's name of the bus.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetBus::Virtio => "virtio",
            TargetBus::Scsi => "scsi",
        }
    }

    /// The target name prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            TargetBus::Virtio => "vd",
            TargetBus::Scsi => "sd",
        }
    }

    /// The Windows driver the guest needs to boot from it.
    pub fn driver(self) -> &'static str {
        match self {
            TargetBus::Virtio => "viostor",
            TargetBus::Scsi => "vioscsi",
        }
    }
}

/// Which of the convertible hard disks move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DiskSelection {
    /// The boot disk and every other hard disk on a converted bus.
    All,
    /// Only the boot disk.
    Boot,
}

/// When emulated NICs move to virtio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NicPolicy {
    /// When the guest's netkvm driver is ready.
    Auto,
    /// Even when netkvm is not ready or not checked.
    Always,
    /// Never.
    Never,
}

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlanOptions {
    /// Target bus for the hard disks.
    pub bus: TargetBus,
    /// Also move hard disks on `sata`.
    pub include_sata: bool,
    /// All convertible hard disks or only the boot disk.
    pub disks: DiskSelection,
    /// NIC policy.
    pub nics: NicPolicy,
    /// Override the overridable blockers.
    pub force: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            bus: TargetBus::Virtio,
            include_sata: false,
            disks: DiskSelection::All,
            nics: NicPolicy::Auto,
            force: false,
        }
    }
}

use crate::inspect::verdict::Assessment;
/// Whether the guest can use one kind of virtio device: the inspection's verdict type.
pub use crate::inspect::verdict::Readiness;

/// The guest facts the planner needs, per device kind (filled from the inspection's verdict).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestReadiness {
    /// viostor (virtio-blk).
    pub blk: Readiness,
    /// vioscsi (virtio-scsi).
    pub scsi: Readiness,
    /// netkvm (virtio-net).
    pub nic: Readiness,
    /// Hazards the inspection found (each becomes a warning).
    pub hazards: Vec<String>,
}

impl GuestReadiness {
    /// The inspection's verdict in the planner's terms.
    pub fn from_assessment(a: &Assessment) -> GuestReadiness {
        GuestReadiness {
            blk: a.blk.clone(),
            scsi: a.scsi.clone(),
            nic: a.nic.clone(),
            hazards: a
                .hazards
                .iter()
                .map(|h| format!("{}: {}", h.kind(), h.evidence()))
                .collect(),
        }
    }

    /// Readiness for a target disk bus.
    pub fn for_bus(&self, bus: TargetBus) -> &Readiness {
        match bus {
            TargetBus::Virtio => &self.blk,
            TargetBus::Scsi => &self.scsi,
        }
    }
}

/// One snapshot of the domain, as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotFacts {
    /// The snapshot's name.
    pub name: String,
    /// Its XML (`virDomainSnapshotGetXMLDesc`), which embeds the domain definition it was taken with.
    pub xml: String,
}

/// What only the host knows about the domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    /// The domain is transient (no persistent definition).
    pub transient: bool,
    /// A managed save image exists.
    pub managed_save: bool,
    /// The domain's snapshots.
    pub snapshots: Vec<SnapshotFacts>,
}

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// A hard disk moves to another bus.
    DiskBus,
    /// A SCSI controller is added.
    ControllerAdded,
    /// A NIC model changes.
    NicModel,
    /// The boot order is made explicit (per-device `<boot order>` instead of `<os><boot>`).
    BootOrder,
}

/// One change to the domain definition: which element, from what, to what, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What kind of change.
    pub kind: ChangeKind,
    /// The element, as a reviewer finds it (`disk hda (/var/lib/libvirt/images/w.qcow2)`).
    pub element: String,
    /// Before.
    pub from: String,
    /// After.
    pub to: String,
    /// Why.
    pub why: String,
}

/// Why the conversion must not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockerKind {
    /// No readiness verdict was given.
    DriversNotChecked,
    /// The verdict says the driver for the target bus is not ready.
    DriversNotReady,
    /// The verdict could not decide.
    DriversUnknown,
    /// A management layer owns the domain.
    Managed,
    /// The domain is transient.
    Transient,
    /// The boot order would change and cannot be made explicit.
    BootOrder,
    /// A disk property the target bus cannot carry.
    Unsupported,
    /// The planner's own checks of the new XML failed (a bug).
    CheckFailed,
    /// libvirt's schema validation of the new XML failed.
    SchemaInvalid,
}

/// A reason not to convert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    /// What kind.
    pub kind: BlockerKind,
    /// The reason, with what to do about it.
    pub message: String,
    /// `--force` may override it.
    pub overridable: bool,
    /// It was overridden by `--force`.
    pub overridden: bool,
}

/// What kind of hazard a warning names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WarningKind {
    /// A hazard the guest inspection found.
    GuestHazard,
    /// A snapshot still names the old buses.
    Snapshot,
    /// A managed save image exists.
    ManagedSave,
    /// `on_poweroff` is `restart`.
    PoweroffRestarts,
    /// q35: virtio devices show their modern PCI ids.
    ModernVirtioIds,
    /// The management layer will undo a forced edit.
    ManagerWillUndo,
    /// Something left as it is, and why.
    LeftAsIs,
    /// libvirt's schema rejects the current definition too, so it says nothing about the plan.
    SchemaInconclusive,
}

/// A hazard to know about before converting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// What kind.
    pub kind: WarningKind,
    /// The hazard and what it means.
    pub message: String,
}

/// The plan's bottom line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanStatus {
    /// Nothing to change.
    NothingToDo,
    /// Ready to apply.
    Ready,
    /// A blocker stands.
    Blocked,
}

/// The conversion plan for one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Domain name.
    pub domain: String,
    /// Domain UUID.
    pub uuid: Option<String>,
    /// The options the plan was made with.
    pub options: PlanOptions,
    /// The guest readiness it was made with (`None`: drivers not checked).
    pub readiness: Option<GuestReadiness>,
    /// The boot disk's target before the change.
    pub boot_disk: Option<String>,
    /// The changes: the disks (boot disk first, then document order), the controller, the NICs,
    /// the boot order.
    pub changes: Vec<Change>,
    /// Why it must not run.
    pub blockers: Vec<Blocker>,
    /// Hazards.
    pub warnings: Vec<Warning>,
    /// The definition before.
    #[serde(skip)]
    pub original_xml: String,
    /// The definition after (equal to the original when there is nothing to change).
    pub new_xml: String,
}

impl Plan {
    /// No changes.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The bottom line.
    pub fn status(&self) -> PlanStatus {
        if self.is_empty() {
            PlanStatus::NothingToDo
        } else if self.blockers.iter().any(|b| !b.overridden) {
            PlanStatus::Blocked
        } else {
            PlanStatus::Ready
        }
    }

    /// A unified diff of the definition, old vs new (empty when nothing changes).
    pub fn diff(&self) -> String {
        crate::plan::diff::unified(
            &self.original_xml,
            &self.new_xml,
            &format!("{} (current definition)", self.domain),
            &format!("{} (planned definition)", self.domain),
        )
    }

    /// Add a blocker, overriding it when it may be overridden and `force` is set.
    fn block(&mut self, kind: BlockerKind, message: String, overridable: bool) {
        let overridden = overridable && self.options.force;
        self.blockers.push(Blocker {
            kind,
            message,
            overridable,
            overridden,
        });
    }

    /// Record libvirt's schema validation of the new XML (`new`) and, when that fails, of the
    /// current one (`original`): a failure of the new XML alone blocks; when the current definition
    /// fails too (a schema stricter than the daemon that wrote it, relative paths in test hosts),
    /// the check cannot judge the plan and becomes a warning.
    pub fn record_schema_result(
        &mut self,
        new: Result<(), String>,
        original: impl FnOnce() -> Result<(), String>,
    ) {
        let Err(e) = new else {
            return;
        };
        match original() {
            Ok(()) => self.block(
                BlockerKind::SchemaInvalid,
                format!("libvirt rejects the planned definition: {e}"),
                false,
            ),
            Err(_) => self.warn(
                WarningKind::SchemaInconclusive,
                format!(
                    "libvirt's schema rejects the current definition as well, so it cannot judge the planned one: {e}"
                ),
            ),
        }
    }

    fn warn(&mut self, kind: WarningKind, message: String) {
        self.warnings.push(Warning { kind, message });
    }
}

/// One hard disk that moves.
struct DiskMove {
    position: usize,
    old_bus: String,
    old_target: String,
    new_target: String,
    address: AddressEdit,
    is_boot: bool,
}

/// Make the plan.
pub fn plan(
    original_xml: &str,
    readiness: Option<&GuestReadiness>,
    host: &HostFacts,
    opts: &PlanOptions,
) -> anyhow::Result<Plan> {
    let facts = domain::parse_domain(original_xml).context("reading the domain definition")?;
    let doc = roxmltree::Document::parse(original_xml).context("reading the domain definition")?;
    let devices = rewrite::devices(&doc);
    let disk_nodes: Vec<roxmltree::Node> = devices
        .map(|d| rewrite::children_named(d, "disk").collect())
        .unwrap_or_default();

    let mut plan = Plan {
        domain: facts.name.clone(),
        uuid: facts.uuid.clone(),
        options: *opts,
        readiness: readiness.cloned(),
        boot_disk: facts.boot_disk().map(|d| d.target.clone()),
        changes: Vec::new(),
        blockers: Vec::new(),
        warnings: Vec::new(),
        original_xml: original_xml.to_string(),
        new_xml: original_xml.to_string(),
    };

    // 1. Which hard disks move, and their new names.
    let convertible = |d: &domain::Disk| {
        d.is_hard_disk() && (d.bus == DiskBus::Ide || (opts.include_sata && d.bus == DiskBus::Sata))
    };
    let mut chosen: Vec<usize> = Vec::new();
    if let Some(b) = facts
        .boot_disk
        .filter(|&b| facts.disks.get(b).is_some_and(convertible))
    {
        chosen.push(b);
    }
    if opts.disks == DiskSelection::All {
        chosen.extend(
            facts
                .disks
                .iter()
                .enumerate()
                .filter(|(i, d)| convertible(d) && Some(*i) != facts.boot_disk)
                .map(|(i, _)| i),
        );
    }
    if let Some(boot) = facts.boot_disk() {
        if boot.is_hard_disk() && boot.bus == DiskBus::Sata && !opts.include_sata {
            plan.warn(
                WarningKind::LeftAsIs,
                format!(
                    "boot disk {} is on sata and stays there: add --include-sata to move it",
                    boot.target
                ),
            );
        }
    }
    let mut used: BTreeSet<String> = facts
        .disks
        .iter()
        .enumerate()
        .filter(|(i, _)| !chosen.contains(i))
        .map(|(_, d)| d.target.clone())
        .collect();
    let mut moves: Vec<DiskMove> = Vec::new();
    for &position in &chosen {
        let Some(disk) = facts.disks.get(position) else {
            continue;
        };
        let new_target = (0..=disk_order::MAX_NAME_INDEX)
            .map(|i| disk_order::disk_name(opts.bus.prefix(), i))
            .find(|n| !used.contains(n))
            .context("no free disk target name")?;
        used.insert(new_target.clone());
        moves.push(DiskMove {
            position,
            old_bus: disk.bus.as_str().to_string(),
            old_target: disk.target.clone(),
            new_target,
            address: AddressEdit::Remove,
            is_boot: Some(position) == facts.boot_disk,
        });
    }

    // 2. SCSI: the controller and the drive addresses.
    let mut edits: Vec<Edit> = Vec::new();
    let mut controller_change: Option<Change> = None;
    if opts.bus == TargetBus::Scsi && !moves.is_empty() {
        let scsi_controllers: Vec<&domain::Controller> = facts
            .controllers
            .iter()
            .filter(|c| c.kind == "scsi")
            .collect();
        let existing = scsi_controllers
            .iter()
            .filter(|c| c.model.as_deref() == Some("virtio-scsi"))
            .filter_map(|c| c.index)
            .min();
        let controller = match existing {
            Some(index) => index,
            None => {
                let taken: BTreeSet<u32> = scsi_controllers
                    .iter()
                    .map(|c| c.index.unwrap_or(0))
                    .collect();
                let index = (0..=u32::from(u16::MAX))
                    .find(|i| !taken.contains(i))
                    .context("no free SCSI controller index")?;
                for other in &scsi_controllers {
                    plan.warn(
                        WarningKind::LeftAsIs,
                        format!(
                            "SCSI controller {} (model {}) stays with its disks; the converted disks go to a new virtio-scsi controller {index}",
                            other.index.unwrap_or(0),
                            other.model.as_deref().unwrap_or("default")
                        ),
                    );
                }
                edits.push(Edit::AddScsiController {
                    index,
                    model: "virtio-scsi".to_string(),
                });
                controller_change = Some(Change {
                    kind: ChangeKind::ControllerAdded,
                    element: format!("controller scsi index {index}"),
                    from: "(none)".to_string(),
                    to: "model virtio-scsi".to_string(),
                    why: "the SCSI disks need a virtio-scsi controller; without one libvirt adds an lsilogic controller, which Windows has no inbox driver for on 64-bit".to_string(),
                });
                index
            }
        };
        // Units taken on that controller by the disks that stay.
        let mut taken_units: BTreeSet<u32> = BTreeSet::new();
        for (i, node) in disk_nodes.iter().enumerate() {
            if chosen.contains(&i) {
                continue;
            }
            if let Some((c, unit)) = scsi_slot(*node) {
                if c == controller {
                    taken_units.insert(unit);
                }
            }
        }
        for m in &mut moves {
            let unit = (0..=16383u32)
                .find(|u| !taken_units.contains(u))
                .context("no free unit on the virtio-scsi controller")?;
            taken_units.insert(unit);
            m.address = AddressEdit::Drive(DriveAddress {
                controller,
                bus: 0,
                target: 0,
                unit,
            });
        }
    }

    // 3. What the new bus cannot carry.
    for m in &moves {
        let Some(node) = disk_nodes.get(m.position) else {
            continue;
        };
        for problem in validate::unsupported_on_bus(*node, opts.bus.as_str()) {
            // The rewrite drops a rotation rate on the way to virtio.
            if problem == validate::BusProperty::RotationRate {
                continue;
            }
            let problem = problem.describe(opts.bus.as_str());
            plan.block(
                BlockerKind::Unsupported,
                format!(
                    "disk {}: {problem}; {}",
                    m.old_target,
                    if opts.bus == TargetBus::Virtio {
                        "try --bus scsi, or remove it from the disk"
                    } else {
                        "remove it from the disk first"
                    }
                ),
                false,
            );
        }
    }

    // 4. Disk edits and changes.
    let readiness_word = |bus: TargetBus| match readiness {
        None => "drivers not checked".to_string(),
        Some(r) => format!("{} {}", bus.driver(), r.for_bus(bus)),
    };
    for m in &moves {
        let disk = facts.disks.get(m.position);
        let source = disk.map(|d| d.source.display()).unwrap_or_default();
        let had_address = disk.is_some_and(|d| d.has_drive_address);
        edits.push(Edit::DiskBus {
            disk: m.position,
            bus: opts.bus.as_str().to_string(),
            dev: m.new_target.clone(),
            address: m.address,
        });
        let dropped_rotation = opts.bus == TargetBus::Virtio
            && disk_nodes
                .get(m.position)
                .and_then(|n| rewrite::children_named(*n, "target").next())
                .is_some_and(|t| t.attribute("rotation_rate").is_some());
        let to_address = match m.address {
            AddressEdit::Remove => "PCI address assigned by libvirt".to_string(),
            AddressEdit::Drive(a) => format!(
                "drive address {}:{}:{}:{} on the virtio-scsi controller",
                a.controller, a.bus, a.target, a.unit
            ),
        };
        plan.changes.push(Change {
            kind: ChangeKind::DiskBus,
            element: format!("disk {} ({source})", m.old_target),
            from: format!(
                "bus {}, target {}{}",
                m.old_bus,
                m.old_target,
                if had_address { ", drive address" } else { "" }
            ),
            to: format!(
                "bus {}, target {}, {to_address}{}",
                opts.bus.as_str(),
                m.new_target,
                if dropped_rotation {
                    ", rotation_rate dropped (not supported on virtio)"
                } else {
                    ""
                }
            ),
            why: format!(
                "{} on emulated {}; {}",
                if m.is_boot { "boot disk" } else { "hard disk" },
                m.old_bus,
                readiness_word(opts.bus)
            ),
        });
    }
    if let Some(c) = controller_change {
        plan.changes.push(c);
    }

    // 5. NICs.
    let nic_ready = readiness.map(|r| &r.nic);
    for nic in &facts.nics {
        if !nic.is_emulated() || nic.kind == "hostdev" {
            continue;
        }
        let label = format!(
            "interface {} ({}{})",
            nic.mac.as_deref().unwrap_or("no MAC"),
            nic.kind,
            nic.source
                .as_deref()
                .map(|s| format!(" {s}"))
                .unwrap_or_default()
        );
        let convert = match opts.nics {
            NicPolicy::Never => false,
            NicPolicy::Always => true,
            NicPolicy::Auto => nic_ready == Some(&Readiness::Ready),
        };
        if !convert {
            let why = match (opts.nics, nic_ready) {
                (NicPolicy::Never, _) => "--nics never".to_string(),
                (_, None) => "netkvm was not checked".to_string(),
                (_, Some(r)) => format!("netkvm {r}"),
            };
            plan.warn(
                WarningKind::LeftAsIs,
                format!(
                    "{label} stays {}: {why}{}",
                    nic.model_display(),
                    if opts.nics == NicPolicy::Auto {
                        " (--nics always converts it anyway)"
                    } else {
                        ""
                    }
                ),
            );
            continue;
        }
        if opts.nics == NicPolicy::Always {
            if let Some(r) = nic_ready.filter(|r| **r != Readiness::Ready) {
                plan.warn(
                    WarningKind::LeftAsIs,
                    format!("{label}: netkvm {r}; the guest will have no network on this NIC until the driver is installed"),
                );
            }
        }
        edits.push(Edit::NicModel {
            nic: nic.position,
            model: "virtio".to_string(),
        });
        plan.changes.push(Change {
            kind: ChangeKind::NicModel,
            element: label,
            from: format!("model {}", nic.model_display()),
            to: "model virtio (MAC and PCI address kept)".to_string(),
            why: format!(
                "emulated NIC; {}",
                match nic_ready {
                    None => "drivers not checked".to_string(),
                    Some(r) => format!("netkvm {r}"),
                }
            ),
        });
    }

    // 6. The boot order: made explicit where the planned names would boot another device, or where
    //    the root moves beside other hard disks.
    let boot_before = boot_order::effective(doc.root_element());
    let expected_boot = boot_order_edits(
        &mut plan,
        &facts,
        original_xml,
        &boot_before,
        &moves,
        opts,
        &mut edits,
    )?;

    if plan.changes.is_empty() {
        return Ok(plan);
    }
    plan.new_xml = rewrite::apply(original_xml, &edits).context("rewriting the definition")?;

    // 7. Blockers that depend on the domain and the guest.
    match readiness {
        None => plan.block(
            BlockerKind::DriversNotChecked,
            "the guest's virtio drivers were not checked: inspect the guest first (or --force to plan without it)".to_string(),
            true,
        ),
        Some(r) => {
            if !moves.is_empty() {
                match r.for_bus(opts.bus) {
                    Readiness::Ready => {}
                    Readiness::NotReady { failed } => plan.block(
                        BlockerKind::DriversNotReady,
                        format!(
                            "{} is not boot-ready in the guest ({}): the guest would not boot from {}",
                            opts.bus.driver(),
                            failed.join("; "),
                            opts.bus.as_str()
                        ),
                        false,
                    ),
                    Readiness::Unknown { why } => plan.block(
                        BlockerKind::DriversUnknown,
                        format!(
                            "could not decide whether {} is boot-ready: {why}",
                            opts.bus.driver()
                        ),
                        true,
                    ),
                }
            }
            for hazard in &r.hazards {
                plan.warn(WarningKind::GuestHazard, hazard.clone());
            }
        }
    }
    if let Some(manager) = &facts.manager {
        plan.block(
            BlockerKind::Managed,
            format!(
                "{} manages this domain ({}) and will undo a libvirt edit; make the durable change there: {}",
                manager.kind.name(),
                manager.evidence.join(", "),
                durable_change(manager, &facts, opts.bus)
            ),
            true,
        );
        if opts.force {
            plan.warn(
                WarningKind::ManagerWillUndo,
                format!(
                    "{} will regenerate the definition and undo this edit at its next start of the VM",
                    manager.kind.name()
                ),
            );
        }
    }
    if host.transient {
        plan.block(
            BlockerKind::Transient,
            "the domain is transient: it has no persistent definition to edit and vanishes when it shuts down".to_string(),
            false,
        );
    }

    // 8. Warnings from the host and the domain.
    if host.managed_save {
        plan.warn(
            WarningKind::ManagedSave,
            "a managed save image exists: starting the domain resumes the saved state with the old devices; the change needs a cold boot, so resume and shut the guest down first (or remove the image, losing that state)".to_string(),
        );
    }
    if facts.on_poweroff.as_deref() == Some("restart") {
        plan.warn(
            WarningKind::PoweroffRestarts,
            "on_poweroff is 'restart': a guest shutdown becomes a reboot, which keeps the old devices; the domain must be destroyed after the guest is down".to_string(),
        );
    }
    if facts.machine_family == MachineFamily::Q35 {
        plan.warn(
            WarningKind::ModernVirtioIds,
            "q35 machine: the virtio devices sit on PCIe and show only their modern PCI ids (1AF4:1042 blk, 1AF4:1048 scsi, 1AF4:1041 net); the guest's drivers must list those ids".to_string(),
        );
    }
    for snapshot in &host.snapshots {
        if let Some(message) = snapshot_hazard(snapshot, &moves) {
            plan.warn(WarningKind::Snapshot, message);
        }
    }

    // 9. The planner's own checks of the new XML.
    for problem in validate::check(&plan.new_xml, expected_boot.as_deref()) {
        plan.block(
            BlockerKind::CheckFailed,
            format!("the planned definition fails a check: {problem}"),
            false,
        );
    }
    Ok(plan)
}

/// Step 6 of [`plan`]: whether the boot order must be made explicit and, when it must, its edits
/// and its change (or a blocker when it cannot be). Returns the devices the planned definition
/// must boot, in boot order (`None` when the plan is blocked on it).
fn boot_order_edits(
    plan: &mut Plan,
    facts: &DomainFacts,
    original_xml: &str,
    before: &BootSequence,
    moves: &[DiskMove],
    opts: &PlanOptions,
    edits: &mut Vec<Edit>,
) -> anyhow::Result<Option<Vec<DeviceRef>>> {
    let expected = before.devices();
    if before.written == Written::PerDevice || moves.is_empty() {
        // Per-device orders travel with their devices; without a moved disk nothing changes.
        return Ok(Some(expected));
    }
    // What would boot with the planned names and the boot form kept.
    let trial = rewrite::apply(original_xml, edits).context("rewriting the definition")?;
    let trial_doc =
        roxmltree::Document::parse(&trial).context("reading the rewritten definition")?;
    let after = boot_order::effective(trial_doc.root_element());

    let new_name = |position: usize| -> String {
        moves
            .iter()
            .find(|m| m.position == position)
            .map(|m| m.new_target.clone())
            .or_else(|| facts.disks.get(position).map(|d| d.target.clone()))
            .unwrap_or_default()
    };
    let label = |d: &DeviceRef| -> String {
        match d.element.as_str() {
            "disk" => new_name(d.position),
            "interface" => format!(
                "interface {}",
                facts
                    .nics
                    .get(d.position)
                    .and_then(|n| n.mac.clone())
                    .unwrap_or_else(|| d.position.to_string())
            ),
            other => format!("{other} {}", d.position),
        }
    };
    let role = |e: &BootEntry| -> String {
        match e.kind {
            Some(OsBootKind::Hd) => "the root".to_string(),
            Some(OsBootKind::Cdrom) => format!("the CD-ROM {}", label(&e.device)),
            Some(OsBootKind::Fd) => format!("the floppy {}", label(&e.device)),
            Some(OsBootKind::Network) | None => label(&e.device),
        }
    };
    let mut lost = Vec::new();
    for e in &before.entries {
        let now = after.entries.iter().find(|a| a.index == e.index);
        if now.map(|a| &a.device) == Some(&e.device) {
            continue;
        }
        lost.push(match now {
            Some(a) => format!(
                "{} would otherwise lose bootindex {} to {}",
                role(e),
                e.index,
                label(&a.device)
            ),
            None => format!("{} would otherwise lose bootindex {}", role(e), e.index),
        });
    }
    let root = before
        .entries
        .iter()
        .find(|e| e.kind == Some(OsBootKind::Hd))
        .map(|e| e.device.position);
    let root_moves = root.is_some_and(|r| moves.iter().any(|m| m.position == r));
    let other_hard_disks = facts
        .disks
        .iter()
        .filter(|d| matches!(d.device, DiskDevice::Disk | DiskDevice::Lun))
        .filter(|d| Some(d.position) != root)
        .count();
    if lost.is_empty() && !(root_moves && other_hard_disks > 0) {
        return Ok(Some(expected));
    }

    let written = match &before.written {
        Written::OsBoot(kinds) => format!(
            "{} in <os>",
            kinds
                .iter()
                .map(|k| format!("<boot dev='{}'/>", k.as_str()))
                .collect::<Vec<_>>()
                .join("")
        ),
        _ => "no boot element (libvirt's default <boot dev='hd'/>)".to_string(),
    };
    // libvirt's other drivers do not all take per-device boot elements (libxl, for one, boots
    // by <os><boot> only): there the order cannot be expressed, so the plan stops.
    if !matches!(facts.domain_type.as_str(), "kvm" | "qemu") {
        let what = if lost.is_empty() {
            "the root moves beside other hard disks".to_string()
        } else {
            lost.join("; ")
        };
        plan.block(
            BlockerKind::BootOrder,
            format!(
                "the boot order cannot be kept: {what}; making it explicit takes per-device <boot order> elements, which this tool writes for QEMU/KVM domains only (this domain is type '{}', booting by {written})",
                facts.domain_type
            ),
            false,
        );
        return Ok(None);
    }

    for e in &before.entries {
        edits.push(Edit::BootOrder {
            device: e.device.clone(),
            order: e.index,
        });
    }
    if matches!(before.written, Written::OsBoot(_)) {
        edits.push(Edit::RemoveOsBoot);
    }
    let why = if lost.is_empty() {
        format!(
            "boot order made explicit: the root ({}) moves to {} beside {other_hard_disks} other hard disk{}; with {written} the disk that boots depends on the disks' buses and names, with per-device <boot order> it does not",
            root.map(new_name).unwrap_or_default(),
            opts.bus.as_str(),
            if other_hard_disks == 1 { "" } else { "s" }
        )
    } else {
        format!("boot order made explicit: {}", lost.join("; "))
    };
    plan.changes.push(Change {
        kind: ChangeKind::BootOrder,
        element: "boot order".to_string(),
        from: written,
        to: format!(
            "per-device <boot order>: {}",
            before
                .entries
                .iter()
                .map(|e| format!(
                    "{}{} {}",
                    label(&e.device),
                    if e.kind == Some(OsBootKind::Hd) {
                        " (root)"
                    } else {
                        ""
                    },
                    e.index
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        why,
    });
    Ok(Some(expected))
}

/// The durable change in the manager's own terms, for the chosen bus.
fn durable_change(manager: &domain::Manager, facts: &DomainFacts, bus: TargetBus) -> String {
    match manager.kind {
        ManagerKind::CloudStack => format!(
            "in CloudStack set the VM details rootDiskController={} and nicAdapter=virtio on VM {} (or change its OS type to \"Windows PV\"), then stop and start it through CloudStack",
            bus.as_str(),
            facts.name
        ),
        ManagerKind::Nova => format!(
            "set the image properties hw_disk_bus={}{} and hw_vif_model=virtio for instance {} (on its image, or with nova-manage image_property set on the instance), then stop and start it through Nova",
            bus.as_str(),
            if bus == TargetBus::Scsi {
                " with hw_scsi_model=virtio-scsi"
            } else {
                ""
            },
            facts.uuid.as_deref().unwrap_or(&facts.name)
        ),
        ManagerKind::Ovirt | ManagerKind::OpenNebula => manager.durable_change.clone(),
    }
}

/// The (controller, unit) a SCSI disk occupies: its drive address, else what libvirt derives from
/// the target name (controller = index / 7, unit = index % 7). `None` for other buses.
fn scsi_slot(disk: roxmltree::Node) -> Option<(u32, u32)> {
    let target = rewrite::children_named(disk, "target").next()?;
    let bus = target
        .attribute("bus")
        .or_else(|| target.attribute("dev").and_then(disk_order::bus_from_name))?;
    if bus != "scsi" {
        return None;
    }
    if let Some(address) =
        rewrite::children_named(disk, "address").find(|a| a.attribute("type") == Some("drive"))
    {
        let number = |name: &str| -> Option<u32> { address.attribute(name)?.parse().ok() };
        return Some((
            number("controller").unwrap_or(0),
            number("unit").unwrap_or(0),
        ));
    }
    let index = disk_order::name_index(target.attribute("dev")?)?;
    Some((index / 7, index % 7))
}

/// A warning when a snapshot's embedded definition still names a moved disk on its old bus.
fn snapshot_hazard(snapshot: &SnapshotFacts, moves: &[DiskMove]) -> Option<String> {
    if moves.is_empty() {
        return None;
    }
    let Ok(doc) = roxmltree::Document::parse(&snapshot.xml) else {
        return Some(format!(
            "snapshot {}: its XML does not parse; check it by hand before converting",
            snapshot.name
        ));
    };
    let named: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("domain"))
        .flat_map(|d| d.descendants().filter(|n| n.has_tag_name("target")))
        .filter_map(|t| {
            let dev = t.attribute("dev")?;
            let bus = t.attribute("bus").unwrap_or("");
            moves
                .iter()
                .find(|m| m.old_target == dev && (bus.is_empty() || bus == m.old_bus))
                .map(|m| format!("{dev} on {}", m.old_bus))
        })
        .collect();
    if named.is_empty() {
        return None;
    }
    Some(format!(
        "snapshot {} still names {}: reverting to it brings the old devices back, and its disk entries refer to target names that no longer exist",
        snapshot.name,
        named.join(", ")
    ))
}
