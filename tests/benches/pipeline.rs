//! `make bench`: the figures issue #2 asks for.
//!
//! 1. Ingest handler throughput on one core (current-thread runtime) for a 1,000-event
//!    request, beside `serde_json::from_slice::<Value>` of the same bytes.
//! 2. DynamoDB write request units per accepted event, 10,000 events over
//!    50 accounts x 3 meters x 2 stages, through ingest -> SQS -> rollup on the emulator.
//! 3. SQS requests per accepted event (sends, and with the poller's receives/deletes).
//! 4. Peak heap of the ingest and rollup handlers (counting allocator).

use domain::event::{MeterRule, TenantPolicy};
use domain::ids::{MeterName, TenantId};
use e2e::TestStack;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: e2e::alloc::Counting = e2e::alloc::Counting;

/// Peak heap growth while `f` runs, in bytes above the level at its start.
async fn peak_during<F: std::future::Future>(f: F) -> (F::Output, usize) {
    let base = e2e::alloc::start();
    let out = f.await;
    (out, e2e::alloc::peak_since(base))
}

const METERS: [&str; 3] = ["api_calls", "tickets_resolved", "storage_gb"];
const STAGES: [&str; 2] = ["delivered", "billed"];

/// A request of `n` events; `offset` makes ids unique across requests.
fn request_body(n: usize, offset: usize, ts: &str) -> String {
    let events: Vec<Value> = (offset..offset + n)
        .map(|i| {
            let unit = if METERS[i % 3] == "storage_gb" {
                "GB"
            } else if METERS[i % 3] == "api_calls" {
                "call"
            } else {
                "ticket"
            };
            json!({
                "id": format!("evt-{i:08}"),
                "account": format!("account-{:03}", (i / 6) % 50),
                "meter": METERS[i % 3],
                "stage": STAGES[(i / 3) % 2],
                "quantity": (i % 17) + 1,
                "unit": unit,
                "timestamp": ts,
                "service_line": "platform",
                "properties": {"region": "eu-west-1", "plan": "growth"}
            })
        })
        .collect();
    serde_json::to_string(&events).unwrap_or_default()
}

/// The bench key, and the in-memory directory that knows it: the throughput figure
/// measures the handler's own work (auth lookup, parsing, validation, packing), not
/// the emulator's network.
const BENCH_KEY: &str = "k";

fn directory() -> memory::MemoryDirectory {
    let tenant = TenantId::parse("bench").expect("valid");
    let grant = domain::auth::KeyGrant {
        tenant: tenant.clone(),
        key_id: "bench".into(),
        label: "bench".into(),
        scopes: vec![domain::auth::KeyScope::Ingest],
        created_at: chrono::Utc::now(),
        expires_at: None,
        revoked_at: None,
    };
    memory::MemoryDirectory::default()
        .with_policy(&tenant, policy())
        .with_key(&domain::auth::hash_key(BENCH_KEY), grant)
}

fn policy() -> TenantPolicy {
    let mut meters = HashMap::new();
    for (m, u) in [
        ("api_calls", "call"),
        ("tickets_resolved", "ticket"),
        ("storage_gb", "GB"),
    ] {
        let meter = MeterName::parse(m).unwrap_or_else(|_| unreachable!());
        meters.insert(
            meter.clone(),
            MeterRule {
                meter,
                unit: Some(u.into()),
                status: Default::default(),
            },
        );
    }
    TenantPolicy {
        backfill_days: 35,
        meters,
        ..Default::default()
    }
}

fn post(body: &str, key: &str) -> lambda_http::Request {
    lambda_http::http::Request::builder()
        .method("POST")
        .uri("/v1/events")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(lambda_http::Body::Binary(body.as_bytes().to_vec()))
        .unwrap_or_default()
}

