//! The query and admin API: accounts, usage, definitions.
//!
//! Every `/v1` route is tenant-scoped by the caller's API key; another tenant's ids
//! are simply not found (404), never forbidden.

use chrono::Utc;
use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::account::profile_from_body;
use shared::entitlement::{balance, entitlement_from_body, Entitlement};
use shared::event::DefinitionStatus;
use shared::http::{authenticate, body_bytes, error, json, query_pairs, ApiError};
use shared::ids::EntitlementId;
use shared::ids::{AccountId, MeterName, Segment, TenantId};
use shared::keys::Scope;
use shared::limits::LimitWatch;
use shared::store::{
    AccountStore, DefinitionStore, Directory, EntitlementStore, MappingStore, UsageReader,
};
use shared::usage::{summarize, UsageQuery};
use std::sync::Arc;

pub mod governance;

/// Routes this function serves, as (method, OpenAPI path).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/v1/accounts"),
    ("GET", "/v1/accounts/{account}"),
    ("PUT", "/v1/accounts/{account}"),
    ("GET", "/v1/accounts/{account}/usage"),
    ("GET", "/v1/segments/{segment}/usage"),
    ("GET", "/v1/definitions"),
    ("GET", "/v1/definitions/{meter}"),
    ("PUT", "/v1/definitions/{meter}"),
    ("GET", "/v1/hubspot/mappings"),
    ("PUT", "/v1/hubspot/mappings"),
    ("GET", "/v1/accounts/{account}/entitlements"),
    ("GET", "/v1/entitlements/{id}"),
    ("PUT", "/v1/entitlements/{id}"),
    ("DELETE", "/v1/entitlements/{id}"),
    // Governance and audits (functions/api/src/governance.rs).
    ("DELETE", "/v1/definitions/{meter}"),
    ("POST", "/v1/definitions/{meter}/restore"),
    ("GET", "/v1/definitions/{meter}/changes"),
    ("GET", "/v1/audits/latest"),
    ("GET", "/v1/audits"),
];

