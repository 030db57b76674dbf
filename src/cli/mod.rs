//! The command line, at the edge of the three pipelines: clap definitions and dispatch, one
//! file per subcommand (its arguments, its `run`, and the rendering of its report).
//!
//! - [`common`]: the global options, the exit codes and the mapping of lifecycle results to them;
//! - [`report`]: tables, colour and the JSON/stdout helpers;
//! - [`lifecycle`]: the lifecycle options and glue shared by `convert`, `convert --all` and
//!   `rollback`;
//! - [`scan`], [`inspect`], [`convert`] (a dry run or one guest), [`convert_all`]
//!   (`convert --all`), [`rollback`].
//!
//! The commands import `common`, `report` and `lifecycle`, which import none of them; this file
//! imports every command to dispatch. `convert_all` uses `scan`'s host inventory and `convert`'s
//! planning; no command imports one that imports it back.
//! Nothing below `cli` (domain, inspect, plan, host) imports from here.
//!
//! Exit codes: 0 success, 1 runtime error, 2 usage error, 3 `convert`: the plan is blocked,
//! 4 `convert`: applied, failed verification and rolled back, 130 interrupted.

pub mod common;
pub mod convert;
pub mod convert_all;
pub mod inspect;
pub mod lifecycle;
pub mod report;
pub mod rollback;
pub mod scan;

use clap::{Parser, Subcommand};

pub use common::{ColorChoice, GlobalArgs, EXIT_ERROR, EXIT_USAGE};

#[derive(Debug, Parser)]
#[command(
    name = "virtio-migrate",
    version,
    long_version = env!("VIRTIO_MIGRATE_LONG_VERSION"),
    about = "Find Windows guests still on IDE disks or emulated NICs, check their virtio drivers offline, and switch them to virtio safely"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every domain and find the Windows guests still on IDE/SATA disks or emulated NICs
    Scan(scan::ScanArgs),
    /// Show what a disk image holds and whether its Windows can boot from virtio: layers,
    /// partitions, NTFS volumes, the Windows root, every driver check and the hazards
    Inspect(inspect::InspectArgs),
    /// Switch one domain to virtio: plan, back up, shut down, define, cold start, verify, roll back
    /// on failure; with --dry-run show the plan and the diff only
    Convert(convert::ConvertArgs),
    /// Restore a backed-up domain definition, or list the backups
    Rollback(rollback::RollbackArgs),
}

/// Parse the command line, run the command, and return the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line, whatever the causes carry (libvirt's and libxml2's messages hold newlines).
            let message = format!("{e:#}");
            let words: Vec<&str> = message.split_whitespace().collect();
            eprintln!("virtio-migrate: {}", words.join(" "));
            EXIT_ERROR
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    if cli.global.connect.len() > 1 && !matches!(cli.command, Command::Scan(_)) {
        eprintln!(
            "error: only scan takes -c/--connect more than once (one report for several hosts)\n\nFor more information, try '--help'."
        );
        return Ok(EXIT_USAGE);
    }
    match &cli.command {
        Command::Scan(args) => scan::run(&cli.global, args),
        Command::Convert(args) => {
            // (clap's `requires` counts the --all flag's default `false` as present, so checked
            // here.)
            if args.parallel.is_some() && !args.all {
                eprintln!("error: --parallel N needs --all\n\nFor more information, try '--help'.");
                return Ok(EXIT_USAGE);
            }
            if !args.only.is_empty() && !args.all {
                eprintln!(
                    "error: --only DOMAIN needs --all\n\nFor more information, try '--help'."
                );
                return Ok(EXIT_USAGE);
            }
            if args.all {
                convert_all::run_all(&cli.global, args)
            } else {
                convert::run(&cli.global, args)
            }
        }
        Command::Inspect(args) => inspect::run(args, &cli.global),
        Command::Rollback(args) => rollback::run_rollback(&cli.global, args),
    }
}
