//! Fixture trees: process directories, ufw.conf, and fake `nft` / `iptables-save` programs.

use std::fs;

use super::*;
use crate::checks::fixture::{script, tree, write};

/// A fake program that prints `stdout` (a file next to it, so any text works).
fn printing(roots: &Roots, name: &str, stdout: &str) {
    let out = roots.bin_dir.as_ref().unwrap().join(format!("{name}.out"));
    write(&out, stdout);
    script(roots, name, &format!("cat '{}'", out.display()));
}

fn denied(roots: &Roots, name: &str) {
    script(
        roots,
        name,
        &format!("echo '{name}: Operation not permitted (you must be root)' >&2; exit 1"),
    );
}

fn detail(outcome: &Outcome) -> &str {
    let (Outcome::Pass(d) | Outcome::Fail(d) | Outcome::Unsupported(d) | Outcome::Error(d)) =
        outcome;
    d
}

/// nft without JSON support: `-j` fails, the text form prints `text`.
fn nft_text(roots: &Roots, text: &str) {
    let out = roots.bin_dir.as_ref().unwrap().join("ruleset.txt");
    write(&out, text);
    script(
        roots,
        "nft",
        &format!(
            "if [ \"$1\" = -j ]; then echo \"nft: unrecognized option '-j'\" >&2; exit 1; fi\ncat '{}'",
            out.display()
        ),
    );
}

/// A process directory: its `comm` and the real uid in `status`.
fn process(roots: &Roots, pid: &str, comm: &str, uid: u32) {
    let dir = roots.proc.join(pid);
    write(&dir.join("comm"), &format!("{comm}\n"));
    write(
        &dir.join("status"),
        &format!(
            "Name:\t{comm}\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t0\t0\t0\t0\n"
        ),
    );
}

// What real tools print. firewalld.nft{,.json}: firewalld 1.x's `table inet firewalld` with
// the public zone (ssh, dhcpv6-client, cockpit) on enp1s0, shortened to the filter chains,
// loaded into nft 1.0.6 and listed by it. ufw.iptables-save and ufw.nft.json: ufw 0.36.2's
// own rules files after `ufw allow 22/tcp` and `ufw enable` (IPV6=no, default deny incoming),
// loaded by its ufw-init into iptables-nft 1.8.9 and listed by iptables-save and nft 1.0.6
// (ufw.nft.json shortened to the ip family). ufw.ip6tables-save: what IPV6=no leaves for
// IPv6, listed by ip6tables-save 1.8.9: everything but loopback dropped.
const FIREWALLD_NFT: &str = include_str!("fixtures/firewalld.nft");
const FIREWALLD_NFT_JSON: &str = include_str!("fixtures/firewalld.nft.json");
const UFW_IPTABLES_SAVE: &str = include_str!("fixtures/ufw.iptables-save");
const UFW_NFT_JSON: &str = include_str!("fixtures/ufw.nft.json");
const UFW_IPV4_ONLY_IP6TABLES_SAVE: &str = include_str!("fixtures/ufw.ip6tables-save");
// ufw-ipv6.*: the same `ufw allow 22/tcp` and `ufw enable` with Debian's default IPV6=yes, in
// a network namespace of its own, listed unedited by ip6tables-save 1.8.9 (nf_tables) and by
// nft 1.0.6 (both families; its IPv4 chains are those of ufw.iptables-save).
const UFW_IP6TABLES_SAVE: &str = include_str!("fixtures/ufw-ipv6.ip6tables-save");
const UFW_IPV6_NFT_JSON: &str = include_str!("fixtures/ufw-ipv6.nft.json");

/// A host with IPv6: an address in `/proc/net/if_inet6`, enabled on its interfaces.
fn ipv6_on(roots: &Roots) {
    write(
        &roots.proc.join("net/if_inet6"),
        "00000000000000000000000000000001 01 80 10 80       lo\n",
    );
    for dev in ["all", "default", "lo", "enp1s0"] {
        write(
            &roots
                .proc
                .join(format!("sys/net/ipv6/conf/{dev}/disable_ipv6")),
            "0\n",
        );
    }
}

