//! Entitlements, threshold alerts and notify, end to end against the emulator.

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use chrono::{Datelike, Duration as Days, NaiveDate, Utc};
use e2e::{now_rfc3339, TestStack, TEST_VISIBILITY_SECS};
use serde_json::{json, Value};
use std::time::Duration;

fn ev(id: &str, account: &str, qty: i64, ts: &str) -> Value {
    json!({"id": id, "account": account, "meter": "api_calls", "quantity": qty, "timestamp": ts})
}

async fn setup(t: &TestStack, account: &str, body: Value) {
    t.put_account(account, "mid_market").await;
    let (status, v) = t
        .put_entitlement(&format!("{account}-ent"), &body.to_string())
        .await;
    assert_eq!(status, 201, "{v}");
}

fn monthly(account: &str) -> Value {
    json!({"account": account, "meter": "api_calls", "limit": 100, "period": "calendar_month", "time_zone": "UTC"})
}

/// Takes the events queue's visible messages without deleting them, as SQS records.
async fn receive_chunks(t: &TestStack) -> Vec<SqsMessage> {
    let url = t.provisioned.reference("EventsQueue").unwrap();
    let msgs = t
        .stack
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    msgs.iter()
        .map(|m| {
            let mut r = SqsMessage::default();
            r.message_id = m.message_id.clone();
            r.body = m.body.clone();
            r
        })
        .collect()
}

fn batch(records: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = records;
    e
}

fn period_key() -> String {
    let now = Utc::now().date_naive();
    format!("{}-{:02}-01", now.year(), now.month())
}

#[tokio::test]
async fn crossing_80_and_100_percent_in_one_batch_raises_both_once_each() {
    let t = TestStack::fresh().await;
    setup(&t, "acme", monthly("acme")).await;
    let ts = now_rfc3339();
    let body = json!([
        ev("a1", "acme", 50, &ts),
        ev("a2", "acme", 35, &ts),
        ev("a3", "acme", 20, &ts)
    ]);
    assert_eq!(t.post_events(&body.to_string()).await.1["accepted"], 3);
    t.drain().await;
    let raised = t.raised_alerts().await;
    let p = period_key();
    assert_eq!(
        TestStack::keys(&raised),
        vec![
            format!("limit:acme-ent:{p}:threshold:100"),
            format!("limit:acme-ent:{p}:threshold:80"),
        ]
    );
    let hundred = raised.iter().find(|a| a["threshold"] == 100).unwrap();
    assert_eq!(hundred["used"], "105");
    assert_eq!(hundred["severity"], "critical");
    assert_eq!(hundred["owner"], "csm@example.com");
    assert_eq!(hundred["late"], false);

    // The balance shows the overage.
    let (status, v) = t.call("GET", "/v1/entitlements/acme-ent", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["balance"]["used"], "105");
    assert_eq!(v["balance"]["remaining"], "-5");
    assert_eq!(v["balance"]["overage"], "5");

    // Re-sending the same events changes nothing.
    assert_eq!(t.post_events(&body.to_string()).await.1["accepted"], 3);
    t.drain().await;
    assert!(t.raised_alerts().await.is_empty());
}

#[tokio::test]
async fn redelivery_and_concurrent_rollups_raise_nothing_extra() {
    let t = TestStack::fresh().await;
    setup(&t, "acme", monthly("acme")).await;
    let ts = now_rfc3339();
    // Two requests, two chunks: only together do they cross 80 %.
    t.post_events(&json!([ev("r1", "acme", 45, &ts)]).to_string())
        .await;
    t.post_events(&json!([ev("r2", "acme", 45, &ts)]).to_string())
        .await;
    let records = receive_chunks(&t).await;
    assert_eq!(records.len(), 2);
    // Each chunk handled by two concurrent "Lambdas" (a redelivery racing the first
    // delivery), and the two chunks concurrently with each other.
    let (a, b, c, d) = tokio::join!(
        t.stack.rollup.handle(batch(vec![records[0].clone()])),
        t.stack.rollup.handle(batch(vec![records[1].clone()])),
        t.stack.rollup.handle(batch(vec![records[1].clone()])),
        t.stack.rollup.handle(batch(vec![records[0].clone()])),
    );
    // The first delivery of each chunk succeeds; a racing duplicate may be told to
    // retry (its alert is in flight), never to raise it twice.
    let failures: usize = [a, b, c, d]
        .iter()
        .map(|r| r.batch_item_failures.len())
        .sum();
    assert!(failures <= 2, "{failures}");
    // And the queue redelivers both after the visibility timeout.
    tokio::time::sleep(Duration::from_secs(TEST_VISIBILITY_SECS as u64 + 1)).await;
    t.drain().await;
    let raised = t.raised_alerts().await;
    assert_eq!(
        TestStack::keys(&raised),
        vec![format!("limit:acme-ent:{}:threshold:80", period_key())]
    );
    let (_, v) = t.call("GET", "/v1/entitlements/acme-ent", None).await;
    assert_eq!(v["balance"]["used"], "90", "counted once: {v}");
}

