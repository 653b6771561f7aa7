//! Ward's edge: the controller's gRPC services ([`grpc`], one TLS port: admin, agent, enrollment)
//! and its SCIM HTTP service ([`scim`]). Each request is authenticated, then its wire types become
//! domain values before `ward_controller::app::App` is called; [`AppError`]s become gRPC statuses
//! (or SCIM error bodies) in one place.
//!
//! It may not depend on storage (sqlx, or `ward-store` except through the controller's
//! re-export of its plain types), on `wardctl` or the runtime wiring (`ward-runtime`), nor on `ward-agent`: it is
//! the wire (`ward-proto`, tonic, axum) over the application layer (`ward-controller`).
//!
//! [`AppError`]: ward_controller::app::AppError

#![forbid(unsafe_code)]

#[doc(hidden)]
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
// The fuzz bodies are for fuzzing and test builds: a release build that turns them on is refused
// rather than shipped (cargo-fuzz builds set `cfg(fuzzing)`).
#[cfg(all(not(debug_assertions), not(fuzzing), feature = "fuzzing"))]
compile_error!("the `fuzzing` feature is for fuzz and test builds, not release builds");
pub mod grpc;
mod run_to_end;
pub mod scim;
