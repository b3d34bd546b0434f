//! Defect 7 (unbounded reads): usage ranges are capped per granularity, audit runs are
//! capped to a month and paged, and definitions and change logs are paged, against
//! the emulator.

use chrono::{Duration, Utc};
use e2e::TestStack;
use serde_json::{json, Value};

/// Follows `next_cursor` from `first` (a path with `?`), collecting `field` of every page.
async fn all_pages(t: &TestStack, first: &str, field: &str) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut pages = 0;
    let mut path = first.to_owned();
    loop {
        let (s, page) = t.call("GET", &path, None).await;
        assert_eq!(s, 200, "{path}: {page}");
        pages += 1;
        out.extend(page[field].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("{first}&cursor={c}"),
            None => break,
        }
        assert!(pages < 100, "paging does not end");
    }
    (out, pages)
}

async fn refused(t: &TestStack, path: &str) -> (u16, String) {
    let (s, v) = t.call("GET", path, None).await;
    (s, v["error"]["code"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn usage_over_a_century_and_a_half_by_month_is_refused_as_range_too_large() {
    let t = TestStack::fresh().await;
    t.put_account("acme", "smb").await;
    for path in [
        "/v1/accounts/acme/usage?granularity=month&from=1876-01-01&to=2026-01-01",
        "/v1/accounts/acme/usage?granularity=day&from=2020-01-01&to=2026-01-01",
        "/v1/accounts/acme/usage?granularity=hour&from=2026-01-01&to=2026-03-01",
        "/v1/segments/smb/usage?granularity=month&from=2000-01-01&to=2026-01-01",
    ] {
        assert_eq!(
            refused(&t, path).await,
            (400, "range_too_large".to_owned()),
            "{path}"
        );
    }
    let (s, v) = t
        .call(
            "GET",
            "/v1/accounts/acme/usage?granularity=month&from=2023-01-01&to=2026-01-01",
            None,
        )
        .await;
    assert_eq!(s, 200, "36 months by month is within the cap: {v}");
    assert_eq!(v["series"].as_array().map(Vec::len), Some(36));
}

#[tokio::test]
async fn definitions_are_listed_page_by_page_in_meter_order() {
    let t = TestStack::fresh().await;
    for i in 0..5 {
        let (s, v) = t
            .call(
                "PUT",
                &format!("/v1/definitions/paged_{i}"),
                Some(&json!({"unit": "call"}).to_string()),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let (_, everything) = t.call("GET", "/v1/definitions?limit=200", None).await;
    let total = everything["definitions"].as_array().map(Vec::len).unwrap();
    assert!(total >= 5, "{everything}");
    assert!(everything["next_cursor"].is_null(), "{everything}");

    let (_, first) = t.call("GET", "/v1/definitions?limit=2", None).await;
    assert_eq!(
        first["definitions"].as_array().map(Vec::len),
        Some(2),
        "{first}"
    );
    assert!(first["next_cursor"].is_string(), "{first}");

    let (defs, pages) = all_pages(&t, "/v1/definitions?limit=2", "definitions").await;
    let meters: Vec<&str> = defs.iter().filter_map(|d| d["meter"].as_str()).collect();
    let mut sorted = meters.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(meters, sorted, "each definition once, in meter order");
    assert_eq!(meters.len(), total);
    assert_eq!(pages, total.div_ceil(2));
    for i in 0..5 {
        assert!(meters.contains(&format!("paged_{i}").as_str()));
    }
}

#[tokio::test]
async fn a_change_log_is_listed_page_by_page_oldest_first() {
    let t = TestStack::fresh().await;
    for owner in ["a", "b", "c", "d", "e"] {
        let body = json!({"unit": "file", "owner": format!("{owner}@example.com")});
        let (s, v) = t
            .call("PUT", "/v1/definitions/exports", Some(&body.to_string()))
            .await;
        assert!(s == 200 || s == 201, "{v}");
    }
    let (changes, pages) =
        all_pages(&t, "/v1/definitions/exports/changes?limit=2", "changes").await;
    assert_eq!(pages, 3);
    let owners: Vec<&str> = changes
        .iter()
        .filter_map(|c| c["after"]["owner"].as_str())
        .collect();
    assert_eq!(
        owners,
        vec![
            "a@example.com",
            "b@example.com",
            "c@example.com",
            "d@example.com",
            "e@example.com"
        ]
    );
    assert_eq!(changes[0]["action"], "created");
}

#[tokio::test]
async fn audit_runs_are_paged_and_a_range_of_years_is_refused() {
    let t = TestStack::fresh().await;
    let start = Utc::now() - Duration::hours(3);
    for h in 0..3 {
        t.stack
            .audit
            .run_tenant(&t.tenant, start + Duration::hours(h), None)
            .await
            .unwrap();
    }
    let from = (start - Duration::minutes(1)).format("%Y-%m-%dT%H:%M:%SZ");
    let to = (start + Duration::hours(3)).format("%Y-%m-%dT%H:%M:%SZ");
    let first = format!("/v1/audits?from={from}&to={to}&limit=2");
    let (s, page) = t.call("GET", &first, None).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["runs"].as_array().map(Vec::len), Some(2), "{page}");
    assert_eq!(page["trend"]["findings"].as_array().map(Vec::len), Some(2));
    let (runs, pages) = all_pages(&t, &first, "runs").await;
    assert_eq!((runs.len(), pages), (3, 2));
    let at: Vec<&str> = runs.iter().filter_map(|r| r["run_at"].as_str()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "oldest first: {at:?}");

    assert_eq!(
        refused(&t, "/v1/audits?from=2020-01-01&to=2026-01-01").await,
        (400, "range_too_large".to_owned())
    );
    // A cursor of this range used with another range is not one the API returned.
    let cursor = page["next_cursor"].as_str().unwrap();
    assert_eq!(
        refused(
            &t,
            &format!("/v1/audits?from=2020-01-01&to=2020-01-02&cursor={cursor}")
        )
        .await,
        (400, "invalid_cursor".to_owned())
    );
}

#[tokio::test]
async fn bad_paging_of_definitions_changes_and_audits_is_refused_with_its_code() {
    let t = TestStack::fresh().await;
    let (s, v) = t
        .call(
            "PUT",
            "/v1/definitions/exports",
            Some(&json!({"unit": "file"}).to_string()),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    for (path, code) in [
        ("/v1/definitions?limit=0", "invalid_parameter"),
        ("/v1/definitions?limit=201", "invalid_parameter"),
        ("/v1/definitions?limit=1&limit=2", "invalid_parameter"),
        ("/v1/definitions?cursor=@@", "invalid_cursor"),
        ("/v1/definitions?cursor=", "invalid_cursor"),
        ("/v1/definitions?status=active", "unknown_parameter"),
        (
            "/v1/definitions/exports/changes?limit=201",
            "invalid_parameter",
        ),
        (
            "/v1/definitions/exports/changes?cursor=@@",
            "invalid_cursor",
        ),
        (
            "/v1/definitions/exports/changes?since=1",
            "unknown_parameter",
        ),
        ("/v1/audits?limit=51", "invalid_parameter"),
        ("/v1/audits?cursor=@@", "invalid_cursor"),
        (
            "/v1/definitions/exports/quarantine?cursor=",
            "invalid_cursor",
        ),
    ] {
        assert_eq!(refused(&t, path).await, (400, code.to_owned()), "{path}");
    }
}
