//! GUID partition tables (UEFI specification, chapter "GUID Partition Table Disk Layout").
//!
//! The header at LBA 1 (512- or 4096-byte logical sectors) and its entry array are both checked by
//! CRC32. When the primary header or its array is damaged, the backup header at the last LBA is
//! used and the report says so.

use super::partition::{read_vec, Partition, PartitionScheme, PartitionTable, PartitionType};
use super::ReadAt;

/// The header signature, `EFI PART`.
pub const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Largest entry array read (bytes); the usual array is 128 × 128 = 16 KiB.
pub const MAX_ENTRY_ARRAY: u64 = 1024 * 1024;
/// Largest number of entries examined.
pub const MAX_ENTRIES: u32 = 4096;

/// CRC-32 (IEEE 802.3, reflected, as GPT and zlib use it).
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// Format a GUID stored in the mixed-endian on-disk layout (`C12A7328-F81F-11D2-BA4B-00A0C93EC93B`).
pub fn guid_string(b: &[u8; 16]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

/// GPT type GUID of LDM metadata partitions (dynamic disks).
pub const LDM_METADATA: &str = "5808C8AA-7E8F-42E0-85D2-E1E90434CFB3";
/// GPT type GUID of LDM data partitions (dynamic disks).
pub const LDM_DATA: &str = "AF9B60A0-1431-4F62-BC68-3311714A69AD";

/// Human name of a GPT partition type GUID.
pub fn type_name(guid: &str) -> &'static str {
    match guid {
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" => "EFI system",
        "E3C9E316-0B5C-4DB8-817D-F92DF00215AE" => "Microsoft reserved (MSR)",
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" => "Microsoft basic data (NTFS/FAT)",
        "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC" => "Windows recovery environment",
        LDM_METADATA => "LDM metadata (dynamic disk)",
        LDM_DATA => "LDM data (dynamic disk)",
        "E75CAF8F-F680-4CEE-AFA3-B001E56EFC2D" => "Storage Spaces",
        "21686148-6449-6E6F-744E-656564454649" => "BIOS boot",
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4" => "Linux filesystem",
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" => "Linux root (x86-64)",
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" => "Linux swap",
        "E6D6D379-F507-44C2-A23C-238F2A3DF928" => "Linux LVM",
        "A19D880F-05FC-4D3B-A006-743F0F84911E" => "Linux RAID",
        _ => "unknown",
    }
}

/// A checked GPT header.
#[derive(Debug, Clone)]
struct Header {
    disk_guid: String,
    backup_lba: u64,
    entries_lba: u64,
    entry_count: u32,
    entry_size: u32,
    entries_crc: u32,
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    b.get(o..o + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// Read and check the header at `lba`; the error says what is wrong and where.
fn read_header(disk: &dyn ReadAt, sector_size: u32, lba: u64) -> Result<Header, String> {
    let offset = lba
        .checked_mul(u64::from(sector_size))
        .ok_or_else(|| format!("LBA {lba} overflows a byte offset"))?;
    let sector = read_vec(disk, offset, sector_size as usize)
        .ok_or_else(|| format!("the header at byte {offset} lies beyond the end of the disk"))?;
    if sector.get(0..8) != Some(SIGNATURE.as_slice()) {
        return Err(format!("no 'EFI PART' signature at byte {offset}"));
    }
    let header_size = u32_at(&sector, 12);
    if !(92..=sector_size).contains(&header_size) {
        return Err(format!(
            "header at byte {offset} states a size of {header_size} bytes"
        ));
    }
    let mut copy = sector.get(..header_size as usize).unwrap_or(&[]).to_vec();
    let stored = u32_at(&copy, 16);
    if let Some(f) = copy.get_mut(16..20) {
        f.fill(0);
    }
    let computed = crc32(&copy);
    if stored != computed {
        return Err(format!(
            "header CRC32 at byte {offset} is {stored:08x}, computed {computed:08x}"
        ));
    }
    let entry_size = u32_at(&sector, 84);
    let entry_count = u32_at(&sector, 80);
    if entry_size < 128 || !entry_size.is_multiple_of(8) || entry_size > 4096 {
        return Err(format!(
            "header at byte {offset} states an entry size of {entry_size} bytes"
        ));
    }
    let guid: [u8; 16] = sector
        .get(56..72)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; 16]);
    Ok(Header {
        disk_guid: guid_string(&guid),
        backup_lba: u64_at(&sector, 32),
        entries_lba: u64_at(&sector, 72),
        entry_count,
        entry_size,
        entries_crc: u32_at(&sector, 88),
    })
}

