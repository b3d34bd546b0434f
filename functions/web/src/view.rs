//! What the pages show, derived from the API's JSON responses (pure).

use crate::chart::Point;
use domain::health::model::Band;
use serde_json::Value;

/// A reason code in words (the detail carries the numbers).
pub fn reason_words(code: &str) -> String {
    let known = match code {
        "usage_down_30d" => "Usage down over the last 30 days",
        "usage_up_30d" => "Usage up over the last 30 days",
        "milestone_overdue" => "Milestone overdue",
        "milestones_on_track" => "Milestones on track",
        "slow_time_to_value" => "Slow time to value",
        "burst_then_gap" => "A burst of use, then nothing",
        "inactive" => "No recent activity",
        "recent_use" => "Used recently",
        "last_use_late" => "Last use is long ago",
        "activity_days_low" => "Few active days",
        "activity_days_high" => "Many active days",
        "consistent_usage" => "Consistent usage",
        "inconsistent_usage" => "Inconsistent usage",
        "high_ticket_rate" => "Many support tickets per user",
        "tickets_rising" => "Support tickets rising",
        "high_reopen_rate" => "Many reopened tickets",
        "escalations" => "Escalations",
        "low_friction" => "Little support friction",
        "high_adoption" => "High adoption",
        "low_active_users" => "Few active users",
        "key_feature_not_adopted" => "Key feature not adopted",
        "expansion_signal" => "Expansion signal",
        "other_factors" => "Other factors",
        _ => "",
    };
    if known.is_empty() {
        humanize(code)
    } else {
        known.to_owned()
    }
}

/// Days from `today` to a `YYYY-MM-DD` date (negative when it has passed).
pub fn days_to(date: Option<&str>, today: chrono::NaiveDate) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(date?, "%Y-%m-%d").ok()?;
    Some((d - today).num_days())
}

/// `snake_case` -> "Snake case".
pub fn humanize(s: &str) -> String {
    let spaced = s.replace('_', " ");
    let mut c = spaced.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The top reason of a risk row (`code: detail`), in words.
pub fn top_reason(reasons: &[String]) -> String {
    match reasons.first() {
        None => String::new(),
        Some(r) => match r.split_once(": ") {
            Some((code, detail)) => format!("{}: {detail}", reason_words(code)),
            None => reason_words(r),
        },
    }
}

pub fn band_word(b: Band) -> &'static str {
    match b {
        Band::Red => "At risk",
        Band::Yellow => "Watch",
        Band::Green => "Healthy",
    }
}

/// A usage response's series (`series[].start`, `quantity`) as chart points, each
/// labelled for its granularity.
pub fn usage_points(resp: &Value, granularity: &str) -> Vec<Point> {
    resp["series"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| Point {
            label: window_label(p["start"].as_str().unwrap_or_default(), granularity),
            value: decimal(&p["quantity"]),
        })
        .collect()
}

/// Per meter: the series of a `group_by=meter` response laid on the windows of the
/// ungrouped one (which lists every window, zeros included).
/// Each meter's total in the window by stage (`requested`, `delivered`, `billed`),
/// from the usage grouped by meter and stage; meters in name order.
pub fn usage_by_stage(grouped: &Value) -> Vec<(String, [f64; 3])> {
    let mut meters: std::collections::BTreeMap<String, [f64; 3]> = Default::default();
    for p in grouped["series"].as_array().into_iter().flatten() {
        let (Some(meter), Some(stage)) = (p["meter"].as_str(), p["stage"].as_str()) else {
            continue;
        };
        let Some(i) = domain::ids::Stage::ALL
            .iter()
            .position(|s| s.as_str() == stage)
        else {
            continue;
        };
        meters.entry(meter.to_owned()).or_default()[i] += decimal(&p["quantity"]);
    }
    meters.into_iter().collect()
}

pub fn usage_by_meter(
    all: &Value,
    grouped: &Value,
    granularity: &str,
) -> Vec<(String, Vec<Point>)> {
    let windows: Vec<&str> = all["series"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["start"].as_str())
        .collect();
    let mut meters: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for p in grouped["series"].as_array().into_iter().flatten() {
        let (Some(meter), Some(start)) = (p["meter"].as_str(), p["start"].as_str()) else {
            continue;
        };
        let Some(i) = windows.iter().position(|w| *w == start) else {
            continue;
        };
        let row = meters
            .entry(meter.to_owned())
            .or_insert_with(|| vec![0.0; windows.len()]);
        if let Some(slot) = row.get_mut(i) {
            *slot += decimal(&p["quantity"]);
        }
    }
    meters
        .into_iter()
        .map(|(m, vals)| {
            let pts = windows
                .iter()
                .zip(vals)
                .map(|(w, v)| Point {
                    label: window_label(w, granularity),
                    value: v,
                })
                .collect();
            (m, pts)
        })
        .collect()
}

