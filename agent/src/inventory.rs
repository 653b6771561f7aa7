//! The device inventory the agent reports: hardware, memory, package counts, the
//! block-device filesystems with their encryption, and the firewall state. Read under
//! [`Roots`] like the checks; every string is cleaned and bounded.

use std::path::{Component, Path};

pub use ward_vocab::inventory::{Filesystem, Inventory, PackageCount};

use crate::checks::Roots;
use crate::checks::disk::{self, Mount};
use crate::facts::clean;

/// At most this many filesystems are reported.
const MAX_FILESYSTEMS: usize = 64;

/// Filesystem types that are never a disk's data, even on a block device: pseudo and
/// in-memory filesystems, and read-only images (snaps are squashfs on loop devices).
const NOT_DATA: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "erofs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// Reads the inventory, with the package counts and firewall state the caller already read
/// for the compliance checks (each costs a package-database read or a firewall-rules dump).
/// The filesystems holding `data_paths` are listed first, so the bound on the list never
/// drops them.
pub fn collect(
    roots: &Roots,
    data_paths: &[&Path],
    package_counts: &[(String, u32)],
    firewall_state: &str,
) -> Inventory {
    let dmi = |name: &str| {
        clean(
            &std::fs::read_to_string(roots.sys.join("class/dmi/id").join(name)).unwrap_or_default(),
        )
    };
    let cpuinfo = std::fs::read_to_string(roots.proc.join("cpuinfo")).unwrap_or_default();
    let meminfo = std::fs::read_to_string(roots.proc.join("meminfo")).unwrap_or_default();
    Inventory {
        hardware_vendor: dmi("sys_vendor"),
        hardware_model: dmi("product_name"),
        cpu_model: clean(
            cpuinfo_values(&cpuinfo, "model name")
                .next()
                .unwrap_or_default(),
        ),
        cpu_count: u32::try_from(cpuinfo_values(&cpuinfo, "processor").count()).unwrap_or(u32::MAX),
        memory_bytes: memory_bytes(&meminfo),
        packages: package_counts
            .iter()
            .map(|(name, count)| PackageCount {
                manager: clean(name),
                count: *count,
            })
            .collect(),
        filesystems: filesystems(roots, data_paths),
        firewall: clean(firewall_state),
    }
}

fn cpuinfo_values<'a>(cpuinfo: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> {
    cpuinfo.lines().filter_map(move |line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then_some(v.trim())
    })
}

fn memory_bytes(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib.saturating_mul(1024))
}

fn filesystems(roots: &Roots, data_paths: &[&Path]) -> Vec<Filesystem> {
    let text = std::fs::read_to_string(roots.proc.join("self/mountinfo")).unwrap_or_default();
    let mut mounts: Vec<Mount> = Vec::new();
    for mount in disk::parse_mountinfo(&text) {
        if !on_block_device(roots, &mount) {
            continue;
        }
        // A later mount at the same point shadows the earlier one.
        mounts.retain(|m| m.mount_point != mount.mount_point);
        mounts.push(mount);
    }
    // Data paths' filesystems first (the deepest mount holding each path).
    let mut order: Vec<usize> = Vec::new();
    for path in data_paths {
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let holder = (0..mounts.len())
            .filter(|&i| real.starts_with(&mounts[i].mount_point))
            .max_by_key(|&i| depth(&mounts[i].mount_point));
        order.extend(holder.filter(|i| !order.contains(i)));
    }
    for i in 0..mounts.len() {
        if !order.contains(&i) {
            order.push(i);
        }
    }
    order
        .into_iter()
        .take(MAX_FILESYSTEMS)
        .map(|i| {
            let m = &mounts[i];
            let encryption =
                match device_of(roots, m).and_then(|mm| disk::device_encryption(roots, &mm)) {
                    Some(true) => "encrypted",
                    Some(false) => "not encrypted",
                    None => "unknown",
                };
            Filesystem {
                mount_point: clean(&m.mount_point.to_string_lossy()),
                fs_type: clean(&m.fs_type),
                source: clean(&m.source),
                encryption: encryption.to_owned(),
            }
        })
        .collect()
}

