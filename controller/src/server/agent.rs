//! `AgentService`: mutual TLS with an enrolled device's certificate.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use ward_proto::v1::{self, CheckInRequest, CheckInResponse};

use super::convert::{facts_from_wire, peer_leaf};
use super::enrollment::agent_config;
use crate::app::App;

pub struct AgentApi {
    app: Arc<App>,
}

impl AgentApi {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

#[tonic::async_trait]
impl v1::agent_service_server::AgentService for AgentApi {
    async fn check_in(
        &self,
        request: Request<CheckInRequest>,
    ) -> Result<Response<CheckInResponse>, Status> {
        let device = self
            .app
            .authenticate_device(peer_leaf(&request).as_deref())
            .await?;
        let req = request.into_inner();
        self.app
            .check_in(device, facts_from_wire(req.facts))
            .await?;
        Ok(Response::new(CheckInResponse {
            config: Some(agent_config(&self.app)),
            server_time_unix_ms: self.app.now().unix_ms(),
        }))
    }
}
