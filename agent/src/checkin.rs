//! The check-in loop: reports facts, compliance and inventory, picks up commands the stream
//! missed, and tells the offline timer when a check-in completed. Only a completed,
//! authenticated check-in does: a refusal, a server this device cannot verify and silence all
//! leave the timer running.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tracing::{debug, error, info, warn};
use ward_proto::transport::{ChannelOptions, connect, error_chain};
use ward_proto::v1::enrollment_service_client::EnrollmentServiceClient;
use ward_proto::v1::{CheckInRequest, ComplianceReport, ReportOfflineWipeRequest, WipeReceipt};

use crate::backoff::{Backoff, jittered};
use crate::clock::{SharedClock, tls_time};
use crate::connection::{Finding, Recorder, classify_status, classify_text};
use crate::executor::Work;
use crate::link::{CALL_TIMEOUT, Link};
use crate::offline::OfflineTimer;
use crate::policy::AgentPolicy;
use crate::state::{AgentState, StateDir};
use crate::{checks, facts, local_api};

const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// What the loop works with.
#[derive(Debug)]
pub struct CheckIn<'a> {
    pub dir: &'a StateDir,
    pub state: AgentState,
    pub link: Arc<Link>,
    pub work: mpsc::Sender<Work>,
    pub data_paths: Vec<PathBuf>,
    pub policy_changed: Arc<Notify>,
    pub platform: Arc<dyn crate::platform::Platform>,
    pub timer: Arc<OfflineTimer>,
    pub standing: Arc<Recorder>,
    pub clock: SharedClock,
    /// The CAs trusted for the controller's certificate (`ca.pem`), reported at each check-in.
    pub cas: Vec<Vec<u8>>,
    /// Told when a CA rotation's trust bundle replaced `ca.pem`: the session starts again
    /// under it.
    pub trust_changed: Arc<Notify>,
}

/// Runs until the executor is gone.
pub async fn check_in_loop(mut c: CheckIn<'_>) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    // A receipt the controller refused without a certificate is not sent that way again in
    // this session.
    let mut receipt_refused = false;
    loop {
        let (report, inventory) =
            compliance_report(c.dir.root(), &c.data_paths, c.platform.clone()).await;
        let offline_wipe = crate::offline::pending(c.dir.root());
        let reported_wipe = offline_wipe.is_some();
        let request = CheckInRequest {
            facts: Some(facts::collect()),
            compliance: Some(report),
            offline_wipe,
            inventory,
            trusted_ca_hashes: crate::trust::hashes(&c.cas),
        };
        let wait = match check_in(&c.link, request).await {
            Ok((interval, commands, policy, bundle)) => {
                backoff.reset();
                c.timer.checked_in();
                if c.standing.record(Finding::CheckedIn, "") {
                    info!("checked in");
                }
                record_success(c.dir, &mut c.state, interval, &c.clock);
                if reported_wipe {
                    c.timer.receipt_reported();
                }
                // A changed policy: report compliance against it right away.
                if policy.is_some_and(|p| store_policy(c.dir.root(), p)) {
                    c.policy_changed.notify_one();
                }
                for command in commands {
                    if c.work.send(Work::Command(command)).await.is_err() {
                        return;
                    }
                }
                if c.work.send(Work::Flush).await.is_err() {
                    return;
                }
                match crate::trust::accept_bundle(c.dir, &c.cas, &bundle, c.clock.now()) {
                    Ok(true) => {
                        info!(
                            trusted = ?crate::trust::hashes(&bundle),
                            "the controller's CA rotation: trusting a new set of CAs"
                        );
                        c.trust_changed.notify_one();
                    }
                    Ok(false) => {}
                    Err(e) => {
                        error!(error = %e, "the controller sent a trust bundle this agent does not take; it keeps the CAs it trusts")
                    }
                }
                jittered(interval)
            }
            Err((server, finding, detail)) => {
                let url = c.link.url(server).to_string();
                c.standing.record(finding, &detail);
                match finding {
                    Finding::Unreachable => {
                        warn!(server = %url, "check-in failed: {detail}");
                        c.link.failed(server);
                        // A refusal can arrive as a broken pipe: under TLS 1.3 the controller
                        // refuses the certificate after the handshake, and a request big
                        // enough (one carrying the receipt) meets the closed socket before
                        // the alert is read. While the standing on record is a refusal, the
                        // receipt goes without the certificate as after one.
                        let refused = matches!(
                            c.standing.finding(),
                            Some(Finding::Revoked | Finding::CertificateExpired | Finding::Refused)
                        );
                        if refused
                            && !receipt_refused
                            && let Some(receipt) = crate::offline::pending(c.dir.root())
                        {
                            receipt_refused =
                                !report_without_certificate(&c, server, receipt).await;
                        }
                    }
                    Finding::UntrustedServer => {
                        error!(server = %url, detail = %detail, "{}", finding.advice());
                        c.link.failed(server);
                    }
                    _ => {
                        error!(server = %url, detail = %detail, "{}", finding.advice());
                        if !receipt_refused
                            && let Some(receipt) = crate::offline::pending(c.dir.root())
                        {
                            receipt_refused =
                                !report_without_certificate(&c, server, receipt).await;
                        }
                    }
                }
                backoff.next_delay()
            }
        };
        debug!(
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "next check-in"
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = c.policy_changed.notified() => {}
        }
    }
}

