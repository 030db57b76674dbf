//! `virtio-migrate scan`: every domain on a host, and which Windows guests still boot from an
//! emulated IDE/SATA disk or use an emulated NIC.
//!
//! The flow: open the host read-only → list (or look up) the domains → for each, the API facts
//! ([`DomainStatus`]) and the persistent definition parsed into [`DomainFacts`] → one
//! [`DomainEntry`] each → a table or one JSON document. A domain whose definition cannot be read or
//! parsed is reported with its error and the scan goes on.

use crate::cli::common::{GlobalArgs, EXIT_ERROR};
use crate::cli::report::{self, Cell, Palette, Table, Tone};
use crate::domain::{self, DiskBus, DomainFacts, ManagerKind};
use crate::host::{Access, DomainStatus, Host, HostError};
use crate::inspect::guest::{self, Budget, GuestVerdict};
use crate::inspect::verdict::{DriverVersion, Readiness};
use clap::Args;
use serde::Serialize;

/// Version of the JSON document `scan --json` prints. Raised on any incompatible change.
/// 2: the domains of each host under `hosts[]` (`uri`, `host`, `error`, `domains`, `summary`),
/// totals in the top-level `summary` (version 1 had one host's `uri`/`domains` at the top).
pub const SCHEMA_VERSION: u32 = 2;

/// Options of `virtio-migrate scan`.
#[derive(Debug, Clone, Args)]
pub struct ScanArgs {
    /// Scan only these domains (name, UUID or id, like virsh); default: every domain
    #[arg(value_name = "DOMAIN")]
    pub domains: Vec<String>,
    /// Under the table, list each domain's UUID, every disk and NIC, every Windows hint and the
    /// management layer's evidence
    #[arg(long)]
    pub details: bool,
    /// Do not read the candidates' disk images (no verdict columns: inventory only)
    #[arg(long)]
    pub no_inspect: bool,
    /// Inspect at most N disk images at a time
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// Also scan the hosts listed in FILE: one libvirt URI a line, `#` starts a comment
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub budget: crate::inspect::guest::BudgetArgs,
}

/// The offline verdict for one candidate, as `scan` shows it (`inspect` shows every check).
#[derive(Debug, Clone, Serialize)]
pub struct ScanVerdict {
    /// What the registry says the guest is (e.g. "Windows Server 2008 R2 …"), when read.
    pub windows: Option<String>,
    /// viostor: can the guest boot from virtio-blk?
    pub blk: Readiness,
    /// vioscsi: can the guest boot from virtio-scsi?
    pub scsi: Readiness,
    /// netkvm: will the virtio NIC get a driver?
    pub nic: Readiness,
    /// Each hazard found, with its evidence and remedy.
    pub hazards: Vec<ScanHazard>,
    /// One line per failed check and per hazard: what to do (inside the guest or on the host).
    pub remedies: Vec<String>,
    /// The virtio drivers' versions found (the guest's virtio-win build).
    pub driver_versions: Vec<DriverVersion>,
    /// Bytes read from the host's image files for this verdict.
    pub bytes_read: u64,
    pub wall_time_ms: u64,
}

/// One hazard in the scan report.
#[derive(Debug, Clone, Serialize)]
pub struct ScanHazard {
    pub kind: String,
    pub evidence: String,
    pub remedy: String,
}

impl ScanVerdict {
    fn from_guest(v: &GuestVerdict) -> ScanVerdict {
        let a = &v.assessment;
        ScanVerdict {
            windows: a.facts.as_ref().map(|f| f.summary()),
            blk: a.blk.clone(),
            scsi: a.scsi.clone(),
            nic: a.nic.clone(),
            hazards: a
                .hazards
                .iter()
                .map(|h| ScanHazard {
                    kind: h.kind().to_string(),
                    evidence: h.evidence().to_string(),
                    remedy: h.remedy(),
                })
                .collect(),
            remedies: a.remedies(),
            driver_versions: a
                .facts
                .as_ref()
                .map(|f| f.driver_versions.clone())
                .unwrap_or_default(),
            bytes_read: v.bytes_read,
            wall_time_ms: v.wall_time_ms,
        }
    }

    /// Nothing could be read: every target unknown, for `why`.
    fn unreadable(why: &str) -> ScanVerdict {
        let unknown = Readiness::Unknown {
            why: why.to_string(),
        };
        ScanVerdict {
            windows: None,
            blk: unknown.clone(),
            scsi: unknown.clone(),
            nic: unknown,
            hazards: Vec::new(),
            remedies: Vec::new(),
            driver_versions: Vec::new(),
            bytes_read: 0,
            wall_time_ms: 0,
        }
    }
}

/// Why a domain is a conversion candidate. A candidate has at least one reason and a Windows hint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CandidateReason {
    /// The boot disk is on the emulated IDE bus.
    IdeBootDisk { target: String },
    /// The boot disk is on the emulated SATA (AHCI) bus.
    SataBootDisk { target: String },
    /// A NIC is an emulated model, or has no model (QEMU then picks an emulated one).
    EmulatedNic {
        /// Index into the definition's `nics`.
        nic: usize,
        model: Option<String>,
    },
}