/// A kernel without IPv6 (booted with `ipv6.disable=1`): no `/proc/net/if_inet6`.
fn no_ipv6(roots: &Roots) {
    write(&roots.proc.join("net/dev"), "");
}

const NFT_DROP: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
 {"table": {"family": "inet", "name": "filter", "handle": 1}},
 {"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
 {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 4, "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"accept": null}]}},
 {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 5, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}}, {"accept": null}]}}]}"#;

/// Policy accept, and the only drop is for invalid packets: a Debian `nftables.conf` with
/// one line added, as `nft -j` lists it.
const NFT_INVALID_ONLY: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
 {"table": {"family": "inet", "name": "filter", "handle": 1}},
 {"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
 {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 4, "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "invalid"}}, {"drop": null}]}},
 {"chain": {"family": "inet", "table": "filter", "name": "forward", "handle": 2, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}]}"#;

const NFT_OPEN: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
 {"chain": {"family": "ip", "table": "nat", "name": "POSTROUTING", "hook": "postrouting", "policy": "accept"}},
 {"chain": {"family": "inet", "table": "filter", "name": "input", "hook": "input", "policy": "accept"}},
 {"chain": {"family": "inet", "table": "filter", "name": "forward", "hook": "forward", "policy": "drop"}}]}"#;

const NFT_TEXT: &str = "table inet filter {
	set blocked {
		type ipv4_addr
		elements = { 10.0.0.1,
			     10.0.0.2 }
	}

	chain input {
		type filter hook input priority filter; policy accept;
		ct state established,related accept
		ip saddr vmap {
			10.0.0.3 : accept,
			10.0.0.4 : drop
		}
		jump custom
	}

	chain custom {
		tcp dport 23 reject with tcp reset
	}
}
";

#[test]
fn nft_input_chain_with_policy_drop_passes() {
    let (_t, r) = tree();
    printing(&r, "nft", NFT_DROP);
    denied(&r, "iptables-save");
    assert_eq!(
        check(&r),
        Outcome::Pass("nftables: chain input (inet filter) hooks input with policy drop".into())
    );
    assert_eq!(state(&r), "active: nftables");
}

#[test]
fn firewalld_rules_pass_from_json_and_text() {
    let (_t, r) = tree();
    printing(&r, "nft", FIREWALLD_NFT_JSON);
    let want =
        "nftables: firewalld's chain filter_INPUT (inet firewalld) ends in an unconditional reject";
    assert_eq!(check(&r), Outcome::Pass(want.into()));
    assert_eq!(state(&r), "active: firewalld, nftables");
    nft_text(&r, FIREWALLD_NFT);
    assert_eq!(check(&r), Outcome::Pass(want.into()));
    // firewalld 2 owns its table: nft notes the owner after the brace, and its flags.
    let owned = FIREWALLD_NFT.replacen(
        "table inet firewalld {\n",
        "table inet firewalld { # progname firewalld\n\tflags owner,persist\n\n",
        1,
    );
    assert_ne!(owned, FIREWALLD_NFT);
    nft_text(&r, &owned);
    assert_eq!(check(&r), Outcome::Pass(want.into()));
}

#[test]
fn a_firewalld_zone_that_accepts_everything_fails() {
    let (_t, r) = tree();
    // The default zone "trusted": its chain ends in `accept`, before filter_INPUT's reject.
    let trusted = FIREWALLD_NFT.replace(
        "\t\tmeta l4proto { icmp, ipv6-icmp } accept\n",
        "\t\taccept\n",
    );
    assert_ne!(trusted, FIREWALLD_NFT);
    nft_text(&r, &trusted);
    assert_eq!(
        check(&r),
        Outcome::Fail(format!(
            "no packet filtering of incoming traffic: nftables: firewalld's chain filter_INPUT (inet firewalld): \
             an unconditional accept (in chain filter_IN_public) ends the input path before any unconditional drop/reject \
             (input policy accept) (only conditional drops: ct state invalid); not read: iptables-save is not in {}",
            r.bin_dir.as_ref().unwrap().display()
        ))
    );
    assert_eq!(state(&r), "inactive");
}

