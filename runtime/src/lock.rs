//! One controller per SQLite data directory: the serve lock.

use std::path::Path;

use ward_controller::serve_lock::ServeLock;
use ward_core::{Clock, SystemClock};

use crate::error::ServeError;

/// Creates the data directory if it is missing (0700, as `init` would) and takes the serve
/// lock on it, held until the returned lock is dropped; a second `serve` is refused, naming
/// the first.
pub(crate) fn lock_data_dir(dir: &Path) -> Result<ServeLock, ServeError> {
    ward_files::create_private_dir(dir).map_err(|source| ServeError::CreateDataDir {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(ServeLock::acquire(dir, SystemClock.now())?)
}
