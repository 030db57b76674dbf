//! virtio-migrate: find Windows guests on a libvirt host that still boot from an emulated IDE/SATA
//! disk or use an emulated NIC, decide offline (from the disk image) whether the virtio drivers are
//! boot-ready, and switch the domain definition to virtio safely.
//!
//! Three pipelines, with the command line and the reports at the edge:
//! - `image` (read-only, hostile input): raw/qcow2 → partitions → NTFS → registry → verdict;
//! - `plan` (pure): domain XML + guest facts + options → plan and new XML;
//! - `lifecycle` (effects): everything that changes a host.
#![forbid(unsafe_code)]

// The NTFS reader runs the `ntfs` crate under `catch_unwind` (it panics on some malformed index
// entries) and a scan gives a guest whose inspection panicked an `unknown` verdict: both need
// unwinding panics. A build with `panic = "abort"` would turn a broken image into a dead scan.
#[cfg(panic = "abort")]
compile_error!("virtio-migrate must be built with panic = \"unwind\" (see src/lib.rs)");

pub mod cli;
pub mod convert;
pub mod disk_order;
pub mod domain;
pub mod guest;
pub mod guestfs;
pub mod hive;
pub mod host;
pub mod image;
pub mod inspect;
pub mod lifecycle;
pub mod plan;
pub mod report;
pub mod rewrite;
pub mod scan;
pub mod validate;
pub mod verdict;
pub mod windows;
pub mod workers;
pub mod xmldiff;

/// Entry points shared by the fuzz targets and the corpus replay test.
#[doc(hidden)]
pub mod fuzzing;
