//! Password rules from PAM and shadow configuration: `pam_pwquality` (length, classes),
//! `pam_pwhistory` (reuse), `pam_faillock` (failed attempts) and `login.defs`
//! (`PASS_MAX_DAYS`, which applies to accounts created from now on). A rule counts only if
//! its PAM module is enabled in `/etc/pam.d`. With enforcement on and root rights, the agent
//! writes the values into the module's configuration; enabling a PAM module is left to the
//! distribution's own tool (pam-auth-update, authselect) and is reported when missing.

use std::path::Path;

use super::{Outcome, Roots, keyfile};
use crate::policy::AgentPolicy;

/// PAM stacks the modules may be enabled in (Debian and Red Hat families).
const PAM_FILES: [&str; 4] = [
    "common-password",
    "common-auth",
    "system-auth",
    "password-auth",
];

fn pam_enabled(roots: &Roots, module: &str) -> bool {
    PAM_FILES.iter().any(|file| {
        std::fs::read_to_string(roots.etc.join("pam.d").join(file)).is_ok_and(|text| {
            text.lines()
                .map(str::trim)
                .any(|l| !l.starts_with('#') && l.contains(module))
        })
    })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// One rule: the file and key that hold it, and how the setting must compare.
struct Rule {
    what: &'static str,
    module: Option<&'static str>,
    file: &'static str,
    key: &'static str,
    separator: &'static str,
    required: u32,
    /// pwquality's own default when the key is absent.
    default: Option<u32>,
    /// true: the setting must be at least `required`; false: at most (and non-zero).
    at_least: bool,
}

impl Rule {
    fn satisfied_by(&self, value: Option<u32>) -> bool {
        match value.or(self.default) {
            None => false,
            Some(v) if self.at_least => v >= self.required,
            Some(v) => v != 0 && v <= self.required,
        }
    }
}

fn rules(policy: &AgentPolicy) -> Vec<Rule> {
    let mut rules = Vec::new();
    let rule = |what, module, file, key, separator, required, default, at_least| Rule {
        what,
        module,
        file,
        key,
        separator,
        required,
        default,
        at_least,
    };
    if policy.password_min_length > 0 {
        rules.push(rule(
            "minimum length",
            Some("pam_pwquality"),
            "security/pwquality.conf",
            "minlen",
            " = ",
            policy.password_min_length,
            Some(8),
            true,
        ));
    }
    if policy.password_min_classes > 0 {
        rules.push(rule(
            "character classes",
            Some("pam_pwquality"),
            "security/pwquality.conf",
            "minclass",
            " = ",
            policy.password_min_classes,
            Some(0),
            true,
        ));
    }
    if policy.password_history > 0 {
        rules.push(rule(
            "password history",
            Some("pam_pwhistory"),
            "security/pwhistory.conf",
            "remember",
            " = ",
            policy.password_history,
            Some(10),
            true,
        ));
    }
    if policy.max_failed_attempts > 0 {
        rules.push(rule(
            "failed attempts before lock-out",
            Some("pam_faillock"),
            "security/faillock.conf",
            "deny",
            " = ",
            policy.max_failed_attempts,
            Some(3),
            false,
        ));
    }
    if policy.password_max_age_days > 0 {
        rules.push(rule(
            "maximum age (days)",
            None,
            "login.defs",
            "PASS_MAX_DAYS",
            " ",
            policy.password_max_age_days,
            None,
            false,
        ));
    }
    rules
}

pub fn check(roots: &Roots, policy: &AgentPolicy, enforce: bool) -> Outcome {
    let rules = rules(policy);
    if rules.is_empty() {
        return Outcome::Pass("the policy sets no password rules".into());
    }
    if !roots.etc.join("pam.d").is_dir() {
        return Outcome::Unsupported(format!(
            "{} does not exist: PAM is not in use here",
            roots.etc.join("pam.d").display()
        ));
    }
    let mut problems = Vec::new();
    let mut written = Vec::new();
    for rule in &rules {
        let path = roots.etc.join(rule.file);
        let text = read(&path);
        let mut value = keyfile::get_u32(&text, rule.key);
        if !rule.satisfied_by(value) && enforce {
            let next = keyfile::set(&text, rule.key, &rule.required.to_string(), rule.separator);
            match ward_certs::files::replace_file(&path, next.as_bytes(), 0o644) {
                Ok(()) => {
                    written.push(format!("{} {} = {}", rule.file, rule.key, rule.required));
                    value = Some(rule.required);
                }
                Err(e) => problems.push(format!("cannot write {}: {e}", path.display())),
            }
        }
        if !rule.satisfied_by(value) {
            let shown = match (value, rule.default) {
                (Some(v), _) => v.to_string(),
                (None, Some(d)) => format!("unset (default {d})"),
                (None, None) => "unset".to_owned(),
            };
            let cmp = if rule.at_least { "at least" } else { "at most" };
            problems.push(format!(
                "{}: {} {} is {shown}, policy needs {cmp} {}",
                rule.what, rule.file, rule.key, rule.required
            ));
        }
        if let Some(module) = rule.module
            && !pam_enabled(roots, module)
        {
            problems.push(format!(
                "{}: {module} is not enabled in {}/pam.d, so the setting has no effect",
                rule.what,
                roots.etc.display()
            ));
        }
    }
    problems.dedup();
    let mut detail = if problems.is_empty() {
        "all password rules are configured".to_owned()
    } else {
        problems.join("; ")
    };
    if !written.is_empty() {
        detail.push_str(&format!(" (written: {})", written.join(", ")));
    }
    if problems.is_empty() {
        Outcome::Pass(detail)
    } else {
        Outcome::Fail(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(pam: &[(&str, &str)], files: &[(&str, &str)]) -> (tempfile::TempDir, Roots) {
        let tmp = tempfile::tempdir().unwrap();
        let etc = tmp.path().join("etc");
        std::fs::create_dir_all(etc.join("pam.d")).unwrap();
        std::fs::create_dir_all(etc.join("security")).unwrap();
        for (name, text) in pam {
            std::fs::write(etc.join("pam.d").join(name), text).unwrap();
        }
        for (name, text) in files {
            std::fs::write(etc.join(name), text).unwrap();
        }
        let r = Roots {
            proc: tmp.path().join("proc"),
            sys: tmp.path().join("sys"),
            etc,
            ..Roots::under(tmp.path())
        };
        (tmp, r)
    }

    const PAM: (&str, &str) = (
        "common-password",
        "password requisite pam_pwquality.so retry=3\npassword required pam_pwhistory.so\n",
    );

    fn policy() -> AgentPolicy {
        AgentPolicy {
            password_min_length: 12,
            password_min_classes: 3,
            password_history: 5,
            password_max_age_days: 90,
            ..AgentPolicy::default()
        }
    }

    #[test]
    fn configured_rules_pass() {
        let (_t, r) = roots(
            &[PAM],
            &[
                ("security/pwquality.conf", "minlen = 14\nminclass = 3\n"),
                ("security/pwhistory.conf", "remember = 5\n"),
                ("login.defs", "PASS_MAX_DAYS\t60\n"),
            ],
        );
        assert!(matches!(check(&r, &policy(), false), Outcome::Pass(_)));
    }

    #[test]
    fn weak_or_missing_settings_fail_with_each_reason() {
        let (_t, r) = roots(
            &[PAM],
            &[
                ("security/pwquality.conf", "minlen = 8\n"),
                ("login.defs", "PASS_MAX_DAYS 99999\n"),
            ],
        );
        match check(&r, &policy(), false) {
            Outcome::Fail(d) => {
                assert!(d.contains("minlen is 8, policy needs at least 12"), "{d}");
                assert!(d.contains("minclass is unset (default 0)"), "{d}");
                assert!(d.contains("PASS_MAX_DAYS is 99999"), "{d}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_rule_whose_pam_module_is_off_does_not_count() {
        let (_t, r) = roots(
            &[("common-password", "password required pam_unix.so\n")],
            &[("security/pwquality.conf", "minlen = 20\n")],
        );
        let p = AgentPolicy {
            password_min_length: 12,
            ..AgentPolicy::default()
        };
        assert!(
            matches!(check(&r, &p, false), Outcome::Fail(d) if d.contains("pam_pwquality is not enabled"))
        );
    }

    #[test]
    fn enforcement_writes_the_values_and_keeps_the_rest() {
        let (_t, r) = roots(
            &[PAM],
            &[
                (
                    "security/pwquality.conf",
                    "# local\ndictcheck = 1\nminlen = 8\n",
                ),
                ("login.defs", "UMASK 022\n"),
            ],
        );
        let outcome = check(&r, &policy(), true);
        assert!(
            matches!(&outcome, Outcome::Pass(d) if d.contains("written")),
            "{outcome:?}"
        );
        let pwq = std::fs::read_to_string(r.etc.join("security/pwquality.conf")).unwrap();
        assert!(
            pwq.contains("dictcheck = 1")
                && pwq.contains("minlen = 12")
                && pwq.contains("minclass = 3"),
            "{pwq}"
        );
        assert!(
            std::fs::read_to_string(r.etc.join("login.defs"))
                .unwrap()
                .contains("UMASK 022")
        );
        assert!(matches!(check(&r, &policy(), false), Outcome::Pass(_)));
    }

    #[test]
    fn no_rules_no_requirement() {
        let (_t, r) = roots(&[], &[]);
        assert!(matches!(
            check(&r, &AgentPolicy::default(), false),
            Outcome::Pass(_)
        ));
    }
}
