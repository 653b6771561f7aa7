//! Password rules as PAM enforces them.
//!
//! - Length and character classes: `pam_pwquality` (or `pam_cracklib`) in the `password`
//!   stack of the `passwd` service. pwquality reads `/etc/security/pwquality.conf.d/*.conf`
//!   in name order, then `pwquality.conf` (which so wins), then its PAM-line options, which
//!   override every file; cracklib has only its PAM-line options. Positive credits
//!   (`dcredit=1`) let a password that long by `minlen` be shorter, and negative ones
//!   require classes, so both count; `enforcing=0` only warns.
//! - History: `pam_pwhistory` (`remember`, `pwhistory.conf` then the PAM line).
//! - Lock-out: `pam_faillock` (`deny`, `faillock.conf` then the PAM line) in the `auth` stack
//!   of every local login service present (login, gdm-password, lightdm, sddm): its
//!   `preauth` line must enforce and an `authfail` line must count failures.
//! - `PASS_MAX_DAYS` in `login.defs` (applies to accounts created from now on).
//!
//! A module counts only on a line whose failure fails the stack (required, requisite, or
//! `[default=die]`-style brackets), reached through includes and substacks, with no line
//! before it that may skip it (sufficient, jumps, `done`); an `optional` line never
//! enforces. What cannot be told that way is "unsupported", never a pass.
//!
//! With enforcement on and root rights, the agent writes a missing value into the module's
//! configuration file, where it takes effect; a value set on a PAM line, and enabling a
//! module, are left to the distribution's own tool (pam-auth-update, authselect) and reported.

use std::path::PathBuf;

use super::pam::{self, Line};

#[path = "pwquality.rs"]
mod pwquality;
use super::{Outcome, Roots, keyfile};
use ward_vocab::policy::Policy;

/// Services whose `auth` stack logs a user in at the device.
const LOGIN_SERVICES: [&str; 4] = ["login", "gdm-password", "lightdm", "sddm"];

/// What was found for one rule.
enum Found {
    Met(String),
    Unmet(String),
    Unknown(String),
}

/// A setting's value and where it came from.
#[derive(Clone, Debug)]
struct Setting {
    value: i64,
    from: String,
}

impl Setting {
    fn default(value: i64, module: &str) -> Self {
        Self {
            value,
            from: format!("{module}'s default"),
        }
    }

    fn on_line(&self) -> bool {
        self.from.starts_with("the PAM line")
    }
}

/// Reads `key` from each file in turn, then from the line's options: the last one wins.
fn resolve(start: Setting, files: &[PathBuf], line: Option<&Line>, key: &str) -> Setting {
    let mut setting = start;
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if let Some(value) = keyfile::get(&text, key).and_then(|v| v.parse().ok()) {
            setting = Setting {
                value,
                from: file.display().to_string(),
            };
        }
    }
    if let Some(line) = line
        && let Some(value) = line.arg(key).and_then(|v| v.parse().ok())
    {
        setting = Setting {
            value,
            from: format!("the PAM line {}", line.describe()),
        };
    }
    setting
}

pub fn check(roots: &Roots, policy: &Policy, enforce: bool) -> Outcome {
    let wanted = policy.password_min_length > 0
        || policy.password_min_classes > 0
        || policy.password_history > 0
        || policy.max_failed_attempts > 0
        || policy.password_max_age_days > 0;
    if !wanted {
        return Outcome::Pass("the policy sets no password rules".into());
    }
    if !roots.etc.join("pam.d").is_dir() {
        return Outcome::Unsupported(format!(
            "{} does not exist: PAM is not in use here",
            roots.etc.join("pam.d").display()
        ));
    }
    let mut found = Vec::new();
    let mut written = Vec::new();
    if policy.password_min_length > 0 || policy.password_min_classes > 0 {
        found.extend(pwquality::quality(roots, policy, enforce, &mut written));
    }
    if policy.password_history > 0 {
        found.push(history(
            roots,
            policy.password_history,
            enforce,
            &mut written,
        ));
    }
    if policy.max_failed_attempts > 0 {
        found.push(lockout(
            roots,
            policy.max_failed_attempts,
            enforce,
            &mut written,
        ));
    }
    if policy.password_max_age_days > 0 {
        found.push(max_age(
            roots,
            policy.password_max_age_days,
            enforce,
            &mut written,
        ));
    }
    let pick = |want: fn(&Found) -> Option<&String>| -> Vec<String> {
        found.iter().filter_map(want).cloned().collect()
    };
    let unmet = pick(|f| match f {
        Found::Unmet(d) => Some(d),
        _ => None,
    });
    let unknown = pick(|f| match f {
        Found::Unknown(d) => Some(d),
        _ => None,
    });
    let met = pick(|f| match f {
        Found::Met(d) => Some(d),
        _ => None,
    });
    let written = if written.is_empty() {
        String::new()
    } else {
        format!(" (written: {})", written.join(", "))
    };
    if !unmet.is_empty() {
        let mut all = unmet;
        all.extend(unknown);
        Outcome::Fail(format!("{}{written}", all.join("; ")))
    } else if !unknown.is_empty() {
        Outcome::Unsupported(format!("{}{written}", unknown.join("; ")))
    } else {
        Outcome::Pass(format!("{}{written}", met.join("; ")))
    }
}

