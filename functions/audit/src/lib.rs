//! The audit job: per tenant and per definition, the data-quality KPIs over the last
//! days, rollup-vs-ledger drift on a sample, negative balances, DLQ depth, volume
//! anomalies (tenant-wide per definition, per account for critical definitions) and
//! the critical usage-gap rate; stores one report per run and raises alerts.
//! See docs/adr/0007.

use chrono::{DateTime, Duration, DurationRound, NaiveDate, Utc};
use domain::alert::Severity;
use domain::audit::anomaly::{detect, FindingKind, HourlySeries};
use domain::audit::counters::Counts;
use domain::audit::kpi::{
    compare_window, negative_balances, DriftMismatch, Kpis, NegativeBalance, Rate,
};
use domain::audit::report::{
    anomaly_finding, finding_alert, summarize, AuditReport, DefinitionReport, Finding,
    MAX_STORED_FINDINGS,
};
use domain::audit::series::{self, CriticalRow};
use domain::audit::store::{AuditReader, QueueDepth, ReportStore};
use domain::definition::Definition;
use domain::event::DefinitionStatus;
use domain::ids::{AccountId, MeterName, Segment, TenantId};
use domain::keys::Scope;
use domain::ports::{DefinitionStore, RollupRow, StoreError, UsageReader};
use domain::quarantine::{QuarantineStore, MAX_PAGE};
use domain::queue::EventQueue;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Active accounts of critical definitions: account -> (definition, last seen, whether
/// the whole definition is silent).
type CriticalAccounts<'a> = BTreeMap<AccountId, Vec<(&'a Definition, DateTime<Utc>, bool)>>;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{failed} of {tenants} tenants could not be audited")]
    Tenants { failed: usize, tenants: usize },
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Receipt days the counters cover (today and the days before).
    pub window_days: u32,
    /// Days of hourly history behind the anomaly baseline.
    pub lookback_days: u32,
    /// Event days re-summed from the ledger sample (today and the days before).
    pub drift_days: u32,
    /// Most sampled accounts re-summed per day.
    pub drift_accounts: usize,
    /// Cadence of critical definitions that set none.
    pub default_cadence_hours: u32,
    /// Days of history read per active account of a critical definition (one Query
    /// per account covers every critical meter; the hour-of-day baseline needs 7).
    pub account_lookback_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            window_days: 7,
            lookback_days: 29,
            drift_days: 2,
            drift_accounts: 50,
            default_cadence_hours: 24,
            account_lookback_days: 8,
        }
    }
}

pub struct Audit {
    pub reader: Arc<dyn AuditReader>,
    pub definitions: Arc<dyn DefinitionStore>,
    pub usage: Arc<dyn UsageReader>,
    pub reports: Arc<dyn ReportStore>,
    pub alerts: Arc<dyn EventQueue>,
    pub dlq: Option<Arc<dyn QueueDepth>>,
    /// Held events (a definition active again with events still held is a finding).
    pub quarantine: Option<Arc<dyn QuarantineStore>>,
    pub cfg: AuditConfig,
}

/// The audit on DynamoDB (usage and ledger tables), the alerts queue and the events
/// DLQ's depth, as every deployment wires it: `main.rs` on Lambda and the local runner.
pub fn wired(
    store: Arc<aws::dynamo::DynamoStore>,
    sqs: aws_sdk_sqs::Client,
    alerts_url: String,
    dlq_url: String,
) -> Audit {
    let mut audit = Audit::new(
        store.clone(),
        Arc::new(aws::sqs::SqsQueue::new(sqs.clone(), alerts_url)),
    );
    audit.quarantine = Some(store);
    audit.dlq = Some(Arc::new(aws::sqs::SqsDepth {
        client: sqs,
        url: dlq_url,
    }));
    audit
}

impl Audit {
    pub fn new<S>(store: Arc<S>, alerts: Arc<dyn EventQueue>) -> Self
    where
        S: AuditReader + DefinitionStore + UsageReader + ReportStore + 'static,
    {
        Self {
            reader: store.clone(),
            definitions: store.clone(),
            usage: store.clone(),
            reports: store,
            alerts,
            dlq: None,
            quarantine: None,
            cfg: AuditConfig::default(),
        }
    }

