//! The exactly-once counting protocol, independent of the storage behind it.
//!
//! 1. **Claim**: each event of a chunk is written to the ledger with a conditional put
//!    keyed by (tenant, source, id), recording the chunk and position that claimed it
//!    and the account's segment at that moment. A failed condition tells us who owns
//!    the event: another chunk (a duplicate: skip it) or this very chunk (our own
//!    claim from an earlier, interrupted delivery: still ours to count).
//! 2. **Apply**: the events this chunk owns are pre-aggregated into rollup deltas and
//!    split deterministically into units (by a stable hash of the rollup item into
//!    [`UNIT_BUCKETS`] buckets, then cut into pieces). Units of the same bucket from
//!    the chunks of one invocation are packed into one transaction that adds their
//!    merged deltas and creates one marker per unit that must not exist yet. A
//!    redelivery, in whatever mix of messages, recomputes the same units; a marker that
//!    exists drops exactly its unit from the pack, and the rest is retried.
//!
//! Nothing is marked "seen" before it is counted: a claim without its unit is finished
//! by the redelivery, and a unit is atomic with its marker. See docs/adr/0001.

use crate::chunk::Chunk;
use crate::event::UsageEvent;
use crate::ids::{AccountId, Segment, Source, TenantId};
use crate::ports::error::StoreError;
pub use crate::rollup::UNIT_BUCKETS;
use crate::rollup::{aggregate, units, RollupDelta, RollupKey, Unit};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Actions in one `TransactWriteItems` (DynamoDB's limit).
pub const MAX_TRANSACT_ACTIONS: usize = 100;

/// One ledger record: an accepted event and who claimed it.
#[derive(Debug, Clone)]
pub struct LedgerEntry<'a> {
    pub tenant: &'a TenantId,
    pub source: Source,
    pub chunk: &'a str,
    pub pos: u32,
    pub segment: Segment,
    pub event: &'a UsageEvent,
    pub received_at: DateTime<Utc>,
    /// Epoch seconds after which DynamoDB TTL may delete the record.
    pub expires_at: i64,
}

/// The result of a conditional ledger put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    New,
    Existing {
        chunk: String,
        pos: u32,
        segment: Segment,
    },
}

/// What [`LedgerStore::apply_units`] did with a pack of units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitsOutcome {
    /// Every unit's marker was written and the merged deltas added, atomically.
    Applied,
    /// Nothing was written: the markers of these units (indexes into the pack) exist,
    /// so an earlier delivery applied them. Never empty.
    AlreadyApplied(Vec<usize>),
}

/// Names one unit of a chunk's rollup deltas: its marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRef<'a> {
    pub chunk: &'a str,
    pub bucket: u32,
    pub piece: u32,
    /// Rollup items in the unit (kept on the marker, for the audit).
    pub items: usize,
    pub expires_at: i64,
}

