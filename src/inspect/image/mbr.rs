//! MBR partition tables: four primary entries and the chain of extended boot records (EBRs) that
//! holds the logical partitions.
//!
//! Logical partitions are numbered from 5 like Linux does. The EBR chain is walked with a visited
//! set and a count cap, so a chain that loops or never ends is reported, not followed forever.

use super::partition::{read_vec, Partition, PartitionTable, PartitionType};
use super::ReadAt;

/// Logical partitions read at most from one extended partition.
pub const MAX_LOGICAL: usize = 128;

/// One 16-byte MBR/EBR entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbrEntry {
    pub bootable: bool,
    pub system_id: u8,
    /// Start in sectors (relative to what the table is relative to).
    pub lba_start: u32,
    pub sectors: u32,
}

/// Whether an MBR system id marks an extended partition (CHS, LBA, Linux).
pub fn is_extended(system_id: u8) -> bool {
    matches!(system_id, 0x05 | 0x0F | 0x85)
}

/// The four entries of a sector ending in 0x55AA, or `None` when the signature is missing.
pub fn parse_primary(sector: &[u8]) -> Option<[MbrEntry; 4]> {
    if sector.get(510..512) != Some([0x55u8, 0xAA].as_slice()) {
        return None;
    }
    let mut out = [MbrEntry {
        bootable: false,
        system_id: 0,
        lba_start: 0,
        sectors: 0,
    }; 4];
    for (i, e) in out.iter_mut().enumerate() {
        let o = 446 + 16 * i;
        let b = sector.get(o..o + 16)?;
        *e = MbrEntry {
            bootable: b[0] & 0x80 != 0,
            system_id: b[4],
            lba_start: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            sectors: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        };
    }
    Some(out)
}

/// Human name of an MBR system id.
pub fn type_name(system_id: u8) -> &'static str {
    match system_id {
        0x01 => "FAT12",
        0x04 | 0x06 | 0x0E => "FAT16",
        0x05 | 0x0F => "extended",
        0x07 => "NTFS/exFAT (Windows)",
        0x0B | 0x0C => "FAT32",
        0x11 | 0x14 | 0x16 | 0x1B | 0x1C | 0x1E => "hidden FAT",
        0x12 => "OEM diagnostics/recovery",
        0x17 => "hidden NTFS",
        0x27 => "Windows recovery environment (hidden NTFS)",
        0x42 => "Windows dynamic disk (LDM)",
        0x82 => "Linux swap",
        0x83 => "Linux",
        0x85 => "Linux extended",
        0x8E => "Linux LVM",
        0xA5 | 0xA6 | 0xA9 => "BSD",
        0xEE => "GPT protective",
        0xEF => "EFI system",
        0xFD => "Linux RAID",
        _ => "unknown",
    }
}

fn partition(index: u32, e: &MbrEntry, base_lba: u64) -> Partition {
    let start = (base_lba + u64::from(e.lba_start)) * 512;
    Partition {
        index,
        start,
        length: u64::from(e.sectors) * 512,
        partition_type: PartitionType::Mbr(e.system_id),
        type_name: type_name(e.system_id).to_string(),
        name: None,
        bootable: e.bootable,
        ldm: e.system_id == 0x42,
        problem: None,
    }
}

/// Fill `table` from the MBR in `sector0` (its parsed `entries`) and any extended chain.
pub fn read(
    disk: &dyn ReadAt,
    sector0: &[u8],
    entries: &[MbrEntry; 4],
    table: &mut PartitionTable,
) {
    table.sector_size = 512;
    if let Some(sig) = sector0.get(440..444) {
        let sig = u32::from_le_bytes([sig[0], sig[1], sig[2], sig[3]]);
        if sig != 0 {
            table.disk_id = Some(format!("{sig:08x}"));
        }
    }
    let mut extended_seen = false;
    for (i, e) in entries.iter().enumerate() {
        if e.system_id == 0 {
            continue;
        }
        let index = i as u32 + 1;
        table.partitions.push(partition(index, e, 0));
        if is_extended(e.system_id) {
            if extended_seen {
                table.problems.push(format!(
                    "MBR entry {index} is a second extended partition (ignored)"
                ));
                continue;
            }
            extended_seen = true;
            read_logical(disk, u64::from(e.lba_start), table);
        }
    }
    if table.partitions.iter().any(|p| p.ldm) {
        table.notes.push(
            "dynamic disk (MBR type 0x42, LDM): its volumes are described by the LDM database, not the MBR"
                .into(),
        );
    }
}

/// Walk the EBR chain of the extended partition starting at `ext_lba`.
fn read_logical(disk: &dyn ReadAt, ext_lba: u64, table: &mut PartitionTable) {
    let mut visited: Vec<u64> = Vec::new();
    let mut ebr_lba = ext_lba;
    let mut index = 5u32;
    loop {
        if visited.contains(&ebr_lba) {
            table.problems.push(format!(
                "the extended partition chain loops back to the EBR at byte {}",
                ebr_lba * 512
            ));
            return;
        }
        if visited.len() >= MAX_LOGICAL {
            table.problems.push(format!(
                "more than {MAX_LOGICAL} logical partitions: the rest of the chain is ignored"
            ));
            return;
        }
        visited.push(ebr_lba);
        let Some(offset) = ebr_lba.checked_mul(512) else {
            return;
        };
        let Some(sector) = read_vec(disk, offset, 512) else {
            table.problems.push(format!(
                "the EBR at byte {offset} lies beyond the end of the disk"
            ));
            return;
        };
        let Some(entries) = parse_primary(&sector) else {
            table
                .problems
                .push(format!("the EBR at byte {offset} has no 0x55AA signature"));
            return;
        };
        let [logical, next, ..] = entries;
        if logical.system_id != 0 {
            table.partitions.push(partition(index, &logical, ebr_lba));
            index += 1;
        }
        if next.system_id == 0 || !is_extended(next.system_id) {
            return;
        }
        // The link is relative to the start of the extended partition.
        ebr_lba = ext_lba + u64::from(next.lba_start);
    }
}
