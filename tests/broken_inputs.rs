//! Broken inputs against the real binary, under a 256 MiB address-space limit (`prlimit --as`,
//! util-linux): truncated and corrupted copies of the committed fixtures, made at test time in a
//! temporary directory. Each run must end with a one-line error or a report naming the problem,
//! with a documented exit code — never a panic (exit 101, "panicked"), never a signal (an
//! allocation over the limit aborts the process), never more memory than the limit, never a
//! hang (each run is ended by `timeout` after 120 s, which fails the test).

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The address-space limit every run gets (256 MiB).
const MEMORY_LIMIT: u64 = 256 << 20;
/// Seconds a run may take before it counts as a hang.
const TIME_LIMIT: &str = "120";

/// What one run of the binary left behind.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// stdout and stderr together, for assertion messages and searches.
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Run the binary with `args` under the memory limit. Fails the test on a panic, a signal or an
/// undocumented exit code (0 ok, 1 error, 2 usage, 3 blocked).
fn run(args: &[&str]) -> Outcome {
    // A hang is a failure too: `timeout` ends the run after TIME_LIMIT seconds (exit 124).
    let out = Command::new("timeout")
        .args(["--kill-after=5", TIME_LIMIT, "prlimit"])
        .arg(format!("--as={MEMORY_LIMIT}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_virtio-migrate"))
        .args(args)
        .current_dir(ROOT)
        .env_remove("LIBVIRT_DEFAULT_URI")
        .env("NO_COLOR", "1")
        .output()
        .expect("run prlimit (util-linux)");
    let outcome = Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        out.status.code() != Some(124),
        "no answer within {TIME_LIMIT} s (a hang) for {args:?}: {}",
        outcome.all()
    );
    assert!(
        out.status.code().is_some(),
        "killed by a signal ({:?}) for {args:?}: {}",
        out.status,
        outcome.all()
    );
    assert!(
        !outcome.stderr.contains("panicked") && outcome.code != 101,
        "panic for {args:?}: {}",
        outcome.all()
    );
    assert!(
        [0, 1, 2, 3].contains(&outcome.code),
        "undocumented exit code {} for {args:?}: {}",
        outcome.code,
        outcome.all()
    );
    outcome
}

/// A failed run: exit 1 and exactly one line on stderr that contains every word of `needles`
/// (case-insensitive).
fn assert_one_line_error(out: &Outcome, needles: &[&str]) {
    assert_eq!(out.code, 1, "{}", out.all());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {}", out.stderr);
    let line = lines[0].to_lowercase();
    for needle in needles {
        assert!(
            line.contains(&needle.to_lowercase()),
            "{needle:?} not in {:?}",
            lines[0]
        );
    }
}

/// A libvirt test-driver node file in `dir` holding `domains` (each a whole `<domain>` element);
/// returns its URI.
fn node(dir: &Path, domains: &[String]) -> String {
    let path = dir.join("node.xml");
    let mut xml = String::from("<node>\n");
    for domain in domains {
        xml.push_str(domain);
        xml.push('\n');
    }
    xml.push_str("</node>\n");
    std::fs::write(&path, xml).unwrap();
    format!("test://{}", path.display())
}

/// A fixture domain XML (fixtures/domains/NAME.xml).
fn fixture_domain(name: &str) -> String {
    std::fs::read_to_string(PathBuf::from(ROOT).join(format!("fixtures/domains/{name}.xml")))
        .unwrap()
}

/// `fixture_domain(name)` with `<description>` replaced or added, and renamed to `new_name`.
fn domain_with_description(name: &str, new_name: &str, description: &str) -> String {
    let xml = fixture_domain(name);
    let mut doc: String = xml
        .lines()
        .filter(|l| !l.trim_start().starts_with("<description"))
        .collect::<Vec<_>>()
        .join("\n");
    let name_start = doc.find("<name>").unwrap();
    let name_end = doc.find("</name>").unwrap() + "</name>".len();
    doc.replace_range(
        name_start..name_end,
        &format!("<name>{new_name}</name>\n  <description>{description}</description>"),
    );
    doc
}

// ---- Domain XML ------------------------------------------------------------------------------

/// A 10 MB description: scan and plan it within the memory limit.
#[test]
fn domain_with_a_10_mb_description() {
    let dir = tempfile::tempdir().unwrap();
    let text = "Windows Server 2008 R2 file server. ".repeat(10_000_000 / 36);
    let uri = node(
        dir.path(),
        &[domain_with_description(
            "win2k8r2",
            "huge-description",
            &text,
        )],
    );
    let out = run(&["-c", &uri, "--json", "scan"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("huge-description"));
    // The report carries the description cut to its first few thousand characters, not 10 MB.
    assert!(out.stdout.len() < 64 * 1024, "{} bytes", out.stdout.len());
    let out = run(&["-c", &uri, "convert", "-d", "huge-description", "--dry-run"]);
    assert!([1, 3].contains(&out.code), "{}", out.all());
    assert!(
        out.stdout.len() + out.stderr.len() < 64 * 1024,
        "{} bytes",
        out.stdout.len() + out.stderr.len()
    );
}

/// A node file that is not XML: the connection fails with one line naming the URI.
#[test]
fn malformed_domain_xml_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut broken = fixture_domain("win2k8r2");
    broken.truncate(broken.len() / 2);
    let uri = node(dir.path(), &[broken]);
    let out = run(&["-c", &uri, "scan"]);
    assert_one_line_error(&out, &["test://"]);
    let out = run(&["-c", &uri, "convert", "-d", "win2k8r2-app01", "--dry-run"]);
    assert_one_line_error(&out, &["test://"]);
}

