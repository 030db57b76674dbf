//! The rules: how the verdict is decided from the guest's hives and driver files, each check
//! with the evidence it was read from.

use std::sync::Arc;

use crate::inspect::guestfs::GuestFs;
use crate::inspect::hive::{Hive, HiveState, Value};
use crate::inspect::image::ReadAt;
use crate::inspect::windows::{quote, quote_list, show_value, ControlSet, NamedHive, WindowsFacts};

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
    let software = match open_hive(fs, root, "SOFTWARE") {
        Ok(h) => h,
        Err(e) => return Assessment::unknown(root, machine, &format!("{e:#}"), &hazards),
    };
    assess_hives(fs, root, &system, &software, machine, &hazards)
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
    let mut hazards = hazards.to_vec();
    let mut incomplete = Vec::new();
    let mut cap = None;
    for (name, hive) in [("SYSTEM", system), ("SOFTWARE", software)] {
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
                cap.get_or_insert_with(|| {
                    format!("{name} hive dirty, logs not replayed ({reason})")
                });
            }
        }
    }

    let facts = match WindowsFacts::read(system, software) {
        Ok(f) => Some(f),
        Err(e) => {
            incomplete.push(format!("Windows facts: {e:#}"));
            None
        }
    };
    let control_set = match ControlSet::current(system) {
        Ok(cs) => cs.name(),
        Err(e) => {
            let why = match &cap {
                Some(dirty) => format!("{dirty}; {e:#}"),
                None => format!("{e:#}"),
            };
            let mut a = Assessment::unknown(root, machine, &why, &hazards);
            a.facts = facts;
            a.incomplete = incomplete;
            return a;
        }
    };
    let inspector = Inspector {
        fs,
        root: root.trim_matches('/').to_string(),
        system: NamedHive::new("SYSTEM", system),
        software: NamedHive::new("SOFTWARE", software),
        ccs: control_set,
        machine,
    };
    let binding_source = match inspector.system.key("DriverDatabase") {
        Ok(Some(_)) => Some(BindingSource::DriverDatabase),
        Ok(None) => Some(BindingSource::CriticalDeviceDatabase),
        Err(e) => {
            incomplete.push(format!("binding source: {e:#}"));
            None
        }
    };

    let mut checks = Vec::new();
    let mut verdicts = Vec::new();
    for target in [Target::VirtioBlk, Target::VirtioScsi, Target::Nic] {
        let result = match (target, binding_source) {
            (Target::VirtioBlk, Some(src)) => inspector.storage(StorageDriver::Viostor, src),
            (Target::VirtioScsi, Some(src)) => inspector.storage(StorageDriver::Vioscsi, src),
            (Target::Nic, _) => inspector.nic(),
            (_, None) => Err(anyhow::anyhow!(
                "cannot tell whether SYSTEM\\DriverDatabase exists"
            )),
        };
        let readiness = match result {
            Ok((target_checks, ambiguity)) => {
                let failed: Vec<String> = target_checks
                    .iter()
                    .filter(|c| c.required && !c.passed)
                    .map(|c| c.name.clone())
                    .collect();
                checks.extend(target_checks);
                if !failed.is_empty() {
                    Readiness::NotReady { failed }
                } else if let Some(why) = ambiguity {
                    Readiness::Unknown { why }
                } else {
                    Readiness::Ready
                }
            }
            Err(e) => Readiness::Unknown {
                why: format!("{e:#}"),
            },
        };
        let readiness = match &cap {
            Some(why) => Readiness::Unknown { why: why.clone() },
            None => readiness,
        };
        verdicts.push(readiness);
    }

    inspector.registry_hazards(facts.as_ref(), &mut hazards, &mut incomplete);

    let mut verdicts = verdicts.into_iter();
    let unknown = || Readiness::Unknown {
        why: "not assessed".into(),
    };
    Assessment {
        system_root: root.to_string(),
        machine,
        guest_sees: generation_seen(machine),
        facts,
        binding_source,
        blk: verdicts.next().unwrap_or_else(unknown),
        scsi: verdicts.next().unwrap_or_else(unknown),
        nic: verdicts.next().unwrap_or_else(unknown),
        checks,
        hazards,
        incomplete,
    }
}

/// The checks of one target, and (when every required check passed) a reason the verdict is
/// still uncertain.
type TargetChecks = (Vec<Check>, Option<String>);

