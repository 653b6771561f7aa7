//! PATCH as identity providers send it, and what is refused.

use serde_json::Value;

use super::error::ScimError;
use super::patch::*;
use super::resource::{CORE_USER, ENTERPRISE_USER, PATCH_OP};
use serde_json::json;

fn user() -> Value {
    json!({
        "schemas": [CORE_USER],
        "id": "1",
        "userName": "alice@hospital.org",
        "active": true,
        "emails": [{ "type": "work", "value": "alice@hospital.org", "primary": true }],
    })
}

fn patch(body: Value) -> Result<Value, ScimError> {
    apply(&user(), &parse(&body)?)
}

#[test]
fn entra_ids_deactivation_sets_active_to_the_string_false() {
    let out = patch(json!({
        "schemas": [PATCH_OP],
        "Operations": [{ "op": "Replace", "path": "active", "value": "False" }],
    }))
    .unwrap();
    assert_eq!(out["active"], "False");
    let input = super::resource::input_from(&out).unwrap();
    assert_eq!(input.active, Some(false));
}

#[test]
fn oktas_deactivation_replaces_without_a_path() {
    let out = patch(json!({
        "schemas": [PATCH_OP],
        "Operations": [{ "op": "replace", "value": { "active": false } }],
    }))
    .unwrap();
    assert_eq!(out["active"], false);
}

#[test]
fn entra_ids_attribute_updates_apply() {
    let out = patch(json!({
        "schemas": [PATCH_OP],
        "Operations": [
            { "op": "Add", "path": "emails[type eq \"work\"].value", "value": "a2@hospital.org" },
            { "op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555" },
            { "op": "Replace", "path": "name.givenName", "value": "Alicia" },
            { "op": "Add", "path": format!("{ENTERPRISE_USER}:department"), "value": "ICU" },
            { "op": "Replace", "value": { "displayName": "Alicia B", "name.familyName": "B" } },
        ],
    }))
    .unwrap();
    assert_eq!(out["emails"][0]["value"], "a2@hospital.org");
    assert_eq!(out["phoneNumbers"][0]["type"], "mobile");
    assert_eq!(out["name"]["givenName"], "Alicia");
    assert_eq!(out["name"]["familyName"], "B");
    assert_eq!(out[ENTERPRISE_USER]["department"], "ICU");
    assert_eq!(out["displayName"], "Alicia B");
}

#[test]
fn malformed_patches_are_refused_with_their_scim_type() {
    let cases = [
        (json!({ "Operations": [] }), "invalidSyntax"),
        (
            json!({ "schemas": [PATCH_OP], "Operations": [] }),
            "invalidSyntax",
        ),
        (
            json!({ "schemas": [PATCH_OP], "Operations": [{ "op": "move", "path": "a", "value": 1 }] }),
            "invalidSyntax",
        ),
        (
            json!({ "schemas": [PATCH_OP], "Operations": [{ "op": "remove" }] }),
            "noTarget",
        ),
        (
            json!({ "schemas": [PATCH_OP], "Operations": [{ "op": "replace", "path": "emails[type co \"w\"]", "value": {} }] }),
            "invalidPath",
        ),
        (
            json!({ "schemas": [PATCH_OP], "Operations": [{ "op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "x"} }] }),
            "noTarget",
        ),
        (
            json!({ "schemas": [PATCH_OP], "Operations": [{ "op": "replace", "path": "id", "value": "2" }] }),
            "mutability",
        ),
    ];
    for (body, scim_type) in cases {
        let e = patch(body.clone()).unwrap_err();
        assert_eq!(e.scim_type, Some(scim_type), "{body}");
    }
}

/// Review finding: each PATCH body is capped (64 KiB) but the user it builds is not. `add` to
/// an array appends, so a token holder grows one user's stored `attributes` by ~64 KiB a
/// request, 1200 requests a minute (~75 MB/min) with no end; every `GET /Users` then loads
/// and serializes all of it, and each `add` scans the whole array (`contains`), quadratic.
/// A patched resource larger than a request may be should be refused.
#[test]
fn patches_cannot_grow_a_user_past_the_request_limit() {
    let mut resource = user();
    let filler = "x".repeat(60 * 1024);
    for i in 0..20 {
        let operations = parse(&json!({
            "schemas": [PATCH_OP],
            "Operations": [{
                "op": "add",
                "path": "emails",
                "value": [{
                    "type": "other",
                    "value": format!("n{i}@hospital.org"),
                    "display": filler,
                }],
            }],
        }))
        .unwrap();
        match apply(&resource, &operations).and_then(|r| super::resource::input_from(&r).map(|_| r))
        {
            Ok(next) => resource = next,
            Err(_) => return,
        }
    }
    panic!(
        "a user of {} bytes was accepted (each request was under {} bytes)",
        resource.to_string().len(),
        super::http::MAX_BODY
    );
}
