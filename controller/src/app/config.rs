//! Settings an operator chooses at `wardctl serve`, with their defaults.

use std::time::Duration;

use super::CheckpointConfig;
use crate::core::token::TOKEN_DEFAULT_TTL;

/// Settings an operator chooses at `wardctl serve`.
#[derive(Clone, Debug)]
pub struct AppConfig {
    pub device_cert_lifetime: Duration,
    pub admin_cert_lifetime: Duration,
    pub checkin_interval: Duration,
    pub token_default_ttl: Duration,
    /// The URL devices enroll against, printed in `token create`'s enroll line.
    pub public_url: String,
    /// When set, full wipes, and offboardings of more than this many devices, wait for a
    /// second admin's approval.
    pub approval_threshold: Option<usize>,
    /// Enrollment attempts one client address may make: a burst, then this many per minute.
    pub enroll_burst: u32,
    pub enroll_per_minute: u32,
    /// HTTP/2 keepalive: a PING after this much silence on a connection, which is closed if
    /// the answer takes longer than `keepalive_timeout` (a device gone without a goodbye).
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Signed checkpoints of the audit chain: where and how often.
    pub audit_checkpoints: CheckpointConfig,
}

impl AppConfig {
    pub fn with_public_url(public_url: String) -> Self {
        Self {
            device_cert_lifetime: ward_certs::ca::DEVICE_LIFETIME,
            admin_cert_lifetime: ward_certs::ca::ADMIN_LIFETIME,
            checkin_interval: Duration::from_secs(60),
            token_default_ttl: TOKEN_DEFAULT_TTL,
            public_url,
            approval_threshold: None,
            enroll_burst: 20,
            enroll_per_minute: 60,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            audit_checkpoints: CheckpointConfig::default(),
        }
    }
}
