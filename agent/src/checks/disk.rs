//! Disk encryption of the filesystems that hold given paths, and of swap, from
//! `/proc/self/mountinfo`, `/proc/swaps` and sysfs: a block device counts as encrypted when
//! it is a dm-crypt mapping cryptsetup made (LUKS, plain, BitLocker, ...) or is built only
//! on such mappings (LVM on LUKS, verity over LUKS). dm-verity and dm-integrity carry
//! cryptsetup's "CRYPT-" uuid prefix too, but they hide nothing: they count only by what
//! they are built on.
//!
//! Swap holds memory pages, keys and decrypted messages among them, so it must be
//! encrypted too: a swap partition must be dm-crypt, a swap file must be on an encrypted
//! filesystem, and zram (compressed memory) counts as off disk unless it has a writeback
//! device, which must then be encrypted.

use std::path::{Component, Path, PathBuf};

use super::{Outcome, Roots};

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone)]
pub(crate) struct Mount {
    pub major_minor: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

/// dm-crypt types cryptsetup writes in a mapping's uuid (`CRYPT-<TYPE>-...`) that encrypt.
/// Not here: VERITY, INTEGRITY and SUBDEV (LUKS2's integrity part under its dm-crypt).
const ENCRYPTING: [&str; 7] = [
    "LUKS1", "LUKS2", "PLAIN", "LOOPAES", "TCRYPT", "BITLK", "FVAULT2",
];

/// Checks every path and every active swap area; passes only if all of them are encrypted
/// (or in memory).
pub fn check(roots: &Roots, paths: &[&Path]) -> Outcome {
    let mountinfo_path = roots.proc.join("self/mountinfo");
    let Ok(mountinfo) = std::fs::read_to_string(&mountinfo_path) else {
        return Outcome::Unsupported(format!("{} is not readable", mountinfo_path.display()));
    };
    let mounts = parse_mountinfo(&mountinfo);
    let mut passes = Vec::new();
    let mut fails = Vec::new();
    let mut unknown = Vec::new();
    let mut sort = |what: String, outcome: Outcome| match outcome {
        Outcome::Pass(d) => passes.push(format!("{what}: {d}")),
        Outcome::Fail(d) => fails.push(format!("{what}: {d}")),
        Outcome::Unsupported(d) | Outcome::Error(d) => unknown.push(format!("{what}: {d}")),
    };
    for path in paths {
        sort(
            path.display().to_string(),
            path_status(roots, &mounts, path, 0),
        );
    }
    match swap_areas(roots) {
        Err(why) => sort("swap".into(), Outcome::Unsupported(why)),
        Ok(areas) if areas.is_empty() => sort("swap".into(), Outcome::Pass("no swap".into())),
        Ok(areas) => {
            for (name, kind) in areas {
                let outcome = swap_status(roots, &mounts, &name, &kind);
                sort(format!("swap {name}"), outcome);
            }
        }
    }
    if !fails.is_empty() {
        Outcome::Fail(fails.join("; "))
    } else if !unknown.is_empty() {
        Outcome::Unsupported(unknown.join("; "))
    } else {
        Outcome::Pass(passes.join("; "))
    }
}

fn path_status(roots: &Roots, mounts: &[Mount], path: &Path, depth: usize) -> Outcome {
    if depth > 4 {
        return Outcome::Unsupported("overlay filesystems nest too deeply to follow".into());
    }
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Some(mount) = mount_of(mounts, &real) else {
        return Outcome::Unsupported("no mount found for it in mountinfo".into());
    };
    match mount.fs_type.as_str() {
        "tmpfs" | "ramfs" => Outcome::Pass(format!(
            "memory-backed {} on {}: nothing is written to disk",
            mount.fs_type,
            mount.mount_point.display()
        )),
        "overlay" => match option(&mount.super_options, "upperdir") {
            Some(upper) => path_status(roots, mounts, Path::new(&upper), depth + 1),
            None => Outcome::Unsupported("overlay filesystem without an upper directory".into()),
        },
        "nfs" | "nfs4" | "cifs" | "smb3" | "9p" | "virtiofs" => Outcome::Unsupported(format!(
            "{} is a network filesystem ({}); its encryption is the server's",
            mount.mount_point.display(),
            mount.fs_type
        )),
        fs if fs.starts_with("fuse") => Outcome::Unsupported(format!(
            "{} is a FUSE filesystem ({fs})",
            mount.mount_point.display()
        )),
        _ => block_status(roots, mount),
    }
}

fn block_status(roots: &Roots, mount: &Mount) -> Outcome {
    let dev = roots.sys.join("dev/block").join(&mount.major_minor);
    if !dev.exists() {
        return Outcome::Unsupported(format!(
            "{} ({}, {}) has no block device {} in sysfs",
            mount.mount_point.display(),
            mount.fs_type,
            mount.source,
            mount.major_minor
        ));
    }
    match encrypted(roots, &dev, 0) {
        Some(true) => Outcome::Pass(format!(
            "{} on {} is dm-crypt",
            mount.mount_point.display(),
            mount.source
        )),
        Some(false) => Outcome::Fail(format!(
            "{} ({}) is on {}, which has no dm-crypt/LUKS layer",
            mount.mount_point.display(),
            mount.fs_type,
            mount.source
        )),
        None => Outcome::Unsupported(format!(
            "cannot follow the device stack of {}",
            mount.source
        )),
    }
}

/// The active swap areas in `/proc/swaps`: (file name, "partition" or "file").
fn swap_areas(roots: &Roots) -> Result<Vec<(String, String)>, String> {
    let path = roots.proc.join("swaps");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{} is not readable ({e})", path.display()))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some((unescape(fields.next()?), fields.next()?.to_owned()))
        })
        .collect())
}

