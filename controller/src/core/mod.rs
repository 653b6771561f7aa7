//! Ward's domain: types and rules, free of tonic and sqlx.

pub mod admins;
pub mod attestation;
pub mod audit;
pub mod ca_rotation;
pub mod clock;
pub mod command;
pub mod directory;
pub mod duration;
pub mod keys;
pub mod model;
pub mod policy;
pub mod posture;
pub mod refs;
pub mod roles;
pub mod service;
pub mod text;
pub mod token;
pub mod webhook;

pub use clock::{Clock, SystemClock, Timestamp};
pub use command::{
    Command, CommandId, CommandKind, CommandState, Event, IdempotencyKey, Receipt, WipeScope,
};
pub use keys::{DeviceKey, KeySwitch, RenewalConflict};
pub use model::{
    Admin, AdminRole, CertificateRecord, Device, DeviceFacts, DeviceId, DeviceState, NewDevice,
    OfflineWipe, UserEmail,
};
pub use policy::{
    ALL_CHECKS, CHECK_AGENT_VERSION, CHECK_AUTO_LOCK, CHECK_DISK_ENCRYPTION, CHECK_FIREWALL,
    CHECK_FORBIDDEN_PACKAGES, CHECK_OS_UPDATES, CHECK_PASSWORD_RULES, CheckStatus, Compliance,
    ComplianceCheck, EnforcementAction, Policy, PolicyBody, PolicyChanges, PolicyRule, PolicyScope,
    StoredPolicy,
};
pub use posture::{Disabled, Enforcement, Inventory};
pub use refs::DeviceRef;
pub use roles::Permission;
pub use token::{EnrollmentToken, TokenHash, TokenRecord, TokenStatus};
