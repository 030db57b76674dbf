//! The partition layer: which byte ranges of a disk hold volumes, and what kind they are.
//!
//! A disk is read as, in this order of evidence:
//! - a bare file system (no table): the first sector is an NTFS, BitLocker, exFAT or FAT boot
//!   sector. Such a sector ends in 0x55AA like an MBR, so it is checked first, by its OEM id and BPB;
//! - GPT: `EFI PART` at LBA 1 for 512- or 4096-byte logical sectors, or (when a protective MBR says
//!   GPT but the primary header is gone) the backup header at the last LBA ([`gpt`]);
//! - MBR: primary entries and the extended/logical chain ([`mbr`]);
//! - otherwise: no partition table recognised.
//!
//! `partition` ↔ `mbr`/`gpt` import each other on purpose: this module dispatches to the two
//! formats, and they return its types (`PartitionTable`, `PartitionType`).
//!
//! Nothing here panics on a hostile disk: every damaged or inconsistent structure becomes a line in
//! [`PartitionTable::problems`] (with its byte offset), and the partitions that could be read are kept.

use serde::Serialize;

use super::{gpt, mbr, ReadAt};

/// How the disk is divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionScheme {
    /// Master boot record (possibly with an extended partition).
    Mbr,
    /// GUID partition table.
    Gpt,
    /// No table: one file system fills the disk (reported as partition 0).
    Bare,
    /// No table and no file system recognised at offset 0 (empty or unknown disk).
    Unrecognised,
}

/// The type of one partition, as its table states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "table", content = "id", rename_all = "lowercase")]
pub enum PartitionType {
    /// MBR system id byte.
    Mbr(u8),
    /// GPT partition type GUID (upper case, registry form without braces).
    Gpt(String),
    /// A bare file system (no table entry).
    Bare,
}

/// One partition (or the whole disk, for a bare file system).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// MBR: 1–4 primary, 5+ logical (Linux numbering); GPT: entry number from 1; bare: 0.
    pub index: u32,
    /// First byte on the disk.
    pub start: u64,
    /// Length in bytes.
    pub length: u64,
    pub partition_type: PartitionType,
    /// Human name of the type ("Microsoft basic data", "EFI system", "NTFS/exFAT/HPFS", …).
    pub type_name: String,
    /// GPT partition name, when set.
    pub name: Option<String>,
    /// MBR active flag.
    pub bootable: bool,
    /// Dynamic disk (LDM) metadata or data partition.
    pub ldm: bool,
    /// Set when the partition cannot be read as stated (outside the disk, overlapping another).
    pub problem: Option<String>,
}

/// The partition table of one disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionTable {
    pub scheme: PartitionScheme,
    /// Logical sector size the table is written for (512 or 4096).
    pub sector_size: u32,
    /// GPT disk GUID or MBR disk signature (hex), when present.
    pub disk_id: Option<String>,
    /// Partitions in table order (logical partitions after primaries).
    pub partitions: Vec<Partition>,
    /// Damage and inconsistencies found, each with where it is.
    pub problems: Vec<String>,
    /// Notes that are not damage (e.g. "GPT read from the backup header").
    pub notes: Vec<String>,
}

impl PartitionTable {
    /// True when any partition is part of a dynamic disk (LDM).
    pub fn is_dynamic(&self) -> bool {
        self.partitions.iter().any(|p| p.ldm)
    }
}

/// What a partition's first sector says it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsKind {
    Ntfs,
    /// A BitLocker-encrypted volume (`-FVE-FS-`): its content cannot be inspected.
    BitLocker,
    Fat,
    ExFat,
    /// Nothing recognised (MSR, LDM, Linux, empty, unknown).
    Unknown,
}

/// Recognise the file system from a volume's first sector (at least 512 bytes).
pub fn fs_kind_of_boot_sector(sector: &[u8]) -> FsKind {
    let oem = sector.get(3..11).unwrap_or(&[]);
    if oem == b"NTFS    " {
        FsKind::Ntfs
    } else if oem == b"-FVE-FS-" {
        FsKind::BitLocker
    } else if oem == b"EXFAT   " {
        FsKind::ExFat
    } else if looks_like_fat(sector) {
        FsKind::Fat
    } else {
        FsKind::Unknown
    }
}

