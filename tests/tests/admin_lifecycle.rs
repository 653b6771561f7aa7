//! Admin identities over their life, against an in-process controller over real mutual TLS:
//! revocation (refused at the handshake and on every call, open connections cut, audited, never
//! the last active admin), renewal (a new certificate, the old one refused), and the list that
//! shows role, state, expiry, creator and approver.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::Channel;
use ward_certs::PrivateKeyDer;
use ward_e2e::inprocess::TestController;
use ward_proto::v1::admin_service_client::AdminServiceClient;
use ward_proto::v1::*;

const DEADLINE: Duration = Duration::from_secs(10);

/// An admin issued through the real call: its certificate, key and a client speaking as it.
struct Issued {
    certificate_der: Vec<u8>,
    key: PrivateKeyDer,
    client: AdminServiceClient<Channel>,
}

async fn issue(
    controller: &TestController,
    by: &mut AdminServiceClient<Channel>,
    name: &str,
    role: AdminRole,
) -> Issued {
    let key = PrivateKeyDer::generate().unwrap();
    let answer = by
        .issue_admin(IssueAdminRequest {
            name: name.into(),
            role: role as i32,
            csr_der: ward_certs::csr::make_csr(&key, name).unwrap(),
            lifetime_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.awaiting_approval);
    let client = controller.admin_as(&answer.certificate_der, &key).await;
    Issued {
        certificate_der: answer.certificate_der,
        key,
        client,
    }
}

fn revoke(name: &str, reason: &str) -> RevokeAdminRequest {
    RevokeAdminRequest {
        name: name.into(),
        reason: reason.into(),
    }
}

async fn listed(client: &mut AdminServiceClient<Channel>, name: &str) -> Admin {
    client
        .list_admins(ListAdminsRequest {})
        .await
        .unwrap()
        .into_inner()
        .admins
        .into_iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("{name} is not listed"))
}

/// A new connection with this certificate: refused at the handshake, never by a service.
async fn refused_at_the_handshake(
    controller: &TestController,
    certificate_der: &[u8],
    key: &PrivateKeyDer,
) {
    let tls = ward_certs::tls::client_config(
        controller.ca.cert_der(),
        Some((&[certificate_der.to_vec()], key)),
    )
    .unwrap();
    let outcome = match controller.channel(tls).await {
        Err(_) => None,
        Ok(channel) => Some(
            AdminServiceClient::new(channel)
                .list_devices(ListDevicesRequest::default())
                .await,
        ),
    };
    match outcome {
        None => {}
        Some(Ok(_)) => panic!("a revoked admin certificate was accepted"),
        Some(Err(status)) => assert!(
            !matches!(
                status.code(),
                Code::Unauthenticated | Code::PermissionDenied
            ),
            "refused by the service, not the handshake: {status:?}"
        ),
    }
}

