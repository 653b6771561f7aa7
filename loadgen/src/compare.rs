//! `ward-loadgen compare BEFORE AFTER`: the before/after table of BENCHMARKS.md, from two
//! directories of `--output json` results (as `loadgen/bench.sh` writes them), each figure
//! beside the baseline measured in the same run as the "after" figure, and the target's
//! verdict on the "after" figure.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

/// How a row's target is judged on the "after" figure.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// No target: shown for context.
    None,
    /// Ward ÷ baseline at least this (rates).
    RatioAtLeast(f64),
    /// Ward ÷ baseline at most this (times).
    RatioAtMost(f64),
    /// The figure itself at most this, in its unit.
    AtMost(f64),
}

impl Target {
    fn text(self, unit: &str) -> String {
        match self {
            Target::None => String::new(),
            Target::RatioAtLeast(r) => format!("≥ {r}× baseline"),
            Target::RatioAtMost(r) => format!("≤ {r}× baseline"),
            Target::AtMost(v) => format!("≤ {} {unit}", number(v)),
        }
    }

    /// `None` when there is no target or a figure is missing.
    fn met(self, ward: Option<f64>, baseline: Option<f64>) -> Option<bool> {
        let ratio = ward.zip(baseline.filter(|b| *b != 0.0)).map(|(w, b)| w / b);
        match self {
            Target::None => None,
            Target::RatioAtLeast(r) => ratio.map(|x| x >= r),
            Target::RatioAtMost(r) => ratio.map(|x| x <= r),
            Target::AtMost(v) => ward.map(|w| w <= v),
        }
    }
}

struct Row {
    /// The result file's name without the store and `.json`: `fanout` reads `fanout-sqlite.json`.
    scenario: &'static str,
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    /// Per store: SQLite's target, PostgreSQL's.
    targets: [Target; 2],
}

const fn row(
    scenario: &'static str,
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    target: Target,
) -> Row {
    Row {
        scenario,
        key,
        label,
        unit,
        targets: [target, target],
    }
}

/// The figures issue 15 names, with its targets, then the ones shown for context.
const ROWS: &[Row] = &[
    row(
        "fanout",
        "enqueue_ms",
        "offboard 10,000 streaming devices: admin call returned (all committed)",
        "ms",
        Target::None,
    ),
    row(
        "fanout",
        "last_ack_ms",
        "the same: last ack",
        "ms",
        Target::RatioAtMost(1.5),
    ),
    row(
        "fanout",
        "results_ms",
        "the same: all receipts verified and devices revoked (after the acks)",
        "ms",
        Target::AtMost(10_000.0),
    ),
    row(
        "checkin-max",
        "achieved_rate",
        "check-ins/s, closed loop, 1,000 agents",
        "/s",
        Target::RatioAtLeast(0.5),
    ),
    Row {
        scenario: "checkin-5000",
        key: "p99_ms",
        label: "check-in p99 at 5,000/s offered (answered calls)",
        unit: "ms",
        targets: [Target::AtMost(50.0), Target::AtMost(100.0)],
    },
    row(
        "checkin-5000",
        "achieved_rate",
        "check-ins/s answered at 5,000/s offered",
        "/s",
        Target::None,
    ),
    row(
        "checkin-5000",
        "shed_percent",
        "check-ins shed with UNAVAILABLE at 5,000/s offered",
        "%",
        Target::None,
    ),
    row(
        "enroll",
        "enroll_rate",
        "enrollments/s",
        "/s",
        Target::RatioAtLeast(0.7),
    ),
    row(
        "hold",
        "rss_per_agent_kib",
        "memory per connected agent, 10,000 agents",
        "KiB",
        Target::AtMost(64.0),
    ),
    row(
        "checkin-500",
        "p99_ms",
        "check-in p99 at 500/s offered",
        "ms",
        Target::None,
    ),
    row(
        "checkin-500",
        "cpu_ms_per_checkin",
        "server CPU per check-in at 500/s",
        "ms",
        Target::None,
    ),
    row(
        "restart",
        "all_back_s",
        "restart under 10,000 agents: all back",
        "s",
        Target::AtMost(10.0),
    ),
];

