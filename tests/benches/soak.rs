//! `make bench`: a bounded soak of the counting pipeline against the emulator
//! (issue #16, "Load that proves nothing is lost").
//!
//! For `SOAK_SECONDS` (default 300) a producer posts a steady stream of events with
//! client retries (the same events again), late events (hours old) and, every so often,
//! a poison message straight onto the events queue. The rollup worker (the poller and
//! the real rollup handler) is killed at random times (its task aborted wherever it
//! is: mid-claim, mid-transaction, after writing and before deleting) and restarted,
//! and some invocations crash after their writes and before their acknowledgement.
//! Afterwards every account's rollup must hold exactly the distinct events accepted
//! (nothing lost, nothing counted twice), and every poison message must be in the DLQ.
//! Prints events/s, the p50/p99 lag from receipt to counted, and the emulator's peak
//! RSS (`MOTO_PID`, exported by infra/local/with-moto.sh).

use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use e2e::TestStack;
use local::esm::SqsHandler;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 12;
/// Receives before the DLQ: poison messages get there; a good message would have to be
/// killed or crashed this often in a row.
const SOAK_MAX_RECEIVES: u32 = 4;
/// Longer than an invocation takes on a busy emulator (2 s, the tests' value, and 10 s
/// were not: batches still being counted were received again until the DLQ).
const SOAK_VISIBILITY_SECS: i32 = 30;

/// One accepted event as the producer knows it.
#[derive(Clone)]
struct Sent {
    account: usize,
    quantity: i64,
    accepted_at: Instant,
}

/// xorshift64: the soak's randomness, seeded from `SOAK_SEED` (default: the clock).
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The real rollup handler, timing when each event is first counted (acknowledged),
/// and crashing some invocations after their writes and before their acknowledgement.
struct Timed {
    inner: Arc<rollup::Rollup>,
    counted_at: Arc<Mutex<HashMap<String, Instant>>>,
    crash_one_in: u64,
    crashes: AtomicU64,
    calls: AtomicU64,
}

