//! The messaging data key inside a TPM 2.0: one NV index holds it, so it never rests on disk,
//! and a wipe deletes the index inside the TPM (`tpm2_nvundefine`): a copy of the disk taken
//! before the wipe does not hold the key, and the TPM no longer does after it.
//!
//! The agent runs the `tpm2-tools` programs (Debian: `tpm2-tools`), so the default build links
//! no TPM library. The index is readable and writable only with its own authorization value, a
//! random 32-byte secret in the state directory (0600): without it, other programs that can
//! reach the TPM cannot read the key. Deleting the index needs the owner hierarchy, whose
//! authorization Linux systems leave empty; a TPM whose owner has a password refuses the
//! deletion, and the wipe then fails with that reason (after overwriting the index).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::vault::KEY_BYTES;

/// The NV index the agent defines for the messaging key, in the owner range (0x01000000 to
/// 0x013FFFFF) of the TCG handle registry.
pub const DEFAULT_NV_INDEX: u32 = 0x0130_0057;

/// The device node `--tpm auto` looks for (the kernel's resource manager).
pub const DEVICE: &str = "/dev/tpmrm0";

/// How long one tpm2-tools program may take before the agent gives up on it.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// `--tpm`: where to find the TPM. The library's default is `None` (tests and embedders opt
/// in); `ward-agent run`'s is `auto`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TpmChoice {
    /// Use /dev/tpmrm0 when it exists and tpm2-tools is installed (or `TPM2TOOLS_TCTI` when
    /// set); otherwise keep the key without a TPM.
    Auto,
    /// Never use a TPM.
    #[default]
    None,
    /// This TCTI, e.g. `device:/dev/tpmrm0` or `swtpm:path=/run/swtpm.sock`; a TPM that does
    /// not answer is an error.
    Tcti(String),
}

impl FromStr for TpmChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => return Ok(TpmChoice::Auto),
            "none" => return Ok(TpmChoice::None),
            _ => {}
        }
        let name = s.split(':').next().unwrap_or_default();
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "{s:?} is not a TPM choice: use auto, none, or a TCTI such as device:/dev/tpmrm0 or swtpm:path=/run/swtpm.sock"
            ));
        }
        Ok(TpmChoice::Tcti(s.to_owned()))
    }
}

impl std::fmt::Display for TpmChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TpmChoice::Auto => f.write_str("auto"),
            TpmChoice::None => f.write_str("none"),
            TpmChoice::Tcti(t) => f.write_str(t),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    #[error("cannot run {program}: {source} (install tpm2-tools, e.g. apt-get install tpm2-tools)")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {}s", TOOL_TIMEOUT.as_secs())]
    Timeout { program: &'static str },
    #[error("{program} failed ({status}): {detail}")]
    Failed {
        program: &'static str,
        status: String,
        detail: String,
    },
    #[error("{program} answered something unexpected: {detail}")]
    Unexpected {
        program: &'static str,
        detail: String,
    },
    #[error(
        "NV index {index:#010x} is already defined in the TPM by another program or an earlier enrollment, and this agent holds no authorization for it: free it (tpm2_nvundefine {index:#010x} -C o) if it is Ward's, or choose another index"
    )]
    IndexInUse { index: u32 },
    #[error(
        "every persistent handle Ward uses for device keys ({first:#010x} to {last:#010x}) is taken, by earlier enrollments on this device whose state directories were removed or by other programs: evict the stale ones (tpm2_getcap handles-persistent; tpm2_evictcontrol -C o -c HANDLE), or enroll with --secret-store file"
    )]
    HandlesFull { first: u32, last: u32 },
    #[error(
        "the key at persistent handle {handle:#010x} is not this agent's ({why}): it is left in place"
    )]
    NotOurs { handle: u32, why: String },
    #[error("the TPM authorization file {path}: {source}")]
    Auth {
        path: String,
        source: std::io::Error,
    },
}

/// What the NV index holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvState {
    Absent,
    /// Defined, never written (provisioning was interrupted).
    Unwritten,
    Written,
}

/// A TPM reached through one TCTI, and the NV index for the key.
#[derive(Clone, Debug)]
pub struct Tpm {
    tcti: String,
    index: u32,
}

impl TpmChoice {
    /// The TPM to use, `None` for none. `Auto` finds none where the device or the tools are
    /// missing (and says so in the log when only the tools are).
    pub fn resolve(&self) -> Option<Tpm> {
        match self {
            TpmChoice::None => None,
            TpmChoice::Tcti(tcti) => Some(Tpm::new(tcti.clone(), DEFAULT_NV_INDEX)),
            TpmChoice::Auto => {
                let tools = on_path("tpm2_nvdefine");
                let env = std::env::var("TPM2TOOLS_TCTI")
                    .ok()
                    .filter(|t| !t.is_empty());
                let device = Path::new(DEVICE).exists();
                match (env, device, tools) {
                    (Some(tcti), _, true) => Some(Tpm::new(tcti, DEFAULT_NV_INDEX)),
                    (None, true, true) => {
                        Some(Tpm::new(format!("device:{DEVICE}"), DEFAULT_NV_INDEX))
                    }
                    (_, true, false) => {
                        tracing::warn!(
                            "this device has a TPM ({DEVICE}) but tpm2-tools is not installed: a new messaging key, and the device key of an enrollment now, are kept without it (receipts and status say so); install tpm2-tools to keep them in the TPM"
                        );
                        None
                    }
                    _ => None,
                }
            }
        }
    }
}

