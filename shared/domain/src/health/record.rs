//! What a score run stores per account and day, and the risk / opportunity alerts a
//! new record raises compared with the account's previous one. Pure.

use super::config::HealthConfig;
use super::model::{Band, Baseline, Component, ComponentValue, Measurement, Reason, Scored};
use crate::alert::{Alert, AlertKind, Severity};
use crate::ids::{AccountId, Segment, TenantId};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Scored,
    InsufficientData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentScore {
    pub as_of: NaiveDate,
    pub score: f64,
    pub band: Band,
}

/// Once-per-change memory of alerts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// A drop alert was raised and the score has not recovered since.
    #[serde(default)]
    pub drop_alerted: bool,
    /// An expansion signal was raised and is still present.
    #[serde(default)]
    pub expansion_alerted: bool,
}

/// Who the account is (from its profile), carried on records for listings and alerts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AccountInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onboarding_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hubspot_company_id: Option<String>,
    /// The HubSpot portal the company lives in: the write-back's message group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hubspot_portal_id: Option<String>,
    /// The company owner's HubSpot owner id: plays assign their tasks to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hubspot_owner_id: Option<String>,
    /// The account's CRM record (HubSpot company), linked from its alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_url: Option<String>,
    /// When its contract renews ([`crate::account::AccountProfile::renewal`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_date: Option<NaiveDate>,
}

/// The baseline a record was normalised against (its segment's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineUsed {
    pub segment: Segment,
    pub population: usize,
    pub metrics: BTreeMap<super::model::Metric, super::model::MetricBaseline>,
}

