//! Durations as an admin types and reads them: one parser, which checks each flag's range and
//! names it in every error, and one printer, which shows the largest one or two units ("3d",
//! "1d 12h", "45m", "30s"), never "27years 4months".

use std::time::Duration;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// The units the printer uses, largest first.
const UNITS: [(u64, &str); 4] = [(DAY, "d"), (HOUR, "h"), (MINUTE, "m"), (1, "s")];

/// `d` by its largest unit and the next one when that is not zero: "3d", "1d 12h", "90d",
/// "45m", "1m 30s", "30s". Smaller parts are left out (never rounded up); under a second it
/// shows milliseconds ("250ms"), and zero is "0s".
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return match d.subsec_millis() {
            0 => "0s".to_owned(),
            ms => format!("{ms}ms"),
        };
    }
    let Some(first) = UNITS.iter().position(|(size, _)| secs >= *size) else {
        return "0s".to_owned();
    };
    let (size, unit) = UNITS[first];
    let mut text = format!("{}{unit}", secs / size);
    if let Some((next, next_unit)) = UNITS.get(first + 1) {
        let rest = secs % size / next;
        if rest != 0 {
            text.push_str(&format!(" {rest}{next_unit}"));
        }
    }
    text
}

/// `d` with every unit that is not zero ("1d 1h 1m 1s"): for a value shown to be edited and
/// read back (a form field), where dropping a part would change it. Whole seconds only.
pub fn format_exact(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut parts = Vec::new();
    for (size, unit) in UNITS {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    parts.join(" ")
}

/// Whole seconds, minutes, hours or days: a readable way to write a range's bounds.
pub const fn seconds(n: u64) -> Duration {
    Duration::from_secs(n)
}
pub const fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * MINUTE)
}
pub const fn hours(n: u64) -> Duration {
    Duration::from_secs(n * HOUR)
}
pub const fn days(n: u64) -> Duration {
    Duration::from_secs(n * DAY)
}

/// What a duration flag accepts: a range, an example for the error text, and optionally 0
/// ("0", "off", "never") to turn the rule off. Declared once next to its flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
    /// A typical value, shown as "e.g. --flag EXAMPLE".
    pub example: &'static str,
    /// When set, 0 is accepted too and means this ("no rule", "never").
    pub off: Option<&'static str>,
    /// Only whole days (the value is stored in days).
    pub whole_days: bool,
    /// Whole milliseconds are accepted too ("2ms"); otherwise only whole seconds.
    pub milliseconds: bool,
}

impl DurationRange {
    pub const fn new(min: Duration, max: Duration, example: &'static str) -> Self {
        Self {
            min,
            max,
            example,
            off: None,
            whole_days: false,
            milliseconds: false,
        }
    }

    /// Whole milliseconds are accepted ("2ms", "250ms"), not only whole seconds.
    pub const fn in_milliseconds(self) -> Self {
        Self {
            milliseconds: true,
            ..self
        }
    }

    /// 0, "off" or "never" is accepted too and means `meaning`.
    pub const fn or_off(self, meaning: &'static str) -> Self {
        Self {
            off: Some(meaning),
            ..self
        }
    }

    /// Only whole days are accepted.
    pub const fn in_days(self) -> Self {
        Self {
            whole_days: true,
            ..self
        }
    }

    /// "1m to 7d", or "0 (no rule) or 1d to 3650d".
    pub fn describe(&self) -> String {
        let range = format!("{} to {}", format(self.min), format(self.max));
        match self.off {
            Some(meaning) => format!("0 ({meaning}) or {range}"),
            None => range,
        }
    }

    /// A flag's help: `text`, then the range and the example.
    pub fn help(&self, text: &str) -> String {
        format!("{text}: {}, e.g. {}", self.describe(), self.example)
    }

    /// Checks a duration already parsed (one that came over the wire): inside the range, or
    /// why not.
    pub fn check(&self, what: &str, d: Duration) -> Result<(), String> {
        let off = self.off.is_some() && d.is_zero();
        if off || (self.min <= d && d <= self.max) {
            Ok(())
        } else {
            Err(format!(
                "{what} {} is out of range: use {}",
                format(d),
                self.describe()
            ))
        }
    }

