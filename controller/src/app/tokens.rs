//! Enrollment tokens that have not been used yet: listing and withdrawing them.

use tracing::info;

use super::audit::admin_actor;
use super::{App, AppError};
use crate::core::token::TOKEN_ID_LEN;
use crate::core::{Admin, TokenRecord, UserEmail};

/// Which unused tokens to withdraw.
#[derive(Clone, Copy, Debug)]
pub enum TokenSelection<'a> {
    /// One token by its id ([`crate::core::TokenHash::id`]).
    Id(&'a str),
    /// Every unused token of a user.
    User(&'a str),
}

impl App {
    /// The tokens that could still enroll a device, optionally of one user, oldest first.
    pub async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>, AppError> {
        let user = user.map(parse_user).transpose()?;
        Ok(self
            .store
            .list_usable_tokens(user.as_ref(), self.now())
            .await?)
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
                let id = parse_id(id)?;
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
                (found, id)
            }
            TokenSelection::User(user) => {
                let user = parse_user(user)?;
                let found = self.store.list_usable_tokens(Some(&user), now).await?;
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

fn parse_user(user: &str) -> Result<UserEmail, AppError> {
    user.parse()
        .map_err(|e| AppError::InvalidArgument(format!("{e}")))
}

/// A token id as `token list` prints it; the full 64-digit hash is accepted too.
fn parse_id(id: &str) -> Result<String, AppError> {
    let id = id.trim().to_ascii_lowercase();
    let hex = id.chars().all(|c| c.is_ascii_hexdigit());
    match id.len() {
        TOKEN_ID_LEN if hex => Ok(id),
        64 if hex => Ok(id[..TOKEN_ID_LEN].to_owned()),
        // Not echoed: an admin may have pasted the token itself, a secret.
        _ => Err(AppError::InvalidArgument(format!(
            "that is not a token id: use the {TOKEN_ID_LEN} hex digits `wardctl token list` shows in its ID column (a token itself, \"ward_…\", is not its id)"
        ))),
    }
}
