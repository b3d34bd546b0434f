//! Registry governance and audit reports: definition changes with their change log
//! and notifications, soft delete and restore, and the stored audit runs.

use crate::Api;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use domain::audit::counters::Counts;
use domain::audit::report::trend;
use domain::audit::store::QualityRecorder;
use domain::audit::store::ReportStore;
use domain::definition::{alias_conflict, definition_from_body, Definition};
use domain::event::DefinitionStatus;
use domain::governance::{change_alert, changed_fields, ChangeAction, ChangeEntry, ChangeLog};
use domain::ids::{MeterName, TenantId};
use domain::quarantine::{
    policy_from_body, replay, GovernancePolicy, PolicyRecord, QuarantineStore, Replay, MAX_PAGE,
};
use domain::queue::EventQueue;
use lambda::http::ErrorCode;
use lambda::http::{body_bytes, json, query_pairs, ApiError, PageParams};
use lambda_http::{Body, Request, Response};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Runs per page of `GET /v1/audits`: a day of hourly runs by default, at most 50
/// (each stored report may be up to ~350 KB; the page reads them whole).
pub const DEFAULT_RUNS: usize = 24;
pub const MAX_RUNS: usize = 50;

/// Widest `from`..`to` of `GET /v1/audits` (a month of hourly runs).
pub const MAX_AUDIT_RANGE_DAYS: i64 = 31;

/// Change-log entries per page of `GET /v1/definitions/{meter}/changes`.
pub const DEFAULT_CHANGES: usize = 50;
pub const MAX_CHANGES: usize = 200;

/// Most held events one restore or replay call queues; the rest wait for the next
/// `POST /v1/definitions/{meter}/quarantine/replay` (the response says so).
pub const REPLAY_BUDGET: usize = 10_000;

pub struct Governance {
    pub changes: Arc<dyn ChangeLog>,
    pub reports: Arc<dyn ReportStore>,
    /// Where change notifications go (the alerts queue); `None` sends none.
    pub alerts: Option<Arc<dyn EventQueue>>,
    /// Held events of deleted / deprecated definitions.
    pub quarantine: Arc<dyn QuarantineStore>,
    /// Where replayed events go (the events queue); `None`: no replay.
    pub events: Option<Arc<dyn EventQueue>>,
    /// Counts released events for the audit (`released`).
    pub quality: Option<Arc<dyn QualityRecorder>>,
}

/// The principal of an in-process call whose key the caller has already looked up
/// (the web app's session holds the key's hash): set as a request extension, which a
/// request from outside cannot carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    /// `key:<first 12 hex of the API key's hash>`, the change log's principal.
    pub fn of_key_hash(hash: &str) -> Self {
        Self(format!("key:{}", hash.get(..12).unwrap_or(hash)))
    }
}

/// The principal behind a request: its API key's hash, shortened (never the key).
pub fn actor(req: &Request) -> String {
    if let Some(Actor(a)) = req.extensions().get::<Actor>() {
        return a.clone();
    }
    let header = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok());
    match domain::auth::bearer(header) {
        Some(key) => Actor::of_key_hash(&domain::auth::hash_key(key)).0,
        None => "unknown".to_owned(),
    }
}

fn unavailable() -> ApiError {
    ApiError::new(
        ErrorCode::GovernanceNotConfigured,
        "the registry change log is not configured for this deployment",
    )
}

impl Api {
    /// The named definition, or 404 (also for a name that cannot be a meter).
    async fn definition_or_404(
        &self,
        tenant: &TenantId,
        meter: &str,
    ) -> Result<(MeterName, Definition), ApiError> {
        let meter = MeterName::parse(meter).map_err(|_| ApiError::not_found("definition"))?;
        let def = self
            .definitions
            .get_definition(tenant, &meter)
            .await?
            .ok_or_else(|| ApiError::not_found("definition"))?;
        Ok((meter, def))
    }

    fn governance(&self) -> Result<&Governance, ApiError> {
        self.governance.as_ref().ok_or_else(unavailable)
    }

