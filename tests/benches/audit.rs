//! `make bench`, issue #6: the audit job on a simulated store holding a tenant with
//! 200 definitions (20 of them critical) x 5,000 accounts x 90 days of day rollups
//! (every account uses every meter: 90 M rollup items, generated on read, never held),
//! reporting the job's time and the DynamoDB reads it would make (queries, items
//! read and read units as DynamoDB bills a Query: the items in the key range, filtered
//! or not); and the throughput of the legacy import path (validation, aliases,
//! packing, the exactly-once protocol) on the in-memory ledger.
//!
//! `cargo bench` runs the full size; run without `--bench` (as `cargo test` would) it
//! runs a smoke size.

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use domain::audit::counters::Counts;
use domain::audit::kpi::SampledEvent;
use domain::audit::report::AuditReport;
use domain::audit::series::{CriticalDay, CriticalRow};
use domain::audit::store::{AuditReader, ReportStore};
use domain::definition::Definition;
use domain::governance::Criticality;
use domain::ids::{AccountId, MeterName, Segment, ServiceLine, Stage, TenantId};
use domain::keys::Scope;
use domain::ports::{DefinitionStore, RollupRow, StoreError, UsageReader};
use domain::rollup::{Bucket, RollupKey};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Size of one stored rollup item as the adapter bills it (ADR 0002: < 1 KB).
const ROLLUP_ITEM_BYTES: u64 = 1000;

struct Sim {
    defs: Vec<Definition>,
    accounts: usize,
    first_day: NaiveDate,
    last_day: NaiveDate,
    now: DateTime<Utc>,
    queries: AtomicU64,
    items: AtomicU64,
    read_units: AtomicU64,
    reports: Mutex<Vec<AuditReport>>,
}

impl Sim {
    fn bill(&self, items: u64, item_bytes: u64) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.items.fetch_add(items, Ordering::Relaxed);
        // Strongly consistent Query: 1 RCU per 4 KB read, at least 1 (an upper bound:
        // the audit reads the series eventually consistent, at half that).
        self.read_units.fetch_add(
            ((items * item_bytes).div_ceil(4096)).max(1),
            Ordering::Relaxed,
        );
    }

    /// Events per hour of one account and meter: a working-hours shape.
    fn per_hour(&self, hour: usize, account: usize, meter: usize) -> i64 {
        let base = match hour {
            8..=18 => 6,
            6 | 7 | 19 | 20 => 2,
            _ => 1,
        };
        base + ((account + meter) % 3) as i64
    }
}

#[async_trait]
impl UsageReader for Sim {
    async fn read_rollups(
        &self,
        _tenant: &TenantId,
        scope: &Scope,
        from: NaiveDate,
        to: NaiveDate,
        meter: Option<&MeterName>,
    ) -> Result<Vec<RollupRow>, StoreError> {
        let from = from.max(self.first_day);
        let to = to.min(self.last_day);
        let (account, scale) = match scope {
            Scope::Account(a) => (
                a.as_str()
                    .trim_start_matches("acct-")
                    .parse::<usize>()
                    .unwrap_or(0),
                1,
            ),
            Scope::Segment(Segment::Unassigned) => (0, 0),
            Scope::Segment(_) => (0, (self.accounts / 4) as i64),
        };
        let mut rows = Vec::new();
        let mut day = from;
        let mut in_range = 0u64;
        while day <= to {
            for (mi, d) in self.defs.iter().enumerate() {
                in_range += 1;
                if meter.is_some_and(|m| m != &d.meter) || scale == 0 {
                    continue;
                }
                let mut hours = [Bucket::default(); 24];
                let mut total = Bucket::default();
                for (h, b) in hours.iter_mut().enumerate() {
                    let at = day.and_hms_opt(h as u32, 0, 0).map(|t| t.and_utc());
                    if at.is_some_and(|t| t >= self.now) {
                        continue;
                    }
                    let n = self.per_hour(h, account, mi) * scale;
                    *b = Bucket {
                        quantity: n.into(),
                        events: n,
                    };
                    total.add(*b);
                }
                rows.push(RollupRow {
                    key: RollupKey {
                        scope: scope.clone(),
                        day,
                        meter: d.meter.clone(),
                        stage: Stage::Delivered,
                        service_line: ServiceLine::default_line(),
                    },
                    total,
                    hours,
                });
            }
            day = day.succ_opt().unwrap_or(to + Duration::days(1));
        }
        // DynamoDB reads every item in the key range; the meter filter is applied after.
        self.bill(in_range, ROLLUP_ITEM_BYTES);
        Ok(rows)
    }
}

