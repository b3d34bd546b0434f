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

/// Issues a key with `body` through the admin route; returns (key, key_id).
async fn issue(t: &TestStack, body: serde_json::Value) -> (String, String) {
    let (s, v) = t.call("POST", "/v1/keys", Some(&body.to_string())).await;
    assert_eq!(s, 201, "{v}");
    (
        v["key"].as_str().unwrap().to_owned(),
        v["key_id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_read_key_reads_everything_and_can_never_change_anything() {
    let t = TestStack::fresh().await;
    t.put_account("acme", "smb").await;
    let (read, _) = issue(&t, json!({"label": "cs-app", "scopes": ["read"]})).await;
    let (s, v) = t.call_as(&read, "GET", "/v1/accounts/acme", None).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = t.call_as(&read, "GET", "/v1/definitions", None).await;
    assert_eq!(s, 200, "{v}");
    let writes: [(&str, &str, Option<&str>); 7] = [
        (
            "PUT",
            "/v1/accounts/acme",
            Some(r#"{"name":"x","segment":"smb"}"#),
        ),
        (
            "PUT",
            "/v1/entitlements/e1",
            Some(r#"{"account":"acme","meter":"api_calls","limit":5,"period":"year"}"#),
        ),
        ("DELETE", "/v1/definitions/api_calls", None),
        ("PUT", "/v1/health/config", Some("{}")),
        (
            "POST",
            "/v1/events",
            Some(r#"[{"id":"r-1","account":"acme","meter":"api_calls"}]"#),
        ),
        ("POST", "/v1/keys", Some(r#"{"scopes":["admin"]}"#)),
        ("GET", "/v1/keys", None),
    ];
    for (method, path, body) in writes {
        let (s, v) = t.call_as(&read, method, path, body).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (403, Some("insufficient_scope")),
            "{method} {path}: {v}"
        );
    }
    // Nothing changed.
    let (_, acme) = t.call("GET", "/v1/accounts/acme", None).await;
    assert_eq!(acme["segment"], "smb");
    let (s, _) = t.call("GET", "/v1/definitions/api_calls", None).await;
    assert_eq!(s, 200);
    // An ingest key sends events and reads nothing.
    let (ingest, _) = issue(&t, json!({"scopes": ["ingest"]})).await;
    let (s, v) = t
        .call_as(
            &ingest,
            "POST",
            "/v1/events",
            Some(r#"[{"id":"i-1","account":"acme","meter":"api_calls"}]"#),
        )
        .await;
    assert_eq!((s, v["accepted"].as_i64()), (202, Some(1)), "{v}");
    let (s, _) = t.call_as(&ingest, "GET", "/v1/accounts/acme", None).await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn keys_are_listed_rotated_with_an_overlap_revoked_and_bounded() {
    let t = TestStack::fresh().await;
    let (old, old_id) = issue(
        &t,
        json!({"label": "etl", "scopes": ["ingest", "read"], "expires_in_days": 30}),
    )
    .await;
    let (s, list) = t.call("GET", "/v1/keys", None).await;
    assert_eq!(s, 200, "{list}");
    let listed = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == old_id.as_str())
        .cloned()
        .expect("the new key is listed");
    assert_eq!(listed["scopes"], json!(["ingest", "read"]));
    assert_eq!(listed["status"], "active");
    assert!(listed.get("key").is_none() && !list.to_string().contains(&old));
    // Rotation with no overlap: the successor works, the old key stops at once.
    let (s, rotated) = t
        .call(
            "POST",
            &format!("/v1/keys/{old_id}/rotate"),
            Some(r#"{"overlap_hours":0}"#),
        )
        .await;
    assert_eq!(s, 201, "{rotated}");
    assert_eq!(rotated["scopes"], json!(["ingest", "read"]));
    assert_eq!(rotated["label"], "etl");
    assert_eq!(rotated["replaces"]["key_id"], old_id.as_str());
    let new = rotated["key"].as_str().unwrap().to_owned();
    let new_id = rotated["key_id"].as_str().unwrap().to_owned();
    let (s, v) = t.call_as(&old, "GET", "/v1/accounts", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("api_key_expired")),
        "{v}"
    );
    let (s, _) = t.call_as(&new, "GET", "/v1/accounts", None).await;
    assert_eq!(s, 200);
    // With an overlap both work until it ends.
    let (s, again) = t
        .call(
            "POST",
            &format!("/v1/keys/{new_id}/rotate"),
            Some(r#"{"overlap_hours":2}"#),
        )
        .await;
    assert_eq!(s, 201, "{again}");
    let (s, _) = t.call_as(&new, "GET", "/v1/accounts", None).await;
    assert_eq!(s, 200, "the replaced key works during the overlap");
    let newest = again["key"].as_str().unwrap().to_owned();
    let newest_id = again["key_id"].as_str().unwrap().to_owned();
    // Revoked: refused from then on, with its code.
    let (s, v) = t
        .call("DELETE", &format!("/v1/keys/{newest_id}"), None)
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("revoked")), "{v}");
    let (s, v) = t.call_as(&newest, "POST", "/v1/events", Some("[]")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("api_key_revoked")),
        "{v}"
    );
    // Another tenant's key ids are not found; bad requests get their codes.
    let beta = t.second_tenant("beta").await;
    let (s, _) = t
        .call_as(&beta, "DELETE", &format!("/v1/keys/{new_id}"), None)
        .await;
    assert_eq!(s, 404);
    for (body, code) in [
        (r#"{"scopes":["root"]}"#, "invalid_scope"),
        (r#"{"expires_in_days":100000}"#, "invalid_expiry"),
    ] {
        let (s, v) = t.call("POST", "/v1/keys", Some(body)).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some(code)), "{v}");
    }
    let (s, v) = t
        .call(
            "POST",
            &format!("/v1/keys/{new_id}/rotate"),
            Some(r#"{"overlap_hours":99999}"#),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_overlap")),
        "{v}"
    );
}

async fn run_audit(t: &TestStack, key: Option<&str>) -> (u16, serde_json::Value) {
    let req = t.request("POST", "/local/jobs/audit", key, None);
    e2e::decode(local::server::run_job(&t.stack, &req, "audit").await)
}

#[tokio::test]
async fn local_jobs_need_an_admin_key_and_run_for_that_keys_tenant_only() {
    let t = TestStack::fresh().await;
    let beta = t.second_tenant("beta").await;
    let (s, v) = run_audit(&t, None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("missing_api_key")),
        "{v}"
    );
    let (read, _) = issue(&t, json!({"scopes": ["read"]})).await;
    let (s, v) = run_audit(&t, Some(&read)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{v}"
    );
    let (s, v) = run_audit(&t, Some(&beta)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["tenant"], "beta");
    let tenants: Vec<&str> = v["report"]["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["tenant"].as_str())
        .collect();
    assert_eq!(tenants, ["beta"], "no other tenant's findings: {v}");
}
