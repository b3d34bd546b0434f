//! The usage event: wire parsing, per-event validation and the normalised form that
//! travels through the queue.
//!
//! Parsing is deliberately two-level: the request body is split into raw JSON values
//! first (syntax only), then each event is validated on its own, so one bad event
//! (even a number JSON cannot represent) never sinks the others.

use crate::ids::{AccountId, EventId, IdError, MeterName, ServiceLine, Stage};
use crate::registry::Schema;
pub use crate::registry::{DefinitionStatus, MeterRule, TenantPolicy};
use chrono::{DateTime, Duration, DurationRound, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

/// Request and event size limits, shared by ingest and its documentation.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_events: usize,
    pub max_properties_bytes: usize,
    pub max_properties_keys: usize,
    /// Deepest nesting of `properties` (the object itself is level 1): DynamoDB stores
    /// at most 32 levels and the ledger keeps properties two levels down.
    pub max_properties_depth: usize,
    pub max_string_len: usize,
    pub max_future_skew: Duration,
    /// The widest backfill horizon the ledger's retention guards (docs/adr/0001):
    /// a tenant's stored `backfill_days` above it is capped here.
    pub max_backfill_days: u32,
    /// Largest absolute quantity of one event.
    pub max_abs_quantity: Decimal,
    /// Most decimal places of one quantity.
    pub max_quantity_scale: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_events: 1000,
            max_properties_bytes: 4096,
            max_properties_keys: 50,
            max_properties_depth: 16,
            max_string_len: 256,
            max_future_skew: Duration::minutes(5),
            max_backfill_days: crate::horizon::Retention::DEFAULT.max_horizon_days(),
            max_abs_quantity: Decimal::from(1_000_000_000_000_i64),
            max_quantity_scale: 9,
        }
    }
}

/// Why one event was refused. Serialised as its snake_case code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    InvalidEvent,
    UnknownField,
    MissingId,
    InvalidId,
    DuplicateInRequest,
    MissingAccount,
    InvalidAccount,
    MissingMeter,
    InvalidMeter,
    UnknownMeter,
    MeterDeleted,
    InvalidQuantity,
    QuantityNotFinite,
    QuantityOutOfRange,
    NegativeQuantityWithoutReason,
    InvalidTimestamp,
    TimestampInFuture,
    TimestampTooOld,
    InvalidStage,
    InvalidServiceLine,
    InvalidUnit,
    UnitMismatch,
    InvalidField,
    FieldTooLong,
    PropertiesNotObject,
    PropertiesTooLarge,
    /// The event was valid but could not be queued; safe to retry.
    TemporarilyUnavailable,
    /// The quantity does not fit the definition's value type.
    ValueTypeMismatch,
    /// A property the definition requires is absent.
    MissingProperty,
    /// A required property has the wrong JSON type.
    PropertyTypeMismatch,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        use RejectCode::*;
        match self {
            InvalidEvent => "invalid_event",
            UnknownField => "unknown_field",
            MissingId => "missing_id",
            InvalidId => "invalid_id",
            DuplicateInRequest => "duplicate_in_request",
            MissingAccount => "missing_account",
            InvalidAccount => "invalid_account",
            MissingMeter => "missing_meter",
            InvalidMeter => "invalid_meter",
            UnknownMeter => "unknown_meter",
            MeterDeleted => "meter_deleted",
            InvalidQuantity => "invalid_quantity",
            QuantityNotFinite => "quantity_not_finite",
            QuantityOutOfRange => "quantity_out_of_range",
            NegativeQuantityWithoutReason => "negative_quantity_without_reason",
            InvalidTimestamp => "invalid_timestamp",
            TimestampInFuture => "timestamp_in_future",
            TimestampTooOld => "timestamp_too_old",
            InvalidStage => "invalid_stage",
            InvalidServiceLine => "invalid_service_line",
            InvalidUnit => "invalid_unit",
            UnitMismatch => "unit_mismatch",
            InvalidField => "invalid_field",
            FieldTooLong => "field_too_long",
            PropertiesNotObject => "properties_not_object",
            PropertiesTooLarge => "properties_too_large",
            TemporarilyUnavailable => "temporarily_unavailable",
            ValueTypeMismatch => "value_type_mismatch",
            MissingProperty => "missing_property",
            PropertyTypeMismatch => "property_type_mismatch",
        }
    }

    /// Violations of the event's definition (its schema), as the audit counts them.
    pub fn is_schema_violation(self) -> bool {
        use RejectCode::*;
        matches!(
            self,
            UnitMismatch | InvalidUnit | ValueTypeMismatch | MissingProperty | PropertyTypeMismatch
        )
    }

    /// Timestamps too far ahead or behind: clock skew at the sender.
    pub fn is_timestamp_skew(self) -> bool {
        matches!(
            self,
            RejectCode::TimestampInFuture | RejectCode::TimestampTooOld
        )
    }
}

