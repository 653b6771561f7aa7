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
        // Never the machine's own TPM (parallel test agents would share its handles): a test
        // that wants one gives `--tpm TCTI`, which wins over this.
        .env("WARD_AGENT_TPM", "none")
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
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Daemon {
    pub fn spawn(name: &'static str, args: &[&str], log: PathBuf) -> Self {
        Self::spawn_with_env(name, args, log, &[])
    }

    pub fn spawn_with_env(
        name: &'static str,
        args: &[&str],
        log: PathBuf,
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn_program(name, &bin(name), args, log, env)
    }

    /// Runs `program ARGS` (e.g. a wrapper that sets up a sandbox and execs the binary
    /// `name`), logging to `log`.
    pub fn spawn_program(
        name: &'static str,
        program: &Path,
        args: &[&str],
        log: PathBuf,
        env: &[(&str, &str)],
    ) -> Self {
        let log_file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open daemon log");
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Self { child, name, log }
    }

    /// The process id (the program's: a wrapper that execs keeps it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the process as systemd does (SIGTERM) and waits until it has exited.
    pub fn stop(mut self) {
        self.terminate();
        eventually_blocking(
            &format!("{} to exit after SIGTERM", self.name),
            Duration::from_secs(30),
            || (!self.is_running()).then_some(()),
        );
    }

    /// Sends SIGTERM, as systemd does on stop.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
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
#[derive(Debug)]
pub struct ControllerProcess {
    pub data_dir: PathBuf,
    pub url: String,
    pub daemon: Daemon,
}

impl ControllerProcess {
    /// Starts `wardctl serve` on an ephemeral port (agents check in every second) and waits
    /// until it has written its URL.
    pub fn start(data_dir: &Path) -> Self {
        Self::start_on(data_dir, "127.0.0.1:0")
    }

    /// Starts `wardctl serve` on `listen`, e.g. to bring a controller back on its old port.
    pub fn start_on(data_dir: &Path, listen: &str) -> Self {
        Self::start_with(data_dir, listen, &[])
    }

    /// Starts `wardctl serve` on `listen` with extra flags.
    pub fn start_with(data_dir: &Path, listen: &str, extra: &[&str]) -> Self {
        Self::start_with_env(data_dir, listen, extra, &[])
    }

    /// The same with `env` (e.g. libfaketime's, to move its clock).
    pub fn start_with_env(
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let dir = data_dir.to_str().unwrap();
        let url_file = data_dir.join("server-url");
        let _ = std::fs::remove_file(&url_file);
        let log = data_dir.with_extension("log");
        let mut args = vec!["serve", "--data-dir", dir, "--listen", listen];
        if !extra.contains(&"--checkin-interval") {
            args.extend(["--checkin-interval", "1s"]);
        }
        args.extend(extra.iter().copied());
        let mut daemon = Daemon::spawn_with_env("wardctl", &args, log, env);
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
            daemon,
        }
    }

    /// Stops it as systemd does (SIGTERM) and waits until it has exited.
    pub fn stop(mut self) {
        self.daemon.terminate();
        eventually_blocking(
            "the controller to exit after SIGTERM",
            Duration::from_secs(60),
            || (!self.daemon.is_running()).then_some(()),
        );
    }

    /// The address of its `/metrics` listener (`--metrics-listen`).
    pub fn metrics_url(&self) -> String {
        eventually_blocking(
            "the controller to write metrics-url",
            Duration::from_secs(60),
            || {
                std::fs::read_to_string(self.data_dir.join("metrics-url"))
                    .ok()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
            },
        )
    }

    /// Runs `wardctl ARGS --data-dir DIR` against this controller.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--data-dir", self.data_dir.to_str().unwrap()]);
        wardctl(&all)
    }

    /// Runs `wardctl ARGS` against this controller with the admin bundle of another data
    /// directory (a replica's own directory holds no bundle).
    pub fn ctl_with_bundle(&self, bundle_dir: &Path, args: &[&str]) -> Output {
        let bundle = bundle_dir.join("admin.pem");
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--server",
            self.url.as_str(),
            "--admin-cert",
            bundle.to_str().unwrap(),
        ]);
        wardctl(&all)
    }

    /// Creates a token for `user` and returns `token create`'s JSON.
    pub fn token(&self, user: &str, ttl: &str) -> Value {
        json(&self.ctl(&[
            "token", "create", "--user", user, "--ttl", ttl, "--output", "json",
        ]))
    }

    /// The address it listens on, to bring a controller back on the same port.
    pub fn listen_addr(&self) -> String {
        self.url.trim_start_matches("https://").to_owned()
    }

    pub fn devices(&self) -> Vec<Value> {
        json(&self.ctl(&["device", "list", "--output", "json"]))
            .as_array()
            .cloned()
            .expect("device list is an array")
    }
}

