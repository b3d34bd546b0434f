//! An SQS poller that behaves like Lambda's event source mapping: batch size and
//! batching window, visibility timeout while the handler runs, partial batch failures
//! (only successful messages are deleted), and redrive to the DLQ by the queue's own
//! `maxReceiveCount` when a message keeps failing.

use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use futures::FutureExt;
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Anything that consumes SQS batches like a Lambda with `ReportBatchItemFailures`.
#[async_trait]
pub trait SqsHandler: Send + Sync {
    async fn handle(&self, event: SqsEvent) -> SqsBatchResponse;
}

#[async_trait]
impl SqsHandler for rollup::Rollup {
    async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        rollup::Rollup::handle(self, event).await
    }
}

#[async_trait]
impl SqsHandler for notify::Notify {
    async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        notify::Notify::handle(self, event).await
    }
}

#[async_trait]
impl SqsHandler for score::Score {
    async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        score::Score::handle(self, event).await
    }
}

#[derive(Debug, Clone)]
pub struct Mapping {
    pub queue_url: String,
    pub queue_arn: String,
    pub batch_size: i32,
    pub batching_window: Duration,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollStats {
    pub received: usize,
    pub failed: usize,
    pub deleted: usize,
}

pub struct Poller {
    pub sqs: aws_sdk_sqs::Client,
    pub mapping: Mapping,
    /// SQS API requests made (receives and deletes), for the cost benchmark.
    pub requests: std::sync::atomic::AtomicU64,
}

impl Poller {
    /// Receives one batch (waiting up to the batching window), invokes the handler and
    /// deletes the messages it did not report as failed.
    pub async fn poll_once(
        &self,
        handler: &dyn SqsHandler,
        wait: Duration,
    ) -> anyhow::Result<PollStats> {
        let m = &self.mapping;
        let started = Instant::now();
        let mut messages = Vec::new();
        let mut first = true;
        while messages.len() < m.batch_size as usize {
            let remaining = if first {
                wait
            } else {
                m.batching_window.saturating_sub(started.elapsed())
            };
            if !first && remaining.is_zero() {
                break;
            }
            self.requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let out = self
                .sqs
                .receive_message()
                .queue_url(&m.queue_url)
                .max_number_of_messages((m.batch_size as usize - messages.len()).min(10) as i32)
                .wait_time_seconds(remaining.as_secs().min(20) as i32)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
                })?;
            let got = out.messages.unwrap_or_default();
            if got.is_empty() && (first || remaining.is_zero()) {
                if first && messages.is_empty() {
                    return Ok(PollStats::default());
                }
                break;
            }
            first = false;
            messages.extend(got);
        }
        let records: Vec<SqsMessage> = messages.iter().map(|msg| self.to_record(msg)).collect();
        let received = records.len();
        let mut event = SqsEvent::default();
        event.records = records;
        // Lambda would fail the invocation and retry the batch; the poller, like the
        // event source mapping, keeps running and leaves every message of it queued.
        let failed: HashSet<String> = match AssertUnwindSafe(handler.handle(event))
            .catch_unwind()
            .await
        {
            Ok(response) => response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            Err(payload) => {
                tracing::error!(queue = %m.queue_arn, panic = %lambda::batch::panic_text(payload.as_ref()),
                    "handler panicked; the batch stays queued for redelivery");
                messages
                    .iter()
                    .filter_map(|msg| msg.message_id().map(str::to_owned))
                    .collect()
            }
        };
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .filter(|msg| !failed.contains(msg.message_id().unwrap_or_default()))
            .enumerate()
            .filter_map(|(i, msg)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("d{i}"))
                    .receipt_handle(msg.receipt_handle().unwrap_or_default())
                    .build()
                    .ok()
            })
            .collect();
        let deleted = entries.len();
        for batch in entries.chunks(10) {
            self.requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.sqs
                .delete_message_batch()
                .queue_url(&m.queue_url)
                .set_entries(Some(batch.to_vec()))
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
                })?;
        }
        Ok(PollStats {
            received,
            failed: failed.len(),
            deleted,
        })
    }

    fn to_record(&self, msg: &aws_sdk_sqs::types::Message) -> SqsMessage {
        let mut r = SqsMessage::default();
        r.message_id = msg.message_id.clone();
        r.receipt_handle = msg.receipt_handle.clone();
        r.body = msg.body.clone();
        r.md5_of_body = msg.md5_of_body.clone();
        r.attributes = msg
            .attributes
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
            .collect();
        r.message_attributes = msg
            .message_attributes
            .iter()
            .flatten()
            .map(|(k, v)| {
                let mut a = aws_lambda_events::sqs::SqsMessageAttribute::default();
                a.string_value = v.string_value.clone();
                a.data_type = Some(v.data_type.clone());
                (k.clone(), a)
            })
            .collect();
        r.event_source = Some("aws:sqs".into());
        r.event_source_arn = Some(self.mapping.queue_arn.clone());
        r.aws_region = Some("us-east-1".into());
        r
    }

    /// Polls until `shutdown` turns true.
    pub async fn run_shared(
        self: std::sync::Arc<Self>,
        handler: std::sync::Arc<dyn SqsHandler>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                res = self.poll_once(handler.as_ref(), Duration::from_secs(1)) => match res {
                    Ok(s) if s.received > 0 => tracing::info!(queue = %self.mapping.queue_arn, received = s.received, failed = s.failed, "batch handled"),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "polling failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    }
}
