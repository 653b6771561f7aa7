//! The `commands` table.

use std::collections::{HashMap, HashSet};

use sqlx::AnyConnection;

use super::placeholders::{self, Numbering, ROWS_PER_STATEMENT};
use crate::StoreError;
use crate::rows::{self, corrupt, db, read_all, read_optional};
use ward_core::{
    Command, CommandId, CommandKind, CommandState, CommandVersion, DeviceId, Timestamp,
};

fn scope_of(kind: &CommandKind) -> Option<&'static str> {
    match kind {
        CommandKind::Wipe { scope } => Some(scope.as_str()),
        _ => None,
    }
}

fn message_of(kind: &CommandKind) -> Option<String> {
    match kind {
        CommandKind::Lock { message } => Some(message.clone()),
        _ => None,
    }
}

/// Inserts `c` unless a command with its idempotency key exists; returns the stored command
/// and whether it is the new one.
pub(super) async fn insert(
    conn: &mut AnyConnection,
    c: &Command,
) -> Result<(Command, bool), StoreError> {
    insert_many(conn, std::slice::from_ref(c))
        .await?
        .pop()
        .ok_or_else(|| corrupt("inserting one command answered none"))
}

/// Inserts each of `commands` unless a command with its idempotency key exists (stored
/// before, or earlier in `commands`), a few hundred rows a statement; for each, in order, the
/// stored command and whether it is the one inserted.
pub(super) async fn insert_many(
    conn: &mut AnyConnection,
    commands: &[Command],
) -> Result<Vec<(Command, bool)>, StoreError> {
    let numbering = Numbering::of(conn);
    const COLUMNS: usize = 12;
    let mut inserted: HashMap<CommandId, Command> = HashMap::with_capacity(commands.len());
    for chunk in commands.chunks(ROWS_PER_STATEMENT) {
        // The other columns start at their defaults (NULL, no deliveries), as in `insert`.
        let statement = [
            "INSERT INTO commands (id, device_id, kind, scope, lock_message, state, reason,
                 idempotency_key, created_by, created_at, deadline, revoke_after)
             VALUES ",
            &placeholders::tuples(numbering, chunk.len(), COLUMNS),
            " ON CONFLICT (idempotency_key) DO NOTHING",
        ]
        .concat();
        let mut query = sqlx::query(&statement);
        for c in chunk {
            query = query
                .bind(c.id.to_string())
                .bind(c.device_id.to_string())
                .bind(c.kind.name())
                .bind(scope_of(&c.kind))
                .bind(message_of(&c.kind))
                .bind(c.state.as_str())
                .bind(c.reason.clone())
                .bind(c.idempotency_key.clone())
                .bind(c.created_by.clone())
                .bind(c.created_at.unix_ms())
                .bind(c.deadline.map(Timestamp::unix_ms))
                .bind(c.revoke_after);
        }
        let written = query.execute(&mut *conn).await.map_err(db)?;
        // Every row went in (an offboarding's, a bulk wipe's): they are as asked, and
        // reading them back would cost as much again. Otherwise a key was taken: the rows
        // that bear this chunk's ids are the ones that went in.
        if usize::try_from(written.rows_affected()).is_ok_and(|n| n == chunk.len()) {
            inserted.extend(chunk.iter().map(|c| (c.id, c.as_inserted())));
            continue;
        }
        let ids: HashSet<CommandId> = chunk.iter().map(|c| c.id).collect();
        let keys: Vec<&str> = chunk.iter().map(|c| c.idempotency_key.as_str()).collect();
        for command in read_in(conn, numbering, BY_KEY, &keys).await? {
            if ids.contains(&command.id) {
                inserted.insert(command.id, command);
            }
        }
    }
    // The ones a key already named: one read for many.
    let taken: Vec<&str> = commands
        .iter()
        .filter(|c| !inserted.contains_key(&c.id))
        .map(|c| c.idempotency_key.as_str())
        .collect();
    // The same command twice in `commands`: the second finds the first.
    let mut answered: HashSet<CommandId> = HashSet::with_capacity(inserted.len());
    let mut stored: HashMap<String, Command> = HashMap::with_capacity(taken.len());
    for chunk in taken.chunks(ROWS_PER_STATEMENT) {
        for command in read_in(conn, numbering, BY_KEY, chunk).await? {
            stored.insert(command.idempotency_key.clone(), command);
        }
    }
    commands
        .iter()
        .map(|c| match inserted.get(&c.id) {
            Some(new) => Ok((new.clone(), answered.insert(c.id))),
            None => stored
                .get(&c.idempotency_key)
                .map(|found| (found.clone(), false))
                .ok_or_else(|| {
                    corrupt("a command's idempotency key conflicts, but no command has it")
                }),
        })
        .collect()
}