    /// Parses `text` given to `flag` ("--ttl"): whole numbers with units ("90s", "15m", "12h",
    /// "7d", "1h 30m"; not "1.5h"), inside the range; every error says what was wrong and the
    /// range.
    pub fn parse(&self, flag: &str, text: &str) -> Result<Duration, String> {
        let typed = text.trim();
        let fail = |what: String| {
            Err(format!(
                "{flag}: {what}: use {} (e.g. {flag} {})",
                self.describe(),
                self.example
            ))
        };
        if self.off.is_some() && matches!(typed, "0" | "off" | "never") {
            return Ok(Duration::ZERO);
        }
        if typed.starts_with('-') {
            return fail(format!("{typed} is negative"));
        }
        // Whole numbers only, as the docs and examples say: "1.5h" is "1h 30m".
        if typed.contains(['.', ',']) {
            let written = humantime::parse_duration(typed)
                .ok()
                .filter(|d| d.subsec_nanos() == 0 && !d.is_zero())
                .map_or_else(String::new, |d| format!(" ({})", format_exact(d)));
            return fail(format!(
                "{typed} has a fraction: write whole units{written}"
            ));
        }
        let d = match humantime::parse_duration(typed) {
            Ok(d) => d,
            Err(humantime::DurationError::NumberOverflow) => {
                return fail(format!("{typed} is out of range"));
            }
            Err(_) if typed.is_empty() => return fail("no duration given".to_owned()),
            Err(_) => {
                return fail(format!(
                    "{typed:?} is not a duration (a number with a unit: s, m, h or d)"
                ));
            }
        };
        if d.is_zero() && self.off.is_some() {
            return Ok(Duration::ZERO);
        }
        if self.milliseconds {
            if d.subsec_nanos() % 1_000_000 != 0 {
                return fail(format!("{typed} is not a whole number of milliseconds"));
            }
        } else if d.subsec_nanos() != 0 {
            return fail(format!("{typed} is not a whole number of seconds"));
        }
        if !(self.min..=self.max).contains(&d) {
            return fail(format!("{} is out of range", format(d)));
        }
        if self.whole_days && d.as_secs() % DAY != 0 {
            return fail(format!("{typed} is not a whole number of days"));
        }
        Ok(d)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TTL: DurationRange = DurationRange::new(minutes(1), days(7), "1h");
    const MAX_AGE: DurationRange = DurationRange::new(days(1), days(3650), "90d")
        .or_off("no rule")
        .in_days();

    #[test]
    fn milliseconds_only_where_the_flag_takes_them() {
        const WINDOW: DurationRange =
            DurationRange::new(Duration::ZERO, Duration::from_millis(100), "2ms").in_milliseconds();
        assert_eq!(
            WINDOW.parse("--window", "2ms"),
            Ok(Duration::from_millis(2))
        );
        assert!(
            WINDOW
                .parse("--window", "1500us")
                .unwrap_err()
                .contains("not a whole number of milliseconds")
        );
        assert!(
            WINDOW
                .parse("--window", "101ms")
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            TTL.parse("--ttl", "1500ms")
                .unwrap_err()
                .contains("not a whole number of seconds")
        );
    }

    #[test]
    fn prints_the_largest_one_or_two_units() {
        for (secs, shown) in [
            (0, "0s"),
            (30, "30s"),
            (90, "1m 30s"),
            (45 * MINUTE, "45m"),
            (HOUR, "1h"),
            (36 * HOUR, "1d 12h"),
            (3 * DAY, "3d"),
            (90 * DAY, "90d"),
            (730 * DAY, "730d"),
            // Smaller parts are dropped, not rounded up.
            (DAY + HOUR + 59 * MINUTE + 59, "1d 1h"),
            (DAY + 59 * MINUTE, "1d"),
            // What humantime printed as "27years 4months …".
            (100_000_000 * DAY / 10, "10000000d"),
        ] {
            assert_eq!(format(seconds(secs)), shown, "{secs}s");
        }
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_millis(1250)), "1s");
    }

    #[test]
    fn the_exact_form_keeps_every_unit() {
        assert_eq!(
            format_exact(seconds(DAY + HOUR + MINUTE + 1)),
            "1d 1h 1m 1s"
        );
        assert_eq!(format_exact(seconds(90 * DAY)), "90d");
        assert_eq!(format_exact(Duration::ZERO), "0s");
    }

    #[test]
    fn zero_is_refused_with_the_range() {
        assert_eq!(
            TTL.parse("--ttl", "0").unwrap_err(),
            "--ttl: 0s is out of range: use 1m to 7d (e.g. --ttl 1h)"
        );
    }

    #[test]
    fn a_negative_value_is_refused_with_the_range() {
        assert_eq!(
            TTL.parse("--ttl", "-5m").unwrap_err(),
            "--ttl: -5m is negative: use 1m to 7d (e.g. --ttl 1h)"
        );
    }

    #[test]
    fn absurd_values_are_refused_by_the_range() {
        assert_eq!(
            TTL.parse("--ttl", "100000000d").unwrap_err(),
            "--ttl: 100000000d is out of range: use 1m to 7d (e.g. --ttl 1h)"
        );
        let err = TTL.parse("--ttl", "99999999999999999999999s").unwrap_err();
        assert!(err.contains("is out of range: use 1m to 7d"), "{err}");
    }

    #[test]
    fn text_that_is_not_a_duration_is_refused_with_the_range() {
        for text in ["soon", "", "5", "1h-", "5 parsecs"] {
            let err = TTL.parse("--ttl", text).unwrap_err();
            assert!(err.starts_with("--ttl: "), "{err}");
            assert!(err.ends_with("use 1m to 7d (e.g. --ttl 1h)"), "{err}");
        }
        let err = TTL.parse("--ttl", "1500ms").unwrap_err();
        assert!(err.contains("not a whole number of seconds"), "{err}");
    }

    #[test]
    fn a_fraction_is_refused_with_its_whole_units() {
        assert_eq!(
            TTL.parse("--ttl", "1.5h").unwrap_err(),
            "--ttl: 1.5h has a fraction: write whole units (1h 30m): use 1m to 7d (e.g. --ttl 1h)"
        );
        let err = TTL.parse("--ttl", "0.25s").unwrap_err();
        assert!(
            err.starts_with("--ttl: 0.25s has a fraction: write whole units: use"),
            "{err}"
        );
        const WINDOW: DurationRange =
            DurationRange::new(Duration::ZERO, Duration::from_millis(100), "2ms").in_milliseconds();
        assert!(
            WINDOW
                .parse("--window", "1.5ms")
                .unwrap_err()
                .contains("has a fraction")
        );
        assert!(
            MAX_AGE
                .parse("--max-age", "1,5d")
                .unwrap_err()
                .contains("has a fraction")
        );
    }

    #[test]
    fn accepts_values_in_range_with_any_unit() {
        assert_eq!(TTL.parse("--ttl", "1m").unwrap(), minutes(1));
        assert_eq!(TTL.parse("--ttl", "7d").unwrap(), days(7));
        assert_eq!(TTL.parse("--ttl", " 1h 30m ").unwrap(), minutes(90));
        assert_eq!(TTL.parse("--ttl", "86400s").unwrap(), days(1));
    }

    #[test]
    fn off_values_and_whole_days() {
        for off in ["0", "off", "never", "0d"] {
            assert_eq!(MAX_AGE.parse("--max-age", off).unwrap(), Duration::ZERO);
        }
        assert_eq!(MAX_AGE.parse("--max-age", "90d").unwrap(), days(90));
        assert_eq!(
            MAX_AGE.parse("--max-age", "36h").unwrap_err(),
            "--max-age: 36h is not a whole number of days: use 0 (no rule) or 1d to 3650d (e.g. --max-age 90d)"
        );
        assert!(TTL.parse("--ttl", "off").is_err());
    }

    #[test]
    fn help_names_the_range_and_an_example() {
        assert_eq!(
            TTL.help("How long the token stays valid"),
            "How long the token stays valid: 1m to 7d, e.g. 1h"
        );
    }

    /// A whole number of one unit, or of two neighbouring units as the printer shows them.
    fn whole_units() -> impl Strategy<Value = Duration> {
        // Below the unit above, or the printer would show that one ("24h 1m" is "1d").
        let below_next_larger = |u: usize, n: u64| match u {
            0 => n,
            _ => (n % (UNITS[u - 1].0 / UNITS[u].0)).max(1),
        };
        let one = (0..UNITS.len(), 1..100_000u64)
            .prop_map(move |(u, n)| seconds(below_next_larger(u, n) * UNITS[u].0));
        let two = (0..UNITS.len() - 1, 1..100_000u64, 1..60u64).prop_map(move |(u, n, m)| {
            let (size, next) = (UNITS[u].0, UNITS[u + 1].0);
            seconds(below_next_larger(u, n) * size + (m % (size / next)).max(1) * next)
        });
        prop_oneof![one, two]
    }

    proptest! {
        #[test]
        fn the_exact_form_reads_back(secs in 1..u64::from(u32::MAX) * 1000) {
            let range = DurationRange::new(seconds(1), seconds(u64::MAX / 2), "1h");
            prop_assert_eq!(range.parse("--flag", &format_exact(seconds(secs))), Ok(seconds(secs)));
        }

        #[test]
        fn printing_then_parsing_gives_back_whole_units(d in whole_units()) {
            let shown = format(d);
            let range = DurationRange::new(seconds(1), days(10_000_000), "1h");
            prop_assert_eq!(range.parse("--flag", &shown), Ok(d), "{}", shown);
        }

        #[test]
        fn the_printed_value_is_never_more_and_at_most_one_unit_less(secs in 1..u64::from(u32::MAX) * 1000) {
            let shown = humantime::parse_duration(&format(seconds(secs))).unwrap().as_secs();
            prop_assert!(shown <= secs);
            let first = UNITS.iter().position(|(size, _)| secs >= *size).unwrap();
            let lost = UNITS.get(first + 1).map_or(1, |(size, _)| *size);
            prop_assert!(secs - shown < lost);
        }
    }
}
