//! Every call to HubSpot's API goes through [`HubSpotClient`]: at most N requests per
//! rolling 10 seconds ([`RateWindow`]), slowing down before the portal's budget runs
//! out by reading `X-HubSpot-RateLimit-Remaining` / `-Max` /
//! `-Interval-Milliseconds` ([`RateHeaders::pause`]), and retrying on 429 (honouring
//! `Retry-After`), 5xx and transport errors with a doubling backoff. The HTTP itself
//! is behind [`HubSpotHttp`] (hyper in `aws::hubspot`, stand-ins in tests).

use async_trait::async_trait;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Patch,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
        }
    }
}

/// HubSpot's rate-limit headers on a response (absent ones are `None`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    /// `X-HubSpot-RateLimit-Remaining`: requests left in the current interval.
    pub remaining: Option<u64>,
    /// `X-HubSpot-RateLimit-Max`: requests allowed per interval.
    pub max: Option<u64>,
    /// `X-HubSpot-RateLimit-Interval-Milliseconds`: the interval.
    pub interval_ms: Option<u64>,
}

impl RateHeaders {
    /// Reads the three headers through `get` (a case-insensitive header lookup).
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Self {
        let num = |name: &str| get(name).and_then(|v| v.trim().parse::<u64>().ok());
        Self {
            remaining: num("x-hubspot-ratelimit-remaining"),
            max: num("x-hubspot-ratelimit-max"),
            interval_ms: num("x-hubspot-ratelimit-interval-milliseconds"),
        }
    }

    /// How long to hold the next request so the portal's budget is not exhausted:
    /// nothing while more than a tenth of it (at least one request) is left; then the
    /// rest of the interval spread over the requests that remain (the whole interval
    /// when none does).
    pub fn pause(&self) -> Duration {
        let (Some(remaining), Some(max), Some(interval)) =
            (self.remaining, self.max, self.interval_ms)
        else {
            return Duration::ZERO;
        };
        let reserve = (max / 10).max(1);
        if remaining > reserve {
            return Duration::ZERO;
        }
        Duration::from_millis(interval / remaining.saturating_add(1))
    }
}

/// One HTTP request to HubSpot.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    pub method: Method,
    pub url: String,
    pub token: String,
    /// A JSON body (`None` for GET).
    pub body: Option<Vec<u8>>,
}

/// What HubSpot answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpReply {
    pub status: u16,
    /// `Retry-After` in seconds, when given.
    pub retry_after: Option<u64>,
    pub rate: RateHeaders,
    pub body: String,
}

impl HttpReply {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// The first 300 characters of the body, for error messages.
    pub fn excerpt(&self) -> String {
        self.body.chars().take(300).collect()
    }
}

/// The HTTP call, behind a trait so the retry and pacing logic is testable without a
/// network.
#[async_trait]
pub trait HubSpotHttp: Send + Sync {
    async fn send(&self, req: HttpRequest) -> Result<HttpReply, String>;
}

/// At most `max` requests in any rolling `window`.
#[derive(Debug)]
pub struct RateWindow {
    pub max: usize,
    pub window: Duration,
    sent: VecDeque<Instant>,
}

impl RateWindow {
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max: max.max(1),
            window,
            sent: VecDeque::new(),
        }
    }
    /// How long to wait before the next request may go out at `now`.
    pub fn wait(&mut self, now: Instant) -> Duration {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.sent.pop_front();
        }
        if self.sent.len() < self.max {
            Duration::ZERO
        } else {
            self.sent
                .front()
                .map(|t| self.window.saturating_sub(now.duration_since(*t)))
                .unwrap_or_default()
        }
    }
    pub fn record(&mut self, now: Instant) {
        self.sent.push_back(now);
    }
}

/// The client's pacing state: its own window, and the earliest time HubSpot's
/// headers allow the next request.
#[derive(Debug)]
struct Pacing {
    window: RateWindow,
    not_before: Option<Instant>,
}

/// A call's result once retries are over: the last reply (any status but 429 / 5xx,
/// or the last of those when attempts ran out), with what it took.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutcome {
    pub reply: Result<HttpReply, String>,
    /// Requests sent (retries included).
    pub requests: usize,
    /// 429 answers received.
    pub throttled: usize,
    /// Requests held back because the rate-limit headers said the budget ran low.
    pub paced: usize,
}

