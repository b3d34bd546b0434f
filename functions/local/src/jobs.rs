//! Scheduled jobs, as EventBridge would run them on AWS; locally also on demand through
//! `POST /local/jobs/{name}` with an admin-scoped key, for that key's tenant only.

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use domain::ids::TenantId;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[async_trait]
pub trait Job: Send + Sync {
    fn name(&self) -> &'static str;
    fn every(&self) -> Duration;
    /// Runs the job for every tenant (`None`, the schedule) or for one tenant only
    /// (`POST /local/jobs/{name}` with that tenant's admin key).
    async fn run(&self, tenant: Option<&TenantId>) -> anyhow::Result<serde_json::Value>;
    /// Runs the job for one tenant as of another day (`POST /local/jobs/{name}?as_of=`,
    /// the `as_of` of the Lambda's scheduled input); only the score job takes one.
    async fn run_as_of(
        &self,
        _tenant: &TenantId,
        _as_of: chrono::NaiveDate,
    ) -> anyhow::Result<serde_json::Value> {
        anyhow::bail!("the {} job takes no as_of", self.name())
    }
}

/// Mirrors the `EventsDlqAlarm` CloudWatch alarm: reports and warns when the DLQ holds
/// messages (events that could not be counted and need attention).
pub struct DlqDepth {
    pub sqs: aws_sdk_sqs::Client,
    pub dlq_url: String,
}

#[async_trait]
impl Job for DlqDepth {
    fn name(&self) -> &'static str {
        "dlq-depth"
    }
    fn every(&self) -> Duration {
        Duration::from_secs(60)
    }
    /// The events DLQ is shared: its depth is the same for every tenant.
    async fn run(&self, _: Option<&TenantId>) -> anyhow::Result<serde_json::Value> {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.dlq_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?
            .attributes
            .unwrap_or_default();
        let n = |k: QueueAttributeName| {
            attrs
                .get(&k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let visible = n(QueueAttributeName::ApproximateNumberOfMessages);
        let in_flight = n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
        if visible + in_flight > 0 {
            tracing::warn!(
                dlq_depth = visible + in_flight,
                "events DLQ holds messages: inspect and redrive them"
            );
        }
        Ok(serde_json::json!({"dlq_depth": visible + in_flight, "alarm": visible + in_flight > 0}))
    }
}

/// The hourly `audit` function (EventBridge `rate(1 hour)` in the template).
pub struct AuditJob {
    pub audit: Arc<audit::Audit>,
}

#[async_trait]
impl Job for AuditJob {
    fn name(&self) -> &'static str {
        "audit"
    }
    fn every(&self) -> Duration {
        Duration::from_secs(3600)
    }
    async fn run(&self, tenant: Option<&TenantId>) -> anyhow::Result<serde_json::Value> {
        let now = chrono::Utc::now();
        Ok(match tenant {
            None => self.audit.run_all(now).await?,
            Some(t) => self.audit.run_one(t, now).await?,
        })
    }
}

#[derive(Clone, Default)]
pub struct Scheduler {
    jobs: Vec<Arc<dyn Job>>,
}

impl Scheduler {
    pub fn new(jobs: Vec<Arc<dyn Job>>) -> Self {
        Self { jobs }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.jobs.iter().map(|j| j.name()).collect()
    }

    pub async fn run_now(
        &self,
        name: &str,
        tenant: Option<&TenantId>,
    ) -> Option<anyhow::Result<serde_json::Value>> {
        let job = self.jobs.iter().find(|j| j.name() == name)?;
        Some(job.run(tenant).await)
    }

    /// [`Self::run_now`] for one tenant as of `as_of` ([`Job::run_as_of`]).
    pub async fn run_now_as_of(
        &self,
        name: &str,
        tenant: &TenantId,
        as_of: chrono::NaiveDate,
    ) -> Option<anyhow::Result<serde_json::Value>> {
        let job = self.jobs.iter().find(|j| j.name() == name)?;
        Some(job.run_as_of(tenant, as_of).await)
    }

    /// Runs every job on its interval until shutdown.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let tasks: Vec<_> = self
            .jobs
            .into_iter()
            .map(|job| {
                let mut shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(job.every());
                    tick.tick().await;
                    loop {
                        tokio::select! {
                            _ = shutdown.changed() => return,
                            _ = tick.tick() => match job.run(None).await {
                                Ok(report) => tracing::info!(job = job.name(), %report, "scheduled job ran"),
                                Err(e) => tracing::error!(job = job.name(), error = %e, "scheduled job failed"),
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// The notify function's daily schedule: sends every digest whose period has ended.
pub struct Digests {
    pub notify: Arc<notify::Notify>,
}

#[async_trait]
impl Job for Digests {
    fn name(&self) -> &'static str {
        "digest"
    }
    fn every(&self) -> Duration {
        Duration::from_secs(3600)
    }
    async fn run(&self, tenant: Option<&TenantId>) -> anyhow::Result<serde_json::Value> {
        let run = self
            .notify
            .run_digests_for(chrono::Utc::now(), tenant)
            .await?;
        Ok(serde_json::to_value(run)?)
    }
}

/// The daily health-score run (EventBridge `ScoreSchedule` on AWS).
pub struct ScoreJob {
    pub score: Arc<score::Score>,
}

#[async_trait]
impl Job for ScoreJob {
    fn name(&self) -> &'static str {
        "score"
    }
    fn every(&self) -> Duration {
        Duration::from_secs(24 * 3600)
    }
    async fn run(&self, tenant: Option<&TenantId>) -> anyhow::Result<serde_json::Value> {
        let runs = match tenant {
            None => self.score.scheduled(score::ScheduleInput::default()).await,
            Some(t) => {
                let now = chrono::Utc::now();
                self.score
                    .runner
                    .start(t, now.date_naive(), now)
                    .await
                    .map(|r| vec![r])
            }
        }
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
        Ok(
            serde_json::json!({"runs": runs, "note": "shards are processed by the score-queue poller"}),
        )
    }
    /// A run scoring the days before `as_of` (a baseline on an earlier day, a backfill).
    async fn run_as_of(
        &self,
        tenant: &TenantId,
        as_of: chrono::NaiveDate,
    ) -> anyhow::Result<serde_json::Value> {
        let run = self
            .score
            .runner
            .start(tenant, as_of, chrono::Utc::now())
            .await
            .map_err(|e| anyhow::anyhow!(e.to_string()))?;
        Ok(
            serde_json::json!({"runs": [run], "note": "shards are processed by the score-queue poller"}),
        )
    }
}
