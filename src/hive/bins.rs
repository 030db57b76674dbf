//! Positioned access to the hive bins data: the primary file's bytes after the base block, with
//! the pages recovered from the transaction logs laid over them, through a small page cache.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::base_block::BASE_BLOCK_LEN;
use super::error::HiveError;
use super::log::Overlay;
use crate::image::ReadAt;

/// Unit of reading and caching.
pub const PAGE: u32 = 4096;
/// How many pages the cache keeps (1 MiB): enough for the cells of a few lookups.
const CACHE_PAGES: usize = 256;

/// The hive bins data of one hive, read lazily.
pub struct Bins {
    primary: Arc<dyn ReadAt>,
    /// Size of the hive bins data in bytes (after any growth recorded in the logs).
    size: u32,
    overlay: Overlay,
    cache: Mutex<PageCache>,
}

#[derive(Default)]
struct PageCache {
    pages: HashMap<u32, Arc<Vec<u8>>>,
    order: VecDeque<u32>,
}

impl Bins {
    pub fn new(primary: Arc<dyn ReadAt>, size: u32, overlay: Overlay) -> Bins {
        Bins {
            primary,
            size,
            overlay,
            cache: Mutex::new(PageCache::default()),
        }
    }

    /// Size of the hive bins data in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// One 4 KiB page of hive bins data (index = bins offset / 4096).
    fn page(&self, index: u32) -> Result<Arc<Vec<u8>>, HiveError> {
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(page) = cache.pages.get(&index) {
                return Ok(page.clone());
            }
        }
        let bins_offset = u64::from(index) * u64::from(PAGE);
        let file_offset = BASE_BLOCK_LEN + bins_offset;
        let mut page = vec![0u8; PAGE as usize];
        // The part of the page the primary file holds (all of it, unless the logs grew the hive).
        let in_primary = self
            .primary
            .size()
            .saturating_sub(file_offset)
            .min(u64::from(PAGE)) as usize;
        if in_primary > 0 {
            if let Some(dst) = page.get_mut(..in_primary) {
                self.primary
                    .read_exact_at(dst, file_offset)
                    .map_err(|source| HiveError::Io {
                        what: "hive bins data",
                        offset: file_offset,
                        len: in_primary,
                        source,
                    })?;
            }
        }
        self.overlay.apply(bins_offset, &mut page);
        let page = Arc::new(page);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.order.len() >= CACHE_PAGES {
            if let Some(old) = cache.order.pop_front() {
                cache.pages.remove(&old);
            }
        }
        cache.order.push_back(index);
        cache.pages.insert(index, page.clone());
        Ok(page)
    }

    /// `len` bytes at `offset` in the hive bins data; `what` names the structure for errors.
    pub fn read(&self, offset: u32, len: u32, what: &'static str) -> Result<Vec<u8>, HiveError> {
        let end = u64::from(offset) + u64::from(len);
        if end > u64::from(self.size) {
            return Err(HiveError::Cell {
                what,
                offset: BASE_BLOCK_LEN + u64::from(offset),
                reason: format!(
                    "{len} bytes at hive bins offset {offset:#x} reach past the hive bins data ({} bytes)",
                    self.size
                ),
            });
        }
        // Grows with the data actually read, never ahead of it.
        let mut out = Vec::with_capacity((len as usize).min(PAGE as usize * 4));
        let mut pos = offset;
        let mut left = len;
        while left > 0 {
            let page = self.page(pos / PAGE)?;
            let within = (pos % PAGE) as usize;
            let take = (left as usize).min(PAGE as usize - within);
            let bytes = page
                .get(within..within + take)
                .ok_or_else(|| HiveError::Cell {
                    what,
                    offset: BASE_BLOCK_LEN + u64::from(pos),
                    reason: "page slice out of range".into(),
                })?;
            out.extend_from_slice(bytes);
            pos += take as u32;
            left -= take as u32;
        }
        Ok(out)
    }

    /// The data of the allocated cell at `offset` (without its 4-byte size field).
    pub fn cell(&self, offset: u32, what: &'static str) -> Result<Vec<u8>, HiveError> {
        let at = BASE_BLOCK_LEN + u64::from(offset);
        let bad = |reason: String| HiveError::Cell {
            what,
            offset: at,
            reason,
        };
        if offset == u32::MAX {
            return Err(bad("offset 0xFFFFFFFF points nowhere".into()));
        }
        if !offset.is_multiple_of(8) {
            return Err(bad(format!(
                "cell offset {offset:#x} is not a multiple of 8"
            )));
        }
        if offset < 32 {
            return Err(bad(format!(
                "cell offset {offset:#x} points into the first hive bin header"
            )));
        }
        let size_field = self.read(offset, 4, what)?;
        let raw = i32::from_le_bytes([size_field[0], size_field[1], size_field[2], size_field[3]]);
        if raw >= 0 {
            return Err(bad(format!("cell is not allocated (size field {raw})")));
        }
        let size = raw.unsigned_abs();
        if size < 8 {
            return Err(bad(format!("cell size {size} is smaller than 8 bytes")));
        }
        if u64::from(offset) + u64::from(size) > u64::from(self.size) {
            return Err(bad(format!(
                "cell of {size} bytes at hive bins offset {offset:#x} reaches past the hive bins data ({} bytes)",
                self.size
            )));
        }
        self.read(offset + 4, size - 4, what)
    }
}
