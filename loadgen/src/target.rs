//! The server under test, as a child process: a real `wardctl serve` (SQLite in a fresh data
//! directory, or a fresh PostgreSQL database), or the bare-stack baseline
//! (`ward-loadgen baseline-server`). Both write their URL to `DIR/server-url`, and both can be
//! killed and restarted on the same port.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tonic::transport::Channel;
use ward_certs::{CertificateAuthority, Identity, PrivateKeyDer};
use ward_files::bundle::AdminBundle;
use ward_proto::transport::{ChannelOptions, ServerUrl, connect};
use ward_proto::v1::admin_service_client::AdminServiceClient;

use crate::LoadError;
use crate::pg::FreshDatabase;

/// Which server a scenario runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ward,
    Baseline,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ward => "ward",
            Kind::Baseline => "baseline",
        }
    }
}

/// Where the programs are and which store Ward uses.
#[derive(Clone, Debug)]
pub struct Programs {
    pub wardctl: PathBuf,
    /// This program, run as `baseline-server` for the baseline.
    pub loadgen: PathBuf,
    /// A PostgreSQL server URL: each run gets a fresh database on it. `None`: SQLite.
    pub postgres: Option<String>,
    /// `WARD_LOG` for the controller (its logs go to a file in the run's directory).
    pub controller_log: String,
    /// More flags for `wardctl serve` (`--serve-arg`), after Ward's own.
    pub serve_args: Vec<String>,
}

/// A client identity (certificate chain and key) for admin calls.
#[derive(Debug)]
pub struct ClientIdentity {
    pub chain: Vec<Vec<u8>>,
    pub key: PrivateKeyDer,
}

#[derive(Debug)]
pub struct Server {
    pub kind: Kind,
    programs: Programs,
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub url: ServerUrl,
    pub ca_der: Vec<u8>,
    admin: ClientIdentity,
    /// The baseline's CA, which issues its simulated devices' certificates directly.
    pub baseline_ca: Option<Arc<CertificateAuthority>>,
    db: Option<FreshDatabase>,
}

/// How long a server may take to write its URL.
const START_TIMEOUT: Duration = Duration::from_secs(120);

impl Server {
    pub async fn start(kind: Kind, programs: &Programs) -> Result<Self, LoadError> {
        let dir = tempfile::Builder::new()
            .prefix("ward-loadgen-")
            .tempdir()
            .map_err(|e| LoadError::Setup(format!("cannot create a temporary directory: {e}")))?;
        let data = dir.path().join("data");
        let (db, baseline_ca) = match kind {
            Kind::Ward => {
                let db = match &programs.postgres {
                    Some(server) => Some(FreshDatabase::create(server).await?),
                    None => None,
                };
                (db, None)
            }
            Kind::Baseline => (None, Some(make_baseline_pki(&data)?)),
        };
        let mut server = Self {
            kind,
            programs: programs.clone(),
            dir,
            child: None,
            url: "https://127.0.0.1:1"
                .parse()
                .map_err(|e| LoadError::Setup(format!("{e}")))?,
            ca_der: Vec::new(),
            admin: ClientIdentity {
                chain: Vec::new(),
                key: PrivateKeyDer::new(Vec::new()),
            },
            baseline_ca,
            db,
        };
        server.spawn("127.0.0.1:0").await?;
        server.admin = match kind {
            Kind::Ward => {
                let bundle = AdminBundle::read(&data.join("admin.pem"))
                    .map_err(|e| LoadError::Setup(e.to_string()))?;
                server.ca_der = bundle.ca_der;
                ClientIdentity {
                    chain: vec![bundle.certificate_der],
                    key: bundle.key,
                }
            }
            Kind::Baseline => {
                let ca = server
                    .baseline_ca
                    .clone()
                    .ok_or_else(|| LoadError::Setup("baseline CA missing".into()))?;
                server.ca_der = ca.cert_der().to_vec();
                issue_identity(&ca, &Identity::Admin(admin_name()?))?
            }
        };
        Ok(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.kind.name()))
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Result<u32, LoadError> {
        self.child.as_ref().and_then(Child::id).ok_or_else(|| {
            LoadError::Setup(format!("the {} server is not running", self.kind.name()))
        })
    }

