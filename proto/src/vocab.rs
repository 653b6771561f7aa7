//! The wire's messages to and from Ward's shared vocabulary (`ward-vocab`), written once for
//! the agent (which sends them), the edge (which checks them into the domain) and `wardctl`
//! (which prints them). Conversions only: what a value may hold is checked by its vocabulary
//! type (e.g. `Inventory::validate`), where the controller takes it in.

use ward_vocab::inventory::{Filesystem, Inventory, PackageCount};

use crate::v1;

impl From<Inventory> for v1::Inventory {
    fn from(i: Inventory) -> Self {
        Self {
            hardware_vendor: i.hardware_vendor,
            hardware_model: i.hardware_model,
            cpu_model: i.cpu_model,
            cpu_count: i.cpu_count,
            memory_bytes: i.memory_bytes,
            packages: i
                .packages
                .into_iter()
                .map(|p| v1::PackageCount {
                    manager: p.manager,
                    count: p.count,
                })
                .collect(),
            filesystems: i
                .filesystems
                .into_iter()
                .map(|f| v1::Filesystem {
                    mount_point: f.mount_point,
                    fs_type: f.fs_type,
                    source: f.source,
                    encryption: f.encryption,
                })
                .collect(),
            firewall: i.firewall,
        }
    }
}

impl From<v1::Inventory> for Inventory {
    fn from(i: v1::Inventory) -> Self {
        Self {
            hardware_vendor: i.hardware_vendor,
            hardware_model: i.hardware_model,
            cpu_model: i.cpu_model,
            cpu_count: i.cpu_count,
            memory_bytes: i.memory_bytes,
            packages: i
                .packages
                .into_iter()
                .map(|p| PackageCount {
                    manager: p.manager,
                    count: p.count,
                })
                .collect(),
            filesystems: i
                .filesystems
                .into_iter()
                .map(|f| Filesystem {
                    mount_point: f.mount_point,
                    fs_type: f.fs_type,
                    source: f.source,
                    encryption: f.encryption,
                })
                .collect(),
            firewall: i.firewall,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inventory_crosses_the_wire_and_back_unchanged() {
        let sent = Inventory {
            hardware_vendor: "LENOVO".into(),
            hardware_model: "ThinkPad T14".into(),
            cpu_model: "AMD Ryzen 7".into(),
            cpu_count: 16,
            memory_bytes: 32 << 30,
            packages: vec![PackageCount {
                manager: "dpkg".into(),
                count: 1834,
            }],
            filesystems: vec![Filesystem {
                mount_point: "/".into(),
                fs_type: "ext4".into(),
                source: "/dev/mapper/root".into(),
                encryption: "encrypted".into(),
            }],
            firewall: "active".into(),
        };
        let wire = v1::Inventory::from(sent.clone());
        assert_eq!(wire.packages[0].count, 1834);
        assert_eq!(Inventory::from(wire), sent);
    }
}