/// Everything `scan` reports about one domain.
///
/// The image inspection's verdict plugs in here: add `pub verdict: Option<Verdict>` (filled for
/// candidates whose boot disk could be read), and one `VERDICT` column in [`render_table`].
#[derive(Debug, Clone, Serialize)]
pub struct DomainEntry {
    /// Name, UUID, id, state and reason, persistence (from libvirt's API).
    #[serde(flatten)]
    pub status: DomainStatus,
    /// Windows-hinted and booting from IDE/SATA or with an emulated NIC.
    pub candidate: bool,
    /// Why it is a candidate (empty when it is not).
    pub candidate_reasons: Vec<CandidateReason>,
    /// The disk the guest boots from (a copy of `definition.disks[definition.boot_disk]`).
    pub boot_disk: Option<domain::Disk>,
    /// What the persistent definition says; `None` when it could not be read.
    pub definition: Option<DomainFacts>,
    /// Why the definition could not be read or parsed.
    pub error: Option<String>,
    /// The offline verdict read from the boot disk: for candidates, unless `--no-inspect`.
    pub verdict: Option<ScanVerdict>,
}

/// Counts for the summary line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanSummary {
    pub domains: usize,
    pub candidates: usize,
    /// Candidates whose boot disk is on IDE.
    pub ide_boot: usize,
    /// Candidates whose boot disk is on SATA.
    pub sata_boot: usize,
    /// Candidates with at least one emulated NIC.
    pub emulated_nic: usize,
    /// Domains whose definition could not be read.
    pub errors: usize,
}

/// The scan of one host.
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    /// The libvirt URI that was scanned.
    pub uri: String,
    /// Candidates first, then domains with errors, then the rest; by name within each group.
    pub domains: Vec<DomainEntry>,
    pub summary: ScanSummary,
}

/// One host of a scan: its report, or why it could not be scanned.
#[derive(Debug, Clone, Serialize)]
pub struct HostScan {
    /// The libvirt URI.
    pub uri: String,
    /// The URI's host (`local` for a URI without one), as the HOST column shows it.
    pub host: String,
    /// Why the host could not be scanned (unreachable, refused, …); its domains are then empty.
    pub error: Option<String>,
    pub domains: Vec<DomainEntry>,
    pub summary: ScanSummary,
}

/// Totals over every host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetSummary {
    pub hosts: usize,
    /// Hosts that could not be scanned.
    pub unreachable: usize,
    #[serde(flatten)]
    pub totals: ScanSummary,
}

/// The whole scan: what `--json` prints (one document, whatever the number of hosts).
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    pub schema_version: u32,
    pub hosts: Vec<HostScan>,
    pub summary: FleetSummary,
}

/// The host part of a libvirt URI (`qemu+ssh://root@kvm03:22/system` → `kvm03`), or `local`.
pub fn host_label(uri: &str) -> String {
    let authority = uri
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""))
        .unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        // [::1]:22
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    };
    if host.is_empty() {
        "local".to_string()
    } else {
        host.to_string()
    }
}

/// The URIs to scan: every `-c`, then the lines of `--hosts FILE`; the default URI if none.
fn scan_uris(global: &GlobalArgs, args: &ScanArgs) -> anyhow::Result<Vec<String>> {
    let mut uris = global.connect.clone();
    if let Some(path) = &args.hosts {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the host list {}: {e}", path.display()))?;
        for line in text.lines() {
            let uri = line.split('#').next().unwrap_or("").trim();
            if !uri.is_empty() {
                uris.push(uri.to_string());
            }
        }
        if uris.is_empty() {
            anyhow::bail!("the host list {} names no URI", path.display());
        }
    }
    if uris.is_empty() {
        uris.push(global.uri());
    }
    let mut seen = Vec::new();
    uris.retain(|u| {
        let new = !seen.contains(u);
        seen.push(u.clone());
        new
    });
    Ok(uris)
}

/// Most hosts scanned at the same time.
const HOSTS_AT_ONCE: usize = 8;

/// Scan one host: open it read-only, list, inspect the candidates.
fn scan_one(uri: &str, args: &ScanArgs, global: &GlobalArgs) -> HostScan {
    let verbose = global.verbose;
    // A host that does not answer within --connect-timeout is "not scanned" with the reason;
    // the other hosts' report goes on.
    let scanned = Host::open(uri, Access::ReadOnly)
        .map_err(|e| e.to_string())
        .and_then(|host| {
            let mut report = scan_host(&host, &args.domains, verbose).map_err(|e| e.to_string())?;
            if !args.no_inspect {
                add_verdicts(
                    &host,
                    &mut report,
                    usize::from(args.parallel),
                    args.budget.budget(),
                );
            }
            Ok((host, report))
        });
    match scanned {
        Ok((host, report)) => {
            warn_unfinished(&host, &report, global.quiet);
            HostScan {
                uri: uri.to_string(),
                host: host_label(uri),
                error: None,
                domains: report.domains,
                summary: report.summary,
            }
        }
        Err(e) => HostScan {
            uri: uri.to_string(),
            host: host_label(uri),
            error: Some(e.to_string()),
            domains: Vec::new(),
            summary: build_report(uri, Vec::new()).summary,
        },
    }
}

