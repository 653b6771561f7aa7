//! Recording to and reading from the audit log.

use serde_json::Value;
use tracing::error;
use ward_certs::Identity;

use super::{App, AppError};
use crate::core::audit::{AuditEntry, AuditEvent, AuditHead, Verification, head_message, verify};
use crate::core::{Admin, DeviceId};
use crate::store::AuditFilter;

/// The actor string of an admin.
pub fn admin_actor(admin: &Admin) -> String {
    Identity::Admin(admin.name.clone()).to_uri()
}

/// The actor string of a device.
pub fn device_actor(device: DeviceId) -> String {
    Identity::Device(device.0).to_uri()
}

pub const CONTROLLER: &str = "controller";

impl App {
    /// Appends an entry. A failure is an error for the caller: an action that cannot be
    /// audited must not look like it went through unrecorded.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        details: Value,
    ) -> Result<(), AppError> {
        let event = AuditEvent {
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            details,
        };
        let ca = self.ca.clone();
        let sign =
            move |message: &[u8]| ward_certs::sign::sign(ca.key(), message).unwrap_or_default();
        let spki = self.ca.public_key_der();
        let verify_head = move |message: &[u8], signature: &[u8]| {
            ward_certs::sign::verify(&spki, message, signature).is_ok()
        };
        match self
            .store
            .append_audit(&event, self.now(), &sign, &verify_head)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                error!(error = %e, action, target, "cannot write the audit log");
                Err(AppError::Internal(format!(
                    "the action could not be recorded in the audit log: {e}"
                )))
            }
        }
    }

    pub async fn audit_list(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, AppError> {
        Ok(self.store.list_audit(filter).await?)
    }

    /// Checks the whole chain and the signed head.
    pub async fn audit_verify(&self) -> Result<Verification, AppError> {
        let entries = self.store.list_audit(&AuditFilter::default()).await?;
        let head = self.store.audit_head().await?;
        let spki = self.ca.public_key_der();
        let head_valid = |head: &AuditHead| {
            ward_certs::sign::verify(&spki, &head_message(head.seq, &head.hash), &head.signature)
                .is_ok()
        };
        Ok(verify(&entries, &head, head_valid))
    }
}
