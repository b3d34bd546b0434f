//! Property tests of the counting protocol against the in-memory ledger: any shuffle,
//! duplication, replay or crash of an event stream yields the same rollups as
//! counting each distinct event once.

use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::chunk::Chunk;
use domain::event::UsageEvent;
use domain::ids::*;
use domain::pipeline::{process_batch, process_chunk, PipelineConfig};
use domain::rollup::aggregate;
use memory::{Fault, MemoryLedger};
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::collections::VecDeque;

fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn event(i: usize, account: u8, meter: u8, stage: u8, minutes: i64, qty: i64) -> UsageEvent {
    let base: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap();
    UsageEvent {
        id: EventId::parse(&format!("ev-{i}")).unwrap(),
        account: AccountId::parse(&format!("acct-{account}")).unwrap(),
        meter: MeterName::parse(["api_calls", "tickets_resolved"][meter as usize % 2]).unwrap(),
        quantity: Decimal::new(qty, 1),
        unit: None,
        timestamp: base + Duration::minutes(minutes),
        timestamp_defaulted: false,
        stage: Stage::ALL[stage as usize % 3],
        service_line: ServiceLine::default_line(),
        contact: None,
        entitlement: None,
        correction_reason: (qty < 0).then(|| "refund".to_owned()),
        properties: None,
    }
}

fn segment_of(account: &AccountId) -> Segment {
    match account.as_str() {
        "acct-0" => Segment::Smb,
        "acct-1" => Segment::Enterprise,
        _ => Segment::Unassigned,
    }
}

fn store() -> MemoryLedger {
    let s = MemoryLedger::new();
    for a in ["acct-0", "acct-1"] {
        let a = AccountId::parse(a).unwrap();
        s.set_segment(&tenant(), &a, segment_of(&a));
    }
    s
}

fn chunk(id: usize, events: Vec<UsageEvent>) -> Chunk {
    Chunk {
        v: 1,
        chunk: format!("chunk-{id}"),
        tenant: tenant(),
        source: Source::Api,
        received_at: Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap(),
        events,
    }
}

fn cfg() -> PipelineConfig {
    PipelineConfig {
        max_attempts: 1,
        claim_concurrency: 3,
        part_size: 4,
        ..PipelineConfig::default()
    }
}

fn expected(
    events: &[UsageEvent],
) -> Vec<(domain::rollup::RollupKey, domain::rollup::RollupDelta)> {
    aggregate(events.iter().map(|e| (e, segment_of(&e.account))))
        .into_iter()
        .collect()
}

fn counted(store: &MemoryLedger) -> Vec<(domain::rollup::RollupKey, domain::rollup::RollupDelta)> {
    store
        .rollups()
        .into_iter()
        .map(|((_, k), d)| (k, d))
        .collect()
}

/// Delivers chunks like SQS would: a failed chunk goes back on the queue.
async fn deliver_until_done(store: &MemoryLedger, chunks: Vec<Chunk>, claim_group: usize) -> usize {
    let cfg = PipelineConfig {
        claim_group,
        ..cfg()
    };
    let mut queue: VecDeque<Chunk> = chunks.into();
    let mut deliveries = 0;
    while let Some(c) = queue.pop_front() {
        deliveries += 1;
        assert!(deliveries < 10_000, "no progress");
        if process_chunk(store, &c, &cfg).await.is_err() {
            queue.push_back(c);
        }
    }
    deliveries
}

/// Delivers chunks like SQS and Lambda would: each invocation takes a batch of 1-5
/// messages picked anywhere in the queue (so a redelivery meets a different mix of
/// messages), sometimes with one of them twice; the messages of the batch that fail go
/// back on the queue at a position the seed picks.
async fn deliver_in_mixed_batches(
    store: &MemoryLedger,
    chunks: Vec<Chunk>,
    seed: u64,
    cfg: &PipelineConfig,
) -> usize {
    let mut queue: Vec<Chunk> = chunks;
    let mut rng = seed | 1;
    let mut next = move |n: usize| {
        // xorshift64: deterministic per case, so a failure shrinks and replays.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n.max(1) as u64) as usize
    };
    let mut invocations = 0;
    while !queue.is_empty() {
        invocations += 1;
        assert!(invocations < 10_000, "no progress");
        let size = 1 + next(5);
        let mut batch = Vec::new();
        while batch.len() < size && !queue.is_empty() {
            let at = next(queue.len());
            batch.push(queue.remove(at));
        }
        if next(4) == 0 {
            // At-least-once: the same message twice in one batch.
            let again = batch[next(batch.len())].clone();
            batch.push(again);
        }
        let results = process_batch(store, batch.clone(), cfg, 2).await;
        assert_eq!(results.len(), batch.len(), "one result per message");
        let mut failed: Vec<Chunk> = batch
            .into_iter()
            .zip(results)
            .filter(|(_, r)| r.is_err())
            .map(|(c, _)| c)
            .collect();
        // A duplicate of a failed message is the same message: requeue it once.
        failed.dedup_by(|a, b| a.chunk == b.chunk);
        for c in failed {
            if !queue.iter().any(|q| q.chunk == c.chunk) {
                let at = next(queue.len() + 1);
                queue.insert(at, c);
            }
        }
    }
    invocations
}

