//! Why a controller did not start, or did not stop cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;

use ward_certs::identity::IdentityError;
use ward_certs::tls::TlsError;
use ward_controller::app::AppError;
use ward_controller::ca_set::CaSetError;
use ward_controller::datadir::DataDirError;
use ward_controller::serve_lock::ServeLockError;
use ward_proto::transport::ServerUrlError;
use ward_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create the data directory {}: {source}", path.display())]
    CreateDataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Another controller holds the data directory, or its lock file cannot be used.
    #[error(transparent)]
    Lock(#[from] ServeLockError),
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The first admin's name of a new data directory.
    #[error(transparent)]
    FirstAdmin(IdentityError),
    /// Binding, running or stopping the gRPC server.
    #[error(transparent)]
    Grpc(#[from] ward_edge::grpc::ServeError),
    #[error("cannot read the bound address: {0}")]
    BoundAddress(std::io::Error),
    #[error(transparent)]
    Store(StoreError),
    #[error("cannot use the PostgreSQL database: {0}")]
    Postgres(StoreError),
    /// A new data directory over a database that has admins: a replica needs the CA of the
    /// controller the database belongs to.
    #[error(
        "{} holds no CA, but the database already belongs to a Ward controller: copy that controller's data directory (ca.pem, ca.key, server.pem, server.key) to {} to run a replica",
        dir.display(),
        dir.display()
    )]
    ForeignDatabase { dir: PathBuf },
    #[error("cannot read the CA rotation's state: {0}")]
    CaRecords(StoreError),
    #[error("cannot load the CAs: {0}")]
    Cas(CaSetError),
    /// The new host names leave out names the server certificate covers and that were not
    /// dropped on purpose: devices reaching the controller by them could no longer verify it.
    #[error(
        "the server certificate covers {} which the new host names leave out",
        names.join(", ")
    )]
    NamesDropped { names: Vec<String> },
    #[error(transparent)]
    Url(ServerUrlError),
    #[error("cannot start listening for other replicas: {0}")]
    Replicas(AppError),
    #[error("cannot open the audit log: {0}")]
    OpenAudit(AppError),
    #[error(transparent)]
    Revocations(AppError),
    #[error(transparent)]
    Tls(TlsError),
    #[error("cannot renew the server certificate: {0}")]
    ServerCertificate(AppError),
    #[error("cannot listen for metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for SCIM on {addr}: {source}")]
    Scim {
        addr: SocketAddr,
        source: std::io::Error,
    },
}
