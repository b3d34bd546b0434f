//! Alerts: what the rollup (and later score and audit) raise on the alerts queue, and
//! how notify renders them for email and for machines. Pure.

use crate::ids::{AccountId, MeterName, Segment, TenantId};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Alerts kept per account for the account page (the newest ones).
pub const RECENT_ALERTS_KEPT: usize = 50;
/// How long an account's alerts are kept (a TTL) and answered.
pub const ALERT_HISTORY_DAYS: i64 = 90;

impl Alert {
    /// Whether the alert is still within the account history's retention at `now`.
    pub fn kept_at(&self, now: DateTime<Utc>) -> bool {
        self.raised_at + chrono::Duration::days(ALERT_HISTORY_DAYS) > now
    }

    /// The TTL (Unix seconds) of the alert in an account's history.
    pub fn history_expires_at(&self) -> i64 {
        (self.raised_at + chrono::Duration::days(ALERT_HISTORY_DAYS)).timestamp()
    }
}

/// The account an alert names when a finding is about a whole definition.
pub const TENANT_WIDE: &str = "tenant-wide";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Limit,
    Risk,
    DataQuality,
    /// An expansion signal from health scoring: good news for the account team.
    Opportunity,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Limit => "limit",
            AlertKind::Risk => "risk",
            AlertKind::DataQuality => "data_quality",
            AlertKind::Opportunity => "opportunity",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One alert. `key` names it uniquely: notify publishes each key at most once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub key: String,
    pub kind: AlertKind,
    /// `threshold_crossed`, `negative_balance`, `negative_usage`, ...
    pub code: String,
    pub severity: Severity,
    pub tenant: TenantId,
    pub account: AccountId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    pub segment: Segment,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<String>,
    #[serde(default)]
    pub meters: Vec<MeterName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    pub period_start: NaiveDate,
    /// Exclusive.
    pub period_end: NaiveDate,
    pub time_zone: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub used: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub limit: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub percent: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub projected: Decimal,
    /// Raised after its period had ended (late events).
    pub late: bool,
    pub raised_at: DateTime<Utc>,
    /// Health alerts: the headline and the reason codes with their numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Data-quality and governance alerts: what was found, in one sentence (expected
    /// range, observed, since when); rendered instead of the usage lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// An alert rendered for people (email) and machines (JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// ASCII, under 100 characters (SNS's rule for subjects).
    pub subject: String,
    pub body: String,
    pub json: serde_json::Value,
}

fn who(a: &Alert) -> String {
    match &a.account_name {
        Some(n) => format!("{n} ({})", a.account),
        None => a.account.to_string(),
    }
}

fn meters(a: &Alert) -> String {
    a.meters
        .iter()
        .map(MeterName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn headline(a: &Alert) -> String {
    if a.kind == AlertKind::DataQuality && a.detail.is_some() {
        return format!("{} {} ({})", meters(a), a.code.replace('_', " "), who(a));
    }
    let what = match (a.code.as_str(), a.threshold) {
        ("threshold_crossed", Some(t)) => format!("reached {t}% of its {} limit", meters(a)),
        ("negative_balance", _) => format!("is over its {} limit", meters(a)),
        ("negative_usage", _) => format!("has negative {} usage", meters(a)),
        (code, _) => code.replace('_', " "),
    };
    format!("{} {what}", who(a))
}

fn next_step(a: &Alert) -> &'static str {
    match (a.code.as_str(), a.threshold) {
        ("spike", _) => "Look for a retry loop, a replayed import or a duplicate sender before this usage reaches invoices.",
        ("drop" | "silence" | "usage_gap", _) => {
            "Check the sending integration for this meter; if the customer paused or churned, tell the account owner."
        }
        ("rollup_drift", _) => "Do not bill from this window until its rollup is rebuilt from the ledger.",
        (code, _) if code.starts_with("definition_") => {
            "Review the change in the definition's change log (GET /v1/definitions/{meter}/changes)."
        }
        ("negative_usage", _) => {
            "Check the corrections sent for this account: usage cannot be below zero."
        }
        ("negative_balance", _) => {
            "Confirm the overage with the customer and raise an expansion or overage invoice."
        }
        (_, Some(t)) if t >= 100 => {
            "Contact the customer about an upgrade before the period ends; review overage terms."
        }
        _ => "Reach out to discuss their usage trend and whether the plan still fits.",
    }
}

fn truncate(s: &str, max: usize) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.chars().count() <= max {
        return s;
    }
    let mut out: String = s.chars().take(max - 3).collect();
    out.push_str("...");
    out
}