const STORES: [(&str, &str); 2] = [("sqlite", "SQLite"), ("postgres", "PostgreSQL")];

/// One figure of one result file: (Ward's, the baseline's).
fn figure(dir: &Path, scenario: &str, store: &str, key: &str) -> (Option<f64>, Option<f64>) {
    let path = dir.join(format!("{scenario}-{store}.json"));
    let Some(report) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
    else {
        return (None, None);
    };
    let found = report["figures"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["key"] == key);
    match found {
        Some(f) => (f["ward"].as_f64(), f["baseline"].as_f64()),
        None => (None, None),
    }
}

/// The markdown table: for each store, before, after, the baseline of the after run, their
/// ratio and the verdict. A figure missing from a directory shows as "–".
pub fn table(before: &Path, after: &Path) -> String {
    let mut out = String::from("| figure | unit |");
    for (_, store) in STORES {
        let _ = write!(
            out,
            " {store} before | {store} after | baseline | ratio | target | |"
        );
    }
    out.push_str("\n|---|---|");
    for _ in STORES {
        out.push_str("---:|---:|---:|---:|---|---|");
    }
    out.push('\n');
    for r in ROWS {
        let _ = write!(out, "| {} | {} |", r.label, r.unit);
        for ((store, _), target) in STORES.iter().zip(r.targets) {
            let (was, _) = figure(before, r.scenario, store, r.key);
            let (now, baseline) = figure(after, r.scenario, store, r.key);
            let ratio = now
                .zip(baseline.filter(|b| *b != 0.0))
                .map(|(w, b)| format!("{:.2}", w / b));
            let verdict = match target.met(now, baseline) {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "",
            };
            let _ = write!(
                out,
                " {} | {} | {} | {} | {} | {verdict} |",
                cell(was),
                cell(now),
                cell(baseline),
                ratio.as_deref().unwrap_or("–"),
                target.text(r.unit),
            );
        }
        out.push('\n');
    }
    out
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), number)
}

/// Three significant figures at most, thousands grouped: 43,100 · 581 · 2.8 · 0.046.
fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        #[allow(clippy::cast_possible_truncation)] // a table cell; a float `as` cast saturates
        let rounded = value.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if rounded < 0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn write(dir: &Path, name: &str, figures: &[(&str, f64, f64)]) {
        let figures: Vec<Value> = figures
            .iter()
            .map(|(k, w, b)| serde_json::json!({"key": k, "ward": w, "baseline": b}))
            .collect();
        let report = serde_json::json!({ "figures": figures });
        std::fs::write(dir.join(name), report.to_string()).unwrap();
    }

    #[test]
    fn each_store_shows_before_after_baseline_and_the_verdict() {
        let before = tempfile::tempdir().unwrap();
        let after = tempfile::tempdir().unwrap();
        write(
            before.path(),
            "fanout-sqlite.json",
            &[("last_ack_ms", 43_100.0, 800.0)],
        );
        write(
            after.path(),
            "fanout-sqlite.json",
            &[
                ("last_ack_ms", 1_100.0, 800.0),
                ("results_ms", 12_000.0, 900.0),
            ],
        );
        let table = table(before.path(), after.path());
        let line = |label: &str| {
            table
                .lines()
                .find(|l| l.starts_with(&format!("| {label} |")))
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            line("the same: last ack"),
            "| the same: last ack | ms | 43,100 | 1,100 | 800 | 1.38 | ≤ 1.5× baseline | met | – | – | – | – | ≤ 1.5× baseline |  |"
        );
        assert!(
            line("the same: all receipts verified and devices revoked (after the acks)")
                .contains("| – | 12,000 | 900 | 13.33 | ≤ 10,000 ms | **missed** |"),
            "{table}"
        );
    }

    #[test]
    fn numbers_keep_three_figures() {
        assert_eq!(
            [43_100.4, 581.0, 44.83, 2.8, 0.0461].map(number),
            ["43,100", "581", "44.8", "2.80", "0.046"]
        );
    }
}
