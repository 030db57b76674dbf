//! The rules: how the verdict is decided from the guest's hives and driver files, each check
//! with the evidence it was read from and the remedy when it fails.

use std::sync::Arc;

use crate::inspect::guestfs::GuestFs;
use crate::inspect::hive::{Hive, HiveState, Key, Value};
use crate::inspect::image::ReadAt;
use crate::inspect::windows::{
    quote, quote_list, show_value, ControlSet, NamedHive, SelectInfo, WindowsFacts,
};

use super::ids::{cdd_key_name, PresentedDevice, VirtioType};
use super::render::machine_word;
use super::*;

/// The paths of a hive and its transaction logs under the system root.
fn hive_path(root: &str, name: &str) -> String {
    format!("{}/System32/config/{name}", root.trim_matches('/'))
}

/// Open `<root>/System32/config/<name>` with its `.LOG1`/`.LOG2` beside it (when present).
pub fn open_hive(fs: &dyn GuestFs, root: &str, name: &str) -> anyhow::Result<Hive> {
    use anyhow::Context;
    let path = hive_path(root, name);
    let primary = fs
        .open(&path)
        .with_context(|| format!("opening the {name} hive {path}"))?;
    let log = |suffix: &str| -> Option<Arc<dyn ReadAt>> {
        let log_path = format!("{path}.{suffix}");
        match fs.lookup(&log_path) {
            Ok(Some(entry)) if !entry.is_dir && entry.size > 0 => fs.open(&log_path).ok(),
            _ => None,
        }
    };
    Hive::open(primary, log("LOG1"), log("LOG2"))
        .with_context(|| format!("reading the {name} hive {path}"))
}

/// `hiberfil.sys` in the volume root whose first four bytes are `hibr` (any case): a hibernated
/// or Fast-Startup guest. `wake` or zeros mean it was resumed.
pub fn hibernation_hazard(fs: &dyn GuestFs) -> Option<Hazard> {
    let entry = fs.lookup("hiberfil.sys").ok()??;
    if entry.is_dir || entry.size < 4 {
        return None;
    }
    let file = fs.open("hiberfil.sys").ok()?;
    let mut magic = [0u8; 4];
    file.read_exact_at(&mut magic, 0).ok()?;
    if magic.eq_ignore_ascii_case(b"hibr") {
        Some(Hazard::Hibernation {
            evidence: format!(
                "{}: first bytes {} (hibernation image not resumed)",
                entry.name,
                quote(&String::from_utf8_lossy(&magic))
            ),
        })
    } else {
        None
    }
}

/// Assess the Windows installation at `root` (e.g. `Windows`) of `fs`: open its SYSTEM and
/// SOFTWARE hives (replaying their logs when dirty) and decide readiness per target.
/// `layer_hazards` are hazards found by the layers below (partition table, BitLocker, dynamic
/// disks, NTFS dirty flag, hibernation); a hibernation file is also looked for here.
///
/// Without a SYSTEM hive nothing can be decided (every target unknown, the hazards kept); without
/// a SOFTWARE hive the checks that need it are unknown and the rest still decide.
pub fn assess(
    fs: &dyn GuestFs,
    root: &str,
    machine: MachineFamily,
    layer_hazards: &[Hazard],
) -> Assessment {
    let mut hazards = layer_hazards.to_vec();
    if !hazards
        .iter()
        .any(|h| matches!(h, Hazard::Hibernation { .. }))
    {
        hazards.extend(hibernation_hazard(fs));
    }
    let system = match open_hive(fs, root, "SYSTEM") {
        Ok(h) => h,
        Err(e) => return Assessment::unknown(root, machine, &format!("{e:#}"), &hazards),
    };
    match open_hive(fs, root, "SOFTWARE") {
        Ok(software) => assess_with(fs, root, &system, Ok(&software), machine, &hazards),
        Err(e) => assess_with(fs, root, &system, Err(format!("{e:#}")), machine, &hazards),
    }
}

/// Assess with hives already opened. `hazards` are carried into the result as given (the
/// caller's layer hazards); the registry hazards are added.
pub fn assess_hives(
    fs: &dyn GuestFs,
    root: &str,
    system: &Hive,
    software: &Hive,
    machine: MachineFamily,
    hazards: &[Hazard],
) -> Assessment {
    assess_with(fs, root, system, Ok(software), machine, hazards)
}

/// Assess with the SYSTEM hive opened and the SOFTWARE hive opened or not (`Err` says why).
fn assess_with(
    fs: &dyn GuestFs,
    root: &str,
    system: &Hive,
    software: Result<&Hive, String>,
    machine: MachineFamily,
    hazards: &[Hazard],
) -> Assessment {
    let mut hazards = hazards.to_vec();
    let mut incomplete = Vec::new();
    // A hive dirty without replayable logs: what it says may be stale, so the checks read from it
    // are unknown (`stale` says why).
    let mut stale_system = None;
    let mut stale_software = None;
    let hives: Vec<(&str, &Hive)> = match software {
        Ok(sw) => vec![("SYSTEM", system), ("SOFTWARE", sw)],
        Err(_) => vec![("SYSTEM", system)],
    };
    for (name, hive) in hives {
        match hive.state() {
            HiveState::Clean => {}
            HiveState::Replayed {
                log,
                entries,
                format,
            } => hazards.push(Hazard::DirtyHive {
                hive: name.to_string(),
                replayed: true,
                evidence: format!(
                    "{name}: base block dirty; replayed {log} ({format:?} format, {entries} {})",
                    if matches!(format, crate::inspect::hive::LogFormat::New) {
                        "log entries"
                    } else {
                        "dirty pages"
                    }
                ),
            }),
            HiveState::DirtyNotReplayed { reason } => {
                hazards.push(Hazard::DirtyHive {
                    hive: name.to_string(),
                    replayed: false,
                    evidence: format!("{name}: {reason}"),
                });
                let why = format!("{name} hive dirty, logs not replayed ({reason})");
                if name == "SYSTEM" {
                    stale_system = Some(why);
                } else {
                    stale_software = Some(why);
                }
            }
        }
    }
    let software = match software {
        Ok(sw) => Some(sw),
        Err(why) => {
            incomplete.push(format!("SOFTWARE hive: {why}"));
            None
        }
    };

    // The control set the next boot uses: `Select\Default` (KB 102984, "REG: ControlSet\Select
    // Subkey Entries"; TechNet cc978528: Select records "which control set will be used to start
    // it next time"); `Current` is the one the last boot used.
    let select = match ControlSet::next_boot(system) {
        Ok(s) => s,
        Err(e) => {
            let why = match &stale_system {
                Some(dirty) => format!("{dirty}; {e:#}"),
                None => format!("{e:#}"),
            };
            let mut a = Assessment::unknown(root, machine, &why, &hazards);
            a.incomplete = incomplete;
            return a;
        }
    };
    if let (Some(current), Some(default)) = (select.current, select.default) {
        if current != default {
            hazards.push(Hazard::ControlSetMismatch {
                current,
                default,
                evidence: select.evidence.clone(),
            });
        }
    }
    let facts = match WindowsFacts::read_partial(system, software, &select) {
        Ok(f) => Some(f),
        Err(e) => {
            incomplete.push(format!("Windows facts: {e:#}"));
            None
        }
    };
    let inspector = Inspector {
        fs,
        root: root.trim_matches('/').to_string(),
        system: NamedHive::new("SYSTEM", system),
        software: software.map(|sw| NamedHive::new("SOFTWARE", sw)),
        ccs: select.set.name(),
        select: select.clone(),
        machine,
        facts: facts.clone(),
        package_names: std::cell::OnceCell::new(),
    };
    let binding_source = match inspector.system.key("DriverDatabase") {
        // virt-v2v decides the same way (libguestfs-common mlcustomize/inject_virtio_win.ml,
        // add_guestor_to_registry: DriverDatabase at the root of SYSTEM → Windows ≥ 8).
        Ok(Some(_)) => Some(BindingSource::DriverDatabase),
        Ok(None) => Some(BindingSource::CriticalDeviceDatabase),
        Err(e) => {
            incomplete.push(format!("binding source: {e:#}"));
            None
        }
    };

    let mut versions = Vec::new();
    let filters = inspector.class_filter_checks();
    let mut checks = Vec::new();
    let mut verdicts = Vec::new();
    for target in [Target::VirtioBlk, Target::VirtioScsi, Target::Nic] {
        let (mut target_checks, ambiguity) = match target {
            Target::VirtioBlk => {
                inspector.storage(StorageDriver::Viostor, binding_source, &mut versions)
            }
            Target::VirtioScsi => {
                inspector.storage(StorageDriver::Vioscsi, binding_source, &mut versions)
            }
            Target::Nic => (inspector.nic(binding_source, &mut versions), None),
        };
        if target != Target::Nic {
            // The class filters sit in the new controller's and disks' stacks (after the
            // driver's own checks, before the policy check that ends the list).
            let at = target_checks.len().saturating_sub(1);
            for (i, f) in filters.iter().enumerate() {
                target_checks.insert(at + i, f.for_target(target));
            }
        }
        for check in &mut target_checks {
            let stale = match check.source {
                Source::System => stale_system.as_ref(),
                Source::Software => stale_software.as_ref(),
                Source::Files => None,
            };
            if let Some(why) = stale {
                if check.outcome != Outcome::Unknown {
                    check.outcome = Outcome::Unknown;
                    check.passed = false;
                    check.remedy = None;
                    check.evidence = format!("{} (not trusted: {why})", check.evidence);
                }
            }
        }
        verdicts.push(Readiness::combine(&target_checks, ambiguity));
        checks.extend(target_checks);
    }
    let mut verdicts = verdicts.into_iter();
    let unknown = || Readiness::Unknown {
        why: "not assessed".into(),
    };
    let blk = verdicts.next().unwrap_or_else(unknown);
    let scsi = verdicts.next().unwrap_or_else(unknown);
    let nic = verdicts.next().unwrap_or_else(unknown);
    // The host-side way out when only virtio-scsi is ready.
    if matches!(blk, Readiness::NotReady { .. }) && scsi == Readiness::Ready {
        if let Some(first) = checks
            .iter_mut()
            .find(|c| c.target == Target::VirtioBlk && c.required && c.outcome == Outcome::Fail)
        {
            let fix = first.remedy.take().unwrap_or_default();
            first.remedy = Some(format!(
                "{fix}{}host: or convert with `--bus scsi` (virtio-scsi is ready)",
                if fix.is_empty() { "" } else { "; " }
            ));
        }
    }

    inspector.registry_hazards(facts.as_ref(), &mut hazards, &mut incomplete);
    let mut facts = facts;
    if let Some(f) = facts.as_mut() {
        f.driver_versions = versions;
    }

    Assessment {
        system_root: root.to_string(),
        machine,
        guest_sees: generation_seen(machine),
        facts,
        binding_source,
        blk,
        scsi,
        nic,
        checks,
        hazards,
        incomplete,
    }
}

