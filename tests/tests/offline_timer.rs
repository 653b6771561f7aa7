//! The offline timer end to end, with real `wardctl serve` and `ward-agent run` processes and
//! the agent's clock moved by the test (its test clock, or libfaketime): a device kept away
//! from the controller loses its messaging data on time whatever else goes wrong — its
//! certificate expires, the agent restarts, its clock is set back, a server it cannot verify
//! answers — and the receipt reaches the controller when the device is back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use ward_e2e::clock::{AgentClock, env_refs};
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, ControllerProcess, json};
use ward_e2e::timer::{
    offline_wipe_after_an_hour, wait_for_offline_wipe, wait_for_policy_and_check_in,
    wait_for_receipt_on_controller,
};

const DEADLINE: Duration = ward_e2e::timer::DEADLINE;
const HOUR: i64 = 3600;

fn problem_codes(status: &Value) -> Vec<String> {
    status["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_owned())
        .collect()
}

/// A genuine certificate from the controller's CA for the device's key and identity, which
/// expired an hour ago: what the device holds once its certificate ran out while offline.
fn expire_certificate(controller: &ControllerProcess, agent: &AgentFixture) {
    let ca = ward_controller::datadir::DataDir::new(&controller.data_dir)
        .load_ca()
        .unwrap();
    let key_pem = std::fs::read_to_string(agent.state_dir.join("device.key")).unwrap();
    let key = ward_certs::PrivateKeyDer::from_pem(&key_pem).unwrap();
    let csr =
        ward_certs::VerifiedCsr::from_der(&ward_certs::csr::make_csr(&key, "laptop").unwrap())
            .unwrap();
    let id = uuid::Uuid::parse_str(&agent.device_id).unwrap();
    let issued = ca
        .issue_client(
            &csr,
            &ward_certs::Identity::Device(id),
            time::OffsetDateTime::now_utc() - Duration::from_secs(3 * 3600),
            Duration::from_secs(2 * 3600),
        )
        .unwrap();
    std::fs::write(
        agent.state_dir.join("device.pem"),
        ward_certs::certificate_to_pem(&issued.der),
    )
    .unwrap();
}

/// The agent is still running, and its status names `state` as the connection's state and
/// among its problems.
fn still_running_and_saying(
    running: &mut ward_e2e::process::Daemon,
    agent: &AgentFixture,
    env: &[(&'static str, String)],
    state: &str,
) {
    assert!(
        running.is_running(),
        "the agent exited:\n{}",
        agent.log_text()
    );
    let status = eventually_blocking(&format!("status to say {state}"), DEADLINE, || {
        let status = agent.status(&env_refs(env));
        (status["connection"]["state"] == state).then_some(status)
    });
    assert!(problem_codes(&status).contains(&state.into()), "{status}");
}

#[test]
fn an_expired_certificate_and_a_restart_do_not_stop_the_offline_wipe() {
    let tmp = tempfile::tempdir().unwrap();
    let lifetime = ["--device-cert-lifetime", "1h"];
    let controller =
        ControllerProcess::start_with(&tmp.path().join("controller"), "127.0.0.1:0", &lifetime);
    offline_wipe_after_an_hour(&controller);
    let agent = AgentFixture::enroll(&controller, tmp.path(), "laptop", "lou@hospital.org");
    let clock = AgentClock::new(tmp.path());
    let env = clock.env();
    let running = agent.run(&env_refs(&env));
    wait_for_policy_and_check_in(&agent);
    running.stop();
    let listen = controller.listen_addr();
    drop(controller);

    // A week later by the laptop's clock: its one-hour certificate has expired and the
    // deadline has passed. It boots; the agent starts.
    clock.set(7 * 24 * HOUR);
    let mut running = agent.run(&env_refs(&env));
    wait_for_offline_wipe(&agent);
    assert!(
        running.is_running(),
        "the agent exited:\n{}",
        agent.log_text()
    );
    // The receipt file is written just before the timer records the wipe.
    let status = eventually_blocking("status to show the wipe", DEADLINE, || {
        let status = agent.status(&env_refs(&env));
        status["offline_timer"]["wiped_at"]
            .is_string()
            .then_some(status)
    });
    assert_eq!(status["certificate_expired"], true, "{status}");
    let codes = problem_codes(&status);
    assert!(codes.contains(&"certificate_expired".into()), "{status}");
    assert!(
        codes.contains(&"offline_wipe_receipt_pending".into()),
        "{status}"
    );
    assert_eq!(status["offline_timer"]["receipt"], "pending", "{status}");

    // Back in the hospital (by the controller's clock the certificate is still good): the
    // receipt goes with the next check-in.
    let controller =
        ControllerProcess::start_with(&tmp.path().join("controller"), &listen, &lifetime);
    let device = wait_for_receipt_on_controller(&controller, &agent);
    assert!(device["offline_wipe_at"].is_string(), "{device}");
    eventually_blocking("the agent to clear the receipt", DEADLINE, || {
        (!agent.state_dir.join("offline-wipe.json").exists()).then_some(())
    });
    eventually_blocking("status to say the receipt was reported", DEADLINE, || {
        let status = agent.status(&env_refs(&env));
        (status["offline_timer"]["receipt"] == "reported").then_some(())
    });
}

#[test]
fn a_certificate_that_expired_while_offline_still_gets_its_receipt_to_the_controller() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    offline_wipe_after_an_hour(&controller);
    let agent = AgentFixture::enroll(&controller, tmp.path(), "laptop", "lia@hospital.org");
    let clock = AgentClock::new(tmp.path());
    let env = clock.env();
    let running = agent.run(&env_refs(&env));
    wait_for_policy_and_check_in(&agent);
    running.stop();

    // Two hours offline; the certificate ran out meanwhile, by every clock. The controller
    // refuses it at the handshake.
    expire_certificate(&controller, &agent);
    clock.set(2 * HOUR);
    let mut running = agent.run(&env_refs(&env));
    wait_for_offline_wipe(&agent);
    // The receipt's own signature speaks for the device: it reaches the controller without
    // the certificate.
    let device = wait_for_receipt_on_controller(&controller, &agent);
    assert_eq!(device["state"], "active", "{device}");
    still_running_and_saying(&mut running, &agent, &env, "certificate_expired");
    eventually_blocking("status to say the receipt was reported", DEADLINE, || {
        let status = agent.status(&env_refs(&env));
        (status["offline_timer"]["receipt"] == "reported").then_some(())
    });
    let log = agent.log_text();
    assert!(log.contains("its certificate has expired"), "{log}");
    let audit = json(&controller.ctl(&["audit", "list", "--output", "json"]));
    assert!(
        audit.to_string().contains("without_certificate"),
        "the audit trail says how the receipt came: {audit}"
    );
}

/// The timer across a restart with the clock set back, on whichever clock `clock` drives.
fn setting_the_clock_back_after_a_restart_does_not_extend_the_deadline(clock: AgentClock) {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    offline_wipe_after_an_hour(&controller);
    let agent = AgentFixture::enroll(&controller, tmp.path(), "laptop", "leo@hospital.org");
    let env = clock.env();
    let running = agent.run(&env_refs(&env));
    wait_for_policy_and_check_in(&agent);
    drop(controller);

    // 59 minutes 20 seconds without a check-in by the device's clock; then it is shut down.
    clock.set(HOUR - 40);
    running.stop();
    assert_eq!(
        agent.canary_files().len() as u64,
        ward_e2e::process::CANARY_FILES,
        "wiped before the deadline"
    );

    // Someone sets the clock back a day and starts it again: the timer goes on counting
    // from where it stopped, and the wipe comes some forty seconds later, not a day later.
    clock.set(-24 * HOUR);
    let _running = agent.run(&env_refs(&env));
    wait_for_offline_wipe(&agent);
}

#[test]
fn the_clock_set_back_after_a_restart_does_not_extend_the_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    setting_the_clock_back_after_a_restart_does_not_extend_the_deadline(AgentClock::new(
        tmp.path(),
    ));
}

/// The same with the agent's system clock moved by libfaketime: the real clock path, TLS
/// stack and all.
#[test]
#[cfg_attr(
    not(ward_faketime),
    ignore = "needs faketime: apt-get install faketime"
)]
fn under_libfaketime_the_clock_set_back_after_a_restart_does_not_extend_the_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    setting_the_clock_back_after_a_restart_does_not_extend_the_deadline(AgentClock::faketime(
        tmp.path(),
    ));
}

