//! Handlers driven by real Lambda event JSON (API Gateway HTTP API v2 and SQS).

use base64::Engine;
use e2e::{decode, now_rfc3339, total, TestStack};
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn apigw(mut v: Value, key: &str, body: Option<&str>, base64: bool) -> lambda_http::Request {
    v["headers"]["authorization"] = json!(format!("Bearer {key}"));
    if let Some(b) = body {
        v["headers"]["content-length"] = json!(b.len().to_string());
        v["body"] = if base64 {
            json!(base64::engine::general_purpose::STANDARD.encode(b))
        } else {
            json!(b)
        };
        v["isBase64Encoded"] = json!(base64);
    }
    lambda_http::request::from_str(&v.to_string()).expect("API Gateway v2 event")
}

#[tokio::test]
async fn ingest_accepts_an_api_gateway_v2_event_in_plain_and_base64_bodies() {
    let t = TestStack::fresh().await;
    let ts = now_rfc3339();
    for (i, b64) in [(0, false), (1, true)] {
        let body = json!([{"id": format!("gw-{i}"), "account": "acme", "meter": "api_calls", "quantity": 2, "timestamp": ts}]).to_string();
        let req = apigw(
            fixture("apigw_v2_post_events.json"),
            &t.key,
            Some(&body),
            b64,
        );
        let (status, out) = decode(t.stack.ingest.handle(req).await);
        assert_eq!((status, out["accepted"].as_i64()), (202, Some(1)), "{out}");
    }
    t.drain().await;
    let req = apigw(fixture("apigw_v2_get_usage.json"), &t.key, None, false);
    let (status, usage) = decode(t.stack.api.handle(req).await);
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["granularity"], "hour");
    assert_eq!(total(&usage), ("4".into(), 2));
}

#[tokio::test]
async fn rollup_reports_only_the_poison_record_of_an_sqs_event_as_failed() {
    let t = TestStack::fresh().await;
    let chunk = json!({
        "v": 1, "chunk": "fixture-chunk-1", "tenant": "acme", "source": "api",
        "received_at": now_rfc3339(),
        "events": [{"id": "sqs-1", "account": "acme", "meter": "api_calls", "quantity": "6",
                    "timestamp": now_rfc3339(), "stage": "delivered", "service_line": "default"}]
    });
    let mut event = fixture("sqs_event.json");
    event["Records"][0]["body"] = json!(chunk.to_string());
    event["Records"][1]["body"] = json!("{\"v\": 1, \"chunk\": 42}");
    let sqs: aws_lambda_events::sqs::SqsEvent = serde_json::from_value(event.clone()).unwrap();
    let resp = t.stack.rollup.handle(sqs).await;
    let failed: Vec<_> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(
        failed,
        vec!["2e1424d4-f796-459a-8184-9c92662be6da".to_owned()]
    );
    // The response serialises in the shape Lambda expects.
    let wire = serde_json::to_value(&resp).unwrap();
    assert_eq!(
        wire["batchItemFailures"][0]["itemIdentifier"],
        "2e1424d4-f796-459a-8184-9c92662be6da"
    );
    assert_eq!(
        total(&t.usage("acme", "meter=api_calls").await),
        ("6".into(), 1)
    );
    // Lambda retries the whole event after a timeout: still counted once.
    let sqs: aws_lambda_events::sqs::SqsEvent = serde_json::from_value(event).unwrap();
    t.stack.rollup.handle(sqs).await;
    assert_eq!(
        total(&t.usage("acme", "meter=api_calls").await),
        ("6".into(), 1)
    );
}
