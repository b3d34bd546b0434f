//! Account profiles: who the customer is, their size tier and owner.

use crate::ids::{AccountId, Segment};
use crate::input::{input_error, object, opt_string, InputError};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountProfile {
    pub account: AccountId,
    pub name: String,
    pub segment: Segment,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onboarding_date: Option<NaiveDate>,
    /// When the contract renews, as set through the API; a synced CRM value
    /// (`crm_properties.renewal_date`) takes its place ([`AccountProfile::renewal`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_date: Option<NaiveDate>,
    /// External ids by system, e.g. `{"hubspot_company_id": "5123"}`.
    #[serde(default)]
    pub crm_ids: BTreeMap<String, String>,
    /// Facts synced from the CRM by field (`seats`, `plan`, `employees`,
    /// `annual_revenue`), newest change wins; read-only through the API.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub crm_properties: BTreeMap<String, crate::hubspot::profile::CrmProperty>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The `crm_ids` key that links an account to its HubSpot company.
pub const HUBSPOT_COMPANY_ID: &str = "hubspot_company_id";

const FIELDS: &[&str] = &[
    "name",
    "segment",
    "owner_email",
    "onboarding_date",
    "renewal_date",
    "crm_ids",
];

impl AccountProfile {
    /// The renewal date in force: the one synced from the mapped HubSpot company
    /// property when there is one (the CRM owns the contract), else the API's.
    pub fn renewal(&self) -> Option<NaiveDate> {
        self.crm_properties
            .get(crate::hubspot::profile::ProfileField::RenewalDate.as_str())
            .and_then(|c| NaiveDate::parse_from_str(&c.value, "%Y-%m-%d").ok())
            .or(self.renewal_date)
    }
}

/// An optional `YYYY-MM-DD` field of a profile body.
fn opt_date(
    map: &serde_json::Map<String, serde_json::Value>,
    name: &str,
    code: &'static str,
) -> Result<Option<NaiveDate>, InputError> {
    match opt_string(map, name, 10, code)? {
        None => Ok(None),
        Some(d) => NaiveDate::parse_from_str(&d, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| input_error(code, format!("{name} '{d}' is not a YYYY-MM-DD date"))),
    }
}

/// Validates a `PUT /v1/accounts/{account}` body into the profile to store.
pub fn profile_from_body(
    account: AccountId,
    body: &[u8],
    now: DateTime<Utc>,
    existing: Option<&AccountProfile>,
) -> Result<AccountProfile, InputError> {
    let map = object(body, FIELDS)?;
    let name = opt_string(&map, "name", 200, "invalid_name")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| input_error("missing_name", "name is required"))?;
    let segment = match opt_string(&map, "segment", 32, "invalid_segment")? {
        None => {
            return Err(input_error(
                "missing_segment",
                "segment is required (smb, mid_market, enterprise or strategic)",
            ))
        }
        Some(s) => match Segment::parse(&s) {
            Some(seg) if seg != Segment::Unassigned => seg,
            _ => {
                return Err(input_error(
                    "invalid_segment",
                    format!("segment '{s}' is not one of smb, mid_market, enterprise, strategic"),
                ))
            }
        },
    };
    let owner_email = opt_string(&map, "owner_email", 254, "invalid_owner_email")?;
    if let Some(e) = &owner_email {
        if !looks_like_email(e) {
            return Err(input_error(
                "invalid_owner_email",
                format!("'{e}' is not an email address"),
            ));
        }
    }
    let onboarding_date = opt_date(&map, "onboarding_date", "invalid_onboarding_date")?;
    let renewal_date = opt_date(&map, "renewal_date", "invalid_renewal_date")?;
    let mut crm_ids = BTreeMap::new();
    match map.get("crm_ids") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(ids)) => {
            if ids.len() > 20 {
                return Err(input_error("invalid_crm_ids", "at most 20 CRM ids"));
            }
            for (k, v) in ids {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => {
                        return Err(input_error(
                            "invalid_crm_ids",
                            format!("crm_ids.{k} must be a string"),
                        ))
                    }
                };
                if k.is_empty() || k.len() > 64 || v.is_empty() || v.len() > 128 {
                    return Err(input_error(
                        "invalid_crm_ids",
                        format!("crm_ids.{k} is empty or too long"),
                    ));
                }
                if k == HUBSPOT_COMPANY_ID && v.parse::<u64>().is_err() {
                    return Err(input_error(
                        "invalid_crm_ids",
                        format!("crm_ids.{k} must be a HubSpot company id (digits), not '{v}'"),
                    ));
                }
                crm_ids.insert(k.clone(), v);
            }
        }
        Some(_) => {
            return Err(input_error(
                "invalid_crm_ids",
                "crm_ids must be an object of strings",
            ))
        }
    }
    Ok(AccountProfile {
        account,
        name,
        segment,
        owner_email,
        onboarding_date,
        renewal_date,
        crm_ids,
        crm_properties: existing
            .map(|e| e.crm_properties.clone())
            .unwrap_or_default(),
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
    })
}