#[test]
fn a_server_certificate_from_an_unknown_ca_counts_as_silence() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    offline_wipe_after_an_hour(&controller);
    let agent = AgentFixture::enroll(&controller, tmp.path(), "laptop", "lena@hospital.org");
    let clock = AgentClock::new(tmp.path());
    let env = clock.env();
    let _running = agent.run(&env_refs(&env));
    wait_for_policy_and_check_in(&agent);
    let listen = controller.listen_addr();
    drop(controller);

    // Something else answers at the controller's address, with a certificate from another
    // CA (another Ward controller, as good an impostor as any).
    let impostor = ControllerProcess::start_on(&tmp.path().join("impostor"), &listen);
    clock.set(2 * HOUR);
    wait_for_offline_wipe(&agent);
    eventually_blocking("status to name the untrusted server", DEADLINE, || {
        let status = agent.status(&env_refs(&env));
        (status["connection"]["state"] == "untrusted_server").then_some(())
    });
    assert!(impostor.devices().is_empty());
}

#[test]
fn a_session_that_cannot_start_does_not_stop_the_timer() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    offline_wipe_after_an_hour(&controller);
    let agent = AgentFixture::enroll(&controller, tmp.path(), "laptop", "lex@hospital.org");
    let clock = AgentClock::new(tmp.path());
    let env = clock.env();
    let running = agent.run(&env_refs(&env));
    wait_for_policy_and_check_in(&agent);
    running.stop();
    drop(controller);

    // The device certificate is damaged (a disk error, a meddler): no session can start.
    std::fs::write(agent.state_dir.join("device.pem"), "not a certificate").unwrap();
    clock.set(2 * HOUR);
    let mut running = agent.run(&env_refs(&env));
    wait_for_offline_wipe(&agent);
    still_running_and_saying(&mut running, &agent, &env, "cannot_start");
}

