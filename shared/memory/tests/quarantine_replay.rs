//! `domain::quarantine::replay` on the in-memory quarantine and queue: what a replay
//! queues, what it leaves held, and what it does when the queue goes down part-way.

use chrono::Utc;
use domain::chunk::Chunk;
use domain::event::UsageEvent;
use domain::ids::{AccountId, EventId, MeterName, Source, TenantId};
use domain::quarantine::{
    replay, QuarantineReason, QuarantineStore, Quarantined, Replay, ReplayError,
};
use memory::{MemoryQuarantine, MemoryQueue};
use rust_decimal::Decimal;

fn tenant() -> TenantId {
    TenantId::parse("t").expect("tenant id")
}

fn meter() -> MeterName {
    MeterName::parse("gone").expect("meter name")
}

fn held_events(store: &MemoryQuarantine, n: usize, source: Source) {
    let events: Vec<Quarantined> = (0..n)
        .map(|i| Quarantined {
            source,
            reason: QuarantineReason::MeterDeleted,
            received_at: Utc::now(),
            event: UsageEvent::new(
                EventId::parse(&format!("{}-{i:04}", source.as_str())).expect("event id"),
                AccountId::parse("acme").expect("account id"),
                meter(),
                Decimal::ONE,
                Utc::now(),
            ),
        })
        .collect();
    block_on(store.hold(&tenant(), &events)).expect("held");
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(f)
}

fn run(
    store: &MemoryQuarantine,
    queue: &MemoryQueue,
    budget: usize,
    max_bytes: usize,
) -> Result<Replay, ReplayError> {
    block_on(replay(
        store,
        queue,
        &tenant(),
        &meter(),
        budget,
        max_bytes,
        Utc::now(),
    ))
}

/// (source, event id) of every event queued, sorted.
fn sent_ids(queue: &MemoryQueue) -> Vec<(Source, String)> {
    let mut ids: Vec<(Source, String)> = queue
        .drain()
        .iter()
        .map(|b| serde_json::from_str::<Chunk>(b).expect("a chunk body"))
        .flat_map(|c| {
            let source = c.source;
            c.events
                .into_iter()
                .map(move |e| (source, e.id.to_string()))
        })
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_replay_queues_every_held_event_once_under_its_own_source_and_empties_the_quarantine() {
    let (store, queue) = (MemoryQuarantine::default(), MemoryQueue::default());
    held_events(&store, 1500, Source::Api);
    held_events(&store, 7, Source::Import);
    let r = run(&store, &queue, 10_000, 64 * 1024).expect("replayed");
    assert_eq!(
        r,
        Replay {
            replayed: 1507,
            remaining: false
        }
    );
    let ids = sent_ids(&queue);
    assert_eq!(ids.len(), 1507);
    assert_eq!(ids.iter().filter(|(s, _)| *s == Source::Import).count(), 7);
    assert!(ids.windows(2).all(|w| w[0] != w[1]));
    assert_eq!(store.len(&tenant(), &meter()), 0);
    assert_eq!(
        run(&store, &queue, 10_000, 64 * 1024).expect("nothing to do"),
        Replay::default()
    );
}

#[test]
fn a_replay_stops_at_its_budget_and_says_that_events_remain() {
    let (store, queue) = (MemoryQuarantine::default(), MemoryQueue::default());
    held_events(&store, 25, Source::Api);
    assert_eq!(
        run(&store, &queue, 10, 64 * 1024).expect("replayed"),
        Replay {
            replayed: 10,
            remaining: true
        }
    );
    assert_eq!(store.len(&tenant(), &meter()), 15);
    assert_eq!(
        run(&store, &queue, 15, 64 * 1024).expect("replayed"),
        Replay {
            replayed: 15,
            remaining: false
        }
    );
}

#[test]
fn events_whose_message_the_queue_refused_stay_held() {
    let (store, queue) = (MemoryQuarantine::default(), MemoryQueue::default());
    queue.fail_after(2);
    held_events(&store, 300, Source::Api);
    // Small messages: many chunks, the third and later are refused.
    let err = run(&store, &queue, 10_000, 4 * 1024).expect_err("the queue went down");
    let queued = sent_ids(&queue).len();
    assert!(matches!(err, ReplayError::Queue { replayed, .. } if replayed == queued));
    assert!(queued > 0 && queued < 300);
    assert_eq!(store.len(&tenant(), &meter()), 300 - queued);
}
