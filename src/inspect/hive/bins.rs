//! Positioned access to the hive bins data: the primary file's bytes after the base block, with
//! the pages recovered from the transaction logs laid over them, through a small page cache.
//!
//! Every cell is checked against the hive bin it lives in: the bin header is found by walking back
//! page by page from the cell (reading only the 32-byte headers of pages not already cached), is
//! validated (signature `hbin`, offset field equal to its own offset, size a positive multiple of
//! 4096 inside the hive bins data), and the cell must lie after the header and end inside the bin.
//! Validated bins are remembered, so later cells in the same bin cost no further reads.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};

use super::base_block::BASE_BLOCK_LEN;
use super::error::HiveError;
use super::log::{Overlay, CHUNK};
use crate::inspect::image::ReadAt;

/// Unit of reading and caching.
pub const PAGE: u32 = 4096;
/// Length of a hive bin header.
const BIN_HEADER: u32 = 32;
/// How many pages the cache keeps (1 MiB): enough for the cells of a few lookups.
const CACHE_PAGES: usize = 256;
/// Largest value data accepted (Windows limits values to about 1 MiB in practice).
pub const MAX_VALUE_DATA: u32 = 64 << 20;
/// Largest cell accepted: the largest value data accepted plus the size field, rounded to 8.
pub const MAX_CELL: u32 = MAX_VALUE_DATA + 8;
/// Largest hive bin accepted: one holding the largest cell (Windows sizes a bin larger than 4 KiB
/// to fit the cell it was made for). It also bounds the walk back from a cell to its bin header.
pub const MAX_BIN: u32 = (MAX_CELL + BIN_HEADER).div_ceil(PAGE) * PAGE;
/// How many validated hive bins are remembered before the memory is cleared.
const KNOWN_BINS: usize = 1 << 16;

/// The hive bins data of one hive, read lazily.
pub struct Bins {
    primary: Arc<dyn ReadAt>,
    /// Size of the hive bins data in bytes (after any growth recorded in the logs).
    size: u32,
    overlay: Overlay,
    cache: Mutex<PageCache>,
    /// Validated hive bins: start → size (hive bins offsets).
    known_bins: Mutex<BTreeMap<u32, u32>>,
}

#[derive(Default)]
struct PageCache {
    pages: HashMap<u32, Arc<Vec<u8>>>,
    order: VecDeque<u32>,
}

/// A validated hive bin: `start..end` in the hive bins data.
#[derive(Clone, Copy)]
struct HiveBin {
    start: u32,
    end: u64,
}

impl Bins {
    pub fn new(primary: Arc<dyn ReadAt>, size: u32, overlay: Overlay) -> Bins {
        Bins {
            primary,
            size,
            overlay,
            cache: Mutex::new(PageCache::default()),
            known_bins: Mutex::new(BTreeMap::new()),
        }
    }

    /// Size of the hive bins data in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Fill `buf` with the hive bins data at `bins_offset`: each 512-byte chunk from the
    /// recovered log pages when a log supplied it, otherwise from the primary file. A chunk that
    /// neither holds is damage (a truncated primary file), never zeros.
    fn fill(&self, bins_offset: u64, buf: &mut [u8]) -> Result<(), HiveError> {
        let primary_size = self.primary.size();
        // A run of bytes still to be read from the primary file: (offset in buf, length).
        let mut run: Option<(usize, usize)> = None;
        let mut done = 0usize;
        while done < buf.len() {
            let at = bins_offset + done as u64;
            let chunk = at / CHUNK;
            let within = (at % CHUNK) as usize;
            let take = (CHUNK as usize - within).min(buf.len() - done);
            if let Some(recovered) = self.overlay.chunk(chunk) {
                self.read_primary(bins_offset, buf, run.take(), primary_size)?;
                let src = recovered
                    .get(within..within + take)
                    .ok_or_else(|| slice_error(at))?;
                buf.get_mut(done..done + take)
                    .ok_or_else(|| slice_error(at))?
                    .copy_from_slice(src);
            } else {
                run = Some(match run {
                    Some((start, len)) => (start, len + take),
                    None => (done, take),
                });
            }
            done += take;
        }
        self.read_primary(bins_offset, buf, run, primary_size)
    }

