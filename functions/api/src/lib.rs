//! The query and admin API: accounts, usage, definitions.
//!
//! Every `/v1` route is tenant-scoped by the caller's API key; another tenant's ids
//! are simply not found (404), never forbidden.

use chrono::Utc;
use domain::account::profile_from_body;
use domain::auth::KeyScope;
use domain::entitlement::{balance, entitlement_from_body, Entitlement};
use domain::event::DefinitionStatus;
use domain::health::store::HealthStore;
use domain::ids::EntitlementId;
use domain::ids::{AccountId, MeterName, Segment, TenantId};
use domain::keys::Scope;
use domain::limits::{LimitError, LimitWatch};
use domain::ports::{
    AccountStore, DefinitionStore, DigestStore, Directory, EntitlementStore, KeyAdmin,
    MappingStore, UsageReader,
};
use domain::usage::{summarize, UsageQuery};
use lambda::http::ErrorCode;
use lambda::http::{authenticate, body_bytes, error, json, query_pairs, ApiError, PageParams};
use lambda_http::{Body, Request, Response};
use serde_json::json;
use std::sync::Arc;

pub mod adoption;
pub mod bands;
pub mod governance;
pub mod hubspot_setup;
pub mod portals;

/// The API as its Lambda wires it (and the web function, which serves pages from the
/// same API): DynamoDB store, per-tenant quotas from the environment, governance with
/// the alerts queue (`ALERTS_QUEUE_URL`) and the events queue (`EVENTS_QUEUE_URL`).
pub fn on_lambda(
    store: Arc<aws::dynamo::DynamoStore>,
    sqs: &aws_sdk_sqs::Client,
) -> anyhow::Result<Api> {
    let quotas = Arc::new(domain::quota::Quotas::from_env()?);
    Ok(wired(
        store,
        sqs,
        quotas,
        lambda::config::required("ALERTS_QUEUE_URL").ok(),
        lambda::config::required("EVENTS_QUEUE_URL").ok(),
    ))
}

/// The API over one store and its two queues: what [`on_lambda`] builds from the
/// environment and the local stack builds per function role. Governance notifications
/// go to the alerts queue when there is one; held events are replayed onto the events
/// queue when their definition is restored.
pub fn wired(
    store: Arc<aws::dynamo::DynamoStore>,
    sqs: &aws_sdk_sqs::Client,
    quotas: Arc<domain::quota::Quotas>,
    alerts_url: Option<String>,
    events_url: Option<String>,
) -> Api {
    let queue = |url: Option<String>| {
        url.map(|url| {
            Arc::new(aws::sqs::SqsQueue::new(sqs.clone(), url))
                as Arc<dyn domain::queue::EventQueue>
        })
    };
    Api::new(store.clone())
        .with_quotas(quotas)
        .with_portals(store.clone())
        .with_governance(governance::Governance {
            changes: store.clone(),
            reports: store.clone(),
            alerts: queue(alerts_url),
            quarantine: store.clone(),
            events: queue(events_url),
            quality: Some(store),
        })
}

/// The risk listing of `GET /v1/accounts` with `owner` or `band_changed_within`
/// (days, today included): the owner's partition of the risk index, else one
/// partition per day of the window.
pub fn risk_select(
    segment: Option<Segment>,
    bands: &[domain::health::model::Band],
    owner: Option<String>,
    band_changed_within: Option<i64>,
    today: chrono::NaiveDate,
) -> domain::health::store::RiskSelect {
    domain::health::store::RiskSelect {
        segment,
        bands: bands.to_vec(),
        owner,
        changed_since: band_changed_within
            .map(|d| today - chrono::Duration::days(d.saturating_sub(1))),
    }
}

/// The body of `GET /v1/accounts/{account}/alerts`: each alert with what crossed what
/// (`subject`, as e-mailed), the suggested next step and the alert as delivered.
pub fn alerts_body(account: &AccountId, alerts: &[domain::alert::Alert]) -> serde_json::Value {
    use domain::alert::{render, wire, ALERT_HISTORY_DAYS, RECENT_ALERTS_KEPT};
    let shown: Vec<serde_json::Value> = alerts
        .iter()
        .map(|a| {
            let r = render(a);
            json!({
                "subject": r.subject,
                "next_step": r.json["suggested_next_step"],
                "alert": wire(a),
            })
        })
        .collect();
    json!({
        "account": account, "alerts": shown,
        "kept": RECENT_ALERTS_KEPT, "retention_days": ALERT_HISTORY_DAYS,
    })
}

/// What a request asks for, once its method and path are matched: one variant per
/// route of [`ROUTES`], dispatched by [`Api::route`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
    ListAccounts,
    GetAccount,
    PutAccount,
    AccountUsage,
    AccountAlerts,
    SegmentUsage,
    SegmentAdoption,
    ListDefinitions,
    GetDefinition,
    PutDefinition,
    GetMappings,
    PutMappings,
    GetPortal,
    PutPortal,
    DeletePortal,
    HubspotSetup,
    ListEntitlements,
    GetEntitlement,
    PutEntitlement,
    DeleteEntitlement,
    GetAlertPolicy,
    PutAlertPolicy,
    GetHealth,
    HealthHistory,
    GetHealthConfig,
    HealthBands,
    PutHealthConfig,
    GetPlays,
    PutPlays,
    DeleteDefinition,
    RestoreDefinition,
    DefinitionChanges,
    LatestAudit,
    ListAudits,
    ListQuarantine,
    ReplayQuarantine,
    GetGovernancePolicy,
    PutGovernancePolicy,
    ListKeys,
    CreateKey,
    RevokeKey,
    RotateKey,
}

