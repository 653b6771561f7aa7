//! Ward's controller, its application layer: [`App`](app::App) and the operations over the
//! [`store::Store`] trait, and what they need at run time — the CA set and the server
//! certificate, the data directory (the names of its files are `ward-files`'s, shared with
//! `wardctl`, as is the admin bundle), break-glass files, the hub that reaches
//! connected agents, the connection registry, metrics, the webhook and syslog senders.
//!
//! - [`core`] — domain types and rules: the `ward-core` crate, re-exported (no tonic, no sqlx).
//! - [`app`] — the operations, over the [`store::Store`] trait.
//! - [`store`] — persistence (SQLite by default): the `ward-store` crate, re-exported.
//!
//! It takes domain values and knows no wire: the gRPC and SCIM edge (`ward-edge`) converts
//! requests into domain values and errors into statuses, `ward-runtime` wires a serving
//! controller together (`wardctl serve`), and `wardctl` is the client. It may depend on none of
//! them, nor on `ward-proto`, tonic or `ward-agent` (the two sides meet only through
//! `ward-proto`, `ward-vocab` and `ward-certs`); the domain may not depend on it: [`core`] is its
//! own crate so that a rule there cannot reach for tonic, sqlx or the store, and [`store`] is one
//! so that it cannot reach for the operations or the edge.

#![forbid(unsafe_code)]

pub mod app;
pub mod break_glass;
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
pub mod serve_lock;
pub mod server_cert;
pub use ward_store as store;
pub mod syslog_transport;
pub mod webhook_sender;
