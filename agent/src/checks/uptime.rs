//! Days since boot against the policy's limit: a device up longer has not booted into the
//! kernel (and libraries) its updates installed. Read from `/proc/uptime` (seconds since
//! boot, then idle seconds).

use super::{Outcome, Roots};

const DAY: f64 = 86_400.0;

pub fn check(roots: &Roots, max_days: u32) -> Outcome {
    if max_days == 0 {
        return Outcome::Pass("the policy sets no uptime limit".into());
    }
    let path = roots.proc.join("uptime");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            return Outcome::Unsupported(format!("{} is not readable: {e}", path.display()));
        }
    };
    let Some(seconds) = seconds_up(&text) else {
        return Outcome::Error(format!(
            "{} does not start with the seconds since boot: {:?}",
            path.display(),
            text.chars().take(64).collect::<String>()
        ));
    };
    let limit = f64::from(max_days) * DAY;
    let up = days_text(seconds);
    let allowed = if max_days == 1 {
        "1 day".to_owned()
    } else {
        format!("{max_days} days")
    };
    if seconds > limit {
        Outcome::Fail(format!(
            "up {up}, longer than the policy's {allowed}: restart to run the installed kernel updates"
        ))
    } else {
        Outcome::Pass(format!("up {up}, within the policy's {allowed}"))
    }
}

/// The first number of `/proc/uptime`, when it is one (finite, not negative).
fn seconds_up(text: &str) -> Option<f64> {
    let seconds: f64 = text.split_whitespace().next()?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then_some(seconds)
}

/// "3 days", "1 day", "under a day".
fn days_text(seconds: f64) -> String {
    match (seconds / DAY).floor() {
        d if d < 1.0 => "under a day".to_owned(),
        d if d < 2.0 => "1 day".to_owned(),
        d => format!("{d} days"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixture::{tree, write};

    fn up(roots: &Roots, seconds: &str) {
        write(&roots.proc.join("uptime"), &format!("{seconds} 12345.67\n"));
    }

    #[test]
    fn a_device_up_longer_than_the_limit_fails_and_within_it_passes() {
        let (_tmp, roots) = tree();
        up(&roots, "3542400.12"); // 41 days
        assert_eq!(
            check(&roots, 30),
            Outcome::Fail(
                "up 41 days, longer than the policy's 30 days: restart to run the installed kernel updates"
                    .into()
            )
        );
        assert_eq!(
            check(&roots, 45),
            Outcome::Pass("up 41 days, within the policy's 45 days".into())
        );
        // Exactly the limit is within it; a second more is not.
        up(&roots, "2592000.00");
        assert!(matches!(check(&roots, 30), Outcome::Pass(_)));
        up(&roots, "2592001.00");
        assert!(matches!(check(&roots, 30), Outcome::Fail(_)));
        up(&roots, "5.5");
        assert_eq!(
            check(&roots, 1),
            Outcome::Pass("up under a day, within the policy's 1 day".into())
        );
    }

    #[test]
    fn no_limit_passes_without_reading_anything() {
        let (_tmp, roots) = tree();
        assert_eq!(
            check(&roots, 0),
            Outcome::Pass("the policy sets no uptime limit".into())
        );
    }

    #[test]
    fn an_unreadable_uptime_is_unsupported_and_nonsense_is_an_error() {
        let (_tmp, roots) = tree();
        assert!(
            matches!(check(&roots, 30), Outcome::Unsupported(d) if d.contains("uptime is not readable")),
            "no /proc/uptime"
        );
        for bad in ["", "-5 1", "NaN 1", "inf 1", "12h 1"] {
            write(&roots.proc.join("uptime"), bad);
            assert!(
                matches!(check(&roots, 30), Outcome::Error(_)),
                "{bad:?} is not an uptime"
            );
        }
    }
}
