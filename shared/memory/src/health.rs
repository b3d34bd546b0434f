//! In-memory [`HealthStore`](domain::health::store::HealthStore) for pure tests and the simulated-store benchmark. It
//! counts the requests the DynamoDB adapter would make for each call.

use async_trait::async_trait;
use chrono::NaiveDate;
use domain::health::config::HealthConfig;
use domain::health::model::{Band, Baseline};
use domain::health::record::HealthRecord;
use domain::health::store::{HealthStore, RiskEntry, RiskRows, RunHeader, Save, ShardItem};
use domain::ids::{AccountId, Segment, TenantId};
use domain::keys;
use domain::ports::error::{Page, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
struct State {
    configs: HashMap<TenantId, HealthConfig>,
    plays: HashMap<TenantId, domain::health::plays::Plays>,
    tenants: Vec<TenantId>,
    runs: HashMap<(TenantId, String), RunHeader>,
    shards: HashMap<(TenantId, String), BTreeMap<u32, ShardItem>>,
    baselines: HashMap<(TenantId, String), BTreeMap<Segment, Baseline>>,
    latest: HashMap<(TenantId, AccountId), HealthRecord>,
    history: HashMap<(TenantId, AccountId), BTreeMap<NaiveDate, HealthRecord>>,
    /// Risk-index partition key -> sort key -> entry (as the DynamoDB items).
    risk: HashMap<String, BTreeMap<String, RiskEntry>>,
}

#[derive(Default)]
pub struct MemoryHealthStore {
    state: Mutex<State>,
    /// DynamoDB read / write requests the same calls would cost.
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    /// Count record writes without keeping them (benchmarks of 100,000 accounts).
    discard_records: bool,
}

fn poisoned() -> StoreError {
    StoreError::Service {
        op: "memory",
        message: "lock poisoned".into(),
    }
}

impl MemoryHealthStore {
    pub fn with_tenants(tenants: &[TenantId]) -> Self {
        let s = Self::default();
        if let Ok(mut st) = s.state.lock() {
            st.tenants = tenants.to_vec();
        }
        s
    }
    /// Like [`Self::with_tenants`], but `save_records` only counts.
    pub fn discarding(tenants: &[TenantId]) -> Self {
        let mut s = Self::with_tenants(tenants);
        s.discard_records = true;
        s
    }
    fn st(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        self.state.lock().map_err(|_| poisoned())
    }
    fn read(&self, n: u64) {
        self.reads.fetch_add(n, Ordering::Relaxed);
    }
    fn write(&self, n: u64) {
        self.writes.fetch_add(n, Ordering::Relaxed);
    }
    pub fn all_latest(&self) -> Vec<HealthRecord> {
        self.st()
            .map(|s| s.latest.values().cloned().collect())
            .unwrap_or_default()
    }
    /// Entries of the (segment, band) partitions: one per scored account.
    pub fn risk_entries(&self) -> usize {
        self.st()
            .map(|s| {
                s.risk
                    .iter()
                    .filter(|(pk, _)| pk.contains("#HEALTH#RISK#"))
                    .map(|(_, p)| p.len())
                    .sum()
            })
            .unwrap_or(0)
    }
    /// Entries of every risk-index partition (owner and band-change ones included).
    pub fn risk_items(&self) -> usize {
        self.st()
            .map(|s| s.risk.values().map(BTreeMap::len).sum())
            .unwrap_or(0)
    }
}

#[async_trait]
impl HealthStore for MemoryHealthStore {
    async fn get_health_config(&self, t: &TenantId) -> Result<Option<HealthConfig>, StoreError> {
        self.read(1);
        Ok(self.st()?.configs.get(t).cloned())
    }
    async fn put_health_config(&self, t: &TenantId, cfg: &HealthConfig) -> Result<(), StoreError> {
        self.write(1);
        self.st()?.configs.insert(t.clone(), cfg.clone());
        Ok(())
    }
    async fn get_plays(
        &self,
        t: &TenantId,
    ) -> Result<Option<domain::health::plays::Plays>, StoreError> {
        self.read(1);
        Ok(self.st()?.plays.get(t).cloned())
    }
    async fn put_plays(
        &self,
        t: &TenantId,
        plays: &domain::health::plays::Plays,
    ) -> Result<(), StoreError> {
        self.write(1);
        self.st()?.plays.insert(t.clone(), plays.clone());
        Ok(())
    }
    async fn list_tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        self.read(1);
        Ok(self.st()?.tenants.clone())
    }
    async fn put_run(&self, t: &TenantId, run: &RunHeader) -> Result<(), StoreError> {
        self.write(1);
        self.st()?
            .runs
            .insert((t.clone(), run.run.clone()), run.clone());
        Ok(())
    }
    async fn put_shard(
        &self,
        t: &TenantId,
        run: &str,
        shard: &ShardItem,
    ) -> Result<(), StoreError> {
        self.write(1);
        self.st()?
            .shards
            .entry((t.clone(), run.to_owned()))
            .or_default()
            .insert(shard.shard, shard.clone());
        Ok(())
    }
    async fn get_shard(
        &self,
        t: &TenantId,
        run: &str,
        shard: u32,
    ) -> Result<Option<ShardItem>, StoreError> {
        self.read(1);
        Ok(self
            .st()?
            .shards
            .get(&(t.clone(), run.to_owned()))
            .and_then(|s| s.get(&shard))
            .cloned())
    }
    async fn count_shards(&self, t: &TenantId, run: &str) -> Result<usize, StoreError> {
        self.read(1);
        Ok(self
            .st()?
            .shards
            .get(&(t.clone(), run.to_owned()))
            .map_or(0, BTreeMap::len))
    }
    async fn list_shards(&self, t: &TenantId, run: &str) -> Result<Vec<ShardItem>, StoreError> {
        let out: Vec<ShardItem> = self
            .st()?
            .shards
            .get(&(t.clone(), run.to_owned()))
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        // One Query page per MB of items, ~25 KB per 100-account shard.
        self.read((out.len() as u64).div_ceil(40).max(1));
        Ok(out)
    }
    async fn put_baselines(
        &self,
        t: &TenantId,
        run: &str,
        b: &BTreeMap<Segment, Baseline>,
    ) -> Result<(), StoreError> {
        self.write(1);
        self.st()?
            .baselines
            .insert((t.clone(), run.to_owned()), b.clone());
        Ok(())
    }
    async fn get_baselines(
        &self,
        t: &TenantId,
        run: &str,
    ) -> Result<Option<BTreeMap<Segment, Baseline>>, StoreError> {
        self.read(1);
        Ok(self
            .st()?
            .baselines
            .get(&(t.clone(), run.to_owned()))
            .cloned())
    }
    async fn latest(
        &self,
        t: &TenantId,
        accounts: &[AccountId],
    ) -> Result<HashMap<AccountId, HealthRecord>, StoreError> {
        self.read((accounts.len() as u64).div_ceil(100));
        let st = self.st()?;
        Ok(accounts
            .iter()
            .filter_map(|a| {
                st.latest
                    .get(&(t.clone(), a.clone()))
                    .map(|r| (a.clone(), r.clone()))
            })
            .collect())
    }
    async fn save_records(&self, t: &TenantId, saves: &[Save<'_>]) -> Result<(), StoreError> {
        if self.discard_records {
            let items: usize = saves
                .iter()
                .map(|s| {
                    let m = s.risk_moves(t);
                    2 + m.put.len() + m.delete.len()
                })
                .sum();
            self.write((items as u64).div_ceil(25));
            return Ok(());
        }
        let mut st = self.st()?;
        let mut items = 0u64;
        for s in saves {
            let r = s.record;
            st.history
                .entry((t.clone(), r.account.clone()))
                .or_default()
                .insert(r.as_of, r.clone());
            items += 2;
            let moves = s.risk_moves(t);
            for (pk, sk) in &moves.delete {
                if let Some(p) = st.risk.get_mut(pk) {
                    p.remove(sk);
                }
                items += 1;
            }
            if let Some(e) = &moves.entry {
                for (pk, sk) in moves.put {
                    st.risk.entry(pk).or_default().insert(sk, e.clone());
                    items += 1;
                }
            }
            st.latest.insert((t.clone(), r.account.clone()), r.clone());
        }
        // BatchWriteItem: 25 items per request.
        self.write(items.div_ceil(25));
        Ok(())
    }
    async fn history(
        &self,
        t: &TenantId,
        a: &AccountId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<HealthRecord>, StoreError> {
        self.read(1);
        Ok(self
            .st()?
            .history
            .get(&(t.clone(), a.clone()))
            .map(|h| h.range(from..=to).map(|(_, r)| r.clone()).collect())
            .unwrap_or_default())
    }
    async fn list_risk(
        &self,
        t: &TenantId,
        segment: Option<Segment>,
        bands: &[Band],
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<RiskEntry>, StoreError> {
        use std::ops::Bound;
        let st = self.st()?;
        // As the DynamoDB adapter reads: each (segment, band) partition from the cursor
        // on, at most limit + 1 rows (one Query each), merged by sort key.
        let from = cursor.map_or(Bound::Unbounded, |c| Bound::Excluded(c.to_owned()));
        let mut all: Vec<(&String, &RiskEntry)> = Vec::new();
        let mut more = false;
        for seg in Segment::ALL {
            if seg == Segment::Unassigned || segment.is_some_and(|s| s != seg) {
                continue;
            }
            for band in Band::ALL {
                if !bands.is_empty() && !bands.contains(&band) {
                    continue;
                }
                self.read(1);
                let Some(p) = st.risk.get(&keys::health_risk_pk(t, seg, band.as_str())) else {
                    continue;
                };
                let mut rows = p.range((from.clone(), Bound::Unbounded));
                all.extend(rows.by_ref().take(limit));
                more |= rows.next().is_some();
            }
        }
        all.sort_by(|a, b| a.0.cmp(b.0));
        more |= all.len() > limit;
        all.truncate(limit);
        let next = if more {
            all.last().map(|(k, _)| (*k).clone())
        } else {
            None
        };
        Ok(Page {
            items: all.into_iter().map(|(_, e)| e.clone()).collect(),
            next,
        })
    }
    async fn risk_partition(
        &self,
        pk: &str,
        start: Option<&str>,
        n: usize,
    ) -> Result<RiskRows, StoreError> {
        use std::ops::Bound;
        self.read(1);
        let st = self.st()?;
        let Some(p) = st.risk.get(pk) else {
            return Ok((Vec::new(), false));
        };
        let from = start.map_or(Bound::Unbounded, |c| Bound::Excluded(c.to_owned()));
        let mut rows = p.range((from, Bound::Unbounded));
        let page: Vec<(String, RiskEntry)> = rows
            .by_ref()
            .take(n)
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        Ok((page, rows.next().is_some()))
    }
}

/// A simulated tenant for the fan-out benchmark and pure runner tests: accounts and
/// their rollups come from the synthetic generator on demand (nothing is stored),
/// markers and queues live in memory. Every call counts as the DynamoDB / SQS
/// request it would be.
pub struct Simulated {
    pub tenant: TenantId,
    pub synth: domain::health::synth::Synth,
    index: HashMap<AccountId, usize>,
    markers: crate::MemoryMarkers,
    pub reads: AtomicU64,
    pub writes: AtomicU64,
}

impl Simulated {
    pub fn new(tenant: TenantId, synth: domain::health::synth::Synth) -> Self {
        let index = synth
            .accounts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.subject.account.clone(), i))
            .collect();
        Self {
            tenant,
            synth,
            index,
            markers: crate::MemoryMarkers::default(),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl domain::ports::AccountStore for Simulated {
    async fn put_account(
        &self,
        _: &TenantId,
        _: &domain::account::AccountProfile,
    ) -> Result<domain::account::AccountProfile, StoreError> {
        Err(StoreError::Service {
            op: "simulated",
            message: "read-only".into(),
        })
    }
    async fn get_account(
        &self,
        _: &TenantId,
        a: &AccountId,
    ) -> Result<Option<domain::account::AccountProfile>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(self.index.get(a).map(|i| profile(&self.synth.accounts[*i])))
    }
    async fn list_accounts(
        &self,
        t: &TenantId,
        _: Option<Segment>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<domain::account::AccountProfile>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if *t != self.tenant {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let start: usize = match cursor {
            None => 0,
            Some(c) => c.parse().map_err(|_| StoreError::BadCursor)?,
        };
        let end = (start + limit).min(self.synth.accounts.len());
        Ok(Page {
            items: self.synth.accounts[start.min(end)..end]
                .iter()
                .map(profile)
                .collect(),
            next: (end < self.synth.accounts.len()).then(|| end.to_string()),
        })
    }
}

fn profile(a: &domain::health::synth::SynthAccount) -> domain::account::AccountProfile {
    let now = chrono::Utc::now();
    domain::account::AccountProfile {
        account: a.subject.account.clone(),
        name: a.name.clone(),
        segment: a.subject.segment,
        owner_email: Some("csm@example.com".into()),
        onboarding_date: a.subject.onboarding_date,
        renewal_date: None,
        crm_ids: BTreeMap::from([(
            "hubspot_company_id".to_owned(),
            a.subject
                .account
                .as_str()
                .trim_start_matches("acct-")
                .to_owned(),
        )]),
        crm_properties: BTreeMap::new(),
        created_at: now,
        updated_at: now,
    }
}

#[async_trait]
impl domain::ports::UsageReader for Simulated {
    async fn read_rollups(
        &self,
        _: &TenantId,
        scope: &domain::keys::Scope,
        from: NaiveDate,
        to: NaiveDate,
        _: Option<&domain::ids::MeterName>,
    ) -> Result<Vec<domain::rollup::RollupRow>, StoreError> {
        use domain::rollup::{Bucket, RollupKey};
        // One Query; ~400 rows of ~500 bytes stay within one 1 MB page.
        self.reads.fetch_add(1, Ordering::Relaxed);
        let domain::keys::Scope::Account(a) = scope else {
            return Ok(Vec::new());
        };
        let Some(i) = self.index.get(a) else {
            return Ok(Vec::new());
        };
        let acct = &self.synth.accounts[*i];
        let mut rows = Vec::new();
        let mut day = from;
        while day <= to {
            for (m, q) in self.synth.meters().iter().zip(self.synth.day(acct, day)) {
                if q > 0.0 {
                    let quantity = rust_decimal::Decimal::from_f64_retain(q).unwrap_or_default();
                    let mut hours = [Bucket::default(); 24];
                    hours[12] = Bucket {
                        quantity,
                        events: 1,
                    };
                    rows.push(domain::rollup::RollupRow {
                        key: RollupKey {
                            scope: scope.clone(),
                            day,
                            meter: m.clone(),
                            stage: domain::ids::Stage::Delivered,
                            service_line: domain::ids::ServiceLine::default_line(),
                        },
                        total: Bucket {
                            quantity,
                            events: 1,
                        },
                        hours,
                    });
                }
            }
            day += chrono::Duration::days(1);
        }
        Ok(rows)
    }
}

/// The simulated tenant has no meter registry entries: the generator sends the
/// built-in meters, so the built-in config applies (as it did before the registry
/// drove scoring, keeping generator backtests comparable).
#[async_trait]
impl domain::ports::DefinitionStore for Simulated {
    async fn put_definition(
        &self,
        _: &TenantId,
        _: &domain::definition::Definition,
    ) -> Result<(), StoreError> {
        Err(StoreError::Service {
            op: "simulated",
            message: "read-only".into(),
        })
    }
    async fn get_definition(
        &self,
        _: &TenantId,
        _: &domain::ids::MeterName,
    ) -> Result<Option<domain::definition::Definition>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }
    async fn list_definitions(
        &self,
        _: &TenantId,
    ) -> Result<Vec<domain::definition::Definition>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(Vec::new())
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
        Err(StoreError::Service {
            op: "simulated",
            message: "read-only".into(),
        })
    }
}

#[async_trait]
impl domain::ports::MarkerStore for Simulated {
    async fn claim_marker(
        &self,
        tenant: &TenantId,
        kind: domain::ports::MarkerKind,
        key: &str,
        owner: &str,
        expires_at: i64,
    ) -> Result<domain::ports::MarkerClaim, StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.markers
            .claim_marker(tenant, kind, key, owner, expires_at)
            .await
    }
    async fn finish_marker(
        &self,
        tenant: &TenantId,
        kind: domain::ports::MarkerKind,
        key: &str,
    ) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.markers.finish_marker(tenant, kind, key).await
    }
}

