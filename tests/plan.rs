//! Golden tests of the conversion planner over domain XMLs shaped like real ones.
//!
//! Each case plans one fixture from `fixtures/domains/` with given options, guest readiness and host
//! facts, and compares the new XML, the diff and the plan (as JSON, without the XML) with the files
//! in `fixtures/domains/expected/`. `UPDATE_GOLDEN=1 cargo test --test plan` rewrites them; review
//! the change before committing it.
//!
//! On every case it also checks: only the named nodes changed (the rest of the document is the same
//! tree, and every changed line of the diff is one of the rewritten elements), the new XML passes the
//! project's checks and libvirt's schema (test driver, `VIR_DOMAIN_DEFINE_VALIDATE`), and planning the
//! new XML again changes nothing.

use std::path::{Path, PathBuf};

use virtio_migrate::plan::validate;
use virtio_migrate::plan::{
    plan, BlockerKind, DiskSelection, GuestReadiness, HostFacts, NicPolicy, Plan, PlanOptions,
    PlanStatus, Readiness, SnapshotFacts, TargetBus, WarningKind,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/domains")
}

fn fixture(name: &str) -> String {
    let path = fixtures().join(format!("{name}.xml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ready() -> GuestReadiness {
    GuestReadiness {
        blk: Readiness::Ready,
        scsi: Readiness::Ready,
        nic: Readiness::Ready,
        hazards: Vec::new(),
    }
}

struct Case {
    name: &'static str,
    fixture: &'static str,
    opts: PlanOptions,
    readiness: Option<GuestReadiness>,
    host: HostFacts,
    status: PlanStatus,
}

fn opts() -> PlanOptions {
    PlanOptions::default()
}

fn cases() -> Vec<Case> {
    let case = |name, fixture, opts, readiness, status| Case {
        name,
        fixture,
        opts,
        readiness,
        host: HostFacts::default(),
        status,
    };
    let mut v = vec![
        case(
            "win2k8r2-virtio",
            "win2k8r2",
            opts(),
            Some(ready()),
            PlanStatus::Ready,
        ),
        case(
            "win2k8r2-scsi",
            "win2k8r2",
            PlanOptions {
                bus: TargetBus::Scsi,
                ..opts()
            },
            Some(ready()),
            PlanStatus::Ready,
        ),
        case(
            "win2k8r2-boot-only-nics-never",
            "win2k8r2",
            PlanOptions {
                disks: DiskSelection::Boot,
                nics: NicPolicy::Never,
                ..opts()
            },
            Some(ready()),
            PlanStatus::Ready,
        ),
        case(
            "win2k8r2-not-checked",
            "win2k8r2",
            opts(),
            None,
            PlanStatus::Blocked,
        ),
        case(
            "win2k8r2-not-checked-forced",
            "win2k8r2",
            PlanOptions {
                force: true,
                nics: NicPolicy::Always,
                ..opts()
            },
            None,
            PlanStatus::Ready,
        ),
        case(
            "win2003-viostor-missing",
            "win2003",
            PlanOptions {
                force: true,
                ..opts()
            },
            Some(GuestReadiness {
                blk: Readiness::NotReady {
                    failed: vec!["no viostor service".to_string()],
                },
                ..ready()
            }),
            PlanStatus::Blocked,
        ),
        case(
            "win10-q35-sata",
            "win10-q35-sata",
            PlanOptions {
                include_sata: true,
                ..opts()
            },
            Some(ready()),
            PlanStatus::Ready,
        ),
        case(
            "win10-q35-sata-left",
            "win10-q35-sata",
            opts(),
            Some(ready()),
            PlanStatus::Ready,
        ),
        case(
            "win2019-uefi-scsi",
            "win2019-uefi",
            PlanOptions {
                include_sata: true,
                bus: TargetBus::Scsi,
                ..opts()
            },
            Some(ready()),
            PlanStatus::Ready,
        ),
        case(
            "multi-disk-boot-order",
            "multi-disk-boot-order",
            opts(),
            Some(ready()),
            PlanStatus::Ready,
        ),
        case(
            "multi-disk-boot-order-scsi",
            "multi-disk-boot-order",
            PlanOptions {
                bus: TargetBus::Scsi,
                ..opts()
            },
            Some(ready()),
            PlanStatus::Ready,
        ),
        case(
            "ide-cdrom-disk",
            "ide-cdrom-disk",
            opts(),
            Some(ready()),
            PlanStatus::Ready,
        ),
        case(
            "already-virtio",
            "already-virtio",
            opts(),
            Some(ready()),
            PlanStatus::NothingToDo,
        ),
        case("nova", "nova", opts(), Some(ready()), PlanStatus::Blocked),
        case(
            "nova-forced",
            "nova",
            PlanOptions {
                force: true,
                ..opts()
            },
            Some(ready()),
            PlanStatus::Ready,
        ),
        case(
            "cloudstack",
            "cloudstack",
            opts(),
            None,
            PlanStatus::Blocked,
        ),
        case(
            "boot-order-conflict",
            "boot-order-conflict",
            opts(),
            Some(ready()),
            PlanStatus::Ready,
        ),
        case(
            "boot-order-conflict-scsi",
            "boot-order-conflict",
            PlanOptions {
                bus: TargetBus::Scsi,
                ..opts()
            },
            Some(ready()),
            PlanStatus::Ready,
        ),
    ];
    // The layouts of issue 14: a virtio data disk beside the IDE root, SCSI data disks, q35/SATA,
    // two IDE data disks with a CD-ROM and a floppy, UEFI.
    let scsi = PlanOptions {
        bus: TargetBus::Scsi,
        ..opts()
    };
    let sata = PlanOptions {
        include_sata: true,
        ..opts()
    };
    for (name, fixture, o) in [
        ("ide-virtio-data", "ide-virtio-data", opts()),
        ("ide-virtio-data-scsi", "ide-virtio-data", scsi),
        (
            "ide-virtio-data-cdrom-first",
            "ide-virtio-data-cdrom-first",
            opts(),
        ),
        ("scsi-data-disks", "scsi-data-disks", opts()),
        ("scsi-data-disks-scsi", "scsi-data-disks", scsi),
        ("q35-sata-virtio-data", "q35-sata-virtio-data", sata),
        ("ide-two-data-cdrom", "ide-two-data-cdrom", opts()),
        (
            "ide-two-data-cdrom-boot-only",
            "ide-two-data-cdrom",
            PlanOptions {
                disks: DiskSelection::Boot,
                ..opts()
            },
        ),
        ("uefi-virtio-data", "uefi-virtio-data", sata),
        (
            "uefi-virtio-data-scsi",
            "uefi-virtio-data",
            PlanOptions {
                bus: TargetBus::Scsi,
                ..sata
            },
        ),
    ] {
        v.push(case(name, fixture, o, Some(ready()), PlanStatus::Ready));
    }
    // The Windows 2003 guest: managed save, a snapshot from before the change, on_poweroff=restart,
    // a hazard from the inspection.
    v.push(Case {
        name: "win2003-host-hazards",
        fixture: "win2003",
        opts: opts(),
        readiness: Some(GuestReadiness {
            hazards: vec!["pending Windows updates: the first boot may take long".to_string()],
            ..ready()
        }),
        host: HostFacts {
            transient: false,
            managed_save: true,
            snapshots: vec![SnapshotFacts {
                name: "before-sp2".to_string(),
                xml: format!(
                    "<domainsnapshot><name>before-sp2</name><disks><disk name='hda' snapshot='internal'/></disks>{}</domainsnapshot>",
                    fixture("win2003")
                ),
            }],
        },
        status: PlanStatus::Ready,
    });
    v.push(Case {
        name: "cloudstack-transient-forced",
        fixture: "cloudstack",
        opts: PlanOptions {
            force: true,
            ..opts()
        },
        readiness: Some(ready()),
        host: HostFacts {
            transient: true,
            ..HostFacts::default()
        },
        status: PlanStatus::Blocked,
    });
    v
}

fn run(case: &Case) -> Plan {
    plan(
        &fixture(case.fixture),
        case.readiness.as_ref(),
        &case.host,
        &case.opts,
    )
    .unwrap_or_else(|e| panic!("{}: {e:#}", case.name))
}

/// Compare with the golden file, or rewrite it with UPDATE_GOLDEN=1.
fn golden(file: &str, actual: &str) -> Result<(), String> {
    let path = fixtures().join("expected").join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return Ok(());
    }
    let expected = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()))?;
    if expected != actual {
        return Err(format!(
            "{} drifted:\n{}",
            path.display(),
            virtio_migrate::plan::diff::unified(&expected, actual, "expected", "actual")
        ));
    }
    Ok(())
}

