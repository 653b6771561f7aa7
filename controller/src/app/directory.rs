//! Users as the identity provider provisions them (SCIM); its clients are in `scim_clients`.
//!
//! Deprovisioning is offboarding: a user set inactive (or deleted) gets exactly what
//! `wardctl user offboard` does ([`super::offboard::offboard_in`]), in the same transaction
//! as the record's change, with the SCIM client as the actor. Reactivation undoes no wipe; it
//! only lets enrollment tokens be made for the user again. The SCIM wire format (filters,
//! PATCH operations, resource JSON) stays in `crate::scim`.

use std::collections::BTreeMap;

use serde_json::json;
use tracing::info;
use uuid::Uuid;

use super::commands::{Issuer, check_command_text};
use super::offboard::{Offboarding, offboard_in};
use super::{App, AppError};
use crate::core::audit::AuditEvent;
use crate::core::directory::{DirectoryUser, ScimClient};
use crate::core::{CommandKind, DeviceState, Permission, Timestamp, UserEmail, WipeScope};
use crate::store::tx::Tx;
use crate::store::{Priority, StoreError};

/// The audit actor of refused SCIM calls whose token names no client.
pub const SCIM_UNKNOWN: &str = "ward://scim/unknown";

/// A user as a provisioning client describes them, checked by the SCIM edge.
#[derive(Clone, Debug)]
pub struct DirectoryInput {
    /// SCIM userName, as sent.
    pub user_name: String,
    /// The Ward user it names.
    pub user: UserEmail,
    pub external_id: Option<String>,
    pub active: bool,
    /// The other attributes, a JSON object.
    pub attributes: String,
}

/// What one provisioning call changed.
#[derive(Clone, Debug)]
pub struct Provisioned {
    pub user: DirectoryUser,
    /// The call deactivated the user: their offboarding was started (or repeated).
    pub offboarded: bool,
}

/// A user as `user list` shows them: their devices, tokens, and what the identity provider
/// says.
#[derive(Clone, Debug)]
pub struct UserSummary {
    pub user: UserEmail,
    pub devices: usize,
    pub active_devices: usize,
    pub usable_tokens: usize,
    pub directory: Option<DirectoryUser>,
}

/// The offboarding reason a SCIM client's deprovisioning records.
fn reason_of(client: &ScimClient) -> String {
    format!(
        "deprovisioned by the identity provider (SCIM client {})",
        client.name
    )
}

/// One issuer for a job that may run more than once.
fn issuer_of(client: &ScimClient) -> Issuer {
    Issuer {
        name: format!("scim:{}", client.name),
        actor: client.actor(),
    }
}

type Offboarded = Option<Offboarding>;

/// Writes `next` in place of `before` (`None`: a new record), its audit entry, and, when it
/// deactivates the user, their offboarding: one job.
async fn apply(
    tx: &mut dyn Tx,
    client: &ScimClient,
    action: &str,
    before: Option<&DirectoryUser>,
    next: &DirectoryUser,
    now: Timestamp,
    threshold: Option<usize>,
) -> Result<Offboarded, StoreError> {
    tx.put_directory_user(next).await?;
    let was_active = before.is_none_or(|b| b.active);
    let deactivated = was_active && !next.active;
    let action = match (action, deactivated, !was_active && next.active) {
        ("update", true, _) => "deactivate",
        ("update", _, true) => "reactivate",
        (other, _, _) => other,
    };
    tx.audit(
        AuditEvent {
            actor: client.actor(),
            action: format!("scim.user.{action}"),
            target: next.user.to_string(),
            details: json!({
                "scim_id": next.id.to_string(),
                "external_id": next.external_id,
                "active": next.active,
            }),
        },
        now,
    );
    if !deactivated {
        return Ok(None);
    }
    offboard_in(
        tx,
        &issuer_of(client),
        &next.user,
        &reason_of(client),
        now,
        threshold,
    )
    .await
}

impl App {
    // ----- the identity provider's users ----------------------------------------------

    /// The users the identity provider has provisioned and not deleted, by e-mail.
    pub async fn directory_users(&self) -> Result<Vec<DirectoryUser>, AppError> {
        let mut users = self.store.list_directory_users().await?;
        users.retain(|u| u.deleted_at.is_none());
        Ok(users)
    }

