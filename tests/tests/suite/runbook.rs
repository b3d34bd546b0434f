//! Issue #13's runbook, walked against the local stack through its HTTP front door
//! (`local::server::router`, what `make run` serves and API Gateway routes on AWS): the
//! README's "Connect HubSpot (runbook)" and "Walk it locally" steps, in order, with
//! the same paths, headers and bodies as its `curl` lines. Each step checks what the
//! runbook says the engineer sees; a broken step fails the walk there.

use axum::body::Body as AxumBody;
use chrono::{Duration, NaiveDate, Utc};
use domain::hubspot::setup::PROPERTIES;
use domain::hubspot::signature::v3_signature;
use domain::ids::TenantId;
use e2e::crm::CrmStandIn;
use e2e::TestStack;
use lambda_http::tower::ServiceExt;
use serde_json::{json, Value};
use std::sync::Arc;

/// The walk's own tenant: the metrics tally is process-wide and read per tenant.
const TENANT: &str = "runbook-walk";
const PORTAL: u64 = 62_599;
/// The HubSpot company of the account that will fall behind.
const COMPANY: u64 = 5_123;
const DECLINING: &str = "northwind";
const STEADY: [&str; 4] = ["contoso", "fabrikam", "initech", "umbrella"];
/// Days of usage history: the baseline run, 30 days ago, compares 60 days of it.
const DAYS: i64 = 93;
/// Usage every third day keeps the emulator's work small; every week stays active.
const EVERY: i64 = 3;
const TOKEN: &str = "pat-runbook";

/// The local stack's front door, with HubSpot's API at the stand-in (on `make run`,
/// `HUBSPOT_API_BASE_URL`).
struct FrontDoor {
    router: axum::Router,
    key: String,
}

impl FrontDoor {
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> (u16, Value, axum::http::HeaderMap) {
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(body.map_or_else(AxumBody::empty, AxumBody::from))
            .expect("request");
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router answers");
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            headers,
        )
    }

    /// `curl -H "Authorization: Bearer $KEY"`, with a JSON body when given.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let auth = format!("Bearer {}", self.key);
        let (s, v, _) = self
            .send(
                method,
                path,
                &[("authorization", &auth)],
                body.map(|b| b.to_string()),
            )
            .await;
        (s, v)
    }

    /// `GET /local/metrics?tenant=...`: function -> metric -> summary.
    async fn metrics(&self) -> Value {
        let (s, v, _) = self
            .send("GET", &format!("/local/metrics?tenant={TENANT}"), &[], None)
            .await;
        assert_eq!(s, 200, "{v}");
        v["functions"].clone()
    }
}

fn moved(after: &Value, before: &Value, function: &str, metric: &str, field: &str) -> f64 {
    let at = |v: &Value| v[function][metric][field].as_f64().unwrap_or(0.0);
    at(after) - at(before)
}

/// Daily usage for `DAYS` days: flat (with a weekly rhythm), except that the declining
/// account uses 35 % of it in the last 30 days with three tickets a day.
fn history(account: &str, declining: bool, salt: i64) -> Vec<Value> {
    let today = Utc::now().date_naive();
    let mut out = Vec::new();
    for back in (1..=DAYS).filter(|b| b % EVERY == 0) {
        let day = today - Duration::days(back);
        let late = declining && back <= 30;
        let wiggle = 1.0 + ((back * 7 + salt * 13) % 10) as f64 / 50.0;
        let ts = format!("{day}T12:00:00Z");
        let mut push = |meter: &str, q: f64| {
            out.push(
                json!({"id": format!("{account}-{meter}-{back}"), "account": account,
                            "meter": meter, "quantity": q.round(), "timestamp": ts}),
            );
        };
        push("api_calls", 400.0 * if late { 0.35 } else { 1.0 } * wiggle);
        push("seats_active", if late { 4.0 } else { 10.0 });
        if late {
            push("tickets_opened", 3.0);
        } else if back % 2 == 0 {
            push("tickets_opened", 1.0);
        }
    }
    out
}

/// A HubSpot webhook batch signed the way HubSpot signs it (v3): method, the public
/// URI, body and timestamp under the app's client secret.
fn signed_webhook(body: &str) -> (String, String) {
    let ts = Utc::now().timestamp_millis().to_string();
    let sig = v3_signature(
        e2e::HUBSPOT_SECRET,
        "POST",
        "https://hooks.example.com/v1/webhooks/hubspot",
        body.as_bytes(),
        &ts,
    );
    (sig, ts)
}

