//! An audit entry as an OCSF event (Open Cybersecurity Schema Framework, schema 1.3.0), the
//! message body of `serve --audit-format ocsf`.
//!
//! Device enrollment, revocation, retirement, disabling and enabling, enrollment tokens,
//! policies and webhooks are Entity Management (3004) on the managed entity; an admin identity
//! issued or revoked and a user offboarded are Account Change (3001); every other admin call
//! (commands, reads, refusals) is API Activity (6003); what devices and the controller record
//! about a device (check-ins' enforcement, renewals, receipts) is Entity Management's Update.
//! The entry itself — sequence number, hash, previous hash, actor, action, target and its
//! details as parsed JSON — is in `unmapped`, and the sequence number in `metadata.sequence`,
//! so a SIEM can follow and recompute the chain from OCSF events alone.

use serde_json::{Map, Value, json};

use super::AuditEntry;
use super::syslog::Outcome;

/// The OCSF schema version the events follow.
pub const SCHEMA_VERSION: &str = "1.3.0";

/// OCSF's Identity & Access Management category.
const IAM: u32 = 3;
/// OCSF's Application Activity category.
const APPLICATION: u32 = 6;

/// An OCSF event class Ward uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    AccountChange,
    EntityManagement,
    ApiActivity,
}

impl Class {
    pub fn uid(self) -> u32 {
        match self {
            Class::AccountChange => 3001,
            Class::EntityManagement => 3004,
            Class::ApiActivity => 6003,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Class::AccountChange => "Account Change",
            Class::EntityManagement => "Entity Management",
            Class::ApiActivity => "API Activity",
        }
    }

    fn category(self) -> (u32, &'static str) {
        match self {
            Class::AccountChange | Class::EntityManagement => (IAM, "Identity & Access Management"),
            Class::ApiActivity => (APPLICATION, "Application Activity"),
        }
    }
}

/// The class, activity id and activity name of an action by `actor`.
pub fn classify(action: &str, actor: &str) -> (Class, u32, &'static str) {
    use Class::*;
    match action {
        "device.enroll" => (EntityManagement, 6, "Enroll"),
        "device.revoke" | "device.retire" | "device.retired" => (EntityManagement, 7, "Unenroll"),
        "device.enable" | "device.disable_undone" => (EntityManagement, 8, "Enable"),
        "device.disable" => (EntityManagement, 9, "Disable"),
        "token.create" | "webhook.add" => (EntityManagement, 1, "Create"),
        "policy.set" | "policy.upgrade" => (EntityManagement, 3, "Update"),
        "token.revoke" | "policy.reset" | "webhook.remove" => (EntityManagement, 4, "Delete"),
        "admin.issue" => (AccountChange, 1, "Create"),
        "admin.revoke" | "user.offboard" => (AccountChange, 5, "Disable"),
        "read" => (ApiActivity, 2, "Read"),
        _ if actor.starts_with("ward://admin/") => {
            let verb = action.rsplit('.').next().unwrap_or(action);
            match verb {
                "issue" | "create" | "add" | "request" | "bulk_wipe" => (ApiActivity, 1, "Create"),
                "remove" | "delete" => (ApiActivity, 4, "Delete"),
                "denied" => (ApiActivity, 99, "Other"),
                _ => (ApiActivity, 3, "Update"),
            }
        }
        _ if action.starts_with("device.") => (EntityManagement, 3, "Update"),
        _ => (ApiActivity, 99, "Other"),
    }
}

/// OCSF severity: Informational, Medium for a refusal, High for damage found in the chain.
fn severity(entry: &AuditEntry, outcome: Outcome) -> (u32, &'static str) {
    if entry.action == super::BREAK_ACTION {
        (4, "High")
    } else if outcome == Outcome::Failure {
        (3, "Medium")
    } else {
        (1, "Informational")
    }
}

/// Who acted, as OCSF's actor.user: an admin (type Admin), a device, or the controller
/// itself (type System).
fn actor(uri: &str) -> Value {
    if let Some(name) = uri.strip_prefix("ward://admin/") {
        json!({ "user": { "name": name, "uid": uri, "type": "Admin", "type_id": 2 } })
    } else if let Some(id) = uri.strip_prefix("ward://device/") {
        json!({ "user": { "name": id, "uid": uri, "type": "Device", "type_id": 99 } })
    } else {
        json!({ "user": { "name": uri, "uid": uri, "type": "System", "type_id": 3 } })
    }
}

/// The managed entity an Entity Management event is about.
fn entity(entry: &AuditEntry) -> Value {
    let target = entry.target.as_str();
    let kind = entry.action.split('.').next().unwrap_or_default();
    match kind {
        "device" => json!({
            "uid": target, "name": target, "type": "Device", "type_id": 1,
            "device": { "uid": target, "type_id": 0 },
        }),
        "policy" => json!({
            "uid": target, "name": target, "type": "Policy", "type_id": 5,
            "policy": { "uid": target, "name": target },
        }),
        "token" => {
            json!({ "uid": target, "name": target, "type": "Enrollment Token", "type_id": 99 })
        }
        "webhook" => json!({ "uid": target, "name": target, "type": "Webhook", "type_id": 99 }),
        _ => json!({ "uid": target, "name": target, "type_id": 0 }),
    }
}

/// The user an Account Change event is about: an admin identity, or a user (by e-mail).
fn user(entry: &AuditEntry) -> Value {
    let target = entry.target.as_str();
    let name = target.strip_prefix("admin ").unwrap_or(target);
    if name.contains('@') {
        json!({ "name": name, "email_addr": name, "type": "User", "type_id": 1 })
    } else {
        json!({ "name": name, "type": "Admin", "type_id": 2 })
    }
}

