//! A lazy reader for Windows registry hive files (regf), with transaction log replay.
//!
//! [`Hive::open`] reads the 4 KiB base block and, when the hive is dirty, the transaction logs;
//! every lookup afterwards reads only the cells on its path (key nodes, subkey lists, value
//! lists, value data), through a bounded page cache. SOFTWARE hives of 100+ MiB are never read
//! whole.
//!
//! Hive files are hostile input: every offset is checked against the hive bins size, cell sizes
//! are validated (at most [`MAX_VALUE_DATA`] + 8 bytes, and inside the hive bin that holds the
//! cell, whose header is checked), element counts are capped by the size of the cell that holds
//! them and by [`MAX_SUBKEYS`] / [`MAX_VALUES`], nested subkey lists are depth-limited with cycle
//! detection, and no allocation is sized by an on-disk field before that field was checked
//! against the real file size or one of these limits. Offsets are computed in u64 or with
//! checked arithmetic.
//!
//! After log replay, a byte of the hive bins data that neither the primary file nor a log entry
//! holds (a truncated primary) is an I/O error naming its offset when it is read, never zeros;
//! pages the logs add past the primary's end (hive growth) read normally.
//!
//! Layouts follow the public "Windows registry file format specification" (msuhanov/regf).

mod base_block;
mod bins;
mod error;
mod log;
pub mod marvin;
mod name;
mod value;

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use crate::inspect::image::ReadAt;
use base_block::{BaseBlock, BASE_BLOCK_LEN};
use bins::Bins;
pub use error::HiveError;
pub use log::LogFormat;
use log::{Overlay, Recovery};
use name::{decode_name, lf_hint_may_match, lh_hash, names_equal};
pub use value::Value;

/// Most subkeys one key may list (the largest real keys, under `Classes`, hold tens of thousands).
pub const MAX_SUBKEYS: usize = 1 << 20;
/// Most values one key may list (real keys hold at most a few thousand).
pub const MAX_VALUES: u32 = 1 << 20;
/// Deepest nesting of index roots (`ri`) accepted; Windows writes one level.
const MAX_LIST_DEPTH: u32 = 4;
pub use bins::MAX_VALUE_DATA;
/// Size of one big-data (`db`) segment.
const DB_SEGMENT: u32 = 16344;

/// Whether the hive needed recovery and what was done about it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum HiveState {
    /// The base block checksum is right and its sequence numbers are equal.
    Clean,
    /// The hive was dirty and the transaction logs were replayed over it.
    Replayed {
        /// The logs applied, in order: "LOG1", "LOG2", "LOG1+LOG2" or "LOG2+LOG1".
        log: String,
        /// New format: log entries applied; old format: dirty 512-byte pages applied.
        entries: u32,
        format: LogFormat,
    },
    /// The hive is dirty but no log applied: what is read is the primary file as it stands,
    /// possibly missing the last changes.
    DirtyNotReplayed { reason: String },
}

/// An open registry hive.
pub struct Hive {
    bins: Bins,
    state: HiveState,
    root_offset: u32,
    minor_version: u32,
}

/// A key node.
#[derive(Clone, Debug)]
pub struct Key {
    /// The key's name as stored (case preserved).
    pub name: String,
    offset: u32,
    last_written: u64,
    subkey_count: u32,
    subkeys_list: u32,
    value_count: u32,
    values_list: u32,
}

impl Key {
    /// Offset of the key node cell, relative to the hive bins data.
    pub fn offset(&self) -> u32 {
        self.offset
    }
    /// Last written time (FILETIME: 100 ns units since 1601-01-01 UTC).
    pub fn last_written(&self) -> u64 {
        self.last_written
    }
    /// Number of (non-volatile) subkeys the key node declares.
    pub fn subkey_count(&self) -> u32 {
        self.subkey_count
    }
    /// Number of values the key node declares.
    pub fn value_count(&self) -> u32 {
        self.value_count
    }
}

/// What a subkey list element tells about the key before its node is read.
#[derive(Clone, Copy)]
enum Hint {
    None,
    Lf([u8; 4]),
    Lh(u32),
}

/// The `N` bytes at `at`, or `None` when they are not all in `bytes`.
fn array_at<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// The little-endian u16 at `at`; 0 when out of range (callers check lengths first).
fn u16_at(bytes: &[u8], at: usize) -> u16 {
    array_at(bytes, at).map_or(0, u16::from_le_bytes)
}