    /// Saves a definition with its change-log entry and sends the notification.
    async fn save_definition(
        &self,
        tenant: &TenantId,
        actor: String,
        before: Option<Definition>,
        after: Definition,
    ) -> Result<ChangeEntry, ApiError> {
        let others = self.definitions.list_definitions(tenant).await?;
        if before.is_none() && others.len() >= self.max_definitions_per_tenant {
            return Err(ApiError::new(
                ErrorCode::TooManyDefinitions,
                format!(
                    "a tenant may store at most {} definitions (deleted ones included); \
                     reuse or restore an existing meter",
                    self.max_definitions_per_tenant
                ),
            ));
        }
        if after.status != DefinitionStatus::Deleted {
            if let Some(why) = alias_conflict(&after, &others) {
                return Err(ApiError::new(ErrorCode::AliasConflict, why));
            }
        }
        let entry = ChangeEntry {
            meter: after.meter.clone(),
            at: after.updated_at,
            actor,
            action: ChangeAction::of(before.as_ref(), &after),
            changed: changed_fields(before.as_ref(), &after),
            before,
            after,
        };
        match &self.governance {
            Some(g) => {
                g.changes
                    .save_with_change(tenant, &entry.after, &entry)
                    .await?;
                if let (Some(q), Some(alert)) = (&g.alerts, change_alert(tenant, &entry)) {
                    if let Ok(body) = serde_json::to_string(&alert) {
                        if let Some(Err(e)) = q.send(&[body]).await.pop() {
                            // The change is saved and in the log; only the notice is lost.
                            tracing::warn!(tenant = %tenant, meter = %entry.meter, error = %e, "governance notification not queued");
                        }
                    }
                }
            }
            None => {
                self.definitions
                    .put_definition(tenant, &entry.after)
                    .await?
            }
        }
        tracing::info!(tenant = %tenant, meter = %entry.meter, action = entry.action.as_str(), actor = %entry.actor, changed = ?entry.changed, "definition saved");
        Ok(entry)
    }

    pub(crate) async fn put_definition(
        &self,
        tenant: &TenantId,
        meter: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let meter = MeterName::parse(meter)
            .map_err(|e| ApiError::new(ErrorCode::InvalidMeter, e.to_string()))?;
        let existing = self.definitions.get_definition(tenant, &meter).await?;
        let def = definition_from_body(meter, body_bytes(req), Utc::now(), existing.as_ref())?;
        let created = existing.is_none();
        let entry = self
            .save_definition(tenant, actor(req), existing, def)
            .await?;
        let body = self.after_change(tenant, &entry).await;
        Ok(json(if created { 201 } else { 200 }, &body))
    }

    /// The saved definition, plus what was replayed when it became active again
    /// (`replay`: held events queued to be counted; `remaining` when more are held).
    async fn after_change(&self, tenant: &TenantId, entry: &ChangeEntry) -> serde_json::Value {
        let mut body = serde_json::to_value(&entry.after).unwrap_or_default();
        let reactivated = entry.after.status == DefinitionStatus::Active
            && entry
                .before
                .as_ref()
                .is_some_and(|b| b.status != DefinitionStatus::Active);
        if !reactivated {
            return body;
        }
        let outcome = match self.replay_held(tenant, &entry.after.meter).await {
            Ok(r) => json!({"replayed": r.replayed, "remaining": r.remaining}),
            // The change stands; the events stay held for an explicit replay.
            Err(e) => {
                json!({"replayed": 0, "remaining": true, "error": {"code": e.code, "message": e.message}})
            }
        };
        if let Some(map) = body.as_object_mut() {
            map.insert("replay".into(), outcome);
        }
        body
    }

