//! A hostile tenant against the emulator (issue #11): huge numbers, deep JSON, 10,000
//! distinct meters, replayed legacy HubSpot signatures and a flood, all through the real
//! handlers, while a second tenant keeps sending. The second tenant's rollups stay
//! exact, its limit alerts arrive, and its receipt-to-counted lag during the attack
//! stays within twice its lag without it.

use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use domain::chunk::Chunk;
use domain::ids::TenantId;
use domain::ports::DefinitionStore;
use e2e::{decode, now_rfc3339, total, TestStack, HUBSPOT_SECRET};
use local::esm::SqsHandler;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HOSTILE: &str = "hostile";
const HOSTILE_PORTAL: u64 = 66_601;
const HOOKS: &str = "https://hooks.example.com";
/// The hostile tenant's allowance in this test: requests per second and burst.
const HOSTILE_REQUESTS: &str = "hostile=5:10";
/// Its event allowance: events per second and burst (also its largest request).
const HOSTILE_EVENTS: &str = "hostile=20:200";
/// How long the flood lasts, how many requests a second it sends, events in each.
const FLOOD_FOR: Duration = Duration::from_secs(10);
const FLOOD_RATE: u32 = 50;
const FLOOD_BATCH: usize = 100;
/// Events the steady tenant sends in each phase, one request every `CADENCE`.
const STEADY_EVENTS: usize = 40;
const CADENCE: Duration = Duration::from_millis(200);

/// The tests of this file run one at a time, so nothing else of theirs loads the
/// emulator while the lag is measured.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The rollup as deployed, with a stopwatch: for each event of one tenant, the time
/// from its receipt (the `received_at` ingest wrote into the queued chunk) to the end
/// of the rollup invocation that counted it.
struct Stopwatch {
    rollup: Arc<rollup::Rollup>,
    watched: TenantId,
    lags: Mutex<BTreeMap<String, Duration>>,
    /// How long each invocation that counted the watched tenant's events took, by phase.
    invocations: Mutex<Vec<(u8, Duration)>>,
    phase: std::sync::atomic::AtomicU8,
}

#[async_trait]
impl SqsHandler for Stopwatch {
    async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let chunks: Vec<(String, Chunk)> = event
            .records
            .iter()
            .filter_map(|r| {
                let chunk: Chunk = serde_json::from_str(r.body.as_deref()?).ok()?;
                Some((r.message_id.clone()?, chunk))
            })
            .filter(|(_, c)| c.tenant == self.watched)
            .collect();
        let started = Instant::now();
        let response = self.rollup.handle(event).await;
        let counted_at = chrono::Utc::now();
        if !chunks.is_empty() {
            let phase = self.phase.load(std::sync::atomic::Ordering::Relaxed);
            let mut inv = self.invocations.lock().unwrap_or_else(|p| p.into_inner());
            inv.push((phase, started.elapsed()));
        }
        let failed: HashSet<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let mut lags = self.lags.lock().unwrap_or_else(|p| p.into_inner());
        for (_, chunk) in chunks
            .iter()
            .filter(|(id, _)| !failed.contains(id.as_str()))
        {
            let lag = (counted_at - chunk.received_at)
                .to_std()
                .unwrap_or_default();
            for e in &chunk.events {
                lags.entry(e.id.to_string()).or_insert(lag);
            }
        }
        response
    }
}

