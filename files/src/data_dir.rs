//! The files of a controller's data directory, by name: what `init` and `serve` write there,
//! and the two `wardctl` reads on the controller host (the first admin's bundle and the URL the
//! controller serves on). The directory's operations (init, loading the CA, opening the store)
//! are the controller's; only the names are shared.

use std::path::{Path, PathBuf};

/// The CA certificate (PEM).
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key.
pub const CA_KEY: &str = "ca.key";
/// The server certificate chain (PEM).
pub const SERVER_CERT: &str = "server.pem";
/// The server's private key.
pub const SERVER_KEY: &str = "server.key";
/// The first admin's credential bundle ([`crate::bundle`]).
pub const ADMIN_BUNDLE: &str = "admin.pem";
/// The SQLite store.
pub const DATABASE: &str = "ward.db";
/// The URL `serve` serves on, for `wardctl` on the same host.
pub const SERVER_URL: &str = "server-url";

/// The URL a controller serving from `dir` wrote there, if any.
pub fn read_server_url(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(SERVER_URL))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The first admin's bundle in `dir`.
pub fn admin_bundle(dir: &Path) -> PathBuf {
    dir.join(ADMIN_BUNDLE)
}
