//! The OpenAPI document and the routes the functions serve stay in step.

use std::collections::BTreeSet;

fn documented() -> BTreeSet<(String, String)> {
    let path = format!("{}/../docs/openapi.json", env!("CARGO_MANIFEST_DIR"));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("docs/openapi.json"))
            .expect("valid JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3."),
        "OpenAPI 3 document"
    );
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let served: BTreeSet<(String, String)> = ingest::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .chain(
            api::ROUTES
                .iter()
                .map(|(m, p, _)| (m.to_string(), p.to_string())),
        )
        .collect();
    let documented = documented();
    let missing: Vec<_> = served.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "routes missing from docs/openapi.json: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "documented routes nobody serves: {stale:?}"
    );
}

fn document() -> serde_json::Value {
    let path = format!("{}/../docs/openapi.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("docs/openapi.json"))
        .expect("valid JSON")
}

/// Every documented (method, path), with its path parameters filled in.
fn operations(doc: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                let mut filled = String::new();
                for seg in path.split('/').skip(1) {
                    filled.push('/');
                    filled.push_str(if seg.starts_with('{') { "70001" } else { seg });
                }
                out.push((method.to_uppercase(), filled));
            }
        }
    }
    out
}

#[test]
fn every_operation_takes_an_x_correlation_id_and_every_response_returns_one() {
    let doc = document();
    let param = serde_json::json!({"$ref": "#/components/parameters/CorrelationId"});
    let header = serde_json::json!({"$ref": "#/components/headers/CorrelationId"});
    assert_eq!(
        doc["components"]["parameters"]["CorrelationId"]["name"],
        "x-correlation-id"
    );
    assert_eq!(
        doc["components"]["parameters"]["CorrelationId"]["in"],
        "header"
    );
    assert!(doc["components"]["headers"]["CorrelationId"]["schema"].is_object());
    let mut missing = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch"] {
            let Some(op) = item.get(method) else { continue };
            let shared = item["parameters"].as_array().into_iter().flatten();
            let own = op["parameters"].as_array().into_iter().flatten();
            if !shared.chain(own).any(|p| *p == param) {
                missing.push(format!("{method} {path}: parameter"));
            }
            for (code, resp) in op["responses"].as_object().expect("responses") {
                if resp["headers"]["x-correlation-id"] != header {
                    missing.push(format!("{method} {path} {code}: header"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

/// Every documented operation through the local front door (what API Gateway routes
/// on AWS, each function wrapped in `lambda::http::correlated`): the caller's id comes
/// back, whatever the answer; an id not of the documented form is replaced.
#[tokio::test]
async fn every_operation_echoes_the_callers_correlation_id_and_replaces_a_malformed_one() {
    use lambda_http::tower::ServiceExt;
    let t = e2e::TestStack::fresh().await;
    let stack = local::stack::Stack::new(
        &t.aws,
        &t.provisioned,
        domain::pipeline::PipelineConfig::default(),
        None,
    )
    .expect("stack");
    let router = local::server::router(std::sync::Arc::new(stack));
    let send = |method: &str, path: &str, key: Option<&str>, id: &str| {
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("x-correlation-id", id);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let req = req.body(axum::body::Body::empty()).expect("request");
        let router = router.clone();
        async move {
            let resp = router.oneshot(req).await.expect("answer");
            let echoed = resp
                .headers()
                .get("x-correlation-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (resp.status().as_u16(), echoed)
        }
    };
    let mut wrong = Vec::new();
    let mut statuses = std::collections::BTreeSet::new();
    for (i, (method, path)) in operations(&document()).into_iter().enumerate() {
        // Without a key (refused, or public), and each read with the tenant's key.
        let mut tries = vec![None];
        if method == "GET" {
            tries.push(Some(t.key.as_str()));
        }
        for key in tries {
            let id = format!("walk-{i}:{}", key.is_some());
            let (status, echoed) = send(&method, &path, key, &id).await;
            statuses.insert(status);
            if echoed.as_deref() != Some(id.as_str()) {
                wrong.push(format!("{method} {path} ({status}): {echoed:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(
        statuses.contains(&200) && statuses.contains(&401),
        "answers and refusals alike: {statuses:?}"
    );
    let (_, echoed) = send("GET", "/v1/accounts", Some(&t.key), "not a valid id!").await;
    let fresh = echoed.expect("a correlation id");
    assert_ne!(fresh, "not a valid id!");
    assert!(uuid_like(&fresh), "{fresh}");
}

fn uuid_like(s: &str) -> bool {
    let parts: Vec<usize> = s.split('-').map(str::len).collect();
    parts == [8, 4, 4, 4, 12] && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}
