//! The `ward.v1` protocol: generated message types and tonic clients and servers, plus the
//! client transport both the agent and `wardctl` use.
//!
//! Conversion into Ward's domain types happens at the edge of each service (`TryFrom`), so
//! core logic never sees prost structs.

#![forbid(unsafe_code)]

pub mod names;
pub mod transport;

#[allow(clippy::all, clippy::unwrap_used, clippy::expect_used, missing_docs)]
pub mod v1 {
    tonic::include_proto!("ward.v1");
}