pub struct HubSpotClient {
    pub base_url: String,
    pub http: std::sync::Arc<dyn HubSpotHttp>,
    pacing: Mutex<Pacing>,
    pub max_attempts: u32,
    /// First backoff when no Retry-After is given; doubles per attempt (≤ 30 s).
    pub backoff: Duration,
}

impl HubSpotClient {
    pub fn new(
        base_url: impl Into<String>,
        http: std::sync::Arc<dyn HubSpotHttp>,
        per_10s: usize,
    ) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            http,
            pacing: Mutex::new(Pacing {
                window: RateWindow::new(per_10s, Duration::from_secs(10)),
                not_before: None,
            }),
            max_attempts: 6,
            backoff: Duration::from_millis(500),
        }
    }

    /// Waits until both the rolling window and HubSpot's last headers allow a request,
    /// then books it. Returns whether the headers held it back.
    async fn throttle(&self) -> bool {
        let mut paced = false;
        loop {
            let wait = {
                let mut p = self.pacing.lock().await;
                let now = Instant::now();
                let by_headers = p
                    .not_before
                    .map(|t| t.saturating_duration_since(now))
                    .unwrap_or_default();
                let w = p.window.wait(now).max(by_headers);
                if w.is_zero() {
                    p.window.record(now);
                    p.not_before = None;
                    return paced;
                }
                paced |= !by_headers.is_zero();
                w
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn note(&self, rate: &RateHeaders) {
        let pause = rate.pause();
        if pause.is_zero() {
            return;
        }
        tracing::info!(
            remaining = rate.remaining,
            max = rate.max,
            pause_ms = pause.as_millis() as u64,
            "HubSpot rate budget running low; slowing down"
        );
        let until = Instant::now() + pause;
        let mut p = self.pacing.lock().await;
        p.not_before = Some(p.not_before.map_or(until, |t| t.max(until)));
    }

    /// Sends `method path` (relative to the base URL) with `token`, retrying 429s
    /// (after `Retry-After` when given), 5xx answers and transport errors.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&serde_json::Value>,
    ) -> CallOutcome {
        let req = HttpRequest {
            method,
            url: format!("{}{path}", self.base_url),
            token: token.to_owned(),
            body: body.map(|b| b.to_string().into_bytes()),
        };
        let mut out = CallOutcome {
            reply: Err("no request was sent".into()),
            requests: 0,
            throttled: 0,
            paced: 0,
        };
        let mut delay = self.backoff;
        for attempt in 1..=self.max_attempts.max(1) {
            if self.throttle().await {
                out.paced += 1;
            }
            out.requests += 1;
            let reply = self.http.send(req.clone()).await;
            let wait = match &reply {
                Ok(r) => {
                    self.note(&r.rate).await;
                    match r.status {
                        429 => {
                            out.throttled += 1;
                            let wait = r.retry_after.map(Duration::from_secs).unwrap_or(delay);
                            tracing::warn!(
                                attempt,
                                path,
                                wait_ms = wait.as_millis() as u64,
                                "HubSpot rate limit (429); backing off"
                            );
                            Some(wait)
                        }
                        s if s >= 500 => {
                            tracing::warn!(
                                attempt,
                                path,
                                status = s,
                                "HubSpot server error; retrying"
                            );
                            Some(delay)
                        }
                        _ => None,
                    }
                }
                Err(e) => {
                    tracing::warn!(attempt, path, error = %e, "HubSpot request failed; retrying");
                    Some(delay)
                }
            };
            out.reply = reply;
            let Some(wait) = wait else {
                return out;
            };
            if attempt < self.max_attempts {
                tokio::time::sleep(wait).await;
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn the_rate_window_allows_max_requests_per_ten_seconds() {
        let mut w = RateWindow::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(w.wait(t0), Duration::ZERO);
            w.record(t0);
        }
        assert_eq!(w.wait(t0 + Duration::from_secs(4)), Duration::from_secs(6));
        assert_eq!(w.wait(t0 + Duration::from_secs(10)), Duration::ZERO);
    }

    fn headers(remaining: u64, max: u64, interval_ms: u64) -> RateHeaders {
        RateHeaders {
            remaining: Some(remaining),
            max: Some(max),
            interval_ms: Some(interval_ms),
        }
    }

    #[test]
    fn the_headers_slow_requests_down_only_when_the_budget_runs_low() {
        assert_eq!(headers(50, 100, 10_000).pause(), Duration::ZERO);
        assert_eq!(headers(11, 100, 10_000).pause(), Duration::ZERO);
        assert_eq!(headers(10, 100, 10_000).pause(), Duration::from_millis(909));
        assert_eq!(headers(1, 100, 10_000).pause(), Duration::from_secs(5));
        assert_eq!(headers(0, 100, 10_000).pause(), Duration::from_secs(10));
        // A small budget keeps one request in reserve.
        assert_eq!(headers(2, 5, 1_000).pause(), Duration::ZERO);
        assert_eq!(headers(1, 5, 1_000).pause(), Duration::from_millis(500));
        assert_eq!(RateHeaders::default().pause(), Duration::ZERO);
        let partial = RateHeaders {
            remaining: Some(0),
            ..Default::default()
        };
        assert_eq!(partial.pause(), Duration::ZERO);
    }

    #[test]
    fn the_headers_are_read_by_their_names_and_unparsable_values_are_ignored() {
        let h = RateHeaders::read(|name| match name {
            "x-hubspot-ratelimit-remaining" => Some(" 7".into()),
            "x-hubspot-ratelimit-max" => Some("100".into()),
            "x-hubspot-ratelimit-interval-milliseconds" => Some("soon".into()),
            _ => None,
        });
        assert_eq!(
            h,
            RateHeaders {
                remaining: Some(7),
                max: Some(100),
                interval_ms: None
            }
        );
    }

    /// Answers from a script, recording when each request arrived.
    struct Script {
        replies: std::sync::Mutex<VecDeque<HttpReply>>,
        arrived: std::sync::Mutex<Vec<Instant>>,
    }

    impl Script {
        fn new(replies: Vec<HttpReply>) -> Arc<Self> {
            Arc::new(Self {
                replies: std::sync::Mutex::new(replies.into()),
                arrived: Default::default(),
            })
        }
    }

    #[async_trait]
    impl HubSpotHttp for Script {
        async fn send(&self, _req: HttpRequest) -> Result<HttpReply, String> {
            self.arrived.lock().unwrap().push(Instant::now());
            self.replies
                .lock()
                .unwrap()
                .pop_front()
                .ok_or_else(|| "script exhausted".to_owned())
        }
    }

    fn reply(status: u16, retry_after: Option<u64>, rate: RateHeaders) -> HttpReply {
        HttpReply {
            status,
            retry_after,
            rate,
            body: String::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_is_retried_after_retry_after_and_a_low_budget_delays_the_next_call() {
        let http = Script::new(vec![
            reply(429, Some(2), RateHeaders::default()),
            reply(200, None, headers(0, 10, 1_000)),
            reply(200, None, RateHeaders::default()),
        ]);
        let c = HubSpotClient::new("https://api.example/", http.clone(), 100);
        let t0 = Instant::now();
        let first = c.call(Method::Get, "/x", "t", None).await;
        assert_eq!(
            (first.requests, first.throttled, first.paced),
            (2, 1, 0),
            "{first:?}"
        );
        assert_eq!(first.reply.unwrap().status, 200);
        let second = c.call(Method::Get, "/x", "t", None).await;
        assert_eq!((second.requests, second.paced), (1, 1));
        let at = http.arrived.lock().unwrap().clone();
        assert_eq!(at[1] - t0, Duration::from_secs(2), "Retry-After honoured");
        assert_eq!(
            at[2] - at[1],
            Duration::from_secs(1),
            "no budget left: the whole interval"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn other_client_errors_are_returned_at_once_and_server_errors_give_up_after_the_attempts()
    {
        let http = Script::new(vec![reply(404, None, RateHeaders::default())]);
        let c = HubSpotClient::new("https://api.example", http, 100);
        let out = c.call(Method::Get, "/x", "t", None).await;
        assert_eq!((out.requests, out.reply.unwrap().status), (1, 404));
        let http = Script::new(
            (0..3)
                .map(|_| reply(503, None, RateHeaders::default()))
                .collect(),
        );
        let mut c = HubSpotClient::new("https://api.example", http, 100);
        c.max_attempts = 3;
        let out = c.call(Method::Get, "/x", "t", None).await;
        assert_eq!((out.requests, out.reply.unwrap().status), (3, 503));
    }
}
