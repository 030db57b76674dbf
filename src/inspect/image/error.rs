//! Why a disk image could not be opened or read: every variant names the file, and where the
//! problem sits in it when there is a place to point at.

use std::io;
use std::path::PathBuf;

/// An error from the image layer (raw files, qcow2 images and their backing chains).
///
/// Reads through [`ReadAt`](super::ReadAt) return `io::Error`; errors found by the image layer
/// are carried inside them (kind `InvalidData`) and can be recovered with [`ImageError::from_io`].
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be opened (missing, permission, a directory).
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A read of the host file failed.
    #[error("{}: reading {what} at offset {offset:#x}: {source}", path.display())]
    Read {
        path: PathBuf,
        offset: u64,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The file does not start with the qcow2 magic.
    #[error("{}: not a qcow2 image (first bytes {found:02x?}, expected \"QFI\\xfb\")", path.display())]
    NotQcow2 { path: PathBuf, found: Vec<u8> },
    /// A structure of the image is inconsistent: a header field out of range, a table outside
    /// the file, an entry pointing past the end.
    #[error("{}: corrupt qcow2 image at offset {offset:#x}: {what}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    /// The image is encrypted; its guest data cannot be read without the key.
    #[error("{}: the image is encrypted ({method}); encrypted images cannot be inspected", path.display())]
    Encrypted { path: PathBuf, method: String },
    /// The image uses something this reader deliberately does not implement.
    #[error("{}: unsupported: {what}", path.display())]
    Unsupported { path: PathBuf, what: String },
    /// A compressed cluster could not be decompressed into exactly one cluster.
    #[error("{}: compressed cluster at offset {offset:#x}: {what}", path.display())]
    Decompress {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    /// A format name that is neither `raw` nor `qcow2`.
    #[error("unsupported disk format {0:?} (supported: raw, qcow2)")]
    UnsupportedFormat(String),
    /// The backing file named by an image cannot be used.
    #[error("{}: backing file {backing:?}: {reason}", path.display())]
    Backing {
        path: PathBuf,
        backing: String,
        reason: String,
    },
    /// The backing chain has more images than allowed.
    #[error("{}: backing chain is longer than {limit} images", path.display())]
    ChainTooDeep { path: PathBuf, limit: usize },
    /// The backing chain comes back to an image already in it.
    #[error("{}: backing chain loops back to {}", path.display(), again.display())]
    ChainLoop { path: PathBuf, again: PathBuf },
}

impl ImageError {
    /// The image error carried inside an `io::Error` returned by a reader of this layer, if any.
    pub fn from_io(err: &io::Error) -> Option<&ImageError> {
        err.get_ref().and_then(|e| e.downcast_ref::<ImageError>())
    }
}

impl From<ImageError> for io::Error {
    fn from(err: ImageError) -> io::Error {
        let kind = match &err {
            ImageError::Open { source, .. } | ImageError::Read { source, .. } => source.kind(),
            ImageError::Unsupported { .. } | ImageError::UnsupportedFormat(_) => {
                io::ErrorKind::Unsupported
            }
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, err)
    }
}
