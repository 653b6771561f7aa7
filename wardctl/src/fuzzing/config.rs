//! Fuzz check: controller-side configuration as operators and scripts type or keep it —
//! `wardctl` command lines (every flag's value parser), durations, the admin bundle PEM file,
//! a stored policy (JSON), user e-mail addresses and policy scopes.

use std::ffi::OsString;
use std::path::Path;

use clap::Parser;

use crate::cli::Cli;
use ward_core::duration::{self, DurationRange, days, seconds};
use ward_core::{Policy, PolicyChanges, PolicyScope, UserEmail};
use ward_files::bundle::AdminBundle;

/// The input is tried as a `wardctl` argument list (one argument a line) and, when it is
/// UTF-8, as each kind of configuration text.
///
/// Invariants: nothing panics; what parses prints back to text that parses to the same
/// value (durations, e-mail addresses, scopes, policies, the admin bundle); a stored policy
/// that validates is exactly what the same changes make of the default policy.
pub fn controller_config(data: &[u8]) {
    command_line(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    duration(text);
    bundle(text);
    policy(text);
    if let Ok(user) = text.parse::<UserEmail>() {
        assert_eq!(user.to_string().parse::<UserEmail>().as_ref(), Ok(&user));
        assert_eq!(user.as_str(), user.as_str().to_ascii_lowercase());
    }
    if let Ok(scope) = text.parse::<PolicyScope>() {
        assert_eq!(
            scope.to_string().parse::<PolicyScope>().as_ref(),
            Ok(&scope)
        );
    }
}

/// One argument a line, after the program name; bytes are passed as they are (an argument
/// need not be UTF-8).
pub(crate) fn arguments(program: &str, data: &[u8]) -> Vec<OsString> {
    let mut args = vec![OsString::from(program)];
    args.extend(data.split(|b| *b == b'\n').map(os_string));
    args
}

#[cfg(unix)]
fn os_string(bytes: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(bytes).to_owned()
}

#[cfg(not(unix))]
fn os_string(bytes: &[u8]) -> OsString {
    OsString::from(String::from_utf8_lossy(bytes).into_owned())
}

fn command_line(data: &[u8]) {
    if let Err(e) = Cli::try_parse_from(arguments("wardctl", data)) {
        // What the user would see must render, too.
        let _ = e.render().to_string();
    }
}

fn duration(text: &str) {
    // humantime's own round trip.
    if let Ok(d) = humantime::parse_duration(text) {
        let shown = humantime::format_duration(d).to_string();
        assert_eq!(
            humantime::parse_duration(&shown),
            Ok(d),
            "{shown:?} does not read back"
        );
    }
    // Ward's parser and printers: every error names the range; the exact form reads back; the
    // short form never shows more than the value.
    let range = DurationRange::new(seconds(1), days(3650), "1h");
    let d = match range.parse("--flag", text) {
        Ok(d) => d,
        Err(e) => {
            assert!(e.contains("use 1s to 3650d (e.g. --flag 1h)"), "{e}");
            return;
        }
    };
    let exact = duration::format_exact(d);
    assert_eq!(
        range.parse("--flag", &exact),
        Ok(d),
        "{exact:?} does not read back"
    );
    let short = duration::format(d);
    match range.parse("--flag", &short) {
        Ok(shown) => assert!(shown <= d, "{short:?} shows more than {exact:?}"),
        Err(e) => panic!("{short:?} does not read back: {e}"),
    }
}

fn bundle(text: &str) {
    let path = Path::new("admin.pem");
    let Ok(bundle) = AdminBundle::from_pem(text, path) else {
        return;
    };
    let again = match AdminBundle::from_pem(&bundle.to_pem(), path) {
        Ok(again) => again,
        Err(e) => panic!("a bundle Ward wrote does not read back: {e}"),
    };
    assert_eq!(again.certificate_der, bundle.certificate_der);
    assert_eq!(again.ca_der, bundle.ca_der);
    assert_eq!(again.key.as_bytes(), bundle.key.as_bytes());
}

fn policy(text: &str) {
    let Ok(policy) = serde_json::from_str::<Policy>(text) else {
        return;
    };
    let stored = serde_json::to_string(&policy).unwrap_or_default();
    assert_eq!(
        serde_json::from_str::<Policy>(&stored).ok().as_ref(),
        Some(&policy)
    );
    let changes = PolicyChanges {
        password_min_length: Some(policy.password_min_length),
        password_min_classes: Some(policy.password_min_classes),
        password_max_age_days: Some(policy.password_max_age_days),
        password_history: Some(policy.password_history),
        max_failed_attempts: Some(policy.max_failed_attempts),
        auto_lock_seconds: Some(policy.auto_lock_seconds),
        require_disk_encryption: Some(policy.require_disk_encryption),
        offline_wipe_after_seconds: Some(policy.offline_wipe_after_seconds),
        enforce: Some(policy.enforce),
        require_firewall: Some(policy.require_firewall),
        forbidden_packages: Some(policy.forbidden_packages.clone()),
        os_updates_max_age_days: Some(policy.os_updates_max_age_days),
        min_agent_version: Some(policy.min_agent_version.clone()),
        check_actions: policy.check_actions.clone(),
        wipe_grace_seconds: Some(policy.wipe_grace_seconds),
        max_uptime_days: Some(policy.max_uptime_days),
    };
    match (policy.validate(), Policy::default().with(&changes)) {
        (Ok(()), Ok(made)) => assert_eq!(made, policy),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (valid, made) => panic!("validate() says {valid:?} but with() says {made:?}"),
    }
}

/// Seeds: typical command lines (one argument a line), durations, a policy, an address, a
/// scope and an admin bundle with a generated (throw-away) key.
pub fn controller_config_seeds() -> Vec<(String, Vec<u8>)> {
    let lines = |args: &[&str]| args.join("\n").into_bytes();
    let device = "6f1c0000-4000-8000-0000-000000000001";
    let mut seeds = vec![
        ("argv-token".to_owned(), lines(&["token", "create", "--user", "alice@hospital.org", "--ttl", "15m"])),
        ("argv-wipe".into(), lines(&["device", "wipe", device, "--scope", "full", "--reason", "lost", "--wait", "--timeout", "90s", "-o", "json"])),
        ("argv-offboard".into(), lines(&["user", "offboard", "bob@hospital.org", "--output", "json", "--wait", "--timeout", "5m"])),
        ("argv-policy".into(), lines(&["policy", "set", "--user", "alice@hospital.org", "--offline-wipe-after", "3d", "--max-age", "90d", "--max-inactivity", "5m", "--require-encryption", "--min-length", "12"])),
        ("argv-serve".into(), lines(&["serve", "--data-dir", "/var/lib/ward", "--listen", "0.0.0.0:7443", "--device-cert-lifetime", "7d"])),
        ("argv-audit".into(), lines(&["audit", "list", "--since", "24h", "--actor", "alice"])),
        ("argv-admin".into(), lines(&["admin", "issue", "carol", "--role", "helpdesk", "--out", "carol.pem"])),
        ("duration".into(), b"1h 30m".to_vec()),
        ("policy-json".into(), br#"{"password_min_length":12,"auto_lock_seconds":300,"require_disk_encryption":true,"offline_wipe_after_seconds":259200,"enforce":true}"#.to_vec()),
        ("user".into(), b" Alice.Smith@Hospital.ORG ".to_vec()),
        ("scope".into(), b"user:alice@hospital.org".to_vec()),
    ];
    if let Some(bundle) = bundle_seed() {
        seeds.push(("admin-bundle".into(), bundle));
    }
    seeds
}

/// An admin bundle with real certificates and a placeholder where the key goes: the parser
/// takes the block as it is, and no private key ends up in the committed corpus.
fn bundle_seed() -> Option<Vec<u8>> {
    use ward_certs::{CertificateAuthority, Identity, PrivateKeyDer, VerifiedCsr};
    let now = ward_certs::fuzzing::FUZZ_NOW;
    let ca = CertificateAuthority::create("Seed CA", now).ok()?;
    let key = PrivateKeyDer::generate().ok()?;
    let csr = VerifiedCsr::from_der(&ward_certs::csr::make_csr(&key, "alice").ok()?).ok()?;
    let admin = Identity::Admin("alice".parse().ok()?);
    let cert = ca
        .issue_client(&csr, &admin, now, ward_certs::ca::ADMIN_LIFETIME)
        .ok()?;
    let bundle = AdminBundle {
        certificate_der: cert.der,
        ca_der: ca.cert_der().to_vec(),
        other_cas: Vec::new(),
        key: PrivateKeyDer::new(b"placeholder, not a key".to_vec()),
    };
    Some(bundle.to_pem().as_bytes().to_vec())
}
