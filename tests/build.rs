//! Tells the end-to-end tests which system tools this machine has, so a test that needs one is
//! marked `ignored` (with the reason, visible in the test summary) where it is missing, instead
//! of failing or passing without running:
//!
//! ```ignore
//! #[test]
//! #[cfg_attr(not(ward_swtpm), ignore = "needs swtpm: apt-get install swtpm swtpm-tools tpm2-tools")]
//! fn the_key_lives_in_the_tpm() { … }
//! ```
//!
//! `.ci/run` installs every tool, so CI runs every test. The probe runs again when `PATH`,
//! `WARD_TEST_POSTGRES_URL` or the program directories change (a package installed later).

use std::path::Path;

/// (cfg name, programs that must all be found on PATH or at the given absolute paths)
const TOOLS: &[(&str, &[&str])] = &[
    (
        "ward_faketime",
        &["/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"],
    ),
    ("ward_swtpm", &["swtpm", "swtpm_setup", "tpm2_nvdefine"]),
    ("ward_setpriv", &["setpriv", "useradd"]),
    ("ward_prlimit", &["prlimit"]),
    ("ward_sqlcipher", &["sqlcipher"]),
    ("ward_openssl", &["openssl", "jq"]),
    ("ward_chromium", &["chromium", "chromedriver"]),
    (
        "ward_rsyslog",
        &[
            "rsyslogd",
            "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so",
        ],
    ),
];

/// Where `.ci/run` installs scim2-tester (a virtual environment, outside the repository).
const SCIM2_TESTER_VENV: &str = "/opt/ward-scim2-tester";

fn main() {
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=WARD_TEST_POSTGRES_URL");
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        if Path::new(dir).is_dir() {
            println!("cargo::rerun-if-changed={dir}");
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = |program: &str| {
        if program.starts_with('/') {
            return Path::new(program).exists();
        }
        std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
    };
    let mut names: Vec<&str> = TOOLS.iter().map(|(name, _)| *name).collect();
    names.extend(["ward_postgres", "ward_root", "ward_scim2_tester"]);
    // scim2-tester (PyPI) in a virtual environment: .ci/run makes it at SCIM2_TESTER_VENV.
    println!("cargo::rerun-if-env-changed=WARD_SCIM2_TESTER_PYTHON");
    println!("cargo::rerun-if-changed=/opt");
    let scim2_tester = std::env::var("WARD_SCIM2_TESTER_PYTHON")
        .unwrap_or_else(|_| format!("{SCIM2_TESTER_VENV}/bin/python"));
    if Path::new(&scim2_tester).exists() {
        println!("cargo::rustc-cfg=ward_scim2_tester");
    }
    println!("cargo::rustc-env=WARD_SCIM2_TESTER_PYTHON={scim2_tester}");
    println!("cargo::rustc-check-cfg=cfg({})", names.join(", "));
    for (name, programs) in TOOLS {
        if programs.iter().all(|p| found(p)) {
            println!("cargo::rustc-cfg={name}");
        }
    }
    if std::env::var_os("WARD_TEST_POSTGRES_URL").is_some() {
        println!("cargo::rustc-cfg=ward_postgres");
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|ids| ids.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false);
    if root {
        println!("cargo::rustc-cfg=ward_root");
    }
}
