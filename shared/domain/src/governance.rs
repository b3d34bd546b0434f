//! Event governance: the typed parts of an event definition that ingest enforces
//! (value type, required properties, aliases) and the change log of the registry.
//! Pure; storage lives behind [`ChangeLog`].

use crate::definition::Definition;
pub use crate::event::check_schema;
use crate::ids::{MeterName, TenantId};
use crate::ports::error::{Page, StoreError};
pub use crate::registry::{Criticality, PolicyRules, PropType, Schema, Sensitivity, ValueType};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// What happened to a definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    Created,
    Updated,
    Deprecated,
    Deleted,
    Restored,
}

impl ChangeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deprecated => "deprecated",
            Self::Deleted => "deleted",
            Self::Restored => "restored",
        }
    }

    /// Classifies a change from the status before and after.
    pub fn of(before: Option<&Definition>, after: &Definition) -> Self {
        use crate::event::DefinitionStatus as S;
        match (before.map(|b| b.status), after.status) {
            (None, _) => Self::Created,
            (Some(S::Deleted), S::Active | S::Deprecated) => Self::Restored,
            (Some(b), S::Deleted) if b != S::Deleted => Self::Deleted,
            (Some(b), S::Deprecated) if b != S::Deprecated => Self::Deprecated,
            _ => Self::Updated,
        }
    }
}

/// One audit-log entry of the registry: who changed what, when, before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEntry {
    pub meter: MeterName,
    pub at: DateTime<Utc>,
    /// The principal: `key:<first 12 hex of the API key's hash>` or `cli:<user>`.
    pub actor: String,
    pub action: ChangeAction,
    /// Top-level fields whose value differs.
    pub changed: Vec<String>,
    pub before: Option<Definition>,
    pub after: Definition,
}

