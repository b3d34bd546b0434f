//! Write-back serialised per HubSpot portal across containers. HubSpot's rate budget
//! is per portal, while every score container has its own paced client; so the score
//! run does not call HubSpot itself when a write-back queue is configured. It hands
//! its updates and tasks to [`QueuedWriteback`], which sends them to a FIFO queue with
//! the portal as message group; the consumer ([`WritebackConsumer`]) drains it through
//! the paced client. SQS delivers one message of a group at a time, in order, however
//! many containers poll, so one portal sees one client's pace; a message that fails
//! stays queued and holds back its own portal only.

use super::writeback::{CrmSink, CrmTask, CrmUpdate, PushReport, BATCH_SIZE};
use crate::ids::TenantId;
use crate::queue::{MessageFailure, QueueError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// One message for a FIFO queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupedMessage {
    /// `MessageGroupId`: messages of a group are delivered one at a time, in order.
    pub group: String,
    /// `MessageDeduplicationId`: a resend within five minutes is dropped.
    pub dedup: String,
    pub body: String,
}

impl GroupedMessage {
    /// A message of `group` deduplicated by its body's SHA-256 (what the queue's
    /// content-based deduplication would compute, stated explicitly).
    pub fn new(group: String, body: String) -> Self {
        let dedup = hex::encode(Sha256::digest(body.as_bytes()));
        Self { group, dedup, body }
    }
}

/// A FIFO queue behind a trait (SQS in `aws::sqs`, memory in tests).
#[async_trait]
pub trait GroupedQueue: Send + Sync {
    /// Sends every message; one result per message, in order.
    async fn send_grouped(&self, messages: &[GroupedMessage]) -> Vec<Result<(), QueueError>>;
}

/// The body of a write-back message: company updates or one task, of one portal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WritebackMessage {
    pub tenant: TenantId,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<CrmUpdate>,
    /// At most one: a task creation is not idempotent, so a retried message must not
    /// create the tasks it carries that already succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<CrmTask>,
}

/// The message group of a portal: `portal-{id}`; companies whose portal is unknown
/// go to their tenant's group (a tenant's token belongs to one portal).
pub fn group_of(tenant: &TenantId, portal: Option<&str>) -> String {
    match portal {
        Some(p) => {
            let p: String = p
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(100)
                .collect();
            format!("portal-{p}")
        }
        None => format!("tenant-{tenant}"),
    }
}

/// The messages carrying `updates` and `tasks`: per portal, its updates in batches of
/// [`BATCH_SIZE`] first, then one message per task (a task's reason refers to the
/// properties just written).
pub fn messages(
    tenant: &TenantId,
    updates: &[CrmUpdate],
    tasks: &[CrmTask],
) -> Result<Vec<GroupedMessage>, serde_json::Error> {
    let mut by_group: Vec<(String, Vec<CrmUpdate>)> = Vec::new();
    for u in updates {
        let g = group_of(tenant, u.portal.as_deref());
        match by_group.iter_mut().find(|(k, _)| *k == g) {
            Some((_, v)) => v.push(u.clone()),
            None => by_group.push((g, vec![u.clone()])),
        }
    }
    let mut out = Vec::new();
    for (group, list) in by_group {
        for chunk in list.chunks(BATCH_SIZE) {
            let body = serde_json::to_string(&WritebackMessage {
                tenant: tenant.clone(),
                updates: chunk.to_vec(),
                task: None,
            })?;
            out.push(GroupedMessage::new(group.clone(), body));
        }
    }
    for t in tasks {
        let body = serde_json::to_string(&WritebackMessage {
            tenant: tenant.clone(),
            updates: Vec::new(),
            task: Some(t.clone()),
        })?;
        out.push(GroupedMessage::new(
            group_of(tenant, t.portal.as_deref()),
            body,
        ));
    }
    Ok(out)
}

/// The score run's CRM sink when a write-back queue is configured: enqueues instead
/// of calling HubSpot (`queued` in the report).
pub struct QueuedWriteback {
    pub queue: Arc<dyn GroupedQueue>,
}

impl QueuedWriteback {
    async fn enqueue(
        &self,
        tenant: &TenantId,
        updates: &[CrmUpdate],
        tasks: &[CrmTask],
    ) -> PushReport {
        let n = updates.len() + tasks.len();
        let mut report = PushReport::default();
        let msgs = match messages(tenant, updates, tasks) {
            Ok(m) => m,
            Err(e) => {
                report.failed = n;
                report.last_error = Some(e.to_string());
                return report;
            }
        };
        let sizes: Vec<usize> = msgs.iter().map(items).collect();
        for (r, size) in self.queue.send_grouped(&msgs).await.into_iter().zip(sizes) {
            match r {
                Ok(()) => report.queued += size,
                Err(e) => {
                    report.failed += size;
                    report.retry = true;
                    report.last_error = Some(e.to_string());
                }
            }
        }
        report
    }
}

/// Updates and tasks a message carries.
fn items(m: &GroupedMessage) -> usize {
    serde_json::from_str::<WritebackMessage>(&m.body)
        .map(|w| w.updates.len() + usize::from(w.task.is_some()))
        .unwrap_or(0)
}

#[async_trait]
impl CrmSink for QueuedWriteback {
    async fn push(&self, tenant: &TenantId, updates: &[CrmUpdate]) -> PushReport {
        self.enqueue(tenant, updates, &[]).await
    }

    async fn create_tasks(&self, tenant: &TenantId, tasks: &[CrmTask]) -> PushReport {
        self.enqueue(tenant, &[], tasks).await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WritebackError {
    #[error("not a write-back message: {0}")]
    Poison(String),
    /// Some items failed in a way a later attempt may fix: the message stays queued
    /// (and holds its portal's group) until it passes or reaches the DLQ.
    #[error("write-back incomplete ({failed} failed): {error}")]
    Retry { failed: usize, error: String },
}

impl MessageFailure for WritebackError {
    fn is_poison(&self) -> bool {
        matches!(self, WritebackError::Poison(_))
    }
}

/// Drains the write-back queue through the paced HubSpot client.
pub struct WritebackConsumer {
    pub sink: Arc<dyn CrmSink>,
}

impl WritebackConsumer {
    /// Sends one message's updates or task. Failures no retry can fix (a 207's unknown
    /// company ids, a 400) are logged and the message is done.
    pub async fn process(&self, body: &str) -> Result<PushReport, WritebackError> {
        let msg: WritebackMessage =
            serde_json::from_str(body).map_err(|e| WritebackError::Poison(e.to_string()))?;
        let mut report = if msg.updates.is_empty() {
            PushReport::default()
        } else {
            self.sink.push(&msg.tenant, &msg.updates).await
        };
        if let Some(t) = &msg.task {
            let r = self
                .sink
                .create_tasks(&msg.tenant, std::slice::from_ref(t))
                .await;
            report.updated += r.updated;
            report.failed += r.failed;
            report.requests += r.requests;
            report.throttled += r.throttled;
            report.retry |= r.retry;
            report.last_error = r.last_error.or(report.last_error);
        }
        let error = report.last_error.clone().unwrap_or_default();
        if report.failed > 0 && report.retry {
            return Err(WritebackError::Retry {
                failed: report.failed,
                error,
            });
        }
        if report.failed > 0 {
            tracing::error!(tenant = %msg.tenant, failed = report.failed, error = %error, "write-back items refused; not retried");
        }
        Ok(report)
    }
}
