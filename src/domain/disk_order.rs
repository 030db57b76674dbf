//! Disk target names and the order in which libvirt keeps a domain's disks.
//!
//! libvirt does not keep `<disk>` elements in document order. Its parser inserts each disk next to the
//! disks on the same bus, sorted by the index of the target name (`hda` = 0, `hdb` = 1, … `hdz` = 25,
//! `hdaa` = 26); a disk on a bus not seen yet goes to the end. That in-memory order is the order of
//! `virsh dumpxml`, and with `<os><boot dev='hd'/>` the QEMU driver gives `bootindex=1` to the first
//! disk (`device='disk'` or `'lun'`) in that order. (Checked against libvirt 9.0: a document with
//! `vdb, hdc, hda, vda, sdb(sata), vdaa, vdz` is kept as `vda, vdb, vdz, vdaa, hda, hdc, sdb`, and
//! `bootindex=1` lands on `vda`.) The bus compared is the `bus` attribute as written: libvirt fills in
//! a missing bus from the name prefix only after the insertion, so bus-less disks form one group of
//! their own (`hdb`(no bus), `vdb`(virtio), `vda`(no bus) is kept as `vda, hdb, vdb`).
//!
//! The planner uses this to pick target names that keep the boot disk first, and the validator uses it
//! to prove that the rewritten domain still boots from the same disk.

/// The prefixes libvirt accepts in front of a disk name (`virDiskNameParse`), longest match first
/// where one prefix is a prefix of another does not matter (none is).
const NAME_PREFIXES: [&str; 6] = ["fd", "hd", "vd", "sd", "xvd", "ubd"];

/// The largest name index the planner hands out (`zz` = 701); a domain never has that many disks.
pub const MAX_NAME_INDEX: u32 = 701;

/// The index of a disk target name the way libvirt computes it: the letters after the prefix read as
/// a bijective base-26 number (`a` = 0, `z` = 25, `aa` = 26, `ba` = 52), optionally followed by
/// digits (a partition number, ignored). `None` when the name has no known prefix, no letters, or
/// anything else after them.
pub fn name_index(dev: &str) -> Option<u32> {
    let rest = NAME_PREFIXES
        .iter()
        .find_map(|prefix| dev.strip_prefix(prefix))?;
    let letters: &str = rest
        .split(|c: char| !c.is_ascii_lowercase())
        .next()
        .unwrap_or("");
    if letters.is_empty() || letters.len() > 6 {
        return None;
    }
    let digits = rest.get(letters.len()..).unwrap_or("");
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut index: u32 = 0;
    for (i, b) in letters.bytes().enumerate() {
        let step = if i == 0 { 0 } else { 1 };
        index = index
            .checked_add(step)?
            .checked_mul(26)?
            .checked_add(u32::from(b - b'a'))?;
    }
    Some(index)
}

/// The disk name with `prefix` and name index `index` (the inverse of [`name_index`]):
/// `disk_name("vd", 0)` = `vda`, `disk_name("vd", 26)` = `vdaa`.
pub fn disk_name(prefix: &str, index: u32) -> String {
    let mut letters = Vec::new();
    let mut n = index;
    loop {
        // n % 26 < 26, so the byte stays within 'a'..='z'.
        letters.push(b'a' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    letters.reverse();
    let mut name = String::with_capacity(prefix.len() + letters.len());
    name.push_str(prefix);
    name.extend(letters.iter().map(|&b| char::from(b)));
    name
}

/// The bus libvirt assumes for a disk without `bus=`, from its target name (`virDomainDiskDefAssignBus`
/// for x86: `hd` → ide, `sd` → scsi, `vd` → virtio, `xvd` → xen, `ubd` → uml, `fd` → fdc).
pub fn bus_from_name(dev: &str) -> Option<&'static str> {
    let table: [(&str, &str); 6] = [
        ("hd", "ide"),
        ("sd", "scsi"),
        ("vd", "virtio"),
        ("xvd", "xen"),
        ("ubd", "uml"),
        ("fd", "fdc"),
    ];
    table
        .iter()
        .find(|(prefix, _)| dev.starts_with(prefix))
        .map(|&(_, bus)| bus)
}

/// One disk as the ordering sees it: its bus and its target name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    /// The `bus` attribute as written (`ide`, `sata`, `virtio`, `scsi`, …; empty when absent).
    pub bus: String,
    /// The target name (`hda`, `vdb`, …).
    pub dev: String,
}

