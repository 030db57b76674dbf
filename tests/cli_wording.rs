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