    async fn spawn(&mut self, listen: &str) -> Result<(), LoadError> {
        let data = self.data_dir();
        let url_file = data.join("server-url");
        let _ = std::fs::remove_file(&url_file);
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| LoadError::Setup(format!("cannot open the server log: {e}")))?;
        let data_arg = data.to_string_lossy().into_owned();
        let mut command = match self.kind {
            Kind::Ward => {
                let mut c = Command::new(&self.programs.wardctl);
                c.args(["serve", "--data-dir", &data_arg, "--listen", listen])
                    // The store writer's batch figures are read from /metrics.
                    .args(["--metrics-listen", "127.0.0.1:0"])
                    // The enroll scenario is an enrollment storm from one address.
                    .args([
                        "--enroll-burst",
                        "1000000",
                        "--enroll-per-minute",
                        "1000000",
                    ])
                    .env("WARD_LOG", &self.programs.controller_log)
                    .env_remove("WARD_DATABASE_URL")
                    .env_remove("WARD_DATA_DIR");
                if let Some(db) = &self.db {
                    c.args(["--database-url", &db.url]);
                }
                c.args(&self.programs.serve_args);
                c
            }
            Kind::Baseline => {
                let mut c = Command::new(&self.programs.loadgen);
                c.args(["baseline-server", "--dir", &data_arg, "--listen", listen]);
                c
            }
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let program = match self.kind {
            Kind::Ward => &self.programs.wardctl,
            Kind::Baseline => &self.programs.loadgen,
        };
        let mut child = command.spawn().map_err(|e| {
            LoadError::Setup(format!(
                "cannot start {}: {e} (build it with `cargo build --release -p ward-controller -p ward-loadgen`, or pass --wardctl)",
                program.display()
            ))
        })?;
        let start = Instant::now();
        let url = loop {
            if let Some(url) = std::fs::read_to_string(&url_file)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
            {
                break url;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(LoadError::Setup(format!(
                    "the {} server exited ({status}) before serving; its log ({}):\n{}",
                    self.kind.name(),
                    self.log_path().display(),
                    tail(&self.log_path())
                )));
            }
            if start.elapsed() > START_TIMEOUT {
                return Err(LoadError::Setup(format!(
                    "the {} server did not start within {START_TIMEOUT:?}; its log:\n{}",
                    self.kind.name(),
                    tail(&self.log_path())
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        self.url = url
            .parse()
            .map_err(|e| LoadError::Setup(format!("server-url: {e}")))?;
        self.child = Some(child);
        Ok(())
    }

    /// The store writer's figures from the controller's `/metrics`: (batches, mean jobs per
    /// batch, mean commit milliseconds). `None` for the baseline, or when they can't be read.
    pub async fn writer_batches(&self) -> Option<(f64, f64, f64)> {
        let url = std::fs::read_to_string(self.data_dir().join("metrics-url")).ok()?;
        let addr = url.trim().strip_prefix("http://")?.to_owned();
        let text = http_get(&addr, "/metrics").await?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        };
        let batches = value("ward_store_batch_jobs_count")?;
        let jobs = value("ward_store_batch_jobs_sum")?;
        let commit = value("ward_store_commit_seconds_sum")?;
        Some((
            batches,
            jobs / batches.max(1.0),
            1000.0 * commit / batches.max(1.0),
        ))
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub async fn kill(&mut self) -> Result<(), LoadError> {
        if let Some(mut child) = self.child.take() {
            child
                .kill()
                .await
                .map_err(|e| LoadError::Setup(format!("cannot kill the server: {e}")))?;
        }
        Ok(())
    }

    /// Starts the server again on the same port and data; returns when it serves.
    pub async fn restart(&mut self) -> Result<(), LoadError> {
        let listen = format!("{}:{}", self.url.host(), self.url.port());
        self.spawn(&listen).await
    }

    pub async fn stop(mut self) {
        let _ = self.kill().await;
        // Dropping the database only after the controller is gone.
        drop(self.db.take());
    }

    /// The admin API (the data directory's admin bundle, or a baseline certificate).
    pub async fn admin(&self) -> Result<AdminServiceClient<Channel>, LoadError> {
        let tls = ward_certs::tls::client_config(
            &self.ca_der,
            Some((&self.admin.chain, &self.admin.key)),
        )
        .map_err(|e| LoadError::Setup(e.to_string()))?;
        let options = ChannelOptions {
            connect_timeout: Duration::from_secs(30),
            request_timeout: Some(Duration::from_secs(1800)),
        };
        let channel = connect(&self.url, tls, options)
            .await
            .map_err(|e| LoadError::Setup(e.to_string()))?;
        Ok(AdminServiceClient::new(channel)
            .max_decoding_message_size(wardctl::cli::connect::ADMIN_RESPONSE_BYTES))
    }

    pub fn store_name(&self) -> &'static str {
        match (self.kind, &self.db) {
            (Kind::Baseline, _) => "none",
            (Kind::Ward, Some(_)) => "postgres",
            (Kind::Ward, None) => "sqlite",
        }
    }
}

fn admin_name() -> Result<ward_certs::AdminName, LoadError> {
    "loadgen"
        .parse()
        .map_err(|e| LoadError::Setup(format!("admin name: {e}")))
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Issues a certificate for `identity` from the baseline CA, for a fresh key.
pub fn issue_identity(
    ca: &CertificateAuthority,
    identity: &Identity,
) -> Result<ClientIdentity, LoadError> {
    let cert = |e: ward_certs::CertError| LoadError::Setup(format!("baseline PKI: {e}"));
    let key = PrivateKeyDer::generate().map_err(cert)?;
    let csr = ward_certs::csr::make_csr(&key, "loadgen").map_err(cert)?;
    let csr = ward_certs::VerifiedCsr::from_der(&csr)
        .map_err(|e| LoadError::Setup(format!("baseline PKI: {e}")))?;
    let issued = ca
        .issue_client(
            &csr,
            identity,
            time::OffsetDateTime::now_utc(),
            Duration::from_secs(7 * 24 * 3600),
        )
        .map_err(cert)?;
    Ok(ClientIdentity {
        chain: vec![issued.der],
        key,
    })
}

/// The baseline's own CA and server certificate, written like a controller's data directory
/// (`ca.pem`, `server.pem` with the chain, `server.key`).
fn make_baseline_pki(dir: &Path) -> Result<Arc<CertificateAuthority>, LoadError> {
    let cert = |e: ward_certs::CertError| LoadError::Setup(format!("baseline PKI: {e}"));
    let io = |e: std::io::Error| {
        LoadError::Setup(format!("baseline PKI files in {}: {e}", dir.display()))
    };
    ward_files::create_private_dir(dir).map_err(io)?;
    let now = time::OffsetDateTime::now_utc();
    let ca = CertificateAuthority::create("Ward loadgen baseline CA", now).map_err(cert)?;
    let hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let (server, key) = ca
        .issue_server(&hosts, now, Duration::from_secs(30 * 24 * 3600))
        .map_err(cert)?;
    ward_files::create_public_file(&dir.join("ca.pem"), ca.cert_pem().as_bytes()).map_err(io)?;
    let chain = format!(
        "{}{}",
        ward_certs::certificate_to_pem(&server.der),
        ca.cert_pem()
    );
    ward_files::create_public_file(&dir.join("server.pem"), chain.as_bytes()).map_err(io)?;
    ward_files::create_secret_file(&dir.join("server.key"), key.to_pem().as_bytes()).map_err(io)?;
    Ok(Arc::new(ca))
}

/// A plain HTTP/1.0 GET on loopback; the body, or `None`.
async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .ok()?
    .ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}