#[test]
fn ufw_rules_pass_from_iptables_save_and_nft() {
    let (_t, r) = tree();
    ipv6_on(&r);
    write(&r.etc.join("ufw/ufw.conf"), "ENABLED=yes\nLOGLEVEL=low\n");
    printing(&r, "iptables-save", UFW_IPTABLES_SAVE);
    printing(&r, "ip6tables-save", UFW_IPV4_ONLY_IP6TABLES_SAVE);
    assert_eq!(
        check(&r),
        Outcome::Pass(
            "iptables: ufw's chain INPUT (ip filter) hooks input with policy drop; \
             ip6tables: chain INPUT (ip6 filter) hooks input with policy drop"
                .into()
        )
    );
    assert_eq!(state(&r), "active: ip6tables, iptables, ufw");
    // iptables-nft: nft lists the same rules.
    printing(&r, "nft", UFW_NFT_JSON);
    assert_eq!(
        check(&r),
        Outcome::Pass(
            "nftables: ufw's chain INPUT (ip filter) hooks input with policy drop; \
             iptables: ufw's chain INPUT (ip filter) hooks input with policy drop; \
             ip6tables: chain INPUT (ip6 filter) hooks input with policy drop"
                .into()
        )
    );
    assert_eq!(state(&r), "active: ip6tables, iptables, nftables, ufw");
}

#[test]
fn ufw_allowing_incoming_by_default_fails() {
    let (_t, r) = tree();
    // `ufw default allow incoming`: policy ACCEPT, and the skip-to-policy chain accepts.
    let allow = UFW_IPTABLES_SAVE
        .replace(":INPUT DROP [0:0]", ":INPUT ACCEPT [0:0]")
        .replace(
            "-A ufw-skip-to-policy-input -j DROP",
            "-A ufw-skip-to-policy-input -j ACCEPT",
        );
    printing(&r, "iptables-save", &allow);
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.starts_with(
            "no packet filtering of incoming traffic: iptables: ufw's chain INPUT (ip filter): input policy accept \
             and no unconditional drop/reject on the input path (only conditional drops: \
             -m conntrack --ctstate INVALID (in chain ufw-before-input), \
             packets not returned before (in chain ufw-not-local))")),
        "{outcome:?}"
    );
}

#[test]
fn a_lone_conditional_drop_is_not_filtering() {
    let (_t, r) = tree();
    printing(&r, "nft", NFT_INVALID_ONLY);
    let bin = r.bin_dir.as_ref().unwrap().display().to_string();
    assert_eq!(
        check(&r),
        Outcome::Fail(format!(
            "no packet filtering of incoming traffic: nftables: chain input (inet filter): input policy accept \
             and no unconditional drop/reject on the input path (only conditional drops: ct state invalid); \
             not read: iptables-save is not in {bin}"
        ))
    );
    nft_text(
        &r,
        "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tct state invalid counter packets 3 bytes 120 drop\n\t}\n}\n",
    );
    assert!(
        matches!(check(&r), Outcome::Fail(d) if d.contains("(only conditional drops: ct state invalid)")),
    );

    fs::remove_file(r.bin_dir.as_ref().unwrap().join("nft")).unwrap();
    let iptables = |rules: &str| {
        format!(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{rules}COMMIT\n"
        )
    };
    for (rules, conditions) in [
        (
            "-A INPUT -m conntrack --ctstate INVALID -j DROP\n",
            "-m conntrack --ctstate INVALID",
        ),
        (
            "-A INPUT -p tcp -m tcp --dport 22 -j DROP\n",
            "-p tcp -m tcp --dport 22",
        ),
        (
            "-A INPUT -s 10.0.0.0/8 -j REJECT --reject-with icmp-port-unreachable\n",
            "-s 10.0.0.0/8",
        ),
        ("-A INPUT -i eth0 -j DROP\n", "-i eth0"),
    ] {
        printing(&r, "iptables-save", &iptables(rules));
        assert_eq!(
            check(&r),
            Outcome::Fail(format!(
                "no packet filtering of incoming traffic: iptables: chain INPUT (ip filter): input policy accept \
                 and no unconditional drop/reject on the input path (only conditional drops: {conditions}); \
                 not read: nft is not in {bin}"
            ))
        );
        assert_eq!(state(&r), "inactive");
    }
    // A fail2ban ban: a reject for one address, in a chain jumped to for one port.
    printing(
        &r,
        "iptables-save",
        &iptables(
            ":f2b-sshd - [0:0]\n-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd\n\
             -A f2b-sshd -s 192.0.2.1/32 -j REJECT --reject-with icmp-port-unreachable\n-A f2b-sshd -j RETURN\n",
        ),
    );
    assert!(
        matches!(check(&r), Outcome::Fail(d) if d.contains("(only conditional drops: -s 192.0.2.1/32 (in chain f2b-sshd))")),
    );
}

