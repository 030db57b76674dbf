//! A registry scenario of fixtures/hives/<scenario>/ laid out as a guest volume on a host
//! directory: the files and folders its files.txt lists and its hives (and logs) in
//! `<root>/System32/config`. Included with `#[path]` by the tests that read scenarios.
//!
//! files.txt lines: `root NAME` (the system root), `d PATH` (a directory), `f PATH [TEXT]` (a
//! file holding TEXT, else the marker "MZ fixture file NAME\n"), `c PATH SOURCE` (a copy of
//! fixtures/drivers/SOURCE: INF files, PE driver images). A hive stored gzipped (`SYSTEM.gz`,
//! the real-size scenarios) is decompressed.

#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

pub fn fixture_dir(scenario: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/hives")
        .join(scenario)
}

pub fn drivers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/drivers")
}

/// Create `rel` under `base`, reusing existing components whose names match without regard to
/// case (so "WINDOWS/system32" and "Windows/System32/config" land in one tree).
pub fn make_dirs_ci(base: &Path, rel: &str) -> PathBuf {
    let mut current = base.to_path_buf();
    for comp in rel.split('/').filter(|c| !c.is_empty()) {
        let existing = fs::read_dir(&current).ok().and_then(|entries| {
            entries
                .flatten()
                .find(|e| e.file_name().to_string_lossy().eq_ignore_ascii_case(comp))
                .map(|e| e.path())
        });
        current = match existing {
            Some(p) => p,
            None => {
                let p = current.join(comp);
                fs::create_dir(&p).unwrap();
                p
            }
        };
    }
    current
}

/// A scenario's volume on the host. Returns the directory and the system root name.
pub fn lay_out(scenario: &str) -> (tempfile::TempDir, String) {
    let src = fixture_dir(scenario);
    let dir = tempfile::tempdir().unwrap();
    let manifest = fs::read_to_string(src.join("files.txt")).unwrap();
    let mut root = None;
    for line in manifest.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("root"), Some(name), None) => {
                make_dirs_ci(dir.path(), name);
                root = Some(name.to_string());
            }
            (Some("d"), Some(path), None) => {
                make_dirs_ci(dir.path(), path);
            }
            (Some(kind @ ("f" | "c")), Some(path), text) => {
                let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
                let parent = make_dirs_ci(dir.path(), parent);
                let content = match (kind, text) {
                    ("c", Some(source)) => fs::read(drivers_dir().join(source))
                        .unwrap_or_else(|e| panic!("{scenario}: fixtures/drivers/{source}: {e}")),
                    ("c", None) => panic!("{scenario}/files.txt: `c` needs a source: {line:?}"),
                    (_, Some(t)) => t.as_bytes().to_vec(),
                    (_, None) => format!("MZ fixture file {name}\n").into_bytes(),
                };
                fs::write(parent.join(name), content).unwrap();
            }
            _ => panic!("{scenario}/files.txt: bad line {line:?}"),
        }
    }
    let root = root.unwrap_or_else(|| panic!("{scenario}/files.txt: no root line"));
    let config = make_dirs_ci(dir.path(), &format!("{root}/System32/config"));
    for hive in [
        "SYSTEM",
        "SOFTWARE",
        "SYSTEM.LOG1",
        "SYSTEM.LOG2",
        "SOFTWARE.LOG1",
    ] {
        if src.join(hive).exists() {
            fs::copy(src.join(hive), config.join(hive)).unwrap();
        } else if src.join(format!("{hive}.gz")).exists() {
            let gz = fs::File::open(src.join(format!("{hive}.gz"))).unwrap();
            let mut data = Vec::new();
            flate2::read::GzDecoder::new(gz)
                .read_to_end(&mut data)
                .unwrap();
            fs::write(config.join(hive), data).unwrap();
        }
    }
    (dir, root)
}
