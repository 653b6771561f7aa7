//! Fixture trees that mimic /proc and /sys for each storage layout.

use std::fs;

use super::*;

struct Fixture {
    _tmp: tempfile::TempDir,
    roots: Roots,
}

fn fixture(mountinfo: &str) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let roots = Roots {
        proc: tmp.path().join("proc"),
        sys: tmp.path().join("sys"),
        etc: tmp.path().join("etc"),
        ..Roots::under(tmp.path())
    };
    fs::create_dir_all(roots.proc.join("self")).unwrap();
    fs::write(roots.proc.join("self/mountinfo"), mountinfo).unwrap();
    Fixture { _tmp: tmp, roots }
}

/// A block device: `sys/class/block/NAME`, linked from `sys/dev/block/MAJ:MIN`.
fn block(f: &Fixture, name: &str, major_minor: &str, dm_uuid: Option<&str>, slaves: &[&str]) {
    let dir = f.roots.sys.join("class/block").join(name);
    fs::create_dir_all(dir.join("slaves")).unwrap();
    if let Some(uuid) = dm_uuid {
        fs::create_dir_all(dir.join("dm")).unwrap();
        fs::write(dir.join("dm/uuid"), format!("{uuid}\n")).unwrap();
    }
    for slave in slaves {
        fs::write(dir.join("slaves").join(slave), "").unwrap();
    }
    fs::create_dir_all(f.roots.sys.join("dev/block")).unwrap();
    std::os::unix::fs::symlink(&dir, f.roots.sys.join("dev/block").join(major_minor)).unwrap();
}

const LUKS_ROOT: &str = "25 1 253:0 / / rw,relatime - ext4 /dev/mapper/root rw\n\
                         30 25 8:1 / /boot rw - ext4 /dev/sda1 rw\n";

#[test]
fn root_on_luks_passes() {
    let f = fixture(LUKS_ROOT);
    block(&f, "dm-0", "253:0", Some("CRYPT-LUKS2-abc-root"), &["sda2"]);
    block(&f, "sda2", "8:2", None, &[]);
    assert!(matches!(
        check(&f.roots, &[Path::new("/")]),
        Outcome::Pass(_)
    ));
}

#[test]
fn lvm_on_luks_passes_and_lvm_on_plain_disk_fails() {
    let f = fixture("25 1 253:1 / / rw - xfs /dev/mapper/vg-root rw\n");
    block(&f, "dm-1", "253:1", Some("LVM-xyz"), &["dm-0"]);
    block(&f, "dm-0", "253:0", Some("CRYPT-LUKS2-abc-pv"), &["sda2"]);
    block(&f, "sda2", "8:2", None, &[]);
    assert!(matches!(
        check(&f.roots, &[Path::new("/")]),
        Outcome::Pass(_)
    ));

    let g = fixture("25 1 253:1 / / rw - xfs /dev/mapper/vg-root rw\n");
    block(&g, "dm-1", "253:1", Some("LVM-xyz"), &["sda2"]);
    block(&g, "sda2", "8:2", None, &[]);
    assert!(matches!(
        check(&g.roots, &[Path::new("/")]),
        Outcome::Fail(_)
    ));
}

#[test]
fn plain_partition_fails_naming_the_device() {
    let f = fixture("25 1 8:1 / / rw - ext4 /dev/sda1 rw\n");
    block(&f, "sda1", "8:1", None, &[]);
    match check(&f.roots, &[Path::new("/")]) {
        Outcome::Fail(detail) => assert!(
            detail.contains("/dev/sda1") && detail.contains("no dm-crypt"),
            "{detail}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn one_unencrypted_path_fails_the_whole_check() {
    let f = fixture(
        "25 1 253:0 / / rw - ext4 /dev/mapper/root rw\n40 25 8:17 / /srv rw - ext4 /dev/sdb1 rw\n",
    );
    block(&f, "dm-0", "253:0", Some("CRYPT-LUKS2-abc-root"), &[]);
    block(&f, "sdb1", "8:17", None, &[]);
    let outcome = check(&f.roots, &[Path::new("/"), Path::new("/srv/messaging")]);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.contains("/srv")),
        "{outcome:?}"
    );
}

#[test]
fn virtual_and_network_filesystems_are_unsupported_not_passed() {
    let f = fixture(
        "25 1 0:50 / / rw - overlay overlay rw,lowerdir=/a,upperdir=/var/lib/x/upper,workdir=/w\n\
                     26 25 0:60 / /mnt/share rw - nfs4 server:/share rw\n",
    );
    assert!(matches!(
        check(&f.roots, &[Path::new("/")]),
        Outcome::Unsupported(_)
    ));
    assert!(matches!(
        check(&f.roots, &[Path::new("/mnt/share/x")]),
        Outcome::Unsupported(_)
    ));
}

#[test]
fn tmpfs_passes_as_memory_backed_and_missing_mountinfo_is_unsupported() {
    let f = fixture("25 1 0:30 / /run rw - tmpfs tmpfs rw\n");
    assert!(matches!(
        check(&f.roots, &[Path::new("/run/x")]),
        Outcome::Pass(_)
    ));
    let missing = Roots {
        proc: "/nonexistent".into(),
        sys: "/nonexistent".into(),
        etc: "/nonexistent".into(),
        ..Roots::under(Path::new("/nonexistent"))
    };
    assert!(matches!(
        check(&missing, &[Path::new("/")]),
        Outcome::Unsupported(_)
    ));
}

#[test]
fn escaped_mount_points_are_read() {
    let mounts = parse_mountinfo("25 1 8:1 / /mnt/my\\040disk rw - ext4 /dev/sda1 rw\n");
    assert_eq!(mounts[0].mount_point, PathBuf::from("/mnt/my disk"));
}