/// Every route this function serves, as (method, OpenAPI path, route): the one place a
/// path is written.
pub const ROUTES: &[(&str, &str, Route)] = &[
    ("GET", "/healthz", Route::Healthz),
    ("GET", "/v1/accounts", Route::ListAccounts),
    ("GET", "/v1/accounts/{account}", Route::GetAccount),
    ("PUT", "/v1/accounts/{account}", Route::PutAccount),
    ("GET", "/v1/accounts/{account}/usage", Route::AccountUsage),
    ("GET", "/v1/accounts/{account}/alerts", Route::AccountAlerts),
    ("GET", "/v1/segments/{segment}/usage", Route::SegmentUsage),
    (
        "GET",
        "/v1/segments/{segment}/adoption",
        Route::SegmentAdoption,
    ),
    ("GET", "/v1/definitions", Route::ListDefinitions),
    ("GET", "/v1/definitions/{meter}", Route::GetDefinition),
    ("PUT", "/v1/definitions/{meter}", Route::PutDefinition),
    ("GET", "/v1/hubspot/mappings", Route::GetMappings),
    ("PUT", "/v1/hubspot/mappings", Route::PutMappings),
    ("GET", "/v1/hubspot/portals/{portal_id}", Route::GetPortal),
    ("PUT", "/v1/hubspot/portals/{portal_id}", Route::PutPortal),
    (
        "DELETE",
        "/v1/hubspot/portals/{portal_id}",
        Route::DeletePortal,
    ),
    ("POST", "/v1/hubspot/setup", Route::HubspotSetup),
    (
        "GET",
        "/v1/accounts/{account}/entitlements",
        Route::ListEntitlements,
    ),
    ("GET", "/v1/entitlements/{id}", Route::GetEntitlement),
    ("PUT", "/v1/entitlements/{id}", Route::PutEntitlement),
    ("DELETE", "/v1/entitlements/{id}", Route::DeleteEntitlement),
    ("GET", "/v1/alerts/policy", Route::GetAlertPolicy),
    ("PUT", "/v1/alerts/policy", Route::PutAlertPolicy),
    ("GET", "/v1/accounts/{account}/health", Route::GetHealth),
    (
        "GET",
        "/v1/accounts/{account}/health/history",
        Route::HealthHistory,
    ),
    ("GET", "/v1/health/config", Route::GetHealthConfig),
    ("GET", "/v1/health/bands", Route::HealthBands),
    ("PUT", "/v1/health/config", Route::PutHealthConfig),
    ("GET", "/v1/hubspot/plays", Route::GetPlays),
    ("PUT", "/v1/hubspot/plays", Route::PutPlays),
    // Governance and audits (functions/api/src/governance.rs).
    ("DELETE", "/v1/definitions/{meter}", Route::DeleteDefinition),
    (
        "POST",
        "/v1/definitions/{meter}/restore",
        Route::RestoreDefinition,
    ),
    (
        "GET",
        "/v1/definitions/{meter}/changes",
        Route::DefinitionChanges,
    ),
    ("GET", "/v1/audits/latest", Route::LatestAudit),
    ("GET", "/v1/audits", Route::ListAudits),
    (
        "GET",
        "/v1/definitions/{meter}/quarantine",
        Route::ListQuarantine,
    ),
    (
        "POST",
        "/v1/definitions/{meter}/quarantine/replay",
        Route::ReplayQuarantine,
    ),
    ("GET", "/v1/governance/policy", Route::GetGovernancePolicy),
    ("PUT", "/v1/governance/policy", Route::PutGovernancePolicy),
    // API keys (admin-scoped keys only).
    ("GET", "/v1/keys", Route::ListKeys),
    ("POST", "/v1/keys", Route::CreateKey),
    ("DELETE", "/v1/keys/{key_id}", Route::RevokeKey),
    ("POST", "/v1/keys/{key_id}/rotate", Route::RotateKey),
];

/// The scope a route needs: every read is `read`, except the key listing; every
/// change is `admin`. (`POST /v1/events` is ingest's and needs `ingest`.)
pub fn needed_scope(method: &str, template: &str) -> KeyScope {
    if method == "GET" && !template.starts_with("/v1/keys") {
        KeyScope::Read
    } else {
        KeyScope::Admin
    }
}

/// Definitions per page of `GET /v1/definitions`.
pub const DEFAULT_DEFINITIONS: usize = 100;
pub const MAX_DEFINITIONS: usize = 200;
/// Definitions one tenant may store (deleted ones included: they stay stored, and
/// ingest reads every one of them on each request).
pub const MAX_DEFINITIONS_PER_TENANT: usize = 1_000;

/// Largest admin request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub struct Api {
    pub directory: Arc<dyn Directory>,
    pub accounts: Arc<dyn AccountStore>,
    pub usage: Arc<dyn UsageReader>,
    pub definitions: Arc<dyn DefinitionStore>,
    pub mappings: Arc<dyn MappingStore>,
    pub entitlements: Arc<dyn EntitlementStore>,
    pub alert_policies: Arc<dyn DigestStore>,
    /// Each account's recent alerts (recorded by notify).
    pub alert_history: Arc<dyn domain::ports::AlertHistory>,
    pub health: Arc<dyn HealthStore>,
    /// Band counts per segment and day (written by the score run).
    pub band_summaries: Arc<dyn domain::health::bands::BandSummaryStore>,
    pub keys: Arc<dyn KeyAdmin>,
    /// Per-tenant request quotas of this instance (`429 rate_limited`).
    pub quotas: Arc<domain::quota::Quotas>,
    /// Change log, notifications and audit reports (`None`: definitions are saved
    /// without a change log and the audit routes answer 503).
    pub governance: Option<governance::Governance>,
    /// Definitions one tenant may store ([`MAX_DEFINITIONS_PER_TENANT`]).
    pub max_definitions_per_tenant: usize,
    /// HubSpot portal → tenant map (`None`: the portal routes answer 503).
    pub portals: Option<Arc<dyn domain::ports::PortalAdmin>>,
    /// HubSpot's API and the write-back tokens (`None`: `POST /v1/hubspot/setup`
    /// answers 503).
    pub hubspot_setup: Option<Arc<hubspot_setup::HubSpotSetup>>,
    /// Maps a request path to its route template.
    router: matchit::Router<&'static str>,
}