/// The enforcing lines of `modules` in a stack, or why none can be said to enforce.
fn enforcing<'a>(
    stack: &'a [Line],
    modules: &[&str],
    kind_what: &str,
) -> Result<Vec<&'a Line>, Found> {
    let mut lines = Vec::new();
    let mut not_enforcing = Vec::new();
    for (i, line) in stack.iter().enumerate() {
        if !modules.contains(&line.module.as_str()) {
            continue;
        }
        if let Some(skip) = stack[..i].iter().find(|l| l.control.may_skip()) {
            return Err(Found::Unknown(format!(
                "{kind_what}: {} comes after {}, which may skip it; whether it always runs is not checked",
                line.describe(),
                skip.describe()
            )));
        }
        match line.control.enforces() {
            Ok(true) => lines.push(line),
            Ok(false) => not_enforcing.push(format!(
                "{} does not enforce ({} only reports a failure)",
                line.describe(),
                line.control
            )),
            Err(control) => {
                return Err(Found::Unknown(format!(
                    "{kind_what}: {} has control {control}, whose effect depends on the rest of the stack",
                    line.describe()
                )));
            }
        }
    }
    if lines.is_empty() {
        let why = if not_enforcing.is_empty() {
            format!(
                "{} is not enabled, so nothing enforces it",
                modules.join(" or ")
            )
        } else {
            not_enforcing.join("; ")
        };
        return Err(Found::Unmet(format!("{kind_what}: {why}")));
    }
    Ok(lines)
}

/// A `conf=` option names another configuration file; under the roots when it is in /etc.
fn conf_file(roots: &Roots, line: &Line, default: &str) -> Result<PathBuf, String> {
    match line.arg("conf") {
        None => Ok(roots.etc.join(default)),
        Some(path) => path
            .strip_prefix("/etc/")
            .map(|rest| roots.etc.join(rest))
            .ok_or_else(|| {
                format!(
                    "{} reads its settings from {path}, outside /etc, which is not read",
                    line.describe()
                )
            }),
    }
}

/// One number that a module reads from its configuration file and its PAM line.
struct Numeric {
    what: &'static str,
    module: &'static str,
    key: &'static str,
    conf: &'static str,
    default: i64,
    required: u32,
    /// true: at least `required`; false: at most `required` and not 0.
    at_least: bool,
}

impl Numeric {
    fn met(&self, value: i64) -> bool {
        if self.at_least {
            value >= i64::from(self.required)
        } else {
            value != 0 && value <= i64::from(self.required)
        }
    }

    /// Judges the value `line` gets, writing the configuration file when enforcing and the
    /// line does not override it.
    fn judge(&self, roots: &Roots, line: &Line, enforce: bool, written: &mut Vec<String>) -> Found {
        let conf = match conf_file(roots, line, self.conf) {
            Ok(conf) => conf,
            Err(why) => return Found::Unknown(format!("{}: {why}", self.what)),
        };
        let get = || {
            resolve(
                Setting::default(self.default, self.module),
                std::slice::from_ref(&conf),
                Some(line),
                self.key,
            )
        };
        let mut setting = get();
        let mut note = String::new();
        if !self.met(setting.value) && enforce {
            if setting.on_line() {
                note = format!(
                    " ({} on the PAM line overrides {}; change it with the distribution's PAM tool)",
                    self.key,
                    conf.display()
                );
            } else {
                let text = std::fs::read_to_string(&conf).unwrap_or_default();
                let next = keyfile::set(&text, self.key, &self.required.to_string(), " = ");
                match ward_files::replace_file(&conf, next.as_bytes(), 0o644) {
                    Ok(()) => {
                        written.push(format!(
                            "{} {} = {}",
                            conf.display(),
                            self.key,
                            self.required
                        ));
                        setting = get();
                    }
                    Err(e) => note = format!(" (cannot write {}: {e})", conf.display()),
                }
            }
        }
        if self.met(setting.value) {
            Found::Met(format!(
                "{} {} ({})",
                self.what, setting.value, setting.from
            ))
        } else {
            let cmp = if self.at_least { "at least" } else { "at most" };
            Found::Unmet(format!(
                "{}: {} {}={} ({}), policy needs {cmp} {}{note}",
                self.what,
                line.describe(),
                self.key,
                setting.value,
                setting.from,
                self.required
            ))
        }
    }
}

