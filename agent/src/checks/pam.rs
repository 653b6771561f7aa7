//! PAM stacks as Linux-PAM reads them: a service's file in `/etc/pam.d` (else the
//! distribution's `/usr/lib/pam.d`), `@include FILE` and `TYPE include|substack FILE`
//! followed, and each line's control judged for whether a failure of its module fails the
//! stack. Where that cannot be told (a jump, `ok`, `done`), the caller says "unsupported".

use std::path::{Path, PathBuf};

use super::Roots;

/// How deep includes may nest before the stack is called unreadable (Linux-PAM stops too).
const MAX_DEPTH: usize = 8;

/// One module line of a stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Line {
    /// "password", "auth", "account" or "session".
    pub kind: String,
    pub control: Control,
    /// The module's name without directory or `.so`: "pam_pwquality".
    pub module: String,
    pub args: Vec<String>,
    /// The file the line is written in.
    pub file: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Control {
    Required,
    Requisite,
    Sufficient,
    Optional,
    /// `[value=action ...]`.
    Brackets(Vec<(String, String)>),
}

/// Return values a failing module gives that are not failures of the kind checks care about.
const NOT_FAILURES: [&str; 3] = ["success", "ignore", "new_authtok_reqd"];

impl Control {
    /// Whether a failure of the module fails the whole stack: `Ok(true)` for required,
    /// requisite, or brackets whose every failure action is `bad` or `die`; `Ok(false)` for
    /// optional, sufficient or `ignore`; `Err` with the control when it depends on more than
    /// this line (`ok`, `done`, `reset`, jumps).
    pub(super) fn enforces(&self) -> Result<bool, String> {
        match self {
            Control::Required | Control::Requisite => Ok(true),
            Control::Sufficient | Control::Optional => Ok(false),
            Control::Brackets(pairs) => {
                let failures: Vec<&str> = pairs
                    .iter()
                    .filter(|(value, _)| !NOT_FAILURES.contains(&value.as_str()))
                    .map(|(_, action)| action.as_str())
                    .collect();
                if !failures.is_empty() && failures.iter().all(|a| matches!(*a, "bad" | "die")) {
                    Ok(true)
                } else if failures.is_empty() || failures.iter().all(|a| *a == "ignore") {
                    Ok(false)
                } else {
                    Err(self.to_string())
                }
            }
        }
    }

    /// Whether the line can end the stack or skip lines after it for some result.
    pub(super) fn may_skip(&self) -> bool {
        match self {
            Control::Sufficient => true,
            Control::Brackets(pairs) => pairs
                .iter()
                .any(|(_, action)| action == "done" || action.parse::<u32>().is_ok()),
            _ => false,
        }
    }
}

impl std::fmt::Display for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::Required => f.write_str("required"),
            Control::Requisite => f.write_str("requisite"),
            Control::Sufficient => f.write_str("sufficient"),
            Control::Optional => f.write_str("optional"),
            Control::Brackets(pairs) => {
                let inner: Vec<String> = pairs.iter().map(|(v, a)| format!("{v}={a}")).collect();
                write!(f, "[{}]", inner.join(" "))
            }
        }
    }
}

impl Line {
    /// The value of `key=value` among the module's arguments (the last one counts).
    pub(super) fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .rev()
            .find_map(|a| a.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
    }

    pub(super) fn has_flag(&self, flag: &str) -> bool {
        self.args.iter().any(|a| a == flag)
    }

    /// "`password requisite pam_pwquality.so` in /etc/pam.d/common-password".
    pub(super) fn describe(&self) -> String {
        format!(
            "`{} {} {}.so` in {}",
            self.kind,
            self.control,
            self.module,
            self.file.display()
        )
    }
}