/// A PCI vendor:device pair as the registry spells it, `PCI\VEN_1AF4&DEV_1001`.
fn pci_id(device: u16) -> String {
    format!("PCI\\VEN_{VIRTIO_VENDOR:04X}&DEV_{device:04X}")
}

/// Vendor and device of a hardware-id-like name (`pci#ven_1af4&dev_1001&subsys_…`,
/// `VEN_1AF4&DEV_1042&SUBSYS_…`, `PCI\VEN_…`), any letter case, any further parts.
fn parse_vendor_device(name: &str) -> Option<(u16, u16)> {
    let upper = name.trim().to_ascii_uppercase();
    let rest = upper
        .strip_prefix("PCI#")
        .or_else(|| upper.strip_prefix("PCI\\"))
        .unwrap_or(&upper);
    let mut parts = rest.split('&');
    let vendor = parts.next()?.strip_prefix("VEN_")?;
    let device = parts.next()?.strip_prefix("DEV_")?;
    let hex4 = |s: &str| {
        (s.len() == 4)
            .then(|| u16::from_str_radix(s, 16).ok())
            .flatten()
    };
    Some((hex4(vendor)?, hex4(device)?))
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

struct Inspector<'a> {
    fs: &'a dyn GuestFs,
    root: String,
    system: NamedHive<'a>,
    software: NamedHive<'a>,
    ccs: String,
    machine: MachineFamily,
}

