//! The HubSpot write-back serialised per portal through the FIFO write-back queue
//! (`domain::health::crm_queue`), against moto and the CRM stand-in.

use async_trait::async_trait;
use aws::hubspot::HyperPost;
use domain::health::crm_queue::QueuedWriteback;
use domain::health::model::Band;
use domain::health::writeback::{CrmSink, CrmTask, CrmUpdate, HubSpotWriteback, PushReport};
use domain::ids::TenantId;
use e2e::crm::CrmStandIn;
use e2e::TestStack;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn update(company: usize, portal: &str) -> CrmUpdate {
    CrmUpdate {
        company_id: company.to_string(),
        score: 40.0,
        band: Band::Yellow,
        reasons: "usage_down_30d: api_calls -40 %".into(),
        as_of: chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        portal: Some(portal.to_owned()),
        play: None,
    }
}

fn task(company: usize, portal: &str) -> CrmTask {
    CrmTask {
        company_id: company.to_string(),
        portal: Some(portal.to_owned()),
        owner_id: Some("77".into()),
        owner_email: None,
        subject: "Usage play: Acme is behind its enterprise milestones".into(),
        body: "Acme: behind the enterprise milestone schedule by 4 days".into(),
        due: chrono::NaiveDate::from_ymd_opt(2026, 12, 3).unwrap(),
    }
}

/// The score function's view of the queue: the run's sink, under the score role.
fn queued(t: &TestStack) -> QueuedWriteback {
    let cfg = t
        .provisioned
        .function_config(&t.aws, "ScoreFunction")
        .unwrap();
    QueuedWriteback {
        queue: Arc::new(aws::sqs::SqsQueue::new(
            aws_sdk_sqs::Client::new(&cfg),
            t.provisioned.reference("WritebackQueue").unwrap(),
        )),
    }
}

/// Records what reaches HubSpot (first company of each batch, or `task:` + company)
/// and refuses the first `fail` calls for companies at or above `fail_from`.
struct Recording {
    seen: Mutex<Vec<String>>,
    fail_from: usize,
    fail: Mutex<usize>,
}

impl Recording {
    fn refuse(&self, company: &str) -> bool {
        let mut left = self.fail.lock().unwrap();
        let hit = company.parse::<usize>().unwrap_or(0) >= self.fail_from && *left > 0;
        if hit {
            *left -= 1;
        }
        hit
    }
}

#[async_trait]
impl CrmSink for Recording {
    async fn push(&self, _t: &TenantId, updates: &[CrmUpdate]) -> PushReport {
        let first = updates[0].company_id.clone();
        if self.refuse(&first) {
            return PushReport {
                failed: updates.len(),
                retry: true,
                last_error: Some("429".into()),
                ..Default::default()
            };
        }
        self.seen.lock().unwrap().push(first);
        PushReport {
            updated: updates.len(),
            ..Default::default()
        }
    }

    async fn create_tasks(&self, _t: &TenantId, tasks: &[CrmTask]) -> PushReport {
        for t in tasks {
            self.seen
                .lock()
                .unwrap()
                .push(format!("task:{}", t.company_id));
        }
        PushReport {
            updated: tasks.len(),
            ..Default::default()
        }
    }
}

