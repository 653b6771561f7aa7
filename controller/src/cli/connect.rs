//! Connecting `wardctl` to a controller with an admin bundle.

use tonic::transport::Channel;
use ward_proto::transport::{ChannelOptions, ServerUrl, connect};
use ward_proto::v1::admin_service_client::AdminServiceClient;

use super::ConnectArgs;
use super::error::CliError;
use crate::bundle::AdminBundle;
use crate::datadir::DataDir;

pub const DEFAULT_SERVER: &str = "https://localhost:7443";

/// The largest answer `wardctl` accepts from the (authenticated) controller: lists of a large
/// fleet's devices, or of 10,000 commands with receipts, are several MiB.
pub const ADMIN_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

pub async fn admin_client(args: &ConnectArgs) -> Result<AdminServiceClient<Channel>, CliError> {
    let data_dir = args.data_dir.as_ref().map(DataDir::new);
    let bundle_path = match (&args.admin_cert, &data_dir) {
        (Some(path), _) => path.clone(),
        (None, Some(dir)) => dir.admin_bundle(),
        (None, None) => {
            return Err(CliError::usage(
                "no admin credentials: pass --admin-cert FILE (or set WARD_ADMIN_CERT), or --data-dir DIR on the controller host",
            ));
        }
    };
    let server = match (&args.server, &data_dir) {
        (Some(url), _) => url.clone(),
        (None, Some(dir)) => dir
            .read_server_url()
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned()),
        (None, None) => DEFAULT_SERVER.to_owned(),
    };
    let url: ServerUrl = server
        .parse()
        .map_err(|e| CliError::usage(format!("{e}")))?;
    let bundle = AdminBundle::read(&bundle_path).map_err(|e| CliError::usage(e.to_string()))?;
    let tls = bundle.client_config().map_err(|e| {
        CliError::failed(format!(
            "the admin bundle {} is unusable: {e}",
            bundle_path.display()
        ))
    })?;
    let channel = connect(&url, tls, ChannelOptions::default()).await.map_err(|e| {
        let text = e.to_string();
        if text.contains("invalid peer certificate") {
            CliError::failed(format!(
                "{text}. The controller at {url} does not present a certificate from the CA in {}: is this admin bundle for this controller?",
                bundle_path.display()
            ))
        } else {
            CliError::failed(text)
        }
    })?;
    Ok(AdminServiceClient::new(channel).max_decoding_message_size(ADMIN_RESPONSE_BYTES))
}
