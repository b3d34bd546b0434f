//! SQS consumer: counts each chunk's events exactly once into the rollups.
//!
//! Messages are reported individually (`ReportBatchItemFailures`), so a poison message
//! is retried alone and reaches the DLQ after the queue's `maxReceiveCount` while the
//! rest of its batch is counted. Each chunk's events are claimed on their own; the
//! rollup units of every chunk of the invocation are then written together
//! (`domain::pipeline::process_batch`, docs/adr/0001 "Merged units"), and a chunk
//! whose claims or units fail fails alone.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use domain::chunk::{Chunk, CHUNK_VERSION};
use domain::hubspot::processor::{ProcessError, Processor, WebhookBatch};
use domain::limits::LimitWatch;
use domain::pipeline::{process_batch, Claimed, LedgerStore, PipelineConfig};
use futures::FutureExt;
use lambda::batch::{response, run_each, Failed};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// What travels on the events queue.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Message {
    Hubspot(WebhookBatch),
    Chunk(Chunk),
}

pub struct Rollup {
    /// Turns HubSpot webhook batches into usage chunks (absent: they fail as poison).
    pub hubspot: Option<Processor>,
    pub store: Arc<dyn LedgerStore>,
    pub cfg: PipelineConfig,
    /// Entitlement threshold checks after counting; `None` counts only.
    pub limits: Option<LimitWatch>,
    /// Messages of one batch processed at the same time.
    pub concurrency: usize,
    /// Data-quality counters for the audit (docs/adr/0007); `None` records nothing.
    pub quality: Option<Arc<dyn domain::audit::store::QualityRecorder>>,
    /// Critical meters per tenant, for the audit's per-account series (needs `quality`).
    pub critical: Option<domain::audit::store::CriticalMeters>,
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("message body is not a chunk: {0}")]
    Poison(String),
    #[error("chunk version {0} is not supported")]
    Version(u8),
    #[error(transparent)]
    Store(#[from] domain::ports::StoreError),
    #[error("HubSpot batch: {0}")]
    Hubspot(#[from] ProcessError),
    #[error(transparent)]
    Limits(#[from] domain::limits::LimitError),
}

impl domain::queue::MessageFailure for MessageError {
    fn is_poison(&self) -> bool {
        matches!(self, MessageError::Poison(_) | MessageError::Version(_))
    }
}

/// The rollup over one store and its two queues, with limit alerts, data-quality
/// counters, critical-series tracking and HubSpot batches: what the function's
/// `main.rs` builds from the environment and the local stack builds under the
/// function's own role. HubSpot events are re-queued onto the events queue; limit
/// alerts go to the alerts queue.
pub fn wired(
    store: Arc<aws::dynamo::DynamoStore>,
    cfg: PipelineConfig,
    sqs: &aws_sdk_sqs::Client,
    events_url: String,
    alerts_url: String,
) -> Rollup {
    let limits = LimitWatch {
        entitlements: store.clone(),
        usage: store.clone(),
        accounts: store.clone(),
        markers: store.clone(),
        alerts: Arc::new(aws::sqs::SqsQueue::new(sqs.clone(), alerts_url)),
    };
    let mut rollup = Rollup::new(store.clone(), cfg)
        .with_limits(limits)
        .with_quality(store.clone())
        .with_critical_series(store.clone());
    rollup.hubspot = Some(Processor {
        store: store.clone(),
        queue: Arc::new(aws::sqs::SqsQueue::new(sqs.clone(), events_url)),
        retired: Some(domain::hubspot::processor::Retired {
            policy: store.clone(),
            quarantine: store,
        }),
    });
    rollup
}

impl Rollup {
    pub fn new(store: Arc<dyn LedgerStore>, cfg: PipelineConfig) -> Self {
        Self {
            hubspot: None,
            store,
            cfg,
            limits: None,
            concurrency: 4,
            quality: None,
            critical: None,
        }
    }

    /// Also keep each account's hourly series of critical meters (once per chunk).
    pub fn with_critical_series(mut self, directory: Arc<dyn domain::ports::Directory>) -> Self {
        self.critical = Some(domain::audit::store::CriticalMeters::new(directory));
        self
    }

    /// Also record each chunk's data-quality counters (once per chunk).
    pub fn with_quality(mut self, quality: Arc<dyn domain::audit::store::QualityRecorder>) -> Self {
        self.quality = Some(quality);
        self
    }

    /// Also raise entitlement threshold alerts after each chunk is counted.
    pub fn with_limits(mut self, limits: LimitWatch) -> Self {
        self.limits = Some(limits);
        self
    }

    /// The Lambda entry point: per-message failures; an error or a panic in one
    /// message fails that message alone.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        // Redeliveries: a chunk whose earlier attempt failed or timed out.
        let retried = event
            .records
            .iter()
            .filter(|m| {
                m.attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|n| n > 1)
            })
            .count();
        let records: Vec<(String, SqsMessage)> = event
            .records
            .into_iter()
            .map(|m| (m.message_id.clone().unwrap_or_default(), m))
            .collect();
        // 1. Parse; HubSpot batches are processed whole here, chunks come back.
        let correlations: std::collections::HashMap<String, String> = records
            .iter()
            .filter_map(|(id, m)| Some((id.clone(), lambda::batch::correlation_of(m)?)))
            .collect();
        let parsed = run_each(records, self.concurrency, |m| async move {
            lambda::batch::correlated(lambda::batch::correlation_of(&m), self.parse(&m)).await
        })
        .await;
        let mut results: Vec<(String, Result<(), Failed<MessageError>>)> = Vec::new();
        let (mut ids, mut chunks) = (Vec::new(), Vec::new());
        for (id, r) in parsed {
            match r {
                Ok(Some(chunk)) => {
                    ids.push(id);
                    chunks.push(chunk);
                }
                Ok(None) => results.push((id, Ok(()))),
                Err(f) => results.push((id, Err(f))),
            }
        }
        // 2. Claims per chunk, then the units of all of them together.
        let counted = AssertUnwindSafe(process_batch(
            self.store.as_ref(),
            chunks,
            &self.cfg,
            self.concurrency,
        ))
        .catch_unwind()
        .await;
        let counted = match counted {
            Ok(c) => c,
            Err(payload) => {
                let p = lambda::batch::panic_text(payload.as_ref());
                results.extend(
                    ids.into_iter()
                        .map(|id| (id, Err(Failed::Panicked(p.clone())))),
                );
                emit_batch(retried, &results, &[]);
                return response("rollup", results);
            }
        };
        let mut done = Vec::with_capacity(counted.len());
        for (id, r) in ids.into_iter().zip(counted) {
            match r {
                Ok(c) => done.push((id, c)),
                Err(e) => results.push((id, Err(Failed::Error(MessageError::Store(e))))),
            }
        }
        emit_batch(retried, &results, &done);
        // 3. Per counted chunk: the audit's records and the entitlement checks.
        results.extend(
            run_each(
                done.into_iter()
                    .map(|(id, c)| (id.clone(), (correlations.get(&id).cloned(), c)))
                    .collect(),
                self.concurrency,
                |(correlation, c)| async move {
                    lambda::batch::correlated(correlation, self.after_counting(&c)).await
                },
            )
            .await,
        );
        response("rollup", results)
    }

    /// A chunk to count, or `None` for a HubSpot batch (processed here, whole).
    async fn parse(&self, m: &SqsMessage) -> Result<Option<Chunk>, MessageError> {
        let body = m.body.as_deref().unwrap_or_default();
        let chunk = match serde_json::from_str(body)
            .map_err(|e| MessageError::Poison(e.to_string()))?
        {
            Message::Chunk(c) => c,
            Message::Hubspot(batch) => {
                let processor = self.hubspot.as_ref().ok_or_else(|| {
                    MessageError::Poison("HubSpot batch but no HubSpot processor configured".into())
                })?;
                let report = processor.process(&batch).await?;
                tracing::info!(tenant = %batch.tenant, batch = %batch.id, attributed = report.attributed, released = report.released,
                    held = report.held, unmapped = report.unmapped, facts = report.facts, quarantined = report.quarantined, "HubSpot batch processed");
                return Ok(None);
            }
        };
        if chunk.v != CHUNK_VERSION {
            return Err(MessageError::Version(chunk.v));
        }
        Ok(Some(chunk))
    }

    async fn after_counting(&self, claimed: &Claimed) -> Result<(), MessageError> {
        let chunk = &claimed.chunk;
        let outcome = &claimed.outcome;
        tracing::info!(
            tenant = %chunk.tenant,
            chunk = %chunk.chunk,
            events = chunk.events.len(),
            counted = outcome.counted,
            duplicates = outcome.duplicates,
            units_applied = outcome.units_applied,
            units_already_applied = outcome.units_already_applied,
            "chunk counted"
        );
        if let Some(q) = &self.quality {
            // Once per chunk (markers keyed by the chunk), also on redelivery.
            let critical = match &self.critical {
                Some(c) => c.of(&chunk.tenant).await?,
                None => domain::audit::store::MeterSet::default(),
            };
            domain::pipeline::record_quality(
                q.as_ref(),
                chunk,
                outcome,
                &critical,
                self.cfg.retention,
            )
            .await?;
        }
        if let Some(limits) = &self.limits {
            // Runs on every delivery, also when every unit was already applied: a
            // crash between counting and alerting is finished by the redelivery.
            let expires_at = (chunk.received_at + self.cfg.retention).timestamp();
            let l = limits
                .check(
                    &chunk.tenant,
                    &chunk.chunk,
                    &outcome.touched,
                    chrono::Utc::now(),
                    expires_at,
                )
                .await?;
            tracing::info!(
                tenant = %chunk.tenant,
                chunk = %chunk.chunk,
                entitlement_periods = l.entitlements_checked,
                alerts_queued = l.alerts_queued,
                already_raised = l.already_raised,
                "limits checked"
            );
        }
        Ok(())
    }
}