/// A domain whose disk has no target, one with an unknown bus, and one without devices: scanned
/// and planned without a panic.
#[test]
fn odd_domains_scan_and_plan() {
    let dir = tempfile::tempdir().unwrap();
    let base = fixture_domain("win2k8r2");
    let no_devices = {
        let start = base.find("<devices>").unwrap();
        let end = base.find("</devices>").unwrap() + "</devices>".len();
        let mut d = base.clone();
        d.replace_range(start..end, "");
        d.replace("win2k8r2-app01", "no-devices")
    };
    let weird_bus = base
        .replace("bus='ide'", "bus='xen'")
        .replace("win2k8r2-app01", "weird-bus");
    let weird_bus = strip_uuid(&weird_bus);
    let no_devices = strip_uuid(&no_devices);
    let uri = node(dir.path(), &[no_devices, weird_bus]);
    let out = run(&["-c", &uri, "--json", "scan"]);
    assert_eq!(out.code, 0, "{}", out.all());
    for name in ["no-devices", "weird-bus"] {
        let out = run(&["-c", &uri, "convert", "-d", name, "--dry-run"]);
        assert!(!out.all().is_empty());
    }
}

/// Drop the `<uuid>` line (two domains made from one fixture must not share it).
fn strip_uuid(xml: &str) -> String {
    xml.lines()
        .filter(|l| !l.trim_start().starts_with("<uuid>"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- Disk images: helpers ----------------------------------------------------------------------

/// Copy a committed fixture (path relative to the repository) into `dir` as `name`.
fn copy_fixture(dir: &Path, fixture: &str, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(PathBuf::from(ROOT).join(fixture), &to).unwrap();
    to
}

/// Overwrite `bytes` at `offset` of the file at `path`.
fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let mut data = std::fs::read(path).unwrap();
    let at = offset as usize;
    data[at..at + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, data).unwrap();
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn be32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(data[at..at + 4].try_into().unwrap())
}

fn be64(data: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(data[at..at + 8].try_into().unwrap())
}

/// `inspect PATH --format FORMAT` under the limit.
fn inspect(path: &Path, format: &str) -> Outcome {
    run(&["inspect", path.to_str().unwrap(), "--format", format])
}

/// The disk could not be read (exit 1) and the report says why: its output holds every needle
/// (case-insensitive), and any error on stderr is one line.
fn assert_unknown(out: &Outcome, needles: &[&str]) {
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.lines().count() <= 1, "{}", out.stderr);
    let all = out.all().to_lowercase();
    for needle in needles {
        assert!(
            all.contains(&needle.to_lowercase()),
            "{needle:?} not in:\n{}",
            out.all()
        );
    }
}

/// The report (any exit code) names the problem: its output holds every needle.
fn assert_reported(out: &Outcome, needles: &[&str]) {
    let all = out.all().to_lowercase();
    for needle in needles {
        assert!(
            all.contains(&needle.to_lowercase()),
            "{needle:?} not in:\n{}",
            out.all()
        );
    }
}

/// A volume the inspection could not read (the disk itself could): the report lists it as a
/// hazard naming the problem (exit 0), or the disk is unknown (exit 1).
fn assert_ntfs_problem(out: &Outcome, needles: &[&str]) {
    assert!(out.code == 0 || out.code == 1, "{}", out.all());
    assert!(
        out.stdout.contains("could not be read") || out.code == 1,
        "{}",
        out.all()
    );
    assert_reported(out, needles);
}

/// The qcow2 image with a Windows volume (MBR, System Reserved + C:) the image tests read.
const WINDOWS_QCOW2: &str = "fixtures/images/mbr-sysreserved.qcow2";

/// Offsets inside [`WINDOWS_QCOW2`]: (L1 table, refcount table, first L2 table, cluster size).
fn qcow2_layout(path: &Path) -> (u64, u64, u64, u64) {
    let data = std::fs::read(path).unwrap();
    let l1 = be64(&data, 40);
    let refcounts = be64(&data, 48);
    let l2 = be64(&data, l1 as usize) & 0x00ff_ffff_ffff_fe00;
    (l1, refcounts, l2, 1 << be32(&data, 20))
}

/// A copy of [`WINDOWS_QCOW2`] truncated at `at(layout)`; inspecting it must fail naming the cause.
fn truncated_qcow2(at: impl Fn(u64, u64, u64, u64, u64) -> u64, needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path(), WINDOWS_QCOW2, "disk.qcow2");
    let (l1, refcounts, l2, cluster) = qcow2_layout(&path);
    let len = std::fs::metadata(&path).unwrap().len();
    truncate(&path, at(l1, refcounts, l2, cluster, len));
    assert_unknown_somewhere(&inspect(&path, "qcow2"), needles);
}

/// The disk, or a partition of it, could not be read and the output says so and why: a one-line
/// error (exit 1), or a report (exit 0 or 1) marking the disk or a partition "unknown"; every
/// needle in the output.
fn assert_unknown_somewhere(out: &Outcome, needles: &[&str]) {
    assert!(out.code == 0 || out.code == 1, "{}", out.all());
    assert!(out.stderr.lines().count() <= 1, "{}", out.stderr);
    if out.stdout.is_empty() {
        assert_eq!(out.code, 1, "{}", out.all());
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.all());
    } else {
        assert!(out.stdout.contains("unknown"), "{}", out.all());
    }
    assert_reported(out, needles);
}

// ---- qcow2: truncated at each structure boundary ---------------------------------------------

#[test]
fn qcow2_empty_file() {
    truncated_qcow2(|_, _, _, _, _| 0, &["qcow2"]);
}

#[test]
fn qcow2_truncated_in_the_magic() {
    truncated_qcow2(|_, _, _, _, _| 3, &["qcow2"]);
}

#[test]
fn qcow2_truncated_in_the_header() {
    truncated_qcow2(|_, _, _, _, _| 40, &["header"]);
}

