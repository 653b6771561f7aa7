//! `ward-agent status`: the enrollment, the standing with the controller, the offline timer,
//! and every problem with what to do about it.

use serde_json::{Value, json};

use crate::clock::SharedClock;
use crate::connection::{self, Finding};
use crate::error::AgentError;
use crate::offline::{self, ReceiptState, TimerRecord};
use crate::policy::AgentPolicy;
use crate::state::StateDir;

struct Problem {
    code: &'static str,
    message: String,
}

/// The status as JSON (the `--output json` shape; the table is made from it).
pub fn view(dir: &StateDir, clock: &SharedClock) -> Result<Value, AgentError> {
    let s = dir.load()?;
    let now = clock.now();
    let mut problems = Vec::new();

    let expires = crate::parse_rfc3339(&s.certificate_expires_at);
    let certificate_expired = expires.is_some_and(|t| now >= t);
    if certificate_expired {
        problems.push(Problem {
            code: "certificate_expired",
            message: format!(
                "the device certificate expired at {} (by this device's clock): the controller refuses it. Enroll this device again with a new token (`wardctl token create`, then `ward-agent enroll`)",
                s.certificate_expires_at
            ),
        });
    }

    let standing = connection::load(dir.root(), &s.device_id);
    if let Some(st) = standing.as_ref().filter(|st| st.finding.is_problem()) {
        // An expired certificate is already said above.
        if !(certificate_expired && st.finding == Finding::CertificateExpired) {
            problems.push(Problem {
                code: st.finding.as_str(),
                message: format!(
                    "since {}: {} ({})",
                    st.since,
                    st.finding.advice(),
                    st.detail
                ),
            });
        }
    }

    let policy = AgentPolicy::load(dir.root()).unwrap_or_default();
    let record = TimerRecord::load(dir.root())
        .ok()
        .flatten()
        .filter(|r| r.device_id == s.device_id);
    let timer = timer_view(record.as_ref(), &policy, &mut problems, dir);

    let connection_view = standing.map(|st| {
        json!({
            "state": st.finding.as_str(),
            "detail": st.detail,
            "since": crate::shown_time_text(&st.since),
            "seen_at": crate::shown_time_text(&st.seen_at),
            "advice": st.finding.advice(),
        })
    });
    Ok(json!({
        "device_id": s.device_id,
        "user": s.user,
        "server_url": s.server_url,
        // Deprecated alias of `server_url` (README, "JSON output").
        "server": s.server_url,
        "ca_hash": s.ca_hash,
        "certificate_expires_at": crate::shown_time_text(&s.certificate_expires_at),
        "certificate_expired": certificate_expired,
        "enrolled_at": crate::shown_time_text(&s.enrolled_at),
        "last_checkin_at": s.last_checkin.as_deref().map(crate::shown_time_text),
        // Deprecated alias of `last_checkin_at`.
        "last_checkin": s.last_checkin.as_deref().map(crate::shown_time_text),
        "checkin_interval_seconds": s.checkin_interval_seconds,
        "secret_store": s.secret_store,
        // Where the device key is held: the TPM's persistent handle, when it is there.
        "tpm_key_handle": s.tpm_key_handle.map(|h| format!("{h:#010x}")),
        "state_dir": dir.root().display().to_string(),
        "connection": connection_view,
        "offline_timer": timer,
        "problems": problems
            .iter()
            .map(|p| json!({ "code": p.code, "message": p.message }))
            .collect::<Vec<_>>(),
    }))
}

fn timer_view(
    record: Option<&TimerRecord>,
    policy: &AgentPolicy,
    problems: &mut Vec<Problem>,
    dir: &StateDir,
) -> Value {
    let last_checkin = record.and_then(TimerRecord::last_checkin_time);
    let deadline = last_checkin.and_then(|t| offline::deadline(policy, t));
    if let Some(wiped_at) = record.and_then(|r| r.wiped_at.as_deref()) {
        let receipt = record.and_then(|r| r.receipt);
        let (code, what) = match receipt {
            Some(ReceiptState::Pending) | None => (
                "offline_wipe_receipt_pending",
                format!(
                    "its signed receipt waits in {} for the controller: it goes with the next check-in or, if the controller refuses this device's certificate, without it (the controller checks the receipt's signature). If the device will never reach the controller again, copy that file to the controller's admin",
                    dir.root().join("offline-wipe.json").display()
                ),
            ),
            Some(ReceiptState::Reported) => ("offline_wipe", "the controller has its receipt".into()),
            Some(ReceiptState::Unsigned) => (
                "offline_wipe_unsigned",
                "no signed receipt could be made (the device key was unavailable); the controller will not learn of it from this device".into(),
            ),
        };
        problems.push(Problem {
            code,
            message: format!(
                "the offline timer wiped the messaging data at {wiped_at} (no check-in since {}); {what}",
                record.map_or("?", |r| r.last_checkin.as_str())
            ),
        });
    }
    let last_checkin = record.map(|r| crate::shown_time_text(&r.last_checkin));
    let counted_until = record.map(|r| crate::shown_time_text(&r.reached));
    let deadline = deadline.map(crate::shown_time);
    json!({
        "wipe_after_seconds": policy.offline_wipe_after_seconds,
        "last_checkin_at": last_checkin,
        "counted_until_at": counted_until,
        "deadline_at": deadline,
        "wiped_at": record.and_then(|r| r.wiped_at.as_deref().map(crate::shown_time_text)),
        "receipt": record.and_then(|r| r.receipt),
        // Deprecated aliases of `last_checkin_at`, `counted_until_at` and `deadline_at`
        // (README, "JSON output").
        "last_checkin": last_checkin,
        "counted_until": counted_until,
        "deadline": deadline,
    })
}

