//! Domain records: users, devices, admins, certificates.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use uuid::Uuid;
use ward_certs::AdminName;

use super::Timestamp;

/// A user's e-mail address, lower-cased. Devices belong to users; offboarding is by user.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserEmail(String);

impl UserEmail {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a valid user e-mail address (expected name@domain, at most 254 characters)")]
pub struct UserEmailError(String);

impl FromStr for UserEmail {
    type Err = UserEmailError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || UserEmailError(s.chars().take(300).collect());
        let trimmed = s.trim();
        if trimmed.is_empty() || trimmed.len() > 254 {
            return Err(err());
        }
        let (local, domain) = trimmed.rsplit_once('@').ok_or_else(err)?;
        let domain_ok =
            !domain.is_empty() && domain.contains('.') && ward_certs::ca::is_dns_name(domain);
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local.chars().all(|c| {
                c.is_ascii_graphic() && !matches!(c, '@' | '"' | '\\' | ',' | ';' | '<' | '>')
            });
        if !(domain_ok && local_ok) {
            return Err(err());
        }
        Ok(Self(trimmed.to_ascii_lowercase()))
    }
}

impl fmt::Display for UserEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A device's identity: the UUID in its certificate's `ward://device/<uuid>` SAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub Uuid);

impl DeviceId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{0:?} is not a device id (expected a UUID such as 6f1c2d3e-…, as `wardctl device list` shows)"
)]
pub struct DeviceIdError(String);

impl FromStr for DeviceId {
    type Err = DeviceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| DeviceIdError(s.chars().take(100).collect()))
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// What the agent reports about its device. Every field is bounded and printable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceFacts {
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: String,
    pub arch: String,
    pub agent_version: String,
}

/// The longest value a device fact may have.
pub const MAX_FACT_LEN: usize = 256;

pub use ward_vocab::text::printable_within;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("device fact {field} is invalid: {why}")]
pub struct DeviceFactsError {
    pub field: &'static str,
    pub why: String,
}

impl DeviceFacts {
    /// Checks every field: at most [`MAX_FACT_LEN`] bytes, no control characters.
    pub fn validate(&self) -> Result<(), DeviceFactsError> {
        for (field, value) in [
            ("hostname", &self.hostname),
            ("os_name", &self.os_name),
            ("os_version", &self.os_version),
            ("kernel_version", &self.kernel_version),
            ("arch", &self.arch),
            ("agent_version", &self.agent_version),
        ] {
            printable_within(value, MAX_FACT_LEN).map_err(|why| DeviceFactsError { field, why })?;
        }
        Ok(())
    }