impl Inspector<'_> {
    /// The generations whose binding is required (the one the guest sees; both when unknown).
    fn seen(&self) -> Vec<PciGeneration> {
        match generation_seen(self.machine) {
            Some(g) => vec![g],
            None => vec![PciGeneration::Legacy, PciGeneration::Modern],
        }
    }

    fn storage(
        &self,
        driver: StorageDriver,
        source: BindingSource,
    ) -> anyhow::Result<TargetChecks> {
        let target = driver.target();
        let name = driver.service();
        let mut checks = Vec::new();
        let check = |name: String, passed: bool, required: bool, evidence: String| Check {
            target,
            name,
            passed,
            required,
            evidence,
        };

        // Service.
        let service_path = format!(r"{}\Services\{name}", self.ccs);
        let service = self.system.key(&service_path)?;
        let mut image_path = None;
        let service_check = check(
            format!("service {name} present"),
            service.is_some(),
            true,
            if service.is_some() {
                format!("{}: key present", self.system.path(&service_path))
            } else {
                format!("{}: key absent", self.system.path(&service_path))
            },
        );
        let mut service_checks = Vec::new();
        if let Some(key) = &service {
            let read = |value: &str| self.system.value_of(key, &service_path, value);
            let evidence = |value: &str, v: &Option<Value>| match v {
                Some(v) => format!(
                    r"{}\{value} = {}",
                    self.system.path(&service_path),
                    show_value(v)
                ),
                None => format!(r"{}\{value}: absent", self.system.path(&service_path)),
            };
            let start = read("Start")?;
            let start_n = start.as_ref().and_then(Value::as_u64);
            let start_note = match start_n {
                Some(0) => "",
                Some(1) => " (system start: too late for the boot disk)",
                Some(3) => " (demand start: loaded too late for the boot disk → STOP 0x7B)",
                Some(4) => " (disabled)",
                _ => "",
            };
            service_checks.push(check(
                format!("{name} Start=0 (boot)"),
                start_n == Some(0),
                true,
                format!("{}{start_note}", evidence("Start", &start)),
            ));
            let ty = read("Type")?;
            service_checks.push(check(
                format!("{name} Type=1 (kernel driver)"),
                ty.as_ref().and_then(Value::as_u64) == Some(1),
                true,
                evidence("Type", &ty),
            ));
            let error_control = read("ErrorControl")?;
            service_checks.push(check(
                format!("{name} ErrorControl=1"),
                error_control.as_ref().and_then(Value::as_u64) == Some(1),
                false,
                evidence("ErrorControl", &error_control),
            ));
            let group = read("Group")?;
            service_checks.push(check(
                format!("{name} Group=SCSI miniport"),
                group
                    .as_ref()
                    .and_then(Value::as_str)
                    .is_some_and(|g| g.eq_ignore_ascii_case("SCSI miniport")),
                false,
                evidence("Group", &group),
            ));
            let image = read("ImagePath")?;
            let expected_tail = format!(r"drivers\{name}.sys");
            let image_ok = match image.as_ref().and_then(Value::as_str) {
                Some(p) => p.to_ascii_lowercase().ends_with(&expected_tail),
                None => image.is_none(),
            };
            image_path = image.as_ref().and_then(Value::as_str).map(str::to_string);
            service_checks.push(check(
                format!("{name} ImagePath"),
                image_ok,
                false,
                match &image {
                    Some(_) => evidence("ImagePath", &image),
                    None => format!(
                        r"{}\ImagePath: absent (the loader uses system32\drivers\{name}.sys)",
                        self.system.path(&service_path)
                    ),
                },
            ));
        }

        // File: what the boot loader will load.
        checks.push(self.driver_file_check(target, name, image_path.as_deref())?);
        checks.push(service_check);
        checks.extend(service_checks);

        // Bindings, both generations reported; the seen one is required.
        let seen = self.seen();
        let mut bound = Vec::new();
        for generation in [PciGeneration::Legacy, PciGeneration::Modern] {
            let device = driver.device_id(generation);
            let (is_bound, evidence) = match source {
                BindingSource::CriticalDeviceDatabase => self.cdd_binding(name, device)?,
                BindingSource::DriverDatabase => self.driver_database_binding(name, device)?,
            };
            if is_bound {
                bound.push(generation);
            }
            let required = generation_seen(self.machine) == Some(generation);
            let evidence = if required {
                format!(
                    "the id the guest sees on {}: {evidence}",
                    machine_word(self.machine)
                )
            } else {
                evidence
            };
            checks.push(check(
                format!("{name} bound to {} ({})", pci_id(device), generation.word()),
                is_bound,
                required,
                evidence,
            ));
        }
        let mut ambiguity = None;
        if generation_seen(self.machine).is_none() {
            if bound.is_empty() {
                // Neither id is bound: not ready whatever the machine type.
                checks.push(check(
                    format!(
                        "{name} bound to a virtio-{} id",
                        if driver == StorageDriver::Viostor {
                            "blk"
                        } else {
                            "scsi"
                        }
                    ),
                    false,
                    true,
                    "neither the legacy nor the modern id is bound".to_string(),
                ));
            } else if bound.len() < seen.len() {
                ambiguity = Some(format!(
                    "machine type unknown: {name} is bound only for the {} id",
                    bound.first().map_or("", |g| g.word())
                ));
            }
        }

        checks.push(
            self.policy_check(
                target,
                &format!("{name} not denied by device-install policy"),
                &seen
                    .iter()
                    .map(|g| driver.device_id(*g))
                    .collect::<Vec<_>>(),
                "010000",
                SCSI_ADAPTER_CLASS,
            )?,
        );
        Ok((checks, ambiguity))
    }

    /// The driver file the loader will use: the service's ImagePath when it names a file on the
    /// system volume, else `<root>/System32/drivers/<name>.sys`.
    fn driver_file_check(
        &self,
        target: Target,
        name: &str,
        image_path: Option<&str>,
    ) -> anyhow::Result<Check> {
        let default = format!("{}/System32/drivers/{name}.sys", self.root);
        let (path, from) = match image_path.and_then(|p| resolve_image_path(&self.root, p)) {
            Some(p) => (p, " (from ImagePath)"),
            None => (default, ""),
        };
        let entry = self.fs.lookup(&path)?;
        let (passed, evidence) = match entry {
            Some(e) if e.is_dir => (false, format!("{path}{from}: a directory, not a file")),
            Some(e) if e.encrypted => (
                false,
                format!("{path}{from}: EFS-encrypted, the boot loader cannot read it"),
            ),
            Some(e) => (true, format!("{path}{from}: present ({} bytes)", e.size)),
            None => (false, format!("{path}{from}: absent")),
        };
        Ok(Check {
            target,
            name: format!("{name}.sys present"),
            passed,
            required: true,
            evidence,
        })
    }

    /// CriticalDeviceDatabase: a `pci#ven_1af4&dev_XXXX…` key with `Service` = driver.
    fn cdd_binding(&self, driver: &str, device: u16) -> anyhow::Result<(bool, String)> {
        let path = format!(r"{}\Control\CriticalDeviceDatabase", self.ccs);
        let Some(cdd) = self.system.key(&path)? else {
            return Ok((false, format!("{}: key absent", self.system.path(&path))));
        };
        let mut others = Vec::new();
        for sub in self.system.subkeys_of(&cdd, &path)?.iter().take(SCAN_LIMIT) {
            if parse_vendor_device(&sub.name) != Some((VIRTIO_VENDOR, device)) {
                continue;
            }
            let sub_path = format!(r"{path}\{}", sub.name);
            let service = self.system.value_of(sub, &sub_path, "Service")?;
            let shown = service
                .as_ref()
                .map_or_else(|| "absent".to_string(), show_value);
            if service
                .as_ref()
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case(driver))
            {
                let class = self.system.value_of(sub, &sub_path, "ClassGUID")?;
                let class_note = match class.as_ref().and_then(Value::as_str) {
                    Some(c) if guid_equal(c, SCSI_ADAPTER_CLASS) => {
                        ", ClassGUID = SCSIAdapter".to_string()
                    }
                    Some(c) => {
                        format!(
                            ", ClassGUID = {} (expected SCSIAdapter {SCSI_ADAPTER_CLASS})",
                            quote(c)
                        )
                    }
                    None => ", ClassGUID absent".to_string(),
                };
                return Ok((
                    true,
                    format!(
                        r"{}\Service = {shown}{class_note}",
                        self.system.path(&sub_path)
                    ),
                ));
            }
            others.push(format!(
                r"{}\Service = {shown}",
                self.system.path(&sub_path)
            ));
        }
        Ok((
            false,
            if others.is_empty() {
                format!(
                    "{}: no subkey for ven_{VIRTIO_VENDOR:04x}&dev_{device:04x}",
                    self.system.path(&path)
                )
            } else {
                format!("not bound to {driver}: {}", others.join("; "))
            },
        ))
    }

    /// DriverDatabase: `DeviceIds\PCI\VEN_1AF4&DEV_XXXX…` has a value named after an inf; a
    /// package of that inf has `Descriptors\PCI\<id>` naming a configuration whose `Service` is
    /// the driver.
    fn driver_database_binding(&self, driver: &str, device: u16) -> anyhow::Result<(bool, String)> {
        let ids_path = r"DriverDatabase\DeviceIds\PCI";
        let Some(ids) = self.system.key(ids_path)? else {
            return Ok((false, format!("{}: key absent", self.system.path(ids_path))));
        };
        let mut notes = Vec::new();
        for id_key in self
            .system
            .subkeys_of(&ids, ids_path)?
            .iter()
            .take(SCAN_LIMIT)
        {
            if parse_vendor_device(&id_key.name) != Some((VIRTIO_VENDOR, device)) {
                continue;
            }
            let id_path = format!(r"{ids_path}\{}", id_key.name);
            let infs: Vec<String> = self
                .system
                .values_of(id_key, &id_path)?
                .into_iter()
                .take(SCAN_LIMIT)
                .map(|(n, _)| n)
                .filter(|n| n.to_ascii_lowercase().ends_with(".inf"))
                .collect();
            if infs.is_empty() {
                notes.push(format!("{}: no .inf value", self.system.path(&id_path)));
            }
            for inf in infs {
                let (packages, how) = self.packages_of_inf(&inf)?;
                if packages.is_empty() {
                    notes.push(format!(
                        "{} has {} but no driver package of {inf} was found",
                        self.system.path(&id_path),
                        quote(&inf)
                    ));
                }
                for package in packages {
                    match self.package_service(&package, device)? {
                        Some((descriptor, conf, service)) if service.eq_ignore_ascii_case(driver) => {
                            return Ok((
                                true,
                                format!(
                                    r"{} has {} → {how} {package} → DriverPackages\{package}\Descriptors\PCI\{descriptor} Configuration = {} → Configurations\{conf}\Service = {}",
                                    self.system.path(&id_path),
                                    quote(&inf),
                                    quote(&conf),
                                    quote(&service)
                                ),
                            ));
                        }
                        Some((descriptor, conf, service)) => notes.push(format!(
                            r"{} has {} → {package}\Descriptors\PCI\{descriptor} → Configurations\{conf}\Service = {}, not {driver}",
                            self.system.path(&id_path),
                            quote(&inf),
                            quote(&service)
                        )),
                        None => notes.push(format!(
                            r"{} has {} → {package}: no descriptor for VEN_{VIRTIO_VENDOR:04X}&DEV_{device:04X} with a configuration that names a service",
                            self.system.path(&id_path),
                            quote(&inf)
                        )),
                    }
                }
            }
        }
        Ok((
            false,
            if notes.is_empty() {
                format!(
                    "{}: no subkey for VEN_{VIRTIO_VENDOR:04X}&DEV_{device:04X}",
                    self.system.path(ids_path)
                )
            } else {
                format!("not bound to {driver}: {}", notes.join("; "))
            },
        ))
    }

    /// The driver packages of an inf: `DriverInfFiles\<inf>` (`Active`, then the default
    /// list), else the packages named `<inf>_…`. Returns them with how they were found.
    fn packages_of_inf(&self, inf: &str) -> anyhow::Result<(Vec<String>, String)> {
        let mut packages: Vec<String> = Vec::new();
        let inf_path = format!(r"DriverDatabase\DriverInfFiles\{inf}");
        if let Some(key) = self.system.key(&inf_path)? {
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
                return Ok((packages, format!(r"DriverInfFiles\{inf} →")));
            }
        }
        let pkgs_path = r"DriverDatabase\DriverPackages";
        if let Some(pkgs) = self.system.key(pkgs_path)? {
            let prefix = format!("{}_", inf.to_ascii_lowercase());
            for p in self
                .system
                .subkeys_of(&pkgs, pkgs_path)?
                .iter()
                .take(SCAN_LIMIT)
            {
                if p.name.to_ascii_lowercase().starts_with(&prefix) {
                    packages.push(p.name.clone());
                }
            }
        }
        Ok((packages, "package".to_string()))
    }

    /// In package `package`: a `Descriptors\PCI\<id>` for the virtio device, its
    /// `Configuration`, and that configuration's `Service` (descriptor, configuration, service).
    fn package_service(
        &self,
        package: &str,
        device: u16,
    ) -> anyhow::Result<Option<(String, String, String)>> {
        let base = format!(r"DriverDatabase\DriverPackages\{package}");
        let desc_path = format!(r"{base}\Descriptors\PCI");
        let Some(descriptors) = self.system.key(&desc_path)? else {
            return Ok(None);
        };
        let mut fallback = None;
        for d in self
            .system
            .subkeys_of(&descriptors, &desc_path)?
            .iter()
            .take(SCAN_LIMIT)
        {
            if parse_vendor_device(&d.name) != Some((VIRTIO_VENDOR, device)) {
                continue;
            }
            let d_path = format!(r"{desc_path}\{}", d.name);
            let Some(conf) = self
                .system
                .value_of(d, &d_path, "Configuration")?
                .as_ref()
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                continue;
            };
            let conf_path = format!(r"{base}\Configurations\{conf}");
            let Some(service) = self.system.string(&conf_path, "Service")? else {
                continue;
            };
            let found = (d.name.clone(), conf, service);
            if fallback.is_none() {
                fallback = Some(found);
            }
        }
        Ok(fallback)
    }

    /// Device-installation restriction policy for a device (its ids and setup class).
    fn policy_check(
        &self,
        target: Target,
        name: &str,
        devices: &[u16],
        pci_class: &str,
        setup_class: &str,
    ) -> anyhow::Result<Check> {
        let path = RESTRICTIONS_KEY;
        let shown = self.software.path(path);
        let Some(key) = self.software.key(path)? else {
            return Ok(Check {
                target,
                name: name.to_string(),
                passed: true,
                required: true,
                evidence: format!("{shown}: key absent"),
            });
        };
        let flag = |value: &str| -> anyhow::Result<bool> {
            Ok(self
                .software
                .value_of(&key, path, value)?
                .and_then(|v| v.as_u64())
                .is_some_and(|n| n != 0))
        };
        let list = |sub: &str| -> anyhow::Result<Vec<(String, String)>> {
            let sub_path = format!(r"{path}\{sub}");
            let Some(k) = self.software.key(&sub_path)? else {
                return Ok(Vec::new());
            };
            Ok(self
                .software
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
        for (switch, sub) in [
            ("DenyDeviceIDs", "DenyDeviceIDs"),
            ("DenyInstanceIDs", "DenyInstanceIDs"),
        ] {
            if flag(switch)? {
                for (n, entry) in list(sub)? {
                    if id_matches(&entry) {
                        denials.push(format!(
                            r"{shown}\{sub}\{n} = {} ({switch} = 1)",
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
        Ok(Check {
            target,
            name: name.to_string(),
            passed: denials.is_empty(),
            required: true,
            evidence: if denials.is_empty() {
                format!(
                    "{shown}: present, no deny entry for {} or class {setup_class}",
                    ids.join(", ")
                )
            } else {
                denials.join("; ")
            },
        })
    }

    fn nic(&self) -> anyhow::Result<TargetChecks> {
        let target = Target::Nic;
        let mut checks = Vec::new();
        let file = format!("{}/System32/drivers/netkvm.sys", self.root);
        let file_entry = self.fs.lookup(&file)?.filter(|e| !e.is_dir);
        let repo = format!("{}/System32/DriverStore/FileRepository", self.root);
        let mut staged = Vec::new();
        if self.fs.lookup(&repo)?.is_some_and(|e| e.is_dir) {
            for entry in self.fs.read_dir(&repo)?.into_iter().take(SCAN_LIMIT) {
                if entry.is_dir && entry.name.to_ascii_lowercase().starts_with("netkvm.inf_") {
                    staged.push(format!("{repo}/{}", entry.name));
                }
            }
        }
        let evidence = match (&file_entry, staged.is_empty()) {
            (Some(e), true) => format!("{file}: present ({} bytes)", e.size),
            (Some(e), false) => format!(
                "{file}: present ({} bytes); staged: {}",
                e.size,
                staged.join(", ")
            ),
            (None, false) => format!("{file}: absent; staged: {}", staged.join(", ")),
            (None, true) => format!("{file}: absent; no {repo}/netkvm.inf_* package"),
        };
        checks.push(Check {
            target,
            name: "netkvm.sys present or staged in the DriverStore".to_string(),
            passed: file_entry.is_some() || !staged.is_empty(),
            required: true,
            evidence,
        });
        let service_path = format!(r"{}\Services\netkvm", self.ccs);
        let service = self.system.key(&service_path)?;
        checks.push(Check {
            target,
            name: "service netkvm present".to_string(),
            passed: service.is_some(),
            required: false,
            evidence: match service {
                Some(_) => format!("{}: key present", self.system.path(&service_path)),
                None => format!(
                    "{}: key absent (Plug and Play installs it at first boot)",
                    self.system.path(&service_path)
                ),
            },
        });
        let devices: Vec<u16> = self.seen().into_iter().map(net_device_id).collect();
        checks.push(self.policy_check(
            target,
            "netkvm not denied by device-install policy",
            &devices,
            "020000",
            NET_CLASS,
        )?);
        Ok((checks, None))
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
    }

    fn restrictions_hazard(&self) -> anyhow::Result<Vec<Hazard>> {
        let path = RESTRICTIONS_KEY;
        let Some(key) = self.software.key(path)? else {
            return Ok(Vec::new());
        };
        let values: Vec<String> = self
            .software
            .values_of(&key, path)?
            .iter()
            .take(64)
            .map(|(n, v)| format!("{n} = {}", show_value(v)))
            .collect();
        let subkeys: Vec<String> = self
            .software
            .subkeys_of(&key, path)?
            .iter()
            .take(64)
            .map(|k| k.name.clone())
            .collect();
        Ok(vec![Hazard::DeviceInstallRestrictions {
            evidence: format!(
                "{}: values [{}], subkeys [{}]",
                self.software.path(path),
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
            let strings = |v: Option<Value>| -> Vec<String> {
                match v {
                    Some(Value::MultiSz(list)) => list,
                    Some(Value::Sz(s)) => vec![s],
                    _ => Vec::new(),
                }
                .into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .take(LIST_LIMIT)
                .collect()
            };
            let addresses: Vec<String> =
                strings(self.system.value_of(iface, &if_path, "IPAddress")?)
                    .into_iter()
                    .filter(|a| a != "0.0.0.0")
                    .collect();
            if addresses.is_empty() {
                continue;
            }
            let masks = strings(self.system.value_of(iface, &if_path, "SubnetMask")?);
            let gateways = strings(self.system.value_of(iface, &if_path, "DefaultGateway")?);
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

    #[test]
    fn vendor_and_device_parse_in_any_spelling() {
        assert_eq!(
            parse_vendor_device("pci#ven_1af4&dev_1001&subsys_00021af4&rev_00"),
            Some((0x1af4, 0x1001))
        );
        assert_eq!(
            parse_vendor_device("VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01"),
            Some((0x1af4, 0x1042))
        );
        assert_eq!(
            parse_vendor_device("PCI\\VEN_1af4&DEV_1004"),
            Some((0x1af4, 0x1004))
        );
        assert_eq!(
            parse_vendor_device("pci#ven_8086&dev_7010"),
            Some((0x8086, 0x7010))
        );
        assert_eq!(parse_vendor_device("CC_0101"), None);
        assert_eq!(parse_vendor_device("pci#ven_1af4&dev_10011"), None);
        assert_eq!(parse_vendor_device("pci#ven_1af4"), None);
        assert_eq!(parse_vendor_device(""), None);
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
}
