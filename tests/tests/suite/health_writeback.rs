//! CRM write-back against a local stand-in for HubSpot's CRM v3 API that checks each
//! request's shape and answers 429 sometimes.

use aws::hubspot::HyperPost;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Json;
use chrono::NaiveDate;
use domain::health::model::Band;
use domain::health::writeback::{CrmSink, CrmUpdate, HubSpotWriteback};
use domain::ids::TenantId;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Seen {
    /// Every request: (arrived, number of inputs, answered status).
    requests: Vec<(Instant, usize, u16)>,
    /// Company ids updated (200 answers only).
    updated: Vec<String>,
    problems: Vec<String>,
}

type Shared = Arc<Mutex<Seen>>;

/// Answers 429 with `Retry-After: 1` to the 2nd request and 429 without it to the
/// 4th; 400 for any request not shaped like a batch update.
async fn batch_update(
    State(seen): State<Shared>,
    headers: HeaderMap,
    body: Json<Value>,
) -> impl IntoResponse {
    let mut s = seen.lock().unwrap();
    let n = s.requests.len() + 1;
    let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
    let mut problems = Vec::new();
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer pat-test") {
        problems.push("missing or wrong bearer token".to_owned());
    }
    if inputs.is_empty() || inputs.len() > 100 {
        problems.push(format!("{} inputs (1-100 allowed)", inputs.len()));
    }
    for i in &inputs {
        let p = &i["properties"];
        let ok = i["id"]
            .as_str()
            .is_some_and(|id| id.chars().all(|c| c.is_ascii_digit()))
            && p["usage_health_score"]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| (0.0..=100.0).contains(&v))
            && ["red", "yellow", "green"].contains(&p["usage_health_band"].as_str().unwrap_or(""))
            && p["usage_health_reasons"].is_string()
            && p["usage_health_as_of"]
                .as_str()
                .is_some_and(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok())
            && p.as_object().is_some_and(|o| o.len() == 4);
        if !ok {
            problems.push(format!("bad input {i}"));
        }
    }
    let status = if !problems.is_empty() {
        s.problems.extend(problems);
        400
    } else if n == 2 || n == 4 {
        429
    } else {
        s.updated.extend(
            inputs
                .iter()
                .filter_map(|i| i["id"].as_str().map(str::to_owned)),
        );
        200
    };
    s.requests.push((Instant::now(), inputs.len(), status));
    let mut h = HeaderMap::new();
    if n == 2 {
        h.insert("retry-after", "1".parse().unwrap());
    }
    let body = if status == 429 {
        serde_json::json!({"status": "error", "category": "RATE_LIMITS", "policyName": "TEN_SECONDLY_ROLLING"})
    } else {
        serde_json::json!({"status": "COMPLETE", "results": []})
    };
    (StatusCode::from_u16(status).unwrap(), h, Json(body))
}

async fn stand_in() -> (String, Shared) {
    let seen: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/crm/v3/objects/companies/batch/update", post(batch_update))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

fn client(base: &str, per_10s: usize) -> HubSpotWriteback {
    let t = TenantId::parse("acme").unwrap();
    HubSpotWriteback::new(
        base,
        HashMap::from([(t, "pat-test".to_owned())]),
        Arc::new(HyperPost::new().unwrap()),
        per_10s,
    )
    .with_backoff(Duration::from_millis(100))
}

fn updates(n: usize) -> Vec<CrmUpdate> {
    (0..n)
        .map(|i| CrmUpdate {
            company_id: (5000 + i).to_string(),
            score: (i % 100) as f64 + 0.5,
            band: [Band::Red, Band::Yellow, Band::Green][i % 3],
            reasons: format!(
                "usage_down_30d: api_calls \u{2212}{} % vs prior 30 d",
                i % 50
            ),
            as_of: NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
            portal: None,
            play: None,
        })
        .collect()
}

#[tokio::test]
async fn write_back_sends_batches_of_100_and_backs_off_on_429_honouring_retry_after() {
    let (base, seen) = stand_in().await;
    let w = client(&base, 100);
    let started = Instant::now();
    let report = w
        .push(&TenantId::parse("acme").unwrap(), &updates(250))
        .await;
    let s = seen.lock().unwrap();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert_eq!(
        (report.updated, report.failed, report.throttled),
        (250, 0, 2),
        "{report:?}"
    );
    let sizes: Vec<(usize, u16)> = s.requests.iter().map(|r| (r.1, r.2)).collect();
    assert_eq!(
        sizes,
        [(100, 200), (100, 429), (100, 200), (50, 429), (50, 200)]
    );
    let updated: BTreeSet<&String> = s.updated.iter().collect();
    assert_eq!(
        (s.updated.len(), updated.len()),
        (250, 250),
        "every company once"
    );
    // Retry-After: 1 was honoured before the retry of the second batch.
    assert!(s.requests[2].0 - s.requests[1].0 >= Duration::from_millis(950));
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn write_back_keeps_within_the_ten_second_request_limit() {
    let (base, seen) = stand_in().await;
    // A limit of 2 requests per 10 s: the retry after the 429 must wait for the window.
    let w = client(&base, 2);
    let report = w
        .push(&TenantId::parse("acme").unwrap(), &updates(150))
        .await;
    assert_eq!((report.updated, report.failed), (150, 0), "{report:?}");
    let s = seen.lock().unwrap();
    assert_eq!(s.requests.len(), 3);
    let gap = s.requests[2].0 - s.requests[0].0;
    assert!(
        gap >= Duration::from_millis(9900),
        "third request {gap:?} after the first"
    );
}

#[tokio::test]
async fn a_tenant_without_a_token_or_a_refused_request_reports_failures_not_success() {
    let (base, seen) = stand_in().await;
    let w = client(&base, 100);
    let r = w
        .push(&TenantId::parse("other").unwrap(), &updates(5))
        .await;
    assert_eq!((r.updated, r.failed, r.requests), (0, 5, 0));
    assert!(r.last_error.unwrap().contains("no HubSpot token"));
    let mut bad = updates(3);
    bad[1].company_id = "not-a-number".into();
    let r = w.push(&TenantId::parse("acme").unwrap(), &bad).await;
    assert_eq!((r.updated, r.failed), (0, 3), "{r:?}");
    assert!(r.last_error.unwrap().starts_with("400"));
    assert_eq!(seen.lock().unwrap().problems.len(), 1);
}
