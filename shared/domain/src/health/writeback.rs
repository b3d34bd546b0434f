//! CRM write-back: score, band and top reasons to HubSpot company properties through
//! CRM v3 `POST /crm/v3/objects/companies/batch/update` — 100 companies per request,
//! at most N requests per rolling 10 seconds, backoff on 429 honouring `Retry-After`
//! and on 5xx. Per tenant: enabled by the health config's `crm_writeback`, with the
//! tenant's private-app token from Secrets Manager (`HUBSPOT_WRITEBACK_TOKENS_ARN`,
//! cached, read again on a 401 so a rotated token is used without a redeploy) or, for
//! the local runner, from `HUBSPOT_WRITEBACK_TOKENS`.

use super::model::Band;
pub use super::plays::{CrmTask, PlayProperties};
use super::record::HealthRecord;
pub use crate::hubspot::client::RateWindow;
use crate::hubspot::client::{HubSpotClient, HubSpotHttp, Method};
use crate::ids::TenantId;
use async_trait::async_trait;
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

/// HubSpot's batch limit.
pub const BATCH_SIZE: usize = 100;
pub const BATCH_UPDATE_PATH: &str = "/crm/v3/objects/companies/batch/update";

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CrmUpdate {
    pub company_id: String,
    pub score: f64,
    pub band: Band,
    pub reasons: String,
    pub as_of: NaiveDate,
    /// The HubSpot portal of the company (the write-back queue's message group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal: Option<String>,
    /// What a tier's play adds: milestone lag and next milestone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub play: Option<PlayProperties>,
}

impl CrmUpdate {
    /// Only scored accounts with a HubSpot company id are written back.
    pub fn of(r: &HealthRecord) -> Option<Self> {
        let id = r.info.hubspot_company_id.clone()?;
        let reasons: Vec<String> = r
            .reasons
            .iter()
            .take(3)
            .map(|x| format!("{}: {}", x.code, x.detail))
            .collect();
        let mut reasons = reasons.join(" | ");
        if reasons.len() > 1000 {
            let mut cut = 997;
            while !reasons.is_char_boundary(cut) {
                cut -= 1;
            }
            reasons.truncate(cut);
            reasons.push_str("...");
        }
        Some(Self {
            company_id: id,
            score: r.score?,
            band: r.band?,
            reasons,
            as_of: r.as_of,
            portal: r.info.hubspot_portal_id.clone(),
            play: None,
        })
    }
}

/// The request body of one batch update.
pub fn batch_body(updates: &[CrmUpdate]) -> serde_json::Value {
    serde_json::json!({
        "inputs": updates.iter().map(|u| {
            let mut properties = serde_json::json!({
                "usage_health_score": format!("{:.1}", u.score),
                "usage_health_band": u.band.as_str(),
                "usage_health_reasons": u.reasons,
                "usage_health_as_of": u.as_of.format("%Y-%m-%d").to_string(),
            });
            if let Some(play) = &u.play {
                properties["usage_milestone_lag_days"] = play.lag_days.to_string().into();
                properties["usage_next_milestone"] =
                    play.next_milestone.clone().unwrap_or_default().into();
            }
            serde_json::json!({"id": u.company_id, "properties": properties})
        }).collect::<Vec<_>>()
    })
}

pub const TASKS_PATH: &str = "/crm/v3/objects/tasks";
/// CRM owners API: `GET /crm/v3/owners/?email=...` (scope `crm.objects.owners.read`).
pub const OWNERS_PATH: &str = "/crm/v3/owners/";
/// HubSpot's default association type of a task to a company.
pub const TASK_TO_COMPANY: u32 = 192;

