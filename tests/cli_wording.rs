//! What the operator reads: the domain is given the same way to every command (positionally,
//! as to `scan`, or with `--domain`), and failed checks are called failed everywhere.

mod support;

use std::process::{Command, Output, Stdio};

fn run(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_virtio-migrate"))
        .args(["-c", support::demo_uri(), "--color", "never"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run virtio-migrate");
    eprintln!(
        "$ virtio-migrate {}\n{}{}(exit {:?})",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code()
    );
    out
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_domain_is_positional_for_convert_inspect_and_rollback_and_domain_still_works() {
    let positional = run(&["convert", "db-static01", "--dry-run"]);
    let flag = run(&["convert", "--domain", "db-static01", "--dry-run"]);
    assert_eq!(positional.status.code(), Some(0), "{}", text(&positional));
    assert_eq!(positional.stdout, flag.stdout);
    // Both at once is a usage error, as is neither.
    assert_eq!(
        run(&[
            "convert",
            "db-static01",
            "--domain",
            "db-static01",
            "--dry-run"
        ])
        .status
        .code(),
        Some(2)
    );
    assert_eq!(run(&["convert", "--dry-run"]).status.code(), Some(2));
    assert_eq!(
        run(&["convert", "db-static01", "--all", "--dry-run"])
            .status
            .code(),
        Some(2)
    );

    let positional = run(&["--json", "inspect", "db-static01"]);
    let flag = run(&["--json", "inspect", "--domain", "db-static01"]);
    assert_eq!(positional.status.code(), Some(0), "{}", text(&positional));
    let a: serde_json::Value = serde_json::from_slice(&positional.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&flag.stdout).unwrap();
    assert_eq!(a["domain"], "db-static01");
    assert_eq!(a["verdict"], b["verdict"]);

    let state = tempfile::tempdir().unwrap();
    let st = state.path().display().to_string();
    for args in [
        vec!["rollback", "db-static01", "--dry-run", "--state-dir", &st],
        vec![
            "rollback",
            "--domain",
            "db-static01",
            "--dry-run",
            "--state-dir",
            &st,
        ],
    ] {
        let out = run(&args);
        // No backup yet: a runtime error naming the domain's UUID, not a usage error.
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("no backup of domain"), "{}", text(&out));
    }
}

#[test]
fn convert_calls_failed_checks_failed() {
    let out = run(&["convert", "legacy-app01", "--dry-run"]);
    let t = text(&out);
    assert!(
        t.contains("viostor not ready (failed checks: viostor Start=0 (boot)"),
        "{t}"
    );
    assert!(!t.contains("not ready (viostor"), "{t}");
}

#[test]
fn the_dry_run_says_what_verify_will_trip_on() {
    // An agent channel, and no QEMU-GA service in the guest's SYSTEM hive.
    let out = run(&["convert", "win2019-uefi", "--dry-run"]);
    let t = text(&out);
    assert!(
        t.contains("has no QEMU guest agent service (Services\\QEMU-GA)")
            && t.contains("verify would wait for guest-ping in vain"),
        "{t}"
    );
    // Hibernation / Fast Startup blocks, --force overrides.
    let out = run(&["convert", "win2k12r2-hibernated", "--dry-run"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("Windows is hibernated or used Fast Startup"));
    let out = run(&["convert", "win2k12r2-hibernated", "--dry-run", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("(overridden by --force)"));
}

/// `--json`: one document with a `schema_version` for every command and mode, errors included.
#[test]
fn every_command_and_mode_prints_one_json_document_with_a_schema_version() {
    let state = tempfile::tempdir().unwrap();
    let st = state.path().display().to_string();
    let image = format!("{}/fixtures/images/mbr-sysreserved.qcow2", support::ROOT);
    let cases: Vec<Vec<&str>> = vec![
        vec!["scan"],
        vec!["inspect", &image],
        vec!["inspect", "db-static01"],
        vec!["convert", "db-static01", "--dry-run"],
        vec!["convert", "win2k12r2-hibernated", "--dry-run"],
        vec!["convert", "dev-win11", "--state-dir", &st, "--yes"],
        vec!["convert", "db-static01", "--state-dir", &st],
        vec![
            "convert",
            "db-static01",
            "--state-dir",
            &st,
            "--yes",
            "--verify-time",
            "1",
        ],
        vec!["convert", "--all", "--dry-run", "--state-dir", &st],
        vec![
            "convert",
            "--all",
            "--yes",
            "--no-verify",
            "--state-dir",
            &st,
        ],
        vec!["rollback", "--list", "--state-dir", &st],
        vec!["rollback", "db-static01", "--dry-run", "--state-dir", &st],
        vec!["rollback", "db-static01", "--yes", "--state-dir", &st],
        vec!["convert", "no-such-domain", "--dry-run"],
    ];
    for args in cases {
        let mut full = vec!["--json"];
        full.extend(&args);
        let out = run(&full);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: stdout is not one JSON document ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        assert!(
            doc["schema_version"].as_u64().is_some(),
            "{args:?}: no schema_version: {doc}"
        );
        if let Some(code) = doc.get("exit_code") {
            assert_eq!(code.as_i64(), out.status.code().map(i64::from), "{args:?}");
        }
    }
}

#[test]
fn hazards_have_one_shape_in_scan_inspect_and_convert() {
    let shape = |h: &serde_json::Value| {
        let o = h
            .as_object()
            .unwrap_or_else(|| panic!("a hazard that is no object: {h}"));
        assert!(o["kind"].is_string() && o["evidence"].is_string(), "{h}");
    };
    let plan: serde_json::Value = serde_json::from_slice(
        &run(&["--json", "convert", "win2k12r2-hibernated", "--dry-run"]).stdout,
    )
    .unwrap();
    let hazards = plan["readiness"]["hazards"].as_array().unwrap();
    assert!(!hazards.is_empty());
    hazards.iter().for_each(shape);
    assert!(hazards.iter().any(|h| h["kind"] == "hibernation"), "{plan}");
    // scan: every "hazards" array anywhere in the document.
    fn walk(v: &serde_json::Value, found: &mut Vec<serde_json::Value>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    if k == "hazards" {
                        found.extend(x.as_array().cloned().unwrap_or_default());
                    } else {
                        walk(x, found);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, found)),
            _ => {}
        }
    }
    let scan: serde_json::Value = serde_json::from_slice(&run(&["--json", "scan"]).stdout).unwrap();
    let mut found = Vec::new();
    walk(&scan, &mut found);
    assert!(!found.is_empty(), "{scan}");
    found.iter().for_each(shape);
    let inspect: serde_json::Value =
        serde_json::from_slice(&run(&["--json", "inspect", "win2k12r2-hibernated"]).stdout)
            .unwrap();
    inspect["verdict"]["hazards"]
        .as_array()
        .unwrap()
        .iter()
        .for_each(shape);
}

#[test]
fn verbose_says_what_the_tool_is_doing() {
    let out = run(&["-v", "convert", "db-static01", "--dry-run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    for said in [
        "connecting to test:///",
        "connected to",
        "inspecting the boot disk of db-static01",
        "opening ",
        "planning db-static01",
    ] {
        assert!(err.contains(said), "-v did not say {said:?}: {err}");
    }
    let quiet = run(&["convert", "db-static01", "--dry-run"]);
    let err = String::from_utf8_lossy(&quiet.stderr);
    assert!(!err.contains("connecting to"), "{err}");
}
