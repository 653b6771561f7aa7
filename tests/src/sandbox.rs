//! The agent's systemd unit, reproduced without systemd: the tests read the shipped unit file
//! (`deploy/systemd/ward-agent.service`) and start `ward-agent run` as root in a mount
//! namespace (`unshare -m`) with the unit's filesystem view and exactly its capability bounding
//! set (`setpriv`), so a test breaks when the unit drifts from what the agent needs.
//!
//! What is reproduced: `ExecStart` (the program swapped for the built binary, `--state-dir`
//! for the test's), `CapabilityBoundingSet`, `AmbientCapabilities`, `NoNewPrivileges`,
//! `ProtectSystem=strict` (everything read-only but the writable paths), `ProtectHome`,
//! `PrivateTmp`, `ReadWritePaths`, `StateDirectory` and `RuntimeDirectory` (with its mode, and
//! `RUNTIME_DIRECTORY` in the environment as systemd sets it). Not reproduced: the system-call
//! filter, device and address-family restrictions (they limit what the agent can reach, not
//! what the wipe or the local API need from the filesystem).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{Daemon, bin};

/// The shipped unit file.
pub fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/ward-agent.service")
}

/// `Key=value` lines of a unit's `[Service]` section, in order.
#[derive(Debug)]
pub struct Unit {
    directives: Vec<(String, String)>,
}

impl Unit {
    pub fn load(path: &Path) -> Self {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut section = String::new();
        let mut directives = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                section = line.to_owned();
                continue;
            }
            if section != "[Service]" {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                directives.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        Self { directives }
    }

    /// Every value given for `key` (a directive may be repeated).
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.directives
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The last value given for `key` (later lines override earlier ones).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.all(key).last().copied()
    }

    /// Space-separated list directives, all occurrences together; an empty assignment resets.
    pub fn list(&self, key: &str) -> Vec<String> {
        let mut items = Vec::new();
        for value in self.all(key) {
            if value.is_empty() {
                items.clear();
            }
            items.extend(value.split_whitespace().map(str::to_owned));
        }
        items
    }

    /// The capability bounding set, as `setpriv --bounding-set` takes it.
    pub fn bounding_set(&self) -> String {
        let caps = self.list("CapabilityBoundingSet");
        assert!(
            caps.iter().all(|c| !c.starts_with('~')),
            "the test reads only a positive CapabilityBoundingSet, not an inverted (~) one: {caps:?}"
        );
        let mut arg = String::from("-all");
        for cap in caps {
            let name = cap.to_ascii_lowercase();
            arg.push_str(",+");
            arg.push_str(name.trim_start_matches("cap_"));
        }
        arg
    }
}

/// Where the test's agent lives, standing in for `/var/lib/ward-agent` and `/run/ward-agent`.
#[derive(Debug)]
pub struct SandboxPaths {
    pub state_dir: PathBuf,
    pub runtime_dir: PathBuf,
    /// Paths the administrator adds to `ReadWritePaths` (the messaging directory), as
    /// deploy/OPERATIONS.md tells them to.
    pub extra_read_write: Vec<PathBuf>,
}

