//! The CS cockpit (`/app`) driven in a real headless Chromium through chromedriver
//! (Debian's `chromium` and `chromium-driver`), against the local stack's front door
//! with generated demo data. Screenshots of every page go to tests/screenshots/, and
//! axe-core (npm, tests/axe) checks each page for serious or critical violations.

use domain::ids::TenantId;
use e2e::TestStack;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const CHROMEDRIVER: &str = "chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver on a free port; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn driver() -> Driver {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "the browser tests need {CHROMIUM}: apt-get install -y chromium chromium-driver (.ci/run does)"
    );
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "the browser tests need Chromium and chromedriver ({CHROMEDRIVER}: {e}). \
                 Install them with: apt-get install -y chromium chromium-driver (.ci/run does)"
            )
        });
    let d = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on port {port} within 10 s");
}

async fn browser(d: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": CHROMIUM, "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
               "--disable-gpu", "--window-size=1280,1100"]}),
    );
    // fantoccini's rustls feature links aws-lc besides the workspace's `ring`; with two
    // providers rustls chooses none by itself, so the process picks `ring` (the SDK's).
    let _ = rustls::crypto::ring::default_provider().install_default();
    ClientBuilder::rustls()
        .expect("TLS for the WebDriver client")
        .capabilities(caps)
        .connect(&d.url)
        .await
        .expect("a Chromium session through chromedriver")
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("screenshots");
    std::fs::create_dir_all(&dir).expect("tests/screenshots");
    dir
}

/// A screenshot of the whole page (the window is made as tall as the page).
async fn shoot(c: &Client, name: &str) {
    let height = c
        .execute("return document.documentElement.scrollHeight", vec![])
        .await
        .ok()
        .and_then(|v| v.as_u64())
        .unwrap_or(1100)
        .clamp(600, 6000) as u32;
    c.set_window_size(1280, height + 140).await.ok();
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshots().join(format!("{name}.png")), png).expect("writing a screenshot");
}

/// axe-core (tests/axe/node_modules, installed by `make test`) run on the page: the
/// serious and critical violations, as "rule: help (n nodes)".
async fn axe(c: &Client) -> Vec<String> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("axe/node_modules/axe-core/axe.min.js");
    let src = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core is missing ({}: {e}); `make test` installs it (cd tests/axe && npm ci)",
            path.display()
        )
    });
    c.execute(&src, vec![]).await.expect("injecting axe-core");
    let result = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length})))).catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: 0}]));",
            vec![],
        )
        .await
        .expect("running axe-core");
    result
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .map(|v| format!("{}: {} ({} nodes)", v["id"], v["help"], v["nodes"]))
        .collect()
}

async fn assert_accessible(c: &Client, page: &str) {
    let violations = axe(c).await;
    assert!(
        violations.is_empty(),
        "{page}: serious or critical accessibility violations: {violations:#?}"
    );
}

async fn api(stack: &local::stack::Stack, key: &str, method: &str, path: &str) -> (u16, Value) {
    let req = lambda_http::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .body(lambda_http::Body::Empty)
        .expect("request");
    e2e::decode(stack.api.handle(req).await)
}

