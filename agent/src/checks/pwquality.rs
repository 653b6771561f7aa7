//! Length and character classes as `pam_pwquality` or `pam_cracklib` enforce them: which
//! files pwquality reads and in what order, credits, `enforcing`, and where enforcement
//! writes so the value takes effect.

use std::path::{Path, PathBuf};

use super::{Found, Line, Setting, enforcing, keyfile, pam, resolve};
use crate::checks::Roots;
use ward_vocab::policy::Policy;

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

pub(super) fn quality(
    roots: &Roots,
    policy: &Policy,
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
        let warn_only = distinct(
            per.iter()
                .flatten()
                .filter(|(_, q)| q.enforcing.value == 0)
                .map(|(l, q)| {
                    format!(
                        "{} only warns (enforcing = 0 from {})",
                        l.describe(),
                        q.enforcing.from
                    )
                }),
        );
        let per: Vec<Vec<&(&Line, Quality)>> = per
            .iter()
            .map(|r| r.iter().filter(|(_, q)| q.enforcing.value != 0).collect())
            .collect();
        if per.iter().any(Vec::is_empty) {
            return vec![Found::Unmet(format!("{what}: {warn_only}"))];
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
                let each = distinct(all().map(|(l, q)| {
                    format!(
                        "{}: shortest accepted {} (minlen={} from {}{})",
                        l.describe(),
                        q.shortest(),
                        q.minlen.value,
                        q.minlen.from,
                        q.credits_text()
                    )
                }));
                found.push(Found::Unmet(format!(
                    "minimum length: policy needs at least {required_len}; {each}"
                )));
            }
        }
        let required_classes = i64::from(policy.password_min_classes);
        if required_classes > 0 {
            if meets(&|q| q.classes() >= required_classes) {
                let classes = all().map(|(_, q)| q.classes()).max().unwrap_or(0);
                found.push(Found::Met(format!("character classes {classes}")));
            } else {
                let each = distinct(all().map(|(l, q)| {
                    format!(
                        "{}: {} (minclass={} from {})",
                        l.describe(),
                        q.classes(),
                        q.minclass.value,
                        q.minclass.from
                    )
                }));
                found.push(Found::Unmet(format!(
                    "character classes: policy needs at least {required_classes}; {each}"
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
    if let Err(e) = ward_files::replace_file(&main, text.as_bytes(), 0o644) {
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

/// The texts, each once, in order, joined by "; " (two readings of the files often agree).
fn distinct(texts: impl Iterator<Item = String>) -> String {
    let mut kept: Vec<String> = Vec::new();
    for text in texts {
        if !kept.contains(&text) {
            kept.push(text);
        }
    }
    kept.join("; ")
}
