//! Hostile bytes on the wire: malformed protobuf on every service, enum values the protocol
//! does not define, duplicate and late results, and the HTTP/2 limits a connection lives
//! under (concurrent streams, keepalive). Each refusal leaves the store as it was and the
//! controller serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use ward_controller::core::DeviceId;
use ward_controller::store::Store;
use ward_e2e::eventually;
use ward_e2e::inprocess::TestController;
use ward_edge::grpc::MAX_CONCURRENT_STREAMS;
use ward_proto::v1::issue_command_request::Action;
use ward_proto::v1::*;

/// Sends and receives message bodies as raw bytes, so a test can put anything on the wire.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

async fn raw_call(channel: Channel, path: &'static str, body: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let uri_path = http::uri::PathAndQuery::from_static(path);
    match grpc.unary(tonic::Request::new(body), uri_path, Raw).await {
        Ok(_) => panic!("{path} accepted a malformed message"),
        Err(status) => status,
    }
}

/// Bodies no protobuf decoder accepts: a key that never ends, a length past the end, a string
/// that is not UTF-8 (or a message whose length prefix runs out), a cut-off varint, an
/// unterminated group, and a wire type that does not exist.
fn malformed_bodies() -> Vec<Vec<u8>> {
    vec![
        vec![0xff; 16],
        vec![0x0a, 0x05, b'a'],
        vec![0x0a, 0x02, 0xff, 0xfe],
        vec![0x08],
        vec![0x0b],
        vec![0x0f],
    ]
}

/// Refused as undecodable, or (where the bytes happen to decode, e.g. as a `bytes` field)
/// refused for what they say.
fn assert_decode_refusal(status: &tonic::Status, what: &str) {
    match status.code() {
        Code::Internal => assert!(
            status.message().contains("decode"),
            "{what}: the refusal says the message could not be decoded: {status:?}"
        ),
        Code::InvalidArgument => assert!(!status.message().is_empty(), "{what}"),
        _ => panic!("{what}: {status:?}"),
    }
}

async fn device_channel(
    controller: &TestController,
    cert: &[u8],
    key: &ward_certs::PrivateKeyDer,
) -> Channel {
    let tls =
        ward_certs::tls::client_config(controller.ca.cert_der(), Some((&[cert.to_vec()], key)))
            .unwrap();
    controller.channel(tls).await.unwrap()
}

async fn stored_device(controller: &TestController, id: &str) -> ward_controller::core::Device {
    let id: DeviceId = id.parse().unwrap();
    controller.store.get_device(id).await.unwrap().unwrap()
}

