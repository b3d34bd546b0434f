//! `make bench`, issue #4: the extra DynamoDB write request units per accepted event
//! that entitlement tracking adds. The same 10,000 events over 50 accounts go through
//! ingest -> SQS -> rollup twice on the emulator, in fresh stacks: once with no
//! entitlements, once with 2 entitlements per account (limits set so that nearly every
//! entitlement crosses 80 % and 100 %: up to 200 alerts). The difference in
//! WRU is what tracking costs; alerts raised and duration are printed beside it.

use e2e::TestStack;
use serde_json::{json, Value};
use std::time::Instant;

const METERS: [(&str, &str); 3] = [
    ("api_calls", "call"),
    ("tickets_resolved", "ticket"),
    ("storage_gb", "GB"),
];
const STAGES: [&str; 2] = ["delivered", "billed"];

fn request_body(n: usize, offset: usize, ts: &str) -> String {
    let events: Vec<Value> = (offset..offset + n)
        .map(|i| {
            let (meter, unit) = METERS[i % 3];
            json!({
                "id": format!("evt-{i:08}"),
                "account": format!("account-{:03}", (i / 6) % 50),
                "meter": meter,
                "stage": STAGES[(i / 3) % 2],
                "quantity": (i % 17) + 1,
                "unit": unit,
                "timestamp": ts,
            })
        })
        .collect();
    serde_json::to_string(&events).unwrap_or_default()
}

struct Run {
    accepted: i64,
    wru: u64,
    alerts: usize,
    seconds: f64,
}

async fn run(entitlements: bool, requests: usize) -> Run {
    let t = TestStack::as_deployed().await;
    for a in 0..50 {
        let account = format!("account-{a:03}");
        t.put_account(&account, "smb").await;
        if entitlements {
            for (id, meter, stage) in [
                ("api", "api_calls", "delivered"),
                ("storage", "storage_gb", "billed"),
            ] {
                // ~30 units per entitlement per 1,000 events: limits of 20 per 1,000
                // events make (nearly) every entitlement cross 80 % and 100 %.
                let body = json!({"account": account, "meter": meter, "stage": stage,
                    "limit": 20 * requests, "period": "calendar_month", "time_zone": "UTC"});
                let (s, v) = t
                    .put_entitlement(&format!("{account}-{id}"), &body.to_string())
                    .await;
                assert_eq!(s, 201, "{v}");
            }
        }
    }
    let ts = e2e::now_rfc3339();
    let w0 = t.stack.store.meter.reading().write_units;
    let mut accepted = 0;
    for r in 0..requests {
        let (status, out) = t.post_events(&request_body(1000, r * 1000, &ts)).await;
        assert_eq!(status, 202, "{out}");
        accepted += out["accepted"].as_i64().unwrap_or(0);
    }
    let started = Instant::now();
    t.drain().await;
    let seconds = started.elapsed().as_secs_f64();
    let w1 = t.stack.store.meter.reading().write_units;
    let alerts = t.raised_alerts().await.len();
    // moto copies a table on every transaction; free this one before the next run.
    let table = t
        .provisioned
        .reference("UsageTable")
        .unwrap_or_default()
        .to_owned();
    let _ = aws_sdk_dynamodb::Client::new(&t.aws)
        .delete_table()
        .table_name(table)
        .send()
        .await;
    Run {
        accepted,
        wru: w1 - w0,
        alerts,
        seconds,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    // `cargo bench` passes --bench; under `cargo test` (make test) a 1,000-event smoke
    // run keeps the bench compiling and working without the full emulator load.
    let requests = if std::env::args().any(|a| a == "--bench") {
        10
    } else {
        1
    };
    let base = rt.block_on(run(false, requests));
    let with = rt.block_on(run(true, requests));
    assert_eq!(base.accepted, with.accepted);
    let n = with.accepted as f64;
    println!(
        "\nentitlement tracking ({} events, 50 accounts x 2 entitlements of limit {})",
        with.accepted,
        20 * requests
    );
    println!(
        "  WRU without entitlements:      {:>8.4} per event  ({} WRU, {} alerts)",
        base.wru as f64 / n,
        base.wru,
        base.alerts
    );
    println!(
        "  WRU with entitlements:         {:>8.4} per event  ({} WRU, {} alerts)",
        with.wru as f64 / n,
        with.wru,
        with.alerts
    );
    println!(
        "  extra WRU from tracking:       {:>8.4} per event  (alert markers: a conditional put + a 'done' update per alert)",
        (with.wru as f64 - base.wru as f64) / n
    );
    println!(
        "  rollup drain on the emulator:  {:>8.2} s without, {:.2} s with (consistent-read Queries per entitlement period per chunk)",
        base.seconds, with.seconds
    );
}