/// One refused event, as reported to the sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub code: RejectCode,
    pub message: String,
}

/// A validated, normalised usage event: the unit the pipeline counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageEvent {
    pub id: EventId,
    pub account: AccountId,
    pub meter: MeterName,
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub timestamp: DateTime<Utc>,
    /// True when the sender gave no timestamp and the receipt time was used.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timestamp_defaulted: bool,
    pub stage: Stage,
    pub service_line: ServiceLine,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<serde_json::Map<String, serde_json::Value>>,
}

impl UsageEvent {
    /// A delivered event of `quantity` on the default service line, with no unit, contact,
    /// entitlement, correction or properties: what most producers send. Other fields are
    /// set with struct update syntax (`UsageEvent { stage, ..UsageEvent::new(..) }`).
    pub fn new(
        id: EventId,
        account: AccountId,
        meter: MeterName,
        quantity: Decimal,
        timestamp: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            account,
            meter,
            quantity,
            unit: None,
            timestamp,
            timestamp_defaulted: false,
            stage: Stage::Delivered,
            service_line: ServiceLine::default_line(),
            contact: None,
            entitlement: None,
            correction_reason: None,
            properties: None,
        }
    }
}

/// Why a whole request body was refused before looking at events.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BodyError {
    #[error("request body is empty")]
    Empty,
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Malformed {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("body must be an event object, an array of events, or {{\"events\": [...]}}")]
    NotAnEventList,
    #[error("{count} events in one request; the limit is {max}")]
    TooManyEvents { count: usize, max: usize },
}

fn malformed(e: serde_json::Error) -> BodyError {
    BodyError::Malformed {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    }
}

/// Splits a request body into raw events: one object, an array, or `{"events": [...]}`.
pub fn split_body<'a>(body: &'a [u8], limits: &Limits) -> Result<Vec<&'a RawValue>, BodyError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let events: Vec<&RawValue> = match first {
        None => return Err(BodyError::Empty),
        Some(b'[') => serde_json::from_slice(body).map_err(malformed)?,
        Some(b'{') => {
            let obj: BTreeMap<String, &RawValue> =
                serde_json::from_slice(body).map_err(malformed)?;
            match obj.get("events") {
                Some(list) if obj.len() == 1 => {
                    serde_json::from_str(list.get()).map_err(|_| BodyError::NotAnEventList)?
                }
                Some(_) => return Err(BodyError::NotAnEventList),
                None => vec![serde_json::from_slice(body).map_err(malformed)?],
            }
        }
        Some(_) => {
            // Still parse, so syntax errors report their position.
            serde_json::from_slice::<&RawValue>(body).map_err(malformed)?;
            return Err(BodyError::NotAnEventList);
        }
    };
    if events.len() > limits.max_events {
        return Err(BodyError::TooManyEvents {
            count: events.len(),
            max: limits.max_events,
        });
    }
    Ok(events)
}

/// Levels of objects and arrays of an object with these values (the object itself
/// is level 1), without recursion.
fn nesting_depth<'a>(values: impl Iterator<Item = &'a serde_json::Value>) -> usize {
    use serde_json::Value;
    let mut deepest = 1;
    let mut stack: Vec<(&Value, usize)> = values.map(|v| (v, 2)).collect();
    while let Some((v, level)) = stack.pop() {
        match v {
            Value::Object(m) => stack.extend(m.values().map(|c| (c, level + 1))),
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, level + 1))),
            _ => continue,
        }
        deepest = deepest.max(level);
    }
    deepest
}

/// Everything validation needs besides the event itself.
pub struct ValidationContext<'a> {
    pub received_at: DateTime<Utc>,
    pub policy: &'a TenantPolicy,
    pub limits: &'a Limits,
}

struct Bad(RejectCode, String);

fn bad(code: RejectCode, message: impl Into<String>) -> Bad {
    Bad(code, message.into())
}

const FIELDS: &[&str] = &[
    "id",
    "account",
    "meter",
    "quantity",
    "unit",
    "timestamp",
    "contact",
    "entitlement",
    "service_line",
    "stage",
    "properties",
    "correction_reason",
];

