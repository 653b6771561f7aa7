//! SCIM PATCH (RFC 7644 §3.5.2) on a user resource, as identity providers really send it:
//! Entra ID capitalises the op (`"Replace"`) and sends booleans as strings (`"False"`), Okta
//! sends no path and an object of attributes (`{"op":"replace","value":{"active":false}}`),
//! and both use value-filtered paths (`emails[type eq "work"].value`) and the enterprise
//! extension's URN. The operations are applied to a copy of the resource; the caller stores
//! the result only if every operation applied and the result is a valid user.

use serde_json::{Map, Value};

use super::error::ScimError;
use super::resource::{CORE_USER, ENTERPRISE_USER, PATCH_OP};

/// At most this many operations in one request.
pub const MAX_OPERATIONS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Add,
    Replace,
    Remove,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    pub op: Op,
    pub path: Option<String>,
    pub value: Option<Value>,
}

fn syntax(detail: impl Into<String>) -> ScimError {
    ScimError::bad("invalidSyntax", detail)
}

fn bad_path(detail: impl Into<String>) -> ScimError {
    ScimError::bad("invalidPath", detail)
}

/// The operations of a PatchOp request body.
pub fn parse(body: &Value) -> Result<Vec<Operation>, ScimError> {
    let Value::Object(object) = body else {
        return Err(syntax(
            "a PATCH body must be a JSON object (a PatchOp message)",
        ));
    };
    let schemas_ok = object
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|u| u.as_str() == Some(PATCH_OP)));
    if !schemas_ok {
        return Err(syntax(format!(
            "a PATCH body's schemas must list {PATCH_OP}"
        )));
    }
    let operations = object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Operations"))
        .and_then(|(_, v)| v.as_array())
        .ok_or_else(|| syntax("a PATCH body needs an Operations array"))?;
    if operations.is_empty() || operations.len() > MAX_OPERATIONS {
        return Err(syntax(format!(
            "a PATCH body needs 1 to {MAX_OPERATIONS} operations, not {}",
            operations.len()
        )));
    }
    operations
        .iter()
        .map(|operation| {
            let Value::Object(o) = operation else {
                return Err(syntax("each operation must be a JSON object"));
            };
            let get = |name: &str| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
            let op = match get("op").and_then(Value::as_str).map(str::to_ascii_lowercase) {
                Some(op) if op == "add" => Op::Add,
                Some(op) if op == "replace" => Op::Replace,
                Some(op) if op == "remove" => Op::Remove,
                _ => return Err(syntax("each operation's op must be add, replace or remove")),
            };
            let path = match get("path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) if !p.trim().is_empty() => Some(p.trim().to_owned()),
                Some(_) => return Err(bad_path("path must be a non-empty string")),
            };
            let value = get("value").cloned();
            match (op, &path, &value) {
                (Op::Remove, None, _) => Err(ScimError::bad(
                    "noTarget",
                    "a remove operation needs a path",
                )),
                (Op::Add | Op::Replace, _, None) => {
                    Err(syntax("add and replace operations need a value"))
                }
                (Op::Add | Op::Replace, None, Some(v)) if !v.is_object() => Err(syntax(
                    "an add or replace operation without a path needs an object of attributes as its value",
                )),
                _ => Ok(Operation { op, path, value }),
            }
        })
        .collect()
}

/// A path: an attribute, possibly inside the enterprise extension, with an optional value
/// filter and sub-attribute.
#[derive(Debug, PartialEq)]
struct Path {
    /// The enterprise extension's object, not the resource's top level.
    extension: bool,
    /// `None`: the whole extension object.
    attribute: Option<String>,
    filter: Option<(String, String)>,
    sub: Option<String>,
}

