//! CPU time and memory of a process, read from `/proc/<pid>/stat` and `/proc/<pid>/status`
//! (Linux). Two numbers are all the benchmarks need, so no crate is used for them.

use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source} (is process {pid} still running? /proc is Linux only)")]
    Read {
        pid: u32,
        path: String,
        source: std::io::Error,
    },
    #[error("{path} has an unexpected format")]
    Format { path: String },
}

/// Clock ticks per second for `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on every Linux
/// this runs on, and the fallback when `getconf` is missing).
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

fn read(pid: u32, file: &str) -> Result<String, ProcError> {
    let path = format!("/proc/{pid}/{file}");
    std::fs::read_to_string(&path).map_err(|source| ProcError::Read { pid, path, source })
}

/// User plus system CPU time the process has used, all threads.
pub fn cpu_time(pid: u32, ticks_per_second: u64) -> Result<Duration, ProcError> {
    let text = read(pid, "stat")?;
    let format = || ProcError::Format {
        path: format!("/proc/{pid}/stat"),
    };
    // The command name (field 2) may contain spaces and parentheses: fields are counted
    // after its closing parenthesis. utime and stime are fields 14 and 15.
    let rest = text.rsplit_once(')').ok_or_else(format)?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64, ProcError> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(format)
    };
    let ticks = field(14)? + field(15)?;
    Ok(Duration::from_secs_f64(
        ticks as f64 / ticks_per_second.max(1) as f64,
    ))
}

/// User plus system CPU time of every process on this machine whose command name
/// (`/proc/<pid>/comm`) is `name`, summed: the database server's processes when it runs beside
/// the controller (`postgres` names its postmaster and every backend so). A process that ends
/// between the listing and its read is left out.
pub fn cpu_time_named(name: &str, ticks_per_second: u64) -> Result<Duration, ProcError> {
    let dir = std::fs::read_dir("/proc").map_err(|source| ProcError::Read {
        pid: 0,
        path: "/proc".to_owned(),
        source,
    })?;
    let mut total = Duration::ZERO;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if read(pid, "comm").is_ok_and(|comm| comm.trim_end() == name)
            && let Ok(cpu) = cpu_time(pid, ticks_per_second)
        {
            total += cpu;
        }
    }
    Ok(total)
}

/// Resident set size in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> Result<u64, ProcError> {
    status_kib(pid, "VmRSS:").map(|k| k * 1024)
}

/// Peak resident set size in bytes (`VmHWM`).
pub fn peak_rss_bytes(pid: u32) -> Result<u64, ProcError> {
    status_kib(pid, "VmHWM:").map(|k| k * 1024)
}

fn status_kib(pid: u32, key: &str) -> Result<u64, ProcError> {
    let text = read(pid, "status")?;
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| ProcError::Format {
            path: format!("/proc/{pid}/status"),
        })
}

/// A CPU-time reading to measure usage over an interval.
#[derive(Clone, Copy, Debug)]
pub struct CpuMark {
    at: Instant,
    cpu: Duration,
}

impl CpuMark {
    pub fn now(pid: u32, ticks: u64) -> Result<Self, ProcError> {
        Ok(Self {
            at: Instant::now(),
            cpu: cpu_time(pid, ticks)?,
        })
    }

    /// CPU used since `self`, as a percentage of one core (200 % = both cores of this machine).
    pub fn percent_until(&self, later: &CpuMark) -> f64 {
        let wall = later.at.saturating_duration_since(self.at).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        100.0 * later.cpu.saturating_sub(self.cpu).as_secs_f64() / wall
    }

    /// The same for every process named `name` ([`cpu_time_named`]).
    pub fn named(name: &str, ticks: u64) -> Result<Self, ProcError> {
        Ok(Self {
            at: Instant::now(),
            cpu: cpu_time_named(name, ticks)?,
        })
    }

    pub fn cpu_seconds_until(&self, later: &CpuMark) -> f64 {
        later.cpu.saturating_sub(self.cpu).as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(peak_rss_bytes(pid).unwrap() >= rss_bytes(pid).unwrap() / 2);
        let ticks = clock_ticks();
        let before = CpuMark::now(pid, ticks).unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        let after = CpuMark::now(pid, ticks).unwrap();
        assert!(before.percent_until(&after) >= 0.0);
    }

    #[test]
    fn sums_the_processes_of_a_name() {
        let ticks = clock_ticks();
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        // This test's own thread has a name of its own; the process's main thread carries
        // the binary's name, and its CPU counts every thread.
        let own = cpu_time(std::process::id(), ticks).unwrap();
        let named = cpu_time_named(comm.trim_end(), ticks).unwrap();
        assert!(named >= own, "{named:?} < {own:?}");
        assert_eq!(
            cpu_time_named("no-such-process-name", ticks).unwrap(),
            Duration::ZERO
        );
    }
}
