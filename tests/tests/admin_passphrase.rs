//! Admin bundles with a passphrase (issue #8, a second factor for admins), with the real
//! `wardctl`: `admin issue` encrypts the key (encrypted PKCS#8, scrypt + AES-256-CBC), every
//! admin command decrypts it with the passphrase from WARD_ADMIN_PASSPHRASE_FILE or the
//! terminal, a wrong passphrase is refused with exit code 4 and changes nothing, and an
//! unencrypted key other than the controller host's own bundle earns a warning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ward_e2e::process::{ControllerProcess, bin, json, stderr};

const USAGE: i32 = 2;
const DENIED: i32 = 4;

const PASSPHRASE: &str = "staple horse battery correct";
const ENV: &str = "WARD_ADMIN_PASSPHRASE_FILE";

/// `wardctl ARGS` with only `env` set among Ward's variables; stdin is not a terminal.
fn ctl(args: &[&str], env: &[(&str, &Path)]) -> Output {
    Command::new(bin("wardctl"))
        .args(args)
        .env_remove("WARD_SERVER")
        .env_remove("WARD_ADMIN_CERT")
        .env_remove("WARD_DATA_DIR")
        .env_remove(ENV)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .stdin(Stdio::null())
        .output()
        .expect("run wardctl")
}

fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn admin_names(controller: &ControllerProcess) -> Vec<String> {
    json(&controller.ctl(&["admin", "list", "--output", "json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Nothing a command prints may hold the passphrase or a key.
fn assert_no_secrets(out: &Output) {
    for text in [
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    ] {
        assert!(!text.contains(PASSPHRASE), "the passphrase was printed");
        assert!(!text.contains("PRIVATE KEY"), "a key was printed");
    }
}

fn warnings(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn passphrase_protected_bundles_work_only_with_their_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("controller");
    let data_str = data.to_str().unwrap();
    let init = ctl(&["init", "--data-dir", data_str, "--output", "json"], &[]);
    assert!(init.status.success(), "{}", stderr(&init));
    let controller = ControllerProcess::start(&data);
    let url = controller.url.as_str();

    // init's own bundle through --data-dir: unencrypted, as `serve` may need it, and no warning.
    let own = controller.ctl(&["admin", "list", "--output", "json"]);
    assert!(own.status.success(), "{}", stderr(&own));
    assert_eq!(warnings(&own), Vec::<String>::new(), "{}", stderr(&own));
    let own_bundle = data.join("admin.pem");
    let own_text = std::fs::read_to_string(&own_bundle).unwrap();
    assert!(own_text.contains("-----BEGIN PRIVATE KEY-----"));
    // Named explicitly as well as through --data-dir: still the host's own bundle.
    let named = ctl(
        &[
            "admin",
            "list",
            "--data-dir",
            data_str,
            "--admin-cert",
            own_bundle.to_str().unwrap(),
        ],
        &[],
    );
    assert!(named.status.success(), "{}", stderr(&named));
    assert_eq!(warnings(&named), Vec::<String>::new());

    // Issue with --passphrase-file: the key is encrypted PKCS#8 in a 0600 bundle.
    let pw = secret_file(dir, "pw", &format!("{PASSPHRASE}\n"), 0o600);
    let alice = dir.join("alice.pem");
    let alice_str = alice.to_str().unwrap();
    let out = controller.ctl(&[
        "admin",
        "issue",
        "alice",
        "--role",
        "admin",
        "--out",
        alice_str,
        "--passphrase-file",
        pw.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_no_secrets(&out);
    let issued = json(&out);
    assert_eq!(issued["key_encrypted"], true);
    let text = std::fs::read_to_string(&alice).unwrap();
    assert!(text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    assert!(!text.contains("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(
        std::fs::metadata(&alice).unwrap().permissions().mode() & 0o777,
        0o600
    );
    openssl_decrypts(&alice, &pw);

    // Used from "another machine" with the passphrase from the environment: no warning.
    let remote = |env: &[(&str, &Path)], extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend(["--server", url, "--admin-cert", alice_str]);
        let out = ctl(&args, env);
        assert_no_secrets(&out);
        out
    };
    let out = remote(&[(ENV, &pw)], &["admin", "list", "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(warnings(&out), Vec::<String>::new(), "{}", stderr(&out));
    // init's admin and break-glass identity, and the one issued here.
    assert_eq!(json(&out).as_array().unwrap().len(), 3);

    // No passphrase source and no terminal: exit 2, naming the variable.
    let out = remote(&[], &["admin", "list"]);
    assert_eq!(out.status.code(), Some(USAGE), "{}", stderr(&out));
    assert!(stderr(&out).contains(ENV), "{}", stderr(&out));

    // A wrong passphrase: exit 4, a clear message, and nothing done with the credential.
    let wrong = secret_file(dir, "wrong", "horse staple battery correct\n", 0o600);
    let before = admin_names(&controller);
    let mallory = dir.join("mallory.pem");
    let out = remote(
        &[(ENV, &wrong)],
        &[
            "admin",
            "issue",
            "mallory",
            "--role",
            "admin",
            "--no-passphrase",
            "--out",
            mallory.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(DENIED), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("the passphrase does not decrypt {alice_str}")),
        "{}",
        stderr(&out)
    );
    assert!(!mallory.exists());
    assert_eq!(admin_names(&controller), before);
    assert_eq!(std::fs::read_to_string(&alice).unwrap(), text);
    // The passphrase file must be there and private.
    let out = remote(&[(ENV, &dir.join("absent"))], &["admin", "list"]);
    assert_eq!(out.status.code(), Some(USAGE), "{}", stderr(&out));
    let public = secret_file(dir, "public", &format!("{PASSPHRASE}\n"), 0o644);
    let out = remote(&[(ENV, &public)], &["admin", "list"]);
    assert_eq!(out.status.code(), Some(USAGE), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("readable by every user"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn issuing_without_a_passphrase_must_be_explicit_and_such_keys_warn() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let controller = ControllerProcess::start(&dir.join("controller"));
    let before = admin_names(&controller);
    let bob = dir.join("bob.pem");
    let issue = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "admin",
            "issue",
            "bob",
            "--role",
            "helpdesk",
            "--out",
            out.to_str().unwrap(),
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        let result = controller.ctl(&args);
        assert_no_secrets(&result);
        result
    };

    // Refused before anything happens: no terminal and no choice made.
    let out = issue(&bob, &[]);
    assert_eq!(out.status.code(), Some(USAGE), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--passphrase-file") && stderr(&out).contains("--no-passphrase"),
        "{}",
        stderr(&out)
    );
    // The two choices conflict.
    let pw = secret_file(dir, "pw", &format!("{PASSPHRASE}\n"), 0o600);
    let out = issue(
        &bob,
        &["--no-passphrase", "--passphrase-file", pw.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(USAGE), "{}", stderr(&out));
    // Passphrase files that are public, too short or empty.
    for (name, text, mode, says) in [
        (
            "public",
            format!("{PASSPHRASE}\n"),
            0o604,
            "readable by every user",
        ),
        (
            "short",
            "eleven char\n".to_owned(),
            0o600,
            "at least 12 characters",
        ),
        ("empty", "\n".to_owned(), 0o600, "is empty"),
    ] {
        let file = secret_file(dir, name, &text, mode);
        let out = issue(&bob, &["--passphrase-file", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(USAGE), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{name}: {}", stderr(&out));
    }
    assert!(!bob.exists());
    assert_eq!(admin_names(&controller), before);

    // --no-passphrase: written in the clear, on purpose.
    let issued = json(&issue(&bob, &["--no-passphrase"]));
    assert_eq!(issued["key_encrypted"], false);
    let text = std::fs::read_to_string(&bob).unwrap();
    assert!(text.contains("-----BEGIN PRIVATE KEY-----"));
    // An existing bundle is never overwritten.
    let again = controller.ctl(&[
        "admin",
        "issue",
        "bob2",
        "--role",
        "helpdesk",
        "--out",
        bob.to_str().unwrap(),
        "--passphrase-file",
        pw.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(USAGE), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read_to_string(&bob).unwrap(), text);
    // Every later use warns, once, on stderr, naming the file and the fix; JSON stays clean.
    let out = ctl(
        &[
            "admin",
            "list",
            "--server",
            &controller.url,
            "--admin-cert",
            bob.to_str().unwrap(),
            "--output",
            "json",
        ],
        &[(ENV, &pw)],
    );
    let listed = json(&out);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    let warned = warnings(&out);
    assert_eq!(warned.len(), 1, "{}", stderr(&out));
    assert!(
        warned[0].contains(bob.to_str().unwrap())
            && warned[0].contains("no passphrase")
            && warned[0].contains("wardctl admin renew"),
        "{}",
        warned[0]
    );
    // init's bundle copied off the host is no longer "the host's own": it warns too.
    let copy = dir.join("copied-admin.pem");
    std::fs::copy(controller.data_dir.join("admin.pem"), &copy).unwrap();
    let out = ctl(
        &[
            "admin",
            "list",
            "--server",
            &controller.url,
            "--admin-cert",
            copy.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(warnings(&out).len(), 1, "{}", stderr(&out));
    // Through --data-dir it does not.
    let out = controller.ctl(&["admin", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(warnings(&out), Vec::<String>::new());
}

/// The terminal path, through util-linux `script` (a pseudo-terminal for wardctl): issue asks
/// twice and insists on a match; loading asks again after a wrong passphrase. Skipped where
/// `script` is not installed.
#[test]
fn on_a_terminal_the_passphrase_is_asked_for() {
    let util_linux = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("util-linux"));
    if !util_linux {
        eprintln!("util-linux `script` is not installed; skipping the terminal test");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let controller = ControllerProcess::start(&dir.join("controller"));
    let carol = dir.join("carol.pem");
    let carol_str = carol.to_str().unwrap();
    let data = controller.data_dir.to_str().unwrap();

    let (code, shown) = on_a_terminal(
        &[
            "admin",
            "issue",
            "carol",
            "--role",
            "helpdesk",
            "--out",
            carol_str,
            "--data-dir",
            data,
        ],
        &[PASSPHRASE, "not the same at all", PASSPHRASE, PASSPHRASE],
    );
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("the two passphrases differ"), "{shown}");
    assert!(
        std::fs::read_to_string(&carol)
            .unwrap()
            .contains("ENCRYPTED PRIVATE KEY")
    );

    // An output file that exists is refused before anyone types a passphrase.
    let (code, shown) = on_a_terminal(
        &[
            "admin",
            "issue",
            "dan",
            "--role",
            "helpdesk",
            "--out",
            carol_str,
            "--data-dir",
            data,
        ],
        &[],
    );
    assert_eq!(code, USAGE, "{shown}");
    assert!(!shown.contains("New passphrase"), "{shown}");

    let (code, shown) = on_a_terminal(
        &[
            "admin",
            "list",
            "--server",
            &controller.url,
            "--admin-cert",
            carol_str,
        ],
        &["a wrong passphrase", PASSPHRASE],
    );
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("does not decrypt it; try again"), "{shown}");
    assert!(shown.contains("carol"), "{shown}");

    let (code, shown) = on_a_terminal(
        &[
            "admin",
            "list",
            "--server",
            &controller.url,
            "--admin-cert",
            carol_str,
        ],
        &["wrong one", "wrong two", "wrong three"],
    );
    assert_eq!(code, DENIED, "{shown}");
    assert!(
        shown.contains(&format!("the passphrase does not decrypt {carol_str}")),
        "{shown}"
    );
}

/// Runs `wardctl ARGS` on a pseudo-terminal, typing each answer once its prompt shows.
/// Returns the exit code and everything the terminal showed.
fn on_a_terminal(args: &[&str], answers: &[&str]) -> (i32, String) {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut command = quote(bin("wardctl").to_str().unwrap());
    for arg in args {
        command.push(' ');
        command.push_str(&quote(arg));
    }
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("WARD_SERVER")
        .env_remove("WARD_ADMIN_CERT")
        .env_remove("WARD_DATA_DIR")
        .env_remove(ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut shown = String::new();
    let mut answered = 0;
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(chunk) => shown.push_str(&String::from_utf8_lossy(&chunk)),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("wardctl on a terminal stalled; it showed:\n{shown}");
            }
        }
        let prompts = shown.matches("Passphrase for ").count()
            + shown.matches("New passphrase for ").count()
            + shown.matches("Repeat the passphrase: ").count();
        while answered < prompts && answered < answers.len() {
            stdin
                .write_all(format!("{}\n", answers[answered]).as_bytes())
                .unwrap();
            stdin.flush().unwrap();
            answered += 1;
        }
    }
    let status = child.wait().unwrap();
    drop(stdin);
    (status.code().unwrap_or(-1), shown)
}

/// `openssl pkcs8` reads the bundle's key with the same passphrase file (skipped without
/// openssl).
fn openssl_decrypts(bundle: &Path, pw: &Path) {
    let Ok(out) = Command::new("openssl")
        .args(["pkcs8", "-in"])
        .arg(bundle)
        .arg("-passin")
        .arg(format!("file:{}", pw.display()))
        .output()
    else {
        eprintln!("openssl is not installed; skipping the interoperability check");
        return;
    };
    assert!(
        out.status.success(),
        "openssl pkcs8: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("-----BEGIN PRIVATE KEY-----"));
}