#[test]
fn an_unconditional_final_drop_or_reject_passes() {
    let (_t, r) = tree();
    no_ipv6(&r);
    let iptables = |rules: &str| format!("*filter\n:INPUT ACCEPT [0:0]\n{rules}COMMIT\n");
    for rules in [
        "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -j DROP\n",
        "-A INPUT -i lo -j ACCEPT\n-A INPUT -m comment --comment \"the rest\" -j REJECT --reject-with icmp-host-prohibited\n",
        "-A INPUT -j LOG --log-prefix \"in: \"\n-A INPUT -j REJECT\n",
    ] {
        printing(&r, "iptables-save", &iptables(rules));
        let outcome = check(&r);
        assert!(
            matches!(&outcome, Outcome::Pass(d) if d.starts_with("iptables: chain INPUT (ip filter) ends in an unconditional ")),
            "{rules}: {outcome:?}"
        );
    }
    // An unconditional accept first opens everything, whatever follows or the policy says.
    printing(
        &r,
        "iptables-save",
        "*filter\n:INPUT DROP [0:0]\n-A INPUT -j ACCEPT\n-A INPUT -j DROP\nCOMMIT\n",
    );
    assert!(
        matches!(check(&r), Outcome::Fail(d) if d.contains("an unconditional accept ends the input path before any unconditional drop/reject (input policy drop)")),
    );

    // nft: counters, logging and comments are not conditions.
    fs::remove_file(r.bin_dir.as_ref().unwrap().join("iptables-save")).unwrap();
    for last in [
        "drop",
        "counter packets 12 bytes 720 drop",
        "log prefix \"drop: \" flags all counter packets 0 bytes 0 reject with icmpx admin-prohibited comment \"the rest\"",
    ] {
        nft_text(
            &r,
            &format!(
                "table inet filter {{\n\tchain input {{\n\t\ttype filter hook input priority filter; policy accept;\n\t\tiifname \"lo\" accept\n\t\t{last}\n\t}}\n}}\n"
            ),
        );
        let outcome = check(&r);
        assert!(
            matches!(&outcome, Outcome::Pass(d) if d.starts_with("nftables: chain input (inet filter) ends in an unconditional ")),
            "{last}: {outcome:?}"
        );
    }
}

#[test]
fn jumps_gotos_and_verdict_maps_are_followed() {
    let (_t, r) = tree();
    nft_text(&r, NFT_TEXT);
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Fail(d)
            if d.contains("chain input (inet filter): input policy accept and no unconditional drop/reject on the input path \
                (only conditional drops: ip saddr vmap { 10.0.0.3 : accept, 10.0.0.4 : drop }, tcp dport 23 (in chain custom))")),
        "{outcome:?}"
    );
    // The chain jumped to ends in an unconditional reject: the input path does.
    nft_text(&r, &NFT_TEXT.replace("tcp dport 23 reject", "reject"));
    assert!(
        matches!(check(&r), Outcome::Pass(d) if d == "nftables: chain input (inet filter) ends in an unconditional reject (in chain custom)")
    );
    // ... unless some packets return from it first.
    nft_text(
        &r,
        &NFT_TEXT.replace(
            "tcp dport 23 reject",
            "ip saddr 10.0.0.0/8 return\n\t\treject",
        ),
    );
    assert!(
        matches!(check(&r), Outcome::Fail(d) if d.contains("packets not returned before (in chain custom)")),
    );
    // Reached only by a conditional jump: conditional.
    nft_text(
        &r,
        &NFT_TEXT
            .replace("tcp dport 23 reject", "reject")
            .replace("jump custom", "iifname \"eth0\" jump custom"),
    );
    assert!(matches!(check(&r), Outcome::Fail(d) if d.contains("iifname \"eth0\"")),);
}

