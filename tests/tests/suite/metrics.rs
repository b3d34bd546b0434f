//! Issue #13 §4: the functions' EMF metrics, as the local runner serves them
//! (`GET /local/metrics`), move with the work done.

use e2e::{decode, now_rfc3339, TestStack};
use serde_json::{json, Value};

/// A tenant of its own: the tally is process-wide and other tests run alongside.
const TENANT: &str = "observe-metrics";

async fn metrics(t: &TestStack) -> Value {
    let req = t.request(
        "GET",
        &format!("/local/metrics?tenant={TENANT}"),
        None,
        None,
    );
    let (status, v) = decode(local::server::local_metrics(&req));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["tenant"], TENANT);
    v["functions"].clone()
}

fn sum(v: &Value, function: &str, metric: &str) -> f64 {
    v[function][metric]["sum"].as_f64().unwrap_or(0.0)
}

#[tokio::test]
async fn accepted_and_rejected_counts_and_the_rollup_lag_move_with_the_events_sent() {
    let t = TestStack::fresh().await;
    let key = t.second_tenant(TENANT).await;
    let before = metrics(&t).await;
    let ts = now_rfc3339();
    let body = json!([
        {"id": "m1", "account": "a1", "meter": "api_calls", "quantity": 2, "timestamp": ts},
        {"id": "m2", "account": "a1", "meter": "api_calls", "quantity": 3, "timestamp": ts},
        {"id": "m3", "account": "a2", "meter": "api_calls", "quantity": 1, "timestamp": ts},
        {"id": "m4", "account": "a2", "meter": "no_such_meter", "timestamp": ts},
        {"id": "m5", "account": "a2", "meter": "Bad Meter!", "timestamp": ts},
        {"id": "m6", "account": "a2", "meter": "no_such_meter", "timestamp": ts},
    ])
    .to_string();
    let (s, r) = t.call_as(&key, "POST", "/v1/events", Some(&body)).await;
    assert_eq!((s, r["accepted"].as_i64()), (202, Some(3)), "{r}");

    let ingested = metrics(&t).await;
    let moved = |v: &Value, f: &str, m: &str| sum(v, f, m) - sum(&before, f, m);
    for (metric, by) in [
        ("EventsAccepted", 3.0),
        ("EventsRejected", 3.0),
        ("EventsRejected[Code=unknown_meter]", 2.0),
        ("EventsRejected[Code=invalid_meter]", 1.0),
    ] {
        assert_eq!(
            moved(&ingested, "ingest", metric),
            by,
            "{metric}: {ingested}"
        );
    }
    assert_eq!(ingested["ingest"]["EventsAccepted"]["unit"], "Count");
    assert_eq!(
        moved(&ingested, "rollup", "EventsCounted"),
        0.0,
        "nothing counted before the rollup ran"
    );

    t.drain().await;
    let counted = metrics(&t).await;
    assert_eq!(moved(&counted, "rollup", "EventsCounted"), 3.0, "{counted}");
    let lag = &counted["rollup"]["RollupLag"];
    assert_eq!(lag["unit"], "Milliseconds");
    assert!(lag["samples"].as_u64().unwrap_or(0) >= 1, "{lag}");
    let (p50, p99, max) = (
        lag["p50"].as_f64().unwrap(),
        lag["p99"].as_f64().unwrap(),
        lag["max"].as_f64().unwrap(),
    );
    assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{lag}");
    assert!(
        max < 600_000.0,
        "lag is receipt to counting, not event time: {lag}"
    );
}

#[test]
fn the_metrics_route_answers_get_only() {
    let req = lambda_http::http::Request::builder()
        .method("POST")
        .uri("/local/metrics")
        .body(lambda_http::Body::Empty)
        .unwrap();
    let (status, v) = decode(local::server::local_metrics(&req));
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (405, Some("method_not_allowed")),
        "{v}"
    );
}

/// The rollup, noting the correlation id each message arrives with.
struct Noting {
    seen: std::sync::Mutex<Vec<Option<String>>>,
    rollup: std::sync::Arc<rollup::Rollup>,
}

#[async_trait::async_trait]
impl local::esm::SqsHandler for Noting {
    async fn handle(
        &self,
        event: aws_lambda_events::sqs::SqsEvent,
    ) -> aws_lambda_events::sqs::SqsBatchResponse {
        self.seen
            .lock()
            .unwrap()
            .extend(event.records.iter().map(lambda::batch::correlation_of));
        self.rollup.handle(event).await
    }
}

#[tokio::test]
async fn the_callers_correlation_id_comes_back_and_travels_with_the_queued_chunk() {
    let t = TestStack::fresh().await;
    let ts = now_rfc3339();
    let body =
        json!([{"id": "c1", "account": "a1", "meter": "api_calls", "timestamp": ts}]).to_string();
    let mut req = t.request("POST", "/v1/events", Some(&t.key), Some(body.as_bytes()));
    req.headers_mut()
        .insert("x-correlation-id", "checkout-123".parse().unwrap());
    let resp = lambda::http::correlated(req, |r| t.stack.ingest.handle(r)).await;
    assert_eq!(
        resp.headers()["x-correlation-id"].to_str().unwrap(),
        "checkout-123"
    );
    assert_eq!(decode(resp).0, 202);
    let noting = Noting {
        seen: Default::default(),
        rollup: t.stack.rollup.clone(),
    };
    let stats = t
        .stack
        .poller
        .poll_once(&noting, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(stats.received, 1);
    assert_eq!(
        *noting.seen.lock().unwrap(),
        [Some("checkout-123".to_owned())]
    );
}