/// Read and check the entry array a header describes.
fn read_entries(disk: &dyn ReadAt, sector_size: u32, h: &Header) -> Result<Vec<u8>, String> {
    let bytes = u64::from(h.entry_count) * u64::from(h.entry_size);
    if bytes > MAX_ENTRY_ARRAY || bytes > disk.size() {
        return Err(format!(
            "entry array of {} × {} bytes is larger than allowed ({MAX_ENTRY_ARRAY} bytes)",
            h.entry_count, h.entry_size
        ));
    }
    let offset = h
        .entries_lba
        .checked_mul(u64::from(sector_size))
        .ok_or_else(|| format!("entry array LBA {} overflows", h.entries_lba))?;
    let data = read_vec(disk, offset, bytes as usize).ok_or_else(|| {
        format!("entry array of {bytes} bytes at byte {offset} lies beyond the end of the disk")
    })?;
    let computed = crc32(&data);
    if computed != h.entries_crc {
        return Err(format!(
            "entry array CRC32 at byte {offset} is {:08x}, computed {computed:08x}",
            h.entries_crc
        ));
    }
    Ok(data)
}

/// Whether a backup header signature sits at the last LBA for this sector size.
pub fn backup_signature_present(disk: &dyn ReadAt, sector_size: u32) -> bool {
    let ss = u64::from(sector_size);
    let last = disk.size() / ss;
    last >= 2 && read_vec(disk, (last - 1) * ss, 8).is_some_and(|s| s == SIGNATURE)
}

