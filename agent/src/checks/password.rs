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

use std::path::{Path, PathBuf};

use super::pam::{self, Line};
use super::{Outcome, Roots, keyfile};
use crate::policy::AgentPolicy;

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

pub fn check(roots: &Roots, policy: &AgentPolicy, enforce: bool) -> Outcome {
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
        found.extend(quality(roots, policy, enforce, &mut written));
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

/// pwquality's configuration files in the order it reads them: `pwquality.conf.d/*.conf` by
/// name, then `pwquality.conf`. Releases after 1.4.5 also read `/usr/lib/security` (an
/// `/etc` file replaces its namesake there, and `/usr/lib`'s main file serves only when
/// `/etc` has none); since the installed release is not known, both readings are returned
/// when `/usr/lib` has any of them, and a rule must hold in each.
fn pwquality_readings(roots: &Roots) -> Vec<Vec<PathBuf>> {
    let etc = roots.etc.join("security");
    let usr = roots.usr.join("lib/security");
    let drop_ins = |dir: &Path| -> Vec<(String, PathBuf)> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name.find(".conf") == Some(name.len().saturating_sub(5)) && name.len() > 5)
                    .then(|| (name, e.path()))
            })
            .collect()
    };
    let reading = |with_usr: bool| {
        let mut files = drop_ins(&etc.join("pwquality.conf.d"));
        if with_usr {
            for (name, path) in drop_ins(&usr.join("pwquality.conf.d")) {
                if !files.iter().any(|(n, _)| *n == name) {
                    files.push((name, path));
                }
            }
        }
        files.sort();
        let mut files: Vec<PathBuf> = files.into_iter().map(|(_, p)| p).collect();
        let main = etc.join("pwquality.conf");
        if main.exists() || !with_usr {
            files.push(main);
        } else {
            files.push(usr.join("pwquality.conf"));
        }
        files
    };
    let usr_has_any =
        usr.join("pwquality.conf").exists() || !drop_ins(&usr.join("pwquality.conf.d")).is_empty();
    if usr_has_any {
        vec![reading(false), reading(true)]
    } else {
        vec![reading(false)]
    }
}

/// What one pwquality or cracklib line enforces.
struct Quality {
    minlen: Setting,
    minclass: Setting,
    credits: Vec<(&'static str, Setting)>,
    enforcing: Setting,
}

impl Quality {
    fn of(line: &Line, files: &[PathBuf]) -> Self {
        let module = line.module.as_str();
        // cracklib reads no file, and gives each class one credit by default.
        let (files, minlen, credit) = if module == "pam_cracklib" {
            (&[][..], 9, 1)
        } else {
            (files, 8, 0)
        };
        let get = |key: &str, default: i64| {
            resolve(Setting::default(default, module), files, Some(line), key)
        };
        let mut minlen = get("minlen", minlen);
        // pwquality raises a smaller minlen to 6.
        if module == "pam_pwquality" && minlen.value < 6 {
            minlen.value = 6;
        }
        Self {
            minlen,
            minclass: get("minclass", 0),
            credits: ["dcredit", "ucredit", "lcredit", "ocredit"]
                .into_iter()
                .map(|k| (k, get(k, credit)))
                .collect(),
            enforcing: if module == "pam_pwquality" {
                get("enforcing", 1)
            } else {
                Setting::default(1, module)
            },
        }
    }

    /// The shortest password it accepts: `minlen` less every positive credit.
    fn shortest(&self) -> i64 {
        self.minlen.value
            - self
                .credits
                .iter()
                .map(|(_, s)| s.value.max(0))
                .sum::<i64>()
    }

    /// The classes it requires: `minclass`, or more where negative credits demand them.
    fn classes(&self) -> i64 {
        let demanded = self.credits.iter().filter(|(_, s)| s.value < 0).count() as i64;
        self.minclass.value.min(4).max(demanded)
    }

