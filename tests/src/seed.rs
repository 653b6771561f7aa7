//! Devices written straight into a store, for tests about what the controller does with many
//! of them (a 10,000-device offboarding), where enrolling each through the protocol would
//! cost a key pair, a CSR and a TLS handshake apiece. Each device is recorded exactly as a
//! redeemed enrollment records it (a token claimed, the device and its certificate), in a few
//! writer jobs; nothing of it is audited, as nothing of a real enrollment's protocol ran.

use std::sync::Arc;

use ward_controller::core::{
    CertificateRecord, Compliance, DeviceFacts, DeviceId, NewDevice, Timestamp, TokenHash,
    TokenRecord, UserEmail,
};
use ward_controller::store::tx::TokenClaim;
use ward_controller::store::{Priority, Store, StoreError};

/// Devices a job records: a few jobs, not one per device, and not one huge transaction.
const PER_JOB: usize = 2_000;

/// Records `count` active devices of `user`, named `<prefix>-NNNNN`; their ids, in order.
pub async fn seed_devices(
    store: Arc<dyn Store>,
    user: &str,
    prefix: &str,
    count: usize,
) -> Vec<DeviceId> {
    let user: UserEmail = user.parse().expect("a valid user");
    let now = Timestamp::from_unix_ms(time::OffsetDateTime::now_utc().unix_timestamp() * 1000);
    let devices: Vec<NewDevice> = (0..count)
        .map(|i| {
            let id = DeviceId::new_random();
            NewDevice {
                id,
                facts: DeviceFacts {
                    hostname: format!("{prefix}-{i:05}"),
                    os_name: "linux".into(),
                    ..DeviceFacts::default()
                },
                public_key_der: vec![1, 2, 3],
                certificate: CertificateRecord {
                    serial: format!("seed-{id}"),
                    subject: format!("ward://device/{id}"),
                    not_before: now,
                    not_after: Timestamp::from_unix_ms(now.unix_ms() + 86_400_000),
                    issued_at: now,
                    revoked_at: None,
                    der: None,
                },
            }
        })
        .collect();
    let ids = devices.iter().map(|d| d.id).collect();
    for chunk in devices.chunks(PER_JOB) {
        let (chunk, user) = (chunk.to_vec(), user.clone());
        store
            .write(Priority::High, move |tx| {
                let (chunk, user) = (chunk.clone(), user.clone());
                Box::pin(async move {
                    let mut hashes = Vec::with_capacity(chunk.len());
                    for device in &chunk {
                        let mut bytes = [0u8; 32];
                        bytes[..16].copy_from_slice(device.id.0.as_bytes());
                        let hash = TokenHash(bytes);
                        tx.insert_token(&TokenRecord {
                            hash,
                            user: user.clone(),
                            created_at: now,
                            expires_at: Timestamp::from_unix_ms(now.unix_ms() + 60_000),
                            created_by: "seed".into(),
                            used_at: None,
                            device_id: None,
                            withdrawn_at: None,
                        })
                        .await?;
                        hashes.push(hash);
                    }
                    let claims: Vec<TokenClaim<'_>> = hashes
                        .iter()
                        .zip(&chunk)
                        .map(|(hash, device)| TokenClaim { hash, device, now })
                        .collect();
                    let redeemed = tx.redeem_tokens(&claims).await?;
                    assert!(
                        redeemed.iter().all(Option::is_some),
                        "the seed tokens are claimed"
                    );
                    Ok::<_, StoreError>(())
                })
            })
            .await
            .expect("the devices are recorded");
    }
    ids
}

/// Records `compliance` as the device's last report.
pub async fn report_compliance(store: Arc<dyn Store>, device: DeviceId, compliance: Compliance) {
    store
        .write(Priority::High, move |tx| {
            let compliance = compliance.clone();
            Box::pin(async move { tx.record_compliance(device, &compliance).await })
        })
        .await
        .expect("the report is recorded");
}
