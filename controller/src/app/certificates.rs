//! The certificates this controller issues (devices at enrollment and renewal, admins): the
//! lifetimes one may be given, and the record the store keeps of one.

use std::time::Duration;

use ward_certs::{Identity, IssuedCertificate};

use super::AppError;
use crate::core::model::{CERT_MAX_LIFETIME, CERT_MIN_LIFETIME};
use crate::core::{CertificateRecord, Timestamp};

/// The store's record of `certificate`, issued to `identity` at `issued_at`.
pub fn certificate_record(
    certificate: &IssuedCertificate,
    identity: &Identity,
    issued_at: Timestamp,
) -> CertificateRecord {
    CertificateRecord {
        serial: certificate.serial.clone(),
        subject: identity.to_uri(),
        not_before: Timestamp::from_datetime(certificate.not_before),
        not_after: Timestamp::from_datetime(certificate.not_after),
        issued_at,
        revoked_at: None,
        der: Some(certificate.der.clone()),
    }
}

/// Refuses a certificate lifetime outside [`CERT_MIN_LIFETIME`]..=[`CERT_MAX_LIFETIME`].
pub fn check_cert_lifetime(lifetime: Duration) -> Result<(), AppError> {
    if (CERT_MIN_LIFETIME..=CERT_MAX_LIFETIME).contains(&lifetime) {
        Ok(())
    } else {
        Err(AppError::InvalidArgument(format!(
            "certificate lifetime {} is out of range: use {} to {}",
            crate::core::duration::format(lifetime),
            crate::core::duration::format(CERT_MIN_LIFETIME),
            crate::core::duration::format(CERT_MAX_LIFETIME)
        )))
    }
}