/// The little-endian u32 at `at`; 0 when out of range (callers check lengths first).
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    array_at(bytes, at).map_or(0, u32::from_le_bytes)
}

fn file_offset(bins_offset: u32) -> u64 {
    BASE_BLOCK_LEN + u64::from(bins_offset)
}

impl Hive {
    /// Open a hive over its primary file and its transaction logs (LOG1, LOG2 in that order;
    /// missing ones as None). Reads the base block and, only when the hive is dirty, the logs.
    pub fn open(
        primary: Arc<dyn ReadAt>,
        log1: Option<Arc<dyn ReadAt>>,
        log2: Option<Arc<dyn ReadAt>>,
    ) -> Result<Hive, HiveError> {
        let file_size = primary.size();
        let mut header = vec![0u8; BASE_BLOCK_LEN as usize];
        primary
            .read_exact_at(&mut header, 0)
            .map_err(|source| HiveError::Io {
                what: "base block",
                offset: 0,
                len: header.len(),
                source,
            })?;
        let primary_base = BaseBlock::parse(&header)?;
        let dirty = !primary_base.checksum_ok || !primary_base.sequences_match();
        if !dirty {
            primary_base.check_layout(file_size)?;
            return Ok(Hive {
                bins: Bins::new(primary, primary_base.hive_bins_size, Overlay::default()),
                state: HiveState::Clean,
                root_offset: primary_base.root_cell_offset,
                minor_version: primary_base.minor_version,
            });
        }
        match log::recover(&primary_base, &*primary, log1.as_ref(), log2.as_ref()) {
            Recovery::Replayed {
                overlay,
                logs,
                entries,
                format,
                base,
                bins_size,
            } => {
                // Growth recorded by the logs counts only as far as the logs hold its pages; a
                // page inside that range that neither holds fails when read (see bins.rs).
                let primary_bins = file_size.saturating_sub(BASE_BLOCK_LEN) / 4096 * 4096;
                let readable = primary_bins.max(overlay.end());
                let mut effective = base.clone();
                effective.hive_bins_size = bins_size;
                effective.check_layout(BASE_BLOCK_LEN + readable)?;
                Ok(Hive {
                    bins: Bins::new(primary, bins_size, overlay),
                    state: HiveState::Replayed {
                        log: logs,
                        entries,
                        format,
                    },
                    root_offset: base.root_cell_offset,
                    minor_version: base.minor_version,
                })
            }
            Recovery::NotReplayed { reason } => {
                let reason = if primary_base.checksum_ok {
                    format!(
                        "sequence numbers differ ({} and {}); {reason}",
                        primary_base.primary_sequence, primary_base.secondary_sequence
                    )
                } else {
                    format!(
                        "base block checksum {:#x} is wrong; {reason}",
                        primary_base.stored_checksum
                    )
                };
                primary_base.check_layout(file_size)?;
                Ok(Hive {
                    bins: Bins::new(primary, primary_base.hive_bins_size, Overlay::default()),
                    state: HiveState::DirtyNotReplayed { reason },
                    root_offset: primary_base.root_cell_offset,
                    minor_version: primary_base.minor_version,
                })
            }
        }
    }

    /// Whether the hive was clean, replayed from its logs, or dirty without usable logs.
    pub fn state(&self) -> &HiveState {
        &self.state
    }

    /// Size of the hive bins data in bytes (after log replay).
    pub fn bins_size(&self) -> u32 {
        self.bins.size()
    }

    /// The root key.
    pub fn root(&self) -> Result<Key, HiveError> {
        self.key_node(self.root_offset)
    }

    /// The key at a case-insensitive path below the root, components separated by `\`
    /// (e.g. `ControlSet001\Services\viostor`); `""` is the root. Empty components are ignored.
    pub fn key(&self, path: &str) -> Result<Option<Key>, HiveError> {
        let mut key = self.root()?;
        for component in path.split('\\').filter(|c| !c.is_empty()) {
            match self.subkey(&key, component)? {
                Some(next) => key = next,
                None => return Ok(None),
            }
        }
        Ok(Some(key))
    }

