//! The audit log streamed to a real rsyslog over TLS (`serve --audit-syslog tls://…`):
//! rsyslog killed in the middle of the stream and started again, and every entry's sequence
//! number is found in what it wrote, at least once, first occurrences in order, none missing.
//! Also: bad `--audit-syslog` values exit 2 and create nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use ward_e2e::eventually_blocking;
use ward_e2e::process::{ControllerProcess, Daemon, http_get, json, stderr, wardctl};

const DEADLINE: Duration = Duration::from_secs(90);

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in `dir`.
fn collector_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("collector.pem"),
        dir.join("collector.key"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

/// rsyslog's own configuration: TLS (gtls, anonymous client) on 127.0.0.1:`port`, every
/// message written to `received` with its MSGID, structured data and message.
fn rsyslog_config(dir: &Path, port: u16, received: &Path) -> PathBuf {
    let (ca, cert, key) = collector_certificates(dir);
    let work = dir.join("rsyslog-work");
    std::fs::create_dir_all(&work).unwrap();
    let config = format!(
        r#"global(
  DefaultNetstreamDriver="gtls"
  DefaultNetstreamDriverCAFile="{ca}"
  DefaultNetstreamDriverCertFile="{cert}"
  DefaultNetstreamDriverKeyFile="{key}"
  maxMessageSize="64k"
  workDirectory="{work}"
)
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
input(type="imtcp" port="{port}" address="127.0.0.1")
template(name="ward" type="string" string="%msgid% %structured-data% %msg%\n")
action(type="omfile" file="{received}" template="ward")
"#,
        ca = ca.display(),
        cert = cert.display(),
        key = key.display(),
        work = work.display(),
        received = received.display(),
    );
    let path = dir.join("rsyslog.conf");
    std::fs::write(&path, config).unwrap();
    path
}

fn rsyslogd() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("rsyslogd"))
        .find(|p| p.is_file())
        .expect("rsyslogd")
}

