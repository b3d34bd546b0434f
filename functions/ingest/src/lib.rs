//! `POST /v1/events`: authenticate, validate each event, queue the good ones.
//!
//! Per-event outcomes: good events are accepted even when others in the same request
//! are refused, each refusal carries a code, and nothing accepted is dropped (an
//! event that cannot be queued is reported back as `temporarily_unavailable`).

use chrono::Utc;
use domain::auth::KeyScope;
use domain::chunk::{pack, SQS_MAX_BYTES};
use domain::event::{
    split_body, validate_all, BodyError, Limits, RejectCode, Rejection, ValidationContext,
};
use domain::hubspot::processor::{BatchKind, WebhookBatch};
use domain::hubspot::replay::{check_fresh, request_key, LegacyPolicy};
use domain::hubspot::signature::{verify, LegacyVersions, SignatureError, Signed};
use domain::hubspot::webhook::{parse_batch, AppEvent};
use domain::hubspot::workflow::{parse_workflow, QueryTrust, WorkflowQuery};
use domain::ids::{Source, TenantId};
use domain::ports::{Directory, PortalDirectory, ReplayGuard, RequestClaim};
use domain::quarantine::{QuarantineReason, QuarantineStore, Quarantined};
use domain::queue::EventQueue;
use domain::secrets::{client_secrets, CachedSecret, SecretError, SecretId};
use lambda::http::ErrorCode;
use lambda::http::{authenticate, body_bytes, error, json, ApiError};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

pub mod governance;

/// Routes this function serves, as (method, OpenAPI path).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/events"),
    ("POST", "/v1/webhooks/hubspot"),
    ("POST", "/v1/webhooks/hubspot/workflow"),
    ("POST", "/v1/hubspot/associations"),
];

/// HubSpot webhook settings: client secrets (current first, then the one being
/// rotated out), the public base URL HubSpot calls, and the portal directory.
pub struct HubspotConfig {
    pub secrets: ClientSecrets,
    /// `None`: not set; webhooks answer 503 `webhooks_not_configured` (the signature
    /// covers the URL HubSpot called), and everything else is served as usual.
    pub public_base_url: Option<String>,
    pub portals: Arc<dyn PortalDirectory>,
    /// `None` (the default): only v3 signatures are accepted.
    pub legacy: Option<LegacySignatures>,
}

/// The HubSpot app's client secrets.
pub enum ClientSecrets {
    /// Fixed values, current first (tests, and the local runner without the emulator).
    Fixed(Vec<String>),
    /// Read from Secrets Manager on first use (`HUBSPOT_CLIENT_SECRET_ARN`), cached for
    /// a TTL and read again early when a signature does not match, so a rotated secret
    /// is picked up without a redeploy (`domain::secrets`).
    Managed(Arc<CachedSecret>),
}

impl From<Vec<String>> for ClientSecrets {
    fn from(v: Vec<String>) -> Self {
        ClientSecrets::Fixed(v)
    }
}

impl ClientSecrets {
    async fn current(&self) -> Result<Vec<String>, SecretError> {
        match self {
            ClientSecrets::Fixed(v) => Ok(v.clone()),
            ClientSecrets::Managed(c) => client_secrets(c.id(), &c.get().await?),
        }
    }

    /// The secrets again after a mismatch, if reading them again changed them.
    async fn refreshed(&self) -> Option<Vec<String>> {
        let ClientSecrets::Managed(c) = self else {
            return None;
        };
        match c.refresh().await {
            Ok(Some(v)) => client_secrets(c.id(), &v)
                .map_err(|e| tracing::error!(error = %e, code = e.code(), "HubSpot client secret unreadable"))
                .ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, code = e.code(), "HubSpot client secret could not be read again");
                None
            }
        }
    }
}

