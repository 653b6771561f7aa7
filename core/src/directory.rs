//! The identity provider's view of users (SCIM provisioning): who it has told Ward about,
//! whether they are active, and the bearer tokens its connections use. Ward's own record of a
//! user is still their devices and enrollment tokens; a directory user adds the provider's
//! word on whether the person is still employed. SCIM's wire format lives in the controller
//! (`ward_edge::scim`).

use std::fmt;

use sha2::{Digest, Sha256};
use uuid::Uuid;
use ward_certs::AdminName;
use zeroize::Zeroizing;

use super::{Timestamp, UserEmail};

/// A provisioning client's bearer token. Never `Debug`-printed, never logged.
pub struct ScimSecret(Zeroizing<String>);

const PREFIX: &str = "wardscim_";

impl ScimSecret {
    pub fn generate() -> Self {
        use base64::Engine;
        let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
        Self(Zeroizing::new(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref())
        )))
    }

    /// The bearer token a request presented, trimmed and taken as is (whether it is known is
    /// the store's question); `None` when blank, as no token.
    pub fn presented(text: &str) -> Option<Self> {
        let text = text.trim();
        (!text.is_empty()).then(|| Self(Zeroizing::new(text.to_owned())))
    }

    /// The text to show the admin, once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256, hex: what the store keeps. The token has 256 random bits, so a plain hash
    /// leaves nothing to brute-force.
    pub fn hash_hex(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for ScimSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScimSecret(<redacted>)")
    }
}

/// A provisioning client (one identity-provider connection) as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimClient {
    /// Named like an admin (a-z, 0-9, '.', '_', '-'): `entra`, `okta`.
    pub name: AdminName,
    pub token_hash: String,
    pub created_at: Timestamp,
    pub created_by: String,
    pub revoked_at: Option<Timestamp>,
    pub revoked_by: Option<String>,
}

impl ScimClient {
    /// Its audit actor: `ward://scim/<name>`.
    pub fn actor(&self) -> String {
        scim_actor(&self.name)
    }
}

pub fn scim_actor(name: &AdminName) -> String {
    format!("ward://scim/{name}")
}

/// A user provisioned by an identity provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryUser {
    /// The SCIM `id` Ward assigned.
    pub id: Uuid,
    /// SCIM `userName`, as the provider sent it (unique without regard to case).
    pub user_name: String,
    /// The Ward user it names (devices are enrolled for this address): `userName` when it
    /// is an e-mail address, else the user's primary e-mail.
    pub user: UserEmail,
    pub external_id: Option<String>,
    /// False once the provider deactivated (or deleted) the user: offboarded, and no new
    /// enrollment token may be made for them until the provider reactivates them.
    pub active: bool,
    /// The other SCIM attributes, as a JSON object (kept, not interpreted).
    pub attributes: String,
    pub created_at: Timestamp,
    pub created_by: String,
    pub updated_at: Timestamp,
    pub updated_by: String,
    pub deactivated_at: Option<Timestamp>,
    /// When the provider sent DELETE: the record stays, deactivated, and is no longer
    /// served as a SCIM resource (a GET answers 404, as the RFC asks).
    pub deleted_at: Option<Timestamp>,
}

impl DirectoryUser {
    /// The state `user list` shows.
    pub fn state(&self) -> &'static str {
        match (self.active, self.deleted_at.is_some()) {
            (true, _) => "active",
            (false, false) => "deactivated",
            (false, true) => "deleted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ScimSecret;

    #[test]
    fn a_presented_token_is_trimmed_a_blank_one_is_none_and_none_is_printed() {
        let token = ScimSecret::presented(" wardscim_abc \t").unwrap();
        assert_eq!(token.expose(), "wardscim_abc");
        assert_eq!(format!("{token:?}"), "ScimSecret(<redacted>)");
        assert!(ScimSecret::presented(" \t").is_none());
        assert!(ScimSecret::presented("").is_none());
    }
}
