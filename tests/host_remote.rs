//! Scanning a remote host: images read through libvirt's storage API over `qemu+ssh`, and several
//! hosts in one report.
//!
//! A real sshd (Debian's openssh-server, its own configuration and keys in a temporary
//! directory, listening on a free port of 127.0.0.1) fronts the real libvirtd, so
//! `qemu+ssh://root@127.0.0.1:PORT/system` is a remote host as far as libvirt and the tool know.
//! A transient `dir` pool holds copies of fixture images (a qcow2 with its backing file in the
//! same pool, a raw one, a not-ready one); domains use them as `<disk type='file'>` and
//! `<disk type='volume'>`. To prove the bytes came through libvirt and not from this machine's
//! file system, the tool runs in a private mount namespace where the pool directory is hidden
//! under an empty tmpfs: the remote verdicts must equal those of a local scan, and a local scan
//! in the same namespace must not be able to read the images.
//!
//! Runs as a host test (tests/support/host.rs policy): skipped without the daemon or sshd
//! unless `VIRTIO_MIGRATE_HOST_TESTS=required`, as in CI.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::host::HostPolicy;
use virt::connect::Connect;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SSHD: &str = "/usr/sbin/sshd";

/// sshd on 127.0.0.1 with root key login; killed when dropped.
struct Sshd {
    child: Child,
    port: u16,
    key: PathBuf,
}

impl Sshd {
    fn start(dir: &Path) -> Result<Sshd, String> {
        if !Path::new(SSHD).exists() {
            return Err(format!(
                "{SSHD} is missing (apt-get install openssh-server)"
            ));
        }
        // Privilege separation needs this directory (systemd creates it on a full system).
        std::fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
        let keygen = |name: &str| -> Result<PathBuf, String> {
            let path = dir.join(name);
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&path)
                .status()
                .map_err(|e| format!("ssh-keygen: {e}"))?
                .success();
            ok.then_some(path)
                .ok_or_else(|| "ssh-keygen failed".to_string())
        };
        let host_key = keygen("host_key")?;
        let key = keygen("client_key")?;
        let authorized = dir.join("authorized_keys");
        std::fs::copy(dir.join("client_key.pub"), &authorized).map_err(|e| e.to_string())?;
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPermitRootLogin prohibit-password\n\
                 AuthorizedKeysFile {}\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\nPidFile {}\n",
                host_key.display(),
                authorized.display(),
                dir.join("sshd.pid").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-f")
            .arg(&config)
            .arg("-E")
            .arg(dir.join("sshd.log"))
            .spawn()
            .map_err(|e| format!("{SSHD}: {e}"))?;
        let sshd = Sshd { child, port, key };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("sshd did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(sshd)
    }

