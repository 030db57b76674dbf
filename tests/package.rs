//! The release packages that `.ci/package` writes to target/dist/, checked where they must run.
//!
//! - The binary (taken out of the .deb): no `GLIBC_` symbol version above the glibc minimum README's
//!   Install section states, no `LIBVIRT_` above its libvirt minimum, and only libraries from the
//!   two packages it depends on; `--version` names the commit the tree is at.
//! - The .deb: its control fields (`Depends` written out with README's minimums, a one-line
//!   summary, a short extended description), its files, the man pages gzipped, the completions,
//!   README and licences equal to the tree's.
//! - The .rpm: `rpm -qpR` (only the binary's own sonames with their symbol versions, never the
//!   build host's, plus `libvirt-libs >= MIN`), `rpm -qpl`, and an install into a scratch rpm root
//!   with `--nodeps` whose post-install script makes the 0700 state directory.
//! - Debian 11 and Debian 13: a `debootstrap --variant=minbase` chroot (.ci/debian-chroot, cached)
//!   gets the .deb by `apt-get install ./….deb`, which must pull libvirt0 in by itself; then the
//!   demo host runs end to end inside it (`scan`, `scan --json`, `inspect`, `convert --all
//!   --dry-run`, a real `convert` and `rollback` on the test driver) and every output, exit code
//!   and state file must equal the same binary's run on this Debian 12 host. Only what
//!   [`normalise_text`] and [`normalise_json`] name may differ: times, durations, process ids
//!   and the backup ids made of the time. Both runs use the same absolute paths (the fixtures,
//!   demo host and state directory are copied into the chroot at the path they have here), so
//!   paths need no normalising. A new difference fails the test until it is named there with its
//!   reason.
//!
//! They run when `VIRTIO_MIGRATE_PACKAGE_TESTS=required` (set by .ci/run after .ci/package), as
//! root, with debootstrap, rpm, binutils, busybox and deb.debian.org reachable; otherwise each
//! prints why it skipped.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const VERSION: &str = env!("CARGO_PKG_VERSION");
const STATE_DIR: &str = "/var/lib/virtio-migrate";

/// Whether the package tests run; `false` after printing why not.
fn enabled(test: &str) -> bool {
    match std::env::var("VIRTIO_MIGRATE_PACKAGE_TESTS").as_deref() {
        Ok("required") => true,
        Ok("skip") | Err(_) => {
            eprintln!(
                "skipping {test}: set VIRTIO_MIGRATE_PACKAGE_TESTS=required after .ci/package \
                 (as root, with debootstrap and rpm; .ci/run does both)"
            );
            false
        }
        Ok(other) => panic!("VIRTIO_MIGRATE_PACKAGE_TESTS={other}: expected required or skip"),
    }
}

fn dist() -> PathBuf {
    Path::new(ROOT).join("target/dist")
}

fn deb_path() -> PathBuf {
    dist().join(format!("virtio-migrate_{VERSION}-1_amd64.deb"))
}

fn rpm_path() -> PathBuf {
    dist().join(format!("virtio-migrate-{VERSION}-1.x86_64.rpm"))
}

/// A command's output; panics with its standard error when it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("package-{name}-"))
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn sha256(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    format!("{:x}", Sha256::digest(bytes))
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{}: not gzip: {e}", path.display()));
    out
}

/// A dotted version as numbers, for comparing ("2.28" < "2.34", "6.0.0" < "11.3.0").
fn version_key(v: &str) -> Vec<u32> {
    v.split('.')
        .map(|p| p.parse().unwrap_or_else(|_| panic!("not a version: {v}")))
        .collect()
}

/// The minimums README's Install section states: (glibc, libvirt).
fn readme_minimums() -> (String, String) {
    let readme = fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let install = readme
        .split("\n## ")
        .find(|s| s.starts_with("Install"))
        .expect("README has an Install section");
    let find = |what: &str| -> String {
        // "glibc 2.28 or newer", "libvirt 6.0.0 or newer"
        install
            .split(&format!("{what} "))
            .skip(1)
            .find_map(|rest| {
                let (v, tail) = rest.split_once(' ')?;
                let v = v.trim_matches('*');
                (tail.starts_with("or newer") && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
                    .then(|| v.to_string())
            })
            .unwrap_or_else(|| panic!("README's Install section states no \"{what} X or newer\""))
    };
    (find("glibc"), find("libvirt"))
}

/// The shared libraries the binary may need: glibc's (package libc6) and libvirt's client
/// libraries (libvirt0 on Debian, libvirt-libs on EL), nothing else.
const ALLOWED_NEEDED: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "libvirt.so.0",
    "libvirt-qemu.so.0",
];

