//! The store a controller serves from: the data directory's SQLite file or a PostgreSQL
//! database, either initialized first when the data directory holds no CA yet.

use std::sync::Arc;

use tracing::info;
use ward_certs::AdminName;
use ward_controller::datadir::DataDir;
use ward_core::SystemClock;
use ward_store::{SqlStore, Store};

use crate::config::Database;
use crate::error::ServeError;

/// The store of `dir`, initializing the data directory (CA, server credentials, first admin
/// `admin`) when it holds none.
pub(crate) async fn open(
    dir: &DataDir,
    database: &Database,
    hostnames: &[String],
) -> Result<Arc<dyn Store>, ServeError> {
    Ok(match database {
        Database::Sqlite => {
            if !dir.is_initialized(true)? {
                let report = dir.init(hostnames, &first_admin()?, &SystemClock).await?;
                info!(data_dir = %dir.root().display(), ca_hash = %report.ca_hash, admin_bundle = %report.admin_bundle.display(), "initialized a new data directory");
            }
            let store = dir.open_store().await?;
            let durability = store.durability().await.map_err(ServeError::Store)?;
            info!(?durability, "SQLite store opened");
            Arc::new(store)
        }
        Database::Postgres { url, write_lanes } => {
            let lanes = write_lanes.unwrap_or(ward_store::POSTGRES_WRITER_LANES);
            let store = SqlStore::connect_postgres_with_lanes(url, lanes)
                .await
                .map_err(ServeError::Postgres)?;
            info!(write_lanes = lanes, "PostgreSQL store opened");
            if !dir.is_initialized(false)? {
                // A database that already has admins belongs to a controller with its own CA:
                // a replica must use that controller's data directory, not a new CA.
                if !store
                    .list_admins()
                    .await
                    .map_err(ServeError::Store)?
                    .is_empty()
                {
                    return Err(ServeError::ForeignDatabase {
                        dir: dir.root().to_path_buf(),
                    });
                }
                let report = dir
                    .init_with(hostnames, &first_admin()?, &SystemClock, &store)
                    .await?;
                info!(data_dir = %dir.root().display(), ca_hash = %report.ca_hash, "initialized a new data directory (store: PostgreSQL)");
            }
            Arc::new(store)
        }
    })
}

/// The first admin of a data directory `serve` initializes.
fn first_admin() -> Result<AdminName, ServeError> {
    "admin".parse().map_err(ServeError::FirstAdmin)
}
