//! Event definitions (the meter registry): what may be sent, in which unit and shape,
//! who owns it and how closely it is watched. Definitions are data: adding or
//! changing an event needs no code change (see docs/adr/0007).

use crate::ids::MeterName;
use crate::input::{input_error, object, opt_string, InputError};
use crate::registry::{
    Criticality, DefinitionStatus, PolicyRules, PropType, Schema, Sensitivity, ValueType,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    pub meter: MeterName,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who answers for this event (an e-mail or team); alerts are routed to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default)]
    pub value_type: ValueType,
    #[serde(default)]
    pub required_properties: BTreeMap<String, PropType>,
    #[serde(default)]
    pub criticality: Criticality,
    #[serde(default)]
    pub key_feature: bool,
    #[serde(default)]
    pub milestone: bool,
    #[serde(default)]
    pub anomaly_sensitivity: Sensitivity,
    /// An active account is expected to send this event at least once per this many
    /// hours; a longer silence is a usage gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_cadence_hours: Option<u32>,
    /// Legacy names that ingest and imports map to this meter.
    #[serde(default)]
    pub aliases: Vec<MeterName>,
    #[serde(default)]
    pub status: DefinitionStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Definition {
    /// An active definition with nothing but its name.
    pub fn new(meter: MeterName, now: DateTime<Utc>) -> Self {
        Self {
            meter,
            name: None,
            description: None,
            owner: None,
            unit: None,
            value_type: ValueType::Decimal,
            required_properties: BTreeMap::new(),
            criticality: Criticality::Normal,
            key_feature: false,
            milestone: false,
            anomaly_sensitivity: Sensitivity::Medium,
            expected_cadence_hours: None,
            aliases: Vec::new(),
            status: DefinitionStatus::Active,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn is_critical(&self) -> bool {
        self.criticality == Criticality::Critical
    }
}

const FIELDS: &[&str] = &[
    "name",
    "description",
    "owner",
    "unit",
    "value_type",
    "required_properties",
    "criticality",
    "key_feature",
    "milestone",
    "anomaly_sensitivity",
    "expected_cadence_hours",
    "aliases",
    "status",
];

/// Most aliases and required properties of one definition.
pub const MAX_ALIASES: usize = 20;
pub const MAX_REQUIRED_PROPERTIES: usize = 20;
/// Longest expected cadence: 90 days.
pub const MAX_CADENCE_HOURS: u64 = 24 * 90;

fn opt_bool(
    map: &serde_json::Map<String, Value>,
    name: &str,
    code: &'static str,
) -> Result<bool, InputError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(input_error(code, format!("{name} must be true or false"))),
    }
}

fn choice<T>(
    map: &serde_json::Map<String, Value>,
    name: &str,
    code: &'static str,
    options: &str,
    parse: impl Fn(&str) -> Option<T>,
    default: T,
) -> Result<T, InputError> {
    match opt_string(map, name, 32, code)? {
        None => Ok(default),
        Some(v) => parse(&v)
            .ok_or_else(|| input_error(code, format!("{name} '{v}' is not one of {options}"))),
    }
}