    /// The subkey of `key` called `name` (case-insensitive).
    pub fn subkey(&self, key: &Key, name: &str) -> Result<Option<Key>, HiveError> {
        if key.subkey_count == 0 || key.subkeys_list == u32::MAX {
            return Ok(None);
        }
        // First pass: skip elements whose hash or hint rules the name out. Hashes of non-ASCII
        // names depend on Windows' upcase table, so for those a second pass reads every node.
        // (The name's hash is computed once: real lists hold thousands of elements.)
        let hash = lh_hash(name);
        for use_hints in [true, false] {
            let mut found = None;
            self.walk_list(key.subkeys_list, &mut |offset, hint| {
                let may_match = !use_hints
                    || match hint {
                        Hint::None => true,
                        Hint::Lf(h) => lf_hint_may_match(h, name),
                        Hint::Lh(h) => h == hash,
                    };
                if may_match {
                    let node = self.key_node(offset)?;
                    if names_equal(&node.name, name) {
                        found = Some(node);
                        return Ok(ControlFlow::Break(()));
                    }
                }
                Ok(ControlFlow::Continue(()))
            })?;
            if found.is_some() || name.is_ascii() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// All subkeys of `key`, in list order (at most [`MAX_SUBKEYS`]).
    pub fn subkeys(&self, key: &Key) -> Result<Vec<Key>, HiveError> {
        let mut keys = Vec::new();
        if key.subkey_count == 0 || key.subkeys_list == u32::MAX {
            return Ok(keys);
        }
        // A key node listed twice would let a small hive list the same (long-named) node up to
        // MAX_SUBKEYS times: each node counts once, so the result is bounded by the file.
        let mut listed = HashSet::new();
        self.walk_list(key.subkeys_list, &mut |offset, _| {
            if !listed.insert(offset) {
                return Err(HiveError::Cell {
                    what: "subkey list",
                    offset: file_offset(key.subkeys_list),
                    reason: format!(
                        "key {:?} lists the key node at offset {:#x} twice",
                        key.name,
                        file_offset(offset)
                    ),
                });
            }
            keys.push(self.key_node(offset)?);
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(keys)
    }

    /// The value of `key` called `name` (case-insensitive; `""` is the default value).
    pub fn value(&self, key: &Key, name: &str) -> Result<Option<Value>, HiveError> {
        for offset in self.value_offsets(key)? {
            let cell = self.bins.cell(offset, "key value")?;
            let (value_name, _) = parse_vk_name(&cell, offset)?;
            if names_equal(&value_name, name) {
                return self.value_data(&cell, offset).map(Some);
            }
        }
        Ok(None)
    }

    /// All values of `key` with their names, in list order.
    ///
    /// Each value cell counts once and all the data together may not exceed the hive bins size
    /// (value cells sharing one data cell would otherwise multiply a small file in memory).
    pub fn values(&self, key: &Key) -> Result<Vec<(String, Value)>, HiveError> {
        let mut out = Vec::new();
        let mut listed = HashSet::new();
        let mut total = 0u64;
        for offset in self.value_offsets(key)? {
            if !listed.insert(offset) {
                return Err(HiveError::Cell {
                    what: "value list",
                    offset: file_offset(key.values_list),
                    reason: format!(
                        "key {:?} lists the value at offset {:#x} twice",
                        key.name,
                        file_offset(offset)
                    ),
                });
            }
            let cell = self.bins.cell(offset, "key value")?;
            let (value_name, _) = parse_vk_name(&cell, offset)?;
            total += u64::from(u32_at(&cell, 4) & 0x7FFF_FFFF);
            if total > u64::from(self.bins.size()) {
                return Err(HiveError::Limit {
                    what: "value data of one key",
                    offset: file_offset(key.values_list),
                    limit: u64::from(self.bins.size()),
                });
            }
            out.push((value_name, self.value_data(&cell, offset)?));
        }
        Ok(out)
    }

    /// Read and parse the key node at `offset`.
    fn key_node(&self, offset: u32) -> Result<Key, HiveError> {
        let cell = self.bins.cell(offset, "key node")?;
        let bad = |reason: String| HiveError::Cell {
            what: "key node",
            offset: file_offset(offset),
            reason,
        };
        if cell.len() < 76 {
            return Err(bad(format!("{} bytes, a key node needs 76", cell.len())));
        }
        if cell.get(..2) != Some(b"nk".as_slice()) {
            return Err(bad("signature is not \"nk\"".into()));
        }
        let flags = u16_at(&cell, 2);
        let name_len = usize::from(u16_at(&cell, 72));
        let name_bytes = cell.get(76..76 + name_len).ok_or_else(|| {
            bad(format!(
                "name of {name_len} bytes does not fit in the {}-byte cell",
                cell.len()
            ))
        })?;
        Ok(Key {
            name: decode_name(name_bytes, flags & 0x0020 != 0),
            offset,
            last_written: u64::from(u32_at(&cell, 4)) | (u64::from(u32_at(&cell, 8)) << 32),
            subkey_count: u32_at(&cell, 20),
            subkeys_list: u32_at(&cell, 28),
            value_count: u32_at(&cell, 36),
            values_list: u32_at(&cell, 40),
        })
    }

    /// Visit every key node offset of a subkey list (through index roots), detecting cycles.
    fn walk_list(
        &self,
        list: u32,
        visit: &mut dyn FnMut(u32, Hint) -> Result<ControlFlow<()>, HiveError>,
    ) -> Result<(), HiveError> {
        let mut seen = HashSet::new();
        let mut budget = MAX_SUBKEYS;
        self.walk_list_at(list, 0, &mut seen, &mut budget, visit)
            .map(|_| ())
    }

    fn walk_list_at(
        &self,
        list: u32,
        depth: u32,
        seen: &mut HashSet<u32>,
        budget: &mut usize,
        visit: &mut dyn FnMut(u32, Hint) -> Result<ControlFlow<()>, HiveError>,
    ) -> Result<ControlFlow<()>, HiveError> {
        if !seen.insert(list) {
            return Err(HiveError::Cycle {
                offset: file_offset(list),
            });
        }
        let cell = self.bins.cell(list, "subkey list")?;
        let bad = |reason: String| HiveError::Cell {
            what: "subkey list",
            offset: file_offset(list),
            reason,
        };
        if cell.len() < 4 {
            return Err(bad(format!("{} bytes, a list needs 4", cell.len())));
        }
        let signature: [u8; 2] = array_at(&cell, 0).unwrap_or_default();
        let count = usize::from(u16_at(&cell, 2));
        let element = match &signature {
            b"lf" | b"lh" => 8,
            b"li" | b"ri" => 4,
            other => {
                return Err(bad(format!(
                    "signature {:?} is not lf, lh, li or ri",
                    String::from_utf8_lossy(other)
                )))
            }
        };
        // The count can only name elements the cell really holds.
        let fits = (cell.len() - 4) / element;
        if count > fits {
            return Err(bad(format!(
                "{count} elements of {element} bytes do not fit in the {}-byte cell",
                cell.len()
            )));
        }
        for i in 0..count {
            let at = 4 + i * element;
            let target = u32_at(&cell, at);
            if &signature == b"ri" {
                if depth >= MAX_LIST_DEPTH {
                    return Err(HiveError::Limit {
                        what: "index root nesting",
                        offset: file_offset(list),
                        limit: u64::from(MAX_LIST_DEPTH),
                    });
                }
                if self
                    .walk_list_at(target, depth + 1, seen, budget, visit)?
                    .is_break()
                {
                    return Ok(ControlFlow::Break(()));
                }
                continue;
            }
            if *budget == 0 {
                return Err(HiveError::Limit {
                    what: "number of subkeys",
                    offset: file_offset(list),
                    limit: MAX_SUBKEYS as u64,
                });
            }
            *budget -= 1;
            let hint = match &signature {
                b"lf" => Hint::Lf(array_at(&cell, at + 4).unwrap_or_default()),
                b"lh" => Hint::Lh(u32_at(&cell, at + 4)),
                _ => Hint::None,
            };
            if visit(target, hint)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Offsets of the value cells of `key`; the count is capped by the list cell's size.
    fn value_offsets(&self, key: &Key) -> Result<Vec<u32>, HiveError> {
        if key.value_count == 0 || key.values_list == u32::MAX {
            return Ok(Vec::new());
        }
        if key.value_count > MAX_VALUES {
            return Err(HiveError::Limit {
                what: "number of values",
                offset: file_offset(key.offset),
                limit: u64::from(MAX_VALUES),
            });
        }
        let cell = self.bins.cell(key.values_list, "value list")?;
        let fits = cell.len() / 4;
        if key.value_count as usize > fits {
            return Err(HiveError::Cell {
                what: "value list",
                offset: file_offset(key.values_list),
                reason: format!(
                    "key {:?} declares {} values but the list cell holds {fits}",
                    key.name, key.value_count
                ),
            });
        }
        Ok((0..key.value_count as usize)
            .map(|i| u32_at(&cell, i * 4))
            .collect())
    }

    /// The decoded data of the key value whose cell is `cell` (at `offset`).
    fn value_data(&self, cell: &[u8], offset: u32) -> Result<Value, HiveError> {
        let bad = |reason: String| HiveError::Cell {
            what: "key value",
            offset: file_offset(offset),
            reason,
        };
        let size_field = u32_at(cell, 4);
        let data_offset = u32_at(cell, 8);
        let value_type = u32_at(cell, 12);
        if size_field & 0x8000_0000 != 0 {
            let len = (size_field & 0x7FFF_FFFF) as usize;
            if len > 4 {
                return Err(bad(format!(
                    "inline data of {len} bytes (at most 4 fit in the data offset field)"
                )));
            }
            let data = data_offset.to_le_bytes()[..len].to_vec();
            return Ok(Value::decode(value_type, data));
        }
        let len = size_field;
        if len == 0 {
            return Ok(Value::decode(value_type, Vec::new()));
        }
        if len > MAX_VALUE_DATA || len > self.bins.size() {
            return Err(bad(format!(
                "data size {len} is larger than the hive bins data ({} bytes) or the {MAX_VALUE_DATA}-byte limit",
                self.bins.size()
            )));
        }
        let data_cell = self.bins.cell(data_offset, "value data")?;
        if self.minor_version >= 4 && len > DB_SEGMENT && data_cell.get(..2) == Some(b"db") {
            let data = self.big_data(&data_cell, data_offset, len)?;
            return Ok(Value::decode(value_type, data));
        }
        let data = data_cell
            .get(..len as usize)
            .ok_or_else(|| HiveError::Cell {
                what: "value data",
                offset: file_offset(data_offset),
                reason: format!(
                    "value data size {len} exceeds its {}-byte cell",
                    data_cell.len()
                ),
            })?;
        Ok(Value::decode(value_type, data.to_vec()))
    }

    /// Assemble `len` bytes of value data from a big data (`db`) record and its segments.
    fn big_data(&self, db: &[u8], db_offset: u32, len: u32) -> Result<Vec<u8>, HiveError> {
        let bad = |reason: String| HiveError::Cell {
            what: "big data",
            offset: file_offset(db_offset),
            reason,
        };
        let count = u32::from(u16_at(db, 2));
        let list_offset = u32_at(db, 4);
        let needed = len.div_ceil(DB_SEGMENT);
        if count < needed {
            return Err(bad(format!(
                "{count} segments cannot hold {len} bytes (need {needed})"
            )));
        }
        let list = self.bins.cell(list_offset, "big data segment list")?;
        if (list.len() as u64) < u64::from(needed) * 4 {
            return Err(HiveError::Cell {
                what: "big data segment list",
                offset: file_offset(list_offset),
                reason: format!("{} bytes cannot list {needed} segments", list.len()),
            });
        }
        let mut data = Vec::with_capacity(len as usize);
        let mut left = len;
        for i in 0..needed as usize {
            let segment_offset = u32_at(&list, i * 4);
            let segment = self.bins.cell(segment_offset, "big data segment")?;
            let take = left.min(DB_SEGMENT);
            let part = segment
                .get(..take as usize)
                .ok_or_else(|| HiveError::Cell {
                    what: "big data segment",
                    offset: file_offset(segment_offset),
                    reason: format!("segment holds {} bytes, {take} needed", segment.len()),
                })?;
            data.extend_from_slice(part);
            left -= take;
        }
        Ok(data)
    }
}

/// The name of a key value cell, and its flags.
fn parse_vk_name(cell: &[u8], offset: u32) -> Result<(String, u16), HiveError> {
    let bad = |reason: String| HiveError::Cell {
        what: "key value",
        offset: file_offset(offset),
        reason,
    };
    if cell.len() < 20 {
        return Err(bad(format!("{} bytes, a key value needs 20", cell.len())));
    }
    if cell.get(..2) != Some(b"vk".as_slice()) {
        return Err(bad("signature is not \"vk\"".into()));
    }
    let name_len = usize::from(u16_at(cell, 2));
    let flags = u16_at(cell, 16);
    let name_bytes = cell.get(20..20 + name_len).ok_or_else(|| {
        bad(format!(
            "name of {name_len} bytes does not fit in the {}-byte cell",
            cell.len()
        ))
    })?;
    Ok((decode_name(name_bytes, flags & 0x0001 != 0), flags))
}
