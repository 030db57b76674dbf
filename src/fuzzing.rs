//! One entry point per parser for the fuzz targets (`fuzz/`) and for the test that replays their
//! corpora and crashers (`tests/fuzz_corpus.rs`).
//!
//! Each function takes raw bytes (hostile input), runs the real parsing code over them the way
//! the tool does, and returns nothing: errors are expected results, a panic is a finding. Every
//! function bounds the work it asks for (keys walked, bytes read), so a slow input means a slow
//! parser, not a slow harness.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::hive::{Hive, Key};
use crate::image::ReadAt;

/// Most keys [`hive_lookups`] visits in its walk of the whole tree.
const HIVE_WALK_KEYS: usize = 256;
/// Most subkeys listed per key in that walk.
const HIVE_WALK_FANOUT: usize = 64;

/// The registry lookups the Windows verdict makes, over a hive file `primary` with an optional
/// transaction log `log1` (used only when the primary is dirty): the current control set from
/// `Select\Current`, the `viostor`/`vioscsi`/`netkvm` services in it and in `ControlSet001`/`002`,
/// the `CriticalDeviceDatabase` entries and `DriverDatabase\DeviceIds\PCI` entries of the virtio
/// devices; then a bounded walk of the tree that decodes and displays every value it meets.
pub fn hive_lookups(primary: &[u8], log1: Option<&[u8]>) {
    let primary: Arc<dyn ReadAt> = Arc::new(primary.to_vec());
    let log1 = log1.map(|log| Arc::new(log.to_vec()) as Arc<dyn ReadAt>);
    let Ok(hive) = Hive::open(primary, log1, None) else {
        return;
    };
    let _ = format!("{:?} {}", hive.state(), hive.bins_size());

    let current = hive
        .key("Select")
        .ok()
        .flatten()
        .and_then(|select| hive.value(&select, "Current").ok().flatten())
        .and_then(|value| value.as_u64());
    let mut sets = vec![1u64, 2];
    if let Some(n) = current.filter(|n| (1..=999).contains(n) && !sets.contains(n)) {
        sets.insert(0, n);
    }
    for set in sets {
        let control_set = format!("ControlSet{set:03}");
        for service in ["viostor", "vioscsi", "netkvm"] {
            if let Ok(Some(key)) = hive.key(&format!("{control_set}\\Services\\{service}")) {
                for name in ["Start", "Type", "ErrorControl", "Group", "ImagePath", ""] {
                    if let Ok(Some(value)) = hive.value(&key, name) {
                        let _ = (value.to_string(), value.as_u64(), value.as_str());
                    }
                }
            }
        }
        if let Ok(Some(cdd)) = hive.key(&format!("{control_set}\\Control\\CriticalDeviceDatabase"))
        {
            visit_matching(&hive, &cdd, "pci#ven_1af4");
        }
    }
    if let Ok(Some(pci)) = hive.key("DriverDatabase\\DeviceIds\\PCI") {
        visit_matching(&hive, &pci, "ven_1af4");
    }
    walk(&hive);
}

/// Read the values of the subkeys of `key` whose names start with `prefix` (any case).
fn visit_matching(hive: &Hive, key: &Key, prefix: &str) {
    let Ok(subkeys) = hive.subkeys(key) else {
        return;
    };
    for sub in subkeys.iter().take(HIVE_WALK_FANOUT) {
        if sub.name.to_ascii_lowercase().starts_with(prefix) {
            if let Ok(values) = hive.values(sub) {
                for (name, value) in values {
                    let _ = format!("{name} = {value}");
                }
            }
        }
    }
}

/// Breadth-first walk from the root over at most [`HIVE_WALK_KEYS`] keys, decoding every value.
fn walk(hive: &Hive) {
    let Ok(root) = hive.root() else {
        return;
    };
    let mut queue = VecDeque::from([root]);
    let mut visited = 0;
    while let Some(key) = queue.pop_front() {
        visited += 1;
        if visited > HIVE_WALK_KEYS {
            break;
        }
        let _ = (key.last_written(), key.subkey_count(), key.value_count());
        if let Ok(values) = hive.values(&key) {
            for (name, value) in values {
                let _ = format!("{name} = {value} {:?}", value.value_type());
            }
        }
        if let Ok(subkeys) = hive.subkeys(&key) {
            // Look one subkey up by name too (exercises hashes and hints).
            if let Some(first) = subkeys.first() {
                let _ = hive.subkey(&key, &first.name);
            }
            queue.extend(subkeys.into_iter().take(HIVE_WALK_FANOUT));
        }
    }
}

/// A libvirt domain XML through the domain reader and the planner: the facts and candidacy, then
/// plans for both target buses (all disks, SATA included, NICs always, forced; and the boot disk
/// only with the defaults) with the guest ready, their JSON and their diffs.
///
/// A plan the planner calls ready must come with a new definition that is well-formed XML and
/// that the domain reader reads again: if not, this panics (a planner bug, not an input error).
pub fn domain_plan(xml: &str) {
    use crate::plan::{
        plan, DiskSelection, GuestReadiness, HostFacts, NicPolicy, PlanOptions, PlanStatus,
        Readiness, TargetBus,
    };
    let Ok(facts) = crate::domain::parse_domain(xml) else {
        return;
    };
    let _ = facts.candidacy();
    let _ = facts.boot_disk().map(|disk| disk.source.display());
    let _ = serde_json::to_string(&facts);

    let ready = GuestReadiness {
        blk: Readiness::Ready,
        scsi: Readiness::Ready,
        nic: Readiness::Ready,
        hazards: Vec::new(),
    };
    let everything = |bus| PlanOptions {
        bus,
        include_sata: true,
        disks: DiskSelection::All,
        nics: NicPolicy::Always,
        force: true,
    };
    let options = [
        everything(TargetBus::Virtio),
        everything(TargetBus::Scsi),
        PlanOptions {
            disks: DiskSelection::Boot,
            ..PlanOptions::default()
        },
    ];
    for opts in options {
        let Ok(planned) = plan(xml, Some(&ready), &HostFacts::default(), &opts) else {
            continue;
        };
        let _ = (serde_json::to_string(&planned), planned.diff());
        if planned.status() == PlanStatus::Ready {
            if let Err(e) = crate::domain::parse_domain(&planned.new_xml) {
                panic!("the planned definition does not read back: {e}");
            }
        }
    }
}

/// [`domain_plan`] over bytes (the fuzz targets' input): invalid UTF-8 is decoded lossily.
pub fn domain_plan_bytes(data: &[u8]) {
    domain_plan(&String::from_utf8_lossy(data));
}