/// The order libvirt keeps the given disks in (document order in, positions into `disks` out),
/// following the insertion rule of `virDomainDiskInsert`: walking backwards over the disks already
/// placed, a disk goes before every disk on the same bus with a larger name index, else right after
/// the last disk on its bus, else at the end.
pub fn libvirt_order(disks: &[OrderKey]) -> Vec<usize> {
    let key = |k: &OrderKey| -> i64 { name_index(&k.dev).map_or(-1, i64::from) };
    let mut placed: Vec<usize> = Vec::with_capacity(disks.len());
    for (new, disk) in disks.iter().enumerate() {
        let new_key = key(disk);
        let mut insert_at: Option<usize> = None;
        for pos in (0..placed.len()).rev() {
            let Some(other) = placed.get(pos).and_then(|&i| disks.get(i)) else {
                continue;
            };
            if other.bus != disk.bus {
                continue;
            }
            if key(other) > new_key {
                insert_at = Some(pos);
            } else if insert_at.is_none() {
                insert_at = Some(pos + 1);
            }
        }
        match insert_at {
            Some(pos) if pos <= placed.len() => placed.insert(pos, new),
            _ => placed.push(new),
        }
    }
    placed
}

/// The order keys of the `<disk>` children of `<devices>`, in document order.
pub fn order_keys(devices: roxmltree::Node) -> Vec<OrderKey> {
    devices
        .children()
        .filter(|c| c.is_element() && c.has_tag_name("disk"))
        .map(|disk| {
            let target = disk
                .children()
                .find(|c| c.is_element() && c.has_tag_name("target"));
            OrderKey {
                bus: target
                    .and_then(|t| t.attribute("bus"))
                    .unwrap_or("")
                    .to_string(),
                dev: target
                    .and_then(|t| t.attribute("dev"))
                    .unwrap_or("")
                    .to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (name, index) in [
            ("vda", 0),
            ("vdz", 25),
            ("vdaa", 26),
            ("vdaz", 51),
            ("vdba", 52),
            ("sdzz", 701),
        ] {
            assert_eq!(name_index(name), Some(index), "{name}");
            assert_eq!(disk_name(&name[..2], index), name);
        }
        assert_eq!(name_index("hda1"), Some(0));
        assert_eq!(name_index("xvdb"), Some(1));
        assert_eq!(name_index("nvme0n1"), None);
        assert_eq!(name_index("vd"), None);
        assert_eq!(name_index("vdA"), None);
        assert_eq!(name_index("vda1x"), None);
    }

    #[test]
    fn order_matches_libvirt_9() {
        // The document measured against libvirt 9.0 (see the module documentation).
        let doc = [
            ("virtio", "vdb"),
            ("ide", "hdc"),
            ("ide", "hda"),
            ("virtio", "vda"),
            ("sata", "sdb"),
            ("virtio", "vdaa"),
            ("virtio", "vdz"),
        ];
        let keys: Vec<OrderKey> = doc
            .iter()
            .map(|(bus, dev)| OrderKey {
                bus: bus.to_string(),
                dev: dev.to_string(),
            })
            .collect();
        let order: Vec<&str> = libvirt_order(&keys).into_iter().map(|i| doc[i].1).collect();
        assert_eq!(order, ["vda", "vdb", "vdz", "vdaa", "hda", "hdc", "sdb"]);
    }

    #[test]
    fn disks_without_bus_form_their_own_group() {
        let xml = "<domain><devices><disk><target dev='hdb'/></disk><disk><target dev='vdb' bus='virtio'/></disk><disk><target dev='vda'/></disk></devices></domain>";
        let doc = roxmltree::Document::parse(xml).unwrap();
        let devices = doc.root_element().first_element_child().unwrap();
        let keys = order_keys(devices);
        let order: Vec<&str> = libvirt_order(&keys)
            .into_iter()
            .map(|i| keys[i].dev.as_str())
            .collect();
        assert_eq!(order, ["vda", "hdb", "vdb"]);
    }
}
