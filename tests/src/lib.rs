//! Test harness: a fresh, fully provisioned stack in the emulator per test (unique
//! resource prefix), with helpers that drive the real handlers.

pub mod crm;

use aws_config::SdkConfig;
use domain::ids::TenantId;
use domain::pipeline::PipelineConfig;
use lambda_http::{Body, Request};
use local::esm::PollStats;
use local::provision::{provision, template_path, Overrides, Provisioned};
use local::stack::Stack;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

/// Visibility timeout of test queues: how long a crashed batch stays hidden.
pub const TEST_VISIBILITY_SECS: i32 = 2;
/// Receives before a message is moved to the DLQ in tests.
pub const TEST_MAX_RECEIVES: u32 = 2;

/// HubSpot client secrets of test stacks (current, and one being rotated out).
pub const HUBSPOT_SECRET: &str = "test-client-secret";
pub const HUBSPOT_OLD_SECRET: &str = "old-client-secret";
/// The public address test stacks tell the webhook verifier they are served at.
pub const PUBLIC_BASE_URL: &str = "https://hooks.example.com";

/// A HubSpot webhook request of `body`, signed (v3) with `secret` now.
pub fn signed_hubspot_request(secret: &str, body: Vec<u8>) -> lambda_http::Request {
    let ts = chrono::Utc::now().timestamp_millis().to_string();
    let uri = format!("{PUBLIC_BASE_URL}/v1/webhooks/hubspot");
    let sig = domain::hubspot::signature::v3_signature(secret, "POST", &uri, &body, &ts);
    lambda_http::http::Request::builder()
        .method("POST")
        .uri("/v1/webhooks/hubspot")
        .header("content-type", "application/json")
        .header("x-hubspot-signature-v3", sig)
        .header("x-hubspot-request-timestamp", ts)
        .body(lambda_http::Body::Binary(body))
        .unwrap_or_default()
}

pub struct TestStack {
    pub aws: SdkConfig,
    /// Resource prefix of this stack (its roles are `{prefix}-{Function}`).
    pub prefix: String,
    pub provisioned: Provisioned,
    pub stack: Stack,
    pub tenant: TenantId,
    pub key: String,
}

/// The pipeline settings of test stacks: defaults with a short retry backoff.
fn bench_cfg() -> PipelineConfig {
    PipelineConfig {
        backoff: Duration::from_millis(5),
        ..PipelineConfig::default()
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}-{}", std::process::id(), &uuid_suffix())
}

fn uuid_suffix() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{:x}", t.as_nanos() % 0xffff_ffff)
}

impl TestStack {
    /// Provisions fresh resources from the template and a tenant with an API key.
    /// Short visibility timeouts and a quick redrive make retries observable in tests.
    pub async fn fresh() -> Self {
        Self::with(Overrides {
            visibility_timeout: Some(TEST_VISIBILITY_SECS),
            max_receive_count: Some(TEST_MAX_RECEIVES),
            ..Overrides::default()
        })
        .await
    }

    /// Fresh resources as the template defines them, but with a visibility timeout
    /// short enough that a failed batch is retried within a benchmark run.
    pub async fn as_deployed() -> Self {
        Self::for_benchmarks().await
    }

    /// Same as [`Self::as_deployed`]; named for what benchmarks need.
    pub async fn for_benchmarks() -> Self {
        Self::with(Overrides {
            visibility_timeout: Some(60),
            max_receive_count: None,
            ..Overrides::default()
        })
        .await
    }

    /// A `visibility` timeout and `max_receives` before the DLQ for the soak: it kills
    /// its worker often, and a batch can take longer than the tests' 2 s on a busy
    /// emulator (a message still being counted would be received again, and again).
    pub async fn for_soak(visibility: i32, max_receives: u32) -> Self {
        Self::with(Overrides {
            visibility_timeout: Some(visibility),
            max_receive_count: Some(max_receives),
            ..Overrides::default()
        })
        .await
    }

    /// [`Self::for_benchmarks`] with each chunk's units written on their own (the
    /// write path before issue #16), for the bench's before/after figures.
    pub async fn for_benchmarks_unmerged() -> Self {
        let overrides = Overrides {
            visibility_timeout: Some(60),
            max_receive_count: None,
            ..Overrides::default()
        };
        Self::with_cfg(
            overrides,
            PipelineConfig {
                merge_chunks: false,
                ..bench_cfg()
            },
        )
        .await
    }

    /// A fresh stack whose functions' policies lack the `revoke`d actions (ADR 0010).
    pub async fn with_revoked(revoke: Vec<local::iam::Revoke>) -> Self {
        Self::with(Overrides {
            visibility_timeout: Some(TEST_VISIBILITY_SECS),
            max_receive_count: Some(TEST_MAX_RECEIVES),
            revoke,
            ..Overrides::default()
        })
        .await
    }

