//! The inspect pipeline (read-only, hostile input): a guest's disk image → partitions → NTFS →
//! registry hives → Windows facts → the readiness verdict per bus and NIC.
//!
//! - [`image`]: host files (counted, budgeted reads), raw/qcow2 and backing chains, MBR/GPT,
//!   NTFS, the Windows system root;
//! - [`hive`]: the registry hive reader (lazy, with log replay);
//! - [`guestfs`]: the guest file system as the verdict sees it (a trait: an NTFS volume, or a
//!   host directory in tests);
//! - [`pe`]: what a driver file is (PE machine, subsystem, embedded signature and its signer,
//!   file version), read lazily from the guest file system;
//! - [`windows`]: Windows facts from the hives (control set, version, architecture, …);
//! - [`verdict`]: the readiness rules, each check with its evidence, and the hazards;
//! - [`disk`]: one disk from image to Windows root, as data;
//! - [`guest`]: one guest's assessment from its domain facts (the boot disk found, read under a
//!   budget, in a watched worker) — the one place that joins the layers for a domain;
//! - [`workers`]: bounded parallel jobs with a deadline, so a hung image read never holds a scan.
//!
//! Owns: everything that reads guest data. May use: [`crate::domain`] (which disks a domain
//! has, its machine family). May not touch: libvirt ([`crate::host`]), the planner
//! ([`crate::plan`]) or the command line ([`crate::cli`]) — nothing here changes a host.
//!
//! One import cycle is left on purpose, because it is one structure: `image::partition` ↔
//! `image::mbr`/`image::gpt` (the partition table dispatches to its two formats, which return
//! its types; splitting the shared types out would scatter one concept over three files).

pub mod disk;
pub mod guest;
pub mod guestfs;
pub mod hive;
pub mod image;
pub mod pe;
pub mod verdict;
pub mod windows;
pub mod workers;
