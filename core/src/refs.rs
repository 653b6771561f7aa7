//! What a request names, typed: the edge parses the wire's text into these once the caller is
//! authenticated, and the app takes only these. Each parse error says what was wrong and what
//! is accepted.

use std::fmt;
use std::str::FromStr;

use super::model::DeviceIdError;
use ward_certs::AdminName;

use super::command::MAX_BULK_WIPE;
use super::token::TOKEN_ID_LEN;
use super::{DeviceId, UserEmail};

/// A device as an admin names it: by its id or, at a keyboard, by its host name (the one
/// device of that name that is not retired; the app resolves it and refuses several).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceRef {
    Id(DeviceId),
    HostName(HostName),
}

/// A host name as a device reference: letters, digits, dots, hyphens, underscores; 1-253
/// bytes. Keeps why the text was not a device id, for a refusal that finds no such device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostName {
    name: String,
    not_an_id: String,
}

impl HostName {
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// Why the text was not read as a device id (for "no such device" refusals).
    pub fn not_an_id(&self) -> &str {
        &self.not_an_id
    }
}

/// Neither a device id nor a host name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct DeviceRefError(#[from] DeviceIdError);

impl FromStr for DeviceRef {
    type Err = DeviceRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<DeviceId>() {
            Ok(id) => Ok(Self::Id(id)),
            Err(e) if looks_like_host_name(s) => Ok(Self::HostName(HostName {
                name: s.trim().to_owned(),
                not_an_id: e.to_string(),
            })),
            Err(e) => Err(e.into()),
        }
    }
}

impl From<DeviceId> for DeviceRef {
    fn from(id: DeviceId) -> Self {
        Self::Id(id)
    }
}

impl fmt::Display for DeviceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => id.fmt(f),
            Self::HostName(name) => f.write_str(&name.name),
        }
    }
}

/// Whether `text` could be a host name (letters, digits, dots, hyphens, underscores; 1-253
/// bytes) rather than a mistyped id of another kind.
fn looks_like_host_name(text: &str) -> bool {
    let text = text.trim();
    !text.is_empty()
        && text.len() <= 253
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// An enrollment token's id as `token list` prints it ([`super::TokenHash::id`]), lower
/// case; the full 64-digit hash is accepted too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenId(String);

impl TokenId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Not a token id. The text is not echoed: an admin may have pasted the token itself, a
/// secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "that is not a token id: use the {TOKEN_ID_LEN} hex digits `wardctl token list` shows in its ID column (a token itself, \"ward_…\", is not its id)"
)]
pub struct TokenIdError;

impl FromStr for TokenId {
    type Err = TokenIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id = s.trim().to_ascii_lowercase();
        let hex = id.chars().all(|c| c.is_ascii_hexdigit());
        match id.len() {
            TOKEN_ID_LEN if hex => Ok(Self(id)),
            64 if hex => Ok(Self(id[..TOKEN_ID_LEN].to_owned())),
            _ => Err(TokenIdError),
        }
    }
}

/// Whether `s` is a key as Ward takes one from a client (an idempotency key, a webhook's
/// id): 1-128 printable ASCII characters, no spaces, each also `allowed`.
fn is_key(s: &str, allowed: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_graphic() && allowed(c))
}

/// A command's idempotency key as an admin gives it: 1-128 printable ASCII characters, no
/// spaces, not starting with `bulk-wipe:` (the keys a bulk wipe gives its commands in the
/// same admin's namespace: a command under such a key would stand in its batch for a wipe).
/// The app stores it in the admin's namespace ([`super::IdempotencyKey::Admin`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandKey(String);

impl CommandKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "idempotency key must be 1-128 printable ASCII characters without spaces, not starting with \"bulk-wipe:\""
)]
pub struct CommandKeyError;

impl FromStr for CommandKey {
    type Err = CommandKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = is_key(s, |_| true) && !s.starts_with(BULK_WIPE_KEYS);
        ok.then(|| Self(s.to_owned())).ok_or(CommandKeyError)
    }
}

/// The start of the keys a bulk wipe gives its commands (`bulk-wipe:KEY:DEVICE`).
pub const BULK_WIPE_KEYS: &str = "bulk-wipe:";

/// A bulk wipe's idempotency key: like a command's, without ':' (it separates the admin from
/// the key, and one batch's prefix must not be the start of another's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkWipeKey(String);

impl BulkWipeKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BulkWipeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "a bulk wipe's idempotency key must be 1-128 printable ASCII characters without spaces or ':'"
)]
pub struct BulkWipeKeyError;