fn swap_status(roots: &Roots, mounts: &[Mount], name: &str, kind: &str) -> Outcome {
    if kind != "partition" {
        // A swap file: what holds it decides.
        return path_status(roots, mounts, Path::new(name), 0);
    }
    let Some(dev) = block_device_named(roots, name) else {
        return Outcome::Unsupported(format!("no block device {name} in sysfs"));
    };
    let base = dev.file_name().map(|n| n.to_string_lossy().into_owned());
    if base.as_deref().is_some_and(|b| b.starts_with("zram")) {
        let backing = std::fs::read_to_string(dev.join("backing_dev")).unwrap_or_default();
        let backing = backing.trim();
        if backing.is_empty() || backing == "none" {
            return Outcome::Pass(
                "zram, compressed memory without a writeback device: nothing is written to disk"
                    .into(),
            );
        }
        return match block_device_named(roots, backing).map(|d| encrypted(roots, &d, 0)) {
            Some(Some(true)) => {
                Outcome::Pass(format!("zram writing back to {backing}, which is dm-crypt"))
            }
            Some(Some(false)) => Outcome::Fail(format!(
                "zram writes pages back to {backing}, which has no dm-crypt/LUKS layer"
            )),
            _ => Outcome::Unsupported(format!(
                "cannot follow the device stack of zram's writeback device {backing}"
            )),
        };
    }
    match encrypted(roots, &dev, 0) {
        Some(true) => Outcome::Pass("dm-crypt".into()),
        Some(false) => Outcome::Fail(format!(
            "swap partition {name} has no dm-crypt/LUKS layer: memory pages reach the disk in clear"
        )),
        None => Outcome::Unsupported(format!("cannot follow the device stack of {name}")),
    }
}

/// The sysfs directory of a block device given by its `/dev` path: `/dev/NAME` is
/// `class/block/NAME`; `/dev/mapper/NAME` is the dm device whose `dm/name` is NAME.
fn block_device_named(roots: &Roots, dev_path: &str) -> Option<PathBuf> {
    let class = roots.sys.join("class/block");
    if let Some(dm_name) = dev_path.strip_prefix("/dev/mapper/") {
        return std::fs::read_dir(&class)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|dir| {
                std::fs::read_to_string(dir.join("dm/name")).is_ok_and(|n| n.trim() == dm_name)
            });
    }
    let name = dev_path.strip_prefix("/dev/")?;
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    let dir = class.join(name);
    dir.exists().then_some(dir)
}

/// For the inventory: whether the block device `major_minor` (as in mountinfo, "253:0") is
/// dm-crypt or built only on dm-crypt devices. `None` when sysfs has no such block device
/// or its stack cannot be read.
pub fn device_encryption(roots: &Roots, major_minor: &str) -> Option<bool> {
    if major_minor.is_empty() || major_minor.contains('/') {
        return None;
    }
    let dev = roots.sys.join("dev/block").join(major_minor);
    if !dev.exists() {
        return None;
    }
    encrypted(roots, &dev, 0)
}

/// Whether the block device at `dev` (a sysfs device directory) is dm-crypt or built only
/// on dm-crypt devices. `None` when the stack cannot be read.
fn encrypted(roots: &Roots, dev: &Path, depth: usize) -> Option<bool> {
    if depth > 8 {
        return None;
    }
    if std::fs::read_to_string(dev.join("dm/uuid")).is_ok_and(|uuid| {
        uuid.trim()
            .strip_prefix("CRYPT-")
            .and_then(|rest| rest.split('-').next())
            .is_some_and(|kind| ENCRYPTING.contains(&kind))
    }) {
        return Some(true);
    }
    let slaves: Vec<String> = std::fs::read_dir(dev.join("slaves"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if slaves.is_empty() {
        return Some(false);
    }
    let mut all = true;
    for slave in slaves {
        all &= encrypted(roots, &roots.sys.join("class/block").join(slave), depth + 1)?;
    }
    Some(all)
}

fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    // The last matching entry wins: later mounts shadow earlier ones at the same point.
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| {
            m.mount_point
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .count()
        })
}

fn option(options: &str, key: &str) -> Option<String> {
    options
        .split(',')
        .find_map(|o| o.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
}

fn unescape(field: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo (octal).
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = (bytes[i] == b'\\')
            .then(|| bytes.get(i + 1..i + 4))
            .flatten()
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match code {
            Some(c) => {
                out.push(c);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            Some(Mount {
                major_minor: (*left.get(2)?).to_owned(),
                mount_point: PathBuf::from(unescape(left.get(4)?)),
                fs_type: (*right.first()?).to_owned(),
                source: unescape(right.get(1)?),
                super_options: right.get(2).map(|s| (*s).to_owned()).unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;
