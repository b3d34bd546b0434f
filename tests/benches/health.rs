//! `make bench` (health, issue #5):
//!
//! 1. Accounts scored per second on one core: pure scoring of 90 days x 5 meters per
//!    account (rollup rows -> daily series -> measurement -> normalised score).
//! 2. DynamoDB read requests per scored account in the fan-out path.
//! 3. Wall time and heap for 100,000 accounts through the whole fan-out path (start,
//!    measure shards, fan-in baselines, score shards) against a simulated store:
//!    accounts and rollups generated on demand, records counted but not kept.
//!
//! `cargo bench` runs 100,000 accounts; without `--bench` a 5,000-account smoke run.

use chrono::{Duration, NaiveDate};
use domain::health::config::HealthConfig;
use domain::health::model::{self, Series};
use domain::health::run::HealthRunner;
use domain::health::synth::{Synth, SynthConfig};
use domain::ids::{Stage, TenantId};
use domain::keys::Scope;
use domain::ports::RollupRow;
use domain::rollup::{Bucket, RollupKey};
use memory::health::{run_in_memory, MemoryHealthStore, MemoryQueue, Simulated};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static ALLOC: e2e::alloc::Counting = e2e::alloc::Counting;

const MIB: f64 = 1024.0 * 1024.0;
const FIVE: [&str; 5] = [
    "api_calls",
    "tickets_resolved",
    "seats_active",
    "tickets_opened",
    "tickets_reopened",
];

fn synth(accounts: usize, as_of: NaiveDate) -> Synth {
    Synth::new(SynthConfig {
        accounts,
        seed: 11,
        start: as_of - Duration::days(300),
        end: as_of,
        churn_rate: 0.2,
    })
}

/// 90 days x 5 meters of day rollups per account, as the store returns them.
fn rows(s: &Synth, as_of: NaiveDate) -> Vec<Vec<RollupRow>> {
    let (from, _) = Series::window(as_of);
    s.accounts
        .iter()
        .map(|a| {
            let mut out = Vec::with_capacity(450);
            for d in 0..model::WINDOW_DAYS as i64 {
                let day = from + Duration::days(d);
                for (m, q) in s.meters().iter().zip(s.day(a, day)) {
                    if !FIVE.contains(&m.as_str()) {
                        continue;
                    }
                    // Every meter every day (zeros too): the 450-row worst case.
                    let quantity = rust_decimal::Decimal::from_f64_retain(q).unwrap_or_default();
                    let mut hours = [Bucket::default(); 24];
                    hours[12] = Bucket {
                        quantity,
                        events: 1,
                    };
                    out.push(RollupRow {
                        key: RollupKey {
                            scope: Scope::Account(a.subject.account.clone()),
                            day,
                            meter: m.clone(),
                            stage: Stage::Delivered,
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
            out
        })
        .collect()
}

fn pure_scoring(n: usize, as_of: NaiveDate) {
    let s = synth(n, as_of);
    let all = rows(&s, as_of);
    let cfg = HealthConfig::default();
    // Baselines from the population, computed once (as the fan-in does).
    let ms: Vec<_> = s
        .accounts
        .iter()
        .zip(&all)
        .map(|(a, r)| {
            model::measure(
                &a.subject,
                &Series::from_rows(as_of, r),
                as_of,
                &cfg,
                &BTreeMap::new(),
            )
        })
        .collect();
    let baselines = model::baselines(&ms, &cfg);
    let rows_per_account = all.iter().map(Vec::len).sum::<usize>() as f64 / n as f64;
    let mut best = f64::MAX;
    let mut scored = 0;
    for _ in 0..3 {
        let started = Instant::now();
        scored = 0;
        for (a, r) in s.accounts.iter().zip(&all) {
            let series = Series::from_rows(as_of, r);
            let m = model::measure(&a.subject, &series, as_of, &cfg, &BTreeMap::new());
            if let Some(b) = baselines.get(&m.segment) {
                if model::score(&m, b, &cfg).is_some() {
                    scored += 1;
                }
            }
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!("pure scoring, one core ({n} accounts, {rows_per_account:.0} rollup rows = 90 days x 5 meters each; best of 3)");
    println!(
        "  {:.0} accounts/s ({:.1} µs/account; {scored} scored, the rest insufficient_data)",
        n as f64 / best,
        best * 1e6 / n as f64
    );
}

async fn fan_out(n: usize, as_of: NaiveDate) {
    let t = TenantId::parse("bench").unwrap();
    let sim = Arc::new(Simulated::new(t.clone(), synth(n, as_of)));
    let health = Arc::new(MemoryHealthStore::discarding(std::slice::from_ref(&t)));
    let shards = Arc::new(MemoryQueue::default());
    let alerts = Arc::new(MemoryQueue::default());
    let runner = HealthRunner {
        health: health.clone(),
        accounts: sim.clone(),
        usage: sim.clone(),
        definitions: sim.clone(),
        markers: sim.clone(),
        band_summaries: Arc::new(memory::MemoryBandSummaries::default()),
        shards: shards.clone(),
        alerts: alerts.clone(),
        crm: None,
        shard_size: 100,
        concurrency: 8,
    };
    let base = e2e::alloc::start();
    let started = Instant::now();
    let (run, out) = run_in_memory(&runner, &shards, &t, as_of, false)
        .await
        .expect("run");
    let wall = started.elapsed().as_secs_f64();
    let peak = e2e::alloc::peak_since(base) as f64 / MIB;
    let reads = sim.reads.load(Ordering::Relaxed) + health.reads.load(Ordering::Relaxed);
    let scored = out.scored + out.insufficient;
    println!("\nfan-out path, simulated store ({n} accounts, shards of 100, one process, messages one after another)");
    println!(
        "  {} shards; {} scored, {} insufficient_data; {} alerts raised",
        run.shards, out.scored, out.insufficient, out.alerts
    );
    println!(
        "  wall {wall:.1} s ({:.0} accounts/s, {:.0} ms per shard message; Lambda runs up to 10 shards at once)",
        scored as f64 / wall,
        wall * 1000.0 / (2.0 * run.shards as f64)
    );
    println!(
        "  DynamoDB read requests: {reads} = {:.3} per scored account (rollup Query 1.000 + batched/once-per-shard reads)",
        reads as f64 / scored as f64
    );
    println!(
        "  DynamoDB write requests: {} = {:.3} per account; SQS send requests {} (alerts {})",
        health.writes.load(Ordering::Relaxed) + sim.writes.load(Ordering::Relaxed),
        (health.writes.load(Ordering::Relaxed) + sim.writes.load(Ordering::Relaxed)) as f64
            / scored as f64,
        shards.requests.load(Ordering::Relaxed) + alerts.requests.load(Ordering::Relaxed),
        alerts.requests.load(Ordering::Relaxed),
    );
    println!("  peak heap above start: {peak:.1} MiB (includes the simulated store's shard measurements)");
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 100_000 } else { 5_000 };
    let as_of = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
    pure_scoring(if full { 20_000 } else { 2_000 }, as_of);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(fan_out(n, as_of));
}
