//! Ward's runtime: a serving controller wired together from a typed [`ServeConfig`] — the serve
//! lock, the store (SQLite or PostgreSQL, the data directory initialized when empty), the CAs
//! and the server certificate, the application's background tasks (replicas, audit
//! checkpoints, syslog and webhook senders, certificate renewal, CA rotation), the metrics,
//! SCIM and gRPC servers, and the order in which they stop. `wardctl serve` checks its flags,
//! builds a [`ServeConfig`] and calls [`serve`] with [`shutdown_signal`] (Ctrl-C or SIGTERM);
//! a test passes any future instead, and `serve` returns once the controller has stopped and
//! released its data directory. Errors come back as [`ServeError`].
//!
//! It may depend on the layers it wires (`ward-controller`, `ward-edge`, `ward-store`,
//! `ward-certs`, `ward-core`, `ward-proto` for the server URL) and on tokio and tracing, NOT on
//! clap or `wardctl`: flags, their messages and exit codes are the CLI's, and nothing below
//! may depend on this crate.

#![forbid(unsafe_code)]

mod config;
mod error;
mod lock;
mod serve;
mod server_cert;
mod shutdown;
mod store;
mod urls;

pub use config::{AuditSyslog, Database, SCIM_BURST, SCIM_PER_MINUTE, ScimConfig, ServeConfig};
pub use error::ServeError;
pub use serve::serve;
pub use shutdown::signal as shutdown_signal;
// The parts of a [`ServeConfig`] that the layers it wires define.
pub use ward_controller::app::CheckpointConfig;
pub use ward_store::BatchSettings;
