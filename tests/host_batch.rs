//! `convert --all` on a real libvirtd + QEMU with several real guests at once (see
//! tests/support/host.rs for when this runs, skips or fails): one ready guest, one whose viostor
//! is not boot-ready, and one ready guest with a virtio data disk beside its IDE root and
//! `<os><boot dev='hd'/>`. The table, the exit code and every definition afterwards.
//!
//! The daemon is shared (other tests, other people's domains): the batch is limited to the
//! test's own guests with `convert --all --only NAME…`, and a `--dry-run` first checks that the
//! batch holds exactly those three.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::host::{
    DiskSpec, GuestSpec, Host, ImageFormat, TestGuest, NOT_READY_IMAGE, READY_IMAGE,
};

const BOOT: Duration = Duration::from_secs(120);

fn run(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_virtio-migrate"))
        .args(["-c", support::host::SYSTEM_URI])
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

/// `virtio-migrate GLOBAL convert --all --only NAME… EXTRA` over `guests`.
fn batch(guests: &[&TestGuest<'_>], global: &[&str], extra: &[&str]) -> Output {
    let mut args: Vec<&str> = global.to_vec();
    args.extend(["convert", "--all"]);
    for g in guests {
        args.extend(["--only", g.name.as_str()]);
    }
    args.extend(extra);
    run(&args)
}

/// A Windows hint in the definition (libosinfo metadata), so that scan counts it as a candidate.
fn hint_windows(g: &mut TestGuest<'_>) {
    let at = g.xml.find("  <memory").expect("<memory>");
    g.xml.insert_str(
        at,
        "  <metadata>\n    <libosinfo:libosinfo xmlns:libosinfo=\"http://libosinfo.org/xmlns/libvirt/domain/1.0\">\n      \
         <libosinfo:os id=\"http://microsoft.com/win/2k8r2\"/>\n    </libosinfo:libosinfo>\n  </metadata>\n",
    );
}

/// (target, bus, boot order) of each disk, in document order.
fn disks(xml: &str) -> Vec<(String, String, Option<String>)> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("disk"))
        .map(|d| {
            let t = d.children().find(|c| c.has_tag_name("target"));
            (
                t.and_then(|t| t.attribute("dev"))
                    .unwrap_or_default()
                    .to_string(),
                t.and_then(|t| t.attribute("bus"))
                    .unwrap_or_default()
                    .to_string(),
                d.children()
                    .find(|c| c.has_tag_name("boot"))
                    .and_then(|b| b.attribute("order").map(str::to_string)),
            )
        })
        .collect()
}

fn owned(v: &[(&str, &str, Option<&str>)]) -> Vec<(String, String, Option<String>)> {
    v.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.map(str::to_string)))
        .collect()
}

#[test]
fn convert_all_converts_the_ready_guests_and_blocks_the_other() {
    let Some(host) = Host::acquire("convert_all_converts_the_ready_guests_and_blocks_the_other")
    else {
        return;
    };
    let mut ready = host.guest("batch-ready", &GuestSpec::ide_e1000());
    let mut not_ready = host.guest(
        "batch-notready",
        &GuestSpec::ide_e1000_booting(NOT_READY_IMAGE),
    );
    let mut data = host.guest(
        "batch-vda",
        &GuestSpec {
            disks: vec![
                DiskSpec::fixture("ide", "hda", READY_IMAGE),
                DiskSpec::empty("virtio", "vda", ImageFormat::Raw, 8),
            ],
            ..GuestSpec::ide_e1000()
        },
    );
    for g in [&mut ready, &mut not_ready, &mut data] {
        hint_windows(g);
    }
    let guests = [&ready, &not_ready, &data];
    let mut originals = BTreeMap::new();
    for g in guests {
        g.define_and_boot(BOOT);
        originals.insert(g.name.clone(), g.inactive_xml());
    }
    let state = ready.dir().join("state").display().to_string();

    // The batch is these three candidates and nothing else.
    let out = batch(&guests, &["--json"], &["--dry-run", "--state-dir", &state]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<String> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["domain"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    let mut mine: Vec<String> = guests.iter().map(|g| g.name.clone()).collect();
    mine.sort();
    assert_eq!(names, mine, "the batch");

    let marks: Vec<_> = guests.iter().map(|g| g.serial_mark()).collect();
    let started = Instant::now();
    let out = batch(
        &guests,
        &[],
        &["--yes", "--state-dir", &state, "--verify-time", "5"],
    );
    eprintln!(
        "TIMING convert --all: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // Some blocked, none failed: exit 3.
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let row = |name: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert!(table.starts_with("DOMAIN"), "{table}");
    assert_eq!(row(&ready.name)[1], "converted", "{table}");
    assert_eq!(row(&data.name)[1], "converted", "{table}");
    let blocked = row(&not_ready.name);
    assert_eq!(blocked[1], "blocked", "{table}");
    assert!(
        blocked.join(" ").contains("viostor is not boot-ready"),
        "{table}"
    );
    assert!(
        table.contains("3 candidate(s): 2 converted, 1 blocked"),
        "{table}"
    );

    // Every definition as expected.
    assert_eq!(
        disks(&ready.inactive_xml()),
        // hda became vda beside the data disk vdb: the boot order made explicit as well.
        owned(&[("vda", "virtio", Some("1")), ("vdb", "virtio", None)])
    );
    assert_eq!(
        not_ready.inactive_xml(),
        originals[&not_ready.name],
        "the blocked guest is untouched"
    );
    let now = data.inactive_xml();
    assert_eq!(
        disks(&now),
        // libvirt keeps its disks sorted: the data disk vda, then the root, now vdb.
        owned(&[("vda", "virtio", None), ("vdb", "virtio", Some("1"))]),
        "{now}"
    );
    assert!(!now.contains("<boot dev="), "{now}");
    for g in [&ready, &data] {
        assert!(g.inactive_xml().contains("<model type='virtio'/>"));
        assert!(g.domain().is_active().unwrap());
    }
    // The converted guests booted on virtio; the blocked one kept running its first boot.
    for (g, mark) in guests.iter().zip(&marks) {
        if g.name == not_ready.name {
            assert!(g.boots_since(*mark).is_empty(), "not restarted");
            assert!(g.domain().is_active().unwrap());
            continue;
        }
        let boot = g.wait_boots(*mark, 1, BOOT).pop().unwrap();
        assert!(
            boot.blocks.contains(&"vda".to_string()) && boot.blocks.contains(&"vdb".to_string()),
            "{}: {boot:?}",
            g.name
        );
        let devices = g.last_qemu_devices();
        let bootable: Vec<&serde_json::Value> = devices
            .iter()
            .filter(|d| d.get("bootindex").is_some())
            .collect();
        assert_eq!(bootable.len(), 1, "{}: {devices:?}", g.name);
        assert_eq!(bootable[0]["driver"], "virtio-blk-pci", "{}", g.name);
        assert_eq!(bootable[0]["bootindex"], 1, "{}", g.name);
    }

    // Again: the converted ones are no candidates any more (virtio disks and NIC), the blocked
    // one is still blocked.
    let out = batch(&guests, &["--json"], &["--yes", "--state-dir", &state]);
    assert_eq!(out.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results: BTreeMap<String, String> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["domain"].as_str().unwrap().to_string(),
                r["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        results,
        BTreeMap::from([(not_ready.name.clone(), "blocked".to_string())])
    );
}
