//! SCIM resources as JSON: a Ward directory user as a SCIM `User` (RFC 7643 §4.1) and back,
//! and the discovery documents (`/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`).

use serde_json::{Map, Value, json};

use super::error::ScimError;
use ward_controller::app::directory::DirectoryInput;
use ward_core::UserEmail;
use ward_core::directory::DirectoryUser;

pub const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// At most this many resources in one page (`count` above it is lowered to it).
pub const MAX_RESULTS: usize = 200;

/// Attributes Ward keeps itself rather than in the stored blob. `password` is never kept.
const OWN: [&str; 7] = [
    "schemas",
    "id",
    "externalid",
    "username",
    "active",
    "meta",
    "password",
];

fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// `active` as identity providers send it: a JSON boolean, or (Entra ID) the string
/// "True"/"False" in any case.
pub fn boolean(value: &Value, what: &str) -> Result<bool, ScimError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(ScimError::bad(
            "invalidValue",
            format!("{what} must be true or false, not {other}"),
        )),
    }
}

/// A user resource as a request (POST, PUT) or a PATCH made it, before it is checked against
/// the stored record.
#[derive(Clone, Debug)]
pub struct UserInput {
    pub user_name: String,
    /// The Ward user it names, when userName or emails holds an address.
    pub user: Option<UserEmail>,
    pub external_id: Option<String>,
    /// `None` when absent.
    pub active: Option<bool>,
    pub attributes: String,
}

impl UserInput {
    /// The change to `before` (`None`: a new user). An absent `active` leaves the stored
    /// state as it is (a new user is active): a PUT or PATCH that drops the attribute never
    /// reactivates a deprovisioned user. The Ward user is fixed when the user is created; a
    /// request that names no address keeps it.
    pub fn resolve(self, before: Option<&DirectoryUser>) -> Result<DirectoryInput, ScimError> {
        let user = match (self.user, before) {
            (Some(user), _) => user,
            (None, Some(before)) => before.user.clone(),
            (None, None) => {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!(
                        "userName {:?} is not an e-mail address, and emails holds none either. Ward knows people by the e-mail address their devices are enrolled with: map userName (or emails) to it",
                        self.user_name
                    ),
                ));
            }
        };
        Ok(DirectoryInput {
            user_name: self.user_name,
            user,
            external_id: self.external_id,
            active: self.active.unwrap_or(before.is_none_or(|b| b.active)),
            attributes: self.attributes,
        })
    }
}

/// A `User` resource from a request body (POST, PUT) or a patched resource.
pub fn input_from(resource: &Value) -> Result<UserInput, ScimError> {
    let Value::Object(object) = resource else {
        return Err(ScimError::bad(
            "invalidSyntax",
            "the request body must be a JSON object (a SCIM User resource)",
        ));
    };
    // A stored user is no larger than one request may be: PATCH `add` appends, and without
    // this a token holder could grow one user without end (every list reads it).
    if resource.to_string().len() > super::http::MAX_BODY {
        return Err(ScimError::bad(
            "invalidValue",
            format!(
                "the user's attributes would be larger than {} bytes; nothing was changed",
                super::http::MAX_BODY
            ),
        ));
    }
    if let Some(schemas) = field(object, "schemas") {
        let listed = schemas
            .as_array()
            .is_some_and(|s| s.iter().any(|u| u.as_str() == Some(CORE_USER)));
        if !listed {
            return Err(ScimError::bad(
                "invalidSyntax",
                format!("schemas must list {CORE_USER}"),
            ));
        }
    }
    let user_name = match field(object, "userName") {
        Some(Value::String(name))
            if !name.trim().is_empty()
                && name.trim().chars().count() <= 256
                && !name.chars().any(ward_core::text::is_unsafe) =>
        {
            name.trim().to_owned()
        }
        Some(other) => {
            return Err(ScimError::bad(
                "invalidValue",
                format!("userName must be a string of 1 to 256 printable characters, not {other}"),
            ));
        }
        None => {
            return Err(ScimError::bad(
                "invalidValue",
                "userName is required (the user's e-mail address)",
            ));
        }
    };
    let user = user_name
        .parse::<UserEmail>()
        .ok()
        .or_else(|| primary_email(object));
    let external_id = match field(object, "externalId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s))
            if s.chars().count() <= 256 && !s.chars().any(ward_core::text::is_unsafe) =>
        {
            Some(s.clone())
        }
        Some(other) => {
            return Err(ScimError::bad(
                "invalidValue",
                format!(
                    "externalId must be a string of at most 256 printable characters, not {other}"
                ),
            ));
        }
    };
    let active = match field(object, "active") {
        None | Some(Value::Null) => None,
        Some(value) => Some(boolean(value, "active")?),
    };
    let attributes: Map<String, Value> = object
        .iter()
        .filter(|(k, _)| !OWN.contains(&k.to_ascii_lowercase().as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(UserInput {
        user_name,
        user,
        external_id,
        active,
        attributes: Value::Object(attributes).to_string(),
    })
}

/// The e-mail of `emails` that names the Ward user when userName is no address: the primary
/// one, else the work one, else the first; `None` when none is an address.
fn primary_email(object: &Map<String, Value>) -> Option<UserEmail> {
    let emails = field(object, "emails")?.as_array()?;
    let value = |e: &Value| {
        e.as_object()
            .and_then(|o| field(o, "value"))
            .and_then(Value::as_str)
            .and_then(|v| v.parse::<UserEmail>().ok())
    };
    let is = |e: &Value, name: &str, wanted: &str| {
        e.as_object()
            .and_then(|o| field(o, name))
            .is_some_and(|v| match v {
                Value::Bool(b) => b.to_string() == wanted,
                Value::String(s) => s.eq_ignore_ascii_case(wanted),
                _ => false,
            })
    };
    emails
        .iter()
        .filter(|e| is(e, "primary", "true"))
        .chain(emails.iter().filter(|e| is(e, "type", "work")))
        .chain(emails.iter())
        .find_map(value)
}

/// The user as a SCIM resource; `base` is the service's URL (`https://host:port/scim/v2`).
pub fn user_resource(user: &DirectoryUser, base: &str) -> Value {
    let mut object = match serde_json::from_str::<Value>(&user.attributes) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let mut schemas = vec![json!(CORE_USER)];
    if object.contains_key(ENTERPRISE_USER) {
        schemas.push(json!(ENTERPRISE_USER));
    }
    object.insert("schemas".into(), Value::Array(schemas));
    object.insert("id".into(), json!(user.id.to_string()));
    if let Some(external) = &user.external_id {
        object.insert("externalId".into(), json!(external));
    }
    object.insert("userName".into(), json!(user.user_name));
    object.insert("active".into(), json!(user.active));
    object.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": user.created_at.rfc3339(),
            "lastModified": user.updated_at.rfc3339(),
            "location": format!("{base}/Users/{}", user.id),
            "version": format!("W/\"{}\"", user.updated_at.unix_ms()),
        }),
    );
    Value::Object(object)
}