/// The request body creating `t`: a task associated with the company, assigned to
/// its owner when the owner's HubSpot id is known, due at 09:00 UTC on its day.
pub fn task_body(t: &CrmTask) -> serde_json::Value {
    let due = t.due.and_hms_opt(9, 0, 0).unwrap_or_default().and_utc();
    let mut properties = serde_json::json!({
        "hs_task_subject": t.subject,
        "hs_task_body": t.body,
        "hs_timestamp": due.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "hs_task_status": "NOT_STARTED",
        "hs_task_priority": "HIGH",
        "hs_task_type": "TODO",
    });
    if let Some(owner) = &t.owner_id {
        properties["hubspot_owner_id"] = owner.clone().into();
    }
    serde_json::json!({
        "properties": properties,
        "associations": [{
            "to": {"id": t.company_id},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": TASK_TO_COMPANY}],
        }],
    })
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushReport {
    pub updated: usize,
    pub failed: usize,
    pub requests: usize,
    pub throttled: usize,
    pub last_error: Option<String>,
    /// Updates and tasks handed to the write-back queue instead of sent.
    pub queued: usize,
    /// Some failure may pass on a later attempt (429s, 5xx, transport, 401, a token
    /// unavailable), so the write-back queue's consumer leaves the message queued.
    pub retry: bool,
}

#[async_trait]
pub trait CrmSink: Send + Sync {
    async fn push(&self, tenant: &TenantId, updates: &[CrmUpdate]) -> PushReport;
    /// Creates the plays' tasks (one request each).
    async fn create_tasks(&self, tenant: &TenantId, tasks: &[CrmTask]) -> PushReport;
}

/// Where the per-tenant tokens come from.
pub enum Tokens {
    Fixed(HashMap<TenantId, String>),
    /// A secret holding `{"tokens": "tenant=token,..."}` ([`writeback_tokens`]).
    Managed(std::sync::Arc<crate::secrets::CachedSecret>),
}

impl From<HashMap<TenantId, String>> for Tokens {
    fn from(v: HashMap<TenantId, String>) -> Self {
        Tokens::Fixed(v)
    }
}

impl Tokens {
    pub async fn token(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<String>, crate::secrets::SecretError> {
        match self {
            Tokens::Fixed(m) => Ok(m.get(tenant).cloned()),
            Tokens::Managed(c) => Ok(writeback_tokens(c.id(), &c.get().await?)?.remove(tenant)),
        }
    }

    /// The tenant's token after a 401, if reading the secret again changed it.
    async fn refreshed(&self, tenant: &TenantId) -> Option<String> {
        let Tokens::Managed(c) = self else {
            return None;
        };
        match c.refresh().await {
            Ok(Some(v)) => writeback_tokens(c.id(), &v)
                .map_err(|e| tracing::error!(error = %e, code = e.code(), "write-back tokens unreadable"))
                .ok()?
                .remove(tenant),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, code = e.code(), "write-back tokens could not be read again");
                None
            }
        }
    }
}

pub struct HubSpotWriteback {
    pub tokens: Tokens,
    /// Paced, retrying HTTP (429 with `Retry-After`, the rate-limit headers, 5xx).
    pub client: HubSpotClient,
}

/// Parses `tenant=token,tenant2=token2` (the `HUBSPOT_WRITEBACK_TOKENS` value).
pub fn parse_tokens(v: &str) -> Result<HashMap<TenantId, String>, String> {
    let mut out = HashMap::new();
    for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (t, tok) = pair
            .split_once('=')
            .ok_or_else(|| "expected tenant=token pairs separated by commas".to_owned())?;
        let t = TenantId::parse(t.trim()).map_err(|e| e.to_string())?;
        if tok.trim().is_empty() {
            return Err(format!("empty token for tenant {t}"));
        }
        out.insert(t, tok.trim().to_owned());
    }
    Ok(out)
}

impl HubSpotWriteback {
    pub fn new(
        base_url: impl Into<String>,
        tokens: impl Into<Tokens>,
        http: std::sync::Arc<dyn HubSpotHttp>,
        per_10s: usize,
    ) -> Self {
        Self {
            tokens: tokens.into(),
            client: HubSpotClient::new(base_url, http, per_10s),
        }
    }

    /// Sets the first backoff used when a 429 or 5xx carries no `Retry-After`.
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.client.backoff = backoff;
        self
    }

    async fn send_batch(
        &self,
        tenant: &TenantId,
        token: &mut String,
        batch: &[CrmUpdate],
        report: &mut PushReport,
    ) {
        let body = batch_body(batch);
        let mut reread = false;
        loop {
            let out = self
                .client
                .call(Method::Post, BATCH_UPDATE_PATH, token, Some(&body))
                .await;
            report.requests += out.requests;
            report.throttled += out.throttled;
            let reply = match out.reply {
                Ok(r) => r,
                Err(e) => {
                    report.failed += batch.len();
                    report.last_error = Some(e);
                    report.retry = true;
                    return;
                }
            };
            report.retry |= retryable(reply.status);
            match reply.status {
                // A rotated token: read the secret again (once) and retry with the new one.
                401 if !reread => {
                    reread = true;
                    if let Some(fresh) = self.tokens.refreshed(tenant).await {
                        tracing::info!(tenant = %tenant, "HubSpot token rotated; retrying with the new one");
                        *token = fresh;
                        continue;
                    }
                    report.failed += batch.len();
                    report.last_error = Some("401: the HubSpot token was refused".into());
                }
                200 => report.updated += batch.len(),
                207 => {
                    // Multi-status: some inputs failed (e.g. unknown company ids).
                    let errors = reply
                        .json()
                        .and_then(|v| v["numErrors"].as_u64())
                        .unwrap_or(0) as usize;
                    let errors = errors.min(batch.len());
                    report.updated += batch.len() - errors;
                    report.failed += errors;
                    if errors > 0 {
                        report.last_error = Some(format!("207: {errors} companies not updated"));
                    }
                }
                429 => {
                    report.failed += batch.len();
                    report.last_error = Some("gave up after repeated 429s".into());
                }
                status => {
                    report.failed += batch.len();
                    report.last_error = Some(format!("{status}: {}", reply.excerpt()));
                }
            }
            return;
        }
    }
}

