//! A guest whose disk image sits on hung storage does not stop a scan of the host.
//!
//! tests/fuse/stallfs.py mounts (root, /dev/fuse) a FUSE file system whose one file answers
//! stat and open but never a read, the way a hard-mounted NFS export or a GlusterFS FUSE mount
//! behaves when its server is gone: the reading thread waits in the kernel and `--time-limit`
//! (checked before each read) cannot stop it. The scan must still print its whole report — the
//! hung guest `unknown`, naming the blocked read, the next guest with its verdict from its image
//! — and a dry run of the hung guest must answer with a plan blocked by that verdict.
//!
//! A thread waiting for a FUSE reply cannot be killed, so the process cannot end until the file
//! system goes: the test ends the FUSE server after reading the report, and then the scan exits
//! with 0. (On NFS the wait is killable and the process ends at once.)
//!
//! Runs as a host test (tests/support/host.rs): skipped when FUSE cannot be mounted here unless
//! `VIRTIO_MIGRATE_HOST_TESTS=required`, as in CI.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::host::HostPolicy;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The mounted stall file system; unmounted (lazily) and its server killed when dropped.
struct StallFs {
    server: Child,
    mountpoint: PathBuf,
}

impl StallFs {
    fn mount(mountpoint: &Path) -> Result<StallFs, String> {
        let mut server = Command::new("python3")
            .arg(Path::new(ROOT).join("tests/fuse/stallfs.py"))
            .arg(mountpoint)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run python3: {e}"))?;
        let stdout = server.stdout.take().unwrap();
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.trim() != "ready" {
            let _ = server.kill();
            let out = server.wait_with_output().unwrap();
            return Err(format!(
                "cannot mount a FUSE file system at {}: {}",
                mountpoint.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(StallFs {
            server,
            mountpoint: mountpoint.to_path_buf(),
        })
    }
}

impl Drop for StallFs {
    fn drop(&mut self) {
        // The server's end of /dev/fuse closing aborts the connection: every waiting request
        // fails and the threads waiting on them go on.
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mountpoint)
            .status();
    }
}

/// `fixtures/domains/win2k8r2.xml` renamed `name`, booting `image` in `format`, without a UUID.
fn domain(name: &str, image: &Path, format: &str) -> String {
    let xml = std::fs::read_to_string(Path::new(ROOT).join("fixtures/domains/win2k8r2.xml"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("<uuid>"))
        .collect::<Vec<_>>()
        .join("\n");
    xml.replacen("type='qcow2'", &format!("type='{format}'"), 1)
        .replace(
            "/var/lib/libvirt/images/win2k8r2-app01.qcow2",
            &image.display().to_string(),
        )
        .replace("win2k8r2-app01", name)
}

#[test]
fn scan_goes_on_past_a_guest_on_hung_storage() {
    let policy = HostPolicy::from_env();
    if policy == HostPolicy::Skip {
        eprintln!("skipping host test: VIRTIO_MIGRATE_HOST_TESTS=skip");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = dir.path().join("stall");
    std::fs::create_dir(&mountpoint).unwrap();
    let fs = match StallFs::mount(&mountpoint) {
        Ok(fs) => fs,
        Err(why) if policy == HostPolicy::Required => {
            panic!("VIRTIO_MIGRATE_HOST_TESTS=required but {why}")
        }
        Err(why) => {
            eprintln!("skipping host test: {why} (needs root and /dev/fuse)");
            return;
        }
    };
    let node = dir.path().join("node.xml");
    std::fs::write(
        &node,
        format!(
            "<node>\n{}\n{}\n</node>\n",
            domain("a-hung", &mountpoint.join("disk.img"), "raw"),
            domain(
                "b-real",
                &Path::new(ROOT).join("fixtures/images/static-ip.qcow2"),
                "qcow2"
            ),
        ),
    )
    .unwrap();

    let report_path = dir.path().join("report.json");
    let mut scan = Command::new(env!("CARGO_BIN_EXE_virtio-migrate"))
        .args(["-c", &format!("test://{}", node.display())])
        .args(["--json", "scan", "--time-limit", "2", "--parallel", "1"])
        .env_remove("LIBVIRT_DEFAULT_URI")
        .stdout(std::fs::File::create(&report_path).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // And a dry run of the hung guest: its plan is blocked by the unknown verdict.
    let plan_path = dir.path().join("plan.txt");
    let mut plan = Command::new(env!("CARGO_BIN_EXE_virtio-migrate"))
        .args(["-c", &format!("test://{}", node.display())])
        .args(["convert", "-d", "a-hung", "--dry-run", "--time-limit", "2"])
        .env_remove("LIBVIRT_DEFAULT_URI")
        .stdout(std::fs::File::create(&plan_path).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The whole report appears although one thread stays blocked in its read (patience: the
    // 2 s time limit twice, then the next guest).
    let started = Instant::now();
    let report: serde_json::Value = loop {
        let text = std::fs::read_to_string(&report_path).unwrap();
        if let Ok(v) = serde_json::from_str(&text) {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no complete report within 60 s: {text:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let verdict = |name: &str| -> serde_json::Value {
        let domains = report["domains"].as_array().unwrap();
        let d = domains.iter().find(|d| d["name"] == name).unwrap();
        d["verdict"].clone()
    };
    let hung = verdict("a-hung");
    for bus in ["blk", "scsi", "nic"] {
        assert_eq!(hung[bus]["state"], "unknown", "{hung}");
        assert!(
            hung[bus]["why"]
                .as_str()
                .unwrap()
                .contains("no answer from its disk image within 4 s"),
            "{hung}"
        );
    }
    let real = verdict("b-real");
    assert_eq!(real["nic"]["state"], "ready", "{real}");
    let plan_text = loop {
        let text = std::fs::read_to_string(&plan_path).unwrap();
        if text.contains("no answer from its disk image within 4 s") {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the dry run did not report the hung image within 60 s: {text:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    // The blocked thread holds the process until the file system goes away.
    drop(fs);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = scan.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the scan did not end after the FUSE server was gone"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::io::read_to_string(scan.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let status = loop {
        if let Some(status) = plan.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the dry run did not end after the FUSE server was gone"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::io::read_to_string(plan.stderr.take().unwrap()).unwrap();
    assert_eq!(
        status.code(),
        Some(3),
        "blocked plan expected: {plan_text}{stderr}"
    );
}
