//! Typed identities carried in a certificate's single `ward://` URI SAN.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

const SCHEME: &str = "ward://";

/// Who a certificate speaks for. The CN is never used for authorization; only this is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    Device(Uuid),
    Admin(AdminName),
    Controller(String),
}

impl Identity {
    /// The URI SAN for this identity, e.g. `ward://device/6f1c…`.
    pub fn to_uri(&self) -> String {
        match self {
            Identity::Device(id) => format!("{SCHEME}device/{id}"),
            Identity::Admin(name) => format!("{SCHEME}admin/{name}"),
            Identity::Controller(name) => format!("{SCHEME}controller/{name}"),
        }
    }

    /// What every admin's URI starts with (`ward://admin/`).
    pub fn admin_uri_prefix() -> String {
        format!("{SCHEME}admin/")
    }

    /// Parses a `ward://kind/name` URI. Anything else is refused.
    pub fn from_uri(uri: &str) -> Result<Self, IdentityError> {
        let rest = uri
            .strip_prefix(SCHEME)
            .ok_or_else(|| IdentityError::NotWard(uri.to_owned()))?;
        let (kind, name) = rest
            .split_once('/')
            .ok_or_else(|| IdentityError::Malformed(uri.to_owned()))?;
        match kind {
            "device" => {
                // Only the canonical hyphenated lower-case form, so one device has one URI.
                let id =
                    Uuid::parse_str(name).map_err(|_| IdentityError::Malformed(uri.to_owned()))?;
                if id.hyphenated().to_string() != name {
                    return Err(IdentityError::Malformed(uri.to_owned()));
                }
                Ok(Identity::Device(id))
            }
            "admin" => Ok(Identity::Admin(
                name.parse()
                    .map_err(|_| IdentityError::Malformed(uri.to_owned()))?,
            )),
            "controller" => {
                if name.is_empty() || !name.chars().all(is_host_char) {
                    return Err(IdentityError::Malformed(uri.to_owned()));
                }
                Ok(Identity::Controller(name.to_owned()))
            }
            _ => Err(IdentityError::UnknownKind(uri.to_owned())),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_')
}

/// An admin's name: 1–64 characters of `a-z 0-9 . _ -`, starting with a letter or digit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AdminName(String);

impl AdminName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AdminName {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdentityError::BadAdminName(s.to_owned()))
        }
    }
}

impl fmt::Display for AdminName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("URI {0:?} is not a ward:// identity")]
    NotWard(String),
    #[error("URI {0:?} is not a well-formed ward:// identity")]
    Malformed(String),
    #[error("URI {0:?} names an unknown kind of identity")]
    UnknownKind(String),
    #[error(
        "admin name {0:?} is not valid: use 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
    )]
    BadAdminName(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_uri_round_trips() {
        let id = Identity::Device(Uuid::new_v4());
        assert_eq!(Identity::from_uri(&id.to_uri()).unwrap(), id);
    }

    #[test]
    fn admin_uri_round_trips() {
        let id = Identity::Admin("alice.it".parse().unwrap());
        assert_eq!(id.to_uri(), "ward://admin/alice.it");
        assert_eq!(Identity::from_uri(&id.to_uri()).unwrap(), id);
    }

    #[test]
    fn non_canonical_or_foreign_uris_are_refused() {
        let upper = format!(
            "ward://device/{}",
            Uuid::new_v4().to_string().to_uppercase()
        );
        for bad in [
            "https://device/x",
            "ward://device/not-a-uuid",
            upper.as_str(),
            "ward://printer/x",
            "ward://admin/",
            "ward://admin/Alice",
            "ward://admin/a b",
            "ward://controller/",
            "ward://device",
        ] {
            assert!(Identity::from_uri(bad).is_err(), "{bad} was accepted");
        }
    }
}
