//! Whether a host firewall filters incoming traffic.
//!
//! The loaded rules decide whenever some can be read (that needs root, CAP_NET_ADMIN):
//! `nft -j list ruleset` (or the text form with older nft), `iptables-save -t filter` and
//! `ip6tables-save -t filter`.
//! A base chain on the `input` hook filters when the path through it, following jumps and
//! gotos, ends in an unconditional drop or reject (a rule that matches every packet that
//! reaches it), or when nothing ends that path and the chain's policy is drop. Conditional
//! drops (`ct state invalid drop`, a fail2ban ban, one closed port) are not a firewall, and
//! an unconditional accept before any unconditional drop opens the path. firewalld and ufw
//! only label the rules they created.
//!
//! When no ruleset can be read (the agent is not root, or no tool is installed), two weaker
//! signs count, and the detail says the rules themselves were not read (both cover IPv6:
//! firewalld's table is `inet`, and ufw drops IPv6 even with `IPV6=no`):
//!
//! - a process whose `comm` is exactly `firewalld` with real uid 0 (an unprivileged user
//!   cannot start a root process, so this cannot be spoofed by naming a program firewalld);
//! - `ENABLED=yes` in `/etc/ufw/ufw.conf`: like other checks, then only the configuration.
//!
//! IPv4 and IPv6 are judged apart: an nftables chain of the `ip` family (and every
//! `iptables` chain) filters IPv4 only, one of the `ip6` family (and every `ip6tables`
//! chain) IPv6 only, and an `inet` chain both. The check passes only when both are filtered,
//! or IPv4 is and the host has no IPv6 (no `/proc/net/if_inet6`, or `disable_ipv6` set on
//! every interface and as the default for new ones). IPv6 left open fails; IPv6 rules that
//! could not be read at all are "unsupported".

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use super::{Outcome, Roots, RunError};

#[path = "firewall_parse.rs"]
mod parse;
#[cfg(test)]
use parse::tokens;
use parse::{parse_iptables_save, parse_nft_json, parse_nft_text};

const TIMEOUT: Duration = Duration::from_secs(10);
const OUTPUT_LIMIT: usize = 8 * 1024 * 1024;
/// How many conditional drops a detail names.
const NAMED: usize = 3;

/// The firewall check's outcome and the inventory's one-line state, from one reading of the
/// rules (one `nft` and one `iptables-save` run, at most one scan of `/proc`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub outcome: Outcome,
    /// "active: nftables", "active: firewalld (rules not read)", "inactive" or
    /// "unknown: <why>".
    pub state: String,
}

/// The check alone (the agent itself takes both answers from one [`assess`]).
#[cfg(test)]
pub fn check(roots: &Roots) -> Outcome {
    assess(roots).outcome
}

/// The inventory line alone; see [`Assessment::state`].
#[cfg(test)]
pub fn state(roots: &Roots) -> String {
    assess(roots).state
}

pub fn assess(roots: &Roots) -> Assessment {
    let mut read = Vec::new();
    let mut unread = Vec::new();
    for (tool, rules) in [
        ("nftables", nft(roots)),
        ("iptables", iptables(roots, "iptables-save", "ip")),
        ("ip6tables", iptables(roots, "ip6tables-save", "ip6")),
    ] {
        match rules {
            Ok(chains) => read.push((tool, chains)),
            Err(why) => unread.push((tool, why)),
        }
    }
    let ufw_conf = roots.etc.join("ufw/ufw.conf");
    let ufw = ufw_enabled(&ufw_conf).then_some(ufw_conf.as_path());
    if read.is_empty() {
        let unread: Vec<String> = unread.into_iter().map(|(_, why)| why).collect();
        without_rules(roots, &unread, ufw)
    } else {
        from_rules(&read, &unread, ufw, ipv6_off(roots).as_deref())
    }
}

/// The address families a tool's rules or a chain's family cover: (IPv4, IPv6).
fn families(family_or_tool: &str) -> (bool, bool) {
    match family_or_tool {
        "ip" | "iptables" => (true, false),
        "ip6" | "ip6tables" => (false, true),
        // nftables (the tool) can list chains of either.
        "inet" | "nftables" => (true, true),
        _ => (false, false),
    }
}

