//! `wardctl console` in a real headless Chromium (WebDriver), against a real `wardctl serve`
//! and real agents: the one-time login, a wipe followed live to its verified receipt, an
//! offboarding of a user with two devices and its downloadable report, the automatic
//! logoff, and a helpdesk admin who is offered no wipe and whose forged one the controller
//! refuses. Screenshots at 1280×800 go to each test's temporary directory (and to
//! $WARD_CONSOLE_SCREENSHOTS when set, which is how docs/console/ is made).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use fantoccini::Locator;
use fantoccini::key::Key;
use serde_json::Value;
use ward_e2e::console::{Browser, ConsoleProcess};
use ward_e2e::eventually;
use ward_e2e::process::{AgentFixture, ControllerProcess, json};

const PATIENCE: Duration = Duration::from_secs(120);

async fn text_of(browser: &Browser, css: &str) -> Option<String> {
    match browser.client.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.ok(),
        Err(_) => None,
    }
}

/// Waits until the element `css` exists and its text contains `want`.
async fn wait_text(browser: &Browser, css: &str, want: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        if let Some(text) = text_of(browser, css).await.filter(|t| t.contains(want)) {
            return text;
        }
        if start.elapsed() > PATIENCE {
            let url = browser
                .client
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            let page = browser.client.source().await.unwrap_or_default();
            panic!(
                "timed out after {PATIENCE:?} waiting for {css} to say {want:?} at {url}:\n{page}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn screenshot(browser: &Browser, dir: &Path, name: &str) {
    let path = dir.join(name);
    browser.screenshot(&path).await;
    if let Some(out) = std::env::var_os("WARD_CONSOLE_SCREENSHOTS") {
        std::fs::create_dir_all(&out).unwrap();
        std::fs::copy(&path, Path::new(&out).join(name)).unwrap();
    }
}

/// Controls without a label, buttons without a name, inline scripts: none on any page.
async fn assert_accessible_basics(browser: &Browser, page: &str) {
    let problems = browser
        .client
        .execute(
            r#"
            const bad = [];
            document.querySelectorAll('input:not([type=hidden]), select, textarea').forEach(e => {
              if (!(e.labels && e.labels.length) && !e.getAttribute('aria-label')) bad.push('unlabelled: ' + e.outerHTML);
            });
            document.querySelectorAll('button').forEach(e => {
              if (!e.textContent.trim() && !e.getAttribute('aria-label')) bad.push('nameless: ' + e.outerHTML);
            });
            document.querySelectorAll('script:not([src])').forEach(e => bad.push('inline script'));
            if (!document.documentElement.lang) bad.push('no lang');
            if (!document.querySelector('h1')) bad.push('no h1');
            return bad;
            "#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(problems, Value::Array(vec![]), "{page}");
}

fn wait_checked_in(controller: &ControllerProcess, n: usize) {
    ward_e2e::eventually_blocking("the agents to check in", PATIENCE, || {
        let devices = controller.devices();
        (devices.len() == n && devices.iter().all(|d| !d["last_seen"].is_null())).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(ward_chromium),
    ignore = "needs chromium: apt-get install chromium chromium-driver"
)]
async fn an_admin_logs_in_once_wipes_a_device_live_to_its_receipt_and_offboards_a_user() {
    let dir = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&dir.path().join("data"));
    let ann = AgentFixture::enroll(&controller, dir.path(), "ann", "ann@hospital.org");
    let bob1 = AgentFixture::enroll(&controller, dir.path(), "bob1", "bob@hospital.org");
    let bob2 = AgentFixture::enroll(&controller, dir.path(), "bob2", "bob@hospital.org");
    let _agents = [ann.run(&[]), bob1.run(&[]), bob2.run(&[])];
    wait_checked_in(&controller, 3);

    let mut console = ConsoleProcess::start(
        &["--data-dir", controller.data_dir.to_str().unwrap()],
        &[],
        dir.path().join("console.log"),
    );
    let login = console.login_url(0);
    let base = console.base();
    let browser = Browser::start().await;
    let c = &browser.client;

    // The one-time link logs in once; the second time it is refused.
    c.goto(&login).await.unwrap();
    wait_text(&browser, "h1", "Fleet").await;
    assert_eq!(
        text_of(&browser, "header .who span").await.unwrap(),
        "admin (admin)"
    );
    assert_accessible_basics(&browser, "fleet").await;
    screenshot(&browser, dir.path(), "fleet.png").await;
    c.goto(&login).await.unwrap();
    wait_text(&browser, "h1", "not valid").await;

    // Find ann's device from the list.
    c.goto(&format!("{base}/devices")).await.unwrap();
    assert_accessible_basics(&browser, "devices").await;
    c.find(Locator::Css("#q"))
        .await
        .unwrap()
        .send_keys("ann@")
        .await
        .unwrap();
    c.find(Locator::Css("form.filters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&browser, "p[role=status]", "1 of 3 devices").await;
    c.find(Locator::Css("#devices tbody a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&browser, "#h-actions", "Actions").await;
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with(&ann.device_id)
    );
    assert_accessible_basics(&browser, "device").await;
    screenshot(&browser, dir.path(), "device.png").await;

    // Wipe its messaging data: reason and host name typed, then live progress to the end.
    let wipe = c
        .find(Locator::Css("details[data-action=wipe_messaging]"))
        .await
        .unwrap();
    wipe.find(Locator::Css("summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let confirm = wipe
        .find(Locator::Css("input[name=confirm]"))
        .await
        .unwrap();
    let hostname = confirm.attr("data-confirm").await.unwrap().unwrap();
    let submit = wipe
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap();
    wipe.find(Locator::Css("input[name=reason]"))
        .await
        .unwrap()
        .send_keys("phone lost in ward 4")
        .await
        .unwrap();
    assert!(
        !submit.is_enabled().await.unwrap(),
        "enabled before the host name is typed"
    );
    confirm.send_keys(&hostname).await.unwrap();
    submit.click().await.unwrap();
    wait_text(&browser, "h1", "Command: wipe (messaging)").await;
    // No reload from here on: the page follows the command over Server-Sent Events.
    wait_text(&browser, "#state-line", "verified by the controller").await;
    let receipt = wait_text(&browser, "#receipt", "verified").await;
    assert!(receipt.contains(&ann.device_id), "{receipt}");
    assert!(
        ann.canary_files().is_empty(),
        "the wipe left messaging data"
    );
    let commands = json(&controller.ctl(&[
        "command",
        "list",
        "--device",
        &ann.device_id,
        "--output",
        "json",
    ]));
    assert_eq!(commands[0]["state"], "succeeded");
    assert_eq!(commands[0]["reason"], "phone lost in ward 4");

    // Offboard bob: both devices, live, to the end; the report as the CLI gives it.
    c.goto(&format!("{base}/offboard?user=bob%40hospital.org"))
        .await
        .unwrap();
    assert_eq!(
        c.find_all(Locator::Css("#user-devices tbody tr"))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_accessible_basics(&browser, "offboard").await;
    c.find(Locator::Css("#reason"))
        .await
        .unwrap()
        .send_keys("left the hospital")
        .await
        .unwrap();
    c.find(Locator::Css("#confirm"))
        .await
        .unwrap()
        .send_keys("bob@hospital.org")
        .await
        .unwrap();
    c.find(Locator::Css("form[action='/offboard'] button.danger"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&browser, "h1", "Offboarding bob@hospital.org").await;
    eventually(
        "the offboarding to complete on the page",
        PATIENCE,
        || async {
            let state = c.find(Locator::Css("#offboard-state")).await.ok()?;
            (state.attr("data-complete").await.ok()?? == "true").then_some(())
        },
    )
    .await;
    let rows = c
        .find_all(Locator::Css("#offboard-devices tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let text = row.text().await.unwrap();
        assert!(
            text.contains("succeeded") && text.contains("verified"),
            "{text}"
        );
    }
    screenshot(&browser, dir.path(), "offboard.png").await;
    let report = c
        .execute(
            "return fetch('/offboard/report.json?user=bob%40hospital.org').then(r => r.text())",
            vec![],
        )
        .await
        .unwrap();
    let report: Value = serde_json::from_str(report.as_str().unwrap()).unwrap();
    let cli = json(&controller.ctl(&[
        "user",
        "offboard",
        "bob@hospital.org",
        "--reason",
        "again",
        "--output",
        "json",
    ]));
    assert_eq!(report["complete"], true);
    assert_eq!(
        report["devices"], cli["devices"],
        "the console's report is the CLI's"
    );
    assert!(bob1.canary_files().is_empty() && bob2.canary_files().is_empty());

    // The other pages render for an admin and pass the same basics.
    for page in ["/commands", "/policy", "/audit", "/audit/verify", "/enroll"] {
        c.goto(&format!("{base}{page}")).await.unwrap();
        wait_text(&browser, "h1", "").await;
        assert_accessible_basics(&browser, page).await;
    }
    wait_text(&browser, "h1", "Enrollment").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(ward_chromium),
    ignore = "needs chromium: apt-get install chromium chromium-driver"
)]
async fn a_helpdesk_admin_is_offered_no_wipe_and_a_forged_one_is_refused_by_the_controller() {
    let dir = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&dir.path().join("data"));
    let dee = AgentFixture::enroll(&controller, dir.path(), "dee", "dee@hospital.org");
    let _agent = dee.run(&[]);
    wait_checked_in(&controller, 1);
    let passphrase = dir.path().join("desk.pw");
    std::fs::write(&passphrase, "a long helpdesk passphrase\n").unwrap();
    std::fs::set_permissions(
        &passphrase,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let bundle = dir.path().join("desk.pem");
    let issued = controller.ctl(&[
        "admin",
        "issue",
        "desk",
        "--role",
        "helpdesk",
        "--out",
        bundle.to_str().unwrap(),
        "--passphrase-file",
        passphrase.to_str().unwrap(),
    ]);
    assert!(
        issued.status.success(),
        "{}",
        ward_e2e::process::stderr(&issued)
    );

    // The console unlocks the bundle as every wardctl command does.
    let mut console = ConsoleProcess::start(
        &[
            "--admin-cert",
            bundle.to_str().unwrap(),
            "--server",
            &controller.url,
        ],
        &[("WARD_ADMIN_PASSPHRASE_FILE", passphrase.to_str().unwrap())],
        dir.path().join("console.log"),
    );
    let login = console.login_url(0);
    let base = console.base();
    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&login).await.unwrap();
    wait_text(&browser, "header .who span", "desk (helpdesk)").await;
    c.goto(&format!("{base}/devices/{}", dee.device_id))
        .await
        .unwrap();
    wait_text(&browser, "#h-actions", "Actions").await;
    let offered: Vec<String> = {
        let mut keys = Vec::new();
        for d in c
            .find_all(Locator::Css("details[data-action]"))
            .await
            .unwrap()
        {
            keys.push(d.attr("data-action").await.unwrap().unwrap());
        }
        keys
    };
    assert_eq!(
        offered,
        ["lock", "unlock", "disable", "enable"],
        "helpdesk may lock and disable only"
    );

    // Keyboard only: open the lock form with Enter, type the message, submit with Enter.
    let lock = c
        .find(Locator::Css("details[data-action=lock]"))
        .await
        .unwrap();
    lock.find(Locator::Css("summary"))
        .await
        .unwrap()
        .send_keys(&Key::Enter.to_string())
        .await
        .unwrap();
    let message = lock
        .find(Locator::Css("input[name=message]"))
        .await
        .unwrap();
    message
        .send_keys(&format!("Call the IT desk{}", Key::Enter))
        .await
        .unwrap();
    wait_text(&browser, "h1", "Command: lock").await;
    // Followed live to its end (this container has no login manager, so the lock itself
    // fails, with the agent's reason).
    eventually("the lock to finish on the page", PATIENCE, || async {
        c.find(Locator::Css(
            "#progress [data-state=succeeded], #progress [data-state=failed]",
        ))
        .await
        .ok()
    })
    .await;

    // A forged wipe form with the session's genuine CSRF token: the controller refuses it.
    c.goto(&format!("{base}/devices/{}", dee.device_id))
        .await
        .unwrap();
    wait_text(&browser, "#h-actions", "Actions").await;
    c.execute(
        r#"
        const f = document.createElement('form');
        f.method = 'post';
        f.action = '/devices/' + arguments[0] + '/action';
        const add = (n, v) => { const i = document.createElement('input'); i.type = 'hidden'; i.name = n; i.value = v; f.appendChild(i); };
        add('csrf', document.querySelector('input[name=csrf]').value);
        add('action', 'wipe_messaging');
        add('reason', 'forged');
        add('confirm', document.querySelector('#h-facts + dl dd:nth-of-type(3)').textContent.trim());
        add('key', 'forged-1');
        document.body.appendChild(f);
        f.submit();
        "#,
        vec![Value::from(dee.device_id.clone())],
    )
    .await
    .unwrap();
    let refusal = wait_text(&browser, "main", "helpdesk").await;
    assert!(refusal.contains("may not wipe messaging data"), "{refusal}");
    wait_text(&browser, "h1", "The controller refused this").await;

    // A forged CSRF token: refused by the console before anything is sent.
    c.goto(&format!("{base}/devices/{}", dee.device_id))
        .await
        .unwrap();
    wait_text(&browser, "#h-actions", "Actions").await;
    c.execute(
        "document.querySelectorAll('input[name=csrf]').forEach(i => i.value = 'forged');",
        vec![],
    )
    .await
    .unwrap();
    let lock = c
        .find(Locator::Css("details[data-action=lock]"))
        .await
        .unwrap();
    lock.find(Locator::Css("summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    lock.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&browser, "h1", "CSRF").await;

    let commands = json(&controller.ctl(&[
        "command",
        "list",
        "--device",
        &dee.device_id,
        "--output",
        "json",
    ]));
    let kinds: Vec<&str> = commands
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["lock"], "only the genuine lock was issued");
    let audit = json(&controller.ctl(&["audit", "list", "--output", "json"]));
    let denied = audit
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["actor"] == "ward://admin/desk" && e["action"] == "denied");
    assert!(denied, "the controller recorded the refused wipe");
    assert_eq!(
        dee.canary_files().len() as u64,
        ward_e2e::process::CANARY_FILES,
        "the messaging data is untouched"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(ward_chromium),
    ignore = "needs chromium: apt-get install chromium chromium-driver"
)]
async fn the_console_logs_off_after_the_inactivity_limit() {
    let dir = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&dir.path().join("data"));
    let mut console = ConsoleProcess::start(
        &[
            "--data-dir",
            controller.data_dir.to_str().unwrap(),
            "--idle-timeout",
            "3s",
        ],
        &[],
        dir.path().join("console.log"),
    );
    let login = console.login_url(0);
    let base = console.base();
    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&login).await.unwrap();
    wait_text(&browser, "h1", "Fleet").await;
    // Nothing is touched: the page takes itself off the screen, and the server ended the
    // session.
    eventually("the page to log off", PATIENCE, || async {
        c.current_url()
            .await
            .ok()
            .filter(|u| u.path() == "/logged-out")
    })
    .await;
    wait_text(&browser, "h1", "Logged off").await;
    c.goto(&format!("{base}/devices")).await.unwrap();
    wait_text(&browser, "h1", "Logged off").await;
    // Only a new link from the terminal lets the admin back in.
    let relogin = console.login_url(1);
    assert_ne!(relogin, login);
    c.goto(&relogin).await.unwrap();
    wait_text(&browser, "h1", "Fleet").await;
    browser.close().await;
}