/// An unfinished conversion or rollback (from its journal) is worth a warning; only when the
/// state directory exists and can be read, so a scan needs no root.
fn warn_unfinished(host: &Host, report: &ScanReport, quiet: bool) {
    let state_dir = std::env::var_os("VIRTIO_MIGRATE_STATE_DIR")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(crate::host::lifecycle::DEFAULT_STATE_DIR));
    if quiet || std::fs::read_dir(&state_dir).is_err() {
        return;
    }
    for e in &report.domains {
        if let Ok(dom) = host.lookup(&e.status.uuid) {
            if let Some(w) = crate::host::lifecycle::unfinished_warning(&state_dir, &dom) {
                crate::errln!("{w}");
            }
        }
    }
}

/// Run `scan` on every host named (in parallel, one thread a host): print one report; exit 0,
/// or 1 when a host could not be scanned or some domain could not be read.
pub fn run(global: &GlobalArgs, args: &ScanArgs) -> anyhow::Result<i32> {
    let uris = scan_uris(global, args)?;
    let hosts: Vec<HostScan> = if uris.len() == 1 {
        let one = scan_one(&uris[0], args, global);
        // A single host that cannot be reached is the command's error, as before.
        if let Some(e) = &one.error {
            anyhow::bail!("{e}");
        }
        vec![one]
    } else {
        // At most HOSTS_AT_ONCE hosts at a time: each holds two connections (ssh sessions on a
        // remote URI) and its own image readers, and a --hosts file may list a whole zone.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let done: std::sync::Mutex<Vec<Option<HostScan>>> =
            std::sync::Mutex::new(vec![None; uris.len()]);
        let failed = |uri: &String| HostScan {
            uri: uri.clone(),
            host: host_label(uri),
            error: Some("internal error while scanning this host".into()),
            domains: Vec::new(),
            summary: build_report(uri, Vec::new()).summary,
        };
        std::thread::scope(|scope| {
            for _ in 0..uris.len().min(HOSTS_AT_ONCE) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(uri) = uris.get(i) else { break };
                    let scanned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        scan_one(uri, args, global)
                    }))
                    .unwrap_or_else(|_| failed(uri));
                    done.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(scanned);
                });
            }
        });
        let done = done.into_inner().unwrap_or_else(|p| p.into_inner());
        done.into_iter()
            .zip(&uris)
            .map(|(scan, uri)| scan.unwrap_or_else(|| failed(uri)))
            .collect()
    };
    let report = fleet_report(hosts);
    if global.json {
        report::print_json(&report)?;
    } else {
        let palette = Palette::for_stdout(global.color);
        report::print_stdout(&render_fleet(&report, &palette, args.details))?;
    }
    Ok(
        if report.summary.unreachable > 0 || report.summary.totals.errors > 0 {
            EXIT_ERROR
        } else {
            0
        },
    )
}

/// The document for `hosts`, with the totals. Hosts whose URIs share a host part (two local
/// URIs, two daemons on one machine) are shown by their whole URI instead.
pub fn fleet_report(mut hosts: Vec<HostScan>) -> FleetReport {
    let labels: Vec<String> = hosts.iter().map(|h| h.host.clone()).collect();
    for h in &mut hosts {
        if labels.iter().filter(|l| **l == h.host).count() > 1 {
            h.host = h.uri.clone();
        }
    }
    let mut totals = build_report("", Vec::new()).summary;
    for h in &hosts {
        totals.domains += h.summary.domains;
        totals.candidates += h.summary.candidates;
        totals.ide_boot += h.summary.ide_boot;
        totals.sata_boot += h.summary.sata_boot;
        totals.emulated_nic += h.summary.emulated_nic;
        totals.errors += h.summary.errors;
    }
    FleetReport {
        schema_version: SCHEMA_VERSION,
        summary: FleetSummary {
            hosts: hosts.len(),
            unreachable: hosts.iter().filter(|h| h.error.is_some()).count(),
            totals,
        },
        hosts,
    }
}

