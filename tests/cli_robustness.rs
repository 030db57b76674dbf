//! Every command survives a closed stdout/stderr (`… 2>&1 | head -1`) without a panic, and an
//! interrupt (Ctrl-C) ends a run with 130 at any point — here while the connection hangs on an
//! ssh endpoint that never answers.

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_virtio-migrate");

/// The command lines to check, on the demo host (libvirt's test driver).
fn commands(state: &str) -> Vec<Vec<String>> {
    let uri = support::demo_uri().to_string();
    let image = format!("{}/fixtures/images/mbr-sysreserved.qcow2", support::ROOT);
    let with = |args: &[&str]| -> Vec<String> {
        let mut v = vec!["-c".to_string(), uri.clone()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    vec![
        with(&["scan"]),
        with(&["--json", "scan"]),
        with(&["-v", "scan", "--no-inspect"]),
        with(&["inspect", &image]),
        with(&["--json", "inspect", &image]),
        with(&["convert", "--domain", "db-static01", "--dry-run"]),
        with(&["--json", "convert", "--domain", "db-static01", "--dry-run"]),
        with(&["convert", "--all", "--dry-run", "--state-dir", state]),
        with(&[
            "--json",
            "convert",
            "--all",
            "--dry-run",
            "--state-dir",
            state,
        ]),
        with(&[
            "convert",
            "--domain",
            "db-static01",
            "--yes",
            "--verify-time",
            "1",
            "--state-dir",
            state,
        ]),
        with(&["rollback", "--list", "--state-dir", state]),
        with(&["rollback", "--list", "--all-hosts", "--state-dir", state]),
        with(&["convert", "--domain", "no-such-domain", "--dry-run"]),
        vec!["--help".to_string()],
        vec!["convert".to_string(), "--help".to_string()],
        vec!["--version".to_string()],
        vec!["convert".to_string(), "--bogus".to_string()],
    ]
}

#[test]
fn no_command_panics_on_a_closed_stdout_and_stderr() {
    let state = tempfile::tempdir().unwrap();
    let st = state.path().display().to_string();
    for args in commands(&st) {
        // Both streams go to a pipe whose reader is already gone: every write fails (EPIPE).
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let status = Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(writer.try_clone().unwrap())
            .stderr(writer)
            .status()
            .unwrap();
        let code = status.code();
        assert!(
            code.is_some() && code != Some(101),
            "virtio-migrate {}: {status} (101 = a panic)",
            args.join(" ")
        );
    }
}

#[test]
fn every_command_piped_into_head_prints_its_first_line_and_does_not_panic() {
    let state = tempfile::tempdir().unwrap();
    let st = state.path().display().to_string();
    for args in commands(&st) {
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        let script = format!(
            "set -o pipefail; '{BIN}' {} 2>&1 </dev/null | head -1",
            quoted.join(" ")
        );
        let out = Command::new("bash").args(["-c", &script]).output().unwrap();
        let code = out.status.code();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            code != Some(101) && !text.contains("panicked"),
            "{script}: exit {code:?}: {text}"
        );
        assert_eq!(text.lines().count(), 1, "{script}: {text}");
    }
}

#[test]
fn ctrl_c_while_an_ssh_connection_hangs_exits_130() {
    // An "ssh server" that accepts the connection and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(held);
    });
    let home = tempfile::tempdir().unwrap();
    let uri = format!("qemu+ssh://nobody@127.0.0.1:{port}/system?no_verify=1");
    let mut child = Command::new(BIN)
        .args(["-c", &uri, "scan"])
        // No user ssh configuration or keys of the machine get involved.
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the connection did not hang"
    );
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still running 10 s after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert_eq!(status.code(), Some(130), "{status}: {err}");
    drop(holder);
}

fn tool_stderr(args: &[&str], home: &std::path::Path) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    let out = Command::new(BIN)
        .args(args)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed(),
    )
}

#[test]
fn a_connection_that_never_answers_times_out_with_connect_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().take(2).flatten() {
            held.push(s);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let home = tempfile::tempdir().unwrap();
    let uri = format!("qemu+ssh://nobody@127.0.0.1:{port}/system?no_verify=1");
    let (code, err, took) = tool_stderr(
        &[
            "--connect-timeout",
            "2",
            "-c",
            &uri,
            "convert",
            "x",
            "--dry-run",
        ],
        home.path(),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("timed out after 2s"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn connection_errors_name_the_real_cause() {
    let home = tempfile::tempdir().unwrap();
    let (code, err, _) = tool_stderr(
        &[
            "-c",
            "qemu+ssh://nobody@no-such-host.invalid/system",
            "scan",
        ],
        home.path(),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("host no-such-host.invalid not found"), "{err}");
    assert!(!err.contains("libvirt refused"), "{err}");

    // A real sshd that refuses every key: ssh authentication, not a socket permission.
    let sshd = std::path::Path::new("/usr/sbin/sshd");
    if !sshd.exists() {
        eprintln!("skipping the ssh authentication case: no /usr/sbin/sshd (openssh-server)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("hostkey");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = dir.path().join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             AuthorizedKeysFile /nonexistent\nUsePAM no\nPidFile {}/sshd.pid\n",
            key.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let _ = std::fs::create_dir_all("/run/sshd");
    let mut server = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "sshd did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let uri = format!("qemu+ssh://nobody@127.0.0.1:{port}/system?no_verify=1");
    let (code, err, _) = tool_stderr(&["-c", &uri, "rollback", "x", "--dry-run"], home.path());
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("ssh authentication failed (Permission denied (publickey))"),
        "{err}"
    );
    assert!(
        !err.contains("permission denied on the libvirt socket"),
        "{err}"
    );
}
