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
    let (w0, _) = t.stack.store.meter.snapshot();
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
    let (w1, dynamo_requests) = t.stack.store.meter.snapshot();
    let sends = t.stack.queue.requests.load(Ordering::Relaxed) - sends0;
    let polls = t.stack.poller.requests.load(Ordering::Relaxed) - polls0;
    let wru = (w1 - w0) as f64;

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
    print_bill(&domain::cost::RunUsage {
        events: accepted.unsigned_abs(),
        write_units: w1 - w0,
        sqs_requests: sends + polls,
        http_requests: requests as u64,
        functions: vec![
            domain::cost::FunctionRun {
                name: "ingest",
                invocations: requests as u64,
                seconds: ingest_time.as_secs_f64(),
                memory_mb: 256,
            },
            domain::cost::FunctionRun {
                name: "rollup",
                invocations: (stats.received as u64).div_ceil(10),
                seconds: rollup_time.as_secs_f64(),
                memory_mb: 512,
            },
        ],
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

/// US dollars per million events at list prices (`domain::cost`), from this run.
fn print_bill(usage: &domain::cost::RunUsage) {
    let Some((lines, total)) = domain::cost::per_million_events(usage, &domain::cost::LIST_PRICES)
    else {
        return;
    };
    println!(
        "  cost per million events at AWS list prices (us-east-1, on demand, arm64, no free tier):"
    );
    for l in &lines {
        println!("    {:<40} ${:>8.4}", l.item, l.dollars);
    }
    println!("    {:<40} ${:>8.4}", "total", total);
    println!("    Lambda time is this run's handler time against the emulator (memory from the template:");
    println!(
        "    ingest 256 MB, rollup 512 MB, 10 messages per rollup invocation), an upper bound: the"
    );
    println!("    emulator answers slower than DynamoDB and SQS do.");
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