impl Api {
    pub fn new<S>(store: Arc<S>) -> Self
    where
        S: Directory
            + AccountStore
            + UsageReader
            + DefinitionStore
            + MappingStore
            + EntitlementStore
            + DigestStore
            + domain::ports::AlertHistory
            + HealthStore
            + domain::health::bands::BandSummaryStore
            + KeyAdmin
            + 'static,
    {
        let mut router = matchit::Router::new();
        for (_, p, _) in ROUTES {
            // Paths are constants checked by a unit test; repeats (one path, two
            // methods) are refused by the router and harmless.
            let _ = router.insert(*p, *p);
        }
        Self {
            mappings: store.clone(),
            directory: store.clone(),
            accounts: store.clone(),
            usage: store.clone(),
            definitions: store.clone(),
            alert_policies: store.clone(),
            alert_history: store.clone(),
            health: store.clone(),
            band_summaries: store.clone(),
            keys: store.clone(),
            quotas: Arc::new(domain::quota::Quotas::new(
                domain::quota::Allowance {
                    rate: f64::from(domain::quota::DEFAULT_RATE),
                    burst: f64::from(domain::quota::DEFAULT_BURST),
                },
                Default::default(),
            )),
            entitlements: store,
            governance: None,
            portals: None,
            hubspot_setup: None,
            max_definitions_per_tenant: MAX_DEFINITIONS_PER_TENANT,
            router,
        }
    }

    /// Uses these per-tenant request quotas (default: 100/s, burst 200).
    pub fn with_quotas(mut self, quotas: Arc<domain::quota::Quotas>) -> Self {
        self.quotas = quotas;
        self
    }

    /// Adds the HubSpot portal routes.
    pub fn with_portals(mut self, portals: Arc<dyn domain::ports::PortalAdmin>) -> Self {
        self.portals = Some(portals);
        self
    }

    /// Adds `POST /v1/hubspot/setup`.
    pub fn with_hubspot_setup(mut self, setup: Option<Arc<hubspot_setup::HubSpotSetup>>) -> Self {
        self.hubspot_setup = setup;
        self
    }

    /// `POST /v1/hubspot/setup` ([`hubspot_setup`]).
    async fn hubspot_setup(&self, tenant: &TenantId) -> Result<Response<Body>, ApiError> {
        let s = self.hubspot_setup.as_deref().ok_or_else(|| {
            ApiError::new(
                ErrorCode::HubspotNotConfigured,
                "this deployment has no HubSpot write-back tokens (HubspotWritebackTokens)",
            )
        })?;
        hubspot_setup::post(s, tenant).await
    }

    /// `PUT/GET/DELETE /v1/hubspot/portals/{portal_id}` ([`portals`]).
    async fn portal(
        &self,
        route: Route,
        tenant: &TenantId,
        raw: &str,
    ) -> Result<Response<Body>, ApiError> {
        let p = self.portals.as_deref().ok_or_else(|| {
            ApiError::new(
                ErrorCode::PortalsNotConfigured,
                "this deployment has no HubSpot portal directory",
            )
        })?;
        match route {
            Route::PutPortal => portals::put(p, tenant, raw).await,
            Route::DeletePortal => portals::delete(p, tenant, raw).await,
            _ => portals::get(p, tenant, raw).await,
        }
    }

    /// Adds the registry change log, notifications and audit reports.
    pub fn with_governance(mut self, g: governance::Governance) -> Self {
        self.governance = Some(g);
        self
    }

