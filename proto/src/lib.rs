//! The `ward.v1` protocol: generated message types and tonic clients and servers, plus the
//! client transport both the agent and `wardctl` use.
//!
//! Conversion into Ward's domain types happens at the edge of each service (the controller's
//! `edge` crate, the agent, `wardctl`), so core logic never sees prost structs.
//!
//! It may depend on no other Ward crate but `ward-vocab`, the vocabulary its messages carry
//! ([`vocab`] converts between the two, once for every side), and not on the domain, the store,
//! the agent or storage: it is the wire and its transport only, which both sides build on.

#![forbid(unsafe_code)]

pub mod names;
pub mod transport;
pub mod vocab;

#[allow(clippy::all, clippy::unwrap_used, clippy::expect_used, missing_docs)]
pub mod v1 {
    tonic::include_proto!("ward.v1");
}