#[tokio::test]
async fn the_runbook_maps_a_portal_sets_hubspot_up_counts_a_webhook_and_a_band_downgrade_reaches_the_inbox_with_its_hubspot_link(
) {
    let t = TestStack::fresh().await;
    let crm = CrmStandIn::start(TOKEN).await;
    // `usage-local tenant create runbook-walk --backfill-days 100` + `key create`.
    let tenant = TenantId::parse(TENANT).unwrap();
    let backfill =
        domain::horizon::Horizon::parse(100, domain::horizon::Retention::DEFAULT).unwrap();
    t.stack
        .ensure_tenant(&tenant, "Runbook walk", backfill)
        .await
        .expect("tenant");
    let key = t
        .stack
        .store
        .create_api_key(&tenant, "runbook")
        .await
        .expect("admin key");
    let mut stack = local::stack::Stack::new(
        &t.aws,
        &t.provisioned,
        domain::pipeline::PipelineConfig::default(),
        Some(local::stack::HubspotSettings {
            secrets: vec![e2e::HUBSPOT_SECRET.to_owned()],
            public_base_url: "https://hooks.example.com".to_owned(),
            legacy: None,
        }),
    )
    .expect("the local stack");
    stack.api = Arc::new(crate::hubspot_setup::api_with_setup(&t, &crm));
    let front = FrontDoor {
        router: local::server::router(Arc::new(stack)),
        key,
    };
    let before = front.metrics().await;

    // Runbook 1: the tenant's private-app token in the write-back tokens secret
    // (`aws secretsmanager put-secret-value --secret-id $ARN --secret-string ...`).
    crate::secrets::rotate(
        &t,
        "HubspotWritebackTokensStore",
        &json!({"tokens": format!("{TENANT}={TOKEN}")}).to_string(),
    )
    .await;

    // Runbook 2: map the portal (`PUT /v1/hubspot/portals/{portal_id}`, admin key).
    let portal_path = format!("/v1/hubspot/portals/{PORTAL}");
    let (s, v) = front.call("PUT", &portal_path, None).await;
    assert_eq!(
        (s, v["portal_id"].as_u64(), v["tenant"].as_str()),
        (201, Some(PORTAL), Some(TENANT)),
        "step 2, map the portal: {v}"
    );

    // Runbook 3: `POST /v1/hubspot/setup` creates the group and properties; again: nothing.
    let (s, v) = front.call("POST", "/v1/hubspot/setup", None).await;
    assert_eq!(
        (s, v["group"].as_str()),
        (200, Some("created")),
        "step 3: {v}"
    );
    assert_eq!(
        v["created"].as_array().map(Vec::len),
        Some(PROPERTIES.len()),
        "{v}"
    );
    {
        let s = crm.lock();
        assert!(s.groups.contains_key("usage_health"), "{:?}", s.groups);
        for p in PROPERTIES {
            assert_eq!(
                s.properties[p.name]["groupName"], "usage_health",
                "{}",
                p.name
            );
        }
    }
    let (s, v) = front.call("POST", "/v1/hubspot/setup", None).await;
    assert_eq!(
        (s, v["created"].as_array().map(Vec::len)),
        (200, Some(0)),
        "run again: nothing created: {v}"
    );

    // The accounts, each naming its HubSpot company and portal (the alert's link).
    let onboarded = (Utc::now().date_naive() - Duration::days(DAYS)).to_string();
    let (s, v) = front
        .call(
            "PUT",
            "/v1/health/config",
            Some(json!({"min_segment_population": 4, "key_meters": ["api_calls"], "min_active_days": 8})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let mut events = Vec::new();
    for (i, account) in std::iter::once(DECLINING).chain(STEADY).enumerate() {
        let body = json!({"name": format!("{account} Inc"), "segment": "mid_market",
            "owner_email": format!("csm-{account}@example.com"), "onboarding_date": onboarded,
            "crm_ids": {"hubspot_company_id": (COMPANY + i as u64).to_string(),
                        "hubspot_portal_id": PORTAL.to_string()}});
        let (s, v) = front
            .call("PUT", &format!("/v1/accounts/{account}"), Some(body))
            .await;
        assert_eq!(s, 201, "{v}");
        events.extend(history(account, account == DECLINING, i as i64));
    }
    // The usage history through `POST /v1/events`: the accepted count moves by it.
    let (s, v) = front
        .call("POST", "/v1/events", Some(Value::Array(events.clone())))
        .await;
    assert_eq!(
        (s, v["accepted"].as_u64()),
        (202, Some(events.len() as u64)),
        "{v}"
    );
    t.drain_all(std::time::Duration::from_secs(60)).await;

    // A signed webhook (v3): a ticket linked to the declining account's company, then
    // created; the usage query counts it for that account.
    let (_, usage_before) = front
        .call(
            "GET",
            &format!("/v1/accounts/{DECLINING}/usage?meter=tickets_opened"),
            None,
        )
        .await;
    let occurred = Utc::now().timestamp_millis() - 5_000;
    let batch = json!([
        {"eventId": 1, "portalId": PORTAL, "occurredAt": occurred, "subscriptionType": "ticket.associationChange",
         "associationType": "TICKET_TO_COMPANY", "fromObjectId": 9, "toObjectId": COMPANY},
        {"eventId": 2, "portalId": PORTAL, "occurredAt": occurred, "subscriptionType": "ticket.creation", "objectId": 9}
    ])
    .to_string();
    let (sig, ts) = signed_webhook(&batch);
    let (s, v, _) = front
        .send(
            "POST",
            "/v1/webhooks/hubspot",
            &[
                ("x-hubspot-signature-v3", &sig),
                ("x-hubspot-request-timestamp", &ts),
            ],
            Some(batch),
        )
        .await;
    assert_eq!((s, v["received"].as_u64()), (200, Some(2)), "webhook: {v}");
    t.drain().await;
    let (s, usage) = front
        .call(
            "GET",
            &format!("/v1/accounts/{DECLINING}/usage?meter=tickets_opened"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{usage}");
    assert_eq!(
        usage["total"]["events"].as_i64().unwrap_or(-1)
            - usage_before["total"]["events"].as_i64().unwrap_or(-1),
        1,
        "the webhook's ticket is counted once: {usage_before} -> {usage}"
    );

    // The inbox: a queue subscribed to the alerts topic with the template's e-mail
    // filter policy, so it receives what the e-mail subscriber receives.
    let template: Value = serde_json::from_str(
        &std::fs::read_to_string(local::provision::template_path()).expect("template"),
    )
    .expect("template JSON");
    let policy =
        template["Resources"]["AlertsEmailSubscription"]["Properties"]["FilterPolicy"].to_string();
    let inbox = t
        .stack
        .subscribe_queue(&e2e::unique("runbook-inbox"), Some(&policy))
        .await
        .expect("subscribe");

    // Score on two days: a baseline 30 days ago, before the decline, then today.
    let baseline_day: NaiveDate = Utc::now().date_naive() - Duration::days(30);
    let (s, v) = front
        .call(
            "POST",
            &format!("/local/jobs/score?as_of={baseline_day}"),
            None,
        )
        .await;
    assert_eq!(
        (s, v["report"]["runs"][0]["accounts"].as_u64()),
        (200, Some(5)),
        "baseline run: {v}"
    );
    t.drain_score().await;
    let (s, h) = front
        .call("GET", &format!("/v1/accounts/{DECLINING}/health"), None)
        .await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["as_of"], baseline_day.to_string(), "{h}");
    let baseline_band = h["band"].as_str().unwrap_or("?").to_owned();
    assert!(
        ["green", "yellow"].contains(&baseline_band.as_str()),
        "not red before the decline: {h}"
    );
    t.drain_alerts().await;
    assert!(
        t.take_all(&inbox).await.is_empty(),
        "a baseline pages no one"
    );

    let (s, v) = front.call("POST", "/local/jobs/score", None).await;
    assert_eq!(s, 200, "today's run: {v}");
    t.drain_score().await;
    let (_, h) = front
        .call("GET", &format!("/v1/accounts/{DECLINING}/health"), None)
        .await;
    assert_eq!(h["band"], "red", "{h}");
    t.drain_alerts().await;
    let inbox = t.take_all(&inbox).await;
    let downgrade = inbox
        .iter()
        .find(|m| m["alert"]["code"] == "band_downgrade")
        .unwrap_or_else(|| panic!("a band downgrade in the inbox: {inbox:?}"));
    let a = &downgrade["alert"];
    assert_eq!(
        (
            a["kind"].as_str(),
            a["severity"].as_str(),
            a["account"].as_str()
        ),
        (Some("risk"), Some("critical"), Some(DECLINING)),
        "{downgrade}"
    );
    assert_eq!(
        a["crm_url"],
        format!("https://app.hubspot.com/contacts/{PORTAL}/company/{COMPANY}"),
        "the HubSpot company link: {downgrade}"
    );
    let subject = downgrade["subject"].as_str().unwrap_or_default();
    assert!(
        subject.contains("northwind Inc") && subject.contains(&format!("{baseline_band} -> red")),
        "{subject}"
    );
    let risk = inbox
        .iter()
        .filter(|m| m["alert"]["kind"] == "risk")
        .count();

    // The metrics moved: events accepted, risk alerts published, score durations.
    let after = front.metrics().await;
    assert_eq!(
        moved(&after, &before, "ingest", "EventsAccepted", "sum"),
        events.len() as f64,
        "{after}"
    );
    assert_eq!(
        moved(
            &after,
            &before,
            "notify",
            "AlertsPublished[Kind=risk]",
            "sum"
        ),
        risk as f64,
        "{after}"
    );
    // Two runs of one measure and one score shard each.
    assert_eq!(
        moved(&after, &before, "score", "ScoreShardDuration", "samples"),
        4.0,
        "{after}"
    );
    assert_eq!(after["score"]["ScoreShardDuration"]["unit"], "Milliseconds");
    assert_eq!(t.denials(), Vec::new());
}
