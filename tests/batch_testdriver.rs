//! `convert --all` on libvirt's test driver: the bundled demo host (tests/support/demo.rs) has
//! ready, blocked, managed, unreadable and nothing-to-do candidates. The test driver serves each
//! process its own copy of the host, so what a batch did is read from its JSON results and the
//! journals it wrote. (Its shutdown is synchronous: no guest waits.)

mod support;

use std::collections::BTreeMap;
use std::path::Path;
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

/// domain → (result, why)
fn results(out: &Output) -> BTreeMap<String, (String, String)> {
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON document");
    doc["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["domain"].as_str().unwrap().to_string(),
                (
                    r["result"].as_str().unwrap().to_string(),
                    r["why"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect()
}

fn result_of<'a>(r: &'a BTreeMap<String, (String, String)>, d: &str) -> &'a str {
    r.get(d)
        .map(|x| x.0.as_str())
        .unwrap_or_else(|| panic!("{d} missing: {r:?}"))
}

fn last_step(state: &Path, uuid: &str) -> Option<String> {
    let text = std::fs::read_to_string(state.join("journal").join(format!("{uuid}.jsonl"))).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["step"].as_str().map(str::to_string))
        .next_back()
}

const DB_STATIC: &str = "5a7a1c01-0000-4000-8000-0000000db001";
const LEGACY: &str = "2008a001-1e6a-4c79-8a01-000000000a01";

#[test]
fn all_dry_run_plans_every_candidate_and_exits_blocked() {
    let state = tempfile::tempdir().unwrap();
    let st = state.path().display().to_string();
    let out = run(&[
        "--json",
        "convert",
        "--all",
        "--dry-run",
        "--state-dir",
        &st,
    ]);
    assert_eq!(out.status.code(), Some(3));
    let r = results(&out);
    assert_eq!(result_of(&r, "db-static01"), "ready");
    assert_eq!(result_of(&r, "win2k12r2-bootorder"), "ready");
    assert_eq!(result_of(&r, "dev-win11"), "nothing-to-do");
    assert_eq!(result_of(&r, "legacy-app01"), "blocked");
    assert!(r["legacy-app01"].1.contains("viostor"), "{r:?}");
    assert_eq!(result_of(&r, "instance-0000002a"), "blocked");
    assert!(r["instance-0000002a"].1.contains("Nova"), "{r:?}");
    // Not candidates: not in the batch.
    assert!(!r.contains_key("debian12-web") && !r.contains_key("win2k16-virtio"));
    // Each plan is in the document; nothing was written.
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for res in doc["results"].as_array().unwrap() {
        assert!(res["plan"]["status"].is_string(), "{res}");
    }
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0);

    // Human: each plan, then the table.
    let out = run(&["convert", "--all", "--dry-run", "--state-dir", &st]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("domain:   db-static01"), "{text}");
    assert!(
        text.contains("+      <target dev='vda' bus='virtio'/>"),
        "{text}"
    );
    let table = text.rsplit("DOMAIN ").next().unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("legacy-app01") && l.contains("blocked")),
        "{table}"
    );
    assert!(text.contains("candidate(s):"), "{text}");
}

#[test]
fn all_converts_the_ready_ones_and_one_failure_does_not_stop_the_others() {
    for parallel in ["1", "3"] {
        let state = tempfile::tempdir().unwrap();
        let st = state.path().display().to_string();
        let out = run(&[
            "--json",
            "convert",
            "--all",
            "--yes",
            "--parallel",
            parallel,
            "--state-dir",
            &st,
            "--verify-time",
            "1",
        ]);
        // win2019-uefi has a guest agent channel, which the test driver cannot ping: it is
        // rolled back, the others still convert; a rollback makes the batch exit 1.
        assert_eq!(out.status.code(), Some(1), "parallel {parallel}");
        let r = results(&out);
        assert_eq!(result_of(&r, "win2019-uefi"), "rolled-back", "{r:?}");
        for d in ["db-static01", "win2k12r2-bootorder", "win2k12r2-hibernated"] {
            assert_eq!(result_of(&r, d), "converted", "{d} (parallel {parallel})");
        }
        assert_eq!(result_of(&r, "legacy-app01"), "blocked");
        assert_eq!(result_of(&r, "dev-win11"), "nothing-to-do");
        assert_eq!(last_step(state.path(), DB_STATIC).as_deref(), Some("done"));
        // Blocked domains are refused before any journal or backup.
        assert_eq!(last_step(state.path(), LEGACY), None);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let db = doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["domain"] == "db-static01")
            .unwrap();
        assert!(
            db["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["step"] == "define"),
            "{db}"
        );
    }
}