fn depth(path: &Path) -> usize {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

fn on_block_device(roots: &Roots, m: &Mount) -> bool {
    if NOT_DATA.contains(&m.fs_type.as_str()) || m.fs_type.starts_with("fuse") {
        return false;
    }
    roots.sys.join("dev/block").join(&m.major_minor).exists() || m.source.starts_with("/dev/")
}

/// The block device ("MAJ:MIN") under a mount. Btrfs reports an anonymous device number
/// in mountinfo, so then the source names it: `/dev/nvme0n1p3` or `/dev/mapper/<name>`.
fn device_of(roots: &Roots, m: &Mount) -> Option<String> {
    if roots.sys.join("dev/block").join(&m.major_minor).exists() {
        return Some(m.major_minor.clone());
    }
    let class = roots.sys.join("class/block");
    let read_dev = |dir: &Path| {
        std::fs::read_to_string(dir.join("dev"))
            .ok()
            .map(|d| d.trim().to_owned())
    };
    if let Some(name) = m.source.strip_prefix("/dev/mapper/") {
        return std::fs::read_dir(&class)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|dir| {
                std::fs::read_to_string(dir.join("dm/name")).is_ok_and(|n| n.trim() == name)
            })
            .and_then(|dir| read_dev(&dir));
    }
    let name = m.source.strip_prefix("/dev/")?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    read_dev(&class.join(name))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// The inventory with its own package and firewall readings, as the agent takes them.
    fn collect_all(roots: &Roots, data_paths: &[&Path]) -> Inventory {
        let packages = crate::checks::packages::counts(roots);
        collect(
            roots,
            data_paths,
            &packages,
            &crate::checks::firewall::state(roots),
        )
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// `sys/class/block/NAME` with its `dev` number, linked from `sys/dev/block/MAJ:MIN`.
    fn block(r: &Roots, name: &str, major_minor: &str, dm: Option<(&str, &str)>, slaves: &[&str]) {
        let dir = r.sys.join("class/block").join(name);
        fs::create_dir_all(dir.join("slaves")).unwrap();
        write(&dir.join("dev"), &format!("{major_minor}\n"));
        if let Some((dm_name, uuid)) = dm {
            write(&dir.join("dm/name"), &format!("{dm_name}\n"));
            write(&dir.join("dm/uuid"), &format!("{uuid}\n"));
        }
        for slave in slaves {
            write(&dir.join("slaves").join(slave), "");
        }
        fs::create_dir_all(r.sys.join("dev/block")).unwrap();
        std::os::unix::fs::symlink(&dir, r.sys.join("dev/block").join(major_minor)).unwrap();
    }

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw - proc proc rw
25 24 0:23 / /dev/shm rw - tmpfs tmpfs rw
27 1 253:0 / / rw,relatime - ext4 /dev/mapper/root rw
30 27 8:1 / /boot rw - ext4 /dev/sda1 rw
31 27 0:40 /home /home\\040dir rw - btrfs /dev/mapper/home rw
32 27 7:3 / /snap/core22/1033 ro - squashfs /dev/loop3 ro
33 27 0:50 / /net rw - nfs4 server:/export rw
34 27 8:1 / /boot rw - ext4 /dev/sda1 rw
35 27 0:51 / /weird rw - xfs /dev/sdz9 rw
";

    fn fixture() -> (tempfile::TempDir, Roots) {
        let tmp = tempfile::tempdir().unwrap();
        let r = Roots::under(tmp.path());
        write(&r.proc.join("self/mountinfo"), MOUNTINFO);
        write(
            &r.proc.join("cpuinfo"),
            "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i7-1165G7 @ 2.80GHz\n\n\
             processor\t: 1\nmodel name\t: Intel(R) Core(TM) i7-1165G7 @ 2.80GHz\n",
        );
        write(
            &r.proc.join("meminfo"),
            "MemTotal:       16318480 kB\nMemFree:  1 kB\n",
        );
        write(&r.sys.join("class/dmi/id/sys_vendor"), "LENOVO\n");
        write(
            &r.sys.join("class/dmi/id/product_name"),
            "  20XW\u{7}CTO1WW \n",
        );
        block(
            &r,
            "dm-0",
            "253:0",
            Some(("root", "CRYPT-LUKS2-abc-root")),
            &["sda2"],
        );
        block(&r, "sda2", "8:2", None, &[]);
        block(&r, "sda1", "8:1", None, &[]);
        block(
            &r,
            "dm-1",
            "253:1",
            Some(("home", "CRYPT-LUKS2-def-home")),
            &["sda3"],
        );
        block(&r, "sda3", "8:3", None, &[]);
        block(&r, "loop3", "7:3", None, &[]);
        write(
            &r.var.join("lib/dpkg/status"),
            "Package: a\nStatus: install ok installed\n\nPackage: b\nStatus: deinstall ok config-files\n",
        );
        (tmp, r)
    }

    #[test]
    fn inventory_from_fixture_trees() {
        let (_t, r) = fixture();
        let inv = collect_all(&r, &[Path::new("/boot/efi/ward")]);
        let fs = |mount_point: &str, fs_type: &str, source: &str, encryption: &str| Filesystem {
            mount_point: mount_point.into(),
            fs_type: fs_type.into(),
            source: source.into(),
            encryption: encryption.into(),
        };
        assert_eq!(
            inv,
            Inventory {
                hardware_vendor: "LENOVO".into(),
                // A control character in the DMI text becomes a space (ward_vocab::text).
                hardware_model: "20XW CTO1WW".into(),
                cpu_model: "Intel(R) Core(TM) i7-1165G7 @ 2.80GHz".into(),
                cpu_count: 2,
                memory_bytes: 16_318_480 * 1024,
                packages: vec![PackageCount {
                    manager: "dpkg".into(),
                    count: 1,
                }],
                filesystems: vec![
                    fs("/boot", "ext4", "/dev/sda1", "not encrypted"),
                    fs("/", "ext4", "/dev/mapper/root", "encrypted"),
                    fs("/home dir", "btrfs", "/dev/mapper/home", "encrypted"),
                    fs("/weird", "xfs", "/dev/sdz9", "unknown"),
                ],
                firewall: format!(
                    "unknown: nft is not in {0}; iptables-save is not in {0}; ip6tables-save is not in {0}",
                    r.bin_dir.as_ref().unwrap().display()
                ),
            }
        );
        let json = serde_json::to_string(&inv).unwrap();
        assert_eq!(serde_json::from_str::<Inventory>(&json).unwrap(), inv);
    }

    #[test]
    fn missing_files_give_empty_values_and_lists_are_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let r = Roots::under(tmp.path());
        let mountinfo: String = (0..100)
            .map(|i| format!("{i} 1 8:{i} / /m{i} rw - ext4 /dev/sd{i} rw\n"))
            .collect();
        write(&r.proc.join("self/mountinfo"), &mountinfo);
        write(&r.sys.join("class/dmi/id/sys_vendor"), &"x".repeat(1000));
        let inv = collect_all(&r, &[Path::new("/m99/data")]);
        assert_eq!(inv.filesystems.len(), MAX_FILESYSTEMS);
        assert_eq!(inv.filesystems[0].mount_point, "/m99");
        assert!(inv.filesystems.iter().all(|f| f.encryption == "unknown"));
        assert_eq!(inv.hardware_vendor.len(), crate::facts::MAX_LEN);
        assert_eq!(
            (inv.hardware_model.as_str(), inv.cpu_count, inv.memory_bytes),
            ("", 0, 0)
        );
        assert!(inv.packages.is_empty());
    }

    #[test]
    fn the_real_system_does_not_panic() {
        let inv = collect_all(&Roots::default(), &[Path::new("/")]);
        assert!(!inv.firewall.is_empty());
        println!("inventory of this system: {inv:#?}");
    }
}
