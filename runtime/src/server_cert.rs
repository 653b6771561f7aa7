//! The CAs and the server credentials a controller starts with, and the names it goes by.

use std::sync::Arc;

use ward_certs::PrivateKeyDer;
use ward_controller::ca_set::CaSet;
use ward_controller::datadir::{DataDir, server_hostnames};
use ward_core::{Clock, SystemClock};
use ward_store::Store;

use crate::error::ServeError;

/// What [`load`] found.
pub(crate) struct Loaded {
    pub cas: Arc<CaSet>,
    /// The server's chain (leaf, CA) and its key.
    pub chain: Vec<Vec<u8>>,
    pub key: PrivateKeyDer,
    /// Whether the key did not belong to the certificate and a new pair was just issued.
    pub repaired: bool,
    /// The names the server certificate should cover from now on; `None`: the ones it covers.
    pub wanted_names: Option<Vec<String>>,
    /// The first name: the controller's, in its URLs and syslog messages.
    pub controller_name: String,
}

/// Loads the CAs (as the rotation recorded in the store has them) and the server credentials,
/// and refuses a new host-name list that leaves out a name the certificate covers unless it
/// is in `drop_hostnames`.
pub(crate) async fn load(
    dir: &DataDir,
    store: &dyn Store,
    hostnames: &[String],
    drop_hostnames: &[String],
) -> Result<Loaded, ServeError> {
    let records = store.ca_records().await.map_err(ServeError::CaRecords)?;
    let cas = Arc::new(CaSet::load(dir, &records).map_err(ServeError::Cas)?);
    let (chain, key, repaired) = ward_controller::server_cert::load(
        dir,
        &cas.signing(),
        ward_certs::ca::SERVER_LIFETIME,
        SystemClock.now(),
    )?;
    let wanted_names = (!hostnames.is_empty()).then(|| server_hostnames(hostnames));
    let leaf = chain.first().map_or(&[][..], Vec::as_slice);
    if let Some(wanted) = &wanted_names {
        check_no_name_dropped(leaf, wanted, drop_hostnames)?;
    }
    let controller_name = wanted_names
        .as_ref()
        .and_then(|names| names.first().cloned())
        .or_else(|| ward_certs::validate::controller_name(leaf))
        .unwrap_or_else(|| "localhost".to_owned());
    Ok(Loaded {
        cas,
        chain,
        key,
        repaired: repaired.is_some(),
        wanted_names,
        controller_name,
    })
}

/// A new host-name list may not silently leave out a name the server certificate covers:
/// devices may reach the controller by it (their URL names it), and a certificate without it
/// fails their verification, which their offline timer counts as silence. Checked before
/// anything changes; a name in `allowed` is dropped deliberately.
fn check_no_name_dropped(
    leaf: &[u8],
    wanted: &[String],
    allowed: &[String],
) -> Result<(), ServeError> {
    let allowed: Vec<String> = allowed
        .iter()
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let names: Vec<String> = ward_certs::validate::server_names(leaf)
        .into_iter()
        .filter(|name| !wanted.contains(name) && !allowed.contains(name))
        .collect();
    if names.is_empty() {
        Ok(())
    } else {
        Err(ServeError::NamesDropped { names })
    }
}
