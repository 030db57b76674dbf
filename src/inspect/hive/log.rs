//! Transaction log replay for dirty hives.
//!
//! Follows the public "Windows registry file format specification" (msuhanov/regf):
//!
//! - A log is usable only when its base block copy (its first 512 bytes) has the `regf`
//!   signature, a correct checksum and two equal sequence numbers.
//! - New format (file type 6, Windows 8.1 and later): log entries signed `HvLE` start at offset
//!   512, each a multiple of 512 bytes, guarded by two Marvin32 hashes. Entries are applied in
//!   sequence-number order across LOG1 and LOG2 (the log whose entries start earlier first),
//!   starting with the first entry whose sequence number is not below the primary file's
//!   secondary sequence number, each next entry continuing the previous one by exactly 1; a log
//!   stops at its first entry with a bad signature, hash, size or sequence number and replay then
//!   resumes with the other log.
//! - Old format (file type 1, or 2 as written by Windows 2000): a `DIRT` dirty vector at offset
//!   512 whose bitmap marks 512-byte pages of the hive bins data, followed by those pages. The
//!   log applies when its "last written" timestamp equals the primary's (the first hive bin's
//!   timestamp when the primary base block checksum is wrong); LOG1 is tried first.
//!
//! - Recovered hive bins. Old format: the spec has Windows verify every dirty hive bin (signature,
//!   size of at least 4096, offset field matching the bin's place) and stop recovery at an invalid
//!   one. This is done when the log is read, on the dirty pages alone (see `check_dirty_bins`),
//!   but a log whose recovery would stop early is not used at all: the pages before the invalid
//!   bin would leave the hive in neither its old nor its new state, so the hive is reported as
//!   dirty without usable logs (with the offset where recovery stops) and read as it stands.
//!   A dirty run that starts inside a bin whose header is not dirty is not checked here; its
//!   header (the primary's) is checked when a cell in it is read.
//!   New format: the spec has Windows replace an invalid recovered hive bin with a dummy (empty)
//!   bin and carry on. This reader does not build dummy bins: which recovered pages start a bin
//!   is only known by walking the hive bins, which a lazy reader does not do. Instead every cell
//!   read is checked against the header of its hive bin after replay (signature, offset field,
//!   size; see `bins.rs`), so a cell in a bin Windows would have emptied is an error naming the
//!   bin's offset, where Windows would find the cell missing. Either way nothing in the invalid
//!   bin is believed; the difference is an error (unknown verdict) instead of "not present".
//!
//! Replay never copies the hive: the recovered pages go into an [`Overlay`] (512-byte chunks,
//! taken from the logs' bytes, so bounded by the logs' real sizes) that the cell reader lays over
//! the primary file.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::base_block::{BaseBlock, BASE_BLOCK_LEN, LOG_BASE_BLOCK_LEN};
use super::marvin::{marvin32, REGISTRY_LOG_SEED};
use crate::inspect::image::ReadAt;

/// Granularity of recovered pages (the sector size the log formats are written in).
pub const CHUNK: u64 = 512;
/// Size of the fixed part of a new-format log entry.
const ENTRY_HEADER: usize = 40;

/// Recovered pages of hive bins data, by 512-byte chunk index.
#[derive(Default)]
pub struct Overlay {
    chunks: BTreeMap<u64, Box<[u8]>>,
}

impl Overlay {
    /// Record `bytes` (a multiple of 512 bytes) at `bins_offset` (a multiple of 512).
    fn put(&mut self, bins_offset: u64, bytes: &[u8]) {
        for (i, chunk) in bytes.chunks_exact(CHUNK as usize).enumerate() {
            self.chunks.insert(
                bins_offset / CHUNK + i as u64,
                chunk.to_vec().into_boxed_slice(),
            );
        }
    }

    /// The recovered 512 bytes of chunk `index` (hive bins offset / 512), if a log supplied them.
    pub fn chunk(&self, index: u64) -> Option<&[u8]> {
        self.chunks.get(&index).map(|c| &c[..])
    }

    /// End (hive bins offset) of the highest recovered chunk, 0 when empty.
    pub fn end(&self) -> u64 {
        self.chunks
            .keys()
            .next_back()
            .map_or(0, |last| (last + 1) * CHUNK)
    }
}

