//! The `policies` table and devices' compliance columns.

use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};

use super::{corrupt, db};
use crate::core::{
    Compliance, ComplianceCheck, DeviceId, Policy, PolicyScope, StoredPolicy, Timestamp,
};
use crate::store::StoreError;

fn from_row(row: &PgRow) -> Result<StoredPolicy, StoreError> {
    let scope: String = row.try_get("scope").map_err(db)?;
    let body: String = row.try_get("body").map_err(db)?;
    let revision: i64 = row.try_get("revision").map_err(db)?;
    Ok(StoredPolicy {
        scope: scope.parse().map_err(corrupt)?,
        policy: serde_json::from_str::<Policy>(&body)
            .map_err(|e| corrupt(format!("policy {scope}: {e}")))?,
        revision: u64::try_from(revision).map_err(|_| corrupt("negative policy revision"))?,
        updated_at: Timestamp::from_unix_ms(row.try_get("updated_at").map_err(db)?),
        updated_by: row.try_get("updated_by").map_err(db)?,
    })
}

pub async fn get(pool: &PgPool, scope: &PolicyScope) -> Result<Option<StoredPolicy>, StoreError> {
    sqlx::query("SELECT * FROM policies WHERE scope = $1")
        .bind(scope.to_string())
        .fetch_optional(pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(from_row)
        .transpose()
}

pub async fn put(
    pool: &PgPool,
    scope: &PolicyScope,
    policy: &Policy,
    updated_by: &str,
    now: Timestamp,
) -> Result<StoredPolicy, StoreError> {
    let body = serde_json::to_string(policy).map_err(|e| corrupt(e.to_string()))?;
    // The sequence gives every change a revision above all earlier ones, across replicas.
    let row = sqlx::query(
        "INSERT INTO policies (scope, body, revision, updated_at, updated_by)
         VALUES ($1, $2, nextval('policy_revisions'), $3, $4)
         ON CONFLICT (scope) DO UPDATE SET
             body = excluded.body,
             revision = nextval('policy_revisions'),
             updated_at = excluded.updated_at,
             updated_by = excluded.updated_by
         RETURNING *",
    )
    .bind(scope.to_string())
    .bind(body)
    .bind(now.unix_ms())
    .bind(updated_by)
    .fetch_one(pool)
    .await
    .map_err(db)?;
    from_row(&row)
}

pub async fn delete(pool: &PgPool, scope: &PolicyScope) -> Result<bool, StoreError> {
    let result = sqlx::query("DELETE FROM policies WHERE scope = $1")
        .bind(scope.to_string())
        .execute(pool)
        .await
        .map_err(db)?;
    Ok(result.rows_affected() == 1)
}

pub async fn record_compliance(
    pool: &PgPool,
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
    .execute(pool)
    .await
    .map_err(db)?;
    Ok(result.rows_affected() == 1)
}

/// The compliance columns of a `devices` row.
pub fn compliance_from_row(row: &PgRow) -> Result<Option<Compliance>, StoreError> {
    let Some(compliant) = row.try_get::<Option<bool>, _>("compliant").map_err(db)? else {
        return Ok(None);
    };
    let reasons: Option<String> = row.try_get("compliance_reasons").map_err(db)?;
    let checks: Option<String> = row.try_get("compliance_checks").map_err(db)?;
    let revision: Option<i64> = row.try_get("compliance_policy_revision").map_err(db)?;
    Ok(Some(Compliance {
        compliant,
        reasons: serde_json::from_str(reasons.as_deref().unwrap_or("[]"))
            .map_err(|e| corrupt(e.to_string()))?,
        checks: serde_json::from_str::<Vec<ComplianceCheck>>(checks.as_deref().unwrap_or("[]"))
            .map_err(|e| corrupt(e.to_string()))?,
        reported_at: Timestamp::from_unix_ms(
            row.try_get::<Option<i64>, _>("compliance_reported_at")
                .map_err(db)?
                .unwrap_or(0),
        ),
        policy_revision: revision.and_then(|r| u64::try_from(r).ok()).unwrap_or(0),
    }))
}
