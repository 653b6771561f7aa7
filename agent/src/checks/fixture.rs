//! Fixture trees for the checks' tests: every root under one temporary directory, files
//! written with their parents, and fake programs in the tree's `bin`.

use std::fs;
use std::path::Path;

use super::Roots;

/// A temporary tree with every root under it (and an empty `proc`).
pub(super) fn tree() -> (tempfile::TempDir, Roots) {
    let tmp = tempfile::tempdir().unwrap();
    let roots = Roots::under(tmp.path());
    fs::create_dir_all(&roots.proc).unwrap();
    (tmp, roots)
}

/// Writes `text` to `path`, creating its directories.
pub(super) fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// A fake program `name` in the tree's `bin`: a shell script running `body`.
pub(super) fn script(roots: &Roots, name: &str, body: &str) {
    let path = roots.bin_dir.as_ref().unwrap().join(name);
    write(&path, &format!("#!/bin/sh\n{body}\n"));
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}