/// Validates a `PUT /v1/definitions/{meter}` body (the whole definition; fields left
/// out take their defaults).
pub fn definition_from_body(
    meter: MeterName,
    body: &[u8],
    now: DateTime<Utc>,
    existing: Option<&Definition>,
) -> Result<Definition, InputError> {
    let map = object(body, FIELDS)?;
    let name = opt_string(&map, "name", 200, "invalid_name")?.filter(|n| !n.is_empty());
    let description = opt_string(&map, "description", 1000, "invalid_description")?;
    let owner = opt_string(&map, "owner", 254, "invalid_owner")?.filter(|o| !o.is_empty());
    let unit = opt_string(&map, "unit", 32, "invalid_unit")?.filter(|u| !u.is_empty());
    let status = choice(
        &map,
        "status",
        "invalid_status",
        "active, deprecated, deleted",
        |s| match s {
            "active" => Some(DefinitionStatus::Active),
            "deprecated" => Some(DefinitionStatus::Deprecated),
            "deleted" => Some(DefinitionStatus::Deleted),
            _ => None,
        },
        DefinitionStatus::Active,
    )?;
    let value_type = choice(
        &map,
        "value_type",
        "invalid_value_type",
        "decimal, integer, boolean",
        ValueType::parse,
        ValueType::Decimal,
    )?;
    let criticality = choice(
        &map,
        "criticality",
        "invalid_criticality",
        "critical, normal",
        |s| match s {
            "critical" => Some(Criticality::Critical),
            "normal" => Some(Criticality::Normal),
            _ => None,
        },
        Criticality::Normal,
    )?;
    let anomaly_sensitivity = choice(
        &map,
        "anomaly_sensitivity",
        "invalid_sensitivity",
        "low, medium, high",
        Sensitivity::parse,
        Sensitivity::Medium,
    )?;
    let key_feature = opt_bool(&map, "key_feature", "invalid_key_feature")?;
    let milestone = opt_bool(&map, "milestone", "invalid_milestone")?;
    let expected_cadence_hours = match map.get("expected_cadence_hours") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|h| (1..=MAX_CADENCE_HOURS).contains(h))
                .and_then(|h| u32::try_from(h).ok())
                .ok_or_else(|| {
                    input_error(
                        "invalid_cadence",
                        format!("expected_cadence_hours must be a whole number from 1 to {MAX_CADENCE_HOURS}"),
                    )
                })?,
        ),
    };
    let mut required_properties = BTreeMap::new();
    match map.get("required_properties") {
        None | Some(Value::Null) => {}
        Some(Value::Object(props)) => {
            if props.len() > MAX_REQUIRED_PROPERTIES {
                return Err(input_error(
                    "invalid_required_properties",
                    format!("at most {MAX_REQUIRED_PROPERTIES} required properties"),
                ));
            }
            for (k, v) in props {
                if k.is_empty() || k.len() > 64 || k.chars().any(char::is_control) {
                    return Err(input_error(
                        "invalid_required_properties",
                        "property names are 1 to 64 printable characters",
                    ));
                }
                let ty = v.as_str().and_then(PropType::parse).ok_or_else(|| {
                    input_error(
                        "invalid_required_properties",
                        format!("property '{k}' must have a type: string, number, integer, boolean, object or array"),
                    )
                })?;
                required_properties.insert(k.clone(), ty);
            }
        }
        Some(_) => {
            return Err(input_error(
                "invalid_required_properties",
                "required_properties must be an object of property name -> type",
            ))
        }
    }
    let mut aliases = Vec::new();
    match map.get("aliases") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            if list.len() > MAX_ALIASES {
                return Err(input_error(
                    "invalid_aliases",
                    format!("at most {MAX_ALIASES} aliases"),
                ));
            }
            for a in list {
                let alias = a
                    .as_str()
                    .and_then(|s| MeterName::parse(s).ok())
                    .ok_or_else(|| {
                        input_error(
                            "invalid_aliases",
                            "aliases are meter names (lowercase letter first, then a-z 0-9 _ .)",
                        )
                    })?;
                if alias == meter {
                    return Err(input_error(
                        "invalid_aliases",
                        "a meter cannot be its own alias",
                    ));
                }
                if !aliases.contains(&alias) {
                    aliases.push(alias);
                }
            }
        }
        Some(_) => {
            return Err(input_error(
                "invalid_aliases",
                "aliases must be an array of meter names",
            ))
        }
    }
    Ok(Definition {
        meter,
        name,
        description,
        owner,
        unit,
        value_type,
        required_properties,
        criticality,
        key_feature,
        milestone,
        anomaly_sensitivity,
        expected_cadence_hours,
        aliases,
        status,
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
    })
}

/// An alias must not name another definition nor another definition's alias.
pub fn alias_conflict(def: &Definition, others: &[Definition]) -> Option<String> {
    for o in others.iter().filter(|o| o.meter != def.meter) {
        if o.status == DefinitionStatus::Deleted {
            continue;
        }
        if def.aliases.contains(&o.meter) {
            return Some(format!("alias '{}' is a defined meter", o.meter));
        }
        if o.aliases.contains(&def.meter) {
            return Some(format!(
                "'{}' is an alias of meter '{}'",
                def.meter, o.meter
            ));
        }
        if let Some(a) = def.aliases.iter().find(|a| o.aliases.contains(a)) {
            return Some(format!("alias '{a}' already maps to meter '{}'", o.meter));
        }
    }
    None
}

