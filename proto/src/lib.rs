//! The `ward.v1` protocol: generated message types and tonic clients and servers, plus the
//! client transport both the agent and `wardctl` use.
//!
//! Conversion into Ward's domain types happens at the edge of each service (`TryFrom`), so
//! core logic never sees prost structs.
//!
//! It may not depend on any other Ward crate (the domain, the store, the agent) nor on storage:
//! it is the wire and its transport only, which both sides of the wire build on.

#![forbid(unsafe_code)]

pub mod names;
pub mod transport;

#[allow(clippy::all, clippy::unwrap_used, clippy::expect_used, missing_docs)]
pub mod v1 {
    tonic::include_proto!("ward.v1");
}
