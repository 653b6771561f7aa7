//! Policy operations and compliance reports.

use tracing::{info, warn};

use super::{App, AppError};
use crate::core::policy::{MAX_CHECK_TEXT, MAX_CHECKS};
use crate::core::{
    Admin, ComplianceCheck, Policy, PolicyBody, PolicyChanges, PolicyRule, PolicyScope,
    StoredPolicy, UserEmail,
};
use crate::store::Announcement;

/// Refuses a compliance report with too many checks, or a check whose name is empty, or
/// whose name or detail is over-long or holds control characters other than newlines.
pub fn check_report(checks: &[ComplianceCheck]) -> Result<(), AppError> {
    if checks.len() > MAX_CHECKS {
        return Err(AppError::InvalidArgument(format!(
            "a compliance report holds at most {MAX_CHECKS} checks"
        )));
    }
    for check in checks {
        let bad =
            |s: &str| s.len() > MAX_CHECK_TEXT || s.chars().any(|c| c.is_control() && c != '\n');
        if check.name.is_empty() || bad(&check.name) || bad(&check.detail) {
            return Err(AppError::InvalidArgument(
                "a compliance check has an empty or over-long name, or control characters".into(),
            ));
        }
    }
    Ok(())
}

impl App {
    /// The policy that applies to `user`'s devices (or the default policy for `None`): the
    /// default with the user's override on top.
    pub async fn effective_policy(
        &self,
        user: Option<&UserEmail>,
    ) -> Result<StoredPolicy, AppError> {
        let default = self.store.get_policy(&PolicyScope::Default).await?;
        let own = match user {
            Some(user) => {
                self.store
                    .get_policy(&PolicyScope::User(user.clone()))
                    .await?
            }
            None => None,
        };
        let (policy, broken) = crate::core::policy::effective(default.as_ref(), own.as_ref());
        if let Some(e) = broken {
            warn!(user = ?user.map(UserEmail::as_str), error = %e, "a user's policy override does not combine with the default; the default applies");
        }
        Ok(policy)
    }

    /// The effective policy of `user`'s devices for the agent API, from the cache (dropped
    /// on every policy change, here or announced by another replica).
    pub async fn agent_policy(&self, user: &UserEmail) -> Result<StoredPolicy, AppError> {
        if let Some(policy) = self.reads.policy(user) {
            return Ok(policy);
        }
        let since = self.reads.policy_generation();
        let policy = self.effective_policy(Some(user)).await?;
        self.reads
            .remember_policy(since, user.clone(), policy.clone());
        Ok(policy)
    }

    pub async fn get_policy(&self, user: Option<&UserEmail>) -> Result<StoredPolicy, AppError> {
        self.effective_policy(user).await
    }

    /// Changes the default policy, or a user's override (only the fields it sets: the user's
    /// devices follow every other change of the default), and wakes the affected devices'
    /// streams to push it.
    pub async fn set_policy(
        &self,
        actor: &Admin,
        user: Option<&UserEmail>,
        changes: &PolicyChanges,
    ) -> Result<StoredPolicy, AppError> {
        if changes.is_empty() {
            return Err(AppError::InvalidArgument(
                "no policy field given; `wardctl policy set --help` lists them".into(),
            ));
        }
        let invalid =
            |e: crate::core::policy::PolicyError| AppError::InvalidArgument(e.to_string());
        let default = self.effective_policy(None).await?;
        let (scope, body) = match user {
            None => {
                let next = default.policy.with(changes).map_err(invalid)?;
                self.check_overrides_combine_with(&next).await?;
                (PolicyScope::Default, PolicyBody::Full(next))
            }
            Some(user) => {
                let scope = PolicyScope::User(user.clone());
                let own = match self.store.get_policy(&scope).await? {
                    Some(PolicyRule {
                        body: PolicyBody::Override { fields },
                        ..
                    }) => fields,
                    Some(PolicyRule {
                        body: PolicyBody::Full(policy),
                        ..
                    }) => PolicyChanges::difference(&default.policy, &policy),
                    None => PolicyChanges::default(),
                };
                let fields = own.then(changes);
                default.policy.with(&fields).map_err(invalid)?;
                (scope, PolicyBody::Override { fields })
            }
        };
        let stored = self
            .store
            .put_policy(&scope, &body, actor.name.as_str(), self.now())
            .await?;
        info!(scope = %stored.scope, revision = stored.revision, updated_by = %actor.name, "policy changed");
        self.audit(
            &super::audit::admin_actor(actor),
            "policy.set",
            &stored.scope.to_string(),
            serde_json::json!({ "revision": stored.revision, "rule": stored.body }),
        )
        .await?;
        self.wake_devices_of(user).await?;
        self.effective_policy(user).await
    }

