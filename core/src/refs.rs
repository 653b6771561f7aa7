//! What a request names, typed: the edge parses the wire's text into these once the caller is
//! authenticated, and the app takes only these. Each parse error says what was wrong and what
//! is accepted.

use std::fmt;
use std::str::FromStr;

use super::model::DeviceIdError;
use ward_certs::AdminName;

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
pub fn looks_like_host_name(text: &str) -> bool {
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

/// A bulk wipe as it reported itself: `<admin>:<key>`, the admin who issued it and the
/// idempotency key they gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkWipeName {
    pub admin: AdminName,
    pub key: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BulkWipeNameError {
    #[error("{0:?} is not a bulk wipe: it is named <admin>:<key>, as the wipe reported")]
    NoColon(String),
    #[error("bulk wipe {name:?}: {why}")]
    Admin { name: String, why: String },
    #[error(
        "a bulk wipe's idempotency key must be 1-128 printable ASCII characters without spaces or ':'"
    )]
    Key,
}

/// A bulk wipe's idempotency key: like a command's, without ':' (it separates the admin from
/// the key, and one batch's prefix must not be the start of another's).
pub fn is_bulk_wipe_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 128 && key.chars().all(|c| c.is_ascii_graphic() && c != ':')
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
        if !is_bulk_wipe_key(key) {
            return Err(BulkWipeNameError::Key);
        }
        Ok(Self {
            admin,
            key: key.to_owned(),
        })
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

/// A scope some calls take: everyone (the wire's empty text) or one user.
pub fn optional_user(text: &str) -> Result<Option<UserEmail>, super::model::UserEmailError> {
    if text.is_empty() {
        Ok(None)
    } else {
        text.parse().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_named_by_id_or_host_name_and_nothing_else() {
        let id = "6f1c2d3e-0000-4000-8000-000000000001";
        assert_eq!(
            id.parse::<DeviceRef>().unwrap(),
            DeviceRef::Id(id.parse().unwrap())
        );
        let DeviceRef::HostName(name) = " Laptop-7.ward_test ".parse::<DeviceRef>().unwrap() else {
            panic!("a host name")
        };
        assert_eq!(name.as_str(), "Laptop-7.ward_test");
        assert!(name.not_an_id().contains("is not a device id"));
        let err = "not a device!".parse::<DeviceRef>().unwrap_err();
        assert!(err.to_string().contains("is not a device id"), "{err}");
        assert!("".parse::<DeviceRef>().is_err());
        assert!("a".repeat(254).parse::<DeviceRef>().is_err());
    }

    #[test]
    fn a_token_id_is_its_short_form_or_the_whole_hash() {
        let short = "0123456789ABCDEF".repeat(4)[..TOKEN_ID_LEN].to_owned();
        assert_eq!(
            short.parse::<TokenId>().unwrap().as_str(),
            short.to_ascii_lowercase()
        );
        let whole = format!("{short}{}", "0".repeat(64 - TOKEN_ID_LEN));
        assert_eq!(
            whole.parse::<TokenId>().unwrap().as_str(),
            short.to_ascii_lowercase()
        );
        let pasted = "ward_secretsecretsecret".parse::<TokenId>().unwrap_err();
        assert!(!pasted.to_string().contains("secret"), "{pasted}");
    }

    #[test]
    fn a_bulk_wipe_is_named_admin_colon_key() {
        let name: BulkWipeName = "root:offboard-2026".parse().unwrap();
        assert_eq!(
            (name.admin.as_str(), name.key.as_str()),
            ("root", "offboard-2026")
        );
        assert!(matches!(
            "root".parse::<BulkWipeName>(),
            Err(BulkWipeNameError::NoColon(_))
        ));
        assert!(matches!(
            "Not Root:k".parse::<BulkWipeName>(),
            Err(BulkWipeNameError::Admin { .. })
        ));
        assert_eq!(
            "root:a:b".parse::<BulkWipeName>(),
            Err(BulkWipeNameError::Key)
        );
        assert_eq!("root:".parse::<BulkWipeName>(), Err(BulkWipeNameError::Key));
    }

    #[test]
    fn an_empty_user_is_everyone() {
        assert_eq!(optional_user("").unwrap(), None);
        assert_eq!(
            optional_user("Ivy@Hospital.org").unwrap().unwrap().as_str(),
            "ivy@hospital.org"
        );
        assert!(optional_user("ivy").is_err());
    }
}