#[test]
fn qcow2_truncated_before_the_refcount_table() {
    truncated_qcow2(|_, rt, _, _, _| rt, &["runs past the end"]);
}

#[test]
fn qcow2_truncated_before_the_l1_table() {
    truncated_qcow2(|l1, _, _, _, _| l1, &["L1 table"]);
}

#[test]
fn qcow2_truncated_inside_the_l1_table() {
    truncated_qcow2(|l1, _, _, _, _| l1 + 4, &["L1 table"]);
}

#[test]
fn qcow2_truncated_before_the_l2_table() {
    truncated_qcow2(|_, _, l2, _, _| l2, &["L2 table"]);
}

#[test]
fn qcow2_truncated_inside_the_l2_table() {
    truncated_qcow2(|_, _, l2, _, _| l2 + 100, &["L2 table"]);
}

#[test]
fn qcow2_truncated_in_the_first_data_cluster() {
    truncated_qcow2(
        |_, _, l2, cluster, _| l2 + cluster + 100,
        &["compressed cluster", "truncated"],
    );
}

#[test]
fn qcow2_truncated_by_one_byte() {
    // The last cluster (file system data) is cut: reading it fails, or it is never read.
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path(), WINDOWS_QCOW2, "disk.qcow2");
    let len = std::fs::metadata(&path).unwrap().len();
    truncate(&path, len - 1);
    let out = inspect(&path, "qcow2");
    assert!(out.code == 0 || out.code == 1, "{}", out.all());
}

// ---- qcow2: tables pointing past the end, garbage, header fields -----------------------------

#[test]
fn qcow2_l1_entry_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path(), WINDOWS_QCOW2, "disk.qcow2");
    let (l1, ..) = qcow2_layout(&path);
    patch(
        &path,
        l1,
        &(0x8000_0000_0000_0000u64 | 0x40_0000_0000).to_be_bytes(),
    );
    assert_unknown(&inspect(&path, "qcow2"), &["L1 entry 0", "past the end"]);
}

#[test]
fn qcow2_l2_entry_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path(), WINDOWS_QCOW2, "disk.qcow2");
    let (_, _, l2, _) = qcow2_layout(&path);
    patch(
        &path,
        l2,
        &(0x8000_0000_0000_0000u64 | 0x40_0000_0000).to_be_bytes(),
    );
    assert_unknown(&inspect(&path, "qcow2"), &["past the end"]);
}

#[test]
fn qcow2_unaligned_l2_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path(), WINDOWS_QCOW2, "disk.qcow2");
    let (_, _, l2, _) = qcow2_layout(&path);
    patch(&path, l2, &0x8000_0000_0000_1200u64.to_be_bytes());
    assert_unknown(&inspect(&path, "qcow2"), &["unaligned"]);
}

#[test]
fn qcow2_compressed_cluster_with_garbage() {
    // The template's clusters are zlib-compressed: overwrite the first one's stream.
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path(), "fixtures/qcow2/template.qcow2", "t.qcow2");
    let data = std::fs::read(&path).unwrap();
    let (l1, ..) = qcow2_layout(&path);
    let l2 = be64(&data, l1 as usize) & 0x00ff_ffff_ffff_fe00;
    let entry = be64(&data, l2 as usize);
    assert_ne!(entry & (1 << 62), 0, "first cluster is not compressed");
    let bits = be32(&data, 20);
    let host = entry & ((1u64 << (62 - (bits - 8))) - 1);
    patch(&path, host, &[0xA5; 64]);
    // The template holds no partition table; its first sector is what inspect reads.
    assert_unknown(&inspect(&path, "qcow2"), &["zlib"]);
}

#[test]
fn qcow2_refcount_only_corruption_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let clean = copy_fixture(dir.path(), WINDOWS_QCOW2, "clean.qcow2");
    let path = copy_fixture(dir.path(), WINDOWS_QCOW2, "disk.qcow2");
    let (_, refcounts, _, cluster) = qcow2_layout(&path);
    // The refcount table and its first block: garbage. Reading never uses them.
    let data = std::fs::read(&path).unwrap();
    let block = be64(&data, refcounts as usize);
    patch(&path, refcounts, &[0xEE; 64]);
    patch(&path, block, &vec![0x77; cluster as usize / 2]);
    let out = inspect(&path, "qcow2");
    assert_eq!(out.code, 0, "{}", out.all());
    let expected = inspect(&clean, "qcow2");
    assert_eq!(
        out.stdout.replace("disk.qcow2", "X"),
        expected.stdout.replace("clean.qcow2", "X")
    );
}

/// Set a big-endian header field of the qcow2 file at `path`.
fn set_field(path: &Path, offset: u64, value: &[u8]) {
    patch(path, offset, value);
}

#[test]
fn qcow2_cluster_bits_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path(), WINDOWS_QCOW2, "disk.qcow2");
    set_field(&path, 20, &31u32.to_be_bytes());
    assert_unknown(&inspect(&path, "qcow2"), &["cluster_bits 31"]);
}

#[test]
fn qcow2_unknown_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path(), WINDOWS_QCOW2, "disk.qcow2");
    set_field(&path, 4, &4u32.to_be_bytes());
    assert_unknown(&inspect(&path, "qcow2"), &["version 4"]);
}

#[test]
fn qcow2_absurd_l1_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path(), WINDOWS_QCOW2, "disk.qcow2");
    set_field(&path, 36, &0x7fff_ffffu32.to_be_bytes());
    assert_unknown(&inspect(&path, "qcow2"), &["L1 table"]);
}

#[test]
fn qcow2_absurd_virtual_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path(), WINDOWS_QCOW2, "disk.qcow2");
    set_field(&path, 24, &u64::MAX.to_be_bytes());
    assert_unknown(&inspect(&path, "qcow2"), &["L1 table"]);
}

