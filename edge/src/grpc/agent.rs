//! `AgentService`: mutual TLS with an enrolled device's certificate.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::debug;
use ward_certs::receipt::SignedReceipt;
use ward_proto::v1::{self, *};

use super::convert::{
    checks_from_wire, command_state_to_wire, command_to_device, facts_from_wire, peer_leaf,
    policy_to_wire, status,
};
use super::enrollment::agent_config;
use super::request::{command_id, csr};
use ward_controller::app::{
    ActiveDevice, App, AppError, CheckInReport, ComplianceReport, DeviceResult,
};
use ward_controller::hub::Mail;
use ward_core::{CommandId, DeviceId};

/// How often an open stream re-reads the store even without a wake-up: the fallback that
/// makes a lost wake-up a delay, never a loss.
pub(super) const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

pub(super) struct AgentApi {
    app: Arc<App>,
}

impl AgentApi {
    pub(super) fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    async fn device<T>(&self, request: &Request<T>) -> Result<ActiveDevice, Status> {
        Ok(self.device_certificate(request).await?.0)
    }

    /// The device and the serial of the certificate it called with.
    async fn device_certificate<T>(
        &self,
        request: &Request<T>,
    ) -> Result<(ActiveDevice, String), Status> {
        self.app
            .authenticate_device_certificate(peer_leaf(request).as_deref())
            .await
            .map_err(status)
    }
}

type PushStream = Pin<Box<dyn Stream<Item = Result<AgentPush, Status>> + Send>>;

/// What a stream has not sent yet: the effective policy if it changed, then any unfinished
/// command not sent on this stream.
async fn pending_pushes(
    app: &App,
    (device, serial): (DeviceId, &str),
    sent: &mut HashSet<CommandId>,
    policy_sent: &mut Option<(String, u64)>,
) -> Result<Vec<AgentPush>, AppError> {
    use v1::agent_push::Item;
    // Revoked since the stream opened: the stream ends with the reason.
    let record = app.active_device(device).await?;
    still_valid(app, serial)?;
    let mut pushes = Vec::new();
    let policy = app.agent_policy(&record.user).await?;
    let key = (policy.scope.to_string(), policy.revision);
    if policy_sent.as_ref() != Some(&key) {
        pushes.push(AgentPush {
            item: Some(Item::Policy(policy_to_wire(&policy))),
        });
        *policy_sent = Some(key);
    }
    for command in app.deliver_unfinished(device, sent).await? {
        sent.insert(command.id);
        pushes.push(AgentPush {
            item: Some(Item::Command(command_to_device(&command))),
        });
    }
    Ok(pushes)
}

/// A stream opened with a certificate revoked since (a renewal replaced it) ends: whoever
/// holds it is not told the device's commands.
fn still_valid(app: &App, serial: &str) -> Result<(), AppError> {
    if app.certificate_revoked(serial) {
        return Err(AppError::Unauthenticated(
            "this stream's certificate has been revoked or replaced by a renewal; reconnect with the current one".into(),
        ));
    }
    Ok(())
}

/// Commands pushed to this stream, recorded as delivered; those finished, cancelled or
/// already sent are left out.
async fn pushed(
    app: &App,
    serial: &str,
    commands: &[ward_core::Command],
    sent: &mut HashSet<CommandId>,
) -> Result<Vec<AgentPush>, AppError> {
    use v1::agent_push::Item;
    still_valid(app, serial)?;
    let mut pushes = Vec::new();
    for command in commands {
        if sent.contains(&command.id) {
            continue;
        }
        if let Some(delivered) = app.deliver_pushed(command).await? {
            sent.insert(delivered.id);
            pushes.push(AgentPush {
                item: Some(Item::Command(command_to_device(&delivered))),
            });
        }
    }
    Ok(pushes)
}

#[tonic::async_trait]
impl v1::agent_service_server::AgentService for AgentApi {
    async fn check_in(
        &self,
        request: Request<CheckInRequest>,
    ) -> Result<Response<CheckInResponse>, Status> {
        let device = self.device(&request).await?;
        let req = request.into_inner();
        let compliance = req
            .compliance
            .as_ref()
            .map(|report| {
                Ok::<_, Status>(ComplianceReport {
                    checks: checks_from_wire(report)?,
                    policy_revision: report.policy_revision,
                })
            })
            .transpose()?;
        let trusted_cas = trusted_cas_from_wire(&req.trusted_ca_hashes)?;
        let report = CheckInReport {
            facts: req.facts.map(|facts| facts_from_wire(Some(facts))),
            inventory: req
                .inventory
                .map(super::convert_posture::inventory_from_wire)
                .transpose()?,
            compliance,
            offline_wipe: req.offline_wipe.map(|receipt| SignedReceipt {
                body: receipt.body,
                signature: receipt.signature,
            }),
            trusted_cas,
        };
        let answer = self
            .app
            .agent_check_in(&device, report)
            .await
            .map_err(status)?;
        Ok(Response::new(CheckInResponse {
            config: Some(agent_config(&self.app)),
            server_time_unix_ms: answer.server_time.unix_ms(),
            pending_commands: answer.pending.iter().map(command_to_device).collect(),
            policy: Some(policy_to_wire(&answer.policy)),
            trust_bundle_der: answer.trust_bundle,
        }))
    }