fn throughput(rt: &tokio::runtime::Runtime) {
    let mut ingest = ingest::Ingest::new(
        Arc::new(directory()),
        Arc::new(memory::MemoryQueue::discarding()),
    );
    // Measure the handler's work, not quota refusals: one tenant sends far more than
    // its default request and event quotas here.
    let unlimited = || {
        let a = domain::quota::Allowance {
            rate: 1e12,
            burst: 1e12,
        };
        Arc::new(domain::quota::Quotas::new(a, Default::default()))
    };
    ingest.quotas = unlimited();
    ingest.event_quotas = unlimited();
    let body = request_body(1000, 0, &e2e::now_rfc3339());
    let bytes = body.as_bytes();
    let budget = Duration::from_secs(3);

    // Warm up, then time each side for the same wall budget.
    for _ in 0..5 {
        let r = rt.block_on(ingest.handle(post(&body, BENCH_KEY)));
        assert_eq!(r.status(), 202);
    }
    let (mut n, start) = (0u32, Instant::now());
    while start.elapsed() < budget {
        let r = rt.block_on(ingest.handle(post(&body, BENCH_KEY)));
        assert_eq!(r.status(), 202);
        n += 1;
    }
    let handler = start.elapsed() / n;
    let (mut m, start) = (0u32, Instant::now());
    while start.elapsed() < budget {
        std::hint::black_box(
            serde_json::from_slice::<Value>(bytes)
                .map(|v| v.is_array())
                .unwrap_or(false),
        );
        m += 1;
    }
    let floor = start.elapsed() / m;
    let eps = |d: Duration| 1000.0 / d.as_secs_f64();
    println!(
        "ingest throughput (one core, 1,000-event request of {} bytes)",
        bytes.len()
    );
    println!(
        "  ingest handler:                {:>10.0} events/s  ({:>7.3} ms/request, {n} runs)",
        eps(handler),
        handler.as_secs_f64() * 1e3
    );
    println!(
        "  serde_json::from_slice<Value>: {:>10.0} events/s  ({:>7.3} ms/request, {m} runs)",
        eps(floor),
        floor.as_secs_f64() * 1e3
    );
    println!(
        "  ratio handler / parse floor:   {:>10.2}x  (target <= 3x)",
        handler.as_secs_f64() / floor.as_secs_f64()
    );
}

/// Write costs of `requests` x 1,000 events; with `critical`, that meter is a critical
/// definition (its events also feed the ingest activity items and the audit's
/// per-account series).
async fn costs(requests: usize, critical: Option<&str>, merged: bool) {
    let t = if merged {
        TestStack::for_benchmarks().await
    } else {
        TestStack::for_benchmarks_unmerged().await
    };
    if let Some(m) = critical {
        let unit = if m == "storage_gb" {
            "GB"
        } else if m == "api_calls" {
            "call"
        } else {
            "ticket"
        };
        let body = json!({"unit": unit, "criticality": "critical"}).to_string();
        let (s, v) = t
            .call("PUT", &format!("/v1/definitions/{m}"), Some(&body))
            .await;
        assert!(s == 200 || s == 201, "{v}");
    }
    for a in 0..50 {
        let seg = ["smb", "mid_market", "enterprise", "strategic"][a % 4];
        t.put_account(&format!("account-{a:03}"), seg).await;
    }
    t.put_account("warmup", "smb").await;
    let ts = e2e::now_rfc3339();
    let m0 = t.stack.store.meter.reading();
    let sends0 = t.stack.queue.requests.load(Ordering::Relaxed);
    let polls0 = t.stack.poller.requests.load(Ordering::Relaxed);

    let mut accepted = 0i64;
    let mut ingest_peak = 0;
    let mut ingest_time = Duration::ZERO;
    for r in 0..requests {
        let body = request_body(1000, r * 1000, &ts);
        let sent = Instant::now();
        let ((status, out), peak) = peak_during(t.post_events(&body)).await;
        ingest_time += sent.elapsed();
        assert_eq!(status, 202, "{out}");
        accepted += out["accepted"].as_i64().unwrap_or(0);
        ingest_peak = ingest_peak.max(peak);
    }
    let started = Instant::now();
    let (stats, rollup_peak) = peak_during(t.drain_all(Duration::from_secs(300))).await;
    let rollup_time = started.elapsed();
    let end = t.stack.store.meter.reading();
    let (w1, dynamo_requests) = (end.write_units, end.requests);
    let sends = t.stack.queue.requests.load(Ordering::Relaxed) - sends0;
    let polls = t.stack.poller.requests.load(Ordering::Relaxed) - polls0;
    let wru = (w1 - m0.write_units) as f64;

    // Cross-check: every event counted exactly once.
    let mut counted = 0;
    for a in 0..50 {
        counted += e2e::total(&t.usage(&format!("account-{a:03}"), "").await).1;
    }
    assert_eq!(counted, accepted);

    println!(
        "\ncost per accepted event ({accepted} events, 50 accounts x 3 meters x 2 stages, one hour; counted: {counted}){}",
        critical.map_or(String::new(), |m| format!(", with {m} (1 meter in 3) critical"))
    );
    println!(
        "  rollup write path: {} (batches of up to 10 messages; {} received)",
        if merged {
            "units of every chunk of an invocation merged (issue #16)"
        } else {
            "BEFORE issue #16: each chunk's units written on their own"
        },
        stats.received
    );
    println!(
        "  DynamoDB write request units:  {:>8.3} per event  ({wru} WRU; target <= 1.10 for the burst)",
        wru / accepted as f64
    );
    println!("    counted from the items sent, by DynamoDB's sizing rules: ceil(size/1 KB) per item write,");
    println!(
        "    x2 inside TransactWriteItems; rollup updates sized at their largest possible item"
    );
    println!(
        "  DynamoDB requests:             {:>8.3} per event  ({dynamo_requests} write requests)",
        dynamo_requests as f64 / accepted as f64
    );
    println!("  SQS requests, ingest sends:    {:>8.4} per event  ({sends} SendMessageBatch calls; target <= 0.05)", sends as f64 / accepted as f64);
    println!("  SQS requests, incl. consumer:  {:>8.4} per event  (+{polls} receive/delete calls by the poller)", (sends + polls) as f64 / accepted as f64);
    println!(
        "  rollup drain on the emulator:  {:>8.2} s  ({} messages received, {} failed and redelivered)",
        rollup_time.as_secs_f64(),
        stats.received,
        stats.failed
    );
    let alerts = t.queue_depth("AlertsQueue").await;
    print_bill(&Run {
        events: accepted.unsigned_abs(),
        meter: end.since(&m0),
        sqs_requests: sends + polls,
        http_requests: requests as u64,
        alerts,
        ingest: (requests as u64, ingest_time),
        rollup: ((stats.received as u64).div_ceil(10), rollup_time),
    });
    println!("\npeak heap above baseline");
    println!(
        "  ingest handler, one 1,000-event request: {:>8.2} MiB",
        ingest_peak as f64 / 1048576.0
    );
    println!(
        "  rollup handler, draining {accepted} events:  {:>8.2} MiB",
        rollup_peak as f64 / 1048576.0
    );
}