/// Validates every raw event of a request, rejecting repeated ids within it.
pub fn validate_all(
    raw: &[&RawValue],
    ctx: &ValidationContext<'_>,
) -> (Vec<(usize, UsageEvent)>, Vec<Rejection>) {
    let mut seen = HashSet::new();
    let mut accepted = Vec::with_capacity(raw.len());
    let mut rejected = Vec::new();
    for (index, r) in raw.iter().enumerate() {
        match validate_event(r, ctx) {
            Ok(ev) => {
                if seen.insert(ev.id.clone()) {
                    accepted.push((index, ev));
                } else {
                    rejected.push(Rejection {
                        index,
                        id: Some(ev.id.to_string()),
                        code: RejectCode::DuplicateInRequest,
                        message: format!("id '{}' appears earlier in this request", ev.id),
                    });
                }
            }
            Err(mut rej) => {
                rej.index = index;
                rejected.push(rej);
            }
        }
    }
    (accepted, rejected)
}

/// Validates and normalises one raw event.
pub fn validate_event(
    raw: &RawValue,
    ctx: &ValidationContext<'_>,
) -> Result<UsageEvent, Rejection> {
    let fields: BTreeMap<String, &RawValue> = match serde_json::from_str(raw.get()) {
        Ok(f) => f,
        Err(_) => {
            return Err(Rejection {
                index: 0,
                id: None,
                code: RejectCode::InvalidEvent,
                message: "an event must be a JSON object".into(),
            })
        }
    };
    // Echo the id back when it is at least a string, even if something else is wrong.
    let echo_id = fields
        .get("id")
        .and_then(|v| serde_json::from_str::<String>(v.get()).ok());
    build_event(&fields, ctx).map_err(|Bad(code, message)| Rejection {
        index: 0,
        id: echo_id,
        code,
        message,
    })
}

fn present<'a>(fields: &BTreeMap<String, &'a RawValue>, name: &str) -> Option<&'a RawValue> {
    fields.get(name).copied().filter(|v| v.get() != "null")
}