impl Tpm {
    pub fn new(tcti: String, index: u32) -> Self {
        Self { tcti, index }
    }

    /// The same TPM, another index (the one recorded when the key was made).
    pub fn with_index(&self, index: u32) -> Self {
        Self {
            tcti: self.tcti.clone(),
            index,
        }
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    fn handle(&self) -> String {
        format!("{:#010x}", self.index)
    }

    /// Runs one tpm2-tools program; `input` goes to its stdin; its stdout is returned in a
    /// buffer that is zeroized when dropped (it may be the key).
    pub(crate) async fn run(
        &self,
        program: &'static str,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env("TPM2TOOLS_TCTI", &self.tcti)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| TpmError::Spawn { program, source })?;
        let work = async {
            if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
                stdin.write_all(bytes).await?;
                stdin.shutdown().await?;
            }
            // Room for more than the key, so reading never reallocates (and leaves a copy).
            let mut out = Zeroizing::new(Vec::with_capacity(4 * 1024));
            let mut err = Vec::new();
            let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
            let read_out = async {
                match stdout.as_mut() {
                    Some(s) => s.read_to_end(&mut out).await.map(|_| ()),
                    None => Ok(()),
                }
            };
            let read_err = async {
                match stderr.as_mut() {
                    Some(s) => s.take(16 * 1024).read_to_end(&mut err).await.map(|_| ()),
                    None => Ok(()),
                }
            };
            let (a, b) = tokio::join!(read_out, read_err);
            a?;
            b?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, out, err))
        };
        let (status, out, err) = tokio::time::timeout(TOOL_TIMEOUT, work)
            .await
            .map_err(|_| TpmError::Timeout { program })?
            .map_err(|source| TpmError::Spawn { program, source })?;
        if !status.success() {
            return Err(TpmError::Failed {
                program,
                status: status.to_string(),
                detail: last_error_line(&err),
            });
        }
        Ok(out)
    }

    /// [`Tpm::run`] for a caller that cannot await (rustls asks for the TLS handshake's
    /// signature synchronously): the same program, input and time limit, on this thread. For
    /// programs with small outputs (a signature): their pipes are read once they have ended.
    pub(crate) fn run_sync(
        &self,
        program: &'static str,
        args: &[&str],
        input: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        use std::io::{Read, Write};
        let spawn_error = |source| TpmError::Spawn { program, source };
        let mut child = std::process::Command::new(program)
            .args(args)
            .env("TPM2TOOLS_TCTI", &self.tcti)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input).map_err(spawn_error)?;
        }
        let deadline = std::time::Instant::now() + TOOL_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(spawn_error)? {
                break status;
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(TpmError::Timeout { program });
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        if let Some(mut stdout) = child.stdout.take() {
            stdout.read_to_end(&mut out).map_err(spawn_error)?;
        }
        if let Some(stderr) = child.stderr.take() {
            stderr
                .take(16 * 1024)
                .read_to_end(&mut err)
                .map_err(spawn_error)?;
        }
        if !status.success() {
            return Err(TpmError::Failed {
                program,
                status: status.to_string(),
                detail: last_error_line(&err),
            });
        }
        Ok(out)
    }

    /// The TPM answers (a capability query).
    pub async fn probe(&self) -> Result<(), TpmError> {
        self.run("tpm2_getcap", &["properties-fixed"], None)
            .await
            .map(|_| ())
    }

    /// Whether the index is defined, and written.
    pub async fn state(&self) -> Result<NvState, TpmError> {
        let listed = self.run("tpm2_getcap", &["handles-nv-index"], None).await?;
        let text = String::from_utf8_lossy(&listed);
        let defined = handles_listed(&text).contains(&self.index);
        if !defined {
            return Ok(NvState::Absent);
        }
        let public = self
            .run("tpm2_nvreadpublic", &[&self.handle()], None)
            .await?;
        let text = String::from_utf8_lossy(&public);
        // attributes:
        //   friendly: authwrite|authread|no_da|written
        let attributes = text
            .lines()
            .skip_while(|l| l.trim() != "attributes:")
            .find(|l| l.trim_start().starts_with("friendly:"))
            .ok_or_else(|| TpmError::Unexpected {
                program: "tpm2_nvreadpublic",
                detail: "no attributes line".into(),
            })?;
        Ok(if attributes.split(['|', ' ']).any(|a| a == "written") {
            NvState::Written
        } else {
            NvState::Unwritten
        })
    }

    /// Defines the index (32 bytes, readable and writable only with the authorization value
    /// in `auth`, no dictionary-attack lockout: the value is random, not a password).
    pub async fn define(&self, auth: &Path) -> Result<(), TpmError> {
        let size = KEY_BYTES.to_string();
        self.run(
            "tpm2_nvdefine",
            &[
                &self.handle(),
                "-C",
                "o",
                "-s",
                &size,
                "-a",
                "authread|authwrite|no_da",
                "-p",
                &auth_arg(auth),
            ],
            None,
        )
        .await
        .map(|_| ())
    }

    pub async fn write(&self, auth: &Path, data: &[u8]) -> Result<(), TpmError> {
        self.run(
            "tpm2_nvwrite",
            &[
                &self.handle(),
                "-C",
                &self.handle(),
                "-P",
                &auth_arg(auth),
                "-i",
                "-",
            ],
            Some(data),
        )
        .await
        .map(|_| ())
    }

    pub async fn read(&self, auth: &Path) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        let size = KEY_BYTES.to_string();
        let bytes = self
            .run(
                "tpm2_nvread",
                &[
                    &self.handle(),
                    "-C",
                    &self.handle(),
                    "-P",
                    &auth_arg(auth),
                    "-s",
                    &size,
                ],
                None,
            )
            .await?;
        if bytes.len() != KEY_BYTES {
            return Err(TpmError::Unexpected {
                program: "tpm2_nvread",
                detail: format!("{} bytes instead of {KEY_BYTES}", bytes.len()),
            });
        }
        Ok(bytes)
    }

    /// Deletes the index inside the TPM (owner authorization).
    pub async fn undefine(&self) -> Result<(), TpmError> {
        self.run("tpm2_nvundefine", &[&self.handle(), "-C", "o"], None)
            .await
            .map(|_| ())
    }
}

