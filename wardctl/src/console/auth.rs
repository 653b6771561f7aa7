//! Who may use the console: the holder of a one-time login token, then of the session cookie
//! it became, until the session has been idle too long. Every state-changing request also
//! carries the session's CSRF token.
//!
//! The console has one admin (the one whose bundle it unlocked) and so at most one session at
//! a time. Secrets here are random 256-bit values, compared in constant time, never logged
//! and zeroized on drop.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

/// A random 256-bit secret in URL-safe base64. No `Debug`: it must not reach a log.
pub(super) struct Secret(Zeroizing<String>);

impl Secret {
    pub(super) fn generate() -> Self {
        let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
        Self(Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref())))
    }

    pub(super) fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with what a client sent.
    pub(super) fn matches(&self, offered: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), offered.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

struct Session {
    id: Secret,
    csrf: Secret,
    last_active: Instant,
}

/// Why a request is not let in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// No session cookie, or one that names no session.
    NoSession,
    /// The session ended after too long without a request.
    IdleTimeout,
}

/// What a login attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Login {
    /// The token was good: here is the new session (its cookie value is [`Gate::cookie`]).
    Started,
    /// The token was used already (or never issued): a login link works once.
    Refused,
}

/// The console's login state.
pub(super) struct Gate {
    login: Option<Secret>,
    session: Option<Session>,
    idle: Duration,
}

/// Says whether a login token or a session exists, never what they are.
impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("login_token_unused", &self.login.is_some())
            .field("session_open", &self.session.is_some())
            .field("idle", &self.idle)
            .finish()
    }
}

impl Gate {
    /// A gate with a fresh one-time login token.
    pub(super) fn new(idle: Duration) -> Self {
        Self {
            login: Some(Secret::generate()),
            session: None,
            idle,
        }
    }

    pub(super) fn idle_limit(&self) -> Duration {
        self.idle
    }

    /// The current one-time login token, if one is waiting to be used.
    pub(super) fn login_token(&self) -> Option<&str> {
        self.login.as_ref().map(Secret::expose)
    }

    /// Redeems the one-time token: on success it is void and a new session replaces any old
    /// one.
    pub(super) fn log_in(&mut self, offered: &str, now: Instant) -> Login {
        match &self.login {
            Some(token) if token.matches(offered) => {
                self.login = None;
                self.session = Some(Session {
                    id: Secret::generate(),
                    csrf: Secret::generate(),
                    last_active: now,
                });
                Login::Started
            }
            _ => Login::Refused,
        }
    }

    /// The cookie value of the current session.
    pub(super) fn cookie(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.id.expose())
    }

    /// The CSRF token of the current session.
    pub(super) fn csrf(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.csrf.expose())
    }

    /// Lets a request with `cookie` in, or says why not. An idle session ends here, and a new
    /// one-time login token is made (the console prints it on its terminal). `touch`: the
    /// request is the admin's doing and restarts the idle clock (a live-progress stream is
    /// not).
    pub(super) fn check(
        &mut self,
        cookie: Option<&str>,
        now: Instant,
        touch: bool,
    ) -> Result<(), Refusal> {
        let session = match (&mut self.session, cookie) {
            (Some(s), Some(c)) if s.id.matches(c) => s,
            _ => return Err(Refusal::NoSession),
        };
        if now.saturating_duration_since(session.last_active) >= self.idle {
            self.end();
            return Err(Refusal::IdleTimeout);
        }
        if touch {
            session.last_active = now;
        }
        Ok(())
    }

    /// True while the session `cookie` names is alive, without touching it.
    pub(super) fn alive(&self, cookie: &str, now: Instant) -> bool {
        self.session.as_ref().is_some_and(|s| {
            s.id.matches(cookie) && now.saturating_duration_since(s.last_active) < self.idle
        })
    }

    /// Ends the session if it has been idle too long; true if it did.
    pub(super) fn expire_idle(&mut self, now: Instant) -> bool {
        let idle = self
            .session
            .as_ref()
            .is_some_and(|s| now.saturating_duration_since(s.last_active) >= self.idle);
        if idle {
            self.end();
        }
        idle
    }

    /// Checks a state-changing request's CSRF token against the session's.
    pub(super) fn csrf_ok(&self, offered: &str) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.csrf.matches(offered))
    }

    /// Ends the session (logout or idle) and makes a new one-time login token.
    pub(super) fn end(&mut self) {
        self.session = None;
        self.login = Some(Secret::generate());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const IDLE: Duration = Duration::from_secs(900);

    fn logged_in() -> (Gate, Instant, String) {
        let mut gate = Gate::new(IDLE);
        let t0 = Instant::now();
        let token = gate.login_token().unwrap().to_owned();
        assert_eq!(gate.log_in(&token, t0), Login::Started);
        let cookie = gate.cookie().unwrap().to_owned();
        (gate, t0, cookie)
    }

    #[test]
    fn a_login_token_works_once() {
        let mut gate = Gate::new(IDLE);
        let now = Instant::now();
        let token = gate.login_token().unwrap().to_owned();
        assert_eq!(gate.log_in("wrong", now), Login::Refused);
        assert_eq!(gate.log_in("", now), Login::Refused);
        assert_eq!(gate.log_in(&token, now), Login::Started);
        assert_eq!(gate.log_in(&token, now), Login::Refused);
        assert!(gate.login_token().is_none());
    }

    #[test]
    fn only_the_session_cookie_lets_a_request_in() {
        let (mut gate, t0, cookie) = logged_in();
        assert_eq!(gate.check(None, t0, true), Err(Refusal::NoSession));
        assert_eq!(
            gate.check(Some("forged"), t0, true),
            Err(Refusal::NoSession)
        );
        let csrf = gate.csrf().unwrap().to_owned();
        assert_eq!(gate.check(Some(&csrf), t0, true), Err(Refusal::NoSession));
        assert_eq!(gate.check(Some(&cookie), t0, true), Ok(()));
    }

    #[test]
    fn an_idle_session_ends_and_activity_keeps_it_alive() {
        let (mut gate, t0, cookie) = logged_in();
        let almost = t0 + IDLE - Duration::from_secs(1);
        assert_eq!(gate.check(Some(&cookie), almost, true), Ok(()));
        // A stream that does not touch it does not extend it.
        let later = almost + IDLE - Duration::from_secs(1);
        assert_eq!(gate.check(Some(&cookie), later, false), Ok(()));
        assert!(gate.alive(&cookie, later));
        let over = almost + IDLE;
        assert!(!gate.alive(&cookie, over));
        assert_eq!(
            gate.check(Some(&cookie), over, true),
            Err(Refusal::IdleTimeout)
        );
        assert_eq!(
            gate.check(Some(&cookie), over, true),
            Err(Refusal::NoSession)
        );
        assert!(
            gate.login_token().is_some(),
            "a new login link after logoff"
        );
    }

    #[test]
    fn csrf_tokens_belong_to_the_session() {
        let (mut gate, t0, _) = logged_in();
        let csrf = gate.csrf().unwrap().to_owned();
        assert!(gate.csrf_ok(&csrf));
        assert!(!gate.csrf_ok(""));
        assert!(!gate.csrf_ok(&csrf[1..]));
        gate.end();
        assert!(!gate.csrf_ok(&csrf));
        let token = gate.login_token().unwrap().to_owned();
        gate.log_in(&token, t0);
        assert!(!gate.csrf_ok(&csrf), "a new session has a new CSRF token");
    }
}