/// Reads commands by idempotency key ([`read_in`]).
const BY_KEY: &str = "SELECT * FROM commands WHERE idempotency_key IN (";
/// Reads commands by id ([`read_in`]).
const BY_ID: &str = "SELECT * FROM commands WHERE id IN (";

/// The commands `select` ([`BY_KEY`] or [`BY_ID`]) finds for `values` (at most
/// [`ROWS_PER_STATEMENT`]), in one statement.
async fn read_in(
    conn: &mut AnyConnection,
    numbering: Numbering,
    select: &'static str,
    values: &[&str],
) -> Result<Vec<Command>, StoreError> {
    let statement = [select, &placeholders::list(numbering, values.len()), ")"].concat();
    let mut query = sqlx::query(&statement);
    for value in values {
        query = query.bind(*value);
    }
    read_all(conn, query, rows::command).await
}

pub(super) async fn get(
    conn: &mut AnyConnection,
    id: CommandId,
) -> Result<Option<Command>, StoreError> {
    let query = sqlx::query("SELECT * FROM commands WHERE id = $1").bind(id.to_string());
    read_optional(conn, query, rows::command).await
}

pub(super) async fn by_key(
    conn: &mut AnyConnection,
    key: &str,
) -> Result<Option<Command>, StoreError> {
    let query = sqlx::query("SELECT * FROM commands WHERE idempotency_key = $1").bind(key);
    read_optional(conn, query, rows::command).await
}

pub(super) async fn list(
    conn: &mut AnyConnection,
    device: Option<DeviceId>,
    state: Option<CommandState>,
) -> Result<Vec<Command>, StoreError> {
    let query = sqlx::query(
        "SELECT * FROM commands
         WHERE ($1 IS NULL OR device_id = $1) AND ($2 IS NULL OR state = $2)
         ORDER BY created_at DESC, id",
    )
    .bind(device.map(|d| d.to_string()))
    .bind(state.map(CommandState::as_str));
    read_all(conn, query, rows::command).await
}

/// The wipes and retirements that succeeded, for one device or all (the index on
/// `(device_id, state)` finds one device's).
pub(super) async fn succeeded_wipes(
    conn: &mut AnyConnection,
    device: Option<DeviceId>,
) -> Result<Vec<Command>, StoreError> {
    let query = sqlx::query(
        "SELECT * FROM commands
         WHERE ($1 IS NULL OR device_id = $1) AND state = 'succeeded'
           AND kind IN ('wipe', 'retire')
         ORDER BY created_at DESC, id",
    )
    .bind(device.map(|d| d.to_string()));
    read_all(conn, query, rows::command).await
}

/// Queued commands whose deadline (time-to-live) has passed by `now`: only those carry one.
pub(super) async fn past_deadline(
    conn: &mut AnyConnection,
    now: Timestamp,
) -> Result<Vec<Command>, StoreError> {
    let query = sqlx::query(
        "SELECT * FROM commands WHERE state = 'queued' AND deadline IS NOT NULL AND deadline <= $1
         ORDER BY deadline, id",
    )
    .bind(now.unix_ms());
    read_all(conn, query, rows::command).await
}

