//! Executes commands exactly once: ledger first, then the controller's go-ahead, then the
//! action, then the result recorded and reported (again until the controller accepts it).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::sync::mpsc;
use tonic::Code;
use tracing::{error, info, warn};
use ward_certs::DeviceKey;
use ward_proto::v1::{self, AcknowledgeRequest, DeviceCommand, ReportResultRequest};

use crate::ledger::{Action, Entry, Ledger, Status};
use crate::link::{CALL_TIMEOUT, Link};
use crate::platform::{ActionError, Platform};
use crate::vault::WipeStep;
use crate::vault_slot::VaultSlot;
use ward_certs::receipt::WipeScope;

/// Work for the executor task.
#[derive(Debug)]
pub enum Work {
    Command(DeviceCommand),
    /// Resume interrupted commands and report unreported results.
    Flush,
}

#[derive(Debug)]
pub struct Executor {
    pub ledger: Ledger,
    pub state_dir: std::path::PathBuf,
    pub vault: std::sync::Arc<VaultSlot>,
    pub platform: Arc<dyn Platform>,
    pub device_id: String,
    pub device_key: DeviceKey,
    pub link: Arc<Link>,
    /// A program that erases the whole device (`--full-erase-hook`); without one, full wipes
    /// are refused.
    pub full_erase_hook: Option<std::path::PathBuf>,
    /// Where the device key lives, to destroy it when a full wipe retires the agent.
    pub device_key_store: crate::device_key::DeviceKeyStore,
    /// Told when a full wipe has destroyed the agent's own data: the agent must stop.
    pub retired: Arc<tokio::sync::Notify>,
    /// The agent's clock: ledger entries are stamped with it.
    pub clock: crate::clock::SharedClock,
    /// Held by every wipe, commanded or by the offline timer, so they never overlap.
    pub wipe_lock: Arc<tokio::sync::Mutex<()>>,
}

fn action_of(command: &DeviceCommand) -> Option<Action> {
    use v1::device_command::Action as Wire;
    Some(match command.action.as_ref()? {
        Wire::Lock(lock) => Action::Lock {
            message: lock.message.clone(),
        },
        Wire::Unlock(_) => Action::Unlock,
        Wire::Disable(disable) => Action::Disable {
            reason: disable.reason.clone(),
        },
        Wire::Enable(_) => Action::Enable,
        Wire::Retire(_) => Action::Retire,
        Wire::Wipe(wipe) => Action::Wipe {
            // A scope this agent does not know: refused as an unknown command.
            scope: ward_proto::vocab::wipe_scope(wipe.scope)?,
        },
    })
}

impl Executor {
    /// Runs until the channel closes. Commands are executed one at a time, in arrival order.
    pub async fn serve(self, mut work: mpsc::Receiver<Work>) {
        self.flush().await;
        while let Some(item) = work.recv().await {
            match item {
                Work::Command(command) => self.handle(command).await,
                Work::Flush => self.flush().await,
            }
        }
    }

    fn now(&self) -> String {
        crate::rfc3339(self.clock.now())
    }

    async fn flush(&self) {
        let entries = match self.ledger.unfinished_business() {
            Ok(entries) => entries,
            Err(e) => return error!(error = %e, "cannot read the command ledger"),
        };
        for entry in entries {
            match entry.status {
                Status::Started => {
                    info!(command_id = %entry.command_id, "resuming an interrupted command");
                    self.execute_and_report(entry).await;
                }
                Status::Finished { .. } => self.finish(entry).await,
                Status::Refused { .. } => {}
            }
        }
    }

    async fn handle(&self, command: DeviceCommand) {
        let id = command.id.clone();
        let existing = match self.ledger.get(&id) {
            Ok(existing) => existing,
            Err(e) => return error!(command_id = %id, error = %e, "cannot read the command ledger"),
        };
        match existing {
            // Executed before: answer with the recorded result, never run it again.
            Some(
                entry @ Entry {
                    status: Status::Finished { .. },
                    ..
                },
            ) => self.finish(entry).await,
            Some(
                entry @ Entry {
                    status: Status::Started,
                    ..
                },
            ) => self.execute_and_report(entry).await,
            Some(Entry {
                status: Status::Refused { .. },
                ..
            }) => {}
            None => self.start(&command).await,
        }
    }

