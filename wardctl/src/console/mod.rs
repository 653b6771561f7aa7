//! `wardctl console`: a web console for the IT admin, run where the admin is.
//!
//! It unlocks the admin's bundle once (exactly as every `wardctl` command does) and serves
//! server-rendered pages on a loopback address. Every page and action is an `AdminService`
//! call made with that admin's certificate, so roles, approval and audit stay the
//! controller's, and the controller gains no port, password or session.
//!
//! What this means for trust: the console process holds the admin's private key in memory for
//! as long as it runs, as a `wardctl` command does for the length of one call. Whoever can
//! read that process's memory, or use its login link, acts as that admin: the same trust as
//! a terminal on that machine where the admin is logged in. Hence loopback only, a one-time
//! link, a session cookie that JavaScript cannot read and other sites cannot send, CSRF
//! tokens, automatic logoff after inactivity, and no asset from outside the binary.

// Handlers answer a refusal with the page that explains it: `Result<_, Response>` is axum's
// idiom, and a response is a large value by nature.
#![allow(clippy::result_large_err)]

mod auth;
mod http;
mod pages;
mod palette;
mod plot;
mod ui;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clap::Args;
use tonic::transport::Channel;
use ward_proto::v1::WhoAmIRequest;
use ward_proto::v1::admin_service_client::AdminServiceClient;

use crate::cli::ConnectArgs;
use crate::cli::connect::admin_client;
use crate::cli::error::CliError;
use auth::Gate;
use ward_core::duration::{self, DurationRange, hours, seconds};

/// `console --idle-timeout`.
const IDLE_TIMEOUT: DurationRange = DurationRange::new(seconds(1), hours(12), "30m");

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Loopback address and port to serve on (port 0: any free port). Other addresses are
    /// refused: reach a console on another machine through `ssh -L`
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR", value_parser = crate::cli::AddrArg("127.0.0.1:8080"))]
    listen: SocketAddr,
    #[arg(long, default_value = "15m", value_parser = crate::cli::DurationArg(IDLE_TIMEOUT), allow_hyphen_values = true, value_name = "DURATION", help = IDLE_TIMEOUT.help("Log off after this long without a request"))]
    idle_timeout: Duration,
    /// Open the login link in the desktop's browser (xdg-open)
    #[arg(long)]
    open: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// What the controller says the admin is and may do (`WhoAmI`).
#[derive(Clone, Debug)]
pub struct Me {
    pub name: String,
    pub role: String,
    pub permissions: Vec<String>,
}

impl Me {
    /// True if the role may do `permission` (a name from `WhoAmI`). Only decides what the
    /// console offers: the controller checks every call itself.
    pub fn may(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }
}

/// The console's shared state.
#[derive(Debug)]
pub struct Console {
    client: AdminServiceClient<Channel>,
    me: Me,
    gate: Mutex<Gate>,
    /// `Host` header values a request may carry (a DNS-rebinding page names another).
    hosts: Vec<String>,
    /// http://127.0.0.1:PORT
    base: String,
    /// Tokens each offboarding call made unusable, for its downloadable report.
    offboarded: Mutex<HashMap<String, u32>>,
}

impl Console {
    fn client(&self) -> AdminServiceClient<Channel> {
        self.client.clone()
    }

    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Prints the current one-time login link (at start, and after each logoff).
    fn announce_login(&self) {
        if let Some(token) = self.gate().login_token() {
            println!("{}/login?token={token}", self.base);
        }
    }
}

pub async fn run(args: ConsoleArgs) -> Result<(), CliError> {
    if !args.listen.ip().is_loopback() {
        return Err(CliError::usage(format!(
            "--listen {}: the console serves on a loopback address only (127.0.0.1 or ::1), because it acts with the admin's key; from another machine use `ssh -L 8443:127.0.0.1:PORT host` and open the link there",
            args.listen
        )));
    }
    let mut client = admin_client(&args.connect).await?;
    let who = client.who_am_i(WhoAmIRequest {}).await?.into_inner();
    let me = Me {
        name: who.name,
        role: ward_proto::v1::AdminRole::try_from(who.role)
            .map(|r| {
                r.as_str_name()
                    .trim_start_matches("ADMIN_ROLE_")
                    .to_lowercase()
            })
            .unwrap_or_else(|_| "unknown".into()),
        permissions: who.permissions,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| CliError::failed(format!("cannot listen on {}: {e}", args.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::failed(format!("cannot read the console's address: {e}")))?;
    let host = match local {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    let console = Arc::new(Console {
        client,
        gate: Mutex::new(Gate::new(args.idle_timeout)),
        hosts: vec![host.clone(), format!("localhost:{}", local.port())],
        base: format!("http://{host}"),
        me,
        offboarded: Mutex::new(HashMap::new()),
    });
    eprintln!(
        "wardctl console for admin {} (role {}) at {}. Open the one-time login link below; it works once. Logged off after {} without a request; then a new link is printed here. Ctrl-C ends the console.",
        console.me.name,
        console.me.role,
        console.base,
        duration::format(args.idle_timeout)
    );
    console.announce_login();
    if args.open {
        open_browser(&console);
    }
    tokio::spawn(expire_idle(console.clone()));
    http::serve(listener, console).await
}

/// Ends an idle session at its deadline even when no request comes, and prints a new link.
async fn expire_idle(console: Arc<Console>) {
    let tick = (console.gate().idle_limit() / 4)
        .clamp(Duration::from_millis(250), Duration::from_secs(10));
    loop {
        tokio::time::sleep(tick).await;
        if console.gate().expire_idle(Instant::now()) {
            eprintln!("Logged off after inactivity. To continue, open the new login link:");
            console.announce_login();
        }
    }
}

fn open_browser(console: &Console) {
    let Some(url) = console
        .gate()
        .login_token()
        .map(|t| format!("{}/login?token={t}", console.base))
    else {
        return;
    };
    if let Err(e) = std::process::Command::new("xdg-open")
        .arg(&url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        eprintln!("cannot open a browser (xdg-open: {e}); open the link above by hand");
    }
}