    pub async fn directory_user(&self, id: Uuid) -> Result<DirectoryUser, AppError> {
        match self.store.get_directory_user(id).await? {
            Some(user) if user.deleted_at.is_none() => Ok(user),
            _ => Err(AppError::NotFound(format!("there is no user with id {id}"))),
        }
    }

    /// SCIM POST: a new user. One deleted earlier under the same userName comes back (same
    /// id, its history kept); a current one is `AlreadyExists`. Created inactive, the user is
    /// offboarded at once (devices may have been enrolled for them before).
    pub async fn provision_user(
        &self,
        client: &ScimClient,
        input: DirectoryInput,
    ) -> Result<Provisioned, AppError> {
        Self::authorize_scim(client, Permission::Offboard)?;
        self.check_reason(client)?;
        let (job_client, now, threshold) =
            (client.clone(), self.now(), self.config.approval_threshold);
        let outcome = self
            .store
            .write(Priority::High, move |tx| {
                let (client, input) = (job_client.clone(), input.clone());
                Box::pin(async move {
                    let before = tx.directory_user_named(&input.user).await?;
                    if before.as_ref().is_some_and(|b| b.deleted_at.is_none()) {
                        return Ok(Err(AppError::AlreadyExists(format!(
                            "a user for {} already exists",
                            input.user
                        ))));
                    }
                    let named = tx.directory_user_by_user_name(&input.user_name).await?;
                    if named.is_some_and(|n| before.as_ref().is_none_or(|b| b.id != n.id)) {
                        return Ok(Err(AppError::AlreadyExists(format!(
                            "a user with userName {} already exists",
                            input.user_name
                        ))));
                    }
                    let next = DirectoryUser {
                        id: before.as_ref().map_or_else(Uuid::new_v4, |b| b.id),
                        user_name: input.user_name,
                        user: input.user,
                        external_id: input.external_id,
                        active: input.active,
                        attributes: input.attributes,
                        created_at: before.as_ref().map_or(now, |b| b.created_at),
                        created_by: before
                            .as_ref()
                            .map_or_else(|| client.name.to_string(), |b| b.created_by.clone()),
                        updated_at: now,
                        updated_by: client.name.to_string(),
                        deactivated_at: (!input.active).then_some(now),
                        deleted_at: None,
                    };
                    // A revived (deleted) record counts as active before: created inactive, its
                    // user is offboarded again (nothing is issued twice); created active, it
                    // is a creation.
                    let prior = before.map(|b| DirectoryUser { active: true, ..b });
                    let off =
                        apply(tx, &client, "create", prior.as_ref(), &next, now, threshold).await?;
                    Ok::<_, StoreError>(Ok((next, off)))
                })
            })
            .await?;
        self.finish(client, outcome?).await
    }

    /// SCIM PUT or PATCH: `change` turns the stored record into the new one (the edge applies
    /// the operations). The userName cannot change: Ward knows a person's devices by it.
    pub async fn update_directory_user(
        &self,
        client: &ScimClient,
        id: Uuid,
        change: impl Fn(&DirectoryUser) -> Result<DirectoryInput, AppError> + Send + Sync + 'static,
    ) -> Result<Provisioned, AppError> {
        Self::authorize_scim(client, Permission::Offboard)?;
        self.check_reason(client)?;
        let (job_client, now, threshold) =
            (client.clone(), self.now(), self.config.approval_threshold);
        let change = std::sync::Arc::new(change);
        let outcome = self
            .store
            .write(Priority::High, move |tx| {
                let (client, change) = (job_client.clone(), change.clone());
                Box::pin(async move {
                    let before = match tx.directory_user(id).await? {
                        Some(b) if b.deleted_at.is_none() => b,
                        _ => {
                            return Ok(Err(AppError::NotFound(format!(
                                "there is no user with id {id}"
                            ))));
                        }
                    };
                    let input = match change(&before) {
                        Ok(input) => input,
                        Err(e) => return Ok(Err(e)),
                    };
                    if input.user != before.user {
                        return Ok(Err(AppError::FailedPrecondition(format!(
                            "the user's e-mail cannot change from {} to {}: Ward knows a person's devices by it. Deprovision this user and provision the new address",
                            before.user, input.user
                        ))));
                    }
                    let named = tx.directory_user_by_user_name(&input.user_name).await?;
                    if named.is_some_and(|n| n.id != before.id) {
                        return Ok(Err(AppError::AlreadyExists(format!(
                            "a user with userName {} already exists",
                            input.user_name
                        ))));
                    }
                    let next = DirectoryUser {
                        user_name: input.user_name,
                        external_id: input.external_id,
                        active: input.active,
                        attributes: input.attributes,
                        updated_at: now,
                        updated_by: client.name.to_string(),
                        deactivated_at: match (before.active, input.active) {
                            (true, false) => Some(now),
                            (_, true) => None,
                            (false, false) => before.deactivated_at,
                        },
                        ..before.clone()
                    };
                    let off =
                        apply(tx, &client, "update", Some(&before), &next, now, threshold).await?;
                    Ok::<_, StoreError>(Ok((next, off)))
                })
            })
            .await?;
        self.finish(client, outcome?).await
    }