/// Starts the agent offline two hours after its last check-in, once `meddle` has changed its
/// messaging directory while it was stopped (the app's user owns the directory's parent, so
/// no privilege is needed), and waits for the timer to destroy the messaging key. Returns the
/// agent, still running (dropping it kills it, which cut the wipe short after the key's
/// destruction: the caller waiting for the wipe to end then waited on a dead agent).
fn offline_wipe_after_the_user_meddled(
    tmp: &std::path::Path,
    meddle: impl FnOnce(&AgentFixture),
) -> ward_e2e::process::Daemon {
    let controller = ControllerProcess::start(&tmp.join("controller"));
    offline_wipe_after_an_hour(&controller);
    let agent = AgentFixture::enroll(&controller, tmp, "laptop", "lars@hospital.org");
    let clock = AgentClock::new(tmp);
    let env = clock.env();
    let running = agent.run(&env_refs(&env));
    wait_for_policy_and_check_in(&agent);
    running.stop();
    drop(controller);
    meddle(&agent);

    clock.set(2 * HOUR);
    let mut running = agent.run(&env_refs(&env));
    eventually_blocking(
        "the offline timer to destroy the messaging key",
        DEADLINE,
        || (!agent.state_dir.join("messaging.key").exists()).then_some(()),
    );
    assert!(
        running.is_running(),
        "the agent exited:\n{}",
        agent.log_text()
    );
    running
}

/// Attack by the app's user: move the messaging directory away while the agent is stopped
/// (a reboot), wait out the deadline, move it back. The agent must still start, and its
/// timer must still destroy the key that makes the moved data readable.
#[test]
fn a_messaging_dir_moved_away_before_a_restart_does_not_switch_the_timer_off() {
    let tmp = tempfile::tempdir().unwrap();
    let _running = offline_wipe_after_the_user_meddled(tmp.path(), |agent| {
        std::fs::rename(&agent.messaging_dir, tmp.path().join("hidden")).unwrap();
    });
}

