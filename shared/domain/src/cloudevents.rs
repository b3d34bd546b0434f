//! CloudEvents 1.0 in (<https://github.com/cloudevents/spec>, JSON format and batch
//! mode): a CloudEvent sent to `POST /v1/events` is mapped onto a native event and then
//! validated exactly like one, so producers written for OpenMeter-style ingestion work
//! unchanged and every rule, code and limit of the native API applies.
//!
//! | CloudEvent            | native event                                     |
//! |-----------------------|--------------------------------------------------|
//! | `source` + `id`       | `id` (the idempotency key; see [`event_id`])      |
//! | `subject`             | `account`                                        |
//! | `type`                | `meter`                                          |
//! | `time`                | `timestamp` (receipt time when absent)           |
//! | `data.quantity`       | `quantity` (1 when absent, as a count)           |
//! | `data.unit`, `data.stage`, `data.service_line`, `data.contact`, `data.entitlement`, `data.correction_reason` | the native field of that name |
//! | every other `data` member | `properties`                                 |
//!
//! An element is a CloudEvent when it carries `specversion`; a request may mix both
//! forms. Other context attributes (`dataschema`, extensions such as `traceparent`) are
//! accepted and ignored. Content types `application/cloudevents+json` (one event) and
//! `application/cloudevents-batch+json` (an array) are accepted like JSON.

use crate::event::{RejectCode, Rejection};
use crate::ids::EventId;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The structured-mode media type.
pub const STRUCTURED: &str = "application/cloudevents+json";
/// The batch-mode media type.
pub const BATCH: &str = "application/cloudevents-batch+json";

/// `data` members that become native fields of the same name.
const LIFTED: &[&str] = &[
    "quantity",
    "unit",
    "stage",
    "service_line",
    "contact",
    "entitlement",
    "correction_reason",
];

/// The native event id for a CloudEvent: CloudEvents defines `source` + `id` as the
/// unique key, so both go into ours. Readable when it fits (`ce:<len(source)>:<source><id>`,
/// the length prefix keeps `("a#", "b")` and `("a", "#b")` apart); otherwise
/// `ce:sha256:<hex>` of the same length-prefixed pair. The two forms cannot collide: one
/// has digits after `ce:`, the other `sha256`.
pub fn event_id(source: &str, id: &str) -> String {
    let readable = format!("ce:{}:{source}{id}", source.len());
    if EventId::parse(&readable).is_ok() {
        return readable;
    }
    let mut h = Sha256::new();
    h.update((source.len() as u64).to_be_bytes());
    h.update(source.as_bytes());
    h.update(id.as_bytes());
    format!("ce:sha256:{}", hex::encode(h.finalize()))
}

/// A request's elements with every CloudEvent replaced by its native form.
pub struct Translated {
    /// `Some` where the element was a CloudEvent that mapped; `None` for native events
    /// and for CloudEvents that could not be mapped (see `failed`).
    natives: Vec<Option<Box<RawValue>>>,
    /// Why each unmappable CloudEvent was refused, by index.
    failed: BTreeMap<usize, Rejection>,
}

impl Translated {
    /// The elements to validate: native ones as sent, CloudEvents mapped.
    pub fn elements<'a>(&'a self, raw: &[&'a RawValue]) -> Vec<&'a RawValue> {
        raw.iter()
            .zip(&self.natives)
            .map(|(r, n)| n.as_deref().unwrap_or(r))
            .collect()
    }

    /// How many elements were CloudEvents (mapped or not).
    pub fn cloudevents(&self) -> usize {
        self.natives.iter().filter(|n| n.is_some()).count() + self.failed.len()
    }

    /// Puts each unmappable CloudEvent's own reason in place of the generic rejection
    /// native validation gave it.
    pub fn explain(&self, rejected: &mut Vec<Rejection>) {
        if self.failed.is_empty() {
            return;
        }
        rejected.retain(|r| !self.failed.contains_key(&r.index));
        rejected.extend(self.failed.values().cloned());
        rejected.sort_by_key(|r| r.index);
    }
}

/// Maps every CloudEvent among `raw`; native events are left alone.
pub fn translate(raw: &[&RawValue]) -> Translated {
    let mut natives = Vec::with_capacity(raw.len());
    let mut failed = BTreeMap::new();
    for (index, r) in raw.iter().enumerate() {
        // Cheap pre-filter: only objects naming `specversion` are parsed a second time.
        if !r.get().contains("\"specversion\"") {
            natives.push(None);
            continue;
        }
        let Ok(fields) = serde_json::from_str::<Map<String, Value>>(r.get()) else {
            natives.push(None);
            continue;
        };
        if !fields.contains_key("specversion") {
            natives.push(None);
            continue;
        }
        match to_native(&fields) {
            Ok(native) => natives.push(Some(native)),
            Err((code, message)) => {
                let id = fields.get("id").and_then(Value::as_str).map(str::to_owned);
                failed.insert(
                    index,
                    Rejection {
                        index,
                        id,
                        code,
                        message,
                    },
                );
                natives.push(None);
            }
        }
    }
    Translated { natives, failed }
}

type Refusal = (RejectCode, String);

fn attribute<'a>(
    fields: &'a Map<String, Value>,
    name: &str,
    missing: RejectCode,
    what: &str,
) -> Result<&'a str, Refusal> {
    match fields.get(name) {
        None | Some(Value::Null) => Err((
            missing,
            format!("CloudEvent attribute '{name}' ({what}) is required"),
        )),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err((
            missing,
            format!("CloudEvent attribute '{name}' ({what}) must be a non-empty string"),
        )),
    }
}