/// Why this host receives no IPv6 traffic, or `None` when it may (or that cannot be told).
fn ipv6_off(roots: &Roots) -> Option<String> {
    let net = roots.proc.join("net");
    if net.is_dir() && !net.join("if_inet6").exists() {
        return Some(format!(
            "the kernel has no IPv6 ({} does not exist)",
            net.join("if_inet6").display()
        ));
    }
    let conf = roots.proc.join("sys/net/ipv6/conf");
    let values: Vec<String> = std::fs::read_dir(&conf)
        .ok()?
        .flatten()
        .map(|e| {
            std::fs::read_to_string(e.path().join("disable_ipv6"))
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .collect();
    // "all" and "default" are entries too: new interfaces start disabled.
    (!values.is_empty() && values.iter().all(|v| v == "1")).then(|| {
        "IPv6 is disabled on every interface and for new ones (net.ipv6.conf.*.disable_ipv6 = 1)"
            .to_owned()
    })
}

/// What the rules say for one address family.
#[derive(Default)]
struct Family {
    filtering: Vec<String>,
    open: Vec<String>,
    /// Some tool that can hold this family's rules was read.
    seen: bool,
}

/// Judged from the rules alone, IPv4 and IPv6 apart.
fn from_rules(
    read: &[(&str, Vec<Chain>)],
    unread: &[(&str, String)],
    ufw: Option<&Path>,
    ipv6_off: Option<&str>,
) -> Assessment {
    let (mut v4, mut v6) = (Family::default(), Family::default());
    let mut active = BTreeSet::new();
    let mut ufw_loaded = false;
    for (tool, chains) in read {
        ufw_loaded |= chains.iter().any(|c| c.name.starts_with("ufw"));
        let (tool4, tool6) = families(tool);
        v4.seen |= tool4;
        v6.seen |= tool6;
        let bases = judge(chains);
        if bases.is_empty() {
            let text = format!("{tool} has no chain on the input hook");
            for (covers, family) in [(tool4, &mut v4), (tool6, &mut v6)] {
                if covers {
                    family.open.push(text.clone());
                }
            }
        }
        for base in bases {
            let text = format!("{tool}: {}", base.text);
            let (base4, base6) = families(&base.family);
            for (covers, family) in [(base4, &mut v4), (base6, &mut v6)] {
                if !covers {
                    continue;
                }
                if base.filtering {
                    family.filtering.push(text.clone());
                } else {
                    family.open.push(text.clone());
                }
            }
            if base.filtering {
                active.insert(*tool);
                active.extend(base.creator);
            }
        }
    }
    let mut filtering: Vec<String> = Vec::new();
    for text in v4.filtering.iter().chain(&v6.filtering) {
        if !filtering.contains(text) {
            filtering.push(text.clone());
        }
    }
    let active = active.into_iter().collect::<Vec<_>>().join(", ");
    let v6_done = !v6.filtering.is_empty() || ipv6_off.is_some();
    if !v4.filtering.is_empty() && v6_done {
        let mut detail = filtering.join("; ");
        if let (Some(off), true) = (ipv6_off, v6.filtering.is_empty()) {
            detail.push_str(&format!("; IPv6 needs no filtering: {off}"));
        }
        return Assessment {
            outcome: Outcome::Pass(detail),
            state: format!("active: {active}"),
        };
    }
    let unread_for = |ipv6: bool| {
        let list: Vec<&str> = unread
            .iter()
            .filter(|(tool, _)| {
                let (t4, t6) = families(tool);
                if ipv6 { t6 } else { t4 }
            })
            .map(|(_, why)| why.as_str())
            .collect();
        if list.is_empty() {
            String::new()
        } else {
            format!("; not read: {}", list.join("; "))
        }
    };
    if v4.filtering.is_empty() {
        let mut open = v4.open;
        for text in v6.open {
            if !open.contains(&text) {
                open.push(text);
            }
        }
        if let Some(conf) = ufw
            && !ufw_loaded
        {
            open.push(format!(
                "ufw is enabled in {} but its rules are not loaded",
                conf.display()
            ));
        }
        let (what, state) = if v6.filtering.is_empty() {
            ("incoming traffic", "inactive".to_owned())
        } else {
            (
                "incoming IPv4 traffic",
                format!("active for IPv6 only: {active}"),
            )
        };
        let also = if v6.filtering.is_empty() {
            String::new()
        } else {
            format!(" (IPv6 is filtered: {})", v6.filtering.join("; "))
        };
        return Assessment {
            outcome: Outcome::Fail(format!(
                "no packet filtering of {what}{also}: {}{}",
                open.join("; "),
                unread_for(false)
            )),
            state,
        };
    }
    // IPv4 is filtered; IPv6 is enabled and not.
    let state = format!("active for IPv4 only: {active}");
    if !v6.seen {
        return Assessment {
            outcome: Outcome::Unsupported(format!(
                "IPv4 is filtered ({}), but no IPv6 rules could be read{}",
                v4.filtering.join("; "),
                unread_for(true)
            )),
            state,
        };
    }
    Assessment {
        outcome: Outcome::Fail(format!(
            "no packet filtering of incoming IPv6 traffic (IPv4 is filtered: {}): {}{}",
            v4.filtering.join("; "),
            if v6.open.is_empty() {
                "no IPv6 chain on the input hook".to_owned()
            } else {
                v6.open.join("; ")
            },
            unread_for(true)
        )),
        state,
    }
}

/// No ruleset could be read: a root firewalld process or ufw's configuration, said as such.
fn without_rules(roots: &Roots, unread: &[String], ufw: Option<&Path>) -> Assessment {
    let reasons = unread.join("; ");
    let mut signs = Vec::new();
    let mut names = Vec::new();
    if let Some(pid) = firewalld_as_root(roots) {
        signs.push(format!(
            "firewalld runs as root (pid {pid}); its rules themselves were not read"
        ));
        names.push("firewalld");
    }
    if let Some(conf) = ufw {
        signs.push(format!(
            "ufw is enabled in {}: only that configuration was read, not the loaded rules",
            conf.display()
        ));
        names.push("ufw");
    }
    if signs.is_empty() {
        return Assessment {
            outcome: Outcome::Unsupported(format!(
                "the packet-filter rules could not be read ({reasons}); no firewalld process running as root was found; ufw is not enabled"
            )),
            state: format!("unknown: {reasons}"),
        };
    }
    Assessment {
        outcome: Outcome::Pass(format!("{} ({reasons})", signs.join("; "))),
        state: format!("active: {} (rules not read)", names.join(", ")),
    }
}

/// The pid of a process named exactly `firewalld` whose real user is root.
fn firewalld_as_root(roots: &Roots) -> Option<String> {
    std::fs::read_dir(&roots.proc)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (!name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())).then_some(name)
        })
        .find(|pid| {
            let dir = roots.proc.join(pid);
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if comm.strip_suffix('\n').unwrap_or(&comm) != "firewalld" {
                return false;
            }
            let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
            // "Uid:\treal\teffective\tsaved\tfilesystem"
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().next())
                == Some("0")
        })
}

