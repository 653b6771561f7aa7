//! Whether a host firewall filters incoming traffic, from four detectors:
//!
//! - firewalld: a running `firewalld` process (it loads its zones' rules when it starts);
//! - nftables: `nft -j list ruleset` (or the text form with older nft): a chain hooked on
//!   `input` with policy drop, or that drops or rejects in it or a chain it jumps to;
//! - iptables: `iptables-save -t filter`, judged the same way from the `INPUT` chain;
//! - ufw: `ENABLED=yes` in `/etc/ufw/ufw.conf`. When nft or iptables rules can be read, ufw
//!   counts only if its `ufw-` chains are loaded. When neither can (the agent is not root),
//!   the setting alone passes and the detail says it is the configuration, not the loaded
//!   rules, that was read: like the other checks, it then verifies configuration.
//!
//! Reading rules needs root (CAP_NET_ADMIN). IPv6-only rules from `ip6tables` are not read.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Outcome, Roots, RunError};

const TIMEOUT: Duration = Duration::from_secs(10);
const OUTPUT_LIMIT: usize = 8 * 1024 * 1024;

/// One chain of a packet-filter ruleset, from whichever tool listed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Chain {
    family: String,
    table: String,
    name: String,
    /// "input" for a base chain on the input hook.
    hook: Option<String>,
    /// Lowercase: "accept", "drop".
    policy: Option<String>,
    /// Some rule drops or rejects.
    drops: bool,
    /// Chains its rules jump or go to.
    jumps: Vec<String>,
}

/// What one readable ruleset shows.
#[derive(Debug, PartialEq, Eq)]
struct Rules {
    /// Why it filters incoming traffic; `None` when it does not.
    filtering: Option<String>,
    /// It holds ufw's chains.
    ufw: bool,
}