/// `2026-11-03T14:00:00Z` -> "11-03 14h" (hour), "2026-11-03" (day), "2026-11" (month).
pub fn window_label(start: &str, granularity: &str) -> String {
    match granularity {
        "hour" => match (start.get(5..10), start.get(11..13)) {
            (Some(d), Some(h)) => format!("{d} {h}h"),
            _ => start.to_owned(),
        },
        "month" => start.get(..7).unwrap_or(start).to_owned(),
        _ => start.get(..10).unwrap_or(start).to_owned(),
    }
}

/// A decimal the API sends as a string (or a number).
pub fn decimal(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0.0),
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// One entitlement row of `GET /v1/accounts/{account}/entitlements`.
#[derive(Debug, Clone, PartialEq)]
pub struct EntitlementRow {
    pub id: String,
    pub meters: String,
    pub used: f64,
    pub limit: f64,
    pub percent: f64,
    pub projected: f64,
    pub period: String,
    /// Why there is no balance (not in force, or too large to count).
    pub note: Option<String>,
}

pub fn entitlement_rows(resp: &Value) -> Vec<EntitlementRow> {
    resp["entitlements"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let meters = match &e["meters"] {
                Value::Array(a) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => e["meter"].as_str().unwrap_or_default().to_owned(),
            };
            let b = &e["balance"];
            let period = match (b["period"]["start"].as_str(), b["period"]["end"].as_str()) {
                (Some(s), Some(t)) => format!(
                    "{} to {}",
                    s.get(..10).unwrap_or(s),
                    t.get(..10).unwrap_or(t)
                ),
                _ => String::new(),
            };
            let note = if b.is_null() {
                Some(
                    e["balance_error"]
                        .as_str()
                        .unwrap_or("not in force today")
                        .to_owned(),
                )
            } else {
                None
            };
            EntitlementRow {
                id: e["id"].as_str().unwrap_or_default().to_owned(),
                meters,
                used: decimal(&b["used"]),
                limit: decimal(&b["limit"]),
                percent: decimal(&b["percent"]),
                projected: decimal(&b["projected"]),
                period,
                note,
            }
        })
        .collect()
}

/// Where an account stands on one of its segment's milestones.
#[derive(Debug, Clone, PartialEq)]
pub enum MilestoneState {
    /// Reached on this day, this many days after onboarding.
    Reached { on: String, days: i64 },
    /// Past its due day without it, by this many days.
    Overdue { days_behind: i64 },
    /// Not reached yet, due in this many days.
    Due { in_days: i64 },
    /// Not reached and the account has no onboarding date to count from.
    Pending,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MilestoneRow {
    pub name: String,
    pub meter: String,
    pub due_days: i64,
    pub state: MilestoneState,
}

/// The account's milestones: its segment's (from `GET /v1/health/config`, resolved)
/// against the days its latest health record says it reached them.
pub fn milestone_rows(
    config: &Value,
    segment: &str,
    onboarded: Option<chrono::NaiveDate>,
    reached: &Value,
    today: chrono::NaiveDate,
) -> Vec<MilestoneRow> {
    let parse = |v: &Value| {
        v.as_str()
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    };
    config["config"]["segments"][segment]["milestones"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let name = m["name"].as_str().unwrap_or_default().to_owned();
            let due_days = m["due_days"].as_i64().unwrap_or(0);
            let state = match (parse(&reached[&name]), onboarded) {
                (Some(on), o) => MilestoneState::Reached {
                    on: on.to_string(),
                    days: o.map_or(0, |o| (on - o).num_days().max(0)),
                },
                (None, Some(o)) => {
                    let age = (today - o).num_days();
                    if age > due_days {
                        MilestoneState::Overdue {
                            days_behind: age - due_days,
                        }
                    } else {
                        MilestoneState::Due {
                            in_days: due_days - age,
                        }
                    }
                }
                (None, None) => MilestoneState::Pending,
            };
            MilestoneRow {
                name,
                meter: m["meter"].as_str().unwrap_or_default().to_owned(),
                due_days,
                state,
            }
        })
        .collect()
}

