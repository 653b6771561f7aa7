//! `wardctl admin …`

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;
use tonic::transport::Channel;
use ward_certs::PrivateKeyDer;
use ward_certs::csr::make_csr;
use ward_certs::keyfile::EncryptedKey;
use ward_proto::v1::admin_service_client::AdminServiceClient;
use ward_proto::v1::{self, IssueAdminRequest, ListAdminsRequest};
use zeroize::Zeroizing;

use super::ConnectArgs;
use super::connect::{Passphrase, admin_client, prompt, read_passphrase_file};
use super::error::CliError;
use super::output::{OutputFormat, print_json, table};
use crate::bundle::{AdminBundle, LockedBundle};
use crate::core::{AdminRole, Timestamp};
use crate::server;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Register an admin and write its bundle (certificate, CA, key; mode 0600). The key is made here, never sent, and encrypted with a passphrase (asked on the terminal, or --passphrase-file)
    Issue {
        /// The admin's name (a-z, 0-9, '.', '_', '-')
        name: String,
        /// What the admin may do
        #[arg(long, value_parser = ["admin", "helpdesk", "offboarding"])]
        role: String,
        /// Where to write the bundle; must not exist yet
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Certificate lifetime [default: 90d]
        #[arg(long, value_parser = super::parse_duration, value_name = "DURATION")]
        lifetime: Option<Duration>,
        /// Read the new bundle's passphrase (at least 12 characters) from the first line of FILE
        /// (not readable by every user) instead of asking on the terminal
        #[arg(long, value_name = "FILE", conflicts_with = "no_passphrase")]
        passphrase_file: Option<PathBuf>,
        /// Leave the key unencrypted, for automation whose secret store already guards the file
        #[arg(long)]
        no_passphrase: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List registered admins
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(Serialize)]
struct AdminView {
    name: String,
    role: &'static str,
    created_at: String,
    created_by: String,
}

impl From<v1::Admin> for AdminView {
    fn from(a: v1::Admin) -> Self {
        Self {
            role: match v1::AdminRole::try_from(a.role) {
                Ok(v1::AdminRole::Admin) => "admin",
                Ok(v1::AdminRole::Helpdesk) => "helpdesk",
                Ok(v1::AdminRole::Offboarding) => "offboarding",
                _ => "unknown",
            },
            name: a.name,
            created_at: Timestamp::from_unix_ms(a.created_at_unix_ms).rfc3339(),
            created_by: a.created_by,
        }
    }
}

pub async fn run(cmd: AdminCommand, output: OutputFormat) -> Result<(), CliError> {
    match cmd {
        AdminCommand::Issue {
            name,
            role,
            out,
            lifetime,
            passphrase_file,
            no_passphrase,
            connect,
        } => {
            let role: AdminRole = role.parse().map_err(CliError::usage)?;
            let lifetime_seconds = lifetime
                .map(|d| super::whole_seconds("--lifetime", d))
                .transpose()?
                .unwrap_or(0);
            // Everything that can be refused is refused before anyone types a passphrase.
            let source = PassphraseSource::choose(no_passphrase, passphrase_file.as_deref())?;
            check_out_is_free(&out)?;
            let passphrase = source.get(&name)?;
            let key = PrivateKeyDer::generate().map_err(|e| CliError::failed(e.to_string()))?;
            let sealed = passphrase
                .as_ref()
                .map(|p| ward_certs::keyfile::encrypt(&key, p))
                .transpose()
                .map_err(|e| CliError::failed(e.to_string()))?;
            drop(passphrase);
            // Connecting may ask for the caller's own passphrase: before the file is claimed.
            let mut client = admin_client(&connect).await?;
            // Claim the output file before asking the controller, so a bad path never leaves a
            // registered admin without a bundle.
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)
                .map_err(|e| {
                    CliError::usage(format!(
                        "cannot create {}: {e} (its directory must exist and the file must not)",
                        out.display()
                    ))
                })?;
            let issued = issue(&mut client, &name, role, lifetime_seconds, key, sealed).await;
            let (admin, pem) = match issued {
                Ok(ok) => ok,
                Err(e) => {
                    drop(file);
                    let _ = std::fs::remove_file(&out);
                    return Err(e);
                }
            };
            file.write_all(pem.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| CliError::failed(format!("cannot write {}: {e}", out.display())))?;
            let encrypted = !no_passphrase;
            let view = AdminView::from(admin);
            match output {
                OutputFormat::Json => print_json(&serde_json::json!({
                    "name": view.name, "role": view.role, "bundle": out.display().to_string(),
                    "key_encrypted": encrypted,
                })),
                OutputFormat::Table => {
                    println!(
                        "Admin {} ({}) issued; bundle written to {} (mode 0600, {}).",
                        view.name,
                        view.role,
                        out.display(),
                        if encrypted {
                            "key encrypted with the passphrase"
                        } else {
                            "key NOT encrypted: --no-passphrase"
                        }
                    );
                    Ok(())
                }
            }
        }
        AdminCommand::List { connect } => {
            let mut client = admin_client(&connect).await?;
            let admins: Vec<AdminView> = client
                .list_admins(ListAdminsRequest {})
                .await?
                .into_inner()
                .admins
                .into_iter()
                .map(AdminView::from)
                .collect();
            match output {
                OutputFormat::Json => print_json(&admins),
                OutputFormat::Table => {
                    let mut t = table(&["name", "role", "created", "created by"]);
                    for a in &admins {
                        t.add_row(vec![
                            a.name.clone(),
                            a.role.into(),
                            a.created_at.clone(),
                            a.created_by.clone(),
                        ]);
                    }
                    println!("{t}");
                    Ok(())
                }
            }
        }
    }
}