/// Which transaction log format was replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum LogFormat {
    /// `HvLE` log entries (Windows 8.1 / Server 2012 R2 and later).
    New,
    /// A `DIRT` dirty vector with 512-byte pages (before Windows 8.1).
    Old,
}

/// The outcome of recovery for a dirty hive.
pub enum Recovery {
    /// Logs were applied.
    Replayed {
        overlay: Overlay,
        /// Which logs contributed, in the order applied ("LOG1", "LOG2", "LOG2+LOG1").
        logs: String,
        /// New format: log entries applied; old format: dirty 512-byte pages applied.
        entries: u32,
        format: LogFormat,
        /// The base block to use from now on (the primary's, or a log's copy when the primary's
        /// checksum was wrong).
        base: BaseBlock,
        /// Hive bins data size after replay.
        bins_size: u32,
    },
    /// No log could be applied; the reason says why for each log.
    NotReplayed { reason: String },
}

/// A transaction log file with a usable base block.
struct LogFile<'a> {
    label: &'static str,
    reader: &'a Arc<dyn ReadAt>,
    base: BaseBlock,
}

/// A validated new-format log entry.
struct LogEntry {
    sequence: u32,
    bins_size: u32,
    /// (hive bins offset, page bytes).
    pages: Vec<(u32, Vec<u8>)>,
}

/// Try to recover a dirty hive from its logs. `primary_base` is the primary's base block as read
/// (its checksum may be wrong); `primary` is the primary file.
pub fn recover(
    primary_base: &BaseBlock,
    primary: &dyn ReadAt,
    log1: Option<&Arc<dyn ReadAt>>,
    log2: Option<&Arc<dyn ReadAt>>,
) -> Recovery {
    let mut problems: Vec<String> = Vec::new();
    let mut usable: Vec<LogFile<'_>> = Vec::new();
    for (label, reader) in [("LOG1", log1), ("LOG2", log2)] {
        let Some(reader) = reader else {
            problems.push(format!("{label} missing"));
            continue;
        };
        match read_log_base(reader) {
            Ok(base) => usable.push(LogFile {
                label,
                reader,
                base,
            }),
            Err(why) => problems.push(format!("{label}: {why}")),
        }
    }
    let new: Vec<LogFile<'_>> = usable
        .iter()
        .filter(|l| l.base.file_type == 6)
        .map(|l| LogFile {
            label: l.label,
            reader: l.reader,
            base: l.base.clone(),
        })
        .collect();
    let old: Vec<&LogFile<'_>> = usable
        .iter()
        .filter(|l| l.base.file_type == 1 || l.base.file_type == 2)
        .collect();
    if !new.is_empty() {
        match replay_new(primary_base, new) {
            Ok(recovery) => return recovery,
            Err(why) => problems.push(why),
        }
    }
    if !old.is_empty() {
        match replay_old(primary_base, primary, &old) {
            Ok(recovery) => return recovery,
            Err(why) => problems.push(why),
        }
    }
    Recovery::NotReplayed {
        reason: format!("no transaction log applies: {}", problems.join("; ")),
    }
}

/// Read and check a log's base block copy; the error says why the log is unusable.
fn read_log_base(reader: &Arc<dyn ReadAt>) -> Result<BaseBlock, String> {
    let mut header = [0u8; LOG_BASE_BLOCK_LEN];
    if reader.size() < LOG_BASE_BLOCK_LEN as u64 {
        return Err(format!("only {} bytes (empty or truncated)", reader.size()));
    }
    reader
        .read_exact_at(&mut header, 0)
        .map_err(|e| format!("cannot read its base block: {e}"))?;
    let base = BaseBlock::parse(&header).map_err(|e| e.to_string())?;
    if !base.checksum_ok {
        return Err(format!(
            "base block checksum {:#x} is wrong",
            base.stored_checksum
        ));
    }
    if !base.sequences_match() {
        return Err(format!(
            "its sequence numbers differ ({} and {})",
            base.primary_sequence, base.secondary_sequence
        ));
    }
    if !matches!(base.file_type, 1 | 2 | 6) {
        return Err(format!(
            "file type {} is not a transaction log",
            base.file_type
        ));
    }
    Ok(base)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    at.checked_add(4)
        .and_then(|end| bytes.get(at..end))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from(u32_at(bytes, at)) | (u64::from(u32_at(bytes, at + 4)) << 32)
}

