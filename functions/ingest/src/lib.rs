//! `POST /v1/events`: authenticate, validate each event, queue the good ones.
//!
//! Per-event outcomes: good events are accepted even when others in the same request
//! are refused, each refusal carries a code, and nothing accepted is dropped (an
//! event that cannot be queued is reported back as `temporarily_unavailable`).

use chrono::Utc;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use shared::chunk::{pack, SQS_MAX_BYTES};
use shared::event::{
    split_body, validate_all, BodyError, Limits, RejectCode, Rejection, ValidationContext,
};
use shared::http::{authenticate, body_bytes, error, json, ApiError};
use shared::ids::Source;
use shared::queue::EventQueue;
use shared::store::Directory;
use std::sync::Arc;

/// Routes this function serves, as (method, OpenAPI path).
pub const ROUTES: &[(&str, &str)] = &[("POST", "/v1/events")];

pub struct Ingest {
    pub directory: Arc<dyn Directory>,
    pub queue: Arc<dyn EventQueue>,
    pub limits: Limits,
    /// Upper bound of one SQS message body.
    pub max_message_bytes: usize,
}

/// A note on an accepted event (e.g. its timestamp was defaulted).
#[derive(Debug, Serialize)]
pub struct Flag {
    pub index: usize,
    pub id: String,
    pub flag: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub accepted: usize,
    pub rejected: Vec<Rejection>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flagged: Vec<Flag>,
}

impl Ingest {
    pub fn new(directory: Arc<dyn Directory>, queue: Arc<dyn EventQueue>) -> Self {
        Self {
            directory,
            queue,
            limits: Limits::default(),
            max_message_bytes: SQS_MAX_BYTES - 1024,
        }
    }

    /// The Lambda entry point: never fails; every problem is an HTTP response.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        match self.route(req).await {
            Ok(resp) => resp,
            Err(e) => error(&e),
        }
    }

    async fn route(&self, req: Request) -> Result<Response<Body>, ApiError> {
        if req.uri().path().trim_end_matches('/') != "/v1/events" {
            return Err(ApiError::not_found("route"));
        }
        if req.method() != "POST" {
            return Err(ApiError::new(
                405,
                "method_not_allowed",
                "use POST /v1/events",
            ));
        }
        self.post_events(req).await
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
                413,
                "payload_too_large",
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
                    415,
                    "unsupported_media_type",
                    format!("content-type '{ct}' is not JSON"),
                ));
            }
        }
        let tenant = authenticate(self.directory.as_ref(), &req).await?;
        let policy = self
            .directory
            .tenant_policy(&tenant)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    401,
                    "invalid_api_key",
                    "the API key's tenant no longer exists",
                )
            })?;

        let raw = split_body(body, &self.limits).map_err(|e| match e {
            BodyError::Empty => ApiError::new(400, "empty_body", e.to_string()),
            BodyError::Malformed { .. } => ApiError::new(400, "malformed_json", e.to_string()),
            BodyError::NotAnEventList => ApiError::new(400, "invalid_body", e.to_string()),
            BodyError::TooManyEvents { .. } => ApiError::new(413, "too_many_events", e.to_string()),
        })?;
        let received_at = Utc::now();
        let ctx = ValidationContext {
            received_at,
            policy: &policy,
            limits: &self.limits,
        };
        let (valid, mut rejected) = validate_all(&raw, &ctx);
        let flagged: Vec<Flag> = valid
            .iter()
            .filter(|(_, e)| e.timestamp_defaulted)
            .map(|(i, e)| Flag {
                index: *i,
                id: e.id.to_string(),
                flag: "timestamp_defaulted",
            })
            .collect();
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
                500,
                "internal_error",
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
        tracing::info!(
            tenant = %tenant,
            received = raw.len(),
            accepted,
            rejected = rejected.len(),
            messages = bodies.len(),
            "events ingested"
        );
        let status = if accepted == 0 && unavailable > 0 {
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
            },
        ))
    }
}
