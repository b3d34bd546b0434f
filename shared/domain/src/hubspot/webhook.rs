//! HubSpot webhook payloads: app webhook batches and workflow "Send a webhook" bodies,
//! parsed into one normalised change each, with an idempotency key that survives
//! HubSpot's retries and its non-unique `eventId`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// HubSpot sends at most 100 events per app webhook request.
pub const MAX_BATCH: usize = 100;

/// Earliest `occurredAt` accepted: 2000-01-01T00:00:00Z (epoch milliseconds).
pub const EARLIEST_OCCURRED_AT_MS: i64 = 946_684_800_000;
/// How far after receipt an `occurredAt` may lie (clock skew), as for API event
/// timestamps (`Limits::max_future_skew`, 5 minutes).
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;

/// Whether a change's time is plausible: not before 2000, not more than
/// [`MAX_FUTURE_SKEW_MS`] after `received_ms`.
pub fn occurred_at_in_range(occurred_ms: i64, received_ms: i64) -> bool {
    occurred_ms >= EARLIEST_OCCURRED_AT_MS
        && occurred_ms <= received_ms.saturating_add(MAX_FUTURE_SKEW_MS)
}

/// One app webhook event, as HubSpot sends it (unknown fields are ignored: HubSpot
/// adds fields over time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AppEvent {
    #[serde(default)]
    pub event_id: Option<u64>,
    #[serde(default)]
    pub subscription_id: Option<u64>,
    pub portal_id: u64,
    #[serde(default)]
    pub app_id: Option<u64>,
    pub occurred_at: i64,
    pub subscription_type: String,
    #[serde(default)]
    pub attempt_number: Option<u32>,
    #[serde(default)]
    pub object_id: Option<u64>,
    #[serde(default)]
    pub object_type_id: Option<String>,
    #[serde(default)]
    pub property_name: Option<String>,
    #[serde(default)]
    pub property_value: Option<String>,
    #[serde(default)]
    pub change_source: Option<String>,
    #[serde(default)]
    pub association_type: Option<String>,
    #[serde(default)]
    pub from_object_id: Option<u64>,
    #[serde(default)]
    pub to_object_id: Option<u64>,
    #[serde(default)]
    pub association_removed: Option<bool>,
    #[serde(default)]
    pub primary_object_id: Option<u64>,
    #[serde(default)]
    pub merged_object_ids: Option<Vec<u64>>,
    #[serde(default)]
    pub new_object_id: Option<u64>,
    /// Workflow "Send a webhook" payloads only: the enrolled object's properties
    /// (flattened to strings), matched by mapping rules like `propertyName`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// Workflow payloads only: the company the object is associated with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub associated_company_id: Option<u64>,
    /// True when the sender gave no time and `occurred_at` is the receipt time: the
    /// idempotency key then leaves the time out, so a retry keeps its key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub occurred_at_defaulted: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WebhookError {
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Malformed {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("event {index}: {message}")]
    InvalidEvent { index: usize, message: String },
    #[error("{0} events in one request; HubSpot sends at most 100")]
    TooMany(usize),
    #[error("the body is empty")]
    Empty,
    #[error("event {index}: occurredAt {occurred_ms} is before 2000-01-01 or more than 5 minutes after receipt")]
    OccurredAtOutOfRange { index: usize, occurred_ms: i64 },
    /// Routing (`portalId`, `event`, `objectType`) came from a query string the
    /// request's signature does not cover (v1 signs the body only).
    #[error("{0} in the query string is not covered by a v1 signature; put it in the signed body or sign with v3")]
    RoutingNotSigned(&'static str),
}

impl WebhookError {
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::Malformed { .. } => "malformed_json",
            WebhookError::InvalidEvent { .. } => "invalid_webhook_event",
            WebhookError::TooMany(_) => "too_many_events",
            WebhookError::Empty => "empty_body",
            WebhookError::OccurredAtOutOfRange { .. } => "occurred_at_out_of_range",
            WebhookError::RoutingNotSigned(_) => "routing_not_signed",
        }
    }
}

/// Parses an app webhook batch (a JSON array of events).
pub fn parse_batch(body: &[u8]) -> Result<Vec<AppEvent>, WebhookError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(WebhookError::Empty);
    }
    let raw: Vec<serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
    if raw.len() > MAX_BATCH {
        return Err(WebhookError::TooMany(raw.len()));
    }
    raw.into_iter()
        .enumerate()
        .map(|(index, v)| {
            let ev: AppEvent =
                serde_json::from_value(v).map_err(|e| WebhookError::InvalidEvent {
                    index,
                    message: e.to_string(),
                })?;
            if ev.subscription_type.is_empty() || ev.subscription_type.len() > 100 {
                return Err(WebhookError::InvalidEvent {
                    index,
                    message: "subscriptionType is empty or too long".into(),
                });
            }
            Ok(ev)
        })
        .collect()
}

/// The object kind a subscription type is about (`ticket.creation` -> `ticket`).
pub fn object_kind(subscription_type: &str) -> &str {
    subscription_type.split('.').next().unwrap_or_default()
}

