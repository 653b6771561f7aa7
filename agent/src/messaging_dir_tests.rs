use super::*;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
    reference: Reference,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let state = root.join("var/lib/ward-agent");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(root.join("home/alice/.local/share/messenger")).unwrap();
    std::fs::create_dir_all(root.join("srv/messenger")).unwrap();
    std::fs::write(
        root.join("passwd"),
        format!(
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::{}:/bin/sh\nmessenger:x:998:998::{}:/usr/sbin/nologin\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n",
            root.join("home/alice").display(),
            root.join("srv/messenger").display()
        ),
    )
    .unwrap();
    let reference = Reference {
        root: root.clone(),
        passwd: root.join("passwd"),
    };
    Fixture {
        _tmp: tmp,
        root,
        state,
        reference,
    }
}

fn check(f: &Fixture, dir: &Path) -> Result<PathBuf, MessagingDirError> {
    validate(dir, &f.state, false, &f.reference)
}

#[test]
fn the_app_data_directory_is_accepted_as_its_canonical_path() {
    let f = fixture();
    let dir = f.root.join("home/alice/.local/share/messenger");
    assert_eq!(check(&f, &dir), Ok(dir.clone()));
    let dotted = f.root.join("home/alice/.local/share/../share/messenger");
    assert_eq!(check(&f, &dotted), Ok(dir));
}

#[test]
fn root_and_system_directories_are_refused() {
    let f = fixture();
    assert!(matches!(
        check(&f, Path::new("/")),
        Err(MessagingDirError::Root(_))
    ));
    for dir in [
        "/etc",
        "/usr",
        "/var",
        "/var/lib",
        "/home",
        "/tmp",
        "/usr/share",
    ] {
        if Path::new(dir).is_dir() {
            let e = check(&f, Path::new(dir)).unwrap_err();
            assert!(matches!(e, MessagingDirError::System { .. }), "{dir}: {e}");
            assert!(e.to_string().contains("system directory"), "{e}");
        }
    }
}

#[test]
fn a_users_whole_home_directory_is_refused() {
    let f = fixture();
    let e = check(&f, &f.root.join("home/alice")).unwrap_err();
    assert!(
        matches!(&e, MessagingDirError::Home { user, .. } if user == "alice"),
        "{e}"
    );
    // A service account's home may be the app's data directory.
    let service = f.root.join("srv/messenger");
    assert_eq!(check(&f, &service), Ok(service));
}

#[test]
fn the_state_directory_and_its_ancestors_are_refused() {
    let f = fixture();
    assert!(matches!(
        check(&f, &f.state),
        Err(MessagingDirError::StateDir(_))
    ));
    for ancestor in [f.root.join("var/lib"), f.root.join("var"), f.root.clone()] {
        let e = check(&f, &ancestor).unwrap_err();
        assert!(
            matches!(e, MessagingDirError::ContainsStateDir { .. }),
            "{}: {e}",
            ancestor.display()
        );
    }
    // Through a symbolic link as well.
    let link = f.root.join("home/alice/link");
    std::os::unix::fs::symlink(f.root.join("var"), &link).unwrap();
    assert!(matches!(
        check(&f, &link),
        Err(MessagingDirError::ContainsStateDir { .. })
    ));
}

#[test]
fn another_filesystem_is_refused_unless_allowed() {
    let f = fixture();
    let dir = f.root.join("home/alice/.local/share/messenger");
    // /proc is never on the same filesystem as a directory of files.
    let elsewhere = Reference {
        root: PathBuf::from("/proc"),
        ..f.reference.clone()
    };
    let e = validate(&dir, &f.state, false, &elsewhere).unwrap_err();
    assert!(
        matches!(e, MessagingDirError::OtherFilesystem { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("--allow-other-filesystem"), "{e}");
    assert_eq!(validate(&dir, &f.state, true, &elsewhere), Ok(dir));
}

#[test]
fn a_file_or_a_missing_directory_is_named_for_what_it_is() {
    let f = fixture();
    let file = f.root.join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        check(&f, &file),
        Err(MessagingDirError::NotADirectory(_))
    ));
    assert!(matches!(
        check(&f, &f.root.join("typo")),
        Err(MessagingDirError::Missing(_))
    ));
}