/// A FAT boot sector: a plausible BPB and the "FAT" file-system type string where FAT12/16 or
/// FAT32 put it.
fn looks_like_fat(s: &[u8]) -> bool {
    let u16_at = |o: usize| s.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let bps = u16_at(11).unwrap_or(0);
    let spc = s.get(13).copied().unwrap_or(0);
    let reserved = u16_at(14).unwrap_or(0);
    let fats = s.get(16).copied().unwrap_or(0);
    let bpb_ok = matches!(bps, 512 | 1024 | 2048 | 4096)
        && spc.is_power_of_two()
        && reserved > 0
        && (1..=2).contains(&fats);
    let tag = |o: usize| s.get(o..o + 3) == Some(b"FAT".as_slice());
    bpb_ok && (tag(0x36) || tag(0x52))
}

/// Read the first `len` bytes of a range, or `None` when the disk is too short.
pub(crate) fn read_vec(disk: &dyn ReadAt, offset: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    disk.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

/// Read the partition table of `disk`. Never fails: an unreadable disk is `Unrecognised` with the
/// reason in `problems`.
pub fn read_partition_table(disk: &dyn ReadAt) -> PartitionTable {
    let size = disk.size();
    let mut table = PartitionTable {
        scheme: PartitionScheme::Unrecognised,
        sector_size: 512,
        disk_id: None,
        partitions: Vec::new(),
        problems: Vec::new(),
        notes: Vec::new(),
    };
    let mut sector0 = vec![0u8; 512];
    if let Err(e) = disk.read_exact_at(&mut sector0, 0) {
        // A short disk, or a disk image that cannot deliver its first sector (say why).
        table.problems.push(if size < 512 {
            format!("the disk is {size} bytes, too short for a first sector")
        } else {
            format!("cannot read the first sector: {e}")
        });
        return table;
    }

    // A boot sector of a file system is not an MBR even though it ends in 0x55AA.
    let kind = fs_kind_of_boot_sector(&sector0);
    if kind != FsKind::Unknown {
        table.scheme = PartitionScheme::Bare;
        table.partitions.push(Partition {
            index: 0,
            start: 0,
            length: size,
            partition_type: PartitionType::Bare,
            type_name: format!("whole-disk {}", fs_kind_name(kind)),
            name: None,
            bootable: false,
            ldm: false,
            problem: None,
        });
        return table;
    }

    let mbr = mbr::parse_primary(&sector0);
    let protective = mbr
        .as_ref()
        .is_some_and(|entries| entries.iter().any(|e| e.system_id == 0xEE));

    for sector_size in [512u32, 4096] {
        if let Some(lba1) = read_vec(disk, u64::from(sector_size), 8) {
            if lba1 == gpt::SIGNATURE {
                gpt::read(disk, sector_size, &mut table);
                check_ranges(size, &mut table);
                return table;
            }
        }
    }
    if protective {
        // Primary header missing: the backup at the last LBA may still be there.
        for sector_size in [512u32, 4096] {
            if gpt::backup_signature_present(disk, sector_size) {
                table.problems.push(format!(
                    "protective MBR present but no GPT header at LBA 1 (byte {sector_size})"
                ));
                gpt::read(disk, sector_size, &mut table);
                check_ranges(size, &mut table);
                return table;
            }
        }
        table.scheme = PartitionScheme::Gpt;
        table.problems.push(
            "protective MBR (type 0xEE) but neither a primary nor a backup GPT header was found"
                .into(),
        );
        return table;
    }
    match mbr {
        Some(entries) => {
            table.scheme = PartitionScheme::Mbr;
            mbr::read(disk, &sector0, &entries, &mut table);
            check_ranges(size, &mut table);
        }
        None => {
            table.notes.push(
                "no partition table and no file system recognised at the start of the disk".into(),
            );
        }
    }
    table
}

/// Human name of a file-system kind.
pub fn fs_kind_name(kind: FsKind) -> &'static str {
    match kind {
        FsKind::Ntfs => "NTFS",
        FsKind::BitLocker => "BitLocker",
        FsKind::Fat => "FAT",
        FsKind::ExFat => "exFAT",
        FsKind::Unknown => "unknown",
    }
}

