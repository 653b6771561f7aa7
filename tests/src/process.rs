//! Real `wardctl` and `ward-agent` processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::eventually_blocking;

/// The directory holding the workspace's binaries: `WARD_BIN_DIR`, or the target directory
/// this test executable was built into (`target/<profile>/deps/..`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WARD_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (which builds every binary) or `cargo build --bins` first",
        path.display()
    );
    path
}

/// Runs `wardctl ARGS` to completion.
pub fn wardctl(args: &[&str]) -> Output {
    Command::new(bin("wardctl"))
        .args(args)
        .env_remove("WARD_SERVER")
        .env_remove("WARD_ADMIN_CERT")
        .env_remove("WARD_DATA_DIR")
        .output()
        .expect("run wardctl")
}

/// Runs `ward-agent ARGS` to completion.
pub fn agent(args: &[&str]) -> Output {
    Command::new(bin("ward-agent"))
        .args(args)
        .env_remove("WARD_AGENT_STATE_DIR")
        .env_remove("WARD_ENROLL_TOKEN")
        .output()
        .expect("run ward-agent")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "command failed: {}",
        stderr(output)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A child process killed when dropped. Its stderr goes to a log file, printed if the test
/// that owns it fails.
pub struct Daemon {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Daemon {
    pub fn spawn(name: &'static str, args: &[&str], log: PathBuf) -> Self {
        let log_file = std::fs::File::create(&log).expect("create daemon log");
        let child = Command::new(bin(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Self { child, name, log }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!(
                "----- {} log ({}) -----\n{log}",
                self.name,
                self.log.display()
            );
        }
    }
}

/// A `wardctl serve` process on 127.0.0.1 with a fresh data directory.
pub struct ControllerProcess {
    pub data_dir: PathBuf,
    pub url: String,
    _daemon: Daemon,
}

impl ControllerProcess {
    /// Starts `wardctl serve` on an ephemeral port (agents check in every second) and waits
    /// until it has written its URL.
    pub fn start(data_dir: &Path) -> Self {
        Self::start_on(data_dir, "127.0.0.1:0")
    }

    /// Starts `wardctl serve` on `listen`, e.g. to bring a controller back on its old port.
    pub fn start_on(data_dir: &Path, listen: &str) -> Self {
        let dir = data_dir.to_str().unwrap();
        let url_file = data_dir.join("server-url");
        let _ = std::fs::remove_file(&url_file);
        let log = data_dir.with_extension("log");
        let mut daemon = Daemon::spawn(
            "wardctl",
            &[
                "serve",
                "--data-dir",
                dir,
                "--listen",
                listen,
                "--checkin-interval",
                "1s",
            ],
            log,
        );
        let url = eventually_blocking(
            "the controller to write server-url",
            Duration::from_secs(60),
            || {
                assert!(daemon.is_running(), "wardctl serve exited early");
                std::fs::read_to_string(&url_file)
                    .ok()
                    .filter(|s| !s.trim().is_empty())
            },
        );
        Self {
            data_dir: data_dir.to_path_buf(),
            url: url.trim().to_owned(),
            _daemon: daemon,
        }
    }

    /// Runs `wardctl ARGS --data-dir DIR` against this controller.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--data-dir", self.data_dir.to_str().unwrap()]);
        wardctl(&all)
    }

    /// Creates a token for `user` and returns `token create`'s JSON.
    pub fn token(&self, user: &str, ttl: &str) -> Value {
        json(&self.ctl(&[
            "token", "create", "--user", user, "--ttl", ttl, "--output", "json",
        ]))
    }

    pub fn devices(&self) -> Vec<Value> {
        json(&self.ctl(&["device", "list", "--output", "json"]))
            .as_array()
            .cloned()
            .expect("device list is an array")
    }
}
