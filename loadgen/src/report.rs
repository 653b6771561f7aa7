//! What a scenario measured, for Ward and for the bare-stack baseline side by side, as a
//! table for people or one JSON object for scripts (and BENCHMARKS.md).

use serde::Serialize;
use serde_json::Value;

/// One number one target produced.
#[derive(Clone, Debug, Serialize)]
pub struct Reading {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub value: f64,
}

/// Everything one run against one target (Ward or the baseline) measured.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub readings: Vec<Reading>,
    /// Counts and settings that are not compared (errors, attempts, sizes).
    pub details: serde_json::Map<String, Value>,
}

impl Measured {
    pub fn push(&mut self, key: &'static str, label: &'static str, unit: &'static str, value: f64) {
        self.readings.push(Reading {
            key,
            label,
            unit,
            value,
        });
    }

    pub fn detail(&mut self, key: &str, value: impl Into<Value>) {
        self.details.insert(key.to_owned(), value.into());
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.readings.iter().find(|r| r.key == key).map(|r| r.value)
    }
}

/// A figure with Ward's value, the baseline's, and Ward ÷ baseline.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub ward: Option<f64>,
    pub baseline: Option<f64>,
    /// Ward ÷ baseline. For rates, higher is better (the issue asks ≥ 0.5); for times and
    /// sizes, lower is better.
    pub ratio: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub load_average_at_start: String,
    pub open_files_limit: u64,
}

impl Machine {
    pub fn describe(open_files_limit: u64) -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load_average_at_start: read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            open_files_limit,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub store: String,
    /// The flags given to `wardctl serve` beyond the ones every run passes.
    pub serve_args: Vec<String>,
    pub agents: usize,
    pub quick: bool,
    pub settings: Value,
    pub machine: Machine,
    pub figures: Vec<Figure>,
    pub ward: Option<serde_json::Map<String, Value>>,
    pub baseline: Option<serde_json::Map<String, Value>>,
}

impl Report {
    /// Pairs Ward's readings with the baseline's by key.
    pub fn figures(ward: Option<&Measured>, baseline: Option<&Measured>) -> Vec<Figure> {
        let order = ward
            .or(baseline)
            .map(|m| m.readings.clone())
            .unwrap_or_default();
        order
            .iter()
            .map(|r| {
                let w = ward.and_then(|m| m.get(r.key));
                let b = baseline.and_then(|m| m.get(r.key));
                let ratio = match (w, b) {
                    (Some(w), Some(b)) if b != 0.0 => Some(w / b),
                    _ => None,
                };
                Figure {
                    key: r.key,
                    label: r.label,
                    unit: r.unit,
                    ward: w,
                    baseline: b,
                    ratio,
                }
            })
            .collect()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn to_table(&self) -> String {
        let mut out = format!(
            "{} — {} agents, store {}{}\n",
            self.scenario,
            self.agents,
            self.store,
            if self.quick { " (quick)" } else { "" }
        );
        let rows: Vec<[String; 5]> = self
            .figures
            .iter()
            .map(|f| {
                [
                    f.label.to_owned(),
                    f.unit.to_owned(),
                    number(f.ward),
                    number(f.baseline),
                    f.ratio.map_or("-".into(), |r| format!("{r:.2}")),
                ]
            })
            .collect();
        let header = [
            "figure".to_owned(),
            "unit".to_owned(),
            "ward".to_owned(),
            "baseline".to_owned(),
            "ward/baseline".to_owned(),
        ];
        let mut widths = header.clone().map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(rows.iter()) {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .enumerate()
                .map(|(i, (cell, w))| {
                    if i < 2 {
                        format!("{cell:<w$}")
                    } else {
                        format!("{cell:>w$}")
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        for (name, details) in [("ward", &self.ward), ("baseline", &self.baseline)] {
            if let Some(details) = details.as_ref().filter(|d| !d.is_empty()) {
                let text: Vec<String> = details.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("{name}: {}\n", text.join(" ")));
            }
        }
        out
    }
}

fn number(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_pair_figures_by_key() {
        let mut w = Measured::default();
        w.push("rate", "rate", "/s", 500.0);
        w.push("p99", "p99", "ms", 20.0);
        let mut b = Measured::default();
        b.push("p99", "p99", "ms", 10.0);
        b.push("rate", "rate", "/s", 1000.0);
        let figures = Report::figures(Some(&w), Some(&b));
        assert_eq!(figures[0].ratio, Some(0.5));
        assert_eq!(figures[1].ratio, Some(2.0));
        let only = Report::figures(None, Some(&b));
        assert_eq!(only[0].ward, None);
        assert_eq!(only[0].ratio, None);
    }
}