/// Commands whose idempotency key starts with `prefix` (every command of one bulk action).
pub(super) async fn by_key_prefix(
    conn: &mut AnyConnection,
    prefix: &str,
) -> Result<Vec<Command>, StoreError> {
    let query = sqlx::query(
        "SELECT * FROM commands WHERE substr(idempotency_key, 1, length($1)) = $1
         ORDER BY created_at, id",
    )
    .bind(prefix);
    read_all(conn, query, rows::command).await
}

/// The unfinished commands of each of `devices`, oldest first, a few hundred devices a
/// statement; a device with none is left out.
pub(super) async fn unfinished_of(
    conn: &mut AnyConnection,
    devices: &[DeviceId],
) -> Result<HashMap<DeviceId, Vec<Command>>, StoreError> {
    let numbering = Numbering::of(conn);
    let mut unfinished: HashMap<DeviceId, Vec<Command>> = HashMap::new();
    for chunk in devices.chunks(ROWS_PER_STATEMENT) {
        let statement = [
            "SELECT * FROM commands
             WHERE state IN ('queued', 'delivered', 'acknowledged') AND device_id IN (",
            &placeholders::list(numbering, chunk.len()),
            ") ORDER BY created_at, id",
        ]
        .concat();
        let mut query = sqlx::query(&statement);
        for device in chunk {
            query = query.bind(device.to_string());
        }
        for command in read_all(conn, query, rows::command).await? {
            unfinished
                .entry(command.device_id)
                .or_default()
                .push(command);
        }
    }
    Ok(unfinished)
}

/// The device's unfinished commands, oldest first.
pub(super) async fn unfinished(
    conn: &mut AnyConnection,
    device: DeviceId,
) -> Result<Vec<Command>, StoreError> {
    let mut unfinished = unfinished_of(conn, &[device]).await?;
    Ok(unfinished.remove(&device).unwrap_or_default())
}

/// Writes `c` if the stored command still has version `expected` (compare-and-set on its
/// state and delivery count, the count compared as `rows::command` reads it: one out of
/// `u32`'s range, which only a hand edit writes, as `u32::MAX`, or the command could never
/// change again) and is still `c`'s instruction: its device, kind, wipe scope and lock
/// message, the last two compared as `rows::command` reads them, only for the kind that has
/// them ([`Command::is_same_instruction`]). On PostgreSQL (read committed) an update that
/// waited for another transaction's write to the row compares with what that one committed.
pub(super) async fn update(
    conn: &mut AnyConnection,
    expected: CommandVersion,
    c: &Command,
) -> Result<bool, StoreError> {
    let receipt = c.receipt.as_ref();
    let result = sqlx::query(
        "UPDATE commands SET state = $1, failure_reason = $2, delivered_at = $3,
             acknowledged_at = $4, finished_at = $5, deliveries = $6, receipt_body = $7,
             receipt_signature = $8, receipt_verified = $9, receipt_error = $10, approved_by = $11
         WHERE id = $12 AND state = $13
           AND (CASE WHEN deliveries BETWEEN 0 AND 4294967295 THEN deliveries
                ELSE 4294967295 END) = $14
           AND device_id = $15 AND kind = $16 AND (kind <> 'wipe' OR scope = $17)
           AND (kind <> 'lock' OR COALESCE(lock_message, '') = $18)",
    )
    .bind(c.state.as_str())
    .bind(&c.failure_reason)
    .bind(c.delivered_at.map(Timestamp::unix_ms))
    .bind(c.acknowledged_at.map(Timestamp::unix_ms))
    .bind(c.finished_at.map(Timestamp::unix_ms))
    .bind(i64::from(c.deliveries))
    .bind(receipt.map(|r| r.body.clone()))
    .bind(receipt.map(|r| r.signature.clone()))
    .bind(receipt.map(|r| r.verified))
    .bind(receipt.and_then(|r| r.error.clone()))
    .bind(&c.approved_by)
    .bind(c.id.to_string())
    .bind(expected.state.as_str())
    .bind(i64::from(expected.deliveries))
    .bind(c.device_id.to_string())
    .bind(c.kind.name())
    .bind(scope_of(&c.kind))
    .bind(message_of(&c.kind))
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(result.rows_affected() == 1)
}

/// The commands among `ids` that exist, in no particular order.
pub(super) async fn get_many(
    conn: &mut AnyConnection,
    ids: &[CommandId],
) -> Result<Vec<Command>, StoreError> {
    let numbering = Numbering::of(conn);
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let ids: Vec<String> = chunk.iter().map(CommandId::to_string).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        found.extend(read_in(conn, numbering, BY_ID, &ids).await?);
    }
    Ok(found)
}

