//! `serve` in-process: a controller started on loopback with a temporary SQLite data directory
//! answers, stops when its shutdown future completes, and leaves the data directory and its
//! ports to the next `serve` (the serve lock released, the listeners closed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use ward_runtime::{
    CheckpointConfig, Database, SCIM_BURST, SCIM_PER_MINUTE, ScimConfig, ServeConfig, ServeError,
    serve,
};

/// How long any one step may take on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// A controller on `ports` (gRPC, metrics, SCIM).
fn config(dir: &Path, ports: Ports) -> ServeConfig {
    ServeConfig {
        data_dir: dir.to_path_buf(),
        listen: ports.grpc,
        public_url: None,
        hostnames: Vec::new(),
        drop_hostnames: Vec::new(),
        database: Database::Sqlite,
        batch: ward_runtime::BatchSettings::default(),
        server_cert_check_interval: Duration::from_secs(600),
        checkin_interval: Duration::from_secs(60),
        device_cert_lifetime: Duration::from_secs(7 * 24 * 3600),
        approval_threshold: None,
        enroll_burst: 20,
        enroll_per_minute: 60,
        audit_checkpoints: CheckpointConfig::default(),
        audit_syslog: None,
        metrics_listen: Some(ports.metrics),
        scim: Some(ScimConfig {
            listen: ports.scim,
            burst: SCIM_BURST,
            per_minute: SCIM_PER_MINUTE,
        }),
        webhook_retry_max: Duration::from_secs(3600),
        webhook_give_up_after: Duration::from_secs(3 * 24 * 3600),
    }
}

/// The addresses a controller listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ports {
    grpc: SocketAddr,
    metrics: SocketAddr,
    scim: SocketAddr,
}

impl Ports {
    /// Any free loopback ports.
    fn any() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            grpc: any,
            metrics: any,
            scim: any,
        }
    }
}

/// A controller serving in this process, and what stops it.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServeError>>,
    ports: Ports,
}

/// Starts `serve` and waits until it has written `server-url` (its last step before it serves),
/// failing at once if `serve` returns first.
async fn start(dir: &Path, ports: Ports) -> Running {
    // The files a previous run left are not this run's news.
    for name in ["server-url", "metrics-url", "scim-url"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(config(dir, ports), async {
        let _ = stopped.await;
    }));
    let started = Instant::now();
    let server_url = dir.join("server-url");
    while !server_url.exists() {
        if task.is_finished() {
            panic!("serve returned before serving: {:?}", task.await);
        }
        assert!(
            started.elapsed() < DEADLINE,
            "serve did not start within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Running {
        stop,
        task,
        ports: Ports {
            grpc: port_of(&read(&server_url)),
            metrics: port_of(&read(&dir.join("metrics-url"))),
            scim: port_of(&read(&dir.join("scim-url"))),
        },
    }
}

impl Running {
    /// Completes the shutdown future; `serve` must return `Ok` within the deadline.
    async fn stop(self) {
        self.stop.send(()).expect("serve is still running");
        let result = tokio::time::timeout(DEADLINE, self.task)
            .await
            .unwrap_or_else(|_| panic!("serve did not return within {DEADLINE:?} of shutdown"))
            .expect("serve panicked");
        result.expect("serve stopped with an error");
    }
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The loopback address of a URL's port (`https://localhost:PORT`, `http://127.0.0.1:PORT`,
/// `https://localhost:PORT/scim/v2`).
fn port_of(url: &str) -> SocketAddr {
    let after_colon = url.trim().rsplit(':').next().unwrap_or_default();
    let port = after_colon.split('/').next().and_then(|p| p.parse().ok());
    SocketAddr::from((
        [127, 0, 0, 1],
        port.unwrap_or_else(|| panic!("no port in {url:?}")),
    ))
}

/// `GET /healthz`: the status line and body (the handler asks the store).
async fn health(metrics: SocketAddr) -> String {
    let mut tcp = tokio::net::TcpStream::connect(metrics).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, tcp.read_to_string(&mut answer))
        .await
        .expect("no answer from /healthz")
        .unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_on_its_shutdown_future_and_leaves_the_directory_and_ports_free() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");

    let first = start(&dir, Ports::any()).await;
    let answer = health(first.ports.metrics).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for port in [first.ports.grpc, first.ports.scim] {
        tokio::net::TcpStream::connect(port)
            .await
            .expect("the gRPC and SCIM ports accept connections while serving");
    }
    assert!(
        dir.join("admin.pem").is_file(),
        "the empty directory was initialized"
    );

    // The lock is held while serving, in this process too.
    let refused = tokio::time::timeout(
        DEADLINE,
        serve(config(&dir, Ports::any()), std::future::pending()),
    )
    .await
    .expect("a second serve on a held directory is refused at once");
    assert!(
        matches!(refused, Err(ServeError::Lock(_))),
        "a second serve on the same directory: {refused:?}"
    );

    let ports = first.ports;
    first.stop().await;
    for port in [ports.grpc, ports.metrics, ports.scim] {
        assert!(
            tokio::net::TcpStream::connect(port).await.is_err(),
            "{port} is closed once serve has returned"
        );
    }

    // The same directory and the same ports: nothing of the first controller holds them.
    let second = start(&dir, ports).await;
    assert_eq!(second.ports, ports);
    let answer = health(second.ports.metrics).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    second.stop().await;
}