    async fn start(&self, command: &DeviceCommand) {
        let id = command.id.clone();
        let Ok(connected) = self.link.client().await else {
            return warn!(command_id = %id, "controller unreachable; the command will be delivered again");
        };
        let mut client = connected.client;
        let ack = tokio::time::timeout(
            CALL_TIMEOUT,
            client.acknowledge(AcknowledgeRequest {
                command_id: id.clone(),
            }),
        )
        .await;
        let ack = match ack {
            Ok(Ok(ack)) => ack.into_inner(),
            Ok(Err(status)) => {
                return warn!(command_id = %id, error = %status.message(), "acknowledgement refused");
            }
            Err(_) => {
                return warn!(command_id = %id, "acknowledgement timed out; the command will be delivered again");
            }
        };
        fail::fail_point!("agent-after-ack");
        let action = action_of(command);
        let now = self.now();
        if !ack.proceed {
            let state = crate::executor::state_name(ack.state);
            info!(command_id = %id, state, "controller says not to run this command now");
            // Only a final answer is remembered; anything else (e.g. awaiting approval) is
            // asked again when the command is delivered again.
            if ward_proto::names::command_state_is_final(ack.state) {
                let entry = Entry {
                    command_id: id,
                    action: action.unwrap_or(Action::Unknown),
                    status: Status::Refused {
                        state: state.into(),
                    },
                    reported: true,
                    updated_at: now,
                };
                if let Err(e) = self.ledger.put(&entry) {
                    error!(error = %e, "cannot write the command ledger");
                }
            }
            return;
        }
        let entry = match action {
            Some(action) => Entry {
                command_id: id,
                action,
                status: Status::Started,
                reported: false,
                updated_at: now,
            },
            None => Entry {
                command_id: id,
                action: Action::Unknown,
                status: Status::Finished {
                    succeeded: false,
                    failure_reason:
                        "this agent does not know this kind of command; upgrade the agent".into(),
                    receipt_body: None,
                    receipt_signature: None,
                },
                reported: false,
                updated_at: now,
            },
        };
        // Durable before acting: a crash from here on resumes instead of forgetting.
        if let Err(e) = self.ledger.put(&entry) {
            return error!(error = %e, "cannot write the command ledger; not executing");
        }
        fail::fail_point!("agent-after-ledger-started");
        match entry.status {
            Status::Started => self.execute_and_report(entry).await,
            _ => self.finish(entry).await,
        }
    }

    async fn execute_and_report(&self, mut entry: Entry) {
        info!(command_id = %entry.command_id, action = ?entry.action, "executing");
        entry.status = self.execute(&entry.command_id, &entry.action).await;
        entry.updated_at = self.now();
        if let Err(e) = self.ledger.put(&entry) {
            error!(error = %e, "cannot record the command's result");
        }
        fail::fail_point!("agent-after-ledger-finished");
        self.finish(entry).await;
    }

    /// Reports a finished command; a full wipe or a retirement the controller accepted
    /// retires the agent.
    async fn finish(&self, entry: Entry) {
        let retires = matches!(
            &entry.action,
            Action::Wipe {
                scope: WipeScope::Full
            }
        ) || entry.action == Action::Retire;
        if self.report(entry).await && retires {
            self.retire().await;
        }
    }

    /// After a full wipe or a retirement the controller accepted: destroy the device key and
    /// the whole state directory, then stop the agent. Until the report is accepted the
    /// identity is kept, so the result and its receipt can still be delivered.
    async fn retire(&self) {
        warn!("wipe reported for retirement: destroying this agent's key and state");
        if let Err(e) = self.device_key_store.destroy().await {
            error!(error = %e, "cannot destroy the device key");
        }
        if let Err(e) = std::fs::remove_dir_all(&self.state_dir) {
            error!(error = %e, "cannot remove the state directory");
        }
        self.retired.notify_one();
    }

