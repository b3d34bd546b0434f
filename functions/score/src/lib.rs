//! The score function: one Lambda with two triggers.
//!
//! * The daily EventBridge schedule (any non-SQS event): starts a run per tenant —
//!   enumerates accounts and enqueues measure shards on the shard queue.
//! * The shard queue (SQS, `ReportBatchItemFailures`): measure and score shards, see
//!   [`domain::health::run`].
//! * The write-back queue (SQS FIFO, message group = HubSpot portal): company updates
//!   and play tasks the score run queued, sent through the paced HubSpot client, see
//!   [`domain::health::crm_queue`]. Records from a `.fifo` queue are write-back
//!   messages.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{NaiveDate, Utc};
use domain::health::crm_queue::{QueuedWriteback, WritebackConsumer, WritebackError};
use domain::health::run::{HealthRunner, RunStarted};
use domain::health::writeback::{CrmSink, HubSpotWriteback, Tokens};
use serde::Deserialize;
use std::sync::Arc;

pub struct Score {
    pub runner: Arc<HealthRunner>,
    /// Shard messages of one SQS batch handled at the same time.
    pub concurrency: usize,
    /// The write-back queue's consumer (`None`: write-back is not queued).
    pub writeback: Option<Arc<WritebackConsumer>>,
}

/// Optional input of the scheduled event (EventBridge `Input`, or the local job).
#[derive(Debug, Default, Deserialize)]
pub struct ScheduleInput {
    /// Score as of this day (default: today, scoring the days before it).
    #[serde(default)]
    pub as_of: Option<NaiveDate>,
}

/// The health runner on DynamoDB and the shard and alerts queues, as every deployment
/// wires it (`main.rs` on Lambda, the local runner); `crm` is the HubSpot write-back.
/// `SCORE_SHARD_SIZE` (default 100, clamped to 1..=500) sets accounts per shard.
pub fn runner(
    store: &Arc<aws::dynamo::DynamoStore>,
    sqs: &aws_sdk_sqs::Client,
    score_queue_url: &str,
    alerts_queue_url: &str,
    crm: Option<Arc<dyn CrmSink>>,
) -> Result<HealthRunner, lambda::config::ConfigError> {
    Ok(HealthRunner {
        health: store.clone(),
        accounts: store.clone(),
        usage: store.clone(),
        definitions: store.clone(),
        markers: store.clone(),
        band_summaries: store.clone(),
        shards: Arc::new(aws::sqs::SqsQueue::new(sqs.clone(), score_queue_url)),
        alerts: Arc::new(aws::sqs::SqsQueue::new(sqs.clone(), alerts_queue_url)),
        crm,
        shard_size: lambda::config::number("SCORE_SHARD_SIZE", 100usize)?.clamp(1, 500),
        concurrency: 8,
    })
}

/// The HubSpot write-back with `tokens`, posting to `HUBSPOT_API_BASE_URL` (default
/// HubSpot's; a local stand-in in tests) at most `HUBSPOT_REQUESTS_PER_10S` (default
/// 100) requests per ten seconds.
pub fn writeback(tokens: Tokens) -> Result<Arc<dyn CrmSink>, String> {
    Ok(Arc::new(HubSpotWriteback::new(
        aws::hubspot::api_base(),
        tokens,
        Arc::new(aws::hubspot::HyperPost::new()?),
        lambda::config::number("HUBSPOT_REQUESTS_PER_10S", 100usize).map_err(|e| e.to_string())?,
    )))
}

