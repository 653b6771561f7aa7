//! The `devices` table: enrollment, check-ins, lifecycle state, posture and offline wipes.

use std::collections::HashMap;

use sqlx::AnyConnection;

use super::device_keys::NewKey;
use super::placeholders::{self, Numbering, ROWS_PER_STATEMENT};
use super::{Backend, certificates, device_keys};
use crate::rows::{self, Columns, corrupt, db, read_all, read_optional};
use crate::tx::CheckInWrite;
use crate::{PostureField, StoreError};
use ward_core::{
    CertificateRecord, Device, DeviceBrief, DeviceId, DeviceState, NewDevice, OfflineWipe,
    Timestamp, UserEmail,
};

/// A device to record at enrollment: for its token's user, enrolled at its claim's time.
pub(super) struct Enrolled<'a> {
    pub(super) device: &'a NewDevice,
    pub(super) user: &'a UserEmail,
    pub(super) now: Timestamp,
}

/// Records each enrolled device, its certificate and its key (in use from the start), a few
/// hundred rows a statement.
pub(super) async fn insert_many(
    conn: &mut AnyConnection,
    enrolled: &[Enrolled<'_>],
) -> Result<(), StoreError> {
    let numbering = Numbering::of(conn);
    const COLUMNS: usize = 13;
    for chunk in enrolled.chunks(ROWS_PER_STATEMENT) {
        // last_seen starts NULL: the device has not checked in yet.
        let statement = [
            "INSERT INTO devices (id, user_email, state, hostname, os_name, os_version,
                 kernel_version, arch, agent_version, enrolled_at, certificate_serial,
                 certificate_expires_at, public_key_der)
             VALUES ",
            &placeholders::tuples(numbering, chunk.len(), COLUMNS),
        ]
        .concat();
        let mut query = sqlx::query(&statement);
        for Enrolled { device, user, now } in chunk {
            let facts = &device.facts;
            query = query
                .bind(device.id.to_string())
                .bind(user.as_str())
                .bind(DeviceState::Active.as_str())
                .bind(facts.hostname.clone())
                .bind(facts.os_name.clone())
                .bind(facts.os_version.clone())
                .bind(facts.kernel_version.clone())
                .bind(facts.arch.clone())
                .bind(facts.agent_version.clone())
                .bind(now.unix_ms())
                .bind(device.certificate.serial.clone())
                .bind(device.certificate.not_after.unix_ms())
                .bind(device.public_key_der.clone());
        }
        query.execute(&mut *conn).await.map_err(db)?;
    }
    let certificates: Vec<&CertificateRecord> =
        enrolled.iter().map(|e| &e.device.certificate).collect();
    certificates::insert_many(conn, &certificates).await?;
    let keys: Vec<NewKey<'_>> = enrolled
        .iter()
        .map(|e| NewKey {
            device: e.device.id,
            certificate: &e.device.certificate,
            public_key_der: &e.device.public_key_der,
            in_use_at: Some(e.now),
        })
        .collect();
    device_keys::insert_many(conn, &keys).await
}

pub(super) async fn get(
    conn: &mut AnyConnection,
    id: DeviceId,
) -> Result<Option<Device>, StoreError> {
    let query = sqlx::query("SELECT * FROM devices WHERE id = $1").bind(id.to_string());
    read_optional(conn, query, rows::device).await
}

/// [`get`], the row locked until the transaction ends where replicas write at once
/// (PostgreSQL, `FOR UPDATE`): a command another replica inserts for the device meanwhile
/// (its foreign key takes a share lock on the row) waits for this transaction, or this read
/// waits for that one to commit and then sees it. SQLite's one writer serializes them anyway.
///
/// The wait is bounded ([`LOCKED_READ_WAIT`]): the writer's lane waits on nothing else
/// meanwhile, and a row held longer (a replica stuck in the middle of its commit) fails the
/// read as [`StoreError::Overloaded`], for the caller to retry, instead of stalling the lane.
/// The transaction's own wait (`lane_wait`, PostgreSQL's `lock_timeout`) is set back after.
pub(super) async fn get_locked(
    conn: &mut AnyConnection,
    backend: Backend,
    id: DeviceId,
    lane_wait: &str,
) -> Result<Option<Device>, StoreError> {
    if backend == Backend::Sqlite {
        return get(conn, id).await;
    }
    set_lock_timeout(conn, LOCKED_READ_WAIT).await?;
    let query = sqlx::query("SELECT * FROM devices WHERE id = $1 FOR UPDATE").bind(id.to_string());
    let device = read_optional(conn, query, rows::device).await?;
    set_lock_timeout(conn, lane_wait).await?;
    Ok(device)
}

/// How long [`get_locked`] waits for the device's row on PostgreSQL.
const LOCKED_READ_WAIT: &str = "2s";

