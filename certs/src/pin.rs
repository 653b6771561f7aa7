//! The CA pin an agent is given at enrollment: `sha256:<hex>` of the CA certificate's DER.
//!
//! An operator can compute it independently with
//! `openssl x509 -in ca.pem -outform der | sha256sum`.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CaHash([u8; 32]);

impl CaHash {
    pub fn of_certificate(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    pub fn matches(&self, der: &[u8]) -> bool {
        *self == Self::of_certificate(der)
    }
}

impl fmt::Display for CaHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for CaHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "CA hash {0:?} is not valid: expected \"sha256:\" followed by 64 hex digits, as printed by `wardctl token create`"
)]
pub struct CaHashError(String);

impl FromStr for CaHash {
    type Err = CaHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CaHashError(s.to_owned());
        let hex_part = s.strip_prefix("sha256:").ok_or_else(err)?;
        let bytes = hex::decode(hex_part).map_err(|_| err())?;
        let array: [u8; 32] = bytes.try_into().map_err(|_| err())?;
        Ok(Self(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_prints() {
        let h = CaHash::of_certificate(b"abc");
        assert_eq!(h.to_string().parse::<CaHash>().unwrap(), h);
        assert!(h.matches(b"abc"));
        assert!(!h.matches(b"abd"));
    }

    #[test]
    fn refuses_malformed_hashes() {
        for bad in [
            "",
            "sha256:",
            "sha1:00",
            "sha256:zz",
            &format!("sha256:{}", "0".repeat(62)),
        ] {
            assert!(bad.parse::<CaHash>().is_err(), "{bad} accepted");
        }
    }
}