/// The valid entries of a new-format log, in file order, up to the first invalid one. Each entry
/// must continue the previous one's sequence number; the first must carry the log's own.
fn read_entries(log: &LogFile<'_>) -> Vec<LogEntry> {
    let size = log.reader.size();
    let mut entries = Vec::new();
    let mut at = LOG_BASE_BLOCK_LEN as u64;
    let mut expected = log.base.primary_sequence;
    while at + ENTRY_HEADER as u64 <= size {
        let mut header = [0u8; ENTRY_HEADER];
        if log.reader.read_exact_at(&mut header, at).is_err() || &header[..4] != b"HvLE" {
            break;
        }
        let entry_size = u64::from(u32_at(&header, 4));
        if entry_size < ENTRY_HEADER as u64 || entry_size % CHUNK != 0 || at + entry_size > size {
            break;
        }
        // entry_size ≤ the log's real size, checked above.
        let Ok(entry_len) = usize::try_from(entry_size) else {
            break;
        };
        let mut entry = vec![0u8; entry_len];
        if log.reader.read_exact_at(&mut entry, at).is_err() {
            break;
        }
        match parse_entry(&entry) {
            Some(parsed) if parsed.sequence == expected => {
                expected = expected.wrapping_add(1);
                entries.push(parsed);
            }
            _ => break,
        }
        at += entry_size;
    }
    entries
}

/// Check one whole `HvLE` entry (hashes, sizes, page references) and take its pages.
fn parse_entry(entry: &[u8]) -> Option<LogEntry> {
    let hash1 = u64_at(entry, 24);
    let hash2 = u64_at(entry, 32);
    if marvin32(REGISTRY_LOG_SEED, entry.get(ENTRY_HEADER..)?) != hash1 {
        return None;
    }
    if marvin32(REGISTRY_LOG_SEED, entry.get(..32)?) != hash2 {
        return None;
    }
    let sequence = u32_at(entry, 12);
    let bins_size = u32_at(entry, 16);
    if bins_size == 0 || !bins_size.is_multiple_of(4096) {
        return None;
    }
    let count = u32_at(entry, 20) as usize;
    let refs_len = count.checked_mul(8)?;
    let refs = entry.get(ENTRY_HEADER..ENTRY_HEADER.checked_add(refs_len)?)?;
    let mut data_at = ENTRY_HEADER + refs_len;
    let mut pages = Vec::with_capacity(count);
    for reference in refs.chunks_exact(8) {
        let offset = u32_at(reference, 0);
        let page_size = u32_at(reference, 4) as usize;
        if u64::from(offset) % CHUNK != 0
            || !(page_size as u64).is_multiple_of(CHUNK)
            || u64::from(offset) + page_size as u64 > u64::from(bins_size)
        {
            return None;
        }
        let bytes = entry.get(data_at..data_at.checked_add(page_size)?)?;
        pages.push((offset, bytes.to_vec()));
        data_at += page_size;
    }
    Some(LogEntry {
        sequence,
        bins_size,
        pages,
    })
}

