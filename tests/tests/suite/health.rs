//! Health scoring end to end against the emulator: usage through ingest and the
//! rollup, the scheduled fan-out through the shard queue, stored records, the API,
//! risk alerts through notify; and CRM write-back against a HubSpot stand-in.

use chrono::{Duration, Utc};
use domain::health::store::HealthStore;
use domain::ids::TenantId;
use e2e::TestStack;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

const DECAYING: [&str; 3] = ["dec-1", "dec-2", "dec-3"];
const STEADY: [&str; 7] = ["ok-1", "ok-2", "ok-3", "ok-4", "ok-5", "ok-6", "ok-7"];
const DAYS: i64 = 63;
/// Usage every third day keeps the emulator's work small (it copies a table per
/// transaction) while every week stays active.
const EVERY: i64 = 3;

/// A tenant allowed to backfill 100 days, with its key.
async fn tenant(ts: &TestStack, id: &str) -> (TenantId, String) {
    let t = TenantId::parse(id).unwrap();
    let backfill =
        domain::horizon::Horizon::parse(100, domain::horizon::Retention::DEFAULT).unwrap();
    ts.stack
        .ensure_tenant(&t, id, backfill)
        .await
        .expect("tenant");
    let key = ts
        .stack
        .store
        .create_api_key(&t, "test")
        .await
        .expect("key");
    (t, key)
}

/// Daily events for `DAYS` days: steady accounts flat (with a weekly rhythm),
/// decaying ones at 35 % in the last 30 days with tickets tripling.
fn events(account: &str, decaying: bool, salt: usize) -> Vec<Value> {
    let today = Utc::now().date_naive();
    let mut out = Vec::new();
    for back in (1..=DAYS).filter(|b| b % EVERY == 0) {
        let day = today - Duration::days(back);
        let late = back <= 30;
        let f = if decaying && late { 0.35 } else { 1.0 };
        let wiggle = 1.0 + ((back as usize * 7 + salt * 13) % 10) as f64 / 50.0;
        let ts = format!("{day}T12:00:00Z");
        let mut push = |meter: &str, q: f64| {
            if q > 0.0 {
                out.push(serde_json::json!({
                    "id": format!("{account}-{meter}-{back}"), "account": account, "meter": meter,
                    "quantity": q.round(), "timestamp": ts,
                }));
            }
        };
        push("api_calls", 400.0 * f * wiggle);
        push("seats_active", if decaying && late { 4.0 } else { 10.0 });
        let tickets = if decaying && late {
            3.0
        } else if back % 2 == 0 {
            1.0
        } else {
            0.0
        };
        push("tickets_opened", tickets);
    }
    out
}

async fn load_usage(ts: &TestStack, key: &str) {
    let onboarded = (Utc::now().date_naive() - Duration::days(DAYS)).to_string();
    let mut all = Vec::new();
    for (i, a) in DECAYING.iter().chain(STEADY.iter()).enumerate() {
        let body = format!(
            r#"{{"name":"{a} Inc","segment":"mid_market","owner_email":"csm-{a}@example.com","onboarding_date":"{onboarded}","crm_ids":{{"hubspot_company_id":"{}"}}}}"#,
            9000 + i
        );
        let (s, v) = ts
            .call_as(key, "PUT", &format!("/v1/accounts/{a}"), Some(&body))
            .await;
        assert_eq!(s, 201, "{v}");
        all.extend(events(a, DECAYING.contains(a), i));
    }
    for chunk in all.chunks(1000) {
        let (s, v) = ts
            .call_as(
                key,
                "POST",
                "/v1/events",
                Some(&Value::Array(chunk.to_vec()).to_string()),
            )
            .await;
        assert_eq!(s, 202, "{v}");
        assert_eq!(v["accepted"].as_u64(), Some(chunk.len() as u64), "{v}");
    }
    ts.drain_all(std::time::Duration::from_secs(60)).await;
}

