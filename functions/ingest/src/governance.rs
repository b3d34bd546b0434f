//! Governance at ingest: flags for deprecated definitions, and the data-quality
//! counters and critical-meter activity of one request (aggregated: one counter
//! update per meter per request, one activity update per critical (meter, account)).

use crate::Flag;
use chrono::{DateTime, Utc};
use domain::audit::counters::RequestCounts;
use domain::audit::store::QualityRecorder;
use domain::event::{RejectCode, Rejection, TenantPolicy, UsageEvent};
use domain::ids::{AccountId, MeterName, TenantId};
use domain::quarantine::QuarantineReason;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashSet};

fn deprecated(policy: &TenantPolicy, m: &MeterName) -> bool {
    policy
        .governance
        .schemas
        .get(m)
        .is_some_and(|s| s.deprecated)
}

/// Accepted events of deprecated definitions: counted, and flagged to the sender.
pub fn deprecated_flags(valid: &[(usize, UsageEvent)], policy: &TenantPolicy) -> Vec<Flag> {
    valid
        .iter()
        .filter(|(_, e)| deprecated(policy, &e.meter))
        .map(|(i, e)| Flag {
            index: *i,
            id: e.id.to_string(),
            flag: "meter_deprecated",
        })
        .collect()
}

#[derive(Deserialize)]
struct MeterOnly {
    #[serde(default)]
    meter: Option<serde_json::Value>,
}

/// The meter name an event was sent under, if it is a string.
fn sent_meter(raw: &RawValue) -> Option<String> {
    serde_json::from_str::<MeterOnly>(raw.get())
        .ok()?
        .meter?
        .as_str()
        .map(str::to_owned)
}

/// What one request tells the audit, before queueing.
pub struct Observed {
    /// (index, meter, name sent under when it differs, deprecated)
    accepted: Vec<(usize, MeterName, Option<String>, bool)>,
    /// (index, meter, sent under an alias, definition deleted)
    held: Vec<(usize, MeterName, bool, bool)>,
    rejected: Vec<(Option<MeterName>, RejectCode)>,
    critical: BTreeMap<MeterName, BTreeMap<AccountId, DateTime<Utc>>>,
}

/// Cheap: no event is cloned, and a raw event is re-read only when its meter has
/// aliases (to tell an alias from the meter's own name) or it was refused.
pub fn observe(
    raw: &[&RawValue],
    valid: &[(usize, UsageEvent)],
    held: &[(usize, UsageEvent, QuarantineReason)],
    rejected: &[Rejection],
    policy: &TenantPolicy,
) -> Observed {
    let aliased: HashSet<&MeterName> = policy.governance.aliases.values().collect();
    let held = held
        .iter()
        .map(|(i, e, reason)| {
            let via_alias = aliased.contains(&e.meter)
                && raw
                    .get(*i)
                    .and_then(|r| sent_meter(r))
                    .is_some_and(|s| s != e.meter.as_str());
            (
                *i,
                e.meter.clone(),
                via_alias,
                *reason == QuarantineReason::MeterDeleted,
            )
        })
        .collect();
    let mut critical: BTreeMap<MeterName, BTreeMap<AccountId, DateTime<Utc>>> = BTreeMap::new();
    let accepted = valid
        .iter()
        .map(|(i, e)| {
            if policy
                .governance
                .schemas
                .get(&e.meter)
                .is_some_and(|s| s.critical)
            {
                let last = critical
                    .entry(e.meter.clone())
                    .or_default()
                    .entry(e.account.clone())
                    .or_insert(e.timestamp);
                *last = (*last).max(e.timestamp);
            }
            let sent_as = if aliased.contains(&e.meter) {
                raw.get(*i)
                    .and_then(|r| sent_meter(r))
                    .filter(|s| s != e.meter.as_str())
            } else {
                None
            };
            (*i, e.meter.clone(), sent_as, deprecated(policy, &e.meter))
        })
        .collect();
    let rejected = rejected
        .iter()
        .map(|r| {
            let meter = raw
                .get(r.index)
                .and_then(|raw| sent_meter(raw))
                .and_then(|m| MeterName::parse(&m).ok())
                .map(|m| policy.governance.aliases.get(&m).cloned().unwrap_or(m))
                .filter(|m| policy.meters.contains_key(m));
            (meter, r.code)
        })
        .collect();
    Observed {
        accepted,
        held,
        rejected,
        critical,
    }
}

/// Writes the request's counters; failures are logged, never fail the request.
pub async fn record(
    q: &dyn QualityRecorder,
    tenant: &TenantId,
    received_at: DateTime<Utc>,
    observed: Observed,
    final_rejections: &[Rejection],
) {
    let unavailable: HashSet<usize> = final_rejections
        .iter()
        .filter(|r| r.code == RejectCode::TemporarilyUnavailable)
        .map(|r| r.index)
        .collect();
    let mut counts = RequestCounts::default();
    for (i, meter, sent_as, dep) in &observed.accepted {
        if !unavailable.contains(i) {
            counts.accepted(meter, sent_as.is_some(), *dep);
        }
    }
    for (i, meter, via_alias, deleted) in &observed.held {
        if !unavailable.contains(i) {
            counts.held(meter, *via_alias, *deleted);
        }
    }
    for (meter, code) in &observed.rejected {
        counts.rejected(meter.as_ref(), *code);
    }
    if let Err(e) = q
        .record_request(tenant, received_at.date_naive(), &counts.by_meter)
        .await
    {
        tracing::warn!(tenant = %tenant, error = %e, "data-quality counters not recorded");
    }
    for (meter, accounts) in observed.critical {
        let seen: Vec<(AccountId, DateTime<Utc>)> = accounts.into_iter().collect();
        if let Err(e) = q.record_activity(tenant, &meter, &seen).await {
            tracing::warn!(tenant = %tenant, meter = %meter, error = %e, "critical-meter activity not recorded");
        }
    }
}
