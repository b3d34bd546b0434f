//! Threshold crossings, raised by the rollup after a chunk's parts are applied.
//!
//! For every entitlement that counts a meter the chunk touched, and every period its
//! events fall in, the period's usage is re-read with consistent reads *after* the
//! chunk's own parts committed. Of two concurrent chunks the later committer therefore
//! sees both contributions, so no crossing is missed. Each crossing is then claimed
//! with a conditional put of a marker keyed by (entitlement, period, crossing): the
//! marker, not the arithmetic, guarantees one alert per threshold and period, across
//! redeliveries and concurrent batches. The marker records the claiming chunk; if that
//! chunk crashes before the alert is queued, its redelivery (same chunk id) finds its
//! own unfinished marker and queues it (the ledger's own-claim rule, docs/adr/0001).

use crate::alert::{Alert, AlertKind, Severity};
use crate::entitlement::{
    balance, crossings, days_for, usage_in, Crossing, Entitlement, Overage, Period,
};
use crate::ids::{AccountId, MeterName, Stage, TenantId};
use crate::keys::Scope;
use crate::ports::{
    AccountStore, EntitlementStore, MarkerClaim, MarkerKind, MarkerStore, StoreError, UsageReader,
};
use crate::queue::EventQueue;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What a chunk counted, reduced to what entitlements need: per account, the
/// (meter, stage, hour) combinations it added usage to.
pub type Touched = BTreeMap<AccountId, BTreeSet<(MeterName, Stage, DateTime<Utc>)>>;

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("alerts could not be queued: {0}")]
    Queue(String),
    #[error("alert could not be encoded: {0}")]
    Encode(String),
    #[error("alert {0} is being queued by another delivery of this chunk; retry later")]
    InFlight(String),
    #[error(transparent)]
    Overflow(#[from] crate::entitlement::Overflow),
}

/// How long an unfinished alert marker is presumed to be worked on by the delivery
/// that claimed it. Shorter than any visibility timeout, far longer than a send.
pub const IN_FLIGHT_LEASE: chrono::Duration = chrono::Duration::seconds(15);

/// The rollup's view of entitlements and alerts.
#[derive(Clone)]
pub struct LimitWatch {
    pub entitlements: Arc<dyn EntitlementStore>,
    pub usage: Arc<dyn UsageReader>,
    pub accounts: Arc<dyn AccountStore>,
    pub markers: Arc<dyn MarkerStore>,
    pub alerts: Arc<dyn EventQueue>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitOutcome {
    pub entitlements_checked: usize,
    pub alerts_queued: usize,
    pub already_raised: usize,
    /// Entitlement periods skipped because their sums left the representable range
    /// (only data stored before limits were bounded can do that); logged as errors.
    pub out_of_range: usize,
}

pub fn alert_key(ent: &Entitlement, period: &Period, c: Crossing) -> String {
    format!("limit:{}:{}:{}", ent.id, period.key(), c.key())
}

fn severity(ent: &Entitlement, c: Crossing) -> (AlertKind, &'static str, Severity, Option<u32>) {
    match c {
        Crossing::Threshold(t) if t >= 100 => (
            AlertKind::Limit,
            "threshold_crossed",
            Severity::Critical,
            Some(t),
        ),
        Crossing::Threshold(t) if t >= 80 => (
            AlertKind::Limit,
            "threshold_crossed",
            Severity::Warning,
            Some(t),
        ),
        Crossing::Threshold(t) => (
            AlertKind::Limit,
            "threshold_crossed",
            Severity::Info,
            Some(t),
        ),
        Crossing::NegativeBalance => (
            AlertKind::Limit,
            "negative_balance",
            if ent.overage == Overage::Hard {
                Severity::Critical
            } else {
                Severity::Warning
            },
            None,
        ),
        Crossing::NegativeUsage => (
            AlertKind::DataQuality,
            "negative_usage",
            Severity::Warning,
            None,
        ),
    }
}

/// CRM link for an account profile's ids, when enough is known to build one.
pub fn crm_url(crm_ids: &BTreeMap<String, String>) -> Option<String> {
    if let Some(u) = crm_ids.get("url") {
        return Some(u.clone());
    }
    match (
        crm_ids.get("hubspot_portal_id"),
        crm_ids.get("hubspot_company_id"),
    ) {
        (Some(p), Some(c)) => Some(format!("https://app.hubspot.com/contacts/{p}/company/{c}")),
        _ => None,
    }
}

impl LimitWatch {
    pub async fn usage_of(
        &self,
        tenant: &TenantId,
        ent: &Entitlement,
        period: &Period,
    ) -> Result<(Decimal, Option<Decimal>), LimitError> {
        Self::usage_for(self.usage.as_ref(), tenant, ent, period).await
    }