/// The table: one line per field, then one line per problem.
pub fn table(view: &Value) -> String {
    let text = |key: &str| match &view[key] {
        Value::String(s) => s.clone(),
        Value::Null => "never".into(),
        other => other.to_string(),
    };
    let mut lines = vec![
        ("device id", text("device_id")),
        ("user", text("user")),
        ("server", text("server")),
        (
            "certificate expires",
            if view["certificate_expired"] == true {
                format!("{} (EXPIRED)", text("certificate_expires_at"))
            } else {
                text("certificate_expires_at")
            },
        ),
        ("enrolled", text("enrolled_at")),
        ("last check-in", text("last_checkin")),
        ("device key", key_line(view)),
    ];
    if let Some(c) = view["connection"].as_object() {
        let state = c["state"].as_str().unwrap_or("?");
        let since = c["since"].as_str().unwrap_or("?");
        lines.push(("connection", format!("{state} since {since}")));
    }
    lines.push(("offline timer", timer_line(&view["offline_timer"])));
    lines.push(("state dir", text("state_dir")));
    let problems = view["problems"].as_array().cloned().unwrap_or_default();
    if problems.is_empty() {
        lines.push(("problems", "none".into()));
    }
    for p in problems {
        lines.push(("problem", p["message"].as_str().unwrap_or("").to_owned()));
    }
    lines
        .into_iter()
        .map(|(k, v)| format!("{k:<20} {v}\n"))
        .collect()
}

/// Where the device key is held, in words.
fn key_line(view: &Value) -> String {
    match (
        view["secret_store"].as_str(),
        view["tpm_key_handle"].as_str(),
    ) {
        (Some("tpm"), Some(handle)) => {
            format!("in the TPM (persistent handle {handle}; never leaves it)")
        }
        (Some("keyring"), _) => "in the OS keyring".into(),
        (Some("file"), _) => "in a 0600 file in the state dir (device.key)".into(),
        _ => "unknown".into(),
    }
}

fn timer_line(t: &Value) -> String {
    if let Some(at) = t["wiped_at"].as_str() {
        let receipt = t["receipt"].as_str().unwrap_or("pending");
        return format!("wiped the messaging data at {at} (receipt {receipt})");
    }
    match (t["wipe_after_seconds"].as_u64(), t["deadline_at"].as_str()) {
        (Some(0) | None, _) => "off (the policy sets no offline wipe)".into(),
        (Some(secs), Some(deadline)) => {
            format!("wipes at {deadline} without a check-in ({secs} s after the last one)")
        }
        (Some(secs), None) => format!("wipes {secs} s after the last check-in"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The offline timer's times end in `_at` like every other timestamp of the status; the
    /// names scripts may already read stay beside them with the same values.
    #[test]
    fn the_timer_times_end_in_at_and_the_old_names_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        let record = TimerRecord {
            device_id: "d1".into(),
            last_checkin: "2026-12-01T10:00:00Z".into(),
            reached: "2026-12-01T11:00:00Z".into(),
            counted_to: None,
            wiped_at: None,
            receipt: None,
            offline_wipe_after_seconds: None,
        };
        let policy = AgentPolicy::from(ward_vocab::policy::Policy {
            offline_wipe_after_seconds: 72 * 3600,
            ..Default::default()
        });
        let t = timer_view(Some(&record), &policy, &mut Vec::new(), &dir);
        assert_eq!(t["last_checkin_at"], "2026-12-01T10:00:00.000Z");
        assert_eq!(t["counted_until_at"], "2026-12-01T11:00:00.000Z");
        assert_eq!(t["deadline_at"], "2026-12-04T10:00:00.000Z");
        for (old, new) in [
            ("last_checkin", "last_checkin_at"),
            ("counted_until", "counted_until_at"),
            ("deadline", "deadline_at"),
        ] {
            assert_eq!(t[old], t[new], "{old}");
        }
        assert_eq!(
            timer_line(&t),
            "wipes at 2026-12-04T10:00:00.000Z without a check-in (259200 s after the last one)"
        );
    }
}