#[test]
fn qcow2_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path(), WINDOWS_QCOW2, "disk.qcow2");
    set_field(&path, 32, &2u32.to_be_bytes());
    assert_unknown(&inspect(&path, "qcow2"), &["LUKS"]);
}

#[test]
fn qcow2_absurd_snapshot_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path(), WINDOWS_QCOW2, "disk.qcow2");
    set_field(&path, 60, &u32::MAX.to_be_bytes());
    assert_unknown(&inspect(&path, "qcow2"), &["snapshots"]);
}

#[test]
fn qcow2_backing_name_longer_than_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(dir.path(), WINDOWS_QCOW2, "disk.qcow2");
    set_field(&path, 8, &0x200u64.to_be_bytes());
    set_field(&path, 16, &1_000_000u32.to_be_bytes());
    assert_unknown(&inspect(&path, "qcow2"), &["backing file name"]);
}

#[test]
fn raw_disk_with_a_qcow2_header_stays_raw() {
    // Its header names /etc/passwd as backing: read as raw, nothing is followed.
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture(
        dir.path(),
        "fixtures/qcow2/raw-with-qcow2-magic.img",
        "disk.img",
    );
    let out = inspect(&path, "raw");
    assert!(!out.all().contains("passwd"), "{}", out.all());
}

// ---- qcow2 backing chains --------------------------------------------------------------------

/// The overlay fixture (backing `template.qcow2`, format qcow2) copied as `name` into `dir`,
/// with its backing name replaced by `backing` (the header keeps the name inside cluster 0).
fn overlay_naming(dir: &Path, name: &str, backing: &str) -> PathBuf {
    let path = copy_fixture(dir, "fixtures/qcow2/overlay-zstd-extl2.qcow2", name);
    let data = std::fs::read(&path).unwrap();
    let offset = be64(&data, 8);
    assert_ne!(offset, 0);
    set_field(&path, 16, &(backing.len() as u32).to_be_bytes());
    patch(&path, offset, backing.as_bytes());
    path
}

#[test]
fn qcow2_backing_file_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = overlay_naming(dir.path(), "top.qcow2", "gone.qcow2");
    assert_unknown(&inspect(&path, "qcow2"), &["gone.qcow2"]);
}

#[test]
fn qcow2_backing_file_loops() {
    let dir = tempfile::tempdir().unwrap();
    let a = overlay_naming(dir.path(), "a.qcow2", "b.qcow2");
    overlay_naming(dir.path(), "b.qcow2", "a.qcow2");
    assert_unknown(&inspect(&a, "qcow2"), &["a.qcow2"]);
}

#[test]
fn qcow2_backing_file_is_itself() {
    let dir = tempfile::tempdir().unwrap();
    let a = overlay_naming(dir.path(), "a.qcow2", "a.qcow2");
    assert_unknown(&inspect(&a, "qcow2"), &["a.qcow2"]);
}

#[test]
fn qcow2_backing_file_is_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = overlay_naming(dir.path(), "top.qcow2", "template.qcow2");
    std::fs::create_dir(dir.path().join("template.qcow2")).unwrap();
    assert_unknown(&inspect(&path, "qcow2"), &["directory"]);
}

/// A FIFO at a backing path (a qcow2 header is a string the image's maker chose): opening it for
/// reading would wait for a writer forever. It is refused by type before it is opened.
#[test]
fn qcow2_backing_file_is_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let path = overlay_naming(dir.path(), "top.qcow2", "template.qcow2");
    mkfifo(&dir.path().join("template.qcow2"));
    assert_unknown(&inspect(&path, "qcow2"), &["template.qcow2", "FIFO"]);
}

/// A backing path naming a character device (/dev/zero, a tty) is refused by type as well.
#[test]
fn qcow2_backing_file_is_a_character_device() {
    let dir = tempfile::tempdir().unwrap();
    let path = overlay_naming(dir.path(), "top.qcow2", "/dev/zero");
    assert_unknown(&inspect(&path, "qcow2"), &["/dev/zero", "character device"]);
}

/// `inspect` of a FIFO or a character device: a one-line error, at once.
#[test]
fn disk_is_a_fifo_or_a_character_device() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("disk.img");
    mkfifo(&fifo);
    assert_one_line_error(&inspect(&fifo, "raw"), &["FIFO", "not a disk image"]);
    assert_one_line_error(
        &inspect(Path::new("/dev/zero"), "raw"),
        &["character device", "not a disk image"],
    );
}

