use super::*;
use crate::Timestamp;
use crate::audit::{AuditEvent, GENESIS};
use serde_json::json;

fn origin() -> Origin {
    Origin {
        hostname: "ward.hospital.example".into(),
        app_name: "ward".into(),
        procid: Some(4242),
    }
}

fn entry(actor: &str, action: &str, target: &str, details: serde_json::Value) -> AuditEntry {
    AuditEntry::new(
        7,
        Timestamp::from_unix_ms(1_764_979_200_123),
        &AuditEvent {
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            details,
        },
        GENESIS,
    )
}

#[test]
fn a_message_has_the_rfc5424_header_the_structured_data_and_the_details() {
    let e = entry(
        "ward://admin/alice",
        "command.issue",
        "7f9c",
        json!({"kind": "lock"}),
    );
    let text = message(&e, &origin());
    let expected = format!(
        "<109>1 2025-12-06T00:00:00.123Z ward.hospital.example ward 4242 command.issue \
         [ward@32473 seq=\"7\" hash=\"{}\" prev_hash=\"{GENESIS}\" actor=\"ward://admin/alice\" \
         action=\"command.issue\" target=\"7f9c\" outcome=\"success\"] {{\"kind\":\"lock\"}}",
        e.hash
    );
    assert_eq!(text, expected);
}

#[test]
fn a_refusal_is_a_failure_at_warning_severity() {
    let text = message(&entry("10.0.0.9", "denied", "x", json!({})), &origin());
    assert!(text.starts_with("<108>1 "), "{text}");
    assert!(text.contains("outcome=\"failure\""), "{text}");
    assert_eq!(Outcome::of("enroll.refused"), Outcome::Failure);
    assert_eq!(Outcome::of("audit.break"), Outcome::Failure);
    assert_eq!(Outcome::of("device.revoke"), Outcome::Success);
}

#[test]
fn quote_backslash_and_bracket_are_escaped_in_param_values() {
    assert_eq!(escape_param_value(r#"a"b\c]d[e"#), r#"a\"b\\c\]d[e"#);
    let text = message(
        &entry(r#"ward://admin/x"]"#, "device.retire", r"C:\d]", json!({})),
        &origin(),
    );
    assert!(text.contains(r#"actor="ward://admin/x\"\]""#), "{text}");
    assert!(text.contains(r#"target="C:\\d\]""#), "{text}");
}

#[test]
fn header_fields_that_are_empty_too_long_or_not_printable_ascii_are_nilvalue() {
    let odd = Origin {
        hostname: String::new(),
        app_name: "wärd".into(),
        procid: None,
    };
    let long_action = "a".repeat(33);
    let text = message(&entry("a", &long_action, "t", json!({})), &odd);
    assert!(
        text.starts_with("<109>1 2025-12-06T00:00:00.123Z - - - - [ward@32473 "),
        "{text}"
    );
    // The action is still in the structured data in full.
    assert!(
        text.contains(&format!("action=\"{long_action}\"")),
        "{text}"
    );
    let spaced = Origin {
        hostname: "two words".into(),
        ..origin()
    };
    assert!(message(&entry("a", "x", "t", json!({})), &spaced).contains(" - ward 4242 x "));
}

#[test]
fn details_outside_ascii_start_with_a_bom_and_ascii_ones_do_not() {
    let text = message(&entry("a", "x", "t", json!({"user": "zoë"})), &origin());
    assert!(text.ends_with("] \u{feff}{\"user\":\"zoë\"}"), "{text}");
    let plain = message(&entry("a", "x", "t", json!({"user": "zoe"})), &origin());
    assert!(plain.ends_with("] {\"user\":\"zoe\"}"), "{plain}");
}

#[test]
fn the_frame_counts_bytes_not_characters() {
    assert_eq!(frame("abc"), b"3 abc".to_vec());
    // "zoë" is 3 characters and 4 bytes; the BOM is 3 bytes.
    assert_eq!(frame("zoë"), "4 zoë".as_bytes().to_vec());
    let text = message(&entry("a", "x", "t", json!({"user": "zoë"})), &origin());
    let framed = frame(&text);
    let (len, rest) = std::str::from_utf8(&framed)
        .unwrap()
        .split_once(' ')
        .unwrap();
    assert_eq!(len.parse::<usize>().unwrap(), rest.len());
    assert_ne!(rest.len(), rest.chars().count());
}
