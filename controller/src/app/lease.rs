//! Work one replica does at a time (streaming the audit log, delivering webhooks): it waits
//! for the store's lease of that name (PostgreSQL: an advisory lock held by a session of its
//! own; SQLite and memory: always granted, one process per store).

use std::future::Future;

use tracing::warn;

use crate::store::{Lease, Store};

/// Waits until this replica holds the lease `name`. Between tries it runs `idle`, which waits
/// (and may report what a replica without the lease sees).
pub(super) async fn acquire<F, Fut>(store: &dyn Store, name: &str, mut idle: F) -> Box<dyn Lease>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        match store.try_export_lease(name).await {
            Ok(Some(lease)) => return lease,
            Ok(None) => {}
            Err(e) => warn!(lease = name, error = %e, "cannot take the lease"),
        }
        idle().await;
    }
}
