//! HTTP helpers shared by the ingest and API handlers: the JSON error envelope,
//! JSON responses and bearer authentication.

use domain::auth::{bearer, hash_key, KeyGrant, KeyRefusal, KeyScope};
use domain::ports::{Directory, StoreError};
use lambda_http::{Body, Request, Response};
use serde::Serialize;

/// Declares [`ErrorCode`]: each of the HTTP layer's own error codes once, with the
/// status it always answers with and its wire form.
macro_rules! error_codes {
    ($($variant:ident = ($status:literal, $code:literal),)*) => {
        /// The error codes the HTTP layer itself answers with. Codes that come from a
        /// domain error (input validation, webhook signatures, unique claims) keep the
        /// domain's own code: see [`ApiError::domain`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in the order declared.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The status this code is always answered with.
            pub fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }

            /// The stable snake_case code clients branch on.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }
        }
    };
}

error_codes! {
    EmptyBody = (400, "empty_body"),
    InvalidAccount = (400, "invalid_account"),
    InvalidBody = (400, "invalid_body"),
    InvalidCursor = (400, "invalid_cursor"),
    InvalidEntitlement = (400, "invalid_entitlement"),
    InvalidMeter = (400, "invalid_meter"),
    InvalidParameter = (400, "invalid_parameter"),
    InvalidPortalId = (400, "invalid_portal_id"),
    InvalidRange = (400, "invalid_range"),
    MalformedJson = (400, "malformed_json"),
    RangeTooLarge = (400, "range_too_large"),
    UnknownParameter = (400, "unknown_parameter"),
    ApiKeyExpired = (401, "api_key_expired"),
    ApiKeyRevoked = (401, "api_key_revoked"),
    InvalidApiKey = (401, "invalid_api_key"),
    MissingApiKey = (401, "missing_api_key"),
    InsufficientScope = (403, "insufficient_scope"),
    NotFound = (404, "not_found"),
    NotScored = (404, "not_scored"),
    UnknownJob = (404, "unknown_job"),
    MethodNotAllowed = (405, "method_not_allowed"),
    AccountChanged = (409, "account_changed"),
    AliasConflict = (409, "alias_conflict"),
    DefinitionNotActive = (409, "definition_not_active"),
    NoHubspotToken = (409, "no_hubspot_token"),
    NotDeleted = (409, "not_deleted"),
    OverlappingEntitlement = (409, "overlapping_entitlement"),
    TooManyDefinitions = (409, "too_many_definitions"),
    PayloadTooLarge = (413, "payload_too_large"),
    TooManyEvents = (413, "too_many_events"),
    UnsupportedMediaType = (415, "unsupported_media_type"),
    UnknownAccount = (422, "unknown_account"),
    UnknownMeter = (422, "unknown_meter"),
    UsageOverflow = (422, "usage_overflow"),
    RateLimited = (429, "rate_limited"),
    InternalError = (500, "internal_error"),
    JobFailed = (500, "job_failed"),
    GovernanceNotConfigured = (503, "governance_not_configured"),
    HubspotNotConfigured = (503, "hubspot_not_configured"),
    PortalsNotConfigured = (503, "portals_not_configured"),
    ReplayIncomplete = (503, "replay_incomplete"),
    ReplayNotConfigured = (503, "replay_not_configured"),
    TemporarilyUnavailable = (503, "temporarily_unavailable"),
    WebhooksNotConfigured = (503, "webhooks_not_configured"),
    WebhooksUnavailable = (503, "webhooks_unavailable"),
}

/// One error answer: its status, its code (an [`ErrorCode`] or a domain error's code)
/// and a sentence for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::domain(code.status(), code.as_str(), message)
    }

    /// An error whose code a domain error defines (e.g. an `InputError`'s
    /// `invalid_key_feature`, a webhook signature's `signature_expired`).
    pub fn domain(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// `429 rate_limited`: the tenant's request quota is spent for now.
    pub fn rate_limited(tenant: &domain::ids::TenantId, wait: std::time::Duration) -> Self {
        let secs = domain::quota::retry_after_secs(wait);
        Self {
            retry_after: Some(secs),
            ..Self::new(
                ErrorCode::RateLimited,
                format!("tenant {tenant} is over its request quota; retry after {secs} s"),
            )
        }
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }
}

impl From<domain::input::InputError> for ApiError {
    fn from(e: domain::input::InputError) -> Self {
        ApiError::domain(400, e.code, e.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BadCursor => ApiError::new(
                ErrorCode::InvalidCursor,
                "the cursor is not one this API returned",
            ),
            StoreError::Taken { code, message } => ApiError::domain(409, code, message),
            StoreError::Throttled(_) | StoreError::Conflict(_) | StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "store busy");
                ApiError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "storage is busy; retry shortly",
                )
            }
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::new(
                    ErrorCode::InternalError,
                    "an internal error occurred; it has been logged",
                )
            }
        }
    }
}

