//! The controller's operations, between the gRPC edge and the store: [`App`] takes domain
//! values, checks them, and calls the [`Store`] trait. Knows nothing of tonic or sqlx.
//!
//! This file holds [`App`] and its construction; each concern is its own file, an `impl App`
//! block named for what it holds: who is calling (`auth`), enrollment (`enrollment`,
//! `tokens`), devices (`devices`), commands (`commands`; what follows their end, `completion`), offboarding and lost mode
//! (`offboard`), disable, enable and retirement (`lifecycle`), check-in and posture
//! (`checkin`, `policy`, `offline_wipe`), certificates (`certificates`, `renewal`, `admins`),
//! the audit log (`audit*`) and the replicas kept in step (`replicas`, `reads`).

use std::sync::Arc;

use ward_certs::CertificateAuthority;

use crate::ca_set::CaSet;
use crate::core::{Clock, Timestamp};
use crate::hub::Hub;
use crate::store::Store;

mod admins;
mod announcer;
#[cfg(test)]
mod approval_tests;
pub mod audit;
mod audit_anchor;
mod audit_syslog;
mod auth;
#[cfg(test)]
mod auth_tests;
mod background;
pub mod bulk_select;
pub mod bulk_wipe;
pub mod ca_rotation;
#[cfg(test)]
mod ca_rotation_review_tests;
mod certificates;
mod checkin;
mod checkin_batch;
#[cfg(test)]
mod checkin_batch_tests;
#[cfg(test)]
mod checkin_tests;
#[cfg(test)]
mod command_ttl_tests;
mod commands;
mod completion;
#[cfg(test)]
mod completion_tests;
mod config;
mod delivered;
#[cfg(test)]
mod delivered_tests;
mod devices;
pub mod directory;
#[cfg(test)]
mod enforcement_tests;
mod enrollment;
mod enrollment_batch;
#[cfg(test)]
mod enrollment_tests;
mod error;
#[cfg(test)]
mod finish_batch_tests;
#[cfg(test)]
mod finish_follow_up_tests;
mod in_flight;
#[cfg(test)]
mod instruction_tests;
mod lease;
mod lifecycle;
pub mod offboard;
#[cfg(test)]
mod offboard_rerun_tests;
#[cfg(test)]
mod offboard_tests;
mod offline_wipe;
mod policy;
#[cfg(test)]
mod policy_tests;
mod reads;
mod renewal;
#[cfg(test)]
mod renewal_tests;
mod replicas;
mod scim_clients;
mod server_cert;
#[cfg(test)]
mod server_cert_tests;
#[cfg(test)]
mod test_fixture;
pub use server_cert::SERVER_CERT_CHECK_DEFAULT;
mod lane;
pub mod tokens;
mod transitions;
mod webhook_delivery;
pub mod webhooks;

pub use admins::AdminIssued;
pub use audit_anchor::{CHECKPOINT_EVERY_DEFAULT, CHECKPOINT_INTERVAL_DEFAULT, CheckpointConfig};
pub use audit_syslog::SyslogConfig;
pub use auth::audit_target;
pub use certificates::{certificate_record, check_cert_lifetime};
pub use checkin::{ActiveDevice, CheckInReport, CheckedIn, ComplianceReport};
pub use commands::{Acknowledgement, DeviceResult, sanitize};
pub use config::AppConfig;
pub use enrollment::{CreatedToken, Enrolled};
pub use error::AppError;
pub use offline_wipe::OFFLINE_TIMER;
pub use policy::check_report;
pub use webhook_delivery::DeliveryConfig;

