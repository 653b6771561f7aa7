//! Enrollment tokens: ≥128 random bits (we use 256), shown once, stored only as a hash.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{DeviceId, Timestamp, UserEmail};

const PREFIX: &str = "ward_";
const RANDOM_BYTES: usize = 32;
const ENCODED_LEN: usize = 43; // base64url of 32 bytes, no padding

/// How long an enrollment token is valid when its creator does not say.
pub const TOKEN_DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);
/// The shortest validity a token may be given.
pub const TOKEN_MIN_TTL: Duration = Duration::from_secs(60);
/// The longest validity a token may be given.
pub const TOKEN_MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The secret itself. Never `Debug`-printed, never logged; zeroized on drop.
pub struct EnrollmentToken(Zeroizing<String>);

impl EnrollmentToken {
    pub fn generate() -> Self {
        let bytes: Zeroizing<[u8; RANDOM_BYTES]> = Zeroizing::new(rand::random());
        Self(Zeroizing::new(format!(
            "{PREFIX}{}",
            URL_SAFE_NO_PAD.encode(bytes.as_ref())
        )))
    }

    /// The text to show the admin, once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for EnrollmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnrollmentToken(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the enrollment token is malformed: expected the \"ward_…\" text printed by `wardctl token create`"
)]
pub struct MalformedToken;

impl FromStr for EnrollmentToken {
    type Err = MalformedToken;

    /// Checks the shape only; whether it exists is the store's question.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s.trim().strip_prefix(PREFIX).ok_or(MalformedToken)?;
        if body.len() != ENCODED_LEN {
            return Err(MalformedToken);
        }
        let decoded = Zeroizing::new(URL_SAFE_NO_PAD.decode(body).map_err(|_| MalformedToken)?);
        if decoded.len() != RANDOM_BYTES {
            return Err(MalformedToken);
        }
        Ok(Self(Zeroizing::new(s.trim().to_owned())))
    }
}

/// SHA-256 of the token text: what the store keeps. A plain hash suffices because the token
/// has 256 bits of entropy; there is nothing to brute-force.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// The token's id for admins (`token list`, `token revoke`): the first 16 hex digits of
    /// the hash. Not a secret, and no help in guessing the token.
    pub fn id(self) -> String {
        hex::encode(&self.0[..TOKEN_ID_LEN / 2])
    }
}

/// Hex digits in a token id.
pub const TOKEN_ID_LEN: usize = 16;

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to correlate log lines; the hash is not a secret but need not be.
        write!(f, "TokenHash({}…)", &self.to_hex()[..12])
    }
}

/// A stored token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub hash: TokenHash,
    pub user: UserEmail,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub created_by: String,
    pub used_at: Option<Timestamp>,
    pub device_id: Option<DeviceId>,
    /// When offboarding its user withdrew it: refused from then on, whatever the clock of
    /// an enrollment already under way says.
    pub withdrawn_at: Option<Timestamp>,
}

/// Why a token can or cannot be redeemed now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenStatus {
    Usable,
    AlreadyUsed,
    Expired,
    /// Its user was offboarded.
    Withdrawn,
}

impl TokenRecord {
    pub fn status(&self, now: Timestamp) -> TokenStatus {
        if self.used_at.is_some() {
            TokenStatus::AlreadyUsed
        } else if self.withdrawn_at.is_some() {
            TokenStatus::Withdrawn
        } else if now >= self.expires_at {
            TokenStatus::Expired
        } else {
            TokenStatus::Usable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_hash_stably() {
        let t = EnrollmentToken::generate();
        assert!(t.expose().starts_with(PREFIX));
        let parsed: EnrollmentToken = t.expose().parse().unwrap();
        assert_eq!(parsed.hash(), t.hash());
        assert_ne!(EnrollmentToken::generate().hash(), t.hash());
        assert_eq!(format!("{t:?}"), "EnrollmentToken(<redacted>)");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = EnrollmentToken::generate();
        let too_short = &good.expose()[..good.expose().len() - 1];
        for bad in [
            "",
            "ward_",
            "token",
            too_short,
            &format!("{}A", good.expose()),
            "ward_!!!",
        ] {
            assert!(bad.parse::<EnrollmentToken>().is_err(), "{bad:?} accepted");
        }
    }
}
