//! The `filter` query parameter of `GET /Users` (RFC 7644 §3.4.2.2), in the subset identity
//! providers use to find a user before creating one: `ATTRIBUTE eq "VALUE"` on `userName`,
//! `externalId` or `id`. Anything else is refused with `invalidFilter`, never ignored (an
//! ignored filter would answer "every user" to "this user?").

use super::error::ScimError;
use super::resource::CORE_USER;

/// What a filter can select on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribute {
    /// Case-insensitive (RFC 7643 §4.1.1: `caseExact` false).
    UserName,
    ExternalId,
    Id,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub attribute: Attribute,
    pub value: String,
}

impl Filter {
    pub fn matches(&self, user_name: &str, external_id: Option<&str>, id: &str) -> bool {
        match self.attribute {
            Attribute::UserName => user_name.eq_ignore_ascii_case(&self.value),
            Attribute::ExternalId => external_id == Some(self.value.as_str()),
            Attribute::Id => id == self.value,
        }
    }
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad("invalidFilter", detail)
}

const SUPPORTED: &str =
    "Ward supports filters of the form userName eq \"name@domain\" (also externalId or id)";

pub fn parse(text: &str) -> Result<Filter, ScimError> {
    let text = text.trim();
    if text.len() > 1024 {
        return Err(invalid("the filter is longer than 1024 characters"));
    }
    let (attribute, rest) = text
        .split_once(char::is_whitespace)
        .ok_or_else(|| invalid(format!("{text:?} is not a filter: {SUPPORTED}")))?;
    let rest = rest.trim_start();
    let (operator, value) = rest
        .split_once(char::is_whitespace)
        .ok_or_else(|| invalid(format!("{text:?} is not a filter: {SUPPORTED}")))?;
    let name = attribute
        .strip_prefix(CORE_USER)
        .and_then(|a| a.strip_prefix(':'))
        .unwrap_or(attribute);
    let attribute = match name.to_ascii_lowercase().as_str() {
        "username" => Attribute::UserName,
        "externalid" => Attribute::ExternalId,
        "id" => Attribute::Id,
        _ => {
            return Err(invalid(format!(
                "filtering on {attribute:?} is not supported: {SUPPORTED}"
            )));
        }
    };
    if !operator.eq_ignore_ascii_case("eq") {
        return Err(invalid(format!(
            "operator {operator:?} is not supported: {SUPPORTED}"
        )));
    }
    // The value is a JSON string; its end must be the filter's end (no `and`, `or`).
    let value = value.trim();
    let parsed: serde_json::Value = serde_json::from_str(value).map_err(|_| {
        invalid(format!(
            "{value:?} is not a single quoted string: {SUPPORTED} (and, or, not and grouping are not supported)"
        ))
    })?;
    let serde_json::Value::String(value) = parsed else {
        return Err(invalid(format!(
            "compare {name} with a quoted string: {SUPPORTED}"
        )));
    };
    Ok(Filter { attribute, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_identity_providers_send_parse() {
        let f = parse(r#"userName eq "Alice@Hospital.org""#).unwrap();
        assert_eq!(f.attribute, Attribute::UserName);
        assert!(f.matches("alice@hospital.org", None, "x"));
        let f = parse(r#"externalId eq "00u1""#).unwrap();
        assert!(f.matches("a@b.org", Some("00u1"), "x"));
        assert!(!f.matches("a@b.org", Some("00U1"), "x"));
        let f = parse(&format!(r#"{CORE_USER}:userName EQ "a@b.org""#)).unwrap();
        assert_eq!(f.value, "a@b.org");
    }

    #[test]
    fn what_ward_cannot_evaluate_is_refused_not_ignored() {
        for bad in [
            "",
            "userName",
            r#"userName co "a""#,
            r#"userName eq "a" and active eq true"#,
            r#"displayName eq "Alice""#,
            r#"userName eq alice"#,
            r#"userName eq "unterminated"#,
            "userName eq 3",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.scim_type, Some("invalidFilter"), "{bad}");
        }
    }
}