    type CommandsStream = PushStream;

    async fn commands(
        &self,
        request: Request<CommandsRequest>,
    ) -> Result<Response<PushStream>, Status> {
        let (record, serial) = self.device_certificate(&request).await?;
        let device = record.id;
        let (tx, rx) = mpsc::channel(32);
        let app = self.app.clone();
        // Subscribe before the first read, so a command committed in between still reaches us.
        let inbox = app.hub().subscribe(device);
        let mut stopping = app.hub().stopping();
        tokio::spawn(async move {
            debug!(device_id = %device, "command stream opened");
            let mut sent = HashSet::new();
            let mut policy_sent = None;
            // The first look reads the store; then a wake-up or the periodic sweep does, and
            // a pushed command is handed on as it came.
            let mut mail = Mail {
                commands: Vec::new(),
                read_again: true,
            };
            loop {
                let pushes = if mail.read_again {
                    pending_pushes(&app, (device, &serial), &mut sent, &mut policy_sent).await
                } else {
                    pushed(&app, &serial, &mail.commands, &mut sent).await
                };
                match pushes {
                    Ok(pushes) => {
                        for push in pushes {
                            if tx.send(Ok(push)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(status(e))).await;
                        return;
                    }
                }
                mail = tokio::select! {
                    () = tx.closed() => break,
                    () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
                        let _ = tx.send(Err(Status::unavailable("the controller is shutting down; reconnect"))).await;
                        break;
                    }
                    mail = inbox.next() => mail,
                    () = tokio::time::sleep(SWEEP_INTERVAL) => Mail { commands: Vec::new(), read_again: true },
                };
            }
            debug!(device_id = %device, "command stream closed");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn acknowledge(
        &self,
        request: Request<AcknowledgeRequest>,
    ) -> Result<Response<AcknowledgeResponse>, Status> {
        let device = self.device(&request).await?.id;
        let ack = self
            .app
            .acknowledge(
                device,
                command_id(&request.get_ref().command_id).map_err(status)?,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(AcknowledgeResponse {
            proceed: ack.proceed,
            state: command_state_to_wire(ack.state) as i32,
        }))
    }

    async fn report_result(
        &self,
        request: Request<ReportResultRequest>,
    ) -> Result<Response<ReportResultResponse>, Status> {
        let device = self.device(&request).await?.id;
        let req = request.into_inner();
        let result = DeviceResult {
            succeeded: req.succeeded,
            failure_reason: req.failure_reason,
            receipt: req.receipt.map(|r| SignedReceipt {
                body: r.body,
                signature: r.signature,
            }),
        };
        let state = self
            .app
            .report_result(device, command_id(&req.command_id).map_err(status)?, result)
            .await
            .map_err(status)?;
        Ok(Response::new(ReportResultResponse {
            state: command_state_to_wire(state) as i32,
        }))
    }

    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let (device, serial) = self.device_certificate(&request).await?;
        let csr = csr(&request.get_ref().csr_der).map_err(status)?;
        let certificate = self
            .app
            .renew(device.id, &serial, &csr)
            .await
            .map_err(status)?;
        Ok(Response::new(RenewResponse {
            certificate_der: certificate.der,
            ca_certificates_der: self.app.cas().trusted_ders(),
        }))
    }
}

/// At most this many CAs in an agent's report (a rotation has two).
const MAX_TRUSTED_CAS: usize = 8;

/// The CAs an agent reports trusting, sorted; `None` when it reports none (an agent older
/// than CA rotation).
fn trusted_cas_from_wire(hashes: &[String]) -> Result<Option<Vec<String>>, Status> {
    if hashes.is_empty() {
        return Ok(None);
    }
    if hashes.len() > MAX_TRUSTED_CAS {
        return Err(Status::invalid_argument(format!(
            "{} trusted CAs reported; at most {MAX_TRUSTED_CAS}",
            hashes.len()
        )));
    }
    let mut parsed = hashes
        .iter()
        .map(|h| {
            h.parse::<ward_certs::CaHash>()
                .map(|hash| hash.to_string())
                .map_err(|e| Status::invalid_argument(format!("trusted_ca_hashes: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    parsed.sort();
    parsed.dedup();
    Ok(Some(parsed))
}