    /// Queues up to [`REPLAY_BUDGET`] held events of `meter` to be counted.
    async fn replay_held(&self, tenant: &TenantId, meter: &MeterName) -> Result<Replay, ApiError> {
        let g = self.governance()?;
        let events = g.events.as_ref().ok_or_else(|| {
            ApiError::new(
                ErrorCode::ReplayNotConfigured,
                "the events queue is not configured for this deployment; held events stay held",
            )
        })?;
        let result = replay(
            g.quarantine.as_ref(),
            events.as_ref(),
            tenant,
            meter,
            REPLAY_BUDGET,
            domain::chunk::SQS_MAX_BYTES - 1024,
            Utc::now(),
        )
        .await;
        let replayed = match &result {
            Ok(r) => r.replayed,
            Err(domain::quarantine::ReplayError::Queue { replayed, .. }) => *replayed,
            Err(_) => 0,
        };
        if let (Some(q), true) = (&g.quality, replayed > 0) {
            let counts = BTreeMap::from([(
                meter.as_str().to_owned(),
                Counts {
                    released: replayed as u64,
                    ..Default::default()
                },
            )]);
            if let Err(e) = q
                .record_request(tenant, Utc::now().date_naive(), &counts)
                .await
            {
                tracing::warn!(tenant = %tenant, meter = %meter, error = %e, "released-events counter not recorded");
            }
        }
        tracing::info!(tenant = %tenant, meter = %meter, replayed, ok = result.is_ok(), "held events replayed");
        result.map_err(|e| match e {
            domain::quarantine::ReplayError::Store(s) => ApiError::from(s),
            other => ApiError::new(ErrorCode::ReplayIncomplete, other.to_string()),
        })
    }

    /// `GET /v1/definitions/{meter}/quarantine`: held events, oldest key first.
    pub(crate) async fn list_quarantine(
        &self,
        tenant: &TenantId,
        meter: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let g = self.governance()?;
        let (meter, def) = self.definition_or_404(tenant, meter).await?;
        let (page, rest) = PageParams::take(query_pairs(req), 100, MAX_PAGE)?;
        if let Some((other, _)) = rest.first() {
            return Err(ApiError::new(
                ErrorCode::UnknownParameter,
                format!("unknown parameter '{other}'; expected limit, cursor"),
            ));
        }
        let page = g
            .quarantine
            .held(tenant, &meter, page.limit, page.cursor.as_deref())
            .await?;
        let held = g.quarantine.count_held(tenant, &meter).await?;
        Ok(json(
            200,
            &json!({
                "meter": meter, "status": status(def.status), "held": held,
                "events": page.items, "next_cursor": page.next,
            }),
        ))
    }

    /// `POST /v1/definitions/{meter}/quarantine/replay`: counts held events of an
    /// active definition (restore does this itself; this finishes large backlogs).
    pub(crate) async fn replay_quarantine(
        &self,
        tenant: &TenantId,
        meter: &str,
    ) -> Result<Response<Body>, ApiError> {
        self.governance()?;
        let (meter, def) = self.definition_or_404(tenant, meter).await?;
        if def.status != DefinitionStatus::Active {
            return Err(ApiError::new(ErrorCode::DefinitionNotActive,
                format!(
                    "definition '{meter}' is {}; restore it (or set it active) before replaying its held events",
                    status(def.status)
                ),
            ));
        }
        let r = self.replay_held(tenant, &meter).await?;
        Ok(json(
            200,
            &json!({"meter": meter, "replayed": r.replayed, "remaining": r.remaining}),
        ))
    }

    pub(crate) async fn get_governance_policy(
        &self,
        tenant: &TenantId,
    ) -> Result<Response<Body>, ApiError> {
        Ok(json(
            200,
            &match self.definitions.governance_policy(tenant).await? {
                Some(r) => json!({
                    "policy": r.policy, "source": "tenant",
                    "updated_at": r.updated_at, "updated_by": r.updated_by,
                }),
                None => json!({"policy": GovernancePolicy::default(), "source": "defaults"}),
            },
        ))
    }

    /// Replaces the policy, recording who and when; the answer shows the one replaced.
    pub(crate) async fn put_governance_policy(
        &self,
        tenant: &TenantId,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let policy = policy_from_body(body_bytes(req))?;
        let previous = self
            .definitions
            .governance_policy(tenant)
            .await?
            .map(|r| r.policy)
            .unwrap_or_default();
        let record = PolicyRecord {
            policy,
            updated_at: Utc::now(),
            updated_by: actor(req),
        };
        self.definitions
            .put_governance_policy(tenant, &record)
            .await?;
        tracing::info!(tenant = %tenant, actor = %record.updated_by, ?previous, ?policy, "governance policy replaced");
        Ok(json(
            200,
            &json!({
                "policy": record.policy, "source": "tenant", "previous": previous,
                "updated_at": record.updated_at, "updated_by": record.updated_by,
            }),
        ))
    }