/// Storage the protocol needs. The DynamoDB adapter implements it with conditional
/// puts and `TransactWriteItems`; tests use an in-memory version with fault injection.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Segments of the given accounts; accounts without a profile are absent.
    async fn segments(
        &self,
        tenant: &TenantId,
        accounts: &[AccountId],
    ) -> Result<HashMap<AccountId, Segment>, StoreError>;
    /// Step 1: claims the event for this chunk and position (a conditional put).
    async fn claim(&self, entry: &LedgerEntry<'_>) -> Result<Claim, StoreError>;
    /// Step 1 for several events at once ([`PipelineConfig::claim_group`] > 1): the
    /// answer [`LedgerStore::claim`] gives for each entry, in order. Each claim is
    /// independent (the protocol needs no atomicity across them), so an error may
    /// leave some of them made; the retry then finds them as this chunk's own. The
    /// default makes one claim after another; the DynamoDB adapter writes a group in
    /// one conditional transaction (docs/adr/0001, "Import: claims in groups").
    async fn claim_group(&self, entries: &[LedgerEntry<'_>]) -> Result<Vec<Claim>, StoreError> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            out.push(self.claim(e).await?);
        }
        Ok(out)
    }
    /// Step 2, for every event this chunk owns (claimed now or by an earlier delivery
    /// of the same chunk): copies it into the audit's drift sample when its account
    /// is sampled ([`crate::audit::store::sampled`] with the adapter's modulus).
    /// Idempotent: keyed by the event, so a redelivery writes the same copy again.
    async fn sample(&self, entry: &LedgerEntry<'_>) -> Result<(), StoreError>;
    /// Step 3: in one transaction, creates every unit's marker (none may exist yet) and
    /// adds `deltas` (the units' deltas merged: one entry per rollup item). If any
    /// marker exists nothing is written and those units are named.
    async fn apply_units(
        &self,
        tenant: &TenantId,
        units: &[UnitRef<'_>],
        deltas: &[(RollupKey, RollupDelta)],
    ) -> Result<UnitsOutcome, StoreError>;
}

/// Import chunks begun but not finished. SQS redelivers an API chunk until it is done;
/// nothing redelivers an import chunk but the importer. So the importer records a
/// chunk's whole body before its first claim and forgets it once every part is
/// applied, and each run first completes what an interrupted run left, whatever
/// changed since (docs/adr/0001, "Import re-runs").
#[async_trait]
pub trait ChunkJournal: Send + Sync {
    /// Records `chunk` before any of its claims (idempotent).
    async fn begin(&self, chunk: &Chunk) -> Result<(), StoreError>;
    /// Forgets a chunk whose parts are all applied (idempotent).
    async fn finish(&self, tenant: &TenantId, chunk: &str) -> Result<(), StoreError>;
    /// Chunks of the tenant begun and not finished, in no particular order.
    async fn unfinished(&self, tenant: &TenantId) -> Result<Vec<Chunk>, StoreError>;
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// How long ledger records (the dedupe memory) are kept.
    pub retention: Duration,
    pub claim_concurrency: usize,
    /// Events claimed per store call: 1 (the default) makes one conditional put per
    /// event; more uses [`LedgerStore::claim_group`] (the importer: fewer requests,
    /// at twice the write units per claim on DynamoDB, docs/adr/0001).
    pub claim_group: usize,
    /// Most rollup items in one unit (a bucket holding more is cut into pieces); a unit
    /// alone always fits one transaction with its marker, so at most 99. Part of the
    /// protocol like [`UNIT_BUCKETS`]: never change it with chunks queued.
    pub part_size: usize,
    /// Buckets a chunk's deltas are split into ([`UNIT_BUCKETS`]; tests vary it).
    pub buckets: u32,
    /// Packs the units of all chunks of an invocation together (the default); off,
    /// each chunk's units are written on their own, as before issue #16 (the bench's
    /// "before" figure).
    pub merge_chunks: bool,
    pub max_attempts: u32,
    pub backoff: std::time::Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            retention: crate::horizon::Retention::DEFAULT.duration(),
            claim_concurrency: 16,
            claim_group: 1,
            part_size: 99,
            buckets: UNIT_BUCKETS,
            merge_chunks: true,
            max_attempts: 6,
            backoff: std::time::Duration::from_millis(25),
        }
    }
}

/// What happened to one chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkOutcome {
    /// Events this chunk counts (first seen here, or claimed here earlier).
    pub counted: usize,
    /// Events already counted by another chunk (client or webhook retries).
    pub duplicates: usize,
    /// Units of this chunk applied by this delivery.
    pub units_applied: usize,
    /// Units an earlier delivery had applied.
    pub units_already_applied: usize,
    /// Accounts, meters, stages and hours this chunk counted (for entitlement checks).
    pub touched: crate::limits::Touched,
    /// Data-quality counters of this chunk per meter (the same on every delivery).
    pub quality: std::collections::BTreeMap<crate::ids::MeterName, crate::audit::Counts>,
    /// Positions (in the chunk) of the events this chunk counts.
    pub owned: Vec<u32>,
}

