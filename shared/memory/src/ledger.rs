//! An in-memory [`LedgerStore`] for pure tests of the counting protocol, with fault
//! injection: any call can fail before it takes effect, or take effect and then fail
//! (a crash after writing, before acknowledging). Like the DynamoDB adapter it keeps
//! the audit's drift sample (step 2 of a claim), readable with
//! [`crate::suite::SampleReader`].

use async_trait::async_trait;
use chrono::{NaiveDate, Timelike};
use domain::audit::kpi::SampledEvent;
use domain::audit::store::{sampled, DEFAULT_AUDIT_SAMPLE};
use domain::chunk::Chunk;
use domain::ids::{AccountId, Segment, TenantId};
use domain::keys::{ledger_pk, part_pk, sample_pk, sample_sk, unit_sk};
use domain::pipeline::{ChunkJournal, Claim, LedgerEntry, LedgerStore, UnitRef, UnitsOutcome};
use domain::ports::StoreError;
use domain::rollup::{RollupDelta, RollupKey};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

/// When an injected fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails and changes nothing.
    Before,
    /// The call's write lands, then the caller sees an error.
    After,
}

#[derive(Default)]
struct State {
    segments: HashMap<(TenantId, AccountId), Segment>,
    ledger: HashMap<String, (String, u32, Segment)>,
    parts: HashSet<(String, String)>,
    rollups: BTreeMap<(TenantId, RollupKey), RollupDelta>,
    journal: BTreeMap<(TenantId, String), Chunk>,
    /// The drift sample: (sample_pk, sample_sk) -> the copied event.
    samples: BTreeMap<(String, String), SampledEvent>,
    calls: usize,
    faults: HashMap<usize, Fault>,
}

pub struct MemoryLedger {
    state: Mutex<State>,
    /// Accounts whose events are copied to the drift sample: one in `audit_sample`
    /// ([`sampled`]); 1 samples every account, 0 none.
    pub audit_sample: u32,
}

impl Default for MemoryLedger {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            audit_sample: DEFAULT_AUDIT_SAMPLE,
        }
    }
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_segment(&self, tenant: &TenantId, account: &AccountId, segment: Segment) {
        self.lock()
            .segments
            .insert((tenant.clone(), account.clone()), segment);
    }

    /// Makes the `n`-th store call from now (0-based) fail.
    pub fn fail_call(&self, n: usize, fault: Fault) {
        let mut s = self.lock();
        let at = s.calls + n;
        s.faults.insert(at, fault);
    }

    /// Withdraws every fault not struck yet.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub fn rollups(&self) -> BTreeMap<(TenantId, RollupKey), RollupDelta> {
        self.lock().rollups.clone()
    }

    pub fn calls(&self) -> usize {
        self.lock().calls
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn injected() -> StoreError {
    StoreError::Service {
        op: "memory",
        message: "injected fault".into(),
    }
}

impl State {
    fn next_fault(&mut self) -> Option<Fault> {
        let n = self.calls;
        self.calls += 1;
        self.faults.remove(&n)
    }
}

#[async_trait]
impl ChunkJournal for MemoryLedger {
    async fn begin(&self, chunk: &Chunk) -> Result<(), StoreError> {
        let mut s = self.lock();
        let fault = s.next_fault();
        if fault == Some(Fault::Before) {
            return Err(injected());
        }
        s.journal
            .insert((chunk.tenant.clone(), chunk.chunk.clone()), chunk.clone());
        match fault {
            Some(Fault::After) => Err(injected()),
            _ => Ok(()),
        }
    }

    async fn finish(&self, tenant: &TenantId, chunk: &str) -> Result<(), StoreError> {
        let mut s = self.lock();
        let fault = s.next_fault();
        if fault == Some(Fault::Before) {
            return Err(injected());
        }
        s.journal.remove(&(tenant.clone(), chunk.to_owned()));
        match fault {
            Some(Fault::After) => Err(injected()),
            _ => Ok(()),
        }
    }

    async fn unfinished(&self, tenant: &TenantId) -> Result<Vec<Chunk>, StoreError> {
        let mut s = self.lock();
        if s.next_fault().is_some() {
            return Err(injected());
        }
        Ok(s.journal
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, c)| c.clone())
            .collect())
    }
}

#[async_trait]
impl LedgerStore for MemoryLedger {
    async fn segments(
        &self,
        tenant: &TenantId,
        accounts: &[AccountId],
    ) -> Result<HashMap<AccountId, Segment>, StoreError> {
        let s = self.lock();
        Ok(accounts
            .iter()
            .filter_map(|a| {
                s.segments
                    .get(&(tenant.clone(), a.clone()))
                    .map(|seg| (a.clone(), *seg))
            })
            .collect())
    }

