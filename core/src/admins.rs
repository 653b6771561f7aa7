//! Admin identities over their life: lifetimes, the break-glass identity, requests that wait
//! for a second admin, and revocation.

use std::time::Duration;

use ward_certs::AdminName;

use super::{AdminRole, Timestamp};

/// How long the open connections of an admin certificate a renewal replaced are kept (every
/// call on them is refused meanwhile): the renewing call's answer travels on one. After that
/// they are cut at the next refresh of the revocation list, as a revoked admin's are at once.
pub const RENEWED_CONNECTION_GRACE_MS: i64 = 60_000;

/// The break-glass identity `init` makes: an `admin` kept offline, encrypted, for the day no
/// other admin can act. Two years, the longest lifetime the controller issues, so it outlives
/// every everyday credential; renew it (`wardctl admin renew break-glass`) at each yearly
/// check of the safe.
pub const BREAK_GLASS_NAME: &str = "break-glass";
pub const BREAK_GLASS_LIFETIME: Duration = Duration::from_secs(730 * 24 * 3600);

/// How long a request for an admin identity may wait for its approval, and then be used.
pub const REQUEST_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Names that are actors in the audit log already (the controller itself, `init`, enrollment),
/// or that name something else waiting for a second admin (a forced CA rotation step), and so
/// cannot be given to an admin.
pub const RESERVED_NAMES: [&str; 5] = [
    "controller",
    "init",
    "enrollment-token",
    "system",
    CA_ROTATION_REQUEST,
];

/// The prefix of the name a forced CA rotation step waits under for a second admin: the
/// request is named [`ca_rotation_request_name`] of the CA the step concerns (`wardctl admin
/// approve ca-rotation-<12 hex>`), so an approval given for one CA serves no step on another.
/// Every name starting with it is reserved.
pub const CA_ROTATION_REQUEST: &str = "ca-rotation";

/// How many hex digits of the CA's hash a forced step's request name carries.
pub const CA_ROTATION_HASH_DIGITS: usize = 12;

/// The name of the request for a forced step on the CA `ca_hash` (`sha256:<hex>`, or bare hex):
/// `ca-rotation-` and the first [`CA_ROTATION_HASH_DIGITS`] hex digits of its hash.
pub fn ca_rotation_request_name(ca_hash: &str) -> Result<AdminName, String> {
    let hex = ca_hash.strip_prefix("sha256:").unwrap_or(ca_hash);
    let prefix = hex.get(..CA_ROTATION_HASH_DIGITS).unwrap_or_default();
    if prefix.len() != CA_ROTATION_HASH_DIGITS
        || !prefix
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    {
        return Err(format!("not a CA hash: {ca_hash:?}"));
    }
    format!("{CA_ROTATION_REQUEST}-{prefix}")
        .parse()
        .map_err(|e| format!("{e}"))
}

/// Whether `name` names a forced CA rotation step's request rather than an admin.
pub fn is_ca_rotation_request_name(name: &str) -> bool {
    name.starts_with(CA_ROTATION_REQUEST)
}

/// Whether `name` cannot be given to an admin: one of [`RESERVED_NAMES`], or a name starting
/// with [`CA_ROTATION_REQUEST`].
pub fn is_reserved_name(name: &str) -> bool {
    RESERVED_NAMES.contains(&name) || is_ca_rotation_request_name(name)
}

/// Why and by whom an admin identity was revoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminRevocation {
    pub at: Timestamp,
    pub by: String,
    pub reason: String,
}

/// What revoking an admin came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Revoked now, with the serials of the certificates revoked with it.
    Revoked(Vec<String>),
    NotFound,
    AlreadyRevoked(AdminRevocation),
    /// It is the last active identity with role `admin` (not revoked, with a valid
    /// certificate): nothing was changed.
    LastAdmin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// A new admin identity.
    Issue,
    /// A new certificate for another admin's identity, with a key the requester made.
    Renew,
    /// `wardctl ca rotate activate --force` leaving more active devices behind than the
    /// approval threshold (named [`ca_rotation_request_name`] of the CA to activate).
    CaActivate,
    /// `wardctl ca rotate retire --force` cutting off more valid certificates than the
    /// approval threshold (named [`ca_rotation_request_name`] of the CA to retire).
    CaRetire,
}

ward_vocab::names!(RequestKind, "admin request kind" {
    Issue => "issue",
    Renew => "renew",
    CaActivate => "ca-activate",
    CaRetire => "ca-retire",
});

impl RequestKind {
    /// Whether it asks for a forced CA rotation step rather than an admin identity.
    pub fn is_ca_rotation(self) -> bool {
        matches!(self, RequestKind::CaActivate | RequestKind::CaRetire)
    }
}

/// A request for an `admin`-role certificate that waits for a second admin's approval
/// (`serve --require-approval`). Once approved, the requester's next `issue`/`renew` of the
/// same name uses it, once, before it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminRequest {
    pub id: String,
    pub kind: RequestKind,
    pub name: AdminName,
    pub role: AdminRole,
    pub requested_by: String,
    pub requested_at: Timestamp,
    pub expires_at: Timestamp,
    pub approved_by: Option<String>,
    pub approved_at: Option<Timestamp>,
    pub used_at: Option<Timestamp>,
}

impl AdminRequest {
    pub fn new(
        kind: RequestKind,
        name: AdminName,
        role: AdminRole,
        requested_by: &str,
        now: Timestamp,
    ) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            kind,
            name,
            role,
            requested_by: requested_by.to_owned(),
            requested_at: now,
            expires_at: now.saturating_add(REQUEST_LIFETIME),
            approved_by: None,
            approved_at: None,
            used_at: None,
        }
    }

    /// Not used and not expired at `now`.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.used_at.is_none() && now < self.expires_at
    }

    /// Whether it stands for the same thing as a new request would.
    pub fn asks_for(&self, kind: RequestKind, role: AdminRole, requested_by: &str) -> bool {
        self.kind == kind && self.role == role && self.requested_by == requested_by
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forced_steps_request_is_named_after_its_ca_and_the_prefix_is_reserved() {
        let hash = format!("sha256:{}", "0123456789ab".repeat(5) + "cdef");
        let name = ca_rotation_request_name(&hash).unwrap();
        assert_eq!(name.as_str(), "ca-rotation-0123456789ab");
        assert!(is_reserved_name(name.as_str()));
        assert!(is_reserved_name("ca-rotation"));
        assert!(is_reserved_name("controller"));
        assert!(!is_reserved_name("alice"));
        assert!(ca_rotation_request_name("sha256:12").is_err());
        assert!(ca_rotation_request_name("").is_err());
    }
}
