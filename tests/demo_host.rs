//! The demo host as a whole: fixtures/hosts/make-demo.sh writes exactly what the tests use, and
//! `scan` reads every Windows candidate's verdict from the image its domain boots (the images
//! fixtures/make-images.sh built from the registry scenarios), so each domain gets the verdict
//! its scenario stands for.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::ROOT;

#[test]
fn make_demo_sh_writes_what_the_tests_use() {
    let dir = tempfile::tempdir().unwrap();
    // A path with characters that need escaping in XML and in sed.
    let script_out = dir.path().join("by script & sed|x");
    let out = Command::new("sh")
        .arg(Path::new(ROOT).join("fixtures/hosts/make-demo.sh"))
        .arg(&script_out)
        .current_dir(dir.path())
        .output()
        .expect("run make-demo.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("test://{}/demo.xml\n", script_out.display())
    );
    let helper_out = dir.path().join("by helper");
    support::write_demo_host(&helper_out);
    let mut files = vec![Path::new("demo.xml").to_path_buf()];
    for e in std::fs::read_dir(helper_out.join("demo")).unwrap() {
        files.push(Path::new("demo").join(e.unwrap().file_name()));
    }
    assert_eq!(files.len(), 17);
    for f in &files {
        let a = std::fs::read_to_string(script_out.join(f)).unwrap();
        let b = std::fs::read_to_string(helper_out.join(f)).unwrap();
        assert_eq!(a, b, "{}", f.display());
        assert!(!a.contains("@FIXTURES@"), "{}", f.display());
        roxmltree::Document::parse(&a).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
    let dc = std::fs::read_to_string(script_out.join("demo/db-static01.xml")).unwrap();
    assert!(dc.contains(&format!(
        "<source file='{ROOT}/fixtures/images/static-ip.qcow2'/>"
    )));
}

/// One target's verdict as a line: `ready`, `not-ready: CHECK; CHECK`, or `unknown: WHY`.
fn line(r: &Value) -> String {
    let state = r["state"].as_str().unwrap_or("(none)");
    if let Some(failed) = r["failed"].as_array() {
        let names: Vec<&str> = failed.iter().filter_map(Value::as_str).collect();
        format!("{state}: {}", names.join("; "))
    } else if let Some(why) = r["why"].as_str() {
        format!("{state}: {why}")
    } else {
        state.to_string()
    }
}

const BLK_LEGACY: &str = r"viostor bound to PCI\VEN_1AF4&DEV_1001 (legacy)";
const BLK_MODERN: &str = r"viostor bound to PCI\VEN_1AF4&DEV_1042 (modern)";
const SCSI_LEGACY: &str = r"vioscsi bound to PCI\VEN_1AF4&DEV_1004 (legacy)";
const SCSI_MODERN: &str = r"vioscsi bound to PCI\VEN_1AF4&DEV_1048 (modern)";
const NIC_LEGACY: &str = r"PCI\VEN_1AF4&DEV_1000 (legacy)";
const NIC_MODERN: &str = r"PCI\VEN_1AF4&DEV_1041 (modern)";

#[test]
fn every_demo_guest_gets_the_verdict_of_its_image() {
    let uri = support::demo_uri();
    let out = Command::new(env!("CARGO_BIN_EXE_virtio-migrate"))
        .args(["-c", uri, "--json", "scan"])
        .current_dir(ROOT)
        .env_remove("LIBVIRT_DEFAULT_URI")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();

    let no_viostor =
        |id: &str| format!("not-ready: viostor.sys present; service viostor present; {id}");
    let no_vioscsi =
        |id: &str| format!("not-ready: vioscsi.sys present; service vioscsi present; {id}");
    // A bare netkvm.sys does not count: only a package staged for the id the NIC presents.
    let no_netkvm = |id: &str| format!("not-ready: netkvm package staged for {id}");
    let ready = || "ready".to_string();
    let unknown = |why: &str| format!("unknown: {why}");
    let bitlocker =
        unknown("partition 2 is BitLocker-encrypted: its content cannot be inspected offline");
    let missing = unknown(&format!(
        "cannot open {ROOT}/fixtures/images/win2k3-legacy.img: No such file or directory (os error 2)"
    ));
    let rbd = unknown("boot disk hda is a network disk (rbd): not readable offline");
    let volume = unknown("boot disk hda is storage-pool volume default/win7-volume.qcow2, which libvirt does not resolve to a local file or device (check virsh vol-path; a path can be inspected with inspect PATH)");
    // name → virtio-blk, virtio-scsi, virtio-net, hazard kinds (None: not a candidate, not read).
    type Row = Option<(String, String, String, Vec<&'static str>)>;
    let expected: Vec<(&str, Row)> = vec![
        // 2008 R2, static addresses; viostor bound for the legacy id, which i440fx shows.
        (
            "db-static01",
            Some((
                ready(),
                no_vioscsi(SCSI_LEGACY),
                no_netkvm(NIC_LEGACY),
                vec!["static-ip"],
            )),
        ),
        // Windows 11 with vioscsi only; policy denies the virtio-blk ids.
        (
            "dev-win11",
            Some((
                format!(
                    "{}; viostor not denied by device-install policy",
                    no_viostor(BLK_MODERN)
                ),
                ready(),
                no_netkvm(NIC_MODERN),
                vec!["device-install-restrictions", "crash-auto-reboot"],
            )),
        ),
        // CloudStack overlay over its template: the overlay has the drivers.
        (
            "i-2-34-VM",
            Some((
                ready(),
                no_vioscsi(SCSI_LEGACY),
                ready(),
                vec!["crash-auto-reboot"],
            )),
        ),
        (
            "instance-0000002a",
            Some((
                ready(),
                no_vioscsi(SCSI_LEGACY),
                ready(),
                vec!["crash-auto-reboot"],
            )),
        ),
        // The 0x7B trap: viostor installed but Start=3 and unbound.
        (
            "legacy-app01",
            Some((
                format!("not-ready: viostor Start=0 (boot); {BLK_LEGACY}"),
                no_vioscsi(SCSI_LEGACY),
                no_netkvm(NIC_LEGACY),
                vec!["crash-auto-reboot"],
            )),
        ),
        (
            "win10-q35",
            Some((
                no_viostor(BLK_MODERN),
                no_vioscsi(SCSI_MODERN),
                no_netkvm(NIC_MODERN),
                vec!["hibernation", "crash-auto-reboot"],
            )),
        ),
        // Server 2019 Core: netkvm staged in the DriverStore is enough for the NIC.
        (
            "win2019-uefi",
            Some((
                no_viostor(BLK_MODERN),
                no_vioscsi(SCSI_MODERN),
                ready(),
                vec!["san-policy", "crash-auto-reboot"],
            )),
        ),
        // Ready only because SYSTEM.LOG1 on the volume was replayed (netkvm.sys without a staged
        // package: the NIC is not).
        (
            "win2k12r2-bootorder",
            Some((
                ready(),
                no_vioscsi(SCSI_LEGACY),
                no_netkvm(NIC_LEGACY),
                vec!["dirty-hive", "crash-auto-reboot"],
            )),
        ),
        (
            "win2k12r2-hibernated",
            Some((
                ready(),
                no_vioscsi(SCSI_LEGACY),
                no_netkvm(NIC_LEGACY),
                vec![
                    "filesystem-dirty",
                    "hibernation",
                    "dirty-hive",
                    "crash-auto-reboot",
                ],
            )),
        ),
        (
            "win2k16-bitlocker",
            Some((
                bitlocker.clone(),
                bitlocker.clone(),
                bitlocker,
                vec!["bitlocker"],
            )),
        ),
        (
            "win2k3-legacy",
            Some((missing.clone(), missing.clone(), missing, vec![])),
        ),
        ("win2k8-rbd", Some((rbd.clone(), rbd.clone(), rbd, vec![]))),
        (
            "win7-volume",
            Some((volume.clone(), volume.clone(), volume, vec![])),
        ),
        ("centos7-old", None),
        ("debian12-web", None),
        ("win2k16-virtio", None),
    ];
    let domains = report["hosts"][0]["domains"].as_array().unwrap();
    assert_eq!(domains.len(), expected.len());
    for (d, (name, want)) in domains.iter().zip(&expected) {
        assert_eq!(d["name"], *name);
        let v = &d["verdict"];
        let got = (!v.is_null()).then(|| {
            (
                line(&v["blk"]),
                line(&v["scsi"]),
                line(&v["nic"]),
                v["hazards"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h["kind"].as_str().unwrap())
                    .collect::<Vec<_>>(),
            )
        });
        let want = want
            .as_ref()
            .map(|(b, s, n, h)| (b.clone(), s.clone(), n.clone(), h.clone()));
        assert_eq!(got, want, "{name}");
    }
    // The Windows version each verdict was read from matches its domain.
    for (name, windows) in [
        ("db-static01", "host DB-STATIC01"),
        ("dev-win11", "Windows 11 ("),
        ("i-2-34-VM", "Windows Server 2008 R2 ("),
        ("legacy-app01", "host LEGACY-APP01"),
        ("win10-q35", "host DESKTOP-7QK2M4N"),
        ("win2019-uefi", "Windows Server 2019 ("),
        ("win2k12r2-bootorder", "Windows Server 2012 R2 ("),
    ] {
        let d = domains.iter().find(|d| d["name"] == name).unwrap();
        let w = d["verdict"]["windows"].as_str().unwrap_or_default();
        assert!(w.contains(windows), "{name}: {w}");
    }
    // Each verdict says what to do, one line per failed check and hazard, and which virtio-win
    // build the guest has.
    let d = domains
        .iter()
        .find(|d| d["name"] == "legacy-app01")
        .unwrap();
    let remedies: Vec<&str> = d["verdict"]["remedies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        remedies.contains(
            &r#"viostor Start=0 (boot): guest: `reg add "HKLM\SYSTEM\ControlSet001\Services\viostor" /v Start /t REG_DWORD /d 0 /f`"#
        ),
        "{remedies:#?}"
    );
    assert!(remedies
        .iter()
        .any(|r| r.starts_with("crash-auto-reboot: guest: `reg add")));
    assert!(d["verdict"]["hazards"][0]["remedy"]
        .as_str()
        .unwrap()
        .contains("AutoReboot"));
    assert_eq!(d["verdict"]["driver_versions"][0]["driver"], "viostor");
    assert_eq!(
        d["verdict"]["driver_versions"][0]["version"],
        "100.95.104.26200"
    );
}
