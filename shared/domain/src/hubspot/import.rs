//! Bulk import of HubSpot associations (record -> company), validated and turned into
//! the same association changes HubSpot's webhooks carry, so one code path learns
//! identities and releases held usage.

use super::webhook::AppEvent;
use crate::input::{input_error, InputError};
use serde::Deserialize;

/// Most associations accepted in one request.
pub const MAX_ASSOCIATIONS: usize = 5_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Association {
    object_type: String,
    object_id: u64,
    company_id: u64,
    #[serde(default)]
    removed: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    associations: Vec<Association>,
}

/// Record kinds that can belong to a company.
const KINDS: &[&str] = &[
    "contact", "deal", "ticket", "meeting", "call", "email", "note", "task",
];

/// Validates `{"associations": [{"object_type": "ticket", "object_id": 901,
/// "company_id": 5123, "removed": false}]}` into association changes.
pub fn associations_from_body(body: &[u8], now_ms: i64) -> Result<Vec<AppEvent>, InputError> {
    let parsed: Body = serde_json::from_slice(body).map_err(|e| {
        input_error(
            "invalid_associations",
            format!(
                "associations could not be read (line {}, column {}): {e}",
                e.line(),
                e.column()
            ),
        )
    })?;
    if parsed.associations.is_empty() {
        return Err(input_error("invalid_associations", "associations is empty"));
    }
    if parsed.associations.len() > MAX_ASSOCIATIONS {
        return Err(input_error(
            "too_many_associations",
            format!(
                "{} associations; at most {MAX_ASSOCIATIONS} per request",
                parsed.associations.len()
            ),
        ));
    }
    parsed
        .associations
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let kind = a.object_type.to_ascii_lowercase();
            let kind = kind.strip_suffix('s').unwrap_or(&kind).to_owned();
            if !KINDS.contains(&kind.as_str()) {
                return Err(input_error(
                    "invalid_associations",
                    format!(
                        "associations[{i}]: object_type '{}' is not one of {}",
                        a.object_type,
                        KINDS.join(", ")
                    ),
                ));
            }
            Ok(AppEvent {
                portal_id: 0,
                occurred_at: now_ms,
                subscription_type: format!("{kind}.associationChange"),
                association_type: Some(format!("{}_TO_COMPANY", kind.to_ascii_uppercase())),
                from_object_id: Some(a.object_id),
                to_object_id: Some(a.company_id),
                association_removed: Some(a.removed),
                ..AppEvent::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hubspot::attribution::{facts, Fact, ObjectRef};

    #[test]
    fn imported_associations_teach_the_same_facts_as_webhooks() {
        let evs = associations_from_body(
            br#"{"associations":[{"object_type":"tickets","object_id":901,"company_id":5123},
                                 {"object_type":"contact","object_id":7,"company_id":5123,"removed":true}]}"#,
            1,
        )
        .unwrap();
        let learned: Vec<Fact> = evs.iter().flat_map(facts).collect();
        assert_eq!(
            learned,
            vec![
                Fact::Associate {
                    object: ObjectRef {
                        kind: "ticket".into(),
                        id: 901
                    },
                    company: 5123
                },
                Fact::Dissociate {
                    object: ObjectRef {
                        kind: "contact".into(),
                        id: 7
                    },
                    company: 5123
                },
            ]
        );
    }

    #[test]
    fn bad_imports_are_refused_with_a_code() {
        for (body, code) in [
            (r#"{"associations":[]}"#, "invalid_associations"),
            (
                r#"{"associations":[{"object_type":"widget","object_id":1,"company_id":2}]}"#,
                "invalid_associations",
            ),
            (
                r#"{"associations":[{"object_type":"ticket","object_id":-1,"company_id":2}]}"#,
                "invalid_associations",
            ),
            (
                r#"{"associations":[{"object_type":"ticket","object_id":1}]}"#,
                "invalid_associations",
            ),
            (r#"{"links":[]}"#, "invalid_associations"),
        ] {
            assert_eq!(
                associations_from_body(body.as_bytes(), 1).unwrap_err().code,
                code,
                "{body}"
            );
        }
        let many = format!(
            r#"{{"associations":[{}]}}"#,
            vec![r#"{"object_type":"ticket","object_id":1,"company_id":2}"#; MAX_ASSOCIATIONS + 1]
                .join(",")
        );
        assert_eq!(
            associations_from_body(many.as_bytes(), 1).unwrap_err().code,
            "too_many_associations"
        );
    }
}
