//! Connecting `wardctl` to a controller with an admin bundle, and the passphrases that protect
//! bundles' keys.

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tonic::transport::Channel;
use ward_proto::transport::{ChannelOptions, ServerUrl, connect};
use ward_proto::v1::admin_service_client::AdminServiceClient;
use zeroize::Zeroizing;

use super::ConnectArgs;
use super::error::{CliError, Exit};
use ward_files::bundle::{AdminBundle, BundleError, BundleFile, LockedBundle};
use ward_files::data_dir;

pub const DEFAULT_SERVER: &str = "https://localhost:7443";

/// The largest answer `wardctl` accepts from the (authenticated) controller: lists of a large
/// fleet's devices, or of 10,000 commands with receipts, are several MiB.
pub const ADMIN_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Names a file whose first line is the passphrase of the admin bundle's key, for scripts.
pub const PASSPHRASE_FILE_ENV: &str = "WARD_ADMIN_PASSPHRASE_FILE";

/// Terminal attempts at an existing bundle's passphrase before giving up.
const PROMPT_ATTEMPTS: usize = 3;

/// The longest passphrase line read from a file.
const MAX_PASSPHRASE_BYTES: usize = 1024;

/// A passphrase, zeroized on drop. Never printed.
pub type Passphrase = Zeroizing<Vec<u8>>;

pub async fn admin_client(args: &ConnectArgs) -> Result<AdminServiceClient<Channel>, CliError> {
    let host_dir = args.data_dir.as_deref();
    let bundle_path = match (&args.admin_cert, &host_dir) {
        (Some(path), _) => path.clone(),
        (None, Some(dir)) if !dir.exists() => {
            return Err(CliError::usage(format!(
                "no data directory {}: give the controller's (`wardctl serve --data-dir DIR` \
                 makes one), or pass --admin-cert FILE and --server URL",
                dir.display()
            )));
        }
        (None, Some(dir)) => data_dir::admin_bundle(dir),
        (None, None) => {
            return Err(CliError::usage(
                "no admin credentials: pass --admin-cert FILE (or set WARD_ADMIN_CERT), or --data-dir DIR on the controller host",
            ));
        }
    };
    let (server, from) = match (&args.server, &host_dir) {
        (Some(url), _) => (url.clone(), "from --server (or WARD_SERVER)"),
        (None, Some(dir)) => match data_dir::read_server_url(dir) {
            Some(url) => (url, "from DATA_DIR/server-url, written by `wardctl serve`"),
            None => (
                DEFAULT_SERVER.to_owned(),
                "the default (no --server and no DATA_DIR/server-url)",
            ),
        },
        (None, None) => (DEFAULT_SERVER.to_owned(), "the default (no --server)"),
    };
    let _ = SERVER_FROM.set(from);
    let url: ServerUrl = server
        .parse()
        .map_err(|e| CliError::usage(format!("{e}")))?;
    let host_bundle =
        host_dir.is_some_and(|dir| same_file(&bundle_path, &data_dir::admin_bundle(dir)));
    let bundle = load_bundle(&bundle_path, host_bundle)?;
    check_expiry(&bundle, &bundle_path)?;
    let tls = bundle.client_config().map_err(|e| {
        CliError::failed(format!(
            "the admin bundle {} is unusable: {e}",
            bundle_path.display()
        ))
    })?;
    let _ = LAST_TARGET.set((url.clone(), tls.clone(), bundle_path.clone()));
    let channel = connect(&url, tls, ChannelOptions::default()).await.map_err(|e| {
        let text = e.to_string();
        if text.contains("invalid peer certificate") {
            CliError::failed(format!(
                "{text}. The controller at {url} does not present a certificate from the CA in {}: is this admin bundle for this controller?",
                bundle_path.display()
            ))
        } else {
            CliError::failed(text)
        }
    })?;
    Ok(AdminServiceClient::new(channel).max_decoding_message_size(ADMIN_RESPONSE_BYTES))
}