fn string_field(
    fields: &BTreeMap<String, &RawValue>,
    name: &'static str,
    max: usize,
    code: RejectCode,
) -> Result<Option<String>, Bad> {
    let Some(raw) = present(fields, name) else {
        return Ok(None);
    };
    let s: String = serde_json::from_str(raw.get())
        .map_err(|_| bad(code, format!("{name} must be a string")))?;
    if s.chars().count() > max {
        return Err(bad(
            RejectCode::FieldTooLong,
            format!("{name} is longer than {max} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(bad(code, format!("{name} contains control characters")));
    }
    Ok(Some(s))
}

fn id_error(e: IdError, missing: RejectCode, invalid: RejectCode) -> Bad {
    let code = match e {
        IdError::Empty { .. } => missing,
        IdError::TooLong { .. } => RejectCode::FieldTooLong,
        IdError::BadChar { .. } => invalid,
    };
    bad(code, e.to_string())
}

fn build_event(
    fields: &BTreeMap<String, &RawValue>,
    ctx: &ValidationContext<'_>,
) -> Result<UsageEvent, Bad> {
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(
            RejectCode::UnknownField,
            format!(
                "unknown field '{unknown}'; expected one of {}",
                FIELDS.join(", ")
            ),
        ));
    }
    use RejectCode as C;
    let long = 1024;
    let id = string_field(fields, "id", long, C::InvalidId)?
        .ok_or_else(|| bad(C::MissingId, "id is required (it is the idempotency key)"))?;
    let id = EventId::parse(&id).map_err(|e| id_error(e, C::MissingId, C::InvalidId))?;

    let account = string_field(fields, "account", long, C::InvalidAccount)?
        .ok_or_else(|| bad(C::MissingAccount, "account is required"))?;
    let account = AccountId::parse(&account)
        .map_err(|e| id_error(e, C::MissingAccount, C::InvalidAccount))?;

    let meter = string_field(fields, "meter", long, C::InvalidMeter)?
        .ok_or_else(|| bad(C::MissingMeter, "meter is required"))?;
    let meter =
        MeterName::parse(&meter).map_err(|e| id_error(e, C::MissingMeter, C::InvalidMeter))?;
    // Legacy names map to their current meter (registry aliases).
    let meter = match ctx.policy.governance.aliases.get(&meter) {
        Some(current) if !ctx.policy.meters.contains_key(&meter) => current.clone(),
        _ => meter,
    };
    let rule = ctx.policy.meters.get(&meter).ok_or_else(|| {
        bad(
            C::UnknownMeter,
            format!("meter '{meter}' is not defined for this tenant; define it first"),
        )
    })?;
    // Under the default policy a deleted meter's events are validated as usual and
    // then held (crate::quarantine); a tenant may choose to refuse them instead.
    if rule.status == DefinitionStatus::Deleted
        && ctx.policy.governance.policy.deleted_meter_events
            == crate::registry::DeletedMeterEvents::Reject
    {
        return Err(bad(
            C::MeterDeleted,
            format!("meter '{meter}' was deleted; restore its definition to send it again"),
        ));
    }

    let quantity = match present(fields, "quantity") {
        None => Decimal::ONE,
        Some(raw) => parse_quantity(raw.get(), ctx.limits)?,
    };

    let correction_reason = string_field(
        fields,
        "correction_reason",
        ctx.limits.max_string_len,
        C::InvalidField,
    )?
    .filter(|r| !r.trim().is_empty());
    if quantity.is_sign_negative() && !quantity.is_zero() && correction_reason.is_none() {
        return Err(bad(
            C::NegativeQuantityWithoutReason,
            "a negative quantity is a correction and needs a correction_reason",
        ));
    }

    let unit = string_field(fields, "unit", 32, C::InvalidUnit)?;
    let unit = match (unit, &rule.unit) {
        (Some(u), Some(expected)) if &u != expected => {
            return Err(bad(
                C::UnitMismatch,
                format!("meter '{meter}' is measured in '{expected}', not '{u}'"),
            ))
        }
        (Some(u), _) => Some(u),
        (None, expected) => expected.clone(),
    };

    let (timestamp, timestamp_defaulted) =
        match string_field(fields, "timestamp", 64, C::InvalidTimestamp)? {
            None => (ctx.received_at, true),
            Some(ts) => {
                let parsed = DateTime::parse_from_rfc3339(&ts).map_err(|e| {
                    bad(
                        C::InvalidTimestamp,
                        format!("timestamp '{ts}' is not RFC 3339: {e}"),
                    )
                })?;
                (parsed.with_timezone(&Utc), false)
            }
        };
    let timestamp = timestamp
        .duration_trunc(Duration::milliseconds(1))
        .unwrap_or(timestamp);
    if timestamp > ctx.received_at + ctx.limits.max_future_skew {
        return Err(bad(
            C::TimestampInFuture,
            format!(
                "timestamp {} is more than {} minutes after receipt ({})",
                timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
                ctx.limits.max_future_skew.num_minutes(),
                ctx.received_at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        ));
    }
    // A stored horizon wider than the ledger remembers is capped (docs/adr/0001).
    let cap = ctx
        .limits
        .max_backfill_days
        .min(crate::horizon::MAX_HORIZON_DAYS);
    let horizon_days = ctx.policy.backfill_days.min(cap);
    let horizon = ctx
        .received_at
        .checked_sub_signed(Duration::days(i64::from(horizon_days)))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    if timestamp < horizon {
        let why = if horizon_days < ctx.policy.backfill_days {
            format!(
                "the ledger's horizon of {horizon_days} days (this tenant's {} days, capped: LEDGER_RETENTION_DAYS forgets older resends, which would be counted twice)",
                ctx.policy.backfill_days
            )
        } else {
            format!("this tenant's backfill horizon of {horizon_days} days")
        };
        return Err(bad(
            C::TimestampTooOld,
            format!(
                "timestamp {} is older than {why}; use the import path for history",
                timestamp.to_rfc3339_opts(SecondsFormat::Secs, true),
            ),
        ));
    }

    let stage = match string_field(fields, "stage", 32, C::InvalidStage)? {
        None => Stage::Delivered,
        Some(s) => Stage::parse(&s).ok_or_else(|| {
            bad(
                C::InvalidStage,
                format!("stage '{s}' is not one of requested, delivered, billed"),
            )
        })?,
    };
    let service_line = match string_field(fields, "service_line", long, C::InvalidServiceLine)? {
        None => ServiceLine::default_line(),
        Some(s) => ServiceLine::parse(&s)
            .map_err(|e| id_error(e, C::InvalidServiceLine, C::InvalidServiceLine))?,
    };
    let contact = string_field(fields, "contact", 128, C::InvalidField)?;
    let entitlement = string_field(fields, "entitlement", 128, C::InvalidField)?;

    let properties = match present(fields, "properties") {
        None => None,
        Some(raw) => {
            if raw.get().len() > ctx.limits.max_properties_bytes {
                return Err(bad(
                    C::PropertiesTooLarge,
                    format!(
                        "properties take {} bytes; the limit is {}",
                        raw.get().len(),
                        ctx.limits.max_properties_bytes
                    ),
                ));
            }
            let value: serde_json::Value = serde_json::from_str(raw.get()).map_err(|e| {
                bad(
                    C::PropertiesNotObject,
                    format!("properties could not be read: {e}"),
                )
            })?;
            let serde_json::Value::Object(map) = value else {
                return Err(bad(
                    C::PropertiesNotObject,
                    "properties must be a JSON object",
                ));
            };
            if map.len() > ctx.limits.max_properties_keys {
                return Err(bad(
                    C::PropertiesTooLarge,
                    format!(
                        "properties has {} keys; the limit is {}",
                        map.len(),
                        ctx.limits.max_properties_keys
                    ),
                ));
            }
            let depth = nesting_depth(map.values());
            if depth > ctx.limits.max_properties_depth {
                return Err(bad(
                    C::PropertiesTooLarge,
                    format!(
                        "properties are nested {depth} levels deep; the limit is {}",
                        ctx.limits.max_properties_depth
                    ),
                ));
            }
            Some(map)
        }
    };

    if let Some(schema) = ctx.policy.governance.schemas.get(&meter) {
        check_schema(&meter, schema, quantity, properties.as_ref())
            .map_err(|(code, message)| bad(code, message))?;
    }

    Ok(UsageEvent {
        id,
        account,
        meter,
        quantity,
        unit,
        timestamp,
        timestamp_defaulted,
        stage,
        service_line,
        contact,
        entitlement,
        correction_reason,
        properties,
    })
}

/// Parses a JSON number literal exactly into a decimal.
fn parse_quantity(text: &str, limits: &Limits) -> Result<Decimal, Bad> {
    use RejectCode as C;
    let is_number = text
        .bytes()
        .next()
        .is_some_and(|b| b == b'-' || b.is_ascii_digit());
    if !is_number {
        return Err(bad(
            C::InvalidQuantity,
            format!("quantity must be a JSON number, got {text}"),
        ));
    }
    let parsed = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text)
    } else {
        Decimal::from_str_exact(text)
    };
    let q = match parsed {
        Ok(q) => q,
        Err(_) => {
            return Err(match f64::from_str(text) {
                Ok(f) if !f.is_finite() => bad(C::QuantityNotFinite, format!("quantity {text} is not a finite number")),
                _ => bad(
                    C::QuantityOutOfRange,
                    format!("quantity {text} cannot be represented exactly (at most {} decimal places, |q| <= {})", limits.max_quantity_scale, limits.max_abs_quantity),
                ),
            })
        }
    };
    let q = q.normalize();
    if q.abs() > limits.max_abs_quantity || q.scale() > limits.max_quantity_scale {
        return Err(bad(
            C::QuantityOutOfRange,
            format!(
                "quantity {text} is outside the allowed range (|q| <= {}, at most {} decimal places)",
                limits.max_abs_quantity, limits.max_quantity_scale
            ),
        ));
    }
    Ok(q)
}