/// The human report of a scan: one host as [`render_human`]; several with a HOST column, each
/// host's notes and summary line, one line per host that could not be scanned, and the totals.
pub fn render_fleet(report: &FleetReport, palette: &Palette, details: bool) -> String {
    let as_report = |h: &HostScan| ScanReport {
        uri: h.uri.clone(),
        domains: h.domains.clone(),
        summary: h.summary.clone(),
    };
    if let [one] = report.hosts.as_slice() {
        if one.error.is_none() {
            return render_human(&as_report(one), palette, details);
        }
    }
    let reachable: Vec<&HostScan> = report.hosts.iter().filter(|h| h.error.is_none()).collect();
    let with_verdict = reachable
        .iter()
        .any(|h| h.domains.iter().any(|e| e.verdict.is_some()));
    let mut headers = vec!["HOST"];
    headers.extend(table_headers(with_verdict));
    let mut table = Table::new(&headers);
    for h in &reachable {
        for e in &h.domains {
            let mut row = vec![Cell::plain(h.host.clone())];
            row.extend(domain_row(e, with_verdict, headers.len() - 1));
            table.push(row);
        }
    }
    let mut out = table.render(palette);
    for h in &reachable {
        let notes = render_notes(&as_report(h), palette);
        if !notes.is_empty() {
            out.push('\n');
            out.push_str(&format!(
                "{} ({}):\n",
                palette.paint(&h.host, Tone::Strong),
                h.uri
            ));
            out.push_str(&notes);
        }
        if details {
            for e in &h.domains {
                out.push('\n');
                out.push_str(&format!("{} ", h.host));
                out.push_str(&render_details(e));
            }
        }
    }
    out.push('\n');
    for h in &report.hosts {
        match &h.error {
            Some(e) => out.push_str(&format!(
                "{}: {} {e}\n",
                palette.paint(&h.host, Tone::Strong),
                palette.paint("not scanned:", Tone::Bad)
            )),
            None => out.push_str(&format!("{}: {}\n", h.host, summary_line(&h.summary))),
        }
    }
    let s = &report.summary;
    out.push_str(&format!(
        "{} {} ({} not scanned): {}\n",
        s.hosts,
        plural(s.hosts, "host", "hosts"),
        s.unreachable,
        summary_line(&s.totals)
    ));
    out
}

/// Scan `specs` (names, UUIDs or ids), or every domain when `specs` is empty.
pub fn scan_host(host: &Host, specs: &[String], verbose: bool) -> Result<ScanReport, HostError> {
    let domains = if specs.is_empty() {
        host.list_domains()?
    } else {
        specs
            .iter()
            .map(|s| host.lookup(s))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut entries: Vec<DomainEntry> = Vec::with_capacity(domains.len());
    for d in &domains {
        // Listed a moment ago and gone now (a transient domain that stopped): not on the host.
        let skip = |e: &HostError| {
            if verbose {
                crate::errln!("virtio-migrate: skipped: {e}");
            }
        };
        let status = match host.status(d) {
            Ok(s) => s,
            Err(e @ HostError::Vanished { .. }) => {
                skip(&e);
                continue;
            }
            Err(e) => return Err(e),
        };
        if entries.iter().any(|e| e.status.uuid == status.uuid) {
            continue;
        }
        let xml = match host.inactive_xml(d) {
            Err(e @ HostError::Vanished { .. }) => {
                skip(&e);
                continue;
            }
            other => other.map_err(|e| e.to_string()),
        };
        entries.push(entry_from_xml(status, xml));
    }
    Ok(build_report(host.uri(), entries))
}

/// Read the boot disk of every candidate (at most `parallel` at a time) and attach the verdict.
/// A guest that cannot be inspected gets an `unknown` verdict; the scan always goes on.
pub fn add_verdicts(host: &Host, report: &mut ScanReport, parallel: usize, budget: Budget) {
    let wanted: Vec<usize> = report
        .domains
        .iter()
        .enumerate()
        .filter(|(_, e)| e.candidate && e.definition.is_some())
        .map(|(i, _)| i)
        .collect();
    let resolved: Vec<DomainFacts> = wanted
        .iter()
        .filter_map(|&i| report.domains[i].definition.as_ref())
        .map(|f| host.with_volume_paths(f))
        .collect();
    let facts: Vec<&DomainFacts> = resolved.iter().collect();
    let verdicts = match host.file_store() {
        Ok(store) => guest::assess_many_in(&store, &facts, parallel, budget),
        Err(e) => {
            // No way to read this host's images: every candidate is unknown, with the reason.
            let why = format!("images not readable: {e}");
            for &i in &wanted {
                if let Some(entry) = report.domains.get_mut(i) {
                    entry.verdict = Some(ScanVerdict::unreadable(&why));
                }
            }
            return;
        }
    };
    for (i, v) in wanted.into_iter().zip(verdicts) {
        if let Some(e) = report.domains.get_mut(i) {
            e.verdict = Some(ScanVerdict::from_guest(&v));
        }
    }
}

/// One domain's entry from its API facts and its definition (or the error reading it).
pub fn entry_from_xml(status: DomainStatus, xml: Result<String, String>) -> DomainEntry {
    let parsed = xml.and_then(|x| domain::parse_domain(&x).map_err(|e| e.to_string()));
    match parsed {
        Ok(mut facts) => {
            add_api_evidence(&mut facts, &status);
            let reasons = candidate_reasons(&facts);
            DomainEntry {
                candidate: !reasons.is_empty(),
                candidate_reasons: reasons,
                boot_disk: facts.boot_disk().cloned(),
                definition: Some(facts),
                error: None,
                verdict: None,
                status,
            }
        }
        Err(error) => DomainEntry {
            status,
            candidate: false,
            candidate_reasons: Vec::new(),
            boot_disk: None,
            definition: None,
            error: Some(error),
            verdict: None,
        },
    }
}

/// Evidence of a management layer that only the API shows: CloudStack makes its guests transient
/// (it undefines and re-creates them from its database at every start).
fn add_api_evidence(facts: &mut DomainFacts, status: &DomainStatus) {
    if let Some(m) = facts.manager.as_mut() {
        if m.kind == ManagerKind::CloudStack && !status.persistent {
            m.evidence.push(
                "transient domain (CloudStack re-creates it from its database at every start)"
                    .to_string(),
            );
        }
    }
}

/// The candidate reasons, from the domain's own candidacy rule.
pub fn candidate_reasons(facts: &DomainFacts) -> Vec<CandidateReason> {
    let c = facts.candidacy();
    if !c.is_candidate {
        return Vec::new();
    }
    let target = facts
        .boot_disk()
        .map(|d| d.target.clone())
        .unwrap_or_default();
    let mut reasons = Vec::new();
    match c.boot_disk_bus {
        Some(DiskBus::Ide) => reasons.push(CandidateReason::IdeBootDisk { target }),
        Some(DiskBus::Sata) => reasons.push(CandidateReason::SataBootDisk { target }),
        _ => {}
    }
    for i in c.emulated_nics {
        reasons.push(CandidateReason::EmulatedNic {
            nic: i,
            model: facts.nics.get(i).and_then(|n| n.model.clone()),
        });
    }
    reasons
}

/// Order the entries (candidates, then errors, then the rest; by name) and count them.
pub fn build_report(uri: &str, mut entries: Vec<DomainEntry>) -> ScanReport {
    let group = |e: &DomainEntry| match (e.candidate, e.error.is_some()) {
        (true, _) => 0,
        (false, true) => 1,
        (false, false) => 2,
    };
    entries.sort_by(|a, b| {
        group(a)
            .cmp(&group(b))
            .then_with(|| a.status.name.cmp(&b.status.name))
    });
    let has = |e: &DomainEntry, f: fn(&CandidateReason) -> bool| e.candidate_reasons.iter().any(f);
    let summary = ScanSummary {
        domains: entries.len(),
        candidates: entries.iter().filter(|e| e.candidate).count(),
        ide_boot: entries
            .iter()
            .filter(|e| has(e, |r| matches!(r, CandidateReason::IdeBootDisk { .. })))
            .count(),
        sata_boot: entries
            .iter()
            .filter(|e| has(e, |r| matches!(r, CandidateReason::SataBootDisk { .. })))
            .count(),
        emulated_nic: entries
            .iter()
            .filter(|e| has(e, |r| matches!(r, CandidateReason::EmulatedNic { .. })))
            .count(),
        errors: entries.iter().filter(|e| e.error.is_some()).count(),
    };
    ScanReport {
        uri: uri.to_string(),
        domains: entries,
        summary,
    }
}

/// The human report: the table, notes for what needs care, details with `--details`, the summary line.
pub fn render_human(report: &ScanReport, palette: &Palette, details: bool) -> String {
    let mut out = render_table(report, palette);
    let notes = render_notes(report, palette);
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes);
    }
    if details {
        for e in &report.domains {
            out.push('\n');
            out.push_str(&render_details(e));
        }
    }
    out.push('\n');
    out.push_str(&summary_line(&report.summary));
    out.push('\n');
    out
}

