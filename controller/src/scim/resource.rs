//! SCIM resources as JSON: a Ward directory user as a SCIM `User` (RFC 7643 §4.1) and back,
//! and the discovery documents (`/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`).

use serde_json::{Map, Value, json};

use super::error::ScimError;
use crate::app::directory::DirectoryInput;
use crate::core::UserEmail;
use crate::core::directory::DirectoryUser;

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

/// A `User` resource from a request body (POST, PUT) or a patched resource.
pub fn input_from(resource: &Value) -> Result<DirectoryInput, ScimError> {
    let Value::Object(object) = resource else {
        return Err(ScimError::bad(
            "invalidSyntax",
            "the request body must be a JSON object (a SCIM User resource)",
        ));
    };
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
    let user = match field(object, "userName") {
        Some(Value::String(name)) => name.parse::<UserEmail>().map_err(|e| {
            ScimError::bad(
                "invalidValue",
                format!(
                    "userName: {e}. Ward knows people by the e-mail address their devices are enrolled with: map userName to the user's e-mail or user principal name"
                ),
            )
        })?,
        Some(other) => {
            return Err(ScimError::bad(
                "invalidValue",
                format!("userName must be a string, not {other}"),
            ));
        }
        None => {
            return Err(ScimError::bad(
                "invalidValue",
                "userName is required (the user's e-mail address)",
            ));
        }
    };
    let external_id = match field(object, "externalId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= 256 && !s.chars().any(char::is_control) => {
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
        None | Some(Value::Null) => true,
        Some(value) => boolean(value, "active")?,
    };
    let attributes: Map<String, Value> = object
        .iter()
        .filter(|(k, _)| !OWN.contains(&k.to_ascii_lowercase().as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(DirectoryInput {
        user,
        external_id,
        active,
        attributes: Value::Object(attributes).to_string(),
    })
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
    object.insert("userName".into(), json!(user.user.as_str()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_keeps_what_the_provider_sent_but_never_a_password() {
        let input = input_from(&json!({
            "schemas": [CORE_USER],
            "userName": "Alice@Hospital.org",
            "externalId": "e-1",
            "active": "True",
            "password": "hunter2",
            "name": { "givenName": "Alice" },
        }))
        .unwrap();
        assert_eq!(input.user.as_str(), "alice@hospital.org");
        assert!(input.active);
        assert!(!input.attributes.contains("hunter2"));
        assert!(input.attributes.contains("givenName"));
    }

    #[test]
    fn a_user_name_that_is_no_address_is_an_invalid_value() {
        let e = input_from(&json!({ "userName": "alice" })).unwrap_err();
        assert_eq!(e.scim_type, Some("invalidValue"));
        let e = input_from(&json!({ "userName": "a@b.org", "active": "maybe" })).unwrap_err();
        assert_eq!(e.scim_type, Some("invalidValue"));
        let e = input_from(&json!(["not", "an", "object"])).unwrap_err();
        assert_eq!(e.scim_type, Some("invalidSyntax"));
    }
}