    /// Calls of this stack's functions the emulator refused, as (function, API
    /// operation, IAM action, logical resource), from the IAM-enforcing launcher's log.
    /// Panics when the emulator does not enforce IAM (run through `make test`).
    pub fn denials(&self) -> Vec<(String, String, String, String)> {
        let path = std::env::var("MOTO_LAUNCHER_IAM_LOG")
            .ok()
            .filter(|p| !p.is_empty())
            .expect("MOTO_LAUNCHER_IAM_LOG: run through infra/local/with-moto.sh (IAM enforced)");
        local::iam::read_log(std::path::Path::new(&path))
            .expect("the launcher's IAM log")
            .into_iter()
            .filter(|c| !c.allowed && c.from_stack(&self.prefix))
            .map(|c| {
                (
                    c.function().unwrap_or_default().to_owned(),
                    c.operation.clone(),
                    c.action.clone(),
                    c.logical_resource().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    async fn with(overrides: Overrides) -> Self {
        Self::with_cfg(overrides, bench_cfg()).await
    }

    async fn with_cfg(mut overrides: Overrides, cfg: PipelineConfig) -> Self {
        let aws = aws::sdk::local(&endpoint()).await;
        let prefix = unique("t");
        let hubspot = local::stack::HubspotSettings {
            secrets: vec![HUBSPOT_SECRET.to_owned(), HUBSPOT_OLD_SECRET.to_owned()],
            public_base_url: PUBLIC_BASE_URL.to_owned(),
            legacy: None,
        };
        // Ingest reads the client secrets from the emulator's Secrets Manager, as on AWS.
        overrides
            .secret_values
            .insert("HubspotClientSecretStore".into(), hubspot.secret_string());
        let provisioned = provision(&aws, &template_path(), &prefix, &overrides)
            .await
            .expect("provisioning in the emulator (run tests through `make test`)");
        let stack = Stack::new(&aws, &provisioned, cfg, Some(hubspot)).expect("stack");
        let tenant = TenantId::parse("acme").unwrap();
        stack
            .ensure_tenant(&tenant, "Acme", domain::horizon::Horizon::DEFAULT_BACKFILL)
            .await
            .expect("tenant");
        let key = stack
            .store
            .create_api_key(&tenant, "test")
            .await
            .expect("key");
        Self {
            aws,
            prefix,
            provisioned,
            stack,
            tenant,
            key,
        }
    }

    /// Another tenant in the same stack, with its own key.
    pub async fn second_tenant(&self, id: &str) -> String {
        let t = TenantId::parse(id).unwrap();
        self.stack
            .ensure_tenant(&t, id, domain::horizon::Horizon::DEFAULT_BACKFILL)
            .await
            .expect("tenant");
        self.stack
            .store
            .create_api_key(&t, "test")
            .await
            .expect("key")
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&[u8]>,
    ) -> Request {
        let mut b = lambda_http::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        b.body(body.map_or(Body::Empty, |b| Body::Binary(b.to_vec())))
            .expect("request")
    }

    /// Sends a request through the same front door as the local runner.
    pub async fn call_as(
        &self,
        key: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let req = self.request(method, path, Some(key), body.map(str::as_bytes));
        let route = path.split('?').next().unwrap_or_default();
        let resp = if ingest::ROUTES.iter().any(|(_, p)| *p == route) {
            self.stack.ingest.handle(req).await
        } else {
            self.stack.api.handle(req).await
        };
        decode(resp)
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.call_as(&self.key.clone(), method, path, body).await
    }

    pub async fn post_events(&self, body: &str) -> (u16, Value) {
        self.call("POST", "/v1/events", Some(body)).await
    }

    pub async fn put_account(&self, account: &str, segment: &str) {
        let body = format!(
            r#"{{"name":"{account} Inc","segment":"{segment}","owner_email":"csm@example.com"}}"#
        );
        let (status, v) = self
            .call("PUT", &format!("/v1/accounts/{account}"), Some(&body))
            .await;
        assert!(status == 201 || status == 200, "{status} {v}");
    }

    /// Runs the rollup poller until the queue has nothing visible left.
    pub async fn drain(&self) -> PollStats {
        drain_with(&self.stack.poller, self.stack.rollup.as_ref()).await
    }

    /// Polls until the queue holds nothing at all (visible or in flight), so messages
    /// whose processing failed are waited for through their visibility timeout.
    pub async fn drain_all(&self, patience: Duration) -> PollStats {
        let started = std::time::Instant::now();
        let mut total = self.drain().await;
        while self.queue_depth("EventsQueue").await > 0 && started.elapsed() < patience {
            tokio::time::sleep(Duration::from_secs(5)).await;
            total = add(total, self.drain().await);
        }
        total
    }

    /// Runs notify on the alerts queue until nothing is visible.
    pub async fn drain_alerts(&self) -> PollStats {
        drain_with(&self.stack.alerts_poller, self.stack.notify.as_ref()).await
    }

    /// Takes every visible message off a queue (by URL) and returns the JSON bodies.
    pub async fn take_all(&self, url: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let msgs = self
                .stack
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive")
                .messages
                .unwrap_or_default();
            if msgs.is_empty() {
                return out;
            }
            for m in msgs {
                out.push(serde_json::from_str(m.body().unwrap_or_default()).unwrap_or(Value::Null));
                self.stack
                    .sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
            }
        }
    }

    /// Alerts the rollup raised (taken off the alerts queue, so notify never sees them).
    pub async fn raised_alerts(&self) -> Vec<Value> {
        let url = self
            .provisioned
            .reference("AlertsQueue")
            .unwrap()
            .to_owned();
        self.take_all(&url).await
    }

    /// Sorted alert keys of alert JSON values (raw alerts or notify's JSON form).
    pub fn keys(alerts: &[Value]) -> Vec<String> {
        let mut k: Vec<String> = alerts
            .iter()
            .map(|a| {
                a.get("alert")
                    .unwrap_or(a)
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned()
            })
            .collect();
        k.sort();
        k
    }

    pub async fn put_entitlement(&self, id: &str, body: &str) -> (u16, Value) {
        self.call("PUT", &format!("/v1/entitlements/{id}"), Some(body))
            .await
    }

    pub async fn usage(&self, account: &str, query: &str) -> Value {
        let (status, v) = self
            .call(
                "GET",
                &format!("/v1/accounts/{account}/usage?{query}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v
    }

    pub async fn queue_depth(&self, logical: &str) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let url = self.provisioned.reference(logical).unwrap();
        let attrs = self
            .stack
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("attributes")
            .attributes
            .unwrap_or_default();
        [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|k| {
            attrs
                .get(k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
    }
}

fn add(a: PollStats, b: PollStats) -> PollStats {
    PollStats {
        received: a.received + b.received,
        failed: a.failed + b.failed,
        deleted: a.deleted + b.deleted,
    }
}

/// Polls one queue into its handler until two polls in a row find nothing visible.
async fn drain_with(
    poller: &local::esm::Poller,
    handler: &dyn local::esm::SqsHandler,
) -> PollStats {
    let mut total = PollStats::default();
    let mut idle = 0;
    while idle < 2 {
        let s = poller
            .poll_once(handler, Duration::from_millis(0))
            .await
            .expect("poll");
        idle = if s.received == 0 { idle + 1 } else { 0 };
        total = add(total, s);
    }
    total
}

pub fn decode(resp: lambda_http::Response<Body>) -> (u16, Value) {
    let status = resp.status().as_u16();
    let bytes = match resp.into_body() {
        Body::Empty => Vec::new(),
        Body::Text(t) => t.into_bytes(),
        Body::Binary(b) => b,
        _ => Vec::new(),
    };
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Total quantity of a usage report as a string (decimal, exact).
pub fn total(report: &Value) -> (String, i64) {
    (
        report["total"]["quantity"]
            .as_str()
            .unwrap_or("?")
            .to_owned(),
        report["total"]["events"].as_i64().unwrap_or(-1),
    )
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl TestStack {
    /// Runs the score function on its shard queue until nothing is visible (both
    /// phases: measure shards enqueue score shards when the last one completes).
    pub async fn drain_score(&self) -> PollStats {
        drain_with(&self.stack.score_poller, self.stack.score.as_ref()).await
    }

    /// Drains the shard queue into another score handler (e.g. one with a small
    /// shard size or a CRM stand-in).
    pub async fn drain_score_with(&self, handler: &dyn local::esm::SqsHandler) -> PollStats {
        drain_with(&self.stack.score_poller, handler).await
    }

    /// Drains the FIFO write-back queue into `handler` (a score function with a
    /// write-back consumer) until nothing is visible.
    pub async fn drain_writeback_with(&self, handler: &dyn local::esm::SqsHandler) -> PollStats {
        drain_with(&self.stack.writeback_poller, handler).await
    }
}

/// A counting global allocator for the benchmarks' peak-heap figures: a bench binary
/// installs it with `#[global_allocator] static A: e2e::alloc::Counting = e2e::alloc::Counting;`.
pub mod alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct Counting;
    static CURRENT: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);

    // SAFETY: every call is forwarded to the system allocator unchanged; only sizes
    // are counted.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(l) };
            if !p.is_null() {
                let now = CURRENT.fetch_add(l.size(), Ordering::Relaxed) + l.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            }
            p
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            unsafe { System.dealloc(p, l) };
            CURRENT.fetch_sub(l.size(), Ordering::Relaxed);
        }
    }

    /// Starts a measurement: returns the heap in use now and resets the peak to it.
    pub fn start() -> usize {
        let base = CURRENT.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        base
    }

    /// Peak heap growth in bytes since [`start`] returned `base`.
    pub fn peak_since(base: usize) -> usize {
        PEAK.load(Ordering::Relaxed).saturating_sub(base)
    }
}
