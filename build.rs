//! Records the git commit the binary is built from, for `virtio-migrate --version`
//! (`VIRTIO_MIGRATE_LONG_VERSION`, read by the clap definition in src/cli/mod.rs).
//!
//! The commit comes from `VIRTIO_MIGRATE_COMMIT` when it is set (.ci/package sets it, with a
//! `-dirty` suffix for a tree with uncommitted changes; a distribution building from a tarball can
//! set it too), else from `git rev-parse` when this crate is the top of a git checkout. A source
//! tarball without `.git`, or one unpacked inside some other repository, says "commit unknown"
//! rather than naming a commit it was not built from.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=VIRTIO_MIGRATE_COMMIT");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let commit = std::env::var("VIRTIO_MIGRATE_COMMIT")
        .ok()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .or_else(git_commit);
    let long = match commit {
        Some(commit) => format!("{version} (commit {commit})"),
        None => format!("{version} (commit unknown: not built from a git checkout)"),
    };
    println!("cargo:rustc-env=VIRTIO_MIGRATE_LONG_VERSION={long}");
}

/// `git` run in this crate's directory, its trimmed standard output when it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .args(args)
        .current_dir(&dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// The short commit id of HEAD when this crate's directory is the top of its git work tree, and
/// the files whose change means HEAD moved (so cargo reruns this script after a commit or a
/// checkout, and not otherwise).
fn git_commit() -> Option<String> {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let top = git(&["rev-parse", "--show-toplevel"])?;
    if !same_dir(Path::new(&top), &manifest_dir) {
        return None;
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // HEAD lives in the work tree's own git dir (a linked worktree has one of its own); the
    // branch it names, and packed-refs, in the common dir.
    let git_dir = absolute(&manifest_dir, &git(&["rev-parse", "--git-dir"])?);
    let common_dir = absolute(&manifest_dir, &git(&["rev-parse", "--git-common-dir"])?);
    let mut watch = vec![git_dir.join("HEAD"), common_dir.join("packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(common_dir.join(branch));
    }
    // A path that does not exist would make cargo rerun the script on every build.
    for path in watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    Some(commit)
}

fn absolute(base: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
