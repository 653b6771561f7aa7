//! Signed webhooks: which events exist, which receivers may be named, how a delivery is
//! signed, and the event a committed audit entry raises.
//!
//! An event is raised from the audit entry that records its change, in the transaction that
//! commits both (the store's writer, [`event_for`]): an event exists exactly when its change
//! does. Each delivery is an HTTP POST of the event's JSON, signed the way GitHub and Stripe
//! sign theirs: `Ward-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::audit::AuditEntry;
use super::command::CommandState;
use super::{Named, Timestamp};

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Ward-Signature";
/// The header that carries the event's id (the same at every attempt: receivers dedupe on it).
pub const EVENT_ID_HEADER: &str = "Ward-Event-Id";
/// The header that carries the event's type.
pub const EVENT_TYPE_HEADER: &str = "Ward-Event-Type";

/// The longest receiver URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// What a receiver can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// A command reached a terminal state (succeeded, failed, cancelled, expired, superseded).
    CommandFinished,
    /// A user's offboarding was started: tokens withdrawn, messaging wipes issued.
    UserOffboarded,
    /// A required compliance check started failing on a device.
    DeviceNoncompliant,
}

impl EventType {
    pub const ALL: [EventType; 3] = [
        EventType::CommandFinished,
        EventType::UserOffboarded,
        EventType::DeviceNoncompliant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CommandFinished => "command.finished",
            EventType::UserOffboarded => "user.offboarded",
            EventType::DeviceNoncompliant => "device.noncompliant",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Named for EventType {
    const ALL: &'static [Self] = &EventType::ALL;
    const WHAT: &'static str = "event";

    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl FromStr for EventType {
    type Err = WebhookError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::named(s).ok_or_else(|| WebhookError::UnknownEvent(s.to_owned()))
    }
}

/// Why a webhook could not be added.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("unknown event {0:?}: use {choices} (comma-separated)", choices = EventType::choices())]
    UnknownEvent(String),
    #[error("no event named: give --events, e.g. --events command.finished,user.offboarded")]
    NoEvents,
    #[error("bad URL {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error(
        "the CA file holds no PEM certificate: give the CA that signed the receiver's certificate"
    )]
    BadCa,
    #[error("the CA file is for https:// receivers; {0} is plain http")]
    CaForHttp(String),
}

/// The event types named by a comma-separated list, each once, in the order of [`EventType::ALL`].
fn parse_events(list: &[String]) -> Result<Vec<EventType>, WebhookError> {
    let mut events = Vec::new();
    for name in list.iter().flat_map(|l| l.split(',')).map(str::trim) {
        if name.is_empty() {
            continue;
        }
        events.push(name.parse::<EventType>()?);
    }
    if events.is_empty() {
        return Err(WebhookError::NoEvents);
    }
    events.sort();
    events.dedup();
    Ok(events)
}

/// What a receiver subscribes to: at least one event type, each once, in the order of
/// [`EventType::ALL`] (as [`parse_events`] reads a list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventList(Vec<EventType>);

impl EventList {
    pub fn parse(list: &[String]) -> Result<Self, WebhookError> {
        parse_events(list).map(Self)
    }

    pub fn into_vec(self) -> Vec<EventType> {
        self.0
    }
}

/// The scheme of a receiver URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Https,
    /// Only to a loopback host (a relay on the controller's own machine).
    Http,
}

/// A receiver URL that passed the rules: http or https, no user name or password, no
/// fragment, plain http only to a loopback host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverUrl {
    pub scheme: Scheme,
    /// The host as written (a DNS name, or an IP address without brackets).
    pub host: String,
    pub port: u16,
    /// The path and query, at least `/`.
    pub path: String,
    text: String,
}

impl ReceiverUrl {
    pub fn parse(text: &str) -> Result<Self, WebhookError> {
        let bad = |why: &str| WebhookError::BadUrl {
            url: text.chars().take(200).collect(),
            why: why.to_owned(),
        };
        if text.len() > MAX_URL_LEN {
            return Err(bad("longer than 2048 characters"));
        }
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("it contains spaces or control characters"));
        }
        if !text.is_ascii() {
            return Err(bad(
                "it contains characters other than ASCII: percent-encode them (and use the punycode of the host name)",
            ));
        }
        let (scheme, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else {
            return Err(bad(
                "use an https:// URL (http:// only to a loopback address)",
            ));
        };
        if rest.contains('#') {
            return Err(bad("a fragment (#…) is never sent; leave it out"));
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        if authority.contains('@') {
            return Err(bad(
                "a user name or password in the URL is refused: the signature authenticates Ward",
            ));
        }
        let default_port = match scheme {
            Scheme::Https => 443,
            Scheme::Http => 80,
        };
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("no valid host[:port]"))?;
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
        {
            return Err(bad("no valid host"));
        }
        if scheme == Scheme::Http && !is_loopback_name(host) {
            return Err(bad(
                "plain http:// is allowed only to a loopback address (127.0.0.1, ::1, localhost); use https://",
            ));
        }
        Ok(Self {
            scheme,
            host: host.to_owned(),
            port,
            path,
            text: text.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The Host header's value.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{host}:{}", self.port)
    }
}

impl FromStr for ReceiverUrl {
    type Err = WebhookError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ReceiverUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((authority, None)),
    }
}

/// Whether a host as written names this machine: `localhost` or a loopback IP address. (The
/// addresses it resolves to are checked again when connecting.)
pub fn is_loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The secret a receiver checks signatures with: made by Ward, shown once at `webhook add`,
/// kept by the store so Ward can sign. Never `Debug`-printed, zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Zeroizing<String>);