#[tokio::test]
async fn a_late_event_crossing_a_threshold_in_a_closed_period_raises_it_marked_late() {
    let t = TestStack::fresh().await;
    let today = Utc::now().date_naive();
    let first = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap();
    let last_month = first - Days::days(1);
    let mut body = monthly("acme");
    body["starts_on"] = json!((first - Days::days(60)).to_string());
    setup(&t, "acme", body).await;
    let ts = format!("{last_month}T12:00:00Z");
    t.post_events(&json!([ev("late-1", "acme", 90, &ts)]).to_string())
        .await;
    t.post_events(&json!([ev("now-1", "acme", 10, &now_rfc3339())]).to_string())
        .await;
    t.drain().await;
    let raised = t.raised_alerts().await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    let a = &raised[0];
    let closed = NaiveDate::from_ymd_opt(last_month.year(), last_month.month(), 1).unwrap();
    assert_eq!(a["key"], format!("limit:acme-ent:{closed}:threshold:80"));
    assert_eq!(a["late"], true);
    assert_eq!(a["period_end"], first.to_string());
}

#[tokio::test]
async fn a_correction_below_a_threshold_does_not_raise_it_again() {
    let t = TestStack::fresh().await;
    setup(&t, "acme", monthly("acme")).await;
    let ts = now_rfc3339();
    t.post_events(&json!([ev("c1", "acme", 85, &ts)]).to_string())
        .await;
    t.drain().await;
    assert_eq!(t.raised_alerts().await.len(), 1);
    let correction = json!([{"id": "c2", "account": "acme", "meter": "api_calls", "quantity": -10,
        "timestamp": ts, "correction_reason": "double-billed batch"}]);
    assert_eq!(
        t.post_events(&correction.to_string()).await.1["accepted"],
        1
    );
    t.drain().await;
    t.post_events(&json!([ev("c3", "acme", 10, &ts)]).to_string())
        .await;
    t.drain().await;
    assert!(
        t.raised_alerts().await.is_empty(),
        "80 % was already raised this period"
    );
    let (_, v) = t.call("GET", "/v1/entitlements/acme-ent", None).await;
    assert_eq!(v["balance"]["used"], "85");
}

#[tokio::test]
async fn negative_usage_from_corrections_is_raised_as_a_data_quality_alert() {
    let t = TestStack::fresh().await;
    setup(&t, "acme", monthly("acme")).await;
    let correction = json!([{"id": "n1", "account": "acme", "meter": "api_calls", "quantity": -5,
        "timestamp": now_rfc3339(), "correction_reason": "refund"}]);
    t.post_events(&correction.to_string()).await;
    t.drain().await;
    let raised = t.raised_alerts().await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0]["kind"], "data_quality");
    assert_eq!(raised[0]["code"], "negative_usage");
}

