//! SQS consumer of the alerts queue: publishes each alert key at most once (a marker
//! claimed per key and owned by the SQS message that claimed it), rendered for email
//! and as JSON, to the SNS alerts topic with filterable message attributes.
//!
//! Messages are handled one by one and reported individually
//! (`ReportBatchItemFailures`); a body that is not an alert goes to the DLQ after the
//! queue's `maxReceiveCount`.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use domain::alert::{render, Alert};
use domain::digest::{cooldown_scope, render_digest_parts, DigestBucket, Route};
use domain::ports::{AlertHistory, DigestStore, MarkerClaim, MarkerKind, MarkerStore, StoreError};
use domain::publish::{AlertPublisher, PublishError};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct Notify {
    pub markers: Arc<dyn MarkerStore>,
    pub publisher: Arc<dyn AlertPublisher>,
    /// Policy, cooldown clocks and digest buckets.
    pub digests: Arc<dyn DigestStore>,
    /// Each account's recent alerts (the account page's); `None` records none.
    pub history: Option<Arc<dyn AlertHistory>>,
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

impl domain::queue::MessageFailure for NotifyError {
    fn is_poison(&self) -> bool {
        matches!(self, NotifyError::Poison(_))
    }
}

/// What happened to one alert message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Published,
    /// Held for the segment's digest (low severity, or a repeat inside a cooldown).
    Digested,
    Duplicate,
}

/// What one digest run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DigestRun {
    pub due: usize,
    /// Digests sent (each may take several messages: `parts`).
    pub published: usize,
    pub parts: usize,
    pub alerts: usize,
    pub already_sent: usize,
    /// Digests that could not be sent this run (logged; retried next run).
    pub failed: usize,
}

/// Notify on DynamoDB (markers, digests, each account's alert history) and the alerts topic, as every deployment
/// wires it: `main.rs` on Lambda and the local runner.
pub fn wired(
    store: Arc<aws::dynamo::DynamoStore>,
    sns: aws_sdk_sns::Client,
    topic_arn: String,
) -> Notify {
    Notify::new(
        store.clone(),
        Arc::new(aws::sns::SnsPublisher::new(sns, topic_arn)),
        store.clone(),
    )
    .with_history(store)
}

impl Notify {
    pub fn new(
        markers: Arc<dyn MarkerStore>,
        publisher: Arc<dyn AlertPublisher>,
        digests: Arc<dyn DigestStore>,
    ) -> Self {
        Self {
            markers,
            publisher,
            digests,
            history: None,
            retention: chrono::Duration::days(400),
            concurrency: 4,
        }
    }

    /// Records every alert delivered (published or digested) in its account's history.
    pub fn with_history(mut self, history: Arc<dyn AlertHistory>) -> Self {
        self.history = Some(history);
        self
    }

    /// The Lambda entry point: per-message failures (errors and panics alike).
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        lambda::batch::run_batch("notify", event.records, self.concurrency, |m| async move {
            self.process(&m).await
        })
        .await
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
            MarkerClaim::Mine { done: false, age } if age >= domain::limits::IN_FLIGHT_LEASE => {}
            MarkerClaim::Mine { done: false, .. } => return Err(NotifyError::InFlight(alert.key)),
            MarkerClaim::Mine { done: true, .. } | MarkerClaim::Other => {
                tracing::info!(tenant = %alert.tenant, alert = %alert.key, "duplicate alert dropped");
                return Ok(Delivery::Duplicate);
            }
        }
        if let Some(h) = &self.history {
            // The account page's record; delivery does not wait on it (a redelivery
            // records the alert again, in its place).
            if let Err(e) = h.record_alert(&alert).await {
                tracing::warn!(tenant = %alert.tenant, account = %alert.account, alert = %alert.key, error = %e, "alert not recorded in the account's history");
            }
        }
        let policy = self
            .digests
            .alert_policy(&alert.tenant)
            .await?
            .unwrap_or_default();
        let scope = cooldown_scope(&alert);
        let cooldown = policy.cooldown_hours.get(&alert.kind).copied().unwrap_or(0);
        let last = if cooldown > 0 {
            self.digests.last_published(&alert.tenant, &scope).await?
        } else {
            None
        };
        if let Route::Digest { bucket, reason } = policy.route(&alert, last) {
            self.digests
                .hold_for_digest(&bucket, &alert, reason)
                .await?;
            self.markers
                .finish_marker(&alert.tenant, MarkerKind::Published, &alert.key)
                .await?;
            tracing::info!(
                tenant = %alert.tenant,
                account = %alert.account,
                alert = %alert.key,
                reason,
                digest = %bucket.key(),
                "alert held for the digest"
            );
            emit_alert(&alert, "AlertsHeldForDigest");
            return Ok(Delivery::Digested);
        }
        let rendered = render(&alert);
        self.publisher.publish(&alert, &rendered).await?;
        if cooldown > 0 {
            self.digests
                .record_published(&alert.tenant, &scope, alert.raised_at)
                .await?;
        }
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
        emit_alert(&alert, "AlertsPublished");
        Ok(Delivery::Published)
    }
}

