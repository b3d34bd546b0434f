//! The audit job against the emulator: KPIs computed exactly on constructed traffic,
//! drift found when a rollup is corrupted on purpose, a silent and a flooded account
//! explained, and the reports API.

use chrono::{DateTime, Duration, DurationRound, Utc};
use e2e::TestStack;
use serde_json::{json, Value};

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn rate(v: &Value) -> (u64, u64) {
    (
        v["numerator"].as_u64().unwrap_or(u64::MAX),
        v["denominator"].as_u64().unwrap_or(u64::MAX),
    )
}

#[tokio::test]
async fn the_audit_reports_constructed_duplicate_unassociated_and_schema_rates_exactly() {
    let t = TestStack::fresh().await;
    t.put_account("known", "smb").await;
    let now = Utc::now();
    let at = ts(now - Duration::minutes(5));
    let ev = |id: &str, account: &str| json!({"id": id, "account": account, "meter": "api_calls", "timestamp": at});
    // 10 distinct events: 6 of a known account, 4 of accounts without a profile.
    let mut first: Vec<Value> = (0..6).map(|i| ev(&format!("k{i}"), "known")).collect();
    first.extend((0..4).map(|i| ev(&format!("u{i}"), &format!("stranger-{i}"))));
    // One defaulted timestamp (counted), one unit mismatch and one unknown meter (refused).
    first.push(json!({"id": "nots", "account": "known", "meter": "api_calls"}));
    first.push(json!({"id": "bad-unit", "account": "known", "meter": "api_calls", "unit": "GB"}));
    first.push(json!({"id": "ghost", "account": "known", "meter": "ghost_meter"}));
    let (s, v) = t.post_events(&Value::Array(first).to_string()).await;
    assert_eq!((s, v["accepted"].as_u64()), (202, Some(11)), "{v}");
    // Retries: 2 events sent again in a later request, and one id twice in a request.
    let retry = json!([
        ev("k0", "known"),
        ev("u0", "stranger-0"),
        ev("k9", "known"),
        ev("k9", "known")
    ]);
    let (_, v) = t.post_events(&retry.to_string()).await;
    assert_eq!(v["accepted"], 3, "{v}");
    // A correction.
    let fix = json!([{"id": "fix", "account": "known", "meter": "api_calls", "quantity": -1, "correction_reason": "test", "timestamp": at}]);
    t.post_events(&fix.to_string()).await;
    t.drain().await;

    let report = t
        .stack
        .audit
        .run_tenant(&t.tenant, Utc::now(), None)
        .await
        .unwrap();
    let k = serde_json::to_value(&report.kpis).unwrap();
    // counted: 10 + nots + k9 + fix = 13; duplicates: k0, u0 (ledger) + k9 (in request) = 3.
    assert_eq!(k["events_counted"], 13, "{k}");
    assert_eq!(rate(&k["duplicate_rate"]), (3, 16));
    // Unassociated: the 4 strangers' events of 13 counted.
    assert_eq!(rate(&k["unassociated_rate"]), (4, 13));
    // Received: 13 + 4 + 1 = 18 events; 1 schema violation; 1 unknown meter.
    assert_eq!(k["events_received"], 18, "{k}");
    assert_eq!(rate(&k["schema_violation_rate"]), (1, 18));
    assert_eq!(k["unknown_meter_events"], 1);
    assert_eq!(rate(&k["timestamp_defaulted_rate"]), (1, 13));
    assert_eq!(rate(&k["correction_rate"]), (1, 13));
    assert_eq!(k["correction_quantity"], "1");
    let api = report
        .definitions
        .iter()
        .find(|d| d.meter.as_str() == "api_calls")
        .unwrap();
    assert_eq!(api.kpis.unassociated_rate.numerator, 4);
    assert!(
        report.summary.contains("duplicates 18.8% (3/16)"),
        "{}",
        report.summary
    );
    assert!(
        report.summary.contains("unassociated 30.8% (4/13)"),
        "{}",
        report.summary
    );

    // Redelivering a counted chunk changes no counter.
    let again = t
        .stack
        .audit
        .run_tenant(&t.tenant, Utc::now(), None)
        .await
        .unwrap();
    assert_eq!(again.kpis, report.kpis);
}