/// Always returned, whatever `attributes` or `excludedAttributes` say.
const ALWAYS: [&str; 3] = ["id", "schemas", "meta"];

/// `attributes=` / `excludedAttributes=` (RFC 7644 §3.4.2.5): comma-separated names, each
/// `attr`, `attr.sub` or URN-qualified; the first given wins.
pub fn project(resource: Value, attributes: Option<&str>, excluded: Option<&str>) -> Value {
    let Value::Object(mut object) = resource else {
        return resource;
    };
    // (in the enterprise extension?, attribute, sub-attribute); an empty attribute of the
    // extension names the whole extension.
    let parse = |list: &str| -> Vec<(bool, String, Option<String>)> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|name| {
                let (extension, rest) = match name.strip_prefix(ENTERPRISE_USER) {
                    Some(rest) => (true, rest.strip_prefix(':').unwrap_or("")),
                    None => (
                        false,
                        name.strip_prefix(CORE_USER)
                            .and_then(|r| r.strip_prefix(':'))
                            .unwrap_or(name),
                    ),
                };
                match rest.split_once('.') {
                    Some((a, b)) => (extension, a.to_owned(), Some(b.to_owned())),
                    None => (extension, rest.to_owned(), None),
                }
            })
            .collect()
    };
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    if let Some(list) = attributes.filter(|l| !l.trim().is_empty()) {
        let mut kept = Map::new();
        for (k, v) in &object {
            if ALWAYS.iter().any(|a| same(a, k)) {
                kept.insert(k.clone(), v.clone());
            }
        }
        for (ext, a, sub) in parse(list) {
            if !ext {
                copy(&object, &mut kept, &a, sub.as_deref());
                continue;
            }
            let Some((key, Value::Object(from))) =
                object.iter().find(|(k, _)| same(k, ENTERPRISE_USER))
            else {
                continue;
            };
            let to = kept
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(to) = to {
                if a.is_empty() {
                    to.extend(from.clone());
                } else {
                    copy(from, to, &a, sub.as_deref());
                }
            }
        }
        return Value::Object(kept);
    } else if let Some(list) = excluded.filter(|l| !l.trim().is_empty()) {
        for (ext, a, sub) in parse(list) {
            if !ext && ALWAYS.iter().any(|x| same(x, &a)) {
                continue;
            }
            let container = if ext {
                if a.is_empty() {
                    object.retain(|k, _| !same(k, ENTERPRISE_USER));
                    continue;
                }
                object
                    .iter_mut()
                    .find(|(k, _)| same(k, ENTERPRISE_USER))
                    .and_then(|(_, v)| v.as_object_mut())
            } else {
                Some(&mut object)
            };
            let Some(container) = container else { continue };
            match sub {
                None => container.retain(|k, _| !same(k, &a)),
                Some(sub) => {
                    if let Some((_, Value::Object(inner))) =
                        container.iter_mut().find(|(k, _)| same(k, &a))
                    {
                        inner.retain(|k, _| !same(k, &sub));
                    }
                }
            }
        }
    }
    Value::Object(object)
}

