//! The `device_keys` table: every certificate a device was issued and the key it certifies,
//! when it came into use and when a newer one replaced it.

use std::collections::{HashMap, HashSet};

use sqlx::AnyConnection;

use super::placeholders::{self, Numbering, ROWS_PER_STATEMENT};
use crate::StoreError;
use crate::rows::{self, Columns, db, read_all};
use ward_core::keys::{KeySwitch, RenewalConflict, other_parties, plan_switch};
use ward_core::{CertificateRecord, DeviceId, DeviceKey, Timestamp};

/// A key to record: `in_use_at` is set for an enrollment's (in use from the start), `None`
/// for a renewal's (pending until the device calls with it).
pub(super) struct NewKey<'a> {
    pub(super) device: DeviceId,
    pub(super) certificate: &'a CertificateRecord,
    pub(super) public_key_der: &'a [u8],
    pub(super) in_use_at: Option<Timestamp>,
}

/// Records `keys`, a few hundred a statement.
pub(super) async fn insert_many(
    conn: &mut AnyConnection,
    keys: &[NewKey<'_>],
) -> Result<(), StoreError> {
    let numbering = Numbering::of(conn);
    const COLUMNS: usize = 5;
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let statement = [
            "INSERT INTO device_keys (serial, device_id, public_key_der, issued_at, in_use_at)
             VALUES ",
            &placeholders::tuples(numbering, chunk.len(), COLUMNS),
        ]
        .concat();
        let mut query = sqlx::query(&statement);
        for key in chunk {
            query = query
                .bind(key.certificate.serial.clone())
                .bind(key.device.to_string())
                .bind(key.public_key_der.to_vec())
                .bind(key.certificate.issued_at.unix_ms())
                .bind(key.in_use_at.map(Timestamp::unix_ms));
        }
        query.execute(&mut *conn).await.map_err(db)?;
    }
    Ok(())
}

/// The device's keys, oldest first.
pub(super) async fn list(
    conn: &mut AnyConnection,
    device: DeviceId,
) -> Result<Vec<DeviceKey>, StoreError> {
    Ok(list_many(conn, &[device])
        .await?
        .remove(&device)
        .unwrap_or_default())
}

/// Each of `devices`' keys, oldest first, a few hundred devices a statement; a device with
/// none is left out.
pub(super) async fn list_many(
    conn: &mut AnyConnection,
    devices: &[DeviceId],
) -> Result<HashMap<DeviceId, Vec<DeviceKey>>, StoreError> {
    let numbering = Numbering::of(conn);
    // Each device once: named in two statements, its keys would come twice.
    let mut seen = HashSet::with_capacity(devices.len());
    let devices: Vec<DeviceId> = devices
        .iter()
        .copied()
        .filter(|d| seen.insert(*d))
        .collect();
    let mut keys: HashMap<DeviceId, Vec<DeviceKey>> = HashMap::with_capacity(devices.len());
    for chunk in devices.chunks(ROWS_PER_STATEMENT) {
        let statement = [
            "SELECT * FROM device_keys WHERE device_id IN (",
            &placeholders::list(numbering, chunk.len()),
            ") ORDER BY issued_at, serial",
        ]
        .concat();
        let mut query = sqlx::query(&statement);
        for device in chunk {
            query = query.bind(device.to_string());
        }
        let rows = read_all(conn, query, |row| {
            Ok((row.parsed::<DeviceId>("device_id")?, rows::device_key(row)?))
        })
        .await?;
        for (device, key) in rows {
            keys.entry(device).or_default().push(key);
        }
    }
    Ok(keys)
}

/// Makes the pending certificate `serial` the device's one: it is in use from `now`, the
/// device's record points at it and its key, and the previous certificate and every other
/// pending renewal are replaced and revoked. `None` when `serial` is not a pending renewal of
/// the device.
pub(super) async fn switch(
    conn: &mut AnyConnection,
    device: DeviceId,
    serial: &str,
    now: Timestamp,
) -> Result<Option<KeySwitch>, StoreError> {
    // The certificate the device is on now: the switch below only happens from it.
    let previous: Option<String> =
        sqlx::query_scalar("SELECT certificate_serial FROM devices WHERE id = $1")
            .bind(device.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
    let Some(previous) = previous else {
        return Ok(None);
    };
    let keys = list(conn, device).await?;
    let Some((chosen, others)) = plan_switch(&keys, serial) else {
        return Ok(None);
    };
    let Some(certificate) = super::certificates::get(conn, serial).await? else {
        return Err(StoreError::Corrupt(format!(
            "device key {serial} has no certificate record"
        )));
    };
    // First, and compare-and-set: of two first uses of different renewals committing at
    // once (two replicas on PostgreSQL at READ COMMITTED), the second waits for the first's
    // row lock, then finds the device on another certificate and changes nothing.
    let moved = sqlx::query(
        "UPDATE devices SET certificate_serial = $1, certificate_expires_at = $2,
             public_key_der = $3
         WHERE id = $4 AND certificate_serial = $5",
    )
    .bind(serial)
    .bind(certificate.not_after.unix_ms())
    .bind(chosen.public_key_der.clone())
    .bind(device.to_string())
    .bind(&previous)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    if moved.rows_affected() != 1 {
        return Ok(None);
    }
    sqlx::query("UPDATE device_keys SET in_use_at = $1 WHERE serial = $2")
        .bind(now.unix_ms())
        .bind(serial)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    // Everything else of this device that is not replaced yet: the previous certificate and
    // the other pending renewals.
    sqlx::query(
        "UPDATE device_keys SET replaced_at = $1
         WHERE device_id = $2 AND serial <> $3 AND replaced_at IS NULL",
    )
    .bind(now.unix_ms())
    .bind(device.to_string())
    .bind(serial)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    // Revoked in one statement, however many renewals were waiting.
    let mut revoked: Vec<String> = sqlx::query_scalar(
        "UPDATE certificates SET revoked_at = $1
         WHERE revoked_at IS NULL AND serial IN (
             SELECT serial FROM device_keys
             WHERE device_id = $2 AND serial <> $3 AND replaced_at = $1)
         RETURNING serial",
    )
    .bind(now.unix_ms())
    .bind(device.to_string())
    .bind(serial)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    revoked.sort();
    Ok(Some(KeySwitch {
        revoked,
        other_parties: other_parties(&chosen, &others),
    }))
}

/// The unexpired certificates of active devices that a renewal replaced.
pub(super) async fn replaced(
    conn: &mut AnyConnection,
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(
        "SELECT k.serial FROM device_keys k
         JOIN certificates c ON c.serial = k.serial
         JOIN devices d ON d.id = k.device_id
         WHERE k.replaced_at IS NOT NULL AND c.not_after > $1 AND d.state = 'active'",
    )
    .bind(now.unix_ms())
    .fetch_all(conn)
    .await
    .map_err(db)
}

/// Marks the device as a suspected clone; false if there is no such device.
pub(super) async fn flag_conflict(
    conn: &mut AnyConnection,
    device: DeviceId,
    conflict: &RenewalConflict,
) -> Result<bool, StoreError> {
    let json = serde_json::to_string(conflict)
        .map_err(|e| StoreError::Database(format!("cannot encode a renewal conflict: {e}")))?;
    let result = sqlx::query("UPDATE devices SET renewal_conflict = $1 WHERE id = $2")
        .bind(json)
        .bind(device.to_string())
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(result.rows_affected() == 1)
}