/// What one workload used on the emulator, for the cost model.
struct Run {
    events: u64,
    meter: aws::dynamo::MeterReading,
    sqs_requests: u64,
    http_requests: u64,
    /// Alerts raised (each one SNS publish and one e-mail to the default subscription).
    alerts: u64,
    /// Invocations and handler time of ingest and of rollup.
    ingest: (u64, Duration),
    rollup: (u64, Duration),
}

/// The template's defaults: the ledger kept 120 days on Standard-IA (parameters
/// LedgerRetentionDays and LedgerTableClass).
const DEFAULT_LEDGER: domain::cost::LedgerRetention = domain::cost::LedgerRetention {
    days: domain::horizon::DEFAULT_RETENTION_DAYS,
    class: domain::cost::TableClass::InfrequentAccess,
};

impl Run {
    /// What the cost model prices: the meter's counts, the requests, and each
    /// function's invocations and time at the memory the template sets.
    fn usage(&self) -> domain::cost::RunUsage {
        let function =
            |name, (invocations, time): (u64, Duration), memory_mb| domain::cost::FunctionRun {
                name,
                invocations,
                seconds: time.as_secs_f64(),
                memory_mb,
            };
        domain::cost::RunUsage {
            events: self.events,
            write_units: self.meter.write_units,
            ledger_write_units: self.meter.ledger_write_units,
            read_half_units: self.meter.read_half_units,
            ledger_bytes: self.meter.ledger_bytes,
            sqs_requests: self.sqs_requests,
            http_requests: self.http_requests,
            sns_publishes: self.alerts,
            emails: self.alerts,
            functions: vec![
                function("ingest", self.ingest, 256),
                function("rollup", self.rollup, 512),
            ],
        }
    }
}

