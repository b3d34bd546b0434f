//! Alert routing end to end against the emulator: digests per segment, cooldowns per
//! account, and the tenant's alert policy through the API.

use chrono::{Duration as Days, Utc};
use e2e::{now_rfc3339, TestStack};
use serde_json::{json, Value};

async fn setup(t: &TestStack, account: &str, segment: &str) {
    t.put_account(account, segment).await;
    let body = json!({"account": account, "meter": "api_calls", "limit": 100, "period": "calendar_month",
                      "time_zone": "UTC", "thresholds": [50, 80, 100]});
    let (status, v) = t
        .put_entitlement(&format!("{account}-ent"), &body.to_string())
        .await;
    assert_eq!(status, 201, "{v}");
}

async fn send(t: &TestStack, id: &str, account: &str, qty: i64) {
    let body = json!([{"id": id, "account": account, "meter": "api_calls", "quantity": qty, "timestamp": now_rfc3339()}]);
    let (s, v) = t.post_events(&body.to_string()).await;
    assert_eq!(s, 202, "{v}");
    t.drain().await;
    t.drain_alerts().await;
}

#[tokio::test]
async fn low_severity_alerts_wait_for_the_segments_digest_which_is_sent_once() {
    let t = TestStack::fresh().await;
    setup(&t, "acme", "mid_market").await;
    let inbox = t
        .stack
        .subscribe_queue(&e2e::unique("inbox"), None)
        .await
        .unwrap();
    send(&t, "d1", "acme", 60).await; // crosses 50 %: informational
    assert!(
        t.take_all(&inbox).await.is_empty(),
        "held for the monthly digest, not sent"
    );
    send(&t, "d2", "acme", 25).await; // crosses 80 %: a warning goes out at once
    let now = t.take_all(&inbox).await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0]["alert"]["threshold"], 80);

    let before_end = t.stack.notify.run_digests(Utc::now()).await.unwrap();
    assert_eq!(before_end.published, 0, "the month has not ended");
    let after_end = Utc::now() + Days::days(40);
    let run = t.stack.notify.run_digests(after_end).await.unwrap();
    assert_eq!((run.due, run.published, run.alerts), (1, 1, 1));
    let digests = t.take_all(&inbox).await;
    assert_eq!(digests.len(), 1, "{digests:?}");
    let d = &digests[0];
    assert_eq!(d["kind"], "digest");
    assert_eq!(d["segment"], "mid_market");
    assert_eq!(d["cadence"], "monthly");
    assert_eq!(d["alerts"][0]["held_because"], "low_severity");
    assert_eq!(d["alerts"][0]["alert"]["alert"]["threshold"], 50);
    // Sent once: the next run finds nothing due.
    let again = t.stack.notify.run_digests(after_end).await.unwrap();
    assert_eq!((again.due, again.published), (0, 0));
    assert!(t.take_all(&inbox).await.is_empty());
}

