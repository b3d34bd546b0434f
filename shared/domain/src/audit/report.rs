//! The stored result of one audit run and its one-paragraph summary.

use super::anomaly::{Anomaly, FindingKind};
use super::kpi::{DriftMismatch, Kpis, NegativeBalance, Rate};
use crate::alert::Severity;
use crate::governance::Criticality;
use crate::ids::{AccountId, MeterName, TenantId};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Most findings kept in one stored report (the count is always exact).
pub const MAX_STORED_FINDINGS: usize = 500;

/// Something the audit wants a person to look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `spike`, `drop`, `silence`, `usage_gap`, `rollup_drift`, `negative_balance`,
    /// `quarantine_pending`.
    pub code: String,
    pub severity: Severity,
    pub meter: MeterName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    pub explanation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<Anomaly>,
}

impl Finding {
    /// A stable name for alert dedupe: one alert per finding and start.
    pub fn key(&self, tenant: &TenantId) -> String {
        format!(
            "dq:{tenant}:{}:{}:{}:{}",
            self.code,
            self.meter,
            self.account.as_ref().map_or("*", |a| a.as_str()),
            self.since
                .map_or_else(|| "-".to_owned(), |s| s.format("%Y%m%dT%H").to_string())
        )
    }
}

pub fn anomaly_finding(
    meter: &MeterName,
    account: Option<&AccountId>,
    owner: Option<&str>,
    criticality: Criticality,
    a: Anomaly,
) -> Finding {
    let subject = match account {
        Some(acc) => format!("{meter} of account {acc}"),
        None => format!("{meter} (all accounts)"),
    };
    let severity = match (a.kind, criticality) {
        (FindingKind::Silence, Criticality::Critical) => Severity::Critical,
        (FindingKind::Spike, _) if a.observed > 10.0 * a.expected.max(1.0) => Severity::Critical,
        _ => Severity::Warning,
    };
    Finding {
        code: a.kind.as_str().to_owned(),
        severity,
        meter: meter.clone(),
        account: account.cloned(),
        owner: owner.map(str::to_owned),
        since: Some(a.since),
        explanation: a.explain(&subject),
        anomaly: Some(a),
    }
}

/// KPIs of one definition, with its critical usage gaps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefinitionReport {
    pub meter: MeterName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub criticality: Criticality,
    pub kpis: Kpis,
    /// Critical definitions only: active accounts with an unexplained gap / active accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_gap_rate: Option<Rate>,
}

/// One audit run of one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    pub tenant: TenantId,
    pub run_at: DateTime<Utc>,
    /// Receipt days the counters cover (inclusive).
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub kpis: Kpis,
    /// (critical definition × active account) pairs with an unexplained gap versus the
    /// definition's expected cadence / all such pairs.
    pub critical_usage_gap_rate: Rate,
    /// Rollup items re-summed from the ledger sample / those that differ.
    pub drift_windows_checked: u64,
    pub drift: Vec<DriftMismatch>,
    pub negative_balances: Vec<NegativeBalance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlq_depth: Option<u64>,
    pub definitions: Vec<DefinitionReport>,
    pub findings_total: usize,
    pub findings: Vec<Finding>,
    pub summary: String,
}

/// A short paragraph for people: findings first, then the KPIs that matter.
pub fn summarize(r: &AuditReport) -> String {
    let mut parts = Vec::new();
    if r.findings_total == 0 {
        parts.push("No anomalies, gaps or drift.".to_owned());
    } else {
        let mut lead: Vec<String> = r
            .findings
            .iter()
            .take(3)
            .map(|f| format!("[{}] {}", f.severity.as_str(), f.explanation))
            .collect();
        if r.findings_total > 3 {
            lead.push(format!("and {} more", r.findings_total - 3));
        }
        parts.push(format!(
            "{} finding(s): {}.",
            r.findings_total,
            lead.join("; ")
        ));
    }
    let k = &r.kpis;
    parts.push(format!(
        "{} events received, {} counted; duplicates {}, unassociated {}, schema violations {}, defaulted timestamps {}, late {}, corrections {}, unknown-meter events {}.",
        k.events_received,
        k.events_counted,
        k.duplicate_rate.percent(),
        k.unassociated_rate.percent(),
        k.schema_violation_rate.percent(),
        k.timestamp_defaulted_rate.percent(),
        k.late_rate.percent(),
        k.correction_rate.percent(),
        k.unknown_meter_events,
    ));
    if k.quarantined_events > 0 || k.released_events > 0 {
        parts.push(format!(
            "{} event(s) of deleted or deprecated definitions held in quarantine, {} released to be counted.",
            k.quarantined_events, k.released_events,
        ));
    }
    parts.push(format!(
        "Critical usage gaps {}. Rollup drift: {} of {} sampled windows. Negative balances: {}. DLQ depth: {}.",
        r.critical_usage_gap_rate.percent(),
        r.drift.len(),
        r.drift_windows_checked,
        r.negative_balances.len(),
        r.dlq_depth.map_or_else(|| "unknown".to_owned(), |d| d.to_string()),
    ));
    parts.join(" ")
}