/// PostgreSQL's `lock_timeout` for the rest of this transaction.
async fn set_lock_timeout(conn: &mut AnyConnection, wait: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT set_config('lock_timeout', $1, true)")
        .bind(wait)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

pub(super) async fn list(
    conn: &mut AnyConnection,
    user: Option<&UserEmail>,
) -> Result<Vec<Device>, StoreError> {
    let query = sqlx::query(
        "SELECT * FROM devices WHERE ($1 IS NULL OR user_email = $1)
         ORDER BY user_email, enrolled_at, id",
    )
    .bind(user.map(|u| u.as_str().to_owned()));
    read_all(conn, query, rows::device).await
}

/// Each of `user`'s devices in brief, in the order [`list`] gives them.
pub(super) async fn briefs(
    conn: &mut AnyConnection,
    user: &UserEmail,
) -> Result<Vec<DeviceBrief>, StoreError> {
    let query = sqlx::query(
        "SELECT id, hostname, state FROM devices WHERE user_email = $1 ORDER BY enrolled_at, id",
    )
    .bind(user.as_str());
    read_all(conn, query, |row| {
        Ok(DeviceBrief {
            id: row.parsed("id")?,
            hostname: row.text("hostname")?,
            state: row.parsed::<DeviceState>("state")?,
        })
    })
    .await
}

/// Check-ins' writes, a few hundred devices a statement: for each active device of `writes`
/// (each device at most once), facts (the ones on record when `None`), last-seen and the
/// compliance report (the one on record when `None`). For each write, in order, the device as
/// written, or `None` when it is not enrolled or not active (nothing is written for it).
pub(super) async fn check_in_many(
    conn: &mut AnyConnection,
    writes: &[CheckInWrite<'_>],
) -> Result<Vec<Option<Device>>, StoreError> {
    let numbering = Numbering::of(conn);
    // The new values travel as a VALUES list, whose columns both databases name column1, …
    const COLUMNS: usize = 13;
    let mut written: HashMap<DeviceId, Device> = HashMap::with_capacity(writes.len());
    for chunk in writes.chunks(ROWS_PER_STATEMENT) {
        let statement = [
            "UPDATE devices SET hostname = COALESCE(v.column2, devices.hostname),
                 os_name = COALESCE(v.column3, devices.os_name),
                 os_version = COALESCE(v.column4, devices.os_version),
                 kernel_version = COALESCE(v.column5, devices.kernel_version),
                 arch = COALESCE(v.column6, devices.arch),
                 agent_version = COALESCE(v.column7, devices.agent_version),
                 last_seen = v.column8,
                 compliant = COALESCE(v.column9, devices.compliant),
                 compliance_reasons = COALESCE(v.column10, devices.compliance_reasons),
                 compliance_checks = COALESCE(v.column11, devices.compliance_checks),
                 compliance_reported_at = COALESCE(v.column12, devices.compliance_reported_at),
                 compliance_policy_revision =
                     COALESCE(v.column13, devices.compliance_policy_revision)
             FROM (VALUES ",
            &placeholders::tuples(numbering, chunk.len(), COLUMNS),
            ") AS v WHERE devices.id = v.column1 AND devices.state = ",
            &placeholders::list_from(numbering, chunk.len() * COLUMNS + 1, 1),
            // PostgreSQL returns v's columns too (column1, …), which no reader asks for.
            " RETURNING *",
        ]
        .concat();
        let mut query = sqlx::query(&statement);
        for write in chunk {
            let (facts, compliance) = (write.facts, write.compliance);
            let (reasons, checks) = match compliance {
                Some(c) => (
                    Some(serde_json::to_string(&c.reasons).map_err(|e| corrupt(e.to_string()))?),
                    Some(serde_json::to_string(&c.checks).map_err(|e| corrupt(e.to_string()))?),
                ),
                None => (None, None),
            };
            query = query
                .bind(write.id.to_string())
                .bind(facts.map(|f| f.hostname.clone()))
                .bind(facts.map(|f| f.os_name.clone()))
                .bind(facts.map(|f| f.os_version.clone()))
                .bind(facts.map(|f| f.kernel_version.clone()))
                .bind(facts.map(|f| f.arch.clone()))
                .bind(facts.map(|f| f.agent_version.clone()))
                .bind(write.now.unix_ms())
                .bind(compliance.map(|c| c.compliant))
                .bind(reasons)
                .bind(checks)
                .bind(compliance.map(|c| c.reported_at.unix_ms()))
                .bind(compliance.map(|c| i64::try_from(c.policy_revision).unwrap_or(i64::MAX)));
        }
        let query = query.bind(DeviceState::Active.as_str());
        for device in read_all(conn, query, rows::device).await? {
            written.insert(device.id, device);
        }
    }
    Ok(writes.iter().map(|w| written.remove(&w.id)).collect())
}

/// Revokes each of `devices` that exists (a retired one stays retired) and every unrevoked
/// certificate of each, a few hundred devices a statement; for each device found, the serials
/// newly revoked.
pub(super) async fn revoke_many(
    conn: &mut AnyConnection,
    devices: &[DeviceId],
    now: Timestamp,
) -> Result<HashMap<DeviceId, Vec<String>>, StoreError> {
    let numbering = Numbering::of(conn);
    // In one order on every replica (two revoking overlapping devices lock their rows in the
    // same order, so neither waits for the other), each device once.
    let mut devices = devices.to_vec();
    devices.sort_unstable();
    devices.dedup();
    let mut revoked: HashMap<DeviceId, Vec<String>> = HashMap::with_capacity(devices.len());
    for chunk in devices.chunks(ROWS_PER_STATEMENT) {
        let statement = [
            "UPDATE devices SET state = CASE WHEN state = 'retired' THEN state ELSE 'revoked' END
             WHERE id IN (",
            &placeholders::list(numbering, chunk.len()),
            ") RETURNING id",
        ]
        .concat();
        let mut query = sqlx::query_scalar::<_, String>(&statement);
        for device in chunk {
            query = query.bind(device.to_string());
        }
        let mut subjects: HashMap<String, DeviceId> = HashMap::with_capacity(chunk.len());
        for id in query.fetch_all(&mut *conn).await.map_err(db)? {
            let id: DeviceId = id.parse().map_err(corrupt)?;
            subjects.insert(ward_certs::Identity::Device(id.0).to_uri(), id);
            revoked.entry(id).or_default();
        }
        if subjects.is_empty() {
            continue;
        }
        let asked: Vec<&str> = subjects.keys().map(String::as_str).collect();
        for (subject, serial) in certificates::revoke_subjects(conn, &asked, now).await? {
            let device = subjects
                .get(&subject)
                .ok_or_else(|| corrupt("a revoked certificate's subject was not asked for"))?;
            revoked.entry(*device).or_default().push(serial);
        }
    }
    Ok(revoked)
}

/// Records a renewed certificate and the key it certifies, pending: the device's record
/// keeps its current certificate and key until the device calls with the new one
/// ([`device_keys::switch`]).
pub(super) async fn record_renewal(
    conn: &mut AnyConnection,
    device: DeviceId,
    certificate: &ward_core::CertificateRecord,
    public_key_der: &[u8],
) -> Result<(), StoreError> {
    certificates::insert(conn, certificate).await?;
    device_keys::insert_many(
        conn,
        &[NewKey {
            device,
            certificate,
            public_key_der,
            in_use_at: None,
        }],
    )
    .await
}

fn posture_update(field: PostureField) -> &'static str {
    match field {
        PostureField::Inventory => "UPDATE devices SET inventory = $1 WHERE id = $2",
        PostureField::Disabled => "UPDATE devices SET disabled = $1 WHERE id = $2",
        PostureField::Enforcement => "UPDATE devices SET enforcement = $1 WHERE id = $2",
        PostureField::TrustedCas => "UPDATE devices SET trusted_cas = $1 WHERE id = $2",
    }
}

fn posture_swap(field: PostureField) -> &'static str {
    match field {
        PostureField::Inventory => {
            "UPDATE devices SET inventory = $1 WHERE id = $2 AND inventory IS NOT DISTINCT FROM $3"
        }
        PostureField::Disabled => {
            "UPDATE devices SET disabled = $1 WHERE id = $2 AND disabled IS NOT DISTINCT FROM $3"
        }
        PostureField::Enforcement => {
            "UPDATE devices SET enforcement = $1 WHERE id = $2
             AND enforcement IS NOT DISTINCT FROM $3"
        }
        PostureField::TrustedCas => {
            "UPDATE devices SET trusted_cas = $1 WHERE id = $2
             AND trusted_cas IS NOT DISTINCT FROM $3"
        }
    }
}

pub(super) async fn set_posture(
    conn: &mut AnyConnection,
    device: DeviceId,
    field: PostureField,
    json: Option<&str>,
) -> Result<bool, StoreError> {
    let result = sqlx::query(posture_update(field))
        .bind(json.map(str::to_owned))
        .bind(device.to_string())
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn swap_posture(
    conn: &mut AnyConnection,
    device: DeviceId,
    field: PostureField,
    expected: Option<&str>,
    json: Option<&str>,
) -> Result<bool, StoreError> {
    let result = sqlx::query(posture_swap(field))
        .bind(json.map(str::to_owned))
        .bind(device.to_string())
        .bind(expected.map(str::to_owned))
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn set_state(
    conn: &mut AnyConnection,
    device: DeviceId,
    state: DeviceState,
) -> Result<bool, StoreError> {
    let result = sqlx::query("UPDATE devices SET state = $1 WHERE id = $2")
        .bind(state.as_str())
        .bind(device.to_string())
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn record_offline_wipe(
    conn: &mut AnyConnection,
    device: DeviceId,
    wipe: &OfflineWipe,
    receipt: &ward_certs::receipt::SignedReceipt,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE devices SET offline_wipe_at = $1, offline_wipe_verified = $2,
             offline_wipe_receipt = $3, offline_wipe_signature = $4
         WHERE id = $5",
    )
    .bind(wipe.at.unix_ms())
    .bind(wipe.verified)
    .bind(receipt.body.clone())
    .bind(receipt.signature.clone())
    .bind(device.to_string())
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(result.rows_affected() == 1)
}