/// The CRM sink of the score run when `WRITEBACK_QUEUE_URL` names the FIFO write-back
/// queue: updates and tasks are queued per portal and sent by the queue's consumer.
pub fn queued_writeback(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Arc<dyn CrmSink> {
    Arc::new(QueuedWriteback {
        queue: Arc::new(aws::sqs::SqsQueue::new(sqs.clone(), queue_url)),
    })
}

/// Whether an SQS record comes from a FIFO queue (the write-back queue).
fn from_fifo(m: &aws_lambda_events::sqs::SqsMessage) -> bool {
    m.event_source_arn
        .as_deref()
        .is_some_and(|a| a.ends_with(".fifo"))
}

impl Score {
    pub fn new(runner: Arc<HealthRunner>) -> Self {
        Self {
            runner,
            concurrency: 2,
            writeback: None,
        }
    }

    /// Consumes the write-back queue with `sink` (the HubSpot client).
    pub fn with_writeback_consumer(mut self, sink: Arc<dyn CrmSink>) -> Self {
        self.writeback = Some(Arc::new(WritebackConsumer { sink }));
        self
    }

    /// Write-back messages, in order: after a failure, the later messages of its group
    /// in the batch are failed unprocessed, so a portal's order holds (as Lambda asks of
    /// FIFO consumers); other groups go on.
    async fn drain(&self, records: Vec<aws_lambda_events::sqs::SqsMessage>) -> SqsBatchResponse {
        use lambda::batch::{correlated, correlation_of, response, run_each, Failed};
        let mut failed_groups = std::collections::HashSet::new();
        let mut results = Vec::with_capacity(records.len());
        for m in records {
            let id = m.message_id.clone().unwrap_or_default();
            let group = m
                .attributes
                .get("MessageGroupId")
                .cloned()
                .unwrap_or_default();
            if failed_groups.contains(&group) {
                results.push((
                    id,
                    Err(Failed::Error(WritebackError::Retry {
                        failed: 0,
                        error: format!("an earlier message of group {group} failed"),
                    })),
                ));
                continue;
            }
            let Some(consumer) = self.writeback.clone() else {
                results.push((
                    id,
                    Err(Failed::Error(WritebackError::Retry {
                        failed: 0,
                        error: "this function has no write-back consumer configured".into(),
                    })),
                ));
                continue;
            };
            let out = run_each(vec![(id, m)], 1, |m| {
                let consumer = consumer.clone();
                correlated(correlation_of(&m), async move {
                    let r = consumer
                        .process(m.body.as_deref().unwrap_or_default())
                        .await;
                    emit_writeback(r.as_ref().ok());
                    r.map(|_| ())
                })
            })
            .await;
            for (id, r) in out {
                if r.is_err() {
                    failed_groups.insert(group.clone());
                }
                results.push((id, r));
            }
        }
        response("writeback", results)
    }

    /// The scheduled entry point.
    pub async fn scheduled(
        &self,
        input: ScheduleInput,
    ) -> Result<Vec<RunStarted>, domain::health::run::RunError> {
        let as_of = input.as_of.unwrap_or_else(|| Utc::now().date_naive());
        let started = std::time::Instant::now();
        let r = self.runner.start_all(as_of).await;
        emit_duration("ScoreRunStartDuration", started, r.is_ok(), None);
        r
    }

    /// The shard-queue entry point: per-message failures (errors and panics alike).
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let (fifo, shards): (Vec<_>, Vec<_>) = event.records.into_iter().partition(from_fifo);
        let mut out = self.drain(fifo).await;
        let shards = self.handle_shards(shards).await;
        out.batch_item_failures.extend(shards.batch_item_failures);
        out
    }

    async fn handle_shards(
        &self,
        records: Vec<aws_lambda_events::sqs::SqsMessage>,
    ) -> SqsBatchResponse {
        lambda::batch::run_batch("score", records, self.concurrency, |m| async move {
            let started = std::time::Instant::now();
            let body = m.body.as_deref().unwrap_or_default();
            let r = self.runner.process(body).await;
            emit_duration("ScoreShardDuration", started, r.is_ok(), tenant_of(body));
            r
        })
        .await
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

/// `CrmWritebackUpdated` / `CrmWritebackFailed` / `CrmWritebackThrottled` of a
/// drained write-back message (all failed when it failed as a whole).
fn emit_writeback(report: Option<&domain::health::writeback::PushReport>) {
    use lambda::metrics::{publish, record, set};
    let mut s = set("score");
    match report {
        Some(r) => {
            record(s.count("CrmWritebackUpdated", r.updated as u64));
            record(s.count("CrmWritebackFailed", r.failed as u64));
            record(s.count("CrmWritebackThrottled", r.throttled as u64));
        }
        None => record(s.count("CrmWritebackRetried", 1)),
    }
    publish(&s);
}

/// The tenant a shard message is for (its `tenant` field), for the metrics' `tenant`
/// property; `None` for a body that is not a shard message.
fn tenant_of(body: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Shard {
        tenant: String,
    }
    serde_json::from_str::<Shard>(body).ok().map(|s| s.tenant)
}

/// A step's duration in milliseconds, and `ScoreFailures` (1) when it failed; the
/// shard's tenant is a property (never a dimension), as in every function's documents.
fn emit_duration(metric: &str, started: std::time::Instant, ok: bool, tenant: Option<String>) {
    use lambda::metrics::{publish, record, set};
    let mut s = set("score");
    record(s.put(
        metric,
        domain::metrics::Unit::Milliseconds,
        started.elapsed().as_secs_f64() * 1000.0,
    ));
    if !ok {
        record(s.count("ScoreFailures", 1));
    }
    if let Some(t) = tenant {
        record(s.property("tenant", t));
    }
    publish(&s);
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_shard_messages_tenant_is_read_for_its_metrics_and_anything_else_has_none() {
        let shard = r#"{"phase":"score","tenant":"acme","run":"r1","as_of":"2026-11-30","shard":0,"shards":1}"#;
        assert_eq!(super::tenant_of(shard).as_deref(), Some("acme"));
        assert_eq!(super::tenant_of("not json"), None);
        assert_eq!(super::tenant_of(r#"{"phase":"score"}"#), None);
    }
}
