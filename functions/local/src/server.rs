//! The local HTTP front door: what API Gateway does on AWS. `POST /v1/events` goes to
//! ingest, `/local/jobs/{name}` runs a scheduled job now, `/app` to the web app, everything
//! else to the API.

use crate::stack::Stack;
use axum::body::{to_bytes, Body as AxumBody};
use axum::extract::State;
use axum::http::Request as HttpRequest;
use axum::response::Response as AxumResponse;
use lambda::http::ErrorCode;
use lambda_http::Body;
use std::sync::Arc;

/// Lambda's synchronous payload limit; API Gateway refuses more.
pub const MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;

pub fn router(stack: Arc<Stack>) -> axum::Router {
    axum::Router::new().fallback(dispatch).with_state(stack)
}

async fn dispatch(State(stack): State<Arc<Stack>>, req: HttpRequest<AxumBody>) -> AxumResponse {
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return to_axum(lambda::http::error(&lambda::http::ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("request body exceeds {MAX_REQUEST_BYTES} bytes"),
            )))
        }
    };
    let path = parts.uri.path().to_owned();
    if path.trim_end_matches('/') == "/local/metrics" {
        let req = lambda_http::Request::from_parts(parts, Body::Empty);
        return to_axum(local_metrics(&req));
    }
    if let Some(job) = path.strip_prefix("/local/jobs/") {
        let req = lambda_http::Request::from_parts(parts, Body::Empty);
        return to_axum(run_job(&stack, &req, job).await);
    }
    let body = if bytes.is_empty() {
        Body::Empty
    } else {
        Body::Binary(bytes.to_vec())
    };
    let req = lambda_http::Request::from_parts(parts, body);
    // API Gateway's routes: ingest's own paths go to ingest, the rest to the API.
    let trimmed = path.trim_end_matches('/');
    let resp = if trimmed == "/app" || trimmed.starts_with("/app/") {
        lambda::http::correlated(req, |r| stack.web.handle(r)).await
    } else if ingest::ROUTES.iter().any(|(_, p)| *p == trimmed) {
        lambda::http::correlated(req, |r| stack.ingest.handle(r)).await
    } else {
        lambda::http::correlated(req, |r| stack.api.handle(r)).await
    };
    to_axum(resp)
}

/// Runs a scheduled job now, for the tenant of the admin-scoped key that asks.
pub async fn run_job(
    stack: &Stack,
    req: &lambda_http::Request,
    name: &str,
) -> lambda_http::Response<Body> {
    use lambda::http::{error, json, ApiError};
    if req.method() != axum::http::Method::POST {
        return error(&ApiError::new(
            ErrorCode::MethodNotAllowed,
            "use POST /local/jobs/{name}",
        ));
    }
    let tenant =
        match lambda::http::authenticate(stack.store.as_ref(), req, domain::auth::KeyScope::Admin)
            .await
        {
            Ok(grant) => grant.tenant,
            Err(e) => return error(&e),
        };
    // `?as_of=YYYY-MM-DD`: the score job scores the days before that day (the Lambda's
    // scheduled input `{"as_of": ...}`), e.g. a baseline run on an earlier day.
    let as_of = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "as_of")
            .map(|(_, v)| v.into_owned())
    });
    let ran = match as_of {
        None => stack.scheduler.run_now(name, Some(&tenant)).await,
        Some(day) => match chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d") {
            Ok(day) if day <= chrono::Utc::now().date_naive() => {
                stack.scheduler.run_now_as_of(name, &tenant, day).await
            }
            _ => {
                return error(&ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!("as_of '{day}' is not a date (YYYY-MM-DD) up to today"),
                ))
            }
        },
    };
    match ran {
        None => error(&ApiError::new(
            ErrorCode::UnknownJob,
            format!(
                "no job '{name}'; jobs: {}",
                stack.scheduler.names().join(", ")
            ),
        )),
        Some(Ok(report)) => json(
            200,
            &serde_json::json!({"job": name, "tenant": tenant, "report": report}),
        ),
        Some(Err(e)) => error(&ApiError::new(ErrorCode::JobFailed, e.to_string())),
    }
}

/// `GET /local/metrics[?tenant=ID]`: what CloudWatch would show of the functions' EMF
/// metrics since the runner started (function → metric → count, sum, min, max, p50,
/// p99), of every tenant or of one (the documents' `tenant` property). Local only, like
/// CloudWatch itself it needs no API key.
pub fn local_metrics(req: &lambda_http::Request) -> lambda_http::Response<Body> {
    use lambda::http::{error, json, ApiError};
    if req.method() != axum::http::Method::GET {
        return error(&ApiError::new(
            ErrorCode::MethodNotAllowed,
            "use GET /local/metrics",
        ));
    }
    let tenant = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "tenant")
            .map(|(_, v)| v.into_owned())
    });
    let Some(tally) = lambda::metrics::tally() else {
        return error(&ApiError::new(
            ErrorCode::InternalError,
            "metrics go to another sink in this process",
        ));
    };
    json(
        200,
        &serde_json::json!({
            "tenant": tenant,
            "functions": tally.summaries(tenant.as_deref()),
        }),
    )
}

fn to_axum(resp: lambda_http::Response<Body>) -> AxumResponse {
    let (parts, body) = resp.into_parts();
    let bytes = match body {
        Body::Empty => Vec::new(),
        Body::Text(t) => t.into_bytes(),
        Body::Binary(b) => b,
        _ => Vec::new(),
    };
    AxumResponse::from_parts(parts, AxumBody::from(bytes))
}