/// The symbol versions the binary's dynamic symbols need (`objdump -T`): GLIBC_2.28,
/// LIBVIRT_3.9.0, LIBVIRT_QEMU_0.10.0, ... (objdump prints hidden ones in parentheses).
fn symbol_versions(binary: &Path) -> std::collections::BTreeSet<String> {
    let dynsyms = run(Command::new("objdump").arg("-T").arg(binary));
    dynsyms
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '(' || c == ')').to_string())
        .filter(|w| w.starts_with("GLIBC_") || w.starts_with("LIBVIRT"))
        .collect()
}

/// The .deb unpacked (dpkg-deb -x) into a scratch directory.
struct Unpacked {
    dir: tempfile::TempDir,
}

impl Unpacked {
    fn deb() -> Unpacked {
        let dir = scratch("deb");
        run(Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb_path())
            .arg(dir.path()));
        Unpacked { dir }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel.trim_start_matches('/'))
    }
    fn binary(&self) -> PathBuf {
        self.path("usr/bin/virtio-migrate")
    }
}

/// `git rev-parse --short=12 HEAD` of the tree, if it is a git checkout.
fn head_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(ROOT)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `--version` must name the version and the commit this tree is at (`-dirty` when packaged with
/// uncommitted changes): packages left from another commit fail here, not in a confusing way later.
fn assert_version_line(line: &str, what: &str) {
    let line = line.trim();
    let prefix = format!("virtio-migrate {VERSION} (commit ");
    assert!(line.starts_with(&prefix), "{what}: --version says {line:?}");
    if let Some(head) = head_commit() {
        let commit = line[prefix.len()..].trim_end_matches(')');
        assert!(
            commit == head || commit == format!("{head}-dirty"),
            "{what} was built from commit {commit}, the tree is at {head}: run .ci/package again"
        );
    }
}

#[test]
fn version_names_the_git_commit() {
    // Not gated: the binary cargo built for the tests carries the commit too (build.rs).
    let out = run(Command::new(env!("CARGO_BIN_EXE_virtio-migrate")).arg("--version"));
    if head_commit().is_some() {
        assert_version_line(&out, "the test build");
    } else {
        assert!(out.contains("(commit unknown"), "{out}");
    }
    let short = run(Command::new(env!("CARGO_BIN_EXE_virtio-migrate")).arg("-V"));
    assert_eq!(short.trim(), format!("virtio-migrate {VERSION}"));
}

#[test]
fn checksums_match_the_packages() {
    if !enabled("checksums_match_the_packages") {
        return;
    }
    let sums = fs::read_to_string(dist().join("SHA256SUMS")).expect("target/dist/SHA256SUMS");
    let mut listed = BTreeMap::new();
    for line in sums.lines() {
        let (sum, name) = line.split_once("  ").expect("sha256sum format");
        listed.insert(name.to_string(), sum.to_string());
    }
    for path in [deb_path(), rpm_path()] {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(listed.remove(&name), Some(sha256(&path)), "{name}");
    }
    assert!(listed.is_empty(), "SHA256SUMS lists more: {listed:?}");
}

#[test]
fn binary_stays_within_the_readme_minimums() {
    if !enabled("binary_stays_within_the_readme_minimums") {
        return;
    }
    let (glibc, libvirt) = readme_minimums();
    let deb = Unpacked::deb();
    let versions = symbol_versions(&deb.binary());
    for tag in &versions {
        if let Some(v) = tag.strip_prefix("GLIBC_") {
            assert!(
                version_key(v) <= version_key(&glibc),
                "the binary needs {tag}, README says glibc {glibc}"
            );
        } else if let Some(v) = tag
            .strip_prefix("LIBVIRT_QEMU_")
            .or_else(|| tag.strip_prefix("LIBVIRT_"))
        {
            assert!(
                version_key(v) <= version_key(&libvirt),
                "the binary needs {tag}, README says libvirt {libvirt}"
            );
        } else {
            panic!("the binary needs symbol version {tag}, from neither glibc nor libvirt");
        }
    }
    assert!(
        versions.iter().any(|t| t.starts_with("LIBVIRT_")),
        "no LIBVIRT_ symbol versions: {versions:?}"
    );

    let headers = run(Command::new("objdump").arg("-p").arg(deb.binary()));
    let needed: Vec<&str> = headers
        .lines()
        .filter_map(|l| l.trim().strip_prefix("NEEDED"))
        .map(str::trim)
        .collect();
    assert!(needed.contains(&"libvirt.so.0"), "{needed:?}");
    for lib in &needed {
        assert!(
            ALLOWED_NEEDED.contains(lib),
            "the binary needs {lib}, which neither libc6 nor libvirt0 ships"
        );
    }
    assert_version_line(
        &run(Command::new(deb.binary()).arg("--version")),
        "the .deb",
    );
}

/// Files in a package listing, without directories.
fn deb_files() -> Vec<String> {
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(deb_path()));
    let mut files: Vec<String> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .map(|l| {
            l.split_whitespace()
                .last()
                .unwrap()
                .trim_start_matches('.')
                .to_string()
        })
        .collect();
    files.sort();
    files
}