/// Writes each `next` whose stored command still has its `expected` version and is still
/// `next`'s instruction (a compare-and-set per row, as [`update`]), a few hundred rows a
/// statement; the ids written.
pub(super) async fn update_many(
    conn: &mut AnyConnection,
    changes: &[(CommandVersion, Command)],
) -> Result<Vec<CommandId>, StoreError> {
    let numbering = Numbering::of(conn);
    // One statement for many rows: the new values travel as a VALUES list, whose columns both
    // databases name column1, column2, …
    const COLUMNS: usize = 18;
    let mut written = Vec::with_capacity(changes.len());
    for chunk in changes.chunks(ROWS_PER_STATEMENT) {
        let statement = [
            "UPDATE commands SET state = v.column3, failure_reason = v.column4,
                 delivered_at = v.column5, acknowledged_at = v.column6,
                 finished_at = v.column7, deliveries = v.column8, receipt_body = v.column9,
                 receipt_signature = v.column10, receipt_verified = v.column11,
                 receipt_error = v.column12, approved_by = v.column13
             FROM (VALUES ",
            &placeholders::tuples(numbering, chunk.len(), COLUMNS),
            ") AS v
             WHERE commands.id = v.column1 AND commands.state = v.column2
               AND (CASE WHEN commands.deliveries BETWEEN 0 AND 4294967295
                    THEN commands.deliveries ELSE 4294967295 END) = v.column14
               AND commands.device_id = v.column15 AND commands.kind = v.column16
               AND (commands.kind <> 'wipe' OR commands.scope = v.column17)
               AND (commands.kind <> 'lock'
                    OR COALESCE(commands.lock_message, '') = v.column18)
             RETURNING id",
        ]
        .concat();
        let mut query = sqlx::query_scalar::<_, String>(&statement);
        for (expected, c) in chunk {
            let receipt = c.receipt.as_ref();
            query = query
                .bind(c.id.to_string())
                .bind(expected.state.as_str())
                .bind(c.state.as_str())
                .bind(c.failure_reason.clone())
                .bind(c.delivered_at.map(Timestamp::unix_ms))
                .bind(c.acknowledged_at.map(Timestamp::unix_ms))
                .bind(c.finished_at.map(Timestamp::unix_ms))
                .bind(i64::from(c.deliveries))
                .bind(receipt.map(|r| r.body.clone()))
                .bind(receipt.map(|r| r.signature.clone()))
                .bind(receipt.map(|r| r.verified))
                .bind(receipt.and_then(|r| r.error.clone()))
                .bind(c.approved_by.clone())
                .bind(i64::from(expected.deliveries))
                .bind(c.device_id.to_string())
                .bind(c.kind.name())
                .bind(scope_of(&c.kind))
                .bind(message_of(&c.kind));
        }
        for id in query.fetch_all(&mut *conn).await.map_err(db)? {
            written.push(id.parse().map_err(corrupt)?);
        }
    }
    Ok(written)
}

pub(super) async fn count_by_state(
    conn: &mut AnyConnection,
) -> Result<Vec<(CommandState, u64)>, StoreError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM commands GROUP BY state")
            .fetch_all(conn)
            .await
            .map_err(db)?;
    rows.into_iter()
        .map(|(state, n)| {
            Ok((
                state.parse().map_err(corrupt)?,
                u64::try_from(n).unwrap_or(0),
            ))
        })
        .collect()
}
