//! `wardctl`, the administrator's client: the CLI ([`cli`]) and the web console ([`console`],
//! `wardctl console`), both clients of the admin gRPC API, plus the local commands that work on a
//! data directory (`init`, `serve`, break-glass, CA files).
//!
//! Its client code speaks to a controller through `ward-proto` only and takes the domain's rules
//! and names from `ward-core`; it may not import sqlx, the store, the gRPC edge or the
//! application layer. Of the local commands (`cli/local.rs`), `init` and break-glass work on a
//! data directory through `ward-controller`, and `serve` checks its flags, builds a
//! `ward_runtime::ServeConfig` and leaves the wiring to `ward-runtime`: `wardctl` depends on
//! neither `ward-edge` nor `ward-store`.

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