/// The controller, TLS configuration and bundle of the last [`admin_client`] call.
pub(crate) fn last_target() -> Option<&'static (ServerUrl, rustls::ClientConfig, PathBuf)> {
    LAST_TARGET.get()
}

/// The controller and credentials this run connected with, to explain a failure afterwards.
static LAST_TARGET: std::sync::OnceLock<(ServerUrl, rustls::ClientConfig, PathBuf)> =
    std::sync::OnceLock::new();

/// When a call failed without an answer: connects once more and waits for the controller's
/// first bytes. In TLS 1.3 the controller judges the client certificate after the client has
/// finished its side of the handshake, so a refusal (revoked, expired) shows only as an alert
/// on the first read, which a call in flight often loses to "connection closed". A refusal
/// becomes exit 4 with the reason; a controller that cannot be reached at all adds a hint of
/// what to check; anything else leaves `failure` as it was.
pub async fn explain_refusal(failure: CliError) -> CliError {
    let Some((url, tls, bundle)) = LAST_TARGET.get() else {
        return failure;
    };
    let reach = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect((url.host(), url.port())),
    )
    .await;
    let tcp = match reach {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(_)) => return unreachable(failure, url, ""),
        Err(_) => return unreachable(failure, url, " within 5 s"),
    };
    let probe = async {
        let name = rustls::pki_types::ServerName::try_from(url.host().to_owned())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls.clone()))
            .connect(name, tcp)
            .await?;
        let mut first = [0u8; 1];
        tokio::io::AsyncReadExt::read(&mut tls, &mut first).await
    };
    let refusal = match tokio::time::timeout(std::time::Duration::from_secs(5), probe).await {
        Ok(Err(e)) => {
            let text = e.to_string();
            if text.contains("CertificateRevoked") {
                Some("it has been revoked (`wardctl admin list` shows by whom and why)")
            } else if text.contains("CertificateExpired") {
                Some(
                    "it has expired or is not valid yet (another admin can `wardctl admin renew` it)",
                )
            } else if text.contains("UnknownCA") || text.contains("BadCertificate") {
                Some("it was not issued by this controller's CA")
            } else {
                None
            }
        }
        _ => None,
    };
    match refusal {
        Some(why) => CliError::new(
            Exit::Denied,
            format!(
                "the controller at {url} refused the admin certificate in {} at the TLS handshake: {why}",
                bundle.display()
            ),
        ),
        None => failure,
    }
}

/// The controller could not be reached at all (nothing listens, no route, no such host): the
/// failure, then what to check.
fn unreachable(failure: CliError, url: &ServerUrl, within: &str) -> CliError {
    let from = SERVER_FROM.get().copied().unwrap_or("the default");
    CliError::new(
        failure.exit,
        format!(
            "{failure}\nhint: nothing answers at {url}{within}. Is `wardctl serve` running there \
             and listening on port {}? That address is {from}: check the host and port (`serve` \
             prints its address; --listen sets it), and that no firewall is in between",
            url.port()
        ),
    )
}

/// Where the controller's URL of the last [`admin_client`] call came from, for the hint.
static SERVER_FROM: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// How long before its certificate expires `wardctl` starts reminding an admin to renew it.
const RENEW_REMINDER: time::Duration = time::Duration::days(7);