/// A chunk whose claims are all resolved: the events it owns (positions in the chunk,
/// with the segment each was claimed under) are fixed from here on, on every delivery.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub chunk: Chunk,
    owned: Vec<(u32, Segment)>,
    pub outcome: ChunkOutcome,
    expires_at: i64,
}

impl Claimed {
    /// The chunk's units (a pure function of the chunk and its owned set).
    fn units(&self, cfg: &PipelineConfig) -> Vec<Unit> {
        let owned = self
            .owned
            .iter()
            .filter_map(|(pos, seg)| self.chunk.events.get(*pos as usize).map(|e| (e, *seg)));
        units(
            &self.chunk.tenant,
            aggregate(owned),
            cfg.buckets.max(1),
            cfg.part_size.clamp(1, MAX_TRANSACT_ACTIONS - 1),
        )
    }
}

/// Runs the protocol for one chunk. Returns an error when any step could not be
/// completed; the caller then reports the message as failed so SQS redelivers it.
pub async fn process_chunk(
    store: &dyn LedgerStore,
    chunk: &Chunk,
    cfg: &PipelineConfig,
) -> Result<ChunkOutcome, StoreError> {
    let claimed = claim_chunk(store, chunk.clone(), cfg).await?;
    apply_claimed(store, vec![claimed], cfg)
        .await
        .pop()
        .unwrap_or_else(|| Err(StoreError::Conflict("no outcome for the chunk".into())))
        .map(|c| c.outcome)
}

/// Runs the protocol for the chunks of one invocation: each is claimed on its own
/// (`concurrency` chunks at a time), then the units of all of them are applied
/// together. One result per chunk, in order: a chunk fails alone.
pub async fn process_batch(
    store: &dyn LedgerStore,
    chunks: Vec<Chunk>,
    cfg: &PipelineConfig,
    concurrency: usize,
) -> Vec<Result<Claimed, StoreError>> {
    let claims: Vec<Result<Claimed, StoreError>> = stream::iter(
        chunks
            .into_iter()
            .map(|c| claim_chunk(store, c, cfg))
            .collect::<Vec<_>>(),
    )
    .buffered(concurrency.max(1))
    .collect()
    .await;
    let mut slots: Vec<Option<Result<Claimed, StoreError>>> = Vec::with_capacity(claims.len());
    let mut ok = Vec::new();
    let mut at = Vec::new();
    for (i, c) in claims.into_iter().enumerate() {
        match c {
            Ok(c) => {
                ok.push(c);
                at.push(i);
                slots.push(None);
            }
            Err(e) => slots.push(Some(Err(e))),
        }
    }
    let applied = if cfg.merge_chunks {
        apply_claimed(store, ok, cfg).await
    } else {
        let mut each = Vec::with_capacity(ok.len());
        for c in ok {
            each.extend(apply_claimed(store, vec![c], cfg).await);
        }
        each
    };
    for (i, r) in at.into_iter().zip(applied) {
        if let Some(slot) = slots.get_mut(i) {
            *slot = Some(r);
        }
    }
    slots
        .into_iter()
        .map(|s| s.unwrap_or_else(|| Err(StoreError::Conflict("no outcome for the chunk".into()))))
        .collect()
}