impl From<&Baseline> for BaselineUsed {
    fn from(b: &Baseline) -> Self {
        Self {
            segment: b.segment,
            population: b.population,
            metrics: b.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthRecord {
    pub account: AccountId,
    pub segment: Segment,
    pub as_of: NaiveDate,
    pub state: HealthState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<Band>,
    #[serde(default)]
    pub components: BTreeMap<Component, ComponentValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineUsed>,
    #[serde(default)]
    pub reasons: Vec<Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insufficient_reason: Option<String>,
    #[serde(default)]
    pub expansion_signal: bool,
    #[serde(default)]
    pub milestones_reached: BTreeMap<String, NaiveDate>,
    /// Scores of the last days (newest last), for drop detection and sparklines.
    #[serde(default)]
    pub recent: Vec<RecentScore>,
    #[serde(default)]
    pub alert_state: AlertState,
    #[serde(default)]
    pub info: AccountInfo,
    pub computed_at: DateTime<Utc>,
}

/// Days of scores kept on the latest record.
pub const RECENT_DAYS: i64 = 35;

/// Builds today's record from a measurement, its score (if scoreable) and the
/// previous latest record.
pub fn build(
    m: &Measurement,
    scored: Option<Scored>,
    baseline: Option<&Baseline>,
    info: AccountInfo,
    as_of: NaiveDate,
    previous: Option<&HealthRecord>,
    now: DateTime<Utc>,
) -> HealthRecord {
    let mut recent: Vec<RecentScore> = previous
        .map(|p| p.recent.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.as_of < as_of && r.as_of >= as_of - Duration::days(RECENT_DAYS))
        .collect();
    let (state, score, band, components, reasons, expansion) = match scored {
        Some(s) => {
            recent.push(RecentScore {
                as_of,
                score: s.score,
                band: s.band,
            });
            (
                HealthState::Scored,
                Some(s.score),
                Some(s.band),
                s.components,
                s.reasons,
                s.expansion,
            )
        }
        None => (
            HealthState::InsufficientData,
            None,
            None,
            BTreeMap::new(),
            Vec::new(),
            false,
        ),
    };
    HealthRecord {
        account: m.account.clone(),
        segment: m.segment,
        as_of,
        state,
        score,
        band,
        components,
        baseline: baseline.filter(|_| score.is_some()).map(BaselineUsed::from),
        reasons,
        insufficient_reason: m.insufficient.clone(),
        expansion_signal: expansion,
        milestones_reached: m.signals.achieved.clone(),
        recent,
        alert_state: previous.map(|p| p.alert_state.clone()).unwrap_or_default(),
        info,
        computed_at: now,
    }
}

/// Decides the alerts today's record raises and updates its once-per-change state.
/// Alert keys name the account, the day and the kind, so a re-run of the same day
/// produces the same keys (notify publishes each once).
pub fn decide_alerts(
    tenant: &TenantId,
    rec: &mut HealthRecord,
    cfg: &HealthConfig,
    now: DateTime<Utc>,
) -> Vec<Alert> {
    let mut out = Vec::new();
    let (Some(score), Some(band)) = (rec.score, rec.band) else {
        return out;
    };
    let earlier: Vec<&RecentScore> = rec.recent.iter().filter(|r| r.as_of < rec.as_of).collect();
    let reasons: Vec<String> = rec
        .reasons
        .iter()
        .filter(|r| r.impact < 0.0)
        .take(5)
        .map(|r| format!("{}: {}", r.code, r.detail))
        .collect();
    // Band downgrade against the last scored day.
    if let Some(last) = earlier.last() {
        if band < last.band {
            out.push(alert(
                tenant,
                rec,
                AlertKind::Risk,
                "band_downgrade",
                if band == Band::Red {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                format!(
                    "health {} -> {} (score {} -> {})",
                    last.band.as_str(),
                    band.as_str(),
                    last.score,
                    score
                ),
                &reasons,
                last.score,
                now,
            ));
        }
    }
    // First scored day already red: the baseline, not a change. Informational, so
    // the alert policy holds it for the segment's digest ("N accounts start red")
    // instead of paging; a tenant's first run is every account's first score.
    if earlier.is_empty() && band == Band::Red {
        out.push(alert(
            tenant,
            rec,
            AlertKind::Risk,
            "starts_red",
            Severity::Info,
            format!("starts red on its first score ({score}): a baseline, not a change"),
            &reasons,
            score,
            now,
        ));
    }
    // Drop of N points against the best score of the window.
    let window_start = rec.as_of - Duration::days(cfg.drop_window_days as i64);
    let best = earlier
        .iter()
        .filter(|r| r.as_of >= window_start)
        .map(|r| r.score)
        .fold(f64::NAN, f64::max);
    let dropped = best.is_finite() && best - score >= cfg.drop_alert_points;
    if dropped && !rec.alert_state.drop_alerted {
        out.push(alert(
            tenant,
            rec,
            AlertKind::Risk,
            "health_drop",
            Severity::Warning,
            format!(
                "health score fell {:.1} points in {} days ({best} -> {score})",
                best - score,
                cfg.drop_window_days
            ),
            &reasons,
            best,
            now,
        ));
    }
    rec.alert_state.drop_alerted = dropped;
    // Expansion opportunity, once per episode.
    if rec.expansion_signal && !rec.alert_state.expansion_alerted {
        let why: Vec<String> = rec
            .reasons
            .iter()
            .filter(|r| r.impact >= 0.0)
            .take(5)
            .map(|r| format!("{}: {}", r.code, r.detail))
            .collect();
        out.push(alert(
            tenant,
            rec,
            AlertKind::Opportunity,
            "expansion_signal",
            Severity::Info,
            "expansion opportunity: high adoption, growing usage, low friction".into(),
            &why,
            score,
            now,
        ));
    }
    rec.alert_state.expansion_alerted = rec.expansion_signal;
    out
}

#[allow(clippy::too_many_arguments)]
fn alert(
    tenant: &TenantId,
    rec: &HealthRecord,
    kind: AlertKind,
    code: &str,
    severity: Severity,
    headline: String,
    reasons: &[String],
    before: f64,
    now: DateTime<Utc>,
) -> Alert {
    let dec = |x: f64| Decimal::from_f64_retain((x * 10.0).round() / 10.0).unwrap_or_default();
    let mut lines = vec![headline];
    lines.extend(reasons.iter().cloned());
    Alert {
        key: format!("{}:{}:{}:{}", kind.as_str(), rec.account, rec.as_of, code),
        kind,
        code: code.to_owned(),
        severity,
        tenant: tenant.clone(),
        account: rec.account.clone(),
        account_name: rec.info.name.clone(),
        segment: rec.segment,
        owner: rec.info.owner.clone(),
        crm_url: rec.info.crm_url.clone(),
        entitlement: None,
        meters: Vec::new(),
        threshold: None,
        period_start: rec.as_of,
        period_end: rec.as_of + Duration::days(1),
        time_zone: "UTC".into(),
        used: dec(rec.score.unwrap_or(0.0)),
        limit: Decimal::from(100),
        percent: dec(rec.score.unwrap_or(0.0)),
        projected: dec(before),
        late: false,
        raised_at: now,
        reasons: lines,
        detail: None,
    }
}
