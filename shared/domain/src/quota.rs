//! Per-tenant request quotas: a token bucket per tenant, so one tenant's flood is
//! answered `429` with `Retry-After` instead of pushing every tenant into the
//! stage-wide throttle.
//!
//! What enforces what (see docs/adr/0009-tenant-isolation.md): API Gateway's stage
//! throttle bounds the whole deployment and knows no tenants; this quota is enforced by
//! each function instance after the key is resolved, so the deployment-wide ceiling of
//! one tenant is its rate × the instances serving it. It is a fairness guard, not
//! billing: exact cross-instance limits would cost a DynamoDB write per request.
//!
//! Ingest has a second bucket per tenant counted in events ([`EVENTS`]): a request
//! carries up to 1,000 events, and the pipeline's work grows with events, not requests,
//! so a request quota alone would let one tenant queue 1,000 times its rate.

use crate::ids::TenantId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A tenant's allowance: `rate` requests per second on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allowance {
    pub rate: f64,
    pub burst: f64,
}

/// Bounds of configured allowances.
pub const MAX_RATE: u32 = 100_000;
pub const DEFAULT_RATE: u32 = 100;
pub const DEFAULT_BURST: u32 = 200;
/// Tenants remembered per instance before the idle ones are forgotten.
const MAX_TRACKED: usize = 10_000;

/// Where one kind of quota is configured and its defaults.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub rate_var: &'static str,
    pub burst_var: &'static str,
    pub overrides_var: &'static str,
    pub default_rate: u32,
    pub default_burst: u32,
}

/// Requests to ingest and the API.
pub const REQUESTS: Settings = Settings {
    rate_var: "TENANT_REQUESTS_PER_SECOND",
    burst_var: "TENANT_REQUEST_BURST",
    overrides_var: "TENANT_QUOTA_OVERRIDES",
    default_rate: DEFAULT_RATE,
    default_burst: DEFAULT_BURST,
};

/// Events sent to `POST /v1/events` (each request costs its number of events; a
/// request with more events than the tenant's burst could never pass and is refused).
pub const EVENTS: Settings = Settings {
    rate_var: "TENANT_EVENTS_PER_SECOND",
    burst_var: "TENANT_EVENT_BURST",
    overrides_var: "TENANT_EVENT_QUOTA_OVERRIDES",
    default_rate: 5_000,
    default_burst: 20_000,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuotaConfigError(pub String);

/// Quotas of one function instance.
#[derive(Debug)]
pub struct Quotas {
    default: Allowance,
    overrides: HashMap<TenantId, Allowance>,
    buckets: Mutex<HashMap<TenantId, (f64, Instant)>>,
}

impl Quotas {
    pub fn new(default: Allowance, overrides: HashMap<TenantId, Allowance>) -> Self {
        Self {
            default,
            overrides,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// From `TENANT_REQUESTS_PER_SECOND` (default 100), `TENANT_REQUEST_BURST`
    /// (default 200) and `TENANT_QUOTA_OVERRIDES` (`acme=500:1000,beta=5`, rate and
    /// optional burst per tenant). Bad values are refused at start with the reason.
    pub fn from_env() -> Result<Self, QuotaConfigError> {
        Self::from_env_for(&REQUESTS)
    }

    /// The quota `settings` names, from the environment: for [`EVENTS`],
    /// `TENANT_EVENTS_PER_SECOND` (default 5,000), `TENANT_EVENT_BURST` (default 20,000)
    /// and `TENANT_EVENT_QUOTA_OVERRIDES`.
    pub fn from_env_for(settings: &Settings) -> Result<Self, QuotaConfigError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Self::parse_for(
            settings,
            var(settings.rate_var).as_deref(),
            var(settings.burst_var).as_deref(),
            var(settings.overrides_var).as_deref(),
        )
    }

    pub fn parse(
        rate: Option<&str>,
        burst: Option<&str>,
        overrides: Option<&str>,
    ) -> Result<Self, QuotaConfigError> {
        Self::parse_for(&REQUESTS, rate, burst, overrides)
    }

    pub fn parse_for(
        settings: &Settings,
        rate: Option<&str>,
        burst: Option<&str>,
        overrides: Option<&str>,
    ) -> Result<Self, QuotaConfigError> {
        let num = |name: &str, v: &str| {
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_RATE).contains(n))
                .ok_or_else(|| {
                    QuotaConfigError(format!(
                        "{name} must be a whole number from 1 to {MAX_RATE}, not '{v}'"
                    ))
                })
        };
        let rate = rate.map_or(Ok(settings.default_rate), |v| num(settings.rate_var, v))?;
        let burst = burst.map_or(Ok(settings.default_burst.max(rate)), |v| {
            num(settings.burst_var, v)
        })?;
        let mut map = HashMap::new();
        for entry in overrides
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (tenant, allowance) = entry.split_once('=').ok_or_else(|| {
                QuotaConfigError(format!(
                    "{} entry '{entry}' is not tenant=rate[:burst]",
                    settings.overrides_var
                ))
            })?;
            let tenant = TenantId::parse(tenant.trim()).map_err(|e| {
                QuotaConfigError(format!(
                    "{}: '{tenant}' is not a tenant id: {e}",
                    settings.overrides_var
                ))
            })?;
            let (r, b) = match allowance.split_once(':') {
                Some((r, b)) => (
                    num("an override's rate", r)?,
                    num("an override's burst", b)?,
                ),
                None => {
                    let r = num("an override's rate", allowance)?;
                    (r, r.saturating_mul(2).min(MAX_RATE))
                }
            };
            map.insert(
                tenant,
                Allowance {
                    rate: f64::from(r),
                    burst: f64::from(b.max(r)),
                },
            );
        }
        Ok(Self::new(
            Allowance {
                rate: f64::from(rate),
                burst: f64::from(burst.max(rate)),
            },
            map,
        ))
    }

    pub fn allowance(&self, tenant: &TenantId) -> Allowance {
        self.overrides.get(tenant).copied().unwrap_or(self.default)
    }

    /// Takes one request from the tenant's bucket at `now`: `Ok` or how long to wait.
    pub fn take(&self, tenant: &TenantId, now: Instant) -> Result<(), Duration> {
        self.take_n(tenant, 1, now)
    }

    /// Takes `cost` tokens (at least 1) from the tenant's bucket at `now`: `Ok` or how
    /// long until they are there. A cost above the tenant's burst waits for ever
    /// ([`Duration::MAX`]): check [`Quotas::allowance`] first.
    pub fn take_n(&self, tenant: &TenantId, cost: u32, now: Instant) -> Result<(), Duration> {
        let a = self.allowance(tenant);
        let cost = f64::from(cost.max(1));
        if cost > a.burst {
            return Err(Duration::MAX);
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(tenant) {
            // Forget tenants whose buckets have refilled: they lose nothing.
            buckets.retain(|t, (tokens, at)| {
                let a = self.allowance(t);
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * a.rate < a.burst
            });
        }
        let (tokens, at) = buckets.entry(tenant.clone()).or_insert((a.burst, now));
        let refilled =
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() * a.rate).min(a.burst);
        *at = now.max(*at);
        if refilled >= cost {
            *tokens = refilled - cost;
            Ok(())
        } else {
            *tokens = refilled;
            Err(Duration::from_secs_f64((cost - refilled) / a.rate))
        }
    }
}