#[derive(Debug, Default)]
struct Assessment {
    /// (detector, why it counts as an active firewall)
    active: Vec<(&'static str, String)>,
    /// Readable evidence of no filtering, and context.
    open: Vec<String>,
    /// Detectors that could not read anything, with the reason.
    unread: Vec<String>,
    /// Some ruleset could be read.
    readable: bool,
}

pub fn check(roots: &Roots) -> Outcome {
    let a = assess(roots);
    let unread = if a.unread.is_empty() {
        String::new()
    } else {
        format!("; not read: {}", a.unread.join("; "))
    };
    if !a.active.is_empty() {
        let why: Vec<&str> = a.active.iter().map(|(_, why)| why.as_str()).collect();
        Outcome::Pass(why.join("; "))
    } else if a.readable {
        Outcome::Fail(format!(
            "no packet filtering of incoming traffic: {}{unread}",
            a.open.join("; ")
        ))
    } else {
        Outcome::Unsupported(format!(
            "the packet-filter rules could not be read ({}); {}",
            a.unread.join("; "),
            a.open.join("; ")
        ))
    }
}

/// One line for the inventory: "active: firewalld, nftables", "inactive" or
/// "unknown: <why>".
pub fn state(roots: &Roots) -> String {
    let a = assess(roots);
    if !a.active.is_empty() {
        let names: BTreeSet<&str> = a.active.iter().map(|(name, _)| *name).collect();
        format!(
            "active: {}",
            names.into_iter().collect::<Vec<_>>().join(", ")
        )
    } else if a.readable {
        "inactive".to_owned()
    } else {
        format!("unknown: {}", a.unread.join("; "))
    }
}

fn assess(roots: &Roots) -> Assessment {
    let mut a = Assessment::default();
    if process_running(roots, "firewalld") {
        a.active.push(("firewalld", "firewalld is running".into()));
    } else {
        a.open.push("firewalld is not running".into());
    }
    let mut ufw_loaded = false;
    for (name, rules) in [("nftables", nft(roots)), ("iptables", iptables(roots))] {
        match rules {
            Ok(rules) => {
                a.readable = true;
                ufw_loaded |= rules.ufw;
                match rules.filtering {
                    Some(why) => a.active.push((name, format!("{name}: {why}"))),
                    None => a
                        .open
                        .push(format!("{name} has no input chain that drops or rejects")),
                }
            }
            Err(why) => a.unread.push(why),
        }
    }
    let ufw_conf = roots.etc.join("ufw/ufw.conf");
    match (ufw_enabled(&ufw_conf), ufw_loaded, a.readable) {
        (false, _, _) => a.open.push("ufw is not enabled".into()),
        (true, true, _) => a
            .active
            .push(("ufw", "ufw is enabled and its rules are loaded".into())),
        (true, false, true) => a.open.push(format!(
            "ufw is enabled in {} but its rules are not loaded",
            ufw_conf.display()
        )),
        (true, false, false) => a.active.push((
            "ufw",
            format!(
                "ufw is enabled in {} (its loaded rules could not be read to confirm it)",
                ufw_conf.display()
            ),
        )),
    }
    a
}

/// A process whose name (or script, for an interpreter) is `name`.
fn process_running(roots: &Roots, name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(&roots.proc) else {
        return false;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .any(|e| {
            let dir = e.path();
            if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == name) {
                return true;
            }
            // `python3 /usr/sbin/firewalld`: the script is the first or second argument.
            std::fs::read(dir.join("cmdline")).is_ok_and(|cmdline| {
                cmdline.split(|b| *b == 0).take(2).any(|arg| {
                    let arg = String::from_utf8_lossy(arg);
                    arg.rsplit('/').next() == Some(name)
                })
            })
        })
}

fn ufw_enabled(conf: &std::path::Path) -> bool {
    std::fs::read_to_string(conf).is_ok_and(|text| {
        text.lines().any(|line| {
            line.trim()
                .strip_prefix("ENABLED")
                .and_then(|rest| rest.trim_start().strip_prefix('='))
                .is_some_and(|v| {
                    v.trim()
                        .trim_matches(['"', '\''])
                        .eq_ignore_ascii_case("yes")
                })
        })
    })
}

/// The nftables ruleset, as JSON or else as text.
fn nft(roots: &Roots) -> Result<Rules, String> {
    let json = roots.run("nft", &["-j", "list", "ruleset"], TIMEOUT, OUTPUT_LIMIT);
    if let Ok(ran) = &json
        && ran.status.success()
        && !ran.truncated
        && let Some(chains) = parse_nft_json(&ran.stdout)
    {
        return Ok(rules(&chains));
    }
    if let Err(RunError::Missing(why)) = json {
        return Err(why);
    }
    // nft without JSON support; or no permission, which the text form reports too.
    match roots.run("nft", &["list", "ruleset"], TIMEOUT, OUTPUT_LIMIT) {
        Ok(ran) if ran.status.success() && !ran.truncated => {
            Ok(rules(&parse_nft_text(&ran.stdout)))
        }
        Ok(ran) if ran.truncated => Err("nft list ruleset printed more than 8 MiB".into()),
        Ok(ran) => Err(format!("nft list ruleset failed: {}", ran.failure())),
        Err(e) => Err(e.to_string()),
    }
}

fn iptables(roots: &Roots) -> Result<Rules, String> {
    let ran = roots
        .run("iptables-save", &["-t", "filter"], TIMEOUT, OUTPUT_LIMIT)
        .map_err(|e| e.to_string())?;
    if ran.stderr.contains("Table does not exist") {
        // Read, and there is no filter table: nothing filters.
        return Ok(Rules {
            filtering: None,
            ufw: false,
        });
    }
    if !ran.status.success() || (ran.stdout.trim().is_empty() && !ran.stderr.is_empty()) {
        return Err(format!("iptables-save failed: {}", ran.failure()));
    }
    if ran.truncated {
        return Err("iptables-save printed more than 8 MiB".into());
    }
    Ok(rules(&parse_iptables_save(&ran.stdout)))
}

fn rules(chains: &[Chain]) -> Rules {
    Rules {
        filtering: filtering(chains),
        ufw: chains.iter().any(|c| c.name.starts_with("ufw")),
    }
}

/// Why the chains filter incoming traffic: an input base chain with policy drop, or one
/// that drops or rejects in itself or a chain it reaches by jumps.
fn filtering(chains: &[Chain]) -> Option<String> {
    let bases = chains.iter().filter(|c| {
        c.hook.as_deref() == Some("input") && matches!(c.family.as_str(), "ip" | "ip6" | "inet")
    });
    for base in bases {
        let label = format!("chain {} ({} {})", base.name, base.family, base.table);
        if base.policy.as_deref() == Some("drop") {
            return Some(format!("{label} hooks input with policy drop"));
        }
        let mut seen = BTreeSet::new();
        let mut stack = vec![base.name.as_str()];
        while let Some(name) = stack.pop() {
            if !seen.insert(name) {
                continue;
            }
            let Some(chain) = chains
                .iter()
                .find(|c| c.family == base.family && c.table == base.table && c.name == name)
            else {
                continue;
            };
            if chain.drops {
                let via = if name == base.name {
                    String::new()
                } else {
                    format!(" (in chain {name})")
                };
                return Some(format!("{label} drops or rejects packets{via}"));
            }
            stack.extend(chain.jumps.iter().map(String::as_str));
        }
    }
    None
}

/// `nft -j list ruleset`; `None` when it is not nft's JSON.
fn parse_nft_json(text: &str) -> Option<Vec<Chain>> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let items = value.get("nftables")?.as_array()?;
    let s =
        |v: &serde_json::Value, key: &str| v.get(key).and_then(|x| x.as_str()).map(str::to_owned);
    let mut chains: Vec<Chain> = items
        .iter()
        .filter_map(|item| item.get("chain"))
        .map(|c| Chain {
            family: s(c, "family").unwrap_or_default(),
            table: s(c, "table").unwrap_or_default(),
            name: s(c, "name").unwrap_or_default(),
            hook: s(c, "hook"),
            policy: s(c, "policy").map(|p| p.to_ascii_lowercase()),
            ..Chain::default()
        })
        .collect();
    for rule in items.iter().filter_map(|item| item.get("rule")) {
        let (family, table, name) = (s(rule, "family"), s(rule, "table"), s(rule, "chain"));
        let Some(chain) = chains.iter_mut().find(|c| {
            Some(&c.family) == family.as_ref()
                && Some(&c.table) == table.as_ref()
                && Some(&c.name) == name.as_ref()
        }) else {
            continue;
        };
        if let Some(expr) = rule.get("expr") {
            verdicts(expr, chain);
        }
    }
    Some(chains)
}