#[test]
fn nft_without_input_filtering_fails() {
    let (_t, r) = tree();
    printing(&r, "nft", NFT_OPEN);
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Fail(d)
            if d.contains("nftables: chain input (inet filter): input policy accept and no unconditional drop/reject on the input path")
                && d.contains("not read: iptables-save is not in")),
        "{outcome:?}"
    );
    assert_eq!(state(&r), "inactive");
    printing(
        &r,
        "nft",
        r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}]}"#,
    );
    assert!(
        matches!(check(&r), Outcome::Fail(d) if d.contains("nftables has no chain on the input hook"))
    );
}

#[test]
fn iptables_without_a_filter_table_fails() {
    let (_t, r) = tree();
    script(
        &r,
        "iptables-save",
        "echo \"iptables-save v1.8.9 (legacy): can't initialize iptables table \\`filter': Table does not exist (do you need to insmod?)\" >&2; exit 1",
    );
    assert!(
        matches!(check(&r), Outcome::Fail(d) if d.contains("iptables has no chain on the input hook"))
    );
}

#[test]
fn a_process_named_firewalld_never_outweighs_readable_rules() {
    let (_t, r) = tree();
    process(&r, "812", "firewalld", 0);
    process(&r, "4242", "firewalld", 1000);
    printing(&r, "nft", NFT_INVALID_ONLY);
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.contains("input policy accept") && !d.contains("firewalld")),
        "{outcome:?}"
    );
    assert_eq!(state(&r), "inactive");
}

#[test]
fn without_rules_only_a_root_firewalld_counts() {
    let (_t, r) = tree();
    denied(&r, "nft");
    denied(&r, "iptables-save");
    denied(&r, "ip6tables-save");
    // Anyone can name a program firewalld, or run one with firewalld as its argument.
    process(&r, "4242", "firewalld", 1000);
    process(&r, "4243", "python3", 0);
    write(
        &r.proc.join("4243/cmdline"),
        "/usr/bin/python3\0/usr/sbin/firewalld\0--nofork\0",
    );
    process(&r, "4244", "firewalld-x", 0);
    process(&r, "self", "firewalld", 0);
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Unsupported(d)
            if d.starts_with("the packet-filter rules could not be read (nft list ruleset failed: nft: Operation not permitted")
                && d.ends_with("no firewalld process running as root was found; ufw is not enabled")),
        "{outcome:?}"
    );
    assert!(state(&r).starts_with("unknown: nft list ruleset failed"));

    process(&r, "812", "firewalld", 0);
    assert_eq!(
        check(&r),
        Outcome::Pass(
            "firewalld runs as root (pid 812); its rules themselves were not read \
             (nft list ruleset failed: nft: Operation not permitted (you must be root) (exit status: 1); \
             iptables-save failed: iptables-save: Operation not permitted (you must be root) (exit status: 1); \
             ip6tables-save failed: ip6tables-save: Operation not permitted (you must be root) (exit status: 1))"
                .into()
        )
    );
    assert_eq!(state(&r), "active: firewalld (rules not read)");
}

#[test]
fn ufw_configuration_counts_only_when_no_rules_are_readable() {
    let (_t, r) = tree();
    no_ipv6(&r);
    write(
        &r.etc.join("ufw/ufw.conf"),
        "# comment\nENABLED=yes\nLOGLEVEL=low\n",
    );
    denied(&r, "nft");
    denied(&r, "iptables-save");
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Pass(d) if d.starts_with(&format!(
            "ufw is enabled in {}: only that configuration was read, not the loaded rules (nft list ruleset failed",
            r.etc.join("ufw/ufw.conf").display()
        ))),
        "{outcome:?}"
    );
    assert_eq!(state(&r), "active: ufw (rules not read)");
    // Readable and loaded: the rules decide.
    printing(&r, "iptables-save", UFW_IPTABLES_SAVE);
    assert_eq!(state(&r), "active: iptables, ufw");
    // Readable and not loaded.
    printing(
        &r,
        "iptables-save",
        "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n",
    );
    assert!(
        matches!(check(&r), Outcome::Fail(d) if d.contains("ufw is enabled in") && d.contains("but its rules are not loaded"))
    );
}