fn ufw_enabled(conf: &Path) -> bool {
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
    rules: Vec<Rule>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Rule {
    /// What the rule matches, as the tool wrote it ("ct state invalid"); empty when it
    /// matches every packet (counters, logging and comments are not matches).
    matches: String,
    /// `None` for a rule that only counts, logs or marks.
    verdict: Option<Verdict>,
    /// The verdicts of a verdict map: each applies to some packets only.
    mapped: Vec<Verdict>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    Accept,
    /// "drop" or "reject".
    Drop(&'static str),
    Return,
    Jump(String),
    Goto(String),
    /// Ends the chain some other way (`queue`, `-j NFQUEUE`).
    Other(String),
}

/// What one base input chain does with incoming traffic.
struct Judged {
    /// The chain's family: "ip", "ip6" or "inet".
    family: String,
    filtering: bool,
    /// "chain input (inet filter) hooks input with policy drop", or why it does not filter.
    text: String,
    /// The tool that created the chain, when known.
    creator: Option<&'static str>,
}

fn judge(chains: &[Chain]) -> Vec<Judged> {
    let bases = chains.iter().filter(|c| {
        c.hook.as_deref() == Some("input") && matches!(c.family.as_str(), "ip" | "ip6" | "inet")
    });
    bases
        .map(|base| {
            let mut walk = Walk {
                chains,
                base,
                done: BTreeMap::new(),
                active: BTreeSet::new(),
                conditional: Vec::new(),
            };
            let end = walk.chain(&base.name);
            let creator = creator(base);
            let owner = creator.map(|c| format!("{c}'s ")).unwrap_or_default();
            let label = format!("{owner}chain {} ({} {})", base.name, base.family, base.table);
            let policy = base.policy.as_deref().unwrap_or("accept");
            let within = |chain: &str| {
                if chain == base.name {
                    String::new()
                } else {
                    format!(" (in chain {chain})")
                }
            };
            let (filtering, text) = match end {
                End::Drop { chain, verb } => (
                    true,
                    format!(
                        "{label} ends in an unconditional {verb}{}",
                        within(&chain)
                    ),
                ),
                End::Falls if policy == "drop" => {
                    (true, format!("{label} hooks input with policy drop"))
                }
                End::Falls => (
                    false,
                    format!(
                        "{label}: input policy {policy} and no unconditional drop/reject on the input path"
                    ),
                ),
                End::Ends { chain, verdict } => (
                    false,
                    format!(
                        "{label}: an unconditional {verdict}{} ends the input path before any unconditional drop/reject (input policy {policy})",
                        within(&chain)
                    ),
                ),
            };
            let text = if filtering || walk.conditional.is_empty() {
                text
            } else {
                let mut named = walk.conditional[..walk.conditional.len().min(NAMED)].join(", ");
                if walk.conditional.len() > NAMED {
                    named.push_str(", …");
                }
                format!("{text} (only conditional drops: {named})")
            };
            Judged {
                family: base.family.clone(),
                filtering,
                text,
                creator,
            }
        })
        .collect()
}

/// firewalld's table or input zones, or ufw's chains.
fn creator(base: &Chain) -> Option<&'static str> {
    let targets = || {
        base.rules.iter().filter_map(|r| match &r.verdict {
            Some(Verdict::Jump(t) | Verdict::Goto(t)) => Some(t.as_str()),
            _ => None,
        })
    };
    if base.table == "firewalld" || targets().any(|t| t == "INPUT_ZONES") {
        Some("firewalld")
    } else if targets().any(|t| t.starts_with("ufw")) {
        Some("ufw")
    } else {
        None
    }
}

/// How the path through a chain ends for the packets that enter it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum End {
    /// Every packet that gets this far is dropped or rejected, by an unconditional rule in
    /// `chain`.
    Drop { chain: String, verb: &'static str },
    /// Every packet that gets this far is accepted (or queued ...), unconditionally.
    Ends { chain: String, verdict: String },
    /// Some or all packets come back out: the path goes on in the calling chain.
    Falls,
}

/// The input path from one base chain, each chain walked once.
struct Walk<'a> {
    chains: &'a [Chain],
    base: &'a Chain,
    done: BTreeMap<&'a str, End>,
    /// The chains being walked, so a loop ends.
    active: BTreeSet<&'a str>,
    /// Drops that apply to some packets only: what they match (and where).
    conditional: Vec<String>,
}

