//! End-to-end: ingest -> SQS -> rollup -> API, against the emulator, fresh resources
//! per test.

use e2e::{now_rfc3339, total, TestStack, TEST_MAX_RECEIVES, TEST_VISIBILITY_SECS};
use serde_json::json;
use std::time::Duration;

fn event(id: &str, account: &str, meter: &str, qty: i64, ts: &str) -> serde_json::Value {
    json!({"id": id, "account": account, "meter": meter, "quantity": qty, "timestamp": ts})
}

#[tokio::test]
async fn the_same_events_sent_in_two_requests_are_counted_once() {
    let t = TestStack::fresh().await;
    t.put_account("acme-co", "smb").await;
    let ts = now_rfc3339();
    let batch = json!([
        event("e1", "acme-co", "api_calls", 5, &ts),
        event("e2", "acme-co", "api_calls", 7, &ts)
    ])
    .to_string();
    let (s1, r1) = t.post_events(&batch).await;
    let (s2, r2) = t.post_events(&batch).await;
    assert_eq!((s1, r1["accepted"].as_i64()), (202, Some(2)), "{r1}");
    assert_eq!(
        (s2, r2["accepted"].as_i64()),
        (202, Some(2)),
        "re-sending is accepted and safe: {r2}"
    );
    // And once more in a third request mixed with a new event.
    let (_, r3) = t
        .post_events(
            &json!([
                event("e2", "acme-co", "api_calls", 7, &ts),
                event("e3", "acme-co", "api_calls", 1, &ts)
            ])
            .to_string(),
        )
        .await;
    assert_eq!(r3["accepted"], 2);
    t.drain().await;
    let usage = t.usage("acme-co", "meter=api_calls&granularity=day").await;
    assert_eq!(total(&usage), ("13".into(), 3));
    let seg = t
        .call("GET", "/v1/segments/smb/usage?meter=api_calls", None)
        .await
        .1;
    assert_eq!(
        total(&seg),
        ("13".into(), 3),
        "segment rollup counted once too"
    );
}

#[tokio::test]
async fn a_crash_after_writing_but_before_acknowledging_is_redelivered_and_counted_once() {
    let t = TestStack::fresh().await;
    let ts = now_rfc3339();
    let events: Vec<_> = (0..30)
        .map(|i| {
            event(
                &format!("c{i}"),
                &format!("acct-{}", i % 3),
                "api_calls",
                2,
                &ts,
            )
        })
        .collect();
    assert_eq!(
        t.post_events(&json!(events).to_string()).await.1["accepted"],
        30
    );

    // Receive and handle the batch, then "crash": never delete the messages.
    let sqs = &t.stack.sqs;
    let url = t.provisioned.reference("EventsQueue").unwrap();
    let msgs = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert!(!msgs.is_empty());
    let mut ev = aws_lambda_events::sqs::SqsEvent::default();
    for m in &msgs {
        let mut r = aws_lambda_events::sqs::SqsMessage::default();
        r.message_id = m.message_id.clone();
        r.body = m.body.clone();
        ev.records.push(r);
    }
    let resp = t.stack.rollup.handle(ev).await;
    assert!(resp.batch_item_failures.is_empty());
    let counted_once = total(&t.usage("acct-0", "meter=api_calls").await);
    assert_eq!(counted_once, ("20".into(), 10));

    // The messages come back after the visibility timeout and are handled again.
    tokio::time::sleep(Duration::from_secs(TEST_VISIBILITY_SECS as u64 + 1)).await;
    let stats = t.drain().await;
    assert!(stats.received >= msgs.len(), "redelivered: {stats:?}");
    assert_eq!(
        total(&t.usage("acct-0", "meter=api_calls").await),
        counted_once
    );
    assert_eq!(
        total(&t.usage("acct-2", "meter=api_calls").await),
        ("20".into(), 10)
    );
    assert_eq!(t.queue_depth("EventsQueue").await, 0);
}

