//! Enrollment: one-time tokens created for a user, and a device enrolled with one (its
//! certificate issued for the key it made). Listing and withdrawing unused tokens is
//! `tokens.rs`.

use std::time::Duration;

use tracing::{info, warn};
use ward_certs::{Identity, IssuedCertificate, VerifiedCsr};

use super::{App, AppError, audit, certificate_record};
use crate::core::audit::AuditEvent;
use crate::core::token::{TOKEN_MAX_TTL, TOKEN_MIN_TTL};
use crate::core::{
    Admin, DeviceFacts, DeviceId, EnrollmentToken, NewDevice, TokenHash, TokenRecord, TokenStatus,
    UserEmail,
};
use crate::store::{Priority, Redemption, StoreError};

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

        // A first look gives a precise refusal before any signing work.
        let Some(record) = self.store.find_token(&hash).await? else {
            self.audit_enrollment_refusal(&hash, None, None, client)
                .await?;
            return Err(unknown_token());
        };
        if let Err(refused) = check_token_status(record.status(now)) {
            self.audit_enrollment_refusal(
                &hash,
                Some(&record.user),
                Some(record.status(now)),
                client,
            )
            .await?;
            return Err(refused);
        }

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
        let new_device = NewDevice {
            id: device_id,
            facts,
            public_key_der: csr.public_key_der().to_vec(),
            certificate: certificate_record(&certificate, &identity, now),
        };
        // The time of the claim itself: issuing took a moment, and a token that expired or was
        // withdrawn meanwhile must not be redeemed with the earlier time.
        match self.redeem(hash, &new_device).await? {
            Redemption::Enrolled { user } => {
                info!(device_id = %device_id, user = %user, token = ?hash, "device enrolled");
                self.metrics.enrollments.inc();
                Ok(Enrolled {
                    device_id,
                    user,
                    certificate,
                })
            }
            Redemption::Unknown => {
                self.audit_enrollment_refusal(&hash, None, None, client)
                    .await?;
                Err(unknown_token())
            }
            Redemption::Refused(status) => {
                warn!(token = ?hash, ?status, "enrollment refused");
                self.audit_enrollment_refusal(&hash, Some(&record.user), Some(status), client)
                    .await?;
                check_token_status(status)?;
                Err(AppError::FailedPrecondition(
                    "the enrollment token cannot be used".into(),
                ))
            }
        }
    }
}

impl App {
    /// Claims the token and records the device with its audit entry, in one job of the
    /// store's writer: they commit together or not at all. Nothing of an enrollment follows
    /// the commit on this replica, so a client hanging up once it has committed (its call
    /// run in its connection's task when the places of calls without a certificate are
    /// taken) leaves nothing undone.
    async fn redeem(&self, hash: TokenHash, device: &NewDevice) -> Result<Redemption, AppError> {
        let (device, now) = (device.clone(), self.now());
        let redemption = self
            .store
            .write(Priority::High, move |tx| {
                let device = device.clone();
                Box::pin(async move {
                    let Some(user) = tx.redeem_token(&hash, now, &device).await? else {
                        return Ok::<_, StoreError>(match tx.token(&hash).await? {
                            None => Redemption::Unknown,
                            Some(token) => Redemption::Refused(token.status(now)),
                        });
                    };
                    tx.audit(
                        AuditEvent {
                            actor: audit::ENROLLMENT.to_owned(),
                            action: "device.enroll".into(),
                            target: device.id.to_string(),
                            details: serde_json::json!({
                                "user": user.as_str(),
                                "token": hash.id(),
                                "certificate_serial": device.certificate.serial,
                            }),
                        },
                        now,
                    );
                    Ok(Redemption::Enrolled { user })
                })
            })
            .await?;
        Ok(redemption)
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
            "the enrollment token was withdrawn: its user was offboarded. Ask your IT admin for a new one if that was a mistake (wardctl token create)".into(),
        )),
    }
}