/// The one-line summary: `12 domains, 8 candidates (6 IDE boot, 2 SATA boot, 6 emulated NIC)`.
pub fn summary_line(s: &ScanSummary) -> String {
    let mut line = format!(
        "{} {}, {} {}",
        s.domains,
        plural(s.domains, "domain", "domains"),
        s.candidates,
        plural(s.candidates, "candidate", "candidates")
    );
    if s.candidates > 0 {
        line.push_str(&format!(
            " ({} IDE boot, {} SATA boot, {} emulated NIC)",
            s.ide_boot, s.sata_boot, s.emulated_nic
        ));
    }
    if s.errors > 0 {
        line.push_str(&format!(
            ", {} {} could not be read",
            s.errors,
            plural(s.errors, "domain", "domains")
        ));
    }
    line
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// The table's column names.
fn table_headers(with_verdict: bool) -> Vec<&'static str> {
    let mut headers = vec!["CANDIDATE", "NAME"];
    if with_verdict {
        headers.extend(["VIOSTOR", "VIOSCSI", "NETKVM", "HAZARDS"]);
    }
    headers.extend([
        "STATE",
        "PERSISTENCE",
        "PLATFORM",
        "WINDOWS HINTS",
        "BOOT DISK",
        "NICS",
        "MANAGED BY",
    ]);
    headers
}

/// The aligned table, one row per domain.
pub fn render_table(report: &ScanReport, palette: &Palette) -> String {
    // The verdict columns appear when images were inspected (not with --no-inspect).
    let with_verdict = report.domains.iter().any(|e| e.verdict.is_some());
    let headers = table_headers(with_verdict);
    let mut table = Table::new(&headers);
    for e in &report.domains {
        table.push(domain_row(e, with_verdict, headers.len()));
    }
    table.render(palette)
}