/// Refuses a bundle whose certificate has expired (the controller would refuse it at the
/// handshake, with a less helpful message) and reminds its holder to renew one that soon will.
fn check_expiry(bundle: &AdminBundle, path: &Path) -> Result<(), CliError> {
    use ward_certs::validate::{
        ValidationError, validate_client_certificate_by_any as validate_client_certificate,
    };
    let now = time::OffsetDateTime::now_utc();
    // Whose it is, read as of a moment before it expired.
    let name_at = |at: time::OffsetDateTime| {
        validate_client_certificate(
            &bundle.certificate_der,
            &bundle.cas(),
            at - time::Duration::minutes(1),
            std::time::Duration::ZERO,
        )
        .map_or_else(|_| "NAME".to_owned(), |p| admin_name(&p.identity))
    };
    match validate_client_certificate(
        &bundle.certificate_der,
        &bundle.cas(),
        now,
        ward_certs::validate::DEFAULT_SKEW,
    ) {
        Ok(peer) if peer.not_after - now < RENEW_REMINDER => {
            eprintln!(
                "warning: the admin certificate in {} expires at {}: renew it (wardctl admin renew {} --out NEW.pem)",
                path.display(),
                peer.not_after,
                admin_name(&peer.identity)
            );
            Ok(())
        }
        Err(ValidationError::Expired(at)) => Err(CliError::new(
            Exit::Denied,
            format!(
                "the admin certificate in {} expired at {at}: another admin can renew it (wardctl admin renew {} --out NEW.pem), or use the break-glass bundle",
                path.display(),
                name_at(at)
            ),
        )),
        // Anything else is for the controller to judge and explain.
        _ => Ok(()),
    }
}

fn admin_name(identity: &ward_certs::Identity) -> String {
    match identity {
        ward_certs::Identity::Admin(name) => name.to_string(),
        other => other.to_string(),
    }
}

/// Reads the bundle at `path`, decrypting its key if it has a passphrase. An unencrypted key
/// earns a warning unless it is the controller host's own bundle (`host_bundle`: the one
/// `init` wrote into the data directory, used through --data-dir).
fn load_bundle(path: &Path, host_bundle: bool) -> Result<AdminBundle, CliError> {
    match BundleFile::read(path).map_err(bundle_error)? {
        BundleFile::Plain(bundle) => {
            if !host_bundle {
                eprintln!(
                    "warning: the admin key in {} has no passphrase; anyone who can read the file can act as this admin. Renew it with one (`wardctl admin renew NAME --out NEW.pem` asks for it; the old certificate is revoked), then delete {}",
                    path.display(),
                    path.display()
                );
            }
            Ok(bundle)
        }
        BundleFile::Encrypted(locked) => unlock(&locked, path),
    }
}

/// The passphrase from the file named by WARD_ADMIN_PASSPHRASE_FILE, else from the terminal.
fn unlock(locked: &LockedBundle, path: &Path) -> Result<AdminBundle, CliError> {
    if let Some(file) = std::env::var_os(PASSPHRASE_FILE_ENV).filter(|f| !f.is_empty()) {
        let file = PathBuf::from(file);
        let passphrase = read_passphrase_file(&file, PASSPHRASE_FILE_ENV)?;
        return locked.unlock(&passphrase, path).map_err(|e| match e {
            BundleError::WrongPassphrase { .. } => CliError::new(
                Exit::Denied,
                format!(
                    "{e} (the passphrase came from {PASSPHRASE_FILE_ENV}={})",
                    file.display()
                ),
            ),
            e => bundle_error(e),
        });
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "the admin key in {} is protected by a passphrase and stdin is not a terminal to ask for it: set {PASSPHRASE_FILE_ENV} to a file (not readable by every user) whose first line is the passphrase",
            path.display()
        )));
    }
    let mut attempt = 1;
    loop {
        let passphrase = prompt(&format!("Passphrase for {}: ", path.display()))?;
        match locked.unlock(&passphrase, path) {
            Err(BundleError::WrongPassphrase { .. }) if attempt < PROMPT_ATTEMPTS => {
                eprintln!("That passphrase does not decrypt it; try again.");
                attempt += 1;
            }
            result => return result.map_err(bundle_error),
        }
    }
}

/// Exit codes for bundle errors: a passphrase that does not decrypt the key is a credential
/// that does not let its holder in (4, as for a certificate the controller refuses); anything
/// else wrong with the file is bad input (2).
fn bundle_error(e: BundleError) -> CliError {
    match e {
        BundleError::WrongPassphrase { .. } => CliError::new(Exit::Denied, e.to_string()),
        e => CliError::usage(e.to_string()),
    }
}

