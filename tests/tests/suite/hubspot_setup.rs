//! `hubspot setup` and HubSpot's rate limits against the CRM stand-in (`e2e::crm`).

use aws::hubspot::HyperPost;
use domain::hubspot::client::HubSpotClient;
use domain::hubspot::setup::{self, PROPERTIES};
use e2e::crm::CrmStandIn;
use std::sync::Arc;
use std::time::Duration;

fn client(stand_in: &CrmStandIn) -> HubSpotClient {
    let mut c = HubSpotClient::new(&stand_in.base, Arc::new(HyperPost::new().unwrap()), 100);
    c.backoff = Duration::from_millis(50);
    c
}

#[tokio::test]
async fn the_first_setup_creates_the_group_and_properties_and_the_second_changes_nothing() {
    let crm = CrmStandIn::start("pat-setup").await;
    let c = client(&crm);
    let first = setup::run(&c, "pat-setup").await.unwrap();
    assert_eq!(first.group, "created");
    assert_eq!(first.created.len(), PROPERTIES.len(), "{first:?}");
    {
        let s = crm.lock();
        assert!(s.groups.contains_key("usage_health"));
        for p in PROPERTIES {
            let stored = &s.properties[p.name];
            assert_eq!(stored["groupName"], "usage_health");
            assert_eq!(stored["type"], p.kind);
        }
        assert_eq!(
            s.properties["usage_health_band"]["options"][2]["value"],
            "red"
        );
    }
    let writes = crm.lock().writes().len();
    let second = setup::run(&c, "pat-setup").await.unwrap();
    assert_eq!(second.group, "unchanged");
    assert!(
        second.created.is_empty() && second.updated.is_empty(),
        "{second:?}"
    );
    assert_eq!(second.unchanged.len(), PROPERTIES.len());
    assert_eq!(
        crm.lock().writes().len(),
        writes,
        "the second run wrote nothing"
    );
    assert_eq!(second.requests, 2, "two reads");
}

#[tokio::test]
async fn setup_repairs_a_property_edited_in_hubspot_and_leaves_one_of_another_type_alone() {
    let crm = CrmStandIn::start("pat-setup").await;
    let c = client(&crm);
    setup::run(&c, "pat-setup").await.unwrap();
    {
        let mut s = crm.lock();
        let band = s.properties.get_mut("usage_health_band").unwrap();
        band["label"] = "Health".into();
        band["options"] = serde_json::json!([{"value": "green", "label": "Green"}]);
        s.properties.get_mut("usage_next_milestone").unwrap()["type"] = "number".into();
    }
    let r = setup::run(&c, "pat-setup").await.unwrap();
    assert_eq!(r.updated, ["usage_health_band"]);
    assert_eq!(r.conflicts.len(), 1);
    assert_eq!(r.conflicts[0].0, "usage_next_milestone");
    let s = crm.lock();
    assert_eq!(
        s.properties["usage_health_band"]["label"],
        "Usage health band"
    );
    assert_eq!(
        s.properties["usage_health_band"]["options"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(s.properties["usage_next_milestone"]["type"], "number");
}

#[tokio::test]
async fn a_refused_token_is_an_error_not_a_partial_setup() {
    let crm = CrmStandIn::start("pat-setup").await;
    let err = setup::run(&client(&crm), "pat-wrong").await.unwrap_err();
    assert_eq!(err.code(), "hubspot_unauthorized");
    assert!(crm.lock().properties.is_empty());
}

#[tokio::test]
async fn the_rate_limit_headers_slow_setup_down_before_the_portal_budget_runs_out() {
    // 5 requests per second; setup sends 2 reads and 7 creates.
    let crm = CrmStandIn::start("pat-setup")
        .await
        .with_budget(5, Duration::from_millis(1000));
    let r = setup::run(&client(&crm), "pat-setup").await.unwrap();
    let s = crm.lock();
    assert_eq!(s.answered(429), 0, "paced, never refused: {r:?}");
    assert_eq!((r.requests, r.throttled), (9, 0));
    assert_eq!(s.properties.len(), PROPERTIES.len());
    let span = s.requests[8].at - s.requests[0].at;
    assert!(span >= Duration::from_millis(1000), "spread over {span:?}");
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_and_the_call_retried() {
    let crm = CrmStandIn::start("pat-setup")
        .await
        .with_budget(3, Duration::from_millis(1500));
    crm.lock().retry_after = 1;
    // Another client of the same portal spends the budget first.
    let other = client(&crm);
    for _ in 0..3 {
        other
            .call(
                domain::hubspot::client::Method::Get,
                "/crm/v3/properties/companies",
                "pat-setup",
                None,
            )
            .await;
    }
    let r = setup::run(&client(&crm), "pat-setup").await.unwrap();
    assert!(r.throttled >= 1, "{r:?}");
    let s = crm.lock();
    assert_eq!(s.properties.len(), PROPERTIES.len());
    let refused = s.requests.iter().position(|q| q.status == 429).unwrap();
    let gap = s.requests[refused + 1].at - s.requests[refused].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 honoured ({gap:?})"
    );
}

/// The api function as deployed, under its own role, with HubSpot at the stand-in.
pub(crate) fn api_with_setup(t: &e2e::TestStack, crm: &CrmStandIn) -> api::Api {
    let cfg = t
        .provisioned
        .function_config(&t.aws, "ApiFunction")
        .unwrap();
    let store = Arc::new(aws::dynamo::DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&cfg),
        t.provisioned.reference("UsageTable").unwrap(),
    ));
    let tokens = domain::secrets::CachedSecret::new(
        Arc::new(aws::secrets::SecretsManager::new(
            aws_sdk_secretsmanager::Client::new(&cfg),
        )),
        domain::secrets::SecretId::parse(
            t.provisioned
                .reference("HubspotWritebackTokensStore")
                .unwrap(),
        )
        .unwrap(),
    );
    let quotas = Arc::new(domain::quota::Quotas::from_env().unwrap());
    api::wired(store, &aws_sdk_sqs::Client::new(&cfg), quotas, None, None).with_hubspot_setup(Some(
        Arc::new(api::hubspot_setup::HubSpotSetup {
            client: client(crm),
            tokens: domain::health::writeback::Tokens::Managed(Arc::new(tokens)),
        }),
    ))
}

