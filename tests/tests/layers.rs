//! The layers each crate's `lib.rs` promises, checked against what its Cargo.toml lists: a
//! crate cannot use what it does not depend on, so a dependency added against its layer fails
//! here, not in review. Normal dependencies only (a crate's tests may use more).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;

/// Each crate, and what it must not depend on.
const FORBIDDEN: &[(&str, &[&str])] = &[
    // The words everyone shares: serde only.
    (
        "ward-vocab",
        &[
            "ward-proto",
            "ward-certs",
            "ward-core",
            "tonic",
            "sqlx",
            "tokio",
        ],
    ),
    // Bytes in, typed results out: no files, no network, no storage.
    ("ward-certs", &["ward-files", "tonic", "sqlx", "tokio"]),
    // The domain: no wire, no storage, no I/O runtime, no files.
    (
        "ward-core",
        &[
            "ward-files",
            "ward-proto",
            "ward-store",
            "ward-controller",
            "tonic",
            "prost",
            "sqlx",
            "tokio",
        ],
    ),
    ("ward-store", &["ward-controller", "ward-proto", "tonic"]),
    // The application layer: no wire, no SQL.
    (
        "ward-controller",
        &["ward-proto", "ward-edge", "tonic", "prost", "sqlx"],
    ),
    // The wire over the application: no SQL.
    ("ward-edge", &["ward-store", "sqlx"]),
    // The CLI talks to a controller over its API only.
    ("wardctl", &["ward-controller", "ward-edge", "ward-store"]),
    // The device side shares no controller code.
    (
        "ward-agent",
        &[
            "ward-core",
            "ward-controller",
            "ward-store",
            "ward-edge",
            "sqlx",
        ],
    ),
];

/// Every workspace package's normal dependencies, as `cargo metadata` reads the manifests.
fn dependencies() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let normal = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .collect();
            (p["name"].as_str().unwrap().to_owned(), normal)
        })
        .collect()
}

#[test]
fn no_crate_depends_on_what_its_layer_forbids() {
    let deps = dependencies();
    let mut broken = Vec::new();
    for (krate, forbidden) in FORBIDDEN {
        let Some(has) = deps.get(*krate) else {
            panic!("no workspace crate named {krate}: update FORBIDDEN with the layout");
        };
        for dep in has.iter().filter(|d| forbidden.contains(&d.as_str())) {
            broken.push(format!("{krate} depends on {dep}"));
        }
    }
    assert!(broken.is_empty(), "layers broken: {broken:?}");
    // The vocabulary stays a leaf: serde, nothing of Ward's.
    assert_eq!(deps["ward-vocab"], ["serde"], "ward-vocab's dependencies");
}