/// Sends the offline timer's receipt without the device certificate, which the controller
/// refuses (expired or revoked): the receipt's signature by the device key is its own proof.
/// False when the controller refused the receipt itself (not worth sending again).
async fn report_without_certificate(c: &CheckIn<'_>, server: usize, receipt: WipeReceipt) -> bool {
    let url = c.link.url(server);
    let tls = match ward_certs::tls::client_config_with_time(&c.cas, None, tls_time(&c.clock)) {
        Ok(tls) => tls,
        Err(e) => {
            error!(error = %e, "cannot report the offline-wipe receipt");
            return true;
        }
    };
    let channel = match connect(url, tls, ChannelOptions::default()).await {
        Ok(channel) => channel,
        Err(e) => {
            warn!(error = %e, "cannot report the offline-wipe receipt yet");
            return true;
        }
    };
    let request = ReportOfflineWipeRequest {
        device_id: c.state.device_id.clone(),
        receipt: Some(receipt),
    };
    match EnrollmentServiceClient::new(channel)
        .report_offline_wipe(request)
        .await
    {
        Ok(_) => {
            info!(
                server = %url,
                "offline-wipe receipt reported without the device certificate (the controller checked its signature)"
            );
            c.timer.receipt_reported();
            true
        }
        Err(status) => {
            let definitive = matches!(
                status.code(),
                tonic::Code::PermissionDenied
                    | tonic::Code::NotFound
                    | tonic::Code::InvalidArgument
                    | tonic::Code::Unimplemented
            );
            error!(
                server = %url,
                error = %status.message(),
                "the controller did not take the offline-wipe receipt; it stays in the state directory (offline-wipe.json) and `ward-agent status` shows it"
            );
            !definitive
        }
    }
}

/// Saves the policy if it differs from the stored one; true when it changed.
pub fn store_policy(state_dir: &std::path::Path, policy: ward_proto::v1::Policy) -> bool {
    let policy = AgentPolicy::from(policy);
    if AgentPolicy::load(state_dir).as_ref() == Some(&policy) {
        return false;
    }
    info!(scope = %policy.scope, revision = policy.revision, "policy received");
    if let Err(e) = policy.save(state_dir) {
        warn!(error = %e, "cannot store the policy");
    }
    true
}

/// Runs the compliance checks against the stored policy and takes the inventory (file reads
/// and package-manager calls: off the async threads).
async fn compliance_report(
    state_dir: &std::path::Path,
    data_paths: &[PathBuf],
    platform: Arc<dyn crate::platform::Platform>,
) -> (ComplianceReport, Option<ward_proto::v1::Inventory>) {
    let policy = AgentPolicy::load(state_dir).unwrap_or_default();
    let judge = policy.clone();
    let paths = data_paths.to_vec();
    let revision = policy.revision;
    let required = policy.required_checks();
    let (checks, inventory) = match tokio::task::spawn_blocking(move || {
        let refs: Vec<&std::path::Path> = paths.iter().map(PathBuf::as_path).collect();
        let checks = platform.compliance(&policy, &refs, checks::running_as_root());
        (checks, platform.inventory(&refs))
    })
    .await
    {
        Ok(taken) => taken,
        // A check that panicked is reported as an error on every required check (never as an
        // empty report nobody can read), and the agent keeps running.
        Err(e) => {
            error!(error = %e, "the compliance checks did not finish");
            (checks_that_did_not_run(&required, &e.to_string()), None)
        }
    };
    // The local gate withholds the data key while a required check whose action is block
    // (or wipe) fails; report-only failures go to the controller alone.
    let failures = judge.failures(&checks);
    let verdict = local_api::noncompliance_file(state_dir);
    let text = judge.blocking_verdict(&failures);
    if let Err(e) = ward_files::replace_file(&verdict, text.as_bytes(), 0o600) {
        warn!(error = %e, "cannot record the compliance verdict for the local API");
    }
    let report = ComplianceReport {
        policy_revision: revision,
        checks,
    };
    (report, inventory)
}