/// What subscribers receive as the alert's JSON: the fields every alert has, plus only
/// those of its own kind (a definition notice carries no usage numbers, a risk alert
/// its score and reasons rather than a "limit").
pub fn wire(a: &Alert) -> serde_json::Value {
    use serde_json::{json, Value};
    let mut o = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            o.insert(k.to_owned(), v);
        }
    };
    put("key", json!(a.key));
    put("kind", json!(a.kind));
    put("code", json!(a.code));
    put("severity", json!(a.severity));
    put("tenant", json!(a.tenant));
    put("account", json!(a.account));
    put("account_name", json!(a.account_name));
    put("segment", json!(a.segment));
    put("owner", json!(a.owner));
    put("crm_url", json!(a.crm_url));
    put("raised_at", json!(a.raised_at));
    let period = json!({"start": a.period_start, "end": a.period_end, "time_zone": a.time_zone});
    match (a.kind, &a.detail) {
        (AlertKind::Risk | AlertKind::Opportunity, _) => {
            put("scored_on", json!(a.period_start));
            put("score", json!(a.used.to_string()));
            put("previous_score", json!(a.projected.to_string()));
            put("reasons", json!(a.reasons));
        }
        (AlertKind::DataQuality, Some(detail)) => {
            if !a.meters.is_empty() {
                put("meters", json!(a.meters));
            }
            put("detail", json!(detail));
            if !a.code.starts_with("definition_") {
                put("period", period);
            }
        }
        (AlertKind::Limit | AlertKind::DataQuality, _) => {
            put("entitlement", json!(a.entitlement));
            put("meters", json!(a.meters));
            put("threshold", json!(a.threshold));
            put("period", period);
            put("used", json!(a.used.to_string()));
            put("limit", json!(a.limit.to_string()));
            put("percent", json!(a.percent.to_string()));
            put("projected", json!(a.projected.to_string()));
            put("late", json!(a.late));
        }
    }
    Value::Object(o)
}

pub fn render(a: &Alert) -> Rendered {
    if matches!(a.kind, AlertKind::Risk | AlertKind::Opportunity) {
        return render_health(a);
    }
    let period = format!(
        "{} to {}",
        a.period_start,
        a.period_end.pred_opt().unwrap_or(a.period_end)
    );
    let late = if a.late { " (late, closed period)" } else { "" };
    let subject = truncate(
        &format!(
            "[{}] {} - period {}{late}",
            a.severity.as_str(),
            headline(a),
            a.period_start.format("%Y-%m-%d")
        ),
        99,
    );
    let mut body = String::new();
    body.push_str(&format!("{}.\n\n", headline(a)));
    if let (AlertKind::DataQuality, Some(detail)) = (a.kind, &a.detail) {
        body.push_str(&format!("{detail}.\n\n"));
        body.push_str(&format!(
            "Owner:       {}\n",
            a.owner.as_deref().unwrap_or("unassigned")
        ));
        body.push_str(&format!("\nSuggested next step: {}\n", next_step(a)));
        body.push_str(&format!("\nAlert key: {}\n", a.key));
        let json = serde_json::json!({
            "subject": subject,
            "suggested_next_step": next_step(a),
            "alert": wire(a),
        });
        return Rendered {
            subject,
            body,
            json,
        };
    }
    body.push_str(&format!("Account:     {}\n", who(a)));
    body.push_str(&format!("Segment:     {}\n", a.segment));
    if let Some(e) = &a.entitlement {
        body.push_str(&format!("Entitlement: {e}\n"));
    }
    body.push_str(&format!("Period:      {period} ({}){late}\n", a.time_zone));
    body.push_str(&format!(
        "Usage:       {} of {} ({}%)\n",
        a.used, a.limit, a.percent
    ));
    body.push_str(&format!(
        "Trend:       {} projected by the end of the period at the current rate\n",
        a.projected
    ));
    body.push_str(&format!(
        "Owner:       {}\n",
        a.owner.as_deref().unwrap_or("unassigned")
    ));
    if let Some(url) = &a.crm_url {
        body.push_str(&format!("CRM record:  {url}\n"));
    }
    body.push_str(&format!("\nSuggested next step: {}\n", next_step(a)));
    body.push_str(&format!("\nAlert key: {}\n", a.key));
    let json = serde_json::json!({
        "subject": subject,
        "suggested_next_step": next_step(a),
        "alert": wire(a),
    });
    Rendered {
        subject,
        body,
        json,
    }
}

