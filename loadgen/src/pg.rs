//! A fresh PostgreSQL database for one run, dropped afterwards.

use sqlx::Connection;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(
        "PostgreSQL server URL {0:?} must look like postgres://USER@HOST:PORT/DATABASE (the database is only used to create a fresh one)"
    )]
    Url(String),
    #[error("cannot connect to the PostgreSQL server to create a database: {0}")]
    Connect(String),
    #[error("cannot create database {name}: {reason}")]
    Create { name: String, reason: String },
}

/// A database that exists for one run; dropped (with its connections) on drop.
#[derive(Debug)]
pub struct FreshDatabase {
    pub url: String,
    server: String,
    name: String,
}

impl FreshDatabase {
    pub async fn create(server: &str) -> Result<Self, PgError> {
        if !(server.starts_with("postgres://") || server.starts_with("postgresql://")) {
            return Err(PgError::Url(server.to_owned()));
        }
        let (base, _) = server
            .rsplit_once('/')
            .filter(|(base, _)| base.contains("//") && !base.ends_with('/'))
            .ok_or_else(|| PgError::Url(server.to_owned()))?;
        let name = format!("ward_loadgen_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(server)
            .await
            .map_err(|e| PgError::Connect(e.to_string()))?;
        // A database name cannot be a bound parameter; this one is generated above.
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .map_err(|e| PgError::Create {
                name: name.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            url: format!("{base}/{name}"),
            server: server.to_owned(),
            name,
        })
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // On a separate thread with its own runtime: Drop may run inside another runtime.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                    let drop_db = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(&drop_db).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}
