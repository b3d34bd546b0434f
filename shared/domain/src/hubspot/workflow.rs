//! Workflow "Send a webhook" payloads: one JSON object per request, describing the
//! enrolled record with the properties the workflow author chose, normalised into the
//! same [`AppEvent`] shape as app webhooks so one set of mapping rules applies.
//!
//! Accepted shape (`portalId`, `event` and `objectType` may also come from the query
//! string, so a workflow author can keep HubSpot's default payload and name the event
//! in the URL, but only when the signature covers the query: v3 and v2 sign the full
//! URI, v1 signs only the body, see [`QueryTrust`]):
//!
//! ```json
//! {"portalId": 62515, "event": "ticket_escalated", "objectType": "TICKET",
//!  "objectId": 901, "associatedCompanyId": 5123, "occurredAt": 1764000000000,
//!  "properties": {"hs_ticket_priority": "HIGH", "time_spent_hours": "1.5"}}
//! ```
//!
//! Properties may be plain values or HubSpot's legacy `{"value": ...}` objects; ids
//! may be numbers or numeric strings. The event becomes subscription type
//! `workflow.<event>` for mapping rules.

use super::webhook::{occurred_at_in_range, AppEvent, WebhookError};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Upper bound on properties carried from one workflow payload.
pub const MAX_PROPERTIES: usize = 100;
const MAX_VALUE_CHARS: usize = 500;

/// Parameters taken from the query string (they fill what the body leaves out).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WorkflowQuery {
    pub portal_id: Option<String>,
    pub event: Option<String>,
    pub object_type: Option<String>,
}

impl WorkflowQuery {
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut q = WorkflowQuery::default();
        for (k, v) in pairs {
            match k {
                "portalId" | "portal_id" => q.portal_id = Some(v.to_owned()),
                "event" => q.event = Some(v.to_owned()),
                "objectType" | "object_type" => q.object_type = Some(v.to_owned()),
                _ => {}
            }
        }
        q
    }
}

/// Whether the request's signature covers its query string. Tenant routing is taken
/// only from signed data, so with [`QueryTrust::Unsigned`] a query that names the
/// portal, event or object type is refused rather than believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryTrust {
    /// v3 and v2: the signature covers method, full URI (query included) and body.
    Signed,
    /// v1: the signature covers the body only.
    Unsigned,
}

impl From<super::signature::Version> for QueryTrust {
    fn from(v: super::signature::Version) -> Self {
        if v.covers_uri() {
            QueryTrust::Signed
        } else {
            QueryTrust::Unsigned
        }
    }
}

fn invalid(message: impl Into<String>) -> WebhookError {
    WebhookError::InvalidEvent {
        index: 0,
        message: message.into(),
    }
}

/// A property value as text: numbers and booleans as written, legacy `{"value": x}`
/// objects unwrapped, anything else (arrays, nested objects, null) left out.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.chars().take(MAX_VALUE_CHARS).collect()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(o) => o.get("value").and_then(text),
        _ => None,
    }
}

fn id(v: Option<&Value>) -> Result<Option<u64>, String> {
    match v.and_then(text) {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("'{s}' is not a HubSpot id")),
    }
}

fn first<'a>(m: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| m.get(*n))
}

/// HubSpot object type names and ids as an object type id (`TICKET` -> `0-5`).
fn object_type_id(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "contact" | "contacts" | "0-1" => "0-1",
        "company" | "companies" | "0-2" => "0-2",
        "deal" | "deals" | "0-3" => "0-3",
        "ticket" | "tickets" | "0-5" => "0-5",
        "note" | "notes" | "0-46" => "0-46",
        "meeting" | "meetings" | "0-47" => "0-47",
        "call" | "calls" | "0-48" => "0-48",
        "email" | "emails" | "0-49" => "0-49",
        "task" | "tasks" | "0-27" => "0-27",
        _ => return None,
    })
}