/// One KPI value per run, for trends (`GET /v1/audits`).
pub fn trend(reports: &[AuditReport]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    let series = |f: &dyn Fn(&AuditReport) -> serde_json::Value| -> serde_json::Value {
        serde_json::Value::Array(
            reports
                .iter()
                .map(|r| serde_json::json!({"run_at": r.run_at, "value": f(r)}))
                .collect(),
        )
    };
    out.insert(
        "duplicate_rate".into(),
        series(&|r| serde_json::json!(r.kpis.duplicate_rate.value)),
    );
    out.insert(
        "unassociated_rate".into(),
        series(&|r| serde_json::json!(r.kpis.unassociated_rate.value)),
    );
    out.insert(
        "timestamp_defaulted_rate".into(),
        series(&|r| serde_json::json!(r.kpis.timestamp_defaulted_rate.value)),
    );
    out.insert(
        "timestamp_skewed_rate".into(),
        series(&|r| serde_json::json!(r.kpis.timestamp_skewed_rate.value)),
    );
    out.insert(
        "late_rate".into(),
        series(&|r| serde_json::json!(r.kpis.late_rate.value)),
    );
    out.insert(
        "schema_violation_rate".into(),
        series(&|r| serde_json::json!(r.kpis.schema_violation_rate.value)),
    );
    out.insert(
        "unmapped_source_rate".into(),
        series(&|r| serde_json::json!(r.kpis.unmapped_source_rate.value)),
    );
    out.insert(
        "correction_rate".into(),
        series(&|r| serde_json::json!(r.kpis.correction_rate.value)),
    );
    out.insert(
        "critical_usage_gap_rate".into(),
        series(&|r| serde_json::json!(r.critical_usage_gap_rate.value)),
    );
    out.insert(
        "drift_windows".into(),
        series(&|r| serde_json::json!(r.drift.len())),
    );
    out.insert(
        "negative_balances".into(),
        series(&|r| serde_json::json!(r.negative_balances.len())),
    );
    out.insert(
        "dlq_depth".into(),
        series(&|r| serde_json::json!(r.dlq_depth)),
    );
    out.insert(
        "findings".into(),
        series(&|r| serde_json::json!(r.findings_total)),
    );
    serde_json::Value::Object(out)
}

pub use crate::alert::TENANT_WIDE;

fn decimal(v: f64) -> rust_decimal::Decimal {
    use rust_decimal::prelude::FromPrimitive;
    rust_decimal::Decimal::from_f64((v * 100.0).round() / 100.0).unwrap_or_default()
}

/// The data-quality alert for a finding (kind `data_quality`; notify dedupes by key).
pub fn finding_alert(
    tenant: &TenantId,
    f: &Finding,
    now: DateTime<Utc>,
) -> Option<crate::alert::Alert> {
    let account = match &f.account {
        Some(a) => a.clone(),
        None => AccountId::parse(TENANT_WIDE).ok()?,
    };
    let since = f.since.unwrap_or(now);
    let (observed, expected, high) = f.anomaly.as_ref().map_or((0.0, 0.0, 0.0), |a| {
        (a.observed, a.expected, a.expected_high)
    });
    Some(crate::alert::Alert {
        key: f.key(tenant),
        kind: crate::alert::AlertKind::DataQuality,
        code: f.code.clone(),
        severity: f.severity,
        tenant: tenant.clone(),
        account,
        account_name: None,
        segment: crate::ids::Segment::Unassigned,
        owner: f.owner.clone(),
        crm_url: None,
        entitlement: None,
        meters: vec![f.meter.clone()],
        threshold: None,
        period_start: since.date_naive(),
        period_end: now.date_naive().succ_opt().unwrap_or(now.date_naive()),
        time_zone: "UTC".into(),
        used: decimal(observed),
        limit: decimal(high),
        percent: rust_decimal::Decimal::ZERO,
        projected: decimal(expected),
        late: false,
        raised_at: now,
        detail: Some(f.explanation.clone()),
        reasons: Vec::new(),
    })
}
