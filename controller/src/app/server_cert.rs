//! Keeping the listener's certificate valid: the start check, the periodic check, and the
//! audit entry for every certificate the controller issues itself.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tracing::{error, info};

use super::{App, AppError};
use crate::server_cert::{ServerCertificate, Why, start_decision};

/// How often a running controller checks its server certificate by default. The renewal
/// point is months before expiry, so the check only needs to be frequent enough to notice
/// a clock that jumped.
pub const SERVER_CERT_CHECK_DEFAULT: Duration = Duration::from_secs(10 * 60);

impl App {
    /// The listener's certificate, once [`App::manage_server_certificate`] was called.
    pub fn server_certificate(&self) -> Option<&Arc<ServerCertificate>> {
        self.server_cert.get()
    }

    /// Takes charge of the listener's certificate: re-issues it now when `hostnames` (the
    /// operator's, when given) differ from the ones it covers or when it is due for renewal
    /// (`repaired`: it was just replaced because its key did not match), then checks it
    /// every `check_every` and renews it two thirds into its lifetime. Each certificate
    /// issued is audited. Call after [`App::open_audit`].
    pub async fn manage_server_certificate(
        self: &Arc<Self>,
        cert: Arc<ServerCertificate>,
        hostnames: Option<Vec<String>>,
        repaired: bool,
        check_every: Duration,
    ) -> Result<(), AppError> {
        if self.server_cert.set(cert.clone()).is_err() {
            return Err(AppError::Internal(
                "the server certificate is already managed".into(),
            ));
        }
        if repaired {
            let validity = cert.validity();
            self.audit(
                super::audit::CONTROLLER,
                "server_certificate.issue",
                &cert.hostnames().first().cloned().unwrap_or_default(),
                json!({
                    "why": Why::Repair.as_str(),
                    "serial": ward_certs::tls::serial_of(&cert.leaf()),
                    "not_after": validity.map(|v| crate::core::Timestamp::from_datetime(v.not_after).rfc3339()),
                    "hostnames": cert.hostnames(),
                }),
            )
            .await?;
        }
        if let Some((why, names)) = start_decision(&cert, hostnames.as_deref(), self.now()) {
            self.reissue(&cert, why, &names).await?;
        }
        let app = Arc::clone(self);
        self.background.spawn(async move {
            let mut tick = tokio::time::interval(check_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = app.renew_server_certificate_if_due().await {
                    error!(error = %e, "cannot renew the server certificate; retrying at the next check");
                }
            }
        });
        Ok(())
    }

    /// Renews the listener's certificate when it is two thirds into its lifetime, or issues
    /// it again when another CA signs since a rotation; true when it did.
    pub async fn renew_server_certificate_if_due(&self) -> Result<bool, AppError> {
        let Some(cert) = self.server_cert.get() else {
            return Ok(false);
        };
        let why = if !cert.issued_by_signing_ca() {
            Why::CaRotation
        } else if cert.renewal_due(self.now()) {
            Why::Renewal
        } else {
            return Ok(false);
        };
        self.reissue(cert, why, &cert.hostnames()).await?;
        Ok(true)
    }

    /// Issues a certificate for `names`, audits it, and only then presents it: if the audit
    /// entry cannot be written, the current certificate stays in use (renewal comes months
    /// before expiry, and the next check tries again).
    async fn reissue(
        &self,
        cert: &ServerCertificate,
        why: Why,
        names: &[String],
    ) -> Result<(), AppError> {
        let issued = cert
            .issue(names, self.now())
            .map_err(|e| AppError::Internal(e.to_string()))?;
        self.audit(
            super::audit::CONTROLLER,
            "server_certificate.issue",
            issued.hostnames.first().map_or("", String::as_str),
            json!({
                "why": why.as_str(),
                "serial": issued.serial,
                "not_after": issued.not_after.rfc3339(),
                "hostnames": issued.hostnames,
            }),
        )
        .await?;
        let (serial, not_after) = (issued.serial.clone(), issued.not_after);
        cert.install(issued)
            .map_err(|e| AppError::Internal(e.to_string()))?;
        info!(serial = %serial, not_after = %not_after, why = why.as_str(), "server certificate issued and presented");
        Ok(())
    }
}