/// Step 1 (and the drift sample) for one chunk.
pub async fn claim_chunk(
    store: &dyn LedgerStore,
    chunk: Chunk,
    cfg: &PipelineConfig,
) -> Result<Claimed, StoreError> {
    let expires_at = (chunk.received_at + cfg.retention).timestamp();
    // Defensive: a chunk never holds the same id twice, but if it did, count it once.
    let mut seen = HashSet::new();
    let events: Vec<(u32, &UsageEvent)> = chunk
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| seen.insert(&e.id))
        .map(|(i, e)| (i as u32, e))
        .collect();

    let mut accounts: Vec<AccountId> = events.iter().map(|(_, e)| e.account.clone()).collect();
    accounts.sort();
    accounts.dedup();
    let segments = store.segments(&chunk.tenant, &accounts).await?;

    let entries: Vec<LedgerEntry<'_>> = events
        .iter()
        .map(|&(pos, ev)| LedgerEntry {
            tenant: &chunk.tenant,
            source: chunk.source,
            chunk: &chunk.chunk,
            pos,
            segment: segments
                .get(&ev.account)
                .copied()
                .unwrap_or(Segment::Unassigned),
            event: ev,
            received_at: chunk.received_at,
            expires_at,
        })
        .collect();
    // Futures are collected first (not mapped lazily) so the future stays `Send`.
    let mut pending = Vec::new();
    for group in entries.chunks(cfg.claim_group.clamp(1, MAX_CLAIM_GROUP)) {
        pending.push(async move {
            let answers = if group.len() == 1 {
                vec![retry(cfg, || store.claim(&group[0])).await?]
            } else {
                retry(cfg, || store.claim_group(group)).await?
            };
            if answers.len() != group.len() {
                return Err(StoreError::Service {
                    op: "claim_group",
                    message: format!("{} answers for {} claims", answers.len(), group.len()),
                });
            }
            let mut owned = Vec::with_capacity(group.len());
            for (entry, claim) in group.iter().zip(answers) {
                let mine = ours(entry, claim);
                if mine.is_some() {
                    retry(cfg, || store.sample(entry)).await?;
                }
                owned.push(mine);
            }
            Ok::<_, StoreError>(owned)
        });
    }
    let claims: Vec<Option<(u32, Segment)>> = stream::iter(pending)
        .buffered(cfg.claim_concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .flatten()
        .collect();

    let owned: Vec<(u32, Segment)> = claims.into_iter().flatten().collect();
    let owned_events: Vec<(&UsageEvent, Segment)> = owned
        .iter()
        .filter_map(|(pos, seg)| chunk.events.get(*pos as usize).map(|e| (e, *seg)))
        .collect();
    let mut touched = crate::limits::Touched::new();
    for (ev, _) in &owned_events {
        crate::limits::touch(&mut touched, &ev.account, &ev.meter, ev.stage, ev.timestamp);
    }
    let quality = crate::audit::counters::chunk_counts(
        events.iter().map(|(_, e)| *e),
        &owned_events,
        chunk.source,
        chunk.received_at,
    );
    let outcome = ChunkOutcome {
        touched,
        quality,
        counted: owned.len(),
        duplicates: events.len() - owned.len(),
        owned: owned.iter().map(|(p, _)| *p).collect(),
        ..Default::default()
    };
    Ok(Claimed {
        chunk,
        owned,
        outcome,
        expires_at,
    })
}

/// One unit waiting to be applied: which claimed chunk it belongs to, and the unit.
struct Pending {
    chunk: usize,
    unit: Unit,
}

