//! The controller's data directory: CA, server credentials, first admin bundle, SQLite store.
//!
//! ```text
//! DIR/            0700
//!   ca.pem        the CA certificate (public; its hash is what agents pin)
//!   ca.key        the CA private key, 0600: never leaves this directory
//!   server.pem    the controller's TLS certificate followed by the CA certificate
//!   server.key    its private key, 0600
//!   admin.pem     the first admin's bundle (certificate, CA, key), 0600
//!   break-glass.pem, break-glass.passphrase
//!                 the break-glass identity (key encrypted) and its passphrase, 0600: to be
//!                 moved out, into an offline safe (see crate::break_glass)
//!   ward.db       the SQLite store (WAL, synchronous=FULL)
//!   server-url    written by `serve`: where local `wardctl` calls reach it
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ward_certs::{AdminName, CertificateAuthority, Identity, PrivateKeyDer, csr::make_csr};
use ward_files::bundle::AdminBundle;
use ward_files::data_dir;
use ward_files::{create_private_dir, create_public_file, create_secret_file, replace_file};

use crate::app::certificate_record;
use crate::core::audit::{AuditEvent, GenesisOrigin, genesis_event};
use crate::core::{Admin, AdminRole, Clock};
use crate::store::{SqlStore, Store, StoreError};

/// Names every server certificate covers, so `wardctl` on the controller's own host works.
pub const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "{0} already holds a Ward CA (ca.pem/ca.key); refusing to overwrite it. Use another --data-dir, or `wardctl serve` to run with this one"
    )]
    AlreadyInitialized(String),
    #[error(
        "{dir} is incomplete: it has {present} but no {missing}, probably from an interrupted `wardctl init`. Move the directory aside and run `wardctl init` again"
    )]
    Incomplete {
        dir: String,
        present: String,
        missing: String,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not usable: {why}")]
    BadFile { path: String, why: String },
    #[error(
        "the first admin cannot be named {0}: init makes that identity itself; choose another --admin-name"
    )]
    ReservedName(String),
    #[error(
        "the first admin cannot be named {0}: the name is reserved (controller, init, enrollment-token and system are actors in the audit log; names starting with ca-rotation are forced CA rotation steps waiting for approval); choose another --admin-name"
    )]
    ReservedAdminName(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("certificate error: {0}")]
    Cert(String),
}

/// What `init` made.
#[derive(Debug)]
pub struct InitReport {
    pub ca_hash: String,
    pub hostnames: Vec<String>,
    pub admin_name: String,
    pub admin_bundle: PathBuf,
    pub break_glass: crate::break_glass::BreakGlassFiles,
}