fn man_pages() -> Vec<String> {
    let mut pages: Vec<String> = fs::read_dir(Path::new(ROOT).join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".1"))
        .collect();
    pages.sort();
    assert!(!pages.is_empty());
    pages
}

/// Where each packaged file comes from in the tree (`None`: the binary or a generated file).
fn expected_files(
    zsh_dir: &str,
    licence_dir: &str,
    extra: &[&str],
) -> BTreeMap<String, Option<String>> {
    let mut files = BTreeMap::new();
    files.insert("/usr/bin/virtio-migrate".to_string(), None);
    for page in man_pages() {
        files.insert(
            format!("/usr/share/man/man1/{page}.gz"),
            Some(format!("man/{page}")),
        );
    }
    for (dest, src) in [
        (
            "/usr/share/bash-completion/completions/virtio-migrate".to_string(),
            "completions/virtio-migrate.bash",
        ),
        (
            format!("{zsh_dir}/_virtio-migrate"),
            "completions/_virtio-migrate",
        ),
        (
            "/usr/share/fish/vendor_completions.d/virtio-migrate.fish".to_string(),
            "completions/virtio-migrate.fish",
        ),
        (
            "/usr/share/doc/virtio-migrate/README.md".to_string(),
            "README.md",
        ),
        (format!("{licence_dir}/LICENSE-MIT"), "LICENSE-MIT"),
        (format!("{licence_dir}/LICENSE-APACHE"), "LICENSE-APACHE"),
    ] {
        files.insert(dest, Some(src.to_string()));
    }
    for e in extra {
        files.insert(e.to_string(), None);
    }
    files
}

/// Every file in `root` (an unpacked or installed package) equals its source in the tree; man
/// pages are gzipped.
fn assert_files_match_the_tree(root: &Path, files: &BTreeMap<String, Option<String>>) {
    for (dest, src) in files {
        let path = root.join(dest.trim_start_matches('/'));
        let Some(src) = src else {
            assert!(path.is_file(), "{dest} missing");
            continue;
        };
        let want = fs::read(Path::new(ROOT).join(src)).unwrap();
        let have = if dest.ends_with(".gz") {
            gunzip(&path)
        } else {
            fs::read(&path).unwrap_or_else(|e| panic!("{dest}: {e}"))
        };
        assert!(have == want, "{dest} differs from {src}");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644, "{dest} mode");
    }
    let bin = root.join("usr/bin/virtio-migrate");
    assert_eq!(
        fs::metadata(&bin).unwrap().permissions().mode() & 0o7777,
        0o755
    );
}