/// Step 2 for claimed chunks: their units, grouped by (tenant, bucket), packed into
/// transactions of at most [`MAX_TRANSACT_ACTIONS`] (merged items + one marker per
/// unit). A pack that meets existing markers drops exactly those units and is sent
/// again; a pack that fails fails only the chunks with a unit in it. One result per
/// chunk, in order.
pub async fn apply_claimed(
    store: &dyn LedgerStore,
    claimed: Vec<Claimed>,
    cfg: &PipelineConfig,
) -> Vec<Result<Claimed, StoreError>> {
    // The same chunk twice in one invocation (SQS may deliver a message twice, or a
    // chunk's body twice) has the same units: they are applied once, through the first.
    let mut first: HashMap<(&TenantId, &str), usize> = HashMap::new();
    let leader: Vec<usize> = claimed
        .iter()
        .enumerate()
        .map(|(i, c)| {
            *first
                .entry((&c.chunk.tenant, c.chunk.chunk.as_str()))
                .or_insert(i)
        })
        .collect();
    drop(first);
    let mut groups: BTreeMap<(TenantId, u32), Vec<Pending>> = BTreeMap::new();
    for (i, c) in claimed.iter().enumerate() {
        if leader.get(i) != Some(&i) {
            continue;
        }
        for unit in c.units(cfg) {
            groups
                .entry((c.chunk.tenant.clone(), unit.bucket))
                .or_default()
                .push(Pending { chunk: i, unit });
        }
    }
    let mut packs: Vec<(TenantId, Vec<Vec<Pending>>)> = Vec::new();
    for ((tenant, _), pending) in groups {
        packs.push((tenant, pack(pending)));
    }
    // Buckets touch disjoint items, so they run side by side; the packs of one bucket
    // share items and run one after another (no transaction conflicts between them).
    let claimed_ref = &claimed;
    let mut work = Vec::with_capacity(packs.len());
    for (tenant, bucket_packs) in packs {
        work.push(async move {
            let mut results = Vec::new();
            for p in bucket_packs {
                results.push(apply_pack(store, &tenant, claimed_ref, p, cfg).await);
            }
            results
        });
    }
    let done: Vec<Vec<PackResult>> = stream::iter(work)
        .buffer_unordered(cfg.claim_concurrency.max(1))
        .collect()
        .await;
    let mut failed: HashMap<usize, StoreError> = HashMap::new();
    let mut claimed = claimed;
    for r in done.into_iter().flatten() {
        for i in r.applied {
            if let Some(c) = claimed.get_mut(i) {
                c.outcome.units_applied += 1;
            }
        }
        for i in r.already {
            if let Some(c) = claimed.get_mut(i) {
                c.outcome.units_already_applied += 1;
            }
        }
        if let Some((chunks, e)) = r.failed {
            for i in chunks {
                failed.entry(i).or_insert_with(|| e.clone());
            }
        }
    }
    let failed_of = |i: usize| {
        let l = leader.get(i).copied().unwrap_or(i);
        failed.get(&l).cloned()
    };
    let results: Vec<Option<StoreError>> = (0..claimed.len()).map(failed_of).collect();
    claimed
        .into_iter()
        .zip(results)
        .map(|(c, f)| match f {
            Some(e) => Err(e),
            None => Ok(c),
        })
        .collect()
}

/// Cuts one (tenant, bucket)'s units into packs that fit a transaction: the merged
/// items plus one marker per unit. A unit alone always fits (at most 99 items).
fn pack(pending: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut packs: Vec<Vec<Pending>> = Vec::new();
    let mut current: Vec<Pending> = Vec::new();
    let mut keys: HashSet<RollupKey> = HashSet::new();
    for p in pending {
        let new_keys = p
            .unit
            .deltas
            .iter()
            .filter(|(k, _)| !keys.contains(k))
            .count();
        if !current.is_empty() && keys.len() + new_keys + current.len() + 1 > MAX_TRANSACT_ACTIONS {
            packs.push(std::mem::take(&mut current));
            keys.clear();
        }
        keys.extend(p.unit.deltas.iter().map(|(k, _)| k.clone()));
        current.push(p);
    }
    if !current.is_empty() {
        packs.push(current);
    }
    packs
}

#[derive(Default)]
struct PackResult {
    /// Claimed-chunk index of each unit applied here, and of each found applied.
    applied: Vec<usize>,
    already: Vec<usize>,
    /// The chunks with a unit left unapplied, and why.
    failed: Option<(Vec<usize>, StoreError)>,
}

/// The units' deltas summed per rollup item, in key order.
fn merged(pending: &[Pending]) -> Vec<(RollupKey, RollupDelta)> {
    let mut out: BTreeMap<RollupKey, RollupDelta> = BTreeMap::new();
    for p in pending {
        for (k, d) in &p.unit.deltas {
            out.entry(k.clone()).or_default().merge(d);
        }
    }
    out.into_iter().collect()
}