#[test]
fn disabled_ufw_and_unreadable_rules_are_unsupported() {
    let (_t, r) = tree();
    write(&r.etc.join("ufw/ufw.conf"), "ENABLED=no\n");
    denied(&r, "nft");
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Unsupported(d)
            if d.contains("nft list ruleset failed: nft: Operation not permitted")
                && d.contains("iptables-save is not in")
                && d.contains("ufw is not enabled")),
        "{outcome:?}"
    );
    assert!(state(&r).starts_with("unknown: nft list ruleset failed"));
}

#[test]
fn assess_reads_the_rules_once_for_both_answers() {
    let (_t, r) = tree();
    let log = r.bin_dir.as_ref().unwrap().join("runs.log");
    let out = r.bin_dir.as_ref().unwrap().join("nft.out");
    write(&out, NFT_DROP);
    script(
        &r,
        "nft",
        &format!(
            "echo \"nft $*\" >> '{}'\ncat '{}'",
            log.display(),
            out.display()
        ),
    );
    script(
        &r,
        "iptables-save",
        &format!("echo \"iptables-save $*\" >> '{}'\nexit 1", log.display()),
    );
    let a = assess(&r);
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "nft -j list ruleset\niptables-save -t filter\n"
    );
    assert_eq!(
        a,
        Assessment {
            outcome: check(&r),
            state: state(&r),
        }
    );
    assert_eq!(a.state, "active: nftables");
}

#[test]
fn parsers_read_chains() {
    let chains = parse_nft_text(NFT_TEXT);
    let names: Vec<&str> = chains.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["input", "custom"]);
    assert_eq!(chains[0].hook.as_deref(), Some("input"));
    assert_eq!(chains[0].policy.as_deref(), Some("accept"));
    assert_eq!(
        chains[0].rules,
        [
            Rule {
                matches: "ct state established,related".into(),
                verdict: Some(Verdict::Accept),
                mapped: vec![],
            },
            Rule {
                matches: "ip saddr vmap { 10.0.0.3 : accept, 10.0.0.4 : drop }".into(),
                verdict: None,
                mapped: vec![Verdict::Accept, Verdict::Drop("drop")],
            },
            Rule {
                matches: String::new(),
                verdict: Some(Verdict::Jump("custom".into())),
                mapped: vec![],
            },
        ]
    );
    assert_eq!(chains[1].rules[0].verdict, Some(Verdict::Drop("reject")));
    assert!(parse_nft_json("not json").is_none());
    // The JSON and text listings of one ruleset say the same.
    let json = parse_nft_json(FIREWALLD_NFT_JSON).unwrap();
    let text = parse_nft_text(FIREWALLD_NFT);
    assert_eq!(json.len(), text.len());
    for (j, t) in json.iter().zip(&text) {
        assert_eq!((&j.name, &j.hook, &j.policy), (&t.name, &t.hook, &t.policy));
        let verdicts = |c: &Chain| {
            c.rules
                .iter()
                .map(|r| (r.verdict.clone(), r.matches.is_empty()))
                .collect::<Vec<_>>()
        };
        assert_eq!(verdicts(j), verdicts(t), "{}", j.name);
    }
    let ufw = parse_iptables_save(UFW_IPTABLES_SAVE, "ip");
    let limit = ufw.iter().find(|c| c.name == "ufw-user-limit").unwrap();
    assert_eq!(
        limit.rules,
        [
            Rule {
                matches: "-m limit --limit 3/min".into(),
                verdict: None,
                mapped: vec![],
            },
            Rule {
                matches: String::new(),
                verdict: Some(Verdict::Drop("reject")),
                mapped: vec![],
            },
        ]
    );
    assert_eq!(
        tokens(r#"-A x -m comment --comment "a \"b\" c" -j LOG # handle 3"#),
        [
            "-A",
            "x",
            "-m",
            "comment",
            "--comment",
            r#""a \"b\" c""#,
            "-j",
            "LOG"
        ]
    );
}