#[test]
fn deb_metadata_and_files() {
    if !enabled("deb_metadata_and_files") {
        return;
    }
    let (glibc, libvirt) = readme_minimums();
    let field = |name: &str| -> String {
        run(Command::new("dpkg-deb").arg("-f").arg(deb_path()).arg(name))
            .trim_end()
            .to_string()
    };
    assert_eq!(field("Package"), "virtio-migrate");
    assert_eq!(field("Version"), format!("{VERSION}-1"));
    assert_eq!(field("Architecture"), "amd64");
    assert_eq!(
        field("Depends"),
        format!("libc6 (>= {glibc}), libvirt0 (>= {libvirt})")
    );
    let description = field("Description");
    let mut lines = description.lines();
    let summary = lines.next().unwrap();
    assert_eq!(summary, env!("CARGO_PKG_DESCRIPTION"));
    assert!(summary.len() <= 80, "summary over 80 characters: {summary}");
    let extended: Vec<&str> = lines.collect();
    assert!(
        (2..=8).contains(&extended.len()),
        "a short extended description, not the README: {extended:?}"
    );

    let files = expected_files(
        "/usr/share/zsh/vendor-completions",
        "/usr/share/doc/virtio-migrate",
        &["/usr/share/doc/virtio-migrate/copyright"],
    );
    assert_eq!(
        deb_files(),
        files.keys().cloned().collect::<Vec<_>>(),
        "files in the .deb"
    );
    let deb = Unpacked::deb();
    assert_files_match_the_tree(deb.dir.path(), &files);

    // The maintainer scripts that make and keep the state directory.
    let control = scratch("deb-control");
    run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(deb_path())
        .arg(control.path()));
    let postinst = fs::read_to_string(control.path().join("postinst")).unwrap();
    assert!(postinst.contains(&format!("install -d -m 0700 -o root -g root {STATE_DIR}")));
}

