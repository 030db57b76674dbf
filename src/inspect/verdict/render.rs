//! The verdict for a person: the lines `inspect` prints (facts, each target's readiness and
//! checks with the remedy under each failed one, hazards with theirs), names read from the guest
//! escaped so they cannot break a line.

use super::{Assessment, BindingSource, MachineFamily, Outcome, PciGeneration, Target};

impl Assessment {
    /// The human report, one line per item: facts, each target's verdict and checks (with the
    /// remedy under each failed one), hazards with their remedies.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.facts {
            Some(f) => out.push(format!("Windows: {}", f.summary())),
            None => out.push("Windows: facts not available".to_string()),
        }
        out.push(format!("System root: {}", self.system_root));
        let sees = match self.guest_sees {
            Some(PciGeneration::Legacy) => {
                "the guest will see the legacy virtio ids (blk 1001, scsi 1004, net 1000)"
            }
            Some(PciGeneration::Modern) => {
                "the guest will see the modern virtio ids (blk 1042, scsi 1048, net 1041)"
            }
            None => "machine type unknown: both legacy and modern ids must be bound",
        };
        out.push(format!("Machine: {} — {sees}", machine_word(self.machine)));
        if let Some(source) = self.binding_source {
            out.push(format!(
                "Device bindings read from: {}",
                match source {
                    BindingSource::CriticalDeviceDatabase => "CriticalDeviceDatabase",
                    BindingSource::DriverDatabase => "DriverDatabase",
                }
            ));
        }
        for target in [Target::VirtioBlk, Target::VirtioScsi, Target::Nic] {
            out.push(format!(
                "{}: {}",
                target.label(),
                self.readiness(target).describe()
            ));
            for check in self.checks.iter().filter(|c| c.target == target) {
                let mark = match (check.outcome, check.required) {
                    (Outcome::Pass, _) => "ok  ",
                    (Outcome::Fail, true) => "FAIL",
                    (Outcome::Fail, false) => "warn",
                    (Outcome::Unknown, _) => "??  ",
                };
                out.push(format!("  {mark} {} — {}", check.name, check.evidence));
                if let (Outcome::Fail, true, Some(remedy)) =
                    (check.outcome, check.required, &check.remedy)
                {
                    out.push(format!("       fix: {remedy}"));
                }
            }
        }
        if self.hazards.is_empty() {
            out.push("Hazards: none found".to_string());
        } else {
            out.push(format!("Hazards ({}):", self.hazards.len()));
            for hazard in &self.hazards {
                out.push(format!(
                    "  {}: {} — {}",
                    hazard.kind(),
                    hazard.meaning(),
                    hazard.evidence()
                ));
                out.push(format!("       fix: {}", hazard.remedy()));
            }
        }
        for note in &self.incomplete {
            out.push(format!("Incomplete: {note}"));
        }
        // Names read from the guest may hold control characters: never let them break lines.
        out.into_iter()
            .map(|line| {
                line.chars()
                    .flat_map(|c| {
                        let escaped: Vec<char> = if c.is_control() {
                            c.escape_default().collect()
                        } else {
                            vec![c]
                        };
                        escaped
                    })
                    .collect()
            })
            .collect()
    }
}
pub(super) fn machine_word(machine: MachineFamily) -> &'static str {
    match machine {
        MachineFamily::I440fx => "i440fx",
        MachineFamily::Q35 => "q35",
        MachineFamily::Other => "other machine type",
    }
}