/// One alert's metric, `metric` (1) with the alert's kind as the `Kind` dimension (a
/// handful of values) and the tenant as a property.
fn emit_alert(alert: &Alert, metric: &str) {
    use lambda::metrics::{publish, record, set_with};
    let mut s = set_with("notify", &[("Kind", alert.kind.as_str())]);
    record(s.count(metric, 1));
    record(s.property("tenant", alert.tenant.as_str()));
    publish(&s);
}

impl Notify {
    /// Sends every digest whose period has ended, once each (scheduled daily; also
    /// `POST /local/jobs/digest` locally). Digests are independent: one that fails
    /// (too large, throttled, unreadable) is logged, counted in `failed` and retried
    /// next run, and every other tenant's and segment's digest is still sent.
    pub async fn run_digests(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<DigestRun, NotifyError> {
        self.run_digests_for(now, None).await
    }

    /// [`Self::run_digests`] for one tenant's digests only (`None`: every tenant's).
    pub async fn run_digests_for(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        tenant: Option<&domain::ids::TenantId>,
    ) -> Result<DigestRun, NotifyError> {
        let mut run = DigestRun::default();
        let mut due = self.digests.due_digests(now).await?;
        if let Some(t) = tenant {
            due.retain(|b| &b.tenant == t);
        }
        run.due = due.len();
        for bucket in due {
            match self.send_digest(&bucket, now).await {
                Ok(DigestSent::Already) => run.already_sent += 1,
                Ok(DigestSent::Sent { parts, alerts }) => {
                    if alerts > 0 {
                        run.published += 1;
                    }
                    run.parts += parts;
                    run.alerts += alerts;
                }
                Err(e) => {
                    run.failed += 1;
                    tracing::error!(tenant = %bucket.tenant, digest = %bucket.key(), error = %e,
                        "digest not sent; it is retried on the next run");
                }
            }
        }
        Ok(run)
    }

    /// One digest: claimed once as a whole, and each of its parts once, so a run
    /// that failed half-way re-sends only the parts not yet published.
    async fn send_digest(
        &self,
        bucket: &DigestBucket,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<DigestSent, NotifyError> {
        let key = format!("digest:{}", bucket.key());
        let owner = bucket.key();
        let expires_at = (now + self.retention).timestamp();
        let tenant = &bucket.tenant;
        match self
            .markers
            .claim_marker(tenant, MarkerKind::Published, &key, &owner, expires_at)
            .await?
        {
            MarkerClaim::New | MarkerClaim::Mine { done: false, .. } => {}
            MarkerClaim::Mine { done: true, .. } | MarkerClaim::Other => {
                self.digests.close_digest(bucket).await?;
                return Ok(DigestSent::Already);
            }
        }
        let entries = self.digests.digest_entries(bucket).await?;
        let mut sent = DigestSent::Sent {
            parts: 0,
            alerts: entries.len(),
        };
        if !entries.is_empty() {
            let fits = |r: &domain::alert::Rendered| {
                domain::publish::message(r).is_ok_and(|m| m.len() <= DIGEST_MESSAGE_BUDGET)
            };
            let parts = render_digest_parts(bucket, &entries, &fits);
            let n = parts.len();
            for (i, rendered) in parts.iter().enumerate() {
                let part_key = if n == 1 {
                    key.clone()
                } else {
                    format!("{key}:part:{}of{n}", i + 1)
                };
                if n > 1 {
                    match self
                        .markers
                        .claim_marker(tenant, MarkerKind::Published, &part_key, &owner, expires_at)
                        .await?
                    {
                        MarkerClaim::New | MarkerClaim::Mine { done: false, .. } => {}
                        MarkerClaim::Mine { done: true, .. } | MarkerClaim::Other => continue,
                    }
                }
                let mut attributes = digest_attributes(bucket, &entries);
                attributes.insert("alert_key", part_key.clone());
                self.publisher.publish_with(attributes, rendered).await?;
                if n > 1 {
                    self.markers
                        .finish_marker(tenant, MarkerKind::Published, &part_key)
                        .await?;
                }
                if let DigestSent::Sent { parts, .. } = &mut sent {
                    *parts += 1;
                }
                tracing::info!(tenant = %tenant, digest = %bucket.key(), part = i + 1, of = n,
                    alerts = entries.len(), subject = %rendered.subject, "digest published");
            }
        }
        self.markers
            .finish_marker(tenant, MarkerKind::Published, &key)
            .await?;
        self.digests.close_digest(bucket).await?;
        Ok(sent)
    }
}

/// SNS accepts at most 256 KiB per message, message and attributes together; a
/// digest part keeps 16 KiB of that for its subject and attributes.
pub const DIGEST_MESSAGE_BUDGET: usize = 256 * 1024 - 16 * 1024;

enum DigestSent {
    Already,
    Sent { parts: usize, alerts: usize },
}

/// Routes one Lambda invocation: SQS records are alerts; anything else is the
/// EventBridge schedule asking for due digests.
pub async fn dispatch(
    notify: &Notify,
    payload: serde_json::Value,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    if payload.get("Records").is_some() {
        let event: SqsEvent = serde_json::from_value(payload)?;
        return Ok(serde_json::to_value(notify.handle(event).await)?);
    }
    let run = notify.run_digests(chrono::Utc::now()).await?;
    tracing::info!(
        due = run.due,
        published = run.published,
        alerts = run.alerts,
        "digest run"
    );
    Ok(serde_json::to_value(run)?)
}

/// Filterable attributes of a digest: `kind` = `digest`, the highest severity in it.
fn digest_attributes(
    b: &DigestBucket,
    entries: &[(Alert, String)],
) -> BTreeMap<&'static str, String> {
    let severity = entries
        .iter()
        .map(|(a, _)| a.severity)
        .max()
        .unwrap_or(domain::alert::Severity::Info);
    BTreeMap::from([
        ("kind", "digest".to_owned()),
        ("severity", severity.as_str().to_owned()),
        ("segment", b.segment.as_str().to_owned()),
        ("owner", "cs-team".to_owned()),
        ("tenant", b.tenant.to_string()),
        ("alert_key", format!("digest:{}", b.key())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use domain::alert::{AlertKind, Rendered, Severity};
    use domain::ids::{AccountId, Segment, TenantId};
    use memory::{MemoryDigests, MemoryMarkers};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        published: Mutex<Vec<String>>,
        fail_next: Mutex<bool>,
    }

    #[async_trait]
    impl AlertPublisher for Recorder {
        async fn publish_with(
            &self,
            attrs: std::collections::BTreeMap<&'static str, String>,
            r: &Rendered,
        ) -> Result<(), PublishError> {
            let mut fail = self.fail_next.lock().unwrap();
            if *fail {
                *fail = false;
                return Err(PublishError::Sns("throttled".into()));
            }
            assert!(r.subject.len() < 100);
            self.published
                .lock()
                .unwrap()
                .push(attrs["alert_key"].clone());
            Ok(())
        }
    }

    fn alert(key: &str) -> Alert {
        Alert {
            key: key.into(),
            kind: AlertKind::Limit,
            code: "threshold_crossed".into(),
            severity: Severity::Warning,
            tenant: TenantId::parse("dev").unwrap(),
            account: AccountId::parse("acme").unwrap(),
            account_name: None,
            segment: Segment::Smb,
            owner: None,
            crm_url: None,
            entitlement: Some("e".into()),
            meters: vec![],
            threshold: Some(80),
            period_start: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            period_end: chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            time_zone: "UTC".into(),
            used: 85.into(),
            limit: 100.into(),
            percent: 85.into(),
            projected: 100.into(),
            late: false,
            raised_at: chrono::Utc::now(),
            reasons: Vec::new(),
            detail: None,
        }
    }

    fn msg(id: &str, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        m
    }

    fn event(records: Vec<SqsMessage>) -> SqsEvent {
        let mut e = SqsEvent::default();
        e.records = records;
        e
    }

    #[tokio::test]
    async fn the_same_alert_in_two_messages_is_published_once_and_poison_is_reported() {
        let rec = Arc::new(Recorder::default());
        let digests = Arc::new(MemoryDigests::default());
        let n = Notify::new(
            Arc::new(MemoryMarkers::default()),
            rec.clone(),
            digests.clone(),
        );
        let body = serde_json::to_string(&alert("k1")).unwrap();
        let resp = n
            .handle(event(vec![
                msg("m1", &body),
                msg("m2", &body),
                msg("m3", "not an alert"),
            ]))
            .await;
        let failed: Vec<_> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(failed, vec!["m3".to_owned()]);
        assert_eq!(*rec.published.lock().unwrap(), vec!["k1".to_owned()]);
        assert_eq!(digests.held(), 0, "a warning is published, not digested");
    }

    #[tokio::test]
    async fn each_delivered_alert_is_recorded_once_under_its_account_and_duplicates_are_not() {
        let history = Arc::new(memory::MemoryAlertHistory::default());
        let n = Notify::new(
            Arc::new(MemoryMarkers::default()),
            Arc::new(Recorder::default()),
            Arc::new(MemoryDigests::default()),
        )
        .with_history(history.clone());
        let (a, b) = (alert("k1"), alert("k2"));
        // The rollup re-sending k1 after a crash: raised again, a second later.
        let mut again = a.clone();
        again.raised_at += chrono::Duration::seconds(1);
        let bodies: Vec<String> = [&a, &b, &again]
            .iter()
            .map(|x| serde_json::to_string(x).unwrap())
            .collect();
        let resp = n
            .handle(event(vec![
                msg("m1", &bodies[0]),
                msg("m2", &bodies[1]),
                msg("m3", &bodies[2]),
            ]))
            .await;
        assert!(resp.batch_item_failures.is_empty());
        let mut keys: Vec<String> = history
            .recent_alerts(&a.tenant, &a.account, 10, chrono::Utc::now())
            .await
            .unwrap()
            .into_iter()
            .map(|x| x.key)
            .collect();
        keys.sort();
        assert_eq!(keys, vec!["k1".to_owned(), "k2".to_owned()]);
    }

    #[tokio::test]
    async fn a_failed_publish_is_retried_by_the_same_message_and_then_published() {
        let rec = Arc::new(Recorder::default());
        *rec.fail_next.lock().unwrap() = true;
        let markers = Arc::new(MemoryMarkers::default());
        let n = Notify::new(
            markers.clone(),
            rec.clone(),
            Arc::new(MemoryDigests::default()),
        );
        let body = serde_json::to_string(&alert("k2")).unwrap();
        let first = n.handle(event(vec![msg("m1", &body)])).await;
        assert_eq!(first.batch_item_failures.len(), 1);
        assert!(rec.published.lock().unwrap().is_empty());
        // Another message with the same key is a duplicate: the claim is m1's.
        let dup = n.handle(event(vec![msg("m9", &body)])).await;
        assert!(dup.batch_item_failures.is_empty());
        assert!(rec.published.lock().unwrap().is_empty());
        // SQS redelivers m1 (same message id) once its lease ran out: it owns the
        // claim and publishes.
        markers.age_claims(domain::limits::IN_FLIGHT_LEASE);
        let again = n.handle(event(vec![msg("m1", &body)])).await;
        assert!(again.batch_item_failures.is_empty());
        assert_eq!(*rec.published.lock().unwrap(), vec!["k2".to_owned()]);
    }

    /// Publishes like SNS: refuses a message over 256 KiB, and can be told to fail
    /// for one tenant.
    #[derive(Default)]
    struct SnsLike {
        sent: Mutex<Vec<(String, String, usize)>>,
        refuse_tenant: Option<String>,
    }

    #[async_trait]
    impl AlertPublisher for SnsLike {
        async fn publish_with(
            &self,
            attrs: std::collections::BTreeMap<&'static str, String>,
            r: &Rendered,
        ) -> Result<(), PublishError> {
            let size = domain::publish::message(r)?.len()
                + attrs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
            if size > 256 * 1024 {
                return Err(PublishError::Sns(format!(
                    "InvalidParameter: message too long ({size} bytes)"
                )));
            }
            if self.refuse_tenant.as_deref() == Some(attrs["tenant"].as_str()) {
                return Err(PublishError::Sns("throttled".into()));
            }
            assert!(r.subject.len() < 100, "{}", r.subject);
            self.sent.lock().unwrap().push((
                attrs["tenant"].clone(),
                attrs["alert_key"].clone(),
                size,
            ));
            Ok(())
        }
    }

    fn bucket(tenant: &str) -> DigestBucket {
        DigestBucket {
            tenant: TenantId::parse(tenant).unwrap(),
            segment: Segment::Smb,
            cadence: domain::digest::Cadence::Daily,
            start: chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
            end: chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
        }
    }

    fn held(tenant: &str, n: usize) -> Vec<(Alert, String)> {
        (0..n)
            .map(|i| {
                let mut a = alert(&format!("limit:e{i}:2026-11-01:threshold:80"));
                a.tenant = TenantId::parse(tenant).unwrap();
                a.account = AccountId::parse(&format!("account-{:05}", i % 700)).unwrap();
                a.severity = Severity::Info;
                (a, "informational".to_owned())
            })
            .collect()
    }

    /// A digest store holding `n` informational alerts for each tenant, all due.
    async fn holding(tenants: &[(&str, usize)]) -> Arc<MemoryDigests> {
        let digests = Arc::new(MemoryDigests::default());
        for (tenant, n) in tenants {
            for (a, reason) in held(tenant, *n) {
                digests
                    .hold_for_digest(&bucket(tenant), &a, &reason)
                    .await
                    .unwrap();
            }
        }
        digests
    }

    #[tokio::test]
    async fn a_digest_over_snss_limit_is_split_into_parts_and_other_tenants_digests_still_go_out() {
        let digests = holding(&[("big", 3_000), ("small", 2)]).await;
        let sns = Arc::new(SnsLike::default());
        let n = Notify::new(
            Arc::new(MemoryMarkers::default()),
            sns.clone(),
            digests.clone(),
        );
        let run = n.run_digests(chrono::Utc::now()).await.unwrap();
        assert_eq!((run.due, run.published, run.failed), (2, 2, 0), "{run:?}");
        assert_eq!(run.alerts, 3_002);
        let sent = sns.sent.lock().unwrap().clone();
        let big: Vec<_> = sent.iter().filter(|(t, _, _)| t == "big").collect();
        assert!(
            big.len() > 1,
            "the big digest is split: {} part(s)",
            big.len()
        );
        assert_eq!(run.parts, big.len() + 1);
        assert!(big.iter().all(|(_, _, size)| *size <= 256 * 1024));
        let mut keys: Vec<_> = big.iter().map(|(_, k, _)| k.clone()).collect();
        keys.dedup();
        assert_eq!(keys.len(), big.len(), "each part has its own alert key");
        assert_eq!(sent.iter().filter(|(t, _, _)| t == "small").count(), 1);
        // A second run sends nothing again.
        let again = n.run_digests(chrono::Utc::now()).await.unwrap();
        assert_eq!(again.due, 0);
        assert_eq!(sns.sent.lock().unwrap().len(), sent.len());
    }

    #[tokio::test]
    async fn a_digest_that_cannot_be_sent_fails_alone_and_is_retried_next_run() {
        let digests = holding(&[("stuck", 3), ("fine", 3)]).await;
        let sns = Arc::new(SnsLike {
            refuse_tenant: Some("stuck".into()),
            ..SnsLike::default()
        });
        let n = Notify::new(
            Arc::new(MemoryMarkers::default()),
            sns.clone(),
            digests.clone(),
        );
        let run = n.run_digests(chrono::Utc::now()).await.unwrap();
        assert_eq!((run.due, run.published, run.failed), (2, 1, 1), "{run:?}");
        assert_eq!(sns.sent.lock().unwrap()[0].0, "fine");
        let retry = n.run_digests(chrono::Utc::now()).await.unwrap();
        assert_eq!(
            (retry.due, retry.failed),
            (1, 1),
            "still due, still failing alone"
        );
    }
}
