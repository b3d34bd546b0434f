//! HTTP helpers shared by the ingest and API handlers: the JSON error envelope,
//! JSON responses and bearer authentication.

use domain::auth::{bearer, hash_key, KeyGrant, KeyRefusal, KeyScope};
use domain::ports::{Directory, StoreError};
use lambda_http::{Body, Request, Response};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
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
                429,
                "rate_limited",
                format!("tenant {tenant} is over its request quota; retry after {secs} s"),
            )
        }
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(404, "not_found", format!("{what} not found"))
    }
}

impl From<domain::input::InputError> for ApiError {
    fn from(e: domain::input::InputError) -> Self {
        ApiError::new(400, e.code, e.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BadCursor => ApiError::new(
                400,
                "invalid_cursor",
                "the cursor is not one this API returned",
            ),
            StoreError::Taken { code, message } => ApiError::new(409, code, message),
            StoreError::Throttled(_) | StoreError::Conflict(_) | StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "store busy");
                ApiError::new(
                    503,
                    "temporarily_unavailable",
                    "storage is busy; retry shortly",
                )
            }
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::new(
                    500,
                    "internal_error",
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
            401,
            "missing_api_key",
            "send your API key as 'Authorization: Bearer <key>'",
        )
    })?;
    let grant = dir
        .key_grant(&hash_key(key))
        .await?
        .ok_or_else(|| ApiError::new(401, "invalid_api_key", "the API key is not valid"))?;
    check_grant(grant, needed)
}

/// Checks an already looked-up key may do what a request needs now (401 when revoked
/// or expired, 403 when it lacks the scope): what [`authenticate`] does after the
/// lookup, for callers that hold the grant (the web app's sessions).
pub fn check_grant(grant: KeyGrant, needed: KeyScope) -> Result<KeyGrant, ApiError> {
    match grant.check(needed, chrono::Utc::now()) {
        Ok(()) => Ok(grant),
        Err(KeyRefusal::Revoked) => Err(ApiError::new(
            401,
            "api_key_revoked",
            format!("API key {} has been revoked", grant.key_id),
        )),
        Err(KeyRefusal::Expired) => Err(ApiError::new(
            401,
            "api_key_expired",
            format!(
                "API key {} has expired; rotate or create a new one",
                grant.key_id
            ),
        )),
        Err(KeyRefusal::Scope(s)) => Err(ApiError::new(
            403,
            "insufficient_scope",
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
                    400,
                    "invalid_parameter",
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
                                    400,
                                    "invalid_parameter",
                                    format!("limit must be between 1 and {max}"),
                                )
                            })?,
                    )
                }
                "cursor" if v.is_empty() => {
                    return Err(ApiError::new(
                        400,
                        "invalid_cursor",
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
}
