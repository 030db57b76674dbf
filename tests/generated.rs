//! The shell completions in `completions/` and the manual pages in `man/` are generated from the
//! clap definitions. This test regenerates them and fails when the committed files differ, so
//! they never go stale when a subcommand or option changes.
//!
//! To rewrite them after changing the command line: `UPDATE_GENERATED=1 cargo test --test generated`.

use clap::CommandFactory;
use clap_complete::Shell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use virtio_migrate::cli::Cli;

const BIN: &str = "virtio-migrate";

/// Sections of the main manual page that clap does not know about.
const MAN_EXTRA: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success.
.TP
\fB1\fR
Runtime error: the host could not be reached, a domain was not found, or (for \fBscan\fR) the
definition of at least one domain could not be read (the report is still printed in full).
.TP
\fB2\fR
Usage error: an unknown option or a missing argument.
.TP
\fB3\fR
\fBconvert\fR: the plan is blocked (drivers not ready or not checked, a managed or transient
domain, a boot order that cannot be kept, ...); the plan and the diff are still printed.
With \fB\-\-all\fR: some candidates were blocked and none failed.
.TP
\fB4\fR
\fBconvert\fR: the new definition was applied but failed verification (the guest did not stay
running, crashed, or its guest agent did not answer) and the original definition was restored.
.TP
\fB130\fR
Interrupted (Ctrl\-C, SIGTERM, SIGHUP): the message says what state the domain is in and which
command finishes or undoes the run.
.PP
\fBconvert \-\-all\fR: 0 when every candidate was converted (or, with \fB\-\-dry\-run\fR, is ready)
or had nothing to do; 3 when some were blocked and none failed; 1 when any failed or was rolled
back; 130 when interrupted.
.SH ENVIRONMENT
.TP
\fBLIBVIRT_DEFAULT_URI\fR
The libvirt URI used when \fB\-c\fR is not given; without either, \fBqemu:///system\fR.
.TP
\fBNO_COLOR\fR
When set to a non\-empty value, \fB\-\-color auto\fR does not colour.
.SH EXAMPLES
.TP
\fBvirtio\-migrate scan\fR
List every domain on the local QEMU/KVM host, candidates first.
.TP
\fBvirtio\-migrate \-c qemu+ssh://root@kvm01/system scan \-\-json\fR
The same for a remote host, as one JSON document.
.TP
\fBvirtio\-migrate convert \-\-domain win2k8r2 \-\-dry\-run \-\-output planned.xml\fR
Show the conversion plan and the diff of the definition, write the planned definition for the
change ticket, change nothing on the host.
.TP
\fBvirtio\-migrate \-c "$(fixtures/hosts/make\-demo.sh)" scan\fR
The bundled demo host (libvirt's test driver; run from the source tree: the script writes it
to target/demo with absolute paths and prints its URI).
.SH "SEE ALSO"
\fBvirsh\fR(1), \fBvirt\-xml\fR(1)
"#;

/// Every generated file, by path relative to the repository root.
fn generate() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for (shell, name) in [
        (Shell::Bash, format!("{BIN}.bash")),
        (Shell::Zsh, format!("_{BIN}")),
        (Shell::Fish, format!("{BIN}.fish")),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), BIN, &mut buf);
        files.insert(Path::new("completions").join(name), buf);
    }

    // The VERSION section says the version only: `--version` also names the git commit
    // (build.rs), which would make the committed page stale at every commit.
    let mut cmd = Cli::command()
        .disable_help_subcommand(true)
        .long_version(None::<&str>);
    cmd.build();
    // One page per subcommand (virtio-migrate-scan.1, …), found by walking the definitions.
    let mut stack: Vec<clap::Command> = cmd.get_subcommands().cloned().collect();
    while let Some(sub) = stack.pop() {
        if sub.is_hide_set() {
            continue;
        }
        stack.extend(sub.get_subcommands().cloned());
        let man = clap_mangen::Man::new(sub);
        let mut buf = Vec::new();
        man.render(&mut buf).expect("render a subcommand page");
        files.insert(Path::new("man").join(man.get_filename()), buf);
    }
    // The main page, with the sections clap does not describe.
    let man = clap_mangen::Man::new(cmd);
    let mut buf = Vec::new();
    man.render_title(&mut buf).unwrap();
    man.render_name_section(&mut buf).unwrap();
    man.render_synopsis_section(&mut buf).unwrap();
    man.render_description_section(&mut buf).unwrap();
    man.render_options_section(&mut buf).unwrap();
    man.render_subcommands_section(&mut buf).unwrap();
    buf.extend_from_slice(MAN_EXTRA.as_bytes());
    man.render_version_section(&mut buf).unwrap();
    files.insert(Path::new("man").join(format!("{BIN}.1")), buf);
    files
}

/// The files now in `completions/` and `man/`.
fn committed(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for dir in ["completions", "man"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                let rel = Path::new(dir).join(entry.file_name());
                files.insert(rel, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    files
}

#[test]
fn completions_and_man_pages_are_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let want = generate();
    if std::env::var_os("UPDATE_GENERATED").is_some_and(|v| !v.is_empty() && v != "0") {
        for (rel, _) in committed(root) {
            if !want.contains_key(&rel) {
                std::fs::remove_file(root.join(&rel)).unwrap();
            }
        }
        for (rel, bytes) in &want {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
        return;
    }
    let have = committed(root);
    let mut problems = Vec::new();
    for (rel, bytes) in &want {
        match have.get(rel) {
            None => problems.push(format!("missing {}", rel.display())),
            Some(h) if h != bytes => problems.push(format!("stale {}", rel.display())),
            Some(_) => {}
        }
    }
    for rel in have.keys().filter(|r| !want.contains_key(*r)) {
        problems.push(format!("no longer generated: {}", rel.display()));
    }
    assert!(
        problems.is_empty(),
        "generated files differ from the command line definitions ({}); run `UPDATE_GENERATED=1 cargo test --test generated` and commit the result",
        problems.join(", ")
    );
}

#[test]
fn the_main_page_documents_exit_codes_and_every_subcommand() {
    let files = generate();
    let page = String::from_utf8(files[Path::new("man/virtio-migrate.1")].clone()).unwrap();
    assert!(page.contains(".SH \"EXIT STATUS\""));
    assert!(page.contains("LIBVIRT_DEFAULT_URI"));
    for sub in Cli::command().get_subcommands() {
        assert!(
            page.contains(&format!("virtio\\-migrate\\-{}(1)", sub.get_name())),
            "main page lacks {}",
            sub.get_name()
        );
        assert!(files
            .contains_key(&Path::new("man").join(format!("virtio-migrate-{}.1", sub.get_name()))));
    }
    let bash =
        String::from_utf8(files[Path::new("completions/virtio-migrate.bash")].clone()).unwrap();
    assert!(bash.contains("--connect"));
    assert!(bash.contains("scan"));
}
