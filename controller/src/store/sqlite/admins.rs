//! Admins, their certificates and requests (SQL in [`crate::store::admins`]). Callers hold the
//! store's writer lock for every write, which serializes the read-then-write steps.

crate::store::admins::admin_operations!(sqlx::Sqlite, None, None);