    /// Soft delete: the definition stays (status `deleted`), its data stays, events
    /// for it are held in quarantine (or refused with `meter_deleted`, per the tenant's
    /// governance policy) until it is restored.
    pub(crate) async fn delete_definition(
        &self,
        tenant: &TenantId,
        meter: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        self.governance()?;
        let (_, existing) = self.definition_or_404(tenant, meter).await?;
        if existing.status == DefinitionStatus::Deleted {
            return Ok(json(200, &existing));
        }
        let mut after = existing.clone();
        after.status = DefinitionStatus::Deleted;
        after.updated_at = Utc::now();
        let entry = self
            .save_definition(tenant, actor(req), Some(existing), after)
            .await?;
        Ok(json(200, &entry.after))
    }

    pub(crate) async fn restore_definition(
        &self,
        tenant: &TenantId,
        meter: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        self.governance()?;
        let (meter, existing) = self.definition_or_404(tenant, meter).await?;
        if existing.status != DefinitionStatus::Deleted {
            return Err(ApiError::new(
                ErrorCode::NotDeleted,
                format!(
                    "definition '{meter}' is {}, not deleted",
                    status(existing.status)
                ),
            ));
        }
        let mut after = existing.clone();
        after.status = DefinitionStatus::Active;
        after.updated_at = Utc::now();
        let entry = self
            .save_definition(tenant, actor(req), Some(existing), after)
            .await?;
        let body = self.after_change(tenant, &entry).await;
        Ok(json(200, &body))
    }

    pub(crate) async fn definition_changes(
        &self,
        tenant: &TenantId,
        meter: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let g = self.governance()?;
        let meter = MeterName::parse(meter).map_err(|_| ApiError::not_found("definition"))?;
        let (paging, rest) = PageParams::take(query_pairs(req), DEFAULT_CHANGES, MAX_CHANGES)?;
        if let Some((other, _)) = rest.first() {
            return Err(ApiError::new(
                ErrorCode::UnknownParameter,
                format!("unknown parameter '{other}'; expected limit, cursor"),
            ));
        }
        let page = g
            .changes
            .changes(tenant, &meter, paging.limit, paging.cursor.as_deref())
            .await?;
        if page.items.is_empty()
            && self
                .definitions
                .get_definition(tenant, &meter)
                .await?
                .is_none()
        {
            return Err(ApiError::not_found("definition"));
        }
        Ok(json(
            200,
            &json!({"meter": meter, "changes": page.items, "next_cursor": page.next}),
        ))
    }

    pub(crate) async fn latest_audit(&self, tenant: &TenantId) -> Result<Response<Body>, ApiError> {
        let g = self.governance()?;
        let report = g
            .reports
            .latest_report(tenant)
            .await?
            .ok_or_else(|| ApiError::not_found("audit report"))?;
        Ok(json(200, &report))
    }

    pub(crate) async fn list_audits(
        &self,
        tenant: &TenantId,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let g = self.governance()?;
        let now = Utc::now();
        let (paging, rest) = PageParams::take(query_pairs(req), DEFAULT_RUNS, MAX_RUNS)?;
        let (from, to) = audit_range(&rest, now)?;
        let page = g
            .reports
            .reports(tenant, from, to, paging.limit, paging.cursor.as_deref())
            .await?;
        let runs = page.items;
        let summaries: Vec<_> = runs
            .iter()
            .map(|r| {
                json!({
                    "run_at": r.run_at, "from": r.from, "to": r.to, "kpis": r.kpis,
                    "critical_usage_gap_rate": r.critical_usage_gap_rate,
                    "drift": r.drift.len(), "drift_windows_checked": r.drift_windows_checked,
                    "negative_balances": r.negative_balances.len(), "dlq_depth": r.dlq_depth,
                    "findings": r.findings_total, "summary": r.summary,
                })
            })
            .collect();
        Ok(json(
            200,
            &json!({
                "from": from, "to": to, "runs": summaries, "trend": trend(&runs),
                "next_cursor": page.next,
            }),
        ))
    }
}

