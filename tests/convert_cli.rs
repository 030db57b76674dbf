//! `virtio-migrate convert --dry-run` end to end against libvirt's test driver: a node file holding
//! the fixture domains (`test:///ABSOLUTE/PATH/node.xml`), read through the real API
//! (`INACTIVE | SECURE`), planned, printed; exit codes; `--json`; `--output`; colour.

use std::path::{Path, PathBuf};
use std::process::Command;

fn node_file(dir: &Path) -> PathBuf {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/domains");
    let mut node = String::from("<node>\n");
    for name in ["win2k8r2", "already-virtio", "cloudstack"] {
        let xml = std::fs::read_to_string(fixtures.join(format!("{name}.xml"))).unwrap();
        node.push_str(&xml);
    }
    node.push_str("</node>\n");
    let path = dir.join("node.xml");
    std::fs::write(&path, node).unwrap();
    path
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn convert(node: &Path, args: &[&str]) -> Output {
    let uri = format!("test://{}", node.display());
    let out = Command::new(env!("CARGO_BIN_EXE_virtio-migrate"))
        .args(["-c", &uri, "convert"])
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn dry_run_prints_the_plan_and_the_diff_and_exits_blocked_without_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_file(dir.path());
    let before = std::fs::read(&node).unwrap();
    let out = convert(
        &node,
        &["--domain", "win2k8r2-app01", "--dry-run", "--no-inspect"],
    );
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("domain:   win2k8r2-app01"));
    assert!(out.stdout.contains("drivers:  not checked"));
    assert!(out.stdout.contains("drivers were not checked"));
    assert!(out.stdout.contains("-      <target dev='hda' bus='ide'/>"));
    assert!(out
        .stdout
        .contains("+      <target dev='vda' bus='virtio'/>"));
    assert!(!out.stdout.contains('\x1b'), "colour on a pipe");
    // Nothing was written: the node file is as it was, and nothing else is in the directory.
    assert_eq!(std::fs::read(&node).unwrap(), before);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn forced_plan_writes_the_new_xml_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_file(dir.path());
    let file = dir.path().join("planned.xml");
    let out = convert(
        &node,
        &[
            "--domain",
            "win2k8r2-app01",
            "--dry-run",
            "--force",
            "--bus",
            "scsi",
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let xml = std::fs::read_to_string(&file).unwrap();
    assert!(xml.contains("<target dev='sda' bus='scsi'/>"));
    assert!(xml.contains("model='virtio-scsi'"));
    assert!(virtio_migrate::plan::validate::check(&xml, None).is_empty());
    virtio_migrate::plan::validate::schema(&xml).unwrap();

    let out = convert(
        &node,
        &[
            "--domain",
            "win2k8r2-app01",
            "--dry-run",
            "--no-inspect",
            "--force",
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["readiness"], serde_json::Value::Null);
    assert_eq!(v["blockers"][0]["kind"], "drivers-not-checked");
    assert_eq!(v["blockers"][0]["overridden"], true);
    assert!(v["new_xml"].as_str().unwrap().contains("bus='virtio'"));
    assert!(v["diff"]
        .as_str()
        .unwrap()
        .starts_with("--- win2k8r2-app01"));
}

#[test]
fn nothing_to_do_errors_and_colour() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_file(dir.path());
    let out = convert(&node, &["--domain", "win2022-web03", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("nothing to do"));
    assert!(!out.stdout.contains("---"));

    // Without --dry-run the conversion runs the lifecycle, which refuses a blocked plan before
    // it writes anything.
    let state = dir.path().join("state");
    let out = convert(
        &node,
        &[
            "--domain",
            "win2k8r2-app01",
            "--yes",
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("is blocked (nothing was changed)"),
        "{}",
        out.stderr
    );
    assert!(!state.join("backups").exists());

    let out = convert(&node, &["--domain", "no-such-domain", "--dry-run"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no domain named 'no-such-domain'"));

    let out = convert(
        &node,
        &["--domain", "i-2-34-VM", "--dry-run", "--color", "always"],
    );
    assert_eq!(out.code, 3);
    assert!(out.stdout.contains("rootDiskController=virtio"));
    assert!(out.stdout.contains("\x1b[31m-"));
    assert!(out.stdout.contains("\x1b[32m+"));
}

#[test]
fn output_never_overwrites_and_a_blocked_plan_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_file(dir.path());
    // A blocked plan (drivers not checked, no --force): nothing written.
    let file = dir.path().join("planned.xml");
    let out = convert(
        &node,
        &[
            "--domain",
            "win2k8r2-app01",
            "--dry-run",
            "--no-inspect",
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(!file.exists(), "a blocked plan was written");
    assert!(
        out.stderr.contains("not written, the plan is blocked"),
        "{}",
        out.stderr
    );
    // An existing file is refused, before any work, and left as it was.
    std::fs::write(&file, "the operator's own file\n").unwrap();
    let out = convert(
        &node,
        &[
            "--domain",
            "win2k8r2-app01",
            "--dry-run",
            "--no-inspect",
            "--force",
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("refusing to overwrite"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "the operator's own file\n"
    );
}
