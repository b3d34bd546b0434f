//! HubSpot webhooks end to end: signed batches in, attributed usage counted once.

use domain::hubspot::signature::v3_signature;
use e2e::{decode, total, TestStack, HUBSPOT_OLD_SECRET, HUBSPOT_SECRET};
use serde_json::{json, Value};

const PORTAL: u64 = 62515;
const URI: &str = "https://hooks.example.com/v1/webhooks/hubspot";

async fn stack() -> TestStack {
    let t = TestStack::fresh().await;
    t.stack
        .store
        .map_portal(PORTAL, &t.tenant)
        .await
        .expect("portal");
    t
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn post_signed(
    t: &TestStack,
    body: &str,
    secret: &str,
    ts: i64,
    tamper: Option<&str>,
) -> (u16, Value) {
    let ts = ts.to_string();
    let sig = v3_signature(secret, "POST", URI, body.as_bytes(), &ts);
    let sent = tamper.unwrap_or(body);
    let req = lambda_http::http::Request::builder()
        .method("POST")
        .uri("/v1/webhooks/hubspot")
        .header("content-type", "application/json")
        .header("x-hubspot-signature-v3", sig)
        .header("x-hubspot-request-timestamp", ts)
        .body(lambda_http::Body::Binary(sent.as_bytes().to_vec()))
        .unwrap();
    decode(t.stack.ingest.handle(req).await)
}

async fn post(t: &TestStack, events: &[Value]) -> (u16, Value) {
    post_signed(
        t,
        &json!(events).to_string(),
        HUBSPOT_SECRET,
        now_ms(),
        None,
    )
    .await
}

fn ticket_created(event_id: u64, ticket: u64, occurred: i64, attempt: u32) -> Value {
    json!({"eventId": event_id, "subscriptionId": 11, "portalId": PORTAL, "appId": 77, "occurredAt": occurred,
           "subscriptionType": "ticket.creation", "attemptNumber": attempt, "objectId": ticket, "changeSource": "CRM_UI"})
}

fn ticket_to_company(ticket: u64, company: u64, occurred: i64) -> Value {
    json!({"eventId": 9_000_000 + ticket, "subscriptionId": 12, "portalId": PORTAL, "appId": 77, "occurredAt": occurred,
           "subscriptionType": "ticket.associationChange", "attemptNumber": 0, "associationType": "TICKET_TO_COMPANY",
           "fromObjectId": ticket, "toObjectId": company, "associationRemoved": false, "isPrimaryAssociation": true})
}

async fn tickets_opened(t: &TestStack, account: &str) -> (String, i64) {
    usage_total(t, account, "tickets_opened").await
}

#[tokio::test]
async fn a_hundred_event_batch_with_retries_and_reused_event_ids_is_counted_once() {
    let t = stack().await;
    let base = now_ms() - 60_000;
    let links: Vec<Value> = (1..=100).map(|i| ticket_to_company(i, 500, base)).collect();
    assert_eq!(post(&t, &links).await.0, 200);
    // 100 distinct ticket creations; HubSpot reuses eventId 1 for all of them.
    let batch: Vec<Value> = (1..=100)
        .map(|i| ticket_created(1, i, base + i as i64, 0))
        .collect();
    let (status, out) = post(&t, &batch).await;
    assert_eq!(
        (status, out["received"].as_u64()),
        (200, Some(100)),
        "{out}"
    );
    // HubSpot retries the whole batch (new attempt numbers), twice.
    let retry: Vec<Value> = (1..=100)
        .map(|i| ticket_created(1, i, base + i as i64, 1))
        .collect();
    post(&t, &retry).await;
    post(&t, &retry).await;
    t.drain().await;
    assert_eq!(tickets_opened(&t, "500").await, ("100".into(), 100));
}

#[tokio::test]
async fn a_ticket_created_before_its_association_is_held_then_counted_once() {
    let t = stack().await;
    let at = now_ms() - 30_000;
    post(&t, &[ticket_created(5, 77, at, 0)]).await;
    t.drain().await;
    assert_eq!(
        tickets_opened(&t, "900").await,
        ("0".into(), 0),
        "held, not guessed"
    );
    post(&t, &[ticket_to_company(77, 900, at + 10)]).await;
    t.drain().await;
    assert_eq!(tickets_opened(&t, "900").await, ("1".into(), 1));
    // The association and the creation arrive again (retries): nothing changes.
    post(
        &t,
        &[
            ticket_to_company(77, 900, at + 10),
            ticket_created(5, 77, at, 2),
        ],
    )
    .await;
    t.drain().await;
    assert_eq!(tickets_opened(&t, "900").await, ("1".into(), 1));
}

#[tokio::test]
async fn usage_of_a_merged_company_moves_to_the_surviving_company() {
    let t = stack().await;
    let at = now_ms() - 30_000;
    let merge = json!({"eventId": 3, "portalId": PORTAL, "occurredAt": at, "subscriptionType": "company.merge",
                       "objectId": 500, "primaryObjectId": 500, "mergedObjectIds": [500, 600]});
    post(&t, &[ticket_to_company(31, 600, at), merge]).await;
    // The merge is processed before the later usage arrives (a ticket processed while
    // its company's merge is still being applied may count for the merged id: ADR 0005).
    t.drain().await;
    post(&t, &[ticket_created(8, 31, at + 5, 0)]).await;
    t.drain().await;
    assert_eq!(tickets_opened(&t, "500").await, ("1".into(), 1));
    assert_eq!(tickets_opened(&t, "600").await, ("0".into(), 0));
}

#[tokio::test]
async fn changes_no_rule_maps_are_counted_as_unmapped_not_dropped() {
    let t = stack().await;
    let at = now_ms() - 30_000;
    let deals: Vec<Value> = (1..=3)
        .map(|i| json!({"eventId": i, "portalId": PORTAL, "occurredAt": at + i as i64, "subscriptionType": "deal.creation", "objectId": 40 + i}))
        .collect();
    post(&t, &deals).await;
    t.drain().await;
    let day = chrono::DateTime::from_timestamp_millis(at)
        .unwrap()
        .date_naive();
    assert_eq!(
        t.stack.store.unmapped_count(&t.tenant, day).await.unwrap(),
        3
    );
}

#[tokio::test]
async fn bad_signatures_and_unknown_portals_are_refused_and_nothing_is_queued() {
    let t = stack().await;
    let body = json!([ticket_created(1, 1, now_ms(), 0)]).to_string();
    let code = |r: &(u16, Value)| (r.0, r.1["error"]["code"].as_str().map(str::to_owned));
    let tampered = body.replace("\"objectId\":1", "\"objectId\":2");
    assert_eq!(
        code(&post_signed(&t, &body, HUBSPOT_SECRET, now_ms(), Some(&tampered)).await),
        (401, Some("invalid_signature".into()))
    );
    assert_eq!(
        code(&post_signed(&t, &body, "wrong-secret", now_ms(), None).await),
        (401, Some("invalid_signature".into()))
    );
    assert_eq!(
        code(&post_signed(&t, &body, HUBSPOT_SECRET, now_ms() - 6 * 60_000, None).await),
        (401, Some("expired_timestamp".into()))
    );
    let unsigned = t.request("POST", "/v1/webhooks/hubspot", None, Some(body.as_bytes()));
    assert_eq!(
        code(&decode(t.stack.ingest.handle(unsigned).await)),
        (401, Some("missing_signature".into()))
    );
    assert_eq!(t.queue_depth("EventsQueue").await, 0);
    // The previous secret still works during a rotation.
    assert_eq!(
        post_signed(&t, &body, HUBSPOT_OLD_SECRET, now_ms(), None)
            .await
            .0,
        200
    );
    let other = json!([{"eventId": 1, "portalId": 999, "occurredAt": now_ms(), "subscriptionType": "ticket.creation", "objectId": 1}]).to_string();
    assert_eq!(
        code(&post_signed(&t, &other, HUBSPOT_SECRET, now_ms(), None).await),
        (403, Some("unknown_portal".into()))
    );
}

#[tokio::test]
async fn tenant_mapping_rules_are_managed_through_the_api_and_applied_to_webhooks() {
    let t = stack().await;
    let (s, defaults) = t.call("GET", "/v1/hubspot/mappings", None).await;
    assert_eq!((s, defaults["source"].as_str()), (200, Some("defaults")));
    let rules = json!({"rules": [{"subscription_type": "company.propertyChange", "property_name": "seats_used",
        "meter": "seats_active", "quantity": "property_value", "stage": "delivered", "service_line": "platform"}]});
    let (s, saved) = t
        .call("PUT", "/v1/hubspot/mappings", Some(&rules.to_string()))
        .await;
    assert_eq!(
        (s, saved["source"].as_str()),
        (200, Some("tenant")),
        "{saved}"
    );
    let bad = json!({"rules": [{"subscription_type": "company.propertyChange", "meter": "no_such_meter",
        "quantity": {"constant": "1"}, "stage": "delivered", "service_line": "platform"}]});
    let (s, err) = t
        .call("PUT", "/v1/hubspot/mappings", Some(&bad.to_string()))
        .await;
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (400, Some("unknown_meter"))
    );

    let change = json!({"eventId": 4, "portalId": PORTAL, "occurredAt": now_ms() - 1000, "subscriptionType": "company.propertyChange",
                        "objectId": 700, "propertyName": "seats_used", "propertyValue": "42"});
    post(&t, &[change]).await;
    t.drain().await;
    let (_, usage) = t
        .call("GET", "/v1/accounts/700/usage?meter=seats_active", None)
        .await;
    assert_eq!(
        total(&usage),
        ("42".into(), 1),
        "company events attribute to the company itself"
    );
}