/// Where a PAM configuration file named `name` is read from: `/etc/pam.d`, else the
/// distribution's `/usr/lib/pam.d`. An absolute name is read under the roots.
fn locate(roots: &Roots, name: &str) -> Option<PathBuf> {
    if let Some(rest) = name.strip_prefix("/etc/") {
        return Some(roots.etc.join(rest)).filter(|p| p.is_file());
    }
    if let Some(rest) = name.strip_prefix("/usr/") {
        return Some(roots.usr.join(rest)).filter(|p| p.is_file());
    }
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    [roots.etc.join("pam.d"), roots.usr.join("lib/pam.d")]
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether the service has a configuration file.
pub(super) fn has_service(roots: &Roots, service: &str) -> bool {
    locate(roots, service).is_some()
}

/// The lines of type `kind` that run for `service`, in order, includes followed.
pub(super) fn stack(roots: &Roots, service: &str, kind: &str) -> Result<Vec<Line>, String> {
    let Some(path) = locate(roots, service) else {
        return Err(format!(
            "no PAM configuration for the {service} service in {} or {}",
            roots.etc.join("pam.d").display(),
            roots.usr.join("lib/pam.d").display()
        ));
    };
    let mut lines = Vec::new();
    read(roots, &path, Some(kind), 0, &mut lines)?;
    Ok(lines)
}

/// Reads `path`'s lines of type `kind` (all types for `None`, as `@include` does).
fn read(
    roots: &Roots,
    path: &Path,
    kind: Option<&str>,
    depth: usize,
    out: &mut Vec<Line>,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "PAM includes nest deeper than {MAX_DEPTH} at {}",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let include = |name: &str, kind: Option<&str>, out: &mut Vec<Line>| match locate(roots, name) {
        Some(included) => read(roots, &included, kind, depth + 1, out),
        None => Err(format!(
            "{} includes {name}, which does not exist (PAM fails such a stack)",
            path.display()
        )),
    };
    for line in logical_lines(&text) {
        let words = words(&line);
        let Some(first) = words.first() else {
            continue;
        };
        if first == "@include" {
            if let Some(name) = words.get(1) {
                include(name, kind, out)?;
            }
            continue;
        }
        let (Some(control), Some(target)) = (words.get(1), words.get(2)) else {
            continue;
        };
        let line_kind = first.trim_start_matches('-').to_ascii_lowercase();
        if kind.is_some_and(|k| k != line_kind) {
            continue;
        }
        let control = match control.to_ascii_lowercase().as_str() {
            "include" | "substack" => {
                include(target, Some(&line_kind), out)?;
                continue;
            }
            "required" => Control::Required,
            "requisite" => Control::Requisite,
            "sufficient" => Control::Sufficient,
            "optional" => Control::Optional,
            bracketed if bracketed.starts_with('[') => brackets(bracketed),
            other => {
                return Err(format!(
                    "{} has a control PAM does not know: {other}",
                    path.display()
                ));
            }
        };
        let module = Path::new(target)
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".so").to_owned())
            .unwrap_or_default();
        out.push(Line {
            kind: line_kind,
            control,
            module,
            args: words[3..].to_vec(),
            file: path.to_path_buf(),
        });
    }
    Ok(())
}

/// A `[value=action ...]` control.
fn brackets(text: &str) -> Control {
    Control::Brackets(
        text.trim_start_matches('[')
            .trim_end_matches(']')
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .map(|(v, a)| (v.to_owned(), a.to_owned()))
            .collect(),
    )
}

/// Lines without comments, a trailing `\` joining the next line.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let raw = raw.split('#').next().unwrap_or("");
        match raw.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(raw);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// Whitespace-separated words; a `[...]` control is one word, spaces and all.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut bracket = false;
    for c in line.chars() {
        match c {
            '[' if word.is_empty() && words.len() == 1 => {
                bracket = true;
                word.push(c);
            }
            ']' if bracket => {
                bracket = false;
                word.push(c);
            }
            c if c.is_whitespace() && !bracket => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixture::{tree, write};

    #[test]
    fn includes_and_substacks_are_followed_in_order() {
        let (_t, r) = tree();
        let pam = r.etc.join("pam.d");
        write(
            &pam.join("passwd"),
            "# comment\n@include common-password\npassword substack extra\n",
        );
        write(
            &pam.join("common-password"),
            "password\trequisite\t\t\tpam_pwquality.so retry=3 minlen=6\n\
             auth required pam_env.so\n\
             password [success=1 default=ignore] /lib/x86_64-linux-gnu/security/pam_unix.so \\\n  obscure yescrypt\n",
        );
        // A vendor default, under /usr/lib/pam.d.
        write(
            &r.usr.join("lib/pam.d/extra"),
            "-password optional pam_gnome_keyring.so\n",
        );
        let lines = stack(&r, "passwd", "password").unwrap();
        let modules: Vec<&str> = lines.iter().map(|l| l.module.as_str()).collect();
        assert_eq!(modules, ["pam_pwquality", "pam_unix", "pam_gnome_keyring"]);
        assert_eq!(lines[0].arg("minlen"), Some("6"));
        assert_eq!(lines[0].control, Control::Requisite);
        assert_eq!(lines[1].args, ["obscure", "yescrypt"]);
        assert!(lines[1].control.may_skip());
        assert_eq!(lines[1].control.enforces(), Ok(false));
        assert_eq!(lines[2].control, Control::Optional);
        assert!(
            stack(&r, "login", "auth")
                .unwrap_err()
                .contains("no PAM configuration")
        );
        write(&pam.join("login"), "auth include missing\n");
        assert!(
            stack(&r, "login", "auth")
                .unwrap_err()
                .contains("does not exist")
        );
        // An include that loops ends with an error, not a hang.
        write(&pam.join("loop"), "auth include loop\n");
        assert!(
            stack(&r, "loop", "auth")
                .unwrap_err()
                .contains("nest deeper")
        );
    }

    #[test]
    fn controls_are_judged_for_enforcement() {
        assert_eq!(brackets("[default=die]").enforces(), Ok(true));
        assert_eq!(
            brackets("[success=ok new_authtok_reqd=ok ignore=ignore default=bad]").enforces(),
            Ok(true)
        );
        assert_eq!(brackets("[success=1 default=ignore]").enforces(), Ok(false));
        assert!(brackets("[success=ok default=ok]").enforces().is_err());
        assert!(brackets("[default=2]").enforces().is_err());
        assert_eq!(Control::Optional.enforces(), Ok(false));
        assert_eq!(Control::Sufficient.enforces(), Ok(false));
        assert_eq!(Control::Required.enforces(), Ok(true));
    }
}