/// Drop/reject verdicts and jump/goto targets anywhere in a rule (also inside verdict maps).
fn verdicts(value: &serde_json::Value, chain: &mut Chain) {
    match value {
        serde_json::Value::Array(items) => items.iter().for_each(|v| verdicts(v, chain)),
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match key.as_str() {
                    "drop" | "reject" => chain.drops = true,
                    "jump" | "goto" => {
                        if let Some(target) = v.get("target").and_then(|t| t.as_str()) {
                            chain.jumps.push(target.to_owned());
                        }
                    }
                    _ => verdicts(v, chain),
                }
            }
        }
        _ => {}
    }
}

/// `nft list ruleset` text.
fn parse_nft_text(text: &str) -> Vec<Chain> {
    let mut chains = Vec::new();
    let mut table = (String::new(), String::new());
    // The chain being read, and how deep in braces its line is.
    let mut current: Option<(Chain, i64)> = None;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((chain, depth)) = &mut current else {
            match words.as_slice() {
                ["table", family, name, "{"] => table = ((*family).into(), (*name).into()),
                ["chain", name, "{"] => {
                    let chain = Chain {
                        family: table.0.clone(),
                        table: table.1.clone(),
                        name: (*name).to_owned(),
                        ..Chain::default()
                    };
                    current = Some((chain, 1));
                }
                _ => {}
            }
            continue;
        };
        *depth += line.matches('{').count() as i64 - line.matches('}').count() as i64;
        if *depth <= 0 {
            chains.extend(current.take().map(|(chain, _)| chain));
            continue;
        }
        let word = |w: &&str| w.trim_end_matches([';', ',', '}']).to_owned();
        if let Some(at) = words.iter().position(|w| *w == "hook") {
            chain.hook = words.get(at + 1).map(word);
        }
        if let Some(at) = words.iter().position(|w| *w == "policy") {
            chain.policy = words.get(at + 1).map(|p| word(p).to_ascii_lowercase());
        } else if words
            .iter()
            .any(|w| matches!(word(w).as_str(), "drop" | "reject"))
        {
            chain.drops = true;
        }
        for (verb, target) in words.iter().zip(words.iter().skip(1)) {
            if matches!(*verb, "jump" | "goto") {
                chain.jumps.push(word(target));
            }
        }
    }
    chains
}

/// `iptables-save` output: the filter table's chains.
fn parse_iptables_save(text: &str) -> Vec<Chain> {
    let mut chains: Vec<Chain> = Vec::new();
    let mut in_filter = false;
    for line in text.lines().map(str::trim) {
        if let Some(table) = line.strip_prefix('*') {
            in_filter = table == "filter";
            continue;
        }
        if !in_filter {
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let mut words = decl.split_whitespace();
            let name = words.next().unwrap_or_default().to_owned();
            chains.push(Chain {
                family: "ip".into(),
                table: "filter".into(),
                hook: (name == "INPUT").then(|| "input".to_owned()),
                policy: words
                    .next()
                    .filter(|p| *p != "-")
                    .map(str::to_ascii_lowercase),
                name,
                ..Chain::default()
            });
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(&"-A"), Some(name)) = (words.first(), words.get(1)) else {
            continue;
        };
        let Some(chain) = chains.iter_mut().find(|c| c.name == *name) else {
            continue;
        };
        for (flag, target) in words.iter().zip(words.iter().skip(1)) {
            match (*flag, *target) {
                ("-j" | "--jump", "DROP" | "REJECT") => chain.drops = true,
                ("-j" | "--jump" | "-g" | "--goto", target) => chain.jumps.push(target.to_owned()),
                _ => {}
            }
        }
    }
    chains
}

#[cfg(test)]
#[path = "firewall_tests.rs"]
mod tests;
