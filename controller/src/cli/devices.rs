//! `wardctl device …`

use clap::Subcommand;
use serde::Serialize;
use ward_proto::v1::{self, GetDeviceRequest, ListDevicesRequest};

use super::ConnectArgs;
use super::connect::admin_client;
use super::error::CliError;
use super::output::{OutputFormat, print_fields, print_json, table};
use crate::core::Timestamp;

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// List enrolled devices
    List {
        /// Only this user's devices
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show one device
    Show {
        /// Device id (a UUID, as `device list` shows)
        device: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// One device, as scripts see it. `compliant` is null until the device has sent a compliance
/// report (compliance reporting is not part of this release).
#[derive(Serialize)]
struct DeviceView {
    id: String,
    user: String,
    hostname: String,
    os: String,
    last_seen: Option<String>,
    compliant: Option<bool>,
    state: &'static str,
    os_name: String,
    os_version: String,
    kernel_version: String,
    arch: String,
    agent_version: String,
    enrolled_at: String,
    certificate_serial: String,
    certificate_expires_at: String,
}

fn optional_time(ms: i64) -> Option<String> {
    (ms != 0).then(|| Timestamp::from_unix_ms(ms).rfc3339())
}

impl From<v1::Device> for DeviceView {
    fn from(d: v1::Device) -> Self {
        let facts = d.facts.unwrap_or_default();
        let os = match (facts.os_name.is_empty(), facts.os_version.is_empty()) {
            (true, _) => String::new(),
            (false, true) => facts.os_name.clone(),
            (false, false) => format!("{} {}", facts.os_name, facts.os_version),
        };
        Self {
            state: match v1::DeviceState::try_from(d.state) {
                Ok(v1::DeviceState::Active) => "active",
                _ => "unknown",
            },
            id: d.id,
            user: d.user,
            hostname: facts.hostname,
            os,
            last_seen: optional_time(d.last_seen_unix_ms),
            compliant: None,
            os_name: facts.os_name,
            os_version: facts.os_version,
            kernel_version: facts.kernel_version,
            arch: facts.arch,
            agent_version: facts.agent_version,
            enrolled_at: Timestamp::from_unix_ms(d.enrolled_at_unix_ms).rfc3339(),
            certificate_serial: d.certificate_serial,
            certificate_expires_at: Timestamp::from_unix_ms(d.certificate_expires_at_unix_ms)
                .rfc3339(),
        }
    }
}

fn or_dash(value: &str) -> String {
    if value.is_empty() {
        "-".into()
    } else {
        value.to_owned()
    }
}

pub async fn run(cmd: DeviceCommand, output: OutputFormat) -> Result<(), CliError> {
    match cmd {
        DeviceCommand::List { user, connect } => {
            let mut client = admin_client(&connect).await?;
            let devices: Vec<DeviceView> = client
                .list_devices(ListDevicesRequest {
                    user: user.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .devices
                .into_iter()
                .map(DeviceView::from)
                .collect();
            match output {
                OutputFormat::Json => print_json(&devices),
                OutputFormat::Table => {
                    if devices.is_empty() {
                        eprintln!(
                            "No devices enrolled. Create an enrollment token with `wardctl token create --user EMAIL`."
                        );
                        return Ok(());
                    }
                    let mut t = table(&[
                        "id",
                        "user",
                        "hostname",
                        "os",
                        "last seen",
                        "compliant",
                        "state",
                    ]);
                    for d in &devices {
                        t.add_row(vec![
                            d.id.clone(),
                            d.user.clone(),
                            or_dash(&d.hostname),
                            or_dash(&d.os),
                            d.last_seen.clone().unwrap_or_else(|| "never".into()),
                            "unknown".into(),
                            d.state.into(),
                        ]);
                    }
                    println!("{t}");
                    Ok(())
                }
            }
        }
        DeviceCommand::Show { device, connect } => {
            let mut client = admin_client(&connect).await?;
            let d: DeviceView = client
                .get_device(GetDeviceRequest { device_id: device })
                .await?
                .into_inner()
                .into();
            match output {
                OutputFormat::Json => print_json(&d),
                OutputFormat::Table => {
                    print_fields(&[
                        ("id", d.id.clone()),
                        ("user", d.user.clone()),
                        ("state", d.state.into()),
                        ("hostname", or_dash(&d.hostname)),
                        ("os", or_dash(&d.os)),
                        ("kernel", or_dash(&d.kernel_version)),
                        ("arch", or_dash(&d.arch)),
                        ("agent version", or_dash(&d.agent_version)),
                        ("enrolled", d.enrolled_at.clone()),
                        (
                            "last seen",
                            d.last_seen.clone().unwrap_or_else(|| "never".into()),
                        ),
                        ("compliant", "unknown (no compliance report yet)".into()),
                        ("certificate serial", d.certificate_serial.clone()),
                        ("certificate expires", d.certificate_expires_at.clone()),
                    ]);
                    Ok(())
                }
            }
        }
    }
}
