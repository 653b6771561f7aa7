//! Unused enrollment tokens: listed without their secrets, withdrawn one by one or per user,
//! after which they enroll nothing; and `WhoAmI`, which tells a client what its role may do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tonic::Code;
use ward_e2e::inprocess::TestController;
use ward_e2e::process::{ControllerProcess, json, stderr};
use ward_proto::v1::*;

async fn list(controller: &TestController, user: &str) -> Vec<EnrollmentTokenInfo> {
    controller
        .admin()
        .await
        .list_enrollment_tokens(ListEnrollmentTokensRequest { user: user.into() })
        .await
        .unwrap()
        .into_inner()
        .tokens
}

#[tokio::test]
async fn unused_tokens_are_listed_without_secrets_and_a_withdrawn_one_enrolls_nothing() {
    let controller = TestController::start().await;
    let first = controller.create_token("ann@hospital.org", 0).await;
    let second = controller.create_token("ann@hospital.org", 0).await;
    let bob = controller.create_token("bob@hospital.org", 0).await;
    let used = controller.create_token("cy@hospital.org", 0).await;
    controller.try_enroll(&used).await.unwrap();

    let tokens = list(&controller, "").await;
    assert_eq!(tokens.len(), 3, "the used token is not listed: {tokens:?}");
    let text = format!("{tokens:?}");
    for secret in [&first, &second, &bob, &used] {
        assert!(!text.contains(&secret[5..20]), "a token's secret is listed");
    }
    assert!(
        tokens
            .iter()
            .all(|t| t.id.len() == 16 && t.created_by == "admin")
    );
    assert_eq!(list(&controller, "ann@hospital.org").await.len(), 2);

    // Withdraw ann's first token by its id: it enrolls nothing; her second still works.
    let first_id = first
        .parse::<ward_controller::core::EnrollmentToken>()
        .unwrap()
        .hash()
        .id();
    assert!(tokens.iter().any(|t| t.id == first_id));
    let revoked = controller
        .admin()
        .await
        .revoke_enrollment_tokens(RevokeEnrollmentTokensRequest {
            token_id: first_id.clone(),
            reason: "mailed to the wrong person".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .revoked;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].id, first_id);
    let err = controller.try_enroll(&first).await.unwrap_err();
    assert!(err.message().contains("withdrawn"), "{}", err.message());
    controller.try_enroll(&second).await.unwrap();

    // The same id again: nothing usable has it any more.
    let err = controller
        .admin()
        .await
        .revoke_enrollment_tokens(RevokeEnrollmentTokensRequest {
            token_id: first_id,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());

    // Per user: bob's token goes; a user with none is not an error.
    for (user, expect) in [("bob@hospital.org", 1), ("bob@hospital.org", 0)] {
        let revoked = controller
            .admin()
            .await
            .revoke_enrollment_tokens(RevokeEnrollmentTokensRequest {
                user: user.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .revoked;
        assert_eq!(revoked.len(), expect);
    }
    assert!(controller.try_enroll(&bob).await.is_err());
    assert!(list(&controller, "").await.is_empty());
}

#[tokio::test]
async fn withdrawing_tokens_is_refused_for_bad_input_and_for_roles_that_cannot_enroll() {
    let controller = TestController::start().await;
    let token = controller.create_token("dee@hospital.org", 0).await;
    let mut admin = controller.admin().await;
    for (req, says) in [
        (RevokeEnrollmentTokensRequest::default(), "either one token"),
        (
            RevokeEnrollmentTokensRequest {
                token_id: "0123456789abcdef".into(),
                user: "dee@hospital.org".into(),
                ..Default::default()
            },
            "not both",
        ),
        (
            RevokeEnrollmentTokensRequest {
                token_id: token.clone(),
                ..Default::default()
            },
            "not a token id",
        ),
    ] {
        let err = admin.revoke_enrollment_tokens(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(says), "{}", err.message());
        assert!(!err.message().contains(&token), "the secret is echoed");
    }
    let mut helpdesk = controller
        .admin_with_role("desk", AdminRole::Helpdesk)
        .await;
    let err = helpdesk
        .revoke_enrollment_tokens(RevokeEnrollmentTokensRequest {
            user: "dee@hospital.org".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    controller.try_enroll(&token).await.unwrap();
}

#[tokio::test]
async fn who_am_i_names_the_admin_and_exactly_what_its_role_may_do() {
    let controller = TestController::start().await;
    let me = controller
        .admin()
        .await
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.name, "admin");
    assert_eq!(me.role, AdminRole::Admin as i32);
    assert!(me.permissions.iter().any(|p| p == "full_wipe"));
    let desk = controller
        .admin_with_role("desk", AdminRole::Helpdesk)
        .await
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(desk.role, AdminRole::Helpdesk as i32);
    assert_eq!(desk.permissions, ["read", "lock", "disable"]);
}

#[test]
fn token_list_and_revoke_work_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&dir.path().join("data"));
    let created = controller.token("eve@hospital.org", "1h");
    let secret = created["token"].as_str().unwrap();
    let listed = controller.ctl(&["token", "list", "--output", "json"]);
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains(secret),
        "token list prints the secret"
    );
    let listed = json(&listed);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["user"], "eve@hospital.org");
    let id = listed[0]["id"].as_str().unwrap();
    let out = controller.ctl(&[
        "token", "revoke", id, "--reason", "test", "--output", "json",
    ]);
    assert_eq!(json(&out)[0]["id"], id);
    let again = controller.ctl(&["token", "revoke", id]);
    assert_eq!(again.status.code(), Some(3), "{}", stderr(&again));
    let neither = controller.ctl(&["token", "revoke"]);
    assert_eq!(neither.status.code(), Some(2), "{}", stderr(&neither));
    assert_eq!(
        json(&controller.ctl(&["token", "list", "--output", "json"])),
        serde_json::json!([])
    );
}