fn parse_path(text: &str) -> Result<Path, ScimError> {
    let (extension, rest) = if let Some(rest) = text.strip_prefix(ENTERPRISE_USER) {
        match rest.strip_prefix(':') {
            Some(rest) => (true, rest),
            None if rest.is_empty() => {
                return Ok(Path {
                    extension: true,
                    attribute: None,
                    filter: None,
                    sub: None,
                });
            }
            None => return Err(bad_path(format!("{text:?} is not a path Ward knows"))),
        }
    } else if let Some(rest) = text.strip_prefix(CORE_USER) {
        (
            false,
            rest.strip_prefix(':')
                .ok_or_else(|| bad_path(format!("{text:?} is not a path Ward knows")))?,
        )
    } else {
        (false, text)
    };
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'))
    };
    let (attribute, filter, after) = match rest.split_once('[') {
        Some((attribute, tail)) => {
            let (inside, after) = tail
                .split_once(']')
                .ok_or_else(|| bad_path(format!("{text:?}: a [ without its ]")))?;
            let mut words = inside.trim().splitn(3, ' ');
            let (Some(sub), Some(op), Some(value)) = (words.next(), words.next(), words.next())
            else {
                return Err(bad_path(format!(
                    "{text:?}: Ward supports value filters of the form attr[sub eq \"value\"]"
                )));
            };
            let value: Value = serde_json::from_str(value.trim()).map_err(|_| {
                bad_path(format!(
                    "{text:?}: the filter's value must be a quoted string"
                ))
            })?;
            let (true, Value::String(value)) = (op.eq_ignore_ascii_case("eq"), value) else {
                return Err(bad_path(format!(
                    "{text:?}: Ward supports value filters of the form attr[sub eq \"value\"]"
                )));
            };
            if !name_ok(sub) {
                return Err(bad_path(format!(
                    "{text:?}: {sub:?} is not an attribute name"
                )));
            }
            (attribute, Some((sub.to_owned(), value)), after)
        }
        None => match rest.split_once('.') {
            Some((attribute, _)) => (attribute, None, &rest[attribute.len()..]),
            None => (rest, None, ""),
        },
    };
    let sub = match after {
        "" => None,
        s => Some(
            s.strip_prefix('.')
                .filter(|s| name_ok(s))
                .ok_or_else(|| bad_path(format!("{text:?} is not a path Ward knows")))?
                .to_owned(),
        ),
    };
    if !name_ok(attribute) {
        return Err(bad_path(format!("{text:?} is not a path Ward knows")));
    }
    Ok(Path {
        extension,
        attribute: Some(attribute.to_owned()),
        filter,
        sub,
    })
}

/// The key of `name` in `map`, compared without case (attribute names are case-insensitive).
fn key(map: &Map<String, Value>, name: &str) -> String {
    map.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

fn matches(element: &Value, (attr, value): &(String, String)) -> bool {
    element.as_object().is_some_and(|o| {
        o.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case(attr)
                && match v {
                    Value::String(s) => s.eq_ignore_ascii_case(value),
                    Value::Bool(b) => b.to_string() == value.to_ascii_lowercase(),
                    _ => false,
                }
        })
    })
}

/// Applies `operations`, in order, to a copy of `resource`.
pub fn apply(resource: &Value, operations: &[Operation]) -> Result<Value, ScimError> {
    let mut resource = resource.clone();
    for operation in operations {
        match &operation.path {
            Some(path) => apply_one(&mut resource, operation.op, path, operation.value.as_ref())?,
            None => {
                // Okta (and Entra for some attributes): an object of path -> value.
                let Some(Value::Object(values)) = &operation.value else {
                    return Err(syntax("an operation without a path needs an object value"));
                };
                for (path, value) in values {
                    if path.eq_ignore_ascii_case(ENTERPRISE_USER) && value.is_object() {
                        let Some(fields) = value.as_object() else {
                            continue;
                        };
                        for (k, v) in fields {
                            let full = format!("{ENTERPRISE_USER}:{k}");
                            apply_one(&mut resource, operation.op, &full, Some(v))?;
                        }
                    } else {
                        apply_one(&mut resource, operation.op, path, Some(value))?;
                    }
                }
            }
        }
    }
    Ok(resource)
}