    /// "Debian GNU/Linux 12" style summary for tables.
    pub fn os_summary(&self) -> String {
        match (self.os_name.is_empty(), self.os_version.is_empty()) {
            (true, _) => String::new(),
            (false, true) => self.os_name.clone(),
            (false, false) => format!("{} {}", self.os_name, self.os_version),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceState {
    Active,
    /// Certificates refused; kept in the inventory for the record.
    Revoked,
    /// Discarded or reused: wiped with a verified receipt, agent state destroyed, revoked.
    Retired,
}

ward_vocab::names!(DeviceState, "device state" {
    Active => "active",
    Revoked => "revoked",
    Retired => "retired",
});

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub id: DeviceId,
    pub user: UserEmail,
    pub state: DeviceState,
    pub facts: DeviceFacts,
    pub enrolled_at: Timestamp,
    pub last_seen: Option<Timestamp>,
    pub certificate_serial: String,
    pub certificate_expires_at: Timestamp,
    pub public_key_der: Option<Vec<u8>>,
    /// The last compliance report, judged; `None` until the device sends one.
    pub compliance: Option<super::Compliance>,
    /// When the agent's offline timer wiped the messaging data, and whether its receipt
    /// verified.
    pub offline_wipe: Option<OfflineWipe>,
    /// The last inventory the agent reported.
    pub inventory: Option<super::Inventory>,
    /// Set while an admin has disabled the device.
    pub disabled: Option<super::Disabled>,
    /// The required checks that fail, and what they led to.
    pub enforcement: Vec<super::Enforcement>,
    /// A suspected clone: a second party renewed, or called with a replaced certificate.
    pub renewal_conflict: Option<super::keys::RenewalConflict>,
    /// The CAs (`sha256:<hex>`) the agent last reported trusting, sorted; empty until it
    /// reports them (an agent older than CA rotation never does).
    pub trusted_cas: Vec<String>,
}

/// What an offboarding decides by and shows of each device: no posture (a device's inventory
/// can be large, and a user may hold thousands of devices).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceBrief {
    pub id: DeviceId,
    pub hostname: String,
    pub state: DeviceState,
}

impl From<&Device> for DeviceBrief {
    fn from(device: &Device) -> Self {
        Self {
            id: device.id,
            hostname: device.facts.hostname.clone(),
            state: device.state,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineWipe {
    pub at: Timestamp,
    pub verified: bool,
}

/// What enrollment writes, atomically with the token's redemption.
#[derive(Clone, Debug)]
pub struct NewDevice {
    pub id: DeviceId,
    pub facts: DeviceFacts,
    /// DER SubjectPublicKeyInfo of the device key, to verify what the device signs.
    pub public_key_der: Vec<u8>,
    pub certificate: CertificateRecord,
}

/// The shortest lifetime of a certificate the controller issues (devices, admins).
pub const CERT_MIN_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest lifetime of a certificate the controller issues.
pub const CERT_MAX_LIFETIME: Duration = Duration::from_secs(2 * 365 * 24 * 3600);

/// A certificate the CA issued. Authorization requires the presented certificate's serial to
/// be recorded here for the same identity and not revoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRecord {
    pub serial: String,
    /// The identity URI, e.g. `ward://device/<uuid>`.
    pub subject: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub issued_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// The certificate (DER); `None` for one issued before Ward kept them.
    pub der: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminRole {
    Admin,
    Helpdesk,
    Offboarding,
}

ward_vocab::names!(AdminRole, "role" {
    Admin => "admin",
    Helpdesk => "helpdesk",
    Offboarding => "offboarding",
});

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    pub name: AdminName,
    pub role: AdminRole,
    pub created_at: Timestamp,
    /// The admin who issued it, or `init` for the first one.
    pub created_by: String,
    /// The second admin who approved its issuance (`serve --require-approval`).
    pub approved_by: Option<String>,
    /// Who asked for its current certificate when that was another admin (who renewed it,
    /// with a key made on their machine); `None` when it was its creator or the admin itself.
    pub certificate_by: Option<String>,
    /// The long-lived identity `init` makes for the offline safe.
    pub break_glass: bool,
    pub revoked: Option<super::admins::AdminRevocation>,
    /// When its newest certificate that is not revoked expires (`None`: it has none).
    pub expires_at: Option<Timestamp>,
    /// When that certificate became valid (`None`: it has none).
    pub not_before: Option<Timestamp>,
}

impl Admin {
    /// A new, active admin as its creator registers it.
    pub fn new(name: AdminName, role: AdminRole, created_at: Timestamp, created_by: &str) -> Self {
        Self {
            name,
            role,
            created_at,
            created_by: created_by.to_owned(),
            approved_by: None,
            certificate_by: None,
            break_glass: false,
            revoked: None,
            expires_at: None,
            not_before: None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.revoked.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_validated_and_lower_cased() {
        let e: UserEmail = " Alice@Hospital.ORG ".parse().unwrap();
        assert_eq!(e.as_str(), "alice@hospital.org");
        for bad in [
            "",
            "alice",
            "@h.org",
            "a@",
            "a@h",
            "a b@h.org",
            "a@h..org",
            "a\n@h.org",
        ] {
            assert!(bad.parse::<UserEmail>().is_err(), "{bad:?} accepted");
        }
        assert!(
            format!("{}@h.org", "a".repeat(300))
                .parse::<UserEmail>()
                .is_err()
        );
    }

    #[test]
    fn facts_with_control_characters_or_huge_values_are_refused() {
        let mut facts = DeviceFacts {
            hostname: "ok".into(),
            ..Default::default()
        };
        facts.validate().unwrap();
        facts.os_name = "x\u{1b}[2J".into();
        assert_eq!(facts.validate().unwrap_err().field, "os_name");
        facts.os_name = "y".repeat(MAX_FACT_LEN + 1);
        assert!(facts.validate().is_err());
    }
}