const WORKFLOW_URI: &str = "https://hooks.example.com/v1/webhooks/hubspot/workflow";

/// Posts a workflow "Send a webhook" payload signed with v3, the only scheme a
/// deployment accepts unless it opts in to legacy signatures.
async fn post_workflow(t: &TestStack, query: &str, body: &Value) -> (u16, Value) {
    post_workflow_v3(t, query, body).await
}

async fn usage_total(t: &TestStack, account: &str, meter: &str) -> (String, i64) {
    let (s, v) = t
        .call(
            "GET",
            &format!("/v1/accounts/{account}/usage?meter={meter}"),
            None,
        )
        .await;
    if s == 404 {
        return ("0".into(), 0);
    }
    total(&v)
}

#[tokio::test]
async fn workflow_webhooks_are_verified_mapped_by_the_same_rules_and_counted_once() {
    let t = stack().await;
    let (s, _) = t
        .call(
            "PUT",
            "/v1/definitions/escalations",
            Some(r#"{"unit":"escalations"}"#),
        )
        .await;
    assert!(s == 200 || s == 201);
    let rules = json!({"rules": [{"subscription_type": "workflow.ticket_escalated", "property_name": "hs_ticket_priority",
        "property_values": ["HIGH", "URGENT"], "meter": "escalations", "quantity": {"constant": "1"},
        "stage": "delivered", "service_line": "support"},
        {"subscription_type": "ticket.creation", "meter": "tickets_opened", "quantity": {"constant": "1"},
        "stage": "requested", "service_line": "support"}]});
    let (s, saved) = t
        .call("PUT", "/v1/hubspot/mappings", Some(&rules.to_string()))
        .await;
    assert_eq!(s, 200, "{saved}");

    // Portal and event in the query string, the record and its company in the body.
    let query = format!("?portalId={PORTAL}&event=ticket_escalated");
    let payload = json!({"objectType": "TICKET", "objectId": 4242, "associatedCompanyId": 810,
        "properties": {"hs_ticket_priority": "URGENT", "subject": "Cannot log in"}});
    let (s, out) = post_workflow(&t, &query, &payload).await;
    assert_eq!((s, out["received"].as_u64()), (200, Some(1)), "{out}");
    // HubSpot retries the same payload (no timestamp in it): counted once.
    post_workflow(&t, &query, &payload).await;
    // A low-priority escalation matches no rule and is counted as unmapped.
    let low = json!({"objectType": "TICKET", "objectId": 4243, "associatedCompanyId": 810,
        "properties": {"hs_ticket_priority": "LOW"}});
    post_workflow(&t, &query, &low).await;
    t.drain().await;
    assert_eq!(usage_total(&t, "810", "escalations").await, ("1".into(), 1));
    let unmapped = t
        .stack
        .store
        .unmapped_count(&t.tenant, chrono::Utc::now().date_naive())
        .await
        .unwrap();
    assert_eq!(unmapped, 1);

    // The workflow's company link also attributes the ticket's later app webhooks.
    post(&t, &[ticket_created(3, 4242, now_ms() - 500, 0)]).await;
    t.drain().await;
    assert_eq!(tickets_opened(&t, "810").await, ("1".into(), 1));

    // Tampered body, wrong secret and a missing event are refused.
    let mut tampered = payload.clone();
    tampered["objectId"] = json!(1);
    let ts = now_ms().to_string();
    let sig = v3_signature(
        HUBSPOT_SECRET,
        "POST",
        &format!("{WORKFLOW_URI}{query}"),
        payload.to_string().as_bytes(),
        &ts,
    );
    let req = lambda_http::http::Request::builder()
        .method("POST")
        .uri(format!("/v1/webhooks/hubspot/workflow{query}"))
        .header("x-hubspot-signature-v3", sig)
        .header("x-hubspot-request-timestamp", ts)
        .body(lambda_http::Body::Binary(tampered.to_string().into_bytes()))
        .unwrap();
    let (s, err) = decode(t.stack.ingest.handle(req).await);
    assert_eq!(s, 401, "{err}");
    let (s, err) = post_workflow(&t, &format!("?portalId={PORTAL}"), &payload).await;
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (400, Some("invalid_webhook_event")),
        "{err}"
    );
}