    fn credits_text(&self) -> String {
        let positive: Vec<String> = self
            .credits
            .iter()
            .filter(|(_, s)| s.value > 0)
            .map(|(k, s)| format!("{k}={} ({})", s.value, s.from))
            .collect();
        if positive.is_empty() {
            String::new()
        } else {
            format!(" less credits {}", positive.join(", "))
        }
    }
}

fn quality(
    roots: &Roots,
    policy: &AgentPolicy,
    enforce: bool,
    written: &mut Vec<String>,
) -> Vec<Found> {
    let what = "password quality";
    let stack = match pam::stack(roots, "passwd", "password") {
        Ok(stack) => stack,
        Err(why) => return vec![Found::Unknown(format!("{what}: {why}"))],
    };
    let lines = match enforcing(&stack, &["pam_pwquality", "pam_cracklib"], what) {
        Ok(lines) => lines,
        Err(found) => return vec![found],
    };
    let judge = |readings: &[Vec<PathBuf>]| {
        // Per reading of the files, each enforcing line as configured; `enforcing = 0` lines
        // only warn and drop out.
        let per: Vec<Vec<(&Line, Quality)>> = readings
            .iter()
            .map(|files| lines.iter().map(|l| (*l, Quality::of(l, files))).collect())
            .collect();
        let mut warn_only = Vec::new();
        for (l, q) in per.iter().flatten().filter(|(_, q)| q.enforcing.value == 0) {
            let text = format!(
                "{} only warns (enforcing = 0 from {})",
                l.describe(),
                q.enforcing.from
            );
            if !warn_only.contains(&text) {
                warn_only.push(text);
            }
        }
        let per: Vec<Vec<&(&Line, Quality)>> = per
            .iter()
            .map(|r| r.iter().filter(|(_, q)| q.enforcing.value != 0).collect())
            .collect();
        if per.iter().any(Vec::is_empty) {
            return vec![Found::Unmet(format!("{what}: {}", warn_only.join("; ")))];
        }
        // A password must pass every enforcing line, so the strictest one decides, in every
        // reading.
        let meets =
            |test: &dyn Fn(&Quality) -> bool| per.iter().all(|r| r.iter().any(|(_, q)| test(q)));
        let all = || per.iter().flatten();
        let mut found = Vec::new();
        let required_len = i64::from(policy.password_min_length);
        if required_len > 0 {
            if meets(&|q| q.shortest() >= required_len) {
                let shortest = all().map(|(_, q)| q.shortest()).max().unwrap_or(0);
                found.push(Found::Met(format!("minimum length {shortest}")));
            } else {
                let mut each: Vec<String> = Vec::new();
                for (l, q) in all() {
                    let text = format!(
                        "{}: shortest accepted {} (minlen={} from {}{})",
                        l.describe(),
                        q.shortest(),
                        q.minlen.value,
                        q.minlen.from,
                        q.credits_text()
                    );
                    if !each.contains(&text) {
                        each.push(text);
                    }
                }
                found.push(Found::Unmet(format!(
                    "minimum length: policy needs at least {required_len}; {}",
                    each.join("; ")
                )));
            }
        }
        let required_classes = i64::from(policy.password_min_classes);
        if required_classes > 0 {
            if meets(&|q| q.classes() >= required_classes) {
                let classes = all().map(|(_, q)| q.classes()).max().unwrap_or(0);
                found.push(Found::Met(format!("character classes {classes}")));
            } else {
                let mut each: Vec<String> = Vec::new();
                for (l, q) in all() {
                    let text = format!(
                        "{}: {} (minclass={} from {})",
                        l.describe(),
                        q.classes(),
                        q.minclass.value,
                        q.minclass.from
                    );
                    if !each.contains(&text) {
                        each.push(text);
                    }
                }
                found.push(Found::Unmet(format!(
                    "character classes: policy needs at least {required_classes}; {}",
                    each.join("; ")
                )));
            }
        }
        found
    };
    let readings = pwquality_readings(roots);
    let found = judge(&readings);
    let unmet = found.iter().any(|f| matches!(f, Found::Unmet(_)));
    if !(unmet && enforce) {
        return found;
    }
    // Enforce where it takes effect: pwquality.conf, read after every drop-in. A value on a
    // PAM line overrides any file: that is reported, not written.
    let Some(line) = lines.iter().find(|l| l.module == "pam_pwquality") else {
        return found;
    };
    let files = readings.last().cloned().unwrap_or_default();
    let q = Quality::of(line, &files);
    let main = roots.etc.join("security/pwquality.conf");
    let mut text = std::fs::read_to_string(&main).unwrap_or_default();
    let mut changes = Vec::new();
    let positive: i64 = q.credits.iter().map(|(_, s)| s.value.max(0)).sum();
    let mut settings = vec![];
    if q.enforcing.value == 0 && !q.enforcing.on_line() {
        settings.push(("enforcing", 1));
    }
    if i64::from(policy.password_min_length) > q.shortest() && !q.minlen.on_line() {
        settings.push(("minlen", i64::from(policy.password_min_length) + positive));
    }
    if i64::from(policy.password_min_classes) > q.classes() && !q.minclass.on_line() {
        settings.push(("minclass", i64::from(policy.password_min_classes)));
    }
    for (key, value) in settings {
        text = keyfile::set(&text, key, &value.to_string(), " = ");
        changes.push(format!("{} {key} = {value}", main.display()));
    }
    if changes.is_empty() {
        return found;
    }
    if let Err(e) = ward_certs::files::replace_file(&main, text.as_bytes(), 0o644) {
        let mut found = found;
        found.push(Found::Unmet(format!(
            "cannot write {}: {e}",
            main.display()
        )));
        return found;
    }
    written.extend(changes);
    judge(&pwquality_readings(roots))
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
                match ward_certs::files::replace_file(&conf, next.as_bytes(), 0o644) {
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
        match ward_certs::files::replace_file(&path, next.as_bytes(), 0o644) {
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
