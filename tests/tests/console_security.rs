//! `wardctl console` as an attacker meets it, over plain HTTP (no browser needed): a request
//! without the session cookie, a reused or forged login link, a forged CSRF token, a
//! cross-site form, a foreign Host header (DNS rebinding) are all refused and change
//! nothing; the controller's listening sockets are the same before and after the console
//! starts; the console listens on loopback only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ward_e2e::console::{ConsoleProcess, http, listening_sockets};
use ward_e2e::process::{ControllerProcess, json, stderr, wardctl};

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..at + 43].to_owned()
}

#[test]
fn the_console_refuses_what_has_no_session_a_forged_token_or_a_foreign_origin() {
    let dir = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&dir.path().join("data"));
    let before = listening_sockets(controller.daemon.pid());
    assert!(!before.is_empty(), "the controller listens somewhere");

    let mut console = ConsoleProcess::start(
        &["--data-dir", controller.data_dir.to_str().unwrap()],
        &[],
        dir.path().join("console.log"),
    );
    let base = console.base();
    let login = console.login_url(0);
    let path = |url: &str| url.trim_start_matches(&base).to_owned();

    // The console listens on loopback only, and the controller gained no socket.
    let own = listening_sockets(console.pid());
    assert!(
        !own.is_empty() && own.iter().all(|a| a.starts_with("127.0.0.1:")),
        "{own:?}"
    );
    assert_eq!(listening_sockets(controller.daemon.pid()), before);

    // No session: refused, whatever the page.
    for page in [
        "/",
        "/devices",
        "/enroll",
        "/audit/verify",
        "/commands/x/events",
    ] {
        let (status, body) = http(&base, "GET", page, &[], "");
        assert_eq!(status, 401, "{page}: {body}");
        assert!(body.contains("not logged in"), "{page}");
    }
    let (status, _) = http(&base, "GET", "/login?token=forged", &[], "");
    assert_eq!(status, 403);

    // The one-time link: a cookie the page's script cannot read and other sites cannot send.
    let (status, answer) = http(&base, "GET", &path(&login), &[], "");
    assert_eq!(status, 303, "{answer}");
    let set_cookie = header(&answer, "set-cookie").unwrap();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let (status, _) = http(&base, "GET", &path(&login), &[], "");
    assert_eq!(status, 403, "a login link works once");

    let (status, page) = http(&base, "GET", "/enroll", &[("Cookie", &cookie)], "");
    assert_eq!(status, 200, "{page}");
    let csp = header(&page, "content-security-policy").unwrap();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(header(&page, "cache-control"), Some("no-store"));
    assert!(!page.contains("<script>"), "no inline script");
    let csrf = csrf_of(&page);

    // DNS rebinding: the right cookie under a foreign host name.
    let port = base.rsplit(':').next().unwrap();
    let evil = format!("evil.example:{port}");
    let (status, _) = http(
        &base,
        "GET",
        "/",
        &[("Host", &evil), ("Cookie", &cookie)],
        "",
    );
    assert_eq!(status, 421);

    let form = |csrf: &str| format!("csrf={csrf}&user=mallory%40hospital.org&ttl=15m");
    let post = |headers: &[(&str, &str)], body: &str| {
        let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        http(&base, "POST", "/enroll", &all, body)
    };
    // Without the cookie, with a forged CSRF token, from another origin: refused.
    assert_eq!(post(&[], &form(&csrf)).0, 401);
    let (status, body) = post(
        &[("Cookie", &cookie)],
        &form("forged-token-forged-token-forged-token-1234"),
    );
    assert_eq!(status, 403);
    assert!(body.contains("CSRF"), "{body}");
    assert_eq!(
        post(
            &[("Cookie", &cookie)],
            "user=mallory%40hospital.org&ttl=15m"
        )
        .0,
        403
    );
    assert_eq!(
        post(
            &[("Cookie", &cookie), ("Origin", "http://evil.example")],
            &form(&csrf)
        )
        .0,
        403
    );
    assert_eq!(
        post(
            &[("Cookie", &cookie), ("Sec-Fetch-Site", "cross-site")],
            &form(&csrf)
        )
        .0,
        403
    );
    let tokens = json(&controller.ctl(&["token", "list", "--output", "json"]));
    assert_eq!(
        tokens,
        serde_json::json!([]),
        "a refused form created a token"
    );

    // The genuine form works (the checks are not a wall that refuses everything).
    let (status, body) = post(&[("Cookie", &cookie), ("Origin", &base)], &form(&csrf));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ward-agent enroll --server"));
    let tokens = json(&controller.ctl(&["token", "list", "--output", "json"]));
    assert_eq!(tokens[0]["user"], "mallory@hospital.org");

    // Logging out ends the session; its cookie and CSRF token are void.
    let (status, _) = http(
        &base,
        "POST",
        "/logout",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &format!("csrf={csrf}"),
    );
    assert_eq!(status, 303);
    assert_eq!(http(&base, "GET", "/", &[("Cookie", &cookie)], "").0, 401);
    let relogin = console.login_url(1);
    assert_ne!(relogin, login);
    assert_eq!(http(&base, "GET", &path(&login), &[], "").0, 403);

    assert_eq!(
        listening_sockets(controller.daemon.pid()),
        before,
        "the controller gained a socket"
    );
}

#[test]
fn the_console_refuses_a_non_loopback_address_and_an_idle_limit_out_of_range() {
    for (args, says) in [
        (
            vec![
                "console",
                "--listen",
                "0.0.0.0:0",
                "--data-dir",
                "/nonexistent",
            ],
            "loopback",
        ),
        (
            vec![
                "console",
                "--idle-timeout",
                "0s",
                "--data-dir",
                "/nonexistent",
            ],
            "out of range",
        ),
        (
            vec![
                "console",
                "--idle-timeout",
                "13h",
                "--data-dir",
                "/nonexistent",
            ],
            "out of range",
        ),
    ] {
        let out = wardctl(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
}
