//! The event-definition registry: change log, notifications, soft delete and restore,
//! validation per definition, aliases, and the legacy import, against the emulator.

use e2e::{now_rfc3339, total, TestStack};
use serde_json::{json, Value};

async fn define(t: &TestStack, meter: &str, body: Value) -> (u16, Value) {
    t.call(
        "PUT",
        &format!("/v1/definitions/{meter}"),
        Some(&body.to_string()),
    )
    .await
}

fn codes(v: &Value) -> Vec<String> {
    v["rejected"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["code"].as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn every_definition_change_is_logged_with_who_when_before_and_after_and_notified() {
    let t = TestStack::fresh().await;
    let (s, v) = define(
        &t,
        "exports",
        json!({"unit": "file", "owner": "data@example.com"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = define(
        &t,
        "exports",
        json!({"unit": "file", "owner": "cs@example.com", "criticality": "critical"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, log) = t.call("GET", "/v1/definitions/exports/changes", None).await;
    assert_eq!(s, 200, "{log}");
    let changes = log["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{log}");
    assert_eq!(changes[0]["action"], "created");
    assert!(changes[0]["before"].is_null());
    assert_eq!(changes[1]["action"], "updated");
    assert_eq!(changes[1]["changed"], json!(["criticality", "owner"]));
    assert_eq!(changes[1]["before"]["owner"], "data@example.com");
    assert_eq!(changes[1]["after"]["owner"], "cs@example.com");
    let actor = changes[1]["actor"].as_str().unwrap();
    assert!(actor.starts_with("key:") && actor.len() == 16, "{actor}");
    assert!(!actor.contains(&t.key), "the key itself is never logged");
    assert!(changes[0]["at"].as_str() <= changes[1]["at"].as_str());

    let alerts = t.raised_alerts().await;
    let mut notices: Vec<(String, String)> = alerts
        .iter()
        .map(|a| {
            (
                a["code"].as_str().unwrap_or("").to_owned(),
                a["owner"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    notices.sort();
    assert_eq!(
        notices,
        vec![
            (
                "definition_created".to_owned(),
                "data@example.com".to_owned()
            ),
            ("definition_updated".to_owned(), "cs@example.com".to_owned()),
        ]
    );
    assert!(alerts.iter().all(|a| a["kind"] == "data_quality"));
}

#[tokio::test]
async fn deleting_a_definition_is_soft_keeps_its_usage_holds_new_events_and_restoring_counts_them_once(
) {
    let t = TestStack::fresh().await;
    let ts = now_rfc3339();
    let ev = |id: &str, q: Value| json!({"id": id, "account": "acme", "meter": "storage_gb", "quantity": q, "timestamp": ts});
    let (s, _) = t
        .post_events(&json!([ev("d1", json!(4))]).to_string())
        .await;
    assert_eq!(s, 202);
    t.drain().await;

    let (s, v) = t.call("DELETE", "/v1/definitions/storage_gb", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "deleted");
    let (s, v) = t.call("GET", "/v1/definitions/storage_gb", None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("deleted")), "{v}");
    // Deleting again changes nothing and logs nothing.
    let (s, _) = t.call("DELETE", "/v1/definitions/storage_gb", None).await;
    assert_eq!(s, 200);

    // New events are held, not lost; a broken one is still refused with its own code.
    let (s, v) = t
        .post_events(&json!([ev("d2", json!(1)), ev("d3", json!("x"))]).to_string())
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["accepted"], 0, "{v}");
    assert_eq!(codes(&v), vec!["invalid_quantity"]);
    assert_eq!(v["quarantined"][0]["id"], "d2", "{v}");
    assert_eq!(v["quarantined"][0]["reason"], "meter_deleted");
    assert!(v["quarantined"][0]["message"]
        .as_str()
        .unwrap()
        .contains("restored"));
    // A resend keeps one copy.
    let (_, v) = t
        .post_events(&json!([ev("d2", json!(1))]).to_string())
        .await;
    assert_eq!(v["quarantined"].as_array().map(Vec::len), Some(1), "{v}");
    t.drain().await;
    // The data counted before the delete stays, and stays readable.
    let usage = t.usage("acme", "meter=storage_gb").await;
    assert_eq!(total(&usage), ("4".to_owned(), 1));
    let (s, held) = t
        .call("GET", "/v1/definitions/storage_gb/quarantine", None)
        .await;
    assert_eq!(s, 200, "{held}");
    assert_eq!(held["status"], "deleted");
    let held_ids: Vec<&str> = held["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(held_ids, vec!["d2"], "{held}");
    assert_eq!(held["events"][0]["reason"], "meter_deleted");
    let (s, v) = t
        .call("POST", "/v1/definitions/storage_gb/quarantine/replay", None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("definition_not_active")),
        "{v}"
    );

    // Restoring counts what was held, once.
    let (s, v) = t
        .call("POST", "/v1/definitions/storage_gb/restore", None)
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("active")), "{v}");
    assert_eq!(
        v["replay"],
        json!({"replayed": 1, "remaining": false}),
        "{v}"
    );
    let (s, v) = t
        .call("POST", "/v1/definitions/storage_gb/restore", None)
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("not_deleted")));
    t.drain().await;
    assert_eq!(
        total(&t.usage("acme", "meter=storage_gb").await),
        ("5".to_owned(), 2)
    );
    let (_, held) = t
        .call("GET", "/v1/definitions/storage_gb/quarantine", None)
        .await;
    assert_eq!(held["events"], json!([]), "{held}");
    let (s, v) = t
        .call("POST", "/v1/definitions/storage_gb/quarantine/replay", None)
        .await;
    assert_eq!((s, v["replayed"].as_u64()), (200, Some(0)), "{v}");
    // The sender resending the held event now changes nothing: it was counted once.
    let (_, v) = t
        .post_events(&json!([ev("d2", json!(1))]).to_string())
        .await;
    assert_eq!(v["accepted"], 1, "{v}");
    t.drain().await;
    assert_eq!(
        total(&t.usage("acme", "meter=storage_gb").await),
        ("5".to_owned(), 2)
    );

    // The audit sees what was held and released.
    let report = t
        .stack
        .audit
        .run_tenant(&t.tenant, chrono::Utc::now(), None)
        .await
        .unwrap();
    let storage = report
        .definitions
        .iter()
        .find(|d| d.meter.as_str() == "storage_gb")
        .unwrap();
    // d2 held twice (a resend is a second receipt), released once; d3 was refused for
    // its quantity, not for the deletion.
    assert_eq!(
        (
            storage.kpis.quarantined_events,
            storage.kpis.released_events,
            storage.kpis.deleted_meter_events
        ),
        (2, 1, 2)
    );
    assert!(
        report.summary.contains("held in quarantine"),
        "{}",
        report.summary
    );

    let (_, log) = t
        .call("GET", "/v1/definitions/storage_gb/changes", None)
        .await;
    let actions: Vec<&str> = log["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["deleted", "restored"],
        "starter meters are created without the API"
    );
    let (s, _) = t
        .call("DELETE", "/v1/definitions/never_defined", None)
        .await;
    assert_eq!(s, 404);
    let (s, _) = t
        .call("GET", "/v1/definitions/never_defined/quarantine", None)
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn a_tenant_chooses_to_refuse_deleted_meters_or_to_hold_deprecated_ones() {
    let t = TestStack::fresh().await;
    let (s, v) = t.call("GET", "/v1/governance/policy", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["policy"].clone(), v["source"].as_str()),
        (
            json!({"deleted_meter_events": "quarantine", "deprecated_meter_events": "flag"}),
            Some("defaults")
        )
    );
    let (s, v) = t
        .call(
            "PUT",
            "/v1/governance/policy",
            Some(r#"{"deleted_meter_events":"drop"}"#),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_governance_policy")),
        "{v}"
    );
    let (s, v) = t
        .call(
            "PUT",
            "/v1/governance/policy",
            Some(r#"{"deleted_meter_events":"reject","deprecated_meter_events":"quarantine"}"#),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["previous"]["deleted_meter_events"], "quarantine", "{v}");
    let (_, v) = t.call("GET", "/v1/governance/policy", None).await;
    assert_eq!(v["source"], "tenant");
    // Who changed it and when: the key's principal, never the key.
    let by = v["updated_by"].as_str().unwrap_or_default();
    assert!(by.starts_with("key:") && !by.contains(&t.key), "{v}");
    assert!(v["updated_at"].is_string(), "{v}");

    define(&t, "old_exports", json!({"status": "deprecated"})).await;
    t.call("DELETE", "/v1/definitions/storage_gb", None).await;
    let (s, v) = t
        .post_events(
            &json!([
                {"id": "p1", "account": "acme", "meter": "storage_gb"},
                {"id": "p2", "account": "acme", "meter": "old_exports"},
                {"id": "p3", "account": "acme", "meter": "api_calls"},
            ])
            .to_string(),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(codes(&v), vec!["meter_deleted"]);
    assert_eq!(v["accepted"], 1, "{v}");
    assert_eq!(v["quarantined"][0]["id"], "p2", "{v}");
    assert_eq!(v["quarantined"][0]["reason"], "meter_deprecated");

    // Making the deprecated definition active again counts what it held.
    let (s, v) = define(&t, "old_exports", json!({"status": "active"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["replay"]["replayed"], 1, "{v}");
    t.drain().await;
    assert_eq!(
        total(&t.usage("acme", "meter=old_exports").await),
        ("1".to_owned(), 1)
    );
}

#[tokio::test]
async fn ingest_checks_value_type_and_required_properties_and_maps_legacy_aliases() {
    let t = TestStack::fresh().await;
    let (s, v) = define(
        &t,
        "reports_run",
        json!({"unit": "report", "value_type": "integer", "required_properties": {"plan": "string"},
               "aliases": ["legacy_reports"]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let ts = now_rfc3339();
    let ev = |id: &str, meter: &str, q: Value, props: Value| json!({"id": id, "account": "acme", "meter": meter, "quantity": q, "timestamp": ts, "properties": props});
    let body = json!([
        ev("v1", "reports_run", json!(1.5), json!({"plan": "pro"})),
        ev("v2", "reports_run", json!(1), json!({})),
        ev("v3", "reports_run", json!(1), json!({"plan": 3})),
        ev("v4", "legacy_reports", json!(2), json!({"plan": "pro"})),
        ev(
            "v5",
            "reports_run",
            json!(1),
            json!({"plan": "pro", "extra": true})
        ),
    ]);
    let (s, v) = t.post_events(&body.to_string()).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(
        codes(&v),
        vec![
            "value_type_mismatch",
            "missing_property",
            "property_type_mismatch"
        ]
    );
    assert_eq!(v["accepted"], 2);
    t.drain().await;
    assert_eq!(
        total(&t.usage("acme", "meter=reports_run").await),
        ("3".to_owned(), 2)
    );

    // An alias may not shadow another definition.
    let (s, v) = define(
        &t,
        "api_calls",
        json!({"unit": "call", "aliases": ["legacy_reports"]}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("alias_conflict")),
        "{v}"
    );
}

#[tokio::test]
async fn events_of_a_deprecated_definition_are_counted_and_flagged() {
    let t = TestStack::fresh().await;
    let (s, _) = define(&t, "old_exports", json!({"status": "deprecated"})).await;
    assert_eq!(s, 201);
    let (_, v) = t
        .post_events(&json!([{"id": "o1", "account": "acme", "meter": "old_exports"}]).to_string())
        .await;
    assert_eq!(v["accepted"], 1, "{v}");
    let flags: Vec<&str> = v["flagged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["flag"].as_str().unwrap())
        .collect();
    assert!(flags.contains(&"meter_deprecated"), "{v}");
}

/// A ledger retention that guards a ten-year horizon (3,650 + 19 days).
fn history_retention() -> domain::horizon::Retention {
    domain::horizon::Retention::days(3669).unwrap()
}

/// The importer's pipeline with [`history_retention`].
fn history_cfg() -> domain::pipeline::PipelineConfig {
    domain::pipeline::PipelineConfig {
        retention: history_retention().duration(),
        ..Default::default()
    }
}

/// The tenant's policy as it stands, with a ten-year backfill horizon.
async fn history_policy(t: &TestStack) -> domain::event::TenantPolicy {
    use domain::ports::Directory;
    let policy = t.stack.store.tenant_policy(&t.tenant).await.unwrap();
    let horizon = domain::horizon::Horizon::parse(3650, history_retention()).unwrap();
    local::import::import_policy(policy.unwrap(), horizon)
}

#[tokio::test]
async fn a_legacy_import_maps_aliases_counts_once_and_a_rerun_or_dry_run_adds_nothing() {
    use local::import::{csv_records, digest, jsonl_records, Importer};
    let t = TestStack::fresh().await;
    let (s, _) = define(
        &t,
        "api_calls",
        json!({"unit": "call", "aliases": ["apicalls_v1"]}),
    )
    .await;
    assert_eq!(s, 200);
    t.put_account("acme", "enterprise").await;
    let file = "\
{\"id\":\"h1\",\"account\":\"acme\",\"meter\":\"apicalls_v1\",\"quantity\":3,\"timestamp\":\"2025-03-01T10:00:00Z\"}
{\"id\":\"h2\",\"account\":\"acme\",\"meter\":\"api_calls\",\"quantity\":2,\"timestamp\":\"2025-03-01T11:00:00Z\"}

{\"id\":\"h3\",\"account\":\"acme\",\"meter\":\"nope\",\"timestamp\":\"2025-03-01T11:00:00Z\"}
not json
";
    let policy = history_policy(&t).await;
    let importer = Importer {
        ledger: t.stack.store.as_ref(),
        quality: Some(t.stack.store.as_ref()),
        quarantine: Some(t.stack.store.as_ref()),
        journal: Some(t.stack.store.as_ref()),
        cfg: history_cfg(),
        batch: 2,
    };
    let records = jsonl_records(file);
    let d = digest(file.as_bytes());
    let noop = |_: usize| {};
    let dry = importer
        .run(&t.tenant, &policy, &records, &d, true, &noop)
        .await
        .unwrap();
    assert_eq!(
        (dry.records, dry.valid, dry.refused, dry.counted),
        (4, 2, 2, 0)
    );
    assert_eq!(dry.refused_by_code.get("unknown_meter"), Some(&1));
    assert_eq!(dry.refused_by_code.get("malformed_json"), Some(&1));
    let mut lines: Vec<usize> = dry.refusals.iter().map(|r| r.line).collect();
    lines.sort();
    assert_eq!(lines, vec![4, 5]);
    assert_eq!(dry.aliases.get("apicalls_v1 -> api_calls"), Some(&1));
    let march = "meter=api_calls&from=2025-03-01&to=2025-03-02&granularity=day";
    assert_eq!(
        total(&t.usage("acme", march).await).1,
        0,
        "a dry run writes nothing"
    );

    let first = importer
        .run(&t.tenant, &policy, &records, &d, false, &noop)
        .await
        .unwrap();
    assert_eq!((first.counted, first.already_imported), (2, 0));
    assert_eq!(total(&t.usage("acme", march).await), ("5".to_owned(), 2));
    let again = importer
        .run(&t.tenant, &policy, &records, &d, false, &noop)
        .await
        .unwrap();
    assert_eq!((again.counted, again.already_imported), (0, 2));
    // The same events in another format (another digest) are recognised by their ids.
    let csv = "id,account,meter,quantity,timestamp\nh1,acme,apicalls_v1,3,2025-03-01T10:00:00Z\nh2,acme,api_calls,2,2025-03-01T11:00:00Z\n";
    let as_csv = importer
        .run(
            &t.tenant,
            &policy,
            &csv_records(csv).unwrap(),
            &digest(csv.as_bytes()),
            false,
            &noop,
        )
        .await
        .unwrap();
    assert_eq!((as_csv.counted, as_csv.already_imported), (0, 2));
    assert_eq!(total(&t.usage("acme", march).await), ("5".to_owned(), 2));

    // History of a deleted meter is held like live events, and counted on restore.
    t.call("DELETE", "/v1/definitions/storage_gb", None).await;
    let policy = history_policy(&t).await;
    let old = "{\"id\":\"s1\",\"account\":\"acme\",\"meter\":\"storage_gb\",\"quantity\":7,\"timestamp\":\"2025-03-01T10:00:00Z\"}\n";
    let held = importer
        .run(
            &t.tenant,
            &policy,
            &jsonl_records(old),
            &digest(old.as_bytes()),
            false,
            &noop,
        )
        .await
        .unwrap();
    assert_eq!((held.valid, held.counted), (1, 0));
    assert_eq!(held.quarantined.get("meter_deleted"), Some(&1));
    let (_, v) = t
        .call("POST", "/v1/definitions/storage_gb/restore", None)
        .await;
    assert_eq!(v["replay"]["replayed"], 1, "{v}");
    t.drain().await;
    assert_eq!(
        total(
            &t.usage(
                "acme",
                "meter=storage_gb&from=2025-03-01&to=2025-03-02&granularity=day"
            )
            .await
        ),
        ("7".to_owned(), 1)
    );
}

#[tokio::test]
async fn a_rerun_after_defining_a_refused_meter_counts_exactly_the_newly_valid_event() {
    use local::import::{digest, jsonl_records, Importer};
    let t = TestStack::fresh().await;
    let (s, _) = define(&t, "api_calls", json!({"unit": "call"})).await;
    assert_eq!(s, 200);
    t.put_account("acme", "enterprise").await;
    let day = (chrono::Utc::now() - chrono::Duration::days(3)).date_naive();
    let ts = format!("{day}T10:00:00Z");
    let file = format!(
        "{{\"id\":\"r1\",\"account\":\"acme\",\"meter\":\"api_calls\",\"quantity\":1,\"timestamp\":\"{ts}\"}}\n\
         {{\"id\":\"r2\",\"account\":\"acme\",\"meter\":\"seats\",\"quantity\":10,\"timestamp\":\"{ts}\"}}\n\
         {{\"id\":\"r3\",\"account\":\"acme\",\"meter\":\"api_calls\",\"quantity\":2,\"timestamp\":\"{ts}\"}}\n"
    );
    let importer = Importer {
        ledger: t.stack.store.as_ref(),
        quality: Some(t.stack.store.as_ref()),
        quarantine: Some(t.stack.store.as_ref()),
        journal: Some(t.stack.store.as_ref()),
        cfg: history_cfg(),
        batch: 1000,
    };
    let records = jsonl_records(&file);
    let d = digest(file.as_bytes());
    let noop = |_: usize| {};
    let next = day.succ_opt().unwrap_or(day);
    let calls = format!("meter=api_calls&from={day}&to={next}&granularity=day");
    let seats = format!("meter=seats&from={day}&to={next}&granularity=day");

    let policy = history_policy(&t).await;
    let first = importer
        .run(&t.tenant, &policy, &records, &d, false, &noop)
        .await
        .unwrap();
    assert_eq!(first.refused_by_code.get("unknown_meter"), Some(&1));
    assert_eq!((first.counted, first.already_imported), (2, 0));

    let (s, _) = define(&t, "seats", json!({"unit": "seat"})).await;
    assert_eq!(s, 201, "seats is defined now");
    let policy = history_policy(&t).await;
    let again = importer
        .run(&t.tenant, &policy, &records, &d, false, &noop)
        .await
        .unwrap();
    assert_eq!(again.refused, 0);
    assert_eq!(
        (again.counted, again.already_imported),
        (1, 2),
        "the newly valid event is counted, the others are not counted twice"
    );
    assert_eq!(total(&t.usage("acme", &calls).await), ("3".to_owned(), 2));
    assert_eq!(total(&t.usage("acme", &seats).await), ("10".to_owned(), 1));

    let third = importer
        .run(&t.tenant, &policy, &records, &d, false, &noop)
        .await
        .unwrap();
    assert_eq!((third.counted, third.already_imported), (0, 3));
    assert_eq!(total(&t.usage("acme", &calls).await), ("3".to_owned(), 2));
    assert_eq!(total(&t.usage("acme", &seats).await), ("10".to_owned(), 1));
}

/// A ledger whose rollup transactions fail while `broken` is set (an import crashing
/// after its claims, before its parts).
struct BrokenParts<'a> {
    store: &'a aws::dynamo::DynamoStore,
    broken: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl domain::pipeline::LedgerStore for BrokenParts<'_> {
    async fn segments(
        &self,
        tenant: &domain::ids::TenantId,
        accounts: &[domain::ids::AccountId],
    ) -> Result<
        std::collections::HashMap<domain::ids::AccountId, domain::ids::Segment>,
        domain::ports::StoreError,
    > {
        self.store.segments(tenant, accounts).await
    }

    async fn claim(
        &self,
        entry: &domain::pipeline::LedgerEntry<'_>,
    ) -> Result<domain::pipeline::Claim, domain::ports::StoreError> {
        self.store.claim(entry).await
    }

    async fn sample(
        &self,
        entry: &domain::pipeline::LedgerEntry<'_>,
    ) -> Result<(), domain::ports::StoreError> {
        self.store.sample(entry).await
    }

    async fn apply_units(
        &self,
        tenant: &domain::ids::TenantId,
        units: &[domain::pipeline::UnitRef<'_>],
        deltas: &[(domain::rollup::RollupKey, domain::rollup::RollupDelta)],
    ) -> Result<domain::pipeline::UnitsOutcome, domain::ports::StoreError> {
        if self.broken.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(domain::ports::StoreError::Service {
                op: "apply_units",
                message: "crashed on purpose".into(),
            });
        }
        self.store.apply_units(tenant, units, deltas).await
    }
}

#[tokio::test]
async fn an_import_interrupted_after_its_claims_is_completed_by_the_next_run_after_a_registry_change(
) {
    use local::import::{digest, jsonl_records, Importer};
    let t = TestStack::fresh().await;
    let (s, _) = define(&t, "api_calls", json!({"unit": "call"})).await;
    assert_eq!(s, 200);
    t.put_account("acme", "enterprise").await;
    let day = (chrono::Utc::now() - chrono::Duration::days(3)).date_naive();
    let ts = format!("{day}T10:00:00Z");
    let file = format!(
        "{{\"id\":\"i1\",\"account\":\"acme\",\"meter\":\"api_calls\",\"quantity\":1,\"timestamp\":\"{ts}\"}}\n\
         {{\"id\":\"i2\",\"account\":\"acme\",\"meter\":\"seats\",\"quantity\":10,\"timestamp\":\"{ts}\"}}\n\
         {{\"id\":\"i3\",\"account\":\"acme\",\"meter\":\"api_calls\",\"quantity\":2,\"timestamp\":\"{ts}\"}}\n"
    );
    let records = jsonl_records(&file);
    let d = digest(file.as_bytes());
    let crashing = BrokenParts {
        store: t.stack.store.as_ref(),
        broken: std::sync::atomic::AtomicBool::new(true),
    };
    fn importer<'a>(
        t: &'a TestStack,
        ledger: &'a dyn domain::pipeline::LedgerStore,
    ) -> Importer<'a> {
        Importer {
            ledger,
            quality: Some(t.stack.store.as_ref()),
            quarantine: Some(t.stack.store.as_ref()),
            journal: Some(t.stack.store.as_ref()),
            cfg: history_cfg(),
            batch: 1000,
        }
    }
    let policy = history_policy(&t).await;
    let crashed = importer(&t, &crashing)
        .run(&t.tenant, &policy, &records, &d, false, &|_| {})
        .await;
    assert!(crashed.is_err(), "the first run crashes after its claims");

    let (s, _) = define(&t, "seats", json!({"unit": "seat"})).await;
    assert_eq!(s, 201);
    let policy = history_policy(&t).await;
    let next = importer(&t, t.stack.store.as_ref())
        .run(&t.tenant, &policy, &records, &d, false, &|_| {})
        .await
        .unwrap();
    assert_eq!(
        (next.resumed, next.counted, next.already_imported),
        (2, 3, 2),
        "the interrupted chunk is completed first, then only the new event counts"
    );
    let next_day = day.succ_opt().unwrap_or(day);
    let q = |m: &str| format!("meter={m}&from={day}&to={next_day}&granularity=day");
    assert_eq!(
        total(&t.usage("acme", &q("api_calls")).await),
        ("3".to_owned(), 2)
    );
    assert_eq!(
        total(&t.usage("acme", &q("seats")).await),
        ("10".to_owned(), 1)
    );
    let again = importer(&t, t.stack.store.as_ref())
        .run(&t.tenant, &policy, &records, &d, false, &|_| {})
        .await
        .unwrap();
    assert_eq!(
        (again.resumed, again.counted, again.already_imported),
        (0, 0, 3)
    );
}

#[tokio::test]
async fn an_import_refuses_events_older_than_the_ledger_retention_guards_whatever_the_policy_says()
{
    use domain::ports::Directory;
    use local::import::{digest, jsonl_records, Importer};
    let t = TestStack::fresh().await;
    let (s, _) = define(&t, "api_calls", json!({"unit": "call"})).await;
    assert_eq!(s, 200);
    t.put_account("acme", "enterprise").await;
    let mut policy = t
        .stack
        .store
        .tenant_policy(&t.tenant)
        .await
        .unwrap()
        .unwrap();
    policy.backfill_days = 3650;
    // The default ledger (120 days) guards 101 days; one day more is refused.
    let widest = domain::horizon::Horizon::widest(domain::horizon::Retention::DEFAULT).as_days();
    let at = |days: i64| {
        (chrono::Utc::now() - chrono::Duration::days(days))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let file = format!(
        "{{\"id\":\"o1\",\"account\":\"acme\",\"meter\":\"api_calls\",\"timestamp\":\"{}\"}}\n\
         {{\"id\":\"o2\",\"account\":\"acme\",\"meter\":\"api_calls\",\"timestamp\":\"{}\"}}\n",
        at(i64::from(widest) + 1),
        at(3)
    );
    let importer = Importer {
        ledger: t.stack.store.as_ref(),
        quality: None,
        quarantine: None,
        journal: Some(t.stack.store.as_ref()),
        cfg: domain::pipeline::PipelineConfig::default(),
        batch: 1000,
    };
    let report = importer
        .run(
            &t.tenant,
            &policy,
            &jsonl_records(&file),
            &digest(file.as_bytes()),
            false,
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(
        report.refused_by_code.get("timestamp_too_old"),
        Some(&1),
        "the default ledger forgets a resend of an event older than {widest} days: {report:?}"
    );
    assert_eq!(report.counted, 1);
}

#[tokio::test]
async fn the_audit_finds_events_still_held_for_a_definition_that_is_active_again() {
    use domain::ports::DefinitionStore;
    let t = TestStack::fresh().await;
    t.call("DELETE", "/v1/definitions/storage_gb", None).await;
    let (_, v) = t
        .post_events(&json!([{"id": "q1", "account": "acme", "meter": "storage_gb"}]).to_string())
        .await;
    assert_eq!(v["quarantined"][0]["id"], "q1", "{v}");
    // A restore whose replay did not finish: active again, the event still held.
    let meter = domain::ids::MeterName::parse("storage_gb").unwrap();
    let store = &t.stack.store;
    let mut def = store
        .get_definition(&t.tenant, &meter)
        .await
        .unwrap()
        .unwrap();
    def.status = domain::event::DefinitionStatus::Active;
    store.put_definition(&t.tenant, &def).await.unwrap();

    let audit = || {
        t.stack
            .audit
            .run_tenant(&t.tenant, chrono::Utc::now(), None)
    };
    let report = audit().await.unwrap();
    let pending: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.code == "quarantine_pending")
        .collect();
    assert_eq!(pending.len(), 1, "{:#?}", report.findings);
    assert!(
        pending[0]
            .explanation
            .starts_with("1 event(s) of storage_gb")
            && pending[0].explanation.contains("quarantine/replay"),
        "{}",
        pending[0].explanation
    );
    let (s, v) = t
        .call("POST", "/v1/definitions/storage_gb/quarantine/replay", None)
        .await;
    assert_eq!((s, v["replayed"].as_u64()), (200, Some(1)), "{v}");
    let report = audit().await.unwrap();
    assert!(report
        .findings
        .iter()
        .all(|f| f.code != "quarantine_pending"));
}

#[tokio::test]
async fn held_events_are_listed_page_by_page_and_bad_paging_is_refused() {
    let t = TestStack::fresh().await;
    t.call("DELETE", "/v1/definitions/storage_gb", None).await;
    let events: Vec<Value> = (0..5)
        .map(|i| json!({"id": format!("h{i}"), "account": "acme", "meter": "storage_gb"}))
        .collect();
    let (_, v) = t.post_events(&Value::Array(events).to_string()).await;
    assert_eq!(v["quarantined"].as_array().map(Vec::len), Some(5), "{v}");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/definitions/storage_gb/quarantine?limit=2".to_owned(),
            Some(c) => format!("/v1/definitions/storage_gb/quarantine?limit=2&cursor={c}"),
        };
        let (s, page) = t.call("GET", &path, None).await;
        assert_eq!(s, 200, "{page}");
        let items = page["events"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|e| e["event"]["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, vec!["h0", "h1", "h2", "h3", "h4"]);
    for (query, code) in [
        ("limit=0", "invalid_parameter"),
        ("limit=1001", "invalid_parameter"),
        ("since=1", "unknown_parameter"),
        ("cursor=@@", "invalid_cursor"),
    ] {
        let (s, v) = t
            .call(
                "GET",
                &format!("/v1/definitions/storage_gb/quarantine?{query}"),
                None,
            )
            .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some(code)),
            "{query}: {v}"
        );
    }
}
