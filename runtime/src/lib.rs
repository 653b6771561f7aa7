//! Ward's runtime: a serving controller wired together from a typed [`ServeConfig`] — the serve
//! lock, the store (SQLite or PostgreSQL, the data directory initialized when empty), the CAs
//! and the server certificate, the application's background tasks (replicas, audit
//! checkpoints, syslog and webhook senders, certificate renewal, CA rotation), the metrics,
//! SCIM and gRPC servers, and the order in which they stop. `wardctl serve` checks its flags,
//! builds a [`ServeConfig`] and calls [`serve`] with [`shutdown_signal`] (Ctrl-C or SIGTERM);
//! a test passes any future instead, and `serve` returns once the controller has stopped and
//! released its data directory. Errors come back as [`ServeError`].
//!
//! It also hands `wardctl`'s local commands what they take from the layers below (the data
//! directory for `init`, the syslog collector and the serve lock's refusal for `serve`), so
//! that `wardctl` does not depend on `ward-controller`.
//!
//! It may depend on the layers it wires (`ward-controller`, `ward-edge`, `ward-store`,
//! `ward-certs`, `ward-files`, `ward-core`, `ward-proto` for the server URL) and on tokio and tracing, NOT on
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
// The parts of a [`ServeConfig`], and of its errors, that the layers it wires define.
pub use ward_controller::app::{CHECKPOINT_EVERY_DEFAULT, CheckpointConfig};
pub use ward_controller::serve_lock::ServeLockError;
pub use ward_store::BatchSettings;
pub use ward_store::commit_runtime::start as start_commit_runtime;

/// The data directory a controller serves from: `wardctl init` makes one (`serve` does when it
/// finds none), and `serve` checks its `--hostname`s with the names the directory would get.
pub mod data_dir {
    pub use ward_controller::break_glass::ADVICE as BREAK_GLASS_ADVICE;
    pub use ward_controller::datadir::{DataDir, DataDirError, InitReport, server_hostnames};
}

/// The syslog collector of `serve --audit-syslog`, checked before anything starts.
pub mod syslog {
    pub use ward_controller::syslog_transport::{Collector, tls_config_from_file};
}