fn arb_events() -> impl Strategy<Value = Vec<UsageEvent>> {
    prop::collection::vec(
        (0u8..3, 0u8..2, 0u8..3, 0i64..(3 * 24 * 60), -20i64..200),
        1..40,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (a, m, s, t, q))| event(i, a, m, s, t, q))
            .collect()
    })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn shuffled_duplicated_and_crashed_streams_count_every_event_once(
        events in arb_events(),
        copies in prop::collection::vec(1usize..4, 40),
        order_seed in any::<u64>(),
        chunk_size in 1usize..8,
        faults in prop::collection::vec((0usize..60, any::<bool>()), 0..6),
        claim_group in prop_oneof![Just(1usize), 2usize..6],
    ) {
        // Every event is sent 1-3 times, in a shuffled stream cut into chunks.
        let stream: Vec<UsageEvent> = events
            .iter()
            .zip(copies.iter().cycle())
            .flat_map(|(e, &n)| std::iter::repeat_n(e.clone(), n))
            .collect();
        let mut keyed: Vec<(u64, UsageEvent)> = stream
            .into_iter()
            .enumerate()
            .map(|(i, e)| (order_seed.wrapping_mul(i as u64 + 1).rotate_left((i % 63) as u32) ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15), e))
            .collect();
        keyed.sort_by_key(|(k, _)| *k);
        let stream: Vec<UsageEvent> = keyed.into_iter().map(|(_, e)| e).collect();
        // Ingest never puts one id twice in a chunk; a client retry lands in another.
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut current: Vec<UsageEvent> = Vec::new();
        for e in stream {
            if current.len() == chunk_size || current.iter().any(|c| c.id == e.id) {
                chunks.push(chunk(chunks.len(), std::mem::take(&mut current)));
            }
            current.push(e);
        }
        chunks.push(chunk(chunks.len(), current));

        let s = store();
        for (at, after) in faults {
            s.fail_call(at, if after { Fault::After } else { Fault::Before });
        }
        rt().block_on(deliver_until_done(&s, chunks.clone(), claim_group));
        prop_assert_eq!(counted(&s), expected(&events));

        // Replaying the whole stream (a DLQ redrive, a client resend) changes nothing.
        rt().block_on(deliver_until_done(&s, chunks, claim_group));
        prop_assert_eq!(counted(&s), expected(&events));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The merged write (units of one invocation's chunks in one transaction) stays
    /// exact when redeliveries come in different mixes of messages, with faults before
    /// or after any store call, duplicates inside a batch, and a full replay.
    #[test]
    fn redeliveries_in_different_batch_mixes_count_every_event_once(
        events in arb_events(),
        copies in prop::collection::vec(1usize..4, 40),
        chunk_size in 1usize..8,
        seed in any::<u64>(),
        buckets in 1u32..4,
        part_size in 1usize..5,
        faults in prop::collection::vec((0usize..80, any::<bool>()), 0..8),
    ) {
        let stream: Vec<UsageEvent> = events
            .iter()
            .zip(copies.iter().cycle())
            .flat_map(|(e, &n)| std::iter::repeat_n(e.clone(), n))
            .collect();
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut current: Vec<UsageEvent> = Vec::new();
        for e in stream {
            if current.len() == chunk_size || current.iter().any(|c| c.id == e.id) {
                chunks.push(chunk(chunks.len(), std::mem::take(&mut current)));
            }
            current.push(e);
        }
        chunks.push(chunk(chunks.len(), current));
        let cfg = PipelineConfig { buckets, part_size, ..cfg() };

        let s = store();
        for (at, after) in faults {
            s.fail_call(at, if after { Fault::After } else { Fault::Before });
        }
        rt().block_on(deliver_in_mixed_batches(&s, chunks.clone(), seed, &cfg));
        prop_assert_eq!(counted(&s), expected(&events));

        // A redrive of everything, in yet another mix, changes nothing.
        rt().block_on(deliver_in_mixed_batches(&s, chunks, seed.rotate_left(17), &cfg));
        prop_assert_eq!(counted(&s), expected(&events));
    }
}

