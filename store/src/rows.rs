//! Turning rows into domain records. Rows come through sqlx's `Any` driver from SQLite or
//! PostgreSQL alike; the one difference that shows here is booleans (SQLite keeps them as
//! integers), which [`Columns::opt_bool`] reads either way.

use std::str::FromStr;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};
use ward_certs::AdminName;

use super::StoreError;
use ward_core::admins::{AdminRequest, AdminRevocation};
use ward_core::audit::AuditEntry;
use ward_core::{
    Admin, AdminRole, CertificateRecord, Command, CommandKind, Compliance, ComplianceCheck, Device,
    DeviceFacts, DeviceId, DeviceState, OfflineWipe, PolicyBody, PolicyRule, Receipt, Timestamp,
    TokenHash, TokenRecord, WipeScope,
};

pub(crate) fn db(e: sqlx::Error) -> StoreError {
    // PostgreSQL gave up waiting for a row another transaction holds (a check-in lane of the
    // writer waits only briefly: see `writer`), or broke a deadlock: nothing of the statement's
    // transaction is kept, and the caller may try again.
    if let sqlx::Error::Database(d) = &e
        && matches!(
            d.code().as_deref(),
            Some(LOCK_NOT_AVAILABLE | DEADLOCK_DETECTED)
        )
    {
        return StoreError::Overloaded;
    }
    // A value the database returned that does not read as the type Ward wrote (text that is
    // not UTF-8, a number where text belongs: a hand edit of the database), whether found
    // while fetching the row or reading its column: the row is unreadable, the database
    // answered. A missing column is not among these: it is a schema or code fault that
    // every row shares. A column whose type was altered on PostgreSQL is (sqlx reports the
    // type mismatch the same way as SQLite's one edited value), so every row reads as
    // Corrupt there; a lane then splits its batches down to single requests, four runs at
    // a time (lane.rs), and every request fails with the row's error.
    if matches!(e, sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. }) {
        return StoreError::Corrupt(e.to_string());
    }
    StoreError::Database(e.to_string())
}

/// The row `query` finds, if any, turned into a record by `read` (one of this module's
/// readers).
pub(crate) async fn read_optional<'q, T>(
    conn: &mut AnyConnection,
    query: Query<'q, Any, AnyArguments<'q>>,
    read: impl FnOnce(&AnyRow) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    query
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .as_ref()
        .map(read)
        .transpose()
}

/// Every row `query` finds, in its order, each turned into a record by `read`.
pub(crate) async fn read_all<'q, T>(
    conn: &mut AnyConnection,
    query: Query<'q, Any, AnyArguments<'q>>,
    read: impl FnMut(&AnyRow) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    query
        .fetch_all(conn)
        .await
        .map_err(db)?
        .iter()
        .map(read)
        .collect()
}

/// PostgreSQL's SQLSTATE for `lock_timeout` reached.
const LOCK_NOT_AVAILABLE: &str = "55P03";
/// PostgreSQL's SQLSTATE for a transaction chosen to break a deadlock.
const DEADLOCK_DETECTED: &str = "40P01";

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// The column types Ward stores, read the same way from either database.
pub(crate) trait Columns {
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn opt_bool(&self, column: &str) -> Result<Option<bool>, StoreError>;
    fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError>;

    fn time(&self, column: &str) -> Result<Timestamp, StoreError> {
        Ok(Timestamp::from_unix_ms(self.int(column)?))
    }

    fn opt_time(&self, column: &str) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.opt_int(column)?.map(Timestamp::from_unix_ms))
    }

    /// A text column parsed into a domain type.
    fn parsed<T>(&self, column: &str) -> Result<T, StoreError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.text(column)?
            .parse()
            .map_err(|e| corrupt(format!("column {column}: {e}")))
    }
}

impl Columns for AnyRow {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.try_get(column).map_err(db)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.try_get(column).map_err(db)
    }
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.try_get(column).map_err(db)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        self.try_get(column).map_err(db)
    }
    fn opt_bool(&self, column: &str) -> Result<Option<bool>, StoreError> {
        // PostgreSQL has BOOLEAN; SQLite stores 0 or 1.
        match self.try_get::<Option<bool>, _>(column) {
            Ok(value) => Ok(value),
            Err(_) => Ok(self
                .try_get::<Option<i64>, _>(column)
                .map_err(db)?
                .map(|n| n != 0)),
        }
    }
    fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.try_get(column).map_err(db)
    }
}