/// `rpm -qp --requires`, one requirement a line.
fn rpm_requires() -> Vec<String> {
    run(Command::new("rpm").arg("-qpR").arg(rpm_path()))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn rpm_requirements_come_from_the_elf() {
    if !enabled("rpm_requirements_come_from_the_elf") {
        return;
    }
    let (glibc, libvirt) = readme_minimums();
    let requires = rpm_requires();
    let mut sonames = Vec::new();
    for req in &requires {
        if req == "/bin/sh" || req.starts_with("rpmlib(") {
            // The post-install script's interpreter; rpm's own feature markers.
            continue;
        }
        if let Some(v) = req.strip_prefix("libvirt-libs >= ") {
            assert_eq!(v, libvirt, "{req}");
            continue;
        }
        // soname()(64bit) or soname(VERSION)(64bit), as rpm's elfdeps writes them.
        let (soname, rest) = req
            .split_once('(')
            .unwrap_or_else(|| panic!("unexpected requirement {req:?}"));
        assert!(
            ALLOWED_NEEDED.contains(&soname),
            "{req}: not a library of the binary (a build-host soname?)"
        );
        assert!(rest.ends_with(")(64bit)"), "{req}");
        let symver = rest.trim_end_matches(")(64bit)");
        if let Some(v) = symver.strip_prefix("GLIBC_") {
            assert!(version_key(v) <= version_key(&glibc), "{req}");
        } else if let Some(v) = symver
            .strip_prefix("LIBVIRT_QEMU_")
            .or_else(|| symver.strip_prefix("LIBVIRT_"))
        {
            assert!(version_key(v) <= version_key(&libvirt), "{req}");
        } else {
            assert!(symver.is_empty(), "{req}: unexpected symbol version");
        }
        sonames.push(soname.to_string());
    }
    for want in [
        "libvirt-libs >= ".to_string() + &libvirt,
        "libvirt.so.0()(64bit)".to_string(),
        "libvirt-qemu.so.0()(64bit)".to_string(),
        "libc.so.6()(64bit)".to_string(),
    ] {
        assert!(requires.contains(&want), "no {want} in {requires:#?}");
    }
    // Every symbol version the binary needs (today up to LIBVIRT_3.9.0, LIBVIRT_QEMU_0.10.0 and
    // GLIBC_2.28) is required, so rpm refuses a host whose libraries lack one.
    let deb = Unpacked::deb();
    for tag in symbol_versions(&deb.binary()) {
        assert!(
            requires
                .iter()
                .any(|r| r.ends_with(&format!("({tag})(64bit)"))),
            "{tag} is not required: {requires:#?}"
        );
    }

    let mut listed: Vec<String> = run(Command::new("rpm").arg("-qpl").arg(rpm_path()))
        .lines()
        .map(str::to_string)
        .collect();
    listed.sort();
    let files = expected_files(
        "/usr/share/zsh/site-functions",
        "/usr/share/licenses/virtio-migrate",
        &[],
    );
    assert_eq!(
        listed,
        files.keys().cloned().collect::<Vec<_>>(),
        "rpm -qpl"
    );

    // Installed into a scratch root (rpm runs the post-install script chrooted there, so the
    // root gets a static busybox as /bin/sh and mkdir).
    let root = scratch("rpm-root");
    let bin = root.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static (setup-host.sh)");
    for applet in ["sh", "mkdir"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let root_arg = root.path().to_str().unwrap();
    let out = run(Command::new("rpm")
        .args([
            "--root",
            root_arg,
            "--dbpath",
            "/var/lib/rpm",
            "--nodeps",
            "-i",
        ])
        .arg(rpm_path())
        .stderr(Stdio::piped()));
    assert!(out.is_empty(), "{out}");
    assert_files_match_the_tree(root.path(), &files);
    let state = root.path().join(STATE_DIR.trim_start_matches('/'));
    let meta = fs::metadata(&state).expect("the post-install script made the state directory");
    assert!(meta.is_dir());
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o700,
        "state directory mode"
    );
    assert_eq!(
        sha256(&root.path().join("usr/bin/virtio-migrate")),
        sha256(&deb.binary()),
        "the .rpm and the .deb carry the same binary"
    );
    let queried = run(Command::new("rpm").args([
        "--root",
        root_arg,
        "--dbpath",
        "/var/lib/rpm",
        "-q",
        "virtio-migrate",
    ]));
    assert_eq!(queried.trim(), format!("virtio-migrate-{VERSION}-1.x86_64"));
    // Removal takes the files and leaves the state directory (it may hold the only backups).
    run(Command::new("rpm").args([
        "--root",
        root_arg,
        "--dbpath",
        "/var/lib/rpm",
        "-e",
        "virtio-migrate",
    ]));
    assert!(!root.path().join("usr/bin/virtio-migrate").exists());
    assert!(state.is_dir());
}

// ---------------------------------------------------------------------------------------------
// Debian 11 and 13: install the .deb in a chroot and run the demo host there and here.

/// A Debian release the .deb is proven on: its suite, and the libvirt0 and libc6 versions its
/// archive carries (checked, so a chroot of the wrong release cannot pass for it).
struct Suite {
    name: &'static str,
    libvirt_prefix: &'static str,
    libc_prefix: &'static str,
}

const BULLSEYE: Suite = Suite {
    name: "bullseye",
    libvirt_prefix: "7.0.",
    libc_prefix: "2.31-",
};
const TRIXIE: Suite = Suite {
    name: "trixie",
    libvirt_prefix: "11.",
    libc_prefix: "2.41-",
};

/// The demo commands, run with `--color never -c test://DEMO` before them. The convert and the
/// rollback are real: on the test driver (in-process, so each run starts from the node file)
/// convert shuts the guest down, defines the new XML, starts and verifies it for 1 s; rollback
/// restores the backup convert wrote to the state directory.
fn demo_runs(state: &str) -> Vec<(&'static str, Vec<String>, i32)> {
    let v = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        ("version", v(&["--version"]), 0),
        ("scan", v(&["scan"]), 0),
        ("scan --json", v(&["--json", "scan"]), 0),
        ("inspect", v(&["inspect", "--domain", "db-static01"]), 0),
        (
            "inspect --json",
            v(&["--json", "inspect", "--domain", "dev-win11"]),
            0,
        ),
        // 3: some of the demo's candidates are blocked (README: Exit codes).
        (
            "convert --all --dry-run",
            v(&["convert", "--all", "--dry-run"]),
            3,
        ),
        (
            "convert",
            v(&[
                "convert",
                "--domain",
                "db-static01",
                "--yes",
                "--verify-time",
                "1",
                "--state-dir",
                state,
            ]),
            0,
        ),
        (
            "rollback --list",
            v(&["rollback", "--list", "--state-dir", state]),
            0,
        ),
        (
            "rollback",
            v(&[
                "rollback",
                "--domain",
                "db-static01",
                "--yes",
                "--state-dir",
                state,
            ]),
            0,
        ),
    ]
}

