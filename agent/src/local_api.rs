//! The local API the messaging app uses: a Unix socket, by default in the runtime directory
//! systemd makes for the agent (`RuntimeDirectory=ward-agent`: `/run/ward-agent/agent.sock`,
//! the directory 0755 so the app's user can reach it), else in the state directory. The socket
//! is 0666: anyone may connect, and the kernel's peer credentials decide who gets an answer:
//! only the owner of the messaging directory (the app's user) and root.
//!
//! One JSON request per line, one JSON answer per line:
//!
//! ```text
//! {"op":"status"}  →  {"state":"ok"|"locked"|"disabled"|"wiped"|"withheld","reason":…}
//! {"op":"key"}     →  {"key":"<base64>"}  or  {"error":"…","state":…}
//! ```
//! The data key is withheld while the device is wiped, disabled or locked by an admin, or
//! fails a required check whose policy action is block (or wipe); from the moment the device
//! has been offline longer than its policy allows (the offline timer's deadline, whether or not
//! the timer's wipe could run yet); while the offline timer cannot write its count down
//! (`offline.rs`: the key is handed out only in time the timer has written down); and while
//! the key is out of reach (a TPM that does not answer yet). An answer carrying the key is
//! looked at again after the key is read, right before it is sent: a request under way when
//! the deadline passes (or a wipe starts) gets no key.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, warn};
use zeroize::Zeroizing;

use crate::offline::{OfflineTimer, Withhold};
use crate::vault::WipeStep;
use crate::vault_slot::VaultSlot;

/// The largest request line accepted.
const MAX_LINE: usize = 1024;

/// At most this many connections are served at once; more wait in the kernel's queue until one
/// closes. Any local user may connect (the peer check comes after the accept), so without a cap
/// one could use up the agent's file descriptors, which the wipe and the offline timer need.
pub const MAX_CONNECTIONS: usize = 16;

/// A connection that sends no request for this long is closed (the app connects again).
pub const IDLE: std::time::Duration = std::time::Duration::from_secs(120);

/// A connection is closed after this long whatever it sends (the app asks one question per
/// connection): a process of the app's user sending a line just inside [`IDLE`] on every place
/// could otherwise keep the app from its key for good.
pub const LIFETIME: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    op: String,
}

#[derive(Debug, Serialize)]
pub struct Answer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The data key in base64, as an answer carries it: a secret like the key itself, zeroized
/// when dropped and never shown by `Debug`.
pub struct KeyText(Zeroizing<String>);

