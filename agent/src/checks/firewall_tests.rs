//! Fixture trees: process directories, ufw.conf, and fake `nft` / `iptables-save` programs.

use std::fs;
use std::path::Path;

use super::*;

fn tree() -> (tempfile::TempDir, Roots) {
    let tmp = tempfile::tempdir().unwrap();
    let roots = Roots::under(tmp.path());
    fs::create_dir_all(&roots.proc).unwrap();
    (tmp, roots)
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn script(roots: &Roots, name: &str, body: &str) {
    let path = roots.bin_dir.as_ref().unwrap().join(name);
    write(&path, &format!("#!/bin/sh\n{body}\n"));
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

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

const NFT_DROP: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
 {"table": {"family": "inet", "name": "filter", "handle": 1}},
 {"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
 {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 4, "expr": [{"accept": null}]}}]}"#;

const NFT_FIREWALLD: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
 {"chain": {"family": "inet", "table": "firewalld", "name": "filter_INPUT", "hook": "input", "prio": 10, "policy": "accept"}},
 {"chain": {"family": "inet", "table": "firewalld", "name": "filter_INPUT_ZONES"}},
 {"chain": {"family": "inet", "table": "firewalld", "name": "filter_IN_public"}},
 {"rule": {"family": "inet", "table": "firewalld", "chain": "filter_INPUT", "expr": [{"jump": {"target": "filter_INPUT_ZONES"}}]}},
 {"rule": {"family": "inet", "table": "firewalld", "chain": "filter_INPUT_ZONES", "expr": [{"goto": {"target": "filter_IN_public"}}]}},
 {"rule": {"family": "inet", "table": "firewalld", "chain": "filter_IN_public", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": {"set": ["icmp"]}}}, {"reject": {"type": "icmpx", "expr": "admin-prohibited"}}]}}]}"#;

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
			10.0.0.3 : accept
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
fn nft_rejects_reached_by_jumps_pass() {
    let (_t, r) = tree();
    printing(&r, "nft", NFT_FIREWALLD);
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Pass(d) if d.contains("drops or rejects packets (in chain filter_IN_public)")),
        "{outcome:?}"
    );
}

#[test]
fn nft_without_input_filtering_fails() {
    let (_t, r) = tree();
    printing(&r, "nft", NFT_OPEN);
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Fail(d)
            if d.contains("nftables has no input chain that drops or rejects")
                && d.contains("firewalld is not running")
                && d.contains("not read: iptables-save is not in")),
        "{outcome:?}"
    );
    assert_eq!(state(&r), "inactive");
}

#[test]
fn old_nft_without_json_is_read_as_text() {
    let (_t, r) = tree();
    let out = r.bin_dir.as_ref().unwrap().join("ruleset.txt");
    write(&out, NFT_TEXT);
    script(
        &r,
        "nft",
        &format!(
            "if [ \"$1\" = -j ]; then echo \"nft: unrecognized option '-j'\" >&2; exit 1; fi\ncat '{}'",
            out.display()
        ),
    );
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Pass(d) if d.contains("chain input (inet filter) drops or rejects packets (in chain custom)")),
        "{outcome:?}"
    );
    // The same ruleset without the jump filters nothing.
    write(&out, &NFT_TEXT.replace("jump custom", ""));
    assert!(matches!(check(&r), Outcome::Fail(_)));
}

const IPTABLES_UFW: &str = "# Generated by iptables-save v1.8.9
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:ufw-before-input - [0:0]
-A INPUT -j ufw-before-input
-A ufw-before-input -i lo -j ACCEPT
COMMIT
";

const IPTABLES_REJECT: &str = "*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -j DROP
COMMIT
*filter
:INPUT ACCEPT [0:0]
:f2b-sshd - [0:0]
-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd
-A f2b-sshd -s 192.0.2.1/32 -j REJECT --reject-with icmp-port-unreachable
COMMIT
";