fn status(s: DefinitionStatus) -> &'static str {
    match s {
        DefinitionStatus::Active => "active",
        DefinitionStatus::Deprecated => "deprecated",
        DefinitionStatus::Deleted => "deleted",
    }
}

fn instant(v: &str, end: bool) -> Option<DateTime<Utc>> {
    let t = match DateTime::parse_from_rfc3339(v) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => {
            let d = NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()?;
            let d = if end { d.succ_opt()? } else { d };
            let t = d.and_hms_opt(0, 0, 0)?.and_utc();
            if end {
                t.checked_sub_signed(Duration::seconds(1))?
            } else {
                t
            }
        }
    };
    // Four-digit years: report sort keys are RFC 3339 strings, ordered as text.
    (1..=9999).contains(&t.year()).then_some(t)
}

/// `from` and `to` (RFC 3339 or a date; default: the last 7 days up to now), at most
/// [`MAX_AUDIT_RANGE_DAYS`] apart (`range_too_large`).
pub fn audit_range(
    pairs: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let mut from = now - Duration::days(7);
    let mut to = now;
    for (k, v) in pairs {
        let bad = || {
            ApiError::new(
                ErrorCode::InvalidParameter,
                format!("{k} '{v}' is not an RFC 3339 time or a YYYY-MM-DD date"),
            )
        };
        match k.as_str() {
            "from" => from = instant(v, false).ok_or_else(bad)?,
            "to" => to = instant(v, true).ok_or_else(bad)?,
            other => {
                return Err(ApiError::new(
                    ErrorCode::UnknownParameter,
                    format!("unknown parameter '{other}'; expected from, to, limit, cursor"),
                ))
            }
        }
    }
    if from > to {
        return Err(ApiError::new(ErrorCode::InvalidRange, "from is after to"));
    }
    if to - from > Duration::days(MAX_AUDIT_RANGE_DAYS) {
        return Err(ApiError::new(ErrorCode::RangeTooLarge,
            format!("from and to are more than {MAX_AUDIT_RANGE_DAYS} days apart; narrow the range and page through it with limit and cursor"),
        ));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_range_takes_dates_or_times_and_refuses_the_rest() {
        let now = "2026-11-25T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let p = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        let (f, _) = audit_range(&p("from", "2026-11-01"), now).unwrap();
        assert_eq!(f.to_rfc3339(), "2026-11-01T00:00:00+00:00");
        let mut range = p("from", "2026-10-02");
        range.extend(p("to", "2026-11-01"));
        let (_, t) = audit_range(&range, now).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-01T23:59:59+00:00");
        assert_eq!(
            audit_range(&p("from", "yesterday"), now).unwrap_err().code,
            "invalid_parameter"
        );
        assert_eq!(
            audit_range(&p("since", "2026-11-01"), now)
                .unwrap_err()
                .code,
            "unknown_parameter"
        );
        let mut both = p("from", "2026-11-02");
        both.extend(p("to", "2026-11-01"));
        assert_eq!(audit_range(&both, now).unwrap_err().code, "invalid_range");
        assert_eq!(
            audit_range(&p("to", "+10000-01-01"), now).unwrap_err().code,
            "invalid_parameter"
        );
    }

    #[test]
    fn an_audit_range_of_more_than_31_days_is_refused_as_too_large() {
        let now = "2026-11-25T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let range = |from: &str, to: &str| {
            vec![
                ("from".to_owned(), from.to_owned()),
                ("to".to_owned(), to.to_owned()),
            ]
        };
        assert!(audit_range(&range("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"), now).is_ok());
        for (from, to) in [
            ("2026-10-01T00:00:00Z", "2026-11-01T00:00:01Z"),
            ("2026-10-01", "2026-11-01"),
            ("2020-01-01", "2026-01-01"),
        ] {
            let err = audit_range(&range(from, to), now).unwrap_err();
            assert_eq!(
                (err.status, err.code),
                (400, "range_too_large"),
                "{from}..{to}"
            );
        }
        let err = audit_range(&[("from".to_owned(), "2026-01-01".to_owned())], now).unwrap_err();
        assert_eq!(
            err.code, "range_too_large",
            "from alone, to defaults to now"
        );
    }
}
