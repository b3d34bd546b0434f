//! Behaviour every [`LedgerStore`] adapter must show, written once and run against
//! each: [`MemoryLedger`](crate::MemoryLedger) in this crate's tests, the DynamoDB
//! adapter in the end-to-end suite (`tests/tests/suite/ports.rs`) against the
//! emulator. A failed expectation panics with the behaviour's name.
//!
//! The stores passed in must be empty for `tenant`; `sampling_all` copies every
//! account's events to the drift sample (modulus 1), `sampling_none` none (modulus 0).

use async_trait::async_trait;
use chrono::{NaiveDate, TimeZone, Utc};
use domain::audit::kpi::SampledEvent;
use domain::chunk::Chunk;
use domain::event::UsageEvent;
use domain::ids::{AccountId, EventId, MeterName, ServiceLine, Source, Stage, TenantId};
use domain::pipeline::{process_chunk, Claim, LedgerEntry, LedgerStore, PipelineConfig};
use domain::ports::StoreError;
use rust_decimal::Decimal;

/// Reads the drift sample back (the audit's `AuditReader::sampled_events`).
#[async_trait]
pub trait SampleReader: Send + Sync {
    async fn sampled_events(
        &self,
        tenant: &TenantId,
        day: NaiveDate,
    ) -> Result<Vec<SampledEvent>, StoreError>;
}

/// The day every event of the suite happens on.
pub fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 20).unwrap_or_default()
}

fn event(id: &str, account: &str, tenths: i64) -> Result<UsageEvent, String> {
    Ok(UsageEvent {
        id: EventId::parse(id).map_err(|e| e.to_string())?,
        account: AccountId::parse(account).map_err(|e| e.to_string())?,
        meter: MeterName::parse("api_calls").map_err(|e| e.to_string())?,
        quantity: Decimal::new(tenths, 1),
        unit: None,
        timestamp: Utc.from_utc_datetime(&day().and_hms_opt(7, 30, 0).unwrap_or_default()),
        timestamp_defaulted: false,
        stage: Stage::ALL[0],
        service_line: ServiceLine::default_line(),
        contact: None,
        entitlement: None,
        correction_reason: None,
        properties: None,
    })
}

fn chunk(tenant: &TenantId, id: &str, events: Vec<UsageEvent>) -> Chunk {
    Chunk {
        v: 1,
        chunk: id.to_owned(),
        tenant: tenant.clone(),
        source: Source::Api,
        received_at: Utc.from_utc_datetime(&day().and_hms_opt(8, 0, 0).unwrap_or_default()),
        events,
    }
}

fn entry<'a>(
    tenant: &'a TenantId,
    chunk: &'a str,
    pos: u32,
    ev: &'a UsageEvent,
) -> LedgerEntry<'a> {
    LedgerEntry {
        tenant,
        source: Source::Api,
        chunk,
        pos,
        segment: domain::ids::Segment::Unassigned,
        event: ev,
        received_at: Utc.from_utc_datetime(&day().and_hms_opt(8, 0, 0).unwrap_or_default()),
        expires_at: 4_000_000_000,
    }
}

fn quick() -> PipelineConfig {
    PipelineConfig {
        max_attempts: 2,
        backoff: std::time::Duration::from_millis(1),
        ..PipelineConfig::default()
    }
}

/// The first claim of an event is new; a later claim by another chunk is told who
/// owns it; the owner's own repeated claim is told it owns it.
pub async fn a_claimed_event_keeps_its_first_owner(store: &dyn LedgerStore, tenant: &TenantId) {
    let ev = event("suite-claim-1", "acct-claim", 10).expect("suite event");
    let first = store.claim(&entry(tenant, "chunk-a", 3, &ev)).await;
    assert_eq!(
        first.expect("first claim"),
        Claim::New,
        "a first claim is new"
    );
    let other = store.claim(&entry(tenant, "chunk-b", 0, &ev)).await;
    assert!(
        matches!(other.expect("second claim"), Claim::Existing { ref chunk, pos: 3, .. } if chunk == "chunk-a"),
        "a claim by another chunk names the first owner"
    );
    let again = store.claim(&entry(tenant, "chunk-a", 3, &ev)).await;
    assert!(
        matches!(again.expect("repeated claim"), Claim::Existing { ref chunk, pos: 3, .. } if chunk == "chunk-a"),
        "the owner's repeated claim names the owner itself"
    );
}

/// Claims in a group (the importer's): each answer is the one a single claim gives.
/// Events already claimed, by another chunk or by this one, are named with their owner;
/// the rest are claimed, and a second group call finds them all as this chunk's own.
pub async fn a_group_of_claims_answers_each_as_a_single_claim_would(
    store: &dyn LedgerStore,
    tenant: &TenantId,
) {
    let events: Vec<UsageEvent> = (0..5)
        .map(|i| event(&format!("suite-group-{i}"), "acct-group", 10).expect("suite event"))
        .collect();
    let other = store
        .claim(&entry(tenant, "chunk-other", 7, &events[1]))
        .await;
    assert_eq!(other.expect("other chunk's claim"), Claim::New);
    let earlier = store.claim(&entry(tenant, "chunk-g", 3, &events[3])).await;
    assert_eq!(earlier.expect("an earlier delivery's claim"), Claim::New);
    let group: Vec<LedgerEntry<'_>> = events
        .iter()
        .enumerate()
        .map(|(i, e)| entry(tenant, "chunk-g", i as u32, e))
        .collect();
    let answers = store.claim_group(&group).await.expect("group claim");
    let owners: Vec<Option<(String, u32)>> = answers
        .iter()
        .map(|c| match c {
            Claim::New => None,
            Claim::Existing { chunk, pos, .. } => Some((chunk.clone(), *pos)),
        })
        .collect();
    assert_eq!(
        owners,
        vec![
            None,
            Some(("chunk-other".to_owned(), 7)),
            None,
            Some(("chunk-g".to_owned(), 3)),
            None
        ],
        "existing claims are named with their owner, the others are new"
    );
    let again = store
        .claim_group(&group)
        .await
        .expect("repeated group claim");
    assert!(
        again.iter().enumerate().all(|(i, c)| match c {
            Claim::Existing { chunk, pos, .. } if i == 1 => chunk == "chunk-other" && *pos == 7,
            Claim::Existing { chunk, pos, .. } => chunk == "chunk-g" && *pos == i as u32,
            Claim::New => false,
        }),
        "a repeated group finds every claim made: {again:?}"
    );
}

