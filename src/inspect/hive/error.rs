//! What went wrong reading a hive, and where.

use std::io;

/// An error reading a registry hive. Every variant names the byte offset in the file it concerns
/// (for cells: the offset in the primary file, i.e. 4096 + the cell's offset in the hive bins).
#[derive(Debug, thiserror::Error)]
pub enum HiveError {
    /// The underlying reader failed (short file, I/O error).
    #[error("cannot read {len} bytes of {what} at offset {offset:#x}: {source}")]
    Io {
        what: &'static str,
        offset: u64,
        len: usize,
        #[source]
        source: io::Error,
    },
    /// The base block (file header) is not a usable regf header.
    #[error("bad hive base block at offset {offset:#x}: {reason}")]
    BaseBlock { offset: u64, reason: String },
    /// A cell (key node, value, list, data) is malformed or points outside the hive bins.
    #[error("bad {what} cell at offset {offset:#x}: {reason}")]
    Cell {
        what: &'static str,
        offset: u64,
        reason: String,
    },
    /// A subkey list refers back to itself (directly or through an index root).
    #[error("cycle in the subkey lists: the list at offset {offset:#x} is reached twice")]
    Cycle { offset: u64 },
    /// A structure is larger than this reader accepts (protects memory and time).
    #[error("{what} at offset {offset:#x} exceeds the limit of {limit}")]
    Limit {
        what: &'static str,
        offset: u64,
        limit: u64,
    },
}