/// A scan whose first guest's disk is a FIFO goes on: that guest is unknown naming it, the next
/// guest gets its verdict from its image.
#[test]
fn scan_goes_on_past_a_fifo_disk() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo-guest.qcow2");
    mkfifo(&fifo);
    let image = PathBuf::from(ROOT).join(WINDOWS_QCOW2);
    let uri = node(
        dir.path(),
        &[
            domain_booting("a-fifo-guest", &fifo),
            domain_booting("b-real-guest", &image),
        ],
    );
    let out = run(&["-c", &uri, "--json", "scan"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let verdict = |name: &str| scan_verdict(&out.stdout, name);
    let fifo = verdict("a-fifo-guest");
    assert_eq!(fifo["blk"]["state"], "unknown", "{fifo}");
    assert!(fifo["blk"]["why"].to_string().contains("FIFO"), "{fifo}");
    let real = verdict("b-real-guest");
    assert_eq!(real["blk"]["state"], "ready", "{real}");
}

// ---- Budgets ---------------------------------------------------------------------------------

/// `--read-limit` is per guest: a guest whose inspection needs more (mbr-sysreserved reads about
/// 37 KiB) is `unknown (budget exceeded)`, and the scan goes on to give the next guest (static-ip,
/// about 27 KiB) its verdict from its image, one worker or several.
#[test]
fn read_budget_makes_one_guest_unknown_and_the_scan_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let domain = |name: &str, image: &str| domain_booting(name, &PathBuf::from(ROOT).join(image));
    let uri = node(
        dir.path(),
        &[
            domain("a-costly", WINDOWS_QCOW2),
            domain("b-cheap", "fixtures/images/static-ip.qcow2"),
        ],
    );
    for parallel in ["1", "4"] {
        let out = run(&[
            "-c",
            &uri,
            "--json",
            "scan",
            "--read-limit",
            "32K",
            "--parallel",
            parallel,
        ]);
        assert_eq!(out.code, 0, "{}", out.all());
        let verdict = |name: &str| scan_verdict(&out.stdout, name);
        let costly = verdict("a-costly");
        for bus in ["blk", "scsi", "nic"] {
            assert_eq!(costly[bus]["state"], "unknown", "{costly}");
            assert!(
                costly[bus]["why"]
                    .as_str()
                    .unwrap()
                    .starts_with("budget exceeded"),
                "{costly}"
            );
        }
        assert!(
            costly["bytes_read"].as_u64().unwrap() <= 32 * 1024,
            "{costly}"
        );
        let cheap = verdict("b-cheap");
        // Fully assessed (its NIC is not ready: netkvm.sys alone, no staged package).
        assert_eq!(cheap["blk"]["state"], "ready", "{cheap}");
        assert!(!cheap.to_string().contains("budget"), "{cheap}");
    }
    // Without the limit, the costly guest is ready.
    let out = run(&["-c", &uri, "--json", "scan", "a-costly"]);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        report["hosts"][0]["domains"][0]["verdict"]["blk"]["state"],
        "ready"
    );
}

/// `inspect --read-limit`: the verdict says the budget stopped it, and the report's errors are
/// readable lines (not the NTFS crate's Debug output of an I/O error).
#[test]
fn inspect_stops_at_its_read_limit() {
    let out = run(&["inspect", WINDOWS_QCOW2, "--read-limit", "16K"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("virtio-blk (viostor): unknown: budget exceeded"),
        "{}",
        out.all()
    );
    assert!(out
        .stdout
        .contains("read budget exceeded: more than 16384 bytes read"));
    assert!(!out.stdout.contains("Custom {"), "{}", out.all());
}

/// Limits that make no sense are usage errors (exit 2).
#[test]
fn budget_values_are_checked() {
    for args in [
        ["--read-limit", "1K"],
        ["--read-limit", "12X"],
        ["--read-limit", "2048G"],
        ["--time-limit", "0"],
    ] {
        let out = run(&["inspect", WINDOWS_QCOW2, args[0], args[1]]);
        assert_eq!(out.code, 2, "{args:?}: {}", out.all());
        assert!(out.stderr.contains(args[0]), "{}", out.all());
    }
}

/// `fixture_domain("win2k8r2")` renamed `name`, booting `image` (declared qcow2), without a UUID.
fn domain_booting(name: &str, image: &Path) -> String {
    strip_uuid(&fixture_domain("win2k8r2"))
        .replace(
            "/var/lib/libvirt/images/win2k8r2-app01.qcow2",
            &image.display().to_string(),
        )
        .replace("win2k8r2-app01", name)
}

/// The verdict of domain `name` in the report `scan --json` printed.
fn scan_verdict(json: &str, name: &str) -> serde_json::Value {
    let report: serde_json::Value = serde_json::from_str(json).unwrap();
    let domains = report["hosts"][0]["domains"].as_array().unwrap();
    let d = domains.iter().find(|d| d["name"] == name).unwrap();
    d["verdict"].clone()
}

/// Make a FIFO at `path` (mkfifo from coreutils).
fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

#[test]
fn qcow2_backing_chain_deeper_than_16() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(
        dir.path(),
        "fixtures/qcow2/template.qcow2",
        "template.qcow2",
    );
    for n in 0..20 {
        let backing = if n == 19 {
            "template.qcow2".to_string()
        } else {
            format!("l{:02}.qcow2", n + 1)
        };
        overlay_naming(dir.path(), &format!("l{n:02}.qcow2"), &backing);
    }
    assert_unknown(&inspect(&dir.path().join("l00.qcow2"), "qcow2"), &["16"]);
}

#[test]
fn qcow2_network_backing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = overlay_naming(dir.path(), "top.qcow2", "nbd://10.0.0.1:10809/x");
    assert_unknown(&inspect(&path, "qcow2"), &["network"]);
}

// ---- MBR and GPT -----------------------------------------------------------------------------

/// The small partitioned disks the partition fuzz target starts from (made by sfdisk, see
/// fuzz/seeds/make-images.sh, kept in fuzz/corpus/partitions/seed-*).
fn seed_disk(dir: &Path, name: &str) -> PathBuf {
    copy_fixture(dir, &format!("fuzz/corpus/partitions/seed-{name}"), name)
}

/// MBR entry `n` (0-based) of the disk at `path`: set its start LBA and sector count.
fn set_mbr_entry(path: &Path, n: u64, start: u32, sectors: u32) {
    let at = 446 + 16 * n;
    patch(path, at + 8, &start.to_le_bytes());
    patch(path, at + 12, &sectors.to_le_bytes());
}

#[test]
fn mbr_overlapping_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let path = seed_disk(dir.path(), "mbr.img");
    set_mbr_entry(&path, 0, 1, 40);
    assert_reported(&inspect(&path, "raw"), &["overlap"]);
}

#[test]
fn mbr_partition_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = seed_disk(dir.path(), "mbr.img");
    set_mbr_entry(&path, 0, 1_000_000, 20);
    assert_reported(&inspect(&path, "raw"), &["beyond the end"]);
}

