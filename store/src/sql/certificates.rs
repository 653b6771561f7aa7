//! The `certificates` table: what this controller issued, to whom, and what it revoked.

use sqlx::AnyConnection;

use super::placeholders::{self, Numbering, ROWS_PER_STATEMENT};

use crate::StoreError;
use crate::rows::{self, db, read_all, read_optional};
use ward_core::{CertificateRecord, Timestamp};

pub(super) async fn insert(
    conn: &mut AnyConnection,
    cert: &CertificateRecord,
) -> Result<(), StoreError> {
    insert_many(conn, &[cert]).await
}

/// Records `certs`, a few hundred a statement.
pub(super) async fn insert_many(
    conn: &mut AnyConnection,
    certs: &[&CertificateRecord],
) -> Result<(), StoreError> {
    let numbering = Numbering::of(conn);
    const COLUMNS: usize = 7;
    for chunk in certs.chunks(ROWS_PER_STATEMENT) {
        let statement = [
            "INSERT INTO certificates (serial, subject, not_before, not_after, issued_at,
                 revoked_at, der)
             VALUES ",
            &placeholders::tuples(numbering, chunk.len(), COLUMNS),
        ]
        .concat();
        let mut query = sqlx::query(&statement);
        for cert in chunk {
            query = query
                .bind(cert.serial.clone())
                .bind(cert.subject.clone())
                .bind(cert.not_before.unix_ms())
                .bind(cert.not_after.unix_ms())
                .bind(cert.issued_at.unix_ms())
                .bind(cert.revoked_at.map(Timestamp::unix_ms))
                .bind(cert.der.clone());
        }
        query.execute(&mut *conn).await.map_err(db)?;
    }
    Ok(())
}

pub(super) async fn get(
    conn: &mut AnyConnection,
    serial: &str,
) -> Result<Option<CertificateRecord>, StoreError> {
    let query = sqlx::query("SELECT * FROM certificates WHERE serial = $1").bind(serial);
    read_optional(conn, query, rows::certificate).await
}

/// Revokes every unrevoked certificate of `subject`; the serials it revoked.
pub(super) async fn revoke_subject(
    conn: &mut AnyConnection,
    subject: &str,
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    let revoked = revoke_subjects(conn, &[subject], now).await?;
    Ok(revoked.into_iter().map(|(_, serial)| serial).collect())
}

/// Revokes every unrevoked certificate of each of `subjects` (at most a statement's worth,
/// `placeholders::ROWS_PER_STATEMENT`), in one statement; each certificate revoked, as its
/// subject and serial.
pub(super) async fn revoke_subjects(
    conn: &mut AnyConnection,
    subjects: &[&str],
    now: Timestamp,
) -> Result<Vec<(String, String)>, StoreError> {
    let numbering = Numbering::of(conn);
    let statement = [
        "UPDATE certificates SET revoked_at = ",
        &placeholders::list(numbering, 1),
        " WHERE revoked_at IS NULL AND subject IN (",
        &placeholders::list_from(numbering, 2, subjects.len()),
        ") RETURNING subject, serial",
    ]
    .concat();
    let mut query = sqlx::query_as::<_, (String, String)>(&statement).bind(now.unix_ms());
    for subject in subjects {
        query = query.bind(*subject);
    }
    query.fetch_all(conn).await.map_err(db)
}

/// Certificates neither expired nor revoked.
pub(super) async fn live(
    conn: &mut AnyConnection,
    now: Timestamp,
) -> Result<Vec<CertificateRecord>, StoreError> {
    let query =
        sqlx::query("SELECT * FROM certificates WHERE revoked_at IS NULL AND not_after > $1")
            .bind(now.unix_ms());
    read_all(conn, query, rows::certificate).await
}

pub(super) async fn revoked_serials(
    conn: &mut AnyConnection,
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(
        "SELECT serial FROM certificates WHERE revoked_at IS NOT NULL AND not_after > $1",
    )
    .bind(now.unix_ms())
    .fetch_all(conn)
    .await
    .map_err(db)
}
