//! The exactly-once counting protocol, independent of the storage behind it.
//!
//! 1. **Claim**: each event of a chunk is written to the ledger with a conditional put
//!    keyed by (tenant, source, id), recording the chunk and position that claimed it
//!    and the account's segment at that moment. A failed condition tells us who owns
//!    the event: another chunk (a duplicate: skip it) or this very chunk (our own
//!    claim from an earlier, interrupted delivery: still ours to count).
//! 2. **Apply**: the events this chunk owns are pre-aggregated into rollup deltas and
//!    split deterministically into parts; each part is one transaction that adds the
//!    deltas and creates a part marker that must not exist yet. A redelivery recomputes
//!    the same parts and the marker's condition skips those already applied.
//!
//! Nothing is marked "seen" before it is counted: a claim without its part is finished
//! by the redelivery, and a part is atomic with its marker. See docs/adr/0001.

use crate::chunk::Chunk;
use crate::event::UsageEvent;
use crate::ids::{AccountId, Segment, Source, TenantId};
use crate::ports::StoreError;
use crate::rollup::{aggregate, partition, RollupDelta, RollupKey};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::{HashMap, HashSet};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartOutcome {
    Applied,
    AlreadyApplied,
}

/// Names one transaction of a chunk's rollup deltas.
#[derive(Debug, Clone)]
pub struct PartRef<'a> {
    pub tenant: &'a TenantId,
    pub chunk: &'a str,
    pub part: usize,
    pub parts: usize,
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
    /// Step 3: applies one part's rollup deltas once (the part marker in the same
    /// transaction).
    async fn apply_part(
        &self,
        part: &PartRef<'_>,
        deltas: &[(RollupKey, RollupDelta)],
    ) -> Result<PartOutcome, StoreError>;
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
    /// Rollup items per transaction (one more action is the part marker; max 100).
    pub part_size: usize,
    pub max_attempts: u32,
    pub backoff: std::time::Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            retention: Duration::days(400),
            claim_concurrency: 16,
            claim_group: 1,
            part_size: 99,
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
    pub parts_applied: usize,
    pub parts_already_applied: usize,
    /// Accounts, meters, stages and hours this chunk counted (for entitlement checks).
    pub touched: crate::limits::Touched,
    /// Data-quality counters of this chunk per meter (the same on every delivery).
    pub quality: std::collections::BTreeMap<crate::ids::MeterName, crate::audit::Counts>,
    /// Positions (in the chunk) of the events this chunk counts.
    pub owned: Vec<u32>,
}

/// Runs the protocol for one chunk. Returns an error when any step could not be
/// completed; the caller then reports the message as failed so SQS redelivers it.
pub async fn process_chunk(
    store: &dyn LedgerStore,
    chunk: &Chunk,
    cfg: &PipelineConfig,
) -> Result<ChunkOutcome, StoreError> {
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
    let claims: Vec<Option<(&UsageEvent, Segment)>> = stream::iter(pending)
        .buffered(cfg.claim_concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .flatten()
        .collect();

    let owned_at: Vec<u32> = events
        .iter()
        .zip(&claims)
        .filter(|(_, c)| c.is_some())
        .map(|((pos, _), _)| *pos)
        .collect();
    let owned: Vec<(&UsageEvent, Segment)> = claims.iter().flatten().copied().collect();
    let mut touched = crate::limits::Touched::new();
    for (ev, _) in &owned {
        crate::limits::touch(&mut touched, &ev.account, &ev.meter, ev.stage, ev.timestamp);
    }
    let quality = crate::audit::counters::chunk_counts(
        events.iter().map(|(_, e)| *e),
        &owned,
        chunk.source,
        chunk.received_at,
    );
    let mut outcome = ChunkOutcome {
        touched,
        quality,
        counted: owned.len(),
        duplicates: events.len() - owned.len(),
        owned: owned_at,
        ..Default::default()
    };
    let parts = partition(aggregate(owned), cfg.part_size.clamp(1, 99));
    let total = parts.len();
    for (i, deltas) in parts.iter().enumerate() {
        let part = PartRef {
            tenant: &chunk.tenant,
            chunk: &chunk.chunk,
            part: i,
            parts: total,
            expires_at,
        };
        match retry(cfg, || store.apply_part(&part, deltas)).await? {
            PartOutcome::Applied => outcome.parts_applied += 1,
            PartOutcome::AlreadyApplied => outcome.parts_already_applied += 1,
        }
    }
    Ok(outcome)
}

/// Most claims in one group: a DynamoDB transaction holds at most 100 actions.
pub const MAX_CLAIM_GROUP: usize = 100;

/// Whether `entry`'s event is this chunk's to count, and with which segment: claimed
/// now, or claimed earlier by this very chunk and position (an interrupted delivery).
fn ours<'a>(entry: &LedgerEntry<'a>, claim: Claim) -> Option<(&'a UsageEvent, Segment)> {
    match claim {
        Claim::New => Some((entry.event, entry.segment)),
        Claim::Existing {
            chunk: c,
            pos: p,
            segment: s,
        } if c == entry.chunk && p == entry.pos => Some((entry.event, s)),
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
