//! Ward's files on disk: what ward-certs, a pure library, leaves to its callers.
//!
//! - The crate root — writing key material and state: secrets created 0600 and never over an
//!   existing file, atomic replacement (temporary file, fsync, rename), private directories,
//!   the check every directory argument of `wardctl` and `ward-agent` gets, and the directory
//!   others drop JSON files into (audit checkpoints), read.
//! - [`bundle`] — the admin credential bundle (certificate, CA and key in one PEM file), which
//!   `init` and the controller write and `wardctl` reads.
//! - [`data_dir`] — the names of the files in a controller's data directory that `wardctl`
//!   reads on the controller host.
//!
//! It may depend on ward-certs only among Ward's crates, and on no tonic, sqlx or tokio: plain
//! blocking `std::fs`. ward-core must not depend on it (the domain does no file I/O).

#![forbid(unsafe_code)]

pub mod bundle;
pub mod data_dir;
mod files;

pub use files::{
    create_private_dir, create_public_file, create_secret_file, directory_arg, prepare_private_dir,
    read_json_files, replace_file,
};