/// An account name the default drift sample (1 in 32) includes.
fn sampled_account(prefix: &str) -> String {
    (0..10_000)
        .map(|i| format!("{prefix}-{i}"))
        .find(|a| {
            domain::audit::store::sampled(
                &domain::ids::AccountId::parse(a).unwrap(),
                aws::dynamo::DEFAULT_AUDIT_SAMPLE,
            )
        })
        .unwrap()
}

#[tokio::test]
async fn a_rollup_corrupted_on_purpose_is_reported_as_drift_against_the_ledger() {
    let t = TestStack::fresh().await;
    let account = sampled_account("drift");
    let at = ts(Utc::now() - Duration::minutes(1));
    let body = json!([
        {"id": "a1", "account": account, "meter": "api_calls", "quantity": 2, "timestamp": at},
        {"id": "a2", "account": account, "meter": "api_calls", "quantity": 3, "timestamp": at},
    ]);
    t.post_events(&body.to_string()).await;
    t.drain().await;
    let clean = t
        .stack
        .audit
        .run_tenant(&t.tenant, Utc::now(), None)
        .await
        .unwrap();
    assert!(clean.drift_windows_checked >= 1, "{clean:?}");
    assert!(clean.drift.is_empty(), "{:?}", clean.drift);

    // Corrupt the day total of the account's rollup behind the pipeline's back.
    let day = Utc::now().date_naive();
    let meter = domain::ids::MeterName::parse("api_calls").unwrap();
    let pk = domain::keys::usage_pk(
        &t.tenant,
        &domain::keys::Scope::Account(domain::ids::AccountId::parse(&account).unwrap()),
    );
    let sk = domain::keys::usage_sk(
        day,
        &meter,
        domain::ids::Stage::Delivered,
        &domain::ids::ServiceLine::default_line(),
    );
    aws_sdk_dynamodb::Client::new(&t.aws)
        .update_item()
        .table_name(t.provisioned.reference("UsageTable").unwrap())
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(pk))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(sk))
        .update_expression("ADD q :q")
        .expression_attribute_values(":q", aws_sdk_dynamodb::types::AttributeValue::N("7".into()))
        .send()
        .await
        .unwrap();
    let dirty = t
        .stack
        .audit
        .run_tenant(&t.tenant, Utc::now(), None)
        .await
        .unwrap();
    assert_eq!(dirty.drift.len(), 1, "{:?}", dirty.drift);
    let d = &dirty.drift[0];
    assert_eq!(
        (d.ledger_quantity.to_string(), d.rollup_quantity.to_string()),
        ("5".to_owned(), "12".to_owned())
    );
    let f = dirty
        .findings
        .iter()
        .find(|f| f.code == "rollup_drift")
        .unwrap();
    assert!(
        f.explanation
            .contains("holds 12 in 2 events but its ledger sample sums to 5 in 2 events"),
        "{}",
        f.explanation
    );
    assert!(t
        .raised_alerts()
        .await
        .iter()
        .any(|a| a["code"] == "rollup_drift"));
}

