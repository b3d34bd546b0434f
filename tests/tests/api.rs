//! The query and admin API against the emulator.

use e2e::{now_rfc3339, total, TestStack};
use serde_json::json;

#[tokio::test]
async fn accounts_are_created_updated_read_and_listed_page_by_page() {
    let t = TestStack::fresh().await;
    let body = r#"{"name":"Acme","segment":"enterprise","owner_email":"csm@example.com","onboarding_date":"2026-02-01","crm_ids":{"hubspot_company_id":"5123"}}"#;
    let (s, created) = t.call("PUT", "/v1/accounts/acme", Some(body)).await;
    assert_eq!(s, 201, "{created}");
    let (s, updated) = t
        .call(
            "PUT",
            "/v1/accounts/acme",
            Some(&body.replace("Acme", "Acme Corp")),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        updated["created_at"], created["created_at"],
        "creation time survives updates"
    );
    let (s, got) = t.call("GET", "/v1/accounts/acme", None).await;
    assert_eq!((s, got["name"].as_str()), (200, Some("Acme Corp")));
    assert_eq!(got["crm_ids"]["hubspot_company_id"], "5123");

    for i in 0..7 {
        t.put_account(
            &format!("acct-{i}"),
            if i % 2 == 0 { "smb" } else { "mid_market" },
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/accounts?limit=3&cursor={c}"),
            None => "/v1/accounts?limit=3".to_owned(),
        };
        let (s, page) = t.call("GET", &path, None).await;
        assert_eq!(s, 200, "{page}");
        let items = page["accounts"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(
            items
                .iter()
                .map(|a| a["account"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen.len(), 8, "{seen:?}");
    seen.dedup();
    assert_eq!(seen.len(), 8, "no account twice");
    let (_, smb) = t.call("GET", "/v1/accounts?segment=smb", None).await;
    assert_eq!(smb["accounts"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn bad_admin_requests_get_specific_codes() {
    let t = TestStack::fresh().await;
    let cases = [
        (
            "PUT",
            "/v1/accounts/acme",
            Some(r#"{"name":"A","segment":"galactic"}"#),
            400,
            "invalid_segment",
        ),
        ("PUT", "/v1/accounts/acme", Some("{"), 400, "malformed_json"),
        (
            "PUT",
            "/v1/accounts/a%23b",
            Some(r#"{"name":"A","segment":"smb"}"#),
            400,
            "invalid_account",
        ),
        ("GET", "/v1/accounts/nobody", None, 404, "not_found"),
        ("GET", "/v1/accounts/nobody/usage", None, 404, "not_found"),
        (
            "GET",
            "/v1/accounts?limit=0",
            None,
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/accounts?cursor=bm9wZQ",
            None,
            400,
            "invalid_cursor",
        ),
        (
            "GET",
            "/v1/accounts?band=red&x=1",
            None,
            400,
            "unknown_parameter",
        ),
        ("GET", "/v1/segments/huge/usage", None, 404, "not_found"),
        (
            "GET",
            "/v1/segments/smb/usage?granularity=week",
            None,
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/segments/smb/usage?granularity=hour&from=2020-01-01",
            None,
            400,
            "range_too_large",
        ),
        (
            "DELETE",
            "/v1/accounts/acme",
            None,
            405,
            "method_not_allowed",
        ),
        ("GET", "/v2/nothing", None, 404, "not_found"),
        (
            "PUT",
            "/v1/definitions/Bad",
            Some("{}"),
            400,
            "invalid_meter",
        ),
        (
            "PUT",
            "/v1/definitions/good_one",
            Some(r#"{"status":"gone"}"#),
            400,
            "invalid_status",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (s, r) = t.call(method, path, body).await;
        assert_eq!(
            (s, r["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {r}"
        );
    }
}

#[tokio::test]
async fn a_meter_defined_through_the_api_can_be_sent_right_away() {
    let t = TestStack::fresh().await;
    let ts = now_rfc3339();
    let ev = json!([{"id": "w1", "account": "a", "meter": "workflows_run", "quantity": 3, "timestamp": ts}]).to_string();
    assert_eq!(
        t.post_events(&ev).await.1["rejected"][0]["code"],
        "unknown_meter"
    );
    let (s, d) = t
        .call(
            "PUT",
            "/v1/definitions/workflows_run",
            Some(r#"{"description":"Automations executed","unit":"run"}"#),
        )
        .await;
    assert_eq!(s, 201, "{d}");
    assert_eq!(t.post_events(&ev).await.1["accepted"], 1);
    let (_, list) = t.call("GET", "/v1/definitions", None).await;
    assert!(list["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["meter"] == "workflows_run"));
    t.call(
        "PUT",
        "/v1/definitions/workflows_run",
        Some(r#"{"unit":"run","status":"deleted"}"#),
    )
    .await;
    let again = json!([{"id": "w2", "account": "a", "meter": "workflows_run", "timestamp": ts}])
        .to_string();
    // Held in quarantine (the default policy), not counted.
    assert_eq!(
        t.post_events(&again).await.1["quarantined"][0]["reason"],
        "meter_deleted"
    );
    t.drain().await;
    assert_eq!(
        total(&t.usage("a", "meter=workflows_run").await),
        ("3".into(), 1)
    );
}

#[tokio::test]
async fn usage_can_be_filtered_by_stage_and_service_line_and_grouped() {
    let t = TestStack::fresh().await;
    let ts = now_rfc3339();
    let events = json!([
        {"id": "s1", "account": "a", "meter": "tickets_resolved", "stage": "requested", "service_line": "support", "quantity": 4, "timestamp": ts},
        {"id": "s2", "account": "a", "meter": "tickets_resolved", "stage": "delivered", "service_line": "support", "quantity": 3, "timestamp": ts},
        {"id": "s3", "account": "a", "meter": "tickets_resolved", "stage": "delivered", "service_line": "onboarding", "quantity": 2, "timestamp": ts},
        {"id": "s4", "account": "a", "meter": "tickets_resolved", "stage": "billed", "service_line": "support", "quantity": 1, "timestamp": ts}
    ]);
    assert_eq!(t.post_events(&events.to_string()).await.1["accepted"], 4);
    t.drain().await;
    assert_eq!(total(&t.usage("a", "stage=delivered").await).0, "5");
    assert_eq!(total(&t.usage("a", "service_line=support").await).0, "8");
    assert_eq!(
        total(&t.usage("a", "stage=delivered&service_line=support").await).0,
        "3"
    );
    let grouped = t
        .usage("a", "group_by=stage,service_line&granularity=month")
        .await;
    assert_eq!(grouped["series"].as_array().unwrap().len(), 4, "{grouped}");
}