const IPTABLES_OPEN: &str = "*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -j DROP
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:DOCKER - [0:0]
-A INPUT -i lo -j ACCEPT
-A FORWARD -j DOCKER
-A DOCKER -j DROP
COMMIT
";

#[test]
fn iptables_input_policy_drop_or_reject_rules_pass() {
    let (_t, r) = tree();
    denied(&r, "nft");
    printing(&r, "iptables-save", IPTABLES_UFW);
    assert_eq!(
        check(&r),
        Outcome::Pass("iptables: chain INPUT (ip filter) hooks input with policy drop".into())
    );
    printing(&r, "iptables-save", IPTABLES_REJECT);
    assert!(matches!(check(&r), Outcome::Pass(d) if d.contains("(in chain f2b-sshd)")));
}

#[test]
fn iptables_without_input_filtering_fails() {
    let (_t, r) = tree();
    printing(&r, "iptables-save", IPTABLES_OPEN);
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.contains("iptables has no input chain")),
        "{outcome:?}"
    );
    script(
        &r,
        "iptables-save",
        "echo \"iptables-save v1.8.9 (legacy): can't initialize iptables table \\`filter': Table does not exist (do you need to insmod?)\" >&2; exit 1",
    );
    assert!(matches!(check(&r), Outcome::Fail(d) if d.contains("iptables has no input chain")));
}

#[test]
fn firewalld_process_passes_by_name_or_script() {
    let (_t, r) = tree();
    write(&r.proc.join("1/comm"), "systemd\n");
    write(&r.proc.join("812/comm"), "firewalld\n");
    write(&r.proc.join("self/comm"), "firewalld\n");
    assert_eq!(check(&r), Outcome::Pass("firewalld is running".into()));
    assert_eq!(state(&r), "active: firewalld");

    let (_t2, r2) = tree();
    write(&r2.proc.join("812/comm"), "python3\n");
    write(
        &r2.proc.join("812/cmdline"),
        "/usr/bin/python3\0/usr/sbin/firewalld\0--nofork\0",
    );
    assert!(matches!(check(&r2), Outcome::Pass(_)));

    // Only numbered directories are processes.
    let (_t3, r3) = tree();
    write(&r3.proc.join("self/comm"), "firewalld\n");
    assert!(matches!(check(&r3), Outcome::Unsupported(_)));
}

#[test]
fn ufw_counts_when_its_rules_are_loaded_or_cannot_be_read() {
    let (_t, r) = tree();
    write(
        &r.etc.join("ufw/ufw.conf"),
        "# comment\nENABLED=yes\nLOGLEVEL=low\n",
    );
    // Not root: nothing readable, the configuration alone passes and says so.
    denied(&r, "nft");
    denied(&r, "iptables-save");
    let outcome = check(&r);
    assert!(
        matches!(&outcome, Outcome::Pass(d) if d.contains("ufw is enabled in") && d.contains("could not be read")),
        "{outcome:?}"
    );
    assert_eq!(state(&r), "active: ufw");
    // Readable and loaded.
    printing(&r, "iptables-save", IPTABLES_UFW);
    assert_eq!(state(&r), "active: iptables, ufw");
    assert!(matches!(check(&r), Outcome::Pass(d) if d.contains("its rules are loaded")));
    // Readable and not loaded.
    printing(&r, "iptables-save", IPTABLES_OPEN);
    assert!(
        matches!(check(&r), Outcome::Fail(d) if d.contains("ufw is enabled in") && d.contains("not loaded"))
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
fn parsers_read_chains() {
    let chains = parse_nft_text(NFT_TEXT);
    let names: Vec<&str> = chains.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["input", "custom"]);
    assert_eq!(chains[0].hook.as_deref(), Some("input"));
    assert_eq!(chains[0].policy.as_deref(), Some("accept"));
    assert!(!chains[0].drops && chains[1].drops);
    assert_eq!(chains[0].jumps, ["custom"]);
    assert!(parse_nft_json("not json").is_none());
    assert!(rules(&parse_iptables_save(IPTABLES_UFW)).ufw);
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
