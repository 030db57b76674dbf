//! The command line: clap definitions, global options, dispatch and exit codes.
//!
//! Exit codes: 0 success, 1 runtime error, 2 usage error, 3 `convert`: the plan is blocked.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit code for a runtime error.
pub const EXIT_ERROR: i32 = 1;
/// Exit code for a usage error (clap uses it too).
pub const EXIT_USAGE: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "virtio-migrate",
    version,
    about = "Find Windows guests still on IDE disks or emulated NICs, check their virtio drivers offline, and switch them to virtio safely"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// libvirt connection URI (default: $LIBVIRT_DEFAULT_URI, else qemu:///system)
    #[arg(short = 'c', long = "connect", global = true, value_name = "URI")]
    pub connect: Option<String>,
    /// Print one JSON document instead of the human report
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail on stderr
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When to colour the output (NO_COLOR is honoured with auto)
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every domain and find the Windows guests still on IDE/SATA disks or emulated NICs
    Scan(crate::scan::ScanArgs),
    /// Show what a disk image holds and whether its Windows can boot from virtio: layers,
    /// partitions, NTFS volumes, the Windows root, every driver check and the hazards
    Inspect(crate::inspect::InspectArgs),
    /// Switch one domain to virtio: plan, back up, shut down, define, cold start, verify, roll back
    /// on failure; with --dry-run show the plan and the diff only
    Convert(crate::convert::ConvertArgs),
    /// Restore a backed-up domain definition, or list the backups
    Rollback(crate::lifecycle::cli::RollbackArgs),
}

impl GlobalArgs {
    /// The URI to connect to: `-c`, else `LIBVIRT_DEFAULT_URI`, else `qemu:///system`.
    pub fn uri(&self) -> String {
        self.connect
            .clone()
            .or_else(|| {
                std::env::var("LIBVIRT_DEFAULT_URI")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| "qemu:///system".to_string())
    }
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
    match &cli.command {
        Command::Scan(args) => crate::scan::run(&cli.global, args),
        Command::Convert(args) => crate::convert::run(&cli.global, args),
        Command::Inspect(args) => crate::inspect::run(args, &cli.global),
        Command::Rollback(args) => crate::lifecycle::cli::run_rollback(&cli.global, args),
    }
}
