//! What a device reports about itself beyond compliance: hardware, memory, package counts,
//! its block-device filesystems with their encryption, and the firewall state. The agent
//! builds it, the wire carries it, the controller checks it ([`Inventory::validate`]) and keeps
//! it as JSON: one shape for all three.

use serde::{Deserialize, Serialize};

use crate::text::printable_within;

/// What the device is, as far as it can tell. Empty strings and zeros are "unknown".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Inventory {
    pub hardware_vendor: String,
    pub hardware_model: String,
    pub cpu_model: String,
    pub cpu_count: u32,
    pub memory_bytes: u64,
    pub packages: Vec<PackageCount>,
    pub filesystems: Vec<Filesystem>,
    pub firewall: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageCount {
    pub manager: String,
    pub count: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filesystem {
    pub mount_point: String,
    pub fs_type: String,
    pub source: String,
    pub encryption: String,
}

/// The longest inventory text accepted, and the most list entries.
pub const MAX_INVENTORY_TEXT: usize = 256;
pub const MAX_INVENTORY_ENTRIES: usize = 64;
pub const ENCRYPTION_STATES: [&str; 3] = ["encrypted", "not encrypted", "unknown"];

#[derive(Debug, PartialEq, Eq)]
pub struct InventoryError {
    pub field: &'static str,
    pub why: String,
}

impl std::fmt::Display for InventoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "inventory field {} is invalid: {}", self.field, self.why)
    }
}

impl std::error::Error for InventoryError {}

impl Inventory {
    /// Every text bounded and printable, lists bounded, encryption states known.
    pub fn validate(&self) -> Result<(), InventoryError> {
        let text = |field: &'static str, value: &str| {
            printable_within(value, MAX_INVENTORY_TEXT).map_err(|why| InventoryError { field, why })
        };
        text("hardware_vendor", &self.hardware_vendor)?;
        text("hardware_model", &self.hardware_model)?;
        text("cpu_model", &self.cpu_model)?;
        text("firewall", &self.firewall)?;
        if self.packages.len() > MAX_INVENTORY_ENTRIES
            || self.filesystems.len() > MAX_INVENTORY_ENTRIES
        {
            return Err(InventoryError {
                field: "packages/filesystems",
                why: format!("more than {MAX_INVENTORY_ENTRIES} entries"),
            });
        }
        for p in &self.packages {
            text("packages.manager", &p.manager)?;
        }
        for f in &self.filesystems {
            text("filesystems.mount_point", &f.mount_point)?;
            text("filesystems.fs_type", &f.fs_type)?;
            text("filesystems.source", &f.source)?;
            if !ENCRYPTION_STATES.contains(&f.encryption.as_str()) {
                return Err(InventoryError {
                    field: "filesystems.encryption",
                    why: format!(
                        "{:?} is not one of {}",
                        f.encryption.chars().take(40).collect::<String>(),
                        ENCRYPTION_STATES.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }
}