    async fn claim(&self, e: &LedgerEntry<'_>) -> Result<Claim, StoreError> {
        let mut s = self.lock();
        let fault = s.next_fault();
        if fault == Some(Fault::Before) {
            return Err(injected());
        }
        let key = ledger_pk(e.tenant, e.source, &e.event.id);
        let result = match s.ledger.get(&key) {
            Some((chunk, pos, segment)) => Claim::Existing {
                chunk: chunk.clone(),
                pos: *pos,
                segment: *segment,
            },
            None => {
                s.ledger.insert(key, (e.chunk.to_owned(), e.pos, e.segment));
                Claim::New
            }
        };
        if fault == Some(Fault::After) {
            return Err(injected());
        }
        Ok(result)
    }

    /// One call for the group, as the DynamoDB adapter's transaction: a fault before
    /// makes none of the claims, a fault after makes all of them and then fails.
    async fn claim_group(&self, entries: &[LedgerEntry<'_>]) -> Result<Vec<Claim>, StoreError> {
        let mut s = self.lock();
        let fault = s.next_fault();
        if fault == Some(Fault::Before) {
            return Err(injected());
        }
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let key = ledger_pk(e.tenant, e.source, &e.event.id);
            out.push(match s.ledger.get(&key) {
                Some((chunk, pos, segment)) => Claim::Existing {
                    chunk: chunk.clone(),
                    pos: *pos,
                    segment: *segment,
                },
                None => {
                    s.ledger.insert(key, (e.chunk.to_owned(), e.pos, e.segment));
                    Claim::New
                }
            });
        }
        if fault == Some(Fault::After) {
            return Err(injected());
        }
        Ok(out)
    }

    async fn sample(&self, e: &LedgerEntry<'_>) -> Result<(), StoreError> {
        let mut s = self.lock();
        let fault = s.next_fault();
        if fault == Some(Fault::Before) {
            return Err(injected());
        }
        if sampled(&e.event.account, self.audit_sample) {
            let ev = e.event;
            let day = ev.timestamp.date_naive();
            let copy = SampledEvent {
                account: ev.account.clone(),
                day,
                hour: u8::try_from(ev.timestamp.hour()).unwrap_or(23),
                meter: ev.meter.clone(),
                stage: ev.stage,
                service_line: ev.service_line.clone(),
                quantity: ev.quantity,
            };
            s.samples.insert(
                (
                    sample_pk(e.tenant, day),
                    sample_sk(&ev.account, e.source, &ev.id),
                ),
                copy,
            );
        }
        if fault == Some(Fault::After) {
            return Err(injected());
        }
        Ok(())
    }

    async fn apply_units(
        &self,
        tenant: &TenantId,
        units: &[UnitRef<'_>],
        deltas: &[(RollupKey, RollupDelta)],
    ) -> Result<UnitsOutcome, StoreError> {
        let mut s = self.lock();
        let fault = s.next_fault();
        if fault == Some(Fault::Before) {
            return Err(injected());
        }
        // Like DynamoDB's cancellation reasons: every unit whose marker exists is
        // named, and then nothing is written.
        let markers: Vec<(String, String)> = units
            .iter()
            .map(|u| (part_pk(tenant, u.chunk), unit_sk(u.bucket, u.piece)))
            .collect();
        // Like DynamoDB: one transaction may not touch an item twice.
        let distinct_markers: HashSet<&(String, String)> = markers.iter().collect();
        let distinct_items: HashSet<&RollupKey> = deltas.iter().map(|(k, _)| k).collect();
        if distinct_markers.len() != markers.len() || distinct_items.len() != deltas.len() {
            return Err(StoreError::Service {
                op: "apply_units",
                message: "transaction request cannot include multiple operations on one item"
                    .into(),
            });
        }
        let existing: Vec<usize> = markers
            .iter()
            .enumerate()
            .filter(|(_, m)| s.parts.contains(*m))
            .map(|(i, _)| i)
            .collect();
        let result = if existing.is_empty() {
            s.parts.extend(markers);
            for (k, d) in deltas {
                s.rollups
                    .entry((tenant.clone(), k.clone()))
                    .or_default()
                    .merge(d);
            }
            UnitsOutcome::Applied
        } else {
            UnitsOutcome::AlreadyApplied(existing)
        };
        if fault == Some(Fault::After) {
            return Err(injected());
        }
        Ok(result)
    }
}

#[async_trait]
impl crate::suite::SampleReader for MemoryLedger {
    /// The drift sample of one tenant and day, in key order.
    async fn sampled_events(
        &self,
        tenant: &TenantId,
        day: NaiveDate,
    ) -> Result<Vec<SampledEvent>, StoreError> {
        let pk = sample_pk(tenant, day);
        Ok(self
            .lock()
            .samples
            .iter()
            .filter(|((p, _), _)| *p == pk)
            .map(|(_, e)| e.clone())
            .collect())
    }
}