#[tokio::test]
async fn notify_publishes_each_alert_once_and_filter_policies_deliver_only_matches() {
    let t = TestStack::fresh().await;
    setup(&t, "acme", monthly("acme")).await;
    let everything = t
        .stack
        .subscribe_queue(&e2e::unique("all"), None)
        .await
        .unwrap();
    let critical_only = t
        .stack
        .subscribe_queue(
            &e2e::unique("crit"),
            Some(r#"{"kind":["limit"],"severity":["critical"]}"#),
        )
        .await
        .unwrap();
    let other_owner = t
        .stack
        .subscribe_queue(
            &e2e::unique("own"),
            Some(r#"{"owner":["someone@else.com"]}"#),
        )
        .await
        .unwrap();
    let ts = now_rfc3339();
    t.post_events(&json!([ev("n1", "acme", 85, &ts)]).to_string())
        .await;
    t.drain().await;
    t.post_events(&json!([ev("n2", "acme", 20, &ts)]).to_string())
        .await;
    t.drain().await;
    // A duplicate of an alert on the queue (e.g. the rollup re-sending after a crash).
    let alerts_url = t.provisioned.reference("AlertsQueue").unwrap().to_owned();
    let dup = t.take_all(&alerts_url).await;
    assert_eq!(dup.len(), 2);
    for a in dup.iter().chain(dup.iter()) {
        t.stack
            .sqs
            .send_message()
            .queue_url(&alerts_url)
            .message_body(a.to_string())
            .send()
            .await
            .unwrap();
    }
    let stats = t.drain_alerts().await;
    assert_eq!((stats.received, stats.failed), (4, 0));

    let all = t.take_all(&everything).await;
    let p = period_key();
    assert_eq!(
        TestStack::keys(&all),
        vec![
            format!("limit:acme-ent:{p}:threshold:100"),
            format!("limit:acme-ent:{p}:threshold:80"),
        ]
    );
    let eighty = all.iter().find(|m| m["alert"]["threshold"] == 80).unwrap();
    assert_eq!(
        eighty["subject"],
        format!("[warning] acme Inc (acme) reached 80% of its api_calls limit - period {p}")
    );
    let crit = t.take_all(&critical_only).await;
    assert_eq!(
        TestStack::keys(&crit),
        vec![format!("limit:acme-ent:{p}:threshold:100")]
    );
    assert!(t.take_all(&other_owner).await.is_empty());
}

#[tokio::test]
async fn entitlements_are_validated_with_clear_codes_and_listed_with_balances() {
    let t = TestStack::fresh().await;
    t.put_account("acme", "smb").await;
    let put = |id: &'static str, body: Value| {
        let t = &t;
        async move { t.put_entitlement(id, &body.to_string()).await }
    };
    let (s, v) = put(
        "e1",
        json!({"account": "ghost", "meter": "api_calls", "limit": 10, "period": "year"}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("unknown_account"))
    );
    let (s, v) = put(
        "e1",
        json!({"account": "acme", "meter": "nope", "limit": 10, "period": "year"}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("unknown_meter"))
    );
    let (s, v) = put("e1", json!({"account": "acme", "meter": "api_calls", "limit": 10, "period": "fixed_term", "starts_on": "2026-01-01"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_period"))
    );
    let (s, v) = put("e1", json!({"account": "acme", "meters": ["api_calls", "storage_gb"], "limit": 10, "period": "quarter", "thresholds": [50, 80, 100, 120], "time_zone": "Europe/Berlin"})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["thresholds"], json!([50, 80, 100, 120]));
    assert_eq!(v["balance"]["used"], "0");
    let (s, v) = put(
        "e2",
        json!({"account": "acme", "meter": "storage_gb", "limit": 5, "period": "calendar_month"}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("overlapping_entitlement"))
    );
    let (s, _) = put("e2", json!({"account": "acme", "meter": "storage_gb", "stage": "billed", "limit": 5, "period": "calendar_month"})).await;
    assert_eq!(s, 201);
    t.put_account("beta", "smb").await;
    let (s, v) = put(
        "e2",
        json!({"account": "beta", "meter": "storage_gb", "limit": 5, "period": "calendar_month"}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("account_changed"))
    );

    let (s, v) = t.call("GET", "/v1/accounts/acme/entitlements", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["entitlements"].as_array().map(Vec::len), Some(2));
    let (s, _) = t.call("DELETE", "/v1/entitlements/e2", None).await;
    assert_eq!(s, 200);
    let (s, _) = t.call("GET", "/v1/entitlements/e2", None).await;
    assert_eq!(s, 404);
    // Another tenant's entitlement is not found.
    let other = t.second_tenant("other").await;
    let (s, _) = t.call_as(&other, "GET", "/v1/entitlements/e1", None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn a_huge_limit_is_refused_and_one_stored_earlier_stops_nobodys_counting() {
    let t = TestStack::fresh().await;
    let beta = t.second_tenant("beta").await;
    t.put_account("acme-1", "mid_market").await;
    // At the door: refused with its own code.
    let mut huge = monthly("acme-1");
    huge["limit"] = json!(1e27);
    let (status, v) = t.put_entitlement("huge", &huge.to_string()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("limit_out_of_range")),
        "{v}"
    );
    // One stored before limits were bounded (written past the validation).
    let mut ent = domain::entitlement::entitlement_from_body(
        domain::ids::EntitlementId::parse("legacy-huge").unwrap(),
        monthly("acme-1").to_string().as_bytes(),
        Utc::now(),
        None,
    )
    .unwrap();
    ent.limit = rust_decimal::Decimal::from_scientific("1e27").unwrap();
    ent.thresholds = vec![80, 100, 1000];
    domain::ports::EntitlementStore::put_entitlement(t.stack.store.as_ref(), &t.tenant, &ent)
        .await
        .unwrap();
    let ts = now_rfc3339();
    let (s, v) = t
        .post_events(&json!([ev("h-1", "acme-1", 7, &ts)]).to_string())
        .await;
    assert_eq!(s, 202, "{v}");
    let (s, v) = t
        .call_as(
            &beta,
            "POST",
            "/v1/events",
            Some(&json!([ev("b-1", "beta-1", 5, &ts)]).to_string()),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let stats = t.drain().await;
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert_eq!(
        e2e::total(&t.usage("acme-1", "meter=api_calls").await),
        ("7".into(), 1)
    );
    let (s, beta_usage) = t
        .call_as(
            &beta,
            "GET",
            "/v1/accounts/beta-1/usage?meter=api_calls",
            None,
        )
        .await;
    assert_eq!(s, 200, "{beta_usage}");
    assert_eq!(e2e::total(&beta_usage), ("5".into(), 1));
    // The API still answers for the stored entitlement, saying why there is no balance.
    let (s, v) = t.call("GET", "/v1/entitlements/legacy-huge", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["balance"]["used"], "7", "{v}");
}