/// US dollars per million events at list prices (`domain::cost`), from this run: the
/// whole bill for the default ledger retention, and the total for other retentions.
fn print_bill(run: &Run) {
    use domain::cost::{LedgerRetention, TableClass};
    let usage = run.usage();
    let default = DEFAULT_LEDGER;
    let bill =
        |ledger| domain::cost::per_million_events(&usage, ledger, &domain::cost::LIST_PRICES);
    let total_at = |days, class| bill(LedgerRetention { days, class }).map_or(f64::NAN, |b| b.1);
    let Some((lines, total)) = bill(default) else {
        return;
    };
    let per_event = |n: u64| n as f64 / run.events as f64;
    println!(
        "  measured per event: {:.3} WRU ({:.3} of them ledger), {:.4} RRU, {:.0} ledger bytes stored, {:.4} SQS requests, {} alerts in the run",
        per_event(run.meter.write_units),
        per_event(run.meter.ledger_write_units),
        per_event(run.meter.read_half_units) / 2.0,
        per_event(run.meter.ledger_bytes),
        per_event(run.sqs_requests),
        run.alerts
    );
    println!(
        "  cost per million events at AWS list prices (us-east-1, on demand, arm64, no free tier;"
    );
    println!("  prices and their dates in shared/domain/src/cost.rs), ledger kept {} days on Standard-IA (the template's defaults):", default.days);
    for l in &lines {
        println!("    {:<48} ${:>8.4}", l.item, l.dollars);
    }
    println!("    {:<48} ${:>8.4}", "total", total);
    for (label, days, class) in [
        (
            "ledger 120 days on Standard",
            domain::horizon::DEFAULT_RETENTION_DAYS,
            TableClass::Standard,
        ),
        (
            "ledger 400 d on Standard-IA (old default)",
            400,
            TableClass::InfrequentAccess,
        ),
        ("ledger 400 days on Standard", 400, TableClass::Standard),
        (
            "ledger 109 days (a 90-day import horizon)",
            109,
            TableClass::Standard,
        ),
        (
            "ledger 54 days (the minimum retention)",
            domain::horizon::MIN_RETENTION_DAYS,
            TableClass::Standard,
        ),
    ] {
        println!(
            "    {:<48} ${:>8.4}",
            format!("total, {label}"),
            total_at(days, class)
        );
    }
    // The bill is linear in the retention: the longest one that stays within $1.00.
    for (name, class) in [
        ("Standard", TableClass::Standard),
        ("Standard-IA", TableClass::InfrequentAccess),
    ] {
        let (at0, at400) = (total_at(0, class), total_at(400, class));
        let per_day = (at400 - at0) / 400.0;
        let days = if at0 > 1.0 {
            0.0
        } else {
            (1.0 - at0) / per_day
        };
        println!(
            "    within $1.00 per million up to {days:>6.0} days of ledger retention on {name} (${:.5} per day kept)",
            per_day
        );
    }
    println!("    Lambda time is this run's handler time against the emulator (memory from the template:");
    println!(
        "    ingest 256 MB, rollup 512 MB, 10 messages per rollup invocation), an upper bound: the"
    );
    println!(
        "    emulator answers slower than DynamoDB and SQS do. Reads of the health store (scoring)"
    );
    println!("    are not in these runs.");
}

