//! Enrollment tokens that have not been used yet: listing and withdrawing them.

use tracing::info;

use super::audit::admin_actor;
use super::{App, AppError};
use crate::core::refs::TokenId;
use crate::core::{Admin, TokenRecord, UserEmail};

/// Which unused tokens to withdraw.
#[derive(Clone, Copy, Debug)]
pub enum TokenSelection<'a> {
    /// One token by its id ([`crate::core::TokenHash::id`]).
    Id(&'a TokenId),
    /// Every unused token of a user.
    User(&'a UserEmail),
}

impl App {
    /// The tokens that could still enroll a device, optionally of one user, oldest first.
    pub async fn list_tokens(
        &self,
        user: Option<&UserEmail>,
    ) -> Result<Vec<TokenRecord>, AppError> {
        Ok(self.store.list_usable_tokens(user, self.now()).await?)
    }

    /// Withdraws unused tokens and returns those withdrawn. A token id that names no usable
    /// token is an error (the admin typed something); a user without tokens is not (a script
    /// withdrawing a leaver's tokens must be idempotent).
    pub async fn withdraw_tokens(
        &self,
        actor: &Admin,
        selection: TokenSelection<'_>,
        reason: &str,
    ) -> Result<Vec<TokenRecord>, AppError> {
        let now = self.now();
        let (candidates, target) = match selection {
            TokenSelection::Id(id) => {
                let id = id.as_str();
                let found: Vec<TokenRecord> = self
                    .store
                    .list_usable_tokens(None, now)
                    .await?
                    .into_iter()
                    .filter(|t| t.hash.id() == id)
                    .collect();
                if found.is_empty() {
                    return Err(AppError::NotFound(format!(
                        "no unused enrollment token has the id {id}: it was used, has expired or was withdrawn already; `wardctl token list` shows the unused ones"
                    )));
                }
                (found, id.to_owned())
            }
            TokenSelection::User(user) => {
                let found = self.store.list_usable_tokens(Some(user), now).await?;
                (found, user.to_string())
            }
        };
        let mut withdrawn = Vec::with_capacity(candidates.len());
        for token in candidates {
            // A token redeemed in the meantime stays redeemed: only still-usable ones count.
            if self.store.expire_token(&token.hash, now).await? {
                withdrawn.push(token);
            }
        }
        let ids: Vec<String> = withdrawn.iter().map(|t| t.hash.id()).collect();
        self.audit(
            &admin_actor(actor),
            "token.revoke",
            &target,
            serde_json::json!({ "reason": super::sanitize(reason), "tokens": ids }),
        )
        .await?;
        info!(admin = %actor.name, target = %target, withdrawn = withdrawn.len(), "enrollment tokens withdrawn");
        Ok(withdrawn)
    }
}