pub use crate::queue::MemoryQueue;

/// Runs a whole tenant's score through in-memory queues (used by the pure tests
/// and the simulated-store benchmark): start, then drain the shard queue, each
/// message handled once (or twice with `redeliver`, as SQS may).
pub async fn run_in_memory(
    runner: &domain::health::run::HealthRunner,
    shards: &MemoryQueue,
    tenant: &TenantId,
    as_of: NaiveDate,
    redeliver: bool,
) -> Result<
    (
        domain::health::run::RunStarted,
        domain::health::run::ShardOutcome,
    ),
    domain::health::run::RunError,
> {
    use chrono::Utc;
    use domain::health::run::ShardOutcome;
    let started = runner.start(tenant, as_of, Utc::now()).await?;
    let mut total = ShardOutcome::default();
    while let Some(body) = shards.pop() {
        let times = if redeliver { 2 } else { 1 };
        for _ in 0..times {
            let o = runner.process(&body).await?;
            total.measured += o.measured;
            total.scored += o.scored;
            total.insufficient += o.insufficient;
            total.alerts += o.alerts;
            total.crm_updated += o.crm_updated;
            total.crm_failed += o.crm_failed;
            total.started_scoring |= o.started_scoring;
        }
    }
    Ok((started, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::health::run::*;
    use domain::health::synth::{Synth, SynthConfig};
    use domain::ids::{AccountId, TenantId};
    use proptest::prelude::*;
    use std::sync::Arc;

    fn sim(accounts: usize) -> (TenantId, Arc<Simulated>, NaiveDate) {
        let t = TenantId::parse("sim").unwrap();
        let end = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        let synth = Synth::new(SynthConfig {
            accounts,
            seed: 3,
            start: end - chrono::Duration::days(300),
            end,
            churn_rate: 0.2,
        });
        (t.clone(), Arc::new(Simulated::new(t, synth)), end)
    }

    #[test]
    fn a_scored_account_links_its_hubspot_company_for_its_alerts() {
        let now = chrono::Utc::now();
        let p = domain::account::AccountProfile {
            account: AccountId::parse("acme").unwrap(),
            name: "Acme".into(),
            segment: Segment::Smb,
            owner_email: None,
            onboarding_date: None,
            renewal_date: None,
            crm_ids: [
                ("hubspot_portal_id".to_owned(), "77".to_owned()),
                ("hubspot_company_id".to_owned(), "5123".to_owned()),
            ]
            .into(),
            crm_properties: Default::default(),
            created_at: now,
            updated_at: now,
        };
        assert_eq!(
            ShardAccount::of(&p).info.crm_url.as_deref(),
            Some("https://app.hubspot.com/contacts/77/company/5123")
        );
    }

    /// A runner over the simulated tenant with in-memory stores and queues.
    struct Wired {
        runner: HealthRunner,
        health: Arc<MemoryHealthStore>,
        shards: Arc<MemoryQueue>,
        alerts: Arc<MemoryQueue>,
        summaries: Arc<crate::MemoryBandSummaries>,
    }

    impl Wired {
        fn new(t: &TenantId, sim: &Arc<Simulated>) -> Self {
            let health = Arc::new(MemoryHealthStore::with_tenants(std::slice::from_ref(t)));
            let shards = Arc::new(MemoryQueue::default());
            let alerts = Arc::new(MemoryQueue::default());
            let summaries = Arc::new(crate::MemoryBandSummaries::default());
            let runner = HealthRunner {
                health: health.clone(),
                accounts: sim.clone(),
                usage: sim.clone(),
                definitions: sim.clone(),
                markers: sim.clone(),
                band_summaries: summaries.clone(),
                shards: shards.clone(),
                alerts: alerts.clone(),
                crm: None,
                shard_size: 100,
                concurrency: 4,
            };
            Self {
                runner,
                health,
                shards,
                alerts,
                summaries,
            }
        }
    }

    #[tokio::test]
    async fn the_fan_out_scores_every_account_exactly_once_even_when_shards_are_redelivered() {
        let (t, sim, as_of) = sim(1050);
        let w = Wired::new(&t, &sim);
        let (runner, health, shards, alerts, summaries) =
            (&w.runner, &w.health, &w.shards, &w.alerts, &w.summaries);
        let (started, out) = run_in_memory(runner, shards, &t, as_of, true)
            .await
            .unwrap();
        assert_eq!((started.accounts, started.shards), (1050, 11));
        // Redelivered: every shard measured and scored twice, results the same.
        assert_eq!(out.measured, 2 * 1050);
        assert_eq!(out.scored + out.insufficient, 2 * 1050);
        let latest = health.all_latest();
        assert_eq!(latest.len(), 1050);
        let mut ids: Vec<&str> = latest.iter().map(|r| r.account.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 1050);
        let scored = latest.iter().filter(|r| r.score.is_some()).count();
        assert_eq!(
            health.risk_entries(),
            scored,
            "one risk-index entry per scored account"
        );
        // The day's band summary counts the bands the score phase stored.
        use domain::health::bands::BandSummaryStore;
        let days = summaries.band_summaries(&t, as_of, as_of).await.unwrap();
        assert_eq!(days.len(), 1, "one summary for the day");
        let stored = domain::health::bands::DailyBands::count(
            as_of,
            &started.run,
            latest.iter().map(|r| (r.segment, r.band)),
        );
        assert_eq!(days[0], stored);
        assert!(stored.total().red > 0 && stored.total().green > 0);
        // Alerts: each key raised by both deliveries, the same keys (notify dedupes).
        let mut keys: Vec<String> = std::iter::from_fn(|| alerts.pop())
            .map(|b| {
                serde_json::from_str::<domain::alert::Alert>(&b)
                    .unwrap()
                    .key
            })
            .collect();
        let raised = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(raised, 2 * keys.len());
        assert!(!keys.is_empty());
    }

    #[tokio::test]
    async fn the_risk_index_pages_every_entry_once_riskiest_first() {
        let (t, sim, as_of) = sim(300);
        let w = Wired::new(&t, &sim);
        let health = &w.health;
        run_in_memory(&w.runner, &w.shards, &t, as_of, false)
            .await
            .unwrap();
        let scored = health.risk_entries();
        assert!(scored > 100, "{scored}");
        for bands in [vec![], vec![Band::Red]] {
            let (mut seen, mut cursor) = (Vec::new(), None::<String>);
            loop {
                let page = health
                    .list_risk(&t, None, &bands, 7, cursor.as_deref())
                    .await
                    .unwrap();
                assert!(page.items.len() <= 7);
                seen.extend(page.items);
                match page.next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
            let keys: Vec<String> = seen
                .iter()
                .map(|e| keys::health_risk_sk(e.score, &e.account))
                .collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "in order, each once");
            assert!(seen
                .iter()
                .all(|e| bands.is_empty() || bands.contains(&e.band)));
            if bands.is_empty() {
                assert_eq!(seen.len(), scored, "every entry");
            }
        }
    }

    #[tokio::test]
    async fn a_filter_that_skips_a_long_run_of_an_owners_rows_ends_short_pages_on_a_cursor() {
        use domain::health::store::{RiskSelect, RISK_FILTERED_READ, RISK_QUERIES_PER_PARTITION};
        let t = TenantId::parse("owners").unwrap();
        let health = MemoryHealthStore::default();
        // 4,300 red accounts of one owner sort before its 120 green ones.
        let skipped = RISK_FILTERED_READ * RISK_QUERIES_PER_PARTITION + 300;
        let records: Vec<HealthRecord> = (0..skipped + 120)
            .map(|i| {
                let score = if i < skipped { 10.0 } else { 80.0 };
                serde_json::from_value(serde_json::json!({
                    "account": format!("acct-{i:05}"), "segment": "smb", "as_of": "2026-11-25",
                    "state": "scored", "score": score, "band": if i < skipped { "red" } else { "green" },
                    "info": {"owner": "csm@example.com"}, "computed_at": "2026-11-25T06:00:00Z",
                }))
                .unwrap()
            })
            .collect();
        let saves: Vec<Save> = records
            .iter()
            .map(|r| Save {
                record: r,
                previous_slot: None,
            })
            .collect();
        health.save_records(&t, &saves).await.unwrap();
        let sel = RiskSelect {
            owner: Some("CSM@example.com".into()),
            bands: vec![Band::Green],
            ..RiskSelect::default()
        };
        let today = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        let (mut pages, mut seen, mut cursor) = (Vec::new(), Vec::new(), None::<String>);
        loop {
            let before = health.reads.load(Ordering::Relaxed);
            let page = health
                .list_risk_in(&t, &sel, today, 50, cursor.as_deref())
                .await
                .unwrap();
            pages.push((
                page.items.len(),
                health.reads.load(Ordering::Relaxed) - before,
            ));
            seen.extend(page.items.into_iter().map(|e| e.account.to_string()));
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(
            pages[0],
            (0, RISK_QUERIES_PER_PARTITION as u64),
            "the budget spent on red rows: an empty page that goes on"
        );
        assert_eq!(pages[1].0, 50, "then full pages of green");
        let expected: Vec<String> = (skipped..skipped + 120)
            .map(|i| format!("acct-{i:05}"))
            .collect();
        assert_eq!(seen, expected, "every green account once, in order");
    }

    proptest! {
        #[test]
        fn sharding_puts_every_account_in_exactly_one_shard(n in 0usize..2000, size in 1usize..300) {
            let items: Vec<usize> = (0..n).collect();
            let shards = shard(&items, size);
            prop_assert!(shards.iter().all(|s| !s.is_empty() && s.len() <= size));
            let flat: Vec<usize> = shards.into_iter().flatten().collect();
            prop_assert_eq!(flat, items);
        }
    }
}