/// One domain's cells, `columns` of them.
fn domain_row(e: &DomainEntry, with_verdict: bool, columns: usize) -> Vec<Cell> {
    let state = Cell::plain(e.status.state_display());
    let persistence = Cell::plain(e.status.persistence_word());
    let mut row = vec![];
    let Some(f) = &e.definition else {
        // Unknown without the definition; the note under the table says why.
        row.push(Cell::toned("error", Tone::Bad));
        row.push(Cell::plain(e.status.name.clone()));
        if with_verdict {
            row.extend(std::iter::repeat_n(Cell::plain("?"), 4));
        }
        row.push(state);
        row.push(persistence);
        row.resize(columns, Cell::plain("?"));
        return row;
    };
    row.push(candidate_cell(e));
    row.push(Cell::plain(e.status.name.clone()));
    if with_verdict {
        match &e.verdict {
            Some(v) => {
                row.push(readiness_cell(&v.blk));
                row.push(readiness_cell(&v.scsi));
                row.push(readiness_cell(&v.nic));
                row.push(if v.hazards.is_empty() {
                    Cell::plain("0")
                } else {
                    Cell::toned(v.hazards.len().to_string(), Tone::Warn)
                });
            }
            None => row.extend(std::iter::repeat_n(Cell::toned("-", Tone::Dim), 4)),
        }
    }
    row.extend([
        state,
        persistence,
        Cell::plain(platform(f)),
        Cell::plain(hints_summary(f)),
        boot_disk_cell(e),
        nics_cell(f),
        match &f.manager {
            Some(m) => Cell::toned(m.kind.name(), Tone::Warn),
            None => Cell::plain("-"),
        },
    ]);
    row
}

fn readiness_cell(r: &Readiness) -> Cell {
    match r {
        Readiness::Ready => Cell::toned("ready", Tone::Good),
        Readiness::NotReady { .. } => Cell::toned("NOT READY", Tone::Bad),
        Readiness::Unknown { .. } => Cell::toned("unknown", Tone::Warn),
    }
}

fn candidate_cell(e: &DomainEntry) -> Cell {
    if !e.candidate {
        return Cell::toned("no", Tone::Dim);
    }
    let mut parts = Vec::new();
    let mut tone = Tone::Warn;
    for r in &e.candidate_reasons {
        match r {
            CandidateReason::IdeBootDisk { .. } => {
                parts.push("ide boot");
                tone = Tone::Bad;
            }
            CandidateReason::SataBootDisk { .. } => parts.push("sata boot"),
            CandidateReason::EmulatedNic { .. } => {
                if !parts.contains(&"nic") {
                    parts.push("nic");
                }
            }
        }
    }
    Cell::toned(parts.join(", "), tone)
}

/// `kvm i440fx bios`: domain type, machine family, firmware.
fn platform(f: &DomainFacts) -> String {
    let family = match f.machine_family {
        domain::MachineFamily::I440fx => "i440fx",
        domain::MachineFamily::Q35 => "q35",
        domain::MachineFamily::Other => f.machine.as_deref().unwrap_or("?"),
    };
    let firmware = match f.firmware {
        domain::Firmware::Bios => "bios",
        domain::Firmware::Uefi => "uefi",
    };
    let kind = if f.domain_type.is_empty() {
        "?"
    } else {
        &f.domain_type
    };
    format!("{kind} {family} {firmware}")
}

fn hint_source_word(s: domain::HintSource) -> &'static str {
    match s {
        domain::HintSource::Libosinfo => "libosinfo",
        domain::HintSource::Hyperv => "hyperv",
        domain::HintSource::Hypervclock => "hypervclock",
        domain::HintSource::LocaltimeClock => "localtime",
        domain::HintSource::Text => "text",
    }
}

/// The strongest hint and how many more: `libosinfo win/2k3 +1`, `hyperv +2`, `-`.
fn hints_summary(f: &DomainFacts) -> String {
    let strength = |s: domain::HintSource| match s {
        domain::HintSource::Libosinfo => 0,
        domain::HintSource::Hyperv => 1,
        domain::HintSource::Hypervclock => 2,
        domain::HintSource::LocaltimeClock => 3,
        domain::HintSource::Text => 4,
    };
    let Some(best) = f.windows_hints.iter().min_by_key(|h| strength(h.source)) else {
        return "-".to_string();
    };
    let mut s = hint_source_word(best.source).to_string();
    if best.source == domain::HintSource::Libosinfo {
        if let Some(os) = best.detail.split("microsoft.com/").nth(1) {
            s.push(' ');
            s.push_str(os);
        }
    }
    let more = f.windows_hints.len().saturating_sub(1);
    if more > 0 {
        s.push_str(&format!(" +{more}"));
    }
    s
}

/// `hda ide qcow2 file`: target, bus, declared format, kind of source.
fn boot_disk_cell(e: &DomainEntry) -> Cell {
    let Some(d) = &e.boot_disk else {
        return Cell::plain("-");
    };
    let text = format!(
        "{} {} {} {}",
        or_dash(&d.target),
        d.bus,
        d.format.as_deref().unwrap_or("?"),
        source_kind(&d.source)
    );
    let flagged = e.candidate_reasons.iter().any(|r| {
        matches!(
            r,
            CandidateReason::IdeBootDisk { .. } | CandidateReason::SataBootDisk { .. }
        )
    });
    if flagged {
        Cell::toned(text, Tone::Bad)
    } else {
        Cell::plain(text)
    }
}