impl Stopwatch {
    fn counted(&self) -> usize {
        self.lags.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Lags of the steady tenant's events numbered in `range`.
    fn lags(&self, range: std::ops::Range<usize>) -> Vec<Duration> {
        let lags = self.lags.lock().unwrap_or_else(|p| p.into_inner());
        range
            .filter_map(|i| lags.get(&format!("steady-{i}")).copied())
            .collect()
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn p90(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() * 9 / 10).copied().unwrap_or_default()
}

/// The steady tenant's quantity of its `i`-th event: 1, 1.25 or 1.5.
fn steady_quantity(i: usize) -> Decimal {
    Decimal::new(100 + 25 * (i % 3) as i64, 2)
}

/// Sends the steady tenant's events from number `from`, one per request every
/// `CADENCE`: at least `STEADY_EVENTS`, and on until `done` says so. Returns the next
/// number.
async fn steady(t: &TestStack, from: usize, done: impl Fn() -> bool) -> usize {
    let mut tick = tokio::time::interval(CADENCE);
    let mut i = from;
    while i < from + STEADY_EVENTS || !done() {
        tick.tick().await;
        let body = json!([{"id": format!("steady-{i}"), "account": "steady-1", "meter": "api_calls",
            "quantity": steady_quantity(i).to_string().parse::<f64>().unwrap_or(1.0),
            "timestamp": now_rfc3339()}]);
        let (s, v) = t.post_events(&body.to_string()).await;
        assert_eq!((s, v["accepted"].as_u64()), (202, Some(1)), "{v}");
        i += 1;
    }
    i
}

/// Waits until the stopwatch has seen `n` of the watched tenant's events counted.
async fn until_counted(watch: &Stopwatch, n: usize, patience: Duration) {
    let started = Instant::now();
    while watch.counted() < n && started.elapsed() < patience {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        watch.counted(),
        n,
        "the steady tenant's events were not all counted within {patience:?} (of its \
         first {n}, lags median {:?}, p90 {:?})",
        median(watch.lags(0..n)),
        p90(watch.lags(0..n)),
    );
}

fn code(r: &(u16, Value)) -> (u16, String) {
    (r.0, r.1["error"]["code"].as_str().unwrap_or("-").to_owned())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Posts to a HubSpot route signed with v3, or with a legacy version.
async fn hubspot(ingest: &ingest::Ingest, version: &str, path: &str, body: &str) -> (u16, Value) {
    let uri = format!("{HOOKS}{path}");
    let b = lambda_http::http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json");
    let b = match version {
        "v3" => {
            let ts = now_ms().to_string();
            let sig = domain::hubspot::signature::v3_signature(
                HUBSPOT_SECRET,
                "POST",
                &uri,
                body.as_bytes(),
                &ts,
            );
            b.header("x-hubspot-signature-v3", sig)
                .header("x-hubspot-request-timestamp", ts)
        }
        v => {
            let sig = if v == "v1" {
                domain::hubspot::signature::v1_signature(HUBSPOT_SECRET, body.as_bytes())
            } else {
                domain::hubspot::signature::v2_signature(
                    HUBSPOT_SECRET,
                    "POST",
                    &uri,
                    body.as_bytes(),
                )
            };
            b.header("x-hubspot-signature", sig)
                .header("x-hubspot-signature-version", v)
        }
    };
    let req = b
        .body(lambda_http::Body::Binary(body.as_bytes().to_vec()))
        .expect("request");
    decode(ingest.handle(req).await)
}

/// Calls as a well-behaved client would: waits out `429 rate_limited` (the flood
/// shares the tenant's quota) and returns the first other answer.
async fn persist(t: &TestStack, key: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let started = Instant::now();
    loop {
        let r = t.call_as(key, method, path, Some(body)).await;
        if r.0 != 429 || started.elapsed() > Duration::from_secs(120) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the hostile tenant saw, checked once the attack is over.
#[derive(Default, Debug)]
struct Attack {
    /// (what was sent, status and error code answered).
    answers: Vec<(String, (u16, String))>,
    flood_sent: usize,
    flood_admitted: usize,
    flood_limited: usize,
    flood_retry_after_missing: usize,
    flood_other: Vec<(u16, String)>,
}

impl Attack {
    fn saw(&mut self, what: &str, answer: (u16, Value)) {
        self.answers.push((what.to_owned(), code(&answer)));
    }

    fn answer(&self, what: &str) -> (u16, String) {
        self.answers
            .iter()
            .find(|(w, _)| w == what)
            .map(|(_, a)| a.clone())
            .unwrap_or((0, format!("{what}: never sent")))
    }
}

/// Huge numbers, deep JSON, 10,000 meters and replayed legacy signatures.
async fn hostile_inputs(t: &TestStack, key: &str, legacy: &ingest::Ingest, out: &mut Attack) {
    // Huge numbers: quantities, limits, HubSpot property values.
    let forty = format!("0.{}", "1234567890".repeat(4));
    for (n, (what, q)) in [
        ("quantity 1e27", "1e27"),
        ("quantity 1e308", "1e308"),
        ("quantity -1e308", "-1e308"),
        ("quantity with 40 decimals", forty.as_str()),
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!(
            r#"[{{"id":"huge-{n}","account":"h-1","meter":"api_calls","quantity":{q},"timestamp":"{}"}}]"#,
            now_rfc3339()
        );
        let (s, v) = persist(t, key, "POST", "/v1/events", &body).await;
        let rejected = v["rejected"][0]["code"].as_str().unwrap_or("-").to_owned();
        out.answers.push((what.to_owned(), (s, rejected)));
    }
    for (what, limit) in [
        ("limit 1e27", "1e27"),
        ("limit 1e308", "1e308"),
        ("limit with 40 decimals", forty.as_str()),
    ] {
        let body = format!(
            r#"{{"account":"h-1","meter":"api_calls","limit":{limit},"period":"calendar_month","time_zone":"UTC","thresholds":[50,80,100]}}"#
        );
        let r = persist(t, key, "PUT", "/v1/entitlements/huge", &body).await;
        out.saw(what, r);
    }
    let change = |id: u64, value: &str| {
        json!({"eventId": id, "portalId": HOSTILE_PORTAL, "occurredAt": now_ms() - 5_000,
            "subscriptionType": "company.propertyChange", "objectId": 777,
            "propertyName": "seats_used", "propertyValue": value})
    };
    let batch = json!([
        change(1, "79228162514264337593543950335"),
        change(2, "1e308"),
        change(3, &forty)
    ]);
    let r = hubspot(
        &t.stack.ingest,
        "v3",
        "/v1/webhooks/hubspot",
        &batch.to_string(),
    )
    .await;
    out.answers.push((
        "hubspot huge property values".into(),
        (r.0, r.1["queued"].to_string()),
    ));

    // Deep JSON: 10,000 levels, at every door that parses a body.
    let arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    for (what, body) in [("deep arrays", &arrays), ("deep objects", &objects)] {
        let (s, v) = persist(t, key, "POST", "/v1/events", body).await;
        let answer = v["error"]["code"]
            .as_str()
            .or(v["rejected"][0]["code"].as_str());
        out.answers.push((
            format!("events: {what}"),
            (s, answer.unwrap_or("-").to_owned()),
        ));
        let r = persist(t, key, "PUT", "/v1/entitlements/deep", body).await;
        out.saw(&format!("entitlement: {what}"), r);
        let r = persist(t, key, "PUT", "/v1/definitions/deep", body).await;
        out.saw(&format!("definition: {what}"), r);
        let r = hubspot(&t.stack.ingest, "v3", "/v1/webhooks/hubspot", body).await;
        out.saw(&format!("hubspot: {what}"), r);
        let r = hubspot(&t.stack.ingest, "v3", "/v1/webhooks/hubspot/workflow", body).await;
        out.saw(&format!("workflow: {what}"), r);
    }
    // Deep, but within the parser's limit: inside an event's properties, deeper than
    // DynamoDB stores (the emulator would not have noticed).
    let nested = format!("{}1{}", r#"{"a":"#.repeat(100), "}".repeat(100));
    let body = format!(
        r#"[{{"id":"deep-props","account":"h-1","meter":"api_calls","timestamp":"{}","properties":{nested}}}]"#,
        now_rfc3339()
    );
    let (s, v) = persist(t, key, "POST", "/v1/events", &body).await;
    out.answers.push((
        "properties 100 levels deep".into(),
        (
            s,
            format!(
                "accepted={} rejected={}",
                v["accepted"], v["rejected"][0]["code"]
            ),
        ),
    ));

    println!("hostile: numbers and deep JSON done");
    // 10,000 distinct meters as events: undefined for this tenant, each one refused.
    for r in 0..100 {
        let body = events_body(&format!("m{r}"), 100, |i| format!("m{}", r * 100 + i));
        let answer = t.call_as(key, "POST", "/v1/events", Some(&body)).await;
        let codes: HashSet<&str> = answer.1["rejected"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["code"].as_str())
            .collect();
        let summary = match code(&answer) {
            (202, _) => format!("accepted={} codes={codes:?}", answer.1["accepted"]),
            (_, c) => c,
        };
        out.answers
            .push(("10,000 meters as events".into(), (answer.0, summary)));
    }
    // And as definitions, as fast as they are answered for as long as the flood lasts.
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / FLOOD_RATE);
    let mut m = 0;
    while started.elapsed() < FLOOD_FOR && m < 10_000 {
        tick.tick().await;
        let r = t
            .call_as(
                key,
                "PUT",
                &format!("/v1/definitions/meter{m}"),
                Some(r#"{"unit":"call"}"#),
            )
            .await;
        out.answers.push(("distinct definitions".into(), code(&r)));
        m += 1;
    }
    println!("hostile: 10,000 meters done");
    // Replayed legacy signatures: refused by default; with the opt-in, counted once.
    let workflow =
        format!("/v1/webhooks/hubspot/workflow?portalId={HOSTILE_PORTAL}&event=ticket_escalated");
    let body = json!({"objectType": "TICKET", "objectId": 9, "associatedCompanyId": 778, "occurredAt": now_ms() - 1_000})
        .to_string();
    for v in ["v1", "v2"] {
        let r = hubspot(&t.stack.ingest, v, &workflow, &body).await;
        out.saw(&format!("{v} without the opt-in"), r);
    }
    for copy in [
        "first legacy copy",
        "replayed legacy copy",
        "replayed again",
    ] {
        let (s, v) = hubspot(legacy, "v2", &workflow, &body).await;
        out.answers.push((
            copy.into(),
            (
                s,
                format!("queued={} duplicate={}", v["queued"], v["duplicate"]),
            ),
        ));
    }
}

/// A `POST /v1/events` body of `n` new events (ids `{prefix}-{i}`, meters `meter(i)`).
fn events_body(prefix: &str, n: usize, meter: impl Fn(usize) -> String) -> String {
    let ts = now_rfc3339();
    let events: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id":"{prefix}-{i}","account":"h-2","meter":"{}","timestamp":"{ts}"}}"#,
                meter(i)
            )
        })
        .collect();
    format!("[{}]", events.join(","))
}

/// Far more requests than the quota: `rate` requests a second for `for_how_long`,
/// each with `FLOOD_BATCH` new events.
async fn flood(t: &TestStack, key: &str, rate: u32, for_how_long: Duration, out: &mut Attack) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut n = 0;
    while started.elapsed() < for_how_long {
        tick.tick().await;
        let body = events_body(&format!("flood-{n}"), FLOOD_BATCH, |_| "api_calls".into());
        n += 1;
        let req = t.request("POST", "/v1/events", Some(key), Some(body.as_bytes()));
        let resp = t.stack.ingest.handle(req).await;
        let retry_after = resp.headers().get("retry-after").is_some();
        let r = decode(resp);
        out.flood_sent += 1;
        match code(&r) {
            (202, _) => out.flood_admitted += 1,
            (429, c) if c == "rate_limited" => {
                out.flood_limited += 1;
                out.flood_retry_after_missing += usize::from(!retry_after);
            }
            other => out.flood_other.push(other),
        }
    }
    println!(
        "flood: sent {} admitted {} limited {}",
        out.flood_sent, out.flood_admitted, out.flood_limited
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_tenant_cannot_stop_skew_or_slow_another_tenants_counting() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut t = TestStack::fresh().await;
    let hostile_key = t.second_tenant(HOSTILE).await;
    let hostile = TenantId::parse(HOSTILE).unwrap();
    t.stack
        .store
        .map_portal(HOSTILE_PORTAL, &hostile)
        .await
        .expect("portal");
    // Quotas as a deployment would set them: the hostile tenant's override.
    let quotas =
        Arc::new(domain::quota::Quotas::parse(None, None, Some(HOSTILE_REQUESTS)).expect("quotas"));
    let events =
        domain::quota::Quotas::parse_for(&domain::quota::EVENTS, None, None, Some(HOSTILE_EVENTS));
    let ingest = Arc::get_mut(&mut t.stack.ingest).expect("ingest not shared yet");
    ingest.quotas = quotas.clone();
    ingest.event_quotas = Arc::new(events.expect("event quotas"));
    Arc::get_mut(&mut t.stack.api)
        .expect("api not shared yet")
        .quotas = quotas;

    // The hostile tenant's meters and HubSpot rules, and a legacy opt-in deployment.
    for meter in ["api_calls", "seats_active", "escalations"] {
        let r = t
            .call_as(
                &hostile_key,
                "PUT",
                &format!("/v1/definitions/{meter}"),
                Some(r#"{"unit":"call"}"#),
            )
            .await;
        assert!(r.0 == 200 || r.0 == 201, "{r:?}");
    }
    let rules = json!({"rules": [
        {"subscription_type": "company.propertyChange", "property_name": "seats_used", "meter": "seats_active",
         "quantity": "property_value", "stage": "delivered", "service_line": "platform"},
        {"subscription_type": "workflow.ticket_escalated", "meter": "escalations",
         "quantity": {"constant": "1"}, "stage": "delivered", "service_line": "support"}]});
    let (s, v) = t
        .call_as(
            &hostile_key,
            "PUT",
            "/v1/hubspot/mappings",
            Some(&rules.to_string()),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let mut legacy = ingest::Ingest::new(t.stack.store.clone(), t.stack.queue.clone());
    legacy.hubspot = Some(ingest::HubspotConfig {
        secrets: vec![HUBSPOT_SECRET.to_owned()].into(),
        public_base_url: Some(HOOKS.to_owned()),
        portals: t.stack.store.clone(),
        legacy: domain::hubspot::replay::LegacyPolicy::from_settings("v2", Some("24"))
            .expect("setting")
            .map(|policy| ingest::LegacySignatures {
                policy,
                guard: t.stack.store.clone(),
            }),
    });

    // The steady tenant: an account with a limit of 100 calls that it will cross.
    t.put_account("steady-1", "mid_market").await;
    let ent = json!({"account": "steady-1", "meter": "api_calls", "limit": 100, "period": "calendar_month",
        "time_zone": "UTC", "thresholds": [50, 80, 100]});
    let (s, v) = t.put_entitlement("steady-ent", &ent.to_string()).await;
    assert_eq!(s, 201, "{v}");
    let inbox = t
        .stack
        .subscribe_queue(&e2e::unique("inbox"), None)
        .await
        .expect("inbox");

    // The rollup runs on its own, as the event source mapping would drive it.
    let t = Arc::new(t);
    let watch = Arc::new(Stopwatch {
        rollup: t.stack.rollup.clone(),
        watched: t.tenant.clone(),
        lags: Mutex::default(),
        invocations: Mutex::default(),
        phase: Default::default(),
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let poller = tokio::spawn(t.stack.poller.clone().run_shared(watch.clone(), stopped));

    // Without the attack, before it.
    let calm_end = steady(&t, 0, || true).await;
    until_counted(&watch, calm_end, Duration::from_secs(60)).await;
    println!("calm phase: {calm_end} events counted");

    // With it: the steady tenant sends exactly as before, for as long as it lasts.
    watch.phase.store(1, std::sync::atomic::Ordering::Relaxed);
    let attack_started = Instant::now();
    let attacker = {
        let t = t.clone();
        tokio::spawn(async move {
            let mut out = Attack::default();
            hostile_inputs(&t, &hostile_key, &legacy, &mut out).await;
            out
        })
    };
    let flooder = {
        let (t, key) = (t.clone(), t.second_tenant(HOSTILE).await);
        tokio::spawn(async move {
            let mut out = Attack::default();
            flood(&t, &key, FLOOD_RATE, FLOOD_FOR, &mut out).await;
            out
        })
    };
    let attack_end = steady(&t, calm_end, || {
        attacker.is_finished() && flooder.is_finished()
    })
    .await;
    let flood = flooder.await.expect("flood");
    let attack = attacker.await.expect("attack");
    let attack_took = attack_started.elapsed();
    until_counted(&watch, attack_end, Duration::from_secs(120)).await;

    // Without it again, after it: the calm figure covers the tables as they grew and
    // whatever else the machine did meanwhile.
    watch.phase.store(2, std::sync::atomic::Ordering::Relaxed);
    let end = steady(&t, attack_end, || true).await;
    until_counted(&watch, end, Duration::from_secs(60)).await;
    let _ = stop.send(true);
    poller.await.expect("poller");
    let mut calm = watch.lags(0..calm_end);
    calm.extend(watch.lags(attack_end..end));
    let during = watch.lags(calm_end..attack_end);

    let (calm_p50, during_p50) = (median(calm.clone()), median(during.clone()));
    println!(
        "steady tenant receipt-to-counted lag: calm p50 {calm_p50:?} p90 {:?} ({} events, before and after); \
         under attack p50 {during_p50:?} p90 {:?} ({} events); attack took {attack_took:?}; \
         flood sent {} admitted {} limited {}",
        p90(calm.clone()),
        calm.len(),
        p90(during.clone()),
        during.len(),
        flood.flood_sent,
        flood.flood_admitted,
        flood.flood_limited,
    );
    let invocations = watch
        .invocations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for phase in 0..3 {
        let d: Vec<Duration> = invocations
            .iter()
            .filter(|(p, _)| *p == phase)
            .map(|(_, d)| *d)
            .collect();
        println!(
            "rollup invocations with the steady tenant, phase {phase}: {} p50 {:?} p90 {:?}",
            d.len(),
            median(d.clone()),
            p90(d)
        );
    }
    let mut tally: BTreeMap<(String, (u16, String)), usize> = BTreeMap::new();
    for answer in &attack.answers {
        *tally.entry(answer.clone()).or_default() += 1;
    }
    for ((what, answer), n) in &tally {
        println!("hostile: {what}: {answer:?} x {n}");
    }

    // The steady tenant: counted exactly, alerted, not slowed beyond twice its calm lag.
    let sent: Decimal = (0..end).map(steady_quantity).sum();
    let usage = t.usage("steady-1", "meter=api_calls").await;
    assert_eq!(
        total(&usage),
        (sent.normalize().to_string(), end as i64),
        "{usage}"
    );
    t.drain_alerts().await;
    let alerts = t.take_all(&inbox).await;
    let thresholds: Vec<i64> = alerts
        .iter()
        .filter(|a| a["alert"]["account"] == "steady-1")
        .filter_map(|a| a["alert"]["threshold"].as_i64())
        .collect();
    assert!(
        thresholds.contains(&80) && thresholds.contains(&100),
        "{alerts:?}"
    );
    assert!(
        during_p50 <= calm_p50 * 2,
        "under attack the steady tenant's median lag was {during_p50:?}, more than twice {calm_p50:?}"
    );

    // The hostile tenant: each input refused with its own code, nothing crashed.
    let expected: &[(&str, u16, &str)] = &[
        ("quantity 1e27", 202, "quantity_out_of_range"),
        ("quantity 1e308", 202, "quantity_out_of_range"),
        ("quantity -1e308", 202, "quantity_out_of_range"),
        ("quantity with 40 decimals", 202, "quantity_out_of_range"),
        ("limit 1e27", 400, "limit_out_of_range"),
        // Too large to be a decimal at all: not a number this service can hold.
        ("limit 1e308", 400, "invalid_limit"),
        ("limit with 40 decimals", 400, "limit_out_of_range"),
        (
            "properties 100 levels deep",
            202,
            "accepted=0 rejected=\"properties_too_large\"",
        ),
        (
            "v1 without the opt-in",
            401,
            "signature_version_not_allowed",
        ),
        (
            "v2 without the opt-in",
            401,
            "signature_version_not_allowed",
        ),
        ("first legacy copy", 200, "queued=1 duplicate=null"),
        ("replayed legacy copy", 200, "queued=0 duplicate=true"),
        ("replayed again", 200, "queued=0 duplicate=true"),
    ];
    for (what, status, answer) in expected {
        assert_eq!(
            attack.answer(what),
            (*status, (*answer).to_owned()),
            "{what}"
        );
    }
    for (what, answer) in attack.answers.iter().filter(|(w, _)| w.contains("deep")) {
        // 400 for the whole body, or 202 with the event refused with its code.
        assert!(
            answer.0 == 400 || answer.0 == 202 && answer.1 != "-",
            "{what}: {answer:?}"
        );
    }
    for (what, answer) in &attack.answers {
        assert!(answer.0 < 500, "{what}: {answer:?}");
    }
    let meters: Vec<&(u16, String)> = attack
        .answers
        .iter()
        .filter(|(w, _)| w.starts_with("10,000 meters"))
        .map(|(_, a)| a)
        .collect();
    assert_eq!(meters.len(), 100);
    assert!(
        meters
            .iter()
            .all(|(s, c)| *s == 429 && c == "rate_limited"
                || *s == 202 && c.starts_with("accepted=0 ")),
        "{meters:?}"
    );
    let defined = attack
        .answers
        .iter()
        .filter(|(w, a)| w == "distinct definitions" && a.0 == 201)
        .count();
    assert!(attack
        .answers
        .iter()
        .filter(|(w, _)| w == "distinct definitions")
        .all(|(_, a)| a.0 == 201 || a.0 == 429));
    let ceiling = 10.0 + 5.0 * attack_took.as_secs_f64();
    assert!(
        (defined as f64) <= ceiling,
        "{defined} definitions in {attack_took:?}"
    );

    // What it got in was counted, and only that: nothing went to the DLQ.
    assert_eq!(t.queue_depth("EventsDLQ").await, 0);
    let reader = t.second_tenant(HOSTILE).await;
    let hostile_usage = |account: &'static str, meter: &'static str| {
        let (t, key) = (&t, &reader);
        async move {
            let path = format!("/v1/accounts/{account}/usage?meter={meter}");
            match t.call_as(key, "GET", &path, None).await {
                (200, v) => total(&v),
                (404, _) => ("0".to_owned(), 0),
                other => panic!("{path}: {other:?}"),
            }
        }
    };
    tokio::time::sleep(Duration::from_secs(3)).await; // its read quota refills
    assert_eq!(
        hostile_usage("h-1", "api_calls").await,
        ("0".into(), 0),
        "nothing out of range or too deep is counted"
    );
    assert_eq!(
        hostile_usage("778", "escalations").await,
        ("1".into(), 1),
        "the legacy request, once"
    );
    assert_eq!(
        hostile_usage("777", "seats_active").await,
        ("0".into(), 0),
        "huge values never summed"
    );
    let flooded = hostile_usage("h-2", "api_calls").await;
    assert_eq!(
        flooded.1 as usize,
        flood.flood_admitted * FLOOD_BATCH,
        "{flooded:?}"
    );

    // The flood: held to the quota, every refusal a 429 with Retry-After.
    assert!(flood.flood_sent >= 5 * flood.flood_admitted, "{flood:?}");
    assert_eq!(
        flood.flood_admitted + flood.flood_limited,
        flood.flood_sent,
        "{flood:?}"
    );
    assert_eq!(flood.flood_retry_after_missing, 0);
}

#[tokio::test]
async fn a_tenant_stores_at_most_its_cap_of_definitions_and_may_still_change_them() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut t = TestStack::fresh().await;
    // Three more than the tenant stores already (a fresh stack seeds some).
    let stored = t
        .stack
        .store
        .list_definitions(&t.tenant)
        .await
        .expect("definitions")
        .len();
    Arc::get_mut(&mut t.stack.api)
        .expect("api not shared yet")
        .max_definitions_per_tenant = stored + 3;
    let other = t.second_tenant("other").await;
    let put = |key: String, meter: &'static str, body: &'static str| {
        let t = &t;
        async move {
            t.call_as(&key, "PUT", &format!("/v1/definitions/{meter}"), Some(body))
                .await
        }
    };
    for m in ["m1", "m2", "m3"] {
        let r = put(t.key.clone(), m, r#"{"unit":"call"}"#).await;
        assert_eq!(r.0, 201, "{m}: {}", r.1);
    }
    assert_eq!(
        code(&put(t.key.clone(), "m4", r#"{"unit":"call"}"#).await),
        (409, "too_many_definitions".to_owned())
    );
    // Deleted definitions stay stored (ingest still reads them), so they still count.
    assert_eq!(t.call("DELETE", "/v1/definitions/m3", None).await.0, 200);
    assert_eq!(
        code(&put(t.key.clone(), "m4", r#"{"unit":"call"}"#).await),
        (409, "too_many_definitions".to_owned())
    );
    // Changing a stored one is not creating one; and the cap is per tenant.
    assert_eq!(
        put(t.key.clone(), "m1", r#"{"unit":"request"}"#).await.0,
        200
    );
    assert_eq!(put(other, "m4", r#"{"unit":"call"}"#).await.0, 201);
}
