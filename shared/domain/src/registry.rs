//! The registry's vocabulary: what a definition declares (status, value type, required
//! properties, criticality, anomaly sensitivity) and what ingest enforces from it (a
//! tenant's meters, aliases, schemas and governance policy).
//!
//! A leaf of the domain: it imports no other domain module but `ids` and `horizon`,
//! so validation (`event`), definitions, governance and quarantine can all build on it
//! without importing each other in a circle (`tests/architecture.rs` keeps it so).

use crate::ids::MeterName;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Lifecycle of an event definition in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DefinitionStatus {
    #[default]
    Active,
    Deprecated,
    Deleted,
}

/// The part of a meter definition that ingest validates against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterRule {
    pub meter: MeterName,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub status: DefinitionStatus,
}

/// What a tenant allows: its backfill horizon and its meters.
#[derive(Debug, Clone, Default)]
pub struct TenantPolicy {
    pub backfill_days: u32,
    pub meters: HashMap<MeterName, MeterRule>,
    /// Aliases and schemas from the registry (docs/adr/0007).
    pub governance: PolicyRules,
}

/// What a quantity may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// Any exact decimal (the default).
    #[default]
    Decimal,
    /// Whole numbers only (counts).
    Integer,
    /// 0 or 1 (a flag: "feature used").
    Boolean,
}

impl ValueType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "decimal" => Some(Self::Decimal),
            "integer" => Some(Self::Integer),
            "boolean" => Some(Self::Boolean),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decimal => "decimal",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
        }
    }
    /// Whether a quantity fits this type. Corrections (negative) of counts stay whole.
    pub fn admits(self, q: Decimal) -> bool {
        match self {
            Self::Decimal => true,
            Self::Integer => q.fract().is_zero(),
            Self::Boolean => q.is_zero() || q == Decimal::ONE || q == Decimal::NEGATIVE_ONE,
        }
    }
}

/// JSON type of a required property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PropType {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
}

impl PropType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => Self::String,
            "number" => Self::Number,
            "integer" => Self::Integer,
            "boolean" => Self::Boolean,
            "object" => Self::Object,
            "array" => Self::Array,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Object => "object",
            Self::Array => "array",
        }
    }
    pub fn matches(self, v: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        match self {
            Self::String => v.is_string(),
            Self::Number => v.is_number(),
            Self::Integer => v.is_i64() || v.is_u64(),
            Self::Boolean => matches!(v, V::Bool(_)),
            Self::Object => v.is_object(),
            Self::Array => v.is_array(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Criticality {
    Critical,
    #[default]
    Normal,
}

/// How easily anomalies of a definition are reported: the number of robust standard
/// deviations (1.4826 × MAD) an hour must be away from its seasonal median.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    Low,
    #[default]
    Medium,
    High,
}

impl Sensitivity {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            _ => None,
        }
    }
    pub fn k(self) -> f64 {
        match self {
            Self::Low => 6.0,
            Self::Medium => 4.0,
            Self::High => 3.0,
        }
    }
}

/// What ingest checks an event of one meter against, beyond unit and status.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Schema {
    pub value_type: ValueType,
    pub required: BTreeMap<String, PropType>,
    pub deprecated: bool,
    /// Critical definitions get per-account activity tracking (usage gaps).
    pub critical: bool,
}

/// The governance part of a tenant's policy: legacy names and schemas.
#[derive(Debug, Clone, Default)]
pub struct PolicyRules {
    /// Legacy name -> current meter.
    pub aliases: HashMap<MeterName, MeterName>,
    pub schemas: HashMap<MeterName, Schema>,
    /// What happens to events of deleted and deprecated definitions.
    pub policy: GovernancePolicy,
}

/// What happens to events of a deleted definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeletedMeterEvents {
    /// Held server-side with the reason, replayed on restore (the default).
    #[default]
    Quarantine,
    /// Refused with `meter_deleted`; the sender keeps them.
    Reject,
}

/// What happens to events of a deprecated definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeprecatedMeterEvents {
    /// Counted, and flagged `meter_deprecated` to the sender (the default).
    #[default]
    Flag,
    /// Held like a deleted definition's events until it is active again.
    Quarantine,
}

/// A tenant's governance policy (`GET/PUT /v1/governance/policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GovernancePolicy {
    #[serde(default)]
    pub deleted_meter_events: DeletedMeterEvents,
    #[serde(default)]
    pub deprecated_meter_events: DeprecatedMeterEvents,
}