    async fn execute(&self, id: &str, action: &Action) -> Status {
        let failed = |reason: String| Status::Finished {
            succeeded: false,
            failure_reason: reason,
            receipt_body: None,
            receipt_signature: None,
        };
        let done = Status::Finished {
            succeeded: true,
            failure_reason: String::new(),
            receipt_body: None,
            receipt_signature: None,
        };
        match action {
            Action::Lock { message } => {
                let locked = self.platform.lock_screens(message).await;
                if let Err(e) = &locked
                    && !matches!(e, ActionError::NotVerified(_))
                {
                    return failed(format!("lock failed: {e}"));
                }
                // The messaging app sees "locked" and gets no key until an unlock, also
                // when no screen was seen locking.
                let recorded = ward_files::replace_file(
                    &crate::local_api::lock_file(&self.state_dir),
                    b"",
                    0o600,
                );
                match (locked, recorded) {
                    (Ok(()), Ok(())) => done,
                    (Ok(()), Err(e)) => failed(format!(
                        "the screens are locked but the lock could not be recorded: {e}"
                    )),
                    // Never "succeeded" without a session seen locked.
                    (Err(e), Ok(())) => failed(format!(
                        "{e}; the messaging key is withheld until `device unlock`"
                    )),
                    (Err(e), Err(record)) => failed(format!(
                        "{e}; and the lock could not be recorded, so the messaging key is not withheld: {record}"
                    )),
                }
            }
            Action::Unlock => match self.platform.unlock_screens().await {
                Ok(()) => {
                    match std::fs::remove_file(crate::local_api::lock_file(&self.state_dir)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return failed(format!(
                                "the screens are unlocked but the lock record remains: {e}"
                            ));
                        }
                    }
                    done
                }
                Err(e) => failed(format!("unlock failed: {e}")),
            },
            Action::Disable { reason } => {
                // The app sees "disabled" with the reason and gets no key until an enable.
                let marker = crate::local_api::disabled_file(&self.state_dir);
                match ward_files::replace_file(&marker, reason.as_bytes(), 0o600) {
                    Ok(()) => done,
                    Err(e) => failed(format!("the disable could not be recorded: {e}")),
                }
            }
            Action::Enable => {
                match std::fs::remove_file(crate::local_api::disabled_file(&self.state_dir)) {
                    Ok(()) => done,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => done,
                    Err(e) => failed(format!("the disable marker could not be removed: {e}")),
                }
            }
            Action::Retire => self.wipe(id, false).await,
            Action::Wipe {
                scope: WipeScope::Messaging,
            } => self.wipe(id, false).await,
            Action::Wipe {
                scope: WipeScope::Full,
            } => self.wipe(id, true).await,
            Action::Unknown => {
                failed("this agent does not know this kind of command; upgrade the agent".into())
            }
        }
    }

    async fn wipe(&self, id: &str, full: bool) -> Status {
        let failed = |reason: String| Status::Finished {
            succeeded: false,
            failure_reason: reason,
            receipt_body: None,
            receipt_signature: None,
        };
        if full && self.full_erase_hook.is_none() {
            return failed(
                "full wipe not supported here: the agent has no full-erase hook (ward-agent run --full-erase-hook); nothing was wiped".into(),
            );
        }
        let vault = match self.vault.get().await {
            Ok(Some(vault)) => vault,
            Ok(None) => {
                return failed(
                    "no messaging data directory is managed on this device (the agent runs without --messaging-dir)".into(),
                );
            }
            Err(e) => {
                return failed(format!(
                    "the messaging data key is out of reach, nothing was wiped: {e}"
                ));
            }
        };
        let _one_wipe_at_a_time = self.wipe_lock.lock().await;
        let journal = match vault.wipe(id).await {
            Ok(journal) => journal,
            Err(e) => return failed(format!("wipe failed: {e}")),
        };
        let key_destroyed = match vault.key_present().await {
            Ok(present) => !present,
            Err(e) => return failed(format!("cannot confirm the key is gone: {e}")),
        };
        if journal.directory_missing {
            let what = if journal.directory_replaced {
                "something else stands at its path (the directory the key was made for was moved away, or a filesystem mounted over it)"
            } else {
                "nothing is at its path (a home directory not mounted, or the directory moved away)"
            };
            return failed(format!(
                "wipe incomplete: the data key is destroyed (key destroyed {key_destroyed}), but the messaging directory {} was not found: {what}; its files were not removed (they are unreadable without the key)",
                vault.dir().display()
            ));
        }
        if journal.step != WipeStep::Done || !journal.verified_empty || !key_destroyed {
            return failed(format!(
                "wipe incomplete: key destroyed {key_destroyed}, directory empty {}",
                journal.verified_empty
            ));
        }
        let full_erase = match (&self.full_erase_hook, full) {
            (Some(hook), true) => match run_hook(hook, id, &self.device_id).await {
                Ok(done) => Some(done),
                Err(why) => {
                    return failed(format!(
                        "the messaging data is wiped, but the full erase failed: {why}"
                    ));
                }
            },
            _ => None,
        };
        let wiped = crate::receipt::Wiped {
            command_id: id.to_owned(),
            device_id: self.device_id.clone(),
            completed_at: journal.completed_at.clone().unwrap_or_else(|| self.now()),
            scope: if full {
                WipeScope::Full
            } else {
                WipeScope::Messaging
            },
            full_erase,
            key_destroyed,
        };
        match crate::receipt::sign(&vault, &journal, wiped, &self.device_key) {
            Ok(signed) => Status::Finished {
                succeeded: true,
                failure_reason: String::new(),
                receipt_body: Some(STANDARD.encode(&signed.body)),
                receipt_signature: Some(STANDARD.encode(&signed.signature)),
            },
            Err(e) => failed(format!(
                "the data is wiped but the receipt could not be signed: {e}"
            )),
        }
    }

    /// Reports a finished command; true when the controller accepted it as succeeded.
    async fn report(&self, mut entry: Entry) -> bool {
        let Status::Finished {
            succeeded,
            failure_reason,
            receipt_body,
            receipt_signature,
        } = &entry.status
        else {
            return false;
        };
        let receipt = match (receipt_body, receipt_signature) {
            (Some(b), Some(s)) => match (STANDARD.decode(b), STANDARD.decode(s)) {
                (Ok(body), Ok(signature)) => Some(v1::WipeReceipt { body, signature }),
                _ => None,
            },
            _ => None,
        };
        let request = ReportResultRequest {
            command_id: entry.command_id.clone(),
            succeeded: *succeeded,
            failure_reason: failure_reason.clone(),
            receipt,
        };
        let Ok(connected) = self.link.client().await else {
            warn!(command_id = %entry.command_id, "controller unreachable; the result will be reported later");
            return false;
        };
        let mut client = connected.client;
        let accepted_success = match tokio::time::timeout(
            CALL_TIMEOUT,
            client.report_result(request),
        )
        .await
        {
            Ok(Ok(response)) => {
                let state = state_name(response.into_inner().state);
                info!(command_id = %entry.command_id, state, "result reported");
                fail::fail_point!("agent-after-report");
                entry.reported = true;
                state == "succeeded"
            }
            Ok(Err(status))
                if matches!(
                    status.code(),
                    Code::NotFound | Code::FailedPrecondition | Code::InvalidArgument
                ) =>
            {
                error!(command_id = %entry.command_id, error = %status.message(), "the controller refused the result; not retrying");
                entry.reported = true;
                false
            }
            Ok(Err(status)) => {
                warn!(command_id = %entry.command_id, error = %status.message(), "reporting failed; will retry");
                return false;
            }
            Err(_) => {
                warn!(command_id = %entry.command_id, "reporting timed out; will retry");
                return false;
            }
        };
        if let Err(e) = self.ledger.put(&entry) {
            error!(error = %e, "cannot record that the result was reported");
        }
        accepted_success
    }
}

