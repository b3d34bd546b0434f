//! In-memory [`HealthStore`] for pure tests and the simulated-store benchmark. It
//! counts the requests the DynamoDB adapter would make for each call.

use super::config::HealthConfig;
use super::model::{Band, Baseline};
use super::record::HealthRecord;
use super::store::{HealthStore, RiskEntry, RunHeader, Save, ShardItem};
use crate::ids::{AccountId, Segment, TenantId};
use crate::keys;
use crate::ports::error::{Page, StoreError};
use async_trait::async_trait;
use chrono::NaiveDate;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
struct State {
    configs: HashMap<TenantId, HealthConfig>,
    tenants: Vec<TenantId>,
    runs: HashMap<(TenantId, String), RunHeader>,
    shards: HashMap<(TenantId, String), BTreeMap<u32, ShardItem>>,
    baselines: HashMap<(TenantId, String), BTreeMap<Segment, Baseline>>,
    latest: HashMap<(TenantId, AccountId), HealthRecord>,
    history: HashMap<(TenantId, AccountId), BTreeMap<NaiveDate, HealthRecord>>,
    /// (tenant, segment, band) -> sort key -> entry
    risk: HashMap<(TenantId, Segment, Band), BTreeMap<String, RiskEntry>>,
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
    pub fn risk_entries(&self) -> usize {
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
                    2 + usize::from(s.record.score.is_some())
                        + usize::from(s.previous_slot.is_some())
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
            let new_slot = super::store::RiskSlot::of(r);
            if let Some(old) = &s.previous_slot {
                if Some(old) != new_slot.as_ref() {
                    if let Some(p) = st.risk.get_mut(&(t.clone(), old.segment, old.band)) {
                        p.remove(&keys::health_risk_sk(old.score, &r.account));
                    }
                    items += 1;
                }
            }
            if let Some(e) = RiskEntry::of(r) {
                st.risk
                    .entry((t.clone(), e.segment, e.band))
                    .or_default()
                    .insert(keys::health_risk_sk(e.score, &r.account), e);
                items += 1;
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
        let st = self.st()?;
        let mut all: Vec<(String, RiskEntry)> = Vec::new();
        for ((tt, seg, band), p) in &st.risk {
            if tt != t
                || segment.is_some_and(|s| s != *seg)
                || (!bands.is_empty() && !bands.contains(band))
            {
                continue;
            }
            self.read(1);
            all.extend(
                p.iter()
                    .filter(|(k, _)| cursor.is_none_or(|c| k.as_str() > c))
                    .map(|(k, e)| (k.clone(), e.clone())),
            );
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let more = all.len() > limit;
        all.truncate(limit);
        let next = if more {
            all.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Ok(Page {
            items: all.into_iter().map(|(_, e)| e).collect(),
            next,
        })
    }
}

/// A simulated tenant for the fan-out benchmark and pure runner tests: accounts and
/// their rollups come from the synthetic generator on demand (nothing is stored),
/// markers and queues live in memory. Every call counts as the DynamoDB / SQS
/// request it would be.
pub struct Simulated {
    pub tenant: TenantId,
    pub synth: super::synth::Synth,
    index: HashMap<AccountId, usize>,
    markers: Mutex<HashMap<String, (String, bool)>>,
    pub reads: AtomicU64,
    pub writes: AtomicU64,
}

impl Simulated {
    pub fn new(tenant: TenantId, synth: super::synth::Synth) -> Self {
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
            markers: Mutex::default(),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl crate::ports::AccountStore for Simulated {
    async fn put_account(
        &self,
        _: &TenantId,
        _: &crate::account::AccountProfile,
    ) -> Result<crate::account::AccountProfile, StoreError> {
        Err(StoreError::Service {
            op: "simulated",
            message: "read-only".into(),
        })
    }
    async fn get_account(
        &self,
        _: &TenantId,
        a: &AccountId,
    ) -> Result<Option<crate::account::AccountProfile>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(self.index.get(a).map(|i| profile(&self.synth.accounts[*i])))
    }
    async fn list_accounts(
        &self,
        t: &TenantId,
        _: Option<Segment>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<crate::account::AccountProfile>, StoreError> {
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

fn profile(a: &super::synth::SynthAccount) -> crate::account::AccountProfile {
    let now = chrono::Utc::now();
    crate::account::AccountProfile {
        account: a.subject.account.clone(),
        name: a.name.clone(),
        segment: a.subject.segment,
        owner_email: Some("csm@example.com".into()),
        onboarding_date: a.subject.onboarding_date,
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
impl crate::ports::UsageReader for Simulated {
    async fn read_rollups(
        &self,
        _: &TenantId,
        scope: &crate::keys::Scope,
        from: NaiveDate,
        to: NaiveDate,
        _: Option<&crate::ids::MeterName>,
    ) -> Result<Vec<crate::rollup::RollupRow>, StoreError> {
        use crate::rollup::{Bucket, RollupKey};
        // One Query; ~400 rows of ~500 bytes stay within one 1 MB page.
        self.reads.fetch_add(1, Ordering::Relaxed);
        let crate::keys::Scope::Account(a) = scope else {
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
                    rows.push(crate::rollup::RollupRow {
                        key: RollupKey {
                            scope: scope.clone(),
                            day,
                            meter: m.clone(),
                            stage: crate::ids::Stage::Delivered,
                            service_line: crate::ids::ServiceLine::default_line(),
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
impl crate::ports::DefinitionStore for Simulated {
    async fn put_definition(
        &self,
        _: &TenantId,
        _: &crate::definition::Definition,
    ) -> Result<(), StoreError> {
        Err(StoreError::Service {
            op: "simulated",
            message: "read-only".into(),
        })
    }
    async fn get_definition(
        &self,
        _: &TenantId,
        _: &crate::ids::MeterName,
    ) -> Result<Option<crate::definition::Definition>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }
    async fn list_definitions(
        &self,
        _: &TenantId,
    ) -> Result<Vec<crate::definition::Definition>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(Vec::new())
    }
    async fn governance_policy(
        &self,
        _: &TenantId,
    ) -> Result<Option<crate::quarantine::PolicyRecord>, StoreError> {
        Ok(None)
    }
    async fn put_governance_policy(
        &self,
        _: &TenantId,
        _: &crate::quarantine::PolicyRecord,
    ) -> Result<(), StoreError> {
        Err(StoreError::Service {
            op: "simulated",
            message: "read-only".into(),
        })
    }
}

#[async_trait]
impl crate::ports::MarkerStore for Simulated {
    async fn claim_marker(
        &self,
        _: &TenantId,
        _: crate::ports::MarkerKind,
        key: &str,
        owner: &str,
        _: i64,
    ) -> Result<crate::ports::MarkerClaim, StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let mut m = self.markers.lock().map_err(|_| poisoned())?;
        Ok(match m.get(key) {
            None => {
                m.insert(key.to_owned(), (owner.to_owned(), false));
                crate::ports::MarkerClaim::New
            }
            Some((o, done)) if o == owner => crate::ports::MarkerClaim::Mine {
                done: *done,
                age: chrono::Duration::zero(),
            },
            Some(_) => crate::ports::MarkerClaim::Other,
        })
    }
    async fn finish_marker(
        &self,
        _: &TenantId,
        _: crate::ports::MarkerKind,
        key: &str,
    ) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        if let Some(v) = self.markers.lock().map_err(|_| poisoned())?.get_mut(key) {
            v.1 = true;
        }
        Ok(())
    }
}

/// An in-memory queue: bodies sent are kept in order for the caller to drain.
#[derive(Default)]
pub struct MemoryQueue {
    pub bodies: Mutex<std::collections::VecDeque<String>>,
    pub requests: AtomicU64,
}

impl MemoryQueue {
    pub fn pop(&self) -> Option<String> {
        self.bodies.lock().ok()?.pop_front()
    }
    pub fn len(&self) -> usize {
        self.bodies.lock().map(|b| b.len()).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl crate::queue::EventQueue for MemoryQueue {
    async fn send(&self, bodies: &[String]) -> Vec<Result<(), crate::queue::QueueError>> {
        self.requests
            .fetch_add(bodies.len().div_ceil(10) as u64, Ordering::Relaxed);
        match self.bodies.lock() {
            Ok(mut q) => {
                q.extend(bodies.iter().cloned());
                bodies.iter().map(|_| Ok(())).collect()
            }
            Err(_) => bodies
                .iter()
                .map(|_| Err(crate::queue::QueueError::Send("poisoned".into())))
                .collect(),
        }
    }
}