/// Checks a quantity and properties against a schema: the first violation, with its code.
pub fn check_schema(
    meter: &MeterName,
    schema: &Schema,
    quantity: Decimal,
    properties: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<(), (RejectCode, String)> {
    if !schema.value_type.admits(quantity) {
        return Err((
            RejectCode::ValueTypeMismatch,
            format!(
                "meter '{meter}' takes {} quantities, not {quantity}",
                schema.value_type.as_str()
            ),
        ));
    }
    for (name, ty) in &schema.required {
        match properties.and_then(|p| p.get(name)) {
            None | Some(serde_json::Value::Null) => {
                return Err((
                    RejectCode::MissingProperty,
                    format!(
                        "meter '{meter}' requires the property '{name}' ({})",
                        ty.as_str()
                    ),
                ))
            }
            Some(v) if !ty.matches(v) => {
                return Err((
                    RejectCode::PropertyTypeMismatch,
                    format!(
                        "property '{name}' of meter '{meter}' must be a {}",
                        ty.as_str()
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn policy() -> TenantPolicy {
        let mut meters = HashMap::new();
        for (m, unit, status) in [
            ("api_calls", Some("call"), DefinitionStatus::Active),
            ("storage_gb", Some("GB"), DefinitionStatus::Active),
            ("old_meter", None, DefinitionStatus::Deleted),
        ] {
            let meter = MeterName::parse(m).unwrap();
            meters.insert(
                meter.clone(),
                MeterRule {
                    meter,
                    unit: unit.map(str::to_owned),
                    status,
                },
            );
        }
        let mut policy = TenantPolicy {
            backfill_days: 35,
            meters,
            ..Default::default()
        };
        policy.governance.policy.deleted_meter_events = crate::registry::DeletedMeterEvents::Reject;
        policy
    }

    #[test]
    fn under_the_quarantine_policy_a_deleted_meters_event_is_still_validated_in_full() {
        let mut policy = policy();
        policy.governance.policy.deleted_meter_events =
            crate::registry::DeletedMeterEvents::Quarantine;
        let limits = Limits::default();
        let ctx = ValidationContext {
            received_at: now(),
            policy: &policy,
            limits: &limits,
        };
        let raw = |j: &str| serde_json::from_str::<Box<RawValue>>(j).unwrap();
        let ok = validate_event(
            &raw(r#"{"id":"e","account":"a","meter":"old_meter"}"#),
            &ctx,
        );
        assert_eq!(ok.unwrap().meter.as_str(), "old_meter");
        let bad = validate_event(
            &raw(r#"{"id":"e","account":"a","meter":"old_meter","quantity":"x"}"#),
            &ctx,
        );
        assert_eq!(bad.unwrap_err().code, RejectCode::InvalidQuantity);
    }

    #[test]
    fn a_stored_horizon_beyond_the_ledgers_memory_is_capped_at_validation_and_never_panics() {
        let raw = |j: &str| serde_json::from_str::<Box<RawValue>>(j).unwrap();
        let limits = Limits::default();
        let cap = i64::from(limits.max_backfill_days);
        let at =
            |days: i64| (now() - Duration::days(days)).to_rfc3339_opts(SecondsFormat::Secs, true);
        for backfill_days in [u32::MAX, 3650] {
            let policy = TenantPolicy {
                backfill_days,
                ..policy()
            };
            let ctx = ValidationContext {
                received_at: now(),
                policy: &policy,
                limits: &limits,
            };
            let inside = validate_event(
                &raw(&format!(
                    r#"{{"id":"e","account":"a","meter":"api_calls","timestamp":"{}"}}"#,
                    at(cap - 1)
                )),
                &ctx,
            );
            assert!(inside.is_ok(), "{backfill_days}: {inside:?}");
            let beyond = validate_event(
                &raw(&format!(
                    r#"{{"id":"e","account":"a","meter":"api_calls","timestamp":"{}"}}"#,
                    at(cap + 1)
                )),
                &ctx,
            )
            .unwrap_err();
            assert_eq!(beyond.code, RejectCode::TimestampTooOld, "{backfill_days}");
            assert!(
                beyond.message.contains("LEDGER_RETENTION_DAYS"),
                "{}",
                beyond.message
            );
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn check(json: &str) -> Result<UsageEvent, RejectCode> {
        let policy = policy();
        let limits = Limits::default();
        let ctx = ValidationContext {
            received_at: now(),
            policy: &policy,
            limits: &limits,
        };
        let raw: Box<RawValue> = serde_json::from_str(json).unwrap();
        validate_event(&raw, &ctx).map_err(|r| r.code)
    }

    #[test]
    fn a_minimal_event_gets_defaults_and_a_flagged_receipt_timestamp() {
        let ev = check(r#"{"id":"e1","account":"42","meter":"api_calls"}"#).unwrap();
        assert_eq!(ev.quantity, Decimal::ONE);
        assert_eq!(ev.stage, Stage::Delivered);
        assert_eq!(ev.service_line.as_str(), "default");
        assert_eq!(ev.unit.as_deref(), Some("call"));
        assert!(ev.timestamp_defaulted);
        assert_eq!(ev.timestamp, now());
    }

    #[test]
    fn every_bad_field_gets_its_own_code() {
        use RejectCode as C;
        let cases = [
            (r#"[1]"#, C::InvalidEvent),
            (
                r#"{"id":"e","account":"a","meter":"api_calls","quantitiy":2}"#,
                C::UnknownField,
            ),
            (r#"{"account":"a","meter":"api_calls"}"#, C::MissingId),
            (
                r#"{"id":"","account":"a","meter":"api_calls"}"#,
                C::MissingId,
            ),
            (
                r#"{"id":"a b","account":"a","meter":"api_calls"}"#,
                C::InvalidId,
            ),
            (
                r#"{"id":7,"account":"a","meter":"api_calls"}"#,
                C::InvalidId,
            ),
            (r#"{"id":"e","meter":"api_calls"}"#, C::MissingAccount),
            (
                r#"{"id":"e","account":"a#b","meter":"api_calls"}"#,
                C::InvalidAccount,
            ),
            (r#"{"id":"e","account":"a"}"#, C::MissingMeter),
            (
                r#"{"id":"e","account":"a","meter":"Api Calls"}"#,
                C::InvalidMeter,
            ),
            (
                r#"{"id":"e","account":"a","meter":"nope"}"#,
                C::UnknownMeter,
            ),
            (
                r#"{"id":"e","account":"a","meter":"old_meter"}"#,
                C::MeterDeleted,
            ),
            (
                r#"{"id":"e","account":"a","meter":"api_calls","quantity":"3"}"#,
                C::InvalidQuantity,
            ),
            (
                r#"{"id":"e","account":"a","meter":"api_calls","quantity":true}"#,
                C::InvalidQuantity,
            ),
            (
                r#"{"id":"e","account":"a","meter":"api_calls","quantity":1e400}"#,
                C::QuantityNotFinite,
            ),
            (
                r#"{"id":"e","account":"a","meter":"api_calls","quantity":1e13}"#,
                C::QuantityOutOfRange,
            ),
            (
                r#"{"id":"e","account":"a","meter":"api_calls","quantity":0.0000000001}"#,
                C::QuantityOutOfRange,
            ),
            (
                r#"{"id":"e","account":"a","meter":"api_calls","quantity":-2}"#,
                C::NegativeQuantityWithoutReason,
            ),
            (
                r#"{"id":"e","account":"a","meter":"api_calls","timestamp":"yesterday"}"#,
                C::InvalidTimestamp,
            ),
            (
                r#"{"id":"e","account":"a","meter":"api_calls","timestamp":"2026-11-25T12:06:00Z"}"#,
                C::TimestampInFuture,
            ),
            (
                r#"{"id":"e","account":"a","meter":"api_calls","timestamp":"2026-10-01T00:00:00Z"}"#,
                C::TimestampTooOld,
            ),
            (
                r#"{"id":"e","account":"a","meter":"api_calls","stage":"shipped"}"#,
                C::InvalidStage,
            ),
            (
                r#"{"id":"e","account":"a","meter":"api_calls","service_line":"a/b"}"#,
                C::InvalidServiceLine,
            ),
            (
                r#"{"id":"e","account":"a","meter":"api_calls","unit":"byte"}"#,
                C::UnitMismatch,
            ),
            (
                r#"{"id":"e","account":"a","meter":"api_calls","contact":"x\u0001"}"#,
                C::InvalidField,
            ),
            (
                r#"{"id":"e","account":"a","meter":"api_calls","properties":[1]}"#,
                C::PropertiesNotObject,
            ),
        ];
        for (json, code) in cases {
            assert_eq!(check(json).err(), Some(code), "{json}");
        }
    }

    #[test]
    fn the_definition_s_schema_and_aliases_apply_at_ingest() {
        let mut policy = policy();
        let mut def =
            crate::definition::Definition::new(MeterName::parse("api_calls").unwrap(), now());
        def.value_type = crate::governance::ValueType::Integer;
        def.required_properties =
            BTreeMap::from([("plan".to_owned(), crate::governance::PropType::String)]);
        def.aliases = vec![MeterName::parse("calls_v1").unwrap()];
        policy.governance = crate::governance::PolicyRules::from_definitions([&def]);
        let limits = Limits::default();
        let ctx = ValidationContext {
            received_at: now(),
            policy: &policy,
            limits: &limits,
        };
        let check = |json: &str| {
            let raw: Box<RawValue> = serde_json::from_str(json).unwrap();
            validate_event(&raw, &ctx).map_err(|r| r.code)
        };
        use RejectCode as C;
        assert_eq!(
            check(r#"{"id":"e","account":"a","meter":"api_calls","quantity":1.5,"properties":{"plan":"x"}}"#).err(),
            Some(C::ValueTypeMismatch)
        );
        assert_eq!(
            check(r#"{"id":"e","account":"a","meter":"api_calls"}"#).err(),
            Some(C::MissingProperty)
        );
        assert_eq!(
            check(r#"{"id":"e","account":"a","meter":"api_calls","properties":{"plan":null}}"#)
                .err(),
            Some(C::MissingProperty)
        );
        assert_eq!(
            check(r#"{"id":"e","account":"a","meter":"api_calls","properties":{"plan":[]}}"#).err(),
            Some(C::PropertyTypeMismatch)
        );
        let ev =
            check(r#"{"id":"e","account":"a","meter":"calls_v1","properties":{"plan":"pro"}}"#)
                .unwrap();
        assert_eq!(ev.meter.as_str(), "api_calls");
        assert_eq!(ev.unit.as_deref(), Some("call"));
        // Other meters keep their own (absent) schema.
        assert!(check(r#"{"id":"e","account":"a","meter":"storage_gb","quantity":0.5}"#).is_ok());
    }

    #[test]
    fn strings_and_properties_over_their_limits_are_refused() {
        let long_contact = format!(
            r#"{{"id":"e","account":"a","meter":"api_calls","contact":"{}"}}"#,
            "c".repeat(129)
        );
        assert_eq!(check(&long_contact).err(), Some(RejectCode::FieldTooLong));
        let long_id = format!(
            r#"{{"id":"{}","account":"a","meter":"api_calls"}}"#,
            "i".repeat(201)
        );
        assert_eq!(check(&long_id).err(), Some(RejectCode::FieldTooLong));
        let big = format!(
            r#"{{"id":"e","account":"a","meter":"api_calls","properties":{{"k":"{}"}}}}"#,
            "v".repeat(5000)
        );
        assert_eq!(check(&big).err(), Some(RejectCode::PropertiesTooLarge));
        let keys: Vec<String> = (0..51).map(|i| format!(r#""k{i}":1"#)).collect();
        let many = format!(
            r#"{{"id":"e","account":"a","meter":"api_calls","properties":{{{}}}}}"#,
            keys.join(",")
        );
        assert_eq!(check(&many).err(), Some(RejectCode::PropertiesTooLarge));
    }

    /// DynamoDB refuses items nested more than 32 levels deep, and the ledger stores
    /// an event's properties two levels down: deeper properties would fail the whole
    /// chunk on AWS (the emulator does not check), so they are refused at the door.
    #[test]
    fn properties_nested_deeper_than_dynamodb_can_store_are_refused() {
        let nested = |depth: usize| {
            format!(
                r#"{{"id":"e","account":"a","meter":"api_calls","properties":{}1{}}}"#,
                r#"{"a":"#.repeat(depth),
                "}".repeat(depth)
            )
        };
        assert!(check(&nested(16)).is_ok());
        assert_eq!(
            check(&nested(17)).err(),
            Some(RejectCode::PropertiesTooLarge)
        );
        assert_eq!(
            check(&nested(100)).err(),
            Some(RejectCode::PropertiesTooLarge)
        );
        let arrays = r#"{"id":"e","account":"a","meter":"api_calls","properties":{"a":[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}}"#;
        assert_eq!(check(arrays).err(), Some(RejectCode::PropertiesTooLarge));
    }

    #[test]
    fn corrections_are_negative_events_with_a_reason() {
        let ev = check(r#"{"id":"c1","account":"a","meter":"api_calls","quantity":-2.5,"correction_reason":"double billed"}"#).unwrap();
        assert_eq!(ev.quantity, Decimal::new(-25, 1));
    }

    #[test]
    fn quantities_are_parsed_exactly() {
        let ev = check(r#"{"id":"q","account":"a","meter":"api_calls","quantity":0.1}"#).unwrap();
        assert_eq!(ev.quantity.to_string(), "0.1");
        let ev = check(r#"{"id":"q","account":"a","meter":"api_calls","quantity":2.5e3}"#).unwrap();
        assert_eq!(ev.quantity, Decimal::from(2500));
    }

    #[test]
    fn a_body_can_be_one_event_an_array_or_an_envelope() {
        let l = Limits::default();
        assert_eq!(split_body(br#"{"id":"a"}"#, &l).unwrap().len(), 1);
        assert_eq!(
            split_body(br#"[{"id":"a"},{"id":"b"}]"#, &l).unwrap().len(),
            2
        );
        assert_eq!(
            split_body(br#" {"events":[{"id":"a"},{"id":"b"},1]}"#, &l)
                .unwrap()
                .len(),
            3
        );
        assert_eq!(split_body(b"  ", &l).err(), Some(BodyError::Empty));
        assert_eq!(
            split_body(br#"{"events":{}}"#, &l).err(),
            Some(BodyError::NotAnEventList)
        );
        assert_eq!(
            split_body(br#""x""#, &l).err(),
            Some(BodyError::NotAnEventList)
        );
        assert!(matches!(
            split_body(b"[{\"id\":\n\"a\",}]", &l),
            Err(BodyError::Malformed { line: 2, .. })
        ));
    }

    #[test]
    fn one_unrepresentable_number_does_not_sink_the_request() {
        let l = Limits::default();
        let raw = split_body(br#"[{"quantity":1e400},{"id":"b"}]"#, &l).unwrap();
        assert_eq!(raw.len(), 2);
    }

    #[test]
    fn more_events_than_the_cap_is_refused_as_a_whole() {
        let l = Limits {
            max_events: 2,
            ..Limits::default()
        };
        assert_eq!(
            split_body(b"[{},{},{}]", &l).err(),
            Some(BodyError::TooManyEvents { count: 3, max: 2 })
        );
    }

    #[test]
    fn a_repeated_id_in_one_request_is_reported_not_double_counted() {
        let policy = policy();
        let limits = Limits::default();
        let ctx = ValidationContext {
            received_at: now(),
            policy: &policy,
            limits: &limits,
        };
        let body = br#"[{"id":"a","account":"x","meter":"api_calls"},{"id":"a","account":"x","meter":"api_calls"}]"#;
        let raw = split_body(body, &limits).unwrap();
        let (ok, bad) = validate_all(&raw, &ctx);
        assert_eq!(ok.len(), 1);
        assert_eq!(bad[0].index, 1);
        assert_eq!(bad[0].code, RejectCode::DuplicateInRequest);
    }
}