#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.root.join(data_dir::CA_CERT)
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join(data_dir::CA_KEY)
    }
    pub fn server_cert(&self) -> PathBuf {
        self.root.join(data_dir::SERVER_CERT)
    }
    pub fn server_key(&self) -> PathBuf {
        self.root.join(data_dir::SERVER_KEY)
    }
    pub fn admin_bundle(&self) -> PathBuf {
        data_dir::admin_bundle(&self.root)
    }
    pub fn database(&self) -> PathBuf {
        self.root.join(data_dir::DATABASE)
    }
    pub fn server_url_file(&self) -> PathBuf {
        self.root.join(data_dir::SERVER_URL)
    }

    /// True when fully initialized, false when empty or absent; an error when half-made.
    /// `with_sqlite`: the directory also holds the SQLite store and the first admin's bundle;
    /// a PostgreSQL replica needs only the CA and server credentials.
    pub fn is_initialized(&self, with_sqlite: bool) -> Result<bool, DataDirError> {
        let mut required = vec![
            self.ca_cert(),
            self.ca_key(),
            self.server_cert(),
            self.server_key(),
        ];
        if with_sqlite {
            required.push(self.admin_bundle());
            required.push(self.database());
        }
        let present: Vec<&PathBuf> = required.iter().filter(|p| p.exists()).collect();
        if present.is_empty() {
            return Ok(false);
        }
        if present.len() == required.len() {
            return Ok(true);
        }
        let name = |p: &PathBuf| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        Err(DataDirError::Incomplete {
            dir: self.root.display().to_string(),
            present: present
                .iter()
                .map(|p| name(p))
                .collect::<Vec<_>>()
                .join(", "),
            missing: required
                .iter()
                .filter(|p| !p.exists())
                .map(name)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Creates the CA, the server certificate, the SQLite store and the first admin's bundle.
    /// Refuses to touch a directory that already has a CA.
    pub async fn init(
        &self,
        hostnames: &[String],
        admin_name: &AdminName,
        clock: &dyn Clock,
    ) -> Result<InitReport, DataDirError> {
        self.check_free()?;
        create_private_dir(&self.root)
            .map_err(|source| self.io("cannot create data directory", &self.root, source))?;
        let store = SqlStore::open_sqlite(&self.database()).await?;
        let report = self.init_with(hostnames, admin_name, clock, &store).await;
        store.close().await;
        report
    }

    fn check_free(&self) -> Result<(), DataDirError> {
        if self.ca_cert().exists() || self.ca_key().exists() {
            return Err(DataDirError::AlreadyInitialized(
                self.root.display().to_string(),
            ));
        }
        Ok(())
    }

    /// [`DataDir::init`] with the first admin registered in `store` (e.g. PostgreSQL).
    pub async fn init_with(
        &self,
        hostnames: &[String],
        admin_name: &AdminName,
        clock: &dyn Clock,
        store: &dyn Store,
    ) -> Result<InitReport, DataDirError> {
        self.check_free()?;
        if admin_name.as_str() == crate::core::admins::BREAK_GLASS_NAME {
            return Err(DataDirError::ReservedName(admin_name.to_string()));
        }
        // As `admin issue` refuses them: actors of the audit log, and the names of forced CA
        // rotation steps' requests (`ca-rotation…`), which an admin's name would shadow.
        if crate::core::admins::is_reserved_name(admin_name.as_str()) {
            return Err(DataDirError::ReservedAdminName(admin_name.to_string()));
        }
        create_private_dir(&self.root)
            .map_err(|source| self.io("cannot create data directory", &self.root, source))?;
        let hostnames = server_hostnames(hostnames);
        let now = clock.now();
        let cert_err = |e: ward_certs::CertError| DataDirError::Cert(e.to_string());

        let ca = CertificateAuthority::create("Ward CA", now.to_datetime()).map_err(cert_err)?;
        self.create_secret(&self.ca_key(), ca.key().to_pem().as_bytes())?;
        self.create_public(&self.ca_cert(), ca.cert_pem().as_bytes())?;

        let (server, server_key) = ca
            .issue_server(
                &hostnames,
                now.to_datetime(),
                ward_certs::ca::SERVER_LIFETIME,
            )
            .map_err(cert_err)?;
        self.create_secret(&self.server_key(), server_key.to_pem().as_bytes())?;
        let chain = format!("{}{}", server.pem(), ca.cert_pem());
        self.create_public(&self.server_cert(), chain.as_bytes())?;

        let admin_key = PrivateKeyDer::generate().map_err(cert_err)?;
        let csr = make_csr(&admin_key, admin_name.as_str()).map_err(cert_err)?;
        let csr = ward_certs::VerifiedCsr::from_der(&csr)
            .map_err(|e| DataDirError::Cert(e.to_string()))?;
        let identity = Identity::Admin(admin_name.clone());
        let admin_cert = ca
            .issue_client(
                &csr,
                &identity,
                now.to_datetime(),
                ward_certs::ca::ADMIN_LIFETIME,
            )
            .map_err(cert_err)?;
        let admin = Admin::new(admin_name.clone(), AdminRole::Admin, now, "init");
        store
            .insert_admin(&admin, &certificate_record(&admin_cert, &identity, now))
            .await?;
        // The chain starts with its signed genesis, so an emptied log never verifies.
        let sign =
            |message: &[u8]| ward_certs::sign::sign(ca.key(), message).map_err(|e| e.to_string());
        let spki = ca.public_key_der();
        let verify = |message: &[u8], signature: &[u8]| {
            ward_certs::sign::verify(&spki, message, signature).is_ok()
        };
        let nonce: [u8; 16] = rand::random();
        let genesis = genesis_event(&ca.hash().to_string(), &nonce, GenesisOrigin::Init);
        store.append_audit(&genesis, now, &sign, &verify).await?;
        let event = AuditEvent {
            actor: "init".into(),
            action: "admin.issue".into(),
            target: admin_name.to_string(),
            details: serde_json::json!({ "role": "admin", "certificate_serial": admin_cert.serial }),
        };
        store.append_audit(&event, now, &sign, &verify).await?;

        let break_glass = crate::break_glass::create(&self.root, &ca, store, now).await?;

        let bundle = AdminBundle {
            certificate_der: admin_cert.der,
            ca_der: ca.cert_der().to_vec(),
            other_cas: Vec::new(),
            key: admin_key,
        };
        bundle
            .write_new(&self.admin_bundle())
            .map_err(|e| DataDirError::Cert(e.to_string()))?;
        Ok(InitReport {
            ca_hash: ca.hash().to_string(),
            hostnames,
            admin_name: admin_name.to_string(),
            admin_bundle: self.admin_bundle(),
            break_glass,
        })
    }

    pub fn load_ca(&self) -> Result<Arc<CertificateAuthority>, DataDirError> {
        let cert = self.read_text(&self.ca_cert())?;
        let key = zeroize::Zeroizing::new(self.read_text(&self.ca_key())?);
        CertificateAuthority::from_pem(&cert, &key)
            .map(Arc::new)
            .map_err(|e| DataDirError::BadFile {
                path: self.ca_key().display().to_string(),
                why: e.to_string(),
            })
    }

    /// The server's certificate chain (leaf, then CA) as DER, and its key.
    pub fn load_server_credentials(&self) -> Result<(Vec<Vec<u8>>, PrivateKeyDer), DataDirError> {
        let chain_pem = self.read_text(&self.server_cert())?;
        let chain =
            ward_certs::certificates_from_pem(&chain_pem).map_err(|e| DataDirError::BadFile {
                path: self.server_cert().display().to_string(),
                why: e.to_string(),
            })?;
        let key_pem = zeroize::Zeroizing::new(self.read_text(&self.server_key())?);
        let key = PrivateKeyDer::from_pem(&key_pem).map_err(|e| DataDirError::BadFile {
            path: self.server_key().display().to_string(),
            why: e.to_string(),
        })?;
        Ok((chain, key))
    }

    pub async fn open_store(&self) -> Result<SqlStore, DataDirError> {
        Ok(SqlStore::open_sqlite(&self.database()).await?)
    }

    pub fn write_server_url(&self, url: &str) -> Result<(), DataDirError> {
        let path = self.server_url_file();
        replace_file(&path, format!("{url}\n").as_bytes(), 0o644)
            .map_err(|source| self.io("cannot write", &path, source))
    }

    /// Writes a small public file (like `metrics-url`) into the data directory.
    pub fn write_file(&self, name: &str, text: &str) -> Result<(), DataDirError> {
        let path = self.root.join(name);
        replace_file(&path, format!("{text}\n").as_bytes(), 0o644)
            .map_err(|source| self.io("cannot write", &path, source))
    }

    pub fn read_server_url(&self) -> Option<String> {
        data_dir::read_server_url(&self.root)
    }

    fn read_text(&self, path: &Path) -> Result<String, DataDirError> {
        std::fs::read_to_string(path).map_err(|source| self.io("cannot read", path, source))
    }

    fn create_secret(&self, path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
        create_secret_file(path, bytes).map_err(|source| self.io("cannot create", path, source))
    }

    fn create_public(&self, path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
        create_public_file(path, bytes).map_err(|source| self.io("cannot create", path, source))
    }

    fn io(&self, what: &'static str, path: &Path, source: std::io::Error) -> DataDirError {
        DataDirError::Io {
            what,
            path: path.display().to_string(),
            source,
        }
    }
}

/// The operator's names first (the first one names the controller), then the loopback names.
pub fn server_hostnames(given: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in given.iter().map(String::as_str).chain(LOOPBACK_NAMES) {
        let name = name.trim().to_ascii_lowercase();
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}