/// rsyslogd in the foreground, once it accepts connections.
fn start_rsyslog(dir: &Path, config: &Path, port: u16) -> Daemon {
    let pid = dir.join("rsyslogd.pid");
    let _ = std::fs::remove_file(&pid);
    let mut daemon = Daemon::spawn_program(
        "rsyslogd",
        &rsyslogd(),
        &[
            "-n",
            "-f",
            config.to_str().unwrap(),
            "-i",
            pid.to_str().unwrap(),
        ],
        dir.join("rsyslogd.log"),
        &[],
    );
    eventually_blocking("rsyslogd to listen", DEADLINE, || {
        assert!(daemon.is_running(), "rsyslogd exited: {}", daemon.log());
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    daemon
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The sequence numbers in rsyslog's file, in the order written.
fn received(path: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let start = line.find("[ward@32473 seq=\"")? + 17;
            let len = line[start..].find('"')?;
            line[start..start + len].parse().ok()
        })
        .collect()
}

/// Each sequence number at its first occurrence.
fn first_occurrences(seqs: &[u64]) -> Vec<u64> {
    let mut seen = std::collections::HashSet::new();
    seqs.iter().copied().filter(|s| seen.insert(*s)).collect()
}

fn metric(metrics_url: &str, name: &str) -> Option<i64> {
    let (_, body) = http_get(metrics_url, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until the collector took every entry (lag 0, connected) and the file holds them all,
/// first occurrences 1, 2, … in order; returns the cursor.
fn wait_complete(metrics_url: &str, file: &Path) -> u64 {
    eventually_blocking(
        "every audit entry in rsyslog's file, in order",
        DEADLINE,
        || {
            let connected = metric(metrics_url, "ward_audit_syslog_connected")?;
            let lag = metric(metrics_url, "ward_audit_syslog_lag_entries")?;
            let cursor = u64::try_from(metric(metrics_url, "ward_audit_syslog_cursor")?).ok()?;
            let firsts = first_occurrences(&received(file));
            (connected == 1 && lag == 0 && cursor > 0 && firsts == (1..=cursor).collect::<Vec<_>>())
                .then_some(cursor)
        },
    )
}

fn audited_action(controller: &ControllerProcess, n: usize) {
    let out = controller.ctl(&[
        "token",
        "create",
        "--user",
        &format!("nurse{n}@hospital.example"),
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "token create: {}", stderr(&out));
}

/// A real rsyslog over TLS, and a controller streaming its audit log to it with `extra`
/// serve flags (and `/metrics`).
struct Streaming {
    rsyslog: Daemon,
    controller: ControllerProcess,
    /// What rsyslog wrote, a message a line.
    file: PathBuf,
    config: PathBuf,
    port: u16,
    metrics: String,
}

fn streaming(dir: &Path, extra: &[&str]) -> Streaming {
    let port = free_port();
    let file = dir.join("received.log");
    let config = rsyslog_config(dir, port, &file);
    let rsyslog = start_rsyslog(dir, &config, port);
    let ca = dir.join("ca.pem");
    let target = format!("tls://127.0.0.1:{port}");
    let mut flags = vec![
        "--audit-syslog",
        target.as_str(),
        "--audit-syslog-ca",
        ca.to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    flags.extend_from_slice(extra);
    let controller = ControllerProcess::start_with(&dir.join("ward"), "127.0.0.1:0", &flags);
    let metrics = controller.metrics_url();
    Streaming {
        rsyslog,
        controller,
        file,
        config,
        port,
        metrics,
    }
}

#[test]
#[cfg_attr(
    not(ward_rsyslog),
    ignore = "needs rsyslog with TLS: apt-get install rsyslog rsyslog-gnutls"
)]
fn rsyslog_gets_every_audit_entry_in_order_across_its_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let Streaming {
        rsyslog,
        controller,
        file,
        config,
        port,
        metrics,
    } = streaming(tmp.path(), &[]);
    for n in 0..5 {
        audited_action(&controller, n);
    }
    let before = wait_complete(&metrics, &file);

    // Killed in the middle of a stream of actions; more actions while it is down.
    let mut rsyslog = Some(rsyslog);
    for n in 5..25 {
        audited_action(&controller, n);
        if n == 10 {
            let daemon = rsyslog.take().unwrap();
            let killed = std::process::Command::new("kill")
                .args(["-KILL", &daemon.pid().to_string()])
                .status()
                .unwrap();
            assert!(killed.success());
            drop(daemon);
        }
    }
    eventually_blocking("the controller to see the collector gone", DEADLINE, || {
        (metric(&metrics, "ward_audit_syslog_connected")? == 0
            && metric(&metrics, "ward_audit_syslog_lag_entries")? > 0)
            .then_some(())
    });
    let while_down = received(&file).len();

    let _rsyslog = start_rsyslog(tmp.path(), &config, port);
    for n in 25..30 {
        audited_action(&controller, n);
    }
    let last = wait_complete(&metrics, &file);
    let all = received(&file);
    let firsts = first_occurrences(&all);
    eprintln!(
        "rsyslog received {} messages: entries 1 to {last} ({} distinct), {} duplicates; {before} before the kill, {while_down} lines when the controller saw it gone",
        all.len(),
        firsts.len(),
        all.len() - firsts.len()
    );
    assert!(last >= before + 25, "the 25 later actions were audited");
    assert_eq!(firsts, (1..=last).collect::<Vec<_>>());

    // What a SIEM sees: the fields of the structured data and the details as the message.
    let text = std::fs::read_to_string(&file).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("token.create "))
        .expect("a token.create message");
    for field in [
        "seq=",
        "hash=",
        "prev_hash=",
        "actor=\"ward://admin/admin\"",
        "action=\"token.create\"",
        "target=",
        "outcome=\"success\"",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    assert!(line.contains("target=\"nurse"), "{line}");
    assert!(
        line.contains("] {\"expires_at\":"),
        "the details are the message: {line}"
    );
    controller.stop();
}

/// The message after the structured data (backslash-escaped `]` inside it skipped).
fn message_part(line: &str) -> Option<&str> {
    let start = line.find("[ward@32473 ")?;
    let mut escaped = false;
    for (i, c) in line[start..].char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            ']' if !escaped => {
                return Some(line[start + i + 1..].trim_start_matches([' ', '\u{feff}']));
            }
            _ => escaped = false,
        }
    }
    None
}