#[test]
fn all_exits_blocked_when_nothing_failed() {
    let state = tempfile::tempdir().unwrap();
    let st = state.path().display().to_string();
    let out = run(&[
        "convert",
        "--all",
        "--yes",
        "--no-verify",
        "--state-dir",
        &st,
    ]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("win2019-uefi") && l.contains("converted")),
        "{text}"
    );
    assert!(text.contains("4 converted"), "{text}");
}

#[test]
fn all_without_yes_and_without_a_terminal_changes_nothing() {
    let state = tempfile::tempdir().unwrap();
    let st = state.path().display().to_string();
    let out = run(&["convert", "--all", "--state-dir", &st]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --yes"));
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0);
}

#[test]
fn all_conflicts_with_domain_and_parallel_needs_all() {
    let out = run(&["convert", "--all", "--domain", "db-static01", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&[
        "convert",
        "--domain",
        "db-static01",
        "--parallel",
        "2",
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["convert", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn dry_run_and_scan_warn_about_an_unfinished_run() {
    use virtio_migrate::host::lifecycle::journal::{Journal, RunKind, Step};
    let state = tempfile::tempdir().unwrap();
    let st = state.path().display().to_string();
    let mut j = Journal::begin(
        state.path(),
        DB_STATIC,
        "20250101T000000Z",
        RunKind::Convert,
        "db-static01",
        "virtio-migrate convert --domain db-static01",
    )
    .unwrap();
    j.record(Step::Backup, "test").unwrap();
    drop(j);

    let out = run(&[
        "convert",
        "--domain",
        "db-static01",
        "--dry-run",
        "--state-dir",
        &st,
    ]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: an earlier `convert` of db-static01"),
        "{err}"
    );
    assert!(err.contains("rollback --domain db-static01"), "{err}");

    let scan = |dir: &str| {
        Command::new(env!("CARGO_BIN_EXE_virtio-migrate"))
            .args(["-c", support::demo_uri(), "scan", "--no-inspect"])
            .env("VIRTIO_MIGRATE_STATE_DIR", dir)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = scan(&st);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("earlier `convert` of db-static01"), "{err}");
    assert!(!err.contains("legacy-app01"), "{err}");
    // A state directory that does not exist: no warning, no error.
    let missing = state.path().join("missing");
    let out = scan(&missing.display().to_string());
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
    assert!(!missing.exists());
}

#[test]
fn all_only_takes_the_named_candidates_and_needs_all() {
    let state = tempfile::tempdir().unwrap();
    let st = state.path().display().to_string();
    // Two candidates by name and UUID, and a domain that is no candidate (Linux): a batch of two.
    let out = run(&[
        "--json",
        "convert",
        "--all",
        "--only",
        "db-static01",
        "--only",
        LEGACY,
        "--only",
        "debian12-web",
        "--dry-run",
        "--state-dir",
        &st,
    ]);
    let r = results(&out);
    assert_eq!(
        r.keys().map(String::as_str).collect::<Vec<_>>(),
        ["db-static01", "legacy-app01"],
        "{r:?}"
    );
    let out = run(&[
        "convert",
        "--domain",
        "db-static01",
        "--only",
        "db-static01",
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--only DOMAIN needs --all"));
}