/// The shortest passphrase accepted for a new bundle.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// Where a new bundle's passphrase comes from.
enum PassphraseSource {
    /// --no-passphrase: the key is written in the clear.
    None,
    /// --passphrase-file, already read and checked.
    File(Passphrase),
    /// Asked on the terminal (twice).
    Terminal,
}

impl PassphraseSource {
    /// Everything that can be refused without asking anyone: no side effects.
    fn choose(no_passphrase: bool, file: Option<&Path>) -> Result<Self, CliError> {
        if no_passphrase {
            return Ok(Self::None);
        }
        if let Some(path) = file {
            let passphrase = read_passphrase_file(path, "--passphrase-file")?;
            check_strength(&passphrase).map_err(|why| {
                CliError::usage(format!("the passphrase in {}: {why}", path.display()))
            })?;
            return Ok(Self::File(passphrase));
        }
        if !std::io::stdin().is_terminal() {
            return Err(CliError::usage(
                "the new bundle's key needs a passphrase and stdin is not a terminal to ask for one: pass --passphrase-file FILE (its first line; not readable by every user), or --no-passphrase if a secret store already guards the bundle",
            ));
        }
        Ok(Self::Terminal)
    }

    /// The passphrase, asking on the terminal if that is where it comes from.
    fn get(self, name: &str) -> Result<Option<Passphrase>, CliError> {
        match self {
            Self::None => Ok(None),
            Self::File(passphrase) => Ok(Some(passphrase)),
            Self::Terminal => ask_new_passphrase(name).map(Some),
        }
    }
}

/// A passphrase must have at least [`MIN_PASSPHRASE_CHARS`] characters.
fn check_strength(passphrase: &[u8]) -> Result<(), String> {
    let chars = std::str::from_utf8(passphrase).map_or(passphrase.len(), |s| s.chars().count());
    if chars < MIN_PASSPHRASE_CHARS {
        return Err(format!(
            "a passphrase needs at least {MIN_PASSPHRASE_CHARS} characters (this one has {chars}); a few unrelated words make a good one"
        ));
    }
    Ok(())
}

/// Asks twice on the terminal; three tries to give a long enough passphrase twice alike.
fn ask_new_passphrase(name: &str) -> Result<Passphrase, CliError> {
    const ATTEMPTS: usize = 3;
    let mut attempt = 1;
    loop {
        let first = prompt(&format!(
            "New passphrase for {name}'s bundle (at least {MIN_PASSPHRASE_CHARS} characters): "
        ))?;
        let problem = match check_strength(&first) {
            Err(why) => why,
            Ok(()) => {
                let again = prompt("Repeat the passphrase: ")?;
                if again == first {
                    return Ok(first);
                }
                "the two passphrases differ".to_owned()
            }
        };
        if attempt == ATTEMPTS {
            return Err(CliError::usage(format!(
                "no passphrase set: {problem}; gave up after {ATTEMPTS} attempts"
            )));
        }
        eprintln!("{problem}; try again.");
        attempt += 1;
    }
}

/// Refuses an output path that exists or whose directory does not, before any prompt (creating
/// the file with `create_new` still decides).
fn check_out_is_free(out: &Path) -> Result<(), CliError> {
    if out.symlink_metadata().is_ok() {
        return Err(CliError::usage(format!(
            "cannot create {}: it already exists (the bundle is written to a new file)",
            out.display()
        )));
    }
    match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => Err(CliError::usage(format!(
            "cannot create {}: the directory {} does not exist",
            out.display(),
            dir.display()
        ))),
        _ => Ok(()),
    }
}

/// Asks the controller for the admin's certificate and returns the admin record and the
/// bundle's PEM text (with `sealed`, the key encrypted, when there is one).
async fn issue(
    client: &mut AdminServiceClient<Channel>,
    name: &str,
    role: AdminRole,
    lifetime_seconds: u64,
    key: PrivateKeyDer,
    sealed: Option<EncryptedKey>,
) -> Result<(v1::Admin, Zeroizing<String>), CliError> {
    let csr = make_csr(&key, name).map_err(|e| CliError::failed(e.to_string()))?;
    let resp = client
        .issue_admin(IssueAdminRequest {
            name: name.to_owned(),
            role: server::role_to_wire(role) as i32,
            csr_der: csr,
            lifetime_seconds,
        })
        .await?
        .into_inner();
    let admin = resp
        .admin
        .ok_or_else(|| CliError::failed("the controller's answer lacked the admin record"))?;
    let ca_der = resp
        .ca_certificates_der
        .into_iter()
        .next()
        .ok_or_else(|| CliError::failed("the controller's answer lacked the CA certificate"))?;
    let pem = match sealed {
        Some(key) => Zeroizing::new(
            LockedBundle {
                certificate_der: resp.certificate_der,
                ca_der,
                key,
            }
            .to_pem(),
        ),
        None => AdminBundle {
            certificate_der: resp.certificate_der,
            ca_der,
            key,
        }
        .to_pem(),
    };
    Ok((admin, pem))
}
