//! A software TPM 2.0 (`swtpm`) per test, on a Unix socket in the test's directory, and the
//! `tpm2-tools` programs pointed at it.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::eventually_blocking;
use crate::process::Daemon;

#[derive(Debug)]
pub struct Swtpm {
    /// The TCTI string for tpm2-tools and `ward-agent run --tpm`.
    pub tcti: String,
    _daemon: Daemon,
}

impl Swtpm {
    /// Starts a fresh TPM whose state lives in `dir` (created).
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("tpm.sock");
        let state = format!("dir={}", dir.display());
        let server = format!("type=unixio,path={}", socket.display());
        // The TCTI finds the control socket beside the data socket, at `PATH.ctrl`.
        let ctrl = format!("type=unixio,path={}.ctrl", socket.display());
        let daemon = Daemon::spawn_program(
            "swtpm",
            Path::new("swtpm"),
            &[
                "socket",
                "--tpm2",
                "--tpmstate",
                &state,
                "--server",
                &server,
                "--ctrl",
                &ctrl,
                "--flags",
                "not-need-init,startup-clear",
            ],
            dir.join("swtpm.log"),
            &[],
        );
        let tpm = Self {
            tcti: format!("swtpm:path={}", socket.display()),
            _daemon: daemon,
        };
        eventually_blocking("swtpm to answer", Duration::from_secs(30), || {
            tpm.tool("tpm2_getcap", &["properties-fixed"])
                .status
                .success()
                .then_some(())
        });
        tpm
    }

    /// Runs a tpm2-tools program against this TPM.
    pub fn tool(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .env("TPM2TOOLS_TCTI", &self.tcti)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"))
    }

    /// The NV indices defined in the TPM.
    pub fn nv_indices(&self) -> Vec<u32> {
        self.handles("handles-nv-index")
    }

    /// The persistent handles in use (keys made persistent with `tpm2_evictcontrol`).
    pub fn persistent_handles(&self) -> Vec<u32> {
        self.handles("handles-persistent")
    }

    /// The handles `tpm2_getcap CAPABILITY` lists.
    fn handles(&self, capability: &str) -> Vec<u32> {
        let out = self.tool("tpm2_getcap", &[capability]);
        assert!(out.status.success(), "tpm2_getcap {capability} failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let hex = l.trim().trim_start_matches('-').trim().strip_prefix("0x")?;
                u32::from_str_radix(hex, 16).ok()
            })
            .collect()
    }

    /// `tpm2_nvread` of `index` with the authorization value in `auth`: the bytes, if the TPM
    /// hands them out.
    pub fn nv_read(&self, index: u32, auth: &Path) -> Option<Vec<u8>> {
        let handle = format!("{index:#010x}");
        let auth = format!("file:{}", auth.display());
        let out = self.tool(
            "tpm2_nvread",
            &[&handle, "-C", &handle, "-P", &auth, "-s", "32"],
        );
        out.status.success().then_some(out.stdout)
    }
}

/// Copies the directory tree `from` to `to` (a disk image of the state directory, taken by a
/// thief before the wipe). The agent may be running: a file it replaces atomically (a temporary
/// file renamed over the old one) can vanish between `cp` listing it and copying it, so a copy
/// that lost a file that way is taken again, from scratch, a few times.
pub fn copy_tree(from: &Path, to: &Path) {
    const TRIES: usize = 5;
    for attempt in 1..=TRIES {
        let out = Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .output()
            .expect("run cp");
        if out.status.success() {
            return;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            attempt < TRIES && stderr.contains("No such file or directory"),
            "cp -a (attempt {attempt}): {stderr}"
        );
        if to.exists() {
            std::fs::remove_dir_all(to).expect("remove the partial copy");
        }
    }
}
