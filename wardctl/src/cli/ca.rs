//! `wardctl ca`: the certificates the controller's trust rests on, and when they expire.

use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;
use ward_certs::live::Validity;
use ward_proto::v1::{ListAdminsRequest, RotateCaRequest};

use super::ConnectArgs;
use super::connect::admin_client;
use super::error::CliError;
use super::output::{OutputFormat, print_json, table};
use ward_core::Timestamp;

#[derive(Debug, Subcommand)]
pub(super) enum CaCommand {
    /// When the CA, the server certificate the controller presents and every active admin's
    /// certificate expire. The server certificate renews itself two thirds into its lifetime;
    /// admins renew theirs with `wardctl admin renew`
    #[command(
        after_help = "Examples:\n  wardctl ca status --admin-cert ~/alice.pem --server https://ward.hospital.org:7443\n  wardctl ca status --output json | jq '.server.expires_at'"
    )]
    Status {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Replace the CA with overlapping trust, one step at a time: `introduce` a new CA (agents
    /// are given it to trust at their next check-in), `activate` it once every active device
    /// trusts it (it signs from then on; the former CA stays trusted), `retire` the former CA
    /// once nothing valid was issued by it; `cancel` drops an introduced CA before it is
    /// activated. `status` shows where the fleet stands. A step
    /// refused changes nothing; each step taken is audited. See deploy/OPERATIONS.md,
    /// "Rotation"
    #[command(
        after_help = "Examples:\n  wardctl ca rotate status\n  wardctl ca rotate introduce\n  wardctl ca rotate status --output json | jq '.devices_trusting_all'\n  wardctl ca rotate activate\n  wardctl ca rotate retire"
    )]
    Rotate {
        /// The step to take
        #[arg(value_enum)]
        step: RotateStep,
        /// activate: go ahead although some active devices do not trust the new CA yet (they
        /// lose the controller until enrolled again); retire: although valid certificates were
        /// issued by the former CA (they stop working). Under `serve --require-approval`, one
        /// that cuts off more than the approval threshold first waits for a second admin's
        /// `wardctl admin approve ca-rotation-<12 hex>` (the refusal names it: the CA
        /// concerned); then run the same command again
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(super) enum RotateStep {
    Status,
    Introduce,
    Activate,
    Retire,
    Cancel,
}

impl RotateStep {
    fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Introduce => "introduce",
            Self::Activate => "activate",
            Self::Retire => "retire",
            Self::Cancel => "cancel",
        }
    }
}

#[derive(Debug, Serialize)]
struct Expiry {
    /// What it is: ca, server, or admin NAME.
    subject: String,
    /// `null` only where a controller older than this field does not say (an admin's).
    not_before: Option<String>,
    expires_at: String,
    /// Negative once expired.
    seconds_left: i64,
    /// When the controller renews it by itself (server certificate only).
    #[serde(skip_serializing_if = "Option::is_none")]
    renews_at: Option<String>,
}

fn expiry(subject: String, der: &[u8], now: time::OffsetDateTime) -> Option<Expiry> {
    let v = Validity::of(der)?;
    Some(Expiry {
        subject,
        not_before: Some(Timestamp::from_datetime(v.not_before).rfc3339()),
        expires_at: Timestamp::from_datetime(v.not_after).rfc3339(),
        seconds_left: v.seconds_left(now),
        renews_at: None,
    })
}

#[derive(Debug, Serialize)]
struct Status {
    server_url: String,
    ca_hash: String,
    ca: Expiry,
    /// The certificate the controller (the replica reached) presents now.
    server: Expiry,
    /// Active admins' newest certificates, soonest expiry first.
    admins: Vec<Expiry>,
}

pub(super) async fn run(command: CaCommand, output: OutputFormat) -> Result<(), CliError> {
    match command {
        CaCommand::Status { connect } => status(&connect, output).await,
        CaCommand::Rotate {
            step,
            force,
            connect,
        } => rotate(step, force, &connect, output).await,
    }
}