#[tokio::test]
async fn an_account_naming_its_hubspot_company_receives_that_companys_usage() {
    let t = stack().await;
    let body =
        json!({"name": "Acme", "segment": "enterprise", "crm_ids": {"hubspot_company_id": "5123"}});
    let (s, v) = t
        .call("PUT", "/v1/accounts/acme", Some(&body.to_string()))
        .await;
    assert_eq!(s, 201, "{v}");
    let at = now_ms() - 20_000;
    post(
        &t,
        &[
            ticket_to_company(31, 5123, at),
            ticket_created(1, 31, at + 1, 0),
        ],
    )
    .await;
    t.drain().await;
    assert_eq!(tickets_opened(&t, "acme").await, ("1".into(), 1));
    assert_eq!(tickets_opened(&t, "5123").await, ("0".into(), 0));

    // Another account cannot claim the same company.
    let (s, err) = t
        .call(
            "PUT",
            "/v1/accounts/acme-dup",
            Some(&json!({"name": "Dup", "segment": "smb", "crm_ids": {"hubspot_company_id": "5123"}}).to_string()),
        )
        .await;
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (409, Some("hubspot_company_taken")),
        "{err}"
    );

    // Unlinking sends the company's later usage back to its own id.
    let (s, _) = t
        .call(
            "PUT",
            "/v1/accounts/acme",
            Some(r#"{"name":"Acme","segment":"enterprise"}"#),
        )
        .await;
    assert_eq!(s, 200);
    post(
        &t,
        &[
            ticket_created(2, 32, at + 2, 0),
            ticket_to_company(32, 5123, at + 3),
        ],
    )
    .await;
    t.drain().await;
    assert_eq!(tickets_opened(&t, "acme").await, ("1".into(), 1));
    assert_eq!(tickets_opened(&t, "5123").await, ("1".into(), 1));
}

