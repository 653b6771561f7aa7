//! Ward's controller: the gRPC service with its own CA and its store (`wardctl`, the CLI and the
//! console, is the `wardctl` crate).
//!
//! - [`core`] — domain types and rules: the `ward-core` crate, re-exported (no tonic, no sqlx).
//! - [`app`] — the operations, over the [`store::Store`] trait.
//! - [`store`] — persistence (SQLite by default): the `ward-store` crate, re-exported.
//! - [`server`] — the TLS listener and the three gRPC services.
//!
//! It may not depend on `ward-agent` (the two sides meet only through `ward-proto`, `ward-vocab`
//! and `ward-certs`), and the domain may not depend on it: [`core`] is its own crate so that a
//! rule there cannot reach for tonic, sqlx or the store, and [`store`] is one so that it cannot
//! reach for the operations or the gRPC edge.

#![forbid(unsafe_code)]

pub mod app;
pub mod break_glass;
pub mod bundle;
pub mod ca_set;
pub mod checkpoint_dir;
pub mod connections;
pub use ward_core as core;
pub mod datadir;
#[doc(hidden)]
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
// The fuzz bodies (and the test hooks) are for fuzzing and test builds: a release build that
// turns them on is refused rather than shipped (cargo-fuzz builds set `cfg(fuzzing)`).
#[cfg(all(not(debug_assertions), not(fuzzing), feature = "fuzzing"))]
compile_error!(
    "the `fuzzing` and test-only features are for fuzz and test builds, not release builds"
);
pub mod hub;
pub mod metrics;
pub mod scim;
pub mod serve_lock;
pub mod server;
pub mod server_cert;
pub use ward_store as store;
pub mod syslog_transport;
pub mod webhook_sender;
