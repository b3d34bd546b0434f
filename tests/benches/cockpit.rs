//! `make bench` (cockpit, issue #12), against a simulated store (the in-memory health
//! store), on one thread:
//!
//! 1. The portfolio page (50 rows) with 10,000 scored accounts: the risk index read
//!    (`list_risk`, what `GET /v1/accounts?sort=risk&limit=50` does), the JSON the API
//!    answers serialised and parsed back (as the web function's in-process call does),
//!    the page rendered and gzipped.
//! 2. The account page of an account with 400 days of stored history: latest record,
//!    `health/history` (the API's 90-day default), usage by day over 90 days and by
//!    month over 12 months (5 meters, through the API's own report function), rendered
//!    and gzipped.
//!    Its newest 10 of 50 recorded alerts (in-memory alert history, the API's JSON).
//! 3. Bytes per page, plain and gzipped; the style sheet is the only other resource
//!    (cached for an hour, so a later page costs just its HTML).
//!
//! Figures: median and 95th percentile of 30 runs after 3 warm-ups.

use chrono::{Duration, NaiveDate, Utc};
use domain::health::bands::{BandSummaryStore, DailyBands};
use domain::health::model::Band;
use domain::health::record::HealthRecord;
use domain::health::store::{HealthStore, Save};
use domain::ids::{AccountId, Segment, Stage, TenantId};
use domain::keys::Scope;
use domain::ports::{AlertHistory, RollupRow};
use domain::rollup::{Bucket, RollupKey};
use domain::usage::UsageQuery;
use memory::health::MemoryHealthStore;
use serde_json::{json, Value};
use std::time::Instant;
use web::{Answer, Signed};

const ACCOUNTS: usize = 10_000;
const HISTORY_DAYS: i64 = 400;
const RUNS: usize = 30;
const METERS: [&str; 5] = [
    "api_calls",
    "seats_active",
    "tickets_opened",
    "tickets_resolved",
    "tickets_reopened",
];
const SEGMENTS: [&str; 4] = ["smb", "mid_market", "enterprise", "strategic"];

/// The owner of account `i`: 1 of 40, not correlated with its score.
fn owner_of(i: usize) -> usize {
    (i + i / 1000) % 40
}

fn record(i: usize, day: NaiveDate, score: f64) -> HealthRecord {
    let band = if score < 45.0 {
        "red"
    } else if score < 65.0 {
        "yellow"
    } else {
        "green"
    };
    let metric = |v: f64| json!({"value": v, "normalised": score, "segment_median": v * 1.1, "source": "segment"});
    let component = |w: f64| {
        json!({"score": score, "weight": w, "penalty": 0.0,
               "metrics": {"usage_trend": metric(-0.3), "usage_level": metric(0.4)}})
    };
    serde_json::from_value(json!({
        "account": format!("acct-{i:06}"),
        "segment": SEGMENTS[i % 4],
        "as_of": day,
        "state": "scored",
        "score": score,
        "band": band,
        "components": {"usage_trend": component(0.2), "milestones": component(0.05),
                       "friction": component(0.2), "engagement": component(0.55)},
        "reasons": [
            {"code": "usage_down_30d", "impact": -4.3, "detail": "api_calls -54 % vs prior 30 d (700 vs 1118); segment median +13 %"},
            {"code": "ticket_friction_rising", "impact": -6.0, "detail": "tickets +500 % (15 vs 2) while key usage -54 % vs prior 30 d"},
            {"code": "low_active_users", "impact": -6.7, "detail": "3 of 8 peak seats active (14-day average, 36 %); segment median 69 %"},
        ],
        "milestones_reached": {"first_api_calls": day - Duration::days(100)},
        "info": {"name": format!("Customer {i}"), "owner": format!("csm-{}@example.com", owner_of(i))},
        "computed_at": Utc::now(),
    }))
    .expect("a health record")
}

fn who(tenant: &TenantId) -> Signed {
    Signed {
        session: web::session::Session {
            t: tenant.to_string(),
            h: "0".repeat(64),
            exp: i64::MAX,
            n: "bench".into(),
        },
        grant: domain::auth::KeyGrant {
            tenant: tenant.clone(),
            key_id: "bench".into(),
            label: "bench".into(),
            scopes: vec![domain::auth::KeyScope::Read],
            created_at: Utc::now(),
            expires_at: None,
            revoked_at: None,
        },
        csrf: "x".repeat(43),
    }
}