    /// Refuses a new default that some user's override would no longer combine with.
    async fn check_overrides_combine_with(&self, next: &Policy) -> Result<(), AppError> {
        let mut broken = Vec::new();
        for rule in self.store.list_policies().await? {
            if let (PolicyScope::User(user), PolicyBody::Override { fields }) =
                (&rule.scope, &rule.body)
                && let Err(e) = next.with(fields)
            {
                broken.push(format!("{user} ({e})"));
            }
        }
        if broken.is_empty() {
            Ok(())
        } else {
            Err(AppError::FailedPrecondition(format!(
                "the new default would not combine with these users' overrides: {}; change or reset them first (wardctl policy set/reset --user)",
                broken.join("; ")
            )))
        }
    }

    /// Turns overrides older versions stored as full copies of the policy into overrides of
    /// only the fields that differed from the default, so those users follow the default's
    /// later changes. Run once at start; each conversion is audited.
    pub async fn upgrade_policy_overrides(&self) -> Result<usize, AppError> {
        let default = self.effective_policy(None).await?;
        let mut upgraded = 0;
        for rule in self.store.list_policies().await? {
            let (PolicyScope::User(user), PolicyBody::Full(policy)) = (&rule.scope, &rule.body)
            else {
                continue;
            };
            let fields = PolicyChanges::difference(&default.policy, policy);
            let body = PolicyBody::Override {
                fields: fields.clone(),
            };
            let stored = self
                .store
                .put_policy(&rule.scope, &body, &rule.updated_by, self.now())
                .await?;
            info!(user = %user, fields = ?fields.fields(), "policy override kept as the fields it changes");
            self.audit(
                super::audit::CONTROLLER,
                "policy.upgrade",
                &rule.scope.to_string(),
                serde_json::json!({ "revision": stored.revision, "rule": stored.body, "fields": fields.fields() }),
            )
            .await?;
            upgraded += 1;
        }
        if upgraded > 0 {
            self.reads.policy_changed();
        }
        Ok(upgraded)
    }

    /// Removes a user's override; their devices follow the default policy again.
    pub async fn reset_policy(
        &self,
        actor: &Admin,
        user: &UserEmail,
    ) -> Result<StoredPolicy, AppError> {
        if !self
            .store
            .delete_policy(&PolicyScope::User(user.clone()))
            .await?
        {
            return Err(AppError::NotFound(format!("{user} has no policy override")));
        }
        info!(user = %user, updated_by = %actor.name, "policy override removed");
        self.audit(
            &super::audit::admin_actor(actor),
            "policy.reset",
            &format!("user:{user}"),
            serde_json::json!({}),
        )
        .await?;
        self.wake_devices_of(Some(user)).await?;
        self.effective_policy(Some(user)).await
    }

    async fn wake_devices_of(&self, user: Option<&UserEmail>) -> Result<(), AppError> {
        // Here at once, whoever the user's devices are; the announcements below tell the
        // other replicas.
        self.reads.policy_changed();
        match user {
            // The default policy may reach every device: one broadcast.
            None => self.signal(Announcement::PolicyChanged).await,
            Some(user) => {
                for device in self.store.list_devices(Some(user)).await? {
                    self.signal(Announcement::DeviceWork(device.id)).await;
                }
            }
        }
        Ok(())
    }
}
