//! Reading and updating the simple `key = value` / `KEY value` files PAM and shadow use.

/// The value of the last uncommented `key` line (`key = value`, `key=value` or `KEY value`).
pub fn get(text: &str, key: &str) -> Option<String> {
    text.lines().rev().find_map(|line| {
        let line = line.trim();
        let rest = line.strip_prefix(key)?;
        // `minlen2 = 3` is not `minlen`; comments never count.
        if line.starts_with('#') || !rest.starts_with(|c: char| c == '=' || c.is_whitespace()) {
            return None;
        }
        let value = rest.trim_start().trim_start_matches('=');
        Some(value.split('#').next().unwrap_or("").trim().to_owned())
    })
}

/// A number from `get`.
pub fn get_u32(text: &str, key: &str) -> Option<u32> {
    get(text, key).and_then(|v| v.parse().ok())
}

/// `text` with `key` set to `value`: the last uncommented line for it is replaced, or a line
/// is appended. `separator` is " = " for PAM files and " " for login.defs.
pub fn set(text: &str, key: &str, value: &str, separator: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let target = lines.iter().rposition(|line| {
        let l = line.trim();
        !l.starts_with('#')
            && l.strip_prefix(key)
                .is_some_and(|rest| rest.starts_with(|c: char| c == '=' || c.is_whitespace()))
    });
    let new_line = format!("{key}{separator}{value}");
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    match target {
        Some(i) => out[i] = new_line,
        None => {
            out.push("# set by ward-agent (policy enforcement)".into());
            out.push(new_line);
        }
    }
    let mut joined = out.join("\n");
    joined.push('\n');
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_styles_and_ignores_comments_and_lookalikes() {
        let text =
            "# minlen = 99\nminlen = 12\nminlen2 = 3\nPASS_MAX_DAYS\t90\nremember=5 # keep five\n";
        assert_eq!(get_u32(text, "minlen"), Some(12));
        assert_eq!(get_u32(text, "PASS_MAX_DAYS"), Some(90));
        assert_eq!(get_u32(text, "remember"), Some(5));
        assert_eq!(get(text, "deny"), None);
    }

    #[test]
    fn set_replaces_or_appends() {
        let text = "# comment\nminlen = 8\nother = 1\n";
        let next = set(text, "minlen", "14", " = ");
        assert_eq!(get_u32(&next, "minlen"), Some(14));
        assert!(next.contains("other = 1") && next.contains("# comment"));
        let appended = set("", "PASS_MAX_DAYS", "90", " ");
        assert_eq!(get_u32(&appended, "PASS_MAX_DAYS"), Some(90));
    }
}