/// Attack by the app's user: replace the messaging directory with a symbolic link to a
/// directory they may not touch while the agent is stopped. The agent runs as root: its wipe
/// must not follow the link at its next start (the key is destroyed all the same).
#[test]
fn a_messaging_dir_swapped_for_a_symlink_before_a_restart_is_not_wiped_through() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("someone-elses");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("payroll.db"), "hospital payroll").unwrap();
    let _running = offline_wipe_after_the_user_meddled(tmp.path(), |agent| {
        std::fs::rename(&agent.messaging_dir, tmp.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&outside, &agent.messaging_dir).unwrap();
    });
    // The wipe has ended: finished (through the link), or failed (refusing it).
    let agent = AgentFixture::existing(tmp.path(), "laptop", String::new());
    eventually_blocking("the offline wipe to end", DEADLINE, || {
        let journal = std::fs::read_to_string(agent.state_dir.join("wipe-journal.json")).ok()?;
        (journal.contains("\"done\"") || agent.log_text().contains("offline wipe failed"))
            .then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(outside.join("payroll.db"))
            .ok()
            .as_deref(),
        Some("hospital payroll"),
        "the wipe followed the link and destroyed someone else's file"
    );
}

/// A small tmpfs mounted over the agent's state directory with its files copied in, then
/// filled until not one more byte fits; unmounted when dropped.
struct FullStateDisk {
    state_dir: std::path::PathBuf,
}

impl FullStateDisk {
    fn over(state_dir: &std::path::Path) -> Self {
        let saved = state_dir.with_extension("saved");
        std::fs::rename(state_dir, &saved).unwrap();
        std::fs::create_dir(state_dir).unwrap();
        let run = |cmd: &mut std::process::Command| {
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{cmd:?}: {out:?}");
        };
        run(std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs"])
            .arg(state_dir));
        run(std::process::Command::new("cp")
            .arg("-a")
            .arg(saved.join("."))
            .arg(state_dir));
        use std::io::Write;
        let mut filler = std::fs::File::create(state_dir.join("filler")).unwrap();
        while filler.write_all(&[0xa5; 4096]).is_ok() {}
        while filler.write_all(&[0xa5]).is_ok() {}
        let full = std::fs::write(state_dir.join("one-more"), [0; 4096]).unwrap_err();
        assert_eq!(full.raw_os_error(), Some(28), "ENOSPC: {full}");
        Self {
            state_dir: state_dir.to_path_buf(),
        }
    }
}

impl Drop for FullStateDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.state_dir)
            .status();
    }
}

/// Attack review M2, as a thief would go about it: the disk full (so no new file can be
/// written), the power cut 40 s before the deadline, the clock set back a day, the device
/// started again. The timer's record was replaced through a new file, which a full disk
/// refuses: the start resumed from the last record written (the check-in), and the deadline
/// moved an hour away at every such start. It is now written in place: the wipe (here: the
/// key's destruction; the wipe journal itself needs free space) comes some forty seconds
/// after the start.
#[test]
#[cfg_attr(
    not(ward_root),
    ignore = "needs root, to mount a small tmpfs for the agent's state directory"
)]
fn a_full_disk_a_power_cut_and_the_clock_set_back_do_not_extend_the_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    offline_wipe_after_an_hour(&controller);
    let agent = AgentFixture::enroll(&controller, tmp.path(), "laptop", "lily@hospital.org");
    let clock = AgentClock::new(tmp.path());
    let env = clock.env();
    let running = agent.run(&env_refs(&env));
    wait_for_policy_and_check_in(&agent);
    running.stop();
    drop(controller);
    let _disk = FullStateDisk::over(&agent.state_dir);

    // Offline, on a full disk: 59 minutes 20 seconds without a check-in by the device's clock,
    // written down by the agent within a few ticks (its status reads the timer's record; the
    // old agent could not write it until the wipe freed space), then the power is cut.
    let running = agent.run(&env_refs(&env));
    clock.set(HOUR - 40);
    let within = Duration::from_secs(25);
    eventually_blocking(
        "the count on the full disk to be written down",
        within,
        || {
            let status = agent.status(&env_refs(&env));
            let timer = &status["offline_timer"];
            let at = |name: &str| {
                time::OffsetDateTime::parse(
                    timer[name].as_str()?,
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()
            };
            (at("counted_until")? - at("last_checkin")? >= Duration::from_secs(3600 - 40))
                .then_some(())
        },
    );
    drop(running);
    assert!(
        agent.state_dir.join("messaging.key").exists(),
        "wiped before the deadline"
    );

    clock.set(-24 * HOUR);
    let running = agent.run(&env_refs(&env));
    eventually_blocking(
        "the offline timer to destroy the messaging key",
        DEADLINE,
        || (!agent.state_dir.join("messaging.key").exists()).then_some(()),
    );
    drop(running);
}