impl FromStr for BulkWipeKey {
    type Err = BulkWipeKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = is_key(s, |c| c != ':');
        ok.then(|| Self(s.to_owned())).ok_or(BulkWipeKeyError)
    }
}

/// A bulk wipe as it reported itself: `<admin>:<key>`, the admin who issued it and the
/// idempotency key they gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkWipeName {
    pub admin: AdminName,
    pub key: BulkWipeKey,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BulkWipeNameError {
    #[error("{0:?} is not a bulk wipe: it is named <admin>:<key>, as the wipe reported")]
    NoColon(String),
    #[error("bulk wipe {name:?}: {why}")]
    Admin { name: String, why: String },
    #[error(transparent)]
    Key(#[from] BulkWipeKeyError),
}

impl FromStr for BulkWipeName {
    type Err = BulkWipeNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (admin, key) = s
            .split_once(':')
            .ok_or_else(|| BulkWipeNameError::NoColon(s.to_owned()))?;
        let admin = admin
            .parse::<AdminName>()
            .map_err(|e| BulkWipeNameError::Admin {
                name: s.to_owned(),
                why: e.to_string(),
            })?;
        Ok(Self {
            admin,
            key: key.parse()?,
        })
    }
}

/// The devices a bulk wipe lists, each non-blank entry read as a [`DeviceRef`] and kept with
/// its text as written. An entry that is neither an id nor a host name is kept apart, as
/// written: the app refuses the list naming it together with the entries it finds no device
/// for. Entries past the most one bulk wipe may take ([`MAX_BULK_WIPE`]) are counted, not read
/// or kept: such a list is refused, and reading hundreds of thousands of entries first would
/// cost the controller memory for nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceList {
    pub listed: Vec<Listed>,
    pub malformed: Vec<String>,
    /// Non-blank entries beyond [`MAX_BULK_WIPE`].
    pub beyond: usize,
}

/// One entry of a [`DeviceList`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// As written (trimmed), for refusals.
    pub text: String,
    pub device: DeviceRef,
}

impl DeviceList {
    /// How many entries were named (blank ones are not).
    pub fn len(&self) -> usize {
        self.listed.len() + self.malformed.len() + self.beyond
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<S: AsRef<str>> FromIterator<S> for DeviceList {
    fn from_iter<I: IntoIterator<Item = S>>(entries: I) -> Self {
        let mut list = Self::default();
        for entry in entries {
            let text = entry.as_ref().trim();
            if text.is_empty() {
                continue;
            }
            if list.len() >= MAX_BULK_WIPE {
                list.beyond += 1;
                continue;
            }
            match text.parse::<DeviceRef>() {
                Ok(device) => list.listed.push(Listed {
                    text: text.to_owned(),
                    device,
                }),
                Err(_) => list.malformed.push(text.to_owned()),
            }
        }
        list
    }
}

/// An identity provider's SCIM client as an admin names it (the same rules as an admin's
/// name, which it shares a namespace of actors with).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimClientName(pub AdminName);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "SCIM client name {0:?} is not valid: use 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit (e.g. entra, okta)"
)]
pub struct ScimClientNameError(pub String);

impl FromStr for ScimClientName {
    type Err = ScimClientNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse()
            .map(Self)
            .map_err(|_| ScimClientNameError(s.chars().take(80).collect()))
    }
}

/// A webhook receiver's id: 16 lower-case hex digits as Ward makes them, or whatever a stored
/// row holds (printable ASCII, at most 128 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WebhookId(String);

impl WebhookId {
    pub fn generate() -> Self {
        Self(hex::encode(rand::random::<[u8; 8]>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WebhookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// No webhook has this id: text that is not an id names none either, so both are one refusal
/// (a not-found one).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("no webhook {0:?}: `wardctl webhook list` shows the ids")]
pub struct NoSuchWebhook(pub String);

impl FromStr for WebhookId {
    type Err = NoSuchWebhook;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Ward makes 16 lower-case hex digits, but a receiver's id is looked up as stored: one
        // planted in the database with any other id must still be removable by the id `webhook
        // list` shows. Only text that no stored id could usefully be is refused.
        is_key(s, |_| true)
            .then(|| Self(s.to_owned()))
            .ok_or_else(|| NoSuchWebhook(s.chars().take(100).collect()))
    }
}

/// A scope some calls take: everyone (the wire's empty text) or one user.
pub fn optional_user(text: &str) -> Result<Option<UserEmail>, super::model::UserEmailError> {
    if text.is_empty() {
        Ok(None)
    } else {
        text.parse().map(Some)
    }
}

#[cfg(test)]
#[path = "refs_tests.rs"]
mod tests;