/// Where a deployment's HubSpot settings come from, read from the environment with no
/// I/O (init time matters: the secret itself is fetched by the first webhook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretsFrom {
    /// `HUBSPOT_CLIENT_SECRET` (+ `HUBSPOT_CLIENT_SECRET_PREVIOUS`): the local runner.
    Fixed(Vec<String>),
    /// `HUBSPOT_CLIENT_SECRET_ARN`: the deployed stack (Secrets Manager).
    Manager(SecretId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubspotEnv {
    pub secrets: SecretsFrom,
    pub public_base_url: Option<String>,
}

/// HubSpot webhook settings from `var` (the environment): `None` when no secret (nor
/// secret ARN) is set. A missing `PUBLIC_BASE_URL` is no error: `POST /v1/events` must
/// not go down with the webhooks; the webhook routes answer 503 until it is set.
pub fn hubspot_env(
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<HubspotEnv>, SecretError> {
    let var = |k: &str| {
        var(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let secrets = match var("HUBSPOT_CLIENT_SECRET_ARN") {
        Some(arn) => SecretsFrom::Manager(SecretId::parse(&arn)?),
        None => {
            let fixed: Vec<String> = ["HUBSPOT_CLIENT_SECRET", "HUBSPOT_CLIENT_SECRET_PREVIOUS"]
                .iter()
                .filter_map(|k| var(k))
                .collect();
            if fixed.is_empty() {
                return Ok(None);
            }
            SecretsFrom::Fixed(fixed)
        }
    };
    let public_base_url = var("PUBLIC_BASE_URL");
    if public_base_url.is_none() {
        tracing::error!("a HubSpot client secret is configured but PUBLIC_BASE_URL is not: HubSpot webhooks answer 503 until it is set");
    }
    Ok(Some(HubspotEnv {
        secrets,
        public_base_url,
    }))
}

/// A deployment's opt-in to legacy (v1/v2) signatures, which cannot be enabled
/// without the replay guard that claims each such request once (docs/adr/0005).
pub struct LegacySignatures {
    pub policy: LegacyPolicy,
    pub guard: Arc<dyn ReplayGuard>,
}

/// Which HubSpot sender a webhook request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    /// An app's webhook subscription: a JSON array of up to 100 changes.
    AppBatch,
    /// A workflow "Send a webhook" action: one JSON object.
    Workflow,
}

pub struct Ingest {
    pub hubspot: Option<HubspotConfig>,
    pub directory: Arc<dyn Directory>,
    pub queue: Arc<dyn EventQueue>,
    pub limits: Limits,
    /// Upper bound of one SQS message body.
    pub max_message_bytes: usize,
    /// Data-quality counters and critical-meter activity (docs/adr/0007).
    pub quality: Option<Arc<dyn domain::audit::store::QualityRecorder>>,
    /// Where events of deleted (or, by policy, deprecated) definitions are held.
    /// Without it such events are refused as `temporarily_unavailable`.
    pub quarantine: Option<Arc<dyn QuarantineStore>>,
    /// Per-tenant request quotas of this instance (`429 rate_limited`).
    pub quotas: Arc<domain::quota::Quotas>,
    /// Per-tenant event quotas of this instance: `POST /v1/events` costs its number of
    /// events (`429 rate_limited`; more events than the burst: `413 too_many_events`).
    pub event_quotas: Arc<domain::quota::Quotas>,
}

/// A note on an accepted event (e.g. its timestamp was defaulted).
#[derive(Debug, Serialize)]
pub struct Flag {
    pub index: usize,
    pub id: String,
    pub flag: &'static str,
}

/// An event held in quarantine instead of counted (docs/adr/0007): the sender must not
/// resend it; it is counted once its definition is active again.
#[derive(Debug, Serialize)]
pub struct Held {
    pub index: usize,
    pub id: String,
    pub reason: QuarantineReason,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    /// Events queued to be counted.
    pub accepted: usize,
    pub rejected: Vec<Rejection>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flagged: Vec<Flag>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<Held>,
}

/// What ingest is wired from besides its store and queue: the same on Lambda (`main.rs`,
/// from the environment) and in the local runner (from the provisioned stack).
pub struct Wiring {
    /// Events older than the ledger remembers are refused, whatever a stored policy says.
    pub max_backfill_days: u32,
    pub hubspot: Option<HubspotWiring>,
    pub quotas: Arc<domain::quota::Quotas>,
    pub event_quotas: Arc<domain::quota::Quotas>,
}

/// The HubSpot webhook settings: the client secrets, `PUBLIC_BASE_URL` and the
/// legacy-signature opt-in (`None`: v3 only).
pub struct HubspotWiring {
    pub secrets: ClientSecrets,
    pub public_base_url: Option<String>,
    pub legacy: Option<LegacyPolicy>,
}

/// Ingest on DynamoDB and SQS, as every deployment wires it.
pub fn wired(
    store: Arc<aws::dynamo::DynamoStore>,
    queue: Arc<aws::sqs::SqsQueue>,
    w: Wiring,
) -> Ingest {
    let mut ingest = Ingest::new(store.clone(), queue);
    ingest.limits.max_backfill_days = w.max_backfill_days;
    ingest.quality = Some(store.clone());
    ingest.quarantine = Some(store.clone());
    ingest.hubspot = w.hubspot.map(|h| {
        let legacy = h.legacy.map(|policy| {
            tracing::warn!(versions = ?policy.versions, window_hours = policy.window.num_hours(), "legacy HubSpot signatures accepted, with the replay guard");
            LegacySignatures {
                policy,
                guard: store.clone(),
            }
        });
        HubspotConfig {
            secrets: h.secrets,
            public_base_url: h.public_base_url,
            portals: store,
            legacy,
        }
    });
    ingest.quotas = w.quotas;
    ingest.event_quotas = w.event_quotas;
    ingest
}

impl Ingest {
    pub fn new(directory: Arc<dyn Directory>, queue: Arc<dyn EventQueue>) -> Self {
        Self {
            hubspot: None,
            directory,
            queue,
            limits: Limits::default(),
            max_message_bytes: SQS_MAX_BYTES - 1024,
            quality: None,
            quarantine: None,
            quotas: Arc::new(domain::quota::Quotas::new(
                domain::quota::Allowance {
                    rate: f64::from(domain::quota::DEFAULT_RATE),
                    burst: f64::from(domain::quota::DEFAULT_BURST),
                },
                Default::default(),
            )),
            event_quotas: Arc::new(domain::quota::Quotas::new(
                domain::quota::Allowance {
                    rate: f64::from(domain::quota::EVENTS.default_rate),
                    burst: f64::from(domain::quota::EVENTS.default_burst),
                },
                Default::default(),
            )),
        }
    }

    /// Charges the tenant's event quota for a request of `events` events.
    fn charge_events(&self, tenant: &TenantId, events: usize) -> Result<(), ApiError> {
        let burst = self.event_quotas.allowance(tenant).burst;
        let cost = u32::try_from(events).unwrap_or(u32::MAX);
        if f64::from(cost) > burst {
            return Err(ApiError::new(ErrorCode::TooManyEvents,
                format!("tenant {tenant} may send at most {burst} events per request; this one has {events}"),
            ));
        }
        self.event_quotas
            .take_n(tenant, cost, std::time::Instant::now())
            .map_err(|wait| {
                let secs = domain::quota::retry_after_secs(wait);
                ApiError {
                    retry_after: Some(secs),
                    ..ApiError::new(
                        ErrorCode::RateLimited,
                        format!("tenant {tenant} is over its event quota; retry after {secs} s"),
                    )
                }
            })
    }

    /// The Lambda entry point: never fails; every problem is an HTTP response.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        match self.route(req).await {
            Ok(resp) => resp,
            Err(e) => error(&e),
        }
    }

    async fn route(&self, req: Request) -> Result<Response<Body>, ApiError> {
        let path = req.uri().path().trim_end_matches('/').to_owned();
        if !ROUTES.iter().any(|(_, p)| *p == path) {
            return Err(ApiError::not_found("route"));
        }
        if req.method() != "POST" {
            return Err(ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("use POST {path}"),
            ));
        }
        match path.as_str() {
            "/v1/webhooks/hubspot" => self.hubspot_webhook(req, Payload::AppBatch).await,
            "/v1/webhooks/hubspot/workflow" => self.hubspot_webhook(req, Payload::Workflow).await,
            "/v1/hubspot/associations" => self.import_associations(req).await,
            _ => self.post_events(req).await,
        }
    }

    async fn post_events(&self, req: Request) -> Result<Response<Body>, ApiError> {
        let declared = req
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let body = body_bytes(&req);
        let size = declared.unwrap_or(0).max(body.len());
        if size > self.limits.max_body_bytes {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "request body is {size} bytes; the limit is {} bytes",
                    self.limits.max_body_bytes
                ),
            ));
        }
        if let Some(ct) = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
        {
            if !ct.to_ascii_lowercase().contains("json") {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    format!("content-type '{ct}' is not JSON"),
                ));
            }
        }
        let tenant = authenticate(self.directory.as_ref(), &req, KeyScope::Ingest)
            .await?
            .tenant;
        self.quotas
            .take(&tenant, std::time::Instant::now())
            .map_err(|wait| ApiError::rate_limited(&tenant, wait))?;
        let policy = self
            .directory
            .tenant_policy(&tenant)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidApiKey,
                    "the API key's tenant no longer exists",
                )
            })?;

        let raw = split_body(body, &self.limits).map_err(|e| match e {
            BodyError::Empty => ApiError::new(ErrorCode::EmptyBody, e.to_string()),
            BodyError::Malformed { .. } => ApiError::new(ErrorCode::MalformedJson, e.to_string()),
            BodyError::NotAnEventList => ApiError::new(ErrorCode::InvalidBody, e.to_string()),
            BodyError::TooManyEvents { .. } => {
                ApiError::new(ErrorCode::TooManyEvents, e.to_string())
            }
        })?;
        self.charge_events(&tenant, raw.len())?;
        let received_at = Utc::now();
        let ctx = ValidationContext {
            received_at,
            policy: &policy,
            limits: &self.limits,
        };
        // CloudEvents 1.0 (structured or batch) are mapped onto native events first.
        let translated = domain::cloudevents::translate(&raw);
        let raw = translated.elements(&raw);
        let (valid, mut rejected) = validate_all(&raw, &ctx);
        translated.explain(&mut rejected);
        let (valid, held) = domain::quarantine::split(valid, &policy);
        let mut flagged: Vec<Flag> = valid
            .iter()
            .filter(|(_, e)| e.timestamp_defaulted)
            .map(|(i, e)| Flag {
                index: *i,
                id: e.id.to_string(),
                flag: "timestamp_defaulted",
            })
            .collect();
        flagged.extend(crate::governance::deprecated_flags(&valid, &policy));
        flagged.sort_by_key(|f| f.index);
        let governance = crate::governance::observe(&raw, &valid, &held, &rejected, &policy);
        let quarantined = self
            .hold(&tenant, Source::Api, received_at, held, &mut rejected)
            .await;
        let ids: Vec<(usize, String)> = valid.iter().map(|(i, e)| (*i, e.id.to_string())).collect();
        let mut accepted = valid.len();

        let mut new_id = || uuid::Uuid::now_v7().to_string();
        let chunks = pack(
            &tenant,
            Source::Api,
            received_at,
            valid,
            self.max_message_bytes,
            &mut new_id,
        )
        .map_err(|e| {
            tracing::error!(error = %e, "packing failed");
            ApiError::new(
                ErrorCode::InternalError,
                "events could not be prepared for queuing",
            )
        })?;
        let bodies: Vec<String> = chunks.iter().map(|c| c.body.clone()).collect();
        let sent = self.queue.send(&bodies).await;
        let mut unavailable = 0;
        for (chunk, result) in chunks.iter().zip(sent) {
            if result.is_err() {
                for &index in &chunk.indices {
                    let id = ids
                        .iter()
                        .find(|(i, _)| *i == index)
                        .map(|(_, id)| id.clone());
                    rejected.push(Rejection {
                        index,
                        id,
                        code: RejectCode::TemporarilyUnavailable,
                        message:
                            "the event could not be queued; it was not recorded, send it again"
                                .into(),
                    });
                    unavailable += 1;
                }
            }
        }
        accepted -= unavailable;
        rejected.sort_by_key(|r| r.index);
        if let Some(q) = &self.quality {
            crate::governance::record(q.as_ref(), &tenant, received_at, governance, &rejected)
                .await;
        }
        tracing::info!(
            tenant = %tenant,
            received = raw.len(),
            cloudevents = translated.cloudevents(),
            accepted,
            rejected = rejected.len(),
            messages = bodies.len(),
            "events ingested"
        );
        emit_outcome(&tenant, accepted, &rejected, quarantined.len());
        let status = if accepted == 0 && quarantined.is_empty() && unavailable > 0 {
            503
        } else {
            202
        };
        let flagged = flagged
            .into_iter()
            .filter(|f| !rejected.iter().any(|r| r.index == f.index))
            .collect();
        Ok(json(
            status,
            &Outcome {
                accepted,
                rejected,
                flagged,
                quarantined,
            },
        ))
    }

    /// Stores held events; when that fails they are refused as retryable, never lost.
    async fn hold(
        &self,
        tenant: &domain::ids::TenantId,
        source: Source,
        received_at: chrono::DateTime<Utc>,
        held: Vec<(usize, domain::event::UsageEvent, QuarantineReason)>,
        rejected: &mut Vec<Rejection>,
    ) -> Vec<Held> {
        if held.is_empty() {
            return Vec::new();
        }
        let stored = match &self.quarantine {
            None => Err("quarantine is not configured for this deployment".to_owned()),
            Some(q) => {
                let records: Vec<Quarantined> = held
                    .iter()
                    .map(|(_, e, reason)| Quarantined {
                        source,
                        reason: *reason,
                        received_at,
                        event: e.clone(),
                    })
                    .collect();
                q.hold(tenant, &records).await.map_err(|e| e.to_string())
            }
        };
        match stored {
            Ok(()) => {
                tracing::info!(tenant = %tenant, held = held.len(), "events held in quarantine");
                held.into_iter()
                    .map(|(index, e, reason)| Held {
                        index,
                        id: e.id.to_string(),
                        message: reason.message(&e.meter),
                        reason,
                    })
                    .collect()
            }
            Err(why) => {
                tracing::error!(tenant = %tenant, error = %why, held = held.len(), "events could not be held in quarantine");
                rejected.extend(held.into_iter().map(|(index, e, _)| Rejection {
                    index,
                    id: Some(e.id.to_string()),
                    code: RejectCode::TemporarilyUnavailable,
                    message: "the event could not be held in quarantine; it was not recorded, send it again".into(),
                }));
                rejected.sort_by_key(|r| r.index);
                Vec::new()
            }
        }
    }

    /// `POST /v1/webhooks/hubspot`: verify, parse, resolve portals, queue. Mapping and
    /// attribution happen after the queue so HubSpot gets its answer in milliseconds.
    async fn hubspot_webhook(
        &self,
        req: Request,
        payload: Payload,
    ) -> Result<Response<Body>, ApiError> {
        let hs = self.hubspot.as_ref().ok_or_else(|| {
            ApiError::new(
                ErrorCode::WebhooksNotConfigured,
                "HUBSPOT_CLIENT_SECRET is not set for this deployment",
            )
        })?;
        let body = body_bytes(&req);
        if body.len() > self.limits.max_body_bytes {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "request body is larger than {} bytes",
                    self.limits.max_body_bytes
                ),
            ));
        }
        let base = hs.public_base_url.as_deref().ok_or_else(|| {
            ApiError::new(
                ErrorCode::WebhooksNotConfigured,
                "PUBLIC_BASE_URL is not set for this deployment (HubSpot signs the URL it called)",
            )
        })?;
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let uri = match req.uri().query() {
            Some(q) => format!("{}{}?{q}", base.trim_end_matches('/'), req.uri().path()),
            None => format!("{}{}", base.trim_end_matches('/'), req.uri().path()),
        };
        let signed = Signed {
            method: req.method().as_str(),
            uri: &uri,
            body,
            v3: header("x-hubspot-signature-v3"),
            timestamp: header("x-hubspot-request-timestamp"),
            legacy: header("x-hubspot-signature"),
            version: header("x-hubspot-signature-version"),
        };
        let now_ms = Utc::now().timestamp_millis();
        let allowed = hs
            .legacy
            .as_ref()
            .map_or(LegacyVersions::NONE, |l| l.policy.versions);
        let secrets = hs.secrets.current().await.map_err(|e| {
            tracing::error!(error = %e, code = e.code(), "HubSpot client secret unavailable");
            ApiError::new(
                ErrorCode::WebhooksUnavailable,
                "the HubSpot client secret could not be read; HubSpot will retry",
            )
        })?;
        let verified = match verify(&signed, &secrets, now_ms, allowed) {
            // The secret may have been rotated since it was cached: read it again (at
            // most once per refresh interval) and check once more.
            Err(SignatureError::Mismatch) => match hs.secrets.refreshed().await {
                Some(fresh) => verify(&signed, &fresh, now_ms, allowed),
                None => Err(SignatureError::Mismatch),
            },
            other => other,
        };
        let version = verified.map_err(|e| {
            tracing::warn!(error = %e, code = e.code(), "HubSpot webhook refused");
            if e == SignatureError::NotConfigured {
                return ApiError::new(
                    ErrorCode::WebhooksNotConfigured,
                    "no HubSpot client secret is set for this deployment",
                );
            }
            ApiError::domain(401, e.code(), e.to_string())
        })?;
        let parsed = match payload {
            Payload::AppBatch => parse_batch(body),
            Payload::Workflow => {
                let pairs = lambda::http::query_pairs(&req);
                let query =
                    WorkflowQuery::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                parse_workflow(body, &query, QueryTrust::from(version), now_ms).map(|e| vec![e])
            }
        };
        let events = parsed.map_err(|e| {
            let status = if matches!(e, domain::hubspot::webhook::WebhookError::TooMany(_)) {
                413
            } else {
                400
            };
            tracing::warn!(error = %e, code = e.code(), signature = %version, "HubSpot webhook refused");
            ApiError::domain(status, e.code(), e.to_string())
        })?;
        // A legacy signature has no time: fresh by its signed occurredAt, then claimed once.
        let claim = match (&hs.legacy, version.is_legacy()) {
            (Some(legacy), true) => {
                check_fresh(&events, version, &legacy.policy, now_ms).map_err(|e| {
                    tracing::warn!(error = %e, code = e.code(), signature = %version, "legacy HubSpot webhook refused");
                    ApiError::domain(e.status(), e.code(), e.to_string())
                })?;
                let key = request_key(version, signed.method, &uri, body);
                match legacy
                    .guard
                    .claim_request(&key, legacy.policy.claim_expires_at(now_ms))
                    .await?
                {
                    RequestClaim::Done => {
                        tracing::info!(signature = %version, key = %key, events = events.len(), "legacy HubSpot request already processed; acknowledged, not queued again");
                        return Ok(json(
                            200,
                            &serde_json::json!({"received": events.len(), "queued": 0, "refused": [], "duplicate": true}),
                        ));
                    }
                    RequestClaim::New | RequestClaim::Unfinished => Some((legacy, key)),
                }
            }
            _ => None,
        };
        let received = events.len();
        let mut by_portal: BTreeMap<u64, Vec<AppEvent>> = BTreeMap::new();
        for ev in events {
            by_portal.entry(ev.portal_id).or_default().push(ev);
        }
        let received_at = Utc::now();
        let mut bodies = Vec::new();
        let mut refused = Vec::new();
        for (portal, events) in by_portal {
            match hs.portals.tenant_for_portal(portal).await? {
                Some(tenant) => {
                    let batch = WebhookBatch {
                        kind: match payload {
                            Payload::AppBatch => BatchKind::HubspotWebhook,
                            Payload::Workflow => BatchKind::HubspotWorkflow,
                        },
                        id: uuid::Uuid::now_v7().to_string(),
                        tenant,
                        received_at,
                        events,
                    };
                    bodies.push(
                        serde_json::to_string(&batch)
                            .map_err(|e| ApiError::new(ErrorCode::InternalError, e.to_string()))?,
                    );
                }
                None => {
                    hs.portals
                        .record_unknown_portal(portal, events.len())
                        .await?;
                    tracing::warn!(
                        portal,
                        events = events.len(),
                        "HubSpot portal is not mapped to a tenant"
                    );
                    refused.push(serde_json::json!({"portal_id": portal, "events": events.len(), "code": "unknown_portal"}));
                }
            }
        }
        if bodies.is_empty() && !refused.is_empty() {
            return Ok(json(
                403,
                &serde_json::json!({"error": {"code": "unknown_portal", "message": "no tenant is mapped to this HubSpot portal"}, "refused": refused}),
            ));
        }
        for r in self.queue.send(&bodies).await {
            if let Err(e) = r {
                tracing::error!(error = %e, "HubSpot batch could not be queued");
                return Err(ApiError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the webhook could not be queued; HubSpot will retry",
                ));
            }
        }
        if let Some((legacy, key)) = claim {
            // Queued: a later arrival is a duplicate. If this fails, a retry processes
            // the request again and the ledger still counts its events once.
            if let Err(e) = legacy.guard.finish_request(&key).await {
                tracing::warn!(error = %e, key = %key, "legacy HubSpot request claim could not be marked done");
            }
        }
        tracing::info!(
            received,
            queued_batches = bodies.len(),
            signature = %version,
            "HubSpot webhook accepted"
        );
        Ok(json(
            200,
            &serde_json::json!({"received": received, "queued": received - refused.iter().filter_map(|r| r["events"].as_u64()).sum::<u64>() as usize, "refused": refused}),
        ))
    }
}

