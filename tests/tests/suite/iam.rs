//! Least privilege, proven locally (ADR 0010). The emulator enforces IAM: each function
//! calls it with its own key, whose policy is the function's policy in the template.
//! Each test runs one real code path twice: with the template's policy it works; with
//! one action taken out of that policy the emulator refuses exactly that action and
//! the work is not done. Run through `make test` (infra/local/with-moto.sh).

use e2e::{now_rfc3339, total, TestStack};
use local::iam::Revoke;
use serde_json::json;

fn denial(
    function: &str,
    operation: &str,
    action: &str,
    resource: &str,
) -> (String, String, String, String) {
    (
        function.to_owned(),
        operation.to_owned(),
        action.to_owned(),
        resource.to_owned(),
    )
}

/// Posts one event for `account` through ingest and runs the rollup on it.
async fn count_one_event(t: &TestStack, account: &str) -> local::esm::PollStats {
    t.put_account(account, "smb").await;
    let body = json!([{"id": format!("{account}-1"), "account": account, "meter": "api_calls",
                       "quantity": 3, "timestamp": now_rfc3339()}]);
    let (status, v) = t.post_events(&body.to_string()).await;
    assert_eq!(status, 202, "{v}");
    t.drain().await
}

/// One event of account `revoked` reaches the rollup, fails there, and is not counted.
async fn not_counted(t: &TestStack) {
    let stats = count_one_event(t, "revoked").await;
    assert_eq!(
        (stats.received, stats.failed),
        (1, 1),
        "the batch item fails"
    );
    assert_eq!(total(&t.usage("revoked", "meter=api_calls").await).1, 0);
}

#[tokio::test]
async fn the_rollup_counts_only_with_its_conditional_put_on_the_ledger() {
    let t = TestStack::with_revoked(vec![]).await;
    let stats = count_one_event(&t, "granted").await;
    assert_eq!((stats.received, stats.failed), (1, 0));
    assert_eq!(total(&t.usage("granted", "meter=api_calls").await).0, "3");
    assert_eq!(t.denials(), vec![]);

    let t = TestStack::with_revoked(vec![
        Revoke::action("RollupFunction", "dynamodb:PutItem").on("LedgerTable")
    ])
    .await;
    not_counted(&t).await;
    assert_eq!(
        t.denials(),
        vec![denial(
            "RollupFunction",
            "PutItem",
            "dynamodb:PutItem",
            "LedgerTable"
        )]
    );
}

#[tokio::test]
async fn the_rollups_transaction_needs_put_item_on_the_usage_table_for_its_put() {
    // AWS checks each item of TransactWriteItems against its own action; the launcher
    // does too (moto alone would ask for dynamodb:TransactWriteItems on "*").
    let t = TestStack::with_revoked(vec![
        Revoke::action("RollupFunction", "dynamodb:PutItem").on("UsageTable")
    ])
    .await;
    not_counted(&t).await;
    let denials = t.denials();
    assert!(
        denials.contains(&denial(
            "RollupFunction",
            "TransactWriteItems",
            "dynamodb:PutItem",
            "UsageTable"
        )),
        "{denials:?}"
    );
    assert!(
        denials
            .iter()
            .all(|d| d.2 == "dynamodb:PutItem" && d.3 == "UsageTable"),
        "{denials:?}"
    );
}

#[tokio::test]
async fn notify_publishes_an_alert_only_with_sns_publish_on_the_alerts_topic() {
    for revoked in [false, true] {
        let revoke = if revoked {
            vec![Revoke::action("NotifyFunction", "sns:Publish")]
        } else {
            vec![]
        };
        let t = TestStack::with_revoked(revoke).await;
        t.put_account("acme", "mid_market").await;
        let body = json!({"account": "acme", "meter": "api_calls", "limit": 100, "period": "calendar_month",
                          "time_zone": "UTC", "thresholds": [80]});
        let (status, v) = t.put_entitlement("acme-ent", &body.to_string()).await;
        assert_eq!(status, 201, "{v}");
        let inbox = t
            .stack
            .subscribe_queue(&e2e::unique("inbox"), None)
            .await
            .expect("inbox");
        let events = json!([{"id": "w1", "account": "acme", "meter": "api_calls", "quantity": 85,
                             "timestamp": now_rfc3339()}]);
        let (status, v) = t.post_events(&events.to_string()).await;
        assert_eq!(status, 202, "{v}");
        assert_eq!(t.drain().await.failed, 0);
        let stats = t.drain_alerts().await;
        let delivered = t.take_all(&inbox).await;
        if revoked {
            assert_eq!(
                stats.failed, stats.received,
                "every alert stays queued for a retry"
            );
            assert!(stats.received > 0);
            assert!(delivered.is_empty(), "{delivered:?}");
            assert_eq!(
                t.denials(),
                vec![denial(
                    "NotifyFunction",
                    "Publish",
                    "sns:Publish",
                    "AlertsTopic"
                )]
            );
        } else {
            assert_eq!(stats.failed, 0);
            assert_eq!(delivered.len(), 1, "the 80 % warning goes out at once");
            assert_eq!(t.denials(), vec![]);
        }
    }
}