    /// The scheduled entry point: every tenant, one report each. A failing tenant does
    /// not stop the others; the run fails at the end so the failure is visible.
    pub async fn run_all(&self, now: DateTime<Utc>) -> Result<serde_json::Value, AuditError> {
        let tenants = self.reader.tenants().await?;
        let dlq_depth = match &self.dlq {
            Some(d) => match d.depth().await {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::warn!(error = %e, "DLQ depth unavailable");
                    None
                }
            },
            None => None,
        };
        let mut out = Vec::new();
        let mut failed = 0;
        for t in &tenants {
            match self.run_tenant(t, now, dlq_depth).await {
                Ok(r) => out.push(serde_json::json!({
                    "tenant": t, "findings": r.findings_total, "summary": r.summary
                })),
                Err(e) => {
                    failed += 1;
                    tracing::error!(tenant = %t, error = %e, "audit failed");
                }
            }
        }
        if failed > 0 {
            return Err(AuditError::Tenants {
                failed,
                tenants: tenants.len(),
            });
        }
        Ok(serde_json::json!({"tenants": out}))
    }

    /// The audit of one tenant on demand, in the same shape as [`Self::run_all`].
    pub async fn run_one(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> Result<serde_json::Value, AuditError> {
        let dlq_depth = match &self.dlq {
            Some(d) => d.depth().await.ok(),
            None => None,
        };
        let r = self.run_tenant(tenant, now, dlq_depth).await?;
        Ok(serde_json::json!({"tenants": [{
            "tenant": tenant, "findings": r.findings_total, "summary": r.summary
        }]}))
    }

    /// Audits one tenant, stores the report and raises alerts for its findings.
    pub async fn run_tenant(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
        dlq_depth: Option<u64>,
    ) -> Result<AuditReport, AuditError> {
        let started = std::time::Instant::now();
        let today = now.date_naive();
        let cfg = &self.cfg;
        let from = today - Duration::days(i64::from(cfg.window_days.max(1)) - 1);
        let defs = self.definitions.list_definitions(tenant).await?;
        let counts = self.reader.quality(tenant, from, today).await?;
        let mut unmapped = 0;
        let mut day = from;
        while day <= today {
            unmapped += self.reader.unmapped_changes(tenant, day).await?;
            day = day.succ_opt().unwrap_or(today + Duration::days(1));
        }
        let mut total = Counts::default();
        for c in counts.values() {
            total.add(c);
        }
        let kpis = Kpis::from_counts(&total, unmapped);

        // Hourly volume per meter, tenant-wide (the segment rollups cover every event).
        let hours = (cfg.lookback_days as usize + 1) * 24;
        let series_start = (now - Duration::days(i64::from(cfg.lookback_days)))
            .duration_trunc(Duration::days(1))
            .unwrap_or(now);
        let first_day = series_start.date_naive();
        let mut tenant_series: BTreeMap<String, HourlySeries> = BTreeMap::new();
        for seg in Segment::ALL {
            let rows = self
                .usage
                .read_rollups(tenant, &Scope::Segment(seg), first_day, today, None)
                .await?;
            for r in &rows {
                let s = tenant_series
                    .entry(r.key.meter.as_str().to_owned())
                    .or_insert_with(|| HourlySeries::zeros(series_start, hours));
                add_rows(s, std::slice::from_ref(r));
            }
        }

        let mut findings: Vec<Finding> = Vec::new();
        // Events held in quarantine for definitions active again (a lower bound when a
        // definition holds more than a page).
        let mut quarantine_pending = 0usize;
        // Events held in quarantine in all (up to a page per definition).
        let mut quarantine_size = 0usize;
        let mut definitions = Vec::new();
        let mut gap_pairs = 0u64;
        let mut gaps = 0u64;
        let mut negatives: Vec<NegativeBalance> = Vec::new();
        // Active accounts of critical definitions: account -> (definition, last seen,
        // whether the whole definition is silent).
        let mut critical: CriticalAccounts = BTreeMap::new();
        for def in &defs {
            let c = counts.get(def.meter.as_str()).cloned().unwrap_or_default();
            let report = DefinitionReport {
                meter: def.meter.clone(),
                owner: def.owner.clone(),
                criticality: def.criticality,
                kpis: Kpis::from_counts(&c, 0),
                usage_gap_rate: None,
            };
            if def.status != DefinitionStatus::Active {
                if c.quarantined > 0 {
                    quarantine_size = quarantine_size.saturating_add(self.held(tenant, def).await?);
                }
                definitions.push(report);
                continue;
            }
            if c.quarantined > 0 {
                if let Some((f, held)) = self.pending_quarantine(tenant, def).await? {
                    quarantine_pending = quarantine_pending.saturating_add(held);
                    quarantine_size = quarantine_size.saturating_add(held);
                    findings.push(f);
                }
            }
            let k = def.anomaly_sensitivity.k();
            let wide = tenant_series
                .get(def.meter.as_str())
                .cloned()
                .unwrap_or_else(|| HourlySeries::zeros(series_start, hours));
            let wide_found = detect(&wide, now, k);
            let wide_silent = wide_found.iter().any(|a| a.kind == FindingKind::Silence);
            for a in wide_found {
                findings.push(anomaly_finding(
                    &def.meter,
                    None,
                    def.owner.as_deref(),
                    def.criticality,
                    a,
                ));
            }
            if def.is_critical() {
                let active_since = now - Duration::days(i64::from(cfg.lookback_days));
                let accounts: Vec<(AccountId, DateTime<Utc>)> = self
                    .reader
                    .activity(tenant, &def.meter)
                    .await?
                    .into_iter()
                    .filter(|(_, t)| *t >= active_since)
                    .collect();
                for (a, last) in accounts {
                    critical
                        .entry(a)
                        .or_default()
                        .push((def, last, wide_silent));
                }
            }
            definitions.push(report);
        }
        let per_def = self
            .critical_accounts(tenant, critical, now, &mut findings, &mut negatives)
            .await?;
        for d in &mut definitions {
            if let Some((g, pairs)) = per_def.get(&d.meter) {
                gaps += g;
                gap_pairs += pairs;
                d.usage_gap_rate = Some(Rate::of(*g, *pairs));
            }
        }

        let (checked, drift, mut neg) = self.drift(tenant, today).await?;
        negatives.append(&mut neg);
        negatives
            .sort_by(|a, b| (&a.account, &a.meter, a.stage).cmp(&(&b.account, &b.meter, b.stage)));
        negatives.dedup();
        for d in &drift {
            findings.push(Finding {
                code: "rollup_drift".into(),
                severity: Severity::Critical,
                meter: d.meter.clone(),
                account: Some(d.account.clone()),
                owner: defs.iter().find(|x| x.meter == d.meter).and_then(|x| x.owner.clone()),
                since: d.day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()),
                explanation: format!(
                    "rollup of {} / {} on {} ({} {}) holds {} in {} events but its ledger sample sums to {} in {} events",
                    d.account, d.meter, d.day, d.stage.as_str(), d.service_line, d.rollup_quantity, d.rollup_events, d.ledger_quantity, d.ledger_events
                ),
                anomaly: None,
            });
        }
        for n in &negatives {
            findings.push(Finding {
                code: "negative_balance".into(),
                severity: Severity::Warning,
                meter: n.meter.clone(),
                account: Some(n.account.clone()),
                owner: defs
                    .iter()
                    .find(|x| x.meter == n.meter)
                    .and_then(|x| x.owner.clone()),
                since: None,
                explanation: format!(
                    "{} usage of account {} ({}) sums to {} over the last {} days",
                    n.meter,
                    n.account,
                    n.stage.as_str(),
                    n.quantity,
                    cfg.lookback_days
                ),
                anomaly: None,
            });
        }
        findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.meter.cmp(&b.meter)));
        let findings_total = findings.len();

        let alerts: Vec<String> = findings
            .iter()
            .filter_map(|f| finding_alert(tenant, f, now))
            .filter_map(|a| serde_json::to_string(&a).ok())
            .collect();
        let mut report = AuditReport {
            tenant: tenant.clone(),
            run_at: now,
            from,
            to: today,
            kpis,
            critical_usage_gap_rate: Rate::of(gaps, gap_pairs),
            drift_windows_checked: checked,
            drift,
            negative_balances: negatives,
            dlq_depth,
            definitions,
            findings_total,
            findings: findings.into_iter().take(MAX_STORED_FINDINGS).collect(),
            summary: String::new(),
        };
        report.summary = summarize(&report);
        self.reports.put_report(&report).await?;
        let sent = self.alerts.send(&alerts).await;
        let failed = sent.iter().filter(|r| r.is_err()).count();
        if failed > 0 {
            // The next hourly run raises them again (same keys; notify dedupes).
            tracing::warn!(tenant = %tenant, failed, "some data-quality alerts were not queued");
        }
        tracing::info!(
            tenant = %tenant,
            findings = report.findings_total,
            alerts = alerts.len(),
            drift = report.drift.len(),
            duplicate_rate = ?report.kpis.duplicate_rate.value,
            unassociated_rate = ?report.kpis.unassociated_rate.value,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "audit done"
        );
        emit_audit(tenant, started, quarantine_size, quarantine_pending);
        Ok(report)
    }

    /// How many events are held for `def` (up to a page).
    async fn held(&self, tenant: &TenantId, def: &Definition) -> Result<usize, StoreError> {
        Ok(match &self.quarantine {
            Some(q) => q
                .held(tenant, &def.meter, MAX_PAGE, None)
                .await?
                .items
                .len(),
            None => 0,
        })
    }

    /// Events still held for a definition that is active again (a restore whose replay
    /// did not finish): counted by nobody until they are replayed.
    async fn pending_quarantine(
        &self,
        tenant: &TenantId,
        def: &Definition,
    ) -> Result<Option<(Finding, usize)>, StoreError> {
        let Some(q) = &self.quarantine else {
            return Ok(None);
        };
        let page = q.held(tenant, &def.meter, MAX_PAGE, None).await?;
        let Some(oldest) = page.items.iter().map(|h| h.received_at).min() else {
            return Ok(None);
        };
        let n = if page.next.is_some() {
            format!("more than {}", page.items.len())
        } else {
            page.items.len().to_string()
        };
        let held = page.items.len();
        Ok(Some((Finding {
            code: "quarantine_pending".into(),
            severity: Severity::Warning,
            meter: def.meter.clone(),
            account: None,
            owner: def.owner.clone(),
            since: Some(oldest),
            explanation: format!(
                "{n} event(s) of {} held while it was deleted or deprecated are not counted yet although it is active; POST /v1/definitions/{}/quarantine/replay counts them",
                def.meter, def.meter
            ),
            anomaly: None,
        }, held)))
    }

    /// Per-account anomalies and usage gaps of the critical definitions: one Query per
    /// active account of its critical-meter series (only critical meters' items; up to
    /// 16 in flight). Returns (gaps, active accounts) per definition.
    async fn critical_accounts(
        &self,
        tenant: &TenantId,
        critical: CriticalAccounts<'_>,
        now: DateTime<Utc>,
        findings: &mut Vec<Finding>,
        negatives: &mut Vec<NegativeBalance>,
    ) -> Result<BTreeMap<MeterName, (u64, u64)>, StoreError> {
        use futures::stream::{self, StreamExt};
        let days = self.cfg.account_lookback_days.max(1);
        let start = (now - Duration::days(i64::from(days)))
            .duration_trunc(Duration::days(1))
            .unwrap_or(now);
        let hours = (days as usize + 1) * 24;
        let mut out: BTreeMap<MeterName, (u64, u64)> = BTreeMap::new();
        let reader = self.reader.clone();
        let mut reads = Vec::with_capacity(critical.len());
        for (account, defs) in critical {
            let reader = reader.clone();
            reads.push(async move {
                let rows = reader
                    .critical_series(tenant, &account, start.date_naive(), now.date_naive())
                    .await;
                (account, defs, rows)
            });
        }
        let mut reads = stream::iter(reads).buffered(16);
        while let Some((account, defs, rows)) = reads.next().await {
            let rows = rows?;
            for (def, last_seen, wide_silent) in defs {
                let entry = out.entry(def.meter.clone()).or_default();
                entry.1 += 1;
                let mine: Vec<CriticalRow> = rows
                    .iter()
                    .filter(|r| r.meter == def.meter)
                    .cloned()
                    .collect();
                negatives.extend(series::negative_balances(&account, &mine));
                let mut s = HourlySeries::zeros(start, hours);
                add_series(&mut s, &mine);
                let found = detect(&s, now, def.anomaly_sensitivity.k());
                let silent = found.iter().any(|a| a.kind == FindingKind::Silence);
                for a in found {
                    findings.push(anomaly_finding(
                        &def.meter,
                        Some(&account),
                        def.owner.as_deref(),
                        def.criticality,
                        a,
                    ));
                }
                let cadence = Duration::hours(i64::from(
                    def.expected_cadence_hours
                        .unwrap_or(self.cfg.default_cadence_hours),
                ));
                // A gap the whole definition shares is a source outage (reported once,
                // tenant-wide), not this account's gap.
                if now - last_seen > cadence && !wide_silent {
                    entry.0 += 1;
                    if !silent {
                        findings.push(gap_finding(def, &account, last_seen, now, cadence));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Re-sums sampled (account, day) windows from the ledger sample and compares.
    async fn drift(
        &self,
        tenant: &TenantId,
        today: NaiveDate,
    ) -> Result<(u64, Vec<DriftMismatch>, Vec<NegativeBalance>), StoreError> {
        let mut checked = 0u64;
        let mut out = Vec::new();
        let mut negatives = Vec::new();
        for back in 0..self.cfg.drift_days {
            let day = today - Duration::days(i64::from(back));
            let sample = self.reader.sampled_events(tenant, day).await?;
            let accounts: BTreeSet<&AccountId> = sample.iter().map(|e| &e.account).collect();
            for account in accounts.into_iter().take(self.cfg.drift_accounts) {
                let rows = self
                    .usage
                    .read_rollups(tenant, &Scope::Account(account.clone()), day, day, None)
                    .await?;
                let (n, mut m) = compare_window(account, day, &sample, &rows);
                checked += n as u64;
                out.append(&mut m);
                negatives.extend(negative_balances(account, &rows));
            }
        }
        Ok((checked, out, negatives))
    }
}

fn add_rows(s: &mut HourlySeries, rows: &[RollupRow]) {
    for r in rows {
        let Some(midnight) = r.key.day.and_hms_opt(0, 0, 0) else {
            continue;
        };
        let midnight = midnight.and_utc();
        for (h, b) in r.hours.iter().enumerate() {
            if b.events != 0 {
                s.add(midnight + Duration::hours(h as i64), b.events as f64);
            }
        }
    }
}

fn add_series(s: &mut HourlySeries, rows: &[CriticalRow]) {
    for r in rows {
        let Some(midnight) = r.day.and_hms_opt(0, 0, 0) else {
            continue;
        };
        let midnight = midnight.and_utc();
        for (h, n) in r.data.hours.iter().enumerate() {
            if *n != 0 {
                s.add(midnight + Duration::hours(h as i64), *n as f64);
            }
        }
    }
}

fn gap_finding(
    def: &Definition,
    account: &AccountId,
    last_seen: DateTime<Utc>,
    now: DateTime<Utc>,
    cadence: Duration,
) -> Finding {
    Finding {
        code: "usage_gap".into(),
        severity: Severity::Warning,
        meter: def.meter.clone(),
        account: Some(account.clone()),
        owner: def.owner.clone(),
        since: Some(last_seen),
        explanation: format!(
            "{} of account {account}: last event {} ({} hours ago), expected at least every {} hours",
            def.meter,
            last_seen.format("%Y-%m-%d %H:%M UTC"),
            (now - last_seen).num_hours(),
            cadence.num_hours()
        ),
        anomaly: None,
    }
}
/// One tenant's audit metrics: `AuditDuration` (ms), `QuarantineSize` (events held, up
/// to a page per definition) and `QuarantinePending` (of those, held for definitions that
/// are active again: a replay is due); the tenant is a property.
fn emit_audit(tenant: &TenantId, started: std::time::Instant, size: usize, pending: usize) {
    use lambda::metrics::{publish, record, set};
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    let mut s = set("audit");
    record(s.put(
        "AuditDuration",
        domain::metrics::Unit::Milliseconds,
        started.elapsed().as_secs_f64() * 1000.0,
    ));
    record(s.count("QuarantineSize", n(size)));
    record(s.count("QuarantinePending", n(pending)));
    record(s.property("tenant", tenant.as_str()));
    publish(&s);
}
