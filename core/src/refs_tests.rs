use super::*;

#[test]
fn a_device_is_named_by_id_or_host_name_and_nothing_else() {
    let id = "6f1c2d3e-0000-4000-8000-000000000001";
    assert_eq!(
        id.parse::<DeviceRef>().unwrap(),
        DeviceRef::Id(id.parse().unwrap())
    );
    let DeviceRef::HostName(name) = " Laptop-7.ward_test ".parse::<DeviceRef>().unwrap() else {
        panic!("a host name")
    };
    assert_eq!(name.as_str(), "Laptop-7.ward_test");
    assert!(name.not_an_id().contains("is not a device id"));
    let err = "not a device!".parse::<DeviceRef>().unwrap_err();
    assert!(err.to_string().contains("is not a device id"), "{err}");
    assert!("".parse::<DeviceRef>().is_err());
    assert!("a".repeat(254).parse::<DeviceRef>().is_err());
}

#[test]
fn a_token_id_is_its_short_form_or_the_whole_hash() {
    let short = "0123456789ABCDEF".repeat(4)[..TOKEN_ID_LEN].to_owned();
    assert_eq!(
        short.parse::<TokenId>().unwrap().as_str(),
        short.to_ascii_lowercase()
    );
    let whole = format!("{short}{}", "0".repeat(64 - TOKEN_ID_LEN));
    assert_eq!(
        whole.parse::<TokenId>().unwrap().as_str(),
        short.to_ascii_lowercase()
    );
    let pasted = "ward_secretsecretsecret".parse::<TokenId>().unwrap_err();
    assert!(!pasted.to_string().contains("secret"), "{pasted}");
}

#[test]
fn a_bulk_wipe_is_named_admin_colon_key() {
    let name: BulkWipeName = "root:offboard-2026".parse().unwrap();
    assert_eq!(
        (name.admin.as_str(), name.key.as_str()),
        ("root", "offboard-2026")
    );
    assert!(matches!(
        "root".parse::<BulkWipeName>(),
        Err(BulkWipeNameError::NoColon(_))
    ));
    assert!(matches!(
        "Not Root:k".parse::<BulkWipeName>(),
        Err(BulkWipeNameError::Admin { .. })
    ));
    assert_eq!(
        "root:a:b".parse::<BulkWipeName>(),
        Err(BulkWipeNameError::Key(BulkWipeKeyError))
    );
    assert_eq!(
        "root:".parse::<BulkWipeName>(),
        Err(BulkWipeNameError::Key(BulkWipeKeyError))
    );
}

#[test]
fn idempotency_keys_are_printable_ascii_and_a_bulk_wipes_has_no_colon() {
    assert_eq!(
        "ticket-4711".parse::<CommandKey>().unwrap().as_str(),
        "ticket-4711"
    );
    assert!("a:b".parse::<CommandKey>().is_ok());
    for bad in ["", "a b", "é", &"k".repeat(129)] {
        assert_eq!(bad.parse::<CommandKey>(), Err(CommandKeyError), "{bad:?}");
        assert_eq!(bad.parse::<BulkWipeKey>(), Err(BulkWipeKeyError), "{bad:?}");
    }
    assert_eq!("a:b".parse::<BulkWipeKey>(), Err(BulkWipeKeyError));
    // A bulk wipe's own keys for its commands are not an admin's to take.
    assert_eq!(
        "bulk-wipe:k:6f1c2d3e-0000-4000-8000-000000000001".parse::<CommandKey>(),
        Err(CommandKeyError)
    );
    assert!("bulk-wipe-k".parse::<CommandKey>().is_ok());
    assert_eq!(
        "k".repeat(128)
            .parse::<BulkWipeKey>()
            .unwrap()
            .as_str()
            .len(),
        128
    );
}

#[test]
fn a_device_list_reads_every_entry_and_keeps_the_malformed_as_written() {
    let id = "6f1c2d3e-0000-4000-8000-000000000001";
    let list: DeviceList = [id, " ", " cart-7 ", "bad entry!", ""]
        .into_iter()
        .collect();
    assert_eq!(list.len(), 3);
    let texts: Vec<&str> = list.listed.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, [id, "cart-7"]);
    assert_eq!(list.listed[0].device, DeviceRef::Id(id.parse().unwrap()));
    assert!(matches!(&list.listed[1].device, DeviceRef::HostName(n) if n.as_str() == "cart-7"));
    assert_eq!(list.malformed, ["bad entry!"]);
    assert!(DeviceList::from_iter(["", "  "]).is_empty());
}

#[test]
fn a_device_list_past_the_bulk_limit_is_counted_not_kept() {
    let entries = std::iter::repeat_n("x", MAX_BULK_WIPE + 5).chain([" ", "y"]);
    let list: DeviceList = entries.collect();
    assert_eq!(list.len(), MAX_BULK_WIPE + 6);
    assert_eq!(list.listed.len(), MAX_BULK_WIPE);
    assert_eq!(list.beyond, 6);
    assert!(list.malformed.is_empty());
}

#[test]
fn a_webhook_id_is_any_id_a_row_may_hold_and_anything_else_names_no_webhook() {
    let made = WebhookId::generate();
    assert_eq!(made.as_str().parse::<WebhookId>(), Ok(made.clone()));
    // Not one Ward makes, but a row planted in the database may hold it.
    for stored in ["exfil", "0123456789ABCDEF"] {
        assert_eq!(stored.parse::<WebhookId>().unwrap().as_str(), stored);
    }
    let long = "k".repeat(129);
    for other in ["", " 0123456789abcdef", "a\u{1b}b", long.as_str()] {
        assert_eq!(
            other.parse::<WebhookId>(),
            Err(NoSuchWebhook(other.chars().take(100).collect())),
            "{other:?}"
        );
    }
    assert_eq!(
        NoSuchWebhook("nope".into()).to_string(),
        "no webhook \"nope\": `wardctl webhook list` shows the ids"
    );
}

#[test]
fn an_empty_user_is_everyone() {
    assert_eq!(optional_user("").unwrap(), None);
    assert_eq!(
        optional_user("Ivy@Hospital.org").unwrap().unwrap().as_str(),
        "ivy@hospital.org"
    );
    assert!(optional_user("ivy").is_err());
}
