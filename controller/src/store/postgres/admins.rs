//! Admins, their certificates and requests (SQL in [`crate::store::admins`]). Table locks make
//! the read-then-write steps serial across replicas: the last-admin check of a revocation, and
//! one open request per name. Both are rare administrative acts.

crate::store::admins::admin_operations!(
    sqlx::Postgres,
    Some("LOCK TABLE admins IN SHARE ROW EXCLUSIVE MODE"),
    Some("LOCK TABLE admin_requests IN SHARE ROW EXCLUSIVE MODE")
);
