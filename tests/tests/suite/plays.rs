//! Plays by tier (`domain::health::plays`): the admin route, and what a run's plays
//! send to the CRM stand-in.

use aws::hubspot::HyperPost;
use domain::health::model::{Band, Reason};
use domain::health::plays::Plays;
use domain::health::record::{AccountInfo, HealthRecord, HealthState, RecentScore};
use domain::health::writeback::{CrmSink, HubSpotWriteback};
use domain::ids::{AccountId, Segment};
use e2e::crm::CrmStandIn;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn plays_are_tenant_configuration_validated_by_the_admin_route() {
    let t = e2e::TestStack::fresh().await;
    let (s, v) = t.call("GET", "/v1/hubspot/plays", None).await;
    assert_eq!((s, v["source"].as_str()), (200, Some("defaults")), "{v}");
    assert_eq!(v["plays"]["tiers"], serde_json::json!({}));
    let body = r#"{"tiers": {"enterprise": {"task": true, "grace_days": 3, "band_changes": "downgrades"}}}"#;
    let (s, v) = t.call("PUT", "/v1/hubspot/plays", Some(body)).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = t.call("GET", "/v1/hubspot/plays", None).await;
    assert_eq!(v["source"], "tenant");
    assert_eq!(v["plays"]["tiers"]["enterprise"]["task_due_days"], 3);
    assert_eq!(
        v["plays"]["tiers"]["enterprise"]["band_changes"],
        "downgrades"
    );
    let (s, v) = t
        .call(
            "PUT",
            "/v1/hubspot/plays",
            Some(r#"{"tiers": {"smb": {"task_due_days": 0}}}"#),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_plays")),
        "{v}"
    );
    let (_, v) = t.call("GET", "/v1/hubspot/plays", None).await;
    assert!(
        v["plays"]["tiers"]["smb"].is_null(),
        "the refused plays were not stored"
    );
    assert_eq!(t.denials(), Vec::new());
}

/// Tenant acme's write-back to the stand-in with `token`.
fn writeback(crm: &CrmStandIn, token: &str) -> (domain::ids::TenantId, HubSpotWriteback) {
    let tenant = domain::ids::TenantId::parse("acme").unwrap();
    let wb = HubSpotWriteback::new(
        &crm.base,
        std::collections::HashMap::from([(tenant.clone(), token.to_owned())]),
        Arc::new(HyperPost::new().unwrap()),
        100,
    )
    .with_backoff(Duration::from_millis(50));
    (tenant, wb)
}

/// Yesterday yellow, today `band`; onboarded on 1 November, nothing reached.
fn record(account: &str, segment: Segment, company: &str, band: Band) -> HealthRecord {
    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 11, 17).unwrap();
    HealthRecord {
        account: AccountId::parse(account).unwrap(),
        segment,
        as_of,
        state: HealthState::Scored,
        score: Some(38.0),
        band: Some(band),
        components: Default::default(),
        baseline: None,
        reasons: vec![Reason {
            code: "usage_down_30d".into(),
            impact: -12.0,
            detail: "api_calls -40 % vs prior 30 d".into(),
            numbers: Default::default(),
        }],
        insufficient_reason: None,
        expansion_signal: false,
        milestones_reached: Default::default(),
        recent: vec![
            RecentScore {
                as_of: as_of.pred_opt().unwrap(),
                score: 50.0,
                band: Band::Yellow,
            },
            RecentScore {
                as_of,
                score: 38.0,
                band,
            },
        ],
        alert_state: Default::default(),
        info: AccountInfo {
            name: Some(format!("{account} Inc")),
            onboarding_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 1),
            hubspot_company_id: Some(company.into()),
            hubspot_owner_id: Some("901".into()),
            ..Default::default()
        },
        computed_at: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn each_tier_runs_its_own_play_and_hubspot_gets_the_properties_and_the_owner_task() {
    let crm = CrmStandIn::start("pat-plays").await;
    let client = domain::hubspot::client::HubSpotClient::new(
        &crm.base,
        Arc::new(HyperPost::new().unwrap()),
        100,
    );
    domain::hubspot::setup::run(&client, "pat-plays")
        .await
        .unwrap();
    // Enterprise: properties and a task; SMB: properties only; mid-market: no play.
    let plays = Plays::from_body(
        br#"{"tiers": {"enterprise": {"task": true}, "smb": {"band_changes": "downgrades"}}}"#,
    )
    .unwrap();
    // With write-back off, only accounts a play sets off are written.
    let cfg = domain::health::config::HealthConfig::default();
    assert!(!cfg.crm_writeback);
    let records = [
        record("ent-1", Segment::Enterprise, "101", Band::Red),
        record("smb-1", Segment::Smb, "201", Band::Green),
        record("mid-1", Segment::MidMarket, "301", Band::Red),
    ];
    let (updates, tasks) = domain::health::run::crm_work(&cfg, &plays, records.iter());
    assert_eq!(updates.len(), 2, "{updates:?}");
    let (tenant, wb) = writeback(&crm, "pat-plays");
    let r = wb.push(&tenant, &updates).await;
    assert_eq!((r.updated, r.failed), (2, 0), "{r:?}");
    let r = wb.create_tasks(&tenant, &tasks).await;
    assert_eq!((r.updated, r.failed), (1, 0), "{r:?}");
    let s = crm.lock();
    // The enterprise schedule's first milestone is due 22 days after onboarding
    // (built-in: half of 45); on the 17th nothing is late yet, but the band fell.
    let ent = &s.companies["101"];
    assert_eq!(ent["usage_health_band"], "red");
    assert_eq!(ent["usage_milestone_lag_days"], "0");
    assert!(ent["usage_next_milestone"]
        .as_str()
        .is_some_and(|m| m.starts_with("first_api_calls (due ")));
    // SMB's first milestone (built-in: due day 7) is 9 days late.
    let smb = &s.companies["201"];
    assert_eq!(smb["usage_milestone_lag_days"], "9");
    assert!(!s.companies.contains_key("301"), "mid-market runs no play");
    assert_eq!(s.tasks.len(), 1);
    let task = &s.tasks[0];
    assert_eq!(task["properties"]["hubspot_owner_id"], "901");
    assert_eq!(task["associations"][0]["to"]["id"], "101");
    let body = task["properties"]["hs_task_body"].as_str().unwrap();
    assert!(
        body.contains("health band yellow -> red") && body.contains("usage_down_30d"),
        "{body}"
    );
}

#[tokio::test]
async fn a_task_for_an_owner_known_only_by_e_mail_is_assigned_to_the_hubspot_owner_of_that_address()
{
    let crm = CrmStandIn::start("pat-owners").await;
    crm.lock()
        .owners
        .insert("ana+cs@example.com".into(), "3301".into());
    let plays = Plays::from_body(br#"{"tiers": {"enterprise": {"task": true}}}"#).unwrap();
    let cfg = domain::health::config::HealthConfig::default();
    let by_email = |account: &str, company: &str, email: &str| {
        let mut r = record(account, Segment::Enterprise, company, Band::Red);
        r.info.hubspot_owner_id = None;
        r.info.owner = Some(email.to_owned());
        r
    };
    let records = [
        by_email("ent-1", "101", "ana+cs@example.com"),
        by_email("ent-2", "102", "ana+cs@example.com"),
        by_email("ent-3", "103", "nobody@example.com"),
        record("ent-4", Segment::Enterprise, "104", Band::Red),
    ];
    let (_, tasks) = domain::health::run::crm_work(&cfg, &plays, records.iter());
    assert_eq!(tasks.len(), 4, "{tasks:?}");
    let (tenant, wb) = writeback(&crm, "pat-owners");
    let r = wb.create_tasks(&tenant, &tasks).await;
    assert_eq!((r.updated, r.failed), (4, 0), "{r:?}");
    let s = crm.lock();
    let owner_of = |company: &str| {
        s.tasks
            .iter()
            .find(|t| t["associations"][0]["to"]["id"] == company)
            .map(|t| t["properties"]["hubspot_owner_id"].clone())
            .unwrap_or_else(|| panic!("a task for {company}"))
    };
    assert_eq!(owner_of("101"), "3301");
    assert_eq!(owner_of("102"), "3301");
    assert!(
        owner_of("103").is_null(),
        "no such owner: the task is created unassigned"
    );
    assert_eq!(
        owner_of("104"),
        "901",
        "a profile's owner id needs no look-up"
    );
    let lookups: Vec<&str> = s
        .requests
        .iter()
        .filter(|q| q.path.starts_with("/crm/v3/owners/"))
        .map(|q| q.path.as_str())
        .collect();
    assert_eq!(
        lookups,
        [
            "/crm/v3/owners/?email=ana%2Bcs%40example.com&limit=1",
            "/crm/v3/owners/?email=nobody%40example.com&limit=1"
        ],
        "one look-up per address, the e-mail encoded"
    );
}
