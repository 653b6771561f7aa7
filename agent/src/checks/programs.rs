//! Running the package managers and firewall tools some checks ask: found only in the
//! fixture's `bin` directory when one is set, in the C locale, killed at a deadline, with
//! bounded output.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Roots;

impl Roots {
    /// The executable `name`: only in `bin_dir` when that is set, else on `PATH`.
    pub fn program(&self, name: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let executable = |p: &Path| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        if let Some(dir) = &self.bin_dir {
            return Some(dir.join(name)).filter(|p| executable(p));
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
            .map(|dir| dir.join(name))
            .find(|p| executable(p))
    }

    /// Runs the program `name` (see [`Roots::program`]) with `args` in the C locale, killing
    /// it after `timeout`; keeps at most `limit` bytes of its output.
    pub(crate) fn run(
        &self,
        name: &str,
        args: &[&str],
        timeout: Duration,
        limit: usize,
    ) -> Result<Ran, RunError> {
        let Some(path) = self.program(name) else {
            return Err(RunError::Missing(match &self.bin_dir {
                Some(dir) => format!("{name} is not in {}", dir.display()),
                None => format!("{name} is not installed"),
            }));
        };
        let mut tries = 0;
        let mut child = loop {
            let spawned = Command::new(&path)
                .args(args)
                .env("LC_ALL", "C")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            match spawned {
                // ETXTBSY: a script just written is still open in a process forking
                // concurrently; it goes away within milliseconds.
                Err(e) if e.raw_os_error() == Some(26) && tries < 20 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    return Err(RunError::Failed(format!(
                        "cannot run {}: {e}",
                        path.display()
                    )));
                }
                Ok(child) => break child,
            }
        };
        let stdout = drain(child.stdout.take(), limit);
        let stderr = drain(child.stderr.take(), 64 * 1024);
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                outcome => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(RunError::Failed(match outcome {
                        Err(e) => format!("waiting for {name} failed: {e}"),
                        _ => format!("{name} did not finish within {timeout:?}"),
                    }));
                }
            }
        };
        // A grandchild may hold the pipes open: do not wait for it.
        let collect = |rx: mpsc::Receiver<(Vec<u8>, bool)>| {
            rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default()
        };
        let (stdout, truncated) = collect(stdout);
        let (stderr, _) = collect(stderr);
        Ok(Ran {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
            truncated,
        })
    }
}

/// What a program run by [`Roots::run`] printed.
#[derive(Debug)]
pub(crate) struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    /// Trimmed.
    pub stderr: String,
    /// The output went past the limit and was cut.
    pub truncated: bool,
}

impl Ran {
    /// The first line of stderr, or the exit status: why the program failed.
    pub(crate) fn failure(&self) -> String {
        match self.stderr.lines().next().filter(|l| !l.trim().is_empty()) {
            Some(line) => format!("{} ({})", line.trim(), self.status),
            None => self.status.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunError {
    /// The program is not installed.
    Missing(String),
    /// It could not be started, or did not finish in time.
    Failed(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Missing(m) | RunError::Failed(m) => f.write_str(m),
        }
    }
}

/// Reads a pipe on a thread: its first `limit` bytes, and whether there was more (read and
/// dropped, so the program never blocks on a full pipe).
fn drain(
    pipe: Option<impl Read + Send + 'static>,
    limit: usize,
) -> mpsc::Receiver<(Vec<u8>, bool)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut more = false;
        if let Some(mut pipe) = pipe {
            let _ = (&mut pipe).take(limit as u64).read_to_end(&mut kept);
            more = std::io::copy(&mut pipe, &mut std::io::sink()).is_ok_and(|n| n > 0);
        }
        let _ = tx.send((kept, more));
    });
    rx
}
