//! `wardctl`, the administrator's client: the CLI ([`cli`]) and the web console ([`console`],
//! `wardctl console`), both clients of the admin gRPC API, plus the local commands that work on a
//! data directory (`init`, `serve`, break-glass, CA files).
//!
//! Its client code speaks to a controller through `ward-proto` only, takes the domain's rules
//! and names (limits, actor names) from `ward-core` and the admin bundle and the data
//! directory's file names from `ward-files`. The local commands (`cli/local.rs`) go through
//! `ward-runtime`: `init` makes a data directory, and `serve` checks its flags, builds a
//! `ward_runtime::ServeConfig` and leaves the wiring to it. `wardctl` depends on none of
//! `ward-controller` (the application layer), `ward-edge`, `ward-store` or sqlx, so a client
//! module cannot reach for them.

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