/// Largest admin request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub struct Api {
    pub directory: Arc<dyn Directory>,
    pub accounts: Arc<dyn AccountStore>,
    pub usage: Arc<dyn UsageReader>,
    pub definitions: Arc<dyn DefinitionStore>,
    pub mappings: Arc<dyn MappingStore>,
    pub entitlements: Arc<dyn EntitlementStore>,
    /// Change log, notifications and audit reports (`None`: definitions are saved
    /// without a change log and the audit routes answer 503).
    pub governance: Option<governance::Governance>,
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
            + 'static,
    {
        let mut router = matchit::Router::new();
        for (_, p) in ROUTES {
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
            entitlements: store,
            governance: None,
            router,
        }
    }

    /// Adds the registry change log, notifications and audit reports.
    pub fn with_governance(mut self, g: governance::Governance) -> Self {
        self.governance = Some(g);
        self
    }

    /// The Lambda entry point: never fails; every problem is an HTTP response.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        match self.route(req).await {
            Ok(resp) => resp,
            Err(e) => error(&e),
        }
    }

    async fn route(&self, req: Request) -> Result<Response<Body>, ApiError> {
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
        if !ROUTES.iter().any(|(m, p)| *m == method && *p == template) {
            let allowed: Vec<&str> = ROUTES
                .iter()
                .filter(|(_, p)| *p == template)
                .map(|(m, _)| *m)
                .collect();
            return Err(ApiError::new(
                405,
                "method_not_allowed",
                format!("{method} is not allowed here; use {}", allowed.join(" or ")),
            ));
        }
        if template == "/healthz" {
            return Ok(json(200, &json!({"status": "ok"})));
        }
        if body_bytes(&req).len() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                413,
                "payload_too_large",
                format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            ));
        }
        let tenant = authenticate(self.directory.as_ref(), &req).await?;
        match (method.as_str(), template) {
            ("GET", "/v1/accounts") => self.list_accounts(&tenant, &req).await,
            ("GET", "/v1/accounts/{account}") => self.get_account(&tenant, &param("account")).await,
            ("PUT", "/v1/accounts/{account}") => {
                self.put_account(&tenant, &param("account"), &req).await
            }
            ("GET", "/v1/accounts/{account}/usage") => {
                self.account_usage(&tenant, &param("account"), &req).await
            }
            ("GET", "/v1/segments/{segment}/usage") => {
                self.segment_usage(&tenant, &param("segment"), &req).await
            }
            ("GET", "/v1/definitions") => self.list_definitions(&tenant).await,
            ("GET", "/v1/definitions/{meter}") => {
                self.get_definition(&tenant, &param("meter")).await
            }
            ("GET", "/v1/hubspot/mappings") => self.get_mappings(&tenant).await,
            ("PUT", "/v1/hubspot/mappings") => self.put_mappings(&tenant, &req).await,
            ("PUT", "/v1/definitions/{meter}") => {
                self.put_definition(&tenant, &param("meter"), &req).await
            }
            ("GET", "/v1/accounts/{account}/entitlements") => {
                self.list_entitlements(&tenant, &param("account")).await
            }
            ("GET", "/v1/entitlements/{id}") => self.get_entitlement(&tenant, &param("id")).await,
            ("PUT", "/v1/entitlements/{id}") => {
                self.put_entitlement(&tenant, &param("id"), &req).await
            }
            ("DELETE", "/v1/entitlements/{id}") => {
                self.delete_entitlement(&tenant, &param("id")).await
            }
            ("DELETE", "/v1/definitions/{meter}") => {
                self.delete_definition(&tenant, &param("meter"), &req).await
            }
            ("POST", "/v1/definitions/{meter}/restore") => {
                self.restore_definition(&tenant, &param("meter"), &req)
                    .await
            }
            ("GET", "/v1/definitions/{meter}/changes") => {
                self.definition_changes(&tenant, &param("meter")).await
            }
            ("GET", "/v1/audits/latest") => self.latest_audit(&tenant).await,
            ("GET", "/v1/audits") => self.list_audits(&tenant, &req).await,
            _ => Err(ApiError::not_found("route")),
        }
    }

    /// An entitlement with the balance of its current period (`null` when not in force).
    async fn with_balance(
        &self,
        tenant: &TenantId,
        ent: &Entitlement,
    ) -> Result<serde_json::Value, ApiError> {
        let now = Utc::now();
        let balance = match ent.period_at(now) {
            None => None,
            Some(period) => {
                let (used, prev) =
                    LimitWatch::usage_for(self.usage.as_ref(), tenant, ent, &period).await?;
                Some(balance(ent, period, used, prev, now))
            }
        };
        let mut v = serde_json::to_value(ent).map_err(|e| {
            tracing::error!(error = %e, "entitlement not serializable");
            ApiError::new(
                500,
                "internal_error",
                "an internal error occurred; it has been logged",
            )
        })?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("balance".into(), json!(balance));
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
            .map_err(|e| ApiError::new(400, "invalid_entitlement", e.to_string()))?;
        let existing = self.entitlements.get_entitlement(tenant, &id).await?;
        let ent = entitlement_from_body(id, body_bytes(req), Utc::now(), existing.as_ref())?;
        if let Some(old) = &existing {
            if old.account != ent.account {
                return Err(ApiError::new(
                    409,
                    "account_changed",
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
                422,
                "unknown_account",
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
                        422,
                        "unknown_meter",
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
                409,
                "overlapping_entitlement",
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
        for (k, v) in query_pairs(req) {
            match k.as_str() {
                "segment" => {
                    segment = Some(Segment::parse(&v).ok_or_else(|| {
                        ApiError::new(
                            400,
                            "invalid_parameter",
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
                                400,
                                "invalid_parameter",
                                "limit must be between 1 and 200",
                            )
                        })?
                }
                "cursor" => cursor = Some(v),
                other => {
                    return Err(ApiError::new(
                        400,
                        "unknown_parameter",
                        format!("unknown parameter '{other}'; expected segment, limit, cursor"),
                    ))
                }
            }
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
            .map_err(|e| ApiError::new(400, "invalid_account", e.to_string()))?;
        let existing = self.accounts.get_account(tenant, &account).await?;
        let profile = profile_from_body(account, body_bytes(req), Utc::now(), existing.as_ref())?;
        self.accounts.put_account(tenant, &profile).await?;
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

    async fn list_definitions(&self, tenant: &TenantId) -> Result<Response<Body>, ApiError> {
        let defs = self.definitions.list_definitions(tenant).await?;
        Ok(json(200, &json!({"definitions": defs})))
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
    async fn get_mappings(&self, tenant: &TenantId) -> Result<Response<Body>, ApiError> {
        let (rules, source) = match self.mappings.get_mapping_rules(tenant).await? {
            Some(r) => (r, "tenant"),
            None => (shared::hubspot::mapping::default_rules(), "defaults"),
        };
        Ok(json(200, &json!({"rules": rules, "source": source})))
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
            .filter(|d| d.status != shared::event::DefinitionStatus::Deleted)
            .map(|d| d.meter)
            .collect();
        let rules =
            shared::hubspot::mapping::rules_from_body(body_bytes(req), &|m| defined.contains(m))?;
        self.mappings.put_mapping_rules(tenant, &rules).await?;
        tracing::info!(tenant = %tenant, rules = rules.len(), "HubSpot mapping rules replaced");
        Ok(json(200, &json!({"rules": rules, "source": "tenant"})))
    }
}

fn report(
    mut head: serde_json::Value,
    q: &UsageQuery,
    rows: &[shared::store::RollupRow],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_path_is_accepted_by_the_router() {
        let mut router = matchit::Router::new();
        let mut paths: Vec<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
        paths.sort();
        paths.dedup();
        for p in paths {
            router.insert(p, ()).unwrap();
        }
        assert!(router.at("/v1/accounts/42/usage").is_ok());
    }
}