fn apply_one(
    resource: &mut Value,
    op: Op,
    path: &str,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let path = parse_path(path)?;
    for fixed in ["id", "meta", "schemas"] {
        if !path.extension
            && path
                .attribute
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case(fixed))
        {
            return Err(ScimError::bad(
                "mutability",
                format!("{fixed} cannot be changed"),
            ));
        }
    }
    let Value::Object(root) = resource else {
        return Err(syntax("the resource is not an object"));
    };
    if path.extension && path.attribute.is_none() && op == Op::Remove {
        let k = key(root, ENTERPRISE_USER);
        root.remove(&k);
        return Ok(());
    }
    let target = if path.extension {
        let k = key(root, ENTERPRISE_USER);
        let entry = root.entry(k).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(ext) = entry else {
            return Err(syntax("the enterprise extension is not an object"));
        };
        ext
    } else {
        root
    };
    let Some(attribute) = path.attribute else {
        // The whole extension object.
        return match (op, value) {
            (Op::Remove, _) => {
                target.clear();
                Ok(())
            }
            (_, Some(Value::Object(fields))) => {
                for (k, v) in fields {
                    let name = key(target, k);
                    target.insert(name, v.clone());
                }
                Ok(())
            }
            _ => Err(ScimError::bad(
                "invalidValue",
                "the extension's value must be an object",
            )),
        };
    };
    let name = key(target, &attribute);
    match (path.filter, path.sub) {
        (None, None) => match op {
            Op::Remove => {
                target.remove(&name);
            }
            Op::Replace => {
                target.insert(name, value.cloned().unwrap_or(Value::Null));
            }
            Op::Add => {
                let value = value.cloned().unwrap_or(Value::Null);
                match (target.get_mut(&name), value) {
                    (Some(Value::Array(existing)), Value::Array(more)) => {
                        for v in more {
                            if !existing.contains(&v) {
                                existing.push(v);
                            }
                        }
                    }
                    (Some(Value::Array(existing)), v) => {
                        if !existing.contains(&v) {
                            existing.push(v);
                        }
                    }
                    (Some(Value::Object(existing)), Value::Object(more)) => {
                        for (k, v) in more {
                            let k = key(existing, &k);
                            existing.insert(k, v);
                        }
                    }
                    (_, v) => {
                        target.insert(name, v);
                    }
                }
            }
        },
        (None, Some(sub)) => {
            let entry = target
                .entry(name)
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(inner) = entry else {
                return Err(ScimError::bad(
                    "invalidPath",
                    format!("{attribute} has no sub-attributes"),
                ));
            };
            let sub = key(inner, &sub);
            match op {
                Op::Remove => {
                    inner.remove(&sub);
                }
                _ => {
                    inner.insert(sub, value.cloned().unwrap_or(Value::Null));
                }
            }
        }
        (Some(filter), sub) => {
            let entry = target
                .entry(name)
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(elements) = entry else {
                return Err(ScimError::bad(
                    "invalidPath",
                    format!("{attribute} is not multi-valued: a [filter] cannot select in it"),
                ));
            };
            let found = elements.iter().any(|e| matches(e, &filter));
            match (op, sub) {
                (Op::Remove, None) => elements.retain(|e| !matches(e, &filter)),
                (Op::Remove, Some(sub)) => {
                    for e in elements.iter_mut().filter(|e| matches(e, &filter)) {
                        if let Value::Object(o) = e {
                            let k = key(o, &sub);
                            o.remove(&k);
                        }
                    }
                }
                (_, None) => {
                    let Some(Value::Object(replacement)) = value else {
                        return Err(ScimError::bad(
                            "invalidValue",
                            "a value selected by a filter must be replaced by an object",
                        ));
                    };
                    if !found && op == Op::Replace {
                        return Err(ScimError::bad(
                            "noTarget",
                            format!("no {attribute} value matches the filter"),
                        ));
                    }
                    if found {
                        for e in elements.iter_mut().filter(|e| matches(e, &filter)) {
                            *e = Value::Object(replacement.clone());
                        }
                    } else {
                        elements.push(Value::Object(replacement.clone()));
                    }
                }
                (_, Some(sub)) => {
                    let value = value.cloned().unwrap_or(Value::Null);
                    if found {
                        for e in elements.iter_mut().filter(|e| matches(e, &filter)) {
                            if let Value::Object(o) = e {
                                let k = key(o, &sub);
                                o.insert(k, value.clone());
                            }
                        }
                    } else {
                        // Entra ID adds `emails[type eq "work"].value` to a user with no work
                        // e-mail yet: the element is made with the filter's attribute.
                        let mut o = Map::new();
                        o.insert(filter.0.clone(), Value::String(filter.1.clone()));
                        o.insert(sub, value);
                        elements.push(Value::Object(o));
                    }
                }
            }
        }
    }
    Ok(())
}