pub fn json<T: Serialize>(status: u16, body: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::Binary(bytes))
        .unwrap_or_default()
}

pub fn error(e: &ApiError) -> Response<Body> {
    let mut resp = json(
        e.status,
        &serde_json::json!({"error": {"code": e.code, "message": e.message}}),
    );
    if let Some(secs) = e.retry_after {
        if let Ok(v) = http::HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
    }
    resp
}

/// The request body as bytes (API Gateway may deliver it base64-decoded as text).
pub fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

/// Serves `req` as one correlated piece of work: the caller's `x-correlation-id` (or a
/// new id, [`domain::correlation::accept`]) is current while `handle` runs (so queued
/// messages carry it), it and the tenant (recorded once the API key is checked) are on
/// every log line of the request (a `request` span), and the response returns it.
pub async fn correlated<F, Fut>(req: Request, handle: F) -> Response<Body>
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response<Body>>,
{
    use tracing::Instrument;
    let header = domain::correlation::HEADER;
    let id = domain::correlation::accept(req.headers().get(header).and_then(|v| v.to_str().ok()));
    let span = tracing::info_span!("request", correlationId = %id, tenant = tracing::field::Empty);
    let mut resp = domain::correlation::scope(id.clone(), handle(req).instrument(span)).await;
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert(header, v);
    }
    resp
}

/// Resolves the request's API key and checks it may do what the request needs:
/// 401 when missing, unknown, revoked or expired; 403 when it lacks the scope.
pub async fn authenticate(
    dir: &dyn Directory,
    req: &Request,
    needed: KeyScope,
) -> Result<KeyGrant, ApiError> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok());
    let key = bearer(header).ok_or_else(|| {
        ApiError::new(
            ErrorCode::MissingApiKey,
            "send your API key as 'Authorization: Bearer <key>'",
        )
    })?;
    let grant = dir
        .key_grant(&hash_key(key))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidApiKey, "the API key is not valid"))?;
    check_grant(grant, needed)
}

