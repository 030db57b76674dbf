//! The `convert`/`rollback` command lines on libvirt's test driver (one process per run, so
//! only what lives in the state directory carries over between runs).

mod support;

use std::process::{Command, Output, Stdio};

use virtio_migrate::lifecycle::lock::DomainLock;

const UUID: &str = "0d7f6a4e-1c2b-4a3d-9e8f-112233445566";

fn setup() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node.xml");
    std::fs::write(
        &node,
        format!(
            "<node><domain type='test'><name>w10</name><uuid>{UUID}</uuid>\
             <memory unit='MiB'>256</memory><os><type>hvm</type></os><devices>\
             <disk type='file' device='disk'><source file='/x.img'/><target dev='hda' bus='ide'/></disk>\
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

/// A new definition for the test domain, as a file.
fn definition(dir: &std::path::Path, uri: &str) -> String {
    virt::error::clear_error_callback();
    let conn = virt::connect::Connect::open(Some(uri)).unwrap();
    let dom = conn.lookup_domain_by_name("w10").unwrap();
    let xml = dom
        .xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE | virt::sys::VIR_DOMAIN_XML_SECURE)
        .unwrap();
    let path = dir.join("new.xml");
    std::fs::write(&path, support::rewrite::to_virtio(&xml)).unwrap();
    path.display().to_string()
}

#[test]
fn convert_without_yes_and_without_a_terminal_is_refused() {
    let (dir, uri) = setup();
    let def = definition(dir.path(), &uri);
    let state = dir.path().join("state").display().to_string();
    let out = run(&[
        "-c",
        &uri,
        "convert",
        "--domain",
        "w10",
        "--definition",
        &def,
        "--state-dir",
        &state,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--yes"), "{err}");
}

#[test]
fn convert_with_yes_succeeds_and_prints_step_times() {
    let (dir, uri) = setup();
    let def = definition(dir.path(), &uri);
    let state = dir.path().join("state").display().to_string();
    let out = run(&[
        "-c",
        &uri,
        "convert",
        "--domain",
        "w10",
        "--definition",
        &def,
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
    let list = run(&["rollback", "--list", "--state-dir", &state]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains(UUID) && text.contains("before-convert"),
        "{text}"
    );
}

#[test]
fn a_definition_for_another_domain_is_refused() {
    let (dir, uri) = setup();
    let path = dir.path().join("other.xml");
    std::fs::write(&path, "<domain type='test'><name>other</name></domain>").unwrap();
    let state = dir.path().join("state").display().to_string();
    let out = run(&[
        "-c",
        &uri,
        "convert",
        "--domain",
        "w10",
        "--definition",
        &path.display().to_string(),
        "--state-dir",
        &state,
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a definition of w10"), "{err}");
}

#[test]
fn a_locked_domain_is_refused_with_the_holder() {
    let (dir, uri) = setup();
    let def = definition(dir.path(), &uri);
    let state = dir.path().join("state");
    let _held = DomainLock::acquire(&state, UUID, "w10", "convert held by the test").unwrap();
    let out = run(&[
        "-c",
        &uri,
        "convert",
        "--domain",
        "w10",
        "--definition",
        &def,
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
