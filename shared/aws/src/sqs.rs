//! SQS adapters: the events queue ([`EventQueue`]) and dead-letter queue depth
//! ([`QueueDepth`]).

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;
use domain::audit::store::QueueDepth;
use domain::chunk::{batch_calls, SQS_MAX_BATCH};
use domain::ports::StoreError;
use domain::queue::{EventQueue, QueueError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct SqsQueue {
    client: Client,
    url: String,
    /// SQS API requests made (for the cost benchmark).
    pub requests: Arc<AtomicU64>,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
            requests: Arc::default(),
        }
    }

    /// Sends one batch of `(index, body, FIFO group and deduplication id)`.
    async fn send_batch(&self, bodies: &[Entry<'_>]) -> HashMap<usize, String> {
        // The correlation id of the work sending them travels as a message attribute.
        let correlation = domain::correlation::current().and_then(|id| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(id)
                .build()
                .ok()
        });
        let entries: Vec<SendMessageBatchRequestEntry> = bodies
            .iter()
            .filter_map(|(i, b, fifo)| {
                let mut entry = SendMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message_body(*b);
                if let Some((group, dedup)) = fifo {
                    entry = entry
                        .message_group_id(*group)
                        .message_deduplication_id(*dedup);
                }
                if let Some(c) = &correlation {
                    entry = entry.message_attributes(domain::correlation::ATTRIBUTE, c.clone());
                }
                entry.build().ok()
            })
            .collect();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut failed = HashMap::new();
        match self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                for f in out.failed {
                    if let Some(i) = f.id.strip_prefix('m').and_then(|i| i.parse().ok()) {
                        failed.insert(i, format!("{}: {}", f.code, f.message.unwrap_or_default()));
                    }
                }
            }
            Err(e) => {
                let msg = aws_sdk_sqs::error::DisplayErrorContext(&e).to_string();
                for (i, _, _) in bodies {
                    failed.insert(*i, msg.clone());
                }
            }
        }
        failed
    }
}

/// One message of a batch: its index, body and FIFO group and deduplication id.
type Entry<'a> = (usize, &'a str, Option<(&'a str, &'a str)>);

impl SqsQueue {
    /// Sends `entries` in as few batches as the size limits allow, retrying refused
    /// entries once; one result per entry, in order.
    async fn send_all(&self, entries: &[Entry<'_>]) -> Vec<Result<(), QueueError>> {
        let sizes: Vec<usize> = entries.iter().map(|(_, b, _)| b.len()).collect();
        let mut results: Vec<Result<(), QueueError>> = entries.iter().map(|_| Ok(())).collect();
        for call in batch_calls(&sizes) {
            debug_assert!(call.len() <= SQS_MAX_BATCH);
            let mut pending: Vec<Entry<'_>> = call.iter().map(|&i| entries[i]).collect();
            // One retry of the entries SQS refused (throttling, transient errors).
            for attempt in 0..2 {
                let failed = self.send_batch(&pending).await;
                if failed.is_empty() {
                    break;
                }
                if attempt == 1 {
                    for (i, msg) in failed {
                        tracing::error!(index = i, error = %msg, "message could not be queued");
                        results[i] = Err(QueueError::Send(msg));
                    }
                } else {
                    pending.retain(|(i, _, _)| failed.contains_key(i));
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
        results
    }
}

#[async_trait]
impl EventQueue for SqsQueue {
    async fn send(&self, bodies: &[String]) -> Vec<Result<(), QueueError>> {
        let entries: Vec<Entry<'_>> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| (i, b.as_str(), None))
            .collect();
        self.send_all(&entries).await
    }
}

/// A FIFO queue: messages of a group keep their order (a batch keeps its entries'
/// order within a group) and are delivered one at a time.
#[async_trait]
impl domain::health::crm_queue::GroupedQueue for SqsQueue {
    async fn send_grouped(
        &self,
        messages: &[domain::health::crm_queue::GroupedMessage],
    ) -> Vec<Result<(), QueueError>> {
        let entries: Vec<Entry<'_>> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                (
                    i,
                    m.body.as_str(),
                    Some((m.group.as_str(), m.dedup.as_str())),
                )
            })
            .collect();
        self.send_all(&entries).await
    }
}

/// [`QueueDepth`] of an SQS queue (visible + in flight).
pub struct SqsDepth {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
}

#[async_trait]
impl QueueDepth for SqsDepth {
    async fn depth(&self) -> Result<u64, StoreError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let attrs = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| StoreError::Service {
                op: "dlq_depth",
                message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
            })?
            .attributes
            .unwrap_or_default();
        let n = |k: A| {
            attrs
                .get(&k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(n(A::ApproximateNumberOfMessages) + n(A::ApproximateNumberOfMessagesNotVisible))
    }
}
