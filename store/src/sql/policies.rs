//! The `policies` table and devices' compliance columns.

use sqlx::AnyConnection;

use super::Backend;
use crate::StoreError;
use crate::rows::{self, corrupt, db, read_all, read_optional};
use ward_core::{Compliance, DeviceId, PolicyBody, PolicyRule, PolicyScope, Timestamp};

pub(super) async fn get(
    conn: &mut AnyConnection,
    scope: &PolicyScope,
) -> Result<Option<PolicyRule>, StoreError> {
    let query = sqlx::query("SELECT * FROM policies WHERE scope = $1").bind(scope.to_string());
    read_optional(conn, query, rows::policy).await
}

/// Stores the policy with a revision above every earlier one. How the next revision is found
/// is the one difference: SQLite computes it under its database-wide write lock, PostgreSQL
/// (several replicas writing at once) takes it from a sequence.
pub(super) async fn put(
    conn: &mut AnyConnection,
    backend: Backend,
    scope: &PolicyScope,
    body: &PolicyBody,
    updated_by: &str,
    now: Timestamp,
) -> Result<PolicyRule, StoreError> {
    let body = serde_json::to_string(body).map_err(|e| corrupt(e.to_string()))?;
    let sql = match backend {
        Backend::Sqlite => {
            "INSERT INTO policies (scope, body, revision, updated_at, updated_by)
             VALUES ($1, $2, (SELECT COALESCE(MAX(revision), 0) + 1 FROM policies), $3, $4)
             ON CONFLICT (scope) DO UPDATE SET
                 body = excluded.body,
                 revision = (SELECT COALESCE(MAX(revision), 0) + 1 FROM policies),
                 updated_at = excluded.updated_at,
                 updated_by = excluded.updated_by
             RETURNING *"
        }
        Backend::Postgres => {
            "INSERT INTO policies (scope, body, revision, updated_at, updated_by)
             VALUES ($1, $2, nextval('policy_revisions'), $3, $4)
             ON CONFLICT (scope) DO UPDATE SET
                 body = excluded.body,
                 revision = nextval('policy_revisions'),
                 updated_at = excluded.updated_at,
                 updated_by = excluded.updated_by
             RETURNING *"
        }
    };
    let row = sqlx::query(sql)
        .bind(scope.to_string())
        .bind(body)
        .bind(now.unix_ms())
        .bind(updated_by)
        .fetch_one(conn)
        .await
        .map_err(db)?;
    rows::policy(&row)
}

pub(super) async fn list(conn: &mut AnyConnection) -> Result<Vec<PolicyRule>, StoreError> {
    let query = sqlx::query("SELECT * FROM policies ORDER BY scope");
    read_all(conn, query, rows::policy).await
}

pub(super) async fn delete(
    conn: &mut AnyConnection,
    scope: &PolicyScope,
) -> Result<bool, StoreError> {
    let result = sqlx::query("DELETE FROM policies WHERE scope = $1")
        .bind(scope.to_string())
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn record_compliance(
    conn: &mut AnyConnection,
    device: DeviceId,
    c: &Compliance,
) -> Result<bool, StoreError> {
    let reasons = serde_json::to_string(&c.reasons).map_err(|e| corrupt(e.to_string()))?;
    let checks = serde_json::to_string(&c.checks).map_err(|e| corrupt(e.to_string()))?;
    let result = sqlx::query(
        "UPDATE devices SET compliant = $1, compliance_reasons = $2, compliance_checks = $3,
             compliance_reported_at = $4, compliance_policy_revision = $5
         WHERE id = $6",
    )
    .bind(c.compliant)
    .bind(reasons)
    .bind(checks)
    .bind(c.reported_at.unix_ms())
    .bind(i64::try_from(c.policy_revision).unwrap_or(i64::MAX))
    .bind(device.to_string())
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(result.rows_affected() == 1)
}