fn to_native(fields: &Map<String, Value>) -> Result<Box<RawValue>, Refusal> {
    use RejectCode as C;
    match fields.get("specversion") {
        Some(Value::String(v)) if v == "1.0" => {}
        other => {
            return Err((
                C::InvalidEvent,
                format!(
                    "CloudEvents specversion must be \"1.0\", got {}",
                    other.map_or_else(|| "nothing".to_owned(), Value::to_string)
                ),
            ))
        }
    }
    if fields.contains_key("data_base64") {
        return Err((
            C::InvalidEvent,
            "CloudEvent data_base64 (binary data) is not supported; send JSON data".into(),
        ));
    }
    if let Some(ct) = fields.get("datacontenttype") {
        let ct = ct.as_str().unwrap_or_default().to_ascii_lowercase();
        if !ct.contains("json") {
            return Err((
                C::InvalidEvent,
                format!("CloudEvent datacontenttype '{ct}' is not JSON"),
            ));
        }
    }
    let source = attribute(
        fields,
        "source",
        C::MissingId,
        "with id, the idempotency key",
    )?;
    let id = attribute(
        fields,
        "id",
        C::MissingId,
        "with source, the idempotency key",
    )?;
    let account = attribute(fields, "subject", C::MissingAccount, "the account")?;
    let meter = attribute(fields, "type", C::MissingMeter, "the meter")?;

    let mut native = Map::new();
    native.insert("id".into(), Value::String(event_id(source, id)));
    native.insert("account".into(), Value::String(account.to_owned()));
    native.insert("meter".into(), Value::String(meter.to_owned()));
    if let Some(time) = fields.get("time").filter(|t| !t.is_null()) {
        native.insert("timestamp".into(), time.clone());
    }
    match fields.get("data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(data)) => {
            let mut properties = Map::new();
            for (k, v) in data {
                if LIFTED.contains(&k.as_str()) {
                    native.insert(k.clone(), v.clone());
                } else {
                    properties.insert(k.clone(), v.clone());
                }
            }
            if !properties.is_empty() {
                native.insert("properties".into(), Value::Object(properties));
            }
        }
        Some(_) => {
            return Err((
                C::PropertiesNotObject,
                "CloudEvent data must be a JSON object (its quantity and properties)".into(),
            ))
        }
    }
    serde_json::value::to_raw_value(&Value::Object(native)).map_err(|e| {
        (
            C::InvalidEvent,
            format!("CloudEvent could not be mapped: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).expect("test JSON")
    }

    fn native_of(s: &str) -> Value {
        let r = raw(s);
        let t = translate(&[r.as_ref()]);
        let refs = [r.as_ref()];
        let els = t.elements(&refs);
        serde_json::from_str(els[0].get()).expect("native JSON")
    }

    #[test]
    fn a_cloudevent_becomes_the_native_event_it_describes() {
        let n = native_of(
            r#"{"specversion":"1.0","id":"e1","source":"/billing","type":"api_calls",
                "subject":"acme","time":"2026-11-30T10:00:00Z",
                "data":{"quantity":3,"region":"eu","unit":"calls"}}"#,
        );
        assert_eq!(n["id"], "ce:8:/billinge1");
        assert_eq!(n["account"], "acme");
        assert_eq!(n["meter"], "api_calls");
        assert_eq!(n["timestamp"], "2026-11-30T10:00:00Z");
        assert_eq!(n["quantity"], 3);
        assert_eq!(n["unit"], "calls");
        assert_eq!(n["properties"], serde_json::json!({"region": "eu"}));
    }

    #[test]
    fn without_data_a_cloudevent_counts_one_at_receipt_time() {
        let n = native_of(
            r#"{"specversion":"1.0","id":"e1","source":"s","type":"logins","subject":"a"}"#,
        );
        assert!(
            n.get("quantity").is_none(),
            "the native default (1) applies"
        );
        assert!(
            n.get("timestamp").is_none(),
            "the native default (receipt) applies"
        );
        assert!(n.get("properties").is_none());
    }

    #[test]
    fn the_same_id_from_two_sources_is_two_events_and_the_pair_is_unambiguous() {
        assert_ne!(event_id("/a", "1"), event_id("/b", "1"));
        assert_ne!(event_id("a#", "b"), event_id("a", "#b"));
        assert_eq!(event_id("/a", "1"), event_id("/a", "1"));
    }

    #[test]
    fn an_id_pair_that_does_not_fit_a_native_id_is_hashed_stably() {
        let long = "x".repeat(300);
        let a = event_id(&long, "1");
        assert!(a.starts_with("ce:sha256:"), "{a}");
        assert!(EventId::parse(&a).is_ok());
        assert_eq!(a, event_id(&long, "1"));
        assert_ne!(a, event_id(&long, "2"));
        let spaced = event_id("my source", "1");
        assert!(spaced.starts_with("ce:sha256:"), "{spaced}");
    }

    #[test]
    fn native_events_are_left_exactly_as_sent() {
        let r = raw(r#"{"id":"n1","account":"a","meter":"m"}"#);
        let refs = [r.as_ref()];
        let t = translate(&refs);
        assert_eq!(t.cloudevents(), 0);
        assert_eq!(t.elements(&refs)[0].get(), r.get());
    }

    fn refusal(s: &str) -> Rejection {
        let r = raw(s);
        let t = translate(&[r.as_ref()]);
        let mut rejected = vec![Rejection {
            index: 0,
            id: None,
            code: RejectCode::UnknownField,
            message: "generic".into(),
        }];
        t.explain(&mut rejected);
        assert_eq!(rejected.len(), 1);
        rejected.remove(0)
    }

    #[test]
    fn each_unmappable_cloudevent_is_refused_with_its_own_reason() {
        let r = refusal(r#"{"specversion":"0.3","id":"e","source":"s","type":"m","subject":"a"}"#);
        assert_eq!(r.code, RejectCode::InvalidEvent);
        assert!(r.message.contains("1.0"), "{}", r.message);
        assert_eq!(r.id.as_deref(), Some("e"));

        let r = refusal(r#"{"specversion":"1.0","id":"e","source":"s","type":"m"}"#);
        assert_eq!(r.code, RejectCode::MissingAccount);
        assert!(r.message.contains("subject"), "{}", r.message);

        let r = refusal(r#"{"specversion":"1.0","id":"e","source":"s","subject":"a"}"#);
        assert_eq!(r.code, RejectCode::MissingMeter);

        let r = refusal(r#"{"specversion":"1.0","id":"e","type":"m","subject":"a"}"#);
        assert_eq!(r.code, RejectCode::MissingId);
        assert!(r.message.contains("source"), "{}", r.message);

        let r = refusal(
            r#"{"specversion":"1.0","id":"e","source":"s","type":"m","subject":"a","data_base64":"AA=="}"#,
        );
        assert!(r.message.contains("data_base64"), "{}", r.message);

        let r = refusal(
            r#"{"specversion":"1.0","id":"e","source":"s","type":"m","subject":"a","data":[1]}"#,
        );
        assert_eq!(r.code, RejectCode::PropertiesNotObject);

        let r = refusal(
            r#"{"specversion":"1.0","id":"e","source":"s","type":"m","subject":"a","datacontenttype":"text/plain","data":{}}"#,
        );
        assert!(r.message.contains("text/plain"), "{}", r.message);
    }

    #[test]
    fn a_mixed_batch_keeps_every_index_in_place() {
        let a = raw(r#"{"id":"n1","account":"a","meter":"m"}"#);
        let b = raw(r#"{"specversion":"1.0","id":"e","source":"s","type":"m"}"#);
        let c = raw(r#"{"specversion":"1.0","id":"e2","source":"s","type":"m","subject":"a"}"#);
        let refs = [a.as_ref(), b.as_ref(), c.as_ref()];
        let t = translate(&refs);
        assert_eq!(t.cloudevents(), 2);
        let els = t.elements(&refs);
        assert_eq!(els[0].get(), a.get());
        assert!(els[2].get().contains("ce:1:se2"), "{}", els[2].get());
        let mut rejected = vec![Rejection {
            index: 1,
            id: None,
            code: RejectCode::UnknownField,
            message: "generic".into(),
        }];
        t.explain(&mut rejected);
        assert_eq!(rejected[0].index, 1);
        assert_eq!(rejected[0].code, RejectCode::MissingAccount);
    }
}