    /// Read one run of `buf` (offset, length) from the primary file.
    fn read_primary(
        &self,
        bins_offset: u64,
        buf: &mut [u8],
        run: Option<(usize, usize)>,
        primary_size: u64,
    ) -> Result<(), HiveError> {
        let Some((start, len)) = run else {
            return Ok(());
        };
        let file_offset = BASE_BLOCK_LEN + bins_offset + start as u64;
        let dst = buf
            .get_mut(start..start + len)
            .ok_or_else(|| slice_error(bins_offset))?;
        if file_offset + len as u64 > primary_size {
            // The first byte the primary file lacks, for the message.
            let missing = file_offset.max(primary_size);
            return Err(HiveError::Io {
                what: "hive bins data",
                offset: missing,
                len: (file_offset + len as u64 - missing) as usize,
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the primary file ends at {primary_size:#x} and no transaction log entry supplies these bytes: truncated hive"
                    ),
                ),
            });
        }
        self.primary
            .read_exact_at(dst, file_offset)
            .map_err(|source| HiveError::Io {
                what: "hive bins data",
                offset: file_offset,
                len,
                source,
            })
    }

    /// The cached page `index`, if it is cached.
    fn cached(&self, index: u32) -> Option<Arc<Vec<u8>>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.pages.get(&index).cloned()
    }

    /// One 4 KiB page of hive bins data (index = bins offset / 4096).
    fn page(&self, index: u32) -> Result<Arc<Vec<u8>>, HiveError> {
        if let Some(page) = self.cached(index) {
            return Ok(page);
        }
        let mut page = vec![0u8; PAGE as usize];
        self.fill(u64::from(index) * u64::from(PAGE), &mut page)?;
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
        let mut pos = u64::from(offset);
        while pos < end {
            let index = u32::try_from(pos / u64::from(PAGE)).map_err(|_| slice_error(pos))?;
            let page = self.page(index)?;
            let within = (pos % u64::from(PAGE)) as usize;
            let take = ((end - pos) as usize).min(PAGE as usize - within);
            let bytes = page
                .get(within..within + take)
                .ok_or_else(|| slice_error(pos))?;
            out.extend_from_slice(bytes);
            pos += take as u64;
        }
        Ok(out)
    }

    /// The 32-byte header candidate at the start of page `index`: from the cache when the page
    /// is there, otherwise read on its own (without caching the page).
    fn page_head(&self, index: u32) -> Result<[u8; BIN_HEADER as usize], HiveError> {
        let mut head = [0u8; BIN_HEADER as usize];
        match self.cached(index) {
            Some(page) => head.copy_from_slice(
                page.get(..BIN_HEADER as usize)
                    .ok_or_else(|| slice_error(u64::from(index) * u64::from(PAGE)))?,
            ),
            None => self.fill(u64::from(index) * u64::from(PAGE), &mut head)?,
        }
        Ok(head)
    }

    /// The hive bin that holds the cell at `offset`: a remembered one, or the first valid bin
    /// header found walking back page by page (at most [`MAX_BIN`] bytes, and never past the
    /// end of a remembered bin, where the next bin's header must be).
    fn bin_of(&self, offset: u32, what: &'static str) -> Result<HiveBin, HiveError> {
        let mut floor = 0u32;
        {
            let known = self.known_bins.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((&start, &size)) = known.range(..=offset).next_back() {
                let end = u64::from(start) + u64::from(size);
                if end > u64::from(offset) {
                    return Ok(HiveBin { start, end });
                }
                // `end` ≤ offset < u32::MAX here.
                floor = end as u32;
            }
        }
        let bad_bin = |at: u32, reason: String| HiveError::Cell {
            what: "hive bin",
            offset: BASE_BLOCK_LEN + u64::from(at),
            reason,
        };
        let mut index = offset / PAGE;
        loop {
            let at = index * PAGE;
            let head = self.page_head(index)?;
            if head.get(..4) == Some(b"hbin".as_slice()) {
                let bin = self.check_bin_header(at, &head)?;
                if bin.end <= u64::from(offset) {
                    return Err(bad_bin(
                        u32::try_from(bin.end).unwrap_or(u32::MAX),
                        format!(
                            "signature is not \"hbin\" where the hive bin at {:#x} ends, so the {what} cell at {:#x} is in no hive bin",
                            BASE_BLOCK_LEN + u64::from(at),
                            BASE_BLOCK_LEN + u64::from(offset)
                        ),
                    ));
                }
                let mut known = self.known_bins.lock().unwrap_or_else(|p| p.into_inner());
                if known.len() >= KNOWN_BINS {
                    known.clear();
                }
                // `end - start` ≤ MAX_BIN, checked by check_bin_header.
                known.insert(bin.start, (bin.end - u64::from(bin.start)) as u32);
                return Ok(bin);
            }
            if at <= floor {
                return Err(bad_bin(
                    at,
                    format!(
                        "signature is not \"hbin\" (the {what} cell at {:#x} has no hive bin header before it)",
                        BASE_BLOCK_LEN + u64::from(offset)
                    ),
                ));
            }
            if offset - at >= MAX_BIN {
                return Err(HiveError::Limit {
                    what: "distance from a cell back to its hive bin header",
                    offset: BASE_BLOCK_LEN + u64::from(offset),
                    limit: u64::from(MAX_BIN),
                });
            }
            index -= 1;
        }
    }

    /// Validate the hive bin header `head` found at hive bins offset `at`.
    fn check_bin_header(&self, at: u32, head: &[u8]) -> Result<HiveBin, HiveError> {
        let bad = |reason: String| HiveError::Cell {
            what: "hive bin",
            offset: BASE_BLOCK_LEN + u64::from(at),
            reason,
        };
        let field = |i: usize| {
            head.get(i..i + 4)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let (own_offset, size) = (field(4), field(8));
        if own_offset != at {
            return Err(bad(format!(
                "offset field {own_offset:#x} is not the bin's own offset {at:#x}"
            )));
        }
        if size < PAGE || !size.is_multiple_of(PAGE) {
            return Err(bad(format!(
                "size {size} is not a positive multiple of 4096"
            )));
        }
        if size > MAX_BIN {
            return Err(HiveError::Limit {
                what: "hive bin size",
                offset: BASE_BLOCK_LEN + u64::from(at),
                limit: u64::from(MAX_BIN),
            });
        }
        let end = u64::from(at) + u64::from(size);
        if end > u64::from(self.size) {
            return Err(bad(format!(
                "size {size} reaches past the hive bins data ({} bytes)",
                self.size
            )));
        }
        Ok(HiveBin { start: at, end })
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
        if offset < BIN_HEADER {
            return Err(bad(format!(
                "cell offset {offset:#x} points into the first hive bin header"
            )));
        }
        let size_field = self.read(offset, 4, what)?;
        let raw = match size_field.as_slice() {
            [a, b, c, d] => i32::from_le_bytes([*a, *b, *c, *d]),
            _ => return Err(slice_error(u64::from(offset))),
        };
        if raw >= 0 {
            return Err(bad(format!("cell is not allocated (size field {raw})")));
        }
        let size = raw.unsigned_abs();
        if size < 8 {
            return Err(bad(format!("cell size {size} is smaller than 8 bytes")));
        }
        let end = u64::from(offset) + u64::from(size);
        if end > u64::from(self.size) {
            return Err(bad(format!(
                "cell of {size} bytes at hive bins offset {offset:#x} reaches past the hive bins data ({} bytes)",
                self.size
            )));
        }
        if size > MAX_CELL {
            return Err(HiveError::Limit {
                what: "cell size",
                offset: at,
                limit: u64::from(MAX_CELL),
            });
        }
        let bin = self.bin_of(offset, what)?;
        if offset < bin.start + BIN_HEADER {
            return Err(bad(format!(
                "cell offset {offset:#x} points into the header of the hive bin at {:#x}",
                BASE_BLOCK_LEN + u64::from(bin.start)
            )));
        }
        if end > bin.end {
            return Err(bad(format!(
                "cell of {size} bytes reaches past the end of its hive bin (at {:#x}, {} bytes)",
                BASE_BLOCK_LEN + u64::from(bin.start),
                bin.end - u64::from(bin.start)
            )));
        }
        // offset + 4 ≤ end ≤ u32 range (checked against the hive bins size above).
        self.read(offset + 4, size - 4, what)
    }
}

/// An internal slicing inconsistency, reported as an I/O error rather than a panic.
fn slice_error(bins_offset: u64) -> HiveError {
    HiveError::Io {
        what: "hive bins data",
        offset: BASE_BLOCK_LEN + bins_offset,
        len: 0,
        source: io::Error::other("internal range error"),
    }
}
