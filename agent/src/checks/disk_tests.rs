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
    // No swap unless a test adds some.
    swaps(&roots, &[]);
    Fixture { _tmp: tmp, roots }
}

/// `/proc/swaps` with these (filename, type) entries, as the kernel writes it.
fn swaps(roots: &Roots, entries: &[(&str, &str)]) {
    let mut text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n".to_owned();
    for (name, kind) in entries {
        text.push_str(&format!("{name:<40}{kind}\t8388604\t\t0\t\t-2\n"));
    }
    fs::write(roots.proc.join("swaps"), text).unwrap();
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

// dm-verity and dm-integrity sit in the device stack like dm-crypt and carry cryptsetup's
// "CRYPT-" uuid prefix (veritysetup, integritysetup), but neither hides any data.
#[test]
fn verity_and_integrity_devices_are_not_encryption() {
    for uuid in [
        "CRYPT-VERITY-5f6c0a44b2a94bd1a6f3b0c3f0e2d1a7-root",
        "CRYPT-INTEGRITY-data",
    ] {
        let f = fixture("25 1 253:0 / / ro - ext4 /dev/mapper/root ro\n");
        block(&f, "dm-0", "253:0", Some(uuid), &["sda2"]);
        block(&f, "sda2", "8:2", None, &[]);
        let outcome = check(&f.roots, &[Path::new("/")]);
        assert!(
            matches!(&outcome, Outcome::Fail(d) if d.contains("no dm-crypt")),
            "{uuid}: {outcome:?}"
        );
        assert_eq!(device_encryption(&f.roots, "253:0"), Some(false), "{uuid}");
    }
    // Verity over a LUKS device, and LUKS2 with integrity (its dm-integrity part is a
    // "CRYPT-SUBDEV" under the dm-crypt device): encrypted underneath, so encrypted.
    let f = fixture("25 1 253:2 / / ro - ext4 /dev/mapper/root ro\n");
    block(
        &f,
        "dm-2",
        "253:2",
        Some("CRYPT-VERITY-abc-root"),
        &["dm-1"],
    );
    block(&f, "dm-1", "253:1", Some("CRYPT-LUKS2-abc-data"), &["sda2"]);
    block(&f, "sda2", "8:2", None, &[]);
    assert!(matches!(
        check(&f.roots, &[Path::new("/")]),
        Outcome::Pass(_)
    ));
    let g = fixture("25 1 253:1 / / rw - ext4 /dev/mapper/root rw\n");
    block(&g, "dm-1", "253:1", Some("CRYPT-LUKS2-abc-root"), &["dm-0"]);
    block(
        &g,
        "dm-0",
        "253:0",
        Some("CRYPT-SUBDEV-abc-root_dif"),
        &["sda2"],
    );
    block(&g, "sda2", "8:2", None, &[]);
    assert!(matches!(
        check(&g.roots, &[Path::new("/")]),
        Outcome::Pass(_)
    ));
    // Other cryptsetup encryption types count.
    for uuid in [
        "CRYPT-LUKS1-abc-root",
        "CRYPT-PLAIN-root",
        "CRYPT-BITLK-abc-root",
    ] {
        let h = fixture("25 1 253:0 / / rw - ext4 /dev/mapper/root rw\n");
        block(&h, "dm-0", "253:0", Some(uuid), &["sda2"]);
        block(&h, "sda2", "8:2", None, &[]);
        assert!(
            matches!(check(&h.roots, &[Path::new("/")]), Outcome::Pass(_)),
            "{uuid}"
        );
    }
}

/// Root on LUKS, and a second disk with a plain ext4 on /data.
fn luks_root_and_plain_data() -> Fixture {
    let f = fixture(
        "25 1 253:0 / / rw - ext4 /dev/mapper/root rw\n40 25 8:17 / /data rw - ext4 /dev/sdb1 rw\n",
    );
    block(&f, "dm-0", "253:0", Some("CRYPT-LUKS2-abc-root"), &["sda2"]);
    block(&f, "sda2", "8:2", None, &[]);
    block(&f, "sdb1", "8:17", None, &[]);
    block(&f, "sda3", "8:3", None, &[]);
    f
}

#[test]
fn unencrypted_swap_fails_the_encryption_check() {
    let f = luks_root_and_plain_data();
    assert!(
        matches!(check(&f.roots, &[Path::new("/")]), Outcome::Pass(d) if d.contains("no swap"))
    );
    // A swap partition on the bare disk: memory pages, keys included, reach it in clear.
    swaps(&f.roots, &[("/dev/sda3", "partition")]);
    let outcome = check(&f.roots, &[Path::new("/")]);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.contains("swap /dev/sda3") && d.contains("no dm-crypt")),
        "{outcome:?}"
    );
    // A swap file on an unencrypted filesystem.
    swaps(&f.roots, &[("/data/swap\\040file", "file")]);
    let outcome = check(&f.roots, &[Path::new("/")]);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.contains("swap /data/swap file") && d.contains("/dev/sdb1")),
        "{outcome:?}"
    );
    // zram with a writeback device on the bare disk writes pages to it.
    block(&f, "zram0", "252:0", None, &[]);
    fs::write(
        f.roots.sys.join("class/block/zram0/backing_dev"),
        "/dev/sda3\n",
    )
    .unwrap();
    swaps(&f.roots, &[("/dev/zram0", "partition")]);
    let outcome = check(&f.roots, &[Path::new("/")]);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.contains("zram0") && d.contains("/dev/sda3")),
        "{outcome:?}"
    );
}