/// Runs the full-erase hook for command `id`; on success, what is known: that the hook ran
/// and exited 0. What it erased is the hook's business, never claimed as "device wiped".
async fn run_hook(hook: &std::path::Path, id: &str, device_id: &str) -> Result<String, String> {
    let child = tokio::process::Command::new(hook)
        .env("WARD_COMMAND_ID", id)
        .env("WARD_DEVICE_ID", device_id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", hook.display()))?;
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(600),
        child.wait_with_output(),
    )
    .await
    .map_err(|_| format!("{} did not finish within 10 minutes", hook.display()))?
    .map_err(|e| format!("{} failed: {e}", hook.display()))?;
    if output.status.success() {
        Ok(format!(
            "hook ran: {} exited 0 (what it erased is not verified by Ward)",
            hook.display()
        ))
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let detail = ward_vocab::text::clean(stderr.trim(), 500);
        Err(format!(
            "{} failed ({}): {detail}",
            hook.display(),
            output.status
        ))
    }
}

pub use ward_proto::names::command_state as state_name;

#[cfg(test)]
mod tests {
    use super::*;

    fn wipe(scope: i32) -> DeviceCommand {
        DeviceCommand {
            id: "6f1c0000-4000-8000-0000-0000000000c1".into(),
            created_at_unix_ms: 0,
            action: Some(v1::device_command::Action::Wipe(v1::WipeAction { scope })),
        }
    }

    /// A wipe scope this agent does not know (a newer controller's) is an unknown command,
    /// refused as such; it never became a wipe with a made-up scope.
    #[test]
    fn wipe_scopes_are_typed_and_an_unknown_one_is_an_unknown_command() {
        assert_eq!(
            action_of(&wipe(v1::WipeScope::Messaging as i32)),
            Some(Action::Wipe {
                scope: WipeScope::Messaging
            })
        );
        assert_eq!(
            action_of(&wipe(v1::WipeScope::Full as i32)),
            Some(Action::Wipe {
                scope: WipeScope::Full
            })
        );
        assert_eq!(action_of(&wipe(99)), None);
        assert_eq!(action_of(&wipe(v1::WipeScope::Unspecified as i32)), None);
    }
}
