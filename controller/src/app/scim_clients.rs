//! The identity providers' SCIM clients: their bearer tokens (made, listed and revoked by an
//! admin, kept as hashes) and the authentication of each SCIM request by one.

use std::net::IpAddr;

use serde_json::json;
use tracing::{info, warn};

use super::audit::{admin_actor, refusal_source};
use super::directory::SCIM_UNKNOWN;
use super::{App, AppError};
use crate::core::audit::AuditEvent;
use crate::core::directory::{ScimClient, ScimSecret, scim_actor};
use crate::core::refs::ScimClientName;
use crate::core::{Admin, AdminRole, Permission};
use crate::store::{Priority, StoreError};

impl App {
    // ----- the admin's side: tokens --------------------------------------------------------

    /// A new provisioning client and its token (shown once; only its hash is kept).
    pub async fn create_scim_client(
        &self,
        admin: &Admin,
        name: &ScimClientName,
    ) -> Result<(ScimClient, ScimSecret), AppError> {
        let name = name.0.clone();
        let secret = ScimSecret::generate();
        let client = ScimClient {
            name,
            token_hash: secret.hash_hex(),
            created_at: self.now(),
            created_by: admin.name.to_string(),
            revoked_at: None,
            revoked_by: None,
        };
        let (job, actor) = (client.clone(), admin_actor(admin));
        let created = self
            .store
            .write(Priority::High, move |tx| {
                let (client, actor) = (job.clone(), actor.clone());
                Box::pin(async move {
                    if !tx.insert_scim_client(&client).await? {
                        return Ok(false);
                    }
                    tx.audit(
                        AuditEvent {
                            actor,
                            action: "scim.token.create".into(),
                            target: client.actor(),
                            details: json!({ "token": &client.token_hash[..12] }),
                        },
                        client.created_at,
                    );
                    Ok::<_, StoreError>(true)
                })
            })
            .await?;
        if !created {
            return Err(AppError::AlreadyExists(format!(
                "a SCIM client named {} already has a token: revoke it first (wardctl scim token revoke {}) or choose another name",
                client.name, client.name
            )));
        }
        info!(client = %client.name, created_by = %admin.name, "SCIM token created");
        Ok((client, secret))
    }

    pub async fn list_scim_clients(&self) -> Result<Vec<ScimClient>, AppError> {
        Ok(self.store.list_scim_clients().await?)
    }

    /// Revokes a client's token: refused from its next request on.
    pub async fn revoke_scim_client(
        &self,
        admin: &Admin,
        name: &ScimClientName,
    ) -> Result<ScimClient, AppError> {
        let name = name.0.clone();
        let (job_name, actor, by, now) = (
            name.clone(),
            admin_actor(admin),
            admin.name.to_string(),
            self.now(),
        );
        let revoked = self
            .store
            .write(Priority::High, move |tx| {
                let (name, actor, by) = (job_name.clone(), actor.clone(), by.clone());
                Box::pin(async move {
                    if !tx.revoke_scim_client(&name, &by, now).await? {
                        return Ok(None);
                    }
                    tx.audit(
                        AuditEvent {
                            actor,
                            action: "scim.token.revoke".into(),
                            target: scim_actor(&name),
                            details: json!({}),
                        },
                        now,
                    );
                    tx.scim_client(&name).await
                })
            })
            .await?;
        let Some(client) = revoked else {
            return Err(AppError::NotFound(format!(
                "there is no SCIM client named {name} with a token in use (wardctl scim token list)"
            )));
        };
        info!(client = %name, revoked_by = %admin.name, "SCIM token revoked");
        Ok(client)
    }

    // ----- the identity provider's side --------------------------------------------------

    /// The client whose bearer token this is ([`ScimSecret::presented`]: `None` when the
    /// request had none). A missing, unknown or revoked token is refused and audited (a few
    /// per address and minute, the rest summarized).
    pub async fn authenticate_scim(
        &self,
        bearer: Option<&ScimSecret>,
        origin: IpAddr,
    ) -> Result<ScimClient, AppError> {
        let why = match bearer {
            None => "no bearer token",
            Some(token) => match self.store.scim_client_by_hash(&token.hash_hex()).await? {
                Some(client) => return Ok(client),
                None => "unknown or revoked bearer token",
            },
        };
        warn!(%origin, why, "SCIM request refused");
        self.audit_refusal(
            refusal_source(SCIM_UNKNOWN, "scim.denied", &origin.to_string()),
            &origin.to_string(),
            json!({ "why": why }),
        )
        .await?;
        Err(AppError::Unauthenticated(format!(
            "{why}: send Authorization: Bearer <token from wardctl scim token create>"
        )))
    }

    /// SCIM clients act with the `offboarding` role.
    pub fn authorize_scim(client: &ScimClient, permission: Permission) -> Result<(), AppError> {
        if AdminRole::Offboarding.allows(permission) {
            Ok(())
        } else {
            Err(AppError::PermissionDenied(format!(
                "SCIM client {} acts with role offboarding, which may not {}",
                client.name,
                permission.describe()
            )))
        }
    }
}