/// Answers worth another attempt later: throttling, server errors and a refused token
/// (it may be rotated in the secret meanwhile).
fn retryable(status: u16) -> bool {
    status == 401 || status == 429 || status >= 500
}

impl HubSpotWriteback {
    /// The tenant's token, or the report of `n` items failed for want of one.
    /// The HubSpot owner id of `email` (owners API), `None` when HubSpot knows no such
    /// owner or the look-up failed: the task is then created unassigned, with the
    /// owner's e-mail in its body, rather than not at all.
    async fn owner_by_email(
        &self,
        token: &str,
        email: &str,
        report: &mut PushReport,
    ) -> Option<String> {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("email", email)
            .append_pair("limit", "1")
            .finish();
        let out = self
            .client
            .call(Method::Get, &format!("{OWNERS_PATH}?{query}"), token, None)
            .await;
        report.requests += out.requests;
        report.throttled += out.throttled;
        match out.reply {
            Ok(r) if (200..300).contains(&r.status) => {
                let id = r.json().and_then(|v| match &v["results"][0]["id"] {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                });
                if id.is_none() {
                    tracing::info!(owner_email = %email, "no HubSpot owner with this e-mail: the task is left unassigned");
                }
                id
            }
            Ok(r) => {
                tracing::warn!(status = r.status, body = %r.excerpt(), "HubSpot owner look-up refused: the task is left unassigned");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "HubSpot owner look-up failed: the task is left unassigned");
                None
            }
        }
    }

    async fn token_or_report(&self, tenant: &TenantId, n: usize) -> Result<String, PushReport> {
        let mut report = PushReport {
            failed: n,
            ..Default::default()
        };
        match self.tokens.token(tenant).await {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => {
                report.last_error =
                    Some(format!("no HubSpot token configured for tenant {tenant}"));
            }
            Err(e) => {
                tracing::error!(tenant = %tenant, error = %e, code = e.code(), "write-back tokens unavailable");
                report.last_error = Some(e.to_string());
                report.retry = true;
            }
        }
        Err(report)
    }
}

#[async_trait]
impl CrmSink for HubSpotWriteback {
    async fn push(&self, tenant: &TenantId, updates: &[CrmUpdate]) -> PushReport {
        let mut token = match self.token_or_report(tenant, updates.len()).await {
            Ok(t) => t,
            Err(report) => return report,
        };
        let mut report = PushReport::default();
        for batch in updates.chunks(BATCH_SIZE) {
            self.send_batch(tenant, &mut token, batch, &mut report)
                .await;
        }
        report
    }

    async fn create_tasks(&self, tenant: &TenantId, tasks: &[CrmTask]) -> PushReport {
        let token = match self.token_or_report(tenant, tasks.len()).await {
            Ok(t) => t,
            Err(report) => return report,
        };
        let mut report = PushReport::default();
        // Owner ids looked up by e-mail, once per address per call.
        let mut owners: HashMap<String, Option<String>> = HashMap::new();
        for t in tasks {
            let mut t = t.clone();
            if let (None, Some(email)) = (&t.owner_id, &t.owner_email) {
                if !owners.contains_key(email) {
                    let found = self.owner_by_email(&token, email, &mut report).await;
                    owners.insert(email.clone(), found);
                }
                t.owner_id = owners.get(email).cloned().flatten();
            }
            let out = self
                .client
                .call(Method::Post, TASKS_PATH, &token, Some(&task_body(&t)))
                .await;
            report.requests += out.requests;
            report.throttled += out.throttled;
            match out.reply {
                Ok(r) if (200..300).contains(&r.status) => report.updated += 1,
                Ok(r) => {
                    report.failed += 1;
                    report.retry |= retryable(r.status);
                    report.last_error = Some(format!("{}: {}", r.status, r.excerpt()));
                }
                Err(e) => {
                    report.failed += 1;
                    report.retry = true;
                    report.last_error = Some(e);
                }
            }
        }
        report
    }
}

