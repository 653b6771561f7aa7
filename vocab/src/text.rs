//! Text that others chose (devices, older stored rows, a host's own data), one rule for all of
//! Ward: no control characters (so no terminal escape sequences, C0 or C1) and no
//! bidirectional overrides (which reorder what a reader sees), and a bounded length. The agent
//! cleans what it reports with [`clean`]; the controller checks what it receives with
//! [`printable_within`] and cleans what it keeps or shows with [`clean`].

/// Whether `c` may not reach a terminal as it is: a control character (C0, DEL, C1) or a
/// bidirectional formatting character (U+061C, U+200E-U+200F, U+202A-U+202E, U+2066-U+2069).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every unsafe character replaced by a space, cut to at most `max_bytes` bytes on
/// a character boundary (an ellipsis marks a cut).
pub fn clean(text: &str, max_bytes: usize) -> String {
    const CUT: char = '…';
    let mut out = String::with_capacity(text.len().min(max_bytes));
    for c in text.chars().map(|c| if is_unsafe(c) { ' ' } else { c }) {
        if out.len() + c.len_utf8() > max_bytes {
            while !out.is_empty() && out.len() + CUT.len_utf8() > max_bytes {
                out.pop();
            }
            if out.len() + CUT.len_utf8() <= max_bytes {
                out.push(CUT);
            }
            break;
        }
        out.push(c);
    }
    out
}

/// Whether `value` may be kept as a device reported it: at most `max` bytes and no control
/// character; else why not. Bidirectional overrides are not refused here (agents before this
/// rule did not remove them, and refusing would stop their check-ins); [`clean`] removes them
/// wherever such text is shown.
pub fn printable_within(value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        Err(format!("longer than {max} bytes"))
    } else if value.chars().any(char::is_control) {
        Err("contains control characters".into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_bidi_overrides_become_spaces() {
        let nasty = "a\u{1b}]0;title\u{7}b\u{9b}31mc\u{202e}d\r\ne\u{2066}";
        let cleaned = clean(nasty, 1000);
        assert_eq!(cleaned, "a ]0;title b 31mc d  e ");
        assert!(!cleaned.chars().any(is_unsafe));
        assert_eq!(
            clean("plain text, é and 日本", 1000),
            "plain text, é and 日本"
        );
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary_with_a_mark() {
        let cut = clean(&"é".repeat(100), 11);
        assert!(cut.len() <= 11, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(cut, "éééé…");
        assert_eq!(clean("short", 5), "short");
        assert_eq!(clean("", 0), "");
        assert_eq!(clean("ab", 1), "");
    }
}