fn source_kind(s: &domain::DiskSource) -> String {
    match s {
        domain::DiskSource::File { .. } => "file".to_string(),
        domain::DiskSource::Block { .. } => "block".to_string(),
        domain::DiskSource::Dir { .. } => "dir".to_string(),
        domain::DiskSource::Network { protocol, .. } => or_dash(protocol).to_string(),
        domain::DiskSource::Volume { .. } => "volume".to_string(),
        domain::DiskSource::None { .. } => "empty".to_string(),
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// Every NIC's model, `(none)` for a NIC without one.
fn nics_cell(f: &DomainFacts) -> Cell {
    if f.nics.is_empty() {
        return Cell::plain("-");
    }
    let text = f
        .nics
        .iter()
        .map(|n| n.model_display())
        .collect::<Vec<_>>()
        .join(",");
    if f.nics.iter().any(|n| n.is_emulated()) && f.is_windows_hinted() {
        Cell::toned(text, Tone::Bad)
    } else {
        Cell::plain(text)
    }
}

/// Lines under the table for what the table cannot say: where a managed candidate's durable change
/// is made, transient candidates, unreadable definitions.
pub fn render_notes(report: &ScanReport, palette: &Palette) -> String {
    let mut out = String::new();
    for e in &report.domains {
        let name = palette.paint(&e.status.name, Tone::Strong);
        if let Some(err) = &e.error {
            out.push_str(&format!(
                "{name}: {} {err}\n",
                palette.paint("cannot read the definition:", Tone::Bad)
            ));
            continue;
        }
        if !e.candidate {
            continue;
        }
        if let Some(v) = &e.verdict {
            out.push_str(&verdict_note(&name, v, palette));
        }
        let Some(f) = &e.definition else { continue };
        if let Some(m) = &f.manager {
            out.push_str(&format!(
                "{name}: managed by {} — a libvirt edit does not last; {}\n",
                m.kind.name(),
                m.durable_change
            ));
        } else if !e.status.persistent {
            out.push_str(&format!(
                "{name}: transient — it vanishes when it stops; change whatever creates it (or define it persistently first)\n"
            ));
        }
    }
    out
}

/// One line per target that is not ready or unknown, and one per hazard.
fn verdict_note(name: &str, v: &ScanVerdict, palette: &Palette) -> String {
    let mut out = String::new();
    if let Some(w) = &v.windows {
        out.push_str(&format!("{name}: {w}\n"));
    }
    let whys: Vec<&str> = [&v.blk, &v.scsi, &v.nic]
        .iter()
        .filter_map(|r| match r {
            Readiness::Unknown { why } => Some(why.as_str()),
            _ => None,
        })
        .collect();
    let mut unknown_said = None;
    if whys.len() == 3 && whys.iter().all(|w| *w == whys[0]) {
        out.push_str(&format!(
            "{name}: verdict {}: {}\n",
            palette.paint("unknown", Tone::Warn),
            whys[0]
        ));
        unknown_said = Some(whys[0].to_string());
    }
    // virtio-scsi is the alternative bus: its failures matter only when virtio-blk is not ready.
    let scsi_matters = v.blk != Readiness::Ready;
    for (label, r) in [
        ("virtio-blk (viostor)", &v.blk),
        ("virtio-scsi (vioscsi)", &v.scsi),
        ("virtio-net (netkvm)", &v.nic),
    ] {
        match r {
            Readiness::Ready => {
                if label.starts_with("virtio-scsi") && scsi_matters {
                    out.push_str(&format!(
                        "{name}: {label} ready: convert --bus scsi can move the disks\n"
                    ));
                }
            }
            Readiness::NotReady { .. } if label.starts_with("virtio-scsi") && !scsi_matters => {}
            Readiness::NotReady { failed } => out.push_str(&format!(
                "{name}: {label} {}; failed checks: {}\n",
                palette.paint("not ready", Tone::Bad),
                failed.join("; ")
            )),
            Readiness::Unknown { why } => {
                // One unknown reason is usually shared by all three targets: say it once.
                if unknown_said.as_deref() != Some(why.as_str()) {
                    out.push_str(&format!(
                        "{name}: {label} {}: {why}\n",
                        palette.paint("unknown", Tone::Warn)
                    ));
                    unknown_said = Some(why.clone());
                }
            }
        }
    }
    for h in &v.hazards {
        out.push_str(&format!(
            "{name}: {} {}: {}\n",
            palette.paint("hazard", Tone::Warn),
            h.kind,
            h.evidence
        ));
    }
    out
}

/// Everything about one domain, for `--details`.
pub fn render_details(e: &DomainEntry) -> String {
    let s = &e.status;
    let mut out = format!(
        "{}  uuid {}  id {}  {}  {}\n",
        s.name,
        s.uuid,
        s.id.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
        s.state_display(),
        s.persistence_word()
    );
    let Some(f) = &e.definition else {
        out.push_str(&format!(
            "  error: {}\n",
            e.error.as_deref().unwrap_or("no definition")
        ));
        return out;
    };
    out.push_str(&format!(
        "  platform: {} (machine {})\n",
        platform(f),
        f.machine.as_deref().unwrap_or("-")
    ));
    if f.windows_hints.is_empty() {
        out.push_str("  windows hints: none\n");
    }
    for h in &f.windows_hints {
        out.push_str(&format!(
            "  windows hint: {}: {}\n",
            hint_source_word(h.source),
            h.detail
        ));
    }
    for (i, d) in f.disks.iter().enumerate() {
        let device = match &d.device {
            domain::DiskDevice::Disk => "disk",
            domain::DiskDevice::Cdrom => "cdrom",
            domain::DiskDevice::Floppy => "floppy",
            domain::DiskDevice::Lun => "lun",
            domain::DiskDevice::Other(o) => o.as_str(),
        };
        out.push_str(&format!(
            "  {device} {} {} {} {}{}\n",
            or_dash(&d.target),
            d.bus,
            d.format.as_deref().unwrap_or("?"),
            d.source.display(),
            if f.boot_disk == Some(i) {
                "  [boot disk]"
            } else {
                ""
            }
        ));
    }
    for n in &f.nics {
        out.push_str(&format!(
            "  nic {} {} {} {}{}\n",
            or_dash(&n.kind),
            n.model_display(),
            n.mac.as_deref().unwrap_or("-"),
            n.source.as_deref().unwrap_or("-"),
            if n.is_emulated() { "  [emulated]" } else { "" }
        ));
    }
    if let Some(m) = &f.manager {
        out.push_str(&format!(
            "  managed by {}: {}\n  durable change: {}\n",
            m.kind.name(),
            m.evidence.join("; "),
            m.durable_change
        ));
    }
    if let Some(v) = &e.verdict {
        if let Some(w) = &v.windows {
            out.push_str(&format!("  windows: {w}\n"));
        }
        for d in &v.driver_versions {
            out.push_str(&format!(
                "  driver {} version {} ({})\n",
                d.driver, d.version, d.from
            ));
        }
        for r in &v.remedies {
            out.push_str(&format!("  fix: {r}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_labels_are_the_uri_host() {
        assert_eq!(host_label("qemu+ssh://root@kvm03:22/system"), "kvm03");
        assert_eq!(host_label("qemu+ssh://kvm03/system?keyfile=/k"), "kvm03");
        assert_eq!(host_label("qemu+ssh://root@[::1]:2222/system"), "::1");
        assert_eq!(host_label("qemu:///system"), "local");
        assert_eq!(host_label("test:///tmp/node.xml"), "local");
    }
    use crate::host::PowerState;

    fn status(name: &str, persistent: bool) -> DomainStatus {
        DomainStatus {
            name: name.into(),
            uuid: format!("uuid-{name}"),
            id: None,
            state: PowerState::ShutOff,
            state_reason: "unknown".into(),
            persistent,
        }
    }

    const WIN_IDE: &str = r#"<domain type='kvm'><name>w</name>
      <metadata><libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0"><libosinfo:os id="http://microsoft.com/win/2k8"/></libosinfo:libosinfo></metadata>
      <os><type machine='pc'>hvm</type></os>
      <devices><disk type='file' device='disk'><driver type='raw'/><source file='/w.img'/><target dev='hda' bus='ide'/></disk>
      <interface type='user'/></devices></domain>"#;

    #[test]
    fn malformed_definition_is_reported_and_the_rest_goes_on() {
        let entries = vec![
            entry_from_xml(status("broken", true), Ok("<domain><name>x".into())),
            entry_from_xml(status("gone", true), Err("cannot read it".into())),
            entry_from_xml(status("w", true), Ok(WIN_IDE.into())),
        ];
        let r = build_report("test:///x", entries);
        let names: Vec<&str> = r.domains.iter().map(|e| e.status.name.as_str()).collect();
        assert_eq!(names, ["w", "broken", "gone"]);
        assert_eq!(r.summary.errors, 2);
        assert_eq!(r.summary.candidates, 1);
        assert!(r.domains[1]
            .error
            .as_deref()
            .unwrap()
            .starts_with("malformed domain XML"));
        let text = render_human(&r, &Palette::plain(), false);
        assert!(
            text.contains("error          broken  shut off  persistent   ?                ?                  ?                 ?       ?\n"),
            "{text}"
        );
        assert!(text.contains("broken: cannot read the definition: malformed domain XML"));
        assert!(text.ends_with(
            "3 domains, 1 candidate (1 IDE boot, 0 SATA boot, 1 emulated NIC), 2 domains could not be read\n"
        ));
    }

    #[test]
    fn reasons_name_the_boot_disk_and_the_nic() {
        let e = entry_from_xml(status("w", false), Ok(WIN_IDE.into()));
        assert_eq!(
            e.candidate_reasons,
            vec![
                CandidateReason::IdeBootDisk {
                    target: "hda".into()
                },
                CandidateReason::EmulatedNic {
                    nic: 0,
                    model: None
                }
            ]
        );
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["candidate_reasons"][0]["kind"], "ide-boot-disk");
        assert_eq!(
            json["candidate_reasons"][1]["model"],
            serde_json::Value::Null
        );
        assert_eq!(json["state"], "shut off");
        assert_eq!(json["persistent"], false);
        let notes = render_notes(&build_report("u", vec![e]), &Palette::plain());
        assert!(notes.starts_with("w: transient"), "{notes}");
    }
}
