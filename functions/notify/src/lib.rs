//! SQS consumer of the alerts queue: publishes each alert key at most once (a marker
//! claimed per key and owned by the SQS message that claimed it), rendered for email
//! and as JSON, to the SNS alerts topic with filterable message attributes.
//!
//! Messages are handled one by one and reported individually
//! (`ReportBatchItemFailures`); a body that is not an alert goes to the DLQ after the
//! queue's `maxReceiveCount`.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::stream::{self, StreamExt};
use shared::alert::{render, Alert};
use shared::publish::{AlertPublisher, PublishError};
use shared::store::{MarkerClaim, MarkerKind, MarkerStore, StoreError};
use std::sync::Arc;

pub struct Notify {
    pub markers: Arc<dyn MarkerStore>,
    pub publisher: Arc<dyn AlertPublisher>,
    /// How long published-alert markers are kept (dedupe memory).
    pub retention: chrono::Duration,
    pub concurrency: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("message body is not an alert: {0}")]
    Poison(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("alert {0} is being published by another delivery of this message; retry later")]
    InFlight(String),
}

/// What happened to one alert message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Published,
    Duplicate,
}

impl Notify {
    pub fn new(markers: Arc<dyn MarkerStore>, publisher: Arc<dyn AlertPublisher>) -> Self {
        Self {
            markers,
            publisher,
            retention: chrono::Duration::days(400),
            concurrency: 4,
        }
    }

    /// The Lambda entry point.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let results: Vec<(String, Result<Delivery, NotifyError>)> = stream::iter(event.records)
            .map(|m| async move {
                let id = m.message_id.clone().unwrap_or_default();
                let r = self.process(&m).await;
                (id, r)
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        let mut response = SqsBatchResponse::default();
        for (id, r) in results {
            if let Err(e) = r {
                match &e {
                    NotifyError::Poison(_) => {
                        tracing::error!(message_id = %id, error = %e, "poison alert message")
                    }
                    _ => tracing::warn!(message_id = %id, error = %e, "alert will be retried"),
                }
                let mut f = BatchItemFailure::default();
                f.item_identifier = id;
                response.batch_item_failures.push(f);
            }
        }
        response
    }

    pub async fn process(&self, m: &SqsMessage) -> Result<Delivery, NotifyError> {
        let body = m.body.as_deref().unwrap_or_default();
        let alert: Alert =
            serde_json::from_str(body).map_err(|e| NotifyError::Poison(e.to_string()))?;
        // The SQS message id is stable across redeliveries of one message, so a retry
        // after a failed publish finds its own claim; another message with the same
        // alert key (the rollup re-sending after a crash) is a duplicate.
        let owner = m.message_id.as_deref().unwrap_or(&alert.key);
        let expires_at = (chrono::Utc::now() + self.retention).timestamp();
        match self
            .markers
            .claim_marker(
                &alert.tenant,
                MarkerKind::Published,
                &alert.key,
                owner,
                expires_at,
            )
            .await?
        {
            MarkerClaim::New => {}
            MarkerClaim::Mine { done: false, age } if age >= shared::limits::IN_FLIGHT_LEASE => {}
            MarkerClaim::Mine { done: false, .. } => return Err(NotifyError::InFlight(alert.key)),
            MarkerClaim::Mine { done: true, .. } | MarkerClaim::Other => {
                tracing::info!(tenant = %alert.tenant, alert = %alert.key, "duplicate alert dropped");
                return Ok(Delivery::Duplicate);
            }
        }
        let rendered = render(&alert);
        self.publisher.publish(&alert, &rendered).await?;
        self.markers
            .finish_marker(&alert.tenant, MarkerKind::Published, &alert.key)
            .await?;
        tracing::info!(
            tenant = %alert.tenant,
            account = %alert.account,
            alert = %alert.key,
            kind = alert.kind.as_str(),
            severity = alert.severity.as_str(),
            subject = %rendered.subject,
            "alert published"
        );
        Ok(Delivery::Published)
    }
}