/// What the web function does with an API answer: JSON text parsed back.
fn answer(v: Value) -> Answer {
    let text = v.to_string();
    Answer {
        status: 200,
        body: serde_json::from_str(&text).expect("json"),
    }
}

fn sizes(resp: lambda_http::Response<lambda_http::Body>) -> usize {
    match resp.body() {
        lambda_http::Body::Text(t) => t.len(),
        lambda_http::Body::Binary(b) => b.len(),
        _ => 0,
    }
}

fn stats(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[(ms.len() * 95).div_ceil(100) - 1])
}

fn usage_rows(account: &AccountId, from: NaiveDate, to: NaiveDate) -> Vec<RollupRow> {
    let mut out = Vec::new();
    let mut day = from;
    let mut n = 0u64;
    while day <= to {
        for m in METERS {
            n += 1;
            let q = rust_decimal::Decimal::from((n * 7919) % 500);
            let mut hours = [Bucket::default(); 24];
            for (h, b) in hours.iter_mut().enumerate().skip(8).take(10) {
                *b = Bucket {
                    quantity: q / rust_decimal::Decimal::from(10),
                    events: (h % 3) as i64 + 1,
                };
            }
            out.push(RollupRow {
                key: RollupKey {
                    scope: Scope::Account(account.clone()),
                    day,
                    meter: domain::ids::MeterName::parse(m).expect("meter"),
                    stage: Stage::ALL[(n % 3) as usize],
                    service_line: domain::ids::ServiceLine::default_line(),
                },
                total: Bucket {
                    quantity: q,
                    events: 20,
                },
                hours,
            });
        }
        day += Duration::days(1);
    }
    out
}

fn usage(account: &AccountId, granularity: &str, by_meter: bool) -> Value {
    let now = Utc::now();
    let (from, to) = web::usage_window(granularity, now);
    let mut params = vec![
        ("granularity".to_owned(), granularity.to_owned()),
        ("from".to_owned(), from),
        ("to".to_owned(), to),
    ];
    if by_meter {
        params.push(("group_by".to_owned(), "meter,stage".to_owned()));
    }
    let q = UsageQuery::parse(&params, now).expect("usage query");
    let (from, to) = q.days();
    api::report(
        json!({"account": account}),
        &q,
        &usage_rows(account, from, to),
    )
}

/// A limit alert of the account, the `i`-th in time.
fn limit_alert(tenant: &TenantId, account: &AccountId, i: usize) -> domain::alert::Alert {
    use domain::alert::{Alert, AlertKind, Severity};
    let threshold = [80, 90, 100][i % 3];
    Alert {
        key: format!("limit:ent-{i}:2026-11-01:threshold:{threshold}"),
        kind: AlertKind::Limit,
        code: "threshold_crossed".into(),
        severity: if threshold >= 100 {
            Severity::Critical
        } else {
            Severity::Warning
        },
        tenant: tenant.clone(),
        account: account.clone(),
        account_name: Some("History Corp".into()),
        segment: domain::ids::Segment::MidMarket,
        owner: Some("csm@example.com".into()),
        crm_url: None,
        entitlement: Some(format!("ent-{i}")),
        meters: vec![domain::ids::MeterName::parse("api_calls").expect("a meter")],
        threshold: Some(threshold),
        period_start: Utc::now().date_naive() - Duration::days(20),
        period_end: Utc::now().date_naive() + Duration::days(10),
        time_zone: "UTC".into(),
        used: (threshold * 1_000).into(),
        limit: 100_000.into(),
        percent: threshold.into(),
        projected: 130_000.into(),
        late: false,
        raised_at: Utc::now() - Duration::hours(i as i64),
        reasons: Vec::new(),
        detail: None,
    }
}

const BIG: usize = 100_000;

fn score_of(i: usize) -> f64 {
    ((i * 7919) % 1000) as f64 / 10.0
}

fn band_of(score: f64) -> Band {
    if score < 45.0 {
        Band::Red
    } else if score < 65.0 {
        Band::Yellow
    } else {
        Band::Green
    }
}