    /// The Lambda entry point: never fails; every problem is an HTTP response.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        match self.route(req, None).await {
            Ok(resp) => resp,
            Err(e) => error(&e),
        }
    }

    /// Answers a request on behalf of a key the caller has already looked up (the web
    /// app's session holds the key's hash, never the key): the same routes, the same
    /// scope check and the same responses as [`Self::handle`] with that key.
    pub async fn handle_as(&self, grant: &domain::auth::KeyGrant, req: Request) -> Response<Body> {
        match self.route(req, Some(grant)).await {
            Ok(resp) => resp,
            Err(e) => error(&e),
        }
    }

    async fn route(
        &self,
        req: Request,
        granted: Option<&domain::auth::KeyGrant>,
    ) -> Result<Response<Body>, ApiError> {
        let path = req.uri().path().to_owned();
        let matched = self
            .router
            .at(&path)
            .map_err(|_| ApiError::not_found("route"))?;
        let params: Vec<(String, String)> = matched
            .params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let template = *matched.value;
        let method = req.method().as_str().to_owned();
        let Some(route) = ROUTES
            .iter()
            .find(|(m, p, _)| *m == method && *p == template)
            .map(|(_, _, r)| *r)
        else {
            let allowed: Vec<&str> = ROUTES
                .iter()
                .filter(|(_, p, _)| *p == template)
                .map(|(m, _, _)| *m)
                .collect();
            return Err(ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("{method} is not allowed here; use {}", allowed.join(" or ")),
            ));
        };
        if route == Route::Healthz {
            return Ok(json(200, &json!({"status": "ok"})));
        }
        if body_bytes(&req).len() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            ));
        }
        let needed = needed_scope(&method, template);
        let tenant = match granted {
            None => {
                authenticate(self.directory.as_ref(), &req, needed)
                    .await?
                    .tenant
            }
            Some(grant) => lambda::http::check_grant(grant.clone(), needed)?.tenant,
        };
        self.quotas
            .take(&tenant, std::time::Instant::now())
            .map_err(|wait| ApiError::rate_limited(&tenant, wait))?;
        match route {
            Route::Healthz => Ok(json(200, &json!({"status": "ok"}))),
            Route::ListAccounts => self.list_accounts(&tenant, &req).await,
            Route::GetAccount => self.get_account(&tenant, &param("account")).await,
            Route::PutAccount => self.put_account(&tenant, &param("account"), &req).await,
            Route::AccountUsage => self.account_usage(&tenant, &param("account"), &req).await,
            Route::AccountAlerts => self.account_alerts(&tenant, &param("account"), &req).await,
            Route::SegmentUsage => self.segment_usage(&tenant, &param("segment"), &req).await,
            Route::SegmentAdoption => {
                self.segment_adoption(&tenant, &param("segment"), &req)
                    .await
            }
            Route::ListDefinitions => self.list_definitions(&tenant, &req).await,
            Route::GetDefinition => self.get_definition(&tenant, &param("meter")).await,
            Route::GetMappings => self.get_mappings(&tenant).await,
            Route::PutMappings => self.put_mappings(&tenant, &req).await,
            Route::HubspotSetup => self.hubspot_setup(&tenant).await,
            Route::GetPortal | Route::PutPortal | Route::DeletePortal => {
                self.portal(route, &tenant, &param("portal_id")).await
            }
            Route::PutDefinition => self.put_definition(&tenant, &param("meter"), &req).await,
            Route::ListEntitlements => self.list_entitlements(&tenant, &param("account")).await,
            Route::GetEntitlement => self.get_entitlement(&tenant, &param("id")).await,
            Route::PutEntitlement => self.put_entitlement(&tenant, &param("id"), &req).await,
            Route::DeleteEntitlement => self.delete_entitlement(&tenant, &param("id")).await,
            Route::GetAlertPolicy => self.get_alert_policy(&tenant).await,
            Route::PutAlertPolicy => self.put_alert_policy(&tenant, &req).await,
            Route::GetHealth => self.get_health(&tenant, &param("account")).await,
            Route::HealthHistory => self.health_history(&tenant, &param("account"), &req).await,
            Route::GetHealthConfig => self.get_health_config(&tenant).await,
            Route::HealthBands => self.health_bands(&tenant, &req).await,
            Route::PutHealthConfig => self.put_health_config(&tenant, &req).await,
            Route::GetPlays => self.get_plays(&tenant).await,
            Route::PutPlays => self.put_plays(&tenant, &req).await,
            Route::DeleteDefinition => self.delete_definition(&tenant, &param("meter"), &req).await,
            Route::RestoreDefinition => {
                self.restore_definition(&tenant, &param("meter"), &req)
                    .await
            }
            Route::DefinitionChanges => {
                self.definition_changes(&tenant, &param("meter"), &req)
                    .await
            }
            Route::LatestAudit => self.latest_audit(&tenant).await,
            Route::ListAudits => self.list_audits(&tenant, &req).await,
            Route::ListQuarantine => self.list_quarantine(&tenant, &param("meter"), &req).await,
            Route::ReplayQuarantine => self.replay_quarantine(&tenant, &param("meter")).await,
            Route::GetGovernancePolicy => self.get_governance_policy(&tenant).await,
            Route::PutGovernancePolicy => self.put_governance_policy(&tenant, &req).await,
            Route::ListKeys => self.list_keys(&tenant).await,
            Route::CreateKey => self.create_key(&tenant, &req).await,
            Route::RevokeKey => self.revoke_key(&tenant, &param("key_id")).await,
            Route::RotateKey => self.rotate_key(&tenant, &param("key_id"), &req).await,
        }
    }

    async fn list_keys(&self, tenant: &TenantId) -> Result<Response<Body>, ApiError> {
        let now = Utc::now();
        let keys: Vec<_> = self
            .keys
            .list_keys(tenant)
            .await?
            .iter()
            .map(|k| key_json(k, now))
            .collect();
        Ok(json(200, &json!({ "keys": keys })))
    }

    async fn create_key(
        &self,
        tenant: &TenantId,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let new = domain::auth::new_key_from_body(body_bytes(req))
            .map_err(|e| ApiError::domain(400, e.code, e.message))?;
        let now = Utc::now();
        let (key, grant) = self.keys.create_key(tenant, &new, now).await?;
        tracing::info!(tenant = %tenant, key_id = %grant.key_id, scopes = ?grant.scopes, "API key created");
        let mut v = key_json(&grant, now);
        v["key"] = json!(key);
        Ok(json(201, &v))
    }

    async fn revoke_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
    ) -> Result<Response<Body>, ApiError> {
        let now = Utc::now();
        let grant = self
            .keys
            .revoke_key(tenant, key_id, now)
            .await?
            .ok_or_else(|| ApiError::not_found("key"))?;
        tracing::info!(tenant = %tenant, key_id = %grant.key_id, "API key revoked");
        Ok(json(200, &key_json(&grant, now)))
    }

    async fn rotate_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let overlap = domain::auth::overlap_from_body(body_bytes(req))
            .map_err(|e| ApiError::domain(400, e.code, e.message))?;
        let now = Utc::now();
        let (key, grant, old) = self
            .keys
            .rotate_key(tenant, key_id, overlap, now)
            .await?
            .ok_or_else(|| ApiError::not_found("key"))?;
        tracing::info!(tenant = %tenant, old = %old.key_id, new = %grant.key_id, overlap_hours = overlap, "API key rotated");
        let mut v = key_json(&grant, now);
        v["key"] = json!(key);
        v["replaces"] = key_json(&old, now);
        Ok(json(201, &v))
    }

    /// An entitlement with the balance of its current period (`null` when not in force).
    async fn with_balance(
        &self,
        tenant: &TenantId,
        ent: &Entitlement,
    ) -> Result<serde_json::Value, ApiError> {
        let now = Utc::now();
        let mut balance_error = None;
        let balance = match ent.period_at(now) {
            None => None,
            Some(period) => {
                match LimitWatch::usage_for(self.usage.as_ref(), tenant, ent, &period)
                    .await
                    .and_then(|(used, prev)| Ok(balance(ent, period, used, prev, now)?))
                {
                    Ok(b) => Some(b),
                    Err(LimitError::Overflow(e)) => {
                        balance_error = Some(e.to_string());
                        None
                    }
                    Err(LimitError::Store(e)) => return Err(e.into()),
                    Err(e) => {
                        tracing::error!(error = %e, "balance failed");
                        return Err(ApiError::new(
                            ErrorCode::InternalError,
                            "an internal error occurred; it has been logged",
                        ));
                    }
                }
            }
        };
        let mut v = serde_json::to_value(ent).map_err(|e| {
            tracing::error!(error = %e, "entitlement not serializable");
            ApiError::new(
                ErrorCode::InternalError,
                "an internal error occurred; it has been logged",
            )
        })?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("balance".into(), json!(balance));
            if let Some(e) = balance_error {
                obj.insert("balance_error".into(), json!(e));
            }
        }
        Ok(v)
    }

    async fn list_entitlements(
        &self,
        tenant: &TenantId,
        account: &str,
    ) -> Result<Response<Body>, ApiError> {
        let account = AccountId::parse(account).map_err(|_| ApiError::not_found("account"))?;
        let ents = self
            .entitlements
            .list_entitlements(tenant, &account)
            .await?;
        if ents.is_empty() && self.accounts.get_account(tenant, &account).await?.is_none() {
            return Err(ApiError::not_found("account"));
        }
        let mut out = Vec::with_capacity(ents.len());
        for e in &ents {
            out.push(self.with_balance(tenant, e).await?);
        }
        Ok(json(200, &json!({"account": account, "entitlements": out})))
    }

    async fn get_entitlement(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Response<Body>, ApiError> {
        let id = EntitlementId::parse(id).map_err(|_| ApiError::not_found("entitlement"))?;
        let ent = self
            .entitlements
            .get_entitlement(tenant, &id)
            .await?
            .ok_or_else(|| ApiError::not_found("entitlement"))?;
        Ok(json(200, &self.with_balance(tenant, &ent).await?))
    }

    async fn delete_entitlement(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Response<Body>, ApiError> {
        let id = EntitlementId::parse(id).map_err(|_| ApiError::not_found("entitlement"))?;
        let ent = self
            .entitlements
            .get_entitlement(tenant, &id)
            .await?
            .ok_or_else(|| ApiError::not_found("entitlement"))?;
        self.entitlements.delete_entitlement(tenant, &ent).await?;
        tracing::info!(tenant = %tenant, entitlement = %id, "entitlement deleted");
        Ok(json(200, &json!({"deleted": id})))
    }

    async fn put_entitlement(
        &self,
        tenant: &TenantId,
        id: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let id = EntitlementId::parse(id)
            .map_err(|e| ApiError::new(ErrorCode::InvalidEntitlement, e.to_string()))?;
        let existing = self.entitlements.get_entitlement(tenant, &id).await?;
        let ent = entitlement_from_body(id, body_bytes(req), Utc::now(), existing.as_ref())?;
        if let Some(old) = &existing {
            if old.account != ent.account {
                return Err(ApiError::new(
                    ErrorCode::AccountChanged,
                    format!(
                        "entitlement {} belongs to account {}; delete it to move it",
                        old.id, old.account
                    ),
                ));
            }
        }
        if self
            .accounts
            .get_account(tenant, &ent.account)
            .await?
            .is_none()
        {
            return Err(ApiError::new(
                ErrorCode::UnknownAccount,
                format!(
                    "account '{}' has no profile; PUT /v1/accounts/{} first",
                    ent.account, ent.account
                ),
            ));
        }
        for m in &ent.meters {
            match self.definitions.get_definition(tenant, m).await? {
                Some(d) if d.status != DefinitionStatus::Deleted => {}
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::UnknownMeter,
                        format!("meter '{m}' is not defined (PUT /v1/definitions/{m})"),
                    ))
                }
            }
        }
        let others = self
            .entitlements
            .list_entitlements(tenant, &ent.account)
            .await?;
        if let Some(clash) = others.iter().find(|o| o.id != ent.id && o.overlaps(&ent)) {
            return Err(ApiError::new(
                ErrorCode::OverlappingEntitlement,
                format!(
                    "entitlement {} already counts {} usage of a meter in these dates",
                    clash.id, clash.stage
                ),
            ));
        }
        self.entitlements.put_entitlement(tenant, &ent).await?;
        tracing::info!(tenant = %tenant, entitlement = %ent.id, account = %ent.account, created = existing.is_none(), "entitlement saved");
        let body = self.with_balance(tenant, &ent).await?;
        Ok(json(if existing.is_some() { 200 } else { 201 }, &body))
    }

    async fn list_accounts(
        &self,
        tenant: &TenantId,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let mut segment = None;
        let mut limit = 50usize;
        let mut cursor = None;
        let mut bands = Vec::new();
        let mut by_risk = false;
        let (mut owner, mut band_changed_within) = (None, None);
        for (k, v) in query_pairs(req) {
            match k.as_str() {
                "owner" => {
                    if v.is_empty() || v.chars().count() > 254 {
                        return Err(ApiError::new(
                            ErrorCode::InvalidParameter,
                            "owner must be 1 to 254 characters",
                        ));
                    }
                    owner = Some(v.to_lowercase());
                    by_risk = true;
                }
                "band_changed_within" => {
                    band_changed_within = Some(
                        v.parse::<i64>()
                            .ok()
                            .filter(|d| (1..=domain::health::record::RECENT_DAYS).contains(d))
                            .ok_or_else(|| {
                                ApiError::new(
                                    ErrorCode::InvalidParameter,
                                    format!(
                                        "band_changed_within must be a number of days from 1 to {}",
                                        domain::health::record::RECENT_DAYS
                                    ),
                                )
                            })?,
                    );
                    by_risk = true;
                }
                "segment" => {
                    segment = Some(Segment::parse(&v).ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::InvalidParameter,
                            format!(
                            "segment '{v}' is not one of smb, mid_market, enterprise, strategic"
                        ),
                        )
                    })?)
                }
                "limit" => {
                    limit = v
                        .parse()
                        .ok()
                        .filter(|l| (1..=200).contains(l))
                        .ok_or_else(|| {
                            ApiError::new(
                                ErrorCode::InvalidParameter,
                                "limit must be between 1 and 200",
                            )
                        })?
                }
                "cursor" => cursor = Some(v),
                "band" => {
                    for b in v.split(',').filter(|b| !b.is_empty()) {
                        bands.push(domain::health::model::Band::parse(b).ok_or_else(|| {
                            ApiError::new(
                                ErrorCode::InvalidParameter,
                                format!("band '{b}' is not one of red, yellow, green"),
                            )
                        })?);
                    }
                    by_risk = true;
                }
                "sort" if v == "risk" => by_risk = true,
                "sort" => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidParameter,
                        format!("sort '{v}' is not supported; use sort=risk"),
                    ))
                }
                other => {
                    return Err(ApiError::new(
                        ErrorCode::UnknownParameter,
                        format!(
                        "unknown parameter '{other}'; expected segment, band, owner, band_changed_within, sort, limit, cursor"
                    ),
                    ))
                }
            }
        }
        if by_risk && owner.is_none() && band_changed_within.is_none() {
            // Scored accounts from the risk index, lowest score (riskiest) first.
            let page = self
                .health
                .list_risk(tenant, segment, &bands, limit, cursor.as_deref())
                .await?;
            return Ok(json(
                200,
                &json!({"accounts": page.items, "next_cursor": page.next, "sorted_by": "risk"}),
            ));
        }
        if by_risk {
            // The owner's or the band-change days' partitions of the risk index.
            let today = Utc::now().date_naive();
            let sel = risk_select(segment, &bands, owner, band_changed_within, today);
            let page = self
                .health
                .list_risk_in(tenant, &sel, today, limit, cursor.as_deref())
                .await?;
            return Ok(json(
                200,
                &json!({"accounts": page.items, "next_cursor": page.next, "sorted_by": "risk"}),
            ));
        }
        let page = self
            .accounts
            .list_accounts(tenant, segment, limit, cursor.as_deref())
            .await?;
        Ok(json(
            200,
            &json!({"accounts": page.items, "next_cursor": page.next}),
        ))
    }

    async fn get_account(
        &self,
        tenant: &TenantId,
        account: &str,
    ) -> Result<Response<Body>, ApiError> {
        let account = AccountId::parse(account).map_err(|_| ApiError::not_found("account"))?;
        let profile = self
            .accounts
            .get_account(tenant, &account)
            .await?
            .ok_or_else(|| ApiError::not_found("account"))?;
        Ok(json(200, &profile))
    }

    async fn put_account(
        &self,
        tenant: &TenantId,
        account: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let account = AccountId::parse(account)
            .map_err(|e| ApiError::new(ErrorCode::InvalidAccount, e.to_string()))?;
        let existing = self.accounts.get_account(tenant, &account).await?;
        let profile = profile_from_body(account, body_bytes(req), Utc::now(), existing.as_ref())?;
        let profile = self.accounts.put_account(tenant, &profile).await?;
        tracing::info!(tenant = %tenant, account = %profile.account, segment = %profile.segment, created = existing.is_none(), "account saved");
        Ok(json(if existing.is_some() { 200 } else { 201 }, &profile))
    }

    async fn account_usage(
        &self,
        tenant: &TenantId,
        account: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let account = AccountId::parse(account).map_err(|_| ApiError::not_found("account"))?;
        let q = UsageQuery::parse(&query_pairs(req), Utc::now())?;
        let (from, to) = q.days();
        let rows = self
            .usage
            .read_rollups(
                tenant,
                &Scope::Account(account.clone()),
                from,
                to,
                q.meter.as_ref(),
            )
            .await?;
        // An account is known if it has a profile or any usage; otherwise 404, which is
        // also what another tenant's account looks like.
        if rows.is_empty() && self.accounts.get_account(tenant, &account).await?.is_none() {
            return Err(ApiError::not_found("account"));
        }
        Ok(json(200, &report(json!({"account": account}), &q, &rows)))
    }

    async fn segment_usage(
        &self,
        tenant: &TenantId,
        segment: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let segment = Segment::parse(segment).ok_or_else(|| ApiError::not_found("segment"))?;
        let q = UsageQuery::parse(&query_pairs(req), Utc::now())?;
        let (from, to) = q.days();
        let rows = self
            .usage
            .read_rollups(tenant, &Scope::Segment(segment), from, to, q.meter.as_ref())
            .await?;
        Ok(json(200, &report(json!({"segment": segment}), &q, &rows)))
    }

    async fn list_definitions(
        &self,
        tenant: &TenantId,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let (paging, rest) =
            PageParams::take(query_pairs(req), DEFAULT_DEFINITIONS, MAX_DEFINITIONS)?;
        if let Some((other, _)) = rest.first() {
            return Err(ApiError::new(
                ErrorCode::UnknownParameter,
                format!("unknown parameter '{other}'; expected limit, cursor"),
            ));
        }
        let page = self
            .definitions
            .definitions_page(tenant, paging.limit, paging.cursor.as_deref())
            .await?;
        Ok(json(
            200,
            &json!({"definitions": page.items, "next_cursor": page.next}),
        ))
    }

    async fn get_definition(
        &self,
        tenant: &TenantId,
        meter: &str,
    ) -> Result<Response<Body>, ApiError> {
        let meter = MeterName::parse(meter).map_err(|_| ApiError::not_found("definition"))?;
        let def = self
            .definitions
            .get_definition(tenant, &meter)
            .await?
            .ok_or_else(|| ApiError::not_found("definition"))?;
        Ok(json(200, &def))
    }
}

