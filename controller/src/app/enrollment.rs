//! Enrollment: one-time tokens created for a user, and a device enrolled with one (its
//! certificate issued for the key it made). Listing and withdrawing unused tokens is
//! `tokens.rs`.

use std::sync::Arc;
use std::time::Duration;

use tracing::info;
use ward_certs::{Identity, IssuedCertificate, VerifiedCsr};

use super::audit::EnrollmentRefused;
use super::enrollment_batch::Claim;
use super::{App, AppError, audit, certificate_record};
use crate::core::token::{TOKEN_MAX_TTL, TOKEN_MIN_TTL};
use crate::core::{
    Admin, DeviceFacts, DeviceId, EnrollmentToken, NewDevice, TokenRecord, TokenStatus, UserEmail,
};

/// The result of a successful enrollment.
#[derive(Debug)]
pub struct Enrolled {
    pub device_id: DeviceId,
    pub user: UserEmail,
    pub certificate: IssuedCertificate,
}

/// A newly created token: the secret (shown once) and its stored record.
#[derive(Debug)]
pub struct CreatedToken {
    pub token: EnrollmentToken,
    pub record: TokenRecord,
}

impl App {
    pub async fn create_token(
        &self,
        actor: &Admin,
        user: UserEmail,
        ttl: Option<Duration>,
    ) -> Result<CreatedToken, AppError> {
        let ttl = ttl.unwrap_or(self.config.token_default_ttl);
        if !(TOKEN_MIN_TTL..=TOKEN_MAX_TTL).contains(&ttl) {
            return Err(AppError::InvalidArgument(format!(
                "token lifetime {} is out of range: use {} to {}",
                crate::core::duration::format(ttl),
                crate::core::duration::format(TOKEN_MIN_TTL),
                crate::core::duration::format(TOKEN_MAX_TTL)
            )));
        }
        // The identity provider deprovisioned them (SCIM): no new device until it reactivates
        // them. The only thing reactivation lifts; wipes already done stay done.
        if let Some(entry) = self.store.find_directory_user(&user).await?
            && !entry.active
        {
            return Err(AppError::FailedPrecondition(format!(
                "{user} was deactivated by the identity provider ({}, {}): no device can be enrolled for them until it reactivates them there",
                entry.updated_by,
                entry.deactivated_at.unwrap_or(entry.updated_at).rfc3339()
            )));
        }
        let now = self.now();
        let token = EnrollmentToken::generate();
        let record = TokenRecord {
            hash: token.hash(),
            user,
            created_at: now,
            expires_at: now.saturating_add(ttl),
            created_by: actor.name.to_string(),
            used_at: None,
            device_id: None,
            withdrawn_at: None,
        };
        self.store.insert_token(&record).await?;
        self.audit(
            &audit::admin_actor(actor),
            "token.create",
            record.user.as_str(),
            serde_json::json!({ "expires_at": record.expires_at.rfc3339(), "token": record.hash.id() }),
        )
        .await?;
        info!(user = %record.user, created_by = %actor.name, token = ?record.hash, expires_at = %record.expires_at, "enrollment token created");
        Ok(CreatedToken { token, record })
    }

    /// Enrolls a device with a one-time token. A refused token (unknown, used, expired or
    /// withdrawn) is audited with a prefix of its hash, never the token, and the client's
    /// address (bounded per address and minute): a reused token is a sign of a leak.
    ///
    /// The token is first looked at where it is claimed, in the redemption's writer job: the
    /// certificate is issued first, and a refused token's is dropped; why it was refused is
    /// read after the job, through the read pool. A first look before issuing would spare
    /// that signature to a caller with a bad token, at the cost of a read (on PostgreSQL two
    /// round trips) for every enrollment; the caller has already made this controller
    /// complete a TLS handshake and check its CSR's signature, which cost more, and its
    /// address is held to the enrollment rate limit.
    pub async fn enroll(
        &self,
        token: EnrollmentToken,
        csr: VerifiedCsr,
        facts: DeviceFacts,
        client: Option<std::net::IpAddr>,
    ) -> Result<Enrolled, AppError> {
        if let Some(why) = self.cas.out_of_step() {
            return Err(AppError::Unavailable(why));
        }
        facts
            .validate()
            .map_err(|e| AppError::InvalidArgument(e.to_string()))?;
        let hash = token.hash();
        let now = self.now();
        let device_id = DeviceId::new_random();
        let identity = Identity::Device(device_id.0);
        let certificate = self
            .ca()
            .issue_client(
                &csr,
                &identity,
                now.to_datetime(),
                self.config.device_cert_lifetime,
            )
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let device = NewDevice {
            id: device_id,
            facts,
            public_key_der: csr.public_key_der().to_vec(),
            certificate: certificate_record(&certificate, &identity, now),
        };
        // The time of the claim itself: issuing took a moment, and a token that expired or was
        // withdrawn meanwhile must not be redeemed with the earlier time.
        let claim = Claim {
            hash,
            device,
            now: self.now(),
        };
        let claimed_at = claim.now;
        if let Some(user) = self.redemptions.run(Arc::new(claim)).await? {
            info!(device_id = %device_id, user = %user, token = ?hash, "device enrolled");
            self.metrics.enrollments.inc();
            return Ok(Enrolled {
                device_id,
                user,
                certificate,
            });
        }
        // Refused: the token as it stands says why, for the answer and the audit entry. A
        // token that cannot be read still leaves the refusal in the audit log (a refused
        // token may be a leaked one), reason unknown.
        let record = match self.store.find_token(&hash).await {
            Ok(record) => record,
            Err(e) => {
                self.audit_enrollment_refusal(&hash, None, EnrollmentRefused::TokenUnread, client)
                    .await?;
                return Err(e.into());
            }
        };
        let Some(record) = record else {
            self.audit_enrollment_refusal(&hash, None, EnrollmentRefused::UnknownToken, client)
                .await?;
            return Err(unknown_token());
        };
        let status = record.status(claimed_at);
        self.audit_enrollment_refusal(
            &hash,
            Some(&record.user),
            EnrollmentRefused::Token(status),
            client,
        )
        .await?;
        check_token_status(status)?;
        // Usable by its times, yet not claimed: another enrollment took it after the claim's
        // statement ran (on another replica).
        Err(AppError::FailedPrecondition(
            "the enrollment token cannot be used".into(),
        ))
    }
}

fn unknown_token() -> AppError {
    AppError::FailedPrecondition(
        "the enrollment token is not known to this controller: check it was copied whole, or ask your IT admin for a new one (wardctl token create)".into(),
    )
}

fn check_token_status(status: TokenStatus) -> Result<(), AppError> {
    match status {
        TokenStatus::Usable => Ok(()),
        TokenStatus::AlreadyUsed => Err(AppError::FailedPrecondition(
            "the enrollment token was already used; a token enrolls one device only. Ask your IT admin for a new one (wardctl token create)".into(),
        )),
        TokenStatus::Expired => Err(AppError::FailedPrecondition(
            "the enrollment token has expired; ask your IT admin for a new one (wardctl token create)".into(),
        )),
        TokenStatus::Withdrawn => Err(AppError::FailedPrecondition(
            "the enrollment token was withdrawn: its user was offboarded, or an admin withdrew it (wardctl token revoke). Ask your IT admin for a new one if that was a mistake (wardctl token create)".into(),
        )),
    }
}