#[tokio::test]
async fn post_hubspot_setup_reads_the_tenant_token_with_the_api_role_and_is_idempotent() {
    let t = e2e::TestStack::fresh().await;
    let crm = CrmStandIn::start("pat-route").await;
    let api = api_with_setup(&t, &crm);
    let post = || t.request("POST", "/v1/hubspot/setup", Some(&t.key), None);
    // The template's secret holds no token for the tenant yet.
    let (s, v) = e2e::decode(api.handle(post()).await);
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("no_hubspot_token")),
        "{v}"
    );
    aws_sdk_secretsmanager::Client::new(&t.aws)
        .put_secret_value()
        .secret_id(
            t.provisioned
                .reference("HubspotWritebackTokensStore")
                .unwrap(),
        )
        .secret_string(serde_json::json!({"tokens": format!("{}=pat-route", t.tenant)}).to_string())
        .send()
        .await
        .unwrap();
    // A fresh api (a new container) reads the operator's value.
    let api = api_with_setup(&t, &crm);
    let (s, v) = e2e::decode(api.handle(post()).await);
    assert_eq!((s, v["group"].as_str()), (200, Some("created")), "{v}");
    assert_eq!(
        v["created"].as_array().map(Vec::len),
        Some(PROPERTIES.len())
    );
    let (s, v) = e2e::decode(api.handle(post()).await);
    assert_eq!(
        (s, v["created"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
    assert_eq!(
        v["unchanged"].as_array().map(Vec::len),
        Some(PROPERTIES.len())
    );
    // A read-only key may not run it.
    let (s, _) = t.call("GET", "/v1/hubspot/setup", None).await;
    assert_eq!(s, 405);
    assert_eq!(t.denials(), Vec::new());
}

#[tokio::test]
async fn after_setup_the_write_back_lands_on_the_properties_and_is_paced_by_the_portal_budget() {
    use domain::health::writeback::{CrmSink, CrmUpdate, HubSpotWriteback};
    let crm = CrmStandIn::start("pat-wb").await;
    let tenant = domain::ids::TenantId::parse("acme").unwrap();
    let updates: Vec<CrmUpdate> = (0..450)
        .map(|i| CrmUpdate {
            company_id: (9000 + i).to_string(),
            score: 42.0,
            band: domain::health::model::Band::Yellow,
            reasons: "usage_down_30d: api_calls -40 %".into(),
            as_of: chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(),
            portal: None,
            play: None,
        })
        .collect();
    let wb = HubSpotWriteback::new(
        &crm.base,
        std::collections::HashMap::from([(tenant.clone(), "pat-wb".to_owned())]),
        Arc::new(HyperPost::new().unwrap()),
        100,
    )
    .with_backoff(Duration::from_millis(50));
    // Before setup HubSpot refuses properties it does not know.
    let r = wb.push(&tenant, &updates[..1]).await;
    assert_eq!((r.updated, r.failed), (0, 1), "{r:?}");
    setup::run(&client(&crm), "pat-wb").await.unwrap();
    // 5 batches against a budget of 3 requests per 600 ms: paced, never refused.
    let crm = crm.with_budget(3, Duration::from_millis(600));
    let r = wb.push(&tenant, &updates).await;
    assert_eq!((r.updated, r.failed, r.throttled), (450, 0, 0), "{r:?}");
    let s = crm.lock();
    assert_eq!(s.companies.len(), 450);
    assert_eq!(s.companies["9000"]["usage_health_band"], "yellow");
    assert_eq!(s.answered(429), 0);
}