    /// SCIM DELETE: the user is deactivated (offboarded if they were active) and the record
    /// kept, marked deleted; it is no longer served as a SCIM resource.
    pub async fn delete_directory_user(
        &self,
        client: &ScimClient,
        id: Uuid,
    ) -> Result<Provisioned, AppError> {
        Self::authorize_scim(client, Permission::Offboard)?;
        self.check_reason(client)?;
        let (job_client, now, threshold) =
            (client.clone(), self.now(), self.config.approval_threshold);
        let outcome = self
            .store
            .write(Priority::High, move |tx| {
                let client = job_client.clone();
                Box::pin(async move {
                    let before = match tx.directory_user(id).await? {
                        Some(b) if b.deleted_at.is_none() => b,
                        _ => {
                            return Ok(Err(AppError::NotFound(format!(
                                "there is no user with id {id}"
                            ))));
                        }
                    };
                    let next = DirectoryUser {
                        active: false,
                        updated_at: now,
                        updated_by: client.name.to_string(),
                        deactivated_at: before.deactivated_at.or(Some(now)),
                        deleted_at: Some(now),
                        ..before.clone()
                    };
                    let off =
                        apply(tx, &client, "delete", Some(&before), &next, now, threshold).await?;
                    Ok::<_, StoreError>(Ok((next, off)))
                })
            })
            .await?;
        self.finish(client, outcome?).await
    }

    fn check_reason(&self, client: &ScimClient) -> Result<(), AppError> {
        check_command_text(
            &CommandKind::Wipe {
                scope: WipeScope::Messaging,
            },
            &reason_of(client),
        )
        .map(|_| ())
    }

    async fn finish(
        &self,
        client: &ScimClient,
        (user, offboarded): (DirectoryUser, Offboarded),
    ) -> Result<Provisioned, AppError> {
        info!(client = %client.name, user = %user.user, active = user.active, deleted = user.deleted_at.is_some(), "SCIM user changed");
        if let Some(done) = &offboarded {
            self.offboarding_started(&user.user, &format!("scim:{}", client.name), done)
                .await;
        }
        Ok(Provisioned {
            offboarded: offboarded.is_some(),
            user,
        })
    }

    // ----- user list ------------------------------------------------------------------------

    /// Every user Ward knows: by their devices, their unused enrollment tokens, or the
    /// identity provider's word. By e-mail.
    pub async fn list_users(&self) -> Result<Vec<UserSummary>, AppError> {
        fn entry<'a>(
            users: &'a mut BTreeMap<UserEmail, UserSummary>,
            user: &UserEmail,
        ) -> &'a mut UserSummary {
            users.entry(user.clone()).or_insert_with(|| UserSummary {
                user: user.clone(),
                devices: 0,
                active_devices: 0,
                usable_tokens: 0,
                directory: None,
            })
        }
        let mut users: BTreeMap<UserEmail, UserSummary> = BTreeMap::new();
        for device in self.store.list_devices(None).await? {
            let u = entry(&mut users, &device.user);
            u.devices += 1;
            u.active_devices += usize::from(device.state == DeviceState::Active);
        }
        for token in self.store.list_usable_tokens(None, self.now()).await? {
            entry(&mut users, &token.user).usable_tokens += 1;
        }
        for d in self.store.list_directory_users().await? {
            let user = d.user.clone();
            entry(&mut users, &user).directory = Some(d);
        }
        Ok(users.into_values().collect())
    }
}