#[tokio::test]
async fn a_repeat_risk_alert_inside_the_cooldown_joins_the_digest_instead_of_paging() {
    let t = TestStack::fresh().await;
    setup(&t, "beta", "enterprise").await;
    let inbox = t
        .stack
        .subscribe_queue(&e2e::unique("inbox"), Some(r#"{"kind":["risk"]}"#))
        .await
        .unwrap();
    // Build two risk alerts for the same account from a real alert's shape.
    let (_, _) = t
        .post_events(
            &json!([{"id": "r1", "account": "beta", "meter": "api_calls", "quantity": 85, "timestamp": now_rfc3339()}])
                .to_string(),
        )
        .await;
    t.drain().await;
    let raised = t.raised_alerts().await;
    let base: Value = raised
        .into_iter()
        .find(|a| a["threshold"] == 80)
        .expect("80 % alert");
    let alerts_url = t.provisioned.reference("AlertsQueue").unwrap().to_owned();
    for (i, key) in ["risk:beta:1", "risk:beta:2"].iter().enumerate() {
        let mut a = base.clone();
        a["key"] = json!(key);
        a["kind"] = json!("risk");
        a["code"] = json!("usage_down_30d");
        a["severity"] = json!("warning");
        a["raised_at"] = json!((Utc::now() + Days::minutes(i as i64)).to_rfc3339());
        t.stack
            .sqs
            .send_message()
            .queue_url(&alerts_url)
            .message_body(a.to_string())
            .send()
            .await
            .unwrap();
        t.drain_alerts().await;
    }
    let paged = t.take_all(&inbox).await;
    assert_eq!(TestStack::keys(&paged), vec!["risk:beta:1".to_owned()]);
    let run = t
        .stack
        .notify
        .run_digests(Utc::now() + Days::days(8))
        .await
        .unwrap();
    assert_eq!((run.published, run.alerts), (1, 1));
}

#[tokio::test]
async fn tenants_set_their_alert_policy_through_the_api() {
    let t = TestStack::fresh().await;
    let (s, v) = t.call("GET", "/v1/alerts/policy", None).await;
    assert_eq!((s, v["source"].as_str()), (200, Some("defaults")));
    assert_eq!(v["policy"]["digest"]["enterprise"], "weekly");
    let (s, v) = t
        .call(
            "PUT",
            "/v1/alerts/policy",
            Some(r#"{"digest":{"enterprise":"weekly"},"cooldown_hours":{"risk":48}}"#),
        )
        .await;
    assert_eq!((s, v["source"].as_str()), (200, Some("tenant")), "{v}");
    let (_, v) = t.call("GET", "/v1/alerts/policy", None).await;
    assert_eq!(v["policy"]["cooldown_hours"]["risk"], 48);
    assert!(v["policy"]["digest"].get("smb").is_none());
    let (s, v) = t
        .call(
            "PUT",
            "/v1/alerts/policy",
            Some(r#"{"digest_max_severity":"critical"}"#),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_alert_policy"))
    );

    // With SMB digests off, an informational alert for an SMB account goes out at once.
    setup(&t, "gamma", "smb").await;
    let inbox = t
        .stack
        .subscribe_queue(&e2e::unique("inbox"), None)
        .await
        .unwrap();
    send(&t, "g1", "gamma", 55).await;
    let got = t.take_all(&inbox).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["alert"]["threshold"], 50);
}

/// An alert of the given kind and severity, as the producers build them.
fn alert_of(
    kind: domain::alert::AlertKind,
    severity: domain::alert::Severity,
) -> domain::alert::Alert {
    use domain::ids::{AccountId, Segment, TenantId};
    let today = Utc::now().date_naive();
    domain::alert::Alert {
        key: format!("{}:acme:{today}:{}", kind.as_str(), severity.as_str()),
        kind,
        code: "signal".into(),
        severity,
        tenant: TenantId::parse("dev").expect("tenant"),
        account: AccountId::parse("acme").expect("account"),
        account_name: None,
        segment: Segment::Smb,
        owner: Some("csm@example.com".into()),
        crm_url: None,
        entitlement: None,
        meters: Vec::new(),
        threshold: None,
        period_start: today,
        period_end: today + Days::days(1),
        time_zone: "UTC".into(),
        used: 1.into(),
        limit: 100.into(),
        percent: 1.into(),
        projected: 1.into(),
        late: false,
        raised_at: Utc::now(),
        reasons: vec!["a reason".into()],
        detail: None,
    }
}

#[tokio::test]
async fn the_templates_email_subscription_gets_digests_opportunities_and_every_warning_or_critical()
{
    use domain::alert::{AlertKind as K, Severity as S};
    use domain::publish::AlertPublisher;
    let t = TestStack::fresh().await;
    let template: Value = serde_json::from_str(
        &std::fs::read_to_string(local::provision::template_path()).expect("template"),
    )
    .expect("template JSON");
    let policy =
        template["Resources"]["AlertsEmailSubscription"]["Properties"]["FilterPolicy"].to_string();
    let email = t
        .stack
        .subscribe_queue(&e2e::unique("email"), Some(&policy))
        .await
        .unwrap();
    let sns = aws::sns::SnsPublisher::new(t.stack.sns.clone(), t.stack.alerts_topic_arn.clone());
    let cases = [
        (K::Opportunity, S::Info, true),
        (K::Risk, S::Warning, true),
        (K::Risk, S::Critical, true),
        (K::Limit, S::Warning, true),
        (K::DataQuality, S::Critical, true),
        (K::Limit, S::Info, false),
        (K::DataQuality, S::Info, false),
    ];
    for (kind, severity, _) in &cases {
        let a = alert_of(*kind, *severity);
        sns.publish(&a, &domain::alert::render(&a))
            .await
            .expect("published");
    }
    // And a real digest: an informational limit crossing held, then the period ends.
    setup(&t, "acme", "mid_market").await;
    send(&t, "d1", "acme", 60).await;
    let run = t
        .stack
        .notify
        .run_digests(Utc::now() + Days::days(40))
        .await
        .unwrap();
    assert_eq!(run.published, 1);

    let got = t.take_all(&email).await;
    let mut kinds: Vec<String> = got
        .iter()
        .map(|m| match m["kind"].as_str() {
            Some("digest") => "digest".to_owned(),
            _ => format!("{}/{}", m["alert"]["kind"], m["alert"]["severity"]).replace('"', ""),
        })
        .collect();
    kinds.sort();
    let mut want: Vec<String> = cases
        .iter()
        .filter(|(_, _, delivered)| *delivered)
        .map(|(k, s, _)| format!("{}/{}", k.as_str(), s.as_str()))
        .chain(["digest".to_owned()])
        .collect();
    want.sort();
    assert_eq!(kinds, want, "what the e-mail subscriber receives");
}

#[tokio::test]
async fn an_accounts_recent_alerts_are_listed_newest_first_with_what_crossed_what_and_the_next_step(
) {
    let t = TestStack::fresh().await;
    setup(&t, "acme", "mid_market").await;
    setup(&t, "globex", "mid_market").await;
    let (s, v) = t.call("GET", "/v1/accounts/acme/alerts", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["alerts"], json!([]), "no alerts yet");

    send(&t, "r1", "acme", 60).await; // 50 %: informational, held for the digest
    send(&t, "r2", "acme", 25).await; // 80 %: a warning, published
    let (s, issued) = t
        .call(
            "POST",
            "/v1/keys",
            Some(r#"{"label": "cs-app", "scopes": ["read"]}"#),
        )
        .await;
    assert_eq!(s, 201, "{issued}");
    let read_key = issued["key"].as_str().unwrap().to_owned();
    let (s, v) = t
        .call_as(&read_key, "GET", "/v1/accounts/acme/alerts", None)
        .await;
    assert_eq!(s, 200, "a read key reads them: {v}");
    let alerts = v["alerts"].as_array().unwrap();
    let thresholds: Vec<&Value> = alerts.iter().map(|a| &a["alert"]["threshold"]).collect();
    assert_eq!(
        thresholds,
        vec![&json!(80), &json!(50)],
        "newest first, digested ones too: {v}"
    );
    let subject = alerts[0]["subject"].as_str().unwrap();
    assert!(
        subject.contains("reached 80% of its api_calls limit"),
        "{subject}"
    );
    assert!(!alerts[0]["next_step"].as_str().unwrap().is_empty());
    assert_eq!(alerts[0]["alert"]["used"], "85");
    assert_eq!(v["kept"], domain::alert::RECENT_ALERTS_KEPT);

    let (_, one) = t
        .call("GET", "/v1/accounts/acme/alerts?limit=1", None)
        .await;
    assert_eq!(one["alerts"].as_array().map(Vec::len), Some(1));
    let (_, other) = t.call("GET", "/v1/accounts/globex/alerts", None).await;
    assert_eq!(other["alerts"], json!([]), "each account its own");
    for (path, status, code) in [
        ("/v1/accounts/nobody/alerts", 404, "not_found"),
        ("/v1/accounts/acme/alerts?limit=0", 400, "invalid_parameter"),
        (
            "/v1/accounts/acme/alerts?limit=51",
            400,
            "invalid_parameter",
        ),
        (
            "/v1/accounts/acme/alerts?cursor=x",
            400,
            "unknown_parameter",
        ),
        ("/v1/accounts/acme/alerts?since=1", 400, "unknown_parameter"),
    ] {
        let (s, v) = t.call("GET", path, None).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {v}"
        );
    }
}
