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