impl PolicyRules {
    /// Builds the rules from the tenant's definitions. A deleted definition's aliases
    /// still lead to it (so its legacy traffic is held or refused as `meter_deleted`,
    /// not lost as unknown) unless a live definition has claimed the name since.
    pub fn from_definitions<'a>(defs: impl IntoIterator<Item = &'a Definition>) -> Self {
        let mut rules = Self::default();
        let mut retired = Vec::new();
        for d in defs {
            for a in &d.aliases {
                if d.status == DefinitionStatus::Deleted {
                    retired.push((a.clone(), d.meter.clone()));
                } else {
                    rules.aliases.insert(a.clone(), d.meter.clone());
                }
            }
            rules.schemas.insert(
                d.meter.clone(),
                Schema {
                    value_type: d.value_type,
                    required: d.required_properties.clone(),
                    deprecated: d.status == DefinitionStatus::Deprecated,
                    critical: d.is_critical(),
                },
            );
        }
        for (alias, meter) in retired {
            rules.aliases.entry(alias).or_insert(meter);
        }
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc::now()
    }
    fn m(s: &str) -> MeterName {
        MeterName::parse(s).unwrap()
    }

    #[test]
    fn a_full_definition_body_is_read_into_every_field() {
        let body = br#"{"name":"API calls","description":"d","owner":"ops@example.com","unit":"call",
            "value_type":"integer","required_properties":{"plan":"string"},"criticality":"critical",
            "key_feature":true,"milestone":false,"anomaly_sensitivity":"high","expected_cadence_hours":24,
            "aliases":["apicalls_v1","apicalls_v1"],"status":"active"}"#;
        let d = definition_from_body(m("api_calls"), body, now(), None).unwrap();
        assert_eq!(d.value_type, ValueType::Integer);
        assert!(d.is_critical() && d.key_feature && !d.milestone);
        assert_eq!(d.anomaly_sensitivity, Sensitivity::High);
        assert_eq!(d.expected_cadence_hours, Some(24));
        assert_eq!(d.aliases, vec![m("apicalls_v1")]);
        assert_eq!(d.required_properties.get("plan"), Some(&PropType::String));
    }

    #[test]
    fn every_bad_definition_field_has_its_own_code() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"value_type":"float"}"#, "invalid_value_type"),
            (br#"{"criticality":"urgent"}"#, "invalid_criticality"),
            (br#"{"anomaly_sensitivity":"max"}"#, "invalid_sensitivity"),
            (br#"{"expected_cadence_hours":0}"#, "invalid_cadence"),
            (br#"{"expected_cadence_hours":1.5}"#, "invalid_cadence"),
            (
                br#"{"required_properties":{"a":"date"}}"#,
                "invalid_required_properties",
            ),
            (
                br#"{"required_properties":[]}"#,
                "invalid_required_properties",
            ),
            (br#"{"aliases":["Bad Name"]}"#, "invalid_aliases"),
            (br#"{"aliases":["api_calls"]}"#, "invalid_aliases"),
            (br#"{"key_feature":"yes"}"#, "invalid_key_feature"),
            (br#"{"status":"gone"}"#, "invalid_status"),
            (br#"{"colour":"red"}"#, "unknown_field"),
        ];
        for (body, code) in cases {
            let e = definition_from_body(m("api_calls"), body, now(), None).unwrap_err();
            assert_eq!(e.code, *code, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn aliases_may_not_collide_with_other_meters_or_their_aliases() {
        let mut a = Definition::new(m("api_calls"), now());
        let mut b = Definition::new(m("requests"), now());
        b.aliases = vec![m("legacy_calls")];
        a.aliases = vec![m("requests")];
        assert!(alias_conflict(&a, &[b.clone()]).is_some());
        a.aliases = vec![m("legacy_calls")];
        assert!(alias_conflict(&a, &[b.clone()]).is_some());
        a.aliases = vec![m("old_calls")];
        assert!(alias_conflict(&a, &[b.clone()]).is_none());
        b.status = DefinitionStatus::Deleted;
        a.aliases = vec![m("legacy_calls")];
        assert!(alias_conflict(&a, &[b]).is_none());
    }
}
