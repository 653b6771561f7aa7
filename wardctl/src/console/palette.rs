//! The console's colours, and the style sheet built from them. Every pair of text and
//! background colour the style sheet uses is listed in [`TEXT_PAIRS`], and a test checks each
//! against WCAG 2.1 AA (contrast ratio at least 4.5:1 for normal text).

/// An sRGB colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    pub(super) fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// WCAG 2.1 relative luminance.
    #[cfg(test)]
    pub(super) fn luminance(self) -> f64 {
        let channel = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(self.0) + 0.7152 * channel(self.1) + 0.0722 * channel(self.2)
    }
}

/// WCAG 2.1 contrast ratio of two colours (1 to 21).
#[cfg(test)]
pub(super) fn contrast(a: Rgb, b: Rgb) -> f64 {
    let (la, lb) = (a.luminance(), b.luminance());
    let (hi, lo) = if la > lb { (la, lb) } else { (lb, la) };
    (hi + 0.05) / (lo + 0.05)
}

pub(super) const PAGE: Rgb = Rgb(0xff, 0xff, 0xff);
pub(super) const TEXT: Rgb = Rgb(0x1a, 0x1d, 0x21);
pub(super) const MUTED: Rgb = Rgb(0x55, 0x5d, 0x66);
pub(super) const PANEL: Rgb = Rgb(0xf3, 0xf5, 0xf7);
pub(super) const NAV: Rgb = Rgb(0x12, 0x3a, 0x5c);
pub(super) const NAV_TEXT: Rgb = Rgb(0xff, 0xff, 0xff);
pub(super) const LINK: Rgb = Rgb(0x0b, 0x55, 0x94);
pub(super) const OK: Rgb = Rgb(0x1b, 0x6e, 0x3a);
pub(super) const OK_BG: Rgb = Rgb(0xe3, 0xf4, 0xe8);
pub(super) const BAD: Rgb = Rgb(0xa3, 0x1d, 0x1d);
pub(super) const BAD_BG: Rgb = Rgb(0xfb, 0xe6, 0xe6);
pub(super) const WARN: Rgb = Rgb(0x7a, 0x4a, 0x00);
pub(super) const WARN_BG: Rgb = Rgb(0xfd, 0xf1, 0xd8);
pub(super) const BUTTON: Rgb = Rgb(0x0b, 0x55, 0x94);
pub(super) const BUTTON_TEXT: Rgb = Rgb(0xff, 0xff, 0xff);
pub(super) const DANGER: Rgb = Rgb(0xa3, 0x1d, 0x1d);
pub(super) const FOCUS: Rgb = Rgb(0xc2, 0x5e, 0x00);
/// Bar colours of the plots (with text labels beside them, not on them).
pub(super) const BAR_PASS: Rgb = Rgb(0x2e, 0x8b, 0x57);
pub(super) const BAR_FAIL: Rgb = Rgb(0xc0, 0x39, 0x2b);
pub(super) const BAR_UNSUPPORTED: Rgb = Rgb(0x8a, 0x94, 0x9e);

/// (text, background, where) for every pairing the style sheet makes.
#[cfg(test)]
pub(super) const TEXT_PAIRS: &[(Rgb, Rgb, &str)] = &[
    (TEXT, PAGE, "body text"),
    (MUTED, PAGE, "secondary text"),
    (TEXT, PANEL, "panels and table headers"),
    (MUTED, PANEL, "secondary text on panels"),
    (NAV_TEXT, NAV, "navigation"),
    (LINK, PAGE, "links"),
    (LINK, PANEL, "links on panels"),
    (OK, OK_BG, "good badges"),
    (BAD, BAD_BG, "bad badges and errors"),
    (WARN, WARN_BG, "pending badges"),
    (BUTTON_TEXT, BUTTON, "buttons"),
    (BUTTON_TEXT, DANGER, "destructive buttons"),
    (OK, PAGE, "good text"),
    (BAD, PAGE, "bad text"),
];

/// The style sheet, served as /static/console.css.
pub(super) fn stylesheet() -> String {
    let vars = [
        ("page", PAGE),
        ("text", TEXT),
        ("muted", MUTED),
        ("panel", PANEL),
        ("nav", NAV),
        ("nav-text", NAV_TEXT),
        ("link", LINK),
        ("ok", OK),
        ("ok-bg", OK_BG),
        ("bad", BAD),
        ("bad-bg", BAD_BG),
        ("warn", WARN),
        ("warn-bg", WARN_BG),
        ("button", BUTTON),
        ("button-text", BUTTON_TEXT),
        ("danger", DANGER),
        ("focus", FOCUS),
    ];
    let mut css = String::from(":root{");
    for (name, colour) in vars {
        css.push_str(&format!("--{name}:{};", colour.hex()));
    }
    css.push_str("}\n");
    css.push_str(include_str!("assets/console.css"));
    css
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contrast_matches_known_values() {
        assert!((contrast(Rgb(0, 0, 0), Rgb(255, 255, 255)) - 21.0).abs() < 0.01);
        assert!((contrast(PAGE, PAGE) - 1.0).abs() < 1e-9);
        // #767676 on white is the classic AA threshold, 4.54:1.
        assert!((contrast(Rgb(0x76, 0x76, 0x76), PAGE) - 4.54).abs() < 0.01);
    }

    #[test]
    fn every_text_colour_passes_wcag_aa_on_its_background() {
        for (fg, bg, what) in TEXT_PAIRS {
            let ratio = contrast(*fg, *bg);
            assert!(
                ratio >= 4.5,
                "{what}: {} on {} has contrast {ratio:.2}:1, below AA's 4.5:1",
                fg.hex(),
                bg.hex()
            );
        }
    }

    #[test]
    fn focus_ring_and_bars_stand_out_from_the_page() {
        // Non-text contrast (WCAG 1.4.11): 3:1 for focus indicators and graphics.
        for (colour, what) in [
            (FOCUS, "focus ring"),
            (BAR_PASS, "passing bar"),
            (BAR_FAIL, "failing bar"),
            (BAR_UNSUPPORTED, "unsupported bar"),
        ] {
            let ratio = contrast(colour, PAGE);
            assert!(ratio >= 3.0, "{what}: {ratio:.2}:1 against the page");
        }
    }

    #[test]
    fn the_style_sheet_uses_only_palette_colours() {
        let sheet = include_str!("assets/console.css");
        assert!(
            !sheet.contains('#'),
            "a literal colour in console.css escapes the contrast test: use a var(--…)"
        );
        assert!(!sheet.contains("rgb("), "a literal colour in console.css");
        assert!(
            !sheet.contains("url("),
            "the console loads nothing from outside"
        );
    }
}
