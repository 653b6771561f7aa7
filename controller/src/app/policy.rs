//! Policy operations and compliance reports.

use tracing::info;

use super::{App, AppError};
use crate::core::policy::{MAX_CHECK_TEXT, MAX_CHECKS};
use crate::core::{
    Admin, Compliance, ComplianceCheck, DeviceId, Policy, PolicyChanges, PolicyScope, StoredPolicy,
    Timestamp, UserEmail,
};
use crate::store::Announcement;

fn parse_user(user: Option<&str>) -> Result<Option<UserEmail>, AppError> {
    user.map(|u| {
        u.parse::<UserEmail>()
            .map_err(|e| AppError::InvalidArgument(e.to_string()))
    })
    .transpose()
}

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
    /// The policy that applies to `user`'s devices (or the default policy for `None`).
    pub async fn effective_policy(
        &self,
        user: Option<&UserEmail>,
    ) -> Result<StoredPolicy, AppError> {
        if let Some(user) = user
            && let Some(own) = self
                .store
                .get_policy(&PolicyScope::User(user.clone()))
                .await?
        {
            return Ok(own);
        }
        Ok(self
            .store
            .get_policy(&PolicyScope::Default)
            .await?
            .unwrap_or(StoredPolicy {
                scope: PolicyScope::Default,
                policy: Policy::default(),
                revision: 0,
                updated_at: Timestamp::from_unix_ms(0),
                updated_by: "built-in".into(),
            }))
    }

    pub async fn get_policy(&self, user: Option<&str>) -> Result<StoredPolicy, AppError> {
        self.effective_policy(parse_user(user)?.as_ref()).await
    }

    /// Changes the default policy, or a user's override (created from the user's current
    /// effective policy), and wakes the affected devices' streams to push it.
    pub async fn set_policy(
        &self,
        actor: &Admin,
        user: Option<&str>,
        changes: &PolicyChanges,
    ) -> Result<StoredPolicy, AppError> {
        let user = parse_user(user)?;
        if changes.is_empty() {
            return Err(AppError::InvalidArgument(
                "no policy field given; `wardctl policy set --help` lists them".into(),
            ));
        }
        let current = self.effective_policy(user.as_ref()).await?;
        let next = current
            .policy
            .with(changes)
            .map_err(|e| AppError::InvalidArgument(e.to_string()))?;
        let scope = user.clone().map_or(PolicyScope::Default, PolicyScope::User);
        let stored = self
            .store
            .put_policy(&scope, &next, actor.name.as_str(), self.now())
            .await?;
        info!(scope = %stored.scope, revision = stored.revision, updated_by = %actor.name, "policy changed");
        self.audit(
            &super::audit::admin_actor(actor),
            "policy.set",
            &stored.scope.to_string(),
            serde_json::json!({ "revision": stored.revision, "policy": stored.policy }),
        )
        .await?;
        self.wake_devices_of(user.as_ref()).await?;
        Ok(stored)
    }

    /// Removes a user's override; their devices follow the default policy again.
    pub async fn reset_policy(&self, actor: &Admin, user: &str) -> Result<StoredPolicy, AppError> {
        let user: UserEmail = user
            .parse()
            .map_err(|e| AppError::InvalidArgument(format!("{e}")))?;
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
        self.wake_devices_of(Some(&user)).await?;
        self.effective_policy(Some(&user)).await
    }

    async fn wake_devices_of(&self, user: Option<&UserEmail>) -> Result<(), AppError> {
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

    /// Judges and records a device's compliance report against `policy`, its effective
    /// policy (which the caller has in hand already).
    pub async fn record_compliance(
        &self,
        device: DeviceId,
        policy: &StoredPolicy,
        checks: Vec<ComplianceCheck>,
        policy_revision: u64,
    ) -> Result<Compliance, AppError> {
        check_report(&checks)?;
        let compliance = Compliance::judge(&policy.policy, checks, self.now(), policy_revision);
        self.store.record_compliance(device, &compliance).await?;
        Ok(compliance)
    }
}