/// The second workload of issue #16: HubSpot webhook batches of 100 events (ticket
/// creations and stage changes of tickets whose company association arrived earlier),
/// each batch one HTTP API request and one ingest invocation, counted on the emulator
/// and priced like the first. The association webhooks come first and are priced on
/// their own: they record a mapping and count nothing.
async fn hubspot_costs(batches: usize) {
    const PORTAL: u64 = 62515;
    let t = TestStack::for_benchmarks().await;
    t.stack
        .store
        .map_portal(PORTAL, &t.tenant)
        .await
        .unwrap_or_else(|e| panic!("portal: {e}"));
    let now = chrono::Utc::now().timestamp_millis();
    let tickets = batches * 50;
    let post = |events: Vec<Value>| {
        e2e::signed_hubspot_request(
            e2e::HUBSPOT_SECRET,
            serde_json::to_vec(&events).unwrap_or_default(),
        )
    };
    // Phase 1: every ticket's association with one of 50 companies.
    let m0 = t.stack.store.meter.reading();
    let sends0 = t.stack.queue.requests.load(Ordering::Relaxed);
    let mut assoc_time = Duration::ZERO;
    let links: Vec<Value> = (0..tickets as u64)
        .map(|i| json!({"eventId": 9_000_000 + i, "subscriptionId": 12, "portalId": PORTAL, "appId": 77,
                        "occurredAt": now - 120_000, "subscriptionType": "ticket.associationChange",
                        "attemptNumber": 0, "associationType": "TICKET_TO_COMPANY", "fromObjectId": 1000 + i,
                        "toObjectId": 500 + i % 50, "associationRemoved": false, "isPrimaryAssociation": true}))
        .collect();
    for chunk in links.chunks(100) {
        let started = Instant::now();
        let (status, out) = e2e::decode(t.stack.ingest.handle(post(chunk.to_vec())).await);
        assoc_time += started.elapsed();
        assert_eq!(status, 200, "{out}");
    }
    // The rollup records the associations.
    let polls0 = t.stack.poller.requests.load(Ordering::Relaxed);
    let started = Instant::now();
    let assoc_stats = t.drain_all(Duration::from_secs(300)).await;
    let assoc_rollup_time = started.elapsed();
    let assoc_batches = links.len().div_ceil(100) as u64;
    let assoc = t.stack.store.meter.reading().since(&m0);
    let assoc_sqs = t.stack.queue.requests.load(Ordering::Relaxed) - sends0
        + t.stack.poller.requests.load(Ordering::Relaxed)
        - polls0;

    // Phase 2: usage, 100 events per batch: a creation and a stage change per ticket.
    let m1 = t.stack.store.meter.reading();
    let sends1 = t.stack.queue.requests.load(Ordering::Relaxed);
    let polls1 = t.stack.poller.requests.load(Ordering::Relaxed);
    let mut ingest_time = Duration::ZERO;
    let usage: Vec<Value> = (0..tickets as u64)
        .flat_map(|i| {
            [
                json!({"eventId": i, "subscriptionId": 11, "portalId": PORTAL, "appId": 77, "occurredAt": now - 60_000,
                       "subscriptionType": "ticket.creation", "attemptNumber": 0, "objectId": 1000 + i, "changeSource": "CRM_UI"}),
                json!({"eventId": 5_000_000 + i, "subscriptionId": 13, "portalId": PORTAL, "appId": 77, "occurredAt": now - 30_000,
                       "subscriptionType": "ticket.propertyChange", "attemptNumber": 0, "objectId": 1000 + i,
                       "propertyName": "hs_pipeline_stage", "propertyValue": "4", "changeSource": "CRM_UI"}),
            ]
        })
        .collect();
    let mut received = 0u64;
    for chunk in usage.chunks(100) {
        let started = Instant::now();
        let (status, out) = e2e::decode(t.stack.ingest.handle(post(chunk.to_vec())).await);
        ingest_time += started.elapsed();
        assert_eq!(status, 200, "{out}");
        received += out["received"].as_u64().unwrap_or(0);
    }
    let started = Instant::now();
    let stats = t.drain_all(Duration::from_secs(300)).await;
    let rollup_time = started.elapsed();
    let meter = t.stack.store.meter.reading().since(&m1);
    let sends = t.stack.queue.requests.load(Ordering::Relaxed) - sends1;
    let polls = t.stack.poller.requests.load(Ordering::Relaxed) - polls1;
    // Cross-check: every usage event counted once, on its ticket's company.
    let mut counted = 0;
    for c in 0..50 {
        counted += e2e::total(&t.usage(&format!("{}", 500 + c), "").await).1;
    }
    assert_eq!(
        counted.unsigned_abs(),
        usage.len() as u64,
        "counted vs sent"
    );
    let usage_batches = usage.len().div_ceil(100) as u64;
    println!(
        "\nHubSpot webhook batches of 100 events ({usage_batches} batches, {received} events received, {counted} counted on 50 companies)"
    );
    print_bill(&Run {
        events: counted.unsigned_abs(),
        meter,
        sqs_requests: sends + polls,
        http_requests: usage_batches,
        alerts: t.queue_depth("AlertsQueue").await,
        ingest: (usage_batches, ingest_time),
        rollup: ((stats.received as u64).div_ceil(10), rollup_time),
    });
    let assoc_run = Run {
        events: links.len() as u64,
        meter: assoc,
        sqs_requests: assoc_sqs,
        http_requests: assoc_batches,
        alerts: 0,
        ingest: (assoc_batches, assoc_time),
        rollup: (
            (assoc_stats.received as u64).div_ceil(10),
            assoc_rollup_time,
        ),
    };
    let (assoc_lines, assoc_total) = domain::cost::per_million_events(
        &assoc_run.usage(),
        DEFAULT_LEDGER,
        &domain::cost::LIST_PRICES,
    )
    .unwrap_or_default();
    println!(
        "  association webhooks before them ({} events in {assoc_batches} batches; recorded, not counted): ${assoc_total:.4} per million association events",
        links.len()
    );
    for l in assoc_lines.iter().filter(|l| l.dollars > 0.0) {
        println!("    {:<44} ${:>8.4}", l.item, l.dollars);
    }
}