impl Api {
    async fn get_health(
        &self,
        tenant: &TenantId,
        account: &str,
    ) -> Result<Response<Body>, ApiError> {
        let account = AccountId::parse(account).map_err(|_| ApiError::not_found("account"))?;
        let latest = self
            .health
            .latest(tenant, std::slice::from_ref(&account))
            .await?
            .remove(&account);
        match latest {
            Some(r) => Ok(json(200, &r)),
            None if self.accounts.get_account(tenant, &account).await?.is_some() => {
                Err(ApiError::new(ErrorCode::NotScored,
                    format!("account '{account}' has no health score yet: the daily score run has not covered it"),
                ))
            }
            None => Err(ApiError::not_found("account")),
        }
    }

    /// `GET /v1/accounts/{account}/alerts`: the account's recent alerts, newest first,
    /// each with what crossed what (`subject`) and the suggested next step.
    async fn account_alerts(
        &self,
        tenant: &TenantId,
        account: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        use domain::alert::RECENT_ALERTS_KEPT;
        let account = AccountId::parse(account).map_err(|_| ApiError::not_found("account"))?;
        let (page, rest) = PageParams::take(query_pairs(req), 20, RECENT_ALERTS_KEPT)?;
        let other = match (rest.first(), &page.cursor) {
            (Some((k, _)), _) => Some(k.as_str()),
            // The newest alerts fit one page: there is no next one to ask for.
            (None, Some(_)) => Some("cursor"),
            (None, None) => None,
        };
        if let Some(other) = other {
            return Err(ApiError::new(
                ErrorCode::UnknownParameter,
                format!("unknown parameter '{other}'; expected limit"),
            ));
        }
        let alerts = self
            .alert_history
            .recent_alerts(tenant, &account, page.limit, Utc::now())
            .await?;
        if alerts.is_empty() && self.accounts.get_account(tenant, &account).await?.is_none() {
            return Err(ApiError::not_found("account"));
        }
        Ok(json(200, &alerts_body(&account, &alerts)))
    }