#[tokio::test]
async fn a_revoked_admin_is_refused_at_the_handshake_and_on_every_call() {
    let controller = TestController::start().await;
    let mut admin = controller.admin().await;
    let mut alice = issue(&controller, &mut admin, "alice", AdminRole::Admin).await;
    alice
        .client
        .list_devices(ListDevicesRequest::default())
        .await
        .unwrap();
    assert_eq!(listed(&mut admin, "alice").await.state, "active");

    // Refused without a reason, by a role that may not, and for an unknown name; nothing changes.
    let err = admin.revoke_admin(revoke("alice", " ")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut desk = controller
        .admin_with_role("desk", AdminRole::Helpdesk)
        .await;
    let err = desk.revoke_admin(revoke("alice", "x")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = admin.revoke_admin(revoke("nobody", "x")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(listed(&mut admin, "alice").await.state, "active");

    let revoked = admin
        .revoke_admin(revoke("alice", "left the hospital"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            revoked.state.as_str(),
            revoked.revoked_by.as_str(),
            revoked.revoke_reason.as_str()
        ),
        ("revoked", "admin", "left the hospital")
    );
    assert_eq!(
        revoked.expires_at_unix_ms, 0,
        "no valid certificate is left"
    );

    // The connection alice already had: refused on its next call.
    let err = alice
        .client
        .list_devices(ListDevicesRequest::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.code(),
            Code::Unauthenticated | Code::Unavailable | Code::Unknown
        ),
        "{err:?}"
    );
    // A new connection: refused at the handshake.
    refused_at_the_handshake(&controller, &alice.certificate_der, &alice.key).await;

    // Revoking again changes nothing; the name is not given out again.
    let err = admin
        .revoke_admin(revoke("alice", "again"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let key = PrivateKeyDer::generate().unwrap();
    let err = admin
        .issue_admin(IssueAdminRequest {
            name: "alice".into(),
            role: AdminRole::Admin as i32,
            csr_der: ward_certs::csr::make_csr(&key, "alice").unwrap(),
            lifetime_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(err.message().contains("revoked"), "{}", err.message());

    // Audited, with the reason and the certificates.
    let entries = admin
        .list_audit(ListAuditRequest {
            target: "alice".into(),
            ..ListAuditRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let entry = entries
        .iter()
        .find(|e| e.action == "admin.revoke")
        .expect("no admin.revoke entry");
    assert_eq!(entry.actor, "ward://admin/admin");
    let details: serde_json::Value = serde_json::from_str(&entry.details_json).unwrap();
    assert_eq!(details["reason"], "left the hospital");
    assert_eq!(details["certificates"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_revoked_admins_open_connection_is_cut() {
    let controller = TestController::start().await;
    let mut admin = controller.admin().await;
    let alice = issue(&controller, &mut admin, "alice", AdminRole::Helpdesk).await;

    // A bare TLS session as alice: past the handshake, idle.
    let tls = ward_certs::tls::client_config(
        controller.ca.cert_der(),
        Some((std::slice::from_ref(&alice.certificate_der), &alice.key)),
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(controller.addr)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut session = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    session
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();

    let drained = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        loop {
            match session.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    admin
        .revoke_admin(revoke("alice", "laptop stolen"))
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, drained)
        .await
        .expect("the revoked admin's session was still open")
        .unwrap();
    // The audit entry counts the connections cut: this session and the client `issue` opened.
    let entries = admin
        .list_audit(ListAuditRequest {
            target: "alice".into(),
            ..ListAuditRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let entry = entries.iter().find(|e| e.action == "admin.revoke").unwrap();
    let details: serde_json::Value = serde_json::from_str(&entry.details_json).unwrap();
    assert_eq!(details["connections_cut"], 2, "{details}");
}

#[tokio::test]
async fn the_last_active_admin_cannot_be_revoked() {
    let controller = TestController::start().await;
    let mut admin = controller.admin().await;
    // A helpdesk and an expired admin do not count as someone left to manage Ward.
    controller
        .admin_with_role("desk", AdminRole::Helpdesk)
        .await;
    let key = PrivateKeyDer::generate().unwrap();
    admin
        .issue_admin(IssueAdminRequest {
            name: "temp".into(),
            role: AdminRole::Admin as i32,
            csr_der: ward_certs::csr::make_csr(&key, "temp").unwrap(),
            lifetime_seconds: 3600,
        })
        .await
        .unwrap();
    controller.clock.advance(Duration::from_secs(2 * 3600));

    // break-glass is another active admin: revoking the everyday admin would be allowed, and
    // revoking break-glass is (the everyday admin remains).
    admin
        .revoke_admin(revoke("break-glass", "rotated out of the safe"))
        .await
        .unwrap();
    let err = admin
        .revoke_admin(revoke("admin", "by accident"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("last active"), "{}", err.message());
    assert!(err.message().contains("admin issue"), "{}", err.message());
    assert_eq!(listed(&mut admin, "admin").await.state, "active");
    admin
        .list_devices(ListDevicesRequest::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_admins_revoking_each_other_at_once_leave_one() {
    for _ in 0..3 {
        let controller = TestController::start().await;
        let mut admin = controller.admin().await;
        let mut glass = controller.break_glass().await;
        let (a, b) = tokio::join!(
            admin.revoke_admin(revoke("break-glass", "race")),
            glass.revoke_admin(revoke("admin", "race")),
        );
        // The loser was refused as the last admin, or its connection was cut by the winner's
        // revocation before its answer came: either way, one of the two is left.
        let mut survivor = if a.is_ok() {
            controller.admin().await
        } else {
            controller.break_glass().await
        };
        let states: Vec<String> = survivor
            .list_admins(ListAdminsRequest {})
            .await
            .unwrap()
            .into_inner()
            .admins
            .into_iter()
            .map(|a| a.state)
            .collect();
        let expected = if a.is_ok() {
            ["active", "revoked"]
        } else {
            ["revoked", "active"]
        };
        assert_eq!(states, expected, "{a:?} {b:?}");
    }
}

#[tokio::test]
async fn renewal_gives_a_new_certificate_and_refuses_the_old() {
    let controller = TestController::start().await;
    let mut admin = controller.admin().await;
    let mut alice = issue(&controller, &mut admin, "alice", AdminRole::Helpdesk).await;
    let before = listed(&mut admin, "alice").await;

    // Alice renews her own (no role needed) with a new key, for longer.
    let key = PrivateKeyDer::generate().unwrap();
    let renewed = alice
        .client
        .renew_admin(RenewAdminRequest {
            name: "alice".into(),
            csr_der: ward_certs::csr::make_csr(&key, "alice").unwrap(),
            lifetime_seconds: 31 * 86_400,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!renewed.certificate_der.is_empty());
    let after = renewed.admin.unwrap();
    assert!(after.expires_at_unix_ms > before.expires_at_unix_ms);
    assert_eq!(after.certificate_by, "", "she renewed her own");

    let mut fresh = controller.admin_as(&renewed.certificate_der, &key).await;
    fresh
        .list_devices(ListDevicesRequest::default())
        .await
        .unwrap();
    refused_at_the_handshake(&controller, &alice.certificate_der, &alice.key).await;

    // A helpdesk may not renew someone else's identity.
    let key = PrivateKeyDer::generate().unwrap();
    let err = fresh
        .renew_admin(RenewAdminRequest {
            name: "admin".into(),
            csr_der: ward_certs::csr::make_csr(&key, "admin").unwrap(),
            lifetime_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // An admin may, and is recorded as having made its key; a revoked identity is not renewed.
    let renewed = admin
        .renew_admin(RenewAdminRequest {
            name: "alice".into(),
            csr_der: ward_certs::csr::make_csr(&key, "alice").unwrap(),
            lifetime_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renewed.admin.unwrap().certificate_by, "admin");
    admin.revoke_admin(revoke("alice", "left")).await.unwrap();
    let err = admin
        .renew_admin(RenewAdminRequest {
            name: "alice".into(),
            csr_der: ward_certs::csr::make_csr(&key, "alice").unwrap(),
            lifetime_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // The break-glass identity renews for two years by default.
    let renewed = admin
        .renew_admin(RenewAdminRequest {
            name: "break-glass".into(),
            csr_der: ward_certs::csr::make_csr(&key, "break-glass").unwrap(),
            lifetime_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .admin
        .unwrap();
    let days = (renewed.expires_at_unix_ms - renewed.created_at_unix_ms) / 86_400_000;
    assert!((729..=732).contains(&days), "{days} days");
}

#[tokio::test]
async fn the_list_shows_role_state_expiry_creator_and_approver() {
    let controller = TestController::start_with(|c| c.approval_threshold = Some(10)).await;
    let mut admin = controller.admin().await;
    let admins = admin
        .list_admins(ListAdminsRequest {})
        .await
        .unwrap()
        .into_inner()
        .admins;
    let names: Vec<_> = admins.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["admin", "break-glass"]);
    let day = 86_400_000;
    let everyday = &admins[0];
    let glass = &admins[1];
    assert_eq!(
        (everyday.created_by.as_str(), everyday.state.as_str()),
        ("init", "active")
    );
    assert!(!everyday.break_glass && glass.break_glass);
    // 30 days for the everyday admin, two years for break-glass.
    let lifetime = |a: &Admin| (a.expires_at_unix_ms - a.created_at_unix_ms + day / 2) / day;
    assert!(
        (30..=31).contains(&lifetime(everyday)),
        "{}",
        lifetime(everyday)
    );
    assert!(
        (730..=731).contains(&lifetime(glass)),
        "{}",
        lifetime(glass)
    );

    // A request shows among the requests until approved and used; then the approver shows.
    let key = PrivateKeyDer::generate().unwrap();
    let request = IssueAdminRequest {
        name: "carol".into(),
        role: AdminRole::Admin as i32,
        csr_der: ward_certs::csr::make_csr(&key, "carol").unwrap(),
        lifetime_seconds: 0,
    };
    assert!(
        admin
            .issue_admin(request.clone())
            .await
            .unwrap()
            .into_inner()
            .awaiting_approval
    );
    let listed_requests = admin
        .list_admins(ListAdminsRequest {})
        .await
        .unwrap()
        .into_inner()
        .requests;
    assert_eq!(listed_requests.len(), 1);
    assert_eq!(
        (
            listed_requests[0].name.as_str(),
            listed_requests[0].requested_by.as_str()
        ),
        ("carol", "admin")
    );
    controller
        .break_glass()
        .await
        .approve_admin(ApproveAdminRequest {
            name: "carol".into(),
        })
        .await
        .unwrap();
    admin.issue_admin(request).await.unwrap();
    let carol = listed(&mut admin, "carol").await;
    assert_eq!(
        (carol.created_by.as_str(), carol.approved_by.as_str()),
        ("admin", "break-glass")
    );
    let after = admin
        .list_admins(ListAdminsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(after.requests.is_empty(), "{:?}", after.requests);
}

#[tokio::test]
async fn an_admin_who_revokes_themselves_gets_the_answer_and_then_every_call_is_refused_and_audited()
 {
    let controller = TestController::start().await;
    let mut admin = controller.admin().await;
    let mut bob = issue(&controller, &mut admin, "bob", AdminRole::Admin).await;
    // The answer travels on bob's own connection, which is therefore not cut…
    let revoked = bob
        .client
        .revoke_admin(revoke("bob", "leaving today"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.state, "revoked");
    // …but refuses every further call.
    let err = bob
        .client
        .list_devices(ListDevicesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("revoked"), "{}", err.message());
    let denied = admin
        .list_audit(ListAuditRequest {
            actor: "ward://admin/bob".into(),
            ..ListAuditRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .filter(|e| e.action == "denied")
        .count();
    assert_eq!(denied, 1);
    refused_at_the_handshake(&controller, &bob.certificate_der, &bob.key).await;
}