/// Names of the top-level fields that differ (timestamps excluded).
pub fn changed_fields(before: Option<&Definition>, after: &Definition) -> Vec<String> {
    let to_map = |d: &Definition| match serde_json::to_value(d) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let a = to_map(after);
    let b = before.map(to_map).unwrap_or_default();
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !matches!(k.as_str(), "created_at" | "updated_at"))
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// Stores a definition together with its change-log entry (atomically).
#[async_trait]
pub trait ChangeLog: Send + Sync {
    async fn save_with_change(
        &self,
        tenant: &TenantId,
        def: &Definition,
        entry: &ChangeEntry,
    ) -> Result<(), StoreError>;
    /// One page of a definition's change log, oldest first, after `cursor` (an
    /// opaque cursor this store returned as `next`).
    async fn changes(
        &self,
        tenant: &TenantId,
        meter: &MeterName,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ChangeEntry>, StoreError>;
}

/// The governance notification of a registry change (kind `data_quality`, code
/// `definition_<action>`, routed to the definition's owner).
pub fn change_alert(tenant: &TenantId, e: &ChangeEntry) -> Option<crate::alert::Alert> {
    let account = crate::ids::AccountId::parse(crate::alert::TENANT_WIDE).ok()?;
    let severity = match e.action {
        ChangeAction::Deleted | ChangeAction::Deprecated => crate::alert::Severity::Warning,
        _ => crate::alert::Severity::Info,
    };
    let changed = if e.changed.is_empty() {
        "no field changed".to_owned()
    } else {
        format!("changed: {}", e.changed.join(", "))
    };
    Some(crate::alert::Alert {
        key: format!(
            "gov:{tenant}:{}:{}",
            e.meter,
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ),
        kind: crate::alert::AlertKind::DataQuality,
        code: format!("definition_{}", e.action.as_str()),
        severity,
        tenant: tenant.clone(),
        account,
        account_name: None,
        segment: crate::ids::Segment::Unassigned,
        owner: e
            .after
            .owner
            .clone()
            .or_else(|| e.before.as_ref().and_then(|b| b.owner.clone())),
        crm_url: None,
        entitlement: None,
        meters: vec![e.meter.clone()],
        threshold: None,
        period_start: e.at.date_naive(),
        period_end: e.at.date_naive().succ_opt().unwrap_or(e.at.date_naive()),
        time_zone: "UTC".into(),
        used: Decimal::ZERO,
        limit: Decimal::ZERO,
        percent: Decimal::ZERO,
        projected: Decimal::ZERO,
        late: false,
        raised_at: e.at,
        reasons: Vec::new(),
        detail: Some(format!(
            "definition {} {} by {} at {} ({changed})",
            e.meter,
            e.action.as_str(),
            e.actor,
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{DefinitionStatus, RejectCode};
    use std::collections::BTreeMap;

    fn def(status: DefinitionStatus) -> Definition {
        let now = Utc::now();
        let mut d = Definition::new(MeterName::parse("api_calls").unwrap(), now);
        d.status = status;
        d
    }

    #[test]
    fn integer_meters_refuse_fractions_and_boolean_meters_anything_but_zero_or_one() {
        assert!(ValueType::Integer.admits(Decimal::from(3)));
        assert!(!ValueType::Integer.admits(Decimal::new(15, 1)));
        assert!(ValueType::Boolean.admits(Decimal::ONE));
        assert!(!ValueType::Boolean.admits(Decimal::from(2)));
        assert!(ValueType::Decimal.admits(Decimal::new(15, 1)));
    }

    #[test]
    fn required_properties_are_checked_for_presence_then_type() {
        let m = MeterName::parse("api_calls").unwrap();
        let schema = Schema {
            value_type: ValueType::Integer,
            required: BTreeMap::from([
                ("plan".to_owned(), PropType::String),
                ("seats".to_owned(), PropType::Integer),
            ]),
            deprecated: false,
            critical: false,
        };
        let props = |v: serde_json::Value| v.as_object().cloned();
        let code = |q: i64, p: Option<serde_json::Map<String, serde_json::Value>>| {
            check_schema(&m, &schema, Decimal::from(q), p.as_ref()).map_err(|e| e.0)
        };
        assert_eq!(code(1, None), Err(RejectCode::MissingProperty));
        assert_eq!(
            code(1, props(serde_json::json!({"plan": "pro", "seats": "3"}))),
            Err(RejectCode::PropertyTypeMismatch)
        );
        assert_eq!(
            code(1, props(serde_json::json!({"plan": "pro", "seats": 3}))),
            Ok(())
        );
        assert_eq!(
            check_schema(&m, &schema, Decimal::new(5, 1), None).map_err(|e| e.0),
            Err(RejectCode::ValueTypeMismatch)
        );
    }

    #[test]
    fn a_change_is_classified_by_the_status_before_and_after() {
        let active = def(DefinitionStatus::Active);
        let deleted = def(DefinitionStatus::Deleted);
        assert_eq!(ChangeAction::of(None, &active), ChangeAction::Created);
        assert_eq!(
            ChangeAction::of(Some(&active), &deleted),
            ChangeAction::Deleted
        );
        assert_eq!(
            ChangeAction::of(Some(&deleted), &active),
            ChangeAction::Restored
        );
        assert_eq!(
            ChangeAction::of(Some(&active), &def(DefinitionStatus::Deprecated)),
            ChangeAction::Deprecated
        );
        assert_eq!(
            ChangeAction::of(Some(&active), &active),
            ChangeAction::Updated
        );
    }

    #[test]
    fn changed_fields_name_what_differs_and_ignore_timestamps() {
        let before = def(DefinitionStatus::Active);
        let mut after = before.clone();
        after.owner = Some("ops@example.com".into());
        after.updated_at = before.updated_at + chrono::Duration::seconds(5);
        assert_eq!(changed_fields(Some(&before), &after), vec!["owner"]);
        assert!(changed_fields(None, &after).contains(&"meter".to_owned()));
    }

    #[test]
    fn aliases_of_deleted_definitions_lead_to_them_until_a_live_definition_claims_the_name() {
        let legacy = MeterName::parse("apicalls_v1").unwrap();
        let mut a = def(DefinitionStatus::Active);
        a.aliases = vec![legacy.clone()];
        let rules = PolicyRules::from_definitions([&a]);
        assert_eq!(rules.aliases.get(&legacy), Some(&a.meter));
        a.status = DefinitionStatus::Deleted;
        assert_eq!(
            PolicyRules::from_definitions([&a]).aliases.get(&legacy),
            Some(&a.meter)
        );
        let mut b = def(DefinitionStatus::Active);
        b.meter = MeterName::parse("calls").unwrap();
        b.aliases = vec![legacy.clone()];
        for order in [[&a, &b], [&b, &a]] {
            assert_eq!(
                PolicyRules::from_definitions(order).aliases.get(&legacy),
                Some(&b.meter)
            );
        }
    }
}