/// Fill `table` from the GPT of `disk` with logical sectors of `sector_size` bytes.
pub fn read(disk: &dyn ReadAt, sector_size: u32, table: &mut PartitionTable) {
    table.scheme = PartitionScheme::Gpt;
    table.sector_size = sector_size;
    let ss = u64::from(sector_size);
    let last_lba = (disk.size() / ss).saturating_sub(1);

    let primary = read_header(disk, sector_size, 1)
        .and_then(|h| read_entries(disk, sector_size, &h).map(|e| (h, e)));
    let (header, entries) = match primary {
        Ok(found) => {
            if found.0.backup_lba != last_lba {
                table.notes.push(format!(
                    "the primary GPT header names its backup at LBA {}, the last LBA is {last_lba}",
                    found.0.backup_lba
                ));
            }
            found
        }
        Err(why) => {
            // The backup header is at the last LBA; the primary (when its header is intact) also
            // names it.
            let backup = read_header(disk, sector_size, last_lba)
                .and_then(|h| read_entries(disk, sector_size, &h).map(|e| (h, e)));
            match backup {
                Ok(found) => {
                    table.problems.push(format!("primary GPT damaged: {why}"));
                    table.notes.push(format!(
                        "GPT read from the backup header at LBA {last_lba} (byte {})",
                        last_lba * ss
                    ));
                    found
                }
                Err(why_backup) => {
                    table.problems.push(format!("primary GPT damaged: {why}"));
                    table
                        .problems
                        .push(format!("backup GPT damaged: {why_backup}"));
                    return;
                }
            }
        }
    };
    table.disk_id = Some(header.disk_guid.clone());
    let count = header.entry_count.min(MAX_ENTRIES);
    if header.entry_count > MAX_ENTRIES {
        table.problems.push(format!(
            "the GPT states {} entries; only the first {MAX_ENTRIES} were read",
            header.entry_count
        ));
    }
    for i in 0..count {
        let o = i as usize * header.entry_size as usize;
        let Some(e) = entries.get(o..o + 128) else {
            break;
        };
        let ty: [u8; 16] = e[0..16].try_into().unwrap_or([0; 16]);
        if ty == [0u8; 16] {
            continue;
        }
        let first = u64_at(e, 32);
        let last = u64_at(e, 40);
        let guid = guid_string(&ty);
        let name_units: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let name = String::from_utf16_lossy(&name_units);
        let (start, length, problem) = match (first.checked_mul(ss), last.checked_sub(first)) {
            (Some(start), Some(n)) => match n.checked_add(1).and_then(|n| n.checked_mul(ss)) {
                Some(len) => (start, len, None),
                None => (start, 0, Some("its length overflows".to_string())),
            },
            (None, _) => (0, 0, Some(format!("first LBA {first} overflows"))),
            (_, None) => (
                first.saturating_mul(ss),
                0,
                Some(format!("last LBA {last} is before first LBA {first}")),
            ),
        };
        if let Some(p) = &problem {
            table.problems.push(format!("GPT entry {}: {p}", i + 1));
        }
        table.partitions.push(Partition {
            index: i + 1,
            start,
            length,
            type_name: type_name(&guid).to_string(),
            ldm: guid == LDM_METADATA || guid == LDM_DATA,
            partition_type: PartitionType::Gpt(guid),
            name: (!name.is_empty()).then_some(name),
            bootable: false,
            problem,
        });
    }
    if table.partitions.iter().any(|p| p.ldm) {
        table.notes.push(
            "dynamic disk (GPT LDM partitions): volumes are described by the LDM database".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::image::partition::read_partition_table;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    /// A GPT disk built by hand: one LDM data partition.
    fn gpt_disk(ss: u64) -> Vec<u8> {
        let lbas = 128u64;
        let mut d = vec![0u8; (lbas * ss) as usize];
        let mut entries = vec![0u8; 128 * 128];
        let ldm = [
            0xA0, 0x60, 0x9B, 0xAF, 0x31, 0x14, 0x62, 0x4F, 0xBC, 0x68, 0x33, 0x11, 0x71, 0x4A,
            0x69, 0xAD,
        ];
        entries[0..16].copy_from_slice(&ldm);
        entries[32..40].copy_from_slice(&10u64.to_le_bytes());
        entries[40..48].copy_from_slice(&20u64.to_le_bytes());
        for (i, c) in "data".encode_utf16().enumerate() {
            entries[56 + 2 * i..58 + 2 * i].copy_from_slice(&c.to_le_bytes());
        }
        let ecrc = crc32(&entries);
        let write_header = |d: &mut Vec<u8>, lba: u64, backup: u64, elba: u64| {
            let o = (lba * ss) as usize;
            let mut h = vec![0u8; 92];
            h[0..8].copy_from_slice(SIGNATURE);
            h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
            h[12..16].copy_from_slice(&92u32.to_le_bytes());
            h[24..32].copy_from_slice(&lba.to_le_bytes());
            h[32..40].copy_from_slice(&backup.to_le_bytes());
            h[72..80].copy_from_slice(&elba.to_le_bytes());
            h[80..84].copy_from_slice(&128u32.to_le_bytes());
            h[84..88].copy_from_slice(&128u32.to_le_bytes());
            h[88..92].copy_from_slice(&ecrc.to_le_bytes());
            let c = crc32(&h);
            h[16..20].copy_from_slice(&c.to_le_bytes());
            d[o..o + 92].copy_from_slice(&h);
        };
        let e_primary = 2u64;
        let e_backup = lbas - 1 - (16384 / ss);
        for (elba, _) in [(e_primary, 0), (e_backup, 1)] {
            let o = (elba * ss) as usize;
            d[o..o + entries.len()].copy_from_slice(&entries);
        }
        write_header(&mut d, 1, lbas - 1, e_primary);
        write_header(&mut d, lbas - 1, 1, e_backup);
        // Protective MBR.
        d[446 + 4] = 0xEE;
        d[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        d[510] = 0x55;
        d[511] = 0xAA;
        d
    }

    #[test]
    fn gpt_both_sector_sizes_and_backup_fallback() {
        for ss in [512u64, 4096] {
            let d = gpt_disk(ss);
            let t = read_partition_table(&d);
            assert_eq!(t.scheme, PartitionScheme::Gpt);
            assert_eq!(t.sector_size as u64, ss);
            assert!(t.problems.is_empty(), "{t:?}");
            assert_eq!(t.partitions.len(), 1);
            let p = &t.partitions[0];
            assert_eq!((p.start, p.length), (10 * ss, 11 * ss));
            assert!(p.ldm && t.is_dynamic());
            assert_eq!(p.name.as_deref(), Some("data"));

            // Damage the primary header CRC: the backup is used and the report says so.
            let mut bad = d.clone();
            bad[ss as usize + 40] ^= 0xFF;
            let t = read_partition_table(&bad);
            assert_eq!(t.partitions.len(), 1, "{t:?}");
            assert!(t.problems[0].contains("header CRC32"), "{t:?}");
            assert!(t.notes.iter().any(|n| n.contains("backup")));

            // Wipe the primary header entirely: the protective MBR leads to the backup.
            let mut gone = d.clone();
            gone[ss as usize..ss as usize + 92].fill(0);
            let t = read_partition_table(&gone);
            assert_eq!(t.partitions.len(), 1, "{t:?}");

            // Damage the primary entry array: its CRC fails, the backup array is used.
            let mut bad = d.clone();
            bad[(2 * ss) as usize + 33] ^= 1;
            let t = read_partition_table(&bad);
            assert!(t.problems[0].contains("entry array CRC32"), "{t:?}");
            assert_eq!(t.partitions[0].start, 10 * ss);

            // Both damaged: no partitions, two problems, no panic.
            let last = d.len() - ss as usize;
            bad[last + 40] ^= 0xFF;
            let t = read_partition_table(&bad);
            assert!(t.partitions.is_empty());
            assert_eq!(t.problems.len(), 2, "{t:?}");
        }
    }
}
