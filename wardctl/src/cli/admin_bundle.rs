//! Writing a new admin bundle (`admin issue`, `admin renew`): the key is made here and never
//! sent, only a CSR; the bundle file is claimed before the controller is asked, so a bad path
//! never leaves a certificate without its bundle; the key is encrypted under a passphrase
//! unless `--no-passphrase` says otherwise.

use std::fs::OpenOptions;
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Args;
use tonic::transport::Channel;
use ward_certs::PrivateKeyDer;
use ward_certs::csr::make_csr;
use ward_proto::v1::admin_service_client::AdminServiceClient;
use ward_proto::v1::{self, IssueAdminResponse};
use zeroize::Zeroizing;

use super::ConnectArgs;
use super::connect::{Passphrase, admin_client, prompt, read_passphrase_file};
use super::error::CliError;
use ward_files::bundle::{AdminBundle, LockedBundle};

/// Where the new bundle goes and how its key is protected.
#[derive(Debug, Args)]
pub(super) struct NewBundleArgs {
    /// Where to write the bundle; must not exist yet
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Read the new bundle's passphrase (at least 12 characters) from the first line of FILE
    /// (not readable by every user) instead of asking on the terminal
    #[arg(long, value_name = "FILE", conflicts_with = "no_passphrase")]
    passphrase_file: Option<PathBuf>,
    /// Leave the key unencrypted, for automation whose secret store already guards the file
    #[arg(long)]
    no_passphrase: bool,
}

/// What the controller answered.
pub(super) enum Obtained {
    /// The bundle is written.
    Written {
        admin: v1::Admin,
        out: PathBuf,
        encrypted: bool,
    },
    /// A second admin must approve first; nothing was written.
    AwaitingApproval(v1::AdminRequest),
}

/// Makes a key, asks `call` for a certificate for its CSR, and writes the bundle to `--out`.
pub(super) async fn obtain<F, Fut>(
    name: &str,
    args: NewBundleArgs,
    connect: &ConnectArgs,
    call: F,
) -> Result<Obtained, CliError>
where
    F: FnOnce(AdminServiceClient<Channel>, Vec<u8>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<IssueAdminResponse>, tonic::Status>>,
{
    let NewBundleArgs {
        out,
        passphrase_file,
        no_passphrase,
    } = args;
    // Everything that can be refused is refused before anyone types a passphrase.
    let source = PassphraseSource::choose(no_passphrase, passphrase_file.as_deref())?;
    check_out_is_free(&out)?;
    let passphrase = source.get(name)?;
    let key = PrivateKeyDer::generate().map_err(|e| CliError::failed(e.to_string()))?;
    let sealed = passphrase
        .as_ref()
        .map(|p| ward_certs::keyfile::encrypt(&key, p))
        .transpose()
        .map_err(|e| CliError::failed(e.to_string()))?;
    drop(passphrase);
    let csr = make_csr(&key, name).map_err(|e| CliError::failed(e.to_string()))?;
    // Connecting may ask for the caller's own passphrase: before the file is claimed.
    let client = admin_client(connect).await?;
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
    let answer = match call(client, csr).await {
        Ok(answer) => answer.into_inner(),
        Err(status) => {
            drop(file);
            let _ = std::fs::remove_file(&out);
            return Err(status.into());
        }
    };
    if answer.awaiting_approval {
        drop(file);
        let _ = std::fs::remove_file(&out);
        let request = answer.request.ok_or_else(|| {
            CliError::failed("the controller's answer lacked the request awaiting approval")
        })?;
        return Ok(Obtained::AwaitingApproval(request));
    }
    let (admin, pem) = match bundle(answer, key, sealed) {
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
    Ok(Obtained::Written {
        admin,
        out,
        encrypted: !no_passphrase,
    })
}

/// The admin record and the bundle's PEM text (with `sealed`, the key encrypted).
fn bundle(
    answer: IssueAdminResponse,
    key: PrivateKeyDer,
    sealed: Option<ward_certs::keyfile::EncryptedKey>,
) -> Result<(v1::Admin, Zeroizing<String>), CliError> {
    let admin = answer
        .admin
        .ok_or_else(|| CliError::failed("the controller's answer lacked the admin record"))?;
    // The CA that signs first, then (during a CA rotation) the other one trusted.
    let mut cas = answer.ca_certificates_der.into_iter();
    let ca_der = cas
        .next()
        .ok_or_else(|| CliError::failed("the controller's answer lacked the CA certificate"))?;
    let other_cas: Vec<Vec<u8>> = cas.collect();
    let pem = match sealed {
        Some(key) => Zeroizing::new(
            LockedBundle {
                certificate_der: answer.certificate_der,
                ca_der,
                other_cas,
                key,
            }
            .to_pem(),
        ),
        None => AdminBundle {
            certificate_der: answer.certificate_der,
            ca_der,
            other_cas,
            key,
        }
        .to_pem(),
    };
    Ok((admin, pem))
}

/// The shortest passphrase accepted for a new bundle.
pub(super) const MIN_PASSPHRASE_CHARS: usize = 12;

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