/// Mark partitions that lie (partly) outside the disk or overlap an earlier one.
fn check_ranges(disk_size: u64, table: &mut PartitionTable) {
    let mut seen: Vec<(u32, u64, u64)> = Vec::new();
    for p in table.partitions.iter_mut() {
        let end = p.start.checked_add(p.length);
        let mut problem = None;
        match end {
            None => problem = Some("its end overflows a 64-bit byte offset".to_string()),
            Some(end) if end > disk_size => {
                problem = Some(format!(
                    "it ends at byte {end}, beyond the end of the {disk_size}-byte disk"
                ))
            }
            Some(end) => {
                // Logical partitions lie inside their extended container by design.
                if matches!(p.partition_type, PartitionType::Mbr(0x05 | 0x0F | 0x85)) {
                    continue;
                }
                if let Some((other, _, _)) = seen.iter().find(|(_, s, e)| p.start < *e && *s < end)
                {
                    problem = Some(format!("it overlaps partition {other}"));
                }
                seen.push((p.index, p.start, end));
            }
        }
        if p.length == 0 && problem.is_none() {
            problem = Some("it has zero length".into());
        }
        if let Some(msg) = problem {
            table.problems.push(format!(
                "partition {} (bytes {}+{}): {msg}",
                p.index, p.start, p.length
            ));
            p.problem = Some(msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr_with(entries: &[(u8, u8, u32, u32)]) -> Vec<u8> {
        let mut d = vec![0u8; 4 * 1024 * 1024];
        for (i, (boot, ty, start, len)) in entries.iter().enumerate() {
            let o = 446 + 16 * i;
            d[o] = *boot;
            d[o + 4] = *ty;
            d[o + 8..o + 12].copy_from_slice(&start.to_le_bytes());
            d[o + 12..o + 16].copy_from_slice(&len.to_le_bytes());
        }
        d[510] = 0x55;
        d[511] = 0xAA;
        d
    }

    #[test]
    fn bare_ntfs_boot_sector_is_not_an_mbr() {
        let mut d = mbr_with(&[(0x80, 7, 2048, 100)]);
        d[3..11].copy_from_slice(b"NTFS    ");
        let t = read_partition_table(&d);
        assert_eq!(t.scheme, PartitionScheme::Bare);
        assert_eq!(t.partitions.len(), 1);
        assert_eq!(t.partitions[0].length, d.len() as u64);
        d[3..11].copy_from_slice(b"-FVE-FS-");
        let t = read_partition_table(&d);
        assert_eq!(t.scheme, PartitionScheme::Bare);
        assert!(t.partitions[0].type_name.contains("BitLocker"));
    }

    #[test]
    fn mbr_overlap_and_out_of_range_are_problems() {
        let d = mbr_with(&[
            (0x80, 7, 2048, 2048),
            (0, 7, 3000, 100),
            (0, 0x42, 6000, 100_000),
        ]);
        let t = read_partition_table(&d);
        assert_eq!(t.scheme, PartitionScheme::Mbr);
        assert_eq!(t.partitions.len(), 3);
        assert!(t.partitions[0].bootable);
        assert!(t.partitions[1]
            .problem
            .as_deref()
            .unwrap()
            .contains("overlaps"));
        assert!(t.partitions[2]
            .problem
            .as_deref()
            .unwrap()
            .contains("beyond"));
        assert!(t.is_dynamic());
    }

    #[test]
    fn extended_chain_loop_is_bounded() {
        // Extended partition at LBA 100 whose EBR points back to itself.
        let mut d = mbr_with(&[(0, 5, 100, 4000)]);
        let ebr = 100 * 512;
        let put = |d: &mut Vec<u8>, o: usize, ty: u8, s: u32, l: u32| {
            d[o + 4] = ty;
            d[o + 8..o + 12].copy_from_slice(&s.to_le_bytes());
            d[o + 12..o + 16].copy_from_slice(&l.to_le_bytes());
        };
        put(&mut d, ebr + 446, 7, 10, 50);
        put(&mut d, ebr + 462, 5, 0, 4000);
        d[ebr + 510] = 0x55;
        d[ebr + 511] = 0xAA;
        let t = read_partition_table(&d);
        assert_eq!(t.partitions.len(), 2, "{t:?}");
        assert_eq!(t.partitions[1].index, 5);
        assert_eq!(t.partitions[1].start, 110 * 512);
        assert!(t.problems.iter().any(|p| p.contains("loop")), "{t:?}");
    }

    #[test]
    fn empty_and_tiny_disks_are_unrecognised() {
        let t = read_partition_table(&vec![0u8; 100]);
        assert_eq!(t.scheme, PartitionScheme::Unrecognised);
        assert!(!t.problems.is_empty());
        let t = read_partition_table(&vec![0u8; 8192]);
        assert_eq!(t.scheme, PartitionScheme::Unrecognised);
        assert!(t.partitions.is_empty());
    }
}