fn segment_of(i: usize) -> Segment {
    Segment::ALL[i % 4]
}

fn account_of(i: usize) -> AccountId {
    AccountId::parse(&format!("acct-{i:06}")).expect("an account id")
}

/// Stores scored accounts `range` (one in ten in another band four days ago, so its
/// band changed today).
async fn fill(
    store: &MemoryHealthStore,
    tenant: &TenantId,
    range: std::ops::Range<usize>,
    today: NaiveDate,
) {
    let ids: Vec<usize> = range.collect();
    for chunk in ids.chunks(500) {
        let records: Vec<HealthRecord> = chunk
            .iter()
            .map(|i| {
                let mut r = record(*i, today, score_of(*i));
                if i % 10 == 3 {
                    r.recent = vec![domain::health::record::RecentScore {
                        as_of: today - Duration::days(4),
                        score: 90.0,
                        band: if r.band == Some(Band::Green) {
                            Band::Red
                        } else {
                            Band::Green
                        },
                    }];
                }
                r
            })
            .collect();
        let saves: Vec<Save> = records
            .iter()
            .map(|r| Save {
                record: r,
                previous_slot: None,
            })
            .collect();
        store.save_records(tenant, &saves).await.expect("save");
    }
}

/// The portfolio page as the web function makes it: the API's risk listing (through
/// `list_risk_in` when filtered by owner or band change, as the API does) and `GET /v1/health/bands`,
/// each as JSON parsed back, then the page rendered and gzipped.
struct Portfolio<'a> {
    store: &'a MemoryHealthStore,
    summaries: &'a memory::MemoryBandSummaries,
    tenant: &'a TenantId,
    who: &'a Signed,
    today: NaiveDate,
}