#[test]
fn mbr_extended_chain_loops() {
    let dir = tempfile::tempdir().unwrap();
    let path = seed_disk(dir.path(), "mbr.img");
    // The first EBR (LBA 21) links to itself: next = 0 relative to the extended partition.
    let ebr = 21 * 512;
    patch(&path, ebr + 446 + 16 + 4, &[0x05]);
    patch(&path, ebr + 446 + 16 + 8, &0u32.to_le_bytes());
    assert_reported(&inspect(&path, "raw"), &["loops"]);
}

#[test]
fn mbr_without_signature_is_no_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = seed_disk(dir.path(), "mbr.img");
    patch(&path, 510, &[0, 0]);
    assert_reported(&inspect(&path, "raw"), &["no partition table"]);
}

#[test]
fn gpt_header_with_a_bad_crc() {
    let dir = tempfile::tempdir().unwrap();
    let path = seed_disk(dir.path(), "gpt.img");
    patch(&path, 512 + 16, &[0xde, 0xad, 0xbe, 0xef]);
    assert_reported(&inspect(&path, "raw"), &["crc"]);
}

#[test]
fn gpt_entries_with_a_bad_crc() {
    let dir = tempfile::tempdir().unwrap();
    let path = seed_disk(dir.path(), "gpt.img");
    patch(&path, 1024 + 56, b"XX");
    assert_reported(&inspect(&path, "raw"), &["crc"]);
}

#[test]
fn gpt_both_headers_bad() {
    let dir = tempfile::tempdir().unwrap();
    let path = seed_disk(dir.path(), "gpt.img");
    let len = std::fs::metadata(&path).unwrap().len();
    patch(&path, 512 + 16, &[1, 2, 3, 4]);
    patch(&path, len - 512 + 16, &[1, 2, 3, 4]);
    assert_reported(&inspect(&path, "raw"), &["crc"]);
}

#[test]
fn gpt_absurd_entry_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = seed_disk(dir.path(), "gpt.img");
    patch(&path, 512 + 80, &u32::MAX.to_le_bytes());
    let out = inspect(&path, "raw");
    assert_reported(&out, &["gpt"]);
}

#[test]
fn gpt_truncated_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = seed_disk(dir.path(), "gpt.img");
    truncate(&path, 2048);
    assert_reported(&inspect(&path, "raw"), &["gpt"]);
}

// ---- NTFS ------------------------------------------------------------------------------------

/// The bare NTFS volume fixture (whole-disk NTFS with a Windows tree) copied into `dir`, and the
/// byte offset of its $MFT and the size of a file record.
fn ntfs_volume(dir: &Path) -> (PathBuf, u64, u64) {
    let path = copy_fixture(dir, "fixtures/images/bare-ntfs.raw", "ntfs.raw");
    let data = std::fs::read(&path).unwrap();
    let bytes_per_sector = u64::from(u16::from_le_bytes([data[11], data[12]]));
    let cluster = bytes_per_sector * u64::from(data[13]);
    let mft = u64::from_le_bytes(data[0x30..0x38].try_into().unwrap()) * cluster;
    let record = match data[0x40] as i8 {
        n if n < 0 => 1u64 << (-n),
        n => n as u64 * cluster,
    };
    (path, mft, record)
}

#[test]
fn ntfs_bad_mft_record_signature() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mft, _) = ntfs_volume(dir.path());
    patch(&path, mft, b"BAAD");
    assert_ntfs_problem(&inspect(&path, "raw"), &["signature"]);
}

#[test]
fn ntfs_root_directory_fixup_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mft, record) = ntfs_volume(dir.path());
    // Record 5 is the root directory: break the update sequence check of its first sector.
    let root = mft + 5 * record;
    patch(&path, root + 510, &[0x12, 0x34]);
    let out = inspect(&path, "raw");
    assert_reported(&out, &["NTFS"]);
    assert!(
        !out.stdout.contains("Windows root: Windows"),
        "{}",
        out.all()
    );
}

#[test]
fn ntfs_bad_windows_directory_record() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mft, record) = ntfs_volume(dir.path());
    // The file record of the Windows directory (the first user record naming it) is damaged.
    let data = std::fs::read(&path).unwrap();
    let name: Vec<u8> = "Windows"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let windows = (24..256)
        .map(|n| mft + n * record)
        .find(|&at| {
            let rec = &data[at as usize..(at + record) as usize];
            rec.starts_with(b"FILE") && rec.windows(name.len()).any(|w| w == name)
        })
        .expect("a file record named Windows");
    patch(&path, windows, b"BAAD");
    let out = inspect(&path, "raw");
    assert_ntfs_problem(&out, &["signature"]);
    assert!(
        !out.stdout.contains("Windows root: Windows"),
        "{}",
        out.all()
    );
}

#[test]
fn ntfs_index_blocks_with_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ..) = ntfs_volume(dir.path());
    let mut data = std::fs::read(&path).unwrap();
    let mut found = 0;
    let mut at = 0;
    while let Some(i) = data[at..].windows(4).position(|w| w == b"INDX") {
        let start = at + i;
        for b in &mut data[start + 0x40..start + 0x200] {
            *b = b.wrapping_mul(31).wrapping_add(7);
        }
        found += 1;
        at = start + 4;
    }
    assert!(found > 0);
    std::fs::write(&path, data).unwrap();
    let out = inspect(&path, "raw");
    assert!(!out.all().is_empty());
}

#[test]
fn ntfs_volume_truncated_to_half() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ..) = ntfs_volume(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    truncate(&path, len / 2);
    assert_ntfs_problem(&inspect(&path, "raw"), &["boot sector states"]);
}

#[test]
fn ntfs_boot_sector_with_zero_sectors_per_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ..) = ntfs_volume(dir.path());
    patch(&path, 13, &[0]);
    assert_ntfs_problem(&inspect(&path, "raw"), &["sectors per cluster"]);
}