impl WebhookSecret {
    /// A new secret: `whsec_` and 256 random bits in hex.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(Zeroizing::new(format!("whsec_{}", hex::encode(bytes))))
    }

    /// A stored secret.
    pub fn from_stored(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// The text the receiver keys its HMAC with (the whole string, prefix included).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

/// The signature header's value for `body` sent at `t` (Unix seconds).
pub fn sign(secret: &WebhookSecret, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret, t, body)))
}

fn mac(secret: &WebhookSecret, t: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Why a receiver refuses a delivery.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the timestamp is outside the tolerance window (a replay, or a clock far off)")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// What a receiver does (README, "Signed webhooks"): the timestamp within `tolerance` of
/// `now` (Unix seconds) and one `v1` signature matching, compared in constant time.
pub fn verify(
    secret: &WebhookSecret,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| VerifyError::Malformed)?),
            Some(("v1", v)) => signatures.push(hex::decode(v).map_err(|_| VerifyError::Malformed)?),
            _ => {}
        }
    }
    let t = t.ok_or(VerifyError::Malformed)?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    // An extreme `t` is stale, never an overflow.
    if now
        .checked_sub(t)
        .is_none_or(|d| d.unsigned_abs() > tolerance.unsigned_abs())
    {
        return Err(VerifyError::Stale);
    }
    for signature in signatures {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        if mac.verify_slice(&signature).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::Mismatch)
}

/// The event a committed audit entry raises, with its `data`, if it raises one.
pub fn event_for(entry: &AuditEntry) -> Option<(EventType, Value)> {
    // Every audited change passes here, in the writer's commit: parse only what raises one.
    let raises = matches!(
        entry.action.as_str(),
        "user.offboard" | "device.enforcement"
    ) || entry
        .action
        .strip_prefix("command.")
        .and_then(|s| s.parse::<CommandState>().ok())
        .is_some_and(CommandState::is_terminal);
    if !raises {
        return None;
    }
    let details: Value = serde_json::from_str(&entry.details).unwrap_or(Value::Null);
    let admin = entry.actor.strip_prefix("ward://admin/");
    if let Some(state) = entry.action.strip_prefix("command.") {
        let state: CommandState = state.parse().ok()?;
        if !state.is_terminal() {
            return None;
        }
        return Some((
            EventType::CommandFinished,
            json!({
                "command_id": entry.target,
                "device_id": details.get("device"),
                "command_state": state.as_str(),
                "failure_reason": details.get("failure_reason"),
                "receipt_verified": details.get("receipt_verified"),
                "actor": entry.actor,
                "admin": admin,
            }),
        ));
    }
    match entry.action.as_str() {
        "user.offboard" => Some((
            EventType::UserOffboarded,
            json!({
                "user": entry.target,
                "reason": details.get("reason"),
                "devices": details.get("devices"),
                "tokens_invalidated": details.get("tokens_invalidated"),
                "actor": entry.actor,
                "admin": admin,
            }),
        )),
        "device.enforcement" if details.get("step").and_then(Value::as_str) == Some("failing") => {
            Some((
                EventType::DeviceNoncompliant,
                json!({
                    "device_id": entry.target,
                    "check": details.get("check"),
                    "enforcement_action": details.get("action"),
                    "policy_revision": details.get("policy_revision"),
                }),
            ))
        }
        _ => None,
    }
}

/// The body of one event: the same bytes at every attempt and for every receiver.
pub fn body(event_id: &str, event: EventType, entry: &AuditEntry, data: Value) -> String {
    json!({
        "event_id": event_id,
        "event_type": event.as_str(),
        "created_at": entry.at.rfc3339(),
        "data": data,
        "audit": { "seq": entry.seq, "hash": entry.hash },
    })
    .to_string()
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not yet taken by the receiver (2xx); tried again at `next_attempt_at`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: the receiver did not take it within the retry period.
    Abandoned,
}

ward_vocab::names!(DeliveryState, "delivery state" {
    Pending => "pending",
    Delivered => "delivered",
    Abandoned => "abandoned",
});

/// A receiver.
#[derive(Clone, Debug)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<EventType>,
    pub secret: WebhookSecret,
    /// Extra trust for an https receiver (PEM); `None`: the system's roots.
    pub ca_pem: Option<String>,
    pub created_at: Timestamp,
    pub created_by: String,
}

/// One event on its way to one receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub event_id: String,
    pub webhook_id: String,
    pub event: EventType,
    pub body: String,
    pub created_at: Timestamp,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

/// One try, as recorded for `webhook deliveries`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub attempt: u32,
    pub at: Timestamp,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Why it failed (no answer, or a status other than 2xx).
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// What an attempt leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Delivered,
    RetryAt(Timestamp),
    GiveUp,
}

/// After attempt number `attempt` (1 for the first) failed at `now`: the next try, doubling
/// from `first` up to `max`, each delay drawn between its half and itself (`jitter` in 0..1),
/// or giving up once the event is older than `give_up_after`.
pub fn after_failure(
    attempt: u32,
    created_at: Timestamp,
    now: Timestamp,
    (first, max): (Duration, Duration),
    give_up_after: Duration,
    jitter: f64,
) -> Next {
    if now >= created_at.saturating_add(give_up_after) {
        return Next::GiveUp;
    }
    let exponent = attempt.saturating_sub(1).min(30);
    let delay = first.saturating_mul(1 << exponent).min(max);
    let delay = delay.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0);
    Next::RetryAt(now.saturating_add(delay))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "webhook_tests.rs"]
mod tests;