/// What may differ between two runs of the same commands, replaced by a placeholder:
/// - durations (`0.20s`, `1.00s`, `0.0s`, `12ms`): how long libvirt and the guest took;
/// - backup ids (`20261204T095018Z`, also in paths): the UTC second the backup was made.
fn normalise_text(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
        if boundary && chars[i].is_ascii_digit() {
            let digits = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            let after = |n: usize| chars.get(i + n).copied();
            // A backup id: 8 digits, T, 6 digits, Z.
            if digits == 8
                && after(8) == Some('T')
                && chars[i + 9..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count()
                    == 6
                && after(15) == Some('Z')
            {
                out.push_str("<BACKUP-ID>");
                i += 16;
                continue;
            }
            // A duration: digits, optional .digits, then s or ms, then not a letter or digit.
            let mut end = i + digits;
            if chars.get(end) == Some(&'.') {
                let frac = chars[end + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                if frac > 0 {
                    end += 1 + frac;
                }
            }
            let unit = if chars.get(end) == Some(&'s') {
                1
            } else if chars.get(end) == Some(&'m') && chars.get(end + 1) == Some(&'s') {
                2
            } else {
                0
            };
            if unit > 0
                && !chars
                    .get(end + unit)
                    .is_some_and(|c| c.is_ascii_alphanumeric())
            {
                out.push_str("<DURATION>");
                i = end + unit;
                continue;
            }
            out.extend(&chars[i..i + digits]);
            i += digits;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// JSON documents (`--json` output, the journal's lines, a backup's meta.json) with the values
/// that differ between runs replaced: `time`, `created`, `started` (clock times), `pid`, and
/// every `…_ms` field (durations, e.g. a verdict's `wall_time_ms`); then [`normalise_text`].
fn normalise_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if matches!(key.as_str(), "time" | "created" | "started" | "pid")
                    || key.ends_with("_ms")
                {
                    *v = serde_json::Value::String(format!("<{key}>"));
                } else {
                    normalise_json(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(normalise_json),
        serde_json::Value::String(s) => *s = normalise_text(s),
        _ => {}
    }
}

/// Output made comparable: one JSON document, JSON lines, or text.
fn normalise(text: &str) -> String {
    if let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(text) {
        normalise_json(&mut doc);
        return serde_json::to_string_pretty(&doc).unwrap();
    }
    let lines: Vec<&str> = text.lines().collect();
    if !lines.is_empty() && lines.iter().all(|l| l.starts_with('{')) {
        if let Ok(docs) = lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l))
            .collect::<Result<Vec<_>, _>>()
        {
            return docs
                .into_iter()
                .map(|mut d| {
                    normalise_json(&mut d);
                    d.to_string() + "\n"
                })
                .collect();
        }
    }
    normalise_text(text)
}

/// Every file under `dir`, by normalised relative path, with its normalised content.
fn state_files(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                let text = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
                files.insert(normalise_text(&rel), normalise(&text));
            }
        }
    }
    files
}

