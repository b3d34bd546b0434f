//! Adoption by tier (`GET /v1/segments/{segment}/adoption`) against the emulator:
//! profiles through the API, milestone dates on stored health records (as the score
//! run writes them), and the KPI's meters through ingest and the rollup.

use chrono::{Duration, Utc};
use domain::health::record::HealthRecord;
use domain::health::store::{HealthStore, Save};
use domain::ids::TenantId;
use e2e::TestStack;
use serde_json::{json, Value};

#[tokio::test]
async fn adoption_by_tier_compares_onboarding_cohorts_lists_the_lagging_and_faces_the_kpi_with_its_benchmark(
) {
    let ts = TestStack::fresh().await;
    let t = TenantId::parse(&e2e::unique("adopt")).unwrap();
    ts.stack
        .ensure_tenant(
            &t,
            "adoption",
            domain::horizon::Horizon::parse(100, domain::horizon::Retention::DEFAULT).unwrap(),
        )
        .await
        .expect("tenant");
    let key = ts
        .stack
        .store
        .create_api_key(&t, "test")
        .await
        .expect("key");
    let (s, v) = ts
        .call_as(
            &key,
            "PUT",
            "/v1/health/config",
            Some(r#"{"segments": {"enterprise": {"milestones": [{"name": "first_calls", "meter": "api_calls", "quantity": 1, "due_days": 10}]}}}"#),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let today = Utc::now().date_naive();
    let early = today - Duration::days(100);
    let late = today - Duration::days(40);
    // (account, onboarded, days to the milestone)
    let accounts = [
        ("e1", early, Some(4)),
        ("e2", early, Some(12)),
        ("e3", late, Some(2)),
        ("e4", late, None),
    ];
    for (a, on, reached) in accounts {
        let body = json!({"name": format!("{a} Corp"), "segment": "enterprise",
                          "owner_email": "csm@example.com", "onboarding_date": on.to_string()});
        let (s, v) = ts
            .call_as(
                &key,
                "PUT",
                &format!("/v1/accounts/{a}"),
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let record: HealthRecord = serde_json::from_value(json!({
            "account": a, "segment": "enterprise", "as_of": today, "state": "insufficient_data",
            "milestones_reached": reached.map(|d: i64| json!({"first_calls": on + Duration::days(d)})).unwrap_or(json!({})),
            "computed_at": Utc::now(),
        }))
        .unwrap();
        ts.stack
            .store
            .save_records(
                &t,
                &[Save {
                    record: &record,
                    previous_slot: None,
                }],
            )
            .await
            .expect("record");
    }
    let yesterday = format!("{}T12:00:00Z", today - Duration::days(1));
    let events = json!([
        {"id": "t1", "account": "e1", "meter": "tickets_opened", "quantity": 30, "timestamp": yesterday},
        {"id": "t2", "account": "e3", "meter": "tickets_opened", "quantity": 10, "timestamp": yesterday},
        {"id": "x1", "account": "e3", "meter": "tickets_escalated", "quantity": 6, "timestamp": yesterday},
    ]);
    let (s, v) = ts
        .call_as(&key, "POST", "/v1/events", Some(&events.to_string()))
        .await;
    assert_eq!(s, 202, "{v}");
    ts.drain_all(std::time::Duration::from_secs(60)).await;

    let (s, v) = ts
        .call_as(
            &key,
            "GET",
            "/v1/segments/enterprise/adoption?cohort=month",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["accounts"], 4, "{v}");
    let cohorts = v["cohorts"].as_array().unwrap();
    let month = |d: chrono::NaiveDate| d.format("%Y-%m").to_string();
    assert_eq!(cohorts.len(), 2, "{v}");
    assert_eq!(cohorts[0]["cohort"], month(early));
    assert_eq!(cohorts[1]["cohort"], month(late));
    let first = &cohorts[0]["milestones"][0];
    assert_eq!(
        (
            &first["reached"],
            &first["on_time"],
            &first["median_days"],
            &first["p75_days"]
        ),
        (&json!(2), &json!(1), &json!(4), &json!(12)),
        "{first}"
    );
    let second = &cohorts[1]["milestones"][0];
    assert_eq!(
        (
            &second["reached"],
            &second["overdue"],
            &second["median_days"]
        ),
        (&json!(1), &json!(1), &json!(2))
    );
    assert_eq!(v["lagging_total"], 1);
    assert_eq!(v["lagging"][0]["account"], "e4");
    assert_eq!(v["lagging"][0]["days_behind"], 30, "40 days old, due in 10");
    let kpi = &v["kpi"];
    assert_eq!(kpi["kind"], "escalation_rate");
    assert_eq!(kpi["value"], 15.0, "6 escalated of 40 tickets: {kpi}");
    assert_eq!(
        (&kpi["benchmark"], &kpi["meets_benchmark"]),
        (&json!(5.0), &json!(false))
    );

    for (path, status, code) in [
        (
            "/v1/segments/enterprise/adoption?cohort=week",
            400,
            "invalid_parameter",
        ),
        (
            "/v1/segments/enterprise/adoption?tier=x",
            400,
            "unknown_parameter",
        ),
        ("/v1/segments/unassigned/adoption", 404, "not_found"),
    ] {
        let (s, v) = ts.call_as(&key, "GET", path, None).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {v}"
        );
    }
    // Another tenant sees none of these accounts.
    let (s, v) = ts
        .call("GET", "/v1/segments/enterprise/adoption", None)
        .await;
    assert_eq!((s, &v["accounts"]), (200, &Value::from(0)), "{v}");
}