impl KeyText {
    fn encode(key: &[u8]) -> Self {
        // Sized up front: growing the string would leave copies of the key behind.
        let mut text = Zeroizing::new(String::with_capacity(key.len().div_ceil(3) * 4));
        STANDARD.encode_string(key, &mut text);
        Self(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for KeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyText(<redacted>)")
    }
}

impl Serialize for KeyText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One answer as the line sent to the app, in a buffer zeroized when dropped (it may carry
/// the key).
fn answer_line(answer: &Answer) -> Zeroizing<Vec<u8>> {
    let mut line = Zeroizing::new(Vec::with_capacity(4 * 1024));
    if serde_json::to_writer(&mut *line, answer).is_err() {
        line.clear();
        line.extend_from_slice(br#"{"error":"internal error"}"#);
    }
    line.push(b'\n');
    line
}

/// What decides whether the key may be handed out: the vault, the lock marker the executor
/// keeps, and the compliance verdict the check-in loop keeps.
#[derive(Debug)]
pub struct Gate {
    pub vault: Arc<VaultSlot>,
    pub timer: Arc<OfflineTimer>,
    pub state_dir: PathBuf,
}

/// The file the check-in loop writes: empty when compliant, else the reasons.
pub fn noncompliance_file(state_dir: &Path) -> PathBuf {
    state_dir.join("noncompliant")
}

/// The marker the executor keeps while an admin has disabled the device; it holds the reason.
pub fn disabled_file(state_dir: &Path) -> PathBuf {
    state_dir.join("disabled")
}

/// The marker the executor keeps while a lock command is in force.
pub fn lock_file(state_dir: &Path) -> PathBuf {
    state_dir.join("locked")
}

impl Gate {
    /// The device state the app should act on, and why.
    pub async fn state(&self) -> (&'static str, Option<String>) {
        let vault = match self.vault.get().await {
            Ok(Some(vault)) => vault,
            Ok(None) => {
                return (
                    "withheld",
                    Some("no messaging directory is managed on this device".into()),
                );
            }
            Err(e) => {
                return (
                    "withheld",
                    Some(format!("the data key is out of reach: {e}")),
                );
            }
        };
        match vault.journal() {
            Ok(Some(j)) if j.step == WipeStep::Done => {
                return ("wiped", Some(format!("wiped ({})", j.cause)));
            }
            Ok(Some(j)) => {
                return (
                    "wiped",
                    Some(format!("a wipe ({}) is in progress", j.cause)),
                );
            }
            Ok(None) => {}
            Err(e) => {
                return (
                    "withheld",
                    Some(format!("cannot read the wipe journal: {e}")),
                );
            }
        }
        match self.timer.withhold() {
            Some(why @ Withhold::Overdue { .. }) => return ("wiped", Some(why.to_string())),
            Some(why @ Withhold::Unsaved { .. }) => return ("withheld", Some(why.to_string())),
            None => {}
        }
        match std::fs::read_to_string(disabled_file(&self.state_dir)) {
            Ok(reason) => {
                return (
                    "disabled",
                    Some(format!(
                        "an administrator disabled this device: {}",
                        reason.trim()
                    )),
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return (
                    "withheld",
                    Some(format!("cannot read the disable marker: {e}")),
                );
            }
        }
        if lock_file(&self.state_dir).exists() {
            return ("locked", Some("an administrator locked this device".into()));
        }
        match std::fs::read_to_string(noncompliance_file(&self.state_dir)) {
            Ok(reasons) if !reasons.trim().is_empty() => (
                "withheld",
                Some(format!("not compliant: {}", reasons.trim())),
            ),
            _ => ("ok", None),
        }
    }

    async fn key(&self) -> Result<Option<Zeroizing<Vec<u8>>>, crate::vault::VaultError> {
        let key = match self.vault.get().await? {
            Some(vault) => vault.key().await,
            None => Ok(None),
        };
        fail::fail_point!("local-api-key-read");
        key
    }

    /// The answer as it may be sent now (nothing is awaited between this and the write to the
    /// socket): one carrying the key is looked at again, since the
    /// state may have changed while the key was read (a TPM read takes a while, the
    /// offline deadline may pass meanwhile, a wipe may start): it is sent only if the state
    /// is still `ok`, else it becomes the refusal the state calls for.
    async fn confirm(&self, answer: Answer) -> Answer {
        if answer.key.is_none() {
            return answer;
        }
        match self.state().await {
            ("ok", _) => answer,
            (state, reason) => Answer {
                state: Some(state),
                reason: None,
                key: None,
                error: Some(format!(
                    "the key is withheld: {}",
                    reason.unwrap_or_default()
                )),
            },
        }
    }

    pub async fn answer(&self, line: &str) -> Answer {
        let none = Answer {
            state: None,
            reason: None,
            key: None,
            error: None,
        };
        let request: Request = match serde_json::from_str(line) {
            Ok(r) => r,
            Err(e) => {
                return Answer {
                    error: Some(format!(
                        "bad request: {e}; send {{\"op\":\"status\"}} or {{\"op\":\"key\"}}"
                    )),
                    ..none
                };
            }
        };
        let (state, reason) = self.state().await;
        match request.op.as_str() {
            "status" => Answer {
                state: Some(state),
                reason,
                ..none
            },
            "key" if state != "ok" => Answer {
                state: Some(state),
                error: Some(format!(
                    "the key is withheld: {}",
                    reason.unwrap_or_default()
                )),
                ..none
            },
            "key" => match self.key().await {
                Ok(Some(key)) => {
                    self.confirm(Answer {
                        state: Some(state),
                        key: Some(KeyText::encode(key.as_slice())),
                        ..none
                    })
                    .await
                }
                Ok(None) => Answer {
                    state: Some("wiped"),
                    error: Some("there is no data key".into()),
                    ..none
                },
                Err(e) => Answer {
                    state: Some(state),
                    error: Some(format!("cannot read the data key: {e}")),
                    ..none
                },
            },
            other => Answer {
                error: Some(format!("unknown op {other:?}: use status or key")),
                ..none
            },
        }
    }
}

/// Serves the socket at `path` until the task is dropped. Only `allowed_uid` and root may use it.
pub async fn serve(path: PathBuf, gate: Arc<Gate>, allowed_uid: u32) -> std::io::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    // Reachable by anyone who can reach the state directory; the peer check below decides.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    let places = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut failing = false;
    loop {
        // A place first, then the accept: past the cap, connections wait in the kernel.
        let place = places
            .clone()
            .acquire_owned()
            .await
            .map_err(std::io::Error::other)?;
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, or a connection aborted before it was taken: the
                // API must outlive it (before, one error ended it until the agent restarted).
                if !failing {
                    warn!(error = %e, "local API: cannot accept a connection; trying again");
                    failing = true;
                }
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        if std::mem::take(&mut failing) {
            warn!("local API: accepting connections again");
        }
        let gate = gate.clone();
        tokio::spawn(async move {
            let _place = place;
            match tokio::time::timeout(LIFETIME, handle(stream, &gate, allowed_uid)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(error = %e, "local API connection ended"),
                Err(_) => debug!("local API connection closed: open too long"),
            }
        });
    }
}

/// How long to wait after a failed accept before the next.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

async fn handle(stream: UnixStream, gate: &Gate, allowed_uid: u32) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    if !permitted(uid, allowed_uid) {
        warn!(uid, "local API: refused a process of another user");
        let refusal = Answer {
            state: None,
            reason: None,
            key: None,
            error: Some(format!("uid {uid} may not use this socket")),
        };
        write.write_all(&answer_line(&refusal)).await?;
        return Ok(());
    }
    let mut lines = BufReader::new(read.take(64 * 1024)).lines();
    while let Ok(next) = tokio::time::timeout(IDLE, lines.next_line()).await {
        let Some(line) = next? else {
            break;
        };
        let answer = if line.len() > MAX_LINE {
            Answer {
                state: None,
                reason: None,
                key: None,
                error: Some("request too long".into()),
            }
        } else {
            gate.answer(&line).await
        };
        write.write_all(&answer_line(&answer)).await?;
    }
    Ok(())
}

/// The messaging app's user, and root (the administrator), may use the socket.
pub fn permitted(peer_uid: u32, app_uid: u32) -> bool {
    peer_uid == app_uid || peer_uid == 0
}

/// The uid and gid that own `dir`: the messaging app's user.
pub fn owner_of(dir: &Path) -> std::io::Result<(u32, u32)> {
    let meta = std::fs::metadata(dir)?;
    Ok((meta.uid(), meta.gid()))
}

/// Where the socket goes: `explicit` (`--local-socket`), else the runtime directory systemd
/// made (`$RUNTIME_DIRECTORY`, its first entry), else the state directory.
pub fn socket_path(explicit: Option<&Path>, state_dir: &Path) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    let runtime = std::env::var_os("RUNTIME_DIRECTORY")
        .and_then(|dirs| std::env::split_paths(&dirs).next())
        .filter(|dir| !dir.as_os_str().is_empty());
    runtime
        .unwrap_or_else(|| state_dir.to_path_buf())
        .join("agent.sock")
}

/// Why the user `uid` (primary group `gid`) cannot reach `socket`, if a directory on the way
/// does not let it through (supplementary groups are not considered).
pub fn unreachable_for(socket: &Path, uid: u32, gid: u32) -> Option<String> {
    if uid == 0 {
        return None;
    }
    let absolute = std::path::absolute(socket).ok()?;
    for dir in absolute.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        let mode = meta.permissions().mode();
        let search = if meta.uid() == uid {
            mode & 0o100
        } else if meta.gid() == gid {
            mode & 0o010
        } else {
            mode & 0o001
        };
        if search == 0 {
            return Some(format!(
                "{} (mode {:o}, owner uid {}) does not let uid {uid} through to {}: the messaging app cannot reach the key. Put the socket in a directory it can reach (systemd: RuntimeDirectory=ward-agent, the default; or --local-socket PATH)",
                dir.display(),
                mode & 0o7777,
                meta.uid(),
                socket.display()
            ));
        }
    }
    None
}

#[cfg(test)]
#[path = "local_api_tests.rs"]
mod tests;