    fn uri(&self) -> String {
        format!(
            "qemu+ssh://root@127.0.0.1:{}/system?keyfile={}&no_verify=1",
            self.port,
            self.key.display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The pool and the domains of the test, removed when dropped (also when the test fails).
struct Remote {
    conn: Connect,
    pool: String,
    domains: Vec<String>,
}

impl Drop for Remote {
    fn drop(&mut self) {
        for name in &self.domains {
            if let Ok(d) = self.conn.lookup_domain_by_name(name) {
                let _ = d.undefine();
            }
        }
        if let Ok(p) = self.conn.lookup_storage_pool_by_name(&self.pool) {
            let _ = p.destroy();
        }
    }
}

/// `fixtures/domains/win2k8r2.xml` as `name` (QEMU without KVM), booting `disk` (a `<disk>`
/// source element and its type) in `format`.
fn domain_xml(name: &str, disk_type: &str, source: &str, format: &str) -> String {
    let xml = std::fs::read_to_string(Path::new(ROOT).join("fixtures/domains/win2k8r2.xml"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("<uuid>"))
        .collect::<Vec<_>>()
        .join("\n");
    xml.replace("<domain type='kvm'>", "<domain type='qemu'>")
        .replacen(
            "<disk type='file' device='disk'>",
            &format!("<disk type='{disk_type}' device='disk'>"),
            1,
        )
        .replacen("type='qcow2'", &format!("type='{format}'"), 1)
        .replace(
            "<source file='/var/lib/libvirt/images/win2k8r2-app01.qcow2'/>",
            source,
        )
        .replace("win2k8r2-app01", name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_virtio-migrate"))
        .args(args)
        .env_remove("LIBVIRT_DEFAULT_URI")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The tool in a private mount namespace where `hidden` is an empty tmpfs.
fn run_hiding(hidden: &Path, args: &[&str]) -> Output {
    let mut script = format!(
        "mount -t tmpfs none '{}' && exec '{}'",
        hidden.display(),
        env!("CARGO_BIN_EXE_virtio-migrate")
    );
    for a in args {
        script.push_str(&format!(" '{a}'"));
    }
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env_remove("LIBVIRT_DEFAULT_URI")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON document ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// name → (blk, scsi, nic) readiness words of one host of a scan document.
fn verdicts(host: &Value) -> Vec<(String, [String; 3])> {
    let mut out: Vec<(String, [String; 3])> = host["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let v = &d["verdict"];
            let word = |bus: &str| v[bus]["state"].as_str().unwrap_or("none").to_string();
            (
                d["name"].as_str().unwrap().to_string(),
                [word("blk"), word("scsi"), word("nic")],
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn remote_images_are_read_through_libvirt_and_hosts_share_one_report() {
    let policy = HostPolicy::from_env();
    if policy == HostPolicy::Skip {
        eprintln!("skipping host test: VIRTIO_MIGRATE_HOST_TESTS=skip");
        return;
    }
    let skip_or_fail = |why: String| {
        if policy == HostPolicy::Required {
            panic!("VIRTIO_MIGRATE_HOST_TESTS=required but {why}");
        }
        eprintln!("skipping host test: {why}");
    };
    let conn = match Connect::open(Some(support::host::SYSTEM_URI)) {
        Ok(c) => c,
        Err(e) => return skip_or_fail(format!("no libvirt daemon: {e}")),
    };
    let dir = tempfile::tempdir().unwrap();
    let sshd = match Sshd::start(dir.path()) {
        Ok(s) => s,
        Err(why) => return skip_or_fail(why),
    };

    // The pool: copies of fixture images, one overlay on a template in the same pool.
    let tag = format!("vmtest-{}-remote", std::process::id());
    let pool_dir = dir.path().join("pool");
    std::fs::create_dir(&pool_dir).unwrap();
    let images = Path::new(ROOT).join("fixtures/images");
    for f in [
        "mbr-sysreserved.qcow2",
        "win2k8r2-start3.qcow2",
        "cloudstack-template.qcow2",
    ] {
        std::fs::copy(images.join(f), pool_dir.join(f)).unwrap();
    }
    let qemu_img = |args: &[&str]| {
        let st = Command::new("qemu-img")
            .args(args)
            .current_dir(&pool_dir)
            .status()
            .unwrap();
        assert!(st.success(), "qemu-img {args:?}");
    };
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        "cloudstack-template.qcow2",
        "overlay.qcow2",
    ]);
    qemu_img(&["convert", "-O", "raw", "mbr-sysreserved.qcow2", "ready.raw"]);
    let pool_xml = format!(
        "<pool type='dir'><name>{tag}</name><target><path>{}</path></target></pool>",
        pool_dir.display()
    );
    conn.create_storage_pool_xml(&pool_xml, 0).unwrap();
    let mut remote = Remote {
        conn: conn.clone(),
        pool: tag.clone(),
        domains: Vec::new(),
    };
    let file = |f: &str| format!("<source file='{}'/>", pool_dir.join(f).display());
    let specs = [
        (
            "ready-qcow2",
            "file",
            file("mbr-sysreserved.qcow2"),
            "qcow2",
        ),
        ("ready-raw", "file", file("ready.raw"), "raw"),
        ("start3", "file", file("win2k8r2-start3.qcow2"), "qcow2"),
        ("overlay", "file", file("overlay.qcow2"), "qcow2"),
        (
            "volume",
            "volume",
            format!("<source pool='{tag}' volume='mbr-sysreserved.qcow2'/>"),
            "qcow2",
        ),
    ];
    let mut names = Vec::new();
    for (label, disk_type, source, format) in &specs {
        let name = format!("{tag}-{label}");
        let xml = domain_xml(&name, disk_type, source, format);
        conn.define_domain_xml(&xml)
            .unwrap_or_else(|e| panic!("define {name}: {e}\n{xml}"));
        remote.domains.push(name.clone());
        names.push(name);
    }
    // A file the pool has not listed yet (copied after the pool was started): found after a
    // refresh of that pool.
    std::fs::copy(
        images.join("mbr-sysreserved.qcow2"),
        pool_dir.join("late.qcow2"),
    )
    .unwrap();
    let late = format!("{tag}-late");
    conn.define_domain_xml(&domain_xml(&late, "file", &file("late.qcow2"), "qcow2"))
        .unwrap();
    remote.domains.push(late.clone());
    names.push(late);

    let ssh_uri = sshd.uri();
    let mut args: Vec<&str> = vec!["-c", support::host::SYSTEM_URI, "--json", "scan"];
    args.extend(names.iter().map(String::as_str));
    let local = run(&args);
    assert_eq!(
        local.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
    let local = json(&local);
    let local_verdicts = verdicts(&local["hosts"][0]);

    // The same guests through ssh, with the pool hidden from this process.
    args[1] = &ssh_uri;
    let started = Instant::now();
    let out = run_hiding(&pool_dir, &args);
    let remote_time = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    assert_eq!(doc["schema_version"], 2);
    assert_eq!(doc["hosts"][0]["host"], "127.0.0.1");
    assert_eq!(
        verdicts(&doc["hosts"][0]),
        local_verdicts,
        "{:#}",
        doc["hosts"][0]["domains"]
    );
    let word = |v: &[(String, [String; 3])], label: &str| -> [String; 3] {
        v.iter()
            .find(|(n, _)| n.ends_with(&format!("-{label}")))
            .unwrap()
            .1
            .clone()
    };
    let got = verdicts(&doc["hosts"][0]);
    for ready in ["ready-qcow2", "ready-raw", "volume", "late"] {
        assert_eq!(word(&got, ready)[0], "ready", "{ready}: {got:?}");
    }
    assert_eq!(word(&got, "start3")[0], "not-ready", "{got:?}");
    assert_eq!(word(&got, "overlay")[0], "not-ready", "{got:?}");
    let bytes: u64 = doc["hosts"][0]["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["verdict"]["bytes_read"].as_u64().unwrap())
        .sum();
    eprintln!(
        "remote scan of {} guests: {:.2} s, {} KiB transferred",
        names.len(),
        remote_time.as_secs_f64(),
        bytes / 1024
    );

    // Proof that the namespace hides the images: a local scan there cannot read them.
    args[1] = support::host::SYSTEM_URI;
    let hidden = json(&run_hiding(&pool_dir, &args));
    for (name, words) in verdicts(&hidden["hosts"][0]) {
        assert_eq!(
            words[0], "unknown",
            "{name} was readable locally in the namespace"
        );
    }

    // Four hosts in one report: the daemon locally, through ssh, an ssh port nobody answers on,
    // and an endpoint that accepts and then never says a word (a hung host: ssh waits for its
    // banner). One document, one line for each host not scanned, exit 1; the silent host costs
    // --connect-timeout, not the report.
    let dead = format!(
        "qemu+ssh://root@127.0.0.1:{}/system?keyfile={}&no_verify=1",
        free_port(),
        sshd.key.display()
    );
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_uri = format!(
        "qemu+ssh://root@127.0.0.1:{}/system?keyfile={}&no_verify=1",
        silent.local_addr().unwrap().port(),
        sshd.key.display()
    );
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming().flatten() {
            held.push(conn);
        }
    });
    let mut args: Vec<&str> = vec![
        "-c",
        support::host::SYSTEM_URI,
        "-c",
        &ssh_uri,
        "-c",
        &dead,
        "-c",
        &silent_uri,
        "--connect-timeout",
        "3",
        "--json",
        "scan",
    ];
    args.extend(names.iter().map(String::as_str));
    let started = Instant::now();
    let out = run_hiding(&pool_dir, &args);
    let fleet_time = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    let hosts = doc["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 4);
    assert_eq!(doc["summary"]["hosts"], 4);
    assert_eq!(doc["summary"]["unreachable"], 2);
    assert!(hosts[2]["error"].as_str().is_some(), "{}", hosts[2]);
    let hung = hosts[3]["error"].as_str().unwrap_or_default();
    assert!(hung.contains("3"), "{hung}");
    assert!(
        fleet_time < Duration::from_secs(60),
        "the silent host held the report for {fleet_time:?}"
    );
    assert_eq!(verdicts(&hosts[1]), local_verdicts);
    // The local host, in the namespace, cannot read its images: unknown, and the scan went on.
    assert!(verdicts(&hosts[0]).iter().all(|(_, w)| w[0] == "unknown"));

    // The human report: a HOST column, one line per host, the totals.
    let text_args: Vec<&str> = args.iter().copied().filter(|a| *a != "--json").collect();
    let out = run_hiding(&pool_dir, &text_args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HOST"), "{text}");
    // Three URIs share the host 127.0.0.1: each is shown by its whole URI.
    assert!(
        text.contains(&format!("{ssh_uri}: 6 domains, 6 candidates")),
        "{text}"
    );
    assert!(text.contains("not scanned:"), "{text}");
    assert!(
        text.contains("4 hosts (2 not scanned): 12 domains"),
        "{text}"
    );

    // inspect --domain and a dry run read the remote image the same way.
    let ready = &names[0];
    let out = run_hiding(
        &pool_dir,
        &["-c", &ssh_uri, "--json", "inspect", "--domain", ready],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["verdict"]["blk"]["state"], "ready");
    let out = run_hiding(
        &pool_dir,
        &["-c", &ssh_uri, "convert", "--domain", ready, "--dry-run"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("bus='virtio'"), "{text}");
    let out = run_hiding(
        &pool_dir,
        &[
            "-c",
            &ssh_uri,
            "convert",
            "--domain",
            &names[2],
            "--dry-run",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Only scan takes several hosts.
    let out = run(&[
        "-c",
        support::host::SYSTEM_URI,
        "-c",
        &ssh_uri,
        "inspect",
        "--domain",
        &names[0],
    ]);
    assert_eq!(out.status.code(), Some(2));
    drop(remote);
}
