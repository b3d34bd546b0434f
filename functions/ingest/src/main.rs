use aws::dynamo::DynamoStore;
use aws::sqs::SqsQueue;
use ingest::Ingest;
use lambda::config::Resources;
use lambda_http::{run, service_fn, Error, Request};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::telemetry::init();
    let res = Resources::from_env()?;
    let aws = aws::sdk::load().await;
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&aws),
        res.table,
    ));
    let queue = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&aws),
        res.events_queue_url,
    ));
    let mut ingest = Ingest::new(store.clone(), queue);
    // Events older than the ledger remembers are refused, whatever a stored policy says.
    ingest.limits.max_backfill_days = lambda::config::ledger_retention()?.max_horizon_days();
    ingest.quality = Some(store.clone());
    ingest.quarantine = Some(store.clone());
    let secrets: Vec<String> = ["HUBSPOT_CLIENT_SECRET", "HUBSPOT_CLIENT_SECRET_PREVIOUS"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .collect();
    if !secrets.is_empty() {
        let legacy = lambda::config::hubspot_legacy_policy()?.map(|policy| {
            tracing::warn!(versions = ?policy.versions, window_hours = policy.window.num_hours(), "legacy HubSpot signatures accepted, with the replay guard");
            ingest::LegacySignatures {
                policy,
                guard: store.clone(),
            }
        });
        ingest.hubspot = Some(ingest::HubspotConfig {
            secrets,
            public_base_url: lambda::config::required("PUBLIC_BASE_URL")?,
            portals: store,
            legacy,
        });
    }
    ingest.quotas = Arc::new(domain::quota::Quotas::from_env()?);
    ingest.event_quotas = Arc::new(domain::quota::Quotas::from_env_for(&domain::quota::EVENTS)?);
    let ingest = Arc::new(ingest);
    run(service_fn(move |req: Request| {
        let ingest = ingest.clone();
        async move { Ok::<_, Error>(ingest.handle(req).await) }
    }))
    .await
}
