//! The score function: one Lambda with two triggers.
//!
//! * The daily EventBridge schedule (any non-SQS event): starts a run per tenant —
//!   enumerates accounts and enqueues measure shards on the shard queue.
//! * The shard queue (SQS, `ReportBatchItemFailures`): measure and score shards, see
//!   [`shared::health::run`].

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::{NaiveDate, Utc};
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use shared::health::run::{HealthRunner, RunStarted, ShardOutcome};
use std::sync::Arc;

pub struct Score {
    pub runner: Arc<HealthRunner>,
    /// Shard messages of one SQS batch handled at the same time.
    pub concurrency: usize,
}

/// Optional input of the scheduled event (EventBridge `Input`, or the local job).
#[derive(Debug, Default, Deserialize)]
pub struct ScheduleInput {
    /// Score as of this day (default: today, scoring the days before it).
    #[serde(default)]
    pub as_of: Option<NaiveDate>,
}

impl Score {
    pub fn new(runner: Arc<HealthRunner>) -> Self {
        Self {
            runner,
            concurrency: 2,
        }
    }

    /// The scheduled entry point.
    pub async fn scheduled(
        &self,
        input: ScheduleInput,
    ) -> Result<Vec<RunStarted>, shared::health::run::RunError> {
        let as_of = input.as_of.unwrap_or_else(|| Utc::now().date_naive());
        self.runner.start_all(as_of).await
    }

    /// The shard-queue entry point: per-message failures.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let results: Vec<(String, Result<ShardOutcome, shared::health::run::RunError>)> =
            stream::iter(event.records)
                .map(|m| async move {
                    let id = m.message_id.clone().unwrap_or_default();
                    let r = self
                        .runner
                        .process(m.body.as_deref().unwrap_or_default())
                        .await;
                    (id, r)
                })
                .buffer_unordered(self.concurrency.max(1))
                .collect()
                .await;
        let mut response = SqsBatchResponse::default();
        for (id, r) in results {
            if let Err(e) = r {
                if e.is_poison() {
                    tracing::error!(message_id = %id, error = %e, "poison shard message");
                } else {
                    tracing::warn!(message_id = %id, error = %e, "shard will be retried");
                }
                let mut f = BatchItemFailure::default();
                f.item_identifier = id;
                response.batch_item_failures.push(f);
            }
        }
        response
    }

    /// Dispatches a raw Lambda payload: SQS records, or anything else as the schedule.
    pub async fn invoke(&self, payload: serde_json::Value) -> serde_json::Value {
        if payload.get("Records").is_some() {
            match serde_json::from_value::<SqsEvent>(payload) {
                Ok(ev) => serde_json::to_value(self.handle(ev).await).unwrap_or_default(),
                Err(e) => {
                    tracing::error!(error = %e, "unreadable SQS event");
                    serde_json::json!({"batchItemFailures": []})
                }
            }
        } else {
            let input = payload
                .get("detail")
                .cloned()
                .filter(|d| d.is_object())
                .unwrap_or(payload);
            let input: ScheduleInput = serde_json::from_value(input).unwrap_or_default();
            match self.scheduled(input).await {
                Ok(runs) => serde_json::json!({"runs": runs}),
                Err(e) => {
                    tracing::error!(error = %e, "score run could not start");
                    serde_json::json!({"error": e.to_string()})
                }
            }
        }
    }
}