pub(crate) fn token(row: &impl Columns) -> Result<TokenRecord, StoreError> {
    let hash: [u8; 32] = hex::decode(row.text("token_hash")?)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("token hash"))?;
    Ok(TokenRecord {
        hash: TokenHash(hash),
        user: row.parsed("user_email")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
        created_by: row.text("created_by")?,
        used_at: row.opt_time("used_at")?,
        device_id: row
            .opt_text("device_id")?
            .map(|s| s.parse::<DeviceId>().map_err(corrupt))
            .transpose()?,
        withdrawn_at: row.opt_time("withdrawn_at")?,
    })
}

pub(crate) fn device(row: &impl Columns) -> Result<Device, StoreError> {
    Ok(Device {
        id: row.parsed("id")?,
        user: row.parsed("user_email")?,
        state: row.parsed::<DeviceState>("state")?,
        facts: DeviceFacts {
            hostname: row.text("hostname")?,
            os_name: row.text("os_name")?,
            os_version: row.text("os_version")?,
            kernel_version: row.text("kernel_version")?,
            arch: row.text("arch")?,
            agent_version: row.text("agent_version")?,
        },
        enrolled_at: row.time("enrolled_at")?,
        last_seen: row.opt_time("last_seen")?,
        certificate_serial: row.text("certificate_serial")?,
        certificate_expires_at: row.time("certificate_expires_at")?,
        public_key_der: row.opt_bytes("public_key_der")?,
        compliance: compliance(row)?,
        offline_wipe: match row.opt_time("offline_wipe_at")? {
            None => None,
            Some(at) => Some(OfflineWipe {
                at,
                verified: row.opt_bool("offline_wipe_verified")?.unwrap_or(false),
            }),
        },
        inventory: json_column(row, "inventory")?,
        disabled: json_column(row, "disabled")?,
        enforcement: json_column(row, "enforcement")?.unwrap_or_default(),
        renewal_conflict: json_column(row, "renewal_conflict")?,
        trusted_cas: json_column(row, "trusted_cas")?.unwrap_or_default(),
    })
}

pub(crate) fn device_key(row: &impl Columns) -> Result<ward_core::DeviceKey, StoreError> {
    Ok(ward_core::DeviceKey {
        serial: row.text("serial")?,
        public_key_der: row
            .opt_bytes("public_key_der")?
            .ok_or_else(|| corrupt("device key without a public key"))?,
        issued_at: row.time("issued_at")?,
        in_use_at: row.opt_time("in_use_at")?,
        replaced_at: row.opt_time("replaced_at")?,
    })
}

/// A JSON text column; `None` when NULL.
fn json_column<T: serde::de::DeserializeOwned>(
    row: &impl Columns,
    column: &str,
) -> Result<Option<T>, StoreError> {
    row.opt_text(column)?
        .map(|text| {
            serde_json::from_str(&text).map_err(|e| corrupt(format!("column {column}: {e}")))
        })
        .transpose()
}

/// The compliance columns of a `devices` row; `None` until a report arrived.
fn compliance(row: &impl Columns) -> Result<Option<Compliance>, StoreError> {
    let Some(compliant) = row.opt_bool("compliant")? else {
        return Ok(None);
    };
    let reasons = row.opt_text("compliance_reasons")?;
    let checks = row.opt_text("compliance_checks")?;
    Ok(Some(Compliance {
        compliant,
        reasons: serde_json::from_str(reasons.as_deref().unwrap_or("[]")).map_err(corrupt)?,
        checks: serde_json::from_str::<Vec<ComplianceCheck>>(checks.as_deref().unwrap_or("[]"))
            .map_err(corrupt)?,
        reported_at: row
            .opt_time("compliance_reported_at")?
            .unwrap_or(Timestamp::from_unix_ms(0)),
        policy_revision: row
            .opt_int("compliance_policy_revision")?
            .and_then(|r| u64::try_from(r).ok())
            .unwrap_or(0),
    }))
}

/// An admin, from [`super::admins::SELECT_ADMINS`] (which adds `expires_at`, `not_before`).
pub(crate) fn admin(row: &impl Columns) -> Result<Admin, StoreError> {
    let revoked = match row.opt_time("revoked_at")? {
        None => None,
        Some(at) => Some(AdminRevocation {
            at,
            by: row.opt_text("revoked_by")?.unwrap_or_default(),
            reason: row.opt_text("revoke_reason")?.unwrap_or_default(),
        }),
    };
    Ok(Admin {
        name: row.parsed::<AdminName>("name")?,
        role: row.parsed::<AdminRole>("role")?,
        created_at: row.time("created_at")?,
        created_by: row.text("created_by")?,
        approved_by: row.opt_text("approved_by")?,
        certificate_by: row.opt_text("certificate_by")?,
        break_glass: row.opt_bool("break_glass")?.unwrap_or(false),
        revoked,
        expires_at: row.opt_time("expires_at")?,
        not_before: row.opt_time("not_before")?,
    })
}

