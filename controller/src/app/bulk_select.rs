//! Which devices a bulk wipe selects: a user's, the noncompliant ones, or a list of ids and
//! host names. Every form is resolved with one read of the device list, and every bad entry
//! is refused before anything is written.

use std::collections::{HashMap, HashSet};

use super::{App, AppError};
use crate::core::command::MAX_BULK_WIPE;
use crate::core::refs::{DeviceList, DeviceRef};
use crate::core::{Check, Device, DeviceId, DeviceState, UserEmail};

/// How many unknown entries an error names (the rest are counted).
const NAMED_IN_ERRORS: usize = 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    User(UserEmail),
    Noncompliant { check: Option<Check> },
    Devices(DeviceList),
}

impl Selection {
    /// For the audit entry.
    pub fn describe(&self) -> serde_json::Value {
        match self {
            Selection::User(user) => serde_json::json!({ "user": user.as_str() }),
            Selection::Noncompliant { check } => {
                serde_json::json!({ "noncompliant": true, "check": check })
            }
            Selection::Devices(list) => serde_json::json!({ "devices": list.len() }),
        }
    }
}

impl App {
    /// The selected devices, each once, in the order selected (revoked and retired ones
    /// included: the caller reports them as skipped).
    pub(super) async fn select_devices(
        &self,
        selection: &Selection,
    ) -> Result<Vec<Device>, AppError> {
        let devices = match selection {
            Selection::User(user) => {
                let devices = self.store.list_devices(Some(user)).await?;
                if devices.is_empty() {
                    return Err(AppError::NotFound(format!(
                        "{user} has no devices: nothing to wipe"
                    )));
                }
                devices
            }
            Selection::Noncompliant { check } => {
                let devices: Vec<Device> = self
                    .store
                    .list_devices(None)
                    .await?
                    .into_iter()
                    .filter(|d| d.state == DeviceState::Active)
                    .filter(|d| {
                        d.compliance.as_ref().is_some_and(|c| {
                            !c.compliant && check.is_none_or(|want| c.failing().any(|f| f == want))
                        })
                    })
                    .collect();
                if devices.is_empty() {
                    return Err(AppError::NotFound(match check {
                        Some(check) => {
                            format!("no active device fails the check {check}: nothing to wipe")
                        }
                        None => "no active device is noncompliant: nothing to wipe".into(),
                    }));
                }
                devices
            }
            Selection::Devices(list) => self.named_devices(list).await?,
        };
        if devices.len() > MAX_BULK_WIPE {
            return Err(AppError::InvalidArgument(format!(
                "the selection holds {} devices, more than the {MAX_BULK_WIPE} one bulk wipe may; \
                 split it into batches (each with its own idempotency key)",
                devices.len()
            )));
        }
        Ok(devices)
    }

    /// Resolves ids and host names, all of them or none: a malformed, unknown or ambiguous
    /// entry refuses the whole list.
    async fn named_devices(&self, list: &DeviceList) -> Result<Vec<Device>, AppError> {
        if list.is_empty() {
            return Err(AppError::InvalidArgument(
                "the list of devices is empty: name at least one device id or host name".into(),
            ));
        }
        if list.len() > MAX_BULK_WIPE {
            return Err(AppError::InvalidArgument(format!(
                "{} devices were named, more than the {MAX_BULK_WIPE} one bulk wipe may; split \
                 the list into batches (each with its own idempotency key)",
                list.len()
            )));
        }
        let all = self.store.list_devices(None).await?;
        let by_id: HashMap<DeviceId, &Device> = all.iter().map(|d| (d.id, d)).collect();
        let mut by_name: HashMap<String, Vec<&Device>> = HashMap::new();
        for d in all.iter().filter(|d| d.state != DeviceState::Retired) {
            by_name
                .entry(d.facts.hostname.to_ascii_lowercase())
                .or_default()
                .push(d);
        }
        let (mut unknown, mut ambiguous) = (Vec::new(), Vec::new());
        let malformed: Vec<&str> = list.malformed.iter().map(String::as_str).collect();
        let mut seen = HashSet::new();
        let mut selected = Vec::new();
        for listed in &list.listed {
            let entry = listed.text.as_str();
            let found = match &listed.device {
                DeviceRef::Id(id) => by_id.get(id).copied(),
                DeviceRef::HostName(name) => {
                    match by_name
                        .get(&name.as_str().to_ascii_lowercase())
                        .map(Vec::as_slice)
                    {
                        Some([one]) => Some(*one),
                        Some([_, _, ..]) => {
                            ambiguous.push(entry);
                            continue;
                        }
                        _ => None,
                    }
                }
            };
            match found {
                Some(d) if seen.insert(d.id) => selected.push(d.clone()),
                Some(_) => {}
                None => unknown.push(entry),
            }
        }
        let mut problems = Vec::new();
        for (what, entries) in [
            ("not a device id or host name", &malformed),
            ("no such device", &unknown),
            ("host name of several devices (name them by id)", &ambiguous),
        ] {
            if !entries.is_empty() {
                problems.push(format!("{what}: {}", named(entries)));
            }
        }
        if !problems.is_empty() {
            return Err(AppError::InvalidArgument(format!(
                "nothing was wiped; fix the list of devices: {}",
                problems.join("; ")
            )));
        }
        Ok(selected)
    }
}

/// Up to [`NAMED_IN_ERRORS`] entries, quoted, and how many more.
fn named(entries: &[&str]) -> String {
    let mut text = entries
        .iter()
        .take(NAMED_IN_ERRORS)
        .map(|e| format!("{:?}", crate::core::text::clean(e, 80)))
        .collect::<Vec<_>>()
        .join(", ");
    if entries.len() > NAMED_IN_ERRORS {
        text.push_str(&format!(" and {} more", entries.len() - NAMED_IN_ERRORS));
    }
    text
}