fn looks_like_email(e: &str) -> bool {
    match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !e.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(body: &str) -> Result<AccountProfile, &'static str> {
        profile_from_body(
            AccountId::parse("42").unwrap(),
            body.as_bytes(),
            Utc::now(),
            None,
        )
        .map_err(|e| e.code)
    }

    #[test]
    fn a_complete_profile_is_accepted() {
        let p = put(r#"{"name":"Acme","segment":"enterprise","owner_email":"csm@us.com","onboarding_date":"2026-01-31","crm_ids":{"hubspot_company_id":5123}}"#).unwrap();
        assert_eq!(p.segment, Segment::Enterprise);
        assert_eq!(p.crm_ids["hubspot_company_id"], "5123");
    }

    #[test]
    fn bad_profiles_say_which_field_is_wrong() {
        assert_eq!(put("{").err(), Some("malformed_json"));
        assert_eq!(put("[]").err(), Some("invalid_body"));
        assert_eq!(put(r#"{"segment":"smb"}"#).err(), Some("missing_name"));
        assert_eq!(put(r#"{"name":"A"}"#).err(), Some("missing_segment"));
        assert_eq!(
            put(r#"{"name":"A","segment":"huge"}"#).err(),
            Some("invalid_segment")
        );
        assert_eq!(
            put(r#"{"name":"A","segment":"unassigned"}"#).err(),
            Some("invalid_segment")
        );
        assert_eq!(
            put(r#"{"name":"A","segment":"smb","owner_email":"nope"}"#).err(),
            Some("invalid_owner_email")
        );
        assert_eq!(
            put(r#"{"name":"A","segment":"smb","onboarding_date":"31/01/2026"}"#).err(),
            Some("invalid_onboarding_date")
        );
        assert_eq!(
            put(r#"{"name":"A","segment":"smb","crm_ids":[1]}"#).err(),
            Some("invalid_crm_ids")
        );
        assert_eq!(
            put(r#"{"name":"A","segment":"smb","tier":"x"}"#).err(),
            Some("unknown_field")
        );
        assert_eq!(
            put(r#"{"name":"A","segment":"smb","renewal_date":"next spring"}"#).err(),
            Some("invalid_renewal_date")
        );
    }

    #[test]
    fn the_renewal_date_is_the_synced_crm_value_when_there_is_one_else_the_profiles() {
        let mut p = put(r#"{"name":"A","segment":"smb","renewal_date":"2027-03-31"}"#).unwrap();
        assert_eq!(p.renewal(), NaiveDate::from_ymd_opt(2027, 3, 31));
        let synced = crate::hubspot::profile::ProfileField::RenewalDate
            .normalise("1798675200000")
            .unwrap();
        assert_eq!(synced, "2026-12-31", "HubSpot's epoch milliseconds");
        p.crm_properties.insert(
            "renewal_date".into(),
            crate::hubspot::profile::CrmProperty {
                value: synced,
                changed_at: Utc::now(),
                source: "contract_renewal".into(),
            },
        );
        assert_eq!(p.renewal(), NaiveDate::from_ymd_opt(2026, 12, 31));
        assert!(crate::hubspot::profile::ProfileField::RenewalDate
            .normalise("31/12/2026")
            .is_err());
    }
}