pub struct App {
    store: Arc<dyn Store>,
    hub: Hub,
    metrics: Arc<crate::metrics::Metrics>,
    /// Revoked certificate serials, shared with the TLS verifier so revoked devices fail at
    /// the handshake.
    revoked: Arc<ward_certs::tls::RevokedSerials>,
    /// Open connections by client certificate, cut when it is revoked.
    connections: Arc<crate::connections::Connections>,
    /// The CAs: the one that signs, the ones trusted (a CA rotation changes them).
    cas: Arc<crate::ca_set::CaSet>,
    clock: Arc<dyn Clock>,
    config: AppConfig,
    audit_state: Arc<audit::AuditState>,
    /// Command transitions, gathered into one job of the store's writer.
    transitions: transitions::Transitions,
    /// Commands' ends and what follows them, gathered the same way.
    finishes: completion::Finishes,
    /// Device key histories, read many devices at a time.
    key_reads: renewal::KeyReads,
    /// Announcements to the other replicas, gathered and sent in the background.
    announcer: announcer::Announcer,
    /// Certificates, devices and policies the agent API reads on every call.
    reads: reads::Reads,
    /// The commands delivered here and not yet finished, as last written.
    delivered: delivered::Delivered,
    /// The listener's certificate, renewed while serving.
    server_cert: std::sync::OnceLock<Arc<crate::server_cert::ServerCertificate>>,
    /// Devices refused for renewing too often, by the window their refusal was audited for
    /// (this replica's; a refusal is audited once per window).
    renewal_limits: renewal::RenewalLimits,
    /// Devices whose check-in is being handled (one at a time each).
    check_ins: Arc<in_flight::CheckInsInFlight>,
    /// Check-ins, gathered into one job of the store's writer.
    check_in_batches: checkin_batch::CheckInBatches,
    /// Enrollments' token claims, gathered into one job of the store's writer.
    redemptions: enrollment_batch::Redemptions,
    /// The tasks `start_*` spawned, ended by [`App::stop_background`].
    background: background::Background,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl App {
    /// An app whose one CA signs and is trusted (no rotation).
    pub fn new(
        store: Arc<dyn Store>,
        ca: Arc<CertificateAuthority>,
        clock: Arc<dyn Clock>,
        config: AppConfig,
    ) -> Self {
        Self::with_cas(store, Arc::new(CaSet::single(ca)), clock, config)
    }

    /// An app over the data directory's CAs (`serve`), which CA rotation steps change.
    pub fn with_cas(
        store: Arc<dyn Store>,
        cas: Arc<CaSet>,
        clock: Arc<dyn Clock>,
        config: AppConfig,
    ) -> Self {
        let metrics = Arc::new(crate::metrics::Metrics::default());
        store.writer().stats().observe_with(metrics.clone());
        let audit_state = Arc::new(audit::AuditState::default());
        let transitions = transitions::start(Arc::clone(&store), Arc::clone(&clock));
        let finishes = completion::start_finishes(Arc::clone(&store), Arc::clone(&clock));
        let key_reads = renewal::start_key_reads(Arc::clone(&store));
        let check_in_batches = checkin_batch::start(Arc::clone(&store));
        let redemptions = enrollment_batch::start(Arc::clone(&store));
        let announcer = announcer::Announcer::start(Arc::clone(&store));
        store.keep_audit_with(Arc::new(audit::Keeper {
            cas: Arc::clone(&cas),
            metrics: Arc::clone(&metrics),
            state: Arc::clone(&audit_state),
            checkpoint_every: config.audit_checkpoints.every_entries,
        }));
        Self {
            store,
            hub: Hub::default(),
            metrics,
            revoked: Arc::default(),
            connections: Arc::default(),
            cas,
            clock,
            config,
            audit_state,
            transitions,
            finishes,
            key_reads,
            announcer,
            reads: reads::Reads::default(),
            delivered: delivered::Delivered::default(),
            server_cert: std::sync::OnceLock::new(),
            renewal_limits: renewal::RenewalLimits::default(),
            check_ins: Arc::default(),
            check_in_batches,
            redemptions,
            background: background::Background::default(),
        }
    }

    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// The CA that signs now.
    pub fn ca(&self) -> Arc<CertificateAuthority> {
        self.cas.signing()
    }

    /// Every CA held, and which sign and are trusted.
    pub fn cas(&self) -> &Arc<CaSet> {
        &self.cas
    }

    /// The revocation list the TLS configuration must consult.
    pub fn revoked_serials(&self) -> Arc<ward_certs::tls::RevokedSerials> {
        self.revoked.clone()
    }

    /// The open connections the listener tracks, to be cut on revocation.
    pub fn connections(&self) -> Arc<crate::connections::Connections> {
        self.connections.clone()
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// What the store's writer is doing, for `/metrics`.
    pub fn writer_stats(&self) -> &crate::store::writer::WriterStats {
        self.store.writer().stats()
    }

    /// Check-ins waiting for their batch, and how long one arriving now would wait (`None`
    /// until measured), for `/metrics`.
    pub fn check_in_backlog(&self) -> (usize, Option<std::time::Duration>) {
        (self.check_in_batches.queued(), self.check_in_batches.wait())
    }

    pub fn writer_settings(&self) -> crate::store::BatchSettings {
        self.store.writer().settings()
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}