async fn status(connect: &ConnectArgs, output: OutputFormat) -> Result<(), CliError> {
    let mut client = admin_client(connect).await?;
    let listed = client.list_admins(ListAdminsRequest {}).await?.into_inner();
    let (url, tls, bundle_path) = super::connect::last_target()
        .ok_or_else(|| CliError::failed("no controller was reached"))?;
    let chain = presented_chain(url, tls).await?;
    let now = time::OffsetDateTime::now_utc();
    let bad = |what: &str| CliError::failed(format!("the controller presented no readable {what}"));
    let leaf = chain.first().ok_or_else(|| bad("server certificate"))?;
    // The CA this admin bundle trusts (the server certificate was verified against it), not
    // whatever second certificate the server sends.
    let trusted = match ward_files::bundle::BundleFile::read(bundle_path) {
        Ok(ward_files::bundle::BundleFile::Plain(bundle)) => bundle.ca_der,
        Ok(ward_files::bundle::BundleFile::Encrypted(locked)) => locked.ca_der,
        Err(e) => {
            return Err(CliError::failed(format!(
                "cannot read the CA from {}: {e}",
                bundle_path.display()
            )));
        }
    };
    if chain.get(1) != Some(&trusted) {
        eprintln!(
            "warning: the controller's chain does not end with the CA this admin bundle trusts; \
             the CA shown is the bundle's"
        );
    }
    let ca_der = &trusted;
    let mut server = expiry("server".into(), leaf, now).ok_or_else(|| bad("server certificate"))?;
    server.renews_at = Validity::of(leaf).map(|v| Timestamp::from_datetime(v.renew_at()).rfc3339());
    let now_ms = Timestamp::from_datetime(now).unix_ms();
    let mut admins: Vec<Expiry> = listed
        .admins
        .into_iter()
        .filter(|a| a.state != "revoked" && a.expires_at_unix_ms != 0)
        .map(|a| Expiry {
            subject: format!("admin {}", a.name),
            // 0 from a controller older than this field.
            not_before: (a.not_before_unix_ms != 0)
                .then(|| Timestamp::from_unix_ms(a.not_before_unix_ms).rfc3339()),
            expires_at: Timestamp::from_unix_ms(a.expires_at_unix_ms).rfc3339(),
            seconds_left: (a.expires_at_unix_ms - now_ms) / 1000,
            renews_at: None,
        })
        .collect();
    admins.sort_by_key(|a| a.seconds_left);
    let status = Status {
        server_url: url.to_string(),
        ca_hash: ward_certs::CaHash::of_certificate(ca_der).to_string(),
        ca: expiry("ca".into(), ca_der, now).ok_or_else(|| bad("CA certificate"))?,
        server,
        admins,
    };
    match output {
        OutputFormat::Json => print_json(&status),
        OutputFormat::Table => {
            println!("controller {} (CA {})", status.server_url, status.ca_hash);
            let mut t = table(&["certificate", "expires", "left", "renews by itself"]);
            for e in [&status.ca, &status.server]
                .into_iter()
                .chain(&status.admins)
            {
                t.add_row(vec![
                    e.subject.clone(),
                    e.expires_at.clone(),
                    left(e.seconds_left),
                    e.renews_at.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            println!("{t}");
            Ok(())
        }
    }
}

#[derive(Debug, Serialize)]
struct RotationCa {
    ca_hash: String,
    /// active | introduced | trusted | retired
    ca_state: String,
    expires_at: String,
    live_device_certificates: u64,
    live_admin_certificates: u64,
}

#[derive(Debug, Serialize)]
struct Rotation {
    /// What the step did; `null` for status.
    done: Option<String>,
    cas: Vec<RotationCa>,
    active_devices: u64,
    /// Active devices whose agent trusts every CA trusted now.
    devices_trusting_all: u64,
    /// Some of the active devices that do not yet (at most 20).
    devices_behind: Vec<String>,
    next_step: String,
}

async fn rotate(
    step: RotateStep,
    force: bool,
    connect: &ConnectArgs,
    output: OutputFormat,
) -> Result<(), CliError> {
    let mut client = admin_client(connect).await?;
    let answer = client
        .rotate_ca(RotateCaRequest {
            step: step.as_str().to_owned(),
            force,
        })
        .await?
        .into_inner();
    let rotation = Rotation {
        done: (!answer.done.is_empty()).then_some(answer.done),
        cas: answer
            .cas
            .into_iter()
            .map(|ca| RotationCa {
                ca_hash: ca.ca_hash,
                ca_state: ca.state,
                expires_at: Timestamp::from_unix_ms(ca.not_after_unix_ms).rfc3339(),
                live_device_certificates: ca.live_device_certificates,
                live_admin_certificates: ca.live_admin_certificates,
            })
            .collect(),
        active_devices: answer.active_devices,
        devices_trusting_all: answer.devices_trusting_all,
        devices_behind: answer.devices_behind,
        next_step: answer.next_step,
    };
    match output {
        OutputFormat::Json => print_json(&rotation),
        OutputFormat::Table => {
            if let Some(done) = &rotation.done {
                println!("{done}");
            }
            let mut t = table(&["CA", "state", "expires", "valid device / admin certs"]);
            for ca in &rotation.cas {
                t.add_row(vec![
                    ca.ca_hash.clone(),
                    ca.ca_state.clone(),
                    ca.expires_at.clone(),
                    format!(
                        "{} / {}",
                        ca.live_device_certificates, ca.live_admin_certificates
                    ),
                ]);
            }
            println!("{t}");
            println!(
                "{} of {} active devices trust every CA trusted now",
                rotation.devices_trusting_all, rotation.active_devices
            );
            if !rotation.devices_behind.is_empty() {
                println!("not yet: {}", rotation.devices_behind.join(", "));
            }
            println!("next: {}", rotation.next_step);
            Ok(())
        }
    }
}

fn left(seconds: i64) -> String {
    if seconds <= 0 {
        return "EXPIRED".into();
    }
    let days = seconds / 86_400;
    if days > 0 {
        format!("{days}d")
    } else {
        format!("{}h", seconds / 3600)
    }
}

/// The chain (leaf, CA) the controller presents to a new connection, verified by `tls` (the
/// admin bundle's CA).
async fn presented_chain(
    url: &ward_proto::transport::ServerUrl,
    tls: &rustls::ClientConfig,
) -> Result<Vec<Vec<u8>>, CliError> {
    let probe = async {
        let tcp = tokio::net::TcpStream::connect((url.host(), url.port())).await?;
        let name = rustls::pki_types::ServerName::try_from(url.host().to_owned())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let session = tokio_rustls::TlsConnector::from(Arc::new(tls.clone()))
            .connect(name, tcp)
            .await?;
        Ok::<_, std::io::Error>(
            session
                .get_ref()
                .1
                .peer_certificates()
                .map(|certs| certs.iter().map(|c| c.to_vec()).collect())
                .unwrap_or_default(),
        )
    };
    match tokio::time::timeout(Duration::from_secs(10), probe).await {
        Ok(Ok(chain)) => Ok(chain),
        Ok(Err(e)) => Err(CliError::failed(format!(
            "cannot read the server certificate of {url}: {e}"
        ))),
        Err(_) => Err(CliError::failed(format!(
            "cannot read the server certificate of {url}: no answer within 10 s"
        ))),
    }
}
