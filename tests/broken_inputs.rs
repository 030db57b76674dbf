//! Broken inputs against the real binary, under a 256 MiB address-space limit (`prlimit --as`,
//! util-linux): truncated and corrupted copies of the committed fixtures, made at test time in a
//! temporary directory. Each run must end with a one-line error or a report naming the problem,
//! with a documented exit code — never a panic (exit 101, "panicked"), never a signal (an
//! allocation over the limit aborts the process), never more memory than the limit.

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The address-space limit every run gets (256 MiB).
const MEMORY_LIMIT: u64 = 256 << 20;

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
    let out = Command::new("prlimit")
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
    let out = run(&["-c", &uri, "convert", "-d", "huge-description", "--dry-run"]);
    assert!([1, 3].contains(&out.code), "{}", out.all());
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