#[async_trait]
impl DefinitionStore for Sim {
    async fn put_definition(&self, _: &TenantId, _: &Definition) -> Result<(), StoreError> {
        Ok(())
    }
    async fn get_definition(
        &self,
        _: &TenantId,
        m: &MeterName,
    ) -> Result<Option<Definition>, StoreError> {
        Ok(self.defs.iter().find(|d| &d.meter == m).cloned())
    }
    async fn list_definitions(&self, _: &TenantId) -> Result<Vec<Definition>, StoreError> {
        self.bill(self.defs.len() as u64, 600);
        Ok(self.defs.clone())
    }
    async fn governance_policy(
        &self,
        _: &TenantId,
    ) -> Result<Option<domain::quarantine::PolicyRecord>, StoreError> {
        Ok(None)
    }
    async fn put_governance_policy(
        &self,
        _: &TenantId,
        _: &domain::quarantine::PolicyRecord,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Size of one critical-series item (24 hour counters and a quantity per stage).
const SERIES_ITEM_BYTES: u64 = 300;

#[async_trait]
impl AuditReader for Sim {
    async fn critical_series(
        &self,
        _: &TenantId,
        account: &AccountId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<CriticalRow>, StoreError> {
        let from = from.max(self.first_day);
        let to = to.min(self.last_day);
        let a = account
            .as_str()
            .trim_start_matches("acct-")
            .parse::<usize>()
            .unwrap_or(0);
        let mut rows = Vec::new();
        let mut day = from;
        while day <= to {
            for (mi, d) in self.defs.iter().enumerate() {
                if d.criticality != Criticality::Critical {
                    continue;
                }
                let mut data = CriticalDay::default();
                for (h, n) in data.hours.iter_mut().enumerate() {
                    let at = day.and_hms_opt(h as u32, 0, 0).map(|t| t.and_utc());
                    if at.is_some_and(|t| t < self.now) {
                        *n = self.per_hour(h, a, mi) as u64;
                    }
                }
                data.quantity
                    .insert(Stage::Delivered, (data.events() as i64).into());
                rows.push(CriticalRow {
                    day,
                    meter: d.meter.clone(),
                    data,
                });
            }
            day = day.succ_opt().unwrap_or(to + Duration::days(1));
        }
        self.bill(rows.len() as u64, SERIES_ITEM_BYTES);
        Ok(rows)
    }
    async fn tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        self.bill(1, 100);
        Ok(vec![
            TenantId::parse("bench").unwrap_or_else(|_| unreachable!())
        ])
    }
    async fn quality(
        &self,
        _: &TenantId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<BTreeMap<String, Counts>, StoreError> {
        let days = (to - from).num_days().max(0) as u64 + 1;
        self.bill(days * self.defs.len() as u64, 300);
        Ok(self
            .defs
            .iter()
            .map(|d| {
                let c = Counts {
                    received: 1000 * days,
                    counted: 990 * days,
                    duplicates: 10 * days,
                    unassociated: 5 * days,
                    ..Default::default()
                };
                (d.meter.to_string(), c)
            })
            .collect())
    }
    async fn activity(
        &self,
        _: &TenantId,
        _: &MeterName,
    ) -> Result<Vec<(AccountId, DateTime<Utc>)>, StoreError> {
        self.bill(self.accounts as u64, 80);
        Ok((0..self.accounts)
            .map(|a| {
                let last = if a % 100 == 0 {
                    self.now - Duration::hours(30)
                } else {
                    self.now - Duration::minutes(20)
                };
                (
                    AccountId::parse(&format!("acct-{a}")).unwrap_or_else(|_| unreachable!()),
                    last,
                )
            })
            .collect())
    }
    async fn sampled_events(
        &self,
        _: &TenantId,
        day: NaiveDate,
    ) -> Result<Vec<SampledEvent>, StoreError> {
        // 1 account in 32 sampled: its events of the day, one per hour per meter here.
        let mut out = Vec::new();
        for a in (0..self.accounts).step_by(32).take(50) {
            for (mi, d) in self.defs.iter().enumerate() {
                for h in 0..24u8 {
                    let at = day.and_hms_opt(u32::from(h), 0, 0).map(|t| t.and_utc());
                    if at.is_some_and(|t| t >= self.now) {
                        continue;
                    }
                    let n = self.per_hour(usize::from(h), a, mi);
                    for _ in 0..n {
                        out.push(SampledEvent {
                            account: AccountId::parse(&format!("acct-{a}"))
                                .unwrap_or_else(|_| unreachable!()),
                            day,
                            hour: h,
                            meter: d.meter.clone(),
                            stage: Stage::Delivered,
                            service_line: ServiceLine::default_line(),
                            quantity: 1.into(),
                        });
                    }
                }
            }
        }
        self.bill(out.len() as u64, 150);
        Ok(out)
    }
    async fn unmapped_changes(&self, _: &TenantId, _: NaiveDate) -> Result<u64, StoreError> {
        self.bill(0, 0);
        Ok(0)
    }
}

#[async_trait]
impl ReportStore for Sim {
    async fn put_report(&self, r: &AuditReport) -> Result<(), StoreError> {
        if let Ok(mut v) = self.reports.lock() {
            v.push(r.clone());
        }
        Ok(())
    }
    async fn latest_report(&self, _: &TenantId) -> Result<Option<AuditReport>, StoreError> {
        Ok(None)
    }
    async fn reports(
        &self,
        _: &TenantId,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
        _: usize,
        _: Option<&str>,
    ) -> Result<domain::ports::Page<AuditReport>, StoreError> {
        Ok(domain::ports::Page {
            items: Vec::new(),
            next: None,
        })
    }
}

async fn audit_bench(definitions: usize, critical: usize, accounts: usize) {
    let now = DateTime::parse_from_rfc3339("2026-11-25T14:20:00Z")
        .unwrap_or_else(|_| unreachable!())
        .with_timezone(&Utc);
    let defs: Vec<Definition> = (0..definitions)
        .map(|i| {
            let mut d = Definition::new(
                MeterName::parse(&format!("meter_{i:03}")).unwrap_or_else(|_| unreachable!()),
                now,
            );
            if i < critical {
                d.criticality = Criticality::Critical;
                d.expected_cadence_hours = Some(24);
            }
            d
        })
        .collect();
    let sim = Arc::new(Sim {
        defs,
        accounts,
        first_day: now.date_naive() - Duration::days(89),
        last_day: now.date_naive(),
        now,
        queries: AtomicU64::new(0),
        items: AtomicU64::new(0),
        read_units: AtomicU64::new(0),
        reports: Mutex::new(Vec::new()),
    });
    let alerts = Arc::new(memory::MemoryQueue::discarding());
    let audit = audit::Audit::new(sim.clone(), alerts.clone());
    let started = Instant::now();
    let out = audit.run_all(now).await;
    let secs = started.elapsed().as_secs_f64();
    let report = sim.reports.lock().ok().and_then(|r| r.first().cloned());
    println!(
        "audit job, {definitions} definitions ({critical} critical) x {accounts} accounts x 90 days: {secs:.2} s; \
         {} Queries, {} items read, {} read units (strongly consistent); {} findings, {} alerts, drift {} of {} windows; ok: {}",
        sim.queries.load(Ordering::Relaxed),
        sim.items.load(Ordering::Relaxed),
        sim.read_units.load(Ordering::Relaxed),
        report.as_ref().map_or(0, |r| r.findings_total),
        alerts.sent.load(Ordering::Relaxed),
        report.as_ref().map_or(0, |r| r.drift.len()),
        report.as_ref().map_or(0, |r| r.drift_windows_checked),
        out.is_ok(),
    );
}

async fn import_bench(events: usize) {
    use local::import::{digest, jsonl_records, Importer};
    let tenant = TenantId::parse("bench").unwrap_or_else(|_| unreachable!());
    let mut policy = domain::event::TenantPolicy {
        backfill_days: 3650,
        ..Default::default()
    };
    let mut defs = Vec::new();
    for m in ["api_calls", "storage_gb", "seats_active"] {
        let mut d = Definition::new(
            MeterName::parse(m).unwrap_or_else(|_| unreachable!()),
            Utc::now(),
        );
        if m == "api_calls" {
            d.aliases = vec![MeterName::parse("apicalls_v1").unwrap_or_else(|_| unreachable!())];
        }
        policy
            .meters
            .insert(d.meter.clone(), domain::event::MeterRule::from(&d));
        defs.push(d);
    }
    policy.governance = domain::governance::PolicyRules::from_definitions(&defs);
    let start = Utc::now() - Duration::days(300);
    let text: String = (0..events)
        .map(|i| {
            let meter = ["apicalls_v1", "api_calls", "storage_gb", "seats_active"][i % 4];
            format!(
                "{{\"id\":\"h-{i}\",\"account\":\"acct-{}\",\"meter\":\"{meter}\",\"quantity\":{},\"timestamp\":\"{}\"}}\n",
                i % 500,
                i % 7 + 1,
                (start + Duration::minutes(i as i64)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        })
        .collect();
    let ledger = memory::MemoryLedger::new();
    let importer = Importer {
        ledger: &ledger,
        quality: None,
        quarantine: None,
        journal: Some(&ledger),
        cfg: domain::pipeline::PipelineConfig::default(),
        batch: 1000,
    };
    let records = jsonl_records(&text);
    let d = digest(text.as_bytes());
    let noop = |_: usize| {};
    let started = Instant::now();
    let r = importer
        .run(&tenant, &policy, &records, &d, false, &noop)
        .await;
    let secs = started.elapsed().as_secs_f64();
    let again = Instant::now();
    let r2 = importer
        .run(&tenant, &policy, &records, &d, false, &noop)
        .await;
    let secs2 = again.elapsed().as_secs_f64();
    match (r, r2) {
        (Ok(r), Ok(r2)) => println!(
            "import, {events} JSONL events (1 in 4 under a legacy alias), in-memory ledger: {:.0} events/s ({secs:.2} s, {} counted, {} chunks); re-run {:.0} events/s ({} counted, {} already imported)",
            events as f64 / secs, r.counted, r.chunks, events as f64 / secs2, r2.counted, r2.already_imported
        ),
        (a, b) => println!("import failed: {:?} / {:?}", a.err(), b.err()),
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(async {
        if full {
            audit_bench(200, 20, 5000).await;
            import_bench(100_000).await;
        } else {
            audit_bench(20, 2, 200).await;
            import_bench(5_000).await;
        }
    });
}