fn plan_summary(plan: &Plan) -> String {
    let mut v = serde_json::to_value(plan).unwrap();
    let map = v.as_object_mut().unwrap();
    map.remove("new_xml");
    map.insert(
        "status".to_string(),
        serde_json::to_value(plan.status()).unwrap(),
    );
    let mut s = serde_json::to_string_pretty(&v).unwrap();
    s.push('\n');
    s
}

#[test]
fn golden_plans_xml_and_diffs() {
    let mut failures = Vec::new();
    for case in cases() {
        let plan = run(&case);
        if plan.status() != case.status {
            failures.push(format!(
                "{}: status {:?}, expected {:?}; blockers {:?}",
                case.name,
                plan.status(),
                case.status,
                plan.blockers
            ));
        }
        for (file, text) in [
            (format!("{}.xml", case.name), plan.new_xml.clone()),
            (format!("{}.diff", case.name), plan.diff()),
            (format!("{}.plan.json", case.name), plan_summary(&plan)),
        ] {
            if let Err(e) = golden(&file, &text) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A simplified tree: elements with attributes in order, non-blank text and comments; blank text
/// (indentation) is left out because a removed element takes its line with it.
#[derive(Debug, PartialEq)]
enum Tree {
    Element {
        name: String,
        namespace: Option<String>,
        attributes: Vec<(String, String)>,
        children: Vec<Tree>,
    },
    Text(String),
    Comment(String),
}

/// What a conversion may change: per disk position whether its target/address may differ, per
/// interface position whether its model may differ, and added scsi controllers. `<boot>` elements
/// (of `<os>`, disks and interfaces) are left out: [`boots`] compares them.
fn tree(
    node: roxmltree::Node,
    changed_disks: &[usize],
    changed_nics: &[usize],
    skip_controllers: &[(String, String)],
) -> Option<Tree> {
    if node.is_comment() {
        return Some(Tree::Comment(node.text().unwrap_or("").to_string()));
    }
    if node.is_text() {
        let t = node.text().unwrap_or("");
        return (!t.trim().is_empty()).then(|| Tree::Text(t.to_string()));
    }
    if !node.is_element() {
        return None;
    }
    let mut children = Vec::new();
    let name = node.tag_name().name();
    let mut disk_no = 0;
    let mut nic_no = 0;
    for child in node.children() {
        if child.is_element()
            && child.tag_name().name() == "boot"
            && matches!(name, "os" | "disk" | "interface")
        {
            continue;
        }
        if name == "devices" && child.is_element() {
            let cname = child.tag_name().name();
            if cname == "disk" {
                let changed = changed_disks.contains(&disk_no);
                disk_no += 1;
                if changed {
                    // Keep the disk but drop its <target> and <address>.
                    let kept: Vec<Tree> = child
                        .children()
                        .filter(|c| {
                            !(c.is_element()
                                && matches!(c.tag_name().name(), "target" | "address" | "boot"))
                        })
                        .filter_map(|c| tree(c, &[], &[], &[]))
                        .collect();
                    children.push(element(child, kept));
                    continue;
                }
            }
            if cname == "interface" {
                let changed = changed_nics.contains(&nic_no);
                nic_no += 1;
                if changed {
                    let kept: Vec<Tree> = child
                        .children()
                        .filter(|c| {
                            !(c.is_element() && matches!(c.tag_name().name(), "model" | "boot"))
                        })
                        .filter_map(|c| tree(c, &[], &[], &[]))
                        .collect();
                    children.push(element(child, kept));
                    continue;
                }
            }
            if cname == "controller" {
                let key = (
                    child.attribute("type").unwrap_or("").to_string(),
                    child.attribute("index").unwrap_or("").to_string(),
                );
                if skip_controllers.contains(&key) {
                    continue;
                }
            }
        }
        if let Some(t) = tree(child, changed_disks, changed_nics, skip_controllers) {
            children.push(t);
        }
    }
    Some(element(node, children))
}

fn element(node: roxmltree::Node, children: Vec<Tree>) -> Tree {
    Tree::Element {
        name: node.tag_name().name().to_string(),
        namespace: node.tag_name().namespace().map(str::to_string),
        attributes: node
            .attributes()
            .map(|a| (a.name().to_string(), a.value().to_string()))
            .collect(),
        children,
    }
}

/// Every boot element: `os boot dev=hd`, `disk#1 order=2`, … in document order.
fn boots(doc: &roxmltree::Document) -> Vec<String> {
    let root = doc.root_element();
    let mut out = Vec::new();
    for os in root.children().filter(|c| c.has_tag_name("os")) {
        for b in os.children().filter(|c| c.has_tag_name("boot")) {
            out.push(format!("os boot dev={}", b.attribute("dev").unwrap_or("")));
        }
    }
    for devices in root.children().filter(|c| c.has_tag_name("devices")) {
        let mut counts = std::collections::BTreeMap::new();
        for d in devices.children().filter(|c| c.is_element()) {
            let n = counts.entry(d.tag_name().name()).or_insert(0usize);
            for b in d.children().filter(|c| c.has_tag_name("boot")) {
                out.push(format!(
                    "{}#{} order={}",
                    d.tag_name().name(),
                    n,
                    b.attribute("order").unwrap_or("")
                ));
            }
            *n += 1;
        }
    }
    out
}

fn disk_targets(doc: &roxmltree::Document) -> Vec<(String, String)> {
    doc.descendants()
        .filter(|n| n.has_tag_name("disk") && n.parent().is_some_and(|p| p.has_tag_name("devices")))
        .map(|d| {
            let t = d.children().find(|c| c.has_tag_name("target"));
            (
                t.and_then(|t| t.attribute("dev")).unwrap_or("").to_string(),
                t.and_then(|t| t.attribute("bus")).unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn nic_models(doc: &roxmltree::Document) -> Vec<Option<String>> {
    doc.descendants()
        .filter(|n| {
            n.has_tag_name("interface") && n.parent().is_some_and(|p| p.has_tag_name("devices"))
        })
        .map(|i| {
            i.children()
                .find(|c| c.has_tag_name("model"))
                .and_then(|m| m.attribute("type"))
                .map(str::to_string)
        })
        .collect()
}

fn scsi_controllers(doc: &roxmltree::Document) -> Vec<(String, String)> {
    doc.descendants()
        .filter(|n| n.has_tag_name("controller") && n.attribute("type") == Some("scsi"))
        .map(|c| {
            (
                "scsi".to_string(),
                c.attribute("index").unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn everything_not_named_is_preserved() {
    for case in cases() {
        let plan = run(&case);
        let old = roxmltree::Document::parse(&plan.original_xml).unwrap();
        let new = roxmltree::Document::parse(&plan.new_xml).unwrap();
        let (old_disks, new_disks) = (disk_targets(&old), disk_targets(&new));
        assert_eq!(
            old_disks.len(),
            new_disks.len(),
            "{}: disk count",
            case.name
        );
        let changed_disks: Vec<usize> = (0..old_disks.len())
            .filter(|&i| old_disks[i] != new_disks[i])
            .collect();
        let (old_nics, new_nics) = (nic_models(&old), nic_models(&new));
        assert_eq!(old_nics.len(), new_nics.len(), "{}: NIC count", case.name);
        let changed_nics: Vec<usize> = (0..old_nics.len())
            .filter(|&i| old_nics[i] != new_nics[i])
            .collect();
        let old_ctl = scsi_controllers(&old);
        let added: Vec<(String, String)> = scsi_controllers(&new)
            .into_iter()
            .filter(|c| !old_ctl.contains(c))
            .collect();
        assert!(
            added.len() <= 1,
            "{}: more than one controller added",
            case.name
        );
        let a = tree(old.root_element(), &changed_disks, &changed_nics, &[]);
        let b = tree(new.root_element(), &changed_disks, &changed_nics, &added);
        assert_eq!(
            a, b,
            "{}: something besides the named nodes changed",
            case.name
        );

        // The changes the plan lists are exactly the nodes that changed.
        let listed_disks = plan
            .changes
            .iter()
            .filter(|c| c.kind == virtio_migrate::plan::ChangeKind::DiskBus)
            .count();
        let listed_nics = plan
            .changes
            .iter()
            .filter(|c| c.kind == virtio_migrate::plan::ChangeKind::NicModel)
            .count();
        assert_eq!(listed_disks, changed_disks.len(), "{}", case.name);
        assert_eq!(listed_nics, changed_nics.len(), "{}", case.name);

        // Boot elements change only with a boot-order change.
        let boot_change = plan
            .changes
            .iter()
            .any(|c| c.kind == virtio_migrate::plan::ChangeKind::BootOrder);
        if !boot_change {
            assert_eq!(boots(&old), boots(&new), "{}: boot elements", case.name);
        }

        // Byte level: every changed line of the diff is one of the rewritten elements.
        for line in plan.diff().lines() {
            if line.starts_with("---") || line.starts_with("+++") || line.starts_with("@@") {
                continue;
            }
            if let Some(body) = line.strip_prefix('-').or_else(|| line.strip_prefix('+')) {
                let body = body.trim_start();
                assert!(
                    body.starts_with("<target dev=")
                        || body.starts_with("<address type='drive'")
                        || body.starts_with("<model type=")
                        || body.starts_with("<controller type='scsi'")
                        || (boot_change
                            && (body.starts_with("<boot order=")
                                || body.starts_with("<boot dev="))),
                    "{}: unexpected changed line {line:?}",
                    case.name
                );
            }
        }
    }
}

#[test]
fn every_produced_xml_validates() {
    for case in cases() {
        let plan = run(&case);
        // The fixtures themselves are valid, so a failure below is the planner's.
        validate::schema(&plan.original_xml)
            .unwrap_or_else(|e| panic!("{}: fixture invalid: {e}", case.name));
        let failures = validate::check(&plan.new_xml, None);
        assert!(failures.is_empty(), "{}: {failures:?}", case.name);
        let blocked_on_own_check = plan
            .blockers
            .iter()
            .any(|b| b.kind == BlockerKind::CheckFailed);
        assert!(!blocked_on_own_check, "{}: {:?}", case.name, plan.blockers);
        validate::schema(&plan.new_xml)
            .unwrap_or_else(|e| panic!("{}: libvirt rejects the plan: {e}", case.name));
    }
}

#[test]
fn planning_the_new_xml_again_changes_nothing() {
    for case in cases() {
        let plan = run(&case);
        let again = virtio_migrate::plan::plan(
            &plan.new_xml,
            case.readiness.as_ref(),
            &case.host,
            &case.opts,
        )
        .unwrap();
        // The boot-order conflict is blocked, but its XML is still produced; converting it again
        // must find nothing more to do as well.
        assert!(
            again.is_empty(),
            "{}: second plan {:?}",
            case.name,
            again.changes
        );
        assert_eq!(again.status(), PlanStatus::NothingToDo, "{}", case.name);
        assert_eq!(again.new_xml, plan.new_xml, "{}", case.name);
    }
}

/// The per-device boot orders of a planned definition, in document order: (element, its disk
/// target or NIC MAC, order); and the `<os><boot dev>` values left.
fn boot_elements(xml: &str) -> (Vec<String>, Vec<(String, String, String)>) {
    let doc = roxmltree::Document::parse(xml).unwrap();
    let root = doc.root_element();
    let os: Vec<String> = root
        .children()
        .filter(|c| c.has_tag_name("os"))
        .flat_map(|o| o.children().filter(|c| c.has_tag_name("boot")))
        .map(|b| b.attribute("dev").unwrap_or("").to_string())
        .collect();
    let mut per_device = Vec::new();
    for d in root
        .children()
        .filter(|c| c.has_tag_name("devices"))
        .flat_map(|d| d.children().filter(|c| c.is_element()))
    {
        let Some(order) = d
            .children()
            .find(|c| c.has_tag_name("boot"))
            .and_then(|b| b.attribute("order"))
        else {
            continue;
        };
        let key = d
            .children()
            .find(|c| c.has_tag_name("target") || c.has_tag_name("mac"))
            .and_then(|t| t.attribute("dev").or_else(|| t.attribute("address")))
            .unwrap_or("")
            .to_string();
        per_device.push((d.tag_name().name().to_string(), key, order.to_string()));
    }
    (os, per_device)
}

#[test]
fn boot_order_is_made_explicit_where_needed_and_kept_elsewhere() {
    // libvirt's rule (domain::boot_order): <os><boot dev> gives bootindex = position in the list to
    // hd → the first hard disk in libvirt's disk order, cdrom → the first CD-ROM, fd → the first
    // floppy, network → the first interface. Written out per device when the planned names would
    // boot another disk, or when the root moves beside other hard disks.
    type Expect<'a> = (
        &'a str,
        &'a [&'a str],
        &'a [(&'a str, &'a str, &'a str)],
        &'a str,
    );
    let expect: &[Expect] = &[
        (
            "boot-order-conflict",
            &[],
            &[("disk", "vdb", "1")],
            "boot order made explicit: the root would otherwise lose bootindex 1 to vda",
        ),
        (
            "ide-virtio-data",
            &[],
            &[("disk", "vdb", "1")],
            "boot order made explicit: the root would otherwise lose bootindex 1 to vda",
        ),
        (
            "ide-virtio-data-scsi",
            &[],
            &[("disk", "sda", "1")],
            "boot order made explicit: the root (sda) moves to scsi beside 1 other hard disk",
        ),
        (
            "ide-virtio-data-cdrom-first",
            &[],
            &[
                ("disk", "vdb", "2"),
                ("disk", "hdc", "1"),
                ("interface", "52:54:00:a3:16:04", "3"),
            ],
            "boot order made explicit: the root would otherwise lose bootindex 2 to vda",
        ),
        (
            "scsi-data-disks",
            &[],
            &[("disk", "vda", "1")],
            "boot order made explicit: the root (vda) moves to virtio beside 2 other hard disks",
        ),
        (
            "scsi-data-disks-scsi",
            &[],
            &[("disk", "sdc", "1")],
            "boot order made explicit: the root would otherwise lose bootindex 1 to sda",
        ),
        (
            "q35-sata-virtio-data",
            &[],
            &[("disk", "vdb", "1")],
            "boot order made explicit: the root would otherwise lose bootindex 1 to vda",
        ),
        (
            "ide-two-data-cdrom",
            &[],
            &[
                ("disk", "vda", "1"),
                ("disk", "hdc", "2"),
                ("disk", "fda", "3"),
            ],
            "boot order made explicit: the root (vda) moves to virtio beside 2 other hard disks",
        ),
        (
            "ide-two-data-cdrom-boot-only",
            &[],
            &[
                ("disk", "vda", "1"),
                ("disk", "hdc", "2"),
                ("disk", "fda", "3"),
            ],
            "boot order made explicit: the root (vda) moves to virtio beside 2 other hard disks",
        ),
        (
            "uefi-virtio-data",
            &[],
            &[("disk", "vdb", "1")],
            "boot order made explicit: the root would otherwise lose bootindex 1 to vda",
        ),
        (
            "uefi-virtio-data-scsi",
            &[],
            &[("disk", "sda", "1")],
            "boot order made explicit: the root (sda) moves to scsi beside 1 other hard disk",
        ),
        (
            "win2k8r2-virtio",
            &[],
            &[("disk", "vda", "1")],
            "boot order made explicit: the root (vda) moves to virtio beside 1 other hard disk",
        ),
        // Kept: a single hard disk, or per-device orders already (they travel with the disks).
        ("win2003-host-hazards", &["hd", "cdrom"], &[], ""),
        ("ide-cdrom-disk", &[], &[], ""),
        (
            "multi-disk-boot-order",
            &[],
            &[
                ("disk", "vdc", "3"),
                ("disk", "vdb", "1"),
                ("disk", "hdc", "2"),
                ("interface", "52:54:00:5e:12:34", "4"),
            ],
            "",
        ),
    ];
    let all = cases();
    for (name, os, per_device, why) in expect {
        let case = all.iter().find(|c| c.name == *name).unwrap();
        let plan = run(case);
        let (got_os, got_per_device) = boot_elements(&plan.new_xml);
        assert_eq!(got_os, *os, "{name}: <os><boot> left");
        let want: Vec<(String, String, String)> = per_device
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(got_per_device, want, "{name}: per-device orders");
        let change = plan
            .changes
            .iter()
            .find(|c| c.kind == virtio_migrate::plan::ChangeKind::BootOrder);
        match change {
            Some(c) => assert!(c.why.starts_with(why) && !why.is_empty(), "{name}: {c:?}"),
            None => assert!(why.is_empty(), "{name}: no boot-order change"),
        }
        // <bootmenu>, the loader and the NVRAM stay byte for byte.
        for keep in ["<bootmenu", "<loader", "<nvram"] {
            let lines = |xml: &str| -> Vec<String> {
                xml.lines()
                    .filter(|l| l.trim_start().starts_with(keep))
                    .map(str::to_string)
                    .collect()
            };
            assert_eq!(lines(&plan.original_xml), lines(&plan.new_xml), "{name}");
        }
    }
}

#[test]
fn without_the_explicit_order_the_data_disk_would_boot() {
    // The planned definition of the layout with the boot form put back as it was: the
    // planner's own check catches that vda, not the root, would get bootindex 1.
    let case = cases()
        .into_iter()
        .find(|c| c.name == "ide-virtio-data")
        .unwrap();
    let plan = run(&case);
    let undone = plan
        .new_xml
        .replace("      <boot order='1'/>\n", "")
        .replace(
            "    <bootmenu enable='yes' timeout='3000'/>",
            "    <boot dev='hd'/>\n    <bootmenu enable='yes' timeout='3000'/>",
        );
    assert_ne!(undone, plan.new_xml);
    let root = virtio_migrate::domain::boot_order::DeviceRef::disk(0);
    assert!(validate::check(&plan.new_xml, Some(std::slice::from_ref(&root))).is_empty());
    assert_eq!(
        validate::check(&undone, Some(std::slice::from_ref(&root))),
        [validate::CheckFailure::BootSequenceChanged {
            expected: "disk vdb".into(),
            found: "disk vda".into(),
        }]
    );
}

#[test]
fn a_boot_order_that_cannot_be_made_explicit_blocks_and_says_why() {
    let xml = fixture("ide-virtio-data").replacen("<domain type='kvm'>", "<domain type='xen'>", 1);
    let plan = plan(&xml, Some(&ready()), &HostFacts::default(), &opts()).unwrap();
    assert_eq!(plan.status(), PlanStatus::Blocked);
    let blocker = plan
        .blockers
        .iter()
        .find(|b| b.kind == BlockerKind::BootOrder)
        .expect("boot-order blocker");
    assert!(!blocker.overridable);
    for needle in [
        "the root would otherwise lose bootindex 1 to vda",
        "type 'xen'",
        "<boot dev='hd'/>",
    ] {
        assert!(
            blocker.message.contains(needle),
            "{needle}: {}",
            blocker.message
        );
    }
    // The boot form is left as it is.
    assert!(plan.new_xml.contains("<boot dev='hd'/>"));
    assert!(!plan.new_xml.contains("<boot order="));
}

#[test]
fn managed_domains_name_the_durable_change() {
    let cloudstack = run(cases().iter().find(|c| c.name == "cloudstack").unwrap());
    let managed = cloudstack
        .blockers
        .iter()
        .find(|b| b.kind == BlockerKind::Managed)
        .expect("managed blocker");
    for needle in [
        "rootDiskController=virtio",
        "nicAdapter=virtio",
        "Windows PV",
        "i-2-34-VM",
        "stop and start",
    ] {
        assert!(
            managed.message.contains(needle),
            "{needle}: {}",
            managed.message
        );
    }
    let nova = run(cases().iter().find(|c| c.name == "nova").unwrap());
    let managed = nova
        .blockers
        .iter()
        .find(|b| b.kind == BlockerKind::Managed)
        .expect("managed blocker");
    assert!(managed.message.contains("hw_disk_bus=virtio"));
    assert!(managed.message.contains("hw_vif_model=virtio"));
    let forced = run(cases().iter().find(|c| c.name == "nova-forced").unwrap());
    assert!(forced
        .warnings
        .iter()
        .any(|w| w.kind == WarningKind::ManagerWillUndo));
    // Forced or not, a transient domain stays blocked.
    let transient = run(cases()
        .iter()
        .find(|c| c.name == "cloudstack-transient-forced")
        .unwrap());
    assert!(transient
        .blockers
        .iter()
        .any(|b| b.kind == BlockerKind::Transient && !b.overridden));
}

#[test]
fn schema_failure_blocks_unless_the_current_definition_fails_too() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "win2k8r2-virtio")
        .unwrap();
    let mut blocked = run(&case);
    blocked.record_schema_result(Err("bad".to_string()), || Ok(()));
    assert_eq!(blocked.status(), PlanStatus::Blocked);
    assert!(blocked
        .blockers
        .iter()
        .any(|b| b.kind == BlockerKind::SchemaInvalid && !b.overridable));
    let mut inconclusive = run(&case);
    inconclusive.record_schema_result(Err("bad".to_string()), || Err("also bad".to_string()));
    assert_eq!(inconclusive.status(), PlanStatus::Ready);
    assert!(inconclusive
        .warnings
        .iter()
        .any(|w| w.kind == WarningKind::SchemaInconclusive));
}
