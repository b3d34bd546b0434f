//! Company property changes that update the account profile (seats, plan, size),
//! configured as data: which HubSpot company property feeds which profile field.
//!
//! Values are kept per field with the time HubSpot says they changed; the newest
//! change wins whatever order webhooks arrive in. They are stored on the company's
//! identity record (so nothing is lost before an account names the company) and
//! copied onto the linked account's profile.

use super::webhook::AppEvent;
use crate::input::{input_error, InputError};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileField {
    /// Licensed seats (a non-negative whole number).
    Seats,
    /// Plan or tier name.
    Plan,
    /// Employee count (a non-negative whole number).
    Employees,
    /// Annual revenue or ARR (a non-negative decimal).
    AnnualRevenue,
    /// Contract renewal date (`YYYY-MM-DD`, or a HubSpot date property's epoch
    /// milliseconds at midnight UTC).
    RenewalDate,
}

impl ProfileField {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileField::Seats => "seats",
            ProfileField::Plan => "plan",
            ProfileField::Employees => "employees",
            ProfileField::AnnualRevenue => "annual_revenue",
            ProfileField::RenewalDate => "renewal_date",
        }
    }

    /// The value as stored, or why it cannot be.
    pub fn normalise(self, raw: &str) -> Result<String, String> {
        let raw = raw.trim();
        match self {
            ProfileField::Seats | ProfileField::Employees => raw
                .parse::<u64>()
                .map(|n| n.to_string())
                .or_else(|_| {
                    // HubSpot number properties may arrive as "25.0".
                    Decimal::from_str(raw)
                        .ok()
                        .filter(|d| d.fract().is_zero() && !d.is_sign_negative())
                        .map(|d| d.trunc().to_string())
                        .ok_or(())
                })
                .map_err(|_| format!("'{raw}' is not a whole non-negative number")),
            ProfileField::AnnualRevenue => Decimal::from_str(raw)
                .ok()
                .filter(|d| !d.is_sign_negative())
                .map(|d| d.normalize().to_string())
                .ok_or_else(|| format!("'{raw}' is not a non-negative amount")),
            ProfileField::Plan if raw.is_empty() || raw.chars().count() > 100 => {
                Err("a plan name is 1-100 characters".into())
            }
            ProfileField::Plan => Ok(raw.to_owned()),
            ProfileField::RenewalDate => chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .ok()
                .or_else(|| {
                    raw.parse::<i64>()
                        .ok()
                        .and_then(DateTime::from_timestamp_millis)
                        .map(|t| t.date_naive())
                })
                .map(|d| d.format("%Y-%m-%d").to_string())
                .ok_or_else(|| format!("'{raw}' is not a date (YYYY-MM-DD or epoch milliseconds)")),
        }
    }
}

/// HubSpot company property name -> profile field.
pub type ProfileSync = BTreeMap<String, ProfileField>;

/// What a tenant gets until it configures its own: HubSpot's standard company
/// properties for size and revenue, and the custom names commonly used for seats
/// and plan.
pub fn default_profile_sync() -> ProfileSync {
    [
        ("numberofemployees", ProfileField::Employees),
        ("annualrevenue", ProfileField::AnnualRevenue),
        ("seats", ProfileField::Seats),
        ("licensed_seats", ProfileField::Seats),
        ("plan", ProfileField::Plan),
        ("plan_tier", ProfileField::Plan),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// One synced value and when HubSpot says it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmProperty {
    pub value: String,
    pub changed_at: DateTime<Utc>,
    /// The HubSpot property it came from.
    pub source: String,
}

impl CrmProperty {
    /// Whether this value should replace `current` (newest change wins; ties keep
    /// the stored one, so replays change nothing).
    pub fn supersedes(&self, current: Option<&CrmProperty>) -> bool {
        current.is_none_or(|c| self.changed_at > c.changed_at)
    }
}

/// A company property change this tenant syncs to profiles.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileChange {
    pub company: u64,
    pub field: ProfileField,
    pub property: CrmProperty,
}

/// The profile change a `company.propertyChange` carries, if its property is synced.
/// `Err` explains a synced property whose value cannot be used.
pub fn profile_change(sync: &ProfileSync, ev: &AppEvent) -> Option<Result<ProfileChange, String>> {
    if ev.subscription_type != "company.propertyChange" {
        return None;
    }
    let name = ev.property_name.as_deref()?;
    let field = *sync.get(name)?;
    let company = ev.object_id?;
    let Some(changed_at) = DateTime::from_timestamp_millis(ev.occurred_at) else {
        return Some(Err("invalid occurredAt".into()));
    };
    let raw = ev.property_value.as_deref().unwrap_or_default();
    Some(
        field
            .normalise(raw)
            .map(|value| ProfileChange {
                company,
                field,
                property: CrmProperty {
                    value,
                    changed_at,
                    source: name.to_owned(),
                },
            })
            .map_err(|why| format!("{name}: {why}")),
    )
}

