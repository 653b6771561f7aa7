//! `ward-agent` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ward_certs::CaHash;
use ward_proto::transport::ServerUrl;

use crate::enroll::{EnrollOptions, enroll_with_clock};
use crate::error::AgentError;
use crate::run::{RunOptions, run};
use crate::secrets::SecretStoreKind;
use crate::state::StateDir;
use crate::tpm::TpmChoice;

#[derive(Debug, Parser)]
#[command(
    name = "ward-agent",
    version,
    about = "Ward device agent: enrolls this device, checks in, and obeys the controller",
    after_help = "Exit codes: 0 ok, 1 failed, 2 bad usage or rejected input."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct StateArgs {
    /// Where the agent keeps its certificate, CA pin, key (file store) and state
    #[arg(
        long,
        env = "WARD_AGENT_STATE_DIR",
        default_value = "/var/lib/ward-agent",
        value_name = "DIR",
        value_parser = ward_files::directory_arg
    )]
    state_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enroll this device with a one-time token from `wardctl token create`
    Enroll {
        /// The controller, e.g. https://ward.hospital.org:7443
        #[arg(long, value_name = "URL")]
        server: String,
        /// The one-time enrollment token (or set WARD_ENROLL_TOKEN to keep it out of the process list)
        #[arg(
            long,
            env = "WARD_ENROLL_TOKEN",
            hide_env_values = true,
            value_name = "TOKEN"
        )]
        token: String,
        /// The controller CA's hash, sha256:HEX, as printed by `wardctl token create`
        #[arg(long, value_name = "sha256:HEX")]
        ca_hash: String,
        /// Where to keep the device's private key [default: tpm when --tpm finds a TPM, else
        /// file on Linux, keyring on macOS and Windows]. In the TPM the key is made there and
        /// never leaves it, so a copy of the state directory cannot act as the device
        #[arg(long, value_enum)]
        secret_store: Option<SecretStoreKind>,
        /// The TPM for --secret-store tpm: auto (/dev/tpmrm0 when it exists and tpm2-tools is
        /// installed), none, or a TCTI such as device:/dev/tpmrm0 or swtpm:path=/run/swtpm.sock.
        /// `ward-agent run` must then be given the same TPM
        #[arg(
            long,
            env = "WARD_AGENT_TPM",
            default_value = "auto",
            value_name = "auto|none|TCTI"
        )]
        tpm: TpmChoice,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Run the agent: check in periodically and reconnect with backoff. The offline timer
    /// (the policy's offline wipe) runs from the start, whatever happens to the certificate or
    /// the controller; an expired or refused certificate is logged and shown by `status`
    Run {
        /// Controller URL; repeat for failover order [default: the one enrolled with]
        #[arg(long = "server", value_name = "URL")]
        servers: Vec<String>,
        /// The messaging app's data directory (owned by the app's user): the app gets its data
        /// key over the local API, and a wipe destroys the key, then the files. Refused: /,
        /// system directories, a person's whole home directory, the state directory or a
        /// directory containing it, and one on another filesystem than / (unless
        /// --allow-other-filesystem)
        #[arg(long, env = "WARD_MESSAGING_DIR", value_name = "DIR", value_parser = ward_files::directory_arg)]
        messaging_dir: Option<PathBuf>,
        /// Accept a messaging directory on another filesystem than / (e.g. /home on its own
        /// encrypted volume)
        #[arg(long, requires = "messaging_dir")]
        allow_other_filesystem: bool,
        /// Where to keep a new messaging data key: auto (the TPM at /dev/tpmrm0 when it exists
        /// and tpm2-tools is installed, else the secret store), none, or a TCTI such as
        /// device:/dev/tpmrm0 or swtpm:path=/run/swtpm.sock (which must answer). A key made
        /// earlier stays where it was made. A device key enrolled into the TPM
        /// (--secret-store tpm) is reached through this TPM too
        #[arg(
            long,
            env = "WARD_AGENT_TPM",
            default_value = "auto",
            value_name = "auto|none|TCTI"
        )]
        tpm: TpmChoice,
        /// The local API's socket [default: $RUNTIME_DIRECTORY/agent.sock under systemd
        /// (/run/ward-agent/agent.sock), else STATE/agent.sock]. The messaging app's user must
        /// be able to reach it
        #[arg(long, env = "WARD_AGENT_SOCKET", value_name = "PATH")]
        local_socket: Option<PathBuf>,
        /// A program that erases the whole device, run by `wipe --scope full` after the
        /// messaging wipe (it must be safe to run twice); without one, full wipes are refused
        #[arg(long, env = "WARD_FULL_ERASE_HOOK", value_name = "PATH")]
        full_erase_hook: Option<PathBuf>,
        /// Log format on stderr
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Show this device's enrollment, its standing with the controller (checked in, refused
    /// as revoked or expired, unreachable…), the offline timer, and any problem with what to
    /// do about it
    Status {
        /// Output format [default: table on a terminal, json otherwise]
        #[arg(long, short = 'o', value_enum)]
        output: Option<Output>,
        #[command(flatten)]
        state: StateArgs,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

pub fn main() -> ExitCode {
    // Only in builds with the `failpoints` feature (the crash tests): reads FAILPOINTS.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // Two workers: a TPM signature inside a TLS handshake (rustls asks for it synchronously)
    // blocks one of them (tpm_key.rs moves it out of the scheduler with block_in_place) while
    // the offline timer, the local API and commands go on on the other.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), AgentError> {
    // The one clock of this process (the machine's; a test's in `test-clock` builds).
    let clock = crate::clock::from_environment();
    match cli.command {
        Command::Enroll {
            server,
            token,
            ca_hash,
            secret_store,
            tpm,
            state,
        } => {
            init_tracing(LogFormat::Text, "warn");
            let tpm = tpm.resolve();
            let secret_store = secret_store.unwrap_or(if tpm.is_some() {
                SecretStoreKind::Tpm
            } else {
                SecretStoreKind::platform_default()
            });
            let options =
                EnrollOptions {
                    server: server.parse().map_err(
                        |e: ward_proto::transport::ServerUrlError| AgentError::Usage(e.to_string()),
                    )?,
                    token: zeroize::Zeroizing::new(token),
                    ca_hash: ca_hash
                        .parse::<CaHash>()
                        .map_err(|e| AgentError::Usage(e.to_string()))?,
                    secret_store,
                    tpm,
                };
            let dir = StateDir::new(state.state_dir);
            let enrolled = enroll_with_clock(&dir, options, &clock).await?;
            eprintln!(
                "Enrolled as device {} for {}; certificate valid until {}. Start the agent with `ward-agent run --state-dir {} --messaging-dir DIR` (DIR: the messaging app's data directory).",
                enrolled.device_id,
                enrolled.user,
                enrolled.certificate_expires_at,
                dir.root().display()
            );
            Ok(())
        }
        Command::Run {
            servers,
            messaging_dir,
            allow_other_filesystem,
            tpm,
            local_socket,
            full_erase_hook,
            log_format,
            state,
        } => {
            init_tracing(log_format, "info");
            let messaging_dir = messaging_dir
                .map(|dir| {
                    crate::messaging_dir::for_run(
                        &dir,
                        &state.state_dir,
                        allow_other_filesystem,
                        crate::vault::is_set_up(&state.state_dir),
                    )
                    .map_err(|e| AgentError::Usage(e.to_string()))
                })
                .transpose()?;
            let servers = servers
                .iter()
                .map(|s| {
                    s.parse::<ServerUrl>()
                        .map_err(|e| AgentError::Usage(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            run(
                &StateDir::new(state.state_dir),
                RunOptions {
                    servers,
                    messaging_dir,
                    full_erase_hook,
                    tpm,
                    local_socket,
                    clock,
                },
                shutdown_signal(),
            )
            .await
        }
        Command::Status { output, state } => {
            let dir = StateDir::new(state.state_dir);
            let view = crate::status::view(&dir, &clock)?;
            let output = output.unwrap_or(if std::io::stdout().is_terminal() {
                Output::Table
            } else {
                Output::Json
            });
            if output == Output::Json {
                let text = serde_json::to_string_pretty(&view)
                    .map_err(|e| AgentError::Failed(e.to_string()))?;
                println!("{text}");
            } else {
                print!("{}", crate::status::table(&view));
            }
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

fn init_tracing(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