/// Whole seconds for a `Retry-After` header (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn a_flooding_tenant_is_held_to_its_rate_and_another_tenant_is_untouched() {
        let q = Quotas::parse(Some("10"), Some("20"), None).unwrap();
        let start = Instant::now();
        let ok = (0..100)
            .filter(|_| q.take(&t("flood"), start).is_ok())
            .count();
        assert_eq!(ok, 20, "the burst, then refusals");
        let wait = q.take(&t("flood"), start).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert_eq!(retry_after_secs(wait), 1);
        assert!((0..20).all(|_| q.take(&t("quiet"), start).is_ok()));
        // One second later the flood has 10 more.
        let later = start + Duration::from_secs(1);
        assert_eq!(
            (0..100)
                .filter(|_| q.take(&t("flood"), later).is_ok())
                .count(),
            10
        );
    }

    #[test]
    fn a_request_is_charged_its_events_and_one_larger_than_the_burst_never_passes() {
        let q = Quotas::parse_for(&EVENTS, Some("100"), Some("1000"), Some("small=10:50")).unwrap();
        let start = Instant::now();
        assert!(q.take_n(&t("bulk"), 1000, start).is_ok());
        let wait = q.take_n(&t("bulk"), 1000, start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10), "1,000 events at 100/s");
        assert!(q
            .take_n(&t("bulk"), 100, start + Duration::from_secs(1))
            .is_ok());
        assert_eq!(q.take_n(&t("small"), 51, start), Err(Duration::MAX));
        assert!(q.take_n(&t("small"), 50, start).is_ok());
        assert!(Quotas::parse_for(&EVENTS, None, None, Some("x"))
            .is_err_and(|e| e.0.contains("TENANT_EVENT_QUOTA_OVERRIDES")));
        assert_eq!(
            Quotas::parse_for(&EVENTS, None, None, None)
                .unwrap()
                .allowance(&t("any")),
            Allowance {
                rate: 5_000.0,
                burst: 20_000.0
            }
        );
    }

    #[test]
    fn overrides_and_bad_settings_are_read_with_reasons() {
        let q = Quotas::parse(None, None, Some("acme=500:1000, beta=5")).unwrap();
        assert_eq!(
            q.allowance(&t("acme")),
            Allowance {
                rate: 500.0,
                burst: 1000.0
            }
        );
        assert_eq!(
            q.allowance(&t("beta")),
            Allowance {
                rate: 5.0,
                burst: 10.0
            }
        );
        assert_eq!(
            q.allowance(&t("other")),
            Allowance {
                rate: 100.0,
                burst: 200.0
            }
        );
        assert!(Quotas::parse(Some("0"), None, None).is_err());
        assert!(Quotas::parse(Some("1e9"), None, None).is_err());
        assert!(Quotas::parse(None, None, Some("acme")).is_err());
        assert!(Quotas::parse(None, None, Some("ac me=5")).is_err());
    }

    proptest! {
        /// Whatever the arrival pattern, a tenant never gets more than its burst plus
        /// its rate × the elapsed time.
        #[test]
        fn admitted_requests_never_exceed_burst_plus_rate_times_time(
            gaps in proptest::collection::vec(0u64..200, 1..400),
            rate in 1u32..50,
            burst in 1u32..100,
        ) {
            let q = Quotas::parse(Some(&rate.to_string()), Some(&burst.to_string()), None).unwrap();
            let start = Instant::now();
            let mut now = start;
            let mut admitted = 0u64;
            for g in gaps {
                now += Duration::from_millis(g);
                if q.take(&t("x"), now).is_ok() {
                    admitted += 1;
                }
            }
            let elapsed = (now - start).as_secs_f64();
            let cap = f64::from(burst.max(rate)) + f64::from(rate) * elapsed;
            prop_assert!(admitted as f64 <= cap + 1e-9, "{admitted} > {cap}");
        }
    }
}