/// Reads the optional `profile_properties` of a `PUT /v1/hubspot/mappings` body
/// (`{"numberofemployees": "employees", ...}`); `None` keeps the defaults.
pub fn profile_sync_from_body(body: &[u8]) -> Result<Option<ProfileSync>, InputError> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        profile_properties: Option<BTreeMap<String, serde_json::Value>>,
    }
    let parsed: Body = serde_json::from_slice(body)
        .map_err(|e| input_error("invalid_mapping", format!("body could not be read: {e}")))?;
    let Some(map) = parsed.profile_properties else {
        return Ok(None);
    };
    if map.len() > 50 {
        return Err(input_error(
            "invalid_mapping",
            "at most 50 profile_properties",
        ));
    }
    let mut out = ProfileSync::new();
    for (property, field) in map {
        let plain = !property.is_empty()
            && property.len() <= 100
            && property
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !plain {
            return Err(input_error(
                "invalid_mapping",
                format!("profile_properties: '{property}' is not a HubSpot property name"),
            ));
        }
        let field: ProfileField = serde_json::from_value(field.clone()).map_err(|_| {
            input_error(
                "invalid_mapping",
                format!(
                    "profile_properties.{property}: {field} is not one of seats, plan, employees, annual_revenue, renewal_date"
                ),
            )
        })?;
        out.insert(property, field);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(prop: &str, value: &str, at: i64) -> AppEvent {
        AppEvent {
            portal_id: 1,
            occurred_at: at,
            subscription_type: "company.propertyChange".into(),
            object_id: Some(5123),
            property_name: Some(prop.into()),
            property_value: Some(value.into()),
            ..AppEvent::default()
        }
    }

    #[test]
    fn a_synced_company_property_becomes_a_profile_change() {
        let c = profile_change(
            &default_profile_sync(),
            &change("numberofemployees", "250", 1000),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.company, 5123);
        assert_eq!(c.field, ProfileField::Employees);
        assert_eq!(c.property.value, "250");
        assert_eq!(c.property.source, "numberofemployees");
    }

    #[test]
    fn properties_that_are_not_synced_are_not_profile_changes() {
        assert!(profile_change(&default_profile_sync(), &change("phone", "1", 1)).is_none());
        let mut ticket = change("seats", "5", 1);
        ticket.subscription_type = "ticket.propertyChange".into();
        assert!(profile_change(&default_profile_sync(), &ticket).is_none());
    }

    #[test]
    fn unusable_values_are_explained() {
        let e = profile_change(&default_profile_sync(), &change("seats", "lots", 1))
            .unwrap()
            .unwrap_err();
        assert!(e.contains("seats") && e.contains("whole"), "{e}");
        assert_eq!(ProfileField::Seats.normalise("25.0").unwrap(), "25");
        assert!(ProfileField::Seats.normalise("-2").is_err());
        assert_eq!(
            ProfileField::AnnualRevenue.normalise("1200000.50").unwrap(),
            "1200000.5"
        );
    }

    #[test]
    fn the_newest_change_wins_whatever_the_arrival_order() {
        let at = |ms: i64| CrmProperty {
            value: ms.to_string(),
            changed_at: DateTime::from_timestamp_millis(ms).unwrap(),
            source: "seats".into(),
        };
        assert!(at(2).supersedes(Some(&at(1))));
        assert!(!at(1).supersedes(Some(&at(2))));
        assert!(!at(2).supersedes(Some(&at(2))));
        assert!(at(1).supersedes(None));
    }

    #[test]
    fn tenants_configure_which_property_feeds_which_field() {
        let s =
            profile_sync_from_body(br#"{"rules":[],"profile_properties":{"num_seats":"seats"}}"#)
                .unwrap()
                .unwrap();
        assert_eq!(s.get("num_seats"), Some(&ProfileField::Seats));
        assert_eq!(profile_sync_from_body(br#"{"rules":[]}"#).unwrap(), None);
        for bad in [
            r#"{"profile_properties":{"num seats":"seats"}}"#,
            r#"{"profile_properties":{"x":"colour"}}"#,
        ] {
            assert_eq!(
                profile_sync_from_body(bad.as_bytes()).unwrap_err().code,
                "invalid_mapping"
            );
        }
    }
}