#[test]
fn ntfs_mft_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ..) = ntfs_volume(dir.path());
    patch(&path, 0x30, &0x10_0000_0000u64.to_le_bytes());
    assert_ntfs_problem(&inspect(&path, "raw"), &["file record"]);
}

/// The root directory's index root states an index record size of about 3 GiB (found by the
/// `ntfs_patch` target under AddressSanitizer: the `ntfs` crate allocated that much for the
/// first index node, which aborts the process under a memory limit). Refused before the walk.
#[test]
fn ntfs_index_record_size_absurd() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mft, record) = ntfs_volume(dir.path());
    let data = std::fs::read(&path).unwrap();
    let root = (mft + 5 * record) as usize;
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([data[at], data[at + 1]]));
    let u32_at = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
    // Walk the root directory's attributes to $INDEX_ROOT (type 0x90); its value holds the
    // indexed attribute type, the collation rule, then the index record size.
    let mut at = root + u16_at(root + 0x14);
    while u32_at(at) != 0x90 {
        assert_ne!(
            u32_at(at),
            0xFFFF_FFFF,
            "no $INDEX_ROOT in the root directory"
        );
        at += u32_at(at + 4) as usize;
    }
    let value = at + u16_at(at + 0x14);
    assert_eq!(u32_at(value + 8), 4096);
    patch(&path, (value + 8) as u64, &0xBA45_C000u32.to_le_bytes());
    assert_ntfs_problem(&inspect(&path, "raw"), &["index record size of 3125133312"]);
}

/// A boot sector stating 127 clusters of 64 KiB per file record (8 MiB): the crate would
/// allocate that for every record read. Refused when the volume is opened.
#[test]
fn ntfs_file_record_size_absurd() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ..) = ntfs_volume(dir.path());
    patch(&path, 13, &[128]);
    patch(&path, 0x40, &[127]);
    assert_ntfs_problem(
        &inspect(&path, "raw"),
        &["file record size of 8323072 bytes is not supported"],
    );
}

// ---- Not disks at all --------------------------------------------------------------------------

#[test]
fn inspect_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["inspect", dir.path().to_str().unwrap(), "--format", "raw"]);
    assert_eq!(out.code, 1, "{}", out.all());
}

#[test]
fn inspect_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing.qcow2");
    let out = run(&["inspect", path.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.all().contains("nothing.qcow2"), "{}", out.all());
}

#[test]
fn inspect_random_bytes_as_qcow2_and_raw() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noise");
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, noise).unwrap();
    assert_unknown(&inspect(&path, "qcow2"), &["qcow2"]);
    let out = inspect(&path, "raw");
    assert!(out.code == 0 || out.code == 1, "{}", out.all());
}

// ---- Registry hives inside a Windows volume ---------------------------------------------------

/// Where the hive files of the fuzz seed volume (fuzz/seeds/ntfs.img.gz: a dirty SYSTEM with its
/// LOG1, a clean SOFTWARE) lie in it.
struct Hives {
    volume: PathBuf,
    system: u64,
    log1: u64,
    software: u64,
}

/// The seed NTFS volume decompressed into `dir`, with its hive files located by their base blocks
/// (file type 6 is the log; the primary with unequal sequence numbers is the dirty SYSTEM).
fn hive_volume(dir: &Path) -> Hives {
    use std::io::Read;
    let gz = std::fs::File::open(PathBuf::from(ROOT).join("fuzz/seeds/ntfs.img.gz")).unwrap();
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut data)
        .unwrap();
    let le32 = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
    let (mut system, mut log1, mut software) = (None, None, None);
    for at in (0..data.len()).step_by(512) {
        if &data[at..at + 4] != b"regf" {
            continue;
        }
        if le32(at + 28) == 6 {
            log1 = Some(at as u64);
        } else if le32(at + 4) != le32(at + 8) {
            system = Some(at as u64);
        } else {
            software = Some(at as u64);
        }
    }
    let volume = dir.join("windows.raw");
    std::fs::write(&volume, &data).unwrap();
    Hives {
        volume,
        system: system.unwrap(),
        log1: log1.unwrap(),
        software: software.unwrap(),
    }
}

/// Recompute the checksum of the base block at `at` of the file at `path`.
fn fix_checksum(path: &Path, at: u64) {
    let data = std::fs::read(path).unwrap();
    let base = &data[at as usize..at as usize + 508];
    let sum = base.chunks_exact(4).fold(0u32, |acc, w| {
        acc ^ u32::from_le_bytes(w.try_into().unwrap())
    });
    patch(path, at + 508, &sum.to_le_bytes());
}

fn le32_at(path: &Path, at: u64) -> u32 {
    let data = std::fs::read(path).unwrap();
    u32::from_le_bytes(data[at as usize..at as usize + 4].try_into().unwrap())
}

/// The offset in the volume of the root key node cell (its size field) of the hive at `hive`.
fn root_cell(path: &Path, hive: u64) -> u64 {
    hive + 4096 + u64::from(le32_at(path, hive + 36))
}

/// Inspect the volume; the verdict must be reached and the output must name the problem.
fn assert_hive_problem(hives: &Hives, needles: &[&str]) {
    let out = inspect(&hives.volume, "raw");
    assert!(out.code == 0 || out.code == 1, "{}", out.all());
    assert!(out.stdout.contains("verdict"), "{}", out.all());
    assert_reported(&out, needles);
}

#[test]
fn seed_volume_verdict_replays_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let hives = hive_volume(dir.path());
    let out = inspect(&hives.volume, "raw");
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("replayed LOG1"), "{}", out.all());
}

#[test]
fn hive_with_a_bad_checksum_and_no_log() {
    let dir = tempfile::tempdir().unwrap();
    let hives = hive_volume(dir.path());
    patch(&hives.volume, hives.software + 508, &[1, 2, 3, 4]);
    assert_hive_problem(&hives, &["SOFTWARE", "checksum"]);
}

