//! Plots drawn on the server as SVG: no script, no external asset. Each bar has its numbers
//! written beside it, so colour is never the only carrier of meaning.

use maud::{Markup, html};

use super::palette::{BAR_FAIL, BAR_PASS, BAR_UNSUPPORTED, MUTED, TEXT};

/// One check's tally across the fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct CheckTally {
    pub check: String,
    pub pass: u32,
    pub fail: u32,
    pub unsupported: u32,
}

const LABEL_W: u32 = 150;
const BAR_W: u32 = 260;
const ROW_H: u32 = 26;
const TEXT_W: u32 = 230;

/// A stacked bar per check: passing, failing, unsupported (or error). Each bar links to the
/// devices failing that check.
pub(super) fn compliance_bars(tallies: &[CheckTally]) -> Markup {
    let height = ROW_H * u32::try_from(tallies.len()).unwrap_or(u32::MAX).max(1) + 8;
    let width = LABEL_W + BAR_W + TEXT_W;
    let max = tallies
        .iter()
        .map(|t| t.pass + t.fail + t.unsupported)
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = |n: u32| n * BAR_W / max;
    html! {
        svg.plot xmlns="http://www.w3.org/2000/svg" role="img" width=(width) height=(height)
            viewBox={"0 0 " (width) " " (height)} aria-labelledby="compliance-title" {
            title #compliance-title { "Compliance by check: devices passing, failing and unsupported" }
            @for (i, t) in tallies.iter().enumerate() {
                @let y = u32::try_from(i).unwrap_or(0) * ROW_H + 4;
                @let (p, f, u) = (scale(t.pass), scale(t.fail), scale(t.unsupported));
                text x="0" y=(y + 16) fill=(TEXT.hex()) { (t.check) }
                a href={"/devices?check=" (t.check) "&status=fail"} {
                    rect x=(LABEL_W) y=(y) width=(p) height="18" fill=(BAR_PASS.hex()) {}
                    rect x=(LABEL_W + p) y=(y) width=(f) height="18" fill=(BAR_FAIL.hex()) {}
                    rect x=(LABEL_W + p + f) y=(y) width=(u) height="18" fill=(BAR_UNSUPPORTED.hex()) {}
                }
                text x=(LABEL_W + BAR_W + 8) y=(y + 16) fill=(MUTED.hex()) {
                    (t.pass) " pass · " (t.fail) " fail · " (t.unsupported) " unsupported"
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_scaled_to_the_largest_and_labelled_with_numbers() {
        let svg = compliance_bars(&[
            CheckTally {
                check: "firewall".into(),
                pass: 3,
                fail: 1,
                unsupported: 0,
            },
            CheckTally {
                check: "<script>".into(),
                pass: 0,
                fail: 0,
                unsupported: 2,
            },
        ])
        .into_string();
        assert!(svg.contains("3 pass · 1 fail · 0 unsupported"));
        assert!(svg.contains(&format!("width=\"{}\"", BAR_W * 3 / 4)));
        assert!(!svg.contains("<script>"), "names are escaped");
        assert!(!svg.contains("style="), "no inline style (CSP)");
    }
}
