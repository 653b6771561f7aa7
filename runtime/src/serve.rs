//! A serving controller, from its config to its shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};
use ward_controller::app::{App, AppConfig, DeliveryConfig, SyslogConfig};
use ward_controller::break_glass::BreakGlassFiles;
use ward_controller::datadir::DataDir;
use ward_controller::server_cert::ServerCertificate;
use ward_core::SystemClock;

use crate::config::{Database, ServeConfig};
use crate::error::ServeError;
use crate::urls::{local_host, url_for};
use crate::{lock, server_cert, shutdown, store};

/// Runs a controller until `shutdown` completes (`wardctl serve` passes
/// [`shutdown_signal`](crate::shutdown_signal): Ctrl-C or SIGTERM), then stops it in order
/// (agent streams, calls in flight, the audit log's last checkpoint, the database) and
/// releases the data directory's serve lock. `shutdown` is first polled once the controller
/// serves. Everything that can be refused is checked before the port is served; a SQLite data
/// directory is locked first and created (and initialized) if missing or empty. Prints one
/// line to stderr once it serves.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    // One controller per SQLite data directory, held until this process ends. (PostgreSQL
    // replicas share a database by design, and their directory may be read-only.)
    let _serve_lock = match &config.database {
        Database::Sqlite => Some(lock::lock_data_dir(&config.data_dir)?),
        Database::Postgres { .. } => None,
    };
    let listener = ward_edge::grpc::bind(config.listen).await?;
    let local = listener.local_addr().map_err(ServeError::BoundAddress)?;

    let dir = DataDir::new(&config.data_dir);
    let store = store::open(&dir, &config.database, &config.hostnames).await?;
    store.writer().configure(config.batch);
    if BreakGlassFiles::in_dir(dir.root()).still_here() {
        warn!(data_dir = %dir.root().display(), "the break-glass bundle or its passphrase is still in the data directory: {}", ward_controller::break_glass::ADVICE);
    }
    let loaded =
        server_cert::load(&dir, &*store, &config.hostnames, &config.drop_hostnames).await?;
    let cas = loaded.cas;
    let ca = cas.signing();
    let controller_name = loaded.controller_name;

    let public_url = match &config.public_url {
        Some(url) => url.to_string(),
        // The port actually bound, so --listen 127.0.0.1:0 gives a usable enroll line.
        None => url_for(&controller_name, local.port())?,
    };
    let app_config = AppConfig {
        checkin_interval: config.checkin_interval,
        device_cert_lifetime: config.device_cert_lifetime,
        approval_threshold: config.approval_threshold,
        enroll_burst: config.enroll_burst,
        enroll_per_minute: config.enroll_per_minute,
        audit_checkpoints: config.audit_checkpoints.clone(),
        ..AppConfig::with_public_url(public_url.clone())
    };
    let app = Arc::new(App::with_cas(
        store,
        cas.clone(),
        Arc::new(SystemClock),
        app_config,
    ));
    if let Some(syslog) = config.audit_syslog {
        info!(collector = %ward_controller::syslog_transport::Connector::describe(&syslog.collector), "audit log to syslog");
        let origin = ward_core::audit::syslog::Origin {
            hostname: controller_name.clone(),
            app_name: "ward".into(),
            procid: Some(std::process::id()),
        };
        app.start_audit_syslog(SyslogConfig {
            format: syslog.format,
            ..SyslogConfig::new(Arc::new(syslog.collector), origin)
        });
    }
    app.start_background().await.map_err(ServeError::Replicas)?;
    app.open_audit().await.map_err(ServeError::OpenAudit)?;
    app.start_audit_tasks();
    app.start_webhook_delivery(DeliveryConfig {
        backoff: (Duration::from_secs(1), config.webhook_retry_max),
        give_up_after: config.webhook_give_up_after,
        ..DeliveryConfig::new(ward_controller::webhook_sender::Sender::default())
    });
    let revoked = app
        .load_revocations()
        .await
        .map_err(ServeError::Revocations)?;
    info!(revoked_certificates = revoked, "revocation list loaded");
    let (tls, live) = ward_certs::live::server_config_trusting(
        cas.trust(),
        &loaded.chain,
        &loaded.key,
        app.revoked_serials(),
    )
    .map_err(ServeError::Tls)?;
    let scim_certificate = live.clone();
    let server_cert = Arc::new(ServerCertificate::new(
        cas.clone(),
        live,
        ward_certs::ca::SERVER_LIFETIME,
        Some(dir.clone()),
    ));
    app.manage_server_certificate(
        server_cert.clone(),
        loaded.wanted_names,
        loaded.repaired,
        config.server_cert_check_interval,
    )
    .await
    .map_err(ServeError::ServerCertificate)?;
    app.start_following_ca_rotation(ward_controller::app::ca_rotation::FOLLOW_DEFAULT);

    // Closed last when stopping, or at once if serve fails from here on.
    let mut listeners = shutdown::Listeners::default();
    if let Some(addr) = config.metrics_listen {
        let (bound, task) = ward_controller::metrics::serve(app.clone(), addr, listeners.closed())
            .await
            .map_err(|source| ServeError::Metrics { addr, source })?;
        listeners.push(task);
        if let Err(e) = dir.write_file("metrics-url", &format!("http://{bound}")) {
            info!(error = %e, "not writing metrics-url (read-only data directory?)");
        }
        info!(metrics = %bound, "metrics and health on /metrics and /healthz");
    }
    if let Some(scim) = config.scim {
        let addr = scim.listen;
        let limits = ward_edge::scim::http::Limits {
            burst: scim.burst,
            per_minute: scim.per_minute,
        };
        let (bound, task) = ward_edge::scim::serve(
            app.clone(),
            addr,
            scim_certificate,
            limits,
            listeners.closed(),
        )
        .await
        .map_err(|source| ServeError::Scim { addr, source })?;
        listeners.push(task);
        let url = format!(
            "{}{}",
            url_for(&local_host(bound, &controller_name), bound.port())?,
            ward_edge::scim::http::PREFIX
        );
        if let Err(e) = dir.write_file("scim-url", &url) {
            info!(error = %e, "not writing scim-url (read-only data directory?)");
        }
        info!(scim = %url, "SCIM 2.0 service provider (identity-provider provisioning)");
    }
    let app_for_shutdown = app.clone();
    let server = ward_edge::grpc::start(app, tls, listener)?;
    let local_url = url_for(&local_host(local, &controller_name), local.port())?;
    // A hint for `wardctl` on this host; a read-only data directory (a Kubernetes Secret) is fine.
    if let Err(e) = dir.write_server_url(&local_url) {
        info!(error = %e, "not writing server-url (read-only data directory?)");
    }
    info!(listen = %local, public_url = %public_url, ca_hash = %ca.hash(), "Ward controller serving");
    eprintln!(
        "Ward controller listening on {local} (devices enroll at {public_url}; CA {})",
        ca.hash()
    );

    shutdown.await;
    shutdown::stop(&app_for_shutdown, server, listeners).await
}
