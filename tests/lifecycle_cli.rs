//! The `convert`/`rollback` command lines on libvirt's test driver (one process per run, so
//! only what lives in the state directory carries over between runs).

mod support;

use std::process::{Command, Output, Stdio};

use virtio_migrate::host::lifecycle::lock::DomainLock;

const UUID: &str = "0d7f6a4e-1c2b-4a3d-9e8f-112233445566";

fn setup() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node.xml");
    std::fs::write(
        &node,
        format!(
            "<node><domain type='test'><name>w10</name><uuid>{UUID}</uuid>\
             <memory unit='MiB'>256</memory><os><type>hvm</type><boot dev='hd'/></os><devices>\
             <disk type='file' device='disk'><source file='/x.img'/><target dev='hda' bus='ide'/></disk>\
             <interface type='user'><model type='e1000'/></interface>\
             </devices></domain></node>"
        ),
    )
    .unwrap();
    let uri = format!("test://{}", node.display());
    (dir, uri)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_virtio-migrate"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn convert_without_yes_and_without_a_terminal_is_refused() {
    let (dir, uri) = setup();
    let state = dir.path().join("state").display().to_string();
    let out = run(&[
        "-c",
        &uri,
        "convert",
        "--domain",
        "w10",
        "--force",
        "--nics",
        "always",
        "--state-dir",
        &state,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--yes"), "{err}");
    // A refused run leaves no backup that `rollback --list` would offer.
    assert!(!dir.path().join("state").join("backups").exists());
    let list = run(&["-c", &uri, "rollback", "--list", "--state-dir", &state]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.starts_with("no backups"), "{text}");
}

#[test]
fn convert_with_yes_succeeds_and_prints_step_times() {
    let (dir, uri) = setup();
    let state = dir.path().join("state").display().to_string();
    let out = run(&[
        "-c",
        &uri,
        "convert",
        "--domain",
        "w10",
        "--force",
        "--nics",
        "always",
        "--state-dir",
        &state,
        "--yes",
        "--verify-time",
        "1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("w10: converted, started, verified"), "{text}");
    assert!(text.contains("define"), "{text}");
    let list = run(&["-c", &uri, "rollback", "--list", "--state-dir", &state]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains(UUID) && text.contains("before-convert"),
        "{text}"
    );
}

#[test]
fn rollback_list_shows_only_the_connections_domains_unless_all_hosts() {
    let (dir, uri) = setup();
    let (_other_dir, other_uri) = setup();
    let state = dir.path().join("state").display().to_string();
    let out = run(&[
        "-c",
        &uri,
        "convert",
        "--domain",
        "w10",
        "--force",
        "--nics",
        "always",
        "--state-dir",
        &state,
        "--yes",
        "--verify-time",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let here = run(&[
        "-c",
        &uri,
        "--json",
        "rollback",
        "--list",
        "--state-dir",
        &state,
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&here.stdout).unwrap();
    assert_eq!(doc["schema_version"], 1, "{doc}");
    assert_eq!(doc["uri"], uri.as_str(), "{doc}");
    let backups = doc["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "{doc}");
    assert_eq!(backups[0]["uri"], uri.as_str(), "{doc}");
    // Another connection (another host) does not see it…
    let there = run(&[
        "-c",
        &other_uri,
        "rollback",
        "--list",
        "--state-dir",
        &state,
    ]);
    let text = String::from_utf8_lossy(&there.stdout);
    assert!(
        text.starts_with(&format!("no backups of the domains on {other_uri}")),
        "{text}"
    );
    // …unless asked for every host's.
    let all = run(&[
        "-c",
        &other_uri,
        "rollback",
        "--list",
        "--all-hosts",
        "--state-dir",
        &state,
    ]);
    let text = String::from_utf8_lossy(&all.stdout);
    assert!(text.contains(UUID) && text.contains(&uri), "{text}");
}

#[test]
fn a_blocked_plan_is_refused_with_its_exit_code() {
    let (dir, uri) = setup();
    let state = dir.path().join("state").display().to_string();
    let out = run(&[
        "-c",
        &uri,
        "convert",
        "--domain",
        "w10",
        "--state-dir",
        &state,
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is blocked (nothing was changed)"), "{err}");
    assert!(err.contains("--force overrides this"), "{err}");
    assert!(!dir.path().join("state").join("backups").exists());
}

#[test]
fn a_locked_domain_is_refused_with_the_holder() {
    let (dir, uri) = setup();
    let state = dir.path().join("state");
    let _held = DomainLock::acquire(&state, UUID, "w10", "convert held by the test").unwrap();
    let out = run(&[
        "-c",
        &uri,
        "convert",
        "--domain",
        "w10",
        "--force",
        "--nics",
        "always",
        "--state-dir",
        &state.display().to_string(),
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("locked by another virtio-migrate run"),
        "{err}"
    );
    assert!(err.contains("convert held by the test"), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
}