/// An enrolled agent's state directory and messaging directory (seeded with canary files).
#[derive(Debug)]
pub struct AgentFixture {
    pub state_dir: PathBuf,
    pub messaging_dir: PathBuf,
    pub device_id: String,
    log: PathBuf,
}

/// Text planted in messaging files; after a wipe no file may contain it.
pub const CANARY: &str = "CANARY-PHI-3f9c: patient Jane Roe, MRN 000123, BP 120/80";

/// The files [`plant_canaries`] writes.
pub const CANARY_FILES: u64 = 2;

/// Writes messaging files holding [`CANARY`] into `messaging_dir` (created if missing).
pub fn plant_canaries(messaging_dir: &Path) {
    std::fs::create_dir_all(messaging_dir.join("attachments")).unwrap();
    std::fs::write(messaging_dir.join("messages.db"), CANARY.repeat(50)).unwrap();
    std::fs::write(messaging_dir.join("attachments/scan.txt"), CANARY).unwrap();
}

impl AgentFixture {
    /// A fixture for an agent enrolled some other way (e.g. in-process) under `root/name`.
    pub fn existing(root: &Path, name: &str, device_id: String) -> Self {
        Self {
            state_dir: root.join(format!("{name}-state")),
            messaging_dir: root.join(format!("{name}-messaging")),
            device_id,
            log: root.join(format!("{name}.log")),
        }
    }

    /// Enrolls a new agent for `user` under `root/name` and plants canary files.
    pub fn enroll(controller: &ControllerProcess, root: &Path, name: &str, user: &str) -> Self {
        let messaging_dir = root.join(format!("{name}-messaging"));
        plant_canaries(&messaging_dir);
        Self::enroll_at(
            controller,
            root.join(format!("{name}-state")),
            messaging_dir,
            root.join(format!("{name}.log")),
            user,
        )
    }

    /// Enrolls a new agent for `user` with its state in `state_dir`, for `messaging_dir` (left
    /// as it is), logging to `log`.
    pub fn enroll_at(
        controller: &ControllerProcess,
        state_dir: PathBuf,
        messaging_dir: PathBuf,
        log: PathBuf,
        user: &str,
    ) -> Self {
        Self::enroll_at_with(controller, state_dir, messaging_dir, log, user, &[])
    }