    async fn health_history(
        &self,
        tenant: &TenantId,
        account: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let account = AccountId::parse(account).map_err(|_| ApiError::not_found("account"))?;
        let mut from = None;
        let mut to = None;
        for (k, v) in query_pairs(req) {
            let day = || {
                chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d").map_err(|_| {
                    ApiError::new(
                        ErrorCode::InvalidParameter,
                        format!("{k} '{v}' is not a YYYY-MM-DD date"),
                    )
                })
            };
            match k.as_str() {
                "from" => from = Some(day()?),
                "to" => to = Some(day()?),
                other => {
                    return Err(ApiError::new(
                        ErrorCode::UnknownParameter,
                        format!("unknown parameter '{other}'; expected from, to"),
                    ))
                }
            }
        }
        let to = to.unwrap_or_else(|| Utc::now().date_naive());
        let from = from.unwrap_or(to - chrono::Duration::days(90));
        if from > to || (to - from).num_days() > 400 {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                "from must not be after to, and the range at most 400 days",
            ));
        }
        let history = self.health.history(tenant, &account, from, to).await?;
        if history.is_empty() && self.accounts.get_account(tenant, &account).await?.is_none() {
            return Err(ApiError::not_found("account"));
        }
        let days: Vec<serde_json::Value> = history
            .iter()
            .map(|r| {
                json!({
                    "as_of": r.as_of,
                    "state": r.state,
                    "score": r.score,
                    "band": r.band,
                    "components": r.components.iter().map(|(c, v)| (c, v.score)).collect::<std::collections::BTreeMap<_, _>>(),
                    "reasons": r.reasons.iter().take(5).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(json(
            200,
            &json!({"account": account, "from": from, "to": to, "history": days}),
        ))
    }

    /// The effective config a score run uses, with where each registry-driven
    /// setting came from (`tenant_config`, `registry` or `defaults`).
    async fn get_health_config(&self, tenant: &TenantId) -> Result<Response<Body>, ApiError> {
        let stored = self.health.get_health_config(tenant).await?;
        let defs = self.definitions.list_definitions(tenant).await?;
        let source = if stored.is_some() {
            "tenant"
        } else {
            "defaults"
        };
        let resolved = domain::health::config::HealthConfig::resolve(stored.as_ref(), &defs);
        Ok(json(
            200,
            &json!({"config": resolved.config, "source": source, "sources": resolved.sources}),
        ))
    }

    async fn put_health_config(
        &self,
        tenant: &TenantId,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let cfg = domain::health::config::HealthConfig::from_body(body_bytes(req))?;
        self.health.put_health_config(tenant, &cfg).await?;
        tracing::info!(tenant = %tenant, crm_writeback = cfg.crm_writeback, "health config saved");
        Ok(json(200, &json!({"config": cfg, "source": "tenant"})))
    }

    /// The tenant's plays by tier (none configured: no tier runs a play).
    async fn get_plays(&self, tenant: &TenantId) -> Result<Response<Body>, ApiError> {
        let stored = self.health.get_plays(tenant).await?;
        let source = if stored.is_some() {
            "tenant"
        } else {
            "defaults"
        };
        Ok(json(
            200,
            &json!({"plays": stored.unwrap_or_default(), "source": source}),
        ))
    }

    async fn put_plays(
        &self,
        tenant: &TenantId,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let plays = domain::health::plays::Plays::from_body(body_bytes(req))?;
        self.health.put_plays(tenant, &plays).await?;
        tracing::info!(tenant = %tenant, tiers = plays.tiers.len(), "plays saved");
        Ok(json(200, &json!({"plays": plays, "source": "tenant"})))
    }

    async fn get_mappings(&self, tenant: &TenantId) -> Result<Response<Body>, ApiError> {
        let (rules, source) = match self.mappings.get_mapping_rules(tenant).await? {
            Some(r) => (r, "tenant"),
            None => (domain::hubspot::mapping::default_rules(), "defaults"),
        };
        let (profile, profile_source) = match self.mappings.get_profile_sync(tenant).await? {
            Some(p) => (p, "tenant"),
            None => (domain::hubspot::profile::default_profile_sync(), "defaults"),
        };
        Ok(json(
            200,
            &json!({"rules": rules, "source": source, "profile_properties": profile, "profile_properties_source": profile_source}),
        ))
    }

    async fn put_mappings(
        &self,
        tenant: &TenantId,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let defined: std::collections::HashSet<MeterName> = self
            .definitions
            .list_definitions(tenant)
            .await?
            .into_iter()
            .filter(|d| d.status != domain::event::DefinitionStatus::Deleted)
            .map(|d| d.meter)
            .collect();
        let rules =
            domain::hubspot::mapping::rules_from_body(body_bytes(req), &|m| defined.contains(m))?;
        let profile = domain::hubspot::profile::profile_sync_from_body(body_bytes(req))?;
        self.mappings.put_mapping_rules(tenant, &rules).await?;
        let profile = match profile {
            Some(p) => {
                self.mappings.put_profile_sync(tenant, &p).await?;
                p
            }
            None => self
                .mappings
                .get_profile_sync(tenant)
                .await?
                .unwrap_or_else(domain::hubspot::profile::default_profile_sync),
        };
        tracing::info!(tenant = %tenant, rules = rules.len(), profile_properties = profile.len(), "HubSpot mapping rules replaced");
        Ok(json(
            200,
            &json!({"rules": rules, "source": "tenant", "profile_properties": profile}),
        ))
    }
}

/// A usage report body as `GET .../usage` answers it (also used by the cockpit bench).
pub fn report(
    mut head: serde_json::Value,
    q: &UsageQuery,
    rows: &[domain::ports::RollupRow],
) -> serde_json::Value {
    let (series, total) = summarize(rows, q);
    if let Some(obj) = head.as_object_mut() {
        obj.insert("granularity".into(), json!(q.granularity));
        obj.insert("from".into(), json!(q.from));
        obj.insert("to".into(), json!(q.to));
        obj.insert(
            "filters".into(),
            json!({"meter": q.meter, "stage": q.stage, "service_line": q.service_line}),
        );
        obj.insert("group_by".into(), json!(q.group_by));
        obj.insert("total".into(), json!(total));
        obj.insert("series".into(), json!(series));
    }
    head
}

impl Api {
    async fn get_alert_policy(&self, tenant: &TenantId) -> Result<Response<Body>, ApiError> {
        let (policy, source) = match self.alert_policies.alert_policy(tenant).await? {
            Some(p) => (p, "tenant"),
            None => (domain::digest::AlertPolicy::default(), "defaults"),
        };
        Ok(json(200, &json!({"policy": policy, "source": source})))
    }

    async fn put_alert_policy(
        &self,
        tenant: &TenantId,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let policy = domain::digest::policy_from_body(body_bytes(req))?;
        self.alert_policies
            .put_alert_policy(tenant, &policy)
            .await?;
        tracing::info!(tenant = %tenant, "alert policy replaced");
        Ok(json(200, &json!({"policy": policy, "source": "tenant"})))
    }
}

/// A key as the API shows it (never the key itself, nor its hash).
fn key_json(k: &domain::auth::KeyGrant, now: chrono::DateTime<Utc>) -> serde_json::Value {
    json!({
        "key_id": k.key_id,
        "label": k.label,
        "scopes": k.scopes,
        "status": k.status(now),
        "created_at": k.created_at,
        "expires_at": k.expires_at,
        "revoked_at": k.revoked_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_path_is_accepted_by_the_router() {
        let mut router = matchit::Router::new();
        let mut paths: Vec<&str> = ROUTES.iter().map(|(_, p, _)| *p).collect();
        paths.sort();
        paths.dedup();
        for p in paths {
            router.insert(p, ()).unwrap();
        }
        assert!(router.at("/v1/accounts/42/usage").is_ok());
    }

    #[test]
    fn each_route_is_served_at_one_method_and_path() {
        for (i, (m, p, r)) in ROUTES.iter().enumerate() {
            for (m2, p2, r2) in &ROUTES[i + 1..] {
                assert!((m, p) != (m2, p2), "{m} {p} is declared twice");
                assert!(r != r2, "{r:?} is served at {m} {p} and at {m2} {p2}");
            }
        }
    }
}
