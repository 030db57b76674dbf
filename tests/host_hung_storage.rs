//! A guest whose disk image sits on hung storage does not stop a scan of the host.
//!
//! tests/fuse/stallfs.py mounts (root, /dev/fuse) a FUSE file system whose one file answers
//! stat and open but never a read, the way a hard-mounted NFS export or a GlusterFS FUSE mount
//! behaves when its server is gone: the reading thread waits in the kernel and `--time-limit`
//! (checked before each read) cannot stop it. The scan must still print its whole report — the
//! hung guest `unknown`, naming the blocked read, the next guest with its verdict from its image
//! — and a dry run of the hung guest must answer with a plan blocked by that verdict, and
//! `inspect --domain` with an unknown verdict.
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

    let uri = format!("test://{}", node.display());
    let started = Instant::now();
    let spawn = |name: &str, args: &[&str]| -> (Child, PathBuf) {
        let out = dir.path().join(name);
        let child = Command::new(env!("CARGO_BIN_EXE_virtio-migrate"))
            .args(["-c", &uri])
            .args(args)
            .env_remove("LIBVIRT_DEFAULT_URI")
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        (child, out)
    };
    // Wait (at most 60 s from the start) until `out` holds what `done` accepts.
    let output = |out: &Path, done: &dyn Fn(&str) -> bool| -> String {
        loop {
            let text = std::fs::read_to_string(out).unwrap();
            if done(&text) {
                return text;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no answer within 60 s in {}: {text:?}",
                out.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    const HUNG: &str = "no answer from its disk image within 4 s";

    let (scan, report_path) = spawn(
        "scan.json",
        &["--json", "scan", "--time-limit", "2", "--parallel", "1"],
    );
    // A dry run of the hung guest: its plan is blocked by the unknown verdict.
    let (plan, plan_path) = spawn(
        "plan.txt",
        &["convert", "-d", "a-hung", "--dry-run", "--time-limit", "2"],
    );
    // `inspect --domain` of the hung guest: the verdict is unknown, naming the blocked read.
    let (inspect, inspect_path) = spawn(
        "inspect.txt",
        &["inspect", "--domain", "a-hung", "--time-limit", "2"],
    );

    // The whole report appears although one thread stays blocked in its read (patience: the
    // 2 s time limit twice, then the next guest).
    let text = output(&report_path, &|t| {
        serde_json::from_str::<serde_json::Value>(t).is_ok()
    });
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let verdict = |name: &str| -> serde_json::Value {
        let domains = report["hosts"][0]["domains"].as_array().unwrap();
        let d = domains.iter().find(|d| d["name"] == name).unwrap();
        d["verdict"].clone()
    };
    let hung = verdict("a-hung");
    for bus in ["blk", "scsi", "nic"] {
        assert_eq!(hung[bus]["state"], "unknown", "{hung}");
        assert!(hung[bus]["why"].as_str().unwrap().contains(HUNG), "{hung}");
    }
    let real = verdict("b-real");
    // Fully assessed (its NIC is not ready: netkvm.sys alone, no staged package).
    assert_eq!(real["blk"]["state"], "ready", "{real}");
    let plan_text = output(&plan_path, &|t| t.contains(HUNG));
    let inspect_text = output(&inspect_path, &|t| t.contains(HUNG) && t.contains("netkvm"));

    // The blocked thread holds each process until the file system goes away.
    drop(fs);
    let deadline = Instant::now() + Duration::from_secs(30);
    let finish = |mut child: Child, what: &str| -> (Option<i32>, String) {
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not end after the FUSE server was gone"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
        (status.code(), stderr)
    };
    let (code, stderr) = finish(scan, "the scan");
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = finish(plan, "the dry run");
    assert_eq!(code, Some(3), "blocked plan expected: {plan_text}{stderr}");
    let (code, stderr) = finish(inspect, "inspect");
    assert_eq!(
        code,
        Some(1),
        "unreadable disk expected: {inspect_text}{stderr}"
    );
}
