//! `wardctl ca`: the certificates the controller's trust rests on, and when they expire.

use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;
use ward_certs::live::Validity;
use ward_proto::v1::ListAdminsRequest;

use super::ConnectArgs;
use super::connect::admin_client;
use super::error::CliError;
use super::output::{OutputFormat, print_json, table};
use crate::core::Timestamp;

#[derive(Debug, Subcommand)]
pub enum CaCommand {
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
    /// Replace the CA with overlapping trust: NOT SUPPORTED YET (it fails and changes
    /// nothing). See deploy/OPERATIONS.md, "Certificates over time"
    #[command(
        after_help = "Examples:\n  wardctl ca rotate   (fails and changes nothing: not supported yet)"
    )]
    Rotate {
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(Debug, Serialize)]
struct Expiry {
    /// What it is: ca, server, or admin NAME.
    subject: String,
    not_before: String,
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
        not_before: Timestamp::from_datetime(v.not_before).rfc3339(),
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

pub async fn run(command: CaCommand, output: OutputFormat) -> Result<(), CliError> {
    match command {
        CaCommand::Status { connect } => status(&connect, output).await,
        CaCommand::Rotate { .. } => Err(CliError::failed(
            "CA rotation is not supported yet: agents pin a single CA and cannot yet receive a new trust bundle at check-in, so a new CA would cut every device off. Nothing was changed. The CA is valid for 10 years from `wardctl init` (`wardctl ca status` shows when it expires); see deploy/OPERATIONS.md, \"Certificates over time\"",
        )),
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
    let trusted = match crate::bundle::BundleFile::read(bundle_path) {
        Ok(crate::bundle::BundleFile::Plain(bundle)) => bundle.ca_der,
        Ok(crate::bundle::BundleFile::Encrypted(locked)) => locked.ca_der,
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
            not_before: String::new(),
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