impl Ingest {
    /// `POST /v1/hubspot/associations`: bulk import of which company each HubSpot
    /// record belongs to (e.g. exported from HubSpot when a tenant starts), with the
    /// tenant's API key. The links are queued like association webhooks, so usage held
    /// for those records is released and counted exactly once by the same path.
    async fn import_associations(&self, req: Request) -> Result<Response<Body>, ApiError> {
        let tenant = authenticate(self.directory.as_ref(), &req, KeyScope::Admin)
            .await?
            .tenant;
        let body = body_bytes(&req);
        if body.len() > self.limits.max_body_bytes {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "request body is larger than {} bytes",
                    self.limits.max_body_bytes
                ),
            ));
        }
        let now = Utc::now();
        let events = domain::hubspot::import::associations_from_body(body, now.timestamp_millis())?;
        let count = events.len();
        let mut bodies = Vec::new();
        // Keep each queue message well under the SQS size limit.
        for part in events.chunks(500) {
            let batch = WebhookBatch {
                kind: BatchKind::IdentityImport,
                id: uuid::Uuid::now_v7().to_string(),
                tenant: tenant.clone(),
                received_at: now,
                events: part.to_vec(),
            };
            bodies.push(
                serde_json::to_string(&batch)
                    .map_err(|e| ApiError::new(ErrorCode::InternalError, e.to_string()))?,
            );
        }
        for r in self.queue.send(&bodies).await {
            if let Err(e) = r {
                tracing::error!(tenant = %tenant, error = %e, "association import could not be queued");
                return Err(ApiError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the import could not be queued; retry it (it is idempotent)",
                ));
            }
        }
        tracing::info!(tenant = %tenant, associations = count, "HubSpot associations imported");
        Ok(json(202, &serde_json::json!({"queued": count})))
    }
}

