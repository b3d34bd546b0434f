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
    let tenant = domain::ids::TenantId::parse("acme").unwrap();
    let wb = HubSpotWriteback::new(
        &crm.base,
        std::collections::HashMap::from([(tenant.clone(), "pat-plays".to_owned())]),
        Arc::new(HyperPost::new().unwrap()),
        100,
    )
    .with_backoff(Duration::from_millis(50));
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