#[tokio::test]
async fn a_failing_portal_holds_back_only_its_own_messages_and_each_portal_keeps_its_order() {
    let t = TestStack::fresh().await;
    // Portal 111: companies 1000.. in three batches and a task; portal 222: 5000.. in two.
    let mut updates: Vec<CrmUpdate> = (0..250).map(|i| update(1000 + i, "111")).collect();
    updates.extend((0..150).map(|i| update(5000 + i, "222")));
    let sink = queued(&t);
    let r = sink.push(&t.tenant, &updates).await;
    assert_eq!((r.queued, r.failed), (400, 0), "{r:?}");
    let r = sink.create_tasks(&t.tenant, &[task(1000, "111")]).await;
    assert_eq!(r.queued, 1, "{r:?}");

    // HubSpot refuses portal 111's first batch once.
    let recording = Arc::new(Recording {
        seen: Mutex::default(),
        fail_from: 1000,
        fail: Mutex::new(1),
    });
    let score = score::Score::new(Arc::new(t.stack.health_runner(None).unwrap()))
        .with_writeback_consumer(recording.clone());
    t.drain_writeback_with(&score).await;
    assert_eq!(
        *recording.seen.lock().unwrap(),
        ["5000", "5100"],
        "portal 222 went on while portal 111's first message waits for its retry"
    );
    // The refused message is visible again after the visibility timeout.
    tokio::time::sleep(Duration::from_secs(e2e::TEST_VISIBILITY_SECS as u64 + 1)).await;
    t.drain_writeback_with(&score).await;
    assert_eq!(
        *recording.seen.lock().unwrap(),
        ["5000", "5100", "1000", "1100", "1200", "task:1000"],
        "portal 111's messages in the order they were queued, the task last"
    );
    assert_eq!(
        queue_depth(&t, "WritebackDLQ").await,
        0,
        "nothing dead-lettered"
    );
    assert_eq!(t.denials(), Vec::new());
}

async fn queue_depth(t: &TestStack, logical: &str) -> u64 {
    use domain::audit::store::QueueDepth;
    aws::sqs::SqsDepth {
        client: aws_sdk_sqs::Client::new(&t.aws),
        url: t.provisioned.reference(logical).unwrap().to_owned(),
    }
    .depth()
    .await
    .unwrap()
}

#[tokio::test]
async fn a_resend_of_the_same_work_within_five_minutes_is_dropped_by_the_queue() {
    let t = TestStack::fresh().await;
    let sink = queued(&t);
    let updates: Vec<CrmUpdate> = (0..3).map(|i| update(1000 + i, "111")).collect();
    sink.push(&t.tenant, &updates).await;
    // A shard retried after a crash queues the same updates again.
    sink.push(&t.tenant, &updates).await;
    assert_eq!(queue_depth(&t, "WritebackQueue").await, 1);
}

#[tokio::test]
async fn queued_updates_and_tasks_reach_the_stand_in_through_the_paced_client_without_a_429() {
    let t = TestStack::fresh().await;
    let crm = CrmStandIn::start("pat-q").await;
    domain::hubspot::setup::run(
        &domain::hubspot::client::HubSpotClient::new(
            &crm.base,
            Arc::new(HyperPost::new().unwrap()),
            100,
        ),
        "pat-q",
    )
    .await
    .unwrap();
    let crm = crm.with_budget(3, Duration::from_millis(600));
    let mut updates: Vec<CrmUpdate> = (0..300).map(|i| update(1000 + i, "111")).collect();
    updates[0].play = Some(domain::health::plays::PlayProperties {
        lag_days: 4,
        next_milestone: Some("integration_live (due 2026-11-26)".into()),
    });
    let sink = queued(&t);
    sink.push(&t.tenant, &updates).await;
    sink.create_tasks(&t.tenant, &[task(1000, "111")]).await;
    let hubspot = HubSpotWriteback::new(
        &crm.base,
        std::collections::HashMap::from([(t.tenant.clone(), "pat-q".to_owned())]),
        Arc::new(HyperPost::new().unwrap()),
        100,
    )
    .with_backoff(Duration::from_millis(50));
    let score = score::Score::new(Arc::new(t.stack.health_runner(None).unwrap()))
        .with_writeback_consumer(Arc::new(hubspot));
    let stats = t.drain_writeback_with(&score).await;
    assert_eq!((stats.received, stats.failed), (4, 0), "{stats:?}");
    let s = crm.lock();
    assert_eq!(s.companies.len(), 300);
    assert_eq!(s.companies["1000"]["usage_milestone_lag_days"], "4");
    assert_eq!(
        s.companies["1000"]["usage_next_milestone"],
        "integration_live (due 2026-11-26)"
    );
    assert_eq!(s.tasks.len(), 1);
    let task = &s.tasks[0];
    assert_eq!(task["properties"]["hubspot_owner_id"], "77");
    assert_eq!(task["associations"][0]["to"]["id"], "1000");
    assert_eq!(s.answered(429), 0, "the portal's budget held");
}
