//! Every scenario in `--quick` mode, as a user runs it: against a real `wardctl serve` on
//! SQLite and the baseline (and on PostgreSQL when `WARD_TEST_POSTGRES_URL` names a server).
//! These tests prove the tool works and its figures are sane; speed is judged by the
//! benchmark (BENCHMARKS.md), never here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn loadgen() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ward-loadgen"))
}

/// `wardctl` from the same target directory.
fn wardctl() -> PathBuf {
    let path = loadgen().parent().unwrap().join("wardctl");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (which builds every binary) or `cargo build --bins` first",
        path.display()
    );
    path
}

/// Runs a quick scenario; the tool exits non-zero when a count (devices enrolled, streams
/// open, commands delivered and acknowledged, check-ins answered) is not what it should be.
fn run(args: &[&str]) -> Value {
    let wardctl = wardctl();
    let output = Command::new(loadgen())
        .args([
            "--quick",
            "--output",
            "json",
            "--controller-log",
            "warn",
            "--wardctl",
        ])
        .arg(&wardctl)
        .args(args)
        .output()
        .expect("run ward-loadgen");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "ward-loadgen {args:?} failed: {stderr}"
    );
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stderr}"));
    let figures = report["figures"].as_array().expect("figures");
    assert!(!figures.is_empty(), "{report}");
    for figure in figures {
        for side in ["ward", "baseline"] {
            if let Some(v) = figure[side].as_f64() {
                assert!(v.is_finite() && v >= 0.0, "{side} {}: {v}", figure["key"]);
            }
        }
    }
    for side in ["ward", "baseline"] {
        if let Some(details) = report[side].as_object() {
            for key in ["errors", "acknowledge_failed", "failed_attempts"] {
                if let Some(n) = details.get(key) {
                    assert_eq!(n.as_u64(), Some(0), "{side} {key} in {report}");
                }
            }
        }
    }
    report
}

fn figure(report: &Value, key: &str, side: &str) -> f64 {
    report["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == key)
        .and_then(|f| f[side].as_f64())
        .unwrap_or_else(|| panic!("no {side} figure {key} in {report}"))
}

fn postgres() -> Option<String> {
    match std::env::var("WARD_TEST_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set WARD_TEST_POSTGRES_URL (see .ci/run)"
            );
            eprintln!("WARD_TEST_POSTGRES_URL is not set: PostgreSQL run skipped");
            None
        }
    }
}

/// Runs `scenario` on SQLite with the baseline, then on PostgreSQL (Ward only).
fn both_stores(scenario: &[&str]) -> Vec<Value> {
    let mut reports = vec![run(scenario)];
    assert_eq!(reports[0]["store"], "sqlite");
    if let Some(url) = postgres() {
        let mut args = vec!["--no-baseline", "--postgres", url.as_str()];
        args.extend_from_slice(scenario);
        let report = run(&args);
        assert_eq!(report["store"], "postgres");
        reports.push(report);
    }
    reports
}

#[test]
fn enroll_quick_run_enrolls_every_device() {
    for report in both_stores(&["enroll"]) {
        assert_eq!(report["ward"]["enrolled"], 20, "{report}");
        assert!(figure(&report, "enroll_rate", "ward") > 0.0);
    }
}

#[test]
fn checkin_quick_run_answers_every_scheduled_check_in() {
    for report in both_stores(&["checkin"]) {
        assert_eq!(report["ward"]["completed"], 200, "{report}");
        assert!(figure(&report, "p99_ms", "ward") >= figure(&report, "p50_ms", "ward"));
    }
}

#[test]
fn hold_quick_run_keeps_every_stream_open() {
    for report in both_stores(&["hold"]) {
        assert_eq!(report["ward"]["streaming_at_end"], 20, "{report}");
        assert!(figure(&report, "rss_after_mib", "ward") > 0.0);
    }
}

#[test]
fn fanout_quick_run_delivers_and_acknowledges_every_wipe_and_draws_the_plot() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("fanout.svg");
    let report = run(&["fanout", "--plot", plot.to_str().unwrap()]);
    for side in ["ward", "baseline"] {
        assert_eq!(report[side]["delivered"], 20, "{report}");
        assert_eq!(report[side]["acknowledged_ok"], 20, "{report}");
        assert_eq!(report[side]["results_succeeded"], 20, "{report}");
    }
    assert!(figure(&report, "last_ack_ms", "ward") >= figure(&report, "last_delivery_ms", "ward"));
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("ward: delivery"),
        "{svg:.200}"
    );
    if let Some(url) = postgres() {
        let report = run(&[
            "--no-baseline",
            "--postgres",
            &url,
            "fanout",
            "--action",
            "wipe",
        ]);
        assert_eq!(report["ward"]["acknowledged_ok"], 20, "{report}");
    }
}

#[test]
fn restart_quick_run_brings_every_agent_back() {
    for report in both_stores(&["restart"]) {
        assert!(figure(&report, "all_back_s", "ward") > 0.0, "{report}");
        assert!(
            figure(&report, "attempts_per_agent", "ward") >= 1.0,
            "{report}"
        );
    }
}

#[test]
fn agent_idle_quick_run_measures_an_enrolled_agent() {
    let agent = loadgen().parent().unwrap().join("ward-agent");
    assert!(
        agent.exists(),
        "{} is missing: run `cargo build --bins` first",
        agent.display()
    );
    let report = run(&["agent-idle", "--ward-agent", agent.to_str().unwrap()]);
    assert_eq!(report["ward"]["checked_in"], true, "{report}");
    assert!(figure(&report, "agent_rss_mib", "ward") > 0.0, "{report}");
    assert!(report["baseline"].is_null(), "{report}");
}