/// Health alerts (risk and opportunity): score, reasons, owner.
fn render_health(a: &Alert) -> Rendered {
    let headline = a
        .reasons
        .first()
        .cloned()
        .unwrap_or_else(|| a.code.replace('_', " "));
    let subject = truncate(
        &format!(
            "[{}] {} {}: {}",
            a.severity.as_str(),
            a.kind.as_str(),
            who(a),
            headline
        ),
        99,
    );
    let mut body = format!("{} - {headline}.\n\n", who(a));
    body.push_str(&format!("Account:     {}\n", who(a)));
    body.push_str(&format!("Segment:     {}\n", a.segment));
    body.push_str(&format!("Scored on:   {}\n", a.period_start));
    body.push_str(&format!("Score:       {} (was {})\n", a.used, a.projected));
    body.push_str(&format!(
        "Owner:       {}\n",
        a.owner.as_deref().unwrap_or("unassigned")
    ));
    if let Some(url) = &a.crm_url {
        body.push_str(&format!("CRM record:  {url}\n"));
    }
    if a.reasons.len() > 1 {
        body.push_str("\nWhy:\n");
        for r in &a.reasons[1..] {
            body.push_str(&format!("  - {r}\n"));
        }
    }
    let step = match a.kind {
        AlertKind::Opportunity => {
            "Talk to the customer about expanding: usage is growing with low friction."
        }
        _ => "Reach out this week: review the reasons above with the customer and agree a recovery plan.",
    };
    body.push_str(&format!("\nSuggested next step: {step}\n"));
    body.push_str(&format!("\nAlert key: {}\n", a.key));
    let json = serde_json::json!({
        "subject": subject,
        "suggested_next_step": step,
        "alert": wire(a),
    });
    Rendered {
        subject,
        body,
        json,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> Alert {
        Alert {
            key: "limit:ent-1:2026-11-01:threshold:80".into(),
            kind: AlertKind::Limit,
            code: "threshold_crossed".into(),
            severity: Severity::Warning,
            tenant: TenantId::parse("dev").unwrap(),
            account: AccountId::parse("acme").unwrap(),
            account_name: Some("Acme Corp".into()),
            segment: Segment::MidMarket,
            owner: Some("csm@example.com".into()),
            crm_url: Some("https://app.hubspot.com/contacts/1/company/5123".into()),
            entitlement: Some("ent-1".into()),
            meters: vec![MeterName::parse("api_calls").unwrap()],
            threshold: Some(80),
            period_start: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            period_end: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            time_zone: "Europe/Berlin".into(),
            used: Decimal::from(85),
            limit: Decimal::from(100),
            percent: Decimal::from(85),
            projected: Decimal::new(10625, 2),
            late: false,
            raised_at: DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            reasons: Vec::new(),
            detail: None,
        }
    }

    #[test]
    fn a_data_quality_alert_renders_its_explanation_instead_of_usage_lines() {
        let mut a = sample();
        a.kind = AlertKind::DataQuality;
        a.code = "silence".into();
        a.severity = Severity::Critical;
        a.detail = Some("api_calls of account acme: no events since 2026-11-25 07:00 UTC (3 hour(s)), expected about 30 in that time".into());
        let r = render(&a);
        assert_eq!(
            r.subject,
            "[critical] api_calls silence (Acme Corp (acme)) - period 2026-11-01"
        );
        assert!(r.body.contains("no events since 2026-11-25 07:00 UTC"));
        assert!(!r.body.contains("Usage:"));
        assert!(r.body.contains("Check the sending integration"));
    }

    #[test]
    fn a_threshold_alert_renders_subject_and_body_exactly() {
        let r = render(&sample());
        assert_eq!(
            r.subject,
            "[warning] Acme Corp (acme) reached 80% of its api_calls limit - period 2026-11-01"
        );
        assert_eq!(
            r.body,
            "Acme Corp (acme) reached 80% of its api_calls limit.\n\n\
Account:     Acme Corp (acme)\n\
Segment:     mid_market\n\
Entitlement: ent-1\n\
Period:      2026-11-01 to 2026-11-30 (Europe/Berlin)\n\
Usage:       85 of 100 (85%)\n\
Trend:       106.25 projected by the end of the period at the current rate\n\
Owner:       csm@example.com\n\
CRM record:  https://app.hubspot.com/contacts/1/company/5123\n\
\nSuggested next step: Reach out to discuss their usage trend and whether the plan still fits.\n\
\nAlert key: limit:ent-1:2026-11-01:threshold:80\n"
        );
        assert_eq!(r.json["alert"]["used"], "85");
        assert_eq!(r.json["alert"]["kind"], "limit");
    }

    #[test]
    fn a_late_negative_balance_alert_says_so_and_keeps_the_subject_short() {
        let mut a = sample();
        a.code = "negative_balance".into();
        a.threshold = None;
        a.severity = Severity::Critical;
        a.late = true;
        a.account_name = Some("A very long customer name that goes on and on, Incorporated".into());
        let r = render(&a);
        assert!(
            r.subject.len() < 100 && r.subject.is_ascii(),
            "{}",
            r.subject
        );
        assert!(r
            .subject
            .starts_with("[critical] A very long customer name"));
        assert!(r.body.contains("(late, closed period)"));
        assert!(r.body.contains("overage invoice"));
    }

    /// The fields of the JSON alert a subscriber receives.
    fn fields(r: &Rendered) -> Vec<String> {
        r.json["alert"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_definition_notice_carries_no_usage_numbers_or_period() {
        let mut a = sample();
        a.kind = AlertKind::DataQuality;
        a.code = "definition_created".into();
        a.severity = Severity::Info;
        a.entitlement = None;
        a.threshold = None;
        a.used = Decimal::ZERO;
        a.limit = Decimal::ZERO;
        a.percent = Decimal::ZERO;
        a.projected = Decimal::ZERO;
        a.detail = Some("definition 'api_calls' was created by key:ab12".into());
        let r = render(&a);
        let f = fields(&r);
        for absent in [
            "used",
            "limit",
            "percent",
            "projected",
            "period",
            "threshold",
        ] {
            assert!(!f.contains(&absent.to_owned()), "{absent} in {f:?}");
        }
        assert_eq!(
            r.json["alert"]["detail"],
            "definition 'api_calls' was created by key:ab12"
        );
        assert!(
            !r.body.contains("Usage:") && !r.body.contains("0 of 0"),
            "{}",
            r.body
        );
        assert!(r
            .body
            .contains("Review the change in the definition's change log"));
    }

    #[test]
    fn a_risk_alert_reads_as_a_score_with_reasons_and_links_the_crm_record() {
        let mut a = sample();
        a.kind = AlertKind::Risk;
        a.code = "band_downgrade".into();
        a.severity = Severity::Critical;
        a.used = Decimal::new(312, 1);
        a.projected = Decimal::new(640, 1);
        a.reasons = vec![
            "moved from green to red".into(),
            "usage down 62% over 30 days (segment median: down 3%)".into(),
        ];
        let r = render(&a);
        assert!(
            r.body.contains("Score:       31.2 (was 64.0)"),
            "{}",
            r.body
        );
        assert!(
            r.body
                .contains("CRM record:  https://app.hubspot.com/contacts/1/company/5123"),
            "{}",
            r.body
        );
        assert!(
            r.body.contains("  - usage down 62% over 30 days"),
            "{}",
            r.body
        );
        let f = fields(&r);
        for present in ["score", "previous_score", "reasons", "scored_on", "crm_url"] {
            assert!(
                f.contains(&present.to_owned()),
                "{present} missing from {f:?}"
            );
        }
        for absent in ["limit", "percent", "projected", "threshold", "entitlement"] {
            assert!(!f.contains(&absent.to_owned()), "{absent} in {f:?}");
        }
        assert_eq!(r.json["alert"]["score"], "31.2");
    }

    #[test]
    fn a_limit_alert_carries_its_usage_against_the_limit() {
        let r = render(&sample());
        assert_eq!(r.json["alert"]["used"], "85");
        assert_eq!(r.json["alert"]["limit"], "100");
        assert_eq!(r.json["alert"]["percent"], "85");
        assert_eq!(r.json["alert"]["threshold"], 80);
        assert_eq!(r.json["alert"]["period"]["time_zone"], "Europe/Berlin");
        assert!(!fields(&r).contains(&"reasons".to_owned()));
    }
}
