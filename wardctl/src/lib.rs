//! `wardctl`, the administrator's client: the CLI ([`cli`]) and the web console ([`console`],
//! `wardctl console`), both clients of the admin gRPC API, plus the local commands that work on a
//! data directory (`init`, `serve`, break-glass, CA files).
//!
//! Its client code speaks to a controller through `ward-proto` only and takes the domain's rules
//! and names from `ward-core`; it may not import sqlx, the store, the gRPC edge or the
//! application layer. Only the local commands (`cli/local.rs`: `serve` wires a serving
//! controller together and opens the store through `ward-store`, `init` and break-glass work on
//! a data directory) reach `ward-edge`, `ward-controller` and `ward-store`, until serve's wiring
//! has a runtime crate of its own.

#![forbid(unsafe_code)]

pub mod cli;
pub mod console;
#[doc(hidden)]
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
// The fuzz bodies are for fuzzing and test builds: a release build that turns them on is refused
// rather than shipped (cargo-fuzz builds set `cfg(fuzzing)`).
#[cfg(all(not(debug_assertions), not(fuzzing), feature = "fuzzing"))]
compile_error!("the `fuzzing` feature is for fuzz and test builds, not release builds");
