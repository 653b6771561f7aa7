//! Keeping the listener's certificate valid: the start check, the periodic check, and the
//! audit entry for every certificate the controller issues itself.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tracing::{error, info};

use super::{App, AppError};
use crate::server_cert::{Reissued, ServerCertificate, Why, start_decision};

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
            let reissued = cert
                .reissue(&names, self.now())
                .map_err(|e| AppError::Internal(e.to_string()))?;
            self.audit_reissue(why, &reissued).await?;
        }
        let app = Arc::clone(self);
        tokio::spawn(async move {
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

    /// Renews the listener's certificate when it is two thirds into its lifetime; true when
    /// it did.
    pub async fn renew_server_certificate_if_due(&self) -> Result<bool, AppError> {
        let Some(cert) = self.server_cert.get() else {
            return Ok(false);
        };
        let now = self.now();
        if !cert.renewal_due(now) {
            return Ok(false);
        }
        let reissued = cert
            .reissue(&cert.hostnames(), now)
            .map_err(|e| AppError::Internal(e.to_string()))?;
        self.audit_reissue(Why::Renewal, &reissued).await?;
        info!(serial = %reissued.serial, not_after = %reissued.not_after, "server certificate renewed");
        Ok(true)
    }

    async fn audit_reissue(&self, why: Why, reissued: &Reissued) -> Result<(), AppError> {
        self.audit(
            super::audit::CONTROLLER,
            "server_certificate.issue",
            reissued.hostnames.first().map_or("", String::as_str),
            json!({
                "why": why.as_str(),
                "serial": reissued.serial,
                "not_after": reissued.not_after.rfc3339(),
                "hostnames": reissued.hostnames,
                "written_to_data_dir": reissued.persisted,
            }),
        )
        .await
    }
}