/// A PCI vendor:device pair as the registry spells it, `PCI\VEN_1AF4&DEV_1001`.
fn pci_id(device: u16) -> String {
    format!("PCI\\VEN_{VIRTIO_VENDOR:04X}&DEV_{device:04X}")
}

/// Whether a device-installation policy entry (a hardware/compatible id or a device instance id)
/// names a virtio device `device` of PCI class `class` (6 hex digits, e.g. `010000`). Entries may
/// be as specific as `PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00` or as broad as
/// `PCI\VEN_1AF4` or `PCI\CC_0100`; SUBSYS and REV parts are not compared (conservative).
fn policy_entry_matches(entry: &str, device: u16, class: &str) -> bool {
    let upper = entry.trim().to_ascii_uppercase();
    let Some(rest) = upper.strip_prefix("PCI\\") else {
        return false;
    };
    // A device instance id continues after a second backslash.
    let hardware_id = rest.split('\\').next().unwrap_or("");
    let mut named = false;
    for part in hardware_id.split('&') {
        if let Some(v) = part.strip_prefix("VEN_") {
            if u16::from_str_radix(v, 16).ok() != Some(VIRTIO_VENDOR) {
                return false;
            }
            named = true;
        } else if let Some(d) = part.strip_prefix("DEV_") {
            if u16::from_str_radix(d, 16).ok() != Some(device) {
                return false;
            }
            named = true;
        } else if let Some(cc) = part.strip_prefix("CC_") {
            if cc.is_empty() || !class.starts_with(cc) {
                return false;
            }
            named = true;
        }
    }
    named
}

/// Case-insensitive equality of GUID strings, with or without braces.
fn guid_equal(a: &str, b: &str) -> bool {
    let strip = |s: &str| {
        s.trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .to_ascii_uppercase()
    };
    strip(a) == strip(b)
}

/// The strings of a REG_SZ / REG_MULTI_SZ value (trimmed, empty ones dropped, bounded).
fn strings_of(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::MultiSz(list)) => list.clone(),
        Some(Value::Sz(s)) | Some(Value::ExpandSz(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
    .into_iter()
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty())
    .take(LIST_LIMIT)
    .collect()
}

/// A found binding: the id it was found for, its place in the match order, what it names.
struct Binding {
    /// The service the first matching entry names (None: the entry names none).
    service: Option<String>,
    /// The driver package (DriverDatabase only).
    package: Option<String>,
    evidence: String,
}

struct Inspector<'a> {
    fs: &'a dyn GuestFs,
    root: String,
    system: NamedHive<'a>,
    software: Option<NamedHive<'a>>,
    ccs: String,
    select: SelectInfo,
    machine: MachineFamily,
    facts: Option<WindowsFacts>,
    /// The names of `DriverDatabase\DriverPackages`, listed once when first needed (the
    /// fallback of [`Inspector::packages_of_inf`]).
    package_names: std::cell::OnceCell<Result<Vec<String>, String>>,
}