/// HubSpot: a signed 100-event batch through verification, parsing and mapping.
fn hubspot_throughput() {
    use domain::hubspot::{mapping, signature, webhook};
    let now = chrono::Utc::now().timestamp_millis();
    let events: Vec<Value> = (0..100)
        .map(|i| {
            if i % 2 == 0 {
                json!({"eventId": i, "subscriptionId": 11, "portalId": 62515, "appId": 77, "occurredAt": now - i,
                       "subscriptionType": "ticket.creation", "attemptNumber": 0, "objectId": 1000 + i, "changeSource": "CRM_UI"})
            } else {
                json!({"eventId": i, "subscriptionId": 12, "portalId": 62515, "appId": 77, "occurredAt": now - i,
                       "subscriptionType": "ticket.propertyChange", "attemptNumber": 0, "objectId": 1000 + i,
                       "propertyName": "hs_pipeline_stage", "propertyValue": "4", "changeSource": "CRM_UI"})
            }
        })
        .collect();
    let body = serde_json::to_vec(&events).unwrap_or_default();
    let uri = "https://hooks.example.com/v1/webhooks/hubspot";
    let ts = now.to_string();
    let sig = signature::v3_signature("secret", "POST", uri, &body, &ts);
    let secrets = vec!["secret".to_owned()];
    let rules = mapping::default_rules();
    let budget = Duration::from_secs(2);
    let full = || {
        let signed = signature::Signed {
            method: "POST",
            uri,
            body: &body,
            v3: Some(&sig),
            timestamp: Some(&ts),
            legacy: None,
            version: None,
        };
        let ok = signature::verify(&signed, &secrets, now, signature::LegacyVersions::NONE).is_ok();
        let batch = webhook::parse_batch(&body).unwrap_or_default();
        let mapped = batch
            .iter()
            .filter(|e| matches!(mapping::map_event(&rules, e), mapping::Mapped::Usage { .. }))
            .count();
        let keys = batch
            .iter()
            .map(|e| e.idempotency_key().len())
            .sum::<usize>();
        assert!(ok && mapped == 100);
        std::hint::black_box(keys)
    };
    let (mut n, start) = (0u32, Instant::now());
    while start.elapsed() < budget {
        full();
        n += 1;
    }
    let handler = start.elapsed() / n;
    let (mut m, start) = (0u32, Instant::now());
    while start.elapsed() < budget {
        std::hint::black_box(
            serde_json::from_slice::<Value>(&body)
                .map(|v| v.is_array())
                .unwrap_or(false),
        );
        m += 1;
    }
    let floor = start.elapsed() / m;
    let eps = |d: Duration| 100.0 / d.as_secs_f64();
    println!(
        "\nHubSpot webhook (one core, signed 100-event batch of {} bytes)",
        body.len()
    );
    println!(
        "  verify + parse + map + keys:   {:>10.0} events/s  ({:>7.1} us/batch)",
        eps(handler),
        handler.as_secs_f64() * 1e6
    );
    println!(
        "  serde_json::from_slice<Value>: {:>10.0} events/s  ({:>7.1} us/batch)",
        eps(floor),
        floor.as_secs_f64() * 1e6
    );
    println!(
        "  ratio:                         {:>10.2}x",
        handler.as_secs_f64() / floor.as_secs_f64()
    );
}

fn main() {
    // Warnings (retries, failed chunks) go to stderr so a slow or failed run explains itself.
    if std::env::var("RUST_LOG").is_err() {
        std::env::set_var("RUST_LOG", "warn");
    }
    lambda::telemetry::init();
    // `cargo bench` passes --bench; any other argument filters nothing here.
    let one_core = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    // `cargo bench` passes --bench and gets the full 10,000 events; run directly
    // without it, a 1,000-event smoke run (moto copies its tables on every transaction).
    let full = std::env::args().any(|a| a == "--bench");
    if full {
        throughput(&one_core);
        hubspot_throughput();
    }
    // The 10,000-event burst before (each chunk on its own) and after merging.
    one_core.block_on(costs(if full { 10 } else { 1 }, None, false));
    one_core.block_on(costs(if full { 10 } else { 1 }, None, true));
    one_core.block_on(costs(if full { 3 } else { 1 }, Some("api_calls"), true));
    one_core.block_on(hubspot_costs(if full { 100 } else { 10 }));
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM")) {
            println!(
                "  whole bench process peak RSS ({})",
                line.split_whitespace()
                    .skip(1)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
}
