//! The running agent's version against the policy's minimum (semantic versioning; "1.2"
//! reads as "1.2.0").

use semver::Version;

use super::Outcome;

pub fn check(running: &str, minimum: &str) -> Outcome {
    let minimum = minimum.trim();
    if minimum.is_empty() {
        return Outcome::Pass("the policy sets no minimum agent version".into());
    }
    let Some(min) = parse(minimum) else {
        return Outcome::Error(format!(
            "the policy's minimum agent version {minimum:?} is not a version"
        ));
    };
    let Some(run) = parse(running) else {
        return Outcome::Error(format!(
            "this agent's version {:?} is not a version",
            running.trim()
        ));
    };
    if run < min {
        Outcome::Fail(format!(
            "agent {run} is older than the policy's minimum {min}: update ward-agent"
        ))
    } else {
        Outcome::Pass(format!("agent {run} meets the policy's minimum {min}"))
    }
}

/// A semantic version, also written "v1.2", "1.2" or "1".
fn parse(text: &str) -> Option<Version> {
    let text = text.trim();
    let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
    if let Ok(v) = Version::parse(text) {
        return Some(v);
    }
    // Pad the numeric core only: "1.2-rc.1" becomes "1.2.0-rc.1".
    let split = text.find(['-', '+']).unwrap_or(text.len());
    let (core, rest) = text.split_at(split);
    let parts = core.split('.').count();
    if parts >= 3 || core.is_empty() {
        return None;
    }
    Version::parse(&format!("{core}{}{rest}", ".0".repeat(3 - parts))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_agents_fail_and_equal_or_newer_pass() {
        assert_eq!(
            check("0.1.0", "0.2.0"),
            Outcome::Fail(
                "agent 0.1.0 is older than the policy's minimum 0.2.0: update ward-agent".into()
            )
        );
        assert!(matches!(check("0.2.0", "0.2.0"), Outcome::Pass(_)));
        assert!(matches!(check("1.10.0", "1.9.3"), Outcome::Pass(_)));
        assert!(matches!(check("0.2.0-rc.1", "0.2.0"), Outcome::Fail(_)));
    }

    #[test]
    fn short_versions_are_padded() {
        assert!(matches!(check("1.2.0", "1.2"), Outcome::Pass(_)));
        assert!(matches!(check("1.1.9", "1.2"), Outcome::Fail(d) if d.contains("minimum 1.2.0")));
        assert!(matches!(check("2.0.0", "v2"), Outcome::Pass(_)));
        assert!(matches!(check("1.2.0", "1.2-rc.1"), Outcome::Pass(_)));
    }

    #[test]
    fn no_minimum_passes_and_nonsense_is_an_error() {
        assert_eq!(
            check("0.1.0", "  "),
            Outcome::Pass("the policy sets no minimum agent version".into())
        );
        assert!(matches!(check("0.1.0", "latest"), Outcome::Error(_)));
        assert!(matches!(check("0.1.0", "1.2.3.4"), Outcome::Error(_)));
        assert!(matches!(check("garbage", "1.0"), Outcome::Error(_)));
    }
}
