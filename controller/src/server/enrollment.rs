//! `EnrollmentService`: no client certificate; the one-time token authorizes.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use ward_proto::v1::{self, EnrollRequest, EnrollResponse};

use super::convert::facts_from_wire;
use crate::app::App;

pub struct EnrollmentApi {
    app: Arc<App>,
}

impl EnrollmentApi {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

#[tonic::async_trait]
impl v1::enrollment_service_server::EnrollmentService for EnrollmentApi {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let req = request.into_inner();
        let enrolled = self
            .app
            .enroll(&req.token, &req.csr_der, facts_from_wire(req.facts))
            .await?;
        Ok(Response::new(EnrollResponse {
            device_id: enrolled.device_id.to_string(),
            user: enrolled.user.to_string(),
            certificate_der: enrolled.certificate.der,
            ca_certificates_der: vec![self.app.ca().cert_der().to_vec()],
            config: Some(agent_config(&self.app)),
        }))
    }
}

pub fn agent_config(app: &App) -> v1::AgentConfig {
    v1::AgentConfig {
        checkin_interval_seconds: u32::try_from(app.config().checkin_interval.as_secs())
            .unwrap_or(u32::MAX),
    }
}
