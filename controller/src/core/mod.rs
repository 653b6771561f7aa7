//! Ward's domain: types and rules, free of tonic and sqlx.

pub mod audit;
pub mod clock;
pub mod command;
pub mod model;
pub mod policy;
pub mod roles;
pub mod token;

pub use clock::{Clock, SystemClock, Timestamp};
pub use command::{Command, CommandId, CommandKind, CommandState, Event, Receipt, WipeScope};
pub use model::{
    Admin, AdminRole, CertificateRecord, Device, DeviceFacts, DeviceId, DeviceState, NewDevice,
    OfflineWipe, UserEmail,
};
pub use policy::{
    CheckStatus, Compliance, ComplianceCheck, Policy, PolicyChanges, PolicyScope, StoredPolicy,
};
pub use roles::Permission;
pub use token::{EnrollmentToken, TokenHash, TokenRecord, TokenStatus};