impl Portfolio<'_> {
    async fn render(
        &self,
        f: &web::pages::PortfolioFilters,
        cursor: Option<String>,
    ) -> (lambda_http::Response<lambda_http::Body>, usize) {
        let bands: Vec<Band> = f
            .band
            .as_deref()
            .and_then(Band::parse)
            .into_iter()
            .collect();
        let segment = f.segment.as_deref().and_then(Segment::parse);
        let owner = f.owner.clone();
        let within = f.changed_this_week.then_some(7);
        let body = if owner.is_none() && within.is_none() {
            let page = self
                .store
                .list_risk(
                    self.tenant,
                    segment,
                    &bands,
                    web::PAGE_ROWS,
                    cursor.as_deref(),
                )
                .await
                .expect("risk page");
            json!({"accounts": page.items, "next_cursor": page.next, "sorted_by": "risk"})
        } else {
            // As the API does: the owner's or the window's partitions of the index.
            let sel = api::risk_select(segment, &bands, owner, within, self.today);
            let page = self
                .store
                .list_risk_in(
                    self.tenant,
                    &sel,
                    self.today,
                    web::PAGE_ROWS,
                    cursor.as_deref(),
                )
                .await
                .expect("filtered risk page");
            json!({"accounts": page.items, "next_cursor": page.next, "sorted_by": "risk"})
        };
        let rows = body["accounts"].as_array().map_or(0, Vec::len);
        let from = self.today - Duration::days(domain::health::bands::BAND_CHART_DAYS - 1);
        let days = self
            .summaries
            .band_summaries(self.tenant, from, self.today)
            .await
            .expect("band summaries");
        let bands = answer(api::bands::bands_body(from, self.today, &days));
        let markup = web::pages::portfolio(self.who, f, &answer(body), &bands);
        (web::html(200, markup), rows)
    }

    /// Prints the median and p95 of [`RUNS`] renders after 3 warm-ups, and what one
    /// render read from the store (DynamoDB Query requests the same reads would be).
    async fn time(&self, what: &str, f: &web::pages::PortfolioFilters, cursor: Option<String>) {
        let mut times = Vec::new();
        let (mut plain, mut gz, mut rows, mut reads) = (0, 0, 0, 0);
        for run in 0..RUNS + 3 {
            let before = self.store.reads.load(std::sync::atomic::Ordering::Relaxed);
            let t0 = Instant::now();
            let (page, n) = self.render(f, cursor.clone()).await;
            gz = sizes(web::compress(page));
            let took = t0.elapsed().as_secs_f64() * 1000.0;
            reads = self.store.reads.load(std::sync::atomic::Ordering::Relaxed) - before;
            rows = n;
            plain = sizes(self.render(f, cursor.clone()).await.0);
            if run >= 3 {
                times.push(took);
            }
        }
        let (p50, p95) = stats(times);
        println!(
            "{what}: median {p50:.2} ms, p95 {p95:.2} ms (target <= 150 ms); {rows} rows, {reads} index queries; {plain} bytes, {gz} gzipped"
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let tenant = TenantId::parse("bench").unwrap();
    let store = MemoryHealthStore::with_tenants(std::slice::from_ref(&tenant));
    let today = Utc::now().date_naive();
    let who = who(&tenant);

    // 90 days of band summaries (what the score run writes), as the API answers them.
    let summaries = memory::MemoryBandSummaries::default();
    for back in 0..domain::health::bands::BAND_CHART_DAYS {
        let day = today - Duration::days(back);
        let counts = (0..ACCOUNTS).map(|i| {
            let score = ((i * 7919 + back as usize * 13) % 1000) as f64 / 10.0;
            (segment_of(i), Some(band_of(score)))
        });
        summaries
            .put_band_summary(&tenant, &DailyBands::count(day, "bench", counts))
            .await
            .expect("a summary");
    }

    // 10,000 scored accounts in the risk index.
    fill(&store, &tenant, 0..ACCOUNTS, today).await;
    let all = web::pages::PortfolioFilters::default();
    let view = Portfolio {
        store: &store,
        summaries: &summaries,
        tenant: &tenant,
        who: &who,
        today,
    };
    view.time(
        &format!("portfolio page, 50 of {ACCOUNTS} scored accounts"),
        &all,
        None,
    )
    .await;

    // 100,000: the first page, the last page, and the filtered views.
    let big = MemoryHealthStore::with_tenants(std::slice::from_ref(&tenant));
    fill(&big, &tenant, 0..BIG, today).await;
    println!(
        "risk index: {} items for {BIG} scored accounts ({} (segment, band) entries; the rest \
         in owner and band-change partitions), each one put per daily score",
        big.risk_items(),
        big.risk_entries()
    );
    let view = Portfolio {
        store: &big,
        ..view
    };
    let deep = |skip: usize, keep: &dyn Fn(usize) -> bool| -> Option<String> {
        // The cursor of the row before the deep page: the sort key the store pages by.
        let mut keys: Vec<String> = (0..BIG)
            .filter(|i| keep(*i))
            .map(|i| domain::keys::health_risk_sk(score_of(i), &account_of(i)))
            .collect();
        keys.sort();
        keys.get(keys.len().saturating_sub(skip)).cloned()
    };
    let f = |q: &str| web::pages::PortfolioFilters::from_query(q);
    println!("-- {BIG} scored accounts --");
    view.time("portfolio page 1", &all, None).await;
    view.time(
        "portfolio last page",
        &all,
        deep(web::PAGE_ROWS + 1, &|_| true),
    )
    .await;
    view.time("band=red page 1", &f("band=red"), None).await;
    view.time(
        "band=red last page",
        &f("band=red"),
        deep(web::PAGE_ROWS + 1, &|i| band_of(score_of(i)) == Band::Red),
    )
    .await;
    view.time("segment=smb page 1", &f("segment=smb"), None)
        .await;
    view.time(
        "segment=smb,band=red last page",
        &f("segment=smb&band=red"),
        deep(web::PAGE_ROWS + 1, &|i| {
            segment_of(i) == Segment::Smb && band_of(score_of(i)) == Band::Red
        }),
    )
    .await;
    view.time(
        "owner (1 of 40 owners) page 1",
        &f("owner=csm-7%40example.com"),
        None,
    )
    .await;
    view.time(
        "owner (1 of 40 owners) last page",
        &f("owner=csm-7%40example.com"),
        deep(web::PAGE_ROWS + 1, &|i| owner_of(i) == 7),
    )
    .await;
    view.time(
        "owner + band=red page 1",
        &f("owner=csm-7%40example.com&band=red"),
        None,
    )
    .await;
    view.time("changed band this week page 1", &f("changed=week"), None)
        .await;
    view.time(
        "changed band this week last page",
        &f("changed=week"),
        deep(web::PAGE_ROWS + 1, &|i| i % 10 == 3),
    )
    .await;
    view.time(
        "owner + changed band this week page 1",
        &f("owner=csm-7%40example.com&changed=week"),
        None,
    )
    .await;

    // One account with 400 days of history.
    let account = AccountId::parse("acct-history").unwrap();
    let mut previous: Option<HealthRecord> = None;
    for back in (0..HISTORY_DAYS).rev() {
        let mut r = record(1, today - Duration::days(back), 30.0 + (back % 50) as f64);
        r.account = account.clone();
        let slot = previous
            .as_ref()
            .and_then(domain::health::store::RiskSlot::of);
        store
            .save_records(
                &tenant,
                &[Save {
                    record: &r,
                    previous_slot: slot,
                }],
            )
            .await
            .expect("history");
        previous = Some(r);
    }
    let profile = answer(
        json!({"account": account, "name": "History Corp", "segment": "mid_market",
        "owner_email": "csm@example.com", "onboarding_date": (today - Duration::days(HISTORY_DAYS)).to_string(),
        "crm_ids": {}, "created_at": Utc::now(), "updated_at": Utc::now()}),
    );
    let config = answer(json!({"config": domain::health::config::HealthConfig::default()}));
    let ents = answer(json!({"account": account, "entitlements": []}));
    // A full history of alerts, of which the page shows the newest.
    let alert_history = memory::MemoryAlertHistory::default();
    for i in 0..domain::alert::RECENT_ALERTS_KEPT {
        alert_history
            .record_alert(&limit_alert(&tenant, &account, i))
            .await
            .expect("an alert");
    }
    for granularity in ["day", "month"] {
        let mut times = Vec::new();
        let (mut plain, mut gz) = (0, 0);
        for run in 0..RUNS + 3 {
            let t0 = Instant::now();
            let latest = store
                .latest(&tenant, std::slice::from_ref(&account))
                .await
                .expect("latest")
                .remove(&account)
                .expect("a latest record");
            let history = store
                .history(&tenant, &account, today - Duration::days(90), today)
                .await
                .expect("history");
            let days: Vec<Value> = history
                .iter()
                .map(|r| {
                    json!({"as_of": r.as_of, "state": r.state, "score": r.score, "band": r.band,
                           "components": r.components.iter().map(|(c, v)| (c, v.score)).collect::<std::collections::BTreeMap<_, _>>(),
                           "reasons": r.reasons.iter().take(5).collect::<Vec<_>>()})
                })
                .collect();
            let health = answer(serde_json::to_value(&latest).expect("record"));
            let history = answer(json!({"account": account, "history": days}));
            let totals = answer(usage(&account, granularity, false));
            let by_meter = answer(usage(&account, granularity, true));
            let recent = alert_history
                .recent_alerts(&tenant, &account, web::ALERTS_SHOWN, Utc::now())
                .await
                .expect("recent alerts");
            let alerts = answer(api::alerts_body(&account, &recent));
            let page = web::pages::AccountPage {
                account: account.as_str(),
                granularity,
                profile: &profile,
                health: &health,
                history: &history,
                usage: &totals,
                by_meter: &by_meter,
                entitlements: &ents,
                config: &config,
                alerts: &alerts,
            };
            let markup = web::pages::account(&who, &page);
            gz = sizes(web::compress(web::html(200, markup)));
            let took = t0.elapsed().as_secs_f64() * 1000.0;
            plain = sizes(web::html(200, web::pages::account(&who, &page)));
            if run >= 3 {
                times.push(took);
            }
        }
        let (p50, p95) = stats(times);
        println!(
            "account page ({granularity}), {HISTORY_DAYS} days of history: median {p50:.2} ms, p95 {p95:.2} ms; {plain} bytes, {gz} gzipped"
        );
    }
    let css = web::pages::CSS.len();
    let css_gz = sizes(web::compress(
        lambda_http::Response::builder()
            .body(lambda_http::Body::Text(web::pages::CSS.to_owned()))
            .expect("a response"),
    ));
    println!(
        "style sheet: {css} bytes, {css_gz} gzipped (cached 1 h): first load = page + style sheet, later pages = the page only (targets <= 250 KB / <= 50 KB)"
    );
}