#[test]
fn log_with_a_bad_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let hives = hive_volume(dir.path());
    patch(&hives.volume, hives.log1 + 508, &[1, 2, 3, 4]);
    assert_hive_problem(&hives, &["LOG1", "checksum"]);
}

#[test]
fn log_with_a_damaged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let hives = hive_volume(dir.path());
    // The first HvLE entry's data: its hash no longer matches.
    patch(&hives.volume, hives.log1 + 512 + 100, &[0x55; 16]);
    assert_hive_problem(&hives, &["LOG1", "no valid log entry"]);
}

#[test]
fn hive_with_truncated_bins() {
    let dir = tempfile::tempdir().unwrap();
    let hives = hive_volume(dir.path());
    patch(
        &hives.volume,
        hives.software + 40,
        &0x0100_0000u32.to_le_bytes(),
    );
    fix_checksum(&hives.volume, hives.software);
    assert_hive_problem(&hives, &["SOFTWARE", "truncated hive"]);
}

#[test]
fn hive_with_a_cyclic_subkey_list() {
    let dir = tempfile::tempdir().unwrap();
    let hives = hive_volume(dir.path());
    // The root's subkey list becomes an index root whose first element is the list itself.
    let root = root_cell(&hives.volume, hives.software);
    let list = le32_at(&hives.volume, root + 4 + 28);
    let list_at = hives.software + 4096 + u64::from(list);
    patch(&hives.volume, list_at + 4, b"ri");
    patch(&hives.volume, list_at + 8, &list.to_le_bytes());
    assert_hive_problem(&hives, &["SOFTWARE", "cycle"]);
}

#[test]
fn hive_with_a_bad_root_key_node() {
    let dir = tempfile::tempdir().unwrap();
    let hives = hive_volume(dir.path());
    let root = root_cell(&hives.volume, hives.software);
    patch(&hives.volume, root + 4, b"xx");
    assert_hive_problem(&hives, &["SOFTWARE", "signature is not \"nk\""]);
}

#[test]
fn hive_with_an_absurd_key_name_length() {
    let dir = tempfile::tempdir().unwrap();
    let hives = hive_volume(dir.path());
    let root = root_cell(&hives.volume, hives.software);
    patch(&hives.volume, root + 4 + 72, &u16::MAX.to_le_bytes());
    assert_hive_problem(&hives, &["SOFTWARE", "does not fit"]);
}

#[test]
fn hive_with_a_cell_reaching_past_the_bins() {
    let dir = tempfile::tempdir().unwrap();
    let hives = hive_volume(dir.path());
    let root = root_cell(&hives.volume, hives.software);
    patch(&hives.volume, root, &(-0x0100_0000i32).to_le_bytes());
    assert_hive_problem(&hives, &["SOFTWARE", "reaches past"]);
}

#[test]
fn hive_with_an_absurd_value_size() {
    let dir = tempfile::tempdir().unwrap();
    let hives = hive_volume(dir.path());
    // Select\Current in SYSTEM: its value cell claims 2 GiB of data (in the primary and in the
    // log's copy of the page, whichever the reader ends up using).
    let data = std::fs::read(&hives.volume).unwrap();
    let cells: Vec<u64> = (0..data.len() - 32)
        .filter(|&at| &data[at..at + 4] == b"vk\x07\x00" && &data[at + 20..at + 27] == b"Current")
        .map(|at| at as u64)
        .collect();
    assert!(!cells.is_empty(), "no Current value cell");
    for vk in cells {
        patch(&hives.volume, vk + 4, &0x7FFF_FFF0u32.to_le_bytes());
    }
    assert_hive_problem(&hives, &["data size"]);
}

#[test]
fn dirty_hive_with_a_bad_checksum_is_recovered_from_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let hives = hive_volume(dir.path());
    patch(&hives.volume, hives.system + 508, &[1, 2, 3, 4]);
    let out = inspect(&hives.volume, "raw");
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("replayed LOG1"), "{}", out.all());
}

#[test]
fn ntfs_index_cycle() {
    // The root directory's index block (VCN 0) is made a node whose end entry points to a
    // subnode at VCN 0: itself. A walk of the root never ends unless it is bounded.
    let dir = tempfile::tempdir().unwrap();
    let hives = hive_volume(dir.path());
    let path = hives.volume;
    let data = std::fs::read(&path).unwrap();
    let le = |at: usize, n: usize| -> u64 {
        let mut v = 0u64;
        for i in (0..n).rev() {
            v = (v << 8) | u64::from(data[at + i]);
        }
        v
    };
    // The INDX block at VCN 0 that lists "Windows" (the root directory's).
    let windows: Vec<u8> = "Windows"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let block = (0..data.len() - 4096)
        .step_by(512)
        .find(|&at| {
            &data[at..at + 4] == b"INDX"
                && le(at + 16, 8) == 0
                && data[at..at + 4096]
                    .windows(windows.len())
                    .any(|w| w == windows)
        })
        .expect("the root directory's index block") as u64;
    let header = block + 0x18;
    let first = header + le(header as usize, 4);
    // Walk to the end entry (flag 2).
    let mut entry = first;
    while le(entry as usize + 12, 2) & 2 == 0 {
        entry += le(entry as usize + 8, 2);
    }
    let used = le(header as usize + 4, 4);
    patch(&path, header + 4, &(used as u32 + 8).to_le_bytes());
    patch(&path, header + 12, &[1]);
    patch(&path, entry + 8, &24u16.to_le_bytes());
    patch(&path, entry + 12, &3u16.to_le_bytes());
    patch(&path, entry + 16, &0u64.to_le_bytes());
    let out = inspect(&path, "raw");
    assert_ntfs_problem(&out, &["has a cycle", "reached twice"]);
    assert!(out.stdout.contains("unknown"), "{}", out.all());
}