/// How many changes the registry's change log holds for a meter.
async fn changes(stack: &local::stack::Stack, key: &str, meter: &str) -> usize {
    let (s, v) = api(
        stack,
        key,
        "GET",
        &format!("/v1/definitions/{meter}/changes"),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["changes"].as_array().map_or(0, Vec::len)
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

/// The quality page's live count of reports_exported's held events.
const HELD_NOW: &str = "#quarantine tr[data-meter=reports_exported] td[data-held-now]";

async fn attr(c: &Client, css: &str, name: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .attr(name)
        .await
        .expect("attribute")
        .unwrap_or_default()
}

async fn sign_in(c: &Client, base: &str, key: &str) {
    c.goto(&format!("{base}/app/sign-in"))
        .await
        .expect("sign-in page");
    c.find(Locator::Id("key"))
        .await
        .expect("key field")
        .send_keys(key)
        .await
        .expect("typing the key");
    c.find(Locator::Css("form.sign-in button"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("signing in");
    c.wait()
        .for_url(&url_of(&format!("{base}/app/portfolio")))
        .await
        .expect("the portfolio after signing in");
}

/// Clicks an element and waits until the browser is at `url`.
async fn click_to(c: &Client, css: &str, url: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    c.wait()
        .for_url(&url_of(url))
        .await
        .unwrap_or_else(|e| panic!("{url} after clicking {css}: {e}"));
}

fn url_of(s: &str) -> url::Url {
    url::Url::parse(s).expect("url")
}

/// Submits a form the page does not offer, built in the page (with the session's CSRF
/// token unless told otherwise), and answers the status the refusal page reports.
async fn forge_post(c: &Client, base: &str, action: &str, with_csrf: bool) -> String {
    c.execute(
        "const [action, withCsrf] = arguments;
         const f = document.createElement('form');
         f.method = 'post'; f.action = action;
         if (withCsrf) {
           const i = document.createElement('input');
           i.type = 'hidden'; i.name = 'csrf';
           i.value = document.querySelector('meta[name=csrf-token]').content;
           f.appendChild(i);
         }
         document.body.appendChild(f); f.submit();",
        vec![json!(action), json!(with_csrf)],
    )
    .await
    .expect("submitting a forged form");
    c.wait()
        .for_url(&url_of(&format!("{base}{action}")))
        .await
        .expect("the answer to the forged form");
    attr(c, "p.error", "data-status").await
}

#[tokio::test]
async fn a_csm_signs_in_with_a_read_key_finds_the_decaying_accounts_first_sees_why_and_cannot_change_anything(
) {
    let drv = driver().await;
    let ts = TestStack::fresh().await;
    let tenant = TenantId::parse("demo").unwrap();
    let demo = local::demo::load(&ts.stack, &tenant, 8)
        .await
        .expect("demo data");
    ts.drain_all(Duration::from_secs(3)).await;
    // Eight days ago the decaying accounts were scored green (as that day's run would
    // have stored them): today's run finds them red, trending down, band changed.
    let week_ago = chrono::Utc::now().date_naive() - chrono::Duration::days(8);
    for d in &demo.decaying {
        let (s, profile) = api(&ts.stack, &demo.key, "GET", &format!("/v1/accounts/{d}")).await;
        assert_eq!(s, 200, "{profile}");
        let earlier: domain::health::record::HealthRecord = serde_json::from_value(json!({
            "account": d, "segment": profile["segment"], "as_of": week_ago, "state": "scored",
            "score": 82.0, "band": "green",
            "recent": [{"as_of": week_ago, "score": 82.0, "band": "green"}],
            "info": {"name": profile["name"], "owner": profile["owner_email"]},
            "computed_at": chrono::Utc::now(),
        }))
        .expect("a record");
        domain::health::store::HealthStore::save_records(
            ts.stack.store.as_ref(),
            &tenant,
            &[domain::health::store::Save {
                record: &earlier,
                previous_slot: None,
            }],
        )
        .await
        .expect("last week's score");
    }
    ts.stack
        .scheduler
        .run_now("score", Some(&tenant))
        .await
        .expect("a score job")
        .expect("the score run starts");
    ts.drain_score().await;
    ts.drain_alerts().await;
    // The run summarised today's bands; eight days ago (as that day's run would have
    // written it) the decaying accounts were counted green.
    let today_bands = domain::health::bands::BandSummaryStore::band_summaries(
        ts.stack.store.as_ref(),
        &tenant,
        chrono::Utc::now().date_naive(),
        chrono::Utc::now().date_naive(),
    )
    .await
    .expect("band summaries")
    .pop()
    .expect("the score run wrote today's band counts");
    let mut earlier = today_bands.clone();
    earlier.as_of = week_ago;
    earlier.run = "earlier".into();
    for c in earlier.segments.values_mut() {
        c.green = c.green.saturating_add(c.red);
        c.red = 0;
    }
    domain::health::bands::BandSummaryStore::put_band_summary(
        ts.stack.store.as_ref(),
        &tenant,
        &earlier,
    )
    .await
    .expect("last week's band counts");
    let stack = Arc::new(ts.stack);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = local::server::router(stack.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let c = browser(&drv).await;

    // Signed out, /app leads to the sign-in form.
    c.goto(&format!("{base}/app")).await.expect("/app");
    assert_eq!(c.current_url().await.unwrap().path(), "/app/sign-in");
    shoot(&c, "sign-in").await;
    assert_accessible(&c, "sign-in").await;

    // A read key signs in; the decaying accounts lead the portfolio, red, in words.
    sign_in(&c, &base, &demo.read_key).await;
    let rows = c.find_all(Locator::Css("tr[data-account]")).await.unwrap();
    let mut ids = Vec::new();
    for r in &rows {
        ids.push(r.attr("data-account").await.unwrap().unwrap_or_default());
    }
    let mut top: Vec<String> = ids.iter().take(demo.decaying.len()).cloned().collect();
    top.sort();
    let mut decaying = demo.decaying.clone();
    decaying.sort();
    assert_eq!(top, decaying, "portfolio order {ids:?}");
    let first_band = text(&c, "tr[data-account] .band").await;
    assert_eq!(first_band, "At risk");
    // The page and curl agree: the same order and scores as GET /v1/accounts.
    let (s, listed) = api(
        &stack,
        &demo.read_key,
        "GET",
        "/v1/accounts?sort=risk&limit=50",
    )
    .await;
    assert_eq!(s, 200, "{listed}");
    let api_ids: Vec<&str> = listed["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["account"].as_str())
        .collect();
    assert_eq!(ids, api_ids);
    let first_score = text(&c, "tr[data-account] td.num").await;
    assert_eq!(
        first_score,
        format!("{:.1}", listed["accounts"][0]["score"].as_f64().unwrap())
    );
    // Each row's 7-day trend and days to renewal are the API's numbers.
    let first = &listed["accounts"][0];
    assert_eq!(
        attr(&c, "tr[data-account] td.trend span", "data-change").await,
        format!("{:.1}", first["change_7d"].as_f64().unwrap())
    );
    assert!(
        first["change_7d"].as_f64().unwrap() < -20.0,
        "down from 82: {first}"
    );
    assert_eq!(
        attr(&c, "tr[data-account] td.trend span", "class").await,
        "trend-down"
    );
    let renewal = first["renewal_date"].as_str().unwrap();
    assert_eq!(
        attr(&c, "tr[data-account] td[data-renewal]", "data-renewal").await,
        renewal
    );
    let days = (chrono::NaiveDate::parse_from_str(renewal, "%Y-%m-%d").unwrap()
        - chrono::Utc::now().date_naive())
    .num_days();
    assert_eq!(
        text(&c, "tr[data-account] td[data-renewal]").await,
        format!("{days} days")
    );
    // Band counts per segment: the page shows GET /v1/health/bands, and its red count
    // is the red rows of the risk listing; the chart draws both summarised days.
    let (s, bands) = api(&stack, &demo.read_key, "GET", "/v1/health/bands").await;
    assert_eq!(s, 200, "{bands}");
    let segments = bands["latest"]["segments"].as_object().expect("segments");
    assert!(!segments.is_empty(), "{bands}");
    for (seg, counts) in segments {
        for band in ["red", "yellow", "green", "insufficient"] {
            assert_eq!(
                attr(
                    &c,
                    &format!("table.bands tr[data-segment={seg}] td[data-band={band}]"),
                    "data-count"
                )
                .await,
                counts[band].to_string(),
                "{seg} {band}"
            );
        }
    }
    let red_rows = listed["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["band"] == "red")
        .count();
    assert_eq!(
        attr(
            &c,
            "table.bands tr[data-segment=all] td[data-band=red]",
            "data-count"
        )
        .await,
        red_rows.to_string()
    );
    assert!(red_rows >= demo.decaying.len());
    assert_eq!(attr(&c, "svg#band-chart", "data-points").await, "2");
    assert_eq!(
        attr(&c, "svg#band-chart g[data-series='At risk']", "data-last").await,
        red_rows.to_string()
    );
    let chart = c
        .find(Locator::Css("svg#band-chart desc"))
        .await
        .expect("the chart's description")
        .prop("textContent")
        .await
        .expect("textContent")
        .unwrap_or_default();
    assert!(
        chart.contains(&format!("At risk 0 to {red_rows}")),
        "the red count rose from 0: {chart}"
    );
    shoot(&c, "portfolio").await;
    assert_accessible(&c, "portfolio").await;

    // "Changed band this week": the decaying accounts, green a week ago, and no other.
    c.find(Locator::Id("changed"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click_to(
        &c,
        "form.filters button",
        &format!("{base}/app/portfolio?band=&segment=&owner=&changed=week"),
    )
    .await;
    let mut changed = Vec::new();
    for r in c.find_all(Locator::Css("tr[data-account]")).await.unwrap() {
        changed.push(r.attr("data-account").await.unwrap().unwrap_or_default());
    }
    changed.sort();
    assert_eq!(changed, decaying);
    let (_, week) = api(
        &stack,
        &demo.read_key,
        "GET",
        "/v1/accounts?sort=risk&limit=50&band_changed_within=7",
    )
    .await;
    assert_eq!(
        week["accounts"].as_array().map(Vec::len),
        Some(decaying.len())
    );

    // One owner's accounts: every row is theirs, as the API lists them.
    let owner = first["owner"].as_str().unwrap().to_owned();
    c.goto(&format!("{base}/app/portfolio")).await.unwrap();
    c.find(Locator::Id("owner"))
        .await
        .unwrap()
        .send_keys(&owner)
        .await
        .unwrap();
    click_to(
        &c,
        "form.filters button",
        &format!(
            "{base}/app/portfolio?band=&segment=&owner={}",
            owner.replace('@', "%40")
        ),
    )
    .await;
    let (_, theirs) = api(
        &stack,
        &demo.read_key,
        "GET",
        &format!(
            "/v1/accounts?sort=risk&limit=50&owner={}",
            owner.replace('@', "%40")
        ),
    )
    .await;
    let rows = c.find_all(Locator::Css("tr[data-account]")).await.unwrap();
    assert_eq!(
        rows.len(),
        theirs["accounts"].as_array().map_or(0, Vec::len),
        "{theirs}"
    );
    assert!(rows.len() < ids.len(), "the filter leaves others out");
    for r in &rows {
        assert!(r.text().await.unwrap().contains(&owner));
    }
    c.goto(&format!("{base}/app/portfolio")).await.unwrap();

    // Filtered to the red band: only red accounts, the decaying ones among them.
    c.find(Locator::Id("band"))
        .await
        .unwrap()
        .select_by_value("red")
        .await
        .unwrap();
    click_to(
        &c,
        "form.filters button",
        &format!("{base}/app/portfolio?band=red&segment=&owner="),
    )
    .await;
    let mut red = Vec::new();
    for b in c
        .find_all(Locator::Css("tr[data-account] .band"))
        .await
        .unwrap()
    {
        assert_eq!(b.attr("data-band").await.unwrap().as_deref(), Some("red"));
    }
    for r in c.find_all(Locator::Css("tr[data-account]")).await.unwrap() {
        red.push(r.attr("data-account").await.unwrap().unwrap_or_default());
    }
    assert!(decaying.iter().all(|d| red.contains(d)), "{red:?}");
    c.goto(&format!("{base}/app/portfolio")).await.unwrap();

    // The riskiest account: its reasons in words with numbers, and usage that shows.
    let riskiest = ids[0].clone();
    click_to(
        &c,
        "tr[data-account] a",
        &format!("{base}/app/accounts/{riskiest}"),
    )
    .await;
    let reasons = text(&c, "#reasons").await;
    assert!(
        reasons.contains("Usage down over the last 30 days"),
        "{reasons}"
    );
    assert!(
        reasons.contains('%'),
        "reasons carry their numbers: {reasons}"
    );
    // Its milestones: reached as its health record says, the others due or overdue.
    let (s, health) = api(
        &stack,
        &demo.read_key,
        "GET",
        &format!("/v1/accounts/{riskiest}/health"),
    )
    .await;
    assert_eq!(s, 200, "{health}");
    let reached = health["milestones_reached"]
        .as_object()
        .map_or(0, |m| m.len());
    let shown_reached = c
        .find_all(Locator::Css("#milestones td[data-state=reached]"))
        .await
        .unwrap()
        .len();
    assert_eq!(shown_reached, reached, "{health}");
    assert!(
        !c.find_all(Locator::Css("#milestones tr[data-milestone]"))
            .await
            .unwrap()
            .is_empty(),
        "the segment's milestone is listed"
    );
    let mut drawn = 0;
    for bar in c
        .find_all(Locator::Css("svg.chart rect.bar"))
        .await
        .unwrap()
    {
        let v: f64 = bar
            .attr("data-value")
            .await
            .unwrap()
            .unwrap_or_default()
            .parse()
            .unwrap_or(0.0);
        if v > 0.0 {
            drawn += 1;
        }
    }
    assert!(drawn > 30, "daily usage bars with a value: {drawn}");
    shoot(&c, "account-daily").await;
    assert_accessible(&c, "account").await;

    // Monthly: at most 12 windows per chart, and the page says which view it is.
    click_to(
        &c,
        "#g-month",
        &format!("{base}/app/accounts/{riskiest}?granularity=month"),
    )
    .await;
    assert_eq!(attr(&c, "#g-month", "aria-current").await, "page");
    let points: usize = attr(&c, "svg.chart[id^=usage]", "data-points")
        .await
        .parse()
        .unwrap();
    assert_eq!(points, 12);
    let (s, monthly) = api(
        &stack,
        &demo.read_key,
        "GET",
        &format!(
            "/v1/accounts/{riskiest}/usage?granularity=month&meter=api_calls&from={}&to={}",
            web::usage_window("month", chrono::Utc::now()).0,
            web::usage_window("month", chrono::Utc::now()).1
        ),
    )
    .await;
    assert_eq!(s, 200, "{monthly}");
    let api_total: f64 = monthly["total"]["quantity"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let charted: f64 = attr(
        &c,
        "figure:has(figcaption) svg[aria-labelledby^='usage']",
        "data-total",
    )
    .await
    .parse()
    .unwrap_or(-1.0);
    // Meters are charted in name order: the first chart is api_calls, whose monthly
    // bars add up to the API's total for the same window.
    assert_eq!(text(&c, "figure figcaption").await, "api_calls");
    assert!(api_total > 0.0, "{monthly}");
    assert!(
        (charted - api_total).abs() < 1e-6,
        "{charted} vs {api_total}"
    );
    // By stage: the meter's stage totals add up to the same total, and each stage is
    // the API's total for that stage.
    let mut staged = 0.0;
    for cell in c
        .find_all(Locator::Css(
            "#stages tr[data-meter=api_calls] td[data-stage]",
        ))
        .await
        .unwrap()
    {
        let stage = cell.attr("data-stage").await.unwrap().unwrap_or_default();
        let shown: f64 = cell
            .attr("data-total")
            .await
            .unwrap()
            .unwrap_or_default()
            .parse()
            .unwrap();
        let (month_from, month_to) = web::usage_window("month", chrono::Utc::now());
        let (s, v) = api(
            &stack,
            &demo.read_key,
            "GET",
            &format!(
                "/v1/accounts/{riskiest}/usage?granularity=month&meter=api_calls&stage={stage}&from={month_from}&to={month_to}"
            ),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let api_stage: f64 = v["total"]["quantity"].as_str().unwrap().parse().unwrap();
        assert!(
            (shown - api_stage).abs() < 1e-6,
            "{stage}: {shown} vs {api_stage}"
        );
        staged += shown;
    }
    assert!(
        (staged - api_total).abs() < 1e-6,
        "stages {staged} vs {api_total}"
    );
    shoot(&c, "account-monthly").await;

    // The entitlement bar is as long as the API's percentage says.
    let (s, ents) = api(
        &stack,
        &demo.read_key,
        "GET",
        &format!("/v1/accounts/{riskiest}/entitlements"),
    )
    .await;
    assert_eq!(s, 200, "{ents}");
    let percent: f64 = ents["entitlements"][0]["balance"]["percent"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let shown: f64 = attr(&c, "svg.meter", "data-percent").await.parse().unwrap();
    assert!((shown - percent).abs() < 0.005, "{shown} vs {percent}");
    let width: f64 = attr(&c, "svg.meter rect.fill", "width")
        .await
        .parse()
        .unwrap();
    assert!(
        (width - percent.clamp(0.0, 100.0) * 3.0).abs() < 0.06,
        "bar {width} for {percent} %"
    );

    // Its recent alerts: what crossed what and what to do next, as the API lists them.
    let (s, alerts) = api(
        &stack,
        &demo.read_key,
        "GET",
        &format!("/v1/accounts/{riskiest}/alerts?limit={}", web::ALERTS_SHOWN),
    )
    .await;
    assert_eq!(s, 200, "{alerts}");
    let listed = alerts["alerts"].as_array().unwrap();
    assert!(
        !listed.is_empty(),
        "the decaying account was alerted on: {alerts}"
    );
    let shown = c.find_all(Locator::Css("#alerts li")).await.unwrap();
    assert_eq!(shown.len(), listed.len());
    assert_eq!(
        text(&c, "#alerts li:first-child p.what").await,
        listed[0]["subject"].as_str().unwrap()
    );
    assert_eq!(
        text(&c, "#alerts li:first-child p.next").await,
        format!("Next step: {}", listed[0]["next_step"].as_str().unwrap())
    );

    // Adoption by tier: two onboarding cohorts of one segment side by side, with the
    // figures of GET /v1/segments/{segment}/adoption.
    let mut two = None;
    for s in ["smb", "mid_market", "enterprise", "strategic"] {
        let (st, v) = api(
            &stack,
            &demo.read_key,
            "GET",
            &format!("/v1/segments/{s}/adoption?cohort=month"),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        if v["cohorts"].as_array().map_or(0, Vec::len) >= 2 {
            two = Some((s, v));
            break;
        }
    }
    let (segment, adoption) = two.expect("a segment of the demo data with two onboarding cohorts");
    c.goto(&format!("{base}/app/portfolio")).await.unwrap();
    click_to(
        &c,
        "nav a[href='/app/adoption']",
        &format!("{base}/app/adoption"),
    )
    .await;
    c.goto(&format!("{base}/app/adoption?segment={segment}"))
        .await
        .unwrap();
    let cohorts = adoption["cohorts"].as_array().unwrap();
    let (first, last) = (&cohorts[0], &cohorts[cohorts.len() - 1]);
    let (ca, cb) = (
        first["cohort"].as_str().unwrap(),
        last["cohort"].as_str().unwrap(),
    );
    for (id, cohort) in [("a", ca), ("b", cb)] {
        c.find(Locator::Id(id))
            .await
            .unwrap()
            .select_by_value(cohort)
            .await
            .unwrap();
    }
    click_to(
        &c,
        "form.filters button",
        &format!("{base}/app/adoption?segment={segment}&a={ca}&b={cb}"),
    )
    .await;
    let heading = text(&c, "#compare-h").await;
    assert_eq!(heading, format!("Cohort {ca} against cohort {cb}"));
    let median = |c: &Value| {
        c["milestones"][0]["median_days"]
            .as_i64()
            .map(|d| d.to_string())
    };
    assert_eq!(
        c.find(Locator::Css("#compare td[data-cohort=a]"))
            .await
            .unwrap()
            .attr("data-median")
            .await
            .unwrap(),
        median(first),
        "{adoption}"
    );
    assert_eq!(
        c.find(Locator::Css("#compare td[data-cohort=b]"))
            .await
            .unwrap()
            .attr("data-median")
            .await
            .unwrap(),
        median(last),
        "{adoption}"
    );
    assert_eq!(
        attr(&c, "section.kpi", "data-kpi").await,
        adoption["kpi"]["kind"].as_str().unwrap()
    );
    let lagging_rows = c
        .find_all(Locator::Css("#lagging tr[data-account]"))
        .await
        .unwrap()
        .len();
    assert_eq!(
        lagging_rows,
        adoption["lagging"].as_array().map_or(0, Vec::len)
    );
    shoot(&c, "adoption").await;
    assert_accessible(&c, "adoption").await;

    // A read key cannot change anything: no form offers it, and a forged POST (with
    // or without the session's CSRF token) is refused; the definition is unchanged.
    c.goto(&format!("{base}/app/registry")).await.unwrap();
    assert!(c
        .find_all(Locator::Css("table.registry form"))
        .await
        .unwrap()
        .is_empty());
    shoot(&c, "registry-read").await;
    assert_accessible(&c, "registry").await;
    let action = "/app/definitions/api_calls/delete";
    assert_eq!(forge_post(&c, &base, action, true).await, "403");
    let refusal = text(&c, "p.error").await;
    assert!(
        refusal.contains("'admin' scope"),
        "the API's own refusal: {refusal}"
    );
    shoot(&c, "read-key-refused").await;
    c.goto(&format!("{base}/app/registry")).await.unwrap();
    assert_eq!(forge_post(&c, &base, action, false).await, "403");
    let (_, def) = api(&stack, &demo.key, "GET", "/v1/definitions/api_calls").await;
    assert_eq!(def["status"], "active", "{def}");
    assert_eq!(changes(&stack, &demo.key, "api_calls").await, 0);

    // An admin soft-deletes a definition and restores it; the change log grows by two.
    click_to(&c, "header form button", &format!("{base}/app/sign-in")).await;
    sign_in(&c, &base, &demo.key).await;
    c.goto(&format!("{base}/app/registry")).await.unwrap();
    for verb in ["Delete", "Restore"] {
        click_to(
            &c,
            &format!("tr[data-meter=calls_logged] button[aria-label='{verb} calls_logged']"),
            &format!("{base}/app/registry"),
        )
        .await;
        // The form posts back to the page it is on, so the URL does not say when the
        // answer has loaded: wait for the row's new status (a row of the page being
        // replaced may go stale under our feet).
        let want = if verb == "Delete" {
            "deleted"
        } else {
            "active"
        };
        let mut status = String::new();
        for _ in 0..150 {
            if let Ok(row) = c.find(Locator::Css("tr[data-meter=calls_logged]")).await {
                if let Ok(Some(s)) = row.attr("data-status").await {
                    status = s;
                    if status == want {
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, want, "{verb}");
        if verb == "Delete" {
            shoot(&c, "registry-admin").await;
        }
    }
    assert_eq!(changes(&stack, &demo.key, "calls_logged").await, 2);

    // An admin creates a definition: a cadence that is not a number is refused by the
    // API, and its message stands next to that field, the form kept as typed.
    click_to(&c, "#new-definition", &format!("{base}/app/registry/new")).await;
    assert_accessible(&c, "new definition").await;
    for (id, typed) in [
        ("meter", "reports_exported"),
        ("owner", "cs-ops@example.com"),
        ("expected_cadence_hours", "every day"),
    ] {
        c.find(Locator::Id(id))
            .await
            .unwrap()
            .send_keys(typed)
            .await
            .unwrap();
    }
    click_to(
        &c,
        "#definition-form button[type=submit]",
        &format!("{base}/app/definitions"),
    )
    .await;
    let refusal = text(&c, ".field:has(#expected_cadence_hours) p.field-error").await;
    assert!(
        refusal.contains("expected_cadence_hours must be a whole number"),
        "{refusal}"
    );
    assert_eq!(
        attr(&c, "#expected_cadence_hours-error", "data-code").await,
        "invalid_cadence"
    );
    assert_eq!(
        attr(&c, "#expected_cadence_hours", "aria-invalid").await,
        "true"
    );
    assert!(attr(&c, "#expected_cadence_hours", "aria-describedby")
        .await
        .contains("expected_cadence_hours-error"));
    assert_eq!(attr(&c, "#meter", "value").await, "reports_exported");
    assert_eq!(
        c.find_all(Locator::Css("p.field-error"))
            .await
            .unwrap()
            .len(),
        1,
        "only the field at fault is marked"
    );
    shoot(&c, "definition-refused").await;
    assert_accessible(&c, "refused definition").await;
    let (s, _) = api(&stack, &demo.key, "GET", "/v1/definitions/reports_exported").await;
    assert_eq!(s, 404, "a refused form saves nothing");

    // Fixed, it is saved: its page shows the change log with the admin as its author.
    let cadence = c.find(Locator::Id("expected_cadence_hours")).await.unwrap();
    cadence.clear().await.unwrap();
    cadence.send_keys("24").await.unwrap();
    click_to(
        &c,
        "#definition-form button[type=submit]",
        &format!("{base}/app/definitions/reports_exported"),
    )
    .await;
    let (s, created) = api(&stack, &demo.key, "GET", "/v1/definitions/reports_exported").await;
    assert_eq!(s, 200, "{created}");
    assert_eq!(created["expected_cadence_hours"], 24);
    assert_eq!(created["owner"], "cs-ops@example.com");
    let log = c.find_all(Locator::Css("#changes tbody tr")).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        attr(&c, "#changes tbody tr", "data-action").await,
        "created"
    );
    let admin_actor = format!("key:{}", &domain::auth::hash_key(&demo.key)[..12]);
    assert!(
        text(&c, "#changes tbody tr").await.contains(&admin_actor),
        "the change log names the admin's key"
    );

    // Listed on the registry page.
    c.goto(&format!("{base}/app/registry")).await.unwrap();
    assert_eq!(
        attr(&c, "tr[data-meter=reports_exported]", "data-status").await,
        "active"
    );

    // Edited: the owner changes, and the change log grows by one entry saying who,
    // when and the owner's value before -> after.
    click_to(
        &c,
        "tr[data-meter=reports_exported] a",
        &format!("{base}/app/definitions/reports_exported"),
    )
    .await;
    let owner = c.find(Locator::Id("owner")).await.unwrap();
    owner.clear().await.unwrap();
    owner.send_keys("success@example.com").await.unwrap();
    c.find(Locator::Css("#definition-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mut rows = 0;
    for _ in 0..150 {
        rows = c
            .find_all(Locator::Css("#changes tbody tr"))
            .await
            .map_or(0, |r| r.len());
        if rows == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows, 2, "the change log grew by the edit");
    assert_eq!(
        text(&c, "#changes tbody tr:first-child li[data-field=owner]").await,
        "Owner: cs-ops@example.com → success@example.com"
    );
    assert_eq!(changes(&stack, &demo.key, "reports_exported").await, 2);
    let (_, log) = api(
        &stack,
        &demo.key,
        "GET",
        "/v1/definitions/reports_exported/changes",
    )
    .await;
    assert_eq!(log["changes"][1]["actor"], admin_actor.as_str(), "{log}");
    assert_eq!(log["changes"][1]["changed"], json!(["owner"]), "{log}");
    shoot(&c, "definition-changes").await;
    assert_accessible(&c, "definition").await;

    // Data quality: reports_exported is deleted, an event for it is held, and it is made
    // active again without the restore that would replay it (as when a backlog is
    // larger than one replay): the audit counts it held, and the admin replays it.
    let (s, v) = api(
        &stack,
        &demo.key,
        "DELETE",
        "/v1/definitions/reports_exported",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let event = json!([{"id": "held-1", "account": riskiest, "meter": "reports_exported",
                        "quantity": 3, "timestamp": e2e::now_rfc3339()}]);
    let req = lambda_http::http::Request::builder()
        .method("POST")
        .uri("/v1/events")
        .header("authorization", format!("Bearer {}", demo.key))
        .header("content-type", "application/json")
        .body(lambda_http::Body::Text(event.to_string()))
        .expect("request");
    let (s, v) = e2e::decode(stack.ingest.handle(req).await);
    assert_eq!(
        (s, v["quarantined"].as_array().map(Vec::len)),
        (202, Some(1)),
        "{v}"
    );
    let mut active = domain::ports::DefinitionStore::get_definition(
        stack.store.as_ref(),
        &tenant,
        &domain::ids::MeterName::parse("reports_exported").unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    active.status = domain::event::DefinitionStatus::Active;
    domain::ports::DefinitionStore::put_definition(stack.store.as_ref(), &tenant, &active)
        .await
        .unwrap();
    let report = stack
        .audit
        .run_tenant(&tenant, chrono::Utc::now(), None)
        .await
        .expect("an audit run");
    click_to(
        &c,
        "nav a[href='/app/quality']",
        &format!("{base}/app/quality"),
    )
    .await;
    assert_eq!(
        attr(
            &c,
            "#quarantine tr[data-meter=reports_exported]",
            "data-held"
        )
        .await,
        "1"
    );
    // Held now, counted live, is the quarantine route's number (1 before the replay).
    let (_, listed) = api(
        &stack,
        &demo.key,
        "GET",
        "/v1/definitions/reports_exported/quarantine",
    )
    .await;
    assert_eq!(listed["held"], json!(1), "{listed}");
    assert_eq!(
        attr(&c, HELD_NOW, "data-held-now").await,
        listed["held"].to_string()
    );
    assert_eq!(
        c.find_all(Locator::Css("#kpis tr[data-kpi]"))
            .await
            .unwrap()
            .len(),
        12
    );
    assert_eq!(
        text(&c, "#kpis tr[data-kpi=duplicate_rate] td.num").await,
        match report.kpis.duplicate_rate.value {
            Some(v) => format!(
                "{:.2} % ({} of {})",
                v * 100.0,
                report.kpis.duplicate_rate.numerator,
                report.kpis.duplicate_rate.denominator
            ),
            None => "no events".to_owned(),
        }
    );
    assert!(
        !c.find_all(Locator::Css("#kpis svg.chart"))
            .await
            .unwrap()
            .is_empty(),
        "each KPI with runs has its trend chart"
    );
    assert_accessible(&c, "data quality").await;
    c.find(Locator::Css(
        "#quarantine button[aria-label='Replay held events of reports_exported']",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    // The page posts to another address and comes back here: wait for its answer.
    c.wait()
        .for_element(Locator::Css("#replayed, p.error[data-status]"))
        .await
        .expect("the page after the replay");
    assert_eq!(
        c.current_url().await.unwrap().as_str(),
        format!("{base}/app/quality?meter=reports_exported&replayed=1&remaining=false"),
        "{}",
        text(&c, "main").await
    );
    assert_eq!(attr(&c, "#replayed", "data-replayed").await, "1");
    shoot(&c, "quality").await;
    let (_, held) = api(
        &stack,
        &demo.key,
        "GET",
        "/v1/definitions/reports_exported/quarantine",
    )
    .await;
    assert_eq!(held["events"], json!([]), "replayed: {held}");
    // After the replay the audit window still says 1 held; held now says 0, as the route.
    assert_eq!(held["held"], json!(0), "{held}");
    assert_eq!(attr(&c, HELD_NOW, "data-held-now").await, "0");

    c.close().await.ok();
    server.abort();
}

/// A request to the web function, with a cookie and a form body.
pub(crate) fn web_request(
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: &str,
) -> lambda_http::Request {
    let mut b = lambda_http::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    b.body(if form.is_empty() {
        lambda_http::Body::Empty
    } else {
        lambda_http::Body::Text(form.to_owned())
    })
    .expect("request")
}

fn page(resp: &lambda_http::Response<lambda_http::Body>) -> String {
    match resp.body() {
        lambda_http::Body::Text(t) => t.clone(),
        lambda_http::Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

#[tokio::test]
async fn a_session_holds_no_key_needs_a_readable_key_its_csrf_token_and_ends_when_the_key_is_revoked(
) {
    use domain::auth::{KeyScope, NewKey};
    use domain::ports::KeyAdmin;
    let ts = TestStack::fresh().await;
    let web = &ts.stack.web;
    let key = |scopes: Vec<KeyScope>| NewKey {
        label: "cockpit".into(),
        scopes,
        expires_in_days: None,
    };
    let now = chrono::Utc::now();
    let (ingest_key, _) = ts
        .stack
        .store
        .create_key(&ts.tenant, &key(vec![KeyScope::Ingest]), now)
        .await
        .unwrap();
    let (read_key, read_grant) = ts
        .stack
        .store
        .create_key(&ts.tenant, &key(vec![KeyScope::Read]), now)
        .await
        .unwrap();

    // An ingest-only key cannot sign in; nor can a made-up one.
    for k in [ingest_key.as_str(), "uk_made_up"] {
        let resp = web
            .handle(web_request(
                "POST",
                "/app/sign-in",
                None,
                &format!("key={k}"),
            ))
            .await;
        assert_eq!(resp.status(), 401, "{k}");
        assert!(resp.headers().get("set-cookie").is_none());
    }

    // A sign-in posted from another site is refused before the key is looked at.
    let mut forced = web_request("POST", "/app/sign-in", None, &format!("key={read_key}"));
    forced
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    forced
        .headers_mut()
        .insert("host", "127.0.0.1:8080".parse().unwrap());
    let resp = web.handle(forced).await;
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("set-cookie").is_none());

    // A read key gets an HttpOnly, SameSite=Strict cookie that does not hold the key.
    let resp = web
        .handle(web_request(
            "POST",
            "/app/sign-in",
            None,
            &format!("key={read_key}"),
        ))
        .await;
    assert_eq!(resp.status(), 303);
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/app"),
        "{set}"
    );
    assert!(
        !set.contains("Secure"),
        "the local runner serves plain HTTP: {set}"
    );
    assert!(!set.contains(&read_key), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let resp = web
        .handle(web_request("GET", "/app/portfolio", Some(&cookie), ""))
        .await;
    assert_eq!(resp.status(), 200);
    let html = page(&resp);
    let csrf = html
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the page's CSRF token")
        .to_owned();

    // A read key's change is refused by the API's scope check, with or without the
    // token; a wrong token is refused before the API is asked.
    for (form, code) in [
        (format!("csrf={csrf}"), "'admin' scope"),
        ("csrf=00".to_owned(), "This form has expired"),
        (String::new(), "This form has expired"),
    ] {
        let resp = web
            .handle(web_request(
                "POST",
                "/app/definitions/api_calls/delete",
                Some(&cookie),
                &form,
            ))
            .await;
        assert_eq!(resp.status(), 403, "{form}");
        assert!(page(&resp).contains(code), "{form}: {}", page(&resp));
    }
    // Nor can it create or edit a definition, though it may read one and its log.
    let (_, before) = ts.call("GET", "/v1/definitions/api_calls", None).await;
    for (path, form) in [
        (
            "/app/definitions",
            format!("csrf={csrf}&meter=reports_exported"),
        ),
        (
            "/app/definitions/api_calls/edit",
            format!("csrf={csrf}&owner=mallory%40example.com"),
        ),
    ] {
        let resp = web
            .handle(web_request("POST", path, Some(&cookie), &form))
            .await;
        assert_eq!(resp.status(), 403, "{path}");
        assert!(
            page(&resp).contains("'admin' scope"),
            "{path}: {}",
            page(&resp)
        );
    }
    let resp = web
        .handle(web_request("GET", "/app/registry/new", Some(&cookie), ""))
        .await;
    assert_eq!(resp.status(), 403);
    // It sees data quality, and may not replay held events.
    let resp = web
        .handle(web_request("GET", "/app/quality", Some(&cookie), ""))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        page(&resp).contains("No audit has run yet"),
        "{}",
        page(&resp)
    );
    let resp = web
        .handle(web_request(
            "POST",
            "/app/quality/replay/api_calls",
            Some(&cookie),
            &format!("csrf={csrf}"),
        ))
        .await;
    assert_eq!(resp.status(), 403);
    assert!(page(&resp).contains("'admin' scope"), "{}", page(&resp));
    let resp = web
        .handle(web_request(
            "GET",
            "/app/definitions/api_calls",
            Some(&cookie),
            "",
        ))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        !page(&resp).contains("definition-form"),
        "no form for a read key"
    );
    let (_, def) = ts.call("GET", "/v1/definitions/api_calls", None).await;
    assert_eq!(def["status"], "active");
    assert_eq!(def, before);
    let (s, _) = ts
        .call("GET", "/v1/definitions/reports_exported", None)
        .await;
    assert_eq!(s, 404);

    // A cookie changed by hand is no session.
    let forged = format!("{cookie}x");
    let resp = web
        .handle(web_request("GET", "/app/portfolio", Some(&forged), ""))
        .await;
    assert_eq!(resp.status(), 303);

    // Revoking the key ends its session at once.
    ts.stack
        .store
        .revoke_key(&ts.tenant, &read_grant.key_id, chrono::Utc::now())
        .await
        .unwrap();
    let resp = web
        .handle(web_request("GET", "/app/portfolio", Some(&cookie), ""))
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/app/sign-in");
}

/// Signs in to the web function with a key; the session cookie and the page's token.
async fn session(web: &web::Web, key: &str) -> (String, String) {
    let resp = web
        .handle(web_request(
            "POST",
            "/app/sign-in",
            None,
            &format!("key={key}"),
        ))
        .await;
    assert_eq!(resp.status(), 303, "{}", page(&resp));
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    let resp = web
        .handle(web_request("GET", "/app/registry", Some(&cookie), ""))
        .await;
    let html = page(&resp);
    let csrf = html
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the page's CSRF token")
        .to_owned();
    (cookie, csrf)
}

#[tokio::test]
async fn a_change_made_in_the_cockpit_is_logged_under_the_signed_in_key_not_as_unknown() {
    use domain::auth::{KeyScope, NewKey};
    use domain::ports::KeyAdmin;
    let ts = TestStack::fresh().await;
    let web = &ts.stack.web;
    let (admin, _) = ts
        .stack
        .store
        .create_key(
            &ts.tenant,
            &NewKey {
                label: "cockpit-admin".into(),
                scopes: vec![KeyScope::Admin],
                expires_in_days: None,
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let (cookie, csrf) = session(web, &admin).await;
    let resp = web
        .handle(web_request(
            "POST",
            "/app/definitions/api_calls/edit",
            Some(&cookie),
            &format!("csrf={csrf}&owner=ops%40example.com&criticality=critical&value_type=decimal&anomaly_sensitivity=medium&status=active"),
        ))
        .await;
    assert_eq!(resp.status(), 303, "{}", page(&resp));
    let (s, log) = ts
        .call("GET", "/v1/definitions/api_calls/changes", None)
        .await;
    assert_eq!(s, 200, "{log}");
    let last = log["changes"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["actor"],
        format!("key:{}", &domain::auth::hash_key(&admin)[..12]),
        "{last}"
    );
    assert_eq!(last["after"]["owner"], "ops@example.com");
    assert_eq!(
        last["changed"],
        json!(["criticality", "owner"]),
        "fields not posted are kept: {last}"
    );
    // The definition's page shows it as the signed-in key's change.
    let resp = web
        .handle(web_request(
            "GET",
            "/app/definitions/api_calls",
            Some(&cookie),
            "",
        ))
        .await;
    assert!(page(&resp).contains("(you)"), "{}", page(&resp));
}