/// The write-back tokens a secret holds: `{"tokens": "tenant=token,..."}` or the
/// `tenant=token,...` list as plain text (the `HUBSPOT_WRITEBACK_TOKENS` format).
pub fn writeback_tokens(
    id: &crate::secrets::SecretId,
    value: &str,
) -> Result<std::collections::HashMap<crate::ids::TenantId, String>, crate::secrets::SecretError> {
    let value = value.trim();
    let list = if value.starts_with('{') {
        #[derive(serde::Deserialize)]
        struct Tokens {
            #[serde(default)]
            tokens: String,
        }
        serde_json::from_str::<Tokens>(value)
            .map_err(|e| crate::secrets::SecretError::Malformed {
                id: id.to_string(),
                reason: format!("expected {{\"tokens\": \"tenant=token,...\"}}: {e}"),
            })?
            .tokens
    } else {
        value.to_owned()
    };
    parse_tokens(&list).map_err(|reason| crate::secrets::SecretError::Malformed {
        id: id.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_per_tenant_and_bad_lists_are_refused() {
        let t = parse_tokens("acme=pat-1, beta = pat-2").unwrap();
        assert_eq!(t[&TenantId::parse("beta").unwrap()], "pat-2");
        assert!(parse_tokens("acme").is_err());
        assert!(parse_tokens("acme=").is_err());
        assert!(parse_tokens("Bad Tenant=x").is_err());
        assert!(parse_tokens("").unwrap().is_empty());
    }

    /// HubSpot accepting one token only; a secret store whose value the test rotates.
    struct OnlyToken(&'static str);

    #[async_trait]
    impl HubSpotHttp for OnlyToken {
        async fn send(
            &self,
            req: crate::hubspot::client::HttpRequest,
        ) -> Result<crate::hubspot::client::HttpReply, String> {
            Ok(crate::hubspot::client::HttpReply {
                status: if req.token == self.0 { 200 } else { 401 },
                ..Default::default()
            })
        }
    }

    struct Store(std::sync::Mutex<String>);

    #[async_trait]
    impl crate::ports::SecretSource for Store {
        async fn fetch(
            &self,
            _id: &crate::secrets::SecretId,
        ) -> Result<String, crate::secrets::SecretError> {
            Ok(self.0.lock().unwrap().clone())
        }
    }

    fn update() -> CrmUpdate {
        CrmUpdate {
            company_id: "42".into(),
            score: 50.0,
            band: Band::Yellow,
            reasons: String::new(),
            as_of: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            portal: None,
            play: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_rotated_in_the_secret_is_used_after_one_401_without_a_restart() {
        let store = std::sync::Arc::new(Store(std::sync::Mutex::new(
            r#"{"tokens":"acme=pat-old"}"#.into(),
        )));
        let mut secret = crate::secrets::CachedSecret::new(
            store.clone(),
            crate::secrets::SecretId::parse("tokens").unwrap(),
        );
        secret.min_refresh = Duration::ZERO;
        let wb = HubSpotWriteback::new(
            "https://api.example",
            Tokens::Managed(std::sync::Arc::new(secret)),
            std::sync::Arc::new(OnlyToken("pat-new")),
            100,
        );
        let acme = TenantId::parse("acme").unwrap();
        let r = wb.push(&acme, &[update()]).await;
        assert_eq!((r.updated, r.failed), (0, 1), "the old token is refused");
        *store.0.lock().unwrap() = r#"{"tokens":"acme=pat-new"}"#.into();
        let r = wb.push(&acme, &[update()]).await;
        assert_eq!((r.updated, r.failed, r.requests), (1, 0, 2), "{r:?}");
    }
    #[test]
    fn writeback_tokens_read_the_tokens_field_or_the_plain_list() {
        let id = crate::secrets::SecretId::parse("s").unwrap();
        let acme = crate::ids::TenantId::parse("acme").unwrap();
        let t = writeback_tokens(&id, r#"{"tokens":"acme=pat-1"}"#).unwrap();
        assert_eq!(t.get(&acme).map(String::as_str), Some("pat-1"));
        let t = writeback_tokens(&id, "acme=pat-2").unwrap();
        assert_eq!(t.get(&acme).map(String::as_str), Some("pat-2"));
        assert!(writeback_tokens(&id, r#"{"tokens":""}"#)
            .unwrap()
            .is_empty());
        assert_eq!(
            writeback_tokens(&id, r#"{"tokens":"acme"}"#)
                .unwrap_err()
                .code(),
            "secret_malformed"
        );
    }
}
