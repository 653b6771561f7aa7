//! Request fields read into domain values. Each handler calls these once the caller is
//! authenticated (and, where the permission does not depend on the request, authorized), so
//! the app takes only typed values. A refusal is `InvalidArgument` with the type's own words:
//! what was wrong and what is accepted.
//!
//! Plain functions rather than `TryFrom<&v1::…>` impls: the domain types live in `ward-core` and
//! the messages in `ward-proto`, so the orphan rule forbids such impls in this crate.

use std::fmt::Display;
use std::str::FromStr;

use ward_certs::VerifiedCsr;

use ward_controller::app::AppError;
use ward_core::refs::{DeviceRef, WebhookId};
use ward_core::webhook::EventList;
use ward_core::{CommandId, UserEmail};

/// `text` as a `T`, or `InvalidArgument` with `T`'s parse error. An [`AppError`], so that a
/// read refused for a malformed argument is audited like any other refused read.
pub(crate) fn parse<T>(text: &str) -> Result<T, AppError>
where
    T: FromStr,
    T::Err: Display,
{
    text.parse()
        .map_err(|e: T::Err| AppError::InvalidArgument(e.to_string()))
}

/// A device by its id or host name.
pub(crate) fn device_ref(text: &str) -> Result<DeviceRef, AppError> {
    parse(text)
}

pub(crate) fn command_id(text: &str) -> Result<CommandId, AppError> {
    parse(text)
}

/// A certificate signing request whose signature verifies (proof of the key).
pub(crate) fn csr(der: &[u8]) -> Result<VerifiedCsr, AppError> {
    VerifiedCsr::from_der(der).map_err(|e| AppError::InvalidArgument(e.to_string()))
}

/// A user, or everyone when the field is empty.
pub(crate) fn optional_user(text: &str) -> Result<Option<UserEmail>, AppError> {
    ward_core::refs::optional_user(text).map_err(|e| AppError::InvalidArgument(e.to_string()))
}

/// A webhook's id. Text that is not one names no webhook: `NotFound`, as an unknown id.
pub(crate) fn webhook_id(text: &str) -> Result<WebhookId, AppError> {
    text.parse()
        .map_err(|e: ward_core::refs::NoSuchWebhook| AppError::NotFound(e.to_string()))
}

/// The event types a receiver subscribes to (a list of comma-separated lists).
pub(crate) fn events(list: &[String]) -> Result<EventList, AppError> {
    EventList::parse(list).map_err(|e| AppError::InvalidArgument(e.to_string()))
}