    /// Usage of `ent` in `period` (and in the previous one, when it rolls over).
    pub async fn usage_for(
        usage: &dyn UsageReader,
        tenant: &TenantId,
        ent: &Entitlement,
        period: &Period,
    ) -> Result<(Decimal, Option<Decimal>), LimitError> {
        let previous = if ent.rollover {
            ent.previous_period(period)
        } else {
            None
        };
        let from = previous.as_ref().map_or(period.start, |p| p.start);
        let (d0, d1) = days_for(from, period.end);
        let meter = if ent.meters.len() == 1 {
            ent.meters.first()
        } else {
            None
        };
        let rows = usage
            .read_rollups(tenant, &Scope::Account(ent.account.clone()), d0, d1, meter)
            .await?;
        let used = usage_in(&rows, ent, period.start, period.end)?;
        let prev = previous
            .map(|p| usage_in(&rows, ent, p.start, p.end))
            .transpose()?;
        Ok((used, prev))
    }

    /// Raises every crossing the chunk's usage caused. Safe to run again.
    pub async fn check(
        &self,
        tenant: &TenantId,
        chunk: &str,
        touched: &Touched,
        now: DateTime<Utc>,
        expires_at: i64,
    ) -> Result<LimitOutcome, LimitError> {
        let mut out = LimitOutcome::default();
        let mut to_send: Vec<Alert> = Vec::new();
        for (account, hits) in touched {
            let ents = self.entitlements.list_entitlements(tenant, account).await?;
            let mut profile = None;
            for ent in ents {
                let periods: BTreeMap<String, Period> = hits
                    .iter()
                    .filter(|(m, s, _)| ent.counts(m, *s))
                    .filter_map(|(_, _, at)| ent.period_at(*at))
                    .map(|p| (p.key(), p))
                    .collect();
                for period in periods.into_values() {
                    out.entitlements_checked += 1;
                    let b = match self.usage_of(tenant, &ent, &period).await {
                        Ok((used, prev)) => balance(&ent, period.clone(), used, prev, now),
                        Err(LimitError::Overflow(e)) => Err(e),
                        Err(e) => return Err(e),
                    };
                    let b = match b {
                        Ok(b) => b,
                        Err(e) => {
                            // This entitlement alone is skipped; the chunk is counted
                            // and every other entitlement is still checked.
                            tracing::error!(tenant = %tenant, account = %account, entitlement = %ent.id,
                                period = %period.key(), error = %e, "entitlement usage out of range; thresholds not checked");
                            out.out_of_range += 1;
                            continue;
                        }
                    };
                    for c in crossings(&ent, &b) {
                        let key = alert_key(&ent, &period, c);
                        match self
                            .markers
                            .claim_marker(tenant, MarkerKind::Raised, &key, chunk, expires_at)
                            .await?
                        {
                            MarkerClaim::New => {}
                            MarkerClaim::Mine { done: false, age } if age >= IN_FLIGHT_LEASE => {}
                            MarkerClaim::Mine { done: false, .. } => {
                                return Err(LimitError::InFlight(key));
                            }
                            MarkerClaim::Mine { done: true, .. } | MarkerClaim::Other => {
                                out.already_raised += 1;
                                continue;
                            }
                        }
                        if profile.is_none() {
                            profile = Some(self.accounts.get_account(tenant, account).await?);
                        }
                        let p = profile.as_ref().and_then(Option::as_ref);
                        let (kind, code, severity, threshold) = severity(&ent, c);
                        to_send.push(Alert {
                            key,
                            kind,
                            code: code.into(),
                            severity,
                            tenant: tenant.clone(),
                            account: account.clone(),
                            account_name: p.map(|p| p.name.clone()),
                            segment: p.map_or(crate::ids::Segment::Unassigned, |p| p.segment),
                            owner: p.and_then(|p| p.owner_email.clone()),
                            crm_url: p.and_then(|p| crm_url(&p.crm_ids)),
                            entitlement: Some(ent.id.to_string()),
                            meters: ent.meters.clone(),
                            threshold,
                            period_start: period.start_date,
                            period_end: period.end_date,
                            time_zone: ent.time_zone.clone(),
                            used: b.used,
                            limit: b.limit,
                            percent: b.percent,
                            projected: b.projected,
                            late: period.end <= now,
                            raised_at: now,
                            reasons: Vec::new(),
                            detail: None,
                        });
                    }
                }
            }
        }
        if to_send.is_empty() {
            return Ok(out);
        }
        let bodies = to_send
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LimitError::Encode(e.to_string()))?;
        let results = self.alerts.send(&bodies).await;
        let mut failed = Vec::new();
        for (alert, r) in to_send.iter().zip(results) {
            match r {
                Ok(()) => {
                    self.markers
                        .finish_marker(tenant, MarkerKind::Raised, &alert.key)
                        .await?;
                    out.alerts_queued += 1;
                    tracing::info!(
                        tenant = %tenant,
                        account = %alert.account,
                        alert = %alert.key,
                        used = %alert.used,
                        limit = %alert.limit,
                        late = alert.late,
                        "alert raised"
                    );
                }
                Err(e) => failed.push(format!("{}: {e}", alert.key)),
            }
        }
        if failed.is_empty() {
            Ok(out)
        } else {
            Err(LimitError::Queue(failed.join("; ")))
        }
    }
}

/// Adds an event's hour to the touched set.
pub fn touch(
    t: &mut Touched,
    account: &AccountId,
    meter: &MeterName,
    stage: Stage,
    at: DateTime<Utc>,
) {
    t.entry(account.clone()).or_default().insert((
        meter.clone(),
        stage,
        crate::entitlement::hour_of(at),
    ));
}