/// The handles a `tpm2_getcap handles-…` listing names (lines such as `- 0x81005741`).
pub(crate) fn handles_listed(listing: &str) -> Vec<u32> {
    listing
        .lines()
        .filter_map(|line| {
            let hex = line
                .trim()
                .trim_start_matches('-')
                .trim()
                .strip_prefix("0x")?;
            u32::from_str_radix(hex, 16).ok()
        })
        .collect()
}

/// Whether `program` is an executable file in a `PATH` directory (where `Command` finds it).
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The authorization argument: the file's bytes are the value (never on the command line,
/// where any user could read it).
fn auth_arg(auth: &Path) -> String {
    format!("file:{}", auth.display())
}

/// The most telling line of a tpm2-tools error output (they end with "Unable to run …").
fn last_error_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("WARNING"))
        .collect();
    let best = lines
        .iter()
        .find(|l| l.contains("tpm:") || l.contains("ErrorCode"))
        .or(lines.first())
        .copied()
        .unwrap_or("no error output");
    ward_vocab::text::clean(best, 300)
}

/// The authorization file for the key's index in `state_dir`.
pub fn auth_file(state_dir: &Path) -> PathBuf {
    state_dir.join("messaging-key.tpm-auth")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tpm_choices_parse_and_bad_ones_say_what_is_accepted() {
        assert_eq!("auto".parse::<TpmChoice>(), Ok(TpmChoice::Auto));
        assert_eq!("none".parse::<TpmChoice>(), Ok(TpmChoice::None));
        assert_eq!(
            "swtpm:path=/run/swtpm.sock".parse::<TpmChoice>(),
            Ok(TpmChoice::Tcti("swtpm:path=/run/swtpm.sock".into()))
        );
        assert_eq!(
            "device:/dev/tpmrm0".parse::<TpmChoice>(),
            Ok(TpmChoice::Tcti("device:/dev/tpmrm0".into()))
        );
        for bad in ["", ":x", "device:/dev/tpm 0", "dev\nice", "a;b:c"] {
            let err = bad.parse::<TpmChoice>().unwrap_err();
            assert!(err.contains("auto, none, or a TCTI"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_missing_program_is_a_clear_error() {
        let tpm = Tpm::new("swtpm:path=/nonexistent".into(), DEFAULT_NV_INDEX);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(tpm.run("ward-no-such-tpm2-tool", &[], None))
            .unwrap_err();
        assert!(err.to_string().contains("install tpm2-tools"), "{err}");
    }

    #[test]
    fn the_last_error_line_is_the_tpm_reason() {
        let stderr = b"WARNING:esys:foo Received TPM Error\nERROR: Esys_NV_Read(0x149) - tpm:error(2.0): NV access authorization fails\nERROR: Unable to run tpm2_nvread\n";
        assert!(last_error_line(stderr).contains("authorization fails"));
        assert_eq!(last_error_line(b""), "no error output");
    }
}