/// The report when the checks themselves failed: each required check with status error.
fn checks_that_did_not_run(
    required: &[ward_vocab::Check],
    why: &str,
) -> Vec<ward_proto::v1::ComplianceCheck> {
    required
        .iter()
        .map(|check| ward_proto::v1::ComplianceCheck {
            name: check.as_str().to_owned(),
            status: ward_proto::v1::CheckStatus::Error as i32,
            detail: format!("the agent's checks did not finish: {why}"),
        })
        .collect()
}

type CheckInOutcome = (
    Duration,
    Vec<ward_proto::v1::DeviceCommand>,
    Option<ward_proto::v1::Policy>,
    Vec<Vec<u8>>,
);

/// One check-in; a failure comes with the server tried and what it means.
async fn check_in(
    link: &Link,
    request: CheckInRequest,
) -> Result<CheckInOutcome, (usize, Finding, String)> {
    let mut connected = link
        .client()
        .await
        .map_err(|(server, e)| (server, classify_text(&e).unwrap_or(Finding::Unreachable), e))?;
    let server = connected.server;
    let call = connected.client.check_in(request);
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Err(_) => Err((server, Finding::Unreachable, "check-in timed out".into())),
        Ok(Ok(response)) => {
            let response = response.into_inner();
            let seconds = response.config.map_or(60, |c| c.checkin_interval_seconds);
            Ok((
                Duration::from_secs(u64::from(seconds)).max(MIN_INTERVAL),
                response.pending_commands,
                response.policy,
                response.trust_bundle_der,
            ))
        }
        Ok(Err(status)) => {
            let finding = classify_status(&status);
            let detail = match finding {
                Finding::Revoked | Finding::Refused
                    if !status.message().is_empty() && status.message() != "transport error" =>
                {
                    status.message().to_owned()
                }
                _ => error_chain(&status),
            };
            Err((server, finding, detail))
        }
    }
}

fn record_success(dir: &StateDir, state: &mut AgentState, interval: Duration, clock: &SharedClock) {
    state.last_checkin = Some(crate::rfc3339(clock.now()));
    state.checkin_interval_seconds = u32::try_from(interval.as_secs()).unwrap_or(u32::MAX);
    if let Err(e) = dir.save(state) {
        // Not fatal: the controller has the check-in; only `status` shows an older time.
        warn!(error = %e, "cannot record the check-in time");
    }
    debug!("checked in");
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use ward_proto::v1;

    use super::compliance_report;
    use crate::platform::{ActionError, Platform};
    use crate::policy::AgentPolicy;
    use ward_vocab::policy::Policy;

    /// A platform whose checks panic, as a bug in a check would.
    #[derive(Debug)]
    struct PanickingChecks;

    #[async_trait::async_trait]
    impl Platform for PanickingChecks {
        async fn lock_screens(&self, _message: &str) -> Result<(), ActionError> {
            Err(ActionError::Unsupported("test platform".into()))
        }
        async fn unlock_screens(&self) -> Result<(), ActionError> {
            Err(ActionError::Unsupported("test platform".into()))
        }
        fn compliance(&self, _: &AgentPolicy, _: &[&Path], _: bool) -> Vec<v1::ComplianceCheck> {
            panic!("a check with a bug");
        }
        fn inventory(&self, _: &[&Path]) -> Option<v1::Inventory> {
            None
        }
    }

    #[tokio::test]
    async fn a_check_that_panics_is_reported_as_an_error_on_every_required_check() {
        let state = tempfile::tempdir().unwrap();
        let policy = AgentPolicy::from(Policy {
            require_disk_encryption: true,
            require_firewall: true,
            ..Policy::default()
        });
        policy.save(state.path()).unwrap();
        let (report, inventory) =
            compliance_report(state.path(), &[], Arc::new(PanickingChecks)).await;
        assert!(inventory.is_none());
        let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["disk_encryption", "firewall"]);
        for check in &report.checks {
            assert_eq!(check.status, v1::CheckStatus::Error as i32, "{check:?}");
            assert!(check.detail.contains("did not finish"), "{check:?}");
        }
    }
}