#[test]
fn the_real_system_does_not_panic() {
    let roots = Roots::default();
    let outcome = check(&roots);
    assert!(!detail(&outcome).is_empty());
    let state = state(&roots);
    assert!(!state.is_empty());
    println!("firewall on this system: {outcome:?}; state {state:?}");
}

#[test]
fn external_programs_are_bounded_in_time_and_output() {
    let (_t, r) = tree();
    script(&r, "slow", "sleep 30");
    let started = std::time::Instant::now();
    let err = r
        .run("slow", &[], Duration::from_millis(300), 1000)
        .unwrap_err();
    assert_eq!(
        err,
        RunError::Failed("slow did not finish within 300ms".into())
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    script(
        &r,
        "chatty",
        "head -c 100000 /dev/zero | tr '\\0' x; echo oops >&2; exit 3",
    );
    let ran = r.run("chatty", &[], Duration::from_secs(10), 1000).unwrap();
    assert_eq!((ran.stdout.len(), ran.truncated), (1000, true));
    assert_eq!(ran.failure(), "oops (exit status: 3)");
    assert!(matches!(
        r.run("absent", &[], Duration::from_secs(1), 10),
        Err(RunError::Missing(m)) if m.starts_with("absent is not in")
    ));
}

/// An iptables ruleset that drops everything it does not allow, and an ip6tables one that
/// was never set up: the usual result of a hand-written `iptables` script.
const IPTABLES_DROP: &str = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
    -A INPUT -i lo -j ACCEPT\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n";
const IP6TABLES_OPEN: &str =
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

#[test]
fn ipv4_only_iptables_rules_leave_ipv6_open_and_fail() {
    let (_t, r) = tree();
    ipv6_on(&r);
    printing(&r, "iptables-save", IPTABLES_DROP);
    printing(&r, "ip6tables-save", IP6TABLES_OPEN);
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.starts_with(
            "no packet filtering of incoming IPv6 traffic (IPv4 is filtered: iptables: chain INPUT (ip filter) hooks input with policy drop): \
             ip6tables: chain INPUT (ip6 filter): input policy accept and no unconditional drop/reject on the input path")),
        "{outcome:?}"
    );
    assert_eq!(state(&r), "active for IPv4 only: iptables");
    // ip6tables not installed and no nft: the IPv6 rules are unknown, never a pass.
    fs::remove_file(r.bin_dir.as_ref().unwrap().join("ip6tables-save")).unwrap();
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Unsupported(d)
            if d.contains("no IPv6 rules could be read") && d.contains("ip6tables-save is not in")),
        "{outcome:?}"
    );
    // Both filtered: a pass that names both.
    printing(&r, "ip6tables-save", IPTABLES_DROP);
    let outcome = check(&r);
    assert_eq!(
        outcome,
        Outcome::Pass(
            "iptables: chain INPUT (ip filter) hooks input with policy drop; \
             ip6tables: chain INPUT (ip6 filter) hooks input with policy drop"
                .into()
        )
    );
    assert_eq!(state(&r), "active: ip6tables, iptables");
}

/// nft JSON with one input chain per listed family, each with policy drop.
fn nft_families(families: &[&str]) -> String {
    let mut items =
        vec![r#"{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}"#.to_owned()];
    for family in families {
        items.push(format!(
            r#"{{"table": {{"family": "{family}", "name": "filter", "handle": 1}}}}"#
        ));
        items.push(format!(
            r#"{{"chain": {{"family": "{family}", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}}}"#
        ));
    }
    format!(r#"{{"nftables": [{}]}}"#, items.join(", "))
}

#[test]
fn an_ip_family_nft_ruleset_leaves_ipv6_open_and_fails() {
    let (_t, r) = tree();
    ipv6_on(&r);
    printing(&r, "nft", &nft_families(&["ip"]));
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.starts_with(
            "no packet filtering of incoming IPv6 traffic (IPv4 is filtered: nftables: chain input (ip filter) hooks input with policy drop): \
             no IPv6 chain on the input hook")),
        "{outcome:?}"
    );
    // ip6 alone: IPv4 open.
    printing(&r, "nft", &nft_families(&["ip6"]));
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.starts_with("no packet filtering of incoming IPv4 traffic (IPv6 is filtered: ")),
        "{outcome:?}"
    );
    assert_eq!(state(&r), "active for IPv6 only: nftables");
    // ip and ip6 together, or inet: both covered.
    for families in [&["ip", "ip6"][..], &["inet"]] {
        printing(&r, "nft", &nft_families(families));
        assert!(matches!(check(&r), Outcome::Pass(_)), "{families:?}");
        assert_eq!(state(&r), "active: nftables");
    }
}