#[tokio::test]
async fn a_poison_message_reaches_the_dlq_while_the_rest_of_its_batch_is_counted() {
    let t = TestStack::fresh().await;
    let url = t.provisioned.reference("EventsQueue").unwrap().to_owned();
    t.stack
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("{not a chunk")
        .send()
        .await
        .unwrap();
    let ts = now_rfc3339();
    assert_eq!(
        t.post_events(&json!([event("p1", "a1", "api_calls", 3, &ts)]).to_string())
            .await
            .1["accepted"],
        1
    );

    let first = t.drain().await;
    assert_eq!(first.failed, 1, "{first:?}");
    assert_eq!(
        total(&t.usage("a1", "meter=api_calls").await),
        ("3".into(), 1)
    );
    // Redeliveries until maxReceiveCount, then the queue moves it to the DLQ.
    for _ in 0..TEST_MAX_RECEIVES + 1 {
        tokio::time::sleep(Duration::from_secs(TEST_VISIBILITY_SECS as u64 + 1)).await;
        t.drain().await;
        if t.queue_depth("EventsDLQ").await == 1 {
            break;
        }
    }
    assert_eq!(t.queue_depth("EventsDLQ").await, 1);
    assert_eq!(t.queue_depth("EventsQueue").await, 0);
    assert_eq!(
        total(&t.usage("a1", "meter=api_calls").await),
        ("3".into(), 1)
    );
    let (_, report) = (
        200,
        t.stack
            .scheduler
            .run_now("dlq-depth", None)
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(report["dlq_depth"], 1);
}

#[tokio::test]
async fn late_events_land_in_the_window_of_their_event_time() {
    let t = TestStack::fresh().await;
    let now = chrono::Utc::now();
    let late = (now - chrono::Duration::days(3))
        .date_naive()
        .and_hms_opt(5, 30, 0)
        .unwrap()
        .and_utc();
    let late_s = late.to_rfc3339();
    let body = json!([
        event("now-1", "a", "api_calls", 1, &now_rfc3339()),
        event("late-1", "a", "api_calls", 10, &late_s)
    ]);
    assert_eq!(t.post_events(&body.to_string()).await.1["accepted"], 2);
    t.drain().await;
    let day = late.date_naive();
    let report = t
        .usage(
            "a",
            &format!(
                "meter=api_calls&granularity=hour&from={day}&to={}",
                day.succ_opt().unwrap()
            ),
        )
        .await;
    let series = report["series"].as_array().unwrap();
    assert_eq!(series.len(), 24);
    assert_eq!(
        series[5]["quantity"], "10",
        "hour 05:00 holds the late event"
    );
    assert_eq!(total(&report), ("10".into(), 1));
    let days = t.usage("a", "meter=api_calls&granularity=day").await;
    let nonzero: Vec<_> = days["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["events"] != 0)
        .collect();
    assert_eq!(nonzero.len(), 2, "two different days: {days}");
}

#[tokio::test]
async fn corrections_are_negative_events_that_reduce_the_total() {
    let t = TestStack::fresh().await;
    let ts = now_rfc3339();
    let body = json!([
        event("u1", "a", "storage_gb", 10, &ts),
        {"id": "fix-1", "account": "a", "meter": "storage_gb", "quantity": -2.5, "correction_reason": "double-counted backup", "timestamp": ts},
        {"id": "fix-2", "account": "a", "meter": "storage_gb", "quantity": -1, "timestamp": ts}
    ]);
    let (_, r) = t.post_events(&body.to_string()).await;
    assert_eq!(r["accepted"], 2);
    assert_eq!(r["rejected"][0]["code"], "negative_quantity_without_reason");
    t.drain().await;
    assert_eq!(
        total(&t.usage("a", "meter=storage_gb").await),
        ("7.5".into(), 2)
    );
}

#[tokio::test]
async fn one_tenant_never_sees_another_tenants_accounts_or_usage() {
    let t = TestStack::fresh().await;
    let other = t.second_tenant("globex").await;
    t.put_account("shared-id", "enterprise").await;
    let ts = now_rfc3339();
    t.post_events(&json!([event("x1", "shared-id", "api_calls", 4, &ts)]).to_string())
        .await;
    t.call_as(
        &other,
        "POST",
        "/v1/events",
        Some(&json!([event("x1", "other-acct", "api_calls", 9, &ts)]).to_string()),
    )
    .await;
    t.drain().await;

    assert_eq!(
        t.call_as(&other, "GET", "/v1/accounts/shared-id", None)
            .await
            .0,
        404
    );
    let (status, body) = t
        .call_as(&other, "GET", "/v1/accounts/shared-id/usage", None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    assert_eq!(
        t.call_as(&other, "GET", "/v1/accounts", None).await.1["accounts"],
        json!([])
    );
    // The same event id in another tenant is a different event.
    assert_eq!(
        total(&t.usage("shared-id", "meter=api_calls").await),
        ("4".into(), 1)
    );
    let (_, theirs) = t
        .call_as(
            &other,
            "GET",
            "/v1/accounts/other-acct/usage?meter=api_calls",
            None,
        )
        .await;
    assert_eq!(total(&theirs), ("9".into(), 1));
    let (_, seg) = t
        .call_as(&other, "GET", "/v1/segments/enterprise/usage", None)
        .await;
    assert_eq!(total(&seg), ("0".into(), 0));
}

#[tokio::test]
async fn every_bad_event_comes_back_with_its_code_and_the_good_ones_are_counted() {
    let t = TestStack::fresh().await;
    let ts = now_rfc3339();
    let future = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    let ancient = (chrono::Utc::now() - chrono::Duration::days(40)).to_rfc3339();
    let long = "x".repeat(300);
    let big_props: serde_json::Map<String, serde_json::Value> =
        (0..60).map(|i| (format!("k{i}"), json!(i))).collect();
    let cases = vec![
        (json!({"account": "a", "meter": "api_calls"}), "missing_id"),
        (
            json!({"id": "", "account": "a", "meter": "api_calls"}),
            "missing_id",
        ),
        (
            json!({"id": "b1", "account": "a", "meter": "no_such_meter"}),
            "unknown_meter",
        ),
        (
            json!({"id": "b2", "account": "a", "meter": "Bad Meter!"}),
            "invalid_meter",
        ),
        (
            json!({"id": "b3", "account": "a", "meter": "api_calls", "quantity": "12"}),
            "invalid_quantity",
        ),
        (
            json!({"id": "b5", "account": "a", "meter": "api_calls", "quantity": -3}),
            "negative_quantity_without_reason",
        ),
        (
            json!({"id": "b6", "account": "a", "meter": "api_calls", "timestamp": future}),
            "timestamp_in_future",
        ),
        (
            json!({"id": "b7", "account": "a", "meter": "api_calls", "timestamp": ancient}),
            "timestamp_too_old",
        ),
        (
            json!({"id": "b8", "account": "a", "meter": "api_calls", "timestamp": "25/11/2026"}),
            "invalid_timestamp",
        ),
        (
            json!({"id": "b9", "account": "a", "meter": "api_calls", "stage": "shipped"}),
            "invalid_stage",
        ),
        (
            json!({"id": "b10", "account": "a", "meter": "api_calls", "contact": long}),
            "field_too_long",
        ),
        (
            json!({"id": "b11", "account": "a", "meter": "api_calls", "properties": big_props}),
            "properties_too_large",
        ),
        (
            json!({"id": "b12", "account": "a", "meter": "api_calls", "colour": "red"}),
            "unknown_field",
        ),
        (
            json!({"id": "b13", "meter": "api_calls"}),
            "missing_account",
        ),
        (
            json!({"id": "b14", "account": "a", "meter": "api_calls", "unit": "bytes"}),
            "unit_mismatch",
        ),
        (json!("not an object"), "invalid_event"),
    ];
    let mut body: Vec<serde_json::Value> = vec![event("good-1", "a", "api_calls", 2, &ts)];
    body.extend(cases.iter().map(|(e, _)| e.clone()));
    body.push(event("good-2", "a", "api_calls", 3, &ts));
    // A non-finite number needs raw JSON: serde_json cannot hold it.
    let mut raw = serde_json::to_string(&body).unwrap();
    raw.pop();
    raw.push_str(r#",{"id":"b4","account":"a","meter":"api_calls","quantity":1e999}]"#);
    let (status, r) = t.post_events(&raw).await;
    assert_eq!(status, 202);
    assert_eq!(r["accepted"], 2, "{r}");
    let rejected = r["rejected"].as_array().unwrap();
    for (i, (_, code)) in cases.iter().enumerate() {
        let got = rejected
            .iter()
            .find(|x| x["index"] == i + 1)
            .unwrap_or_else(|| panic!("case {i} not rejected: {r}"));
        assert_eq!(got["code"], *code, "case {i}: {got}");
    }
    let last = rejected.iter().find(|x| x["id"] == "b4").unwrap();
    assert_eq!(last["code"], "quantity_not_finite");
    t.drain().await;
    assert_eq!(
        total(&t.usage("a", "meter=api_calls").await),
        ("5".into(), 2)
    );
}

#[tokio::test]
async fn malformed_oversized_and_unauthenticated_requests_are_refused_before_anything_is_queued() {
    let t = TestStack::fresh().await;
    let (s, r) = t.post_events("[{\"id\": \"a\",\n \"account\": }]").await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (400, Some("malformed_json"))
    );
    assert!(
        r["error"]["message"].as_str().unwrap().contains("line 2"),
        "{r}"
    );
    let (s, r) = t.post_events("").await;
    assert_eq!((s, r["error"]["code"].as_str()), (400, Some("empty_body")));
    let too_many: Vec<_> = (0..1001).map(|i| json!({"id": format!("m{i}")})).collect();
    let (s, r) = t.post_events(&json!(too_many).to_string()).await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (413, Some("too_many_events"))
    );
    let huge = format!(
        r#"[{{"id":"h","account":"a","meter":"api_calls","properties":{{"p":"{}"}}}}]"#,
        "x".repeat(1024 * 1024)
    );
    let (s, r) = t.post_events(&huge).await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let (s, r) = t
        .call_as("uk_wrong", "POST", "/v1/events", Some("[]"))
        .await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let req = t.request("POST", "/v1/events", None, Some(b"[]"));
    let (s, r) = e2e::decode(t.stack.ingest.handle(req).await);
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (401, Some("missing_api_key"))
    );
    assert_eq!(t.queue_depth("EventsQueue").await, 0, "nothing was queued");
}

#[tokio::test]
async fn events_without_a_timestamp_get_the_receipt_time_and_a_flag() {
    let t = TestStack::fresh().await;
    let (_, r) = t
        .post_events(r#"{"events":[{"id":"nt-1","account":"a","meter":"api_calls"}]}"#)
        .await;
    assert_eq!(r["accepted"], 1);
    assert_eq!(r["flagged"][0]["flag"], "timestamp_defaulted");
    t.drain().await;
    assert_eq!(
        total(&t.usage("a", "granularity=hour&meter=api_calls").await),
        ("1".into(), 1)
    );
}

#[tokio::test]
async fn a_thousand_event_request_is_split_across_messages_and_fully_counted() {
    let t = TestStack::fresh().await;
    let ts = now_rfc3339();
    let big = "p".repeat(400);
    let events: Vec<_> = (0..1000)
        .map(|i| {
            let meter = ["api_calls", "tickets_resolved"][i % 2];
            let stage = ["delivered", "billed"][i / 500];
            json!({"id": format!("bulk-{i}"), "account": format!("acct-{}", i % 50), "meter": meter,
                   "stage": stage, "quantity": 1, "timestamp": ts, "properties": {"note": big}})
        })
        .collect();
    let (status, r) = t.post_events(&json!(events).to_string()).await;
    assert_eq!(
        (status, r["accepted"].as_i64()),
        (202, Some(1000)),
        "{}",
        r["rejected"]
    );
    let msgs = t
        .stack
        .queue
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(msgs >= 2, "~500 KB of events needs more than one message");
    t.drain().await;
    let mut sum = 0;
    for a in 0..50 {
        sum += total(&t.usage(&format!("acct-{a}"), "").await).1;
    }
    assert_eq!(sum, 1000);
}

#[tokio::test]
async fn a_flooding_tenant_gets_429_with_retry_after_and_another_tenant_is_still_counted() {
    let t = TestStack::fresh().await;
    let beta = t.second_tenant("beta").await;
    // An ingest instance with a small quota (1/s, burst 3), over the same stack.
    let mut ingest = ingest::Ingest::new(t.stack.store.clone(), t.stack.queue.clone());
    ingest.quotas =
        std::sync::Arc::new(domain::quota::Quotas::parse(Some("1"), Some("3"), None).unwrap());
    let post = |key: &str, id: String| {
        let body =
            serde_json::json!([{"id": id, "account": "a1", "meter": "api_calls", "quantity": 1}]);
        t.request(
            "POST",
            "/v1/events",
            Some(key),
            Some(body.to_string().as_bytes()),
        )
    };
    // The bucket refills while the flood runs (each request reads the key from the
    // emulator, slowly on a loaded machine), so the bound is burst + rate x elapsed,
    // not an exact count.
    let started = std::time::Instant::now();
    let (mut admitted, mut refused) = (0u64, 0u64);
    let mut refusal = None;
    for i in 0..30 {
        let resp = ingest.handle(post(&t.key, format!("flood-{i}"))).await;
        let retry_after = resp.headers().get("retry-after").cloned();
        let (s, v) = e2e::decode(resp);
        match s {
            202 => admitted += 1,
            429 => {
                refused += 1;
                refusal = Some((retry_after, v));
            }
            other => panic!("flood request {i}: {other} {v}"),
        }
    }
    let elapsed = started.elapsed().as_secs();
    assert!(
        admitted >= 3 && admitted <= 3 + elapsed + 1,
        "{admitted} admitted in {elapsed} s with a burst of 3 at 1/s"
    );
    assert_eq!(admitted + refused, 30);
    let (retry_after, v) = refusal.expect("a flood of 30 in a few seconds is refused");
    assert_eq!(
        retry_after.as_ref().and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(v["error"]["code"].as_str(), Some("rate_limited"), "{v}");
    // The other tenant is not slowed by the flood.
    for i in 0..3 {
        let (s, v) = e2e::decode(ingest.handle(post(&beta, format!("beta-{i}"))).await);
        assert_eq!(s, 202, "{v}");
    }
    t.drain().await;
    // Exactly the admitted flood requests were counted.
    assert_eq!(
        total(&t.usage("a1", "meter=api_calls").await),
        (
            admitted.to_string(),
            i64::try_from(admitted).expect("at most 30")
        )
    );
    let (_, beta_usage) = t
        .call_as(&beta, "GET", "/v1/accounts/a1/usage?meter=api_calls", None)
        .await;
    assert_eq!(total(&beta_usage), ("3".into(), 3));
}

/// Posts `body` to `/v1/events` with the given content type.
async fn post_typed(t: &TestStack, content_type: &str, body: &str) -> (u16, serde_json::Value) {
    let mut req = t.request(
        "POST",
        "/v1/events",
        Some(&t.key.clone()),
        Some(body.as_bytes()),
    );
    req.headers_mut().insert(
        "content-type",
        content_type.parse().expect("a valid header value"),
    );
    e2e::decode(t.stack.ingest.handle(req).await)
}

fn cloudevent(source: &str, id: &str, account: &str, qty: i64, ts: &str) -> serde_json::Value {
    json!({"specversion": "1.0", "id": id, "source": source, "type": "api_calls",
           "subject": account, "time": ts, "datacontenttype": "application/json",
           "data": {"quantity": qty, "region": "eu"}})
}

#[tokio::test]
async fn cloudevents_are_counted_once_by_source_and_id_in_structured_and_batch_mode() {
    let t = TestStack::fresh().await;
    let ts = now_rfc3339();
    let one = cloudevent("/billing", "c1", "acme-co", 5, &ts).to_string();
    let (s, r) = post_typed(&t, domain::cloudevents::STRUCTURED, &one).await;
    assert_eq!((s, r["accepted"].as_i64()), (202, Some(1)), "{r}");

    // A batch resending c1, the same id from another source, and one the mapping refuses.
    let batch = json!([
        cloudevent("/billing", "c1", "acme-co", 5, &ts),
        cloudevent("/crm", "c1", "acme-co", 7, &ts),
        {"specversion": "1.0", "id": "c3", "source": "/billing", "type": "api_calls"},
    ])
    .to_string();
    let (s, r) = post_typed(&t, domain::cloudevents::BATCH, &batch).await;
    assert_eq!(s, 202, "{r}");
    assert_eq!(r["accepted"], 2, "{r}");
    assert_eq!(r["rejected"][0]["index"], 2, "{r}");
    assert_eq!(r["rejected"][0]["code"], "missing_account", "{r}");
    assert_eq!(r["rejected"][0]["id"], "c3", "{r}");

    // CloudEvents may also come as plain JSON, mixed with native events.
    let mixed = json!([
        cloudevent("/billing", "c1", "acme-co", 5, &ts),
        event("n1", "acme-co", "api_calls", 1, &ts),
    ])
    .to_string();
    let (s, r) = t.post_events(&mixed).await;
    assert_eq!((s, r["accepted"].as_i64()), (202, Some(2)), "{r}");

    t.drain().await;
    let usage = t.usage("acme-co", "meter=api_calls&granularity=day").await;
    assert_eq!(
        total(&usage),
        ("13".into(), 3),
        "c1 from /billing once (5), c1 from /crm (7), n1 (1)"
    );
}

#[tokio::test]
async fn the_stacks_write_meter_counts_writes_made_under_every_functions_role() {
    let t = TestStack::fresh().await;
    let ts = now_rfc3339();
    let w0 = t.stack.store.meter.reading().write_units;
    let (s, r) = t
        .post_events(&json!([event("m1", "acme-co", "api_calls", 1, &ts)]).to_string())
        .await;
    assert_eq!((s, r["accepted"].as_i64()), (202, Some(1)), "{r}");
    t.drain().await;
    let w1 = t.stack.store.meter.reading().write_units;
    // The rollup writes under its own role: its ledger claim and rollup transaction
    // must still show on the stack's meter, which the benches' cost figures read.
    assert!(
        w1 - w0 >= 3,
        "the rollup's writes were not counted: {} write units",
        w1 - w0
    );
}