#[tokio::test]
async fn a_silent_account_and_a_flooded_one_are_found_and_explained_and_listed_in_the_reports() {
    let t = TestStack::fresh().await;
    let (s, v) = t
        .call(
            "PUT",
            "/v1/definitions/logins",
            Some(
                &json!({"unit": "login", "value_type": "integer", "criticality": "critical",
                          "expected_cadence_hours": 2, "owner": "cs@example.com"})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let now = Utc::now();
    let hour = now.duration_trunc(Duration::hours(1)).unwrap();
    // Four days of 4 logins an hour for two accounts; "quiet" stops 3 hours before the
    // current hour, "busy" carries on and floods the current hour.
    let mut events = Vec::new();
    for h in 1..=96 {
        let start = hour - Duration::hours(h);
        for account in ["quiet", "busy"] {
            if account == "quiet" && h <= 3 {
                continue;
            }
            for i in 0..4 {
                let at = start + Duration::minutes(i * 15);
                events.push(json!({"id": format!("{account}-{h}-{i}"), "account": account, "meter": "logins", "timestamp": ts(at)}));
            }
        }
    }
    for i in 0..80 {
        let at = hour + Duration::seconds(i64::from(i) % ((now - hour).num_seconds().max(1)));
        events.push(json!({"id": format!("flood-{i}"), "account": "busy", "meter": "logins", "timestamp": ts(at)}));
    }
    for batch in events.chunks(1000) {
        let (s, v) = t
            .post_events(&Value::Array(batch.to_vec()).to_string())
            .await;
        assert_eq!(
            (s, v["rejected"].as_array().map(Vec::len)),
            (202, Some(0)),
            "{v}"
        );
    }
    t.drain().await;

    let report = t
        .stack
        .audit
        .run_tenant(&t.tenant, now, None)
        .await
        .unwrap();
    let find = |code: &str, account: &str| {
        report
            .findings
            .iter()
            .find(|f| f.code == code && f.account.as_ref().map(|a| a.as_str()) == Some(account))
            .unwrap_or_else(|| panic!("no {code} for {account}: {:#?}", report.findings))
    };
    let silence = find("silence", "quiet");
    assert_eq!(silence.since, Some(hour - Duration::hours(3)));
    assert_eq!(silence.severity, domain::alert::Severity::Critical);
    assert_eq!(silence.owner.as_deref(), Some("cs@example.com"));
    assert!(
        silence.explanation.contains("no events since"),
        "{}",
        silence.explanation
    );
    assert!(
        silence.explanation.contains("expected about 12"),
        "{}",
        silence.explanation
    );
    let spike = find("spike", "busy");
    assert_eq!(spike.since, Some(hour));
    assert!(
        spike.explanation.contains("80 events in 1 hour(s)"),
        "{}",
        spike.explanation
    );
    assert!(report
        .findings
        .iter()
        .all(|f| f.account.as_ref().map(|a| a.as_str()) != Some("busy") || f.code == "spike"));
    // One of the two active accounts is past the 2-hour cadence.
    assert_eq!(
        (
            report.critical_usage_gap_rate.numerator,
            report.critical_usage_gap_rate.denominator
        ),
        (1, 2)
    );
    assert!(
        report
            .summary
            .starts_with(&format!("{} finding(s)", report.findings_total)),
        "{}",
        report.summary
    );

    let alerts = t.raised_alerts().await;
    let silence_alert = alerts
        .iter()
        .find(|a| a["code"] == "silence" && a["account"] == "quiet")
        .expect("silence alert");
    assert_eq!(silence_alert["severity"], "critical");
    assert!(silence_alert["detail"]
        .as_str()
        .unwrap()
        .contains("no events since"));

    let (s, latest) = t.call("GET", "/v1/audits/latest", None).await;
    assert_eq!(s, 200, "{latest}");
    assert_eq!(
        latest["findings_total"].as_u64(),
        Some(report.findings_total as u64)
    );
    let later = now + Duration::minutes(1);
    t.stack
        .audit
        .run_tenant(&t.tenant, later, None)
        .await
        .unwrap();
    let from = (now - Duration::minutes(1)).format("%Y-%m-%dT%H:%M:%SZ");
    let to = (later + Duration::minutes(1)).format("%Y-%m-%dT%H:%M:%SZ");
    let (s, runs) = t
        .call("GET", &format!("/v1/audits?from={from}&to={to}"), None)
        .await;
    assert_eq!(s, 200, "{runs}");
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(2), "{runs}");
    assert_eq!(runs["trend"]["findings"].as_array().map(Vec::len), Some(2));
    assert_eq!(runs["trend"]["critical_usage_gap_rate"][0]["value"], 0.5);
    let (s, v) = t.call("GET", "/v1/audits?from=tomorrow", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_parameter"))
    );
}

#[tokio::test]
async fn tenants_created_before_the_registry_are_enrolled_by_the_one_off_migration() {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    use domain::audit::store::AuditReader;
    let t = TestStack::fresh().await;
    let store = &t.stack.store;
    // A tenant profile written the old way: no registry entry.
    let legacy = e2e::unique("legacy");
    store
        .client()
        .put_item()
        .table_name(store.table())
        .item("pk", A::S(format!("TENANT#{legacy}")))
        .item("sk", A::S("#PROFILE".into()))
        .item("tenant", A::S(legacy.clone()))
        .item("name", A::S("Legacy Ltd".into()))
        .item("backfill_days", A::N("35".into()))
        .item("created_at", A::S("2025-01-01T00:00:00Z".into()))
        .send()
        .await
        .unwrap();
    let listed = |v: Vec<domain::ids::TenantId>| v.iter().any(|x| x.as_str() == legacy);
    assert!(!listed(store.tenants().await.unwrap()));
    let enrolled = store.register_all_tenants().await.unwrap();
    assert!(listed(enrolled.clone()));
    assert!(enrolled.iter().any(|x| x == &t.tenant));
    assert!(listed(store.tenants().await.unwrap()));
    // Repeating changes nothing.
    assert_eq!(store.register_all_tenants().await.unwrap(), enrolled);
}

#[tokio::test]
async fn critical_series_count_each_event_once_even_when_a_chunk_is_processed_again() {
    use domain::audit::store::AuditReader;
    use domain::ports::Directory;
    use local::import::{digest, import_policy, jsonl_records, Importer};
    let t = TestStack::fresh().await;
    let (s, v) = t
        .call(
            "PUT",
            "/v1/definitions/logins",
            Some(r#"{"unit":"login","criticality":"critical"}"#),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let day = Utc::now().date_naive() - Duration::days(2);
    let at = |h: u32, m: u32| ts(day.and_hms_opt(h, m, 0).unwrap().and_utc());
    let mut file = String::new();
    for (i, (meter, h, m, q)) in [
        ("logins", 9, 0, 1),
        ("logins", 9, 30, 1),
        ("logins", 14, 0, 1),
        ("logins", 14, 5, -1),
        ("api_calls", 9, 0, 7),
    ]
    .iter()
    .enumerate()
    {
        let fix = if *q < 0 {
            r#","correction_reason":"double login""#
        } else {
            ""
        };
        file.push_str(&format!(
            "{{\"id\":\"c{i}\",\"account\":\"acme\",\"meter\":\"{meter}\",\"quantity\":{q},\"timestamp\":\"{}\"{fix}}}\n",
            at(*h, *m)
        ));
    }
    let policy = import_policy(
        t.stack
            .store
            .tenant_policy(&t.tenant)
            .await
            .unwrap()
            .unwrap(),
        domain::horizon::Horizon::widest(domain::horizon::Retention::DEFAULT),
    );
    let importer = Importer {
        ledger: t.stack.store.as_ref(),
        quality: Some(t.stack.store.as_ref()),
        quarantine: Some(t.stack.store.as_ref()),
        journal: Some(t.stack.store.as_ref()),
        cfg: domain::pipeline::PipelineConfig::default(),
        batch: 1000,
    };
    let records = jsonl_records(&file);
    let noop = |_: usize| {};
    for _ in 0..2 {
        importer
            .run(
                &t.tenant,
                &policy,
                &records,
                &digest(file.as_bytes()),
                false,
                &noop,
            )
            .await
            .unwrap();
    }
    let acme = domain::ids::AccountId::parse("acme").unwrap();
    let rows = t
        .stack
        .store
        .critical_series(&t.tenant, &acme, day, day)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "only the critical meter: {rows:?}");
    let r = &rows[0];
    assert_eq!((r.meter.as_str(), r.day), ("logins", day));
    assert_eq!(
        (r.data.hours[9], r.data.hours[14], r.data.events()),
        (2, 2, 4)
    );
    assert_eq!(
        r.data.quantity.get(&domain::ids::Stage::Delivered),
        Some(&rust_decimal::Decimal::from(2))
    );
}