impl<'a> Walk<'a> {
    fn chain(&mut self, name: &'a str) -> End {
        if let Some(end) = self.done.get(name) {
            return end.clone();
        }
        if !self.active.insert(name) {
            return End::Falls;
        }
        let (family, table) = (&self.base.family, &self.base.table);
        let chains = self.chains;
        let end = match chains
            .iter()
            .find(|c| &c.family == family && &c.table == table && c.name == name)
        {
            Some(chain) => self.rules(chain),
            None => End::Falls,
        };
        self.active.remove(name);
        self.done.insert(name, end.clone());
        end
    }

    fn rules(&mut self, chain: &'a Chain) -> End {
        // Some packets have gone back to the calling chain already.
        let mut returned = false;
        for rule in &chain.rules {
            if !rule.matches.is_empty() {
                for verdict in rule.verdict.iter().chain(&rule.mapped) {
                    match verdict {
                        Verdict::Drop(_) => self.note(&rule.matches, &chain.name),
                        Verdict::Jump(target) | Verdict::Goto(target) => match self.chain(target) {
                            End::Drop { .. } => self.note(&rule.matches, &chain.name),
                            End::Falls if matches!(verdict, Verdict::Goto(_)) => {
                                returned = true;
                            }
                            _ => {}
                        },
                        Verdict::Return => returned = true,
                        Verdict::Accept | Verdict::Other(_) => {}
                    }
                }
                continue;
            }
            let end = match &rule.verdict {
                None => continue,
                Some(Verdict::Drop(verb)) => End::Drop {
                    chain: chain.name.clone(),
                    verb,
                },
                Some(Verdict::Accept) => End::Ends {
                    chain: chain.name.clone(),
                    verdict: "accept".into(),
                },
                Some(Verdict::Other(verdict)) => End::Ends {
                    chain: chain.name.clone(),
                    verdict: verdict.clone(),
                },
                Some(Verdict::Return) => return End::Falls,
                Some(Verdict::Jump(target)) => match self.chain(target) {
                    End::Falls => continue,
                    end => end,
                },
                Some(Verdict::Goto(target)) => match self.chain(target) {
                    End::Falls => return End::Falls,
                    end => end,
                },
            };
            return match end {
                // Only what did not return is dropped: the path goes on for the rest.
                End::Drop { chain: at, .. } if returned => {
                    self.note("packets not returned before", &at);
                    End::Falls
                }
                end => end,
            };
        }
        End::Falls
    }