fn plain_event(e: &str) -> bool {
    !e.is_empty()
        && e.len() <= 64
        && e.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Milliseconds since the epoch from a number, a numeric string or an RFC 3339 time.
fn millis(v: &Value) -> Option<i64> {
    let t = text(v)?;
    if let Ok(ms) = t.parse::<i64>() {
        return Some(ms);
    }
    chrono::DateTime::parse_from_rfc3339(&t)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// Parses one workflow payload. `received_ms` stands in for the time when the payload
/// carries none (the event is then marked `occurred_at_defaulted`); a time it carries
/// must be from 2000 on and at most 5 minutes after `received_ms`.
pub fn parse_workflow(
    body: &[u8],
    query: &WorkflowQuery,
    trust: QueryTrust,
    received_ms: i64,
) -> Result<AppEvent, WebhookError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(WebhookError::Empty);
    }
    if trust == QueryTrust::Unsigned {
        for (name, given) in [
            ("portalId", &query.portal_id),
            ("event", &query.event),
            ("objectType", &query.object_type),
        ] {
            if given.is_some() {
                return Err(WebhookError::RoutingNotSigned(name));
            }
        }
    }
    let root: Value = serde_json::from_slice(body).map_err(|e| WebhookError::Malformed {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let Value::Object(root) = root else {
        return Err(invalid(
            "a workflow webhook body is one JSON object (use /v1/webhooks/hubspot for app webhook batches)",
        ));
    };
    let empty = Map::new();
    let props_obj = match root.get("properties") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(p)) => p,
        Some(_) => return Err(invalid("properties must be an object")),
    };
    if props_obj.len() > MAX_PROPERTIES {
        return Err(invalid(format!(
            "{} properties; at most {MAX_PROPERTIES}",
            props_obj.len()
        )));
    }
    let mut properties = BTreeMap::new();
    for (k, v) in props_obj {
        if k.is_empty() || k.len() > 100 {
            return Err(invalid("a property name is empty or longer than 100"));
        }
        if let Some(t) = text(v) {
            properties.insert(k.clone(), t);
        }
    }
    let lookup = |names: &[&str]| first(&root, names).or_else(|| first(props_obj, names));

    let portal_id = match id(first(&root, &["portalId", "portal_id", "portal-id"])) {
        Ok(Some(p)) => p,
        Ok(None) => match query.portal_id.as_deref().map(str::parse::<u64>) {
            Some(Ok(p)) => p,
            Some(Err(_)) => return Err(invalid("portalId in the query is not a number")),
            None => return Err(invalid("portalId is required (in the body or the query)")),
        },
        Err(e) => return Err(invalid(format!("portalId: {e}"))),
    };
    let event = first(&root, &["event", "eventName"])
        .and_then(text)
        .or_else(|| query.event.clone())
        .ok_or_else(|| {
            invalid("event is required (in the body or the query), e.g. ticket_escalated")
        })?;
    if !plain_event(&event) {
        return Err(invalid(format!(
            "event '{event}' must be 1-64 letters, digits, '_' or '-'"
        )));
    }
    let object_type = first(&root, &["objectType", "object_type", "objectTypeId"])
        .and_then(text)
        .or_else(|| query.object_type.clone());
    let object_type_id = match object_type {
        None => None,
        Some(t) => Some(
            object_type_id(&t)
                .ok_or_else(|| invalid(format!("objectType '{t}' is not a known HubSpot object")))?
                .to_owned(),
        ),
    };
    let object_id = id(lookup(&["objectId", "object_id", "hs_object_id", "vid"]))
        .map_err(|e| invalid(format!("objectId: {e}")))?;
    let associated_company_id = id(lookup(&[
        "associatedCompanyId",
        "associatedcompanyid",
        "associated_company_id",
    ]))
    .map_err(|e| invalid(format!("associatedCompanyId: {e}")))?;
    let occurred = lookup(&["occurredAt", "occurred_at", "timestamp"]).map(|v| {
        millis(v).ok_or_else(|| invalid("occurredAt is not epoch milliseconds or RFC 3339"))
    });
    let (occurred_at, occurred_at_defaulted) = match occurred {
        Some(Ok(ms)) if !occurred_at_in_range(ms, received_ms) => {
            return Err(WebhookError::OccurredAtOutOfRange {
                index: 0,
                occurred_ms: ms,
            })
        }
        Some(Ok(ms)) => (ms, false),
        Some(Err(e)) => return Err(e),
        None => (received_ms, true),
    };
    Ok(AppEvent {
        portal_id,
        occurred_at,
        occurred_at_defaulted,
        subscription_type: format!("workflow.{event}"),
        object_id,
        object_type_id,
        properties,
        associated_company_id,
        ..AppEvent::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, query: &str) -> Result<AppEvent, WebhookError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let q = WorkflowQuery::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        parse_workflow(body.as_bytes(), &q, QueryTrust::Signed, 1_764_000_000_000)
    }

    #[test]
    fn a_workflow_payload_becomes_a_change_with_its_properties_and_company() {
        let ev = parse(
            r#"{"portalId":62515,"event":"ticket_escalated","objectType":"TICKET","objectId":"901",
                "associatedCompanyId":5123,"occurredAt":1764000000123,
                "properties":{"hs_ticket_priority":"HIGH","hours":1.5,"legacy":{"value":"x"},"skip":[1]}}"#,
            "",
        )
        .unwrap();
        assert_eq!(ev.portal_id, 62515);
        assert_eq!(ev.subscription_type, "workflow.ticket_escalated");
        assert_eq!(ev.object_type_id.as_deref(), Some("0-5"));
        assert_eq!(ev.object_id, Some(901));
        assert_eq!(ev.associated_company_id, Some(5123));
        assert_eq!(ev.occurred_at, 1_764_000_000_123);
        assert!(!ev.occurred_at_defaulted);
        assert_eq!(ev.property("hours"), Some("1.5"));
        assert_eq!(ev.property("legacy"), Some("x"));
        assert_eq!(ev.property("skip"), None);
    }

    #[test]
    fn the_query_string_can_name_the_portal_event_and_object_type() {
        let ev = parse(
            r#"{"hs_object_id":"77","associatedcompanyid":"12"}"#,
            "portalId=9&event=call_logged&objectType=calls",
        )
        .unwrap();
        assert_eq!(
            (ev.portal_id, ev.subscription_type.as_str(), ev.object_id),
            (9, "workflow.call_logged", Some(77))
        );
        assert_eq!(ev.object_type_id.as_deref(), Some("0-48"));
        assert_eq!(ev.associated_company_id, Some(12));
        assert!(ev.occurred_at_defaulted);
    }

    #[test]
    fn routing_from_a_query_the_signature_does_not_cover_is_refused() {
        let body = br#"{"objectType":"ticket","objectId":5,"occurredAt":1764000000000}"#;
        for query in [
            "portalId=9&event=x",
            "event=x",
            "objectType=calls",
            "portal_id=9",
        ] {
            let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            let q = WorkflowQuery::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let e = parse_workflow(body, &q, QueryTrust::Unsigned, 1_764_000_000_000).unwrap_err();
            assert_eq!(e.code(), "routing_not_signed", "{query}");
            assert!(parse_workflow(
                br#"{"portalId":1,"event":"x","occurredAt":1764000000000}"#,
                &q,
                QueryTrust::Signed,
                1_764_000_000_000
            )
            .is_ok());
        }
        // The same routing inside the (signed) body is fine, and unrelated query
        // parameters are ignored.
        let ev = parse_workflow(
            br#"{"portalId":9,"event":"x","occurredAt":1764000000000}"#,
            &WorkflowQuery::from_pairs([("utm", "a")]),
            QueryTrust::Unsigned,
            1_764_000_000_000,
        )
        .unwrap();
        assert_eq!(
            (ev.portal_id, ev.subscription_type.as_str()),
            (9, "workflow.x")
        );
        assert_eq!(
            QueryTrust::from(crate::hubspot::signature::Version::V1),
            QueryTrust::Unsigned
        );
        assert_eq!(
            QueryTrust::from(crate::hubspot::signature::Version::V2),
            QueryTrust::Signed
        );
    }

    #[test]
    fn a_retry_without_a_timestamp_keeps_its_idempotency_key() {
        let body = r#"{"portalId":1,"event":"x","objectType":"ticket","objectId":5,"properties":{"a":"1"}}"#;
        let q = WorkflowQuery::default();
        let a = parse_workflow(body.as_bytes(), &q, QueryTrust::Signed, 1000).unwrap();
        let b = parse_workflow(body.as_bytes(), &q, QueryTrust::Signed, 999_999).unwrap();
        assert_eq!(a.idempotency_key(), b.idempotency_key());
        let c = parse_workflow(
            br#"{"portalId":1,"event":"x","objectType":"ticket","objectId":5,"properties":{"a":"2"}}"#,
            &q,
            QueryTrust::Signed,
            1000,
        )
        .unwrap();
        assert_ne!(a.idempotency_key(), c.idempotency_key());
    }

    #[test]
    fn bad_workflow_payloads_are_refused_with_a_reason() {
        for (body, query, why) in [
            ("[]", "", "one JSON object"),
            (r#"{"event":"x"}"#, "", "portalId is required"),
            (r#"{"portalId":1}"#, "", "event is required"),
            (r#"{"portalId":1,"event":"a b"}"#, "", "letters, digits"),
            (r#"{"portalId":"abc","event":"x"}"#, "", "not a HubSpot id"),
            (
                r#"{"portalId":1,"event":"x","objectType":"widget"}"#,
                "",
                "not a known",
            ),
            (
                r#"{"portalId":1,"event":"x","occurredAt":"soon"}"#,
                "",
                "occurredAt",
            ),
            (
                r#"{"portalId":1,"event":"x","properties":[1]}"#,
                "",
                "must be an object",
            ),
        ] {
            let e = parse(body, query).unwrap_err();
            assert!(e.to_string().contains(why), "{body}: {e}");
        }
        assert_eq!(parse("", "").unwrap_err().code(), "empty_body");
        assert_eq!(parse("{", "").unwrap_err().code(), "malformed_json");
    }

    #[test]
    fn an_occurred_at_before_2000_or_minutes_in_the_future_is_refused_with_its_code() {
        // `parse` receives at 1_764_000_000_000 (2025-11-24T16:00:00Z).
        for occurred in [
            "0",
            "-1",
            "946684799999",
            "1764000300001",
            "9223372036854775807",
            "\"1970-01-01T00:00:00Z\"",
            "\"2099-01-01T00:00:00Z\"",
        ] {
            let body = format!(r#"{{"portalId":1,"event":"x","occurredAt":{occurred}}}"#);
            let e = parse(&body, "").unwrap_err();
            assert_eq!(e.code(), "occurred_at_out_of_range", "{occurred}: {e}");
        }
        for occurred in ["946684800000", "1764000000000", "1764000300000"] {
            let body = format!(r#"{{"portalId":1,"event":"x","occurredAt":{occurred}}}"#);
            assert!(parse(&body, "").is_ok(), "{occurred}");
        }
    }

    #[test]
    fn the_default_rules_match_workflow_properties_like_app_properties() {
        use crate::hubspot::mapping::{map_event, rules_from_body, Mapped};
        let rules = rules_from_body(
            br#"{"rules":[{"subscription_type":"workflow.ticket_escalated","property_name":"hs_ticket_priority",
                 "property_values":["HIGH"],"meter":"escalations","quantity":"property_value_of_hours_is_not_used","stage":"delivered","service_line":"support"}]}"#,
            &|_| true,
        );
        // An unknown quantity form is refused by the rules' own validation...
        assert!(rules.is_err());
        let rules = rules_from_body(
            br#"{"rules":[{"subscription_type":"workflow.ticket_escalated","property_name":"hs_ticket_priority",
                 "property_values":["HIGH"],"meter":"escalations","quantity":{"constant":"1"},"stage":"delivered","service_line":"support"}]}"#,
            &|_| true,
        )
        .unwrap();
        let high = parse(
            r#"{"portalId":1,"event":"ticket_escalated","objectType":"ticket","objectId":5,"properties":{"hs_ticket_priority":"HIGH"}}"#,
            "",
        )
        .unwrap();
        let low = parse(
            r#"{"portalId":1,"event":"ticket_escalated","objectType":"ticket","objectId":5,"properties":{"hs_ticket_priority":"LOW"}}"#,
            "",
        )
        .unwrap();
        assert!(matches!(map_event(&rules, &high), Mapped::Usage { .. }));
        assert_eq!(map_event(&rules, &low), Mapped::Unmapped);
    }
}
