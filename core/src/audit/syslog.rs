//! An audit entry as an RFC 5424 syslog message, framed by octet counting (RFC 6587 §3.4.1,
//! the framing RFC 5425 prescribes over TLS): `MSG-LEN SP SYSLOG-MSG`, the length in bytes.
//!
//! The structured data carries everything the entry's hash covers except the details, which
//! are the message (MSG) exactly as stored, and the time, which is the TIMESTAMP to the
//! millisecond: a SIEM can recompute each hash and follow the chain.

use super::AuditEntry;

/// Private Enterprise Number of the SD-ID. 32473 is the PEN reserved for documentation
/// (RFC 5612); an operator with their own PEN changes nothing else.
pub const PEN: u32 = 32473;

/// The SD-ID of the audit fields.
pub const SD_ID: &str = "ward@32473";

/// RFC 5424 facility 13, "log audit".
pub const FACILITY_LOG_AUDIT: u8 = 13;

/// An absent header field.
pub const NILVALUE: &str = "-";

const BOM: &str = "\u{feff}";

/// Whether the action recorded something done or something refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    /// `denied` (a call refused for the caller's role), `*.refused` (e.g. an enrollment) and
    /// `audit.break` (damage found in the chain) are failures; every other action recorded
    /// something that was done.
    pub fn of(action: &str) -> Self {
        if action == "denied" || action.ends_with(".refused") || action == super::BREAK_ACTION {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }

    /// Severity: notice (5) for a success, warning (4) for a failure.
    fn severity(self) -> u8 {
        match self {
            Outcome::Success => 5,
            Outcome::Failure => 4,
        }
    }
}

/// Who sends: the header fields that do not come from the entry.
#[derive(Clone, Debug)]
pub struct Origin {
    /// HOSTNAME: the controller's name.
    pub hostname: String,
    /// APP-NAME.
    pub app_name: String,
    /// PROCID.
    pub procid: Option<u32>,
}

/// What the message body (MSG) of each entry is (`serve --audit-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuditFormat {
    /// The entry's details, JSON exactly as hashed.
    #[default]
    Rfc5424,
    /// An OCSF event (JSON; [`super::ocsf`]). The header and structured data stay the same.
    Ocsf,
}

/// The message for `entry`: RFC 5424, with the body `format` says.
pub fn render(entry: &AuditEntry, origin: &Origin, format: AuditFormat) -> String {
    match format {
        AuditFormat::Rfc5424 => message(entry, origin),
        AuditFormat::Ocsf => {
            let body = super::ocsf::event(entry, env!("CARGO_PKG_VERSION")).to_string();
            with_body(head(entry, origin), &body)
        }
    }
}

/// The SD-ID of a checkpoint's fields.
pub const CHECKPOINT_SD_ID: &str = "ward-checkpoint@32473";

/// The MSGID of a checkpoint.
pub const CHECKPOINT_MSGID: &str = "audit.checkpoint";

/// A signed audit checkpoint as an RFC 5424 message (severity notice): its fields as
/// structured data (under their own SD-ID, so no entry is mistaken for one), and as the
/// message the checkpoint's text exactly as `serve --audit-checkpoints` writes it, so a line
/// the SIEM kept can be given to `wardctl audit verify --checkpoints`.
pub fn checkpoint_message(checkpoint: &super::Checkpoint, origin: &Origin) -> String {
    let pri = u16::from(FACILITY_LOG_AUDIT) * 8 + 5;
    let procid = origin.procid.map(|p| p.to_string());
    let mut text = format!(
        "<{pri}>1 {} {} {} {} {CHECKPOINT_MSGID} [{CHECKPOINT_SD_ID}",
        checkpoint.at.rfc3339(),
        header_field(&origin.hostname, 255),
        header_field(&origin.app_name, 48),
        header_field(procid.as_deref().unwrap_or(""), 128),
    );
    let seq = checkpoint.seq.to_string();
    for (name, value) in [
        ("seq", seq.as_str()),
        ("hash", checkpoint.hash.as_str()),
        ("chain", checkpoint.chain.as_str()),
        ("signer", checkpoint.signer.as_str()),
    ] {
        text.push(' ');
        text.push_str(name);
        text.push_str("=\"");
        text.push_str(&escape_param_value(value));
        text.push('"');
    }
    text.push(']');
    with_body(text, &checkpoint.to_string())
}

/// The RFC 5424 message for `entry`.
pub fn message(entry: &AuditEntry, origin: &Origin) -> String {
    with_body(head(entry, origin), &entry.details)
}

/// The header and the structured data.
fn head(entry: &AuditEntry, origin: &Origin) -> String {
    let outcome = Outcome::of(&entry.action);
    let pri = u16::from(FACILITY_LOG_AUDIT) * 8 + u16::from(outcome.severity());
    let procid = origin.procid.map(|p| p.to_string());
    let mut text = format!(
        "<{pri}>1 {} {} {} {} {} [{SD_ID}",
        entry.at.rfc3339(),
        header_field(&origin.hostname, 255),
        header_field(&origin.app_name, 48),
        header_field(procid.as_deref().unwrap_or(""), 128),
        header_field(&entry.action, 32),
    );
    let seq = entry.seq.to_string();
    for (name, value) in [
        ("seq", seq.as_str()),
        ("hash", entry.hash.as_str()),
        ("prev_hash", entry.prev_hash.as_str()),
        ("actor", entry.actor.as_str()),
        ("action", entry.action.as_str()),
        ("target", entry.target.as_str()),
        ("outcome", outcome.as_str()),
    ] {
        text.push(' ');
        text.push_str(name);
        text.push_str("=\"");
        text.push_str(&escape_param_value(value));
        text.push('"');
    }
    text.push(']');
    text
}

/// `head`, then MSG when there is one.
fn with_body(mut text: String, body: &str) -> String {
    if !body.is_empty() {
        text.push(' ');
        // MSG in UTF-8 starts with a BOM (RFC 5424 §6.4); pure ASCII needs none.
        if !body.is_ascii() {
            text.push_str(BOM);
        }
        text.push_str(body);
    }
    text
}

/// `MSG-LEN SP SYSLOG-MSG`, the length counted in bytes.
pub fn frame(message: &str) -> Vec<u8> {
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message.as_bytes());
    out
}

/// A PARAM-VALUE: `"`, `\` and `]` escaped with a backslash (RFC 5424 §6.3.3).
pub fn escape_param_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A header field: 1 to `max` printable US-ASCII characters, else the NILVALUE.
fn header_field(text: &str, max: usize) -> &str {
    let printable = text.bytes().all(|b| (33..=126).contains(&b));
    if text.is_empty() || text.len() > max || !printable {
        NILVALUE
    } else {
        text
    }
}

#[cfg(test)]
#[path = "syslog_tests.rs"]
mod tests;
