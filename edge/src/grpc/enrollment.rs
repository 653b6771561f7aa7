//! `EnrollmentService`: no client certificate; the one-time token authorizes.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use ward_certs::receipt::SignedReceipt;
use ward_proto::v1::{
    self, EnrollRequest, EnrollResponse, ReportOfflineWipeRequest, ReportOfflineWipeResponse,
};

use super::convert::{facts_from_wire, status};
use super::request::{csr, parse};
use ward_controller::app::App;
use ward_core::DeviceId;

/// Per-client-address limit on enrollment attempts: tokens cannot be guessed (256 bits), but
/// a flood of attempts would still cost CPU and fill logs.
type Limiter = governor::DefaultKeyedRateLimiter<std::net::IpAddr>;

pub(super) struct EnrollmentApi {
    app: Arc<App>,
    limiter: Limiter,
}

impl EnrollmentApi {
    pub(super) fn new(app: Arc<App>) -> Self {
        let config = app.config();
        let per_minute = std::num::NonZeroU32::new(config.enroll_per_minute.max(1))
            .unwrap_or(std::num::NonZeroU32::MIN);
        let burst = std::num::NonZeroU32::new(config.enroll_burst.max(1))
            .unwrap_or(std::num::NonZeroU32::MIN);
        let limiter = governor::RateLimiter::keyed(
            governor::Quota::per_minute(per_minute).allow_burst(burst),
        );
        Self { app, limiter }
    }
}

impl EnrollmentApi {
    /// Calls without a client certificate share one per-address budget.
    fn limit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if let Some(ip) = request.remote_addr().map(|a| a.ip()) {
            if self.limiter.check_key(&ip).is_err() {
                tracing::warn!(client = %ip, "enrollment rate limit reached");
                return Err(Status::resource_exhausted(
                    "too many enrollment attempts from this address; wait a minute and try again",
                ));
            }
            // Forget addresses that have been quiet, so the table stays small.
            if self.limiter.len() > 100_000 {
                self.limiter.retain_recent();
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl v1::enrollment_service_server::EnrollmentService for EnrollmentApi {
    async fn report_offline_wipe(
        &self,
        request: Request<ReportOfflineWipeRequest>,
    ) -> Result<Response<ReportOfflineWipeResponse>, Status> {
        self.limit(&request)?;
        let req = request.into_inner();
        let device = req.device_id.parse::<DeviceId>().map_err(|_| {
            Status::invalid_argument(format!(
                "device id {:?} is not a device id (a UUID)",
                req.device_id.chars().take(64).collect::<String>()
            ))
        })?;
        let receipt = req
            .receipt
            .ok_or_else(|| Status::invalid_argument("the request carries no receipt"))?;
        let signed = SignedReceipt {
            body: receipt.body,
            signature: receipt.signature,
        };
        self.app
            .record_offline_wipe_receipt_only(device, &signed)
            .await
            .map_err(status)?;
        Ok(Response::new(ReportOfflineWipeResponse {}))
    }

    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        self.limit(&request)?;
        let client = request.remote_addr().map(|a| a.ip());
        let req = request.into_inner();
        let token = parse(&req.token).map_err(status)?;
        let csr = csr(&req.csr_der).map_err(status)?;
        let enrolled = self
            .app
            .enroll(token, csr, facts_from_wire(req.facts), client)
            .await
            .map_err(status)?;
        Ok(Response::new(EnrollResponse {
            device_id: enrolled.device_id.to_string(),
            user: enrolled.user.to_string(),
            certificate_der: enrolled.certificate.der,
            ca_certificates_der: self.app.cas().trusted_ders(),
            config: Some(agent_config(&self.app)),
        }))
    }
}

pub(super) fn agent_config(app: &App) -> v1::AgentConfig {
    v1::AgentConfig {
        checkin_interval_seconds: u32::try_from(app.config().checkin_interval.as_secs())
            .unwrap_or(u32::MAX),
    }
}