fn replay_new(primary_base: &BaseBlock, logs: Vec<LogFile<'_>>) -> Result<Recovery, String> {
    let mut logs: Vec<(LogFile<'_>, Vec<LogEntry>)> = logs
        .into_iter()
        .map(|log| {
            let entries = read_entries(&log);
            (log, entries)
        })
        .collect();
    let describe = |logs: &[(LogFile<'_>, Vec<LogEntry>)]| -> String {
        logs.iter()
            .map(|(log, entries)| match (entries.first(), entries.last()) {
                (Some(first), Some(last)) => format!(
                    "{} holds entries {}..={}",
                    log.label, first.sequence, last.sequence
                ),
                _ => format!(
                    "{} holds no valid log entry (expected sequence number {})",
                    log.label, log.base.primary_sequence
                ),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut base = primary_base.clone();
    if !primary_base.checksum_ok {
        // Only the log with the latest entries is used, and its base block replaces the primary's.
        logs.sort_by_key(|(_, entries)| entries.last().map(|e| e.sequence));
        let newest = logs.pop().ok_or("no new-format log")?;
        if newest.1.is_empty() {
            return Err(format!(
                "primary base block checksum is wrong and {}",
                describe(std::slice::from_ref(&newest))
            ));
        }
        base = newest.0.base.clone();
        base.file_type = 0;
        logs = vec![newest];
    }
    logs.sort_by_key(|(log, entries)| {
        (entries.first().map_or(u32::MAX, |e| e.sequence), log.label)
    });
    let threshold = base.secondary_sequence;
    let mut overlay = Overlay::default();
    let mut last: Option<u32> = None;
    let mut bins_size = base.hive_bins_size;
    let mut applied = 0u32;
    let mut used: Vec<&'static str> = Vec::new();
    for (log, entries) in &logs {
        let mut from_this = 0;
        for entry in entries {
            if entry.sequence < threshold {
                continue;
            }
            if let Some(previous) = last {
                if entry.sequence <= previous {
                    continue;
                }
                if Some(entry.sequence) != previous.checked_add(1) {
                    break;
                }
            }
            for (offset, bytes) in &entry.pages {
                overlay.put(u64::from(*offset), bytes);
            }
            bins_size = entry.bins_size;
            last = Some(entry.sequence);
            applied += 1;
            from_this += 1;
        }
        if from_this > 0 {
            used.push(log.label);
        }
    }
    if applied == 0 {
        return Err(format!(
            "no log entry continues the primary's secondary sequence number {threshold} ({})",
            describe(&logs)
        ));
    }
    Ok(Recovery::Replayed {
        overlay,
        logs: used.join("+"),
        entries: applied,
        format: LogFormat::New,
        base,
        bins_size,
    })
}

fn replay_old(
    primary_base: &BaseBlock,
    primary: &dyn ReadAt,
    logs: &[&LogFile<'_>],
) -> Result<Recovery, String> {
    // The timestamp a log must carry to apply.
    let reference = if primary_base.checksum_ok {
        primary_base.last_written
    } else {
        let mut stamp = [0u8; 8];
        primary
            .read_exact_at(&mut stamp, BASE_BLOCK_LEN + 20)
            .map_err(|e| format!("cannot read the first hive bin's timestamp: {e}"))?;
        u64::from_le_bytes(stamp)
    };
    let mut problems = Vec::new();
    for log in logs {
        if log.base.last_written != reference {
            problems.push(format!(
                "{}: last written timestamp {:#x} is not the primary's {:#x}",
                log.label, log.base.last_written, reference
            ));
            continue;
        }
        match read_dirty_pages(log).and_then(|(overlay, pages)| {
            check_dirty_bins(&overlay, primary, log.base.hive_bins_size)?;
            Ok((overlay, pages))
        }) {
            Ok((overlay, pages)) => {
                let mut base = if primary_base.checksum_ok {
                    primary_base.clone()
                } else {
                    let mut b = log.base.clone();
                    b.file_type = 0;
                    b
                };
                base.hive_bins_size = log.base.hive_bins_size;
                return Ok(Recovery::Replayed {
                    overlay,
                    logs: log.label.to_string(),
                    entries: pages,
                    format: LogFormat::Old,
                    bins_size: log.base.hive_bins_size,
                    base,
                });
            }
            Err(why) => problems.push(format!("{}: {why}", log.label)),
        }
    }
    Err(problems.join("; "))
}

/// Read the dirty vector and the dirty pages of an old-format log.
fn read_dirty_pages(log: &LogFile<'_>) -> Result<(Overlay, u32), String> {
    let size = log.reader.size();
    let bins_size = u64::from(log.base.hive_bins_size);
    if bins_size == 0 || !bins_size.is_multiple_of(4096) {
        return Err(format!(
            "hive bins data size {bins_size} is not a positive multiple of 4096"
        ));
    }
    let bits = bins_size / CHUNK;
    let bitmap_len = bits.div_ceil(8);
    let vector_at = LOG_BASE_BLOCK_LEN as u64;
    if vector_at + 4 + bitmap_len > size {
        return Err(format!(
            "its dirty vector for {bins_size} bytes of hive bins ({bitmap_len} bitmap bytes) does not fit in the {size}-byte log"
        ));
    }
    let mut vector = vec![0u8; 4 + bitmap_len as usize];
    log.reader
        .read_exact_at(&mut vector, vector_at)
        .map_err(|e| format!("cannot read its dirty vector: {e}"))?;
    if vector.get(..4) != Some(b"DIRT".as_slice()) {
        return Err("no DIRT signature at offset 512".into());
    }
    let bitmap = vector.get(4..).unwrap_or_default();
    let pages_at = vector_at + (4 + bitmap_len).div_ceil(CHUNK) * CHUNK;
    let mut overlay = Overlay::default();
    let mut next = pages_at;
    let mut count = 0u32;
    for bit in 0..bits {
        let set = bitmap
            .get((bit / 8) as usize)
            .is_some_and(|byte| byte & (1 << (bit % 8)) != 0);
        if !set {
            continue;
        }
        if next + CHUNK > size {
            return Err(format!(
                "dirty page {count} (bit {bit}) would lie at offset {next:#x}, past the end of the {size}-byte log"
            ));
        }
        let mut page = [0u8; CHUNK as usize];
        log.reader
            .read_exact_at(&mut page, next)
            .map_err(|e| format!("cannot read dirty page at offset {next:#x}: {e}"))?;
        overlay.put(bit * CHUNK, &page);
        next += CHUNK;
        count += 1;
    }
    if count == 0 {
        return Err("its dirty vector marks no page".into());
    }
    Ok((overlay, count))
}

/// The old-format rule for recovered hive bins: every dirty hive bin must be valid, or Windows
/// stops recovery at it. A dirty 512-byte page at a 4 KiB boundary that carries an `hbin`
/// signature must be a valid header (offset field equal to its own offset, size a positive
/// multiple of 4096 inside the hive bins data); one without the signature, where the primary
/// file has a hive bin header and no dirty bin that started earlier covers it, is a dirty bin
/// that lost its header. Only the dirty pages themselves and, for those, one 32-byte read of the
/// primary file are inspected.
///
/// Windows applies the dirty pages before the invalid bin and stops; a hive recovered that far is
/// neither the old state nor the new one, so this reader does not use such a log at all (the
/// error says where recovery would stop) and the hive counts as dirty without usable logs.
fn check_dirty_bins(overlay: &Overlay, primary: &dyn ReadAt, bins_size: u32) -> Result<(), String> {
    let mut dirty_bin_end = 0u64;
    for (&index, chunk) in &overlay.chunks {
        let at = index * CHUNK;
        if !at.is_multiple_of(4096) {
            continue;
        }
        let problem = if chunk.get(..4) == Some(b"hbin".as_slice()) {
            let own_offset = u64::from(u32_at(chunk, 4));
            let size = u64::from(u32_at(chunk, 8));
            if own_offset != at {
                Some(format!("its offset field is {own_offset:#x}"))
            } else if size < 4096 || !size.is_multiple_of(4096) {
                Some(format!(
                    "its size {size} is not a positive multiple of 4096"
                ))
            } else if at + size > u64::from(bins_size) {
                Some(format!(
                    "its size {size} reaches past the hive bins data ({bins_size} bytes)"
                ))
            } else {
                dirty_bin_end = at + size;
                None
            }
        } else if at >= dirty_bin_end && primary_has_bin_at(primary, at) {
            Some(
                "its signature is not \"hbin\" but the primary file has a hive bin header there"
                    .into(),
            )
        } else {
            None
        };
        if let Some(problem) = problem {
            let before = overlay.chunks.range(..index).count();
            return Err(format!(
                "the dirty hive bin at offset {:#x} is invalid ({problem}): recovery stops there, after {before} of {} dirty pages, and a partly recovered hive is not used",
                BASE_BLOCK_LEN + at,
                overlay.chunks.len()
            ));
        }
    }
    Ok(())
}

/// Whether the primary file holds a hive bin header (signature and own offset) at `bins_offset`.
fn primary_has_bin_at(primary: &dyn ReadAt, bins_offset: u64) -> bool {
    let mut head = [0u8; 8];
    primary
        .read_exact_at(&mut head, BASE_BLOCK_LEN + bins_offset)
        .is_ok()
        && &head[..4] == b"hbin"
        && u64::from(u32_at(&head, 4)) == bins_offset
}
