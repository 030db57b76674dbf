//! The 4096-byte base block (file header) of a primary hive file or a transaction log.

use super::error::HiveError;

/// Length of the base block; the hive bins data starts right after it.
pub const BASE_BLOCK_LEN: u64 = 4096;
/// The part of a base block a transaction log keeps (its first sector).
pub const LOG_BASE_BLOCK_LEN: usize = 512;

/// The base block fields this reader uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseBlock {
    pub primary_sequence: u32,
    pub secondary_sequence: u32,
    /// FILETIME of the last write (not updated by Windows 8.1 and later).
    pub last_written: u64,
    pub major_version: u32,
    pub minor_version: u32,
    /// 0 = primary file, 1 (2 on Windows 2000) = old-format log, 6 = new-format log.
    pub file_type: u32,
    pub file_format: u32,
    /// Offset of the root key node, relative to the hive bins data.
    pub root_cell_offset: u32,
    /// Size of the hive bins data in bytes.
    pub hive_bins_size: u32,
    pub stored_checksum: u32,
    /// Whether the stored checksum matches the XOR-32 checksum of the first 508 bytes.
    pub checksum_ok: bool,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    at.checked_add(4)
        .and_then(|end| bytes.get(at..end))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes)
}

/// The XOR-32 checksum of the first 508 bytes: 0 is stored as 1 and 0xFFFFFFFF as 0xFFFFFFFE.
pub fn checksum(header: &[u8]) -> u32 {
    let x = header
        .get(..508)
        .unwrap_or(header)
        .chunks_exact(4)
        .fold(0u32, |acc, w| {
            acc ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]])
        });
    match x {
        0xFFFF_FFFF => 0xFFFF_FFFE,
        0 => 1,
        other => other,
    }
}

impl BaseBlock {
    /// Parse the first sector of a base block (at least 512 bytes). Only the signature is
    /// required here; callers decide what a wrong checksum or version means for them.
    pub fn parse(header: &[u8]) -> Result<BaseBlock, HiveError> {
        if header.len() < LOG_BASE_BLOCK_LEN {
            return Err(HiveError::BaseBlock {
                offset: 0,
                reason: format!("only {} bytes, need 512", header.len()),
            });
        }
        if header.get(..4) != Some(b"regf") {
            return Err(HiveError::BaseBlock {
                offset: 0,
                reason: "signature is not \"regf\"".into(),
            });
        }
        let stored_checksum = u32_at(header, 508);
        Ok(BaseBlock {
            primary_sequence: u32_at(header, 4),
            secondary_sequence: u32_at(header, 8),
            last_written: u64::from(u32_at(header, 12)) | (u64::from(u32_at(header, 16)) << 32),
            major_version: u32_at(header, 20),
            minor_version: u32_at(header, 24),
            file_type: u32_at(header, 28),
            file_format: u32_at(header, 32),
            root_cell_offset: u32_at(header, 36),
            hive_bins_size: u32_at(header, 40),
            stored_checksum,
            checksum_ok: checksum(header) == stored_checksum,
        })
    }

    /// Sequence numbers equal: the last write to this file completed.
    pub fn sequences_match(&self) -> bool {
        self.primary_sequence == self.secondary_sequence
    }

    /// Check the fields the cell reader depends on against the real size of the primary file.
    pub fn check_layout(&self, file_size: u64) -> Result<(), HiveError> {
        let bad = |reason: String| HiveError::BaseBlock { offset: 0, reason };
        if self.major_version != 1 {
            return Err(bad(format!(
                "major version {} (only 1 is known)",
                self.major_version
            )));
        }
        if self.minor_version < 2 {
            return Err(bad(format!(
                "minor version {} (Windows NT 3.1 layout is not supported)",
                self.minor_version
            )));
        }
        if self.file_format != 1 {
            return Err(bad(format!(
                "file format {} (only 1, direct memory load, is known)",
                self.file_format
            )));
        }
        let bins = u64::from(self.hive_bins_size);
        if bins == 0 || bins % 4096 != 0 {
            return Err(bad(format!(
                "hive bins data size {bins} is not a positive multiple of 4096"
            )));
        }
        if BASE_BLOCK_LEN + bins > file_size {
            return Err(bad(format!(
                "hive bins data size {bins} reaches past the end of the file ({file_size} bytes): truncated hive"
            )));
        }
        if u64::from(self.root_cell_offset) + 4 > bins {
            return Err(bad(format!(
                "root cell offset {:#x} is outside the hive bins data ({bins} bytes)",
                self.root_cell_offset
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_special_cases() {
        let zeros = vec![0u8; 512];
        assert_eq!(checksum(&zeros), 1);
        let mut ones = vec![0u8; 512];
        ones[..4].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        assert_eq!(checksum(&ones), 0xFFFF_FFFE);
        let mut some = vec![0u8; 512];
        some[..4].copy_from_slice(&0x1234u32.to_le_bytes());
        some[4..8].copy_from_slice(&0x1000u32.to_le_bytes());
        // Bytes from 508 on are not part of the sum.
        some[508..512].copy_from_slice(&0xAAAAu32.to_le_bytes());
        assert_eq!(checksum(&some), 0x0234);
    }
}