#[async_trait]
impl SqsHandler for Timed {
    async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let bodies: Vec<(String, String)> = event
            .records
            .iter()
            .map(|m| {
                (
                    m.message_id.clone().unwrap_or_default(),
                    m.body.clone().unwrap_or_default(),
                )
            })
            .collect();
        let response = self.inner.handle(event).await;
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        if self.crash_one_in > 0 && n % self.crash_one_in == self.crash_one_in - 1 {
            // Written, not acknowledged: the whole batch comes back after the timeout.
            self.crashes.fetch_add(1, Ordering::Relaxed);
            panic!("soak: crash after writing, before acknowledging");
        }
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let now = Instant::now();
        let mut counted = self.counted_at.lock().unwrap_or_else(|p| p.into_inner());
        for (id, body) in &bodies {
            if failed.contains(&id.as_str()) {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(body) else {
                continue;
            };
            for e in v["events"].as_array().into_iter().flatten() {
                if let Some(eid) = e["id"].as_str() {
                    counted.entry(eid.to_owned()).or_insert(now);
                }
            }
        }
        response
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn moto_peak_rss() -> String {
    let Some(pid) = std::env::var("MOTO_PID").ok() else {
        return "unknown (MOTO_PID not set)".into();
    };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| format!("unknown (no /proc/{pid}/status)"))
}

async fn soak(seconds: u64, seed: u64) {
    let t = Arc::new(TestStack::for_soak(SOAK_VISIBILITY_SECS, SOAK_MAX_RECEIVES).await);
    for a in 0..ACCOUNTS {
        t.put_account(&format!("soak-{a:02}"), ["smb", "enterprise"][a % 2])
            .await;
    }
    let counted_at = Arc::new(Mutex::new(HashMap::new()));
    let handler = Arc::new(Timed {
        inner: t.stack.rollup.clone(),
        counted_at: counted_at.clone(),
        crash_one_in: 17,
        crashes: AtomicU64::new(0),
        calls: AtomicU64::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let worker = |t: Arc<TestStack>, h: Arc<Timed>| {
        tokio::spawn(async move {
            loop {
                let _ = t
                    .stack
                    .poller
                    .poll_once(h.as_ref(), Duration::from_millis(500))
                    .await;
            }
        })
    };

    // The killer: aborts the worker at random times and starts a new one.
    let killer = {
        let (t, h, stop) = (t.clone(), handler.clone(), stop.clone());
        tokio::spawn(async move {
            let mut rng = Rng(seed.rotate_left(7) | 1);
            let mut kills = 0u64;
            let mut w = worker(t.clone(), h.clone());
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(5000 + rng.next(15000))).await;
                w.abort();
                let _ = w.await;
                kills += 1;
                tokio::time::sleep(Duration::from_millis(rng.next(500))).await;
                w = worker(t.clone(), h.clone());
            }
            (w, kills)
        })
    };

    // The producer.
    let mut rng = Rng(seed | 1);
    let mut sent: BTreeMap<String, Sent> = BTreeMap::new();
    let (mut requests, mut resent, mut late, mut poison) = (0u64, 0u64, 0u64, 0u64);
    let started = Instant::now();
    let mut next_id = 0u64;
    let events_url = t
        .provisioned
        .reference("EventsQueue")
        .unwrap_or_default()
        .to_owned();
    while started.elapsed() < Duration::from_secs(seconds) {
        let now = chrono::Utc::now();
        let mut batch: Vec<Value> = Vec::new();
        let mut fresh: Vec<(String, Sent)> = Vec::new();
        for _ in 0..20 {
            // One in ten events is a client retry of an event already accepted.
            if !sent.is_empty() && rng.next(10) == 0 {
                let k = rng.next(sent.len() as u64) as usize;
                if let Some((id, s)) = sent.iter().nth(k) {
                    if !batch.iter().any(|e| e["id"] == id.as_str()) {
                        batch.push(
                            json!({"id": id, "account": format!("soak-{:02}", s.account),
                            "meter": "api_calls", "quantity": s.quantity, "unit": "call",
                            "timestamp": s_ts(id)}),
                        );
                        resent += 1;
                        continue;
                    }
                }
            }
            let id = format!("soak-{next_id:08}");
            next_id += 1;
            let account = rng.next(ACCOUNTS as u64) as usize;
            let quantity = 1 + rng.next(50) as i64;
            // One in eight is late: up to 20 hours old.
            let ts = if rng.next(8) == 0 {
                late += 1;
                now - chrono::Duration::minutes(1 + rng.next(1200) as i64)
            } else {
                now
            };
            let ts = ts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            remember_ts(&id, &ts);
            batch.push(json!({"id": id, "account": format!("soak-{account:02}"),
                "meter": "api_calls", "quantity": quantity, "unit": "call", "timestamp": ts}));
            fresh.push((
                id,
                Sent {
                    account,
                    quantity,
                    accepted_at: Instant::now(),
                },
            ));
        }
        let body = Value::Array(batch).to_string();
        let (status, out) = t.post_events(&body).await;
        requests += 1;
        if status == 202 && out["rejected"].as_array().is_none_or(|r| r.is_empty()) {
            let accepted_at = Instant::now();
            for (id, mut s) in fresh {
                s.accepted_at = accepted_at;
                sent.entry(id).or_insert(s);
            }
        } else {
            panic!("soak request refused: {status} {out}");
        }
        // Every fifteenth request, a poison message.
        if requests % 15 == 0 {
            t.stack
                .sqs
                .send_message()
                .queue_url(&events_url)
                .message_body(poison_body(poison))
                .send()
                .await
                .unwrap_or_else(|e| panic!("poison send: {e}"));
            poison += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let produced_for = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (w, kills) = killer.await.unwrap_or_else(|e| panic!("killer: {e}"));
    w.abort();
    let _ = w.await;
    // Let everything left (and everything redelivered) be counted, unkilled.
    let drain_started = Instant::now();
    while drain_started.elapsed() < Duration::from_secs(300) {
        let _ = t
            .stack
            .poller
            .poll_once(handler.as_ref(), Duration::from_millis(500))
            .await;
        if t.queue_depth("EventsQueue").await == 0 {
            break;
        }
    }
    let total_time = started.elapsed();

    // Nothing lost, nothing counted twice.
    let mut expected: BTreeMap<usize, (i64, i64)> = BTreeMap::new();
    for s in sent.values() {
        let e = expected.entry(s.account).or_default();
        e.0 += s.quantity;
        e.1 += 1;
    }
    let mut mismatches = Vec::new();
    for a in 0..ACCOUNTS {
        let (q, n) = e2e::total(&t.usage(&format!("soak-{a:02}"), "meter=api_calls").await);
        let (eq, en) = expected.get(&a).copied().unwrap_or_default();
        if q.parse::<f64>().ok() != Some(eq as f64) || n != en {
            mismatches.push(format!(
                "soak-{a:02}: counted {n} events / {q}, expected {en} / {eq}"
            ));
        }
    }
    let dlq = dlq_bodies(&t).await;
    let poison_in_dlq = (0..poison)
        .filter(|p| dlq.iter().any(|b| *b == poison_body(*p)))
        .count() as u64;
    let chunks_in_dlq = dlq.iter().filter(|b| b.contains("\"events\"")).count();
    let left = t.queue_depth("EventsQueue").await;

    let mut lags: Vec<Duration> = {
        let counted = counted_at.lock().unwrap_or_else(|p| p.into_inner());
        sent.iter()
            .filter_map(|(id, s)| {
                counted
                    .get(id)
                    .map(|c| c.saturating_duration_since(s.accepted_at))
            })
            .collect()
    };
    lags.sort();
    println!(
        "\nsoak ({} s of load, seed {seed}; worker killed {kills} times, {} invocations crashed after writing)",
        produced_for.as_secs(),
        handler.crashes.load(Ordering::Relaxed)
    );
    println!(
        "  accepted: {} distinct events in {requests} requests (+{resent} resent, {late} late), {poison} poison messages",
        sent.len()
    );
    println!(
        "  throughput: {:.1} events/s accepted and counted (until the queue was empty: {:.1} s)",
        sent.len() as f64 / total_time.as_secs_f64(),
        total_time.as_secs_f64()
    );
    println!(
        "  lag receipt -> counted: p50 {:.2} s, p99 {:.2} s, max {:.2} s ({} events timed)",
        percentile(&lags, 0.5).as_secs_f64(),
        percentile(&lags, 0.99).as_secs_f64(),
        lags.last().copied().unwrap_or_default().as_secs_f64(),
        lags.len()
    );
    println!("  emulator peak RSS: {}", moto_peak_rss());
    println!(
        "  lost or double-counted accounts: {}; DLQ: {} messages, {poison_in_dlq} of the {poison} poison messages; left on the queue: {left}",
        mismatches.len(),
        dlq.len()
    );
    if chunks_in_dlq > 0 {
        // Counted anyway (the totals above include them): a batch outlived the
        // visibility timeout on the loaded emulator and was received again and again.
        println!("  chunks in the DLQ: {chunks_in_dlq} (already counted: the totals match)");
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    assert_eq!(poison_in_dlq, poison, "every poison message is in the DLQ");
    assert_eq!(left, 0, "nothing left on the events queue");
}

fn poison_body(n: u64) -> String {
    format!("{{\"poison\": {n}")
}

/// Every message body in the events DLQ (received, then left there).
async fn dlq_bodies(t: &TestStack) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let got = t
            .stack
            .sqs
            .receive_message()
            .queue_url(&t.stack.dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DLQ receive: {e}"))
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            break;
        }
        for m in got {
            if seen.insert(m.message_id.clone().unwrap_or_default()) {
                out.push(m.body.unwrap_or_default());
            }
        }
    }
    out
}

thread_local! {
    static TS: std::cell::RefCell<HashMap<String, String>> = Default::default();
}

fn remember_ts(id: &str, ts: &str) {
    TS.with(|m| m.borrow_mut().insert(id.to_owned(), ts.to_owned()));
}

/// A resent event carries its original timestamp (the same event, retried).
fn s_ts(id: &str) -> String {
    TS.with(|m| m.borrow().get(id).cloned().unwrap_or_default())
}

fn main() {
    if std::env::var("RUST_LOG").is_err() {
        std::env::set_var("RUST_LOG", "error");
    }
    lambda::telemetry::init();
    let seconds = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300u64);
    let seed = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(soak(seconds, seed));
}