impl Inspector<'_> {
    /// The generations whose binding is required (the one the guest sees; both when unknown).
    fn seen(&self) -> Vec<PciGeneration> {
        match generation_seen(self.machine) {
            Some(g) => vec![g],
            None => vec![PciGeneration::Legacy, PciGeneration::Modern],
        }
    }

    /// `"HKLM\SYSTEM\<control set>\<rel>"`, quoted, for `reg` commands run inside the guest.
    fn reg_key(&self, rel: &str) -> String {
        format!(r#""HKLM\SYSTEM\{}\{rel}""#, self.ccs)
    }

    /// The folder of a driver on the virtio-win ISO for this Windows, e.g.
    /// `viostor\2k8R2\amd64` (`<os>` / `<arch>` when the version is unknown).
    fn iso_dir(&self, folder: &str) -> String {
        let (os, arch) = match &self.facts {
            Some(f) => {
                let os = match f.family.as_str() {
                    "Windows Server 2025" => "2k25",
                    "Windows Server 2022" => "2k22",
                    "Windows Server 2019" => "2k19",
                    "Windows Server 2016" => "2k16",
                    "Windows Server 2012 R2" => "2k12R2",
                    "Windows Server 2012" => "2k12",
                    "Windows Server 2008 R2" => "2k8R2",
                    "Windows Server 2008" => "2k8",
                    "Windows 11" => "w11",
                    "Windows 10" => "w10",
                    "Windows 8.1" => "w8.1",
                    "Windows 8" => "w8",
                    "Windows 7" => "w7",
                    _ => "<os>",
                };
                let arch = match f.architecture.as_deref().map(str::to_ascii_uppercase) {
                    Some(a) if a == "AMD64" => "amd64",
                    Some(a) if a == "X86" => "x86",
                    Some(a) if a == "ARM64" => "ARM64",
                    _ => "<arch>",
                };
                (os, arch)
            }
            None => ("<os>", "<arch>"),
        };
        format!(r"{folder}\{os}\{arch}")
    }

    /// The `pnputil` command that stages and installs an INF from the virtio-win ISO (drive E:):
    /// `/add-driver … /install` from Windows 10, `-i -a` before.
    fn pnputil(&self, folder: &str, inf: &str) -> String {
        let path = format!(r"E:\{}\{inf}", self.iso_dir(folder));
        match self.facts.as_ref().and_then(|f| f.major) {
            Some(m) if m >= 10 => format!("pnputil /add-driver {path} /install"),
            _ => format!("pnputil -i -a {path}"),
        }
    }

    fn storage(
        &self,
        driver: StorageDriver,
        source: Option<BindingSource>,
        versions: &mut Vec<DriverVersion>,
    ) -> (Vec<Check>, Option<String>) {
        let target = driver.target();
        let name = driver.service();
        let install = format!(
            "guest: install {name} from the virtio-win ISO: `{}`",
            self.pnputil(driver.iso_folder(), &format!("{name}.inf"))
        );
        let mut checks = Vec::new();

        // Service (Microsoft, "HKLM\SYSTEM\CurrentControlSet\Services Registry Tree" and the
        // Start entry: 0 = boot, loaded by the kernel loader — the driver stack of the boot
        // volume must be; virt-v2v writes Type=1, Start=0, ErrorControl=1, Group="SCSI miniport",
        // ImagePath=system32\drivers\D.sys when it injects viostor: libguestfs-common
        // mlcustomize/inject_virtio_win.ml, add_guestor_to_registry).
        let service_path = format!(r"{}\Services\{name}", self.ccs);
        let shown = self.system.path(&service_path);
        let mut image_path = None;
        let mut service_checks = Vec::new();
        let service_check = match self.system.key(&service_path) {
            Err(e) => Check::unknown(
                target,
                format!("service {name} present"),
                true,
                Source::System,
                format!("{e:#}"),
            ),
            Ok(None) => Check::new(
                target,
                format!("service {name} present"),
                true,
                Source::System,
                false,
                format!("{shown}: key absent"),
                Some(install.clone()),
            ),
            Ok(Some(key)) => {
                self.service_checks(target, name, &key, &mut service_checks, &mut image_path);
                Check::new(
                    target,
                    format!("service {name} present"),
                    true,
                    Source::System,
                    true,
                    format!("{shown}: key present"),
                    None,
                )
            }
        };

        // File: what the boot loader will load.
        checks.extend(self.driver_file_checks(
            target,
            name,
            image_path.as_deref(),
            &install,
            driver.iso_folder(),
            versions,
        ));
        checks.push(service_check);
        checks.extend(service_checks);
        checks.push(self.control_set_check(target));

        // Bindings, both generations reported; the seen one is required.
        let mut bound = Vec::new();
        for generation in [PciGeneration::Legacy, PciGeneration::Modern] {
            let device = presented(driver.virtio_type(), generation);
            let required = generation_seen(self.machine) == Some(generation);
            let check_name = format!("{name} bound to {} ({})", device.short(), generation.word());
            let remedy = format!(
                "host: boot the guest once with a small extra virtio-{} disk attached on this machine type ({}), so Plug and Play binds {name} to {}; shut it down cleanly and inspect again",
                if driver == StorageDriver::Viostor { "blk" } else { "scsi" },
                if generation == PciGeneration::Legacy { "i440fx" } else { "q35" },
                device.short()
            );
            let check = match source {
                None => Check::unknown(
                    target,
                    check_name,
                    required,
                    Source::System,
                    r"cannot tell whether SYSTEM\DriverDatabase exists",
                ),
                Some(source) => {
                    let result = self.binding(source, &device, name).map(|(found, looked)| {
                        let is_bound = found
                            .as_ref()
                            .and_then(|b| b.service.as_deref())
                            .is_some_and(|s| s.eq_ignore_ascii_case(name));
                        if let Some(package) = found.as_ref().and_then(|b| b.package.as_deref()) {
                            if is_bound {
                                self.package_version(name, package, versions);
                            }
                        }
                        let evidence = match found {
                            Some(b) if is_bound => b.evidence,
                            Some(b) => format!(
                                "{} — the first matching entry names {}, not {name}: Windows would use it",
                                b.evidence,
                                b.service.as_deref().map_or("no service".to_string(), quote)
                            ),
                            None => looked,
                        };
                        let evidence = if required {
                            format!(
                                "the ids the guest sees on {}: {evidence}",
                                machine_word(self.machine)
                            )
                        } else {
                            evidence
                        };
                        if is_bound {
                            bound.push(generation);
                        }
                        (is_bound, evidence)
                    });
                    Check::decided(
                        target,
                        check_name,
                        required,
                        Source::System,
                        result,
                        Some(remedy),
                    )
                }
            };
            checks.push(check);
        }
        let mut ambiguity = None;
        if generation_seen(self.machine).is_none() {
            let all_decided = checks
                .iter()
                .filter(|c| c.name.contains(" bound to PCI\\"))
                .all(|c| c.outcome != Outcome::Unknown);
            if bound.is_empty() && all_decided {
                // Neither id is bound: not ready whatever the machine type.
                checks.push(Check::new(
                    target,
                    format!(
                        "{name} bound to a virtio-{} id",
                        if driver == StorageDriver::Viostor {
                            "blk"
                        } else {
                            "scsi"
                        }
                    ),
                    true,
                    Source::System,
                    false,
                    "neither the legacy nor the modern id is bound".to_string(),
                    Some(format!(
                        "host: boot the guest once with a small extra virtio disk attached on the machine type it will run on, so Plug and Play binds {name}; shut it down cleanly and inspect again"
                    )),
                ));
            } else if bound.len() == 1 {
                ambiguity = Some(format!(
                    "machine type unknown: {name} is bound only for the {} id",
                    bound.first().map_or("", |g| g.word())
                ));
            }
        }

        let devices: Vec<u16> = self.seen().iter().map(|g| driver.device_id(*g)).collect();
        checks.push(self.policy_check(
            target,
            &format!("{name} not denied by device-install policy"),
            &devices,
            "010000",
            SCSI_ADAPTER_CLASS,
        ));
        (checks, ambiguity)
    }

    /// Start, StartOverride, Type, DeleteFlag (required); ErrorControl, Group, ImagePath
    /// (informative) of a storage driver's service key.
    fn service_checks(
        &self,
        target: Target,
        name: &str,
        key: &Key,
        out: &mut Vec<Check>,
        image_path: &mut Option<String>,
    ) {
        let service_path = format!(r"{}\Services\{name}", self.ccs);
        let shown = self.system.path(&service_path);
        let read = |value: &str| self.system.value_of(key, &service_path, value);
        let evidence = |value: &str, v: &Option<Value>| match v {
            Some(v) => format!(r"{shown}\{value} = {}", show_value(v)),
            None => format!(r"{shown}\{value}: absent"),
        };
        let set_dword = |value: &str, data: u32| {
            format!(
                "guest: `reg add {} /v {value} /t REG_DWORD /d {data} /f`",
                self.reg_key(&format!(r"Services\{name}"))
            )
        };

        // "If a device is required to start the computer, the drivers for the device should have
        // a start type of SERVICE_BOOT_START (0x0)" (Microsoft, "Specifying Driver Load Order");
        // only those are loaded by the boot loader, before the boot volume exists.
        out.push(Check::decided(
            target,
            format!("{name} Start=0 (boot)"),
            true,
            Source::System,
            read("Start").map(|start| {
                let n = start.as_ref().and_then(Value::as_u64);
                let note = match n {
                    Some(0) => "",
                    Some(1) => " (system start: too late for the boot disk)",
                    Some(2) => " (automatic: too late for the boot disk)",
                    Some(3) => " (demand start: loaded too late for the boot disk → STOP 0x7B)",
                    Some(4) => " (disabled)",
                    _ => "",
                };
                (n == Some(0), format!("{}{note}", evidence("Start", &start)))
            }),
            Some(set_dword("Start", 0)),
        ));

        // Windows 8 and later keep per-profile overrides of Start in `StartOverride` (values
        // `0`, `1`, …) and write 3 there for boot-start storage drivers whose device was absent:
        // the driver is then not loaded at boot whatever Start says. Microsoft's own SCSI→NVMe
        // preparation deletes the key for exactly that reason (Azure/SAP-on-Azure-Scripts-and-
        // Utilities, Azure-NVMe-Utils/windows-manual-nvme-prepare.ps1: "StartOverride … overrides
        // the driver's Start=0 (boot) setting with Start=3 (demand-start), preventing the NVMe
        // driver from loading during early boot"; each boot without the device re-creates it).
        let so_path = format!(r"{service_path}\StartOverride");
        out.push(Check::decided(
            target,
            format!("{name} StartOverride does not disable boot start"),
            true,
            Source::System,
            (|| -> anyhow::Result<(bool, String)> {
                let Some(so) = self.system.subkey_of(key, &service_path, "StartOverride")? else {
                    return Ok((true, format!(r"{shown}\StartOverride: absent")));
                };
                let values = self.system.values_of(&so, &so_path)?;
                if values.is_empty() {
                    return Ok((true, format!(r"{shown}\StartOverride: no values")));
                }
                let overriding = values.iter().any(|(_, v)| v.as_u64() != Some(0));
                let shown_values: Vec<String> = values
                    .iter()
                    .take(16)
                    .map(|(n, v)| format!(r"{shown}\StartOverride\{n} = {}", show_value(v)))
                    .collect();
                let note = if overriding {
                    format!(" (Windows will not load {name} at boot → STOP 0x7B)")
                } else {
                    String::new()
                };
                Ok((!overriding, format!("{}{note}", shown_values.join(", "))))
            })(),
            Some(format!(
                "guest: `reg delete {} /f`, then shut down and convert without booting in between (each boot without the device writes it again)",
                self.reg_key(&format!(r"Services\{name}\StartOverride"))
            )),
        ));

        out.push(Check::decided(
            target,
            format!("{name} Type=1 (kernel driver)"),
            true,
            Source::System,
            read("Type").map(|ty| {
                (
                    ty.as_ref().and_then(Value::as_u64) == Some(1),
                    evidence("Type", &ty),
                )
            }),
            Some(set_dword("Type", 1)),
        ));

        // DeleteService on a service in use sets DeleteFlag = 1; the service key goes away at the
        // next boot (Microsoft, DeleteService: "the service is marked for deletion … removed when
        // the system is restarted").
        out.push(Check::decided(
            target,
            format!("{name} not marked for deletion"),
            true,
            Source::System,
            read("DeleteFlag").map(|flag| match flag.as_ref().and_then(Value::as_u64) {
                None | Some(0) => (
                    true,
                    match &flag {
                        None => format!(r"{shown}\DeleteFlag: absent"),
                        Some(_) => evidence("DeleteFlag", &flag),
                    },
                ),
                Some(_) => (
                    false,
                    format!(
                        "{} (the service is removed at the next boot)",
                        evidence("DeleteFlag", &flag)
                    ),
                ),
            }),
            Some(format!(
                "guest: reinstall {name} (`{}`) and reboot once, then shut down and inspect again",
                self.pnputil(name, &format!("{name}.inf"))
            )),
        ));

        out.push(Check::decided(
            target,
            format!("{name} ErrorControl=1"),
            false,
            Source::System,
            read("ErrorControl").map(|ec| {
                (
                    ec.as_ref().and_then(Value::as_u64) == Some(1),
                    evidence("ErrorControl", &ec),
                )
            }),
            Some(set_dword("ErrorControl", 1)),
        ));
        // The group only orders loading: boot-start drivers load group by group in
        // `Control\ServiceGroupOrder\List` order (by `Tag` within a group, `GroupOrderList`),
        // drivers of an unlisted or no group after them — a group never keeps a boot driver from
        // loading (Microsoft, "ServiceGroupOrder" / "GroupOrderList", Windows 2000 Registry
        // Reference; "Specifying Driver Load Order"). Informative.
        out.push(Check::decided(
            target,
            format!("{name} Group=SCSI miniport"),
            false,
            Source::System,
            read("Group").map(|group| {
                (
                    group
                        .as_ref()
                        .and_then(Value::as_str)
                        .is_some_and(|g| g.eq_ignore_ascii_case("SCSI miniport")),
                    evidence("Group", &group),
                )
            }),
            Some(format!(
                r#"guest: `reg add {} /v Group /t REG_SZ /d "SCSI miniport" /f`"#,
                self.reg_key(&format!(r"Services\{name}"))
            )),
        ));
        let expected_tail = format!(r"drivers\{name}.sys");
        out.push(Check::decided(
            target,
            format!("{name} ImagePath"),
            false,
            Source::System,
            read("ImagePath").map(|image| {
                let ok = match image.as_ref().and_then(Value::as_str) {
                    Some(p) => p.to_ascii_lowercase().ends_with(&expected_tail),
                    None => image.is_none(),
                };
                *image_path = image.as_ref().and_then(Value::as_str).map(str::to_string);
                (
                    ok,
                    match &image {
                        Some(_) => evidence("ImagePath", &image),
                        None => format!(
                            r"{shown}\ImagePath: absent (the loader uses system32\drivers\{name}.sys)"
                        ),
                    },
                )
            }),
            Some(format!(
                r"guest: `reg add {} /v ImagePath /t REG_EXPAND_SZ /d system32\drivers\{name}.sys /f`",
                self.reg_key(&format!(r"Services\{name}"))
            )),
        ));
    }

    /// Informative: the control set judged is the one the next boot uses, and whether the last
    /// boot used the same.
    fn control_set_check(&self, target: Target) -> Check {
        let same = match (self.select.current, self.select.default) {
            (Some(c), Some(d)) => c == d,
            _ => true,
        };
        Check::new(
            target,
            "control set of the next boot read",
            false,
            Source::System,
            same,
            self.select.evidence.clone(),
            Some(
                "host: boot the guest once and shut it down cleanly, then inspect again"
                    .to_string(),
            ),
        )
    }

    /// The driver file the loader will use — the service's ImagePath when it names a file on the
    /// system volume, else `<root>/System32/drivers/<name>.sys` — and what it is:
    /// 1. present: a non-empty file the boot loader can read (not EFS-encrypted);
    /// 2. a loadable driver image: a PE image for the machine of the Windows architecture
    ///    (`PROCESSOR_ARCHITECTURE`), PE32/PE32+ to match, native subsystem, executable, no section
    ///    past the end of the file (Microsoft, "PE Format");
    /// 3. on 64-bit Windows (Vista and later), an embedded Authenticode signature: "a kernel-mode
    ///    boot-start driver must have an embedded Software Publisher Certificate (SPC) signature"
    ///    (Microsoft, "Kernel-Mode Code Signing Requirements"). The signer's name is reported; the
    ///    signature and its chain are not validated.
    ///
    /// The file version from its version resource is recorded as the driver's version.
    fn driver_file_checks(
        &self,
        target: Target,
        name: &str,
        image_path: Option<&str>,
        install: &str,
        folder: &str,
        versions: &mut Vec<DriverVersion>,
    ) -> Vec<Check> {
        let default = format!("{}/System32/drivers/{name}.sys", self.root);
        let (path, from) = match image_path.and_then(|p| resolve_image_path(&self.root, p)) {
            Some(p) => (p, " (from ImagePath)"),
            None => (default, ""),
        };
        let present_name = format!("{name}.sys present");
        let entry = match self.fs.lookup(&path) {
            Ok(entry) => entry,
            Err(e) => {
                return vec![Check::unknown(
                    target,
                    present_name,
                    true,
                    Source::Files,
                    format!("{path}{from}: {e:#}"),
                )]
            }
        };
        let present = match &entry {
            Some(e) if e.is_dir => Err(format!("{path}{from}: a directory, not a file")),
            Some(e) if e.encrypted => Err(format!(
                "{path}{from}: EFS-encrypted, the boot loader cannot read it"
            )),
            Some(e) if e.size == 0 => Err(format!("{path}{from}: empty (0 bytes)")),
            Some(e) => Ok(format!("{path}{from}: present ({} bytes)", e.size)),
            None => Err(format!("{path}{from}: absent")),
        };
        let evidence = match present {
            Err(why) => {
                return vec![Check::new(
                    target,
                    present_name,
                    true,
                    Source::Files,
                    false,
                    why,
                    Some(install.to_string()),
                )]
            }
            Ok(evidence) => evidence,
        };
        let mut checks = vec![Check::new(
            target,
            present_name,
            true,
            Source::Files,
            true,
            evidence,
            None,
        )];

        let architecture = self.facts.as_ref().and_then(|f| f.architecture.clone());
        let expected = architecture
            .as_deref()
            .and_then(crate::inspect::pe::Machine::for_windows_architecture);
        let arch_word = architecture.as_deref().unwrap_or("unknown-architecture");
        let image_name = format!("{name}.sys is a native {arch_word} driver image");
        let signed_name = format!("{name}.sys carries an embedded signature");
        // Windows Vista (6.0) and later on a 64-bit machine; a version not read counts as new.
        let signature_required = expected.is_some_and(|m| m.is_64_bit())
            && self
                .facts
                .as_ref()
                .and_then(|f| f.major)
                .is_none_or(|major| major >= 6);
        let reinstall = format!(
            "guest: install the {arch_word} build of {name} from the virtio-win ISO: `{}`",
            self.pnputil(folder, &format!("{name}.inf"))
        );
        if entry.as_ref().is_some_and(|e| e.compressed) {
            checks.push(Check::unknown(
                target,
                image_name,
                true,
                Source::Files,
                format!("{path}: NTFS-compressed, its content cannot be read offline"),
            ));
            return checks;
        }
        let image = self
            .fs
            .open(&path)
            .map_err(|e| (true, format!("{e:#}")))
            .and_then(|file| {
                crate::inspect::pe::read_driver(&*file).map_err(|e| (e.is_io(), e.to_string()))
            });
        let image = match image {
            Ok(image) => image,
            Err((true, why)) => {
                checks.push(Check::unknown(
                    target,
                    image_name,
                    true,
                    Source::Files,
                    format!("{path}: could not be read: {why}"),
                ));
                return checks;
            }
            Err((false, why)) => {
                checks.push(Check::new(
                    target,
                    image_name,
                    true,
                    Source::Files,
                    false,
                    format!("{path}: not a loadable PE image: {why}"),
                    Some(reinstall),
                ));
                return checks;
            }
        };
        if let Some(version) = image.file_version() {
            versions.retain(|v| v.driver != name);
            versions.push(DriverVersion {
                driver: name.to_string(),
                version: version.to_string(),
                from: format!("{path} file version"),
            });
        }
        let problems = image.problems(expected, signature_required);
        let is_signature = |p: &crate::inspect::pe::Problem| {
            matches!(
                p,
                crate::inspect::pe::Problem::Unsigned
                    | crate::inspect::pe::Problem::BadSignature { .. }
            )
        };
        let (signature_problems, image_problems): (Vec<_>, Vec<_>) =
            problems.iter().partition(|p| is_signature(p));
        let unread = image.unread();
        let summary = image.summary();
        let image_check = if !image_problems.is_empty() {
            let listed: Vec<String> = image_problems.iter().map(|p| p.to_string()).collect();
            Check::new(
                target,
                image_name,
                true,
                Source::Files,
                false,
                format!("{path}: {summary} — {}", listed.join("; ")),
                Some(reinstall.clone()),
            )
        } else if expected.is_none() {
            Check::unknown(
                target,
                image_name,
                true,
                Source::Files,
                format!("{path}: {summary}; the Windows architecture is unknown, so its machine cannot be checked"),
            )
        } else {
            Check::new(
                target,
                image_name,
                true,
                Source::Files,
                true,
                format!("{path}: {summary}"),
                None,
            )
        };
        checks.push(image_check);
        let signer = image
            .signer()
            .map(|s| format!("signed by {}", quote(s)))
            .unwrap_or_else(|| "signer's name not read".to_string());
        checks.push(if !signature_problems.is_empty() {
            let listed: Vec<String> = signature_problems.iter().map(|p| p.to_string()).collect();
            Check::new(
                target,
                signed_name,
                signature_required,
                Source::Files,
                false,
                format!(
                    "{path}: {}{}",
                    listed.join("; "),
                    if signature_required {
                        " (64-bit Windows loads only embedded-signed boot drivers)"
                    } else {
                        ""
                    }
                ),
                Some(format!(
                    "guest: install a signed virtio-win build of {name} (the drivers of the virtio-win ISO carry embedded signatures): `{}`",
                    self.pnputil(folder, &format!("{name}.inf"))
                )),
            )
        } else if image.is_signed() {
            Check::new(
                target,
                signed_name,
                signature_required,
                Source::Files,
                true,
                format!("{path}: embedded Authenticode signature, {signer} (chain not validated)"),
                None,
            )
        } else if !unread.is_empty() {
            Check::unknown(
                target,
                signed_name,
                signature_required,
                Source::Files,
                format!("{path}: {}", unread.join("; ")),
            )
        } else {
            Check::new(
                target,
                signed_name,
                false,
                Source::Files,
                false,
                format!("{path}: no embedded signature (not required: 32-bit Windows or architecture unknown)"),
                None,
            )
        });
        checks
    }

    /// The first of the ids `device` presents, in Windows' match order, that has a binding; with
    /// a description of what was looked up when none has. Lookups go by name through the subkey
    /// lists' hashes: real databases hold thousands of ids.
    fn binding(
        &self,
        source: BindingSource,
        device: &PresentedDevice,
        wanted: &str,
    ) -> anyhow::Result<(Option<Binding>, String)> {
        match source {
            BindingSource::CriticalDeviceDatabase => self.cdd_binding(device),
            BindingSource::DriverDatabase => self.ddb_binding(device, wanted),
        }
    }

    /// CriticalDeviceDatabase (Windows up to 7 / 2008 R2): before the driver of a new device is
    /// installed, the kernel takes its hardware ids then its compatible ids in order, replaces
    /// `\` by `#`, and uses the first `CriticalDeviceDatabase\<id>` key that has a `ClassGUID`: its
    /// `Service` becomes the device's driver (ReactOS ntoskrnl `IopInstallCriticalDevice`
    /// reimplements this; virt-v2v writes `PCI#VEN_1AF4&DEV_1001&REV_00` with `Service` and
    /// `ClassGUID`, libguestfs-common inject_virtio_win.ml `cdb_regedits`).
    fn cdd_binding(&self, device: &PresentedDevice) -> anyhow::Result<(Option<Binding>, String)> {
        let path = format!(r"{}\Control\CriticalDeviceDatabase", self.ccs);
        let Some(cdd) = self.system.key(&path)? else {
            return Ok((None, format!("{}: key absent", self.system.path(&path))));
        };
        let ids = device.match_order();
        let mut notes = Vec::new();
        for (rank, id) in ids.iter().enumerate() {
            let Some(entry) = self.system.subkey_of(&cdd, &path, &cdd_key_name(id))? else {
                continue;
            };
            let entry_path = format!(r"{path}\{}", entry.name);
            let shown = self.system.path(&entry_path);
            let class = self.system.value_of(&entry, &entry_path, "ClassGUID")?;
            let Some(class) = class.as_ref().and_then(Value::as_str).map(str::to_string) else {
                notes.push(format!("{shown}: no ClassGUID, skipped by Windows"));
                continue;
            };
            let service = self
                .system
                .value_of(&entry, &entry_path, "Service")?
                .as_ref()
                .and_then(Value::as_str)
                .map(str::to_string);
            let class_note = if guid_equal(&class, SCSI_ADAPTER_CLASS) {
                "SCSIAdapter".to_string()
            } else if guid_equal(&class, NET_CLASS) {
                "Net".to_string()
            } else {
                quote(&class)
            };
            let mut evidence = format!(
                r"{shown}\Service = {}, ClassGUID = {class_note} (id {} of {} Windows tries)",
                service.as_deref().map_or("absent".to_string(), quote),
                rank + 1,
                ids.len()
            );
            if !notes.is_empty() {
                evidence = format!("{}; {evidence}", notes.join("; "));
            }
            return Ok((
                Some(Binding {
                    service,
                    package: None,
                    evidence,
                }),
                String::new(),
            ));
        }
        notes.insert(
            0,
            format!(
                "{}: no entry for any of the {} ids the device presents ({} … {})",
                self.system.path(&path),
                ids.len(),
                cdd_key_name(ids.first().map_or("", String::as_str)),
                cdd_key_name(ids.last().map_or("", String::as_str)),
            ),
        );
        Ok((None, notes.join("; ")))
    }

    /// DriverDatabase (Windows 8 / 2012 and later): `DeviceIds\<enumerator>\<rest of id>` has a
    /// value per INF (published name) offering a driver for the id; the INF's package
    /// (`DriverInfFiles\<inf>` → `Active`) has `Descriptors\<id>` naming a configuration whose
    /// `Service` is the driver (virt-v2v writes this chain for viostor: libguestfs-common
    /// inject_virtio_win.ml `ddb_regedits`). The ids are tried in match order; the first one with
    /// an offer decides (hardware ids rank before compatible ids in driver selection — Microsoft,
    /// "How Windows ranks drivers").
    fn ddb_binding(
        &self,
        device: &PresentedDevice,
        wanted: &str,
    ) -> anyhow::Result<(Option<Binding>, String)> {
        let ids_path = r"DriverDatabase\DeviceIds";
        let Some(ids_key) = self.system.key(ids_path)? else {
            return Ok((None, format!("{}: key absent", self.system.path(ids_path))));
        };
        let ids = device.match_order();
        let mut enumerators: Vec<(String, Option<Key>)> = Vec::new();
        let mut notes = Vec::new();
        for (rank, id) in ids.iter().enumerate() {
            let Some((enumerator, rest)) = id.split_once('\\') else {
                continue;
            };
            let enum_key = match enumerators
                .iter()
                .find(|(e, _)| e.eq_ignore_ascii_case(enumerator))
            {
                Some((_, k)) => k.clone(),
                None => {
                    let k = self.system.subkey_of(&ids_key, ids_path, enumerator)?;
                    enumerators.push((enumerator.to_string(), k.clone()));
                    k
                }
            };
            let Some(enum_key) = enum_key else {
                continue;
            };
            let enum_path = format!(r"{ids_path}\{}", enum_key.name);
            let Some(id_key) = self.system.subkey_of(&enum_key, &enum_path, rest)? else {
                continue;
            };
            let id_path = format!(r"{enum_path}\{}", id_key.name);
            let shown = self.system.path(&id_path);
            let infs: Vec<String> = self
                .system
                .values_of(&id_key, &id_path)?
                .into_iter()
                .take(LIST_LIMIT)
                .map(|(n, _)| n)
                .filter(|n| n.to_ascii_lowercase().ends_with(".inf"))
                .collect();
            if infs.is_empty() {
                notes.push(format!("{shown}: no .inf value"));
                continue;
            }
            let mut offers: Vec<Binding> = Vec::new();
            // Real ids list one to three INFs; a hostile hive's long lists are cut short.
            for inf in infs.iter().take(16) {
                let (packages, how) = self.packages_of_inf(inf)?;
                if packages.is_empty() {
                    notes.push(format!(
                        "{shown} has {} but no driver package of it was found",
                        quote(inf)
                    ));
                }
                for package in packages.iter().take(16) {
                    match self.package_service(package, enumerator, rest)? {
                        Some((conf, service)) => offers.push(Binding {
                            evidence: format!(
                                r"{shown} has {} → {how}{package} → Descriptors\{enumerator}\{rest} Configuration = {} → Configurations\{conf}\Service = {} (id {} of {} Windows tries)",
                                quote(inf),
                                quote(&conf),
                                quote(&service),
                                rank + 1,
                                ids.len()
                            ),
                            service: Some(service),
                            package: Some(package.clone()),
                        }),
                        None => notes.push(format!(
                            r"{shown} has {} → {package}: no Descriptors\{enumerator}\{rest} naming a configuration with a service",
                            quote(inf)
                        )),
                    }
                }
            }
            if offers.is_empty() {
                continue;
            }
            // Several offers for the same id: Windows ranks them by signature, date and version,
            // which an offline reader cannot fully redo; one for the wanted driver counts, and
            // the others are shown.
            let pick = offers
                .iter()
                .position(|b| {
                    b.service
                        .as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case(wanted))
                })
                .unwrap_or(0);
            let mut chosen = offers.swap_remove(pick);
            if !offers.is_empty() {
                let others: Vec<String> = offers.iter().map(|b| b.evidence.clone()).collect();
                chosen.evidence = format!("{}; also: {}", chosen.evidence, others.join("; "));
            }
            if !notes.is_empty() {
                chosen.evidence = format!("{}; {}", notes.join("; "), chosen.evidence);
            }
            return Ok((Some(chosen), String::new()));
        }
        notes.insert(
            0,
            format!(
                r"{}: no entry for any of the {} ids the device presents ({} … {})",
                self.system.path(ids_path),
                ids.len(),
                ids.first().map_or("", String::as_str),
                ids.last().map_or("", String::as_str),
            ),
        );
        Ok((None, notes.join("; ")))
    }

    /// The driver packages of an inf: `DriverInfFiles\<inf>` (`Active`, then the default
    /// list), else the packages named `<inf>_…`. Returns them with how they were found.
    fn packages_of_inf(&self, inf: &str) -> anyhow::Result<(Vec<String>, String)> {
        let mut packages: Vec<String> = Vec::new();
        let files_path = r"DriverDatabase\DriverInfFiles";
        if let Some(files) = self.system.key(files_path)? {
            if let Some(key) = self.system.subkey_of(&files, files_path, inf)? {
                let inf_path = format!(r"{files_path}\{}", key.name);
                if let Some(active) = self
                    .system
                    .value_of(&key, &inf_path, "Active")?
                    .as_ref()
                    .and_then(Value::as_str)
                {
                    packages.push(active.to_string());
                }
                if let Some(Value::MultiSz(list)) = self.system.value_of(&key, &inf_path, "")? {
                    for p in list.into_iter().take(LIST_LIMIT) {
                        if !packages.iter().any(|q| q.eq_ignore_ascii_case(&p)) {
                            packages.push(p);
                        }
                    }
                }
                if !packages.is_empty() {
                    return Ok((packages, format!(r"DriverInfFiles\{inf} → ")));
                }
            }
        }
        // A package staged under its own INF name (`viostor.inf_amd64_…`): found by scanning
        // the package list, which only happens when DriverInfFiles does not name it.
        let names = self.package_names.get_or_init(|| {
            let pkgs_path = r"DriverDatabase\DriverPackages";
            (|| -> anyhow::Result<Vec<String>> {
                let Some(pkgs) = self.system.key(pkgs_path)? else {
                    return Ok(Vec::new());
                };
                Ok(self
                    .system
                    .subkeys_of(&pkgs, pkgs_path)?
                    .into_iter()
                    .take(SCAN_LIMIT)
                    .map(|k| k.name)
                    .collect())
            })()
            .map_err(|e| format!("{e:#}"))
        });
        let names = names.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        let prefix = format!("{}_", inf.to_ascii_lowercase());
        packages.extend(
            names
                .iter()
                .filter(|n| n.to_ascii_lowercase().starts_with(&prefix))
                .cloned(),
        );
        Ok((packages, "package ".to_string()))
    }

    /// In package `package`: the configuration named by `Descriptors\<enumerator>\<rest>` and
    /// that configuration's `Service`.
    fn package_service(
        &self,
        package: &str,
        enumerator: &str,
        rest: &str,
    ) -> anyhow::Result<Option<(String, String)>> {
        let pkgs_path = r"DriverDatabase\DriverPackages";
        let Some(pkgs) = self.system.key(pkgs_path)? else {
            return Ok(None);
        };
        let Some(pkg) = self.system.subkey_of(&pkgs, pkgs_path, package)? else {
            return Ok(None);
        };
        let base = format!(r"{pkgs_path}\{}", pkg.name);
        let desc_path = format!(r"{base}\Descriptors\{enumerator}\{rest}");
        let Some(conf) = self.system.string(&desc_path, "Configuration")? else {
            return Ok(None);
        };
        let conf_path = format!(r"{base}\Configurations\{conf}");
        let Some(service) = self.system.string(&conf_path, "Service")? else {
            return Ok(None);
        };
        Ok(Some((conf, service)))
    }

    /// Record the `DriverVer` of a staged package's INF as the driver's version.
    fn package_version(&self, driver: &str, package: &str, versions: &mut Vec<DriverVersion>) {
        if versions.iter().any(|v| v.driver == driver) {
            return;
        }
        let inf_name = match package.to_ascii_lowercase().find(".inf") {
            Some(end) => package[..end + 4].to_string(),
            None => return,
        };
        let path = format!(
            "{}/System32/DriverStore/FileRepository/{package}/{inf_name}",
            self.root
        );
        if let Ok(Some(inf)) = self.read_inf(&path) {
            if let Some(version) = inf_driver_ver(&inf) {
                versions.push(DriverVersion {
                    driver: driver.to_string(),
                    version,
                    from: format!("{path} DriverVer"),
                });
            }
        }
    }

    /// The text of an INF file (UTF-16LE with a byte-order mark, else 8-bit), at most
    /// [`INF_LIMIT`] bytes of it; `None` when absent or not a file.
    fn read_inf(&self, path: &str) -> anyhow::Result<Option<String>> {
        let Some(entry) = self.fs.lookup(path)? else {
            return Ok(None);
        };
        if entry.is_dir {
            return Ok(None);
        }
        let file = self.fs.open(path)?;
        let len = file.size().min(INF_LIMIT);
        let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
        file.read_exact_at(&mut bytes, 0)?;
        Ok(Some(decode_inf(&bytes)))
    }

    /// The class filters of the storage setup classes the new boot path goes through:
    /// SCSIAdapter (viostor's and vioscsi's controllers; today's IDE controller is of class HDC,
    /// so these filters were never needed at boot before) and DiskDrive. Each listed filter is a
    /// service the boot loader must load with the stack: a filter whose service is missing,
    /// disabled, not boot-start or overridden stops the stack, and the boot, with 0x7B (virt-v2v
    /// learnt it from the field: "otherwise Windows crashes with BSOD 0x7b due to missing
    /// dependency of the storage subsystem", virt-v2v commit b4bfbc4a, convert_windows.ml
    /// `disable_prl_drivers`; the lists are the class's `UpperFilters`/`LowerFilters` values —
    /// Microsoft, "DEVPKEY_DeviceClass_UpperFilters" / "…LowerFilters"; the drivers of a device
    /// required to start the computer must be boot-start: "Specifying Driver Load Order").
    fn class_filter_checks(&self) -> Vec<Check> {
        [
            (SCSI_ADAPTER_CLASS, "SCSIAdapter"),
            (DISK_DRIVE_CLASS, "DiskDrive"),
        ]
        .into_iter()
        .map(|(guid, label)| {
            let name = format!("{label} class filters load at boot");
            match self.class_filters(guid) {
                Ok((passed, evidence, remedy)) => Check::new(
                    Target::VirtioBlk,
                    name,
                    true,
                    Source::System,
                    passed,
                    evidence,
                    remedy,
                ),
                Err(e) => Check::unknown(
                    Target::VirtioBlk,
                    name,
                    true,
                    Source::System,
                    format!("{e:#}"),
                ),
            }
        })
        .collect()
    }

    fn class_filters(&self, guid: &str) -> anyhow::Result<(bool, String, Option<String>)> {
        let rel = format!(r"Control\Class\{guid}");
        let path = format!(r"{}\{rel}", self.ccs);
        let shown = self.system.path(&path);
        let Some(class) = self.system.key(&path)? else {
            return Ok((
                true,
                format!("{shown}: key absent (no class filters)"),
                None,
            ));
        };
        let mut seen = Vec::new();
        let mut problems = Vec::new();
        let mut fixes = Vec::new();
        for value in ["UpperFilters", "LowerFilters"] {
            let filters = strings_of(self.system.value_of(&class, &path, value)?.as_ref());
            if filters.is_empty() {
                continue;
            }
            seen.push(format!(r"{shown}\{value} = {}", quote_list(&filters)));
            let mut keep = Vec::new();
            let mut dropped = false;
            for filter in filters.iter().take(64) {
                match self.filter_problem(filter)? {
                    Some(problem) => {
                        problems.push(format!("{value} {}: {problem}", quote(filter)));
                        dropped = true;
                    }
                    None => keep.push(filter.clone()),
                }
            }
            if dropped {
                fixes.push(if keep.is_empty() {
                    format!("guest: `reg delete {} /v {value} /f`", self.reg_key(&rel))
                } else {
                    format!(
                        r#"guest: `reg add {} /v {value} /t REG_MULTI_SZ /d "{}" /f`"#,
                        self.reg_key(&rel),
                        keep.join(r"\0")
                    )
                });
            }
        }
        if seen.is_empty() {
            return Ok((
                true,
                format!("{shown}: no UpperFilters or LowerFilters"),
                None,
            ));
        }
        let mut evidence = seen.join(", ");
        if problems.is_empty() {
            evidence.push_str(" (each a boot-start driver)");
            Ok((true, evidence, None))
        } else {
            evidence.push_str(&format!(" — {}", problems.join("; ")));
            Ok((
                false,
                evidence,
                Some(format!(
                    "{} (or repair/reinstall the product that installed the filter)",
                    fixes.join("; ")
                )),
            ))
        }
    }

    /// Why a class filter service would not be loaded with a boot stack, or `None` when it is a
    /// boot-start driver.
    fn filter_problem(&self, service: &str) -> anyhow::Result<Option<String>> {
        let services = format!(r"{}\Services", self.ccs);
        let Some(services_key) = self.system.key(&services)? else {
            return Ok(Some(format!("{} absent", self.system.path(&services))));
        };
        let Some(key) = self.system.subkey_of(&services_key, &services, service)? else {
            return Ok(Some("its service key is absent".to_string()));
        };
        let path = format!(r"{services}\{}", key.name);
        let start = self
            .system
            .value_of(&key, &path, "Start")?
            .as_ref()
            .and_then(Value::as_u64);
        match start {
            Some(0) => {}
            Some(4) => return Ok(Some("disabled (Start = 4)".to_string())),
            Some(n) => return Ok(Some(format!("Start = {n}, not loaded by the boot loader"))),
            None => return Ok(Some("no Start value".to_string())),
        }
        if let Some(so) = self.system.subkey_of(&key, &path, "StartOverride")? {
            let so_path = format!(r"{path}\StartOverride");
            if let Some((n, v)) = self
                .system
                .values_of(&so, &so_path)?
                .into_iter()
                .find(|(_, v)| v.as_u64() != Some(0))
            {
                return Ok(Some(format!(
                    r"StartOverride\{n} = {}, not loaded at boot",
                    show_value(&v)
                )));
            }
        }
        if self
            .system
            .value_of(&key, &path, "DeleteFlag")?
            .and_then(|v| v.as_u64())
            .is_some_and(|n| n != 0)
        {
            return Ok(Some("marked for deletion (DeleteFlag)".to_string()));
        }
        Ok(None)
    }

    /// Device-installation restriction policy for a device (its ids and setup class); unknown
    /// without the SOFTWARE hive.
    fn policy_check(
        &self,
        target: Target,
        name: &str,
        devices: &[u16],
        pci_class: &str,
        setup_class: &str,
    ) -> Check {
        let Some(software) = &self.software else {
            return Check::unknown(
                target,
                name,
                true,
                Source::Software,
                "the SOFTWARE hive could not be read",
            );
        };
        let path = RESTRICTIONS_KEY;
        let shown = software.path(path);
        let result = (|| -> anyhow::Result<(bool, String)> {
            let Some(key) = software.key(path)? else {
                return Ok((true, format!("{shown}: key absent")));
            };
            let flag = |value: &str| -> anyhow::Result<bool> {
                Ok(software
                    .value_of(&key, path, value)?
                    .and_then(|v| v.as_u64())
                    .is_some_and(|n| n != 0))
            };
            let list = |sub: &str| -> anyhow::Result<Vec<(String, String)>> {
                let sub_path = format!(r"{path}\{sub}");
                let Some(k) = software.key(&sub_path)? else {
                    return Ok(Vec::new());
                };
                Ok(software
                    .values_of(&k, &sub_path)?
                    .into_iter()
                    .take(LIST_LIMIT)
                    .filter_map(|(n, v)| v.as_str().map(|s| (n, s.to_string())))
                    .collect())
            };
            let id_matches = |entry: &str| {
                devices
                    .iter()
                    .any(|d| policy_entry_matches(entry, *d, pci_class))
            };
            let mut denials = Vec::new();
            for sub in ["DenyDeviceIDs", "DenyInstanceIDs"] {
                if flag(sub)? {
                    for (n, entry) in list(sub)? {
                        if id_matches(&entry) {
                            denials.push(format!(
                                r"{shown}\{sub}\{n} = {} ({sub} = 1)",
                                quote(&entry)
                            ));
                        }
                    }
                }
            }
            if flag("DenyDeviceClasses")? {
                for (n, entry) in list("DenyDeviceClasses")? {
                    if guid_equal(&entry, setup_class) {
                        denials.push(format!(
                            r"{shown}\DenyDeviceClasses\{n} = {} (DenyDeviceClasses = 1)",
                            quote(&entry)
                        ));
                    }
                }
            }
            if flag("DenyUnspecified")? {
                let allowed_id = flag("AllowDeviceIDs")?
                    && list("AllowDeviceIDs")?.iter().any(|(_, e)| id_matches(e));
                let allowed_class = flag("AllowDeviceClasses")?
                    && list("AllowDeviceClasses")?
                        .iter()
                        .any(|(_, e)| guid_equal(e, setup_class));
                if !allowed_id && !allowed_class {
                    denials.push(format!(
                        r"{shown}\DenyUnspecified = 1 and no AllowDeviceIDs/AllowDeviceClasses entry allows it"
                    ));
                }
            }
            let ids: Vec<String> = devices.iter().map(|d| pci_id(*d)).collect();
            Ok(if denials.is_empty() {
                (
                    true,
                    format!(
                        "{shown}: present, no deny entry for {} or class {setup_class}",
                        ids.join(", ")
                    ),
                )
            } else {
                (false, denials.join("; "))
            })
        })();
        Check::decided(
            target,
            name,
            true,
            Source::Software,
            result,
            Some(format!(
                r"guest: remove the deny entry (gpedit.msc: Computer Configuration > Administrative Templates > System > Device Installation > Device Installation Restrictions), or `reg delete HKLM\SOFTWARE\{RESTRICTIONS_KEY} /f` when the policy is local"
            )),
        )
    }

    /// virtio-net: Plug and Play installs a driver on a new device only from a package staged in
    /// the Driver Store (Microsoft, "Driver Store": "only driver packages in the driver store
    /// can be installed on a device"); a bare `netkvm.sys` with a service key is not enough.
    /// Windows 8+: the DriverDatabase must offer a netkvm package for an id the NIC presents, and
    /// that package must be in `DriverStore\FileRepository`. Vista / 7: a
    /// `FileRepository\netkvm.inf_*` package whose INF names the id. Before Vista there is no
    /// Driver Store and the question cannot be decided offline.
    fn nic(&self, source: Option<BindingSource>, versions: &mut Vec<DriverVersion>) -> Vec<Check> {
        let target = Target::Nic;
        let mut checks = Vec::new();
        let repo = format!("{}/System32/DriverStore/FileRepository", self.root);
        let stage = format!(
            "guest: stage netkvm from the virtio-win ISO: `{}`",
            self.pnputil("NetKVM", "netkvm.inf")
        );
        for generation in self.seen() {
            let device = presented(VirtioType::Net, generation);
            let name = format!(
                "netkvm package staged for {} ({})",
                device.short(),
                generation.word()
            );
            let result = match source {
                None => Err(anyhow::anyhow!(
                    r"cannot tell whether SYSTEM\DriverDatabase exists"
                )),
                Some(BindingSource::DriverDatabase) => {
                    self.nic_staged_ddb(&device, &repo, versions)
                }
                Some(BindingSource::CriticalDeviceDatabase) => {
                    self.nic_staged_repository(&device, &repo, versions)
                }
            };
            checks.push(match result {
                Ok(Some((passed, evidence))) => Check::new(
                    target,
                    name,
                    true,
                    if source == Some(BindingSource::DriverDatabase) {
                        Source::System
                    } else {
                        Source::Files
                    },
                    passed,
                    evidence,
                    Some(stage.clone()),
                ),
                Ok(None) => Check::unknown(
                    target,
                    name,
                    true,
                    Source::Files,
                    format!("{repo}: absent, and the Windows version is unknown or older than Vista (no Driver Store): cannot tell whether a netkvm INF is staged"),
                ),
                Err(e) => Check::unknown(target, name, true, Source::Files, format!("{e:#}")),
            });
        }

        let file = format!("{}/System32/drivers/netkvm.sys", self.root);
        checks.push(Check::decided(
            target,
            "netkvm.sys installed",
            false,
            Source::Files,
            self.fs.lookup(&file).map(|e| match e {
                Some(e) if !e.is_dir => (true, format!("{file}: present ({} bytes)", e.size)),
                _ => (
                    false,
                    format!("{file}: absent (Plug and Play installs it from the staged package)"),
                ),
            }),
            None,
        ));
        let service_path = format!(r"{}\Services\netkvm", self.ccs);
        checks.push(Check::decided(
            target,
            "service netkvm present",
            false,
            Source::System,
            self.system.key(&service_path).map(|k| match k {
                Some(_) => (
                    true,
                    format!("{}: key present", self.system.path(&service_path)),
                ),
                None => (
                    false,
                    format!(
                        "{}: key absent (Plug and Play installs it at first boot)",
                        self.system.path(&service_path)
                    ),
                ),
            }),
            None,
        ));
        let devices: Vec<u16> = self.seen().into_iter().map(net_device_id).collect();
        checks.push(self.policy_check(
            target,
            "netkvm not denied by device-install policy",
            &devices,
            "020000",
            NET_CLASS,
        ));
        checks
    }

    /// Windows 8+: the DriverDatabase offer for the NIC's ids and the package folder.
    fn nic_staged_ddb(
        &self,
        device: &PresentedDevice,
        repo: &str,
        versions: &mut Vec<DriverVersion>,
    ) -> anyhow::Result<Option<(bool, String)>> {
        let (found, looked) = self.ddb_binding(device, "netkvm")?;
        let Some(binding) = found else {
            return Ok(Some((false, looked)));
        };
        let is_netkvm = binding
            .service
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("netkvm"));
        if !is_netkvm {
            return Ok(Some((
                false,
                format!(
                    "{} — the first matching entry names {}, not netkvm",
                    binding.evidence,
                    binding
                        .service
                        .as_deref()
                        .map_or("no service".to_string(), quote)
                ),
            )));
        }
        let Some(package) = binding.package else {
            return Ok(Some((false, binding.evidence)));
        };
        let folder = format!("{repo}/{package}");
        match self.fs.lookup(&folder)? {
            Some(e) if e.is_dir => {
                self.package_version("netkvm", &package, versions);
                Ok(Some((
                    true,
                    format!("{}; {folder}: present", binding.evidence),
                )))
            }
            _ => Ok(Some((
                false,
                format!(
                    "{}; but {folder}: absent (the package is not in the Driver Store)",
                    binding.evidence
                ),
            ))),
        }
    }

    /// Vista / 7: a `FileRepository\netkvm.inf_*` folder whose `netkvm.inf` names the id.
    /// `None` when there is no Driver Store.
    fn nic_staged_repository(
        &self,
        device: &PresentedDevice,
        repo: &str,
        versions: &mut Vec<DriverVersion>,
    ) -> anyhow::Result<Option<(bool, String)>> {
        if !self.fs.lookup(repo)?.is_some_and(|e| e.is_dir) {
            // Vista and later always have a Driver Store: its absence means nothing is staged.
            // Before Vista (or when the version is unknown) there is none to look in.
            return Ok(match self.facts.as_ref().and_then(|f| f.major) {
                Some(major) if major >= 6 => {
                    Some((false, format!("{repo}: absent (no package staged)")))
                }
                _ => None,
            });
        }
        let mut notes = Vec::new();
        let short = device.short();
        let needle = short.trim_start_matches("PCI\\").to_ascii_uppercase();
        for entry in self.fs.read_dir(repo)?.into_iter().take(SCAN_LIMIT) {
            if !entry.is_dir || !entry.name.to_ascii_lowercase().starts_with("netkvm.inf_") {
                continue;
            }
            let inf_path = format!("{repo}/{}/netkvm.inf", entry.name);
            match self.read_inf(&inf_path)? {
                None => notes.push(format!("{inf_path}: absent")),
                Some(text) => {
                    let version = inf_driver_ver(&text);
                    if text.to_ascii_uppercase().contains(&needle) {
                        if let Some(v) = &version {
                            if !versions.iter().any(|d| d.driver == "netkvm") {
                                versions.push(DriverVersion {
                                    driver: "netkvm".into(),
                                    version: v.clone(),
                                    from: format!("{inf_path} DriverVer"),
                                });
                            }
                        }
                        return Ok(Some((
                            true,
                            format!(
                                "{inf_path}: names {short}{}",
                                version
                                    .map(|v| format!(", DriverVer {v}"))
                                    .unwrap_or_default()
                            ),
                        )));
                    }
                    notes.push(format!("{inf_path}: does not name {short}"));
                }
            }
            // At most a few INFs (each read up to INF_LIMIT) are looked at.
            if notes.len() >= 4 {
                break;
            }
        }
        Ok(Some((
            false,
            if notes.is_empty() {
                format!("{repo}: no netkvm.inf_* package")
            } else {
                notes.join("; ")
            },
        )))
    }

    /// Hazards read from the registry; a part that cannot be read is noted in `incomplete`.
    fn registry_hazards(
        &self,
        facts: Option<&WindowsFacts>,
        hazards: &mut Vec<Hazard>,
        incomplete: &mut Vec<String>,
    ) {
        let mut run = |what: &str, result: anyhow::Result<Vec<Hazard>>| match result {
            Ok(found) => hazards.extend(found),
            Err(e) => incomplete.push(format!("{what}: {e:#}")),
        };
        run("device-install restrictions", self.restrictions_hazard());
        run("static IP addresses", self.static_ip_hazards());
        run("SAN policy", self.san_policy_hazard(facts));
        run("CrashControl", self.auto_reboot_hazard());
        run("code integrity", self.code_integrity_hazard());
        run("pending deletions", self.pending_deletion_hazards());
    }

    fn restrictions_hazard(&self) -> anyhow::Result<Vec<Hazard>> {
        let Some(software) = &self.software else {
            anyhow::bail!("the SOFTWARE hive could not be read");
        };
        let path = RESTRICTIONS_KEY;
        let Some(key) = software.key(path)? else {
            return Ok(Vec::new());
        };
        let values: Vec<String> = software
            .values_of(&key, path)?
            .iter()
            .take(64)
            .map(|(n, v)| format!("{n} = {}", show_value(v)))
            .collect();
        let subkeys: Vec<String> = software
            .subkeys_of(&key, path)?
            .iter()
            .take(64)
            .map(|k| k.name.clone())
            .collect();
        Ok(vec![Hazard::DeviceInstallRestrictions {
            evidence: format!(
                "{}: values [{}], subkeys [{}]",
                software.path(path),
                values.join(", "),
                subkeys.join(", ")
            ),
        }])
    }

    /// `Tcpip\Parameters\Interfaces\{GUID}` with `EnableDHCP` = 0 and a real `IPAddress`.
    fn static_ip_hazards(&self) -> anyhow::Result<Vec<Hazard>> {
        let path = format!(r"{}\Services\Tcpip\Parameters\Interfaces", self.ccs);
        let Some(interfaces) = self.system.key(&path)? else {
            return Ok(Vec::new());
        };
        let adapters = self.net_adapters()?;
        let mut out = Vec::new();
        for iface in self
            .system
            .subkeys_of(&interfaces, &path)?
            .iter()
            .take(LIST_LIMIT)
        {
            let if_path = format!(r"{path}\{}", iface.name);
            let dhcp = self.system.value_of(iface, &if_path, "EnableDHCP")?;
            if dhcp.as_ref().and_then(Value::as_u64) != Some(0) {
                continue;
            }
            let addresses: Vec<String> =
                strings_of(self.system.value_of(iface, &if_path, "IPAddress")?.as_ref())
                    .into_iter()
                    .filter(|a| a != "0.0.0.0")
                    .collect();
            if addresses.is_empty() {
                continue;
            }
            let masks = strings_of(
                self.system
                    .value_of(iface, &if_path, "SubnetMask")?
                    .as_ref(),
            );
            let gateways = strings_of(
                self.system
                    .value_of(iface, &if_path, "DefaultGateway")?
                    .as_ref(),
            );
            let adapter = adapters
                .iter()
                .find(|(guid, _)| guid_equal(guid, &iface.name))
                .map(|(_, desc)| desc.clone());
            let mut evidence = format!(
                r"{}: EnableDHCP = 0, IPAddress = {}",
                self.system.path(&if_path),
                quote_list(&addresses)
            );
            if !masks.is_empty() {
                evidence.push_str(&format!(", SubnetMask = {}", quote_list(&masks)));
            }
            if !gateways.is_empty() {
                evidence.push_str(&format!(", DefaultGateway = {}", quote_list(&gateways)));
            }
            out.push(Hazard::StaticIp {
                interface: iface.name.clone(),
                adapter,
                addresses,
                evidence,
            });
        }
        Ok(out)
    }

    /// Network adapters of the Net setup class: (NetCfgInstanceId, DriverDesc).
    fn net_adapters(&self) -> anyhow::Result<Vec<(String, String)>> {
        let path = format!(r"{}\Control\Class\{NET_CLASS}", self.ccs);
        let Some(class) = self.system.key(&path)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for k in self
            .system
            .subkeys_of(&class, &path)?
            .iter()
            .take(LIST_LIMIT)
        {
            let k_path = format!(r"{path}\{}", k.name);
            let id = self.system.value_of(k, &k_path, "NetCfgInstanceId")?;
            let desc = self.system.value_of(k, &k_path, "DriverDesc")?;
            if let (Some(id), Some(desc)) = (
                id.as_ref().and_then(Value::as_str),
                desc.as_ref().and_then(Value::as_str),
            ) {
                out.push((id.to_string(), desc.to_string()));
            }
        }
        Ok(out)
    }

    /// Windows Server 2019+ unless `partmgr\Parameters\SanPolicy` = 1 (OnlineAll).
    fn san_policy_hazard(&self, facts: Option<&WindowsFacts>) -> anyhow::Result<Vec<Hazard>> {
        let Some(facts) = facts.filter(|f| f.is_server_2019_or_later()) else {
            return Ok(Vec::new());
        };
        let path = format!(r"{}\Services\partmgr\Parameters", self.ccs);
        let value = self.system.value(&path, "SanPolicy")?;
        let policy = value.as_ref().and_then(Value::as_u64);
        if policy == Some(1) {
            return Ok(Vec::new());
        }
        let meaning = match policy {
            None => "absent: the server default OfflineShared applies".to_string(),
            Some(2) => "2 (OfflineShared)".to_string(),
            Some(3) => "3 (OfflineAll)".to_string(),
            Some(4) => "4 (OfflineInternal)".to_string(),
            Some(n) => format!("{n}"),
        };
        Ok(vec![Hazard::SanPolicy {
            evidence: format!(
                r"{} build {}; {}\SanPolicy {meaning}",
                facts.family,
                facts.build.unwrap_or(0),
                self.system.path(&path)
            ),
        }])
    }

    /// `CrashControl\AutoReboot` = 1, or absent (Windows defaults it to 1).
    fn auto_reboot_hazard(&self) -> anyhow::Result<Vec<Hazard>> {
        let path = format!(r"{}\Control\CrashControl", self.ccs);
        let value = self.system.value(&path, "AutoReboot")?;
        let shown = format!(r"{}\AutoReboot", self.system.path(&path));
        Ok(match value {
            None => vec![Hazard::CrashAutoReboot {
                explicit: false,
                evidence: format!("{shown}: absent (Windows default 1)"),
            }],
            Some(v) if v.as_u64() == Some(0) => Vec::new(),
            Some(v) => vec![Hazard::CrashAutoReboot {
                explicit: true,
                evidence: format!("{shown} = {}", show_value(&v)),
            }],
        })
    }

    /// Memory integrity (HVCI) on: `CCS\Control\DeviceGuard\Scenarios\
    /// HypervisorEnforcedCodeIntegrity\Enabled` = 1 (Microsoft, "Enable memory integrity": the
    /// registry method), or the group policy `SOFTWARE\Policies\Microsoft\Windows\DeviceGuard`
    /// `EnableVirtualizationBasedSecurity` = 1 with `HypervisorEnforcedCodeIntegrity` 1 or 2
    /// (Policy CSP VirtualizationBasedTechnology). Drivers must be HVCI-compatible then
    /// (Microsoft, "Driver compatibility with memory integrity and VBS"): an old virtio-win build
    /// that is not is refused, and a refused boot driver stops the boot.
    fn code_integrity_hazard(&self) -> anyhow::Result<Vec<Hazard>> {
        let mut found = Vec::new();
        let path = format!(
            r"{}\Control\DeviceGuard\Scenarios\HypervisorEnforcedCodeIntegrity",
            self.ccs
        );
        if let Some(v) = self.system.value(&path, "Enabled")? {
            if v.as_u64().is_some_and(|n| n != 0) {
                found.push(format!(
                    r"{}\Enabled = {}",
                    self.system.path(&path),
                    show_value(&v)
                ));
            }
        }
        if let Some(software) = &self.software {
            let policy = r"Policies\Microsoft\Windows\DeviceGuard";
            let vbs = software.number(policy, "EnableVirtualizationBasedSecurity")?;
            let hvci = software.number(policy, "HypervisorEnforcedCodeIntegrity")?;
            if vbs.is_some_and(|n| n != 0) && hvci.is_some_and(|n| n == 1 || n == 2) {
                found.push(format!(
                    r"{}: EnableVirtualizationBasedSecurity = {}, HypervisorEnforcedCodeIntegrity = {}",
                    software.path(policy),
                    vbs.unwrap_or(0),
                    hvci.unwrap_or(0)
                ));
            }
        }
        Ok(if found.is_empty() {
            Vec::new()
        } else {
            vec![Hazard::CodeIntegrity {
                evidence: found.join("; "),
            }]
        })
    }

    /// A virtio driver's service with `DeleteFlag` set.
    fn pending_deletion_hazards(&self) -> anyhow::Result<Vec<Hazard>> {
        let mut out = Vec::new();
        for service in ["viostor", "vioscsi", "netkvm"] {
            let path = format!(r"{}\Services\{service}", self.ccs);
            if let Some(v) = self.system.value(&path, "DeleteFlag")? {
                if v.as_u64().is_some_and(|n| n != 0) {
                    out.push(Hazard::PendingDeletion {
                        service: service.to_string(),
                        evidence: format!(
                            r"{}\DeleteFlag = {}",
                            self.system.path(&path),
                            show_value(&v)
                        ),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// The text of an INF file: UTF-16LE when it starts with the byte-order mark FF FE, else each
/// byte as a character.
fn decode_inf(bytes: &[u8]) -> String {
    match bytes {
        [0xff, 0xfe, rest @ ..] => {
            let units = rest
                .chunks_exact(2)
                .map(|p| u16::from_le_bytes([p[0], p[1]]));
            char::decode_utf16(units)
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect()
        }
        [0xef, 0xbb, 0xbf, rest @ ..] => String::from_utf8_lossy(rest).into_owned(),
        _ => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// The version of an INF's `DriverVer = mm/dd/yyyy[,w.x.y.z]` line (the version part, else the
/// date), from the `[Version]` section.
fn inf_driver_ver(text: &str) -> Option<String> {
    let mut in_version = false;
    for line in text.lines().take(100_000) {
        let line = line.split(';').next().unwrap_or("").trim();
        if line.starts_with('[') {
            in_version = line.eq_ignore_ascii_case("[Version]");
            continue;
        }
        if !in_version {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("DriverVer") {
            continue;
        }
        let mut parts = value.split(',').map(str::trim);
        let date = parts.next().unwrap_or("");
        let version = parts.next().unwrap_or("");
        let chosen = if version.is_empty() { date } else { version };
        let chosen: String = chosen.chars().take(64).collect();
        return (!chosen.is_empty()).then_some(chosen);
    }
    None
}

/// The volume path of a service's `ImagePath`, when it names a file on the system volume:
/// `\SystemRoot\…`, `%SystemRoot%\…`, `System32\…` (relative to the system root),
/// `\??\C:\…` or `C:\…` (the system volume). `None` for anything else or any `..`.
fn resolve_image_path(root: &str, image_path: &str) -> Option<String> {
    let p = image_path.trim().trim_matches('"');
    if p.is_empty() {
        return None;
    }
    let lower = p.to_ascii_lowercase();
    let under_root = |rest: &str| Some(format!("{root}/{}", rest.replace('\\', "/")));
    let rest = if let Some(r) = lower.strip_prefix(r"\systemroot\") {
        under_root(&p[p.len() - r.len()..])
    } else if let Some(r) = lower.strip_prefix(r"%systemroot%\") {
        under_root(&p[p.len() - r.len()..])
    } else if let Some(r) = lower
        .strip_prefix(r"\??\")
        .or(Some(lower.as_str()))
        .filter(|r| {
            r.len() > 3 && r.as_bytes().get(1) == Some(&b':') && r.as_bytes().get(2) == Some(&b'\\')
        })
    {
        Some(p[p.len() - r.len() + 3..].replace('\\', "/"))
    } else if !p.starts_with('\\') && !p.contains(':') {
        under_root(p)
    } else {
        None
    }?;
    let clean: Vec<&str> = rest.split('/').filter(|c| !c.is_empty()).collect();
    if clean.iter().any(|c| *c == "." || *c == "..") || clean.is_empty() {
        return None;
    }
    Some(clean.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(required: bool, outcome: Outcome, name: &str) -> Check {
        let mut c = Check::new(
            Target::VirtioBlk,
            name,
            required,
            Source::System,
            outcome == Outcome::Pass,
            "evidence",
            Some("fix".into()),
        );
        if outcome == Outcome::Unknown {
            c = Check::unknown(
                Target::VirtioBlk,
                name,
                required,
                Source::System,
                "unreadable",
            );
        }
        c
    }

    #[test]
    fn a_definite_failure_wins_over_unknowns() {
        use Outcome::*;
        let checks = [
            check(true, Unknown, "a"),
            check(true, Fail, "b"),
            check(true, Pass, "c"),
            check(false, Fail, "d"),
        ];
        assert_eq!(
            Readiness::combine(&checks, Some("machine unknown".into())),
            Readiness::NotReady {
                failed: vec!["b".into()]
            }
        );
        // Unknown only when nothing failed and something could not be decided.
        let checks = [
            check(true, Pass, "a"),
            check(true, Unknown, "b"),
            check(false, Fail, "c"),
        ];
        assert_eq!(
            Readiness::combine(&checks, None),
            Readiness::Unknown {
                why: "b: unreadable".into()
            }
        );
        // An informative unknown does not make the verdict unknown.
        let checks = [check(true, Pass, "a"), check(false, Unknown, "b")];
        assert_eq!(Readiness::combine(&checks, None), Readiness::Ready);
        assert_eq!(
            Readiness::combine(&checks, Some("machine unknown".into())),
            Readiness::Unknown {
                why: "machine unknown".into()
            }
        );
        assert_eq!(Readiness::combine(&[], None), Readiness::Ready);
        // A passed check carries no remedy; an unknown one neither.
        assert_eq!(check(true, Pass, "a").remedy, None);
        assert_eq!(check(true, Unknown, "a").remedy, None);
        assert_eq!(check(true, Fail, "a").remedy.as_deref(), Some("fix"));
    }

    #[test]
    fn policy_entries_match_by_vendor_device_and_class() {
        assert!(policy_entry_matches(
            "PCI\\VEN_1AF4&DEV_1001",
            0x1001,
            "010000"
        ));
        assert!(policy_entry_matches(
            "pci\\ven_1af4&dev_1001&subsys_00021af4&rev_00",
            0x1001,
            "010000"
        ));
        assert!(policy_entry_matches("PCI\\VEN_1AF4", 0x1042, "010000"));
        assert!(policy_entry_matches("PCI\\CC_0100", 0x1042, "010000"));
        assert!(!policy_entry_matches("PCI\\CC_0106", 0x1042, "010000"));
        assert!(!policy_entry_matches(
            "PCI\\VEN_1AF4&DEV_1001",
            0x1004,
            "010000"
        ));
        assert!(!policy_entry_matches("PCI\\VEN_8086", 0x1001, "010000"));
        assert!(!policy_entry_matches("USB\\VID_1AF4", 0x1001, "010000"));
        assert!(!policy_entry_matches("PCI\\", 0x1001, "010000"));
        assert!(policy_entry_matches(
            "PCI\\VEN_1AF4&DEV_1000&SUBSYS_00011AF4&REV_00\\3&13c0b0c5&0&18",
            0x1000,
            "020000"
        ));
    }

    #[test]
    fn image_paths_resolve_inside_the_volume() {
        let r = |p| resolve_image_path("Windows", p);
        assert_eq!(
            r(r"system32\DRIVERS\viostor.sys").as_deref(),
            Some("Windows/system32/DRIVERS/viostor.sys")
        );
        assert_eq!(
            r(r"\SystemRoot\System32\drivers\vioscsi.sys").as_deref(),
            Some("Windows/System32/drivers/vioscsi.sys")
        );
        assert_eq!(
            r(r"\??\C:\Windows\System32\DriverStore\FileRepository\x\viostor.sys").as_deref(),
            Some("Windows/System32/DriverStore/FileRepository/x/viostor.sys")
        );
        assert_eq!(r(r"C:\drv\a.sys").as_deref(), Some("drv/a.sys"));
        assert_eq!(r(r"system32\..\..\etc\passwd"), None);
        assert_eq!(r(r"\Device\HarddiskVolume1\a.sys"), None);
        assert_eq!(r(""), None);
    }

    #[test]
    fn inf_driver_versions_are_read_from_the_version_section() {
        let inf = "; comment\r\n[Version]\r\nSignature=\"$WINDOWS NT$\"\r\nDriverVer = 08/26/2024,100.95.104.26200 ; build\r\n[Other]\r\nDriverVer=01/01/2000,1.0\r\n";
        assert_eq!(inf_driver_ver(inf).as_deref(), Some("100.95.104.26200"));
        assert_eq!(
            inf_driver_ver("[version]\ndriverver=01/02/2003\n").as_deref(),
            Some("01/02/2003")
        );
        assert_eq!(inf_driver_ver("[Strings]\nDriverVer=1\n"), None);
        assert_eq!(inf_driver_ver("[Version]\nDriverVer=\n"), None);
        let utf16: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain(
                "[Version]\nDriverVer=1/1/2020,62.1\n"
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes),
            )
            .collect();
        assert_eq!(inf_driver_ver(&decode_inf(&utf16)).as_deref(), Some("62.1"));
    }

    #[test]
    fn hazards_serialize_with_meaning_and_remedy() {
        let h = Hazard::CrashAutoReboot {
            explicit: true,
            evidence: "x".into(),
        };
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["kind"], "crash-auto-reboot");
        assert_eq!(json["explicit"], true);
        assert_eq!(json["evidence"], "x");
        assert!(json["remedy"]
            .as_str()
            .unwrap()
            .contains("AutoReboot /t REG_DWORD /d 0"));
        assert!(json["meaning"].as_str().unwrap().contains("0x7B"));
        let h = Hazard::BitLocker {
            evidence: "y".into(),
        };
        assert_eq!(serde_json::to_value(&h).unwrap()["kind"], "bitlocker");
    }
}