/// Checks an already looked-up key may do what a request needs now (401 when revoked
/// or expired, 403 when it lacks the scope): what [`authenticate`] does after the
/// lookup, for callers that hold the grant (the web app's sessions).
pub fn check_grant(grant: KeyGrant, needed: KeyScope) -> Result<KeyGrant, ApiError> {
    match grant.check(needed, chrono::Utc::now()) {
        Ok(()) => {
            // Every later log line of the request names its tenant ([`correlated`]).
            tracing::Span::current().record("tenant", grant.tenant.as_str());
            Ok(grant)
        }
        Err(KeyRefusal::Revoked) => Err(ApiError::new(
            ErrorCode::ApiKeyRevoked,
            format!("API key {} has been revoked", grant.key_id),
        )),
        Err(KeyRefusal::Expired) => Err(ApiError::new(
            ErrorCode::ApiKeyExpired,
            format!(
                "API key {} has expired; rotate or create a new one",
                grant.key_id
            ),
        )),
        Err(KeyRefusal::Scope(s)) => Err(ApiError::new(
            ErrorCode::InsufficientScope,
            format!(
                "this request needs a key with the '{}' scope; key {} has: {}",
                s.as_str(),
                grant.key_id,
                grant
                    .scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Query-string pairs, percent-decoded, read from the URI so it works for every
/// event source and the local runner alike.
pub fn query_pairs(req: &Request) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// `limit` and `cursor` of a paginated list (`GET /v1/accounts`, definitions, change
/// logs, audits, held events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageParams {
    pub limit: usize,
    pub cursor: Option<String>,
}

impl PageParams {
    /// Takes `limit` (1..=`max`, default `default`) and `cursor` out of `pairs`;
    /// returns the other pairs for the caller, who refuses the ones it does not know.
    /// A parameter given twice is refused (`invalid_parameter`), as is an empty cursor
    /// (`invalid_cursor`: it cannot be one this API returned).
    pub fn take(
        pairs: Vec<(String, String)>,
        default: usize,
        max: usize,
    ) -> Result<(Self, Vec<(String, String)>), ApiError> {
        let mut limit = None;
        let mut cursor = None;
        let mut rest = Vec::new();
        for (k, v) in pairs {
            let repeated = match k.as_str() {
                "limit" => limit.is_some(),
                "cursor" => cursor.is_some(),
                _ => false,
            };
            if repeated {
                return Err(ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!("parameter '{k}' given twice"),
                ));
            }
            match k.as_str() {
                "limit" => {
                    limit = Some(
                        v.parse::<usize>()
                            .ok()
                            .filter(|l| (1..=max).contains(l))
                            .ok_or_else(|| {
                                ApiError::new(
                                    ErrorCode::InvalidParameter,
                                    format!("limit must be between 1 and {max}"),
                                )
                            })?,
                    )
                }
                "cursor" if v.is_empty() => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidCursor,
                        "the cursor is not one this API returned",
                    ))
                }
                "cursor" => cursor = Some(v),
                _ => rest.push((k, v)),
            }
        }
        Ok((
            Self {
                limit: limit.unwrap_or(default),
                cursor,
            },
            rest,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn served(header: Option<&str>) -> (Option<String>, Option<String>) {
        let mut b = http::Request::builder().uri("/v1/events");
        if let Some(h) = header {
            b = b.header("x-correlation-id", h);
        }
        let req: Request = b.body(Body::Empty).unwrap();
        let mut seen = None;
        let resp = correlated(req, |_| async {
            seen = domain::correlation::current();
            json(200, &serde_json::json!({}))
        })
        .await;
        let returned = resp
            .headers()
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (seen, returned)
    }

    #[tokio::test]
    async fn a_request_keeps_the_callers_correlation_id_and_returns_it() {
        let (seen, returned) = served(Some("order-77")).await;
        assert_eq!(seen.as_deref(), Some("order-77"), "current while handled");
        assert_eq!(returned.as_deref(), Some("order-77"));
    }

    #[tokio::test]
    async fn without_a_usable_one_a_request_gets_a_new_correlation_id() {
        for header in [None, Some("not allowed!")] {
            let (seen, returned) = served(header).await;
            assert!(seen.is_some());
            assert_eq!(seen, returned, "{header:?}");
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn page_params_default_and_hand_back_the_other_parameters() {
        let (p, rest) = PageParams::take(pairs(&[("meter", "x")]), 50, 200).unwrap();
        assert_eq!(
            p,
            PageParams {
                limit: 50,
                cursor: None
            }
        );
        assert_eq!(rest, pairs(&[("meter", "x")]));
        let (p, rest) =
            PageParams::take(pairs(&[("limit", "200"), ("cursor", "abc")]), 50, 200).unwrap();
        assert_eq!((p.limit, p.cursor.as_deref()), (200, Some("abc")));
        assert!(rest.is_empty());
    }

    #[test]
    fn page_params_refuse_limits_out_of_range_repeats_and_empty_cursors() {
        for (p, code) in [
            (vec![("limit", "0")], "invalid_parameter"),
            (vec![("limit", "201")], "invalid_parameter"),
            (vec![("limit", "-1")], "invalid_parameter"),
            (vec![("limit", "ten")], "invalid_parameter"),
            (vec![("limit", "1"), ("limit", "2")], "invalid_parameter"),
            (vec![("cursor", "a"), ("cursor", "b")], "invalid_parameter"),
            (vec![("cursor", "")], "invalid_cursor"),
        ] {
            let err = PageParams::take(pairs(&p), 50, 200).unwrap_err();
            assert_eq!((err.status, err.code), (400, code), "{p:?}");
        }
    }

    #[test]
    fn every_error_code_is_distinct_snake_case_and_an_error_status() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} is declared twice");
            assert!(
                !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{s} is not snake_case"
            );
            assert!(
                (400..600).contains(&code.status()),
                "{s}: {}",
                code.status()
            );
        }
    }

    /// The local runner's job routes (`/local/jobs/…`) are not part of the deployed API.
    const LOCAL_ONLY: &[ErrorCode] = &[ErrorCode::UnknownJob, ErrorCode::JobFailed];

    /// Whether `text` names `code` as a whole word.
    fn mentions(text: &str, code: &str) -> bool {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        text.match_indices(code)
            .any(|(i, _)| !text[..i].ends_with(word) && !text[i + code.len()..].starts_with(word))
    }

    #[test]
    fn every_error_code_the_api_answers_is_in_the_contract() {
        let contract = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json"),
        )
        .expect("docs/openapi.json is readable");
        let missing: Vec<&str> = ErrorCode::ALL
            .iter()
            .filter(|c| !LOCAL_ONLY.contains(c))
            .map(|c| c.as_str())
            .filter(|c| !mentions(&contract, c))
            .collect();
        assert!(
            missing.is_empty(),
            "codes not in docs/openapi.json: {missing:?}"
        );
    }

    #[test]
    fn an_error_answers_with_its_codes_status_and_envelope() {
        let e = ApiError::new(ErrorCode::TooManyEvents, "1001 events; at most 1000");
        assert_eq!((e.status, e.code), (413, "too_many_events"));
        let resp = error(&e);
        assert_eq!(resp.status(), 413);
        let body: serde_json::Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
        assert_eq!(body["error"]["code"], "too_many_events");
        assert_eq!(body["error"]["message"], "1001 events; at most 1000");
    }
}
