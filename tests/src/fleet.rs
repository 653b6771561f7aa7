//! Many agents in one process. Each enrolls through the real protocol (its own key, CSR and
//! certificate) and runs the real agent loop (`ward_agent::run::run`) over its own mutual-TLS
//! connection, against a controller process. For fan-out and fault tests where a thousand
//! agent processes would not fit on a two-core machine.

use std::path::Path;

use futures::{StreamExt, stream};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use ward_agent::enroll::{EnrollOptions, enroll};
use ward_agent::run::{RunOptions, run};
use ward_agent::secrets::SecretStoreKind;
use ward_agent::state::StateDir;
use ward_files::bundle::AdminBundle;
use ward_proto::transport::{ChannelOptions, ServerUrl, connect};
use ward_proto::v1::CreateEnrollmentTokenRequest;
use ward_proto::v1::admin_service_client::AdminServiceClient;

use crate::process::{AgentFixture, plant_canaries};

/// An admin client speaking as the bundle `wardctl init` wrote into `data_dir`. The channel
/// reconnects by itself, so it outlives a controller restart on the same address.
pub async fn admin_client(data_dir: &Path, url: &str) -> AdminServiceClient<Channel> {
    let bundle = AdminBundle::read(&data_dir.join("admin.pem")).unwrap();
    let tls = bundle.client_config().unwrap();
    let url: ServerUrl = url.parse().unwrap();
    AdminServiceClient::new(connect(&url, tls, ChannelOptions::default()).await.unwrap())
        .max_decoding_message_size(wardctl::cli::connect::ADMIN_RESPONSE_BYTES)
}

/// Enrolls `count` devices of `user` under `root` (`agentNNNN-state`, `agentNNNN-messaging`
/// with canary files), `concurrency` at a time.
pub async fn enroll_fleet(
    admin: &AdminServiceClient<Channel>,
    root: &Path,
    user: &str,
    count: usize,
    concurrency: usize,
) -> Vec<AgentFixture> {
    let mut agents: Vec<(usize, AgentFixture)> = stream::iter(0..count)
        .map(|i| {
            let mut admin = admin.clone();
            async move {
                let token = admin
                    .create_enrollment_token(CreateEnrollmentTokenRequest {
                        user: user.into(),
                        ttl_seconds: 0,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let name = format!("agent{i:04}");
                let state_dir = StateDir::new(root.join(format!("{name}-state")));
                let state = enroll(
                    &state_dir,
                    EnrollOptions {
                        server: token.server_url.parse().unwrap(),
                        token: zeroize::Zeroizing::new(token.token),
                        ca_hash: token.ca_hash.parse().unwrap(),
                        secret_store: SecretStoreKind::File,
                        tpm: None,
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("enroll {name}: {e}"));
                let fixture = AgentFixture::existing(root, &name, state.device_id);
                plant_canaries(&fixture.messaging_dir);
                (i, fixture)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    agents.sort_by_key(|(i, _)| *i);
    agents.into_iter().map(|(_, a)| a).collect()
}

/// Agents running in this process; dropping it stops them (as a power cut would: no
/// goodbye to the controller).
#[derive(Debug)]
pub struct RunningFleet {
    tasks: Vec<JoinHandle<()>>,
}

impl RunningFleet {
    pub fn start(agents: &[AgentFixture]) -> Self {
        let tasks = agents
            .iter()
            .map(|agent| {
                let dir = StateDir::new(&agent.state_dir);
                let options = RunOptions {
                    messaging_dir: Some(agent.messaging_dir.clone()),
                    ..RunOptions::default()
                };
                tokio::spawn(async move {
                    if let Err(e) = run(&dir, options, std::future::pending()).await {
                        panic!("agent {} stopped: {e}", dir.root().display());
                    }
                })
            })
            .collect();
        Self { tasks }
    }

    /// Agents whose task ended (each one is a failure: they run until dropped).
    pub fn stopped(&self) -> usize {
        self.tasks.iter().filter(|t| t.is_finished()).count()
    }
}

impl Drop for RunningFleet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
