//! Device facts the agent reports: host name, OS, kernel, architecture, agent version.

use ward_proto::v1::DeviceFacts;

/// The longest value the controller accepts for a fact.
pub(crate) const MAX_LEN: usize = 256;

pub fn collect() -> DeviceFacts {
    let (os_name, os_version) = os_release();
    DeviceFacts {
        hostname: clean(&gethostname::gethostname().to_string_lossy()),
        os_name: clean(&os_name),
        os_version: clean(&os_version),
        kernel_version: clean(&kernel_version()),
        arch: std::env::consts::ARCH.to_owned(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// Cleans a host's text by Ward's one rule (`ward_vocab::text::clean`: control characters and
/// bidirectional overrides become spaces, the length bounded), so odd host data never makes
/// the controller refuse a check-in. The inventory's texts are cleaned the same way.
pub(crate) fn clean(value: &str) -> String {
    ward_vocab::text::clean(value.trim(), MAX_LEN)
}

fn os_release() -> (String, String) {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_owned())
    };
    let name = field("NAME").unwrap_or_else(|| std::env::consts::OS.to_owned());
    let version = field("VERSION_ID")
        .or_else(|| field("VERSION"))
        .unwrap_or_default();
    (name, version)
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_bounded_and_printable() {
        assert_eq!(clean(" a\u{7}b\u{202e}c\n"), "a b c");
        let long = clean(&"é".repeat(300));
        assert!(long.len() <= MAX_LEN && long.ends_with('…'), "{long}");
        let facts = collect();
        assert!(!facts.arch.is_empty());
        assert_eq!(facts.agent_version, env!("CARGO_PKG_VERSION"));
    }
}