async fn apply_pack(
    store: &dyn LedgerStore,
    tenant: &TenantId,
    claimed: &[Claimed],
    mut pending: Vec<Pending>,
    cfg: &PipelineConfig,
) -> PackResult {
    let mut result = PackResult::default();
    while !pending.is_empty() {
        let refs: Vec<UnitRef<'_>> = pending
            .iter()
            .filter_map(|p| {
                claimed.get(p.chunk).map(|c| UnitRef {
                    chunk: &c.chunk.chunk,
                    bucket: p.unit.bucket,
                    piece: p.unit.piece,
                    items: p.unit.deltas.len(),
                    expires_at: c.expires_at,
                })
            })
            .collect();
        let deltas = merged(&pending);
        match retry(cfg, || store.apply_units(tenant, &refs, &deltas)).await {
            Ok(UnitsOutcome::Applied) => {
                result.applied.extend(pending.iter().map(|p| p.chunk));
                pending.clear();
            }
            Ok(UnitsOutcome::AlreadyApplied(done)) if !done.is_empty() => {
                let done: HashSet<usize> = done.into_iter().collect();
                let mut left = Vec::with_capacity(pending.len());
                for (i, p) in std::mem::take(&mut pending).into_iter().enumerate() {
                    if done.contains(&i) {
                        result.already.push(p.chunk);
                    } else {
                        left.push(p);
                    }
                }
                tracing::debug!(
                    tenant = %tenant,
                    already_applied = done.len(),
                    left = left.len(),
                    "units applied by an earlier delivery dropped from the pack"
                );
                pending = left;
            }
            Ok(UnitsOutcome::AlreadyApplied(_)) => {
                let e = StoreError::Conflict(
                    "apply_units: cancelled without naming an applied unit".into(),
                );
                result.failed = Some((pending.iter().map(|p| p.chunk).collect(), e));
                pending.clear();
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant, units = pending.len(), error = %e,
                    "units not applied; their chunks will be redelivered");
                result.failed = Some((pending.iter().map(|p| p.chunk).collect(), e));
                pending.clear();
            }
        }
    }
    result
}

/// Most claims in one group: a DynamoDB transaction holds at most 100 actions.
pub const MAX_CLAIM_GROUP: usize = 100;

/// Whether `entry`'s event is this chunk's to count, and with which segment: claimed
/// now, or claimed earlier by this very chunk and position (an interrupted delivery).
fn ours(entry: &LedgerEntry<'_>, claim: Claim) -> Option<(u32, Segment)> {
    match claim {
        Claim::New => Some((entry.pos, entry.segment)),
        Claim::Existing {
            chunk: c,
            pos: p,
            segment: s,
        } if c == entry.chunk && p == entry.pos => Some((entry.pos, s)),
        Claim::Existing { .. } => None,
    }
}

async fn retry<T, F, Fut>(cfg: &PipelineConfig, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op().await {
            Err(e) if e.is_retryable() && attempt < cfg.max_attempts => {
                let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 16;
                let wait = cfg.backoff * 2u32.saturating_pow(attempt - 1)
                    + std::time::Duration::from_millis(jitter);
                tracing::warn!(attempt, error = %e, wait_ms = wait.as_millis() as u64, "retrying store call");
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

/// The audit's records of a counted chunk, written once per chunk (both are keyed by
/// the chunk, so a redelivery or a re-run adds nothing): its quality counters, and
/// the series of the events it owns on `critical` meters.
pub async fn record_quality(
    recorder: &dyn crate::audit::store::QualityRecorder,
    chunk: &Chunk,
    outcome: &ChunkOutcome,
    critical: &HashSet<crate::ids::MeterName>,
    retention: Duration,
) -> Result<(), StoreError> {
    let expires_at = (chunk.received_at + retention).timestamp();
    recorder
        .record_chunk(
            &chunk.tenant,
            &chunk.chunk,
            chunk.received_at.date_naive(),
            &outcome.quality,
            expires_at,
        )
        .await?;
    let owned = outcome
        .owned
        .iter()
        .filter_map(|&p| chunk.events.get(p as usize));
    let series = crate::audit::series::critical_series(owned, critical);
    if !series.is_empty() {
        recorder
            .record_series(&chunk.tenant, &chunk.chunk, &series, expires_at)
            .await?;
    }
    Ok(())
}
