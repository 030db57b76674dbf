//! virtio-migrate: find Windows guests on a libvirt host that still boot from an emulated IDE/SATA
//! disk or use an emulated NIC, decide offline (from the disk image) whether the virtio drivers are
//! boot-ready, and switch the domain definition to virtio safely.
//!
//! Three pipelines over one domain model, with the command line and the reports at the edge:
//! - [`domain`] (pure): what one libvirt domain XML says — devices, boot disk, machine, hints;
//! - [`inspect`] (read-only, hostile input): image → partitions → NTFS → hives → Windows facts →
//!   verdict;
//! - [`plan`] (pure): domain XML + verdict + options → plan, new XML and diff;
//! - [`host`] (effects): the libvirt connection and the lifecycle, the only code that changes a
//!   host;
//! - [`cli`]: one file per subcommand, joining the pipelines and rendering their reports.
//!
//! Dependencies point one way: `cli` → `host`, `plan`, `inspect` → `domain`; `plan` reads the
//! verdict types of `inspect`; nothing imports `cli`, and `domain`, `inspect`, `plan` never import
//! `host`.
#![forbid(unsafe_code)]

// The NTFS reader runs the `ntfs` crate under `catch_unwind` (it panics on some malformed index
// entries) and a scan gives a guest whose inspection panicked an `unknown` verdict: both need
// unwinding panics. A build with `panic = "abort"` would turn a broken image into a dead scan.
#[cfg(panic = "abort")]
compile_error!("virtio-migrate must be built with panic = \"unwind\" (see src/lib.rs)");

pub mod cli;
pub mod domain;
pub mod host;
pub mod inspect;
pub mod plan;
pub mod trace;

/// Entry points shared by the fuzz targets and the corpus replay test (the `fuzzing` feature:
/// the shipped binary does not carry them).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