/// The account's HubSpot company page, when its CRM ids say where it is; only
/// `https` addresses are linked (a `crm_ids.url` is whatever the tenant stored).
pub fn crm_link(profile: &Value) -> Option<String> {
    let ids: std::collections::BTreeMap<String, String> = profile["crm_ids"]
        .as_object()?
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect();
    domain::limits::crm_url(&ids).filter(|u| u.starts_with("https://"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reasons_read_as_words_with_their_numbers() {
        assert_eq!(
            top_reason(&["usage_down_30d: api_calls −42 % vs prior 30 d".into()]),
            "Usage down over the last 30 days: api_calls −42 % vs prior 30 d"
        );
        assert_eq!(reason_words("brand_new_code"), "Brand new code");
        assert_eq!(top_reason(&[]), "");
    }

    #[test]
    fn grouped_usage_is_laid_on_every_window_with_zeros_where_a_meter_is_silent() {
        let all = json!({"series": [
            {"start": "2026-11-01T00:00:00Z", "quantity": "5"},
            {"start": "2026-11-02T00:00:00Z", "quantity": "0"},
            {"start": "2026-11-03T00:00:00Z", "quantity": "7"}]});
        let grouped = json!({"series": [
            {"start": "2026-11-01T00:00:00Z", "meter": "api_calls", "quantity": "5"},
            {"start": "2026-11-03T00:00:00Z", "meter": "api_calls", "quantity": "3"},
            {"start": "2026-11-03T00:00:00Z", "meter": "seats", "quantity": "4"}]});
        let m = usage_by_meter(&all, &grouped, "day");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0, "api_calls");
        let v: Vec<f64> = m[0].1.iter().map(|p| p.value).collect();
        assert_eq!(v, vec![5.0, 0.0, 3.0]);
        assert_eq!(m[1].1[2].label, "2026-11-03");
    }

    #[test]
    fn usage_is_totalled_per_meter_and_stage_over_the_window() {
        let grouped = serde_json::json!({"series": [
            {"start": "2026-11-01T00:00:00Z", "meter": "api_calls", "stage": "requested", "quantity": "10"},
            {"start": "2026-11-02T00:00:00Z", "meter": "api_calls", "stage": "requested", "quantity": "5.5"},
            {"start": "2026-11-02T00:00:00Z", "meter": "api_calls", "stage": "billed", "quantity": "3"},
            {"start": "2026-11-02T00:00:00Z", "meter": "seats", "stage": "delivered", "quantity": "2"},
            {"start": "2026-11-02T00:00:00Z", "meter": "seats", "stage": "elsewhere", "quantity": "9"},
        ]});
        assert_eq!(
            usage_by_stage(&grouped),
            vec![
                ("api_calls".to_owned(), [15.5, 0.0, 3.0]),
                ("seats".to_owned(), [0.0, 2.0, 0.0]),
            ]
        );
    }

    #[test]
    fn days_to_renewal_count_from_today_and_past_dates_are_negative() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        assert_eq!(days_to(Some("2027-01-01"), today), Some(32));
        assert_eq!(days_to(Some("2026-11-20"), today), Some(-10));
        assert_eq!(days_to(Some("soon"), today), None);
        assert_eq!(days_to(None, today), None);
    }

    #[test]
    fn windows_are_labelled_for_their_granularity() {
        assert_eq!(window_label("2026-11-03T14:00:00Z", "hour"), "11-03 14h");
        assert_eq!(window_label("2026-11-03T00:00:00Z", "day"), "2026-11-03");
        assert_eq!(window_label("2026-11-01T00:00:00Z", "month"), "2026-11");
        assert_eq!(window_label("x", "hour"), "x");
    }

    #[test]
    fn an_entitlement_shows_its_balance_or_why_it_has_none() {
        let r = entitlement_rows(&json!({"entitlements": [
            {"id": "e1", "meters": ["api_calls"], "balance": {"used": "25", "limit": "100",
              "percent": "25.00", "projected": "60",
              "period": {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}}},
            {"id": "e2", "meters": ["seats"], "balance": null}]}));
        assert_eq!(r[0].percent, 25.0);
        assert_eq!(r[0].period, "2026-11-01 to 2026-12-01");
        assert_eq!(r[1].note.as_deref(), Some("not in force today"));
    }

    #[test]
    fn milestones_read_as_reached_overdue_or_due_from_the_config_and_the_record() {
        let cfg = serde_json::json!({"config": {"segments": {"smb": {"milestones": [
            {"name": "first", "meter": "api_calls", "quantity": 1, "due_days": 7},
            {"name": "second", "meter": "api_calls", "quantity": 9, "due_days": 30},
            {"name": "third", "meter": "seats", "quantity": 9, "due_days": 60},
        ]}}}});
        let reached = serde_json::json!({"first": "2026-01-04"});
        let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let rows = milestone_rows(
            &cfg,
            "smb",
            Some(d("2026-01-01")),
            &reached,
            d("2026-02-10"),
        );
        assert_eq!(
            rows.iter().map(|r| r.state.clone()).collect::<Vec<_>>(),
            [
                MilestoneState::Reached {
                    on: "2026-01-04".into(),
                    days: 3
                },
                MilestoneState::Overdue { days_behind: 10 },
                MilestoneState::Due { in_days: 20 },
            ]
        );
        assert!(milestone_rows(&cfg, "enterprise", None, &reached, d("2026-02-10")).is_empty());
    }

    #[test]
    fn the_hubspot_link_needs_a_portal_and_a_company_and_only_https_is_linked() {
        let p = |ids: Value| serde_json::json!({"crm_ids": ids});
        assert_eq!(
            crm_link(&p(
                serde_json::json!({"hubspot_portal_id": "42", "hubspot_company_id": "7"})
            ))
            .as_deref(),
            Some("https://app.hubspot.com/contacts/42/company/7")
        );
        assert_eq!(
            crm_link(&p(serde_json::json!({"hubspot_company_id": "7"}))),
            None
        );
        assert_eq!(
            crm_link(&p(serde_json::json!({"url": "javascript:alert(1)"}))),
            None
        );
    }
}