#[tokio::test]
async fn bulk_imported_associations_release_held_usage_exactly_once() {
    let t = stack().await;
    let at = now_ms() - 40_000;
    post(
        &t,
        &[
            ticket_created(1, 61, at, 0),
            ticket_created(2, 62, at + 1, 0),
        ],
    )
    .await;
    t.drain().await;
    assert_eq!(tickets_opened(&t, "640").await, ("0".into(), 0));

    let import = json!({"associations": [
        {"object_type": "ticket", "object_id": 61, "company_id": 640},
        {"object_type": "tickets", "object_id": 62, "company_id": 640}]});
    let (s, out) = t
        .call(
            "POST",
            "/v1/hubspot/associations",
            Some(&import.to_string()),
        )
        .await;
    assert_eq!((s, out["queued"].as_u64()), (202, Some(2)), "{out}");
    // Re-running the import changes nothing.
    t.call(
        "POST",
        "/v1/hubspot/associations",
        Some(&import.to_string()),
    )
    .await;
    t.drain().await;
    assert_eq!(tickets_opened(&t, "640").await, ("2".into(), 2));

    let (s, err) = t
        .call(
            "POST",
            "/v1/hubspot/associations",
            Some(r#"{"associations":[{"object_type":"widget","object_id":1,"company_id":2}]}"#),
        )
        .await;
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (400, Some("invalid_associations"))
    );
    let (s, _) = t
        .call_as(
            "not-a-key",
            "POST",
            "/v1/hubspot/associations",
            Some(&import.to_string()),
        )
        .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn company_property_changes_update_the_linked_account_profile_newest_first() {
    let t = stack().await;
    let base = now_ms() - 100_000;
    let change = |id: u64, prop: &str, value: &str, at: i64| {
        json!({"eventId": id, "portalId": PORTAL, "occurredAt": at, "subscriptionType": "company.propertyChange",
               "objectId": 777, "propertyName": prop, "propertyValue": value})
    };
    // Before any account names the company: remembered on the company.
    post(&t, &[change(1, "numberofemployees", "120", base)]).await;
    t.drain().await;
    let (s, acct) = t
        .call(
            "PUT",
            "/v1/accounts/globex",
            Some(r#"{"name":"Globex","segment":"mid_market","crm_ids":{"hubspot_company_id":"777"}}"#),
        )
        .await;
    assert_eq!(s, 201, "{acct}");
    assert_eq!(acct["crm_properties"]["employees"]["value"], "120");

    // Newer seats arrive before older ones: the newest wins.
    post(
        &t,
        &[
            change(2, "seats", "40", base + 2000),
            change(3, "seats", "25", base + 1000),
            change(4, "plan", "Enterprise", base + 3000),
            change(5, "seats", "many", base + 4000),
        ],
    )
    .await;
    t.drain().await;
    let (_, acct) = t.call("GET", "/v1/accounts/globex", None).await;
    assert_eq!(acct["crm_properties"]["seats"]["value"], "40", "{acct}");
    assert_eq!(acct["crm_properties"]["plan"]["value"], "Enterprise");
    assert_eq!(acct["crm_properties"]["seats"]["source"], "seats");
    // The unusable value is recorded for the audit, not applied.
    let unmapped = t
        .stack
        .store
        .unmapped_count(
            &t.tenant,
            chrono::DateTime::from_timestamp_millis(base + 4000)
                .unwrap()
                .date_naive(),
        )
        .await
        .unwrap();
    assert_eq!(unmapped, 1);

    // Tenants choose which property feeds which field.
    let cfg = json!({"rules": [], "profile_properties": {"num_licenses": "seats"}});
    let (s, saved) = t
        .call("PUT", "/v1/hubspot/mappings", Some(&cfg.to_string()))
        .await;
    assert_eq!(s, 200, "{saved}");
    assert_eq!(saved["profile_properties"]["num_licenses"], "seats");
    post(&t, &[change(6, "num_licenses", "55", base + 5000)]).await;
    t.drain().await;
    let (_, acct) = t.call("GET", "/v1/accounts/globex", None).await;
    assert_eq!(acct["crm_properties"]["seats"]["value"], "55");
}

#[tokio::test]
async fn changes_mapped_to_a_deleted_meter_are_held_and_counted_once_on_restore() {
    let t = stack().await;
    let at = now_ms() - 30_000;
    post(&t, &[ticket_to_company(41, 700, at)]).await;
    t.drain().await;
    let (s, v) = t
        .call("DELETE", "/v1/definitions/tickets_opened", None)
        .await;
    assert_eq!(s, 200, "{v}");
    // Even a tenant that refuses deleted meters' events at ingest: HubSpot has been
    // answered already, so its change is held, not counted and not dropped.
    t.call(
        "PUT",
        "/v1/governance/policy",
        Some(r#"{"deleted_meter_events":"reject"}"#),
    )
    .await;
    post(&t, &[ticket_created(8, 41, at + 5, 0)]).await;
    t.drain().await;
    assert_eq!(tickets_opened(&t, "700").await, ("0".into(), 0));
    let (_, held) = t
        .call("GET", "/v1/definitions/tickets_opened/quarantine", None)
        .await;
    let events = held["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{held}");
    assert_eq!(
        (
            events[0]["source"].as_str(),
            events[0]["event"]["account"].as_str()
        ),
        (Some("hubspot"), Some("700"))
    );
    let (_, v) = t
        .call("POST", "/v1/definitions/tickets_opened/restore", None)
        .await;
    assert_eq!(v["replay"]["replayed"], 1, "{v}");
    t.drain().await;
    // HubSpot retries the change after the restore: still one.
    post(&t, &[ticket_created(8, 41, at + 5, 1)]).await;
    t.drain().await;
    assert_eq!(tickets_opened(&t, "700").await, ("1".into(), 1));
}

// ---- issue #11: signatures that cannot be downgraded or replayed, bounded inputs ----

const OTHER_PORTAL: u64 = 91_919;

/// Posts `body` to `path_and_query` signed with a legacy scheme (`v1`: SHA-256 of
/// secret + body; `v2`: secret + method + URI + body), as workflow senders do.
async fn post_legacy(
    ingest: &ingest::Ingest,
    version: &str,
    path_and_query: &str,
    body: &str,
) -> (u16, Value) {
    let uri = format!("https://hooks.example.com{path_and_query}");
    let sig = match version {
        "v1" => domain::hubspot::signature::v1_signature(HUBSPOT_SECRET, body.as_bytes()),
        _ => {
            domain::hubspot::signature::v2_signature(HUBSPOT_SECRET, "POST", &uri, body.as_bytes())
        }
    };
    let req = lambda_http::http::Request::builder()
        .method("POST")
        .uri(path_and_query)
        .header("content-type", "application/json")
        .header("x-hubspot-signature", sig)
        .header("x-hubspot-signature-version", version)
        .body(lambda_http::Body::Binary(body.as_bytes().to_vec()))
        .unwrap();
    decode(ingest.handle(req).await)
}

/// Posts a workflow payload signed with v3 (method + full URI + body + timestamp).
async fn post_workflow_v3(t: &TestStack, query: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let ts = now_ms().to_string();
    let sig = v3_signature(
        HUBSPOT_SECRET,
        "POST",
        &format!("{WORKFLOW_URI}{query}"),
        body.as_bytes(),
        &ts,
    );
    let req = lambda_http::http::Request::builder()
        .method("POST")
        .uri(format!("/v1/webhooks/hubspot/workflow{query}"))
        .header("content-type", "application/json")
        .header("x-hubspot-signature-v3", sig)
        .header("x-hubspot-request-timestamp", ts)
        .body(lambda_http::Body::Binary(body.into_bytes()))
        .unwrap();
    decode(t.stack.ingest.handle(req).await)
}

/// An ingest handler of this stack whose deployment opted in to legacy signatures
/// (`HUBSPOT_LEGACY_SIGNATURES=<versions>`), with the replay guard on its table.
fn legacy_ingest(t: &TestStack, versions: &str) -> ingest::Ingest {
    let mut i = ingest::Ingest::new(t.stack.store.clone(), t.stack.queue.clone());
    i.hubspot = Some(ingest::HubspotConfig {
        secrets: vec![HUBSPOT_SECRET.to_owned()].into(),
        public_base_url: Some("https://hooks.example.com".to_owned()),
        portals: t.stack.store.clone(),
        legacy: domain::hubspot::replay::LegacyPolicy::from_settings(versions, Some("24"))
            .expect("setting")
            .map(|policy| ingest::LegacySignatures {
                policy,
                guard: t.stack.store.clone(),
            }),
    });
    i
}

async fn escalation_rules(t: &TestStack) {
    let (s, _) = t
        .call(
            "PUT",
            "/v1/definitions/escalations",
            Some(r#"{"unit":"escalations"}"#),
        )
        .await;
    assert!(s == 200 || s == 201);
    let rules = json!({"rules": [{"subscription_type": "workflow.ticket_escalated", "meter": "escalations",
        "quantity": {"constant": "1"}, "stage": "delivered", "service_line": "support"}]});
    let (s, saved) = t
        .call("PUT", "/v1/hubspot/mappings", Some(&rules.to_string()))
        .await;
    assert_eq!(s, 200, "{saved}");
}

fn code(r: &(u16, Value)) -> (u16, Option<String>) {
    (r.0, r.1["error"]["code"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn a_legacy_signed_request_is_refused_when_the_deployment_has_not_opted_in() {
    let t = stack().await;
    let batch = json!([ticket_created(1, 1, now_ms(), 0)]).to_string();
    let workflow = json!({"portalId": PORTAL, "event": "ticket_escalated", "objectId": 5, "occurredAt": now_ms()})
        .to_string();
    for (version, path, body) in [
        ("v1", "/v1/webhooks/hubspot", &batch),
        ("v2", "/v1/webhooks/hubspot", &batch),
        ("v1", "/v1/webhooks/hubspot/workflow", &workflow),
        ("v2", "/v1/webhooks/hubspot/workflow", &workflow),
    ] {
        assert_eq!(
            code(&post_legacy(&t.stack.ingest, version, path, body).await),
            (401, Some("signature_version_not_allowed".into())),
            "{version} {path}"
        );
    }
    assert_eq!(t.queue_depth("EventsQueue").await, 0);
}

#[tokio::test]
async fn a_v1_signed_body_replayed_into_another_portal_through_the_query_is_refused() {
    let t = stack().await;
    escalation_rules(&t).await;
    t.second_tenant("globex").await;
    let globex = domain::ids::TenantId::parse("globex").unwrap();
    t.stack
        .store
        .map_portal(OTHER_PORTAL, &globex)
        .await
        .expect("portal");
    let ingest = legacy_ingest(&t, "v1");
    // A captured v1 body that names neither portal nor event: v1 signs only the body,
    // so whatever the query says is the attacker's to choose.
    let body = json!({"objectType": "TICKET", "objectId": 4242, "associatedCompanyId": 810,
        "occurredAt": now_ms() - 1_000})
    .to_string();
    let path = "/v1/webhooks/hubspot/workflow";
    for query in [
        format!("?portalId={OTHER_PORTAL}&event=ticket_escalated"),
        format!("?portalId={PORTAL}&event=ticket_escalated"),
    ] {
        assert_eq!(
            code(&post_legacy(&ingest, "v1", &format!("{path}{query}"), &body).await),
            (400, Some("routing_not_signed".into())),
            "{query}"
        );
    }
    assert_eq!(t.queue_depth("EventsQueue").await, 0);
    // The same routing inside the signed body is fine.
    let signed = json!({"portalId": PORTAL, "event": "ticket_escalated", "objectType": "TICKET",
        "objectId": 4242, "associatedCompanyId": 810, "occurredAt": now_ms() - 1_000})
    .to_string();
    let (s, out) = post_legacy(&ingest, "v1", path, &signed).await;
    assert_eq!((s, out["queued"].as_u64()), (200, Some(1)), "{out}");
    t.drain().await;
    assert_eq!(usage_total(&t, "810", "escalations").await, ("1".into(), 1));
}

#[tokio::test]
async fn an_occurred_at_far_in_the_past_or_future_is_refused_or_recorded_never_counted() {
    let t = stack().await;
    let day_ahead = now_ms() + 24 * 3_600_000;
    for occurred in [json!(0), json!(day_ahead), json!("1999-12-31T23:59:59Z")] {
        let payload = json!({"portalId": PORTAL, "event": "ticket_escalated", "objectId": 1,
            "associatedCompanyId": 810, "occurredAt": occurred});
        assert_eq!(
            code(&post_workflow_v3(&t, "", &payload).await),
            (400, Some("occurred_at_out_of_range".into())),
            "{occurred}"
        );
    }
    // App webhooks carry many changes: the out-of-range one is recorded with its
    // reason, its neighbour is counted.
    post(&t, &[ticket_to_company(51, 950, now_ms() - 2_000)]).await;
    t.drain().await;
    post(
        &t,
        &[
            ticket_created(1, 51, 0, 0),
            ticket_created(2, 51, day_ahead, 0),
            ticket_created(3, 51, now_ms() - 1_000, 0),
        ],
    )
    .await;
    t.drain().await;
    assert_eq!(tickets_opened(&t, "950").await, ("1".into(), 1));
    for at in [0, day_ahead] {
        let day = chrono::DateTime::from_timestamp_millis(at)
            .unwrap()
            .date_naive();
        assert_eq!(
            t.stack.store.unmapped_count(&t.tenant, day).await.unwrap(),
            1,
            "{day}"
        );
    }
}

#[tokio::test]
async fn a_huge_property_value_is_recorded_with_its_reason_and_never_summed() {
    let t = stack().await;
    let rules = json!({"rules": [{"subscription_type": "company.propertyChange", "property_name": "seats_used",
        "meter": "seats_active", "quantity": "property_value", "stage": "delivered", "service_line": "platform"}]});
    let (s, saved) = t
        .call("PUT", "/v1/hubspot/mappings", Some(&rules.to_string()))
        .await;
    assert_eq!(s, 200, "{saved}");
    let at = now_ms() - 10_000;
    let change = |id: u64, value: &str, at: i64| {
        json!({"eventId": id, "portalId": PORTAL, "occurredAt": at, "subscriptionType": "company.propertyChange",
               "objectId": 701, "propertyName": "seats_used", "propertyValue": value})
    };
    let (s, out) = post(
        &t,
        &[
            change(1, "79228162514264337593543950335", at),
            change(2, "79228162514264337593543950335", at + 1),
            change(3, "1e27", at + 2),
            change(4, "5", at + 3),
        ],
    )
    .await;
    assert_eq!(s, 200, "{out}");
    t.drain().await;
    let (_, usage) = t
        .call("GET", "/v1/accounts/701/usage?meter=seats_active", None)
        .await;
    assert_eq!(total(&usage), ("5".into(), 1), "{usage}");
    let day = chrono::DateTime::from_timestamp_millis(at)
        .unwrap()
        .date_naive();
    assert_eq!(
        t.stack.store.unmapped_count(&t.tenant, day).await.unwrap(),
        3
    );
    assert_eq!(t.queue_depth("EventsDLQ").await, 0);
}

#[tokio::test]
async fn a_replayed_legacy_request_is_acknowledged_but_never_counted_again() {
    let t = stack().await;
    escalation_rules(&t).await;
    let ingest = legacy_ingest(&t, "v2");
    let path = format!("/v1/webhooks/hubspot/workflow?portalId={PORTAL}&event=ticket_escalated");
    let body = json!({"objectType": "TICKET", "objectId": 4242, "associatedCompanyId": 812,
        "occurredAt": now_ms() - 1_000})
    .to_string();
    let (s, out) = post_legacy(&ingest, "v2", &path, &body).await;
    assert_eq!((s, out["queued"].as_u64()), (200, Some(1)), "{out}");
    // v2 signs the URI, so its query may route; replays of the captured request are
    // acknowledged (HubSpot stops retrying) and not queued.
    for _ in 0..2 {
        let (s, out) = post_legacy(&ingest, "v2", &path, &body).await;
        assert_eq!(
            (s, out["queued"].as_u64(), out["duplicate"].as_bool()),
            (200, Some(0), Some(true)),
            "{out}"
        );
    }
    assert_eq!(t.queue_depth("EventsQueue").await, 1);
    t.drain().await;
    assert_eq!(usage_total(&t, "812", "escalations").await, ("1".into(), 1));

    // Older than the window (24 h here): once its claim may have expired the request
    // could not be told from a replay, so it is refused.
    let old = json!({"objectType": "TICKET", "objectId": 4243, "associatedCompanyId": 812,
        "occurredAt": now_ms() - 25 * 3_600_000})
    .to_string();
    assert_eq!(
        code(&post_legacy(&ingest, "v2", &path, &old).await),
        (409, Some("signature_replayed".into()))
    );
    // Without a signed time the same holds for ever: refused.
    let untimed =
        json!({"objectType": "TICKET", "objectId": 4244, "associatedCompanyId": 812}).to_string();
    assert_eq!(
        code(&post_legacy(&ingest, "v2", &path, &untimed).await),
        (400, Some("occurred_at_required".into()))
    );
    // v1 is not enabled by this deployment's setting, and v3 still works.
    assert_eq!(
        code(&post_legacy(&ingest, "v1", &path, &body).await),
        (401, Some("signature_version_not_allowed".into()))
    );
    t.drain().await;
    assert_eq!(usage_total(&t, "812", "escalations").await, ("1".into(), 1));
}
