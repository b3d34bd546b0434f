//! The CS cockpit (`/app`) on the local runner: the web function wired to the stack's
//! API, with plain-HTTP cookies (no `Secure`: the runner serves http://127.0.0.1).

use anyhow::{Context, Result};
use aws::dynamo::DynamoStore;
use std::sync::Arc;
use web::session::SessionKeys;

/// The cockpit over `api`, signing sessions with `sessions` (the stack passes the
/// provisioned `WebSessionSecret`, read from the emulator's Secrets Manager with the web
/// function's role on first use, as on AWS).
pub fn web_app(
    api: Arc<api::Api>,
    store: Arc<DynamoStore>,
    sessions: web::session::SessionSecret,
) -> web::Web {
    let mut w = web::Web::new(api, store, sessions);
    w.secure_cookies = false;
    w
}

/// `WEB_SESSION_SECRET` when set (at least 32 bytes): the value `make run` stores in the
/// emulator's `WebSessionSecret`, so sessions survive a restart; `None` leaves the
/// secret the template generates (random per emulator).
pub fn session_secret_from_env() -> Result<Option<String>> {
    match std::env::var("WEB_SESSION_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
    {
        Some(s) => {
            SessionKeys::new(s.as_bytes()).context("WEB_SESSION_SECRET")?;
            Ok(Some(s))
        }
        None => Ok(None),
    }
}

/// A read-scoped key for the cockpit (shown once).
pub async fn read_key(
    stack: &crate::stack::Stack,
    tenant: &domain::ids::TenantId,
    label: &str,
) -> Result<String> {
    use domain::ports::KeyAdmin;
    let new = domain::auth::NewKey {
        label: label.to_owned(),
        scopes: vec![domain::auth::KeyScope::Read],
        expires_in_days: None,
    };
    let (key, _) = stack
        .store
        .create_key(tenant, &new, chrono::Utc::now())
        .await
        .context("creating a read key")?;
    Ok(key)
}

/// The monthly `api_calls` allowance the demo gives an account: what it used in the
/// 30 days before its last 30, rounded up to a hundred (so a steady account is near
/// its limit by the month's end, and a decaying one well below it).
pub fn demo_allowance(
    synth: &domain::health::synth::Synth,
    a: &domain::health::synth::SynthAccount,
    today: chrono::NaiveDate,
) -> u64 {
    let api = domain::health::synth::METERS
        .iter()
        .position(|m| *m == "api_calls");
    let used: f64 = (31..=60)
        .map(|back| {
            let day = today - chrono::Duration::days(back);
            api.and_then(|i| synth.day(a, day).get(i).copied())
                .unwrap_or(0.0)
        })
        .sum();
    ((used.max(1.0) / 100.0).ceil() as u64) * 100
}

/// Gives every demo account a monthly `api_calls` entitlement, through the API.
pub async fn demo_entitlements(
    stack: &crate::stack::Stack,
    admin_key: &str,
    synth: &domain::health::synth::Synth,
    today: chrono::NaiveDate,
) -> Result<()> {
    for a in &synth.accounts {
        let body = serde_json::json!({
            "account": a.subject.account, "meter": "api_calls",
            "limit": demo_allowance(synth, a, today), "period": "calendar_month", "time_zone": "UTC",
            "starts_on": today - chrono::Duration::days(90),
        });
        let req = lambda_http::http::Request::builder()
            .method("PUT")
            .uri(format!("/v1/entitlements/{}-api-calls", a.subject.account))
            .header("authorization", format!("Bearer {admin_key}"))
            .header("content-type", "application/json")
            .body(lambda_http::Body::Text(body.to_string()))?;
        let resp = stack.api.handle(req).await;
        anyhow::ensure!(
            resp.status().is_success(),
            "PUT entitlement answered {}",
            resp.status()
        );
    }
    Ok(())
}