/// The request's metrics: `EventsAccepted`, `EventsRejected` (in total and per code,
/// the `Code` dimension), `EventsQuarantined`; the tenant is a property.
fn emit_outcome(tenant: &TenantId, accepted: usize, rejected: &[Rejection], held: usize) {
    use lambda::metrics::{publish, record, set, set_with};
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    let mut s = set("ingest");
    record(s.count("EventsAccepted", n(accepted)));
    record(s.count("EventsRejected", n(rejected.len())));
    record(s.count("EventsQuarantined", n(held)));
    record(s.property("tenant", tenant.as_str()));
    publish(&s);
    let mut by_code: BTreeMap<&'static str, u64> = BTreeMap::new();
    for r in rejected {
        let c = by_code.entry(r.code.as_str()).or_default();
        *c = c.saturating_add(1);
    }
    for (code, count) in by_code {
        let mut s = set_with("ingest", &[("Code", code)]);
        record(s.count("EventsRejected", count));
        record(s.property("tenant", tenant.as_str()));
        publish(&s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn a_hubspot_secret_without_public_base_url_is_no_start_failure() {
        let got = hubspot_env(env(&[("HUBSPOT_CLIENT_SECRET", "s3cret")]))
            .expect("ingest must start: /v1/events does not depend on the webhook settings")
            .expect("webhooks configured");
        assert_eq!(got.secrets, SecretsFrom::Fixed(vec!["s3cret".into()]));
        assert_eq!(got.public_base_url, None);
    }

    #[test]
    fn the_secret_arn_wins_over_plain_secrets_and_nothing_set_means_no_webhooks() {
        let arn = "arn:aws:secretsmanager:us-east-1:1:secret:hs-AbCdEf";
        let got = hubspot_env(env(&[
            ("HUBSPOT_CLIENT_SECRET_ARN", arn),
            ("HUBSPOT_CLIENT_SECRET", "ignored"),
            ("PUBLIC_BASE_URL", "https://hooks.example.com"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            got.secrets,
            SecretsFrom::Manager(SecretId::parse(arn).unwrap())
        );
        assert_eq!(
            got.public_base_url.as_deref(),
            Some("https://hooks.example.com")
        );
        assert_eq!(hubspot_env(env(&[("PUBLIC_BASE_URL", "x")])).unwrap(), None);
        assert_eq!(
            hubspot_env(env(&[
                ("HUBSPOT_CLIENT_SECRET", " "),
                ("HUBSPOT_CLIENT_SECRET_ARN", "")
            ]))
            .unwrap(),
            None
        );
    }
}