/// Starts `ward-agent` as the unit would, with `env` (the `EnvironmentFile`'s variables).
pub fn spawn_agent(
    unit: &Unit,
    paths: &SandboxPaths,
    extra_args: &[&str],
    env: &[(&str, &str)],
    log: PathBuf,
) -> Daemon {
    let exec = unit.get("ExecStart").expect("the unit has an ExecStart");
    let mut words = exec.split_whitespace();
    let program = words.next().expect("ExecStart names a program");
    assert_eq!(
        program, "/usr/local/bin/ward-agent",
        "ExecStart runs another program"
    );
    let mut args: Vec<String> = Vec::new();
    let mut words = words.peekable();
    while let Some(word) = words.next() {
        if word == "--state-dir" {
            words.next();
            args.push("--state-dir".into());
            args.push(paths.state_dir.display().to_string());
        } else {
            args.push(word.to_owned());
        }
    }
    args.extend(extra_args.iter().map(|s| (*s).to_owned()));

    // RuntimeDirectory=: created by systemd, root-owned, with RuntimeDirectoryMode (0755).
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    if unit.get("RuntimeDirectory").is_some_and(|v| !v.is_empty()) {
        let mode = unit
            .get("RuntimeDirectoryMode")
            .map_or(0o755, |m| u32::from_str_radix(m, 8).expect("octal mode"));
        std::fs::create_dir_all(&paths.runtime_dir).unwrap();
        std::fs::set_permissions(&paths.runtime_dir, std::fs::Permissions::from_mode(mode))
            .unwrap();
        env.push((
            "RUNTIME_DIRECTORY".into(),
            paths.runtime_dir.display().to_string(),
        ));
    }
    if let Some(mode) = unit.get("StateDirectoryMode") {
        let mode = u32::from_str_radix(mode, 8).expect("octal mode");
        std::fs::set_permissions(&paths.state_dir, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    let mut writable = vec![paths.state_dir.clone(), paths.runtime_dir.clone()];
    for p in unit.list("ReadWritePaths") {
        let (optional, p) = match p.strip_prefix('-') {
            Some(p) => (true, p),
            None => (false, p.as_str()),
        };
        let p = PathBuf::from(p);
        if p.exists() {
            writable.push(p);
        } else {
            assert!(optional, "ReadWritePaths={} does not exist", p.display());
        }
    }
    writable.extend(paths.extra_read_write.iter().cloned());

    let mut script = String::from("set -e\nmount --make-rprivate /\n");
    for p in &writable {
        if p.exists() {
            script.push_str(&format!("mount --bind {0} {0}\n", quote(p)));
        }
    }
    if unit.get("ProtectSystem") == Some("strict") {
        script.push_str("mount -o remount,bind,ro /\n");
    }
    match unit.get("ProtectHome") {
        Some("yes" | "tmpfs") => {
            for dir in ["/home", "/root", "/run/user"] {
                if Path::new(dir).is_dir() {
                    script.push_str(&format!("mount -t tmpfs -o mode=0755 tmpfs {dir}\n"));
                }
            }
        }
        Some("read-only") if unit.get("ProtectSystem") != Some("strict") => {
            script.push_str("mount -o remount,bind,ro /home\n");
        }
        _ => {}
    }
    if unit.get("PrivateTmp") == Some("yes") {
        script.push_str("mount -t tmpfs -o mode=1777 tmpfs /tmp\n");
        script.push_str("mount -t tmpfs -o mode=1777 tmpfs /var/tmp\n");
    }
    let mut setpriv = vec![
        "setpriv".to_owned(),
        format!("--bounding-set={}", unit.bounding_set()),
        "--inh-caps=-all".to_owned(),
    ];
    let ambient = unit.list("AmbientCapabilities");
    assert!(
        ambient.is_empty(),
        "the test expects no ambient capabilities, the unit grants {ambient:?}"
    );
    setpriv.push("--ambient-caps=-all".to_owned());
    if unit.get("NoNewPrivileges") == Some("yes") {
        setpriv.push("--no-new-privs".to_owned());
    }
    setpriv.push("--".to_owned());
    setpriv.push(bin("ward-agent").display().to_string());
    setpriv.extend(args);
    script.push_str("exec");
    for word in &setpriv {
        script.push(' ');
        script.push_str(&quote(Path::new(word)));
    }
    script.push('\n');

    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Daemon::spawn_program(
        "ward-agent",
        Path::new("unshare"),
        &["--mount", "--propagation", "private", "sh", "-c", &script],
        log,
        &env,
    )
}

/// The capabilities (`CapEff` of /proc/PID/status) a process started by `setpriv` with the
/// unit's bounding set has: what the agent must have, no more.
pub fn expected_effective_caps(unit: &Unit) -> String {
    let out = Command::new("setpriv")
        .arg(format!("--bounding-set={}", unit.bounding_set()))
        .args(["--inh-caps=-all", "--ambient-caps=-all", "--", "cat"])
        .arg("/proc/self/status")
        .output()
        .expect("run setpriv");
    assert!(out.status.success(), "setpriv failed");
    cap_line(&String::from_utf8_lossy(&out.stdout), "CapEff").expect("CapEff")
}

/// A `CapXxx:` line's value from a /proc status text.
pub fn cap_line(status: &str, name: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_owned())
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// A throw-away unprivileged user (`useradd`), removed with its home when dropped.
#[derive(Debug)]
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl TestUser {
    pub fn create(prefix: &str) -> Self {
        let name = format!("{prefix}{:08x}", rand::random::<u32>());
        let out = Command::new("useradd")
            .args([
                "--create-home",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(&name)
            .output()
            .expect("run useradd");
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").arg(flag).arg(&name).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        Self {
            uid: id("-u"),
            gid: id("-g"),
            home: PathBuf::from(format!("/home/{name}")),
            name,
        }
    }

    /// Runs `program ARGS` as this user (no supplementary groups but its own).
    pub fn run(&self, program: &Path, args: &[&str]) -> std::process::Output {
        Command::new("setpriv")
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .arg("--")
            .arg(program)
            .args(args)
            .output()
            .expect("run setpriv")
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // Processes of the user are the test's children and gone by now.
        let _ = Command::new("userdel")
            .args(["--remove", &self.name])
            .output();
    }
}