struct RunResult {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl RunResult {
    fn from(out: Output) -> RunResult {
        RunResult {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A copy of the suite's cached chroot; commands run in it in a private mount namespace with
/// its own /proc (gone when the command ends: nothing stays mounted, whatever happens).
struct Chroot {
    dir: tempfile::TempDir,
}

impl Chroot {
    fn new(suite: &Suite) -> Chroot {
        let base = run(Command::new(Path::new(ROOT).join(".ci/debian-chroot")).arg(suite.name));
        let base = base.trim();
        let dir = scratch(suite.name);
        run(Command::new("cp")
            .arg("-a")
            .arg(format!("{base}/."))
            .arg(dir.path()));
        fs::copy("/etc/resolv.conf", dir.path().join("etc/resolv.conf")).unwrap();
        Chroot { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `path` (absolute, as seen here) inside the chroot.
    fn inside(&self, path: &Path) -> PathBuf {
        self.root().join(path.strip_prefix("/").unwrap())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.arg("--mount")
            .arg("--pid")
            .arg("--fork")
            .arg(format!(
                "--mount-proc={}",
                self.root().join("proc").display()
            ))
            .arg("chroot")
            .arg(self.root())
            .args([
                "/usr/bin/env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
                "DEBIAN_FRONTEND=noninteractive",
            ])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> String {
        run(&mut self.command(args))
    }
}

/// Copy a directory tree to the same absolute path inside the chroot.
fn copy_into(chroot: &Chroot, dir: &Path) {
    let to = chroot.inside(dir);
    fs::create_dir_all(&to).unwrap();
    run(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", dir.display()))
        .arg(&to));
}

/// Prints how long each part of a suite's proof took (seen with `--nocapture`, or on failure).
struct Phases {
    suite: &'static str,
    last: std::time::Instant,
}

impl Phases {
    fn done(&mut self, what: &str) {
        eprintln!("{}: {what} took {:.1?}", self.suite, self.last.elapsed());
        self.last = std::time::Instant::now();
    }
}

fn prove_on(suite: &Suite) {
    let mut phases = Phases {
        suite: suite.name,
        last: std::time::Instant::now(),
    };
    // The same binary runs here (Debian 12) as the reference, by name from the unpacked .deb
    // like in the chroot; packages left from another commit are refused before any work.
    let deb = Unpacked::deb();
    assert_version_line(
        &run(Command::new(deb.binary()).arg("--version")),
        "the .deb",
    );
    let chroot = Chroot::new(suite);
    phases.done("the chroot (.ci/debian-chroot, copied)");
    let deb_name = deb_path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    fs::copy(deb_path(), chroot.root().join("tmp").join(&deb_name)).unwrap();

    // apt-get install ./….deb, which must bring libvirt0 along as a dependency.
    let apt = [
        "-o",
        "Acquire::http::Timeout=60",
        "-o",
        "Acquire::Retries=3",
        "-o",
        "Acquire::Languages=none",
    ];
    chroot.run(&[&["apt-get"][..], &apt, &["-q", "update"]].concat());
    let deb_arg = format!("./tmp/{deb_name}");
    chroot.run(&[&["apt-get"][..], &apt, &["-q", "-y", "install", &deb_arg]].concat());
    let versions = chroot.run(&[
        "dpkg-query",
        "-W",
        "-f",
        "${Package} ${Version}\n",
        "virtio-migrate",
        "libvirt0",
        "libc6",
    ]);
    eprintln!("{}: {}", suite.name, versions.replace('\n', "; "));
    let version_of = |pkg: &str| -> String {
        versions
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{pkg} ")))
            .unwrap_or_else(|| panic!("{pkg} not installed: {versions}"))
            .to_string()
    };
    assert_eq!(version_of("virtio-migrate"), format!("{VERSION}-1"));
    assert!(
        version_of("libvirt0").starts_with(suite.libvirt_prefix),
        "{}: libvirt0 {}",
        suite.name,
        version_of("libvirt0")
    );
    assert!(version_of("libc6").starts_with(suite.libc_prefix));
    let auto = chroot.run(&["apt-mark", "showauto", "libvirt0"]);
    assert_eq!(auto.trim(), "libvirt0", "libvirt0 came in as a dependency");

    // The package's files as dpkg knows them, and the state directory.
    let mut dpkg_files: Vec<String> = chroot
        .run(&["dpkg", "-L", "virtio-migrate"])
        .lines()
        .filter(|p| chroot.inside(Path::new(p)).is_file())
        .map(str::to_string)
        .collect();
    dpkg_files.sort();
    assert_eq!(dpkg_files, deb_files(), "dpkg -L");
    let state_meta = fs::metadata(chroot.inside(Path::new(STATE_DIR))).unwrap();
    assert!(state_meta.is_dir());
    assert_eq!(state_meta.permissions().mode() & 0o7777, 0o700);
    let owner = chroot.run(&["stat", "-c", "%U:%G", STATE_DIR]);
    assert_eq!(owner.trim(), "root:root");

    // The demo host, at the same absolute paths here and in the chroot.
    phases.done("apt-get update, apt-get install ./….deb, checks");
    let work = scratch(&format!("{}-demo", suite.name));
    let fixtures = Path::new(ROOT).join("fixtures");
    copy_into(&chroot, &fixtures);
    let demo_dir = work.path().join("demo");
    let make_demo = fixtures.join("hosts/make-demo.sh");
    let make_demo = make_demo.to_str().unwrap();
    let demo_arg = demo_dir.to_str().unwrap();
    let uri = run(Command::new("sh").args([make_demo, demo_arg]));
    let uri_inside = chroot.run(&["sh", make_demo, demo_arg]);
    assert_eq!(uri, uri_inside);
    let uri = uri.trim();
    assert_eq!(
        state_files(&demo_dir),
        state_files(&chroot.inside(&demo_dir)),
        "the demo host written here and in the chroot"
    );
    let state = work.path().join("state");
    let state_arg = state.to_str().unwrap();
    fs::create_dir_all(chroot.inside(work.path())).unwrap();

    let here_path = format!("{}:/usr/bin:/bin", deb.path("usr/bin").display());
    let mut differences = Vec::new();
    for (name, args, code) in demo_runs(state_arg) {
        let mut full = vec![
            "--color".to_string(),
            "never".into(),
            "-c".into(),
            uri.into(),
        ];
        full.extend(args);
        let here = RunResult::from(
            Command::new("virtio-migrate")
                .env_clear()
                .env("PATH", &here_path)
                .env("HOME", "/root")
                .args(&full)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        );
        let mut inside_args = vec!["virtio-migrate"];
        inside_args.extend(full.iter().map(String::as_str));
        let there = RunResult::from(chroot.command(&inside_args).output().unwrap());
        assert_eq!(
            here.code,
            Some(code),
            "{name} on Debian 12: {}{}",
            here.stdout,
            here.stderr
        );
        if name == "version" {
            assert_version_line(&there.stdout, suite.name);
        }
        if there.code != here.code {
            differences.push(format!(
                "{name}: exit {:?} on {}, {:?} on Debian 12\n{}",
                there.code, suite.name, here.code, there.stderr
            ));
        }
        for (stream, a, b) in [
            ("stdout", &here.stdout, &there.stdout),
            ("stderr", &here.stderr, &there.stderr),
        ] {
            let (a, b) = (normalise(a), normalise(b));
            if a != b {
                differences.push(format!(
                    "{name} {stream} (- Debian 12, + {}):\n{}",
                    suite.name,
                    similar::TextDiff::from_lines(&a, &b).unified_diff()
                ));
            }
        }
    }
    phases.done("the demo host runs, here and in the chroot");
    // The real convert and rollback left the same backups and journal.
    let here_state = state_files(&state);
    assert!(
        here_state.keys().any(|k| k.ends_with("/new.xml")),
        "convert made no backup: {:?}",
        here_state.keys()
    );
    let there_state = state_files(&chroot.inside(&state));
    if here_state != there_state {
        differences.push(format!(
            "state directory (- Debian 12, + {}):\n{}",
            suite.name,
            similar::TextDiff::from_lines(
                &format!("{here_state:#?}"),
                &format!("{there_state:#?}")
            )
            .unified_diff()
        ));
    }
    assert!(
        differences.is_empty(),
        "{} differs from Debian 12:\n{}",
        suite.name,
        differences.join("\n")
    );

    // Purging the package keeps a state directory that holds backups (postrm removes it only
    // when empty).
    let backup = chroot
        .inside(Path::new(STATE_DIR))
        .join("backups/some-uuid/some-id");
    fs::create_dir_all(&backup).unwrap();
    fs::write(backup.join("persistent.xml"), "<domain/>").unwrap();
    chroot.run(&["apt-get", "-q", "-y", "purge", "virtio-migrate"]);
    assert!(!chroot.inside(Path::new("/usr/bin/virtio-migrate")).exists());
    assert!(
        backup.join("persistent.xml").is_file(),
        "purge removed the backups"
    );
    phases.done("apt-get purge");
}

#[test]
fn debian_11_runs_the_demo_host_like_debian_12() {
    if enabled("debian_11_runs_the_demo_host_like_debian_12") {
        prove_on(&BULLSEYE);
    }
}

#[test]
fn debian_13_runs_the_demo_host_like_debian_12() {
    if enabled("debian_13_runs_the_demo_host_like_debian_12") {
        prove_on(&TRIXIE);
    }
}

#[test]
fn normalising_hides_times_and_ids_only() {
    // Not gated: the comparison above is only as strict as this.
    assert_eq!(
        normalise_text("backup 20261204T095018Z written to /s/20261204T095018Z after 0.20s"),
        "backup <BACKUP-ID> written to /s/<BACKUP-ID> after <DURATION>"
    );
    assert_eq!(
        normalise_text("verify 1s / 300s, 12ms; win2k8r2 6.1 build 7601 hda 2s3"),
        "verify <DURATION> / <DURATION>, <DURATION>; win2k8r2 6.1 build 7601 hda 2s3"
    );
    assert_eq!(normalise_text("exit 3, 16 domains"), "exit 3, 16 domains");
    let mut doc: serde_json::Value = serde_json::from_str(
        r#"{"verdict": {"wall_time_ms": 13, "bytes_read": 4096}, "pid": 7, "state": "ready"}"#,
    )
    .unwrap();
    normalise_json(&mut doc);
    assert_eq!(
        doc,
        serde_json::json!({"verdict": {"wall_time_ms": "<wall_time_ms>", "bytes_read": 4096},
            "pid": "<pid>", "state": "ready"})
    );
}