    fn note(&mut self, matches: &str, chain: &str) {
        let text = if chain == self.base.name {
            matches.to_owned()
        } else {
            format!("{matches} (in chain {chain})")
        };
        if !self.conditional.contains(&text) {
            self.conditional.push(text);
        }
    }
}

/// The nftables ruleset, as JSON or else as text.
fn nft(roots: &Roots) -> Result<Vec<Chain>, String> {
    let json = roots.run("nft", &["-j", "list", "ruleset"], TIMEOUT, OUTPUT_LIMIT);
    if let Ok(ran) = &json
        && ran.status.success()
        && !ran.truncated
        && let Some(chains) = parse_nft_json(&ran.stdout)
    {
        return Ok(chains);
    }
    if let Err(RunError::Missing(why)) = json {
        return Err(why);
    }
    // nft without JSON support; or no permission, which the text form reports too.
    match roots.run("nft", &["list", "ruleset"], TIMEOUT, OUTPUT_LIMIT) {
        Ok(ran) if ran.status.success() && !ran.truncated => Ok(parse_nft_text(&ran.stdout)),
        Ok(ran) if ran.truncated => Err("nft list ruleset printed more than 8 MiB".into()),
        Ok(ran) => Err(format!("nft list ruleset failed: {}", ran.failure())),
        Err(e) => Err(e.to_string()),
    }
}

/// `iptables-save` (family "ip") or `ip6tables-save` (family "ip6").
fn iptables(roots: &Roots, program: &str, family: &str) -> Result<Vec<Chain>, String> {
    let ran = roots
        .run(program, &["-t", "filter"], TIMEOUT, OUTPUT_LIMIT)
        .map_err(|e| e.to_string())?;
    if ran.stderr.contains("Table does not exist") {
        // Read, and there is no filter table: nothing filters.
        return Ok(Vec::new());
    }
    if !ran.status.success() || (ran.stdout.trim().is_empty() && !ran.stderr.is_empty()) {
        return Err(format!("{program} failed: {}", ran.failure()));
    }
    if ran.truncated {
        return Err(format!("{program} printed more than 8 MiB"));
    }
    Ok(parse_iptables_save(&ran.stdout, family))
}

#[cfg(test)]
#[path = "firewall_tests.rs"]
mod tests;