#[tokio::test]
async fn a_scheduled_run_scores_every_account_once_lists_decaying_accounts_first_and_holds_each_red_start_for_the_digest(
) {
    let ts = TestStack::fresh().await;
    let (t, key) = tenant(&ts, "health").await;
    let (s, v) = ts
        .call_as(&key, "PUT", "/v1/health/config", Some(r#"{"min_segment_population": 4, "key_meters": ["api_calls"], "min_active_days": 8,
                    "segments": {"mid_market": {"milestones": [{"name": "first_calls", "meter": "api_calls", "quantity": 100, "due_days": 14}]}}}"#))
        .await;
    assert_eq!(s, 200, "{v}");
    load_usage(&ts, &key).await;
    let inbox = ts
        .stack
        .subscribe_queue(&format!("{}-inbox", e2e::unique("h")), None)
        .await
        .expect("subscribe");

    // Shards of 3 accounts, so the 10 accounts need 4 shards and a real fan-in.
    let runner = ts.stack.health_runner(None).expect("score runner wiring");
    let runner = Arc::new(domain::health::run::HealthRunner {
        shard_size: 3,
        ..runner
    });
    let score = score::Score::new(runner.clone());
    let today = Utc::now().date_naive();
    let started = runner.start(&t, today, Utc::now()).await.expect("start");
    assert_eq!((started.accounts, started.shards), (10, 4));
    let polled = ts.drain_score_with(&score).await;
    assert_eq!(
        (polled.received, polled.failed),
        (8, 0),
        "4 measure + 4 score shards"
    );

    // Fan-out covered every account exactly once.
    let shards = ts.stack.store.list_shards(&t, &started.run).await.unwrap();
    let mut seen: Vec<String> = shards
        .iter()
        .flat_map(|s| s.accounts.iter().map(|m| m.measurement.account.to_string()))
        .collect();
    seen.sort();
    let mut expected: Vec<String> = DECAYING
        .iter()
        .chain(STEADY.iter())
        .map(|s| s.to_string())
        .collect();
    expected.sort();
    assert_eq!(seen, expected);

    // Riskiest first: exactly the decaying accounts are red, with reasons to act on.
    let (s, red) = ts
        .call_as(
            &key,
            "GET",
            "/v1/accounts?band=red&segment=mid_market",
            None,
        )
        .await;
    assert_eq!(s, 200, "{red}");
    let red_ids: Vec<&str> = red["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["account"].as_str())
        .collect();
    let mut sorted_red = red_ids.clone();
    sorted_red.sort();
    assert_eq!(sorted_red, DECAYING.to_vec(), "{red}");
    let scores: Vec<f64> = red["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] <= w[1]), "{scores:?}");
    let (s, all) = ts
        .call_as(&key, "GET", "/v1/accounts?sort=risk&limit=200", None)
        .await;
    assert_eq!(s, 200);
    let order: Vec<&str> = all["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["account"].as_str())
        .collect();
    assert_eq!(order.len(), 10);
    assert!(order[..3].iter().all(|a| DECAYING.contains(a)), "{order:?}");
    // The day's band counts, as the run summarised them, are the bands it stored.
    let (s, bands) = ts.call_as(&key, "GET", "/v1/health/bands", None).await;
    assert_eq!(s, 200, "{bands}");
    assert_eq!(bands["days"].as_array().map(Vec::len), Some(1), "{bands}");
    assert_eq!(bands["latest"]["as_of"], today.to_string());
    assert_eq!(bands["latest"]["run"], started.run);
    for band in ["red", "yellow", "green"] {
        let listed = all["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["band"] == band)
            .count() as u64;
        assert_eq!(
            bands["latest"]["segments"]["mid_market"][band].as_u64(),
            Some(listed),
            "{band}: {bands}"
        );
    }
    assert_eq!(bands["latest"]["segments"]["mid_market"]["red"], 3);

    let (s, h) = ts
        .call_as(&key, "GET", "/v1/accounts/dec-1/health", None)
        .await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["band"], "red");
    assert_eq!(h["state"], "scored");
    assert_eq!(
        h["reasons"][0]["code"], "usage_down_30d",
        "{}",
        h["reasons"]
    );
    let detail = h["reasons"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("vs prior 30 d") && detail.contains("segment median"),
        "{detail}"
    );
    assert_eq!(h["baseline"]["segment"], "mid_market");
    assert_eq!(h["baseline"]["population"], 10);
    for c in ["usage_trend", "milestones", "friction", "engagement"] {
        assert!(
            h["components"][c]["score"].is_number(),
            "{c}: {}",
            h["components"]
        );
    }
    let (s, ok) = ts
        .call_as(&key, "GET", "/v1/accounts/ok-1/health", None)
        .await;
    assert_eq!(s, 200);
    assert_ne!(ok["band"], "red", "{ok}");

    // A second run the same day changes nothing and raises nothing new.
    let again = runner.start(&t, today, Utc::now()).await.expect("start");
    assert_ne!(again.run, started.run);
    ts.drain_score_with(&score).await;
    let (_, hist) = ts
        .call_as(&key, "GET", "/v1/accounts/dec-1/health/history", None)
        .await;
    assert_eq!(hist["history"].as_array().unwrap().len(), 1, "{hist}");
    let (_, red2) = ts.call_as(&key, "GET", "/v1/accounts?band=red", None).await;
    assert_eq!(red2["accounts"].as_array().unwrap().len(), 3, "{red2}");
    let (_, bands2) = ts.call_as(&key, "GET", "/v1/health/bands", None).await;
    assert_eq!(bands2["days"].as_array().map(Vec::len), Some(1), "{bands2}");
    assert_eq!(
        bands2["latest"]["run"], again.run,
        "the day's later run replaces it"
    );
    assert_eq!(
        bands2["latest"]["segments"], bands["latest"]["segments"],
        "same day, same counts"
    );
    // The first run sets the baseline: no one is paged; each decaying account's red
    // start waits in the mid-market digest once, with owner and reasons.
    ts.drain_alerts().await;
    let published = ts.take_all(&inbox).await;
    assert!(published.is_empty(), "{published:?}");
    let (start, end) = domain::digest::Cadence::Monthly.period(today).unwrap();
    let bucket = domain::digest::DigestBucket {
        tenant: t.clone(),
        segment: domain::ids::Segment::MidMarket,
        cadence: domain::digest::Cadence::Monthly,
        start,
        end,
    };
    let held = domain::ports::DigestStore::digest_entries(ts.stack.store.as_ref(), &bucket)
        .await
        .expect("digest");
    let mut per_account: BTreeMap<String, usize> = BTreeMap::new();
    for (a, _) in &held {
        assert_eq!((a.kind.as_str(), a.code.as_str()), ("risk", "starts_red"));
        assert!(a.owner.as_deref().unwrap().starts_with("csm-"), "{a:?}");
        assert!(
            a.reasons.iter().any(|r| r.starts_with("usage_down_30d")),
            "{a:?}"
        );
        *per_account.entry(a.account.to_string()).or_default() += 1;
    }
    assert_eq!(
        per_account.keys().map(String::as_str).collect::<Vec<_>>(),
        DECAYING.to_vec(),
        "{held:?}"
    );
    assert!(per_account.values().all(|n| *n == 1), "{per_account:?}");
}

#[tokio::test]
async fn health_routes_refuse_bad_input_and_hide_other_tenants() {
    let ts = TestStack::fresh().await;
    ts.put_account("fresh", "smb").await;
    let bad = [
        ("GET", "/v1/accounts?band=purple", 400, "invalid_parameter"),
        ("GET", "/v1/accounts?sort=name", 400, "invalid_parameter"),
        (
            "GET",
            "/v1/accounts/fresh/health/history?from=yesterday",
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/accounts/fresh/health/history?day=1",
            400,
            "unknown_parameter",
        ),
        (
            "GET",
            "/v1/accounts/fresh/health/history?from=2026-01-01&to=2025-01-01",
            400,
            "invalid_parameter",
        ),
        ("GET", "/v1/health/bands?days=0", 400, "invalid_parameter"),
        ("GET", "/v1/health/bands?days=401", 400, "invalid_parameter"),
        (
            "GET",
            "/v1/health/bands?from=2026-01-01",
            400,
            "unknown_parameter",
        ),
        ("GET", "/v1/accounts/fresh/health", 404, "not_scored"),
        ("GET", "/v1/accounts/nobody/health", 404, "not_found"),
        (
            "GET",
            "/v1/accounts?band=red&cursor=garbage",
            400,
            "invalid_cursor",
        ),
    ];
    for (m, p, status, code) in bad {
        let (s, v) = ts.call(m, p, None).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{p}: {v}"
        );
    }
    let (s, v) = ts
        .call(
            "PUT",
            "/v1/health/config",
            Some(r#"{"segments":{"smb":{"bands":{"green_min":10,"yellow_min":50}}}}"#),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_health_config")),
        "{v}"
    );
    let (s, v) = ts.call("GET", "/v1/health/config", None).await;
    assert_eq!((s, v["source"].as_str()), (200, Some("defaults")));
    assert_eq!(
        v["config"]["segments"]["smb"]["weights"]["usage_trend"],
        20.0
    );
    let (s, _) = ts
        .call(
            "PUT",
            "/v1/health/config",
            Some(r#"{"drop_alert_points": 10}"#),
        )
        .await;
    assert_eq!(s, 200);
    let (_, v) = ts.call("GET", "/v1/health/config", None).await;
    assert_eq!(
        (
            v["source"].as_str(),
            v["config"]["drop_alert_points"].as_f64()
        ),
        (Some("tenant"), Some(10.0))
    );
    let other = ts.second_tenant("other").await;
    let (s, _) = ts
        .call_as(&other, "GET", "/v1/accounts/fresh/health", None)
        .await;
    assert_eq!(s, 404);
    let (_, v) = ts.call_as(&other, "GET", "/v1/health/config", None).await;
    assert_eq!(v["source"], "defaults");
}

/// Issue #14's walkthrough, as a new tenant does it: one meter of its own flagged
/// `key_feature` in the registry, 60 days of daily history for two SMB accounts (one
/// steady, one decaying), and no health config at all.
#[tokio::test]
async fn with_no_health_config_the_registry_key_feature_ranks_steady_above_decaying_and_the_first_run_pages_no_one(
) {
    let ts = TestStack::fresh().await;
    let (t, key) = tenant(&ts, "walk").await;
    let (s, v) = ts
        .call_as(
            &key,
            "PUT",
            "/v1/definitions/reports_run",
            Some(r#"{"description":"Reports run","unit":"report","key_feature":true}"#),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let today = Utc::now().date_naive();
    let onboarded = (today - Duration::days(60)).to_string();
    let mut all = Vec::new();
    for (account, decaying) in [("steady", false), ("decaying", true)] {
        let body = format!(
            r#"{{"name":"{account} Ltd","segment":"smb","owner_email":"csm@example.com","onboarding_date":"{onboarded}"}}"#
        );
        let (s, v) = ts
            .call_as(&key, "PUT", &format!("/v1/accounts/{account}"), Some(&body))
            .await;
        assert_eq!(s, 201, "{v}");
        for back in 1..=60i64 {
            let day = today - Duration::days(back);
            // Steady: about 50 reports a day. Decaying: from 50 down to 8.
            let q = if decaying {
                8.0 + 42.0 * (back as f64 - 1.0) / 59.0
            } else {
                48.0 + (back % 5) as f64
            };
            all.push(serde_json::json!({
                "id": format!("{account}-{back}"), "account": account, "meter": "reports_run",
                "quantity": q.round(), "timestamp": format!("{day}T10:00:00Z"),
            }));
        }
    }
    let (s, v) = ts
        .call_as(
            &key,
            "POST",
            "/v1/events",
            Some(&Value::Array(all).to_string()),
        )
        .await;
    assert_eq!((s, v["accepted"].as_u64()), (202, Some(120)), "{v}");
    ts.drain_all(std::time::Duration::from_secs(60)).await;

    // The config endpoint says the key meters come from the registry.
    let (s, c) = ts.call_as(&key, "GET", "/v1/health/config", None).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["source"], "defaults", "{c}");
    assert_eq!(
        c["config"]["key_meters"],
        serde_json::json!(["reports_run"])
    );
    assert_eq!(c["sources"]["key_meters"], "registry", "{c}");
    assert_eq!(c["sources"]["segments.smb.milestones"], "registry", "{c}");

    let inbox = ts
        .stack
        .subscribe_queue(&format!("{}-inbox", e2e::unique("w")), None)
        .await
        .expect("subscribe");
    let runner = Arc::new(ts.stack.health_runner(None).expect("score runner wiring"));
    let score = score::Score::new(runner.clone());
    runner.start(&t, today, Utc::now()).await.expect("start");
    let polled = ts.drain_score_with(&score).await;
    assert_eq!(polled.failed, 0);

    let health = |account: &'static str| {
        let ts = &ts;
        let key = &key;
        async move {
            let (s, h) = ts
                .call_as(key, "GET", &format!("/v1/accounts/{account}/health"), None)
                .await;
            assert_eq!(s, 200, "{h}");
            h
        }
    };
    let steady = health("steady").await;
    let decaying = health("decaying").await;
    let num = |h: &Value| h["score"].as_f64().unwrap();
    assert!(
        num(&steady) > num(&decaying),
        "steady {} vs decaying {}\n{steady}\n{decaying}",
        num(&steady),
        num(&decaying)
    );
    assert_ne!(steady["band"], "red", "{steady}");
    assert_eq!(decaying["band"], "red", "{decaying}");
    let codes: Vec<&str> = decaying["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["code"].as_str())
        .collect();
    assert!(codes.contains(&"usage_down_30d"), "{codes:?}");
    for h in [&steady, &decaying] {
        let mut said = std::collections::BTreeSet::new();
        for r in h["reasons"].as_array().unwrap() {
            let detail = r["detail"].as_str().unwrap();
            assert!(!detail.contains("active in 0 of"), "{detail}");
            assert!(!detail.contains("api_calls"), "{detail}");
            // A statement with the `segment median` clause that qualifies it.
            let mut statements: Vec<String> = Vec::new();
            for part in detail.split("; ") {
                match statements.last_mut() {
                    Some(last) if part.starts_with("segment median") => {
                        last.push_str("; ");
                        last.push_str(part);
                    }
                    _ => statements.push(part.to_owned()),
                }
            }
            for statement in statements {
                assert!(said.insert(statement.clone()), "repeated: {statement}");
            }
        }
    }

    // The first run is the baseline: nobody is paged; the red start waits for the
    // segment's digest.
    ts.drain_alerts().await;
    let published = ts.take_all(&inbox).await;
    // (Defining the meter announced itself, as governance does; nothing about health.)
    assert!(
        published.iter().all(|p| p["alert"]["kind"] != "risk"),
        "{published:?}"
    );
    let (start, end) = domain::digest::Cadence::Monthly.period(today).unwrap();
    let bucket = domain::digest::DigestBucket {
        tenant: t.clone(),
        segment: domain::ids::Segment::Smb,
        cadence: domain::digest::Cadence::Monthly,
        start,
        end,
    };
    let held = domain::ports::DigestStore::digest_entries(ts.stack.store.as_ref(), &bucket)
        .await
        .expect("digest");
    let held: Vec<&str> = held.iter().map(|(a, _)| a.account.as_str()).collect();
    assert_eq!(held, ["decaying"]);
}

/// `usage-local backtest --tenant T --outcomes FILE`: the report from the tenant's
/// stored rollups and profiles agrees with the file backtest on the same events.
#[tokio::test]
async fn the_backtest_on_stored_usage_reports_the_same_figures_as_on_the_files_it_was_imported_from(
) {
    let ts = TestStack::fresh().await;
    let (t, key) = tenant(&ts, "btstore").await;
    let (s, v) = ts
        .call_as(
            &key,
            "PUT",
            "/v1/definitions/reports_run",
            Some(r#"{"description":"Reports run","unit":"report","key_feature":true}"#),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let today = Utc::now().date_naive();
    let onboarded = today - Duration::days(80);
    let dir = std::env::temp_dir().join(e2e::unique("backtest"));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut events, mut profiles, mut outcomes) = (
        Vec::new(),
        String::new(),
        "account,churned,churn_date\n".to_owned(),
    );
    // Ten accounts: seven steady (every other day), three that stop 35 days before
    // today and churn 10 days later (within 20 days of the first cut-off).
    for i in 0..10usize {
        let account = format!("bt-{i}");
        let churner = i % 3 == 0 && i < 9;
        let stop = if churner { 35 } else { 0 };
        let body =
            format!(r#"{{"name":"{account}","segment":"smb","onboarding_date":"{onboarded}"}}"#);
        let (s, v) = ts
            .call_as(&key, "PUT", &format!("/v1/accounts/{account}"), Some(&body))
            .await;
        assert_eq!(s, 201, "{v}");
        profiles.push_str(&format!(
            "{{\"account\":\"{account}\",\"segment\":\"smb\",\"onboarding_date\":\"{onboarded}\"}}\n"
        ));
        if churner {
            outcomes.push_str(&format!("{account},true,{}\n", today - Duration::days(25)));
        } else {
            outcomes.push_str(&format!("{account},false,\n"));
        }
        for back in (stop + 1..=80i64).filter(|b| b % 2 == 0) {
            let day = today - Duration::days(back);
            let q = 10 + ((back as usize * 7 + i * 13) % 10) as i64 - if churner { 5 } else { 0 };
            events.push(serde_json::json!({
                "id": format!("{account}-{back}"), "account": account, "meter": "reports_run",
                "quantity": q, "timestamp": format!("{day}T10:00:00Z"),
            }));
        }
    }
    for chunk in events.chunks(500) {
        let (s, v) = ts
            .call_as(
                &key,
                "POST",
                "/v1/events",
                Some(&Value::Array(chunk.to_vec()).to_string()),
            )
            .await;
        assert_eq!(
            (s, v["accepted"].as_u64()),
            (202, Some(chunk.len() as u64)),
            "{v}"
        );
    }
    ts.drain_all(std::time::Duration::from_secs(60)).await;
    let jsonl: String = events.iter().map(|e| format!("{e}\n")).collect();
    let (ev, pr, oc) = (
        dir.join("events.jsonl"),
        dir.join("accounts.jsonl"),
        dir.join("outcomes.csv"),
    );
    std::fs::write(&ev, jsonl).unwrap();
    std::fs::write(&pr, profiles).unwrap();
    std::fs::write(&oc, outcomes).unwrap();

    let cutoffs = [today - Duration::days(30), today - Duration::days(20)];
    let (stored, cfg) = local::backtest_stored::load(
        ts.stack.store.as_ref(),
        &t,
        &oc,
        &cutoffs,
        20,
        today - Duration::days(1),
    )
    .await
    .expect("stored inputs");
    assert_eq!(
        cfg.key_meters
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>(),
        ["reports_run"],
        "the score job's config: the registry's key feature"
    );
    let files = local::backtest_files::load(&ev, &pr, &oc).expect("file inputs");
    assert_eq!(stored.accounts, files.accounts);
    assert_eq!(stored.history, files.history);
    assert_eq!(stored.last_day, files.last_day);
    let file_cfg = local::backtest_files::default_config(&files.meters, None);
    let report = |inputs, cfg| {
        let out = local::backtest_files::run(inputs, cfg, &cutoffs, 20, None).expect("report");
        // The first line has the run time.
        out.split_once('\n')
            .map(|(_, rest)| rest.to_owned())
            .unwrap()
    };
    let from_store = report(&stored, &cfg);
    let from_files = report(&files, &file_cfg);
    assert_eq!(from_store, from_files);
    assert!(from_store.contains("health score"), "{from_store}");
    let all = from_store
        .lines()
        .find(|l| l.starts_with("all "))
        .expect("an overall line");
    assert_ne!(
        all.split_whitespace().nth(3),
        Some("-"),
        "an AUC needs churners and stayers scored: {all}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue #12: a renewal date synced from the HubSpot company property the tenant maps to
/// `renewal_date` reaches the portfolio through the real path: a signed
/// `company.propertyChange` webhook (a date property's epoch milliseconds, or a plain
/// date), ingest, the profile, the score run (whose write-back lands on the same
/// companies in the CRM stand-in), the risk index and `GET /v1/accounts?sort=risk`.
/// A profile's own renewal date stands where nothing is synced.
#[tokio::test]
async fn a_renewal_date_synced_from_a_mapped_hubspot_property_reaches_the_portfolio() {
    use aws::hubspot::HyperPost;
    use domain::health::writeback::HubSpotWriteback;
    const PORTAL: u64 = 62_999;
    const URI: &str = "https://hooks.example.com/v1/webhooks/hubspot";
    let ts = TestStack::fresh().await;
    let (t, key) = tenant(&ts, "renewals").await;
    ts.stack.store.map_portal(PORTAL, &t).await.expect("portal");
    for (path, body) in [
        (
            "/v1/hubspot/mappings",
            r#"{"rules":[],"profile_properties":{"contract_renewal":"renewal_date"}}"#,
        ),
        ("/v1/health/config", r#"{"crm_writeback":true}"#),
    ] {
        let (s, v) = ts.call_as(&key, "PUT", path, Some(body)).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
    load_usage(&ts, &key).await;
    // ok-2 (company 9004) has a renewal date on its profile and none synced.
    let onboarded = (Utc::now().date_naive() - Duration::days(DAYS)).to_string();
    let (s, v) = ts
        .call_as(
            &key,
            "PUT",
            "/v1/accounts/ok-2",
            Some(&format!(
                r#"{{"name":"ok-2 Inc","segment":"mid_market","owner_email":"csm-ok-2@example.com","onboarding_date":"{onboarded}","renewal_date":"2027-09-30","crm_ids":{{"hubspot_company_id":"9004"}}}}"#
            )),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // HubSpot sends the property changes: dec-1's company (9000) as a date property's
    // epoch milliseconds at midnight UTC, ok-1's (9003) as a plain date.
    let midnight = chrono::NaiveDate::from_ymd_opt(2027, 3, 31)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("a date")
        .and_utc()
        .timestamp_millis();
    let at = Utc::now().timestamp_millis() - 1_000;
    let change = |id: u64, company: u64, value: String| {
        serde_json::json!({"eventId": id, "portalId": PORTAL, "occurredAt": at,
            "subscriptionType": "company.propertyChange", "objectId": company,
            "propertyName": "contract_renewal", "propertyValue": value})
    };
    let body = serde_json::json!([
        change(1, 9000, midnight.to_string()),
        change(2, 9003, "2027-01-15".to_owned())
    ])
    .to_string();
    let stamp = Utc::now().timestamp_millis().to_string();
    let req = lambda_http::http::Request::builder()
        .method("POST")
        .uri("/v1/webhooks/hubspot")
        .header("content-type", "application/json")
        .header(
            "x-hubspot-signature-v3",
            domain::hubspot::signature::v3_signature(
                e2e::HUBSPOT_SECRET,
                "POST",
                URI,
                body.as_bytes(),
                &stamp,
            ),
        )
        .header("x-hubspot-request-timestamp", stamp)
        .body(lambda_http::Body::Binary(body.into_bytes()))
        .expect("a request");
    let (s, v) = e2e::decode(ts.stack.ingest.handle(req).await);
    assert_eq!(s, 200, "{v}");
    ts.drain_all(std::time::Duration::from_secs(3)).await;
    let (_, dec) = ts.call_as(&key, "GET", "/v1/accounts/dec-1", None).await;
    assert_eq!(
        (
            dec["crm_properties"]["renewal_date"]["value"].as_str(),
            dec["crm_properties"]["renewal_date"]["source"].as_str()
        ),
        (Some("2027-03-31"), Some("contract_renewal")),
        "{dec}"
    );

    // The score run, writing back to the CRM stand-in once its properties exist.
    let crm = e2e::crm::CrmStandIn::start("pat-renew").await;
    let mut client = domain::hubspot::client::HubSpotClient::new(
        &crm.base,
        Arc::new(HyperPost::new().expect("an HTTP client")),
        100,
    );
    client.backoff = std::time::Duration::from_millis(50);
    domain::hubspot::setup::run(&client, "pat-renew")
        .await
        .expect("hubspot setup");
    let wb = HubSpotWriteback::new(
        &crm.base,
        std::collections::HashMap::from([(t.clone(), "pat-renew".to_owned())]),
        Arc::new(HyperPost::new().expect("an HTTP client")),
        100,
    );
    let runner = Arc::new(
        ts.stack
            .health_runner(Some(Arc::new(wb)))
            .expect("score runner wiring"),
    );
    let score = score::Score::new(runner.clone());
    runner
        .start(&t, Utc::now().date_naive(), Utc::now())
        .await
        .expect("start");
    let polled = ts.drain_score_with(&score).await;
    assert_eq!(polled.failed, 0);

    let (s, listed) = ts
        .call_as(&key, "GET", "/v1/accounts?sort=risk&limit=50", None)
        .await;
    assert_eq!(s, 200, "{listed}");
    let renewals: BTreeMap<String, Option<String>> = listed["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| {
            (
                a["account"].as_str().unwrap_or_default().to_owned(),
                a["renewal_date"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(renewals.len(), 10, "{listed}");
    assert_eq!(renewals["dec-1"].as_deref(), Some("2027-03-31"));
    assert_eq!(renewals["ok-1"].as_deref(), Some("2027-01-15"));
    assert_eq!(renewals["ok-2"].as_deref(), Some("2027-09-30"));
    assert_eq!(
        renewals.values().filter(|r| r.is_some()).count(),
        3,
        "{renewals:?}"
    );
    // The scores went back to the companies whose property was synced.
    let s = crm.lock();
    assert_eq!(s.companies["9000"]["usage_health_band"], "red");
    assert!(s.companies.contains_key("9003"), "{:?}", s.companies.keys());
}