#[tokio::test]
async fn malformed_protobuf_is_refused_on_every_service_and_changes_nothing() {
    let controller = TestController::start().await;
    let device = controller.enroll("mal@hospital.org").await;
    let token = controller.create_token("late@hospital.org", 0).await;
    let before = stored_device(&controller, &device.device_id).await;
    let (pinned, _) = ward_certs::tls::pinned_client_config(controller.ca.hash()).unwrap();
    let enrollment = controller.channel(pinned).await.unwrap();
    let agent = device_channel(&controller, &device.certificate_der, &device.key).await;
    let admin = controller.admin_channel().await;

    let mut tried = 0;
    for body in malformed_bodies() {
        for (channel, path) in [
            (&enrollment, "/ward.v1.EnrollmentService/Enroll"),
            (&enrollment, "/ward.v1.EnrollmentService/ReportOfflineWipe"),
            (&agent, "/ward.v1.AgentService/CheckIn"),
            (&agent, "/ward.v1.AgentService/Acknowledge"),
            (&agent, "/ward.v1.AgentService/ReportResult"),
            (&agent, "/ward.v1.AgentService/Renew"),
            (&admin, "/ward.v1.AdminService/IssueCommand"),
            (&admin, "/ward.v1.AdminService/CreateEnrollmentToken"),
            (&admin, "/ward.v1.AdminService/OffboardUser"),
            (&admin, "/ward.v1.AdminService/SetPolicy"),
        ] {
            let status = raw_call(channel.clone(), path, body.clone()).await;
            assert_decode_refusal(&status, &format!("{path} with {body:02x?}"));
            tried += 1;
        }
    }
    assert_eq!(tried, 60);

    // Nothing stored changed: the device as it was, no command, the token still unspent.
    assert_eq!(stored_device(&controller, &device.device_id).await, before);
    assert!(
        controller
            .store
            .list_commands(None, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(controller.device_count().await, 1);
    controller.try_enroll(&token).await.unwrap();
    assert_eq!(controller.device_count().await, 2);
}

#[tokio::test]
async fn enum_values_the_protocol_does_not_define_are_refused_and_change_nothing() {
    let controller = TestController::start().await;
    let device = controller.enroll("enum@hospital.org").await;
    let mut admin = controller.admin().await;

    let err = admin
        .issue_command(IssueCommandRequest {
            device_id: device.device_id.clone(),
            action: Some(Action::Wipe(WipeAction { scope: 99 })),
            reason: "unknown scope".into(),
            idempotency_key: "enum-1".into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        controller
            .store
            .list_commands(None, None)
            .await
            .unwrap()
            .is_empty()
    );

    let err = admin
        .list_commands(ListCommandsRequest {
            state: 99,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let admins = controller.store.list_admins().await.unwrap().len();
    let key = ward_certs::PrivateKeyDer::generate().unwrap();
    let err = admin
        .issue_admin(IssueAdminRequest {
            name: "role99".into(),
            role: 99,
            csr_der: ward_certs::csr::make_csr(&key, "role99").unwrap(),
            lifetime_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(controller.store.list_admins().await.unwrap().len(), admins);

    let before = stored_device(&controller, &device.device_id).await;
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    let err = agent
        .check_in(CheckInRequest {
            facts: None,
            compliance: Some(ComplianceReport {
                policy_revision: 1,
                checks: vec![ComplianceCheck {
                    name: "disk_encryption".into(),
                    status: 99,
                    detail: "a status no agent sends".into(),
                }],
            }),
            offline_wipe: None,
            inventory: None,
            trusted_ca_hashes: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(stored_device(&controller, &device.device_id).await, before);
}

#[tokio::test]
async fn a_refused_check_in_changes_nothing_stored() {
    let controller = TestController::start().await;
    let device = controller.enroll("facts@hospital.org").await;
    let before = stored_device(&controller, &device.device_id).await;
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    let check = |name: &str| ComplianceCheck {
        name: name.into(),
        status: CheckStatus::Pass as i32,
        detail: String::new(),
    };
    let too_many = (0..65).map(|i| check(&format!("check_{i}"))).collect();
    let filesystem = |encryption: &str| ward_proto::v1::Filesystem {
        mount_point: "/".into(),
        fs_type: "ext4".into(),
        source: "/dev/vda1".into(),
        encryption: encryption.into(),
    };
    let bad_inventories = [
        ward_proto::v1::Inventory {
            cpu_model: "evil\u{1b}[2J".into(),
            ..Default::default()
        },
        ward_proto::v1::Inventory {
            filesystems: vec![filesystem("probably")],
            ..Default::default()
        },
        ward_proto::v1::Inventory {
            filesystems: (0..65).map(|_| filesystem("encrypted")).collect(),
            ..Default::default()
        },
        ward_proto::v1::Inventory {
            hardware_model: "m".repeat(257),
            ..Default::default()
        },
    ];
    let cases = [
        (too_many, None),
        (vec![check("disk\u{7}encryption")], None),
        (vec![check("")], None),
    ]
    .into_iter()
    .chain(
        bad_inventories
            .into_iter()
            .map(|inventory| (vec![check("firewall")], Some(inventory))),
    );
    for (checks, inventory) in cases {
        let err = agent
            .check_in(CheckInRequest {
                facts: Some(DeviceFacts {
                    hostname: "CHANGED-BY-A-REFUSED-CHECK-IN".into(),
                    ..Default::default()
                }),
                compliance: Some(ComplianceReport {
                    policy_revision: 1,
                    checks,
                }),
                offline_wipe: None,
                inventory,
                trusted_ca_hashes: Vec::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    assert_eq!(stored_device(&controller, &device.device_id).await, before);
}

#[tokio::test]
async fn duplicate_and_late_results_change_nothing_recorded() {
    let controller = TestController::start().await;
    let device = controller.enroll("dup@hospital.org").await;
    let command = controller
        .admin()
        .await
        .issue_command(IssueCommandRequest {
            device_id: device.device_id.clone(),
            action: Some(Action::Lock(LockAction {
                message: "call IT".into(),
            })),
            reason: "duplicate results".into(),
            idempotency_key: "dup-1".into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    let ack = |id: String| AcknowledgeRequest { command_id: id };
    assert!(
        agent
            .acknowledge(ack(command.id.clone()))
            .await
            .unwrap()
            .into_inner()
            .proceed
    );
    // A repeated acknowledgement (the agent lost our answer) still says go.
    assert!(
        agent
            .acknowledge(ack(command.id.clone()))
            .await
            .unwrap()
            .into_inner()
            .proceed
    );
    let done = agent
        .report_result(ReportResultRequest {
            command_id: command.id.clone(),
            succeeded: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.state(), CommandState::Succeeded);
    let recorded = controller.store.list_commands(None, None).await.unwrap();

    // A second, contradicting result is answered with what is recorded and changes nothing.
    let again = agent
        .report_result(ReportResultRequest {
            command_id: command.id.clone(),
            succeeded: false,
            failure_reason: "changed my mind".into(),
            receipt: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.state(), CommandState::Succeeded);
    // An acknowledgement after the end says stop.
    let late = agent
        .acknowledge(ack(command.id.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(!late.proceed);
    assert_eq!(late.state(), CommandState::Succeeded);
    assert_eq!(
        controller.store.list_commands(None, None).await.unwrap(),
        recorded
    );
}

#[tokio::test]
async fn each_connection_may_hold_only_the_advertised_number_of_streams() {
    let controller = TestController::start().await;
    let device = controller.enroll("streams@hospital.org").await;
    let tls = ward_certs::tls::client_config(
        controller.ca.cert_der(),
        Some((std::slice::from_ref(&device.certificate_der), &device.key)),
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(controller.addr)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    let driver = tokio::spawn(connection);
    // The limit arrives in the controller's SETTINGS (h2 assumes 100 before any, and
    // "unlimited" for a first SETTINGS frame without it).
    let expected = MAX_CONCURRENT_STREAMS as usize;
    eventually(
        "the controller to advertise its stream limit",
        Duration::from_secs(10),
        || {
            let current = send.current_max_send_streams();
            async move { (current == expected).then_some(()) }
        },
    )
    .await;
    driver.abort();
}

/// Frame types of HTTP/2 (RFC 9113 §6).
const PING: u8 = 0x6;

#[tokio::test]
async fn a_peer_that_stops_answering_is_dropped_by_keepalive() {
    let controller = TestController::start_with(|c| {
        c.keepalive_interval = Duration::from_secs(1);
        c.keepalive_timeout = Duration::from_secs(1);
    })
    .await;
    let tls = ward_certs::tls::client_config(controller.ca.cert_der(), None).unwrap();
    let tcp = tokio::net::TcpStream::connect(controller.addr)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    // A client that opens HTTP/2 and then goes silent, as a device does when its network
    // vanishes: the preface and an empty SETTINGS frame, then nothing, not even PING answers.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tls.write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]).await.unwrap();
    tls.flush().await.unwrap();

    let mut pings = 0;
    let read_all = async {
        let mut header = [0u8; 9];
        loop {
            if tls.read_exact(&mut header).await.is_err() {
                return; // closed by the controller
            }
            let length =
                usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            if header[3] == PING {
                pings += 1;
            }
            let mut payload = vec![0; length];
            if tls.read_exact(&mut payload).await.is_err() {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read_all)
        .await
        .expect("the controller closed the silent connection within 30 s");
    assert!(pings >= 1, "the controller pinged before it gave up");
    // And it goes on serving everyone else.
    controller.enroll("next@hospital.org").await;
}
