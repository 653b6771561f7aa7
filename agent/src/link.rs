//! The agent's connection to the controller: one shared channel, moved along the list of
//! servers when the current one fails.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tonic::transport::Channel;
use ward_proto::transport::{ChannelOptions, ServerUrl, connect};
use ward_proto::v1::agent_service_client::AgentServiceClient;

/// Deadline for unary calls (check-in, acknowledge, report). The command stream has none.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Link {
    servers: Vec<ServerUrl>,
    tls: rustls::ClientConfig,
    state: Mutex<(usize, Option<Channel>)>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

/// A client and which server it talks to, to report a failure against.
#[derive(Debug)]
pub struct Connected {
    pub client: AgentServiceClient<Channel>,
    pub server: usize,
}

impl Link {
    pub fn new(servers: Vec<ServerUrl>, tls: rustls::ClientConfig) -> Self {
        Self {
            servers,
            tls,
            state: Mutex::new((0, None)),
        }
    }

    pub fn url(&self, server: usize) -> &ServerUrl {
        &self.servers[server % self.servers.len()]
    }

    pub async fn client(&self) -> Result<Connected, (usize, String)> {
        let (server, channel) = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            (state.0, state.1.clone())
        };
        if let Some(channel) = channel {
            return Ok(Connected {
                client: AgentServiceClient::new(channel),
                server,
            });
        }
        let options = ChannelOptions {
            request_timeout: None,
            ..ChannelOptions::default()
        };
        let channel = connect(self.url(server), self.tls.clone(), options)
            .await
            .map_err(|e| (server, e.to_string()))?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.0 == server {
            state.1 = Some(channel.clone());
        }
        Ok(Connected {
            client: AgentServiceClient::new(channel),
            server,
        })
    }

    /// The server `server` failed: forget its channel and move to the next one.
    pub fn failed(&self, server: usize) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.0 == server {
            state.0 = (server + 1) % self.servers.len();
            state.1 = None;
        }
    }
}