pub(crate) fn admin_request(row: &impl Columns) -> Result<AdminRequest, StoreError> {
    Ok(AdminRequest {
        id: row.text("id")?,
        kind: row.parsed("kind")?,
        name: row.parsed::<AdminName>("name")?,
        role: row.parsed::<AdminRole>("role")?,
        requested_by: row.text("requested_by")?,
        requested_at: row.time("requested_at")?,
        expires_at: row.time("expires_at")?,
        approved_by: row.opt_text("approved_by")?,
        approved_at: row.opt_time("approved_at")?,
        used_at: row.opt_time("used_at")?,
    })
}

pub(crate) fn certificate(row: &impl Columns) -> Result<CertificateRecord, StoreError> {
    Ok(CertificateRecord {
        serial: row.text("serial")?,
        subject: row.text("subject")?,
        not_before: row.time("not_before")?,
        not_after: row.time("not_after")?,
        issued_at: row.time("issued_at")?,
        revoked_at: row.opt_time("revoked_at")?,
        der: row.opt_bytes("der")?,
    })
}

pub(crate) fn command(row: &impl Columns) -> Result<Command, StoreError> {
    let kind = match row.text("kind")?.as_str() {
        "lock" => CommandKind::Lock {
            message: row.opt_text("lock_message")?.unwrap_or_default(),
        },
        "unlock" => CommandKind::Unlock,
        "disable" => CommandKind::Disable,
        "enable" => CommandKind::Enable,
        "retire" => CommandKind::Retire,
        "wipe" => CommandKind::Wipe {
            scope: row.parsed::<WipeScope>("scope")?,
        },
        other => return Err(corrupt(format!("unknown command kind {other:?}"))),
    };
    let receipt = match row.opt_bytes("receipt_body")? {
        None => None,
        Some(body) => Some(Receipt {
            body,
            signature: row.opt_bytes("receipt_signature")?.unwrap_or_default(),
            verified: row.opt_bool("receipt_verified")?.unwrap_or(false),
            error: row.opt_text("receipt_error")?,
        }),
    };
    Ok(Command {
        id: row.parsed("id")?,
        device_id: row.parsed("device_id")?,
        kind,
        state: row.parsed("state")?,
        reason: row.text("reason")?,
        failure_reason: row.opt_text("failure_reason")?,
        idempotency_key: row.text("idempotency_key")?,
        created_by: row.text("created_by")?,
        created_at: row.time("created_at")?,
        deadline: row.opt_time("deadline")?,
        delivered_at: row.opt_time("delivered_at")?,
        acknowledged_at: row.opt_time("acknowledged_at")?,
        finished_at: row.opt_time("finished_at")?,
        deliveries: u32::try_from(row.int("deliveries")?).unwrap_or(u32::MAX),
        receipt,
        approved_by: row.opt_text("approved_by")?,
        revoke_after: row.opt_bool("revoke_after")?.unwrap_or(false),
    })
}

pub(crate) fn policy(row: &impl Columns) -> Result<PolicyRule, StoreError> {
    let scope = row.text("scope")?;
    Ok(PolicyRule {
        body: serde_json::from_str::<PolicyBody>(&row.text("body")?)
            .map_err(|e| corrupt(format!("policy {scope}: {e}")))?,
        scope: scope.parse().map_err(corrupt)?,
        revision: u64::try_from(row.int("revision")?)
            .map_err(|_| corrupt("negative policy revision"))?,
        updated_at: row.time("updated_at")?,
        updated_by: row.text("updated_by")?,
    })
}

pub(crate) fn audit_entry(row: &impl Columns) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: u64::try_from(row.int("seq")?).map_err(|_| corrupt("negative audit seq"))?,
        at: row.time("at")?,
        actor: row.text("actor")?,
        action: row.text("action")?,
        target: row.text("target")?,
        details: row.text("details")?,
        prev_hash: row.text("prev_hash")?,
        hash: row.text("hash")?,
    })
}