/// The batch's metrics: `ChunksRetried` (redelivered messages), `ChunksFailed` (parse
/// or counting failures) and, per tenant (a property), `ChunksCounted`,
/// `EventsCounted`, `DuplicatesSkipped` and `RollupLag`: for each counted chunk, the
/// milliseconds from the events' receipt by ingest to their counting (a values array,
/// so CloudWatch has the p50/p99 of chunk lag).
fn emit_batch<T>(
    retried: usize,
    results: &[(String, Result<(), Failed<T>>)],
    done: &[(String, Claimed)],
) {
    use lambda::metrics::{publish, record, set};
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    let mut batch = set("rollup");
    record(batch.count("ChunksRetried", n(retried)));
    record(batch.count(
        "ChunksFailed",
        n(results.iter().filter(|(_, r)| r.is_err()).count()),
    ));
    publish(&batch);
    let now = chrono::Utc::now();
    let mut per_tenant: std::collections::BTreeMap<&str, Vec<&Claimed>> = Default::default();
    for (_, c) in done {
        per_tenant
            .entry(c.chunk.tenant.as_str())
            .or_default()
            .push(c);
    }
    for (tenant, chunks) in per_tenant {
        let mut s = set("rollup");
        record(s.property("tenant", tenant));
        record(s.count("ChunksCounted", n(chunks.len())));
        for c in chunks {
            record(s.count("EventsCounted", n(c.outcome.counted)));
            record(s.count("DuplicatesSkipped", n(c.outcome.duplicates)));
            let lag = (now - c.chunk.received_at).num_milliseconds().max(0);
            #[allow(clippy::cast_precision_loss)]
            record(s.put("RollupLag", domain::metrics::Unit::Milliseconds, lag as f64));
        }
        publish(&s);
    }
}