/// Copies attribute `name` (or only its sub-attribute `sub`, also from each value of a
/// multi-valued one) from `from` to `to`.
fn copy(from: &Map<String, Value>, to: &mut Map<String, Value>, name: &str, sub: Option<&str>) {
    let Some((key, value)) = from.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) else {
        return;
    };
    let only = |v: &Value, sub: &str| -> Option<Value> {
        let (k, inner) = v
            .as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(sub))?;
        let mut one = Map::new();
        one.insert(k.clone(), inner.clone());
        Some(Value::Object(one))
    };
    let copied = match (sub, value) {
        (None, v) => Some(v.clone()),
        (Some(sub), Value::Array(values)) => Some(Value::Array(
            values.iter().filter_map(|v| only(v, sub)).collect(),
        )),
        (Some(sub), v) => only(v, sub),
    };
    if let Some(copied) = copied {
        match (to.get_mut(key), copied) {
            (Some(Value::Object(existing)), Value::Object(more)) => existing.extend(more),
            (_, copied) => {
                to.insert(key.clone(), copied);
            }
        }
    }
}

/// A list response (RFC 7644 §3.4.2).
pub fn list(total: usize, start_index: usize, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/ward/ward#scim-identity-provider-deprovisioning",
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": MAX_RESULTS },
        "changePassword": { "supported": false },
        "sort": { "supported": false },
        "etag": { "supported": false },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A token made with `wardctl scim token create --name NAME`",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}

pub fn resource_types(base: &str) -> Vec<Value> {
    vec![json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A person whose devices Ward manages, known by e-mail address",
        "schema": CORE_USER,
        "schemaExtensions": [{ "schema": ENTERPRISE_USER, "required": false }],
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{base}/ResourceTypes/User"),
        },
    })]
}

fn attribute(name: &str, kind: &str, description: &str) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": false,
        "description": description,
        "required": false,
        "caseExact": false,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
    })
}

fn complex(name: &str, multi: bool, description: &str, sub: Vec<Value>) -> Value {
    let mut a = attribute(name, "complex", description);
    a["multiValued"] = json!(multi);
    a["subAttributes"] = Value::Array(sub);
    a
}

pub fn schemas(base: &str) -> Vec<Value> {
    let mut user_name = attribute(
        "userName",
        "string",
        "The user's e-mail address: the one their devices are enrolled with",
    );
    user_name["required"] = json!(true);
    user_name["uniqueness"] = json!("server");
    let multi = |name: &str, description: &str| {
        complex(
            name,
            true,
            description,
            vec![
                attribute("value", "string", "The value"),
                attribute("display", "string", "A human-readable name"),
                attribute("type", "string", "A label: work, home, other"),
                attribute("primary", "boolean", "The primary value"),
            ],
        )
    };
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": CORE_USER,
        "name": "User",
        "description": "User Account",
        "attributes": [
            user_name,
            complex("name", false, "The components of the user's name", vec![
                attribute("formatted", "string", "The full name"),
                attribute("familyName", "string", "The family name"),
                attribute("givenName", "string", "The given name"),
                attribute("middleName", "string", "The middle name"),
                attribute("honorificPrefix", "string", "e.g. Dr."),
                attribute("honorificSuffix", "string", "e.g. III"),
            ]),
            attribute("displayName", "string", "The name to display"),
            attribute("nickName", "string", "The casual name"),
            attribute("title", "string", "The user's title"),
            attribute("userType", "string", "e.g. Employee, Contractor"),
            attribute("preferredLanguage", "string", "e.g. en-US"),
            attribute("locale", "string", "e.g. en-US"),
            attribute("timezone", "string", "e.g. Europe/Paris"),
            attribute("active", "boolean", "False deprovisions the user: Ward offboards them (messaging wipe of every device, then revocation)"),
            multi("emails", "E-mail addresses"),
            multi("phoneNumbers", "Phone numbers"),
        ],
        "meta": {
            "resourceType": "Schema",
            "location": format!("{base}/Schemas/{CORE_USER}"),
        },
    });
    let enterprise = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": ENTERPRISE_USER,
        "name": "EnterpriseUser",
        "description": "Enterprise User",
        "attributes": [
            attribute("employeeNumber", "string", "The employee number"),
            attribute("costCenter", "string", "The cost center"),
            attribute("organization", "string", "The organization"),
            attribute("division", "string", "The division"),
            attribute("department", "string", "The department"),
        ],
        "meta": {
            "resourceType": "Schema",
            "location": format!("{base}/Schemas/{ENTERPRISE_USER}"),
        },
    });
    vec![user, enterprise]
}