    /// [`AgentFixture::enroll_at`] with more `enroll` flags (e.g. `--tpm TCTI`).
    pub fn enroll_at_with(
        controller: &ControllerProcess,
        state_dir: PathBuf,
        messaging_dir: PathBuf,
        log: PathBuf,
        user: &str,
        extra: &[&str],
    ) -> Self {
        let token = controller.token(user, "15m");
        let mut args = vec![
            "enroll",
            "--server",
            token["server_url"].as_str().unwrap(),
            "--token",
            token["token"].as_str().unwrap(),
            "--ca-hash",
            token["ca_hash"].as_str().unwrap(),
            "--state-dir",
            state_dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = agent(&args);
        assert!(out.status.success(), "enroll: {}", stderr(&out));
        let status = json(&agent(&[
            "status",
            "--state-dir",
            state_dir.to_str().unwrap(),
            "--output",
            "json",
        ]));
        Self {
            device_id: status["device_id"].as_str().unwrap().to_owned(),
            log,
            state_dir,
            messaging_dir,
        }
    }

    /// What the agent processes of this fixture have logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `ward-agent status --output FORMAT` with `env` (e.g. the agent's clock).
    pub fn status_output(&self, format: &str, env: &[(&str, &str)]) -> Output {
        Command::new(bin("ward-agent"))
            .args(["status", "--state-dir", self.state_dir.to_str().unwrap()])
            .args(["--output", format])
            .env_remove("WARD_AGENT_STATE_DIR")
            .envs(env.iter().copied())
            .output()
            .expect("run ward-agent status")
    }

    /// `ward-agent status --output json` with `env`.
    pub fn status(&self, env: &[(&str, &str)]) -> Value {
        json(&self.status_output("json", env))
    }

    /// Starts `ward-agent run` for this fixture.
    pub fn run(&self, env: &[(&str, &str)]) -> Daemon {
        self.run_with(&[], env)
    }

    /// Starts `ward-agent run` with extra flags (e.g. `--server URL` in failover order).
    pub fn run_with(&self, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut args = vec![
            "run",
            "--state-dir",
            self.state_dir.to_str().unwrap(),
            "--messaging-dir",
            self.messaging_dir.to_str().unwrap(),
        ];
        // Never the machine's own TPM (parallel test agents would share one NV index): a test
        // that wants one gives `--tpm TCTI`.
        if !extra.contains(&"--tpm") {
            args.extend(["--tpm", "none"]);
        }
        // Where temporary directories live on their own filesystem (a tmpfs /tmp), the
        // messaging directory is on another filesystem than `/`, which the agent refuses
        // unless told.
        if !same_filesystem(&self.messaging_dir, Path::new("/")) {
            args.push("--allow-other-filesystem");
        }
        args.extend(extra.iter().copied());
        Daemon::spawn_with_env("ward-agent", &args, self.log.clone(), env)
    }

    /// Files under the messaging and state directories that still hold the canary.
    pub fn canary_files(&self) -> Vec<PathBuf> {
        files_containing(
            &[self.messaging_dir.clone(), self.state_dir.clone()],
            &[CANARY.as_bytes()],
        )
    }

    /// Commands this agent's ledger has recorded (one `<id>.json` each; temporary files of an
    /// update in progress are not entries).
    pub fn ledger_entries(&self) -> usize {
        std::fs::read_dir(self.state_dir.join("ledger")).map_or(0, |dir| {
            dir.flatten()
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    !name.starts_with('.') && name.ends_with(".json")
                })
                .count()
        })
    }
}

/// Every file under `roots` (links not followed) whose bytes contain one of `needles`.
pub fn files_containing(roots: &[PathBuf], needles: &[&[u8]]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = roots.to_vec();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file()
                && std::fs::read(&path).is_ok_and(|bytes| {
                    needles
                        .iter()
                        .any(|n| !n.is_empty() && bytes.windows(n.len()).any(|w| w == *n))
                })
            {
                found.push(path);
            }
        }
    }
    found
}

fn same_filesystem(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => true,
    }
}

/// Asks the agent's local API (`STATE/agent.sock`, as the messaging app does) one question:
/// one JSON line out, one JSON line back.
pub fn try_local_api(state_dir: &Path, request: &str) -> std::io::Result<Value> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(state_dir.join("agent.sock"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("{request}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

/// [`try_local_api`], waiting (with a deadline) for the agent to open its socket.
pub fn local_api(state_dir: &Path, request: &str) -> Value {
    eventually_blocking(
        "the agent's local API to answer",
        Duration::from_secs(60),
        || try_local_api(state_dir, request).ok(),
    )
}

/// A plain HTTP GET on loopback; returns (status line, body).
pub fn http_get(base: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}
