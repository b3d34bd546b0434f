//! Mapping HubSpot changes to usage, as data: a rule matches a subscription type
//! (plus optional object type, property name and values) and says which meter, stage,
//! service line and quantity the change counts as.

use super::webhook::AppEvent;
use crate::event::{Limits, RejectCode};
use crate::ids::{MeterName, ServiceLine, Stage};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantityRule {
    /// Every matching change counts this much.
    Constant(#[serde(with = "rust_decimal::serde::str")] Decimal),
    /// The changed property's new value is the quantity (must be numeric).
    PropertyValue,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappingRule {
    pub subscription_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_type_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_name: Option<String>,
    /// Any of these new values matches; empty means any value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub property_values: Vec<String>,
    pub meter: MeterName,
    pub quantity: QuantityRule,
    pub stage: Stage,
    pub service_line: ServiceLine,
}

fn rule(
    sub: &str,
    object_type: Option<&str>,
    prop: Option<(&str, &[&str])>,
    meter: &str,
    stage: Stage,
    line: &str,
) -> Option<MappingRule> {
    Some(MappingRule {
        subscription_type: sub.to_owned(),
        object_type_id: object_type.map(str::to_owned),
        property_name: prop.map(|(p, _)| p.to_owned()),
        property_values: prop
            .map(|(_, v)| v.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default(),
        meter: MeterName::parse(meter).ok()?,
        quantity: QuantityRule::Constant(Decimal::ONE),
        stage,
        service_line: ServiceLine::parse(line).ok()?,
    })
}

/// Sensible defaults for service usage. HubSpot's default support pipeline closes
/// tickets in stage "4"; meetings and calls are object types 0-47 and 0-48.
pub fn default_rules() -> Vec<MappingRule> {
    [
        rule(
            "ticket.creation",
            None,
            None,
            "tickets_opened",
            Stage::Requested,
            "support",
        ),
        rule(
            "ticket.propertyChange",
            None,
            Some(("hs_pipeline_stage", &["4", "closed"])),
            "tickets_resolved",
            Stage::Delivered,
            "support",
        ),
        rule(
            "object.creation",
            Some("0-47"),
            None,
            "meetings_logged",
            Stage::Delivered,
            "customer_success",
        ),
        rule(
            "object.creation",
            Some("0-48"),
            None,
            "calls_logged",
            Stage::Delivered,
            "customer_success",
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// What a change maps to.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped<'a> {
    Usage {
        rule: &'a MappingRule,
        quantity: Decimal,
    },
    /// No rule matches: counted for the audit, not silently dropped.
    Unmapped,
    /// A rule matches but the property value is not a usable quantity: not a number
    /// (`invalid_quantity`), outside the bounds API quantities get
    /// (`quantity_out_of_range`), or negative (`negative_quantity_without_reason`:
    /// corrections come through the API with a reason).
    BadQuantity(RejectCode, String),
}

/// A property value as a quantity, bounded exactly like `quantity` of
/// `POST /v1/events` (`Limits::max_abs_quantity`, `Limits::max_quantity_scale`), so a
/// HubSpot value can never carry a sum past what the API would accept.
pub fn property_quantity(value: &str) -> Result<Decimal, (RejectCode, String)> {
    let limits = Limits::default();
    let text = value.trim();
    let parsed = Decimal::from_str(text).or_else(|_| {
        // `1e3`-style values; overflow is an error, not a panic.
        if text.contains(['e', 'E']) {
            Decimal::from_scientific(text)
        } else {
            Decimal::from_str(text)
        }
    });
    let q = match parsed {
        Ok(q) => q,
        // Numeric but beyond what a decimal holds (e.g. 1e400, 30 digits).
        Err(_) if looks_numeric(text) => {
            return Err((
                RejectCode::QuantityOutOfRange,
                format!(
                    "property value '{}' cannot be represented exactly (|q| <= {}, at most {} decimal places)",
                    trunc(text),
                    limits.max_abs_quantity,
                    limits.max_quantity_scale
                ),
            ))
        }
        Err(_) => {
            return Err((
                RejectCode::InvalidQuantity,
                format!("property value '{}' is not a number", trunc(text)),
            ))
        }
    };
    if q.abs() > limits.max_abs_quantity || q.normalize().scale() > limits.max_quantity_scale {
        return Err((
            RejectCode::QuantityOutOfRange,
            format!(
                "property value {text} is outside the allowed range (|q| <= {}, at most {} decimal places)",
                limits.max_abs_quantity, limits.max_quantity_scale
            ),
        ));
    }
    if q.is_sign_negative() && !q.is_zero() {
        return Err((
            RejectCode::NegativeQuantityWithoutReason,
            format!("property value {text} is negative; corrections need a reason (send them through POST /v1/events)"),
        ));
    }
    Ok(q.normalize())
}

fn looks_numeric(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
}

fn trunc(s: &str) -> String {
    s.chars().take(60).collect()
}

pub fn map_event<'a>(rules: &'a [MappingRule], ev: &AppEvent) -> Mapped<'a> {
    let found = rules.iter().find(|r| {
        r.subscription_type == ev.subscription_type
            && r.object_type_id
                .as_ref()
                .is_none_or(|t| ev.object_type_id.as_ref() == Some(t))
            && r.property_name.as_deref().is_none_or(|p| ev.carries(p))
            && (r.property_values.is_empty()
                || r.property_name
                    .as_deref()
                    .and_then(|p| ev.property(p))
                    .is_some_and(|v| r.property_values.iter().any(|want| want == v)))
    });
    let Some(rule) = found else {
        return Mapped::Unmapped;
    };
    match &rule.quantity {
        QuantityRule::Constant(q) => Mapped::Usage { rule, quantity: *q },
        QuantityRule::PropertyValue => {
            match rule
                .property_name
                .as_deref()
                .and_then(|p| ev.property(p))
                .map(property_quantity)
            {
                Some(Ok(q)) => Mapped::Usage { rule, quantity: q },
                Some(Err((code, why))) => Mapped::BadQuantity(code, why),
                None => Mapped::BadQuantity(
                    RejectCode::InvalidQuantity,
                    "the change carries no value for the rule's property".into(),
                ),
            }
        }
    }
}

/// Most rules one tenant may have.
pub const MAX_RULES: usize = 200;

/// Validates a `PUT /v1/hubspot/mappings` body (`{"rules": [...]}`) against the
/// tenant's defined meters.
pub fn rules_from_body(
    body: &[u8],
    defined: &dyn Fn(&MeterName) -> bool,
) -> Result<Vec<MappingRule>, crate::input::InputError> {
    use crate::input::input_error;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        rules: Vec<MappingRule>,
        /// Read by [`super::profile::profile_sync_from_body`].
        #[serde(default)]
        #[allow(dead_code)]
        profile_properties: Option<serde_json::Value>,
    }
    let parsed: Body = serde_json::from_slice(body).map_err(|e| {
        input_error(
            "invalid_mapping",
            format!(
                "rules could not be read (line {}, column {}): {e}",
                e.line(),
                e.column()
            ),
        )
    })?;
    if parsed.rules.len() > MAX_RULES {
        return Err(input_error(
            "invalid_mapping",
            format!("{} rules; at most {MAX_RULES}", parsed.rules.len()),
        ));
    }
    let plain = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    for (i, r) in parsed.rules.iter().enumerate() {
        if !plain(&r.subscription_type) || !r.subscription_type.contains('.') {
            return Err(input_error(
                "invalid_mapping",
                format!(
                    "rule {i}: subscription_type '{}' is not like 'ticket.creation'",
                    r.subscription_type
                ),
            ));
        }
        if r.object_type_id.as_deref().is_some_and(|t| !plain(t))
            || r.property_name.as_deref().is_some_and(|p| !plain(p))
        {
            return Err(input_error(
                "invalid_mapping",
                format!(
                    "rule {i}: object_type_id or property_name has characters that are not allowed"
                ),
            ));
        }
        if r.property_values.len() > 50 || r.property_values.iter().any(|v| v.len() > 200) {
            return Err(input_error(
                "invalid_mapping",
                format!("rule {i}: too many or too long property_values"),
            ));
        }
        if (!r.property_values.is_empty() || r.quantity == QuantityRule::PropertyValue)
            && r.property_name.is_none()
        {
            return Err(input_error("invalid_mapping", format!("rule {i}: property_values and quantity from property_value need a property_name")));
        }
        let limits = Limits::default();
        if matches!(r.quantity, QuantityRule::Constant(q) if q.abs() > limits.max_abs_quantity || q.normalize().scale() > limits.max_quantity_scale)
        {
            return Err(input_error(
                "invalid_mapping",
                format!(
                    "rule {i}: a constant quantity must be at most {} with at most {} decimal places",
                    limits.max_abs_quantity, limits.max_quantity_scale
                ),
            ));
        }
        if matches!(r.quantity, QuantityRule::Constant(q) if q.is_sign_negative()) {
            return Err(input_error(
                "invalid_mapping",
                format!("rule {i}: a constant quantity must not be negative"),
            ));
        }
        if !defined(&r.meter) {
            return Err(input_error(
                "unknown_meter",
                format!(
                    "rule {i}: meter '{}' is not defined for this tenant",
                    r.meter
                ),
            ));
        }
    }
    Ok(parsed.rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(sub: &str, prop: Option<(&str, &str)>, object_type: Option<&str>) -> AppEvent {
        AppEvent {
            portal_id: 1,
            occurred_at: 1,
            subscription_type: sub.into(),
            object_id: Some(5),
            object_type_id: object_type.map(str::to_owned),
            property_name: prop.map(|p| p.0.to_owned()),
            property_value: prop.map(|p| p.1.to_owned()),
            ..AppEvent::default()
        }
    }

    #[test]
    fn the_default_rules_map_ticket_lifecycle_and_touchpoints() {
        let rules = default_rules();
        let meter = |e: &AppEvent| match map_event(&rules, e) {
            Mapped::Usage { rule, .. } => Some(rule.meter.to_string()),
            _ => None,
        };
        assert_eq!(
            meter(&ev("ticket.creation", None, None)).as_deref(),
            Some("tickets_opened")
        );
        assert_eq!(
            meter(&ev(
                "ticket.propertyChange",
                Some(("hs_pipeline_stage", "4")),
                None
            ))
            .as_deref(),
            Some("tickets_resolved")
        );
        assert_eq!(
            meter(&ev(
                "ticket.propertyChange",
                Some(("hs_pipeline_stage", "2")),
                None
            )),
            None
        );
        assert_eq!(
            meter(&ev("object.creation", None, Some("0-47"))).as_deref(),
            Some("meetings_logged")
        );
        assert_eq!(
            map_event(&rules, &ev("deal.creation", None, None)),
            Mapped::Unmapped
        );
    }

    #[test]
    fn mapping_rule_bodies_are_validated() {
        let all = |_: &MeterName| true;
        let ok = br#"{"rules":[{"subscription_type":"ticket.creation","meter":"tickets_opened","quantity":{"constant":"1"},"stage":"requested","service_line":"support"}]}"#;
        assert_eq!(rules_from_body(ok, &all).unwrap().len(), 1);
        let bad = |b: &[u8]| rules_from_body(b, &all).unwrap_err().code;
        assert_eq!(bad(b"{"), "invalid_mapping");
        assert_eq!(bad(br#"{"rules":[{"subscription_type":"ticket","meter":"tickets_opened","quantity":{"constant":"1"},"stage":"requested","service_line":"support"}]}"#), "invalid_mapping");
        assert_eq!(bad(br#"{"rules":[{"subscription_type":"ticket.creation","meter":"tickets_opened","quantity":"property_value","stage":"requested","service_line":"support"}]}"#), "invalid_mapping");
        assert_eq!(bad(br#"{"rules":[{"subscription_type":"ticket.creation","meter":"Bad","quantity":{"constant":"1"},"stage":"requested","service_line":"support"}]}"#), "invalid_mapping");
        let none = |_: &MeterName| false;
        assert_eq!(
            rules_from_body(ok, &none).unwrap_err().code,
            "unknown_meter"
        );
    }

    #[test]
    fn a_property_value_beyond_the_api_quantity_bounds_is_refused_not_counted() {
        let mut r = default_rules().remove(0);
        r.subscription_type = "company.propertyChange".into();
        r.property_name = Some("seats_used".into());
        r.quantity = QuantityRule::PropertyValue;
        let rules = vec![r];
        for (value, code) in [
            (
                "79228162514264337593543950335",
                RejectCode::QuantityOutOfRange,
            ),
            (
                "-79228162514264337593543950335",
                RejectCode::QuantityOutOfRange,
            ),
            (
                "792281625142643375935439503350",
                RejectCode::QuantityOutOfRange,
            ),
            ("1e27", RejectCode::QuantityOutOfRange),
            ("1e400", RejectCode::QuantityOutOfRange),
            ("1000000000001", RejectCode::QuantityOutOfRange),
            ("0.0000000001", RejectCode::QuantityOutOfRange),
            ("-5", RejectCode::NegativeQuantityWithoutReason),
            ("NaN", RejectCode::InvalidQuantity),
            ("", RejectCode::InvalidQuantity),
        ] {
            let mapped = map_event(
                &rules,
                &ev("company.propertyChange", Some(("seats_used", value)), None),
            );
            assert!(
                matches!(mapped, Mapped::BadQuantity(c, _) if c == code),
                "{value}: {mapped:?}"
            );
        }
        for (value, want) in [
            ("1000000000000", Decimal::from(1_000_000_000_000_i64)),
            ("0.000000001", Decimal::new(1, 9)),
            (" 7 ", Decimal::from(7)),
        ] {
            assert!(
                matches!(map_event(&rules, &ev("company.propertyChange", Some(("seats_used", value)), None)), Mapped::Usage { quantity, .. } if quantity == want),
                "{value}"
            );
        }
    }

    #[test]
    fn a_constant_quantity_beyond_the_api_quantity_bounds_is_refused_in_the_rules() {
        let all = |_: &MeterName| true;
        for q in [
            "1000000000001",
            "79228162514264337593543950335",
            "0.0000000001",
        ] {
            let body = format!(
                r#"{{"rules":[{{"subscription_type":"ticket.creation","meter":"tickets_opened","quantity":{{"constant":"{q}"}},"stage":"requested","service_line":"support"}}]}}"#
            );
            assert_eq!(
                rules_from_body(body.as_bytes(), &all).unwrap_err().code,
                "invalid_mapping",
                "{q}"
            );
        }
    }

    #[test]
    fn a_property_value_rule_reads_the_quantity_from_the_change() {
        let mut r = default_rules().remove(0);
        r.subscription_type = "company.propertyChange".into();
        r.property_name = Some("seats_used".into());
        r.quantity = QuantityRule::PropertyValue;
        let rules = vec![r];
        assert!(
            matches!(map_event(&rules, &ev("company.propertyChange", Some(("seats_used", "42")), None)), Mapped::Usage { quantity, .. } if quantity == Decimal::from(42))
        );
        assert!(matches!(
            map_event(
                &rules,
                &ev("company.propertyChange", Some(("seats_used", "many")), None)
            ),
            Mapped::BadQuantity(RejectCode::InvalidQuantity, _)
        ));
    }
}

#[cfg(test)]
mod bounded {
    use super::*;
    use crate::event::UsageEvent;
    use crate::ids::{AccountId, EventId, Segment};
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[-+]?[0-9]{1,40}(\\.[0-9]{0,30})?",
            "[-+]?[0-9]{1,4}(\\.[0-9]{1,4})?[eE][-+]?[0-9]{1,4}",
            Just("79228162514264337593543950335".to_owned()),
            Just("1000000000000".to_owned()),
        ]
    }

    fn usage(i: usize, quantity: Decimal) -> UsageEvent {
        UsageEvent::new(
            EventId::parse(&format!("hs-{i}")).unwrap(),
            AccountId::parse("500").unwrap(),
            MeterName::parse("seats_active").unwrap(),
            quantity,
            chrono::DateTime::from_timestamp_millis(1_764_000_000_000).unwrap(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn any_property_value_is_either_refused_with_a_code_or_within_the_api_bounds(v in value()) {
            let limits = Limits::default();
            match property_quantity(&v) {
                Ok(q) => {
                    prop_assert!(!q.is_sign_negative() || q.is_zero());
                    prop_assert!(q <= limits.max_abs_quantity);
                    prop_assert!(q.scale() <= limits.max_quantity_scale);
                }
                Err((code, message)) => {
                    prop_assert!(matches!(code, RejectCode::InvalidQuantity | RejectCode::QuantityOutOfRange | RejectCode::NegativeQuantityWithoutReason));
                    prop_assert!(!message.is_empty());
                }
            }
        }

        #[test]
        fn accepted_property_values_sum_without_overflow_in_the_rollup(
            values in prop::collection::vec(value(), 1..200),
            copies in 1usize..50,
        ) {
            let accepted: Vec<Decimal> = values.iter().filter_map(|v| property_quantity(v).ok()).collect();
            let events: Vec<UsageEvent> = accepted
                .iter()
                .cycle()
                .take(accepted.len() * copies)
                .enumerate()
                .map(|(i, q)| usage(i, *q))
                .collect();
            let mut expected = Some(Decimal::ZERO);
            for e in &events {
                expected = expected.and_then(|s| s.checked_add(e.quantity));
            }
            let expected = expected.expect("bounded quantities cannot overflow a decimal sum");
            let deltas = crate::rollup::aggregate(events.iter().map(|e| (e, Segment::Smb)));
            for delta in deltas.values() {
                prop_assert_eq!(delta.total().quantity, expected);
            }
        }
    }
}