#[tokio::test]
async fn a_unit_applied_by_an_earlier_delivery_is_dropped_from_a_pack_and_the_rest_applied() {
    // Chunk 0 is counted alone; then it is redelivered in one batch with chunk 1,
    // whose events touch the same rollup items: the pack meets chunk 0's markers,
    // drops exactly those units and applies chunk 1's.
    let a: Vec<UsageEvent> = (0..4).map(|i| event(i, 0, 0, 0, 10, 10)).collect();
    let b: Vec<UsageEvent> = (4..8).map(|i| event(i, 0, 0, 0, 20, 5)).collect();
    let s = store();
    let c0 = chunk(0, a.clone());
    let c1 = chunk(1, b.clone());
    let one = PipelineConfig {
        buckets: 1,
        ..cfg()
    };
    process_chunk(&s, &c0, &one).await.unwrap();
    let out = process_batch(&s, vec![c0, c1], &one, 2).await;
    let out: Vec<_> = out.into_iter().map(|r| r.unwrap().outcome).collect();
    assert_eq!((out[0].units_applied, out[0].units_already_applied), (0, 1));
    assert_eq!((out[1].units_applied, out[1].units_already_applied), (1, 0));
    let all: Vec<UsageEvent> = a.into_iter().chain(b).collect();
    assert_eq!(counted(&s), expected(&all));
}

#[tokio::test]
async fn the_same_message_twice_in_one_batch_is_counted_once() {
    let events: Vec<UsageEvent> = (0..6)
        .map(|i| event(i, (i % 2) as u8, 0, 0, 10, 10))
        .collect();
    let s = store();
    let c = chunk(0, events.clone());
    let out = process_batch(&s, vec![c.clone(), c], &cfg(), 2).await;
    assert!(out.iter().all(Result::is_ok), "both copies succeed");
    assert_eq!(counted(&s), expected(&events));
}

#[tokio::test]
async fn a_crash_after_claiming_but_before_the_rollup_is_finished_by_the_redelivery() {
    let events: Vec<UsageEvent> = (0..10)
        .map(|i| event(i, (i % 2) as u8, 0, 1, i as i64 * 90, 10))
        .collect();
    let s = store();
    let c = chunk(0, events.clone());
    // Calls: 10 claims and their 10 drift-sample steps, then parts. Fail the first
    // part after it lands, then a call of the redelivery before it lands.
    s.fail_call(20, Fault::After);
    assert!(process_chunk(&s, &c, &cfg()).await.is_err());
    s.fail_call(1, Fault::Before);
    let before = s.calls();
    assert!(process_chunk(&s, &c, &cfg()).await.is_err());
    assert!(s.calls() > before);
    let out = process_chunk(&s, &c, &cfg()).await.unwrap();
    assert_eq!(
        out.counted, 10,
        "the chunk's own claims are still its to count"
    );
    assert!(out.units_already_applied >= 1);
    assert_eq!(counted(&s), expected(&events));
}

#[tokio::test]
async fn the_same_event_in_two_requests_is_counted_by_the_first_only() {
    let e = event(1, 0, 0, 0, 10, 30);
    let s = store();
    let first = process_chunk(&s, &chunk(1, vec![e.clone()]), &cfg())
        .await
        .unwrap();
    let second = process_chunk(&s, &chunk(2, vec![e.clone()]), &cfg())
        .await
        .unwrap();
    assert_eq!((first.counted, first.duplicates), (1, 0));
    assert_eq!((second.counted, second.duplicates), (0, 1));
    assert_eq!(counted(&s), expected(&[e]));
}

#[tokio::test]
async fn claims_made_in_groups_and_crashed_mid_chunk_are_finished_by_the_redelivery() {
    let events: Vec<UsageEvent> = (0..10)
        .map(|i| event(i, (i % 2) as u8, 0, 1, i as i64 * 90, 10))
        .collect();
    let s = store();
    let grouped = PipelineConfig {
        claim_group: 4,
        claim_concurrency: 1,
        ..cfg()
    };
    // Another chunk counted event 3 first: it stays that chunk's.
    let other = process_chunk(&s, &chunk(9, vec![events[3].clone()]), &cfg())
        .await
        .unwrap();
    assert_eq!(other.counted, 1);
    let c = chunk(0, events.clone());
    // Calls: the first group (events 0-3) and its 3 drift-sample steps, then the
    // second group (events 4-7): it lands, then the caller sees an error.
    let before = s.calls();
    s.fail_call(4, Fault::After);
    assert!(process_chunk(&s, &c, &grouped).await.is_err());
    assert_eq!(s.calls() - before, 5, "stopped at the second group");
    // The redelivery: both groups again (3 + 4 samples), then the third group (events
    // 8-9) fails before it lands.
    s.fail_call(1 + 3 + 1 + 4, Fault::Before);
    assert!(process_chunk(&s, &c, &grouped).await.is_err());
    let out = process_chunk(&s, &c, &grouped).await.unwrap();
    assert_eq!(
        (out.counted, out.duplicates),
        (9, 1),
        "the chunk counts its own claims, old and new, and not the other chunk's"
    );
    assert_eq!(counted(&s), expected(&events));
}
