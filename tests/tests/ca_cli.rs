//! `wardctl ca status`, the expiry gauges on /metrics, new host names for an existing data
//! directory (`serve --hostname`). CA rotation: tests/tests/ca_rotation.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ward_e2e::process::{ControllerProcess, http_get, json, stderr};

const DAY: i64 = 24 * 3600;

fn server_names(data_dir: &std::path::Path) -> Vec<String> {
    let pem = std::fs::read_to_string(data_dir.join("server.pem")).unwrap();
    let chain = ward_certs::certificates_from_pem(&pem).unwrap();
    ward_certs::validate::server_names(&chain[0])
}

#[test]
fn ca_status_and_metrics_show_every_expiry() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let controller =
        ControllerProcess::start_with(&data, "127.0.0.1:0", &["--metrics-listen", "127.0.0.1:0"]);

    let status = json(&controller.ctl(&["ca", "status", "--output", "json"]));
    let left = |v: &serde_json::Value| v["seconds_left"].as_i64().unwrap();
    assert!(left(&status["ca"]) > 9 * 365 * DAY, "{status}");
    assert!(
        (360 * DAY..366 * DAY).contains(&left(&status["server"])),
        "{status}"
    );
    assert!(status["server"]["renews_at"].is_string(), "{status}");
    let admins = status["admins"].as_array().unwrap();
    let admin = admins
        .iter()
        .find(|a| a["subject"] == "admin admin")
        .unwrap();
    assert!((29 * DAY..=30 * DAY).contains(&left(admin)), "{status}");
    // The admin's certificate's start, as the server's and the CA's (was `null`).
    let not_before = admin["not_before"].as_str().unwrap();
    assert!(
        not_before < admin["expires_at"].as_str().unwrap(),
        "{status}"
    );
    assert!(
        admins.iter().any(|a| a["subject"] == "admin break-glass"),
        "{status}"
    );
    assert_eq!(
        status["ca_hash"].as_str().unwrap(),
        ward_certs::CaHash::of_certificate(
            &ward_certs::certificates_from_pem(
                &std::fs::read_to_string(data.join("ca.pem")).unwrap()
            )
            .unwrap()[0]
        )
        .to_string()
    );
    let table = controller.ctl(&["ca", "status", "--output", "table"]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("server") && text.contains("admin admin"),
        "{text}"
    );

    let (_, metrics) = http_get(&controller.metrics_url(), "/metrics");
    let gauge = |name: &str| -> i64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(gauge("ward_ca_expiry_seconds") > 9 * 365 * DAY);
    assert!(gauge("ward_server_certificate_expiry_seconds") > 360 * DAY);
    assert!(gauge("ward_admin_certificate_soonest_expiry_seconds") > 29 * DAY);
    assert_eq!(gauge("ward_admin_certificates_expiring_within_week"), 0);
    assert!(
        !metrics.contains("admin=\""),
        "the unauthenticated /metrics names an admin: {metrics}"
    );
    controller.stop();
}

#[test]
fn new_host_names_get_a_new_server_certificate_under_the_same_ca() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let controller = ControllerProcess::start(&data);
    let ca_before = std::fs::read(data.join("ca.pem")).unwrap();
    let device_token = controller.token("kim@hospital.org", "1h");
    assert!(device_token["token"].is_string());
    let listen = controller.listen_addr();
    controller.stop();
    assert!(!server_names(&data).contains(&"ward.hospital.example".to_owned()));

    // A bad name changes nothing and says why.
    let out = ward_e2e::process::wardctl(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--hostname",
        "not a name!",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a DNS name"), "{}", stderr(&out));

    let controller = ControllerProcess::start_with(
        &data,
        &listen,
        &[
            "--hostname",
            "ward.hospital.example",
            "--hostname",
            "10.1.2.3",
        ],
    );
    let names = server_names(&data);
    assert_eq!(
        names,
        [
            "ward.hospital.example",
            "10.1.2.3",
            "localhost",
            "127.0.0.1",
            "::1"
        ],
    );
    assert_eq!(
        std::fs::read(data.join("ca.pem")).unwrap(),
        ca_before,
        "same CA"
    );
    // The controller presents it, and the change is audited.
    let status = json(&controller.ctl(&["ca", "status", "--output", "json"]));
    assert!(status["server"]["seconds_left"].as_i64().unwrap() > 360 * DAY);
    let audit = json(&controller.ctl(&["audit", "list", "--output", "json"]));
    let issued: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "server_certificate.issue")
        .collect();
    assert_eq!(issued.len(), 1, "{audit}");
    assert!(issued[0].to_string().contains("hostnames"), "{}", issued[0]);
    let verify = controller.ctl(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    controller.stop();

    // The same names again: nothing new is issued.
    let controller = ControllerProcess::start_with(
        &data,
        &listen,
        &[
            "--hostname",
            "ward.hospital.example",
            "--hostname",
            "10.1.2.3",
        ],
    );
    let audit = json(&controller.ctl(&["audit", "list", "--output", "json"]));
    let issued = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "server_certificate.issue")
        .count();
    assert_eq!(issued, 1);
    controller.stop();

    // A list that leaves out a name devices may use is refused, naming it; nothing changes.
    let out = ward_e2e::process::wardctl(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--hostname",
        "ward.hospital.example",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("10.1.2.3"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--drop-hostname"), "{}", stderr(&out));
    assert_eq!(
        server_names(&data),
        names,
        "a refused change kept the names"
    );
    // Dropped on purpose, it goes.
    let controller = ControllerProcess::start_with(
        &data,
        &listen,
        &[
            "--hostname",
            "ward.hospital.example",
            "--drop-hostname",
            "10.1.2.3",
        ],
    );
    assert!(!server_names(&data).contains(&"10.1.2.3".to_owned()));
    controller.stop();
}
