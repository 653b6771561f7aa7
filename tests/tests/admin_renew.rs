//! An admin renewing their own certificate gets the answer on the connection the old
//! certificate opened, on every backend. On PostgreSQL the renewal's own revocation
//! announcement comes back to the replica while the call is still being answered; cutting the
//! connections of every revoked certificate then lost the answer (the new bundle was issued
//! but never written). The old certificate is refused from the next call on all the same.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use ward_e2e::postgres::{FreshDatabase, fresh_database};
use ward_e2e::process::{ControllerProcess, json, stderr, wardctl};

/// wardctl's exit code for a refused call.
const DENIED: i32 = 4;

fn as_admin(controller: &ControllerProcess, bundle: &Path, args: &[&str]) -> std::process::Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend([
        "--server",
        controller.url.as_str(),
        "--admin-cert",
        bundle.to_str().unwrap(),
    ]);
    wardctl(&all)
}

/// Issues admin `nina` (helpdesk), then has her renew her own certificate `rounds` times, each
/// time with the bundle the last renewal wrote.
fn renews_herself(controller: &ControllerProcess, dir: &Path, rounds: usize) {
    let first = dir.join("nina-0.pem");
    let out = controller.ctl(&[
        "admin",
        "issue",
        "nina",
        "--role",
        "helpdesk",
        "--out",
        first.to_str().unwrap(),
        "--no-passphrase",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut bundle: PathBuf = first;
    for round in 1..=rounds {
        let next = dir.join(format!("nina-{round}.pem"));
        let out = as_admin(
            controller,
            &bundle,
            &[
                "admin",
                "renew",
                "nina",
                "--out",
                next.to_str().unwrap(),
                "--no-passphrase",
                "--output",
                "json",
            ],
        );
        assert!(
            out.status.success(),
            "renewal {round} lost its answer: {}",
            stderr(&out)
        );
        assert_eq!(json(&out)["name"], "nina");
        assert!(next.exists(), "renewal {round} wrote no bundle");
        let old = as_admin(controller, &bundle, &["device", "list"]);
        assert_eq!(old.status.code(), Some(DENIED), "{}", stderr(&old));
        let new = as_admin(controller, &next, &["device", "list"]);
        assert!(new.status.success(), "{}", stderr(&new));
        bundle = next;
    }
}

#[test]
fn an_admin_renewing_herself_gets_the_answer_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    renews_herself(&controller, tmp.path(), 5);
}

#[test]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
fn an_admin_renewing_herself_gets_the_answer_on_postgres() {
    let tmp = tempfile::tempdir().unwrap();
    let db: FreshDatabase = fresh_database();
    let controller = ControllerProcess::start_with(
        &tmp.path().join("controller"),
        "127.0.0.1:0",
        &["--database-url", db.url.as_str()],
    );
    renews_herself(&controller, tmp.path(), 5);
}