/// Step 2 of the claim protocol: an owned event of a sampled account is copied into
/// the drift sample once, however often the chunk is delivered, with what the drift
/// check re-sums.
pub async fn processing_a_chunk_copies_its_owned_events_to_the_drift_sample_once(
    sampling_all: &dyn LedgerStore,
    sample: &dyn SampleReader,
    tenant: &TenantId,
) {
    let events = vec![
        event("suite-sample-1", "acct-s1", 15).expect("suite event"),
        event("suite-sample-2", "acct-s2", -5).expect("suite event"),
    ];
    let c = chunk(tenant, "chunk-sample", events);
    for delivery in 0..2 {
        process_chunk(sampling_all, &c, &quick())
            .await
            .unwrap_or_else(|e| panic!("delivery {delivery} of the chunk: {e}"));
    }
    let mut got = sample
        .sampled_events(tenant, day())
        .await
        .expect("reading the drift sample");
    got.sort_by(|a, b| a.account.as_str().cmp(b.account.as_str()));
    let summary: Vec<(String, u8, Decimal)> = got
        .iter()
        .map(|s| (s.account.to_string(), s.hour, s.quantity))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("acct-s1".to_owned(), 7, Decimal::new(15, 1)),
            ("acct-s2".to_owned(), 7, Decimal::new(-5, 1)),
        ],
        "each owned event is sampled once, at its hour and quantity"
    );
}

/// An event another chunk owns is not copied again by the chunk that lost the claim.
pub async fn a_duplicate_in_another_chunk_adds_no_sample(
    sampling_all: &dyn LedgerStore,
    sample: &dyn SampleReader,
    tenant: &TenantId,
) {
    let ev = event("suite-dup-1", "acct-dup", 20).expect("suite event");
    for id in ["chunk-dup-1", "chunk-dup-2"] {
        process_chunk(sampling_all, &chunk(tenant, id, vec![ev.clone()]), &quick())
            .await
            .unwrap_or_else(|e| panic!("processing {id}: {e}"));
    }
    let got = sample
        .sampled_events(tenant, day())
        .await
        .expect("reading the drift sample");
    let dup = got
        .iter()
        .filter(|s| s.account.as_str() == "acct-dup")
        .count();
    assert_eq!(dup, 1, "the event is sampled once, by its owner");
}

/// With sampling off, counting writes no sample at all.
pub async fn an_unsampled_account_leaves_no_copy(
    sampling_none: &dyn LedgerStore,
    sample: &dyn SampleReader,
    tenant: &TenantId,
) {
    let ev = event("suite-off-1", "acct-off", 10).expect("suite event");
    process_chunk(
        sampling_none,
        &chunk(tenant, "chunk-off", vec![ev]),
        &quick(),
    )
    .await
    .expect("processing the chunk");
    let got = sample
        .sampled_events(tenant, day())
        .await
        .expect("reading the drift sample");
    assert!(
        got.iter().all(|s| s.account.as_str() != "acct-off"),
        "no copy of an unsampled account's event"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryLedger;

    fn tenant() -> TenantId {
        TenantId::parse("suite").expect("tenant id")
    }

    fn ledger(modulus: u32) -> MemoryLedger {
        let mut l = MemoryLedger::new();
        l.audit_sample = modulus;
        l
    }

    #[tokio::test]
    async fn the_memory_ledger_keeps_a_claimed_events_first_owner() {
        a_claimed_event_keeps_its_first_owner(&ledger(1), &tenant()).await;
    }

    #[tokio::test]
    async fn the_memory_ledger_answers_a_group_of_claims_as_single_claims() {
        a_group_of_claims_answers_each_as_a_single_claim_would(&ledger(1), &tenant()).await;
    }

    #[tokio::test]
    async fn the_memory_ledger_samples_owned_events_once() {
        let l = ledger(1);
        processing_a_chunk_copies_its_owned_events_to_the_drift_sample_once(&l, &l, &tenant())
            .await;
    }

    #[tokio::test]
    async fn the_memory_ledger_samples_a_duplicate_once() {
        let l = ledger(1);
        a_duplicate_in_another_chunk_adds_no_sample(&l, &l, &tenant()).await;
    }

    #[tokio::test]
    async fn the_memory_ledger_samples_nothing_with_sampling_off() {
        let l = ledger(0);
        an_unsampled_account_leaves_no_copy(&l, &l, &tenant()).await;
    }
}