/// `--audit-format ocsf`: every entry reaches rsyslog as an OCSF event that parses as JSON,
/// with the class its action belongs to and the entry's seq and hash.
#[test]
#[cfg_attr(
    not(ward_rsyslog),
    ignore = "needs rsyslog with TLS: apt-get install rsyslog rsyslog-gnutls"
)]
fn rsyslog_gets_every_audit_entry_as_an_ocsf_event() {
    let tmp = tempfile::tempdir().unwrap();
    let Streaming {
        rsyslog: _rsyslog,
        controller,
        file,
        metrics,
        ..
    } = streaming(tmp.path(), &["--audit-format", "ocsf"]);
    // A real enrollment, a token, a revocation, an admin identity and a read.
    let device = ward_e2e::process::AgentFixture::enroll(
        &controller,
        tmp.path(),
        "a",
        "nurse@hospital.example",
    );
    audited_action(&controller, 1);
    let ok = |args: &[&str]| {
        let out = controller.ctl(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    ok(&["device", "revoke", &device.device_id, "--reason", "stolen"]);
    let bundle = tmp.path().join("desk.pem");
    ok(&[
        "admin",
        "issue",
        "--no-passphrase",
        "desk",
        "--role",
        "helpdesk",
        "--out",
        bundle.to_str().unwrap(),
    ]);
    ok(&["device", "list"]);
    let last = wait_complete(&metrics, &file);

    let text = std::fs::read_to_string(&file).unwrap();
    let mut events = std::collections::BTreeMap::new();
    // Checkpoints keep their own text in either format (see the checkpoint test).
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("audit.checkpoint "))
    {
        let body = message_part(line).unwrap_or_else(|| panic!("no structured data: {line}"));
        let event: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
        for field in [
            "class_uid",
            "activity_id",
            "time",
            "severity_id",
            "actor",
            "metadata",
        ] {
            assert!(!event[field].is_null(), "{field} in {event}");
        }
        assert_eq!(
            event["type_uid"].as_u64().unwrap(),
            event["class_uid"].as_u64().unwrap() * 100 + event["activity_id"].as_u64().unwrap()
        );
        let seq = event["unmapped"]["seq"].as_u64().unwrap();
        assert_eq!(event["metadata"]["sequence"], seq);
        assert!(line.contains(&format!("seq=\"{seq}\"")), "{line}");
        assert!(
            event["unmapped"]["hash"]
                .as_str()
                .is_some_and(|h| h.len() == 64)
        );
        events.insert(seq, event);
    }
    assert_eq!(
        events.keys().copied().collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>()
    );
    let find = |action: &str| {
        events
            .values()
            .find(|e| e["unmapped"]["action"] == action)
            .unwrap_or_else(|| panic!("no {action} event"))
            .clone()
    };
    let enrolled = find("device.enroll");
    assert_eq!(
        (
            enrolled["class_uid"].clone(),
            enrolled["activity_id"].clone()
        ),
        (3004.into(), 6.into())
    );
    assert_eq!(
        enrolled["entity"]["device"]["uid"],
        device.device_id.as_str()
    );
    let revoked = find("device.revoke");
    assert_eq!(
        (revoked["class_uid"].clone(), revoked["activity_id"].clone()),
        (3004.into(), 7.into())
    );
    assert_eq!(revoked["comment"], "stolen");
    assert_eq!(revoked["actor"]["user"]["name"], "admin");
    assert_eq!(find("token.create")["class_uid"], 3004);
    assert_eq!(find("admin.issue")["class_uid"], 3001);
    assert_eq!(find("read")["class_uid"], 6003);
    controller.stop();
}

#[test]
fn bad_audit_syslog_values_exit_2_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let data = tmp.path().join("ward");
    let ca_arg = ca.to_str().unwrap();
    for (args, says) in [
        (vec!["--audit-syslog", "tcp://10.0.0.5:514"], "loopback"),
        (vec!["--audit-syslog", "udp://siem.example:514"], "loopback"),
        (
            vec!["--audit-syslog", "https://siem.example"],
            "unknown scheme",
        ),
        (vec!["--audit-syslog", "tls://siem.example:0"], "port"),
        (
            vec!["--audit-syslog", "tls://siem.example:6514"],
            "--audit-syslog-ca",
        ),
        (
            vec![
                "--audit-syslog",
                "tls://siem.example",
                "--audit-syslog-ca",
                ca_arg,
            ],
            "no PEM certificate",
        ),
        (
            vec![
                "--audit-syslog",
                "tls://siem.example",
                "--audit-syslog-ca",
                "/nonexistent/ca.pem",
            ],
            "cannot read",
        ),
        (
            vec![
                "--audit-syslog",
                "tcp://127.0.0.1:514",
                "--audit-syslog-ca",
                ca_arg,
            ],
            "is for a tls:// collector",
        ),
        (vec!["--audit-format", "ocsf"], "--audit-syslog"),
        (
            vec![
                "--audit-syslog",
                "tcp://127.0.0.1:514",
                "--audit-format",
                "cef",
            ],
            "invalid value",
        ),
    ] {
        let mut all = vec![
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ];
        all.extend(args.iter().copied());
        let out = wardctl(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(!data.exists(), "{args:?} created the data directory");
    }
}

/// The signed audit checkpoints go the same way as the entries: each reaches rsyslog after the
/// entries it covers, under its own SD-ID (never counted as an entry), with its text as the
/// message, and the lines the SIEM kept verify with `wardctl audit verify --checkpoints` (what
/// an auditor does when the database and its backups are in doubt).
#[test]
#[cfg_attr(
    not(ward_rsyslog),
    ignore = "needs rsyslog with TLS: apt-get install rsyslog rsyslog-gnutls"
)]
fn rsyslog_gets_the_signed_checkpoints_and_they_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let Streaming {
        rsyslog: _rsyslog,
        controller,
        file,
        metrics,
        ..
    } = streaming(tmp.path(), &["--audit-checkpoint-every", "5"]);
    for n in 0..12 {
        audited_action(&controller, n);
    }
    let last = wait_complete(&metrics, &file);
    let kept = eventually_blocking(
        "a checkpoint of 10 entries or more in rsyslog's file",
        DEADLINE,
        || {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let lines: Vec<String> = text
                .lines()
                .filter(|l| l.starts_with("audit.checkpoint "))
                .map(str::to_owned)
                .collect();
            lines
                .iter()
                .any(|l| {
                    l.find("seq=\"")
                        .and_then(|i| l[i + 5..].split('"').next()?.parse::<u64>().ok())
                        .is_some_and(|seq| seq >= 10)
                })
                .then_some(lines)
        },
    );
    // Entries are still exactly 1..=last: no checkpoint was read as an entry.
    assert_eq!(
        first_occurrences(&received(&file)),
        (1..=last).collect::<Vec<_>>()
    );
    let dir = tmp.path().join("from-the-siem");
    std::fs::create_dir_all(&dir).unwrap();
    let checkpoints: String = kept
        .iter()
        .map(|line| {
            assert!(line.contains("[ward-checkpoint@32473 "), "{line}");
            let json = &line[line.find("] {").unwrap() + 2..];
            format!("{json}\n")
        })
        .collect();
    std::fs::write(dir.join("siem.jsonl"), checkpoints).unwrap();
    let verify = controller.ctl(&[
        "audit",
        "verify",
        "--checkpoints",
        dir.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    let verdict = json(&verify);
    assert!(verdict["checkpoints"].as_u64().unwrap() >= 1, "{verdict}");
    controller.stop();
}