/// The OCSF event of `entry` (JSON), the message of `--audit-format ocsf`.
pub fn event(entry: &AuditEntry, product_version: &str) -> Value {
    let outcome = Outcome::of(&entry.action);
    let (class, activity_id, activity_name) = classify(&entry.action, &entry.actor);
    let (category_uid, category_name) = class.category();
    let (severity_id, severity) = severity(entry, outcome);
    let details: Value = serde_json::from_str(&entry.details).unwrap_or(Value::Null);
    let mut event = Map::new();
    let mut put = |k: &str, v: Value| {
        event.insert(k.to_owned(), v);
    };
    put("class_uid", json!(class.uid()));
    put("class_name", json!(class.name()));
    put("category_uid", json!(category_uid));
    put("category_name", json!(category_name));
    put("activity_id", json!(activity_id));
    put("activity_name", json!(activity_name));
    put("type_uid", json!(class.uid() * 100 + activity_id));
    put("time", json!(entry.at.unix_ms()));
    put("severity_id", json!(severity_id));
    put("severity", json!(severity));
    let (status_id, status) = match outcome {
        Outcome::Success => (1, "Success"),
        Outcome::Failure => (2, "Failure"),
    };
    put("status_id", json!(status_id));
    put("status", json!(status));
    put(
        "message",
        json!(format!("{} {}", entry.action, entry.target)),
    );
    put("actor", actor(&entry.actor));
    put(
        "metadata",
        json!({
            "version": SCHEMA_VERSION,
            "product": { "name": "Ward", "vendor_name": "Ward", "version": product_version },
            "log_name": "audit",
            "event_code": entry.action,
            "sequence": entry.seq,
            "original_time": entry.at.rfc3339(),
        }),
    );
    match class {
        Class::EntityManagement => {
            put("entity", entity(entry));
            if let Some(reason) = details.get("reason").and_then(Value::as_str) {
                put("comment", json!(reason));
            }
        }
        Class::AccountChange => put("user", user(entry)),
        Class::ApiActivity => {
            put(
                "api",
                json!({ "operation": entry.action, "service": { "name": "ward.v1.AdminService" } }),
            );
            put(
                "resources",
                json!([{ "uid": entry.target, "name": entry.target }]),
            );
        }
    }
    put(
        "unmapped",
        json!({
            "seq": entry.seq,
            "hash": entry.hash,
            "prev_hash": entry.prev_hash,
            "actor": entry.actor,
            "action": entry.action,
            "target": entry.target,
            "details": details,
        }),
    );
    Value::Object(event)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Timestamp;

    fn entry(action: &str, actor: &str, target: &str, details: &str) -> AuditEntry {
        AuditEntry {
            seq: 7,
            at: Timestamp::from_unix_ms(1_765_000_000_123),
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            details: details.into(),
            prev_hash: "aa".into(),
            hash: "bb".into(),
        }
    }

    #[test]
    fn enrollment_and_revocation_are_entity_management() {
        let enrolled = event(
            &entry(
                "device.enroll",
                "ward://device/d1",
                "d1",
                r#"{"user":"a@h.org"}"#,
            ),
            "0.2.0",
        );
        assert_eq!(enrolled["class_uid"], 3004);
        assert_eq!(enrolled["category_uid"], 3);
        assert_eq!(enrolled["activity_id"], 6);
        assert_eq!(enrolled["type_uid"], 300_406);
        assert_eq!(enrolled["entity"]["device"]["uid"], "d1");
        assert_eq!(enrolled["time"], 1_765_000_000_123_i64);
        assert_eq!(enrolled["metadata"]["sequence"], 7);
        assert_eq!(enrolled["metadata"]["version"], SCHEMA_VERSION);
        assert_eq!(enrolled["unmapped"]["hash"], "bb");
        assert_eq!(enrolled["unmapped"]["details"]["user"], "a@h.org");
        let revoked = event(
            &entry(
                "device.revoke",
                "ward://admin/alice",
                "d1",
                r#"{"reason":"lost"}"#,
            ),
            "0.2.0",
        );
        assert_eq!(
            (revoked["class_uid"].clone(), revoked["activity_id"].clone()),
            (json!(3004), json!(7))
        );
        assert_eq!(revoked["comment"], "lost");
        assert_eq!(revoked["actor"]["user"]["name"], "alice");
        assert_eq!(revoked["actor"]["user"]["type_id"], 2);
    }

    #[test]
    fn admin_calls_are_api_activity_and_accounts_are_account_change() {
        let issued = event(
            &entry("command.issue", "ward://admin/alice", "c1", "{}"),
            "v",
        );
        assert_eq!(
            (issued["class_uid"].clone(), issued["activity_id"].clone()),
            (json!(6003), json!(1))
        );
        assert_eq!(issued["api"]["operation"], "command.issue");
        let read = event(&entry("read", "ward://admin/alice", "devices", "{}"), "v");
        assert_eq!(read["activity_id"], 2);
        let denied = event(&entry("denied", "ward://admin/desk", "d1", "{}"), "v");
        assert_eq!(
            (denied["status_id"].clone(), denied["severity_id"].clone()),
            (json!(2), json!(3))
        );
        let offboard = event(
            &entry("user.offboard", "ward://admin/hr", "q@h.org", "{}"),
            "v",
        );
        assert_eq!(
            (
                offboard["class_uid"].clone(),
                offboard["activity_id"].clone()
            ),
            (json!(3001), json!(5))
        );
        assert_eq!(offboard["user"]["email_addr"], "q@h.org");
        let broken = event(
            &entry(super::super::BREAK_ACTION, "controller", "audit log", "{}"),
            "v",
        );
        assert_eq!(broken["severity_id"], 4);
        assert_eq!(broken["actor"]["user"]["type_id"], 3);
    }
}
