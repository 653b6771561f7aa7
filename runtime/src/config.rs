//! What a serving controller is built from: plain values, checked by whoever builds them
//! (`wardctl serve` checks its flags before it builds one).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ward_controller::app::CheckpointConfig;
use ward_controller::syslog_transport::Collector;
use ward_core::audit::syslog::AuditFormat;
use ward_proto::transport::ServerUrl;
use ward_store::BatchSettings;

/// SCIM requests one client address may make by default: a burst, then this many per minute.
pub const SCIM_BURST: u32 = ward_edge::scim::http::BURST;
/// See [`SCIM_BURST`].
pub const SCIM_PER_MINUTE: u32 = ward_edge::scim::http::PER_MINUTE;

/// One serving controller (`wardctl serve`).
#[derive(Debug)]
pub struct ServeConfig {
    /// The data directory; an empty or missing one is initialized first.
    pub data_dir: PathBuf,
    /// The gRPC port (admin, agent and enrollment services).
    pub listen: SocketAddr,
    /// The URL devices use; `None`: `https://<controller name>:<bound port>`.
    pub public_url: Option<ServerUrl>,
    /// The names the server certificate should cover; empty: keep the certificate's names.
    pub hostnames: Vec<String>,
    /// Names the certificate covers today that `hostnames` may leave out.
    pub drop_hostnames: Vec<String>,
    /// Where the store is.
    pub database: Database,
    /// The store writer's group commit and check-in shedding.
    pub batch: BatchSettings,
    /// How often the server certificate's age is checked.
    pub server_cert_check_interval: Duration,
    pub checkin_interval: Duration,
    pub device_cert_lifetime: Duration,
    /// Second-admin approval, and the offboarding size above which it is needed; `None`: off.
    pub approval_threshold: Option<usize>,
    pub enroll_burst: u32,
    pub enroll_per_minute: u32,
    pub audit_checkpoints: CheckpointConfig,
    /// Stream every audit entry to a syslog collector.
    pub audit_syslog: Option<AuditSyslog>,
    /// Prometheus `/metrics` and `/healthz` (plain HTTP).
    pub metrics_listen: Option<SocketAddr>,
    /// The SCIM service (TLS, the server certificate).
    pub scim: Option<ScimConfig>,
    /// The longest wait between two attempts of a webhook delivery.
    pub webhook_retry_max: Duration,
    /// A webhook delivery not taken this long after its event is given up.
    pub webhook_give_up_after: Duration,
}

/// The store: the data directory's SQLite file, or a PostgreSQL database replicas may share.
pub enum Database {
    Sqlite,
    Postgres {
        url: String,
        /// Connections that write at once; `None`: the store's default.
        write_lanes: Option<usize>,
    },
}

// The URL may hold a password: it is never printed.
impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite => f.write_str("Sqlite"),
            Self::Postgres { write_lanes, .. } => f
                .debug_struct("Postgres")
                .field("write_lanes", write_lanes)
                .finish_non_exhaustive(),
        }
    }
}

/// The syslog collector of the audit log and the body of its messages.
#[derive(Debug)]
pub struct AuditSyslog {
    pub collector: Collector,
    pub format: AuditFormat,
}

/// The SCIM service's address and per-client limits.
#[derive(Clone, Copy, Debug)]
pub struct ScimConfig {
    pub listen: SocketAddr,
    pub burst: u32,
    pub per_minute: u32,
}
