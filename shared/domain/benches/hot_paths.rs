//! The CPU-bound paths of the functions, timed alone (no store, no network), to compare
//! builds: ingest's body split and validation, rollup's aggregation into deltas and
//! their partition, and score's measurement and scoring of an account.
//!
//! `cargo bench -p domain --bench hot_paths` (the `bench` profile, opt-level 3). The
//! price of another optimisation level, as docs/benchmarks.md measures it:
//! `CARGO_PROFILE_BENCH_OPT_LEVEL=z cargo bench -p domain --bench hot_paths` against
//! `=s`, each into its own `CARGO_TARGET_DIR` (every dependency is rebuilt).
//!
//! Each figure is the best of `ROUNDS` rounds, in ns per event or µs per account.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use domain::event::{split_body, validate_all, Limits, ValidationContext};
use domain::health::config::HealthConfig;
use domain::health::model::{self, Series};
use domain::health::synth::{Synth, SynthConfig};
use domain::ids::{MeterName, Segment, Stage};
use domain::keys::Scope;
use domain::ports::RollupRow;
use domain::registry::{MeterRule, TenantPolicy};
use domain::rollup::{aggregate, partition, Bucket, RollupKey};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::time::Instant;

const ROUNDS: usize = 5;
const EVENTS_PER_REQUEST: usize = 100;

/// Best wall time of `ROUNDS` runs of `f`, in seconds.
fn best_of(mut f: impl FnMut()) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn received_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 18, 0, 0)
        .single()
        .expect("a valid instant")
}

fn policy() -> TenantPolicy {
    let meters = ["api_calls", "seats_active", "tickets_opened"]
        .into_iter()
        .map(|m| {
            let meter = MeterName::parse(m).expect("a meter name");
            let rule = MeterRule {
                meter: meter.clone(),
                unit: None,
                status: Default::default(),
            };
            (meter, rule)
        })
        .collect::<HashMap<_, _>>();
    TenantPolicy {
        backfill_days: 35,
        meters,
        ..Default::default()
    }
}

/// One `POST /v1/events` body: `EVENTS_PER_REQUEST` events over 40 accounts, three
/// meters and the last day's hours.
fn request_body(request: usize) -> String {
    let events: Vec<String> = (0..EVENTS_PER_REQUEST)
        .map(|i| {
            let n = request * EVENTS_PER_REQUEST + i;
            let meter = ["api_calls", "seats_active", "tickets_opened"][n % 3];
            let at = received_at() - Duration::minutes((n % 1440) as i64);
            format!(
                r#"{{"id":"evt-{n}","account":"acct-{}","meter":"{meter}","quantity":{}.5,"timestamp":"{}"}}"#,
                n % 40,
                n % 17,
                at.format("%Y-%m-%dT%H:%M:%SZ")
            )
        })
        .collect();
    format!("[{}]", events.join(","))
}

fn ingest_and_rollup() {
    let policy = policy();
    let limits = Limits::default();
    let ctx = ValidationContext {
        received_at: received_at(),
        policy: &policy,
        limits: &limits,
    };
    let bodies: Vec<String> = (0..50).map(request_body).collect();
    let events = bodies.len() * EVENTS_PER_REQUEST;

    let validate = best_of(|| {
        for body in &bodies {
            let raw = split_body(body.as_bytes(), &limits).expect("a valid body");
            let (accepted, rejected) = validate_all(&raw, &ctx);
            assert_eq!((accepted.len(), rejected.len()), (EVENTS_PER_REQUEST, 0));
            black_box(accepted);
        }
    });
    println!(
        "ingest: split + validate, {events} events in requests of {EVENTS_PER_REQUEST}: {:.0} ns/event",
        validate * 1e9 / events as f64
    );

    let accepted: Vec<_> = bodies
        .iter()
        .flat_map(|body| {
            let raw = split_body(body.as_bytes(), &limits).expect("a valid body");
            validate_all(&raw, &ctx).0
        })
        .map(|(_, event)| event)
        .collect();
    let rollup = best_of(|| {
        let deltas = aggregate(accepted.iter().map(|e| (e, Segment::MidMarket)));
        black_box(partition(deltas, 25));
    });
    println!(
        "rollup: aggregate + partition, {events} events: {:.0} ns/event",
        rollup * 1e9 / events as f64
    );
}

/// Every meter of every day of the scoring window, as the store returns an account's
/// day rollups.
fn window_rows(s: &Synth, account: usize, as_of: NaiveDate) -> Vec<RollupRow> {
    let a = &s.accounts[account];
    let (from, _) = Series::window(as_of);
    (0..model::WINDOW_DAYS as i64)
        .map(|d| from + Duration::days(d))
        .flat_map(|day| {
            s.meters().iter().zip(s.day(a, day)).map(move |(meter, q)| {
                let total = Bucket {
                    quantity: Decimal::from_f64_retain(q).unwrap_or_default(),
                    events: 1,
                };
                let mut hours = [Bucket::default(); 24];
                hours[9] = total;
                RollupRow {
                    key: RollupKey {
                        scope: Scope::Account(a.subject.account.clone()),
                        day,
                        meter: meter.clone(),
                        stage: Stage::Delivered,
                        service_line: domain::ids::ServiceLine::default_line(),
                    },
                    total,
                    hours,
                }
            })
        })
        .collect()
}

fn scoring() {
    let as_of = NaiveDate::from_ymd_opt(2026, 11, 25).expect("a date");
    let accounts = 2_000;
    let s = Synth::new(SynthConfig {
        accounts,
        seed: 7,
        start: as_of - Duration::days(300),
        end: as_of,
        churn_rate: 0.2,
    });
    let rows: Vec<Vec<RollupRow>> = (0..accounts).map(|i| window_rows(&s, i, as_of)).collect();
    let cfg = HealthConfig::default();
    let none = BTreeMap::new();
    let measure = |i: usize| {
        let series = Series::from_rows(as_of, &rows[i]);
        model::measure(&s.accounts[i].subject, &series, as_of, &cfg, &none)
    };
    let measured: Vec<_> = (0..accounts).map(measure).collect();
    let baselines = model::baselines(&measured, &cfg);
    let mut scored = 0;
    let took = best_of(|| {
        scored = (0..accounts)
            .filter(|&i| {
                let m = measure(i);
                baselines
                    .get(&m.segment)
                    .and_then(|b| model::score(&m, b, &cfg))
                    .is_some()
            })
            .count();
    });
    assert!(scored > 0, "no account scored");
    println!(
        "score: series + measure + score, {accounts} accounts of {} rows ({scored} scored): {:.1} µs/account",
        rows[0].len(),
        took * 1e6 / accounts as f64
    );
}

fn main() {
    ingest_and_rollup();
    scoring();
}