fn history(roots: &Roots, required: u32, enforce: bool, written: &mut Vec<String>) -> Found {
    let rule = Numeric {
        what: "password history",
        module: "pam_pwhistory",
        key: "remember",
        conf: "security/pwhistory.conf",
        default: 10,
        required,
        at_least: true,
    };
    let stack = match pam::stack(roots, "passwd", "password") {
        Ok(stack) => stack,
        Err(why) => return Found::Unknown(format!("{}: {why}", rule.what)),
    };
    match enforcing(&stack, &[rule.module], rule.what) {
        Ok(lines) => rule.judge(roots, lines[0], enforce, written),
        Err(found) => found,
    }
}

fn lockout(roots: &Roots, required: u32, enforce: bool, written: &mut Vec<String>) -> Found {
    let rule = Numeric {
        what: "failed attempts before lock-out",
        module: "pam_faillock",
        key: "deny",
        conf: "security/faillock.conf",
        default: 3,
        required,
        at_least: false,
    };
    let services: Vec<&str> = LOGIN_SERVICES
        .into_iter()
        .filter(|s| pam::has_service(roots, s))
        .collect();
    if services.is_empty() {
        return Found::Unknown(format!(
            "{}: none of the login services {} has a PAM configuration",
            rule.what,
            LOGIN_SERVICES.join(", ")
        ));
    }
    let mut met = Vec::new();
    for service in services {
        let what = format!("{} ({service})", rule.what);
        let stack = match pam::stack(roots, service, "auth") {
            Ok(stack) => stack,
            Err(why) => return Found::Unknown(format!("{what}: {why}")),
        };
        // `preauth` refuses a locked-out user; `authfail` counts the failures.
        let preauth: Vec<Line> = stack
            .iter()
            .filter(|l| l.module != rule.module || l.has_flag("preauth"))
            .cloned()
            .collect();
        let line = match enforcing(&preauth, &[rule.module], &what) {
            Ok(lines) => lines[0],
            Err(found) => return found,
        };
        if !stack
            .iter()
            .any(|l| l.module == rule.module && l.has_flag("authfail"))
        {
            return Found::Unmet(format!(
                "{what}: no `pam_faillock.so authfail` line counts failed attempts"
            ));
        }
        match rule.judge(roots, line, enforce, written) {
            Found::Met(d) => met.push(format!("{d} for {service}")),
            other => return other,
        }
    }
    Found::Met(met.join(", "))
}

fn max_age(roots: &Roots, required: u32, enforce: bool, written: &mut Vec<String>) -> Found {
    let path = roots.etc.join("login.defs");
    let what = "maximum age (days)";
    let read = || {
        keyfile::get_u32(
            &std::fs::read_to_string(&path).unwrap_or_default(),
            "PASS_MAX_DAYS",
        )
    };
    let met = |v: Option<u32>| v.is_some_and(|v| v != 0 && v <= required);
    let mut value = read();
    if !met(value) && enforce {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let next = keyfile::set(&text, "PASS_MAX_DAYS", &required.to_string(), " ");
        match ward_files::replace_file(&path, next.as_bytes(), 0o644) {
            Ok(()) => {
                written.push(format!("login.defs PASS_MAX_DAYS = {required}"));
                value = read();
            }
            Err(e) => return Found::Unmet(format!("{what}: cannot write {}: {e}", path.display())),
        }
    }
    match value {
        v if met(v) => Found::Met(format!("{what} {}", v.unwrap_or(0))),
        Some(v) => Found::Unmet(format!(
            "{what}: login.defs PASS_MAX_DAYS is {v}, policy needs at most {required}"
        )),
        None => Found::Unmet(format!(
            "{what}: login.defs PASS_MAX_DAYS is unset, policy needs at most {required}"
        )),
    }
}

#[cfg(test)]
#[path = "password_tests.rs"]
mod tests;