/// True when both paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Asks on the terminal without echo.
pub(super) fn prompt(text: &str) -> Result<Passphrase, CliError> {
    rpassword::prompt_password(text)
        .map(|s| Zeroizing::new(s.into_bytes()))
        .map_err(|e| CliError::failed(format!("cannot read a passphrase from the terminal: {e}")))
}

/// The first line of `path` (without its "\n", as `openssl … -passin file:` reads it), refusing
/// a file every user may read, an empty passphrase, and a line over 1 KiB. `what` names where
/// the path came from in errors.
pub(super) fn read_passphrase_file(path: &Path, what: &str) -> Result<Passphrase, CliError> {
    let cannot = |e: std::io::Error| {
        CliError::usage(format!(
            "cannot read the passphrase file {} ({what}): {e}",
            path.display()
        ))
    };
    let mut file = File::open(path).map_err(cannot)?;
    let mode = file.metadata().map_err(cannot)?.permissions().mode();
    if mode & 0o004 != 0 {
        return Err(CliError::usage(format!(
            "the passphrase file {} ({what}) is readable by every user (mode {:o}): restrict it, e.g. chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    let mut bytes: Passphrase = Zeroizing::new(Vec::with_capacity(MAX_PASSPHRASE_BYTES + 2));
    (&mut file)
        .take(MAX_PASSPHRASE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    match bytes.iter().position(|&b| b == b'\n') {
        Some(end) => bytes.truncate(end),
        None if bytes.len() > MAX_PASSPHRASE_BYTES => {
            return Err(CliError::usage(format!(
                "the first line of the passphrase file {} ({what}) is longer than {MAX_PASSPHRASE_BYTES} bytes",
                path.display()
            )));
        }
        None => {}
    }
    if bytes.is_empty() {
        return Err(CliError::usage(format!(
            "the passphrase file {} ({what}) is empty: its first line is the passphrase",
            path.display()
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn file_with(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn passphrase_files_give_their_first_line() {
        let dir = tempfile::tempdir().unwrap();
        for (bytes, want) in [
            (&b"hunter2 hunter2\n"[..], &b"hunter2 hunter2"[..]),
            (b"no newline", b"no newline"),
            (b"first\nsecond\n", b"first"),
            (b" spaces kept \n", b" spaces kept "),
            (b"crlf\r\n", b"crlf\r"),
        ] {
            let path = file_with(dir.path(), "pw", bytes, 0o600);
            let got = read_passphrase_file(&path, "--passphrase-file").unwrap();
            assert_eq!(got.as_slice(), want);
        }
        let path = file_with(dir.path(), "group", b"group readable\n", 0o640);
        assert!(read_passphrase_file(&path, "x").is_ok());
    }

    #[test]
    fn passphrase_files_that_are_empty_public_or_missing_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes, mode, says) in [
            ("empty", &b""[..], 0o600, "is empty"),
            ("blank", b"\nsecond line\n", 0o600, "is empty"),
            (
                "public",
                b"a fine passphrase\n",
                0o644,
                "readable by every user",
            ),
            ("long", &[b'a'; 2000][..], 0o600, "longer than"),
        ] {
            let path = file_with(dir.path(), name, bytes, mode);
            let err = read_passphrase_file(&path, "--passphrase-file").unwrap_err();
            assert_eq!(err.exit, Exit::Usage, "{name}");
            assert!(err.message.contains(says), "{name}: {}", err.message);
            assert!(err.message.contains("--passphrase-file"), "{name}");
            assert!(!err.message.contains("a fine passphrase"));
        }
        let err = read_passphrase_file(&dir.path().join("absent"), "x").unwrap_err();
        assert_eq!(err.exit, Exit::Usage);
    }
}