impl AppEvent {
    /// The idempotency key: a hash of the fields that identify the change itself.
    /// `eventId` (not guaranteed unique) and `attemptNumber` (changes on every retry)
    /// are deliberately left out.
    pub fn idempotency_key(&self) -> String {
        let merged = self
            .merged_object_ids
            .as_ref()
            .map(|ids| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(","))
            .unwrap_or_default();
        let occurred = if self.occurred_at_defaulted {
            String::new()
        } else {
            self.occurred_at.to_string()
        };
        let mut parts = vec![
            self.portal_id.to_string(),
            self.subscription_type.clone(),
            opt(self.object_id),
            self.object_type_id.clone().unwrap_or_default(),
            self.property_name.clone().unwrap_or_default(),
            self.property_value.clone().unwrap_or_default(),
            occurred,
            self.association_type.clone().unwrap_or_default(),
            opt(self.from_object_id),
            opt(self.to_object_id),
            self.association_removed
                .map(|b| b.to_string())
                .unwrap_or_default(),
            opt(self.primary_object_id),
            merged,
            opt(self.new_object_id),
        ];
        // Workflow-only fields join the key only when present, so app webhook keys
        // stay what they always were.
        if !self.properties.is_empty() || self.associated_company_id.is_some() {
            parts.push(opt(self.associated_company_id));
            for (k, v) in &self.properties {
                parts.push(format!("{k}={v}"));
            }
        }
        let mut h = Sha256::new();
        for p in parts {
            h.update(p.as_bytes());
            h.update([0x1f]);
        }
        format!("hs-{}", &hex::encode(h.finalize())[..40])
    }
}

impl AppEvent {
    /// The value of a property this change carries: the changed property of an app
    /// event, or any property of a workflow payload.
    pub fn property(&self, name: &str) -> Option<&str> {
        if self.property_name.as_deref() == Some(name) {
            return self.property_value.as_deref();
        }
        self.properties.get(name).map(String::as_str)
    }

    /// Whether this change is about (app events) or carries (workflows) a property.
    pub fn carries(&self, name: &str) -> bool {
        self.property_name.as_deref() == Some(name) || self.properties.contains_key(name)
    }
}

fn opt(v: Option<u64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(json: &str) -> AppEvent {
        parse_batch(format!("[{json}]").as_bytes())
            .unwrap()
            .remove(0)
    }

    #[test]
    fn retries_share_a_key_even_with_new_attempt_numbers_and_event_ids() {
        let a = ev(
            r#"{"eventId":1,"portalId":7,"occurredAt":100,"subscriptionType":"ticket.creation","attemptNumber":0,"objectId":9}"#,
        );
        let b = ev(
            r#"{"eventId":555,"portalId":7,"occurredAt":100,"subscriptionType":"ticket.creation","attemptNumber":3,"objectId":9}"#,
        );
        assert_eq!(a.idempotency_key(), b.idempotency_key());
    }

    #[test]
    fn distinct_changes_with_the_same_event_id_get_distinct_keys() {
        let a = ev(
            r#"{"eventId":1,"portalId":7,"occurredAt":100,"subscriptionType":"ticket.propertyChange","objectId":9,"propertyName":"hs_pipeline_stage","propertyValue":"2"}"#,
        );
        let b = ev(
            r#"{"eventId":1,"portalId":7,"occurredAt":100,"subscriptionType":"ticket.propertyChange","objectId":9,"propertyName":"hs_pipeline_stage","propertyValue":"4"}"#,
        );
        assert_ne!(a.idempotency_key(), b.idempotency_key());
    }

    #[test]
    fn bad_batches_are_refused_with_a_reason() {
        assert_eq!(parse_batch(b"").unwrap_err().code(), "empty_body");
        assert_eq!(parse_batch(b"[{").unwrap_err().code(), "malformed_json");
        assert_eq!(
            parse_batch(br#"[{"portalId":"x"}]"#).unwrap_err().code(),
            "invalid_webhook_event"
        );
        assert_eq!(
            parse_batch(br#"{"portalId":1}"#).unwrap_err().code(),
            "malformed_json"
        );
        let many = format!(
            "[{}]",
            vec![r#"{"portalId":1,"occurredAt":1,"subscriptionType":"a.b"}"#; 101].join(",")
        );
        assert_eq!(
            parse_batch(many.as_bytes()).unwrap_err().code(),
            "too_many_events"
        );
    }
}

#[cfg(test)]
mod no_panic {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(events) = parse_batch(&bytes) {
                for e in events {
                    let _ = e.idempotency_key();
                    let _ = crate::hubspot::attribution::facts(&e);
                    let _ = crate::hubspot::attribution::subject(&e);
                }
            }
        }

        #[test]
        fn json_shaped_garbage_never_panics_the_parser(
            portal in any::<i64>(), occurred in any::<i64>(), sub in "[a-z]{0,8}\\.?[a-zA-Z]{0,12}",
            obj in proptest::option::of(any::<u64>()), from in proptest::option::of(any::<u64>()),
            assoc in proptest::option::of("[A-Z_]{0,20}"), merged in proptest::option::of(prop::collection::vec(any::<u64>(), 0..4)),
        ) {
            let body = serde_json::json!([{"portalId": portal, "occurredAt": occurred, "subscriptionType": sub, "objectId": obj,
                "fromObjectId": from, "toObjectId": obj, "associationType": assoc, "mergedObjectIds": merged, "primaryObjectId": obj}]);
            if let Ok(events) = parse_batch(body.to_string().as_bytes()) {
                for e in events {
                    let _ = e.idempotency_key();
                    let _ = crate::hubspot::attribution::facts(&e);
                    let _ = crate::hubspot::attribution::subject(&e);
                }
            }
        }
    }
}