#[test]
fn without_ipv6_on_the_host_ipv4_filtering_is_enough() {
    let (_t, r) = tree();
    printing(&r, "iptables-save", IPTABLES_DROP);
    printing(&r, "ip6tables-save", IP6TABLES_OPEN);
    // A kernel without IPv6.
    no_ipv6(&r);
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Pass(d) if d.contains("IPv6 needs no filtering: the kernel has no IPv6")),
        "{outcome:?}"
    );
    // IPv6 disabled on every interface and by default.
    fs::remove_dir_all(r.proc.join("net")).unwrap();
    ipv6_on(&r);
    for dev in ["all", "default", "lo", "enp1s0"] {
        write(
            &r.proc.join(format!("sys/net/ipv6/conf/{dev}/disable_ipv6")),
            "1\n",
        );
    }
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Pass(d) if d.contains("disable_ipv6 = 1")),
        "{outcome:?}"
    );
    // ... but one interface still has it: open.
    write(&r.proc.join("sys/net/ipv6/conf/enp1s0/disable_ipv6"), "0\n");
    assert!(matches!(check(&r), Outcome::Fail(d) if d.contains("incoming IPv6 traffic")));
}

#[test]
fn ufw_with_ipv6_passes_from_ip6tables_save_and_nft() {
    let (_t, r) = tree();
    ipv6_on(&r);
    write(&r.etc.join("ufw/ufw.conf"), "ENABLED=yes\nLOGLEVEL=low\n");
    printing(&r, "iptables-save", UFW_IPTABLES_SAVE);
    printing(&r, "ip6tables-save", UFW_IP6TABLES_SAVE);
    assert_eq!(
        check(&r),
        Outcome::Pass(
            "iptables: ufw's chain INPUT (ip filter) hooks input with policy drop; \
             ip6tables: ufw's chain INPUT (ip6 filter) hooks input with policy drop"
                .into()
        )
    );
    assert_eq!(state(&r), "active: ip6tables, iptables, ufw");
    // The same rules as nft lists them (iptables-nft), without the iptables tools.
    fs::remove_file(r.bin_dir.as_ref().unwrap().join("iptables-save")).unwrap();
    fs::remove_file(r.bin_dir.as_ref().unwrap().join("ip6tables-save")).unwrap();
    printing(&r, "nft", UFW_IPV6_NFT_JSON);
    assert_eq!(
        check(&r),
        Outcome::Pass(
            "nftables: ufw's chain INPUT (ip filter) hooks input with policy drop; \
             nftables: ufw's chain INPUT (ip6 filter) hooks input with policy drop"
                .into()
        )
    );
    // `ufw default allow incoming` for IPv6 only (its ip6 chains accept): fails on IPv6.
    fs::remove_file(r.bin_dir.as_ref().unwrap().join("nft")).unwrap();
    printing(&r, "iptables-save", UFW_IPTABLES_SAVE);
    printing(
        &r,
        "ip6tables-save",
        &UFW_IP6TABLES_SAVE
            .replace(":INPUT DROP [0:0]", ":INPUT ACCEPT [0:0]")
            .replace(
                "-A ufw6-skip-to-policy-input -j DROP",
                "-A ufw6-skip-to-policy-input -j ACCEPT",
            ),
    );
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.starts_with("no packet filtering of incoming IPv6 traffic")
            && d.contains("ip6tables: ufw's chain INPUT (ip6 filter): input policy accept")),
        "{outcome:?}"
    );
}