#[test]
fn encrypted_swap_or_swap_in_memory_passes() {
    let f = luks_root_and_plain_data();
    // cryptswap: a dm-crypt mapping, listed under its dm name or a /dev/mapper name.
    block(
        &f,
        "dm-3",
        "253:3",
        Some("CRYPT-PLAIN-cryptswap"),
        &["sda3"],
    );
    fs::write(f.roots.sys.join("class/block/dm-3/dm/name"), "cryptswap\n").unwrap();
    for name in ["/dev/dm-3", "/dev/mapper/cryptswap"] {
        swaps(&f.roots, &[(name, "partition")]);
        let outcome = check(&f.roots, &[Path::new("/")]);
        assert!(
            matches!(&outcome, Outcome::Pass(d) if d.contains("swap")),
            "{name}: {outcome:?}"
        );
    }
    // A swap file on the encrypted root.
    swaps(&f.roots, &[("/swapfile", "file")]);
    assert!(matches!(
        check(&f.roots, &[Path::new("/")]),
        Outcome::Pass(_)
    ));
    // zram without a writeback device never writes to disk.
    block(&f, "zram0", "252:0", None, &[]);
    fs::write(f.roots.sys.join("class/block/zram0/backing_dev"), "none\n").unwrap();
    swaps(
        &f.roots,
        &[("/dev/zram0", "partition"), ("/dev/dm-3", "partition")],
    );
    let outcome = check(&f.roots, &[Path::new("/")]);
    assert!(
        matches!(&outcome, Outcome::Pass(d) if d.contains("zram0")),
        "{outcome:?}"
    );
}

#[test]
fn unreadable_or_unknown_swap_is_unsupported_not_passed() {
    let f = luks_root_and_plain_data();
    fs::remove_file(f.roots.proc.join("swaps")).unwrap();
    let outcome = check(&f.roots, &[Path::new("/")]);
    assert!(
        matches!(&outcome, Outcome::Unsupported(d) if d.contains("swaps")),
        "{outcome:?}"
    );
    // A swap device sysfs does not know.
    swaps(&f.roots, &[("/dev/nvme9n1p9", "partition")]);
    let outcome = check(&f.roots, &[Path::new("/")]);
    assert!(
        matches!(&outcome, Outcome::Unsupported(d) if d.contains("nvme9n1p9")),
        "{outcome:?}"
    );
    // An unencrypted path still fails whatever the swap.
    let outcome = check(&f.roots, &[Path::new("/data/x")]);
    assert!(matches!(&outcome, Outcome::Fail(_)), "{outcome:?}");
}
