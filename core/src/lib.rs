//! Ward's domain: the values and rules the controller is about, with no I/O.
//!
//! It holds the ids (devices, commands, admins, users), policies and compliance, commands and
//! their state machine, the audit chain's hashing, checkpoints and export formats, admin roles
//! and permissions, posture enforcement, enrollment tokens, CA rotation stages, webhook and
//! syslog target rules, and the clock. Everything here is a value or a pure function over values.
//!
//! It may NOT depend on tonic or prost (the wire is `ward-edge`'s), sqlx (that is
//! `ward-store`), tokio or any other I/O runtime, nor on the controller itself: a rule
//! that needs a socket, a file or a database belongs a layer up. Its only Ward dependencies are
//! `ward-vocab` (the words shared with the agent) and `ward-certs` (certificate names, DNS-name
//! syntax and the wipe receipt's signature check, all pure: ward-certs does no I/O, and the
//! files Ward keeps are `ward-files`', which this crate may not depend on).

#![forbid(unsafe_code)]

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
/// Text cleaning, defined once in ward-vocab for the agent and the controller.
pub use ward_vocab::text;
pub mod token;
pub mod webhook;

pub use clock::{Clock, SystemClock, Timestamp};
pub use command::{
    Command, CommandId, CommandKind, CommandState, CommandVersion, Event, IdempotencyKey, Receipt,
    WipeScope,
};
pub use keys::{DeviceKey, KeySwitch, RenewalConflict};
pub use model::{
    Admin, AdminRole, CertificateRecord, Device, DeviceBrief, DeviceFacts, DeviceId, DeviceState,
    NewDevice, OfflineWipe, UserEmail,
};
pub use policy::{
    Check, CheckStatus, Compliance, ComplianceCheck, EnforcementAction, Named, Policy, PolicyBody,
    PolicyChanges, PolicyRule, PolicyScope, StoredPolicy,
};
pub use posture::{Disabled, Enforcement, Inventory};
pub use refs::DeviceRef;
pub use roles::{CommandDecision, DeviceChange, Permission};
pub use token::{EnrollmentToken, TokenHash, TokenRecord, TokenStatus};
